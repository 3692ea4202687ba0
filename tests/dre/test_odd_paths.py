"""Paths with a space, a comma or non-ASCII characters reach SExtractor and PSFEx intact; tile names
that are not UTF-8 are processed and shown printably."""

import json
import os
import shutil

import pytest

fits = pytest.importorskip("astropy.io.fits")
pytest.importorskip("photutils")
h5py = pytest.importorskip("h5py")

from astrotool_dre.config import DetectConfig, PsfConfig, SimulateConfig  # noqa: E402
from astrotool_dre.detect import detect_tile  # noqa: E402
from astrotool_dre.psf import build_psf  # noqa: E402
from astrotool_dre.simulate import simulate_tile  # noqa: E402

from tests.dre.conftest import HAVE_PSFEX, HAVE_SEX  # noqa: E402

ODD = "my data, é"  # a space, a comma and a non-ASCII character


@pytest.fixture(scope="module")
def tile(tmp_path_factory):
    d = tmp_path_factory.mktemp("odd") / ODD
    d.mkdir()
    out = simulate_tile(d / "tile 1,é.fits", d / "truth.parquet", SimulateConfig(
        size=512, n_galaxies=6, n_stars=14, logr_range=(0.3, 1.0)), seed=21)
    return d, out


def _no_leftovers(folder):
    assert not [p.name for p in folder.rglob(".*")], "temporary files left behind"


@pytest.mark.skipif(not HAVE_SEX, reason="source-extractor/sex not installed")
def test_sextractor_then_psfex_in_a_folder_with_space_comma_and_accent(tile):
    d, out = tile
    outdir = d / "sextracted, é 2"
    det = detect_tile(out["tile"], outdir, DetectConfig(engine="sextractor"), stem="tile 1,é")
    assert det["engine"] == "sextractor" and det["n_sources"] >= 15
    with fits.open(det["cat"]) as h:
        history = str(h[0].header["HISTORY"])
        assert len(h["LDAC_OBJECTS"].data) == det["n_sources"]
    assert "tile 1,\\xe9.fits" in history  # the tile named in the (ASCII) header
    for k in ("nb", "rms", "seg"):
        assert fits.getdata(det[k]).shape == (512, 512)
    if HAVE_PSFEX:
        r = build_psf(det["cat"], outdir / "tile 1,é_psf.fits", PsfConfig(engine="psfex"))
        assert r["engine"] == "psfex" and r["n_stars"] >= 8
    _no_leftovers(d)


@pytest.mark.skipif(not HAVE_PSFEX, reason="psfex not installed")
def test_psfex_reads_a_catalogue_in_a_folder_with_space_comma_and_accent(tile):
    d, out = tile
    outdir = d / "photutils, é"
    det = detect_tile(out["tile"], outdir, DetectConfig(engine="photutils"))
    r = build_psf(det["cat"], outdir / "psf é,1.fits", PsfConfig(engine="psfex"))
    assert r["engine"] == "psfex" and r["n_stars"] >= 8
    _no_leftovers(d)


def test_a_tile_name_that_is_not_utf8_is_processed_and_named_printably(tile, tmp_path, astro_subprocess):
    """It stopped the stage with a bare UnicodeEncodeError from the seed derivation, naming no file."""
    ws = tmp_path / "ws"
    tiles = ws / "dre" / "tiles"
    tiles.mkdir(parents=True)
    shutil.copy(tile[1]["tile"], tiles / "good.fits")
    shutil.copy(tile[1]["tile"], os.fsdecode(bytes(tiles) + b"/bad_\xff.fits"))
    with open(bytes(tiles) + b"/broken_\xfe.fits", "wb") as f:
        f.write(b"not a FITS file")
    strict = {"PYTHONIOENCODING": "utf-8:strict"}  # as on a terminal of a UTF-8 locale
    r = astro_subprocess("-w", ws, "dre", "detect", "--engine", "photutils", env=strict)
    assert r.returncode == 2, r.stderr  # the broken tile failed on bad input, the others were detected
    assert "bad_\\xff\t" in r.stdout and "good\t" in r.stdout and "Traceback" not in r.stderr
    assert "broken_\\xfe\t" in r.stderr and "broken_\\xfe.fits" in r.stderr  # the failure table names it
    record = json.loads(next((ws / "runs").glob("*/run.json")).read_text())
    assert [f["item"] for f in record["failures"]] == ["broken_\\xfe"]
    # the outputs are named in UTF-8, \xNN for the byte that is not: every later stage can name them
    cat = ws / "dre" / "sextracted" / "bad_\\xff" / "bad_\\xff_cat.fits"
    assert len(fits.getdata(cat, "LDAC_OBJECTS")) == len(fits.getdata(ws / "dre/sextracted/good/good_cat.fits",
                                                                       "LDAC_OBJECTS"))
    r = astro_subprocess("-w", ws, "dre", "cuts", "good", os.fsdecode(bytes(tiles) + b"/bad_\xff.fits"), env=strict)
    assert r.returncode == 0, r.stderr
    with h5py.File(ws / "dre" / "cuts" / "bad_\\xff_cuts.h5", "r") as f:
        assert f.attrs["tile"] == "bad_\\xff.fits"
