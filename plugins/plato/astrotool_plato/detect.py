"""``astro plato detect``: single transits in light-curve files, as an event table.

Each curve (:func:`astrotool_plato.lightcurves.read_curves`: the simulator's
Parquet, or Feather, Parquet, CSV or FITS tables; quality-flagged cadences and rows
without a finite time dropped; a time axis in another unit than the one given
refused by :func:`astrotool_plato.lightcurves.check_time_scale`) is put on a uniform grid at the model's
cadence (linear interpolation; gaps are filled and counted), turned into
relative flux, padded by reflection to the network's granularity, and its
per-sample probabilities are cut into events (:mod:`astrotool_plato.events`,
``[plato.events]``). Files are work items of the run's executor (``--jobs``,
``--executor``), so thousands of curves run in parallel; a bad file is named
with its problem and the others still run.

The table ``plato/runs/<name>/<name>_events.parquet`` (and ``.csv``) has one row
per event: ``file``, ``id``, ``t_mid`` [d], ``duration`` [h], ``depth`` [ppm],
``snr``, ``peak_probability`` (:data:`EVENT_COLUMNS`), and curves without an event are listed in the summary.
"""

from __future__ import annotations

import functools
import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from astrotool_plato.config import EventsConfig
from astrotool_plato.lightcurves import CurveReader

__docformat__ = "numpy"

EVENT_COLUMNS = {
    # name: (unit, description)
    "file": ("", "light-curve file"),
    "id": ("", "curve identifier (the file stem for one-curve files)"),
    "t_mid": ("d", "probability-weighted mid-time of the event, in the file's time frame"),
    "duration": ("h", "time above the threshold (longer than the transit: the probability spreads past its edges)"),
    "depth": ("1e-06", "depth [ppm]: median flux around the event minus the mean over the middle half of the "
                       "event"),
    "snr": ("", "box S/N of the whole event: its mean deficit over the curve's scatter binned at the event's "
                "length (red noise included)"),
    "peak_probability": ("", "highest transit probability in the event"),
}
"""Columns of the events table: name -> (unit, description)."""


MAX_SHOWN = 30
"""Events printed (all are in the table)."""


@dataclass(frozen=True)
class DetectItem:
    """One light-curve file to search."""

    path: str
    model_dir: str
    events: EventsConfig
    reader: CurveReader = CurveReader()
    batch_size: int = 4
    device: str = "cpu"
    key: str = ""    # the file's name in the table (:func:`item_keys`)
    part: str = ""   # where its rows wait for the other items' (:func:`detect_file`)


def _model(model_dir: str):
    """The checkpoint's metadata and model, loaded once per process and weights file version."""
    from astrotool.ml.checkpoint import WEIGHTS_FILE

    return _load(model_dir, (Path(model_dir) / WEIGHTS_FILE).stat().st_mtime_ns)


@functools.lru_cache(maxsize=2)
def _load(model_dir: str, stamp: int):
    from astrotool.ml.checkpoint import build_model, load_checkpoint, warn_unfinished

    from astrotool_plato.model import ARCHITECTURE, make_model

    ckpt = load_checkpoint(model_dir, ARCHITECTURE)
    warn_unfinished(ckpt.meta, ckpt.path, "astro plato train")
    return ckpt.meta, build_model(ckpt, {ARCHITECTURE: make_model})


COARSE_CADENCE = 2.0
"""A curve sampled more than this many times more coarsely than the model's cadence gets a warning: in
interpolated samples a transit no longer looks like the ones the model learnt (a small model trained at
25 s found a 2000 ppm, 4 h transit in curves sampled every 25 and 50 s, and none at 2 and 10 minutes)."""


def coarse_message(coarse: dict, cadence_s: float, files: int = 3, cadences: int = 5) -> str:
    """``3 curve(s) sampled more than 2 times as coarsely as the model's 25 s: a.fits every 120 s; b.fits,
    c.fits every 1800 s``: the curves of ``coarse`` (``{name: its cadence [s]}``) grouped by cadence, the coarsest last,
    at most ``files`` named per cadence and ``cadences`` cadences (the others counted)."""
    by: dict[float, list] = {}
    for name, step in coarse.items():
        by.setdefault(step, []).append(name)
    shown = sorted(by)[:cadences]
    parts = [", ".join(by[s][:files]) + (f" (and {len(by[s]) - files} more)" if len(by[s]) > files else "")
             + f" every {s:g} s" for s in shown]
    rest = sum(len(by[s]) for s in by if s not in shown)
    return (f"{len(coarse)} curve(s) sampled more than {COARSE_CADENCE:g} times as coarsely as the model's "
            f"{cadence_s:g} s: " + "; ".join(parts) + (f"; {rest} more at other cadences" if rest else ""))


def model_cadence(meta: dict) -> float:
    """The cadence [s] a checkpoint was trained at (``meta["cadence_s"]``)."""
    return float(meta["cadence_s"])


def model_channels(model) -> str:
    """What a model reads: ``"coadd"`` (one channel) or ``"groups"`` (camera groups, then the co-added flux)."""
    from astrotool_plato.lightcurves import channels_of

    return channels_of(getattr(model, "in_channels", 1))


def event_spans(prob: np.ndarray, x: np.ndarray, cadence_s: float, events: EventsConfig,
                measured: np.ndarray | None = None, threshold: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The events of one curve as sample spans: runs above the threshold (merged, shortest dropped,
    :func:`astrotool_plato.events.find_events`), trimmed to their measured samples, then vetted
    (:func:`astrotool_plato.events.vetted`). ``detect`` and ``evaluate`` both cut events here.

    Parameters
    ----------
    prob, x : numpy.ndarray
        Probability and relative flux per sample, on a uniform grid.
    cadence_s : float
        Sampling interval [s].
    events : astrotool_plato.config.EventsConfig
    measured : numpy.ndarray, optional
        Per sample, whether it was measured (not a gap the grid filled with a straight line). An event is
        trimmed to its first and last measured sample at or above the threshold (the network's probability
        runs on over the fill beside a transit at a gap's edge), and dropped when none is left or the trimmed
        event is shorter than ``min_duration_hours`` (it lay in the fill); the fill is NaN in the flux the
        vetting measures. Default: all measured.
    threshold : float, optional
        Instead of ``events.threshold`` (``evaluate`` sweeps a grid).

    Returns
    -------
    kept : numpy.ndarray
        ``(k, 2)`` start/stop (exclusive) samples of the events kept.
    found : numpy.ndarray
        ``(j, 2)`` every event found (trimmed), before vetting: left out of the noise of each S/N.
    loud : int
        How many of them passed vetting's first step, ``min_snr`` (the rest of the drop is the binary test's).
    """
    from astrotool_plato.events import find_events, vetted

    thr = events.threshold if threshold is None else threshold
    merge = int(round(events.merge_gap_hours * 3600.0 / cadence_s))
    min_len = max(1, int(round(events.min_duration_hours * 3600.0 / cadence_s)))
    found = find_events(prob, thr, merge, min_len)
    if measured is not None:
        x = np.where(measured, x, np.nan)
        spans = []
        for a, b in found:
            on = np.flatnonzero(measured[a:b] & (prob[a:b] >= thr))
            if on.size and on[-1] + 1 - on[0] >= min_len:
                spans.append((a + on[0], a + on[-1] + 1))
        found = np.array(spans, int).reshape(-1, 2)
    loud = vetted(found, x, events.min_snr, 0.0)   # vetting's two steps apart, to count each one's drop
    return vetted(loud, x, 0.0, events.binary_snr), found, len(loud)


def curve_events(prob: np.ndarray, x: np.ndarray, t_start: float, cadence_s: float, events: EventsConfig,
                 measured: np.ndarray | None = None) -> tuple[list, dict]:
    """The event rows of one curve (:func:`astrotool_plato.events.describe`) of the events of
    :func:`event_spans`, and how many events vetting left out; each S/N is measured once with every event
    found masked, so it is the value the vetting saw whatever ``min_snr`` dropped.

    Parameters
    ----------
    prob, x : numpy.ndarray
        Probability and relative flux per sample, on a uniform grid.
    t_start : float
        Time of sample 0 [d].
    cadence_s : float
        Sampling interval [s].
    events : astrotool_plato.config.EventsConfig
    measured : numpy.ndarray, optional
        Per sample, whether it was measured (not a gap the grid filled): events are trimmed to their measured
        samples (:func:`event_spans`), and mid-time, depth, S/N and peak probability come from those only (a
        filled gap is a straight line, without noise). Default: all.

    Returns
    -------
    rows : list of dict
    left_out : dict
        Events found but not kept: ``{"low_snr": below events.min_snr, "binary": on an eclipsing binary's
        cycles at events.binary_snr}`` (:func:`astrotool_plato.events.vetted`).
    """
    from astrotool_plato.events import describe

    kept, found, loud = event_spans(prob, x, cadence_s, events, measured)
    if measured is not None:
        x, prob = np.where(measured, x, np.nan), np.where(measured, prob, 0.0)
    return (describe(prob, x, kept, t_start, cadence_s, masked=found),
            {"low_snr": len(found) - loud, "binary": loud - len(kept)})


def search_curves(curves: dict, model, cadence_s: float, events: EventsConfig, batch_size: int = 4,
                  device: str = "cpu", names: dict | None = None) -> dict:
    """Events of several curves with one model.

    Parameters
    ----------
    curves : dict
        ``{id: (time [d], flux)}``.
    model : astrotool_plato.model.TransitNet
    cadence_s : float
        The model's cadence [s]; curves are interpolated onto it.
    events : astrotool_plato.config.EventsConfig
        Threshold, merge gap, minimum duration and vetting (:func:`astrotool_plato.events.vetted`).
    batch_size : int
    device : str
    names : dict, optional
        ``{id: name in errors}`` (its file); default: the id.

    Returns
    -------
    dict
        ``{id: {"events": [row, ...], "left_out": dict, "probability": array, "time": array, "flux": array,
        "filled": int, "seconds": float}}``: the events vetting left out (:func:`curve_events`), the
        probability, time [d] and relative flux on the model's uniform grid, and the curve's share of its
        batch's forward time [s].

    Raises
    ------
    astrotool.errors.InputError
        A curve too short for the network's granularity, named with its own sample count and span.
    """
    import torch

    from astrotool.errors import InputError
    from astrotool.ml.predict import predict

    from astrotool_plato.lightcurves import check_time_scale, relative_flux, uniform
    from astrotool_plato.model import min_samples, pad_to

    step = cadence_s / 86400.0
    grid, measured = {}, {}
    for cid, (time, flux) in curves.items():
        check_time_scale(time, step, cid)
        t, f = uniform(time, flux, step)
        x, filled = relative_flux(f)
        measured[cid] = np.isfinite(f[-1] if f.ndim == 2 else f)
        n, n_in = (x.shape[0] if x.ndim == 2 else 1), getattr(model, "in_channels", 1)
        if n != n_in:   # e.g. a file of 2 camera groups for a model of 4
            raise InputError(cid, f"{n} flux channel(s); the model reads {n_in}")
        try:
            grid[cid] = (t, x, filled, *pad_to(x.astype(np.float32), model.granularity, model.min_length))
        except ValueError:   # reflection pads less than the curve's length, and so do the deepest convolutions
            k = min_samples(model.granularity, model.min_length)
            raise InputError((names or {}).get(cid, cid), f"a curve of {np.asarray(time).size} samples over "
                                                          f"{(time[-1] - time[0]) * 24.0:.2f} h is too short for "
                                                          f"this model at {cadence_s:g} s (it needs at least "
                                                          f"{(k - 1) * cadence_s / 3600.0:.2f} h: {k} samples)"
                                                          ) from None
    by_length: dict[int, list] = {}   # curves of one padded length run in batches of batch_size
    for cid, (_, _, _, xp, _) in grid.items():
        by_length.setdefault(xp.size, []).append(cid)
    out = {}
    for ids in by_length.values():
        pred = predict(model, torch.from_numpy(np.stack([grid[c][3] for c in ids])), batch_size=batch_size,
                       device=device)
        logits = np.asarray(pred.outputs, np.float64)
        for row, cid in enumerate(ids):
            t, x, filled, _, n = grid[cid]
            x = x[-1] if x.ndim == 2 else x   # the co-added flux
            prob = 1.0 / (1.0 + np.exp(-logits[row, :n]))
            rows, left_out = curve_events(prob, x, float(t[0]), cadence_s, events, measured[cid])
            out[cid] = {"events": rows, "left_out": left_out, "probability": prob, "time": t,
                        "flux": x, "filled": filled, "seconds": pred.seconds / len(ids)}
    return out


def detect_file(item: DetectItem, seed: int = 0) -> dict:
    """Search one file (an executor item): its event rows and per-curve facts, also kept in ``item.part``
    (JSON) until the table is written; a part already there is read instead (a rerun, another --shard task)."""
    import json

    from astrotool.workspace import atomic_path

    from astrotool_plato.lightcurves import check_time_scale

    if item.part and Path(item.part).is_file():
        return json.loads(Path(item.part).read_text())
    meta, model = _model(item.model_dir)
    notes: list[str] = []
    curves = item.reader.read(item.path, model_channels(model), notes)
    coarse = {}   # curves sampled much more coarsely than the model: {name: their cadence [s]}
    for cid, (t, _) in curves.items():   # before resampling, naming the file
        where = f"{item.path}: {cid}" if len(curves) > 1 else item.path
        check_time_scale(t, model_cadence(meta) / 86400.0, where, item.reader.time_unit)
        step_s = round(float(np.median(np.diff(t))) * 86400.0, 1) if len(t) > 1 else 0.0   # [s], as told
        if step_s > COARSE_CADENCE * model_cadence(meta):
            coarse[str(where)] = step_s
    res = search_curves(curves, model, model_cadence(meta), item.events, item.batch_size, item.device,
                        {cid: f"{item.path}: {cid}" if len(curves) > 1 else item.path for cid in curves})
    cols = ("t_mid", "duration", "depth", "snr", "peak_probability")
    rows = [{"file": item.key or Path(item.path).name, "id": cid, **{k: e[k] for k in cols}}
            for cid, r in res.items() for e in r["events"]]
    out = {"rows": rows, "notes": notes, "coarse": coarse, "cadence_s": model_cadence(meta),
           "curves": {cid: {"events": len(r["events"]), "filled": r["filled"], "samples": int(r["time"].size),
                            "seconds": r["seconds"], "left_out": r["left_out"]} for cid, r in res.items()}}
    if item.part:
        Path(item.part).parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(item.part) as tmp:
            Path(tmp).write_text(json.dumps(out))
    return out


VERSION = 3
"""Version of the event cutting, part of an event table's settings, so a table or a stopped run's parts of an
earlier version are not reused. 2: an event at a gap's edge is trimmed to its measured samples (it was dropped
when over half of it was gap). 3: a curve sampled more coarsely than the model's cadence is measured between its
samples (they were taken for gaps: its events' S/N was NaN)."""


def detect_settings(model_dir, events: EventsConfig, detect, root=None) -> dict:
    """What makes an event table (kept in its metadata; a rerun under its name with others is refused): the
    model's folder (relative to the workspace ``root`` when inside it,
    :func:`astrotool.made_with.record_path`) and weights (:func:`astrotool.made_with.file_checksum`),
    ``[plato.events]``, how the files are read and the :data:`VERSION` of the event cutting."""
    from astrotool import made_with as mw
    from astrotool.ml.checkpoint import WEIGHTS_FILE

    return {"version": VERSION,
            "model": mw.record_path(model_dir, root), "weights": mw.file_checksum(Path(model_dir) / WEIGHTS_FILE),
            "events": events.model_dump(mode="json"),
            "reader": dataclasses.asdict(CurveReader.of(detect))}


def curve_files(sources, log=None) -> list[str]:
    """The light-curve files of ``sources`` as given: a folder stands for its files whose names end in one of
    :data:`astrotool_plato.lightcurves.CURVE_SUFFIXES` (:func:`astrotool_plato.lightcurves.folder_curves`),
    and how many it held is logged.

    Raises
    ------
    astrotool.errors.InputError
        A folder without such a file.
    """
    from astrotool.errors import InputError

    from astrotool_plato.lightcurves import CURVE_SUFFIXES, folder_curves

    out = []
    for s in sources:
        if not Path(s).is_dir():
            out.append(s)   # a file, or a missing one: named by the reader, as a failed item
            continue
        found = [str(f) for f in folder_curves(s)]
        if not found:
            raise InputError(s, "a folder with no light-curve files (looked for "
                                f"{', '.join('*' + x for x in CURVE_SUFFIXES)})")
        if log is not None:
            log.info("%s: a folder of %d light-curve file(s)", s, len(found))
        out += found
    return out


def item_keys(files) -> list[str]:
    """Executor keys of light-curve files: their names, or the paths as given where two names are alike.

    Raises
    ------
    astrotool.errors.InputError
        A file given twice.
    """
    from astrotool.errors import InputError

    seen: dict = {}
    for f in files:
        if Path(f).resolve() in seen:
            raise InputError(f, "given twice")
        seen[Path(f).resolve()] = f
    names = [Path(f).name for f in files]
    return names if len(set(names)) == len(names) else [str(f) for f in files]


def write_events(rows: list[dict], path, command: str = "plato detect", files=(),
                 metadata: dict | None = None) -> Path:
    """The event table as Parquet (units and descriptions; ``files``, the light curves searched, and
    ``metadata`` in its metadata) and the same rows as CSV beside it."""
    import csv

    import pyarrow as pa

    from astrotool.io.tables import write_parquet
    from astrotool.workspace import atomic_path

    fields = [pa.field(k, pa.string() if k in ("file", "id") else pa.float64(),
                       metadata={"unit": u, "description": d}) for k, (u, d) in EVENT_COLUMNS.items()]
    table = pa.table({f.name: pa.array([r[f.name] for r in rows], f.type) for f in fields}, schema=pa.schema(fields))
    meta = {**({"files": [str(f) for f in files]} if files else {}), **(metadata or {})}
    write_parquet(table, path, metadata=meta or None, command=command)
    with atomic_path(Path(path).with_suffix(".csv")) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(EVENT_COLUMNS))
        w.writeheader()
        w.writerows(rows)
    return Path(path)


def _files_change(before: list, now: list) -> str:
    """``files searched: a.csv, b.csv -> a.csv, c.csv``: names, or the paths when the names are alike."""
    def few(paths, name=True):
        return ", ".join(Path(f).name if name else str(f) for f in paths[:3]) + (", ..." if len(paths) > 3 else "")

    alike = few(before) == few(now)
    return f"files searched: {few(before, not alike)} -> {few(now, not alike)}"


def detect_command(ctx, cfg, files, runtime) -> dict:
    """``astro plato detect FILE...``: search every file, write the event table, print the events.

    Each file's rows wait in a part file (``plato/runs/<name>/.parts/``) until every file is searched or has
    failed, so ``--shard`` tasks each search their share and the last one writes the table, as
    :mod:`astrotool.parts` describes: a task rerun without ``--overwrite`` whose files the table holds is kept;
    a lone ``--overwrite`` task replaces its files' events in the table."""
    import json

    import astrotool
    from astrotool import console
    from astrotool import made_with as mw
    from astrotool import parts
    from astrotool.console import json_results
    from astrotool.errors import AstroError, InputError
    from astrotool.io.tables import parquet_metadata, read_parquet

    from astrotool_plato import NAME, RUNS, __version__
    from astrotool_plato.evaluate import load_model
    from astrotool_plato.lightcurves import log_notes

    d, ev = cfg.detect, cfg.events
    mdir, _ckpt, _model_ = load_model(ctx, d.model or cfg.train.model, f"{cfg.train.dataset}_{cfg.train.decoder}")
    if not files:
        raise AstroError("give at least one light-curve file")
    name = d.name or mdir.name
    out = ctx.workspace.stage(NAME, RUNS) / name / f"{name}_events.parquet"
    root = ctx.workspace.root   # files and model inside the workspace: named relative to it (a copy's rerun)
    searched = sorted(mw.record_path(f, root) for f in files)
    settings = detect_settings(mdir, ev, d, root)
    if out.exists() and not ctx.overwrite:
        before = parquet_metadata(out)
        old = dict(before.get("settings") or {})
        if old.get("model") == mw.record_path(mdir):   # a table of an earlier version: absolute paths
            old["model"] = settings["model"]
        was = sorted(mw.record_path(f, root) if Path(f).is_absolute() else f for f in before.get("files") or [])
        changed = mw.changes(old, settings) if "settings" in before else []
        if before.get("files") is not None and was != searched:
            gone = [f for f in files if not Path(f).exists()]
            if gone:   # a mistyped path, not another run: named as such, not as a change of this run's files
                raise InputError(gone[0], "no such light-curve file" + (f" (nor {len(gone) - 1} other(s))"
                                                                        if len(gone) > 1 else ""))
            changed.insert(0, _files_change(was, searched))
        if changed:
            raise mw.SettingsChanged(out, changed,
                                     hint="give this run another --name, or use --overwrite to replace its events")
    keys = item_keys(files)
    folder = out.parent / ".parts"
    run_id = parts.run_digest({"settings": settings, "files": searched},   # parts 2: they count left_out
                              {"events": VERSION, "parts": 2, "astrotool_plato": __version__,
                               "astrotool": astrotool.__version__})
    device = runtime.inference_device()   # checked once for the run, not once per file
    items = [DetectItem(str(Path(f)), str(mdir), ev, CurveReader.of(d), d.batch_size, device, k,
                        str(parts.part_path(folder, run_id, k, f, ".json")))
             for f, k in zip(files, keys)]
    by_key = {it.key: it.part for it in items}
    mine_items = ctx.shard_of(items)
    mine = ctx.shard_of(files)
    mine_parts = {it.key: it.part for it in mine_items}
    if ctx.executor_options.shard is not None and not ctx.overwrite and out.exists() \
            and parts.held(parquet_metadata(out), mine_parts) == set(mine_parts):
        ctx.log.info("%s: kept: it holds this task's file(s), searched with the same settings", out)
        summary = {"model": mdir.name, "files": len(mine), "curves": 0, "events": 0,
                   "left_out": {"low_snr": 0, "binary": 0}, "curves_with_events": 0,   # nothing searched now
                   "seconds_per_curve": None, "table": str(out), "kept": True}
        ctx.emit({**summary, "events": []} if json_results() else summary)
        return summary
    with parts.lock(out):   # under --overwrite: searched again (not while another task reads the parts)
        parts.clear_mine([it.part for it in mine_items], ctx.overwrite)
    since = len(ctx.failures)
    from astrotool.executors import failure_line

    results = ctx.map(detect_file, items, "detect", keys=keys)
    rows = [r for _, res in results for r in res["rows"]]
    log_notes(ctx.log, [note for _, res in results for note in res["notes"]])
    coarse = {k: (v, res["cadence_s"]) for _, res in results for k, v in (res.get("coarse") or {}).items()}
    if coarse:
        ctx.log.warning("%s: interpolated onto its cadence, a transit looks unlike those it was trained on, and "
                        "it may find none; `astro plato bls` searches such curves as they are",
                        coarse_message({k: v for k, (v, _) in coarse.items()}, next(iter(coarse.values()))[1]))
    curves = {f"{k}: {cid}" if len(res["curves"]) > 1 else k: c for k, res in results
              for cid, c in res["curves"].items()}
    def rows_of(table, keys) -> dict:   # the events of files whose parts are gone into the table
        by_file: dict = {k: [] for k in keys}
        for r in read_parquet(table).to_pylist():
            if r["file"] in by_file:
                by_file[r["file"]].append(r)
        return by_file

    table = None
    with parts.lock(out):   # reading the parts and writing the table: one task at a time (astrotool.parts)
        parts.mark_failed({by_key[f.key]: f.error for f in ctx.failures[since:]})   # a failed file counts as
        found, failed, waiting, from_parts = parts.gather(                            # finished for the others
            by_key, lambda p: json.loads(Path(p).read_text())["rows"], out, rows_of)
        if waiting:
            parts.log_waiting(ctx.log, len(items) - len(waiting), len(items), out,
                              len(parts.of_other_runs(by_key, waiting)))
        elif found:
            done = [it for it in items if it.key in found]
            table = [r for it in done for r in found[it.key]]
            write_events(table, out, files=searched, metadata={
                "settings": settings, "searched": [str(Path(it.path).resolve()) for it in done],
                "file_keys": {it.key: str(Path(it.path).resolve()) for it in done},
                parts.RECORD_KEY: parts.merged_record(run_id, by_key, found)})
            ctx.record.add_output(out)
            ctx.record.add_output(out.with_suffix(".csv"))
            if failed:   # the parts stay: a rerun of the failed files' tasks writes the whole table
                ctx.log.warning("%s lists %d of %d file(s); failed: %s; rerun the task(s) that search them (the "
                                "others' events are kept)", out, len(done), len(items),
                                "; ".join(failure_line(k, e) for k, e in failed.items()))
            else:   # every file is in the table: the parts it merged are not needed any more
                parts.remove(folder, run_id, [by_key[k] for k in from_parts], by_key.values())
    for f in mine:
        ctx.record.add_input(Path(f).resolve())
    written = table is not None
    seconds = sum(c["seconds"] for c in curves.values())
    left_out = {k: sum(c.get("left_out", {}).get(k, 0) for c in curves.values()) for k in ("low_snr", "binary")}
    if any(left_out.values()):   # else "0 event(s)" would read as nothing found
        ctx.log.info("vetting left out %s (--min-snr 0 and --binary-snr 0 keep every event found)", " and ".join(
            text for n, text in ((left_out["low_snr"], f"{left_out['low_snr']} event(s) below S/N "
                                  f"{ev.min_snr:g}"),
                                 (left_out["binary"], f"{left_out['binary']} event(s) on the cycles of an eclipsing "
                                  f"binary (S/N {ev.binary_snr:g})")) if n))
    summary = {"model": mdir.name, "files": len(mine), "curves": len(curves), "events": len(rows),
               "left_out": left_out,
               "curves_with_events": sum(1 for c in curves.values() if c["events"]),
               "seconds_per_curve": round(seconds / len(curves), 4) if curves else None,
               "table": str(out) if written else None}
    if json_results():
        ctx.emit({**summary, "events": rows})
    else:
        # a terminal shows the first MAX_SHOWN (the table file has them all); piped, every row is printed
        cut = console.stdout_is_terminal() and len(rows) > MAX_SHOWN
        shown = rows[:MAX_SHOWN] if cut else rows
        console.print_table(f"{len(rows)} event(s)" + (f", the first {MAX_SHOWN}" if cut else ""),
                            ["file", "id", "t_mid [d]", "duration [h]", "depth [ppm]", "S/N", "peak p"],
                            [[r["file"], r["id"], f"{r['t_mid']:.4f}", f"{r['duration']:.2f}", f"{r['depth']:.0f}",
                              f"{r['snr']:.1f}", f"{r['peak_probability']:.3f}"] for r in shown])
        ctx.emit(summary)
    return summary
