"""Training the CNN shear estimator on a generated dataset.

The dataset is split by shear field (:meth:`ShearDataset.split`); the network
regresses either the lensed galaxy's pre-PSF ellipticity (``target =
"ellipticity"``, truth columns ``obs_g1, obs_g2``: an unbiased per-object
shear estimate, as HSM's are) or the shear itself (``target = "shear"``).
Targets are learned in units of their training-set RMS; random flips and
90-degree rotations are applied with the matching sign changes of (g1, g2).
The loop, checkpoints, early stopping and resume come from
:mod:`astrotool.ml.training`, which runs it through Lightning Fabric (CPU, one
or several GPUs, Slurm nodes, mixed precision: the ``[ml]`` section); what an
existing model folder means (resume, restart, refuse) from
:func:`astrotool.ml.commands.prepare_training`. A resume must use the
settings the model was trained with (:func:`astrotool.ml.commands.resume_settings`: all of
:class:`TrainConfig` but the keys a resume may change, the seed and the dataset);
otherwise training is refused before the stamps are read.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from astrotool.context import astro_command
from astrotool.seeding import derive_seed

from astrotool_lens.config import TrainConfig
from astrotool_lens.data import SHEAR_COLUMNS, ShearDataset
from astrotool_lens.model import ARCHITECTURE, D4_SIGNS, NOISE_FRAME, d4_transform

__docformat__ = "numpy"

TARGET_COLUMNS = {"ellipticity": ("obs_g1", "obs_g2"), "shear": ("g1", "g2")}
"""Truth columns a network learns for each ``target``."""

RESUMABLE = frozenset({"threads"})
""":class:`TrainConfig` keys a resumed run may change besides the shared
:data:`astrotool.ml.commands.RESUMABLE`: threads change how it runs, not what it learns."""


def dataset_inputs(ds: ShearDataset, use_psf: bool, indices=None, check_finite: bool = True) -> np.ndarray:
    """Raw model inputs (n, C, S, S) float32: galaxy, and PSF as channel 1 if ``use_psf``
    (``check_finite``: refuse NaN/inf pixels, naming the shard)."""
    gal, psf = ds.load_stamps(indices, psf=use_psf, check_finite=check_finite)
    if use_psf:
        return np.ascontiguousarray(np.stack([gal, psf], axis=1))
    return np.ascontiguousarray(gal[:, None])


def _calibration_of(model_dir: Path) -> dict | None:
    """The calibration record of the checkpoint in ``model_dir`` (``model.json``), None when it has none."""
    import json

    try:
        cal = json.loads((Path(model_dir) / "model.json").read_text(encoding="utf-8")).get("calibration")
    except (OSError, ValueError, AttributeError):
        return None
    return cal if isinstance(cal, dict) else None


def _loss(kind: str):
    import torch.nn.functional as F

    return {"mse": F.mse_loss, "mae": F.l1_loss, "huber": lambda a, b: F.huber_loss(a, b, delta=1.0)}[kind]


def train_model(ds: ShearDataset, cfg: TrainConfig, model_dir: str | Path, seed: int, overwrite: bool = False,
                log=None, on_epoch=None, runtime=None) -> dict:
    """Train (or resume training) a shear estimator.

    Parameters
    ----------
    ds : ShearDataset
    cfg : TrainConfig
    model_dir : path-like
        Checkpoint folder (``lens/models/<model>``).
    seed : int
        Seeds the split, the initial weights, shuffling and augmentation.
    overwrite : bool
        Discard an existing checkpoint instead of resuming from it.
    log : logging.Logger, optional
    on_epoch : callable, optional
        Called with each epoch's history entry.
    runtime : astrotool.ml.fabric.Runtime, optional
        Where and how to train (the ``[ml]`` section with the command's
        options). Default: the ``[ml]`` defaults (one process on the best
        device, 32-bit).

    Returns
    -------
    dict
        Summary: best epoch, its validation metrics, epochs run, sizes, path.

    Raises
    ------
    astrotool.errors.AstroError
        A model is already in ``model_dir`` and neither ``overwrite`` nor
        ``cfg.resume`` (with a resumable ``last/``) applies, or it was
        trained with other settings (:func:`astrotool.ml.commands.resume_settings`).
    """
    import torch

    from astrotool.ml.commands import prepare_training, resume_settings, warn_schedule_change
    from astrotool.ml.fabric import Runtime
    from astrotool.ml.training import cosine_schedule, epoch_rng, fit, seed_everything
    from astrotool_lens.model import make_estimator

    model_dir = Path(model_dir)
    rt = runtime if runtime is not None else Runtime()
    rt.launch()  # several processes: start the others before anything is written
    tcols = TARGET_COLUMNS[cfg.target]
    ds.truth_columns(dict.fromkeys((*SHEAR_COLUMNS, *tcols, "field")))   # a missing column: refused before any change
    settings = resume_settings(cfg, seed, ds, resumable=RESUMABLE)
    old_calibration = _calibration_of(model_dir)   # new weights: the calibration of the old ones goes
    action = prepare_training(model_dir, overwrite=overwrite, resume=cfg.resume, clear=rt.is_global_zero,
                              settings=settings, share=rt.broadcast)
    if action == "resume" and cfg.schedule == "cosine" and log and rt.is_global_zero:
        warn_schedule_change(model_dir, cfg.epochs, log)
    rt.barrier("lens-train-prepared")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    seed_everything(seed)
    device = rt.device

    train_idx, val_idx, test_idx = ds.split(cfg.split, seed)
    if cfg.max_samples and len(train_idx) > cfg.max_samples:
        train_idx = np.sort(np.random.default_rng(derive_seed(seed, "max_samples")).choice(train_idx, cfg.max_samples, replace=False))
    if len(train_idx) == 0 or len(val_idx) == 0:
        from astrotool.errors import InputError

        raise InputError(ds.root, f"too few shear fields ({len(np.unique(ds.truth['field']))}) "
                                  "to split into training and validation")
    x = dataset_inputs(ds, cfg.use_psf)
    target = ds.truth_columns(tcols)
    y = np.stack([np.asarray(target[c], dtype=np.float32) for c in tcols], axis=1)

    kwargs = {"in_channels": x.shape[1], "stamp_size": ds.stamp_size, "width": cfg.width,
              "blocks": cfg.blocks, "hidden": cfg.hidden, "normalisation": cfg.normalisation,
              "activation": cfg.activation}
    noise = {}
    if cfg.normalisation == "stamp_rms+noise":
        kwargs["noise_frame"] = NOISE_FRAME
        noise = {"noise": {"estimate": "1.4826 x MAD of the galaxy stamp's outer frame [counts/pixel]",
                           "frame_pixels": NOISE_FRAME, "input": "noise sigma / galaxy stamp RMS, appended as a "
                                                                  "constant channel; computed inside the model"}}
    model = make_estimator(**kwargs)
    target_scale = np.sqrt(np.mean(y[train_idx] ** 2, axis=0)).clip(1e-6)
    input_scale = np.sqrt(np.mean(x[train_idx].astype(np.float64) ** 2, axis=(0, 2, 3))).clip(1e-30)
    with torch.no_grad():
        model.target_scale.copy_(torch.as_tensor(target_scale, dtype=torch.float32))
        model.input_scale.copy_(torch.as_tensor(input_scale, dtype=torch.float32))
    model.to(device)

    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = math.ceil(len(train_idx) / cfg.batch_size)
    lr_factor = (cosine_schedule(cfg.epochs * steps, int(cfg.warmup_epochs * steps))
                 if cfg.schedule == "cosine" else None)
    signs = np.asarray(D4_SIGNS, dtype=np.float32)
    ts = torch.as_tensor(target_scale, dtype=torch.float32, device=device)
    loss_of = _loss(cfg.loss)

    def batches(epoch: int):
        rng = epoch_rng(seed, epoch)
        order = rng.permutation(train_idx)
        ks = rng.integers(0, 8, len(order)) if cfg.augment else np.zeros(len(order), int)
        for b in range(0, len(order), cfg.batch_size):
            idx, kb = order[b:b + cfg.batch_size], ks[b:b + cfg.batch_size]
            xb = x[idx].copy()
            for k in np.unique(kb):
                if k:
                    sel = kb == k
                    xb[sel] = d4_transform(xb[sel], int(k))
            yb = y[idx] * signs[kb]
            yield torch.from_numpy(xb), torch.from_numpy(yb)

    def loss_fn(m, batch):  # the batch is on the training device already
        xb, yb = batch
        return loss_of(m(xb) / ts, yb / ts)

    xv, yv = torch.from_numpy(x[val_idx]), torch.from_numpy(y[val_idx])

    def validate(m):
        preds = []
        for b in range(0, len(xv), 512):
            preds.append(m(xv[b:b + 512].to(device)).float().cpu())
        p = torch.cat(preds)
        err = (p - yv).numpy()
        return {"val_loss": float(loss_of(p / ts.cpu(), yv / ts.cpu())),
                "val_rmse_g1": float(np.sqrt(np.mean(err[:, 0] ** 2))),
                "val_rmse_g2": float(np.sqrt(np.mean(err[:, 1] ** 2)))}

    meta = {
        "architecture": {"name": ARCHITECTURE, "kwargs": kwargs},
        "settings": settings,
        "hyperparameters": cfg.model_dump(mode="json"),
        "normalisation": {"mode": cfg.normalisation, "input_scale": input_scale.tolist(),
                          "target_scale": target_scale.tolist(), **noise,
                          "note": "input_scale/target_scale are also buffers in the weights"},
        "training": {
            # dataset: the manifest's name; dataset_folder: the folder trained on (a copy's own), the default
            # dataset of `lens evaluate`
            "dataset": ds.name, "dataset_folder": ds.stem, "dataset_path": str(ds.root.resolve()),
            "target": cfg.target, "target_columns": list(tcols),
            "outputs": ["g1", "g2"], "use_psf": cfg.use_psf, "stamp_size": ds.stamp_size,
            "pixel_scale": ds.pixel_scale, "seed": int(seed), "split": list(cfg.split),
            "n_train": int(len(train_idx)), "n_val": int(len(val_idx)), "n_test": int(len(test_idx)),
            "device": str(device), "precision": rt.precision, "processes": rt.world_size,
            "dataset_config": ds.manifest.get("config"),
        },
    }
    result = fit(model, opt, batches=batches, loss_fn=loss_fn, validate=validate, epochs=cfg.epochs,
                 checkpoint_dir=model_dir, meta=meta, seed=seed, monitor="val_loss",
                 patience=cfg.patience, lr_factor=lr_factor, resume=action == "resume",
                 on_epoch=on_epoch, log=log, runtime=rt)
    best = result.best_metrics
    if old_calibration and _calibration_of(model_dir) is None and log and rt.is_global_zero:   # new best weights
        from astrotool.ml.commands import model_option

        log.warning("%s: calibration discarded (fitted on %s for the old weights); run `%s` "
                    "again", model_dir.name, old_calibration.get("dataset"),
                    astro_command("lens", "calibrate", "--model", model_option(model_dir, "lens"),
                                  *(["--dataset", str(folder)] if (folder := old_calibration.get("dataset_folder")
                                                                   or old_calibration.get("dataset")) else []),
                                  *([] if old_calibration.get("symmetrize", True) else ["--no-symmetrize"])))
    return {
        "model": model_dir.name, "path": str(model_dir), "dataset": ds.stem, **result.summary,
        "val_loss": best.get("val_loss"),
        "val_rmse_g1": best.get("val_rmse_g1"), "val_rmse_g2": best.get("val_rmse_g2"),
        "n_train": int(len(train_idx)), "n_val": int(len(val_idx)), "n_test": int(len(test_idx)),
        "device": str(device),
    }
