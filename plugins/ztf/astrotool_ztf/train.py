"""``astro ztf train --model classifier``: the ALeRCE stamp classifier on a prepared set.

Training follows ALeRCE: Adam (lr 1e-3), batches of 64, the classes balanced
by replication (each epoch draws every class as often as the largest one), the
entropy-regularised cross-entropy, and the checkpoint of the lowest validation
loss kept. Validation uses the *first* alert of each validation object (the
single-alert task ALeRCE deploys); training uses every alert of the training
objects (``train_alerts = "all"``, more views of each object) or only the first.

The loop, checkpoints (best: the model folder; every epoch: ``last/``), resume,
devices, DDP and precision come from :func:`astrotool.ml.training.fit`. The
checkpoint carries the classes, the feature names and the training set's
feature mean and standard deviation, so ``evaluate`` and ``predict`` need
nothing else.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__docformat__ = "numpy"

RESUMABLE = frozenset({"name", "seeds"})
""":class:`~astrotool_ztf.config.TrainConfig` keys a resumed run may change besides the shared
:data:`astrotool.ml.commands.RESUMABLE`: ``name`` and ``seeds`` choose the model folders."""

def no_dataset() -> str:
    """What to do where the prepared set is missing (the hint of :func:`astrotool.ml.commands.open_dataset`)."""
    from astrotool.context import astro_command

    return f"run `{astro_command('ztf', 'prepare')}` first"


def train_indices(ds, which: str) -> np.ndarray:
    """Samples of the training split: every alert (``"all"``) or the first of each object (``"first"``)."""
    meta = ds.metadata(["split", "alert_index"])
    sel = meta["split"] == "train"
    if which == "first":
        sel &= meta["alert_index"] == 0
    return np.flatnonzero(sel)


def balanced_order(labels: np.ndarray, rng) -> np.ndarray:
    """Positions of one epoch: every class drawn as often as the largest (replication), shuffled."""
    classes, counts = np.unique(labels, return_counts=True)
    top = counts.max()
    parts = []
    for c, n in zip(classes, counts):
        members = np.flatnonzero(labels == c)
        reps = np.concatenate([rng.permutation(members) for _ in range(-(-top // n))])[:top]
        parts.append(reps)
    return rng.permutation(np.concatenate(parts))


def load_split(ds, indices: np.ndarray, stats: dict | None = None) -> dict:
    """Stamps, z-scored features and labels of ``indices`` in memory.

    ``stats``: ``feature_mean`` and ``feature_std`` to z-score with (a checkpoint's); default the set's own.
    """
    from astrotool_ztf.prepare import standardise

    stats = stats or ds.attrs
    b = ds.read(np.sort(indices), ["stamps", "features"])
    meta = ds.metadata(["label"])
    return {"stamps": b["stamps"].astype(np.float32),
            "features": standardise(b["features"], stats["feature_mean"], stats["feature_std"]),
            "label": np.asarray(meta["label"])[np.sort(indices)].astype(np.int64)}


def check_splits(ds, n_train: int, n_val: int, word: str = "alerts") -> None:
    """Refuse a set whose training or validation split is empty, naming the cause (a hold-out set, too
    few objects)."""
    from astrotool.errors import InputError

    if n_train and n_val:
        return
    holdout = ds.attrs.get("settings", {}).get("ztf", {}).get("prepare", {}).get("holdout")
    why = ("it is a hold-out set (prepared with ztf.prepare.holdout = true: every object in the test split, to "
           "score models on); train on a set prepared without holdout" if holdout else
           "simulate or ingest more, or lower ztf.prepare.val_per_class")
    raise InputError(ds.root, f"{n_train} training and {n_val} validation {word}: both splits must hold objects "
                              f"({why})")


def warn_untrained_classes(ds, labels, model_dir, log=None) -> list[str]:
    """Warn, naming them, about the classes of ``ds`` that no training sample (``labels``: class indices) holds:
    the model gets an output for each, which it never learns."""
    missing = [c for i, c in enumerate(ds.classes) if not np.any(np.asarray(labels) == i)]
    if missing and log is not None:
        log.warning("%s: no training alert of the class(es) %s in the set %s: the model has %d classes and "
                    "never learns these; prepare the set with ztf.prepare.classes = [%s] to leave them out",
                    Path(model_dir).name, ", ".join(missing), ds.name, len(ds.classes),
                    ", ".join(f'"{c}"' for c in ds.classes if c not in missing))
    return missing


def start_training(ds, cfg, model_dir, seed: int, overwrite: bool, runtime, extra: dict | None = None):
    """The runtime launched, the existing model folder resumed, restarted or refused (the settings a resume
    must share: :func:`astrotool.ml.commands.resume_settings` with ``extra``; every key but those a resume may
    change, the seed, the set's identity and ``extra``), and the seed
    set: ``(runtime, settings, whether it resumes)``."""
    from astrotool.ml.commands import prepare_training, resume_settings
    from astrotool.ml.fabric import Runtime
    from astrotool.ml.training import seed_everything

    rt = runtime if runtime is not None else Runtime()
    rt.launch()
    settings = resume_settings(cfg, seed, ds, resumable=RESUMABLE, **(extra or {}))
    action = prepare_training(model_dir, overwrite=overwrite, resume=cfg.resume, clear=rt.is_global_zero,
                              settings=settings, share=rt.broadcast)
    rt.barrier("ztf-train-prepared")
    seed_everything(seed)
    return rt, settings, action == "resume"


def train_classifier(ds, cfg, model_dir, seed: int, overwrite: bool = False, log=None, on_epoch=None,
                     runtime=None) -> dict:
    """Train (or resume training) the stamp classifier.

    Parameters
    ----------
    ds : astrotool_ztf.prepare.StampDataset
    cfg : astrotool_ztf.config.TrainConfig
    model_dir : path-like
        Checkpoint folder (``ztf/models/<name>``).
    seed : int
        Seeds the weights and the batch order.
    overwrite : bool
        Discard an existing model instead of resuming it.
    log : logging.Logger, optional
    on_epoch : callable, optional
        Called with each epoch's history entry.
    runtime : astrotool.ml.fabric.Runtime, optional

    Returns
    -------
    dict
        Best epoch and its validation loss and accuracy, epochs run, sizes, seconds per epoch.

    Raises
    ------
    astrotool.errors.InputError
        A split without samples.
    """
    import torch

    from astrotool.ml.training import epoch_rng, fit

    from astrotool_ztf.classify import TEMPERATURE_BOUNDS
    from astrotool_ztf.model import ARCHITECTURE, PROBE, StampClassifier, entropy_regularised_loss
    from astrotool_ztf.prepare import first_alerts

    model_dir = Path(model_dir)
    tr_idx, va_idx = train_indices(ds, cfg.train_alerts), first_alerts(ds, "val")
    check_splits(ds, len(tr_idx), len(va_idx))
    train, val = load_split(ds, tr_idx), load_split(ds, va_idx)
    warn_untrained_classes(ds, train["label"], model_dir, log)
    encoder = load_encoder(cfg, model_dir, ds) if cfg.arch == "probe" else None
    rt, settings, resume = start_training(ds, cfg, model_dir, seed, overwrite, runtime,   # a probe: its encoder's
                                          {"encoder_weights_sha256": encoder.meta.get("weights_sha256")}  # weights
                                          if encoder else None)
    n_feat = len(ds.feature_names) if cfg.use_features else 0
    if encoder is not None:  # a head on a trained autoencoder's frozen latents
        arch, (model, kwargs) = PROBE, probe_model(cfg, ds, n_feat, encoder)
    else:
        kwargs = {"in_channels": int(ds.arrays["stamps"][0][0]), "n_features": n_feat,
                  "n_classes": len(ds.classes), "crop": int(ds.attrs["crop"]), "kernel": cfg.kernel,
                  "dropout": cfg.dropout, "group": cfg.group}
        arch, model = ARCHITECTURE, StampClassifier(**kwargs)
    model = model.to(rt.device)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg.lr,
                           weight_decay=cfg.weight_decay)

    def tensors(part, rows):
        return (torch.from_numpy(part["stamps"][rows]), torch.from_numpy(part["features"][rows]),
                torch.from_numpy(part["label"][rows]))

    def batches(epoch: int):
        order = balanced_order(train["label"], epoch_rng(seed, epoch))
        for i in range(0, len(order) - cfg.batch_size + 1 if len(order) >= cfg.batch_size else 1, cfg.batch_size):
            yield tensors(train, order[i:i + cfg.batch_size])

    def loss_fn(m, batch):
        x, f, y = batch
        return entropy_regularised_loss(m(x, f if n_feat else None), y, cfg.entropy_beta)

    def validate(m):
        dev = next(m.parameters()).device
        total, correct = 0.0, 0
        with torch.no_grad():
            for i in range(0, len(val["label"]), 256):
                x, f, y = (t.to(dev) for t in tensors(val, slice(i, i + 256)))
                logits = m(x, f if n_feat else None).float()
                total += float(torch.nn.functional.cross_entropy(logits, y, reduction="sum"))
                correct += int((logits.argmax(1) == y).sum())
        n = len(val["label"])
        return {"val_loss": total / n, "val_accuracy": correct / n}

    meta = {
        "architecture": {"name": arch, "kwargs": kwargs},
        "settings": settings,
        "hyperparameters": cfg.model_dump(mode="json"),
        "classes": ds.classes, "features": ds.feature_names if n_feat else [],
        "feature_mean": ds.attrs["feature_mean"], "feature_std": ds.attrs["feature_std"],
        "crop": int(ds.attrs["crop"]), "channels": ds.attrs["channels"],
        **({"encoder_dataset": (encoder.meta.get("settings") or {}).get("dataset")} if encoder else {}),
        "inputs": "stamps (N, 4, crop, crop) float32: science, template, difference each scaled to [0, 1], NaN -> 0,"
                  " and the NaN mask; features (N, 23) z-scored with feature_mean / feature_std",
        "outputs": "logit per class, (N, n_classes)",
        "training": {"dataset": ds.name, "dataset_path": str(ds.root), "seed": int(seed),
                     "n_train": int(len(tr_idx)), "n_val": int(len(va_idx)), "monitor": "val_loss",
                     "device": str(rt.device), "precision": rt.precision, "processes": rt.world_size},
    }
    result = fit(model, opt, batches=batches, loss_fn=loss_fn, validate=validate, epochs=cfg.epochs,
                 checkpoint_dir=model_dir, meta=meta, seed=seed, monitor="val_loss", patience=cfg.patience,
                 resume=resume, on_epoch=on_epoch, log=log, runtime=rt)
    temperature = None
    if rt.is_global_zero:
        temperature = store_temperature(model_dir, val)
        lo, hi = TEMPERATURE_BOUNDS
        if log is not None and not 1.002 * lo < temperature < 0.9995 * hi:  # at a bound of the search
            log.warning("%s: temperature at its bound %.3g (fitted within [%g, %g]): the model is barely "
                        "trained, its probabilities are not calibrated", model_dir.name, temperature, lo, hi)
    best = result.best_metrics
    return {
        "model": model_dir.name, "path": str(model_dir), "dataset": ds.name, "seed": int(seed), **result.summary,
        "val_loss": best.get("val_loss"), "val_accuracy": best.get("val_accuracy"), "temperature": temperature,
        "n_train": int(len(tr_idx)), "n_val": int(len(va_idx)),
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "device": str(rt.device),
    }


def store_temperature(model_dir, val: dict) -> float:
    """Fit the temperature of the best checkpoint on the validation alerts and write it into ``model.json``."""
    from astrotool.ml.checkpoint import load_checkpoint, save_checkpoint

    from astrotool_ztf.classify import fit_temperature, load_classifier, run_logits

    model, meta = load_classifier(model_dir)
    logits, _ = run_logits(model, val["stamps"], val["features"], device="cpu")
    t = fit_temperature(logits, val["label"])
    save_checkpoint(model_dir, load_checkpoint(model_dir).state_dict, {**meta, "temperature": t})
    return t


def encoder_dir(encoder: str, models) -> Path:
    """The folder of the autoencoder ``encoder`` (a model name, or a folder) a probe sits on; ``models``: the
    folder of the models (``ztf/models``). The workspace's model of that name first, as
    :func:`astrotool.ml.commands.model_dir` (which ``ztf train`` refuses a missing one with)."""
    named = Path(models) / encoder
    return named if (named / "model.json").is_file() or not Path(encoder).is_dir() else Path(encoder)


def require_encoder(cfg) -> None:
    """Refuse a probe (``cfg.arch`` probe) with no ``cfg.encoder`` named: ``ztf train`` asks before loading
    torch, so the refusal takes a fraction of a second, not the seconds Fabric's import takes."""
    from astrotool.errors import InputError

    if cfg.arch == "probe" and not cfg.encoder:
        raise InputError("ztf.train.encoder", "a probe needs a trained autoencoder (--encoder NAME)")


def load_encoder(cfg, model_dir, ds):
    """The checkpoint of the autoencoder ``cfg.encoder`` (a model name or folder) a probe on the set ``ds``
    sits on.

    Raises
    ------
    astrotool.errors.InputError
        No encoder named, an autoencoder cut short, or one trained on another set of ``ds``'s name (its
        splits may hold the encoder's training samples: :func:`astrotool.ml.commands.check_trained_on`).
    """
    from astrotool.ml.commands import check_trained_on

    from astrotool_ztf.classify import check_finished, load_autoencoder, train_command

    require_encoder(cfg)
    enc_dir = encoder_dir(cfg.encoder, Path(model_dir).parent)
    ckpt = load_autoencoder(enc_dir)
    check_finished(ckpt.meta, enc_dir)   # as evaluate: an autoencoder cut short is not built on
    # as embed and evaluate of the encoder: a set made again since may hold its training samples in val or test
    check_trained_on((ckpt.meta.get("settings") or {}).get("dataset"), ds, enc_dir,
                     remedy=f"train the autoencoder on it first (`{train_command(ckpt.meta, enc_dir)} --overwrite`)")
    return ckpt


def probe_encoder_dataset(meta: dict, model_dir) -> dict | None:
    """The set the encoder of the probe of checkpoint metadata ``meta`` in ``model_dir`` was trained on: as
    the probe recorded it, else (a probe saved before it was recorded) as its encoder's folder records it
    while that holds the probe's encoder weights (None: not known)."""
    from astrotool.errors import InputError
    from astrotool.ml.checkpoint import read_meta

    if "encoder_dataset" in meta:
        return meta["encoder_dataset"]
    encoder = (meta.get("hyperparameters") or {}).get("encoder")
    try:
        enc_meta = read_meta(encoder_dir(encoder, Path(model_dir).parent)) if encoder else {}
    except InputError:   # the encoder's folder gone or unreadable
        return None
    same = enc_meta.get("weights_sha256") == (meta.get("settings") or {}).get("encoder_weights_sha256")
    return (enc_meta.get("settings") or {}).get("dataset") if same else None


def probe_model(cfg, ds, n_features: int, ckpt):
    """The probe on the autoencoder checkpoint ``ckpt`` (:func:`load_encoder`; its weights loaded and frozen)
    and its architecture arguments."""
    from astrotool_ztf.model import ProbeClassifier

    kwargs = {"encoder_kwargs": ckpt.meta["architecture"]["kwargs"], "n_features": n_features,
              "n_classes": len(ds.classes), "hidden": cfg.probe_hidden}
    model = ProbeClassifier(**kwargs)
    model.encoder.load_state_dict(ckpt.state_dict)
    for p in model.encoder.parameters():
        p.requires_grad_(False)
    return model, kwargs
