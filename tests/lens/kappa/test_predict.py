"""Prediction runs: the writer's files, zip, resume and refusals; predict and export end to end."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from astrotool.errors import AstroError
from astrotool_lens.kappa.submission import INFO_FILE, PredictionWriter

MADE_BY = {"method": "ks", "settings": {"sigma": 2.0}, "source": "tiny", "split": "test", "n": 4, "size": 8}
NAMES = ["00001_00002", "00003_00004", "00005_00006", "00007_00008"]


def maps(n=4, seed=0):
    return np.random.default_rng(seed).normal(0, 0.1, (n, 8, 8))


# ---------------------------------------------------------------- PredictionWriter


def test_writer_files_by_name_and_zip(tmp_path):
    run = tmp_path / "preds" / "tiny_ks2"
    w = PredictionWriter(run, MADE_BY)
    m = maps()
    w.write(NAMES[:2], m[:2])
    w.write(NAMES[2:], m[2:])
    res = w.finish()
    assert res == {"output": str(run), "zip": str(tmp_path / "preds" / "tiny_ks2.zip"), "n": 4}
    for name, want in zip(NAMES, m):
        got = np.load(run / f"{name}.npy")
        assert got.dtype == np.float16 and got.shape == (8, 8) and np.array_equal(got, want.astype(np.float16))
    with zipfile.ZipFile(res["zip"]) as zf:  # the .npy files at the top level, byte for byte
        assert sorted(zf.namelist()) == [f"{n}.npy" for n in NAMES]
        for n in NAMES:
            assert zf.read(f"{n}.npy") == (run / f"{n}.npy").read_bytes()
    info = json.loads((run / INFO_FILE).read_text())
    assert info["complete"] and info["made_by"] == MADE_BY and info["maps"] == 4
    assert sorted(p.name for p in run.iterdir()) == sorted([*(f"{n}.npy" for n in NAMES), INFO_FILE])


def test_writer_resume_keeps_finished_maps_and_refuses_other_settings(tmp_path):
    run = tmp_path / "tiny_ks2"
    w = PredictionWriter(run, MADE_BY)
    w.write(NAMES[:3], maps(3))
    before = (run / f"{NAMES[0]}.npy").stat().st_mtime_ns
    with pytest.raises(AstroError, match="holds 3 maps, the run has 4"):
        w.finish()  # an interrupted run is not finished
    again = PredictionWriter(run, json.loads(json.dumps(MADE_BY)))
    assert again.missing(reversed(NAMES)) == [NAMES[3]]
    assert (run / f"{NAMES[0]}.npy").stat().st_mtime_ns == before
    cut = (run / f"{NAMES[1]}.npy").read_bytes()   # a map cut short by hand was kept, and went into the zip
    (run / f"{NAMES[1]}.npy").write_bytes(cut[:100])
    assert again.missing(NAMES) == [NAMES[1], NAMES[3]]
    (run / f"{NAMES[1]}.npy").write_bytes(cut)
    with pytest.raises(AstroError) as exc:
        PredictionWriter(run, {**MADE_BY, "settings": {"sigma": 3.0}})
    assert "settings.sigma: 2.0 -> 3.0" in str(exc.value) and exc.value.exit_code == 2
    with pytest.raises(AstroError, match="split: \"test\" -> \"all\""):
        PredictionWriter(run, {**MADE_BY, "split": "all"})
    fresh = PredictionWriter(run, {**MADE_BY, "settings": {"sigma": 3.0}}, overwrite=True)
    assert fresh.missing(NAMES) == NAMES
    assert len(list(run.glob("*.npy"))) == 3   # the old run stays until the new one is complete
    fresh.write(NAMES, maps(4, seed=1))
    fresh.finish()
    assert json.loads((run / INFO_FILE).read_text())["made_by"]["settings"] == {"sigma": 3.0}
    assert np.array_equal(np.load(run / f"{NAMES[0]}.npy"), maps(4, seed=1)[0].astype(np.float16))
    assert not [p for p in run.parent.iterdir() if p.name.startswith(".")]   # no temporary folder left


def test_writer_refuses_nan_and_overflow_naming_the_map(tmp_path):
    w = PredictionWriter(tmp_path / "run", MADE_BY)
    m = maps()
    m[2, 3, 4] = np.nan
    with pytest.raises(AstroError, match=f"{NAMES[2]}.*NaN"):
        w.write(NAMES, m)
    # the batch is checked before any map is written; no folder passes for a run (score listed it)
    assert not (tmp_path / "run").exists()
    m = maps()
    m[1, 0, 0] = 70000.0
    with pytest.raises(AstroError, match=f"{NAMES[1]}.*beyond float16"):
        w.write(NAMES, m)
    m[1, 0, 0] = -65504.0  # the largest float16 is fine
    w.write(NAMES, m)
    assert np.load(tmp_path / "run" / f"{NAMES[1]}.npy")[0, 0] == -65504.0
    with pytest.raises(AstroError, match="maps are 4x4"):
        w.write(NAMES[:1], np.zeros((1, 4, 4)))


def test_writer_leaves_no_partial_file_after_a_failure(tmp_path, monkeypatch):
    w = PredictionWriter(tmp_path / "run", MADE_BY)
    w.write(NAMES[:1], maps(1))
    real_save = np.save
    calls = []

    def failing_save(fh, arr, **kw):
        calls.append(1)
        if len(calls) == 2:
            fh.write(b"\x93NUMPY partial")
            raise OSError("disk full")
        return real_save(fh, arr, **kw)

    monkeypatch.setattr(np, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        w.write(NAMES[1:], maps(3))
    monkeypatch.undo()
    files = sorted(p.name for p in (tmp_path / "run").iterdir())
    assert files == sorted([INFO_FILE, f"{NAMES[0]}.npy", f"{NAMES[1]}.npy"])  # no .partial file, no map 2
    assert PredictionWriter(tmp_path / "run", MADE_BY).missing(NAMES) == NAMES[2:]


def test_writer_refuses_a_foreign_folder(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("mine")
    with pytest.raises(AstroError, match="no prediction.json"):
        PredictionWriter(tmp_path / "run", MADE_BY)
    w = PredictionWriter(tmp_path / "run", MADE_BY, overwrite=True)
    assert (tmp_path / "run" / "notes.txt").exists()   # replaced only once the new run is complete
    w.write(NAMES, maps())
    w.finish()
    assert not (tmp_path / "run" / "notes.txt").exists()


# ---------------------------------------------------------------- predict and export end to end


def run(capsys, *args):
    from astrotool.cli import main

    code = main(["--json", *(str(a) for a in args)])
    out = capsys.readouterr()
    return code, out.out, out.err


def write_set(root, name, epsilon, kappa, splits):
    """A KappaDataset folder written with the core's DatasetWriter (one shard)."""
    from astrotool.ml.data import DatasetWriter
    from astrotool_lens.kappa.data import KIND

    w = DatasetWriter(str(root / name), name, kind=KIND)
    arrays = {"epsilon": np.asarray(epsilon, np.float16)}
    if kappa is not None:
        arrays["kappa"] = np.asarray(kappa, np.float16)
    w.write_shard(0, 0, arrays, {"name": np.array([f"m{i:04d}" for i in range(len(epsilon))]),
                                 "split": np.asarray(splits)})
    w.finalize(1)
    return root / name


def pairs(n, size, rng):
    """Smooth random kappa and its noisy shear as epsilon (n, 3, S, S), de = 0.2."""
    from astrotool_lens.kappa.maps import shear_from_kappa, smooth

    kappa = 0.05 + 0.5 * smooth(rng.standard_normal((n, size, size)), 3.0)
    g1, g2 = shear_from_kappa(kappa)
    eps = np.stack([g1 + 0.2 * rng.standard_normal(g1.shape), g2 + 0.2 * rng.standard_normal(g1.shape),
                    np.full(g1.shape, 0.2)], axis=1)
    return eps, kappa


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A workspace with a 32x32 set (16 train, 4 val, 6 test) and a U-Net trained on it for one epoch."""
    import contextlib
    import io

    from astrotool.cli import main

    ws = tmp_path_factory.mktemp("kappa_predict") / "ws"
    eps, kappa = pairs(26, 32, np.random.default_rng(7))
    write_set(ws / "lens" / "kappa" / "data", "tiny", eps, kappa, ["train"] * 16 + ["val"] * 4 + ["test"] * 6)
    with contextlib.redirect_stdout(io.StringIO()):
        code = main([str(a) for a in ("-w", ws, "-q", "--set", "lens.kappa.train.depth=2", "--set",
                                      "lens.kappa.train.width=4", "lens", "kappa", "train", "--dataset", "tiny",
                                      "--epochs", 1, "--batch-size", 8)])
    assert code == 0
    return ws, np.asarray(eps, np.float16)


def test_predict_and_export_end_to_end(trained, capsys):
    from astrotool.ml.predict import predict
    from astrotool_lens.kappa.model import load_unet, model_inputs

    ws, eps = trained
    pred = ws / "lens" / "kappa" / "predictions"
    mdir = ws / "lens" / "kappa" / "models" / "tiny_unet"
    test_names = [f"m{i:04d}" for i in range(20, 26)]

    code, _, err = run(capsys, "-w", ws, "-q", "lens", "kappa", "predict", "tiny", "--model", "tiny_unet",
                       "--engine", "onnxruntime")
    assert code == 2 and "run `astro lens kappa export` first" in err

    code, out, err = run(capsys, "-w", ws, "-q", "lens", "kappa", "predict", "tiny", "--model", "tiny_unet",
                         "--batch-size", 4)
    assert code == 0, err
    res = json.loads(out)
    assert res["output"] == str(pred / "tiny_tiny_unet") and res["computed"] == 6 and res["samples_per_s"] > 0
    torch_maps = {p.stem: np.load(p) for p in sorted((pred / "tiny_tiny_unet").glob("*.npy"))}
    assert sorted(torch_maps) == test_names                  # names in = names out
    assert all(m.dtype == np.float16 and m.shape == (32, 32) for m in torch_maps.values())
    with zipfile.ZipFile(res["zip"]) as zf:
        assert sorted(zf.namelist()) == [f"{n}.npy" for n in test_names]
    model, meta = load_unet(mdir)
    x = model_inputs(eps[20:], meta)
    direct = predict(model, x, batch_size=6).outputs
    assert np.array_equal(np.stack([torch_maps[n] for n in test_names]), direct.astype(np.float16))

    code, out, err = run(capsys, "-w", ws, "-q", "lens", "kappa", "export", "--model", "tiny_unet")
    assert code == 0, err
    ex = json.loads(out)
    assert ex["max_abs_diff"] <= 1e-5 and ex["tol"] == 1e-5 and ex["parity_inputs"].endswith("tiny")
    onnx_out = predict(mdir / "model.onnx", x, batch_size=4).outputs  # another batch size: the axis is dynamic
    assert np.abs(onnx_out - direct).max() <= 1e-5

    code, out, err = run(capsys, "-w", ws, "-q", "lens", "kappa", "predict", "tiny", "--model", "tiny_unet",
                         "--engine", "onnxruntime", "--output", "onnx_run", "--no-zip")
    assert code == 0, err
    assert json.loads(out)["engine"] == "onnxruntime" and json.loads(out)["zip"] is None
    onnx_maps = {p.stem: np.load(p) for p in sorted((pred / "onnx_run").glob("*.npy"))}
    assert sorted(onnx_maps) == test_names
    for n in test_names:  # equal up to float16 rounding of outputs within 1e-5
        assert np.abs(onnx_maps[n].astype(np.float32) - torch_maps[n].astype(np.float32)).max() <= 1e-3

    # again: every map kept; a lost one recomputed alone
    (pred / "tiny_tiny_unet" / f"{test_names[3]}.npy").unlink()
    code, out, err = run(capsys, "-w", ws, "-q", "lens", "kappa", "predict", "tiny", "--model", "tiny_unet")
    assert code == 0, err
    assert (json.loads(out)["computed"], json.loads(out)["kept"]) == (1, 5)
    assert np.array_equal(np.load(pred / "tiny_tiny_unet" / f"{test_names[3]}.npy"), torch_maps[test_names[3]])
    # another split into the same run: refused, the key named
    code, _, err = run(capsys, "-w", ws, "-q", "lens", "kappa", "predict", "tiny", "--model", "tiny_unet",
                       "--split", "val", "--output", "tiny_tiny_unet")
    assert code == 2 and 'split: "test" -> "val"' in err

    code, _, err = run(capsys, "-w", ws, "-q", "lens", "kappa", "predict", "tiny", "--model", "nope")
    assert code == 2


def test_predict_bad_input_keeps_the_maps_written(trained, capsys, tmp_path):
    ws, eps = trained
    folder = tmp_path / "EPSILON"
    folder.mkdir()
    for i in range(6):
        np.save(folder / f"x{i:02d}.npy", eps[i])
    bad = eps[4].copy()
    bad[0, 3, 3] = np.nan
    np.save(folder / "x04.npy", bad)
    code, _, err = run(capsys, "-w", ws, "-q", "lens", "kappa", "predict", folder, "--model", "tiny_unet",
                       "--output", "bad", "--batch-size", 2)
    assert code == 2 and "x04" in err and "NaN" in err, err
    done = sorted(p.stem for p in (ws / "lens" / "kappa" / "predictions" / "bad").glob("*.npy"))
    assert done == ["x00", "x01", "x02", "x03"]          # the batches before the bad map stay
    np.save(folder / "x04.npy", eps[4, :2])               # wrong shape
    code, _, err = run(capsys, "-w", ws, "-q", "lens", "kappa", "predict", folder, "--model", "tiny_unet",
                       "--output", "bad", "--batch-size", 2)
    assert code == 2 and "x04" in err, err
    np.save(folder / "x04.npy", eps[4])
    code, out, err = run(capsys, "-w", ws, "-q", "lens", "kappa", "predict", folder, "--model", "tiny_unet",
                         "--output", "bad", "--batch-size", 2)
    assert code == 0, err
    assert (json.loads(out)["computed"], json.loads(out)["kept"]) == (2, 4)


def test_onnx_of_other_weights_is_refused_and_run_names(trained, capsys, tmp_path):
    from astrotool.errors import InputError
    from astrotool_lens.kappa.predict import check_onnx, default_run_name

    ws, _ = trained
    mdir = ws / "lens" / "kappa" / "models" / "tiny_unet"
    with pytest.raises(InputError, match="run `astro lens kappa export` first"):
        check_onnx(mdir / "absent.onnx", {})
    out = tmp_path / "elsewhere.onnx"
    code, _, err = run(capsys, "-w", ws, "-q", "lens", "kappa", "export", "--model", "tiny_unet", "--output", out)
    assert code == 0, err
    meta = json.loads((mdir / "model.json").read_text())
    check_onnx(out, meta)
    with pytest.raises(InputError, match="other weights") as e:
        check_onnx(out, {**meta, "weights_sha256": "0" * 64})
    # before: "(retrained or calibrated since)", though a U-Net has no calibration
    assert "retrained since" in str(e.value) and "calibrated" not in str(e.value)
    assert default_run_name("/data/test_public.tar.gz", "sims_unet") == "test_public_sims_unet"
    assert default_run_name("/data/set 2/", "m") == "set_2_m"


def test_a_repacked_data_set_under_the_same_name_is_refused(trained, capsys):
    import shutil

    ws, _ = trained
    data = ws / "lens" / "kappa" / "data"
    eps, kappa = pairs(4, 32, np.random.default_rng(11))
    write_set(data, "other", eps, kappa, ["test"] * 4)
    args = ("-w", ws, "-q", "lens", "kappa", "predict", "other", "--model", "tiny_unet", "--output", "other_run")
    code, out, err = run(capsys, *args)
    assert code == 0, err
    assert json.loads(out)["computed"] == 4
    # the same names, other maps: the finished predictions must not be kept as if they were of these
    shutil.rmtree(data / "other")
    write_set(data, "other", eps[::-1].copy(), kappa, ["test"] * 4)
    code, _, err = run(capsys, *args)
    assert code == 2 and "source.manifest_sha256" in err


def test_a_folder_map_rewritten_after_its_prediction_is_predicted_again(trained, capsys, tmp_path):
    import os

    ws, eps = trained
    folder = tmp_path / "inputs" / "EPSILON"
    folder.mkdir(parents=True)
    for i in range(3):
        np.save(folder / f"f{i}.npy", eps[i])
    args = ("-w", ws, "-q", "lens", "kappa", "predict", folder.parent, "--model", "tiny_unet", "--output", "frun")
    code, out, err = run(capsys, *args)
    assert code == 0 and json.loads(out)["computed"] == 3, err
    out_dir = ws / "lens" / "kappa" / "predictions" / "frun"
    before = np.load(out_dir / "f1.npy")
    np.save(folder / "f1.npy", eps[5])
    t = os.stat(out_dir / "f1.npy").st_mtime_ns + 10**9
    os.utime(folder / "f1.npy", ns=(t, t))  # newer than its prediction, whatever the clock's resolution
    code, out, err = run(capsys, *args)
    assert code == 0 and (json.loads(out)["computed"], json.loads(out)["kept"]) == (1, 2), err
    assert not np.array_equal(np.load(out_dir / "f1.npy"), before)
    # another map copied over an input with its own, older time (cp -p, tar x, rsync -a): it was kept
    before = np.load(out_dir / "f2.npy")
    np.save(folder / "f2.npy", eps[6])
    os.utime(folder / "f2.npy", ns=(1, 1))
    code, out, err = run(capsys, *args)
    assert code == 0 and (json.loads(out)["computed"], json.loads(out)["kept"]) == (1, 2), err
    assert not np.array_equal(np.load(out_dir / "f2.npy"), before)
    code, out, err = run(capsys, *args)
    assert code == 0 and json.loads(out)["computed"] == 0, err
    whole = (out_dir / "f0.npy").read_bytes()   # a map cut short by hand: it was kept and zipped
    (out_dir / "f0.npy").write_bytes(whole[:100])
    code, out, err = run(capsys, *args)
    assert code == 0 and (json.loads(out)["computed"], json.loads(out)["kept"]) == (1, 2), err
    assert (out_dir / "f0.npy").read_bytes() == whole


def test_overwrite_keeps_the_finished_run_until_the_new_one_is_complete(trained, capsys, tmp_path):
    ws, eps = trained
    folder = tmp_path / "ow" / "EPSILON"
    folder.mkdir(parents=True)
    for i in range(5):
        np.save(folder / f"o{i}.npy", eps[i])
    args = ("-w", ws, "-q", "lens", "kappa", "predict", folder.parent, "--model", "tiny_unet", "--output", "orun",
            "--batch-size", 2)
    code, out, err = run(capsys, *args)
    assert code == 0, err
    out_dir = ws / "lens" / "kappa" / "predictions" / "orun"
    before = {p.name: p.read_bytes() for p in out_dir.iterdir()}
    zip_before = (out_dir.parent / "orun.zip").read_bytes()
    bad = eps[3].copy()
    bad[1, 2, 2] = np.nan
    np.save(folder / "o3.npy", bad)
    code, _, err = run(capsys, "--overwrite", *args)
    assert code == 2 and "o3" in err and "NaN" in err and "kept as it was" in err, err
    assert {p.name: p.read_bytes() for p in out_dir.iterdir()} == before     # the finished run, whole
    assert (out_dir.parent / "orun.zip").read_bytes() == zip_before
    assert json.loads((out_dir / INFO_FILE).read_text())["complete"]
    assert not [p for p in out_dir.parent.iterdir() if p.name.startswith(".orun")]  # no temporary folder


def test_a_failed_rerun_on_a_changed_input_leaves_no_complete_run_with_a_stale_map(trained, capsys, tmp_path):
    import os

    ws, eps = trained
    folder = tmp_path / "st" / "EPSILON"
    folder.mkdir(parents=True)
    for i in range(4):
        np.save(folder / f"s{i}.npy", eps[i])
    args = ("-w", ws, "-q", "lens", "kappa", "predict", folder.parent, "--model", "tiny_unet", "--output", "srun")
    code, out, err = run(capsys, *args)
    assert code == 0, err
    out_dir = ws / "lens" / "kappa" / "predictions" / "srun"
    bad = eps[2].copy()
    bad[0, 1, 1] = np.nan
    np.save(folder / "s2.npy", bad)
    t = os.stat(out_dir / "s2.npy").st_mtime_ns + 10**9
    os.utime(folder / "s2.npy", ns=(t, t))
    code, _, err = run(capsys, *args)
    assert code == 2 and "s2" in err and "NaN" in err and "marked not complete" in err, err
    info = json.loads((out_dir / INFO_FILE).read_text())
    assert info["complete"] is False
    assert not (out_dir / "s2.npy").exists() and not (out_dir.parent / "srun.zip").exists()
    assert sorted(p.stem for p in out_dir.glob("*.npy")) == ["s0", "s1", "s3"]   # the others stay
    np.save(folder / "s2.npy", eps[2])
    code, out, err = run(capsys, *args)
    assert code == 0 and (json.loads(out)["computed"], json.loads(out)["kept"]) == (1, 3), err


def test_predict_under_shard_computes_its_share_and_the_last_task_completes_the_run(trained, capsys):
    ws, _ = trained
    pred = ws / "lens" / "kappa" / "predictions"
    args = ("lens", "kappa", "predict", "tiny", "--model", "tiny_unet", "--output", "shp")
    code, out, err = run(capsys, "-w", ws, "-q", "--shard", "1/2", *args)
    assert code == 0, err
    res = json.loads(out)
    assert (res["computed"], res["missing"], res["zip"]) == (3, 3, None)
    assert not json.loads((pred / "shp" / INFO_FILE).read_text())["complete"]
    code, out, err = run(capsys, "-w", ws, "-q", "--shard", "0/2", *args)
    assert code == 0, err
    res = json.loads(out)
    assert (res["computed"], res["missing"]) == (3, 0) and res["zip"]
    assert json.loads((pred / "shp" / INFO_FILE).read_text())["complete"]


def test_export_opset_range_is_the_one_the_command_accepts(trained, capsys):
    from astrotool.ml.export import onnx_opsets

    ws, _ = trained
    high = onnx_opsets()[1]
    code, _, err = run(capsys, "-w", ws, "lens", "kappa", "export", "--model", "tiny_unet", "--opset", 99)
    assert code == 2 and f"opsets 11 to {high}" in err, err
    code, _, err = run(capsys, "-w", ws, "lens", "kappa", "export", "--model", "tiny_unet", "--opset", 9)
    assert code == 2 and "greater than or equal to 11" in err, err


def test_an_overwrite_interrupted_while_the_old_run_is_deleted_is_not_marked_complete(tmp_path, monkeypatch):
    """prediction.json said complete while the zip beside it still held the old run's maps."""
    import shutil

    folder = tmp_path / "run"

    def run(value, overwrite):
        with PredictionWriter(folder, {"model": {"name": f"m{value}"}, "n": 2}, overwrite=overwrite) as w:
            w.write(["a", "b"], np.full((2, 4, 4), value, np.float32))
            w.finish(zip=True)

    run(1.0, False)
    real = shutil.rmtree

    def rmtree(p, *a, **k):   # Ctrl-C while the replaced run (maps of value 1) is being deleted
        if (tmp_path / p).is_dir() and any(float(np.load(f)[0, 0]) == 1.0 for f in (tmp_path / p).glob("*.npy")):
            raise KeyboardInterrupt
        return real(p, *a, **k)

    monkeypatch.setattr(shutil, "rmtree", rmtree)
    with pytest.raises(KeyboardInterrupt):
        run(2.0, True)
    monkeypatch.setattr(shutil, "rmtree", real)
    info = json.loads((folder / INFO_FILE).read_text())
    with zipfile.ZipFile(tmp_path / "run.zip") as z:
        zipped = float(np.load(z.open("a.npy"))[0, 0])
    assert float(np.load(folder / "a.npy")[0, 0]) == 2.0   # the new run is in place ...
    assert not info["complete"] or zipped == 2.0           # ... and marked complete only with its own zip
