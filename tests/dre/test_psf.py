"""PSF from the stars of a simulated tile (PSFEx and photutils), and the PSF reader."""

import numpy as np
import pytest

fits = pytest.importorskip("astropy.io.fits")
pytest.importorskip("photutils")

from astrotool.errors import InputError  # noqa: E402
from astrotool_dre.config import DetectConfig, PsfConfig, SimulateConfig  # noqa: E402
from astrotool_dre.detect import detect_tile  # noqa: E402
from astrotool_dre.detect_sextractor import find_sextractor  # noqa: E402
from astrotool_dre.psf import build_psf, find_psfex, psf_fwhm, read_psf, write_psfex_format  # noqa: E402
from astrotool_dre.simulate import simulate_tile  # noqa: E402

HAVE_PSFEX = find_psfex() is not None
HAVE_SEX = find_sextractor() is not None


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
    r = build_psf(det["sextractor"]["cat"], d / "sex.psf", PsfConfig(engine="psfex"))
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
    r = build_psf(det["photutils"]["cat"], d / "epsf.psf", PsfConfig(engine="photutils"))
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
    if engine == "psfex" and find_psfex() is None:
        pytest.skip("psfex is not installed")
    cat = tmp_path / "bare_cat.fits"
    cols = [fits.Column(name=n, format="E", array=np.arange(3.0)) for n in ("X_IMAGE", "Y_IMAGE", "FLUX_AUTO")]
    table = fits.BinTableHDU.from_columns(cols)
    table.name = "LDAC_OBJECTS"
    fits.HDUList([fits.PrimaryHDU(), table]).writeto(cat)
    with pytest.raises(InputError, match="bare_cat.fits: column.*CLASS_STAR.* missing from the catalogue"):
        build_psf(cat, tmp_path / "out.psf", PsfConfig(engine=engine))
    assert not (tmp_path / "out.psf").exists()
