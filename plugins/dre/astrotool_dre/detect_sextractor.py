"""The SExtractor detection engine.

Runs ``source-extractor`` (or ``sex``) with our own configuration, parameter
and filter files written to a private temporary folder, through an argument
list. It runs in that folder and every file it reads or writes is named there
by a plain relative name (the tile, its weight map and the network file are
linked in; a compressed tile or weight map, ``.fits.gz`` or ``.fits.fz``, or one whose image is not in the
primary HDU, is written there uncompressed and alone, as SExtractor reads neither compression and would read
every image of the file; a weight map of type ``MAP_WEIGHT``, ``MAP_VAR`` or ``MAP_RMS`` whose pixels of no
data (:func:`astrotool_dre.tiles.read_weight`) are not all at weight 0 or an infinite RMS or variance is
written there with them set so): SExtractor splits names at commas and its
configuration files at spaces, so the real paths may hold both, and any
character. DRE's outputs are forced:
``-CATALOG_TYPE FITS_LDAC`` and ``-CHECKIMAGE_TYPE
-BACKGROUND,BACKGROUND_RMS,SEGMENTATION``. ``PIXEL_SCALE`` is 1, so
``SEEING_FWHM`` is in pixels; when not given it is measured by a first,
catalogue-only pass (the median ``FWHM_IMAGE`` of the stellar locus).
``ALPHA_J2000``, ``DELTA_J2000`` are computed again from ``X_IMAGE``, ``Y_IMAGE`` with the tile's full
astropy WCS (:func:`astrotool_dre.tiles.sky_coordinates`, as the photutils engine): SExtractor's own
leaves a SIP distortion out.
``CLASS_STAR`` comes from SExtractor's neural network (``default.nnw``,
searched for under ``share/source-extractor``); if that file cannot be found
the size-based stellarity (:mod:`astrotool_dre.stellarity`) is used instead.
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
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from astrotool.names import printable
from astrotool.provenance import stamp_fits
from astrotool_dre.catalog import CATALOG_COLUMNS, add_size_stellarity, data_unit, set_flux_tunits
from astrotool_dre.stellarity import stellar_locus
from astrotool_dre.tiles import image_header, sky_coordinates

if TYPE_CHECKING:
    from astrotool_dre.config import DetectConfig

__docformat__ = "numpy"

__all__ = ["find_sextractor", "find_nnw", "is_compressed", "run_sextractor"]


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


def is_compressed(path: str | os.PathLike) -> bool:
    """Whether a FITS file is compressed as a whole (gzip, bzip2, zip) or holds a tile-compressed image
    (``ZIMAGE = T``, astropy's ``CompImageHDU``): what SExtractor cannot read."""
    from astropy.io import fits

    with open(path, "rb") as f:
        if f.read(6) != b"SIMPLE":   # gzip, bzip2, zip...: not a plain FITS stream
            return True
    with fits.open(path, memmap=False, disable_image_compression=True) as hdul:
        return any(h.header.get("ZIMAGE", False) for h in hdul)


def _sex_config(folder: Path, cfg: DetectConfig, *, params: list[str], kernel: np.ndarray, nnw: Path | None, gain: float,
                zp: float, satur_level: float, seeing: float) -> str:
    """Write ``dre.sex`` and the files it names into ``folder``; return its name there."""
    (folder / "dre.param").write_text("\n".join(params) + "\n")
    rows = "\n".join(" ".join(f"{v:.6f}" for v in row) for row in kernel)
    (folder / "dre.conv").write_text(f"CONV NORM\n# Gaussian, FWHM {cfg.filter_fwhm} px\n{rows}\n")
    lines = {
        "CATALOG_TYPE": "FITS_LDAC",
        "PARAMETERS_NAME": "dre.param",
        "DETECT_TYPE": "CCD",
        "DETECT_MINAREA": cfg.detect_minarea,
        "DETECT_THRESH": cfg.detect_thresh,
        "ANALYSIS_THRESH": cfg.detect_thresh,
        "FILTER": "Y",
        "FILTER_NAME": "dre.conv",
        "DEBLEND_NTHRESH": cfg.deblend_nthresh,
        "DEBLEND_MINCONT": cfg.deblend_mincont,
        "CLEAN": "Y",
        "CLEAN_PARAM": 1.0,
        "MASK_TYPE": "CORRECT",
        "PHOT_APERTURES": cfg.phot_aperture,
        "PHOT_AUTOPARAMS": "2.5,3.5",
        "SATUR_LEVEL": repr(_below(min(float(satur_level), 1e20))),   # SExtractor flags above it: at or above
        "SATUR_KEY": "DRE_NOKEY",
        "MAG_ZEROPOINT": zp,
        "GAIN": gain,
        "GAIN_KEY": "DRE_NOKEY",
        "PIXEL_SCALE": 1.0,
        "SEEING_FWHM": seeing,
        "STARNNW_NAME": "default.nnw" if nnw else "none.nnw",
        "BACK_TYPE": "AUTO",
        "BACK_SIZE": cfg.back_size,
        "BACK_FILTERSIZE": cfg.back_filtersize,
        "BACKPHOTO_TYPE": "GLOBAL",
        "CHECKIMAGE_TYPE": "NONE",
        "MEMORY_OBJSTACK": 30000,
        "MEMORY_PIXSTACK": 3000000,
        "MEMORY_BUFSIZE": 4096,
        "VERBOSE_TYPE": "QUIET",
        "WRITE_XML": "N",
        "NTHREADS": cfg.nthreads,
    }
    (folder / "dre.sex").write_text("".join(f"{k:<18}{v}\n" for k, v in lines.items()))
    return "dre.sex"


def _below(level: float) -> float:
    """The largest float32 value strictly below ``level`` (compared in float64: ``_below(30000.1)`` is 30000.1's
    float32 neighbour below, ``_below(16777217.0)`` is 16777216.0): a float32 pixel is above it when at or above
    ``level``, as the photutils engine flags saturation (SExtractor flags a pixel strictly above
    ``SATUR_LEVEL``)."""
    near = np.float32(level)
    return float(near) if float(near) < level else float(np.nextafter(near, np.float32(-np.inf)))


_NODATA_VALUE = {"MAP_WEIGHT": 0.0, "MAP_VAR": np.inf, "MAP_RMS": np.inf}
"""The value SExtractor reads as no data in a weight map of each type (beyond its ``WEIGHT_THRESH``)."""


def _put_image(src: Path, dest: Path, data=None, header=None, ext: int | None = None,
               weight_type: str | None = None) -> None:
    """Put the image of ``src`` (``data``, ``header``, HDU ``ext``; read when not given; ``weight_type``: of a
    weight map, :func:`astrotool_dre.tiles.check_tile`) at ``dest`` for SExtractor: a link when it is the
    file's primary HDU, uncompressed; else that image alone, uncompressed (SExtractor reads neither gzip nor
    tile compression, "Unknown TFORM", and would read every image of a file with several: SCI, WHT...)."""
    from astropy.io import fits

    from astrotool_dre.tiles import check_tile, read_image

    if ext is None:
        ext = check_tile(src, weight_type)
    if ext == 0 and not is_compressed(src):
        os.symlink(os.path.abspath(src), dest)
        return
    if data is None:
        data, header, _ = read_image(src, check_content=False, weight_type=weight_type)
    fits.PrimaryHDU(data.astype(np.float32, copy=False),
                    header=None if header is None else image_header(header)).writeto(dest)


def _run(args, cwd, timeout, what):
    log = logging.getLogger("astro")
    log.debug("running %s in %s", shlex.join(str(a) for a in args), cwd)
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{what} did not finish within {timeout:g} s") from None
    log.debug("%s: exit %d after %.2f s", what, proc.returncode, time.perf_counter() - t0)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-5:]
        raise RuntimeError(f"{what} failed (exit {proc.returncode}): " + " | ".join(tail))
    return proc


def run_sextractor(binary: str, tile: Path, data: np.ndarray, header, ext: int, tmp: dict, cfg: DetectConfig, *,
                   gain: float, zp: float, satur_level: float, kernel: np.ndarray, record: dict,
                   weight: Path | None = None, nodata: np.ndarray | None = None,
                   weight_pixels: np.ndarray | None = None):
    """Detect with SExtractor; write the four products to the paths in ``tmp``.

    Parameters
    ----------
    binary : str
        The SExtractor executable (:func:`find_sextractor`).
    tile : pathlib.Path
        The tile; ``data``, ``header`` and ``ext`` are its image, header and HDU index.
    tmp : dict
        Temporary paths of ``"cat"``, ``"nb"``, ``"rms"`` and ``"seg"``.
    cfg : astrotool_dre.config.DetectConfig
        The ``[dre.detect]`` section.
    gain, zp, satur_level : float
        Resolved gain [e-/unit], zero point [mag] and saturation [image units].
    kernel : numpy.ndarray
        The detection filter.
    record : dict
        The :func:`astrotool.provenance.provenance` record written into the products' headers.
    weight : pathlib.Path, optional
        The tile's weight map (checked: :func:`astrotool_dre.tiles.check_weight`), of ``cfg.weight_type``.
    nodata : numpy.ndarray, optional
        bool, the pixels of no data (NaN in the tile, of no weight in ``weight``:
        :func:`astrotool_dre.tiles.read_weight`); SExtractor gets them as pixels of no weight, so that they
        count in neither its background nor its noise map. Default: the tile's non-finite pixels.
    weight_pixels : numpy.ndarray, optional
        The image of ``weight`` as read (:func:`astrotool_dre.tiles.read_weight`); read again when needed
        and not given. SExtractor gets a copy with ``nodata`` at its no-data value only where some pixel of
        ``nodata`` is not at it already; else the map itself (a link, where it can).

    Returns
    -------
    (int, float)
        Number of sources and the seeing FWHM used [px].
    """
    import warnings

    from astropy.io import fits
    from astropy.io.fits.verify import VerifyWarning
    from astropy.table import Table

    nnw = find_nnw(binary)
    weight_image, weight_type = weight, cfg.weight_type
    seeing_fwhm = cfg.seeing_fwhm
    common = dict(kernel=kernel, gain=gain, zp=zp, satur_level=satur_level)
    with tempfile.TemporaryDirectory(prefix=".sex-", dir=Path(tmp["cat"]).parent) as td:
        td = Path(td)
        # every file goes in under a plain name (see the module docs)
        image = td / "tile.fits"
        if nnw is not None:
            os.symlink(os.path.abspath(nnw), td / "default.nnw")
        bad = ~np.isfinite(data)
        nodata = bad if nodata is None else nodata | bad
        kind = str(weight_type).upper()
        if bad.any():   # NaN pixels: zeroed, and of no weight (below)
            fits.PrimaryHDU(np.where(bad, 0.0, data).astype(np.float32), header=image_header(header)).writeto(image)
        else:
            _put_image(tile, image, data, header, ext)
        if weight_image is not None and kind in _NODATA_VALUE:
            if weight_pixels is None:
                from astrotool_dre.tiles import read_weight

                weight_pixels = read_weight(weight_image, kind)[0]
            if (weight_pixels[nodata] != _NODATA_VALUE[kind]).any():
                # the user's map with its pixels of no data (DRE's rule, tiles.read_weight) as SExtractor's no
                # data: a weight of 1e-12 or an RMS of 1e10 would otherwise enter the background of its noise map
                weight_image = td / "weight.fits"
                fits.PrimaryHDU(np.where(nodata, _NODATA_VALUE[kind], weight_pixels).astype(np.float32)).writeto(
                    weight_image)
        elif weight_image is None and nodata.any():   # no weight map: weight 0 at the pixels of no data
            weight_image = td / "weight.fits"
            fits.PrimaryHDU((~nodata).astype(np.float32)).writeto(weight_image)
            weight_type = "MAP_WEIGHT"
        wargs = []
        if weight_image is not None:
            wimg = Path(weight_image)
            if wimg.parent != td:
                wimg = td / "weight_in.fits"
                _put_image(weight_image, wimg, weight_pixels, weight_type=kind)
            wargs += ["-WEIGHT_TYPE", weight_type, "-WEIGHT_IMAGE", wimg.name]
        xargs = []
        for k, v in cfg.sextractor_args.items():
            xargs += [f"-{str(k).lstrip('-').upper()}", str(v)]

        # pass 1 (only without a seeing): catalogue of sizes to find the stellar locus
        if seeing_fwhm is None:
            p1 = ["NUMBER", "FLUX_RADIUS", "FWHM_IMAGE", "FLUX_AUTO", "FLUXERR_AUTO", "FLAGS", "ELONGATION"]
            conf = _sex_config(td, cfg, params=p1, nnw=None, seeing=3.0, **common)  # no CLASS_STAR in pass 1
            _run([binary, image.name, "-c", conf] + wargs + xargs + ["-CATALOG_NAME", "pass1.cat", "-CATALOG_TYPE",
                 "FITS_LDAC", "-PARAMETERS_NAME", "dre.param", "-CHECKIMAGE_TYPE", "NONE"],
                 td, cfg.timeout, "source-extractor (pass 1)")
            with fits.open(td / "pass1.cat") as h:
                t1 = Table(h["LDAC_OBJECTS"].data)
            snr1 = np.asarray(t1["FLUX_AUTO"]) / np.maximum(np.asarray(t1["FLUXERR_AUTO"]), 1e-30)
            r_star = stellar_locus(t1["FLUX_RADIUS"], snr1, t1["FLAGS"], t1["ELONGATION"]) if len(t1) else None
            if r_star is not None:
                with np.errstate(divide="ignore", invalid="ignore"):   # FLUX_RADIUS <= 0: not on the locus
                    sel = np.abs(np.log(np.asarray(t1["FLUX_RADIUS"]) / r_star)) < math.log1p(0.05)
                sel &= snr1 >= 20
                seeing_fwhm = float(np.median(np.asarray(t1["FWHM_IMAGE"])[sel]))
            else:
                seeing_fwhm = float(cfg.filter_fwhm)

        params = [c for c in CATALOG_COLUMNS if nnw is not None or c != "CLASS_STAR"]
        params = [("FLUX_APER(1)" if c == "FLUX_APER" else "FLUXERR_APER(1)" if c == "FLUXERR_APER" else c)
                  for c in params] + [f"VIGNET({cfg.vignet_size},{cfg.vignet_size})"]
        conf = _sex_config(td, cfg, params=params, nnw=nnw, seeing=seeing_fwhm, **common)
        names = {k: td / f"out_{k}.fits" for k in ("cat", "nb", "rms", "seg")}
        # DRE's outputs are forced last, after any user arguments
        args = [binary, image.name, "-c", conf] + wargs + xargs + [
            "-CATALOG_NAME", names["cat"].name, "-CATALOG_TYPE", "FITS_LDAC",
            "-CHECKIMAGE_TYPE", "-BACKGROUND,BACKGROUND_RMS,SEGMENTATION",
            "-CHECKIMAGE_NAME", ",".join(names[k].name for k in ("nb", "rms", "seg")),
            "-PARAMETERS_NAME", "dre.param"]
        _run(args, td, cfg.timeout, "source-extractor")

        hist = [
            f"{Path(binary).name} on {printable(tile.name, ascii_only=True)}: gain {gain:g} e-/unit, thresh {cfg.detect_thresh}, "
            f"minarea {cfg.detect_minarea}, seeing {seeing_fwhm:.3f} px",
        ]
        with fits.open(names["cat"], mode="update") as h:
            h[0].header["DRE_EXT"] = (ext, "HDU index of the image in the tile")
            stamp_fits(h[0].header, record, hist)
            objects = h["LDAC_OBJECTS"].data
            n = len(objects) if objects is not None else 0
            if n:   # SExtractor's own WCS leaves SIP out (and writes 0.0 deg without one): astropy's, as photutils
                objects["ALPHA_J2000"], objects["DELTA_J2000"] = sky_coordinates(
                    header, objects["X_IMAGE"], objects["Y_IMAGE"])
        if nnw is None:   # also for no source: every catalogue has the same columns
            add_size_stellarity(names["cat"])
        set_flux_tunits(names["cat"], data_unit(header))
        for k in ("nb", "rms", "seg"):
            with warnings.catch_warnings():
                # SExtractor copies an integer tile's BLANK into its float check images, where it is invalid
                # (astropy's VerifyWarning on every read): removed here
                warnings.filterwarnings("ignore", message="Invalid 'BLANK' keyword", category=VerifyWarning)
                with fits.open(names[k], mode="update") as h:   # no-data pixels are made NaN by detect_tile
                    if k != "seg":
                        h[0].header.remove("BLANK", ignore_missing=True)
                    stamp_fits(h[0].header, record, hist)
        for k in names:
            os.replace(names[k], tmp[k])
    return n, seeing_fwhm
