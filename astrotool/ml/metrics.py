"""Model metrics as plain Python numbers, ready for JSON reports.

Every function accepts numpy arrays, sequences or torch tensors (any device)
and returns Python ``float``/``int``/``list``/``dict`` values. The numbers come
from `torchmetrics <https://lightning.ai/docs/torchmetrics>`_ (imported inside
the functions, with float64 inputs) wherever it has the metric, in float64:
tensors of any float type (bfloat16 under ``bf16-mixed`` too) are converted,
classification and segmentation ratios are computed here from torchmetrics'
confusion counts (its own ratios are float32), the exact threshold curves are
counted here with torchmetrics' recipe (its counts are float32, torch's default
float type, which is never changed here: it is the whole process's), and only
the binned curves (``thresholds`` a number or a list) stay float32; the few
pieces written here are said so in their docstrings.

Conventions
-----------
* **Non-finite inputs are dropped, never propagated.** Regression drops a pair
  when either value is NaN/inf; classification and calibration drop a row whose
  scores or target are non-finite; segmentation drops such pixels. Every result
  carries ``n`` (what was used) and ``n_dropped``.
* **Undefined is NaN, never a silent 0.** A metric with a zero denominator
  (recall of a class with no true samples, precision of a class never
  predicted, IoU of a class absent from both masks, R² of a constant target,
  AP without positives, AUROC without both classes, any metric of an empty
  input) is ``float("nan")``. Macro averages are the mean over the classes
  where the metric is defined.
* **Bad input raises ValueError** with a message saying what is wrong: shape
  mismatch, labels outside ``[0, num_classes)``, probabilities outside
  ``[0, 1]``, a class axis that does not match ``num_classes``.
* A probability counts as positive when ``p >= threshold``.

Regression: :func:`rmse`, :func:`mae`, :func:`regression_metrics`.
Classification: :func:`classification_metrics`. Calibration:
:func:`calibration_metrics` (ECE plus the bins of a reliability diagram).
Segmentation: :func:`segmentation_metrics` (IoU and Dice) and
:func:`threshold_sweep` (precision, recall, F1, IoU per threshold; from the
counts of :func:`threshold_counts`, which add up over batches). Threshold
curves: :func:`pr_curve`, :func:`roc_curve`.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

__docformat__ = "numpy"

__all__ = [
    "rmse", "mae", "regression_metrics", "classification_metrics", "calibration_metrics",
    "segmentation_metrics", "threshold_counts", "threshold_sweep", "pr_curve", "roc_curve",
]

NAN = float("nan")


# ============================================================================ input handling


def _array(x, name: str) -> np.ndarray:
    """``x`` as a numpy array (a torch tensor is detached and moved to the CPU)."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu()
        if x.is_floating_point():  # numpy has no bfloat16: what validate() gets under bf16-mixed
            x = x.double()
        x = x.numpy()
    a = np.asarray(x)
    if a.dtype == object:
        raise ValueError(f"{name}: expected numbers, got objects")
    if a.dtype.kind not in "biuf":
        raise ValueError(f"{name}: expected numbers, got dtype {a.dtype}")
    return a


def _same_shape(a: np.ndarray, b: np.ndarray, na: str, nb: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch: {na} has shape {a.shape}, {nb} has shape {b.shape}")


def _t(a: np.ndarray, dtype: str = "float64"):
    """A numpy array as a CPU torch tensor."""
    import torch

    return torch.as_tensor(np.ascontiguousarray(a), dtype=getattr(torch, dtype))


def _labels(a: np.ndarray, name: str, num_classes: int) -> np.ndarray:
    """Check integer class labels in ``[0, num_classes)``; return them as int64."""
    if a.size and a.dtype.kind == "f" and not np.all(a == np.round(a)):
        raise ValueError(f"{name}: class labels must be integers")
    a = a.astype(np.int64)
    if a.size and (a.min() < 0 or a.max() >= num_classes):
        raise ValueError(f"{name}: labels must lie in [0, {num_classes}), found "
                         f"{int(a.min())}..{int(a.max())}")
    return a


def _probabilities(a: np.ndarray, name: str) -> None:
    if a.size and (a.min() < 0 or a.max() > 1):
        raise ValueError(f"{name}: expected probabilities in [0, 1], found {float(a.min()):g}..{float(a.max()):g} "
                         "(apply sigmoid/softmax to logits first)")


def _floats(x) -> list:
    return [float(v) for v in np.asarray(x, float).ravel()]


def _nanmean(x) -> float:
    x = np.asarray(x, float)
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else NAN


def _ratio(num, den) -> np.ndarray:
    """num / den elementwise, NaN where den == 0."""
    num, den = np.asarray(num, float), np.asarray(den, float)
    out = np.full(np.broadcast(num, den).shape, np.nan)
    np.divide(num, den, out=out, where=den != 0)
    return out


# ============================================================================ regression


def _finite_pairs(pred, true) -> tuple[np.ndarray, np.ndarray, int]:
    p, t = _array(pred, "pred").astype(float), _array(true, "true").astype(float)
    _same_shape(p, t, "pred", "true")
    p, t = p.ravel(), t.ravel()
    ok = np.isfinite(p) & np.isfinite(t)
    return p[ok], t[ok], int((~ok).sum())


def rmse(pred, true) -> float:
    """Root-mean-square error over finite pairs (NaN when none); see :func:`regression_metrics`.

    Parameters
    ----------
    pred, true : array-like
        Same shape; flattened.
    """
    return regression_metrics(pred, true)["rmse"]


def mae(pred, true) -> float:
    """Mean absolute error over finite pairs (NaN when none); see :func:`regression_metrics`.

    Parameters
    ----------
    pred, true : array-like
        Same shape; flattened.
    """
    return regression_metrics(pred, true)["mae"]


def _regression(p: np.ndarray, t: np.ndarray, dropped: int) -> dict:
    n = int(p.size)
    out = {"n": n, "n_dropped": dropped, "mse": NAN, "rmse": NAN, "mae": NAN, "bias": NAN, "r2": NAN}
    if not n:
        return out
    from torchmetrics.functional.regression import mean_absolute_error, mean_squared_error, r2_score

    tp, tt = _t(p), _t(t)
    mse = float(mean_squared_error(tp, tt))
    out.update(mse=mse, rmse=math.sqrt(mse), mae=float(mean_absolute_error(tp, tt)), bias=float(np.mean(p - t)))
    if n >= 2 and np.ptp(t) > 0:
        out["r2"] = float(r2_score(tp, tt))
    return out


def regression_metrics(pred, true, names: Sequence[str] | None = None) -> dict:
    """MSE, RMSE, MAE, mean bias and R² over finite pairs.

    Parameters
    ----------
    pred, true : array-like
        Same shape: per-sample values, or maps (e.g. κ maps ``(N, H, W)``),
        pooled over every element.
    names : sequence of str, optional
        Names of the output components along the **last** axis (e.g.
        ``("g1", "g2")`` for ``(N, 2)``): each component is scored on its own.

    Returns
    -------
    dict
        Without ``names``: ``n, n_dropped, mse, rmse, mae, bias, r2`` (bias =
        mean(pred - true), in the units of the data; R² is NaN with fewer than 2
        pairs or a constant target). With ``names``: ``{name: that dict}``.

    Raises
    ------
    ValueError
        Shape mismatch, or ``len(names)`` differs from the last axis.
    """
    p, t = _array(pred, "pred").astype(float), _array(true, "true").astype(float)
    _same_shape(p, t, "pred", "true")
    if names is None:
        return _regression(*_finite_pairs(p, t))
    names = list(names)
    if p.ndim == 0 or p.shape[-1] != len(names):
        raise ValueError(f"{len(names)} component names {names} for a last axis of length "
                         f"{p.shape[-1] if p.ndim else 0} (shape {p.shape})")
    return {name: _regression(*_finite_pairs(p[..., k], t[..., k])) for k, name in enumerate(names)}


# ============================================================================ classification


def _class_inputs(pred, target, num_classes: int | None, threshold: float, class_names):
    """(predicted labels, target labels, scores or None, num_classes, n_dropped) over usable rows."""
    p, y = _array(pred, "pred"), _array(target, "target")
    if class_names is not None:
        if num_classes is not None and num_classes != len(class_names):
            raise ValueError(f"num_classes={num_classes} but {len(class_names)} class names")
        num_classes = len(class_names)
    if y.ndim != 1:
        raise ValueError(f"target: expected a 1-D array of class labels, got shape {y.shape}")
    if p.ndim == 2:                                     # probabilities (N, C)
        if p.shape[0] != y.shape[0]:
            raise ValueError(f"shape mismatch: pred has {p.shape[0]} rows, target has {y.shape[0]}")
        if num_classes is None:
            num_classes = p.shape[1]
        if p.shape[1] != num_classes:
            raise ValueError(f"pred has {p.shape[1]} class columns but num_classes is {num_classes}")
        ok = np.all(np.isfinite(p), axis=1) & np.isfinite(y.astype(float))
        scores = p[ok].astype(float)
        _probabilities(scores, "pred")
        labels = scores.argmax(axis=1) if scores.size else np.zeros(0, np.int64)
    elif p.ndim == 1:
        _same_shape(p, y, "pred", "target")
        ok = np.isfinite(p.astype(float)) & np.isfinite(y.astype(float))
        if p.dtype.kind == "f":                         # probabilities of class 1
            if num_classes not in (None, 2):
                raise ValueError(f"1-D probabilities describe 2 classes, not num_classes={num_classes}")
            num_classes = 2
            scores = p[ok].astype(float)
            _probabilities(scores, "pred")
            labels = (scores >= threshold).astype(np.int64)
        else:
            if num_classes is None:
                raise ValueError("pred holds class labels: give num_classes (or class_names)")
            scores = None
            labels = _labels(p[ok], "pred", num_classes)
    else:
        raise ValueError(f"pred: expected labels (N,) or probabilities (N, C), got shape {p.shape}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}")
    return labels, _labels(y[ok], "target", num_classes), scores, num_classes, int((~ok).sum())


def _per_class(cm: np.ndarray):
    """Per-class recall, precision and F1 (float64, NaN where undefined), support and predicted counts of a
    confusion matrix (rows: true class): torchmetrics' ``average="none"`` ratios, computed here in float64
    from its counts (its own come in float32)."""
    cm = np.asarray(cm, np.int64)
    diag, support, predicted = np.diag(cm).astype(float), cm.sum(axis=1), cm.sum(axis=0)
    recall, precision = _ratio(diag, support), _ratio(diag, predicted)
    f1 = _ratio(2 * diag, support + predicted)
    return recall, precision, f1, support, predicted


def classification_metrics(pred, target, num_classes: int | None = None, class_names: Sequence[str] | None = None,
                           threshold: float = 0.5) -> dict:
    """Accuracy, macro-F1, per-class recall/precision/F1 and the confusion matrix.

    Parameters
    ----------
    pred : array-like
        Class labels ``(N,)`` (integer or bool dtype), probabilities ``(N, C)``
        (the arg-max is the prediction) or, for two classes, probabilities of
        class 1 ``(N,)`` (float dtype; positive when ``p >= threshold``).
    target : array-like
        True class labels ``(N,)`` in ``[0, num_classes)``.
    num_classes : int, optional
        Needed when ``pred`` holds labels; otherwise from the probabilities or
        ``class_names``.
    class_names : sequence of str, optional
        Copied into the result (default ``"0", "1", ...``).
    threshold : float
        For 1-D probabilities only.

    Returns
    -------
    dict
        ``n, n_dropped, num_classes, class_names, accuracy, macro_f1,
        macro_recall, macro_precision, macro_classes`` and per class (lists) ``recall,
        precision, f1, support``, and ``confusion`` (list of rows: row = true
        class, column = predicted class, counts). Per-class recall is NaN for a
        class with no true sample, precision NaN for a class never predicted, F1
        NaN for a class absent from both. The three macro averages are over one set
        of classes, those present in the targets (``macro_classes``): macro-recall
        is the balanced accuracy, a class never predicted counts as precision 0 (as
        scikit-learn's ``zero_division=0``; its per-class ``precision`` stays NaN)
        and F1 0, and a class predicted but absent from the targets is left out
        (its wrong predictions lower the recall of the classes they belong to).

    Raises
    ------
    ValueError
        Shape mismatch, labels outside ``[0, num_classes)``, a class axis of the
        wrong length, probabilities outside ``[0, 1]``.
    """
    labels, y, _, k, dropped = _class_inputs(pred, target, num_classes, threshold, class_names)
    names = [str(c) for c in class_names] if class_names is not None else [str(c) for c in range(k)]
    n = int(y.size)
    out = {"n": n, "n_dropped": dropped, "num_classes": k, "class_names": names}
    if not n:
        nan_k = [NAN] * k
        out.update(accuracy=NAN, macro_f1=NAN, macro_recall=NAN, macro_precision=NAN, macro_classes=[], recall=nan_k,
                   precision=nan_k, f1=nan_k, support=[0] * k, confusion=[[0] * k for _ in range(k)])
        return out
    from torchmetrics.functional.classification import multiclass_confusion_matrix

    tp_, ty = _t(labels, "int64"), _t(y, "int64")
    cm = multiclass_confusion_matrix(tp_, ty, num_classes=k).numpy().astype(np.int64)
    recall, precision, f1, support, predicted = _per_class(cm)
    present = support > 0   # the classes of the macro averages
    out.update(
        accuracy=float(np.trace(cm) / n),
        macro_f1=_nanmean(f1[present]), macro_recall=_nanmean(recall[present]),
        macro_precision=_nanmean(np.where(predicted == 0, 0.0, precision)[present]),
        macro_classes=[c for c, p in zip(names, present) if p],
        recall=_floats(recall), precision=_floats(precision), f1=_floats(f1),
        support=[int(s) for s in support], confusion=cm.tolist(),
    )
    return out


# ============================================================================ calibration


def calibration_metrics(probs, target, n_bins: int = 15) -> dict:
    """Expected and maximum calibration error, with the reliability-diagram bins.

    Parameters
    ----------
    probs : array-like
        Probabilities ``(N, C)`` (top-label calibration: confidence = the
        largest probability, correct = its class is the target) or, for a binary
        task, probabilities of class 1 ``(N,)`` (confidence = p, "accuracy" =
        fraction of positives in the bin).
    target : array-like
        Class labels ``(N,)``.
    n_bins : int
        Equal-width bins over [0, 1].

    Returns
    -------
    dict
        ``ece`` (L1 calibration error) and ``mce`` (largest bin gap), both from
        torchmetrics; ``n, n_dropped, n_bins``; ``edges`` (``n_bins + 1``) and
        per bin ``confidence`` (mean), ``accuracy`` (mean) and ``count``
        (NaN confidence/accuracy in an empty bin).

    Notes
    -----
    torchmetrics does not expose its bins, so they are computed here with the
    same rule (bin k holds ``edges[k] <= p < edges[k+1]``) except that a
    confidence of exactly 1 falls in the last bin, where torchmetrics gives it
    a bin of its own. Without such values ``sum(count/n * |accuracy -
    confidence|)`` equals ``ece``.
    """
    if not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
    p = _array(probs, "probs")
    if p.dtype.kind != "f":
        raise ValueError("probs: expected probabilities (floats), got integers")
    labels, y, scores, k, dropped = _class_inputs(p, target, None, 0.5, None)
    n = int(y.size)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    out = {"n": n, "n_dropped": dropped, "n_bins": int(n_bins), "ece": NAN, "mce": NAN, "edges": _floats(edges),
           "confidence": [NAN] * n_bins, "accuracy": [NAN] * n_bins, "count": [0] * n_bins}
    if not n:
        return out
    from torchmetrics.functional.classification import binary_calibration_error, multiclass_calibration_error

    if scores.ndim == 1:
        conf, hit = scores, y.astype(float)
        ece = binary_calibration_error(_t(conf), _t(y, "int64"), n_bins=n_bins, norm="l1")
        mce = binary_calibration_error(_t(conf), _t(y, "int64"), n_bins=n_bins, norm="max")
    else:
        conf, hit = scores.max(axis=1), (labels == y).astype(float)
        ece = multiclass_calibration_error(_t(scores), _t(y, "int64"), num_classes=k, n_bins=n_bins, norm="l1")
        mce = multiclass_calibration_error(_t(scores), _t(y, "int64"), num_classes=k, n_bins=n_bins, norm="max")
    idx = np.clip(np.searchsorted(edges, conf, side="right") - 1, 0, n_bins - 1)
    count = np.bincount(idx, minlength=n_bins)
    out.update(ece=float(ece), mce=float(mce), count=[int(c) for c in count],
               confidence=_floats(_ratio(np.bincount(idx, conf, n_bins), count)),
               accuracy=_floats(_ratio(np.bincount(idx, hit, n_bins), count)))
    return out


# ============================================================================ segmentation


def segmentation_metrics(pred, target, num_classes: int | None = None, threshold: float = 0.5) -> dict:
    """IoU (Jaccard) and Dice of masks, pooled over every pixel of every sample.

    Parameters
    ----------
    pred : array-like
        Binary task (``num_classes`` None): probabilities (positive when
        ``p >= threshold``) or 0/1 labels, same shape as ``target``.
        Multi-class: labels of the same shape as ``target``, or probabilities
        with the class axis at position 1 (``(N, C, ...)`` for a target
        ``(N, ...)``; the arg-max is the prediction).
    target : array-like
        0/1 (binary) or class labels in ``[0, num_classes)``.
    num_classes : int, optional
        Set for a multi-class segmentation.
    threshold : float
        For binary probabilities.

    Returns
    -------
    dict
        Binary: ``n, n_dropped, iou, dice, tp, fp, fn``. Multi-class: ``n,
        n_dropped, num_classes``, per class (lists) ``iou, dice, support`` and
        ``mean_iou, mean_dice`` over the classes present in either mask. IoU =
        TP/(TP+FP+FN), Dice = 2TP/(2TP+FP+FN) (= pixel F1); both NaN for a class
        absent from both masks. Pixels with a non-finite prediction or target are
        dropped.
    """
    p, y = _array(pred, "pred"), _array(target, "target")
    if num_classes is None:
        _same_shape(p, y, "pred", "target")
        p, y = p.ravel(), y.ravel()
        ok = np.isfinite(p.astype(float)) & np.isfinite(y.astype(float))
        p, y = p[ok], y[ok]
        if p.dtype.kind == "f":
            _probabilities(p, "pred")
        lab = (p >= threshold).astype(np.int64) if p.dtype.kind == "f" else _labels(p, "pred", 2)
        y = _labels(y, "target", 2)
        out = {"n": int(y.size), "n_dropped": int((~ok).sum()), "iou": NAN, "dice": NAN, "tp": 0, "fp": 0, "fn": 0}
        if not y.size:
            return out
        from torchmetrics.functional.classification import binary_stat_scores

        tp, fp, _tn, fn, _ = (int(v) for v in binary_stat_scores(_t(lab, "int64"), _t(y, "int64")))
        out.update(tp=tp, fp=fp, fn=fn)
        if tp + fp + fn:  # torchmetrics' Jaccard index and F1, in float64 from its counts
            out.update(iou=tp / (tp + fp + fn), dice=2 * tp / (2 * tp + fp + fn))
        return out

    if p.shape == y.shape:
        ok = np.isfinite(p.astype(float)) & np.isfinite(y.astype(float))
        lab = _labels(p[ok], "pred", num_classes)
    elif p.ndim == y.ndim + 1 and p.shape[:1] + p.shape[2:] == y.shape:
        if p.shape[1] != num_classes:
            raise ValueError(f"pred has {p.shape[1]} classes on axis 1 but num_classes is {num_classes}")
        p = np.moveaxis(p, 1, -1)
        ok = np.all(np.isfinite(p), axis=-1) & np.isfinite(y.astype(float))
        _probabilities(p[ok], "pred")
        lab = p[ok].argmax(axis=-1)
    else:
        raise ValueError(f"shape mismatch: pred {p.shape} is neither the target's shape {y.shape} nor "
                         f"(N, C, ...) around it")
    y = _labels(y[ok], "target", num_classes)
    k = num_classes
    out = {"n": int(y.size), "n_dropped": int((~ok).sum()), "num_classes": k}
    if not y.size:
        out.update(iou=[NAN] * k, dice=[NAN] * k, support=[0] * k, mean_iou=NAN, mean_dice=NAN)
        return out
    from torchmetrics.functional.classification import multiclass_confusion_matrix

    cm = multiclass_confusion_matrix(_t(lab, "int64"), _t(y, "int64"), num_classes=k).numpy().astype(np.int64)
    _, _, dice, support, predicted = _per_class(cm)  # NaN for a class absent from both
    iou = _ratio(np.diag(cm), support + predicted - np.diag(cm))
    out.update(iou=_floats(iou), dice=_floats(dice), support=[int(s) for s in support],
               mean_iou=_nanmean(iou), mean_dice=_nanmean(dice))
    return out


def threshold_counts(scores, target, thresholds: Sequence[float]) -> dict:
    """Binary counts at each threshold, to sum over batches before :func:`threshold_sweep`.

    Parameters
    ----------
    scores : array-like
        Probabilities of the positive class, any shape (e.g. ``(N, L)``
        per-sample light-curve masks, pooled over every element).
    target : array-like
        0/1 labels, same shape.
    thresholds : sequence of float
        E.g. ``numpy.arange(0.05, 1, 0.05)``; positive when ``p >= t``.

    Returns
    -------
    dict
        ``thresholds`` and per threshold (lists) ``tp, fp, fn``; ``n,
        n_dropped``. Counts of several batches add up key by key.

    Notes
    -----
    Project-own: each score is placed among the sorted thresholds once
    (``searchsorted``) and the counts are cumulative sums of a histogram, so
    the cost is O(N log T) in time and O(T) in memory (torchmetrics' binned
    curves compare every score with every threshold: an N x T array, 735 MiB
    for 64 PLATO quarters). A test checks the counts against torchmetrics'
    ``binary_stat_scores``.
    """
    t_ = np.asarray(thresholds, float).ravel()
    if not t_.size:
        raise ValueError("thresholds: give at least one threshold")
    p, y = _array(scores, "scores"), _array(target, "target")
    _same_shape(p, y, "scores", "target")
    p, y = p.ravel(), y.ravel()
    ok = np.isfinite(p.astype(float)) & np.isfinite(y.astype(float))
    p, y = p[ok].astype(float), _labels(y[ok], "target", 2)
    _probabilities(p, "scores")
    order = np.argsort(t_, kind="stable")
    above = np.searchsorted(t_[order], p, side="right")          # thresholds each score reaches
    reach = np.cumsum(np.bincount(above, minlength=t_.size + 1)[::-1])[::-1][1:]
    reach_pos = np.cumsum(np.bincount(above[y == 1], minlength=t_.size + 1)[::-1])[::-1][1:]
    tp = np.empty(t_.size, np.int64)
    fp = np.empty(t_.size, np.int64)
    tp[order], fp[order] = reach_pos, reach - reach_pos
    fn = int((y == 1).sum()) - tp
    return {"n": int(y.size), "n_dropped": int((~ok).sum()), "thresholds": _floats(t_),
            "tp": [int(v) for v in tp], "fp": [int(v) for v in fp], "fn": [int(v) for v in fn]}


def threshold_sweep(scores, target=None, thresholds: Sequence[float] | None = None) -> dict:
    """Binary precision, recall, F1 (= Dice) and IoU at each of a few thresholds.

    Parameters
    ----------
    scores : array-like or dict
        Probabilities of the positive class, any shape (pooled over every
        element); or the (summed) result of :func:`threshold_counts`, for a
        set evaluated batch by batch.
    target : array-like
        0/1 labels, same shape (not with counts).
    thresholds : sequence of float
        E.g. ``numpy.arange(0.05, 1, 0.05)``; positive when ``p >= t`` (not
        with counts).

    Returns
    -------
    dict
        ``thresholds`` and per threshold (lists) ``tp, fp, fn, precision,
        recall, f1, iou``; ``best`` = the threshold with the largest IoU
        (``{"threshold", "iou", "f1", "precision", "recall"}``, NaN when no
        IoU is defined); ``n, n_dropped``. NaN where a ratio has no
        denominator (precision when nothing reaches the threshold, everything
        when there is nothing to find and nothing found).
    """
    counts = scores if isinstance(scores, dict) else threshold_counts(scores, target, thresholds)
    t_ = np.asarray(counts["thresholds"], float)
    tp, fp, fn = (np.asarray(counts[k], np.int64) for k in ("tp", "fp", "fn"))
    prec, rec = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    f1, iou = _ratio(2 * tp, 2 * tp + fp + fn), _ratio(tp, tp + fp + fn)
    best = {"threshold": NAN, "iou": NAN, "f1": NAN, "precision": NAN, "recall": NAN}
    if np.isfinite(iou).any():
        k = int(np.nanargmax(iou))
        best = {"threshold": float(t_[k]), "iou": float(iou[k]), "f1": float(f1[k]), "precision": float(prec[k]),
                "recall": float(rec[k])}
    return {"n": int(counts["n"]), "n_dropped": int(counts["n_dropped"]), "thresholds": _floats(t_),
            "tp": [int(v) for v in tp], "fp": [int(v) for v in fp], "fn": [int(v) for v in fn],
            "precision": _floats(prec), "recall": _floats(rec), "f1": _floats(f1), "iou": _floats(iou), "best": best}


# ============================================================================ threshold curves


def _binary_scores(scores, target) -> tuple[np.ndarray, np.ndarray, int]:
    s, y = _array(scores, "scores"), _array(target, "target")
    if s.ndim != 1:
        raise ValueError(f"scores: expected one score per sample (N,), got shape {s.shape}; for several classes "
                         "pass probs[:, k] and (target == k) one class at a time")
    _same_shape(s, y, "scores", "target")
    ok = np.isfinite(s.astype(float)) & np.isfinite(y.astype(float))
    s = s[ok].astype(float)
    _probabilities(s, "scores")        # torchmetrics would pass other scores through a sigmoid, thresholds too
    return s, _labels(y[ok], "target", 2), int((~ok).sum())


def _exact_curve(s: np.ndarray, y: np.ndarray):
    """The counts of an exact curve, as torchmetrics' ``_binary_clf_curve`` makes them (that one counts in
    torch's default float type, float32, and has no float64 option): per distinct score from the highest
    down, the false and true positives of ``score >= threshold`` as float64 tensors (counted as int64),
    and those thresholds. Written here."""
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]  # the last sample of each distinct score
    tps = np.cumsum(y, dtype=np.int64)[last]
    fps = last + 1 - tps
    return _t(fps), _t(tps), _t(s[last])


def _trapz(y, x) -> float:
    import torch

    return float(torch.trapz(y, x))


def _thresholds(thresholds):
    if thresholds is None or isinstance(thresholds, (int, np.integer)):
        return thresholds
    return _t(np.asarray(thresholds, float))


def pr_curve(scores, target, thresholds: int | Sequence[float] | None = None) -> dict:
    """Precision–recall curve and average precision of a binary score.

    Parameters
    ----------
    scores : array-like
        One probability of being positive per sample ``(N,)``, in [0, 1].
        For a class ``k`` of a multi-class model: ``probs[:, k]`` with
        ``target == k``.
    target : array-like
        0/1 labels ``(N,)``.
    thresholds : int or sequence of float, optional
        None: exact curve, one point per distinct score (O(N log N) memory).
        An int: that many thresholds spread over [0, 1]; a sequence: those
        thresholds (constant memory, use it for millions of samples).

    Returns
    -------
    dict
        ``precision, recall`` (lists; torchmetrics appends the end point
        ``(recall 0, precision 1)``), ``thresholds`` (one fewer), where a
        sample counts as positive when ``score >= threshold``;
        ``average_precision``; ``n, n_dropped, n_positive``. Precision at a
        threshold nothing reaches is NaN on a fixed grid; without positives
        the curve is empty and AP is NaN.
    """
    s, y, dropped = _binary_scores(scores, target)
    npos = int(y.sum())
    out = {"n": int(y.size), "n_dropped": dropped, "n_positive": npos, "precision": [], "recall": [],
           "thresholds": [], "average_precision": NAN}
    if not npos:
        return out
    if thresholds is None:  # exact: counted here, ratios in float64 (torchmetrics' recipe, end point appended)
        import torch

        fps, tps, thr = _exact_curve(s, y)
        prec = torch.cat([(tps / (tps + fps)).flip(0), torch.ones(1, dtype=torch.float64)])
        rec = torch.cat([(tps / tps[-1]).flip(0), torch.zeros(1, dtype=torch.float64)])
        out.update(precision=_floats(prec), recall=_floats(rec), thresholds=_floats(thr.flip(0)),
                   average_precision=float(-torch.sum((rec[1:] - rec[:-1]) * prec[:-1])))
        return out
    from torchmetrics.functional.classification import binary_average_precision, binary_precision_recall_curve

    ts, ty, th = _t(s), _t(y, "int64"), _thresholds(thresholds)
    prec, rec, thr = binary_precision_recall_curve(ts, ty, thresholds=th)
    ap = binary_average_precision(ts, ty, thresholds=th)
    out.update(precision=_floats(prec), recall=_floats(rec), thresholds=_floats(thr), average_precision=float(ap))
    return out


def roc_curve(scores, target, thresholds: int | Sequence[float] | None = None) -> dict:
    """ROC curve and area under it (AUROC) of a binary score.

    Parameters
    ----------
    scores, target, thresholds
        As in :func:`pr_curve`.

    Returns
    -------
    dict
        ``fpr, tpr, thresholds`` (lists, from the strictest threshold down),
        ``auroc``, ``n, n_dropped, n_positive``. Without both classes the
        curve is empty and AUROC is NaN.
    """
    s, y, dropped = _binary_scores(scores, target)
    npos = int(y.sum())
    out = {"n": int(y.size), "n_dropped": dropped, "n_positive": npos, "fpr": [], "tpr": [], "thresholds": [],
           "auroc": NAN}
    if npos == 0 or npos == y.size:
        return out
    if thresholds is None:  # exact: counted here, ratios in float64 (torchmetrics' recipe, from (0, 0) at 1)
        import torch

        zero = torch.zeros(1, dtype=torch.float64)
        fps, tps, thr = _exact_curve(s, y)
        fpr, tpr = torch.cat([zero, fps]) / fps[-1], torch.cat([zero, tps]) / tps[-1]
        out.update(fpr=_floats(fpr), tpr=_floats(tpr), thresholds=_floats(torch.cat([zero + 1, thr])),
                   auroc=_trapz(tpr, fpr))
        return out
    from torchmetrics.functional.classification import binary_auroc, binary_roc

    ts, ty, th = _t(s), _t(y, "int64"), _thresholds(thresholds)
    fpr, tpr, thr = binary_roc(ts, ty, thresholds=th)
    auroc = binary_auroc(ts, ty, thresholds=th)
    out.update(fpr=_floats(fpr), tpr=_floats(tpr), thresholds=_floats(thr), auroc=float(auroc))
    return out
