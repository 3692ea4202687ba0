"""The ``[core]`` and ``[ml]`` configuration sections."""

import re
from typing import Literal, Union

from pydantic import Field, field_validator

from astrotool.context import MIN_PROGRESS_INTERVAL_S
from astrotool.section import Section, Seed

__docformat__ = "numpy"


class CoreConfig(Section):
    """Execution and logging settings shared by every command."""

    executor: Literal["serial", "process", "dask"] = "serial"
    """How per-item work runs."""
    jobs: int = Field(0, ge=0)
    """Worker processes for ``process``/``dask`` (0 = the cores this process may use: CPU affinity,
    cgroup quota, ``SLURM_CPUS_PER_TASK``)."""
    scheduler: str = ""
    """Dask scheduler address; empty starts a local cluster."""
    seed: Seed = 0
    """Base random seed (>= 0: numpy refuses negative seeds); item seeds derive from it and the item key."""
    log_format: Literal["auto", "rich", "plain", "json"] = "auto"
    """Log format on stderr."""
    progress_interval: float = Field(10.0, ge=MIN_PROGRESS_INTERVAL_S)
    """Seconds between progress lines when stderr is not a terminal (at least 0.1)."""


class MLConfig(Section):
    """Where and how the ML plugins train: ``[ml]``, read by :mod:`astrotool.ml.fabric`.

    Validated without importing torch; :class:`astrotool.ml.fabric.Runtime`
    turns it into a Lightning Fabric when a command trains.
    """

    accelerator: str = "auto"
    """Hardware: ``auto`` takes CUDA when visible, then Apple MPS, else the CPU; ``cuda:N`` that one GPU."""
    devices: Union[int, Literal["auto"]] = 1
    """Processes (one device each) per node; ``auto`` = every visible GPU."""
    num_nodes: int = Field(1, ge=1)
    """Machines taking part (``srun --nodes``)."""
    strategy: Literal["auto", "ddp", "ddp_find_unused_parameters_true", "ddp_spawn", "ddp_fork"] = "auto"
    """How several processes share the work (``auto`` = DDP when there are several)."""
    precision: str = "32-true"
    """``32`` (= ``32-true``), ``bf16-mixed`` or ``16-mixed`` (CUDA only, with gradient scaling)."""
    num_workers: int = Field(0, ge=0)
    """DataLoader worker processes per training process (0 = load in the training process)."""
    deterministic: bool = False
    """Ask torch for deterministic kernels (slower on a GPU)."""
    sync_batchnorm: bool = False
    """Batch statistics over the whole global batch when there are several processes (CUDA only)."""

    @field_validator("devices", mode="before")
    @classmethod
    def _devices(cls, value):
        if value == "auto":
            return value
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError("devices must be a positive integer or 'auto'")
        return value

    @field_validator("accelerator", mode="before")
    @classmethod
    def _accelerator(cls, value):
        from astrotool.ml.fabric import ACCELERATORS

        acc = str(value).strip().lower()
        if acc not in ACCELERATORS and not re.fullmatch(r"cuda:\d+", acc):
            raise ValueError(f"accelerator must be one of {', '.join(ACCELERATORS)} or cuda:N (got {value!r})")
        return acc

    @field_validator("precision", mode="before")
    @classmethod
    def _precision(cls, value):
        from astrotool.ml.fabric import normalize_precision

        return normalize_precision(value)
