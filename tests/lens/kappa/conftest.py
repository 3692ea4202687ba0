"""Fixtures of the kappa tests."""

from __future__ import annotations

from pathlib import Path

import pytest


class _Workspace:
    """The one workspace method the map sources use: ``stage(plugin, name)`` under ``root``."""

    def __init__(self, root):
        self.root = Path(root)

    def stage(self, plugin, name, create=True):
        return self.root / plugin / name


class _Context:
    def __init__(self, root):
        self.workspace = _Workspace(root)


@pytest.fixture
def map_ctx():
    """``map_ctx(root)``: a context whose workspace is ``root``, for :func:`open_maps` outside a command."""
    return _Context
