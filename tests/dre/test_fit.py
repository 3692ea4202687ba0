"""Batched model-grid fit: convolution, least squares, DRE statistic, parameters, backends."""

import numpy as np
import pytest

from astrotool.backends import get_backend
from astrotool.errors import AstroError
from astrotool_dre.chi2 import dre_fit_reference, fit_objects
from astrotool_dre.convolve import ModelBank, convolve_cube
from astrotool_dre.estimate import FLAG_BITS, best_parameters
from astrotool_dre import models as M

BOX = 40
GRID = M.ModelGrid(naxrat=4, axrat0=0.25, daxrat=0.25, nposang=6, dposang=30.0,
                   nlogh=6, logh0=0.1, dlogh=0.2, boxsize=BOX)


def _gauss_psf(size=11, sigma=1.3, dx=0.0):
    y, x = np.mgrid[: size, : size] - size // 2
    return np.exp(-((x - dx) ** 2 + y ** 2) / (2 * sigma ** 2))


@pytest.fixture(scope="module")
def cube(mapper):
    return M.build_cube(GRID, mapper)


@pytest.fixture(scope="module")
def bank(cube):
    be = get_backend("numpy", "cpu")
    return ModelBank(convolve_cube(cube, _gauss_psf(), be), GRID, be)


def _segment(model, rms, grow=3):
    from scipy import ndimage

    seg = model > 1.5 * rms
    lab, _ = ndimage.label(seg)
    seg = lab == lab[BOX // 2, BOX // 2]
    return ndimage.binary_dilation(seg, iterations=grow)


def _mock(bank, ks, fluxes, rms=1.0, gain=None, seed=0):
    rng = np.random.default_rng(seed)
    models = bank.stamps[ks].astype(np.float64) * np.asarray(fluxes)[:, None, None]
    var = rms ** 2 + (np.maximum(models, 0) / gain if gain else 0)
    data = (models + rng.standard_normal(models.shape) * np.sqrt(var)).astype(np.float32)
    masks = np.stack([_segment(m, rms) for m in models])
    return data, masks


# --------------------------------------------------------------------------- backends
def test_backend_selection_and_errors():
    be = get_backend("numpy", "auto")
    assert (be.name, be.device) == ("numpy", "cpu")
    with pytest.raises(AstroError) as err:
        get_backend("numpy", "cuda")
    assert err.value.exit_code == 2 and "cpu" in str(err.value).lower()
    with pytest.raises(AstroError, match="unknown"):
        get_backend("jax", "cpu")
    with pytest.raises(AstroError, match="cupy"):
        get_backend("cupy", "cpu")
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        with pytest.raises(AstroError, match="cuda"):
            get_backend("torch", "cuda")
        assert get_backend("torch", "auto").device == "cpu"


# --------------------------------------------------------------------------- convolution
@pytest.mark.parametrize("size", [7, 8])
def test_convolution_keeps_centre_and_flux(size):
    be = get_backend("numpy", "cpu")
    delta = np.zeros((2, 16, 16), np.float32)
    delta[:, 8, 8] = 1.0
    psf = np.random.default_rng(1).random((size, size))
    psf[0, 0] = -0.5  # negatives are clipped
    out = convolve_cube(delta, psf, be)
    ref = np.clip(psf, 0, None) / np.clip(psf, 0, None).sum()
    c = size // 2  # the PSF centre pixel lands on the model centre
    assert np.allclose(out[0, 8 - c: 8 - c + size, 8 - c: 8 - c + size], ref, atol=1e-6)
    assert out[0].sum() == pytest.approx(1.0, abs=1e-5)
    # a model off-centre by +2 columns is shifted by the PSF the same way
    shifted = np.zeros((1, 16, 16), np.float32)
    shifted[0, 8, 10] = 1.0
    assert np.allclose(convolve_cube(shifted, psf, be)[0], np.roll(out[0], 2, axis=1), atol=1e-6)


@pytest.mark.parametrize("size", [5, 6, 31, 44])
def test_convolution_equals_direct_sum_for_any_psf_size(size):
    from scipy.signal import convolve2d

    rng = np.random.default_rng(size)
    models = rng.random((3, 12, 12))
    psf = rng.random((size, size + 1))
    out = convolve_cube(models, psf)
    p = psf / psf.sum()
    c = np.array(p.shape) // 2
    for i in range(3):
        full = convolve2d(models[i], p, mode="full")  # full[y] = sum_j m[y - j] p[j]
        assert np.allclose(out[i], full[c[0]: c[0] + 12, c[1]: c[1] + 12], atol=1e-6)


def test_convolution_matches_scipy_for_odd_psf(cube):
    from scipy.signal import fftconvolve

    psf = _gauss_psf(9, 1.5, dx=0.7)
    out = convolve_cube(cube[0, 1, 2], psf)
    ref = fftconvolve(cube[0, 1, 2, 3].astype(float), psf / psf.sum(), mode="same")
    assert np.allclose(out[3], ref, atol=1e-6 * ref.max())


# --------------------------------------------------------------------------- least squares
def test_few_objects_of_a_crop_size_go_to_the_next_instead_of_making_its_matrices(bank):
    from astrotool_dre.convolve import bank_sizes, crop_sizes

    rng = np.random.default_rng(5)
    ks = rng.integers(0, GRID.nmodels, 12)
    data, masks = _mock(bank, ks, rng.uniform(300, 3000, 12), seed=5)
    sizes = crop_sizes(masks, GRID.center, bank_sizes(BOX))
    assert len(set(sizes.tolist())) >= 2
    fresh = ModelBank(bank.stamps, GRID, bank.backend)
    res = fit_objects(fresh, data, 1.0, masks, batch_size=2)  # full batches at every size
    assert [s for s in bank_sizes(BOX) if fresh.cached(s)] == [sizes.max()]  # one crop's matrices made
    ready = ModelBank(bank.stamps, GRID, bank.backend)
    for s in set(sizes.tolist()):
        ready.matrices(int(s))  # ready matrices are used: each object on its own crop
    each = fit_objects(ready, data, 1.0, masks, batch_size=2)
    assert np.allclose(res.chi2, each.chi2, rtol=1e-5, atol=1e-5 * np.nanmax(each.swd2))
    assert np.allclose(res.flux, each.flux, rtol=1e-5)


def test_batched_least_squares_equals_linalg(bank):
    rng = np.random.default_rng(3)
    n = 9
    ks = rng.integers(0, GRID.nmodels, n)
    data, masks = _mock(bank, ks, rng.uniform(200, 2000, n), seed=3)
    masks[2] = False  # an object with nothing to fit
    rms = rng.uniform(0.8, 1.2, (n, BOX, BOX)).astype(np.float32)
    res = fit_objects(bank, data, rms, masks)
    full = fit_objects(bank, data, rms, masks, crop=False)
    assert np.isnan(res.chi2[2]).all() and res.npix[2] == 0
    ok = res.npix > 0
    # the crop changes only the float32 summation order: a few 1e-6 of sum(w d^2)
    tol = 1e-5 * res.swd2[ok, None]
    assert np.all(np.abs(res.chi2[ok] - full.chi2[ok]) <= tol)
    assert np.allclose(res.flux[ok], full.flux[ok], rtol=1e-5)
    mods = bank.stamps.reshape(GRID.nmodels, -1).astype(np.float64)
    exact = fit_objects(ModelBank(bank.stamps, GRID, dtype="float64"), data, rms, masks)
    for i in (0, 5, 8):
        w = masks[i].ravel() / rms[i].ravel().astype(np.float64) ** 2
        d = data[i].ravel().astype(np.float64)
        sw = np.sqrt(w)
        for k in rng.choice(GRID.nmodels, 12, replace=False):
            a, resid, *_ = np.linalg.lstsq((sw * mods[k])[:, None], sw * d, rcond=None)
            assert res.flux[i, k] == pytest.approx(a[0], rel=1e-5)
            # float32 products: error a few 1e-6 of sum(w d^2); float64 bank: exact
            assert res.chi2[i, k] == pytest.approx(resid[0], abs=1e-5 * (w * d * d).sum())
            assert exact.chi2[i, k] == pytest.approx(resid[0], rel=1e-6)
        assert res.npix[i] == masks[i].sum()
        assert res.swd2[i] == pytest.approx((w * d * d).sum(), rel=1e-7)  # float32 weights


def test_chi2_never_negative_for_a_perfect_fit(bank):
    data = (bank.stamps[[5, 77]] * 1e5).astype(np.float32)
    masks = np.ones_like(data, dtype=bool)
    res = fit_objects(bank, data, 0.01, masks)
    assert (res.chi2 >= 0).all()
    assert res.chi2[0, 5] < 1e-6 * res.swd2[0]
    assert res.flux[1, 77] == pytest.approx(1e5, rel=1e-5)


def test_injected_model_is_recovered_with_its_flux(bank):
    rng = np.random.default_rng(11)
    ks = np.array([np.ravel_multi_index(t, GRID.shape) for t in
                   [(0, 1, 2, 3), (0, 2, 4, 2), (0, 0, 1, 4), (0, 3, 0, 3)]])
    fluxes = np.array([6000.0, 8000.0, 10000.0, 5000.0])
    data, masks = _mock(bank, ks, fluxes, gain=2.0, seed=int(rng.integers(1 << 30)))
    res = fit_objects(bank, data, 1.0, masks, gain=2.0, reweight=1)
    assert res.passes == 2
    out = best_parameters(res.chi2, GRID, res.flux, res.npix, swd2=res.swd2, zeropoint=25.0)
    got = np.ravel_multi_index((out["N_IDX"], out["E_IDX"], out["T_IDX"], out["R_IDX"]), GRID.shape)
    assert np.array_equal(got, ks)
    assert np.allclose(out["FLUX"], fluxes, rtol=0.03)
    assert np.allclose(out["MAG"], 25 - 2.5 * np.log10(out["FLUX"]))
    assert np.all((out["CHI2_NU"] > 0.7) & (out["CHI2_NU"] < 1.4))
    # the 3rd and 4th sit on the q = 0.25 and q = 1 edges of the grid
    assert out["FIT_FLAGS"].tolist() == [0, 0, FLAG_BITS["AX_RATIO_EDGE_LO"], FLAG_BITS["AX_RATIO_EDGE_HI"]]
    assert out["AX_RATIO_EDGE_HI"].tolist() == [False, False, False, True]
    assert not out["LOGR_EDGE_LO"].any() and not out["LOGR_EDGE_HI"].any()


def test_convolution_of_a_centred_crop_equals_the_whole_stamp_there(cube):
    psf = _gauss_psf(13, 1.6, dx=0.7)
    whole = convolve_cube(cube[0, :2, :3], psf)
    for crop in (16, 24):
        part = convolve_cube(cube[0, :2, :3], psf, crop=crop)
        lo = BOX // 2 - crop // 2
        assert part.shape == whole.shape[:-2] + (crop, crop)
        assert np.allclose(part, whole[..., lo:lo + crop, lo:lo + crop], atol=1e-7)


def test_one_spectrum_serves_many_psfs_and_a_cropped_bank_fits_like_the_whole(cube, bank):
    from astrotool_dre.convolve import CubeSpectrum

    spec = CubeSpectrum(cube, (11, 11), crop=24)
    for sigma in (1.0, 1.6):
        assert np.allclose(spec.convolve(_gauss_psf(11, sigma)), convolve_cube(cube, _gauss_psf(11, sigma), crop=24),
                           atol=1e-7)
    with pytest.raises(ValueError, match="made for"):
        spec.convolve(_gauss_psf(13))
    small = ModelBank(spec.convolve(_gauss_psf()), GRID)
    assert small.sizes() == (16, 24)
    data, masks = _mock(bank, [3, 40], [2e4, 5e3], seed=4)
    rms = np.ones_like(data)
    masks[:, :BOX // 2 - 12, :] = False  # inside the 24 px crop
    masks[:, BOX // 2 + 12:, :] = False
    masks[:, :, :BOX // 2 - 12] = False
    masks[:, :, BOX // 2 + 12:] = False
    a, b = fit_objects(bank, data, rms, masks), fit_objects(small, data, rms, masks)
    # float32 sums in another order: a few 1e-6 of sum(w d^2)
    assert np.allclose(a.chi2, b.chi2, atol=1e-5 * a.swd2.max()) and np.allclose(a.flux, b.flux, rtol=1e-4)
    masks[0, 0, 0] = True  # needs the whole stamp
    with pytest.raises(ValueError, match="bank holds 24 px"):
        fit_objects(small, data, rms, masks)


def test_local_sky_fits_a_constant_under_the_model(bank):
    k = np.ravel_multi_index((0, 2, 1, 2), GRID.shape)
    data = (bank.stamps[[k]] * 5000.0 + 3.0).astype(np.float32)  # a sky of 3 the background missed
    masks = np.ones_like(data, dtype=bool)
    plain = fit_objects(bank, data, 1.0, masks)
    sky = fit_objects(bank, data, 1.0, masks, local_sky=True)
    assert sky.chi2[0, k] < 1e-3 * plain.chi2[0, k] and sky.chi2[0, k] < 1.0
    assert sky.flux[0, k] == pytest.approx(5000.0, rel=1e-4)
    assert abs(plain.flux[0, k] / 5000.0 - 1) > 0.05  # without it the sky leaks into the flux
    assert np.argmin(sky.chi2[0]) == k


def test_local_sky_of_the_best_model_is_kept_with_its_error(bank):
    k = np.ravel_multi_index((0, 2, 1, 2), GRID.shape)
    data, masks = _mock(bank, [k, k], [5000.0, 5000.0], rms=1.0, seed=3)
    data[0] += 3.0
    data[1] -= 2.0
    res = fit_objects(bank, data, 1.0, masks, local_sky=True)
    assert res.sky_err[0] > 0 and np.all(np.abs(res.sky - [3.0, -2.0]) < 5 * res.sky_err)
    assert np.all(res.sky_err < 1.0)
    plain = fit_objects(bank, data, 1.0, masks)
    assert plain.sky is None and plain.sky_err is None


def test_gain_term_reweighting_changes_weights(bank):
    ks = np.array([np.ravel_multi_index((0, 2, 1, 2), GRID.shape)])
    data, masks = _mock(bank, ks, [20000.0], gain=1.0, seed=5)
    plain = fit_objects(bank, data, 1.0, masks)
    gained = fit_objects(bank, data, 1.0, masks, gain=1.0)
    # with the source variance, chi2/dof comes back to ~1; without it it is far above
    dof = masks.sum() - 4
    assert plain.chi2[0, ks[0]] / dof > 3
    assert 0.7 < gained.chi2[0, ks[0]] / dof < 1.4


# --------------------------------------------------------------------------- DRE statistic
def test_dre_statistic_batched_equals_reference(bank):
    rng = np.random.default_rng(7)
    ks = rng.integers(0, GRID.nmodels, 5)
    data, masks = _mock(bank, ks, rng.uniform(500, 3000, 5), seed=7)
    rms = np.full(data.shape, 1.0, np.float32)
    data[1, 20, 20] = np.nan  # DRE's nansum / nanmean skip it
    res = fit_objects(bank, data, rms, masks, statistic="dre")
    cube = bank.stamps.reshape(GRID.shape + (BOX, BOX))
    for i in range(5):
        chi, scale = dre_fit_reference(cube, data[i], masks[i], rms[i])
        assert np.allclose(res.chi2[i], chi.ravel(), rtol=2e-5)
        assert np.allclose(res.flux[i], scale.ravel(), rtol=2e-5)
    out = best_parameters(res.chi2, GRID, res.flux, res.npix, statistic="dre")
    assert np.allclose(out["CHI2"], np.nanmin(res.chi2, axis=1))


# --------------------------------------------------------------------------- parameters
def test_uncertainties_positive_and_finite_for_clear_minimum(bank):
    ks = np.array([np.ravel_multi_index((0, 1, 0, 3), GRID.shape),   # angle 0: periodic wrap
                   np.ravel_multi_index((0, 2, 3, 2), GRID.shape)])
    data, masks = _mock(bank, ks, [3000.0, 3000.0], seed=9)
    res = fit_objects(bank, data, 1.0, masks)
    out = best_parameters(res.chi2, GRID, res.flux, res.npix, swd2=res.swd2)
    for col in ("AX_RATIO_ERR", "ANGLE_ERR", "LOGR_ERR", "FLUX_ERR"):
        assert np.all(np.isfinite(out[col]) & (out[col] > 0)), col
    assert np.all(out["LOGR_ERR"] < GRID.dlogh) and np.all(out["ANGLE_ERR"] < 30)
    assert np.all(out["FLUX_ERR"] < 0.1 * out["FLUX"])
    assert np.isnan(out["INDEX_ERR"]).all()  # a single Sérsic index is not fitted


def test_error_grows_with_noise(bank):
    k = np.ravel_multi_index((0, 2, 2, 3), GRID.shape)
    errs = []
    for flux in (20000.0, 1500.0):
        data, masks = _mock(bank, np.array([k]), [flux], seed=4)
        res = fit_objects(bank, data, 1.0, masks)
        errs.append(best_parameters(res.chi2, GRID, res.flux, res.npix, swd2=res.swd2)["LOGR_ERR"][0])
    assert errs[1] > errs[0]


def test_edge_flags_when_truth_is_beyond_the_grid(bank):
    psf = _gauss_psf()
    big = M.draw_model(4.0, 0.5, 60.0, GRID.logr[-1] + 0.4, boxsize=BOX)    # larger than any model
    flat = M.draw_model(4.0, 0.06, 60.0, GRID.logr[2], boxsize=BOX)         # flatter than q = 0.25
    mid = M.draw_model(4.0, 0.5, 60.0, GRID.logr[2], boxsize=BOX)
    truth = np.stack([big, flat, mid])
    conv = convolve_cube(truth, psf) * 8000.0
    rng = np.random.default_rng(2)
    data = (conv + rng.standard_normal(conv.shape)).astype(np.float32)
    masks = np.stack([_segment(c, 1.0) for c in conv])
    res = fit_objects(bank, data, 1.0, masks)
    out = best_parameters(res.chi2, GRID, res.flux, res.npix, swd2=res.swd2)
    assert out["LOGR_EDGE_HI"].tolist() == [True, False, False]
    assert out["AX_RATIO_EDGE_LO"][1] and not out["AX_RATIO_EDGE_LO"][2]
    assert out["FIT_FLAGS"][0] & FLAG_BITS["LOGR_EDGE_HI"]
    assert out["FIT_FLAGS"][2] == 0


def test_no_fit_rows_are_flagged():
    chi = np.full((2, GRID.nmodels), np.nan, np.float32)
    chi[1] = np.linspace(10, 20, GRID.nmodels)
    out = best_parameters(chi, GRID, np.ones_like(chi), np.array([0, 100]))
    assert out["FIT_FLAGS"][0] & FLAG_BITS["NO_FIT"] and out["R_IDX"][0] == -1
    assert np.isnan(out["LOGR"][0]) and out["LOGR"][1] == GRID.logr[0]


# --------------------------------------------------------------------------- numpy vs torch
def test_numpy_and_torch_backends_agree(cube):
    pytest.importorskip("torch")
    psf = _gauss_psf(10, 1.2)  # even-sized PSF
    nbe, tbe = get_backend("numpy", "cpu"), get_backend("torch", "cpu")
    nbank = ModelBank(convolve_cube(cube, psf, nbe), GRID, nbe)
    tconv = convolve_cube(cube, psf, tbe)
    assert np.allclose(tbe.to_numpy(tconv), nbank.stamps.reshape(tconv.shape), atol=2e-7)
    tbank = ModelBank(tconv, GRID, tbe)
    rng = np.random.default_rng(21)
    ks = rng.integers(0, GRID.nmodels, 6)
    data, masks = _mock(nbank, ks, rng.uniform(1000, 5000, 6), gain=3.0, seed=21)
    for kw in (dict(gain=3.0), dict(statistic="dre")):
        a = fit_objects(nbank, data, 1.0, masks, **kw)
        b = fit_objects(tbank, data, 1.0, masks, **kw)
        assert np.allclose(a.chi2, b.chi2, rtol=1e-4, atol=1e-3)
        assert np.array_equal(np.argmin(a.chi2, 1), np.argmin(b.chi2, 1))
    pa = best_parameters(a.chi2, GRID, a.flux, a.npix)
    pb = best_parameters(tbe.asarray(b.chi2), GRID, tbe.asarray(b.flux), b.npix, backend=tbe)
    for col in ("LOGR", "AX_RATIO", "ANGLE", "FLUX", "LOGR_ERR"):
        assert np.allclose(pa[col], pb[col], rtol=1e-4), col


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_a_new_core_reaches_the_stamps_and_every_cached_crop_matrix(cube, backend):
    if backend == "torch":
        pytest.importorskip("torch")
    be = get_backend(backend, "cpu")
    bank = ModelBank(convolve_cube(cube, _gauss_psf(11, 2.0), be), GRID, be)
    for size in (16, 32, BOX):
        bank.matrices(size)
    want = be.to_numpy(bank.stamps).copy()
    core = np.asarray(convolve_cube(cube, _gauss_psf(11, 0.8), crop=24))
    bank.set_core(be.asarray(core))
    want[:, BOX // 2 - 12: BOX // 2 + 12, BOX // 2 - 12: BOX // 2 + 12] = core.reshape(-1, 24, 24)
    fresh = ModelBank(want, GRID, be)
    assert not bank.cached(16)   # inside the core: made again when asked
    for size in (16, 32, BOX):
        for got, ref in zip(bank.matrices(size), fresh.matrices(size)):
            np.testing.assert_array_equal(be.to_numpy(got), be.to_numpy(ref))
    with pytest.raises(ValueError, match="a 48 px core"):
        bank.set_core(np.zeros((GRID.nmodels, 48, 48)))


def test_a_large_object_is_fit_with_its_own_psf_in_the_core_when_the_psf_varies(cube):
    # a wide object seen through a narrow PSF, another object's group with a wide one: the mean PSF alone
    # (what wide objects were fit with) misfits it; its group's PSF in the core recovers model and flux
    from astrotool_dre.config import FitConfig
    from astrotool_dre.fit_stage import fit_groups, mean_psf

    be = get_backend("numpy", "cpu")
    narrow, wide = _gauss_psf(11, 0.7), _gauss_psf(11, 2.2)
    narrow, wide = narrow / narrow.sum(), wide / wide.sum()
    k, flux = int(np.ravel_multi_index((0, 1, 2, 2), GRID.shape)), 2e4
    exact = np.asarray(convolve_cube(cube, narrow, be)).reshape(-1, BOX, BOX)
    other = np.asarray(convolve_cube(cube, wide, be)).reshape(-1, BOX, BOX)[k] * flux
    data = np.stack([exact[k] * flux, other]).astype(np.float32)
    rms = np.ones_like(data)
    masks = np.ones(data.shape, bool)
    masks[1] = False
    masks[1, BOX // 2 - 8: BOX // 2 + 8, BOX // 2 - 8: BOX // 2 + 8] = True   # a 16 px crop
    groups = [(np.array([0]), narrow), (np.array([1]), wide)]
    cfg = FitConfig(psf_has_pixel=False, core_psf=True)
    res, models = fit_groups(groups, cube, data, rms, masks, GRID, cfg, be, None, large_crop=24)
    assert res.crop.tolist() == [BOX, 16]
    best = np.nanargmin(res.chi2, axis=1)
    assert best.tolist() == [k, k]
    assert res.flux[0, k] == pytest.approx(flux, rel=2e-3) and res.flux[1, k] == pytest.approx(flux, rel=1e-4)
    assert res.chi2[0, k] < 0.01 * data[0].size   # the outer part's mean PSF costs next to nothing
    # the core is the group's PSF, the rest the mean PSF's (convolved once for all large objects)
    mean = np.asarray(convolve_cube(cube, mean_psf(groups), be)).reshape(-1, BOX, BOX)[k]
    core = slice(BOX // 2 - 12, BOX // 2 + 12)
    want = mean.copy()
    want[core, core] = exact[k][core, core]
    np.testing.assert_allclose(models[0], want * res.flux[0, k], rtol=1e-4, atol=1e-3)
    alone, _ = fit_groups([(np.array([0]), mean_psf(groups))], cube, data, rms, masks, GRID, cfg, be, None)
    assert alone.chi2[0].min() > 1e3 * res.chi2[0, k]


def test_large_objects_of_several_groups_and_crop_sizes_each_get_their_own_core(cube):
    # three PSF groups, two of them with objects on crops wider than the core, at two sizes: every object's
    # statistic is the one of a bank built by hand (its group's PSF in the core, the mean PSF outside)
    from astrotool_dre.config import FitConfig
    from astrotool_dre.convolve import bank_sizes, crop_sizes
    from astrotool_dre.fit_stage import fit_groups, mean_psf

    be = get_backend("numpy", "cpu")
    psfs = [p / p.sum() for p in (_gauss_psf(11, 0.8), _gauss_psf(11, 1.5), _gauss_psf(11, 2.2))]
    conv = [np.asarray(convolve_cube(cube, p, be)).reshape(-1, BOX, BOX) for p in psfs]
    rng = np.random.default_rng(3)
    half, grp = [20, 16, 12, 8, 20, 14, 6, 10, 8], [0, 0, 0, 1, 1, 1, 2, 2, 2]
    data = np.stack([conv[j][rng.integers(GRID.nmodels)] * 1e4 for j in grp]) + rng.normal(size=(9, BOX, BOX))
    data = data.astype(np.float32)
    masks = np.zeros(data.shape, bool)
    for i, h in enumerate(half):
        masks[i, BOX // 2 - h: BOX // 2 + h, BOX // 2 - h: BOX // 2 + h] = True
    sizes = crop_sizes(masks, GRID.center, bank_sizes(BOX))
    assert sorted(set(sizes[sizes > 24].tolist())) == [32, 40] and sorted(set(np.array(grp)[sizes > 24])) == [0, 1]
    groups = [(np.flatnonzero(np.array(grp) == j), psfs[j]) for j in range(3)]
    rms = np.ones_like(data)
    res, _ = fit_groups(groups, cube, data, rms, masks, GRID, FitConfig(psf_has_pixel=False, core_psf=True), be,
                        None, large_crop=24)
    mean = np.asarray(convolve_cube(cube, mean_psf(groups), be)).reshape(-1, BOX, BOX)
    inner = slice(BOX // 2 - 12, BOX // 2 + 12)
    for i, j in enumerate(grp):
        stamps = conv[j]
        if sizes[i] > 24:
            stamps = mean.copy()
            stamps[:, inner, inner] = conv[j][:, inner, inner]
        want = fit_objects(ModelBank(stamps, GRID, be), data[i:i + 1], rms[i:i + 1], masks[i:i + 1])
        # float32 sums in another order: a few 1e-6 of sum(w d^2)
        np.testing.assert_allclose(res.chi2[i], want.chi2[0], rtol=1e-4, atol=1e-5 * res.swd2[i])
        np.testing.assert_allclose(res.flux[i], want.flux[0], rtol=1e-4)


def test_sub_grid_estimates_between_grid_points(mapper):
    # a grid with the default's steps (0.1 in q, ~14 deg, 0.115 dex) around a truth between its points:
    # the sub-grid estimate beats the grid minimum on every axis, and its errors cover the truth
    grid = M.ModelGrid(naxrat=5, axrat0=0.4, daxrat=0.1, nposang=5, posang0=45.0, dposang=13.85,
                       nlogh=5, logh0=0.45, dlogh=0.115, boxsize=BOX)
    truth_logr, truth_q, truth_angle = 0.45 + 2.45 * 0.115, 0.645, 45.0 + 1.6 * 13.85
    psf = _gauss_psf()
    bank = ModelBank(convolve_cube(M.build_cube(grid, mapper), psf), grid)
    img = M.draw_model(4.0, truth_q, truth_angle, truth_logr, boxsize=BOX)
    conv = convolve_cube(img[None], psf) * 20000.0
    data = (conv + np.random.default_rng(8).standard_normal(conv.shape)).astype(np.float32)
    masks = _segment(conv[0], 1.0)[None]
    res = fit_objects(bank, data, 1.0, masks)
    out = best_parameters(res.chi2, grid, res.flux, res.npix, swd2=res.swd2)
    for name, truth in (("LOGR", truth_logr), ("AX_RATIO", truth_q), ("ANGLE", truth_angle)):
        assert abs(out[name][0] - truth) < 0.5 * abs(out[f"{name}_GRID"][0] - truth), name
        assert abs(out[name][0] - truth) < 3 * out[f"{name}_ERR"][0], name
    assert abs(out["FLUX"][0] / 20000.0 - 1) < 0.02
    assert abs(out["FLUX"][0] / 20000.0 - 1) < abs(out["FLUX_GRID"][0] / 20000.0 - 1)
    assert out["FIT_FLAGS"][0] == 0
    grid_only = best_parameters(res.chi2, grid, res.flux, res.npix, swd2=res.swd2, subgrid=False)
    assert grid_only["LOGR"][0] == out["LOGR_GRID"][0] and grid_only["FIT_FLAGS"][0] == 0


def test_index_is_chosen_by_the_refined_profile_not_the_grid_minimum():
    # chi2 exactly quadratic in grid steps with the index and radius correlated (as for Sersic
    # profiles), truth on an index grid point and between two radii: the grid minimum
    # lands one index too low (a better-placed radius wins), the refined minima of the slices do not
    grid = M.ModelGrid(nindex=5, index0=1.0, dindex=0.5, naxrat=5, axrat0=0.3, daxrat=0.1, nposang=6,
                       dposang=30.0, nlogh=7, logh0=0.1, dlogh=0.115, boxsize=BOX)
    u = np.stack(np.meshgrid(*(np.arange(n, dtype=float) for n in grid.shape), indexing="ij"), -1)
    dn, dq, da, dr = (u[..., 0] - 2.0, u[..., 1] - 2.3, (u[..., 2] - 2.0 + 3.0) % 6.0 - 3.0, u[..., 3] - 3.4)
    chi = 1000.0 * (dn - 0.8 * dr) ** 2 + 20.0 * dr ** 2 + 50.0 * dq ** 2 + 50.0 * da ** 2
    flux = 500.0 * np.exp(0.3 * dn + 0.2 * dr)
    out = best_parameters(chi.reshape(1, -1), grid, flux.reshape(1, -1), np.array([10 ** 6]))
    assert out["INDEX_GRID"][0] == 1.5 and out["INDEX"][0] == 2.0
    assert out["LOGR"][0] == pytest.approx(0.1 + 3.4 * 0.115, abs=1e-9)
    assert out["AX_RATIO"][0] == pytest.approx(0.3 + 2.3 * 0.1, abs=1e-9)
    assert out["FLUX"][0] == pytest.approx(500.0, rel=1e-9)
    assert out["FIT_FLAGS"][0] == 0


def test_recentre_shifts_data_rms_and_masks_together():
    from astrotool_dre.fit_stage import recentre

    obj = np.zeros((9, 9), np.float32)
    obj[4, 4] = 10.0
    rms = np.full((9, 9), 2.0, np.float32)
    mask = obj > 0
    nbr = np.zeros((9, 9), bool)
    nbr[0, 0] = True
    o, r, m, n = recentre(obj, rms, mask, nbr, dx=1.0, dy=-2.0)  # one pixel right, two down
    assert o[2, 5] == pytest.approx(10.0, abs=1e-4) and abs(o.sum() - 10.0) < 1e-3
    assert np.argwhere(m).tolist() == [[2, 5]]
    assert n[:, 0].all() and n[-2:, :].all()  # pixels shifted in from outside count as neighbours
    assert not n[0, 1] and np.allclose(r, 2.0)
    same = recentre(obj, rms, mask, nbr, dx=5e-4, dy=0.0)  # below 1e-3 px: nothing moves
    assert all(a is b for a, b in zip(same, (obj, rms, mask, nbr)))


def test_chi2_nu_of_a_right_model_is_one_wherever_the_object_sits_in_its_pixel(bank):
    """The recentring's cubic spline smooths the noise (variance 0.57 at half a pixel on both axes): CHI2_NU of a
    right model was 0.6 to 1 by the object's sub-pixel position, and errors were inflated less than they should."""
    from scipy import ndimage

    from astrotool_dre.fit_stage import recentre, shift_noise_variance

    rng = np.random.default_rng(23)
    ks = rng.choice(GRID.nmodels, 10, replace=False)
    nu = {}
    for dx, dy in ((0.0, 0.0), (0.5, 0.5), (0.3, -0.2)):
        data, rms, masks, noise = [], np.ones((BOX, BOX), np.float32), [], []
        for k in ks:
            model = bank.stamps[k].astype(np.float64) * 3000.0
            off = np.fft.ifft2(ndimage.fourier_shift(np.fft.fft2(model), (-dy, -dx))).real   # the object off-centre
            o, _, m, _ = recentre((off + rng.standard_normal(off.shape)).astype(np.float32), rms,
                                  _segment(off, 1.0), np.zeros((BOX, BOX), bool), dx, dy)
            data.append(o)
            masks.append(m)
            noise.append(shift_noise_variance(dx, dy))
        res = fit_objects(bank, np.asarray(data), 1.0, np.asarray(masks))
        fixed = best_parameters(res.chi2, GRID, res.flux, res.npix, swd2=res.swd2, noise_variance=noise)
        raw = best_parameters(res.chi2, GRID, res.flux, res.npix, swd2=res.swd2)
        nu[dx, dy] = float(np.median(fixed["CHI2_NU"])), float(np.median(raw["CHI2_NU"]))
    for (dx, dy), (fixed, raw) in nu.items():
        assert 0.9 < fixed < 1.1, (dx, dy, fixed)
    assert nu[0.5, 0.5][1] < 0.7   # as it was
    assert shift_noise_variance(0.0, 0.0) == shift_noise_variance(1.0, -2.0) == 1.0
    assert shift_noise_variance(0.5, 0.5) == pytest.approx(0.572, abs=0.002)


def test_a_degenerate_local_sky_fit_reports_no_sky():
    """A 1-pixel mask cannot separate the sky from the flux (det = 0): it reported SKY = 0 with SKY_ERR = NaN."""
    from astrotool_dre.chi2 import chi2_batch

    be = get_backend("numpy", "cpu")
    m = np.array([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]], np.float32)
    d = np.array([[5.0, 7.0, 9.0], [5.0, 7.0, 9.0]], np.float32)
    w = np.array([[1.0, 0.0, 0.0], [1.0, 1.0, 1.0]], np.float32)  # object 0: one pixel
    chi2, flux, _, (sky, sky_err) = chi2_batch(m, m * m, d, w, be, local_sky=True)
    assert np.all(np.isnan(sky[0])) and np.all(np.isnan(sky_err[0]))
    assert np.all(np.isfinite(chi2[0])) and chi2[0] == pytest.approx([25.0, 25.0])  # b = 0 in the chi2
    assert sky[1] == pytest.approx([3.0, 11.0]) and np.all(np.isfinite(sky_err[1]))


@pytest.mark.parametrize("truth", [172.0, 165.0, 176.0, 4.0, 155.0])
def test_periodic_angle_is_refined_across_the_wrap_around(truth):
    """Known answer: chi2 exactly quadratic in grid steps (the angle periodic, 6 x 30 deg), the true angle
    between the last grid angle (150) and 180, or just above 0. The vertex lies below index 0 when the
    grid minimum is at 0 deg: it is refined across the wrap (it was held at 0.000, FIT_FLAGS 0)."""
    grid = M.ModelGrid(naxrat=5, axrat0=0.3, daxrat=0.1, nposang=6, dposang=30.0,
                       nlogh=7, logh0=0.1, dlogh=0.115, boxsize=BOX)
    assert grid.angle_periodic
    u = np.stack(np.meshgrid(*(np.arange(n, dtype=float) for n in grid.shape), indexing="ij"), -1)

    def fit(angle):
        da = (u[..., 2] - angle / 30.0 + 3.0) % 6.0 - 3.0
        dq, dr = u[..., 1] - 1.6, u[..., 3] - 3.4
        chi = 50.0 * dq ** 2 + 20.0 * dr ** 2 + 40.0 * da ** 2 + 10.0 * da * dq
        return best_parameters(chi.reshape(1, -1), grid, np.full((1, chi.size), 100.0), np.array([10 ** 6]))

    out, inside = fit(truth), fit(75.0)   # the same object away from the wrap
    assert out["ANGLE"][0] == pytest.approx(truth, abs=1e-6)
    assert out["AX_RATIO"][0] == pytest.approx(0.3 + 1.6 * 0.1, abs=1e-9)
    assert out["LOGR"][0] == pytest.approx(0.1 + 3.4 * 0.115, abs=1e-9)
    assert out["ANGLE_ERR"][0] == pytest.approx(inside["ANGLE_ERR"][0], rel=1e-9) and out["FIT_FLAGS"][0] == 0
