"""A tile's image and header: reading it, its gain and zero point, its products' names.

A tile is a FITS file holding one 2-D image (in any HDU). Its header gives the
gain (``GAIN``, e- per ADU; times ``EXPTIME`` for images in ADU/s) and the
magnitude zero point (``MAGZP``, ``MAGZPT``, ``MAGZERO``, ``ZEROPT``, ``ZP``,
``PHOTZP`` or ``MAG_ZP``, else :data:`DEFAULT_ZERO_POINT`).

Gain (``gain``): ``"counts"`` uses the header ``GAIN`` (image in ADU),
``"cps"`` uses ``GAIN * EXPTIME`` (image in ADU/s), a number is used as is
(e-/image unit).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__docformat__ = "numpy"

__all__ = [
    "DEFAULT_ZERO_POINT",
    "tile_stem",
    "output_paths",
    "read_image",
    "image_header",
    "resolve_gain",
    "resolve_zero_point",
]

DEFAULT_ZERO_POINT = 30.0  # [mag], when neither the configuration nor the header gives one

_ZP_KEYS = ("MAGZP", "MAGZPT", "MAGZERO", "ZEROPT", "ZP", "PHOTZP", "MAG_ZP")


def tile_stem(path: str | os.PathLike) -> str:
    """File name of a tile without its FITS extension (``.fits``, ``.fit``, ``.fts``, ``.gz``).

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


def output_paths(outdir: str | os.PathLike, stem: str) -> dict[str, Path]:
    """DRE's names of the detection products of tile ``stem`` in ``outdir``."""
    outdir = Path(outdir)
    return {k: outdir / f"{stem}_{k}.fits" for k in ("cat", "nb", "rms", "seg")}

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

def image_header(header):
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
