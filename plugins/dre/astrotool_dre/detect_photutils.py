"""The photutils detection engine (used when SExtractor is not installed).

The background after SExtractor's method (:func:`sky_maps`: SExtractor's
estimator in meshes of ``back_size`` px, a median filter of ``back_filtersize``
meshes, a cubic spline), detection on the image smoothed by the detection filter at
``detect_thresh`` times the background RMS with at least ``detect_minarea``
connected pixels, deblending (``deblend_nthresh`` levels, contrast
``deblend_mincont``) and ``SourceCatalog``. It writes SExtractor's products and
columns: ``FLUX_AUTO`` is the Kron flux (factor 2.5), ``CLASS_STAR`` the
size-based stellarity (:mod:`astrotool_dre.stellarity`), ``THETA_IMAGE`` is wrapped
to SExtractor's (-90, 90] deg, ``KRON_RADIUS`` is SExtractor's quantity (the
scaled radius k r1 in units of ``A_IMAGE``, at least 3.5: :data:`KRON_PARAMS`), ``FLAGS`` sets 2
(deblended), 4 (a pixel at or above ``SATURATE``) and 8 (touches the frame
edge), and ``VIGNET`` holds cut-outs of the background-subtracted image for PSFEx.
"""

from __future__ import annotations

import inspect
import math
from typing import TYPE_CHECKING

import numpy as np

from astrotool.names import printable
from astrotool.provenance import stamp_fits
from astrotool_dre.catalog import empty_catalog, write_ldac
from astrotool_dre.stellarity import size_stellarity, stellar_locus
from astrotool_dre.tiles import image_header, sky_coordinates

if TYPE_CHECKING:
    from astrotool_dre.config import DetectConfig

__docformat__ = "numpy"

__all__ = ["run_photutils", "KRON_PARAMS", "sextractor_theta", "sky_maps"]

KRON_PARAMS = (2.5, 1.4, 0.0)
"""photutils' ``kron_params``: SExtractor's ``PHOT_AUTOPARAMS 2.5, 3.5`` (factor k = 2.5; minimum
radius 3.5 = 2.5 x 1.4, in units of ``A_IMAGE``, ``B_IMAGE``); no minimum circular radius [px]."""


def sextractor_theta(theta, dtype=np.float64):
    """Position angles [deg] wrapped to SExtractor's ``THETA_IMAGE`` range (-90, 90].

    Parameters
    ----------
    theta : array-like
        Angles [deg, counter-clockwise from +x], any range (photutils' ``orientation``).
    dtype : numpy dtype
        Of the result: the range holds after the cast too (float32 rounds -89.99999999 to -90).

    Returns
    -------
    numpy.ndarray
        The same axis directions [deg] in (-90, 90] (an axis is the same at theta and theta + 180).
    """
    theta = (90.0 - np.mod(90.0 - np.asarray(theta, dtype=np.float64), 180.0)).astype(dtype)
    return np.where(theta <= -90.0, theta + dtype(180.0), theta)   # a tiny negative rounds to -90: it is 90


def _mesh_centres(meshes: int, box: int, n: int) -> np.ndarray:
    """The centres [px] along an axis of ``n`` px of its ``meshes`` meshes of ``box`` px; a last mesh cut short by
    the edge stands at the centre of its pixels."""
    starts = np.arange(meshes) * box
    return (starts + np.minimum(starts + box, n) - 1) / 2.0


def _spline_through_meshes(mesh: np.ndarray, box: int, shape: tuple[int, int]) -> np.ndarray:
    """Expand a mesh of values at the centres of ``box``-px meshes (:func:`_mesh_centres`) to an image of
    ``shape``: a cubic spline along each axis (linear for 2 or 3 meshes), continued past the outer centres along
    its tangent there (its end cubics bent the noise of the edge meshes into the tile's edges)."""
    from scipy.interpolate import make_interp_spline

    out = np.asarray(mesh, dtype=np.float64)
    for axis, n in enumerate(shape):
        centres = _mesh_centres(out.shape[axis], box, n)
        if len(centres) == 1:
            out = np.repeat(out, n, axis=axis)
            continue
        spline = make_interp_spline(centres, out, k=3 if len(centres) >= 4 else 1, axis=axis)
        x = np.arange(n, dtype=np.float64)
        ends = np.clip(x, centres[0], centres[-1])
        shape_out = [1] * out.ndim
        shape_out[axis] = n
        out = spline(ends) + spline.derivative()(ends) * (x - ends).reshape(shape_out)
    return out


def _mesh_plane(mesh: np.ndarray, box: int, shape: tuple[int, int], use: np.ndarray | None = None) -> np.ndarray:
    """The least-squares plane through the values of the meshes ``use`` (all by default) at their centres
    (:func:`_mesh_centres`; ``box`` [px], the image's ``shape``), at every mesh; their mean where fewer than 3."""
    use = np.ones(mesh.shape, bool) if use is None else use
    if use.sum() < 3:
        return np.full(mesh.shape, float(np.mean(mesh[use])))
    yy, xx = np.meshgrid(_mesh_centres(mesh.shape[0], box, shape[0]), _mesh_centres(mesh.shape[1], box, shape[1]),
                         indexing="ij")
    design = np.c_[np.ones(mesh.size), xx.ravel(), yy.ravel()]
    coef = np.linalg.lstsq(design[use.ravel()], mesh.ravel()[use.ravel()], rcond=None)[0]
    return (design @ coef).reshape(mesh.shape)


def _median_filter_meshes(mesh: np.ndarray, size: int, box: int, shape: tuple[int, int]) -> np.ndarray:
    """A median filter over ``size`` x ``size`` meshes that leaves a plane (a sky gradient) as it is: it filters the
    residuals from the meshes' plane (:func:`_mesh_plane`), the edge meshes repeated past the edges (a median of
    the meshes themselves bent a sloping sky at the tile's edges and corners)."""
    from scipy import ndimage

    mesh = np.asarray(mesh, dtype=np.float64)
    plane = _mesh_plane(mesh, box, shape)
    return plane + ndimage.median_filter(mesh - plane, size=size, mode="nearest")


def _mesh_coverage(bad: np.ndarray, box: int, meshes: tuple[int, int]) -> np.ndarray:
    """The fraction of each mesh's pixels inside the image that are not ``bad``."""
    ny, nx = bad.shape
    inside = np.zeros((meshes[0] * box, meshes[1] * box), bool)
    inside[:ny, :nx] = True
    good = inside.copy()
    good[:ny, :nx] = ~bad
    count = inside.reshape(meshes[0], box, meshes[1], box).sum(axis=(1, 3))
    return good.reshape(meshes[0], box, meshes[1], box).sum(axis=(1, 3)) / np.maximum(count, 1)


def sky_maps(tile, data: np.ndarray, bad: np.ndarray, box: int, filter_size: int) -> tuple[np.ndarray, np.ndarray]:
    """The background and its RMS [data units], after SExtractor's method.

    photutils' ``Background2D`` gives SExtractor's estimator (2.5 median - 1.5 mean, sigma-clipped) in meshes of
    ``box`` px, clipped pixels never ruling a mesh out. A mesh less than half of whose pixels are data (the rest
    ``bad``: blank, NaN) is left out, as SExtractor's ``BACK_MINGOODFRAC`` 0.5 has it, and takes the value of the
    other meshes' plane there (:func:`_mesh_plane`: a sky gradient goes on under a blank area). The meshes are median-filtered over ``filter_size`` meshes
    (:func:`_median_filter_meshes`), and a cubic spline through their centres along each axis gives each pixel's
    value, continued past the outer centres; the RMS stays within its meshes' range. (photutils' own filter and
    interpolation flattened a sky gradient towards the edges: on a 1024² tile sloping by 0.1 per px the
    background was off by up to 22, where the noise was 14.)

    Raises
    ------
    astrotool.errors.InputError
        No mesh is at least half data.
    """
    import warnings

    from photutils.background import Background2D, SExtractorBackground

    from astrotool.errors import InputError

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            bkg = Background2D(data, box_size=box, filter_size=1, exclude_percentile=100.0,
                               coverage_mask=bad if bad.any() else None, bkg_estimator=SExtractorBackground())
        except ValueError:   # every pixel bad
            thin = None
        else:
            level, rms = (np.asarray(m, dtype=np.float64) for m in (bkg.background_mesh, bkg.background_rms_mesh))
            thin = _mesh_coverage(bad, box, level.shape) < 0.5
    if thin is None or thin.all():
        raise InputError(tile, f"no background mesh of {box} px is at least half data (the rest blank or NaN); "
                               "use a smaller dre.detect.back_size")
    if thin.any():
        level, rms = (np.where(thin, _mesh_plane(m, box, data.shape, ~thin), m) for m in (level, rms))
    if filter_size > 1:
        level, rms = (_median_filter_meshes(m, filter_size, box, data.shape) for m in (level, rms))
    background = _spline_through_meshes(level, box, data.shape)
    return background, np.clip(_spline_through_meshes(rms, box, data.shape), rms.min(), rms.max())


def run_photutils(tile, data: np.ndarray, header, ext: int, tmp: dict, cfg: DetectConfig, *, gain: float, zp: float,
                  satur_level: float, kernel: np.ndarray, record: dict) -> int:
    """Detect with photutils; write the four products to the paths in ``tmp``.

    Parameters are those of :func:`astrotool_dre.detect_sextractor.run_sextractor`
    (``cfg`` the ``[dre.detect]`` section); returns the number of sources.
    """
    import warnings

    from astropy.io import fits
    from photutils.segmentation import SourceCatalog, deblend_sources, detect_sources
    from photutils.utils import calc_total_error
    from scipy import ndimage

    bad = ~np.isfinite(data)
    background, rms = sky_maps(tile, data, bad, cfg.back_size, cfg.back_filtersize)
    nb = data - background
    nb_filled = np.where(bad, 0.0, nb)
    conv = ndimage.convolve(nb_filled, kernel, mode="constant", cval=0.0)
    threshold = cfg.detect_thresh * np.where(bad, np.inf, rms)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        segm0 = detect_sources(conv, threshold, mask=bad if bad.any() else None,
                               **_kw(detect_sources, n_pixels=("npixels", cfg.detect_minarea)))
    nb_out = np.where(bad, np.nan, nb).astype(np.float32)
    if segm0 is None:
        n = 0
        seg = np.zeros(data.shape, dtype=np.int32)
        table = empty_catalog(cfg.vignet_size)
    else:
        try:
            import skimage.segmentation  # noqa: F401  (photutils' deblending needs its watershed)
        except ImportError:
            import logging

            logging.getLogger("astrotool.dre").warning(
                "scikit-image is not installed: photutils cannot deblend; blended sources stay merged")
            segm = segm0
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                segm = deblend_sources(conv, segm0, progress_bar=False,
                                       **_kw(deblend_sources, n_pixels=("npixels", cfg.detect_minarea),
                                             n_levels=("nlevels", cfg.deblend_nthresh),
                                             contrast=("contrast", cfg.deblend_mincont)))
        seg = np.asarray(segm.data, dtype=np.int32)
        err = calc_total_error(nb_filled, rms, gain)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cat = SourceCatalog(nb_filled, segm, convolved_data=conv, error=err,
                                mask=bad if bad.any() else None, kron_params=KRON_PARAMS)
            table = _photutils_table(cat, data, nb, seg, np.asarray(segm0.data), background, header,
                                     zp=zp, phot_aperture=cfg.phot_aperture, vignet_size=cfg.vignet_size,
                                     satur_level=satur_level)
        n = len(table)

    hist = [
        f"photutils on {printable(tile.name, ascii_only=True)}: gain {gain:g} e-/unit, thresh {cfg.detect_thresh}, minarea "
        f"{cfg.detect_minarea}, box {cfg.back_size}, filter {cfg.back_filtersize}, kernel FWHM {cfg.filter_fwhm}",
    ]
    ih = image_header(header)
    for k, arr in (("nb", nb_out), ("rms", np.where(bad, np.nan, rms).astype(np.float32)), ("seg", seg)):
        h = ih.copy()
        stamp_fits(h, record, hist)
        fits.PrimaryHDU(arr, header=h).writeto(tmp[k])
    good = ~bad
    sex_keys = {
        "SEXVERS": ("astrotool-dre photutils", "Extraction software"),
        "SEXBKGND": (float(np.median(background[good])), "Median background level"),
        "SEXBKDEV": (float(np.median(rms[good])), "Median background RMS"),
        "SEXTHLD": (float(cfg.detect_thresh * np.median(rms[good])), "Extraction threshold"),
        "SEXNFIN": (int(n), "Number of sources"),
        "SEXGAIN": (float(gain), "Gain used (e-/unit)"),
        "SEXPXSCL": (1.0, "Pixel scale used for measurements"),
        "SEXMINAR": (int(cfg.detect_minarea), "Minimum detection area (px)"),
        "SEXAPED1": (float(cfg.phot_aperture), "Aperture #1 diameter (px)"),
        "SEXSATLV": (float(min(satur_level, 1e20)), "Saturation level"),
        "SEXMGZPT": (float(zp), "Zero-point used for magnitudes"),
        "SEXBKGSX": (int(cfg.back_size), "Background mesh width (px)"),
        "SEXBKGSY": (int(cfg.back_size), "Background mesh height (px)"),
        "SEXBKGFX": (int(cfg.back_filtersize), "Background filter width"),
        "SEXBKGFY": (int(cfg.back_filtersize), "Background filter height"),
    }
    write_ldac(tmp["cat"], table, header, record, hist, ext, sex_keys)
    return n


def _photutils_table(cat, data, nb, seg, seg0, background, header, *, zp, phot_aperture,
                     vignet_size, satur_level):
    from astropy.table import Table

    def arr(*names):
        v = _attr(cat, *names)
        v = getattr(v, "value", v)
        return np.asarray(v, dtype=np.float64)

    x0 = arr("x_centroid", "xcentroid")
    y0 = arr("y_centroid", "ycentroid")
    xw = arr("x_centroid_win", "xcentroid_win")
    yw = arr("y_centroid_win", "ycentroid_win")
    kron_flux = arr("kron_flux")
    kron_err = arr("kron_flux_err", "kron_fluxerr")
    ap_flux, ap_err = cat.circular_photometry(phot_aperture / 2.0)
    ap_flux = np.asarray(getattr(ap_flux, "value", ap_flux), dtype=np.float64)
    ap_err = np.asarray(getattr(ap_err, "value", ap_err), dtype=np.float64)
    r50 = np.asarray(getattr(cat.flux_radius(0.5), "value", cat.flux_radius(0.5)), dtype=np.float64)
    a = arr("semimajor_axis", "semimajor_sigma")
    b = arr("semiminor_axis", "semiminor_sigma")
    theta = sextractor_theta(arr("orientation"), np.float32)   # photutils: (-180, 180] or [0, 360)
    labels = np.asarray(cat.labels, dtype=np.int32)
    ny, nx = data.shape

    with np.errstate(divide="ignore", invalid="ignore"):
        snr = kron_flux / kron_err
        mag = np.where(kron_flux > 0, zp - 2.5 * np.log10(np.where(kron_flux > 0, kron_flux, 1.0)), 99.0)
        magerr = np.where(kron_flux > 0, 2.5 / math.log(10) * kron_err / np.abs(kron_flux), 99.0)

    # flags: 2 deblended, 4 saturated, 8 truncated by the frame
    flags = np.zeros(len(labels), dtype=np.int16)
    parent = np.zeros(seg.max() + 1, dtype=np.int64)
    fg = seg > 0
    parent[seg[fg]] = seg0[fg]
    counts = np.bincount(parent[labels], minlength=seg0.max() + 1)
    flags[counts[parent[labels]] > 1] |= 2
    raw_max = np.asarray(
        [np.nanmax(data[sl][seg[sl] == lab]) for sl, lab in zip(cat.slices, labels)], dtype=np.float64)
    flags[raw_max >= satur_level] |= 4
    edge = (arr("bbox_xmin") <= 0) | (arr("bbox_ymin") <= 0) | (arr("bbox_xmax") >= nx - 1) | (
        arr("bbox_ymax") >= ny - 1)
    flags[edge] |= 8

    r_star = stellar_locus(r50, snr, flags, arr("elongation"))
    class_star = size_stellarity(r50, snr, r_star)

    ra, dec = sky_coordinates(header, x0 + 1.0, y0 + 1.0)   # the catalogue's 1-based X_IMAGE, Y_IMAGE
    ix = np.clip(np.round(x0).astype(int), 0, nx - 1)
    iy = np.clip(np.round(y0).astype(int), 0, ny - 1)

    t = Table()
    t["NUMBER"] = labels
    t["X_IMAGE"] = x0 + 1.0
    t["Y_IMAGE"] = y0 + 1.0
    t["XWIN_IMAGE"] = xw + 1.0
    t["YWIN_IMAGE"] = yw + 1.0
    t["ALPHA_J2000"] = np.asarray(ra, dtype=np.float64)
    t["DELTA_J2000"] = np.asarray(dec, dtype=np.float64)
    f32 = np.float32
    t["FLUX_AUTO"] = kron_flux.astype(f32)
    t["FLUXERR_AUTO"] = kron_err.astype(f32)
    t["MAG_AUTO"] = mag.astype(f32)
    t["MAGERR_AUTO"] = magerr.astype(f32)
    t["FLUX_APER"] = ap_flux.astype(f32)
    t["FLUXERR_APER"] = ap_err.astype(f32)
    t["FLUX_RADIUS"] = r50.astype(f32)
    t["FWHM_IMAGE"] = arr("fwhm").astype(f32)
    # photutils' kron_radius is unscaled (r1, at least 1.4); SExtractor's KRON_RADIUS is k r1 (at least 3.5)
    t["KRON_RADIUS"] = (KRON_PARAMS[0] * arr("kron_radius")).astype(f32)
    t["A_IMAGE"] = a.astype(f32)
    t["B_IMAGE"] = b.astype(f32)
    t["THETA_IMAGE"] = theta
    t["ELONGATION"] = arr("elongation").astype(f32)
    t["ELLIPTICITY"] = arr("ellipticity").astype(f32)
    t["ISOAREA_IMAGE"] = arr("area").astype(np.int32)
    t["FLUX_MAX"] = arr("max_value").astype(f32)
    t["BACKGROUND"] = background[iy, ix].astype(f32)
    t["SNR_WIN"] = snr.astype(f32)
    t["CLASS_STAR"] = class_star
    t["FLAGS"] = flags
    t["VIGNET"] = _vignets(nb, x0 + 1.0, y0 + 1.0, vignet_size)
    return t


def _vignets(image, x1, y1, size):
    """``size``-square cut-outs centred on the nearest pixel, -1e30 outside the frame."""
    ny, nx = image.shape
    h = size // 2
    out = np.full((len(x1), size, size), -1e30, dtype=np.float32)
    pad = np.full((ny + 2 * h + 2, nx + 2 * h + 2), -1e30, dtype=np.float32)
    img = np.where(np.isfinite(image), image, -1e30).astype(np.float32)
    pad[h + 1: h + 1 + ny, h + 1: h + 1 + nx] = img
    for k, (x, y) in enumerate(zip(x1, y1)):
        if not (np.isfinite(x) and np.isfinite(y)):
            continue
        ix = int(math.floor(x - 1 + 0.5))
        iy = int(math.floor(y - 1 + 0.5))
        if -h - 1 <= ix <= nx + h and -h - 1 <= iy <= ny + h:
            out[k] = pad[iy + 1: iy + 1 + size, ix + 1: ix + 1 + size]
    return out


def _kw(func, **aliases):
    """Map parameter names across photutils versions (n_pixels vs npixels...)."""
    params = inspect.signature(func).parameters
    out = {}
    for new, (old, value) in aliases.items():
        out[new if new in params else old] = value
    return out


def _attr(obj, *names):
    for n in names:
        if hasattr(obj, n):
            return getattr(obj, n)
    raise AttributeError(f"none of {names} on {type(obj).__name__}")
