"""Detection with both engines: completeness, stellarity, DRE's products, bad inputs."""

import numpy as np
import pytest

fits = pytest.importorskip("astropy.io.fits")
pq = pytest.importorskip("pyarrow.parquet")
pytest.importorskip("photutils")

from astrotool.errors import InputError  # noqa: E402
from astrotool_dre.catalog import CATALOG_COLUMNS, add_size_stellarity, read_catalog  # noqa: E402
from astrotool_dre.config import DetectConfig, SimulateConfig  # noqa: E402
from astrotool_dre.detect import detect_tile  # noqa: E402
from astrotool_dre.simulate import simulate_tile  # noqa: E402
from astrotool_dre.stellarity import size_stellarity, stellar_locus  # noqa: E402
from astrotool_dre.tiles import resolve_gain, resolve_zero_point  # noqa: E402

from tests.dre.conftest import ENGINES, HAVE_SEX  # noqa: E402


@pytest.fixture(scope="module")
def tile(tmp_path_factory):
    d = tmp_path_factory.mktemp("detect")
    out = simulate_tile(d / "tile.fits", d / "truth.parquet", SimulateConfig(
        size=512, n_galaxies=8, n_stars=12, logr_range=(0.3, 1.0)), seed=7)
    return d, out


@pytest.fixture(scope="module")
def detected(tile):
    d, out = tile
    res = {}
    for eng in ("sextractor", "photutils"):
        if eng == "sextractor" and not HAVE_SEX:
            continue
        res[eng] = detect_tile(out["tile"], d / eng, DetectConfig(engine=eng))
    return res


def _match(cat, truth, radius=2.0):
    X, Y = np.asarray(cat["X_IMAGE"], float), np.asarray(cat["Y_IMAGE"], float)
    idx = []
    for x, y in zip(truth["X"], truth["Y"]):
        dist = np.hypot(X - x, Y - y)
        j = int(np.argmin(dist))
        idx.append(j if dist[j] < radius else -1)
    return np.array(idx)


@pytest.mark.parametrize("engine", ENGINES)
def test_products_and_completeness(tile, detected, engine):
    d, out = tile
    r = detected[engine]
    assert r["engine"] == engine
    for k in ("cat", "nb", "rms", "seg"):
        assert r[k].endswith(f"tile_{k}.fits")
    truth = pq.read_table(out["truth"]).to_pydict()
    cat = read_catalog(r["cat"])
    idx = _match(cat, truth)
    assert (idx >= 0).mean() >= 0.9
    # check images: same shape as the tile, background removed, labels = NUMBER
    shape = fits.getdata(out["tile"]).shape
    nb, rms, seg = (fits.getdata(r[k]) for k in ("nb", "rms", "seg"))
    assert nb.shape == rms.shape == seg.shape == shape
    assert abs(np.median(nb)) < 0.1 * np.median(rms)
    sky_sigma = np.sqrt(300.0 / 2.0 + 6.25)  # simulate_tile defaults: sky 300 ADU, gain 2, rn 5 e-
    assert np.median(rms) == pytest.approx(sky_sigma, rel=0.1)
    labels = set(np.unique(seg)) - {0}
    assert labels == set(np.asarray(cat["NUMBER"]).tolist())


@pytest.mark.parametrize("engine", ENGINES)
def test_stellarity_separates_stars_from_galaxies(tile, detected, engine):
    _, out = tile
    truth = pq.read_table(out["truth"]).to_pydict()
    cat = read_catalog(detected[engine]["cat"])
    idx = _match(cat, truth)
    kind = np.array(truth["KIND"])
    cs = np.asarray(cat["CLASS_STAR"], float)
    star = (kind == "star") & (idx >= 0)
    big = (kind == "galaxy") & (np.array(truth["LOGR"]) > np.log10(3.0)) & (idx >= 0)
    assert star.sum() >= 10 and big.sum() >= 3
    assert np.mean(cs[idx[star]] >= 0.8) >= 0.9
    assert np.all(cs[idx[big]] <= 0.2)


def test_both_engines_write_the_same_ldac_structure(detected):
    for eng, r in detected.items():
        with fits.open(r["cat"]) as h:
            names = [hdu.name for hdu in h]
            assert names[1:] == ["LDAC_IMHEAD", "LDAC_OBJECTS"], eng
            cards = h["LDAC_IMHEAD"].data["Field Header Card"][0]
            hdr = fits.Header.fromstring("".join(c.ljust(80) for c in cards))
            assert hdr["GAIN"] == 2.0 and "SEXBKDEV" in hdr
            assert b"\x00" not in h["LDAC_IMHEAD"].data.tobytes()  # PSFEx cannot parse NULs
        for k in ("cat", "nb", "rms", "seg"):  # the core provenance record and the engine's settings
            history = list(fits.getheader(r[k])["HISTORY"])
            assert any(line.startswith("astrotool ") and line.endswith(" dre detect") for line in history), history
            assert any(line.startswith(("source-extractor on ", "photutils on ")) for line in history), history
        cat = read_catalog(r["cat"])
        assert set(CATALOG_COLUMNS) <= set(cat.colnames), eng
        assert cat["VIGNET"].shape[1:] == (35, 35)
        assert np.all(cat["EXT_NUMBER"] == 0)
        assert np.all(np.diff(np.asarray(cat["NUMBER"])) > 0)
        assert "VIGNET" not in read_catalog(r["cat"], vignet=False).colnames


@pytest.mark.skipif(not HAVE_SEX, reason="source-extractor/sex not installed")
def test_engines_agree_on_positions_and_fluxes(detected):
    a, b = (read_catalog(detected[e]["cat"]) for e in ("sextractor", "photutils"))
    truth = {"X": np.asarray(a["X_IMAGE"]), "Y": np.asarray(a["Y_IMAGE"])}
    idx = _match(b, truth, radius=1.0)
    ok = idx >= 0
    assert ok.mean() >= 0.9
    fa, fb = np.asarray(a["FLUX_AUTO"])[ok], np.asarray(b["FLUX_AUTO"])[idx[ok]]
    assert np.median(fb / fa) == pytest.approx(1.0, abs=0.05)


@pytest.mark.parametrize("engine", ENGINES)
def test_theta_range_kron_radius_minimum_and_flux_units_are_sextractors(detected, engine):
    """THETA_IMAGE in (-90, 90], KRON_RADIUS the scaled k r1 (at least 3.5 = PHOT_AUTOPARAMS' minimum) and
    the flux columns' TUNITn the tile's BUNIT as the summary writes it ('ADU': 'adu'), for both engines."""
    cat = read_catalog(detected[engine]["cat"])
    theta = np.asarray(cat["THETA_IMAGE"], float)
    assert len(theta) and np.all((theta > -90) & (theta <= 90)), theta
    kron = np.asarray(cat["KRON_RADIUS"], float)
    assert np.nanmin(kron) == pytest.approx(3.5, rel=1e-6)
    h = fits.getheader(detected[engine]["cat"], "LDAC_OBJECTS")
    units = {h[f"TTYPE{i}"]: h.get(f"TUNIT{i}") for i in range(1, h["TFIELDS"] + 1)}
    in_data_units = ("FLUX_AUTO", "FLUXERR_AUTO", "FLUX_APER", "FLUX_MAX", "BACKGROUND", "VIGNET")   # VIGNET: ct
    assert {c: units[c] for c in in_data_units} == dict.fromkeys(in_data_units, "adu")   # from SExtractor, none else


@pytest.mark.parametrize("engine", ENGINES)
def test_a_tile_without_bunit_gives_flux_columns_no_unit_with_either_engine(tile, tmp_path, engine):
    """Without BUNIT, SExtractor's catalogue said 'count' and photutils' nothing."""
    d, out = tile
    with fits.open(out["tile"]) as h:
        del h[0].header["BUNIT"]
        h.writeto(tmp_path / "nobunit.fits")
    r = detect_tile(tmp_path / "nobunit.fits", tmp_path / engine, DetectConfig(engine=engine))
    h = fits.getheader(r["cat"], "LDAC_OBJECTS")
    units = {h[f"TTYPE{i}"]: h.get(f"TUNIT{i}") for i in range(1, h["TFIELDS"] + 1)}
    assert [units[c] for c in ("FLUX_AUTO", "FLUX_MAX", "BACKGROUND", "VIGNET")] == [None] * 4, units


def test_photutils_theta_is_wrapped_as_sextractors():
    from astrotool_dre.detect_photutils import sextractor_theta

    got = sextractor_theta([0.0, 90.0, 90.5, 179.0, 180.0, 270.0, 359.0, -90.0, -135.0, -1e-14, 1e-14])
    assert got == pytest.approx([0.0, 90.0, -89.5, -1.0, 0.0, 90.0, -1.0, 90.0, 45.0, 0.0, 0.0], abs=1e-9)


@pytest.mark.skipif(not HAVE_SEX, reason="source-extractor/sex not installed")
def test_engines_agree_on_theta_and_kron_radius(detected):
    """The same quantity in both engines: THETA_IMAGE (elongated sources) and KRON_RADIUS (median ratio ~1;
    it was 0.4: photutils' unscaled radius)."""
    a, b = (read_catalog(detected[e]["cat"]) for e in ("sextractor", "photutils"))
    idx = _match(b, {"X": np.asarray(a["X_IMAGE"]), "Y": np.asarray(a["Y_IMAGE"])}, radius=1.0)
    ok = idx >= 0
    ta, tb = np.asarray(a["THETA_IMAGE"], float)[ok], np.asarray(b["THETA_IMAGE"], float)[idx[ok]]
    elong = np.asarray(a["ELONGATION"], float)[ok] > 1.3
    assert elong.sum() >= 3
    dtheta = np.abs((ta - tb + 90.0) % 180.0 - 90.0)   # an axis near +-90 may be written either way
    assert np.all(dtheta[elong] < 15), (ta[elong], tb[elong])
    ka, kb = np.asarray(a["KRON_RADIUS"], float)[ok], np.asarray(b["KRON_RADIUS"], float)[idx[ok]]
    assert np.median(kb / ka) == pytest.approx(1.0, abs=0.1)


@pytest.mark.skipif(not HAVE_SEX, reason="source-extractor/sex not installed")
def test_sextractor_gain_modes(tmp_path):
    out = simulate_tile(tmp_path / "c.fits", tmp_path / "c.parquet", SimulateConfig(
        size=320, n_galaxies=2, n_stars=3, logr_range=(0.3, 0.8), units="cps", exptime=50.0), seed=4)
    for gain, expect in (("cps", 2.0 * 50.0), (7.5, 7.5)):
        r = detect_tile(out["tile"], tmp_path / str(gain), DetectConfig(engine="sextractor", gain=gain, seeing_fwhm=3.0))
        with fits.open(r["cat"]) as h:
            cards = h["LDAC_IMHEAD"].data["Field Header Card"][0]
        hdr = fits.Header.fromstring("".join(c.ljust(80) for c in cards))
        assert hdr["SEXGAIN"] == pytest.approx(expect)
        assert r["seeing_fwhm"] == 3.0


def test_a_rate_tile_read_as_counts_is_warned_about(caplog):
    """A tile in ADU/s (``astro dre simulate`` with units="cps") run with the default gain 'counts' got a noise
    model EXPTIME times too large (χ²ν 0.02–0.07, errors 2–4 times too large) without a word."""
    import logging

    from astrotool_dre.tiles import is_rate_unit

    assert [is_rate_unit(u) for u in ("ADU/s", "electrons/sec", "e-/s/px", "ct s-1", "CPS")] == [True] * 5
    assert not any(is_rate_unit(u) for u in ("ADU", "counts", "e-", "nanomaggy", "ADU/pixel", None))
    rate = fits.Header({"GAIN": 2.0, "EXPTIME": 600.0, "BUNIT": "ADU/s"})
    with caplog.at_level(logging.WARNING, logger="astro.dre"):
        assert resolve_gain(rate, "counts", "rate_tile.fits") == 2.0
        assert resolve_gain(rate, "counts", "rate_tile.fits") == 2.0   # said once per tile
        assert resolve_gain(rate, "cps", "rate_tile2.fits") == 1200.0
        assert resolve_gain(fits.Header({"GAIN": 2.0, "BUNIT": "ADU"}), "counts", "count_tile.fits") == 2.0
        electrons = fits.Header({"GAIN": 2.0, "EXPTIME": 600.0, "BUNIT": "e-/s"})   # its gain is EXPTIME, not GAIN
        assert resolve_gain(electrons, "counts", "e_tile.fits") == 2.0
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 2 and said[0].startswith("rate_tile.fits: BUNIT 'ADU/s' is a rate") and "--gain cps" in said[0]
    assert said[1].endswith("its gain is the exposure time, not GAIN = 2: give it as a number (--gain 600.0)")


def test_gain_resolution():
    h = fits.Header({"GAIN": 2.0, "EXPTIME": 30.0})
    assert resolve_gain(h, "counts", "x") == 2.0
    assert resolve_gain(h, "cps", "x") == 60.0
    assert resolve_gain(h, 4, "x") == 4.0
    assert resolve_gain(h, "3.5", "x") == 3.5
    with pytest.raises(InputError, match="nogain.fits.*GAIN"):
        resolve_gain(fits.Header(), "counts", "nogain.fits")
    for bad in ("N/A", -2.0, 0.0):
        with pytest.raises(InputError, match=r"badgain.fits: header GAIN .* is not a positive number"):
            resolve_gain(fits.Header({"GAIN": bad}), "counts", "badgain.fits")


def test_zero_point_resolution():
    assert resolve_zero_point(fits.Header({"MAGZP": 25.5}), None) == 25.5
    assert resolve_zero_point(fits.Header({"MAGZP": 25.5}), 0.0) == 0.0  # an explicit 0 is kept
    assert resolve_zero_point(fits.Header(), None) == 30.0  # as documented, in detect and fit alike


@pytest.mark.skipif(not HAVE_SEX, reason="source-extractor/sex not installed")
def test_size_stellarity_replaces_class_star_in_a_sextractor_catalogue(tile, detected, tmp_path):
    # the fallback used when SExtractor's default.nnw cannot be found
    import shutil

    _, out = tile
    cat_path = tmp_path / "tile_cat.fits"
    shutil.copy(detected["sextractor"]["cat"], cat_path)
    add_size_stellarity(cat_path)
    with fits.open(cat_path) as h:
        assert b"\x00" not in h["LDAC_IMHEAD"].data.tobytes()
    truth = pq.read_table(out["truth"]).to_pydict()
    cat = read_catalog(cat_path)
    idx = _match(cat, truth)
    star = (np.array(truth["KIND"]) == "star") & (idx >= 0)
    cs = np.asarray(cat["CLASS_STAR"])
    assert np.mean(cs[idx[star]] >= 0.8) >= 0.9 and np.mean(cs[idx[~star & (idx >= 0)]] < 0.2) >= 0.8


def test_size_stellarity():
    rng = np.random.default_rng(0)
    r = np.concatenate([rng.normal(1.7, 0.03, 20), rng.uniform(2.5, 8, 30)])
    snr = np.full(r.size, 200.0)
    r_star = stellar_locus(r, snr)
    assert r_star == pytest.approx(1.7, abs=0.05)
    s = size_stellarity(r, snr, r_star)
    assert np.all((s >= 0) & (s <= 1))
    assert np.mean(s[:20] > 0.8) >= 0.9 and np.all(s[20:] < 0.05)
    assert np.all(size_stellarity(r, snr, None) == 0.5)


def _no_outputs(folder):
    return not folder.exists() or not any(folder.iterdir())


@pytest.mark.parametrize("engine", ENGINES)
def test_bad_tiles_raise_input_error_naming_the_file(tmp_path, engine):
    hdr = fits.Header({"GAIN": 2.0, "EXPTIME": 10.0})
    nan = tmp_path / "nan_tile.fits"
    fits.PrimaryHDU(np.full((128, 128), np.nan, np.float32), header=hdr).writeto(nan)
    blank = tmp_path / "blank_tile.fits"
    fits.PrimaryHDU(np.zeros((128, 128), np.float32), header=hdr).writeto(blank)
    junk = tmp_path / "junk_tile.fits"
    junk.write_bytes(b"this is not a FITS file" * 50)
    cases = [(nan, "NaN"), (blank, "blank"), (junk, "not a FITS file"),
             (tmp_path / "missing.fits", "not found")]
    for path, words in cases:
        out = tmp_path / ("out_" + path.stem)
        with pytest.raises(InputError, match=words) as exc:
            detect_tile(path, out, DetectConfig(engine=engine, detect_thresh=50.0))
        assert str(path) in str(exc.value)
        assert _no_outputs(out), list(out.iterdir())


def _compressed_copies(tile_path, folder):
    """The tile as ``.fits.gz`` (gzip of the file) and ``.fits.fz`` (an empty primary + CompImageHDU)."""
    import gzip

    folder.mkdir(exist_ok=True)
    gz = folder / "gz_tile.fits.gz"
    gz.write_bytes(gzip.compress(open(tile_path, "rb").read()))
    fz = folder / "fz_tile.fits.fz"
    with fits.open(tile_path) as h:
        fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(h[0].data.astype(np.float32), header=h[0].header,
                                                           quantize_level=64.0)]).writeto(fz)
    return gz, fz


@pytest.mark.parametrize("engine", ENGINES)
def test_compressed_tiles_are_detected_and_named_by_their_stem(tile, detected, tmp_path, engine):
    from astrotool_dre.detect_sextractor import is_compressed

    d, out = tile
    gz, fz = _compressed_copies(out["tile"], tmp_path)
    assert is_compressed(gz) and is_compressed(fz) and not is_compressed(out["tile"])
    n_plain = len(read_catalog(detected["photutils"]["cat"]))
    for path, stem in ((gz, "gz_tile"), (fz, "fz_tile")):
        res = detect_tile(path, tmp_path / stem, DetectConfig(engine=engine))
        assert res["engine"] == engine and res["cat"] == str(tmp_path / stem / f"{stem}_cat.fits")
        assert abs(res["n_sources"] - n_plain) <= 0.2 * n_plain
        assert not list((tmp_path / stem).glob(".sex-*"))


def test_tile_suffixes_and_stems(tmp_path, monkeypatch):
    from astrotool_dre.pipeline import tiles_in
    from astrotool_dre.tiles import tile_stem

    assert [tile_stem(n) for n in ("a.fits", "b.fits.gz", "c.fits.fz", "d.fit", "e.FITS")] == list("abcde")
    folder = tmp_path / "dre" / "tiles"
    folder.mkdir(parents=True)
    for n in ("a.fits", "b.fits.gz", "c.fits.fz", "d.fit", ".hidden.fits", "notes.txt"):
        (folder / n).write_bytes(b"")
    assert [p.name for p in tiles_in(tmp_path)] == ["a.fits", "b.fits.gz", "c.fits.fz", "d.fit"]
    assert [p.name for p in tiles_in(tmp_path, ["c", "b"])] == ["c.fits.fz", "b.fits.gz"]
    monkeypatch.chdir(tmp_path)   # a tile's file name, not in the current folder: the workspace's (was not found)
    assert tiles_in(tmp_path, ["b.fits.gz", "d.fit"]) == [folder.resolve() / "b.fits.gz", folder.resolve() / "d.fit"]
    with pytest.raises(InputError, match="zz.fits: tile not found"):
        tiles_in(tmp_path, ["zz.fits"])
    (folder / "a.fits.fz").write_bytes(b"")
    with pytest.raises(InputError, match="same name"):
        tiles_in(tmp_path)


def test_engine_auto_records_the_engine_that_ran(tile, tmp_path):
    from astrotool_dre.detect import engine_of

    d, out = tile
    res = detect_tile(out["tile"], tmp_path, DetectConfig(engine="auto"))
    assert res["engine"] == ("sextractor" if HAVE_SEX else "photutils")
    assert engine_of(res["cat"]) == res["engine"]
    assert len(read_catalog(res["cat"], require=CATALOG_COLUMNS)) == res["n_sources"]
    assert engine_of(tmp_path / "missing.fits") == "unknown"


@pytest.fixture(scope="module")
def sip_tile(tmp_path_factory):
    """A small simulated tile whose TAN WCS gets a SIP distortion (up to a few px at the corners)."""
    d = tmp_path_factory.mktemp("sip")
    out = simulate_tile(d / "sip.fits", d / "sip.parquet", SimulateConfig(
        size=256, n_galaxies=2, n_stars=8, logr_range=(0.3, 0.7), edge=20.0), seed=11)
    with fits.open(out["tile"], mode="update") as h:
        hdr = h[0].header
        hdr["CTYPE1"], hdr["CTYPE2"] = "RA---TAN-SIP", "DEC--TAN-SIP"
        hdr["A_ORDER"] = hdr["B_ORDER"] = 2
        for k in ("A_2_0", "A_1_1", "A_0_2", "B_2_0", "B_1_1", "B_0_2"):
            hdr[k] = 0.0
        hdr["A_2_0"], hdr["A_1_1"], hdr["B_0_2"] = 2e-4, 1e-4, 2e-4
    return out["tile"]


@pytest.mark.parametrize("engine", ENGINES)
def test_sky_coordinates_follow_the_full_wcs_sip_included(sip_tile, tmp_path, engine):
    from astropy.wcs import WCS

    res = detect_tile(sip_tile, tmp_path, DetectConfig(engine=engine, seeing_fwhm=3.0))
    cat = read_catalog(res["cat"])
    assert len(cat) >= 5
    w = WCS(fits.getheader(sip_tile))
    assert w.sip is not None
    ra, dec = w.all_pix2world(np.asarray(cat["X_IMAGE"], float), np.asarray(cat["Y_IMAGE"], float), 1)
    sep = np.hypot((np.asarray(cat["ALPHA_J2000"]) - ra) * np.cos(np.radians(dec)),
                   np.asarray(cat["DELTA_J2000"]) - dec) * 3600.0
    assert np.max(sep) < 0.01, sep


def test_sky_coordinates_of_galactic_axes_are_equatorial_j2000():
    """ALPHA_J2000/DELTA_J2000 of a tile with GLON/GLAT axes: FK5 J2000, as SExtractor converts them."""
    from astropy.coordinates import SkyCoord

    from astrotool_dre.tiles import sky_coordinates

    h = fits.Header({"NAXIS": 2, "NAXIS1": 100, "NAXIS2": 100, "CTYPE1": "GLON-TAN", "CTYPE2": "GLAT-TAN",
                     "CRVAL1": 30.0, "CRVAL2": 5.0, "CRPIX1": 50.5, "CRPIX2": 50.5, "CDELT1": -1e-4, "CDELT2": 1e-4})
    ra, dec = sky_coordinates(h, [50.5, 1.0], [50.5, 100.0])
    want = SkyCoord([30.0, 30.0 + 49.5e-4 / np.cos(np.radians(5.0))], [5.0, 5.0 + 49.5e-4], unit="deg",
                    frame="galactic").fk5
    assert np.allclose(ra[:1], want.ra.deg[:1], atol=1e-9) and np.allclose(dec[:1], want.dec.deg[:1], atol=1e-9)
    assert abs(ra[1] - want.ra.deg[1]) * 3600 < 1.0 and abs(dec[1] - want.dec.deg[1]) * 3600 < 1.0  # TAN, ~0.5'
    assert ra[0] != 30.0 and 0 <= ra[0] < 360


def test_sky_coordinates_of_fk4_and_of_swapped_axes_are_fk5_j2000():
    """A B1950 (FK4) header gave B1950 values under ALPHA_J2000 (SExtractor converts them: 0.6 deg apart
    here), and DEC--TAN/RA---TAN axes came out as (Dec, RA)."""
    from astropy.coordinates import FK4, FK5, SkyCoord

    from astrotool_dre.tiles import sky_coordinates

    base = {"NAXIS": 2, "NAXIS1": 100, "NAXIS2": 100, "CRPIX1": 50.5, "CRPIX2": 50.5}
    fk4 = fits.Header({**base, "CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CRVAL1": 150.0, "CRVAL2": -30.0,
                       "CDELT1": -1e-4, "CDELT2": 1e-4, "RADESYS": "FK4", "EQUINOX": 1950.0})
    ra, dec = sky_coordinates(fk4, [50.5], [50.5])
    want = SkyCoord(150.0, -30.0, unit="deg", frame=FK4(equinox="B1950")).transform_to(FK5(equinox="J2000"))
    assert abs(ra[0] - want.ra.deg) * 3600 < 0.01 and abs(dec[0] - want.dec.deg) * 3600 < 0.01
    assert abs(ra[0] - 150.0) > 0.4
    swapped = fits.Header({**base, "CTYPE1": "DEC--TAN", "CTYPE2": "RA---TAN", "CRVAL1": -30.0, "CRVAL2": 150.0,
                           "CDELT1": 1e-4, "CDELT2": 1e-4, "RADESYS": "ICRS"})
    ra, dec = sky_coordinates(swapped, [50.5], [50.5])
    assert ra[0] == pytest.approx(150.0, abs=1e-9) and dec[0] == pytest.approx(-30.0, abs=1e-9)


def test_cps_gain_needs_a_positive_exposure_time():
    for bad in (0.0, -5.0, "N/A"):
        with pytest.raises(InputError, match=r"t\.fits: header EXPTIME .* is not a positive number"):
            resolve_gain(fits.Header({"GAIN": 2.0, "EXPTIME": bad}), "cps", "t.fits")
    assert resolve_gain(fits.Header({"GAIN": 2.0, "EXPTIME": 0.0}), "counts", "t.fits") == 2.0


@pytest.mark.parametrize("engine", ENGINES)
def test_the_rms_map_is_the_sky_noise_under_a_sky_gradient(tmp_path, engine, caplog):
    """A 20 % sky ramp across a 512² tile widened each 256-px mesh's RMS to 1.24× the noise (both engines take
    it from the mesh's histogram): the fit's χ²/ν was 0.67 and its errors too large."""
    import logging

    cfg = SimulateConfig(size=512, n_galaxies=6, n_stars=8, sky_gradient=0.2, logr_range=(0.3, 0.8))
    out = simulate_tile(tmp_path / "ramp.fits", tmp_path / "truth.parquet", cfg, seed=11)
    with caplog.at_level(logging.INFO, logger="astro.dre"):
        res = detect_tile(out["tile"], tmp_path / engine, DetectConfig(engine=engine))
    rms, seg = fits.getdata(res["rms"]), fits.getdata(res["seg"])
    header = fits.getheader(out["tile"])
    left, right = fits.getdata(out["tile"])[:, :40], fits.getdata(out["tile"])[:, -40:]   # sky level at each edge
    sky = cfg.sky_level                                                # the ramp's middle (it runs ±g/2), ADU
    noise = np.sqrt(sky / header["GAIN"] + (cfg.read_noise / header["GAIN"]) ** 2)   # Poisson + read noise, ADU
    assert np.median(right) > np.median(left) + 3 * noise             # the ramp is there
    assert np.median(rms[seg == 0]) == pytest.approx(noise, rel=0.03)
    assert any("scaled to it" in r.getMessage() and "ramp.fits" in r.getMessage() for r in caplog.records)
    assert "scaled by" in str(fits.getheader(res["rms"])["HISTORY"])


def test_an_rms_map_that_follows_the_depth_is_kept_and_only_one_too_large_is_scaled(tmp_path, caplog):
    """The map is compared with the sky pixel by pixel: a tile of two depths (noise 1 and 1.5) whose map follows
    them was read as 0.85x off and scaled (one scatter for the whole tile); a map 1.3x too large is scaled
    down; one too small is only warned about (faint sources widen the sky too)."""
    import logging

    from astrotool_dre.config import DetectConfig
    from astrotool_dre.detect import match_rms_to_sky

    rng = np.random.default_rng(5)
    sigma = np.where(np.arange(200)[None, :] < 120, 1.0, 1.5) * np.ones((200, 1))
    nb = rng.normal(0.0, sigma).astype(np.float32)
    paths = {k: tmp_path / f"{k}.fits" for k in ("nb", "rms", "seg")}
    fits.PrimaryHDU(nb).writeto(paths["nb"])
    fits.PrimaryHDU(np.zeros(nb.shape, np.int32)).writeto(paths["seg"])
    log = logging.getLogger("astro.dre")
    for off, factor in ((1.0, 1.0), (1.3, 1 / 1.3), (0.8, 1.0)):
        fits.PrimaryHDU((sigma * off).astype(np.float32)).writeto(paths["rms"], overwrite=True)
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="astro.dre"):
            got = match_rms_to_sky(paths, "t.fits", DetectConfig(), log)
        assert got == pytest.approx(factor, rel=0.02), off
        assert np.median(fits.getdata(paths["rms"]) / sigma) == pytest.approx(off * got, rel=1e-6)
        assert ("the fit's errors may be too small" in caplog.text) == (off < 1), caplog.text


def test_gain_from_another_keyword_is_logged_once_per_tile(tmp_path, caplog):
    import logging

    h = fits.Header({"CCDGAIN": 1.5})
    path = tmp_path / "ccd.fits"
    with caplog.at_level(logging.INFO, logger="astro.dre"):
        assert resolve_gain(h, "counts", path) == 1.5
        assert resolve_gain(h, "counts", path) == 1.5   # the fit stage of the same tile
    lines = [r.getMessage() for r in caplog.records if "CCDGAIN" in r.getMessage()]
    assert len(lines) == 1 and str(path) in lines[0], lines


def test_a_zero_point_that_is_not_a_number_is_passed_over_and_named(tmp_path, caplog):
    """MAGZP = 'INDEF' (IRAF's undefined) fell back to ZP 30 with a warning that the header had no zero-point
    keyword at all."""
    import logging

    assert resolve_zero_point(fits.Header({"MAGZP": "INDEF", "ZP": 26.0}), None) == 26.0
    path = tmp_path / "indef.fits"
    with caplog.at_level(logging.WARNING, logger="astro.dre"):
        assert resolve_zero_point(fits.Header({"MAGZP": "INDEF"}), None, path, "dre.fit.zero_point") == 30.0
    lines = [r.getMessage() for r in caplog.records if str(path) in r.getMessage()]
    assert len(lines) == 1 and "header MAGZP 'INDEF' not a number; magnitudes use ZP = 30" in lines[0], lines


def test_missing_zero_point_is_warned_once_per_tile(tmp_path, caplog):
    import logging

    path = tmp_path / "nozp.fits"
    with caplog.at_level(logging.WARNING, logger="astro.dre"):
        # detect, then fit of the same tile (astro dre run): one warning, naming both settings
        assert resolve_zero_point(fits.Header(), None, path, "dre.detect.zero_point for MAG_AUTO, "
                                  "dre.fit.zero_point for MAG") == 30.0
        assert resolve_zero_point(fits.Header(), None, path, "dre.fit.zero_point") == 30.0
    lines = [r.getMessage() for r in caplog.records if "no zero-point keyword" in r.getMessage()]
    assert len(lines) == 1 and str(path) in lines[0], lines
    assert "dre.detect.zero_point" in lines[0] and "dre.fit.zero_point" in lines[0]


@pytest.mark.parametrize("shape", [(1024, 1024), (1000, 700), (300, 600)])
def test_photutils_background_follows_a_sky_gradient_to_the_edges(shape):
    """photutils' own mesh filter and interpolation flattened a sloping sky towards the edges (off by up to 22 at
    0.1 per px, noise 14), and left out the edge meshes a tile's side cuts short (off by 33). SExtractor follows
    the slope; so does the photutils engine now."""
    from astrotool_dre.detect_photutils import sky_maps

    rng = np.random.default_rng(41)
    ny, nx = shape
    sky = 100.0 + 0.1 * np.arange(nx)[None, :] + 0.05 * np.arange(ny)[:, None]
    data = sky + rng.normal(0.0, 14.0, shape)
    background, rms = sky_maps("t.fits", data, np.zeros(shape, bool), 256, 3)
    assert np.abs(background - sky).max() < 2.0   # the noise of a mesh's estimate: ~0.1-0.5
    assert 13.5 < rms.min() and rms.max() < 17.5   # the noise 14, with the sky's own spread in a mesh (up to 8)


def test_photutils_background_of_a_crowded_tile_and_of_a_blank_one():
    """More than 10 % of every mesh sigma-clipped (a crowded field) made photutils refuse every mesh, a raw
    ValueError (exit 1); the sky is measured from the pixels left. A tile with no sky gets one message, exit 2."""
    import warnings

    from photutils.background import Background2D, SExtractorBackground

    from astrotool_dre.detect_photutils import sky_maps

    rng = np.random.default_rng(42)
    data = 300.0 + rng.normal(0.0, 14.0, (512, 512))
    yy, xx = np.mgrid[:512, :512]
    for (y, x), amplitude in zip(rng.uniform(0, 512, (300, 2)), 10 ** rng.uniform(2.0, 3.5, 300)):
        data += amplitude * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * 3.0 ** 2))   # 300 sources, sigma 3 px
    with pytest.raises(ValueError, match="All boxes contain"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        Background2D(data, box_size=256, filter_size=3, bkg_estimator=SExtractorBackground())   # as before
    background, rms = sky_maps("crowded.fits", data, np.zeros(data.shape, bool), 256, 3)
    assert np.abs(background - 300.0).max() < 3.0 and rms.min() > 10.0
    blank = np.full((512, 512), np.nan)
    with pytest.raises(InputError, match=r"blank.fits.*no background mesh of 256 px is at least half data") as err:
        sky_maps("blank.fits", blank, np.ones(blank.shape, bool), 256, 3)
    assert err.value.exit_code == 2


def test_photutils_background_goes_on_under_blank_columns():
    """Meshes less than half data (a blank strip, as at a survey's edge) took photutils' fill, 38 off a sloping
    sky; they are left out and the others' plane continues there, as SExtractor leaves them out."""
    from astrotool_dre.detect_photutils import sky_maps

    rng = np.random.default_rng(43)
    sky = 100.0 + 0.1 * np.arange(1024)[None, :] + np.zeros((1024, 1))
    data = sky + rng.normal(0.0, 14.0, sky.shape)
    data[:, :300] = np.nan
    background, rms = sky_maps("strip.fits", data, ~np.isfinite(data), 256, 3)
    assert np.abs(background - sky)[:, 300:].max() < 3.0
    assert 13.5 < rms.min() and rms.max() < 17.0
