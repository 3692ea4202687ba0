"""Labelled ZTF alerts drawn with GalSim: AGN, SN, VS, asteroid and bogus.

Each simulated object is a sequence of alert packets in the ZTF alert schema
(``candidate`` fields, ``prv_candidates``, and science / template / difference
cutouts as gzip-compressed FITS), written as broker-style Parquet files with the
label columns ``class`` and ``bogus_kind`` and then ingested like real alerts
(:mod:`astrotool_ztf.ingest`): simulated and real alerts reach ``prepare``,
``predict`` and the models by the same road.

The images
----------
ZTF's pixel scale (1.01″), 63×63 stamps, a Moffat PSF (β = 2.5) whose FWHM is
drawn per epoch, sky and noise in ADU for a zero point of 26.3 mag and a gain of
6.2 e⁻/ADU. Each epoch has its own conditions: the Moon brightens the sky, clouds
dim the sources (:data:`MOON`, :data:`CLOUDS`, calibrated on the limiting
magnitudes of real alerts). The template is a deeper co-add (noise ``/ sqrt(template_depth)``)
with better seeing. The difference is the science image minus the template
convolved to the science PSF, with a small PSF mismatch (relative FWHM error,
``psf_mismatch``), so bright static sources leave rings as in real subtractions.

* **AGN**: a point-like nucleus that varies (a damped random walk in
  magnitude), in a Sérsic host or, for half of them, a quasar without a resolved
  host (star-like in PS1 and in the stamps); the difference sits on the nucleus,
  either sign.
* **SN**: a new point source offset from its Sérsic host (10 % hostless),
  rising and declining over the sequence; absent from the template.
* **VS**: a star, present in both images, that varies (sinusoid of period
  0.3-300 d); crowded fields at low galactic latitude.
* **asteroid**: a point source in the science image only, near the ecliptic,
  one alert, slightly trailed.
* **bogus**: a subtraction dipole of a bright star (misaligned template), a
  cosmic ray, a bad column, or a strong PSF-mismatch ring; one alert.

Field stars are added to every stamp. A fraction ``edge_fraction`` of the
alerts are cut at a CCD edge on one side (a stamp narrower than 63 px, as real edge
cutouts), with ``xpos``/``ypos`` on the quadrant consistent with that side; ingest places the
candidate on the centre pixel from them and pads with NaN.

The metadata are drawn with the images: ``magpsf``/``sigmapsf`` from the
difference flux and the noise, ``diffmaglim``, ``isdiffpos``, ``fwhm``,
``magzpsci``, ``classtar``, the nearest reference source (``distnr``, ``magnr``, ``chinr``,
``sharpnr``), the nearest PS1 sources (``sgscore1..3``, ``distpsnr1..3``),
``ndethist``/``ncovhist``, ``rb``/``drb``, and for asteroids ``ssdistnr``.

Reproducibility: every random number of object ``i`` comes from a generator
seeded by ``(seed, i)``, so alerts do not depend on sharding or ``--jobs``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__docformat__ = "numpy"

CLASSES = ("AGN", "SN", "VS", "asteroid", "bogus")
"""The classes of the ALeRCE stamp classifier, in label order."""

BOGUS_KINDS = ("dipole", "cosmic_ray", "bad_column", "psf_ring")
"""The artefacts a bogus alert shows."""

PIXEL_SCALE = 1.01
"""ZTF pixel scale [arcsec/px]."""

ZERO_POINT = 26.3
"""Magnitude of a source of 1 ADU in a 30 s ZTF exposure."""

GAIN = 6.2
"""ZTF gain [e-/ADU]."""

SKY_MAG = 20.8
"""Sky brightness [mag/arcsec^2] (r band, dark time): the template's sky."""

MOON = (0.0, 3.0)
"""An epoch's sky is brighter than :data:`SKY_MAG` by a uniform draw in this range [mag] (the Moon)."""

CLOUDS = 0.3
"""An epoch loses an exponential draw of this mean [mag] (at most 2) to clouds: every source of the science
image is fainter by it (not its sky, lit by the Moon); the pipeline's zero point (``magzpsci``) follows.

With :data:`MOON` it gives ``diffmaglim`` over all epochs the distribution of the 2,057 epochs in the
histories of the shared real alerts (5/25/50/75/95 %: 19.1/19.7/20.1/20.5/20.9 mag simulated, 18.7/19.6/20.1/
20.5/20.9 real at seeing 1.5-3.0″); with dark, clear skies and a Gaussian PSF's noise every limit was
21.2-21.6 mag."""

READ_NOISE = 10.0
"""Read noise [e-]."""

MOFFAT_BETA = 2.5
"""Moffat beta of the simulated PSF."""

SIMULATE_VERSION = 3
"""Version of the drawing: a file made by another version is made again only with ``--overwrite`` (3: the
candidate's ``xpos``/``ypos`` follow the side an edge stamp is cut on, which keeps the candidate's pixel)."""

LAYOUT = ("name", "n_objects", "chunk_size")
"""Settings that do not change a file's alerts (its objects are named by their indices)."""


@dataclass(frozen=True)
class SimItem:
    """One executor item: objects ``[start, stop)`` written to ``path``."""

    path: str
    start: int
    stop: int
    base_seed: int
    config: dict
    overwrite: bool = False


# ---------------------------------------------------------------------------------------- sky geometry

def _sky_position(rng, cls: str) -> tuple[float, float]:
    """(ra, dec) [deg]: asteroids near the ecliptic, variable stars toward the galactic plane, AGN and SN away
    from it; all north of dec -30 (ZTF)."""
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    for _ in range(100):
        if cls == "asteroid":
            lon, lat = rng.uniform(0, 360), rng.normal(0, 6)
            c = SkyCoord(lon * u.deg, lat * u.deg, frame="barycentrictrueecliptic").icrs
        else:
            if cls == "VS":
                b = rng.normal(0, 12)
            else:
                b = math.degrees(math.asin(rng.uniform(math.sin(math.radians(20)), 1))) * rng.choice([-1, 1])
            c = SkyCoord(rng.uniform(0, 360) * u.deg, float(np.clip(b, -90, 90)) * u.deg, frame="galactic").icrs
        if c.dec.deg > -30:
            return float(c.ra.deg), float(c.dec.deg)
    return float(c.ra.deg), float(c.dec.deg)


def _galactic_latitude(ra: float, dec: float) -> float:
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    return float(SkyCoord(ra * u.deg, dec * u.deg).galactic.b.deg)


# ---------------------------------------------------------------------------------------- drawing

def _flux(mag: float) -> float:
    """ADU of a source of magnitude ``mag``."""
    return 10 ** (-0.4 * (mag - ZERO_POINT))


def _draw(profile, size, offset=(0.0, 0.0)):
    """A GalSim profile on a ``size`` x ``size`` ZTF stamp [ADU], centred at ``(size-1)/2 + offset`` px."""
    import galsim

    img = galsim.ImageF(size, size, scale=PIXEL_SCALE)
    profile.drawImage(img, offset=offset, add_to_image=True)
    return img.array.astype(np.float64)


def _psf(fwhm_arcsec: float, e1: float = 0.0, e2: float = 0.0):
    import galsim

    p = galsim.Moffat(beta=MOFFAT_BETA, fwhm=fwhm_arcsec)
    return p.shear(e1=e1, e2=e2) if (e1 or e2) else p


def _noise(rng, model: np.ndarray, sky: float, depth: float = 1.0) -> np.ndarray:
    """Gaussian noise of Poisson variance (sky + model)/gain + read noise, divided by sqrt(depth) [ADU]."""
    var = (sky + np.clip(model, 0, None)) / GAIN + (READ_NOISE / GAIN) ** 2
    return rng.standard_normal(model.shape) * np.sqrt(var / depth)


def _sky(sky_mag: float) -> float:
    """Sky of an image [ADU per pixel]."""
    return _flux(sky_mag) * PIXEL_SCALE ** 2


def _psf_noise(seeing: float, depth: float, sky_mag: float, transparency: float) -> float:
    """1σ of a PSF-fit flux in the difference image [science ADU] at a seeing FWHM [arcsec] (sky-limited):
    the science image's noise and the template's, scaled to the science image, over the noise-equivalent
    area of the Moffat PSF, π α² (2β - 1) / (β - 1)² (4.35 FWHM² at β = 2.5; a Gaussian's is 2.27 FWHM²)."""
    read = (READ_NOISE / GAIN) ** 2
    alpha = seeing / PIXEL_SCALE / (2 * math.sqrt(2 ** (1 / MOFFAT_BETA) - 1))
    area = math.pi * alpha ** 2 * (2 * MOFFAT_BETA - 1) / (MOFFAT_BETA - 1) ** 2
    var = _sky(sky_mag) / GAIN + read + transparency ** 2 * (_sky(SKY_MAG) / GAIN + read) / depth
    return math.sqrt(area * var)


def _object_plan(rng, cls: str, cfg: dict) -> dict | None:
    """The object's static scene, its light curve and the epochs it is detected at (5σ in the difference,
    as an alert needs); None when no epoch is detected (the caller draws another object)."""
    import galsim

    ra, dec = _sky_position(rng, cls)
    b = _galactic_latitude(ra, dec)
    # offset: the candidate's position from its host's centre [arcsec]
    plan = {"class": cls, "ra": ra, "dec": dec, "bogus_kind": "", "host": None, "offset": (0.0, 0.0),
            "ref_flux": 0.0, "shift": (0.0, 0.0), "trail": 0.0}
    # field stars: positions [arcsec from centre] and magnitudes, denser toward the plane
    n_stars = rng.poisson(1.0 + 6.0 * math.exp(-abs(b) / 15.0))
    half = cfg["stamp_size"] * PIXEL_SCALE / 2
    plan["stars"] = [(rng.uniform(-half, half), rng.uniform(-half, half), rng.uniform(15.5, 21.5))
                     for _ in range(n_stars)]
    lo, hi = cfg["alerts_per_object"]
    n = 1 if cls in ("asteroid", "bogus") else int(rng.integers(lo, hi + 1))
    # epochs: more are drawn than kept, since only detections make alerts
    n_try = n if n == 1 else 3 * n
    dt = np.concatenate([[0.0], np.cumsum(rng.uniform(0.3, 6.0, n_try - 1))])
    seeing = rng.uniform(*cfg["seeing_fwhm"], n_try)
    sky_mag = SKY_MAG - rng.uniform(*MOON, n_try)
    transparency = 10 ** (-0.4 * np.minimum(rng.exponential(CLOUDS, n_try), 2.0))
    plan["jd0"] = 2458300.5 + rng.uniform(0, 1500)
    # 10 % of SNe are hostless; half the AGN are quasars whose host is not resolved
    if (cls == "SN" and rng.uniform() >= 0.1) or (cls == "AGN" and rng.uniform() >= 0.5):
        sn = float(rng.choice([1.0, 1.5, 2.5, 4.0]))
        hlr = rng.uniform(0.8, 3.5) if cls == "SN" else rng.uniform(0.7, 2.5)
        q, beta = rng.uniform(0.3, 1.0), rng.uniform(0, 180)
        plan["host"] = dict(n=sn, hlr=hlr, q=q, beta=beta,
                            mag=rng.uniform(16.5, 20.5) if cls == "SN" else rng.uniform(17.0, 20.0))
        plan["host_profile"] = galsim.Sersic(n=sn, half_light_radius=hlr, flux=1.0).shear(
            q=q, beta=beta * galsim.degrees)
    if cls == "AGN":  # the nucleus varies by a damped random walk around its template brightness
        m_var = rng.uniform(17.8, 20.8)
        plan["ref_flux"] = _flux(m_var - rng.uniform(0.3, 1.5))
        walk = np.cumsum(rng.normal(0, 0.6, n_try)) + rng.normal(0, 0.6)
        diff = _flux(m_var) * np.clip(walk, -1.0, 1.0) / max(1e-9, np.max(np.abs(np.clip(walk, -1, 1))))
        plan["offset"] = tuple(rng.normal(0, 0.1, 2))
    elif cls == "SN":  # rise and decline; absent from the template
        peak, t_peak = rng.uniform(17.0, 20.6), rng.uniform(-5, 15)
        t = dt - t_peak
        diff = _flux(np.where(t < 0, peak + 0.012 * t ** 2, peak + 0.035 * t))
        if plan["host"] is not None:
            r, ang = plan["host"]["hlr"] * rng.uniform(0.2, 2.0), rng.uniform(0, 2 * math.pi)
            plan["offset"] = (r * math.cos(ang), r * math.sin(ang))
    elif cls == "VS":  # a star, brighter than its variation, pulsating with a period of 0.3-300 d
        m_amp = rng.uniform(14.0, 20.5)
        plan["ref_flux"] = _flux(m_amp - rng.uniform(0.2, 2.5))
        period, phase = 10 ** rng.uniform(-0.5, 2.5), rng.uniform(0, 2 * math.pi)
        diff = _flux(m_amp) * np.sin(2 * math.pi * dt / period + phase)
    elif cls == "asteroid":  # in the science image only, slightly trailed
        diff = np.array([_flux(rng.uniform(17.5, 20.8))])
        plan["trail"] = rng.uniform(0.0, 1.5)
    else:
        kind = str(rng.choice(BOGUS_KINDS))
        plan["bogus_kind"] = kind
        diff = np.array([np.nan])  # measured on the image
        if kind in ("dipole", "psf_ring"):
            plan["bright_star"] = _flux(rng.uniform(12.5, 16.0))
            plan["shift"] = tuple(rng.normal(0, 0.6, 2)) if kind == "dipole" else (0.0, 0.0)
    noise = np.array([_psf_noise(v, cfg["template_depth"], m, t) for v, m, t in zip(seeing, sky_mag, transparency)])
    detected = ~np.isfinite(diff) | (transparency * np.abs(diff) >= 5 * noise)
    if not detected.any():
        return None
    keep = np.flatnonzero(detected)[:n]
    plan.update(n_alerts=len(keep), dt=dt[keep] - dt[keep[0]], seeing=seeing[keep], diff_flux=diff[keep],
                sky_mag=sky_mag[keep], transparency=transparency[keep])
    return plan


MISMATCH_RANGE = (0.5, 2.0)
"""Limits of the factor of a matched template's FWHM (1 + N(0, mismatch)): a near-zero or negative width
would make GalSim ask for an FFT of many GB."""


def matched_fwhm(rng, seeing: float, mismatch: float) -> float:
    """FWHM of the template as matched to the science PSF [arcsec].

    Parameters
    ----------
    rng : numpy.random.Generator
        Draws the relative error.
    seeing : float
        The science FWHM [arcsec].
    mismatch : float
        Standard deviation of the relative error.

    Returns
    -------
    float
        ``seeing * (1 + N(0, mismatch))``, the factor clipped to :data:`MISMATCH_RANGE`.
    """
    return float(seeing * np.clip(1.0 + rng.normal(0, mismatch), *MISMATCH_RANGE))


def _epoch(rng, plan: dict, k: int, cfg: dict, size: int):
    """Science, template and difference stamps [ADU] of epoch ``k``."""
    import galsim

    kind = plan["bogus_kind"]
    seeing = plan["seeing"][k]
    psf_s = _psf(seeing, *rng.normal(0, 0.02, 2))
    psf_t = _psf(max(cfg["seeing_fwhm"][0] * 0.9, seeing * rng.uniform(0.7, 0.95)))
    mismatch = cfg["psf_mismatch"] * (6.0 if kind == "psf_ring" else 1.0)
    psf_m = _psf(matched_fwhm(rng, seeing, mismatch))  # the template as matched to the science PSF
    t = plan["transparency"][k]
    sky_s, sky_t = _sky(plan["sky_mag"][k]), _sky(SKY_MAG)
    # the cutout is centred on the candidate: the host lies at minus its offset
    ox, oy = plan["offset"]
    static = [galsim.DeltaFunction(flux=_flux(m)).shift(x, y) for x, y, m in plan["stars"]]
    if plan["host"] is not None:
        static.append(plan["host_profile"].withFlux(_flux(plan["host"]["mag"])).shift(-ox, -oy))
    if kind in ("dipole", "psf_ring"):
        static.append(galsim.DeltaFunction(flux=plan["bright_star"]))
    ref = plan["ref_flux"]
    now = ref + (plan["diff_flux"][k] if np.isfinite(plan["diff_flux"][k]) else 0.0)
    trail = (galsim.Box(plan["trail"], 1e-3).rotate(rng.uniform(0, 180) * galsim.degrees)
             if plan["trail"] > 0 else None)

    def scene(psf, flux: float, shift=(0.0, 0.0), trailed=False):
        """Every source convolved with ``psf``, the variable one with ``flux``, drawn in one go [ADU]."""
        parts = list(static)
        if flux > 0:
            point = galsim.DeltaFunction(flux=flux)
            parts.append(galsim.Convolve(trail, point) if trailed else point)
        if not parts:
            return np.zeros((size, size))
        return _draw(galsim.Convolve(galsim.Add(parts).shift(*shift), psf), size)

    # the science image through the epoch's clouds; the template as matched, scaled to the science image
    sci_model = t * scene(psf_s, now, trailed=trail is not None)
    tmpl_model = scene(psf_t, ref)
    matched = scene(psf_m, ref, shift=tuple(v * PIXEL_SCALE for v in plan["shift"]))
    depth = cfg["template_depth"]
    n_sci = _noise(rng, sci_model, sky_s)
    science = sky_s + sci_model + n_sci
    template = sky_t + tmpl_model + _noise(rng, tmpl_model, sky_t, depth)
    difference = sci_model - t * (matched + _noise(rng, matched, sky_t, depth)) + n_sci
    c = size // 2
    if kind == "cosmic_ray":
        amp, ang = rng.uniform(200, 3000), rng.uniform(0, math.pi)
        for t in range(int(rng.integers(1, 4))):
            y = c + int(round(t * math.sin(ang))) + int(rng.integers(-1, 2))
            x = c + int(round(t * math.cos(ang))) + int(rng.integers(-1, 2))
            science[y, x] += amp
            difference[y, x] += amp
    elif kind == "bad_column":
        col, level = c + int(rng.integers(-2, 3)), rng.uniform(50, 500)
        science[:, col] += level
        difference[:, col] += level
    return science, template, difference


def _metadata(rng, plan: dict, k: int, difference: np.ndarray, cfg: dict) -> dict:
    """The ``candidate`` fields of epoch ``k`` (consistent with the drawn images)."""
    cls, kind = plan["class"], plan["bogus_kind"]
    seeing, t = plan["seeing"][k], plan["transparency"][k]
    noise = _psf_noise(seeing, cfg["template_depth"], plan["sky_mag"][k], t)
    zp = ZERO_POINT + 2.5 * math.log10(t)  # the epoch's zero point: a source of magzpsci gives 1 ADU
    if np.isfinite(plan["diff_flux"][k]):
        flux = t * plan["diff_flux"][k] + rng.normal(0, noise)
    else:  # bogus: what an aperture at the centre holds
        c = difference.shape[0] // 2
        flux = float(np.sum(difference[c - 2:c + 3, c - 2:c + 3]))
    size = max(abs(flux), 5 * noise)
    mag = zp - 2.5 * math.log10(size)
    quasar = cls == "AGN" and plan["host"] is None
    point = cls in ("VS", "asteroid") or (cls == "SN" and plan["host"] is None) or kind == "dipole" or quasar
    # nearest PS1 sources: the host or the star itself (PS1's score 0.5 where it has none), then neighbours;
    # PS1's star/galaxy score calls most quasars stars (Tachibana & Miller 2018), a little less surely
    if cls in ("AGN", "SN") and plan["host"] is not None:
        d1, sg1 = math.hypot(*plan["offset"]) + abs(rng.normal(0, 0.1)), rng.uniform(0.0, 0.3)
    elif cls == "VS" or quasar or kind in ("dipole", "psf_ring"):
        d1 = abs(rng.normal(0, 0.3))
        sg1 = 0.5 if rng.uniform() < 0.15 else rng.uniform(0.8, 1.0) if quasar else rng.uniform(0.9, 1.0)
    else:
        d1, sg1 = rng.uniform(2.0, 30.0), rng.uniform(0.0, 1.0)
    d2, d3 = sorted(rng.uniform(d1, 30.0, 2))
    near = d1 < 5.0
    ref_mag = (plan["host"]["mag"] if plan["host"] is not None else
               ZERO_POINT - 2.5 * math.log10(plan["ref_flux"]) if plan["ref_flux"] > 0 else rng.uniform(19, 22))
    real = cls != "bogus"
    prior = {"AGN": int(rng.integers(5, 400)), "VS": int(rng.integers(5, 600))}.get(cls, 0)
    return {
        "jd": float(plan["jd0"] + plan["dt"][k]), "fid": int(rng.integers(1, 3)), "magpsf": float(mag),
        "sigmapsf": float(min(1.0857 * noise / size, 0.5)),
        "diffmaglim": float(zp - 2.5 * math.log10(5 * noise)), "magzpsci": float(zp),
        "isdiffpos": "t" if flux >= 0 else "f", "ra": plan["ra"], "dec": plan["dec"],
        "fwhm": float(seeing / PIXEL_SCALE * (0.5 if kind == "cosmic_ray" else 1.0) * rng.uniform(0.95, 1.1)),
        "classtar": float(rng.uniform(0.85, 1.0) if point else rng.uniform(0.0, 0.6)),
        "distnr": float(d1 / PIXEL_SCALE) if near else None,
        "magnr": float(ref_mag) if near else None,
        "chinr": float(rng.uniform(0.5, 1.5) if sg1 > 0.5 else rng.uniform(1.5, 15.0)) if near else None,
        "sharpnr": float(rng.normal(0.0, 0.05) if sg1 > 0.5 else rng.uniform(0.1, 1.5)) if near else None,
        "sgscore1": float(sg1), "distpsnr1": float(d1), "sgscore2": float(rng.uniform(0, 1)),
        "distpsnr2": float(d2), "sgscore3": float(rng.uniform(0, 1)), "distpsnr3": float(d3),
        "ndethist": prior + k + 1, "ncovhist": prior + k + 1 + int(rng.integers(10, 1500)),
        "jdstarthist": float(plan["jd0"] - 3.0 * prior),
        "rb": float(rng.uniform(0.55, 1.0) if real else rng.uniform(0.05, 0.7)),
        "drb": float(rng.uniform(0.7, 1.0) if real else rng.uniform(0.0, 0.5)),
        "elong": float(1.0 + plan["trail"] / seeing + abs(rng.normal(0, 0.05))),
        "ssdistnr": float(rng.uniform(0, 5)) if cls == "asteroid" else None,
        "ssmagnr": float(mag + rng.normal(0, 0.3)) if cls == "asteroid" else None,
        "ssnamenr": f"{int(rng.integers(1000, 700000))}" if cls == "asteroid" else None,
    }


QUADRANT = (3072, 3080)
"""Columns (x) and rows (y) of a ZTF CCD quadrant image [pixels], where ``xpos``/``ypos`` lie."""


def _edge_cut(image: np.ndarray, side: int, keep: int) -> np.ndarray:
    """The stamp as cut at a CCD edge: ``keep`` rows or columns kept, from the low end (``side`` 0 rows,
    2 columns: the high side was cut) or the high end (1 rows, 3 columns: the low side was cut)."""
    return {0: image[:keep], 1: image[-keep:], 2: image[:, :keep], 3: image[:, -keep:]}[side]


def _position(rng, size: int, side: int | None, keep: int) -> tuple[float | None, float | None]:
    """``(xpos, ypos)`` of the candidate on the CCD quadrant (1-based [pixels]) consistent with the cut.

    The candidate sits on pixel ``size // 2`` of the uncut stamp. A stamp cut on its low side (``side`` 1,
    3) starts at the quadrant's first row or column, so the candidate is at ``1 + size // 2 - (size - keep)``;
    cut on its high side (0, 2) it is ``keep - 1 - size // 2`` pixels from the quadrant's last one; an uncut
    axis lies anywhere a full cutout fits. That is the geometry of ZTF's cutouts, which ingest reads back
    (:func:`astrotool_ztf.ingest.decode_stamp`); stamps of another side than its 63 pixels get ``None``
    (ingest then centres them).
    """
    from astrotool_ztf.ingest import CUTOUT

    if size != CUTOUT:
        return None, None
    c = size // 2
    pos = []
    for n, low, high in ((QUADRANT[0], 3, 2), (QUADRANT[1], 1, 0)):
        frac = float(rng.uniform(-0.45, 0.45))   # the centroid within the candidate's pixel
        if side == low:
            pos.append(1 + c - (size - keep) + frac)
        elif side == high:
            pos.append(n - (keep - 1 - c) + frac)
        else:
            pos.append(float(rng.integers(c + 1, n - c + 1)) + frac)
    return pos[0], pos[1]


def simulate_objects(start: int, stop: int, base_seed: int, cfg: dict) -> list[dict]:
    """Alert packets (dicts in the ZTF alert schema, plus ``class`` and ``bogus_kind``) of objects ``[start, stop)``.

    Parameters
    ----------
    start, stop : int
        Object indices; object ``i`` is drawn from a generator seeded by ``(base_seed, i)``.
    base_seed : int
    cfg : dict
        :class:`astrotool_ztf.config.SimulateConfig` as a dict.
    """
    from astrotool_ztf.synthetic import fits_stamp

    size = cfg["stamp_size"]
    weights = np.asarray([cfg["class_fractions"].get(c, 0.0) for c in CLASSES], float)
    weights = weights / weights.sum()
    alerts = []
    for i in range(start, stop):
        rng = np.random.default_rng([base_seed, i])
        cls = CLASSES[int(rng.choice(len(CLASSES), p=weights))]
        plan = None
        while plan is None:  # an object never detected makes no alert: draw another
            plan = _object_plan(rng, cls, cfg)
        object_id = f"ZTF{18 + i // 10 ** 7 % 8:02d}sim{i:07d}"
        previous = []
        for k in range(plan["n_alerts"]):
            sci, tmpl, diff = _epoch(rng, plan, k, cfg, size)
            cand = _metadata(rng, plan, k, diff, cfg)
            candid = (base_seed % 10 ** 6) * 10 ** 12 + i * 100 + k
            cand["candid"] = candid
            side = keep = None
            if rng.uniform() < cfg["edge_fraction"] * (4.0 if cls == "bogus" else 1.0):
                # the candidate's row and column stay in the stamp (size // 2 + 1 kept at least)
                side, keep = int(rng.integers(0, 4)), int(rng.integers(size // 2 + 1, size - 5))
                sci, tmpl, diff = (_edge_cut(a, side, keep) for a in (sci, tmpl, diff))
            # a generator of its own: the other draws do not move
            cand["xpos"], cand["ypos"] = _position(np.random.default_rng([base_seed, i, k, 1]), size, side, keep)
            alerts.append({
                "schemavsn": "3.3", "publisher": "astrotool ztf simulate", "objectId": object_id, "candid": candid,
                "candidate": cand,
                "prv_candidates": [dict(p) for p in previous] or None,
                "cutoutScience": {"fileName": f"candid{candid}_sci.fits.gz", "stampData": fits_stamp(sci)},
                "cutoutTemplate": {"fileName": f"candid{candid}_ref.fits.gz", "stampData": fits_stamp(tmpl)},
                "cutoutDifference": {"fileName": f"candid{candid}_diff.fits.gz", "stampData": fits_stamp(diff)},
                "class": cls, "bogus_kind": plan["bogus_kind"],
            })
            previous.append({k2: cand[k2] for k2 in ("jd", "fid", "candid", "magpsf", "sigmapsf", "diffmaglim",
                                                    "isdiffpos")})
    return alerts


def file_record(item: SimItem) -> dict:
    """The settings record of one alert file (:mod:`astrotool.made_with`)."""
    from astrotool import made_with

    cfg = {k: v for k, v in item.config.items() if k not in LAYOUT}
    return made_with.record({"ztf": {"simulate": cfg}, "objects": [item.start, item.stop]}, seed=item.base_seed,
                            version=SIMULATE_VERSION)


def simulate_item(item: SimItem, seed: int) -> tuple[str, bool]:
    """Executor task: write objects ``[item.start, item.stop)`` as one Parquet alert file, atomically.

    Returns the path and whether it was written (False: kept, made with the same settings).
    """
    import pyarrow as pa

    from astrotool import made_with
    from astrotool.io.tables import write_parquet

    rec = file_record(item)
    if made_with.keep([item.path], rec, overwrite=item.overwrite):
        return item.path, False
    alerts = simulate_objects(item.start, item.stop, item.base_seed, item.config)
    write_parquet(pa.Table.from_pylist(alerts), item.path, command="ztf simulate", compression="zstd",
                  seed=item.base_seed, config={"ztf": {"simulate": item.config}})
    made_with.write(item.path, rec)
    return item.path, True


def plan_files(name: str, folder: Path, base_seed: int, cfg: dict, overwrite: bool = False) -> list[SimItem]:
    """The executor items: ``<folder>/<name>_NNNN.parquet``, ``chunk_size`` objects each."""
    n, per = cfg["n_objects"], cfg["chunk_size"]
    return [SimItem(str(folder / f"{name}_{k:04d}.parquet"), s, min(s + per, n), base_seed, cfg, overwrite)
            for k, s in enumerate(range(0, n, per))]


def stale_files(name: str, folders, keep: int) -> list[Path]:
    """Files ``<name>_NNNN*`` in ``folders`` with ``NNNN >= keep``: left by an earlier, larger run."""
    import re

    pattern = re.compile(rf"^\.?{re.escape(name)}_(\d{{4}})(_alerts|_stamps)?\.(parquet|h5)(\.made_with\.json)?$")
    out = []
    for folder in folders:
        for p in Path(folder).glob(f"*{name}_*"):
            m = pattern.match(p.name)
            if m and int(m.group(1)) >= keep:
                out.append(p)
    return sorted(out)


def check_own_tables(name: str, folder, alerts_dir, stamps_dir) -> None:
    """Refuse before any work when an alert table named as one of simulate's (``<name>_NNNN``) holds alerts
    that simulate did not make: an ingested file of such a name is never replaced, ``--overwrite`` or not.

    A table is simulate's when its stamps file records ``<folder>/<name>_NNNN.parquet`` as its input
    (:func:`astrotool_ztf.ingest.recorded_source`: relative to the workspace, so also in a copied one; an
    absolute path ending in ``ztf/simulated/<name>_NNNN.parquet``, as older ingests recorded it, counts too).

    Parameters
    ----------
    name : str
        The simulation's name (``ztf.simulate.name``).
    folder, alerts_dir, stamps_dir : path-like
        The ``ztf/simulated``, ``ztf/alerts`` and ``ztf/stamps`` folders.

    Raises
    ------
    astrotool.errors.InputError
        Naming the first such table, the file its alerts came from, and saying to use another ``--name``.
    """
    import re

    from astrotool.errors import InputError
    from astrotool_ztf.ingest import _ingested_from, recorded_source

    pattern = re.compile(rf"^{re.escape(name)}_\d{{4}}(?=_alerts\.parquet$|_stamps\.h5$)")
    stems = sorted({m.group(0) for d in (alerts_dir, stamps_dir) for p in Path(d).glob(f"{name}_*")
                    if (m := pattern.match(p.name))})
    for stem in stems:
        made = _ingested_from(Path(stamps_dir) / f"{stem}_stamps.h5")
        own = Path(recorded_source(Path(folder) / f"{stem}.parquet", stamps_dir)).parts   # ztf/simulated/...
        # also the end of an absolute path; a stamps file missing or unreadable says nothing: simulate's to remake
        if made is not None and made[0] and Path(made[0]).parts[-len(own):] != own:
            table = Path(alerts_dir) / f"{stem}_alerts.parquet"
            raise InputError(table if table.exists() else Path(stamps_dir) / f"{stem}_stamps.h5",
                             f"holds alerts that `ztf simulate` did not make ({made[0]}); "
                             "simulate never replaces them, --overwrite or not: give the simulation another --name")
