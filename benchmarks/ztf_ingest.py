"""Benchmark: alerts/s of ``astro ztf ingest`` against a minimal decode loop.

Prints, all measured in this run:

(a) alerts/s of the plugin's ingest (:func:`astrotool_ztf.ingest.ingest_file`,
    what each ``astro ztf ingest`` task runs: read, decode the three stamps,
    build the alert table with history, write Parquet and LZF-compressed HDF5)
    on an Avro container of ``--alerts`` synthetic alerts: ``--distinct``
    alerts of the plugin's synthetic module (gzipped FITS stamps, as ZTF's),
    replicated with new candids in a temporary folder;
(b) alerts/s of the baseline "minimal loop" on the same file: fastavro read,
    gzip + astropy.io.fits decode of each stamp, candidate fields copied into
    row dicts, stamp arrays in lists, nothing written; and the ratio (a)/(b);
(c) the same two on the same alerts as single-alert Avro files in a nightly
    ``tar.gz`` archive (ZTF's public archive layout), ingested as one input;
(d) the same two on the shared sample alerts (real ZTF Avro packets and Fink
    Parquet dumps) when they are found (``$ASTRO_SHARED_DATA/ztf`` or
    ``../shared/data/ztf``); the baseline reads the Parquet dumps with pyarrow.

Run: ``python benchmarks/ztf_ingest.py [--alerts 2000] [--distinct 100] [--repeat 1]``; ``--quick`` is a
smoke run of a few seconds (200 alerts, 20 distinct).
"""

from __future__ import annotations

import argparse
import gzip
import io
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
for extra in (ROOT, ROOT / "plugins" / "ztf"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

from astrotool_ztf import synthetic  # noqa: E402
from astrotool_ztf.config import IngestConfig  # noqa: E402
from astrotool_ztf.demo import shared_ztf_data  # noqa: E402
from astrotool_ztf.ingest import CANDIDATE_COLUMNS, expand_inputs, ingest_file  # noqa: E402
from _cli import count  # noqa: E402 - beside this script

BASELINE = "minimal loop (fastavro read + gzip + astropy.io.fits per stamp + row dicts, no output)"
CUTOUTS = ("cutoutScience", "cutoutTemplate", "cutoutDifference")


def make_input(path: Path, n_alerts: int, distinct: int) -> Path:
    """Write ``n_alerts`` synthetic alerts (``distinct`` ones repeated with new ids) to one Avro file.

    The file is uncompressed (Avro ``null`` codec, as ZTF's alert packets are);
    the stamps inside are gzipped FITS.

    Parameters
    ----------
    path : pathlib.Path
        Output ``.avro`` file.
    n_alerts : int
        Alerts in the file.
    distinct : int
        Alerts generated (FITS stamps encoded); the rest are copies with new candid/objectId.
    """
    base = synthetic.make_alerts(distinct, seed=7341)   # a seed no test uses
    alerts = []
    for i in range(n_alerts):
        src = base[i % distinct]
        rep = i // distinct
        alerts.append({**src, "candid": src["candid"] + 1_000_000 * rep,
                       "objectId": f"{src['objectId']}r{rep:03d}",
                       "candidate": {**src["candidate"], "candid": src["candid"] + 1_000_000 * rep}})
    import fastavro

    with open(path, "wb") as fh:
        fastavro.writer(fh, fastavro.parse_schema(synthetic.alert_schema()), alerts, codec="null")
    return path


def make_archive(container: Path, path: Path) -> Path:
    """The alerts of ``container`` as one single-alert Avro file each in a gzipped tar archive, the layout of
    ZTF's nightly public archives (``ztf_public_YYYYMMDD.tar.gz``)."""
    import fastavro
    import tarfile

    with open(container, "rb") as fh:
        reader = fastavro.reader(fh)
        schema = reader.writer_schema
        alerts = list(reader)
    with tarfile.open(path, "w:gz") as tf:
        for a in alerts:
            buf = io.BytesIO()
            fastavro.writer(buf, schema, [a], codec="null")
            info = tarfile.TarInfo(f"{a['candid']}.avro")
            info.size = buf.tell()
            buf.seek(0)
            tf.addfile(info, buf)
    return path


def _read_records(path: Path):
    """Alert dicts of an Avro (fastavro), Parquet (pyarrow) or tar archive of Avro files."""
    if path.name.endswith(".tar.gz"):
        import fastavro
        import tarfile

        with tarfile.open(path, "r|gz") as tf:
            for member in tf:
                yield from fastavro.reader(io.BytesIO(tf.extractfile(member).read()))
        return
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        cols = [c for c in ("objectId", "candid", "candidate", *CUTOUTS) if c in table.column_names]
        yield from table.select(cols).to_pylist()
        return
    import fastavro

    with open(path, "rb") as fh:
        yield from fastavro.reader(fh)


def _stamp(data) -> np.ndarray:
    from astropy.io import fits

    with fits.open(io.BytesIO(gzip.decompress(data)), memmap=False) as hdul:
        return np.array(hdul[0].data, dtype=np.float32)


def baseline(path: Path) -> int:
    """The minimal ingest loop; returns the number of alerts read.

    Parameters
    ----------
    path : pathlib.Path
        Avro or Parquet alert file.
    """
    names = [name for name, _ in CANDIDATE_COLUMNS]
    rows, stamps = [], {c: [] for c in CUTOUTS}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for rec in _read_records(path):
            cand = rec["candidate"]
            row = {"objectId": rec["objectId"], "candid": rec.get("candid") or cand.get("candid")}
            row.update({name: cand.get(name) for name in names})
            rows.append(row)
            for c in CUTOUTS:
                stamps[c].append(_stamp(rec[c]["stampData"]))
    assert all(len(v) == len(rows) for v in stamps.values())
    return len(rows)


def time_plugin(files: list[Path], out: Path, repeat: int) -> tuple[float, int]:
    """Best wall time of ingesting ``files`` with the plugin, and the number of alerts."""
    best, n = np.inf, 0
    for _ in range(repeat):
        t = time.perf_counter()
        n = 0
        for f in files:
            r = ingest_file(f, out / f"{f.stem}_alerts.parquet", out / f"{f.stem}_stamps.h5", IngestConfig(),
                            overwrite=True)
            n += r.n_alerts
        best = min(best, time.perf_counter() - t)
    return best, n


def time_baseline(files: list[Path], repeat: int) -> tuple[float, int]:
    """Best wall time of the baseline loop over ``files``, and the number of alerts."""
    best, n = np.inf, 0
    for _ in range(repeat):
        t = time.perf_counter()
        n = sum(baseline(f) for f in files)
        best = min(best, time.perf_counter() - t)
    return best, n


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    ap.add_argument("--alerts", type=count(), default=2000, help="synthetic alerts in the benchmark file")
    ap.add_argument("--distinct", type=count(), default=100, help="distinct synthetic alerts (then replicated)")
    ap.add_argument("--repeat", type=count(), default=1, help="timed runs of each (best is kept)")
    ap.add_argument("--quick", action="store_true", help="smoke-run sizes: --alerts 200 --distinct 20")
    args = ap.parse_args(argv)
    if args.quick:
        args.alerts = 200 if args.alerts == ap.get_default("alerts") else args.alerts
        args.distinct = 20 if args.distinct == ap.get_default("distinct") else args.distinct

    import astropy
    import fastavro

    print(f"# ztf ingest benchmark  (fastavro {fastavro.__version__}, astropy {astropy.__version__}, "
          f"{os.cpu_count()} CPUs visible; load average {os.getloadavg()[0]:.2f} at start: "
          "other processes share these CPUs)")
    with tempfile.TemporaryDirectory(prefix="astro-bench-ztf-") as tmp:
        tmp = Path(tmp)
        t = time.perf_counter()
        src = make_input(tmp / "synthetic_alerts.avro", args.alerts, args.distinct)
        print(f"input: {args.alerts} synthetic alerts ({args.distinct} distinct, 3 gzipped 63x63 FITS stamps each) "
              f"in one Avro file of {src.stat().st_size / 1e6:.1f} MB, written in {time.perf_counter() - t:.1f} s")
        warm = make_input(tmp / "warm.avro", 20, 20)          # imports and first calls, untimed
        ingest_file(warm, tmp / "warm_alerts.parquet", tmp / "warm_stamps.h5", IngestConfig(), overwrite=True)
        baseline(warm)
        t_b, n_b = time_baseline([src], args.repeat)
        t_p, n_p = time_plugin([src], tmp, args.repeat)
        assert n_b == n_p == args.alerts, (n_b, n_p)
        rate, rate_b = n_p / t_p, n_b / t_b
        print(f"(a) plugin ingest_file (Parquet + HDF5 written): {rate:.0f} alerts/s ({t_p:.1f} s)")
        print(f"(b) baseline {BASELINE}: {rate_b:.0f} alerts/s ({t_b:.1f} s); plugin/baseline = {rate / rate_b:.2f}x")
        t = time.perf_counter()
        night = make_archive(src, tmp / "ztf_public_night.tar.gz")
        print(f"(c) the same alerts as single-alert Avro files in a nightly tar.gz archive "
              f"({night.stat().st_size / 1e6:.1f} MB, written in {time.perf_counter() - t:.1f} s):")
        ta_b, na_b = time_baseline([night], args.repeat)
        ta_p, na_p = time_plugin([night], tmp, args.repeat)
        assert na_b == na_p == args.alerts, (na_b, na_p)
        print(f"    plugin (one table) {na_p / ta_p:.0f} alerts/s, baseline (tarfile + the loop) {na_b / ta_b:.0f} "
              f"alerts/s; plugin/baseline = {ta_b / ta_p:.2f}x")

        shared = shared_ztf_data()
        if shared is None:
            print("(d) shared sample alerts: not found (set ASTRO_SHARED_DATA); skipped")
        else:
            files = expand_inputs([shared])
            ts_b, ns_b = time_baseline(files, 2)
            ts_p, ns_p = time_plugin(files, tmp, 2)
            assert ns_b == ns_p, (ns_b, ns_p)
            print(f"(d) shared sample alerts ({len(files)} files, {ns_p} alerts, {shared}): plugin "
                  f"{ns_p / ts_p:.0f} alerts/s, baseline {ns_b / ts_b:.0f} alerts/s; "
                  f"plugin/baseline = {ts_b / ts_p:.2f}x")
    print(f"ztf ingest: {rate:.0f} alerts/s = {rate / rate_b:.2f}x the {BASELINE} ({rate_b:.0f} alerts/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
