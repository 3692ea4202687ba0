"""astrotool.ml.metrics against values worked out by hand on tiny inputs."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchmetrics")

from astrotool.ml import metrics as M  # noqa: E402

nan = float("nan")


def same(a, b, tol=1e-6):
    """Lists equal element-wise, NaN matching NaN."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    return a.shape == b.shape and np.allclose(a, b, atol=tol, rtol=0, equal_nan=True)


# ============================================================================ regression


def test_regression_three_points():
    # errors (4-3, 2-2, 1-1) = (1, 0, 0): MSE = 1/3, MAE = 1/3, bias = +1/3
    # mean(true) = 2, SS_tot = 1 + 0 + 1 = 2, SS_res = 1 -> R² = 1 - 1/2 = 0.5
    r = M.regression_metrics([1.0, 2.0, 4.0], [1.0, 2.0, 3.0])
    assert r["n"] == 3 and r["n_dropped"] == 0
    assert r["mse"] == pytest.approx(1 / 3, abs=1e-15)
    assert r["rmse"] == pytest.approx(math.sqrt(1 / 3), abs=1e-15)
    assert r["mae"] == pytest.approx(1 / 3, abs=1e-15)
    assert r["bias"] == pytest.approx(1 / 3, abs=1e-15)
    assert r["r2"] == pytest.approx(0.5, abs=1e-15)
    json.dumps(r)                                            # plain Python numbers
    assert all(type(v) in (int, float) for v in r.values())


def test_regression_drops_non_finite_pairs_and_accepts_tensors():
    # the NaN and inf pairs go; what is left is the three-point example
    r = M.regression_metrics(torch.tensor([1.0, 2.0, 4.0, float("nan"), 7.0]),
                             np.array([1.0, 2.0, 3.0, 5.0, np.inf]))
    assert r["n"] == 3 and r["n_dropped"] == 2 and r["r2"] == pytest.approx(0.5)
    assert M.rmse([0.1, np.nan], [0.0, 0.0]) == pytest.approx(0.1)


def test_regression_undefined_is_nan():
    r = M.regression_metrics([1.0, 2.0], [3.0, 3.0])         # constant target: R² has no denominator
    assert r["mse"] == pytest.approx(2.5) and math.isnan(r["r2"])
    e = M.regression_metrics([np.nan], [1.0])                 # nothing usable
    assert e["n"] == 0 and e["n_dropped"] == 1 and all(math.isnan(e[k]) for k in ("mse", "rmse", "mae", "r2"))
    assert math.isnan(M.rmse([], [])) and math.isnan(M.mae([np.nan], [0.0]))


def test_rmse_mae_by_hand():
    # errors 0.1, -0.1, 0.2, 0: squares sum to 0.06; absolute values to 0.4
    assert M.rmse([0.1, -0.1, 0.2, 0.0], [0, 0, 0, 0]) == pytest.approx(math.sqrt(0.06 / 4), abs=1e-15)
    assert M.mae([0.1, -0.1, 0.2, 0.0], [0, 0, 0, 0]) == pytest.approx(0.1, abs=1e-15)


def test_regression_per_component_and_maps():
    pred = np.array([[1.0, 0.0], [2.0, 0.0], [4.0, 2.0]])
    true = np.array([[1.0, 0.0], [2.0, 0.0], [3.0, 0.0]])
    r = M.regression_metrics(pred, true, names=("g1", "g2"))
    assert list(r) == ["g1", "g2"]
    assert r["g1"]["r2"] == pytest.approx(0.5)
    # g2: errors (0, 0, 2) -> MSE 4/3, MAE 2/3; true constant -> R² NaN
    assert r["g2"]["mse"] == pytest.approx(4 / 3) and r["g2"]["mae"] == pytest.approx(2 / 3)
    assert math.isnan(r["g2"]["r2"])
    # maps are pooled over every pixel: 6 values, squared errors 1 and 4 -> MSE 5/6
    assert M.regression_metrics(pred[None], true[None])["mse"] == pytest.approx(5 / 6)


def test_regression_bad_input():
    with pytest.raises(ValueError, match="shape mismatch"):
        M.regression_metrics([1.0, 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="3 component names"):
        M.regression_metrics(np.zeros((4, 2)), np.zeros((4, 2)), names=("a", "b", "c"))
    with pytest.raises(ValueError, match="expected numbers"):
        M.rmse(["a"], ["b"])


# ============================================================================ classification

# target  0 0 1 1 2 2
# pred    0 1 1 1 2 0
# confusion (rows true, columns predicted): [[1,1,0],[0,2,0],[1,0,1]]
# recall    = 1/2, 2/2, 1/2                     -> macro 2/3
# precision = 1/2 (col 0: 1 of 2), 2/3, 1/1     -> macro 13/18
# F1        = 1/2, 2*(2/3)/(5/3) = 4/5, 2*(1/2)/(3/2) = 2/3 -> macro (1/2 + 4/5 + 2/3)/3 = 59/90
# accuracy  = 4/6
TARGET = [0, 0, 1, 1, 2, 2]
PRED = [0, 1, 1, 1, 2, 0]


def test_three_class_by_hand():
    r = M.classification_metrics(PRED, TARGET, num_classes=3)
    assert r["confusion"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert same(r["recall"], [0.5, 1.0, 0.5])
    assert same(r["precision"], [0.5, 2 / 3, 1.0])
    assert same(r["f1"], [0.5, 0.8, 2 / 3])
    assert r["macro_f1"] == pytest.approx(59 / 90, abs=1e-6)
    assert r["macro_recall"] == pytest.approx(2 / 3, abs=1e-6)
    assert r["macro_precision"] == pytest.approx(13 / 18, abs=1e-6)
    assert r["accuracy"] == pytest.approx(4 / 6, abs=1e-6)
    assert r["support"] == [2, 2, 2] and r["n"] == 6 and r["class_names"] == ["0", "1", "2"]
    json.dumps(r)


def test_probabilities_give_the_same_answer_and_bad_rows_drop():
    probs = np.full((7, 3), 0.1)
    probs[np.arange(6), PRED] = 0.8                     # arg-max = PRED
    probs[6] = np.nan                                   # a failed row
    r = M.classification_metrics(torch.tensor(probs), TARGET + [1], class_names=["AGN", "SN", "VS"])
    assert r["n"] == 6 and r["n_dropped"] == 1 and r["class_names"] == ["AGN", "SN", "VS"]
    assert r["macro_f1"] == pytest.approx(59 / 90, abs=1e-6)


def test_macro_precision_counts_a_never_predicted_class_as_zero():
    """A class with samples that is never predicted has undefined precision: it counts as 0 in the mean
    (scikit-learn's zero_division=0), not left out; a class absent from targets and predictions is left out."""
    # class 0: precision 2/4; class 1: 1/2; class 2 (2 samples) never predicted; class 3 absent from both
    r = M.classification_metrics([0, 0, 0, 1, 1, 0], [0, 0, 1, 1, 2, 2], num_classes=4)
    assert same(r["precision"], [0.5, 0.5, nan, nan])
    assert r["macro_precision"] == pytest.approx((0.5 + 0.5 + 0.0) / 3, abs=1e-12)
    assert r["macro_recall"] == pytest.approx((1.0 + 0.5 + 0.0) / 3, abs=1e-12)


def test_macro_metrics_average_over_the_classes_present_in_the_truth():
    """On a split with no bogus, macro-recall averaged 4 classes and macro-precision/F1 5 (bogus as 0)."""
    classification_metrics = M.classification_metrics

    classes = ["AGN", "SN", "VS", "asteroid", "bogus"]
    truth = np.array([0, 0, 1, 1, 2, 3])   # no bogus
    pred = np.array([0, 1, 1, 1, 4, 3])    # the VS called bogus
    c = classification_metrics(np.eye(5)[pred], truth, class_names=classes)
    assert c["macro_classes"] == ["AGN", "SN", "VS", "asteroid"]
    assert c["macro_recall"] == pytest.approx((0.5 + 1 + 0 + 1) / 4)
    assert c["macro_precision"] == pytest.approx((1 + 2 / 3 + 0 + 1) / 4)
    assert c["macro_f1"] == pytest.approx((2 / 3 + 0.8 + 0 + 1) / 4)


def test_empty_and_never_predicted_classes():
    # a fourth class that nobody has: its recall, precision and F1 are undefined; the macro averages skip it
    r = M.classification_metrics(PRED, TARGET, num_classes=4)
    assert math.isnan(r["recall"][3]) and math.isnan(r["precision"][3]) and math.isnan(r["f1"][3])
    assert r["macro_f1"] == pytest.approx(59 / 90, abs=1e-6)
    assert r["confusion"][3] == [0, 0, 0, 0] and r["support"][3] == 0
    # class 1 is present but never predicted: recall 0, F1 0 (counted), precision undefined
    # class 0: precision 2/4, recall 1, F1 2/3 -> macro-F1 (2/3 + 0)/2 = 1/3
    r = M.classification_metrics([0, 0, 0, 0], [0, 0, 1, 1], num_classes=2)
    assert same(r["recall"], [1.0, 0.0]) and same(r["precision"], [0.5, nan]) and same(r["f1"], [2 / 3, 0.0])
    assert r["macro_f1"] == pytest.approx(1 / 3, abs=1e-6) and r["macro_precision"] == pytest.approx(0.25)
    e = M.classification_metrics(np.zeros((0, 3)), [])
    assert e["n"] == 0 and math.isnan(e["macro_f1"]) and e["confusion"] == [[0] * 3] * 3


def test_binary_probabilities_threshold():
    # p >= 0.5 is positive: (0.2, 0.5, 0.7, 0.4) -> (0, 1, 1, 0)
    r = M.classification_metrics(np.array([0.2, 0.5, 0.7, 0.4]), [0, 1, 1, 0])
    assert r["num_classes"] == 2 and r["accuracy"] == pytest.approx(1.0)
    r = M.classification_metrics(np.array([0.2, 0.5, 0.7, 0.4]), [0, 1, 1, 0], threshold=0.6)
    assert r["confusion"] == [[2, 0], [1, 1]]


def test_classification_bad_input():
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        M.classification_metrics([0, 1, 3], [0, 1, 2], num_classes=3)
    with pytest.raises(ValueError, match=r"target: labels must lie"):
        M.classification_metrics([0, 1, 2], [0, 1, -1], num_classes=3)
    with pytest.raises(ValueError, match="3 class columns but num_classes is 4"):
        M.classification_metrics(np.full((2, 3), 1 / 3), [0, 1], num_classes=4)
    with pytest.raises(ValueError, match="num_classes=4 but 3 class names"):
        M.classification_metrics([0, 1], [0, 1], num_classes=4, class_names=["a", "b", "c"])
    with pytest.raises(ValueError, match="shape mismatch"):
        M.classification_metrics([0, 1], [0, 1, 1], num_classes=2)
    with pytest.raises(ValueError, match="give num_classes"):
        M.classification_metrics([0, 1], [0, 1])
    with pytest.raises(ValueError, match="probabilities in"):
        M.classification_metrics(np.array([[2.0, -1.0], [0.0, 1.0]]), [0, 1])      # logits


# ============================================================================ calibration


def test_binary_ece_two_bins_by_hand():
    # bins [0, .5) and [.5, 1]: bin 0 holds p = .2, .3 (targets 0, 1): confidence .25, accuracy .5, gap .25
    #                            bin 1 holds p = .7, .9 (targets 1, 1): confidence .8,  accuracy 1,  gap .2
    # ECE = 2/4 * .25 + 2/4 * .2 = .225; MCE = .25
    r = M.calibration_metrics(np.array([0.2, 0.3, 0.7, 0.9]), [0, 1, 1, 1], n_bins=2)
    assert r["ece"] == pytest.approx(0.225, abs=1e-12) and r["mce"] == pytest.approx(0.25, abs=1e-12)
    assert same(r["edges"], [0, 0.5, 1]) and r["count"] == [2, 2]
    assert same(r["confidence"], [0.25, 0.8], 1e-12) and same(r["accuracy"], [0.5, 1.0], 1e-12)
    # a confidence on an edge belongs to the bin above (as in torchmetrics): .5 joins .9 -> confidence .7, gap .3
    # ECE = .5 * .25 + .5 * .3 = .275
    r = M.calibration_metrics(np.array([0.2, 0.3, 0.5, 0.9]), [0, 1, 1, 1], n_bins=2)
    assert r["count"] == [2, 2] and same(r["confidence"], [0.25, 0.7], 1e-12)
    assert r["ece"] == pytest.approx(0.275, abs=1e-12)


def test_multiclass_ece_two_bins_by_hand():
    # top-label confidence / predicted class / target / correct:
    #   .40 / 0 / 0 / yes    .90 / 0 / 1 / no    .70 / 1 / 1 / yes    .40 / 2 / 0 / no
    # bin 0: .40, .40 -> confidence .4, accuracy .5 (gap .1); bin 1: .9, .7 -> confidence .8, accuracy .5 (gap .3)
    # ECE = .5 * .1 + .5 * .3 = .2
    probs = np.array([[0.4, 0.3, 0.3], [0.9, 0.05, 0.05], [0.2, 0.7, 0.1], [0.35, 0.25, 0.4]])
    r = M.calibration_metrics(probs, [0, 1, 1, 0], n_bins=2)
    assert r["ece"] == pytest.approx(0.2, abs=1e-6) and r["mce"] == pytest.approx(0.3, abs=1e-6)
    assert same(r["confidence"], [0.4, 0.8]) and same(r["accuracy"], [0.5, 0.5]) and r["count"] == [2, 2]


@pytest.mark.parametrize("classes", [2, 5])
def test_bins_reproduce_torchmetrics_ece(classes):
    rng = np.random.default_rng(3)
    y = rng.integers(0, classes, 500)
    if classes == 2:
        probs = np.clip(0.3 + 0.4 * y + 0.25 * rng.normal(size=500), 0.001, 0.999)
    else:
        probs = rng.dirichlet(np.ones(classes), 500)
        probs[np.arange(500), y] += rng.uniform(0, 1, 500)
        probs /= probs.sum(axis=1, keepdims=True)
    r = M.calibration_metrics(probs, y, n_bins=15)
    w = np.asarray(r["count"]) / r["n"]
    gap = np.abs(np.nan_to_num(np.asarray(r["accuracy"]) - np.asarray(r["confidence"])))
    assert sum(r["count"]) == 500 and r["ece"] > 0.01
    assert float(np.sum(w * gap)) == pytest.approx(r["ece"], abs=1e-12 if classes == 2 else 1e-6)
    assert float(np.max(gap)) == pytest.approx(r["mce"], abs=1e-12 if classes == 2 else 1e-6)


def test_calibration_empty_bins_and_bad_input():
    r = M.calibration_metrics(np.array([0.1, 0.15, np.nan]), [0, 0, 1], n_bins=4)
    assert r["n"] == 2 and r["n_dropped"] == 1 and r["count"] == [2, 0, 0, 0]
    assert math.isnan(r["confidence"][1]) and math.isnan(r["accuracy"][3])
    assert r["ece"] == pytest.approx(0.125)                 # confidence .125, accuracy 0
    e = M.calibration_metrics(np.array([np.nan]), [0])
    assert e["n"] == 0 and math.isnan(e["ece"])
    with pytest.raises(ValueError, match="floats"):
        M.calibration_metrics(np.array([0, 1]), [0, 1])
    with pytest.raises(ValueError, match="n_bins"):
        M.calibration_metrics(np.array([0.5]), [1], n_bins=0)


# ============================================================================ segmentation

MASK = np.array([[1, 1, 0],
                 [1, 1, 0],
                 [0, 0, 0]])
PROB = np.array([[0.9, 0.6, 0.7],
                 [0.2, 0.8, 0.1],
                 [0.0, 0.0, 0.5]])


def test_binary_iou_dice_by_hand():
    # p >= .5 -> [[1,1,1],[0,1,0],[0,0,1]]: TP (0,0),(0,1),(1,1) = 3; FP (0,2),(2,2) = 2; FN (1,0) = 1
    # IoU = 3 / (3+2+1) = 1/2; Dice = 6 / (6+2+1) = 2/3
    r = M.segmentation_metrics(PROB, MASK)
    assert (r["tp"], r["fp"], r["fn"], r["n"]) == (3, 2, 1, 9)
    assert r["iou"] == pytest.approx(0.5, abs=1e-6) and r["dice"] == pytest.approx(2 / 3, abs=1e-6)
    # p >= .65 -> [[1,0,1],[0,1,0],[0,0,0]]: TP 2, FP 1, FN 2 -> IoU 2/5, Dice 4/7
    r = M.segmentation_metrics(PROB, MASK, threshold=0.65)
    assert r["iou"] == pytest.approx(2 / 5, abs=1e-6) and r["dice"] == pytest.approx(4 / 7, abs=1e-6)
    # 0/1 labels and a batch axis give the same numbers
    r = M.segmentation_metrics(torch.tensor((PROB >= 0.5)[None]), MASK[None].astype(bool))
    assert r["iou"] == pytest.approx(0.5, abs=1e-6)


def test_binary_segmentation_undefined_and_dropped():
    r = M.segmentation_metrics(np.zeros(5), np.zeros(5, int))          # nothing to find, nothing found
    assert math.isnan(r["iou"]) and math.isnan(r["dice"]) and r["tp"] == 0
    p = PROB.copy()
    p[1, 0] = np.nan                                                   # the only false negative pixel
    r = M.segmentation_metrics(p, MASK)
    assert r["n_dropped"] == 1 and r["iou"] == pytest.approx(3 / 5, abs=1e-6)


def test_multiclass_iou_dice_by_hand():
    # the 3-class example as a 1x6 "image": class 0 TP 1 FP 1 FN 1 -> IoU 1/3, Dice 1/2
    # class 1 TP 2 FP 1 FN 0 -> IoU 2/3, Dice 4/5; class 2 TP 1 FP 0 FN 1 -> IoU 1/2, Dice 2/3
    # class 3 absent from both -> NaN; means over the 3 others: IoU 1/2, Dice 59/90
    r = M.segmentation_metrics(np.array([PRED]), np.array([TARGET]), num_classes=4)
    assert same(r["iou"], [1 / 3, 2 / 3, 1 / 2, nan]) and same(r["dice"], [0.5, 0.8, 2 / 3, nan])
    assert r["mean_iou"] == pytest.approx(0.5, abs=1e-6) and r["mean_dice"] == pytest.approx(59 / 90, abs=1e-6)
    assert r["support"] == [2, 2, 2, 0]
    # probabilities with the class axis at 1: (N, C, L)
    probs = np.full((1, 4, 6), 0.05)
    probs[0, PRED, np.arange(6)] = 0.85
    assert same(M.segmentation_metrics(probs, np.array([TARGET]), num_classes=4)["iou"], r["iou"])


def test_segmentation_bad_input():
    with pytest.raises(ValueError, match="shape mismatch"):
        M.segmentation_metrics(np.zeros((2, 3)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="3 classes on axis 1 but num_classes is 4"):
        M.segmentation_metrics(np.full((1, 3, 5), 0.3), np.zeros((1, 5), int), num_classes=4)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\)"):
        M.segmentation_metrics(np.zeros(3), np.array([0, 2, 1]))
    with pytest.raises(ValueError, match="probabilities"):
        M.segmentation_metrics(np.array([1.5, 0.2]), np.array([1, 0]))


def test_threshold_sweep_by_hand():
    # t = .5 and .65 as in test_binary_iou_dice_by_hand; t = .95: nothing predicted, TP 0 FP 0 FN 4
    #   -> precision undefined (NaN), recall 0, F1 0, IoU 0. Best IoU at t = .5: IoU 1/2, precision 3/5, recall 3/4
    r = M.threshold_sweep(PROB, MASK, [0.5, 0.65, 0.95])
    assert (r["tp"], r["fp"], r["fn"]) == ([3, 2, 0], [2, 1, 0], [1, 2, 4])
    assert same(r["precision"], [3 / 5, 2 / 3, nan], 1e-12) and same(r["recall"], [3 / 4, 1 / 2, 0], 1e-12)
    assert same(r["iou"], [1 / 2, 2 / 5, 0], 1e-12) and same(r["f1"], [2 / 3, 4 / 7, 0], 1e-12)
    assert r["best"] == {"threshold": 0.5, "iou": 0.5, "f1": pytest.approx(2 / 3), "precision": pytest.approx(0.6),
                         "recall": 0.75}
    # the sweep agrees with segmentation_metrics at each threshold
    assert r["iou"][1] == pytest.approx(M.segmentation_metrics(PROB, MASK, threshold=0.65)["iou"], abs=1e-6)
    empty = M.threshold_sweep(np.zeros(4), np.zeros(4, int), [0.5])
    assert math.isnan(empty["iou"][0]) and math.isnan(empty["best"]["threshold"])
    with pytest.raises(ValueError, match="at least one threshold"):
        M.threshold_sweep(PROB, MASK, [])


def test_threshold_counts_add_up_over_batches_and_match_torchmetrics():
    from torchmetrics.functional.classification import binary_stat_scores

    rng = np.random.default_rng(8)
    p, y = rng.random((6, 500)), rng.integers(0, 2, (6, 500))
    p[0, :5] = [0.3, 0.3, 0.0, 1.0, 0.7]                   # scores exactly on thresholds, and the ends
    thresholds = [0.7, 0.05, 0.3, 0.95, 0.5]               # any order
    whole = M.threshold_counts(p, y, thresholds)
    for k, t in enumerate(thresholds):
        tp, fp, _tn, fn, _ = binary_stat_scores(torch.from_numpy((p >= t).astype(np.int64)).ravel(),
                                                torch.from_numpy(y).ravel()).tolist()
        assert (whole["tp"][k], whole["fp"][k], whole["fn"][k]) == (tp, fp, fn)
    parts = [M.threshold_counts(p[i], y[i], thresholds) for i in range(6)]   # one curve at a time
    summed = {**parts[0], **{k: [sum(c[k][j] for c in parts) for j in range(5)] for k in ("tp", "fp", "fn")},
              "n": sum(c["n"] for c in parts), "n_dropped": 0}
    assert M.threshold_sweep(summed) == M.threshold_sweep(p, y, thresholds)


# ============================================================================ PR and ROC

# scores .1 .4 .35 .8 with targets 0 0 1 1. A sample is positive when score >= threshold.
#   t = .10: all four          TP 2 FP 2 -> precision 1/2, recall 1
#   t = .35: .35, .4, .8       TP 2 FP 1 -> precision 2/3, recall 1
#   t = .40: .4, .8            TP 1 FP 1 -> precision 1/2, recall 1/2
#   t = .80: .8                TP 1 FP 0 -> precision 1,   recall 1/2
#   end point                             precision 1,   recall 0
# AP = sum over falling thresholds of (recall step) x precision = 1/2 * 1 + 0 * 1/2 + 1/2 * 2/3 = 5/6
# ROC from the strictest: (fpr, tpr) = (0,0) (0,1/2) (1/2,1/2) (1/2,1) (1,1); AUROC = 3 of 4 pos/neg pairs = 3/4
SCORES = [0.1, 0.4, 0.35, 0.8]
LABELS = [0, 0, 1, 1]


def test_pr_points_by_hand():
    r = M.pr_curve(SCORES, LABELS)
    assert same(r["thresholds"], [0.1, 0.35, 0.4, 0.8])
    assert same(r["precision"], [0.5, 2 / 3, 0.5, 1.0, 1.0]) and same(r["recall"], [1.0, 1.0, 0.5, 0.5, 0.0])
    assert r["average_precision"] == pytest.approx(5 / 6, abs=1e-6) and r["n_positive"] == 2
    json.dumps(r)


def test_roc_by_hand():
    r = M.roc_curve(torch.tensor(SCORES), torch.tensor(LABELS))
    assert same(r["fpr"], [0, 0, 0.5, 0.5, 1]) and same(r["tpr"], [0, 0.5, 0.5, 1, 1])
    assert r["auroc"] == pytest.approx(0.75, abs=1e-6)


def test_pr_on_a_threshold_grid():
    # t = 0: all -> P 1/2 R 1; t = .5: only .8 -> P 1 R 1/2; t = 1: nothing predicted -> precision undefined
    r = M.pr_curve(SCORES, LABELS, thresholds=[0.0, 0.5, 1.0])
    assert same(r["thresholds"], [0.0, 0.5, 1.0])
    assert same(r["precision"][:3], [0.5, 1.0, nan]) and same(r["recall"][:3], [1.0, 0.5, 0.0])


def test_curves_without_a_class_and_bad_input():
    r = M.pr_curve([0.2, 0.3, np.nan], [0, 0, 1])               # the only positive has no score
    assert r["n"] == 2 and r["n_dropped"] == 1 and math.isnan(r["average_precision"]) and r["precision"] == []
    assert math.isnan(M.roc_curve([0.2, 0.3], [1, 1])["auroc"])
    with pytest.raises(ValueError, match="one class at a time"):
        M.pr_curve(np.zeros((3, 2)), [0, 1, 1])
    with pytest.raises(ValueError, match="shape mismatch"):
        M.roc_curve([0.1, 0.2], [0, 1, 1])
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\)"):
        M.roc_curve([0.1, 0.2], [0, 2])
    with pytest.raises(ValueError, match="probabilities"):
        M.pr_curve([-2.0, 3.0], [0, 1])                        # logits


def test_importing_metrics_stays_light():
    import subprocess
    import sys

    code = "import sys, astrotool.ml.metrics; print(any(m in sys.modules for m in ('torch', 'torchmetrics')))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() \
        == "False"


# ============================================================================ dtypes


def test_bfloat16_tensors_as_validate_gets_them_under_bf16_mixed():
    out = torch.tensor([0.5, 1.5, 2.0, 0.0], dtype=torch.bfloat16)
    r = M.regression_metrics(out, torch.zeros(4))
    assert r["n"] == 4 and r["mae"] == 1.0
    c = M.classification_metrics(torch.tensor([0.25, 0.75], dtype=torch.bfloat16), torch.tensor([0, 1]))
    assert c["accuracy"] == 1.0
    roc = M.roc_curve(torch.tensor([0.25, 0.75, 0.5], dtype=torch.bfloat16), torch.tensor([0, 1, 0]))
    assert roc["auroc"] == 1.0


def test_ratios_are_float64_exact():
    # 13 of 20 right: 0.65 exactly in float64 (float32 gives 0.6499999761581421)
    y = np.array([1] * 10 + [0] * 10)
    p = np.array([1] * 7 + [0] * 3 + [0] * 6 + [1] * 4, float)
    c = M.classification_metrics(p, y)
    assert c["accuracy"] == 13 / 20
    assert c["recall"] == [6 / 10, 7 / 10] and c["precision"] == [6 / 9, 7 / 11]
    assert c["macro_f1"] == (2 * 6 / 19 + 2 * 7 / 21) / 2
    s = M.segmentation_metrics(p.astype(bool), y.astype(bool))
    assert s["iou"] == 7 / 14 and s["dice"] == 14 / 21
    s3 = M.segmentation_metrics(p.astype(int), y, num_classes=3)
    assert s3["iou"][:2] == [6 / 13, 7 / 14] and math.isnan(s3["iou"][2])
    # AUROC 1 - (discordant pairs)/(10*10); scores 0.1 .. 2.0
    scores = np.arange(1, 21) / 20
    scores[[0, 19]] = scores[[19, 0]]  # one positive drops to the bottom, one negative rises to the top
    roc = M.roc_curve(scores, y[::-1])
    pos, neg = scores[y[::-1] == 1], scores[y[::-1] == 0]
    assert roc["auroc"] == (pos[:, None] > neg[None, :]).mean()
    pr = M.pr_curve(np.array([0.9, 0.8, 0.7]), np.array([1, 0, 1]))
    assert pr["average_precision"] == (1 + 2 / 3) / 2
    assert torch.get_default_dtype() == torch.float32  # put back


def test_exact_curves_leave_torchs_default_dtype_alone(monkeypatch):
    """roc_curve and pr_curve set torch's default dtype to float64 for a while: it is the process's, so
    another thread's tensors were float64 meanwhile."""
    calls = []
    monkeypatch.setattr(torch, "set_default_dtype", lambda d: calls.append(d))
    rng = np.random.default_rng(0)
    s, y = rng.random(50), np.r_[np.zeros(25, int), np.ones(25, int)]
    for f in (M.roc_curve, M.pr_curve):
        f(s, y)
        f(s, y, thresholds=5)
    assert calls == []


def test_exact_curves_match_torchmetrics_and_sklearn():
    from torchmetrics.functional.classification import binary_average_precision, binary_auroc, binary_roc

    sklearn = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(3)
    for trial in range(40):
        n = int(rng.integers(2, 120))
        y = rng.integers(0, 2, n)
        y[:2] = [0, 1]
        s = rng.random(n) if trial % 2 else np.round(rng.random(n), 1)   # ties too
        roc, pr = M.roc_curve(s, y), M.pr_curve(s, y)
        fpr, tpr, thr = binary_roc(torch.tensor(s), torch.tensor(y))
        assert np.allclose(roc["fpr"], fpr.double()) and np.allclose(roc["tpr"], tpr.double())
        assert np.allclose(roc["thresholds"], thr.double())
        assert roc["auroc"] == pytest.approx(float(binary_auroc(torch.tensor(s), torch.tensor(y))), abs=1e-6)
        assert roc["auroc"] == pytest.approx(sklearn.roc_auc_score(y, s), abs=1e-15)
        assert pr["average_precision"] == pytest.approx(float(binary_average_precision(torch.tensor(s),
                                                                                       torch.tensor(y))), abs=1e-6)
        assert pr["average_precision"] == pytest.approx(sklearn.average_precision_score(y, s), abs=1e-15)
