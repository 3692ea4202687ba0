"""Simulated tiles: conventions, truth, header, determinism."""

import math

import numpy as np
import pytest

galsim = pytest.importorskip("galsim")
fits = pytest.importorskip("astropy.io.fits")
pq = pytest.importorskip("pyarrow.parquet")

from astrotool_dre.config import SimulateConfig  # noqa: E402
from astrotool_dre.simulate import draw_psf, galaxy_profile, simulate_tile  # noqa: E402


def _moments(img, xc, yc, radius):
    ny, nx = img.shape
    y, x = np.mgrid[0:ny, 0:nx]
    dx, dy = x - xc, y - yc
    w = img * (np.hypot(dx, dy) < radius)
    mxx, myy, mxy = (w * dx * dx).sum(), (w * dy * dy).sum(), (w * dx * dy).sum()
    return math.degrees(0.5 * math.atan2(2 * mxy, mxx - myy)) % 180.0


def test_galsim_angle_is_ccw_from_x_and_logr_is_major_axis():
    # no PSF, big stamp: the profile itself follows the documented conventions
    q, angle, logr = 0.45, 32.0, math.log10(8.0)
    # pixel-integrated by 4x4 sub-sampling (an FFT of the bare de Vaucouleurs cusp is huge)
    fine = galaxy_profile(4.0, logr, q, angle, flux=1.0).drawImage(nx=804, ny=804, scale=0.25,
                                                                   method="no_pixel").array
    img = fine.reshape(201, 4, 201, 4).sum(axis=(1, 3))  # centre at pixel (100, 100)
    assert _moments(img, 100, 100, 60) == pytest.approx(angle, abs=0.5)
    # half of the (unit) total flux inside the ellipse of semi-major axis 10**LOGR
    y, x = np.mgrid[0:201, 0:201]
    t = math.radians(angle)
    u = (x - 100) * math.cos(t) + (y - 100) * math.sin(t)
    v = -(x - 100) * math.sin(t) + (y - 100) * math.cos(t)
    inside = (u / 10**logr) ** 2 + (v / (q * 10**logr)) ** 2 <= 1
    assert img[inside].sum() == pytest.approx(0.5, abs=0.015)
    # were LOGR the circularised radius, 0.5 would fall inside an ellipse sqrt(q) times smaller
    inside_c = (u / (10**logr * math.sqrt(q))) ** 2 + (v / (q * 10**logr * math.sqrt(q))) ** 2 <= 1
    assert img[inside_c].sum() < 0.42


def test_isolated_galaxy_flux_and_angle_match_truth(tmp_path):
    out = simulate_tile(tmp_path / "g.fits", tmp_path / "g.parquet", SimulateConfig(
        size=256, n_galaxies=1, n_stars=0, logr_range=(0.9, 0.9), q_range=(0.4, 0.4), galaxy_snr=(3000, 3000)),
        seed=3)
    img = fits.getdata(out["tile"]).astype(float)
    hdr = fits.getheader(out["tile"])
    t = pq.read_table(out["truth"]).to_pylist()[0]
    sub = img - hdr["SKYLEVEL"]
    x0, y0 = t["X"] - 1, t["Y"] - 1  # FITS 1-based -> array
    assert _moments(sub, x0, y0, 25) == pytest.approx(t["ANGLE"], abs=2.0)
    measured = sub.sum()  # whole tile: the stamp is inside it
    assert measured == pytest.approx(t["FLUX_DRAWN"], rel=0.01)
    assert t["FLUX_DRAWN"] / t["FLUX"] > 0.97
    assert t["MAG"] == pytest.approx(hdr["MAGZP"] - 2.5 * math.log10(t["FLUX"]))
    # the centroid is where the truth says (1-based convention)
    yy, xx = np.mgrid[0:256, 0:256]
    w = sub * (np.hypot(xx - x0, yy - y0) < 15)
    assert (w * xx).sum() / w.sum() == pytest.approx(x0, abs=0.15)
    assert (w * yy).sum() / w.sum() == pytest.approx(y0, abs=0.15)


def test_header_truth_and_layout(tmp_path):
    from astropy.wcs import WCS

    out = simulate_tile(tmp_path / "t.fits", tmp_path / "t.parquet", SimulateConfig(size=384, n_galaxies=6, n_stars=6),
                        seed=11, path_psf=tmp_path / "psf.fits")
    hdr = fits.getheader(out["tile"])
    for key in ("GAIN", "EXPTIME", "MAGZP", "BUNIT", "SATURATE"):
        assert key in hdr
    assert hdr["BUNIT"] == "ADU"
    w = WCS(hdr)
    assert w.has_celestial and w.wcs.ctype[0] == "RA---TAN"
    assert any("seed 11" in str(h) for h in hdr["HISTORY"])
    t = pq.read_table(out["truth"]).to_pydict()
    assert {"ID", "KIND", "X", "Y", "INDEX", "LOGR", "AX_RATIO", "ANGLE", "FLUX", "MAG"} <= set(t)
    kinds = np.array(t["KIND"])
    assert (kinds == "galaxy").sum() == 6 and (kinds == "star").sum() == 6
    X, Y = np.array(t["X"]), np.array(t["Y"])
    assert X.min() >= 81 and X.max() <= 384 - 80 and Y.min() >= 81 and Y.max() <= 384 - 80
    gal = kinds == "galaxy"
    assert np.all(np.array(t["SNR"])[gal] >= 30)
    assert np.all(np.array(t["INDEX"])[gal] == 4.0)
    ang = np.array(t["ANGLE"])[gal]
    assert np.all((ang >= 0) & (ang < 180))
    d = np.hypot(X[:, None] - X[None], Y[:, None] - Y[None]) + np.eye(len(X)) * 1e9
    assert d.min() >= 24
    # stars stay unsaturated
    img = fits.getdata(out["tile"])
    assert img.max() < hdr["SATURATE"]
    psf = fits.getdata(out["psf"])
    assert psf.sum() == pytest.approx(1.0, abs=1e-5) and psf.shape == (41, 41)
    assert np.unravel_index(psf.argmax(), psf.shape) == (20, 20)


def test_deterministic_from_seed(tmp_path):
    cfg = SimulateConfig(size=320, n_galaxies=2, n_stars=2, logr_range=(0.3, 0.8))
    a = simulate_tile(tmp_path / "a.fits", tmp_path / "a.parquet", cfg, seed=5)
    b = simulate_tile(tmp_path / "b.fits", tmp_path / "b.parquet", cfg, seed=5)
    c = simulate_tile(tmp_path / "c.fits", tmp_path / "c.parquet", cfg, seed=6)
    assert np.array_equal(fits.getdata(a["tile"]), fits.getdata(b["tile"]))
    ta, tb = pq.read_table(a["truth"]).to_pydict(), pq.read_table(b["truth"]).to_pydict()
    assert ta.keys() == tb.keys()
    for k in ta:
        np.testing.assert_array_equal(np.asarray(ta[k]), np.asarray(tb[k]))
    assert not np.array_equal(fits.getdata(a["tile"]), fits.getdata(c["tile"]))


def test_counts_per_second_units(tmp_path):
    out = simulate_tile(tmp_path / "c.fits", tmp_path / "c.parquet", SimulateConfig(
        size=256, n_galaxies=1, n_stars=1, units="cps", exptime=100.0, sky_level=400.0), seed=2)
    hdr = fits.getheader(out["tile"])
    assert hdr["BUNIT"] == "ADU/s"
    assert np.median(fits.getdata(out["tile"])) == pytest.approx(4.0, rel=0.02)
    assert hdr["MAGZP"] == pytest.approx(30.0 - 5.0)


def test_true_psf_is_unit_sum_moffat():
    p = draw_psf(3.5, 3.0, 25)
    assert p.sum() == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError):
        draw_psf(3.5, 3.0, 24)


def test_impossible_packing_is_a_clear_error(tmp_path, astro):
    from astrotool.errors import AstroError

    with pytest.raises(AstroError, match="could not place"):
        simulate_tile(tmp_path / "x.fits", tmp_path / "x.parquet", SimulateConfig(size=256, n_galaxies=30, n_stars=0),
                      seed=1)
    assert not (tmp_path / "x.fits").exists()
    # settings that cannot be met are the user's to change: exit 2 (a failed item was exit 1), naming them
    r = astro("-w", tmp_path / "ws", "dre", "simulate", "-n", 1, "--size", 256, "--n-galaxies", 30, "--n-stars", 0)
    assert r.returncode == 2 and "--n-galaxies" in r.stderr and "Traceback" not in r.stderr


def test_simulate_on_a_full_disk_names_the_tile(small_disk, astro):
    """astropy reports a full disk as 'Not enough space on disk: …' with no errno: it came out raw, three times."""
    ws = small_disk / "ws"
    r = astro("-w", ws, "dre", "simulate", "--n-tiles", 3)
    assert r.returncode == 1, r.stderr[-2000:]
    assert f"no space left on device writing {ws / 'dre/tiles/sim_000.fits'}" in r.stderr, r.stderr[-2000:]
    assert "cancelled: the disk is full (see sim_000)" in r.stderr and "Not enough space" not in r.stderr
    assert not list((ws / "dre/tiles").rglob("*.fits")) and not [p for p in ws.rglob("*") if ".partial" in p.name]


def test_varying_psf_and_sky_gradient_are_drawn_where_stated(tmp_path):
    from astrotool_dre.psf import psf_fwhm
    from astrotool_dre.simulate import psf_fwhm_at, sky_level_at

    cfg = SimulateConfig(size=512, n_galaxies=0, n_stars=12, psf_fwhm=(2.0, 4.0), sky_gradient=0.5,
                         star_snr=(2000.0, 3000.0), edge=30.0, min_separation=40.0)
    out = simulate_tile(tmp_path / "v.fits", tmp_path / "v.parquet", cfg, seed=3)
    img = fits.getdata(out["tile"]).astype(float)
    truth = pq.read_table(out["truth"]).to_pandas()
    np.testing.assert_allclose(truth["PSF_FWHM"], psf_fwhm_at((2.0, 4.0), 512, truth["X"], truth["Y"]))
    assert truth["PSF_FWHM"].max() - truth["PSF_FWHM"].min() > 0.8  # the stars span the field
    # the sky: 0.75 x 300 at the left edge, 1.25 x 300 at the right (medians of star-free columns)
    assert np.median(img[:, :8]) == pytest.approx(225.0, rel=0.02)
    assert np.median(img[:, -8:]) == pytest.approx(375.0, rel=0.02)
    # the header's SKYLEVEL and SKYGRAD give the sky that was drawn, column by column
    hdr = fits.getheader(out["tile"])
    residual = img - sky_level_at(np.arange(1.0, 513.0), 512, hdr["SKYLEVEL"], hdr["SKYGRAD"])[None, :]
    assert abs(np.median(residual[:, :64])) < 0.5 and abs(np.median(residual[:, -64:])) < 0.5
    for _, s in truth.iterrows():  # each star's measured FWHM is that of the (pixelated) PSF at its position
        x, y = int(round(s["X"])) - 1, int(round(s["Y"])) - 1
        stamp = img[y - 12:y + 13, x - 12:x + 13]
        stamp = stamp - np.median(np.r_[stamp[0], stamp[-1], stamp[:, 0], stamp[:, -1]])
        assert psf_fwhm(stamp) == pytest.approx(psf_fwhm(draw_psf(3.5, s["PSF_FWHM"], 25)), abs=0.06)


def test_crowded_preset_and_index_choice():
    c = SimulateConfig(preset="crowded")
    assert (c.size, c.n_galaxies, c.psf_fwhm, c.sersic_dist) == (2048, 220, (2.6, 3.6), "choice")
    assert SimulateConfig(preset="crowded", size=1024, isolation=2.0).size == 1024  # given keys win
    with pytest.raises(ValueError, match="uniform range"):
        SimulateConfig(sersic_n=[1.0, 2.0, 4.0])


def test_config_show_names_the_preset_as_the_source_of_its_values(astro):
    """``config show --sources`` said ``n_stars = 80  # defaults`` for the crowded preset's values."""
    import json

    r = astro("--set", 'dre.simulate.preset="crowded"', "--set", "dre.simulate.n_stars=9", "--json", "config", "show",
              "dre.simulate", "--sources")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert rows["dre.simulate.n_galaxies"] == {"value": 220, "source": 'preset "crowded" (dre.simulate.preset)'}
    assert rows["dre.simulate.n_stars"] == {"value": 9, "source": "--set"}
    assert rows["dre.simulate.psf_beta"]["source"] == "defaults"


def test_index_choice_draws_only_the_given_values(tmp_path):
    cfg = SimulateConfig(size=512, n_galaxies=12, n_stars=0, sersic_n=[1.0, 4.0], sersic_dist="choice",
                         isolation=0.0, logr_range=(0.3, 0.6))
    out = simulate_tile(tmp_path / "n.fits", tmp_path / "n.parquet", cfg, seed=4)
    n = pq.read_table(out["truth"]).column("INDEX").to_numpy()
    assert set(n) == {1.0, 4.0}


def test_json_result_lists_the_failed_tiles(tmp_path, astro):
    """dre printed its per-tile result as a bare JSON list under --json: the failed tiles were not on stdout."""
    import json

    r = astro("-w", tmp_path / "ws", "--json", "dre", "simulate", "-n", 1, "--size", 256, "--n-galaxies", 30,
              "--n-stars", 0)
    assert r.returncode == 2, r.stderr
    out = json.loads(r.stdout)
    assert out["tiles"] == [] and [f["item"] for f in out["failures"]] == ["sim_000"], out
    assert "could not place" in out["failures"][0]["error"]


def test_the_keys_of_an_earlier_release_are_read_under_their_new_names(tmp_path, astro):
    """``ntiles`` and ``prefix`` became ``n_tiles`` and ``name``, as the count and the output stem are called in
    the other plugins: a configuration file still using them is read, with a warning naming the file."""
    import json

    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "astro.toml").write_text('[dre.simulate]\nntiles = 2\nprefix = "old"\n')
    r = astro("-w", ws, "--json", "dre", "simulate", "--size", 256, "--n-galaxies", 30, "--n-stars", 0)
    assert r.returncode == 2, r.stderr   # nothing drawn: the packing cannot be met (fast)
    assert [f["item"] for f in json.loads(r.stdout)["failures"]] == ["old_000", "old_001"]
    assert f"{ws / 'astro.toml'}: dre.simulate.ntiles: renamed to 'n_tiles'" in r.stderr, r.stderr
    assert "dre.simulate.prefix: renamed to 'name'" in r.stderr, r.stderr
    r = astro("-w", ws, "dre", "simulate", "--prefix", "x")   # the old option: the new one is named
    assert r.returncode == 2 and "No such option: --prefix (renamed --name)" in r.stderr, r.stderr


def test_an_edge_leaving_no_room_is_a_configuration_error(tmp_path, astro):
    """It did not depend on the draw but failed every tile alone (three identical failure rows)."""
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="no room inside an edge"):
        SimulateConfig(size=256, edge=130.0)
    ws = tmp_path / "ws"
    r = astro("-w", ws, "dre", "simulate", "-n", 3, "--size", 256, "--set", "dre.simulate.edge=130")
    assert r.returncode == 2 and "dre.simulate.edge" in r.stderr and "dre.simulate.size" in r.stderr, r.stderr
    assert "failed" not in r.stderr and not (ws / "dre").exists(), r.stderr


def test_the_packing_message_names_every_setting_one_way(tmp_path):
    from astrotool.errors import AstroError

    with pytest.raises(AstroError) as err:
        simulate_tile(tmp_path / "x.fits", tmp_path / "x.parquet", SimulateConfig(size=256, n_galaxies=30, n_stars=0),
                      seed=1)
    msg = str(err.value)
    for name in ("--n-galaxies", "--n-stars", "--size", "dre.simulate.edge", "dre.simulate.min_separation",
                 "dre.simulate.isolation"):
        assert name in msg, msg
    assert " edge," not in msg and " isolation," not in msg and "(edge " not in msg, msg


@pytest.mark.parametrize("units, flux_unit", [("counts", "adu"), ("cps", "adu / s")])
def test_truth_table_has_units_and_descriptions_as_the_summary(tmp_path, units, flux_unit):
    """The truth table carries astropy units and column descriptions (as the summary does): every column
    described; positions, angles, magnitudes and PSF sizes with their units, the fluxes in the tile's BUNIT."""
    from astropy import units as u
    from astropy.table import Table

    out = simulate_tile(tmp_path / "u.fits", tmp_path / "u.parquet", SimulateConfig(
        size=256, n_galaxies=1, n_stars=1, units=units, exptime=100.0), seed=2)
    t = Table.read(out["truth"])
    assert all(t[c].description for c in t.colnames), {c: t[c].description for c in t.colnames}
    want = {"X": "pix", "Y": "pix", "RA": "deg", "DEC": "deg", "ANGLE": "deg", "MAG": "mag", "PSF_FWHM": "pix",
            "FLUX": flux_unit, "FLUX_DRAWN": flux_unit}
    assert {c: t[c].unit for c in want} == {c: u.Unit(v) for c, v in want.items()}
    assert all(t[c].unit is None for c in ("ID", "KIND", "INDEX", "LOGR", "AX_RATIO", "SNR"))
