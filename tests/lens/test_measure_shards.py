"""`astro lens measure --shard`: a part file per task, the table written by the last task, the parts of other
runs and of other code left alone or removed, unreadable parts named and measured again."""

from __future__ import annotations

import json

import numpy as np
import pytest

from .conftest import failing_measure as _failing, inline_map as _mapper, run_cli, run_json as _run


def run(capsys, ws, *args):
    return run_cli(capsys, "-w", ws, *args)


def test_measure_under_shard_keeps_parts_and_the_last_task_writes_the_table(ws, capsys):
    from astrotool.io.tables import read_parquet

    table = ws / "lens" / "predictions" / "s2sh_hsm.parquet"
    res, err = _run(capsys, ws, "--shard", "0/2", "lens", "measure", "--dataset", "s2", "--name", "s2sh",
                    "--methods", "KSB")
    assert res["missing_parts"] == 1 and not table.exists() and "was not used" not in err
    res, _ = _run(capsys, ws, "--shard", "1/2", "lens", "measure", "--dataset", "s2", "--name", "s2sh",
                  "--methods", "KSB")
    assert res["n"] == 8 and table.is_file()
    assert read_parquet(table).column("index").to_pylist() == list(range(8))
    assert not list(table.parent.glob(".*parts"))          # the parts go once the table is written


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


def test_an_unreadable_part_is_counted_missing_and_measured_again(ws, capsys):
    _run(capsys, ws, "--shard", "0/2", "lens", "measure", "--dataset", "s2", "--methods", "KSB")
    (part,) = (ws / "lens" / "predictions" / ".s2_hsm.parquet.parts").glob("*.npz")
    part.write_bytes(b"broken")
    res, _ = _run(capsys, ws, "--shard", "1/2", "lens", "measure", "--dataset", "s2", "--methods", "KSB")
    assert res["missing_parts"] == 1 and not part.exists()
    res, _ = _run(capsys, ws, "lens", "measure", "--dataset", "s2", "--methods", "KSB")
    assert res["n"] == 8


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


@pytest.mark.workspace("checks")
def test_a_kept_table_is_up_to_date_under_shard_and_has_the_summary_of_a_fresh_one(ws, capsys):
    """--shard 3/4 said the task "did all of it" when nothing was done; the kept summary had other keys."""
    code, out, err = run(capsys, ws, "lens", "measure", "--dataset", "g", "--methods", "KSB", "--name", "gk")
    assert code == 0, err
    fresh = json.loads(out)
    code, out, err = run(capsys, ws, "--shard", "3/4", "lens", "measure", "--dataset", "g", "--methods", "KSB",
                         "--name", "gk")
    assert code == 0, err
    kept = json.loads(out)
    assert "was not used" not in err and "did all of it" not in err and "gk_hsm.parquet is up to date" in err
    assert fresh["skipped"] is False and kept["skipped"] is True and kept["measured"] == []
    assert sorted(kept) == sorted(fresh)
    assert {k: kept[k] for k in ("dataset", "n", "failed", "responsivity", "path")} == \
        {k: fresh[k] for k in ("dataset", "n", "failed", "responsivity", "path")}


@pytest.mark.workspace("calibration")
def test_a_measure_shard_task_without_items_says_it_had_nothing_to_do(ws, capsys):
    code, _, err = run(capsys, ws, "--shard", "5/8", "lens", "measure", "--dataset", "g", "--methods", "KSB",
                       "--name", "gsh")
    assert code == 0, err
    assert "--shard 5/8 had nothing to do" in err and "WARNING" not in err
    assert err.count("had nothing to do") == 1, err   # said once (the core's map), not again by measure
