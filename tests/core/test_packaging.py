"""The core's distribution name, the plugins' core version range, and the Makefile's torch choice."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PLUGINS = ("dre", "lens", "plato", "ztf")


def _project(path: Path) -> dict:
    return tomllib.loads(path.read_text())["project"]


def test_core_distribution_is_not_pypis_astrotool():
    """``astrotool`` on PyPI is another project: the core is ``astrotool-core`` (it imports as astrotool)."""
    core = _project(REPO / "pyproject.toml")
    assert core["name"] == "astrotool-core"
    assert metadata.version("astrotool-core") == core["version"]
    r = subprocess.run([sys.executable, "-m", "astrotool", "--version"], capture_output=True, text=True,
                       env={"ASTRO_CONFIG": os.devnull, "PATH": "/usr/bin:/bin"})
    assert r.stdout.splitlines()[0] == f"astro {core['version']} (astrotool-core)", r.stdout


@pytest.mark.parametrize("plugin", PLUGINS)
def test_plugins_depend_on_a_compatible_core_range(plugin):
    core_version = _project(REPO / "pyproject.toml")["version"]
    major, minor = (int(x) for x in core_version.split(".")[:2])
    deps = [d for d in _project(REPO / "plugins" / plugin / "pyproject.toml")["dependencies"]
            if d.split("[")[0].split(">")[0].split("<")[0].strip().startswith("astrotool")]
    assert len(deps) == 1, deps
    name, _, spec = deps[0].partition(">=")
    assert name.split("[")[0] == "astrotool-core"
    assert spec == f"{major}.{minor},<{major}.{minor + 1}", deps[0]


FAKE_PY = """#!/bin/sh
# stands in for .venv/bin/python: `-c "import torch"` fails unless HAVE_TORCH, pip calls are logged
if [ "$1" = -c ]; then [ -n "$HAVE_TORCH" ] && { echo 2.9.0; exit 0; }; exit 1; fi
echo "$*" >> "$LOG"
case "$*" in
  *"pip show"*) exit 1;;
  *--index-url*) [ -n "$INDEX_DOWN" ] && exit 1; exit 0;;
esac
exit 0
"""


def _make_install(tmp_path: Path, gpu: bool = False, **env) -> tuple[str, list[str]]:
    """``make install`` with a stand-in python (no download) and PATH with or without ``nvidia-smi``."""
    if shutil.which("make") is None:
        pytest.skip("make not installed")
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    py = venv / "bin" / "python"
    py.write_text(FAKE_PY)
    py.chmod(py.stat().st_mode | stat.S_IEXEC)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    if gpu:
        smi = bindir / "nvidia-smi"
        smi.write_text("#!/bin/sh\nexit 0\n")
        smi.chmod(0o755)
    log = tmp_path / "pip.log"
    e = {"PATH": f"{bindir}:/usr/bin:/bin", "LOG": str(log), "HOME": str(tmp_path)}
    make_vars = [f"{k}={v}" for k, v in env.items() if k.isupper() and k.startswith("TORCH")]
    e.update({k: v for k, v in env.items() if not k.startswith("TORCH")})
    r = subprocess.run([shutil.which("make"), "-s", "install", f"VENV={venv}", *make_vars], cwd=REPO, env=e,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout, log.read_text().splitlines()


def test_no_gpu_installs_cpu_torch_before_the_extras(tmp_path):
    out, pip = _make_install(tmp_path)
    assert "torch: the CPU build from https://download.pytorch.org/whl/cpu" in out
    cpu = [i for i, line in enumerate(pip) if "--index-url https://download.pytorch.org/whl/cpu" in line]
    extras = [i for i, line in enumerate(pip) if ".[dev,ml]" in line]
    assert cpu and extras and cpu[0] < extras[0], pip


def test_unreachable_cpu_index_falls_back_to_pypi(tmp_path):
    out, pip = _make_install(tmp_path, INDEX_DOWN="1")
    assert "unreachable, installing torch from PyPI instead" in out
    assert any("install" in line and "torch>=2.4" in line and "--index-url" not in line for line in pip), pip


@pytest.mark.parametrize("case", ["gpu", "installed", "override"])
def test_gpu_installed_torch_or_override_keep_the_cpu_index_out(tmp_path, case):
    kw = {"gpu": {"gpu": True}, "installed": {"HAVE_TORCH": "1"}, "override": {"TORCH": "cuda"}}[case]
    out, pip = _make_install(tmp_path, **kw)
    assert out.startswith("torch: "), out
    assert not any("--index-url" in line for line in pip), pip
