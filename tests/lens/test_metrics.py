"""Metrics on hand-made inputs with exactly known values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from astrotool_lens.evaluate import (binned_bias, estimator_metrics, field_means, fit_bias, great3_q, mae,
                                     rmse)


def test_rmse_mae():
    import astrotool.ml.metrics as core

    assert rmse is core.rmse and mae is core.mae                        # one definition, in the core
    pred = np.array([0.1, -0.1, 0.2, 0.0])
    true = np.zeros(4)
    assert rmse(pred, true) == pytest.approx(math.sqrt(0.06 / 4))
    assert mae(pred, true) == pytest.approx(0.1)
    assert rmse([0.1, np.nan], [0.0, 0.0]) == pytest.approx(0.1)       # NaN (failed) rows skipped


def test_fit_bias_exact_line():
    g = np.linspace(-0.05, 0.05, 11)
    est = (1 + 0.01) * g + 0.002
    b = fit_bias(g, est)
    assert b["m"] == pytest.approx(0.01, abs=1e-12)
    assert b["c"] == pytest.approx(0.002, abs=1e-12)
    assert b["m_err"] < 1e-12 and b["c_err"] < 1e-12 and b["n_fields"] == 11


def test_fit_bias_needs_three_fields():
    """With 2 fields evaluate reported m = -0.795 (a line through two points) beside its warning that m and c
    need at least 3 fields, and against the docs (NaN)."""
    g = np.array([-0.02, -0.02, 0.03, 0.03])
    b = fit_bias(g, 0.5 * g, np.array([0, 0, 1, 1]))
    assert b["n_fields"] == 2 and all(np.isnan(b[k]) for k in ("m", "m_err", "c", "c_err"))
    assert fit_bias(g[:3], 0.5 * g[:3])["m"] == pytest.approx(-0.5)   # 3 stamps, each its own field


def test_fit_bias_over_fields_and_errors():
    # 4 fields; within each field the estimates scatter symmetrically around (1+m) g + c
    g_field = np.array([-0.04, -0.01, 0.02, 0.05])
    m, c = -0.02, 3e-4
    g = np.repeat(g_field, 2)
    est = (1 + m) * g + c + np.tile([0.1, -0.1], 4)          # shape noise cancels per field
    field = np.repeat(np.arange(4), 2)
    tm, em, cnt = field_means(g, est, field)
    assert np.allclose(tm, g_field) and np.allclose(cnt, 2)
    b = fit_bias(g, est, field)
    assert b["m"] == pytest.approx(m, abs=1e-12) and b["c"] == pytest.approx(c, abs=1e-12)
    assert b["n_fields"] == 4
    # residuals known -> errors known: y = m x + c + r, r = (+d, -d, -d, +d)
    r = np.array([1e-4, -1e-4, -1e-4, 1e-4])
    b2 = fit_bias(g_field, (1 + m) * g_field + c + r)
    xm = g_field.mean()
    sxx = ((g_field - xm) ** 2).sum()
    # fitted line absorbs the part of r correlated with x; compute the exact OLS residual variance
    X = np.vstack([g_field, np.ones(4)]).T
    coef, res, *_ = np.linalg.lstsq(X, (m * g_field + c + r), rcond=None)
    s2 = res[0] / 2
    assert b2["m"] == pytest.approx(coef[0]) and b2["c"] == pytest.approx(coef[1])
    assert b2["m_err"] == pytest.approx(math.sqrt(s2 / sxx))
    assert b2["c_err"] == pytest.approx(math.sqrt(s2 * (1 / 4 + xm**2 / sxx)))


def test_great3_q():
    assert great3_q(0, 0, 0, 0) == pytest.approx(1232.0)                 # 2000 * 1.232 / sqrt(4)
    assert great3_q(2e-3, 2e-3, 2e-4, 2e-4) == pytest.approx(2464 / math.sqrt(8))
    assert great3_q(0, 0, 0, 0, sigma2_min=1.0) == pytest.approx(2464.0)
    assert great3_q(0.02, 0, 0, 0) == pytest.approx(2464 / math.sqrt(104))


def test_estimator_metrics_and_failures():
    g1 = np.linspace(-0.1, 0.1, 21)
    g2 = -g1
    e1 = 1.005 * g1 - 1e-4
    e2 = 0.99 * g2
    e1[3] = np.nan                                                      # one failure
    r = estimator_metrics(g1, g2, e1, e2)
    assert r["n"] == 21 and r["n_failed"] == 1
    assert r["m1"] == pytest.approx(0.005) and r["c1"] == pytest.approx(-1e-4)
    assert r["m2"] == pytest.approx(-0.01) and r["c2"] == pytest.approx(0.0, abs=1e-12)
    assert r["q"] == pytest.approx(great3_q(0.005, -0.01, -1e-4, 0.0))
    ok = np.isfinite(e1)
    assert r["rmse_g1"] == pytest.approx(math.sqrt(np.mean((e1[ok] - g1[ok]) ** 2)))


def test_binned_bias():
    g = np.tile(np.linspace(-0.1, 0.1, 10), 2)
    snr = np.repeat([10.0, 100.0], 10)
    est = np.where(snr < 50, 0.9 * g, 1.0 * g)
    rows = binned_bias(g, g, est, est, snr, bins=2)
    assert len(rows) == 2
    assert rows[0]["m1"] == pytest.approx(-0.1) and rows[1]["m1"] == pytest.approx(0.0, abs=1e-12)


def test_plot_bias_vs(tmp_path):
    import matplotlib.image as mpimg

    from astrotool_lens.evaluate import plot_bias_vs

    g = np.tile(np.linspace(-0.1, 0.1, 10), 2)
    snr = np.repeat([10.0, 100.0], 10)
    est = np.where(snr < 50, 0.9 * g, 1.0 * g)
    binned = {"CNN": binned_bias(g, g, est, est, snr, bins=2), "KSB": []}      # an estimator without bins is skipped
    out = plot_bias_vs(tmp_path / "x_bias-vs-snr.png", "S/N", "", binned, title="t")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and mpimg.imread(out)[..., :3].var() > 1e-3
    # a row without its m2 fails while drawing: no file, no temporary file
    with pytest.raises(KeyError):
        plot_bias_vs(tmp_path / "y.png", "S/N", "", {"CNN": [{"center": x, "m1": 0.0, "m1_err": 0.0} for x in (1, 2)]})
    assert [p.name for p in tmp_path.iterdir()] == ["x_bias-vs-snr.png"]


def _tiny_model(tmp_path, ds):
    from astrotool_lens.config import TrainConfig
    from astrotool_lens.train import train_model

    cfg = TrainConfig(width=4, blocks=2, hidden=8, batch_size=8, epochs=1, split=(0.5, 0.25, 0.25), threads=1,
                      use_psf=False)
    mdir = tmp_path / "models" / "tiny"
    train_model(ds, cfg, mdir, seed=1)
    return mdir


def test_evaluate_measures_again_when_the_hsm_table_is_stale(tmp_path):
    """A table of an earlier dataset under the same name, or of other HSM settings, is never scored."""
    from astrotool.errors import InputError
    from astrotool.io.tables import parquet_metadata, read_parquet, write_parquet
    from astrotool_lens.config import EvaluateConfig, MeasureConfig
    from astrotool_lens.data import ShearDataset
    from astrotool_lens.evaluate import evaluate
    from astrotool_lens.generate import generate_dataset
    from astrotool_lens.measure import measure_arrays

    from .conftest import easy_config, serial_map

    out, pred, rep = tmp_path / "shear" / "e", tmp_path / "pred", tmp_path / "rep"
    generate_dataset(easy_config("e", n=8, shard_size=8), out, 1, serial_map)
    mdir = _tiny_model(tmp_path, ShearDataset(out))
    ecfg = EvaluateConfig(classical=["KSB"], split="all", plots=False, symmetrize=False)
    table = pred / "e_hsm.parquet"
    evaluate(ShearDataset(out), mdir, ecfg, pred, rep, mapper=serial_map)
    assert parquet_metadata(table)["identity"]["n"] == 8

    def measured(ds):
        gal, psf = ds.load_stamps()
        k = measure_arrays(gal, psf, ["KSB"])
        return estimator_metrics(ds.truth["g1"], ds.truth["g2"], k["ksb_g1"], k["ksb_g2"])

    for n, seed in ((12, 1), (6, 1), (6, 2)):      # more stamps, fewer stamps (index >= n), same n other pixels
        generate_dataset(easy_config("e", n=n, shard_size=8), out, seed, serial_map, overwrite=True)
        ds = ShearDataset(out)
        r = evaluate(ds, mdir, ecfg, pred, rep, mapper=serial_map)
        assert r["n"] == n and r["estimators"]["KSB"] == pytest.approx(measured(ds), nan_ok=True)
        assert parquet_metadata(table)["identity"]["n"] == n
    # other HSM settings: the table of these stamps is not replaced silently; with overwrite, measured again
    from astrotool.errors import AstroError

    with pytest.raises(AstroError, match="guess_sig_gal 5 -> 4.*--overwrite"):
        evaluate(ds, mdir, ecfg, pred, rep, mapper=serial_map, measure_cfg=MeasureConfig(guess_sig_gal=4.0))
    assert parquet_metadata(table)["settings"]["guess_sig_gal"] == 5.0
    evaluate(ds, mdir, ecfg, pred, rep, mapper=serial_map, measure_cfg=MeasureConfig(guess_sig_gal=4.0),
             overwrite=True)
    assert parquet_metadata(table)["settings"]["guess_sig_gal"] == 4.0
    # a valid table that lacks an evaluated stamp is refused, naming it
    t, meta = read_parquet(table), parquet_metadata(table)
    write_parquet(t.slice(1), table, metadata=meta)
    with pytest.raises(InputError, match=r"e_hsm\.parquet.*no row for 1 of the 6 evaluated stamps \(stamp 0\)"):
        evaluate(ds, mdir, ecfg, pred, rep, mapper=serial_map, measure_cfg=MeasureConfig(guess_sig_gal=4.0))


def test_field_means_error_of_ring_pairs_is_that_of_the_pair_means():
    """A ring pair's two stamps cancel its intrinsic shape: the standard error of a field's mean shear comes
    from the pair means (s / sqrt(n_pairs)), not from the stamps, whose scatter is the shape noise."""
    from astrotool_lens.evaluate import shear_field_means

    rng = np.random.default_rng(3)
    n_pairs = 500
    shape = np.repeat(rng.normal(0, 0.25, n_pairs), 2) * np.tile([1.0, -1.0], n_pairs)   # rotated partner
    noise = rng.normal(0, 0.01, 2 * n_pairs)
    g1, g2 = np.full(2 * n_pairs, 0.02), np.zeros(2 * n_pairs)
    est1, est2 = g1 + shape + noise, g2 - shape + noise
    pair = np.arange(2 * n_pairs) // 2
    (row,) = shear_field_means(g1, g2, est1, est2, pair=pair)
    pair_err = (noise.reshape(-1, 2).mean(1)).std(ddof=1) / np.sqrt(n_pairs)
    assert row["n"] == 2 * n_pairs and row["n_pairs"] == n_pairs
    assert row["g1"] == pytest.approx(est1.mean()) and row["g1_err"] == pytest.approx(pair_err, rel=1e-6)
    assert row["g2_err"] == pytest.approx(pair_err, rel=1e-6)
    (single,) = shear_field_means(g1, g2, est1, est2)                   # no pairs: the per-stamp error
    assert single["g1_err"] == pytest.approx(est1.std(ddof=1) / np.sqrt(2 * n_pairs)) and "n_pairs" not in single
