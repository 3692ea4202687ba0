"""``astro plato train``: the segmentation network on a prepared set.

The network (:mod:`astrotool_plato.model`) trains on the ``train`` split of a
:class:`~astrotool_plato.prepare.PreparedDataset` to give in-transit samples
(label :data:`~astrotool_plato.labels.PLANET`) a high probability and everything
else -- continuum and binary eclipses -- a low one; it is validated on ``val``
each epoch: ``val_loss`` (monitored: the kept checkpoint and early stopping
follow it), and at threshold 0.5 the event recall (``val_recall``) and the false
alarms per curve (``val_false_alarms``) of :mod:`astrotool_plato.events`.

The loop, checkpoints (every epoch: ``last/``; the best: the model folder),
resume, devices, DDP and precision come from :func:`astrotool.ml.training.fit`;
a resume must use the same settings (:func:`astrotool.ml.commands.resume_settings`), others are
refused naming the keys.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path

import numpy as np

from astrotool.context import astro_command

__docformat__ = "numpy"

def no_dataset() -> str:
    """The hint for a missing prepared set."""
    return f"run `{astro_command('plato', 'prepare')}` first"

ARCH_KEYS = ("decoder", "width", "depth", "kernel_size", "dilation", "dropout", "bin", "pool", "noise_bin",
             "trend_window")
"""Training settings passed to the model's constructor."""


def make_optimizer(cfg, params):
    """The ``torch.optim`` optimizer named by ``cfg.optimizer`` with ``lr``, ``weight_decay`` and ``optimizer_kwargs``.

    Raises
    ------
    astrotool.errors.ConfigError
        Keyword arguments the optimizer does not take, or values it refuses.
    """
    import torch

    from astrotool.errors import ConfigError

    cls = getattr(torch.optim, cfg.optimizer)
    kwargs = {"lr": cfg.lr, "weight_decay": cfg.weight_decay, **cfg.optimizer_kwargs}
    try:
        return cls(params, **{k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()})
    except (TypeError, ValueError) as exc:   # TypeError: an unknown keyword; ValueError: a value torch refuses
        raise ConfigError([f"plato.train.optimizer_kwargs: {cfg.optimizer} refuses {cfg.optimizer_kwargs} ({exc})"]) \
            from None


SCHEDULER_KEYS = {"ExponentialLR": ("gamma",), "StepLR": ("step_size", "gamma"), "MultiStepLR": ("milestones", "gamma"),
                  "LinearLR": ("start_factor", "end_factor", "total_iters"), "ConstantLR": ("factor", "total_iters"),
                  "CosineAnnealingLR": ("T_max", "eta_min")}
"""The keyword arguments :func:`epoch_factor` reads per scheduler."""


def epoch_factor(name: str, kwargs: dict, lr: float):
    """``factor(epoch)`` of the learning-rate schedule ``name`` with keyword arguments ``kwargs`` (a
    ``torch.optim.lr_scheduler`` class stepped once per epoch; ``lr``: the base learning rate, for
    ``eta_min``): ``ExponentialLR(gamma)``, ``StepLR(step_size, gamma)``, ``MultiStepLR(milestones,
    gamma)``, ``LinearLR(start_factor, end_factor, total_iters)``, ``ConstantLR(factor, total_iters)``,
    ``CosineAnnealingLR(T_max, eta_min)`` (``eta_min`` in the units of the learning rate).

    Raises
    ------
    ValueError
        A missing or unknown keyword argument, or a value the schedule cannot use: ``step_size``,
        ``T_max``, ``total_iters`` and each of ``milestones`` must be whole numbers >= 1, ``gamma``,
        ``factor`` and ``start_factor`` > 0. ``[plato.train]`` checks its ``scheduler_kwargs`` with it.
    """
    k = dict(kwargs)

    def whole(key, v):   # a count of epochs, as torch takes it: an integer >= 1 (a TOML 2.0 is taken as 2)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 1 or v != math.floor(v):
            raise ValueError(f"{key} must be a whole number >= 1, not {v!r}")
        return int(v)

    def positive(key, v):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
            raise ValueError(f"{key} must be > 0, not {v!r}")
        return float(v)

    def number(key, v):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError(f"{key} must be a number, not {v!r}")
        return float(v)

    try:
        if name == "ExponentialLR":
            g = positive("gamma", k.pop("gamma"))
            f = lambda e: g ** e  # noqa: E731
        elif name == "StepLR":
            size, g = whole("step_size", k.pop("step_size")), positive("gamma", k.pop("gamma", 0.1))
            f = lambda e: g ** (e // size)  # noqa: E731
        elif name == "MultiStepLR":
            miles = k.pop("milestones")
            if not isinstance(miles, (list, tuple)):   # milestones = 5: torch's "'float' object is not iterable"
                raise ValueError(f"milestones must be a list of epochs (whole numbers >= 1, e.g. [10, 20]), not {miles!r}")
            miles = sorted(whole("milestones", m) for m in miles)
            g = positive("gamma", k.pop("gamma", 0.1))
            f = lambda e: g ** sum(e >= m for m in miles)  # noqa: E731
        elif name == "LinearLR":
            a, b = positive("start_factor", k.pop("start_factor", 1 / 3)), number("end_factor", k.pop("end_factor", 1.0))
            n = whole("total_iters", k.pop("total_iters", 5))
            f = lambda e: a + (b - a) * min(e, n) / n  # noqa: E731
        elif name == "ConstantLR":
            c, n = positive("factor", k.pop("factor", 1 / 3)), whole("total_iters", k.pop("total_iters", 5))
            f = lambda e: c if e < n else 1.0  # noqa: E731
        elif name == "CosineAnnealingLR":
            t_max, eta = whole("T_max", k.pop("T_max")), number("eta_min", k.pop("eta_min", 0.0)) / lr
            f = lambda e: eta + (1 - eta) * (1 + math.cos(math.pi * e / t_max)) / 2  # noqa: E731
        else:
            raise ValueError(f"unknown schedule {name!r}; expected one of {', '.join(SCHEDULER_KEYS)}")
    except KeyError as exc:
        unknown = sorted(set(kwargs) - set(SCHEDULER_KEYS[name]))
        also = f" (unknown: {', '.join(unknown)}; it takes {', '.join(SCHEDULER_KEYS[name])})" if unknown else ""
        raise ValueError(f"{name} needs {exc.args[0]!r}{also}") from None
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None
    if k:
        raise ValueError(f"{name} does not take {', '.join(sorted(k))} (it takes {', '.join(SCHEDULER_KEYS[name])})")
    return f


def lr_schedule(cfg, steps_per_epoch: int):
    """``lr_factor(step)`` of the epoch-wise schedule ``cfg.scheduler`` (None without one): the factor of
    :func:`epoch_factor` for the epoch of optimiser step ``step``.

    Raises
    ------
    astrotool.errors.ConfigError
        ``cfg.scheduler_kwargs`` the schedule cannot use (a ``[plato.train]`` section refuses them already).
    """
    from astrotool.errors import ConfigError

    if not cfg.scheduler:
        return None
    try:
        f = epoch_factor(cfg.scheduler, cfg.scheduler_kwargs, cfg.lr)
    except ValueError as exc:
        raise ConfigError([f"plato.train.scheduler_kwargs: {exc}"]) from None
    return lambda step: f(step // max(steps_per_epoch, 1))


def event_scores(prob: np.ndarray, label: np.ndarray, threshold: float, merge_gap: int, min_length: int) -> dict:
    """Recovered transits, true transits and false alarms summed over curves ``(n, length)``."""
    from astrotool_plato.events import find_events, match

    rec = true = fa = 0
    for p, lab in zip(prob, label):
        m = match(find_events(p, threshold, merge_gap, min_length), lab)
        rec += int(m.recovered.sum())
        true += len(m.true)
        fa += int(m.false_alarm.sum())
    return {"recovered": rec, "transits": true, "false_alarms": fa}


def train_model(ds, cfg, events, model_dir: str | Path, seed: int, overwrite: bool = False, log=None,
                on_epoch=None, runtime=None) -> dict:
    """Train (or resume training) the network.

    Parameters
    ----------
    ds : astrotool_plato.prepare.PreparedDataset
    cfg : astrotool_plato.config.TrainConfig
    events : astrotool_plato.config.EventsConfig
        Merge gap and minimum duration of the validation events.
    model_dir : path-like
        Checkpoint folder (``plato/models/<model>``).
    seed : int
        Seeds the initial weights and the batch order.
    overwrite : bool
        Discard an existing model instead of resuming it.
    log : logging.Logger, optional
    on_epoch : callable, optional
        Called with each epoch's history entry.
    runtime : astrotool.ml.fabric.Runtime, optional

    Returns
    -------
    dict
        Summary: best epoch and its validation scores, epochs run, sizes, seconds per epoch.

    Raises
    ------
    astrotool.errors.InputError
        The curve length does not suit the network, or a split is empty.
    """
    import torch

    from astrotool.errors import InputError
    from astrotool.ml.commands import dataset_record, prepare_training, resume_settings
    from astrotool.ml.data import CHUNK_BYTES, EpochBatchSampler
    from astrotool.ml.fabric import Runtime
    from astrotool.ml.training import fit, seed_everything
    from astrotool.seeding import derive_seed

    from astrotool_plato.labels import PLANET
    from astrotool_plato.model import ARCHITECTURE, granularity, loss_function, make_model, min_length

    model_dir = Path(model_dir)
    g = granularity(cfg.bin, cfg.depth)
    if ds.length % g:
        raise InputError(ds.root, f"curves of {ds.length} samples; a network with bin {cfg.bin} and depth "
                                  f"{cfg.depth} needs a length divisible by bin * 2**(depth-1) = {g} "
                                  "(prepare again with another --length, or lower depth or bin)")
    shortest = min_length(cfg.bin, cfg.depth, cfg.kernel_size, cfg.dilation)
    if ds.length < shortest:
        raise InputError(ds.root, f"curves of {ds.length} samples; a network with bin {cfg.bin}, depth "
                                  f"{cfg.depth}, kernel_size {cfg.kernel_size} and dilation {cfg.dilation} needs "
                                  f"at least {shortest} (its deepest level's convolutions pad by reflection: "
                                  "prepare longer curves, or lower depth, bin or kernel_size)")
    train_idx, val_idx = ds.split_indices("train"), ds.split_indices("val")
    if len(train_idx) == 0 or len(val_idx) == 0:
        raise InputError(ds.root, f"{len(train_idx)} training and {len(val_idx)} validation curves: both splits "
                                  "must hold curves (prepare more curves or other split fractions)")
    cadence = float(np.median(np.asarray(ds.metadata(["cadence"])["cadence"], float)))
    merge = int(round(events.merge_gap_hours * 3600.0 / cadence))
    min_len = max(1, int(round(events.min_duration_hours * 3600.0 / cadence)))

    rt = runtime if runtime is not None else Runtime()
    rt.launch()
    settings = resume_settings(cfg, seed, ds)
    action = prepare_training(model_dir, overwrite=overwrite, resume=cfg.resume, clear=rt.is_global_zero,
                              settings=settings, share=rt.broadcast)
    rt.barrier("plato-train-prepared")
    seed_everything(seed)
    kwargs = {**{k: getattr(cfg, k) for k in ARCH_KEYS}, "in_channels": ds.in_channels}
    model = make_model(**kwargs).to(rt.device)
    opt = make_optimizer(cfg, model.parameters())
    loss_of = loss_function(cfg.loss, cfg.focal_gamma, cfg.pos_weight)
    block = max(1, CHUNK_BYTES // (4 * ds.length * ds.in_channels))
    sampler = EpochBatchSampler(train_idx, cfg.batch_size, seed=derive_seed(seed, "batches"), block=block, window=4)

    def batches(epoch: int):
        sampler.set_epoch(epoch)
        for idx in sampler:
            b = ds.read(np.sort(np.asarray(idx)), ["flux", "label"])
            yield (torch.from_numpy(b["flux"].astype(np.float32)),
                   torch.from_numpy((b["label"] == PLANET).astype(np.float32)))

    def loss_fn(m, batch):
        x, y = batch
        return loss_of(m(x).float(), y)

    def validate(m):
        dev = next(m.parameters()).device
        total, n_batches = 0.0, 0
        counts = {"recovered": 0, "transits": 0, "false_alarms": 0}
        for b in ds.iter_batches(cfg.batch_size, ["flux", "label"], indices=val_idx):
            x = torch.from_numpy(b["flux"].astype(np.float32)).to(dev)
            y = torch.from_numpy((b["label"] == PLANET).astype(np.float32)).to(dev)
            logits = m(x).float()
            total += float(loss_of(logits, y))
            n_batches += 1
            prob = torch.sigmoid(logits).cpu().numpy()
            for k, v in event_scores(prob, b["label"], 0.5, merge, min_len).items():
                counts[k] += v
        return {"val_loss": total / max(n_batches, 1),
                "val_recall": counts["recovered"] / counts["transits"] if counts["transits"] else math.nan,
                "val_false_alarms": counts["false_alarms"] / len(val_idx)}

    meta = {
        "architecture": {"name": ARCHITECTURE, "kwargs": kwargs},
        "settings": settings,
        "hyperparameters": cfg.model_dump(mode="json"),
        "inputs": "relative flux (flux / median - 1), (n, length) float32, at the training cadence" if
                  ds.in_channels == 1 else f"relative flux (flux / median - 1) of {ds.in_channels - 1} camera groups "
                                           f"then the co-added flux, (n, {ds.in_channels}, length) float32",
        "channels": ds.channels,
        "outputs": "logit per sample that the sample is in a planet transit, (n, length)",
        "cadence_s": cadence,
        "training": {"dataset": ds.name, "dataset_path": dataset_record(ds.root, model_dir), "length": ds.length,
                     "seed": int(seed),
                     "n_train": int(len(train_idx)), "n_val": int(len(val_idx)), "loss": cfg.loss,
                     "monitor": "val_loss", "device": str(rt.device), "precision": rt.precision,
                     "processes": rt.world_size},
    }
    result = fit(model, opt, batches=batches, loss_fn=loss_fn, validate=validate, epochs=cfg.epochs,
                 checkpoint_dir=model_dir, meta=meta, seed=seed, monitor="val_loss", patience=cfg.patience,
                 lr_factor=lr_schedule(cfg, math.ceil(len(train_idx) / cfg.batch_size)),
                 clip_grad_norm=cfg.clip_grad_norm or None,
                 resume=action == "resume", on_epoch=on_epoch, log=log, runtime=rt)
    best = result.best_metrics
    return {
        "model": model_dir.name, "path": str(model_dir), "dataset": ds.name, **result.summary,
        "val_loss": best.get("val_loss"),
        "val_recall": best.get("val_recall"), "val_false_alarms": best.get("val_false_alarms"),
        "n_train": int(len(train_idx)), "n_val": int(len(val_idx)), "length": ds.length,
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "device": str(rt.device),
    }


def train_command(ctx, cfg, runtime) -> dict | None:
    """``astro plato train``: train on a prepared set, record the checkpoint, plot the history.

    Parameters
    ----------
    ctx : astrotool.context.Context
    cfg : astrotool_plato.config.PlatoConfig
        ``cfg.train`` and ``cfg.events`` are used.
    runtime : astrotool.ml.fabric.Runtime

    Returns
    -------
    dict or None
        The emitted summary (None in the copies of a multi-process run).
    """
    from astrotool.ml import commands as mc

    from astrotool_plato import NAME, PREPARED, REPORTS
    from astrotool_plato.prepare import PreparedDataset

    t = cfg.train
    runtime.launch()
    if not runtime.is_global_zero:
        ctx.mark_copy()
    ds = mc.open_dataset(ctx, NAME, PREPARED, t.dataset, PreparedDataset, no_dataset())
    mdir = mc.model_dir(ctx, NAME, t.model or f"{ds.name}_{t.decoder}")
    progress = (mc.epoch_progress(ctx, t.epochs, f"train {mdir.name}", mc.resumed_dir(ctx, mdir, runtime, t.resume))
                if runtime.is_global_zero else contextlib.nullcontext(None))
    with ds, progress as on_epoch:
        res = train_model(ds, t, cfg.events, mdir, ctx.stage_seed(t.seed, "plato.train.seed"),
                          overwrite=ctx.overwrite, log=ctx.log, on_epoch=on_epoch, runtime=runtime)
    if not runtime.is_global_zero:
        return None
    mc.record(ctx, outputs=mc.checkpoint_files(mdir))
    plot = mc.history_figure(ctx, mdir, ctx.workspace.stage(NAME, REPORTS) / f"{mdir.name}_history.png")
    summary = {**res, "history_plot": str(plot) if plot else None}
    ctx.emit(summary)
    return summary
