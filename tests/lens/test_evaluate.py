"""`astro lens evaluate`: its printed table, a report and a predictions table per subset and mode, the HSM
table's settings compared only for the methods asked, notes on few constant-shear fields and on a CNN that does
not respond to shear."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from astrotool.cli import main

from .conftest import copy_shear_set as _copy, inline_map as _mapper, run_cli, run_json as _run


def run(capsys, ws, *args):
    return run_cli(capsys, "-w", ws, *args)


def test_evaluate_prints_a_table_and_names_raw_reports_apart(ws, capsys):
    from astrotool.cli import main

    train = ["--set", "lens.train.threads=1", "--set", "lens.train.blocks=2", "--set", "lens.train.hidden=8",
             "lens", "train", "--dataset", "s2", "--epochs", 1, "--width", 4, "--batch-size", 4]
    _run(capsys, ws, *train)
    ev = ["lens", "evaluate", "--model", "s2_cnn", "--classical", "KSB", "--split", "all", "--no-symmetrize"]
    rc = main(["-w", str(ws), "-q", *(str(a) for a in ev)])           # not --json: stdout is a pipe here
    out = capsys.readouterr().out
    assert rc == 0
    lines = out.splitlines()
    assert lines[0].split("\t")[:3] == ["estimator", "rmse_g1", "rmse_g2"] and len(lines) == 3, out
    reports = ws / "lens" / "reports"
    assert (reports / "s2_s2_cnn_all_nosym_pred-vs-true.png").is_file()    # --no-symmetrize: _nosym, as predict's
    _run(capsys, ws, *ev, "--raw")
    assert (reports / "s2_s2_cnn_all_nosym_raw_metrics.json").is_file()
    assert (reports / "s2_s2_cnn_all_nosym_metrics.json").is_file()
    preds = ws / "lens" / "predictions"    # the calibrated predictions stay those its report points at
    report = json.loads((reports / "s2_s2_cnn_all_nosym_metrics.json").read_text())
    assert report["predictions"] == str(preds / "s2_s2_cnn_all_nosym.parquet")
    assert (preds / "s2_s2_cnn_all_nosym_raw.parquet").is_file()
    _run(capsys, ws, *ev, "--no-plots")
    assert not list(reports.glob("s2_s2_cnn_all_nosym_[pb]*-vs-*.png"))   # no stale figures beside the new report
    assert (reports / "s2_s2_cnn_all_nosym_raw_pred-vs-true.png").is_file()  # the --raw report keeps its own


def test_evaluate_compares_only_the_settings_of_the_methods_asked(ws, capsys):
    from astrotool.io.tables import parquet_metadata

    from astrotool_lens.config import MeasureConfig
    from astrotool_lens.data import ShearDataset
    from astrotool_lens.evaluate import hsm_estimates

    table = ws / "lens" / "predictions" / "s2_hsm.parquet"
    _run(capsys, ws, "--set", "lens.measure.metacal_seed=5", "lens", "measure", "--dataset", "s2", "--methods",
         "METACAL")
    with ShearDataset(ws / "lens" / "shear" / "s2") as ds:     # metacal_seed 0, but METACAL is not asked for
        t = hsm_estimates(ds, table, MeasureConfig(methods=["KSB"]), _mapper)
    meta = parquet_metadata(table)
    assert meta["methods"] == ["KSB", "METACAL"] and meta["settings"]["metacal_seed"] == 5
    assert "ksb_g1" in t.column_names and "metacal_e1" in t.column_names


def test_evaluate_adds_a_method_with_settings_of_its_own(ws, capsys):
    from astrotool.io.tables import parquet_metadata

    from astrotool_lens.config import MeasureConfig
    from astrotool_lens.data import ShearDataset
    from astrotool_lens.evaluate import hsm_estimates

    table = ws / "lens" / "predictions" / "s2_hsm.parquet"
    _run(capsys, ws, "lens", "measure", "--dataset", "s2", "--methods", "KSB")
    with ShearDataset(ws / "lens" / "shear" / "s2") as ds:     # the table has no metacal_* settings yet
        hsm_estimates(ds, table, MeasureConfig(methods=["KSB", "METACAL"]), _mapper)
    assert parquet_metadata(table)["methods"] == ["KSB", "METACAL"]


@pytest.mark.workspace("reports")
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


@pytest.mark.workspace("reports")
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


@pytest.mark.workspace("reports")
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


def _copy_dataset(ws, src, dst):
    shutil.copytree(ws / "lens" / "shear" / src, ws / "lens" / "shear" / dst)
    return dst


@pytest.mark.workspace("checks")
def test_evaluate_refuses_a_classical_table_of_other_settings_before_predicting(ws, capsys):
    """It predicted every stamp and wrote <dataset>_<model>_all.parquet, then refused the HSM table."""
    name = _copy_dataset(ws, "f3", "f3guess")
    code, _, err = run(capsys, ws, "--set", "lens.measure.guess_sig_gal=3", "lens", "measure", name,
                       "--methods", "REGAUSS")
    assert code == 0, err
    preds, reports = ws / "lens" / "predictions", ws / "lens" / "reports"
    before = sorted(p.name for p in preds.iterdir()), sorted(p.name for p in reports.iterdir())
    code, out, err = run(capsys, ws, "lens", "evaluate", "--model", "m", "--dataset", name, "--classical", "REGAUSS",
                         "--no-plots")
    assert code == 2 and out == "" and "guess_sig_gal 3 -> 5" in err and f"{name}_hsm.parquet" in err, err
    assert (sorted(p.name for p in preds.iterdir()), sorted(p.name for p in reports.iterdir())) == before


@pytest.mark.workspace("calibration")
def test_evaluate_on_one_constant_shear_field_explains_and_gives_field_means(ws, capsys):
    assert main(["-q", "-w", str(ws), "lens", "generate", "--preset", "fields", "--name", "f1", "--n-stamps", "8",
                 "--field-size", "8", "--stamp-size", "24", "--shard-size", "8"]) == 0
    capsys.readouterr()
    code, out, err = run(capsys, ws, "lens", "evaluate", "--model", "m", "--dataset", "f1", "--split", "all",
                         "--no-plots", "--classical", "")
    assert code == 0, err
    rep = json.loads(out)
    assert err.count("1 constant-shear field(s); m and c need at least 3") == 1
    (row,) = rep["field_means"]["CNN"]
    assert row["n"] == 8 and np.isfinite(row["g1"]) and row["g1_err"] > 0


@pytest.mark.workspace("calibration")
def test_evaluate_notes_a_plot_left_out_as_information(ws, capsys):
    code, _, err = run(capsys, ws, "lens", "evaluate", "--model", "m", "--dataset", "f3", "--split", "all",
                       "--classical", "")
    assert code == 0, err
    lines = [ln for ln in err.splitlines() if "not plotted" in ln]
    assert lines and all(" INFO " in ln for ln in lines)


@pytest.mark.workspace("folders")
def test_evaluate_notes_an_estimator_left_with_fewer_than_3_fields(ws, capsys):
    _copy(ws, "f3", "f3field", lambda gal, field: gal.__setitem__(field == field[0], np.nan))
    code, out, err = run(capsys, ws, "lens", "evaluate", "--model", "m", "--dataset", "f3field", "--split", "all",
                         "--no-plots", "--classical", "")
    assert code == 0, err
    rep = json.loads(out)
    assert rep["estimators"]["CNN"]["n_fields"] == 2
    assert any("2 constant-shear field(s); m and c need at least 3" in n for n in rep["notes"]), rep["notes"]
    # without --json the field means are printed
    assert main(["-w", str(ws), "lens", "evaluate", "--model", "m", "--dataset", "f3field", "--split", "all",
                 "--no-plots", "--classical", ""]) == 0
    assert "CNN, field g1" in capsys.readouterr().err


@pytest.mark.workspace("folders")
def test_evaluate_on_3_fields_gives_no_few_fields_note(ws, capsys):
    code, out, err = run(capsys, ws, "lens", "evaluate", "--model", "m", "--dataset", "f3", "--split", "all",
                         "--no-plots", "--classical", "")
    assert code == 0, err
    assert not any("constant-shear field(s)" in n for n in json.loads(out)["notes"])


@pytest.mark.workspace("folders")
def test_evaluate_modes_write_reports_of_their_own(ws, capsys):
    names = []
    for extra in ((), ("--raw",), ("--no-symmetrize",), ("--no-symmetrize", "--raw")):
        code, out, err = run(capsys, ws, "lens", "evaluate", "--model", "m", "--dataset", "f3", "--split", "all",
                             "--no-plots", "--classical", "", *extra)
        assert code == 0, err
        rep = json.loads(out)
        names.append((rep["report"].rsplit("/", 1)[1], rep["predictions"].rsplit("/", 1)[1]))
    assert names == [("f3_m_all_metrics.json", "f3_m_all.parquet"),
                     ("f3_m_all_raw_metrics.json", "f3_m_all_raw.parquet"),
                     ("f3_m_all_nosym_metrics.json", "f3_m_all_nosym.parquet"),
                     ("f3_m_all_nosym_raw_metrics.json", "f3_m_all_nosym_raw.parquet")]
