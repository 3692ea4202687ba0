"""The fit stage for one tile: cuts + PSF + cube → Chi HDF5 and a summary table.

The tile's PSF convolves the cube once (:mod:`astrotool_dre.convolve`), or, when
it varies across the tile, once per group of objects with alike PSFs
(:func:`astrotool_dre.psf.group_by_psf`); every object is then fit in batches by
:func:`astrotool_dre.chi2.fit_objects` (least-squares flux and χ² of every model
as matrix products, or DRE's statistic with ``statistic="dre"``). Before the
fit, each cut is shifted by its sub-pixel offset so the object sits on the
models' centre pixel (64, 64) (:func:`recentre`), and its neighbours' segments are
masked out; :func:`astrotool_dre.estimate.best_parameters` turns the statistic
into parameters.

Outputs (DRE's layout):

- ``dre/chi/<stem>_chi.h5``: one float32 dataset per object, named
  ``"{EXT:02d}_{NUMBER:04d}"``, shape ``(NINDEX, NAXRAT, NPOSANG, NLOGH)``, the
  statistic of every model;
- ``dre/summary/<stem>_dre.parquet`` and ``.fits``: best-fit parameters, their
  uncertainties, edge flags, flux and magnitude, joined to the detection
  catalogue (``NUMBER``, ``X_IMAGE``, ``Y_IMAGE``, ``CLASS_STAR``, ...); each row is named by ``TILE``
  (the tile's stem) and ``NAME`` (``EXT_NUMBER``_``NUMBER``), so several tiles' summaries stack.

Summary conventions: ``LOGR`` = log10 of the major-axis half-light radius in
pixels; ``ANGLE`` = degrees counter-clockwise from +x, in [0, 180); ``FLUX`` in
the tile's data units (total flux of the model); ``MAG = ZP - 2.5 log10(FLUX)``
with ZP from ``dre.fit.zero_point`` or the tile header (``MAGZP``/``ZP``…).
``STAR`` is true for unresolved objects (best radius on the grid's lowest edge)
or ``CLASS_STAR >= dre.fit.star_stellarity`` (0.8).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from astrotool.errors import InputError
from astrotool.names import printable

if TYPE_CHECKING:
    from astrotool_dre.config import FitConfig

__docformat__ = "numpy"

SUMMARY_FIRST = ["TILE", "NAME", "NUMBER", "EXT_NUMBER", "X_IMAGE", "Y_IMAGE", "INDEX", "AX_RATIO", "ANGLE", "LOGR",
                 "FLUX", "MAG", "CHI2", "CHI2_NU"]
"""Columns put first, in this order, in the fit summary table."""

SKY_COLUMNS = ("SKY", "SKY_ERR")
"""Columns of the local sky (``dre.fit.local_sky`` with the statistic ``chi2`` only), in the tile's ``BUNIT``."""

SUMMARY_UNITS = {"ANGLE": "deg", "ANGLE_ERR": "deg", "ANGLE_GRID": "deg", "PSF_FWHM": "pix", "MAG": "mag",
                 "MAG_ERR": "mag", "NPIX": "pix2"}
"""astropy units of the fit columns of the summary (``FLUX*`` are in the tile's ``BUNIT``; the catalogue's
columns keep :data:`astrotool_dre.catalog.CATALOG_UNITS`; ``LOGR`` is log10 of pixels, so it has none)."""

SUMMARY_DESCRIPTIONS = {
    "TILE": "tile of the object: its file name without .fits/.fits.gz/.fits.fz/.fit (TILE, NAME is unique "
            "across tiles; mosaics <TILE>_<NAME>)",
    "NAME": "object name EXT_NUMBER_NUMBER (unique within its TILE)", "INDEX": "Sersic index",
    "AX_RATIO": "axis ratio b/a",
    "ANGLE": "major axis, degrees counter-clockwise from image +x, in [0, 180) (not east of north)",
    "LOGR": "log10 of the major-axis half-light radius in pixels",
    "INDEX_GRID": "Sersic index of the best grid model", "AX_RATIO_GRID": "axis ratio of the best grid model",
    "ANGLE_GRID": "major axis of the best grid model, degrees CCW from image +x",
    "LOGR_GRID": "log10 major-axis half-light radius of the best grid model, pixels",
    "FLUX": "total flux of the best model, in the tile's data units (BUNIT)",
    "FLUX_GRID": "total flux at the grid minimum (BUNIT)", "FLUX_ERR": "1-sigma error of FLUX (BUNIT)",
    "MAG": "MAGZP - 2.5 log10(FLUX)", "CHI2": "fit statistic at the minimum",
    "CHI2_NU": "chi-square per degree of freedom", "NPIX": "area of the fit mask (number of pixels)",
    "FIT_FLAGS": "fit flag bits (astrotool_dre.estimate.FLAG_BITS)",
    "STAR": "unresolved (radius on the grid's lower edge) or CLASS_STAR >= star_stellarity",
    "PSF_FWHM": "FWHM of the PSF the object was fit with, pixels (Moffat fit)",
    "BLEND": "neighbours' light reached the fit mask (chi-square > 1): fit again with it subtracted",
    "SKY": "constant sky fit under the object with the best grid model, per pixel (BUNIT)",
    "SKY_ERR": "1-sigma least-squares error of SKY at the best grid model's shape (BUNIT)",
}
"""One-line descriptions of the summary columns (FITS ``TCOMMn``), beside the catalogue's; those of the
grid parameters and their errors are completed for the fit's settings (:func:`summary_columns`)."""

GRID_AXES = {"N": "INDEX", "E": "AX_RATIO", "T": "ANGLE", "R": "LOGR"}
"""Grid axis of each ``<letter>_IDX`` column."""


def load_inputs(paths, cube_file):
    """Read cuts, PSF model (:class:`astrotool_dre.psf.PsfModel`; None when there is no cut), cube and the
    tile header; check they fit together."""
    from astrotool_dre.cuts import read_cuts
    from astrotool_dre.models import read_cube
    from astrotool_dre.psf import read_psf_model
    from astrotool_dre.tiles import read_image

    cuts = read_cuts(paths.cuts)
    psf = read_psf_model(paths.psf) if len(cuts) else None   # a tile with no source has a PSF of no star
    cube, grid = read_cube(cube_file)
    if len(cuts) and cuts.obj.shape[-1] != grid.boxsize:
        raise InputError(cube_file, f"BOXSIZE {grid.boxsize} does not match the {cuts.obj.shape[-1]}-px cuts "
                                    f"in {paths.cuts}")
    _, header, _ = read_image(paths.tile, check_content=False)
    return cuts, psf, cube, grid, header


def prepare_stamps(cuts, centre: int, recentre_cuts: bool = True):
    """Data, rms and fit mask per object, shifted onto the models' centre pixel, and the variance the
    data's noise keeps after that shift, per object (:func:`shift_noise_variance`; 1 where not shifted)."""
    data, rms, mask, noise = [], [], [], np.ones(len(cuts))
    for i in range(len(cuts)):
        o, r, s, n = cuts.obj[i], cuts.rms[i], cuts.seg[i], cuts.nbr[i]
        if recentre_cuts and "X_CUT" in cuts.attrs:
            dx, dy = centre - float(cuts.attrs["X_CUT"][i]), centre - float(cuts.attrs["Y_CUT"][i])
            o, r, s, n = recentre(o, r, s, n, dx, dy)
            noise[i] = shift_noise_variance(dx, dy)
        data.append(o)
        rms.append(r)
        mask.append(s & ~n)
    b = cuts.obj.shape[-1] if len(cuts) else 0
    shape = (len(cuts), b, b)
    return (np.asarray(data, np.float32).reshape(shape), np.asarray(rms, np.float32).reshape(shape),
            np.asarray(mask, bool).reshape(shape), noise)


def inverse_variance(rms: np.ndarray) -> np.ndarray:
    """``1 / rms**2`` [1 / image unit²], float64; 0 where ``rms`` is not finite or not above 0 (no data, as the
    fit's noise model masks them: :mod:`astrotool_dre.chi2`)."""
    rms = np.asarray(rms, dtype=np.float64)
    ok = np.isfinite(rms) & (rms > 0)
    out = np.zeros(rms.shape)
    np.divide(1.0, np.square(rms, where=ok, out=np.ones(rms.shape)), where=ok, out=out)
    return out


def fit_tile(paths, cfg: FitConfig, cube_file) -> str:
    """Fit every cut of a tile; write the Chi HDF5 and the summary table.

    Parameters
    ----------
    paths : astrotool_dre.pipeline.TilePaths
        Where inputs and outputs are (the tile's header gives gain, exposure
        time and zero point).
    cfg : astrotool_dre.config.FitConfig
        The ``[dre.fit]`` section.
    cube_file : path-like
        The model cube (ours or DRE's).

    Returns
    -------
    str
        One line for the run summary.
    """
    from astrotool.backends import get_backend
    from astrotool_dre.catalog import data_unit
    from astrotool_dre.estimate import best_parameters
    from astrotool_dre.psf import group_by_psf, psf_fwhm
    from astrotool_dre.tiles import resolve_gain, resolve_zero_point

    cuts, psf, cube, grid, header = load_inputs(paths, cube_file)
    if len(cuts) == 0:
        logging.getLogger("astro.dre").warning("%s: no objects to fit (no cut passed the selection); its summary "
                                               "is empty", printable(str(paths.tile)))
    gain = resolve_gain(header, cfg.gain, paths.tile)
    zp = resolve_zero_point(header, cfg.zero_point, paths.tile, "dre.fit.zero_point")
    be = get_backend(cfg.backend, cfg.device)
    data, rms, mask, noise = prepare_stamps(cuts, grid.center, cfg.recentre)
    groups = []   # no cut: an empty summary
    if len(cuts):
        x, y = object_positions(cuts, psf)
        groups = group_by_psf(psf, x, y, cfg.psf_tolerance, cfg.max_psf_groups)
        if not cfg.core_psf:
            groups = split_large(groups, mask, grid)
    blended = np.zeros(len(cuts), bool)
    if cfg.neighbours == "subtract" and len(cuts) > 1 and "CUT_XMIN" in cuts.attrs:
        # every object's best model (with the mean PSF when it varies: one bank instead of one per group),
        # then each object's neighbours subtracted from its cut, and the fit with each group's PSF
        first = groups if len(groups) == 1 else [(np.arange(len(cuts)), mean_psf(groups))]
        res, models = fit_groups(first, cube, data, rms, mask, grid, cfg, be, gain, whole=True)
        shape = (int(header["NAXIS2"]), int(header["NAXIS1"]))
        light = neighbour_light(cuts, models, shape, psf, paths.cat, cfg)
        blended = np.einsum("nyx,nyx->n", light ** 2 * mask, inverse_variance(rms)) > 1.0
        light[~blended] = 0.0
        if len(groups) > 1 or blended.any():
            part, _ = fit_groups(groups, cube, data - light, rms, mask, grid, cfg, be, gain,
                                 only=None if len(groups) > 1 else blended)
            redo = np.ones(len(cuts), bool) if len(groups) > 1 else blended
            res.put(redo, part, redo)
    else:
        res, _ = fit_groups(groups, cube, data, rms, mask, grid, cfg, be, gain)
    del cube
    cols = best_parameters(res.chi2, grid, res.flux, res.npix, swd2=res.swd2, statistic=cfg.statistic,
                           zeropoint=zp, backend=be, subgrid=cfg.subgrid, error_floor=cfg.error_floor,
                           refine=cfg.subgrid_axes, noise_variance=noise)
    psf_fwhm_px = np.zeros(len(cuts))
    for members, image in groups:
        psf_fwhm_px[members] = psf_fwhm(image)
    cols["PSF_FWHM"] = psf_fwhm_px
    cols["BLEND"] = blended
    if res.sky is not None:
        cols["SKY"], cols["SKY_ERR"] = res.sky, res.sky_err
    table = summary_table(cuts, cols, paths, cfg)  # before any output: a bad catalogue leaves nothing behind
    write_chi(paths.chi, cuts.names, res.cubes(grid), grid, cfg, paths)
    write_summary(table, paths, cfg, zp, gain, be, flux_unit=data_unit(header), grid=grid)
    n_edge = int(np.sum(table["LOGR_EDGE_LO"]) + np.sum(table["LOGR_EDGE_HI"]))
    banks = f", {len(groups)} PSF groups" if len(groups) > 1 else ""
    return (f"{len(table)} objects fit ({cfg.statistic}, {be.name} on {be.device}{banks}); "
            f"{int(np.sum(table['STAR']))} flagged STAR, {n_edge} on a radius-grid edge")


def fit_groups(groups, cube, data, rms, mask, grid, cfg: FitConfig, be, gain, only=None, whole: bool = False,
               large_crop: int | None = None):
    """Fit objects group by group, each group with the cube convolved by its PSF.

    Groups fit on crops of one size share the models' forward FFT
    (:class:`astrotool_dre.convolve.CubeSpectrum`). With ``large_crop`` and several groups, the objects
    fit on crops wider than it are fit with models whose centred ``large_crop`` square is convolved by
    their group's PSF and whose outer part by the groups' mean PSF (:func:`mean_psf`), convolved once
    (``dre.fit.core_psf``): the PSF shapes the core, which holds the information on the profile, while
    their light beyond it is smooth on the PSF's scale; no group convolves more than ``large_crop`` px.

    Parameters
    ----------
    groups : list of (indices, psf)
        From :func:`astrotool_dre.psf.group_by_psf`.
    cube : numpy.ndarray
        The model cube.
    data, rms, mask : numpy.ndarray ``(N, B, B)``
        Stamps as :func:`prepare_stamps` gives them.
    only : numpy.ndarray of bool, optional
        Fit these objects only (the others keep NaN).
    whole : bool
        Convolve the whole model stamps, for ``models``; otherwise only the largest
        crop a group's objects are fit on (:func:`astrotool_dre.convolve.crop_sizes`)
        and ``models`` hold just that crop.
    large_crop : int, optional
        The side of the core convolved by each group's PSF [px], one of
        :func:`astrotool_dre.convolve.bank_sizes`; default :data:`LARGE_CROP` with
        ``cfg.core_psf``, else none (every object fit with its group's PSF: :func:`split_large` is the
        faster way).

    Returns
    -------
    res : astrotool_dre.chi2.FitResult
        Every object's statistic and fluxes.
    models : numpy.ndarray ``(N, B, B)``
        Each object's best grid model times its flux (data units; zeros where not fit).
    """
    from astrotool_dre.chi2 import FitResult, fit_objects
    from astrotool_dre.convolve import CubeSpectrum, ModelBank, bank_sizes, crop_sizes

    n, k, b = len(data), grid.nmodels, grid.boxsize
    core = int(large_crop or (LARGE_CROP if cfg.core_psf else b))
    res = FitResult(chi2=np.full((n, k), np.nan, np.float32), flux=np.full((n, k), np.nan, np.float32),
                    npix=np.zeros(n, np.int64), swd2=np.full(n, np.nan), crop=np.zeros(n, np.int64),
                    statistic=cfg.statistic, sky=np.full(n, np.nan) if cfg.sky_fitted else None,
                    sky_err=np.full(n, np.nan) if cfg.sky_fitted else None)
    models = np.zeros((n, b, b), np.float32)

    def fit(members, bank):
        part = fit_objects(bank, data[members], rms[members], mask[members], gain=gain, reweight=cfg.reweight,
                           statistic=cfg.statistic, batch_size=cfg.batch_size, local_sky=cfg.sky_fitted)
        res.put(members, part)
        res.passes = part.passes
        chi = np.where(np.isnan(part.chi2), np.inf, part.chi2)
        best = np.argmin(chi, axis=1)
        ok = np.isfinite(chi[np.arange(len(members)), best])
        flux = np.where(ok, part.flux[np.arange(len(members)), best], 0.0)
        lo, hi = bank.bounds(bank.side)
        models[members, lo:hi, lo:hi] = be.to_numpy(bank.stamps[be.asarray(best)]) * flux[:, None, None]

    todo, outer_crop = [], 0
    for members, image in groups:
        if only is not None:
            members = members[only[members]]
        if not len(members):
            continue
        crops = np.full(len(members), b) if whole else crop_sizes(mask[members], grid.center, bank_sizes(b))
        large = crops > core if len(groups) > 1 and not whole else np.zeros(len(members), bool)
        outer_crop = max(outer_crop, int(crops[large].max(initial=0)))
        crop = core if large.any() else int(crops.max())
        todo.append((crop, members[~large], image, members[large]))
    # groups of one crop size and PSF size share the models' forward FFT (CubeSpectrum)
    todo.sort(key=lambda t: (t[0], np.shape(t[2])))
    spectrum, current, cores = None, None, []
    for i, (crop, members, image, large) in enumerate(todo):
        key = (crop, np.shape(image))
        if key != current:
            shared = i + 1 < len(todo) and (todo[i + 1][0], np.shape(todo[i + 1][2])) == key
            spectrum = None  # free the previous one first
            spectrum, current = CubeSpectrum(cube, np.shape(image), be, crop=crop, keep=shared), key
        convolved = spectrum.convolve(image, remove_pixel=cfg.psf_has_pixel)
        if len(members):
            fit(members, ModelBank(convolved, grid, be))
        if len(large):
            cores.append((convolved, large))
        del convolved
    spectrum = None
    if cores:   # the large objects: the mean PSF's models, convolved once, with each group's core set in turn
        k2 = 2 * grid.nmodels * outer_crop ** 2 * np.dtype(np.float32).itemsize   # one crop size's matrices
        outer = ModelBank(CubeSpectrum(cube, np.shape(groups[0][1]), be, crop=outer_crop, keep=False).convolve(
            mean_psf(groups), remove_pixel=cfg.psf_has_pixel), grid, be, cache_bytes=k2)
        sizes = crop_sizes(mask, grid.center, bank_sizes(b))
        for size in np.unique(np.concatenate([sizes[large] for _, large in cores])):   # its matrices made once
            for convolved, large in cores:
                if (sizes[large] == size).any():
                    outer.set_core(convolved)
                    fit(large[sizes[large] == size], outer)
    return res, models


LARGE_CROP = 64
"""Objects fit on crops wider than this [px] share one bank (:func:`split_large`), or their models' core of this
side is convolved by their group's PSF (:func:`fit_groups`, ``dre.fit.core_psf``)."""


def split_large(groups, mask, grid):
    """Move the objects fit on crops wider than :data:`LARGE_CROP` into one group of their own, with the
    mean PSF (``dre.fit.core_psf = false``, the default).

    They alone would make every group's convolution cover the whole stamp; the other groups then convolve
    only :data:`LARGE_CROP` px (about 3x cheaper). The mean PSF is up to half the PSF's range off theirs: on
    a crowded field at 10x the preset's S/N (seed 6101), n = 4 galaxies were fit as n = 3.5 in 22 of 61
    cases against 11 with their own PSF in the core, FLUX within 5 % 0.80 against 0.84.
    """
    from astrotool_dre.convolve import bank_sizes, crop_sizes

    if len(groups) < 2:
        return groups
    large = crop_sizes(mask, grid.center, bank_sizes(grid.boxsize)) > LARGE_CROP
    if not large.any():
        return groups
    out = [(m[~large[m]], p) for m, p in groups if (~large[m]).any()]
    return out + [(np.flatnonzero(large), mean_psf(groups))]


def mean_psf(groups) -> np.ndarray:
    """The PSF of :func:`astrotool_dre.psf.group_by_psf`'s groups averaged over their members (unit sum)."""
    p = sum(len(members) * image for members, image in groups)
    return p / p.sum()


def neighbour_light(cuts, models, shape, psf, cat_path, cfg: FitConfig) -> np.ndarray:
    """The light of every other object in each cut, shifted like the cut onto the models' centre.

    Each fitted object's best model (``models``, centred on the grid centre) is placed at its
    position on a tile-sized scene; catalogue stars that were not fit (``CLASS_STAR >=
    star_stellarity``) are added as the PSF times ``FLUX_AUTO``. An object's own model is
    taken out of its cut again.

    Returns
    -------
    numpy.ndarray ``(N, B, B)``
        Data units, on the recentred stamps of :func:`prepare_stamps`.
    """
    from scipy import ndimage

    from astrotool_dre.catalog import read_catalog

    n, b = models.shape[0], models.shape[-1]
    c = b // 2
    ny, nx = shape
    pad = b
    scene = np.zeros((ny + 2 * pad, nx + 2 * pad))

    def place(stamp, x, y):  # stamp centred on pixel (c, c) -> tile 0-based (x, y)
        ix, iy = int(np.floor(x + 0.5)), int(np.floor(y + 0.5))
        shifted = ndimage.shift(stamp, (y - iy, x - ix), order=3, mode="constant")
        h = stamp.shape[0] // 2
        scene[iy - h + pad: iy - h + pad + stamp.shape[0], ix - h + pad: ix - h + pad + stamp.shape[1]] += shifted
        return shifted

    # where the fit put each model (0-based tile): the cut's origin plus its centre in the cut
    xs = np.asarray(cuts.attrs["CUT_XMIN"], float) + np.asarray(cuts.attrs["X_CUT"], float)
    ys = np.asarray(cuts.attrs["CUT_YMIN"], float) + np.asarray(cuts.attrs["Y_CUT"], float)
    own = [place(models[i].astype(np.float64), xs[i], ys[i]) for i in range(n)]
    cat = read_catalog(cat_path, vignet=False, require=("NUMBER", "X_IMAGE", "Y_IMAGE", "CLASS_STAR", "FLUX_AUTO"))
    fitted = set(zip(np.asarray(cuts.attrs.get("EXT_NUMBER", np.zeros(n))).astype(int).tolist(),
                     np.asarray(cuts.attrs["NUMBER"]).astype(int).tolist()))
    for row in cat:
        key = (int(row["EXT_NUMBER"]) if "EXT_NUMBER" in cat.colnames else 0, int(row["NUMBER"]))
        if key in fitted or float(row["CLASS_STAR"]) < cfg.star_stellarity or not float(row["FLUX_AUTO"]) > 0:
            continue
        x, y = float(row["X_IMAGE"]) - 1.0, float(row["Y_IMAGE"]) - 1.0
        if -pad / 2 < x < nx + pad / 2 and -pad / 2 < y < ny + pad / 2:
            place(psf.at(x + 1.0, y + 1.0) * float(row["FLUX_AUTO"]), x, y)
    out = np.zeros((n, b, b), np.float32)
    for i in range(n):
        ix, iy = int(np.floor(xs[i] + 0.5)), int(np.floor(ys[i] + 0.5))
        x0, y0 = int(cuts.attrs["CUT_XMIN"][i]), int(cuts.attrs["CUT_YMIN"][i])
        window = scene[y0 + pad: y0 + pad + b, x0 + pad: x0 + pad + b].copy()
        # its own model: placed at (ix - c, iy - c) on the scene, i.e. (ix - c - x0, ...) in the cut
        oy, ox = iy - c - y0, ix - c - x0
        ys_, xs_ = slice(max(oy, 0), min(oy + b, b)), slice(max(ox, 0), min(ox + b, b))
        window[ys_, xs_] -= own[i][ys_.start - oy: ys_.stop - oy, xs_.start - ox: xs_.stop - ox]
        if cfg.recentre and "X_CUT" in cuts.attrs:
            window = ndimage.shift(window, (c - float(cuts.attrs["Y_CUT"][i]), c - float(cuts.attrs["X_CUT"][i])),
                                   order=3, mode="nearest")
        out[i] = window
    return out


def write_chi(path: Path, names, cubes: np.ndarray, grid, cfg: FitConfig, paths) -> None:
    """One χ² cube per object, DRE's Chi layout, written atomically."""
    import h5py

    from astrotool.io.hdf5 import compression_kwargs, provenance_attrs
    from astrotool.workspace import atomic_path

    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w", locking=False) as f:
            f.attrs.update(provenance_attrs("dre fit", config=cfg.model_dump(mode="json")))
            f.attrs.update({"statistic": cfg.statistic, "cuts": printable(paths.cuts), "psf": printable(paths.psf),
                            **{k: v for k, v in grid.header_cards().items()}})
            for name, c in zip(names, cubes):
                if np.all(np.isnan(c)):
                    continue  # as DRE: no cube for an object with no usable pixel
                f.create_dataset(name, data=c.astype(np.float32), **compression_kwargs(cfg.compression))


def object_positions(cuts, psf) -> tuple[np.ndarray, np.ndarray]:
    """1-based ``(X_IMAGE, Y_IMAGE)`` of each cut; DRE's cuts carry none, and then every object sits at the
    PSF's reference position (``POLZERO``), i.e. the constant order-0 PSF."""
    if "X_IMAGE" in cuts.attrs and "Y_IMAGE" in cuts.attrs:
        return (np.asarray(cuts.attrs["X_IMAGE"], float), np.asarray(cuts.attrs["Y_IMAGE"], float))
    n = len(cuts)
    return np.full(n, psf.zero[0]), np.full(n, psf.zero[1])


def object_numbers(cuts, path) -> tuple[np.ndarray, np.ndarray]:
    """``(EXT_NUMBER, NUMBER)`` of each cut: its attributes, else its group name ``EE_NNNN``
    (DRE's cuts files carry no attributes).

    Raises
    ------
    astrotool.errors.InputError
        Neither is there.
    """
    if "NUMBER" in cuts.attrs:
        number = np.asarray(cuts.attrs["NUMBER"]).astype(np.int64)
        ext = np.asarray(cuts.attrs.get("EXT_NUMBER", np.zeros(len(number)))).astype(np.int64)
        return ext, number
    parts = [name.split("_") for name in cuts.names]
    bad = [n for n, p in zip(cuts.names, parts) if not (len(p) == 2 and p[0].isdigit() and p[1].isdigit())]
    if bad:
        raise InputError(path, f"object {bad[0]!r} has no NUMBER attribute and its name is not EXT_NUMBER")
    return (np.array([int(p[0]) for p in parts], np.int64), np.array([int(p[1]) for p in parts], np.int64))


def summary_table(cuts, cols: dict, paths, cfg: FitConfig):
    """Best-fit columns joined to the detection catalogue (without VIGNET); ``cfg`` the ``[dre.fit]`` section."""
    from astropy.table import Table, join

    from astrotool_dre.catalog import read_catalog

    fit = Table({k: np.asarray(v) for k, v in cols.items()})
    fit["EXT_NUMBER"], fit["NUMBER"] = object_numbers(cuts, paths.cuts)
    fit["NAME"] = np.asarray(cuts.names, dtype=str)
    fit["TILE"] = np.full(len(fit), paths.stem)
    cat = read_catalog(paths.cat, vignet=False)
    cat["NUMBER"] = np.asarray(cat["NUMBER"]).astype(np.int64)
    cat["EXT_NUMBER"] = np.asarray(cat["EXT_NUMBER"]).astype(np.int64)
    dup = [c for c in cat.colnames if c in fit.colnames and c not in ("NUMBER", "EXT_NUMBER")]
    for c in dup:
        cat.rename_column(c, f"{c}_CAT")
    if len(fit):
        table = join(fit, cat, keys=["EXT_NUMBER", "NUMBER"], join_type="left")
    else:   # astropy joins no empty table: the same columns, no row
        table = Table([fit[c] for c in fit.colnames] + [cat[c][:0] for c in cat.colnames if c not in fit.colnames])
    table.sort(["EXT_NUMBER", "NUMBER"])
    stellarity = np.asarray(table["CLASS_STAR"], float) if "CLASS_STAR" in table.colnames else np.zeros(len(table))
    table["STAR"] = np.asarray(table["LOGR_EDGE_LO"], bool) | (stellarity >= cfg.star_stellarity)
    order = [c for c in SUMMARY_FIRST if c in table.colnames]
    return table[order + [c for c in table.colnames if c not in order]]


def summary_columns(colnames, flux_unit: str = "", cfg: FitConfig | None = None, grid=None) -> tuple[dict, dict]:
    """Units and descriptions of summary columns (``<name>_CAT``: the catalogue's column ``<name>``).

    Parameters
    ----------
    colnames : iterable of str
        The summary's columns.
    flux_unit : str
        The tile's data unit (:func:`astrotool_dre.catalog.data_unit`), for the flux columns.
    cfg : astrotool_dre.config.FitConfig, optional
        The fit's settings: whether each of ``INDEX``, ``AX_RATIO``, ``ANGLE``, ``LOGR`` was refined
        between grid values (``subgrid``, ``subgrid_axes``) or kept its grid value.
    grid : astrotool_dre.models.Grid, optional
        The model grid: an axis with a single value has a fixed parameter and a NaN ``_ERR``.

    Returns
    -------
    units, descriptions : dict
        Column -> astropy unit string (``""``: none) / description.
    """
    from astrotool_dre.catalog import CATALOG_DESCRIPTIONS, CATALOG_UNITS, FLUX_COLUMNS

    units, descriptions = {}, {}
    for c in colnames:
        base = c[:-4] if c.endswith("_CAT") else c
        flux = base in FLUX_COLUMNS + SKY_COLUMNS or base.startswith("FLUX") and base not in ("FLUX_RADIUS",)
        units[c] = flux_unit if flux else SUMMARY_UNITS.get(base, CATALOG_UNITS.get(base, ""))
        what, _, side = base.rpartition("_EDGE_")
        text = (SUMMARY_DESCRIPTIONS.get(base) or CATALOG_DESCRIPTIONS.get(base)
                or (f"1-sigma error of {base[:-4]}" if base.endswith("_ERR") else None)
                or (f"minimum on the {'lower' if side == 'LO' else 'upper'} grid edge of {what}" if what else None)
                or (f"grid index of the best {GRID_AXES[base[0]]}" if base[1:] == "_IDX" else None))
        if text and c == base and (cfg is not None or grid is not None):
            text = _grid_words(base, text, cfg, grid)
        if text:
            descriptions[c] = text + (" (detection catalogue)" if c.endswith("_CAT") else "")
    return units, descriptions


def _grid_words(name: str, text: str, cfg: FitConfig | None, grid) -> str:
    """``text`` of a grid parameter or its error completed with how the fit found it (see
    :func:`summary_columns`)."""
    param = name[:-4] if name.endswith("_ERR") else name
    if param not in GRID_AXES.values():
        return text
    ax = list(GRID_AXES.values()).index(param)
    if grid is not None and grid.shape[ax] == 1:
        value = grid.axes()[param][0]
        if name.endswith("_ERR"):
            return f"{text}: NaN, as the grid has one {param} value ({value:g}): nothing to measure it from"
        return f"{text}, fixed: the grid's only value ({value:g})"
    if name.endswith("_ERR") or cfg is None:
        return text
    few = grid is not None and grid.shape[ax] < 3
    if cfg.subgrid and param in cfg.subgrid_axes and not few:
        return f"{text} (between grid values)"
    why = ("dre.fit.subgrid = false" if not cfg.subgrid else "not in dre.fit.subgrid_axes"
           if param not in cfg.subgrid_axes else f"the grid has {grid.shape[ax]} {param} values, too few to refine")
    return f"{text} (a grid value: {why})"


def write_summary(table, paths, cfg: FitConfig, zp: float, gain: float, be, flux_unit: str = "",
                  grid=None) -> None:
    """The summary as Parquet and as a FITS table, with units, descriptions and provenance.

    The FITS table's header holds ``MAGZP`` [mag], ``GAIN`` [e-/data unit], ``BUNIT``,
    ``FITSTAT`` (the statistic), ``SUBGRID``, ``NEIGHBRS`` and ``LOCALSKY`` (``dre.fit.subgrid``,
    ``neighbours`` and whether a local sky was fit), ``DETENG`` and ``PSFENG`` (the detection and PSF engines that ran,
    :func:`astrotool_dre.detect.engine_of`) and the provenance keywords (``DATE``, ``CREATOR``, ``ASTROVER``);
    the Parquet file the same facts in its ``astrotool`` metadata.
    """
    from astropy.io import fits

    from astrotool.io.tables import write_fits_table, write_parquet
    from astrotool.workspace import atomic_path
    from astrotool_dre.catalog import astropy_unit, set_tunits, tunit
    from astrotool_dre.detect import engine_of

    meta = {"command": "dre fit", "statistic": cfg.statistic, "subgrid": cfg.subgrid, "neighbours": cfg.neighbours,
            "local_sky": cfg.sky_fitted, "zero_point": zp, "gain": gain,
            "backend": be.name, "device": str(be.device), "cuts": printable(paths.cuts), "psf": printable(paths.psf),
            "tile": paths.stem, "detect_engine": engine_of(paths.cat), "psf_engine": engine_of(paths.psf)}
    for c in table.colnames:  # multidimensional catalogue columns do not go to Parquet
        if table[c].ndim > 1:
            table.remove_column(c)
    units, descriptions = summary_columns(table.colnames, flux_unit, cfg, grid)
    flux = [c for c in table.colnames if units[c] == flux_unit and flux_unit]
    for c in table.colnames:  # the catalogue's own TUNITs (SExtractor's) are replaced by valid astropy units
        table[c].unit = None if c in flux else (units[c] or None)
    # the flux columns: TUNITn set below (BUNIT as written when astropy cannot spell it), as astropy reads
    # BUNIT in Parquet (none when it cannot)
    parquet_units = {c: astropy_unit(flux_unit) for c in flux if astropy_unit(flux_unit)}
    keywords = {"MAGZP": (zp, "[mag] zero point: MAG = MAGZP - 2.5 log10(FLUX)"),
                "GAIN": (gain, "[e-/data unit] gain used for the source noise"),
                "BUNIT": (flux_unit, "data unit of the tile and of FLUX"),
                "FITSTAT": (cfg.statistic, "fit statistic: chi2 or dre"),
                "SUBGRID": (cfg.subgrid, "parameters refined between grid values"),
                "NEIGHBRS": (cfg.neighbours, "neighbours: mask or subtract"),
                "LOCALSKY": (cfg.sky_fitted, "a constant sky fit under each object (SKY)"),
                "DETENG": (meta["detect_engine"], "detection engine that ran"),
                "PSFENG": (meta["psf_engine"], "PSF engine that ran")}
    write_parquet(table, paths.summary, metadata={**meta, "bunit": flux_unit}, command="dre fit",
                  descriptions=descriptions, units=parquet_units)
    with atomic_path(paths.summary_fits) as tmp:   # the flux columns' TUNITn set before it is renamed
        write_fits_table(table, tmp, extname="DRE_SUMMARY", command="dre fit",
                         descriptions=descriptions, keywords=keywords,
                         history=[f"{k}={v}" for k, v in meta.items()])
        if flux:
            with fits.open(tmp, mode="update") as h:
                set_tunits(h["DRE_SUMMARY"].header, table.colnames, {c: tunit(flux_unit) for c in flux})


def recentre(obj: np.ndarray, rms: np.ndarray, mask: np.ndarray, nbr: np.ndarray, dx: float, dy: float):
    """Shift a cut by (dx, dy) pixels so the object lands on the models' centre pixel.

    Data: cubic spline (flux-conserving to ~1e-3 for shifts < 1 px; it smooths the noise:
    :func:`shift_noise_variance`); rms: linear; masks: nearest pixel. Returns the shifted
    ``(obj, rms, mask, nbr)``.
    """
    from scipy import ndimage

    if _unshifted(dx, dy):
        return obj, rms, mask, nbr
    shift = (dy, dx)
    o = ndimage.shift(np.nan_to_num(obj), shift, order=3, mode="nearest")
    r = ndimage.shift(rms, shift, order=1, mode="nearest")
    m = ndimage.shift(mask.astype(np.uint8), shift, order=0, mode="constant", cval=0).astype(bool)
    n = ndimage.shift(nbr.astype(np.uint8), shift, order=0, mode="constant", cval=1).astype(bool)
    return o.astype(np.float32), r.astype(np.float32), m, n


def _unshifted(dx: float, dy: float) -> bool:
    return abs(dx) < 1e-3 and abs(dy) < 1e-3


def shift_noise_variance(dx: float, dy: float) -> float:
    """The variance white noise of unit variance keeps after :func:`recentre`'s cubic-spline shift by
    (``dx``, ``dy``) px: the product over both axes of the sum of the squares of the shift's impulse response
    (1 for whole pixels, 0.57 for half a pixel on both axes). The rms map is not lowered by it (the noise is
    correlated, not smaller in information), so the noise's share of χ² is this times the degrees of freedom.
    """
    from scipy import ndimage

    if _unshifted(dx, dy):
        return 1.0
    impulse = np.zeros(41)   # the spline's response falls as 0.268**k: 1e-9 at 16 px
    impulse[20] = 1.0
    return float(np.prod([np.sum(ndimage.shift(impulse, d - np.round(d), order=3, mode="nearest") ** 2)
                          for d in (dx, dy)]))
