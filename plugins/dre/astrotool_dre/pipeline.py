"""The DRE chain per tile, as executor items: detect → psf → cuts → fit → mosaics.

Every stage of a tile is skipped when its outputs exist and were made with the same
settings (:func:`stage_record`, kept beside them by :mod:`astrotool.made_with`), so
re-running an interrupted ``astro dre run`` resumes it; outputs made with other
settings are refused before any work (exit 2) unless ``overwrite``. Each item is a frozen
dataclass of paths and typed configuration sections, so it runs the same in this
process, in a worker process or on a Dask worker; the mapper given (such as
:meth:`astrotool.context.Context.map`) decides where.

Paths in a workspace (DRE's names)::

    dre/tiles/<stem>.fits        (or .fits.gz, .fits.fz, .fit: :data:`astrotool_dre.tiles.TILE_SUFFIXES`)
    dre/sextracted/<stem>/<stem>_{cat,nb,rms,seg}.fits
    dre/psf/                     sim_000.psf for the tile sim_000.fits
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
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from astrotool import console, made_with
from astrotool.context import astro_command
from astrotool.errors import AstroError, InputError
from astrotool.names import printable
from astrotool_dre.tiles import TILE_SUFFIXES, check_own_weight, tile_files, tile_stem, weight_path

if TYPE_CHECKING:
    from astrotool_dre.config import DreConfig, ModelsConfig, SimulateConfig

__docformat__ = "numpy"

CUBE_VERSION = 1  # bump when the model drawing changes, to invalidate cached cubes
"""Version of the model drawing; a change invalidates cached model cubes."""


class TilePaths:
    """Every path of one tile's chain inside a workspace.

    Parameters
    ----------
    root : path-like
        Workspace root.
    stem : str
        Tile name without its suffix (:func:`astrotool_dre.tiles.tile_stem`).
    """

    def __init__(self, root, stem: str):
        self.root = Path(root)
        d = self.root / "dre"
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
        """Whether every output of ``stage`` exists (whatever settings made them; see :func:`stage_record`)."""
        return all(p.exists() for p in self.outputs(stage))


# ----------------------------------------------------------------------------- what made an output
STAGE_VERSIONS = {"detect": 6, "psf": 2, "cuts": 3, "fit": 5, "mosaics": 3}
"""Bump a stage's number when the same settings give other outputs (or its record holds other keys for them).
fit 2: the summary has SKY/SKY_ERR and more header cards, a --cube fit records the cube's grid, local_sky
with the dre statistic is recorded as used (false); mosaics 2: TILE, NAME, INDEX, FITSTAT in their headers;
detect 2: ALPHA_J2000/DELTA_J2000 from the full astropy WCS (SIP; FK5 J2000 whatever the header's frame).
An output of an older version is refused (fit: --overwrite remakes it) or made again (mosaics: RECOMPUTE).
detect 3: photutils' THETA_IMAGE in (-90, 90] and KRON_RADIUS scaled as SExtractor's (k r1), SExtractor's flux
columns' TUNITn the tile's BUNIT (as photutils' and the summary's), the record's engine the one that runs.
psf 2: the record's engine is the one that runs ("auto" resolved: :func:`engine_that_runs`).
fit 3: ANGLE refined across the periodic axis's wrap (a vertex below 0 deg was held at the grid).
detect 4: pixels of no weight in the weight map are NaN in _nb, _rms; cuts 2: saturated objects (FLAGS bit 4)
left out, cuts holding NaN in _nb or _rms dropped.
detect 5: an _rms map more than 10 % above the sky's scatter is scaled down to it (match_rms_to_sky); mosaics 3:
the PNG scale's top from the pixels of the fit mask.
detect 6: SExtractor gets the weight map's no-data pixels as weight 0 (its noise map), flags saturation at the level
(as photutils), a tile's NaN pixels no weight with a weight map too; an extension's INHERIT = T header has the
primary's keywords (GAIN, MAGZP, SATURATE...).
fit 4: CHI2_NU plus the noise variance the recentring took, 1 - v
(:func:`astrotool_dre.fit_stage.shift_noise_variance`), and the errors inflated by it.
cuts 3: X_CUT, Y_CUT (the fit's centre) from the windowed centroid (``dre.cuts.centroid``).
fit 5: the record holds ``dre.fit.core_psf`` (the PSF of objects fit on crops wider than 64 px)."""
RECOMPUTE = frozenset({"mosaics"})
"""Stages that remake their outputs when the settings changed (cheap pictures); the others refuse (exit 2)."""
NOT_OUTPUT = ("dre.detect.nthreads", "dre.detect.timeout", "dre.psf.timeout", "dre.fit.backend", "dre.fit.device",
              "dre.fit.batch_size")
"""Settings that do not change a stage's outputs."""
USES = {"mosaics": ("cube", "dre.models.", "dre.fit.recentre", "dre.fit.psf_has_pixel")}
"""Settings (dotted-key prefixes) of another stage's record that a stage uses too: that stage's outputs must
have been made with the same values (the mosaics draw the fit's grid models, centred and convolved as it was)."""
UPSTREAM = {"detect": (), "psf": ("detect",), "cuts": ("detect",), "fit": ("cuts", "psf"), "mosaics": ("fit",)}
"""The stages whose outputs each stage reads; their records' hashes are part of its own."""


def stage_record(paths: TilePaths, stage: str, cfg: DreConfig, made: dict | None = None, cube=None) -> dict:
    """The settings record of one tile's ``stage`` (:func:`astrotool.made_with.record`).

    Its section of ``[dre]``, keyed as ``--set`` spells it (``dre.fit.statistic``); for ``fit`` and
    ``mosaics`` also the grid and the file name of the ``cube`` they use (ours: ``[dre.models]``, and
    the file is named by the hash of its settings; a cube given with ``--cube``: the grid its header
    describes, and the file also by its checksum); the stage's version; and the
    record hashes of the stages it reads (``inputs.<stage>``): from ``made`` (stages of this run,
    ``{stage: hash}``) or from their outputs' records.
    """
    from astrotool import made_with

    from astrotool_dre.models import read_cube_grid

    dre = stage_settings(stage, cfg)
    settings = {"dre": dre}  # keys as --set spells them: dre.fit.statistic
    if stage in ("fit", "mosaics"):
        dre["models"] = cfg.models.model_dump(mode="json")
        settings["cube"] = Path(cube).name if cube else None
        ours = cube_path(paths.root, cfg.models)
        built = workspace_cube_settings(cube, paths.root) if cube and Path(cube).resolve() != ours.resolve() else None
        if built is not None:   # one of the workspace's own cubes, named: recorded as when [dre.models] built it
            dre["models"] = built
        elif cube and Path(cube).resolve() != ours.resolve():   # a cube of the user's: its name says not what it holds
            settings["cube"] += f" ({made_with.file_checksum(cube, ours.with_name(f'.{Path(cube).name}.checksum.json'))})"
            dre["models"] = {k.lower(): v for k, v in read_cube_grid(cube).header_cards().items()}
    made = made or {}
    inputs = {}
    for up in UPSTREAM[stage]:
        old = made_with.read(paths.outputs(up)[0])
        inputs[up] = made.get(up) or (old or {}).get("hash")
    if stage == "detect":  # the tile itself: a tile simulated again or replaced invalidates the chain
        inputs["tile"] = tile_identity(paths)
        if cfg.detect.weight_image:   # and its weight map (missing: refused before any work, check_weight_maps)
            inputs["weight"] = weight_checksum(paths, cfg.detect.weight_image)
    settings["inputs"] = inputs
    rec = made_with.record(settings, version=STAGE_VERSIONS[stage], ignore=NOT_OUTPUT,
                           made_by=f"astrotool-dre {stage} stage")
    if stage == "detect":   # the file it was made from, beside the settings (not in them: a moved tile is the same)
        rec["tile"] = made_with.record_path(paths.tile, paths.root)
    return rec


def stage_settings(stage: str, cfg: DreConfig) -> dict:
    """``{stage: its [dre.<stage>] values}`` as its record keeps them: the engine that runs, not the word ("auto"
    and the engine it finds make the same outputs)."""
    dre = {stage: getattr(cfg, stage).model_dump(mode="json")}
    if stage in ("detect", "psf"):
        dre[stage]["engine"] = engine_that_runs(stage, getattr(cfg, stage).engine)
    if stage == "detect":   # a key of earlier releases (never used), recorded as they did: their detections are kept
        dre[stage]["flag_image"] = None
    if stage == "fit":   # the dre statistic fits no sky, whatever local_sky says (as the fit runs it)
        dre[stage]["local_sky"] = cfg.fit.sky_fitted
    return dre


def engine_that_runs(stage: str, engine: str) -> str:
    """The engine ``stage`` (``"detect"`` or ``"psf"``) runs when configured with ``engine``, as its record
    keeps it (``dre.detect.engine``, ``dre.psf.engine``): ``"auto"`` resolved as the stage resolves it
    (SExtractor, PSFEx when on PATH), so that ``auto`` and the engine it finds make the same record.

    Parameters
    ----------
    stage : str
        ``"detect"`` or ``"psf"``.
    engine : str
        The configured engine: ``"auto"``, ``"photutils"``, ``"sextractor"`` (detect) or ``"psfex"`` (psf).

    Returns
    -------
    str
        The engine that runs (a named engine that is not installed stays as named: its stage refuses it).
    """
    if engine != "auto":
        return engine
    if stage == "detect":
        from astrotool_dre.detect_sextractor import find_sextractor

        return "sextractor" if find_sextractor() else "photutils"
    from astrotool_dre.psf import find_psfex

    return "psfex" if find_psfex() else "photutils"


def weight_checksum(paths: TilePaths, weight_image: str) -> str:
    """The checksum of the tile's weight map (``dre.detect.weight_image``) in detect's record
    (``inputs.weight``): :func:`astrotool.made_with.file_checksum`, cached in ``dre/sextracted``; ``"missing"``
    when there is no such file (or it cannot be read)."""
    from astrotool import made_with

    checksum = made_with.file_checksum(weight_path(paths.tile, weight_image),
                                       paths.sextracted / ".weight_checksum.json")
    return "missing" if checksum is None else checksum   # a settings change reads `"<checksum>" -> "missing"`


def tile_identity(paths: TilePaths) -> str | None:
    """The tile's identity in detect's record: its checksum (:func:`astrotool.made_with.file_checksum`); a
    detection recorded before checksums were kept (``"<size> B, modified <UTC time>"``) keeps that identity
    while the tile's size and modification time still match it."""
    import datetime as dt

    old = (made_with.read(paths.outputs("detect")[0]) or {}).get("settings", {}).get("inputs.tile")
    if isinstance(old, str) and ", modified " in old:
        try:
            st = paths.tile.stat()
        except OSError:
            return None
        when = dt.datetime.fromtimestamp(st.st_mtime_ns // 1000 / 1e6, tz=dt.timezone.utc)
        if old == f"{st.st_size} B, modified {when.isoformat(timespec='microseconds')}":
            return old
    return made_with.file_checksum(paths.tile, paths.sextracted / ".tile_checksum.json")


def check_tiles(tiles: list[Path], root, stages: tuple[str, ...], cfg: DreConfig, *, overwrite: bool,
                cube=None, user_keys: frozenset = frozenset()) -> None:
    """Before any work: refuse (exit 2) when a finished output of these stages was made with other settings,
    or when a stage they read and do not run now is out of date: made by another version of that stage
    (:data:`STAGE_VERSIONS`; ``--overwrite`` of the stages run now does not remake it), from inputs made
    again since (cuts cut again after the fit: the mosaics would draw the new cuts with the old fit; a tile
    replaced after its detection), or with other values of the settings the stages run now use too
    (:data:`USES`). A stage read whose own settings among ``user_keys`` (dotted keys a layer of the user's set
    in this run: a file, a variable, ``--set``) differ from its record is read as made, with a warning.
    """
    from astrotool import made_with

    order = list(STAGE_VERSIONS)
    needed = set(stages)
    for stage in reversed(order):
        if stage in needed:
            needed.update(UPSTREAM[stage])
    used = tuple(k for stage in stages for k in USES.get(stage, ()))
    checks, stale, older, drift = [], [], [], []
    configured: dict[str, dict] = {}   # a stage's own settings as this configuration gives them
    for t in tiles:
        paths = TilePaths(root, tile_stem(t))
        paths.tile = Path(t)
        made: dict = {}
        for stage in [s for s in order if s in needed]:
            if stage in stages:
                rec = stage_record(paths, stage, cfg, made, cube)
                made[stage] = rec["hash"]
                checks.append((paths.outputs(stage), rec, stage in RECOMPUTE))
                continue
            old = made_with.read(paths.outputs(stage)[0])
            if old is None:   # made before records were kept: nothing to compare
                continue
            version = old["settings"].get("version")
            if version != STAGE_VERSIONS[stage]:   # the stages run now would read an older stage's output
                older.append((paths.outputs(stage)[0], stage, version))
            made[stage] = old.get("hash")
            now = {f"inputs.{up}": made.get(up) for up in UPSTREAM[stage] if made.get(up) is not None}
            if stage == "detect":
                now["inputs.tile"] = tile_identity(paths)
                if "inputs.weight" in old["settings"] and cfg.detect.weight_image:
                    now["inputs.weight"] = weight_checksum(paths, cfg.detect.weight_image)
            if any(k.startswith(u) for k in old["settings"] for u in used):
                ours = stage_record(paths, stage, cfg, made, cube)["settings"]
                now.update({k: v for k, v in ours.items() if k.startswith(used)})
            then = {k: old["settings"].get(k) for k in now}
            if then != now:
                stale.append((paths.outputs(stage)[0], stage, made_with.changes(then, now), then, now))
            if stage not in configured:   # its own settings: read as made, but not what this configuration says
                configured[stage] = made_with.flatten({"dre": stage_settings(stage, cfg)})
                for k in NOT_OUTPUT:
                    configured[stage].pop(k, None)
            theirs = {k: v for k, v in old["settings"].items() if k.startswith(f"dre.{stage}.")}
            changed = [c for c in made_with.changes(theirs, configured[stage]) if c.split(":")[0] in user_keys]
            if changed:   # an option of an earlier command (dre cuts --filter) is no setting of this run's
                drift.append((paths.outputs(stage)[0], stage, changed))
    if older:
        path, stage, version = older[0]
        more = f" (and {len(older) - 1} more)" if len(older) > 1 else ""
        # the message of an output made by another version (its last line, --overwrite, is not the advice here:
        # --overwrite of the stages run now would keep the old output they read)
        said = str(made_with.VersionChanged(f"{path}{more}", "(absent)" if version is None else version,
                                            STAGE_VERSIONS[stage], f"astrotool-dre {stage} stage")).rsplit("\n", 1)[0]
        reader = f"`astro dre {stages[0]}`" if len(stages) == 1 else "this run"
        raise AstroError(f"{said}\n{reader} reads it: run `{astro_command('dre', stage, '--overwrite')}` "
                         f"(or `{astro_command('dre', 'run', '--overwrite')}`) first")
    if stale:
        path, stage, changed, then, now = stale[0]
        more = f" (and {len(stale) - 1} more)" if len(stale) > 1 else ""
        keys = {c.split(":")[0] for c in changed}
        foreign = any(" (" in str(rec.get("cube")) for rec in (then, now))   # a --cube's grid is its own
        grid = {k for k in keys if k.startswith("dre.models.")} if foreign else set()
        if "cube" in keys and keys - grid == {"cube"}:
            # only the cube (and so the grid) differs: name the one the fit used
            used_cube = str(then.get("cube") or "").split(" (")[0]
            ours = used_cube.startswith("sersic_") and " (" not in str(then.get("cube"))
            if ours and used_cube == str(now.get("cube")).split(" (")[0]:   # named by --cube, built before its record
                raise AstroError(f"{printable(str(path))}{more}: `astro dre {stage}` used the workspace's cube "
                                 f"{used_cube} as built by other [dre.models] settings than this configuration's; "
                                 "give those settings instead of --cube, or run `astro dre models` with them once "
                                 "(it then keeps them beside the cube, and --cube naming it is enough)")
            hint = ("leave out --cube: it used the workspace's own cube (dre/models)" if ours
                    else f"pass the same `--cube .../{used_cube}` to `astro dre {' '.join(stages)}`")
            raise AstroError(f"{printable(str(path))}{more}: `astro dre {stage}` used the model cube "
                             f"{used_cube}, not {str(now.get('cube')).split(' (')[0]}; {hint} "
                             f"(or fit again with this one: `{astro_command('dre', stage, '--overwrite')}`)")
        lines = "\n".join(f"  {c}" for c in changed)
        raise AstroError(f"{printable(str(path))}: out of date{more}; `astro dre {stage}` made it from other "
                         f"inputs, or with other settings than the ones this run uses too:\n{lines}\n"
                         f"run `{astro_command('dre', stage, '--overwrite')}` first")
    if drift:
        path, stage, changed = drift[0]
        more = f" (and {len(drift) - 1} more)" if len(drift) > 1 else ""
        reader = f"`astro dre {stages[0]}`" if len(stages) == 1 else "this run"
        logging.getLogger("astro.dre").warning(
            "%s%s: made with other [dre.%s] settings than this configuration's:\n%s\n%s reads it as it was made; "
            "`%s` makes it with these", printable(str(path)), more, stage,
            "\n".join(f"  {c}" for c in changed), reader, astro_command("dre", stage, "--overwrite"))
    refused = []
    for outputs, rec, recompute in checks:   # made_with.check_all, with a hint of its own for each output
        try:
            made_with.keep(outputs, rec, overwrite=overwrite, recompute=recompute, warn=False, forget=False)
        except made_with.SettingsChanged as exc:
            hint = None if isinstance(exc, made_with.VersionChanged) else _other_file_hint(outputs, rec)
            refused.append(made_with.SettingsChanged(exc.path, exc.changed, hint) if hint else exc)
    made_with.refuse(refused)


def _other_file_hint(outputs, rec) -> str | None:
    """What the refusal of a detection's ``outputs`` says when its tile changed (``inputs.tile``): the file its
    record says they were made from, if another than this run's tile (``bands/g/x.fits`` detected,
    ``bands/r/x.fits.fz`` now), and that another file of the same name needs another workspace or another name
    (``--overwrite`` would replace the results of the first); ``--overwrite`` first where the record names no
    file (made before records named it); None otherwise (the same file, changed: ``--overwrite``, the usual
    advice). Its first line stays in :func:`astrotool.made_with.refuse`'s list of several refusals."""
    old = made_with.read(outputs[0]) if "tile" in rec else None
    if old is None or old["settings"].get("inputs.tile") == rec["settings"].get("inputs.tile"):
        return None
    before, now, out = old.get("tile"), printable(rec["tile"]), printable(str(outputs[0]))
    if before is None:
        return (f"{out} was made from {now} before it changed, or from another file of the same name (its record "
                "does not say which)\nuse --overwrite to make it again from this file; a different file of the "
                "same name needs another workspace (-w) or a renamed file")
    if before == rec["tile"]:   # the same file, changed since: --overwrite
        return None
    return (f"{out} was made from {printable(before)}, not {now}: a different file of the same name needs another "
            "workspace (-w) or a renamed file\n--overwrite would replace its results and those made from them")


def check_upstream(tiles: list[Path], root, stages: tuple[str, ...]) -> None:
    """Before any work (the model cube included): refuse (exit 2) when a stage's input from a stage not
    run now is missing for some tile, naming the first such file and how many tiles lack it."""
    for stage in stages:
        for up in UPSTREAM[stage]:
            if up in stages:
                continue
            missing = [p for t in tiles for p in TilePaths(root, tile_stem(t)).outputs(up)[:1]
                       if not p.exists()]
            if missing:
                more = f" (and {len(missing) - 1} more tiles)" if len(missing) > 1 else ""
                raise InputError(missing[0], f"missing{more}; run `astro dre {up}` first")


def tiles_in(root, names: list[str] | None = None, weight_image: str | None = None,
             weight_type: str = "MAP_WEIGHT") -> list[Path]:
    """The tiles to process: ``names`` (paths or stems) or every tile in ``dre/tiles``
    (:func:`astrotool_dre.tiles.tile_files`: the weight maps of ``weight_image`` there are no tiles); a tile
    that is its own weight map (of ``weight_type``) is refused (:func:`astrotool_dre.tiles.check_own_weight`)."""
    folder = Path(root) / "dre" / "tiles"
    if names:
        out = []
        for n in names:
            p = Path(n)
            named = [q for q in (folder / f"{n}{ext}" for ext in TILE_SUFFIXES) if q.exists()]
            if not p.suffix and (named or not p.is_dir()):   # a stem: its tile in dre/tiles; else a folder
                p = named[0] if named else folder / f"{n}.fits"
            elif not p.exists() and p.name == n and (folder / n).is_file():   # a tile's file name, in dre/tiles
                p = folder / n
            if p.is_dir():
                raise InputError(p, "is a folder, not a FITS tile")
            if not p.exists():
                raise InputError(p, "tile not found")
            if p.resolve() not in out:  # a tile named twice runs once
                out.append(p.resolve())
        _check_stems(out, tile_files(folder, weight_image))
    else:
        out = tile_files(folder, weight_image)
        _check_stems(out)
    for t in out:   # a tile is no weight map of its own (exit 2, before any work)
        check_own_weight(t, weight_image, weight_type)
    return out


def _check_stems(tiles: list[Path], others: list[Path] = ()) -> None:
    """Two tiles whose outputs would share a name (``a/x.fits`` and ``b/x.fits``, ``x.fits`` and
    ``x.fits.fz``): refuse, naming both. ``others``: the workspace's tiles (``dre/tiles``), whose outputs
    a tile named from elsewhere must not take either."""
    seen: dict[str, Path] = {tile_stem(o): o for o in others}
    for t in tiles:
        stem = tile_stem(t)
        if stem in seen and Path(seen[stem]).resolve() != Path(t).resolve():
            raise InputError(t, f"has the same name as {seen[stem]}; their outputs would overwrite each other "
                                f"(dre/*/{stem}*); rename one of them")
        seen[stem] = t


def check_tile_files(tiles: list[Path]) -> None:
    """Before the model cube is built: when no tile is a FITS file with one 2-D image (headers only,
    :func:`astrotool_dre.tiles.check_tile`), refuse (exit 2) with the first one's problem; tiles that
    fail among good ones fail alone later, as items."""
    from astrotool_dre.tiles import check_tile

    problems = []
    for t in tiles:
        try:
            check_tile(t)
        except InputError as exc:
            problems.append(exc)
        else:
            return
    if problems:
        first = problems[0]
        more = f" (and {len(problems) - 1} more tiles, none usable)" if len(problems) > 1 else ""
        raise InputError(first.path, first.problem + more)


def check_cut_rooms(tiles: list[Path], cfg: DreConfig) -> None:
    """Before any work: when every tile is smaller than a cut (headers only,
    :func:`astrotool_dre.cuts.check_cut_room`), refuse (exit 2) with the first one's problem; such a tile among
    larger ones fails alone, as an item (:func:`process_tile`), and unreadable ones fail later."""
    from astrotool_dre.cuts import check_cut_room
    from astrotool_dre.tiles import image_shape

    problems = []
    for t in tiles:
        try:
            check_cut_room(t, image_shape(t), cfg.cuts)
        except InputError as exc:
            if "smaller than a cut" not in exc.problem:   # unreadable: its own failure, later
                return
            problems.append(exc)
        else:
            return
    if problems:
        more = f" (and {len(problems) - 1} more tiles, none larger)" if len(problems) > 1 else ""
        raise InputError(problems[0].path, problems[0].problem + more)


def check_weight_maps(tiles: list[Path], cfg: DreConfig) -> None:
    """Before any work (and before the settings of finished outputs are compared): refuse (exit 2) when the
    weight map ``dre.detect.weight_image`` names for some tile is not there, naming the first one and how
    many tiles lack theirs (no weight map configured: nothing to check)."""
    pattern = cfg.detect.weight_image
    if not pattern:
        return
    missing = [(t, weight_path(t, pattern)) for t in tiles if not weight_path(t, pattern).is_file()]
    if missing:
        tile, path = missing[0]
        more = f"; and {len(missing) - 1} more tiles lack theirs" if len(missing) > 1 else ""
        raise InputError(path, f"weight map not found (dre.detect.weight_image = {pattern!r} for the tile "
                               f"{printable(str(tile))}){more}")


def check_filters(tiles: list[Path], root, cfg: DreConfig, *, detect_again: bool = False) -> None:
    """Before any work (and before the settings of finished cuts are compared): refuse (exit 2) a filter
    (``dre.cuts.filters``, ``--filter``) whose column the catalogue does not have: the first tile's catalogue
    that is there (every catalogue of an engine has the same columns; a tile whose catalogue differs fails
    alone, as an item, and its cuts and their record stay as they were), or, when there is none or the
    detection runs again (``detect_again``), the columns both engines write
    (:data:`astrotool_dre.catalog.CATALOG_COLUMNS`, ``EXT_NUMBER``)."""
    from astrotool_dre.catalog import CATALOG_COLUMNS, read_catalog
    from astrotool_dre.cuts import check_filter_columns

    if not cfg.cuts.filters:
        return
    for t in [] if detect_again else tiles:
        cat = TilePaths(root, tile_stem(t)).cat
        if cat.is_file():
            try:
                columns = read_catalog(cat, vignet=False).colnames
            except InputError:   # unreadable: that tile's own failure, later
                continue
            check_filter_columns(cat, columns, cfg.cuts.filters)
            return
    columns = [*CATALOG_COLUMNS, "EXT_NUMBER"]
    for col, _, _ in cfg.cuts.filters:
        if col not in columns:
            raise AstroError(f"filter column {col!r} is not among the columns of the catalogue the detection "
                             f"writes: {', '.join(columns)}")


# ----------------------------------------------------------------------------- models
def cube_path(root, cfg: ModelsConfig) -> Path:
    """Cache path of the cube for these grid settings: ``dre/models/sersic_<hash>.fits``."""
    key = json.dumps({**cfg.model_dump(mode="json"), "version": CUBE_VERSION}, sort_keys=True)
    return Path(root) / "dre" / "models" / f"sersic_{hashlib.sha1(key.encode()).hexdigest()[:10]}.fits"


def workspace_cube_settings(cube, root) -> dict | None:
    """The ``[dre.models]`` settings that built ``cube``, when it is one of the workspace's own cubes
    (``dre/models/sersic_<hash>.fits`` with the record :func:`model_cube` keeps beside it, whose hash it
    bears); else None (a cube of the user's, or one built before the record was kept)."""
    from astrotool_dre.config import ModelsConfig

    cube = Path(cube).resolve()
    if cube.parent != (Path(root) / "dre" / "models").resolve():
        return None
    rec = made_with.read(cube)
    try:
        models = ModelsConfig(**{k: v for k, v in rec["settings"].items() if k != "version"})
    except (TypeError, ValueError):   # no record (None), or not one of a cube
        return None
    return models.model_dump(mode="json") if cube_path(root, models).resolve() == cube else None


def model_cube(root, cfg: ModelsConfig, mapper, *, overwrite: bool = False) -> tuple[Path, bool]:
    """The model cube of ``[dre.models]``, built through ``mapper`` unless cached.

    Returns
    -------
    (pathlib.Path, bool)
        The cube's path, and whether it was built now.
    """
    from astrotool.provenance import provenance
    from astrotool_dre.models import build_cube, grid_from_config, write_cube

    path = cube_path(root, cfg)
    if path.exists() and not made_with.replaces(overwrite, path):
        from astrotool_dre.models import cube_problem

        problem = cube_problem(path)
        if problem:
            raise InputError(path, f"{problem}; build it again with `{astro_command('dre', 'models', '--overwrite')}`")
        if made_with.read(path) is None:   # built before its record was kept: its name is the hash of cfg
            _keep_cube_record(path, cfg)
        return path, False
    grid = grid_from_config(cfg)
    logging.getLogger("astro").info("building the model cube: %d models of %d² px -> %s", grid.nmodels,
                                    grid.boxsize, path)
    cube = build_cube(grid, mapper, supersample=cfg.supersample)
    write_cube(path, cube, grid, record=provenance(command="dre models", config=cfg.model_dump(mode="json")))
    _keep_cube_record(path, cfg)
    return path, True


def _keep_cube_record(path: Path, cfg: ModelsConfig) -> None:
    """The settings that built a workspace cube, beside it: ``--cube`` naming it is then recorded as the fit
    that built it recorded it (:func:`workspace_cube_settings`)."""
    try:
        made_with.write(path, made_with.record(cfg.model_dump(mode="json"), version=CUBE_VERSION))
    except OSError:   # a read-only workspace: `--cube` naming it is then recorded as a cube of the user's
        pass


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
    desc: str = ""  # the run's progress description, for the per-stage log lines


def run_tiles(tiles: list[Path], root, stages: tuple[str, ...], cfg: DreConfig, mapper, *, overwrite: bool,
              cube: Path | None, desc: str) -> list[dict]:
    """Run ``stages`` over ``tiles`` through ``mapper``; one summary dict per finished tile (the caller has
    checked them first: :func:`check_tiles`)."""
    items = [TileItem(Path(t), Path(root), tuple(stages), cfg, overwrite, cube, desc) for t in tiles]
    return [r for _, r in mapper(process_tile, items, desc=desc, keys=[tile_stem(t) for t in tiles])]


def process_tile(item: TileItem, seed: int) -> dict:
    """Executor function: run the item's stages for its tile; return ``{"tile", <stage>, <stage>_s}``
    (the stage's one line and seconds) and the facts a stage adds, such as ``detect_engine``, the
    engine that ran."""
    paths = TilePaths(item.root, tile_stem(item.tile))  # outputs of a tile whose name is not UTF-8: \xNN
    paths.tile = item.tile
    if "cuts" in item.stages:   # a tile smaller than a cut: refused before its detection and PSF, not after
        from astrotool_dre.cuts import check_cut_room
        from astrotool_dre.tiles import image_shape

        check_cut_room(item.tile, image_shape(item.tile), item.cfg.cuts)
    summary = {"tile": paths.stem}
    made: dict = {}
    for i, stage in enumerate(item.stages, 1):
        console.item_step(item.desc, paths.stem, stage, i, len(item.stages))
        rec = stage_record(paths, stage, item.cfg, made, item.cube)
        made[stage] = rec["hash"]
        outputs = paths.outputs(stage)
        before = _kept_record(outputs)
        if made_with.keep(outputs, rec, overwrite=item.overwrite, recompute=stage in RECOMPUTE):
            summary[stage] = "skipped (done)"
            continue
        t0 = time.perf_counter()
        try:
            out = STAGE_FUNCTIONS[stage](paths, item.cfg, item.cube)
        except BaseException:
            _restore_record(outputs, before)
            if stage == "detect" and not paths.done("detect"):   # nothing of a failed tile stays behind
                for cache in (".tile_checksum.json", ".weight_checksum.json"):
                    (paths.sextracted / cache).unlink(missing_ok=True)
                try:
                    paths.sextracted.rmdir()
                except OSError:  # not empty (an earlier detection's files) or not there
                    pass
            raise
        summary[stage], facts = out if isinstance(out, tuple) else (out, {})
        summary.update({f"{stage}_{k}": v for k, v in facts.items()})
        made_with.write(outputs[0], rec)
        summary[f"{stage}_s"] = round(time.perf_counter() - t0, 2)
    return summary


def _file_state(path: Path) -> tuple | None:
    """What tells a replaced file from the one that was there: inode, size, modification time (None: none)."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def _kept_record(outputs: list[Path]) -> tuple | None:
    """Before :func:`astrotool.made_with.keep` removes the record of outputs about to be made again: the
    record (bytes, access and modification times) and the outputs' states, for :func:`_restore_record`."""
    record = made_with.sidecar(outputs[0])
    try:
        st = record.stat()
        return record.read_bytes(), (st.st_atime_ns, st.st_mtime_ns), [_file_state(p) for p in outputs]
    except OSError:
        return None


def _restore_record(outputs: list[Path], kept: tuple | None) -> None:
    """After a stage failed: put back the record it removed when every output is still the one it describes
    (a stage that failed before writing anything, such as a cuts filter of an unknown column); a stage that
    replaced some of them leaves them without a record (made again by the next run)."""
    record = made_with.sidecar(outputs[0])
    if kept is None or record.exists():
        return
    data, times, states = kept
    if [_file_state(p) for p in outputs] != states:
        return
    try:
        from astrotool.workspace import atomic_path

        with atomic_path(record) as tmp:   # a second signal meanwhile leaves no torn record
            tmp.write_bytes(data)
            os.utime(tmp, ns=times)
    except OSError:   # the failure is what is reported; the outputs are then made again
        record.unlink(missing_ok=True)


def _detect(paths: TilePaths, cfg: DreConfig, cube) -> tuple[str, dict]:
    from astrotool_dre.detect import detect_tile

    out = detect_tile(paths.tile, paths.sextracted, cfg.detect, stem=paths.stem)
    return f"{out['n_sources']} sources ({out['engine']})", {"engine": out["engine"]}


def _psf(paths: TilePaths, cfg: DreConfig, cube) -> tuple[str, dict]:
    from astrotool_dre.psf import build_psf

    _require(paths.cat, "detect")
    out = build_psf(paths.cat, paths.psf, cfg.psf, nb_path=paths.nb, seg_path=paths.seg, tile=paths.tile)
    if out["n_stars"] == 0:
        return "no PSF: no source detected", {"engine": out["engine"], "fwhm": None, "degree": 0}
    return (f"{out['engine']} from {out['n_stars']} stars, FWHM {out['fwhm']:.2f} px (Moffat fit, as the "
            f"summary's PSF_FWHM), degree {out['degree']}", {"engine": out["engine"], "fwhm": round(out["fwhm"], 4),
                                              "degree": out["degree"]})


def _cuts(paths: TilePaths, cfg: DreConfig, cube) -> str:
    from astrotool_dre.cuts import make_cuts

    for p in (paths.cat, paths.nb, paths.rms, paths.seg):
        _require(p, "detect")
    out = make_cuts(paths.cat, paths.nb, paths.rms, paths.seg, paths.tile, paths.cuts, cfg.cuts)
    notes = ([f"{out['n_stars']} left out as stars (CLASS_STAR >= {cfg.cuts.max_stellarity:g})"]
             if out["n_stars"] else [])
    notes += [f"{out['n_saturated']} saturated left out"] if out["n_saturated"] else []
    notes += [f"{out['n_rejected_nan']} dropped: pixels without data or off the tile"] if out["n_rejected_nan"] else []
    return f"{out['n_cuts']} cuts" + (f" ({'; '.join(notes)})" if notes else "")


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
"""The function that runs each per-tile stage on one tile."""


# ----------------------------------------------------------------------------- simulation
@dataclass(frozen=True)
class SimulateItem:
    """Executor item: simulate the tile ``path``; its truth table and true PSF go to ``truth_dir``."""

    path: Path
    truth_dir: Path
    cfg: SimulateConfig
    overwrite: bool
    base_seed: int | None = None  # the run's --seed, recorded with the tile (its own seed derives from it)


SIMULATE_VERSION = 2  # bump when the same settings and seed draw other tiles (2: PSF_FWHM in the truth;
#                       a truth table without units, of an earlier release, holds the same values: kept)
"""Version of the tile drawing; a change means the same settings and seed draw other tiles."""
SIMULATE_LAYOUT = ("dre.simulate.n_tiles", "dre.simulate.name")
"""``[dre.simulate]`` keys that say how many tiles and how they are named, not what a tile holds."""


def simulate_outputs(item: SimulateItem) -> list[Path]:
    """The tile and its truth table (its record is kept beside the tile)."""
    return [item.path, item.truth_dir / f"{item.path.stem}_truth.parquet"]


def simulate_record(item: SimulateItem, seed: int) -> dict:
    """The settings record of one simulated tile: ``[dre.simulate]`` (less its layout keys), the seed
    (the run's ``--seed``; the tile's own when that is not known) and :data:`SIMULATE_VERSION`."""
    return made_with.record({"dre": {"simulate": item.cfg.model_dump(mode="json")}}, ignore=SIMULATE_LAYOUT, version=SIMULATE_VERSION,
                            seed=item.base_seed if item.base_seed is not None else seed)


def check_simulate(items: list[SimulateItem], *, overwrite: bool) -> None:
    """Before any work: refuse (exit 2) when an existing tile was simulated with other settings or seed."""
    made_with.check_all([(simulate_outputs(i), simulate_record(i, 0), False) for i in items if i.base_seed is not None],
                        overwrite=overwrite)


def simulate_item(item: SimulateItem, seed: int) -> str:
    """Executor function: simulate one tile; kept when it and its truth table exist and were made with
    these settings and seed, refused (exit 2) when made with others."""
    from astrotool_dre.simulate import simulate_tile

    outputs = simulate_outputs(item)
    rec = simulate_record(item, seed)
    if made_with.keep(outputs, rec, overwrite=item.overwrite):
        return "skipped (done)"
    simulate_tile(item.path, outputs[1], item.cfg, seed=seed % (2**31),
                  path_psf=item.truth_dir / f"{item.path.stem}_psf.fits")
    made_with.write(item.path, rec)
    return str(item.path)
