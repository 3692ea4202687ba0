"""Generic torch training loop: seeding, device, early stopping, resume.

:func:`fit` runs epochs of caller-supplied batches through a caller-supplied
loss, validates after each epoch, keeps the best epoch's checkpoint in the
checkpoint folder and the last epoch's (model + optimizer + loop state) in
``<folder>/last/``, and resumes from ``last/`` when asked. Shuffling and any
random augmentation are derived from ``(seed, epoch)`` (:func:`epoch_rng`), and
torch's generator is re-seeded from ``(seed, epoch)`` at the start of every
epoch, so a run interrupted after epoch *k* and resumed gives the same weights
as an uninterrupted one (on the same device and thread count).

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

__docformat__ = "numpy"


def derive_seed(*parts: int) -> int:
    """A 63-bit integer seed derived from integers (order matters).

    Uses :class:`numpy.random.SeedSequence`, so nearby inputs give unrelated seeds.
    """
    import numpy as np

    ss = np.random.SeedSequence([int(p) & 0xFFFFFFFFFFFFFFFF for p in parts])
    return int(ss.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


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

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)


def epoch_rng(seed: int, epoch: int):
    """numpy Generator for one epoch's shuffling/augmentation, from ``(seed, epoch)``."""
    import numpy as np

    return np.random.default_rng([int(seed), int(epoch), 0x5EED])


def select_device(preference: str = "auto"):
    """Pick a torch device.

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

    from astrotool.errors import AstroError

    pref = (preference or "auto").lower()
    if pref == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if pref.startswith("cuda") and not torch.cuda.is_available():
        raise AstroError(f"--device {preference}: CUDA is not available on this machine (torch {torch.__version__})")
    return torch.device(pref)


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
    """

    history: list = field(default_factory=list)
    best_epoch: int | None = None
    best_metrics: dict = field(default_factory=dict)
    epochs_run: int = 0
    stopped_early: bool = False
    resumed_from: int | None = None
    checkpoint: Path | None = None


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
) -> FitResult:
    """Train ``model`` epoch by epoch with checkpoints, early stopping and resume.

    Parameters
    ----------
    model : torch.nn.Module
        Already on its device.
    optimizer : torch.optim.Optimizer
    batches : callable
        ``batches(epoch)`` yields the epoch's training batches; derive any
        randomness from :func:`epoch_rng` ``(seed, epoch)`` for reproducibility.
    loss_fn : callable
        ``loss_fn(model, batch)`` returns a scalar loss tensor.
    validate : callable
        ``validate(model)`` returns a dict of floats including ``monitor``;
        called in eval mode under ``torch.no_grad``.
    epochs : int
        Maximum number of epochs (in total, counting resumed ones).
    checkpoint_dir : path-like
        Best checkpoint goes here (``model.safetensors`` + ``model.json``), the
        last epoch's resumable state to ``<checkpoint_dir>/last/``.
    meta : mapping
        Checkpoint metadata (see :func:`astrotool.ml.checkpoint.save_checkpoint`);
        ``metrics`` and ``training_progress`` are filled in here.
    seed : int
        Base seed for per-epoch torch seeding.
    monitor, mode, patience, min_delta
        Early stopping on ``monitor`` (see :class:`EarlyStopping`).
    lr_factor : callable, optional
        ``lr_factor(global_step)`` multiplies each group's initial learning rate.
    clip_grad_norm : float, optional
        Clip the global gradient norm.
    resume : bool
        Continue from ``<checkpoint_dir>/last/`` when it exists.
    on_epoch : callable, optional
        Called with each epoch's history entry (progress reporting).
    log : logging.Logger, optional

    Returns
    -------
    FitResult
    """
    import torch

    from astrotool.ml import checkpoint as ck

    ckpt_dir = Path(checkpoint_dir)
    last_dir = ckpt_dir / ck.LAST_DIR
    stopper = EarlyStopping(patience=patience, min_delta=min_delta, mode=mode)
    history: list[dict] = []
    start_epoch, step, resumed_from, stopped = 0, 0, None, False

    for group in optimizer.param_groups:
        group.setdefault("initial_lr", group["lr"])

    if resume and (last_dir / ck.STATE_META_FILE).is_file():
        last = ck.load_checkpoint(last_dir, expect_architecture=meta["architecture"]["name"])
        try:
            model.load_state_dict(last.state_dict, strict=True)
        except RuntimeError as exc:
            from astrotool.errors import InputError

            raise InputError(last_dir / ck.WEIGHTS_FILE, f"cannot resume: weights do not fit the model ({exc})") from None
        loop = ck.load_training_state(last_dir, optimizer)
        start_epoch = int(loop.get("epochs_done", 0))
        step = int(loop.get("step", 0))
        history = list(loop.get("history", []))
        stopper.load_state_dict(loop.get("early_stopping", {}))
        stopped = bool(loop.get("stopped_early", False))
        resumed_from = start_epoch
        if log:
            log.info("resuming from %s after epoch %d (step %d)", last_dir, start_epoch, step)

    result = FitResult(history=history, resumed_from=resumed_from, checkpoint=ckpt_dir)
    epoch = start_epoch
    while epoch < epochs and not stopped:
        torch.manual_seed(derive_seed(seed, epoch, 1))
        model.train()
        t0 = time.perf_counter()
        total, count = 0.0, 0
        for batch in batches(epoch):
            if lr_factor is not None:
                f = lr_factor(step)
                for group in optimizer.param_groups:
                    group["lr"] = group["initial_lr"] * f
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model, batch)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"non-finite training loss at epoch {epoch}, step {step}")
            loss.backward()
            if clip_grad_norm:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
            optimizer.step()
            total += float(loss.detach())
            count += 1
            step += 1
        model.eval()
        with torch.no_grad():
            val = {k: float(v) for k, v in validate(model).items()}
        if monitor not in val:
            raise KeyError(f"validate() returned no {monitor!r}")
        entry = {
            "epoch": epoch,
            "step": step,
            "train_loss": total / max(count, 1),
            **val,
            "lr": optimizer.param_groups[0]["lr"],
            "seconds": round(time.perf_counter() - t0, 3),
        }
        history.append(entry)
        improved = stopper.step(val[monitor], epoch)
        stopped = stopper.should_stop
        progress = {"epochs_done": epoch + 1, "epochs": epochs, "step": step, "stopped_early": stopped}
        if improved:
            ck.save_checkpoint(
                ckpt_dir,
                model,
                {**meta, "metrics": {**entry, "monitor": monitor}, "training_progress": progress},
            )
        best = next((h for h in history if h["epoch"] == stopper.best_epoch), entry)
        ck.save_checkpoint(
            last_dir, model, {**meta, "metrics": {**entry, "monitor": monitor}, "training_progress": progress}
        )
        ck.save_training_state(
            last_dir,
            optimizer,
            {
                "epochs_done": epoch + 1,
                "step": step,
                "history": history,
                "early_stopping": stopper.state_dict(),
                "stopped_early": stopped,
                "best_epoch": stopper.best_epoch,
            },
        )
        if improved or epoch + 1 >= epochs or stopped:
            # keep the best checkpoint's progress/history current
            _update_best_meta(ckpt_dir, progress, history, best)
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


def _update_best_meta(ckpt_dir: Path, progress: dict, history: list, best: dict) -> None:
    """Refresh ``training_progress`` and ``history`` in the best checkpoint's JSON."""
    import json

    from astrotool.ml import checkpoint as ck
    from astrotool.workspace import write_json_atomic

    path = ckpt_dir / ck.META_FILE
    if not path.is_file():
        return
    meta = json.loads(path.read_text(encoding="utf-8"))
    meta["training_progress"] = progress
    meta["history"] = history
    meta["best_epoch"] = best.get("epoch")
    write_json_atomic(path, meta)
