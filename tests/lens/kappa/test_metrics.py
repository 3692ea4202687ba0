"""Kappa map metrics: the Datathon's WMAPE, DICEE and DPEAKS on hand-made maps with the arithmetic written out,
the extras, the Borda/Copeland ranking, and the shear-consistency check."""

from __future__ import annotations

import math

import numpy as np
import pytest

from astrotool_lens.kappa import metrics as M
from astrotool_lens.kappa.maps import shear_from_kappa, wave_vectors

D = M.DELTA


# ---------------------------------------------------------------- WMAPE


def test_wmape_replaces_exact_zeros_in_both_maps_before_taking_max_T():
    T = np.array([[0.0, 1.0], [2.0, 4.0]])
    P = np.array([[0.0, 0.0], [1.0, 4.0]])
    # T -> [[d, 1], [2, 4]], P -> [[d, d], [1, 4]]; max T = 4; W = 1 + T/4 = [[1 + d/4, 1.25], [1.5, 2]]
    # |P - T| / |T| = [[0, 1 - d], [1/2, 0]]
    num = 1.25 * (1 - D) + 1.5 * 0.5
    den = (1 + D / 4) + 1.25 + 1.5 + 2.0
    assert M.wmape(P, T) == pytest.approx(num / den, rel=1e-13)
    # without the replacement in P, pixel (0, 1) would cost 1.25 * 1, not 1.25 * (1 - d): distinguishable
    assert abs(M.wmape(P, T) - (1.25 + 0.75) / den) > 1e-6
    # float16 maps give the same (zeros are exact in any dtype)
    assert M.wmape(P.astype(np.float16), T.astype(np.float16)) == pytest.approx(num / den, rel=1e-13)


def test_wmape_of_scaled_truth_is_abs_one_minus_c_and_of_zeros_about_one():
    rng = np.random.default_rng(3)
    T = rng.uniform(0.01, 0.5, (16, 16)) * rng.choice([-1.0, 1.0], (16, 16))
    T[3, 4] = 0.9  # max T positive
    for c in (0.0001, 0.3, 1.0, 1.5, 3.0):
        assert M.wmape(c * T, T) == pytest.approx(abs(1 - c), abs=1e-12)
    # all zeros: each |d - T| / |T| = 1 - d/T; by hand on T = [[1, 2], [4, -1]]: W = [[1.25, 1.5], [2, 0.75]], sum 5.5,
    # sum W (1 - d/T) = 5.5 - d (1.25/1 + 1.5/2 + 2/4 - 0.75/1) = 5.5 - 1.75 d
    T2 = np.array([[1.0, 2.0], [4.0, -1.0]])
    assert M.wmape(np.zeros((2, 2)), T2) == pytest.approx(1 - 1.75 * D / 5.5, rel=1e-14)
    assert M.wmape(np.zeros_like(T), T) == pytest.approx(1.0, abs=1e-3)


def test_wmape_argument_order_prediction_then_truth():
    T = np.array([[1.0, 2.0]])
    P = np.array([[2.0, 2.0]])
    # divides by |T|: W = [1.5, 2]; pixel 0 costs 1.5 * |2 - 1| / 1 = 1.5; (1.5) / 3.5
    assert M.wmape(P, T) == pytest.approx(1.5 / 3.5)
    # swapped: W = [2, 2], |1 - 2| / 2 = 0.5 at pixel 0: 1 / 4
    assert M.wmape(T, P) == pytest.approx(1.0 / 4.0)


# ---------------------------------------------------------------- DICEE


def test_dice_threshold_is_strict_a_pixel_at_the_mean_is_background():
    T = np.array([[0.0, 1.0, 2.0], [1.0, 1.0, 1.0], [1.0, 1.0, 1.0]])  # mean 9/9 = 1: only the 2 is foreground
    assert M.dice_mask(T).sum() == 1 and M.dice_mask(T)[0, 2]
    P = np.array([[2.0, 0.0, 2.0], [1.0, 1.0, 1.0], [1.0, 1.0, 1.0]])  # mean 10/9: the two 2s are foreground
    # G A = 1 (pixel (0,2)), A (1 - G) = 1 (pixel (0,0)), G (1 - A) = 0: DICE = 1 / (1 + 0.5) = 2/3
    assert M.dicee(P, T) == pytest.approx(1 / 3, abs=1e-15)
    # with >= the 1s (equal to T's mean) would be foreground: G = 8 pixels, and DICEE would differ
    G, A = T >= T.mean(), P > P.mean()
    ge = 1 - (G & A).sum() / ((G & A).sum() + 0.5 * (A & ~G).sum() + 0.5 * (G & ~A).sum())
    assert abs(ge - M.dicee(P, T)) > 0.1


def test_dice_each_map_at_its_own_mean_and_the_degenerate_cases():
    rng = np.random.default_rng(0)
    T = rng.standard_normal((8, 8))
    assert M.dicee(T, T) == 0.0
    assert M.dicee(3 * T + 5, T) == 0.0  # each thresholded at its own mean
    assert M.dicee(np.zeros((8, 8)), T) == 1.0  # empty A, G not empty: DICE = 0 / (0.5 sum G) = 0
    assert M.dicee(np.full((8, 8), 0.1), T) == 1.0  # a constant map has an empty mask, whatever its mean's rounding
    assert M.dicee(np.zeros((8, 8)), np.full((8, 8), 0.3)) == 0.0  # 0/0: both empty, they agree
    # the reference's own example: T = [[1, -1], [0, 0]], P = [[1, 1], [0, 0]] -> 1/3
    assert M.dicee(np.array([[1.0, 1.0], [0.0, 0.0]]), np.array([[1.0, -1.0], [0.0, 0.0]])) == pytest.approx(1 / 3)


# ---------------------------------------------------------------- DPEAKS


def spikes(points, size=32):
    """A map of single-pixel spikes ``(row, col, height)``; Gaussian smoothing (sigma 3) peaks exactly there
    when they lie at least 7 pixels from the edges and 12 from each other."""
    m = np.zeros((size, size))
    for r, c, h in points:
        m[r, c] = h
    return m


A, B, C = (8, 8), (8, 22), (22, 15)


def test_dpeaks_finds_the_spikes_highest_first_and_is_zero_on_itself():
    T = spikes([(*A, 3.0), (*B, 2.0), (*C, 1.0)])
    assert M.top_peaks(T).tolist() == [list(A), list(B), list(C)]
    assert M.dpeaks(T, T) == 0.0
    assert M.dpeaks(T.astype(np.float16) * 0.1, T * 0.1) == 0.0


def test_dpeaks_pairs_by_rank_two_swapped_heights_cost_twice_their_distance():
    T = spikes([(*A, 3.0), (*B, 2.0), (*C, 1.0)])
    P = spikes([(*A, 2.0), (*B, 3.0), (*C, 1.0)])  # A and B swapped in height
    # T ranks: A (8,8), B (8,22), C; P ranks: B, A, C
    # |8-8| + |8-22| + |8-8| + |22-8| + 0 = 28 = 2 x the A-B distance
    assert M.dpeaks(P, T) == 28.0


def test_dpeaks_pads_with_zero_rows_when_fewer_than_three_peaks():
    T = spikes([(*A, 3.0), (*B, 2.0), (*C, 1.0)])
    P = spikes([(*A, 1.0)])
    assert M.top_peaks(P).tolist() == [[8, 8], [0, 0], [0, 0]]
    # (8,8)-(8,8): 0; (8,22)-(0,0): 8 + 22 = 30; (22,15)-(0,0): 22 + 15 = 37
    assert M.dpeaks(P, T) == 67.0
    flat = np.full((32, 32), 0.2)  # no peak at all: three (0,0) rows
    assert M.top_peaks(flat).tolist() == [[0, 0]] * 3
    assert M.dpeaks(flat, T) == 8 + 8 + 8 + 22 + 22 + 15


def test_dpeaks_excludes_the_one_pixel_border():
    # a spike on the top edge: with reflect-mode smoothing its maximum stays on row 0, which is excluded, and
    # row 1 below it is not a maximum -- it is not found although it is the highest
    T = spikes([(0, 24, 5.0), (10, 8, 3.0), (22, 20, 2.0)])
    assert M.top_peaks(T).tolist() == [[10, 8], [22, 20], [0, 0]]
    # the same spike 7 pixels in is found, first
    T2 = spikes([(7, 24, 5.0), (16, 8, 3.0), (24, 20, 2.0)])
    assert M.top_peaks(T2).tolist() == [[7, 24], [16, 8], [24, 20]]
    # (7,24)-(10,8): 3 + 16; (16,8)-(22,20): 6 + 12; (24,20)-(0,0): 44
    assert M.dpeaks(T2, T) == 19 + 18 + 44


# ---------------------------------------------------------------- extras


def test_mse_pearson_ssim_by_hand():
    T = np.array([[0.0, 1.0], [2.0, 3.0]])
    assert M.mse(T + np.array([[1.0, 0.0], [0.0, -1.0]]), T) == pytest.approx(0.5)  # (1 + 0 + 0 + 1) / 4
    assert M.pearson(3 * T + 1, T) == pytest.approx(1.0)
    assert M.pearson(-T, T) == pytest.approx(-1.0)
    assert M.pearson(np.zeros((2, 2)), T) == 0.0  # constant: defined as 0
    rng = np.random.default_rng(1)
    X = rng.standard_normal((16, 16))
    assert M.ssim(X, X) == pytest.approx(1.0)
    assert M.ssim(X + 0.5 * rng.standard_normal((16, 16)), X) < 0.9


def test_power_ratio_of_a_scaled_map_is_log_of_the_square():
    rng = np.random.default_rng(2)
    T = rng.standard_normal((16, 16))
    v, k, pp, pt = M.power_ratio(2 * T, T)
    assert v == pytest.approx(math.log(4.0)) and np.allclose(pp, 4 * pt, equal_nan=True) and len(k) == 8
    assert np.isnan(pt[0])  # the first ring of a 16x16 grid holds only k = 0, left out: no power, not counted
    assert M.power_ratio(T, T)[0] == 0.0
    assert M.power_ratio(np.zeros_like(T), T)[0] == pytest.approx(M.PS_LOG_CAP)  # capped, not infinite


def test_peak_counts_above_thresholds():
    # a unit spike smoothed by sigma = 3 has height k0^2, k0 the kernel's centre weight (truncated at 4 sigma = 12)
    k0 = 1 / np.exp(-np.arange(-12, 13) ** 2 / 18.0).sum()
    heights = np.array([0.07, 0.14, 0.28]) / k0**2  # smoothed 0.07, 0.14, 0.28 against thresholds 0.05, 0.1, 0.2
    m = spikes([(8, 8, heights[0]), (8, 24, heights[1]), (24, 16, heights[2])])
    assert M.smooth_for_peaks(m)[24, 16] == pytest.approx(0.28, rel=1e-5)
    assert M.peak_counts(m) == {0.05: 3, 0.1: 2, 0.2: 1}
    assert M.peak_counts(np.zeros((32, 32))) == {0.05: 0, 0.1: 0, 0.2: 0}


def test_pdf_distances_by_hand_and_equal_to_scipy():
    from scipy.stats import ks_2samp, wasserstein_distance

    T = np.arange(16.0).reshape(4, 4) / 16
    d = M.pdf_distances(T + 0.25, T)
    # shifting 16 equally spaced values (step 1/16) by 0.25 moves every quantile by 0.25, and the CDFs differ by 4/16
    assert d["wasserstein"] == pytest.approx(0.25) and d["ks"] == pytest.approx(0.25)
    rng = np.random.default_rng(4)
    for _ in range(3):
        a, b = rng.standard_normal((16, 16)), rng.standard_normal((16, 16)) * 1.3 + 0.1
        b[0, :4] = a[0, :4]  # shared values: ties across the samples
        d = M.pdf_distances(a, b)
        assert d["wasserstein"] == pytest.approx(wasserstein_distance(a.ravel(), b.ravel()), rel=1e-12)
        assert d["ks"] == pytest.approx(ks_2samp(a.ravel(), b.ravel()).statistic, rel=1e-12)


def test_map_metrics_keys_and_values_match_the_single_functions():
    rng = np.random.default_rng(5)
    T = rng.standard_normal((32, 32)) * 0.05
    P = 0.5 * T + 0.01 * rng.standard_normal((32, 32))
    m, (pp, pt) = M.map_metrics(P, T, spectra=True)
    assert set(m) == {"wmape", "dicee", "dpeaks", "dpeak1", "mse", "pearson", "ssim", "ps_logratio", "npeaks_err",
                      "npeaks_pred", "npeaks_true", "wasserstein", "ks"}
    assert m["wmape"] == M.wmape(P, T) and m["dicee"] == M.dicee(P, T) and m["dpeaks"] == M.dpeaks(P, T)
    assert m["pearson"] == M.pearson(P, T) and m["ps_logratio"] == M.power_ratio(P, T)[0]
    assert pp.shape == pt.shape == (16,)
    assert all(isinstance(v, float) for v in m.values())
    tp, tt = M.top_peaks(P), M.top_peaks(T)
    assert m["dpeak1"] == abs(tp[0, 0] - tt[0, 0]) + abs(tp[0, 1] - tt[0, 1]) <= m["dpeaks"]


def test_dpeak1_is_the_highest_peaks_distance_by_hand():
    yy, xx = np.mgrid[0:32, 0:32]
    bump = lambda r, c, h: h * np.exp(-((yy - r) ** 2 + (xx - c) ** 2) / 8.0)  # noqa: E731
    T = bump(10, 12, 1.0) + bump(24, 5, 0.5)
    P = bump(13, 16, 1.0) + bump(24, 5, 0.2)  # highest peak 3 rows and 4 columns off
    assert M.map_metrics(P, T)["dpeak1"] == 7.0


# ---------------------------------------------------------------- ranking


def test_borda_and_copeland_on_three_runs_by_hand():
    runs = {"a": {"wmape": 1.0, "dicee": 0.1, "pearson": 0.9},
            "b": {"wmape": 2.0, "dicee": 0.1, "pearson": 0.5},
            "c": {"wmape": 0.5, "dicee": 0.3, "pearson": 0.7}}
    r = M.rank(runs, higher_is_better={"pearson"})
    # wmape (lower better): c 3, a 2, b 1; dicee: a, b tie for places 1-2 -> (3 + 2) / 2 = 2.5 each, c 1;
    # pearson (higher better): a 3, c 2, b 1
    assert r["per_metric"] == {"wmape": {"a": 2.0, "b": 1.0, "c": 3.0}, "dicee": {"a": 2.5, "b": 2.5, "c": 1.0},
                               "pearson": {"a": 3.0, "b": 1.0, "c": 2.0}}
    # Borda: a 2 + 2.5 + 3 = 7.5, b 1 + 2.5 + 1 = 4.5, c 3 + 1 + 2 = 6
    assert r["borda"] == {"a": 7.5, "c": 6.0, "b": 4.5} and list(r["borda"]) == ["a", "c", "b"]
    # Copeland: a-b: a better on wmape and pearson, tie on dicee -> a; a-c: c on wmape, a on dicee and pearson -> a;
    # b-c: b on dicee, c on wmape and pearson -> c. a: 2 wins = +2, c: 1 win 1 loss = 0, b: 2 losses = -2
    assert r["copeland"] == {"a": 2, "c": 0, "b": -2}
    assert r["metrics"] == ["wmape", "dicee", "pearson"]


def test_rank_nan_is_worst_and_only_common_metrics_count():
    runs = {"x": {"wmape": float("nan"), "mse": 1.0}, "y": {"wmape": 3.0, "mse": 2.0, "ssim": 0.5}}
    r = M.rank(runs)
    assert r["metrics"] == ["wmape", "mse"]
    assert r["per_metric"]["wmape"] == {"x": 1.0, "y": 2.0} and r["copeland"] == {"x": 0, "y": 0}


# ---------------------------------------------------------------- consistency with the input


def smooth_field(size, amp, seed):
    rng = np.random.default_rng(seed)
    k2 = wave_vectors((size, size))[2]
    f = np.fft.ifft2(np.fft.fft2(rng.standard_normal((size, size))) * np.exp(-k2 / (2 * 0.05**2))).real
    return amp * f / f.std()


def test_consistency_of_kappa_with_its_own_noiseless_shear_is_zero_and_no_b_mode():
    kappa = smooth_field(32, 0.002, 0)
    g1, g2 = shear_from_kappa(kappa)
    red = 1 / (1 - kappa)
    eps = np.stack([g1 * red, g2 * red, np.full_like(g1, 0.2)])
    c = M.consistency(kappa, eps)
    assert c["chi2"] < 1e-25 and c["n_good"] == 32 * 32
    # the reduced-shear B mode is second order in kappa: tiny next to the E mode
    assert c["e_rms"] > 1e-3 and c["b_rms"] < 1e-2 * c["e_rms"]
    # the plain shear (no reduction) has no B mode at all
    c0 = M.consistency(kappa, np.stack([g1, g2, np.full_like(g1, 0.2)]))
    assert c0["b_rms"] < 1e-15


def test_consistency_chi2_is_one_for_noise_of_level_de_and_skips_empty_pixels():
    kappa = smooth_field(64, 0.05, 1)
    g1, g2 = shear_from_kappa(kappa)
    rng = np.random.default_rng(7)
    de = 0.1
    eps = np.stack([g1 / (1 - kappa) + de * rng.standard_normal(g1.shape),
                    g2 / (1 - kappa) + de * rng.standard_normal(g1.shape), np.full(g1.shape, de)])
    eps[:2, :4, :] = 0.0  # 4 rows without galaxies: (0, 0), whatever de says
    eps[2, 4, :8] = 0.0  # 8 pixels with no error: skipped
    c = M.consistency(kappa, eps)
    assert c["n_good"] == 64 * 64 - 4 * 64 - 8
    assert c["chi2"] == pytest.approx(1.0, abs=0.06)  # 2 x 3832 values: std of chi2 ~ 0.023
    # all zeros predicted: the shear is left in the residual
    assert M.consistency(np.zeros_like(kappa), eps)["chi2"] > c["chi2"] + 0.1
    with pytest.raises(ValueError, match="does not match"):
        M.consistency(kappa, eps[:, :32, :32])
