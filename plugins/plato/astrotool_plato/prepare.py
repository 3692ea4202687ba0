"""``astro plato prepare``: light curves and their labels packed into a training set.

Each curve is put on a uniform time grid (gaps become NaN), cut to ``length``
samples from its start, turned into relative flux ``flux / median - 1`` with
its NaN/inf samples interpolated over (or the curve dropped when its own samples
hold NaN/inf: ``bad_values = "drop"``, Panopticon's ``--filter_inf``, which in
Panopticon never fired since NaNs were zeroed first; gaps are interpolated
either way), and labelled per sample (:mod:`astrotool_plato.labels`).

``augment`` adds each curve's *twin*: the residual about a smoothing-spline
trend reversed in time, ``twin = flip(x - trend) + trend``, with its labels
flipped (camera groups: every channel about the co-added flux's trend). The
slow variability keeps its direction; noise, transits and eclipses run
backwards. The spline (degree ``spline_k``) is fitted to every
``spline_stride``-th sample with the transits and eclipses masked out (weight
0), and smoothing ``s = spline_s * m * sigma^2`` for ``m`` fitted points of
white-noise sigma (its expected chi^2).

The set (:class:`PreparedDataset`, ``plato/prepared/<name>/``) holds per curve
``flux`` (float32 relative flux: ``(length,)``, or ``(groups + 1, length)``
with ``channels = "groups"``, the camera groups then the co-added flux) and
``label`` (int8 class per sample), and the
metadata columns listed in :data:`METADATA`. Splits are drawn by simulation
(:func:`astrotool_plato.panopticon.simulation_of`: a curve, or all quarters of
one Panopticon simulation), stratified by kind (planet, eb, beb, none; of the
samples kept), so a twin always lands with its curve. The set is written in a
temporary folder and moved into place when complete; a rerun with the same
settings and inputs keeps it, other settings are refused (exit 2) unless
``--overwrite``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from astrotool.context import astro_command
from astrotool.errors import AstroError, InputError
from astrotool.ml.data import SPLITS, ArrayDataset, DatasetWriter
from astrotool.workspace import atomic_dir

from astrotool_plato.labels import ECLIPSE, PLANET

__docformat__ = "numpy"

KIND = "plato-quarters"
"""``kind`` of a prepared PLATO data set's manifest."""
GRANULE = 256
"""The default length is a multiple of this (any model with ``bin * 2**(depth-1)`` dividing it accepts it)."""
COMMAND = "plato prepare"
"""The command that prepares a set, as named in messages."""
VERSION = 3
"""Version of the preparation; part of the settings record. 2: a curve's kind, ``n_transits`` and ``snr`` are those
of its kept samples, and the quarters of one Panopticon simulation share a split. 3: a simulated file is known by
the SHA-256 of its bytes, no longer by its simulation's content hash alone."""

METADATA = ("id", "twin", "split", "kind", "depth", "duration", "snr", "n_transits", "period", "radius",
            "eclipse_depth", "t_start", "cadence", "filled", "file")
"""Per-curve columns: curve id, twin (bool), split, kind (of the kept samples), transit depth [ppm], duration [h],
S/N (of the transits kept), transits (whole or partial) in the kept samples, period [d], planet radius [R_earth],
eclipse depth [ppm], first time stamp [d], cadence [s], grid points interpolated over (the NaN/inf samples of a
curve on a uniform grid; else the points of its gaps), source file."""

FROM_LABELS = {"id": "id", "depth": "depth", "duration": "duration", "period": "period", "radius": "planet_radius",
               "eclipse_depth": "eclipse_depth", "file": "file"}
"""Columns of the set's table copied from the label table (:data:`astrotool_plato.simulate.LABEL_FIELDS`): the
column there, whose unit and description they keep."""

UNITS = {"t_start": "d", "cadence": "s"}
"""Units of the set's table's own columns that have one (the others: :data:`FROM_LABELS`)."""

DESCRIPTIONS = {
    "index": "curve number in the set (row of its flux and label arrays)",
    "twin": "the time-reversed twin of the curve (augment), not the curve itself",
    "split": "train, val or test (a twin and the quarters of one simulation share theirs)",
    "kind": "planet, eb, beb or none: what the kept samples hold",
    "snr": "white-noise S/N of the transits in the kept samples (the label's S/N x sqrt(kept / all transits))",
    "n_transits": "transits (whole or partial) in the kept samples",
    "t_start": "time of the first kept sample (a Panopticon quarter: on its simulation's time axis)",
    "cadence": "step of the uniform time grid",
    "filled": "grid points interpolated over (NaN/inf samples, or gaps), over all channels",
}
"""Descriptions of the set's table's own columns (the others: :data:`FROM_LABELS`)."""


def table_columns() -> dict:
    """``units`` and ``descriptions`` of the set's table (:data:`METADATA` and ``index``), for
    :meth:`astrotool.ml.data.DatasetWriter.finalize`."""
    from astrotool_plato.simulate import LABEL_FIELDS

    fields = {name: (unit, text) for name, _, unit, text in LABEL_FIELDS}
    units = {**{c: fields[f][0] for c, f in FROM_LABELS.items() if fields[f][0]}, **UNITS}
    return {"units": units, "descriptions": {**{c: fields[f][1] for c, f in FROM_LABELS.items()}, **DESCRIPTIONS}}


class PreparedDataset(ArrayDataset):
    """A prepared set of light curves (see the module docstring)."""

    KIND = KIND
    SAMPLE_WORD = "light curve"

    @property
    def length(self) -> int:
        """Samples per curve."""
        return int(self.arrays["flux"][0][-1])

    @property
    def in_channels(self) -> int:
        """Flux channels per curve: 1 (co-added), or the camera groups + 1."""
        shape = self.arrays["flux"][0]
        return int(shape[0]) if len(shape) == 2 else 1

    @property
    def channels(self) -> str:
        """``"coadd"`` or ``"groups"`` (:data:`astrotool_plato.lightcurves.CHANNELS`)."""
        from astrotool_plato.lightcurves import channels_of

        return channels_of(self.in_channels)


def spline_trend(x: np.ndarray, label: np.ndarray, k: int = 3, s: float = 1.0, stride: int = 10) -> np.ndarray:
    """Smoothing-spline trend of a uniformly sampled curve, fitted around its events.

    Parameters
    ----------
    x : numpy.ndarray
        Relative flux.
    label : numpy.ndarray
        Class per sample; non-zero samples (transits, eclipses) are left out of the fit.
    k : int
        Spline degree.
    s : float
        Smoothing in units of ``m * sigma^2`` (``m`` fitted points).
    stride : int
        Fit every ``stride``-th sample.

    Returns
    -------
    numpy.ndarray
        The trend at every sample (the median where the fit has too few points or fails).
    """
    import warnings

    from scipy.interpolate import UnivariateSpline

    from astrotool_plato.lightcurves import noise_sigma

    idx = np.arange(x.size, dtype=np.float64)[::stride]
    use = label[::stride] == 0
    flat = np.full_like(x, float(np.median(x)))
    if use.sum() <= 2 * (k + 1):  # events everywhere: nothing to fit a trend to
        return flat
    sigma = max(noise_sigma(x), 1e-12)
    m = float(use.sum())
    with warnings.catch_warnings():  # "maxit reached": the approximation returned is still a smooth trend
        warnings.simplefilter("ignore")
        trend = UnivariateSpline(idx[use], x[::stride][use], w=np.full(int(m), 1.0 / sigma), k=k, s=s * m)(
            np.arange(x.size, dtype=np.float64))
    return trend if np.isfinite(trend).all() else flat


def twin(x: np.ndarray, trend: np.ndarray) -> np.ndarray:
    """The time-reversed twin about a trend: ``flip(x - trend) + trend`` (along the last axis)."""
    return (x - trend)[..., ::-1] + trend


def _kind(row: dict, planet: bool, eclipse: bool) -> str:
    """A curve's kind from what its kept samples hold: a transit (``planet``), an eclipse (``row``'s binary kind)."""
    return "planet" if planet else (row.get("eclipse") or "none") if eclipse else "none"


def _transits(label: np.ndarray) -> int:
    """Transits (runs of samples labelled planet, whole or partial) in ``label``."""
    return int(np.count_nonzero(np.diff((label == PLANET).astype(np.int8), prepend=0) == 1))


def _first(time: np.ndarray, row: dict) -> tuple[int, int]:
    """The first grid sample labelled planet and eclipse (``time.size`` for none): the kind of a curve cut to
    any length."""
    from astrotool_plato.labels import event_windows, mask

    label = mask(time, event_windows(row, float(time[0]), float(time[-1])))
    return tuple(int(np.argmax(label == c)) if (label == c).any() else time.size for c in (PLANET, ECLIPSE))


FOLDER_PATTERNS = ("*_lightcurves.parquet", "*.ftr")
"""The files ``prepare`` reads from a folder: the simulator's (and ``import-panopticon``'s) Parquet, and Feather
(Panopticon's ``simNNNNN_QK.ftr``, ``export-panopticon``'s)."""


def input_files(sources, raw_dir: Path) -> list[Path]:
    """The light-curve files ``prepare`` reads: ``sources`` (files, names in ``raw_dir`` or folders: their
    :data:`FOLDER_PATTERNS` files), or every ``*_lightcurves.parquet`` of ``raw_dir``."""
    from astrotool_plato.lightcurves import folder_curves
    from astrotool_plato.panopticon import quarters_hint

    if not sources:
        files = sorted(raw_dir.glob("*_lightcurves.parquet"))
        if not files:
            raise AstroError(f"{raw_dir}: no *_lightcurves.parquet; run `{astro_command('plato', 'simulate')}` first")
        return files
    out = []
    for s in sources:
        p = Path(s)
        if not p.exists() and (raw_dir / s).exists():
            p = raw_dir / s
        if p.is_dir():
            found = folder_curves(p, FOLDER_PATTERNS)
            if not found:
                raise InputError(p, f"a folder with no light-curve files (looked for {', '.join(FOLDER_PATTERNS)})"
                                    + quarters_hint(p))
            out += found
        elif p.is_file():
            out.append(p)
        else:
            raise InputError(p, "no such light-curve file or folder")
    return out


def _label_hashes(labels_dir) -> dict[str, tuple[str, str | None]]:
    """``{raw file name: (label table name, its simulation content hash or None)}`` for the label tables that
    record the files of their curves."""
    import pyarrow.parquet as pq

    from astrotool.io.tables import parquet_metadata

    out = {}
    for path in sorted(Path(labels_dir).glob("*_labels.parquet")):
        h = parquet_metadata(path).get("content_hash")
        if "file" in pq.read_schema(path).names:
            for name in set(pq.read_table(path, columns=["file"]).column("file").to_pylist()):
                if h or str(name) not in out:   # a table without the hash hides none with it
                    out[str(name)] = (path.name, h)
    return out


def _identity(files: list[Path], labels: dict, made: dict | None = None, reader: dict | None = None,
              cache: Path | None = None) -> dict:
    """What the inputs are, for the settings record: per file, the SHA-256 of its bytes (``content``: a file
    edited in place, its metadata kept, is never taken for the old), the simulation's content hash where known
    (``simulation``: a file simulated again with other settings names it), and the SHA-256 of the label rows of
    its curves (those its metadata lists, or the id of a one-curve table's curve:
    :func:`astrotool_plato.lightcurves.curve_id`), so a relabelled curve is prepared again.

    ``made``: :func:`_label_hashes`; a file simulated with other settings than the label table of its
    curves (some shards of a job array simulated again with --overwrite) is refused. ``reader``: the options
    of :func:`_read`, recorded for the one-curve tables read with them (not the simulator's Parquet), with a
    Panopticon quarter's time offset. ``cache``: a folder keeping the SHA-256s
    (:func:`astrotool.made_with.file_checksum`), so a rerun reads no unchanged file whole."""
    import hashlib

    from astrotool.io.tables import parquet_metadata
    from astrotool.made_with import file_checksum

    from astrotool_plato.lightcurves import curve_id
    from astrotool_plato.panopticon import quarter_offset

    out = {}
    for f in files:
        try:
            facts = parquet_metadata(f) if f.name.endswith(".parquet") else {}
        except InputError as exc:   # an input: --overwrite does not mend it (the core's hint is for outputs)
            raise InputError(f, exc.problem.replace("; delete it or use --overwrite", "; an input of prepare: "
                                                    "make it again, or leave it out")) from None
        table, h = (made or {}).get(f.name, (None, None))
        if h and facts.get("content_hash") and facts["content_hash"] != h:
            raise InputError(f, f"simulated with other settings than the labels in {table} (some shards simulated "
                                "again?): simulate every shard with the same settings, or all at once with "
                                "--overwrite")
        kept = cache / f"{f.name}.json" if cache else None
        rows = [labels[i] for i in sorted(facts.get("ids") or [curve_id(f)]) if i in labels]
        out[f.name] = {"content": file_checksum(f, kept),
                       "labels": hashlib.sha256(repr(rows).encode()).hexdigest()[:16]}
        if facts.get("content_hash"):
            out[f.name]["simulation"] = facts["content_hash"]
        if "ids" not in facts:   # a one-curve table: read with the reader's options
            out[f.name].update(reader or {})
            if quarter_offset(f):
                out[f.name]["time_offset_d"] = quarter_offset(f)
    return out


LABEL_SUFFIX = "_labels.parquet"
"""Suffix of a label table, ``<name>_labels.parquet``: ``<name>`` is the ``--name`` of its set."""


def _sets(src: list[Path], made: dict) -> dict[str, dict]:
    """The sets the curves read from the files ``src`` (one per curve) belong to: ``{set: {"curves": n,
    "files": [names]}}``, a set being the ``--name`` of ``simulate`` or ``import-panopticon`` whose label table
    (``made``: :func:`_label_hashes`) lists the file, as ``'name'``, else the file's folder."""
    out: dict[str, dict] = {}
    for f in src:
        table = made.get(f.name, (None, None))[0]
        name = repr(table[:-len(LABEL_SUFFIX)]) if table and table.endswith(LABEL_SUFFIX) else f"{f.parent}/"
        entry = out.setdefault(name, {"curves": 0, "files": []})
        entry["curves"] += 1
        if f.name not in entry["files"]:
            entry["files"].append(f.name)
    return out


def _listed_sets(sets: dict, most: int = 5, files: int = 3) -> str:
    """``"'sim' 12 curve(s) in a, b, c and 2 more; ..."`` for the first ``most`` sets of :func:`_sets`."""
    def named(v):
        more = len(v["files"]) - files
        return ", ".join(v["files"][:files]) + (f" and {more} more" if more > 0 else "")

    text = "; ".join(f"{k} {v['curves']} curve(s) in {named(v)}" for k, v in list(sets.items())[:most])
    return text + (f"; and {len(sets) - most} more set(s)" if len(sets) > most else "")


CUT = 0.75
"""A default length (the shortest curve's) that keeps less than this share of the samples of a tenth of the
curves or more (each curve's own length rounded down to :data:`GRANULE`) is warned about: sets of other
lengths mixed (every ``*_lightcurves.parquet`` of ``plato/raw/``)."""


def _warn_cut(log, length: int, sizes: list[int], src: list[Path], ids: list[str], made: dict, cadence_s) -> None:
    """Warn when the default ``length`` cuts many curves well below their own length (:data:`CUT`), naming
    their sets and ``--length``."""
    own = (np.asarray(sizes) // GRANULE) * GRANULE
    cut = np.flatnonzero(length < CUT * own)
    if not cut.size or cut.size * 10 < len(sizes):
        return
    short = int(np.argmin(sizes))
    at = f" at {cadence_s:g} s" if cadence_s else ""
    sets = ", ".join(f"{k} {v['curves']}" for k, v in _sets([src[i] for i in cut], made).items())
    log.warning("length %d samples%s (the shortest curve's, %s in %s: plato.prepare.length = 0) cuts %d of the "
                "%d curves (%s) to less than %d%% of their own length (of up to %d samples); give --length to keep "
                "more of each (curves shorter than it are then left out), or prepare each set on its own (its "
                "files as arguments, another --name)", length, at, ids[short], src[short].name, cut.size,
                len(sizes), sets, round(CUT * 100), int(np.asarray(sizes)[cut].max()))


def _read(f: Path, reader: dict, channels: str, notes: list | None = None) -> dict:
    """The curves of ``f`` (:func:`astrotool_plato.lightcurves.read_curves` with ``reader``'s options), a
    Panopticon quarter's time put on its simulation's axis as ``import-panopticon`` does
    (:func:`astrotool_plato.panopticon.quarter_offset`); the reader's notes go to ``notes``."""
    from astrotool_plato.lightcurves import read_curves
    from astrotool_plato.panopticon import quarter_offset

    shift = quarter_offset(f)
    return {cid: (t + shift, fl) for cid, (t, fl) in read_curves(f, **reader, channels=channels,
                                                                               notes=notes).items()}


def prepare_curve(time: np.ndarray, flux: np.ndarray, row: dict, cfg, length: int):
    """One curve's samples, or the reason it is left out.

    Returns
    -------
    dict or str
        ``{"flux", "label", "t_start", "cadence", "filled"}`` (plus ``"twin"``,
        ``"twin_label"`` with ``cfg.augment``), or why the curve is dropped.
    """
    from astrotool_plato.labels import event_windows, mask
    from astrotool_plato.lightcurves import relative_flux, uniform

    raw_time, raw_flux = time, flux
    time, flux = uniform(time, flux, cfg.cadence_s / 86400.0 if cfg.cadence_s else None)
    if time.size < length:
        return f"{time.size} samples, shorter than length {length}"
    time, flux = time[:length], flux[..., :length]
    if not np.isfinite(flux).any(axis=-1).all():
        return "no finite flux in the kept samples" + (" of a channel" if flux.ndim == 2 else "")
    # drop: NaN/inf in the curve's own samples; the grid's gap points (no sample) are always interpolated
    bad = int((~np.isfinite(raw_flux[..., raw_time <= time[-1]])).sum())
    if bad and cfg.bad_values == "drop":
        return f"{bad} NaN/inf sample(s) (bad_values = drop)"
    x, filled = relative_flux(flux)
    label = mask(time, event_windows(row, float(time[0]), float(time[-1])))
    # the grid's step [s]: the one asked for, or the median step of times in days, whose float64 rounding
    # (~1e-16 d of a time stamp) shows in seconds (25.00000000000071): to the microsecond
    cadence = float(cfg.cadence_s) if cfg.cadence_s else round(float(np.median(np.diff(time))) * 86400.0, 6)
    out = {"flux": x.astype(np.float32), "label": label, "t_start": float(time[0]),
           "cadence": cadence, "filled": filled}
    if cfg.augment:  # every channel about the co-added flux's trend: the twins' mean stays the co-added twin
        trend = spline_trend(x[-1] if x.ndim == 2 else x, label, cfg.spline_k, cfg.spline_s, cfg.spline_stride)
        out["twin"] = twin(x, trend).astype(np.float32)
        out["twin_label"] = label[::-1].copy()
    return out


def prepare(cfg, seed: int, sources, raw_dir, labels_dir, out_root, overwrite: bool = False, log=None,
            reader: dict | None = None) -> dict:
    """Build (or keep) the prepared set ``out_root / cfg.name``.

    Parameters
    ----------
    cfg : astrotool_plato.config.PrepareConfig
    seed : int
        Seed of the split.
    sources : list of str
        Light-curve files or folders (default: every ``*_lightcurves.parquet`` in ``raw_dir``).
    raw_dir, labels_dir, out_root : path-like
        ``plato/raw``, ``plato/labels`` (the label tables) and ``plato/prepared``.
    overwrite : bool
        Replace a set made with other settings.
    log : logging.Logger, optional
    reader : dict, optional
        ``time_column``, ``flux_column``, ``time_unit`` of one-curve tables
        (:func:`astrotool_plato.lightcurves.read_curves`); a time axis in another
        unit is refused (:func:`astrotool_plato.lightcurves.check_time_scale`).

    Returns
    -------
    dict
        Summary: path, curves, twins, dropped (reasons), split sizes, kinds, length, kept,
        ``empty_splits`` (a split with a positive share whose curves were all dropped: its curve ids; also
        in the set's attributes, and warned about) and ``inputs``: the light-curve files and label tables
        read.
    """
    from astrotool import made_with as mw
    from astrotool.ml.data import group_split

    from astrotool_plato.labels import read_label_tables
    from astrotool_plato.lightcurves import MAX_STEP_D, check_time_scale, grid_times, log_notes
    from astrotool_plato.panopticon import simulation_of

    reader = {k: v for k, v in (reader or {}).items() if v and (k, v) != ("time_unit", "d")}  # defaults: unrecorded
    files = input_files(sources, Path(raw_dir))
    labels = read_label_tables(labels_dir)
    read = [str(f) for f in [*files, *sorted(Path(labels_dir).glob("*_labels.parquet"))]]
    if not labels:
        raise AstroError(f"{labels_dir}: no *_labels.parquet label table; "
                         f"run `{astro_command('plato', 'simulate')}` first")
    folder = Path(out_root) / cfg.name
    made = _label_hashes(labels_dir)
    settings = {**cfg.model_dump(mode="json", exclude={"name", "shard_size", "seed"}),
                "inputs": _identity(files, labels, made, reader, Path(out_root) / f".{cfg.name}_checksums")}
    if cfg.bad_values == "drop":   # gaps are interpolated now, no longer dropped: older sets count as other settings
        settings["drop"] = "NaN/inf samples of the curve, not its gaps"
    rec = mw.record(settings, seed=seed, version=VERSION)
    manifest = folder / f"{cfg.name}_dataset.json"
    if mw.keep([manifest], rec, overwrite=overwrite, forget=False):   # the new set is swapped in with its record
        ds = PreparedDataset(folder)
        twins = int(np.asarray(ds.metadata()["twin"], bool).sum())   # counted as a fresh run counts them
        return {"path": str(folder), "kept": True, "curves": ds.n - twins, "twins": twins, "length": ds.length,
                "inputs": read}

    # first pass: ids and grid lengths only, one file in memory at a time
    cadence = cfg.cadence_s / 86400.0 if cfg.cadence_s else None
    ids_l, sizes, src, firsts = [], [], [], []
    seen: dict[str, Path] = {}
    seen_files: set[Path] = set()
    notes: list[str] = []   # what the reader chose or dropped, logged once (first pass)
    for f in files:
        if f.resolve() in seen_files:
            raise InputError(f, "given twice")
        seen_files.add(f.resolve())
        curves = _read(f, reader, cfg.channels, notes)
        for cid, (t, _) in curves.items():
            if cid not in labels:
                raise InputError(f, f"curve {cid!r} has no row in the label tables of {labels_dir}")
            if cid in seen:
                listed = labels[cid].get("file")
                old = seen[cid] if listed == f.name else f if listed == seen[cid].name else None
                raise InputError(f, f"curve {cid!r} is also in {seen[cid]}; a curve may be in one file only"
                                    + (f" (the label tables list it in {listed}: {old.name} is of an earlier "
                                       "layout; delete it)" if old else ""))
            seen[cid] = f
            ids_l.append(cid)
            sizes.append(check_time_scale(t, cadence, f"{f}: {cid}" if len(curves) > 1 else str(f),
                                          reader.get("time_unit", "d"), MAX_STEP_D))
            src.append(f)
            firsts.append(_first(grid_times(t, cadence), labels[cid]))
    if log:
        log_notes(log, notes)
    if not ids_l:
        raise AstroError("no light curves in " + ", ".join(map(str, files)))
    if log:
        sets = _sets(src, made)
        log.info("%d curve(s) of %d set(s) (their --name in simulate or import-panopticon, else their folder): %s",
                 len(ids_l), len(sets), _listed_sets(sets))
    length = cfg.length or (min(sizes) // GRANULE) * GRANULE
    if cfg.length and length < GRANULE:
        raise InputError("--length", f"{cfg.length} samples; at least {GRANULE} are needed (0: the shortest "
                                     "curve's length)")
    if length < GRANULE:
        raise InputError(src[int(np.argmin(sizes))], f"the shortest curve has {min(sizes)} samples"
                         f"{f' at {cfg.cadence_s:g} s' if cfg.cadence_s else ''}; at least {GRANULE} are needed")
    if log and not cfg.length:
        _warn_cut(log, length, sizes, src, ids_l, made, cfg.cadence_s)

    ids = np.array(ids_l)
    kinds = np.array([_kind(labels[c], p < length, e < length) for c, (p, e) in zip(ids, firsts)])
    split_of = np.empty(len(ids), dtype=object)
    # by simulation (Panopticon's quarters of one star together), stratified by its kind (a transit in any of its
    # kept quarters: planet; else an eclipse; else none) where every kind has a simulation for every split
    groups = np.array([simulation_of(c) for c in ids])
    rank = {"planet": 0, "none": 2}   # binaries: 1
    kind_of: dict[str, str] = {}
    for g, k in zip(groups, kinds):
        kind_of[g] = min(kind_of.get(g, k), k, key=lambda x: rank.get(x, 1))
    counts = {k: list(kind_of.values()).count(k) for k in set(kind_of.values())}
    n_sets = sum(1 for f in cfg.split if f > 0)
    strata = [kind_of[g] for g in groups] if min(counts.values()) >= n_sets else None
    for name, idx in zip(SPLITS, group_split(groups, cfg.split, seed, strata=strata)):
        split_of[idx] = name

    with atomic_dir(folder) as tmp:  # the old set stays until the new is complete
        writer = DatasetWriter(str(tmp), cfg.name, shard_product="curves", table_product="curves", kind=KIND,
                               command=COMMAND)
        dropped: dict[str, str] = {}
        buf: dict[str, list] = {"flux": [], "label": [], **{c: [] for c in METADATA}}
        n_done = shard = 0

        def flush():
            nonlocal n_done, shard
            if not buf["flux"]:
                return
            meta = {c: np.asarray(buf[c]) for c in METADATA}
            writer.write_shard(shard, n_done, {"flux": np.stack(buf["flux"]), "label": np.stack(buf["label"])}, meta)
            n_done += len(buf["flux"])
            shard += 1
            for v in buf.values():
                v.clear()

        train_transits = 0   # training curves with a sample labelled transit: none, and `train` learns no transit

        def add(cid, file, row, sample, x, lab, is_twin):
            nonlocal train_transits
            train_transits += int(split_of_id[cid] == "train" and bool((lab == PLANET).any()))
            buf["flux"].append(x)
            buf["label"].append(lab)
            n_row, n_kept = int(row.get("n_transits") or 0), _transits(lab)   # the S/N of the transits kept
            values = {"id": cid, "twin": is_twin, "split": split_of_id[cid],
                      "kind": _kind(row, bool((lab == PLANET).any()), bool((lab == ECLIPSE).any())),
                      "depth": _num(row.get("depth")), "duration": _num(row.get("duration")),
                      "snr": _num(row.get("snr")) * (math.sqrt(n_kept / n_row) if n_row else 1.0),
                      "n_transits": n_kept, "period": _num(row.get("period")),
                      "radius": _num(row.get("planet_radius")),
                      "eclipse_depth": _num(row.get("eclipse_depth")),
                      "t_start": sample["t_start"], "cadence": sample["cadence"], "filled": sample["filled"],
                      "file": file}
            for c in METADATA:
                buf[c].append(values[c])

        split_of_id = dict(zip(ids, split_of))
        for cid, file, t, fl in ((cid, f.name, t, fl) for f in files  # second pass: file by file
                                 for cid, (t, fl) in _read(f, reader, cfg.channels).items()):
            row = labels[cid]
            lo, hi = cfg.depth_bounds
            if row.get("has_transit") and not lo <= float(row["depth"]) < hi:
                dropped[cid] = f"transit depth {float(row['depth']):.0f} ppm outside depth_bounds [{lo:g}, {hi:g})"
                continue
            sample = prepare_curve(t, fl, row, cfg, length)
            if isinstance(sample, str):
                dropped[cid] = sample
                continue
            add(cid, file, row, sample, sample["flux"], sample["label"], False)
            if cfg.augment:
                add(cid, file, row, sample, sample["twin"], sample["twin_label"], True)
            if len(buf["flux"]) >= cfg.shard_size:
                flush()
        flush()
        if n_done == 0:
            raise AstroError(f"every light curve was dropped: {_listed(dropped)}")
        # the splits were drawn before the drops: one may have lost all its curves
        kept = {split_of_id[c] for c in ids if c not in dropped}
        empty_splits = {name: [c for c in ids if split_of_id[c] == name]
                        for name, share in zip(SPLITS, cfg.split) if share > 0 and name not in kept}
        writer.finalize(shard, attrs={"length": length, "settings": rec["settings"],
                                      "classes": ["continuum", "planet", "eclipse"], "dropped": dropped,
                                      "empty_splits": empty_splits}, **table_columns())
        mw.write(tmp / manifest.name, rec)  # inside the set: swapped in with it, never a set without its record
    if dropped and log:
        log.warning("left out %d curve(s): %s", len(dropped), _listed(dropped))
    for name, lost in empty_splits.items() if log else ():
        log.warning("the %r split (share %g of plato.prepare.split) is empty: its %d curve(s) were all left out "
                    "(%s); `evaluate --split %s` has nothing to score (prepare more curves, or another seed or "
                    "split)", name, cfg.split[SPLITS.index(name)], len(lost),
                    _listed({c: dropped[c] for c in lost}), name)
    if not train_transits and log:
        planets = list(ids[kinds == "planet"])
        lost = [c for c in planets if c in dropped]
        log.warning("the 'train' split holds no transit: none of its curves has a sample labelled transit, so "
                    "`train` has no transit to learn%s", (
                        f"; {len(lost)} of the {len(planets)} curve(s) with a transit were left out (listed "
                        "above; see plato.prepare.depth_bounds, --filter-inf)" if lost else
                        f" ({len(planets)} curve(s) with a transit among the {len(ids)}, none in the training "
                        f"split's kept samples)"))
    ds = PreparedDataset(folder)
    meta = ds.metadata(["split", "twin", "kind"])
    split = np.asarray(meta["split"]).astype(str)
    kind = np.asarray(meta["kind"]).astype(str)
    return {"path": str(folder), "kept": False, "inputs": read, "curves": int((~np.asarray(meta["twin"])).sum()),
            "twins": int(np.asarray(meta["twin"]).sum()), "length": length, "dropped": dropped,
            "splits": {s: int((split == s).sum()) for s in SPLITS}, "empty_splits": empty_splits,
            "kinds": {k: int((kind == k).sum()) for k in sorted(set(kind))}}


def _listed(dropped: dict, most: int = 5) -> str:
    """``"id: reason; ..."`` for the first ``most`` curves of ``dropped``, then how many more."""
    text = "; ".join(f"{k}: {v}" for k, v in list(dropped.items())[:most])
    return text + (f"; and {len(dropped) - most} more" if len(dropped) > most else "")


def _num(v) -> float:
    return math.nan if v is None else float(v)
