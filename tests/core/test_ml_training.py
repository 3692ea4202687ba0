"""astrotool.ml.training on Lightning Fabric: resume, DDP on two CPU processes, precision, [ml], seeds."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from astrotool.errors import AstroError
from astrotool.seeding import derive_seed

torch = pytest.importorskip("torch")
pytest.importorskip("lightning_fabric")

HERE = Path(__file__).resolve().parent

# The DDP runs must end within this of the one-process run: float32 all-reduce sums
# the ranks' gradients in another order, nothing else differs.
DDP_ATOL = 1e-5

# ----------------------------------------------------------------------------- a tiny problem

N_ROWS, BATCH = 39, 16  # batches of 16, 16 and 7 rows: the last one splits 3 + 4 over two ranks


def _data():
    g = np.random.default_rng(1)
    x = g.normal(size=(N_ROWS, 4)).astype(np.float32)
    y = (x @ np.array([[1.0], [-2.0], [0.5], [3.0]], dtype=np.float32) + 0.1 * np.sin(5 * x[:, :1]))
    return torch.from_numpy(x), torch.from_numpy(y.astype(np.float32))


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))


_SETTINGS = {"lr": 0.01, "seed": 3}


def _train(ckpt, epochs, *, runtime=None, rows_seen=None, resume=True, half=False, optim="adamw", patience=5,
           settings=_SETTINGS, val_losses=None, stop_in_epoch=None, log=None):
    """Train the tiny model; ``half`` keeps only the first half of every batch (a rank without all-reduce).

    ``settings``: ``meta["settings"]`` (None: none); ``val_losses``: the validation loss of each epoch (by epoch number)
    instead of the measured one; ``stop_in_epoch``: Ctrl-C after the first batch of that epoch.
    """
    from astrotool.ml.training import epoch_rng, fit

    x, y = _data()
    model = _model()
    if optim == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)

    def batches(epoch):
        order = torch.from_numpy(epoch_rng(7, epoch).permutation(N_ROWS))
        for i in range(0, N_ROWS, BATCH):
            idx = order[i:i + BATCH]
            if half:
                idx = idx[: len(idx) // 2]
            if epoch == stop_in_epoch and i > 0:
                raise KeyboardInterrupt
            yield x[idx], y[idx]

    def loss_fn(m, batch):
        if rows_seen is not None:
            rows_seen.append(int(batch[0].shape[0]))
        return torch.nn.functional.mse_loss(m(batch[0]), batch[1])

    from astrotool.ml.commands import epochs_done

    seen, done = [], epochs_done(ckpt) if resume else 0

    def validate(m):
        if val_losses is not None:
            return {"val_loss": val_losses[done + len(seen)]}
        return {"val_loss": float(torch.nn.functional.mse_loss(m(x), y))}

    meta = {"architecture": {"name": "tiny", "kwargs": {}}, **({"settings": settings} if settings is not None else {})}
    result = fit(model, opt, batches=batches, loss_fn=loss_fn, validate=validate, epochs=epochs,
                 checkpoint_dir=ckpt, meta=meta, seed=3, resume=resume, runtime=runtime, patience=patience,
                 on_epoch=seen.append, log=log)
    return model, opt, result


def _weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _max_diff(a, b):
    return max(float((a[k] - b[k]).abs().max()) for k in a)


# ----------------------------------------------------------------------------- resume


def test_resume_after_two_epochs_gives_identical_weights(tmp_path):
    from astrotool.ml import checkpoint as ck

    full, full_opt, r_full = _train(tmp_path / "full", 5)
    _train(tmp_path / "cut", 2)
    assert json.loads((tmp_path / "cut" / "last" / ck.STATE_META_FILE).read_text())["loop"]["epochs_done"] == 2
    resumed, resumed_opt, r_res = _train(tmp_path / "cut", 5)
    assert (r_res.resumed_from, r_res.epochs_run, len(r_res.history)) == (2, 3, 5)
    # what every train command reports (ztf's lacked epochs_total and resumed_from)
    summary = r_res.summary
    assert {k: summary[k] for k in ("epochs_run", "epochs_total", "resumed_from", "stopped_early")} == \
        {"epochs_run": 3, "epochs_total": 5, "resumed_from": 2, "stopped_early": False}
    assert summary["best_epoch"] == r_res.best_epoch + 1 and summary["seconds_per_epoch"] == round(
        sum(h["seconds"] for h in r_res.history[2:]) / 3, 2)
    a, b = _weights(full), _weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a), _max_diff(a, b)
    for pa, pb in zip(full_opt.state.values(), resumed_opt.state.values()):
        assert torch.equal(pa["exp_avg_sq"], pb["exp_avg_sq"])
    strip = [{k: v for k, v in h.items() if k != "seconds"} for h in r_full.history]
    assert strip == [{k: v for k, v in h.items() if k != "seconds"} for h in r_res.history]
    # the written checkpoints agree too, and the weights differ from the untrained model's
    best_a, best_b = ck.load_checkpoint(tmp_path / "full"), ck.load_checkpoint(tmp_path / "cut")
    assert best_a.meta["best_epoch"] == best_b.meta["best_epoch"] == r_full.best_epoch
    assert best_a.meta["runtime"] == {"processes": 1, "device": "cpu", "precision": "32-true"}
    assert all(torch.equal(best_a.state_dict[k], best_b.state_dict[k]) for k in best_a.state_dict)
    assert _max_diff(a, _weights(_model())) > 1e-2
    # a finished run resumes to nothing
    _, _, again = _train(tmp_path / "cut", 5)
    assert again.epochs_run == 0 and again.resumed_from == 5


def test_a_damaged_best_checkpoint_is_replaced_by_the_best_epoch_after_the_resume(tmp_path, caplog):
    """The best pair cut short while a training was stopped: the resume said nothing and kept it (no later epoch
    beat its loss), and `predict` found it only later. The next epoch is the best so far and replaces it."""
    from astrotool.errors import InputError
    from astrotool.ml import checkpoint as ck

    losses = [1.0, 0.5, 0.9, 0.8]    # no epoch after the resume beats epoch 1's 0.5
    _train(tmp_path / "m", 2, val_losses=losses)
    weights = tmp_path / "m" / ck.WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(InputError):
        ck.load_checkpoint(tmp_path / "m")
    _, _, result = _train(tmp_path / "m", 4, val_losses=losses, log=logging.getLogger("astro.test"))
    assert "the best checkpoint (epoch 2) is damaged" in caplog.text   # counted from 1, as the logs (was 1)
    best = ck.load_checkpoint(tmp_path / "m")    # whole again: the pair of the best epoch since the resume
    assert best.meta["best_epoch"] == result.best_epoch == 3 and best.meta["metrics"]["val_loss"] == 0.8
    _train(tmp_path / "n", 2, val_losses=losses)    # a whole one is kept as it was
    _, _, result = _train(tmp_path / "n", 4, val_losses=losses)
    assert ck.load_checkpoint(tmp_path / "n").meta["best_epoch"] == result.best_epoch == 1
    first = [0.5, 1.0, 0.9, 0.8]    # the best is epoch 0 (once taken for "no best")
    _train(tmp_path / "z", 2, val_losses=first)
    weights = tmp_path / "z" / ck.WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[:100])
    _, _, result = _train(tmp_path / "z", 4, val_losses=first)
    assert ck.load_checkpoint(tmp_path / "z").meta["best_epoch"] == result.best_epoch == 3


def test_resume_refuses_weights_and_state_of_different_epochs(tmp_path):
    """A stop between writing last/'s model and its loop state leaves a mismatched pair: refused."""
    import shutil

    from astrotool.errors import InputError
    from astrotool.ml import checkpoint as ck

    _train(tmp_path / "a", 2)
    _train(tmp_path / "b", 3)
    for name in (ck.WEIGHTS_FILE, ck.META_FILE):         # epoch-3 weights beside epoch-2 optimizer and loop
        shutil.copy(tmp_path / "b" / "last" / name, tmp_path / "a" / "last" / name)
    with pytest.raises(InputError, match="weights are from epoch 3 but the optimizer and loop state from epoch 2"):
        _train(tmp_path / "a", 5)


def test_loss_scale_of_16_mixed_is_kept_for_resume(tmp_path):
    from astrotool.ml import checkpoint as ck
    from astrotool.ml.fabric import Runtime

    class Scaler:  # what a CUDA GradScaler's state looks like; the CPU has no 16-mixed
        loaded = None

        def state_dict(self):
            return {"scale": 1024.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 2000,
                    "_growth_tracker": 17}

        def load_state_dict(self, state):
            Scaler.loaded = state

    def runtime():
        rt = Runtime(accelerator="cpu")
        rt.fabric.strategy.precision.scaler = Scaler()
        return rt

    _train(tmp_path, 1, runtime=runtime())
    loop = json.loads((tmp_path / "last" / ck.STATE_META_FILE).read_text())["loop"]
    assert loop["grad_scaler"] == Scaler().state_dict()
    _train(tmp_path, 2, runtime=runtime())
    assert Scaler.loaded == Scaler().state_dict()


def test_resume_with_other_settings_is_refused(tmp_path):
    from astrotool.ml import checkpoint as ck
    from astrotool.ml.training import check_resume_settings

    settings = {"lr": 0.01, "loss": "mse", "dataset": {"name": "a", "manifest_sha256": "0123"}}
    _train(tmp_path / "cut", 2, settings=settings)
    stored = json.loads((tmp_path / "cut" / "last" / ck.META_FILE).read_text())["settings"]
    assert stored == settings and json.loads((tmp_path / "cut" / ck.META_FILE).read_text())["settings"] == settings
    state = (tmp_path / "cut" / "last" / ck.WEIGHTS_FILE).read_bytes()
    other = {**settings, "loss": "mae", "dataset": {"name": "b", "manifest_sha256": "0123"}}
    with pytest.raises(AstroError) as e:
        _train(tmp_path / "cut", 5, settings=other)
    assert e.value.exit_code == 2
    assert 'a model trained with other settings is here (dataset.name: "a" -> "b"; loss: "mse" -> "mae")' in str(e.value)
    assert "--overwrite" in str(e.value)
    assert (tmp_path / "cut" / "last" / ck.WEIGHTS_FILE).read_bytes() == state  # nothing trained, nothing written
    assert json.loads((tmp_path / "cut" / "last" / ck.STATE_META_FILE).read_text())["loop"]["epochs_done"] == 2
    with pytest.raises(AstroError, match=r"lr: 0.01 -> 0.5"):
        check_resume_settings(tmp_path / "cut", {**settings, "lr": 0.5})
    # settings given now, none recorded then: refused; none given now: refused too (it kept the old lr silently)
    _train(tmp_path / "bare", 1, settings=None)
    with pytest.raises(AstroError, match="records no training settings"):
        _train(tmp_path / "bare", 2, settings=settings)
    with pytest.raises(AstroError, match="cannot resume the model here without this run's settings") as e:
        _train(tmp_path / "cut", 5, settings=None)
    assert e.value.exit_code == 2 and "resume=False" in str(e.value)
    assert json.loads((tmp_path / "cut" / "last" / ck.STATE_META_FILE).read_text())["loop"]["epochs_done"] == 2
    # without resume the run starts over (the caller cleared the folder: prepare_training --overwrite)
    _, _, r = _train(tmp_path / "cut", 1, settings=other, resume=False)
    assert r.resumed_from is None and r.epochs_run == 1
    assert json.loads((tmp_path / "cut" / "last" / ck.META_FILE).read_text())["settings"] == other


def test_resume_that_only_raises_epochs_with_settings_continues(tmp_path):
    settings = {"lr": 0.01, "split": (0.8, 0.2)}  # a tuple compares equal to the list stored
    full, _, _ = _train(tmp_path / "full", 4, settings=settings)
    _train(tmp_path / "cut", 1, settings=settings)
    resumed, _, r = _train(tmp_path / "cut", 4, settings=settings)
    assert (r.resumed_from, r.epochs_run) == (1, 3)
    a, b = _weights(full), _weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a), _max_diff(a, b)


def test_raised_patience_continues_a_run_that_stopped_early(tmp_path):
    """Patience only decides when to stop: resuming with more trains on, as one run with that patience would."""
    losses = [1.0, 2.0, 3.0, 0.5, 0.6]
    _, _, r1 = _train(tmp_path / "cut", 5, patience=1, val_losses=losses)
    assert (r1.epochs_run, r1.stopped_early, r1.best_epoch) == (2, True, 0)
    _, _, same = _train(tmp_path / "cut", 5, patience=1, val_losses=losses)
    assert same.epochs_run == 0 and same.stopped_early
    resumed, _, r2 = _train(tmp_path / "cut", 5, patience=3, val_losses=losses)
    assert (r2.resumed_from, r2.epochs_run, r2.stopped_early, r2.best_epoch) == (2, 3, False, 3)
    full, _, r_full = _train(tmp_path / "full", 5, patience=3, val_losses=losses)
    assert r_full.epochs_run == 5 and r_full.best_epoch == 3
    a, b = _weights(full), _weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a), _max_diff(a, b)


def test_an_interrupted_training_is_marked_unfinished_until_a_run_ends(tmp_path, caplog):
    """A later run cut short in an epoch that did not improve left the best checkpoint as the finished run
    before it wrote it: the model was used as one whose training ran to its end."""
    from astrotool.ml.checkpoint import load_checkpoint, read_meta, unfinished, warn_unfinished

    losses = [1.0, 0.5, 0.9, 0.9, 0.9]
    ckpt = tmp_path / "c"
    _train(ckpt, 2, val_losses=losses)
    assert read_meta(ckpt)["training_progress"]["finished"] is True and unfinished(read_meta(ckpt)) is None
    with pytest.raises(KeyboardInterrupt):
        _train(ckpt, 4, val_losses=losses, stop_in_epoch=3)  # epoch 2 ran, did not improve; stopped in epoch 3
    assert read_meta(ckpt)["best_epoch"] == 1
    assert unfinished(read_meta(ckpt)) == "trained 3 of 4 epochs"   # epochs 0-2 done
    with caplog.at_level("WARNING", logger="astro"):
        warn_unfinished(load_checkpoint(ckpt).meta, ckpt, "astro toy train")
    assert "training unfinished (trained 3 of 4 epochs)" in caplog.text
    assert "run the training again as it began, with its data set and options" in caplog.text
    assert f"toy train --model {ckpt} ...`" in caplog.text   # it trained the default model
    with pytest.raises(KeyboardInterrupt):   # epochs 2 and 3 run without improving, stopped in epoch 4
        _train(ckpt, 6, val_losses=[*losses, 0.9], stop_in_epoch=4)
    assert unfinished(read_meta(ckpt)) == "trained 4 of 6 epochs" and read_meta(ckpt)["best_epoch"] == 1
    with pytest.raises(KeyboardInterrupt):   # started afresh over it (the Python API's resume=False)
        _train(ckpt, 3, resume=False, stop_in_epoch=0)
    assert unfinished(read_meta(ckpt)) == "trained 0 of 3 epochs"
    _, _, r = _train(ckpt, 2, val_losses=losses)  # asks no more epochs than last/ holds: finished as it stands
    assert r.epochs_run == 0 and unfinished(read_meta(ckpt)) is None
    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path / "d", 3, stop_in_epoch=1)  # cut short in its first run, after one saved epoch
    assert unfinished(read_meta(tmp_path / "d")) == "trained 1 of 3 epochs"
    _, _, r = _train(tmp_path / "d", 3)
    assert r.epochs_run == 2 and unfinished(read_meta(tmp_path / "d")) is None


def test_a_stop_anywhere_while_saving_an_epoch_resumes_to_identical_weights(tmp_path, monkeypatch):
    """SIGTERM (KeyboardInterrupt) before any write, rename or removal of epoch 3's checkpoints: the folder
    still resumes, from epoch 2 or 3, to the weights and best checkpoint of a run never stopped."""
    import shutil

    import astrotool.workspace as ws
    from astrotool.ml import checkpoint as ck
    from astrotool.ml import training as tr

    losses = [3.0, 2.0, 1.0]  # every epoch is a new best: both the best checkpoint and last/ are written
    full, _, _ = _train(tmp_path / "full", 3, val_losses=losses)
    best_full = ck.load_checkpoint(tmp_path / "full").state_dict
    _train(tmp_path / "two", 2, val_losses=losses)
    state = {"armed": False, "n": 0, "stop_at": 0}
    real_save = tr._save_epoch

    def save_epoch(*args, **kw):
        state["armed"] = args[11] == 2  # epoch (0-based) 2: _save_epoch(ckpt_dir, module, ..., epoch, epochs)
        return real_save(*args, **kw)

    def counted(fn):
        def wrapper(*args, **kw):
            if state["armed"]:
                state["n"] += 1
                if state["n"] == state["stop_at"]:
                    raise KeyboardInterrupt("terminated")
            return fn(*args, **kw)
        return wrapper

    monkeypatch.setattr(tr, "_save_epoch", save_epoch)
    for mod, name in ((ck, "write_json_atomic"), (ck, "atomic_path"), (ck, "_rename"), (ck, "_rmtree"),
                      (ws, "write_json_atomic")):
        if hasattr(mod, name):
            monkeypatch.setattr(mod, name, counted(getattr(mod, name)))
    resumed_from = set()
    for stop_at in range(1, 60):
        d = tmp_path / f"cut{stop_at}"
        shutil.copytree(tmp_path / "two", d)
        state.update(armed=False, n=0, stop_at=stop_at)
        try:
            _train(d, 3, val_losses=losses)
        except KeyboardInterrupt:
            pass
        else:
            break
        state.update(stop_at=0)
        resumed, _, r = _train(d, 3, val_losses=losses)
        resumed_from.add(r.resumed_from)
        a, b = _weights(full), _weights(resumed)
        assert all(torch.equal(a[k], b[k]) for k in a), (stop_at, _max_diff(a, b))
        best = ck.load_checkpoint(d)
        assert all(torch.equal(best_full[k], best.state_dict[k]) for k in best_full), stop_at
        assert best.meta["training_progress"]["finished"] is True and best.meta["best_epoch"] == 2
        assert sorted(p.name for p in d.iterdir()) == ["last", "model.json", "model.safetensors"], (stop_at, r.resumed_from, sorted(p.name for p in (d / ".last.new").iterdir()))
    assert stop_at > 5 and resumed_from == {2, 3}


def test_a_hard_kill_between_the_renames_of_last_resumes(tmp_path):
    """What os._exit between the two renames of the swap leaves: no last/, the new and old sets beside it."""
    from astrotool.ml import checkpoint as ck
    from astrotool.ml import commands as mc

    full, _, _ = _train(tmp_path / "full", 3)
    _train(tmp_path / "a", 2)
    _train(tmp_path / "b", 3)
    d = tmp_path / "a"
    (d / "last").rename(d / ck.LAST_OLD_DIR)
    (tmp_path / "b" / "last").rename(d / ck.LAST_NEW_DIR)
    assert mc.epochs_done(d) == 3 and ck.resolve_last(d) == d / ck.LAST_NEW_DIR
    assert mc.prepare_training(d, overwrite=False, resume=True, settings=_SETTINGS) == "resume"
    assert sorted(p.name for p in d.iterdir()) == ["last", "model.json", "model.safetensors"]
    _, _, r = _train(d, 3)
    assert r.resumed_from == 3 and r.epochs_run == 0
    # an incomplete new set (killed while writing it) beside the old one, without last/: the old one
    _train(tmp_path / "c", 2)
    c = tmp_path / "c"
    (c / "last").rename(c / ck.LAST_OLD_DIR)
    (c / ck.LAST_NEW_DIR).mkdir()
    (c / ck.LAST_NEW_DIR / ck.WEIGHTS_FILE).write_bytes(b"half")
    resumed, _, r = _train(c, 3)
    assert r.resumed_from == 2 and sorted(p.name for p in c.iterdir()) == ["last", "model.json", "model.safetensors"]
    assert all(torch.equal(v, _weights(full)[k]) for k, v in _weights(resumed).items())


def test_a_checkpoint_pair_whose_move_a_stop_cut_short_loads(tmp_path):
    """The weights moved into place, model.json not yet: readers take the staged model.json."""
    from astrotool.ml import checkpoint as ck

    _train(tmp_path / "a", 1)
    _train(tmp_path / "b", 2)
    a, b = tmp_path / "a", tmp_path / "b"
    (a / ck.STAGE_DIR).mkdir()
    (b / ck.META_FILE).rename(a / ck.STAGE_DIR / ck.META_FILE)
    (b / ck.WEIGHTS_FILE).rename(a / ck.WEIGHTS_FILE)
    ckpt = ck.load_checkpoint(a)
    assert ckpt.meta["training_progress"]["epochs_done"] == 2
    ck.settle_checkpoint(a)
    assert not (a / ck.STAGE_DIR).exists() and ck.load_checkpoint(a).meta == ckpt.meta


def test_an_epoch_without_batches_raises(tmp_path):
    from astrotool.ml.training import fit

    model = torch.nn.Linear(2, 1)
    with pytest.raises(AstroError, match="no training batches"):
        fit(model, torch.optim.SGD(model.parameters(), lr=0.1), batches=lambda e: iter(()),
            loss_fn=lambda m, b: m(b).mean(), validate=lambda m: {"val_loss": 1.0}, epochs=2,
            checkpoint_dir=tmp_path / "m", meta={"architecture": {"name": "x", "kwargs": {}}})
    assert not (tmp_path / "m" / "last").exists()


def test_resume_false_starts_over(tmp_path):
    _train(tmp_path / "c", 2)
    _, _, r = _train(tmp_path / "c", 2, resume=False)
    assert r.resumed_from is None and r.epochs_run == 2


def test_the_model_an_overwrite_set_aside_goes_with_the_first_saved_epoch(tmp_path):
    from astrotool.ml.commands import prepare_training

    ckpt = tmp_path / "c"
    _train(ckpt, 1)
    assert prepare_training(ckpt, overwrite=True, resume=True) == "restart"
    assert (ckpt / ".replaced" / "model.safetensors").is_file() and not (ckpt / "model.safetensors").exists()
    _, _, r = _train(ckpt, 2, resume=False)
    assert r.epochs_run == 2 and not (ckpt / ".replaced").exists() and (ckpt / "model.safetensors").is_file()


# ----------------------------------------------------------------------------- split_batch


def test_split_batch_parts_and_weights():
    from astrotool.ml.training import split_batch

    x, y = torch.arange(7 * 2).reshape(7, 2), np.arange(7)
    (px, py), w0 = split_batch((x, y), 0, 2)
    (qx, qy), w1 = split_batch((x, y), 1, 2)
    assert px.tolist() == x[:3].tolist() and py.tolist() == [0, 1, 2] and qy.tolist() == [3, 4, 5, 6]
    assert (w0, w1) == (3 * 2 / 7, 4 * 2 / 7)  # 3/7 + 4/7 of the mean, times W = 2
    d, w = split_batch({"x": x, "name": "field"}, 2, 3)
    assert d["x"].tolist() == x[4:7].tolist() and d["name"] == "field" and w == 3 * 3 / 7
    # fewer rows than ranks: the rank with no rows of its own gets row 0 with weight 0
    assert [(p.tolist(), w) for p, w in (split_batch(x[:1], r, 2) for r in (0, 1))] == [
        (x[:1].tolist(), 0.0), (x[:1].tolist(), 2.0)]
    with pytest.raises(ValueError, match="rows"):
        split_batch((x, y[:5]), 0, 2)
    with pytest.raises(ValueError, match="no array"):
        split_batch(("a", 3), 0, 2)


# ----------------------------------------------------------------------------- real DDP


def _ddp_main(argv):
    """Entry point of the DDP script: ``out world mode`` (mode = fabric | slurm)."""
    from safetensors.torch import save_file

    from astrotool.ml.fabric import Runtime

    out, world, mode = Path(argv[0]), int(argv[1]), argv[2]
    torch.set_num_threads(1)
    rt = Runtime(accelerator="cpu", devices=world, strategy="ddp")
    fabric = rt.launch()  # fabric mode: starts rank 1 by re-running this script
    rows = []
    model, _, result = _train(out / "ckpt", 3, runtime=rt, rows_seen=rows, optim="sgd")
    r = fabric.global_rank
    save_file(_weights(model), str(out / f"rank{r}.safetensors"))
    (out / f"rank{r}.json").write_text(json.dumps({
        "rank": r, "world": fabric.world_size, "rows": rows, "history": result.history,
        "is_global_zero": result.is_global_zero, "mode": mode,
        "environment": type(fabric.strategy.cluster_environment).__name__}))


def _ddp_env():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "LOCAL_RANK", "NODE_RANK",
                                                                    "WORLD_SIZE", "MASTER_", "LT_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = "1"
    return env


def _run_ddp(tmp_path, mode):
    script = tmp_path / "ddp_train.py"
    script.write_text("import sys\nfrom test_ml_training import _ddp_main\n_ddp_main(sys.argv[1:])\n")
    out = tmp_path / mode
    out.mkdir()
    env = _ddp_env()
    cmd = [sys.executable, str(script), str(out), "2", mode]
    if mode == "fabric":  # Fabric picks a free port and starts rank 1 itself
        procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)]
    else:  # two tasks of one node, started as `srun --ntasks-per-node 2` would
        procs = []
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            env["MASTER_PORT"] = str(sock.getsockname()[1])
        for rank in range(2):
            e = dict(env, SLURM_NTASKS="2", SLURM_NTASKS_PER_NODE="2", SLURM_PROCID=str(rank),
                     SLURM_LOCALID=str(rank), SLURM_NODEID="0", SLURM_NNODES="1", SLURM_JOB_NAME="astro-train",
                     SLURM_JOB_ID=str(40000 + os.getpid() % 1000), SLURM_NODELIST="127.0.0.1",
                     SLURM_STEP_NODELIST="127.0.0.1", SLURM_STEP_NUM_TASKS="2", SLURM_STEP_NUM_NODES="1",
                     SLURM_STEP_TASKS_PER_NODE="2")
            procs.append(subprocess.Popen(cmd, env=e, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    try:
        logs = [p.communicate(timeout=120)[0] for p in procs]
    finally:  # a hung rank must not outlive the test
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert all(p.returncode == 0 for p in procs), "\n".join(logs)
    return out


@pytest.mark.long
@pytest.mark.parametrize("mode", ["fabric", "slurm"])
def test_ddp_two_cpu_processes_equal_one_process(tmp_path, mode):
    from safetensors.torch import load_file

    from astrotool.ml import checkpoint as ck

    out = _run_ddp(tmp_path, mode)
    single, _, r_single = _train(tmp_path / "single", 3, optim="sgd")
    ref = _weights(single)
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    w = [load_file(str(out / f"rank{r}.safetensors")) for r in (0, 1)]
    # two processes, gloo, each saw its half of every global batch (16 -> 8 + 8, 7 -> 3 + 4)
    assert [d["world"] for d in ranks] == [2, 2] and [d["is_global_zero"] for d in ranks] == [True, False]
    expected = {"fabric": "LightningEnvironment", "slurm": "SLURMEnvironment"}[mode]
    assert [d["environment"] for d in ranks] == [expected, expected]
    assert ranks[0]["rows"] == [8, 8, 3] * 3 and ranks[1]["rows"] == [8, 8, 4] * 3
    # gradients were all-reduced: both ranks hold the same weights, those of the one-process run
    assert all(torch.equal(w[0][k], w[1][k]) for k in ref)
    diff = _max_diff(w[0], ref)
    print(f"DDP ({mode}) vs one process: max |dw| = {diff:.3g}")
    assert diff < DDP_ATOL
    # ... which a rank training alone on its half of each batch would miss by far
    alone, _, _ = _train(tmp_path / "half", 3, optim="sgd", half=True)
    assert _max_diff(_weights(alone), ref) > 100 * DDP_ATOL
    # the training loss is the global batch's, the validation rank 0's, on both ranks
    for d in ranks:
        for h, s in zip(d["history"], r_single.history):
            assert h["train_loss"] == pytest.approx(s["train_loss"], rel=1e-5)
            assert h["val_loss"] == pytest.approx(s["val_loss"], rel=1e-4)
    assert [h["val_loss"] for h in ranks[0]["history"]] == [h["val_loss"] for h in ranks[1]["history"]]
    # rank 0 wrote one checkpoint that loads as the final weights
    last = ck.load_checkpoint(out / "ckpt" / "last")
    assert all(torch.equal(last.state_dict[k], w[0][k]) for k in ref)
    assert last.meta["runtime"] == {"processes": 2, "device": "cpu", "precision": "32-true"}


@pytest.mark.skipif(sys.platform != "linux", reason="fork start method")
def test_ddp_fork_trains_in_children_and_hands_back_the_weights(tmp_path):
    from astrotool.ml.fabric import Runtime

    ref, _, _ = _train(tmp_path / "single", 3, optim="sgd")
    model, opt, r = _train(tmp_path / "fork", 3, optim="sgd",
                           runtime=Runtime(accelerator="cpu", devices=2, strategy="ddp_fork"))
    assert (r.world_size, r.is_global_zero, r.epochs_run) == (2, True, 3)
    # the caller's model holds the children's final weights, and its optimizer their momentum
    assert _max_diff(_weights(model), _weights(ref)) < DDP_ATOL
    assert all("momentum_buffer" in st for st in opt.state.values()) and len(opt.state) == 4


def test_ddp_spawn_with_local_functions_says_what_to_do(tmp_path):
    from astrotool.ml.fabric import Runtime

    with pytest.raises(AstroError, match="ml.strategy ddp_spawn: .*must be picklable.*use strategy ddp"):
        _train(tmp_path, 1, runtime=Runtime(accelerator="cpu", devices=2, strategy="ddp_spawn"))


# ----------------------------------------------------------------------------- precision and runtime


def test_precision_names():
    from astrotool.ml.fabric import normalize_precision

    assert [normalize_precision(v) for v in ("32", 32, "32-true", "bf16-mixed", "16-mixed", " BF16 ")] == [
        "32-true", "32-true", "32-true", "bf16-mixed", "16-mixed", "bf16-mixed"]
    for bad in ("64", 64, "16-true", "fp8", True):
        with pytest.raises(ValueError, match="precision must be one of 32, 32-true, bf16-mixed, 16-mixed"):
            normalize_precision(bad)


def test_runtime_refuses_what_cannot_run():
    from astrotool.ml.fabric import Runtime

    with pytest.raises(AstroError, match="ml.precision 16-mixed.*CUDA") as err:
        Runtime(accelerator="cpu", precision="16-mixed").fabric
    assert err.value.exit_code == 2
    with pytest.raises(AstroError, match="ml.precision"):
        Runtime(precision="64")
    with pytest.raises(AstroError, match="ml.devices"):
        Runtime(devices=0)
    with pytest.raises(AstroError, match="ml.strategy"):
        Runtime(strategy="fsdp")
    with pytest.raises(AstroError, match="ml.num_nodes"):
        Runtime(num_nodes=0)
    rt = Runtime.from_config({"accelerator": "cpu", "precision": "32", "devices": 2}, devices=None,
                             precision="bf16-mixed")
    assert (rt.accelerator, rt.devices, rt.precision) == ("cpu", 2, "bf16-mixed")
    with pytest.raises(TypeError, match="colour"):
        Runtime.from_config(None, colour=1)


def test_srun_tasks_training_alone_are_refused(monkeypatch):
    from astrotool.ml.fabric import Runtime

    for k in [k for k in os.environ if k.startswith("SLURM_")]:
        monkeypatch.delenv(k)
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "8")
    monkeypatch.setenv("SLURM_STEP_NUM_NODES", "2")
    monkeypatch.setenv("SLURM_STEP_TASKS_PER_NODE", "4(x2)")
    with pytest.raises(AstroError, match=r"srun started 8 tasks.*ml.devices = 4 .*ml.num_nodes = 2"):
        Runtime(accelerator="cpu").fabric
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "1")
    assert Runtime(accelerator="cpu").fabric.world_size == 1


def test_several_nodes_that_nothing_started_are_refused(monkeypatch):
    """``--num-nodes 2`` on a workstation waited for ever for the other node, deaf to Ctrl-C and SIGTERM."""
    from astrotool.ml.fabric import Runtime

    for k in [k for k in os.environ if k.startswith(("SLURM_", "TORCHELASTIC_", "GROUP_RANK"))] + ["NODE_RANK",
                                                                                                 "MASTER_ADDR"]:
        monkeypatch.delenv(k, raising=False)
    with pytest.raises(AstroError, match=r"ml.num_nodes = 2, but this process was not started on several nodes"):
        Runtime(accelerator="cpu", num_nodes=2).fabric
    monkeypatch.setenv("NODE_RANK", "1")   # started by hand on each node
    monkeypatch.setenv("MASTER_ADDR", "node0")
    assert Runtime(accelerator="cpu", num_nodes=2).fabric.world_size == 2


def test_devices_that_do_not_match_slurm_name_the_key(monkeypatch):
    from astrotool.errors import AstroError
    from astrotool.ml.fabric import Runtime

    for k, v in {"SLURM_JOB_ID": "1", "SLURM_JOB_NAME": "train", "SLURM_NTASKS": "4", "SLURM_NTASKS_PER_NODE": "4",
                 "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NODEID": "0", "SLURM_NODELIST": "n1",
                 "SLURM_STEP_NUM_TASKS": "4", "SLURM_STEP_TASKS_PER_NODE": "4", "SLURM_STEP_NUM_NODES": "1"}.items():
        monkeypatch.setenv(k, v)
    rt = Runtime.from_config({"accelerator": "cpu", "devices": 2, "strategy": "ddp"})
    with pytest.raises(AstroError, match=r"ml.devices / ml.num_nodes: cannot start .*ntasks-per-node=4"):
        rt.launch()


def test_sync_batchnorm_on_cpu_is_refused(tmp_path):
    """Refused in the starting process (a real two-process ddp_fork run), before any rank exists."""
    from astrotool.ml.fabric import Runtime
    from astrotool.ml.training import fit

    rt = Runtime(accelerator="cpu", devices=2, strategy="ddp_fork", sync_batchnorm=True)
    model = _model()
    with pytest.raises(AstroError, match="ml.sync_batchnorm: .*CUDA GPUs only, not on cpu"):
        fit(model, torch.optim.SGD(model.parameters(), lr=0.1), batches=lambda e: [], loss_fn=None,
            validate=None, epochs=1, checkpoint_dir=tmp_path, meta={}, runtime=rt)
    assert not any(tmp_path.iterdir())                      # nothing written
    assert Runtime(accelerator="cpu", devices=1, sync_batchnorm=True).fabric.world_size == 1   # one process: moot


def test_bf16_mixed_autocasts_the_forward(tmp_path):
    from astrotool.ml.fabric import Runtime
    from astrotool.ml.training import fit

    x, y = _data()
    model = _model()
    seen = []
    model[0].register_forward_hook(lambda mod, args, out: seen.append(out.dtype) if mod.training else None)

    def loss_fn(m, batch):
        return torch.nn.functional.mse_loss(m(batch[0]), batch[1])

    r = fit(model, torch.optim.SGD(model.parameters(), lr=0.05), batches=lambda e: [(x, y)], loss_fn=loss_fn,
            validate=lambda m: {"val_loss": float(torch.nn.functional.mse_loss(m(x).float(), y))}, epochs=2,
            checkpoint_dir=tmp_path, meta={"architecture": {"name": "tiny", "kwargs": {}}},
            runtime=Runtime(accelerator="cpu", precision="bf16-mixed"))
    assert seen == [torch.bfloat16, torch.bfloat16]  # inside the model: autocast to bfloat16
    assert model[0].weight.dtype == torch.float32  # mixed: the weights stay float32
    assert np.isfinite(r.history[-1]["train_loss"]) and r.history[-1]["val_loss"] < r.history[0]["val_loss"] * 1.5


def test_nonfinite_loss_raises(tmp_path):
    from astrotool.ml.training import fit

    model = _model()
    x, y = _data()
    from astrotool.errors import AstroError

    with pytest.raises(AstroError, match="training diverged: non-finite training loss at epoch 0, step 0; lower"):
        fit(model, torch.optim.SGD(model.parameters(), lr=0.1), batches=lambda e: [(x, y)],
            loss_fn=lambda m, b: m(b[0]).sum() * float("nan"), validate=lambda m: {"val_loss": 0.0}, epochs=1,
            checkpoint_dir=tmp_path, meta={"architecture": {"name": "tiny", "kwargs": {}}})


# ----------------------------------------------------------------------------- the [ml] section


def test_ml_section_defaults_and_values():
    from astrotool.builtin.config import MLConfig

    d = MLConfig()
    assert (d.accelerator, d.devices, d.num_nodes, d.strategy, d.precision) == ("auto", 1, 1, "auto", "32-true")
    m = MLConfig.model_validate({"devices": "auto", "precision": 32, "num_nodes": 2, "strategy": "ddp"})
    assert (m.devices, m.precision, m.num_nodes) == ("auto", "32-true", 2)
    assert MLConfig.model_validate({"devices": "4"}).devices == 4
    from astrotool.ml.fabric import Runtime

    rt = Runtime.from_config(MLConfig(num_workers=3, devices=2, precision="bf16-mixed", sync_batchnorm=True))
    assert (rt.num_workers, rt.devices, rt.precision, rt.sync_batchnorm) == (3, 2, "bf16-mixed", True)


def test_ml_section_errors_name_the_key(astro, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[ml]\nprecision = "64"\ndevices = 0\nstrategy = "fsdp"\naccelerator = "tpu"\n'
                   'num_nodes = 0\nbatch = 3\n')
    r = astro("-w", tmp_path, "--cfg", bad, "config", "show", "ml")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    for key in ("ml.precision: precision must be one of", "ml.devices: devices must be",
                "ml.strategy", "ml.accelerator", "ml.num_nodes", "ml.batch: unknown key"):
        assert f"{bad}: {key}" in r.stderr, (key, r.stderr)
    r = astro("-w", tmp_path, "--set", "ml.precision=bf16-mixed", "config", "show", "ml", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["ml"]["precision"] == "bf16-mixed"


def test_ml_section_imports_no_torch():
    code = ("import sys, astrotool.builtin.config as c, astrotool.ml.fabric, astrotool.seeding;"
            "c.MLConfig(precision='32');"
            "print([m for m in ('torch', 'lightning_fabric') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ----------------------------------------------------------------------------- derive_seed


def test_derive_seed_known_values_and_rules():
    from astrotool.executors import derive_seed as executors_derive_seed

    def by_hand(text):
        return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little") >> 1

    assert executors_derive_seed is derive_seed
    assert derive_seed(0, "a") == by_hand("0:a") == 8281872861307171038
    assert derive_seed(12345, "tile_003") == by_hand("12345:tile_003")
    assert derive_seed(7, 3, "rank", 1) == by_hand("7:3:rank:1")
    assert derive_seed(5) == by_hand("5")
    # an integer key is its decimal text; numpy integers are integers
    assert derive_seed(1, 3) == derive_seed(1, "3") == derive_seed(1, np.int64(3))
    # order matters, and ':' inside a key does not merge keys
    assert derive_seed(1, 2, 3) != derive_seed(1, 3, 2)
    assert derive_seed(0, "a:b") != derive_seed(0, "a", "b")
    assert derive_seed(0, "a:b") == by_hand("0:a\\:b")
    # negative base seeds work and give other streams than their absolute value
    s = derive_seed(-1, "x")
    assert 0 <= s < 2**63 and s == by_hand("-1:x") and s != derive_seed(1, "x")
    seeds = {derive_seed(b, k) for b in range(-50, 50) for k in range(20)}
    assert len(seeds) == 2000 and all(0 <= v < 2**63 for v in seeds)
    with pytest.raises(TypeError, match="key 1"):
        derive_seed(0, 1.5)
    with pytest.raises(TypeError, match="base seed"):
        derive_seed("0", "a")


def test_derive_seed_is_stable_across_processes():
    code = "from astrotool.seeding import derive_seed; print(derive_seed(-3, 'abc', 4))"
    env = dict(os.environ, PYTHONHASHSEED="123")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert int(out.stdout) == derive_seed(-3, "abc", 4)


def test_negative_seed_trains(tmp_path):
    from astrotool.ml.training import epoch_rng, fit, seed_everything

    seed_everything(-5)
    assert epoch_rng(-5, 0).integers(1 << 30) == epoch_rng(-5, 0).integers(1 << 30)
    model = _model()
    x, y = _data()
    r = fit(model, torch.optim.SGD(model.parameters(), lr=0.05), batches=lambda e: [(x, y)],
            loss_fn=lambda m, b: torch.nn.functional.mse_loss(m(b[0]), b[1]),
            validate=lambda m: {"val_loss": 1.0}, epochs=1, seed=-5, checkpoint_dir=tmp_path,
            meta={"architecture": {"name": "tiny", "kwargs": {}}})
    assert r.epochs_run == 1


# ----------------------------------------------------------------------------- dict batches from a dataset


class _TwoInputs(torch.nn.Module):
    """model(x (n, 4), features (n, 2)) -> (n, 1)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh())
        self.head = torch.nn.Linear(8 + 2, 1)

    def forward(self, x, features):
        return self.head(torch.cat([self.body(x), features], dim=1))


def _two_input_set(root):
    from astrotool.ml.data import DatasetWriter

    x, y = (t.numpy() for t in _data())
    f = np.stack([np.cos(x[:, 0]), x[:, 1] ** 2], axis=1).astype(np.float32)
    w = DatasetWriter(str(root), "two", compression="none")
    for k, a in enumerate(range(0, N_ROWS, 20)):
        w.write_shard(k, a, {"x": x[a:a + 20], "features": f[a:a + 20], "y": y[a:a + 20]})
    w.finalize(2)
    return x, f, y


def _train_dicts(root, ckpt, runtime=None, parts=None):
    """Train _TwoInputs on dict batches of torch_loader; validate by streaming the set through predict."""
    from astrotool.ml.data import ArrayDataset, torch_loader
    from astrotool.ml.predict import predict
    from astrotool.ml.training import fit

    ds = ArrayDataset(root)
    model = _TwoInputs()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loader = torch_loader(ds, BATCH, seed=5)

    def batches(epoch):
        loader.sampler.set_epoch(epoch)
        yield from loader  # dicts: x, features, y and index

    def loss_fn(m, b):
        rows = sorted(b["index"].tolist())
        if parts is not None:
            parts.append(rows)
        if torch.distributed.is_initialized():  # each rank notes the rows it trained on
            with open(Path(ckpt).parent / f"rows{torch.distributed.get_rank()}.jsonl", "a") as fh:
                fh.write(json.dumps(rows) + "\n")
        return torch.nn.functional.mse_loss(m(b["x"], b["features"]), b["y"])

    def validate(m):  # the whole set, one streamed batch at a time: nothing kept but two sums
        sums = [0.0, 0]

        def add(batch, out):
            sums[0] += float(((out - batch["y"]) ** 2).sum())
            sums[1] += out.size

        predict(m, ds.iter_batches(8), key=["x", "features"], on_batch=add, keep=False)
        return {"val_loss": sums[0] / sums[1]}

    result = fit(model, opt, batches=batches, loss_fn=loss_fn, validate=validate, epochs=2, checkpoint_dir=ckpt,
                 meta={"architecture": {"name": "two", "kwargs": {}}}, seed=3, runtime=runtime)
    return model, result


@pytest.mark.skipif(sys.platform != "linux", reason="fork start method")
def test_dict_batches_of_two_inputs_split_across_two_processes_equal_one(tmp_path):
    from astrotool.ml.fabric import Runtime

    x, f, y = _two_input_set(tmp_path / "set")
    parts = []
    single, r1 = _train_dicts(tmp_path / "set", tmp_path / "one", parts=parts)
    # one process saw whole global batches of 16, 16 and 7 rows, every row once per epoch
    assert [len(p) for p in parts] == [16, 16, 7] * 2
    assert sorted(sum(parts[:3], [])) == list(range(N_ROWS))
    # the streamed validation is the mean squared error over the whole set, computed in one piece here
    with torch.no_grad():
        full = float(torch.nn.functional.mse_loss(single(torch.from_numpy(x), torch.from_numpy(f)),
                                                  torch.from_numpy(y)))
    assert r1.history[-1]["val_loss"] == pytest.approx(full, rel=1e-6)
    assert r1.history[1]["val_loss"] < r1.history[0]["val_loss"]
    forked, r2 = _train_dicts(tmp_path / "set", tmp_path / "two",
                              runtime=Runtime(accelerator="cpu", devices=2, strategy="ddp_fork"))
    assert r2.world_size == 2
    # each rank trained on its own rows of every dict batch: 8 + 8, 8 + 8, 3 + 4, whole batches between them
    ranks = [[json.loads(line) for line in (tmp_path / f"rows{r}.jsonl").read_text().splitlines()] for r in (0, 1)]
    assert [len(p) for p in ranks[0]] == [8, 8, 3] * 2 and [len(p) for p in ranks[1]] == [8, 8, 4] * 2
    assert [sorted(a + b) for a, b in zip(*ranks)] == parts
    assert _max_diff(_weights(forked), _weights(single)) < DDP_ATOL
    assert [h["val_loss"] for h in r2.history] == pytest.approx([h["val_loss"] for h in r1.history], rel=1e-5)


def test_a_resume_in_another_precision_is_said_and_kept_per_epoch(tmp_path, caplog):
    """Resumed in bf16-mixed, a 32-true training said nothing and its record showed bf16 for every epoch."""
    import logging

    from astrotool.ml.fabric import Runtime
    from astrotool.ml.training import fit

    ckpt = tmp_path / "c"
    _train(ckpt, 2, runtime=Runtime.from_config({"accelerator": "cpu"}))
    x, y = _data()
    model = _model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)

    def resume_bf16(epochs):   # resume the run to ``epochs`` in bf16 on the CPU
        fit(model, opt, batches=lambda e: iter([(x, y)]),
            loss_fn=lambda m, b: torch.nn.functional.mse_loss(m(b[0]), b[1]),
            validate=lambda m: {"val_loss": float(torch.nn.functional.mse_loss(m(x), y))}, epochs=epochs,
            checkpoint_dir=ckpt, meta={"architecture": {"name": "tiny", "kwargs": {}}, "settings": _SETTINGS},
            seed=3, resume=True, runtime=Runtime.from_config({"accelerator": "cpu", "precision": "bf16"}),
            log=logging.getLogger("astro"))

    with caplog.at_level("INFO", logger="astro"):
        resume_bf16(3)
    assert "precision bf16-mixed from here on (the epochs so far ran in 32-true" in caplog.text
    history = json.loads((ckpt / "model.json").read_text())["history"]
    assert [h["precision"] for h in history] == ["32-true", "32-true", "bf16-mixed"]
    assert "process(es) from here on" not in caplog.text
    last = ckpt / "last" / "model.json"    # as a run of 2 processes left it
    meta = json.loads(last.read_text())
    last.write_text(json.dumps({**meta, "runtime": {**meta["runtime"], "processes": 2}}))
    caplog.clear()
    with caplog.at_level("INFO", logger="astro"):
        resume_bf16(4)
    assert "1 process(es) from here on (the epochs so far ran on 2)" in caplog.text
