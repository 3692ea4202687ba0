"""The command line: help, laziness, global options anywhere, exit codes, plugins."""

import json
import re
import subprocess
import sys

import pytest

HEAVY = ["torch", "galsim", "astropy", "photutils", "h5py", "pyarrow", "cupy", "dask", "numpy", "scipy",
         "matplotlib", "distributed"]


def test_help_lists_every_plugin_and_core_command(astro):
    r = astro("--help")
    assert r.returncode == 0, r.stderr
    for name in ["dre", "lens", "plato", "ztf", "init", "status", "config", "plugins", "doctor", "demo"]:
        assert f"\n  {name} " in r.stdout or f"│ {name} " in r.stdout, f"{name} missing from help"


def test_demo_help_names_every_installed_demo_step(astro):
    """`astro demo --help` showed `--only NAME[,NAME...]` without the names (they came only after a typo)."""
    from astrotool.plugins import Registry

    r = astro("demo", "--help")
    assert r.returncode == 0, r.stderr
    text = " ".join(r.stdout.replace("│", " ").split()).replace("- ", "-")   # "lens- kappa" where rich wraps
    steps = [step.name for _, step in Registry().demo_steps()]
    assert len(steps) == 5 and all(re.search(rf"[ ,]{re.escape(n)}[ ,]", text) for n in steps), (steps, text)


def test_help_imports_no_heavy_library():
    code = ("import sys; from astrotool.cli import main; rc = main(['--help']); "
            f"print('HEAVY', [m for m in {HEAVY!r} if m in sys.modules])")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("HEAVY")][0]
    assert line == "HEAVY []", line


def _modules_after(args, toy, prefixes=("toyplug", "astrotool_")):
    """Run ``astro ARGS`` in a fresh interpreter; return (exit code, stdout, plugin modules imported)."""
    import os

    code = ("import sys; from astrotool.cli import main; rc = main(sys.argv[1:]); "
            f"print('MODULES', sorted(m for m in sys.modules if m.startswith({prefixes!r}))); sys.exit(rc)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASTRO_")}
    env.update(ASTRO_CONFIG=os.devnull, PYTHONPATH=os.pathsep.join(map(str, toy)))
    r = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, env=env)
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("MODULES ")][-1]
    return r.returncode, r.stdout, set(eval(line[len("MODULES "):]))


def test_plugin_command_modules_are_imported_only_when_used(toy, tmp_path):
    # astro --help: the plugins' hook modules only, no command module
    rc, out, mods = _modules_after(["--help"], toy)
    assert rc == 0 and "toy " in out
    assert {"toyplug", "astrotool_dre", "astrotool_lens"} <= mods
    assert not {m for m in mods if m.endswith((".cli", ".stats"))}, mods
    # astro toy --help: toy's commands, and the group mounted under it listed with its
    # registered help, without importing its module
    rc, out, mods = _modules_after(["toy", "--help"], toy)
    assert rc == 0, out
    assert "toyplug.cli" in mods and "toyplug.stats" not in mods
    assert "stats  Summarise the toy outputs." in out and "run " in out
    assert not {m for m in mods if m.startswith("astrotool_") and m.endswith(".cli")}, mods
    # astro toy stats total: now it is imported, and runs
    rc, out, mods = _modules_after(["-w", tmp_path, "--json", "toy", "stats", "total"], toy)
    assert rc == 0, out
    assert "toyplug.stats" in mods
    assert json.loads(out[:out.index("MODULES")]) == {"files": 0, "sum": 0}


def test_nested_group_runs_and_names_its_run(astro, toy, tmp_path):
    assert astro("-w", tmp_path, "toy", "run", "--count", "3", pythonpath=toy).returncode == 0
    r = astro("-w", tmp_path, "toy", "stats", "total", pythonpath=toy)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "key\tvalue\nfiles\t3\nsum\t5\n"  # piped: tab-separated
    r = astro("-w", tmp_path, "toy", "stats", "total", "--json", pythonpath=toy)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"files": 3, "sum": 0 + 1 + 4}
    names = sorted(p.name.split("-", 1)[1] for p in (tmp_path / "runs").iterdir())
    assert names == ["toy-run", "toy-stats-total", "toy-stats-total"]


def _plugin(monkeypatch, tmp_path, name, specs, source=None):
    """A plugin object registering ``specs``, with an importable module ``<name>_cmds`` holding ``source``."""
    import types

    from astrotool.hookspecs import hookimpl

    if source is not None:
        (tmp_path / f"{name}_cmds.py").write_text(source)
        monkeypatch.syspath_prepend(str(tmp_path))
        monkeypatch.delitem(sys.modules, f"{name}_cmds", raising=False)
    plugin = types.ModuleType(name)
    plugin.astro_commands = hookimpl(lambda: specs)
    return plugin


def _run(capsys, *argv):
    """``astro ARGV`` in this process; returns (exit code, stdout, stderr)."""
    from astrotool.cli import main

    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _plugin_rows(capsys, registry_factory):
    from astrotool.plugins import set_registry

    set_registry(registry_factory())  # a fresh registry, as in a new process
    code, out, err = _run(capsys, "plugins", "--json")
    assert code == 0, err
    return {row["name"]: row for row in json.loads(out)}


CLASHING = """
import typer

app = typer.Typer()


@app.command()
def fine(n: int = typer.Option(1, "--n")):
    print("fine", n)


@app.command()
def fit(seed: int = typer.Option(0, "--seed", help="The plugin's own seed."),
        jobs: int = typer.Option(1, "--workers", "-j")):
    print("fit", seed, jobs)
"""


def test_plugin_option_named_like_a_global_option_is_refused(monkeypatch, tmp_path, capsys):
    from astrotool.hookspecs import CommandSpec
    from astrotool.plugins import Registry, set_registry

    clash = _plugin(monkeypatch, tmp_path, "clash", [CommandSpec("clash", "clash_cmds:app", "Clashes.")], CLASHING)

    def registry():
        return Registry(entry_points=False, extra=[clash])

    try:
        set_registry(registry())
        code, out, err = _run(capsys, "-w", tmp_path, "clash", "fit", "--seed", "3")
        assert code == 2 and out == ""
        assert "plugin 'clash'" in err and "`astro clash fit` defines option --seed" in err, err
        assert "global option --seed" in err and "Traceback" not in err
        # astro --help stays lazy and works; astro plugins says why the plugin is broken
        assert _run(capsys, "--help")[0] == 0
        rows = _plugin_rows(capsys, registry)
        assert rows["clash"]["status"] == "broken"
        assert "`astro clash fit` defines option --seed" in rows["clash"]["error"]
        assert rows["core"]["status"] == "ok"
    finally:
        set_registry(None)


def test_parent_that_does_not_exist_marks_the_plugin_broken(monkeypatch, tmp_path, capsys):
    from astrotool.hookspecs import CommandSpec
    from astrotool.plugins import Registry, set_registry

    orphan = _plugin(monkeypatch, tmp_path, "orphan", [CommandSpec("kid", "orphan_cmds:app", "A child.", parent="nosuch")])
    try:
        rows = _plugin_rows(capsys, lambda: Registry(entry_points=False, extra=[orphan]))
        assert rows["orphan"]["status"] == "broken"
        assert rows["orphan"]["error"] == "command 'kid': its parent `astro nosuch` does not exist"
        code, _, err = _run(capsys, "orphan")
        assert code == 2 and "plugin 'orphan' is broken: command 'kid'" in err
        assert _run(capsys, "--help")[0] == 0
    finally:
        set_registry(None)


def test_second_registration_of_a_command_marks_its_plugin_broken(monkeypatch, tmp_path, capsys):
    from astrotool.hookspecs import CommandSpec
    from astrotool.plugins import Registry, set_registry

    again = _plugin(monkeypatch, tmp_path, "again", [CommandSpec("status", "again_cmds:app", "Mine.")])
    try:
        rows = _plugin_rows(capsys, lambda: Registry(entry_points=False, extra=[again]))
        assert rows["again"]["status"] == "broken"
        assert rows["again"]["error"] == "command `astro status` is already registered by plugin 'core'"
        code, out, err = _run(capsys, "status", "--json", "-w", tmp_path)
        assert code == 0 and json.loads(out)["stages"] == {}, err  # the core's status still runs
    finally:
        set_registry(None)


def test_child_named_like_a_command_of_its_parent_is_refused(monkeypatch, tmp_path, capsys, toy):
    from astrotool.hookspecs import CommandSpec
    from astrotool.plugins import Registry, set_registry

    monkeypatch.syspath_prepend(str(toy[0]))
    dup = _plugin(monkeypatch, tmp_path, "dup", [CommandSpec("run", "dup_cmds:app", "Another run.", parent="toy")],
                  CLASHING)
    try:
        rows = _plugin_rows(capsys, lambda: Registry(extra=[dup]))
        assert rows["dup"]["status"] == "broken"
        assert "`astro toy` already has a command 'run'" in rows["dup"]["error"]
        assert rows["toy"]["status"] == "ok"
    finally:
        set_registry(None)


def test_ztf_group_help_lists_its_commands(astro):
    r = astro("ztf", "--help")
    assert r.returncode == 0, r.stderr
    assert "ingest" in r.stdout


def test_version_lists_plugins(astro):
    r = astro("--version")
    assert r.returncode == 0
    assert r.stdout.startswith("astro ")
    for name in ["dre", "lens", "plato", "ztf"]:
        assert f"{name}: astrotool-{name}" in r.stdout
    r = astro("--json", "--version")   # was the text above: --json makes every result JSON
    versions = json.loads(r.stdout)
    assert r.returncode == 0 and versions["astro"] and versions["plugins"]["dre"]["distribution"] == "astrotool-dre"


def test_unknown_command_is_usage_error(astro):
    r = astro("nosuchcommand")
    assert r.returncode == 2
    assert "No such command" in r.stderr


def test_global_option_missing_value(astro):
    r = astro("status", "--cfg")
    assert r.returncode == 2
    assert "--cfg requires a value" in r.stderr


def test_global_options_before_or_after_subcommand(astro, toy, tmp_path):
    a = astro("-w", tmp_path, "--json", "--set", "toy.label=before", "toy", "show", pythonpath=toy)
    b = astro("toy", "show", "-w", tmp_path, "--set", "toy.label=before", "--json", pythonpath=toy)
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


def test_global_options_are_taken_out_anywhere():
    from astrotool.cli import split_global_options
    from astrotool.context import GlobalOptions

    opts, rest = split_global_options(["-vv", "dre", "-j", "2", "fit", "--set", "a.b=1", "--set=c.d=x=y",
                                       "--seed=7", "-q", "tile.fits", "--progress-interval", "0.5",
                                       "--overwrite", "-w", "ws", "--", "-j", "3"])
    assert rest == ["dre", "fit", "tile.fits", "--", "-j", "3"]
    assert opts == GlobalOptions(verbose=2, jobs=2, set=["a.b=1", "c.d=x=y"], seed=7, quiet=True,
                                 progress_interval=0.5, overwrite=True, workspace="ws")
    assert opts.config_flags() == {"core.log_format": None, "core.executor": None, "core.jobs": 2,
                                   "core.scheduler": None, "core.seed": 7, "core.progress_interval": 0.5}


def test_short_global_options_take_attached_values_and_bundle():
    """``-j2``, ``-wDIR`` and ``-qv`` read as getopt reads them, before or after the sub-command (they were
    ignored before it: a Slurm script's ``-w/scratch/run`` wrote into the submit folder)."""
    from astrotool.cli import split_global_options
    from astrotool.context import GlobalOptions

    opts, rest = split_global_options(["-j2", "-w/scratch/run", "plato", "simulate", "-qv", "-n", "2", "-qn"])
    assert opts == GlobalOptions(jobs=2, workspace="/scratch/run", quiet=True, verbose=1)
    assert rest == ["plato", "simulate", "-n", "2", "-qn"]   # a bundle with a plugin's flag is the plugin's
    assert split_global_options(["-vj2", "x"]) == (GlobalOptions(verbose=1, jobs=2), ["x"])
    assert split_global_options(["-qj", "3", "-vvv"]) == (GlobalOptions(quiet=True, jobs=3, verbose=3), [])


@pytest.mark.parametrize("args, message", [
    (["-jtwo"], "option --jobs: expected an integer >= 0, got 'two'"),
    (["--seed", "-1"], "option --seed: expected an integer >= 0, got '-1'"),
    (["--seed=1.5"], "option --seed: expected an integer >= 0, got '1.5'"),
    (["--jobs", "-1"], "option --jobs: expected an integer >= 0, got '-1'"),
    (["-j", "two"], "option --jobs: expected an integer >= 0, got 'two'"),
    (["--progress-interval", "0"], "option --progress-interval: expected a number of seconds >= 0.1, got '0'"),
    (["--shard"], "option --shard requires a value"),
])
def test_bad_global_option_values_are_usage_errors(astro, args, message):
    r = astro("status", *args)
    assert r.returncode == 2, r.stderr
    assert re.search(r" ERROR   " + re.escape(message) + "\n", r.stderr) and "Traceback" not in r.stderr, r.stderr


def test_global_options_reach_the_configuration(astro, tmp_path):
    r = astro("-w", tmp_path, "config", "show", "core", "--json", "--seed", "7", "-j", "3", "--executor", "dask",
              "--scheduler", "tcp://h:1", "--progress-interval", "2.5", "--log-format", "plain")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["core"] == {"executor": "dask", "jobs": 3, "scheduler": "tcp://h:1", "seed": 7,
                                           "log_format": "plain", "progress_interval": 2.5}


def test_root_help_shows_every_global_option(astro):
    from astrotool.context import GLOBAL_OPTIONS

    r = astro("--help")
    flat = " ".join(r.stdout.split())
    for o in GLOBAL_OPTIONS:
        assert ", ".join(o.names) + (f" {o.metavar}" if o.metavar else "") in flat, o.names
        assert " ".join(o.help.split()) in flat, o.help


def test_two_distributions_with_one_entry_point_name_both_listed(monkeypatch, tmp_path, capsys):
    """The second distribution registering entry point 'dup' is listed as broken, not silently dropped."""
    from astrotool.plugins import Registry, set_registry

    for dist in ("first_dist-1.0", "second_dist-2.0"):
        info = tmp_path / dist / f"{dist}.dist-info"
        info.mkdir(parents=True)
        (info / "entry_points.txt").write_text("[astrotool.plugins]\ndup = dupmod\n")
    (tmp_path / "first_dist-1.0" / "dupmod.py").write_text("")
    monkeypatch.setattr(sys, "path", [str(tmp_path / "first_dist-1.0"), str(tmp_path / "second_dist-2.0"), *sys.path])
    monkeypatch.delitem(sys.modules, "dupmod", raising=False)
    try:
        set_registry(Registry())
        code, out, err = _run(capsys, "plugins", "--json")
        assert code == 0, err
        rows = [row for row in json.loads(out) if row["name"] == "dup"]
        assert [(r["distribution"], r["status"]) for r in rows] == [("first-dist", "ok"), ("second-dist", "broken")]
        assert rows[1]["error"] == "entry point 'dup' also provided by first-dist; uninstall one of them"
    finally:
        set_registry(None)


@pytest.mark.parametrize("args, hint", [
    (["lens", "generate", "--n", "3"], "(renamed --n-stamps)"), (["lens", "kappa", "simulate", "--n", "3"],
                                                                 "(renamed --n-maps)"),
    (["lens", "measure", "--output", "x"], "(renamed --name)"),
    # a renamed key the command has no option for, or a renamed table: no hint (was "renamed --bin-seconds",
    # "renamed --chunk-size", "renamed --evaluate": options that do not exist)
    (["plato", "bls", "--bin", "5"], None), (["ztf", "simulate", "--objects-per-file", "3"], None),
    (["plato", "--eval", "x"], None), (["lens", "generate", "--nope", "3"], None)])
def test_an_option_of_an_earlier_release_names_its_new_option(capsys, tmp_path, args, hint):
    """``--n`` stopped with click's "No such option" and an unrelated "Possible options: --name, --ring,
    --snr"; the command's table's renamed key names the command's option for the new key, if it has one."""
    from astrotool.cli import main

    code = main(["-w", str(tmp_path / "ws"), *args])
    err = capsys.readouterr().err
    assert code == 2 and f"No such option: {args[-2]}" in err, err
    assert (hint in err and "Possible" not in err) if hint else "renamed" not in err, err


def test_help_says_when_an_invalid_configuration_leaves_it_the_packaged_defaults(astro, tmp_path):
    """With one bad value in astro.toml, `--help` showed the packaged default of every option in silence."""
    (tmp_path / "astro.toml").write_text('[dre.simulate]\nn_tiles = 11\n[plato.prepare]\nbad_values = "filter"\n')
    r = astro("-w", tmp_path, "dre", "simulate", "--help")
    assert r.returncode == 0 and "[default: 2]" in r.stdout and not r.stderr, r.stderr
    assert "plato.prepare.bad_values" in r.stdout and "the defaults shown are the packaged ones" in r.stdout
    r = astro("-w", tmp_path, "dre", "simulate")   # a run: the error once, not a note before it
    assert r.returncode == 2 and r.stderr.count("plato.prepare.bad_values") == 1, r.stderr
    (tmp_path / "astro.toml").write_text('[dre.simulate]\nn_tiles = 11\n')
    r = astro("-w", tmp_path, "dre", "simulate", "--help")
    assert r.returncode == 0 and "[default: 11]" in r.stdout and not r.stderr, r.stderr


@pytest.mark.parametrize("command", [("status",), ("config", "show"), ("dre", "fit")])
def test_every_command_s_help_points_to_the_global_options(astro, command):
    """`lens train --help` said "--overwrite starts afresh" without listing --overwrite or saying where it is."""
    r = astro(*command, "--help")
    assert r.returncode == 0 and "--overwrite, --json, ...) go before or after the sub-command" in \
        " ".join(r.stdout.split()), r.stdout


def test_an_on_off_pair_shows_its_default_as_the_option_whether_configured_or_not(astro):
    """`dre run --help` said `[default: mosaics]` beside the configured pairs' `[default: --use-psf]`."""
    text = " ".join(astro("dre", "run", "--help").stdout.split())
    assert "[default: --mosaics]" in text and "[default: mosaics]" not in text


@pytest.mark.parametrize("words, expected", [("astro --executor ", ["serial", "process", "dask"]),
                                             ("astro --log-format p", ["plain"])])
def test_the_shell_completes_the_values_of_global_options(astro, words, expected):
    """README: options that take one of a few values are completed by the shell; --executor was not."""
    r = astro(env={"COMP_WORDS": words, "COMP_CWORD": "2", "_ASTRO_COMPLETE": "complete_bash"})
    assert r.returncode == 0 and r.stdout.split() == expected, (r.stdout, r.stderr)


@pytest.mark.parametrize("args, message", [
    (("config", "check", "x.toml"), "No such command 'check'. Did you mean 'validate'?"),
    (("help",), "No such command 'help'. Use --help"),
    (("plato", "analyze"), "No such command 'analyze'. Did you mean 'evaluate'?"),   # Panopticon's word
    (("lens", "kappa", "evaluate"), "No such command 'evaluate'. Did you mean 'score'?"),   # lens evaluate's word
    (("config", "show", "dre.fti"), "[dre] has no table or key 'fti'; did you mean 'fit'?"),
    (("config", "show", "dr"), "unknown section 'dr'; did you mean 'dre'?"),
    (("config", "show", "dre.fit.nosuch"), "(its tables: error_floor; its keys: backend, batch_size,"),  # not tables
])
def test_a_wrong_word_gets_the_right_one(astro, tmp_path, args, message):
    r = astro("-w", tmp_path, *args)
    assert r.returncode == 2 and message in r.stderr, r.stderr


def test_config_show_shows_one_key(astro, tmp_path):
    """`config show dre.fit.statistic` said "[dre.fit] has no table 'statistic'"."""
    r = astro("-w", tmp_path, "--set", 'dre.fit.statistic="dre"', "config", "show", "dre.fit.statistic", "--sources")
    assert r.returncode == 0 and r.stdout.split() == ["dre.fit.statistic", "=", '"dre"', "#", "--set"], r.stdout


def test_config_show_of_a_path_through_a_key_says_it_is_a_key(astro, tmp_path):
    r = astro("-w", tmp_path, "config", "show", "dre.fit.statistic.x")
    assert r.returncode == 2 and "dre.fit.statistic is a key, not a table" in r.stderr and "did you mean" not in r.stderr


def test_a_reader_that_stops_reading_stdout_ends_the_command_with_exit_0_and_no_message(tmp_path):
    """`astro ... | head -1`: the result could not all be printed, the work is done and kept: exit 0, the run
    recorded as ok, nothing on stderr (click's own handling of the broken pipe exits 1)."""
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("ASTRO_")}
    env.update(ASTRO_CONFIG=os.devnull)
    astro = [sys.executable, "-c", "from astrotool.cli import run; run()"]
    (tmp_path / "ws").mkdir()
    p = subprocess.Popen([*astro, "-w", tmp_path / "ws", "--log-format", "plain", "-q", "plato", "simulate", "-n", "1",
                          "--days", "1"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    p.stdout.close()   # the reader is gone before the first line is written
    err = p.stderr.read().decode()
    assert p.wait() == 0 and err == ""
    record = json.loads(next((tmp_path / "ws" / "runs").glob("*/run.json")).read_text())
    assert record["status"] == "ok" and record["exit_code"] == 0


def test_a_dead_pipe_shared_by_stdout_and_stderr_keeps_the_failed_items_exit_code(toy, tmp_path):
    """`astro ... 2>&1 | head`: the table of failed items meets the dead pipe too; the run still exits 1 and is
    recorded as `failed items`, not as ok."""
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("ASTRO_")}
    env.update(ASTRO_CONFIG=os.devnull, PYTHONPATH=os.pathsep.join(map(str, toy)))
    (tmp_path / "ws").mkdir()
    p = subprocess.Popen([sys.executable, "-c", "from astrotool.cli import run; run()", "-w", tmp_path / "ws",
                          "toy", "run", "--count", "3", "--fail", "1"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    p.stdout.close()
    assert p.wait() == 1
    record = json.loads(next((tmp_path / "ws" / "runs").glob("*/run.json")).read_text())
    assert (record["status"], record["exit_code"], record["error"]) == ("failed items", 1, None)


def test_an_error_told_to_a_dead_pipe_keeps_its_exit_code(tmp_path):
    """`astro ... 2>&1 | head` of a command refused (exit 2): writing the error to the dead pipe raised out of
    main, so the process exited 1 while run.json said 2."""
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("ASTRO_")}
    env.update(ASTRO_CONFIG=os.devnull)
    astro = [sys.executable, "-c", "from astrotool.cli import run; run()", "-w", tmp_path / "ws", "-q",
             "plato", "simulate", "-n", "1"]
    (tmp_path / "ws").mkdir()
    assert subprocess.run([*astro, "--days", "1"], capture_output=True, env=env).returncode == 0
    p = subprocess.Popen([*astro, "--days", "2"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    p.stdout.close()
    assert p.wait() == 2
    last = sorted((tmp_path / "ws" / "runs").glob("*/run.json"))[-1]
    record = json.loads(last.read_text())
    assert (record["status"], record["exit_code"]) == ("error", 2) and "duration_days" in record["error"]
