"""PSF building from the stars of a tile, and one reader for every PSF file.

Engines
-------
``psfex``
    Runs ``psfex`` on the FITS_LDAC catalogue (it needs ``VIGNET``) with our
    own configuration written to a temporary folder: ``PSF_SAMPLING 1`` (one
    PSF pixel per image pixel, DRE's "PSF_STEP = 1"; DRE applies the PSF
    without resampling), ``PSF_SIZE`` ``size``, ``PSFVAR_DEGREES``
    ``var_degrees`` (0 = one PSF per tile), ``CHECKPLOT_TYPE NONE`` and
    ``CHECKIMAGE_TYPE NONE``. Before it runs, the catalogue is reduced to star
    candidates (``CLASS_STAR >= min_stellarity``) when at least ``min_stars``
    remain, so that PSFEx cannot build its PSF from galaxies. PSFEx names its
    output ``<cat>.psf``; it is moved to ``out_path``.
``photutils``
    ``EPSFBuilder(oversampling=1, smoothing_kernel=None)`` (the default
    oversampling of 4 and the quartic smoothing kernel are wrong for a PSF
    applied at pixel sampling) on stars cut from the background-subtracted
    image ``<stem>_nb.fits`` (``size + 1`` px, see ``_run_epsf``; the ePSF is
    built ``size + 2`` wide and its central ``size`` kept). Stars are catalogue
    sources with ``CLASS_STAR >= min_stellarity``, ``FLAGS == 0``, S/N
    (``FLUX_AUTO / FLUXERR_AUTO``) >= ``min_snr``, ellipticity
    ``(A-B)/(A+B) <= max_ellip``, no other source within ``isolation`` px,
    ``FLUX_RADIUS`` within 3 MAD of their median, and their whole stamp inside
    the image; pixels of other segments (``<stem>_seg.fits``) are masked. The
    result is written in PSFEx's format (a ``PSF_DATA`` binary table with one
    ``PSF_MASK`` cell of shape (1, ny, nx), ``POLNAXIS = 0``, ``PSF_SAMP = 1``)
    so that one reader serves both engines.

:func:`read_psf` returns the order-0 component of a PSFEx file (or a plain
FITS image), negatives clipped to 0, normalised to unit sum, as DRE does.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from astrotool.names import printable
from astrotool.provenance import fits_history

if TYPE_CHECKING:
    from astrotool_dre.config import PsfConfig

__docformat__ = "numpy"

__all__ = ["build_psf", "read_psf", "find_psfex", "psf_fwhm", "write_psfex_format", "select_stars"]


def find_psfex() -> str | None:
    """Path of the ``psfex`` executable, or None."""
    return shutil.which("psfex")


# --------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------
def read_psf(path: str | os.PathLike) -> np.ndarray:
    """Read a PSF: order-0 PSFEx component or a FITS image; clipped, unit sum.

    Parameters
    ----------
    path : path-like
        PSFEx ``.psf`` file (first ``PSF_MASK`` table HDU whose ``ACCEPTED``
        is not 0), or a FITS file whose first 2-D image is the PSF.

    Returns
    -------
    numpy.ndarray
        2-D float64 PSF, negatives set to 0, sum 1.

    Raises
    ------
    astrotool.errors.InputError
        Missing, unreadable, no PSF inside, no accepted stars, or non-positive.
    """
    from astropy.io import fits

    from astrotool.errors import InputError

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "PSF file not found")
    psf = None
    try:
        with fits.open(path, memmap=False) as hdul:
            rejected = False
            for hdu in hdul:
                if isinstance(hdu, fits.BinTableHDU) and "PSF_MASK" in hdu.columns.names:
                    if int(hdu.header.get("ACCEPTED", 1)) == 0:
                        rejected = True
                        continue
                    cell = np.asarray(hdu.data["PSF_MASK"][0], dtype=np.float64)
                    while cell.ndim > 2:
                        cell = cell[0]
                    psf = cell
                    break
            if psf is None:
                if rejected:
                    raise InputError(path, "PSFEx accepted no star (ACCEPTED = 0): no usable PSF")
                for hdu in hdul:
                    if hdu.is_image and hdu.data is not None and hdu.data.ndim >= 2:
                        psf = np.asarray(hdu.data, dtype=np.float64)
                        while psf.ndim > 2:
                            psf = psf[0]
                        break
    except InputError:
        raise
    except Exception as exc:
        raise InputError(path, f"not a readable PSF file ({type(exc).__name__}: {exc})") from None
    if psf is None:
        raise InputError(path, "no PSF_MASK table and no 2-D image: not a PSF file")
    if psf.ndim != 2 or min(psf.shape) < 3:
        raise InputError(path, f"PSF has shape {psf.shape}; expected a 2-D image of at least 3x3")
    from astrotool_dre.convolve import prepare_psf

    return prepare_psf(psf, path)


def psf_fwhm(psf: np.ndarray) -> float:
    """FWHM of a PSF image, pixels, from a least-squares circular Moffat fit.

    Parameters
    ----------
    psf : numpy.ndarray
        2-D PSF (any normalisation), pixel values taken at pixel centres.

    Returns
    -------
    float
        ``2 alpha sqrt(2**(1/beta) - 1)`` of the best-fitting Moffat.
    """
    from scipy.optimize import least_squares

    p = np.asarray(psf, dtype=np.float64)
    p = p / p.sum()
    ny, nx = p.shape
    y, x = np.mgrid[0:ny, 0:nx]
    yc, xc = np.unravel_index(np.argmax(p), p.shape)

    def model(t):
        amp, x0, y0, alpha, beta = t
        r2 = (x - x0) ** 2 + (y - y0) ** 2
        return amp * (1.0 + r2 / alpha**2) ** (-beta)

    t0 = [p.max(), xc, yc, 2.0, 3.0]
    res = least_squares(lambda t: (model(t) - p).ravel(), t0,
                        bounds=([0, 0, 0, 0.1, 0.5], [np.inf, nx, ny, 50, 50]))
    _, _, _, alpha, beta = res.x
    return float(2.0 * alpha * math.sqrt(2.0 ** (1.0 / beta) - 1.0))


def write_psfex_format(path: str | os.PathLike, psf: np.ndarray, *, n_loaded: int, n_accepted: int,
                       fwhm: float, history: list[str] = ()) -> None:
    """Write a constant PSF in PSFEx's file layout (readable by :func:`read_psf` and DRE).

    Parameters
    ----------
    path : path-like
        Output file (written directly; wrap in ``atomic_path``).
    psf : numpy.ndarray
        2-D PSF, unit sum.
    n_loaded, n_accepted : int
        Stars offered and used.
    fwhm : float
        PSF FWHM, pixels.
    history : list of str
        Provenance lines.
    """
    from astropy.io import fits

    ny, nx = psf.shape
    col = fits.Column(name="PSF_MASK", format=f"{nx * ny}E", dim=f"({nx}, {ny}, 1)",
                      array=psf.astype(np.float32)[None, None, :, :])
    hdu = fits.BinTableHDU.from_columns([col])
    hdu.name = "PSF_DATA"
    h = hdu.header
    h["LOADED"] = (int(n_loaded), "number of loaded sources")
    h["ACCEPTED"] = (int(n_accepted), "number of accepted sources")
    h["CHI2"] = (0.0, "not computed (photutils ePSF)")
    h["POLNAXIS"] = (0, "no PSF variation: one constant component")
    h["POLNGRP"] = 0
    h["PSF_FWHM"] = (float(fwhm), "PSF FWHM, pixels (Moffat fit)")
    h["PSF_SAMP"] = (1.0, "sampling step, image pixels")
    h["PSFNAXIS"] = 3
    h["PSFAXIS1"] = nx
    h["PSFAXIS2"] = ny
    h["PSFAXIS3"] = 1
    prim = fits.PrimaryHDU()
    for line in history:
        prim.header.add_history(line)
    fits.HDUList([prim, hdu]).writeto(path)


# --------------------------------------------------------------------------------------------
# building
# --------------------------------------------------------------------------------------------
def select_stars(cat, cfg: PsfConfig, *, shape) -> np.ndarray:
    """Boolean mask of catalogue rows usable as PSF stars (see the module docstring).

    Parameters
    ----------
    cat : astropy.table.Table
        Detection catalogue (``read_catalog``).
    cfg : astrotool_dre.config.PsfConfig
        The ``[dre.psf]`` section: PSF stamp ``size`` [px]; cuts
        ``min_stellarity``, ``min_snr`` and ``max_ellip`` on ``CLASS_STAR``,
        ``FLUX_AUTO/FLUXERR_AUTO`` and (A-B)/(A+B); no other source closer than
        ``isolation`` [px] (``size`` when None).
    shape : (int, int)
        Image shape (ny, nx).
    """
    size, min_stellarity, min_snr, max_ellip, isolation = (cfg.size, cfg.min_stellarity, cfg.min_snr,
                                                           cfg.max_ellip, cfg.isolation)
    x = np.asarray(cat["X_IMAGE"], dtype=float) - 1.0
    y = np.asarray(cat["Y_IMAGE"], dtype=float) - 1.0
    a = np.asarray(cat["A_IMAGE"], dtype=float)
    b = np.asarray(cat["B_IMAGE"], dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        snr = np.asarray(cat["FLUX_AUTO"], dtype=float) / np.asarray(cat["FLUXERR_AUTO"], dtype=float)
        ellip = (a - b) / (a + b)
    h = size // 2 + 1
    ny, nx = shape
    ok = (np.asarray(cat["CLASS_STAR"], dtype=float) >= min_stellarity)
    ok &= np.asarray(cat["FLAGS"]) == 0
    ok &= snr >= min_snr
    ok &= ellip <= max_ellip
    ok &= (x >= h) & (x <= nx - 1 - h) & (y >= h) & (y <= ny - 1 - h)
    iso = float(size if isolation is None else isolation)
    if len(x) > 1:
        from scipy.spatial import cKDTree

        d, _ = cKDTree(np.column_stack([x, y])).query(np.column_stack([x, y]), k=2)
        ok &= d[:, 1] > iso
    if ok.sum() >= 5:
        r = np.asarray(cat["FLUX_RADIUS"], dtype=float)
        med = np.median(r[ok])
        mad = 1.4826 * np.median(np.abs(r[ok] - med))
        ok &= np.abs(r - med) <= 3.0 * max(mad, 0.02 * med)
    return ok


def build_psf(
    cat_path: str | os.PathLike,
    out_path: str | os.PathLike,
    cfg: PsfConfig,
    *,
    nb_path: str | os.PathLike | None = None,
    seg_path: str | os.PathLike | None = None,
) -> dict:
    """Build the tile's PSF from its stars and write ``out_path`` (``<stem>.psf``).

    Parameters
    ----------
    cat_path : path-like
        FITS_LDAC catalogue ``<stem>_cat.fits`` from :func:`astrotool_dre.detect.detect_tile`.
    out_path : path-like
        Output PSF file.
    cfg : astrotool_dre.config.PsfConfig
        The ``[dre.psf]`` section: ``engine`` (``auto`` runs PSFEx when
        :func:`find_psfex` finds it); PSF ``size`` [px, odd]; star candidates
        with ``CLASS_STAR >= min_stellarity``, S/N >= ``min_snr`` (photutils;
        PSFEx uses ``SAMPLE_MINSN 20``), (A-B)/(A+B) <= ``max_ellip`` and, for
        photutils, at least ``isolation`` px from any other source (default
        ``size``); ``min_stars`` accepted (photutils) or needed to pre-filter
        (PSFEx); PSFEx ``var_degrees`` (0: constant PSF; DRE reads component 0
        only) and extra ``psfex_args`` (``-KEY value``); ``maxiters``
        ``EPSFBuilder`` iterations (5 converges on simulated tiles; photutils 3.0
        becomes very slow for more); ``timeout`` [s] before ``psfex`` is stopped.
    nb_path, seg_path : path-like, optional
        Background-subtracted image and segmentation map (photutils engine);
        default: ``<stem>_nb.fits`` / ``<stem>_seg.fits`` beside the catalogue.

    Returns
    -------
    dict
        ``{"psf": path, "engine", "n_stars", "fwhm"}`` (FWHM in pixels).

    Raises
    ------
    astrotool.errors.InputError
        Unreadable catalogue or images, or too few usable stars.
    """
    from astrotool.workspace import atomic_path
    from astrotool_dre.catalog import read_catalog

    binary = find_psfex() if cfg.engine in ("auto", "psfex") else None
    if cfg.engine == "psfex" and binary is None:
        from astrotool.errors import AstroError

        raise AstroError("engine 'psfex': 'psfex' is not on PATH "
                         "(install psfex, or use engine 'photutils' or 'auto')")
    cat_path = Path(cat_path)
    cat = read_catalog(cat_path, vignet=binary is None, require=PSF_COLUMNS)
    out_path = Path(out_path)
    with atomic_path(out_path) as tmp:
        if binary:
            n, fwhm = _run_psfex(binary, cat_path, cat, tmp, cfg)
        else:
            n, fwhm = _run_epsf(cat_path, cat, tmp, cfg, nb_path=nb_path, seg_path=seg_path)
    return {"psf": str(out_path), "engine": "psfex" if binary else "photutils", "n_stars": int(n),
            "fwhm": float(fwhm)}


def _sibling(cat_path: Path, product: str) -> Path:
    name = cat_path.name
    stem = name[: -len("_cat.fits")] if name.endswith("_cat.fits") else cat_path.stem
    return cat_path.with_name(f"{stem}_{product}.fits")


PSF_COLUMNS = ("X_IMAGE", "Y_IMAGE", "A_IMAGE", "B_IMAGE", "FLUX_AUTO", "FLUXERR_AUTO", "CLASS_STAR", "FLAGS")
"""Catalogue columns the star selection reads (both engines)."""


def _run_psfex(binary, cat_path, cat, tmp, cfg: PsfConfig):
    from astropy.io import fits

    from astrotool.errors import InputError

    size, min_stellarity, max_ellip, min_stars = cfg.size, cfg.min_stellarity, cfg.max_ellip, cfg.min_stars
    var_degrees, extra, timeout = cfg.var_degrees, cfg.psfex_args, cfg.timeout
    with tempfile.TemporaryDirectory(prefix=".psfex-", dir=Path(tmp).parent) as td:
        td = Path(td)
        src = td / "cat.fits"
        stars = np.asarray(cat["CLASS_STAR"], dtype=float) >= min_stellarity
        stars &= np.asarray(cat["FLAGS"]) < 4
        if stars.sum() >= min_stars:
            # keep only star candidates: PSFEx must not build the PSF from galaxies
            # the other HDUs are written back untouched: a round trip through astropy's
            # string columns would pad LDAC_IMHEAD's cards with NULs, which crashes PSFEx
            with fits.open(cat_path, memmap=False) as h:
                hdus = list(h)
                k = next(i for i, hdu in enumerate(hdus) if hdu.name == "LDAC_OBJECTS")
                hdus[k] = fits.BinTableHDU(hdus[k].data[stars], header=hdus[k].header)
                fits.HDUList(hdus).writeto(src)
        else:
            os.symlink(os.path.abspath(cat_path), src)
        conf = {
            "BASIS_TYPE": "PIXEL_AUTO",
            "PSF_SAMPLING": 1.0,
            "PSF_ACCURACY": 0.01,
            "PSF_SIZE": f"{size},{size}",
            "CENTER_KEYS": "X_IMAGE,Y_IMAGE",
            "PHOTFLUX_KEY": "FLUX_APER(1)",
            "PHOTFLUXERR_KEY": "FLUXERR_APER(1)",
            "PSFVAR_KEYS": "X_IMAGE,Y_IMAGE",
            "PSFVAR_GROUPS": "1,1",
            "PSFVAR_DEGREES": int(var_degrees),
            "SAMPLE_AUTOSELECT": "Y",
            "SAMPLEVAR_TYPE": "SEEING",
            "SAMPLE_FWHMRANGE": "1.0,20.0",
            "SAMPLE_VARIABILITY": 0.2,
            "SAMPLE_MINSN": 20,
            "SAMPLE_MAXELLIP": max_ellip,
            "CHECKPLOT_TYPE": "NONE",
            "CHECKIMAGE_TYPE": "NONE",
            "PSF_DIR": ".",
            "PSF_SUFFIX": ".psf",
            "OUTCAT_TYPE": "NONE",
            "VERBOSE_TYPE": "QUIET",
            "WRITE_XML": "N",
            "NTHREADS": 1,
        }
        (td / "dre.psfex").write_text("".join(f"{k:<20}{v}\n" for k, v in conf.items()))
        # names relative to the private folder: psfex splits paths at spaces and commas
        args = [binary, src.name, "-c", "dre.psfex"]
        for k, v in extra.items():
            args += [f"-{str(k).lstrip('-').upper()}", str(v)]
        try:
            proc = subprocess.run(args, cwd=td, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"psfex did not finish within {timeout:.0f} s") from None
        out = td / "cat.psf"
        if proc.returncode != 0 or not out.is_file():
            tail = " | ".join((proc.stderr or proc.stdout or "").strip().splitlines()[-5:])
            if "No appropriate source found" in (proc.stderr or "") or "no source" in tail.lower():
                raise InputError(cat_path, f"PSFEx found no usable star: {tail}")
            raise RuntimeError(f"psfex failed (exit {proc.returncode}): {tail}")
        with fits.open(out, mode="update") as h:
            hdr = h[1].header
            n = int(hdr.get("ACCEPTED", 0))
            fwhm = float(hdr.get("PSF_FWHM", np.nan))
            for line in fits_history(command="dre psf") + [
                    "psfex, PSF_SAMPLING 1",
                    f"from {printable(cat_path.name, ascii_only=True)}: {int(stars.sum())} star candidates"]:
                h[0].header.add_history(line)
        if n == 0:
            raise InputError(cat_path, "PSFEx accepted no star; no PSF can be built")
        shutil.move(str(out), str(tmp))
    return n, fwhm


def _run_epsf(cat_path, cat, tmp, cfg: PsfConfig, *, nb_path, seg_path):
    import warnings

    from photutils.psf import EPSFBuilder, EPSFStar, EPSFStars

    from astrotool.errors import InputError
    from astrotool_dre.tiles import read_image

    nb_path = Path(nb_path) if nb_path else _sibling(cat_path, "nb")
    seg_path = Path(seg_path) if seg_path else _sibling(cat_path, "seg")
    nb, _, _ = read_image(nb_path, check_content=False)
    seg = read_image(seg_path, check_content=False)[0].astype(np.int64) if seg_path.is_file() else None
    size, min_stars, min_stellarity, min_snr = cfg.size, cfg.min_stars, cfg.min_stellarity, cfg.min_snr
    ok = select_stars(cat, cfg, shape=nb.shape)
    n_cand = int(ok.sum())
    if n_cand < min_stars:
        raise InputError(cat_path, f"only {n_cand} usable PSF stars (need {min_stars}): "
                                   f"CLASS_STAR >= {min_stellarity}, S/N >= {min_snr}, isolated, unflagged")
    mask = ~np.isfinite(nb)
    if seg is not None:
        labels = np.asarray(cat["NUMBER"])[ok]
        mask |= (seg > 0) & ~np.isin(seg, labels)
    data = np.where(mask, 0.0, nb)
    weights = (~mask).astype(np.float64)
    # Stars are cut (size + 1) px wide (even) starting at floor(x) - size // 2, so the star
    # sits at size // 2 + frac(x) in its cut-out; the ePSF is size + 2 (photutils wants it
    # larger than the stars). Stars with frac < 0.5 fill ePSF columns 1..size+1, the
    # others 0..size: together they cover the whole grid, and photutils does not have to
    # interpolate missing residuals (its Clough-Tocher fill costs up to seconds per pass).
    n, half = size + 1, size // 2
    star_list = []
    for x, y in zip(np.asarray(cat["X_IMAGE"], float)[ok] - 1.0, np.asarray(cat["Y_IMAGE"], float)[ok] - 1.0):
        x0, y0 = int(np.floor(x)) - half, int(np.floor(y)) - half
        sl = (slice(y0, y0 + n), slice(x0, x0 + n))
        star_list.append(EPSFStar(data[sl].copy(), weights=weights[sl].copy(),
                                  cutout_center=(x - x0, y - y0), origin=(x0, y0)))
    stars = EPSFStars(star_list)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        builder = EPSFBuilder(oversampling=1, shape=(size + 2, size + 2), smoothing_kernel=None,
                              maxiters=cfg.maxiters, progress_bar=False)
        result = builder(stars)
    epsf = result[0] if isinstance(result, tuple) else result.epsf if hasattr(result, "epsf") else result
    arr = np.asarray(epsf.data, dtype=np.float64)[1:-1, 1:-1]
    arr = np.clip(arr, 0.0, None)
    arr /= arr.sum()
    fwhm = psf_fwhm(arr)
    write_psfex_format(tmp, arr, n_loaded=n_cand, n_accepted=len(stars), fwhm=fwhm, history=[
        *fits_history(command="dre psf"), "photutils EPSFBuilder, oversampling 1",
        f"from {printable(Path(cat_path).name, ascii_only=True)}: {len(stars)} stars, size {size}",
    ])
    return len(stars), fwhm
