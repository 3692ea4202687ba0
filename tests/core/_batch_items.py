"""Module-level item functions for the batch tests (picklable by reference)."""

import os
import time
from pathlib import Path


def nap(item, seed):
    """Write this worker's pid to ``<folder>/<pid>``, then sleep ``seconds`` [s]; ``item = (folder, seconds)``."""
    folder, seconds = item
    Path(folder, str(os.getpid())).write_text("")
    time.sleep(seconds)
    return os.getpid()


def fill(item, seed):
    """Mark ``<folder>/<name>`` as started; the item named ``full`` finds the disk full.
    ``item = (folder, name, seconds)``: the others sleep ``seconds`` [s] first."""
    import errno

    from astrotool.errors import WriteError

    folder, name, seconds = item
    Path(folder, name).write_text("")
    if name == "full":
        raise WriteError(Path(folder, "out.h5"), errno.ENOSPC)
    time.sleep(seconds)
    return name
