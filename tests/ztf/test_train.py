"""``astro ztf train``: its settings and refusals, probes on an autoencoder, the stale ONNX export, and
checkpoints cut short: refused by the commands that use them, resumed by the command their hint names."""

from __future__ import annotations

import json

import pytest

from astrotool_ztf.prepare import StampDataset
from tests.ztf.conftest import (SMALL, edit_meta as _edit_meta, run_main as _main, unfinish as _unfinish,
                                 usage_error as _error)


def _finished_after(mdir, done, epochs):
    """Make ``mdir`` a checkpoint interrupted after ``done`` of ``epochs`` epochs (best and ``last/``)."""
    for path in (mdir / "model.json", mdir / "last" / "model.json"):
        meta = json.loads(path.read_text())
        meta["training_progress"] = {**meta["training_progress"], "epochs_done": done, "epochs": epochs,
                                     "finished": False}  # as fit leaves an interrupted run's progress
        path.write_text(json.dumps(meta))


def test_encoder_without_arch_probe_is_refused(tmp_path, astro):
    err = _error(astro("-w", tmp_path / "ws", "ztf", "train", "--encoder", "sim_vae"))
    assert "--encoder" in err and "probe" in err


@pytest.mark.parametrize("args, word", [(("--set", "ztf.train.kernel=4", "ztf", "train"), "kernel"),
                                        (("ztf", "train", "--seeds", "0,0"), "seeds"),
                                        (("ztf", "train", "--seeds=-1"), "seeds"),
                                        (("--set", 'ztf.embed.metric="bogus"', "ztf", "embed", "--model", "m"),
                                         "metric"),
                                        (("ztf", "evaluate", "--split", "all"), "split"),
                                        (("--set", "ztf.predict.batch_size=0", "ztf", "predict", "x", "--model",
                                          "m"), "ztf.predict.batch_size"),
                                        (("ztf", "export", "--model", "m", "--opset", "3"), "opset")])
def test_bad_train_and_embed_settings_are_refused(tmp_path, astro, args, word):
    err = _error(astro("-w", tmp_path / "ws", *args))
    assert word in err


def test_empty_seeds_are_refused(tws, astro):
    for seeds in ("", "1,"):   # "" trained the default model as if no --seeds had been given
        err = _error(astro("-w", tws, "ztf", "train", "--seeds", seeds, "--model", "m"))
        assert "--seeds" in err
    assert not (tws / "ztf" / "models" / "m").exists()


def test_models_of_the_wrong_kind_or_name_are_refused_in_plain_words(tws, astro):
    assert astro("-w", tws, "--seed", 1, "ztf", "train", "--arch", "vae", "--epochs", 1).returncode == 0
    err = _error(astro("-w", tws, "ztf", "train", "--arch", "probe", "--encoder", "nosuch"))
    assert "--encoder" in err and "no trained model named 'nosuch'" in err and "sim_classifier, sim_vae" in err
    for command in (("embed", "--model", "sim_classifier"),
                    ("predict", "sim_0000", "--model", "sim_classifier", "--autoencoder", "sim_classifier")):
        err = _error(astro("-w", tws, "ztf", *command))
        assert "a classifier" in err and "not an autoencoder" in err and "architecture" not in err
    err = _error(astro("-w", tws, "ztf", "evaluate", "--model", "sim_classifier", "--baseline", "sim_vae"))
    assert "--baseline" in err and "sim_vae is an autoencoder" in err and "astro ztf evaluate" not in err


def test_a_probe_refuses_to_resume_on_a_retrained_encoder(tws, astro):
    probe = ("-w", tws, "--seed", 1, "ztf", "train", "--arch", "probe", "--encoder", "sim_vae")
    assert astro(*probe, "--epochs", 1).returncode == 0
    for change in (("--seed", 2), ("--set", "ztf.train.latent=8")):
        r = astro("-w", tws, *change, "ztf", "train", "--arch", "vae", "--epochs", 1, "--overwrite")
        assert r.returncode == 0, r.stderr
        err = _error(astro(*probe, "--epochs", 2))
        assert "encoder_weights_sha256" in err and "--overwrite" in err and "size mismatch" not in err


def test_a_probe_is_refused_on_an_encoder_trained_on_another_set_of_its_name(tws, capsys):
    """A probe trained on the set made again used an autoencoder trained on the old one, whose training
    samples may lie in the new val and test splits; evaluate scored such a probe."""
    from astrotool.ml.commands import dataset_identity

    ws = ("-w", tws, "--seed", 1)
    code, _, err = _main(capsys, *ws, "ztf", "train", "--arch", "probe", "--encoder", "sim_vae", "--epochs", 1)
    assert code == 0, err
    code, _, err = _main(capsys, "-w", tws, "--seed", 2, *SMALL, "--overwrite", "ztf", "prepare")
    assert code == 0, err
    code, _, err = _main(capsys, *ws, "ztf", "train", "--arch", "probe", "--encoder", "sim_vae", "--epochs", 1,
                         "--model", "new_probe")
    err = " ".join(err.split())
    assert code == 2 and "not the set that model sim_vae was trained on" in err, err
    remedy = err.split("train the autoencoder on it first (`", 1)[1].split("`", 1)[0]
    assert "ztf train --model sim_vae" in remedy and "--arch vae" in remedy and remedy.endswith(" --overwrite"), err
    assert not (tws / "ztf" / "models" / "new_probe" / "model.json").exists()
    # a probe trained on the new set with the old encoder (as before this check), with and without the
    # encoder's set recorded
    with StampDataset(tws / "ztf" / "prepared" / "sim") as ds:
        _edit_meta(tws / "ztf" / "models" / "sim_probe", settings__dataset=dataset_identity(ds))
    for recorded in (True, False):
        if not recorded:
            meta = json.loads((tws / "ztf" / "models" / "sim_probe" / "model.json").read_text())
            meta.pop("encoder_dataset", None)
            (tws / "ztf" / "models" / "sim_probe" / "model.json").write_text(json.dumps(meta))
        code, _, err = _main(capsys, *ws, "ztf", "evaluate", "--model", "sim_probe")
        err = " ".join(err.split())
        assert code == 2 and "not the set that model sim_vae (the encoder of sim_probe) was trained on" in err, err
        assert "train the autoencoder sim_vae on it (--overwrite), then the probe" in err, (recorded, err)


def test_training_new_weights_warns_of_the_stale_onnx_export(tws, astro):
    onnx = tws / "ztf" / "models" / "sim_classifier" / "model.onnx"
    train = ("-w", tws, "--seed", 1, "ztf", "train", "--epochs", 2)
    assert astro("-w", tws, "ztf", "export", "--model", "sim_classifier").returncode == 0
    r = astro(*train)   # resumed: one more epoch, new weights
    assert r.returncode == 0, r.stderr
    assert onnx.exists() and "model.onnx: exported from the weights before this training" in r.stderr
    assert "ztf export --model sim_classifier" in r.stderr
    assert astro("-w", tws, "ztf", "export", "--model", "sim_classifier").returncode == 0
    r = astro(*train)   # no epoch left: the same weights, nothing said
    assert r.returncode == 0, r.stderr
    assert "exported from the weights before" not in r.stderr


def test_an_unfinished_checkpoint_is_refused_by_predict_export_and_evaluate(tws, astro):
    """predict and export used T = 1 and evaluate fitted T on the fly for an interrupted training."""
    _unfinish(tws / "ztf" / "models" / "sim_classifier")
    for cmd in (("predict", "sim_0000", "--model", "sim_classifier"), ("export", "--model", "sim_classifier"),
                ("evaluate", "--model", "sim_classifier")):
        err = _error(astro("-w", tws, "--seed", 1, "ztf", *cmd))
        assert "trained 2 of 5 epochs" in err and "again to resume" in err, cmd
    assert not list((tws / "ztf" / "predictions").glob("*"))
    assert not (tws / "ztf" / "models" / "sim_classifier" / "model.onnx").exists()


def test_embed_and_a_probe_refuse_an_autoencoder_cut_short(tws, astro):
    """evaluate refused an unfinished autoencoder; embed and a probe on it used it without a word."""
    _finished_after(tws / "ztf" / "models" / "sim_vae", 1, 3)
    for cmd in (("embed", "--model", "sim_vae"), ("train", "--arch", "probe", "--encoder", "sim_vae", "--epochs", 1),
                ("predict", "sim_0000", "--model", "sim_classifier", "--autoencoder", "sim_vae")):
        err = _error(astro("-w", tws, "--seed", 1, "ztf", *cmd))
        assert "trained 1 of 3 epochs" in err and "again to resume" in err, cmd
    assert not list((tws / "ztf" / "embeddings").glob("*")) if (tws / "ztf" / "embeddings").exists() else True


@pytest.mark.parametrize("arch, model, cmd", [("classifier", "sim_classifier", ("predict", "sim_0000")),
                                              ("vae", "sim_vae", ("evaluate",))])
def test_a_resume_with_no_epoch_left_finishes_the_checkpoint(tws, astro, arch, model, cmd):
    """Resumed with --epochs 1 after 1 of 3: no epoch ran, train exited 0 and the model was refused forever."""
    _finished_after(tws / "ztf" / "models" / model, 1, 3)
    assert "trained 1 of 3" in _error(astro("-w", tws, "--seed", 1, "ztf", *cmd, "--model", model))
    r = astro("-w", tws, "--seed", 1, "ztf", "train", "--arch", arch, "--epochs", 1)
    assert r.returncode == 0, r.stderr
    r = astro("-w", tws, "--seed", 1, "ztf", *cmd, "--model", model)
    assert r.returncode == 0, r.stderr


def test_an_unfinished_checkpoint_names_the_command_that_resumes_it(tws, capsys):
    """The hint said `astro ztf train`, which trains the default model (a classifier on sim), not this one."""
    import shlex

    from astrotool.ml.checkpoint import read_meta, unfinished

    _finished_after(tws / "ztf" / "models" / "sim_vae", 1, 2)
    code, _, err = _main(capsys, "-w", tws, "ztf", "embed", "--model", "sim_vae")
    command = f"astro -w {tws} --seed 1 ztf train --model sim_vae --epochs 2 --arch vae"
    assert code == 2 and f"run `{command}` again to resume" in " ".join(err.split()), err
    code, _, err = _main(capsys, *shlex.split(command)[1:])   # resumes it to its end, as pasted
    assert code == 0, err
    assert unfinished(read_meta(tws / "ztf" / "models" / "sim_vae")) is None


def test_the_resume_command_names_the_seed_of_several_and_the_settings_that_are_not_the_defaults(tmp_path):
    from astrotool_ztf.classify import train_command

    meta = {"hyperparameters": {"dataset": "big", "arch": "probe", "encoder": "big_vae", "seeds": [0, 3],
                                "epochs": 9, "lr": 0.002, "group": "c4", "patience": 0, "batch_size": 32,
                                "use_features": False},
            "training": {"seed": 3}, "training_progress": {"epochs_done": 1, "epochs": 6}}
    # patience 0: early stopping off, kept off
    assert train_command(meta, tmp_path / "intr_seed3") == (
        "astro ztf train --model intr --seeds 3 --epochs 6 --dataset big --arch probe --batch-size 32 --lr 0.002 "
        "--set ztf.train.group=c4 --set ztf.train.use_features=false --encoder big_vae --patience 0")


@pytest.mark.parametrize("arch", ["vae", "temporal"])
def test_the_autoencoder_and_the_temporal_model_train_on_every_sample_each_epoch(ws, capsys, arch):
    """The last partial batch was dropped: a VAE on 123 alerts in batches of 64 made 1 step an epoch."""
    code, out, err = _main(capsys, "--json", "-w", ws, "--seed", 1, "ztf", "train", "--arch", arch, "--epochs", 1,
                           "--batch-size", 4)
    assert code == 0, err
    meta = json.loads((ws / "ztf" / "models" / f"sim_{arch}" / "model.json").read_text())
    n = meta["training"]["n_train"]   # the autoencoder's alerts; the temporal model's objects, classes balanced:
    if arch == "temporal":   # each class shown as often as the largest
        import numpy as np

        with StampDataset(ws / "ztf" / "prepared" / "sim") as ds:
            m = ds.metadata(["objectId", "split", "label"])
        train = m["split"] == "train"
        counts = np.unique(m["label"][train][np.unique(m["objectId"][train], return_index=True)[1]],
                           return_counts=True)[1]
        assert counts.sum() == n
        n = int(counts.max()) * len(counts)
    assert n % 4 and meta["training_progress"]["step"] == -(-n // 4), (n, meta["training_progress"])
