"""Stamps cut at a CCD edge: the candidate stays on the centre pixel (ingest and simulate agree with ZTF's
cutout geometry), and the units of the alert table follow the ZTF schema."""

from __future__ import annotations

import os
import re
from pathlib import Path

import h5py
import numpy as np
import pyarrow.parquet as pq
import pytest

from astrotool_ztf.config import IngestConfig
from astrotool_ztf.ingest import CUTOUT, INGEST_VERSION, UNITS, decode_stamp, ingest_file
from astrotool_ztf.synthetic import fits_stamp

SHARED = Path(os.environ.get("ASTRO_SHARED_DATA", Path(__file__).resolve().parents[3] / "shared" / "data")) / "ztf"
REAL_AVRO = sorted(SHARED.glob("*.avro")) if SHARED.is_dir() else []
needs_shared = pytest.mark.skipif(not REAL_AVRO, reason=f"no sample ZTF alerts in {SHARED} (set ASTRO_SHARED_DATA)")

# side -> (the cut cutout, xpos, ypos) of a 63 x 63 cutout [rows = y, columns = x] keeping 40 rows or columns;
# the candidate is on pixel (31, 31) of the uncut cutout
KEEP = 40
SIDES = {
    "low_x": (lambda a: a[:, -KEEP:], KEEP - 31 + 0.3, 1500.2),       # lost columns on the low-x side: xpos < 32
    "high_x": (lambda a: a[:, :KEEP], 3072 - (KEEP - 32) - 0.2, 1500.2),
    "low_y": (lambda a: a[-KEEP:], 1500.2, KEEP - 31 - 0.4),            # FITS row 0 is y = 1
    "high_y": (lambda a: a[:KEEP], 1500.2, 3080 - (KEEP - 32) + 0.1),
}


def _cutout(rng):
    image = rng.normal(0, 1, (CUTOUT, CUTOUT)).astype(np.float32)
    image[31, 31] = 1000.0
    return image


@pytest.mark.parametrize("size", [63, 21, 65])
@pytest.mark.parametrize("side", SIDES)
def test_an_edge_cutout_has_its_candidate_on_the_centre_pixel(side, size):
    cut, xpos, ypos = SIDES[side]
    stamp = cut(_cutout(np.random.default_rng(0)))
    out, status = decode_stamp(fits_stamp(stamp), size, xpos, ypos)
    assert status == "resized" and out.shape == (size, size)
    assert out[size // 2, size // 2] == 1000.0
    assert np.unravel_index(np.nanargmax(out), out.shape) == (size // 2, size // 2)
    assert np.isfinite(out).sum() == min(size, stamp.shape[0]) * min(size, stamp.shape[1]) or size < KEEP


def test_without_xpos_an_edge_cutout_is_centred_as_before():
    stamp = np.arange(63 * 40, dtype=np.float32).reshape(63, 40)
    for pos in (None, float("nan")):
        out, _ = decode_stamp(fits_stamp(stamp), 63, pos, pos)
        np.testing.assert_array_equal(out[:, 11:51], stamp)      # evenly padded: (63 - 40) // 2 = 11
        assert np.isnan(out[:, :11]).all() and np.isnan(out[:, 51:]).all()


@pytest.mark.parametrize("side", range(4))
@pytest.mark.parametrize("keep", [32, 45, 57])
def test_simulated_edge_positions_follow_the_side_that_was_cut(side, keep):
    from astrotool_ztf.simulate import _edge_cut, _position

    stamp = _edge_cut(_cutout(np.random.default_rng(1)), side, keep)
    xpos, ypos = _position(np.random.default_rng(2), CUTOUT, side, keep)
    out, _ = decode_stamp(fits_stamp(stamp), 63, xpos, ypos)
    assert out[31, 31] == 1000.0


def test_simulated_alerts_carry_xpos_ypos_and_keep_the_candidate(monkeypatch):
    from astrotool_ztf import simulate

    epoch = simulate._epoch

    def marked(*args, **kwargs):   # a marker on the candidate's pixel of the difference image
        sci, tmpl, diff = epoch(*args, **kwargs)
        diff = diff.copy()
        diff[diff.shape[0] // 2, diff.shape[1] // 2] = 1e6
        return sci, tmpl, diff

    monkeypatch.setattr(simulate, "_epoch", marked)
    cfg = {"stamp_size": 63, "class_fractions": {"bogus": 1.0}, "alerts_per_object": (1, 1),
           "seeing_fwhm": (1.5, 3.0), "template_depth": 16.0, "psf_mismatch": 0.02, "edge_fraction": 0.25}
    alerts = simulate.simulate_objects(0, 12, 3, cfg)
    edges = 0
    for a in alerts:
        cand = a["candidate"]
        assert 1 <= cand["xpos"] <= 3072 and 1 <= cand["ypos"] <= 3080
        out, status = decode_stamp(a["cutoutDifference"]["stampData"], 63, cand["xpos"], cand["ypos"])
        edges += status == "resized"
        assert out[31, 31] == 1e6, (a["candid"], status)
    assert edges == len(alerts)   # bogus: 4 x 0.25, every alert cut


@needs_shared
def test_the_real_edge_cutout_of_the_shared_sample_keeps_its_candidate_at_the_centre(tmp_path):
    src = SHARED / "fink_simbad_part2.parquet"
    r = ingest_file(src, tmp_path / "a_alerts.parquet", tmp_path / "a_stamps.h5", IngestConfig(), False)
    assert r.n_stamps_resized == 1
    table = pq.read_table(r.alerts, columns=["xpos", "stamps_resized", "isdiffpos"]).to_pandas()
    i = int(np.flatnonzero(table["stamps_resized"])[0])
    assert table["xpos"][i] > 32                             # 63 x 62: the high-x side was cut
    with h5py.File(r.stamps) as h5:
        diff = h5["difference"][i]
        assert h5.attrs["ingest_version"] == INGEST_VERSION
    assert np.isnan(diff[:, 62]).all() and np.isfinite(diff[:, :62]).all()
    centre = np.abs(diff[26:37, 26:37])
    assert np.unravel_index(np.argmax(centre), centre.shape) == (5, 5)


def test_stamps_of_an_older_ingest_are_refused_not_kept(tmp_path):
    from astrotool.made_with import VersionChanged
    from astrotool_ztf import synthetic
    from astrotool_ztf.ingest import IngestItem, check_kept

    src = synthetic.write_avro(tmp_path / "in.avro", synthetic.make_alerts(2))
    a, s = tmp_path / "a_alerts.parquet", tmp_path / "a_stamps.h5"
    ingest_file(src, a, s, IngestConfig(), False)
    with h5py.File(s, "a") as h5:
        del h5.attrs["ingest_version"]                       # as version 1 wrote it
    with pytest.raises(VersionChanged, match="version 1; this one is 2"):
        ingest_file(src, a, s, IngestConfig(), False)
    with pytest.raises(VersionChanged):
        check_kept([IngestItem(str(src), str(a), str(s), IngestConfig(), False)])
    assert not ingest_file(src, a, s, IngestConfig(), True).skipped



def test_prepare_and_predict_refuse_stamps_of_an_older_ingest(tmp_path):
    """Only ingest refused them: prepare and predict read stamps placed the old way without a word."""
    from astrotool.errors import InputError
    from astrotool_ztf import synthetic
    from astrotool_ztf.ingest import read_stamps
    from astrotool_ztf.predict import input_identity

    src = synthetic.write_avro(tmp_path / "in.avro", synthetic.make_alerts(2))
    a, s = tmp_path / "a_alerts.parquet", tmp_path / "a_stamps.h5"
    ingest_file(src, a, s, IngestConfig(), False)
    now = input_identity(a, s)
    assert len(read_stamps(s)["candid"]) == 2
    with h5py.File(s, "a") as h5:
        del h5.attrs["ingest_version"]                       # as version 1 wrote it
    with pytest.raises(InputError, match=r"a_stamps\.h5: .*version: 1 -> 2.*astro ztf ingest --overwrite"):
        read_stamps(s)
    assert input_identity(a, s) != now                       # predictions of the old stamps are not kept


@needs_shared
def test_units_follow_the_schema_in_the_shared_avro_files():
    import fastavro

    docs = {}

    def walk(node):
        if isinstance(node, dict):
            if "name" in node and isinstance(node.get("doc"), str):
                docs[node["name"]] = node["doc"]
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    with open(REAL_AVRO[0], "rb") as fh:
        walk(fastavro.reader(fh).writer_schema)
    same = {"pixels": "pixel", "days": "d", "DN": "adu"}
    checked = 0
    for name, unit in UNITS.items():
        m = re.search(r"\[([^\]]+)\]\s*$", docs.get(name, ""))
        if m:
            assert same.get(m.group(1), m.group(1)) == unit, (name, m.group(1), unit)
            checked += 1
    assert UNITS["ssdistnr"] == "arcsec" and checked >= 20
