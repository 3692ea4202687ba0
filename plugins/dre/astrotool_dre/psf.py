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
    candidates (``CLASS_STAR >= min_stellarity``, ``FLAGS < 4``), so that PSFEx
    cannot build its PSF from galaxies; fewer than ``min_stars`` candidates, or
    fewer than ``min_stars`` stars accepted by PSFEx, fail the tile (InputError). PSFEx reads the
    catalogue as ``cat.fits`` in a private folder and names its output
    ``cat.psf``; that file is moved to ``out_path``.
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

A PSF that varies across the tile
----------------------------------
With ``var_degrees`` d > 0 the PSF is a polynomial of degree d in the position,
PSFEx's model: ``PSF(x, y) = sum_k c_k(x, y) B_k`` with components ``B_k`` and
monomials ``c_k = X^i Y^j`` (i + j <= d, ordered j-major: 1, X, X², Y, XY, Y²),
``X = (X_IMAGE - POLZERO1) / POLSCAL1`` and likewise Y. PSFEx fits it to the
stars itself (``PSFVAR_DEGREES``). photutils builds one ePSF per zone of a
(d + 1) x (d + 1) grid over the stars and fits the same polynomial through the
zone ePSFs pixel by pixel (weighted by their star counts), written in PSFEx's
layout; the degree is lowered while a zone has fewer than ``min_stars`` stars
(the warning says so, with the emptiest zone's count). Either way the degree is
lowered until there are at least 5 stars per component.
:func:`read_psf_model` reads both (:class:`PsfModel`, ``at(x, y)``).

:func:`read_psf` returns the order-0 component of a PSFEx file (or a plain
FITS image), negatives clipped to 0, normalised to unit sum, as DRE does.
"""

from __future__ import annotations

import logging
import math
import os
import shlex
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from astrotool.names import printable
from astrotool.provenance import stamp_fits

if TYPE_CHECKING:
    from astrotool_dre.config import PsfConfig

__docformat__ = "numpy"

__all__ = ["build_psf", "read_psf", "read_psf_model", "PsfModel", "group_by_psf", "monomials", "find_psfex",
           "psf_fwhm", "write_psfex_format",
           "select_stars", "poly_terms"]


def find_psfex() -> str | None:
    """Path of the ``psfex`` executable, or None."""
    return shutil.which("psfex")


# --------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------
def poly_terms(degree: int) -> list[tuple[int, int]]:
    """Exponents ``(i, j)`` of the monomials ``X^i Y^j`` of a PSFEx polynomial, in its order."""
    return [(i, j) for j in range(degree + 1) for i in range(degree + 1 - j)]


def monomials(x, y, degree: int, zero, scale) -> np.ndarray:
    """``(N, ncomp)`` PSFEx monomials ``X^i Y^j`` at 1-based positions, ``X = (x - zero[0]) / scale[0]``."""
    u = (np.atleast_1d(np.asarray(x, float)) - zero[0]) / scale[0]
    v = (np.atleast_1d(np.asarray(y, float)) - zero[1]) / scale[1]
    return np.stack([u ** i * v ** j for i, j in poly_terms(degree)], axis=1)


@dataclass(frozen=True)
class PsfModel:
    """A PSF as PSFEx stores it: components and a polynomial in the position.

    Attributes
    ----------
    components : numpy.ndarray
        ``(ncomp, ny, nx)``; ``ncomp = (degree + 1)(degree + 2) / 2``.
    degree : int
        Polynomial degree (0: one PSF for the tile).
    zero, scale : (float, float)
        ``POLZERO1/2`` and ``POLSCAL1/2`` [px, 1-based like ``X_IMAGE``].
    source : str
        The file it came from (for messages).
    """

    components: np.ndarray
    degree: int = 0
    zero: tuple[float, float] = (0.0, 0.0)
    scale: tuple[float, float] = (1.0, 1.0)
    source: str = "PSF"

    @property
    def varies(self) -> bool:
        """Whether the PSF depends on the position."""
        return self.degree > 0 and self.components.shape[0] > 1

    def coefficients(self, x, y) -> np.ndarray:
        """``(N, ncomp)`` polynomial coefficients at 1-based pixel positions ``x``, ``y``."""
        return monomials(x, y, self.degree, self.zero, self.scale)

    def images(self, x, y) -> np.ndarray:
        """``(N, ny, nx)`` PSFs at the positions, clipped at 0 and of unit sum (:func:`prepare_psf`)."""
        from astrotool_dre.convolve import prepare_psf

        raw = np.einsum("nk,kyx->nyx", self.coefficients(x, y), self.components)
        return np.stack([prepare_psf(p, self.source) for p in raw]) if len(raw) else raw

    def at(self, x: float, y: float) -> np.ndarray:
        """The PSF at one 1-based pixel position, clipped at 0 and of unit sum."""
        return self.images([x], [y])[0]


def group_by_psf(model: PsfModel, x, y, tolerance: float = 0.04, max_groups: int = 8):
    """Group objects whose PSFs are alike, so each group is fit with one convolved model bank.

    Objects are taken in order of PSF size (second moment); each group starts at
    the smallest PSF left and takes every object whose PSF differs from it by at
    most ``tolerance`` (relative L2 norm; 0.04 is about 0.1 px of FWHM at 3 px).
    The tolerance grows by 1.5x until there are at most ``max_groups`` groups.

    Parameters
    ----------
    model : PsfModel
    x, y : array-like
        1-based pixel positions of the objects (``X_IMAGE``, ``Y_IMAGE``).
    tolerance : float
    max_groups : int

    Returns
    -------
    list of (numpy.ndarray, numpy.ndarray)
        Per group: the members' indices and their mean PSF (unit sum). One group
        holding everything when the PSF does not vary.
    """
    x = np.atleast_1d(np.asarray(x, float))
    n = len(x)
    if not model.varies or n == 0:
        from astrotool_dre.convolve import prepare_psf

        return [(np.arange(n), prepare_psf(model.components[0], model.source))]
    images = model.images(x, y)
    ny, nx = images.shape[1:]
    yy, xx = np.mgrid[:ny, :nx]
    r2 = ((xx - nx // 2) ** 2 + (yy - ny // 2) ** 2).astype(float)
    order = np.argsort(np.einsum("nyx,yx->n", images, r2), kind="stable")
    flat = images.reshape(n, -1)
    tol = float(tolerance)
    while True:
        left, groups = list(order), []
        while left:
            ref = flat[left[0]]
            d = np.linalg.norm(flat[left] - ref, axis=1) / np.linalg.norm(ref)
            take = d <= tol
            groups.append(np.sort(np.asarray(left)[take]))
            left = [i for i, t in zip(left, take) if not t]
        if len(groups) <= max(1, max_groups):
            break
        tol *= 1.5
    out = []
    for members in groups:
        p = images[members].mean(axis=0)
        out.append((members, p / p.sum()))
    return out


def read_psf_model(path: str | os.PathLike) -> PsfModel:
    """Read a PSF file in PSFEx's format (any ``PSFVAR_DEGREES``) or a FITS image as a :class:`PsfModel`.

    Raises
    ------
    astrotool.errors.InputError
        As :func:`read_psf`, or a polynomial header that does not match the components.
    """
    from astropy.io import fits

    from astrotool.errors import InputError

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "PSF file not found")
    comps, header = None, None
    try:
        with fits.open(path, memmap=False) as hdul:
            rejected = False
            for hdu in hdul:
                if isinstance(hdu, fits.BinTableHDU) and "PSF_MASK" in hdu.columns.names:
                    if int(hdu.header.get("ACCEPTED", 1)) == 0:
                        rejected = True
                        continue
                    comps = np.asarray(hdu.data["PSF_MASK"][0], dtype=np.float64)
                    header = hdu.header
                    break
            if comps is None:
                if rejected:
                    raise InputError(path, "PSFEx accepted no star (ACCEPTED = 0): no usable PSF")
                for hdu in hdul:
                    if hdu.is_image and hdu.data is not None and hdu.data.ndim >= 2:
                        comps = np.asarray(hdu.data, dtype=np.float64)
                        break
    except InputError:
        raise
    except Exception as exc:
        raise InputError(path, f"not a readable PSF file ({type(exc).__name__}: {exc})") from None
    if comps is None:
        raise InputError(path, "no PSF_MASK table and no 2-D image: not a PSF file")
    while comps.ndim > 3:
        comps = comps[0]
    if comps.ndim == 2:
        comps = comps[None]
    if comps.shape[-1] < 3 or comps.shape[-2] < 3:
        raise InputError(path, f"PSF has shape {comps.shape[-2:]}; expected a 2-D image of at least 3x3")
    if not np.isfinite(comps).all():
        raise InputError(path, "PSF contains NaN or infinite values")
    degree, zero, scale = 0, (0.0, 0.0), (1.0, 1.0)
    if header is not None and int(header.get("POLNAXIS", 0)) == 2:
        degree = int(header.get("POLDEG1", 0))
        zero = (float(header.get("POLZERO1", 0.0)), float(header.get("POLZERO2", 0.0)))
        scale = (float(header.get("POLSCAL1", 1.0)), float(header.get("POLSCAL2", 1.0)))
        if len(poly_terms(degree)) != comps.shape[0] or not min(abs(scale[0]), abs(scale[1])) > 0:
            raise InputError(path, f"PSF polynomial of degree {degree} does not match its {comps.shape[0]} "
                                   f"components (or POLSCAL is 0)")
    elif comps.shape[0] > 1 and header is not None and int(header.get("POLNAXIS", 0)) != 0:
        raise InputError(path, f"PSF varies with {header.get('POLNAXIS')} quantities; only X_IMAGE, Y_IMAGE "
                               "(POLNAXIS = 2) are supported")
    if degree == 0:
        comps = comps[:1]
    from astrotool_dre.convolve import prepare_psf

    prepare_psf(comps[0], path)  # the same checks as a constant PSF (something positive)
    return PsfModel(comps, degree, zero, scale, str(path))


def read_psf(path: str | os.PathLike) -> np.ndarray:
    """Read a PSF: order-0 PSFEx component or a FITS image; clipped, unit sum.

    Parameters
    ----------
    path : path-like
        PSF file in PSFEx's format (first ``PSF_MASK`` table HDU whose ``ACCEPTED``
        is not 0), or a FITS file whose first 2-D image is the PSF.

    Returns
    -------
    numpy.ndarray
        2-D float64 PSF, negatives set to 0, sum 1 (for a varying PSF: the PSF at
        ``POLZERO``, the stars' mean position).

    Raises
    ------
    astrotool.errors.InputError
        Missing, unreadable, no PSF inside, no accepted stars, or non-positive.
    """
    from astrotool_dre.convolve import prepare_psf

    model = read_psf_model(path)
    return prepare_psf(model.components[0], Path(path))


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
                       fwhm: float, history: list[str] = (), model: PsfModel | None = None,
                       record: dict | None = None) -> None:
    """Write a PSF in PSFEx's file layout (readable by :func:`read_psf_model`, :func:`read_psf` and DRE).

    Parameters
    ----------
    path : path-like
        Output file (written directly; wrap in ``atomic_path``).
    psf : numpy.ndarray
        2-D PSF, unit sum (the constant PSF, or ``model``'s order-0 component).
    model : PsfModel, optional
        A PSF that varies: its components and polynomial are written instead.
    n_loaded, n_accepted : int
        Stars offered and used.
    fwhm : float
        PSF FWHM, pixels.
    history : list of str
        ``HISTORY`` lines after the provenance record's.
    record : dict, optional
        The :func:`astrotool.provenance.provenance` record written into the primary header (default: one of
        ``dre psf``).
    """
    from astropy.io import fits

    comps = (model.components if model is not None and model.varies else psf[None]).astype(np.float32)
    nc, ny, nx = comps.shape
    col = fits.Column(name="PSF_MASK", format=f"{nx * ny * nc}E", dim=f"({nx}, {ny}, {nc})",
                      array=comps[None])
    hdu = fits.BinTableHDU.from_columns([col])
    hdu.name = "PSF_DATA"
    h = hdu.header
    h["LOADED"] = (int(n_loaded), "number of loaded sources")
    h["ACCEPTED"] = (int(n_accepted), "number of accepted sources")
    h["CHI2"] = (0.0, "not computed (photutils ePSF)")
    if nc > 1:
        h["POLNAXIS"] = (2, "PSF varies with X_IMAGE, Y_IMAGE")
        h["POLGRP1"], h["POLGRP2"] = 1, 1
        h["POLNAME1"], h["POLNAME2"] = "X_IMAGE", "Y_IMAGE"
        h["POLZERO1"], h["POLZERO2"] = float(model.zero[0]), float(model.zero[1])
        h["POLSCAL1"], h["POLSCAL2"] = float(model.scale[0]), float(model.scale[1])
        h["POLNGRP"] = 1
        h["POLDEG1"] = (int(model.degree), "polynomial degree in the position")
    else:
        h["POLNAXIS"] = (0, "no PSF variation: one constant component")
        h["POLNGRP"] = 0
    h["PSF_FWHM"] = (float(fwhm), "PSF FWHM, pixels (Moffat fit)")
    h["PSF_SAMP"] = (1.0, "sampling step, image pixels")
    h["PSFNAXIS"] = 3
    h["PSFAXIS1"] = nx
    h["PSFAXIS2"] = ny
    h["PSFAXIS3"] = nc
    prim = fits.PrimaryHDU()
    stamp_fits(prim.header, record, history, command="dre psf")
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
    tile: str | os.PathLike | None = None,
) -> dict:
    """Build the tile's PSF from its stars and write ``out_path`` (the tile ``sim_000.fits``: ``sim_000.psf``).

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
        (PSFEx); ``var_degrees`` the degree of the PSF's variation with the
        position (0: constant PSF; DRE reads component 0 only); extra
        ``psfex_args`` (``-KEY value``); ``maxiters`` ``EPSFBuilder`` iterations
        (5 converges on simulated tiles; photutils 3.0
        becomes very slow for more); ``timeout`` [s] before ``psfex`` is stopped.
    nb_path, seg_path : path-like, optional
        Background-subtracted image and segmentation map (photutils engine);
        default: ``<stem>_nb.fits`` / ``<stem>_seg.fits`` beside the catalogue.
    tile : path-like, optional
        The tile, as the warning of a lowered degree names it (default: the catalogue).

    Returns
    -------
    dict
        ``{"psf": path, "engine", "n_stars", "fwhm", "degree"}``: the engine that ran, the stars it
        used, the FWHM [px] of the PSF at the stars' centre measured as the summary's ``PSF_FWHM``
        (:func:`psf_fwhm`, a Moffat fit; PSFEx's own ``PSF_FWHM`` header value differs), and the
        degree of its variation (below ``var_degrees`` when there were too few stars: logged).

    Raises
    ------
    astrotool.errors.InputError
        Unreadable catalogue or images, or too few usable stars. An empty catalogue (a tile with
        no source) gets a PSF file of no star (``ACCEPTED = 0``, engine ``"none"``) and a warning.
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
    engine = "psfex" if binary else "photutils"
    if len(cat) == 0:   # a tile with no source: nothing to fit, so no PSF is needed
        import logging

        logging.getLogger("astro.dre").warning("%s: the catalogue is empty; no PSF built (ACCEPTED = 0)",
                                               printable(str(cat_path)))
        from astropy.io import fits

        from astrotool_dre.detect import ENGINE_KEY

        with atomic_path(out_path) as tmp:
            write_psfex_format(tmp, np.zeros((cfg.size, cfg.size)), n_loaded=0, n_accepted=0, fwhm=0.0, history=[
                f"from {printable(cat_path.name, ascii_only=True)}: empty catalogue, no PSF"])
            fits.setval(tmp, ENGINE_KEY, value="none", comment="PSF engine that ran", ext=0)
        return {"psf": str(out_path), "engine": "none", "n_stars": 0, "fwhm": float("nan"), "degree": 0}
    with atomic_path(out_path) as tmp:
        if binary:
            n, why = _run_psfex(binary, cat_path, cat, tmp, cfg)
        else:
            n, why = _run_epsf(cat_path, cat, tmp, cfg, nb_path=nb_path, seg_path=seg_path)
        from astropy.io import fits

        from astrotool_dre.detect import ENGINE_KEY

        fits.setval(tmp, ENGINE_KEY, value=engine, comment="PSF engine that ran", ext=0)
        model = read_psf_model(tmp)
        fwhm = psf_fwhm(model.at(*model.zero))  # the fit's measure (its PSF_FWHM), at the stars' centre
    if model.degree < cfg.var_degrees:
        import logging

        logging.getLogger("astro.dre").warning(
            "%s: %s: the PSF's variation degree was lowered from dre.psf.var_degrees = %d to %d (%s)",
            printable(str(tile if tile is not None else cat_path)), engine, cfg.var_degrees, model.degree,
            why or f"{n} stars")
    return {"psf": str(out_path), "engine": engine, "n_stars": int(n), "fwhm": float(fwhm),
            "degree": int(model.degree)}


def lowered_for_terms(n_stars: int, degree: int) -> str:
    """Why :func:`degree_for` lowers ``degree`` for ``n_stars`` stars (``""``: it does not)."""
    if degree_for(n_stars, degree) == degree:
        return ""
    return (f"{n_stars} stars: degree {degree} has {len(poly_terms(degree))} polynomial terms and needs at least 5 "
            "stars per term")


def degree_for(n_stars: int, degree: int) -> int:
    """The highest PSF variation degree up to ``degree`` with at least 5 stars per component."""
    while degree > 0 and n_stars < 5 * len(poly_terms(degree)):
        degree -= 1
    return degree


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
    extra, timeout = cfg.psfex_args, cfg.timeout
    with tempfile.TemporaryDirectory(prefix=".psfex-", dir=Path(tmp).parent) as td:
        td = Path(td)
        src = td / "cat.fits"
        stars = np.asarray(cat["CLASS_STAR"], dtype=float) >= min_stellarity
        stars &= np.asarray(cat["FLAGS"]) < 4
        if stars.sum() < min_stars:
            raise InputError(cat_path, f"only {int(stars.sum())} usable PSF star candidates (need {min_stars}): "
                                       f"CLASS_STAR >= {min_stellarity}, FLAGS < 4")
        var_degrees = degree_for(int(stars.sum()), cfg.var_degrees)
        why = lowered_for_terms(int(stars.sum()), cfg.var_degrees)
        # keep only star candidates: PSFEx must not build the PSF from galaxies
        # the other HDUs are written back untouched: a round trip through astropy's
        # string columns would pad LDAC_IMHEAD's cards with NULs, which crashes PSFEx
        with fits.open(cat_path, memmap=False) as h:
            hdus = list(h)
            k = next(i for i, hdu in enumerate(hdus) if hdu.name == "LDAC_OBJECTS")
            hdus[k] = fits.BinTableHDU(hdus[k].data[stars], header=hdus[k].header)
            fits.HDUList(hdus).writeto(src)
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
        log = logging.getLogger("astro")
        log.debug("running %s in %s", shlex.join(args), td)
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(args, cwd=td, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"psfex did not finish within {timeout:g} s") from None
        log.debug("psfex: exit %d after %.2f s", proc.returncode, time.perf_counter() - t0)
        out = td / "cat.psf"
        if proc.returncode != 0 or not out.is_file():
            tail_ = (proc.stderr or proc.stdout or "")
            if var_degrees > 0 and "not enough" in tail_.lower():
                raise InputError(cat_path, f"PSFEx: too few stars for PSFVAR_DEGREES {var_degrees}; "
                                           "lower dre.psf.var_degrees")
            tail = " | ".join((proc.stderr or proc.stdout or "").strip().splitlines()[-5:])
            if "No appropriate source found" in (proc.stderr or "") or "no source" in tail.lower():
                raise InputError(cat_path, f"PSFEx found no usable star: {tail}")
            raise RuntimeError(f"psfex failed (exit {proc.returncode}): {tail}")
        with fits.open(out, mode="update") as h:
            n = int(h[1].header.get("ACCEPTED", 0))
            stamp_fits(h[0].header, command="dre psf", history=[
                f"psfex, PSF_SAMPLING 1, PSFVAR_DEGREES {var_degrees}",
                f"from {printable(cat_path.name, ascii_only=True)}: {int(stars.sum())} star candidates"])
        if n < min_stars:
            raise InputError(cat_path, f"only {n} usable PSF stars (need {min_stars}): PSFEx accepted {n} of "
                                       f"{int(stars.sum())} candidates")
        shutil.move(str(out), str(tmp))
    return n, why


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
    def epsf_of(members):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            builder = EPSFBuilder(oversampling=1, shape=(size + 2, size + 2), smoothing_kernel=None,
                                  maxiters=cfg.maxiters, progress_bar=False)
            result = builder(EPSFStars([star_list[i] for i in members]))
        epsf = result[0] if isinstance(result, tuple) else result.epsf if hasattr(result, "epsf") else result
        arr = np.clip(np.asarray(epsf.data, dtype=np.float64)[1:-1, 1:-1], 0.0, None)
        return arr / arr.sum()

    xs = np.asarray(cat["X_IMAGE"], float)[ok]
    ys = np.asarray(cat["Y_IMAGE"], float)[ok]
    degree, zones = degree_for(len(star_list), cfg.var_degrees), None
    why = [lowered_for_terms(len(star_list), cfg.var_degrees)] if degree < cfg.var_degrees else []
    while degree > 0:  # (d + 1)^2 zones over the stars, each with min_stars stars at least
        m = degree + 1
        ix = np.minimum(((xs - xs.min()) / max(np.ptp(xs), 1e-9) * m).astype(int), m - 1)
        iy = np.minimum(((ys - ys.min()) / max(np.ptp(ys), 1e-9) * m).astype(int), m - 1)
        zones = [np.flatnonzero((ix == a) & (iy == b)) for b in range(m) for a in range(m)]
        fewest = min(len(z) for z in zones)
        if fewest >= min_stars:
            break
        why.append(f"degree {degree}: the emptiest of its {m} x {m} zones holds {fewest} of the {len(star_list)} "
                   f"stars, fewer than dre.psf.min_stars = {min_stars}")
        degree -= 1
    arr = epsf_of(np.arange(len(star_list)))
    model = None
    if degree > 0:
        zero = (0.5 * (xs.min() + xs.max()), 0.5 * (ys.min() + ys.max()))
        scale = (max(np.ptp(xs), 1.0), max(np.ptp(ys), 1.0))
        images = np.stack([epsf_of(z) for z in zones])
        design = monomials([xs[z].mean() for z in zones], [ys[z].mean() for z in zones], degree, zero, scale)
        w = np.sqrt([len(z) for z in zones])[:, None]
        coef, *_ = np.linalg.lstsq(design * w, images.reshape(len(zones), -1) * w, rcond=None)
        model = PsfModel(coef.reshape((-1,) + arr.shape), degree, zero, scale)
        arr = model.at(*zero)
    fwhm = psf_fwhm(arr)
    write_psfex_format(tmp, arr, n_loaded=n_cand, n_accepted=len(star_list), fwhm=fwhm, model=model, history=[
        "photutils EPSFBuilder, oversampling 1",
        f"from {printable(Path(cat_path).name, ascii_only=True)}: {len(star_list)} stars, size {size}",
        f"degree {degree} in X_IMAGE, Y_IMAGE" + (f" through {len(zones)} zone ePSFs" if degree else ""),
    ])
    return len(star_list), "; ".join(why)
