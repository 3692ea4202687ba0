"""The alert table opens in astropy (and so TOPCAT): flat columns, valid units, the history as JSON."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from astropy import units as u
from astropy.table import Table

from astrotool_ztf import synthetic
from astrotool_ztf.config import IngestConfig
from astrotool_ztf import ingest as ztf_ingest

SHARED = Path(os.environ.get("ASTRO_SHARED_DATA", Path(__file__).resolve().parents[3] / "shared" / "data")) / "ztf"


def ingest(src: Path, out: Path):
    name = src.name.split(".")[0]
    return ztf_ingest.ingest_file(src, out / f"{name}_alerts.parquet", out / f"{name}_stamps.h5", IngestConfig(), False)


def test_alert_table_opens_with_table_read_with_units_and_history(tmp_path):
    alerts = synthetic.make_alerts(4, seed=3, small_stamp=1)
    result = ingest(synthetic.write_avro(tmp_path / "in" / "syn.avro", alerts), tmp_path / "out")
    t = Table.read(result.alerts, format="parquet")
    assert len(t) == 4 and list(t["objectId"]) == [a["objectId"] for a in alerts]
    assert t["jd"].unit == u.day and t["magpsf"].unit == u.mag and t["ra"].unit == u.deg
    assert t["xpos"].unit == u.pix and "Julian date" in t["jd"].description
    assert t.meta["provenance"]["command"] == "ztf ingest"
    import h5py

    with h5py.File(result.stamps) as h5:
        assert u.Unit(h5["science"].attrs["unit"], parse_strict="raise") == u.adu
    for row, alert in zip(t, alerts):
        entries = json.loads(row["prv_candidates"])                  # plain JSON, no astrotool needed
        assert entries == ztf_ingest.history(row["prv_candidates"])
        assert [e["jd"] for e in entries] == [p["jd"] for p in alert["prv_candidates"] or []]
        assert all(set(e) == {n for n, _ in ztf_ingest.HISTORY_FIELDS} for e in entries)
        assert row["n_prv_candidates"] == len(entries)


@pytest.mark.skipif(not (SHARED / "fink_simbad_part2.parquet").is_file(), reason=f"no Fink dump in {SHARED}")
def test_broker_dump_with_null_strings_and_labels_opens_with_table_read(tmp_path):
    result = ingest(SHARED / "fink_simbad_part2.parquet", tmp_path)
    t = Table.read(result.alerts, format="parquet")
    assert len(t) == 67 and "cdsxmatch" in t.colnames and t["jdstarthist"].unit == u.day
    assert all(isinstance(ztf_ingest.history(v), list) for v in t["prv_candidates"])


def test_prepared_set_s_table_opens_with_table_read_with_units_and_descriptions(tmp_path, astro):
    ws = tmp_path / "ws"
    assert astro("-w", ws, "--seed", 4, "ztf", "simulate", "-n", 10).returncode == 0
    r = astro("-w", ws, "--seed", 4, "ztf", "prepare")
    assert r.returncode == 0, r.stderr
    t = Table.read(ws / "ztf" / "prepared" / "sim" / "sim_alerts.parquet")
    assert [c for c in t.colnames if not t[c].description] == []
    assert t["jd"].unit == u.day and "Julian date" in t["jd"].description   # the alert table's
    assert all(t[c].unit is None for c in t.colnames if c != "jd")
    assert t.meta["provenance"]["command"] == "ztf prepare"
