"""``astro plato plot``: a light curve with its labels and a model's probabilities overlaid.

One PNG per curve in ``plato/reports/plots/<id>.png``: the flux (every sample
in grey, 30-min means in black) with, for simulated curves, the true transits
(green) and binary eclipses (orange) shaded, and below it the transit
probability with the threshold and the events the model detected (red). Curves
are named by id (simulated curves, found through the label tables), by a
light-curve file's path (every curve in it, read as ``detect`` reads it), ``all``
of them, or ``last``: the curves in which the latest ``astro plato detect`` run that wrote an event table
found events, drawn with that run's model, ``[plato.events]`` and reader settings (a warning when the model's
weights changed since).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from astrotool.context import astro_command
from astrotool.errors import AstroError, InputError
from astrotool_plato.config import EventsConfig
from astrotool_plato.lightcurves import CurveReader

__docformat__ = "numpy"

BIN_HOURS = 0.5
"""Bin width of the binned curve drawn over the samples [h]."""


def plot_curve(path, time, flux, label=None, prob=None, events=(), threshold: float = 0.5, title: str = "") -> Path:
    """Draw one curve.

    Parameters
    ----------
    path : path-like
        Output PNG.
    time, flux : numpy.ndarray
        Times [d] and relative flux.
    label : numpy.ndarray, optional
        Class per sample (:mod:`astrotool_plato.labels`).
    prob : numpy.ndarray, optional
        Transit probability per sample (adds the lower panel).
    events : iterable of dict
        Event rows (``t_mid`` [d], ``duration`` [h]).
    threshold : float
    title : str
    """
    from astrotool.io.figures import figure

    from astrotool_plato.events import runs
    from astrotool_plato.labels import ECLIPSE, PLANET

    rows = 2 if prob is not None else 1
    with figure(path, rows, 1, figsize=(12, 2.6 * rows + 0.6), sharex=True, title=title) as (fig, axes):
        ax = axes[0, 0]
        ppm = (np.asarray(flux, float)) * 1e6
        ax.plot(time, ppm, ",", color="0.65")
        step = max(1, int(round(BIN_HOURS / 24.0 / max(np.median(np.diff(time)), 1e-9))))
        n = (len(time) // step) * step
        if n >= step:
            ax.plot(time[:n].reshape(-1, step).mean(1), ppm[:n].reshape(-1, step).mean(1), "-", color="k", lw=0.8)
        if label is not None:
            for cls, colour, name in ((PLANET, "tab:green", "transit"), (ECLIPSE, "tab:orange", "eclipse")):
                for k, (a, b) in enumerate(runs(np.asarray(label) == cls)):
                    ax.axvspan(time[a], time[b - 1], color=colour, alpha=0.25,
                               label=f"true {name}" if k == 0 else None)
        lo, hi = np.nanpercentile(ppm, [0.5, 99.5])
        ax.set_ylim(lo - 0.3 * (hi - lo), hi + 0.2 * (hi - lo))
        ax.set_ylabel("relative flux [ppm]")
        if label is not None and (np.asarray(label) > 0).any():
            ax.legend(loc="lower left", fontsize=8)
        if prob is not None:
            ax2 = axes[1, 0]
            ax2.plot(time, prob, "-", color="tab:blue", lw=0.8)
            ax2.axhline(threshold, color="0.5", ls=":")
            for k, e in enumerate(events):
                half = 0.5 * e["duration"] / 24.0
                ax2.axvspan(e["t_mid"] - half, e["t_mid"] + half, color="tab:red", alpha=0.2,
                            label="detected event" if k == 0 else None)
            ax2.set_ylim(-0.02, 1.02)
            if len(events):
                ax2.legend(loc="upper left", fontsize=8)
            ax2.set_ylabel("transit probability")
        axes[-1, 0].set_xlabel("time [d]")
    return Path(path)


def _latest_detect(ws, log=None) -> tuple[list[tuple[Path, str]], dict]:
    """The curves with events of the latest ``plato detect`` run that wrote an event table, as ``(file, id)``,
    and the settings its
    table was made with (:func:`astrotool_plato.detect.detect_settings`; ``{}`` for a table of an earlier
    version, whose rows are matched to the run's inputs by file name).

    The run's status does not matter: a run with failed items (status "failed items") still wrote the table of
    the curves it read; a run that wrote none (a ``--shard`` task that left it to another, or one that stopped
    early) is passed over. A run whose table holds no event is named in a warning on ``log``: nothing to
    plot."""
    from astrotool.io.tables import parquet_metadata, read_parquet

    runs_dir = ws.root / "runs"
    for run in sorted(runs_dir.glob("*-plato-detect"), reverse=True) if runs_dir.is_dir() else []:
        try:
            rec = json.loads((run / "run.json").read_text())
        except (OSError, ValueError):
            continue
        here = _in_this_workspace(rec.get("workspace"), ws.root)
        tables = [here(p) for p in rec.get("outputs", []) if str(p).endswith("_events.parquet")]
        tables = [t for t in tables if t.exists()]
        if not tables:   # a --shard task that left the table to another
            continue
        todo, settings, rows = [], {}, 0
        for t in tables:
            meta = parquet_metadata(t)
            settings = meta.get("settings", settings)
            by_name = {Path(p).name: here(p) for p in rec.get("inputs", [])}
            where = {k: here(p) for k, p in meta.get("file_keys", {}).items()}
            for r in read_parquet(t, columns=["file", "id"]).to_pylist():
                rows += 1
                f = where.get(r["file"], by_name.get(r["file"]))
                if f is not None:
                    todo.append((f, r["id"]))
        if not rows and log is not None:
            names = ", ".join(t.name[:-len("_events.parquet")] for t in tables)
            log.warning("the latest `%s` run, %s (%s), found no events: nothing to plot; give light-curve "
                        "files or curve ids to plot curves without events", astro_command("plato", "detect"),
                        names, run.name)
        return todo, settings
    raise AstroError(f"{runs_dir}: no `astro plato detect` run that wrote an event table, to plot")


def _in_this_workspace(recorded: str | None, root: Path):
    """``path -> Path``: a path a run recorded under its workspace ``recorded`` read under ``root`` when it
    exists there (the workspace moved or copied since: its run.json keeps absolute paths); else as recorded."""
    def here(path) -> Path:
        try:
            moved = Path(root) / Path(path).relative_to(recorded) if recorded else Path(path)
        except ValueError:   # outside the recorded workspace: the user's own file
            return Path(path)
        return moved if moved.exists() else Path(path)

    return here


def _warn_changed_weights(ctx, made: dict, model_dir) -> None:
    """Warn when the detect run's model (``model_dir``) has other weights now than the checksum its table
    keeps (``made``: the table's settings)."""
    from astrotool import made_with as mw
    from astrotool.ml.checkpoint import WEIGHTS_FILE

    weights = Path(model_dir) / WEIGHTS_FILE
    if made.get("weights") and weights.is_file() and mw.file_checksum(weights) != made["weights"]:
        ctx.log.warning("%s: its weights changed since the detect run (the table's checksum differs); the "
                        "probabilities drawn are the current weights', not those that found the events",
                        made["model"])


@dataclass(frozen=True)
class PlotItem:
    """Executor item of ``astro plato plot``: the curves of one light-curve file to draw.

    Attributes
    ----------
    path : str
        The light-curve file.
    curves : tuple
        ``(id, output PNG, label-table row or None)`` per curve: the row of a simulated curve shades its truth.
    model_dir : str
        Model whose probabilities are drawn ("" for none).
    events : astrotool_plato.config.EventsConfig
    reader : astrotool_plato.lightcurves.CurveReader
        How the file is read (``[plato.detect]``).
    """

    path: str
    curves: tuple
    model_dir: str
    events: EventsConfig
    reader: CurveReader = CurveReader()


def plot_file(item: PlotItem, seed: int = 0) -> dict:
    """Draw the curves of one file (:func:`plot_curve`); ``seed`` is not used.

    Returns
    -------
    dict
        ``{"plots": [PNG paths], "notes": [what the reader dropped]}``.
    """
    from astrotool_plato.detect import _model, model_cadence, model_channels, search_curves
    from astrotool_plato.labels import event_windows, mask
    from astrotool_plato.lightcurves import check_time_scale, relative_flux, uniform

    meta, model = _model(item.model_dir) if item.model_dir else (None, None)
    notes: list[str] = []
    curves = item.reader.read(item.path, model_channels(model), notes)
    written = []
    for cid, out, row in item.curves:
        if cid not in curves:   # `last`: an id of another file of the same name
            continue
        t, fl = curves[cid]
        prob, events = None, ()
        if model is not None:
            res = search_curves({cid: (t, fl)}, model, model_cadence(meta), item.events,
                                names={cid: f"{item.path}: {cid}" if len(curves) > 1 else item.path})[cid]
            t, x, prob, events = res["time"], res["flux"], res["probability"], res["events"]
        else:
            check_time_scale(t, None, item.path, item.reader.time_unit)
            t, fl = uniform(t, fl)
            x, _ = relative_flux(fl)
        lab = mask(t, event_windows(row, float(t[0]), float(t[-1]))) if row is not None else None  # the truth
        written.append(str(plot_curve(out, t, x, lab, prob, events, item.events.threshold,
                                      title=f"{cid} ({Path(item.path).name})")))
    return {"plots": written, "notes": notes}


def plot_command(ctx, cfg, ids: list[str], use_model: bool = True) -> dict:
    """``astro plato plot ID...|FILE...|all|last``: one PNG per curve (module docstring); returns the paths."""
    from astrotool_plato import LABELS, NAME, RAW, REPORTS
    from astrotool_plato.detect import item_keys, model_channels
    from astrotool_plato.labels import read_label_tables
    from astrotool_plato.lightcurves import log_notes

    ws = ctx.workspace
    labels = read_label_tables(ws.stage(NAME, LABELS))
    todo: list[tuple[Path, str | None]] = []   # (file, id or None for every curve of the file)
    in_folders: set[Path] = set()   # files a folder gave: one that cannot be read is left out, with a warning
    ev, d, model_name = cfg.events, cfg.detect, cfg.detect.model or cfg.train.model
    if ids == ["last"]:   # drawn with the model, event and reader settings of that run
        todo, made = _latest_detect(ws, ctx.log)
        if made:
            model_name = str(ws.root / made["model"])   # relative to the workspace, or absolute
            ev, d = EventsConfig(**made["events"]), d.model_copy(update=made["reader"])
            _warn_changed_weights(ctx, made, model_name)
    elif ids == ["all"]:
        if not labels:
            raise AstroError(f"{ws.stage(NAME, LABELS)}: no labelled curves to plot; run "
                             f"`{astro_command('plato', 'simulate')}` (it labels its curves), or give light-curve files")
        todo = [(ws.stage(NAME, RAW) / r["file"], cid) for cid, r in labels.items()]
    else:
        for cid in ids:
            if cid in labels:
                todo.append((ws.stage(NAME, RAW) / labels[cid]["file"], cid))
            elif Path(cid).is_file():                     # a light-curve file: every curve in it
                todo.append((Path(cid), None))
            elif Path(cid).is_dir():                      # a folder: its light-curve files, as detect reads it
                from astrotool_plato.detect import curve_files

                listed = [Path(f) for f in curve_files([cid], ctx.log)]
                in_folders.update(listed)
                todo += [(f, None) for f in listed]
            else:
                last, detect = astro_command("plato", "plot", "last"), astro_command("plato", "detect")
                raise AstroError(f"{cid}: no such curve id in the label tables of {ws.stage(NAME, LABELS)}, nor a "
                                 f"light-curve file; give a file's path, or run `{last}` after `{detect} FILE...` "
                                 "to plot the curves it found events in")
    todo = list(dict.fromkeys((Path(f), cid) for f, cid in todo))   # a curve asked for twice is drawn once
    model = None
    if use_model:
        from astrotool_plato.evaluate import load_model

        try:
            mdir, _ckpt, model = load_model(ctx, model_name, f"{cfg.train.dataset}_{cfg.train.decoder}")
        except AstroError as exc:
            if model_name:
                raise
            ctx.log.warning("no model to overlay (%s); plotting the curves alone (--no-model-overlay to silence)", exc)
    out_dir = ws.stage(NAME, REPORTS) / "plots"
    by_file: dict[Path, list] = {}   # file -> [(id, output, label row of a simulated curve or None)]
    planned: set[str] = set()
    for f, wanted in todo:
        try:
            cids = [wanted] if wanted is not None else list(CurveReader.of(d).read(f, model_channels(model)))
        except InputError as exc:
            if f not in in_folders:
                raise
            ctx.log.warning("left out of the plots: %s", exc)   # as detect fails one file of a folder alone
            continue
        for cid in cids:
            out = out_dir / f"{cid}.png"
            k = 1
            while str(out) in planned and ids == ["last"]:   # files of the same name that `detect` told apart:
                k += 1                                        # the k-th curve of that id
                out = out_dir / f"{cid}-{k}.png"
            if str(out) in planned:
                raise AstroError(f"{f}: its curve {cid!r} has the name of a curve plotted already "
                                 f"({out.name}); plot the two files apart, or rename one")
            planned.add(str(out))
            simulated = cid in labels and f.resolve() == (ws.stage(NAME, RAW) / labels[cid]["file"]).resolve()
            by_file.setdefault(f, []).append((cid, str(out), labels[cid] if simulated else None))
    files = list(by_file)
    items = [PlotItem(str(f), tuple(by_file[f]), str(mdir) if model is not None else "", ev, CurveReader.of(d))
             for f in files]
    results = ctx.map(plot_file, items, "plot", keys=item_keys(files), outputs=lambda r: r["plots"])
    for f in ctx.shard_of(files):
        ctx.record.add_input(f.resolve())
    written = [p for _, res in results for p in res["plots"]]
    log_notes(ctx.log, [note for _, res in results for note in res["notes"]])
    for p in written:
        ctx.record.add_output(p)
    ctx.emit({"plots": len(written), "folder": str(out_dir), "files": written[:20],
              **({"more_files": len(written) - 20} if len(written) > 20 else {}),
              "model": mdir.name if model is not None else None, "threshold": ev.threshold})
    return {"plots": written}
