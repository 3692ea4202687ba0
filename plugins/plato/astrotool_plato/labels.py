"""Per-sample labels: which samples of a light curve lie in a transit or an eclipse.

A mask holds one class per sample, on the curve's own time axis (gaps and
uneven sampling included): :data:`CONTINUUM` (0), :data:`PLANET` (1, the
segmentation target) or :data:`ECLIPSE` (2, a primary or secondary eclipse of a
binary: a negative the network must not flag). A sample is in an event when
``|t - t_mid| < T14 / 2``, exactly where the simulated deficit is non-zero.

Panopticon's three label bugs are not repeated: the continuum is the
complement of the events (not ``~transit | ~eclipse``), every duration is in
one unit (hours in the label table, days here), and events are placed on the
real time stamps rather than on ``linspace(t0, tN, N)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

__docformat__ = "numpy"

CONTINUUM, PLANET, ECLIPSE = 0, 1, 2
CLASSES = ("continuum", "planet", "eclipse")
"""Mask classes, by code."""


def _centres(t0: float, period: float, half: float, t_min: float, t_max: float) -> list[float]:
    """Mid-times ``t0 + k period`` whose window ``± half`` overlaps ``[t_min, t_max]`` (just ``t0`` without period)."""
    if not math.isfinite(period):
        return [t0] if t0 + half > t_min and t0 - half < t_max else []
    k_lo = math.ceil((t_min - half - t0) / period)
    k_hi = math.floor((t_max + half - t0) / period)
    return [t0 + k * period for k in range(k_lo, k_hi + 1)]


def event_windows(row: Mapping, t_min: float, t_max: float) -> list[tuple[float, float, int]]:
    """Every transit and eclipse of a curve that overlaps ``[t_min, t_max]``.

    Parameters
    ----------
    row : mapping
        One row of the label table (:data:`astrotool_plato.simulate.LABEL_FIELDS`):
        ``has_transit, t0, duration [h], period``; and, when present,
        ``eclipse, eclipse_t0, eclipse_period, eclipse_duration [h], eclipse_depth,
        eclipse_secondary``.
    t_min, t_max : float
        Time span of the curve [d].

    Returns
    -------
    list of (float, float, int)
        ``(mid-time [d], half-duration [d], class)``, sorted by mid-time.
    """
    out = []
    if row.get("has_transit"):
        half = 0.5 * float(row["duration"]) / 24.0
        period = float(row.get("period", math.nan))
        out += [(c, half, PLANET) for c in _centres(float(row["t0"]), period, half, t_min, t_max)]
    if row.get("eclipse"):
        half = 0.5 * float(row["eclipse_duration"]) / 24.0
        period = float(row["eclipse_period"])
        for t0, depth in ((float(row["eclipse_t0"]), row["eclipse_depth"]),
                          (float(row["eclipse_t0"]) + 0.5 * period, row["eclipse_secondary"])):
            if not depth <= 0:  # NaN: present, depth unknown (Panopticon's parameters have none)
                out += [(c, half, ECLIPSE) for c in _centres(t0, period, half, t_min, t_max)]
    return sorted(out)


def mask(time, windows) -> np.ndarray:
    """The class of every sample (``int8``): the events' windows painted on the time axis.

    Parameters
    ----------
    time : array_like
        Sample times [d], in any order, gaps allowed.
    windows : iterable of (float, float, int)
        From :func:`event_windows`; where windows overlap, a planet wins over an eclipse.
    """
    time = np.asarray(time, dtype=np.float64)
    out = np.zeros(time.shape, dtype=np.int8)
    for centre, half, cls in sorted(windows, key=lambda w: w[2] == PLANET):  # planets painted last
        out[np.abs(time - centre) < half] = cls
    return out


def read_label_tables(folder) -> dict[str, dict]:
    """Every ``*_labels.parquet`` in ``folder``, as ``{curve id: row}``.

    Raises
    ------
    astrotool.errors.InputError
        A table lacks the planet columns, or two tables hold the same curve id.
    """
    from astrotool.errors import InputError
    from astrotool.io.tables import read_parquet

    rows: dict[str, dict] = {}
    where: dict[str, Path] = {}
    for path in sorted(Path(folder).glob("*_labels.parquet")):
        table = read_parquet(path)
        missing = {"id", "has_transit", "t0", "duration", "period"} - set(table.column_names)
        if missing:
            raise InputError(path, f"is not a label table: no column(s) {', '.join(sorted(missing))}")
        for r in table.to_pylist():
            if r["id"] in rows:
                raise InputError(path, f"curve {r['id']!r} is also labelled in {where[r['id']].name}")
            rows[r["id"]], where[r["id"]] = r, path
    return rows


def write_label_rows(path, rows, command: str) -> Path:
    """Write a label table from row dicts (missing columns of
    :data:`astrotool_plato.simulate.LABEL_FIELDS` become NaN, 0, False or empty).

    Parameters
    ----------
    path : path-like
        ``<name>_labels.parquet`` (written atomically).
    rows : iterable of dict
        One per curve, with at least ``id``.
    command : str
        The command named in the provenance record.
    """
    import pyarrow as pa

    from astrotool.io.tables import write_parquet

    from astrotool_plato.simulate import EMPTY_LABEL, LABEL_FIELDS, label_fields

    rows = list(rows)
    fields = label_fields()
    table = pa.table({f.name: pa.array([r.get(f.name, EMPTY_LABEL[t]) for r in rows], f.type)
                      for f, (_, t, _, _) in zip(fields, LABEL_FIELDS)}, schema=pa.schema(fields))
    return write_parquet(table, path, command=command)


def write_masks(path, curves: Mapping[str, tuple], labels: Mapping[str, dict], command: str = "plato labels") -> dict:
    """Write the masks of some curves to Parquet (``id``, ``time`` [d], ``label``; one row group per curve).

    Parameters
    ----------
    path : path-like
        Output ``.parquet`` file (written atomically).
    curves : mapping
        ``{id: (time, flux, flux_err)}`` (:func:`astrotool_plato.simulate.read_lightcurves`).
    labels : mapping
        ``{id: label-table row}``; a curve without a row is refused.

    Returns
    -------
    dict
        Samples per class, summed over the curves.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from astrotool.errors import InputError
    from astrotool.provenance import parquet_metadata, provenance
    from astrotool.workspace import atomic_path

    missing = [c for c in curves if c not in labels]
    if missing:
        raise InputError(path, f"no label row for curve(s) {', '.join(missing[:5])}: "
                               "its label table is not in plato/labels/")
    schema = pa.schema([
        pa.field("id", pa.string(), metadata={"description": "curve identifier"}),
        pa.field("time", pa.float64(), metadata={"unit": "d", "description": "sample time"}),
        pa.field("label", pa.int8(), metadata={"description": "0 continuum, 1 planet transit, 2 binary eclipse"}),
    ], metadata=parquet_metadata(provenance(command)))
    counts = dict.fromkeys(CLASSES, 0)
    with atomic_path(path) as tmp:
        with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
            for cid, (time, *_rest) in curves.items():
                m = mask(time, event_windows(labels[cid], float(np.min(time)), float(np.max(time))))
                for code, name in enumerate(CLASSES):
                    counts[name] += int(np.count_nonzero(m == code))
                writer.write_table(pa.table({"id": pa.repeat(pa.scalar(cid, pa.string()), len(time)),
                                             "time": np.asarray(time, np.float64), "label": m}, schema=schema),
                                   row_group_size=max(1, len(time)))
    return counts


@dataclass(frozen=True)
class MasksItem:
    """Executor item of ``astro plato labels``: the masks of one light-curve file.

    Attributes
    ----------
    path : str
        The simulator's ``<stem>_lightcurves.parquet``.
    out : str
        Its ``<stem>_masks.parquet``.
    rows : tuple
        The label-table rows of its curves (:func:`rows_by_file`; read once, by the command).
    """

    path: str
    out: str
    rows: tuple


def rows_by_file(labels: Mapping[str, dict]) -> dict:
    """Label rows grouped by the light-curve file they name (``row["file"]``): ``{file name: (row, ...)}``.
    Rows that name no file are put in every group, and alone under the key ``None`` (for files no row names)."""
    groups: dict = {}
    for r in labels.values():
        groups.setdefault(r.get("file"), []).append(r)
    loose = groups.pop(None, [])
    return {**{k: tuple(v) + tuple(loose) for k, v in groups.items()}, None: tuple(loose)}


def masks_file(item: MasksItem, seed: int = 0) -> dict:
    """Write the masks of one file (:func:`write_masks`) from the rows in ``item``; ``seed`` is not used.

    Returns
    -------
    dict
        ``{"out": path written, "samples": samples per class}``.
    """
    from astrotool.errors import InputError
    from astrotool_plato.lightcurves import read_curves

    curves, rows = read_curves(item.path), {r["id"]: r for r in item.rows}
    missing = [c for c in curves if c not in rows]
    if missing:
        raise InputError(item.path, f"no label row for curve(s) {', '.join(missing[:5])} names this file: its label "
                                    "table is not in plato/labels/, or the file is of an earlier layout (the "
                                    "curves moved to other files; simulate or import-panopticon with "
                                    "--overwrite removes it)")
    counts = write_masks(item.out, curves, rows)
    return {"out": item.out, "samples": counts}
