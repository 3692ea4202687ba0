"""How to test a plugin: the toy plugin (``tests/core/toyplugins/toyplug``) tested as
its author would test it (``docs/plugins.md``, "Testing a plugin").

The tools: a temporary workspace (pytest's ``tmp_path``); the plugin registered in a
fresh registry (:class:`astrotool.plugins.Registry`, :func:`set_registry`); the
command line run in this process (:func:`astrotool.cli.main`) or as a subprocess
(the ``astro`` fixture of ``tests/conftest.py``); a
:class:`astrotool.context.Context` for library calls (:meth:`Context.create`);
and a Dask ``LocalCluster`` for the distributed executor.
"""

import importlib
import json
import random
from pathlib import Path

import pytest

from astrotool.cli import main
from astrotool.context import Context
from astrotool.plugins import Registry, set_registry


@pytest.fixture
def registry(monkeypatch, toy):
    """A fresh registry with the core and the toy plugin only (no installed plugin)."""
    monkeypatch.syspath_prepend(str(toy[0]))
    set_registry(Registry(entry_points=False, extra=[importlib.import_module("toyplug")]))
    yield
    set_registry(None)


def test_square_writes_its_file_once(tmp_path, toy, monkeypatch):
    """The library alone: one item, one known output; a second call skips it."""
    monkeypatch.syspath_prepend(str(toy[0]))
    from toyplug.squares import Square, square

    item = Square(3, str(tmp_path))
    assert square(item, seed=11) == {"path": item.path, "skipped": False, "sq": 9}
    out = Path(item.path)
    assert out.name == "item_003.json"
    assert json.loads(out.read_text()) == {"n": 3, "sq": 9, "draw": random.Random(11).random()}
    mtime = out.stat().st_mtime_ns
    assert square(item, seed=12)["skipped"] is True and out.stat().st_mtime_ns == mtime
    assert square(Square(3, str(tmp_path), overwrite=True), seed=12)["skipped"] is False
    assert json.loads(out.read_text())["draw"] == random.Random(12).random()
    with pytest.raises(ValueError, match="item 4 is bad"):
        square(Square(4, str(tmp_path), fail=True), seed=0)
    assert not Path(Square(4, str(tmp_path)).path).exists()


def test_command_in_this_process(registry, tmp_path, capsys):
    """``main(argv)`` runs the real command line and returns the exit code."""
    assert main(["-w", str(tmp_path), "--json", "--set", "toy.label=x", "toy", "run", "--count", "2"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out == {"done": 2, "written": 2, "skipped": 0, "label": "x", "factor": 2.0}
    (run,) = (tmp_path / "runs").iterdir()
    record = json.loads((run / "run.json").read_text())
    assert record["status"] == "ok" and record["outputs"] == [
        str(tmp_path / "toy" / "out" / f"item_{i:03d}.json") for i in range(2)]
    # a failing item, in a fresh workspace: the others finish, exit code 1, the failure in the record
    ws = tmp_path / "fresh"
    assert main(["-w", str(ws), "toy", "run", "--count", "3", "--fail", "0"]) == 1
    assert "item0" in capsys.readouterr().err
    assert sorted(p.name for p in (ws / "toy" / "out").iterdir()) == ["item_001.json", "item_002.json"]
    (run,) = (ws / "runs").iterdir()
    record = json.loads((run / "run.json").read_text())
    assert record["exit_code"] == 1 and [f["item"] for f in record["failures"]] == ["item0"]


def _draws(ctx):
    from toyplug.squares import Square, square

    items = [Square(i, str(ctx.workspace.stage("toy", "out")), overwrite=True) for i in range(4)]
    results = ctx.map(square, items, desc="squares", keys=[item.key for item in items])
    return [json.loads(Path(r["path"]).read_text())["draw"] for _, r in results]


def test_library_through_a_context(registry, tmp_path):
    """``Context.create`` gives library code the configuration, workspace and executor
    a command would get; the executor does not change the results."""
    ctx = Context.create(tmp_path, set=["toy.count=5"], seed=3)
    assert ctx.section("toy").count == 5 and ctx.seed == 3
    serial = _draws(ctx)
    assert len(set(serial)) == 4
    assert _draws(Context.create(tmp_path, executor="process", jobs=2, seed=3)) == serial
    assert _draws(Context.create(tmp_path, seed=4)) != serial


def test_library_on_a_dask_cluster(registry, tmp_path):
    """The same items on a Dask cluster (``--executor dask --scheduler ADDRESS``)."""
    distributed = pytest.importorskip("distributed")
    serial = _draws(Context.create(tmp_path, seed=3))
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster:
        ctx = Context.create(tmp_path, executor="dask", scheduler=cluster.scheduler_address, seed=3)
        assert _draws(ctx) == serial


def test_command_in_a_subprocess(astro, toy, tmp_path):
    """The ``astro`` fixture runs ``python -m astrotool`` with the plugin on ``PYTHONPATH``."""
    r = astro("-w", tmp_path, "--json", "toy", "run", "--count", "2", pythonpath=toy)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["written"] == 2
    r = astro("-w", tmp_path, "--json", "toy", "stats", "total", pythonpath=toy)
    assert json.loads(r.stdout) == {"files": 2, "sum": 1}
