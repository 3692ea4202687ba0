"""Bad inputs and settings of the ztf commands found by a new user's review: each is a usage error (exit 2)
naming the file or option, and none loses what existed before."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from astrotool_ztf.prepare import StampDataset

SMALL = ("--set", "ztf.prepare.val_per_class=2", "--set", "ztf.prepare.test_per_class=2")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A workspace with 40 simulated objects and the prepared set ``sim``."""
    from tests.conftest import run_astro

    ws = tmp_path_factory.mktemp("ztf_review") / "ws"
    assert run_astro("-w", ws, "--seed", 1, "ztf", "simulate", "-n", 40).returncode == 0
    r = run_astro("-w", ws, "--seed", 1, *SMALL, "ztf", "prepare")
    assert r.returncode == 0, r.stderr
    return ws


def _copy(workspace, tmp_path):
    """A copy of a module's workspace that one test may change."""
    shutil.copytree(workspace, tmp_path / "ws")
    return tmp_path / "ws"


@pytest.fixture
def ws(prepared, tmp_path):
    """A copy of the prepared workspace the test may change."""
    return _copy(prepared, tmp_path)


def _error(r):
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    return r.stderr


def test_a_failed_prepare_overwrite_names_the_column_and_keeps_the_old_set(ws, astro):
    src = ws / "ztf" / "alerts" / "sim_0000_alerts.parquet"
    n = StampDataset(ws / "ztf" / "prepared" / "sim").n
    table = pd.read_parquet(src)
    table.assign(magpsf="abc").to_parquet(src)
    err = _error(astro("-w", ws, "--seed", 1, *SMALL, "--overwrite", "ztf", "prepare"))
    assert "sim_0000_alerts.parquet" in err and "'magpsf'" in err
    assert StampDataset(ws / "ztf" / "prepared" / "sim").n == n
    assert not list((ws / "ztf" / "prepared").glob(".sim*"))


def test_prepare_refuses_a_table_without_feature_columns_or_truncated(ws, astro):
    src = ws / "ztf" / "alerts" / "sim_0000_alerts.parquet"
    pd.read_parquet(src).drop(columns=["magpsf", "sgscore1"]).to_parquet(src)
    err = _error(astro("-w", ws, "--seed", 1, *SMALL, "--overwrite", "ztf", "prepare", "--name", "x"))
    assert "sim_0000_alerts.parquet" in err and "magpsf" in err and "sgscore1" in err
    src.write_bytes((ws / "ztf" / "stamps" / "sim_0000_stamps.h5").read_bytes()[:2000])
    err = _error(astro("-w", ws, "--seed", 1, *SMALL, "ztf", "prepare", "--name", "x"))
    assert "sim_0000_alerts.parquet" in err and "not a readable alert table" in err
    assert not (ws / "ztf" / "prepared" / "x").exists()


@pytest.mark.parametrize("setting", ["ztf.simulate.seeing_fwhm=[3.0,1.0]", "ztf.simulate.seeing_fwhm=[-1,2]",
                                     "ztf.simulate.alerts_per_object=[0,0]", "ztf.simulate.alerts_per_object=[5,1]",
                                     "ztf.simulate.class_fractions.AGN=-1", 'ztf.simulate.name="a/b"'])
def test_bad_simulate_settings_are_refused_before_any_work(tmp_path, astro, setting):
    err = _error(astro("-w", tmp_path / "ws", "--set", setting, "ztf", "simulate", "-n", 5))
    assert "invalid configuration" in err and f"ztf.simulate.{setting.split('.')[2].split('=')[0]}" in err
    assert not list(tmp_path.glob("ws/ztf/simulated/*.parquet"))


def test_all_class_fractions_zero_is_refused(tmp_path, astro):
    zero = [a for c in ("AGN", "SN", "VS", "asteroid", "bogus")
            for a in ("--set", f"ztf.simulate.class_fractions.{c}=0")]
    err = _error(astro("-w", tmp_path / "ws", *zero, "ztf", "simulate", "-n", 5))
    assert "ztf.simulate" in err and "class_fractions" in err


@pytest.mark.parametrize("args", [("ztf", "simulate", "--name", "../../x"), ("ztf", "simulate", "--name", ""),
                                  ("ztf", "prepare", "--name", "../esc")])
def test_names_that_leave_their_folder_are_refused(tmp_path, astro, args):
    err = _error(astro("-w", tmp_path / "ws", *args))
    assert "--name" in err or ".name" in err
    assert not (tmp_path / "x").exists() and not (tmp_path / "ws" / "ztf" / "esc").exists()


@pytest.mark.parametrize("args, word", [(("--set", "ztf.train.kernel=4", "ztf", "train"), "kernel"),
                                        (("ztf", "train", "--seeds", "0,0"), "seeds"),
                                        (("ztf", "train", "--seeds=-1"), "seeds"),
                                        (("--set", 'ztf.embed.metric="bogus"', "ztf", "embed", "--model", "m"),
                                         "metric")])
def test_bad_train_and_embed_settings_are_refused(tmp_path, astro, args, word):
    err = _error(astro("-w", tmp_path / "ws", *args))
    assert word in err


@pytest.fixture(scope="module")
def trained(prepared, tmp_path_factory):
    """The prepared workspace with a classifier and a vae (one epoch each) and the set s33 (crop 33)."""
    from tests.conftest import run_astro

    ws = tmp_path_factory.mktemp("ztf_review_trained") / "ws"
    shutil.copytree(prepared, ws)
    for args in (("ztf", "train", "--epochs", 1), ("ztf", "train", "--arch", "vae", "--epochs", 1),
                 (*SMALL, "ztf", "prepare", "--name", "s33", "--crop", 33)):
        r = run_astro("-w", ws, "--seed", 1, *args)
        assert r.returncode == 0, r.stderr
    return ws


@pytest.fixture
def tws(trained, tmp_path):
    """A copy of the trained workspace the test may change."""
    return _copy(trained, tmp_path)


def test_a_probe_refuses_to_resume_on_a_retrained_encoder(tws, astro):
    probe = ("-w", tws, "--seed", 1, "ztf", "train", "--arch", "probe", "--encoder", "sim_vae")
    assert astro(*probe, "--epochs", 1).returncode == 0
    for change in (("--seed", 2), ("--set", "ztf.train.latent=8")):
        r = astro("-w", tws, *change, "ztf", "train", "--arch", "vae", "--epochs", 1, "--overwrite")
        assert r.returncode == 0, r.stderr
        err = _error(astro(*probe, "--epochs", 2))
        assert "encoder_weights_sha256" in err and "--overwrite" in err and "size mismatch" not in err


def test_models_are_refused_on_sets_they_do_not_fit(tws, astro):
    ws = ("-w", tws, "--seed", 1)
    for cmd in (("evaluate", "--model", "sim_vae"), ("embed", "--model", "sim_vae")):
        err = _error(astro(*ws, "ztf", *cmd, "--dataset", "s33"))
        assert "sim_vae" in err and "trained with crop 21; the set s33 has 33" in err
    err = _error(astro(*ws, "ztf", "evaluate", "--model", "sim_classifier", "--baseline", "nosuch"))
    assert "--baseline" in err and "nosuch" in err
    err = _error(astro(*ws, "ztf", "evaluate", "--model", "sim_classifier", "--model", "sim_classifier"))
    assert "sim_classifier given more than once" in err
    for args in (("--batch-size", 0), ("--name", "../../esc")):
        err = _error(astro(*ws, "ztf", "predict", "sim_0000", "--model", "sim_classifier", *args))
        assert args[0] in err
    assert not (tws.parent / "esc_alerts.parquet").exists()
    # the set made again with another seed: no longer a hold-out for the models trained on it
    assert astro("-w", tws, "--seed", 2, *SMALL, "--overwrite", "ztf", "prepare").returncode == 0
    for cmd in (("evaluate", "--model", "sim_classifier"), ("embed", "--model", "sim_vae")):
        err = _error(astro(*ws, "ztf", *cmd))
        assert "not the set" in err and "was trained on, though it has its name" in err


def test_evaluate_shows_every_kind_of_model_of_the_set(tws, astro):
    """With a classifier and an autoencoder, the autoencoder's result was written but not shown."""
    r = astro("--json", "-w", tws, "--seed", 1, "ztf", "evaluate")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["model"] == "sim_classifier" and [a["model"] for a in out["autoencoders"]] == ["sim_vae"]
    assert out["autoencoders"][0]["reconstruction_mse"] > 0


def test_predict_counts_an_input_named_twice_once(tws, tmp_path, astro):
    r = astro("--json", "-w", tws, "ztf", "predict", "sim_0000", "sim_0000", "--model", "sim_classifier")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["alerts"] == len(pd.read_parquet(tws / "ztf" / "alerts" / "sim_0000_alerts.parquet"))
    # a file given twice, and once more inside its folder, is read once
    from astrotool_ztf import synthetic

    src = synthetic.write_avro(tmp_path / "in" / "night.avro", synthetic.make_alerts(3))
    r = astro("--json", "-w", tws, "ztf", "predict", src, src, src.parent, "--model", "sim_classifier")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["alerts"] == 3


def test_embed_is_quiet_and_a_holdout_set_is_named_as_why_it_cannot_train(tws, astro):
    r = astro("-w", tws, "--seed", 1, "ztf", "embed", "--model", "sim_vae")
    assert r.returncode == 0, r.stderr
    assert "n_jobs value" not in r.stderr
    assert astro("-w", tws, "--seed", 1, "--set", "ztf.prepare.holdout=true", "ztf", "prepare",
                 "--name", "ho").returncode == 0
    err = _error(astro("-w", tws, "ztf", "train", "--dataset", "ho"))
    assert "hold-out set" in err and "val_per_class" not in err


def test_predict_says_why_no_input_could_be_ingested(tws, tmp_path, astro):
    from astrotool_ztf import synthetic

    src = synthetic.write_avro(tmp_path / "night.avro", synthetic.make_alerts(2))
    assert astro("-w", tws, "ztf", "ingest", src).returncode == 0
    r = astro("-w", tws, "--set", "ztf.ingest.stamp_size=31", "ztf", "predict", src, "--model", "sim_classifier")
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "no alert file could be read" not in r.stderr and "1 failed" in r.stderr


def test_evaluate_averages_only_seeds_of_one_configuration(tmp_path):
    """Every classifier of a set was averaged as if seeds: a probe and a model with another
    learning rate went into one 'mean ± std'."""
    from astrotool_ztf.evaluate import seed_groups

    def model(name, arch, **settings):
        d = tmp_path / name
        d.mkdir()
        (d / "model.json").write_text(json.dumps({"format": "astrotool-checkpoint", "format_version": 1,
                                                  "architecture": {"name": arch, "kwargs": {}},
                                                  "settings": {"lr": 1e-3, "dataset": {"name": "sim"}, **settings}}))
        return d

    seeds = [model(f"sim_classifier_seed{k}", "ztf-stamp-classifier", seed=k) for k in (0, 1)]
    other_lr = model("sim_fast", "ztf-stamp-classifier", seed=0, lr=1e-2)
    probe = model("sim_probe", "ztf-probe", seed=0)
    third = model("sim_classifier_seed2", "ztf-stamp-classifier", seed=2)
    groups = seed_groups([seeds[0], other_lr, probe, seeds[1], third])
    assert [[d.name for d in g] for g in groups] == [
        ["sim_classifier_seed0", "sim_classifier_seed1", "sim_classifier_seed2"], ["sim_fast"], ["sim_probe"]]


def test_simulate_shards_together_draw_what_one_run_draws(tmp_path, astro):
    """Shards 1/3 and 2/3 drew nothing (their files were sharded twice) and exited 0."""
    sim = ("--set", "ztf.simulate.objects_per_file=4", "--set", "ztf.simulate.stamp_size=21", "ztf", "simulate",
           "-n", 12)
    assert astro("-w", tmp_path / "one", "--seed", 3, *sim).returncode == 0
    for i in range(3):
        r = astro("-w", tmp_path / "shards", "--seed", 3, "--shard", f"{i}/3", *sim)
        assert r.returncode == 0, r.stderr
    for stage in ("simulated", "alerts", "stamps"):
        one = sorted(p.name for p in (tmp_path / "one" / "ztf" / stage).glob("sim_*"))
        assert len(one) == 3 and sorted(p.name for p in (tmp_path / "shards" / "ztf" / stage).glob("sim_*")) == one
    a, b = (pd.read_parquet(tmp_path / w / "ztf" / "alerts" / "sim_0002_alerts.parquet") for w in ("one", "shards"))
    assert a["candid"].tolist() == b["candid"].tolist()


def test_commands_that_run_a_model_honour_the_ml_accelerator_of_the_configuration(tws, astro):
    """``ml.accelerator`` set in a configuration file: predict, evaluate and embed ran on the CPU regardless."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("needs a machine without CUDA: the refusal shows the setting was read")
    cfg = tws / "gpu.toml"
    cfg.write_text('[ml]\naccelerator = "cuda"\n')
    for cmd in (("predict", "sim_0000", "--model", "sim_classifier"), ("evaluate", "--model", "sim_classifier"),
                ("evaluate", "--model", "sim_vae"), ("embed", "--model", "sim_vae")):
        r = astro("-w", tws, "--seed", 1, "--cfg", cfg, "ztf", *cmd)
        assert r.returncode == 2 and "CUDA was asked for" in r.stderr, (cmd, r.stderr[-400:])
        assert astro("-w", tws, "--seed", 1, "--cfg", cfg, "ztf", *cmd, "--device", "cpu").returncode == 0


def test_the_anomaly_score_of_predict_is_the_reconstruction_error_of_embed(tws, astro):
    r = astro("-w", tws, "ztf", "predict", "sim_0000", "--model", "sim_classifier", "--autoencoder", "sim_vae")
    assert r.returncode == 0, r.stderr
    alerts = pd.read_parquet(tws / "ztf" / "predictions" / "sim_classifier_alerts.parquet")
    assert alerts["recon_error"].notna().all() and (alerts["recon_error"] > 0).all()
    assert astro("-w", tws, "--seed", 1, "ztf", "embed", "--model", "sim_vae", "--split", "test").returncode == 0
    emb = pd.read_parquet(next((tws / "ztf" / "embeddings").glob("sim_vae_test*.parquet")))
    both = emb.merge(alerts.sort_values("jd").drop_duplicates("objectId"), on="objectId", suffixes=("_e", "_p"))
    assert len(both) > 0
    np.testing.assert_allclose(both["recon_error_e"], both["recon_error_p"], rtol=1e-5)
