"""128x128 cuts: groups, shapes, compression, neighbour masking, bad inputs."""

import json
import shutil

import numpy as np
import pytest

fits = pytest.importorskip("astropy.io.fits")
h5py = pytest.importorskip("h5py")
pytest.importorskip("photutils")

from astrotool.errors import InputError  # noqa: E402
from astrotool_dre.catalog import read_catalog  # noqa: E402
from astrotool_dre.config import CutsConfig, DetectConfig, SimulateConfig  # noqa: E402
from astrotool_dre.cuts import clean_mask, make_cuts, read_cuts  # noqa: E402
from astrotool_dre.detect import detect_tile  # noqa: E402
from astrotool_dre.simulate import simulate_tile  # noqa: E402

from tests.dre.conftest import ENGINES  # noqa: E402


@pytest.fixture(scope="module")
def products(tmp_path_factory):
    d = tmp_path_factory.mktemp("cuts")
    # crowded on purpose (small separations) so that cuts hold neighbours
    out = simulate_tile(d / "tile.fits", d / "truth.parquet", SimulateConfig(
        size=448, n_galaxies=10, n_stars=10, logr_range=(0.3, 0.9), min_separation=14.0, isolation=2.0), seed=5)
    det = detect_tile(out["tile"], d / "det", DetectConfig(engine="photutils"))
    return d, out, det


def _cut(p, out, **kw):
    return make_cuts(p["cat"], p["nb"], p["rms"], p["seg"], kw.pop("tile"), out, CutsConfig(**kw))


def test_groups_shapes_and_attributes(products):
    d, out, det = products
    r = _cut(det, d / "a_cuts.h5", tile=out["tile"], max_stellarity=0.5, margin=80)
    cat = read_catalog(det["cat"], vignet=False)
    x, y = np.asarray(cat["X_IMAGE"]), np.asarray(cat["Y_IMAGE"])
    sel = (x > 80) & (x < 448 - 80) & (y > 80) & (y < 448 - 80) & (np.asarray(cat["CLASS_STAR"]) < 0.5)
    expected = {f"00_{n:04d}" for n in np.asarray(cat["NUMBER"])[sel]}
    assert r["n_cuts"] == len(expected) >= 5
    c = read_cuts(r["cuts"])
    assert set(c.names) == expected
    assert c.obj.shape == (len(expected), 128, 128) and c.obj.dtype == np.float32
    assert c.rms.dtype == np.float32 and c.seg.dtype == bool and c.nbr.dtype == bool
    assert np.all(c.attrs["CLASS_STAR"] < 0.5)
    with h5py.File(r["cuts"], "r") as f:
        assert f.attrs["tile"] == "tile.fits" and f.attrs["astrotool_command"] == "dre cuts"
        assert "astrotool-dre" in json.loads(f.attrs["astrotool_versions"])  # the core provenance record
        assert f.attrs["GAIN"] == 2.0
        g = f[c.names[0]]
        assert {"obj", "seg", "rms", "nbr"} <= set(g)
        assert {"X_IMAGE", "Y_IMAGE", "NUMBER"} <= set(g.attrs)
    nb = fits.getdata(det["nb"])
    iso = read_cuts(_cut(det, d / "iso_cuts.h5", tile=out["tile"], centroid="isophotal")["cuts"])
    for k in range(len(c)):
        # cut like DRE: Cutout2D at (X-1, Y-1) puts the fit's centre (X_IMAGE in DRE) in (63, 64]
        for cut in (c, iso):
            assert 63 < cut.attrs["X_CUT"][k] <= 64 and 63 < cut.attrs["Y_CUT"][k] <= 64
        x0, y0 = c.attrs["CUT_XMIN"][k], c.attrs["CUT_YMIN"][k]
        assert np.array_equal(c.obj[k], nb[y0:y0 + 128, x0:x0 + 128].astype(np.float32))
        assert c.seg[k][64, 64]


def test_the_fit_centre_is_the_windowed_centroid_the_closer_to_the_truth(products):
    """X_CUT, Y_CUT (where the fit puts the models) come from XWIN_IMAGE, YWIN_IMAGE unless it is missing or
    over 2 px from X_IMAGE; on the simulated tile they lie closer to the true centres than X_IMAGE (DRE's)."""
    import pandas as pd
    from astropy.table import Table

    from astrotool_dre.cuts import fit_centres

    d, out, det = products
    cat = read_catalog(det["cat"], vignet=False)
    truth = pd.read_parquet(d / "truth.parquet")
    errors = {}
    for centroid in ("windowed", "isophotal"):
        c = read_cuts(_cut(det, d / f"{centroid}_cuts.h5", tile=out["tile"], max_stellarity=1.0,
                           centroid=centroid)["cuts"])
        row = {int(n): i for i, n in enumerate(cat["NUMBER"])}
        idx = [row[int(n)] for n in c.attrs["NUMBER"]]
        col = "XWIN_IMAGE" if centroid == "windowed" else "X_IMAGE"
        with h5py.File(d / f"{centroid}_cuts.h5", "r") as f:
            assert f.attrs["centroid"] == centroid   # the file says which centre X_CUT holds
        x = c.attrs["CUT_XMIN"] + c.attrs["X_CUT"] + 1.0   # 1-based tile position of the fit's centre
        y = c.attrs["CUT_YMIN"] + c.attrs["Y_CUT"] + 1.0
        np.testing.assert_allclose(x, np.asarray(cat[col], float)[idx], atol=1e-9)
        np.testing.assert_allclose(y, np.asarray(cat[col.replace("X", "Y", 1)], float)[idx], atol=1e-9)
        near = [np.min(np.hypot(truth["X"] - xi, truth["Y"] - yi)) for xi, yi in zip(x, y)]
        errors[centroid] = np.median(near)
    assert errors["windowed"] < 0.7 * errors["isophotal"], errors
    t = Table({"X_IMAGE": [10.0, 20.0, 30.0], "Y_IMAGE": [10.0, 20.0, 30.0], "XWIN_IMAGE": [10.3, np.nan, 33.0],
               "YWIN_IMAGE": [9.8, 20.1, 30.0]})
    assert [list(v) for v in fit_centres(t)] == [[10.3, 20.0, 30.0], [9.8, 20.0, 30.0]]   # NaN, 3 px: X_IMAGE
    assert [list(v) for v in fit_centres(t, "isophotal")] == [[10.0, 20.0, 30.0], [10.0, 20.0, 30.0]]


def test_neighbour_segments_are_excluded(products):
    d, out, det = products
    r = _cut(det, d / "n_cuts.h5", tile=out["tile"], max_stellarity=1.0, dilate=6)
    c = read_cuts(r["cuts"])
    seg = fits.getdata(det["seg"])
    n_with_neighbours = 0
    for k in range(len(c)):
        x0, y0 = c.attrs["CUT_XMIN"][k], c.attrs["CUT_YMIN"][k]
        s = seg[y0:y0 + 128, x0:x0 + 128]
        own = s == c.attrs["NUMBER"][k]
        others = (s > 0) & ~own
        n_with_neighbours += bool(others.any())
        assert not (c.seg[k] & others).any()  # never into another segment
        assert not (c.seg[k] & c.nbr[k]).any()  # nor into the grown neighbour mask
        assert np.all(c.nbr[k][others])  # every neighbour pixel is masked out
        assert c.seg[k][own].mean() > 0.95  # the object's own segment is kept
        assert c.seg[k].sum() > own.sum()  # and it was dilated into the sky
    assert n_with_neighbours >= 3  # the test means something


def test_clean_mask_does_not_dilate_into_neighbours():
    seg = np.zeros((64, 64), np.int32)
    yy, xx = np.mgrid[0:64, 0:64]
    seg[np.hypot(xx - 32, yy - 32) < 8] = 1
    seg[np.hypot(xx - 44, yy - 32) < 5] = 2  # touching neighbour
    seg[31:33, 29:31] = 3  # small neighbour inside the object: not filled in
    seg[5:8, 5:8] = 1  # detached island of the object: dropped
    mask, nbr = clean_mask(seg, 1, dilate=4, centre_block=4, neighbour_grow=2)
    assert not (mask & (seg == 2)).any() and not (mask & (seg == 3)).any()
    assert not mask[5:8, 5:8].any()
    assert not (mask & nbr).any()
    assert mask[32, 22] and not mask[32, 16]  # dilated by 4 into the sky on the free side
    # DRE's unconstrained dilation would have entered segment 2
    from scipy import ndimage

    assert (ndimage.binary_dilation(seg == 1, iterations=4) & (seg == 2)).any()


@pytest.mark.parametrize("level,expect", [("none", (None, None)), ("low", ("lzf", None)),
                                          ("medium", ("gzip", 4)), ("high", ("gzip", 9))])
def test_compression_levels(products, level, expect):
    d, out, det = products
    r = _cut(det, d / f"{level}_cuts.h5", tile=out["tile"], compression=level)
    with h5py.File(r["cuts"], "r") as f:
        name = sorted(f)[0]
        for ds in ("obj", "seg", "rms", "nbr"):
            assert (f[name][ds].compression, f[name][ds].compression_opts) == expect
        assert f.attrs["compression"] == level


def test_filters_and_margin(products):
    d, out, det = products
    every = _cut(det, d / "f0_cuts.h5", tile=out["tile"], max_stellarity=1.0)
    base = read_cuts(every["cuts"])
    med = float(np.median(base.attrs["FLUX_RADIUS"]))
    some = _cut(det, d / "s_cuts.h5", tile=out["tile"], max_stellarity=0.5)   # the stars left out are counted
    assert some["n_stars"] - every["n_stars"] == every["n_cuts"] - some["n_cuts"] > 0   # 1.0 keeps CLASS_STAR < 1
    c = read_cuts(_cut(det, d / "f1_cuts.h5", tile=out["tile"], max_stellarity=1.0,
                       filters=[("FLUX_RADIUS", med, 1e9)])["cuts"])
    assert 0 < len(c) < len(base) and np.all(c.attrs["FLUX_RADIUS"] > med)
    with pytest.raises(InputError, match="'NO_SUCH_COLUMN' is not among the catalogue's columns of one number per "
                                         "object: .*FLUX_RADIUS"):   # named with the ones it could be
        _cut(det, d / "f2_cuts.h5", tile=out["tile"], filters=[("NO_SUCH_COLUMN", 0, 1)])
    assert not (d / "f2_cuts.h5").exists()


def test_cuts_with_nan_in_the_tile_are_rejected(products, tmp_path, caplog):
    d, out, det = products
    base = read_cuts(_cut(det, tmp_path / "b_cuts.h5", tile=out["tile"], max_stellarity=1.0)["cuts"])
    k = 0
    data = fits.getdata(out["tile"]).copy()
    x, y = int(base.attrs["X_IMAGE"][k]), int(base.attrs["Y_IMAGE"][k])
    data[y - 3:y, x - 3:x] = np.nan
    holed = tmp_path / "holed.fits"
    fits.PrimaryHDU(data, header=fits.getheader(out["tile"])).writeto(holed)
    with caplog.at_level("WARNING", logger="astro.dre"):
        r = _cut(det, tmp_path / "h_cuts.h5", tile=holed, max_stellarity=1.0)
    assert r["n_rejected_nan"] >= 1
    assert f"{holed}: {r['n_rejected_nan']} of {r['n_selected']} selected object(s) not cut" in caplog.text
    assert base.names[k] not in read_cuts(r["cuts"]).names


def test_truncated_or_missing_cuts_file(products, tmp_path):
    d, out, det = products
    good = _cut(det, tmp_path / "good_cuts.h5", tile=out["tile"], compression="none")["cuts"]
    bad = tmp_path / "truncated_cuts.h5"
    shutil.copy(good, bad)
    with open(bad, "r+b") as f:
        f.truncate(bad.stat().st_size // 2)
    for path in (bad, tmp_path / "missing_cuts.h5"):
        with pytest.raises(InputError) as exc:
            read_cuts(path)
        assert str(path) in str(exc.value)
    # a file that is not HDF5 at all
    junk = tmp_path / "junk_cuts.h5"
    junk.write_bytes(b"\x89HDF\r\n" + b"0" * 1000)
    with pytest.raises(InputError, match="truncated or corrupt"):
        read_cuts(junk)


def test_mismatched_inputs_name_the_file(products, tmp_path):
    d, out, det = products
    small = tmp_path / "small_rms.fits"
    fits.PrimaryHDU(np.ones((64, 64), np.float32)).writeto(small)
    with pytest.raises(InputError, match="small_rms.fits.*shape"):
        make_cuts(det["cat"], det["nb"], small, det["seg"], out["tile"], tmp_path / "x_cuts.h5", CutsConfig())
    assert not (tmp_path / "x_cuts.h5").exists()
    assert not list(tmp_path.glob(".*partial*"))


def test_numbers_of_cuts_without_attributes_come_from_their_names(products, tmp_path):
    """DRE's own cuts files have no per-object attributes: NUMBER comes from the group name."""
    from astrotool_dre.fit_stage import object_numbers

    d, out, det = products
    _cut(det, tmp_path / "c.h5", tile=out["tile"], max_stellarity=1.0)
    path = tmp_path / "c.h5"
    ours = read_cuts(path)
    ext, num = object_numbers(ours, path)
    assert len(num) > 5 and len(set(num)) == len(num)
    with h5py.File(path, "a") as f:
        for g in f.values():
            for k in list(g.attrs):
                del g.attrs[k]
    bare = read_cuts(path)
    assert "NUMBER" not in bare.attrs
    ext2, num2 = object_numbers(bare, path)
    np.testing.assert_array_equal(num2, num)
    np.testing.assert_array_equal(ext2, ext)
    bare.names[0] = "galaxy"
    with pytest.raises(InputError, match="'galaxy' has no NUMBER attribute"):
        object_numbers(bare, path)


def test_a_catalogue_without_class_star_is_refused(products, tmp_path):
    """The stellarity cut cannot be skipped silently (it would keep the stars): refused as psf and fit do."""
    d, out, det = products
    cat = tmp_path / "nostar_cat.fits"
    with fits.open(det["cat"]) as h:
        i = h.index_of("LDAC_OBJECTS")
        cols = [c for c in h[i].columns if c.name != "CLASS_STAR"]
        h[i] = fits.BinTableHDU.from_columns(cols, header=h[i].header, name="LDAC_OBJECTS")
        h.writeto(cat)
    p = {**det, "cat": cat}
    with pytest.raises(InputError, match="nostar_cat.fits.*CLASS_STAR missing from the catalogue"):
        _cut(p, tmp_path / "s_cuts.h5", tile=out["tile"])
    assert not (tmp_path / "s_cuts.h5").exists()


def test_saturated_objects_are_not_cut(products, tmp_path, caplog):
    """An object with FLAGS bit 4 is left out of the cuts, and counted, whatever the other selections."""
    d, out, det = products
    base = _cut(det, tmp_path / "b_cuts.h5", tile=out["tile"], max_stellarity=1.0)
    names = read_cuts(base["cuts"]).names
    cat = tmp_path / "sat_cat.fits"
    shutil.copy(det["cat"], cat)
    with fits.open(cat, mode="update") as h:
        objects = h["LDAC_OBJECTS"].data
        k = int(np.nonzero(objects["NUMBER"] == int(names[0].split("_")[1]))[0][0])
        objects["FLAGS"][k] |= 4
    with caplog.at_level("INFO", logger="astro.dre"):
        r = make_cuts(cat, det["nb"], det["rms"], det["seg"], out["tile"], tmp_path / "s_cuts.h5",
                      CutsConfig(max_stellarity=1.0))
    assert read_cuts(r["cuts"]).names == names[1:]
    assert r["n_saturated"] == 1 and r["n_cuts"] == base["n_cuts"] - 1
    assert "1 saturated object(s) (FLAGS bit 4) not cut" in caplog.text


@pytest.mark.parametrize("engine", ENGINES)
def test_an_object_above_the_header_saturate_is_flagged_and_not_cut(products, tmp_path, engine):
    """SATURATE below the peak of an object the cuts select: either engine sets FLAGS bit 4, and it is not cut."""
    d, out, det = products
    data = fits.getdata(out["tile"])
    base = read_cuts(_cut(det, tmp_path / "b_cuts.h5", tile=out["tile"], max_stellarity=1.0)["cuts"])
    x, y = (np.round(base.attrs[c]).astype(int) - 1 for c in ("X_IMAGE", "Y_IMAGE"))
    peaks = [data[j - 2:j + 3, i - 2:i + 3].max() for i, j in zip(x, y)]
    k = int(np.argmax(peaks))
    tile = tmp_path / "sat.fits"
    fits.PrimaryHDU(data, header=fits.getheader(out["tile"])).writeto(tile)
    fits.setval(tile, "SATURATE", value=0.9 * float(peaks[k]))
    r = detect_tile(tile, tmp_path / engine, DetectConfig(engine=engine))
    cat = read_catalog(r["cat"], vignet=False)
    m = int(np.argmin(np.hypot(np.asarray(cat["X_IMAGE"]) - 1 - x[k], np.asarray(cat["Y_IMAGE"]) - 1 - y[k])))
    assert cat["FLAGS"][m] & 4
    c = make_cuts(r["cat"], r["nb"], r["rms"], r["seg"], tile, tmp_path / "sat_cuts.h5", CutsConfig(max_stellarity=1.0))
    assert cat["NUMBER"][m] not in read_cuts(c["cuts"]).attrs["NUMBER"]
    assert c["n_saturated"] >= 1
