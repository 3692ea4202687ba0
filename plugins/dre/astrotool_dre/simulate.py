"""Simulated survey tiles: the embedded default of ``astro dre``.

A tile is a FITS image of GalSim Sérsic galaxies (de Vaucouleurs, n = 4, by
default) and unsaturated stars, all convolved with a known Moffat PSF, on a
sky with Poisson noise (through the gain) and Gaussian read noise. Beside it go
a truth table (Parquet) and, optionally, the true PSF image (FITS) for control
runs. The PSF is one Moffat for the whole tile, or (``psf_fwhm = [f0, f1]``)
one whose FWHM changes linearly from ``f0`` at pixel (1, 1) to ``f1`` at pixel
(size, size), ``fwhm(X, Y) = f0 + (f1 - f0) (X + Y - 2) / (2 size - 2)``; every
object is drawn with the PSF at its own position. The sky is flat, or rises
linearly along +x by ``sky_gradient`` times its mean from the left edge to the
right edge.

Conventions
-----------
Pixel coordinates
    ``X``, ``Y`` in the truth table follow the FITS / SExtractor convention:
    1-based, the centre of the first pixel is (1.0, 1.0), ``X`` runs along
    numpy axis 1 (columns) and ``Y`` along axis 0 (rows). GalSim images are
    drawn with the same 1-based bounds, so a profile drawn with
    ``center=PositionD(X, Y)`` lands exactly there.
Position angle ``ANGLE``
    Degrees, counter-clockwise from the +x axis of the image (with +y up, i.e.
    the row index increasing), folded into [0, 180). This is GalSim's
    ``shear(q=, beta=)`` angle when drawn with a pixel-scale WCS (checked in
    the tests by the second-moment angle of a drawn galaxy) and the same sense
    as SExtractor's ``THETA_IMAGE``.
Size ``LOGR``
    log10 of the half-light radius along the *major* axis, in pixels. GalSim's
    ``half_light_radius`` is the circularised radius of the round profile;
    ``shear`` conserves area, so a profile drawn with
    ``half_light_radius = r_circ`` and axis ratio ``q`` has a major-axis
    half-light radius ``r_circ / sqrt(q)``. We therefore draw with
    ``r_circ = 10**LOGR * sqrt(q)`` (also checked in the tests: half of the
    flux falls inside the ellipse of semi-major axis 10**LOGR).
``AX_RATIO``
    Minor over major axis, b/a in (0, 1].
``FLUX``, ``MAG``
    Total flux of the (untruncated) profile in image units (ADU, or ADU/s when
    ``units="cps"``) and ``MAG = MAGZP - 2.5 log10(FLUX)`` with the header's
    ``MAGZP``. ``FLUX_DRAWN`` is what was actually added to the tile (stamps
    are finite and clipped at the tile edges).
``PSF_FWHM``
    FWHM of the true PSF at the object's position, pixels.
``SNR``
    Aperture signal-to-noise ratio of the noiseless object in a Kron-like
    ellipse (semi-major axis 2.5 times the first moment of the elliptical
    radius, at least 3.5 / 1.8 times the PSF-broadened half-light radius), i.e.
    flux inside over sqrt(source Poisson + N_pix * sky variance). It tracks
    SExtractor's ``FLUX_AUTO / FLUXERR_AUTO`` (measured/true 0.94-1.5 on
    160 default galaxies, median 1.06). Galaxies get
    ``galaxy_snr[0] <= SNR <= galaxy_snr[1]`` (log-uniform), so S/N > 30 by
    default.
Units and noise
    The image holds the sky (``SKYLEVEL`` ADU per pixel, not subtracted).
    Pixel values are ``(Poisson(gain*(model+sky)) + Normal(0, read_noise)) /
    gain`` ADU, divided by ``EXPTIME`` when ``units="cps"``. Header keys:
    ``GAIN`` (e-/ADU), ``EXPTIME`` (s), ``MAGZP``, ``BUNIT``, ``SATURATE``,
    ``SKYLEVEL``, ``RDNOISE`` (e-), ``PSF_FWHM`` / ``PSFBETA`` (px), ``SEEING``
    (arcsec) and a TAN WCS.

Everything is deterministic from ``seed`` (numpy ``default_rng``).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from astrotool_dre.config import SimulateConfig

__docformat__ = "numpy"

__all__ = ["simulate_tile", "galaxy_profile", "draw_psf", "moffat_profile", "psf_fwhm_at", "sky_level_at"]


TRUTH_UNITS = {"X": "pix", "Y": "pix", "RA": "deg", "DEC": "deg", "ANGLE": "deg", "MAG": "mag", "PSF_FWHM": "pix"}
"""astropy units of the truth table's columns (``FLUX``, ``FLUX_DRAWN``: the tile's ``BUNIT``; ``LOGR`` is
log10 of pixels and has none, as the summary's)."""

TRUTH_DESCRIPTIONS = {
    "ID": "object number in the tile (1-based)", "KIND": "galaxy or star",
    "X": "true centre x (1-based, FITS convention)", "Y": "true centre y (1-based, FITS convention)",
    "RA": "right ascension of X, Y (the tile's WCS)", "DEC": "declination of X, Y (the tile's WCS)",
    "INDEX": "Sersic index (NaN for stars)",
    "LOGR": "log10 of the major-axis half-light radius in pixels (NaN for stars)",
    "AX_RATIO": "axis ratio b/a (NaN for stars)",
    "ANGLE": "major axis, degrees counter-clockwise from image +x, in [0, 180) (NaN for stars)",
    "FLUX": "total flux of the untruncated profile, in the tile's data units (BUNIT)",
    "FLUX_DRAWN": "flux added to the tile (finite stamp, clipped at the edges), BUNIT",
    "MAG": "MAGZP - 2.5 log10(FLUX)", "SNR": "aperture S/N of the noiseless object in a Kron-like ellipse",
    "PSF_FWHM": "FWHM of the true PSF at the object's position, pixels",
}
"""One-line descriptions of the truth table's columns (see the module's conventions)."""


def psf_fwhm_at(fwhm, size: int, x, y):
    """FWHM of the simulated PSF at 1-based pixel position(s) ``(x, y)``, pixels.

    Parameters
    ----------
    fwhm : float or (float, float)
        Constant FWHM, or the FWHM at pixel (1, 1) and at pixel (size, size).
    size : int
        Tile side, pixels.
    x, y : float or numpy.ndarray
        1-based FITS pixel coordinates.
    """
    if isinstance(fwhm, (int, float)):
        return np.full(np.shape(x), float(fwhm)) if np.ndim(x) else float(fwhm)
    f0, f1 = map(float, fwhm)
    return f0 + (f1 - f0) * (np.asarray(x, float) + np.asarray(y, float) - 2.0) / (2.0 * size - 2.0)


def moffat_profile(beta: float, fwhm: float):
    """The simulator's PSF as a GalSim profile.

    Parameters
    ----------
    beta : float
        Moffat index.
    fwhm : float
        Full width at half maximum, pixels (before pixel integration).

    Returns
    -------
    galsim.Moffat
    """
    import galsim

    return galsim.Moffat(beta=beta, fwhm=fwhm)


def galaxy_profile(n: float, logr: float, q: float, angle: float, flux: float = 1.0):
    """A Sérsic galaxy in this module's conventions, as a GalSim profile (no PSF).

    Parameters
    ----------
    n : float
        Sérsic index.
    logr : float
        log10 of the major-axis half-light radius, log10(px).
    q : float
        Axis ratio b/a.
    angle : float
        Position angle of the major axis, degrees CCW from +x.
    flux : float
        Total flux, image units.

    Returns
    -------
    galsim.GSObject
        ``Sersic(n, half_light_radius=10**logr * sqrt(q)).shear(q=q, beta=angle)``.
    """
    import galsim

    hlr_circ = 10.0**logr * math.sqrt(q)
    gal = galsim.Sersic(n=float(n), half_light_radius=float(hlr_circ), flux=float(flux))
    return gal.shear(q=float(q), beta=float(angle) * galsim.degrees)


def draw_psf(beta: float, fwhm: float, size: int = 41) -> np.ndarray:
    """Draw the pixel-integrated PSF centred on the central pixel, unit sum.

    Parameters
    ----------
    beta, fwhm : float
        Moffat index and FWHM (pixels).
    size : int
        Odd stamp side, pixels.

    Returns
    -------
    numpy.ndarray
        ``(size, size)`` float32, sum 1, peak at ``[size // 2, size // 2]``.
    """
    if size % 2 == 0:
        raise ValueError(f"psf size must be odd, got {size}")
    img = moffat_profile(beta, fwhm).drawImage(nx=size, ny=size, scale=1.0).array.astype(np.float64)
    img /= img.sum()
    return img.astype(np.float32)


def _elliptical_radius(shape, xc: float, yc: float, q: float, theta_deg: float) -> np.ndarray:
    """Elliptical radius (px along the major axis) of every pixel of a stamp.

    ``xc``, ``yc`` are 0-based array coordinates of the centre, ``q`` the axis
    ratio and ``theta_deg`` the major-axis angle CCW from +x.
    """
    ny, nx = shape
    y, x = np.mgrid[0:ny, 0:nx]
    dx, dy = x - xc, y - yc
    t = math.radians(theta_deg)
    u = dx * math.cos(t) + dy * math.sin(t)
    v = -dx * math.sin(t) + dy * math.cos(t)
    return np.sqrt(u * u + (v / q) ** 2)


def _kron_aperture(stamp: np.ndarray, rho: np.ndarray, a_c: float):
    """Flux fraction and pixel count inside a Kron-like elliptical aperture.

    Semi-major axis ``max(2.5 r1, 3.5 a_c / 1.8)`` with ``r1`` the first
    moment of the elliptical radius within ``6 a_c`` (as SExtractor's
    ``FLUX_AUTO`` with ``PHOT_AUTOPARAMS 2.5, 3.5``), on the unit-flux,
    noiseless, PSF-convolved stamp.
    """
    win = rho <= 6.0 * a_c
    w = np.clip(stamp[win], 0.0, None)
    r1 = float((rho[win] * w).sum() / max(w.sum(), 1e-30))
    a_ap = max(2.5 * r1, 3.5 * a_c / 1.8)
    inside = rho <= a_ap
    return float(stamp[inside].sum()), int(inside.sum())


def sky_level_at(x, size: int, sky_level: float, sky_gradient: float = 0.0):
    """Mean sky of a simulated tile at 1-based column ``x``.

    Parameters
    ----------
    x : float or numpy.ndarray
        Column, 1-based [px].
    size : int
        Tile side [px].
    sky_level, sky_gradient : float
        The header's ``SKYLEVEL`` [BUNIT per px] and ``SKYGRAD`` (the rise from the
        left edge to the right one, a fraction of ``sky_level``).

    Returns
    -------
    float or numpy.ndarray
        ``sky_level * (1 + sky_gradient * ((x - 1) / (size - 1) - 1/2))`` [BUNIT per px].
    """
    return sky_level * (1.0 + sky_gradient * ((x - 1.0) / max(size - 1, 1) - 0.5))


def _flux_for_snr(snr: float, frac: float, npix: int, var_sky: float, gain_eff: float) -> float:
    """Total flux F giving aperture S/N ``snr``: (fF)^2 = snr^2 (fF/g + N var)."""
    a = frac * frac
    b = -(snr**2) * frac / gain_eff
    c = -(snr**2) * npix * var_sky
    return float((-b + math.sqrt(b * b - 4 * a * c)) / (2 * a))


def _place(rng, n, extents, size, edge, min_sep, placed, max_tries=20000):
    """Rejection-sample ``n`` positions (1-based) keeping objects apart.

    Two objects i, j are accepted when their distance exceeds
    ``max(min_sep, extent_i + extent_j)``. ``placed`` is a list of
    ``(x, y, extent)`` already on the tile; it is extended in place.
    """
    from astrotool.errors import AstroError   # settings that cannot be met: exit 2, as a bad value is

    lo, hi = edge + 2.0, size - edge - 2.0
    if hi <= lo:
        raise AstroError(f"dre.simulate: a {size} px tile leaves no room inside an edge of {edge:g} px: lower "
                         "dre.simulate.edge or raise --size (dre.simulate.size)")
    out = []
    for k in range(n):
        for _ in range(max_tries):
            x, y = rng.uniform(lo, hi, size=2)
            ok = True
            for (px, py, pe) in placed:
                if math.hypot(x - px, y - py) < max(min_sep, extents[k] + pe):
                    ok = False
                    break
            if ok:
                placed.append((x, y, extents[k]))
                out.append((x, y))
                break
        else:
            raise AstroError(
                f"dre.simulate: could not place object {k + 1} of {n} apart on a {size}x{size} tile "
                f"(dre.simulate.edge {edge:g} px, dre.simulate.min_separation {min_sep:g} px, galaxies "
                "dre.simulate.isolation half-light radii apart): lower --n-galaxies, --n-stars, dre.simulate.edge, "
                "dre.simulate.min_separation or dre.simulate.isolation, or raise --size"
            )
    return out


def _range(v):
    if isinstance(v, (int, float)):
        return float(v), float(v)
    if len(v) == 1:
        return float(v[0]), float(v[0])
    lo, hi = v
    return float(lo), float(hi)


def simulate_tile(
    path_fits: str | os.PathLike,
    path_truth: str | os.PathLike,
    cfg: SimulateConfig,
    *,
    seed: int,
    path_psf: str | os.PathLike | None = None,
) -> dict:
    """Simulate one survey tile, its truth table and (optionally) its true PSF.

    Parameters
    ----------
    path_fits : path-like
        Output tile (FITS, float32, primary HDU).
    path_truth : path-like
        Output truth table (Parquet), one row per object; see the module
        docstring for the columns' conventions.
    cfg : astrotool_dre.config.SimulateConfig
        The ``[dre.simulate]`` section (``n_tiles`` and ``name`` are not used here):

        size : int
            Tile side, pixels.
        n_galaxies, n_stars : int
            Number of galaxies and stars.
        sersic_n : float or list of float
            Sérsic index; a uniform ``[min, max]`` range, or the values to
            pick from with equal probability (``sersic_dist = "choice"``).
        logr_range : (float, float)
            Uniform range of log10 major-axis half-light radius, log10(px).
        q_range : (float, float)
            Uniform range of the axis ratio b/a.
        galaxy_snr, star_snr : (float, float)
            Log-uniform ranges of aperture S/N (see module docstring).
        psf_beta : float
            Moffat index.
        psf_fwhm : float or (float, float)
            FWHM (pixels), or its values at the (1, 1) and (size, size)
            corners (:func:`psf_fwhm_at`).
        psf_size : int
            Side of the true-PSF image, pixels (odd).
        pixel_scale : float
            arcsec per pixel (WCS only; profiles are specified in pixels).
        sky_level : float
            Mean sky, ADU per pixel (left in the image).
        sky_gradient : float
            The sky rises linearly along +x by this fraction of ``sky_level``
            from the left edge to the right edge.
        gain : float
            e-/ADU.
        read_noise : float
            Read noise, e- per pixel.
        exptime : float
            Exposure time, s.
        zero_point : float
            Magnitude zero point for fluxes in ADU (counts); adjusted by
            2.5 log10(exptime) when ``units="cps"``.
        saturation : float
            Saturation level, ADU; stars are kept below half of it at the peak.
        units : {"counts", "cps"}
            Image in ADU or ADU/s.
        edge : float
            Objects stay at least this far (px) from every tile edge.
        min_separation : float
            Minimum distance between any two objects, px.
        isolation : float
            Galaxies are kept apart by ``isolation * (R_i + R_j)`` plus a PSF term,
            with R the major-axis half-light radius (no overlapping galaxies).
        stamp_radius : float
            Drawing stamps extend to ``stamp_radius`` half-light radii plus 4 PSF FWHM
            (at least 24, at most 256 px) so that little flux is lost.
        ra, dec : float
            Tile centre, degrees (TAN projection, north up, east left).

    seed : int
        Seed of every random draw (positions, shapes, fluxes, noise).
    path_psf : path-like, optional
        Where to write the true, pixel-integrated PSF (FITS image, unit sum) at
        the tile centre.
    Returns
    -------
    dict
        ``{"tile", "truth", "psf", "n_galaxies", "n_stars", "seed"}``.
    """
    import galsim
    import pyarrow as pa
    from astropy.io import fits
    from astropy.wcs import WCS

    from astrotool.io.tables import write_parquet
    from astrotool.provenance import stamp_fits
    from astrotool.workspace import atomic_path

    size, n_galaxies, n_stars, sersic_n = cfg.size, cfg.n_galaxies, cfg.n_stars, cfg.sersic_n
    logr_range, q_range, galaxy_snr, star_snr = cfg.logr_range, cfg.q_range, cfg.galaxy_snr, cfg.star_snr
    psf_beta, psf_fwhm, psf_size, pixel_scale = cfg.psf_beta, cfg.psf_fwhm, cfg.psf_size, cfg.pixel_scale
    sky_level, gain, read_noise, exptime = cfg.sky_level, cfg.gain, cfg.read_noise, cfg.exptime
    zero_point, saturation, units, edge = cfg.zero_point, cfg.saturation, cfg.units, cfg.edge
    min_separation, isolation, stamp_radius = cfg.min_separation, cfg.isolation, cfg.stamp_radius
    ra, dec = cfg.ra, cfg.dec
    rng = np.random.default_rng(seed)
    sky_gradient = cfg.sky_gradient
    fwhm_max = float(np.max(psf_fwhm))
    fwhm_centre = float(psf_fwhm_at(psf_fwhm, size, (size + 1) / 2.0, (size + 1) / 2.0))

    def sky_at(x):  # mean sky at 1-based column x, ADU per pixel
        return sky_level_at(x, size, sky_level, sky_gradient)

    def var_sky_at(x):  # sky + read noise variance, ADU^2 per pixel
        return (sky_at(x) * gain + read_noise**2) / gain**2

    # --- draw galaxy and star parameters -------------------------------------------------
    if cfg.sersic_dist == "choice":
        gal_n = rng.choice(np.atleast_1d(np.asarray(sersic_n, float)), n_galaxies)
    else:
        n_lo, n_hi = _range(sersic_n)
        gal_n = rng.uniform(n_lo, n_hi, n_galaxies) if n_hi > n_lo else np.full(n_galaxies, n_lo)
    gal_logr = rng.uniform(*logr_range, n_galaxies)
    gal_q = rng.uniform(*q_range, n_galaxies)
    gal_angle = rng.uniform(0.0, 180.0, n_galaxies)
    gal_snr = np.exp(rng.uniform(*np.log(galaxy_snr), n_galaxies))
    star_snr_v = np.exp(rng.uniform(*np.log(star_snr), n_stars))
    # biggest galaxies first: they are the hardest to place
    order = np.argsort(-gal_logr)
    gal_n, gal_logr, gal_q, gal_angle, gal_snr = (v[order] for v in (gal_n, gal_logr, gal_q, gal_angle, gal_snr))
    hlr = 10.0**gal_logr

    placed: list = []
    gal_ext = isolation * hlr + 2.0 * fwhm_max if isolation > 0 else np.zeros(n_galaxies)
    gal_pos = _place(rng, n_galaxies, gal_ext, size, edge, min_separation, placed)
    star_pos = _place(rng, n_stars, np.full(n_stars, 2.0 * fwhm_max), size, edge, min_separation, placed)

    full = galsim.ImageF(size, size, scale=1.0)  # bounds 1..size: FITS convention
    rows = []

    def draw(profile, x, y, radius):
        r = int(math.ceil(radius))
        b = galsim.BoundsI(int(round(x)) - r, int(round(x)) + r, int(round(y)) - r, int(round(y)) + r)
        stamp = galsim.ImageF(b, scale=1.0)
        profile.drawImage(image=stamp, center=galsim.PositionD(x, y))
        return stamp

    for i in range(n_galaxies):
        x, y = gal_pos[i]
        q = float(gal_q[i])
        fwhm = float(psf_fwhm_at(psf_fwhm, size, x, y))
        fwhm_half = 0.5 * fwhm
        gal = galaxy_profile(gal_n[i], gal_logr[i], q, gal_angle[i], 1.0)
        conv = galsim.Convolve(gal, moffat_profile(psf_beta, fwhm))
        radius = min(256.0, max(24.0, stamp_radius * hlr[i] + 4.0 * fwhm))
        stamp = draw(conv, x, y, radius)
        # aperture S/N in a Kron-like ellipse (close to FLUX_AUTO / FLUXERR_AUTO)
        a_c = math.hypot(hlr[i], fwhm_half)
        q_c = math.hypot(q * hlr[i], fwhm_half) / a_c
        b = stamp.bounds
        rho = _elliptical_radius(stamp.array.shape, x - b.xmin, y - b.ymin, q_c, gal_angle[i])
        frac, npix = _kron_aperture(stamp.array, rho, a_c)
        flux = _flux_for_snr(gal_snr[i], frac, npix, var_sky_at(x), gain)
        stamp *= flux
        ov = b & full.bounds
        full[ov] += stamp[ov]
        rows.append(("galaxy", x, y, gal_n[i], gal_logr[i], q, gal_angle[i], flux, float(stamp[ov].array.sum()),
                     gal_snr[i], fwhm))

    for i in range(n_stars):
        x, y = star_pos[i]
        fwhm = float(psf_fwhm_at(psf_fwhm, size, x, y))
        stamp = draw(moffat_profile(psf_beta, fwhm), x, y, max(24.0, 8.0 * fwhm))
        b = stamp.bounds
        rho = _elliptical_radius(stamp.array.shape, x - b.xmin, y - b.ymin, 1.0, 0.0)
        frac, npix = _kron_aperture(stamp.array, rho, 0.5 * fwhm)
        flux = _flux_for_snr(star_snr_v[i], frac, npix, var_sky_at(x), gain)
        peak = float(stamp.array.max())
        flux = min(flux, (0.5 * saturation - sky_at(x)) / peak)
        snr = frac * flux / math.sqrt(frac * flux / gain + npix * var_sky_at(x))
        stamp *= flux
        ov = b & full.bounds
        full[ov] += stamp[ov]
        rows.append(("star", x, y, np.nan, np.nan, np.nan, np.nan, flux, float(stamp[ov].array.sum()), snr, fwhm))

    # --- noise ----------------------------------------------------------------------------
    model = full.array.astype(np.float64)
    sky = sky_at(np.arange(1, size + 1, dtype=np.float64))[None, :] if sky_gradient else sky_level
    electrons = rng.poisson((model + sky) * gain).astype(np.float64)
    electrons += rng.normal(0.0, read_noise, size=electrons.shape)
    image = electrons / gain
    zp = zero_point
    scale_units = 1.0
    if units == "cps":
        scale_units = 1.0 / exptime
        image *= scale_units
        zp = zero_point - 2.5 * math.log10(exptime)

    # --- header: WCS, photometric keys, provenance -----------------------------------------
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [ra, dec]
    w.wcs.crpix = [(size + 1) / 2.0, (size + 1) / 2.0]
    w.wcs.cd = np.array([[-pixel_scale / 3600.0, 0.0], [0.0, pixel_scale / 3600.0]])
    w.wcs.cunit = ["deg", "deg"]
    w.wcs.radesys = "ICRS"
    w.wcs.equinox = 2000.0
    hdr = w.to_header()
    hdr["BUNIT"] = ("ADU/s" if units == "cps" else "ADU", "pixel units")
    hdr["GAIN"] = (gain, "e-/ADU")
    hdr["EXPTIME"] = (exptime, "exposure time, s")
    hdr["MAGZP"] = (zp, "mag = MAGZP - 2.5 log10(flux in BUNIT)")
    hdr["SATURATE"] = (saturation * scale_units, "saturation level, BUNIT")
    hdr["SKYLEVEL"] = (sky_level * scale_units, "mean sky level left in the image, BUNIT")
    if sky_gradient:
        hdr["SKYGRAD"] = (sky_gradient, "sky rise along +x over the tile / SKYLEVEL")
    hdr["RDNOISE"] = (read_noise, "read noise, e-")
    hdr["PSF_FWHM"] = (fwhm_centre, "true PSF FWHM at the tile centre, px (Moffat)")
    if not isinstance(psf_fwhm, (int, float)):
        hdr["PSFFWHM0"] = (float(psf_fwhm[0]), "true PSF FWHM at pixel (1, 1), px")
        hdr["PSFFWHM1"] = (float(psf_fwhm[1]), "true PSF FWHM at the last pixel, px")
    hdr["PSFBETA"] = (psf_beta, "true PSF Moffat beta")
    hdr["SEEING"] = (fwhm_centre * pixel_scale, "true PSF FWHM at the tile centre, arcsec")
    hdr["PIXSCALE"] = (pixel_scale, "arcsec/px")
    hdr["SIMSEED"] = (int(seed), "simulation seed")
    hdr["NGAL"] = (n_galaxies, "galaxies injected")
    hdr["NSTAR"] = (n_stars, "stars injected")
    params = dict(
        seed=int(seed), size=size, n_galaxies=n_galaxies, n_stars=n_stars, sersic_n=sersic_n,
        sersic_dist=cfg.sersic_dist, logr_range=list(logr_range), q_range=list(q_range),
        galaxy_snr=list(galaxy_snr), star_snr=list(star_snr), psf_beta=psf_beta,
        psf_fwhm=psf_fwhm if isinstance(psf_fwhm, (int, float)) else list(psf_fwhm), sky_gradient=sky_gradient,
        pixel_scale=pixel_scale,
        sky_level=sky_level, gain=gain, read_noise=read_noise, exptime=exptime,
        zero_point=zero_point, saturation=saturation, units=units, edge=edge,
        min_separation=min_separation, isolation=isolation,
    )
    stamp_fits(hdr, command="dre simulate", seed=seed, history=[
        f"Sersic galaxies + stars * Moffat(beta={psf_beta}, fwhm={psf_fwhm} px)",
        f"sky {sky_level} ADU/px, Poisson via gain {gain} e-/ADU, read noise {read_noise} e-"])

    with atomic_path(path_fits) as tmp:
        fits.PrimaryHDU(image.astype(np.float32), header=hdr).writeto(tmp)

    # --- truth table --------------------------------------------------------------------------
    kinds = [r[0] for r in rows]
    cols = list(zip(*[r[1:] for r in rows])) if rows else [[]] * 10
    X = np.asarray(cols[0], dtype=np.float64)
    Y = np.asarray(cols[1], dtype=np.float64)
    flux = np.asarray(cols[6], dtype=np.float64) * scale_units
    if len(X):
        radec = w.all_pix2world(np.column_stack([X, Y]), 1)
    else:
        radec = np.zeros((0, 2))
    with np.errstate(divide="ignore"):
        mag = zp - 2.5 * np.log10(flux)
    table = pa.table({
        "ID": pa.array(np.arange(1, len(rows) + 1, dtype=np.int32)),
        "KIND": pa.array(kinds, type=pa.string()),
        "X": X, "Y": Y,
        "RA": radec[:, 0], "DEC": radec[:, 1],
        "INDEX": np.asarray(cols[2], dtype=np.float64),
        "LOGR": np.asarray(cols[3], dtype=np.float64),
        "AX_RATIO": np.asarray(cols[4], dtype=np.float64),
        "ANGLE": np.asarray(cols[5], dtype=np.float64),
        "FLUX": flux,
        "FLUX_DRAWN": np.asarray(cols[7], dtype=np.float64) * scale_units,
        "MAG": mag,
        "SNR": np.asarray(cols[8], dtype=np.float64),
        "PSF_FWHM": np.asarray(cols[9], dtype=np.float64),
    })
    from astrotool_dre.catalog import astropy_unit

    flux_unit = astropy_unit(hdr["BUNIT"])   # as the summary's flux columns (write_summary)
    units = {**TRUTH_UNITS, **({"FLUX": flux_unit, "FLUX_DRAWN": flux_unit} if flux_unit else {})}
    write_parquet(table, path_truth, command="dre simulate", units=units, descriptions=TRUTH_DESCRIPTIONS, metadata={
        "tile": Path(path_fits).name, "params": params,
        "conventions": "X,Y 1-based FITS pixels; LOGR log10 major-axis half-light radius (px); "
                       "ANGLE deg CCW from +x in [0,180); FLUX total, image units; MAG = MAGZP - 2.5 log10 FLUX"})

    if path_psf is not None:
        phdr = fits.Header()
        phdr["PSF_FWHM"] = (fwhm_centre, "Moffat FWHM at the tile centre, px")
        phdr["PSFBETA"] = (psf_beta, "Moffat beta")
        stamp_fits(phdr, command="dre simulate", seed=seed,
                   history=["true PSF at the tile centre, pixel-integrated, unit sum"])
        with atomic_path(path_psf) as tmp:
            fits.PrimaryHDU(draw_psf(psf_beta, fwhm_centre, psf_size), header=phdr).writeto(tmp)

    return {
        "tile": str(path_fits), "truth": str(path_truth),
        "psf": None if path_psf is None else str(path_psf),
        "n_galaxies": n_galaxies, "n_stars": n_stars, "seed": int(seed),
    }
