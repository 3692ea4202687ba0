"""PSF from the stars of a simulated tile (PSFEx and photutils), and the PSF reader."""

import numpy as np
import pytest

fits = pytest.importorskip("astropy.io.fits")
pytest.importorskip("photutils")

from astrotool.errors import InputError  # noqa: E402
from astrotool_dre.config import DetectConfig, PsfConfig, SimulateConfig  # noqa: E402
from astrotool_dre.detect import detect_tile  # noqa: E402
from astrotool_dre.psf import (PsfModel, build_psf, group_by_psf, psf_fwhm, read_psf,  # noqa: E402
                               read_psf_model, write_psfex_format)
from astrotool_dre.simulate import draw_psf, psf_fwhm_at, simulate_tile  # noqa: E402

from tests.dre.conftest import HAVE_PSFEX, HAVE_SEX  # noqa: E402


@pytest.fixture(scope="module")
def tile(tmp_path_factory):
    d = tmp_path_factory.mktemp("psf")
    out = simulate_tile(d / "tile.fits", d / "truth.parquet", SimulateConfig(
        size=512, n_galaxies=6, n_stars=14, logr_range=(0.3, 1.0)), seed=21, path_psf=d / "true_psf.fits")
    det = {"photutils": detect_tile(out["tile"], d / "photutils", DetectConfig(engine="photutils"))}
    if HAVE_SEX:
        det["sextractor"] = detect_tile(out["tile"], d / "sextractor", DetectConfig(engine="sextractor"))
    return d, out, det


def _check(psf_path, true_path):
    p = read_psf(psf_path)
    assert p.shape == (25, 25)
    assert p.sum() == pytest.approx(1.0, abs=1e-9) and p.min() >= 0
    cy, cx = np.unravel_index(np.argmax(p), p.shape)
    assert abs(cy - 12) <= 1 and abs(cx - 12) <= 1
    f_true = psf_fwhm(read_psf(true_path))
    assert f_true == pytest.approx(3.0, rel=0.1)  # pixel-integrated Moffat, FWHM 3 px
    f = psf_fwhm(p)
    assert f == pytest.approx(f_true, rel=0.15)
    return f / f_true


@pytest.mark.skipif(not (HAVE_PSFEX and HAVE_SEX), reason="psfex or source-extractor not installed")
def test_psfex_from_sextractor_catalogue(tile):
    d, out, det = tile
    r = build_psf(det["sextractor"]["cat"], d / "sex.psf", PsfConfig(engine="psfex", var_degrees=0))
    assert r["engine"] == "psfex" and r["n_stars"] >= 8
    ratio = _check(r["psf"], out["psf"])
    assert ratio == pytest.approx(1.0, abs=0.05)
    with fits.open(r["psf"]) as h:
        assert h[1].header["PSF_SAMP"] == 1.0 and h[1].header["POLNAXIS"] == 0
    assert not list(d.glob(".*partial*")) and not list(d.glob(".psfex-*"))


@pytest.mark.skipif(not HAVE_PSFEX, reason="psfex not installed")
def test_psfex_reads_the_photutils_ldac(tile):
    d, out, det = tile
    r = build_psf(det["photutils"]["cat"], d / "phot_psfex.psf", PsfConfig(engine="psfex"))
    _check(r["psf"], out["psf"])


def test_photutils_epsf(tile):
    d, out, det = tile
    r = build_psf(det["photutils"]["cat"], d / "epsf.psf", PsfConfig(engine="photutils", var_degrees=0))
    assert r["engine"] == "photutils" and r["n_stars"] >= 8
    ratio = _check(r["psf"], out["psf"])
    assert ratio == pytest.approx(1.0, abs=0.05)
    with fits.open(r["psf"]) as h:
        assert h[1].data["PSF_MASK"].shape == (1, 1, 25, 25)
        assert h[1].header["ACCEPTED"] == r["n_stars"]


def test_photutils_epsf_too_few_stars(tile):
    d, _, det = tile
    out = d / "none.psf"
    with pytest.raises(InputError, match="usable PSF stars") as exc:
        build_psf(det["photutils"]["cat"], out, PsfConfig(engine="photutils", min_stars=500))
    assert det["photutils"]["cat"] in str(exc.value)
    assert not out.exists()


def test_read_psf_plain_image_clips_and_normalises(tmp_path):
    img = np.zeros((9, 9))
    img[4, 4], img[4, 5], img[0, 0] = 4.0, 2.0, -1.0
    path = tmp_path / "img_psf.fits"
    fits.PrimaryHDU(img).writeto(path)
    p = read_psf(path)
    assert p.sum() == pytest.approx(1.0) and p.min() == 0.0 and p[4, 4] == pytest.approx(4 / 6)


def test_psfex_format_roundtrip(tmp_path):
    y, x = np.mgrid[-7:8, -7:8]
    g = np.exp(-0.5 * (x**2 + y**2) / 1.3**2)
    g /= g.sum()
    path = tmp_path / "g.psf"
    write_psfex_format(path, g, n_loaded=3, n_accepted=3, fwhm=3.06)
    assert np.allclose(read_psf(path), g, atol=1e-7)
    assert psf_fwhm(g) == pytest.approx(2.3548 * 1.3, rel=0.03)


def test_bad_psf_files_raise_input_error_naming_the_file(tmp_path):
    missing = tmp_path / "missing.psf"
    junk = tmp_path / "junk.psf"
    junk.write_bytes(b"SIMPLE  = garbage" * 100)
    rejected = tmp_path / "rejected.psf"
    write_psfex_format(rejected, np.ones((5, 5)) / 25, n_loaded=4, n_accepted=0, fwhm=0.0)
    table = tmp_path / "table.fits"
    fits.BinTableHDU.from_columns([fits.Column(name="A", format="E", array=np.ones(3))]).writeto(table)
    for path, words in ((missing, "not found"), (junk, "not a readable"), (rejected, "accepted no star"),
                        (table, "not a PSF file")):
        with pytest.raises(InputError, match=words) as exc:
            read_psf(path)
        assert str(path) in str(exc.value)


@pytest.mark.parametrize("engine", ["photutils", "psfex"])
def test_catalogue_without_star_columns_is_named(tmp_path, engine):
    if engine == "psfex" and not HAVE_PSFEX:
        pytest.skip("psfex is not installed")
    cat = tmp_path / "bare_cat.fits"
    cols = [fits.Column(name=n, format="E", array=np.arange(3.0)) for n in ("X_IMAGE", "Y_IMAGE", "FLUX_AUTO")]
    table = fits.BinTableHDU.from_columns(cols)
    table.name = "LDAC_OBJECTS"
    fits.HDUList([fits.PrimaryHDU(), table]).writeto(cat)
    with pytest.raises(InputError, match="bare_cat.fits: column.*CLASS_STAR.* missing from the catalogue"):
        build_psf(cat, tmp_path / "out.psf", PsfConfig(engine=engine))
    assert not (tmp_path / "out.psf").exists()


# --------------------------------------------------------------------------- a PSF that varies
VARYING = (2.4, 3.6)  # true FWHM at pixel (1, 1) and at (1024, 1024)


@pytest.fixture(scope="module")
def varying_tile(tmp_path_factory):
    d = tmp_path_factory.mktemp("varying")
    out = simulate_tile(d / "tile.fits", d / "truth.parquet", SimulateConfig(
        size=1024, n_galaxies=4, n_stars=48, psf_fwhm=VARYING, star_snr=(150.0, 1000.0), edge=40.0), seed=23)
    engine = "sextractor" if HAVE_SEX and HAVE_PSFEX else "photutils"
    det = detect_tile(out["tile"], d / engine, DetectConfig(engine=engine))
    return d, det


@pytest.mark.parametrize("engine", ["photutils", "psfex"])
def test_varying_psf_is_recovered_at_two_positions(varying_tile, engine):
    if engine == "psfex" and not HAVE_PSFEX:
        pytest.skip("psfex is not installed")
    d, det = varying_tile
    r = build_psf(det["cat"], d / f"{engine}.psf", PsfConfig(engine=engine, var_degrees=1))
    model = read_psf_model(r["psf"])
    assert model.degree == 1 and model.varies and model.components.shape == (3, 25, 25)
    fwhm = {}
    for x, y in ((180.0, 180.0), (850.0, 850.0)):
        truth = psf_fwhm(draw_psf(3.5, psf_fwhm_at(VARYING, 1024, x, y), 25))
        fwhm[x] = psf_fwhm(model.at(x, y))
        assert fwhm[x] == pytest.approx(truth, abs=0.15), (engine, x)
    assert fwhm[850.0] - fwhm[180.0] > 0.6  # true difference 0.78 px
    assert read_psf(r["psf"]).shape == (25, 25)  # DRE's reader: the order-0 component


def _moffat_model(lo=2.5, hi=3.5):
    """A degree-1 model whose FWHM goes from ``lo`` at X = -1 to ``hi`` at X = +1 (zero 500, scale 500)."""
    a, b = draw_psf(3.5, lo, 25).astype(float), draw_psf(3.5, hi, 25).astype(float)
    comps = np.stack([0.5 * (a + b), 0.5 * (b - a), np.zeros_like(a)])
    return PsfModel(comps, 1, (500.0, 500.0), (500.0, 500.0))


def test_group_by_psf_keeps_alike_psfs_together():
    model = _moffat_model()
    x = np.linspace(0.0, 1000.0, 41)
    groups = group_by_psf(model, x, np.full_like(x, 500.0), tolerance=0.04)
    assert sorted(np.concatenate([m for m, _ in groups]).tolist()) == list(range(41))
    assert 2 <= len(groups) <= 8
    for members, psf in groups:
        assert psf.sum() == pytest.approx(1.0)
        own = model.images(x[members], np.full(len(members), 500.0))
        assert np.all(np.linalg.norm(own - psf, axis=(1, 2)) / np.linalg.norm(psf) <= 0.04)
    assert len(group_by_psf(model, x, np.full_like(x, 500.0), tolerance=0.04, max_groups=2)) <= 2
    const = PsfModel(model.components[:1])
    assert len(group_by_psf(const, x, x)) == 1


def test_varying_psfex_format_roundtrip_and_bad_polynomial(tmp_path):
    model = _moffat_model()
    path = tmp_path / "var.psf"
    write_psfex_format(path, model.at(500.0, 500.0), n_loaded=9, n_accepted=9, fwhm=3.0, model=model)
    back = read_psf_model(path)
    assert (back.degree, back.zero, back.scale) == (1, (500.0, 500.0), (500.0, 500.0))
    assert np.allclose(back.at(120.0, 880.0), model.at(120.0, 880.0), atol=1e-7)
    with fits.open(path, mode="update") as h:
        h[1].header["POLDEG1"] = 2
    with pytest.raises(InputError, match="degree 2 does not match its 3 components"):
        read_psf_model(path)


@pytest.mark.parametrize("engine", ["psfex", "photutils"])
def test_stage_fwhm_is_the_summarys_measure_and_a_lowered_degree_is_logged(tile, engine, caplog):
    """The FWHM build_psf reports is the fit's PSF_FWHM measure (a Moffat fit of the PSF the fit uses), not
    PSFEx's header value; too few stars for ``var_degrees`` = 2 lowers the degree, said once."""
    if engine == "psfex" and not HAVE_PSFEX:
        pytest.skip("psfex not installed")
    d, out, det = tile
    with caplog.at_level("WARNING", logger="astro.dre"):
        r = build_psf(det["photutils"]["cat"], d / f"deg_{engine}.psf", PsfConfig(engine=engine, var_degrees=2))
    assert r["engine"] == engine and r["degree"] < 2
    model = read_psf_model(r["psf"])
    assert model.degree == r["degree"]
    (members, image), = group_by_psf(model, [256.0], [256.0])   # what the fit's PSF_FWHM is measured on
    assert r["fwhm"] == pytest.approx(psf_fwhm(image), rel=1e-6)
    lowered = [m for m in caplog.messages if "variation degree was lowered" in m]
    assert len(lowered) == 1 and f"var_degrees = 2 to {r['degree']}" in lowered[0] and engine in lowered[0]


def test_photutils_degree_lowered_by_its_zones_says_so_and_names_the_tile(tmp_path, caplog):
    """Enough stars for 5 per polynomial term, too few in a zone: the warning gives that cause (it gave
    the term count, which was met) and names the tile, not its catalogue."""
    out = simulate_tile(tmp_path / "tile.fits", tmp_path / "truth.parquet", SimulateConfig(
        size=400, n_galaxies=2, n_stars=50, logr_range=(0.3, 0.8)), seed=3)
    det = detect_tile(out["tile"], tmp_path / "det", DetectConfig(engine="photutils"))
    with caplog.at_level("WARNING", logger="astro.dre"):
        r = build_psf(det["cat"], tmp_path / "zones.psf", PsfConfig(engine="photutils", var_degrees=2, min_stars=12),
                      tile=out["tile"])
    assert r["n_stars"] >= 30 and r["degree"] == 0   # 30 stars: 5 per term of degree 2
    lowered = [m for m in caplog.messages if "variation degree was lowered" in m]
    assert len(lowered) == 1, caplog.messages
    msg = lowered[0]
    assert msg.startswith(f"{out['tile']}: photutils:") and "_cat.fits" not in msg, msg
    assert "term" not in msg and "zones holds" in msg and "dre.psf.min_stars = 12" in msg, msg
