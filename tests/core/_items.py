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
