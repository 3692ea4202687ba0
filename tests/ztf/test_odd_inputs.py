"""`astro ztf ingest` with a path that does not exist, an empty folder, and a file name that is not UTF-8."""

from __future__ import annotations

import json
import os

import pyarrow.parquet as pq

from astrotool_ztf import synthetic


def test_a_missing_input_is_a_usage_error_naming_it(tmp_path, astro):
    """As in DRE: exit 2 before any work (it was an item failure, exit 1)."""
    good = synthetic.write_avro(tmp_path / "good.avro", synthetic.make_alerts(2))
    for args in ([tmp_path / "nonexistent"], [good, tmp_path / "nonexistent.avro"]):
        r = astro("-w", tmp_path / "ws", "ztf", "ingest", *args)
        assert r.returncode == 2, r.stderr
        assert f"{args[-1]}: no such file or folder" in r.stderr and "Traceback" not in r.stderr
    assert not list((tmp_path / "ws").glob("ztf/alerts/*"))


def test_a_file_name_that_is_not_utf8_is_ingested_and_named_printably(tmp_path, astro_subprocess):
    """It failed with a bare UnicodeEncodeError (from writing the source path into the stamp file)."""
    src = tmp_path / "in"
    src.mkdir()
    synthetic.write_avro(os.fsdecode(bytes(src) + b"/night_\xff.avro"), synthetic.make_alerts(2))
    r = astro_subprocess("--json", "-w", tmp_path / "ws", "ztf", "ingest", src,
                         env={"PYTHONIOENCODING": "utf-8:strict"})
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["ingested"] == 1 and out["alerts"] == 2
    assert out["outputs"][0]["input"] == f"{src}/night_\\xff.avro"
    alerts = out["outputs"][0]["alerts"]
    facts = json.loads(pq.read_schema(alerts).metadata[b"astrotool"])
    assert facts["source"] == f"{src}/night_\\xff.avro"


def test_an_empty_folder_is_an_input_that_failed(tmp_path, astro):
    """It was counted as no file while the progress line said "1/1 done, 1 failed"."""
    (tmp_path / "empty").mkdir()
    r = astro("--json", "-w", tmp_path / "ws", "ztf", "ingest", tmp_path / "empty")
    out = json.loads(r.stdout)
    assert (out["files"], out["ingested"], out["failed"]) == (1, 0, 1) and "holds no .avro" in r.stderr
    assert "1/1 done, 1 failed" in r.stderr
