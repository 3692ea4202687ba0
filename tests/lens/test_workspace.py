"""What the lens commands keep in a workspace: predict's table beside evaluate's, a measured table's other
methods, the files each --shard task wrote in its run record, and a copied workspace's own datasets."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from .conftest import run_cli


def run(capsys, ws, *args):
    return run_cli(capsys, "-q", "-w", ws, *args)


@pytest.mark.workspace("inputs")
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


@pytest.mark.workspace("inputs")
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
