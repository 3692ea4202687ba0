"""`astro lens train`: what its help says val_rmse is, models named by the dataset folder (`--dataset .`, a
copied folder), a stored calibration discarded with the weights it was fitted to and kept with them."""

from __future__ import annotations

import json
import shutil

import pytest

from .conftest import copy_shear_set as _copy, run_cli


def run(capsys, ws, *args):
    return run_cli(capsys, "-w", ws, *args)


TRAIN = ["--set", "lens.train.threads=1", "lens", "train", "--epochs", "1", "--width", "4", "--batch-size", "8",
         "--device", "cpu"]


def test_train_help_says_what_val_rmse_is_measured_against(capsys):
    from astrotool.cli import main

    main(["lens", "train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    # before: val_rmse_g1/g2 unexplained, though evaluate's rmse_g1 is against the true shear
    assert "val_rmse_g1, val_rmse_g2 are the validation error against the training target" in text
    assert "with --target ellipticity (the default) the lensed ellipticity obs_g1, obs_g2" in text
    assert "not the true shear that evaluate's rmse_g1, rmse_g2 use" in text
    assert "with --target shear the true shear g1, g2" in text      # before: 'not against the true shear' alone


@pytest.mark.workspace("calibration")
def test_retraining_a_calibrated_model_says_its_calibration_is_discarded(ws, cal_nosym, capsys):
    dst = ws / "lens" / "models" / "mre"
    if not dst.exists():
        shutil.copytree(cal_nosym, dst)
    code, _, err = run(capsys, ws, "--overwrite", "--set", "lens.train.threads=1", "lens", "train", "--dataset", "g",
                       "--model", "mre", "--epochs", "1", "--width", "4", "--batch-size", "8", "--device", "cpu")
    assert code == 0, err
    assert "calibration discarded" in err
    # the command as it must run (it lacked --dataset, which calibrate requires, and the mode it was fitted in)
    assert "lens calibrate --model mre --dataset f3 --no-symmetrize` again" in " ".join(err.split()), err
    assert "calibration" not in json.loads((dst / "model.json").read_text())


@pytest.mark.workspace("calibration")
def test_a_resume_that_keeps_the_weights_keeps_the_calibration_and_says_nothing(ws, cal_nosym, capsys):
    """Run again with nothing left to train, train said "calibration discarded" while it stayed, and applied."""
    dst = ws / "lens" / "models" / "mkeep"
    shutil.copytree(cal_nosym, dst)
    before = json.loads((dst / "model.json").read_text())["calibration"]
    code, _, err = run(capsys, ws, "--set", "lens.train.threads=1", "lens", "train", "--dataset", "g", "--model",
                       "mkeep", "--epochs", "1", "--width", "4", "--batch-size", "8", "--device", "cpu")
    assert code == 0, err
    assert "calibration discarded" not in err
    assert json.loads((dst / "model.json").read_text())["calibration"] == before


@pytest.mark.workspace("folders")
def test_dataset_dot_names_outputs_by_the_folder(ws, capsys, monkeypatch):
    monkeypatch.chdir(ws / "lens" / "shear" / "g")
    pred, rep = ws / "lens" / "predictions", ws / "lens" / "reports"
    code, _, err = run(capsys, ws, "lens", "measure", "--dataset", ".", "--methods", "KSB", "--name", "gdot")
    assert code == 0, err
    code, _, err = run(capsys, ws, "lens", "measure", "--dataset", ".", "--methods", "KSB")
    assert code == 0, err
    assert (pred / "g_hsm.parquet").is_file() and not (pred / "_hsm.parquet").exists()
    code, out, err = run(capsys, ws, "lens", "evaluate", "--model", "m", "--dataset", ".", "--split", "all",
                         "--no-plots", "--classical", "")
    assert code == 0, err
    assert json.loads(out)["dataset"] == "g" and (rep / "g_m_all_metrics.json").is_file()
    assert not (rep / "_m_all_metrics.json").exists() and not (rep / "_m_metrics.json").exists()
    code, out, err = run(capsys, ws, *TRAIN, "--dataset", ".")
    assert code == 0, err
    res = json.loads(out)
    assert res["model"] == "g_cnn" and res["dataset"] == "g"
    tr = json.loads((ws / "lens" / "models" / "g_cnn" / "model.json").read_text())["training"]
    assert tr["dataset_folder"] == "g" and tr["dataset_path"] == str((ws / "lens" / "shear" / "g").resolve())


@pytest.mark.workspace("folders")
def test_a_copied_dataset_trains_and_is_evaluated_under_its_folder(ws, capsys):
    _copy(ws, "g", "gcopy", lambda gal, field: gal.__imul__(2.0))   # other pixels than g's
    code, out, err = run(capsys, ws, *TRAIN, "--dataset", "gcopy")
    assert code == 0, err
    res = json.loads(out)
    assert res["model"] == "gcopy_cnn" and res["dataset"] == "gcopy"
    tr = json.loads((ws / "lens" / "models" / "gcopy_cnn" / "model.json").read_text())["training"]
    assert tr["dataset_folder"] == "gcopy"
    code, out, err = run(capsys, ws, "lens", "evaluate", "--model", "gcopy_cnn", "--split", "all", "--no-plots",
                         "--classical", "")
    assert code == 0, err
    assert json.loads(out)["dataset"] == "gcopy"


def test_too_few_shear_fields_for_the_splits_say_what_a_group_is(tmp_path, capsys):
    """`split: 2 group(s) cannot fill 3 non-empty subsets` left the user to guess what a group was."""
    ws = tmp_path / "ws"
    code, _, err = run(capsys, ws, "-q", "lens", "generate", "--preset", "fields", "--name", "few", "-n", 32,
                       "--field-size", 16, "--stamp-size", 16, "--pixel-scale", 0.3)
    assert code == 0, err
    code, _, err = run(capsys, ws, *TRAIN, "--dataset", "few")
    assert code == 2 and "2 group(s) cannot fill 3 non-empty subsets" in err, err
    assert "a group is a field of one shear" in err and "--field-size" in err and "few" in err
