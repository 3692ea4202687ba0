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
    from tests.conftest import run_astro_here as run_astro

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
                                         "metric"),
                                        (("ztf", "evaluate", "--split", "all"), "split"),
                                        (("--set", "ztf.predict.batch_size=0", "ztf", "predict", "x", "--model",
                                          "m"), "ztf.predict.batch_size"),
                                        (("ztf", "export", "--model", "m", "--opset", "3"), "opset")])
def test_bad_train_and_embed_settings_are_refused(tmp_path, astro, args, word):
    err = _error(astro("-w", tmp_path / "ws", *args))
    assert word in err


@pytest.fixture(scope="module")
def trained(prepared, tmp_path_factory):
    """The prepared workspace with a classifier and a vae (one epoch each) and the set s33 (crop 33)."""
    from tests.conftest import run_astro_here as run_astro

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
    assert [m["model"] for m in out["models"]] == ["sim_classifier"]
    assert [a["model"] for a in out["autoencoders"]] == ["sim_vae"]
    assert out["autoencoders"][0]["reconstruction_mse"] > 0
    text = astro("-w", tws, "--seed", 1, "ztf", "evaluate").stdout.splitlines()   # piped: tab-separated
    assert "# classifiers on sim test" in text and "# autoencoders on sim test" in text   # a titled table each
    ae = text.index("# autoencoders on sim test")
    assert text[ae + 1].startswith("model\t") and "reconstruction_mse" in text[ae + 1].split("\t")
    assert text[ae + 2].startswith("sim_vae\t")


def test_predict_counts_an_input_named_twice_once(tws, tmp_path, astro):
    r = astro("--json", "-w", tws, "ztf", "predict", "sim_0000", "sim_0000", "--model", "sim_classifier")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["alerts"] == len(pd.read_parquet(tws / "ztf" / "alerts" / "sim_0000_alerts.parquet"))
    # a file given twice, and once more inside its folder, is read once
    from astrotool_ztf import synthetic

    src = synthetic.write_avro(tmp_path / "in" / "night.avro", synthetic.make_alerts(3))
    r = astro("--json", "-w", tws, "ztf", "predict", src, src, src.parent, "--model", "sim_classifier",
              "--name", "night")
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


def test_evaluate_warns_when_a_hold_out_set_holds_objects_the_model_trained_on(tws, astro):
    """A hold-out set prepared from the training set's own alert tables was scored without a word: about
    2/3 of its objects were the models' train and val objects."""
    assert astro("-w", tws, "--seed", 1, "--set", "ztf.prepare.holdout=true", "ztf", "prepare",
                 "--name", "ho").returncode == 0
    r = astro("--json", "-w", tws, "ztf", "evaluate", "--model", "sim_classifier", "--dataset", "ho")
    assert r.returncode == 0, r.stderr
    (warning,) = [w for w in json.loads(r.stdout)["warnings"] if "optimistic" in w]
    import re

    k, n = map(int, re.match(r"sim_classifier: (\d+) of (\d+) objects of the 'test' split of ho were in the "
                             r"training or validation split of the set it was trained on", warning).groups())
    assert 0 < k < n and warning in r.stderr
    r = astro("--json", "-w", tws, "ztf", "evaluate", "--model", "sim_classifier")   # its own set's test split
    assert r.returncode == 0 and not [w for w in json.loads(r.stdout)["warnings"] if "optimistic" in w]


def test_predict_says_why_no_input_could_be_ingested(tws, tmp_path, astro):
    from astrotool_ztf import synthetic

    src = synthetic.write_avro(tmp_path / "night.avro", synthetic.make_alerts(2))
    assert astro("-w", tws, "ztf", "ingest", src).returncode == 0
    r = astro("-w", tws, "--set", "ztf.ingest.stamp_size=31", "ztf", "predict", src, "--model", "sim_classifier")
    assert r.returncode == 2 and "Traceback" not in r.stderr   # refused before any work (it was an item failure)
    assert "no alert file could be read" not in r.stderr   # the hint keeps the --set it was given
    assert f"astro -w {tws} --set ztf.ingest.stamp_size=31 ztf ingest --overwrite" in r.stderr


def test_predict_refuses_stamps_smaller_than_the_model_s_crop_naming_the_stamp_file(tws, tmp_path, astro):
    """A crop-21 model on 15-px stamps: a bare ValueError, exit 1, naming no file."""
    from astrotool_ztf import synthetic

    src = synthetic.write_avro(tmp_path / "night.avro", synthetic.make_alerts(2))
    r = astro("-w", tmp_path / "small", "--set", "ztf.ingest.stamp_size=15", "ztf", "predict", src, "--model",
              tws / "ztf/models/sim_classifier")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "night_stamps.h5: stamps of 15 px; the model crops 21 px (ingest again with ztf.ingest.stamp_size = 21 " \
           "or more)" in r.stderr, r.stderr


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
    sim = ("--set", "ztf.simulate.chunk_size=4", "--set", "ztf.simulate.stamp_size=21", "ztf", "simulate",
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
    emb = pd.read_parquet(next((tws / "ztf" / "embeddings").glob("sim_vae_sim_test*.parquet")))
    both = emb.merge(alerts.sort_values("jd").drop_duplicates("objectId"), on="objectId", suffixes=("_e", "_p"))
    assert len(both) > 0
    np.testing.assert_allclose(both["recon_error_e"], both["recon_error_p"], rtol=1e-5)


def _unfinish(mdir, done=2, epochs=5):
    """``mdir``'s model.json as an interrupted ``train`` leaves it: ``done`` of ``epochs`` epochs, no temperature."""
    path = mdir / "model.json"
    meta = json.loads(path.read_text())
    meta.pop("temperature", None)
    meta["training_progress"] = {"epochs_done": done, "epochs": epochs, "step": 10, "stopped_early": False}
    path.write_text(json.dumps(meta))


def test_an_unfinished_checkpoint_is_refused_by_predict_export_and_evaluate(tws, astro):
    """predict and export used T = 1 and evaluate fitted T on the fly for an interrupted training."""
    _unfinish(tws / "ztf" / "models" / "sim_classifier")
    for cmd in (("predict", "sim_0000", "--model", "sim_classifier"), ("export", "--model", "sim_classifier"),
                ("evaluate", "--model", "sim_classifier")):
        err = _error(astro("-w", tws, "--seed", 1, "ztf", *cmd))
        assert "trained 2 of 5 epochs" in err and "again to resume" in err, cmd
    assert not list((tws / "ztf" / "predictions").glob("*"))
    assert not (tws / "ztf" / "models" / "sim_classifier" / "model.onnx").exists()


def test_evaluate_predict_and_export_read_their_configuration_tables(tws, tmp_path, astro):
    """evaluate's split, predict's batch size and export's opset were options only, with no [ztf.<command>]."""
    cfg = tmp_path / "node.toml"
    cfg.write_text("[ztf.evaluate]\nsplit = \"val\"\n[ztf.predict]\nbatch_size = 7\n[ztf.export]\nopset = 18\n")
    r = astro("--json", "-w", tws, "--cfg", cfg, "--seed", 1, "ztf", "evaluate", "--model", "sim_classifier")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["split"] == "val"
    assert (tws / "ztf" / "reports" / "sim_classifier_sim_val_evaluate.json").is_file()
    r = astro("--json", "-w", tws, "--cfg", cfg, "ztf", "export", "--model", "sim_classifier")
    assert r.returncode == 0, r.stderr
    import onnx

    assert onnx.load(str(tws / "ztf" / "models" / "sim_classifier" / "model.onnx")).opset_import[0].version == 18


def test_evaluate_reports_name_the_dataset(tws, astro):
    """A second evaluate on another set overwrote the first one's report, which did not name its set."""
    assert astro("-w", tws, "--seed", 1, *SMALL, "ztf", "prepare", "--name", "other").returncode == 0
    for extra in ((), ("--dataset", "other")):
        r = astro("-w", tws, "--seed", 1, "ztf", "evaluate", "--model", "sim_classifier", *extra)
        assert r.returncode == 0, r.stderr
    reports = tws / "ztf" / "reports"
    for ds in ("sim", "other"):
        assert json.loads((reports / f"sim_classifier_{ds}_test_evaluate.json").read_text())["dataset"] == ds
        assert (reports / f"sim_classifier_{ds}_test_confusion.png").is_file()
        assert (reports / f"sim_classifier_{ds}_test_reliability.png").is_file()


def test_evaluate_json_carries_the_reports_values_unrounded(tws, astro):
    """--json rows held the table's rounded values (temperature 0.11 where the report and model.json say
    0.1104...): a script reading them got other numbers than the report."""
    r = astro("-w", tws, "--json", "ztf", "evaluate", "--model", "sim_classifier")
    assert r.returncode == 0, r.stderr
    [row] = json.loads(r.stdout)["models"]
    report = json.loads((tws / "ztf/reports/sim_classifier_sim_test_evaluate.json").read_text())
    assert row["temperature"] == report["temperature"] and row["accuracy"] == report["classification"]["accuracy"]
    assert row["ece_after"] == report["calibration_after"]["ece"]
    shown = astro("-w", tws, "ztf", "evaluate", "--model", "sim_classifier")   # the table: 4 decimals
    assert shown.returncode == 0 and f"{round(report['temperature'], 4)}" in shown.stdout, shown.stdout


def test_predict_refuses_to_replace_predictions_of_other_inputs(tws, tmp_path, astro):
    """predict B after predict A with the same model replaced A's predictions without a word."""
    from astrotool_ztf import synthetic

    other = synthetic.write_avro(tmp_path / "night.avro", synthetic.make_alerts(3))
    run = ("-w", tws, "ztf", "predict")
    out = tws / "ztf" / "predictions" / "sim_classifier_alerts.parquet"
    assert astro(*run, "sim_0000", "--model", "sim_classifier").returncode == 0
    first = pd.read_parquet(out)
    assert astro(*run, "sim_0000", "--model", "sim_classifier").returncode == 0  # the same inputs: made alike
    pd.testing.assert_frame_equal(pd.read_parquet(out), first)
    err = _error(astro(*run, other, "--model", "sim_classifier"))
    assert "sim_classifier_alerts.parquet" in err and "--overwrite" in err and "--name" in err
    pd.testing.assert_frame_equal(pd.read_parquet(out), first)
    assert astro(*run, other, "--model", "sim_classifier", "--name", "b").returncode == 0
    assert astro("-w", tws, "--overwrite", "ztf", "predict", other, "--model", "sim_classifier").returncode == 0
    assert set(pd.read_parquet(out)["source"]) == {"night_alerts.parquet"}


def test_predict_keeps_an_alert_found_in_two_inputs_once(tws, tmp_path, astro):
    from astrotool_ztf import synthetic

    alerts = synthetic.make_alerts(3)
    a = synthetic.write_avro(tmp_path / "tar" / "night.avro", alerts)
    b = synthetic.write_avro(tmp_path / "folder" / "again.avro", alerts)
    r = astro("--json", "-w", tws, "ztf", "predict", a, b.parent, "--model", "sim_classifier")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["alerts"] == 3 and out["repeated"] == 3 and "kept once" in r.stderr
    table = pd.read_parquet(tws / "ztf" / "predictions" / "sim_classifier_alerts.parquet")
    assert len(table) == table["candid"].nunique() == 3


def test_evaluate_of_every_model_leaves_out_those_that_do_not_fit_the_set(tws, astro):
    """After the set was made again, evaluate with no --model refused for the old models and scored nothing."""
    assert astro("-w", tws, "--seed", 2, *SMALL, "--overwrite", "ztf", "prepare").returncode == 0
    assert astro("-w", tws, "--seed", 2, "ztf", "train", "--epochs", 1, "--model", "sim_new").returncode == 0
    r = astro("--json", "-w", tws, "--seed", 2, "ztf", "evaluate")
    assert r.returncode == 0, r.stderr
    assert [m["model"] for m in json.loads(r.stdout)["models"]] == ["sim_new"]
    assert "left out sim_classifier" in r.stderr and "left out sim_vae" in r.stderr
    err = _error(astro("-w", tws, "--seed", 2, "ztf", "evaluate", "--model", "sim_classifier"))
    assert "not the set" in err


def test_temporal_evaluate_falls_back_to_a_seed_baseline_and_reports_every_k(tws, astro):
    """With only <dataset>_classifier_seedN the baseline was left out silently; k stopped at (1, 2, 3, 5)."""
    models = tws / "ztf" / "models"
    assert astro("-w", tws, "--seed", 1, "ztf", "train", "--arch", "temporal", "--epochs", 1).returncode == 0
    shutil.copytree(models / "sim_classifier", models / "sim_classifier_seed7")
    shutil.move(models / "sim_classifier", models / "sim_classifier_seed12")
    r = astro("--json", "-w", tws, "--seed", 1, "ztf", "evaluate", "--model", "sim_temporal")
    assert r.returncode == 0, r.stderr
    report = json.loads((tws / "ztf" / "reports" / "sim_temporal_sim_test_temporal.json").read_text())
    assert report["baseline"] == "sim_classifier_seed7" and report["dataset"] == "sim"
    with StampDataset(tws / "ztf" / "prepared" / "sim") as ds:
        meta = ds.metadata(["split", "n_alerts"])
    longest = int(np.max(meta["n_alerts"][meta["split"] == "test"]))
    assert [row["alerts"] for row in report["by_alerts"]] == list(range(1, min(longest, 5) + 1))
    assert all("gain" in row for row in report["by_alerts"])
    shutil.rmtree(models / "sim_classifier_seed7")
    shutil.rmtree(models / "sim_classifier_seed12")
    r = astro("-w", tws, "--seed", 1, "ztf", "evaluate", "--model", "sim_temporal")
    assert r.returncode == 0 and "--baseline" in r.stderr


def test_the_seed_spread_is_the_sample_standard_deviation():
    """Two seeds at 0.1458 and 0.2083 gave a std of 0.03125 (ddof = 0)."""
    from astrotool_ztf.evaluate import summarise

    def result(acc, sn):
        return {"classification": {"class_names": ["AGN", "SN"], "accuracy": acc, "macro_f1": acc,
                                   "recall": [acc, sn]},
                "calibration_before": {"ece": 0.1}, "calibration_after": {"ece": 0.1}}

    out = summarise([result(0.1458, 0.5), result(0.2083, float("nan"))])  # SN: one finite value
    assert out["accuracy"]["std"] == pytest.approx(0.0625 / np.sqrt(2), abs=1e-12)
    assert out["recall"]["SN"]["std"] == 0.0 and out["ece_after"]["std"] == 0.0


def test_a_crop_larger_than_the_stamps_is_an_input_error_and_full_cutouts_are_not_flagged(ws, tmp_path, astro):
    """crop 63 of 45 px stamps was a ValueError with a traceback hint; --stamp-size 45 flagged every alert
    stamps_resized, which means a stamp cut at a CCD edge."""
    from astrotool_ztf import synthetic

    src = synthetic.write_avro(tmp_path / "night.avro", synthetic.make_alerts(3))
    assert astro("-w", ws, "ztf", "ingest", "--stamp-size", 45, src).returncode == 0
    assert not pd.read_parquet(ws / "ztf" / "alerts" / "night_alerts.parquet")["stamps_resized"].any()
    err = _error(astro("-w", ws, "--set", "ztf.prepare.crop=63", "ztf", "prepare", "night", "--name", "n"))
    assert "night_stamps.h5" in err and "ztf.prepare.crop" in err and "--traceback" not in err
    assert not (ws / "ztf" / "prepared" / "n").exists()


def test_a_label_map_to_an_unknown_class_is_refused_naming_the_key(tmp_path, astro):
    err = _error(astro("-w", tmp_path / "ws", "--set", 'ztf.prepare.label_map.QSO="Quasar"', "ztf", "prepare"))
    assert "ztf.prepare.label_map" in err and "'Quasar'" in err and "AGN, SN, VS, asteroid, bogus" in err


def test_prepare_says_when_a_small_class_caps_val_and_test(ws, astro):
    r = astro("-w", ws, "--seed", 1, "ztf", "prepare", "--name", "capped")
    assert r.returncode == 0, r.stderr
    assert "test and val hold at most a third each" in r.stderr and "test_per_class 100" in r.stderr


def test_an_empty_folder_is_an_input_that_failed(tmp_path, astro):
    """It was counted as no file while the progress line said "1/1 done, 1 failed"."""
    (tmp_path / "empty").mkdir()
    r = astro("--json", "-w", tmp_path / "ws", "ztf", "ingest", tmp_path / "empty")
    out = json.loads(r.stdout)
    assert (out["files"], out["ingested"], out["failed"]) == (1, 0, 1) and "holds no .avro" in r.stderr
    assert "1/1 done, 1 failed" in r.stderr


def test_predict_again_after_the_inputs_were_ingested_again_is_made_alike(tws, tmp_path, astro):
    """The record held the alert table's checksum, provenance time included: ingesting the same file again
    (or predict --overwrite, which re-ingested it) made a plain rerun refused."""
    from astrotool_ztf import synthetic

    src = synthetic.write_avro(tmp_path / "night.avro", synthetic.make_alerts(3))
    run = ("-w", tws, "ztf", "predict", src, "--model", "sim_classifier")
    table = tws / "ztf" / "alerts" / "night_alerts.parquet"
    assert astro(*run).returncode == 0
    assert astro("-w", tws, "--overwrite", "ztf", "ingest", src).returncode == 0
    r = astro(*run)
    assert r.returncode == 0, r.stderr
    ingested = table.stat().st_mtime_ns
    assert astro("-w", tws, "--overwrite", *run[2:]).returncode == 0  # replaces the predictions only
    assert table.stat().st_mtime_ns == ingested
    r = astro(*run)
    assert r.returncode == 0, r.stderr


def _finished_after(mdir, done, epochs):
    """Make ``mdir`` a checkpoint interrupted after ``done`` of ``epochs`` epochs (best and ``last/``)."""
    for path in (mdir / "model.json", mdir / "last" / "model.json"):
        meta = json.loads(path.read_text())
        meta["training_progress"] = {**meta["training_progress"], "epochs_done": done, "epochs": epochs,
                                     "finished": False}  # as fit leaves an interrupted run's progress
        path.write_text(json.dumps(meta))


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


def _edit_meta(mdir, **changes):
    path = mdir / "model.json"
    meta = json.loads(path.read_text())
    for key, value in changes.items():
        *parents, last = key.split("__")
        node = meta
        for p in parents:
            node = node[p]
        node[last] = value
    path.write_text(json.dumps(meta))


def test_evaluate_of_every_model_leaves_out_other_crops_and_other_sets_models(tws, astro):
    """A model of the set with another crop aborted evaluate; sim_c33_classifier (trained on sim_c33) was
    scored as a model of sim."""
    models = tws / "ztf" / "models"
    shutil.copytree(models / "sim_classifier", models / "sim_odd")
    _edit_meta(models / "sim_odd", crop=33)
    shutil.copytree(models / "sim_classifier", models / "sim_c33_classifier")
    _edit_meta(models / "sim_c33_classifier", settings__dataset__name="sim_c33")
    r = astro("--json", "-w", tws, "--seed", 1, "ztf", "evaluate")
    assert r.returncode == 0, r.stderr
    assert [m["model"] for m in json.loads(r.stdout)["models"]] == ["sim_classifier"]
    assert "left out sim_odd" in r.stderr and "crop" in r.stderr and "sim_c33_classifier" not in r.stderr


def test_the_default_baseline_is_the_first_candidate_that_fits_warned_about_once(tws, astro):
    models = tws / "ztf" / "models"
    assert astro("-w", tws, "--seed", 1, "ztf", "train", "--arch", "temporal", "--epochs", 1).returncode == 0
    shutil.copytree(models / "sim_classifier", models / "sim_classifier_seed7")
    _unfinish(models / "sim_classifier")
    r = astro("-w", tws, "--seed", 1, "ztf", "evaluate")
    assert r.returncode == 0, r.stderr
    report = json.loads((tws / "ztf" / "reports" / "sim_temporal_sim_test_temporal.json").read_text())
    assert report["baseline"] == "sim_classifier_seed7"
    assert r.stderr.count("left out sim_classifier:") == 1


def test_a_label_map_to_a_class_left_out_of_a_reduced_list_is_accepted():
    """A SIMBAD map shared with classes ["SN", "AGN"] mapped RRLyr to VS: every command was refused."""
    from astrotool_ztf.config import PrepareConfig

    PrepareConfig(classes=["SN", "AGN"], label_map={"RRLyr": "VS", "QSO": "AGN"})
    PrepareConfig(classes=["SN", "KN"], label_map={"KN": "KN"})
    with pytest.raises(ValueError, match="'Quasar'"):
        PrepareConfig(classes=["SN", "AGN"], label_map={"QSO": "Quasar"})


def test_predict_keeps_the_copy_of_a_repeated_alert_that_has_a_prediction(tws, tmp_path, astro):
    import copy

    from astrotool_ztf import synthetic

    alerts = synthetic.make_alerts(3)
    bare = copy.deepcopy(alerts)  # the first alert without stamps: no prediction from this copy
    bare[0]["cutoutScience"] = bare[0]["cutoutTemplate"] = bare[0]["cutoutDifference"] = None
    first = synthetic.write_avro(tmp_path / "a" / "bare.avro", bare)
    second = synthetic.write_avro(tmp_path / "b" / "full.avro", alerts)
    r = astro("--json", "-w", tws, "ztf", "predict", first, second, "--model", "sim_classifier")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["alerts"] == 3 and out["repeated"] == 3 and out["no_prediction"] == 0


def test_a_stamps_file_without_science_stamps_is_an_input_error(tmp_path):
    import h5py

    from astrotool.errors import InputError
    from astrotool_ztf.prepare import check_crop

    path = tmp_path / "x_stamps.h5"
    with h5py.File(path, "w") as h5:
        h5["candid"] = np.arange(3)
    with pytest.raises(InputError, match="science"):
        check_crop([(tmp_path / "x_alerts.parquet", path)], 21)


def test_evaluate_of_every_model_leaves_out_an_unreadable_model_folder(tws, astro):
    """trained_on() read model.json outside fits(): one unreadable folder of the set stopped evaluate, and
    ``"settings": null`` crashed with AttributeError."""
    models = tws / "ztf" / "models"
    (models / "sim_junk").mkdir()
    (models / "sim_junk" / "model.json").write_text("not json")
    shutil.copytree(models / "sim_classifier", models / "sim_nullset")
    _edit_meta(models / "sim_nullset", settings=None)
    r = astro("--json", "-w", tws, "--seed", 1, "ztf", "evaluate")
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr and "left out sim_junk" in r.stderr
    assert "sim_classifier" in r.stdout


def test_predict_of_a_changed_input_says_to_ingest_it_again(tws, tmp_path, astro):
    """predict --overwrite no longer re-ingests: its refusal of a changed input said only 'use --overwrite'."""
    from astrotool_ztf import synthetic

    src = synthetic.write_avro(tmp_path / "night.avro", synthetic.make_alerts(3))
    run = ("-w", tws, "ztf", "predict", src, "--model", "sim_classifier")
    assert astro(*run).returncode == 0
    synthetic.write_avro(src, synthetic.make_alerts(4))
    for r in (astro(*run), astro("-w", tws, "--overwrite", *run[2:])):
        assert r.returncode != 0 and "Traceback" not in r.stderr
        assert f"astro -w {tws} ztf ingest --overwrite {src}" in r.stderr
    assert astro("-w", tws, "--overwrite", "ztf", "ingest", src).returncode == 0
    r = astro("-w", tws, "--overwrite", *run[2:])
    assert r.returncode == 0, r.stderr


def test_predict_of_a_moved_input_is_made_again_alike(tws, tmp_path, astro):
    from astrotool_ztf import synthetic

    src = synthetic.write_avro(tmp_path / "in" / "night.avro", synthetic.make_alerts(3))
    run = ("-w", tws, "ztf", "predict", "--model", "sim_classifier", "--name", "moved")
    assert astro(*run, src).returncode == 0
    moved = tmp_path / "elsewhere" / "in"
    moved.parent.mkdir()
    src.parent.rename(moved)   # the same alerts in a folder moved: the same input
    r = astro(*run, moved / "night.avro")
    assert r.returncode == 0, r.stderr
    assert not list((tws / "ztf" / "alerts").glob("*_night_alerts.parquet"))
    (moved / "night.avro").rename(moved / "renamed.avro")   # another table of the same alerts: the same input
    r = astro(*run, moved / "renamed.avro")
    assert r.returncode == 0, r.stderr
    assert (tws / "ztf" / "alerts" / "renamed_alerts.parquet").exists()



def test_an_autoencoder_on_an_empty_split_is_refused_as_a_classifier_is(tws, astro):
    assert astro("-w", tws, "--seed", 1, "--set", "ztf.prepare.val_per_class=0", "--set",
                 "ztf.prepare.test_per_class=2", "ztf", "prepare", "--name", "noval").returncode == 0
    for model in ("sim_classifier", "sim_vae"):
        r = astro("-w", tws, "ztf", "evaluate", "--dataset", "noval", "--split", "val", "--model", model)
        err = _error(r)
        assert "no object in the 'val' split" in err and "noval" in err, (model, err)
        assert "RuntimeWarning" not in err and "Mean of empty slice" not in err
        assert not list((tws / "ztf" / "reports").glob(f"{model}_noval_val*"))


def _main(capsys, *args):
    """``astro ARGS`` in this process: the exit code, stdout and stderr."""
    from astrotool.cli import main

    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_evaluate_json_warnings_name_every_model_left_out(tws, capsys):
    """Models left out with a warning were only logged: the --json ``warnings`` stayed []."""
    models = tws / "ztf" / "models"
    shutil.copytree(models / "sim_classifier", models / "sim_odd")
    _edit_meta(models / "sim_odd", crop=33)
    (models / "sim_junk").mkdir()
    (models / "sim_junk" / "model.json").write_text("not json")
    code, out, err = _main(capsys, "--json", "-w", tws, "--seed", 1, "ztf", "evaluate")
    assert code == 0, err
    warnings = json.loads(out)["warnings"]
    assert sorted(w.split(":")[0] for w in warnings) == ["left out sim_junk", "left out sim_odd"]
    assert all(w in err for w in warnings)


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
    assert train_command(meta, tmp_path / "intr_seed3") == (
        "astro ztf train --model intr --seeds 3 --epochs 6 --dataset big --arch probe --batch-size 32 --lr 0.002 "
        "--set ztf.train.group=c4 --set ztf.train.use_features=false --encoder big_vae --patience 0")   # patience 0: early stopping off, kept off


def test_predictions_and_embeddings_carry_units_and_descriptions(tws, capsys):
    """jd had no unit and p_*, p_max, recon_error, umap_*, z* no description."""
    from astropy.table import Table

    code, _, err = _main(capsys, "-w", tws, "ztf", "predict", "sim_0000", "--model", "sim_classifier",
                         "--autoencoder", "sim_vae")
    assert code == 0, err
    alerts = Table.read(tws / "ztf" / "predictions" / "sim_classifier_alerts.parquet")
    assert str(alerts["jd"].unit) == "d" and "Julian date" in alerts["jd"].description
    for column in ("p_AGN", "p_max", "class", "recon_error"):
        assert alerts[column].description, column
    objects = Table.read(tws / "ztf" / "predictions" / "sim_classifier_objects.parquet")
    assert all(objects[c].description for c in ("p_AGN", "class_first_alert", "n_alerts"))
    code, out, err = _main(capsys, "--json", "-w", tws, "--seed", 1, "ztf", "embed", "--model", "sim_vae")
    assert code == 0, err
    embedding = Table.read(json.loads(out)["parquet"])
    assert all(embedding[c].description for c in ("umap_1", "umap_2", "recon_error", "z0", "z20", "objectId"))


def test_evaluate_text_tables_show_4_decimals_and_a_column_per_class(tws, capsys):
    """Autoencoder and temporal rows printed full floats, and the per-class errors as one JSON cell."""
    code, out, err = _main(capsys, "-w", tws, "--seed", 1, "ztf", "evaluate")
    assert code == 0, err
    lines = out.splitlines()
    ae = lines.index("# autoencoders on sim test")
    header, row = lines[ae + 1].split("\t"), lines[ae + 2].split("\t")
    assert {"reconstruction_mse_AGN", "reconstruction_mse_bogus"} <= set(header) and "{" not in out
    shown = dict(zip(header, row))
    assert len(shown["reconstruction_mse"].partition(".")[2]) <= 4 and float(shown["reconstruction_mse_AGN"]) > 0
    from astrotool_ztf.evaluate import shown_row   # temporal rows are shown alike

    assert shown_row({"alerts": 2, "gain": 0.12008794397115707, "single_alert_accuracy": None}) == {
        "alerts": 2, "gain": 0.1201, "single_alert_accuracy": None}


def test_predict_runs_the_onnx_export_and_refuses_a_stale_one(tws, astro):
    """`ztf export` wrote model.onnx that predict could not run; lens predict has had --engine onnxruntime."""
    run = ("--json", "-w", tws, "ztf", "predict", "sim_0000", "--model", "sim_classifier")
    mdir = tws / "ztf" / "models" / "sim_classifier"
    err = _error(astro(*run, "--engine", "onnxruntime"))
    assert "model.onnx" in err and f"astro -w {tws} ztf export --model sim_classifier" in err   # not exported yet
    assert astro("-w", tws, "ztf", "export", "--model", "sim_classifier").returncode == 0
    r = astro(*run)
    assert r.returncode == 0, r.stderr
    torch_p = pd.read_parquet(tws / "ztf" / "predictions" / "sim_classifier_alerts.parquet")
    r = astro(*run, "--engine", "onnxruntime")   # its own tables, as lens predict's: the torch run's kept
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["engine"] == "onnxruntime"
    onnx_p = pd.read_parquet(tws / "ztf" / "predictions" / "sim_classifier_onnx_alerts.parquet")
    cols = [c for c in torch_p if c.startswith("p_")]
    assert np.allclose(onnx_p[cols].to_numpy(float), torch_p[cols].to_numpy(float), atol=1e-5)
    assert (onnx_p["class"] == torch_p["class"]).all()
    pd.testing.assert_frame_equal(pd.read_parquet(tws / "ztf" / "predictions" / "sim_classifier_alerts.parquet"),
                                  torch_p)
    # a checkpoint whose temperature changed since the export: the export is refused, naming it
    meta = json.loads((mdir / "model.json").read_text())
    (mdir / "model.json").write_text(json.dumps({**meta, "temperature": meta["temperature"] * 2}))
    err = _error(astro(*run, "--engine", "onnxruntime", "--name", "stale"))
    assert "model.onnx" in err and "temperature" in err and f"astro -w {tws} ztf export --model sim_classifier" in err
    assert not (tws / "ztf" / "predictions" / "stale_onnx_alerts.parquet").exists()
