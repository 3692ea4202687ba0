"""The detect stage: detect and measure a tile's sources with SExtractor, or photutils.

Both engines (:mod:`astrotool_dre.detect_sextractor`,
:mod:`astrotool_dre.detect_photutils`) write the same four files, with DRE's
names, into the folder given (by convention ``<workspace>/dre/sextracted/<stem>/``):

``<stem>_cat.fits``
    FITS_LDAC catalogue (:mod:`astrotool_dre.catalog`: its layout and columns).
``<stem>_nb.fits``
    The image minus its background (SExtractor's ``-BACKGROUND``), float32.
``<stem>_rms.fits``
    The background RMS map (``BACKGROUND_RMS``), float32, image units.

Both are NaN at the pixels that hold no data: NaN or infinite in the tile, or marked so by its weight map
(:func:`astrotool_dre.tiles.read_weight`: weight 0, an infinite or huge RMS); the cuts stage drops a cut that
holds such a pixel.
``<stem>_seg.fits``
    The segmentation map (``SEGMENTATION``), int32, 0 = sky, else ``NUMBER``.

``engine = "auto"`` uses SExtractor when it is installed; the catalogue's primary
header says which ran (``DRE_ENG``, :func:`engine_of`). Both engines detect on
the image smoothed by the same Gaussian filter (:func:`detection_kernel`).
"""

from __future__ import annotations

import logging
import math
import os
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from astrotool.names import printable
from astrotool_dre.catalog import astropy_unit, data_unit
from astrotool_dre.tiles import (celestial_wcs, check_weight, header_number, output_paths, read_image, read_weight,
                                 resolve_gain, resolve_zero_point, tile_stem)

if TYPE_CHECKING:
    from astrotool_dre.config import DetectConfig

__docformat__ = "numpy"

__all__ = ["detect_tile", "sextractor_for", "detection_kernel", "ENGINE_KEY", "engine_of"]

ENGINE_KEY = "DRE_ENG"
"""Primary-header keyword of the catalogue and the PSF file: the engine that made it."""


def engine_of(path: str | os.PathLike) -> str:
    """The engine that made a catalogue or PSF file (:data:`ENGINE_KEY`); ``"unknown"`` for files made
    before it was recorded, or by other tools (DRE's own)."""
    from astropy.io import fits

    try:
        return str(fits.getval(path, ENGINE_KEY, ext=0))
    except (OSError, KeyError, IndexError):
        return "unknown"


RMS_TOLERANCE = 0.10
"""Largest relative difference between a detection's RMS map and the scatter of the sky about the background
that :func:`match_rms_to_sky` leaves alone (the sky scatters 0.99× the map of a 2048² crowded tile, 0.81× that of
a 512² one with the same ramp)."""

RMS_SAMPLE = 4_000_000
"""Most sky pixels :func:`match_rms_to_sky` reads (every k-th beyond it)."""


def match_rms_to_sky(tmp: dict, tile, cfg: DetectConfig, log) -> float:
    """Scale a detection's RMS map down to the scatter of the sky about the background where it is more than
    :data:`RMS_TOLERANCE` too large; warn where it is as much too small.

    Both engines take a mesh's background and RMS from one clipped histogram (SExtractor's method), so a sky
    gradient across a mesh widens the RMS: on a 512² tile with a 20 % sky ramp and 256-px meshes it came out
    1.24× the noise, the fit's χ²/ν 0.67 and its errors too large. The measure is the robust standard deviation
    (MAD) of the background-subtracted image divided by the RMS map on the pixels of no source's segment, so a
    tile whose depth varies, and whose map follows it, is left alone. A map too small is only warned about:
    the wings of faint sources below the threshold widen the sky too. A weight map (``weight_image``) is the
    user's noise model: it is only warned about.

    Parameters
    ----------
    tmp : dict
        The products ``"nb"``, ``"rms"`` and ``"seg"`` (FITS files; ``"rms"`` changed in place).
    tile : path-like
        The tile, for the messages.
    cfg : astrotool_dre.config.DetectConfig
        The ``[dre.detect]`` section.
    log : logging.Logger
        Where the change is said.

    Returns
    -------
    float
        The factor the RMS map was multiplied by (1.0: left as it was).
    """
    from astropy.io import fits
    from astropy.stats import mad_std

    nb, seg = fits.getdata(tmp["nb"]), fits.getdata(tmp["seg"])
    with fits.open(tmp["rms"], mode="update") as h:
        rms = h[0].data
        sky = np.flatnonzero((seg == 0) & np.isfinite(nb) & np.isfinite(rms) & (rms > 0))
        if sky.size < 1000:   # too few sky pixels to tell
            return 1.0
        sky = sky[::-(-sky.size // RMS_SAMPLE)]
        scatter = float(mad_std(nb.ravel()[sky] / rms.ravel()[sky]))   # 1 where the map is the noise
        if not np.isfinite(scatter) or scatter <= 0 or abs(scatter - 1.0) <= RMS_TOLERANCE:
            return 1.0
        what = (f"{printable(str(tile))}: the sky scatters {scatter:.2f}× the RMS map about the background "
                "(the pixels of no source)")
        if cfg.weight_image or scatter > 1.0:
            log.warning("%s; %s", what, f"the weight map {cfg.weight_image} is kept as the noise model"
                        if cfg.weight_image else "faint sources or structure in the sky? the map is kept, and the "
                                                 "fit's errors may be too small")
            return 1.0
        h[0].data = (rms * scatter).astype(rms.dtype)
        h[0].header.add_history(f"scaled by {scatter:.4f} to the sky's scatter about the background")
    log.info("%s: a sky gradient across the %d-px background meshes widens the map; scaled to it", what,
             cfg.back_size)
    return scatter


def detection_kernel(fwhm: float) -> np.ndarray:
    """Normalised Gaussian detection filter of FWHM ``fwhm`` [px], odd side ~1.5 FWHM (5x5 at 3 px)."""
    half = max(1, int(0.75 * fwhm))
    y, x = np.mgrid[-half: half + 1, -half: half + 1]
    sig = fwhm / (2.0 * math.sqrt(2.0 * math.log(2.0)))
    k = np.exp(-0.5 * (x * x + y * y) / sig**2)
    return k / k.sum()


def sextractor_for(cfg: DetectConfig) -> str | None:
    """The SExtractor executable the detection runs (:func:`~astrotool_dre.detect_sextractor.find_sextractor`),
    or None for photutils; checked once before any tile (exit 2).

    Raises
    ------
    astrotool.errors.AstroError
        ``engine = "sextractor"`` and SExtractor is not installed; a weight map (``weight_image``) and the
        photutils engine, chosen or the one ``"auto"`` found.
    """
    from astrotool.errors import AstroError
    from astrotool_dre.detect_sextractor import find_sextractor

    binary = find_sextractor() if cfg.engine in ("auto", "sextractor") else None
    if cfg.engine == "sextractor" and binary is None:
        raise AstroError("engine 'sextractor': neither 'source-extractor' nor 'sex' is on PATH "
                         "(install source-extractor, or use engine 'photutils' or 'auto')")
    if cfg.weight_image and binary is None:
        why = ("engine 'auto' found none on PATH (install it, or unset the key)" if cfg.engine == "auto" else
               f"engine {cfg.engine!r} does not read it (use engine 'sextractor' or 'auto', or unset the key)")
        raise AstroError(f"dre.detect.weight_image needs source-extractor; {why}")
    return binary


def detect_tile(tile: str | os.PathLike, outdir: str | os.PathLike, cfg: DetectConfig, *, stem: str | None = None) -> dict:
    """Detect and measure the sources of one tile; write DRE's four products.

    Parameters
    ----------
    tile : path-like
        FITS image (one 2-D image HDU).
    outdir : path-like
        Folder for ``<stem>_{cat,nb,rms,seg}.fits`` (created if needed).
    cfg : astrotool_dre.config.DetectConfig
        The ``[dre.detect]`` section (engine, gain, thresholds, ...).
    stem : str, optional
        Product stem; the tile's file name without extension by default.

    Returns
    -------
    dict
        ``{"cat", "nb", "rms", "seg"}`` paths plus ``"engine"``,
        ``"n_sources"`` and ``"seeing_fwhm"`` (px, or None).

    Raises
    ------
    astrotool.errors.InputError
        Unreadable tile, all-NaN or blank tile, no gain (or a header GAIN, EXPTIME for "cps", that is not
        a positive number), a header SATURATE that is not a number; a weight map (``weight_image``) missing, of
        another shape, or with no pixel of positive weight. A tile with no source gets an empty
        catalogue (same columns) and a warning.
    astrotool.errors.AstroError
        The engine cannot run (:func:`sextractor_for`).
    """
    from astrotool.provenance import provenance
    from astrotool.workspace import atomic_path
    from astrotool_dre.detect_photutils import run_photutils
    from astrotool_dre.detect_sextractor import run_sextractor

    tile = Path(tile)
    stem = stem or tile_stem(tile)
    data, header, ext = read_image(tile)
    settings = dict(gain=resolve_gain(header, cfg.gain, tile),
                    zp=resolve_zero_point(header, cfg.zero_point, tile,   # the fit's warning of the tile is not repeated
                                          "dre.detect.zero_point for MAG_AUTO, dre.fit.zero_point for MAG"),
                    satur_level=cfg.satur_level if cfg.satur_level is not None   # SExtractor rejects 1e30
                    else header_number(header, "SATURATE", tile, 1e20, advice="; set dre.detect.satur_level"),
                    kernel=detection_kernel(cfg.filter_fwhm))
    binary = sextractor_for(cfg)
    use = "sextractor" if binary else "photutils"
    weight = weight_pixels = None
    nodata = ~np.isfinite(data)
    if cfg.weight_image:
        weight = check_weight(tile, cfg.weight_image, data.shape, cfg.weight_type)
        weight_pixels, by_weight = read_weight(weight, cfg.weight_type)
        if by_weight is not None:
            nodata |= by_weight
    record = provenance("dre detect")

    paths = output_paths(outdir, stem)
    Path(outdir).mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        # the catalogue is entered first so that it is renamed last: it marks the stage done
        tmp = {k: stack.enter_context(atomic_path(paths[k])) for k in ("cat", "nb", "rms", "seg")}
        if binary:
            n, seeing = run_sextractor(binary, tile, data, header, ext, tmp, cfg, weight=weight, nodata=nodata,
                                       weight_pixels=weight_pixels, record=record, **settings)
        else:
            n, seeing = run_photutils(tile, data, header, ext, tmp, cfg, record=record, **settings), None
        from astropy.io import fits

        if nodata.any():   # no data: NaN in both engines' products, as the cuts stage reads them
            for k in ("nb", "rms"):
                with fits.open(tmp[k], mode="update") as h:
                    h[0].data[nodata] = np.nan
        log = logging.getLogger("astro.dre")
        match_rms_to_sky(tmp, tile, cfg, log)
        if n == 0:
            log.warning("%s: no sources detected above %g sigma (min area %d px); its catalogue is empty",
                        printable(str(tile)), cfg.detect_thresh, cfg.detect_minarea)
        bunit = data_unit(header)
        if bunit and not astropy_unit(bunit, "fits"):
            log.warning("%s: BUNIT %r is not a FITS unit astropy can read; kept as written (the flux columns' "
                        "TUNITn)", printable(str(tile)), bunit)
        if celestial_wcs(header) is None:
            log.warning("%s: no celestial WCS: RA/Dec left empty", printable(str(tile)))

        fits.setval(tmp["cat"], ENGINE_KEY, value=use, comment="detection engine that ran", ext=0)
    return {**{k: str(v) for k, v in paths.items()}, "engine": use, "n_sources": int(n),
            "seeing_fwhm": seeing}
