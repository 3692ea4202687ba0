"""Module-level item functions for the tests of dying and stopped workers (picklable by reference)."""

import os
import signal
import time
from pathlib import Path


def die(item, seed):
    """The item ``die`` kills its own worker (SIGKILL, as the out-of-memory killer does); the others sleep
    ``seconds`` [s] and return their name. ``item = (name, seconds)``."""
    name, seconds = item
    if name == "die":
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(seconds)
    return name


def write_slowly(item, seed):
    """Write ``<folder>/<name>.txt`` through ``atomic_path``, keeping its temporary file open ``seconds`` [s]
    (sleeping in steps of ``step`` [s]: one step is a long call into C). ``item = (folder, name, seconds, step)``."""
    from astrotool.workspace import atomic_path

    folder, name, seconds, step = item
    with atomic_path(Path(folder, f"{name}.txt")) as tmp:
        with open(tmp, "w") as fh:
            fh.write(name)
            fh.flush()
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                time.sleep(min(step, max(0.0, end - time.monotonic())))
    return name


def die_once_then_write(item, seed):
    """The item named ``die`` kills its worker the first time it runs (leaving ``<folder>/died``), as
    :func:`die`; run again (Dask retries it on a fresh worker), and every other item, it is :func:`write_slowly`."""
    folder, name = item[:2]
    marker = Path(folder, "died")
    if name == "die" and not marker.exists():
        marker.write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
    return write_slowly(item, seed)
