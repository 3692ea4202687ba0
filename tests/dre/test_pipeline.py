"""The whole DRE chain through the command line: recovery of injected galaxies and bad input."""

import json

import numpy as np
import pandas as pd
import pytest

from astrotool_dre.truth import workspace_recovery

from tests.conftest import run_astro
from tests.dre.conftest import DRE_GRID

SMALL = ["--set", "dre.simulate.size=640", "--set", "dre.simulate.n_galaxies=10", "--set",
         "dre.simulate.n_stars=14", "--set", "dre.simulate.min_separation=20"]


def _simulate(astro, ws, n_tiles=1, extra=()):
    r = astro("-w", ws, *SMALL, *extra, "dre", "simulate", "-n", n_tiles)
    assert r.returncode == 0, r.stderr
    return ws


@pytest.mark.long
@pytest.mark.parametrize("engine, psf_engine", [("sextractor", "psfex"), ("photutils", "photutils")])
def test_chain_recovers_injected_galaxies(astro, tmp_path, engine, psf_engine):
    from astrotool_dre.detect_sextractor import find_sextractor

    if engine == "sextractor" and find_sextractor() is None:
        pytest.skip("source-extractor is not installed")
    ws = _simulate(astro, tmp_path / engine)
    eng = ["--set", f"dre.detect.engine={engine!r}".replace("'", '"'),
           "--set", f"dre.psf.engine={psf_engine!r}".replace("'", '"'), "--set", "dre.cuts.max_stellarity=1.0"]
    r = astro("-w", ws, *eng, "dre", "run", "--no-mosaics")
    assert r.returncode == 0, r.stderr
    assert f"({engine})" in r.stdout and f"{psf_engine} from" in r.stdout, r.stdout
    g, stars = workspace_recovery(ws)
    assert g["n_matched"] == g["n_truth"] == 10
    assert g["logr_frac"] >= 0.9 and g["q_frac"] >= 0.9 and g["angle_frac"] >= 0.85, g
    assert abs(g["median_dflux"]) < 0.03 and g["flux_frac"] >= 0.7, g
    assert g["edge_minima"] == 0
    # honest errors: the truth within 2σ for most galaxies (0.954 expected), within 1σ for about 0.68
    for name in ("logr", "ax_ratio", "flux"):
        assert g[f"{name}_in2sig"] >= 0.8 and 0.4 <= g[f"{name}_in1sig"] <= 1.0, (name, g)
    # stars kept by max_stellarity=1.0 are fitted, and flagged rather than reported as galaxies
    assert stars["n_stars_fitted"] >= 5 and stars["n_flagged"] >= 0.9 * stars["n_stars_fitted"], stars
    summ = pd.read_parquet(ws / "dre/summary/sim_000_dre.parquet")
    for col in ["NUMBER", "X_IMAGE", "Y_IMAGE", "INDEX", "AX_RATIO", "ANGLE", "LOGR", "FLUX", "MAG", "CHI2",
                "CHI2_NU", "AX_RATIO_ERR", "ANGLE_ERR", "LOGR_ERR", "FLUX_ERR", "LOGR_EDGE_LO", "LOGR_EDGE_HI",
                "CLASS_STAR", "STAR", "LOGR_GRID", "AX_RATIO_GRID", "PSF_FWHM", "BLEND"]:
        assert col in summ.columns, col
    assert ((summ.ANGLE >= 0) & (summ.ANGLE < 180)).all()
    # the model is in the grid: chi2 per degree of freedom about 1 (0.80 before the recentring's smoothing of the
    # noise was made up for; 1.09 here, the measured PSF's own misfit above 1)
    assert 0.95 < summ[~summ.STAR].CHI2_NU.median() < 1.3
    assert (ws / "dre/summary/sim_000_dre.fits").is_file()
    import h5py

    with h5py.File(ws / "dre/chi/sim_000_chi.h5", "r") as f:
        names = list(f)
        assert f[names[0]].shape == (1, 10, 13, 21) and f[names[0]].dtype == np.float32
    assert set(summ.NAME) == set(names)
    # a second run resumes: every stage is reported skipped and no product is rewritten
    products = {p: p.stat().st_mtime_ns for p in (ws / "dre").rglob("*") if p.is_file()}
    assert len(products) >= 10
    r = astro("-w", ws, *eng, "dre", "run", "--no-mosaics")
    assert r.returncode == 0 and r.stdout.count("skipped (done)") == 4, r.stdout
    assert {p: p.stat().st_mtime_ns for p in products} == products


def test_statistic_dre_and_mosaics(astro, tmp_path):
    ws = _simulate(astro, tmp_path)
    r = astro("-w", ws, "dre", "run", "--statistic", "dre")
    assert r.returncode == 0, r.stderr
    steps = [ln.split("INFO    ", 1)[1] for ln in r.stderr.splitlines() if "INFO    dre run: sim_000 " in ln]
    assert steps == [f"dre run: sim_000 {s} {i}/5" for i, s in enumerate(["detect", "psf", "cuts", "fit", "mosaics"], 1)]
    assert [ln for ln in r.stderr.splitlines() if "dre run: 1/1 done" in ln], r.stderr  # the final line
    g, _ = workspace_recovery(ws)
    assert g["n_matched"] == 10 and g["logr_frac"] >= 0.7, g
    pngs = list((ws / "dre/mosaics/sim_000").glob("*.png"))
    fits = list((ws / "dre/mosaics/sim_000").glob("*.fits"))
    assert len(pngs) == len(fits) == 10
    from astropy.io import fits as pf

    data = pf.getdata(fits[0])
    assert data.shape == (128, 512)
    rec = json.loads(sorted((ws / "runs").iterdir())[-1].joinpath("run.json").read_text())
    assert rec["config"]["dre"]["fit"]["statistic"] == "dre" and rec["status"] == "ok"


def test_bad_tiles_fail_alone_with_clear_messages(astro, tmp_path):
    from astropy.io import fits

    ws = _simulate(astro, tmp_path)
    tiles = ws / "dre/tiles"
    good = fits.getheader(tiles / "sim_000.fits")
    fits.PrimaryHDU(np.full((300, 300), np.nan, np.float32), header=good).writeto(tiles / "nan.fits")
    rng = np.random.default_rng(1)
    fits.PrimaryHDU(rng.normal(100, 5, (300, 300)).astype(np.float32), header=good).writeto(tiles / "empty.fits")
    r = astro("-w", ws, "dre", "run", "--no-mosaics")
    assert r.returncode == 2   # every failure was bad input; the good tile finished
    assert "1 item(s) failed" in r.stderr
    assert f"{tiles / 'nan.fits'}: " in r.stderr and f"{tiles / 'empty.fits'}: no sources detected" in r.stderr
    assert "Traceback" not in r.stderr
    assert (ws / "dre/summary/sim_000_dre.parquet").is_file()  # the good tile finished
    assert pd.read_parquet(ws / "dre/summary/empty_dre.parquet").empty  # a tile of no source is a result


def test_missing_psf_truncated_cuts_and_bad_cube(astro, tmp_path):
    ws = _simulate(astro, tmp_path)
    assert astro("-w", ws, "dre", "detect").returncode == 0
    assert astro("-w", ws, "dre", "cuts").returncode == 0
    r = astro("-w", ws, "dre", "fit")
    assert r.returncode == 2 and f"{ws / 'dre/psf/sim_000.psf'}: missing; run `astro dre psf` first" in r.stderr
    assert astro("-w", ws, "dre", "psf").returncode == 0
    cuts = ws / "dre/cuts/sim_000_cuts.h5"
    cuts.write_bytes(cuts.read_bytes()[: cuts.stat().st_size // 3])
    r = astro("-w", ws, "dre", "fit")
    assert r.returncode == 2 and f"{cuts}: not a readable HDF5 file" in r.stderr, r.stderr
    assert not (ws / "dre/summary/sim_000_dre.parquet").exists()
    assert not [p for p in (ws / "dre/chi").iterdir()]  # nothing half-written
    from astropy.io import fits

    bad = tmp_path / "badcube.fits"
    hdu = fits.PrimaryHDU(np.zeros((2, 256, 384), np.float32))
    hdu.header.update(BOXSIZE=128, NAXRAT=2, DAXRAT=0.5, AXRAT0=0.5, NPOSANG=2, DPOSANG=90.0, POSANG0=0.0)
    hdu.writeto(bad)
    r = astro("-w", ws, "dre", "fit", "--cube", bad)
    assert r.returncode == 2 and f"{bad}: model cube header lacks the key NLOGH" in r.stderr, r.stderr


def test_filter_option_parsing():
    from astrotool.errors import AstroError
    from astrotool_dre.cli import parse_filters

    assert parse_filters(["FLUX_RADIUS,2,20", "MAG_AUTO 18 24.5"]) == [["FLUX_RADIUS", 2.0, 20.0],
                                                                     ["MAG_AUTO", 18.0, 24.5]]
    for bad, why in [("FLUX_RADIUS,2", "expected COLUMN,MIN,MAX"), ("X,a,3", "must be numbers"),
                     ("X,5,1", "MIN must be below MAX"), ("X,nan,5", "must be finite numbers"),
                     ("X,0,inf", "must be finite numbers")]:
        with pytest.raises(AstroError, match=why):
            parse_filters([bad])


def test_a_reversed_filter_in_the_configuration_is_refused(astro, tmp_path):
    """`--set dre.cuts.filters=[["FLUX_RADIUS",20,2]]` cut 0 objects, exit 0 (the option refused it)."""
    r = astro("-w", tmp_path, "--set", 'dre.cuts.filters=[["FLUX_RADIUS",20,2]]', "dre", "cuts")
    assert r.returncode == 2 and "--set: dre.cuts.filters: FLUX_RADIUS [20, 2]: MIN must be below MAX" in r.stderr


@pytest.mark.long
def test_torch_backend_gives_the_numpy_answer(astro, tmp_path):
    pytest.importorskip("torch")
    ws = _simulate(astro, tmp_path)
    assert astro("-w", ws, "dre", "run", "--no-mosaics").returncode == 0
    ref = pd.read_parquet(ws / "dre/summary/sim_000_dre.parquet")
    r = astro("-w", ws, "--overwrite", "dre", "fit", "--backend", "torch", "--device", "cpu")
    assert r.returncode == 0, r.stderr
    assert "torch on cpu" in r.stdout
    got = pd.read_parquet(ws / "dre/summary/sim_000_dre.parquet")
    assert (got.NAME.to_numpy() == ref.NAME.to_numpy()).all()
    same = (got[["E_IDX", "T_IDX", "R_IDX"]].to_numpy() == ref[["E_IDX", "T_IDX", "R_IDX"]].to_numpy()).all(axis=1)
    assert same.mean() >= 0.9  # float32 sums in another order may flip a near-tie
    np.testing.assert_allclose(got.FLUX[same], ref.FLUX[same], rtol=2e-3)
    r = astro("-w", ws, "--overwrite", "dre", "fit", "--device", "cuda", "--backend", "numpy")
    assert r.returncode == 2 and "cuda" in r.stderr and "Traceback" not in r.stderr


def test_stages_are_declared_once():
    from astrotool_dre import astro_workspace_stages
    from astrotool_dre.pipeline import STAGE_FUNCTIONS, TilePaths
    from astrotool_dre.stages import FOLDERS, STAGES, TILE_STAGES

    assert TILE_STAGES == ("detect", "psf", "cuts", "fit", "mosaics")
    assert FOLDERS == ("tiles", "sextracted", "psf", "cuts", "models", "chi", "summary", "mosaics")
    assert astro_workspace_stages()["dre"] == ["tiles", "sextracted", "psf", "cuts", "models", "chi", "summary",
                                                "mosaics"]
    assert tuple(STAGE_FUNCTIONS) == TILE_STAGES
    paths = TilePaths("ws", "t")
    declared = {s.name: s.folders for s in STAGES}
    for stage in TILE_STAGES:  # every stage's outputs lie in a folder that stage itself declares
        assert paths.outputs(stage)
        assert all(p.relative_to("ws/dre").parts[0] in declared[stage] for p in paths.outputs(stage)), stage


def test_tile_items_run_the_same_in_worker_processes(astro, tmp_path):
    """Items (frozen dataclasses holding the typed sections) cross into spawned workers: -j 2 detects as serially."""
    import shutil

    from astropy.io import fits

    ws = _simulate(astro, tmp_path / "serial", n_tiles=2)
    par = tmp_path / "process"
    shutil.copytree(ws / "dre" / "tiles", par / "dre" / "tiles")
    assert astro("-w", ws, "dre", "detect").returncode == 0
    r = run_astro("-w", par, "--executor", "process", "-j", "2", "dre", "detect", env=DRE_GRID)  # workers' stderr
    assert r.returncode == 0, r.stderr
    for stem in ("sim_000", "sim_001"):  # the workers log each item's stage on the piped stderr
        assert f"INFO    detect: {stem} detect 1/1" in r.stderr, r.stderr
    for stem in ("sim_000", "sim_001"):
        a, b = (fits.getdata(w / f"dre/sextracted/{stem}/{stem}_cat.fits", "LDAC_OBJECTS") for w in (ws, par))
        assert len(a) >= 10 and a.tobytes() == b.tobytes()


@pytest.mark.long
def test_blended_galaxies_recovered_with_and_without_the_neighbour_step(astro, tmp_path):
    # random positions (isolation 0): the seed puts pairs of galaxies 18-40 px apart, wings overlapping
    sim = ["--set", "dre.simulate.size=512", "--set", "dre.simulate.n_galaxies=8", "--set", "dre.simulate.n_stars=14",
           "--set", "dre.simulate.isolation=0.0", "--set", "dre.simulate.min_separation=12.0",
           "--set", "dre.simulate.logr_range=[0.5, 0.9]", "--set", "dre.simulate.sersic_n=[1.0, 4.0]",
           "--set", 'dre.simulate.sersic_dist="choice"']
    grid = ["--set", "dre.models.index0=1.0", "--set", "dre.models.dindex=1.5", "--set", "dre.models.nindex=3"]
    base = tmp_path / "base"
    assert astro("-w", base, "--seed", 17, *sim, "dre", "simulate", "-n", 1).returncode == 0
    out = {}
    for mode in ("mask", "subtract"):
        ws = tmp_path / mode
        (ws / "dre").mkdir(parents=True)
        import shutil

        shutil.copytree(base / "dre" / "tiles", ws / "dre" / "tiles")
        r = astro("-w", ws, *grid, "--set", f'dre.fit.neighbours="{mode}"', "dre", "run", "--no-mosaics")
        assert r.returncode == 0, r.stderr
        from astrotool_dre.truth import workspace_pairs

        pairs = workspace_pairs(ws)
        out[mode] = pairs[pairs["matched"]].reset_index(drop=True)
    sub, mask = out["subtract"], out["mask"]
    blend = sub["BLEND_FIT"].astype(bool).to_numpy()
    assert blend.sum() >= 2 and not mask["BLEND_FIT"].astype(bool).any()
    for pairs in (sub, mask):  # recovered either way
        assert np.all(np.abs(pairs["LOGR_FIT"] - pairs["LOGR"])[blend] <= 0.115)
    dflux = {m: np.abs(p["FLUX_FIT"] / p["FLUX"] - 1)[blend].mean() for m, p in out.items()}
    assert dflux["subtract"] < dflux["mask"] and dflux["subtract"] < 0.05, dflux
    # objects without a blend are fit once: the same numbers either way (to float32 rounding: the
    # models are convolved over the whole stamp in one mode, over the largest crop in the other)
    assert np.allclose(sub["LOGR_FIT"][~blend], mask["LOGR_FIT"][~blend], rtol=0, atol=1e-4)


def test_tiles_that_are_no_image_stop_before_the_model_cube_and_leave_nothing(astro, tmp_path):
    from astropy.io import fits

    table = tmp_path / "table.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(
        [fits.Column(name="A", format="E", array=np.zeros(3))])]).writeto(table)
    full = tmp_path / "full.fits"
    fits.PrimaryHDU(np.ones((512, 512), np.float32)).writeto(full)
    trunc = tmp_path / "trunc.fits"
    trunc.write_bytes(full.read_bytes()[:100_000])
    ws = tmp_path / "ws"
    r = astro("-w", ws, "dre", "run", table)
    assert r.returncode == 2 and f"{table}: no 2-D image" in r.stderr, r.stderr
    assert "building the model cube" not in r.stderr
    assert not list((ws / "dre").rglob("*.fits")) and not list((ws / "dre").rglob(".tile_checksum.json"))
    nan = tmp_path / "nan.fits"   # an image (passes the check before the cube) that fails as an item
    fits.PrimaryHDU(np.full((64, 64), np.nan, np.float32)).writeto(nan)
    r = astro("-w", ws, "dre", "detect", trunc, nan)
    assert r.returncode == 2 and f"{trunc}: truncated" in r.stderr and f"{nan}: every pixel" in r.stderr, r.stderr
    assert "WARNING: File may have been truncated" not in r.stderr
    assert not list((ws / "dre").rglob(".tile_checksum.json"))


def test_a_tile_without_zero_point_is_named_in_a_warning(astro, tmp_path):
    from astropy.io import fits

    ws = _simulate(astro, tmp_path / "ws")
    tile = ws / "dre/tiles/sim_000.fits"
    with fits.open(tile, mode="update") as h:
        for k in ("MAGZP", "ZP", "MAGZPT"):
            h[0].header.remove(k, ignore_missing=True)
    r = astro("-w", ws, "dre", "detect")
    assert r.returncode == 0, r.stderr
    assert f"{tile}: no zero-point keyword" in r.stderr and "ZP = 30" in r.stderr, r.stderr


@pytest.mark.long
def test_demo_step_leaves_a_workspace_that_dre_run_continues(tmp_path, capsys):
    """The demo set its tile and PSF settings in its own process only: `astro -w DEMO dre run` afterwards refused
    the PSF (`dre.psf.var_degrees: 0 -> 2`), and the default grid of every index made a 2 GB cube."""
    import tomllib

    from astrotool.cli import main

    ws = tmp_path / "demo"
    assert main(["-w", str(ws), "--json", "demo", "--only", "dre"]) == 0
    [step] = json.loads(capsys.readouterr().out)["steps"]
    assert "recovery of 15/15" in step["lines"][-2] and str(ws / "astro.toml") in step["lines"][-1]
    settings = tomllib.loads((ws / "astro.toml").read_text())["dre"]
    assert settings["psf"] == {"var_degrees": 0} and settings["models"]["nindex"] == 1
    [cube] = (ws / "dre" / "models").glob("sersic_*.fits")
    assert cube.stat().st_size < 300e6
    assert main(["-w", str(ws), "--json", "dre", "run"]) == 0
    out = capsys.readouterr()
    assert "made with other settings" not in out.err
    [tile] = json.loads(out.out)["tiles"]
    assert all(tile[k] == "skipped (done)" for k in ("detect", "psf", "cuts", "fit", "mosaics")), tile


def test_the_demo_never_duplicates_or_replaces_a_workspace_s_own_dre_settings(tmp_path):
    """Appending the demo's [dre.simulate] to an astro.toml that had one broke every later command there."""
    import tomllib

    from astrotool_dre.demo import SETTINGS, _save_settings

    own = tmp_path / "own.toml"
    own.write_text("[dre.simulate]\nn_tiles = 4\n")
    assert not _save_settings(own) and own.read_text() == "[dre.simulate]\nn_tiles = 4\n"
    fresh = tmp_path / "fresh.toml"
    fresh.write_text("# a workspace\n[core]\nseed = 3\n")
    assert _save_settings(fresh) and _save_settings(fresh)   # once, however often the demo runs
    assert fresh.read_text().count(SETTINGS) == 1 and tomllib.loads(fresh.read_text())["core"] == {"seed": 3}


def test_no_tiles_hint_names_the_workspace(tmp_path):
    """`run astro dre simulate` lacked the `-w` of the command that printed it: pasted, it simulated elsewhere."""
    from tests.conftest import run_astro_here

    r = run_astro_here("-w", tmp_path, "dre", "run")
    assert r.returncode == 2 and f"run `astro -w {tmp_path} dre simulate` or copy tiles there" in r.stderr
