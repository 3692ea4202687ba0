"""``astro ztf train --arch temporal``: one classifier for an object's first 1 to N alerts.

Neira et al. (2024) train one model per sequence length (2, 3, 4, 5 alerts);
here one :class:`~astrotool_ztf.model.TemporalClassifier` takes any length up
to ``max_alerts``: each epoch shows every training object cut to a length
drawn uniformly between 1 and its number of alerts, so the model answers after
the first alert and improves as alerts arrive. Classes are balanced by
replication, the loss and optimiser are those of the stamp classifier, and the
checkpoint of the lowest validation loss (validation objects with all their
alerts) is kept.

:func:`gain_table` scores it on the objects of a split with at least ``k``
alerts, given their first ``k``, next to the single-alert classifier on the
first alert of the same objects.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__docformat__ = "numpy"


def sequences(ds, split: str, max_alerts: int, stats: dict | None = None) -> dict:
    """Every object of ``split`` as a padded sequence of its first ``max_alerts`` alerts (time order).

    Returns
    -------
    dict
        ``stamps`` ``(B, T, C, s, s)``, ``features`` ``(B, T, F)`` (z-scored with ``stats``, default the
        set's), ``dt`` ``(B, T)`` [days since the object's first alert], ``lengths`` ``(B,)``, ``label``
        ``(B,)``, ``first`` ``(B,)`` (the sample index of each object's first alert), ``objectId``.
    """
    from astrotool_ztf.prepare import standardise

    stats = stats or ds.attrs
    meta = ds.metadata(["objectId", "split", "alert_index", "jd", "label"])
    sel = np.flatnonzero((meta["split"] == split) & (meta["alert_index"] < max_alerts))
    objects, inverse = np.unique(meta["objectId"][sel], return_inverse=True)
    b = ds.read(sel, ["stamps", "features"])
    shape = b["stamps"].shape[1:]
    n = len(objects)
    out = {"stamps": np.zeros((n, max_alerts, *shape), np.float32),
           "features": np.zeros((n, max_alerts, b["features"].shape[1]), np.float32),
           "dt": np.zeros((n, max_alerts), np.float32), "lengths": np.zeros(n, np.int64),
           "label": np.zeros(n, np.int64), "first": np.zeros(n, np.int64), "objectId": objects}
    feats = standardise(b["features"], stats["feature_mean"], stats["feature_std"])
    step = meta["alert_index"][sel]
    jd0 = np.full(n, np.inf)
    np.minimum.at(jd0, inverse, meta["jd"][sel])
    out["stamps"][inverse, step] = b["stamps"]
    out["features"][inverse, step] = feats
    out["dt"][inverse, step] = meta["jd"][sel] - jd0[inverse]
    np.maximum.at(out["lengths"], inverse, step + 1)
    out["label"][inverse] = meta["label"][sel]
    first = step == 0
    out["first"][inverse[first]] = sel[first]
    return out


def _take(seq: dict, rows, lengths=None):
    import torch

    lengths = seq["lengths"][rows] if lengths is None else lengths
    t = int(lengths.max())
    return (torch.from_numpy(seq["stamps"][rows, :t]), torch.from_numpy(seq["features"][rows, :t]),
            torch.from_numpy(seq["dt"][rows, :t]), torch.from_numpy(np.asarray(lengths, np.int64)),
            torch.from_numpy(seq["label"][rows]))


def train_temporal(ds, cfg, model_dir, seed: int, overwrite: bool = False, log=None, on_epoch=None,
                   runtime=None) -> dict:
    """Train (or resume) the temporal classifier; arguments as :func:`astrotool_ztf.train.train_classifier`."""
    import torch

    from astrotool.ml.training import epoch_rng, fit

    from astrotool_ztf.model import TEMPORAL, TemporalClassifier, entropy_regularised_loss
    from astrotool_ztf.train import balanced_order, check_splits, start_training, warn_untrained_classes

    model_dir = Path(model_dir)
    train, val = sequences(ds, "train", cfg.max_alerts), sequences(ds, "val", cfg.max_alerts)
    check_splits(ds, len(train["label"]), len(val["label"]), "objects")
    warn_untrained_classes(ds, train["label"], model_dir, log)
    rt, settings, resume = start_training(ds, cfg, model_dir, seed, overwrite, runtime)
    kwargs = {"in_channels": int(ds.arrays["stamps"][0][0]), "n_features": len(ds.feature_names),
              "n_classes": len(ds.classes), "crop": int(ds.attrs["crop"]), "kernel": cfg.kernel,
              "dropout": cfg.dropout, "group": cfg.group, "hidden": cfg.hidden}
    model = TemporalClassifier(**kwargs).to(rt.device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

    def batches(epoch: int):
        rng = epoch_rng(seed, epoch)
        order = balanced_order(train["label"], rng)
        cut = rng.integers(1, train["lengths"][order] + 1)  # each object shown with its first 1..n alerts
        bs = cfg.batch_size
        for i in range(0, len(order), bs):   # every object, the last batch partial (no batch-norm)
            yield _take(train, order[i:i + bs], cut[i:i + bs])

    def loss_fn(m, batch):
        x, f, dt, n, y = batch
        return entropy_regularised_loss(m(x, f, dt, n), y, cfg.entropy_beta)

    def validate(m):
        dev = next(m.parameters()).device
        total, correct, nval = 0.0, 0, len(val["label"])
        with torch.no_grad():
            for i in range(0, nval, 128):
                x, f, dt, n, y = (t.to(dev) for t in _take(val, np.arange(i, min(i + 128, nval))))
                logits = m(x, f, dt, n).float()
                total += float(torch.nn.functional.cross_entropy(logits, y, reduction="sum"))
                correct += int((logits.argmax(1) == y).sum())
        return {"val_loss": total / nval, "val_accuracy": correct / nval}

    meta = {
        "architecture": {"name": TEMPORAL, "kwargs": kwargs}, "settings": settings,
        "hyperparameters": cfg.model_dump(mode="json"), "classes": ds.classes, "features": ds.feature_names,
        "feature_mean": ds.attrs["feature_mean"], "feature_std": ds.attrs["feature_std"],
        "crop": int(ds.attrs["crop"]), "channels": ds.attrs["channels"], "max_alerts": cfg.max_alerts,
        "inputs": "per object, its first 1..max_alerts alerts in time order: stamps (B, T, 4, crop, crop), "
                  "z-scored features (B, T, 23), days since the first alert (B, T), lengths (B,)",
        "outputs": "logit per class, (B, n_classes)",
        "training": {"dataset": ds.name, "dataset_path": str(ds.root), "seed": int(seed),
                     "n_train": int(len(train["label"])), "n_val": int(len(val["label"])), "monitor": "val_loss",
                     "device": str(rt.device), "precision": rt.precision, "processes": rt.world_size},
    }
    result = fit(model, opt, batches=batches, loss_fn=loss_fn, validate=validate, epochs=cfg.epochs,
                 checkpoint_dir=model_dir, meta=meta, seed=seed, monitor="val_loss", patience=cfg.patience,
                 resume=resume, on_epoch=on_epoch, log=log, runtime=rt)
    best = result.best_metrics
    return {"model": model_dir.name, "path": str(model_dir), "dataset": ds.name, "seed": int(seed),
            **result.summary,
            "val_loss": best.get("val_loss"), "val_accuracy": best.get("val_accuracy"),
            "n_train": int(len(train["label"])), "n_val": int(len(val["label"])),
            "parameters": int(sum(p.numel() for p in model.parameters())),
            "device": str(rt.device)}


def gain_table(ds, model_dir, split: str = "test", ks=None, baseline_dir=None,
               device: str | None = None) -> list[dict]:
    """Accuracy of the temporal model given each object's first ``k`` alerts, on the objects of ``split``
    with at least ``k`` alerts, next to the single-alert classifier (``baseline_dir``) on their first alert;
    both run on ``device`` (``auto``, ``cpu``, ``cuda:N``...; default CPU). ``ks`` default: every ``k`` from 1
    to the model's ``max_alerts`` (those no object reaches are left out).
    """
    from astrotool.ml.checkpoint import build_model, load_checkpoint
    from astrotool.ml.predict import predict

    from astrotool_ztf.classify import load_classifier, run_logits
    from astrotool_ztf.model import REGISTRY, TEMPORAL
    from astrotool_ztf.train import load_split

    ckpt = load_checkpoint(model_dir, TEMPORAL)
    model = build_model(ckpt, REGISTRY).eval()
    meta = ckpt.meta
    seq = sequences(ds, split, int(meta["max_alerts"]), meta)
    base = None
    if baseline_dir is not None and len(seq["first"]):   # no object: no row, nothing for the baseline to run on
        net, bmeta = load_classifier(baseline_dir)
        part = load_split(ds, seq["first"], bmeta)
        order = np.argsort(np.argsort(seq["first"]))  # load_split reads in sorted order
        base = run_logits(net, part["stamps"], part["features"], device=device or "cpu")[0].argmax(1)[order]
    rows = []
    for k in ks or range(1, int(meta["max_alerts"]) + 1):
        if k > seq["stamps"].shape[1]:
            continue
        objs = np.flatnonzero(seq["lengths"] >= k)
        if not len(objs):
            continue
        batches = ((_take(seq, objs[i:i + 128], np.full(len(objs[i:i + 128]), k))[:4],)  # ((x, f, dt, n),)
                   for i in range(0, len(objs), 128))
        pred = predict(model, batches, device=device or "cpu").outputs.argmax(1)
        y = seq["label"][objs]
        row = {"alerts": k, "objects": int(len(objs)), "temporal_accuracy": float(np.mean(pred == y))}
        if base is not None:
            row["single_alert_accuracy"] = float(np.mean(base[objs] == y))
            row["gain"] = row["temporal_accuracy"] - row["single_alert_accuracy"]
        rows.append(row)
    return rows
