"""Figures as PNG: matplotlib with the Agg backend (no display needed), written atomically."""

from __future__ import annotations

from pathlib import Path

__docformat__ = "numpy"


def pyplot():
    """``matplotlib.pyplot`` on the non-interactive Agg backend (batch nodes have no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path, dpi: int = 110) -> Path:
    """Save ``fig`` as a PNG atomically and close it; return the path."""
    from astrotool.workspace import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    pyplot().close(fig)
    return Path(path)
