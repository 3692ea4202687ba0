"""Detection catalogues in SExtractor's FITS_LDAC format: reading and writing.

A ``<stem>_cat.fits`` file (either detection engine) holds a primary HDU
(``DRE_EXT``: the HDU index of the image in the tile, and ``HISTORY``),
``LDAC_IMHEAD`` (the tile's header as one ``Field Header Card`` string, with
the SExtractor keys PSFEx reads, e.g. ``SEXBKDEV``) and ``LDAC_OBJECTS``.
:func:`read_catalog` reads every ``LDAC_OBJECTS`` HDU, stacked.

Catalogue columns (both engines; units are pixels, image units and degrees):
``NUMBER, X_IMAGE, Y_IMAGE`` (1-based, FITS convention), ``XWIN_IMAGE,
YWIN_IMAGE, ALPHA_J2000, DELTA_J2000, FLUX_AUTO, FLUXERR_AUTO, MAG_AUTO,
MAGERR_AUTO, FLUX_APER, FLUXERR_APER`` (one aperture, diameter
``phot_aperture``), ``FLUX_RADIUS`` (half-light), ``FWHM_IMAGE,
KRON_RADIUS, A_IMAGE, B_IMAGE, THETA_IMAGE`` (deg CCW from +x, (-90, 90]),
``ELONGATION, ELLIPTICITY, ISOAREA_IMAGE, FLUX_MAX, BACKGROUND, SNR_WIN,
CLASS_STAR, FLAGS`` and ``VIGNET`` (``vignet_size`` square cut-out of the
background-subtracted image, -1e30 outside the frame) for PSFEx.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from astrotool.provenance import stamp_fits
from astrotool_dre.stellarity import size_stellarity, stellar_locus

__docformat__ = "numpy"

__all__ = ["CATALOG_COLUMNS", "CATALOG_UNITS", "CATALOG_DESCRIPTIONS", "FLUX_COLUMNS", "data_unit", "astropy_unit", "tunit",
           "set_tunits", "set_flux_tunits",
           "empty_catalog",
           "read_catalog", "write_ldac", "add_size_stellarity"]

CATALOG_UNITS = {
    "X_IMAGE": "pix", "Y_IMAGE": "pix", "XWIN_IMAGE": "pix", "YWIN_IMAGE": "pix", "ALPHA_J2000": "deg",
    "DELTA_J2000": "deg", "MAG_AUTO": "mag", "MAGERR_AUTO": "mag", "FLUX_RADIUS": "pix", "FWHM_IMAGE": "pix",
    "A_IMAGE": "pix", "B_IMAGE": "pix", "THETA_IMAGE": "deg", "ISOAREA_IMAGE": "pix2",
}
"""astropy units of the catalogue columns; the flux columns of :data:`FLUX_COLUMNS` are in the
tile's data units (its ``BUNIT``), the others are dimensionless."""

FLUX_COLUMNS = ("FLUX_AUTO", "FLUXERR_AUTO", "FLUX_APER", "FLUXERR_APER", "FLUX_MAX", "BACKGROUND", "VIGNET")
"""Catalogue columns in the tile's data units (``VIGNET``: cut-outs of the background-subtracted tile)."""

CATALOG_DESCRIPTIONS = {
    "NUMBER": "source number in its image HDU", "EXT_NUMBER": "HDU of the image in the tile (0-based)",
    "X_IMAGE": "barycentre x (1-based, FITS convention)", "Y_IMAGE": "barycentre y (1-based, FITS convention)",
    "XWIN_IMAGE": "windowed centroid x (1-based)", "YWIN_IMAGE": "windowed centroid y (1-based)",
    "ALPHA_J2000": "right ascension (J2000)", "DELTA_J2000": "declination (J2000)",
    "FLUX_AUTO": "Kron-like elliptical aperture flux", "MAG_AUTO": "Kron-like elliptical aperture magnitude",
    "FLUXERR_AUTO": "1-sigma error of FLUX_AUTO", "MAGERR_AUTO": "1-sigma error of MAG_AUTO",
    "FLUX_APER": "flux in the phot_aperture circular aperture", "FLUXERR_APER": "1-sigma error of FLUX_APER",
    "FLUX_RADIUS": "half-light radius",
    "FWHM_IMAGE": "FWHM assuming a Gaussian core", "KRON_RADIUS": "Kron radius k r1 (k = 2.5, at least 3.5) in units of A_IMAGE, B_IMAGE",
    "A_IMAGE": "semi-major axis rms", "B_IMAGE": "semi-minor axis rms",
    "THETA_IMAGE": "position angle, degrees counter-clockwise from +x, in (-90, 90]",
    "ELONGATION": "A_IMAGE / B_IMAGE", "ELLIPTICITY": "1 - B_IMAGE / A_IMAGE", "ISOAREA_IMAGE": "isophotal area",
    "FLUX_MAX": "peak pixel above background", "BACKGROUND": "background at the centroid",
    "SNR_WIN": "signal-to-noise in the windowed aperture", "CLASS_STAR": "stellarity (1 star, 0 galaxy)",
    "FLAGS": "extraction flags (SExtractor bits)",
}
"""One-line descriptions of the catalogue columns (FITS ``TCOMMn``)."""

CATALOG_COLUMNS = [
    "NUMBER", "X_IMAGE", "Y_IMAGE", "XWIN_IMAGE", "YWIN_IMAGE", "ALPHA_J2000", "DELTA_J2000",
    "FLUX_AUTO", "FLUXERR_AUTO", "MAG_AUTO", "MAGERR_AUTO", "FLUX_APER", "FLUXERR_APER",
    "FLUX_RADIUS", "FWHM_IMAGE", "KRON_RADIUS", "A_IMAGE", "B_IMAGE", "THETA_IMAGE",
    "ELONGATION", "ELLIPTICITY", "ISOAREA_IMAGE", "FLUX_MAX", "BACKGROUND", "SNR_WIN",
    "CLASS_STAR", "FLAGS",
]
"""Columns both engines write to ``LDAC_OBJECTS`` (VIGNET size is configurable)."""


def set_flux_tunits(path, flux_unit: str) -> None:
    """Set the ``TUNITn`` of the flux columns (:data:`FLUX_COLUMNS`) of an LDAC catalogue's
    ``LDAC_OBJECTS``, in place, to the tile's data unit as :func:`write_ldac` and the summary write it
    (:func:`tunit`: BUNIT ``"ADU"`` is ``"adu"``; SExtractor writes ``"count"`` whatever the unit).

    Parameters
    ----------
    path : path-like
        The catalogue (``<stem>_cat.fits``).
    flux_unit : str
        The tile's ``BUNIT`` as written (:func:`data_unit`); ``""`` (no ``BUNIT``): no unit, as photutils'
        catalogue has none then (SExtractor's ``"count"`` is removed).
    """
    from astropy.io import fits

    with fits.open(path, mode="update") as h:
        for hdu in h:
            if hdu.name != "LDAC_OBJECTS":
                continue
            if flux_unit:
                set_tunits(hdu.header, hdu.columns.names, {c: tunit(flux_unit) for c in FLUX_COLUMNS})
                continue
            for i, c in enumerate(hdu.columns.names, start=1):
                if c in FLUX_COLUMNS:
                    hdu.header.remove(f"TUNIT{i}", ignore_missing=True)


def empty_catalog(vignet_size: int):
    """A catalogue of no source: :data:`CATALOG_COLUMNS` and ``VIGNET`` (``vignet_size`` px square),
    with the photutils engine's types."""
    from astropy.table import Table

    ints = {"NUMBER": np.int32, "ISOAREA_IMAGE": np.int32, "FLAGS": np.int16}
    doubles = ("X_IMAGE", "Y_IMAGE", "XWIN_IMAGE", "YWIN_IMAGE", "ALPHA_J2000", "DELTA_J2000", "CLASS_STAR")
    t = Table()
    for c in CATALOG_COLUMNS:
        t[c] = np.zeros(0, dtype=ints.get(c, np.float64 if c in doubles else np.float32))
    t["VIGNET"] = np.zeros((0, vignet_size, vignet_size), dtype=np.float32)
    return t


def data_unit(header) -> str:
    """The tile's pixel unit: its ``BUNIT`` as written (``"ADU"``, ``"e-/s/px"``); ``""`` if none."""
    return str(header.get("BUNIT", "") or "").strip()


def astropy_unit(text: str, fmt: str | None = None) -> str:
    """``text`` as an astropy unit string (in format ``fmt``, e.g. ``"fits"``); ``""`` if astropy cannot
    parse or write it there. Silent: no astropy warning."""
    import warnings

    from astropy import units as u

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for t in (text, text.lower()):   # "ADU", "ADU/s"
            try:
                unit = u.Unit(t, format=fmt, parse_strict="raise")
                return unit.to_string(fmt) if fmt else unit.to_string()
            except (ValueError, TypeError):
                continue
    return ""


def tunit(text: str) -> str:
    """The ``TUNITn`` of a unit: astropy's FITS spelling (``"ADU"``: ``"adu"``), else ``text`` as written."""
    return astropy_unit(text, "fits") or text


def set_tunits(header, colnames, units: dict) -> None:
    """Set the ``TUNITn`` of a table HDU's ``header`` (before it is written) as text, after ``TFORMn``:
    ``units`` maps column names to unit strings as written (BUNIT may be no unit astropy knows, and
    astropy would warn or drop it); columns without one are left as they are."""
    for i, c in enumerate(colnames, start=1):
        unit = units.get(c)
        if not unit:
            continue
        if f"TUNIT{i}" in header:
            header[f"TUNIT{i}"] = unit
        else:
            header.insert(f"TFORM{i}", (f"TUNIT{i}", unit), after=True)


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


def write_ldac(path, table, image_header, record: dict, history: list[str], ext: int,
               sex_keys: dict | None = None) -> None:
    """Write ``table`` as a FITS_LDAC catalogue (``image_header`` goes to ``LDAC_IMHEAD``; the provenance
    ``record`` and ``history`` lines to the primary header, :func:`astrotool.provenance.stamp_fits`), with the
    columns' units (:data:`CATALOG_UNITS`; flux columns: the tile's ``BUNIT``, :func:`tunit`) as ``TUNITn``."""
    from astropy.io import fits
    from astropy.table import Table

    table = Table(table, copy=False)
    flux_unit = data_unit(image_header)

    image_header = image_header.copy()
    for k, v in (sex_keys or {}).items():
        image_header[k] = v  # PSFEx reads some SExtractor keys (SEXBKDEV...) from LDAC_IMHEAD

    prim = fits.PrimaryHDU()
    prim.header["DRE_EXT"] = (ext, "HDU index of the image in the tile")
    stamp_fits(prim.header, record, history)
    objects = fits.BinTableHDU(table)
    objects.name = "LDAC_OBJECTS"
    set_tunits(objects.header, table.colnames,
               {c: tunit(flux_unit) if c in FLUX_COLUMNS else CATALOG_UNITS.get(c) for c in table.colnames})
    fits.HDUList([prim, _header_cards_hdu(image_header), objects]).writeto(path)
    _pad_imhead_with_spaces(path)


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


def add_size_stellarity(cat_path) -> None:
    """Replace ``CLASS_STAR`` of an LDAC catalogue by the size-based stellarity, in place."""
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
