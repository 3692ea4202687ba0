"""Module-level item functions for the executor tests (picklable by reference)."""

import random


def draw(item, seed):
    """Three draws from the item's own stream, tagged with the item."""
    if item == "bad":
        raise ValueError("this item is bad")
    rng = random.Random(seed)
    return item, [rng.random() for _ in range(3)]


def thread_setting(item, seed):
    """The OpenMP thread count a worker was started with."""
    import os

    return os.environ.get("OMP_NUM_THREADS")


def touch(item, seed):
    """Write ``<folder>/<name>.txt`` and return its path; ``item = (folder, name)``. The item named ``stop``
    raises ``KeyboardInterrupt`` (a stop in the middle of a run)."""
    from pathlib import Path

    folder, name = item
    if name == "stop":
        raise KeyboardInterrupt("terminated")
    path = Path(folder, f"{name}.txt")
    path.write_text(name)
    return str(path)


def dask_log_level(item, seed):
    """The level below which a Dask worker's ``distributed`` loggers print nothing."""
    import logging

    return logging.getLogger("distributed.core").getEffectiveLevel()


def swallow_stop(item, seed):
    """Write ``<item>.started``; a SIGTERM to the worker then lands in a ``__del__``, where Python swallows its
    ``KeyboardInterrupt`` (as in a library's finaliser); then 2 s of work and ``<item>.finished``."""
    import os
    import signal
    import time
    from pathlib import Path

    Path(item + ".started").touch()

    class Finaliser:
        def __del__(self):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.2)   # the worker's handler runs here

    Finaliser()
    time.sleep(2)
    Path(item + ".finished").touch()
    return item


def recorded_command_line(item, seed):
    """The command line the provenance of a file written by this item would record."""
    from astrotool.provenance import provenance

    return provenance("toy run")["command_line"]
