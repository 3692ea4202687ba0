"""Reading light curves from the files astronomers have, and putting them on a uniform time grid.

:func:`read_curves` reads

* the simulator's Parquet files (many curves, ``id``, ``time`` [d], ``flux``);
* Feather (Panopticon/PLATOnium ``simNNNNN_QK.ftr``: ``time`` in seconds, one
  flux column per camera group, the co-added flux last), Parquet and CSV tables
  of one curve;
* FITS binary tables (TESS/Kepler style: ``TIME``, ``PDCSAP_FLUX`` or ``SAP_FLUX``).

Every curve comes back as ``(time [d], flux)`` with the problems a network
would silently learn from refused by name: a missing or non-numeric column,
times that are not increasing, a curve whose flux is all NaN. Rows without a
finite time and cadences flagged in a ``QUALITY`` column are dropped (the
latter unless ``quality = "keep"``). :func:`check_time_scale` refuses, before
resampling, a time axis in another unit than the one given.

Channels: ``flux`` is the co-added flux, shape ``(n,)``, or with
``channels="groups"`` the camera groups' fluxes and then the co-added flux,
shape ``(groups + 1, n)``. Group columns are ``flux_g1``, ``flux_g2``, ... (the
simulator's, and any table's), or a Panopticon Feather file's columns between
the time and the last. :func:`uniform` and :func:`relative_flux` treat each
channel alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from astrotool.errors import InputError

__docformat__ = "numpy"

TIME_COLUMNS = ("time", "TIME", "t", "BJD", "BTJD")
"""Time columns looked for, in this order, when none is named."""
FLUX_COLUMNS = ("flux", "PDCSAP_FLUX", "SAP_FLUX", "FLUX", "coadd")
"""Flux columns looked for, in this order, when none is named."""
ID_COLUMNS = ("id", "curve_id", "star_id", "object_id")
"""Columns (in any case) that name a table's curve: one holding several values, each on two rows or more on
average, is refused (one file, one curve; the simulator's multi-curve files are told apart by their metadata; a
column of row numbers, every value once, is no curve id)."""
QUALITY_COLUMNS = ("QUALITY", "SAP_QUALITY")
"""Quality flags of TESS/Kepler light curves: a cadence with a non-zero flag (momentum dump, cosmic ray,
scattered light, ...) is dropped unless ``quality = "keep"``."""
FEATHER_SUFFIXES = (".ftr", ".feather")
"""Feather files (Panopticon's format), in any case: a flux column not named is the last one."""
CSV_SUFFIXES = (".csv", ".csv.gz", ".ecsv", ".ecsv.gz")
"""Text tables (ECSV is CSV with a YAML header of its columns' units)."""
QUALITY = ("drop", "keep")
"""Values of ``quality``: what to do with flagged cadences."""
MAX_SAMPLES = 10 * 126_720
"""The most samples a curve may need on its search grid: ten PLATO quarters at 25 s. More says the time is in
another unit than the one given (seconds read as days)."""
MAX_STEP_D = 0.5
"""The longest median time step a light curve to be labelled may have [d] (``prepare``): longer says seconds read
as days (Panopticon's 25-s Feather files read in days have 25-d steps)."""
MIN_STEP_S = 0.01
"""The shortest median time step a light curve may have [s]: shorter says days read as seconds."""
MAX_NONPOSITIVE = 0.25
"""The largest fraction of a curve's flux values that may be 0 or below (:func:`check_curve`; a few
over-subtracted cadences of a faint star are)."""
MAX_SCATTER = 0.5
"""The largest robust scatter (1.4826 MAD) of a curve's flux, as a fraction of its median: more says a flux about 0
(relative flux, ppm) with an offset, not a flux level (:func:`check_curve`; a contact binary's +-23 % or a faint
star's 30 % noise per cadence are read)."""
PPM_SCATTER = 100.0
"""The smallest robust scatter of values about 0 that :func:`check_curve` calls ppm (a relative flux in ppm spreads
over hundreds); under it, and over 1, the values may be a faint star's e-/s, and no unit is suggested."""
GROUP_PREFIX = "flux_g"
"""Camera-group flux columns are ``flux_g1``, ``flux_g2``, ..."""
CHANNELS = ("coadd", "groups")
"""Flux channel layouts: one coadded flux, or one per camera group."""


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


def _non_numeric(values) -> tuple[int, str] | None:
    """The first entry of a column that is not a number: ``(row, text)``, rows counted from 1 (the header not
    counted); None when every entry reads as a number or is empty."""
    for k, v in enumerate(values):
        if v is None:
            continue
        if isinstance(v, bytes):
            v = v.decode(errors="replace")
        try:
            float(v)
        except (TypeError, ValueError):
            return k + 1, str(v)
    return None


def _table(path: Path) -> tuple[dict[str, np.ndarray], dict, dict[str, np.dtype], dict[str, str]]:
    """The numeric columns of a one-curve table file, in file order (as float64), its other 1-D columns (their
    values, for :func:`_pick`'s message about a column that is not numeric), each numeric column's dtype as
    stored (float32 times get :func:`check_curve`'s hint), and what the file says of its columns: their
    units (a FITS table's ``TUNITn``, an ECSV header's or an astropy-written Parquet file's), under ``""``
    a FITS table's time frame (``BJD - 2457000`` from ``BJDREFI`` + ``BJDREFF``), and under :data:`FRAME` + a
    column's name the frame of an astropy Time column (``MJD (TDB)``)."""
    name = path.name.lower()
    if not name.endswith(CURVE_SUFFIXES):
        raise InputError(path, f"{path.suffix or 'no extension'}: not a light-curve format (.parquet, .ftr or "
                               ".feather, .csv, .ecsv (or .gz), .fits)")
    if path.stat().st_size == 0:
        raise InputError(path, "empty file, not a light curve")
    try:
        if name.endswith((".fits", ".fit", ".fits.gz")):
            import warnings

            from astropy.io import fits
            from astropy.table import Table
            from astropy.units import UnitsWarning

            try:
                hdul = fits.open(path)   # its own error for a file that is not FITS (not astropy's format list)
            except (OSError, ValueError):
                raise InputError(path, "not a readable FITS file (no valid FITS header)") from None
            with hdul, warnings.catch_warnings():
                warnings.simplefilter("ignore", UnitsWarning)   # TESS's 'e-/s', Kepler's 'BJD - 2454833'
                if len(hdul) < 2 or not isinstance(hdul[1], (fits.BinTableHDU, fits.TableHDU)):
                    raise InputError(path, "no table in extension 1 (a TESS/Kepler light curve has TIME and "
                                           "PDCSAP_FLUX there)")
                t = Table.read(hdul, hdu=1)
                header = hdul[1].header
            told = {c: str(header.get(f"TUNIT{i + 1}", "")).strip() for i, c in enumerate(t.colnames)}
            for i, c in enumerate(t.colnames):   # a time column of the FITS standard (astropy's Time): jd1, jd2
                if getattr(t[c], "shape", ())[1:] == (2,) and told[c] == "d" and header.get(f"TCTYP{i + 1}"):
                    pairs = np.ma.filled(np.ma.asarray(t[c], np.float64), np.nan)   # masked: NaN, dropped later
                    t[c] = pairs[:, 0] + pairs[:, 1]
                    told[FRAME + c] = f"{_fits_reference(header)} ({str(header[f'TCTYP{i + 1}']).strip().upper()})"
            if isinstance(header.get("BJDREFI"), (int, float)):   # TESS 2457000, Kepler 2454833
                told[""] = f"BJD - {header['BJDREFI'] + float(header.get('BJDREFF', 0.0) or 0.0):.10g}"
            return _astropy_columns(t, told)
        import pyarrow as pa

        if name.endswith(FEATHER_SUFFIXES):
            import pyarrow.feather as feather

            table = feather.read_table(path)
        elif name.endswith(CSV_SUFFIXES):   # pyarrow reads the compression from the name
            import pyarrow.csv as pcsv

            skip, delimiter, names = _csv_layout(path)
            table = pcsv.read_csv(_single_spaced(path) if delimiter == " " else path,
                                  pcsv.ReadOptions(skip_rows=skip, column_names=names),
                                  pcsv.ParseOptions(delimiter=delimiter))
        else:
            import pyarrow.parquet as pq

            table = pq.read_table(path)
        header = _astropy_header(path, table)
        if _time_columns(header):   # an astropy Time or TimeDelta, perhaps stored as two columns (jd1, jd2)
            from astropy.table import Table

            return _astropy_columns(Table.read(path, format="parquet" if name.endswith((".parquet", ".pq"))
                                               else "ascii.ecsv"), _stated_units(header))
        kinds = {c: table.schema.field(c).type for c in table.column_names}
        numeric = {c for c, k in kinds.items() if pa.types.is_null(k) or pa.types.is_integer(k)
                   or pa.types.is_floating(k)}
        return ({c: (np.full(table.num_rows, np.nan) if pa.types.is_null(k)   # a CSV column with no value at all
                     else table.column(c).to_numpy(zero_copy_only=False).astype(np.float64))
                 for c, k in kinds.items() if c in numeric},
                {c: table.column(c) for c in kinds if c not in numeric},
                {c: np.dtype(np.float64) if pa.types.is_null(k) else np.dtype(k.to_pandas_dtype())
                 for c, k in kinds.items() if c in numeric}, _stated_units(header))
    except InputError:
        raise
    except Exception as exc:  # unreadable or not the format its name says
        raise InputError(path, f"unreadable light curve ({type(exc).__name__}: {exc})") from None


def _astropy_columns(t, told: dict[str, str]) -> tuple[dict, dict, dict, dict[str, str]]:
    """:func:`_table`'s columns of an astropy table: its 1-D numeric columns as float64 (masked values NaN), its
    other 1-D columns, their stored dtypes and the units ``told`` (the file's, by column name). A Time column
    counts days (MJD where its format is ``mjd``, else JD; its frame under :data:`FRAME` + its name), a
    TimeDelta days."""
    from astropy.time import Time, TimeDelta

    told = dict(told)
    numbers, others, stored = {}, {}, {}
    for c in t.colnames:
        v = t[c]
        if isinstance(v, (Time, TimeDelta)):
            days = "mjd" if isinstance(v, Time) and v.format == "mjd" else "jd"
            told[c] = "d"
            if isinstance(v, Time):
                told[FRAME + c] = f"{days.upper()} ({v.scale.upper()})"
            v = np.ma.filled(np.ma.asarray(v.to_value(days), np.float64), np.nan)
        if getattr(v, "ndim", 1) != 1:
            continue
        if v.dtype.kind in "fiu":
            numbers[c] = v.astype(np.float64).filled(np.nan) if hasattr(v, "filled") else np.asarray(v, np.float64)
            stored[c] = np.dtype(v.dtype.newbyteorder("="))
        else:
            others[c] = np.asarray(v)
    return numbers, others, stored, {c: u for c, u in told.items() if u}


FRAME = "\0frame "
"""The prefix of a column's name under which :func:`_table` keeps the frame of its times."""


def _fits_reference(header) -> str:
    """What a FITS-standard time column counts from (``JDREF`` or ``MJDREF``, or their integer and fractional
    parts ``JDREFI`` + ``JDREFF``, ``MJDREFI`` + ``MJDREFF``; astropy writes ``JDREF = 0``): ``JD``,
    ``JD - 2400000``, ``MJD``, ``MJD - 58000``."""
    def number(key):
        v = header.get(key)
        return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None

    for name in ("JD", "MJD"):
        whole, parts = number(f"{name}REF"), (number(f"{name}REFI"), number(f"{name}REFF"))
        ref = whole if whole is not None else None if parts == (None, None) else sum(v or 0.0 for v in parts)
        if ref is not None:
            return f"{name} - {ref:.10g}" if ref else name
    return "JD"


def _time_columns(header: dict) -> list[str]:
    """The columns an astropy header (:func:`_astropy_header`) says hold a Time or TimeDelta."""
    meta = header.get("meta") if isinstance(header, dict) else None
    columns = meta.get("__serialized_columns__") if isinstance(meta, dict) else None
    return [c for c, spec in columns.items() if isinstance(spec, dict)
            and str(spec.get("__class__", "")).endswith((".Time", ".TimeDelta"))] if isinstance(columns, dict) else []


def _stated_units(header: dict) -> dict[str, str]:
    """The units an astropy header (:func:`_astropy_header`) states for its columns, ``{}`` where it states none."""
    columns = header.get("datatype") if isinstance(header, dict) else None
    return {d["name"]: str(d["unit"]) for d in columns if isinstance(d, dict) and d.get("name") and d.get("unit")} \
        if isinstance(columns, list) else {}


def _astropy_header(path: Path, table) -> dict:
    """The header of an ECSV file (a CSV file that begins ``# %ECSV``) or of an astropy-written Parquet file
    (``table_meta_yaml``): its columns' ``datatype`` (names, units) and ``meta``; ``{}`` where there is none
    or astropy cannot read it."""
    lines = []
    if path.name.lower().endswith(CSV_SUFFIXES):
        import gzip

        with (gzip.open if path.name.lower().endswith(".gz") else open)(path, "rt", errors="replace") as f:
            first = f.readline(1 << 16)
            if first.startswith("# %ECSV"):
                for line in f:
                    if not line.startswith("#"):
                        break
                    lines.append(line[2:].rstrip("\n"))
    else:
        yaml = (table.schema.metadata or {}).get(b"table_meta_yaml")
        lines = yaml.decode(errors="replace").splitlines() if yaml else []
    if not lines:
        return {}
    from astropy.table.meta import get_header_from_yaml

    try:
        header = get_header_from_yaml(lines)
    except Exception:   # a header astropy cannot read states nothing this reader could check
        return {}
    return header if isinstance(header, dict) else {}


def _csv_layout(path: Path) -> tuple[int, str, list[str] | None]:
    """A CSV file's leading comment lines (``#``, as lightkurve and astropy's ECSV write them; blank lines
    too), its delimiter, read from its header line: comma, else tab, semicolon or space (ECSV), and its column
    names when its header is the last comment line (``# time,flux`` above numbers; else None: the first line)."""
    import gzip

    last = ""
    with (gzip.open if path.name.lower().endswith(".gz") else open)(path, "rt", errors="replace") as f:
        for skip in range(10_000):
            line = f.readline(1 << 16)   # bounded: a binary file may hold no newline
            if not line:
                break
            if line.strip() and not line.lstrip().startswith("#"):
                delimiter = next((d for d in (",", "\t", ";", " ") if d in line.strip()), ",")
                fields, names = _fields(line, delimiter), _fields(last.lstrip().lstrip("#"), delimiter)
                header = len(names) == len(fields) and not any(map(_number, names)) and all(map(_number, fields))
                return skip, delimiter, names if header else None
            last = line if line.strip() else last
    return 0, ",", None


def _single_spaced(path: Path):
    """A space-delimited text file as pyarrow, which takes every space for a delimiter, can read it: the path
    itself, or, where a line holds runs of spaces or leading spaces (aligned columns), its bytes with one space
    between fields, as :func:`_fields` reads its lines (any encoding: only spaces are touched)."""
    import gzip
    import io

    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rb") as f:
        if not any(b"  " in ln or ln[:1] == b" " for ln in f):
            return path
        f.seek(0)
        out = io.BytesIO()
        for ln in f:
            out.write(b" ".join(ln.split()) + b"\n")
    out.seek(0)
    return out


def _fields(line: str, delimiter: str) -> list[str]:
    """The fields of one CSV line (runs of spaces are one delimiter)."""
    return line.split() if delimiter == " " else [f.strip() for f in line.strip().split(delimiter)]


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _first_present(names, defaults) -> str | None:
    """The first of ``defaults`` among the column ``names``, in any case, as the file spells it (``bjd`` for
    ``BJD``; an exact match first); None if none is there."""
    by_case: dict[str, str] = {}
    for c in names:
        by_case.setdefault(c.lower(), c)
    for c in defaults:
        if c in names or c.lower() in by_case:
            return c if c in names else by_case[c.lower()]
    return None


def _pick(columns: Mapping[str, np.ndarray], wanted: str, defaults, path: Path, what: str,
          others: Mapping | None = None) -> str:
    others = others or {}

    def not_numeric(c: str):
        bad = _non_numeric(others[c].to_pylist() if hasattr(others[c], "to_pylist") else others[c])
        where = f" (row {bad[0]}, counting from 1: {bad[1]!r})" if bad else ""
        return InputError(path, f"column {c!r} is not numeric{where}")

    if wanted:
        if wanted in others:
            raise not_numeric(wanted)
        if wanted not in columns:
            raise InputError(path, f"no numeric {what} column {wanted!r} (numeric columns: {', '.join(columns)})")
        return wanted
    if (c := _first_present(columns, defaults)) is not None:
        return c
    if (c := _first_present(others, defaults)) is not None:   # none numeric: the first that is there but holds text
        raise not_numeric(c)
    raise InputError(path, f"no {what} column (looked for {', '.join(defaults)}; numeric columns: "
                           f"{', '.join(columns) or 'none'}); name it with --{what}-column")


def check_curve(time: np.ndarray, flux: np.ndarray, where: str, rows: np.ndarray | None = None,
                time_dtype=None) -> None:
    """Refuse a curve a model cannot read: unequal lengths, times not increasing, no finite flux, a flux that is
    not a level (relative flux is flux over its median): a median not above 0, more than
    :data:`MAX_NONPOSITIVE` of the values at or below 0, or a robust scatter above :data:`MAX_SCATTER` of the
    median; each named as such, with a hint only where the values lie about 0 (the median within three robust
    scatters of it): to add 1 where the scatter is under 1 (relative flux), to divide by 1e6 first where it is at
    least :data:`PPM_SCATTER` (ppm); none in between (a faint star in e-/s: median 50, scatter 40).

    Times that do not increase are named by their row in the file (``rows``) or sample of the curve,
    counting from 1 (as a non-numeric value's row is), with a hint where the times are float32 values too
    coarse for their size (BJD in float32 steps by 0.25 d): where the column was stored as float32
    (``time_dtype``), or, its stored dtype unknown, where they are all float32 values and not all whole
    numbers (whole-number float64 times, seconds of a grid, are float32 values too).

    Parameters
    ----------
    time, flux : numpy.ndarray
        The curve: time 1-D, flux ``(n,)`` or ``(channels, n)``.
    where : str
        What the messages name (a file, or ``file: curve``).
    rows : numpy.ndarray, optional
        The file row (counting from 1, the header not counted) of each sample, where rows were dropped
        before (flagged cadences, NaN times); default: sample ``k`` is row ``k + 1``.
    time_dtype : numpy.dtype, optional
        The time column's dtype as stored in the file (``time`` itself is float64); default: unknown.

    Raises
    ------
    astrotool.errors.InputError
        Naming ``where`` (a file, or ``file: curve``) and the problem.
    """
    if time.ndim == 1 and flux.shape[-1:] == time.shape and time.size < 2:
        raise InputError(where, f"{time.size} sample{'s' if time.size != 1 else ''}; a light curve needs at "
                                "least 2")
    if time.ndim != 1 or flux.ndim not in (1, 2) or flux.shape[-1:] != time.shape:
        raise InputError(where, f"time must be 1-D of length >= 2 and flux end in the same length, got "
                                f"{time.shape} and {flux.shape}")
    if not np.isfinite(time).all():
        raise InputError(where, f"{int((~np.isfinite(time)).sum())} time stamp(s) are NaN or infinite")
    step = np.diff(time)
    if (step <= 0).any():
        k = int(np.flatnonzero(step <= 0)[0])
        word, at = ("row", np.asarray(rows)) if rows is not None else ("sample", np.arange(1, time.size + 1))
        hint = ""
        big = float(np.abs(time).max())
        if time_dtype is not None:
            single = np.dtype(time_dtype) == np.float32
        else:   # unknown: float32 values, not all whole numbers (float64 whole seconds are float32 values too)
            single = (np.array_equal(time.astype(np.float32).astype(np.float64), time)
                      and not np.array_equal(np.round(time), time))
        if single and big >= 2.0 ** 16:
            hint = (f"; the times are all float32 values, whose step at {big:.10g} is "
                    f"{float(np.spacing(np.float32(big))):g}: time is float32, too coarse for BJD; store it as "
                    "float64")
        raise InputError(where, f"time is not increasing: {word} {int(at[k + 1])} ({float(time[k + 1])!r}) follows "
                                f"{word} {int(at[k])} ({float(time[k])!r}), counting from 1{hint}")
    for c, row in enumerate(np.atleast_2d(flux)):
        channel = f" in channel {c} of {flux.shape[0]}" if flux.ndim == 2 else ""
        if not np.isfinite(row).any():
            raise InputError(where, f"the flux is NaN or infinite everywhere{channel}")
        good = row[np.isfinite(row)]
        level = float(np.median(good))
        scatter = 1.4826 * float(np.median(np.abs(good - level)))
        low = float(np.mean(good <= 0))
        problem = (f"the median flux{channel} is {level:g}" if level <= 0 else
                   f"{100 * low:.3g} % of the flux values{channel} are at or below 0 (at most "
                   f"{100 * MAX_NONPOSITIVE:g} %)" if low > MAX_NONPOSITIVE else
                   f"the robust scatter of the flux{channel}, {scatter:.3g}, is over {MAX_SCATTER:g} of its median "
                   f"{level:.3g}" if scatter > MAX_SCATTER * level else "")
        if problem:
            hint = ""
            if 0 < scatter and abs(level) <= 3.0 * scatter:   # values about 0, spread as ppm or as relative flux
                hint = ("; ppm about 0: divide by 1e6 and add 1" if scatter >= PPM_SCATTER else
                        "; relative flux about 0: add 1" if scatter < 1 else "")   # else a faint star, in e-/s
            raise InputError(where, f"{problem}: not a flux level{hint}")


@dataclass(frozen=True)
class CurveReader:
    """How a user's light-curve file is read (``[plato.detect]``): the columns, the time unit (``d`` or
    ``s``) and what to do with flagged cadences; one value for the items of detect, plot and bls."""

    time_column: str = ""
    flux_column: str = ""
    time_unit: str = "d"
    quality: str = "drop"

    @classmethod
    def of(cls, cfg) -> "CurveReader":
        """The reader of a ``[plato.detect]`` table."""
        return cls(cfg.time_column, cfg.flux_column, cfg.time_unit, cfg.quality)

    def read(self, path, channels: str = "coadd", notes: list | None = None) -> dict[str, tuple]:
        """:func:`read_curves` of ``path`` with these settings."""
        return read_curves(path, self.time_column, self.flux_column, self.time_unit, channels, self.quality, notes)


def read_curves(path, time_column: str = "", flux_column: str = "", time_unit: str = "d",
                channels: str = "coadd", quality: str = "drop", notes: list | None = None) -> dict[str, tuple]:
    """Every light curve of a file, as ``{id: (time [d], flux)}``.

    Parameters
    ----------
    path : path-like
        A simulator Parquet file (several curves), or a one-curve Feather,
        Parquet, CSV or FITS table (its id is the file stem).
    time_column, flux_column : str
        Column names (default: the first of :data:`TIME_COLUMNS` and
        :data:`FLUX_COLUMNS` present, in any case: ``bjd`` as ``BJD``; for Feather without those, the last
        numeric column is Panopticon's co-added flux).
    time_unit : {"d", "h", "s"}
        Unit of a one-curve table's time column (Panopticon's Feather files: ``s``). A FITS
        column whose ``TUNITn`` names another unit is refused.
    channels : {"coadd", "groups"}
        The co-added flux only, shape ``(n,)``, or the camera groups then the
        co-added flux, shape ``(groups + 1, n)`` (module docstring).
    quality : {"drop", "keep"}
        A one-curve table's rows whose :data:`QUALITY_COLUMNS` flag is non-zero
        are dropped, or kept.
    notes : list, optional
        Receives a line per change made to the file's rows (flagged cadences
        dropped, rows without a finite time dropped), the flux column taken
        when it is not one of :data:`FLUX_COLUMNS`, and the columns read (time
        with its unit and, from a FITS header, frame; flux; quality flags),
        for the log (:func:`log_notes`).

    Raises
    ------
    astrotool.errors.InputError
        Missing file or column (camera groups included), a column that is not
        numeric, unreadable file, time not increasing, all-NaN flux, a flux
        that is not a level (:func:`check_curve`).
    """
    if channels not in CHANNELS:
        raise ValueError(f"channels: {channels!r} is not one of {CHANNELS}")
    if quality not in QUALITY:
        raise ValueError(f"quality: {quality!r} is not one of {QUALITY}")
    notes = [] if notes is None else notes
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "is a folder, not a light-curve file" if path.is_dir() else "no such light-curve file")
    if path.name.endswith((".parquet", ".pq")):
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
    cols, others, stored, told = _table(path)
    for c, v in {**cols, **others}.items():   # several curves in one table would read as one, gaps filled
        if c.lower() in ID_COLUMNS:
            ids = [f"{i:.15g}" if isinstance(i, float) else str(i)   # numeric columns are read as float64
                   for i in dict.fromkeys(np.asarray(v).tolist()) if i == i and i is not None and i != ""]
            if 1 < len(ids) <= len(v) // 2:   # curves of samples, not a row number (every value once)
                raise InputError(path, f"holds {len(ids)} curves (column {c!r}: {', '.join(ids[:3])}"
                                       f"{', ...' if len(ids) > 3 else ''}), one file is one curve: write each "
                                       f"{c} to its own file (a folder of them is read whole)")
    tc = _pick(cols, time_column, TIME_COLUMNS, path, "time", others)
    unit = _time_unit_of(told.get(tc, ""))
    stated = "its TUNIT" if path.name.lower().endswith((".fits", ".fit", ".fits.gz")) else "its stated unit"
    if unit == OTHER_TIME_UNIT:
        raise InputError(path, f"time column {tc!r} is in {told[tc]!r} ({stated}), which no --time-unit reads "
                               f"({', '.join(TIME_UNITS)}): convert the column to days, hours or seconds")
    if unit and unit != time_unit:
        raise InputError(path, f"time column {tc!r} is in {told[tc]!r} ({stated}), read as "
                               f"{TIME_UNITS[time_unit]}: use --time-unit {unit}" + (" (the default)" if unit == "d"
                                                                                     else ""))
    valued = [c for c in cols if np.isfinite(cols[c]).any()]   # a column with no value is no one's flux
    quality_column = _first_present(cols, QUALITY_COLUMNS) or ""   # lightkurve writes `quality`
    if not flux_column and _first_present([*cols, *others], FLUX_COLUMNS) is None \
            and path.suffix.lower() in FEATHER_SUFFIXES:
        rest = [c for c in valued if c not in (tc, quality_column)]
        flux_column = rest[-1] if rest else ""
        if flux_column:   # chosen by position: say which, as a column of another meaning may be last
            notes.append(f"{path.name}: flux column {flux_column!r} (none of {', '.join(FLUX_COLUMNS)}: a "
                         "Feather file's last numeric column; --flux-column names another)")
    fc = _pick(cols, flux_column, FLUX_COLUMNS, path, "flux", others)
    time = cols[tc] / TIME_UNIT_PER_DAY[time_unit]
    flux = cols[fc]
    if channels == "groups":
        names = group_columns(cols)
        if not names and path.suffix.lower() in FEATHER_SUFFIXES:  # Panopticon: the columns between time and co-add
            names = [c for c in valued if c not in (tc, fc, quality_column)]
        if not names:
            raise InputError(path, f"no camera-group columns ({GROUP_PREFIX}1, {GROUP_PREFIX}2, ...; numeric "
                                   f"columns: {', '.join(cols)}); the model reads channels = \"groups\"")
        flux = np.vstack([cols[c] for c in names] + [flux])
    keep, dropped = np.ones(time.size, bool), []
    if quality_column and quality == "drop":
        flag = cols[quality_column]
        flagged = np.isfinite(flag) & (flag != 0)
        if flagged.any():
            keep &= ~flagged
            dropped.append(f"dropped {int(flagged.sum())} of {time.size} cadence(s) flagged in {quality_column} "
                           "(plato.detect.quality = \"keep\" keeps them)")
    no_time = ~np.isfinite(time)
    if no_time.any():
        keep &= ~no_time
        dropped.append(f"dropped {int(no_time.sum())} row(s) whose time is NaN or infinite")
    rows = np.flatnonzero(keep) + 1   # file rows counted from 1, the header not counted
    if not keep.all():
        time, flux = time[keep], flux[..., keep]
    try:
        check_curve(time, flux, str(path), rows, stored[tc])
    except InputError as exc:   # say which column, and what was dropped before (all of it flagged?)
        told = list(dropped)
        if "NaN or infinite everywhere" in exc.problem:   # e.g. PDCSAP_FLUX, where SAP_FLUX holds values
            columns = [*names, fc] if channels == "groups" else [fc]
            bad = next((c for c, row in zip(columns, np.atleast_2d(flux)) if not np.isfinite(row).any()), fc)
            other = [c for c in valued if c != fc and c.lower() in {n.lower() for n in FLUX_COLUMNS}]
            told.insert(0, f"flux column {bad!r}" + (f"; --flux-column {other[0]} reads another"
                                                     if other and bad == fc else ""))
        if told:
            raise InputError(path, f"{exc.problem} ({'; '.join(told)})") from None
        raise
    notes += [f"{path.name}: {text}" for text in dropped]   # a refused file says them in its error
    frame = told.get(FRAME + tc) or told.get("") or told.get(tc, "")
    frame = "" if frame.strip("[] ").lower() in {"d", "day", "days", "h", "s"} else frame   # a unit is no frame
    notes.append(f"{path.name}: time {tc!r} [{time_unit}{', ' + frame if frame else ''}], flux {fc!r}"
                 + (f", flags {quality_column!r}" if quality_column else ""))   # what was read, for the log
    return {curve_id(path): (time, flux)}


TIME_UNITS = {"d": "days", "h": "hours", "s": "seconds"}
"""The units a one-curve table's time column may be read in (``--time-unit``)."""

TIME_UNIT_PER_DAY = {"d": 1.0, "h": 24.0, "s": 86400.0}
"""How many of each time unit make a day."""


OTHER_TIME_UNIT = "other"
"""What :func:`_time_unit_of` returns for a time unit that no ``--time-unit`` reads (minutes, years...)."""


def _time_unit_of(text: str) -> str:
    """The time unit (``d``, ``h`` or ``s``) a FITS ``TUNITn`` names (``d``, ``day``, ``BJD - 2457000, days``,
    ``s``, ``[h]``, ``hrs``, ``seconds since MJD 58000``, ...), :data:`OTHER_TIME_UNIT` for another time unit
    (``min``, ``ms``, ``yr``...), or ``""`` when it names none. Seconds and hours are looked for first: a unit
    counted from a date names the date's scale too (``minutes since MJD 58000`` is not days)."""
    import re

    words = set(re.findall(r"[a-z]+", text.lower()))
    for unit, names in (("s", {"s", "sec", "secs", "second", "seconds"}), ("h", {"h", "hr", "hrs", "hour", "hours"}),
                        (OTHER_TIME_UNIT, {"min", "mins", "minute", "minutes", "ms", "millisecond", "milliseconds",
                                           "us", "microsecond", "microseconds", "ns", "ks", "yr", "yrs", "year",
                                           "years", "week", "weeks"}),
                        ("d", {"d", "day", "days", "jd", "bjd", "btjd", "bkjd", "mjd"})):
        if words & names:
            return unit
    return ""


CURVE_SUFFIXES = (".csv.gz", ".ecsv.gz", ".fits.gz", ".fits", ".fit", *FEATHER_SUFFIXES, ".csv", ".ecsv", ".parquet",
                  ".pq")
"""The file suffixes of light-curve tables (the compressed ones first: a curve's id is the name without them)."""


def folder_curves(folder, patterns=None) -> list[Path]:
    """The light-curve files a folder given as input stands for, sorted: its files (not its subfolders', nor
    hidden ones, nor Panopticon's ``Complete_Parameters.ftr``) whose names match one of the glob ``patterns``
    (default: every suffix of :data:`CURVE_SUFFIXES`; letter case ignored). Empty if none does."""
    import fnmatch

    from astrotool_plato.panopticon import PARAMS_FILE

    patterns = [x.lower() for x in (patterns or ["*" + s for s in CURVE_SUFFIXES])]
    return sorted(f for f in Path(folder).iterdir()
                  if f.is_file() and not f.name.startswith(".") and f.name != PARAMS_FILE.name
                  and any(fnmatch.fnmatch(f.name.lower(), x) for x in patterns))


def curve_id(path) -> str:
    """The id of a one-curve table's curve: its file name without the table's suffix (``star.csv.gz`` -> ``star``,
    ``kic123.q1.csv`` -> ``kic123.q1``: two quarters of one star are two curves)."""
    name = Path(path).name
    suffix = next((s for s in CURVE_SUFFIXES if name.lower().endswith(s)), Path(name).suffix)
    return name[:len(name) - len(suffix)] if suffix and len(name) > len(suffix) else name


def log_notes(log, notes) -> None:
    """Log :func:`read_curves`' notes (INFO), each ``"<file>: <text>"``; a text that several files share is
    logged once, with the number of files and the first of them."""
    by_text: dict[str, list[str]] = {}
    for note in notes:
        name, sep, text = note.partition(": ")
        by_text.setdefault(text if sep else note, []).append(name if sep else "")
    for text, names in by_text.items():
        if len(names) == 1:
            log.info("%s", f"{names[0]}: {text}" if names[0] else text)
        else:
            log.info("%d files (%s, ...): %s", len(names), names[0], text)


def check_time_scale(time: np.ndarray, step: float | None, where: str, time_unit: str = "d",
                     max_step: float | None = None) -> int:
    """Refuse, before resampling, a curve whose time axis is in another unit than the one given.

    Parameters
    ----------
    time : numpy.ndarray
        Increasing times [d].
    step : float or None
        Step of the grid the curve goes on [d]; None: its median step.
    where : str
        The file (or ``file: curve``) named in the error.
    time_unit : {"d", "h", "s"}
        The unit the time column was read in (for the hint).
    max_step : float, optional
        The longest median step a curve may have [d] (``prepare``: :data:`MAX_STEP_D`).

    Returns
    -------
    int
        Samples of that grid (:func:`grid_size`).

    Raises
    ------
    astrotool.errors.InputError
        The grid would need more than :data:`MAX_SAMPLES` samples, or the median
        step is longer than ``max_step`` (seconds read as days), the grid has fewer
        than 2 samples, or the median step is below :data:`MIN_STEP_S` (days read
        as seconds).
    """
    native = float(np.median(np.diff(time)))
    step = native if step is None else float(step)
    span = float(time[-1] - time[0])
    n = grid_size(time, step)
    seconds = ("is the time in seconds? use --time-unit s" if time_unit != "s" else
               "is the time column a time, in seconds?")
    if n > MAX_SAMPLES:
        # a real cadence (Kepler's 29.4 min, TESS's 2 min): a long curve; a step of half a day or more: seconds
        hint = "split the curve into pieces of at most ten quarters" if native < MAX_STEP_D else seconds
        raise InputError(where, f"the curve spans {span:.6g} d: on a {step * 86400.0:g}-s grid that is {n:,} "
                                f"samples, more than {MAX_SAMPLES:,} (ten PLATO quarters); {hint}")
    if max_step is not None and native > max_step:
        raise InputError(where, f"a median time step of {native * 24.0:.4g} h, longer than {max_step * 24.0:g} h; "
                                f"{seconds}")
    if native * 86400.0 < MIN_STEP_S or n < 2:
        hint = (f"is the time in days? leave out --time-unit {time_unit}" if time_unit != "d" else
                "is the time column a time, in days?")
        grid = f" ({n} sample on a {step * 86400.0:g}-s grid)" if n < 2 else ""
        raise InputError(where, f"the curve spans {span * 86400.0:.3g} s at a median step of "
                                f"{native * 86400.0:.3g} s{grid}; {hint}")
    return n


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


def grid_times(time: np.ndarray, cadence: float | None = None) -> np.ndarray:
    """The times of :func:`uniform`'s grid (``time`` itself where it is on that grid already), without the flux."""
    step = float(np.median(np.diff(time))) if cadence is None else float(cadence)
    return time if _on_grid(time, step) else time[0] + step * np.arange(grid_size(time, step))


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
        than one cadence (the grid's or the samples', the longer) from every
        sample are NaN (a gap, to be filled). On a
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
    grid = grid_times(time, step)
    good = np.isfinite(flux)
    out = np.interp(grid, time[good], flux[good])
    k = np.clip(np.searchsorted(time, grid), 1, time.size - 1)
    nearest = np.minimum(np.abs(grid - time[k - 1]), np.abs(time[k] - grid))
    out[nearest > max(step, native) * 1.01] = np.nan   # on a finer grid, between two samples is no gap
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
