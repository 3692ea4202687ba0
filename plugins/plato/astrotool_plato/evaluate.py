"""``astro plato evaluate``: point-wise and event-level scores of a model on a prepared split.

For every threshold of the grid:

* point-wise: precision, recall, F1 and IoU of the in-transit samples
  (:func:`astrotool.ml.metrics.threshold_sweep`);
* event-level (:mod:`astrotool_plato.events`; events cut as ``detect`` cuts them,
  :func:`astrotool_plato.detect.event_spans`, but not trimmed at gaps: a prepared set
  keeps no record of which samples ``prepare`` interpolated): transits recovered (a predicted
  event overlaps them), false alarms (predicted events that overlap no
  transit; those on a binary's eclipse counted apart), false alarms per curve
  and per day of data, the fraction of transit-free curves with at least one
  false alarm, and Panopticon's "false alarm" ``FP / (TP + FP)`` over events.

The *operating threshold* is the lowest threshold whose false-alarm fraction of
transit-free curves is at most ``far_target`` (1 %: Panopticon's "90 % at 1 %
FAR"), the recovery is also given against depth, S/N, duration, period
(single transits apart) and planet radius there, and the best
point-wise IoU threshold is reported beside it. Where no transit reaches it
(an untrained model meets any false-alarm target by finding nothing), the
operating point's ``recovers_nothing`` is true and the command warns. Where the
split holds no transit-free curve, the false-alarm fraction cannot be measured
and the operating point is undefined: its ``undefined`` names the cause, its
threshold and scores are NaN (``null`` in JSON), ``meets_target`` and each
transit's ``recovered`` are None, and the command warns.

A binary's eclipse of planet-like depth is a false alarm here, although one
eclipse cannot be told from a transit by its shape alone. So a second operating
point, ``operating_quiet``, counts only the transit-free curves that hold no
binary either (false alarms from noise, variability and systematics), and
``binary_curves_flagged`` says how many binaries a threshold lets through.

S/N in the recovery table is each transit's own, ``snr / sqrt(n_transits)``
(the label's ``snr`` is that of all transits of the curve together): white
noise only. ``box_snr`` is what vetting would measure on the transit's true
box (:func:`astrotool_plato.events.event_snr`, red noise included); a transit
whose ``box_snr`` reaches :data:`DETECTABLE_SNR` (or cannot be measured) is *detectable*,
and ``recovery_of_detectable`` separates what the network misses from what the
data hide.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

__docformat__ = "numpy"

DEPTH_BINS = (0.0, 100.0, 180.0, 300.0, 500.0, 900.0, 2000.0, math.inf)
"""Depth bins of the recovery table [ppm] (Panopticon: everything deeper than 180 ppm recovered)."""
SNR_BINS = (0.0, 5.0, 7.1, 10.0, 15.0, 25.0, 50.0, math.inf)
"""S/N bins of the recovery table."""
DURATION_BINS = (0.0, 2.0, 4.0, 8.0, 12.0, math.inf)
"""Duration bins [h]."""
RADIUS_BINS = (0.0, 1.25, 2.0, 4.0, 6.0, 15.0, math.inf)
"""Planet-radius bins [R_earth]: Earths, super-Earths, sub-Neptunes, Neptunes, giants, beyond."""
PERIOD_BINS = (0.0, 5.0, 15.0, math.inf)
"""Period bins [d] of periodic transits (single transits are counted apart, ``period`` NaN)."""
DETECTABLE_SNR = 7.1
"""A transit whose own box reaches this S/N against the curve's red noise is *detectable* (Kepler's threshold);
so is one whose box S/N cannot be measured (NaN, :func:`astrotool_plato.events.event_snr`: too few transit-free
blocks of its length), as vetting keeps an event whose S/N it cannot measure (:func:`astrotool_plato.events.vetted`)."""
FAR_TARGET = 0.01
"""The false-alarm fraction of transit-free curves the operating threshold keeps under."""


def load_model(ctx, name: str, default: str):
    """The checkpoint folder and the torch model of ``--model`` (a name under plato/models or a folder)."""
    from astrotool.ml import commands as mc
    from astrotool.ml.checkpoint import build_model, load_checkpoint, warn_unfinished

    from astrotool_plato import NAME
    from astrotool_plato.model import ARCHITECTURE, make_model

    mdir = mc.model_dir(ctx, NAME, name or default, trained=True)
    ckpt = load_checkpoint(mdir, ARCHITECTURE)
    warn_unfinished(ckpt.meta, ckpt.path, "astro plato train")
    return mdir, ckpt, build_model(ckpt, {ARCHITECTURE: make_model})


def _binned(values: np.ndarray, hit: np.ndarray | None, edges) -> list[dict]:
    """Transits and recovery per bin of ``values``; ``hit`` None (no operating point): recovered None, recovery
    NaN."""
    out = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (values >= lo) & (values < hi)
        n = int(sel.sum())
        if n:
            out.append({"low": lo, "high": None if math.isinf(hi) else hi, "transits": n,
                        "recovered": None if hit is None else int(hit[sel].sum()),
                        "recovery": math.nan if hit is None else float(hit[sel].mean())})
    return out


def evaluate(model, ds, split: str, thresholds, events, batch_size: int = 8, device: str | None = None,
             far_target: float = FAR_TARGET, model_cadence_s: float | None = None) -> tuple[dict, list[dict]]:
    """Score ``model`` on a split of a prepared set.

    Parameters
    ----------
    model : torch.nn.Module
    ds : astrotool_plato.prepare.PreparedDataset
    split : str
        ``train``, ``val``, ``test`` or ``all``.
    thresholds : sequence of float
        The threshold grid.
    events : astrotool_plato.config.EventsConfig
        Merge gap and minimum duration.
    batch_size : int
    device : str, optional
    far_target : float
        False-alarm fraction of transit-free curves for the operating threshold.
    model_cadence_s : float, optional
        The cadence the model was trained at [s]; a set sampled otherwise is refused.

    Returns
    -------
    report : dict
        JSON-ready scores (module docstring).
    transits : list of dict
        One row per true transit (twins left out): curve id, depth, S/N, box S/N, duration,
        and whether it was recovered at the operating threshold.
    """
    import torch

    from astrotool.ml.metrics import threshold_counts, threshold_sweep
    from astrotool.ml.predict import predict

    from astrotool_plato.detect import event_spans
    from astrotool_plato.events import event_snr, match
    from astrotool_plato.labels import PLANET

    from astrotool.errors import InputError

    thr = np.asarray(sorted(thresholds), float)
    idx = ds.split_indices(split)
    if not len(idx):
        attrs = getattr(ds, "attrs", {}) or {}
        others = " or ".join(f"--split {s}" for s in ("val", "test", "all")   # not another empty one
                             if s != split and len(ds.split_indices(s)))
        lost = (attrs.get("empty_splits") or {}).get(split)
        dropped = attrs.get("dropped") or {}
        if lost:
            why = (f"its {len(lost)} curve(s) were all left out by `prepare` ({', '.join(lost[:5])}"
                   f"{f' and {len(lost) - 5} more' if len(lost) > 5 else ''}: "
                   f"{dropped.get(lost[0], 'dropped')}{'; ...' if len(lost) > 1 else ''})")
        elif dropped:   # a set of an earlier version: which split the dropped curves were drawn for is unknown
            why = (f"plato.prepare.split gives it no share, or `prepare` left out its curves among the "
                   f"{len(dropped)} it dropped")
        else:
            why = "plato.prepare.split gives it no share"
        raise InputError(ds.root, f"the {split!r} split holds no curves ({why})"
                                  + (f"; score another: {others}" if others else ""))
    meta = ds.metadata()
    twins = np.asarray(meta["twin"], bool)[idx]   # `prepare --augment`'s time-reversed copies: the same transits
    idx = np.asarray(idx)[~twins]
    if not len(idx):
        raise InputError(ds.root, f"the {split!r} split holds only twins of `prepare --augment` (not scored)")
    cadence = float(np.median(np.asarray(meta["cadence"], float)[idx]))
    if model_cadence_s and abs(cadence / model_cadence_s - 1.0) > 0.01:
        raise InputError(ds.root, f"curves sampled every {cadence:g} s; the model was trained on {model_cadence_s:g} s "
                                  "(prepare the curves at the model's cadence, or use `detect`, which resamples)")
    if getattr(model, "in_channels", ds.in_channels) != ds.in_channels:
        from astrotool_plato.detect import model_channels

        raise InputError(ds.root, f"curves of {ds.in_channels} flux channel(s) ({ds.channels}); the model reads "
                                  f"{model.in_channels} (prepare with plato.prepare.channels = "
                                  f"\"{model_channels(model)}\")")
    from astrotool_plato.model import min_samples, pad_to

    multiple, shortest = getattr(model, "granularity", 1), getattr(model, "min_length", 0)   # any callable too
    if ds.length < min_samples(multiple, shortest):
        raise InputError(ds.root, f"curves of {ds.length} samples; the model needs at least "
                                  f"{min_samples(multiple, shortest)} (prepare longer curves)")
    radius = np.asarray(meta["radius"], float) if "radius" in meta else np.full(ds.n, np.nan)  # older sets: none
    n_tr = np.maximum(np.asarray(meta["n_transits"], float), 1.0) if "n_transits" in meta else np.ones(ds.n)
    kind = np.asarray(meta["kind"]).astype(str)
    counts = None
    per_transit: list[dict] = []
    hits: list[np.ndarray] = []                       # per transit: recovered at each threshold
    fa = np.zeros((len(idx), thr.size), np.int64)     # false alarms per curve and threshold
    fa_ecl = np.zeros(thr.size, np.int64)
    tp_events = np.zeros(thr.size, np.int64)          # predicted events on a transit
    has_transit = np.zeros(len(idx), bool)
    binary = np.zeros(len(idx), bool)                 # transit-free curves with an eclipsing binary
    row = 0

    def batches():
        for b in ds.iter_batches(batch_size, ["flux", "label"], indices=idx):
            x, _ = pad_to(b["flux"].astype(np.float32), multiple, shortest)
            yield {"flux": torch.from_numpy(np.ascontiguousarray(x)), "label": b["label"], "index": b["index"],
                   "coadd": b["flux"][:, -1] if b["flux"].ndim == 3 else b["flux"]}

    def on_batch(batch, logits):
        nonlocal counts, row
        prob = 1.0 / (1.0 + np.exp(-np.asarray(logits, np.float64)[:, :ds.length]))
        lab = np.asarray(batch["label"])
        c = threshold_counts(prob, (lab == PLANET).astype(np.int8), thr)
        counts = c if counts is None else {k: (v if k == "thresholds" else
                                               (np.add(counts[k], v).tolist() if isinstance(v, list) else
                                                counts[k] + v)) for k, v in c.items()}
        for p, y, i, x in zip(prob, lab, np.asarray(batch["index"]), np.asarray(batch["coadd"])):
            matches = [match(event_spans(p, x, cadence, events, threshold=t)[0], y) for t in thr]   # as detect
            has_transit[row] = len(matches[0].true) > 0
            binary[row] = kind[i] in ("eb", "beb")
            for k, m in enumerate(matches):
                fa[row, k] = int(m.false_alarm.sum())
                fa_ecl[k] += int(m.on_eclipse.sum())
                tp_events[k] += int((~m.false_alarm).sum())
            box_snr = event_snr(x, matches[0].true, found=False)
            for j, (a, b) in enumerate(matches[0].true):
                hits.append(np.array([m.recovered[j] for m in matches]))
                per_transit.append({"id": str(meta["id"][i]), "depth": float(meta["depth"][i]),
                                    "snr": float(meta["snr"][i]) / math.sqrt(n_tr[i]),
                                    "duration": float(meta["duration"][i]), "kind": str(meta["kind"][i]),
                                    "period": float(meta["period"][i]), "radius": radius[i],
                                    "box_snr": float(box_snr[j]), "start": int(a), "stop": int(b)})
            row += 1

    pred = predict(model, batches(), device=device, key="flux", on_batch=on_batch, keep=False)
    hit = np.array(hits).reshape(-1, thr.size)
    n_true = hit.shape[0]
    recovered = hit.sum(axis=0)
    free = ~has_transit
    days = len(idx) * ds.length * cadence / 86400.0
    fa_total = fa.sum(axis=0)
    curve_far = (fa[free] > 0).mean(axis=0) if free.any() else np.full(thr.size, np.nan)
    sweep = threshold_sweep(counts)
    quiet = free & ~binary
    quiet_far = (fa[quiet] > 0).mean(axis=0) if quiet.any() else np.full(thr.size, np.nan)
    ok = np.flatnonzero(curve_far <= far_target) if free.any() else np.arange(thr.size)
    k_op = int(ok[0]) if ok.size else thr.size - 1
    ok_quiet = np.flatnonzero(quiet_far <= far_target) if quiet.any() else np.arange(thr.size)
    k_quiet = int(ok_quiet[0]) if ok_quiet.size else thr.size - 1
    for r, h in zip(per_transit, hit):
        r["recovered"] = bool(h[k_op]) if free.any() else None

    def frac(a, b):
        return float(a / b) if b else math.nan

    def operating(k: int, meets: bool, undefined: str | None = None) -> dict:
        """The scores at threshold number ``k``; with ``undefined`` (why there is no operating point), the same
        keys with NaN scores."""
        depth, period, box = (np.array([r[c] for r in per_transit]) for c in ("depth", "period", "box_snr"))
        single = np.isnan(period)
        detectable = ~(box < DETECTABLE_SNR)
        if undefined:
            nan = math.nan
            return {"threshold": nan, "far_target": far_target, "meets_target": None, "recovers_nothing": False,
                    "undefined": undefined, "recovery": nan, "false_alarm_curve_fraction": nan,
                    "false_alarm_curve_fraction_quiet": nan, "binary_curves_flagged": nan,
                    "false_alarms_per_day": nan, "recovery_deeper_than_180ppm": nan,
                    "detectable_transits": int(detectable.sum()), "recovery_of_detectable": nan,
                    **{f"by_{c}": _binned(np.array([r[c] for r in per_transit]), None, edges) for c, edges in (
                        ("depth", DEPTH_BINS), ("snr", SNR_BINS), ("box_snr", SNR_BINS),
                        ("duration", DURATION_BINS))},
                    "single_transits": {"transits": int(single.sum()), "recovered": None, "recovery": nan},
                    "by_period": _binned(period, None, PERIOD_BINS),
                    "by_radius": _binned(np.array([r["radius"] for r in per_transit]), None, RADIUS_BINS)}
        h = hit[:, k] if n_true else np.zeros(0, bool)
        return {"threshold": float(thr[k]), "far_target": far_target, "meets_target": meets,
                "recovers_nothing": bool(n_true) and not recovered[k],   # the target met by finding nothing
                "undefined": None,
                "recovery": frac(recovered[k], n_true),
                "false_alarm_curve_fraction": float(curve_far[k]),
                "false_alarm_curve_fraction_quiet": float(quiet_far[k]),
                "binary_curves_flagged": frac((fa[binary, k] > 0).sum(), binary.sum()),
                "false_alarms_per_day": float(fa_total[k] / days),
                "recovery_deeper_than_180ppm": frac(h[depth > 180].sum(), (depth > 180).sum()),
                "detectable_transits": int(detectable.sum()),
                "recovery_of_detectable": frac(h[detectable].sum(), detectable.sum()),
                **{f"by_{c}": _binned(np.array([r[c] for r in per_transit]), h, edges) for c, edges in (
                    ("depth", DEPTH_BINS), ("snr", SNR_BINS), ("box_snr", SNR_BINS), ("duration", DURATION_BINS))},
                "single_transits": {"transits": int(single.sum()), "recovered": int(h[single].sum()),
                                    "recovery": frac(h[single].sum(), single.sum())},
                "by_period": _binned(period, h, PERIOD_BINS),
                "by_radius": _binned(np.array([r["radius"] for r in per_transit]), h, RADIUS_BINS)}

    report = {
        "split": split, "curves": int(len(idx)), "transit_free_curves": int(free.sum()), "transits": int(n_true),
        "length": ds.length, "cadence_s": cadence, "days": days,
        "events": {"merge_gap_hours": events.merge_gap_hours, "min_duration_hours": events.min_duration_hours,
                   "min_snr": events.min_snr, "binary_snr": events.binary_snr},
        "thresholds": thr.tolist(),
        "recovery": [frac(r, n_true) for r in recovered],
        "false_alarms": fa_total.tolist(),
        "false_alarms_on_eclipses": fa_ecl.tolist(),
        "false_alarms_per_curve": (fa_total / len(idx)).tolist(),
        "false_alarms_per_day": (fa_total / days).tolist(),
        "false_alarm_curve_fraction": [float(v) for v in curve_far],
        "false_alarm_event_fraction": [frac(f, f + t) for f, t in zip(fa_total, tp_events)],
        "pointwise": {k: sweep[k] for k in ("precision", "recall", "f1", "iou", "best")},
        "false_alarm_curve_fraction_quiet": [float(v) for v in quiet_far],
        "binary_curves_flagged": [frac((fa[binary, k] > 0).sum(), binary.sum()) for k in range(thr.size)],
        "quiet_curves": int(quiet.sum()), "binary_curves": int(binary.sum()),
        "operating": operating(k_op, bool(ok.size), None if free.any() else
                               f"no transit-free curve among the {len(idx)} of split {split!r}: the false-alarm "
                               "fraction, and so the threshold that keeps it under the target, cannot be measured"),
        "operating_quiet": operating(k_quiet, bool(ok_quiet.size), None if quiet.any() else
                                     f"no transit-free curve without a binary among the {len(idx)} of split "
                                     f"{split!r}: the quiet false-alarm fraction cannot be measured"),
        "twins_left_out": int(twins.sum()),
        "inference": {**pred.summary(), "batch_size": int(batch_size)},   # curves per batch, samples_per_s curves
    }
    return report, per_transit


def plot_report(report: dict, path) -> Path:
    """Recovery and false alarms against threshold; recovery against depth, S/N and planet radius at the operating
    threshold."""
    from astrotool.io.figures import figure

    op = report["operating"]
    with figure(path, 1, 4, figsize=(17, 3.8)) as (fig, axes):
        axes = axes[0]
        ax = axes[0]
        ax.plot(report["thresholds"], report["recovery"], "o-", label="transits recovered")
        ax.plot(report["thresholds"], report["false_alarm_curve_fraction"], "s-",
                label="transit-free curves with a false alarm")
        ax.plot(report["thresholds"], report["false_alarm_curve_fraction_quiet"], "^--",
                label="... of those without a binary")
        if math.isfinite(op["threshold"]):
            ax.axvline(op["threshold"], color="0.5", ls=":")
        ax.set_xlabel("threshold")
        ax.set_ylim(-0.02, 1.02)
        ax.legend(fontsize=8)
        for ax, key, unit in ((axes[1], "by_depth", "depth [ppm]"), (axes[2], "by_snr", "S/N"),
                              (axes[3], "by_radius", "planet radius [R_earth]")):
            rows = op[key]
            labels = [f"{r['low']:g}-{r['high']:g}" if r["high"] is not None else f">{r['low']:g}" for r in rows]
            ax.bar(range(len(rows)), [r["recovery"] for r in rows], color="C0")
            for i, r in enumerate(rows):
                ax.text(i, (r["recovery"] if math.isfinite(r["recovery"]) else 0.0) + 0.02, str(r["transits"]),
                        ha="center", fontsize=7)
            ax.set_xticks(range(len(rows)), labels, rotation=30, fontsize=8)
            ax.set_ylim(0, 1.1)
            ax.set_xlabel(unit)
            ax.set_ylabel("recovered (operating point undefined)" if op.get("undefined")
                          else f"recovered at threshold {op['threshold']:g}")
        if op.get("undefined"):   # its cause up to the explanation: "no transit-free curve among the 12 of ..."
            score = f"operating point undefined: {op['undefined'].split(':')[0]}"
        else:
            score = f"recovery {op['recovery']:.3f} at {op['false_alarm_curve_fraction']:.3f} FAR per curve"
        fig.suptitle(f"{report['split']}: {report['transits']} transits in {report['curves']} curves; {score}")
    return Path(path)


def report_settings(mdir, ds, e, events, root=None) -> dict:
    """What makes an evaluate report (its settings record): the model's folder, the prepared set's folder and
    settings record, the split, the threshold grid, the false-alarm target and ``[plato.events]`` (but its
    ``threshold``: the grid is swept). The folders are named relative to the workspace ``root``
    (:func:`astrotool.made_with.record_path`): a copied workspace scores its copy with the same record. Not the
    model's weights: evaluate reuses nothing, so a model retrained (or trained on) in its folder is scored again
    under the same report name."""
    from astrotool import made_with as mw

    made = mw.read(Path(ds.root) / f"{ds.name}_dataset.json") or {}
    return {"model": mw.record_path(mdir, root), "dataset": mw.record_path(ds.root, root),
            "dataset_settings": made.get("hash"), "split": e.split,
            "thresholds": sorted(float(v) for v in e.thresholds), "far_target": FAR_TARGET,
            "events": events.model_dump(mode="json", exclude={"threshold"})}


def undefined_hint(report: dict, key: str) -> str:
    """What to do about an undefined operating point (``key``: ``operating`` or ``operating_quiet``) of
    ``report``: curves without a transit (``transit_fraction``), or, where there are some but each holds a binary
    (``operating_quiet``), curves without either (``eb_fraction``, ``beb_fraction``)."""
    other = "" if report["split"] == "all" else "--split all, or "
    if key == "operating_quiet" and report["transit_free_curves"]:
        return (f"each of its {report['transit_free_curves']} transit-free curve(s) holds an eclipsing binary; "
                f"score a split with curves that hold neither ({other}simulate with fewer binaries: "
                "plato.simulate.eb_fraction + beb_fraction < 1, the shares of the transit-free curves)")
    return f"score a split with transit-free curves ({other}simulate with plato.simulate.transit_fraction < 1)"


def evaluate_command(ctx, cfg, runtime) -> dict:
    """``astro plato evaluate``: score a model, write ``<name>_evaluate.json``, ``_transits.csv`` and
    ``_evaluate.png``.

    A report of that name made with other settings (:func:`report_settings`) is refused (exit 2) unless
    ``--overwrite``; one made with the same settings is made again.
    """
    import csv

    from astrotool import made_with as mw
    from astrotool.console import json_results
    from astrotool.ml import commands as mc
    from astrotool.workspace import atomic_path, write_json_atomic

    from astrotool_plato import NAME, PREPARED, REPORTS
    from astrotool_plato.prepare import PreparedDataset
    from astrotool_plato.train import no_dataset

    e = cfg.evaluate
    mdir, ckpt, model = load_model(ctx, e.model or cfg.train.model, f"{cfg.train.dataset}_{cfg.train.decoder}")
    dataset = e.dataset or mc.trained_dataset(ctx.workspace.stage(NAME, PREPARED), mdir,
                                              ckpt.meta.get("training") or {}) or cfg.train.dataset
    ds = mc.open_dataset(ctx, NAME, PREPARED, dataset, PreparedDataset, no_dataset())
    stem = e.name or f"{mdir.name}_{ds.name}_{e.split}"
    out = ctx.workspace.stage(NAME, REPORTS)
    paths = {"json": out / f"{stem}_evaluate.json", "csv": out / f"{stem}_transits.csv",
             "png": out / f"{stem}_evaluate.png"}
    rec = mw.record(report_settings(mdir, ds, e, cfg.events, ctx.workspace.root))
    # refused before the work; the same settings: made again
    mw.keep([paths["json"]], rec, overwrite=ctx.overwrite, warn=False, forget=False,
            hint="give this report another --name, or use --overwrite to replace it")
    with ds:
        if e.split != "all":  # a split of a set re-made since training is no hold-out; all is all
            mc.check_trained_on((ckpt.meta.get("settings") or {}).get("dataset"), ds, mdir,
                                "--split all to score every curve, training ones included")
        report, transits = evaluate(model, ds, e.split, e.thresholds, cfg.events, e.batch_size,
                                    runtime.inference_device(), model_cadence_s=ckpt.meta.get("cadence_s"))
    report.update(model=mdir.name, model_path=str(mdir), dataset=ds.name)
    write_json_atomic(paths["json"], report)
    mw.write(paths["json"], rec)   # with the report, before the table and plot: a failing plot leaves no new
    # report beside an old record
    with atomic_path(paths["csv"]) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["id", "kind", "depth", "snr", "box_snr", "duration", "period",
                                           "radius", "start", "stop", "recovered"])
        w.writeheader()
        w.writerows(transits)
    plot_report(report, paths["png"])
    mc.record(ctx, inputs=[mdir, ds.root], outputs=paths.values())
    op = report["operating"]
    for key, what in (("operating", "operating"), ("operating_quiet", "quiet operating")):
        if report[key]["undefined"]:
            ctx.log.warning("the %s point is undefined (threshold and recovery NaN): %s; %s", what,
                            report[key]["undefined"], undefined_hint(report, key))
        if report[key]["recovers_nothing"]:
            ctx.log.warning("no transit reaches the %s threshold %g (recovery 0 of %d): its false-alarm target is "
                            "met by finding nothing; the model may be untrained, or the split too hard",
                            what, report[key]["threshold"], report["transits"])
    summary = {"model": mdir.name, "dataset": ds.name, "split": e.split, "curves": report["curves"],
               "transits": report["transits"], "operating_threshold": op["threshold"],
               "recovery": op["recovery"], "recovers_nothing": op["recovers_nothing"],
               "false_alarm_curve_fraction": op["false_alarm_curve_fraction"],
               "false_alarms_per_day": op["false_alarms_per_day"],
               "recovery_deeper_than_180ppm": op["recovery_deeper_than_180ppm"],
               "recovery_of_detectable": op["recovery_of_detectable"],
               "binary_curves_flagged": op["binary_curves_flagged"],
               "quiet_operating_threshold": report["operating_quiet"]["threshold"],
               "quiet_recovery": report["operating_quiet"]["recovery"],
               "quiet_false_alarm_curve_fraction": report["operating_quiet"]["false_alarm_curve_fraction_quiet"],
               "best_iou": report["pointwise"]["best"], "curves_per_s": report["inference"]["samples_per_s"],
               **{k: str(v) for k, v in paths.items()}}
    ctx.emit(report if json_results() else summary)
    return report
