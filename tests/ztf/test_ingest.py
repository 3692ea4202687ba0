"""Tests of ``astro ztf ingest``: real alerts, Parquet dumps, stamps, bad inputs, the names the tables of an input
get (files of one name, moved and copied files), settings changed on a rerun, and shards."""

from __future__ import annotations

import dataclasses
import gzip
import io
import json
import os
import re
from pathlib import Path

import fastavro
import h5py
import numpy as np
import pyarrow.parquet as pq
import pytest

from astrotool.errors import AstroError, InputError
from astrotool.io.tables import parquet_provenance
from astrotool_ztf import synthetic
from astrotool_ztf.config import IngestConfig
from astrotool_ztf.ingest import (IngestItem, IngestResult, decode_stamp, expand_inputs, ingest_file, ingest_files,
                                  history, read_stamps, unique_names)
from tests.ztf.conftest import AVRO, stamps_source as _source, usage_error as _error

SHARED = Path(os.environ.get("ASTRO_SHARED_DATA", Path(__file__).resolve().parents[3] / "shared" / "data")) / "ztf"
REAL_AVRO = sorted(SHARED.glob("*.avro")) if SHARED.is_dir() else []
STAMP_FIELDS = ("cutoutScience", "cutoutTemplate", "cutoutDifference")
needs_shared = pytest.mark.skipif(not REAL_AVRO, reason=f"no sample ZTF alerts in {SHARED} (set ASTRO_SHARED_DATA)")


def ingest(path, out: Path, overwrite: bool = False, **settings) -> IngestResult:
    name = Path(path).name.split(".")[0]
    return ingest_file(path, out / f"{name}_alerts.parquet", out / f"{name}_stamps.h5", IngestConfig(**settings),
                       overwrite)


def fits_image(stamp: dict) -> np.ndarray:
    """Decode a cutout directly with gzip + astropy (independent of the plugin)."""
    import warnings

    from astropy.io import fits

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")                     # some ZTF templates have a non-standard SIMPLE card
        with fits.open(io.BytesIO(gzip.decompress(stamp["stampData"]))) as hdul:
            return np.asarray(hdul[0].data, dtype=np.float32)


@needs_shared
@pytest.mark.parametrize("path", REAL_AVRO, ids=lambda p: p.name)
def test_real_avro_alert_matches_fastavro(path, tmp_path):
    with open(path, "rb") as fh:
        alerts = list(fastavro.reader(fh))
    summary = ingest(path, tmp_path)
    assert summary.n_alerts == len(alerts) == 1 and summary.format == "avro"
    table = pq.read_table(summary.alerts).to_pylist()
    assert len(table) == 1
    for row, alert in zip(table, alerts):
        cand = alert["candidate"]
        assert row["objectId"] == alert["objectId"] and row["objectId"].startswith("ZTF")
        assert row["candid"] == alert["candid"] == cand["candid"]
        assert row["magpsf"] == np.float32(cand["magpsf"]) and 10 < row["magpsf"] < 25
        assert row["sigmapsf"] == np.float32(cand["sigmapsf"])
        assert row["jd"] == cand["jd"] and row["fid"] == cand["fid"]
        assert (row["ra"], row["dec"]) == (cand["ra"], cand["dec"])
        assert row["isdiffpos"] == (cand["isdiffpos"] in ("t", "1"))
        assert row["n_prv_candidates"] == len(alert["prv_candidates"] or [])
        assert [p["jd"] for p in history(row["prv_candidates"])] == [p["jd"] for p in alert["prv_candidates"]]
    stamps = read_stamps(summary.stamps)
    assert stamps["candid"].tolist() == [a["candid"] for a in alerts]
    for kind, field in [("science", "cutoutScience"), ("template", "cutoutTemplate"),
                        ("difference", "cutoutDifference")]:
        assert stamps[kind].shape == (1, 63, 63) and stamps[kind].dtype == np.float32
        assert np.isfinite(stamps[kind]).all()
        np.testing.assert_array_equal(stamps[kind][0], fits_image(alerts[0][field]))
    assert np.ptp(stamps["science"][0]) > 0


@needs_shared
def test_real_fink_parquet_dumps(tmp_path):
    src = pq.read_table(SHARED / "fink_simbad_part2.parquet")
    summary = ingest(SHARED / "fink_simbad_part2.parquet", tmp_path)
    assert summary.format == "parquet" and summary.n_alerts == src.num_rows == 67
    out = pq.read_table(summary.alerts)
    assert out["candid"].to_pylist() == src["candid"].to_pylist()
    assert out["magpsf"].to_pylist() == [c["magpsf"] for c in src["candidate"].to_pylist()]
    # label columns of the broker dump survive; struct labels are flattened
    assert out["cdsxmatch"].to_pylist() == src["cdsxmatch"].to_pylist()
    assert "mulens_class_1" in out.column_names and "roid" in out.column_names
    # a few stamps are 63x62: NaN-padded to 63x63 and flagged
    stamps = read_stamps(summary.stamps)
    assert stamps["science"].shape == (67, 63, 63)
    resized = np.flatnonzero(out["stamps_resized"].to_numpy(zero_copy_only=False))
    assert resized.size == summary.n_stamps_resized >= 1
    for i in resized:
        shapes = [fits_image(src[f][i].as_py()).shape for f in ("cutoutScience", "cutoutTemplate",
                                                                  "cutoutDifference")]
        assert (63, 62) in shapes
    assert out["stamps_ok"].to_pylist() == [True] * 67


def make_synthetic(tmp_path: Path):
    alerts = synthetic.make_alerts(4, seed=3, small_stamp=1)
    avro = synthetic.write_avro(tmp_path / "in" / "syn.avro", alerts)
    parquet = synthetic.write_parquet(tmp_path / "in" / "syn_dump.parquet", alerts,
                                      labels={"label": ["SN", "AGN", "VS", "SN"], "score": [0.9, 0.1, 0.5, 0.7]})
    return alerts, avro, parquet


def test_avro_and_parquet_dump_give_the_same_tables_and_stamps(tmp_path):
    alerts, avro, parquet = make_synthetic(tmp_path)
    a = ingest(avro, tmp_path / "a")
    p = ingest(parquet, tmp_path / "p")
    ta, tp = pq.read_table(a.alerts), pq.read_table(p.alerts)
    core = [c for c in ta.column_names]
    assert ta.equals(tp.select(core))                       # identical alert columns
    assert tp["label"].to_pylist() == ["SN", "AGN", "VS", "SN"] and tp["score"].to_pylist()[0] == 0.9
    assert ta["objectId"].to_pylist() == [x["objectId"] for x in alerts]
    assert ta["n_prv_candidates"].to_pylist() == [0, 1, 2, 3]
    assert ta["n_prv_detections"].to_pylist() == [0, 1, 1, 2]
    sa, sp = read_stamps(a.stamps), read_stamps(p.stamps)
    for kind in ("science", "template", "difference"):
        np.testing.assert_array_equal(sa[kind], sp[kind])
        np.testing.assert_array_equal(sa[kind][0], fits_image(alerts[0]["cutoutScience" if kind == "science" else
                                                                       "cutoutTemplate" if kind == "template" else
                                                                       "cutoutDifference"]))
    # alert 1 has 63x62 stamps: centred, last column NaN, flagged
    assert ta["stamps_resized"].to_pylist() == [False, True, False, False]
    assert np.isnan(sa["science"][1][:, -1]).all() and np.isfinite(sa["science"][1][:, :-1]).all()
    meta = json.loads(ta.schema.metadata[b"astrotool"])
    from astrotool_ztf.ingest import recorded_source   # relative to the workspace where it lies inside it

    assert meta["format"] == "avro" and meta["source"] == recorded_source(avro, Path(a.stamps).parent)
    assert Path(meta["source"]).name == "syn.avro"
    record = parquet_provenance(a.alerts)
    assert record["command"] == "ztf ingest" and record["config"]["stamp_size"] == 63
    with h5py.File(a.stamps) as h5:
        assert h5.attrs["astrotool_command"] == "ztf ingest" and h5.attrs["alerts_file"] == "syn_alerts.parquet"
        assert json.loads(h5.attrs["astrotool_config"]) == record["config"]


def test_outputs_are_kept_unless_overwrite(tmp_path):
    _, avro, _ = make_synthetic(tmp_path)
    first = ingest(avro, tmp_path / "o")
    assert not first.skipped
    outputs = [Path(first.alerts), Path(first.stamps)]
    mtimes = [f.stat().st_mtime_ns for f in outputs]
    second = ingest(avro, tmp_path / "o")
    assert second == dataclasses.replace(first, skipped=True)    # the counts come back from the kept file
    assert [f.stat().st_mtime_ns for f in outputs] == mtimes
    assert not ingest(avro, tmp_path / "o", overwrite=True).skipped
    assert all(f.stat().st_mtime_ns > m for f, m in zip(outputs, mtimes))
    mtimes = [f.stat().st_mtime_ns for f in outputs]
    for setting, message in [({"stamp_size": 61}, "ztf.ingest.stamp_size: 63 -> 61"),
                             ({"keep_history": False}, "ztf.ingest.keep_history: true -> false")]:
        with pytest.raises(AstroError, match=f"syn_stamps.h5: exists but was made with other settings:\n  {message}\n"):
            ingest(avro, tmp_path / "o", **setting)               # other settings are not mixed in silently
    assert ingest(avro, tmp_path / "o", compression="high").skipped   # the same content, compressed otherwise
    assert [f.stat().st_mtime_ns for f in outputs] == mtimes
    table = outputs[0]   # a table cut short, or another one copied over it, was kept, and every predict refused
    whole = pq.read_table(table)   # it ("ingest it again")
    for bad, why in ((table.read_bytes()[:200], "syn_alerts.parquet: not a readable alert table"),
                     (None, "syn_alerts.parquet: 2 alert(s), where its stamps file holds 4")):
        if bad is None:
            pq.write_table(whole.slice(0, 2), table)
        else:
            table.write_bytes(bad)
        again = ingest(avro, tmp_path / "o")
        assert not again.skipped and pq.read_table(table).num_rows == again.n_alerts == 4
        assert why in again.remade, again.remade
    stamp_file = outputs[1]
    stamp_file.write_bytes(stamp_file.read_bytes()[:64])  # a damaged output is named, not a raw h5py error
    with pytest.raises(InputError, match="syn_stamps.h5: not a readable HDF5 file"):
        ingest(avro, tmp_path / "o")
    assert ingest(avro, tmp_path / "o", overwrite=True).n_alerts == 4
    with h5py.File(stamp_file, "w") as h5:                    # an HDF5 file that ingest did not write
        h5["science"] = np.zeros((1, 63, 63), np.float32)
    with pytest.raises(InputError, match="syn_stamps.h5: not a stamps file of ztf ingest: no attribute"):
        ingest(avro, tmp_path / "o")


def test_an_input_replaced_under_its_name_is_not_answered_with_the_old_alerts(tmp_path):
    """Outputs were kept by name: other alerts in a file of the same name (replaced, or another folder's)
    came back as the old table, exit 0 (ztf predict too, which ingests through here)."""
    _, avro, _ = make_synthetic(tmp_path)
    first = ingest(avro, tmp_path / "o")
    st = avro.stat()
    synthetic.write_avro(avro, synthetic.make_alerts(4, seed=4, small_stamp=1))
    os.utime(avro, ns=(st.st_atime_ns, st.st_mtime_ns))        # even with its time set back
    with pytest.raises(AstroError, match=r"syn_stamps.h5: exists but was made with other settings:\n  input: "
                                         r'"sha256 [0-9a-f]{16}, \d+ B" -> "sha256 [0-9a-f]{16}, \d+ B"'):
        ingest(avro, tmp_path / "o")
    assert pq.read_table(first.alerts)["objectId"].to_pylist() == [a["objectId"] for a in
                                                                   synthetic.make_alerts(4, seed=3, small_stamp=1)]
    again = ingest(avro, tmp_path / "o", overwrite=True)
    assert not again.skipped and ingest(avro, tmp_path / "o").skipped


def test_truncated_avro_raises_input_error_naming_the_file(tmp_path):
    _, avro, _ = make_synthetic(tmp_path)
    data = avro.read_bytes()
    bad = tmp_path / "truncated.avro"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError) as err:
        ingest(bad, tmp_path / "out")
    assert err.value.path == str(bad) and str(bad) in str(err.value) and "truncated" in str(err.value)
    assert not list((tmp_path / "out").glob("*")), "nothing (not even a partial file) is left behind"


@needs_shared
def test_truncated_real_avro(tmp_path):
    bad = tmp_path / "cut.avro"
    bad.write_bytes(REAL_AVRO[0].read_bytes()[:30000])
    with pytest.raises(InputError, match="cut.avro"):
        ingest(bad, tmp_path / "out")


def test_other_bad_inputs(tmp_path):
    not_alerts = tmp_path / "table.parquet"
    synthetic.write_parquet(not_alerts, [{"a": 1, "b": "x"}])
    with pytest.raises(InputError, match="missing column"):
        ingest(not_alerts, tmp_path / "out")
    with pytest.raises(InputError, match="no such file"):
        ingest(tmp_path / "missing.avro", tmp_path / "out")
    text = tmp_path / "notes.avro"
    text.write_text("hello")
    with pytest.raises(InputError, match="neither"):
        ingest(text, tmp_path / "out")


def test_malformed_parquet_alerts_name_the_file_and_the_field(tmp_path):
    import copy

    alerts = synthetic.make_alerts(2, seed=3, small_stamp=1)
    cases = {
        "flat.parquet": ([{**a, "candidate": "x", "candid": 1} for a in alerts], "'candidate' is not a struct"),
        "candid.parquet": ([{**a, "candid": "abc"} for a in alerts], "alert 0: candid 'abc' is not an integer"),
        "prv.parquet": ([{**a, "prv_candidates": "junk"} for a in alerts], "alert 0: prv_candidates is a str"),
    }
    wrong = copy.deepcopy(alerts)
    for a in wrong:
        a["candidate"]["magpsf"] = [1.0]
    cases["field.parquet"] = (wrong, "alert 0: candidate.magpsf: expected a number, got list")
    for name, (records, message) in cases.items():
        path = synthetic.write_parquet(tmp_path / name, records)
        with pytest.raises(InputError) as err:
            ingest(path, tmp_path / "out")
        assert str(path) in str(err.value) and message in str(err.value), (name, str(err.value))
    assert not list((tmp_path / "out").glob("*")), "no partial output"


def test_unique_names_disambiguate_with_parent_folders(tmp_path):
    paths = [tmp_path / f"night{i % 2}" / f"{i // 2}.avro" for i in range(200)]
    names = unique_names(paths)
    assert len(set(names)) == 200 and names[:3] == ["night0_0", "night1_0", "night0_1"]
    deep = [tmp_path / "a/x/n/1.avro", tmp_path / "b/x/n/1.avro", tmp_path / "c/2.avro.gz"]
    assert unique_names(deep) == ["a_x_n_1", "b_x_n_1", "2"]
    with pytest.raises(AstroError, match="same outputs"):
        unique_names([tmp_path / "a/x/y/z/1.avro", tmp_path / "b/x/y/z/1.avro"])
    # one folder, one stem, two formats: no parent tells them apart; both files are named (neither was)
    with pytest.raises(InputError) as err:
        unique_names([tmp_path / "n/0.avro", tmp_path / "n/0.parquet", tmp_path / "m/1.avro"])
    assert err.value.exit_code == 2 and err.value.path == f"{tmp_path / 'n/0.avro'} and {tmp_path / 'n/0.parquet'}"


def test_gzipped_avro_and_folder_inputs(tmp_path):
    _, avro, parquet = make_synthetic(tmp_path)
    gz = tmp_path / "in" / "sub" / "syn.avro.gz"
    gz.parent.mkdir()
    gz.write_bytes(gzip.compress(avro.read_bytes()))
    files = expand_inputs([tmp_path / "in"])
    assert sorted(f.name for f in files) == ["syn.avro", "syn.avro.gz", "syn_dump.parquet"]
    names = unique_names(files)
    assert len(set(names)) == 3
    summary = ingest(gz, tmp_path / "g")
    assert summary.format == "avro.gz" and summary.n_alerts == 4


def test_decode_stamp_pads_crops_and_flags():
    img = np.arange(63 * 61, dtype=np.float32).reshape(63, 61)
    out, status = decode_stamp(synthetic.fits_stamp(img), 63)
    assert status == "resized" and np.isnan(out[:, 0]).all() and np.isnan(out[:, -1]).all()
    np.testing.assert_array_equal(out[:, 1:-1], img)
    big = np.arange(70 * 71, dtype=np.float32).reshape(70, 71)
    out, status = decode_stamp(synthetic.fits_stamp(big), 63)
    assert status == "resized"
    np.testing.assert_array_equal(out, big[3:66, 4:67])      # centre crop: (70 - 63) // 2, (71 - 63) // 2
    assert decode_stamp(None, 63)[1] == "missing"
    assert decode_stamp(b"\x1f\x8bnot gzip", 63)[1] == "bad"
    assert decode_stamp(b"\xff\xd8\xff\xe0 a JPEG stamp", 63)[1] == "bad"
    blank = np.full((63, 63), np.nan, np.float32)   # a FITS of NaN only: no stamp (was "ok", stamps_ok true)
    assert decode_stamp(synthetic.fits_stamp(blank), 63)[1] == "bad"


def _fits_bytes(hdus) -> bytes:
    from astropy.io import fits

    buf = io.BytesIO()
    fits.HDUList(hdus).writeto(buf)
    return buf.getvalue()


def test_stamps_read_without_astropy_equal_astropy():
    """The direct reader of one-HDU 2-D cutouts gives astropy's values, scaling included, and hands
    anything else (BLANK, an image in an extension, truncated data) to astropy."""
    from astropy.io import fits

    from astrotool_ztf.ingest import _simple_image

    rng = np.random.default_rng(4)
    img = rng.normal(100, 20, (5, 7))
    cases = {
        "f4": fits.PrimaryHDU(img.astype(np.float32)),
        "f8": fits.PrimaryHDU(img),
        "i4": fits.PrimaryHDU(img.astype(np.int32)),
        "u1": fits.PrimaryHDU(np.clip(img, 0, 255).astype(np.uint8)),
        "scaled": fits.PrimaryHDU(img.astype(np.float32)),
    }
    cases["scaled"].scale("int16", bscale=0.01, bzero=100.0)
    for name, hdu in cases.items():
        raw = _fits_bytes([hdu])
        got = _simple_image(raw)
        want = fits.getdata(io.BytesIO(raw)).astype(np.float32)
        assert got is not None and got.dtype == np.float32, name
        np.testing.assert_allclose(got, want, rtol=1e-6, err_msg=name)
    blank = fits.PrimaryHDU(np.array([[1, -1], [3, 4]], dtype=np.int16))
    blank.header["BLANK"] = -1
    ext = [fits.PrimaryHDU(), fits.ImageHDU(img.astype(np.float32))]
    for raw in (_fits_bytes([blank]), _fits_bytes(ext), _fits_bytes([cases["f4"]])[:-2880]):
        assert _simple_image(raw) is None
    out, status = decode_stamp(gzip.compress(_fits_bytes(ext)), 7)
    assert status == "resized" and np.isfinite(out[1:6]).all()  # read by astropy
    np.testing.assert_array_equal(out[1:6], img.astype(np.float32))


@needs_shared
@pytest.mark.filterwarnings("ignore:Found a SIMPLE card")  # some ZTF templates: 'SIMPLE  =  T'
def test_every_shared_stamp_reads_as_astropy_reads_it():
    import pyarrow.parquet as pq_

    from astropy.io import fits

    from astrotool_ztf.ingest import _simple_image

    blobs = []
    for path in REAL_AVRO:
        with open(path, "rb") as fh:
            blobs += [a[k]["stampData"] for a in fastavro.reader(fh) for k in STAMP_FIELDS]
    for path in sorted(SHARED.glob("*.parquet")):
        rows = pq_.read_table(path, columns=list(STAMP_FIELDS)).to_pylist()
        blobs += [r[k]["stampData"] for r in rows for k in STAMP_FIELDS]
    assert len(blobs) >= 300
    for blob in blobs:
        raw = gzip.decompress(blob)
        got = _simple_image(raw)
        assert got is not None
        with fits.open(io.BytesIO(raw)) as hdul:
            np.testing.assert_array_equal(got, hdul[0].data.astype(np.float32))


def test_cli_ingest_reports_bad_file_and_ingests_the_rest(tmp_path, capsys):
    from astrotool.cli import main

    _, avro, parquet = make_synthetic(tmp_path)
    bad = tmp_path / "in" / "broken.avro"
    bad.write_bytes(avro.read_bytes()[:500])
    code = main(["-w", str(tmp_path / "ws"), "--json", "ztf", "ingest", str(tmp_path / "in")])
    captured = capsys.readouterr()
    assert code == 2   # bad input, and the rest ingested
    assert "broken.avro" in captured.err  # (a path that does not exist is a usage error: test_odd_inputs)
    result = json.loads(captured.out)
    assert result["ingested"] == 2 and result["alerts"] == 8
    assert sorted(p.name for p in (tmp_path / "ws/ztf").rglob("*.*") if not p.name.startswith(".")) == [
        "syn_alerts.parquet", "syn_dump_alerts.parquet", "syn_dump_stamps.h5", "syn_stamps.h5"]
    mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / "ws/ztf").rglob("*.*")}
    # a rerun keeps the finished pairs (result and mtimes) and reports the bad file again
    code = main(["-w", str(tmp_path / "ws"), "--json", "ztf", "ingest", str(tmp_path / "in")])
    captured = capsys.readouterr()
    assert code == 2 and "broken.avro" in captured.err
    again = json.loads(captured.out)
    assert (again["ingested"], again["kept"], again["alerts"]) == (0, 2, 8)
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes


def test_ingest_files_maps_frozen_items_with_the_configured_stamp_size(tmp_path):
    alerts, avro, parquet = make_synthetic(tmp_path)
    calls = []

    def mapper(fn, items, desc="", keys=None):
        calls.append((list(items), list(keys)))
        return [(k, fn(item, 0)) for k, item in zip(keys, items)]

    cfg = IngestConfig(stamp_size=61, keep_history=False)
    done = ingest_files([avro, parquet], tmp_path / "a", tmp_path / "s", cfg, mapper, overwrite=False)
    (items, keys), = calls
    assert keys == ["syn", "syn_dump"] and all(isinstance(i, IngestItem) and i.cfg is cfg for i in items)
    with pytest.raises(dataclasses.FrozenInstanceError):
        items[0].overwrite = True
    assert [(r.format, r.n_alerts, r.skipped) for r in done] == [("avro", 4, False), ("parquet", 4, False)]
    stamps = read_stamps(done[0].stamps)
    assert stamps["science"].shape == (4, 61, 61)
    np.testing.assert_array_equal(stamps["science"][0], fits_image(alerts[0]["cutoutScience"])[1:62, 1:62])
    assert "prv_candidates" not in pq.read_schema(done[0].alerts).names


@needs_shared
def test_demo_ingests_the_shared_sample_alerts(tmp_path):
    from astrotool.context import Context
    from astrotool_ztf.demo import run

    lines = run(Context.create(tmp_path / "demo"), n_objects=60, epochs=1)
    assert len(lines) == 7 and not any("synthetic" in line for line in lines)
    rows = {p.name: pq.read_metadata(p).num_rows for p in (tmp_path / "demo/ztf/alerts").glob("*.parquet")
            if not p.name.startswith("demo_")}
    assert rows == {"2019_01_10_739260766315010006_alerts.parquet": 1, "472263571115115000_alerts.parquet": 1,
                    "fink_alerts_alerts.parquet": 51, "fink_simbad_part2_alerts.parquet": 67}
    # the last line: every sample alert classified by the demo's classifier
    n_alerts = int(lines[-1].split("ztf: the ")[1].split(" sample alerts")[0])
    counts = [int(part.split()[1]) for part in lines[-1].split("alerts per class: ")[1].split(" (")[0].split(", ")]
    assert n_alerts == sum(counts) == 120 and (tmp_path / "demo/ztf/models/demo_classifier/model.json").is_file()


def test_demo_without_shared_data_uses_synthetic_alerts(tmp_path):
    from astrotool.context import Context
    from astrotool_ztf.demo import run

    lines = run(Context.create(tmp_path / "demo"), sample_dir=None, n_objects=60, epochs=1)
    assert "synthetic" in lines[0]
    assert pq.read_metadata(tmp_path / "demo/ztf/alerts/synthetic_alerts_alerts.parquet").num_rows == 5
    assert read_stamps(tmp_path / "demo/ztf/stamps/synthetic_alerts_stamps.h5")["science"].shape == (5, 63, 63)


@pytest.mark.parametrize("fmt", ["avro", "parquet"])
def test_unknown_schema_versions_are_reported_and_the_others_ingested(tmp_path, astro, fmt):
    alerts = synthetic.make_alerts(5, seed=3)
    alerts[1]["schemavsn"] = "9.1"
    alerts[3]["schemavsn"] = "x"
    src = tmp_path / f"mixed.{fmt}"
    if fmt == "avro":
        synthetic.write_avro(src, alerts)
    else:
        synthetic.write_parquet(src, alerts, labels={"class": ["a", "b", "c", "d", "e"]})
    r = astro("--json", "-w", tmp_path / "ws", "ztf", "ingest", src)
    assert r.returncode == 0, r.stderr
    assert "mixed" in r.stderr and "2 alert(s) of unknown alert schema version(s) 9.1, x" in r.stderr
    table = pq.read_table(tmp_path / "ws" / "ztf" / "alerts" / "mixed_alerts.parquet").to_pandas()
    assert table["candid"].tolist() == [a["candid"] for i, a in enumerate(alerts) if i not in (1, 3)]
    if fmt == "parquet":
        assert table["class"].tolist() == ["a", "c", "e"]  # label columns stay with their alerts
    for a in alerts:
        a["schemavsn"] = "5.0"
    only = tmp_path / f"new.{fmt}"
    (synthetic.write_avro if fmt == "avro" else synthetic.write_parquet)(only, alerts)
    bad = astro("-w", tmp_path / "ws", "ztf", "ingest", only)
    assert bad.returncode != 0 and "new" in bad.stderr and "unknown alert schema version (5.0" in bad.stderr
    assert not (tmp_path / "ws" / "ztf" / "alerts" / "new_alerts.parquet").exists()


def write_old_avro(path: Path, alerts: list[dict], version: str | None, *, sgscore: bool = False,
                   alert_id: bool = False) -> Path:
    """Alerts in the shape of an early 1.x schema: no ``schemavsn`` or ``publisher`` (the version only in
    the Avro file's schema), ``candidate.sgscore`` (before 1.8), ``alertId`` instead of ``objectId`` (1.1)."""
    schema = synthetic.alert_schema()
    schema["fields"] = [f for f in schema["fields"] if f["name"] not in ("schemavsn", "publisher")]
    if version is not None:
        schema["version"] = version
    if sgscore:
        schema["fields"][2]["type"]["fields"].append({"name": "sgscore", "type": ["null", "float"]})
    if alert_id:
        schema["fields"][0] = {"name": "alertId", "type": "long"}
    records = []
    for i, a in enumerate(alerts):
        r = {k: v for k, v in a.items() if k not in ("schemavsn", "publisher")}
        if sgscore:
            r["candidate"] = dict(r["candidate"], sgscore=0.25 * i)
        if alert_id:
            r["alertId"] = 1000 + i
            del r["objectId"]
        records.append(r)
    with open(path, "wb") as fh:
        fastavro.writer(fh, fastavro.parse_schema(schema), records)
    return path


def test_schema_1x_version_comes_from_the_avro_schema_and_moved_fields_are_mapped(tmp_path):
    alerts = synthetic.make_alerts(3, seed=5)
    r = ingest(write_old_avro(tmp_path / "v16.avro", alerts, "1.6", sgscore=True), tmp_path / "out")
    assert r.n_alerts == 3 and r.schema_versions == "1.6"
    t = pq.read_table(r.alerts).to_pydict()
    assert t["schemavsn"] == ["1.6"] * 3
    assert t["sgscore1"] == [0.0, 0.25, 0.5]  # 1.8 renamed sgscore to sgscore1
    r18 = ingest(write_old_avro(tmp_path / "v18.avro", alerts, "1.8"), tmp_path / "out")
    assert pq.read_table(r18.alerts).column("schemavsn").to_pylist() == ["1.8"] * 3
    assert pq.read_table(r18.alerts).column("sgscore1").to_pylist() == [None] * 3


def test_schema_1_1_alert_is_refused_with_its_version_and_the_others_ingested(tmp_path, astro):
    alerts = synthetic.make_alerts(2, seed=6)
    (tmp_path / "in").mkdir()
    write_old_avro(tmp_path / "in" / "old.avro", alerts, "1.1", alert_id=True)
    synthetic.write_avro(tmp_path / "in" / "new.avro", alerts)
    r = astro("--json", "-w", tmp_path / "ws", "ztf", "ingest", tmp_path / "in")
    assert r.returncode != 0
    assert "old.avro: alert schema 1.1: an early 1.x alert (alertId, no objectId, JPEG stamps)" in r.stderr
    assert json.loads(r.stdout[r.stdout.index("{"):])["schema_versions"] == alerts[0]["schemavsn"]
    assert pq.read_metadata(tmp_path / "ws" / "ztf" / "alerts" / "new_alerts.parquet").num_rows == 2
    assert not (tmp_path / "ws" / "ztf" / "alerts" / "old_alerts.parquet").exists()


def _tar(path: Path, members: dict) -> Path:
    import tarfile

    with tarfile.open(path, "w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def test_a_tar_archive_of_single_alert_files_is_one_table_and_bad_members_are_reported(tmp_path, astro):
    alerts = synthetic.make_alerts(4, seed=8)
    files = [synthetic.write_avro(tmp_path / f"a{i}.avro", [a]).read_bytes() for i, a in enumerate(alerts)]
    members = {"night/a0.avro": files[0], "night/a1.avro.gz": gzip.compress(files[1]),
               "night/broken.avro": files[2][:len(files[2]) // 2], "night/README.txt": b"ZTF public alerts",
               "night/a2.avro": files[2], "night/a3.avro": files[3]}
    corrupt = bytearray(gzip.compress(files[0]))
    corrupt[20:40] = bytes(b ^ 0xFF for b in corrupt[20:40])  # a gzipped member whose deflate data is corrupt
    members["night/corrupt.avro.gz"] = bytes(corrupt)
    tar = _tar(tmp_path / "ztf_public_20180601.tar.gz", members)
    r = astro("--json", "-w", tmp_path / "ws", "ztf", "ingest", tar)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout[r.stdout.index("{"):])["outputs"][0]
    assert out["format"] == "tar.gz" and out["alerts"].endswith("ztf_public_20180601_alerts.parquet")
    assert out["n_alerts"] == 4 and out["n_members_skipped"] == 2
    assert "night/broken.avro: truncated or corrupt Avro data" in out["members_skipped"]
    assert "night/corrupt.avro.gz: cannot read: " in out["members_skipped"]
    assert "2 archive member(s) that are not readable alerts left out: night/broken.avro" in r.stderr
    table = pq.read_table(out["alerts"]).to_pydict()
    assert table["candid"] == [a["candid"] for a in alerts]  # archive order
    stamps = read_stamps(out["stamps"])
    np.testing.assert_array_equal(stamps["science"][3], fits_image(alerts[3]["cutoutScience"]))
    # an archive of no readable alert, and a truncated archive, are refused by name; nothing is written
    bad = _tar(tmp_path / "bad.tar.gz", {"x.avro": b"not avro", "y.avro": files[0][:100]})
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(tar.read_bytes()[: tar.stat().st_size // 2])
    for path, msg in ((bad, "tar archive holds no readable Avro alert (2 member(s) skipped; first: x.avro"),
                      (cut, "truncated or corrupt tar archive")):
        with pytest.raises(InputError, match=re.escape(msg)):
            ingest(path, tmp_path / "out")
    assert not list((tmp_path / "out").glob("*.parquet"))


def _two_files_of_one_name(tmp_path):
    for i, src in enumerate(AVRO[:2], 1):
        (tmp_path / f"c{i}").mkdir()
        (tmp_path / f"c{i}" / "a.avro").write_bytes(src.read_bytes())
    return tmp_path / "c1" / "a.avro", tmp_path / "c2" / "a.avro"


def test_an_ingested_file_keeps_its_name_whatever_else_is_on_the_command_line(tmp_path, astro):
    c1, c2 = _two_files_of_one_name(tmp_path)
    ws = tmp_path / "ws"
    assert astro("-w", ws, "ztf", "ingest", c1, c2).returncode == 0
    for f in (c1, c2):
        r = astro("-w", ws, "ztf", "ingest", f)
        assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (ws / "ztf" / "alerts").glob("*.parquet")) == ["c1_a_alerts.parquet",
                                                                                 "c2_a_alerts.parquet"]


def test_a_file_of_a_taken_name_never_replaces_the_other_files_alerts(tmp_path, astro):
    c1, c2 = _two_files_of_one_name(tmp_path)
    ws = tmp_path / "ws"
    assert astro("-w", ws, "ztf", "ingest", c1).returncode == 0
    r = astro("-w", ws, "ztf", "ingest", c2)
    assert r.returncode == 0, r.stderr
    assert "--overwrite" not in r.stderr
    assert _source(ws, "a") == str(c1.resolve()) and _source(ws, "c2_a") == str(c2.resolve())
    r = astro("-w", ws, "--overwrite", "ztf", "ingest", c1, c2)   # together: each keeps its name
    assert r.returncode == 0, r.stderr
    assert _source(ws, "a") == str(c1.resolve()) and _source(ws, "c2_a") == str(c2.resolve())
    assert not (ws / "ztf" / "alerts" / "c1_a_alerts.parquet").exists()


def test_an_unreadable_or_incomplete_output_is_never_taken_by_another_file(tmp_path, astro):
    c1, c2 = _two_files_of_one_name(tmp_path)
    ws = tmp_path / "ws"
    assert astro("-w", ws, "ztf", "ingest", c1).returncode == 0
    stamps, alerts = ws / "ztf" / "stamps" / "a_stamps.h5", ws / "ztf" / "alerts" / "a_alerts.parquet"
    stamps.write_bytes(b"not an HDF5 file")
    r = astro("-w", ws, "ztf", "ingest", c2)
    assert r.returncode == 0, r.stderr
    assert stamps.read_bytes() == b"not an HDF5 file" and (ws / "ztf" / "alerts" / "c2_a_alerts.parquet").exists()
    # an alert table whose stamps file is missing: its name is taken too
    shutil = __import__("shutil")
    shutil.rmtree(ws / "ztf" / "stamps")
    before = alerts.read_bytes()
    (ws / "ztf" / "alerts" / "c2_a_alerts.parquet").unlink()
    r = astro("-w", ws, "ztf", "ingest", c2)
    assert r.returncode == 0, r.stderr
    assert alerts.read_bytes() == before and (ws / "ztf" / "alerts" / "c2_a_alerts.parquet").exists()


def test_a_moved_input_keeps_its_name(tmp_path, astro):
    import json

    src = tmp_path / "in"
    src.mkdir()
    (src / "0.avro").write_bytes(AVRO[0].read_bytes())
    ws = tmp_path / "ws"
    assert astro("-w", ws, "ztf", "ingest", src / "0.avro").returncode == 0
    moved = tmp_path / "elsewhere" / "night"
    moved.parent.mkdir()
    src.rename(moved)
    r = astro("--json", "-w", ws, "ztf", "ingest", moved / "0.avro")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["kept"] == 1
    assert [p.name for p in (ws / "ztf" / "alerts").glob("*.parquet")] == ["0_alerts.parquet"]


def test_a_copy_beside_its_original_gets_one_name_whatever_the_command_line(tmp_path, astro):
    """A copy ingested alone took its original's name by content, and with its original on the command line
    another: the same file under two names in two runs."""
    import json

    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "x.avro").write_bytes(AVRO[0].read_bytes())
    ws = tmp_path / "ws"
    assert astro("-w", ws, "ztf", "ingest", tmp_path / "a" / "x.avro").returncode == 0
    assert astro("-w", ws, "ztf", "ingest", tmp_path / "b" / "x.avro").returncode == 0
    names = sorted(p.name for p in (ws / "ztf" / "alerts").glob("*.parquet"))
    assert names == ["b_x_alerts.parquet", "x_alerts.parquet"]   # the original is still there: a file of its own
    r = astro("--json", "-w", ws, "ztf", "ingest", tmp_path / "a" / "x.avro", tmp_path / "b" / "x.avro")
    assert r.returncode == 0 and json.loads(r.stdout)["kept"] == 2, r.stderr
    assert sorted(p.name for p in (ws / "ztf" / "alerts").glob("*.parquet")) == names


def test_a_file_named_twice_is_ingested_once(tmp_path, astro):
    import json

    src = tmp_path / "in"
    src.mkdir()
    (src / "0.avro").write_bytes(AVRO[0].read_bytes())
    r = astro("--json", "-w", tmp_path / "ws", "ztf", "ingest", src / "0.avro", src / ".." / "in" / "0.avro", src)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["ingested"] == 1
    assert [p.name for p in (tmp_path / "ws" / "ztf" / "alerts").glob("*.parquet")] == ["0_alerts.parquet"]


def test_ingest_refuses_changed_settings_before_any_work(tmp_path, astro):
    src = tmp_path / "in"
    src.mkdir()
    for f in AVRO[:2]:
        (src / f.name).write_bytes(f.read_bytes())
    ws = tmp_path / "ws"
    assert astro("-w", ws, "-q", "ztf", "ingest", src / AVRO[0].name).returncode == 0
    err = _error(astro("-w", ws, "ztf", "ingest", src, "--stamp-size", 31))
    assert "ztf.ingest.stamp_size: 63 -> 31" in err and "--overwrite" in err
    assert len(list((ws / "ztf" / "alerts").glob("*.parquet"))) == 1


def test_an_even_stamp_size_is_refused(tmp_path, astro):
    err = _error(astro("-w", tmp_path / "ws", "ztf", "ingest", AVRO[0], "--stamp-size", 20))
    assert "stamp_size" in err and "odd" in err


def test_a_sharded_ingest_reports_its_own_files(tmp_path, astro):
    import json

    src = tmp_path / "in"
    src.mkdir()
    for i in range(4):
        (src / f"{i}.avro").write_bytes(AVRO[i % 2].read_bytes())
    r = astro("--json", "-w", tmp_path / "ws", "--shard", "0/2", "ztf", "ingest", src)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["files"] == 2 and out["ingested"] == 2


def test_a_shard_is_not_refused_over_another_shards_outputs(tmp_path, astro):
    import json

    src = tmp_path / "in"
    src.mkdir()
    for i in range(4):
        (src / f"{i}.avro").write_bytes(AVRO[i % 2].read_bytes())
    ws = tmp_path / "ws"
    assert astro("-w", ws, "--shard", "0/2", "ztf", "ingest", src, "--stamp-size", 31).returncode == 0
    r = astro("--json", "-w", ws, "--shard", "1/2", "ztf", "ingest", src)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["ingested"] == 2
    err = _error(astro("-w", ws, "--shard", "0/2", "ztf", "ingest", src))   # its own kept outputs still are
    assert "ztf.ingest.stamp_size: 31 -> 63" in err


def test_alerts_per_s_is_the_rate_of_the_files_ingested_in_this_run(tmp_path, astro):
    import json

    import h5py

    ws = tmp_path / "ws"
    first = json.loads(astro("--json", "-w", ws, "ztf", "ingest", AVRO[0]).stdout)
    assert first["ingested"] == 1 and first["alerts_per_s"] > 0
    again = json.loads(astro("--json", "-w", ws, "ztf", "ingest", AVRO[0]).stdout)
    assert again["kept"] == 1 and again["alerts_per_s"] is None   # nothing ingested: no rate of this run
    with h5py.File(ws / "ztf" / "stamps" / f"{AVRO[0].name[:-5]}_stamps.h5", "r+") as h5:
        h5.attrs["seconds"] = 1e6   # an earlier run's time, which is not this run's
    fink = SHARED / "fink_alerts.parquet"
    out = json.loads(astro("--json", "-w", ws, "ztf", "ingest", AVRO[0], fink).stdout)
    new = next(o for o in out["outputs"] if not o["skipped"])
    assert out["kept"] == 1 and out["ingested"] == 1
    assert out["alerts_per_s"] >= new["n_alerts"] / 60   # the new file over this run's wall clock
