"""The command line: help, laziness, global options anywhere, exit codes, plugins."""

import json
import subprocess
import sys

HEAVY = ["torch", "galsim", "astropy", "photutils", "h5py", "pyarrow", "cupy", "dask", "numpy", "scipy",
         "matplotlib", "distributed"]


def test_help_lists_every_plugin_and_core_command(astro):
    r = astro("--help")
    assert r.returncode == 0, r.stderr
    for name in ["dre", "lens", "plato", "ztf", "init", "status", "config", "plugins", "doctor", "demo"]:
        assert f"\n  {name} " in r.stdout or f"│ {name} " in r.stdout, f"{name} missing from help"


def test_help_imports_no_heavy_library():
    code = ("import sys; from astrotool.cli import main; rc = main(['--help']); "
            f"print('HEAVY', [m for m in {HEAVY!r} if m in sys.modules])")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("HEAVY")][0]
    assert line == "HEAVY []", line


def test_plugin_group_help_is_lazy_until_asked(astro):
    # a group's own help imports that plugin (fine), and still lists its commands
    r = astro("ztf", "--help")
    assert r.returncode == 0, r.stderr
    assert "ingest" in r.stdout


def test_version_lists_plugins(astro):
    r = astro("--version")
    assert r.returncode == 0
    assert r.stdout.startswith("astro ")
    for name in ["dre", "lens", "plato", "ztf"]:
        assert f"{name}: astrotool-{name}" in r.stdout


def test_unknown_command_is_usage_error(astro):
    r = astro("nosuchcommand")
    assert r.returncode == 2
    assert "No such command" in r.stderr


def test_global_option_missing_value(astro):
    r = astro("status", "--cfg")
    assert r.returncode == 2
    assert "--cfg requires a value" in r.stderr


def test_global_options_before_or_after_subcommand(astro, toy, tmp_path):
    a = astro("-w", tmp_path, "--set", "toy.label=before", "toy", "show", pythonpath=toy)
    b = astro("toy", "show", "-w", tmp_path, "--set", "toy.label=before", pythonpath=toy)
    assert a.returncode == b.returncode == 0, a.stderr + b.stderr
    assert json.loads(a.stdout) == json.loads(b.stdout)
    assert json.loads(a.stdout)["label"] == "before"


def test_broken_plugin_is_listed_and_others_work(astro, toy, tmp_path):
    r = astro("plugins", "--json", pythonpath=toy)
    assert r.returncode == 0, r.stderr
    rows = {p["name"]: p for p in json.loads(r.stdout)}
    assert rows["broken"]["status"] == "broken"
    assert "brokenplug needs a library" in rows["broken"]["error"]
    assert rows["broken"]["distribution"] == "brokenplug" and rows["broken"]["version"] == "0.0.1"
    assert rows["toy"] == {"name": "toy", "distribution": "toyplug", "version": "1.2.3", "status": "ok", "error": ""}
    for name in ["dre", "lens", "plato", "ztf"]:
        assert rows[name]["status"] == "ok", rows[name]
    # every other command still works
    assert astro("--help", pythonpath=toy).returncode == 0
    assert astro("config", "show", "-w", tmp_path, pythonpath=toy).returncode == 0
    assert astro("toy", "show", "-w", tmp_path, pythonpath=toy).returncode == 0
    # the broken one says why, exit 2, no traceback
    r = astro("broken", pythonpath=toy)
    assert r.returncode == 2
    assert "broken" in r.stderr and "Traceback" not in r.stderr


def test_doctor_json_lists_checks_with_hints(astro, toy):
    r = astro("doctor", "--json", pythonpath=toy)
    assert r.returncode == 0, r.stderr
    checks = json.loads(r.stdout)
    rows = {c["name"]: c for c in checks}
    assert rows["python"]["ok"] and rows["numpy"]["ok"]
    names = [c["name"] for c in checks]  # a check several plugins share (pyarrow: plato, ztf) runs once
    assert names.count("pyarrow") == 1 and rows["pyarrow"]["required"]
    assert rows["toy-check"] == {"plugin": "toy", "name": "toy-check", "ok": False, "detail": "not here",
                                 "hint": "install toy", "required": False}
    assert "plugin broken" in rows and rows["plugin broken"]["ok"] is False
    for name in ["torch", "cupy", "dask distributed"]:
        assert name in rows
