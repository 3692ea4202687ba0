"""Source detection: SExtractor when installed, photutils otherwise.

Both engines write the same four files, with DRE's names, into the folder
given (by convention ``<workspace>/dre/sextracted/<stem>/``):

``<stem>_cat.fits``
    FITS_LDAC catalogue: a primary HDU, ``LDAC_IMHEAD`` (the tile's header as
    one ``Field Header Card`` string) and ``LDAC_OBJECTS``. :func:`read_catalog`
    reads both engines' files (every ``LDAC_OBJECTS`` HDU, stacked).
``<stem>_nb.fits``
    The image minus its background (SExtractor's ``-BACKGROUND``), float32.
``<stem>_rms.fits``
    The background RMS map (``BACKGROUND_RMS``), float32, image units.
``<stem>_seg.fits``
    The segmentation map (``SEGMENTATION``), int32, 0 = sky, else ``NUMBER``.

Catalogue columns (both engines; units are pixels, image units and degrees):
``NUMBER, X_IMAGE, Y_IMAGE`` (1-based, FITS convention), ``XWIN_IMAGE,
YWIN_IMAGE, ALPHA_J2000, DELTA_J2000, FLUX_AUTO, FLUXERR_AUTO, MAG_AUTO,
MAGERR_AUTO, FLUX_APER, FLUXERR_APER`` (one aperture, diameter
``phot_aperture``), ``FLUX_RADIUS`` (half-light), ``FWHM_IMAGE,
KRON_RADIUS, A_IMAGE, B_IMAGE, THETA_IMAGE`` (deg CCW from +x, (-90, 90]),
``ELONGATION, ELLIPTICITY, ISOAREA_IMAGE, FLUX_MAX, BACKGROUND, SNR_WIN,
CLASS_STAR, FLAGS`` and ``VIGNET`` (``vignet_size`` square cut-out of the
background-subtracted image, -1e30 outside the frame) for PSFEx.

Engines
-------
``sextractor``
    Runs ``source-extractor`` (or ``sex``) with our own configuration,
    parameter and filter files written to a temporary folder (every path in
    them is absolute), through an argument list. DRE's outputs are forced:
    ``-CATALOG_TYPE FITS_LDAC`` and ``-CHECKIMAGE_TYPE
    -BACKGROUND,BACKGROUND_RMS,SEGMENTATION``. ``PIXEL_SCALE`` is 1, so
    ``SEEING_FWHM`` is in pixels; when not given it is measured by a first,
    catalogue-only pass (the median ``FWHM_IMAGE`` of the stellar locus).
    ``CLASS_STAR`` comes from SExtractor's neural network (``default.nnw``,
    searched for under ``share/source-extractor``); if that file cannot be
    found the size-based stellarity below is used instead.
``photutils``
    ``Background2D`` (box ``back_size``, filter ``back_filtersize``,
    SExtractor estimator), detection on the image smoothed by a Gaussian of
    FWHM ``filter_fwhm`` at ``detect_thresh`` times the background RMS with at
    least ``detect_minarea`` connected pixels, deblending (``deblend_nthresh``
    levels, contrast ``deblend_mincont``) and ``SourceCatalog``.
    ``FLUX_AUTO`` is the Kron flux (factor 2.5), ``FLAGS`` sets 2 (deblended),
    4 (a pixel at or above ``SATURATE``) and 8 (touches the frame edge).

Size-based stellarity (photutils' ``CLASS_STAR``)
    The stellar locus radius ``r*`` is the smallest tight clump of
    ``FLUX_RADIUS`` values among S/N >= 20, unflagged, round sources
    (a +-5 % window holding at least half as many sources as the richest
    window, and at least 3). Then ``CLASS_STAR = 1`` for ``FLUX_RADIUS <= r*``
    and ``exp(-((FLUX_RADIUS - r*) / s)**2 / 2)`` above, with
    ``s = r* * hypot(0.08, 2 / SNR)``: stars score near 1, resolved galaxies
    near 0. When no locus is found every source gets 0.5.

Gain (``gain``): ``"counts"`` uses the header ``GAIN`` (image in ADU),
``"cps"`` uses ``GAIN * EXPTIME`` (image in ADU/s), a number is used as is
(e-/image unit).
"""

from __future__ import annotations

import inspect
import math
import os
import shutil
import subprocess
import tempfile
from contextlib import ExitStack
from pathlib import Path

import numpy as np

from astrotool_dre import __version__

__docformat__ = "numpy"

__all__ = [
    "CATALOG_COLUMNS",
    "detect_tile",
    "find_sextractor",
    "find_nnw",
    "read_catalog",
    "read_image",
    "stellar_locus",
    "size_stellarity",
    "output_paths",
    "tile_stem",
]

#: Columns both engines write to ``LDAC_OBJECTS`` (VIGNET size is configurable).
CATALOG_COLUMNS = [
    "NUMBER", "X_IMAGE", "Y_IMAGE", "XWIN_IMAGE", "YWIN_IMAGE", "ALPHA_J2000", "DELTA_J2000",
    "FLUX_AUTO", "FLUXERR_AUTO", "MAG_AUTO", "MAGERR_AUTO", "FLUX_APER", "FLUXERR_APER",
    "FLUX_RADIUS", "FWHM_IMAGE", "KRON_RADIUS", "A_IMAGE", "B_IMAGE", "THETA_IMAGE",
    "ELONGATION", "ELLIPTICITY", "ISOAREA_IMAGE", "FLUX_MAX", "BACKGROUND", "SNR_WIN",
    "CLASS_STAR", "FLAGS",
]

_ZP_KEYS = ("MAGZP", "MAGZPT", "MAGZERO", "ZEROPT", "ZP", "PHOTZP", "MAG_ZP")


def _history(tool: str) -> list[str]:
    return [f"astrotool-dre {__version__} {tool}"]


# --------------------------------------------------------------------------------------------
# discovery
# --------------------------------------------------------------------------------------------
def find_sextractor() -> str | None:
    """Path of the SExtractor executable: ``source-extractor``, then ``sex``; None if absent."""
    for name in ("source-extractor", "sex"):
        path = shutil.which(name)
        if path:
            return path
    return None


def find_nnw(binary: str | None = None) -> Path | None:
    """SExtractor's star/galaxy network ``default.nnw``, or None.

    Looks in ``$SEXTRACTOR_SHARE``, then ``<prefix>/share/{source-extractor,sextractor}``
    for the binary's prefix, ``/usr/share`` and ``/usr/local/share``.
    """
    dirs = []
    if os.environ.get("SEXTRACTOR_SHARE"):
        dirs.append(Path(os.environ["SEXTRACTOR_SHARE"]))
    prefixes = []
    if binary:
        prefixes.append(Path(os.path.realpath(binary)).parent.parent)
    prefixes += [Path("/usr"), Path("/usr/local"), Path("/opt/homebrew")]
    for p in prefixes:
        dirs += [p / "share" / "source-extractor", p / "share" / "sextractor", p / "share" / "SExtractor"]
    for d in dirs:
        f = d / "default.nnw"
        if f.is_file():
            return f
    return None


def tile_stem(path: str | os.PathLike) -> str:
    """File name of a tile without its FITS extension (``.fits``, ``.fit``, ``.fts``, ``.gz``)."""
    name = Path(path).name
    for ext in (".gz", ".fz", ".bz2"):
        if name.lower().endswith(ext):
            name = name[: -len(ext)]
    for ext in (".fits", ".fit", ".fts"):
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return Path(name).stem


def output_paths(outdir: str | os.PathLike, stem: str) -> dict[str, Path]:
    """DRE's names of the detection products of tile ``stem`` in ``outdir``."""
    outdir = Path(outdir)
    return {k: outdir / f"{stem}_{k}.fits" for k in ("cat", "nb", "rms", "seg")}


# --------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------
def read_image(path: str | os.PathLike, *, check_content: bool = True):
    """Read the single 2-D image of a FITS file, with checks.

    Parameters
    ----------
    path : path-like
        FITS file.
    check_content : bool
        Reject images that are all NaN or constant.

    Returns
    -------
    data : numpy.ndarray
        float64 image.
    header : astropy.io.fits.Header
    ext : int
        HDU index that holds it.

    Raises
    ------
    astrotool.errors.InputError
        Missing, unreadable, no or several 2-D images, all non-finite, blank.
    """
    from astropy.io import fits

    from astrotool.errors import InputError

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    try:
        with fits.open(path, memmap=False) as hdul:
            found = []
            for i, hdu in enumerate(hdul):
                if hdu.is_image and hdu.header.get("NAXIS", 0) == 2:
                    found.append(i)
            if not found:
                raise InputError(path, "no 2-D image in this FITS file")
            if len(found) > 1:
                raise InputError(
                    path, f"{len(found)} image extensions (HDUs {found}); split it into one file per image"
                )
            ext = found[0]
            data = np.asarray(hdul[ext].data, dtype=np.float64)
            header = hdul[ext].header.copy()
    except InputError:
        raise
    except Exception as exc:  # astropy raises OSError, ValueError, TypeError... on junk
        raise InputError(path, f"not a readable FITS file ({type(exc).__name__}: {exc})") from None
    if check_content:
        finite = np.isfinite(data)
        if not finite.any():
            raise InputError(path, "every pixel is NaN or infinite; nothing to detect")
        vals = data[finite]
        if vals.min() == vals.max():
            raise InputError(path, f"blank image: every finite pixel equals {vals.min():g}; no sources")
    return data, header, ext


def read_catalog(path: str | os.PathLike, *, vignet: bool = True, require=()):
    """Read a FITS_LDAC catalogue (every ``LDAC_OBJECTS`` HDU, stacked).

    Parameters
    ----------
    path : path-like
        ``<stem>_cat.fits`` from either engine.
    vignet : bool
        Keep the ``VIGNET`` column (large); drop it when false.
    require : sequence of str
        Columns the caller needs.

    Returns
    -------
    astropy.table.Table
        One row per source; ``EXT_NUMBER`` is added (0-based HDU of the image
        in the tile) when absent.

    Raises
    ------
    astrotool.errors.InputError
        Missing, unreadable, no ``LDAC_OBJECTS`` table, or a required column missing.
    """
    from astropy.io import fits
    from astropy.table import Table, vstack

    from astrotool.errors import InputError

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "catalogue not found")
    try:
        tables = []
        with fits.open(path, memmap=False) as hdul:
            for hdu in hdul:
                if hdu.name == "LDAC_OBJECTS":
                    t = Table(hdu.data.copy() if hdu.data is not None else None)
                    if not vignet and "VIGNET" in t.colnames:
                        t.remove_column("VIGNET")
                    tables.append(t)
            ext = int(hdul[0].header.get("DRE_EXT", 0))
    except Exception as exc:
        raise InputError(path, f"not a readable FITS catalogue ({type(exc).__name__}: {exc})") from None
    if not tables:
        raise InputError(path, "no LDAC_OBJECTS table: not a FITS_LDAC catalogue")
    cat = vstack(tables) if len(tables) > 1 else tables[0]
    if "EXT_NUMBER" not in cat.colnames:
        cat["EXT_NUMBER"] = np.full(len(cat), ext, dtype=np.int16)
    missing = [c for c in require if c not in cat.colnames]
    if missing:
        raise InputError(path, f"column(s) {', '.join(missing)} missing from the catalogue")
    return cat


# --------------------------------------------------------------------------------------------
# stellarity
# --------------------------------------------------------------------------------------------
def stellar_locus(flux_radius, snr, flags=None, elongation=None, *, min_snr=20.0, window=0.05,
                  min_count=3) -> float | None:
    """Half-light radius of the stellar locus, pixels, or None.

    Parameters
    ----------
    flux_radius : array_like
        ``FLUX_RADIUS`` (px).
    snr : array_like
        Signal-to-noise ratio of each source.
    flags, elongation : array_like, optional
        Sources with ``flags >= 4`` or ``elongation >= 1.5`` are ignored.
    min_snr : float
        Only sources above this S/N are used.
    window : float
        Relative half-width of the clump window (0.05 = +-5 %).
    min_count : int
        Minimum number of sources in the locus.

    Returns
    -------
    float or None
        Median ``FLUX_RADIUS`` of the smallest tight clump.
    """
    r = np.asarray(flux_radius, dtype=float)
    ok = np.isfinite(r) & (r > 0) & (np.asarray(snr, dtype=float) >= min_snr)
    if flags is not None:
        ok &= np.asarray(flags) < 4
    if elongation is not None:
        ok &= np.asarray(elongation, dtype=float) < 1.5
    lr = np.sort(np.log(r[ok]))
    if lr.size < min_count:
        return None
    w = math.log1p(window)
    lo = np.searchsorted(lr, lr - w, side="left")
    hi = np.searchsorted(lr, lr + w, side="right")
    counts = hi - lo
    need = max(min_count, int(math.ceil(0.5 * counts.max())))
    cand = np.nonzero(counts >= need)[0]
    if cand.size == 0:
        return None
    i = cand[0]
    # centre on the richest window among those overlapping the smallest clump
    j = i + int(np.argmax(counts[i: hi[i]]))
    return float(np.exp(np.median(lr[lo[j]: hi[j]])))


def size_stellarity(flux_radius, snr, r_star: float | None, *, tolerance: float = 0.08) -> np.ndarray:
    """Size-based stellarity in [0, 1] (stands in for ``CLASS_STAR``).

    Parameters
    ----------
    flux_radius : array_like
        ``FLUX_RADIUS`` (px).
    snr : array_like
        Signal-to-noise ratio.
    r_star : float or None
        Stellar locus radius (px), from :func:`stellar_locus`; None gives 0.5.
    tolerance : float
        Relative intrinsic width of the locus.

    Returns
    -------
    numpy.ndarray
        float32, 1 on or below the locus, falling as a Gaussian in radius above.
    """
    r = np.asarray(flux_radius, dtype=float)
    if r_star is None:
        return np.full(r.shape, 0.5, dtype=np.float32)
    s = np.asarray(snr, dtype=float)
    s = np.where(np.isfinite(s) & (s > 0), s, 1.0)
    sig = r_star * np.hypot(tolerance, 2.0 / s)
    z = np.clip(r - r_star, 0.0, None) / sig
    out = np.exp(-0.5 * z * z)
    out[~np.isfinite(r)] = 0.0
    return out.astype(np.float32)


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def resolve_gain(header, gain, path) -> float:
    """Effective gain (e- per image unit): "counts", "cps" or a number."""
    from astrotool.errors import InputError

    try:
        return float(gain)
    except (TypeError, ValueError):
        pass
    mode = str(gain).lower()
    if mode not in ("counts", "cps"):
        raise ValueError(f"gain must be 'counts', 'cps' or a number, got {gain!r}")
    g = header.get("GAIN")
    if g is None:
        keys = [k for k in header.keys() if "GAIN" in k]
        g = header.get(keys[0]) if keys else None
    if g is None:
        raise InputError(path, f"no GAIN keyword in the header (gain={mode!r}); give the gain as a number")
    try:
        g = float(g)
    except (TypeError, ValueError):
        g = float("nan")
    if not g > 0:
        raise InputError(path, f"header GAIN {header.get('GAIN')!r} is not a positive number; give the gain as a number")
    if mode == "cps":
        t = header.get("EXPTIME")
        if t is None:
            raise InputError(path, "no EXPTIME keyword in the header (gain='cps'); give the gain as a number")
        g *= float(t)
    return g


DEFAULT_ZERO_POINT = 30.0  # [mag], when neither the configuration nor the header gives one


def resolve_zero_point(header, zero_point) -> float:
    """Magnitude zero point [mag]: the configured one, else the header's MAGZP/ZP..., else 30."""
    if zero_point is not None:
        return float(zero_point)
    for k in _ZP_KEYS:
        if k in header:
            try:
                return float(header[k])
            except (TypeError, ValueError):
                continue
    return DEFAULT_ZERO_POINT


def _gauss_kernel(fwhm: float) -> np.ndarray:
    """Normalised Gaussian smoothing kernel, odd side ~1.5 FWHM (5x5 at 3 px)."""
    half = max(1, int(0.75 * fwhm))
    y, x = np.mgrid[-half: half + 1, -half: half + 1]
    sig = fwhm / (2.0 * math.sqrt(2.0 * math.log(2.0)))
    k = np.exp(-0.5 * (x * x + y * y) / sig**2)
    return k / k.sum()


def _header_cards_hdu(header):
    """The ``LDAC_IMHEAD`` HDU holding ``header`` as one 'Field Header Card'."""
    from astropy.io import fits

    cards = [str(c).ljust(80)[:80] for c in header.cards] + ["END".ljust(80)]
    text = "".join(cards).encode("ascii", "replace")
    # a plain byte-string record: astropy's string columns would pad each card with NULs,
    # which PSFEx cannot parse (it crashes)
    rec = np.array([(text,)], dtype=[("Field Header Card", f"S{len(text)}")])
    hdu = fits.BinTableHDU(rec, name="LDAC_IMHEAD")
    hdu.header["TDIM1"] = f"(80, {len(cards)})"
    return hdu


def _write_ldac(path, table, image_header, primary_history, ext: int, sex_keys: dict | None = None):
    from astropy.io import fits

    image_header = image_header.copy()
    for k, v in (sex_keys or {}).items():
        image_header[k] = v  # PSFEx reads some SExtractor keys (SEXBKDEV...) from LDAC_IMHEAD

    prim = fits.PrimaryHDU()
    prim.header["DRE_EXT"] = (ext, "HDU index of the image in the tile")
    for line in primary_history:
        prim.header.add_history(line)
    objects = fits.BinTableHDU(table)
    objects.name = "LDAC_OBJECTS"
    fits.HDUList([prim, _header_cards_hdu(image_header), objects]).writeto(path)
    _pad_imhead_with_spaces(path)


def _pad_imhead_with_spaces(path) -> None:
    """Replace the NUL padding astropy leaves after ``END`` in LDAC_IMHEAD by spaces.

    astropy strips the trailing blanks of string cells and pads with NULs; PSFEx
    parses the cards as text and crashes on NULs.
    """
    from astropy.io import fits

    with fits.open(path) as h:
        info = h["LDAC_IMHEAD"].fileinfo()
        start = info["datLoc"]
        nbytes = h["LDAC_IMHEAD"].header["NAXIS1"] * h["LDAC_IMHEAD"].header["NAXIS2"]
    with open(path, "r+b") as f:
        f.seek(start)
        raw = f.read(nbytes)
        f.seek(start)
        f.write(raw.replace(b"\x00", b" "))


def _image_header(header):
    """Copy of a tile header keeping WCS and photometric keys (for check images)."""
    from astropy.io import fits

    out = fits.Header()
    for card in header.cards:
        if card.keyword in ("SIMPLE", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "EXTEND", "BZERO",
                            "BSCALE", "XTENSION", "PCOUNT", "GCOUNT", "EXTNAME", "EXTVER", "HISTORY",
                            "COMMENT", ""):
            continue
        out.append(card)
    return out


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


# --------------------------------------------------------------------------------------------
# the public entry point
# --------------------------------------------------------------------------------------------
def detect_tile(
    tile: str | os.PathLike,
    outdir: str | os.PathLike,
    *,
    stem: str | None = None,
    engine: str = "auto",
    gain: str | float = "counts",
    zero_point: float | None = None,
    detect_thresh: float = 1.5,
    detect_minarea: int = 5,
    filter_fwhm: float = 3.0,
    deblend_nthresh: int = 32,
    deblend_mincont: float = 0.005,
    back_size: int = 64,
    back_filtersize: int = 3,
    phot_aperture: float = 10.0,
    vignet_size: int = 35,
    seeing_fwhm: float | None = None,
    satur_level: float | None = None,
    weight_image: str | os.PathLike | None = None,
    weight_type: str = "MAP_WEIGHT",
    flag_image: str | os.PathLike | None = None,
    sextractor_args: dict | None = None,
    nthreads: int = 1,
    timeout: float = 600.0,
) -> dict:
    """Detect and measure the sources of one tile; write DRE's four products.

    Parameters
    ----------
    tile : path-like
        FITS image (one 2-D image HDU).
    outdir : path-like
        Folder for ``<stem>_{cat,nb,rms,seg}.fits`` (created if needed).
    stem : str, optional
        Product stem; the tile's file name without extension by default.
    engine : {"auto", "sextractor", "photutils"}
        ``auto`` uses SExtractor when :func:`find_sextractor` finds it.
    gain : {"counts", "cps"} or float
        Header ``GAIN``, header ``GAIN * EXPTIME``, or e- per image unit.
    zero_point : float, optional
        Magnitude zero point; by default the header's ``MAGZP`` (or ``MAGZPT``,
        ``MAGZERO``, ``ZEROPT``, ``ZP``, ``PHOTZP``), else 0.
    detect_thresh : float
        Detection (and analysis) threshold, in background sigmas.
    detect_minarea : int
        Minimum connected pixels above threshold.
    filter_fwhm : float
        FWHM of the Gaussian detection filter, px.
    deblend_nthresh, deblend_mincont : int, float
        Deblending levels and minimum contrast.
    back_size, back_filtersize : int
        Background mesh (px) and median-filter size (meshes).
    phot_aperture : float
        ``FLUX_APER`` aperture diameter, px.
    vignet_size : int
        Side of ``VIGNET`` cut-outs, px (odd).
    seeing_fwhm : float, optional
        Stellar FWHM in pixels for SExtractor's ``CLASS_STAR``; measured by a
        first pass when None.
    satur_level : float, optional
        Saturation level (image units); header ``SATURATE`` by default.
    weight_image, weight_type, flag_image : optional
        SExtractor ``-WEIGHT_IMAGE``/``-WEIGHT_TYPE``/``-FLAG_IMAGE``
        (SExtractor engine only).
    sextractor_args : dict, optional
        Extra ``{KEY: value}`` passed as ``-KEY value`` (SExtractor engine).
    nthreads : int
        SExtractor ``NTHREADS``.
    timeout : float
        Seconds before an external program is stopped.

    Returns
    -------
    dict
        ``{"cat", "nb", "rms", "seg"}`` paths plus ``"engine"``,
        ``"n_sources"`` and ``"seeing_fwhm"`` (px, or None).

    Raises
    ------
    astrotool.errors.InputError
        Unreadable tile, all-NaN or blank tile, no source detected, no gain.
    """
    from astrotool.errors import InputError

    tile = Path(tile)
    stem = stem or tile_stem(tile)
    if vignet_size % 2 == 0:
        raise ValueError(f"vignet_size must be odd, got {vignet_size}")
    data, header, ext = read_image(tile)
    g = resolve_gain(header, gain, tile)
    zp = resolve_zero_point(header, zero_point)
    if satur_level is None:
        satur_level = float(header.get("SATURATE", 1e20))  # SExtractor rejects 1e30

    engine = engine.lower()
    if engine not in ("auto", "sextractor", "photutils"):
        raise ValueError(f"engine must be auto, sextractor or photutils, got {engine!r}")
    binary = find_sextractor() if engine in ("auto", "sextractor") else None
    if engine == "sextractor" and binary is None:
        from astrotool.errors import AstroError

        raise AstroError("engine 'sextractor': neither 'source-extractor' nor 'sex' is on PATH "
                         "(install source-extractor, or use engine 'photutils' or 'auto')")
    use = "sextractor" if binary else "photutils"

    paths = output_paths(outdir, stem)
    Path(outdir).mkdir(parents=True, exist_ok=True)
    common = dict(gain=g, zp=zp, detect_thresh=detect_thresh, detect_minarea=detect_minarea,
                  filter_fwhm=filter_fwhm, deblend_nthresh=deblend_nthresh,
                  deblend_mincont=deblend_mincont, back_size=back_size,
                  back_filtersize=back_filtersize, phot_aperture=phot_aperture,
                  vignet_size=vignet_size, satur_level=satur_level)
    with ExitStack() as stack:
        # the catalogue is entered first so that it is renamed last: it marks the stage done
        tmp = {k: stack.enter_context(_atomic(paths[k])) for k in ("cat", "nb", "rms", "seg")}
        if use == "sextractor":
            n, seeing = _run_sextractor(
                binary, tile, data, header, ext, tmp, seeing_fwhm=seeing_fwhm,
                weight_image=weight_image, weight_type=weight_type, flag_image=flag_image,
                extra=sextractor_args or {}, nthreads=nthreads, timeout=timeout, **common)
        else:
            n = _run_photutils(tile, data, header, ext, tmp, **common)
            seeing = None
        if n == 0:
            raise InputError(tile, f"no sources detected above {detect_thresh} sigma "
                                   f"(min area {detect_minarea} px)")
    return {**{k: str(v) for k, v in paths.items()}, "engine": use, "n_sources": int(n),
            "seeing_fwhm": seeing}


def _atomic(path):
    from astrotool.workspace import atomic_path

    return atomic_path(path)


# --------------------------------------------------------------------------------------------
# SExtractor engine
# --------------------------------------------------------------------------------------------
def _sex_config(folder: Path, *, params: list[str], kernel: np.ndarray, nnw: Path | None, cfg: dict) -> Path:
    (folder / "dre.param").write_text("\n".join(params) + "\n")
    rows = "\n".join(" ".join(f"{v:.6f}" for v in row) for row in kernel)
    (folder / "dre.conv").write_text(f"CONV NORM\n# Gaussian, FWHM {cfg['filter_fwhm']} px\n{rows}\n")
    lines = {
        "CATALOG_TYPE": "FITS_LDAC",
        "PARAMETERS_NAME": str(folder / "dre.param"),
        "DETECT_TYPE": "CCD",
        "DETECT_MINAREA": cfg["detect_minarea"],
        "DETECT_THRESH": cfg["detect_thresh"],
        "ANALYSIS_THRESH": cfg["detect_thresh"],
        "FILTER": "Y",
        "FILTER_NAME": str(folder / "dre.conv"),
        "DEBLEND_NTHRESH": cfg["deblend_nthresh"],
        "DEBLEND_MINCONT": cfg["deblend_mincont"],
        "CLEAN": "Y",
        "CLEAN_PARAM": 1.0,
        "MASK_TYPE": "CORRECT",
        "PHOT_APERTURES": cfg["phot_aperture"],
        "PHOT_AUTOPARAMS": "2.5,3.5",
        "SATUR_LEVEL": min(float(cfg["satur_level"]), 1e20),
        "SATUR_KEY": "DRE_NOKEY",
        "MAG_ZEROPOINT": cfg["zp"],
        "GAIN": cfg["gain"],
        "GAIN_KEY": "DRE_NOKEY",
        "PIXEL_SCALE": 1.0,
        "SEEING_FWHM": cfg.get("seeing", 3.0),
        "STARNNW_NAME": str(nnw) if nnw else str(folder / "none.nnw"),
        "BACK_TYPE": "AUTO",
        "BACK_SIZE": cfg["back_size"],
        "BACK_FILTERSIZE": cfg["back_filtersize"],
        "BACKPHOTO_TYPE": "GLOBAL",
        "CHECKIMAGE_TYPE": "NONE",
        "MEMORY_OBJSTACK": 30000,
        "MEMORY_PIXSTACK": 3000000,
        "MEMORY_BUFSIZE": 4096,
        "VERBOSE_TYPE": "QUIET",
        "WRITE_XML": "N",
        "NTHREADS": cfg["nthreads"],
    }
    path = folder / "dre.sex"
    path.write_text("".join(f"{k:<18}{v}\n" for k, v in lines.items()))
    return path


def _run(args, cwd, timeout, what):
    try:
        proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{what} did not finish within {timeout:.0f} s") from None
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-5:]
        raise RuntimeError(f"{what} failed (exit {proc.returncode}): " + " | ".join(tail))
    return proc


def _run_sextractor(binary, tile, data, header, ext, tmp, *, seeing_fwhm, weight_image, weight_type,
                    flag_image, extra, nthreads, timeout, gain, zp, detect_thresh, detect_minarea,
                    filter_fwhm, deblend_nthresh, deblend_mincont, back_size, back_filtersize,
                    phot_aperture, vignet_size, satur_level):
    from astropy.io import fits
    from astropy.table import Table

    from astrotool.errors import InputError

    nnw = find_nnw(binary)
    cfg = dict(gain=gain, zp=zp, detect_thresh=detect_thresh, detect_minarea=detect_minarea,
               filter_fwhm=filter_fwhm, deblend_nthresh=deblend_nthresh,
               deblend_mincont=deblend_mincont, back_size=back_size,
               back_filtersize=back_filtersize, phot_aperture=phot_aperture,
               satur_level=satur_level, nthreads=nthreads)
    kernel = _gauss_kernel(filter_fwhm)
    with tempfile.TemporaryDirectory(prefix=".sex-", dir=Path(tmp["cat"]).parent) as td:
        td = Path(td)
        # the image goes in under a plain name: SExtractor splits "a,b" into two images
        image = td / "tile.fits"
        bad = ~np.isfinite(data)
        if bad.any() and weight_image is None:
            # NaN pixels: zero them and give them zero weight
            clean = np.where(bad, 0.0, data).astype(np.float32)
            fits.PrimaryHDU(clean, header=_image_header(header)).writeto(image)
            weight_image = td / "weight.fits"
            fits.PrimaryHDU((~bad).astype(np.float32)).writeto(weight_image)
            weight_type = "MAP_WEIGHT"
        else:
            os.symlink(os.path.abspath(tile), image)
        wargs = []
        if weight_image is not None:
            wimg = Path(weight_image)
            if wimg.parent != td:
                wimg = td / "weight_in.fits"
                os.symlink(os.path.abspath(weight_image), wimg)
            wargs += ["-WEIGHT_TYPE", weight_type, "-WEIGHT_IMAGE", str(wimg)]
        if flag_image is not None:
            fimg = td / "flag.fits"
            os.symlink(os.path.abspath(flag_image), fimg)
            wargs += ["-FLAG_IMAGE", str(fimg)]
        xargs = []
        for k, v in extra.items():
            xargs += [f"-{str(k).lstrip('-').upper()}", str(v)]

        # pass 1 (only without a seeing): catalogue of sizes to find the stellar locus
        if seeing_fwhm is None:
            p1 = ["NUMBER", "FLUX_RADIUS", "FWHM_IMAGE", "FLUX_AUTO", "FLUXERR_AUTO", "FLAGS", "ELONGATION"]
            conf = _sex_config(td, params=p1, kernel=kernel, nnw=None, cfg=cfg)
            _run([binary, str(image), "-c", str(conf), "-CATALOG_NAME", str(td / "pass1.cat")]
                 + wargs + xargs, td, timeout, "source-extractor (pass 1)")
            with fits.open(td / "pass1.cat") as h:
                t1 = Table(h["LDAC_OBJECTS"].data)
            if len(t1) == 0:
                raise InputError(tile, f"no sources detected above {detect_thresh} sigma "
                                       f"(min area {detect_minarea} px)")
            snr1 = np.asarray(t1["FLUX_AUTO"]) / np.maximum(np.asarray(t1["FLUXERR_AUTO"]), 1e-30)
            r_star = stellar_locus(t1["FLUX_RADIUS"], snr1, t1["FLAGS"], t1["ELONGATION"])
            if r_star is not None:
                sel = np.abs(np.log(np.asarray(t1["FLUX_RADIUS"]) / r_star)) < math.log1p(0.05)
                sel &= snr1 >= 20
                seeing_fwhm = float(np.median(np.asarray(t1["FWHM_IMAGE"])[sel]))
            else:
                seeing_fwhm = float(filter_fwhm)
        cfg["seeing"] = seeing_fwhm

        params = [c for c in CATALOG_COLUMNS if nnw is not None or c != "CLASS_STAR"]
        params = [("FLUX_APER(1)" if c == "FLUX_APER" else "FLUXERR_APER(1)" if c == "FLUXERR_APER" else c)
                  for c in params] + [f"VIGNET({vignet_size},{vignet_size})"]
        conf = _sex_config(td, params=params, kernel=kernel, nnw=nnw, cfg=cfg)
        names = {k: td / f"out_{k}.fits" for k in ("cat", "nb", "rms", "seg")}
        # DRE's outputs are forced last, after any user arguments
        args = [binary, str(image), "-c", str(conf)] + wargs + xargs + [
            "-CATALOG_NAME", str(names["cat"]), "-CATALOG_TYPE", "FITS_LDAC",
            "-CHECKIMAGE_TYPE", "-BACKGROUND,BACKGROUND_RMS,SEGMENTATION",
            "-CHECKIMAGE_NAME", f"{names['nb']},{names['rms']},{names['seg']}",
            "-PARAMETERS_NAME", str(td / "dre.param")]
        _run(args, td, timeout, "source-extractor")

        hist = _history("detect (source-extractor)") + [
            f"{Path(binary).name} on {tile.name}: gain {gain:g} e-/unit, thresh {detect_thresh}, "
            f"minarea {detect_minarea}, seeing {seeing_fwhm:.3f} px",
        ]
        with fits.open(names["cat"], mode="update") as h:
            h[0].header["DRE_EXT"] = (ext, "HDU index of the image in the tile")
            for line in hist:
                h[0].header.add_history(line)
            n = len(h["LDAC_OBJECTS"].data) if h["LDAC_OBJECTS"].data is not None else 0
        if nnw is None and n:
            _add_size_stellarity(names["cat"])
        for k in ("nb", "rms", "seg"):
            with fits.open(names[k], mode="update") as h:
                for line in hist:
                    h[0].header.add_history(line)
        for k in names:
            os.replace(names[k], tmp[k])
    return n, seeing_fwhm


def _add_size_stellarity(cat_path):
    from astropy.io import fits
    from astropy.table import Table

    cat_path = Path(cat_path)
    out = cat_path.with_name(cat_path.name + ".cs.fits")
    with fits.open(cat_path) as h:
        # untouched HDUs are written back as read: copies would NUL-pad LDAC_IMHEAD
        hdus = list(h)
        i = [k for k, hdu in enumerate(hdus) if hdu.name == "LDAC_OBJECTS"][0]
        t = Table(hdus[i].data)
        snr = np.asarray(t["FLUX_AUTO"]) / np.maximum(np.asarray(t["FLUXERR_AUTO"]), 1e-30)
        r_star = stellar_locus(t["FLUX_RADIUS"], snr, t["FLAGS"], t["ELONGATION"])
        t["CLASS_STAR"] = size_stellarity(t["FLUX_RADIUS"], snr, r_star)
        new = fits.BinTableHDU(t)
        new.name = "LDAC_OBJECTS"
        hdus[i] = new
        fits.HDUList(hdus).writeto(out, overwrite=True)
    os.replace(out, cat_path)


# --------------------------------------------------------------------------------------------
# photutils engine
# --------------------------------------------------------------------------------------------
def _run_photutils(tile, data, header, ext, tmp, *, gain, zp, detect_thresh, detect_minarea,
                   filter_fwhm, deblend_nthresh, deblend_mincont, back_size, back_filtersize,
                   phot_aperture, vignet_size, satur_level):
    import warnings

    from astropy.io import fits
    from astropy.table import Table
    from photutils.background import Background2D, SExtractorBackground
    from photutils.segmentation import SourceCatalog, deblend_sources, detect_sources
    from photutils.utils import calc_total_error
    from scipy import ndimage

    bad = ~np.isfinite(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bkg = Background2D(data, box_size=back_size, filter_size=back_filtersize,
                           coverage_mask=bad if bad.any() else None,
                           bkg_estimator=SExtractorBackground())
    background = np.asarray(bkg.background, dtype=np.float64)
    rms = np.asarray(bkg.background_rms, dtype=np.float64)
    nb = data - background
    nb_filled = np.where(bad, 0.0, nb)
    conv = ndimage.convolve(nb_filled, _gauss_kernel(filter_fwhm), mode="constant", cval=0.0)
    threshold = detect_thresh * np.where(bad, np.inf, rms)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        segm0 = detect_sources(conv, threshold, mask=bad if bad.any() else None,
                               **_kw(detect_sources, n_pixels=("npixels", detect_minarea)))
    nb_out = np.where(bad, np.nan, nb).astype(np.float32)
    if segm0 is None:
        n = 0
        seg = np.zeros(data.shape, dtype=np.int32)
        table = Table()
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
                                       **_kw(deblend_sources, n_pixels=("npixels", detect_minarea),
                                             n_levels=("nlevels", deblend_nthresh),
                                             contrast=("contrast", deblend_mincont)))
        seg = np.asarray(segm.data, dtype=np.int32)
        err = calc_total_error(nb_filled, rms, gain)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cat = SourceCatalog(nb_filled, segm, convolved_data=conv, error=err,
                                mask=bad if bad.any() else None, kron_params=(2.5, 1.4, 0.0))
            table = _photutils_table(cat, data, nb, seg, np.asarray(segm0.data), background, header,
                                     zp=zp, phot_aperture=phot_aperture, vignet_size=vignet_size,
                                     satur_level=satur_level)
        n = len(table)

    hist = _history("detect (photutils)") + [
        f"photutils on {tile.name}: gain {gain:g} e-/unit, thresh {detect_thresh}, minarea "
        f"{detect_minarea}, box {back_size}, filter {back_filtersize}, kernel FWHM {filter_fwhm}",
    ]
    ih = _image_header(header)
    for k, arr in (("nb", nb_out), ("rms", np.where(bad, np.nan, rms).astype(np.float32)), ("seg", seg)):
        h = ih.copy()
        for line in hist:
            h.add_history(line)
        fits.PrimaryHDU(arr, header=h).writeto(tmp[k])
    if n:
        good = ~bad
        sex_keys = {
            "SEXVERS": ("astrotool-dre photutils", "Extraction software"),
            "SEXBKGND": (float(np.median(background[good])), "Median background level"),
            "SEXBKDEV": (float(np.median(rms[good])), "Median background RMS"),
            "SEXTHLD": (float(detect_thresh * np.median(rms[good])), "Extraction threshold"),
            "SEXNFIN": (int(n), "Number of sources"),
            "SEXGAIN": (float(gain), "Gain used (e-/unit)"),
            "SEXPXSCL": (1.0, "Pixel scale used for measurements"),
            "SEXMINAR": (int(detect_minarea), "Minimum detection area (px)"),
            "SEXAPED1": (float(phot_aperture), "Aperture #1 diameter (px)"),
            "SEXSATLV": (float(min(satur_level, 1e20)), "Saturation level"),
            "SEXMGZPT": (float(zp), "Zero-point used for magnitudes"),
            "SEXBKGSX": (int(back_size), "Background mesh width (px)"),
            "SEXBKGSY": (int(back_size), "Background mesh height (px)"),
            "SEXBKGFX": (int(back_filtersize), "Background filter width"),
            "SEXBKGFY": (int(back_filtersize), "Background filter height"),
        }
        _write_ldac(tmp["cat"], table, header, hist, ext, sex_keys)
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
    theta = arr("orientation")
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

    ra = dec = np.full(len(labels), np.nan)
    try:
        from astropy.wcs import WCS

        w = WCS(header)
        if w.has_celestial:
            ra, dec = w.celestial.all_pix2world(x0, y0, 0)
    except Exception:
        pass
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
    t["KRON_RADIUS"] = arr("kron_radius").astype(f32)
    t["A_IMAGE"] = a.astype(f32)
    t["B_IMAGE"] = b.astype(f32)
    t["THETA_IMAGE"] = theta.astype(f32)
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
