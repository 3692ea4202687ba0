"""DRE outputs a scientist opens directly: the summary in astropy/TOPCAT, the mosaics by eye."""

from __future__ import annotations


import numpy as np
import pytest
from astropy import units as u
from astropy.io import fits
from astropy.table import Table

from astrotool import __version__

from tests.conftest import run_astro_here

SMALL = ["--set", "dre.simulate.size=400", "--set", "dre.simulate.n_galaxies=4", "--set", "dre.simulate.n_stars=12",
         "--set", "dre.simulate.min_separation=20"]
FAST = ["--set", 'dre.detect.engine="photutils"', "--set", 'dre.psf.engine="photutils"',
        "--set", "dre.mosaics.max_objects=2", "--set", "dre.models.naxrat=3", "--set", "dre.models.axrat0=0.4",
        "--set", "dre.models.daxrat=0.3", "--set", "dre.models.nposang=4", "--set", "dre.models.dposang=45.0",
        "--set", "dre.models.nlogh=6", "--set", "dre.models.dlogh=0.3"]


def astro(*args):
    r = run_astro_here(*args)
    assert r.returncode == 0, r.stderr
    return r


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    """A workspace after ``dre simulate`` and ``dre run`` of one small tile (photutils, coarse grid)."""
    ws = tmp_path_factory.mktemp("dre_outputs")
    astro("-w", ws, *SMALL, "dre", "simulate", "-n", 1)
    astro("-w", ws, *FAST, "dre", "run")
    return ws


def test_fits_summary_reads_back_in_astropy_with_units_descriptions_and_keywords(ws):
    path = ws / "dre/summary/sim_000_dre.fits"
    t = Table.read(path, hdu="DRE_SUMMARY")
    assert len(t) >= 2
    assert t["ANGLE"].unit == u.deg and t["MAG"].unit == u.mag and t["X_IMAGE"].unit == u.pix
    assert t["FLUX"].unit == u.adu and t["FLUX_AUTO"].unit == u.adu       # the simulated tile's BUNIT
    header = fits.getheader(path, "DRE_SUMMARY")
    col = {header[f"TTYPE{i}"]: i for i in range(1, header["TFIELDS"] + 1)}
    assert "counter-clockwise from image +x" in header[f"TCOMM{col['ANGLE']}"]
    assert "MAGZP" in header[f"TCOMM{col['MAG']}"]
    assert not [c for c, i in col.items() if f"TCOMM{i}" not in header]  # every column says what it is
    for i in col.values():
        if f"TUNIT{i}" in header:
            u.Unit(header[f"TUNIT{i}"], format="fits", parse_strict="raise")
    tile = fits.getheader(ws / "dre/tiles/sim_000.fits")
    assert header["MAGZP"] == pytest.approx(tile["MAGZP"]) and header["GAIN"] == pytest.approx(tile["GAIN"])
    assert header["ASTROVER"] == __version__ and header["CREATOR"].endswith("dre fit")
    assert header["DATE"].startswith("20") and header["FITSTAT"] == "chi2"
    assert not [k for k in header if len(k) > 8]                        # no HIERARCH cards
    np.testing.assert_allclose(t["MAG"], header["MAGZP"] - 2.5 * np.log10(t["FLUX"]), rtol=1e-6)


def test_every_fits_file_says_what_wrote_it_and_when(ws):
    """Only the summary and the mosaics had DATE, CREATOR and ASTROVER; tiles, PSFs, detection products and
    the model cube had HISTORY cards alone, though docs/workspace.md promised the keywords of every FITS file."""
    files = sorted(p for p in (ws / "dre").rglob("*") if p.suffix in (".fits", ".psf"))
    want = {"tiles": "dre simulate", "sextracted": "dre detect", "psf": "dre psf", "models": "dre models",
            "summary": "dre fit", "mosaics": "dre mosaics"}
    assert {p.relative_to(ws / "dre").parts[0] for p in files} == set(want), files
    for path in files:
        header = fits.getheader(path, 1 if path.parent.name == "summary" else 0)
        assert header["ASTROVER"] == __version__ and header["DATE"].startswith("20"), path
        assert header["CREATOR"].endswith(want[path.relative_to(ws / "dre").parts[0]]), (path, header["CREATOR"])
        assert str(header["HISTORY"]).startswith(f"astrotool {__version__} dre "), path


def test_detection_catalogue_carries_units(ws):
    cat = Table.read(ws / "dre/sextracted/sim_000/sim_000_cat.fits", hdu="LDAC_OBJECTS")
    assert cat["X_IMAGE"].unit == u.pix and cat["ALPHA_J2000"].unit == u.deg and cat["FLUX_AUTO"].unit == u.adu


def test_parquet_summary_reads_back_in_astropy_with_units(ws):
    t = Table.read(ws / "dre/summary/sim_000_dre.parquet", format="parquet")
    assert t["ANGLE"].unit == u.deg and t["MAG"].unit == u.mag and t["FLUX"].unit == u.adu
    assert t["LOGR"].unit is None and "log10" in t["LOGR"].description
    assert t.meta["provenance"]["command"] == "dre fit"


def test_mosaic_header_says_angle_with_its_convention(ws):
    files = sorted((ws / "dre/mosaics/sim_000").glob("*_mosaic.fits"))
    assert len(files) == 2 and all(f.with_suffix(".png").is_file() for f in files)
    header = fits.getheader(files[0])
    assert "PA" not in header and "CCW from image +x" in header.comments["ANGLE"]
    assert header["BUNIT"] == fits.getval(ws / "dre/tiles/sim_000.fits", "BUNIT")  # as the tile writes it
    assert header["ASTROVER"] == __version__ and "DATE" in header


def galaxy_panels(peak: float, b: int = 64, scale: float = 4.0, seed: int = 1):
    """data | mask | model | residual of an exponential galaxy in unit-sigma noise; its core and the sky."""
    from astrotool_dre.mosaics import object_panels

    y, x = np.mgrid[:b, :b] - (b - 1) / 2
    r = np.hypot(x, y)
    model = peak * np.exp(-r / scale)
    noise = np.random.default_rng(seed).normal(0, 1, (b, b))
    return object_panels(model + noise, r < 24, model), r < 4, r > 28


@pytest.mark.parametrize("peak, min_contrast, star", [(30.0, 5.0, 0.0), (300.0, 15.0, 0.0), (30.0, 5.0, 3000.0)])
def test_mosaic_png_stretch_shows_faint_galaxies_with_a_colour_bar(tmp_path, monkeypatch, peak, min_contrast, star):
    """A star in the stamp (``star``: its peak, outside the fit mask) set the scale's top: a 30-sigma galaxy
    beside a 3000-sigma star took 0.23 of the grey range above the sky (0.59 now, as without the star)."""
    import astrotool.io.figures as figures
    from astrotool_dre.mosaics import save_png

    drawn = []
    save = figures.save_figure
    monkeypatch.setattr(figures, "save_figure", lambda fig, path, **kw: (drawn.append(fig), save(fig, path, **kw)))
    panels, core, sky = galaxy_panels(peak)
    y, x = np.mgrid[:64, :64]
    neighbour = star * np.exp(-((x - 56) ** 2 + (y - 56) ** 2) / 8.0)   # in the corner, outside r < 24
    panels[:, :64] += neighbour
    sky &= neighbour < 1.0
    save_png(panels, tmp_path / "m.png", "sim_000 00_0001: q=0.50  ANGLE=30° (CCW from +x)", unit="adu")
    assert (tmp_path / "m.png").stat().st_size > 0
    (fig,) = drawn
    image = fig.axes[0].images[0]
    shown = np.clip(np.ma.getdata(image.norm(image.get_array())), 0, 1)[:, :64]   # data panel as displayed
    noise = shown[sky].std()
    # a 30-sigma galaxy stood 3.3 display-noise units above the sky: the model-peak scale stretched
    # the sky noise over a third of the grey range (0.18); now it stands 7 above, with noise 0.09
    assert (shown[core].mean() - shown[sky].mean()) / noise > min_contrast
    assert shown[core].mean() - shown[sky].mean() > 0.5   # of the grey range: 0.23 when the star set the top
    assert noise < 0.12 and 0.1 < shown[sky].mean() < 0.6
    assert len(fig.axes) == 2 and fig.axes[1].get_ylabel() == "adu"   # the colour bar, in data units


def test_summary_has_the_tile_and_true_column_descriptions(ws):
    """TILE lets summaries of several tiles be stacked (NAME repeats across tiles); the grid parameters say
    how the fit found them for the settings used; NPIX is an area."""
    t = Table.read(ws / "dre/summary/sim_000_dre.parquet", format="parquet")
    assert list(t.colnames[:2]) == ["TILE", "NAME"] and set(t["TILE"]) == {"sim_000"}
    assert "mosaics <TILE>_<NAME>" in t["TILE"].description
    assert t["INDEX"].description == "Sersic index (a grid value: not in dre.fit.subgrid_axes)"
    assert t["LOGR"].description.endswith("(between grid values)")
    assert t["NPIX"].unit == u.pix ** 2 and "area" in t["NPIX"].description
    assert t.meta["astrotool"]["tile"] == "sim_000"


def test_a_single_valued_grid_axis_is_described_as_fixed():
    from astrotool_dre.config import FitConfig, ModelsConfig
    from astrotool_dre.fit_stage import summary_columns
    from astrotool_dre.models import grid_from_config

    grid = grid_from_config(ModelsConfig(index0=4.0, dindex=0.0, nindex=1))
    _, d = summary_columns(["INDEX", "INDEX_ERR", "AX_RATIO", "AX_RATIO_ERR", "NPIX"], "", FitConfig(), grid)
    assert d["INDEX"] == "Sersic index, fixed: the grid's only value (4)"
    assert d["INDEX_ERR"].startswith("1-sigma error of INDEX: NaN, as the grid has one INDEX value (4)")
    assert d["AX_RATIO"] == "axis ratio b/a (between grid values)" and d["AX_RATIO_ERR"] == "1-sigma error of AX_RATIO"
    _, d = summary_columns(["AX_RATIO"], "", FitConfig(subgrid=False), grid)
    assert d["AX_RATIO"] == "axis ratio b/a (a grid value: dre.fit.subgrid = false)"
    two = grid_from_config(ModelsConfig(index0=1.0, dindex=3.0, nindex=2))   # INDEX asked for, but 2 values
    _, d = summary_columns(["INDEX", "LOGR"], "", FitConfig(subgrid_axes=["INDEX", "LOGR"]), two)
    assert d["INDEX"] == "Sersic index (a grid value: the grid has 2 INDEX values, too few to refine)", d
    assert d["LOGR"].endswith("(between grid values)")


def test_the_engines_that_ran_are_recorded(ws):
    """Provenance names the engines that ran, not the setting ("auto")."""
    import json

    t = Table.read(ws / "dre/summary/sim_000_dre.parquet", format="parquet")
    assert t.meta["astrotool"]["detect_engine"] == "photutils" and t.meta["astrotool"]["psf_engine"] == "photutils"
    header = fits.getheader(ws / "dre/summary/sim_000_dre.fits", "DRE_SUMMARY")
    assert header["DETENG"] == "photutils" and header["PSFENG"] == "photutils"
    (run,) = [p for p in (ws / "runs").glob("*-dre-run/run.json")]
    (tile,) = json.loads(run.read_text())["tiles"]
    assert tile["tile"] == "sim_000" and tile["detect_engine"] == "photutils" and tile["psf_engine"] == "photutils"
    assert "Moffat" in tile["psf"]
