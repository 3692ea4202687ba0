"""The built-in PLATO light-curve simulator.

A light curve is

    flux(t) = (1 + r(t) + g(t)) * (1 - δ(t)) + w(t)

with ``r`` an optional rotational (spot) modulation, ``g`` granulation-like red
noise with a Harvey power spectrum, ``δ`` the flux deficit of a transit or of
the eclipses of a binary (an eclipsing binary, or a background one diluted by
the target: the negatives a transit finder must not flag) and ``w`` white noise
of ``noise_ppm`` per cadence. Flux is normalised so that 1 is the
unperturbed star. Time is in days from the start of the simulated observation.

Every curve ``i`` draws its parameters and its noise from its own random streams,
seeded by :func:`astrotool.seeding.derive_seed` from ``(seed, i)``, so a curve is
the same whichever chunk, process or machine computes it.

The transit profile is either a trapezoid or a quadratically limb-darkened
profile in the small-planet approximation of Mandel & Agol (2002, ApJ 580, L171,
sect. 5): the occulted flux is the stellar intensity under the planet times the
exact area of overlap of the two discs. Both shapes share the geometry
(planet-to-star radius ratio ``p`` from the depth, impact parameter ``b``, a
straight chord crossed at constant speed in ``T14``), so ``T14``, ``T23`` and the
mid-transit depth agree between them.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from astrotool_plato.config import SimulateConfig

__docformat__ = "numpy"

SECONDS_PER_DAY = 86400.0
"""Seconds in a day [s/d]."""
R_SUN_IN_R_EARTH = 109.08
"""Solar radius in Earth radii (IAU 2015 nominal: 695,700 km / 6,378.1 km)."""

# keys of SimulateConfig that change no curve's content (only how many and where)
_LAYOUT_KEYS = ("name", "n_curves", "chunk_size", "psls_data")


@dataclass
class CurveParams:
    """Parameters of one simulated light curve (what the label table holds).

    Attributes
    ----------
    index : int
        Curve number within the simulation (seeds its random stream).
    id : str
        Curve identifier, ``<name><index:06d>``.
    has_transit : bool
        Whether the curve holds a transit.
    t0 : float
        Mid-time of the first transit entirely inside the curve [d]; NaN without transit.
    duration : float
        Total transit duration T14 [h]; NaN without transit.
    depth : float
        Flux deficit at mid-transit [ppm]; NaN without transit.
    period : float
        Period of repeated transits [d]; NaN for a single transit or none.
    impact : float
        Impact parameter [stellar radii]; NaN without transit.
    rp_rs : float
        Planet-to-star radius ratio; NaN without transit.
    n_transits : int
        Transits (complete or partial) inside the curve.
    snr : float
        Expected white-noise signal-to-noise ratio of all transits,
        ``depth / noise * sqrt(T14 / cadence * n_transits)``; 0 without transit.
    rotation_period : float
        Spot-modulation period [d]; NaN when the star has none.
    rotation_amplitude : float
        Spot-modulation semi-amplitude of the fundamental [ppm]; 0 when none.
    rotation_harmonic : float
        Amplitude of the first harmonic relative to the fundamental.
    rotation_phase1, rotation_phase2 : float
        Phases of the fundamental and the harmonic [rad].
    eclipse : str
        ``"eb"`` (an eclipsing binary), ``"beb"`` (a background eclipsing binary,
        diluted by the target) or ``""`` (none); a negative example, never
        together with a transit.
    eclipse_t0 : float
        Mid-time of a primary eclipse inside the curve [d]; NaN without eclipse.
    eclipse_period : float
        Orbital period [d]; the secondary eclipse is at ``eclipse_t0 + period / 2``.
    eclipse_duration : float
        Total duration of each eclipse [h].
    eclipse_depth, eclipse_secondary : float
        Depths of the primary and the secondary eclipse as seen in the curve [ppm].
    eclipse_flat : float
        Flat-bottom fraction of the eclipses, ``T23 / T14``.
    magnitude : float
        V magnitude when the noise follows it; NaN otherwise.
    noise_ppm : float
        White noise per cadence [ppm]; NaN: the configuration's ``noise_ppm``.
    step_time, step_ppm : float
        Time [d] and size [ppm] of a flux step (an aperture-mask update); NaN and 0 when none.
    star_radius : float
        Stellar radius [R_sun].
    planet_radius : float
        Planet radius ``rp_rs * star_radius`` [R_earth]; NaN without transit.
    red_noise_ppm, red_noise_hours : float
        Rms [ppm] and characteristic time [h] of the curve's second red-noise
        component (``red_noise_ppm`` of the configuration); 0 and NaN when none.
    group_step_time, group_step_ppm : list of float
        Per camera group (``camera_groups``): time [d] and size [ppm] of its own flux
        step; NaN and 0 for a group without one; empty without camera groups.
    """

    index: int
    id: str
    has_transit: bool
    t0: float = math.nan
    duration: float = math.nan
    depth: float = math.nan
    period: float = math.nan
    impact: float = math.nan
    rp_rs: float = math.nan
    n_transits: int = 0
    snr: float = 0.0
    rotation_period: float = math.nan
    rotation_amplitude: float = 0.0
    rotation_harmonic: float = 0.0
    rotation_phase1: float = 0.0
    rotation_phase2: float = 0.0
    eclipse: str = ""
    eclipse_t0: float = math.nan
    eclipse_period: float = math.nan
    eclipse_duration: float = math.nan
    eclipse_depth: float = math.nan
    eclipse_secondary: float = math.nan
    eclipse_flat: float = 0.0
    magnitude: float = math.nan
    noise_ppm: float = math.nan
    step_time: float = math.nan
    step_ppm: float = 0.0
    star_radius: float = math.nan
    planet_radius: float = math.nan
    red_noise_ppm: float = 0.0
    red_noise_hours: float = math.nan
    group_step_time: list = field(default_factory=list)
    group_step_ppm: list = field(default_factory=list)


SEEDING = "derive_seed(seed, index, 'params' | 'noise')"
"""How a curve's streams are seeded; part of :func:`content_hash`, so files seeded otherwise are refused."""


def curve_seeds(seed: int, index: int) -> tuple[int, int]:
    """Seeds of the parameters and of the noise of curve ``index`` (see :data:`SEEDING`).

    Parameters
    ----------
    seed : int
        Base seed of the simulation (``core.seed``).
    index : int
        Curve number.
    """
    from astrotool.seeding import derive_seed

    return derive_seed(seed, index, "params"), derive_seed(seed, index, "noise")


def n_samples(cfg: SimulateConfig) -> int:
    """Number of samples of a curve: ``round(duration_days * 86400 / cadence_s)``."""
    return int(round(cfg.duration_days * SECONDS_PER_DAY / cfg.cadence_s))


GAP_EVERY_DAYS, GAP_MINUTES = 5.0, 20.0
"""PLATO's periodic interruptions (as in PSLS): 20 min every 5 d."""


def time_grid(cfg: SimulateConfig) -> np.ndarray:
    """Sample times [d] from the start of the observation, ``0, cadence, 2 cadence, ...``; with ``gaps``,
    without the samples of a 20-min interruption every 5 d."""
    t = np.arange(n_samples(cfg), dtype=np.float64) * (cfg.cadence_s / SECONDS_PER_DAY)
    if cfg.gaps:
        phase = np.mod(t, GAP_EVERY_DAYS)
        t = t[~((t >= GAP_EVERY_DAYS - 1e-9) & (phase < GAP_MINUTES / 1440.0 - 1e-9))]
    return t


def noise_for_magnitude(v: float, cadence_s: float) -> float:
    """White noise per cadence [ppm] of a PLATO star of V magnitude ``v``: 170 ppm per 25 s at V = 9,
    times 10^(0.25 (V - 9)) (PSLS's simulated curves: about 170-1740 ppm for V 9-13)."""
    return 170.0 * 10.0 ** (0.25 * (v - 9.0)) * math.sqrt(25.0 / cadence_s)


def _loguniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))


def limb_darkened_intensity(r, u1: float, u2: float):
    """Quadratic limb-darkening law, ``I(r) / I(0) = 1 - u1 (1 - mu) - u2 (1 - mu)^2``.

    Parameters
    ----------
    r : array_like
        Distance from the disc centre [stellar radii], clipped to [0, 1].
    u1, u2 : float
        Quadratic limb-darkening coefficients.
    """
    r = np.clip(np.asarray(r, dtype=np.float64), 0.0, 1.0)
    one_minus_mu = 1.0 - np.sqrt(1.0 - r * r)
    return 1.0 - u1 * one_minus_mu - u2 * one_minus_mu**2


def overlap_area(p: float, z):
    """Area of overlap of a disc of radius ``p`` at distance ``z`` from the centre of the unit disc.

    Parameters
    ----------
    p : float
        Planet-to-star radius ratio.
    z : array_like
        Centre-to-centre distance [stellar radii].

    Returns
    -------
    numpy.ndarray
        Overlap area [stellar radii²]: ``pi p²`` when the planet is fully on the
        disc, 0 when it is off.
    """
    z = np.asarray(z, dtype=np.float64)
    area = np.zeros_like(z)
    inside = z <= 1.0 - p
    area[inside] = math.pi * p * p
    edge = (z > abs(1.0 - p)) & (z < 1.0 + p)
    ze = z[edge]
    k0 = np.arccos(np.clip((p * p + ze * ze - 1.0) / (2.0 * p * ze), -1.0, 1.0))
    k1 = np.arccos(np.clip((1.0 - p * p + ze * ze) / (2.0 * ze), -1.0, 1.0))
    root = np.sqrt(np.clip(4.0 * ze * ze - (1.0 + ze * ze - p * p) ** 2, 0.0, None))
    area[edge] = p * p * k0 + k1 - 0.5 * root
    return area


def transit_geometry(depth_ppm: float, impact: float, limb_darkening: tuple[float, float],
                     shape: str) -> tuple[float, float]:
    """Radius ratio and (possibly reduced) impact parameter giving a mid-transit depth.

    Parameters
    ----------
    depth_ppm : float
        Wanted flux deficit at mid-transit [ppm].
    impact : float
        Wanted impact parameter [stellar radii]; lowered to ``1 - p`` when the
        planet would graze the limb.
    limb_darkening : (float, float)
        Quadratic coefficients ``u1, u2`` (ignored by the trapezoid).
    shape : {"limb-darkened", "trapezoid"}
        Transit profile.

    Returns
    -------
    p, b : float
        Planet-to-star radius ratio and impact parameter.
    """
    depth = depth_ppm * 1e-6
    if shape == "trapezoid":
        p = math.sqrt(depth)
    else:
        u1, u2 = limb_darkening
        norm = 1.0 - u1 / 3.0 - u2 / 6.0
        # I(b) depends on b only; if b must then shrink, I(b) grows: iterate twice
        b = impact
        for _ in range(3):
            p = math.sqrt(depth * norm / float(limb_darkened_intensity(b, u1, u2)))
            b = min(impact, max(0.0, 1.0 - p - 1e-9))
        return p, b
    return p, min(impact, max(0.0, 1.0 - p - 1e-9))


def trapezoid(dt, t14: float, t23: float) -> np.ndarray:
    """A trapezoid of unit depth: 1 for ``|dt| <= t23 / 2``, 0 beyond ``t14 / 2``, linear between.

    Parameters
    ----------
    dt : array_like
        Time from mid-event [d].
    t14, t23 : float
        Total and flat-bottom durations [d]; ``t23 = 0`` gives a V.
    """
    return np.clip((0.5 * t14 - np.abs(dt)) / (0.5 * (t14 - t23)), 0.0, 1.0)


def eclipse_deficit(time, t0: float, duration_h: float, depth_ppm: float, secondary_ppm: float,
                    period: float, flat: float = 0.0) -> np.ndarray:
    """Fractional flux deficit of an eclipsing binary: trapezoid primaries and secondaries.

    Parameters
    ----------
    time : array_like
        Times [d].
    t0 : float
        Mid-time of a primary eclipse [d].
    duration_h : float
        Total duration of each eclipse [h].
    depth_ppm, secondary_ppm : float
        Depths of the primary and the secondary (at ``t0 + period / 2``) [ppm].
    period : float
        Orbital period [d].
    flat : float
        Flat-bottom fraction ``T23 / T14`` (0: V-shaped, as grazing eclipses are).

    Returns
    -------
    numpy.ndarray
        Deficit (a fraction), same shape as ``time``.
    """
    time = np.asarray(time, dtype=np.float64)
    t14 = duration_h / 24.0
    out = np.zeros_like(time)
    for centre, depth in ((t0, depth_ppm), (t0 + 0.5 * period, secondary_ppm)):
        dt = np.mod(time - centre + 0.5 * period, period) - 0.5 * period
        out += depth * 1e-6 * trapezoid(dt, t14, flat * t14)
    return out


def transit_deficit(time, t0: float, duration_h: float, depth_ppm: float, impact: float,
                    limb_darkening: tuple[float, float], shape: str,
                    period: float | None = None) -> np.ndarray:
    """Fractional flux deficit of a transit (0 out of transit, ``depth`` at mid-transit).

    Parameters
    ----------
    time : array_like
        Times [d].
    t0 : float
        Mid-transit time [d].
    duration_h : float
        Total duration T14, first to fourth contact [h].
    depth_ppm : float
        Deficit at mid-transit [ppm].
    impact : float
        Impact parameter [stellar radii].
    limb_darkening : (float, float)
        Quadratic coefficients ``u1, u2``.
    shape : {"limb-darkened", "trapezoid"}
        Profile.
    period : float, optional
        Period [d] of repeated transits; ``None`` or NaN for a single transit.

    Returns
    -------
    numpy.ndarray
        Deficit (a fraction, not ppm), same shape as ``time``.
    """
    time = np.asarray(time, dtype=np.float64)
    if period is not None and np.isfinite(period):
        dt = np.mod(time - t0 + 0.5 * period, period) - 0.5 * period
    else:
        dt = time - t0
    t14 = duration_h / 24.0
    out = np.zeros_like(time)
    on = np.abs(dt) < 0.5 * t14
    if not on.any():
        return out
    p, b = transit_geometry(depth_ppm, impact, limb_darkening, shape)
    x14 = math.sqrt((1.0 + p) ** 2 - b * b)
    if shape == "trapezoid":
        x23 = math.sqrt(max((1.0 - p) ** 2 - b * b, 0.0))
        out[on] = depth_ppm * 1e-6 * trapezoid(dt[on], t14, t14 * x23 / x14)
        return out
    if shape != "limb-darkened":
        raise ValueError(f"unknown transit shape {shape!r}")
    u1, u2 = limb_darkening
    norm = 1.0 - u1 / 3.0 - u2 / 6.0
    x = dt[on] * (2.0 * x14 / t14)          # position along the chord [stellar radii]
    z = np.sqrt(b * b + x * x)
    # intensity under the planet; on the limb, the mean radius of the occulted annulus
    r_eff = np.where(z <= 1.0 - p, z, 0.5 * (z - p + 1.0))
    out[on] = limb_darkened_intensity(r_eff, u1, u2) * overlap_area(p, z) / (math.pi * norm)
    return out


def harvey_noise(n: int, cadence_s: float, rms_ppm: float, timescale_min: float, exponent: float,
                 rng: np.random.Generator) -> np.ndarray:
    """Stationary red noise with a Harvey power spectrum, ``P(f) ∝ 1 / (1 + (2 pi f tau)^a)``.

    Exponent 2 is the Lorentzian spectrum of an AR(1) (Ornstein–Uhlenbeck)
    process, the usual granulation model; 4 is the steeper "super-Lorentzian".
    Synthesised in Fourier space on a grid twice as long as the curve, so the
    circular wrap-around does not correlate its two ends.

    Parameters
    ----------
    n : int
        Number of samples.
    cadence_s : float
        Sampling interval [s].
    rms_ppm : float
        Expected standard deviation [ppm].
    timescale_min : float
        Characteristic time ``tau`` [min].
    exponent : float
        Slope ``a`` of the Harvey profile.
    rng : numpy.random.Generator
        Random stream.

    Returns
    -------
    numpy.ndarray
        Relative flux variation (a fraction), length ``n``.
    """
    if rms_ppm <= 0 or n < 2:
        return np.zeros(n)
    m = 2 * n
    freq = np.fft.rfftfreq(m, d=cadence_s)
    psd = 1.0 / (1.0 + (2.0 * math.pi * freq * timescale_min * 60.0) ** exponent)
    psd[0] = 0.0                                   # zero mean
    re = rng.standard_normal(freq.size)
    im = rng.standard_normal(freq.size)
    coeff = np.sqrt(psd / 2.0) * (re + 1j * im)
    coeff[-1] = np.sqrt(psd[-1]) * re[-1]          # the Nyquist term of an even-length series is real
    series = np.fft.irfft(coeff, n=m)[:n]
    variance = (2.0 * psd[1:-1].sum() + psd[-1]) / m**2
    return series * (rms_ppm * 1e-6 / math.sqrt(variance))


def draw_params(index: int, seed: int, cfg: SimulateConfig) -> CurveParams:
    """Draw the parameters of curve ``index`` (cheap: no light curve is computed).

    Parameters
    ----------
    index : int
        Curve number.
    seed : int
        Base seed of the simulation.
    cfg : astrotool_plato.config.SimulateConfig
        Simulator settings.
    """
    rng = np.random.default_rng(curve_seeds(seed, index)[0])
    length = n_samples(cfg) * cfg.cadence_s / SECONDS_PER_DAY
    par = CurveParams(index=index, id=f"{cfg.name}{index:06d}", has_transit=False)
    if rng.random() < cfg.rotation_fraction:
        par.rotation_period = _loguniform(rng, *cfg.rotation_period_days)
        par.rotation_amplitude = _loguniform(rng, *cfg.rotation_amplitude_ppm)
        par.rotation_harmonic = float(rng.uniform(0.0, 0.5))
        par.rotation_phase1, par.rotation_phase2 = (float(v) for v in rng.uniform(0, 2 * math.pi, 2))
    if rng.random() < cfg.transit_fraction:
        par.has_transit = True
        par.depth = _loguniform(rng, *cfg.depth_ppm)
        par.duration = float(rng.uniform(*cfg.duration_hours))
        t14 = par.duration / 24.0
        p, b = transit_geometry(par.depth, float(rng.uniform(0.0, cfg.impact_max)), cfg.limb_darkening, cfg.shape)
        par.rp_rs, par.impact = p, b
        window = length - t14                     # where a whole transit's centre can be
        if rng.random() < cfg.periodic_fraction:
            par.period = max(_loguniform(rng, *cfg.period_days), 1.5 * t14)
            window = min(window, par.period)
        par.t0 = 0.5 * t14 + float(rng.uniform(0.0, window))
        if math.isfinite(par.period):
            k_lo = math.ceil((-0.5 * t14 - par.t0) / par.period + 1e-12)
            k_hi = math.floor((length + 0.5 * t14 - par.t0) / par.period - 1e-12)
            par.n_transits = max(k_hi - k_lo + 1, 1)
        else:
            par.n_transits = 1
        if cfg.noise_ppm > 0:
            points = par.duration * 3600.0 / cfg.cadence_s * par.n_transits
            par.snr = float(par.depth / cfg.noise_ppm * math.sqrt(points))
        else:
            par.snr = math.inf
    elif cfg.eb_fraction + cfg.beb_fraction > 0:  # no draw at all without binaries: older curves stay the same
        u = rng.random()
        kind = "eb" if u < cfg.eb_fraction else "beb" if u < cfg.eb_fraction + cfg.beb_fraction else ""
        if kind:
            par.eclipse = kind
            par.eclipse_depth = _loguniform(rng, *(cfg.eb_depth_ppm if kind == "eb" else cfg.beb_depth_ppm))
            par.eclipse_secondary = par.eclipse_depth * float(rng.uniform(*cfg.eclipse_secondary_ratio))
            par.eclipse_duration = float(rng.uniform(*cfg.duration_hours))
            par.eclipse_period = max(_loguniform(rng, *cfg.eclipse_period_days), 3.0 * par.eclipse_duration / 24.0)
            par.eclipse_t0 = float(rng.uniform(0.0, min(length, par.eclipse_period)))
            par.eclipse_flat = float(rng.uniform(0.0, 0.5))
    # later additions draw last, and only when asked: older configurations keep their curves
    if cfg.noise_from_magnitude:
        par.magnitude = float(rng.uniform(*cfg.magnitude))
        par.noise_ppm = noise_for_magnitude(par.magnitude, cfg.cadence_s)
        if par.has_transit:
            points = par.duration * 3600.0 / cfg.cadence_s * par.n_transits
            par.snr = float(par.depth / par.noise_ppm * math.sqrt(points))
    for _ in range(cfg.camera_groups or 1):  # with camera groups, each group has its own steps
        time, ppm = math.nan, 0.0
        if cfg.step_fraction > 0 and rng.random() < cfg.step_fraction:
            time = float(rng.uniform(0.0, length))
            ppm = float(rng.choice([-1.0, 1.0]) * _loguniform(rng, *cfg.step_ppm))
        if cfg.camera_groups:
            par.group_step_time.append(time)
            par.group_step_ppm.append(ppm)
        else:
            par.step_time, par.step_ppm = time, ppm
    par.star_radius = float(rng.uniform(*cfg.star_radius))
    if par.has_transit:
        par.planet_radius = par.rp_rs * par.star_radius * R_SUN_IN_R_EARTH
    if cfg.red_noise_ppm[1] > 0:
        par.red_noise_ppm = _loguniform(rng, *cfg.red_noise_ppm)
        par.red_noise_hours = _loguniform(rng, *cfg.red_noise_hours)
    if cfg.backend == "psls":   # drawn (the same stream either way) for the built-in model; PSLS's curves hold none
        par.rotation_period, par.rotation_amplitude, par.noise_ppm = math.nan, 0.0, math.nan
        par.step_time, par.step_ppm, par.red_noise_ppm, par.red_noise_hours = math.nan, 0.0, 0.0, math.nan
    return par


def simulate_curve(params: CurveParams, seed: int, cfg: SimulateConfig, time: np.ndarray | None = None):
    """Compute the flux of one curve from its parameters.

    Parameters
    ----------
    params : CurveParams
        From :func:`draw_params`.
    seed : int
        Base seed of the simulation (the noise stream of ``params.index``).
    cfg : astrotool_plato.config.SimulateConfig
        Simulator settings.
    time : numpy.ndarray, optional
        Sample times [d]; by default :func:`time_grid` of ``cfg``.

    Returns
    -------
    flux : numpy.ndarray
        Normalised flux (float64), 1 = unperturbed star: shape ``(n,)``, or with
        ``cfg.camera_groups = G`` shape ``(G + 1, n)``, the groups' fluxes and
        then the co-added flux (their mean).
    deficit : numpy.ndarray
        The noiseless transit deficit (a fraction).
    """
    time = time_grid(cfg) if time is None else time
    rng = np.random.default_rng(curve_seeds(seed, params.index)[1])
    variability = harvey_noise(time.size, cfg.cadence_s, cfg.granulation_ppm, cfg.granulation_timescale_min,
                               cfg.granulation_exponent, rng)
    if params.rotation_amplitude > 0:
        phase = 2.0 * math.pi * time / params.rotation_period
        variability += params.rotation_amplitude * 1e-6 * (
            np.sin(phase + params.rotation_phase1)
            + params.rotation_harmonic * np.sin(2.0 * phase + params.rotation_phase2))
    if params.has_transit:
        deficit = transit_deficit(time, params.t0, params.duration, params.depth, params.impact,
                                  cfg.limb_darkening, cfg.shape, params.period)
    else:
        deficit = np.zeros_like(time)
    if params.eclipse:
        deficit = deficit + eclipse_deficit(time, params.eclipse_t0, params.eclipse_duration, params.eclipse_depth,
                                            params.eclipse_secondary, params.eclipse_period, params.eclipse_flat)
    noise = params.noise_ppm if math.isfinite(params.noise_ppm) else cfg.noise_ppm
    # a group has 1/groups of the cameras: sqrt(groups) x the co-added noise
    shape, scale = ((cfg.camera_groups, time.size), math.sqrt(cfg.camera_groups)) if cfg.camera_groups else \
        ((time.size,), 1.0)
    white = rng.standard_normal(shape) * (noise * 1e-6 * scale)
    if params.red_noise_ppm > 0:  # drawn after the white noise: curves without it stay as they were
        variability = variability + harvey_noise(time.size, cfg.cadence_s, params.red_noise_ppm,
                                                 params.red_noise_hours * 60.0, 2.0, rng)
    star = (1.0 + variability) * (1.0 - deficit)
    if cfg.camera_groups:
        groups = star + white
        for g, (t_step, ppm) in enumerate(zip(params.group_step_time, params.group_step_ppm)):
            if ppm:
                groups[g] *= np.where(time >= t_step, 1.0 + ppm * 1e-6, 1.0)
        return np.vstack([groups, groups.mean(axis=0)]), deficit
    flux = star + white
    if params.step_ppm:
        flux = flux * np.where(time >= params.step_time, 1.0 + params.step_ppm * 1e-6, 1.0)
    return flux, deficit


def simulate_curves(indices, seed: int, cfg: SimulateConfig):
    """Simulate several curves; each depends only on ``(seed, index)`` and ``cfg``.

    Parameters
    ----------
    indices : iterable of int
        Curve numbers.
    seed : int
        Base seed of the simulation.
    cfg : astrotool_plato.config.SimulateConfig
        Simulator settings.

    Returns
    -------
    time : numpy.ndarray
        Sample times [d], shared by all curves, shape ``(n,)``.
    flux : numpy.ndarray
        Normalised flux, float32, shape ``(len(indices), n)``, or ``(len(indices), groups + 1, n)``
        with camera groups (:func:`simulate_curve`).
    params : list of CurveParams
        One per curve, in order.
    """
    indices = list(indices)
    time = time_grid(cfg)
    channels = (cfg.camera_groups + 1,) if cfg.camera_groups else ()
    flux = np.empty((len(indices), *channels, time.size), dtype=np.float32)
    params = []
    for row, index in enumerate(indices):
        par = draw_params(index, seed, cfg)
        flux[row] = simulate_curve(par, seed, cfg, time)[0]
        params.append(par)
    return time, flux, params


def content_hash(seed: int, cfg: SimulateConfig) -> str:
    """Fingerprint of everything that determines a curve's content (not how many or where).

    Parameters
    ----------
    seed : int
        Base seed.
    cfg : astrotool_plato.config.SimulateConfig
        Simulator settings.
    """
    settings = {k: v for k, v in cfg.model_dump(mode="json").items() if k not in _LAYOUT_KEYS}
    settings["seed"] = int(seed)
    settings["curve_id_prefix"] = cfg.name
    settings["seeding"] = SEEDING
    if cfg.backend == "psls":
        from astrotool_plato.psls_backend import _version

        settings["psls_version"] = _version()
    else:  # the PSLS keys do not change a built-in curve
        for key in ("psls_systematics", "psls_gaps") + (() if cfg.noise_from_magnitude else ("magnitude",)):
            settings.pop(key)
    blob = json.dumps(settings, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def chunk_stem(name: str, start: int, stop: int) -> str:
    """File stem of curves ``start .. stop-1``: ``<name><start:06d>-<stop-1:06d>``."""
    return f"{name}{start:06d}-{stop - 1:06d}"


def layout_files(folder, name: str) -> list[Path]:
    """The chunk files of ``name`` in ``folder`` (``<name>NNNNNN-NNNNNN_lightcurves.parquet``), of any layout."""
    import glob
    import re

    pattern = re.compile(re.escape(name) + r"(\d{6,})-(\d{6,})_lightcurves\.parquet")

    def ours(path):   # <name>2000000-000005 is another name's (<name>2) file, not a chunk of <name>
        m = pattern.fullmatch(path.name)
        return bool(m) and int(m[1]) <= int(m[2]) and f"{int(m[1]):06d}-{int(m[2]):06d}" == f"{m[1]}-{m[2]}"

    return sorted(p for p in Path(folder).glob(f"{glob.escape(name)}*_lightcurves.parquet") if ours(p))


def chunks(n_curves: int, chunk_size: int) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` covering ``range(n_curves)`` in blocks of ``chunk_size``."""
    return [(s, min(s + chunk_size, n_curves)) for s in range(0, n_curves, chunk_size)]


COMMAND = "plato simulate"
"""The command named in the provenance record of the files written here."""


def _facts(seed: int, cfg: SimulateConfig, extra: dict | None = None) -> dict:
    """What a file of this simulation holds, stored under the ``astrotool`` key (the versions, time and
    command line are in the core provenance record beside it, see :mod:`astrotool.provenance`)."""
    return {
        "seed": int(seed),
        "content_hash": content_hash(seed, cfg),
        "simulate": cfg.model_dump(mode="json"),
        "time_reference": "days since the start of the simulated observation",
        "flux_model": "(1 + rotation + granulation + red noise) * (1 - transit - eclipses) + white noise; "
                      "1 = unperturbed star",
        **(extra or {}),
    }


def write_lightcurves(path, time: np.ndarray, flux: np.ndarray, params, seed: int, cfg: SimulateConfig) -> Path:
    """Write curves to Parquet in long form, one row group per curve, atomically.

    Columns: ``id`` (string), ``time`` [d] (float64), ``flux`` (normalised,
    float32), ``flux_err`` (white-noise sigma, float32), and with camera groups
    ``flux_g1`` ... (float32). The schema metadata key
    ``astrotool`` holds the simulation's facts (JSON: seed, settings, content hash,
    curve ids), ``provenance`` the core provenance record; ``table_meta_yaml`` the
    units and descriptions for ``astropy.table.Table.read``.

    Parameters
    ----------
    path : path-like
        Output ``.parquet`` file.
    time : numpy.ndarray or list of numpy.ndarray
        Sample times [d]: shape ``(n,)`` shared by all curves, or one array per curve.
    flux : numpy.ndarray or list of numpy.ndarray
        Shape ``(k, n)`` (or ``(k, groups + 1, n)``, the co-added flux last), or one array per curve.
    params : list of CurveParams
        One per row of ``flux``.
    seed : int
        Base seed (provenance).
    cfg : astrotool_plato.config.SimulateConfig
        Simulator settings (provenance).
    """
    from astrotool_plato.lightcurves import write_curves

    shared = isinstance(time, np.ndarray)

    def rows():
        for row, par in enumerate(params):
            f = np.asarray(flux[row])
            noise = par.noise_ppm if math.isfinite(par.noise_ppm) else cfg.noise_ppm
            err = noise * 1e-6 if cfg.backend == "builtin" else _sigma(f)
            yield par.id, (time if shared else time[row]), f, err

    facts = _facts(seed, cfg, {"ids": [p.id for p in params], "snr": [p.snr for p in params]})
    return write_curves(path, rows(), facts, COMMAND, seed=seed, groups=cfg.camera_groups)


def _sigma(flux: np.ndarray) -> float:
    """Point-to-point white-noise sigma of a normalised curve (PSLS curves: the flux_err column)."""
    from astrotool_plato.lightcurves import noise_sigma

    return noise_sigma(flux.astype(np.float64))


def read_lightcurves(path, channels: str = "coadd") -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Read a light-curve Parquet file written by :func:`write_lightcurves`.

    Parameters
    ----------
    path : path-like
    channels : {"coadd", "groups"}
        The co-added flux, or the camera groups' fluxes then the co-added flux.

    Returns
    -------
    dict
        ``{id: (time [d], flux, flux_err)}`` in file order; ``flux`` has shape
        ``(n,)``, or ``(groups + 1, n)`` for ``channels="groups"``.

    Raises
    ------
    astrotool.errors.InputError
        ``channels="groups"`` and the file has no ``flux_g1`` ... columns.
    """
    from astrotool.errors import InputError
    from astrotool.io.tables import read_parquet

    from astrotool_plato.lightcurves import group_columns

    group_cols: list[str] = []
    if channels == "groups":
        import pyarrow.parquet as pq

        group_cols = group_columns(pq.read_schema(path).names)
        if not group_cols:
            raise InputError(path, "no camera-group columns (flux_g1, ...): simulate with "
                                   "plato.simulate.camera_groups = 4, or prepare with channels = \"coadd\"")
    table = read_parquet(path, columns=["id", "time", "flux", "flux_err", *group_cols])
    ids = table.column("id").combine_chunks().dictionary_encode()
    codes = ids.indices.to_numpy(zero_copy_only=False)
    names = ids.dictionary.to_pylist()
    time = table.column("time").to_numpy()
    flux = table.column("flux").to_numpy()
    if group_cols:
        flux = np.vstack([table.column(c).to_numpy() for c in group_cols] + [flux])
    err = table.column("flux_err").to_numpy()
    order = np.argsort(codes, kind="stable")  # each curve's samples, in file order
    bounds = np.searchsorted(codes[order], np.arange(len(names) + 1))
    out = {}
    for k in np.argsort([order[b] for b in bounds[:-1]]) if len(names) else []:  # curves in file order
        sel = order[bounds[k]:bounds[k + 1]]
        out[names[k]] = (time[sel], flux[..., sel], err[sel])
    return out


LABEL_FIELDS = [
    # (name, arrow type name, unit, description)
    ("id", "string", "", "curve identifier"),
    ("has_transit", "bool", "", "whether the curve holds a transit"),
    ("t0", "float64", "d", "mid-time of the first whole transit"),
    ("duration", "float64", "h", "total transit duration T14"),
    ("depth", "float64", "1e-06", "flux deficit at mid-transit [ppm]"),
    ("period", "float64", "d", "period of repeated transits; NaN for a single transit"),
    ("impact", "float64", "", "impact parameter [stellar radii]"),
    ("rp_rs", "float64", "", "planet-to-star radius ratio"),
    ("n_transits", "int32", "", "transits (whole or partial) in the curve"),
    ("snr", "float64", "", "expected white-noise S/N of all transits"),
    ("rotation_period", "float64", "d", "spot-modulation period; NaN if none"),
    ("rotation_amplitude", "float64", "1e-06", "spot-modulation semi-amplitude [ppm]; 0 if none"),
    ("eclipse", "string", "", "eb, beb (background eclipsing binary) or empty"),
    ("eclipse_t0", "float64", "d", "mid-time of a primary eclipse; NaN if none"),
    ("eclipse_period", "float64", "d", "binary period; the secondary is at eclipse_t0 + period / 2"),
    ("eclipse_duration", "float64", "h", "total duration of each eclipse"),
    ("eclipse_depth", "float64", "1e-06", "primary eclipse depth [ppm]"),
    ("eclipse_secondary", "float64", "1e-06", "secondary eclipse depth [ppm]"),
    ("noise_ppm", "float64", "1e-06", "white noise per cadence [ppm]; NaN: the simulation's noise_ppm"),
    ("step_time", "float64", "d", "time of a flux step (aperture-mask update); NaN if none"),
    ("step_ppm", "float64", "1e-06", "size of that step [ppm]; 0 if none"),
    ("star_radius", "float64", "solRad", "stellar radius"),
    ("planet_radius", "float64", "earthRad", "planet radius, rp_rs x star_radius; NaN without transit"),
    ("red_noise_ppm", "float64", "1e-06", "rms of the second red-noise component [ppm]; 0 if none"),
    ("red_noise_hours", "float64", "h", "characteristic time of that component; NaN if none"),
    ("group_step_time", "list<float64>", "d", "per camera group: time of its flux step; NaN if none"),
    ("group_step_ppm", "list<float64>", "1e-06", "per camera group: size of its flux step [ppm]; 0 if none"),
    ("file", "string", "", "light-curve file holding the curve"),
]
"""Columns of the labels table: (name, arrow type, unit, description)."""

EMPTY_LABEL = {"string": "", "bool": False, "float64": math.nan, "int32": 0, "list<float64>": []}
"""The value a label column takes when a row does not give it."""


def label_fields():
    """The ``pyarrow`` fields of a label table (:data:`LABEL_FIELDS`, with units and descriptions)."""
    import pyarrow as pa

    types = {"string": pa.string(), "bool": pa.bool_(), "float64": pa.float64(), "int32": pa.int32(),
             "list<float64>": pa.list_(pa.float64())}
    return [pa.field(n, types[t], metadata={"unit": u, "description": d}) for n, t, u, d in LABEL_FIELDS]


def labels_table(params, files):
    """The label table of some curves as a ``pyarrow.Table`` (columns: :data:`LABEL_FIELDS`).

    Parameters
    ----------
    params : list of CurveParams
        Curves, in any order (the table is sorted by index).
    files : list of str
        Light-curve file name of each curve.
    """
    import pyarrow as pa

    order = sorted(range(len(params)), key=lambda i: params[i].index)
    rows = [{**asdict(params[i]), "file": files[i]} for i in order]
    fields = label_fields()
    return pa.table({f.name: pa.array([r[f.name] for r in rows], f.type) for f in fields},
                    schema=pa.schema(fields))


def write_labels(path, params, files, seed: int, cfg: SimulateConfig) -> Path:
    """Write the label table to Parquet atomically (with the simulation's facts and provenance)."""
    from astrotool.io.tables import write_parquet

    return write_parquet(labels_table(params, files), path, metadata=_facts(seed, cfg), command=COMMAND)


def check_existing(path, seed: int, cfg: SimulateConfig, overwrite: bool) -> bool:
    """Whether ``path`` is a finished output of these settings (so it can be kept).

    Returns False when it is missing or ``overwrite`` replaces it (:func:`astrotool.made_with.replaces`: a
    file this overwrite made before it was stopped is kept when its settings match); raises
    :class:`astrotool.errors.AstroError` when it exists but comes from other
    settings or another seed (re-running would silently mix two simulations).
    """
    from astrotool.io.tables import parquet_metadata
    from astrotool.made_with import SettingsChanged, changes, replaces

    path = Path(path)
    if replaces(overwrite, path) or not path.exists():
        return False
    facts = parquet_metadata(path)
    found, expected = facts.get("content_hash"), content_hash(seed, cfg)
    if found != expected and overwrite:
        return False
    if found != expected:
        changed = changes(_content_settings(facts.get("seed"), facts.get("simulate") or {}),
                          _content_settings(seed, cfg.model_dump(mode="json")))
        raise SettingsChanged(path, changed or [f"content hash: {json.dumps(found)} -> {json.dumps(expected)}"],
                              hint="use --overwrite or another --name")
    return True


def _content_settings(seed, simulate: dict) -> dict:
    """What :func:`content_hash` covers, as the keys a refused rerun names (``seed``, ``plato.simulate.<key>``)."""
    return {"seed": seed, "plato": {"simulate": {k: v for k, v in simulate.items() if k not in _LAYOUT_KEYS}}}


@dataclass(frozen=True)
class ChunkItem:
    """Executor item: curves ``start .. stop-1`` written to one Parquet file.

    Attributes
    ----------
    start, stop : int
        Curve numbers (``stop`` excluded).
    base_seed : int
        Seed of the whole simulation; curve ``i`` draws from ``(base_seed, i)``.
    cfg : SimulateConfig
        Simulator settings.
    path : str
        Output ``<stem>_lightcurves.parquet``.
    overwrite : bool
        Recompute an existing output.
    """

    start: int
    stop: int
    base_seed: int
    cfg: SimulateConfig
    path: str
    overwrite: bool


@dataclass(frozen=True)
class ChunkResult:
    """What :func:`simulate_chunk` did with one :class:`ChunkItem`.

    Attributes
    ----------
    path : str
        The light-curve file.
    written : bool
        False when a finished file of the same settings was kept.
    params : tuple of CurveParams
        Parameters of the file's curves, in order.
    """

    path: str
    written: bool
    params: tuple[CurveParams, ...]


def simulate_chunk(item: ChunkItem, seed: int) -> ChunkResult:
    """Executor task: simulate the curves of ``item`` into one Parquet file.

    Curves are seeded individually from ``item.base_seed`` and their index, so
    the executor's per-item ``seed`` is not used: results do not depend on how
    curves are grouped into chunks or jobs. An existing output is kept (resume)
    unless ``item.overwrite``; it must come from the same settings.

    Parameters
    ----------
    item : ChunkItem
        Curves and output file.
    seed : int
        Executor seed, ignored (see above).
    """
    cfg, base, path = item.cfg, item.base_seed, Path(item.path)
    indices = range(item.start, item.stop)
    if check_existing(path, base, cfg, item.overwrite):
        params = [draw_params(i, base, cfg) for i in indices]
        if cfg.backend == "psls":  # S/N from each curve's own noise, kept in the file
            from astrotool.io.tables import parquet_metadata

            for par, snr in zip(params, parquet_metadata(path).get("snr", [])):
                par.snr = snr
        return ChunkResult(str(path), False, tuple(params))
    if cfg.backend == "psls":
        from astrotool_plato import psls_backend

        time, flux, params = psls_backend.simulate_curves(indices, base, cfg)
    else:
        time, flux, params = simulate_curves(indices, base, cfg)
    write_lightcurves(path, time, flux, params, base, cfg)
    return ChunkResult(str(path), True, tuple(params))


def ensure_labels(path, params, files, seed: int, cfg: SimulateConfig, overwrite: bool) -> bool:
    """Write the label table unless an identical one exists; return whether it was written.

    An existing table from other settings or another seed raises
    :class:`astrotool.errors.AstroError` unless ``overwrite``.
    """
    from astrotool.io.tables import read_parquet

    path = Path(path)
    if check_existing(path, seed, cfg, overwrite):
        # same settings and seed; the curves' files also depend on the chunk size, and a PSLS curve's S/N
        # on the curve computed
        stored = read_parquet(path, columns=["file", "snr"])
        if stored.equals(labels_table(params, files).select(["file", "snr"])):
            return False
    write_labels(path, params, files, seed, cfg)
    return True


@dataclass(frozen=True)
class Simulation:
    """Outcome of :func:`simulate`.

    Attributes
    ----------
    chunks : tuple of ChunkResult
        One per light-curve file that was written or kept (failed files are
        left out: the mapper reports them).
    params : tuple of CurveParams
        Every curve's parameters, in index order.
    labels : str
        The label table.
    labels_written : bool
        False when an identical label table was kept.
    stale : tuple of str
        Light-curve files of this name from another layout (other
        ``n_curves`` or ``chunk_size``) that the labels do not list.
    """

    chunks: tuple[ChunkResult, ...]
    params: tuple[CurveParams, ...]
    labels: str
    labels_written: bool
    stale: tuple[str, ...]

    @property
    def written(self) -> list[str]:
        """Light-curve files computed by this run."""
        return [c.path for c in self.chunks if c.written]

    @property
    def kept(self) -> list[str]:
        """Finished light-curve files that were kept."""
        return [c.path for c in self.chunks if not c.written]


def simulate(cfg: SimulateConfig, seed: int, lightcurves_dir, labels_dir, mapper: Callable,
             overwrite: bool, shard_of: Callable | None = None) -> Simulation:
    """Simulate ``cfg.n_curves`` curves into chunk files and write their label table.

    Parameters
    ----------
    cfg : SimulateConfig
        The ``[plato.simulate]`` section.
    seed : int
        Base seed; curve ``i`` is seeded from ``(seed, i)``.
    lightcurves_dir, labels_dir : path-like
        Stage folders of the light curves and of the label table.
    mapper : callable
        ``mapper(fn, items, desc=..., keys=...) -> [(key, result), ...]``, such as
        :meth:`astrotool.context.Context.map` (it runs :func:`simulate_chunk`
        over :class:`ChunkItem` items).
    overwrite : bool
        Recompute finished files.
    shard_of : callable, optional
        ``shard_of(items)``: the items ``mapper`` runs in this task (:meth:`astrotool.context.Context.shard_of`;
        default: all), whose files are checked before any work.

    Raises
    ------
    astrotool.errors.AstroError
        An existing output of this name comes from other settings or another seed.
    """
    lightcurves_dir, labels_dir = Path(lightcurves_dir), Path(labels_dir)
    labels_path = labels_dir / f"{cfg.name}_labels.parquet"
    blocks = chunks(cfg.n_curves, cfg.chunk_size)
    stems = [chunk_stem(cfg.name, a, b) for a, b in blocks]
    files = [f"{stem}_lightcurves.parquet" for stem in stems]
    items = [ChunkItem(a, b, seed, cfg, str(lightcurves_dir / f), overwrite) for (a, b), f in zip(blocks, files)]
    # before any work: the labels (every shard writes the same complete table) and each curve file this task
    # makes or keeps (after an --overwrite of one shard the others' files still hold the old settings)
    for path in (labels_path, *(it.path for it in (shard_of or list)(items))):
        check_existing(path, seed, cfg, overwrite)
    done = tuple(r for _, r in mapper(simulate_chunk, items, desc="simulate light curves", keys=stems))
    failed = {it.path for it in (shard_of or list)(items)} - {r.path for r in done}   # reported by the mapper
    listed = set(files)
    stale = tuple(p.name for p in layout_files(lightcurves_dir, cfg.name) if p.name not in listed)
    # the chunks' own parameters: a PSLS curve's S/N comes from its own noise, not from the draw
    computed = {p.index: p for r in done for p in r.params}
    params = tuple(computed.get(i) or draw_params(i, seed, cfg) for i in range(cfg.n_curves))
    curve_files = [files[i // cfg.chunk_size] for i in range(cfg.n_curves)]
    made = [i for i in range(cfg.n_curves) if str(lightcurves_dir / curve_files[i]) not in failed]  # no label
    written = bool(made) and ensure_labels(labels_path, [params[i] for i in made], [curve_files[i] for i in made],
                                           seed, cfg, overwrite)                          # for a curve not made
    return Simulation(done, params, str(labels_path), written, stale)
