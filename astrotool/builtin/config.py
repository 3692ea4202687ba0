"""The ``[core]`` configuration section."""

from typing import Literal

from pydantic import Field

from astrotool.section import Section

__docformat__ = "numpy"


class CoreConfig(Section):
    """Execution and logging settings shared by every command."""

    executor: Literal["serial", "process", "dask"] = "serial"
    """How per-item work runs."""
    jobs: int = Field(0, ge=0)
    """Worker processes for ``process``/``dask`` (0 = all cores)."""
    scheduler: str = ""
    """Dask scheduler address; empty starts a local cluster."""
    seed: int = 0
    """Base random seed; item seeds derive from it and the item key."""
    log_format: Literal["auto", "rich", "plain", "json"] = "auto"
    """Log format on stderr."""
    progress_interval: float = Field(10.0, gt=0)
    """Seconds between progress lines when stderr is not a terminal."""
