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

Channels: ``flux`` is the co-added flux, shape ``(n,)``, or with
``channels="groups"`` the camera groups' fluxes and then the co-added flux,
shape ``(groups + 1, n)``. Group columns are ``flux_g1``, ``flux_g2``, ... (the
simulator's, and any table's), or a Panopticon Feather file's columns between
the time and the last. :func:`uniform` and :func:`relative_flux` treat each
channel alike.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np

from astrotool.errors import InputError

__docformat__ = "numpy"

TIME_COLUMNS = ("time", "TIME", "t", "BJD", "BTJD")
FLUX_COLUMNS = ("flux", "PDCSAP_FLUX", "SAP_FLUX", "FLUX", "coadd")
GROUP_PREFIX = "flux_g"
"""Camera-group flux columns are ``flux_g1``, ``flux_g2``, ..."""
CHANNELS = ("coadd", "groups")


def channels_of(n: int) -> str:
    """The :data:`CHANNELS` name of ``n`` flux channels: ``"coadd"`` for one, ``"groups"`` for more."""
    return "groups" if int(n) > 1 else "coadd"


def group_columns(names) -> list[str]:
    """The camera-group columns among ``names`` (``flux_g<k>``), in group order."""
    found = {int(n[len(GROUP_PREFIX):]): n for n in names
             if n.startswith(GROUP_PREFIX) and n[len(GROUP_PREFIX):].isdigit()}
    return [found[k] for k in sorted(found)]


def write_curves(path, rows, facts: dict, command: str, seed: int | None = None, groups: int = 0) -> Path:
    """Write curves to Parquet in long form, one row group per curve, atomically (the layout
    :func:`read_curves` reads as many curves).

    Columns: ``id`` (string), ``time`` [d] (float64), ``flux`` (normalised,
    float32), ``flux_err`` (white-noise sigma, float32), and ``flux_g1`` ...
    ``flux_g<groups>`` (float32) with camera groups. The schema metadata key
    ``astrotool`` holds ``facts`` (JSON; its ``ids`` lists the curves),
    ``provenance`` the core provenance record; ``table_meta_yaml`` the units and
    descriptions for ``astropy.table.Table.read``.

    Parameters
    ----------
    path : path-like
        Output ``.parquet`` file.
    rows : iterable of (str, numpy.ndarray, numpy.ndarray, float)
        ``(id, time [d], flux, flux_err)`` per curve; with ``groups``, ``flux`` has shape
        ``(groups + 1, n)``: the groups, then the co-added flux.
    facts : dict
        What the file holds; must list the curve ids under ``"ids"``.
    command : str
        The command named in the provenance record.
    seed : int, optional
        Recorded in the provenance.
    groups : int
        Camera groups written next to the co-added flux (0: none).
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
        *(pa.field(f"{GROUP_PREFIX}{g + 1}", pa.float32(), metadata={
            "unit": "", "description": f"normalised flux of camera group {g + 1}"}) for g in range(groups)),
    ], metadata={"astrotool": json.dumps(facts), **parquet_metadata(record)})
    schema = schema.with_metadata({**schema.metadata, **astropy_parquet_metadata(
        schema, meta={"provenance": record}, lengths={"id": max((len(i) for i in facts["ids"]), default=1)})})
    with atomic_path(path) as tmp:
        with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
            for cid, t, f, err in rows:
                t = np.asarray(t, np.float64)
                f = np.asarray(f, np.float32)
                if f.shape != ((groups + 1, t.size) if groups else t.shape):
                    raise ValueError(f"curve {cid}: flux of shape {f.shape} for {t.size} times and {groups} groups")
                writer.write_table(pa.table({
                    "id": pa.repeat(pa.scalar(cid, pa.string()), t.size),
                    "time": t,
                    "flux": f[-1] if groups else f,
                    "flux_err": np.full(t.size, err, dtype=np.float32),
                    **{f"{GROUP_PREFIX}{g + 1}": f[g] for g in range(groups)},
                }, schema=schema), row_group_size=max(1, t.size))
    return Path(path)


def _table(path: Path) -> dict[str, np.ndarray]:
    """The numeric columns of a one-curve table file, in file order."""
    name = path.name.lower()
    try:
        if name.endswith((".fits", ".fit", ".fits.gz")):
            from astropy.io import fits
            from astropy.table import Table

            with fits.open(path) as hdul:   # its own error for a file that is not FITS (not astropy's format list)
                t = Table.read(hdul, hdu=1)
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
        kinds = {c: table.schema.field(c).type for c in table.column_names}
        return {c: (np.full(table.num_rows, np.nan) if pa.types.is_null(k)   # a CSV column with no value at all
                    else table.column(c).to_numpy(zero_copy_only=False).astype(np.float64))
                for c, k in kinds.items() if pa.types.is_null(k) or pa.types.is_integer(k) or pa.types.is_floating(k)}
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
    """Refuse a curve a model cannot read: unequal lengths, times not increasing, no finite flux, a median
    flux not above 0 (relative flux is flux over its median).

    Raises
    ------
    astrotool.errors.InputError
        Naming ``where`` (a file, or ``file: curve``) and the problem.
    """
    if time.ndim != 1 or flux.ndim not in (1, 2) or flux.shape[-1:] != time.shape or time.size < 2:
        raise InputError(where, f"time must be 1-D of length >= 2 and flux end in the same length, got "
                                f"{time.shape} and {flux.shape}")
    if not np.isfinite(time).all():
        raise InputError(where, f"{int((~np.isfinite(time)).sum())} time stamp(s) are NaN or infinite")
    step = np.diff(time)
    if (step <= 0).any():
        k = int(np.flatnonzero(step <= 0)[0])
        raise InputError(where, f"time is not increasing: sample {k + 1} ({time[k + 1]:.10g}) follows "
                                f"{time[k]:.10g}")
    for c, row in enumerate(np.atleast_2d(flux)):
        channel = f" in channel {c} of {flux.shape[0]}" if flux.ndim == 2 else ""
        if not np.isfinite(row).any():
            raise InputError(where, f"the flux is NaN or infinite everywhere{channel}")
        level = float(np.median(row[np.isfinite(row)]))
        if level <= 0:
            raise InputError(where, f"the median flux is {level:g}{channel}: not a flux level (a relative flux "
                                    "about 0 needs 1 added)")


def read_curves(path, time_column: str = "", flux_column: str = "", time_unit: str = "d",
                channels: str = "coadd") -> dict[str, tuple]:
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
    channels : {"coadd", "groups"}
        The co-added flux only, shape ``(n,)``, or the camera groups then the
        co-added flux, shape ``(groups + 1, n)`` (module docstring).

    Raises
    ------
    astrotool.errors.InputError
        Missing file or column (camera groups included), unreadable file, time
        not increasing, all-NaN flux, a median flux not above 0.
    """
    if channels not in CHANNELS:
        raise ValueError(f"channels: {channels!r} is not one of {CHANNELS}")
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "is a folder, not a light-curve file" if path.is_dir() else "no such light-curve file")
    if path.name.endswith(".parquet"):
        from astrotool.io.tables import parquet_metadata

        try:
            meta = parquet_metadata(path)
        except InputError:   # not Parquet: _table names the problem
            meta = {}
        if "ids" in meta:  # the simulator's multi-curve layout
            from astrotool_plato.simulate import read_lightcurves

            curves = {cid: (t, f.astype(np.float64)) for cid, (t, f, _) in read_lightcurves(path, channels).items()}
            for cid, (t, f) in curves.items():
                check_curve(t, f, f"{path}: {cid}")
            return curves
    cols = _table(path)
    tc = _pick(cols, time_column, TIME_COLUMNS, path, "time")
    valued = [c for c in cols if np.isfinite(cols[c]).any()]   # a column with no value is no one's flux
    if not flux_column and not any(c in cols for c in FLUX_COLUMNS) and path.suffix in (".ftr", ".feather"):
        rest = [c for c in valued if c != tc]
        flux_column = rest[-1] if rest else ""
    fc = _pick(cols, flux_column, FLUX_COLUMNS, path, "flux")
    time = cols[tc] / (86400.0 if time_unit == "s" else 1.0)
    flux = cols[fc]
    if channels == "groups":
        names = group_columns(cols)
        if not names and path.suffix in (".ftr", ".feather"):  # Panopticon: the columns between time and co-add
            names = [c for c in valued if c not in (tc, fc)]
        if not names:
            raise InputError(path, f"no camera-group columns ({GROUP_PREFIX}1, {GROUP_PREFIX}2, ...; numeric "
                                   f"columns: {', '.join(cols)}); the model reads channels = \"groups\"")
        flux = np.vstack([cols[c] for c in names] + [flux])
    check_curve(time, flux, str(path))
    return {path.name.split(".")[0]: (time, flux)}


def _on_grid(time: np.ndarray, step: float) -> bool:
    return bool(np.all(np.abs(np.diff(time) - step) < 1e-3 * step))


def grid_size(time: np.ndarray, cadence: float | None = None) -> int:
    """Samples of :func:`uniform`'s grid for these times (without computing it).

    Parameters
    ----------
    time : numpy.ndarray
        Increasing times [d].
    cadence : float, optional
        Grid step [d]; default: the median step of ``time``.
    """
    step = float(np.median(np.diff(time))) if cadence is None else float(cadence)
    if _on_grid(time, step):
        return int(time.size)
    return int(np.floor((time[-1] - time[0]) / step + 1e-9)) + 1


def uniform(time: np.ndarray, flux: np.ndarray, cadence: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The curve on a uniform grid ``time[0] + k * cadence``; samples in gaps are NaN.

    Parameters
    ----------
    time : numpy.ndarray
        Increasing times [d].
    flux : numpy.ndarray
        Flux at those times, ``(n,)`` or ``(channels, n)`` (each channel alike).
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
    if _on_grid(time, step):
        return time, flux
    if flux.ndim == 2:
        rows = [uniform(time, row, step) for row in flux]
        return rows[0][0], np.vstack([f for _, f in rows])
    ratio = step / native
    if ratio >= 1.5:
        w = int(round(ratio))
        good = np.isfinite(flux)
        kernel = np.ones(w)
        num = np.convolve(np.where(good, flux, 0.0), kernel, mode="same")
        den = np.convolve(good.astype(float), kernel, mode="same")
        flux = np.where(den > 0, num / np.maximum(den, 1), np.nan)
    grid = time[0] + step * np.arange(grid_size(time, step))
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

    Parameters
    ----------
    flux : numpy.ndarray
        ``(n,)`` or ``(channels, n)`` (each channel alike).

    Returns
    -------
    x : numpy.ndarray
        Relative flux (float64), the shape of ``flux``.
    filled : int
        How many samples were not finite and were interpolated over (at the
        ends: the nearest finite value); over all channels.
    """
    if flux.ndim == 2:
        rows = [relative_flux(row) for row in flux]
        return np.vstack([x for x, _ in rows]), sum(n for _, n in rows)
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
