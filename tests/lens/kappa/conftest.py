"""Fixtures of the kappa tests, and the maps and runs several of them make."""

from __future__ import annotations

import contextlib
import io
import tarfile
from pathlib import Path

import numpy as np
import pytest

S = 32
"""The side of the maps :func:`make_root` writes [pixels]."""

NAMES = [f"m{i:03d}" for i in range(20)]
"""Twenty map names (16 / 2 / 2 maps in the train / val / test splits)."""


def run(capsys, *args):
    """``astro ARGS`` in this process: (exit code, stdout, stderr)."""
    from astrotool.cli import main

    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def make_root(root: Path, names, seed=0):
    """A Datathon-layout folder: EPSILON/<name>.npy and KAPPA/<name>.npy."""
    rng = np.random.default_rng(seed)
    (root / "EPSILON").mkdir(parents=True, exist_ok=True)
    (root / "KAPPA").mkdir(parents=True, exist_ok=True)
    for n in names:
        np.save(root / "EPSILON" / f"{n}.npy", rng.normal(0, 0.3, (3, S, S)).astype(np.float16))
        np.save(root / "KAPPA" / f"{n}.npy", (0.05 + rng.normal(0, 0.05, (S, S))).astype(np.float16))
    return root


def make_tar(root: Path, tar: Path):
    """The maps of ``root`` in a tarball, under the folder ``top/``."""
    with tarfile.open(tar, "w:gz") as tf:
        for p in sorted(root.rglob("*.npy")):
            tf.add(p, arcname=f"top/{p.relative_to(root)}")
    return tar


def perfect_predictions(root: Path, pred: Path, names) -> Path:
    """A prediction folder holding the true KAPPA maps of ``names``."""
    pred.mkdir()
    for n in names:
        np.save(pred / f"{n}.npy", np.load(root / "KAPPA" / f"{n}.npy"))
    return pred


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


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """``(ws, root)``: a workspace with a packed 32x32 set ``tiny`` (packed by ``data`` from the folder ``root``
    of :data:`NAMES`) and a U-Net ``u`` trained one epoch (test_predict.py has a ``trained`` of its own)."""
    from astrotool.cli import main

    tmp = tmp_path_factory.mktemp("kappa_trained")
    ws = tmp / "ws"
    root = make_root(tmp / "tiny", NAMES)
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["-w", str(ws), "-q", "lens", "kappa", "data", str(root)]) == 0
        code = main([str(a) for a in ("-w", ws, "-q", "--set", "lens.kappa.train.depth=2", "--set",
                                      "lens.kappa.train.width=4", "lens", "kappa", "train", "--dataset", "tiny",
                                      "--model", "u", "--epochs", 1, "--batch-size", 8, "--device", "cpu")])
    assert code == 0
    return ws, root
