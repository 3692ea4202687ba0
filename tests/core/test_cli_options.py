"""Every option of every command: help text, real choices checked before work, the configured default."""

from __future__ import annotations

import subprocess
import sys

import pytest

from astrotool.plugins import set_registry

HOUSEKEEPING = {"help", "install_completion", "show_completion"}


def _tree():
    """``(path, command)`` of every mounted command, the way the CLI reference walks it."""
    from astrotool.cli import build_app, mount_all

    set_registry(None)  # the installed plugins
    group = build_app()._astro_group
    assert mount_all(group) == []

    def walk(cmd, path):
        yield path, cmd
        for name, sub in getattr(cmd, "commands", {}).items():
            yield from walk(sub, f"{path} {name}")

    return list(walk(group, "astro"))


def _options(cmd):
    return [p for p in getattr(cmd, "params", []) if getattr(p, "param_type_name", "") == "option"
            and p.name not in HOUSEKEEPING and not getattr(p, "hidden", False)]


def _arguments(cmd):
    return [p for p in getattr(cmd, "params", []) if getattr(p, "param_type_name", "") == "argument"]


@pytest.fixture(scope="module")
def tree():
    return _tree()


def test_every_option_has_help(tree):
    missing = [f"{path} {p.opts[0]}" for path, cmd in tree for p in _options(cmd) if not (p.help or "").strip()]
    assert not missing, missing


def test_options_with_a_fixed_set_of_values_are_choices(tree):
    """A key of the configuration that takes one of a few words is a choice on the command line."""
    choices = {f"{path} {p.opts[0]}": tuple(p.type_descriptor.choices) for path, cmd in tree
               for p in _options(cmd) if getattr(p, "type_descriptor", None) is not None and p.type_descriptor.is_choice}
    assert choices["astro dre fit --statistic"] == ("chi2", "dre")
    assert choices["astro dre run --statistic"] == ("chi2", "dre")
    assert choices["astro dre run --detect-engine"] == ("auto", "sextractor", "photutils")
    assert choices["astro lens generate --noise"] == ("none", "gaussian", "poisson")
    assert choices["astro lens kappa baseline --method"] == ("ks", "wiener", "zero", "mean")
    assert choices["astro plato simulate --shape"] == ("limb-darkened", "trapezoid")
    assert choices["astro ztf ingest --compression"] == ("none", "low", "medium", "high")
    assert len(choices) >= 25, sorted(choices)


def test_a_bad_choice_exits_2_before_any_work(tree, tmp_path, capsys):
    """Every choice option: a value outside its set is a usage error (2) naming the option, and nothing
    is written (no run record, no stage folder)."""
    from astrotool.cli import main

    checked = 0
    for path, cmd in tree:
        args = ["x"] * sum(1 for a in _arguments(cmd) if a.required)
        for p in _options(cmd):
            if getattr(p, "type_descriptor", None) is None or not p.type_descriptor.is_choice:
                continue
            ws = tmp_path / f"ws{checked}"
            ws.mkdir()
            code = main(["-w", str(ws), *path.split()[1:], p.opts[0], "no-such-value", *args])
            _, err = capsys.readouterr()
            assert code == 2, (path, p.opts[0], err)
            assert f"'{p.opts[0]}'" in err and "no-such-value" in err, err
            assert list(ws.iterdir()) == [], (path, p.opts[0])
            checked += 1
    assert checked >= 25


def _help(*args, cwd=None):
    r = subprocess.run([sys.executable, "-m", "astrotool", *args, "--help"], capture_output=True, text=True,
                       cwd=cwd, env={"ASTRO_CONFIG": "/dev/null", "PATH": "/usr/bin:/bin", "COLUMNS": "200"})
    assert r.returncode == 0, r.stderr
    return " ".join(r.stdout.split())


def test_help_shows_choices_and_the_configured_default(tmp_path):
    text = _help("dre", "fit")
    assert "--statistic <chi2|dre>" in text and "[default: chi2]" in text
    (tmp_path / "astro.toml").write_text('[dre.fit]\nstatistic = "dre"\nbatch_size = 7\n')
    text = _help("-w", str(tmp_path), "dre", "fit")
    assert "--statistic <chi2|dre>" in text
    assert "[default: dre]" in text and "[default: 7]" in text  # the workspace's astro.toml, not a copy


def test_status_lists_only_stage_folders_that_commands_write(tmp_path):
    """A folder for each stage a command writes."""
    import json

    run = lambda *a: subprocess.run([sys.executable, "-m", "astrotool", "-w", str(tmp_path), *a],  # noqa: E731
                                    capture_output=True, text=True, env={"ASTRO_CONFIG": "/dev/null",
                                                                         "PATH": "/usr/bin:/bin"})
    assert run("init").returncode == 0
    r = run("status", "--json")
    assert r.returncode == 0, r.stderr
    stages = json.loads(r.stdout)["stages"]
    assert set(stages["plato"]) == {"raw", "labels", "prepared", "models", "runs", "reports"}
    assert set(stages["ztf"]) == {"alerts", "stamps", "simulated", "prepared", "models", "embeddings", "reports",
                                  "predictions"}


def test_status_and_init_report_a_bad_configuration_as_every_command_does(tmp_path):
    """They used to exit 0 on an unknown key or a bad value (the docs say every command exits 2)."""
    ws = tmp_path / "ws"
    assert _astro("-w", ws, "init").returncode == 0
    for args in (("--set", "core.executer=process", "status"), ("--set", "core.jobs=-1", "init")):
        r = _astro("-w", ws, *args)
        assert r.returncode == 2 and args[1].split("=")[0] in r.stderr, r.stderr
    (ws / "astro.toml").write_text("[core]\nexecuter = 'process'\n")
    r = _astro("-w", ws, "status")
    assert r.returncode == 2 and "astro.toml" in r.stderr and "core.executer" in r.stderr
    assert not (tmp_path / "new").exists() and _astro("-w", tmp_path / "new", "--set", "core.jobs=-1",
                                                        "init").returncode == 2
    assert not (tmp_path / "new").exists()  # refused before anything was created
    r = _astro("-w", ws, "init", tmp_path / "other")   # init DIR checks DIR's configuration, not -w's
    assert r.returncode == 0 and (tmp_path / "other" / "astro.toml").exists(), r.stderr


def test_a_shard_that_the_command_does_not_use_is_said(tmp_path):
    """Commands without items (train, export, status...) ran everything under --shard, silently."""
    r = _astro("-w", tmp_path, "--shard", "1/2", "status")
    assert r.returncode == 0 and "--shard 1/2 was not used: `status` does not split its work" in r.stderr
    assert "not used" not in _astro("-w", tmp_path, "--shard", "1/2", "status", "--help").stderr


def _astro(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "astrotool", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env={"ASTRO_CONFIG": "/dev/null", "PATH": "/usr/bin:/bin"}, timeout=120)


def test_results_are_tsv_when_piped_and_json_with_the_global_json(tmp_path):
    """One results form: a table command piped is tab-separated; ``--json`` (anywhere) makes it JSON."""
    import json

    r = _astro("-w", tmp_path, "dre", "simulate", "-n", 1, "--size", 256, "--n-galaxies", 1, "--n-stars", 1)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[1] == "tile\tresult"
    r = _astro("-w", tmp_path, "dre", "simulate", "-n", 1, "--size", 256, "--n-galaxies", 1, "--n-stars", 1, "--json")
    assert r.returncode == 0, r.stderr
    assert [row["tile"] for row in json.loads(r.stdout)["tiles"]] == ["sim_000"]  # dre: {"tiles": [...]}
    r = _astro("--json", "plugins")
    assert r.returncode == 0, r.stderr
    assert {p["name"] for p in json.loads(r.stdout)} >= {"core", "dre", "lens", "plato", "ztf"}
    assert next(p for p in json.loads(r.stdout) if p["name"] == "core")["distribution"] == "astrotool-core"
    # a record (one dict) piped: key/value lines, nested values as compact JSON in their cell
    r = _astro("-q", "-w", tmp_path, "plato", "simulate", "-n", 2, "--days", 1, "--name", "p")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "key\tvalue" and all(line.count("\t") == 1 for line in lines), r.stdout
    assert "curves\t2" in lines, r.stdout


def test_a_record_is_a_table_on_a_terminal(tmp_path):
    """A command's record (a dict) is a key/value table on a terminal, whole paths and all, not raw JSON."""
    import os
    import pty

    pid, fd = pty.fork()
    if pid == 0:  # the child: astro with stdout on the terminal
        os.environ.update({"ASTRO_CONFIG": "/dev/null", "COLUMNS": "100", "TERM": "xterm"})
        os.execv(sys.executable, [sys.executable, "-m", "astrotool", "-q", "-w", str(tmp_path), "plato", "simulate",
                                  "-n", "2", "--days", "1"])
    chunks = []
    while True:
        try:
            data = os.read(fd, 4096)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    _, status = os.waitpid(pid, 0)
    text = b"".join(chunks).decode(errors="replace")
    assert os.waitstatus_to_exitcode(status) == 0, text
    assert "samples_per_curve" in text and "│" in text and '"samples_per_curve"' not in text, text
    assert "sim_labels.parquet" in "".join(text.split()).replace("│", ""), text  # folded, not cut with …


def test_the_shell_completes_a_choice():
    env = {"ASTRO_CONFIG": "/dev/null", "PATH": "/usr/bin:/bin", "_ASTRO_COMPLETE": "complete_bash",
           "COMP_WORDS": "astro lens kappa baseline --method ", "COMP_CWORD": "5"}
    r = subprocess.run([sys.executable, "-m", "astrotool"], capture_output=True, text=True, env=env, timeout=60)
    assert r.stdout.split() == ["ks", "wiener", "zero", "mean"], (r.stdout, r.stderr)


def test_dre_run_passes_its_stages_options_on(tmp_path):
    """``dre run`` takes the options of detect, psf, cuts and fit and sets their keys (recorded in run.json)."""
    import json

    r = _astro("-q", "-w", tmp_path, "dre", "run", "--detect-engine", "photutils", "--psf-engine", "photutils",
               "--compression", "none", "--margin", 10, "--statistic", "dre", "--batch-size", 5, "--gain", "cps")
    assert r.returncode == 2 and "no tiles" in r.stderr, r.stderr  # the options parse; the empty workspace stops it
    (record,) = tmp_path.glob("runs/*-dre-run/run.json")
    dre = json.loads(record.read_text())["config"]["dre"]
    assert (dre["detect"]["engine"], dre["psf"]["engine"]) == ("photutils", "photutils")
    assert (dre["cuts"]["compression"], dre["cuts"]["margin"]) == ("none", 10.0)
    assert (dre["fit"]["statistic"], dre["fit"]["batch_size"]) == ("dre", 5)
    assert dre["detect"]["gain"] == dre["fit"]["gain"] == "cps"


@pytest.fixture
def sloppy(monkeypatch, toy):
    """A fresh registry with the core and ``sloppyplug`` (a wrong doctor check, failing demo steps)."""
    import importlib

    from astrotool.plugins import Registry

    monkeypatch.syspath_prepend(str(toy[0]))
    set_registry(Registry(entry_points=False, extra=[importlib.import_module("sloppyplug")]))
    yield
    set_registry(None)


def test_demo_step_raising_is_reported_and_the_others_run(sloppy, tmp_path, capsys):
    from astrotool.cli import main

    assert main(["demo", str(tmp_path / "d")]) == 1
    captured = capsys.readouterr()
    assert "FAILED: ZeroDivisionError: division by zero in the demo" in captured.out
    assert "[after]" in captured.out and "after ran" in captured.out
    assert "  one whole line\n" in captured.out  # a str is one line, not one character a line
    assert "a command's" not in captured.out and "t1" not in captured.out   # the summary alone on stdout
    assert "demo steps failed: crash" in captured.err
    import json

    (record,) = (tmp_path / "d" / "runs").glob("*-demo/run.json")   # what a step wrote, unrecorded, is listed
    assert str(tmp_path / "d" / "after" / "written.txt") in json.loads(record.read_text())["outputs"]


def test_demo_only_takes_a_comma_list(sloppy, tmp_path, capsys):
    from astrotool.cli import main

    assert main(["--json", "demo", str(tmp_path / "d"), "--only", "text,after"]) == 0
    import json

    out = json.loads(capsys.readouterr().out)   # one JSON document: the step's commands print nothing
    assert [s["name"] for s in out["steps"]] == ["text", "after"]
    assert out["steps"][0]["lines"] == ["one whole line"]


def test_an_overwrite_demo_has_one_run_folder_in_its_workspace(sloppy, tmp_path, capsys, monkeypatch):
    """`-w D --overwrite demo` on a used D left an empty runs/ folder (listed by status as a run that never
    ended) beside the demo's; `--overwrite demo DIR` left one in the current folder."""
    import json

    from astrotool.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "old.txt").write_text("x")
    assert main(["-w", str(tmp_path / "d"), "--overwrite", "demo", "--only", "text"]) == 0
    assert main(["--overwrite", "demo", str(tmp_path / "d"), "--only", "text"]) == 0
    capsys.readouterr()
    assert [p.name for p in tmp_path.iterdir() if p.name != "d"] == []   # no runs/ in the current folder
    assert all((r / "run.json").is_file() for r in (tmp_path / "d" / "runs").iterdir() if not r.name.startswith("."))
    assert main(["-w", str(tmp_path / "d"), "--json", "status"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["runs"] == 2 and s["recent_runs_not_ok"] == [], s


def test_demo_runs_in_astro_workspace_as_every_command_does(sloppy, tmp_path, capsys, monkeypatch):
    """`ASTRO_WORKSPACE=DIR astro demo` ran in a new ./astro-demo-<utc> beside the current folder."""
    from astrotool.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ASTRO_WORKSPACE", str(tmp_path / "env"))
    assert main(["--json", "demo", "--only", "text"]) == 0
    import json

    assert json.loads(capsys.readouterr().out)["workspace"] == str(tmp_path / "env")
    assert not list(tmp_path.glob("astro-demo-*"))


def test_doctor_check_returning_the_wrong_type_is_a_failed_check(sloppy, capsys):
    from astrotool.cli import main

    assert main(["--json", "doctor"]) == 0
    import json

    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["sloppy-check"]["ok"] is False and rows["sloppy-check"]["plugin"] == "sloppyplug"
    assert "returned bool, not a CheckResult" in rows["sloppy-check"]["detail"]


@pytest.mark.parametrize("flag", ["--traceback", "-vv"])
def test_demo_step_raising_shows_its_traceback_with_traceback(sloppy, tmp_path, capsys, flag):
    from astrotool.cli import main

    assert main([flag, "demo", str(tmp_path / "d"), "--only", "crash"]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and 'in crash\n    raise ZeroDivisionError' in err, err
    assert main(["demo", str(tmp_path / "e"), "--only", "crash"]) == 1
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize("only", [",", "", " , "])
def test_demo_only_naming_no_step_is_refused(sloppy, tmp_path, capsys, only):
    from astrotool.cli import main

    assert main(["demo", str(tmp_path / "d"), "--only", only]) == 2
    assert "no demo named" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()
