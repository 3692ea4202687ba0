"""Valid tiles at the edges: no WCS, an odd BUNIT, nothing to detect, no stars, weight maps, bad names."""

import logging
import warnings

import numpy as np
import pytest

fits = pytest.importorskip("astropy.io.fits")
pytest.importorskip("photutils")

from astrotool.errors import AstroError, InputError  # noqa: E402
from astrotool_dre.catalog import CATALOG_COLUMNS, read_catalog  # noqa: E402
from astrotool_dre.config import DetectConfig, PsfConfig, SimulateConfig  # noqa: E402
from astrotool_dre.detect import detect_tile  # noqa: E402
from astrotool_dre.psf import build_psf  # noqa: E402
from astrotool_dre.simulate import simulate_tile  # noqa: E402

from tests.dre.conftest import ENGINES, HAVE_PSFEX, HAVE_SEX  # noqa: E402


@pytest.fixture(scope="module")
def tile(tmp_path_factory):
    d = tmp_path_factory.mktemp("edge")
    out = simulate_tile(d / "tile.fits", d / "truth.parquet", SimulateConfig(
        size=256, n_galaxies=3, n_stars=6, edge=40.0, min_separation=20.0), seed=3)
    return d, out["tile"]


def _variant(tile, path, data=None, drop=(), **keys):
    """A copy of ``tile`` at ``path``, header keys ``drop`` removed and ``keys`` set."""
    with fits.open(tile) as h:
        header = h[0].header.copy()
        image = h[0].data if data is None else data
    for k in drop:
        header.remove(k, ignore_missing=True, remove_all=True)
    header.update(keys)
    fits.PrimaryHDU(image, header=header).writeto(path)
    return path


WCS_KEYS = ("CTYPE1", "CTYPE2", "CRVAL1", "CRVAL2", "CRPIX1", "CRPIX2", "CD1_1", "CD1_2", "CD2_1", "CD2_2",
            "CDELT1", "CDELT2", "CUNIT1", "CUNIT2", "RADESYS", "EQUINOX", "PC1_1", "PC1_2", "PC2_1", "PC2_2")


@pytest.mark.parametrize("engine", ENGINES)
def test_tile_without_wcs_gets_empty_radec_and_one_warning(tile, tmp_path, engine, caplog):
    d, t = tile
    nowcs = _variant(t, tmp_path / "nowcs.fits", drop=WCS_KEYS)
    with caplog.at_level(logging.WARNING, logger="astro"):
        r = detect_tile(nowcs, tmp_path / engine, DetectConfig(engine=engine))
    cat = read_catalog(r["cat"])
    assert len(cat) > 3
    assert np.isnan(np.asarray(cat["ALPHA_J2000"], float)).all()
    assert np.isnan(np.asarray(cat["DELTA_J2000"], float)).all()
    hits = [m for m in caplog.messages if "no celestial WCS" in m]
    assert len(hits) == 1 and "nowcs.fits" in hits[0]


@pytest.mark.parametrize("engine", ENGINES)
def test_tile_with_wcs_keeps_radec(tile, tmp_path, engine):
    d, t = tile
    cat = read_catalog(detect_tile(t, tmp_path / engine, DetectConfig(engine=engine))["cat"])
    assert np.isfinite(np.asarray(cat["ALPHA_J2000"], float)).all()


@pytest.mark.parametrize("bunit", ["e-/s/px", "nanomaggy"])
def test_bunit_astropy_cannot_write_is_kept_verbatim(tile, tmp_path, bunit, caplog):
    d, t = tile
    odd = _variant(t, tmp_path / "odd.fits", BUNIT=bunit)
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.WARNING, logger="astro"):
        warnings.simplefilter("always")
        r = detect_tile(odd, tmp_path / "out", DetectConfig(engine="photutils"))
    assert not [w for w in caught if "nit" in str(w.message)], [str(w.message) for w in caught]
    header = fits.getheader(r["cat"], "LDAC_OBJECTS")
    col = {header[f"TTYPE{i}"]: i for i in range(1, header["TFIELDS"] + 1)}
    assert header[f"TUNIT{col['FLUX_AUTO']}"] == bunit and header[f"TUNIT{col['FLUXERR_AUTO']}"] == bunit
    assert header[f"TUNIT{col['X_IMAGE']}"] == "pix"
    assert len([m for m in caplog.messages if bunit in m and "is not a FITS unit" in m]) == 1
    # a rate read as counts is said too (the tile's GAIN is in e-/ADU)
    assert len([m for m in caplog.messages if "is a rate" in m]) == (bunit == "e-/s/px")


def test_masked_pixels_stay_nan_in_the_background_subtracted_image(tile, tmp_path):
    if not HAVE_SEX:
        pytest.skip("source-extractor not installed")
    d, t = tile
    data = fits.getdata(t).astype(np.float32)
    data[10:20, 30:60] = np.nan
    holed = _variant(t, tmp_path / "holed.fits", data=data)
    r = detect_tile(holed, tmp_path / "out", DetectConfig(engine="sextractor"))
    nb = fits.getdata(r["nb"])
    assert np.isnan(nb[10:20, 30:60]).all()
    assert np.isfinite(nb[100:120, 100:120]).all()


@pytest.mark.skipif(not (HAVE_SEX and HAVE_PSFEX), reason="psfex or source-extractor not installed")
def test_psfex_with_too_few_star_candidates_fails_at_the_psf_stage(tile, tmp_path):
    d, t = tile
    r = detect_tile(t, tmp_path / "det", DetectConfig(engine="sextractor"))
    out = tmp_path / "x.psf"
    with pytest.raises(InputError, match=r"only \d+ usable PSF star candidates \(need 500\)") as exc:
        build_psf(r["cat"], out, PsfConfig(engine="psfex", min_stars=500))
    assert r["cat"] in str(exc.value)
    assert not out.exists()


def test_non_fits_file_says_so_in_our_words(tmp_path):
    junk = tmp_path / "junk.fits"
    junk.write_bytes(b"this is not a FITS file" * 200)
    with pytest.raises(InputError, match="not a FITS file") as exc:
        detect_tile(junk, tmp_path / "out", DetectConfig(engine="photutils"))
    assert "ignore_missing_simple" not in str(exc.value)


def test_a_tile_without_a_2d_image_says_what_each_hdu_holds(tmp_path):
    from astrotool_dre.tiles import check_tile

    path = tmp_path / "cube.fits"
    fits.HDUList([fits.PrimaryHDU(np.zeros((3, 8, 8), np.float32)), fits.BinTableHDU.from_columns(
        [fits.Column(name="A", format="E", array=np.zeros(2))])]).writeto(path)
    with pytest.raises(InputError) as exc:
        check_tile(path)
    assert "HDU 0 is 3-D (3, 8, 8), HDU 1 is a table: give a 2-D image" in str(exc.value)
    assert "\n" not in str(exc.value)


def test_missing_gain_names_the_settings_that_give_it(tile, tmp_path):
    d, t = tile
    nogain = _variant(t, tmp_path / "nogain.fits", drop=("GAIN",))
    with pytest.raises(InputError, match=r"--gain.*dre\.detect\.gain"):
        detect_tile(nogain, tmp_path / "out", DetectConfig(engine="photutils"))


@pytest.mark.parametrize("engine", ENGINES)
def test_pure_noise_tile_gives_an_empty_catalogue_and_a_warning(tmp_path, engine, caplog):
    hdr = fits.Header({"GAIN": 2.0, "EXPTIME": 10.0, "BUNIT": "ADU"})
    noise = tmp_path / "noise.fits"
    fits.PrimaryHDU(np.random.default_rng(1).normal(100, 5, (192, 192)).astype(np.float32),
                    header=hdr).writeto(noise)
    with caplog.at_level(logging.WARNING, logger="astro"):
        r = detect_tile(noise, tmp_path / "out", DetectConfig(engine=engine, detect_thresh=50.0))
    assert r["n_sources"] == 0
    cat = read_catalog(r["cat"])
    assert len(cat) == 0 and set(CATALOG_COLUMNS) - {"CLASS_STAR"} <= set(cat.colnames)
    assert any("no sources detected" in m and "noise.fits" in m for m in caplog.messages)


GRID = ["--set", "dre.models.naxrat=3", "--set", "dre.models.axrat0=0.4", "--set", "dre.models.daxrat=0.3",
        "--set", "dre.models.nposang=4", "--set", "dre.models.dposang=45.0", "--set", "dre.models.nlogh=6",
        "--set", "dre.models.dlogh=0.3"]


def _read_summary(ws, stem):
    from astropy.table import Table

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # astropy reading a TUNIT it does not know
        return (Table.read(ws / f"dre/summary/{stem}_dre.fits", hdu="DRE_SUMMARY"),
                Table.read(ws / f"dre/summary/{stem}_dre.parquet", format="parquet"))


@pytest.mark.parametrize("engine, psf_engine", [
    pytest.param("sextractor", "psfex", marks=pytest.mark.skipif(not (HAVE_SEX and HAVE_PSFEX),
                                                                  reason="source-extractor or psfex not installed")),
    ("photutils", "photutils")])
def test_a_tile_with_nothing_to_fit_gives_empty_outputs_and_reruns_skip(astro, tmp_path, engine, psf_engine):
    ws = tmp_path / "ws"
    (ws / "dre/tiles").mkdir(parents=True)
    hdr = fits.Header({"GAIN": 2.0, "EXPTIME": 10.0, "BUNIT": "ADU", "MAGZP": 30.0})
    fits.PrimaryHDU(np.random.default_rng(1).normal(100, 5, (256, 256)).astype(np.float32),
                    header=hdr).writeto(ws / "dre/tiles/noise.fits")
    eng = ["--set", f'dre.detect.engine="{engine}"', "--set", f'dre.psf.engine="{psf_engine}"',
           "--set", "dre.detect.detect_thresh=50.0"]
    r = astro("-w", ws, *GRID, *eng, "dre", "run")
    assert r.returncode == 0, r.stderr
    assert "no sources detected" in r.stderr and "noise.fits" in r.stderr
    fits_t, pq_t = _read_summary(ws, "noise")
    assert len(fits_t) == 0 and len(pq_t) == 0
    assert {"FLUX", "MAG", "LOGR", "INDEX", "X_IMAGE"} <= set(fits_t.colnames)
    assert {"FLUX", "MAG", "LOGR"} <= set(pq_t.colnames)
    r = astro("-w", ws, *GRID, *eng, "dre", "run")
    assert r.returncode == 0, r.stderr
    assert "skipped (done)" in r.stdout + r.stderr


def test_a_tile_whose_cuts_select_nothing_gives_an_empty_summary(astro, tmp_path):
    ws = tmp_path / "ws"
    r = astro("-w", ws, "--set", "dre.simulate.size=256", "--set", "dre.simulate.n_galaxies=2", "--set",
              "dre.simulate.n_stars=8", "--set", "dre.simulate.edge=40.0", "--set", "dre.simulate.min_separation=20.0",
              "dre", "simulate", "-n", 1)
    assert r.returncode == 0, r.stderr
    fits.setval(ws / "dre/tiles/sim_000.fits", "BUNIT", value="e-/s/px")   # a unit astropy cannot read
    eng = ["--set", 'dre.detect.engine="photutils"', "--set", 'dre.psf.engine="photutils"',
           "--set", "dre.cuts.margin=200.0"]
    r = astro("-w", ws, *GRID, *eng, "dre", "run")
    assert r.returncode == 0, r.stderr
    assert "no objects to fit" in r.stderr and "UnitsWarning" not in r.stderr
    assert r.stderr.count("BUNIT 'e-/s/px' is not a FITS unit") == 1 and r.stderr.count("BUNIT 'e-/s/px' is a rate") == 1
    fits_t, pq_t = _read_summary(ws, "sim_000")
    assert len(fits_t) == 0 and len(pq_t) == 0 and "FLUX" in fits_t.colnames
    header = fits.getheader(ws / "dre/summary/sim_000_dre.fits", "DRE_SUMMARY")
    col = {header[f"TTYPE{i}"]: i for i in range(1, header["TFIELDS"] + 1)}
    assert header["BUNIT"] == "e-/s/px"
    assert header[f"TUNIT{col['FLUX']}"] == "e-/s/px" and header[f"TUNIT{col['FLUX_ERR']}"] == "e-/s/px"


WEIGHTS = "weights/{stem}_wht.fits"


def _weight(tile, data):
    """Write the weight map of ``tile`` where :data:`WEIGHTS` puts it."""
    path = tile.parent / WEIGHTS.format(stem=tile.name[:-len(".fits")])
    path.parent.mkdir(exist_ok=True)
    path.unlink(missing_ok=True)
    fits.PrimaryHDU(np.asarray(data, np.float32)).writeto(path)
    return path


@pytest.mark.skipif(not HAVE_SEX, reason="source-extractor not installed")
def test_weight_map_of_each_tile_is_used(tile, tmp_path):
    d, t = tile
    w = np.ones(fits.getdata(t).shape)
    w[:, :128] = 0.0   # the left half carries no weight: nothing is detected there
    tile2 = _variant(t, tmp_path / "wtile.fits")
    _weight(tile2, w)
    r = detect_tile(tile2, tmp_path / "out", DetectConfig(engine="sextractor", weight_image=WEIGHTS))
    x = np.asarray(read_catalog(r["cat"])["X_IMAGE"], float)
    assert len(x) >= 3 and (x > 120).all()


def test_bad_weight_maps_are_refused_naming_the_files(tile, tmp_path):
    d, t = tile
    tile2 = _variant(t, tmp_path / "wtile.fits")
    cfg = dict(weight_image=WEIGHTS)
    missing = tmp_path / "weights/wtile_wht.fits"
    if HAVE_SEX:   # without SExtractor the engine is refused before the weight map is looked for
        with pytest.raises(InputError, match="weight map not found") as exc:
            detect_tile(tile2, tmp_path / "out", DetectConfig(engine="sextractor", **cfg))
        assert str(missing) in str(exc.value)
    else:
        with pytest.raises(AstroError, match="needs source-extractor; engine 'photutils'"):
            detect_tile(tile2, tmp_path / "out", DetectConfig(engine="photutils", **cfg))
    _weight(tile2, np.ones((100, 120)))
    if HAVE_SEX:
        with pytest.raises(InputError, match=r"shape \(100, 120\) differs from .*\(256, 256\)") as exc:
            detect_tile(tile2, tmp_path / "out", DetectConfig(engine="sextractor", **cfg))
        assert str(missing) in str(exc.value) and str(tile2) in str(exc.value)
    with pytest.raises(AstroError, match="needs source-extractor; engine 'photutils'"):
        detect_tile(tile2, tmp_path / "out", DetectConfig(engine="photutils", **cfg))
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_tile_as_its_own_weight_map_is_refused(astro, tile, tmp_path):
    """``weight_image = "{stem}.fits"``: the tile stays a tile (not "no tiles"), and is refused as its own
    weight map, named on the command line or not."""
    from astrotool_dre.tiles import check_weight, tile_files

    d, t = tile
    ws = tmp_path / "ws"
    (ws / "dre/tiles").mkdir(parents=True)
    tile2 = _variant(t, ws / "dre/tiles/sim_000.fits")
    for pattern in ("{stem}.fits", "./{stem}.fits", "../tiles/{stem}.fits"):
        assert tile_files(ws / "dre/tiles", pattern) == [tile2]
        with pytest.raises(InputError, match=r"its own weight map: .*dre\.detect\.weight_image") as exc:
            check_weight(tile2, pattern, (256, 256))
        assert str(tile2) in str(exc.value)
    setting = ["--set", 'dre.detect.weight_image="{stem}.fits"', "--set", 'dre.detect.engine="sextractor"']
    for names in ([], ["sim_000"], [str(tile2)]):
        r = astro("-w", ws, *setting, "dre", "detect", *names)
        assert r.returncode == 2, r.stderr
        assert "its own weight map" in r.stderr and "dre.detect.weight_image" in r.stderr, r.stderr
        assert "no tiles" not in r.stderr
    assert not (ws / "dre/sextracted").exists() or not any((ws / "dre/sextracted").glob("*.fits"))


def test_weight_map_setting_needs_the_stem():
    with pytest.raises(ValueError, match=r"\{stem\}"):
        DetectConfig(weight_image="weights.fits")


@pytest.mark.skipif(not HAVE_SEX, reason="source-extractor not installed")
def test_a_changed_weight_map_is_not_reused(astro, tile, tmp_path, monkeypatch):
    d, t = tile
    ws = tmp_path / "ws"
    (ws / "dre/tiles").mkdir(parents=True)
    tile2 = _variant(t, ws / "dre/tiles/w.fits")
    _weight(tile2, np.ones((256, 256)))
    args = ["-w", ws, "--set", f'dre.detect.weight_image="{WEIGHTS}"', "--set", 'dre.detect.engine="sextractor"',
            "dre", "detect"]
    r = astro(*args)
    assert r.returncode == 0, r.stderr
    assert "skipped (done)" in astro(*args).stdout
    w = np.ones((256, 256))
    w[:, :128] = 0.0
    _weight(tile2, w)
    r = astro(*args)
    assert r.returncode == 2 and "inputs.weight" in r.stderr, (r.stdout, r.stderr)
    # a later stage compares the weight map's checksum, not a whole detect record built again
    from astrotool_dre import pipeline
    from astrotool_dre.config import DreConfig

    real = pipeline.stage_record

    def no_detect_record(paths, stage, *a, **kw):
        assert stage != "detect", "the detect record was built again to read inputs.weight"
        return real(paths, stage, *a, **kw)

    monkeypatch.setattr(pipeline, "stage_record", no_detect_record)
    cfg = DreConfig(detect={"weight_image": WEIGHTS, "engine": "sextractor"})
    with pytest.raises(AstroError, match=r"inputs\.weight"):
        pipeline.check_tiles([tile2], ws, ("psf",), cfg, overwrite=False)
    _weight(tile2, np.ones((256, 256)))   # the weight map it was detected with again: nothing is out of date
    pipeline.check_tiles([tile2], ws, ("psf",), cfg, overwrite=False)


def test_the_sci_hdu_of_a_file_with_several_images_is_the_tile(tile, tmp_path):
    from astrotool_dre.tiles import check_tile, read_image

    d, t = tile
    with fits.open(t) as h:
        data, header = h[0].data, h[0].header
    path = tmp_path / "sciwht.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(data[::-1].copy(), name="WHT"),
                  fits.ImageHDU(data, header=header, name="SCI")]).writeto(path)
    assert check_tile(path) == 2
    np.testing.assert_array_equal(read_image(path)[0], data)
    for engine in ["photutils"] + (["sextractor"] if HAVE_SEX else []):   # the SCI image alone is detected
        plain = read_catalog(detect_tile(t, tmp_path / f"plain_{engine}", DetectConfig(engine=engine))["cat"])
        cat = read_catalog(detect_tile(path, tmp_path / engine, DetectConfig(engine=engine))["cat"])
        assert len(cat) == len(plain) and (cat["EXT_NUMBER"] == 2).all()
    two = tmp_path / "two.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(data), fits.ImageHDU(data)]).writeto(two)
    with pytest.raises(InputError, match="image extensions"):
        check_tile(two)


@pytest.mark.skipif(not HAVE_SEX, reason="source-extractor not installed")
def test_empty_catalogue_without_the_network_has_every_column_and_an_empty_psf(tmp_path, monkeypatch):
    import astrotool_dre.detect_sextractor as dse
    from astrotool_dre.detect import engine_of

    monkeypatch.setattr(dse, "find_nnw", lambda binary=None: None)
    noise = tmp_path / "noise.fits"
    fits.PrimaryHDU(np.random.default_rng(1).normal(100, 5, (192, 192)).astype(np.float32),
                    header=fits.Header({"GAIN": 2.0})).writeto(noise)
    r = detect_tile(noise, tmp_path / "out", DetectConfig(engine="sextractor", detect_thresh=50.0))
    assert r["n_sources"] == 0
    assert set(CATALOG_COLUMNS) <= set(read_catalog(r["cat"]).colnames)
    psf = build_psf(r["cat"], tmp_path / "noise.psf", PsfConfig(engine="photutils"))
    assert psf["engine"] == "none" and engine_of(psf["psf"]) == "none"
    history = str(fits.getheader(psf["psf"], 0).get("HISTORY", ""))
    assert "dre psf" in history and "empty catalogue" in str(fits.getheader(psf["psf"], 1).get("HISTORY", "")) + history


@pytest.mark.skipif(not HAVE_SEX, reason="source-extractor not installed")
@pytest.mark.parametrize("kind", ["fz", "hdu1"])
def test_a_compressed_weight_map_or_one_in_an_extension_is_read(tile, tmp_path, kind):
    d, t = tile
    w = np.ones(fits.getdata(t).shape, np.float32)
    w[:, :128] = 0.0
    tile2 = _variant(t, tmp_path / "wtile.fits")
    (tmp_path / "weights").mkdir()
    if kind == "fz":
        pattern = "weights/{stem}_wht.fits.fz"
        fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(w)]).writeto(tmp_path / "weights/wtile_wht.fits.fz")
    else:
        pattern = "weights/{stem}_wht.fits"
        fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(w, name="WHT")]).writeto(tmp_path / "weights/wtile_wht.fits")
    r = detect_tile(tile2, tmp_path / "out", DetectConfig(engine="sextractor", weight_image=pattern))
    x = np.asarray(read_catalog(r["cat"])["X_IMAGE"], float)
    assert len(x) >= 3 and (x > 120).all()


def test_a_weight_map_without_sextractor_is_refused_once_before_any_work(astro, tile, tmp_path):
    d, t = tile
    ws = tmp_path / "ws"
    (ws / "dre/tiles").mkdir(parents=True)
    for name in ("a", "b"):
        _weight(_variant(t, ws / f"dre/tiles/{name}.fits"), np.ones((256, 256)))
    key = ["--set", f'dre.detect.weight_image="{WEIGHTS}"']
    bare = tmp_path / "bin"
    bare.mkdir()
    r = astro("-w", ws, *key, "dre", "detect", env={"PATH": str(bare)})
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert ("dre.detect.weight_image needs source-extractor; engine 'auto' found none on PATH (install it, "
            "or unset the key)") in r.stderr
    assert r.stderr.count("weight_image") == 1 and not list((ws / "dre").glob("sextracted/*/*_cat.fits"))
    r = astro("-w", ws, *key, "--set", 'dre.detect.engine="photutils"', "dre", "detect")
    assert r.returncode == 2 and "engine 'photutils'" in r.stderr and r.stderr.count("weight_image") == 1


def test_two_sci_images_are_refused_in_those_words(tile, tmp_path):
    from astrotool_dre.tiles import check_tile

    d, t = tile
    data = fits.getdata(t)
    path = tmp_path / "hst.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(data, name="SCI", ver=1),
                  fits.ImageHDU(data, name="SCI", ver=2)]).writeto(path)
    with pytest.raises(InputError, match="2 images named SCI") as exc:
        check_tile(path)
    assert "none named SCI" not in str(exc.value)


def test_weight_maps_beside_the_tiles_are_not_tiles(tmp_path):
    from astrotool_dre.pipeline import tiles_in

    folder = tmp_path / "dre" / "tiles"
    folder.mkdir(parents=True)
    for n in ("hole.fits", "hole_wht.fits", "other.fits.gz", "other_wht.fits"):
        (folder / n).write_bytes(b"")
    assert [p.name for p in tiles_in(tmp_path, weight_image="{stem}_wht.fits")] == ["hole.fits", "other.fits.gz"]
    assert len(tiles_in(tmp_path)) == 4


@pytest.mark.skipif(not HAVE_SEX, reason="source-extractor not installed")
def test_a_changed_weight_map_refuses_a_later_stage(astro, tile, tmp_path):
    d, t = tile
    ws = tmp_path / "ws"
    (ws / "dre/tiles").mkdir(parents=True)
    tile2 = _variant(t, ws / "dre/tiles/w.fits")
    _weight(tile2, np.ones((256, 256)))
    key = ["-w", ws, "--set", f'dre.detect.weight_image="{WEIGHTS}"', "--set", 'dre.detect.engine="sextractor"']
    r = astro(*key, "dre", "detect")
    assert r.returncode == 0, r.stderr
    w = np.ones((256, 256))
    w[:, :128] = 0.0
    _weight(tile2, w)
    r = astro(*key, "--set", 'dre.psf.engine="photutils"', "dre", "psf")
    assert r.returncode == 2 and "inputs.weight" in r.stderr and "dre detect" in r.stderr, (r.stdout, r.stderr)
    assert not (ws / "dre/psf").exists() or not list((ws / "dre/psf").rglob("*.psf"))


@pytest.mark.skipif(not (HAVE_SEX and HAVE_PSFEX), reason="psfex or source-extractor not installed")
def test_psfex_accepting_fewer_than_min_stars_fails_the_tile(tile, tmp_path):
    d, t = tile
    r = detect_tile(t, tmp_path / "det", DetectConfig(engine="sextractor"))
    cat = read_catalog(r["cat"])
    cfg = PsfConfig(engine="psfex")
    n = int(((np.asarray(cat["CLASS_STAR"]) >= cfg.min_stellarity) & (np.asarray(cat["FLAGS"]) < 4)).sum())
    out = tmp_path / "x.psf"
    with pytest.raises(InputError, match=rf"PSFEx accepted \d+ of {n} candidates") as exc:
        build_psf(r["cat"], out, PsfConfig(engine="psfex", min_stars=n, psfex_args={"SAMPLE_MINSN": "1000"}))
    assert r["cat"] in str(exc.value) and not out.exists()


@pytest.mark.skipif(not HAVE_SEX, reason="source-extractor not installed")
def test_nan_pixels_carry_no_weight_beside_a_weight_map(tile, tmp_path):
    d, t = tile
    data = fits.getdata(t).astype(np.float32)
    data[:, :128] = np.nan
    holed = _variant(t, tmp_path / "holed.fits", data=data)
    _weight(holed, np.ones(data.shape))
    r = detect_tile(holed, tmp_path / "out", DetectConfig(engine="sextractor", weight_image=WEIGHTS))
    x = np.asarray(read_catalog(r["cat"])["X_IMAGE"], float)
    assert len(x) >= 3 and (x > 120).all()
    assert np.isnan(fits.getdata(r["nb"])[:, :128]).all()


def test_read_weight_marks_no_weight_and_bad_rms(tmp_path):
    """Weight 0 or NaN (MAP_WEIGHT); an RMS or variance of 0, negative, infinite or huge: no data."""
    from astrotool_dre.tiles import read_weight

    path = tmp_path / "w.fits"
    cases = {"MAP_WEIGHT": ([1.0, 0.5, 0.0, np.nan, -1.0, 1e-9], [0, 0, 1, 1, 1, 1]),
             "MAP_RMS": ([12.5, 12.0, 0.0, np.inf, -3.0, 1e10], [0, 0, 1, 1, 1, 1]),
             "MAP_VAR": ([156.0, 150.0, 0.0, np.inf, -3.0, 1e10], [0, 0, 1, 1, 1, 1])}
    for kind, (values, nodata) in cases.items():
        fits.PrimaryHDU(np.array([values, values], np.float32)).writeto(path, overwrite=True)
        assert read_weight(path, kind)[1].tolist() == [[bool(v) for v in nodata]] * 2, kind
    assert read_weight(path, "BACKGROUND")[1] is None


@pytest.mark.skipif(not HAVE_SEX, reason="source-extractor not installed")
@pytest.mark.parametrize("kind, gap", [("MAP_WEIGHT", 0.0), ("MAP_RMS", 1e10)])
def test_pixels_of_no_weight_are_no_data_as_nan_pixels_are(tile, tmp_path, kind, gap):
    """A zero-filled chip gap of weight 0 (or of a huge RMS) is NaN in the products, and the cuts that cross it
    are dropped, as those crossing a gap of NaN pixels are, not cut and fitted as data."""
    from astrotool_dre.config import CutsConfig
    from astrotool_dre.cuts import make_cuts, read_cuts

    d, t = tile
    data = fits.getdata(t).astype(np.float32)
    band = slice(120, 126)
    cuts = CutsConfig(size=64, margin=34.0, max_stellarity=1.0)
    sky_rms = 1.4826 * float(np.median(np.abs(data - np.median(data))))
    made = {}
    for name in ("nan", "weight"):   # a gap of NaN pixels, no weight map; a zero-filled gap and its weight map
        gapped = data.copy()
        gapped[:, band] = np.nan if name == "nan" else 0.0
        path = _variant(t, tmp_path / f"{name}.fits", data=gapped)
        weights = {}
        if name == "weight":
            weight = np.full(data.shape, sky_rms if kind == "MAP_RMS" else 1.0)
            weight[:, band] = gap
            _weight(path, weight)
            weights = dict(weight_image=WEIGHTS, weight_type=kind)
        r = detect_tile(path, tmp_path / name, DetectConfig(engine="sextractor", **weights))
        for k in ("nb", "rms"):
            image = fits.getdata(r[k])
            assert np.isnan(image[:, band]).all() and np.isfinite(image[:, :band.start]).all()
        made[name] = make_cuts(r["cat"], r["nb"], r["rms"], r["seg"], path, tmp_path / f"{name}_cuts.h5", cuts)
    assert made["weight"]["n_rejected_nan"] >= 1 and made["weight"]["n_cuts"] >= 1   # the test means something
    c, c_nan = (read_cuts(made[name]["cuts"]) for name in ("weight", "nan"))
    assert ((c.attrs["CUT_XMIN"] + cuts.size <= band.start) | (c.attrs["CUT_XMIN"] >= band.stop)).all()
    assert sorted(c.attrs["CUT_XMIN"]) == sorted(c_nan.attrs["CUT_XMIN"])   # the same objects cut


@pytest.mark.skipif(not HAVE_SEX, reason="source-extractor not installed")
@pytest.mark.parametrize("kind, value, words", [("MAP_WEIGHT", 0.0, "no pixel with positive weight"),
                                                ("MAP_RMS", np.inf, "no pixel with finite positive RMS")])
def test_a_weight_map_of_no_weight_anywhere_exits_2_naming_it(astro, tile, tmp_path, kind, value, words):
    d, t = tile
    ws = tmp_path / "ws"
    (ws / "dre/tiles").mkdir(parents=True)
    tile2 = _variant(t, ws / "dre/tiles/sim_000.fits")
    wmap = _weight(tile2, np.full((256, 256), value))
    r = astro("-w", ws, "--set", f'dre.detect.weight_image="{WEIGHTS}"', "--set", 'dre.detect.engine="sextractor"',
              "--set", f'dre.detect.weight_type="{kind}"', "dre", "detect")
    assert r.returncode == 2, r.stderr
    assert f"{wmap}: weight map ({kind}) has {words}" in r.stderr
    assert not any((ws / "dre/sextracted").rglob("*_cat.fits"))


@pytest.mark.skipif(not HAVE_SEX, reason="source-extractor not installed")
def test_a_negative_flux_radius_beside_a_zero_gap_gives_no_numpy_warning(tile, tmp_path):
    """A star whose Kron aperture reaches into a zero-filled gap gets FLUX_RADIUS < 0 in SExtractor's first
    pass (measuring the seeing): no RuntimeWarning from its logarithm."""
    d, t = tile
    data = fits.getdata(t).astype(np.float32)
    data[:, 159:171] = 0.0   # 4 px right of the star at X_IMAGE 155.6
    gapped = _variant(t, tmp_path / "gap.fits", data=data)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        detect_tile(gapped, tmp_path / "out", DetectConfig(engine="sextractor"))
    assert [str(w.message) for w in caught   # what a user would see (a library's deprecations are not)
            if not issubclass(w.category, (DeprecationWarning, PendingDeprecationWarning))] == []


@pytest.mark.parametrize("engine", ENGINES)
def test_an_int16_tile_with_blank_gives_no_astropy_warning(tile, tmp_path, engine):
    """The products are floats: the tile's BLANK (and BZERO, BSCALE) are not copied onto them."""
    from astrotool_dre.tiles import image_header

    d, t = tile
    data = np.round(fits.getdata(t)).astype(np.int16)
    data[:, 120:126] = -32768
    blank = _variant(t, tmp_path / "blank16.fits", data=data, BLANK=-32768)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = detect_tile(blank, tmp_path / engine, DetectConfig(engine=engine))
    assert [str(w.message) for w in caught   # what a user would see (a library's deprecations are not)
            if not issubclass(w.category, (DeprecationWarning, PendingDeprecationWarning))] == []
    assert np.isnan(fits.getdata(r["nb"])[:, 120:126]).all()
    assert not {"BLANK", "BZERO", "BSCALE"} & set(image_header(fits.Header({"BLANK": -1, "BZERO": 0, "BSCALE": 1})))


def test_a_tile_smaller_than_a_cut_is_refused_before_any_work(astro, tile, tmp_path):
    d, t = tile
    ws = tmp_path / "ws"
    (ws / "dre/tiles").mkdir(parents=True)
    tiny = _variant(t, ws / "dre/tiles/tiny.fits", data=fits.getdata(t)[:100, :100])
    r = astro("-w", ws, *GRID, "--set", 'dre.detect.engine="photutils"', "--set", 'dre.psf.engine="photutils"',
              "dre", "run", "--no-mosaics")
    assert r.returncode == 2, r.stderr
    assert f"{tiny}: 100 x 100 px is smaller than a cut (dre.cuts.size = 128 px)" in r.stderr
    assert not (ws / "dre/sextracted/tiny").exists() and not any((ws / "dre/models").glob("*.fits"))


def test_a_tile_smaller_than_a_cut_among_larger_ones_fails_alone(tile, tmp_path):
    """One small edge tile of a survey refused the whole batch: it fails as its own item, before its detection."""
    from astrotool_dre.config import DreConfig
    from astrotool_dre.pipeline import TileItem, check_cut_rooms, process_tile

    d, t = tile
    (tmp_path / "tiles").mkdir()
    tiny = _variant(t, tmp_path / "tiles/tiny.fits", data=fits.getdata(t)[:100, :100])
    big = _variant(t, tmp_path / "tiles/big.fits")
    cfg = DreConfig()
    check_cut_rooms([tiny, big], cfg)                                   # not refused: big can be cut
    with pytest.raises(InputError, match=r"tiny\.fits: 100 x 100 px is smaller than a cut .* \(and 1 more tiles, none larger\)$"):
        check_cut_rooms([tiny, _variant(t, tmp_path / "tiles/tiny2.fits", data=fits.getdata(t)[:90, :200])], cfg)
    item = TileItem(tiny, tmp_path / "ws", ("detect", "psf", "cuts"), cfg, False, None)
    with pytest.raises(InputError, match=r"tiny\.fits: 100 x 100 px is smaller than a cut"):
        process_tile(item, 0)
    assert not (tmp_path / "ws/dre/sextracted/tiny").exists()


@pytest.mark.skipif(not HAVE_SEX, reason="source-extractor not installed")
@pytest.mark.parametrize("kind, gap", [("MAP_WEIGHT", 1e-12), ("MAP_RMS", 1e10)])
def test_a_tiny_weight_or_huge_rms_of_no_data_leaves_the_noise_map_alone(tile, tmp_path, kind, gap):
    """Zero-filled borders and a chip gap marked by a weight of 1e-12 (or an RMS of 1e10): no data by DRE's rule
    (tiles.read_weight), so SExtractor's noise map (its backgrounded weight map) is the sky's RMS elsewhere,
    not pulled negative or far up by those pixels."""
    d, t = tile
    data = fits.getdata(t).astype(np.float32)
    sky_rms = 1.4826 * float(np.median(np.abs(data - np.median(data))))
    nodata = np.zeros(data.shape, bool)
    nodata[:, 150:160] = nodata[:12] = nodata[-12:] = nodata[:, :12] = nodata[:, -12:] = True
    data[nodata] = 0.0
    path = _variant(t, tmp_path / "gapped.fits", data=data)
    weight = np.full(data.shape, sky_rms if kind == "MAP_RMS" else 1.0)
    weight[nodata] = gap
    _weight(path, weight)
    r = detect_tile(path, tmp_path / "out", DetectConfig(engine="sextractor", weight_image=WEIGHTS, weight_type=kind,
                                                         back_size=64))
    rms = fits.getdata(r["rms"])
    assert np.isnan(rms[nodata]).all()
    assert np.nanmin(rms) > 0.5 * sky_rms and np.nanmax(rms) < 2.0 * sky_rms, (np.nanmin(rms), np.nanmax(rms))


def test_the_fits_inverse_variance_is_zero_where_the_rms_is_no_data():
    """No RuntimeWarning (divide by zero) for an RMS of 0, below 0, NaN or so small its float32 square is 0."""
    from astrotool_dre.fit_stage import inverse_variance

    rms = np.array([2.0, 0.0, -1.0, np.nan, np.inf, 1e-30], np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        w = inverse_variance(rms)
    assert w[0] == 0.25 and (w[1:5] == 0).all() and w[5] == pytest.approx(1e60, rel=1e-6)


def test_an_extension_with_inherit_takes_the_primary_headers_keywords(tile, tmp_path):
    """HST style: GAIN, EXPTIME, MAGZP, SATURATE in the primary header, the image (and WCS) in an extension
    with INHERIT = T; without INHERIT the primary's keywords are not the extension's."""
    from astrotool_dre.tiles import read_image, resolve_gain, resolve_zero_point

    d, t = tile
    with fits.open(t) as h:
        data, header = h[0].data, h[0].header.copy()
    primary = fits.Header({"GAIN": 3.0, "EXPTIME": 600.0, "MAGZP": 27.5, "SATURATE": 50000.0, "CRVAL1": 0.0})
    for k in ("GAIN", "EXPTIME", "MAGZP", "SATURATE"):
        header.remove(k, ignore_missing=True)
    for inherit in (True, False):
        header["INHERIT"] = inherit
        path = tmp_path / f"mef_{inherit}.fits"
        fits.HDUList([fits.PrimaryHDU(header=primary), fits.ImageHDU(data, header, name="SCI")]).writeto(path)
        _, merged, ext = read_image(path)
        assert ext == 1
        if not inherit:
            assert "GAIN" not in merged and "SATURATE" not in merged
            continue
        assert resolve_gain(merged, "cps", path) == 1800.0 and resolve_zero_point(merged, None) == 27.5
        assert merged["SATURATE"] == 50000.0 and merged["CRVAL1"] == header["CRVAL1"]   # the extension's own win
        r = detect_tile(path, tmp_path / "out", DetectConfig(engine="photutils"))   # GAIN found: no refusal
        assert r["n_sources"] > 3


@pytest.mark.parametrize("engine", ENGINES)
def test_a_star_clipped_at_saturate_is_flagged_saturated_by_both_engines(tile, tmp_path, engine):
    d, t = tile
    data = fits.getdata(t).astype(np.float32)
    level = 30000.0
    yy, xx = np.mgrid[:data.shape[0], :data.shape[1]]
    data += 2e6 * np.exp(-((xx - 200.0) ** 2 + (yy - 60.0) ** 2) / (2 * 1.3 ** 2)) / (2 * np.pi * 1.3 ** 2)
    data = np.minimum(data, level)
    assert (data == level).sum() > 4
    path = _variant(t, tmp_path / "sat.fits", data=data, SATURATE=level)
    cat = read_catalog(detect_tile(path, tmp_path / engine, DetectConfig(engine=engine))["cat"])
    near = np.hypot(np.asarray(cat["X_IMAGE"]) - 201.0, np.asarray(cat["Y_IMAGE"]) - 61.0).argmin()
    assert np.hypot(cat["X_IMAGE"][near] - 201.0, cat["Y_IMAGE"][near] - 61.0) < 2
    assert int(cat["FLAGS"][near]) & 4


def test_a_des_style_weight_file_gives_its_weight_image_not_sci(tmp_path):
    """SCI, MSK, WGT in one file given as a weight map: its WGT image (VARIANCE for MAP_VAR); a file with
    several images and none named for the map's type is refused, naming it."""
    from astrotool_dre.tiles import check_weight, read_weight

    sci = np.full((4, 6), 100.0, np.float32)
    wgt = np.ones((4, 6), np.float32)
    wgt[:, 0] = 0.0
    (tmp_path / "weights").mkdir()
    path = tmp_path / "weights/t_wht.fits"
    tile = tmp_path / "t.fits"
    fits.PrimaryHDU(sci).writeto(tile)
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(sci, name="SCI"), fits.ImageHDU(np.zeros((4, 6), np.int16),
                  name="MSK"), fits.ImageHDU(wgt, name="WGT")]).writeto(path)
    assert check_weight(tile, WEIGHTS.replace("{stem}", "t"), (4, 6), "MAP_WEIGHT") == path
    nodata = read_weight(path, "MAP_WEIGHT")[1]
    assert nodata[:, 0].all() and not nodata[:, 1:].any()
    with pytest.raises(InputError, match=r"t_wht\.fits: weight map \(MAP_RMS\) with 3 images \(HDU 1 SCI, HDU 2 "
                                         r"MSK, HDU 3 WGT\); none named RMS or ERR"):
        read_weight(path, "MAP_RMS")[1]
    with pytest.raises(InputError, match="weight map .*none named"):
        check_weight(tile, WEIGHTS.replace("{stem}", "t"), (4, 6), "MAP_VAR")


@pytest.mark.skipif(not HAVE_SEX, reason="source-extractor not installed")
def test_an_int16_tile_with_blank_and_a_weight_map_gives_no_astropy_warning(tile, tmp_path):
    """SExtractor copies the tile's BLANK into its float check images, which detect_tile opens again to set
    the pixels of no weight to NaN: no VerifyWarning."""
    d, t = tile
    data = np.round(fits.getdata(t)).astype(np.int16)
    blank = _variant(t, tmp_path / "blank16.fits", data=data, BLANK=-32768)
    weight = np.ones(data.shape)
    weight[:, 120:126] = 0.0
    _weight(blank, weight)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = detect_tile(blank, tmp_path / "out", DetectConfig(engine="sextractor", weight_image=WEIGHTS))
    assert [str(w.message) for w in caught
            if not issubclass(w.category, (DeprecationWarning, PendingDeprecationWarning))] == []
    assert "BLANK" not in fits.getheader(r["nb"]) and np.isnan(fits.getdata(r["nb"])[:, 120:126]).all()


def test_a_tile_of_the_same_name_from_another_folder_names_the_file_the_results_came_from(astro, tile, tmp_path):
    """bands/g/x.fits detected, then bands/r/x.fits.fz in the same workspace: refused, naming the g file and
    saying that another file of that name needs another workspace or a new name, not only --overwrite."""
    d, t = tile
    ws = tmp_path / "ws"
    (tmp_path / "g").mkdir()
    (tmp_path / "r").mkdir()
    g = _variant(t, tmp_path / "g/x.fits")
    data = fits.getdata(t) * 1.5
    r = tmp_path / "r/x.fits.fz"
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(data.astype(np.float32), fits.getheader(t))]).writeto(r)
    engine = ("--set", 'dre.detect.engine="photutils"')
    assert astro("-w", ws, *engine, "dre", "detect", g).returncode == 0
    out = astro("-w", ws, *engine, "dre", "detect", r)
    assert out.returncode == 2, out.stderr
    assert f"was made from {g}, not {r}: a different file of the same name needs another workspace" in out.stderr
    assert astro("-w", ws, *engine, "dre", "detect", g).returncode == 0   # the same file again: kept


def test_below_is_the_largest_float32_strictly_below_the_level():
    """Compared in float64 (NumPy 2 compared a float32 with a Python float in float32, and gave one step less
    for a level float32 cannot hold: 30000.1, 16777217)."""
    from astrotool_dre.detect_sextractor import _below

    for level, below in ((30000.0, np.nextafter(np.float32(30000.0), np.float32(0))),
                         (30000.1, np.float32(30000.1)), (1000.1, np.float32(1000.1)), (16777217.0, 16777216.0)):
        assert _below(level) == float(below), level
        assert _below(level) < level <= float(np.nextafter(np.float32(_below(level)), np.float32(np.inf)))


@pytest.mark.skipif(not HAVE_SEX, reason="source-extractor not installed")
def test_a_level_float32_cannot_hold_flags_alike_in_both_engines(tile, tmp_path):
    """A star clipped at SATURATE = 30000.1 (its float32 pixels 30000.0996, below the level): neither engine
    flags it saturated (SExtractor did, given a SATUR_LEVEL one float32 step too low)."""
    d, t = tile
    data = fits.getdata(t).astype(np.float32)
    yy, xx = np.mgrid[:data.shape[0], :data.shape[1]]
    data += 2e6 * np.exp(-((xx - 200.0) ** 2 + (yy - 60.0) ** 2) / (2 * 1.3 ** 2)) / (2 * np.pi * 1.3 ** 2)
    level = 30000.1
    data = np.minimum(data, np.float32(level))
    path = _variant(t, tmp_path / "sat.fits", data=data, SATURATE=level)
    flags = {}
    for engine in ("photutils", "sextractor"):
        cat = read_catalog(detect_tile(path, tmp_path / engine, DetectConfig(engine=engine))["cat"])
        near = np.hypot(np.asarray(cat["X_IMAGE"]) - 201.0, np.asarray(cat["Y_IMAGE"]) - 61.0).argmin()
        flags[engine] = int(cat["FLAGS"][near]) & 4
    assert flags == {"photutils": 0, "sextractor": 0}


def _weight_given(monkeypatch):
    """Spy on SExtractor's runs: the weight image each was given, ``(file, is a link, pixels)``."""
    import astrotool_dre.detect_sextractor as ds

    seen, run = [], ds._run

    def spy(args, cwd, timeout, what):
        if "-WEIGHT_IMAGE" in args:
            w = cwd / args[args.index("-WEIGHT_IMAGE") + 1]
            seen.append((w.name, w.is_symlink(), fits.getdata(w)))
        return run(args, cwd, timeout, what)

    monkeypatch.setattr(ds, "_run", spy)
    return seen


@pytest.mark.skipif(not HAVE_SEX, reason="source-extractor not installed")
def test_a_clean_weight_map_is_linked_and_one_of_tiny_weights_cleaned(tile, tmp_path, monkeypatch):
    """A weight map whose pixels of no data are at weight 0 already goes to SExtractor as a link (a float32
    copy of a 10k² map is 400 MB per job); one with a gap of weight 1e-12 as a copy with 0 there."""
    d, t = tile
    path = _variant(t, tmp_path / "w.fits")
    seen = _weight_given(monkeypatch)
    cfg = DetectConfig(engine="sextractor", weight_image=WEIGHTS, seeing_fwhm=3.0)
    for gap, linked in ((0.0, True), (1e-12, False)):
        weight = np.ones(fits.getdata(t).shape)
        weight[:, 150:160] = gap
        _weight(path, weight)
        seen.clear()
        detect_tile(path, tmp_path / f"out{gap}", cfg)
        [(name, link, given)] = seen
        assert link == linked and name == ("weight_in.fits" if linked else "weight.fits"), (gap, name, link)
        assert (given[:, 150:160] == 0).all() and (given[:, :150] == 1).all()


def test_a_des_style_tile_is_its_own_weight_file(astro, tile, tmp_path, monkeypatch):
    """SCI, MSK, WGT in the tile itself (or a link to it): weight_image = "{stem}.fits" reads its WGT image, and
    SExtractor gets that image alone; a tile of one image as its own weight map is still refused."""
    from astrotool_dre.tiles import check_own_weight, check_weight, read_weight

    d, t = tile
    with fits.open(t) as h:
        sci, header = h[0].data.astype(np.float32), h[0].header.copy()
    wgt = np.ones(sci.shape, np.float32)
    wgt[:, 150:160] = 0.0
    des = tmp_path / "des.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(sci, header, name="SCI"),
                  fits.ImageHDU(np.zeros(sci.shape, np.int16), name="MSK"),
                  fits.ImageHDU(wgt, name="WGT")]).writeto(des)
    (tmp_path / "link.fits").symlink_to(des)
    for path in (des, tmp_path / "link.fits"):
        assert check_weight(path, "{stem}.fits", sci.shape) == path
        assert read_weight(path, "MAP_WEIGHT")[1][:, 150:160].all()
    with pytest.raises(InputError, match=r"des\.fits: weight map \(MAP_RMS\) with 3 images .*none named RMS"):
        check_own_weight(des, "{stem}.fits", "MAP_RMS")
    with pytest.raises(InputError, match=r"its own weight map"):
        check_own_weight(_variant(t, tmp_path / "one.fits"), "{stem}.fits")
    if HAVE_SEX:
        seen = _weight_given(monkeypatch)
        r = detect_tile(des, tmp_path / "out", DetectConfig(engine="sextractor", weight_image="{stem}.fits",
                                                            seeing_fwhm=3.0))
        assert r["n_sources"] > 3 and np.isnan(fits.getdata(r["nb"])[:, 150:160]).all()
        [(name, link, given)] = seen
        assert not link and np.array_equal(given, wgt)
        ws = tmp_path / "ws"
        setting = ["--set", 'dre.detect.weight_image="{stem}.fits"', "--set", 'dre.detect.engine="sextractor"']
        out = astro("-w", ws, *setting, "dre", "detect", des)
        assert out.returncode == 0, out.stderr


def _detected_and_changed(astro, t, ws, *tiles):
    """Detect ``tiles`` (name: (folder, scale)) in ``ws`` with photutils, then write each again with
    ``1.1 x`` its pixels (the same file, changed); the files."""
    engine = ("--set", 'dre.detect.engine="photutils"')
    paths = []
    for folder, name in tiles:
        folder.mkdir(exist_ok=True)
        paths.append(folder / name)
        if not paths[-1].exists():
            _variant(t, paths[-1])
    assert astro("-w", ws, *engine, "dre", "detect", *paths).returncode == 0
    for p in paths:
        fits.writeto(p, fits.getdata(t) * 1.1, fits.getheader(t), overwrite=True)
    return engine, paths


def test_the_other_file_hint_goes_with_its_own_tile_only(astro, tile, tmp_path):
    """Tile a changed in place and b a different file of b's name, refused together: the other-file text
    follows b's refusal, and the message ends with the usual --overwrite, not with b's text."""
    d, t = tile
    ws = tmp_path / "ws"
    engine, (a, b) = _detected_and_changed(astro, t, ws, (tmp_path / "g", "a.fits"), (tmp_path / "g", "b.fits"))
    (tmp_path / "r").mkdir()
    other = _variant(t, tmp_path / "r/b.fits", data=fits.getdata(t) * 1.5)
    out = astro("-w", ws, *engine, "dre", "detect", a, other)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    hint = [i for i, line in enumerate(lines) if f"was made from {b}, not {other}" in line]
    assert len(hint) == 1 and "b_cat.fits: exists" in "".join(lines[hint[0] - 2:hint[0]]), out.stderr
    assert "a different file of the same name needs another workspace" in lines[hint[0]]
    assert lines[-1] == "use --overwrite to make them again with the new settings", out.stderr


def test_a_tile_changed_in_place_with_a_record_naming_no_file_leads_with_overwrite(astro, tile, tmp_path):
    """A detection record written before records named the tile: the refusal of a changed tile says
    --overwrite first, and the other-file possibility second."""
    from astrotool import made_with

    d, t = tile
    ws = tmp_path / "ws"
    cat = ws / "dre/sextracted/x/x_cat.fits"
    engine, [x] = _detected_and_changed(astro, t, ws, (tmp_path / "g", "x.fits"))
    rec = made_with.read(cat)
    del rec["tile"]
    made_with.write(cat, rec)
    out = astro("-w", ws, *engine, "dre", "detect", x)
    assert out.returncode == 2, out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("use --overwrite to make it again from this file; a different file"), out.stderr
    assert f"was made from {x} before it changed, or from another file of the same name" in out.stderr


def test_a_detection_of_an_older_detect_version_is_refused_naming_it(astro, tile, tmp_path):
    """detect 6 (no-data weights for SExtractor, saturation at the level, INHERIT): the same settings give
    other outputs, so a version-5 detection is refused as made by an older version; --overwrite remakes it."""
    from astrotool import made_with
    from astrotool_dre.pipeline import STAGE_VERSIONS

    assert STAGE_VERSIONS["detect"] >= 6
    d, t = tile
    ws = tmp_path / "ws"
    x = _variant(t, tmp_path / "x.fits")
    engine = ("--set", 'dre.detect.engine="photutils"')
    assert astro("-w", ws, *engine, "dre", "detect", x).returncode == 0
    cat = ws / "dre/sextracted/x/x_cat.fits"
    rec = made_with.read(cat)
    rec["settings"]["version"] = 5
    rec["hash"] = made_with.digest(rec["settings"])
    made_with.write(cat, rec)
    out = astro("-w", ws, *engine, "dre", "detect", x)
    assert out.returncode == 2, out.stderr
    assert (f"made by an older astrotool-dre detect stage (version 5; this one is {STAGE_VERSIONS['detect']})"
            in out.stderr and "use --overwrite" in out.stderr), out.stderr
    assert astro("-w", ws, *engine, "--overwrite", "dre", "detect", x).returncode == 0


@pytest.mark.parametrize("value", ["N/A", True])
def test_a_saturate_that_is_no_number_names_the_tile_and_keyword(tile, tmp_path, value):
    d, t = tile
    path = _variant(t, tmp_path / "sat.fits", SATURATE=value)
    with pytest.raises(InputError, match=rf"sat\.fits: header SATURATE {value!r} is not a number; set "
                                         r"dre\.detect\.satur_level"):
        detect_tile(path, tmp_path / "out", DetectConfig(engine="photutils"))
    assert detect_tile(path, tmp_path / "out", DetectConfig(engine="photutils", satur_level=5e4))["n_sources"] > 3
