"""Where and how training runs: the ``[ml]`` settings turned into a Lightning Fabric.

:class:`Runtime` holds the settings of the ``[ml]`` configuration section
(accelerator, devices, nodes, strategy, precision) and builds the
:class:`lightning.fabric.Fabric` that :func:`astrotool.ml.training.fit` trains
through, so the same command trains on

- the CPU or one GPU (``devices = 1``, the default);
- several GPUs of one machine (``devices = 4``: ``strategy = "ddp"`` starts one
  process per device by re-running the same command line with ``LOCAL_RANK``
  set; ``ddp_spawn``/``ddp_fork`` start them from inside :func:`fit` instead);
- several Slurm nodes: ``srun astro lens train`` with ``num_nodes`` and
  ``devices`` matching ``--nodes`` and ``--ntasks-per-node``; Fabric reads the
  ranks from Slurm's environment (as it does from ``torchrun``'s).

Precision is ``32-true`` (``"32"`` is accepted), ``bf16-mixed`` (autocast to
bfloat16, CPU or GPU) or ``16-mixed`` (autocast to float16 with gradient
scaling; CUDA only).

Nothing heavy is imported at module level: the ``[ml]`` section's model uses
:func:`normalize_precision` without importing torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Mapping

from astrotool.errors import AstroError

__docformat__ = "numpy"

__all__ = ["Runtime", "normalize_precision", "ACCELERATORS", "PRECISIONS", "STRATEGIES"]

ACCELERATORS = ("auto", "cpu", "cuda", "mps")
"""Accepted ``ml.accelerator`` values."""

PRECISIONS = ("32-true", "bf16-mixed", "16-mixed")
"""Canonical ``ml.precision`` values."""

_PRECISION_ALIASES = {"32": "32-true", "bf16": "bf16-mixed", "16": "16-mixed"}

STRATEGIES = ("auto", "ddp", "ddp_find_unused_parameters_true", "ddp_spawn", "ddp_fork")
"""Accepted ``ml.strategy`` values: one process per device, gradients all-reduced."""


def normalize_precision(value: Any) -> str:
    """The canonical name of a precision setting.

    Parameters
    ----------
    value : str or int
        ``32``/``"32"``/``"32-true"``, ``"bf16-mixed"`` (``"bf16"``) or
        ``"16-mixed"`` (``16``/``"16"``).

    Returns
    -------
    str
        One of :data:`PRECISIONS`.

    Raises
    ------
    ValueError
        Any other value (pydantic reports it under the key that held it).
    """
    if isinstance(value, bool):
        raise ValueError(f"precision must be one of {', '.join(('32', *PRECISIONS))}")
    text = str(value).strip().lower()
    text = _PRECISION_ALIASES.get(text, text)
    if text not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(('32', *PRECISIONS))}")
    return text


def _setting(ml: Any, name: str, default: Any) -> Any:
    if ml is None:
        return default
    if isinstance(ml, Mapping):
        return ml.get(name, default)
    return getattr(ml, name, default)


@dataclass
class Runtime:
    """Training runtime settings and the Fabric built from them.

    Parameters
    ----------
    accelerator : {"auto", "cpu", "cuda", "mps"}
        ``auto``: CUDA when visible, then Apple MPS, else the CPU (decided by
        :func:`astrotool.backends.resolve_device`, like ``--device``).
    devices : int or "auto"
        Processes per node, one device each (``auto``: every visible GPU, or
        one CPU process).
    num_nodes : int
        Machines (Slurm nodes) taking part.
    strategy : str
        One of :data:`STRATEGIES`; ``auto`` is DDP when there is more than one
        process.
    precision : str
        One of :data:`PRECISIONS` (or ``"32"``).
    deterministic : bool
        Ask torch for deterministic kernels (slower on a GPU).
    sync_batchnorm : bool
        Convert BatchNorm layers to SyncBatchNorm when there is more than one
        process, so batch statistics are those of the whole global batch
        (CUDA only).
    num_workers : int
        DataLoader worker processes per training process (for the data
        loaders; the Fabric does not use it).
    """

    accelerator: str = "auto"
    devices: int | str = 1
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "32-true"
    deterministic: bool = False
    sync_batchnorm: bool = False
    num_workers: int = 0
    _fabric: Any = field(default=None, init=False, repr=False, compare=False)
    accelerator_option: str = field(default="ml.accelerator", repr=False, compare=False, kw_only=True)
    """How messages name the accelerator setting (``--device`` where the command's option gave it)."""
    precision_option: str = field(default="ml.precision", repr=False, compare=False, kw_only=True)
    """How messages name the precision setting (``--precision`` where the command's option gave it)."""

    def __post_init__(self):
        acc = str(self.accelerator).lower()
        if acc not in ACCELERATORS and not (acc.startswith("cuda:") and acc[5:].isdigit()):
            raise AstroError(f"ml.accelerator: expected one of {', '.join(ACCELERATORS)}, got {self.accelerator!r}")
        self.accelerator = acc
        if isinstance(self.devices, str) and self.devices.strip().isdigit():
            self.devices = int(self.devices)
        if not (self.devices == "auto" or (isinstance(self.devices, int) and not isinstance(self.devices, bool)
                                           and self.devices >= 1)):
            raise AstroError(f"ml.devices: expected a positive integer or 'auto', got {self.devices!r}")
        if not isinstance(self.num_nodes, int) or self.num_nodes < 1:
            raise AstroError(f"ml.num_nodes: expected a positive integer, got {self.num_nodes!r}")
        if isinstance(self.num_workers, bool) or not isinstance(self.num_workers, int) or self.num_workers < 0:
            raise AstroError(f"ml.num_workers: expected an integer >= 0, got {self.num_workers!r}")
        if self.strategy not in STRATEGIES:
            raise AstroError(f"ml.strategy: expected one of {', '.join(STRATEGIES)}, got {self.strategy!r}")
        try:
            self.precision = normalize_precision(self.precision)
        except ValueError as exc:
            raise AstroError(f"ml.{exc}, got {self.precision!r}") from None

    @classmethod
    def from_config(cls, ml: Any = None, **overrides: Any) -> "Runtime":
        """Settings from an ``[ml]`` section (model or mapping) and command-line flags.

        Parameters
        ----------
        ml : MLConfig, mapping or None
            The validated ``[ml]`` section; None takes the defaults.
        **overrides
            Flag values (``devices=2``, ``precision="bf16-mixed"``...); ``None``
            values are ignored, so unset flags keep the section's value.
        """
        names = [f.name for f in fields(cls) if f.init]
        unknown = set(overrides) - set(names)
        if isinstance(ml, Mapping):   # a misspelt key would silently leave its setting at the default
            unknown |= set(ml) - set(names) | {"accelerator_option", "precision_option"} & set(ml)   # not settings
        if unknown:
            raise TypeError(f"Runtime.from_config: unknown setting(s) {', '.join(sorted(unknown))}")
        values = {n: _setting(ml, n, f.default) for n, f in ((f.name, f) for f in fields(cls) if f.init)
                  if n not in ("accelerator_option", "precision_option")}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    @classmethod
    def for_device(cls, device: Any, precision: str = "32-true") -> "Runtime":
        """One process on one given device (``"cpu"``, ``"cuda:1"``, a torch.device)."""
        text = str(device)
        kind, _, index = text.partition(":")
        if kind == "cuda" and index:
            return cls(accelerator=f"cuda:{index}", devices=1, precision=precision)
        return cls(accelerator=kind, devices=1, precision=precision)

    # ------------------------------------------------------------------ the Fabric
    def _accelerator_and_devices(self) -> tuple[str, Any]:
        from astrotool.backends import resolve_device

        device = resolve_device(self.accelerator, "torch", auto_mps=True, option=self.accelerator_option)
        kind, _, index = device.partition(":")
        if index:  # a named GPU: exactly that one
            if self.devices not in (1, "auto"):
                raise AstroError(f"{self.accelerator_option} {device}: names one GPU, but ml.devices is {self.devices}")
            return kind, [int(index)]
        if kind == "cpu" and self.devices == "auto":
            return kind, 1
        return kind, self.devices

    @property
    def fabric(self):
        """The :class:`lightning.fabric.Fabric` for these settings (built once).

        Raises
        ------
        astrotool.errors.AstroError
            Settings that cannot run here (CUDA or MPS not available, more GPUs
            than visible, float16 autocast on the CPU...), with the key to change.
        """
        if self._fabric is None:
            accelerator, devices = self._accelerator_and_devices()
            if self.precision == "16-mixed" and accelerator == "cpu":
                raise AstroError(f"{self.precision_option} 16-mixed: float16 autocast with gradient scaling needs a "
                                 "CUDA GPU; on the CPU use bf16-mixed or 32-true")
            fabric = _build_fabric(accelerator, devices, self.num_nodes, self.strategy, self.precision)
            _check_srun_tasks(fabric.world_size)
            _check_nodes(fabric, self.num_nodes)
            if self.sync_batchnorm and fabric.world_size > 1 and accelerator != "cuda":
                # refused here, in the process the user started: inside spawned ranks it became a traceback
                raise AstroError(f"ml.sync_batchnorm: torch's SyncBatchNorm runs on CUDA GPUs only, not on "
                                 f"{accelerator}; set ml.sync_batchnorm = false")
            self._fabric = fabric
        return self._fabric

    def launch(self):
        """Start the other processes (``ddp``: re-runs the command with ``LOCAL_RANK``) if needed.

        A no-op for one process, under ``srun`` or ``torchrun`` (the processes
        exist already), on a second call, and for ``ddp_spawn``/``ddp_fork``
        (:func:`astrotool.ml.training.fit` starts those itself). Call it early
        in a command, before work that only rank 0 should do, so the copies
        start soon.

        Returns
        -------
        lightning.fabric.Fabric
        """
        return launch(self.fabric)

    @property
    def device(self):
        """The torch.device of this process (after :meth:`launch` for several processes)."""
        return self.fabric.device

    def inference_device(self, library: str = "torch") -> str:
        """``accelerator``, for :func:`astrotool.ml.predict.predict` running on ``library`` (``"torch"`` or
        ``"onnxruntime"``), checked first: a device that cannot run here is refused naming the setting as the user
        gave it (``--device`` or ``ml.accelerator``), as for training.

        Raises
        ------
        astrotool.errors.AstroError
            The device cannot run here (exit code 2).
        """
        from astrotool.backends import resolve_device

        resolve_device(self.accelerator, library, auto_mps=library == "torch", option=self.accelerator_option)
        return self.accelerator

    @property
    def world_size(self) -> int:
        """Number of training processes."""
        return int(self.fabric.world_size)

    @property
    def is_global_zero(self) -> bool:
        """Whether this is the process that writes files (rank 0)."""
        return bool(self.fabric.is_global_zero)

    def barrier(self, name: str) -> None:
        """Wait until every training process gets here; nothing for one process, or for ``ddp_spawn``/``ddp_fork``
        before :func:`astrotool.ml.training.fit` has started their processes (this one is then alone)."""
        if self.world_size > 1 and not is_multiprocessing(self.fabric):
            self.fabric.barrier(name)

    def broadcast(self, obj):
        """Rank 0's ``obj`` on every training process (a decision they must share); ``obj`` itself for one
        process, or for ``ddp_spawn``/``ddp_fork`` before :func:`astrotool.ml.training.fit` has started their
        processes (this one is then alone, as for :meth:`barrier`)."""
        if self.world_size > 1 and not is_multiprocessing(self.fabric):
            return self.fabric.broadcast(obj, src=0)
        return obj


def _route_lightning_logs() -> None:
    """Lightning's log records through astro's handlers (plain, rich or JSON), warnings and up only.

    Lightning prints its own unformatted lines ("Initializing distributed: ...")
    on every rank, which would break ``--log-format json``; the process count is
    logged by :func:`astrotool.ml.training.fit` instead.
    """
    import logging

    from astrotool.console import LOGGER_NAME

    ours = logging.getLogger(LOGGER_NAME)
    for name in ("lightning_fabric", "lightning.fabric"):
        theirs = logging.getLogger(name)
        theirs.setLevel(logging.WARNING)
        if ours.handlers:
            theirs.handlers = list(ours.handlers)
            theirs.propagate = False


def _build_fabric(accelerator, devices, num_nodes, strategy, precision):
    try:
        from lightning_fabric import Fabric
    except ImportError:  # the full 'lightning' distribution
        from lightning.fabric import Fabric
    _route_lightning_logs()
    try:
        return Fabric(accelerator=accelerator, devices=devices, num_nodes=num_nodes, strategy=strategy,
                      precision=precision)
    except Exception as exc:  # noqa: BLE001 - Lightning's MisconfigurationException, ValueError, ...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise AstroError(f"ml: cannot train with accelerator={accelerator}, devices={devices}, "
                         f"num_nodes={num_nodes}, strategy={strategy}, precision={precision}: {first}") from None


def _check_srun_tasks(world_size: int) -> None:
    """Refuse one-process training in each of several ``srun`` tasks (N copies writing the same files)."""
    import os

    tasks = os.environ.get("SLURM_STEP_NUM_TASKS", "")
    if tasks.isdigit() and int(tasks) > 1 and world_size == 1:
        per_node = os.environ.get("SLURM_STEP_TASKS_PER_NODE", "").split("(")[0] or "?"
        nodes = os.environ.get("SLURM_STEP_NUM_NODES", "?")
        raise AstroError(f"ml.devices: srun started {tasks} tasks, but ml.devices x ml.num_nodes is 1, so each "
                         f"would train alone; set ml.devices = {per_node} (tasks per node) and ml.num_nodes = "
                         f"{nodes}, or run one task")


def _check_nodes(fabric, num_nodes: int) -> None:
    """Refuse several nodes where nothing started this process on them (no Slurm step, torchrun, or ``NODE_RANK``
    and ``MASTER_ADDR`` set by hand): it would wait for the other nodes' processes for ever, in a C++ call that
    Ctrl-C and SIGTERM cannot interrupt."""
    import os

    env = type(getattr(fabric.strategy, "cluster_environment", None)).__name__
    if num_nodes > 1 and env == "LightningEnvironment" and not ("NODE_RANK" in os.environ
                                                                and "MASTER_ADDR" in os.environ):
        raise AstroError(f"ml.num_nodes = {num_nodes}, but this process was not started on several nodes (no Slurm "
                         "step, torchrun, or NODE_RANK and MASTER_ADDR): start it with `srun` on that many nodes "
                         "(see the docs: batch), or set ml.num_nodes = 1 (--num-nodes 1)")


def is_multiprocessing(fabric) -> bool:
    """Whether the Fabric starts its processes from a function (``ddp_spawn``/``ddp_fork``)."""
    launcher = getattr(fabric.strategy, "launcher", None)
    return launcher is not None and hasattr(launcher, "_start_method") and fabric.world_size > 1


def launch(fabric):
    """Launch a Fabric's processes once (see :meth:`Runtime.launch`); returns the Fabric."""
    import os

    if getattr(fabric, "_launched", False) or is_multiprocessing(fabric) or os.environ.get("LT_CLI_USED") == "1":
        return fabric
    try:
        fabric.launch()
    except ValueError as exc:  # e.g. ml.devices that does not match Slurm's tasks per node
        first = str(exc).strip().splitlines()[0]
        raise AstroError(f"ml.devices / ml.num_nodes: cannot start the training processes: {first}") from None
    import atexit

    atexit.register(_close_process_group)
    return fabric


def _close_process_group() -> None:
    """Destroy the distributed process group at exit: left to the interpreter's teardown, gloo's threads
    can abort a finished rank ("terminate called without an active exception") and its exit status."""
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    except Exception:  # noqa: BLE001 - a teardown must not fail the finished command
        pass
