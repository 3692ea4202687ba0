"""A tile's image and header: reading it, its gain and zero point, its products' names.

A tile is a FITS file holding one 2-D image (in any HDU, tile-compressed or not; of several, the one
with ``EXTNAME = 'SCI'``; an extension's header with ``INHERIT = T`` also has the primary header's keywords it
lacks), named
``*.fits``, ``*.fits.gz``, ``*.fits.fz`` or ``*.fit`` (:data:`TILE_SUFFIXES`); its
products are named by its stem, the name without that suffix. Its header gives the
gain (``GAIN``, e- per ADU; times ``EXPTIME`` for images in ADU/s) and the
magnitude zero point (``MAGZP``, ``MAGZPT``, ``MAGZERO``, ``ZEROPT``, ``ZP``,
``PHOTZP`` or ``MAG_ZP``, else :data:`DEFAULT_ZERO_POINT`).

Gain (``gain``): ``"counts"`` uses the header ``GAIN`` (image in ADU),
``"cps"`` uses ``GAIN * EXPTIME`` (image in ADU/s), a number is used as is
(e-/image unit).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from pathlib import Path

import numpy as np

__docformat__ = "numpy"

__all__ = [
    "DEFAULT_ZERO_POINT",
    "TILE_SUFFIXES",
    "tile_stem",
    "tile_files",
    "check_tile",
    "image_shape",
    "output_paths",
    "read_image",
    "image_header",
    "inherited_header",
    "header_number",
    "resolve_gain",
    "resolve_zero_point",
    "celestial_wcs",
    "sky_coordinates",
    "weight_path",
    "check_weight",
    "read_weight",
    "NODATA_WEIGHT",
    "is_own_weight",
    "check_own_weight",
]

DEFAULT_ZERO_POINT = 30.0  # [mag], when neither the configuration nor the header gives one
"""Zero point when neither the configuration nor the header gives one [mag]."""

_ZP_KEYS = ("MAGZP", "MAGZPT", "MAGZERO", "ZEROPT", "ZP", "PHOTZP", "MAG_ZP")

TILE_SUFFIXES = (".fits", ".fits.gz", ".fits.fz", ".fit")
"""The names of tiles found in a folder (``dre/tiles``); compressed ones are read as they are."""


def tile_stem(path: str | os.PathLike) -> str:
    """File name of a tile without its FITS extension (``.fits``, ``.fit``, ``.fts``, each possibly
    followed by ``.gz``, ``.fz`` or ``.bz2``).

    Bytes of a name that are not UTF-8 are written ``\\xNN``
    (:func:`astrotool.names.printable`): outputs are named, and name their
    tile, in UTF-8.
    """
    from astrotool.names import printable

    name = printable(Path(path).name)
    for ext in (".gz", ".fz", ".bz2"):
        if name.lower().endswith(ext):
            name = name[: -len(ext)]
    for ext in (".fits", ".fit", ".fts"):
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return Path(name).stem


def tile_files(folder: str | os.PathLike, weight_image: str | None = None) -> list[Path]:
    """The tiles in ``folder``: its files named ``*`` + one of :data:`TILE_SUFFIXES` (hidden ones left
    out), sorted by name; with ``weight_image`` (``dre.detect.weight_image``), the tiles' weight maps
    (:func:`weight_path`) left out too, though never a tile for being its own weight map (refused:
    :func:`check_own_weight`)."""
    folder = Path(folder)
    found = sorted(p for p in folder.iterdir() if p.name.lower().endswith(TILE_SUFFIXES)
                   and not p.name.startswith(".") and not p.is_dir()) if folder.is_dir() else []
    if weight_image:   # a tile that is its own weight map stays a tile (refused: check_own_weight)
        weights = {os.path.normpath(weight_path(p, weight_image)) for p in found
                   if not is_own_weight(p, weight_image)}
        found = [p for p in found if os.path.normpath(p) not in weights]
    return found


def is_own_weight(tile: str | os.PathLike, pattern: str) -> bool:
    """Whether ``pattern`` (``dre.detect.weight_image``) makes ``tile`` its own weight map
    (:func:`weight_path`): the same path (``{stem}.fits``, ``./{stem}.fits``) or the same file (a link)."""
    tile, weight = Path(tile), weight_path(tile, pattern)
    if os.path.normpath(os.path.abspath(weight)) == os.path.normpath(os.path.abspath(tile)):
        return True
    try:
        return os.path.samefile(weight, tile)
    except OSError:   # either missing
        return False


def check_own_weight(tile: str | os.PathLike, pattern: str | None, weight_type: str = "MAP_WEIGHT") -> None:
    """Refuse (InputError, exit 2) a ``tile`` that ``pattern`` (``dre.detect.weight_image``) makes its own
    weight map (:func:`is_own_weight`) with the tile's image as the weight image; a file of several images
    whose weight image for ``weight_type`` is another (DES's ``SCI``, ``MSK``, ``WGT``: :func:`_open_image`)
    is its own weight file."""
    from astrotool.errors import InputError

    if pattern and is_own_weight(tile, pattern) and check_tile(tile) == check_tile(tile, weight_type):
        raise InputError(tile, f"is its own weight map: dre.detect.weight_image = {pattern!r} names the tile "
                               "itself; name the tiles' weight maps (such as 'weights/{stem}_wht.fits'), "
                               "or unset the key")


def output_paths(outdir: str | os.PathLike, stem: str) -> dict[str, Path]:
    """DRE's names of the detection products of tile ``stem`` in ``outdir``."""
    outdir = Path(outdir)
    return {k: outdir / f"{stem}_{k}.fits" for k in ("cat", "nb", "rms", "seg")}


_WEIGHT_EXTNAMES = {"MAP_WEIGHT": ("WGT", "WEIGHT", "WHT", "IVAR", "INVVAR"), "MAP_VAR": ("VAR", "VARIANCE"),
                    "MAP_RMS": ("RMS", "ERR", "SIGMA", "NOISE")}
"""The ``EXTNAME`` of a weight map's image, of each ``dre.detect.weight_type``, in a file of several images."""


def _open_image(hdul, path: Path, weight_type: str | None = None) -> int:
    """HDU index of the single 2-D image of an open FITS file, or of the one named ``SCI`` among several
    (headers only); InputError otherwise. With ``weight_type`` (the file is a weight map of that
    ``dre.detect.weight_type``), the one among several named as :data:`_WEIGHT_EXTNAMES` says (``WGT``,
    ``WEIGHT``, ``WHT``... for ``MAP_WEIGHT``), never the ``SCI`` image beside it."""
    from astrotool.errors import InputError

    found = [i for i, hdu in enumerate(hdul) if hdu.is_image and hdu.header.get("NAXIS", 0) == 2]
    if not found:
        raise InputError(path, f"no 2-D image: {', '.join(_hdu_contents(hdul))}: give a 2-D image")
    names = {i: str(hdul[i].header.get("EXTNAME", "")).strip().upper() for i in found}
    if weight_type is not None and len(found) > 1:   # a weight map among a SCI, MSK, WGT file's images
        kind = str(weight_type).upper()
        wanted = _WEIGHT_EXTNAMES.get(kind, ())
        hits = [i for i in found if names[i] in wanted]
        if len(hits) == 1:
            return hits[0]
        listed = ", ".join(f"HDU {i} {names[i] or '(no EXTNAME)'}" for i in found)
        which = (f"none named {' or '.join(wanted)}" if not hits else f"{len(hits)} named so") if wanted \
            else f"none is chosen for weight_type {kind}"
        raise InputError(path, f"weight map ({kind}) with {len(found)} images ({listed}); {which}: name the "
                               "weight map's own image so, or give it as a file of its own")
    sci = [i for i in found if names[i] == "SCI"]
    if len(found) > 1 and len(sci) == 1:   # a science image beside its weight, context... maps
        return sci[0]
    if len(sci) > 1:   # HST's SCI,1 and SCI,2: one image per chip
        raise InputError(path, f"{len(sci)} images named SCI (HDUs {sci}); split it into one file per image")
    if len(found) > 1:
        raise InputError(path, f"{len(found)} image extensions (HDUs {found}) and none named SCI; split it into "
                               "one file per image")
    return found[0]


def _hdu_contents(hdul) -> list[str]:
    """What each HDU of an open FITS file holds, in words: ``HDU 0 is 3-D (3, 512, 512)`` (numpy order),
    ``HDU 1 is a table``, ``HDU 0 is empty`` (headers only)."""
    out = []
    for i, hdu in enumerate(hdul):
        naxis = int(hdu.header.get("NAXIS", 0)) if hdu.is_image else 0
        shape = tuple(int(hdu.header.get(f"NAXIS{k}", 0)) for k in range(naxis, 0, -1))
        out.append(f"HDU {i} is {'a table' if not hdu.is_image else f'{naxis}-D {shape}' if naxis else 'empty'}")
    return out


def _fits_problem(exc: Exception, caught) -> str:
    """The words for a FITS file astropy could not read: truncated (astropy's own warning, which the
    caller silenced) or the exception."""
    for w in caught:
        if "truncated" in str(w.message):
            return f"truncated ({w.message})"
    if "SIMPLE" in str(exc):   # astropy's words suggest ignore_missing_simple=True
        return "not a FITS file (it does not begin with a SIMPLE card)"
    return f"not a readable FITS file ({type(exc).__name__}: {exc})"


@contextlib.contextmanager
def _opened(path: Path, **kwargs):
    """``fits.open(path)`` for reading (no memory map): missing, unreadable or truncated files (astropy's own
    "File may have been truncated" warning silenced, as the message says it) raise InputError naming the file,
    also when the ``with`` body reads what is not there."""
    import warnings

    from astropy.io import fits

    from astrotool.errors import InputError

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with fits.open(path, memmap=False, **kwargs) as hdul:
                yield hdul
        except InputError:
            raise
        except Exception as exc:  # astropy raises OSError, ValueError, TypeError... on junk
            raise InputError(path, _fits_problem(exc, caught)) from None


def check_tile(path: str | os.PathLike, weight_type: str | None = None) -> int:
    """Check from its headers alone that ``path`` is a FITS file with one 2-D image (cheap: no pixels read);
    with ``weight_type``, a weight map of that type (:func:`_open_image`).

    Returns
    -------
    int
        The HDU index of the image.

    Raises
    ------
    astrotool.errors.InputError
        Missing, unreadable, no or several 2-D images.
    """
    with _opened(path, lazy_load_hdus=False) as hdul:
        return _open_image(hdul, Path(path), weight_type)


def image_shape(path: str | os.PathLike, weight_type: str | None = None) -> tuple[int, int]:
    """The shape (ny, nx) [px] of the single 2-D image of a FITS file, from its header (:func:`check_tile`'s
    checks and errors; ``weight_type``: of a weight map)."""
    with _opened(path, lazy_load_hdus=False) as hdul:
        h = hdul[_open_image(hdul, Path(path), weight_type)].header
        return int(h["NAXIS2"]), int(h["NAXIS1"])


def read_image(path: str | os.PathLike, *, check_content: bool = True, weight_type: str | None = None):
    """Read the single 2-D image of a FITS file, with checks.

    Parameters
    ----------
    path : path-like
        FITS file (plain, gzip-compressed or tile-compressed).
    check_content : bool
        Reject images that are all NaN or constant.
    weight_type : str, optional
        The file is a weight map of this ``dre.detect.weight_type``: of several images, its own is read
        (:func:`_open_image`), not the ``SCI`` one.

    Returns
    -------
    data : numpy.ndarray
        float64 image.
    header : astropy.io.fits.Header
        Its HDU's header; with ``INHERIT = T`` in an extension's header, the primary header's keywords it
        lacks added (the FITS convention: :func:`inherited_header`).
    ext : int
        HDU index that holds it.

    Raises
    ------
    astrotool.errors.InputError
        Missing, unreadable, truncated, no or several 2-D images, all non-finite, blank.
    """
    from astrotool.errors import InputError

    path = Path(path)
    with _opened(path) as hdul:
        ext = _open_image(hdul, path, weight_type)
        data = np.asarray(hdul[ext].data, dtype=np.float64)
        header = inherited_header(hdul[0].header, hdul[ext].header) if ext else hdul[ext].header.copy()
    if check_content:
        finite = np.isfinite(data)
        if not finite.any():
            raise InputError(path, "every pixel is NaN or infinite; nothing to detect")
        vals = data[finite]
        if vals.min() == vals.max():
            raise InputError(path, f"blank image: every finite pixel equals {vals.min():g}; no sources")
    return data, header, ext


_NOT_INHERITED = {"SIMPLE", "BITPIX", "NAXIS", "EXTEND", "BZERO", "BSCALE", "BLANK", "XTENSION", "PCOUNT",
                  "GCOUNT", "EXTNAME", "EXTVER", "EXTLEVEL", "INHERIT", "CHECKSUM", "DATASUM", "HISTORY",
                  "COMMENT", ""}


def inherited_header(primary, header):
    """An extension's ``header`` as the FITS ``INHERIT`` convention reads it: with ``INHERIT = T``, a copy with
    the keywords of the ``primary`` header it lacks appended (``GAIN``, ``EXPTIME``, ``MAGZP``, ``SATURATE``
    of HST and DES files; structural keys, ``NAXISn``, ``COMMENT`` and ``HISTORY`` left out); else a copy.
    The extension's own keywords win."""
    out = header.copy()
    if out.get("INHERIT") is not True:
        return out
    for card in primary.cards:
        key = card.keyword
        if key in _NOT_INHERITED or key.startswith("NAXIS") or key in out:
            continue
        out.append(card)
    return out


def image_header(header):
    """Copy of a tile header keeping WCS and photometric keys (for check images, written as floats: the
    integer image's ``BZERO``, ``BSCALE`` and ``BLANK`` are left out)."""
    from astropy.io import fits

    out = fits.Header()
    for card in header.cards:
        if card.keyword in ("SIMPLE", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "EXTEND", "BZERO",
                            "BSCALE", "BLANK", "XTENSION", "PCOUNT", "GCOUNT", "EXTNAME", "EXTVER", "HISTORY",
                            "COMMENT", ""):
            continue
        out.append(card)
    return out


_GIVE_GAIN = ("give the gain as a number [e-/image unit]: --gain, or the settings dre.detect.gain and "
              "dre.fit.gain (--set dre.detect.gain=2.0)")


_NOTED: set[tuple[str, str]] = set()   # (tile, what) already logged by _note_once


def _note_once(path, what: str, level: int, msg: str, *args) -> None:
    """Log ``msg % args`` on the ``astro.dre`` logger once per tile (``path``) and ``what`` in this process:
    the detect and fit stages of one tile (``astro dre run``) read the same header and would say it twice."""
    key = (os.path.abspath(os.fspath(path)), what)
    if key in _NOTED:
        return
    _NOTED.add(key)
    logging.getLogger("astro.dre").log(level, msg, *args)


def header_number(header, key: str, path, default: float | None = None, *, positive: bool = False,
                  advice: str = "") -> float | None:
    """The header's ``key`` as a finite number (``positive``: above 0), or ``default`` when it is absent.

    Raises
    ------
    astrotool.errors.InputError
        The key is not such a number (a string, a logical, NaN); naming the tile ``path``, the key and its
        value, then ``advice`` (what to do instead).
    """
    from astrotool.errors import InputError

    value = header.get(key)
    if value is None:
        return default
    try:
        number = float("nan") if isinstance(value, bool) else float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not (np.isfinite(number) and (number > 0 or not positive)):
        raise InputError(path, f"header {key} {value!r} is not a {'positive ' if positive else ''}number{advice}")
    return number


def _positive_key(header, key: str, path, mode: str) -> float:
    """The header's ``key`` as a positive number, which gain ``mode`` needs.

    Raises
    ------
    astrotool.errors.InputError
        The key is missing, not a number, or not above 0; naming the tile ``path`` and the key.
    """
    from astrotool.errors import InputError

    number = header_number(header, key, path, positive=True, advice=f" (gain={mode!r}); {_GIVE_GAIN}")
    if number is None:
        raise InputError(path, f"no {key} keyword in the header (gain={mode!r}); {_GIVE_GAIN}")
    return number


def resolve_gain(header, gain, path) -> float:
    """Effective gain [e- per image unit].

    Parameters
    ----------
    header : astropy.io.fits.Header
        The tile's header.
    gain : str or float
        ``"counts"`` (header ``GAIN`` [e-/ADU]), ``"cps"`` (``GAIN * EXPTIME`` [e-/(ADU/s)]) or a number
        [e-/image unit], used as is.
    path : path-like
        The tile, named in errors and in the note that a keyword other than ``GAIN`` gave the gain (the
        first whose name contains ``GAIN``, such as ``CCDGAIN``; logged once per tile).

    Raises
    ------
    astrotool.errors.InputError
        No gain keyword, or ``GAIN`` (``EXPTIME`` for ``"cps"``) not a positive number; naming the tile
        and the key.
    ValueError
        ``gain`` is none of these.
    """
    try:
        return float(gain)
    except (TypeError, ValueError):
        pass
    mode = str(gain).lower()
    if mode not in ("counts", "cps"):
        raise ValueError(f"gain must be 'counts', 'cps' or a number, got {gain!r}")
    key = "GAIN"
    if key not in header:
        keys = [k for k in header.keys() if "GAIN" in k]
        key = keys[0] if keys else key
    g = _positive_key(header, key, path, mode)
    if key != "GAIN":
        from astrotool.names import printable

        _note_once(path, "gain_key", logging.WARNING,
                   "%s: no GAIN keyword in the header; the gain is its %s = %g, which may be the wrong one "
                   "(%s)", printable(str(path)), key, g, _GIVE_GAIN)
    if mode == "cps":
        g *= _positive_key(header, "EXPTIME", path, mode)
    elif is_rate_unit(header.get("BUNIT")):
        from astrotool.names import printable

        bunit = str(header.get("BUNIT"))
        if re.match(r"\s*(e-?|electrons?)\s*/", bunit, re.IGNORECASE):   # e-/s: its gain is the exposure time
            advice = (f"its gain is the exposure time, not GAIN = {g:g}: give it as a number (--gain "
                      f"{header.get('EXPTIME', 'EXPTIME')})")
        else:
            advice = "the noise model is EXPTIME times too large: give --gain cps (GAIN x EXPTIME)"
        _note_once(path, "gain_rate", logging.WARNING, "%s: BUNIT %r is a rate, but gain 'counts' reads the pixels "
                   "as counts; %s", printable(str(path)), bunit, advice)
    return g


_RATE = re.compile(r"(/\s*s(ec(ond)?)?\b|\bs(ec)?\^?-1\b|\bs\*\*-1\b|^\s*cps\s*$)", re.IGNORECASE)


def is_rate_unit(bunit) -> bool:
    """Whether a ``BUNIT`` is a count rate (``ADU/s``, ``electrons/sec``, ``e-/s/px``, ``ct s-1``, ``CPS``)."""
    return isinstance(bunit, str) and bool(_RATE.search(bunit))


def resolve_zero_point(header, zero_point, path=None, key: str = "zero_point") -> float:
    """Magnitude zero point [mag]: the configured one, else the header's MAGZP/ZP..., else 30.

    With ``path`` (the tile), falling back to :data:`DEFAULT_ZERO_POINT` logs a warning naming the
    tile, the zero point used and ``key`` (the setting, or settings, that give one), once per tile in
    this process: ``astro dre run`` warns at detection only (which names both stages' keys).
    """
    if zero_point is not None:
        return float(zero_point)
    unusable = []   # IRAF's 'INDEF', a logical, NaN: passed over, and named in the warning
    for k in _ZP_KEYS:
        if k in header:
            value = header[k]
            try:
                number = float("nan") if isinstance(value, bool) else float(value)
            except (TypeError, ValueError):
                number = float("nan")
            if np.isfinite(number):
                return number
            unusable.append(f"{k} {value!r}")
    if path is not None:
        from astrotool.names import printable

        why = (f"header {', '.join(unusable)} not a number" if unusable
               else f"no zero-point keyword ({', '.join(_ZP_KEYS)}) in the header")
        _note_once(path, "zero_point", logging.WARNING, "%s: %s; magnitudes use ZP = %g (set %s)",
                   printable(str(path)), why, DEFAULT_ZERO_POINT, key)
    return DEFAULT_ZERO_POINT


def sky_coordinates(header, x, y) -> tuple[np.ndarray, np.ndarray]:
    """Sky coordinates of pixel positions, from the header's full celestial WCS (:func:`celestial_wcs`;
    SIP distortion included: astropy's ``all_pix2world``). Both detection engines use it.

    Parameters
    ----------
    header : astropy.io.fits.Header
        The tile's header.
    x, y : array-like
        Pixel positions [px], 1-based (FITS' and SExtractor's ``X_IMAGE``: the first pixel's centre is 1).

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        Right ascension and declination [deg], float64, as SExtractor's ``ALPHA_J2000``, ``DELTA_J2000``:
        ICRS or FK5 J2000 as the header says, any other frame (FK4 B1950, galactic, ecliptic axes, in either
        order) transformed to FK5 J2000; NaN when the header has no celestial WCS.
    """
    from astropy.coordinates import FK5

    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    wcs = celestial_wcs(header)
    if wcs is None or x.size == 0:
        return np.full(x.shape, np.nan), np.full(x.shape, np.nan)
    sky = wcs.pixel_to_world(x - 1.0, y - 1.0)   # astropy's 0-based pixels; SIP included
    frame = sky.frame
    if not (frame.name == "icrs" or (frame.name == "fk5" and abs(frame.equinox.jyear - 2000.0) < 1e-9)):
        sky = sky.transform_to(FK5(equinox="J2000"))
    return (np.asarray(sky.spherical.lon.deg, dtype=np.float64),
            np.asarray(sky.spherical.lat.deg, dtype=np.float64))


def celestial_wcs(header):
    """The header's celestial WCS (``astropy.wcs.WCS``), or None when it has none or cannot be read."""
    import warnings

    from astropy.wcs import WCS

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            w = WCS(header)
    except Exception:
        return None
    return w.celestial if w.has_celestial else None


def weight_path(tile: str | os.PathLike, pattern: str) -> Path:
    """The weight map of ``tile``: ``pattern`` (``dre.detect.weight_image``) with ``{stem}`` replaced by
    the tile's stem, relative to the tile's folder (``weights/{stem}_wht.fits``: ``weights/sim_000_wht.fits``)."""
    tile = Path(tile)
    return tile.parent / pattern.replace("{stem}", tile_stem(tile))


def check_weight(tile: str | os.PathLike, pattern: str, shape: tuple[int, int],
                 weight_type: str = "MAP_WEIGHT") -> Path:
    """The weight map of ``tile`` (:func:`weight_path`), checked from its header: it exists, is a FITS file
    with one 2-D image (of several, the one ``weight_type`` names: :func:`_open_image`), of the tile's
    ``shape`` (ny, nx).

    Raises
    ------
    astrotool.errors.InputError
        Missing, unreadable, or another shape; naming the weight map (and the tile).
    """
    from astrotool.errors import InputError
    from astrotool.names import printable

    check_own_weight(tile, pattern, weight_type)
    path = weight_path(tile, pattern)
    if not path.is_file():
        raise InputError(path, f"weight map not found (dre.detect.weight_image = {pattern!r} for the tile "
                               f"{printable(str(tile))})")
    wshape = image_shape(path, weight_type)
    if wshape != tuple(shape):
        raise InputError(path, f"weight map of shape {wshape} differs from the tile {printable(str(tile))}'s "
                               f"{tuple(shape)}")
    return path


NODATA_WEIGHT = 1e-6
"""A weight-map pixel whose inverse variance is at most this fraction of the map's median is no data [1]."""

_WEIGHT_WORDS = {"MAP_WEIGHT": "positive weight", "MAP_VAR": "finite positive variance",
                 "MAP_RMS": "finite positive RMS"}


def read_weight(path: str | os.PathLike, weight_type: str) -> tuple[np.ndarray | None, np.ndarray | None]:
    """A weight map's image and the pixels it marks as holding no data (chip gaps, masked areas), which DRE
    treats as NaN pixels of the tile.

    Parameters
    ----------
    path : path-like
        The weight map (checked: :func:`check_weight`).
    weight_type : str
        SExtractor's ``WEIGHT_TYPE`` (``dre.detect.weight_type``): the map's pixels are weights (inverse
        variances, ``MAP_WEIGHT``), variances (``MAP_VAR``) or RMS (``MAP_RMS``) [image units].

    Returns
    -------
    (numpy.ndarray, numpy.ndarray) or (None, None)
        The image, float32 (as SExtractor reads it), and the no-data mask, bool: True where the inverse
        variance the map gives is not finite or at most :data:`NODATA_WEIGHT` times its median over the pixels
        where it is positive (weight 0, an RMS of 0, infinite or huge); None, None for another type
        (``BACKGROUND``, ``NONE``: no values are taken from the map).

    Raises
    ------
    astrotool.errors.InputError
        No pixel with a positive weight (a finite positive variance, RMS), naming the weight map.
    """
    from astrotool.errors import InputError

    kind = str(weight_type).upper()
    if kind not in _WEIGHT_WORDS:
        return None, None
    w, _, _ = read_image(path, check_content=False, weight_type=kind)
    with np.errstate(divide="ignore", invalid="ignore"):
        ivar = {"MAP_WEIGHT": w, "MAP_VAR": 1.0 / w, "MAP_RMS": np.sign(w) / (w * w)}[kind]   # a negative RMS: no data
    ok = np.isfinite(ivar) & (ivar > 0)
    if not ok.any():
        raise InputError(path, f"weight map ({kind}) has no pixel with {_WEIGHT_WORDS[kind]}: nothing to detect")
    return w.astype(np.float32), ~(ok & (ivar > NODATA_WEIGHT * np.median(ivar[ok])))
