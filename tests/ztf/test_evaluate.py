"""``astro ztf evaluate``: which models of a set it scores or leaves out, the baseline of a temporal model, the
seeds it averages, and its reports, tables and --json."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from astrotool_ztf.prepare import StampDataset
from tests.ztf.conftest import (SMALL, edit_meta as _edit_meta, run_main as _main, unfinish as _unfinish,
                                 usage_error as _error)


def test_a_set_made_again_with_another_crop_names_the_crop(vae_ws, tmp_path, astro):
    import shutil

    ws = tmp_path / "ws"
    shutil.copytree(vae_ws, ws)
    small = ("--seed", 1, "--set", "ztf.prepare.val_per_class=2", "--set", "ztf.prepare.test_per_class=2")
    assert astro("-w", ws, *small, "--overwrite", "ztf", "prepare", "--crop", 33).returncode == 0
    err = _error(astro("-w", ws, "--seed", 1, "ztf", "evaluate", "--model", "sim_vae"))
    assert "crop 21 -> 33" in err and "manifest" not in err


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


def test_seed_groups_hold_only_models_trained_for_the_same_epochs(tmp_path):
    from astrotool_ztf.evaluate import seed_groups

    def model(name, seed, epochs, patience=5):
        d = tmp_path / name
        d.mkdir()
        (d / "model.json").write_text(json.dumps({
            "format": "astrotool-checkpoint", "format_version": 1,
            "architecture": {"name": "ztf_stamp_classifier", "kwargs": {}},
            "settings": {"lr": 1e-3, "seed": seed, "dataset": {"name": "sim"}},
            "hyperparameters": {"epochs": epochs, "patience": patience},
            "training_progress": {"epochs_done": epochs, "epochs": epochs, "finished": True}}))
        return d

    dirs = [model("m_seed0", 0, 3), model("m_seed1", 1, 3), model("m_seed2", 2, 12), model("m_seed3", 3, 3, 0)]
    assert [[d.name for d in g] for g in seed_groups(dirs)] == [["m_seed0", "m_seed1"], ["m_seed2"], ["m_seed3"]]


def test_a_seed_group_counts_each_seed_once(tmp_path):
    """A plain train (seed 0) and train --seeds 0,1,2 gave the group 'r2_classifier, r2_classifier_seed0' a seed
    spread of one seed twice (0.0000 ± 0.0000)."""
    from astrotool_ztf.evaluate import seed_groups

    def model(name, seed):
        d = tmp_path / name
        d.mkdir()
        (d / "model.json").write_text(json.dumps({"format": "astrotool-checkpoint", "format_version": 1,
                                                  "architecture": {"name": "ztf-stamp-classifier", "kwargs": {}},
                                                  "settings": {"lr": 1e-3, "dataset": {"name": "r2"}, "seed": seed}}))
        return d

    said = []
    dirs = [model("r2_classifier", 0), model("r2_classifier_seed0", 0), model("r2_classifier_seed1", 1)]
    assert [[d.name for d in g] for g in seed_groups(dirs, said.append)] == [["r2_classifier", "r2_classifier_seed1"]]
    assert len(said) == 1 and "r2_classifier_seed0" in said[0] and "r2_classifier " in said[0] and "seed 0" in said[0]
    assert [[d.name for d in g] for g in seed_groups(dirs[:2], said.append)] == [["r2_classifier"]]


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


def test_an_autoencoder_on_an_empty_split_is_refused_as_a_classifier_is(tws, astro):
    assert astro("-w", tws, "--seed", 1, "--set", "ztf.prepare.val_per_class=0", "--set",
                 "ztf.prepare.test_per_class=2", "ztf", "prepare", "--name", "noval").returncode == 0
    for model in ("sim_classifier", "sim_vae"):
        r = astro("-w", tws, "ztf", "evaluate", "--dataset", "noval", "--split", "val", "--model", model)
        err = _error(r)
        assert "no object in the 'val' split" in err and "noval" in err, (model, err)
        assert "RuntimeWarning" not in err and "Mean of empty slice" not in err
        assert not list((tws / "ztf" / "reports").glob(f"{model}_noval_val*"))


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


def test_a_temporal_model_and_its_baseline_on_an_empty_split_score_nothing(tws, astro):
    """With --baseline, a split with no object crashed (RuntimeError: cannot reshape tensor of 0 elements);
    without it, evaluate warned 'nothing scored' and exited 0."""
    assert astro("-w", tws, "--seed", 1, "ztf", "train", "--arch", "temporal", "--epochs", 1).returncode == 0
    assert astro("-w", tws, "--seed", 1, "--set", "ztf.prepare.val_per_class=0", "--set",
                 "ztf.prepare.test_per_class=2", "ztf", "prepare", "--name", "noval").returncode == 0
    for extra in ((), ("--baseline", "sim_classifier")):
        r = astro("--json", "-w", tws, "ztf", "evaluate", "--dataset", "noval", "--split", "val", "--model",
                  "sim_temporal", *extra)
        assert r.returncode == 0 and "Traceback" not in r.stderr, (extra, r.stderr)
        out = json.loads(r.stdout)
        assert out["temporal"] == {"sim_temporal": []} and any("nothing scored" in w for w in out["warnings"])


def test_a_damaged_model_is_warned_about_once_also_as_a_default_baseline(tws, capsys):
    """An unreadable sim_classifier_seed0 was left out twice: as a model of the set, then as a baseline."""
    models = tws / "ztf" / "models"
    code, _, err = _main(capsys, "-w", tws, "--seed", 1, "ztf", "train", "--arch", "temporal", "--epochs", 1)
    assert code == 0, err
    shutil.copytree(models / "sim_classifier", models / "sim_classifier_seed0")
    (models / "sim_classifier_seed0" / "model.json").write_text("not json")
    shutil.rmtree(models / "sim_classifier")
    code, out, err = _main(capsys, "--json", "-w", tws, "--seed", 1, "ztf", "evaluate")
    assert code == 0, err
    warnings = json.loads(out)["warnings"]
    assert sum(w.startswith("left out sim_classifier_seed0") for w in warnings) == 1, warnings
    assert err.count("left out sim_classifier_seed0") == 1
