"""``astro plato bls``: the classical baseline, wotan detrending then astropy's Box Least Squares.

Each curve is detrended with wotan's time-windowed biweight (``window_days``,
about three times the longest transit to keep), averaged in bins of ``bin_seconds``
by time stamp (:func:`bin_in_time`; not at all when a bin would hold under two samples), and searched with
:class:`astropy.timeseries.BoxLeastSquares` over periods from
``min_period_days`` to ``max_period_fraction`` of the curve (a period as long
as the curve admits a single transit) and the trial durations. The best peak
counts as a detection when its box S/N (depth over its error, from the
scatter of the detrended curve) reaches ``snr_threshold``; its transits
inside the curve are the events. At the best period, the duration and
mid-time are then refined on a finer grid (:func:`refine_peak`: the trial
durations are a factor of two apart, so a 3-h transit read as 4 h took a
biased depth and a mid-time half an hour off); that time is counted in the
search's. The S/N and the detection stay the search's, so the threshold keeps
its meaning. The signal detection efficiency ``SDE =
(max - mean) / std`` of the power spectrum is reported too; it is the usual
statistic for periodic signals but stays low for a single transit, whose
power is spread over every period longer than the gap to an edge. Detrending and search are timed apart, so the
comparison with the network is like for like.
"""

from __future__ import annotations

import functools
import math
import time as _time
from dataclasses import dataclass

import numpy as np

from astrotool_plato.lightcurves import CurveReader

__docformat__ = "numpy"


def bls_search(time: np.ndarray, x: np.ndarray, cfg, where: str = "curve", refine: bool = True,
               time_unit: str = "d") -> dict:
    """Detrend and search one curve.

    Parameters
    ----------
    time : numpy.ndarray
        Uniform times [d].
    x : numpy.ndarray
        Relative flux (finite).
    cfg : astrotool_plato.config.BlsConfig
    where : str
        The curve's name in errors (its file).
    refine : bool
        Refine the best peak's mid-time, duration and depth (:func:`refine_peak`); off where
        a prepared split is scored (:func:`evaluate_bls`), as the documented operating points were.
    time_unit : {"d", "h", "s"}
        The unit the file's time was read in (``--time-unit``): a search too long for days asks whether the
        time is in hours only when it was read in days.

    Returns
    -------
    dict
        ``period`` [d], ``t0`` [d], ``duration`` [h], ``depth`` [ppm], ``snr``,
        ``sde``, ``detected`` (S/N >= threshold), ``transits`` (mid-times inside the
        curve [d]), ``seconds_detrend``, ``seconds_search``.

    Raises
    ------
    astrotool.errors.InputError
        The curve is too short for the shortest trial duration or the binning, or its period range is empty
        (``min_period_days`` not below ``max_period_fraction`` x its length [d]).
    """
    from astropy.timeseries import BoxLeastSquares
    from wotan import flatten

    from astrotool.errors import InputError
    from astrotool_plato.lightcurves import noise_sigma

    shortest, hours = min(cfg.durations_hours), (time[-1] - time[0]) * 24.0
    width = cfg.bin_seconds / 86400.0
    n_binned = bin_in_time(time, time, width)[0].size
    if hours < shortest or n_binned < 3:
        why = (f"no box of the shortest trial duration ({shortest:g} h) fits" if hours < shortest else
               f"binned in {cfg.bin_seconds:g} s, fewer than 3 samples are left")
        raise InputError(where, f"a curve of {time.size} samples over {hours:.2f} h is too short for BLS: {why}")
    longest = cfg.max_period_fraction * hours / 24.0
    if cfg.min_period_days >= longest:
        raise InputError(where, f"no trial period: min_period_days = {cfg.min_period_days:g} d is not below the "
                                f"longest period, max_period_fraction x the curve's {hours / 24.0:.3g} d = "
                                f"{longest:.3g} d; lower plato.bls.min_period_days or raise "
                                "plato.bls.max_period_fraction")
    durations = np.asarray(cfg.durations_hours, float) / 24.0
    durations = durations[durations < cfg.min_period_days]  # BLS needs every duration below the shortest period
    if not durations.size:
        from astrotool.errors import ConfigError

        raise ConfigError([f"plato.bls.durations_hours: every trial duration is at least min_period_days = "
                           f"{cfg.min_period_days} d"])
    work = n_binned * period_count(hours / 24.0, float(durations.min()), cfg.min_period_days, longest,
                                   1.0 / cfg.oversample)
    if work > MAX_SEARCH:   # before the detrending, which takes long too
        raise InputError(where, f"BLS would try {work / n_binned:,.0f} periods on {n_binned:,} samples over "
                                f"{hours / 24.0:.4g} d, {work / QUARTER_SEARCH:.0f} times the search of a 90-d "
                                f"PLATO quarter (at most {MAX_SEARCH / QUARTER_SEARCH:.0f}); "
                                + ("is the time in hours (--time-unit h)? Else s" if time_unit == "d" else "S")
                                + "earch a shorter piece, or raise plato.bls.min_period_days or bin_seconds, "
                                "or lower max_period_fraction")
    _compile_wotan()   # not in the timing: once per process
    t0 = _time.perf_counter()
    flat = flatten(time, 1.0 + x, method="biweight", window_length=cfg.window_days, edge_cutoff=0.0,
                   break_tolerance=0.5)
    t1 = _time.perf_counter()
    good = np.isfinite(flat)
    tb, fb = bin_in_time(time[good], flat[good], width)
    span = float(tb[-1] - tb[0])
    longest = max(cfg.min_period_days * 1.01, cfg.max_period_fraction * span)
    model = BoxLeastSquares(tb, fb, dy=np.full(fb.size, max(noise_sigma(fb), 1e-12)))
    res = model.autopower(durations, objective="snr", minimum_period=cfg.min_period_days, maximum_period=longest,
                          frequency_factor=1.0 / cfg.oversample)
    power = np.asarray(res.power, float)
    k = int(np.argmax(power))
    std = float(power.std())
    sde = float((power[k] - power.mean()) / std) if std > 0 else 0.0
    period = float(res.period[k])
    snr = float(res.depth_snr[k])  # the search's: the statistic the threshold was set on, whatever the refinement
    mid, dur, depth = float(res.transit_time[k]), float(res.duration[k]), float(res.depth[k])
    if refine:
        r_mid, r_dur, r_depth, r_snr = refine_peak(model, period, dur, durations, tb)
        if r_snr >= snr:  # the refined box describes the peak better: its mid-time, duration and depth
            mid, dur, depth = r_mid, r_dur, r_depth
    t2 = _time.perf_counter()
    first = mid - math.floor((mid - time[0] + 0.5 * dur) / period) * period
    transits = [float(c) for c in np.arange(first, time[-1] + 0.5 * dur, period)]
    return {"period": period, "t0": mid, "duration": dur * 24.0, "depth": depth * 1e6, "snr": snr,
            "sde": sde, "detected": snr >= cfg.snr_threshold, "transits": transits,
            "seconds_detrend": t1 - t0, "seconds_search": t2 - t1}


@functools.cache
def _compile_wotan() -> None:
    """Run wotan's biweight once on a few samples: numba compiles it on the first call (about 10 s
    without a cache), which is not the detrending's cost and would be timed with the first curve."""
    from wotan import flatten

    t = np.linspace(0.0, 1.0, 64)
    flatten(t, np.ones_like(t), method="biweight", window_length=0.5, edge_cutoff=0.0, break_tolerance=0.5)


def period_count(span: float, shortest: float, min_period: float, max_period: float, factor: float = 1.0) -> int:
    """Trial periods of astropy's ``BoxLeastSquares.autoperiod`` grid: frequencies ``factor x shortest / span^2``
    apart between ``1 / max_period`` and ``1 / min_period`` (every length in days)."""
    step = factor * shortest / span**2
    return 1 + int(round((1.0 / min_period - 1.0 / max_period) / step))


QUARTER_SEARCH = period_count(90.0, 1.0 / 24.0, 0.5, 90.0) * int(90.0 * 86400.0 / 100.0)
"""Periods x samples of the default search of a 90-d PLATO quarter binned in 100 s (about 3e10: a minute or two on
two CPU cores)."""

MAX_SEARCH = 100 * QUARTER_SEARCH
"""The largest search (periods x samples) :func:`bls_search` starts: a curve of days read as hours (a 20-d curve
taken for 480 d) needs 150 quarters' worth, hours of a search no signal stops."""


def bin_in_time(time: np.ndarray, flux: np.ndarray, width: float) -> tuple[np.ndarray, np.ndarray]:
    """Means of the samples in consecutive bins of ``width`` [d] from the first time stamp (by time stamp, so
    no bin spans a gap longer than itself); bins with fewer than half the samples a full one holds are left out.
    The bin edges lie half a median step early, so a sample due on an edge (every fourth at 25 s in 100 s) is
    not put on either side by rounding of large times. Unchanged when the median step is over half ``width``
    (under two samples a bin). Samples with a NaN or infinite time stamp are left out (the median step is that
    of the finite ones).

    Returns
    -------
    time, flux : numpy.ndarray
        Mean time [d] and mean flux per bin.
    """
    ok = np.isfinite(time)
    if not ok.all():
        time, flux = time[ok], flux[ok]
    step = float(np.median(np.diff(time))) if time.size > 1 else width
    if width < 2.0 * step or time.size == 0:
        return time, flux
    k = np.floor((time - time[0]) / width + 0.5 * step / width).astype(np.int64)
    n = np.bincount(k)
    full = n >= 0.5 * width / step
    return (np.bincount(k, time)[full] / n[full]), (np.bincount(k, flux)[full] / n[full])


REFINE_DURATIONS = 25
"""Durations :func:`refine_peak` tries at the best period."""
REFINE_OVERSAMPLE = 30
"""Mid-times per duration :func:`refine_peak` tries (astropy's search: 10)."""


def refine_peak(model, period: float, duration: float, trials: np.ndarray, time: np.ndarray) -> tuple:
    """The best box at one period on a finer grid than the search's: :data:`REFINE_DURATIONS` durations spaced
    evenly in logarithm between the trial durations either side of the search's best (never outside the trial
    durations; at least two samples, below the period), and :data:`REFINE_OVERSAMPLE` mid-times per duration.
    :func:`bls_search` keeps the search's S/N (and detection) and takes this box's mid-time, duration and depth
    when its S/N is at least the search's.

    Parameters
    ----------
    model : astropy.timeseries.BoxLeastSquares
    period, duration : float
        The search's best period and duration [d].
    trials : numpy.ndarray
        The search's trial durations [d].
    time : numpy.ndarray
        The searched (binned) times [d].

    Returns
    -------
    tuple of float
        ``(t0 [d], duration [d], depth [relative flux], depth S/N)``.
    """
    trials = np.sort(np.asarray(trials, float))
    lower, upper = trials[trials < duration], trials[trials > duration]
    lo = lower[-1] if lower.size else trials[0]     # within the search's range of durations
    hi = upper[0] if upper.size else trials[-1]
    step = float(np.median(np.diff(time))) if time.size > 1 else 0.0
    lo, hi = max(lo, 2.0 * step, 1e-6), min(hi, 0.99 * period)
    grid = np.unique(np.r_[np.geomspace(lo, hi, REFINE_DURATIONS) if hi > lo else [], duration])
    r = model.power(np.array([period]), grid, objective="snr", oversample=REFINE_OVERSAMPLE)
    return float(r.transit_time[0]), float(r.duration[0]), float(r.depth[0]), float(r.depth_snr[0])


def evaluate_bls(ds, split: str, cfg, far_target: float = 0.01) -> dict:
    """BLS on a prepared split, scored like ``astro plato evaluate``.

    Each curve's best peak is matched once (its transits inside the curve are
    the events); a threshold on its box S/N then decides which peaks count, so
    the scores at any threshold follow without searching again.

    Parameters
    ----------
    ds : astrotool_plato.prepare.PreparedDataset
    split : str
    cfg : astrotool_plato.config.BlsConfig
    far_target : float
        False-alarm fraction of transit-free curves of the operating S/N threshold.

    Returns
    -------
    dict
        ``transits``; at ``cfg.snr_threshold``: ``recovery``,
        ``false_alarm_curve_fraction`` (transit-free curves whose counted peak
        overlaps no transit); ``operating``: the lowest S/N threshold with at
        most ``far_target`` of transit-free curves flagged, and the recovery
        there; ``operating_quiet``: the same over the transit-free curves without
        a binary (as ``astro plato evaluate``); ``seconds_per_curve`` (detrend + search).
    """
    from astrotool_plato.events import match

    idx = ds.split_indices(split)
    meta = ds.metadata()
    hits, free_fa = [], []      # (snr, recovered) per transit; (snr, false alarm, binary) per transit-free curve
    seconds = 0.0
    for b in ds.iter_batches(8, ["flux", "label"], indices=idx):
        for x, lab, i in zip(b["flux"], b["label"], b["index"]):
            cad = float(meta["cadence"][i]) / 86400.0
            t = float(meta["t_start"][i]) + cad * np.arange(x.size)
            r = bls_search(t, x.astype(np.float64), cfg, refine=False)  # scored as the published operating points
            seconds += r["seconds_detrend"] + r["seconds_search"]
            half = 0.5 * r["duration"] / 24.0
            ev = np.array([[max(0, int(math.floor((c - half - t[0]) / cad))),
                            min(x.size, int(math.ceil((c + half - t[0]) / cad)))] for c in r["transits"]],
                          dtype=int).reshape(-1, 2)
            m = match(ev[ev[:, 1] > ev[:, 0]], lab)
            hits += [(r["snr"], bool(h)) for h in m.recovered]
            if not len(m.true):
                free_fa.append((r["snr"], bool(m.false_alarm.any()), str(meta["kind"][i]) in ("eb", "beb")))

    def scores(thr: float, quiet: bool = False) -> tuple[float, float]:
        rec = sum(h and s >= thr for s, h in hits) / len(hits) if hits else math.nan
        free = [(s, f) for s, f, binary in free_fa if not (quiet and binary)]
        far = sum(f and s >= thr for s, f in free) / len(free) if free else math.nan
        return rec, far

    candidates = sorted({s for s, *_ in hits + free_fa} | {cfg.snr_threshold})
    rec, far = scores(cfg.snr_threshold)
    out = {"split": split, "curves": int(len(idx)), "transits": len(hits), "snr_threshold": cfg.snr_threshold,
           "recovery": rec, "false_alarm_curve_fraction": far,
           "seconds_per_curve": seconds / len(idx) if len(idx) else None}
    for key, quiet in (("operating", False), ("operating_quiet", True)):
        op = next((c for c in candidates if not scores(c, quiet)[1] > far_target), math.inf)
        op_rec, op_far = scores(op, quiet)
        out[key] = {"snr_threshold": op, "recovery": op_rec, "false_alarm_curve_fraction": op_far}
    return out


@dataclass(frozen=True)
class BlsItem:
    """One light-curve file for :func:`bls_file`."""

    path: str
    cfg: object   # astrotool_plato.config.BlsConfig
    reader: CurveReader = CurveReader()


def bls_file(item: BlsItem, seed: int = 0) -> dict:
    """BLS on every curve of one file (an executor item): its table rows and the notes for the log.

    Raises
    ------
    astrotool.errors.InputError
        The file cannot be read, its time axis is in another unit than the one given
        (:func:`astrotool_plato.lightcurves.check_time_scale`; a median step longer
        than the shortest trial duration), or a curve is too short.
    """
    from pathlib import Path

    from astrotool.errors import InputError

    from astrotool_plato.lightcurves import check_time_scale, relative_flux, uniform

    notes: list[str] = []
    curves = item.reader.read(item.path, notes=notes)
    rows = []
    for cid, (t, fl) in curves.items():
        where = f"{item.path}: {cid}" if len(curves) > 1 else item.path
        check_time_scale(t, None, where, item.reader.time_unit)
        step_h, shortest = float(np.median(np.diff(t))) * 24.0, min(item.cfg.durations_hours)
        if step_h >= shortest:
            hint = "; is the time in seconds? use --time-unit s" if item.reader.time_unit != "s" else ""
            raise InputError(where, f"a median time step of {step_h:.4g} h, not shorter than the shortest trial "
                                    f"duration ({shortest:g} h){hint}")
        tu, fu = uniform(t, fl)
        real = np.isfinite(fu)  # the measured samples: a gap filled with a line has no noise, and took dy to 0
        x, _ = relative_flux(fu)
        r = bls_search(tu[real], x[real], item.cfg, where, time_unit=item.reader.time_unit)
        rows.append({"file": Path(item.path).name, "id": cid, **{k: v for k, v in r.items() if k != "transits"},
                     "n_transits": len(r["transits"])})
    return {"rows": rows, "notes": notes}


def bls_command(ctx, cfg, files) -> dict:
    """``astro plato bls FILE...``: BLS on light-curve files, one executor item per file; a table of the best
    peak per curve (a file that fails is named in the failures table, the others finish)."""
    from pathlib import Path

    from astrotool import console
    from astrotool.console import json_results

    from astrotool_plato.detect import item_keys
    from astrotool_plato.lightcurves import log_notes

    b, d = cfg.bls, cfg.detect
    items = [BlsItem(str(Path(f)), b, CurveReader.of(d)) for f in files]
    results = ctx.map(bls_file, items, "bls", keys=item_keys(files))
    rows = [r for _, res in results for r in res["rows"]]
    log_notes(ctx.log, [note for _, res in results for note in res["notes"]])
    for f in files:
        ctx.record.add_input(Path(f).resolve())
    if not json_results():
        console.print_table(f"BLS: {sum(r['detected'] for r in rows)} of {len(rows)} curve(s) above S/N "
                            f"{b.snr_threshold:g}", ["file", "id", "S/N", "SDE", "period [d]", "t0 [d]", "duration [h]",
                                                     "depth [ppm]", "seconds"],
                            [[r["file"], r["id"], f"{r['snr']:.1f}", f"{r['sde']:.1f}", f"{r['period']:.3f}", f"{r['t0']:.4f}",
                              f"{r['duration']:.2f}", f"{r['depth']:.0f}",
                              f"{r['seconds_detrend'] + r['seconds_search']:.2f}"] for r in rows])
    summary = {"curves": len(rows), "detected": sum(r["detected"] for r in rows),
               "seconds_per_curve": (sum(r["seconds_detrend"] + r["seconds_search"] for r in rows) / len(rows)
                                     if rows else None)}   # as detect: no curve searched, no time per curve
    ctx.emit({**summary, "curves_searched": rows} if json_results() else summary)
    return summary
