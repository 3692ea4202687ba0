r"""AnaCal/FPFS: a shear estimator with analytic shear responses (Li et al. 2018, 2022; PyPI ``anacal``).

FPFS deconvolves each stamp by its PSF in Fourier space, projects it on shapelets of a
Gaussian kernel of ``sigma`` pixels and forms an ellipticity
$e = M_{22} / (M_{00} + C_0)$ whose shear response $R_{ij} = \partial e_i / \partial g_j$
follows analytically from the shapelets' own responses: no image is sheared, so it is fast
(about 1,600 stamps of 40x40 pixels per CPU-second, 30 times metacalibration).
The shear of an ensemble is $\langle R\rangle^{-1}\langle e\rangle$, as for metacalibration
(:func:`astrotool_lens.metacal.shear_from_response` with ``prefix="anacal"``).

Conventions
-----------
Stamps
    The galaxy is measured at pixel ``(ny // 2, nx // 2)`` (0-based), the stamp's centre as
    ``lens generate`` and LensNet draw it; the PSF stamp, of the same size, is taken as
    centred on the same pixel. A PSF drawn with the galaxy's sub-pixel offset (LensNet's
    ``shift_with_galaxy``) moves the deconvolved galaxy back to that pixel.
Noise
    The noise sigma is 1.4826 MAD of the stamp's outer two-pixel frame
    (:func:`astrotool_lens.metacal.frame_sigma`). With ``fixnoise`` a pure-noise image of that
    sigma is measured after a 90-degree rotation and added, which removes FPFS's noise bias to
    second order (Li, Li & Massey 2022); noiseless stamps get none.
Kernel
    ``sigma`` is in units of the PSF's adaptive-moments sigma (``galsim.hsm.FindAdaptiveMom``
    on the PSF stamp), rounded to 0.01 pixel, so one setting serves PSFs of any size in pixels.
Units
    FPFS works in pixels: $e$ and $R$ do not depend on the pixel scale. anacal takes lengths
    in arcsec and refuses kernels over 3 arcsec, so it is run with a nominal scale of one
    kernel sigma per arcsec (a kernel of 3.1 pixels, from a PSF of FWHM 3.6 pixels, would
    fail at 1 arcsec per pixel); the flux it reports is in the stamp's counts whatever that scale.
Accuracy
    On 8,000 noiseless ring-paired stamps of the ``fields`` preset, shears of up to 0.02 per
    component are recovered with m = +3e-4; up to 0.1, m = +0.008 +- 0.0015, the cubic term
    of the ellipticity's response to shear (metacalibration shows it too). At S/N 200 the
    noise adds no measurable bias (40,000 stamps).
Weight
    $C_0$ is ``c0`` times the noise standard deviation of $M_{00}$ (for noiseless stamps, that
    of a noise sigma of 1e-8 of the peak pixel): larger values lower the noise bias and raise the
    shape noise.
"""

from __future__ import annotations

import numpy as np

__docformat__ = "numpy"

#: anacal's column -> ours (``anacal_<ours>``): the ellipticity and its 2x2 shear response.
_COLUMNS = {"e1": "fpfs1_e1", "e2": "fpfs1_e2", "r11": "fpfs1_de1_dg1", "r12": "fpfs1_de1_dg2",
            "r21": "fpfs1_de2_dg1", "r22": "fpfs1_de2_dg2", "flux": "flux_fpfs1"}

DESCRIPTIONS = {
    "anacal_g1": "FPFS shear estimate <R>^-1 e, response averaged over the table (component 1)",
    "anacal_g2": "FPFS shear estimate <R>^-1 e, response averaged over the table (component 2)",
    "anacal_e1": "FPFS ellipticity M22c / (M00 + C0), component 1",
    "anacal_e2": "FPFS ellipticity M22s / (M00 + C0), component 2",
    "anacal_r11": "analytic shear response de1/dg1",
    "anacal_r12": "analytic shear response de1/dg2",
    "anacal_r21": "analytic shear response de2/dg1",
    "anacal_r22": "analytic shear response de2/dg2",
    "anacal_flux": "flux of the PSF-deconvolved galaxy in the FPFS Gaussian kernel, 2 pi sigma^2 M00",
    "anacal_noise_sigma": "noise sigma of a pixel at the stamp's edge (0: none)",
    "anacal_flag": "0 measured, 1 failed",
    "anacal_error": "why it failed",
}
"""One-line descriptions of the ANACAL (FPFS) output columns."""

UNITS = {"anacal_flux": "ct", "anacal_noise_sigma": "ct"}
"""Astropy units of the ANACAL columns that have one (as the truth table's ``flux``: counts; the others are
dimensionless)."""


def require_anacal():
    """The ``anacal`` package, imported.

    Raises
    ------
    astrotool.errors.AstroError
        It is not installed (exit code 2, saying how to install it).
    """
    try:
        import anacal
    except ImportError:
        from astrotool.errors import AstroError

        raise AstroError("ANACAL needs the anacal package: pip install anacal") from None
    return anacal


def fpfs_arrays(gal: np.ndarray, psf: np.ndarray, sigma: float = 2.0, c0: float = 4.0, fixnoise: bool = True,
                seed: int = 0, start: int = 0) -> dict:
    """Measure stamps with AnaCal's FPFS; failures are NaN with ``anacal_flag = 1``, never raised.

    Parameters
    ----------
    gal, psf : numpy.ndarray
        (n, ny, nx) galaxy stamps [counts / pixel] and (n, ny, nx) or (ny, nx) PSF stamps of the
        same size (any normalisation), square.
    sigma : float
        Shapelet kernel sigma, in units of the PSF's adaptive-moments sigma.
    c0 : float
        Weight of the ellipticity's denominator, in units of the noise std of $M_{00}$.
    fixnoise : bool
        Remove the noise bias with a rotated pure-noise image (module docs).
    seed, start : int
        The noise image of stamp ``start + i`` is drawn with ``(seed, start + i)``.

    Returns
    -------
    dict of numpy.ndarray
        ``anacal_<c>`` for c in g1, g2, e1, e2, r11, r12, r21, r22, flux, noise_sigma, flag, error.

    Raises
    ------
    astrotool.errors.AstroError
        anacal is not installed.
    """
    anacal = require_anacal()
    from anacal.fpfs import FpfsConfig, FpfsTask, process_image
    import galsim

    from astrotool_lens.metacal import failure_reason, frame_sigma, shear_from_response

    gal = np.asarray(gal, dtype=np.float64)
    n = gal.shape[0]
    psf = np.asarray(psf, dtype=np.float64)
    if psf.ndim == 2:
        psf = np.broadcast_to(psf, gal.shape[:1] + psf.shape)
    out = {f"anacal_{c}": np.full(n, np.nan) for c in (*_COLUMNS, "noise_sigma")}
    out["anacal_flag"] = np.ones(n, dtype=np.int8)
    out["anacal_error"] = np.array([""] * n, dtype=object)
    for i in range(n):
        try:
            g, p = gal[i], psf[i]
            if g.shape[0] != g.shape[1] or p.shape != g.shape:
                raise ValueError(f"FPFS needs square stamps and PSF stamps of one size, got {g.shape} and {p.shape}")
            if not (np.isfinite(g).all() and np.isfinite(p).all()):
                raise ValueError("non-finite pixels")
            if not g.any() or p.sum() <= 0:
                raise ValueError("blank stamp" if not g.any() else "PSF stamp without positive flux")
            npix = g.shape[0]
            s = frame_sigma(g) if fixnoise else 0.0
            variance = max(s * s, 1e-16 * float(np.abs(g).max()) ** 2)
            noise = None
            if s > 0:
                rng = np.random.default_rng(np.random.SeedSequence([seed, start + i]))
                noise = rng.normal(0.0, s, g.shape)
            p = np.ascontiguousarray(p / p.sum())
            psf_sigma = galsim.hsm.FindAdaptiveMom(galsim.Image(p), strict=True).moments_sigma  # [pixels]
            # to 0.01 pixel: anacal caches the shapelet bases per kernel size
            scale = 1.0 / round(sigma * psf_sigma, 2)      # nominal [arcsec / pixel]: a 1-arcsec kernel (Units)
            cfg = FpfsConfig(npix=npix, sigma_shapelets1=1.0)
            task = FpfsTask(npix=npix, pixel_scale=scale, sigma_shapelets=1.0, psf_array=p,
                            kmax_thres=cfg.kmax_thres)     # the kernel process_image measures with
            task.prepare_covariance(variance=variance)
            cfg.c0 = c0 * float(task.std_m00)
            det = np.array([(npix // 2, npix // 2)], dtype=[("y", "i4"), ("x", "i4")])
            row = process_image(fpfs_config=cfg, pixel_scale=scale, noise_variance=variance,
                                mag_zero=anacal.task.THRESHOLD_REF_MAG_ZERO, gal_array=np.ascontiguousarray(g),
                                psf_array=p, noise_array=noise, detection=det)[0]
            vals = {k: float(row[v]) for k, v in _COLUMNS.items()}
            if not all(np.isfinite(v) for v in vals.values()):
                raise ValueError("non-finite FPFS modes")
        except (galsim.GalSimError, ValueError, RuntimeError, ZeroDivisionError) as exc:
            out["anacal_error"][i] = failure_reason(exc)
            continue
        for k, v in vals.items():
            out[f"anacal_{k}"][i] = v
        out["anacal_noise_sigma"][i] = s
        out["anacal_flag"][i] = 0
    out["anacal_error"] = out["anacal_error"].astype(str)
    out["anacal_g1"], out["anacal_g2"] = shear_from_response(out, prefix="anacal")
    return out
