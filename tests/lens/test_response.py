"""A trained network's shear response measured on each stamp (metacal-style): known shears recovered without
any calibration on simulations."""

from __future__ import annotations

import json

import numpy as np
import pytest

from astrotool.cli import main
from astrotool_lens.metacal import shear_from_response
from astrotool_lens.model import load_estimator, predict_array
from astrotool_lens.response import PREFIX, model_response

from .conftest import serial_map

galsim = pytest.importorskip("galsim")


SCALE = 0.2     # [arcsec / pixel], as the easy dataset the session's model was trained on


def _full_rings(g, n_rings=3, seed=2, size=24):
    """Noiseless rings of 8 orientations of exponential galaxies like the easy dataset's, sheared by g."""
    psf = galsim.Gaussian(fwhm=0.6)
    rng = np.random.default_rng(seed)
    stamps = []
    for _ in range(n_rings):
        e, beta, hlr = rng.uniform(0.1, 0.4), rng.uniform(0.0, np.pi), rng.uniform(0.5, 0.8)
        for k in range(8):
            gal = galsim.Exponential(half_light_radius=hlr, flux=1e3).shear(
                g=e, beta=(beta + k * np.pi / 8) * galsim.radians).shear(g1=g[0], g2=g[1])
            stamps.append(galsim.Convolve(gal, psf).drawImage(nx=size, ny=size, scale=SCALE).array)
    return np.array(stamps, np.float32), psf.drawImage(nx=size, ny=size, scale=SCALE).array.astype(np.float32)


def test_the_response_recovers_a_shear_the_network_gets_wrong(trained_model):
    """Galaxies with shape noise the network never saw (it was trained on round ones), sheared by +g and -g:
    the network's mean output gives m ~ -0.13; <R>^-1 <e> of its outputs on the metacal images gives |m| < 0.01
    (measured: +0.0014, -0.0019) and |c| < 1e-3 (2e-4, 4e-4: the interpolation of 24-pixel stamps is not quite
    symmetric under rotation; at 40 pixels it is, to 5e-5)."""
    mdir, _ = trained_model
    model, _ = load_estimator(mdir)
    g = np.array((0.04, -0.03))
    est, direct = {}, {}
    for sign in (1, -1):
        gal, psf = _full_rings(tuple(sign * g))
        cols = model_response(mdir, gal, psf, mapper=serial_map, pixel_scale=SCALE, symmetrize=True, fixnoise=False)
        assert (cols[f"{PREFIX}_flag"] == 0).all(), cols[f"{PREFIX}_error"]
        assert np.all(cols[f"{PREFIX}_noise_sigma"] == 0)                 # no noise image asked for
        est[sign] = np.array([np.mean(v) for v in shear_from_response(cols, prefix=PREFIX)])
        direct[sign] = predict_array(model, gal[:, None], symmetrize=True, calibrated=False).mean(axis=0)
    m = (est[1] - est[-1]) / (2 * g) - 1
    assert np.all(np.abs(m) < 0.01) and np.all(np.abs(est[1] + est[-1]) / 2 < 1e-3), est
    assert np.all((direct[1] - direct[-1]) / (2 * g) - 1 < -0.1), direct
    r = np.array([[cols[f"{PREFIX}_r11"].mean(), cols[f"{PREFIX}_r12"].mean()],
                  [cols[f"{PREFIX}_r21"].mean(), cols[f"{PREFIX}_r22"].mean()]])
    assert 0.2 < r[0, 0] < 2 and 0.2 < r[1, 1] < 2 and abs(r[0, 1]) < 0.2 * r[0, 0]


def test_items_and_failures_keep_stamp_order(trained_model):
    """Items of 500 stamps are joined in stamp order; a blank stamp fails alone (flag 1, NaN, the reason). Other
    batches change the network's float32 outputs by ~1e-8, which R (1 / 2 delta) and D (1 / delta^2) magnify."""
    import astrotool_lens.response as response

    mdir, _ = trained_model
    gal, psf = _full_rings((0.02, 0.01), n_rings=1)
    gal[3] = 0.0
    old = response.STAMPS_PER_ITEM
    response.STAMPS_PER_ITEM = 3
    try:
        split = model_response(mdir, gal, psf, mapper=serial_map, pixel_scale=SCALE, symmetrize=False)
    finally:
        response.STAMPS_PER_ITEM = old
    whole = model_response(mdir, gal, psf, mapper=serial_map, pixel_scale=SCALE, symmetrize=False)
    from astrotool.errors import InputError

    with pytest.raises(InputError, match="expects 24x24") as e:        # refused before any stamp is worked on
        model_response(mdir, gal[:, :20, :20], psf[:20, :20], mapper=serial_map, source="mine.fits")
    assert "mine.fits" in str(e.value)
    with pytest.raises(InputError, match="PSF stamps"):
        model_response(mdir, gal, psf[:20, :20], mapper=serial_map)
    assert split[f"{PREFIX}_flag"].tolist() == [0, 0, 0, 1, 0, 0, 0, 0]
    assert split[f"{PREFIX}_error"][3] == "blank stamp" and np.isnan(split[f"{PREFIX}_e1"][3])
    atol = {"r": 1e-4, "d": 1e-2}
    for k in whole:
        if k.endswith(("flag", "error")):
            assert np.array_equal(split[k], whole[k]), k
        else:
            assert np.allclose(split[k], whole[k], equal_nan=True, rtol=0, atol=atol.get(k[len(PREFIX) + 1], 1e-6)), k


def test_validate_with_the_response_of_a_model(trained_model, tmp_path, capsys):
    """`lens validate --model M --response metacal` fits m and c of the self-calibrated network, applies no
    calibration and reports as <model>_metacal; with a classical method the option is refused."""
    from astrotool_lens.generate import generate_dataset

    from .conftest import easy_config

    mdir, _ = trained_model
    ws = tmp_path / "ws"
    cfg = easy_config("v", n=64, shard_size=64, preset="fields", stamp_size=24,
                      shape={"kind": "gaussian", "sigma": 0.2, "max": 0.6, "convention": "e", "ring": True},
                      shear={"g1": [-0.05, 0.05], "g2": [-0.05, 0.05], "field_size": 8},
                      noise={"kind": "gaussian", "snr": 2000.0})
    generate_dataset(cfg, ws / "lens" / "shear" / "v", 4, serial_map)
    base = ["--json", "-w", str(ws), "-q", "lens", "validate", "v", "--model", str(mdir)]
    assert main([*base, "--response", "metacal"]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["estimator"] == f"{mdir.name}_metacal" and rec["calibration"] is None and rec["transfers"] is None
    assert rec["n"] == 64 and rec["n_fields"] == 8 and rec["n_failed"] == 0
    assert abs(rec["m1_raw"]) < 0.05 and abs(rec["m2_raw"]) < 0.05, rec
    assert (ws / "lens" / "reports" / f"v_{mdir.name}_metacal_validate.json").is_file()
    code = main(["-w", str(ws), "-q", "lens", "validate", "v", "--method", "KSB", "--response", "metacal"])
    assert code == 2 and "trained model" in capsys.readouterr().err

    # predict: the same columns for the whole input, g = <R>^-1 e with the table's response, no calibration
    from astrotool.io.tables import parquet_metadata, read_parquet

    pred = ["--json", "-w", str(ws), "-q", "lens", "predict", "v", "--model", str(mdir), "--response", "metacal"]
    assert main(pred) == 0
    rec = json.loads(capsys.readouterr().out)
    path = ws / "lens" / "predictions" / f"v_{mdir.name}_metacal.parquet"
    assert rec["output"] == str(path) and rec["n"] == 64 and rec["samples_per_s"] > 0
    t = read_parquet(path)
    cols = {c: t.column(c).to_numpy(zero_copy_only=False) for c in t.column_names}
    g1, g2 = shear_from_response(cols, prefix=PREFIX)
    assert np.allclose(cols["g1"], g1) and np.allclose(cols["g2"], g2) and np.isfinite(g1).all()
    from astropy.table import Table

    described = Table.read(path)
    assert all(described[c].description for c in described.colnames), described.colnames
    assert {c: str(described[c].unit) for c in described.colnames if described[c].unit is not None} == {
        f"{PREFIX}_noise_sigma": "ct"}
    meta = parquet_metadata(path)
    assert meta["response"] == "metacal" and meta["calibration"] is None
    code = main([*pred[1:], "--engine", "onnxruntime"])
    assert code == 2 and "--engine torch" in capsys.readouterr().err
    code = main([*pred[1:], "--calibrated"])   # accepted and not honoured before
    assert code == 2 and "--response metacal applies no calibration" in capsys.readouterr().err


def test_an_implausible_mean_response_is_named():
    import numpy as np

    from astrotool_lens.response import response_problem

    good = {"response_r11": np.array([0.8, 0.9]), "response_r22": np.array([0.7, np.nan])}
    assert response_problem(good) is None
    flat = {"response_r11": np.array([1e-9, -1e-9]), "response_r22": np.array([0.7, 0.8])}
    assert "implausible" in response_problem(flat)


def test_a_response_without_finite_values_is_named_so():
    from astrotool_lens.response import response_problem

    none = {"response_r11": np.array([np.nan, np.nan]), "response_r22": np.array([np.nan, np.nan])}
    assert "no stamp has a finite response" in response_problem(none)
    near = {"response_r11": np.array([0.04996, 0.04996]), "response_r22": np.array([0.7, 0.8])}
    assert "0.04996" in response_problem(near)
