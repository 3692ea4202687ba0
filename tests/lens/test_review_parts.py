"""Reviewers' defects: which methods a table keeps, part files of --shard measuring, raw predictions."""

from __future__ import annotations

import json

import numpy as np
import pytest

from .conftest import TINY_GEN as GEN, run_json as _run


@pytest.fixture
def ws(tmp_path, capsys):
    """A workspace holding the 8-stamp set ``s2`` (two shards of 4)."""
    _run(capsys, tmp_path, *GEN, "--name", "s2", "-n", 8)
    return tmp_path


def _mapper(fn, items, desc=None, keys=None):
    return [(k, fn(t)) for k, t in zip(keys, items)]


def _spy(monkeypatch):
    """Record the methods each measure_arrays call is given (the executor runs items in this process)."""
    import astrotool_lens.measure as measure

    seen, real = [], measure.measure_arrays

    def spy(gal, psf, methods, *a, **k):
        seen.append(tuple(methods))
        return real(gal, psf, methods, *a, **k)

    monkeypatch.setattr(measure, "measure_arrays", spy)
    return seen


def test_a_table_of_another_dataset_does_not_bring_its_methods(ws, capsys):
    from astrotool.io.tables import parquet_metadata

    _run(capsys, ws, "lens", "measure", "--dataset", "s2", "--methods", "REGAUSS,BJ")
    _run(capsys, ws, "--overwrite", *GEN, "--name", "s2", "-n", 12)          # the dataset drawn again
    _run(capsys, ws, "lens", "measure", "--dataset", "s2", "--methods", "KSB")
    assert parquet_metadata(ws / "lens" / "predictions" / "s2_hsm.parquet")["methods"] == ["KSB"]


def test_another_method_of_the_same_settings_is_measured_alone_and_joined(ws, capsys, monkeypatch):
    from astrotool.io.tables import parquet_metadata, read_parquet

    table = ws / "lens" / "predictions" / "s2_hsm.parquet"
    _run(capsys, ws, "lens", "measure", "--dataset", "s2", "--methods", "REGAUSS")
    before = read_parquet(table).column("regauss_g1").to_numpy()
    seen = _spy(monkeypatch)
    _run(capsys, ws, "--executor", "serial", "lens", "measure", "--dataset", "s2", "--methods", "KSB")
    assert seen and set(seen) == {("KSB",)}
    t, meta = read_parquet(table), parquet_metadata(table)
    assert meta["methods"] == ["REGAUSS", "KSB"] and set(meta["failed"]) == {"REGAUSS", "KSB"}
    np.testing.assert_array_equal(t.column("regauss_g1").to_numpy(), before)
    assert t.column("index").to_pylist() == list(range(8)) and "ksb_g1" in t.column_names


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


def test_overwrite_does_not_take_an_earlier_runs_parts(ws, capsys):
    from astrotool.io.tables import read_parquet

    _run(capsys, ws, "--shard", "0/2", "lens", "measure", "--dataset", "s2", "--methods", "KSB")
    (part,) = (ws / "lens" / "predictions" / ".s2_hsm.parquet.parts").glob("*.npz")
    with np.load(part) as z:
        cols = {k: z[k] for k in z.files}
    cols["ksb_g1"] = np.full_like(cols["ksb_g1"], 0.42)     # what an interrupted older run left
    np.savez(part, **cols)
    _run(capsys, ws, "--overwrite", "lens", "measure", "--dataset", "s2", "--methods", "KSB")
    assert not np.any(read_parquet(ws / "lens" / "predictions" / "s2_hsm.parquet").column("ksb_g1").to_numpy()
                      == 0.42)


def test_a_part_names_the_code_version(monkeypatch):
    import astrotool_lens
    from astrotool_lens.config import MeasureConfig
    from astrotool_lens.measure import _part_digest

    one = _part_digest(MeasureConfig(), {"n": 1})
    monkeypatch.setattr(astrotool_lens, "__version__", "99.0")
    assert _part_digest(MeasureConfig(), {"n": 1}) != one


def test_writing_the_table_keeps_other_runs_parts_and_items_return_little(ws):
    from astrotool_lens.config import MeasureConfig
    from astrotool_lens.data import ShearDataset
    from astrotool_lens.measure import measure_dataset

    table = ws / "lens" / "predictions" / "s2_hsm.parquet"
    parts = table.with_name(".s2_hsm.parquet.parts")
    parts.mkdir(parents=True)
    (parts / "shard000000_0123456789abcdef.npz").write_bytes(b"another run's")
    results = []

    def mapper(fn, items, desc=None, keys=None):
        results.extend(fn(t) for t in items)
        return list(zip(keys, results))

    with ShearDataset(ws / "lens" / "shear" / "s2") as ds:
        res = measure_dataset(ds, MeasureConfig(methods=["KSB"]), table, mapper=mapper)
    assert res["n"] == 8 and (parts / "shard000000_0123456789abcdef.npz").is_file()
    assert [sorted(r) for r in results] == [["n", "part"]] * 2


def test_parts_taken_by_another_task_that_wrote_the_table_are_no_warning(ws):
    from astrotool_lens.config import MeasureConfig
    from astrotool_lens.data import ShearDataset
    from astrotool_lens.measure import measure_dataset

    table = ws / "lens" / "predictions" / "s2_hsm.parquet"
    cfg = MeasureConfig(methods=["KSB"])
    with ShearDataset(ws / "lens" / "shear" / "s2") as ds:
        def mapper(fn, items, desc=None, keys=None):   # another task finishes first and writes the table
            out = _mapper(fn, items, desc, keys)
            measure_dataset(ds, cfg, table, mapper=_mapper)
            return out

        res = measure_dataset(ds, cfg, table, mapper=mapper)
    assert not res.get("missing_parts") and res["written_by_another_task"] and table.is_file()


def test_a_table_where_every_stamp_failed_is_recorded_as_an_error(tmp_path, capsys):
    from astropy.io import fits

    fits.PrimaryHDU(np.zeros((3, 24, 24), np.float32)).writeto(tmp_path / "blank.fits")
    psf = np.zeros((24, 24), np.float32)
    psf[10:14, 10:14] = 1.0
    fits.PrimaryHDU(psf).writeto(tmp_path / "psf.fits")
    _, err = _run(capsys, tmp_path, "lens", "measure", tmp_path / "blank.fits", "--psf", tmp_path / "psf.fits",
                  "--name", "x1", "--methods", "KSB", code=2)
    (record,) = [json.loads(p.read_text()) for p in (tmp_path / "runs").glob("*/run.json")]
    assert record["status"] == "error" and record["exit_code"] == 2 and "every stamp failed" in err
    assert f"{tmp_path / 'blank.fits'}: every stamp failed with every method" in err   # the input named


def test_a_response_without_finite_values_is_named_so():
    from astrotool_lens.response import response_problem

    none = {"response_r11": np.array([np.nan, np.nan]), "response_r22": np.array([np.nan, np.nan])}
    assert "no stamp has a finite response" in response_problem(none)
    near = {"response_r11": np.array([0.04996, 0.04996]), "response_r22": np.array([0.7, 0.8])}
    assert "0.04996" in response_problem(near)


def test_an_unreadable_part_is_counted_missing_and_measured_again(ws, capsys):
    _run(capsys, ws, "--shard", "0/2", "lens", "measure", "--dataset", "s2", "--methods", "KSB")
    (part,) = (ws / "lens" / "predictions" / ".s2_hsm.parquet.parts").glob("*.npz")
    part.write_bytes(b"broken")
    res, _ = _run(capsys, ws, "--shard", "1/2", "lens", "measure", "--dataset", "s2", "--methods", "KSB")
    assert res["missing_parts"] == 1 and not part.exists()
    res, _ = _run(capsys, ws, "lens", "measure", "--dataset", "s2", "--methods", "KSB")
    assert res["n"] == 8


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


def _failing(monkeypatch, start=4, methods=None):
    """measure_arrays raising for the item starting at ``start`` (the executor runs items in this process);
    with ``methods``, instead every stamp of those methods flagged failed."""
    import astrotool_lens.measure as measure

    real = measure.measure_arrays

    def fake(gal, psf, meths, *a, **k):
        if methods is None and k.get("start") == start:
            raise RuntimeError("this item fails")
        out = real(gal, psf, meths, *a, **k)
        for m in methods or ():
            if m in meths:
                out[f"{m.lower()}_flag"][:] = 1
        return out

    monkeypatch.setattr(measure, "measure_arrays", fake)


def test_overwrite_with_a_failing_item_reports_the_missing_part(ws, capsys, monkeypatch):
    _run(capsys, ws, "lens", "measure", "--dataset", "s2", "--methods", "KSB")
    _failing(monkeypatch)
    res, _ = _run(capsys, ws, "--executor", "serial", "--overwrite", "lens", "measure", "--dataset", "s2",
                  "--methods", "KSB", code=1)
    assert not res.get("written_by_another_task") and res["missing_parts"] == 1 and res["parts"] == 2


def test_overwrite_under_shard_is_written_by_the_last_task(ws, capsys):
    table = ws / "lens" / "predictions" / "s2_hsm.parquet"
    _run(capsys, ws, "lens", "measure", "--dataset", "s2", "--methods", "KSB")
    old = table.stat().st_mtime_ns
    res, _ = _run(capsys, ws, "--overwrite", "--shard", "0/2", "lens", "measure", "--dataset", "s2", "--methods",
                  "KSB")
    assert not res.get("written_by_another_task") and res["missing_parts"] == 1
    res, _ = _run(capsys, ws, "--overwrite", "--shard", "1/2", "lens", "measure", "--dataset", "s2", "--methods",
                  "KSB")
    assert res["n"] == 8 and table.stat().st_mtime_ns != old
    assert not table.with_name(".s2_hsm.parquet.parts").exists()


def test_writing_the_table_removes_parts_older_than_the_run_and_keeps_fresh_ones(ws):
    import os
    import time

    from astrotool_lens.config import MeasureConfig
    from astrotool_lens.data import ShearDataset
    from astrotool_lens.measure import measure_dataset

    table = ws / "lens" / "predictions" / "s2_hsm.parquet"
    parts = table.with_name(".s2_hsm.parquet.parts")
    parts.mkdir(parents=True)
    stale = parts / "shard000000_0123456789abcdef.npz"        # another method set's, an older code's
    stale.write_bytes(b"an old run's")
    os.utime(stale, (time.time() - 3600,) * 2)
    fresh = parts / "shard000001_fedcba9876543210.npz"        # a concurrent --shard task's, written meanwhile

    def mapper(fn, items, desc=None, keys=None):
        fresh.write_bytes(b"a concurrent task's")
        return _mapper(fn, items, desc, keys)

    with ShearDataset(ws / "lens" / "shear" / "s2") as ds:
        res = measure_dataset(ds, MeasureConfig(methods=["KSB"]), table, mapper=mapper)
    assert res["n"] == 8 and not stale.exists() and fresh.is_file()
    assert sorted(p.name for p in parts.iterdir()) == [fresh.name]


def test_a_task_whose_table_another_wrote_leaves_no_parts(ws):
    from astrotool_lens.config import MeasureConfig
    from astrotool_lens.data import ShearDataset
    from astrotool_lens.measure import measure_dataset

    table = ws / "lens" / "predictions" / "s2_hsm.parquet"
    cfg = MeasureConfig(methods=["KSB"])
    with ShearDataset(ws / "lens" / "shear" / "s2") as ds:
        def mapper(fn, items, desc=None, keys=None):   # another task writes the table, then this one's item ends
            out = _mapper(fn, items, desc, keys)
            measure_dataset(ds, cfg, table, mapper=_mapper)
            fn(items[1])
            return out

        res = measure_dataset(ds, cfg, table, mapper=mapper)
    assert res["written_by_another_task"] and not table.with_name(".s2_hsm.parquet.parts").exists()


def test_a_part_names_the_measuring_code_and_packages(monkeypatch):
    import importlib.metadata

    import astrotool_lens.measure as measure
    from astrotool_lens.config import MeasureConfig

    one = measure._part_digest(MeasureConfig(), {"n": 1})
    monkeypatch.setattr(measure, "MEASURE_VERSION", measure.MEASURE_VERSION + 1)
    two = measure._part_digest(MeasureConfig(), {"n": 1})
    assert two != one
    real = importlib.metadata.version
    for pkg in ("anacal", "ngmix"):
        monkeypatch.setattr(importlib.metadata, "version", lambda name, p=pkg: "9.9" if name == p else real(name))
        assert measure._part_digest(MeasureConfig(), {"n": 1}) not in (one, two)


def test_adding_a_method_warns_only_of_its_own_failures(ws, capsys, monkeypatch):
    from astrotool.io.tables import parquet_metadata

    _failing(monkeypatch, methods=["REGAUSS"])
    _, err = _run(capsys, ws, "--executor", "serial", "lens", "measure", "--dataset", "s2", "--methods", "REGAUSS,KSB")
    assert "REGAUSS: 8 of 8 stamps failed" in err
    res, err = _run(capsys, ws, "--executor", "serial", "lens", "measure", "--dataset", "s2", "--methods", "BJ")
    assert "REGAUSS" not in err and res["measured"] == ["BJ"]
    meta = parquet_metadata(ws / "lens" / "predictions" / "s2_hsm.parquet")
    assert meta["failed"]["REGAUSS"] == 8 and set(meta["failed"]) == {"REGAUSS", "KSB", "BJ"}


def _truncated_part(ws):
    """The one part file of s2, cut to 200 bytes (a zip archive's start without its directory)."""
    (part,) = (ws / "lens" / "predictions" / ".s2_hsm.parquet.parts").glob("*.npz")
    part.write_bytes(part.read_bytes()[:200])
    return part


def test_a_truncated_part_of_another_task_is_named_and_measured_again(ws, capsys):
    _run(capsys, ws, "--shard", "1/2", "lens", "measure", "--dataset", "s2", "--methods", "KSB")
    part = _truncated_part(ws)
    res, err = _run(capsys, ws, "--shard", "0/2", "lens", "measure", "--dataset", "s2", "--methods", "KSB")
    assert res["missing_parts"] == 1 and not part.exists()
    assert f"{part}: unreadable part file (BadZipFile" in err
    res, _ = _run(capsys, ws, "--shard", "1/2", "lens", "measure", "--dataset", "s2", "--methods", "KSB")
    assert res["n"] == 8 and not part.parent.exists()   # written, parts removed


def test_a_tasks_own_truncated_part_is_measured_again_in_the_same_run(ws, capsys):
    _run(capsys, ws, "--shard", "0/2", "lens", "measure", "--dataset", "s2", "--methods", "KSB")
    part = _truncated_part(ws)
    res, err = _run(capsys, ws, "--shard", "0/2", "lens", "measure", "--dataset", "s2", "--methods", "KSB")
    assert res["n"] == 4 and res["missing_parts"] == 1 and part.stat().st_size > 200 and str(part) in err


def test_a_truncated_part_found_in_a_worker_process_is_named_by_the_command(ws, capsys):
    """A worker's log is not the command's: its warning came out as plain text beside --log-format json."""
    import json

    _run(capsys, ws, "--shard", "0/2", "lens", "measure", "--dataset", "s2", "--methods", "KSB")
    part = _truncated_part(ws)
    res, err = _run(capsys, ws, "-j", "2", "--log-format", "json", "lens", "measure", "--dataset", "s2",
                    "--methods", "KSB")
    lines = [json.loads(line) for line in err.splitlines() if line.strip()]
    assert res["n"] == 8 and any(f"{part}: unreadable part file" in line.get("message", "") for line in lines)


def test_a_shard_task_reports_the_stamps_it_measured(ws, capsys):
    res, _ = _run(capsys, ws, "--shard", "0/2", "lens", "measure", "--dataset", "s2", "--methods", "KSB")
    assert res["n"] == 4 and res["missing_parts"] == 1 and not res["written"]
    res, _ = _run(capsys, ws, "--shard", "0/2", "lens", "measure", "--dataset", "s2", "--methods", "KSB")
    assert res["n"] == 0 and res["missing_parts"] == 1      # its part kept: nothing measured this time


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
