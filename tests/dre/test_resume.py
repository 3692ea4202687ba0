"""Reruns of DRE stages with other settings are refused (exit 2, naming the keys), never silently skipped;
``--overwrite`` on one stage leaves the shared model cube alone."""

import json
import os
import shutil

import pytest

#: The smallest tile the simulator allows, few objects: one chain in a few seconds.
TOML = """
[dre.simulate]
n_tiles = 1
size = 256
n_galaxies = 3
n_stars = 8
min_separation = 20.0
edge = 40.0

[dre.cuts]
margin = 40.0

[dre.models]
index0 = 4.0
dindex = 0.0
nindex = 1
"""


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A workspace after ``dre simulate`` and ``dre run --no-mosaics`` with the defaults (chi2, seed 0)."""
    from tests.conftest import run_astro_here as run_astro

    ws = tmp_path_factory.mktemp("resume") / "ws"
    ws.mkdir()
    (ws / "astro.toml").write_text(TOML)
    for cmd in (["dre", "simulate"], ["dre", "run", "--no-mosaics"]):
        r = run_astro("-w", ws, *cmd)
        assert r.returncode == 0, r.stderr
    return ws


@pytest.fixture
def ws(finished, tmp_path):
    out = tmp_path / "ws"
    shutil.copytree(finished, out, copy_function=shutil.copy2)
    return out


def _stamps(ws, *globs):
    """Inode and modification time of each file but the tile checksums' cache (a copied workspace reads its
    tiles once more and writes it)."""
    return {p: (p.stat().st_ino, p.stat().st_mtime_ns) for g in globs for p in (ws / "dre").glob(g)
            if p.is_file() and p.name != ".tile_checksum.json"}


@pytest.mark.parametrize("args, key", [
    (["--seed", "5", "dre", "simulate"], "seed: 0 -> 5"),
    (["dre", "simulate", "--size", "512"], "dre.simulate.size: 256 -> 512"),
    (["dre", "fit", "--statistic", "dre"], 'dre.fit.statistic: "chi2" -> "dre"'),
])
def test_rerun_with_other_settings_is_refused(astro, ws, args, key):
    before = _stamps(ws, "tiles/*.fits", "tiles/truth/*", "chi/*", "summary/*")
    r = astro("-w", ws, *args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert key in r.stderr and "--overwrite" in r.stderr, r.stderr
    assert "skipped" not in r.stdout
    assert _stamps(ws, "tiles/*.fits", "tiles/truth/*", "chi/*", "summary/*") == before


def test_same_settings_rerun_skips(astro, ws):
    before = _stamps(ws, "**/*")
    for cmd in (["dre", "simulate"], ["dre", "run", "--no-mosaics"], ["--seed", "0", "dre", "fit"]):
        r = astro("-w", ws, *cmd)
        assert r.returncode == 0, r.stderr
        assert "skipped (done)" in r.stdout and "->" not in r.stderr, (r.stdout, r.stderr)
    assert _stamps(ws, "**/*") == before
    # settings that do not change an output (threads, backend, batch size, how many tiles) keep it too
    r = astro("-w", ws, "--set", "dre.fit.batch_size=3", "--set", "dre.detect.nthreads=2", "dre", "run",
              "--no-mosaics")
    assert r.returncode == 0 and r.stdout.count("skipped (done)") == 4, (r.stdout, r.stderr)


def test_overwrite_one_stage_keeps_the_cube(astro, ws):
    cube = _stamps(ws, "models/*.fits")
    assert len(cube) == 1
    r = astro("-w", ws, "--overwrite", "dre", "fit", "--statistic", "dre")
    assert r.returncode == 0, r.stderr
    assert "(dre," in r.stdout and "building the model cube" not in r.stderr, (r.stdout, r.stderr)
    assert _stamps(ws, "models/*.fits") == cube
    rec = json.loads((ws / "dre/chi/.sim_000_chi.h5.made_with.json").read_text())
    assert rec["settings"]["dre.fit.statistic"] == "dre"
    # the new record is the one a rerun compares with: the old statistic is now the change
    r = astro("-w", ws, "dre", "fit")
    assert r.returncode == 2 and 'dre.fit.statistic: "dre" -> "chi2"' in r.stderr, r.stderr


def test_another_cube_is_another_setting(astro, ws):
    (cube,) = (ws / "dre/models").glob("*.fits")
    other = ws / "their_cube.fits"
    os.link(cube, other)                                   # the same bytes under another name, no copy
    r = astro("-w", ws, "dre", "fit", "--cube", other)
    assert r.returncode == 2 and f'cube: "{cube.name}" -> "their_cube.fits (sha256 ' in r.stderr, r.stderr
    # their cube rewritten under its name (a grid of other radii): the fit on the old one is not kept
    r = astro("-w", ws, "--overwrite", "dre", "fit", "--cube", other)
    assert r.returncode == 0, r.stderr
    os.unlink(other)
    shutil.copyfile(cube, other)
    with open(other, "r+b") as f:                          # same size, other pixels
        f.seek(-100_000, 2)
        f.write(b"\x01" * 1000)
    r = astro("-w", ws, "dre", "fit", "--cube", other)
    assert r.returncode == 2 and 'cube: "their_cube.fits (sha256 ' in r.stderr and "skipped" not in r.stdout, r.stderr


def test_changed_upstream_stage_refuses_downstream(astro, ws):
    r = astro("-w", ws, "--overwrite", "--set", "dre.cuts.margin=41.0", "dre", "cuts")
    assert r.returncode == 0, r.stderr
    r = astro("-w", ws, "--set", "dre.cuts.margin=41.0", "dre", "fit")
    assert r.returncode == 2 and "inputs.cuts: " in r.stderr, r.stderr


def test_a_stage_reading_an_output_its_configuration_would_make_otherwise_says_so(astro, ws):
    """``dre fit --set dre.cuts.margin=60`` refitted the cuts made with margin 40 in silence, and run.json kept
    margin 60 for a summary that did not use it: now it warns, naming the key and how to remake the cuts."""
    r = astro("-w", ws, "--set", "dre.cuts.margin=60.0", "--overwrite", "dre", "fit")
    assert r.returncode == 0, r.stderr
    assert "sim_000_cuts.h5: made with other [dre.cuts] settings than this configuration's:\n" \
           "  dre.cuts.margin: 40.0 -> 60.0\n`astro dre fit` reads it as it was made; " \
           f"`astro -w {ws} --set dre.cuts.margin=60.0 dre cuts --overwrite`" in r.stderr, r.stderr   # pasted: these
    r = astro("-w", ws, "dre", "fit")
    assert r.returncode == 0 and "WARNING" not in r.stderr, r.stderr
    # an option of the command that made the cuts is no setting of a later run: nothing to say
    r = astro("-w", ws, "--overwrite", "dre", "cuts", "--filter", "FLUX_RADIUS,0.1,100")
    assert r.returncode == 0, r.stderr
    r = astro("-w", ws, "--overwrite", "dre", "fit")
    assert r.returncode == 0 and "made with other" not in r.stderr, r.stderr
    # nor is local_sky, which the dre statistic ignores (the fit records it off)
    sets = ["--set", 'dre.fit.statistic="dre"', "--set", "dre.fit.local_sky=true"]
    r = astro("-w", ws, *sets, "--overwrite", "dre", "fit")
    assert r.returncode == 0, r.stderr
    r = astro("-w", ws, *sets, "dre", "mosaics")
    assert r.returncode == 0 and "made with other" not in r.stderr, r.stderr


def test_the_workspace_cube_named_by_cube_is_the_one_the_fit_used(astro, ws):
    """A fit made with the workspace's own cube, then ``--cube`` naming that very cube under other [dre.models]
    settings: refused as "used the model cube sersic_X.fits, not sersic_X.fits; leave out --cube"."""
    (cube,) = (ws / "dre/models").glob("sersic_*.fits")
    r = astro("-w", ws, "--set", "dre.models.nlogh=20", "dre", "mosaics", "--cube", cube)
    assert r.returncode == 0, r.stderr
    r = astro("-w", ws, "--set", "dre.models.nlogh=20", "dre", "fit", "--cube", cube)
    assert r.returncode == 0 and "skipped (done)" in r.stdout, r.stderr
    (cube.parent / f".{cube.name}.made_with.json").unlink()   # a cube built before its record was kept
    r = astro("-w", ws, "--set", "dre.models.nlogh=20", "dre", "mosaics", "--cube", cube)
    assert r.returncode == 2 and f"used the workspace's cube {cube.name} as built by other [dre.models]" in r.stderr
    r = astro("-w", ws, "dre", "models")   # with the settings that built it: it keeps them again
    assert r.returncode == 0 and (cube.parent / f".{cube.name}.made_with.json").is_file(), r.stderr


def test_mosaics_recompute_when_their_settings_change(astro, ws):
    r = astro("-w", ws, "--set", "dre.mosaics.png=false", "dre", "mosaics")
    assert r.returncode == 0, r.stderr
    assert not list((ws / "dre/mosaics/sim_000").glob("*.png"))
    r = astro("-w", ws, "dre", "mosaics")
    assert r.returncode == 0 and "skipped" not in r.stdout, (r.stdout, r.stderr)
    assert list((ws / "dre/mosaics/sim_000").glob("*.png"))


def test_a_tile_simulated_again_refuses_its_old_results(astro, ws):
    """The tile is detect's input: a new tile under the old name never gets the old tile's catalogue."""
    r = astro("-w", ws, "--seed", "1", "--overwrite", "dre", "simulate")
    assert r.returncode == 0, r.stderr
    before = _stamps(ws, "sextracted/**/*", "chi/*", "summary/*")
    r = astro("-w", ws, "dre", "run", "--no-mosaics")
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "inputs.tile: " in r.stderr and "--overwrite" in r.stderr and "skipped" not in r.stdout, r.stderr
    assert _stamps(ws, "sextracted/**/*", "chi/*", "summary/*") == before
    r = astro("-w", ws, "--overwrite", "dre", "run", "--no-mosaics")
    assert r.returncode == 0 and "skipped" not in r.stdout, (r.stdout, r.stderr)
    r = astro("-w", ws, "dre", "run", "--no-mosaics")
    assert r.returncode == 0 and r.stdout.count("skipped (done)") == 4, (r.stdout, r.stderr)


def test_a_tile_whose_pixels_changed_under_the_same_size_and_time_refuses_its_old_results(astro, ws):
    """The tile was known by its size and modification time: new pixels written into it with its time set
    back (``touch -r``) kept the old catalogue, 'skipped (done)'. Copying the workspace (the ``ws`` fixture:
    new inodes and change times) reads the tiles again and keeps the results."""
    from astropy.io import fits

    tile = ws / "dre/tiles/sim_000.fits"
    r = astro("-w", ws, "dre", "detect")
    assert r.returncode == 0 and "skipped (done)" in r.stdout, (r.stdout, r.stderr)
    st = tile.stat()
    with fits.open(tile, mode="update") as hdul:
        hdul[0].data = hdul[0].data[::-1].copy()
    os.utime(tile, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert tile.stat().st_size == st.st_size and tile.stat().st_mtime_ns == st.st_mtime_ns
    r = astro("-w", ws, "dre", "detect")
    assert r.returncode == 2 and "inputs.tile: " in r.stderr and "skipped" not in r.stdout, (r.stdout, r.stderr)


def test_two_tiles_with_one_name_are_refused(astro, ws, tmp_path):
    (tile,) = (ws / "dre/tiles").glob("*.fits")
    other = tmp_path / "elsewhere" / tile.name
    other.parent.mkdir()
    shutil.copy2(tile, other)
    r = astro("-w", ws, "dre", "detect", tile, other)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert str(other) in r.stderr and "same name" in r.stderr and "internal" not in r.stderr, r.stderr
    r = astro("-w", ws, "dre", "detect", "--overwrite", other)   # alone: its outputs are the workspace tile's
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert str(other) in r.stderr and "same name" in r.stderr and str(tile) in r.stderr, r.stderr
    folder = tmp_path / "x.fits"
    folder.mkdir()
    r = astro("-w", ws, "dre", "detect", folder)
    assert r.returncode == 2 and "is a folder" in r.stderr, r.stderr


def test_fit_without_cuts_refuses_before_building_the_cube(astro, ws):
    for p in [*(ws / "dre/cuts").glob("*.h5"), *(ws / "dre/models").glob("*.fits")]:
        p.unlink()
    r = astro("-w", ws, "dre", "fit")
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "sim_000_cuts.h5: missing; run `astro dre cuts` first" in r.stderr, r.stderr
    assert not list((ws / "dre/models").glob("*.fits")) and "building the model cube" not in r.stderr


def test_a_shard_records_only_its_own_tiles(astro, ws):
    import json

    (tile,) = (ws / "dre/tiles").glob("*.fits")
    shutil.copy2(tile, tile.with_name("sim_001.fits"))
    r = astro("-w", ws, "--shard", "1/2", "dre", "detect")
    assert r.returncode == 0, r.stderr
    rec = json.loads(max((ws / "runs").glob("*-dre-detect/run.json")).read_text())
    assert rec["inputs"] == [str(tile.with_name("sim_001.fits"))] and rec["shard"] == "1/2"
    # a shard needs the whole model cube: it built only its share of the slabs and failed (exit 1)
    for cube in (ws / "dre/models").glob("*.fits"):
        cube.unlink()
    r = astro("-w", ws, "--shard", "1/2", "dre", "run", "--no-mosaics")
    assert r.returncode == 0 and "this shard builds the whole model cube" in r.stderr, r.stderr
    assert sorted(p.name for p in (ws / "dre/summary").glob("*.parquet")) == ["sim_000_dre.parquet",
                                                                              "sim_001_dre.parquet"]


def test_mosaics_of_a_fit_made_on_another_grid_are_refused(ws, astro):
    r = astro("-w", ws, "--set", "dre.models.nlogh=15", "dre", "mosaics")
    assert r.returncode == 2 and "sim_000_chi.h5: out of date; `astro dre fit` made it" in r.stderr, r.stderr
    assert "dre.models.nlogh: 21 -> 15" in r.stderr and "building the model cube" not in r.stderr, r.stderr
    assert not list((ws / "dre" / "mosaics").glob("*/*.fits"))


def test_mosaics_never_draw_new_cuts_or_settings_with_an_old_fit(ws, astro):
    """The mosaics' record held only their own and the grid's settings: cuts cut again after the fit, or
    the fit's recentring changed, were drawn with the old fit (with --overwrite) or kept as done."""
    r = astro("-w", ws, "--set", "dre.cuts.dilate=6", "--overwrite", "dre", "cuts")
    assert r.returncode == 0, r.stderr
    for extra in ([], ["--overwrite"]):
        r = astro("-w", ws, "--set", "dre.cuts.dilate=6", *extra, "dre", "mosaics")
        assert r.returncode == 2 and "sim_000_chi.h5: out of date" in r.stderr and "inputs.cuts: " in r.stderr, \
            r.stderr
    r = astro("-w", ws, "--set", "dre.cuts.dilate=6", "dre", "fit")   # what the message asks: the fit again
    assert r.returncode == 2 and "--overwrite" in r.stderr
    r = astro("-w", ws, "--set", "dre.cuts.dilate=6", "--overwrite", "dre", "fit")
    assert r.returncode == 0, r.stderr
    r = astro("-w", ws, "--set", "dre.cuts.dilate=6", "dre", "mosaics")
    assert r.returncode == 0, r.stderr
    r = astro("-w", ws, "--set", "dre.fit.recentre=false", "--overwrite", "dre", "mosaics")
    assert r.returncode == 2 and "dre.fit.recentre: true -> false" in r.stderr, r.stderr


def test_mosaics_name_a_damaged_fit_and_replace_their_old_pictures(ws, astro):
    r = astro("-w", ws, "dre", "mosaics")
    assert r.returncode == 0, r.stderr
    folder = ws / "dre/mosaics/sim_000"
    (folder / "sim_000_99_mosaic.png").write_bytes(b"an earlier fit's")
    r = astro("-w", ws, "--set", "dre.mosaics.max_objects=1", "dre", "mosaics")
    assert r.returncode == 0, r.stderr
    assert len(list(folder.glob("*_mosaic.fits"))) == 1 and not (folder / "sim_000_99_mosaic.png").exists()
    summary = ws / "dre/summary/sim_000_dre.parquet"
    import pyarrow.parquet as pq

    pq.write_table(pq.read_table(summary).drop(["N_IDX"]), summary)
    r = astro("-w", ws, "--overwrite", "dre", "mosaics")
    assert r.returncode == 2 and f"{summary}: missing column(s) N_IDX" in r.stderr, r.stderr
    chi = ws / "dre/chi/sim_000_chi.h5"
    chi.write_bytes(chi.read_bytes()[:3000])
    r = astro("-w", ws, "--overwrite", "dre", "mosaics")
    assert r.returncode == 2 and f"{chi}: not a readable HDF5 file" in r.stderr, r.stderr


def test_a_truncated_cube_is_named_not_reported_as_the_cube(ws, astro):
    """`dre models` printed the path of a cube cut short by an interrupted copy, exit 0."""
    (cube,) = (ws / "dre/models").glob("*.fits")
    size = cube.stat().st_size
    with open(cube, "r+b") as f:
        f.truncate(size // 2)
    r = astro("-w", ws, "dre", "models")
    assert r.returncode == 2 and f"{cube}: truncated: {size // 2} bytes, its header needs {size}" in r.stderr, \
        r.stderr
    assert f"astro -w {ws} dre models --overwrite" in r.stderr
    r = astro("-w", ws, "--overwrite", "dre", "models")
    assert r.returncode == 0 and cube.stat().st_size == size, r.stderr


def test_a_detection_recorded_before_tile_checksums_keeps_its_tile_while_it_is_unchanged(ws):
    """Workspaces from before the checksums recorded the tile by size and modification time: they are kept
    while those match, not all refused (a refit of every tile)."""
    import datetime as dt

    from astrotool import made_with
    from astrotool_dre.pipeline import TilePaths, tile_identity

    paths = TilePaths(ws, "sim_000")
    st = paths.tile.stat()
    when = dt.datetime.fromtimestamp(st.st_mtime_ns // 1000 / 1e6, tz=dt.timezone.utc)
    legacy = f"{st.st_size} B, modified {when.isoformat(timespec='microseconds')}"
    rec = made_with.read(paths.cat)
    made_with.write(paths.cat, {**rec, "settings": {**rec["settings"], "inputs.tile": legacy}})
    assert tile_identity(paths) == legacy
    os.utime(paths.tile, ns=(st.st_atime_ns, st.st_mtime_ns + 1000))
    assert tile_identity(paths).startswith("sha256 ")


def test_mosaics_after_a_fit_with_another_cube_ask_for_that_cube(astro, ws):
    """After `dre fit --cube X`, `dre mosaics` tells the user to pass the same --cube, not to fit again."""
    (cube,) = (ws / "dre/models").glob("*.fits")
    other = ws / "their_cube.fits"
    os.link(cube, other)
    r = astro("-w", ws, "--overwrite", "dre", "fit", "--cube", other)
    assert r.returncode == 0, r.stderr
    r = astro("-w", ws, "dre", "mosaics")
    assert r.returncode == 2, r.stderr
    assert "pass the same `--cube .../their_cube.fits` to `astro dre mosaics`" in r.stderr, r.stderr
    assert "run astro dre fit again first" not in r.stderr.replace("`", "")
    r = astro("-w", ws, "dre", "mosaics", "--cube", other)
    assert r.returncode == 0, r.stderr
    r = astro("-w", ws, "--overwrite", "dre", "fit")       # back on the workspace's cube
    assert r.returncode == 0, r.stderr
    r = astro("-w", ws, "dre", "mosaics", "--cube", other)
    assert r.returncode == 2 and "leave out --cube" in r.stderr, r.stderr


def test_local_sky_is_ignored_by_the_dre_statistic_and_not_recorded(astro, ws):
    """`local_sky = true` changes nothing with --statistic dre: it was recorded, so switching it forced
    --overwrite, silently."""
    r = astro("-w", ws, "--overwrite", "dre", "fit", "--statistic", "dre")
    assert r.returncode == 0 and "local_sky" not in r.stderr, r.stderr
    r = astro("-w", ws, "--set", "dre.fit.local_sky=true", "dre", "fit", "--statistic", "dre")
    assert r.returncode == 0 and "skipped (done)" in r.stdout, r.stderr
    assert r.stderr.count("dre.fit.local_sky") == 1 and "ignored" in r.stderr, r.stderr
    rec = json.loads((ws / "dre/chi/.sim_000_chi.h5.made_with.json").read_text())
    assert rec["settings"]["dre.fit.local_sky"] is False


def test_the_local_sky_and_the_fit_settings_are_in_the_summary(astro, ws):
    import numpy as np
    from astropy import units as u
    from astropy.io import fits
    from astropy.table import Table

    parquet, fits_file = ws / "dre/summary/sim_000_dre.parquet", ws / "dre/summary/sim_000_dre.fits"
    t = Table.read(parquet)
    assert "SKY" not in t.colnames and t.meta["astrotool"]["local_sky"] is False
    r = astro("-w", ws, "--overwrite", "--set", "dre.fit.local_sky=true", "--set", "dre.fit.subgrid=false",
              "dre", "fit")
    assert r.returncode == 0 and "local_sky" not in r.stderr, r.stderr
    t = Table.read(parquet)
    assert t["SKY"].unit == u.adu and t["SKY_ERR"].unit == u.adu and "sky" in t["SKY"].description
    fitted = (np.asarray(t["FIT_FLAGS"]) & 64) == 0
    assert fitted.any() and np.isfinite(t["SKY"][fitted]).all() and (t["SKY_ERR"][fitted] > 0).all()
    assert {k: t.meta["astrotool"][k] for k in ("local_sky", "subgrid", "neighbours")} == {
        "local_sky": True, "subgrid": False, "neighbours": "subtract"}
    header = fits.getheader(fits_file, "DRE_SUMMARY")
    assert (header["LOCALSKY"], header["SUBGRID"], header["NEIGHBRS"]) == (True, False, "subtract")
    col = {header[f"TTYPE{i}"]: i for i in range(1, header["TFIELDS"] + 1)}
    assert header[f"TUNIT{col['SKY']}"] == "adu" and "sky" in header[f"TCOMM{col['SKY']}"]


def test_a_fit_with_another_cube_records_that_cube_s_grid(astro, ws):
    """The record held [dre.models] of the configuration, not the grid of the cube given with --cube."""
    import dataclasses

    from astrotool_dre.models import read_cube, write_cube

    (cube,) = (ws / "dre/models").glob("*.fits")
    c, grid = read_cube(cube)
    other = ws / "small_cube.fits"
    write_cube(other, c[:, :3, :4, :5], dataclasses.replace(grid, naxrat=3, nposang=4, nlogh=5))
    r = astro("-w", ws, "--overwrite", "dre", "fit", "--cube", other)
    assert r.returncode == 0, r.stderr
    rec = json.loads((ws / "dre/chi/.sim_000_chi.h5.made_with.json").read_text())["settings"]
    assert (rec["dre.models.naxrat"], rec["dre.models.nposang"], rec["dre.models.nlogh"]) == (3, 4, 5)
    assert "dre.models.supersample" not in rec   # not known for a cube we did not draw
    # the configuration's grid is not the one used: changing it changes nothing
    r = astro("-w", ws, "--set", "dre.models.nlogh=15", "dre", "fit", "--cube", other)
    assert r.returncode == 0 and "skipped (done)" in r.stdout, r.stderr
    r = astro("-w", ws, "dre", "mosaics", "--cube", other)
    assert r.returncode == 0, r.stderr


def test_mosaics_name_the_object_its_index_and_the_fit_statistic(ws, monkeypatch):
    """A --statistic dre mosaic could not be told from a chi2 one; nor which object it shows, from its header."""
    from astropy.io import fits

    from astrotool_dre import mosaics
    from astrotool_dre.config import FitConfig, MosaicsConfig
    from astrotool_dre.pipeline import TilePaths

    titles = []
    monkeypatch.setattr(mosaics, "save_png", lambda panels, path, title, unit="": titles.append(title))
    (cube,) = (ws / "dre/models").glob("*.fits")
    # the statistic the fit used (the summary's), not the one of the settings given
    mosaics.tile_mosaics(TilePaths(ws, "sim_000"), MosaicsConfig(max_objects=1), FitConfig(statistic="dre"), cube)
    (path,) = (ws / "dre/mosaics/sim_000").glob("*_mosaic.fits")
    header = fits.getheader(path)
    assert header["TILE"] == "sim_000" and header["NAME"] == path.name[len("sim_000_"):-len("_mosaic.fits")]
    assert header["INDEX"] == 4.0 and header["FITSTAT"] == "chi2"
    assert len(titles) == 1 and "chi2" in titles[0]


def test_a_fit_of_an_older_stage_version_is_refused_naming_it(astro, ws):
    """Fits made before the fit stage changed its record (the cube's grid, local_sky, SKY in the summary) were
    refused with keys the user never changed; now they are refused as made by an older astrotool-dre."""
    from astrotool import made_with
    from astrotool_dre.pipeline import STAGE_VERSIONS

    assert STAGE_VERSIONS["fit"] >= 2 and STAGE_VERSIONS["mosaics"] >= 2
    side = ws / "dre/chi/.sim_000_chi.h5.made_with.json"
    rec = json.loads(side.read_text())
    rec["settings"]["version"] = 1
    rec["hash"] = made_with.digest(rec["settings"])
    side.write_text(json.dumps(rec))
    r = astro("-w", ws, "dre", "fit")
    assert r.returncode == 2, r.stderr
    assert f"made by an older astrotool-dre fit stage (version 1; this one is {STAGE_VERSIONS['fit']})" in r.stderr
    assert "--overwrite" in r.stderr and "version: 1 ->" not in r.stderr, r.stderr


def test_run_keeps_what_the_single_stage_commands_made_with_the_engine_auto_finds(astro, ws):
    """``dre detect --engine sextractor`` (and ``dre psf --engine psfex``) record the engine that ran, as
    ``dre run`` with ``engine = "auto"`` does when it finds it: the run keeps their outputs (it refused them,
    ``dre.detect.engine: "sextractor" -> "auto"``); another engine is still refused."""
    from astrotool_dre.detect_sextractor import find_sextractor
    from astrotool_dre.psf import find_psfex

    detect = "sextractor" if find_sextractor() else "photutils"
    psf = "psfex" if find_psfex() else "photutils"
    for cmd in (["dre", "detect", "--engine", detect], ["dre", "psf", "--engine", psf], ["dre", "cuts"],
                ["dre", "fit"]):
        r = astro("-w", ws, "--overwrite", *cmd)
        assert r.returncode == 0, (cmd, r.stderr)
        if cmd[1] == "psf":   # the degree that was built, for either engine (8 stars: 0)
            assert "degree 0" in r.stdout, r.stdout
    before = _stamps(ws, "sextracted/**/*", "psf/*", "cuts/*", "chi/*", "summary/*")
    r = astro("-w", ws, "dre", "run", "--no-mosaics")
    assert r.returncode == 0 and r.stdout.count("skipped (done)") == 4, (r.stdout, r.stderr)
    assert _stamps(ws, "sextracted/**/*", "psf/*", "cuts/*", "chi/*", "summary/*") == before
    other = "photutils" if detect == "sextractor" else None
    if other:
        r = astro("-w", ws, "dre", "run", "--no-mosaics", "--detect-engine", other)
        assert r.returncode == 2 and f'dre.detect.engine: "{detect}" -> "{other}"' in r.stderr, r.stderr
        assert _stamps(ws, "sextracted/**/*", "psf/*", "cuts/*", "chi/*", "summary/*") == before


def test_a_stage_reading_an_output_of_an_older_upstream_stage_version_is_refused_even_with_overwrite(astro, ws):
    """After an upgrade (detect 2 -> 3, ...), `dre fit --overwrite` kept the version-2 catalogue and wrote a new
    fit on it (old THETA_IMAGE, KRON_RADIUS in the summary): only the stored hashes of the stages it does not
    run were compared, never their versions. Now it is refused, naming the detection and how to remake it."""
    from astrotool import made_with
    from astrotool_dre.pipeline import STAGE_VERSIONS, UPSTREAM, TilePaths

    paths = TilePaths(ws, "sim_000")
    made = {}
    for stage, version in (("detect", 2), ("psf", 1), ("cuts", 1), ("fit", 2)):   # as an older release made them
        rec = made_with.read(paths.outputs(stage)[0])
        settings = {**rec["settings"], "version": version, **{f"inputs.{u}": made[u] for u in UPSTREAM[stage]}}
        made[stage] = made_with.digest(settings)
        made_with.write(paths.outputs(stage)[0], {**rec, "settings": settings, "hash": made[stage]})
    before = _stamps(ws, "sextracted/**/*", "psf/*", "cuts/*", "chi/*", "summary/*")
    for overwrite in (["--overwrite"], []):
        r = astro("-w", ws, *overwrite, "dre", "fit")
        assert r.returncode == 2, (overwrite, r.stdout, r.stderr)
        assert "sim_000_cat.fits" in r.stderr and (f"made by an older astrotool-dre detect stage (version 2; this "
                                                   f"one is {STAGE_VERSIONS['detect']})") in r.stderr, r.stderr
        assert f"run `astro -w {ws} dre detect --overwrite` (or `astro -w {ws} dre run --overwrite`) first" \
            in r.stderr, r.stderr
        assert _stamps(ws, "sextracted/**/*", "psf/*", "cuts/*", "chi/*", "summary/*") == before
    r = astro("-w", ws, "--overwrite", "dre", "run", "--no-mosaics")
    assert r.returncode == 0, r.stderr
    assert {s: made_with.read(paths.outputs(s)[0])["settings"]["version"] for s in made} == \
        {s: STAGE_VERSIONS[s] for s in made}


def _record_bytes_and_time(ws, name="cuts/.sim_000_cuts.h5.made_with.json"):
    p = ws / "dre" / name
    return p.read_bytes(), p.stat().st_mtime_ns


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_an_unknown_filter_column_is_refused_before_the_old_cuts_or_their_record_are_touched(astro, ws, overwrite):
    """`dre cuts --overwrite --filter NOSUCHCOL,1,2` removed the old cuts' record and then failed on the column,
    leaving the old cuts without it (the next run: "no record of the settings that made it"); without --overwrite
    it was refused as a settings change first. Now the column is checked against the catalogue before anything."""
    before = _stamps(ws, "cuts/*"), _record_bytes_and_time(ws)
    r = astro("-w", ws, *overwrite, "dre", "cuts", "--filter", "NOSUCHCOL,1,2")
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "sim_000_cat.fits: filter column 'NOSUCHCOL' is not among the catalogue's columns" in r.stderr, r.stderr
    assert "other settings" not in r.stderr, r.stderr
    assert (_stamps(ws, "cuts/*"), _record_bytes_and_time(ws)) == before
    r = astro("-w", ws, *overwrite, "dre", "run", "--no-mosaics", "--filter", "NOSUCHCOL,1,2")
    assert r.returncode == 2 and "filter column 'NOSUCHCOL' is not among the" in r.stderr, r.stderr
    assert (_stamps(ws, "cuts/*"), _record_bytes_and_time(ws)) == before


def test_a_stage_that_fails_before_writing_keeps_the_record_of_the_outputs_it_would_replace(astro, ws, monkeypatch):
    """--overwrite removes an output's record before its stage runs (a stage stopped half-way never leaves new
    outputs beside the old record); a stage that fails having replaced nothing now puts the record back, one that
    replaced its output leaves it without one."""
    from astrotool.errors import InputError
    from astrotool_dre import pipeline

    def fails(paths, cfg, cube):
        raise InputError(paths.cat, "unreadable")

    monkeypatch.setitem(pipeline.STAGE_FUNCTIONS, "cuts", fails)
    before = _stamps(ws, "cuts/sim_000_cuts.h5"), _record_bytes_and_time(ws)
    r = astro("-w", ws, "--overwrite", "dre", "cuts")
    assert r.returncode != 0 and "unreadable" in r.stderr, (r.stdout, r.stderr)
    assert (_stamps(ws, "cuts/sim_000_cuts.h5"), _record_bytes_and_time(ws)) == before

    def replaces_then_fails(paths, cfg, cube):
        paths.cuts.write_bytes(b"half")
        raise InputError(paths.cat, "unreadable")

    monkeypatch.setitem(pipeline.STAGE_FUNCTIONS, "cuts", replaces_then_fails)
    r = astro("-w", ws, "--overwrite", "dre", "cuts")
    assert r.returncode != 0 and "unreadable" in r.stderr, (r.stdout, r.stderr)
    assert not (ws / "dre/cuts/.sim_000_cuts.h5.made_with.json").exists()


def test_a_missing_weight_map_is_reported_before_the_settings_change(astro, ws):
    """A weight setting on a tile detected without one was refused as `dre.detect.weight_image: null -> ...;
    inputs.weight: (absent) -> null`, hiding the missing weight map that a fresh workspace reported."""
    before = _stamps(ws, "sextracted/**/*", "psf/*", "cuts/*", "chi/*", "summary/*")
    for overwrite in ([], ["--overwrite"]):
        r = astro("-w", ws, *overwrite, "--set", 'dre.detect.weight_image="weights/{stem}_wht.fits"',
                  "dre", "run", "--no-mosaics")
        assert r.returncode == 2, (r.stdout, r.stderr)
        assert f"{ws / 'dre/tiles/weights/sim_000_wht.fits'}: weight map not found" in r.stderr, r.stderr
        assert "other settings" not in r.stderr and "null" not in r.stderr, r.stderr
    assert _stamps(ws, "sextracted/**/*", "psf/*", "cuts/*", "chi/*", "summary/*") == before


def test_a_weight_map_gone_since_the_detection_is_said_missing(astro, ws):
    """A detection recorded with a weight map that is gone: its settings differ in `inputs.weight: "<checksum>"
    -> "missing"` (before: `-> null`)."""
    from astrotool import made_with
    from astrotool_dre.pipeline import TilePaths

    cat = TilePaths(ws, "sim_000").cat
    rec = made_with.read(cat)
    settings = {**rec["settings"], "dre.detect.weight_image": "weights/{stem}_wht.fits", "inputs.weight": "0123"}
    made_with.write(cat, {**rec, "settings": settings, "hash": made_with.digest(settings)})
    r = astro("-w", ws, "--set", 'dre.detect.weight_image="weights/{stem}_wht.fits"', "dre", "psf")
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert 'inputs.weight: "0123" -> "missing"' in r.stderr, r.stderr


def test_a_bad_gain_is_one_problem_of_the_gain_option(astro, tmp_path):
    """`dre run --gain abc` sets dre.detect.gain and dre.fit.gain: it said the same problem twice, the second
    time as `command-line option: dre.fit.gain`."""
    r = astro("-w", tmp_path / "ws", "dre", "run", "--gain", "abc")
    assert r.returncode == 2, (r.stdout, r.stderr)
    problems = [line for line in r.stderr.splitlines() if "got 'abc'" in line]
    assert len(problems) == 1 and "command-line option --gain: dre.detect.gain:" in problems[0], r.stderr
    assert "dre.fit.gain" not in r.stderr, r.stderr


def test_detections_of_earlier_releases_are_kept(ws):
    """Their records hold `dre.detect.flag_image: null` (a key since removed, never used): without it in today's
    record every existing detection was refused as made with other settings."""
    from astrotool import made_with
    from astrotool_dre.config import DreConfig
    from astrotool_dre.pipeline import TilePaths, stage_record

    paths = TilePaths(ws, "sim_000")
    paths.tile = ws / "dre" / "tiles" / "sim_000.fits"
    old = made_with.read(paths.cat)
    assert old["settings"]["dre.detect.flag_image"] is None
    cfg = DreConfig.model_validate({"models": {"index0": 4.0, "dindex": 0.0, "nindex": 1}})
    assert stage_record(paths, "detect", cfg)["hash"] == old["hash"]
