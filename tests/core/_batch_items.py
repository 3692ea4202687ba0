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
