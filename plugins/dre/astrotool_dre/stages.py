"""DRE's stages, declared once: their order, the workspace folders they write, and
whether they run per tile.

Everything else derives from :data:`STAGES`: the folders ``astro init`` makes
under ``<workspace>/dre/`` (:data:`FOLDERS`) and the chain ``astro dre run``
runs over each tile (:data:`TILE_STAGES`). Nothing is imported here, so the
plugin's registration stays light.
"""

from typing import NamedTuple

__docformat__ = "numpy"


class Stage(NamedTuple):
    """One stage: its name, the workspace folders it writes, whether it runs once per tile."""

    name: str
    folders: tuple[str, ...]
    per_tile: bool = True


STAGES = (
    Stage("simulate", ("tiles",), per_tile=False),
    Stage("detect", ("sextracted",)),
    Stage("psf", ("psf",)),
    Stage("cuts", ("cuts",)),
    Stage("models", ("models",), per_tile=False),
    Stage("fit", ("chi", "summary")),
    Stage("mosaics", ("mosaics",)),
)
"""The DRE stages with their folders under ``<workspace>/dre/``, in chain order."""

FOLDERS = tuple(folder for stage in STAGES for folder in stage.folders)
"""Folders under ``<workspace>/dre/``, in chain order."""

TILE_STAGES = tuple(stage.name for stage in STAGES if stage.per_tile)
"""The per-tile chain of ``astro dre run``, in order: detect → psf → cuts → fit → mosaics."""
