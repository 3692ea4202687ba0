"""The tables the lens commands write: a description for every column, a unit for every column in counts, and
the command that wrote them."""

from __future__ import annotations

import json

import numpy as np
import pytest

from .conftest import run_cli, run_json as _run


def run(capsys, ws, *args):
    return run_cli(capsys, "-w", ws, *args)


def test_every_column_of_a_measured_table_and_of_a_truth_table_is_described(ws, capsys):
    from astropy.table import Table

    _run(capsys, ws, "lens", "measure", "--dataset", "s2", "--methods", "REGAUSS,KSB,BJ,LINEAR")
    for path in (ws / "lens" / "predictions" / "s2_hsm.parquet", ws / "lens" / "shear" / "s2" / "s2_truth.parquet"):
        t = Table.read(path)
        assert [c for c in t.colnames if not t[c].description] == [], path
    truth = Table.read(ws / "lens" / "shear" / "s2" / "s2_truth.parquet")
    assert str(truth["hlr"].unit) == "arcsec" and str(truth["dx"].unit) == "pix"


def test_columns_in_counts_carry_their_unit(ws, capsys, monkeypatch):
    from astropy.table import Table

    import astrotool_lens.fpfs as fpfs

    def fake_fpfs(gal, psf, *args):    # ANACAL's columns without anacal installed: what the table records
        n = len(gal)
        out = {f"anacal_{c}": np.full(n, 0.1) for c in ("g1", "g2", "e1", "e2", "r12", "r21", "flux", "noise_sigma")}
        return {**out, "anacal_r11": np.ones(n), "anacal_r22": np.ones(n), "anacal_flag": np.zeros(n, np.int8),
                "anacal_error": np.full(n, "")}

    monkeypatch.setattr(fpfs, "fpfs_arrays", fake_fpfs)
    monkeypatch.setattr(fpfs, "require_anacal", lambda: None)
    _run(capsys, ws, "--executor", "serial", "lens", "measure", "--dataset", "s2", "--methods", "KSB,METACAL,ANACAL")
    t = Table.read(ws / "lens" / "predictions" / "s2_hsm.parquet")
    units = {c: str(t[c].unit) for c in t.colnames if t[c].unit is not None}
    assert units == {"metacal_noise_sigma": "ct", "anacal_flux": "ct", "anacal_noise_sigma": "ct"}
    assert not any("[counts" in t[c].description for c in units)


@pytest.mark.workspace("reports")
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
