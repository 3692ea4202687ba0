"""The ``astro`` commands that messages of ``astro ztf`` suggest, written so that they run as pasted."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

__docformat__ = "numpy"


def astro_command(*words) -> str:
    """``astro [-w WORKSPACE] WORDS...``, quoted for a shell: ``-w`` is there whenever the running command's
    workspace (``-w`` or ``$ASTRO_WORKSPACE``) is not the current folder, relative to it when inside it.

    Parameters
    ----------
    *words
        What follows ``astro`` and its workspace (global options such as ``--seed``, then the sub-command).

    Returns
    -------
    str
        For example ``astro -w work ztf export --model sim_classifier``.
    """
    from astrotool.context import current

    root, here = current().workspace_root, Path.cwd().resolve()
    where = [] if root == here else ["-w", os.path.relpath(root) if root.is_relative_to(here) else str(root)]
    return shlex.join(["astro", *where, *map(str, words)])


def model_arg(model_dir) -> str:
    """What ``--model`` takes for ``model_dir``: its name when it is a model of the workspace
    (``ztf/models/<name>``), else its folder."""
    from astrotool.context import current
    from astrotool_ztf import MODELS, NAME

    model_dir = Path(model_dir)
    models = current().workspace_root / NAME / MODELS
    return model_dir.name if model_dir.resolve().parent == models.resolve() else str(model_dir)
