"""``astro ztf evaluate``: a stamp classifier (or several, one per seed) on a split of a prepared set.

For each model, on the first alert of every object of the split (the
single-alert task of ALeRCE): accuracy, macro-F1, per-class recall and
precision, the confusion matrix, and the expected calibration error before and
after temperature scaling (the temperature fitted on the validation split,
:mod:`astrotool_ztf.classify`). The macro averages (recall, precision, F1) are
means over one set of classes: those present in the truth of the scored split
(:func:`astrotool.ml.metrics.classification_metrics`). Over several models: the mean and sample standard
deviation (ddof = 1) of each figure. Figures: the normalised confusion matrix and the
reliability diagram (after scaling) of each model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__docformat__ = "numpy"

SUMMARY_KEYS = ("accuracy", "macro_f1", "ece_before", "ece_after")
"""Metrics of a report's summary line."""


def evaluate_model(ds, model_dir, split: str = "test", n_bins: int = 15, device: str | None = None) -> dict:
    """Metrics of one model on ``split`` (module docstring).

    Parameters
    ----------
    ds : astrotool_ztf.prepare.StampDataset
    model_dir : path-like
        The classifier's folder.
    split : {"train", "val", "test"}
    n_bins : int
        Confidence bins of the calibration error.
    device : str, optional
        ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps`` (default: CPU).

    Returns
    -------
    dict
        ``model``, ``split``, ``n``, ``temperature``, ``classification``
        (:func:`astrotool.ml.metrics.classification_metrics` of the calibrated
        probabilities), ``calibration_before`` and ``calibration_after``
        (:func:`astrotool.ml.metrics.calibration_metrics`), ``alerts_per_s``.
    """
    from astrotool.errors import InputError
    from astrotool.ml.metrics import calibration_metrics, classification_metrics

    from astrotool_ztf.classify import (check_compatible, load_classifier, run_logits, softmax, split_inputs,
                                        temperature)

    model, meta = load_classifier(model_dir)
    check_compatible(meta, ds, model_dir)
    idx, part = split_inputs(ds, split, meta)
    if len(idx) == 0:
        raise InputError(ds.root, f"no object in the {split!r} split")
    logits, pred = run_logits(model, part["stamps"], part["features"], device=device or "cpu")
    t = temperature(meta, model_dir)
    y = part["label"]
    probs = softmax(logits, t)
    return {"model": Path(model_dir).name, "path": str(model_dir), "dataset": ds.name, "split": split,
            "n": int(len(y)),
            "temperature": float(t),
            "classification": classification_metrics(probs, y, class_names=ds.classes),
            "calibration_before": calibration_metrics(softmax(logits), y, n_bins),
            "calibration_after": calibration_metrics(probs, y, n_bins),
            "alerts_per_s": round(float(pred.samples_per_s), 1)}


def baseline_candidates(models: Path, dataset: str) -> list[Path]:
    """The single-alert classifiers temporal models of ``dataset`` are compared with by default, in the order
    tried: ``<dataset>_classifier``, then ``<dataset>_classifier_seedN`` by seed."""
    import re

    seeds = sorted((int(m.group(1)), p) for p in models.glob(f"{dataset}_classifier_seed*")
                   if (m := re.fullmatch(re.escape(dataset) + r"_classifier_seed(\d+)", p.name)))
    return [p for p in [models / f"{dataset}_classifier", *(p for _, p in seeds)] if (p / "model.json").is_file()]


def seed_groups(model_dirs, warn=None) -> list[list]:
    """``model_dirs`` grouped by what they were trained with but the seed (architecture, settings, set, and the
    epochs and patience, which a resume may change): the groups whose scores :func:`summarise` may average,
    in the order first met.

    A group holds distinct seeds: a model trained alike with a seed the group already has (a plain ``train``,
    seed 0, beside ``train --seeds 0,1``: ``<set>_classifier`` and ``<set>_classifier_seed0``) is not another
    sample of the seed spread; it is left out of the group (the first met is kept) and ``warn(message)`` names
    both models.
    """
    import json

    from astrotool.ml.checkpoint import read_meta

    groups: dict[str, list] = {}
    seeds: dict[str, dict] = {}   # per group: seed -> the model that holds it
    for d in model_dirs:
        meta = read_meta(d)
        seed = (meta.get("settings") or {}).get("seed")
        settings = {k: v for k, v in (meta.get("settings") or {}).items() if k != "seed"}
        hyper = meta.get("hyperparameters") or {}
        epochs = (meta.get("training_progress") or {}).get("epochs", hyper.get("epochs"))
        key = json.dumps([meta["architecture"]["name"], settings, epochs, hyper.get("patience")], sort_keys=True,
                         default=str)
        held = seeds.setdefault(key, {})
        if seed is not None and seed in held:
            if warn is not None:
                warn(f"{d.name} was trained as {held[seed].name} was, with the same seed {seed}: left out of "
                     f"their seed group's mean ± std (one seed counts once)")
            continue
        held[seed] = d
        groups.setdefault(key, []).append(d)
    return list(groups.values())


def summarise(results: list[dict]) -> dict:
    """Mean and sample standard deviation (ddof = 1) over models of accuracy, macro-F1, ECE and per-class
    recall; NaN (null in JSON) for a figure no model has (the recall of a class absent from the split)."""
    import warnings

    def stat(values):   # a class absent from the split: recall NaN for every model, its mean NaN (null in JSON)
        v = np.asarray(values, float)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)   # "Mean of empty slice": not the user's to see
            mean = float(np.nanmean(v)) if len(v) else float("nan")
        return {"mean": mean, "std": float(np.nanstd(v, ddof=1)) if np.isfinite(v).sum() > 1 else 0.0}

    names = results[0]["classification"]["class_names"]
    per = {"accuracy": [r["classification"]["accuracy"] for r in results],
           "macro_f1": [r["classification"]["macro_f1"] for r in results],
           "ece_before": [r["calibration_before"]["ece"] for r in results],
           "ece_after": [r["calibration_after"]["ece"] for r in results]}
    out = {k: stat(v) for k, v in per.items()}
    recall = np.asarray([r["classification"]["recall"] for r in results], float)
    out["recall"] = {c: stat(recall[:, j]) for j, c in enumerate(names)}
    out["models"] = len(results)
    return out


def write_figures(result: dict, reports: Path) -> dict:
    """The normalised confusion matrix and the reliability diagram of one model's result (PNG paths)."""
    from astrotool.io.figures import plot_confusion, plot_reliability

    c = result["classification"]
    name = f"{result['model']}_{result['dataset']}_{result['split']}"
    cm = plot_confusion(reports / f"{name}_confusion.png", c["confusion"], c["class_names"], normalize=True,
                        title=f"{result['model']}: {result['split']} (accuracy {c['accuracy']:.3f})")
    rel = plot_reliability(reports / f"{name}_reliability.png", result["calibration_after"],
                           title=f"{result['model']}, T = {result['temperature']:.2f}")
    return {"confusion_png": str(cm), "reliability_png": str(rel)}


SHOWN_DECIMALS = 4
"""Decimals of the figures in ``evaluate``'s text tables (``--json`` keeps full precision)."""


def shown_row(row: dict) -> dict:
    """A result row as ``evaluate``'s text tables show it: floats rounded to :data:`SHOWN_DECIMALS`, and a
    per-class dict (``reconstruction_mse_by_class``) one column per class (``reconstruction_mse_<class>``)."""
    shown = {}
    for key, value in row.items():
        if isinstance(value, dict):
            shown.update(shown_row({f"{key.removesuffix('_by_class')}_{k}": v for k, v in value.items()}))
        else:
            shown[key] = round(value, SHOWN_DECIMALS) if isinstance(value, float) else value
    return shown
