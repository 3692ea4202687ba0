"""From per-sample probabilities to events, and events matched to the truth.

An *event* is a run of samples whose probability reaches the threshold; runs
closer than the merge gap are one event, and events shorter than the minimum
duration are dropped (single noisy samples). A true transit is *recovered* when
a predicted event overlaps it (Panopticon's rule: IoU > 0); a predicted event
that overlaps no transit is a *false alarm*, counted separately when it lies on
a binary's eclipse.

An event can also be vetted by its S/N against the curve's own noise binned at
the event's length (:func:`event_snr`, :func:`vetted`): red noise that the
network mistakes for a transit scores low there. And the events of one curve
that repeat can be vetted as an eclipsing binary's (:func:`binary_tests`):
alternate events of unequal depth (primary and secondary eclipses), or a
shallower dip half-way between them (a secondary eclipse), which a planet
does not make.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__docformat__ = "numpy"

MEDIAN_ABS_CURVATURE = 0.6744897501960817 * math.sqrt(6.0)
"""Median of ``|a - 2 b + c|`` for independent unit normals ``a``, ``b``, ``c``."""
BLOCK_DOF_PER_TRIPLE = 0.25
"""Degrees of freedom of :func:`_block_sigma`'s scatter per triple of blocks it used: ``1 / (2 (sd/mean)^2)`` of
the estimate on white noise is 0.24-0.26 per triple (73-298 triples, 2,000 draws each). A median of absolute
values keeps 37 % of a variance's information, and neighbouring second differences share blocks."""
HALF_PERIOD_SNR = 3.0
""":func:`binary_tests`: a dip half-way between the events at this S/N, and not shallower than they are at
it, says the events' period is half the one their spacing gave (missed events), and the tests are taken
again there (the S/N as they are, not read through :func:`t_threshold`)."""


def t_threshold(snr: float, dof: float) -> float:
    """The Student-t statistic with ``dof`` degrees of freedom that is as improbable as a normal one of ``snr``
    (the same upper tail); ``snr`` itself for infinite ``dof``. An S/N whose error was estimated from a few
    values has heavier tails: with 4 degrees of freedom a normal 5 is a t of 57."""
    if not math.isfinite(dof):
        return float(snr)
    from scipy.special import ndtr, stdtrit

    return -float(stdtrit(dof, ndtr(-snr)))   # the lower tail: ndtr(snr) rounds to 1 above 8.3


def _cycles(times: np.ndarray, t0: float, period: float) -> tuple[np.ndarray, np.ndarray]:
    """The nearest cycle number of each time on the ephemeris ``t0 + k period``, and the distance to it
    (the units of ``times``, e.g. samples)."""
    r = (np.asarray(times, np.float64) - t0) / period
    k = np.round(r)
    return k, np.abs(r - k) * period


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


def event_snr(flux: np.ndarray, events: np.ndarray, masked: np.ndarray | None = None,
              found: bool = True) -> np.ndarray:
    """S/N of each event against the curve's own noise on the event's time scale.

    ``depth / sigma_w``: the box depth (:func:`box_depth`: the median flux of a band
    either side, for an event found a gap of the event's length away, minus the mean inside) over the
    scatter of the curve's
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
    masked : numpy.ndarray, optional
        ``(j, 2)`` the events left out of the scatter (default: ``events``); every event found before
        vetting, so that an event's S/N does not depend on which others the vetting dropped.
    found : bool
        Events found in the probabilities, which may be cut short inside a longer transit: the band
        keeps a gap of the event's length from it. False for known transit boxes (the band touches them).

    Returns
    -------
    numpy.ndarray
        ``(k,)`` S/N; NaN where fewer than three triples of neighbouring blocks are left.
    """
    x = np.asarray(flux, np.float64)
    ev = np.asarray(events, int).reshape(-1, 2)
    free = np.ones(x.size, bool)
    for a, b in (ev if masked is None else np.asarray(masked, int).reshape(-1, 2)):
        free[a:b] = False
    out = np.full(len(ev), np.nan)
    for j, (a, b) in enumerate(ev):
        sigma, _ = _block_sigma(x, free, max(int(b - a), 1))
        if sigma > 0:
            out[j] = box_depth(x, a, b, gap=int(b - a) if found else 0) / sigma
    return out


MIN_BAND = 8
"""The fewest samples of a reference band :func:`reference_level` shrinks its gap to keep."""


def reference_level(flux: np.ndarray, start: int, stop: int, band: int | None = None, gap: int = 0) -> float:
    """Median of a band of ``band`` samples (default ``max(stop - start, 8)``) on either side of samples
    ``start:stop``, ``gap`` samples away from them (relative flux; NaN without a band). Where the curve's ends
    leave no band of :data:`MIN_BAND` samples (or ``band``, if fewer) at that gap on either side (an event of
    a third of the curve), the gap shrinks until one fits, to 0 where none does."""
    band = max(int(stop - start), MIN_BAND) if band is None else int(band)
    room = max(int(start), flux.size - int(stop))   # samples beyond the event on its roomier side
    gap = min(int(gap), max(room - min(band, MIN_BAND), 0))
    around = np.r_[flux[max(0, start - gap - band):max(0, start - gap)], flux[stop + gap:stop + gap + band]]
    around = around[np.isfinite(around)]   # a gap's samples (NaN) are no level
    return float(np.median(around)) if around.size else math.nan


def _mean(x: np.ndarray) -> float:
    """Mean of the finite samples of ``x``; NaN if none."""
    x = x[np.isfinite(x)]
    return float(np.mean(x)) if x.size else math.nan


def box_depth(flux: np.ndarray, start: int, stop: int, band: int | None = None, gap: int = 0) -> float:
    """Box depth of samples ``start:stop``: :func:`reference_level` (a band of ``band`` samples either side,
    ``gap`` samples away) minus the mean inside (relative flux; NaN without a band)."""
    return reference_level(flux, start, stop, band, gap) - _mean(flux[start:stop])


def central_depth(flux: np.ndarray, start: int, stop: int, mid: float | None = None) -> float:
    """Depth of the event ``start:stop`` from its middle: :func:`reference_level` a gap of the event's own length
    away from it (less where the curve's ends leave no room; an event cut short by a high threshold lies inside
    a longer transit, whose flux then stays out of the band) minus the mean of the middle half of the event's
    samples (at least one), centred on the sample ``mid`` (default: the event's centre) and kept inside it
    (relative flux; NaN without a band)."""
    n = int(stop - start)
    if n < 1:
        return math.nan
    half = max(n // 2, 1)
    mid = 0.5 * (start + stop - 1) if mid is None else float(mid)
    a = int(np.clip(round(mid - 0.5 * (half - 1)), start, stop - half))
    return reference_level(flux, start, stop, gap=n) - _mean(flux[a:a + half])


def _block_sigma(x: np.ndarray, free: np.ndarray, w: int) -> tuple[float, int]:
    """Scatter of the means of consecutive ``w``-sample blocks of ``x`` where ``free`` (:func:`event_snr`), and
    the number of triples of neighbouring blocks (at least half free) it came from; NaN with fewer than three."""
    m = (x.size // w) * w
    blocks = np.where(free[:m], x[:m], np.nan).reshape(-1, w)
    full = np.isfinite(blocks).sum(axis=1) >= 0.5 * w
    means = np.nanmean(np.where(full[:, None], blocks, 0.0), axis=1)
    triples = full[2:] & full[1:-1] & full[:-2]
    n = int(triples.sum())
    if n < 3:
        return math.nan, n
    return float(np.median(np.abs(np.diff(means, 2)[triples])) / MEDIAN_ABS_CURVATURE), n


@dataclass
class BinaryTests:
    """Eclipsing-binary tests of the repeating events of one curve (:func:`binary_tests`); NaN: not measurable.

    Attributes
    ----------
    odd_even : float
        ``|mean depth of odd cycles - mean depth of even cycles|`` over its error (S/N); NaN unless events lie
        on three cycles or more (two events always make a period, and their depths differ for a transit and
        a false alarm too).
    secondary : float
        Mean depth half-way between the cycles over its error (S/N).
    primary_minus_secondary : float
        ``(mean depth on the cycles - mean depth half-way)`` over its error (S/N): a dip
        half-way as deep as the events says the period is half, not that the events are a binary's.
    period : float
        The events' period [samples].
    phase_zero : float
        Mid-sample of cycle 0.
    width : int
        Box length of the depths [samples]: the events' median length.
    dof : float
        Degrees of freedom of the errors: the depths' number less their three group means, or, where the error
        came from the curve's binned scatter, :data:`BLOCK_DOF_PER_TRIPLE` per triple of blocks (a quarter with
        10-hour events: about 20).
    """

    odd_even: float = math.nan
    secondary: float = math.nan
    primary_minus_secondary: float = math.nan
    period: float = math.nan
    phase_zero: float = math.nan
    width: int = 0
    dof: float = math.inf

    def significant(self, snr: float, min_snr: float) -> bool:
        """Whether one of the S/N above reaches ``min_snr`` read as a normal S/N: through the Student-t
        distribution of :attr:`dof` degrees of freedom (:func:`t_threshold`); never where it is NaN."""
        return bool(snr >= t_threshold(min_snr, self.dof))

    def secondary_eclipse(self, min_snr: float) -> bool:
        """Whether a dip half-way between the events, significantly shallower than they are, shows at
        ``min_snr``."""
        return self.significant(self.secondary, min_snr) and self.significant(self.primary_minus_secondary, min_snr)

    def binary(self, min_snr: float) -> bool:
        """Whether the events are a binary's at ``min_snr``: odd and even depths differ, or a secondary eclipse
        shows."""
        return self.significant(self.odd_even, min_snr) or self.secondary_eclipse(min_snr)


def binary_tests(flux: np.ndarray, events: np.ndarray) -> BinaryTests:
    """Odd/even and secondary-eclipse tests of a curve's events (Kepler's data-validation tests, single curve).

    The period is the one that puts the most events on one ephemeris (within
    half an event length) beyond the number a period's window catches by chance (the
    other events times the event length over the period), the longest such one, among the spacings of
    neighbouring events (grouped within 5 %, each group's median), refined by
    a least-squares fit of the events' mid-samples against their cycle
    numbers; while the dip half-way is no shallower than the events
    (:data:`HALF_PERIOD_SNR`), the period is halved, down to two event
    lengths. Box depths of the events' median length are measured at every
    cycle of the curve (events or not) and half-way between cycles, against a
    band of flux either side no wider than half the room between an eclipse
    and the next secondary. The errors
    come from the scatter of those depths around their group means (odd,
    even, half-way) when at least four degrees of freedom are left (the S/N are then
    Student-t statistics, and :meth:`BinaryTests.binary` reads them through that
    distribution), else from the curve's scatter binned at the event length
    (:func:`event_snr`) times ``sqrt(1 + pi w / (4 band))`` for the band's median, with
    :data:`BLOCK_DOF_PER_TRIPLE` degrees of freedom per triple of blocks. A
    circular orbit is assumed: an eccentric binary's secondary is not at half
    phase.

    Parameters
    ----------
    flux : numpy.ndarray
        Relative flux per sample, 1-D, on a uniform time grid.
    events : numpy.ndarray
        ``(k, 2)`` start/stop sample indices; fewer than two events (or none
        further apart than an event's length) cannot be tested.

    Returns
    -------
    BinaryTests
    """
    x = np.asarray(flux, np.float64)
    ev = np.asarray(events, int).reshape(-1, 2)
    if len(ev) < 2:
        return BinaryTests()
    mids = np.sort(ev.mean(axis=1))
    w = max(int(np.median(ev[:, 1] - ev[:, 0])), 1)
    spacing = np.sort(np.diff(mids))
    spacing = spacing[spacing > w]
    if not spacing.size:
        return BinaryTests()
    groups = np.split(spacing, np.flatnonzero(spacing[1:] > 1.05 * spacing[:-1]) + 1)
    # events on the ephemeris beyond the chance count (a short period's window of w covers w/p of
    # the phase, so it catches most events by chance), period, anchor
    best = (-math.inf, 0.0, 0.0)
    for p in (float(np.median(g)) for g in groups):
        _, off = _cycles(mids[None, :] - mids[:, None], 0.0, p)    # row: anchored on one event
        hits = (off <= w / 2).sum(axis=1)
        j = int(np.argmax(hits))
        excess = hits[j] - (mids.size - 1) * min(w / p, 1.0)
        if (excess, p) > best[:2]:
            best = (excess, p, float(mids[j]))
    _, period, t0 = best
    for _ in range(2):
        k, off = _cycles(mids, t0, period)
        on = off <= w
        cycle = k[on]
        if len(np.unique(cycle)) < 2:
            break
        t0, period = (float(v) for v in np.linalg.lstsq(np.stack([np.ones_like(cycle), cycle], 1), mids[on],
                                                        rcond=None)[0])
    free = np.ones(x.size, bool)
    for a, b in ev:
        free[a:b] = False
    out = _depth_tests(x, free, w, period, t0)
    while out.secondary >= HALF_PERIOD_SNR and out.primary_minus_secondary < HALF_PERIOD_SNR \
            and period / 2 > 2 * w:                      # the dip half-way is one of the events': half the period
        period /= 2
        out = _depth_tests(x, free, w, period, t0)
    k, off = _cycles(mids, t0, period)
    if np.unique(k[off <= w]).size < 3:
        out.odd_even = math.nan   # two events always make a period: that their depths differ says nothing
    return out


def _depth_tests(x: np.ndarray, free: np.ndarray, w: int, period: float, t0: float) -> BinaryTests:
    """:class:`BinaryTests` of the ``w``-sample boxes on the ephemeris ``t0 + k period`` and half-way."""
    cycles = np.arange(math.floor(-t0 / period), math.ceil((x.size - t0) / period) + 1)
    band = int(np.clip((period / 2 - w) / 2, 8, w))

    def depths(centres: np.ndarray) -> np.ndarray:
        starts = np.round(centres - w / 2).astype(int)
        return np.array([box_depth(x, a, a + w, band) if band <= a <= x.size - w - band else np.nan
                         for a in starts])

    main, half = depths(t0 + cycles * period), depths(t0 + (cycles + 0.5) * period)
    odd = (cycles % 2 == 1) & np.isfinite(main)
    even = (cycles % 2 == 0) & np.isfinite(main)
    groups = [g for g in (main[odd], main[even], half[np.isfinite(half)]) if g.size]
    dof = sum(g.size for g in groups) - len(groups)
    if dof >= 4:
        sigma = math.sqrt(sum(float(((g - g.mean()) ** 2).sum()) for g in groups) / dof)
    else:   # a box depth is a mean of w samples less a median of 2 band: (1 + pi w / (4 band)) its variance
        sigma, triples = _block_sigma(x, free, w)
        sigma, dof = sigma * math.sqrt(1.0 + math.pi * w / (4.0 * band)), BLOCK_DOF_PER_TRIPLE * triples
    out = BinaryTests(period=period, phase_zero=t0, width=w, dof=dof)
    if not sigma > 0:
        return out
    on, off = main[np.isfinite(main)], half[np.isfinite(half)]
    if odd.any() and even.any():
        out.odd_even = abs(main[odd].mean() - main[even].mean()) / (sigma * math.sqrt(1 / odd.sum() + 1 / even.sum()))
    if off.size:
        out.secondary = off.mean() / (sigma / math.sqrt(off.size))
    if off.size and on.size:
        out.primary_minus_secondary = (on.mean() - off.mean()) / (sigma * math.sqrt(1 / on.size + 1 / off.size))
    return out


def vetted(events: np.ndarray, flux: np.ndarray, min_snr: float, binary_snr: float = 0.0) -> np.ndarray:
    """The events kept by vetting.

    Parameters
    ----------
    events : numpy.ndarray
        ``(k, 2)`` start/stop sample indices.
    flux : numpy.ndarray
        Relative flux per sample.
    min_snr : float
        Events whose :func:`event_snr` is below it are dropped (none when ``<= 0``); an
        event whose S/N cannot be measured (NaN: fewer than three triples of neighbouring
        event-length blocks free of events, i.e. about five event lengths besides the
        events, or no scatter; :func:`event_snr`) is kept.
    binary_snr : float
        When the remaining events are a binary's at this S/N (:func:`binary_tests`),
        those whose mid-sample lies within an event length of its cycles are dropped,
        and of its half-cycles where a secondary eclipse showed (none when ``<= 0``).

    Returns
    -------
    numpy.ndarray
        ``(j, 2)`` the kept events.
    """
    events = np.asarray(events, int).reshape(-1, 2)
    if min_snr > 0 and len(events):
        events = events[~(event_snr(flux, events) < min_snr)]
    if binary_snr > 0 and len(events) >= 2:
        t = binary_tests(flux, events)
        if t.binary(binary_snr):                          # drop what lies on its eclipses (+- an eclipse length)
            step = t.period / 2 if t.secondary_eclipse(binary_snr) else t.period
            _, off = _cycles(events.mean(axis=1), t.phase_zero, step)
            events = events[off > t.width]
    return events


def describe(prob: np.ndarray, flux: np.ndarray, events: np.ndarray, t_start: float, cadence_s: float,
             masked: np.ndarray | None = None) -> list[dict]:
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
    masked : numpy.ndarray, optional
        The events left out of the noise of the S/N (:func:`event_snr`; default: ``events``): every
        event found, before vetting.

    Returns
    -------
    list of dict
        ``t_mid`` [d] (probability-weighted), ``duration`` [h] (the time above
        the threshold: the probability spreads past a transit's edges, so it
        runs longer than the transit), ``depth`` [ppm] (:func:`central_depth`: the
        median flux of a band either side of the event, a gap of the event's length
        away (less where the curve's ends leave no room, :func:`reference_level`),
        minus the mean flux over the middle half of the event, centred on ``t_mid``,
        at least one sample: the full span's mean would take in the edges), ``snr``
        (:func:`event_snr`, of the whole event),
        ``peak_probability``, ``start``/``stop`` samples.
    """
    dt = cadence_s / 86400.0
    out = []
    snr = event_snr(flux, events, masked)
    for (a, b), s in zip(np.asarray(events, int).reshape(-1, 2), snr):
        p = prob[a:b].astype(np.float64)
        idx = np.arange(a, b)
        mid = float((idx * p).sum() / p.sum())
        out.append({"t_mid": t_start + dt * mid,
                    "duration": (b - a) * cadence_s / 3600.0,
                    "depth": central_depth(flux, a, b, mid) * 1e6, "snr": float(s),
                    "peak_probability": float(p.max()), "start": int(a), "stop": int(b)})
    return out
