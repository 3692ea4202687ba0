"""The toy plugin's library: square numbers, one JSON file per number.

The shape every plugin follows for per-item work: an item is a frozen
dataclass with named fields (it travels to worker processes, so it holds paths
and small parameters, never open files or arrays), and the function that
processes one item is defined at module level as ``fn(item, seed)``, where
``seed`` is the item's own seed (see :meth:`astrotool.context.Context.map`).
"""

import json
import random
import time
from dataclasses import dataclass

from astrotool.workspace import atomic_path, is_done


@dataclass(frozen=True)
class Square:
    """One number to square.

    Parameters
    ----------
    n : int
        The number.
    out : str
        The output folder.
    overwrite : bool
        Recompute an output that already exists.
    fail : bool
        Raise instead (to show how a failing item is reported).
    slow : float
        Seconds to pause half-way through writing [s] (lets the tests interrupt a write).
    """

    n: int
    out: str
    overwrite: bool = False
    fail: bool = False
    slow: float = 0.0

    @property
    def key(self) -> str:
        """The item's stable identity: its seed derives from it."""
        return f"item{self.n}"

    @property
    def path(self) -> str:
        """The output file, ``<out>/item_<n>.json``."""
        return f"{self.out}/item_{self.n:03d}.json"


def square(item: Square, seed: int) -> dict:
    """Write ``{"n", "sq", "draw"}`` for ``item`` atomically, unless it is already there.

    Returns
    -------
    dict
        ``path`` written (or found), ``skipped`` (it existed), ``sq``.
    """
    if item.fail:
        raise ValueError(f"item {item.n} is bad")
    if is_done(item.path, item.overwrite):
        return {"path": item.path, "skipped": True, "sq": item.n * item.n}
    with atomic_path(item.path) as tmp:  # a temporary file, renamed only once complete
        with open(tmp, "w") as fh:
            fh.write("{")
            fh.flush()
            time.sleep(item.slow)
            fh.write(json.dumps({"n": item.n, "sq": item.n * item.n, "draw": random.Random(seed).random()})[1:])
    return {"path": item.path, "skipped": False, "sq": item.n * item.n}
