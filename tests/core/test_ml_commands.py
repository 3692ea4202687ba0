"""astrotool.ml.commands: model names, datasets, overwrite/resume, seeds, progress, run records, runtime options."""

from __future__ import annotations

import json

import pytest

from astrotool.context import Context
from astrotool.errors import AstroError, InputError
from astrotool.ml import commands as mc


@pytest.fixture
def ctx(tmp_path):
    return Context.create(tmp_path / "ws", command="toy train")


def _checkpoint(folder, last=True, epochs_done=2):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.safetensors").write_bytes(b"w")
    (folder / "model.json").write_text("{}")
    if last:
        (folder / "last").mkdir(exist_ok=True)
        (folder / "last" / "training_state.json").write_text(json.dumps({"loop": {"epochs_done": epochs_done}}))
    return folder


def test_model_names_are_file_stems(ctx, tmp_path):
    models = ctx.workspace.root / "toy" / "models"
    assert mc.model_dir(ctx, "toy", "run-1.b_2") == models / "run-1.b_2"
    for bad in ("../escape", "a/b", ".hidden", "-flag", "two words", "x\n"):
        with pytest.raises(InputError, match="neither a checkpoint folder") as e:
            mc.model_dir(ctx, "toy", bad)
        assert str(e.value).startswith("--model: ")
    with pytest.raises(InputError, match="no model name"):
        mc.model_dir(ctx, "toy", "")
    # a path to an existing checkpoint folder is taken as it is, wherever it is
    elsewhere = _checkpoint(tmp_path / "else" / "net")
    assert mc.model_dir(ctx, "toy", str(elsewhere)) == elsewhere
    # a plain name found in the stage wins over a same-named folder in the current directory
    _checkpoint(models / "net")
    assert mc.model_dir(ctx, "toy", "net") == models / "net"
    assert mc.checkpoint_files(models / "net") == [models / "net" / "model.safetensors", models / "net" / "model.json"]
    # a model that must exist: a missing name is refused listing the trained ones (it only said
    # "no checkpoint here" once loaded, and not which models there are)
    assert mc.model_dir(ctx, "toy", "net", trained=True) == models / "net"
    (models / "half").mkdir()   # a folder without a checkpoint is no model
    with pytest.raises(InputError, match=r"no trained model named 'nte' in .*\(available: net\)"):
        mc.model_dir(ctx, "toy", "nte", trained=True)
    assert mc.model_dir(ctx, "toy", "nte") == models / "nte"   # training makes it


def test_prepare_training_new_resume_refuse_restart(tmp_path):
    d = tmp_path / "m"
    assert mc.prepare_training(d, overwrite=False, resume=True) == "new"
    _checkpoint(d)
    (d / "model.onnx").write_bytes(b"stale")
    assert mc.prepare_training(d, overwrite=False, resume=True) == "resume"
    assert (d / "model.json").exists()  # resuming deletes nothing
    with pytest.raises(AstroError, match="--no-resume was asked for; use --overwrite") as e:
        mc.prepare_training(d, overwrite=False, resume=False)
    assert str(d) in str(e.value)
    assert (d / "model.safetensors").exists()  # refused: nothing deleted
    assert mc.prepare_training(d, overwrite=True, resume=True) == "restart"
    assert sorted(p.name for p in d.iterdir()) == [".replaced"]  # checkpoint, last/ and the export set aside
    assert sorted(p.name for p in (d / ".replaced").iterdir()) == ["last", "model.json", "model.onnx",
                                                                   "model.safetensors"]
    (d / ".replaced" / "model.onnx").unlink()
    # no epoch was saved: the next run (or this one's exit) puts the previous model back
    assert mc.prepare_training(d, overwrite=False, resume=True) == "resume"
    assert sorted(p.name for p in d.iterdir()) == ["last", "model.json", "model.safetensors"]
    mc.prepare_training(d, overwrite=True, resume=True)
    (d / ".replaced").rename(tmp_path / "gone")
    _checkpoint(d)
    assert mc.prepare_training(d, overwrite=True, resume=True, clear=False) == "restart"  # not rank 0
    assert (d / "model.json").exists() and (d / "last").is_dir()
    # a model without a resumable state is not silently replaced either
    mc.prepare_training(d, overwrite=True, resume=True)
    _checkpoint(d, last=False)
    with pytest.raises(AstroError, match="without a resumable state"):
        mc.prepare_training(d, overwrite=False, resume=True)


def _last_settings(folder, settings):
    (folder / "last" / "model.json").write_text(json.dumps({
        "format": "astrotool-checkpoint", "format_version": 1, "architecture": {"name": "toy"},
        "settings": settings}))


def test_a_stopped_overwrite_goes_on_from_its_own_last_epoch(tmp_path):
    """Each Slurm submission of `train --overwrite` that hit the time limit started from scratch again: it never
    finished. A last/ state saved since the overwrite began, with these settings, is resumed; with several
    processes (which started from scratch) rank 0 decides and the others take its decision."""
    from astrotool.made_with import Overwrite

    d = _checkpoint(tmp_path / "m")
    _last_settings(d, {"lr": 0.1})
    saved = (d / "last" / "training_state.json").stat().st_mtime
    mine = Overwrite(saved - 5)     # the overwrite began before that epoch was saved
    shared = []   # what rank 0 broadcasts
    assert mc.prepare_training(d, overwrite=mine, resume=True, settings={"lr": 0.1}, clear=True,
                               share=lambda own: shared.append(own) or own) == "resume" and shared == [True]
    for decided, action in ((True, "resume"), (False, "restart")):   # another rank follows rank 0, whatever it sees
        assert mc.prepare_training(d, overwrite=mine, resume=True, settings={"lr": 0.2}, clear=False,
                                   share=lambda own: decided) == action
    assert (d / "model.json").exists() and (d / "last").is_dir()   # nothing set aside: only rank 0 clears
    assert mc.prepare_training(d, overwrite=mine, resume=True, settings={"lr": 0.1}, alone=False) == "restart"
    assert mc.prepare_training(d, overwrite=mine, resume=True, settings={"lr": 0.1}) == "resume"
    assert (d / "model.json").exists() and (d / "last").is_dir()   # nothing set aside
    assert mc.prepare_training(d, overwrite=mine, resume=True, settings=None) == "restart"   # cannot compare
    _checkpoint(d)
    _last_settings(d, {"lr": 0.1})
    assert mc.prepare_training(d, overwrite=mine, resume=True, settings={"lr": 0.2}) == "restart"   # others
    _checkpoint(d)
    _last_settings(d, {"lr": 0.1})
    assert mc.prepare_training(d, overwrite=mine, resume=False, settings={"lr": 0.1}) == "restart"  # --no-resume
    _checkpoint(d)
    _last_settings(d, {"lr": 0.1})
    later = (d / "last" / "training_state.json").stat().st_mtime + 5   # an older model's: replaced
    assert mc.prepare_training(d, overwrite=Overwrite(later), resume=True, settings={"lr": 0.1}) == "restart"
    assert not (d / "last").exists()


def test_an_interrupted_overwrite_keeps_the_previous_model(tmp_path):
    """``train --overwrite`` stopped before its first epoch left an empty model folder."""
    import subprocess
    import sys

    d = _checkpoint(tmp_path / "m")
    script = ("import sys; from astrotool.ml import commands as mc; "
              f"mc.prepare_training({str(d)!r}, overwrite=True, resume=True); sys.exit('stopped in epoch 0')")
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert r.returncode == 1 and "stopped in epoch 0" in r.stderr
    assert sorted(p.name for p in d.iterdir()) == ["last", "model.json", "model.safetensors"]
    assert (d / "model.safetensors").read_bytes() == b"w"


def test_a_set_aside_model_comes_back_unless_a_new_model_was_saved(tmp_path, monkeypatch):
    from pathlib import Path

    from astrotool.ml.checkpoint import discard_set_aside, restore_set_aside, set_aside

    names = ["model.safetensors", "model.json", "last"]
    # the new run's epochs never improved (NaN validation loss): only its last/ exists, the old model is kept
    d = _checkpoint(tmp_path / "nan")
    set_aside(d, names)
    (d / "last").mkdir()
    (d / "last" / "training_state.json").write_text("{}")
    discard_set_aside(d)                                 # after an epoch that saved no model.json: nothing goes
    assert restore_set_aside(d)
    assert sorted(p.name for p in d.iterdir()) == ["last", "model.json", "model.safetensors"]
    assert (d / "model.safetensors").read_bytes() == b"w" and "loop" in (d / "last" / "training_state.json").read_text()
    # a move that stopped half-way (model.json could not be moved): the weights come back
    d = _checkpoint(tmp_path / "half")
    real = Path.rename

    def rename(self, target):
        if self.name == "model.json":
            raise OSError("device busy")
        return real(self, target)

    monkeypatch.setattr(Path, "rename", rename)
    with pytest.raises(OSError):
        set_aside(d, names)
    monkeypatch.setattr(Path, "rename", real)
    assert restore_set_aside(d)
    assert sorted(p.name for p in d.iterdir()) == ["last", "model.json", "model.safetensors"]
    # a new model saved: the old one goes
    d = _checkpoint(tmp_path / "new")
    set_aside(d, names)
    (d / "model.json").write_text('{"new": 1}')
    discard_set_aside(d)
    assert not (d / ".replaced").exists() and not restore_set_aside(d)


def test_other_ranks_decide_after_rank_0_put_an_interrupted_overwrite_back(tmp_path):
    """Rank 1 saw an empty folder ("new") while rank 0 put the model back and resumed: the ranks
    disagreed and waited for each other at the next barrier."""
    import threading
    import time

    from astrotool.ml.checkpoint import set_aside

    d = _checkpoint(tmp_path / "m")
    set_aside(d, ["model.safetensors", "model.json", "last"])     # as a killed --overwrite left it
    answers = []
    rank1 = threading.Thread(target=lambda: answers.append(mc.prepare_training(d, overwrite=False, resume=True,
                                                                               clear=False)))
    rank1.start()
    time.sleep(0.3)
    assert answers == []                                           # waits for rank 0
    assert mc.prepare_training(d, overwrite=False, resume=True) == "resume"   # rank 0 puts it back
    rank1.join(10)
    assert answers == ["resume"]


def _settings_checkpoint(folder, settings):
    """A model folder whose last/ was trained with ``settings`` (None: recorded none, as older models)."""
    _checkpoint(folder)
    meta = {"format": "astrotool-checkpoint", "format_version": 1, "architecture": {"name": "toy", "kwargs": {}}}
    if settings is not None:
        meta["settings"] = settings
    (folder / "last" / "model.json").write_text(json.dumps(meta))
    return folder


def test_prepare_training_refuses_a_resume_with_other_settings(tmp_path):
    old = {"lr": 0.002, "loss": "mse", "split": [0.8, 0.1, 0.1], "dataset": {"name": "a", "n": 100}}
    d = _settings_checkpoint(tmp_path / "m", old)
    same = {**old, "split": (0.8, 0.1, 0.1)}  # a tuple is the list it is stored as
    assert mc.prepare_training(d, overwrite=False, resume=True, settings=same) == "resume"
    changed = {**old, "lr": 0.5, "loss": "mae", "dataset": {"name": "b", "n": 100}, "target": "shear"}
    with pytest.raises(AstroError) as e:
        mc.prepare_training(d, overwrite=False, resume=True, settings=changed)
    assert e.value.exit_code == 2
    assert str(e.value) == (f'{d}: a model trained with other settings is here (dataset.name: "a" -> "b"; '
                            'loss: "mse" -> "mae"; lr: 0.002 -> 0.5; target: (absent) -> "shear"); use --overwrite '
                            "to train it again from scratch or another --model name")
    assert (d / "last" / "training_state.json").exists()  # refused: nothing deleted
    # --overwrite starts afresh whatever the settings were
    assert mc.prepare_training(d, overwrite=True, resume=True, settings=changed) == "restart"
    assert [p.name for p in d.iterdir()] == [".replaced"]  # until the new run's first epoch is saved
    # a model that recorded no settings is not resumed with some; without settings nothing is compared
    d2 = _settings_checkpoint(tmp_path / "old", None)
    with pytest.raises(AstroError, match="records no training settings to compare.*--overwrite"):
        mc.prepare_training(d2, overwrite=False, resume=True, settings=old)
    assert mc.prepare_training(d2, overwrite=False, resume=True) == "resume"


def test_dataset_identity_follows_the_content_not_the_provenance():
    from types import SimpleNamespace

    manifest = {"kind": "toy", "name": "a", "n": 10, "shards": [{"file": "s0.h5", "start": 0, "stop": 10}],
                "config": {"noise": 1.0}, "base_seed": 7, "provenance": {"created_utc": "2026-01-01T00:00:00+00:00"}}
    ident = mc.dataset_identity(SimpleNamespace(name="a", n=10, manifest=manifest))
    assert set(ident) == {"name", "n", "manifest_sha256"} and ident["name"] == "a" and ident["n"] == 10
    assert len(ident["manifest_sha256"]) == 16
    # the same dataset finished again (a new provenance) keeps its identity
    again = {**manifest, "provenance": {"created_utc": "2026-06-01T00:00:00+00:00"}}
    assert mc.dataset_identity(SimpleNamespace(name="a", n=10, manifest=again)) == ident
    # drawn with another configuration or seed: another identity
    for key, value in (("config", {"noise": 2.0}), ("base_seed", 8)):
        other = mc.dataset_identity(SimpleNamespace(name="a", n=10, manifest={**manifest, key: value}))
        assert other["manifest_sha256"] != ident["manifest_sha256"]


def test_check_trained_on_refuses_a_set_made_again_under_its_name():
    from types import SimpleNamespace

    manifest = {"kind": "toy", "shards": [{"file": "s0.h5"}], "base_seed": 7}
    ds = SimpleNamespace(name="a", n=10, manifest=manifest, root="/w/toy/data/a")
    trained = mc.dataset_identity(ds)
    mc.check_trained_on(trained, ds, "a_net")                       # the set it was trained on
    mc.check_trained_on(None, ds, "a_net")                          # a model that recorded no set
    other_name = SimpleNamespace(**{**vars(ds), "name": "b", "manifest": {**manifest, "base_seed": 8}})
    mc.check_trained_on(trained, other_name, "a_net")               # another set: a hold-out of its own
    again = SimpleNamespace(**{**vars(ds), "manifest": {**manifest, "base_seed": 8}})
    with pytest.raises(InputError, match=r"^/w/toy/data/a: not the set that model a_net was trained on, though it has its "
                                         r"name \(manifest [0-9a-f]{16} -> [0-9a-f]{16}: .*--overwrite"):
        mc.check_trained_on(trained, again, "models/a_net")


def test_trained_dataset_is_found_in_this_workspace(tmp_path):
    stage, model = tmp_path / "ws" / "toy" / "data", tmp_path / "ws" / "toy" / "models" / "m"
    (stage / "a").mkdir(parents=True)
    model.mkdir(parents=True)
    assert mc.trained_dataset(stage, model, {"dataset_path": "../../data/a", "dataset": "a"}) == str(stage / "a")
    # an absolute record of another (the original) workspace gives way to the set of its name here
    assert mc.trained_dataset(stage, model, {"dataset_path": "/elsewhere/toy/data/a", "dataset": "a"}) == \
        str(stage / "a")
    assert mc.trained_dataset(stage, model, {"dataset_path": "/elsewhere/b", "dataset": "b"}) == "/elsewhere/b"
    assert mc.trained_dataset(stage, model, {"dataset_path": "../../data/b", "dataset": "b"}) == "b"
    assert mc.trained_dataset(stage, model, {}) == ""


def test_dataset_record_round_trips_through_trained_dataset(tmp_path):
    import shutil

    ws = tmp_path / "ws"
    stage, model = ws / "toy" / "data", ws / "toy" / "models" / "m"
    (stage / "a").mkdir(parents=True)
    model.mkdir(parents=True)
    rec = mc.dataset_record(stage / "a", model)
    assert rec == "../../data/a"                                     # relative to the model folder
    assert mc.trained_dataset(stage, model, {"dataset_path": rec, "dataset": "a"}) == str((stage / "a").resolve())
    # a copied workspace reads its own copy, also with the original gone
    shutil.copytree(ws, tmp_path / "copy")
    shutil.rmtree(ws)
    copy = tmp_path / "copy" / "toy"
    assert mc.trained_dataset(copy / "data", copy / "models" / "m", {"dataset_path": rec, "dataset": "a"}) == \
        str((copy / "data" / "a").resolve())
    # a set outside the workspace: absolute, read as it is
    (tmp_path / "outside").mkdir()
    rec = mc.dataset_record(tmp_path / "outside", copy / "models" / "m")
    assert rec == str((tmp_path / "outside").resolve())
    assert mc.trained_dataset(copy / "data", copy / "models" / "m", {"dataset_path": rec, "dataset": "outside"}) == rec


def test_open_dataset_by_name_or_path_and_recorded(ctx, tmp_path):
    stage = ctx.workspace.stage("toy", "data")
    (stage / "set1").mkdir()
    (stage / "set1" / "set1_dataset.json").write_text("{}")
    other = tmp_path / "elsewhere" / "set2"
    other.mkdir(parents=True)
    (other / "set2_dataset.json").write_text("{}")
    opened = []

    class Opener:
        def __init__(self, path):
            opened.append(path)
            self.root = path

    assert mc.open_dataset(ctx, "toy", "data", "set1", Opener).root == stage / "set1"
    assert mc.open_dataset(ctx, "toy", "data", str(other), Opener).root == other
    assert opened == [stage / "set1", other]
    assert ctx.record.inputs == [str(stage / "set1"), str(other)]
    with pytest.raises(InputError, match=r"no dataset named 'nope' \(available: set1\)") as e:
        mc.open_dataset(ctx, "toy", "data", "nope", Opener)
    assert str(stage / "nope") in str(e.value)
    with pytest.raises(InputError, match=r"no dataset given .*run `astro toy make` first"):
        mc.open_dataset(ctx, "toy", "data", "", Opener, hint="run `astro toy make` first")
    assert len(opened) == 2 and len(ctx.record.inputs) == 2


def test_stage_seed_later_layer_wins(tmp_path, capfd):
    """A stage's own seed replaces core.seed, unless core.seed comes from a later layer (--seed over a file)."""
    cfg = tmp_path / "site.toml"
    cfg.write_text("[lens.train]\nseed = 3\n")
    key = "lens.train.seed"

    def used(**options):
        ctx = Context.create(tmp_path / "w", **options)
        capfd.readouterr()
        return ctx.stage_seed(ctx.section("lens").train.seed, key), capfd.readouterr().err

    assert used() == (0, "")   # nothing set: core.seed's default
    assert used(cfg=[str(cfg)]) == (3, "")   # core.seed left at its default
    seed, told = used(cfg=[str(cfg)], seed=7)   # --seed 7: a later layer than the file
    assert seed == 7 and "seed 7 (core.seed, command-line option --seed) is used, not lens.train.seed = 3" in told
    seed, told = used(cfg=[str(cfg)], set=["core.seed=7", "lens.train.seed=0"])
    assert seed == 0 and "seed 0 (lens.train.seed, --set) is used, not core.seed = 7 (--set)" in told   # 0 kept
    assert used(set=["lens.train.seed=5"], seed=5) == (5, "")   # the same seed: nothing to tell
    later = tmp_path / "later.toml"
    later.write_text("[core]\nseed = 7\n")
    seed, told = used(cfg=[str(cfg), str(later)])   # between files too, the later file wins
    assert seed == 7 and f"seed 7 (core.seed, {later}) is used, not lens.train.seed = 3 ({cfg})" in told
    seed, told = used(cfg=[str(later), str(cfg)])
    assert seed == 3 and f"seed 3 (lens.train.seed, {cfg}) is used, not core.seed = 7 ({later})" in told


def test_record(ctx, tmp_path):
    mc.record(ctx, inputs=[tmp_path / "a"], outputs=[tmp_path / "b", tmp_path / "c"])
    assert ctx.record.inputs == [str(tmp_path / "a")]
    assert ctx.record.outputs == [str(tmp_path / "b"), str(tmp_path / "c")]
    run = json.loads(ctx.finish("ok", 0).read_text())
    assert run["inputs"] == [str(tmp_path / "a")] and run["outputs"][-1] == str(tmp_path / "c")


def test_epoch_progress_counts_resumed_epochs(ctx, tmp_path, monkeypatch):
    calls = []

    import contextlib

    @contextlib.contextmanager
    def fake_progress(total, desc, already=0):
        calls.append(("start", total, desc, already))
        yield lambda n=1: calls.append(("advance", n))

    monkeypatch.setattr(ctx, "progress", fake_progress)
    d = _checkpoint(tmp_path / "m", epochs_done=3)
    with mc.epoch_progress(ctx, 5, "train m", d) as on_epoch:
        on_epoch({"epoch": 3})
        on_epoch({"epoch": 4})
    assert calls == [("start", 5, "train m", 3), ("advance", 1), ("advance", 1)]   # 3 done before this run
    assert mc.epochs_done(tmp_path / "nothing") == 0


def test_runtime_options_map_onto_the_ml_section(tmp_path):
    from astrotool.errors import ConfigError

    assert mc.runtime_flags(device="cuda:1", precision="bf16-mixed", devices="2", num_nodes=4) == \
        {"accelerator": "cuda:1", "precision": "bf16-mixed", "devices": 2, "num_nodes": 4}
    assert mc.runtime_flags(devices="auto")["devices"] == "auto"
    assert mc.runtime_flags() == {"accelerator": None, "precision": None, "devices": None, "num_nodes": None}
    assert set(mc.RUNTIME_KEYS) == {"device", "precision", "devices", "num_nodes"}

    ctx = Context.create(tmp_path / "ws", set=["ml.precision=bf16-mixed", "ml.devices=3"])
    rt = mc.runtime(ctx)  # nothing given: the configuration decides
    assert (rt.accelerator, rt.precision, rt.devices, rt.num_nodes) == ("auto", "bf16-mixed", 3, 1)
    rt = mc.runtime(ctx, device="cpu", precision="32", devices="2", num_nodes=2)
    assert (rt.accelerator, rt.precision, rt.devices, rt.num_nodes) == ("cpu", "32-true", 2, 2)
    ml = ctx.config.resolved()["ml"]  # the run record shows what was used
    assert (ml["accelerator"], ml["devices"], ml["num_nodes"]) == ("cpu", 2, 2)
    assert mc.runtime(ctx, device="cuda:1", devices="1").accelerator == "cuda:1"  # one named GPU
    named = Context.create(tmp_path / "ws", set=["ml.accelerator=cuda:1"])         # the same from the config
    assert named.section("ml").accelerator == "cuda:1"
    with pytest.raises(ConfigError, match="command-line option: ml.accelerator"):
        mc.runtime(ctx, device="tpu")
    with pytest.raises(ConfigError, match="ml.precision"):
        mc.runtime(ctx, precision="8-mixed")
    with pytest.raises(ConfigError, match="ml.devices"):
        mc.runtime(ctx, devices="0,1")
    with pytest.raises(AstroError, match="^--precision 16-mixed: float16 autocast"):   # named as given
        mc.runtime(ctx, device="cpu", precision="16-mixed").fabric
    with pytest.raises(AstroError, match="^ml.precision 16-mixed: float16 autocast"):
        mc.runtime(Context.create(tmp_path / "ws", set=["ml.precision=16-mixed"]), device="cpu").fabric


def test_a_device_error_names_the_setting_the_user_gave(tmp_path):
    """``train --device cuda`` on a CPU-only machine said "ml.accelerator cuda: ... use ml.accelerator cpu"."""
    import torch

    from astrotool.context import Context
    from astrotool.errors import AstroError
    from astrotool.ml.fabric import Runtime

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is visible")
    ctx = Context.create(tmp_path / "ws")
    with pytest.raises(AstroError, match=r"^--device cuda: .*use --device cpu"):
        mc.runtime(ctx, device="cuda")._accelerator_and_devices()
    ctx = Context.create(tmp_path / "ws", set=["ml.accelerator=cuda"])
    with pytest.raises(AstroError, match=r"^ml.accelerator cuda: "):
        mc.runtime(ctx)._accelerator_and_devices()
    for library in ("torch", "onnxruntime"):   # inference names it alike (it said --device)
        with pytest.raises(AstroError, match=r"^ml.accelerator cuda: "):
            mc.runtime(ctx).inference_device(library)
        with pytest.raises(AstroError, match=r"^--device cuda: "):
            mc.runtime(ctx, device="cuda").inference_device(library)
    assert mc.runtime(ctx, device="cpu").inference_device() == "cpu"
    with pytest.raises(TypeError, match="acelerator"):   # a misspelt key of a mapping was ignored
        Runtime.from_config({"acelerator": "cpu"})
    with pytest.raises(TypeError, match="accelerator_option"):   # how messages name it, not a setting
        Runtime.from_config({"accelerator": "cpu", "accelerator_option": "xx"})


def test_runtime_options_are_declared_once_as_typer_options():
    import typer
    from typer.testing import CliRunner

    app = typer.Typer()

    @app.command()
    def train(device: mc.Device = None, precision: mc.Precision = None, devices: mc.Devices = None,
              num_nodes: mc.NumNodes = None):
        typer.echo(json.dumps(mc.runtime_flags(device, precision, devices, num_nodes)))

    res = CliRunner().invoke(app, ["--device", "cpu", "--precision", "16-mixed", "--devices", "2",
                                   "--num-nodes", "2"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output) == {"accelerator": "cpu", "precision": "16-mixed", "devices": 2, "num_nodes": 2}
    helptext = CliRunner().invoke(app, ["--help"]).output
    assert "ml.accelerator" in helptext and "ml.num_nodes" in helptext


def test_export_checked_records_and_report_throughput(ctx, tmp_path, caplog):
    import logging

    import numpy as np

    torch = pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    from astrotool.ml.export import ParityError
    from astrotool.ml.predict import predict

    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(6, 2)).eval()
    x = np.random.default_rng(0).normal(size=(9, 1, 2, 3)).astype(np.float32)
    res = mc.export_checked(ctx, net, x, tmp_path / "m.onnx", sources=[tmp_path / "ckpt"], tol=1e-5)
    assert res["samples"] == 9 and res["max_abs_diff"] <= 1e-5
    assert ctx.record.inputs == [str(tmp_path / "ckpt")] and ctx.record.outputs == [str(tmp_path / "m.onnx")]

    class Branchy(torch.nn.Module):  # tracing freezes the branch of the first samples
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, t):
            return self.net(t) if float(t.sum()) > 0 else -self.net(t)

    x[0] = abs(x[0])
    x[1:] = -abs(x[1:])
    with pytest.raises(ParityError, match="bad.onnx"):
        mc.export_checked(ctx, Branchy(), x, tmp_path / "bad.onnx", trace_samples=1)
    assert ctx.record.outputs == [str(tmp_path / "m.onnx")]  # a refused export is not recorded

    pred = predict(tmp_path / "m.onnx", x, batch_size=4)
    with caplog.at_level(logging.INFO, logger="astro"):
        keys = mc.report_throughput(ctx, pred, "stamps")
    assert keys["engine"] == "onnxruntime" and keys["device"] == "CPUExecutionProvider" and keys["samples_per_s"] > 0
    assert "predicted 9 stamps in" in caplog.text and "stamps/s (onnxruntime on CPUExecutionProvider, batch 4" \
        in caplog.text
    empty = predict(net, x[:0])
    assert mc.report_throughput(ctx, empty)["samples_per_s"] is None  # JSON has no NaN


def test_warn_schedule_change_names_both_epoch_counts(tmp_path, caplog):
    import json
    import logging

    from astrotool.ml.checkpoint import FORMAT, LAST_DIR, META_FILE
    from astrotool.ml.commands import warn_schedule_change

    (tmp_path / LAST_DIR).mkdir()
    meta = {"format": FORMAT, "architecture": {"name": "toy"}, "hyperparameters": {"epochs": 5}}
    (tmp_path / LAST_DIR / META_FILE).write_text(json.dumps(meta))
    log = logging.getLogger("test-schedule")
    with caplog.at_level(logging.WARNING, logger="test-schedule"):
        warn_schedule_change(tmp_path, 5, log)
    assert not caplog.records
    with caplog.at_level(logging.WARNING, logger="test-schedule"):
        warn_schedule_change(tmp_path, 8, log)
    assert "spans 8 epochs instead of 5" in caplog.text


def test_warn_schedule_change_is_silent_when_no_epoch_will_run(tmp_path, caplog):
    import json
    import logging

    from astrotool.ml.checkpoint import FORMAT, LAST_DIR, META_FILE, STATE_META_FILE
    from astrotool.ml.commands import warn_schedule_change

    (tmp_path / LAST_DIR).mkdir()
    meta = {"format": FORMAT, "architecture": {"name": "toy"}, "hyperparameters": {"epochs": 2}}
    (tmp_path / LAST_DIR / META_FILE).write_text(json.dumps(meta))
    (tmp_path / LAST_DIR / STATE_META_FILE).write_text(json.dumps({"loop": {"epochs_done": 2}}))
    log = logging.getLogger("test-schedule-done")
    with caplog.at_level(logging.WARNING, logger="test-schedule-done"):
        warn_schedule_change(tmp_path, 1, log)   # 2 done, 1 asked for: nothing trains
        warn_schedule_change(tmp_path, 2, log)
    assert not caplog.records
    with caplog.at_level(logging.WARNING, logger="test-schedule-done"):
        warn_schedule_change(tmp_path, 3, log)
    assert "spans 3 epochs instead of 2" in caplog.text


def test_an_overwrite_sets_aside_what_a_stopped_save_left_too(tmp_path):
    """A complete ``.last.old/`` beside a model (a save stopped between its renames) is the old run's: an
    --overwrite sets it aside with the rest, else the new run would resume it."""
    from astrotool.ml.checkpoint import LAST_NEW_DIR, LAST_OLD_DIR, resolve_last, restore_set_aside

    d = _checkpoint(tmp_path / "m")
    (d / "last").rename(d / LAST_OLD_DIR)
    (d / LAST_OLD_DIR / "model.json").write_text("{}")
    assert mc.epochs_done(d) == 2
    assert mc.prepare_training(d, overwrite=True, resume=True, clear=False) == "restart"   # rank 1: sees a model
    assert mc.prepare_training(d, overwrite=True, resume=True) == "restart"
    assert sorted(p.name for p in d.iterdir()) == [".replaced"]
    assert resolve_last(d) == d / "last" and mc.epochs_done(d) == 0
    # the new run stopped while saving its first epoch: the old model comes back, the new run's half set goes
    (d / LAST_NEW_DIR).mkdir()
    assert restore_set_aside(d)
    assert sorted(p.name for p in d.iterdir()) == ["last", "model.json", "model.safetensors"]
    assert mc.epochs_done(d) == 2


def _real_pair(folder, value, epochs_done=1):
    """A checkpoint pair written by save_checkpoint, weights all ``value``."""
    import torch

    from astrotool.ml.checkpoint import save_checkpoint

    m = torch.nn.Linear(2, 1)
    with torch.no_grad():
        for p in m.parameters():
            p.fill_(float(value))
    meta = {"architecture": {"name": "lin", "kwargs": {}}, "metrics": {"epoch": value},
            "training_progress": {"epochs_done": epochs_done, "epochs": 3, "finished": False},
            "settings": {"lr": 1}}
    return save_checkpoint(folder, m, meta), m, meta


@pytest.mark.parametrize("left", ["stage", "swap"])
def test_other_ranks_decide_after_rank_0_settled_a_stopped_save(tmp_path, left):
    """Rank 1 looked at the folder before rank 0 settled what a stopped save left (an incomplete
    .model.new/, or last/ between save_last's renames) and refused while rank 0 went on: the ranks
    disagreed and rank 0 waited at the barrier until the collective timeout."""
    import threading
    import time

    import torch

    from astrotool.ml import checkpoint as ck

    d = tmp_path / "m"
    if left == "stage":   # the first epoch stopped while its best checkpoint's weights were staged
        (d / ".model.new").mkdir(parents=True)
        (d / ".model.new" / "model.safetensors").write_bytes(b"x" * 100)
    else:                 # stopped between save_last's renames: last/ -> .last.old/ done, .last.new/ -> last/ not
        _, m, meta = _real_pair(d, 1)
        o = torch.optim.Adam(m.parameters())
        ck.save_last(d, m, meta, o, {"epochs_done": 1})
        ck.save_checkpoint(d / ".last.new", m, meta)
        ck.save_training_state(d / ".last.new", o, {"epochs_done": 2})
        (d / "last").rename(d / ".last.old")
    answers = []

    def rank1():
        try:
            answers.append(mc.prepare_training(d, overwrite=False, resume=True, clear=False, settings={"lr": 1}))
        except AstroError as exc:
            answers.append(exc)

    t = threading.Thread(target=rank1)
    t.start()                                                      # rank 1 first
    time.sleep(0.3)
    assert answers == []                                           # waits for rank 0's repair
    rank0 = mc.prepare_training(d, overwrite=False, resume=True, clear=True, settings={"lr": 1})
    t.join(10)
    assert answers == [rank0] == (["new"] if left == "stage" else ["resume"])


def test_a_trained_model_dir_settles_a_pair_a_stopped_save_left_staged(ctx):
    """Plugins open <model>/model.json and model.safetensors themselves: a pair left in .model.new/ by a
    save that a kill cut short was missed (the previous pair, or none after the first epoch)."""
    import shutil

    from astrotool.ml.checkpoint import _saving, load_checkpoint

    models = ctx.workspace.root / "toy" / "models"
    d, _, _ = _real_pair(models / "net", 1)
    new, _, _ = _real_pair(ctx.workspace.root / "elsewhere", 2, epochs_done=2)
    (d / ".model.new").mkdir()
    shutil.copy(new / "model.safetensors", d / ".model.new")
    # a save under way (another process or thread holds the folder): nothing is moved
    shutil.copy(new / "model.json", d / ".model.new")
    with _saving(d):
        import threading

        t = threading.Thread(target=mc.model_dir, args=(ctx, "toy", "net"), kwargs={"trained": True})
        t.start()
        t.join(10)
    assert (d / ".model.new" / "model.json").is_file() and json.loads((d / "model.json").read_text())["metrics"] \
        == {"epoch": 1}
    # a staged pair without its model.json (written last: a save under way, or cut short) is left alone
    (d / ".model.new" / "model.json").unlink()
    assert mc.model_dir(ctx, "toy", "net", trained=True) == d
    assert (d / ".model.new" / "model.safetensors").is_file()
    assert json.loads((d / "model.json").read_text())["metrics"] == {"epoch": 1}
    # complete and nobody saving: moved into place, so the folder's two files are the new pair
    shutil.copy(new / "model.json", d / ".model.new")
    assert mc.model_dir(ctx, "toy", "net", trained=True) == d
    assert not (d / ".model.new").exists()
    assert json.loads((d / "model.json").read_text())["metrics"] == {"epoch": 2}
    assert (d / "model.safetensors").read_bytes() == (new / "model.safetensors").read_bytes()
    assert float(load_checkpoint(d).state_dict["weight"].flatten()[0]) == 2.0
    # the first epoch's pair, all staged: the model is found (it was "no trained model named ...")
    first = models / "first"
    (first / ".model.new").mkdir(parents=True)
    for f in ("model.safetensors", "model.json"):
        shutil.copy(new / f, first / ".model.new")
    assert mc.model_dir(ctx, "toy", "first", trained=True) == first
    assert (first / "model.json").is_file() and not (first / ".model.new").exists()
    # by path too
    other = ctx.workspace.root / "by_path"
    (other / ".model.new").mkdir(parents=True)
    for f in ("model.safetensors", "model.json"):
        shutil.copy(new / f, other / ".model.new")
    assert mc.model_dir(ctx, "toy", str(other), trained=True) == other and (other / "model.json").is_file()


def test_a_stop_during_the_first_epochs_save_is_named_in_the_refusal(tmp_path):
    """The first epoch's best checkpoint was saved, its last/ not: nothing to resume from; the message
    said only "without a resumable state"."""
    from astrotool.ml.checkpoint import LAST_NEW_DIR

    d, _, _ = _real_pair(tmp_path / "m", 1, epochs_done=1)
    (d / LAST_NEW_DIR).mkdir()                        # last/ was being written
    with pytest.raises(AstroError, match=r"a stop during the first epoch's save .* use --overwrite"):
        mc.prepare_training(d, overwrite=False, resume=True, settings={"lr": 1})
    assert not (d / LAST_NEW_DIR).exists()
    d2, _, _ = _real_pair(tmp_path / "m2", 1, epochs_done=3)   # later epochs: no such claim
    with pytest.raises(AstroError, match="without a resumable state") as e:
        mc.prepare_training(d2, overwrite=False, resume=True)
    assert "first epoch" not in str(e.value)


def test_a_staged_pair_in_a_folder_the_reader_cannot_change_is_read_where_it_is(tmp_path, monkeypatch):
    import shutil

    from astrotool.ml import checkpoint as ck

    d, _, _ = _real_pair(tmp_path / "m", 1)
    new, _, _ = _real_pair(tmp_path / "new", 2)
    (d / ".model.new").mkdir()
    for f in ("model.safetensors", "model.json"):
        shutil.copy(new / f, d / ".model.new")

    def refuse(src, dst):
        raise PermissionError(13, "Permission denied", str(src))

    monkeypatch.setattr(ck, "_rename", refuse)
    assert ck.settle_staged(d) is False
    assert float(ck.load_checkpoint(d).state_dict["weight"].flatten()[0]) == 2.0
