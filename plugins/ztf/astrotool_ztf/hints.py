"""The ``astro`` commands that messages of ``astro ztf`` suggest, written so that they run as pasted
(:func:`astrotool.context.astro_command`, with the ``--model`` a model needs)."""

from __future__ import annotations

from pathlib import Path

from astrotool.context import astro_command

__all__ = ["astro_command", "model_arg"]

__docformat__ = "numpy"


def model_arg(model_dir) -> str:
    """What ``--model`` takes for ``model_dir``: its name when it is a model of the workspace
    (``ztf/models/<name>``), else its folder."""
    from astrotool.context import current
    from astrotool_ztf import MODELS, NAME

    model_dir = Path(model_dir)
    models = current().workspace_root / NAME / MODELS
    return model_dir.name if model_dir.resolve().parent == models.resolve() else str(model_dir)
