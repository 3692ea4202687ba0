"""Training the kappa U-Net on a packed data set (``astro lens kappa train``).

The network (:mod:`astrotool_lens.kappa.model`) trains on the ``train`` split
and is validated on the ``val`` split of a :class:`KappaDataset`; both are
streamed from the HDF5 shards batch by batch (block-wise shuffled with
:class:`astrotool.ml.data.EpochBatchSampler`, so a batch decompresses a few
chunks), and the extra input channels (:func:`model_inputs`) are computed per
batch. Augmentation draws one of the 8 flips/quarter turns of the grid per map
and applies it with spin-2 signs to the whole input stack and the target
(:func:`astrotool_lens.kappa.model.augment`).

The loss (``mse`` or ``l1``) is taken on kappa in units of the training set's
RMS; validation reports it (``val_loss``, the monitored value: early stopping
and the kept checkpoint follow it), ``val_mse`` [kappa^2] and ``val_pearson``
(mean per-map Pearson r). WMAPE is never used to select: it rewards shrinking
the prediction toward zero.

The loop, checkpoints, early stopping and resume come from
:func:`astrotool.ml.training.fit` (Lightning Fabric: ``--device``,
``--precision``, ``--devices``); what an existing model folder means from
:func:`astrotool.ml.commands.prepare_training`: a resume must use the same
settings (:func:`astrotool.ml.commands.resume_settings`), others are refused naming the keys.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path

import numpy as np

from astrotool.context import astro_command

__docformat__ = "numpy"

__all__ = ["no_dataset", "train_unet", "train_command"]

def no_dataset() -> str:
    """The hint for a missing packed set."""
    return f"run `{astro_command('lens', 'kappa', 'data')}` first"

STATS_MAPS = 2048
"""At most this many training maps (evenly spaced over the split) set the normalisation constants."""


def _stats(ds, idx: np.ndarray, spec: dict, batch: int = 64) -> dict:
    """Per-channel input shift/scale and the target's, streamed over ``idx``.

    Spin-2 channels (e1, e2) and the zero-mean KS map are not shifted (a shift
    would break their symmetry); the others are centred on their mean. Scales
    are the RMS about the shift.
    """
    from astrotool_lens.kappa.model import model_inputs

    if len(idx) > STATS_MAPS:
        idx = idx[np.unique(np.linspace(0, len(idx) - 1, STATS_MAPS).round().astype(int))]
    chans = spec["channels"]
    s1, s2 = np.zeros(len(chans)), np.zeros(len(chans))  # per-channel sums of x and x^2
    t1 = t2 = 0.0
    count = 0
    for b in ds.iter_batches(batch, ["epsilon", "kappa"], indices=idx):
        x = model_inputs(b["epsilon"], spec).astype(np.float64)
        y = b["kappa"].astype(np.float64)
        s1 += x.sum(axis=(0, 2, 3))
        s2 += (x * x).sum(axis=(0, 2, 3))
        t1 += float(y.sum())
        t2 += float((y * y).sum())
        count += y.size
    mean = s1 / count
    shift = np.where(np.isin(chans, ["e1", "e2", "ks"]), 0.0, mean)
    scale = np.sqrt(np.maximum(s2 / count - 2 * shift * mean + shift**2, 0.0))
    t_mean = t1 / count
    t_std = math.sqrt(max(t2 / count - t_mean**2, 0.0))
    return {"input_shift": shift.tolist(), "input_scale": np.where(scale > 0, scale, 1.0).tolist(),
            "target_shift": float(t_mean), "target_scale": float(t_std if t_std > 0 else 1.0),
            "maps": int(len(idx))}


def _pearson(p: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Per-map Pearson r of ``(n, S, S)`` maps (0 where either map is constant)."""
    p = p.reshape(len(p), -1).astype(np.float64)
    t = t.reshape(len(t), -1).astype(np.float64)
    p = p - p.mean(axis=1, keepdims=True)
    t = t - t.mean(axis=1, keepdims=True)
    den = np.sqrt((p * p).sum(axis=1) * (t * t).sum(axis=1))
    return np.where(den > 0, (p * t).sum(axis=1) / np.where(den > 0, den, 1.0), 0.0)


def train_unet(ds, cfg, model_dir: str | Path, seed: int, overwrite: bool = False, log=None, on_epoch=None,
               runtime=None) -> dict:
    """Train (or resume training) the kappa U-Net.

    Parameters
    ----------
    ds : astrotool_lens.kappa.data.KappaDataset
        With kappa; its ``train`` split trains, its ``val`` split validates.
    cfg : astrotool_lens.kappa.config.TrainConfig
    model_dir : path-like
        Checkpoint folder (``lens/kappa/models/<model>``). ``model.json`` records the set's folder
        relative to it (``../../data/<set>``, :func:`astrotool.ml.commands.dataset_record`: a copied
        or moved workspace reads its own copy), absolute for a set outside the workspace's ``lens/``.
    seed : int
        Seeds the initial weights, the batch order and the augmentation.
    overwrite : bool
        Discard an existing model instead of resuming it.
    log : logging.Logger, optional
    on_epoch : callable, optional
        Called with each epoch's history entry.
    runtime : astrotool.ml.fabric.Runtime, optional
        Where and how to train (default: the ``[ml]`` defaults).

    Returns
    -------
    dict
        Summary: ``best_epoch`` (counted from 1, as the log's "epoch i/n";
        model.json's and the history's count from 0) and its validation
        metrics, epochs run, sizes, mean seconds per epoch, path.

    Raises
    ------
    astrotool.errors.InputError
        The set holds no kappa, its side is not divisible by ``2**depth``, or
        a split is empty.
    astrotool.errors.AstroError
        A model is already in ``model_dir`` and may not be resumed (other
        settings, ``--no-resume``).
    """
    import torch

    from astrotool.errors import InputError
    from astrotool.ml.commands import (dataset_record, prepare_training, resume_settings,
                                       warn_schedule_change)
    from astrotool.ml.data import CHUNK_BYTES, EpochBatchSampler
    from astrotool.ml.fabric import Runtime
    from astrotool.ml.training import cosine_schedule, epoch_rng, fit, seed_everything
    from astrotool.seeding import derive_seed

    from astrotool_lens.kappa.model import ARCHITECTURE, augment, input_spec, make_unet, model_inputs

    model_dir = Path(model_dir)
    if not ds.has_kappa:
        raise InputError(ds.root, "holds no kappa maps (packed from inputs alone): training needs (epsilon, kappa) "
                                  "pairs")
    size, mult = ds.size, 2**cfg.depth
    if size % mult:
        raise InputError(ds.root, f"maps are {size}x{size} pixels; a U-Net of depth {cfg.depth} needs a side "
                                  f"divisible by 2**depth = {mult} (lower lens.kappa.train.depth / --depth)")
    spec = input_spec(cfg.extra_inputs, cfg.ks_sigma, size, cfg.depth)
    train_idx, val_idx = ds.split_indices("train"), ds.split_indices("val")
    if cfg.max_samples and len(train_idx) > cfg.max_samples:
        rng = np.random.default_rng(derive_seed(seed, "max_samples"))
        train_idx = np.sort(rng.choice(train_idx, cfg.max_samples, replace=False))
    if len(train_idx) == 0 or len(val_idx) == 0:
        raise InputError(ds.root, f"{len(train_idx)} training and {len(val_idx)} validation maps: both splits "
                                  "must hold maps (repack with `astro lens kappa data` and other split "
                                  "fractions, e.g. --set lens.kappa.data.split=[0.6,0.2,0.2])")

    rt = runtime if runtime is not None else Runtime()
    rt.launch()
    settings = resume_settings(cfg, seed, ds)
    action = prepare_training(model_dir, overwrite=overwrite, resume=cfg.resume, clear=rt.is_global_zero,
                              settings=settings, share=rt.broadcast)
    if action == "resume" and cfg.schedule == "cosine" and log and rt.is_global_zero:
        warn_schedule_change(model_dir, cfg.epochs, log)
    rt.barrier("kappa-train-prepared")
    seed_everything(seed)
    device = rt.device

    stats = _stats(ds, train_idx, spec)
    kwargs = {"in_channels": len(spec["channels"]), "width": cfg.width, "depth": cfg.depth, "upsample": cfg.upsample}
    model = make_unet(**kwargs)
    with torch.no_grad():
        for name in ("input_shift", "input_scale", "target_shift", "target_scale"):
            getattr(model, name).copy_(torch.as_tensor(np.atleast_1d(stats[name]), dtype=torch.float32))
    model.to(device)

    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = math.ceil(len(train_idx) / cfg.batch_size)
    lr_factor = cosine_schedule(cfg.epochs * steps, min(steps, cfg.epochs * steps // 10)) \
        if cfg.schedule == "cosine" else None
    sample_bytes = int(np.prod(ds.arrays["epsilon"][0])) * np.dtype(ds.arrays["epsilon"][1]).itemsize
    block = max(1, CHUNK_BYTES // max(1, sample_bytes))  # the rows of one compressed chunk
    sampler = EpochBatchSampler(train_idx, cfg.batch_size, seed=derive_seed(seed, "batches"), block=block, window=4)
    import torch.nn.functional as F

    loss_of = {"mse": F.mse_loss, "l1": F.l1_loss}[cfg.loss]

    def batches(epoch: int):
        sampler.set_epoch(epoch)
        rng = epoch_rng(seed, epoch)
        for idx in sampler:
            idx = np.sort(np.asarray(idx))  # sorted reads; a batch is a set, its order does not matter
            b = ds.read(idx, ["epsilon", "kappa"])
            x, y = model_inputs(b["epsilon"], spec, source=ds.root), b["kappa"].astype(np.float32)
            if cfg.augment:
                x, y = augment(x, y, rng.integers(0, 8, len(idx)))
            yield torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.ascontiguousarray(y))

    ts = float(np.float32(stats["target_scale"]))  # the model's target_scale buffer, as a number

    def loss_fn(m, batch):  # on kappa in units of its training RMS
        xb, yb = batch
        return loss_of(m(xb).float() / ts, yb / ts)

    val_bs = max(cfg.batch_size, 32)

    def validate(m):
        dev = next(m.parameters()).device
        loss_sum = mse_sum = 0.0
        r, n_pix = [], 0
        for b in ds.iter_batches(val_bs, ["epsilon", "kappa"], indices=val_idx):
            x = torch.from_numpy(model_inputs(b["epsilon"], spec, source=ds.root)).to(dev)
            p = m(x).float().cpu()
            y = torch.from_numpy(b["kappa"].astype(np.float32))
            loss_sum += float(loss_of(p / ts, y / ts, reduction="sum"))
            mse_sum += float(((p - y) ** 2).sum())
            n_pix += y.numel()
            r.append(_pearson(p.numpy(), y.numpy()))
        return {"val_loss": loss_sum / n_pix, "val_mse": mse_sum / n_pix,
                "val_pearson": float(np.concatenate(r).mean())}

    meta = {
        "architecture": {"name": ARCHITECTURE, "kwargs": kwargs},
        "settings": settings,
        "hyperparameters": cfg.model_dump(mode="json"),
        "inputs": spec,
        "outputs": "kappa (n, S, S) float32",
        "normalisation": {**stats, "note": "input_shift/input_scale/target_shift/target_scale are also buffers "
                                           "in the weights"},
        "training": {
            "dataset": ds.name, "dataset_path": dataset_record(ds.root, model_dir), "size": size, "seed": int(seed),
            "n_train": int(len(train_idx)), "n_val": int(len(val_idx)), "loss": cfg.loss, "monitor": "val_loss",
            "device": str(device), "precision": rt.precision, "processes": rt.world_size,
        },
    }
    result = fit(model, opt, batches=batches, loss_fn=loss_fn, validate=validate, epochs=cfg.epochs,
                 checkpoint_dir=model_dir, meta=meta, seed=seed, monitor="val_loss",
                 patience=cfg.patience, lr_factor=lr_factor, resume=action == "resume",
                 on_epoch=on_epoch, log=log, runtime=rt)
    best = result.best_metrics
    return {
        "model": model_dir.name, "path": str(model_dir), "dataset": ds.name, **result.summary,
        "val_loss": best.get("val_loss"), "val_mse": best.get("val_mse"),
        "val_pearson": best.get("val_pearson"), "n_train": int(len(train_idx)), "n_val": int(len(val_idx)),
        "size": size, "parameters": int(sum(p.numel() for p in model.parameters())),
        "device": str(device),
    }


def train_command(ctx, cfg, runtime) -> dict | None:
    """``astro lens kappa train``: train on a packed set, record the checkpoint, plot the history.

    Parameters
    ----------
    ctx : astrotool.context.Context
    cfg : astrotool_lens.kappa.config.KappaConfig
        ``cfg.train`` is used.
    runtime : astrotool.ml.fabric.Runtime
        From :func:`astrotool.ml.commands.runtime` (the ``[ml]`` options).

    Returns
    -------
    dict or None
        The emitted summary (None in the copies of a multi-process run).
    """
    from astrotool.ml import commands as mc

    from astrotool_lens.kappa.data import open_packed

    t = cfg.train
    runtime.launch()  # several processes: the copies start here; they write no record and show no progress
    if not runtime.is_global_zero:
        ctx.mark_copy()
    ds = open_packed(ctx, t.dataset, "--dataset", no_dataset())
    mdir = mc.model_dir(ctx, "lens", t.model or f"{ds.name}_unet", stage="kappa/models")
    progress = (mc.epoch_progress(ctx, t.epochs, f"train {mdir.name}", mc.resumed_dir(ctx, mdir, runtime, t.resume))
                if runtime.is_global_zero else contextlib.nullcontext(None))
    with ds, progress as on_epoch:
        res = train_unet(ds, t, mdir, ctx.stage_seed(t.seed, "lens.kappa.train.seed"), overwrite=ctx.overwrite,
                         log=ctx.log, on_epoch=on_epoch, runtime=runtime)
    if not runtime.is_global_zero:
        return
    mc.record(ctx, outputs=mc.checkpoint_files(mdir))
    plot = mc.history_figure(ctx, mdir, ctx.workspace.stage("lens", "kappa/reports") / f"{mdir.name}_history.png")
    summary = {**res, "history_plot": str(plot) if plot else None}
    ctx.emit(summary)
    return summary
