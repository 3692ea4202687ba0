"""Figures as PNG: matplotlib with the Agg backend (no display needed), written atomically.

Every ``plot_*`` function draws one figure, writes it to ``path`` through
:func:`save_figure` (temporary file + rename: an interrupted or failing plot
never leaves a partial PNG, and an older file at ``path`` stays untouched) and
closes it, so loops that draw thousands of figures do not leak memory.
matplotlib is imported inside the functions.

The plotting functions take the outputs of :mod:`astrotool.ml.metrics` and the
training history of :func:`astrotool.ml.training.fit` as they are:

>>> from astrotool.ml import metrics                              # doctest: +SKIP
>>> plot_confusion("cm.png", metrics.classification_metrics(p, y, class_names=names))
>>> plot_reliability("rel.png", metrics.calibration_metrics(probs, y))
>>> plot_curves("roc.png", {"CNN": metrics.roc_curve(s, y)}, kind="roc")
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import numpy as np

__docformat__ = "numpy"

__all__ = ["pyplot", "save_figure", "figure", "image_norm", "plot_history", "plot_pred_vs_true", "plot_confusion",
           "plot_curves", "plot_reliability"]


def pyplot():
    """``matplotlib.pyplot`` on the non-interactive Agg backend (batch nodes have no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path, dpi: int = 110) -> Path:
    """Save ``fig`` as a PNG atomically and close it (also when saving fails); return the path."""
    from astrotool.workspace import atomic_path

    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=dpi, format="png")
    finally:
        pyplot().close(fig)
    return Path(path)


def image_norm(reference, percentile: float = 99.5, soft: float = 3.0, top=None):
    """An ``astropy.visualization`` asinh normalisation of images, set from the pixels of ``reference``.

    The limits run from 3 sigma below the sky (the sigma-clipped median) to the
    ``percentile`` of the pixels (at least 10 sigma above the sky); the
    ``AsinhStretch`` is linear within ``soft`` sigma of the sky and logarithmic
    above, so faint outskirts and faint objects stand out of the noise while
    bright cores stay within the scale.

    Parameters
    ----------
    reference : numpy.ndarray
        The pixels that set the scale (NaNs ignored), e.g. the data of an object.
    percentile : float
        Upper limit [per cent of the pixels].
    soft : float
        Asinh softening [sky sigma].
    top : numpy.ndarray, optional
        The pixels whose ``percentile`` is the upper limit instead (an object's own pixels, so that a
        brighter neighbour in its stamp does not set the scale); ``reference`` still sets the sky.

    Returns
    -------
    astropy.visualization.ImageNormalize
        Pass it as ``norm=`` to ``imshow``; a colour bar then shows data values.
    """
    from astropy.stats import sigma_clipped_stats
    from astropy.visualization import AsinhStretch, ImageNormalize, ManualInterval

    ref = np.asarray(reference, dtype=float)
    ref = ref[np.isfinite(ref)]
    if ref.size == 0:
        ref = np.zeros(1)
    _, sky, sigma = sigma_clipped_stats(ref, sigma=3.0, maxiters=5)
    sigma = float(sigma) if np.isfinite(sigma) and sigma > 0 else max(float(np.ptp(ref)) / 100, 1e-12)
    lo = float(sky) - 3 * sigma
    peak = np.asarray(top, dtype=float) if top is not None else ref
    peak = peak[np.isfinite(peak)] if peak.size else peak
    hi = max(float(np.percentile(peak if peak.size else ref, percentile)), float(sky) + 10 * sigma)
    a = min(max(soft * sigma / (hi - lo), 1e-4), 1.0)
    return ImageNormalize(interval=ManualInterval(lo, hi), stretch=AsinhStretch(a), clip=False)


@contextlib.contextmanager
def figure(path: str | Path, nrows: int = 1, ncols: int = 1, figsize: tuple[float, float] | None = None,
           title: str = "", dpi: int = 110, **subplots_kw) -> Iterator[tuple]:
    """Draw one figure and save it as ``path`` when the block ends without error.

    Parameters
    ----------
    path : path-like
        Output PNG.
    nrows, ncols, figsize, **subplots_kw
        Passed to ``plt.subplots`` (``squeeze=False`` unless given).
    title : str
        Figure title (``suptitle``).
    dpi : int
        Resolution.

    Yields
    ------
    (matplotlib.figure.Figure, numpy.ndarray of Axes)
        On an exception inside the block the figure is closed and nothing is
        written.

    Examples
    --------
    >>> with figure("out/x.png", 1, 2, figsize=(8, 3)) as (fig, axes):   # doctest: +SKIP
    ...     axes[0, 0].plot(x, y)
    """
    plt = pyplot()
    subplots_kw.setdefault("squeeze", False)
    fig, axes = plt.subplots(nrows, ncols, figsize=figsize, **subplots_kw)
    try:
        yield fig, axes
        if title:
            fig.suptitle(title, fontsize=10)
        fig.tight_layout()
    except BaseException:
        plt.close(fig)
        raise
    save_figure(fig, path, dpi=dpi)


# ============================================================================ training


_HISTORY_SKIP = {"epoch", "step", "lr", "seconds"}


def plot_history(path: str | Path, history: Sequence[Mapping], metrics: Sequence[str] | None = None,
                 title: str = "", log_loss: bool = False) -> Path:
    """Loss and metric curves per epoch.

    Parameters
    ----------
    path : path-like
        Output PNG.
    history : sequence of dict
        One entry per epoch with ``epoch`` (from 0; the axis counts from 1, as the
        training log does), ``train_loss`` and any ``val_*`` values, as
        :func:`astrotool.ml.training.fit` records them.
    metrics : sequence of str, optional
        Keys for the second panel (default: every numeric key other than
        ``epoch, step, lr, seconds`` and the losses). No second panel when
        none remain.
    title : str
    log_loss : bool
        Logarithmic loss axis.

    Raises
    ------
    ValueError
        Empty history, an entry without ``epoch``, or a requested metric that
        no entry has.
    """
    if not history:
        raise ValueError("empty training history: nothing to plot")
    if any("epoch" not in h for h in history):
        raise ValueError("every history entry needs an 'epoch'")
    keys: list[str] = []
    for h in history:
        keys += [k for k, v in h.items() if k not in keys and isinstance(v, (int, float)) and not isinstance(v, bool)]
    losses = [k for k in keys if k.endswith("loss") and k not in _HISTORY_SKIP]
    if metrics is None:
        metrics = [k for k in keys if k not in _HISTORY_SKIP and k not in losses]
    missing = [m for m in metrics if m not in keys]
    if missing:
        raise ValueError(f"no history entry has {missing}; keys are {keys}")
    from matplotlib.ticker import MaxNLocator

    epochs = np.array([h["epoch"] for h in history], float) + 1   # counted from 1, as the log and best_epoch

    def series(key):
        return np.array([h.get(key, np.nan) for h in history], float)

    with figure(path, 1, 2 if metrics else 1, figsize=(9 if metrics else 5, 3.6), title=title) as (fig, axes):
        ax = axes[0, 0]
        for k in losses:
            ax.plot(epochs, series(k), marker="o", ms=3, label=k)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))   # no epoch 1.5
        ax.set_ylabel("loss")
        if log_loss:
            ax.set_yscale("log")
        if losses:
            ax.legend(fontsize=8)
        if metrics:
            ax = axes[0, 1]
            for k in metrics:
                ax.plot(epochs, series(k), marker="o", ms=3, label=k)
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_ylabel("metric")
            ax.legend(fontsize=8)
    return Path(path)


# ============================================================================ regression


def _columns(a, k: int | None, what: str) -> list[np.ndarray]:
    """One 1-D array per output component: from (N,), (N, K) or a sequence of K arrays."""
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    if isinstance(a, (tuple, list)) and a and np.ndim(a[0]) == 1:
        cols = [np.asarray(c, float) for c in a]
    else:
        arr = np.asarray(a, float)
        if arr.ndim == 1:
            cols = [arr]
        elif arr.ndim == 2:
            cols = [arr[:, j] for j in range(arr.shape[1])]
        else:
            raise ValueError(f"{what}: expected (N,), (N, K) or K arrays of (N,), got shape {arr.shape}")
    if k is not None and len(cols) != k:
        raise ValueError(f"{what}: {len(cols)} components, expected {k}")
    return cols


def plot_pred_vs_true(path: str | Path, true, estimates: Mapping, labels: Sequence[str] | None = None,
                      title: str = "", lim: float | None = None, y_span: float = 1.6, symmetric: bool = False) -> Path:
    """Predicted against true values, one column per estimator and one row per output component.

    Parameters
    ----------
    path : path-like
        Output PNG.
    true : array-like
        True values: ``(N,)``, ``(N, K)`` or a sequence of K arrays ``(N,)``.
    estimates : mapping of str to array-like
        Estimator name -> its predictions, shaped like ``true``. Non-finite
        predictions (failures) are left out of the scatter and of the RMSE
        printed in each panel title.
    labels : sequence of str, optional
        Component names (default ``y1, y2, ...``), used in the axis labels.
    title : str
    lim : float, optional
        Half-width of the x range around its centre (default: the true range
        plus 30 %).
    y_span : float
        The y range is ``y_span`` times the x range (room for scatter, while
        far outliers do not squash the plot).
    symmetric : bool
        Centre the ranges on zero (for quantities like shear).

    Raises
    ------
    ValueError
        No estimator, or shapes that do not match.
    """
    from astrotool.ml.metrics import rmse

    if not estimates:
        raise ValueError("no estimates to plot")
    tcols = _columns(true, None, "true")
    k = len(tcols)
    ecols = {name: _columns(e, k, f"estimates[{name!r}]") for name, e in estimates.items()}
    for name, cols in ecols.items():
        for c, t in zip(cols, tcols):
            if c.shape != t.shape:
                raise ValueError(f"estimates[{name!r}] has {c.shape[0]} values per component, true has {t.shape[0]}")
    labels = list(labels) if labels is not None else [f"y{i + 1}" for i in range(k)]
    if len(labels) != k:
        raise ValueError(f"{len(labels)} labels for {k} components")
    names = list(ecols)
    with figure(path, k, len(names), figsize=(3.2 * len(names), 3.1 * k), title=title) as (fig, axes):
        for i, t in enumerate(tcols):
            fin = t[np.isfinite(t)]
            if symmetric:
                centre, half = 0.0, (float(np.max(np.abs(fin))) * 1.3 if fin.size else 0.0)
            else:
                centre = float((fin.max() + fin.min()) / 2) if fin.size else 0.0
                half = float(np.ptp(fin)) / 2 * 1.3 if fin.size else 0.0
            half = lim if lim is not None else (half or 0.1)
            for j, name in enumerate(names):
                ax = axes[i, j]
                est = ecols[name][i]
                ok = np.isfinite(est) & np.isfinite(t)
                ax.scatter(t[ok], est[ok], s=2, alpha=0.3, rasterized=True)
                ax.plot([centre - half, centre + half], [centre - half, centre + half], "k--", lw=0.8)
                ax.set_xlim(centre - half, centre + half)
                ax.set_ylim(centre - y_span * half, centre + y_span * half)
                ax.set_xlabel(f"true {labels[i]}")
                ax.set_ylabel(f"estimated {labels[i]}")
                ax.set_title(f"{name}  RMSE {rmse(est, t):.4f}", fontsize=9)
    return Path(path)


# ============================================================================ classification


def plot_confusion(path: str | Path, confusion, class_names: Sequence[str] | None = None,
                   normalize: bool = False, title: str = "") -> Path:
    """Confusion matrix: rows are true classes, columns predicted classes.

    Parameters
    ----------
    path : path-like
        Output PNG.
    confusion : array-like or dict
        Square matrix of counts, or the dict of
        :func:`astrotool.ml.metrics.classification_metrics` (its
        ``confusion`` and ``class_names`` are used).
    class_names : sequence of str, optional
    normalize : bool
        Divide each row by its total (the diagonal is then the per-class
        recall); a class with no true sample shows an empty row.
    title : str

    Raises
    ------
    ValueError
        A matrix that is not square, or class names of the wrong count.
    """
    if isinstance(confusion, Mapping):
        class_names = class_names if class_names is not None else confusion.get("class_names")
        confusion = confusion["confusion"]
    cm = np.asarray(confusion, float)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"a confusion matrix must be square, got shape {cm.shape}")
    k = cm.shape[0]
    names = [str(c) for c in class_names] if class_names is not None else [str(i) for i in range(k)]
    if len(names) != k:
        raise ValueError(f"{len(names)} class names for a {k}x{k} confusion matrix")
    if normalize:
        rows = cm.sum(axis=1, keepdims=True)
        shown = np.full_like(cm, np.nan)
        np.divide(cm, rows, out=shown, where=rows != 0)
    else:
        shown = cm
    side = max(3.5, 0.55 * k + 2.0)
    with figure(path, figsize=(side + 0.8, side), title=title) as (fig, axes):
        ax = axes[0, 0]
        vmax = 1.0 if normalize else (np.nanmax(shown) if np.isfinite(shown).any() else 1.0)
        im = ax.imshow(np.ma.masked_invalid(shown), cmap="Blues", vmin=0, vmax=vmax or 1.0)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class" if normalize else "count")
        ax.set_xticks(range(k), names, rotation=45 if k > 4 else 0, ha="right" if k > 4 else "center")
        ax.set_yticks(range(k), names)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        if k <= 20:
            for r in range(k):
                for c in range(k):
                    v = shown[r, c]
                    if not np.isfinite(v):
                        continue
                    text = f"{v:.2f}" if normalize else f"{int(v)}"
                    ax.text(c, r, text, ha="center", va="center", fontsize=8,
                            color="white" if v > 0.6 * (vmax or 1.0) else "black")
    return Path(path)


def plot_curves(path: str | Path, curves: Mapping[str, Mapping], kind: str = "roc", title: str = "") -> Path:
    """ROC or precision–recall curves of one or several estimators.

    Parameters
    ----------
    path : path-like
        Output PNG.
    curves : mapping of str to dict
        Name -> the dict of :func:`astrotool.ml.metrics.roc_curve`
        (``kind="roc"``: ``fpr, tpr, auroc``) or
        :func:`astrotool.ml.metrics.pr_curve` (``kind="pr"``: ``recall,
        precision, average_precision``). The area is printed in the legend.
    kind : {"roc", "pr"}
    title : str

    Raises
    ------
    ValueError
        Unknown ``kind``, no curve, or a curve missing its keys.
    """
    spec = {"roc": ("fpr", "tpr", "auroc", "false positive rate", "true positive rate", "AUROC"),
            "pr": ("recall", "precision", "average_precision", "recall", "precision", "AP")}
    if kind not in spec:
        raise ValueError(f"kind must be 'roc' or 'pr', got {kind!r}")
    if not curves:
        raise ValueError("no curves to plot")
    xk, yk, ak, xl, yl, al = spec[kind]
    for name, c in curves.items():
        if xk not in c or yk not in c:
            raise ValueError(f"curve {name!r} lacks {xk!r}/{yk!r}: pass the dict of metrics.{kind}_curve")
    with figure(path, figsize=(4.6, 4.2), title=title) as (fig, axes):
        ax = axes[0, 0]
        for name, c in curves.items():
            area = c.get(ak, float("nan"))
            label = f"{name} ({al} {area:.3f})" if area is not None and math.isfinite(area) else name
            ax.plot(np.asarray(c[xk], float), np.asarray(c[yk], float), lw=1.4, label=label,
                    drawstyle="steps-post" if kind == "pr" else "default")
        if kind == "roc":
            ax.plot([0, 1], [0, 1], "k--", lw=0.8)
        ax.set_xlim(-0.01, 1.01)
        ax.set_ylim(-0.01, 1.01)
        ax.set_xlabel(xl)
        ax.set_ylabel(yl)
        ax.legend(fontsize=8, loc="lower right" if kind == "roc" else "lower left")
    return Path(path)


def plot_reliability(path: str | Path, calibration: Mapping, title: str = "") -> Path:
    """Reliability diagram: accuracy against confidence per bin, with the ECE in the title.

    Parameters
    ----------
    path : path-like
        Output PNG.
    calibration : dict
        The dict of :func:`astrotool.ml.metrics.calibration_metrics`
        (``edges, confidence, accuracy, count, ece``). A lower panel shows how
        many samples each bin holds.
    title : str
        Prefixed to ``ECE = ...``.

    Raises
    ------
    ValueError
        Missing keys or bins of inconsistent length.
    """
    need = ("edges", "confidence", "accuracy", "count", "ece")
    if any(k not in calibration for k in need):
        raise ValueError(f"calibration needs {need}: pass the dict of metrics.calibration_metrics")
    edges = np.asarray(calibration["edges"], float)
    conf = np.asarray(calibration["confidence"], float)
    acc = np.asarray(calibration["accuracy"], float)
    count = np.asarray(calibration["count"], float)
    if not (len(edges) - 1 == len(conf) == len(acc) == len(count)):
        raise ValueError(f"{len(edges)} bin edges for {len(conf)}/{len(acc)}/{len(count)} "
                         "confidence/accuracy/count values")
    ece = calibration["ece"]
    head = f"ECE = {ece:.4f}" if ece is not None and math.isfinite(ece) else "ECE undefined"
    full = f"{title}  {head}" if title else head
    width = np.diff(edges)
    centre = edges[:-1] + width / 2
    with figure(path, 2, 1, figsize=(4.6, 5.2), title=full, sharex=True,
                gridspec_kw={"height_ratios": [3, 1]}) as (fig, axes):
        ax = axes[0, 0]
        ok = count > 0
        ax.bar(centre[ok], acc[ok], width=width[ok], edgecolor="k", lw=0.6, color="C0", label="accuracy")
        ax.bar(centre[ok], conf[ok] - acc[ok], bottom=acc[ok], width=width[ok], color="none", hatch="//",
               edgecolor="C3", lw=0.6, label="gap to confidence")
        ax.plot([0, 1], [0, 1], "k--", lw=0.8, label="perfect calibration")
        ax.set_xlim(edges[0], edges[-1])
        ax.set_ylim(0, 1)
        ax.set_ylabel("accuracy")
        ax.legend(fontsize=8, loc="upper left")
        ax = axes[1, 0]
        ax.bar(centre, count, width=width, color="0.5", edgecolor="k", lw=0.6)
        ax.set_xlabel("confidence")
        ax.set_ylabel("count")
    return Path(path)
