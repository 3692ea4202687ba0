"""New-user review of `astro lens`: evaluate's report per subset, its alarm for a CNN that does not respond to
shear, one message for a failed `lens kappa data`, piped `lens kappa score`, export and calibrate hints,
provenance of measure's and predict's tables, `lens kappa evaluate`, train's validation RMSE."""

from __future__ import annotations

import json

import pytest

from .conftest import review_workspace, run_cli


def run(capsys, ws, *args):
    return run_cli(capsys, "-w", ws, *args)


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    """A workspace with dataset g (40 stamps), fields f3 (3 fields of 8) and model m (one epoch of width 4 on g)."""
    return review_workspace(tmp_path_factory.mktemp("newuser") / "ws", 40, 40, 24, 8)


def test_evaluate_keeps_the_test_and_the_all_report_apart(ws, capsys):
    rep = ws / "lens" / "reports"
    ev = ["lens", "evaluate", "--model", "m", "--dataset", "g", "--classical", ""]
    code, out, err = run(capsys, ws, *ev, "--split", "test")
    assert code == 0, err
    test = json.loads(out)
    assert test["subset"] == "test" and test["report"] == str(rep / "g_m_metrics.json")   # the default name
    assert (rep / "g_m_pred-vs-true.png").is_file()
    code, out, err = run(capsys, ws, *ev, "--split", "all")
    assert code == 0, err
    every = json.loads(out)
    assert every["report"] == str(rep / "g_m_all_metrics.json")
    assert every["predictions"].endswith("g_m_all.parquet")
    # before: g_m_metrics.json held the all run, and g_m_pred-vs-true.png was the all run's
    assert json.loads((rep / "g_m_metrics.json").read_text())["subset"] == "test"
    assert json.loads((rep / "g_m_all_metrics.json").read_text())["subset"] == "all"
    assert (rep / "g_m_pred-vs-true.png").is_file() and (rep / "g_m_all_pred-vs-true.png").is_file()
    assert every["plots"] and all("g_m_all_" in p for p in every["plots"])
    code, out, err = run(capsys, ws, *ev, "--split", "all", "--no-plots")   # removes only the all run's plots
    assert code == 0, err
    assert (rep / "g_m_pred-vs-true.png").is_file() and not (rep / "g_m_all_pred-vs-true.png").exists()


def test_evaluate_all_removes_a_report_of_every_stamp_under_the_test_name(ws, capsys):
    rep = ws / "lens" / "reports"
    rep.mkdir(parents=True, exist_ok=True)
    ev = ["-v", "lens", "evaluate", "--model", "m", "--dataset", "g", "--classical", "", "--split", "all",
          "--no-plots"]
    # before the all run had a name of its own, it wrote g_m_metrics.json (subset all) and g_m_*.png
    (rep / "g_m_metrics.json").write_text(json.dumps({"dataset": "g", "model": "m", "subset": "all"}))
    (rep / "g_m_pred-vs-true.png").write_bytes(b"old")
    (rep / "g_m_nosym_metrics.json").write_text(json.dumps({"dataset": "g", "model": "m", "subset": "all"}))
    code, out, err = run(capsys, ws, *ev)
    assert code == 0, err
    assert not (rep / "g_m_metrics.json").exists() and not (rep / "g_m_pred-vs-true.png").exists()
    assert "removed" in err and "g_m_metrics.json" in err
    assert (rep / "g_m_nosym_metrics.json").is_file()       # another mode's: left to a run in that mode
    assert json.loads((rep / "g_m_all_metrics.json").read_text())["subset"] == "all"
    # a test split's report under that name is kept
    test = {"dataset": "g", "model": "m", "subset": "test"}
    (rep / "g_m_metrics.json").write_text(json.dumps(test))
    code, out, err = run(capsys, ws, *ev)
    assert code == 0, err
    assert json.loads((rep / "g_m_metrics.json").read_text()) == test and "removed" not in err
    (rep / "g_m_metrics.json").unlink()
    code, out, err = run(capsys, ws, *ev[:-3], "--split", "all", "--no-plots", "--no-symmetrize")
    assert code == 0, err
    assert not (rep / "g_m_nosym_metrics.json").exists()


def test_evaluate_warns_of_a_cnn_that_does_not_respond_to_shear(ws, capsys):
    code, out, err = run(capsys, ws, "lens", "evaluate", "--model", "m", "--dataset", "g", "--split", "all",
                         "--classical", "", "--no-plots")
    assert code == 0, err
    cnn = json.loads(out)["estimators"]["CNN"]
    assert 1 + cnn["m1"] < 0.1 and 1 + cnn["m2"] < 0.1, cnn      # one epoch of width 4: no response
    notes = json.loads(out)["notes"]
    assert any("below lens.calibrate.min_response = 0.1: model 'm' hardly responds to shear" in n for n in notes)
    assert "hardly responds to shear" in err and "WARNING" in err
    code, out, err = run(capsys, ws, "--set", "lens.calibrate.min_response=0", "lens", "evaluate", "--model", "m",
                         "--dataset", "g", "--split", "all", "--classical", "", "--no-plots")
    assert code == 0 and "hardly responds" not in err       # 0: no check, as for calibrate


def _maps(root, n, nan_at=None):
    """``root/EPSILON/0000k.npy`` and ``root/KAPPA/0000k.npy`` (32 px), one NaN value in map ``nan_at``."""
    import numpy as np

    rng = np.random.default_rng(0)
    for sub in ("EPSILON", "KAPPA"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for k in range(n):
        eps = rng.normal(0, 0.3, (3, 32, 32)).astype(np.float16)
        if k == nan_at:
            eps[0, 0, 0] = np.nan
        np.save(root / "EPSILON" / f"{k:05d}.npy", eps)
        np.save(root / "KAPPA" / f"{k:05d}.npy", rng.normal(0, 0.05, (32, 32)).astype(np.float16))
    return root


def test_failed_kappa_data_leaves_no_folder_and_baseline_names_the_command(tmp_path, capsys):
    ws = tmp_path / "ws"
    root = _maps(tmp_path / "t_nan", 6, nan_at=3)
    code, _, err = run(capsys, ws, "lens", "kappa", "data", root)
    assert code == 2 and "00003.npy: 1 NaN value" in err
    # before: lens/kappa/data/t_nan/ held data_settings.json alone, listed as "unfinished (no manifest)"
    assert not (ws / "lens" / "kappa" / "data" / "t_nan").exists()
    code, _, err = run(capsys, ws, "lens", "kappa", "baseline", "--dataset", "t_nan")
    assert code == 2 and "unfinished" not in err
    # a set whose first shard was packed keeps it (a rerun resumes) and says which command finishes it
    code, _, err = run(capsys, ws, "lens", "kappa", "data", root, "--shard-size", 3)
    assert code == 2 and (ws / "lens" / "kappa" / "data" / "t_nan" / "shard00000_arrays.h5").is_file()
    code, _, err = run(capsys, ws, "lens", "kappa", "baseline", "--dataset", "t_nan")
    assert code == 2 and "an unfinished data set" in err and "`astro lens kappa data`" in err, err


def test_measure_validate_predict_and_evaluate_tables_name_their_command(ws, capsys):
    from astrotool.io.tables import parquet_provenance

    pred = ws / "lens" / "predictions"
    for args, table, command in ((("lens", "measure", "--dataset", "g", "--methods", "KSB"), "g_hsm.parquet",
                                  "lens measure"),
                                 (("lens", "validate", "f3", "--method", "KSB"), "f3_hsm.parquet", "lens validate"),
                                 (("lens", "predict", "g", "--model", "m", "--name", "own"), "own_m.parquet",
                                  "lens predict")):
        code, _, err = run(capsys, ws, *args)
        assert code == 0, err
        # before: command '' (only lens generate's truth table named its command)
        assert parquet_provenance(pred / table)["command"] == command
    code, out, err = run(capsys, ws, "lens", "evaluate", "--model", "m", "--dataset", "g", "--split", "all",
                         "--classical", "", "--no-plots")
    assert code == 0, err
    assert parquet_provenance(json.loads(out)["predictions"])["command"] == "lens evaluate"


def test_train_help_says_what_val_rmse_is_measured_against(capsys):
    from astrotool.cli import main

    main(["lens", "train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    # before: val_rmse_g1/g2 unexplained, though evaluate's rmse_g1 is against the true shear
    assert "val_rmse_g1, val_rmse_g2 are the validation error against the training target" in text
    assert "with --target ellipticity (the default) the lensed ellipticity obs_g1, obs_g2" in text
    assert "not the true shear that evaluate's rmse_g1, rmse_g2 use" in text
    assert "with --target shear the true shear g1, g2" in text      # before: 'not against the true shear' alone
