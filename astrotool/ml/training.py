"""Generic torch training loop: seeding, device, early stopping, resume, DDP.

:func:`fit` runs epochs of caller-supplied batches through a caller-supplied
loss, validates after each epoch, keeps the best epoch's checkpoint in the
checkpoint folder and the last epoch's (model + optimizer + loop state) in
``<folder>/last/``, and resumes from ``last/`` when asked. Shuffling and any
random augmentation are derived from ``(seed, epoch)`` (:func:`epoch_rng`), and
torch's generator is re-seeded from ``(seed, epoch)`` at the start of every
epoch, so a run interrupted after epoch *k* and resumed gives the same weights
as an uninterrupted one (on the same device and thread count). A resume
is refused when the run's settings (``meta["settings"]``) differ from those
the checkpoint was trained with, or either side has none
(:func:`check_resume_settings`). ``last/`` is saved as one set
(:func:`astrotool.ml.checkpoint.save_last`): a stop while it is written loses
at most that epoch (in the first epoch, a stop after the best checkpoint and
before ``last/`` leaves nothing to resume: :func:`astrotool.ml.commands.prepare_training`
refuses it, saying so).

The loop runs through Lightning Fabric: ``fit(..., runtime=Runtime.from_config(
cfg.ml))`` trains on the CPU, one or several GPUs (DDP) or several Slurm nodes,
in 32-bit or mixed precision (:mod:`astrotool.ml.fabric`); each process takes
its share of every global batch (:func:`split_batch`) and rank 0 alone writes
the checkpoints.

Nothing here knows about a domain: the lens, plato and ztf plugins all supply
their own model, batches, loss and validation.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from astrotool.seeding import derive_seed, entropy

__docformat__ = "numpy"

__all__ = ["derive_seed", "seed_everything", "epoch_rng", "select_device", "EarlyStopping", "cosine_schedule",
           "FitResult", "fit", "split_batch", "SETTINGS_KEY", "settings_changes", "check_resume_settings"]

SETTINGS_KEY = "settings"
"""Key of the checkpoint metadata holding what a resumed run must share with the run it continues."""


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed Python's, numpy's and torch's global generators.

    Parameters
    ----------
    seed : int
        Base seed.
    deterministic : bool
        Also ask torch for deterministic kernels (slower on GPU; a no-op for
        the CPU kernels used in tests).
    """
    import numpy as np
    import torch

    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed & _MASK64)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)


_MASK64 = 2**64 - 1


def epoch_rng(seed: int, epoch: int):
    """numpy Generator for one epoch's shuffling/augmentation, from ``(seed, epoch)``.

    A negative seed is taken modulo 2**64 (numpy refuses negative entropy).
    """
    import numpy as np

    return np.random.default_rng(entropy(seed, epoch, 0x5EED))


def select_device(preference: str = "auto"):
    """Pick a torch device (see :func:`astrotool.backends.resolve_device`).

    Parameters
    ----------
    preference : {"auto", "cpu", "cuda", "cuda:N", "mps"}
        ``auto`` takes CUDA if available, then Apple MPS, else CPU.

    Returns
    -------
    torch.device

    Raises
    ------
    astrotool.errors.AstroError
        A GPU was requested but none is available.
    """
    import torch

    from astrotool.backends import resolve_device

    return torch.device(resolve_device(preference, "torch", auto_mps=True))


class EarlyStopping:
    """Stop when a monitored value has not improved for ``patience`` epochs.

    Parameters
    ----------
    patience : int
        Epochs without improvement before stopping; 0 disables stopping.
    min_delta : float
        Smallest change that counts as an improvement (absolute).
    mode : {"min", "max"}
        Whether smaller or larger values are better.
    """

    def __init__(self, patience: int = 5, min_delta: float = 0.0, mode: str = "min"):
        if mode not in ("min", "max"):
            raise ValueError("mode must be 'min' or 'max'")
        self.patience = int(patience)
        self.min_delta = float(min_delta)
        self.mode = mode
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.bad_epochs = 0

    def step(self, value: float, epoch: int) -> bool:
        """Record an epoch's value; return True if it is a new best."""
        value = float(value)
        if math.isnan(value):
            improved = False
        elif self.best is None:
            improved = True
        elif self.mode == "min":
            improved = value < self.best - self.min_delta
        else:
            improved = value > self.best + self.min_delta
        if improved:
            self.best, self.best_epoch, self.bad_epochs = value, int(epoch), 0
        else:
            self.bad_epochs += 1
        return improved

    @property
    def should_stop(self) -> bool:
        """Whether patience is exhausted."""
        return self.patience > 0 and self.bad_epochs >= self.patience

    def state_dict(self) -> dict:
        """JSON-serialisable state."""
        return {
            "patience": self.patience,
            "min_delta": self.min_delta,
            "mode": self.mode,
            "best": self.best,
            "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` output (patience/min_delta keep the new values)."""
        self.best = state.get("best")
        self.best_epoch = state.get("best_epoch")
        self.bad_epochs = int(state.get("bad_epochs", 0))


def settings_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """The keys whose values differ between two settings dicts, as ``"key: old -> new"``.

    The core's one rule for every "made with other settings" check
    (:func:`astrotool.made_with.changes`): nested dicts are compared key by key
    (``dataset.name``), values as JSON, ``(absent)`` for a key only one side has.

    Examples
    --------
    >>> settings_changes({"lr": 0.002, "loss": "mse", "split": [0.8, 0.2]},
    ...                  {"lr": 0.5, "loss": "mse", "split": (0.8, 0.2), "augment": True})
    ['augment: (absent) -> true', 'lr: 0.002 -> 0.5']
    """
    from astrotool.made_with import changes

    return changes(old, new)


def check_resume_settings(checkpoint_dir: str | Path, settings: Mapping[str, Any] | None,
                          last_dir: str | Path | None = None) -> None:
    """Refuse to resume ``<checkpoint_dir>/last/`` with settings other than those it was trained with.

    Parameters
    ----------
    checkpoint_dir : path-like
        The model folder (its ``last/model.json`` holds the stored settings).
    settings : mapping or None
        This run's settings (``meta["settings"]`` of :func:`fit`): whatever
        changes the weights an epoch produces (model, loss, optimizer,
        schedule, target, dataset identity, seed, split, augmentation...).
        Leave out what may change between a run and its resumption (the
        number of epochs, early-stopping patience, device, precision,
        processes, threads). None is refused: without settings a resume
        could not tell whether it continues the same training.
    last_dir : path-like, optional
        The folder of the last-epoch state, when not ``last/``
        (:func:`astrotool.ml.checkpoint.resolve_last` of ``checkpoint_dir``
        by default).

    Raises
    ------
    astrotool.errors.AstroError
        (exit code 2) The settings differ (each differing key named, old ->
        new), or this run or the checkpoint has none.
    astrotool.errors.InputError
        ``last/model.json`` is missing or unreadable.
    """
    from astrotool.errors import AstroError
    from astrotool.ml import checkpoint as ck

    d = Path(checkpoint_dir)
    hint = "use --overwrite to train it again from scratch or another --model name"
    if settings is None:
        raise AstroError(f"{d}: cannot resume the model here without this run's settings to compare with those "
                         f"it was trained with (fit's meta[{SETTINGS_KEY!r}]); give them, pass resume=False "
                         f"to train from scratch, or {hint}")
    old = ck.read_meta(Path(last_dir) if last_dir is not None else ck.resolve_last(d)).get(SETTINGS_KEY)
    if not isinstance(old, Mapping):
        raise AstroError(f"{d}: the model here records no training settings to compare this run's with; {hint}")
    changes = settings_changes(old, settings)
    if changes:
        raise AstroError(f"{d}: a model trained with other settings is here ({'; '.join(changes)}); {hint}")


def cosine_schedule(total_steps: int, warmup_steps: int = 0, floor: float = 0.01) -> Callable[[int], float]:
    """Learning-rate factor: linear warm-up then cosine decay to ``floor``.

    Parameters
    ----------
    total_steps : int
        Steps over which the factor decays.
    warmup_steps : int
        Steps of linear warm-up from 0.
    floor : float
        Final factor (fraction of the base learning rate).
    """

    def factor(step: int) -> float:
        if warmup_steps and step < warmup_steps:
            return (step + 1) / warmup_steps
        span = max(1, total_steps - warmup_steps)
        t = min(1.0, (step - warmup_steps) / span)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))

    return factor


@dataclass
class FitResult:
    """Outcome of :func:`fit`.

    Attributes
    ----------
    history : list of dict
        One entry per epoch (``epoch``, ``train_loss``, validation metrics, ``lr``, ``seconds``).
    best_epoch : int or None
        Epoch of the best monitored value (0-based).
    best_metrics : dict
        The history entry of that epoch.
    epochs_run : int
        Epochs trained in this call (0 when a finished run was resumed).
    stopped_early : bool
        Whether early stopping ended training.
    resumed_from : int or None
        Number of epochs already done when resuming.
    checkpoint : pathlib.Path
        The checkpoint folder (best epoch).
    world_size : int
        Training processes (1 without DDP).
    is_global_zero : bool
        Whether this process is rank 0, the one that wrote the checkpoints.
    """

    history: list = field(default_factory=list)
    best_epoch: int | None = None
    best_metrics: dict = field(default_factory=dict)
    epochs_run: int = 0
    stopped_early: bool = False
    resumed_from: int | None = None
    checkpoint: Path | None = None
    world_size: int = 1
    is_global_zero: bool = True

    @property
    def best_epoch_number(self) -> int | None:
        """The best epoch counted from 1, as the log's ``epoch i/n`` lines and the commands' summaries count
        (``best_epoch`` and the history's ``epoch`` count from 0); None before any epoch."""
        return None if self.best_epoch is None else self.best_epoch + 1

    @property
    def summary(self) -> dict:
        """What every ``train`` command reports of the run: ``best_epoch`` (from 1), ``epochs_run`` (in this
        call), ``epochs_total`` (in the checkpoint), ``resumed_from`` (epochs done before; None: a new run),
        ``stopped_early`` and ``seconds_per_epoch`` [s] (mean over this call's epochs; None without any)."""
        ran = self.history[len(self.history) - self.epochs_run:] if self.epochs_run else []
        return {"best_epoch": self.best_epoch_number, "epochs_run": self.epochs_run, "epochs_total": len(self.history),
                "resumed_from": self.resumed_from, "stopped_early": self.stopped_early,
                "seconds_per_epoch": round(sum(h["seconds"] for h in ran) / len(ran), 2) if ran else None}


# ----------------------------------------------------------------------------- batches across ranks


def _rows(batch) -> int | None:
    """Number of rows (length of dim 0) of the first array in a nested batch."""
    if hasattr(batch, "shape") and len(getattr(batch, "shape", ())) > 0:
        return int(batch.shape[0])
    if isinstance(batch, Mapping):
        batch = list(batch.values())
    if isinstance(batch, (list, tuple)):
        for item in batch:
            n = _rows(item)
            if n is not None:
                return n
    return None


def _take(batch, start: int, stop: int, n: int):
    if hasattr(batch, "shape") and len(getattr(batch, "shape", ())) > 0:
        if int(batch.shape[0]) != n:
            raise ValueError(f"batch arrays disagree on their number of rows ({int(batch.shape[0])} != {n}); "
                             "every array of a batch needs one row per sample to be split across processes")
        return batch[start:stop]
    if isinstance(batch, Mapping):
        return {k: _take(v, start, stop, n) for k, v in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # namedtuple
        return type(batch)(*(_take(v, start, stop, n) for v in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(_take(v, start, stop, n) for v in batch)
    return batch


def split_batch(batch, rank: int, world_size: int):
    """This rank's part of a global batch, and the weight of its loss.

    Rank ``r`` of ``W`` takes rows ``[r*n//W, (r+1)*n//W)`` of every array (a
    tensor, a numpy array, or such arrays nested in tuples, lists, dicts and
    named tuples; other leaves are passed whole). Its loss, a mean over its
    ``n_r`` rows, is multiplied by ``n_r * W / n``: DDP averages the gradients
    of the W ranks, so the update is that of the mean over all ``n`` rows, as
    in one process, also when ``n`` is not a multiple of ``W`` (parts then
    differ by one row). A rank whose part would be empty (``n < W``) gets row 0
    with weight 0, so it still joins the gradient all-reduce but adds nothing.

    Parameters
    ----------
    batch : array or nested tuple/list/dict of arrays
        One global batch, as yielded by ``batches(epoch)``.
    rank, world_size : int
        This process's global rank and the number of processes.

    Returns
    -------
    part : same structure as ``batch``
    weight : float
        Factor for this rank's mean loss.

    Raises
    ------
    ValueError
        The batch holds no array, or arrays with different numbers of rows.
    """
    n = _rows(batch)
    if n is None:
        raise ValueError("cannot split a batch that holds no array across processes")
    if n == 0:
        raise ValueError("empty batch")
    start, stop = rank * n // world_size, (rank + 1) * n // world_size
    if stop == start:
        return _take(batch, 0, 1, n), 0.0
    return _take(batch, start, stop, n), (stop - start) * world_size / n


# ----------------------------------------------------------------------------- the loop


def _resolve_runtime(runtime, model):
    """(Fabric, Runtime or None) for ``fit``'s ``runtime`` argument."""
    from astrotool.ml.fabric import Runtime

    if runtime is None:
        try:
            device = next(iter(model.parameters())).device
        except StopIteration:
            device = "cpu"
        rt = Runtime.for_device(device)
        return rt.fabric, rt
    if isinstance(runtime, Runtime):
        return runtime.fabric, runtime
    if hasattr(runtime, "setup") and hasattr(runtime, "world_size"):  # a ready Fabric
        return runtime, None
    rt = Runtime.from_config(runtime)
    return rt.fabric, rt


def fit(
    model,
    optimizer,
    *,
    batches: Callable[[int], Iterable[Any]],
    loss_fn: Callable[[Any, Any], Any],
    validate: Callable[[Any], Mapping[str, float]],
    epochs: int,
    checkpoint_dir: str | Path,
    meta: Mapping[str, Any],
    seed: int = 0,
    monitor: str = "val_loss",
    mode: str = "min",
    patience: int = 5,
    min_delta: float = 0.0,
    lr_factor: Callable[[int], float] | None = None,
    clip_grad_norm: float | None = None,
    resume: bool = True,
    on_epoch: Callable[[dict], None] | None = None,
    log=None,
    runtime=None,
) -> FitResult:
    """Train ``model`` epoch by epoch with checkpoints, early stopping and resume.

    The loop runs through Lightning Fabric (:mod:`astrotool.ml.fabric`), so the
    same call trains on the CPU, one GPU, several GPUs or several Slurm nodes,
    in 32-bit or mixed precision.

    Parameters
    ----------
    model : torch.nn.Module
        Without ``runtime``: already on its device, where training runs.
    optimizer : torch.optim.Optimizer
    batches : callable
        ``batches(epoch)`` yields the epoch's training batches (arrays, or
        tuples/lists/dicts of arrays, one row per sample); derive any
        randomness from :func:`epoch_rng` ``(seed, epoch)`` for
        reproducibility. Every process must yield the same batches: with
        several processes each batch is a *global* batch that
        :func:`split_batch` divides between them. Batches are moved to the
        training device before ``loss_fn`` sees them.
    loss_fn : callable
        ``loss_fn(model, batch)`` returns a scalar loss tensor: the *mean* over
        the batch's rows (the rule that makes several processes equal one).
        It should call ``model(...)`` (the forward), which carries the
        precision's autocast and DDP's gradient hooks; other methods of the
        model bypass them.
    validate : callable
        ``validate(model)`` returns a dict of floats including ``monitor``;
        called with the bare module in eval mode, under ``torch.no_grad`` and the
        precision's autocast. Every process runs it (it must not depend on
        the rank); rank 0's values are broadcast, so all processes take the
        same early-stopping decision.
    epochs : int
        Maximum number of epochs (in total, counting resumed ones).
    checkpoint_dir : path-like
        Best checkpoint goes here (``model.safetensors`` + ``model.json``), the
        last epoch's resumable state to ``<checkpoint_dir>/last/``. Only rank 0
        writes.
    meta : mapping
        Checkpoint metadata (see :func:`astrotool.ml.checkpoint.save_checkpoint`);
        ``metrics``, ``training_progress`` (with the ``finished`` mark that
        :func:`astrotool.ml.checkpoint.unfinished` reads) and (unless given) ``runtime``
        (processes, device type, precision) are filled in here. Its
        ``settings`` (:data:`SETTINGS_KEY`, a JSON-serialisable dict) are
        stored and, on resume, must equal the stored ones
        (:func:`check_resume_settings`); a resume without them is refused.
    seed : int
        Base seed for per-epoch torch seeding (:func:`derive_seed` of seed,
        epoch and rank).
    monitor, mode, patience, min_delta
        Early stopping on ``monitor`` (see :class:`EarlyStopping`).
    lr_factor : callable, optional
        ``lr_factor(global_step)`` multiplies each group's initial learning rate.
    clip_grad_norm : float, optional
        Clip the global gradient norm (after unscaling, with ``16-mixed``).
    resume : bool
        Continue from ``<checkpoint_dir>/last/`` when it exists: up to
        ``epochs`` in all, early stopping with this call's ``patience`` and
        ``min_delta`` (a raised patience continues a run that stopped early).
    on_epoch : callable, optional
        Called on rank 0 with each epoch's history entry (progress reporting).
    log : logging.Logger, optional
        Used on rank 0 only.
    runtime : Runtime, MLConfig, mapping or lightning.fabric.Fabric, optional
        Where and how to train (:class:`astrotool.ml.fabric.Runtime`, built
        from the ``[ml]`` section). None: one process on the model's device in
        32-bit precision.

    Returns
    -------
    FitResult
        On every process; with ``ddp_spawn``/``ddp_fork`` rank 0's, and the
        caller's model and optimizer are loaded with the final state.

    Notes
    -----
    With ``W`` processes, each global batch of ``n`` rows is split into parts
    of ``n // W`` or ``n // W + 1`` rows and each part's loss weighted by
    ``n_r * W / n`` (:func:`split_batch`), so the gradient step equals the
    one-process step on the whole batch up to float rounding. Layers whose
    output for a row depends on the other rows of its part (BatchNorm in
    training mode; use ``sync_batchnorm``) and random ops inside ``loss_fn``
    (dropout: each rank has its own stream) differ from one process.
    """
    from astrotool.ml.fabric import is_multiprocessing, launch

    fabric, rt = _resolve_runtime(runtime, model)
    args = dict(batches=batches, loss_fn=loss_fn, validate=validate, epochs=epochs,
                checkpoint_dir=Path(checkpoint_dir), meta=meta, seed=seed, monitor=monitor, mode=mode,
                patience=patience, min_delta=min_delta, lr_factor=lr_factor, clip_grad_norm=clip_grad_norm,
                resume=resume, on_epoch=on_epoch, log=log, runtime=rt)
    if is_multiprocessing(fabric) and not getattr(fabric, "_launched", False):
        return _fit_spawned(fabric, model, optimizer, args)
    launch(fabric)
    return _fit_loop(fabric, model, optimizer, **args)


def _fit_spawned(fabric, model, optimizer, args) -> FitResult:
    """Run the loop in ``ddp_spawn``/``ddp_fork`` processes; load the result into the caller's objects."""
    import pickle

    from astrotool.errors import AstroError
    from astrotool.ml import checkpoint as ck

    try:
        result = fabric.launch(_spawned_worker, model, optimizer, args)
    except (pickle.PicklingError, AttributeError, TypeError) as exc:
        if "pickle" not in str(exc).lower() and not isinstance(exc, pickle.PicklingError):
            raise
        rt = args.get("runtime")
        name = rt.strategy if rt is not None else f"ddp_{fabric.strategy.launcher._start_method}"
        raise AstroError(f"ml.strategy {name}: the model, batches, loss and "
                         f"validation must be picklable to start processes ({exc}); use strategy ddp, which "
                         "re-runs the command instead") from None
    last_dir = ck.resolve_last(args["checkpoint_dir"])
    if (last_dir / ck.STATE_META_FILE).is_file():
        last = ck.load_checkpoint(last_dir)
        model.load_state_dict(last.state_dict, strict=True)
        ck.load_training_state(last_dir, optimizer)
    return result


def _spawned_worker(fabric, model, optimizer, args):
    return _fit_loop(fabric, model, optimizer, **args)


def _fit_loop(fabric, model, optimizer, *, batches, loss_fn, validate, epochs, checkpoint_dir, meta, seed,
              monitor, mode, patience, min_delta, lr_factor, clip_grad_norm, resume, on_epoch, log,
              runtime) -> FitResult:
    import torch

    from astrotool.ml import checkpoint as ck

    if runtime is not None and runtime.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    world, rank, zero = int(fabric.world_size), int(fabric.global_rank), bool(fabric.is_global_zero)
    if world > 1 and runtime is not None and runtime.sync_batchnorm:  # CUDA only: Runtime.fabric refuses others
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    log = log if zero else None
    on_epoch = on_epoch if zero else None

    ckpt_dir = Path(checkpoint_dir)
    if zero:  # a save that a stop cut short: its complete set takes its place, before any rank reads it
        ck.settle_checkpoint(ckpt_dir)
        ck.recover_last(ckpt_dir)
    if world > 1:
        fabric.barrier("astrotool-fit-recover")
    last_dir = ck.resolve_last(ckpt_dir)
    stopper = EarlyStopping(patience=patience, min_delta=min_delta, mode=mode)
    history: list[dict] = []
    start_epoch, step, resumed_from, stopped = 0, 0, None, False

    for group in optimizer.param_groups:
        group.setdefault("initial_lr", group["lr"])

    wrapped, fopt = fabric.setup(model, optimizer)
    module = wrapped.module if hasattr(wrapped, "module") else model
    scaler = getattr(fabric.strategy.precision, "scaler", None)  # 16-mixed: the loss scale resumes too
    if "runtime" not in meta:
        meta = {**meta, "runtime": {"processes": world, "device": fabric.device.type,
                                    "precision": runtime.precision if runtime is not None else None}}

    if resume and (last_dir / ck.STATE_META_FILE).is_file():
        check_resume_settings(ckpt_dir, meta.get(SETTINGS_KEY), last_dir)
        last = ck.load_checkpoint(last_dir, expect_architecture=meta["architecture"]["name"])
        try:
            module.load_state_dict(last.state_dict, strict=True)
        except RuntimeError as exc:
            from astrotool.errors import InputError

            raise InputError(last_dir / ck.WEIGHTS_FILE, f"cannot resume: weights do not fit the model ({exc})") from None
        loop = ck.load_training_state(last_dir, optimizer)
        start_epoch = int(loop.get("epochs_done", 0))
        weights_after = (last.meta.get("training_progress") or {}).get("epochs_done")
        if weights_after is not None and int(weights_after) != start_epoch:
            from astrotool.errors import InputError

            # the model and the loop state are two writes: a stop between them leaves a pair that
            # would resume without complaint but not to the weights of an uninterrupted run
            raise InputError(last_dir, f"cannot resume: the weights are from epoch {weights_after} but the "
                                       f"optimizer and loop state from epoch {start_epoch} (stopped while "
                                       "saving); use --overwrite to train again")
        step = int(loop.get("step", 0))
        history = list(loop.get("history", []))
        stopper.load_state_dict(loop.get("early_stopping", {}))
        damaged = (_best_checkpoint_problem(ckpt_dir, meta["architecture"]["name"])
                   if stopper.best_epoch is not None else None)
        if damaged:   # every rank reads the same files: their stoppers stay alike
            stopper.best = None   # the next epoch is the best so far, and its pair replaces the damaged one
            if log:
                log.warning("the best checkpoint (epoch %s) is damaged: %s; %s", stopper.best_epoch + 1, damaged,
                            "the best epoch from here on replaces it (last/ resumes as usual)"
                            if start_epoch < epochs and not stopper.should_stop
                            else "no epoch is left to replace it: --overwrite trains again from the start")
        stopped = stopper.should_stop  # this call's patience: a raised one trains on
        if scaler is not None and loop.get("grad_scaler"):
            scaler.load_state_dict(loop["grad_scaler"])
        resumed_from = start_epoch
        if log:
            log.info("resuming from %s after epoch %d (step %d)", last_dir, start_epoch, step)
            before = (last.meta.get("runtime") or {}).get("precision")
            if runtime is not None and before and before != runtime.precision:
                log.info("precision %s from here on (the epochs so far ran in %s; each epoch's is in the "
                         "history)", runtime.precision, before)
            processes = (last.meta.get("runtime") or {}).get("processes")
            if isinstance(processes, int) and processes != world:   # the batches per step change with it
                log.info("%d process(es) from here on (the epochs so far ran on %d): each step now sees %d "
                         "batch(es)", world, processes, world)
            if start_epoch > epochs:
                log.warning("%d epochs asked for, %d done already: the checkpoint keeps all %d", epochs,
                            start_epoch, start_epoch)
    if log and world > 1:
        log.info("training on %d processes (%s, precision %s)", world, fabric.device.type,
                 runtime.precision if runtime is not None else "as given")

    result = FitResult(history=history, resumed_from=resumed_from, checkpoint=ckpt_dir, world_size=world,
                       is_global_zero=zero)
    epoch = start_epoch
    if zero:  # until an epoch of this run ends, the best checkpoint is one of an unfinished training; with no
        #  epoch left to run (a resume asking no more), the training is finished as it stands
        if epoch < epochs and not stopped:
            _update_best_meta(ckpt_dir, {"epochs_done": epoch, "epochs": epochs, "finished": False})
        else:  # with the history too: a stop after last/ was saved may have left the best one's behind
            best = next((h for h in history if h["epoch"] == stopper.best_epoch), None)
            _update_best_meta(ckpt_dir, {"finished": True}, history if best else None, best)
    while epoch < epochs and not stopped:
        torch.manual_seed(derive_seed(seed, "epoch", epoch, "rank", rank))
        wrapped.train()
        t0 = time.perf_counter()
        total, count = 0.0, 0
        for batch in batches(epoch):
            weight = None
            if world > 1:
                batch, weight = split_batch(batch, rank, world)
            batch = fabric.to_device(batch)
            if lr_factor is not None:
                f = lr_factor(step)
                for group in optimizer.param_groups:
                    group["lr"] = group["initial_lr"] * f
            fopt.zero_grad(set_to_none=True)
            loss = loss_fn(wrapped, batch)
            if weight is not None:
                loss = loss * weight
                value = fabric.all_reduce(loss.detach().float(), reduce_op="mean")  # the global batch's mean
            else:
                value = loss.detach()
            if not torch.isfinite(value):
                from astrotool.errors import AstroError

                raise AstroError(f"training diverged: non-finite training loss at epoch {epoch}, step {step}; "
                                 "lower the learning rate (--lr)")
            fabric.backward(loss)
            if clip_grad_norm:
                fabric.clip_gradients(wrapped, fopt, max_norm=clip_grad_norm)
            fopt.step()
            total += float(value)
            count += 1
            step += 1
        if not count:
            from astrotool.errors import AstroError

            raise AstroError(f"no training batches: batches({epoch}) yielded nothing at epoch {epoch} (an empty "
                             "training set, or a batch size and drop_last that leave no batch?)")
        wrapped.eval()
        with torch.no_grad(), fabric.autocast():
            val = {k: float(v) for k, v in validate(module).items()}
        if world > 1:
            val = fabric.broadcast(val, src=0)
        if monitor not in val:
            raise KeyError(f"validate() returned no {monitor!r}")
        entry = {
            "epoch": epoch,
            "step": step,
            "train_loss": total / count,
            **val,
            "lr": optimizer.param_groups[0]["lr"],
            "seconds": round(time.perf_counter() - t0, 3),
            "precision": runtime.precision if runtime is not None else None,   # a resume may change it
        }
        history.append(entry)
        improved = stopper.step(val[monitor], epoch)
        stopped = stopper.should_stop
        progress = {"epochs_done": epoch + 1, "epochs": epochs, "step": step, "stopped_early": stopped,
                    "finished": stopped or epoch + 1 >= epochs}
        if zero:
            _save_epoch(ckpt_dir, module, optimizer, meta, entry, monitor, progress, improved,
                        history, stopper, stopped, epoch, epochs, scaler)
            ck.discard_set_aside(ckpt_dir)  # the model an --overwrite replaces, once a new one is saved
        if world > 1:
            fabric.barrier("astrotool-fit-epoch")
        result.epochs_run += 1
        if on_epoch:
            on_epoch(entry)
        if log:
            log.info(
                "epoch %d/%d  train_loss %.4g  %s %.4g%s",
                epoch + 1,
                epochs,
                entry["train_loss"],
                monitor,
                val[monitor],
                "  (best)" if improved else "",
            )
        epoch += 1

    result.history = history
    result.stopped_early = stopped
    result.best_epoch = stopper.best_epoch
    result.best_metrics = next((h for h in history if h["epoch"] == stopper.best_epoch), {})
    return result


def _save_epoch(ckpt_dir, module, optimizer, meta, entry, monitor, progress, improved, history,
                stopper, stopped, epoch, epochs, scaler=None) -> None:
    """Rank 0's writes after an epoch: the best checkpoint (if improved) and ``last/``, each a set that a stop
    leaves whole (:func:`astrotool.ml.checkpoint.save_last`)."""
    from astrotool.ml import checkpoint as ck

    if improved:
        ck.save_checkpoint(
            ckpt_dir,
            module,
            {**meta, "metrics": {**entry, "monitor": monitor}, "training_progress": progress},
        )
    best = next((h for h in history if h["epoch"] == stopper.best_epoch), entry)
    ck.save_last(  # one set, swapped in whole: a stop (even a hard kill) anywhere here leaves a whole last/, the
        #  previous epoch's or this one's (none in the first epoch: its model.json alone, which needs --overwrite)
        ckpt_dir,
        module,
        {**meta, "metrics": {**entry, "monitor": monitor}, "training_progress": progress},
        optimizer,
        {
            "epochs_done": epoch + 1,
            "step": progress["step"],
            "history": history,
            "early_stopping": stopper.state_dict(),
            "stopped_early": stopped,
            "best_epoch": stopper.best_epoch,
            **({"grad_scaler": {k: (float(v) if isinstance(v, float) else v) for k, v in scaler.state_dict().items()}}
               if scaler is not None else {}),
        },
    )
    _update_best_meta(ckpt_dir, progress, history, best)  # the best checkpoint's progress and history: current


def _best_checkpoint_problem(ckpt_dir: Path, architecture: str) -> str | None:
    """Why the best checkpoint of ``ckpt_dir`` cannot be read as it stands (weights that do not match
    ``model.json``, a file cut short or missing), or None. A pair a stop left in ``.model.new/`` is the
    next writer's to settle (:func:`astrotool.ml.checkpoint.settle_checkpoint`): None then."""
    from astrotool.errors import InputError
    from astrotool.ml import checkpoint as ck

    if (Path(ckpt_dir) / ck.STAGE_DIR).exists():
        return None
    try:
        ck.load_checkpoint(ckpt_dir, expect_architecture=architecture)   # checks the weights' SHA-256
    except InputError as exc:
        return str(exc)
    return None


def _update_best_meta(ckpt_dir: Path, progress: dict, history: list | None = None, best: dict | None = None) -> None:
    """Refresh ``training_progress`` (the keys of ``progress``), ``history`` and ``best_epoch`` (when given) in
    the best checkpoint's JSON; an unreadable one is left to the command that reads it to name."""
    import json

    from astrotool.ml import checkpoint as ck
    from astrotool.workspace import write_json_atomic

    ck.settle_checkpoint(ckpt_dir)  # a pair a stop left in .model.new/: moved into place before its JSON changes
    path = ckpt_dir / ck.META_FILE
    if not path.is_file():
        return
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    if not isinstance(meta, dict):
        return
    old = meta.get("training_progress")
    meta["training_progress"] = {**(old if isinstance(old, dict) else {}), **progress}
    if history is not None and (meta.get("metrics") or {}).get("epoch") == best.get("epoch"):  # its weights' epoch
        meta["history"] = history
        meta["best_epoch"] = best.get("epoch")
    write_json_atomic(path, meta)
