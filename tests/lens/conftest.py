"""Fixtures of the lens tests: one tiny easy dataset and one briefly trained CNN per session, and the workspace
``ws`` of the command tests (a fresh one, or a module's copy of a shared one: :data:`SHARED_WORKSPACES`)."""

from __future__ import annotations

import contextlib
import io
import shutil
from pathlib import Path

import pytest

pytest.importorskip("galsim")
pytest.importorskip("torch")


def easy_config(name: str = "easy", n: int = 800, **over):
    """ShearNet-like, small and quick: 24x24 px, round Gaussian PSF, no shape noise, g in +-0.1."""
    from astrotool_lens.config import GenerateConfig

    data = {
        "preset": "shearnet", "name": name, "n_stamps": n, "shard_size": 400, "stamp_size": 24, "pixel_scale": 0.2,
        "offset_radius": 0.5,
        "galaxy": {"profile": "exponential", "hlr": [0.5, 0.8], "hlr_unit": "arcsec"},
        "psf": {"profile": "gaussian", "fwhm": 0.6},
        "noise": {"kind": "gaussian", "snr": 500.0},
    }
    for k, v in over.items():
        data[k] = v
    return GenerateConfig.model_validate(data)


def serial_map(fn, items, desc="", keys=None):
    """The executor mapper of a serial run (``Context.map``'s signature); an item that fails raises."""
    from astrotool.executors import ExecutorOptions, run_items

    results, failures = run_items(fn, items, keys, ExecutorOptions(kind="serial"))
    if failures:
        raise RuntimeError(f"{failures[0].key}: {failures[0].error}")
    return results


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    """One intra-op thread: the test machine is shared, and oversubscribed OpenMP threads crawl."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def easy_dataset(tmp_path_factory):
    """800 easy stamps in 2 shards (session-wide)."""
    from astrotool_lens.data import ShearDataset
    from astrotool_lens.generate import generate_dataset

    cfg = easy_config()
    out = tmp_path_factory.mktemp("lens_ws") / "lens" / "shear" / "easy"
    generate_dataset(cfg, out, 11, serial_map)
    return ShearDataset(out)


@pytest.fixture(scope="session")
def trained_model(easy_dataset, tmp_path_factory):
    """A CNN trained for 300 steps on the easy dataset; returns (model_dir, summary)."""
    from astrotool_lens.config import TrainConfig
    from astrotool_lens.train import train_model

    cfg = TrainConfig(width=8, blocks=2, hidden=32, batch_size=32, epochs=15, lr=3e-3, patience=0,
                      split=(0.8, 0.1, 0.1), threads=1, target="ellipticity",
                      use_psf=False)
    mdir = easy_dataset.root.parent.parent / "models" / "easy_cnn"
    summary = train_model(easy_dataset, cfg, mdir, seed=5)
    return mdir, summary


TINY_GEN = ["lens", "generate", "--preset", "shearnet", "--stamp-size", 24, "--shard-size", 4,
            "--set", "lens.generate.galaxy.hlr=[0.5, 0.8]", "--set", "lens.generate.galaxy.hlr_unit=\"arcsec\"",
            "--set", "lens.generate.psf.fwhm=0.6"]
"""``astro lens generate`` of small, quick stamps (add ``--name`` and ``-n``)."""


def run_json(capsys, ws, *args, code=0):
    """``astro --json -w ws -q ARGS``: the printed result (None if empty) and stderr; asserts the exit code."""
    import json

    from astrotool.cli import main

    rc = main(["--json", "-w", str(ws), "-q", *(str(a) for a in args)])
    out = capsys.readouterr()
    assert rc == code, out.err
    return (json.loads(out.out) if out.out.strip() else None), out.err


def run_cli(capsys, *args):
    """``astro --json ARGS`` in this process: (exit code, stdout, stderr)."""
    from astrotool.cli import main

    code = main(["--json", *(str(a) for a in args)])
    out = capsys.readouterr()
    return code, out.out, out.err


def pytest_configure(config):
    config.addinivalue_line("markers", "workspace(name): the test's ws is its module's copy of the shared lens "
                            "workspace NAME (SHARED_WORKSPACES in tests/lens/conftest.py)")


def make_workspace(ws, n_g: int, g_shard: int, n_f3: int, field_size: int):
    """A workspace with dataset g (``n_g`` stamps in shards of ``g_shard``), fields f3 (``n_f3`` stamps in
    fields of ``field_size``) and model m (one epoch on g): 24-px stamps; returns ``ws``."""
    from astrotool.cli import main

    base = ["-q", "-w", str(ws)]
    assert main([*base, "lens", "generate", "--name", "g", "--n-stamps", str(n_g), "--shard-size", str(g_shard),
                 "--stamp-size", "24"]) == 0
    assert main([*base, "lens", "generate", "--preset", "fields", "--name", "f3", "--n-stamps", str(n_f3),
                 "--field-size", str(field_size), "--stamp-size", "24", "--shard-size", str(n_f3)]) == 0
    assert main([*base, "--set", "lens.train.threads=1", "lens", "train", "--dataset", "g", "--model", "m",
                 "--epochs", "1", "--width", "4", "--batch-size", "8", "--device", "cpu"]) == 0
    return ws


SHARED_WORKSPACES = {
    "inputs": (40, 20, 40, 10),        # bad input named; test_errors drops column g1 from f3's truth
    "reports": (40, 40, 24, 8),        # evaluate's reports per subset, the tables' provenance
    "checks": (16, 16, 24, 8),         # what a command checks before it works, and the names of what it writes
    "calibration": (16, 16, 24, 8),    # calibrated copies of m (cal_nosym), flagged stamps
    "folders": (16, 16, 24, 8),        # copied dataset folders, ``--dataset .``
}
"""Workspaces shared by the tests marked ``@pytest.mark.workspace(NAME)``, by name: ``(n_g, g_shard, n_f3,
field_size)`` of :func:`make_workspace`. Each is built once per session (names of one shape share the build)
and copied once per test module: the tests of one name in one module work in that copy, in file order, and
may find there what the earlier ones left (models, datasets, tables)."""


@pytest.fixture(scope="session")
def _built_workspaces(tmp_path_factory):
    """``get(shape)``: the workspace :func:`make_workspace` builds of that shape, once per session; never
    changed (tests work in copies)."""
    built = {}

    def get(shape):
        if shape not in built:
            root = tmp_path_factory.mktemp("lens_ws") / "ws"
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                built[shape] = make_workspace(root, *shape)
        return built[shape]

    return get


@pytest.fixture(scope="module")
def _module_workspaces(_built_workspaces, tmp_path_factory):
    """``get(name)``: this module's copy of the shared workspace ``name``."""
    copies = {}

    def get(name):
        if name not in copies:
            copies[name] = Path(shutil.copytree(_built_workspaces(SHARED_WORKSPACES[name]),
                                                tmp_path_factory.mktemp(name) / "ws"))
        return copies[name]

    return get


@pytest.fixture
def ws(request):
    """The workspace of a command test: with ``@pytest.mark.workspace(NAME)``, this module's copy of the shared
    workspace NAME (:data:`SHARED_WORKSPACES`); without, a fresh one holding the 8-stamp set ``s2`` (two shards
    of 4)."""
    marker = request.node.get_closest_marker("workspace")
    if marker is not None:
        return request.getfixturevalue("_module_workspaces")(marker.args[0])
    tmp_path, capsys = request.getfixturevalue("tmp_path"), request.getfixturevalue("capsys")
    run_json(capsys, tmp_path, *TINY_GEN, "--name", "s2", "-n", 8)
    return tmp_path


@pytest.fixture
def cal_nosym(ws):
    """Model m calibrated on f3 without symmetrisation, as ``mc``, once per copy of the workspace (one epoch: it
    hardly responds to shear, so the bounds on m and on the response are lifted to store its calibration all
    the same)."""
    from astrotool.cli import main

    mc = ws / "lens" / "models" / "mc"
    if not mc.exists():
        shutil.copytree(ws / "lens" / "models" / "m", mc)
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            assert main(["-q", "-w", str(ws), "--set", "lens.calibrate.max_abs_m=1e6", "--set",
                         "lens.calibrate.min_response_sigmas=0", "--set",
                         "lens.calibrate.min_response=0", "lens", "calibrate", "--model", "mc",
                         "--dataset", "f3", "--no-symmetrize"]) == 0
    return mc


def inline_map(fn, items, desc=None, keys=None):
    """A mapper with ``Context.map``'s signature that calls ``fn`` on each item here, in order."""
    return [(k, fn(t)) for k, t in zip(keys, items)]


def failing_measure(monkeypatch, start=4, methods=None):
    """measure_arrays raising for the item starting at ``start`` (the executor runs items in this process);
    with ``methods``, instead every stamp of those methods flagged failed."""
    import astrotool_lens.measure as measure

    real = measure.measure_arrays

    def fake(gal, psf, meths, *a, **k):
        if methods is None and k.get("start") == start:
            raise RuntimeError("this item fails")
        out = real(gal, psf, meths, *a, **k)
        for m in methods or ():
            if m in meths:
                out[f"{m.lower()}_flag"][:] = 1
        return out

    monkeypatch.setattr(measure, "measure_arrays", fake)


def copy_shear_set(ws, src, dst, edit=None):
    """``lens/shear/src`` copied to ``dst`` unless there; ``edit(gal, field)`` changes the copy's stamps in
    place."""
    import h5py
    import numpy as np

    from astrotool.io.tables import read_parquet

    d = ws / "lens" / "shear" / dst
    if not d.exists():
        shutil.copytree(ws / "lens" / "shear" / src, d)
        if edit is not None:
            field = np.asarray(read_parquet(d / f"{src}_truth.parquet").column("field").to_pylist())
            (shard,) = sorted(d.glob("*.h5"))
            with h5py.File(shard, "r+") as h:
                gal = h["gal"][...]
                edit(gal, field)
                h["gal"][...] = gal
    return d
