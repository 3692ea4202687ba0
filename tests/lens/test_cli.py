"""The `astro lens` commands end to end, in-process, on a tiny workspace."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from .conftest import run_cli

TINY = ["--set", "lens.generate.galaxy.hlr=[0.5, 0.8]", "--set", "lens.generate.galaxy.hlr_unit=\"arcsec\"",
        "--set", "lens.generate.psf.fwhm=0.6"]


run = run_cli


def test_lens_pipeline(tmp_path, capsys):
    ws = tmp_path / "ws"
    code, out, err = run(capsys, "-w", ws, "-q", "lens", "generate", "--preset", "shearnet", "--name", "cli",
                         "--stamp-size", 24, "--pixel-scale", 0.2, "-n", 120, "--shard-size", 60,
                         "--format", "lensnet", *TINY)
    assert code == 0, err
    summary = json.loads(out)
    assert summary["n"] == 120 and summary["shards"] == 2
    ds = ws / "lens" / "shear" / "cli"
    assert (ds / "cli_truth.parquet").is_file() and (ds / "lensnet" / "gal_119.fits").is_file()
    truth = pq.read_table(ds / "cli_truth.parquet")
    assert truth.num_rows == 120 and {"g1", "g2", "psf_fwhm", "snr", "dx"} <= set(truth.column_names)
    assert list((ws / "runs").iterdir())

    # same command again: everything is skipped (resume); another config refuses to mix
    code, out, _ = run(capsys, "-w", ws, "-q", "lens", "generate", "--preset", "shearnet", "--name", "cli",
                       "--stamp-size", 24, "--pixel-scale", 0.2, "-n", 120, "--shard-size", 60,
                       "--format", "lensnet", *TINY)
    assert code == 0 and json.loads(out)["skipped_shards"] == 2
    code, _, err = run(capsys, "-w", ws, "-q", "lens", "generate", "--preset", "shearnet", "--name", "cli",
                       "--stamp-size", 32, "-n", 120, "--shard-size", 60)
    assert code == 2 and "other settings" in err

    code, out, err = run(capsys, "-w", ws, "-q", "lens", "measure", "--dataset", "cli", "--methods", "REGAUSS,KSB")
    assert code == 0, err
    assert json.loads(out)["failed"] == {"REGAUSS": 0, "KSB": 0}

    code, out, err = run(capsys, "-w", ws, "-q", "--set", "lens.train.threads=1", "--set", "lens.train.blocks=2",
                         "lens", "train", "--dataset", "cli", "--epochs", 2, "--width", 4, "--batch-size", 32)
    assert code == 0, err
    t = json.loads(out)
    assert t["model"] == "cli_cnn" and t["epochs_total"] == 2
    mdir = ws / "lens" / "models" / "cli_cnn"
    assert (mdir / "model.safetensors").is_file() and (mdir / "model.json").is_file()
    with open(t["history_plot"], "rb") as fh:  # loss and metric curves of the two epochs
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"

    code, out, err = run(capsys, "-w", ws, "-q", "lens", "evaluate", "--model", "cli_cnn", "--json",
                         "--classical", "REGAUSS,KSB")
    assert code == 0, err
    rep = json.loads(out)
    assert set(rep["estimators"]) == {"CNN", "REGAUSS", "KSB"} and rep["subset"] == "test"
    for r in rep["estimators"].values():
        assert {"rmse_g1", "mae_g2", "m1", "m1_err", "c2", "c2_err", "q"} <= set(r)
    for p in rep["plots"]:
        with open(p, "rb") as fh:
            assert fh.read(8) == b"\x89PNG\r\n\x1a\n"

    code, out, err = run(capsys, "-w", ws, "-q", "lens", "predict", ds / "lensnet" / "data.json",
                         "--model", "cli_cnn")
    assert code == 0, err
    pr = json.loads(out)
    table = pq.read_table(pr["output"])
    assert table.num_rows == 120 and "true_g1" in table.column_names and pr["rmse_g1"] < 1
    from astropy.table import Table

    described = Table.read(pr["output"])   # every column says what it is, in astropy too
    assert "true reduced shear g1" in described["true_g1"].description
    assert not [c for c in described.colnames if not described[c].description]

    assert pr["engine"] == "torch" and pr["samples_per_s"] > 0

    # ONNX Runtime needs the export first, and then gives torch's numbers
    code, _, err = run(capsys, "-w", ws, "-q", "lens", "predict", ds / "lensnet" / "data.json", "--model", "cli_cnn",
                       "--engine", "onnxruntime", "--output", "onnx")
    assert code == 2 and "model.onnx: no such ONNX file" in err
    code, out, err = run(capsys, "-w", ws, "-q", "lens", "export", "--model", "cli_cnn")
    assert code == 0, err
    ex = json.loads(out)
    assert ex["max_abs_diff"] <= 1e-5 and ex["path"] == str(ws / "lens" / "models" / "cli_cnn" / "model.onnx")
    assert ex["symmetrize"] is True and ex["calibrated"] is False
    code, out, err = run(capsys, "-w", ws, "-q", "lens", "predict", ds / "lensnet" / "data.json", "--model", "cli_cnn",
                         "--engine", "onnxruntime", "--output", "onnx", "--batch-size", 7)
    assert code == 0, err
    po = json.loads(out)
    assert po["engine"] == "onnxruntime" and po["device"] == "CPUExecutionProvider" and po["samples_per_s"] > 0
    onnx_table = pq.read_table(po["output"])
    for col in ("g1", "g2"):
        assert abs(onnx_table.column(col).to_numpy() - table.column(col).to_numpy()).max() <= 1e-5
    # an export without symmetrisation does not serve a symmetrised request
    code, _, err = run(capsys, "-w", ws, "-q", "lens", "predict", ds / "lensnet" / "data.json", "--model", "cli_cnn",
                       "--engine", "onnxruntime", "--no-symmetrize")
    assert code == 2 and "exported with symmetrize=True" in err

    # the run records name what each command read and wrote
    runs = {json.loads(p.read_text())["command"]: json.loads(p.read_text()) for p in sorted(ws.glob("runs/*/run.json"))}
    assert runs["lens train"]["inputs"] == [str(ds)]
    assert runs["lens train"]["outputs"] == [str(mdir / "model.safetensors"), str(mdir / "model.json"),
                                             t["history_plot"]]
    assert runs["lens export"]["inputs"] == [str(mdir)] and runs["lens export"]["outputs"] == [ex["path"]]

    # bad input: a clear message naming the file, exit code 2, no traceback
    code, _, err = run(capsys, "-w", ws, "-q", "lens", "predict", tmp_path / "missing.json", "--model", "cli_cnn")
    assert code == 2 and "missing.json" in err and "Traceback" not in err
    code, _, err = run(capsys, "-w", ws, "-q", "lens", "predict", tmp_path / "missing.json", "--model", "../cli_cnn")
    assert code == 2 and "--model: '../cli_cnn' is neither a checkpoint folder" in err

    # an existing model is resumed, refused without resume, retrained with --overwrite
    train = ["-w", ws, "-q", "--set", "lens.train.threads=1", "--set", "lens.train.blocks=2", "lens", "train",
             "--dataset", "cli", "--epochs", 2, "--width", 4, "--batch-size", 32]
    code, out, err = run(capsys, *train)
    assert code == 0 and json.loads(out)["epochs_run"] == 0 and json.loads(out)["resumed_from"] == 2
    code, _, err = run(capsys, *train, "--no-resume")
    assert code == 2 and "a model is already here" in err and "--overwrite" in err
    assert (mdir / "model.onnx").is_file()
    code, out, err = run(capsys, *train, "--overwrite", "--epochs", 1, "--precision", "bf16-mixed", "--device", "cpu")
    assert code == 0, err
    assert json.loads(out)["epochs_run"] == 1 and not (mdir / "model.onnx").exists()  # a stale export goes too
    trained = json.loads((mdir / "model.json").read_text())["training"]
    assert trained["precision"] == "bf16-mixed" and trained["device"] == "cpu" and trained["processes"] == 1
    code, _, err = run(capsys, *train, "--overwrite", "--precision", "8-mixed")
    assert code == 2 and "ml.precision" in err


def test_bad_config_key(tmp_path, capsys):
    code, _, err = run(capsys, "-w", tmp_path, "lens", "generate", "--set", "lens.generate.psf.fwhmx=1")
    assert code == 2 and "lens.generate.psf.fwhmx" in err and "unknown key" in err


@pytest.mark.long
def test_train_on_two_processes_keeps_one_record(tmp_path, capsys):
    """`lens train --devices 2` really starts a second (DDP, gloo) process, which writes nothing."""
    import subprocess
    import sys

    ws = tmp_path / "ws"
    code, _, err = run(capsys, "-w", ws, "-q", "lens", "generate", "--preset", "shearnet", "--name", "ddp",
                       "--stamp-size", 16, "--pixel-scale", 0.3, "-n", 96, "--shard-size", 96, *TINY)
    assert code == 0, err
    proc = subprocess.run([sys.executable, "-m", "astrotool", "-w", str(ws), "-q", "--json", "--set", "lens.train.threads=1",
                           "--set", "lens.train.blocks=1", "lens", "train", "--dataset", "ddp", "--epochs", "1",
                           "--width", "4", "--batch-size", "16", "--device", "cpu", "--devices", "2"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)  # one result: a second printout would not parse
    meta = json.loads((ws / "lens" / "models" / "ddp_cnn" / "model.json").read_text())
    assert meta["training"]["processes"] == 2 and summary["epochs_total"] == 1
    records = [json.loads(p.read_text()) for p in (ws / "runs").glob("*/run.json")]
    assert sorted(r["command"] for r in records) == ["lens generate", "lens train"]
    # other settings: refused once, by rank 0 (the copy met the same check and printed it too)
    proc = subprocess.run([sys.executable, "-m", "astrotool", "-w", str(ws), "--set", "lens.train.threads=1",
                           "--set", "lens.train.blocks=1", "lens", "train", "--dataset", "ddp", "--epochs", "1",
                           "--width", "8", "--batch-size", "16", "--device", "cpu", "--devices", "2"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and proc.stderr.count("other settings") == 1, proc.stderr


@pytest.mark.long
@pytest.mark.long
def test_a_stopped_overwrite_on_two_processes_goes_on_from_its_last_epoch(tmp_path, capsys):
    """Submitted again after its time limit, `--overwrite lens train --devices 2` started from scratch each time
    (only one process resumed a stopped overwrite: several could decide apart); rank 0 now decides for all."""
    import os
    import signal
    import subprocess

    ws = tmp_path / "ws"
    cmd, proc, state = _two_process_training(capsys, ws, "--overwrite", epochs=60)
    os.killpg(proc.pid, signal.SIGTERM)   # the time limit: Slurm signals the job's processes
    proc.communicate(timeout=120)
    done = _epochs_done(state)
    assert proc.returncode != 0 and 2 <= done < 60, (proc.returncode, done)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)   # the same job again, --overwrite and all
    assert r.returncode == 0, r.stderr
    assert f"after epoch {done}" in r.stderr and "resuming from" in r.stderr, r.stderr
    assert r.stderr.count("--overwrite: going on with the one begun") == 1, r.stderr   # rank 0's, not its copy's
    assert f"epoch {done + 1}/60 " in r.stderr and "epoch 1/60 " not in r.stderr, r.stderr   # no epoch again
    history = json.loads((ws / "lens" / "models" / "ddp_cnn" / "model.json").read_text())["history"]
    assert [h["epoch"] for h in history] == list(range(len(history))) and len(history) > done   # one run's


def test_a_stop_sent_to_rank_0_alone_is_said_once(tmp_path, capsys):
    """SIGTERM to the command's process alone (`kill PID`) on a 2-process training: rank 0 said `terminated`, then
    its copy printed gloo's `RuntimeError: ... Connection closed by peer ... GLHF!`. The copy now says nothing."""
    import signal

    _, proc, _ = _two_process_training(capsys, tmp_path / "ws", epochs=200)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert err.count("terminated: unfinished outputs removed") == 1 and "Error" not in err, err


def _two_process_training(capsys, ws, *options, epochs: int):
    """A tiny set in ``ws`` and a 2-process CPU training of it started in a process group of its own, returned
    once it has saved 2 epochs: (its command, the process, its last/ training state file)."""
    import subprocess
    import sys
    import time

    code, _, err = run(capsys, "-w", ws, "-q", "lens", "generate", "--preset", "shearnet", "--name", "ddp",
                       "--stamp-size", 16, "--pixel-scale", 0.3, "-n", 96, "--shard-size", 96, *TINY)
    assert code == 0, err
    cmd = [sys.executable, "-m", "astrotool", "-w", str(ws), *options, "--set", "lens.train.threads=1", "--set",
           "lens.train.blocks=1", "lens", "train", "--dataset", "ddp", "--epochs", str(epochs), "--width", "4",
           "--batch-size", "16", "--device", "cpu", "--devices", "2"]
    state = ws / "lens" / "models" / "ddp_cnn" / "last" / "training_state.json"
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None and not (state.is_file() and _epochs_done(state) >= 2):
        time.sleep(0.05)
    return cmd, proc, state


def _epochs_done(state) -> int:
    try:
        return int(json.loads(state.read_text())["loop"]["epochs_done"])
    except (OSError, ValueError, KeyError):
        return 0


@pytest.mark.parametrize("strategy, code", [("ddp_fork", 0), ("ddp_spawn", 2)])
def test_strategies_that_start_processes_in_fit(tmp_path, capsys, strategy, code):
    """ml.strategy ddp_fork / ddp_spawn (documented, valid) crashed every train command at its barrier after
    preparing the model folder (exit 1: "you must call .launch()"): fit starts those processes itself. A model
    that cannot be pickled for ddp_spawn is refused, naming the setting."""
    import subprocess
    import sys

    ws = tmp_path / "ws"
    code0, _, err = run(capsys, "-w", ws, "-q", "lens", "generate", "--preset", "shearnet", "--name", "fk",
                        "--stamp-size", 16, "--pixel-scale", 0.3, "-n", 64, "--shard-size", 64, *TINY)
    assert code0 == 0, err
    proc = subprocess.run([sys.executable, "-m", "astrotool", "-w", str(ws), "-q", "--set", "lens.train.threads=1",
                           "--set", f"ml.strategy={strategy}", "lens", "train", "--dataset", "fk", "--epochs", "1",
                           "--width", "4", "--batch-size", "16", "--device", "cpu", "--devices", "2"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == code, proc.stderr
    if code:
        assert f"ml.strategy {strategy}:" in proc.stderr and "use strategy ddp" in proc.stderr
    else:
        meta = json.loads((ws / "lens" / "models" / "fk_cnn" / "model.json").read_text())
        assert meta["training"]["processes"] == 2


def test_train_refuses_to_resume_with_other_settings(tmp_path, capsys, monkeypatch):
    """A rerun with changed settings is refused (exit 2, keys named) before the stamps are read."""
    from astrotool_lens.data import ShearDataset

    ws = tmp_path / "ws"
    for name, seed in (("a", 1), ("b", 2)):
        code, _, err = run(capsys, "-w", ws, "-q", "--seed", seed, "lens", "generate", "--preset", "shearnet",
                           "--name", name, "--stamp-size", 16, "--pixel-scale", 0.3, "-n", 64, "--shard-size", 64,
                           *TINY)
        assert code == 0, err
    train = ["-w", ws, "-q", "--seed", 5, "--set", "lens.train.threads=1", "--set", "lens.train.blocks=1", "lens",
             "train", "--model", "m", "--width", 4, "--batch-size", 16]
    code, out, err = run(capsys, *train, "--dataset", "a", "--epochs", 1)
    assert code == 0, err
    mdir = ws / "lens" / "models" / "m"
    settings = json.loads((mdir / "last" / "model.json").read_text())["settings"]
    assert settings["lr"] == 2e-3 and settings["seed"] == 5 and settings["dataset"]["name"] == "a"
    assert not {"epochs", "patience", "resume", "device", "threads", "model"} & set(settings)
    weights = (mdir / "model.safetensors").read_bytes()

    def no_reading(*args, **kwargs):
        raise AssertionError("stamps read before the settings were compared")

    with monkeypatch.context() as m:
        m.setattr(ShearDataset, "load_stamps", no_reading)
        code, _, err = run(capsys, *train, "--dataset", "a", "--lr", 0.5, "--loss", "mae", "--target", "shear",
                           "--epochs", 2)
        assert code == 2 and "a model trained with other settings is here" in err
        assert 'loss: "mse" -> "mae"; lr: 0.002 -> 0.5; target: "ellipticity" -> "shear"' in err
        assert "--overwrite" in err and "Traceback" not in err
        code, _, err = run(capsys, *train, "--dataset", "b", "--epochs", 2)
        assert code == 2 and 'dataset.name: "a" -> "b"' in err and "seed" not in err
        code, _, err = run(capsys, *train, "--dataset", "a", "--epochs", 2, "--seed", 6)
        assert code == 2 and "seed: 5 -> 6" in err
    assert (mdir / "model.safetensors").read_bytes() == weights  # refused runs wrote nothing

    # only more epochs: the run continues; --overwrite trains afresh with the new settings
    code, out, err = run(capsys, *train, "--dataset", "a", "--epochs", 2)
    assert code == 0, err
    assert (json.loads(out)["resumed_from"], json.loads(out)["epochs_run"]) == (1, 1)
    code, out, err = run(capsys, *train, "--dataset", "b", "--loss", "mae", "--epochs", 1, "--overwrite")
    assert code == 0, err
    assert json.loads(out)["resumed_from"] is None and json.loads(out)["epochs_run"] == 1
    settings = json.loads((mdir / "model.json").read_text())["settings"]
    assert settings["loss"] == "mae" and settings["dataset"]["name"] == "b"
