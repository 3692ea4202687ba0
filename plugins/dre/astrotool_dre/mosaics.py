"""``astro dre mosaics``: data | segment | model | residual panels for each fitted object.

One ``B × 4B`` FITS image per object (DRE's ``make_mosaic`` layout: the data, the
fit mask scaled to the mean data value inside it, the best-fit model scaled by
its fitted flux, and the residual), plus a PNG of the same panels with a shared
colour scale for looking at many objects quickly: an ``astropy.visualization``
asinh stretch whose limits come from the object's data (zscale, so faint
outskirts show) and a colour bar in the tile's data unit.

The header names the object (``TILE``, ``NAME``) and the fit statistic that
made it (``FITSTAT``, from the summary) and gives the fit as ``INDEX``,
``AX_RATIO``, ``ANGLE`` (degrees counter-clockwise from the image +x axis, in
[0, 180): an angle on the pixel grid, not a position angle east of north),
``LOGR``, ``FLUX`` and ``CHI2_NU``; the PNG title gives the same but ``FLUX``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from astrotool_dre.config import FitConfig, MosaicsConfig

__docformat__ = "numpy"


MOSAIC_KEYS = {
    "INDEX": "Sersic index of the best model",
    "AX_RATIO": "axis ratio b/a of the best model",
    "ANGLE": "[deg] major axis, CCW from image +x, [0, 180)",
    "LOGR": "log10 major-axis half-light radius [pix]",
    "FLUX": "total flux of the best model [BUNIT]",
    "CHI2_NU": "chi-square per degree of freedom",
}
"""Header keywords of a mosaic FITS file (the summary's values for the object) and their comments."""
SUMMARY_COLUMNS = ["NAME", "N_IDX", "E_IDX", "T_IDX", "R_IDX", "FLUX_GRID", *MOSAIC_KEYS]
"""Columns of the summary the mosaics read."""


def object_panels(data: np.ndarray, mask: np.ndarray, model: np.ndarray) -> np.ndarray:
    """The four panels side by side: data | mask × mean(data in mask) | model | data − model."""
    level = float(np.nanmean(data[mask])) if mask.any() else 0.0
    return np.hstack([data, mask * level, model, data - model]).astype(np.float32)


def check_same_grid(chi_path, grid) -> None:
    """Refuse (exit 2) to draw models of one grid for a fit made on another.

    Raises
    ------
    astrotool.errors.InputError
        ``chi_path`` (the fit's χ² file) records other grid axes than ``grid``'s.
    """
    from astrotool.errors import InputError
    from astrotool.io.hdf5 import open_h5

    with open_h5(chi_path) as f:   # a truncated file is named, not a bare OSError
        made = {k: f.attrs[k] for k in grid.header_cards() if k in f.attrs}
    other = {k: v for k, v in made.items() if not np.isclose(float(v), float(grid.header_cards()[k]))}
    if other:
        k = sorted(other)[0]
        raise InputError(chi_path, f"was fit on another model grid ({k} = {other[k]}, the cube has "
                                   f"{grid.header_cards()[k]}); fit again with these [dre.models] settings")


def tile_mosaics(paths, cfg: MosaicsConfig, fit: FitConfig, cube_file) -> str:
    """Write every object's mosaic for one tile; return a summary line.

    Parameters
    ----------
    paths : astrotool_dre.pipeline.TilePaths
        Where the tile's cuts, PSF, summary and mosaics are.
    cfg : astrotool_dre.config.MosaicsConfig
        The ``[dre.mosaics]`` section.
    fit : astrotool_dre.config.FitConfig
        The ``[dre.fit]`` section the summary was fit with (recentring, PSF pixel response).
    cube_file : path-like
        The model cube used by the fit.
    """
    from astropy.io import fits

    from astrotool.io.tables import parquet_metadata, read_parquet
    from astrotool.provenance import provenance, stamp_fits
    from astrotool_dre.catalog import data_unit
    from astrotool.workspace import atomic_path
    from astrotool_dre.convolve import convolve_cube
    from astrotool_dre.fit_stage import load_inputs, object_positions, prepare_stamps

    cuts, psf, cube, grid, header = load_inputs(paths, cube_file)
    check_same_grid(paths.chi, grid)
    unit = data_unit(header)
    table = read_parquet(paths.summary, SUMMARY_COLUMNS).to_pandas().set_index("NAME")
    statistic = parquet_metadata(paths.summary).get("statistic", "")   # the fit's, whatever the settings now
    data, _, mask, _ = prepare_stamps(cuts, grid.center, fit.recentre)
    names = [n for n in cuts.names if n in table.index]
    if cfg.max_objects:
        names = names[: cfg.max_objects]
    out = paths.mosaics
    out.mkdir(parents=True, exist_ok=True)
    for old in [out / ".done", *out.glob(f"{paths.stem}_*_mosaic.fits"), *out.glob(f"{paths.stem}_*_mosaic.png")]:
        old.unlink(missing_ok=True)   # an earlier fit's or setting's mosaics would pass for this one's
    index = {n: i for i, n in enumerate(cuts.names)}
    idx = table.loc[names, ["N_IDX", "E_IDX", "T_IDX", "R_IDX"]].to_numpy(int) if names else np.zeros((0, 4), int)
    x, y = object_positions(cuts, psf) if names else ((), ())   # no object: no PSF either
    models = [convolve_cube(cube[tuple(i)][None], psf.at(x[index[n]], y[index[n]]), remove_pixel=fit.psf_has_pixel)[0]
              for n, i in zip(names, idx)]
    record = provenance("dre mosaics")
    history = ["panels: data | mask x mean(data in mask) | model | data - model"]
    written = 0
    for name, model in zip(names, models):
        row = table.loc[name]
        i = index[name]
        panels = object_panels(data[i], mask[i], model * float(row["FLUX_GRID"]))
        stem = out / f"{paths.stem}_{name}_mosaic"
        hdu = fits.PrimaryHDU(panels)
        hdu.header["TILE"] = (paths.stem, "tile of the object (summary TILE)")
        hdu.header["NAME"] = (name, "object EXT_NUMBER_NUMBER (summary NAME)")
        hdu.header["FITSTAT"] = (statistic, "fit statistic: chi2 or dre")
        for key, comment in MOSAIC_KEYS.items():
            hdu.header[key] = (float(row[key]), comment)
        hdu.header["BUNIT"] = (unit, "data unit of the tile")
        stamp_fits(hdu.header, record, history)
        with atomic_path(stem.with_suffix(".fits")) as tmp:
            hdu.writeto(tmp)
        if cfg.png:
            save_png(panels, stem.with_suffix(".png"),
                     f"{paths.stem} {name} ({statistic}): n={row['INDEX']:.2f}  q={row['AX_RATIO']:.2f}  "
                     f"ANGLE={row['ANGLE']:.0f}° (CCW from +x)  logR={row['LOGR']:.2f}  χ²ν={row['CHI2_NU']:.2f}",
                     unit=unit)
        written += 1
    with atomic_path(out / ".done") as tmp:
        tmp.write_text(f"{written}\n")
    return f"{written} mosaic{'' if written == 1 else 's'}"


def save_png(panels: np.ndarray, path, title: str, unit: str = "") -> None:
    """Save the panels as a PNG: one asinh stretch for all four, its limits from the data panel
    (:func:`astrotool.io.figures.image_norm`: the sky from all its pixels, the top from the pixels of the fit
    mask, so that a star beside a faint galaxy does not set the scale), and a colour bar in ``unit`` (the
    tile's data unit)."""
    from astrotool.io.figures import image_norm, pyplot, save_figure

    plt = pyplot()
    b = panels.shape[0]
    fig, ax = plt.subplots(figsize=(8.6, 2.4), dpi=100)
    data, in_mask = panels[:, :b], panels[:, b:2 * b] != 0
    im = ax.imshow(panels, origin="lower", cmap="gray_r", norm=image_norm(data, top=data[in_mask]))
    for k, label in enumerate(["data", "mask", "model", "residual"]):
        ax.text(k * b + 4, b - 12, label, color="tab:red", fontsize=8)
    ax.set_title(title, fontsize=8)
    ax.set_axis_off()
    bar = fig.colorbar(im, ax=ax, fraction=0.03, pad=0.01)
    bar.set_label(unit or "data units", fontsize=7)
    bar.ax.tick_params(labelsize=6)
    save_figure(fig, path, dpi=100)
