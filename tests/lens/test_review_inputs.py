"""Bad input found in review: one clear message and exit 2, before any work; nothing replaced."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from .conftest import review_workspace, run_cli


def run(capsys, ws, *args):
    return run_cli(capsys, "-q", "-w", ws, *args)


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    """A workspace with dataset g (40 stamps), fields f3 (4 fields) and model m (one epoch on g)."""
    return review_workspace(tmp_path_factory.mktemp("review") / "ws", 40, 20, 40, 10)


@pytest.fixture(scope="module")
def no_g1(ws):
    """f3 with column g1 dropped from its truth table (the dataset is otherwise complete)."""
    path = ws / "lens" / "shear" / "f3" / "f3_truth.parquet"
    pq.write_table(pq.read_table(path).drop(["g1"]), path)
    return path


@pytest.mark.parametrize("args", [
    ("lens", "predict", "f3", "--model", "m"),
    ("lens", "calibrate", "--model", "m", "--dataset", "f3"),
    ("lens", "validate", "f3", "--method", "REGAUSS"),
    ("lens", "validate", "f3", "--model", "m"),
    ("lens", "evaluate", "--model", "m", "--dataset", "f3", "--no-plots", "--classical", ""),
    ("lens", "train", "--dataset", "f3", "--model", "m_f3", "--epochs", "1", "--width", "4", "--device", "cpu"),
])
def test_truth_without_g1_is_named(ws, no_g1, capsys, args):
    code, _, err = run(capsys, ws, *args)
    assert code == 2, err
    assert str(no_g1) in err and "missing column(s) g1" in err and "KeyError" not in err


def test_evaluate_keeps_the_prediction_table(ws, capsys):
    code, out, err = run(capsys, ws, "lens", "predict", "g", "--model", "m")
    assert code == 0, err
    full = json.loads(out)["output"]
    code, out, err = run(capsys, ws, "lens", "evaluate", "--model", "m", "--no-plots", "--classical", "")
    assert code == 0, err
    mine = json.loads(out)["predictions"]
    assert mine != full and mine.endswith("g_m_test.parquet")
    assert pq.read_table(full).num_rows == 40
    assert pq.read_table(mine).num_rows == json.loads(out)["n"] < 40


def test_measure_needs_a_method(ws, capsys):
    code, _, err = run(capsys, ws, "lens", "measure", "--dataset", "g", "--methods", "")
    assert code == 2 and "--methods" in err and "give at least one method" in err


def test_calibration_with_m_minus_one(ws, tmp_path, capsys):
    cal = tmp_path / "cal.json"
    cal.write_text(json.dumps({"m1": 0.0, "m2": -1, "c1": 0.0, "c2": 0.0}))
    code, _, err = run(capsys, ws, "lens", "validate", "g", "--model", "m", "--calibration", cal)
    assert code == 2 and str(cal) in err and "m2 = -1" in err


def test_method_any_case(ws, capsys):
    """--method regauss is REGAUSS, as --methods regauss is (it was refused, exit 2)."""
    reports = []
    # constant-shear fields (f3 loses g1 here)
    assert run(capsys, ws, "lens", "generate", "--preset", "fields", "--name", "f4", "--n-stamps", "40",
               "--field-size", "10", "--stamp-size", "24", "--shard-size", "40")[0] == 0
    for method in ("regauss", "REGAUSS"):
        code, out, err = run(capsys, ws, "lens", "validate", "f4", "--method", method)
        assert code == 0, err
        report = json.loads(out)
        assert report["estimator"] == "REGAUSS" and report["n"] == 40
        reports.append(report)
    assert reports[0]["report"] == reports[1]["report"] and reports[0]["m1_raw"] == reports[1]["m1_raw"]


def test_validate_without_truth_says_so_before_measuring(ws, tmp_path, capsys, monkeypatch):
    import astrotool_lens.evaluate as ev

    code, _, err = run(capsys, ws, "lens", "generate", "--name", "lj", "--n-stamps", "6", "--shard-size", "6",
                       "--stamp-size", "24", "--format", "lensnet")
    assert code == 0, err
    folder = ws / "lens" / "shear" / "lj" / "lensnet"
    data = json.loads((folder / "data.json").read_text())
    for e in data:
        e.pop("g1", None)
    (folder / "data.json").write_text(json.dumps(data))
    monkeypatch.setattr(ev, "hsm_estimates", lambda *a, **k: pytest.fail("measured before checking the truth"))
    code, _, err = run(capsys, ws, "lens", "validate", folder, "--method", "REGAUSS")
    assert code == 2 and "no true shears" in err


def test_missing_psf_message_names_no_model(ws, tmp_path, capsys):
    import numpy as np
    from astropy.io import fits

    fits.writeto(tmp_path / "gal_0.fits", np.ones((24, 24), np.float32))
    code, _, err = run(capsys, ws, "lens", "validate", tmp_path / "gal_0.fits", "--method", "REGAUSS")
    assert code == 2 and "each classical estimator needs a PSF stamp per galaxy" in err
    assert "the model needs" not in err


def test_evaluate_refuses_a_remade_training_set(tmp_path, capsys):
    ws = tmp_path / "ws"
    gen = ["lens", "generate", "--name", "r", "--n-stamps", "40", "--shard-size", "40", "--stamp-size", "24"]
    assert run(capsys, ws, *gen)[0] == 0
    code, _, err = run(capsys, ws, "--set", "lens.train.threads=1", "lens", "train", "--dataset", "r", "--model",
                       "rm", "--epochs", "1", "--width", "4", "--batch-size", "8", "--device", "cpu")
    assert code == 0, err
    assert run(capsys, ws, "--seed", "99", "--overwrite", *gen)[0] == 0
    code, _, err = run(capsys, ws, "lens", "evaluate", "--model", "rm", "--no-plots", "--classical", "")
    assert code == 2 and "not the set that model rm was trained on" in err and "--split all" in err
    code, out, err = run(capsys, ws, "lens", "evaluate", "--model", "rm", "--no-plots", "--classical", "",
                         "--split", "all")   # every stamp asked for: scored
    assert code == 0 and json.loads(out)["n"] == 40, err


def test_measuring_another_method_keeps_the_table_s_methods(tmp_path, capsys):
    """`measure --methods LINEAR` after REGAUSS rewrote the table with LINEAR alone."""
    from astrotool.io.tables import parquet_metadata

    ws = tmp_path / "ws"
    assert run(capsys, ws, "lens", "generate", "--name", "t", "--n-stamps", "8", "--shard-size", "8",
               "--stamp-size", "24")[0] == 0
    table = ws / "lens" / "predictions" / "t_hsm.parquet"
    for methods, kept in (("REGAUSS", ["REGAUSS"]), ("LINEAR", ["REGAUSS", "LINEAR"]),
                          ("REGAUSS", ["REGAUSS", "LINEAR"])):   # the last: a subset, the table is kept
        code, out, err = run(capsys, ws, "lens", "measure", "--dataset", "t", "--methods", methods)
        assert code == 0, err
        assert parquet_metadata(table)["methods"] == kept
    names = pq.read_schema(table).names
    assert "regauss_g1" in names and "linear_g1" in names
    assert run(capsys, ws, "--overwrite", "lens", "measure", "--dataset", "t", "--methods", "REGAUSS")[0] == 0
    assert parquet_metadata(table)["methods"] == ["REGAUSS", "LINEAR"]   # measured again, LINEAR too
    # another conversion: every method the table held is measured again under the new setting
    code, out, err = run(capsys, ws, "lens", "measure", "--dataset", "t", "--methods", "LINEAR",
                         "--conversion", "responsivity")
    meta = parquet_metadata(table)
    assert code == 0 and meta["methods"] == ["REGAUSS", "LINEAR"] and meta["conversion"] == "responsivity"


def test_each_shard_records_the_files_it_wrote(tmp_path, capsys):
    """Each --shard task listed every shard file on disk (other tasks' too) and not the manifest."""
    ws = tmp_path / "ws"
    for i in (0, 1):
        assert run(capsys, ws, "--shard", f"{i}/2", "lens", "generate", "--name", "t", "--n-stamps", "8",
                   "--shard-size", "4", "--stamp-size", "16")[0] == 0
    records = [json.loads(p.read_text()) for p in sorted((ws / "runs").glob("*/run.json"))]
    outputs = [sorted(Path(o).name for o in r["outputs"]) for r in records]
    assert outputs == [["shard00000_stamps.h5"], ["shard00001_stamps.h5", "t_dataset.json", "t_truth.parquet"]]


def test_evaluate_in_a_copied_workspace_scores_the_copy_s_set(ws, tmp_path, capsys):
    """The model's absolute dataset_path sent a copied workspace's evaluate to the original's stamps."""
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(ws, copy)
    shutil.rmtree(copy / "runs")
    code, out, err = run(capsys, copy, "lens", "evaluate", "--model", "m", "--no-plots", "--classical", "")
    assert code == 0, err
    (record,) = [json.loads(p.read_text()) for p in (copy / "runs").glob("*/run.json")]
    assert str(copy / "lens" / "shear" / "g") in record["inputs"] and not any(str(ws) in i for i in record["inputs"])
