"""Reading light curves from the files astronomers have, and putting them on a uniform time grid.

:func:`read_curves` reads

* the simulator's Parquet files (many curves, ``id``, ``time`` [d], ``flux``);
* Feather (Panopticon/PLATOnium ``simNNNNN_QK.ftr``: ``time`` in seconds, one
  flux column per camera group, the co-added flux last), Parquet and CSV tables
  of one curve;
* FITS binary tables (TESS/Kepler style: ``TIME``, ``PDCSAP_FLUX`` or ``SAP_FLUX``).

Every curve comes back as ``(time [d], flux)`` with the problems a network
would silently learn from refused by name: a missing column, times that are not
increasing, a curve whose flux is all NaN.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np

from astrotool.errors import InputError

__docformat__ = "numpy"

TIME_COLUMNS = ("time", "TIME", "t", "BJD", "BTJD")
FLUX_COLUMNS = ("flux", "PDCSAP_FLUX", "SAP_FLUX", "FLUX", "coadd")


def write_curves(path, rows, facts: dict, command: str, seed: int | None = None) -> Path:
    """Write curves to Parquet in long form, one row group per curve, atomically (the layout
    :func:`read_curves` reads as many curves).

    Columns: ``id`` (string), ``time`` [d] (float64), ``flux`` (normalised,
    float32), ``flux_err`` (white-noise sigma, float32). The schema metadata key
    ``astrotool`` holds ``facts`` (JSON; its ``ids`` lists the curves),
    ``provenance`` the core provenance record; ``table_meta_yaml`` the units and
    descriptions for ``astropy.table.Table.read``.

    Parameters
    ----------
    path : path-like
        Output ``.parquet`` file.
    rows : iterable of (str, numpy.ndarray, numpy.ndarray, float)
        ``(id, time [d], flux, flux_err)`` per curve.
    facts : dict
        What the file holds; must list the curve ids under ``"ids"``.
    command : str
        The command named in the provenance record.
    seed : int, optional
        Recorded in the provenance.
    """
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    from astrotool.io.tables import astropy_parquet_metadata
    from astrotool.provenance import parquet_metadata, provenance
    from astrotool.workspace import atomic_path

    record = provenance(command, seed=seed)
    schema = pa.schema([
        pa.field("id", pa.string(), metadata={"description": "curve identifier"}),
        pa.field("time", pa.float64(), metadata={"unit": "d", "description": "time since start of observation"}),
        pa.field("flux", pa.float32(), metadata={"unit": "", "description": "normalised flux, 1 = unperturbed star"}),
        pa.field("flux_err", pa.float32(), metadata={"unit": "", "description": "1-sigma white noise per cadence"}),
    ], metadata={"astrotool": json.dumps(facts), **parquet_metadata(record)})
    schema = schema.with_metadata({**schema.metadata, **astropy_parquet_metadata(
        schema, meta={"provenance": record}, lengths={"id": max((len(i) for i in facts["ids"]), default=1)})})
    with atomic_path(path) as tmp:
        with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
            for cid, t, f, err in rows:
                t = np.asarray(t, np.float64)
                writer.write_table(pa.table({
                    "id": pa.repeat(pa.scalar(cid, pa.string()), t.size),
                    "time": t,
                    "flux": np.asarray(f, np.float32),
                    "flux_err": np.full(t.size, err, dtype=np.float32),
                }, schema=schema), row_group_size=max(1, t.size))
    return Path(path)


def _table(path: Path) -> dict[str, np.ndarray]:
    """The numeric columns of a one-curve table file, in file order."""
    name = path.name.lower()
    try:
        if name.endswith((".fits", ".fit", ".fits.gz")):
            from astropy.table import Table

            t = Table.read(path, hdu=1)
            return {c: np.asarray(t[c].filled(np.nan) if hasattr(t[c], "filled") else t[c], dtype=np.float64)
                    for c in t.colnames if t[c].ndim == 1 and t[c].dtype.kind in "fiu"}
        import pyarrow as pa

        if name.endswith((".ftr", ".feather")):
            import pyarrow.feather as feather

            table = feather.read_table(path)
        elif name.endswith(".csv"):
            import pyarrow.csv as pcsv

            table = pcsv.read_csv(path)
        else:
            import pyarrow.parquet as pq

            table = pq.read_table(path)
        return {c: table.column(c).to_numpy(zero_copy_only=False).astype(np.float64)
                for c in table.column_names
                if pa.types.is_integer(table.schema.field(c).type) or pa.types.is_floating(table.schema.field(c).type)}
    except InputError:
        raise
    except Exception as exc:  # unreadable or not the format its name says
        raise InputError(path, f"unreadable light curve ({type(exc).__name__}: {exc})") from None


def _pick(columns: Mapping[str, np.ndarray], wanted: str, defaults, path: Path, what: str) -> str:
    if wanted:
        if wanted not in columns:
            raise InputError(path, f"no numeric {what} column {wanted!r} (numeric columns: {', '.join(columns)})")
        return wanted
    for c in defaults:
        if c in columns:
            return c
    raise InputError(path, f"no {what} column (looked for {', '.join(defaults)}; numeric columns: "
                           f"{', '.join(columns) or 'none'}); name it with --{what}-column")


def check_curve(time: np.ndarray, flux: np.ndarray, where: str) -> None:
    """Refuse a curve a model cannot read: unequal lengths, times not increasing, no finite flux.

    Raises
    ------
    astrotool.errors.InputError
        Naming ``where`` (a file, or ``file: curve``) and the problem.
    """
    if time.shape != flux.shape or time.ndim != 1 or time.size < 2:
        raise InputError(where, f"time and flux must be 1-D of equal length >= 2, got {time.shape} and {flux.shape}")
    if not np.isfinite(time).all():
        raise InputError(where, f"{int((~np.isfinite(time)).sum())} time stamp(s) are NaN or infinite")
    step = np.diff(time)
    if (step <= 0).any():
        k = int(np.flatnonzero(step <= 0)[0])
        raise InputError(where, f"time is not increasing: sample {k + 1} ({time[k + 1]!r}) follows {time[k]!r}")
    if not np.isfinite(flux).any():
        raise InputError(where, "the flux is NaN or infinite everywhere")


def read_curves(path, time_column: str = "", flux_column: str = "", time_unit: str = "d") -> dict[str, tuple]:
    """Every light curve of a file, as ``{id: (time [d], flux)}``.

    Parameters
    ----------
    path : path-like
        A simulator Parquet file (several curves), or a one-curve Feather,
        Parquet, CSV or FITS table (its id is the file stem).
    time_column, flux_column : str
        Column names (default: the first of :data:`TIME_COLUMNS` and
        :data:`FLUX_COLUMNS` present; for Feather without those, the last
        numeric column is Panopticon's co-added flux).
    time_unit : {"d", "s"}
        Unit of a one-curve table's time column (Panopticon's Feather files: ``s``).

    Raises
    ------
    astrotool.errors.InputError
        Missing file or column, unreadable file, time not increasing, all-NaN flux.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such light-curve file")
    if path.name.endswith(".parquet"):
        from astrotool.io.tables import parquet_metadata

        if "ids" in (parquet_metadata(path) or {}):  # the simulator's multi-curve layout
            from astrotool_plato.simulate import read_lightcurves

            curves = {cid: (t, f.astype(np.float64)) for cid, (t, f, _) in read_lightcurves(path).items()}
            for cid, (t, f) in curves.items():
                check_curve(t, f, f"{path}: {cid}")
            return curves
    cols = _table(path)
    tc = _pick(cols, time_column, TIME_COLUMNS, path, "time")
    if not flux_column and not any(c in cols for c in FLUX_COLUMNS) and path.suffix in (".ftr", ".feather"):
        flux_column = [c for c in cols if c != tc][-1] if len(cols) > 1 else ""
    fc = _pick(cols, flux_column, FLUX_COLUMNS, path, "flux")
    time = cols[tc] / (86400.0 if time_unit == "s" else 1.0)
    check_curve(time, cols[fc], str(path))
    return {path.name.split(".")[0]: (time, cols[fc])}


def uniform(time: np.ndarray, flux: np.ndarray, cadence: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The curve on a uniform grid ``time[0] + k * cadence``; samples in gaps are NaN.

    Parameters
    ----------
    time : numpy.ndarray
        Increasing times [d].
    flux : numpy.ndarray
        Flux at those times.
    cadence : float, optional
        Grid step [d]; default: the median step of ``time``.

    Returns
    -------
    time, flux : numpy.ndarray
        The grid, and the flux linearly interpolated on it; grid points farther
        than one cadence from every sample are NaN (a gap, to be filled). On a
        grid coarser than the samples (ratio ``r >= 1.5``) the flux is first
        averaged over ``round(r)`` neighbouring samples, so each grid point
        stands for about one grid step of data rather than one sample.
    """
    native = float(np.median(np.diff(time)))
    step = native if cadence is None else float(cadence)
    if np.all(np.abs(np.diff(time) - step) < 1e-3 * step):
        return time, flux
    ratio = step / native
    if ratio >= 1.5:
        w = int(round(ratio))
        good = np.isfinite(flux)
        kernel = np.ones(w)
        num = np.convolve(np.where(good, flux, 0.0), kernel, mode="same")
        den = np.convolve(good.astype(float), kernel, mode="same")
        flux = np.where(den > 0, num / np.maximum(den, 1), np.nan)
    grid = time[0] + step * np.arange(int(np.floor((time[-1] - time[0]) / step + 1e-9)) + 1)
    good = np.isfinite(flux)
    out = np.interp(grid, time[good], flux[good])
    k = np.clip(np.searchsorted(time, grid), 1, time.size - 1)
    nearest = np.minimum(np.abs(grid - time[k - 1]), np.abs(time[k] - grid))
    out[nearest > step * 1.01] = np.nan
    return grid, out


def noise_sigma(x: np.ndarray) -> float:
    """White-noise sigma from the point-to-point scatter: ``1.4826 MAD(diff(x)) / sqrt(2)`` (robust to trends
    and transits)."""
    d = np.diff(x)
    return float(1.4826 * np.median(np.abs(d - np.median(d))) / np.sqrt(2.0))


def relative_flux(flux: np.ndarray) -> tuple[np.ndarray, int]:
    """``flux / median - 1`` with its NaN/inf samples filled by linear interpolation.

    Returns
    -------
    x : numpy.ndarray
        Relative flux (float64).
    filled : int
        How many samples were not finite and were interpolated over (at the
        ends: the nearest finite value).
    """
    good = np.isfinite(flux)
    if not good.any():
        raise ValueError("no finite flux")
    med = float(np.median(flux[good]))
    if med == 0:
        raise ValueError("the median flux is 0: not a flux")
    x = flux / med - 1.0
    filled = int(good.size - good.sum())
    if filled:
        idx = np.arange(x.size)
        x = np.interp(idx, idx[good], x[good])
    return x, filled
