"""Synthetic ZTF-like alerts, for the demo and tests when no real alerts are at hand.

The packets follow the layout of the ZTF alert schema (a subset of the
``candidate`` fields, ``prv_candidates``, and three cutouts whose ``stampData``
is a gzip-compressed FITS image): a Gaussian point source on a noisy sky in
the science and difference stamps, the same source fainter in the template.
"""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import numpy as np

__docformat__ = "numpy"

_CANDIDATE = [("jd", "double"), ("fid", "int"), ("pid", "long"), ("candid", "long"), ("magpsf", "float"),
              ("sigmapsf", "float"), ("diffmaglim", ["null", "float"]), ("isdiffpos", "string"),
              ("ra", "double"), ("dec", "double"), ("fwhm", ["null", "float"]), ("rb", ["null", "float"]),
              ("ndethist", "int"), ("ncovhist", "int")]
_PRV = [("jd", "double"), ("fid", "int"), ("candid", ["null", "long"]), ("magpsf", ["null", "float"]),
        ("sigmapsf", ["null", "float"]), ("diffmaglim", ["null", "float"]), ("isdiffpos", ["null", "string"])]


def alert_schema() -> dict:
    """Avro schema of the synthetic alerts (``ztf.alert``, a subset of the real one)."""
    def fields(spec):
        return [{"name": n, "type": t} for n, t in spec]

    cutout = {"type": "record", "name": "cutout", "namespace": "ztf.alert",
              "fields": [{"name": "fileName", "type": "string"}, {"name": "stampData", "type": "bytes"}]}
    return {
        "type": "record", "name": "alert", "namespace": "ztf",
        "fields": [
            {"name": "schemavsn", "type": "string"},
            {"name": "publisher", "type": "string"},
            {"name": "objectId", "type": "string"},
            {"name": "candid", "type": "long"},
            {"name": "candidate", "type": {"type": "record", "name": "candidate", "namespace": "ztf.alert",
                                           "fields": fields(_CANDIDATE)}},
            {"name": "prv_candidates", "type": ["null", {"type": "array", "items": {
                "type": "record", "name": "prv_candidate", "namespace": "ztf.alert", "fields": fields(_PRV)}}]},
            {"name": "cutoutScience", "type": ["null", cutout]},
            {"name": "cutoutTemplate", "type": ["null", "ztf.alert.cutout"]},
            {"name": "cutoutDifference", "type": ["null", "ztf.alert.cutout"]},
        ],
    }


def fits_stamp(image: np.ndarray) -> bytes:
    """A 2-D image as gzip-compressed FITS bytes (big-endian float32, as ZTF writes them)."""
    from astropy.io import fits

    buf = io.BytesIO()
    fits.PrimaryHDU(np.asarray(image, dtype=">f4")).writeto(buf)
    return gzip.compress(buf.getvalue(), mtime=0)


def _blob(rng, size: int, flux: float, sky: float, noise: float, fwhm: float, shape=None) -> np.ndarray:
    h, w = shape or (size, size)
    y, x = np.mgrid[:h, :w]
    sigma = fwhm / 2.3548
    cy, cx = (h - 1) / 2 + rng.normal(0, 0.3), (w - 1) / 2 + rng.normal(0, 0.3)
    psf = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * sigma**2)) / (2 * np.pi * sigma**2)
    return (sky + flux * psf + rng.normal(0, noise, (h, w))).astype(np.float32)


def make_alerts(n: int = 3, seed: int = 0, size: int = 63, small_stamp: int | None = None) -> list[dict]:
    """Synthetic alert packets as Python dicts (the form fastavro reads and writes).

    Parameters
    ----------
    n : int
        Number of alerts.
    seed : int
        Random seed.
    size : int
        Stamp side [pixels].
    small_stamp : int, optional
        Index of an alert whose stamps are one column narrower (an edge cutout).
    """
    rng = np.random.default_rng(seed)
    alerts = []
    for i in range(n):
        candid = 1_000_000_000_000_000_000 + 1000 * seed + i
        mag = float(rng.uniform(16.0, 20.0))
        fwhm = float(rng.uniform(1.8, 3.0))
        flux = 10 ** (-0.4 * (mag - 26.0))
        shape = (size, size - 1) if i == small_stamp else None
        sci = _blob(rng, size, flux, 100.0, 5.0, fwhm, shape)
        ref = _blob(rng, size, 0.3 * flux, 100.0, 2.0, fwhm, shape)
        diff = sci - ref
        jd = 2460000.5 + i * 0.7
        prv = [{"jd": jd - 3.0 * (k + 1), "fid": 1 + k % 2, "candid": None if k % 2 else candid - 10 - k,
                "magpsf": None if k % 2 else mag + 0.2, "sigmapsf": None if k % 2 else 0.08,
                "diffmaglim": 20.5, "isdiffpos": None if k % 2 else "t"} for k in range(i)]
        alerts.append({
            "schemavsn": "3.3", "publisher": "astrotool synthetic",
            "objectId": f"ZTF99syn{seed:03d}{i:04d}", "candid": candid,
            "candidate": {"jd": jd, "fid": 1 + i % 2, "pid": candid // 1000, "candid": candid,
                          "magpsf": mag, "sigmapsf": float(rng.uniform(0.03, 0.15)), "diffmaglim": 20.5,
                          "isdiffpos": "t", "ra": float(rng.uniform(0, 360)), "dec": float(rng.uniform(-30, 90)),
                          "fwhm": fwhm, "rb": float(rng.uniform(0.5, 1.0)), "ndethist": i + 1, "ncovhist": 2 * i + 3},
            "prv_candidates": prv or None,
            "cutoutScience": {"fileName": f"candid{candid}_sci.fits.gz", "stampData": fits_stamp(sci)},
            "cutoutTemplate": {"fileName": f"candid{candid}_ref.fits.gz", "stampData": fits_stamp(ref)},
            "cutoutDifference": {"fileName": f"candid{candid}_diff.fits.gz", "stampData": fits_stamp(diff)},
        })
    return alerts


def write_avro(path, alerts: list[dict]) -> Path:
    """Write alerts as one Avro container file (deflate codec)."""
    import fastavro

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        fastavro.writer(fh, fastavro.parse_schema(alert_schema()), alerts, codec="deflate")
    return path


def write_parquet(path, alerts: list[dict], labels: dict | None = None) -> Path:
    """Write alerts as a broker-style Parquet dump (nested columns), with optional label columns."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist(alerts)
    for name, values in (labels or {}).items():
        table = table.append_column(name, pa.array(values))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path
