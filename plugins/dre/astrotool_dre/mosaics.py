"""``astro dre mosaics``: data | segment | model | residual panels for each fitted object.

One ``B × 4B`` FITS image per object (DRE's ``make_mosaic`` layout: the data, the
fit mask scaled to the mean data value inside it, the best-fit model scaled by
its fitted flux, and the residual), plus a PNG of the same panels with a shared
colour scale (asinh stretch) for looking at many objects quickly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from astrotool_dre.config import FitConfig, MosaicsConfig

__docformat__ = "numpy"


def object_panels(data: np.ndarray, mask: np.ndarray, model: np.ndarray) -> np.ndarray:
    """The four panels side by side: data | mask × mean(data in mask) | model | data − model."""
    level = float(np.nanmean(data[mask])) if mask.any() else 0.0
    return np.hstack([data, mask * level, model, data - model]).astype(np.float32)


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

    from astrotool.io.tables import read_parquet
    from astrotool.provenance import fits_history
    from astrotool.workspace import atomic_path
    from astrotool_dre.convolve import convolve_cube
    from astrotool_dre.fit_stage import load_inputs, prepare_stamps

    cuts, psf, cube, grid, _ = load_inputs(paths, cube_file)
    table = read_parquet(paths.summary).to_pandas().set_index("NAME")
    data, _, mask = prepare_stamps(cuts, grid.center, fit.recentre)
    names = [n for n in cuts.names if n in table.index]
    if cfg.max_objects:
        names = names[: cfg.max_objects]
    out = paths.mosaics
    out.mkdir(parents=True, exist_ok=True)
    index = {n: i for i, n in enumerate(cuts.names)}
    idx = table.loc[names, ["N_IDX", "E_IDX", "T_IDX", "R_IDX"]].to_numpy(int) if names else np.zeros((0, 4), int)
    models = convolve_cube(cube[tuple(idx.T)], psf, remove_pixel=fit.psf_has_pixel) if len(idx) else np.zeros((0,) + cube.shape[-2:])
    history = fits_history(command="dre mosaics") + ["data | mask*mean | model | residual"]
    written = 0
    for name, model in zip(names, models):
        row = table.loc[name]
        i = index[name]
        panels = object_panels(data[i], mask[i], model * float(row["FLUX_GRID"]))
        stem = out / f"{paths.stem}_{name}_mosaic"
        hdu = fits.PrimaryHDU(panels)
        for key in ("AX_RATIO", "ANGLE", "LOGR", "FLUX", "CHI2_NU"):
            hdu.header[key] = float(row[key])
        for line in history:
            hdu.header.add_history(line)
        with atomic_path(stem.with_suffix(".fits")) as tmp:
            hdu.writeto(tmp)
        if cfg.png:
            save_png(panels, stem.with_suffix(".png"),
                     f"{paths.stem} {name}: q={row['AX_RATIO']:.2f} PA={row['ANGLE']:.0f}° "
                     f"logR={row['LOGR']:.2f} χ²ν={row['CHI2_NU']:.2f}")
        written += 1
    with atomic_path(out / ".done") as tmp:
        tmp.write_text(f"{written}\n")
    return f"{written} mosaics"


def save_png(panels: np.ndarray, path, title: str) -> None:
    """Save the panels as a PNG (matplotlib Agg, asinh stretch, shared scale)."""
    from astrotool.io.figures import pyplot, save_figure

    plt = pyplot()
    b = panels.shape[0]
    model = panels[:, 2 * b: 3 * b]
    scale = float(np.nanmax(model)) if np.nanmax(model) > 0 else float(np.nanpercentile(panels[:, :b], 99.9))
    scale = max(scale, 1e-12)
    soft = 0.02 * scale  # asinh softening: linear below ~2 % of the model's peak
    fig, ax = plt.subplots(figsize=(8, 2.3), dpi=100)
    ax.imshow(np.arcsinh(panels / soft), origin="lower", cmap="gray_r",
              vmin=np.arcsinh(-0.1 * scale / soft), vmax=np.arcsinh(scale / soft))
    for k, label in enumerate(["data", "mask", "model", "residual"]):
        ax.text(k * b + 4, b - 12, label, color="tab:red", fontsize=8)
    ax.set_title(title, fontsize=8)
    ax.set_axis_off()
    fig.tight_layout()
    save_figure(fig, path, dpi=100)
