"""Shared test fixtures: run ``astro`` in a subprocess, isolated from the user's config."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def _share_the_cores_between_test_workers() -> None:
    """Under pytest-xdist (``make test``), each of N workers gets its share of the cores as OpenMP/BLAS threads
    (inherited by the ``astro`` processes it starts), as the executors give their workers, unless set already:
    N workers each starting one thread per core oversubscribed the machine (the suite ran no faster on 2 workers;
    with the share, tests/dre took 281 s instead of 482 s serially on 2 cores)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if "PYTEST_XDIST_WORKER" not in os.environ or workers < 2:
        return
    from astrotool.executors import THREAD_VARIABLES, usable_cores

    for var in THREAD_VARIABLES:
        os.environ.setdefault(var, str(max(1, usable_cores() // workers)))


_share_the_cores_between_test_workers()


def pytest_collection_modifyitems(config, items):
    """Tests marked ``long`` run first, the others in their order: under pytest-xdist the workers then end
    together, where a long test handed out last ran alone at the end."""
    items.sort(key=lambda item: item.get_closest_marker("long") is None)


@pytest.fixture(autouse=True)
def _isolate_config(monkeypatch, tmp_path_factory):
    """No user config file and no ASTRO_* variables leak into tests."""
    for k in list(os.environ):
        if k.startswith("ASTRO_"):
            monkeypatch.delenv(k)
    monkeypatch.setenv("ASTRO_CONFIG", os.devnull)
    monkeypatch.setenv("HDF5_USE_FILE_LOCKING", "FALSE")


def run_astro(*args, cwd=None, env=None, pythonpath=None, timeout=300, input=None):
    """Run ``python -m astrotool ARGS`` and return the CompletedProcess (text)."""
    e = {k: v for k, v in os.environ.items() if not k.startswith("ASTRO_")}
    e["ASTRO_CONFIG"] = os.devnull
    e.pop("FORCE_COLOR", None)
    if pythonpath:
        e["PYTHONPATH"] = os.pathsep.join([str(p) for p in pythonpath] + [e.get("PYTHONPATH", "")])
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "astrotool", *map(str, args)], cwd=cwd, env=e,
                          capture_output=True, text=True, timeout=timeout, input=input)


def run_astro_here(*args, cwd=None, env=None):
    """Run ``astro ARGS`` in this process (:func:`astrotool.cli.main`) and return a CompletedProcess (text), as
    :func:`run_astro` does, without the seconds a new interpreter spends importing torch and Fabric.

    For commands whose output all comes from this process: Python warnings (astropy's as astropy prints them),
    "Exception ignored" messages and tracebacks of threads go to the captured stderr, under a fresh
    interpreter's warning filters, not to pytest, so a test can see that a command is quiet. Use
    :func:`run_astro` for what worker processes print, for what C libraries write to file descriptor 2, for
    stop signals and imports, and for variables read only as an interpreter starts (``PYTHON*``, thread
    counts), which ``env`` refuses here.
    """
    import contextlib
    import io
    import threading
    import warnings

    from astrotool import config
    from astrotool import cli
    from astrotool.cli import main
    from astrotool.executors import THREAD_VARIABLES

    early = sorted(k for k in env or {} if k.startswith("PYTHON") or k in THREAD_VARIABLES)
    if early:
        raise ValueError(f"{', '.join(early)}: read as an interpreter starts; use run_astro (a subprocess)")

    def show(message, category, filename, lineno, file=None, line=None):
        astropy_log = getattr(sys.modules.get("astropy"), "log", None)
        exceptions = sys.modules.get("astropy.utils.exceptions")
        if exceptions is not None and isinstance(message, exceptions.AstropyWarning) and \
                astropy_log.warnings_logging_enabled():   # "WARNING: ... [module]", astropy's own line
            astropy_log._showwarning(message, category, filename, lineno)
        else:
            sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))

    config._ENV_TYPOS_TOLD.clear()   # told once per process: each command here is a process of its own
    cli._UNRAISABLE_HOOKED = False   # its hook, set once per process, is taken off again below
    torch = sys.modules.get("torch")
    deterministic = (torch.are_deterministic_algorithms_enabled(),
                     torch.is_deterministic_algorithms_warn_only_enabled()) if torch else None
    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    saved_hooks = sys.unraisablehook, threading.excepthook
    out, err = io.StringIO(), io.StringIO()
    try:
        for k in [k for k in os.environ if k.startswith("ASTRO_") or k == "FORCE_COLOR"]:
            del os.environ[k]
        os.environ["ASTRO_CONFIG"] = os.devnull
        os.environ.update(env or {})
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
            warnings.resetwarnings()   # a fresh interpreter's filters (no -W, no PYTHONWARNINGS)
            for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
                warnings.simplefilter("ignore", category)
            warnings.showwarning = show
            sys.unraisablehook, threading.excepthook = sys.__unraisablehook__, threading.__excepthook__
            code = main([str(a) for a in args])
    finally:
        sys.unraisablehook, threading.excepthook = saved_hooks
        torch = sys.modules.get("torch")
        if torch is not None:   # training turns deterministic algorithms on for the rest of the process
            enabled, warn_only = deterministic or (False, False)   # (torch imported by the command)
            torch.use_deterministic_algorithms(enabled, warn_only=warn_only)
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
    return subprocess.CompletedProcess(["astro", *map(str, args)], code, out.getvalue(), err.getvalue())


@pytest.fixture
def astro():
    """The :func:`run_astro` helper."""
    return run_astro


@pytest.fixture
def small_disk(tmp_path):
    """A fresh 1 MiB tmpfs (a disk that fills up), mounted at ``tmp_path/disk``; skipped
    where mounting is not allowed (not root, or no tmpfs in this container)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {r.stderr.decode(errors='replace').strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
