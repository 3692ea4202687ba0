"""``astro dre`` commands: simulate, detect, psf, cuts, models, fit, mosaics, run.

Each command reads its parameters from ``[dre.<stage>]`` (``astro config show
dre``); options given on the command line override them. Tiles are the FITS
files in ``<workspace>/dre/tiles`` unless named as arguments. Tiles run through
the executor (``--executor process -j N``, ``--executor dask``, ``--shard i/N``);
finished outputs made with the same settings are skipped, those made with other
settings refused (exit 2) unless ``--overwrite`` (``astrotool.made_with``).
"""

from __future__ import annotations

import functools
from pathlib import Path

import typer

from astrotool.context import astro_command, current

__docformat__ = "numpy"

app = typer.Typer(no_args_is_help=True)
"""Typer app of ``astro dre``."""

TILES = typer.Argument(None, help="Tiles (paths or names in dre/tiles); default: every dre/tiles/*.fits "
                                   "(.fits.gz, .fits.fz, .fit too).")
"""The tiles argument shared by the per-tile commands."""


@app.callback()
def main():
    """Galaxy morphology (DRE): detect, PSF, cuts, Sérsic model grid, batched χ² fit."""


SAME_OPTION = {"fit.gain": "detect.gain"}
"""Keys ``dre run`` sets from the option of another key (``--gain``: ``dre.detect.gain`` and ``dre.fit.gain``)."""


def _section(ctx, flags: dict):
    """The validated ``[dre]`` section with the command's ``flags``; one problem per option: a value that
    ``--gain`` gives both ``dre.detect.gain`` and ``dre.fit.gain`` is reported once, as ``--gain``'s."""
    from astrotool.errors import ConfigError

    try:
        return ctx.section("dre", flags)
    except ConfigError as exc:
        twins = [k for k, first in SAME_OPTION.items()
                 if flags.get(k) is not None and flags.get(k) == flags.get(first)
                 and any(f": dre.{first}: " in p for p in exc.problems)]
        if not twins:
            raise
        raise ConfigError([p for p in exc.problems if not any(f": dre.{k}: " in p for k in twins)]) from None


def _run_stages(stages: tuple[str, ...], tiles: list[str] | None, flags: dict, cube: Path | None = None,
                desc: str | None = None) -> list[dict]:
    from astrotool.errors import AstroError
    from astrotool_dre.pipeline import (TilePaths, check_cut_rooms, check_filters, check_tile_files, check_tiles,
                                        check_upstream, check_weight_maps, cube_path, run_tiles, tiles_in)
    from astrotool_dre.stages import FOLDERS
    from astrotool_dre.tiles import TILE_SUFFIXES

    ctx = current()
    cfg = _section(ctx, flags)
    if "fit" in stages and cfg.fit.local_sky and not cfg.fit.sky_fitted:   # once, and out of the fit's record
        ctx.log.warning(f"dre.fit.local_sky = true is ignored with the statistic {cfg.fit.statistic!r}: "
                        "only 'chi2' fits a local sky")
        cfg = cfg.model_copy(update={"fit": cfg.fit.model_copy(update={"local_sky": False})})
    ws = ctx.workspace
    for name in FOLDERS:
        ws.stage("dre", name)
    todo = tiles_in(ws.root, tiles, weight_image=cfg.detect.weight_image, weight_type=cfg.detect.weight_type)
    if not todo:
        raise AstroError(f"{ws.root / 'dre' / 'tiles'}: no tiles ({', '.join('*' + e for e in TILE_SUFFIXES)}); "
                         f"run `{astro_command('dre', 'simulate')}` or copy tiles there")
    check_upstream(todo, ws.root, stages)
    if "detect" in stages:   # a missing weight map, before a setting of it is read as a settings change
        check_weight_maps(ctx.shard_of(todo), cfg)
    if "cuts" in stages:   # an unknown filter column, before the settings of finished cuts are compared
        check_filters(ctx.shard_of(todo), ws.root, cfg, detect_again="detect" in stages and bool(ctx.overwrite))
    if "detect" in stages:  # an engine that cannot run is one usage error, not one failure per tile
        from astrotool_dre.detect import sextractor_for

        sextractor_for(cfg.detect)
    if "detect" in stages:  # a run whose every tile is no image stops before the model cube is built
        check_tile_files(ctx.shard_of(todo))
    if "cuts" in stages:  # a tile smaller than a cut: refused before its detection and PSF, not after
        check_cut_rooms(ctx.shard_of(todo), cfg)
    if "fit" in stages:  # an impossible backend/device is one usage error, not one failure per tile
        from astrotool.backends import get_backend

        get_backend(cfg.fit.backend, cfg.fit.device)
    modelled = "fit" in stages or "mosaics" in stages
    # every refusal before the cube is built (minutes for the default grid)
    from astrotool.config import OPTION_SOURCE, packaged_source

    check_tiles(ctx.shard_of(todo), ws.root, stages, cfg, overwrite=ctx.overwrite,
                cube=(cube or cube_path(ws.root, cfg.models)) if modelled else None,
                user_keys=frozenset(k for k, s in ctx.config.sources.items()
                                    if not (packaged_source(s) or s.startswith(OPTION_SOURCE))))
    if cube is None and modelled:
        cube = ensure_cube(ctx, cfg)
    for t in ctx.shard_of(todo):
        ctx.record.add_input(t)
    if "detect" in stages and cfg.detect.engine != "photutils":
        ctx.record.add_program("source-extractor", ["source-extractor", "sex"])
    if "psf" in stages and cfg.psf.engine != "photutils":
        ctx.record.add_program("psfex", ["psfex"])

    def written(r):   # a tile's outputs, in run.json as the tile finishes
        return [p for stage in stages for p in TilePaths(ws.root, r["tile"]).outputs(stage) if p.exists()]

    results = run_tiles(todo, ws.root, stages, cfg, functools.partial(ctx.map, outputs=written),
                        overwrite=ctx.overwrite, cube=cube, desc=desc or " → ".join(stages))
    for r in results:
        for p in written(r):
            ctx.record.add_output(p)
    ctx.record.extra["tiles"] = results   # each stage's line and facts (the engines that ran) in run.json
    cols = ["tile", *stages]
    _print_tiles(ctx, f"astro dre {'/'.join(stages)}", cols, [[r.get(c, "") for c in cols] for r in results])
    return results


def _print_tiles(ctx, title: str, columns: list[str], rows: list[list]) -> None:
    """The per-tile result: a table, or with ``--json`` the object ``{"tiles": [{column: value}],
    "failures": [{"item", "error"}]}`` (``failures`` only when tiles failed, through ``ctx.emit``)."""
    from astrotool import console

    if console.json_results():
        ctx.emit({"tiles": [dict(zip(columns, r)) for r in rows]})
    else:
        console.print_table(title, columns, rows)


def ensure_cube(ctx, cfg, overwrite: bool = False) -> Path:
    """The model cube for ``[dre.models]``, built (slabs through the executor) if not cached.

    The cube is content-addressed (its name is the hash of ``[dre.models]``), so another stage's
    ``--overwrite`` reuses it; only ``astro dre models --overwrite`` builds it again. Every slab is built
    under ``--shard`` too (a shard needs the whole cube; written atomically, shards that build it at once
    leave one whole file): build it once with ``astro dre models`` before a Slurm array.
    """
    import dataclasses

    from astrotool_dre.pipeline import cube_path, model_cube

    whole = dataclasses.replace(ctx.executor_options, shard=None)
    if ctx.executor_options.shard is not None and (overwrite or not cube_path(ctx.workspace.root, cfg.models).exists()):
        ctx.log.warning("--shard: this shard builds the whole model cube; build it once with `%s` "
                        "before the array", astro_command("dre", "models"))

    def mapper(fn, items, desc, keys=None):
        return ctx.map(fn, items, desc, keys=keys, options=whole)

    path, built = model_cube(ctx.workspace.root, cfg.models, mapper, overwrite=overwrite)
    if built:
        ctx.record.add_output(path)
    return path


@app.command()
def simulate(
    n_tiles: int = typer.Option(None, "-n", "--n-tiles", help="Number of tiles."),
    size: int = typer.Option(None, help="Tile side [px]."),
    n_galaxies: int = typer.Option(None, help="Galaxies per tile."),
    n_stars: int = typer.Option(None, help="Stars per tile."),
    name: str = typer.Option(None, "--name", help="Tile names <name>_<i>.fits."),
):
    """Simulate survey-like tiles (GalSim Sérsic galaxies and stars, known PSF, sky, noise) with a truth table."""
    from astrotool_dre.pipeline import SimulateItem, check_simulate, simulate_item, simulate_outputs

    ctx = current()
    cfg = _section(ctx, {"simulate.n_tiles": n_tiles, "simulate.size": size, "simulate.n_galaxies": n_galaxies,
                         "simulate.n_stars": n_stars, "simulate.name": name})
    s = cfg.simulate
    tiles = ctx.workspace.stage("dre", "tiles")
    truth = tiles / "truth"
    truth.mkdir(exist_ok=True)
    names = [f"{s.name}_{i:03d}" for i in range(s.n_tiles)]
    items = [SimulateItem(tiles / f"{n}.fits", truth, s, ctx.overwrite, ctx.seed) for n in names]
    check_simulate(items, overwrite=ctx.overwrite)
    drawn = {str(it.path): it for it in items}   # simulate_item returns the path of a tile it drew
    by_name = dict(zip(names, items))
    results = ctx.map(simulate_item, items, desc="simulate tiles", keys=names,
                      outputs=lambda r: simulate_outputs(drawn[r]) if r in drawn else [])
    for key, _ in results:   # the kept tiles too
        for path in simulate_outputs(by_name[key]):
            ctx.record.add_output(path)
    _print_tiles(ctx, "astro dre simulate", ["tile", "result"], [[k, r] for k, r in results])


@app.command()
def detect(tiles: list[str] = TILES,
           engine: str = typer.Option(None, help="Source detection: SExtractor, photutils, or auto (SExtractor when installed)."),
           gain: str = typer.Option(None, help="counts (header GAIN) | cps (GAIN*EXPTIME) | a number [e-/unit].")):
    """Detect sources: SExtractor when installed (FITS_LDAC catalogue, -BACKGROUND, BACKGROUND_RMS,
    SEGMENTATION), photutils otherwise (same files and columns)."""
    _run_stages(("detect",), tiles, {"detect.engine": engine, "detect.gain": gain})


@app.command()
def psf(tiles: list[str] = TILES, engine: str = typer.Option(None, help="PSF builder: PSFEx, photutils, or auto (PSFEx when installed).")):
    """Build each tile's PSF from its stars: PSFEx (PSF_SAMPLING 1) when installed, photutils ePSF otherwise."""
    _run_stages(("psf",), tiles, {"psf.engine": engine})


@app.command()
def cuts(tiles: list[str] = TILES,
         margin: float = typer.Option(None, help="Skip objects closer to the edge [px]."),
         max_stellarity: float = typer.Option(None, help="Skip objects with CLASS_STAR >= this (1.0 keeps all)."),
         filter: list[str] = typer.Option(None, "--filter", help="COLUMN,MIN,MAX or \"COLUMN MIN MAX\" (repeatable): keep MIN < COLUMN < MAX, e.g. FLUX_RADIUS,2,20."),
         compression: str = typer.Option(None, help="Compression of the cuts HDF5.")):
    """Cut 128×128 stamps (obj, seg, rms and neighbour mask) of the selected objects to HDF5."""
    filters = parse_filters(filter) if filter else None
    _run_stages(("cuts",), tiles, {"cuts.margin": margin, "cuts.max_stellarity": max_stellarity,
                                   "cuts.filters": filters, "cuts.compression": compression})


def parse_filters(texts: list[str]) -> list[list]:
    """Parse ``--filter`` values ``"COLUMN,MIN,MAX"`` (or ``"COLUMN MIN MAX"``) into ``[[COLUMN, MIN, MAX]]``."""
    import math
    import re

    from astrotool.errors import AstroError

    out = []
    for text in texts:
        parts = [p for p in re.split(r"[,\s]+", text.strip()) if p]
        if len(parts) != 3:
            raise AstroError(f"--filter {text!r}: expected COLUMN,MIN,MAX (e.g. FLUX_RADIUS,2,20)")
        try:
            lo, hi = float(parts[1]), float(parts[2])
        except ValueError:
            raise AstroError(f"--filter {text!r}: MIN and MAX must be numbers") from None
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise AstroError(f"--filter {text!r}: MIN and MAX must be finite numbers (a wide range keeps all)")
        if not lo < hi:
            raise AstroError(f"--filter {text!r}: MIN must be below MAX")
        out.append([parts[0], lo, hi])
    return out


@app.command()
def models():
    """Build (or reuse) the PSF-free Sérsic model cube for [dre.models] in dre/models."""
    ctx = current()
    path = ensure_cube(ctx, _section(ctx, {}), overwrite=ctx.overwrite)
    ctx.emit(str(path))


@app.command()
def fit(tiles: list[str] = TILES,
        statistic: str = typer.Option(None, help="chi2: weighted least squares; dre: DRE's original statistic."),
        backend: str = typer.Option(None, help="Array backend."),
        device: str = typer.Option(None, help="Device of the backend: auto | cpu | cuda | cuda:N."),
        batch_size: int = typer.Option(None, help="Objects per matrix product."),
        cube: Path = typer.Option(None, help="Use this model cube (ours or DRE's) instead of dre/models."),
        gain: str = typer.Option(None, help="Source-noise gain: counts | cps | a number.")):
    """Fit every cut with every PSF-convolved model: least-squares flux and χ² in batches;
    Chi HDF5 and a summary table (Parquet + FITS) joined to the catalogue."""
    _check_cube(cube)
    _run_stages(("fit",), tiles, {"fit.statistic": statistic, "fit.backend": backend, "fit.device": device,
                                  "fit.batch_size": batch_size, "fit.gain": gain}, cube=cube)


def _check_cube(cube: Path | None) -> None:
    """A named model cube that is missing or unreadable is one usage error, not one failure per tile."""
    from astrotool.errors import InputError

    if cube is not None:
        from astrotool_dre.models import read_cube

        if not cube.exists():
            raise InputError(cube, "model cube not found")
        read_cube(cube)


@app.command()
def mosaics(tiles: list[str] = TILES, cube: Path = typer.Option(None, help="The model cube used by fit.")):
    """Write data | mask | model | residual mosaics per object (FITS and PNG); earlier ones of the tile go."""
    _check_cube(cube)
    _run_stages(("mosaics",), tiles, {}, cube=cube)


@app.command()
def run(tiles: list[str] = TILES,
        mosaics: bool = typer.Option(True, "--mosaics/--no-mosaics", help="Also write mosaics."),
        detect__engine: str = typer.Option(None, "--detect-engine", help="Source detection (dre.detect.engine)."),
        detect__gain: str = typer.Option(None, "--gain", help="counts | cps | a number [e-/unit], for detect and fit."),
        psf__engine: str = typer.Option(None, "--psf-engine", help="PSF builder (dre.psf.engine)."),
        cuts__margin: float = typer.Option(None, "--margin", help="Skip objects closer to the edge [px]."),
        cuts__max_stellarity: float = typer.Option(None, "--max-stellarity",
                                                   help="Skip objects with CLASS_STAR >= this (1.0 keeps all)."),
        filter: list[str] = typer.Option(None, "--filter", help="COLUMN,MIN,MAX (repeatable), as for `dre cuts`."),
        cuts__compression: str = typer.Option(None, "--compression", help="Compression of the cuts HDF5."),
        fit__statistic: str = typer.Option(None, "--statistic", help="Fit statistic (dre.fit.statistic)."),
        fit__backend: str = typer.Option(None, "--backend", help="Array backend of the fit."),
        fit__device: str = typer.Option(None, "--device", help="Device of the fit: auto | cpu | cuda | cuda:N."),
        fit__batch_size: int = typer.Option(None, "--batch-size", help="Objects per matrix product."),
        cube: Path = typer.Option(None, help="Use this model cube (ours or DRE's) instead of dre/models.")):
    """The whole chain (detect → psf → cuts → fit → mosaics) over every tile, resumable.

    Takes the options of its stages: --detect-engine, --gain, --psf-engine, the cuts' and the fit's."""
    from astrotool_dre.stages import TILE_STAGES

    _check_cube(cube)
    stages = tuple(s for s in TILE_STAGES if mosaics or s != "mosaics")
    _run_stages(stages, tiles, {"detect.engine": detect__engine, "detect.gain": detect__gain,
                                "psf.engine": psf__engine, "cuts.margin": cuts__margin,
                                "cuts.max_stellarity": cuts__max_stellarity,
                                "cuts.filters": parse_filters(filter) if filter else None,
                                "cuts.compression": cuts__compression, "fit.statistic": fit__statistic,
                                "fit.backend": fit__backend, "fit.device": fit__device,
                                "fit.batch_size": fit__batch_size, "fit.gain": detect__gain},
                cube=cube, desc="dre run")
