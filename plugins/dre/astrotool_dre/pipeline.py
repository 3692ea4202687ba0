"""The DRE chain per tile, as executor items: detect → psf → cuts → fit → mosaics.

Every stage of a tile is skipped when its outputs exist (unless ``overwrite``), so
re-running an interrupted ``astro dre run`` resumes it. Each item is a frozen
dataclass of paths and typed configuration sections, so it runs the same in this
process, in a worker process or on a Dask worker; the mapper given (such as
:meth:`astrotool.context.Context.map`) decides where.

Paths in a workspace (DRE's names)::

    dre/tiles/<stem>.fits
    dre/sextracted/<stem>/<stem>_{cat,nb,rms,seg}.fits
    dre/psf/<stem>.psf
    dre/cuts/<stem>_cuts.h5
    dre/models/<cube>.fits
    dre/chi/<stem>_chi.h5
    dre/summary/<stem>_dre.{parquet,fits}
    dre/mosaics/<stem>/<stem>_<EXT>_<NUMBER>_mosaic.{fits,png}
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from astrotool.errors import InputError
from astrotool.names import printable

if TYPE_CHECKING:
    from astrotool_dre.config import DreConfig, ModelsConfig, SimulateConfig

__docformat__ = "numpy"

CUBE_VERSION = 1  # bump when the model drawing changes, to invalidate cached cubes


class TilePaths:
    """Every path of one tile's chain inside a workspace.

    Parameters
    ----------
    root : path-like
        Workspace root.
    stem : str
        Tile name without ``.fits``.
    """

    def __init__(self, root, stem: str):
        d = Path(root) / "dre"
        self.stem = stem
        self.tile = d / "tiles" / f"{stem}.fits"
        self.sextracted = d / "sextracted" / stem
        self.cat = self.sextracted / f"{stem}_cat.fits"
        self.nb = self.sextracted / f"{stem}_nb.fits"
        self.rms = self.sextracted / f"{stem}_rms.fits"
        self.seg = self.sextracted / f"{stem}_seg.fits"
        self.psf = d / "psf" / f"{stem}.psf"
        self.cuts = d / "cuts" / f"{stem}_cuts.h5"
        self.chi = d / "chi" / f"{stem}_chi.h5"
        self.summary = d / "summary" / f"{stem}_dre.parquet"
        self.summary_fits = d / "summary" / f"{stem}_dre.fits"
        self.mosaics = d / "mosaics" / stem

    def outputs(self, stage: str) -> list[Path]:
        """Files that mark ``stage`` as finished."""
        return {
            "detect": [self.cat, self.nb, self.rms, self.seg],
            "psf": [self.psf],
            "cuts": [self.cuts],
            "fit": [self.chi, self.summary, self.summary_fits],
            "mosaics": [self.mosaics / ".done"],
        }[stage]

    def done(self, stage: str) -> bool:
        return all(p.exists() for p in self.outputs(stage))


def tiles_in(root, names: list[str] | None = None) -> list[Path]:
    """The tiles to process: ``names`` (paths or stems) or every ``dre/tiles/*.fits``."""
    folder = Path(root) / "dre" / "tiles"
    if names:
        out = []
        for n in names:
            p = Path(n)
            if not p.suffix:
                p = folder / f"{n}.fits"
            if not p.exists():
                raise InputError(p, "tile not found")
            out.append(p.resolve())
        return out
    return sorted(p for p in folder.glob("*.fits") if not p.name.startswith("."))


# ----------------------------------------------------------------------------- models
def cube_path(root, cfg: ModelsConfig) -> Path:
    """Cache path of the cube for these grid settings: ``dre/models/sersic_<hash>.fits``."""
    key = json.dumps({**cfg.model_dump(mode="json"), "version": CUBE_VERSION}, sort_keys=True)
    return Path(root) / "dre" / "models" / f"sersic_{hashlib.sha1(key.encode()).hexdigest()[:10]}.fits"


def model_cube(root, cfg: ModelsConfig, mapper, *, overwrite: bool = False) -> tuple[Path, bool]:
    """The model cube of ``[dre.models]``, built through ``mapper`` unless cached.

    Returns
    -------
    (pathlib.Path, bool)
        The cube's path, and whether it was built now.
    """
    from astrotool.provenance import fits_history
    from astrotool_dre.models import build_cube, grid_from_config, write_cube

    path = cube_path(root, cfg)
    if path.exists() and not overwrite:
        return path, False
    grid = grid_from_config(cfg)
    logging.getLogger("astro").info("building the model cube: %d models of %d² px -> %s", grid.nmodels,
                                    grid.boxsize, path)
    cube = build_cube(grid, mapper, supersample=cfg.supersample)
    write_cube(path, cube, grid, history=fits_history(command="dre models", config=cfg.model_dump(mode="json")))
    return path, True


# ----------------------------------------------------------------------------- per tile
@dataclass(frozen=True)
class TileItem:
    """Executor item: run ``stages`` (in order) for one tile of the workspace at ``root``."""

    tile: Path
    root: Path
    stages: tuple[str, ...]
    cfg: DreConfig
    overwrite: bool
    cube: Path | None  # the model cube, for ``fit`` and ``mosaics``


def run_tiles(tiles: list[Path], root, stages: tuple[str, ...], cfg: DreConfig, mapper, *, overwrite: bool,
              cube: Path | None, desc: str) -> list[dict]:
    """Run ``stages`` over ``tiles`` through ``mapper``; one summary dict per finished tile."""
    items = [TileItem(Path(t), Path(root), tuple(stages), cfg, overwrite, cube) for t in tiles]
    return [r for _, r in mapper(process_tile, items, desc=desc, keys=[printable(Path(t).stem) for t in tiles])]


def process_tile(item: TileItem, seed: int) -> dict:
    """Executor function: run the item's stages for its tile; return ``{"tile", <stage>, <stage>_s}``."""
    paths = TilePaths(item.root, printable(item.tile.stem))  # outputs of a tile whose name is not UTF-8: \xNN
    paths.tile = item.tile
    summary = {"tile": paths.stem}
    for stage in item.stages:
        if paths.done(stage) and not item.overwrite:
            summary[stage] = "skipped (done)"
            continue
        t0 = time.perf_counter()
        summary[stage] = STAGE_FUNCTIONS[stage](paths, item.cfg, item.cube)
        summary[f"{stage}_s"] = round(time.perf_counter() - t0, 2)
    return summary


def _detect(paths: TilePaths, cfg: DreConfig, cube) -> str:
    from astrotool_dre.detect import detect_tile

    out = detect_tile(paths.tile, paths.sextracted, cfg.detect, stem=paths.stem)
    return f"{out['n_sources']} sources ({out['engine']})"


def _psf(paths: TilePaths, cfg: DreConfig, cube) -> str:
    from astrotool_dre.psf import build_psf

    _require(paths.cat, "detect")
    out = build_psf(paths.cat, paths.psf, cfg.psf, nb_path=paths.nb, seg_path=paths.seg)
    return f"{out['engine']} from {out['n_stars']} stars, FWHM {out['fwhm']:.2f} px"


def _cuts(paths: TilePaths, cfg: DreConfig, cube) -> str:
    from astrotool_dre.cuts import make_cuts

    for p in (paths.cat, paths.nb, paths.rms, paths.seg):
        _require(p, "detect")
    out = make_cuts(paths.cat, paths.nb, paths.rms, paths.seg, paths.tile, paths.cuts, cfg.cuts)
    return f"{out['n_cuts']} cuts"


def _fit(paths: TilePaths, cfg: DreConfig, cube) -> str:
    from astrotool_dre.fit_stage import fit_tile

    _require(paths.cuts, "cuts")
    _require(paths.psf, "psf")
    return fit_tile(paths, cfg.fit, cube)


def _mosaics(paths: TilePaths, cfg: DreConfig, cube) -> str:
    from astrotool_dre.mosaics import tile_mosaics

    _require(paths.summary, "fit")
    return tile_mosaics(paths, cfg.mosaics, cfg.fit, cube)


def _require(path: Path, stage: str) -> None:
    if not path.exists():
        raise InputError(path, f"missing; run `astro dre {stage}` first")


STAGE_FUNCTIONS = {"detect": _detect, "psf": _psf, "cuts": _cuts, "fit": _fit, "mosaics": _mosaics}


# ----------------------------------------------------------------------------- simulation
@dataclass(frozen=True)
class SimulateItem:
    """Executor item: simulate the tile ``path``; its truth table and true PSF go to ``truth_dir``."""

    path: Path
    truth_dir: Path
    cfg: SimulateConfig
    overwrite: bool


def simulate_item(item: SimulateItem, seed: int) -> str:
    """Executor function: simulate one tile (skipped when it and its truth table exist)."""
    from astrotool_dre.simulate import simulate_tile

    truth = item.truth_dir / f"{item.path.stem}_truth.parquet"
    if item.path.exists() and truth.exists() and not item.overwrite:
        return "skipped (done)"
    simulate_tile(item.path, truth, item.cfg, seed=seed % (2**31),
                  path_psf=item.truth_dir / f"{item.path.stem}_psf.fits")
    return str(item.path)
