"""The DRE chain per tile, as executor items: detect → psf → cuts → fit → mosaics.

Every stage of a tile is skipped when its outputs exist (unless ``overwrite``), so
re-running an interrupted ``astro dre run`` resumes it. Each item gets plain
values (paths, config dicts) so it runs the same in this process, in a worker
process or on a Dask worker.

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
import time
from pathlib import Path

import numpy as np

from astrotool.errors import InputError

__docformat__ = "numpy"

STAGES = ("detect", "psf", "cuts", "fit", "mosaics")
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
def grid_from_config(mcfg: dict):
    """A :class:`~astrotool_dre.models.ModelGrid` from the ``[dre.models]`` values."""
    from astrotool_dre.models import ModelGrid

    keys = ("index0", "dindex", "nindex", "axrat0", "daxrat", "naxrat", "posang0", "dposang", "nposang",
            "logh0", "dlogh", "nlogh", "boxsize")
    return ModelGrid(**{k: mcfg[k] for k in keys})


def cube_path(root, mcfg: dict) -> Path:
    """Cache path of the cube for these grid settings: ``dre/models/sersic_<hash>.fits``."""
    key = json.dumps({**mcfg, "version": CUBE_VERSION}, sort_keys=True)
    return Path(root) / "dre" / "models" / f"sersic_{hashlib.sha1(key.encode()).hexdigest()[:10]}.fits"


def build_slab_item(item, seed):
    """Executor item: one (index, axis ratio) slab of the cube."""
    mcfg, i_index, i_q = item
    from astrotool_dre.models import build_slab

    return build_slab(grid_from_config(mcfg), i_index, i_q, supersample=mcfg["supersample"])


# ----------------------------------------------------------------------------- per tile
def process_tile(item, seed):
    """Executor item: run ``stages`` for one tile; return a summary dict.

    ``item`` is ``(tile_path, root, stages, cfg, overwrite, cube)`` with ``cfg`` the
    ``[dre]`` section as a dict and ``cube`` the model cube path (for ``fit``).
    """
    tile, root, stages, cfg, overwrite, cube = item
    stem = Path(tile).stem
    paths = TilePaths(root, stem)
    paths.tile = Path(tile)
    summary = {"tile": stem}
    for stage in stages:
        if paths.done(stage) and not overwrite:
            summary[stage] = "skipped (done)"
            continue
        t0 = time.perf_counter()
        summary[stage] = STAGE_FUNCTIONS[stage](Path(tile), paths, cfg, cube)
        summary[f"{stage}_s"] = round(time.perf_counter() - t0, 2)
    return summary


def _detect(tile, paths, cfg, cube):
    from astrotool_dre.detect import detect_tile

    out = detect_tile(tile, paths.sextracted, stem=paths.stem, **cfg["detect"])
    return f"{out['n_sources']} sources ({out['engine']})"


def _psf(tile, paths, cfg, cube):
    from astrotool_dre.psf import build_psf

    _require(paths.cat, "detect")
    out = build_psf(paths.cat, paths.psf, nb_path=paths.nb, seg_path=paths.seg, **cfg["psf"])
    return f"{out['engine']} from {out['n_stars']} stars, FWHM {out['fwhm']:.2f} px"


def _cuts(tile, paths, cfg, cube):
    from astrotool_dre.cuts import make_cuts

    for p in (paths.cat, paths.nb, paths.rms, paths.seg):
        _require(p, "detect")
    c = dict(cfg["cuts"])
    c["filters"] = [tuple(f) for f in c["filters"]]
    out = make_cuts(paths.cat, paths.nb, paths.rms, paths.seg, tile, paths.cuts, **c)
    return f"{out['n_cuts']} cuts"


def _fit(tile, paths, cfg, cube):
    from astrotool_dre.fitting import fit_tile

    _require(paths.cuts, "cuts")
    _require(paths.psf, "psf")
    return fit_tile(tile, paths, cfg, cube)


def _mosaics(tile, paths, cfg, cube):
    from astrotool_dre.mosaics import tile_mosaics

    _require(paths.summary, "fit")
    return tile_mosaics(paths, cfg, cube)


def _require(path: Path, stage: str) -> None:
    if not path.exists():
        raise InputError(path, f"missing; run `astro dre {stage}` first")


STAGE_FUNCTIONS = {"detect": _detect, "psf": _psf, "cuts": _cuts, "fit": _fit, "mosaics": _mosaics}


def simulate_item(item, seed):
    """Executor item: simulate one tile (its truth table and true PSF go to ``dre/tiles/truth``)."""
    path, truth_dir, scfg, overwrite = item
    from astrotool_dre.simulate import simulate_tile

    path = Path(path)
    truth = Path(truth_dir) / f"{path.stem}_truth.parquet"
    if path.exists() and truth.exists() and not overwrite:
        return "skipped (done)"
    kw = {k: v for k, v in scfg.items() if k not in ("ntiles", "prefix")}
    for k in ("logr_range", "q_range", "galaxy_snr", "star_snr"):
        kw[k] = tuple(kw[k])
    if isinstance(kw["sersic_n"], list):
        kw["sersic_n"] = tuple(kw["sersic_n"])
    simulate_tile(path, truth, seed=seed % (2**31), path_psf=Path(truth_dir) / f"{path.stem}_psf.fits", **kw)
    return str(path)


def recentre(obj: np.ndarray, rms: np.ndarray, mask: np.ndarray, nbr: np.ndarray, dx: float, dy: float):
    """Shift a cut by (dx, dy) pixels so the object lands on the models' centre pixel.

    Data: cubic spline (flux-conserving to ~1e-3 for shifts < 1 px); rms: linear;
    masks: nearest pixel. Returns the shifted ``(obj, rms, mask, nbr)``.
    """
    from scipy import ndimage

    if abs(dx) < 1e-3 and abs(dy) < 1e-3:
        return obj, rms, mask, nbr
    shift = (dy, dx)
    o = ndimage.shift(np.nan_to_num(obj), shift, order=3, mode="nearest")
    r = ndimage.shift(rms, shift, order=1, mode="nearest")
    m = ndimage.shift(mask.astype(np.uint8), shift, order=0, mode="constant", cval=0).astype(bool)
    n = ndimage.shift(nbr.astype(np.uint8), shift, order=0, mode="constant", cval=1).astype(bool)
    return o.astype(np.float32), r.astype(np.float32), m, n
