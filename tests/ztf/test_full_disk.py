"""`astro ztf ingest` on a full disk."""

from __future__ import annotations

import json

from astrotool_ztf import synthetic


def test_ingest_on_a_full_disk_names_the_file_and_leaves_nothing(small_disk, tmp_path, astro_subprocess):
    """It died with a segmentation fault (exit 139), printed nothing and left no run record."""
    src = synthetic.write_avro(tmp_path / "night.avro", synthetic.make_alerts(150))
    ws = small_disk / "ws"
    r = astro_subprocess("-w", ws, "ztf", "ingest", "--compression", "none", src)   # a segfault is its exit code
    assert r.returncode in (1, 2), r.stderr[-2000:]
    assert "no space left on device writing " + str(ws / "ztf") in r.stderr
    assert "Exception ignored" not in r.stderr and "Traceback" not in r.stderr
    assert not [p for p in ws.rglob("*") if ".partial" in p.name]
    assert not list(ws.glob("ztf/*/night_*"))
    run = json.loads(next(ws.glob("runs/*/run.json")).read_text())
    assert run["exit_code"] == r.returncode
