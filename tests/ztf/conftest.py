"""ZTF tests run ``astro`` in the test's own process: each new interpreter spent 4-5 s importing torch and Fabric.

The workspaces that several test files use are built once per session (``vae_ws``, ``sim_prepared`` and
``sim_trained``); a test that changes one works on a copy (``ws``, ``tws``), except that ``test_embed.py`` adds
embeddings to ``vae_ws`` (its tests build on each other, in file order) and ``test_predict.py`` a ``sim_temporal``
model: later readers of ``vae_ws`` must not count its embeddings or models."""

import json
import shutil

import pytest

from tests.conftest import SHARED, run_astro_here

SHARED_ZTF = SHARED / "data" / "ztf"
"""The shared sample ZTF alerts: Avro files and Fink dumps."""
AVRO = sorted(SHARED_ZTF.glob("*.avro"))
SMALL = ("--set", "ztf.prepare.val_per_class=2", "--set", "ztf.prepare.test_per_class=2")
"""Settings of a small prepared set: 2 objects of each class in val and in test."""


@pytest.fixture
def astro():
    """:func:`tests.conftest.run_astro_here`, in place of the subprocess of the top-level fixture."""
    return run_astro_here


@pytest.fixture
def astro_subprocess():
    """:func:`tests.conftest.run_astro` (a new interpreter), for what only a process of its own shows."""
    from tests.conftest import run_astro

    return run_astro


def usage_error(r):
    """The stderr of the finished command ``r``, a usage error (exit 2) without a traceback."""
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    return r.stderr


def run_main(capsys, *args):
    """``astro ARGS`` in this process: the exit code, stdout and stderr."""
    from astrotool.cli import main

    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def stamps_source(ws, name):
    """The input file recorded in the stamps file of the alert table ``name`` of the workspace ``ws``."""
    import h5py

    with h5py.File(ws / "ztf" / "stamps" / f"{name}_stamps.h5", "r") as h5:
        return h5.attrs["source"]


def edit_meta(mdir, **changes):
    """Set keys of ``mdir``'s model.json: ``a__b=v`` sets ``meta["a"]["b"] = v``."""
    path = mdir / "model.json"
    meta = json.loads(path.read_text())
    for key, value in changes.items():
        *parents, last = key.split("__")
        node = meta
        for p in parents:
            node = node[p]
        node[last] = value
    path.write_text(json.dumps(meta))


def unfinish(mdir, done=2, epochs=5):
    """``mdir``'s model.json as an interrupted ``train`` leaves it: ``done`` of ``epochs`` epochs, no temperature."""
    path = mdir / "model.json"
    meta = json.loads(path.read_text())
    meta.pop("temperature", None)
    meta["training_progress"] = {"epochs_done": done, "epochs": epochs, "step": 10, "stopped_early": False}
    path.write_text(json.dumps(meta))


def copy_workspace(workspace, tmp_path):
    """A copy of a shared workspace that one test may change."""
    shutil.copytree(workspace, tmp_path / "ws")
    return tmp_path / "ws"


@pytest.fixture(scope="session")
def vae_ws(tmp_path_factory):
    """A workspace with 40 simulated objects, the prepared sets ``sim`` and ``real``, a VAE and one embedding."""
    ws = tmp_path_factory.mktemp("ztf_embed") / "ws"
    small = ("--seed", 1, "--set", "ztf.prepare.val_per_class=2", "--set", "ztf.prepare.test_per_class=2")
    assert run_astro_here("-w", ws, "--seed", 1, "ztf", "simulate", "-n", 40).returncode == 0
    for name in ("sim", "real"):
        r = run_astro_here("-w", ws, *small, "ztf", "prepare", "--name", name)
        assert r.returncode == 0, r.stderr
    r = run_astro_here("-w", ws, "--seed", 1, "ztf", "train", "--arch", "vae", "--epochs", 1)
    assert r.returncode == 0, r.stderr
    r = run_astro_here("-w", ws, "--seed", 1, "--set", "ztf.embed.n_neighbors=5", "ztf", "embed", "--model", "sim_vae")
    assert r.returncode == 0, r.stderr
    return ws


@pytest.fixture(scope="session")
def sim_prepared(tmp_path_factory):
    """A workspace with 40 simulated objects and the prepared set ``sim``."""
    ws = tmp_path_factory.mktemp("ztf_prepared") / "ws"
    assert run_astro_here("-w", ws, "--seed", 1, "ztf", "simulate", "-n", 40).returncode == 0
    r = run_astro_here("-w", ws, "--seed", 1, *SMALL, "ztf", "prepare")
    assert r.returncode == 0, r.stderr
    return ws


@pytest.fixture(scope="session")
def sim_trained(sim_prepared, tmp_path_factory):
    """``sim_prepared`` with the classifier ``sim_classifier`` and the autoencoder ``sim_vae`` (one epoch each)
    and the set ``s33`` (crop 33)."""
    ws = tmp_path_factory.mktemp("ztf_trained") / "ws"
    shutil.copytree(sim_prepared, ws)
    for args in (("ztf", "train", "--epochs", 1), ("ztf", "train", "--arch", "vae", "--epochs", 1),
                 (*SMALL, "ztf", "prepare", "--name", "s33", "--crop", 33)):
        r = run_astro_here("-w", ws, "--seed", 1, *args)
        assert r.returncode == 0, r.stderr
    return ws


@pytest.fixture
def ws(sim_prepared, tmp_path):
    """A copy of the prepared workspace ``sim_prepared`` the test may change."""
    return copy_workspace(sim_prepared, tmp_path)


@pytest.fixture
def tws(sim_trained, tmp_path):
    """A copy of the trained workspace ``sim_trained`` the test may change."""
    return copy_workspace(sim_trained, tmp_path)
