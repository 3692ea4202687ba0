"""From per-sample probabilities to events, and events matched to the truth.

An *event* is a run of samples whose probability reaches the threshold; runs
closer than the merge gap are one event, and events shorter than the minimum
duration are dropped (single noisy samples). A true transit is *recovered* when
a predicted event overlaps it (Panopticon's rule: IoU > 0); a predicted event
that overlaps no transit is a *false alarm*, counted separately when it lies on
a binary's eclipse.

An event can also be vetted by its S/N against the curve's own noise binned at
the event's length (:func:`event_snr`, :func:`vetted`): red noise that the
network mistakes for a transit scores low there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__docformat__ = "numpy"

MEDIAN_ABS_CURVATURE = 0.6744897501960817 * math.sqrt(6.0)
"""Median of ``|a - 2 b + c|`` for independent unit normals ``a``, ``b``, ``c``."""


def runs(flags: np.ndarray) -> np.ndarray:
    """``(k, 2)`` start/stop (exclusive) of the runs of True in a 1-D boolean array."""
    f = np.concatenate([[False], np.asarray(flags, bool), [False]])
    edges = np.flatnonzero(f[1:] != f[:-1])
    return edges.reshape(-1, 2)


def find_events(prob: np.ndarray, threshold: float, merge_gap: int = 0, min_length: int = 1) -> np.ndarray:
    """Events of one curve.

    Parameters
    ----------
    prob : numpy.ndarray
        Probability per sample, 1-D.
    threshold : float
        A sample is in an event when ``prob >= threshold``.
    merge_gap : int
        Runs separated by at most this many samples are merged.
    min_length : int
        Events shorter than this many samples are dropped.

    Returns
    -------
    numpy.ndarray
        ``(k, 2)`` integer start/stop (exclusive) sample indices.
    """
    r = runs(np.asarray(prob) >= threshold)
    if len(r) > 1 and merge_gap > 0:
        keep = np.concatenate([[True], r[1:, 0] - r[:-1, 1] > merge_gap])
        starts = r[keep, 0]
        stops = r[np.concatenate([keep[1:], [True]]), 1]
        r = np.stack([starts, stops], axis=1)
    return r[(r[:, 1] - r[:, 0]) >= min_length] if len(r) else r


def overlaps(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(len(a), len(b))`` boolean: whether interval ``a[i]`` overlaps ``b[j]`` (half-open intervals)."""
    a, b = np.asarray(a).reshape(-1, 2), np.asarray(b).reshape(-1, 2)
    return (a[:, None, 0] < b[None, :, 1]) & (b[None, :, 0] < a[:, None, 1])


@dataclass
class Match:
    """Events of one curve matched to its true transits.

    Attributes
    ----------
    true : numpy.ndarray
        ``(t, 2)`` true transit intervals.
    recovered : numpy.ndarray
        ``(t,)`` whether each was overlapped by a predicted event.
    predicted : numpy.ndarray
        ``(p, 2)`` predicted events.
    false_alarm : numpy.ndarray
        ``(p,)`` whether each overlaps no true transit.
    on_eclipse : numpy.ndarray
        ``(p,)`` false alarms that overlap a binary's eclipse.
    """

    true: np.ndarray
    recovered: np.ndarray
    predicted: np.ndarray
    false_alarm: np.ndarray
    on_eclipse: np.ndarray


def match(predicted: np.ndarray, label: np.ndarray, planet: int = 1, eclipse: int = 2) -> Match:
    """Match a curve's predicted events with the runs of ``planet`` (and ``eclipse``) in its label mask."""
    true = runs(label == planet)
    ecl = runs(label == eclipse)
    ov = overlaps(predicted, true)
    fa = ~ov.any(axis=1) if len(predicted) else np.zeros(0, bool)
    on_ecl = fa & overlaps(predicted, ecl).any(axis=1) if len(predicted) else np.zeros(0, bool)
    return Match(true=true, recovered=ov.any(axis=0) if len(true) else np.zeros(0, bool),
                 predicted=np.asarray(predicted).reshape(-1, 2), false_alarm=fa, on_eclipse=on_ecl)


def event_snr(flux: np.ndarray, events: np.ndarray) -> np.ndarray:
    """S/N of each event against the curve's own noise on the event's time scale.

    ``depth / sigma_w``: the box depth of :func:`describe` (median flux of a band
    around the event minus the mean inside) over the scatter of the curve's
    means in consecutive blocks of the event's length ``w``, measured from the
    second differences of neighbouring block means, ``median |m[i-1] - 2 m[i] +
    m[i+1]| / (0.6745 sqrt(6))`` (blocks that hold an event or less than half
    their samples left out). Binning at the event's own length keeps red noise
    in ``sigma_w`` (Pont et al. 2006), so an hours-long granulation or activity
    wiggle scores low where a white-noise S/N would score it high; differencing
    neighbours keeps out the variability slower than a few blocks (rotation,
    drifts: their slope and their steps), which says nothing about whether a
    dip of length ``w`` is real.

    Parameters
    ----------
    flux : numpy.ndarray
        Relative flux per sample, 1-D.
    events : numpy.ndarray
        ``(k, 2)`` start/stop sample indices (:func:`find_events`).

    Returns
    -------
    numpy.ndarray
        ``(k,)`` S/N; NaN where fewer than three triples of neighbouring blocks are left.
    """
    x = np.asarray(flux, np.float64)
    ev = np.asarray(events, int).reshape(-1, 2)
    free = np.ones(x.size, bool)
    for a, b in ev:
        free[a:b] = False
    out = np.full(len(ev), np.nan)
    for j, (a, b) in enumerate(ev):
        w = max(int(b - a), 1)
        m = (x.size // w) * w
        blocks = np.where(free[:m], x[:m], np.nan).reshape(-1, w)
        full = np.isfinite(blocks).sum(axis=1) >= 0.5 * w
        means = np.nanmean(np.where(full[:, None], blocks, 0.0), axis=1)
        triples = full[2:] & full[1:-1] & full[:-2]
        if triples.sum() < 3:
            continue
        sigma = np.median(np.abs(np.diff(means, 2)[triples])) / MEDIAN_ABS_CURVATURE
        out[j] = box_depth(x, a, b) / sigma if sigma > 0 else np.nan
    return out


def box_depth(flux: np.ndarray, start: int, stop: int) -> float:
    """Box depth of samples ``start:stop``: the median of a band of ``max(stop - start, 8)`` samples on either
    side minus the mean inside (relative flux; NaN without a band)."""
    band = max(int(stop - start), 8)
    around = np.r_[flux[max(0, start - band):start], flux[stop:stop + band]]
    return float(np.median(around)) - float(np.mean(flux[start:stop])) if around.size else math.nan


def vetted(events: np.ndarray, flux: np.ndarray, min_snr: float) -> np.ndarray:
    """The events whose :func:`event_snr` reaches ``min_snr`` (all of them when ``min_snr <= 0``); an event whose
    S/N cannot be measured (NaN: a curve shorter than three event lengths, or without scatter) is kept."""
    events = np.asarray(events, int).reshape(-1, 2)
    if min_snr <= 0 or not len(events):
        return events
    return events[~(event_snr(flux, events) < min_snr)]


def describe(prob: np.ndarray, flux: np.ndarray, events: np.ndarray, t_start: float, cadence_s: float) -> list[dict]:
    """The event table rows of one curve.

    Parameters
    ----------
    prob, flux : numpy.ndarray
        Probability and relative flux per sample.
    events : numpy.ndarray
        ``(k, 2)`` from :func:`find_events`.
    t_start : float
        Time of sample 0 [d].
    cadence_s : float
        Sampling interval [s].

    Returns
    -------
    list of dict
        ``t_mid`` [d] (probability-weighted), ``duration`` [h], ``depth`` [ppm]
        (median flux of a band around the event minus the mean flux inside, a
        box estimate), ``snr`` (:func:`event_snr`), ``peak_probability``,
        ``start``/``stop`` samples.
    """
    dt = cadence_s / 86400.0
    out = []
    snr = event_snr(flux, events)
    for (a, b), s in zip(np.asarray(events, int).reshape(-1, 2), snr):
        p = prob[a:b].astype(np.float64)
        idx = np.arange(a, b)
        out.append({"t_mid": t_start + dt * float((idx * p).sum() / p.sum()),
                    "duration": (b - a) * cadence_s / 3600.0,
                    "depth": box_depth(flux, a, b) * 1e6, "snr": float(s),
                    "peak_probability": float(p.max()), "start": int(a), "stop": int(b)})
    return out
