"""Model cube: drawing conventions, accuracy against GalSim, DRE-compatible FITS I/O."""

import math

import numpy as np
import pytest

from astrotool.errors import AstroError, InputError
from astrotool_dre import models as M

SMALL = M.ModelGrid(naxrat=2, axrat0=0.5, daxrat=0.5, nposang=3, dposang=60.0,
                    nlogh=2, logh0=0.2, dlogh=0.3, boxsize=16)


def _moments(img):
    y, x = np.indices(img.shape, dtype=float)
    f = img.sum()
    xc, yc = (img * x).sum() / f, (img * y).sum() / f
    mxx = (img * (x - xc) ** 2).sum() / f
    myy = (img * (y - yc) ** 2).sum() / f
    mxy = (img * (x - xc) * (y - yc)).sum() / f
    return xc, yc, mxx, myy, mxy


def test_default_grid_is_dre_like():
    g = M.ModelGrid()
    assert g.shape == (1, 10, 13, 21)
    assert g.nmodels == 2730
    assert np.allclose(g.axrat, np.arange(1, 11) / 10)
    assert g.posang.max() < 180 and np.isclose(g.dposang * g.nposang, 180)
    assert np.isclose(g.logr[0], -0.6) and np.isclose(g.logr[-1], 1.7)
    assert g.center == 64 and g.angle_periodic


def test_model_is_centred_and_symmetric():
    img = M.draw_model(4.0, 0.6, 25.0, 0.5, boxsize=32)
    assert np.unravel_index(img.argmax(), img.shape) == (16, 16)
    # point symmetry about the centre pixel (rows/cols 1..31)
    core = img[1:, 1:]
    assert np.allclose(core, core[::-1, ::-1], rtol=1e-10, atol=1e-15)


def test_unit_total_flux():
    # an exponential disc of r_e = 3 px is essentially all inside 64 px: sums to 1
    img = M.draw_model(1.0, 0.5, 40.0, math.log10(3.0), boxsize=64)
    assert abs(img.sum() - 1.0) < 2e-4
    # a tiny de Vaucouleurs (0.25 px) is still drawn with its full flux
    tiny = M.draw_model(4.0, 0.1, 30.0, -0.6, boxsize=64)
    assert abs(tiny.sum() - 1.0) < 2e-3
    assert tiny.max() > 0.5


@pytest.mark.parametrize("n,q,angle,re", [(4.0, 0.5, 30.0, 4.0), (1.0, 0.3, 120.0, 3.0)])
def test_matches_galsim(n, q, angle, re):
    galsim = pytest.importorskip("galsim")
    gsp = galsim.GSParams(realspace_relerr=1e-6, realspace_abserr=1e-9)
    # GalSim's half_light_radius is the geometric mean sqrt(a b): ours is the major axis
    prof = galsim.Sersic(n, half_light_radius=re * math.sqrt(q), flux=1.0, gsparams=gsp)
    prof = prof.shear(q=q, beta=angle * galsim.degrees)
    ref = prof.drawImage(nx=33, ny=33, scale=1.0, method="real_space").array  # centre pixel 16
    ours = M.draw_model(n, q, angle, math.log10(re), boxsize=32)
    diff = np.abs(ours - ref[:32, :32])
    assert diff.max() < 1e-4 * ref.max()
    assert diff.sum() < 1e-4


def test_half_light_radius_is_major_axis():
    q, angle, re = 0.4, 20.0, 8.0
    img = M.draw_model(4.0, q, angle, math.log10(re), boxsize=128)
    c = 64
    t = math.radians(angle)
    # elliptical radius (major-axis units) on a 4x4 sub-grid, each sub-pixel carrying 1/16
    off = (np.arange(4) + 0.5) / 4 - 0.5
    y, x = np.indices(img.shape, dtype=float)
    radii, fluxes = [], []
    for oy in off:
        for ox in off:
            dx, dy = x + ox - c, y + oy - c
            u = dx * math.cos(t) + dy * math.sin(t)
            v = -dx * math.sin(t) + dy * math.cos(t)
            radii.append(np.hypot(u, v / q).ravel())
            fluxes.append(img.ravel() / 16)
    r = np.concatenate(radii)
    f = np.concatenate(fluxes)
    order = np.argsort(r)
    cum = np.cumsum(f[order])
    r_half = np.interp(0.5, cum, r[order])  # half of the TOTAL flux (models have unit total)
    assert abs(r_half / re - 1) < 0.03
    assert abs(r_half / (re * math.sqrt(q)) - 1) > 0.3  # not the geometric-mean radius


@pytest.mark.parametrize("angle", [30.0, 150.0, 95.0])
def test_angle_convention_ccw_from_x(angle):
    # x = column, y = row; rows/cols 1..63 are symmetric about the centre pixel 32
    img = M.draw_model(4.0, 0.3, angle, math.log10(5.0), boxsize=64)[1:, 1:]
    y, x = np.indices(img.shape)
    img = img * (np.hypot(x - 31, y - 31) < 30)  # circular aperture: a square one biases to 45 deg
    xc, yc, mxx, myy, mxy = _moments(img)
    assert abs(xc - 31) < 1e-6 and abs(yc - 31) < 1e-6
    theta = 0.5 * math.degrees(math.atan2(2 * mxy, mxx - myy)) % 180
    assert abs(theta - angle) < 0.5
    assert myy < mxx if angle < 45 else True  # at 30 deg the light spreads along x more than y


def test_slab_uses_exact_mirrors():
    g = M.ModelGrid(naxrat=2, axrat0=0.3, daxrat=0.7, nposang=5, dposang=36.0,
                    nlogh=2, logh0=0.0, dlogh=0.5, boxsize=24)
    for iq in range(g.naxrat):
        slab = M.build_slab(g, 0, iq)
        assert slab.shape == (5, 2, 24, 24) and slab.dtype == np.float32
        for ia in range(g.nposang):
            for ir in range(g.nlogh):
                ref = M.draw_model(4.0, g.axrat[iq], g.posang[ia], g.logr[ir], boxsize=24)
                assert np.allclose(slab[ia, ir], ref, rtol=1e-5, atol=1e-9)


def test_slab_of_angles_beyond_180_draws_every_angle():
    """The mirror of 240 deg is 120 deg, itself a mirror (of 60 deg): KeyError: 2."""
    g = M.ModelGrid(naxrat=1, axrat0=0.5, nposang=5, dposang=60.0, nlogh=1, logh0=0.3, boxsize=16)
    slab = M.build_slab(g, 0, 0)
    for ia, angle in enumerate(g.posang):
        ref = M.draw_model(4.0, 0.5, angle % 180.0, 0.3, boxsize=16)
        assert np.allclose(slab[ia, 0], ref, rtol=1e-5, atol=1e-9), angle


def test_cube_slabs_go_through_the_mapper(mapper):
    calls = []

    def recording(fn, items, desc, keys=None):
        calls.append((desc, list(keys), [(it.i_index, it.i_q, it.supersample) for it in items]))
        return mapper(fn, items, desc=desc, keys=keys)

    cube = M.build_cube(SMALL, recording, supersample=2)
    assert calls == [("model slabs", ["n0_q0", "n0_q1"], [(0, 0, 2), (0, 1, 2)])]
    assert cube.shape == (1, 2, 3, 2, 16, 16) and cube.dtype == np.float32
    for iq in range(SMALL.naxrat):
        assert np.array_equal(cube[0, iq], M.build_slab(SMALL, 0, iq, supersample=2))

    def losing(fn, items, desc, keys=None):  # a failed item is left out of the mapper's results
        return mapper(fn, items, desc=desc, keys=keys)[1:]

    with pytest.raises(AstroError, match="some slabs failed") as err:
        M.build_cube(SMALL, losing)
    assert err.value.exit_code == 1


def test_cube_round_trip_in_dre_layout(tmp_path, mapper):
    from astropy.io import fits

    cube = M.build_cube(SMALL, mapper)
    path = tmp_path / "cube.fits"
    M.write_cube(path, cube, SMALL, history=["test"])
    raw = fits.getdata(path)
    hdr = fits.getheader(path)
    assert raw.shape == (2, 3 * 16, 2 * 16)  # (NAXRAT, NPOSANG*BOX, NLOGH*BOX)
    assert raw.dtype.str == ">f4"
    # crunch.py: reshape((NAXRAT, NPOSANG, BOX, NLOGH, BOX)).swapaxes(2, 3)
    dre_view = raw.reshape(2, 3, 16, 2, 16).swapaxes(2, 3)
    assert np.array_equal(dre_view, cube[0])
    assert raw[1, 2 * 16 + 5, 1 * 16 + 7] == cube[0, 1, 2, 1, 5, 7]
    for key, value in SMALL.header_cards().items():
        assert hdr[key] == pytest.approx(value)
    back, grid = M.read_cube(path)
    assert grid == SMALL
    assert np.array_equal(back, cube)
    assert not list(tmp_path.glob(".*partial*"))  # atomic write left no temporary file


def test_multi_index_cube_has_leading_axis(tmp_path, mapper):
    g = M.ModelGrid(index0=1.0, dindex=3.0, nindex=2, naxrat=1, axrat0=1.0, nposang=1,
                    nlogh=2, logh0=0.0, dlogh=0.5, boxsize=8)
    cube = M.build_cube(g, mapper)
    path = tmp_path / "multi.fits"
    M.write_cube(path, cube, g)
    from astropy.io import fits

    assert fits.getdata(path).shape == (2, 1, 8, 16)
    back, grid = M.read_cube(path)
    assert np.allclose(grid.index, [1.0, 4.0])
    assert np.array_equal(back, cube)


def test_dre_cube_without_nindex_is_de_vaucouleurs(tmp_path):
    from astropy.io import fits

    data = np.arange(2 * 3 * 4 * 2 * 4, dtype=">f4").reshape(2, 3 * 4, 2 * 4)
    hdu = fits.PrimaryHDU(data)
    for k, v in dict(BOXSIZE=4, NAXRAT=2, DAXRAT=0.5, AXRAT0=0.5, NPOSANG=3, DPOSANG=15.0,
                     POSANG0=0.0, NLOGH=2, DLOGH=0.115, LOGH0=-0.6).items():
        hdu.header[k] = v
    path = tmp_path / "modelbulge.fits"
    hdu.writeto(path)
    cube, grid = M.read_cube(path)
    assert grid.nindex == 1 and grid.index[0] == 4.0
    assert cube.shape == (1, 2, 3, 2, 4, 4)
    assert np.allclose(grid.posang, [0, 15, 30])
    # stamp (q=1, angle=2, logr=1) is the mosaic block rows 8..11, cols 4..7
    assert np.array_equal(cube[0, 1, 2, 1], data[1, 8:12, 4:8])


@pytest.mark.parametrize("key", ["DLOGH", "NPOSANG", "BOXSIZE", "AXRAT0"])
def test_missing_header_key_is_named(tmp_path, key, mapper):
    from astropy.io import fits

    path = tmp_path / "cube.fits"
    M.write_cube(path, M.build_cube(SMALL, mapper), SMALL)
    with fits.open(path, mode="update") as hdul:
        del hdul[0].header[key]
    with pytest.raises(InputError) as err:
        M.read_cube(path)
    assert key in str(err.value) and str(path) in str(err.value)
    assert err.value.exit_code == 2


def test_bad_header_value_and_shape(tmp_path, mapper):
    from astropy.io import fits

    path = tmp_path / "cube.fits"
    M.write_cube(path, M.build_cube(SMALL, mapper), SMALL)
    with fits.open(path, mode="update") as hdul:
        hdul[0].header["NLOGH"] = "many"
    with pytest.raises(InputError, match="NLOGH"):
        M.read_cube(path)
    with fits.open(path, mode="update") as hdul:
        hdul[0].header["NLOGH"] = 3  # data hold 2 radii
    with pytest.raises(InputError, match="shape"):
        M.read_cube(path)
    bad = tmp_path / "junk.fits"
    bad.write_bytes(b"not a fits file at all")
    with pytest.raises(InputError, match="junk.fits"):
        M.read_cube(bad)
