"""Workspace: atomic writes, init/status, run records, resume, interruption."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from astrotool.workspace import atomic_dir, atomic_path, remove_stale_temps, write_text_atomic


def test_atomic_path_renames_on_success(tmp_path):
    out = tmp_path / "sub" / "a.txt"
    with atomic_path(out) as tmp:
        assert tmp.parent == out.parent and tmp.suffix == ".txt" and tmp != out
        tmp.write_text("hello")
        assert not out.exists()
    assert out.read_text() == "hello"
    assert [p.name for p in out.parent.iterdir()] == ["a.txt"]


def test_atomic_path_keeps_old_file_on_error(tmp_path):
    out = write_text_atomic(tmp_path / "a.txt", "old")
    with pytest.raises(RuntimeError):
        with atomic_path(out) as tmp:
            tmp.write_text("half")
            raise RuntimeError("writer crashed")
    assert out.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_atomic_dir_swaps_in_the_new_folder_and_keeps_the_old_on_error(tmp_path):
    out = tmp_path / "sets" / "mini"
    with atomic_dir(out) as tmp:
        (tmp / "a.txt").write_text("first")
    assert (out / "a.txt").read_text() == "first"
    with pytest.raises(RuntimeError), atomic_dir(out) as tmp:
        (tmp / "a.txt").write_text("second")
        raise RuntimeError("writer failed")
    assert (out / "a.txt").read_text() == "first"      # the old set stays whole
    with atomic_dir(out) as tmp:
        (tmp / "b.txt").write_text("third")
    assert sorted(p.name for p in out.iterdir()) == ["b.txt"]   # replaced, not merged
    assert sorted(p.name for p in out.parent.iterdir()) == ["mini"]   # no temporary or set-aside folder left


def test_a_folder_set_aside_by_a_killed_swap_comes_back(tmp_path):
    """A writer killed between setting the old folder aside and renaming the new one in
    leaves the only copy hidden: the next write to that folder puts it back."""
    code = ("import os, sys\n"
            "from pathlib import Path\n"
            "from astrotool.workspace import atomic_dir\n"
            "out = Path(sys.argv[1])\n"
            "real = os.rename\n"
            "def rename(a, b):\n"
            "    real(a, b)\n"
            "    if '.replaced-' in str(b): os._exit(9)   # killed right after setting the old set aside\n"
            "os.rename = rename\n"
            "with atomic_dir(out) as tmp:\n"
            "    (tmp / 'new.txt').write_text('new')\n")
    out = tmp_path / "mini"
    out.mkdir()
    (out / "old.txt").write_text("old")
    proc = subprocess.run([sys.executable, "-c", code, str(out)])
    assert proc.returncode == 9 and not out.exists()
    hidden = sorted(p.name for p in tmp_path.iterdir())
    assert any(".replaced-" in n for n in hidden) and any(".partial-" in n for n in hidden)
    remove_stale_temps(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mini"]
    assert (out / "old.txt").read_text() == "old"


def test_a_stop_right_after_the_swap_leaves_no_set_aside_folder(tmp_path, monkeypatch):
    """Ctrl-C just after the new folder is renamed in: the new one stays, the old one is not left behind
    under a hidden name (until some later write swept it)."""
    import astrotool.workspace as ws

    real = os.rename

    def rename(a, b):
        real(a, b)
        if Path(b) == out:
            raise KeyboardInterrupt

    out = tmp_path / "mini"
    out.mkdir()
    (out / "old.txt").write_text("old")
    monkeypatch.setattr(ws.os, "rename", rename)
    with pytest.raises(KeyboardInterrupt), atomic_dir(out) as tmp:
        (tmp / "new.txt").write_text("new")
    monkeypatch.setattr(ws.os, "rename", real)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mini"]
    assert sorted(p.name for p in out.iterdir()) == ["new.txt"]


def test_an_old_folder_half_deleted_by_a_killed_writer_is_never_put_back(tmp_path):
    """Killed while deleting the replaced folder: what is left of it must not pass for a whole set."""
    code = ("import os, shutil, sys\n"
            "from pathlib import Path\n"
            "from astrotool.workspace import atomic_dir\n"
            "real = shutil.rmtree\n"
            "def rmtree(p, *a, **k):\n"
            "    files = sorted(Path(p).iterdir()) if Path(p).is_dir() else []\n"
            "    if any(f.name.startswith('old') for f in files):   # the old set, being deleted\n"
            "        files[0].unlink()\n"
            "        os._exit(9)\n"
            "    return real(p, *a, **k)\n"
            "shutil.rmtree = rmtree\n"
            "with atomic_dir(Path(sys.argv[1])) as tmp:\n"
            "    (tmp / 'new.txt').write_text('new')\n")
    out = tmp_path / "mini"
    out.mkdir()
    for i in range(3):
        (out / f"old{i}.txt").write_text("old")
    assert subprocess.run([sys.executable, "-c", code, str(out)]).returncode == 9
    assert sorted(p.name for p in out.iterdir()) == ["new.txt"]   # the new set is in place
    import shutil

    shutil.rmtree(out)          # the user removes it: a sweep must not bring back the half-deleted old one
    remove_stale_temps(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_init_and_status(astro, toy, tmp_path):
    ws = tmp_path / "ws"
    r = astro("-w", ws, "init", pythonpath=toy)
    assert r.returncode == 0, r.stderr
    assert (ws / "astro.toml").is_file() and (ws / "runs").is_dir()
    (tmp_path / "had" / "runs").mkdir(parents=True)   # runs/ is counted as init's when init makes it
    had = astro("-w", tmp_path / "had", "init", pythonpath=toy)
    counts = [int(x.stderr.split("created ")[1].split()[0]) for x in (r, had)]
    assert counts[0] == counts[1] + 1, (r.stderr, had.stderr)
    for stage in ["dre/tiles", "dre/cuts", "toy/out", "toy/logs", "ztf/alerts", "plato/raw"]:
        assert (ws / stage).is_dir(), stage
    (ws / "toy" / "out" / "x.json").write_text("{}")
    (ws / "toy" / "out" / ".x.parts").mkdir()   # a hidden folder's files (parts, caches) are no outputs
    (ws / "toy" / "out" / ".x.parts" / "item0.npz").write_text("")
    r = astro("-w", ws, "status", "--json", pythonpath=toy)
    s = json.loads(r.stdout)
    assert s["initialised"] and s["stages"]["toy"] == {"out": 1, "logs": 0}
    f = tmp_path / "a_file"
    f.write_text("x")
    r = astro("-w", f, "init", pythonpath=toy)           # was a FileExistsError, exit 1
    assert r.returncode == 2 and f"{f}: exists and is not a folder" in r.stderr and "Traceback" not in r.stderr
    for args in (["init", f], ["-w", f, "status"],  # the folder as init's argument; status read it as empty
                 ["init", f / "sub"], ["demo", f, "--only", "toy"]):  # NotADirectoryError, exit 1
        r = astro(*args, pythonpath=toy)
        assert r.returncode == 2 and f"{f}: exists and is not a folder" in r.stderr, (args, r.stderr)
    r = astro("demo", tmp_path / "d", "--only", "nosuch", pythonpath=toy)
    assert r.returncode == 2 and "--only nosuch: no such demo (known: " in r.stderr, r.stderr


def test_run_record_lists_the_files_written(astro, toy, tmp_path):
    r = astro("-w", tmp_path, "--json", "toy", "run", "--count", "4", "--slow", "0.1", pythonpath=toy)
    assert r.returncode == 0, r.stderr
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1 and runs[0].name.endswith("-toy-run")
    rec = json.loads((runs[0] / "run.json").read_text())
    assert rec["status"] == "ok" and rec["exit_code"] == 0
    assert rec["argv"][:3] == ["astro", "-w", str(tmp_path)]
    assert rec["config"]["toy"]["count"] == 4 and rec["config"]["core"]["executor"] == "serial"
    assert rec["versions"]["toyplug"] == "1.2.3" and "python" in rec["versions"]
    # the science libraries whether or not this process imported them (-j N and Dask import them in workers)
    assert {"numpy", "scipy", "astropy", "h5py", "pyarrow"} <= set(rec["versions"]), rec["versions"]
    assert rec["duration_s"] >= 0.4  # timed from the start, not the first record
    assert rec["outputs"] == [str(tmp_path / f"toy/out/item_{i:03d}.json") for i in range(4)]
    assert all(Path(p).is_file() for p in rec["outputs"])
    assert runs[0].name.startswith(rec["started_utc"][:19].replace("-", "").replace(":", ""))
    assert json.loads(r.stdout)["written"] == 4


def test_finished_outputs_are_skipped_and_overwrite_recomputes(astro, toy, tmp_path):
    r = astro("-w", tmp_path, "--json", "toy", "run", "--count", "3", pythonpath=toy)
    assert r.returncode == 0, r.stderr
    files = [tmp_path / f"toy/out/item_{i:03d}.json" for i in range(3)]
    before = {f: (f.stat().st_mtime_ns, f.read_text()) for f in files}
    (tmp_path / "toy/out/item_001.json").unlink()  # as if the run had stopped before item 1
    # the re-run writes only the missing output; the finished ones are not touched
    r = astro("-w", tmp_path, "--json", "toy", "run", "--count", "3", pythonpath=toy)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert (got["done"], got["written"], got["skipped"]) == (3, 1, 2)
    for f in (files[0], files[2]):
        assert (f.stat().st_mtime_ns, f.read_text()) == before[f], f
    assert files[1].read_text() == before[files[1]][1]  # the same seed gives the same file
    # --overwrite recomputes every output (a new seed gives new draws)
    r = astro("-w", tmp_path, "--json", "toy", "run", "--count", "3", "--overwrite", "--seed", "9", pythonpath=toy)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["written"] == 3
    for f in files:
        assert f.stat().st_mtime_ns != before[f][0] and f.read_text() != before[f][1], f


def _default_sigint():
    """A background job (``make test &``) starts with SIGINT ignored, and Python then keeps
    ignoring it; the command under test must see SIGINT as a terminal would deliver it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
@pytest.mark.parametrize("executor", ["serial", "process"])
def test_interrupt_leaves_no_partial_file(toy, tmp_path, sig, code, executor):
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("ASTRO_")}
    env.update(ASTRO_CONFIG=os.devnull, PYTHONPATH=str(toy[0]))
    p = subprocess.Popen([sys.executable, "-m", "astrotool", "-w", str(tmp_path), "--executor", executor,
                          "-j", "2", "toy", "run", "--count", "6", "--slow", "1.5"],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True, preexec_fn=_default_sigint)
    out = tmp_path / "toy" / "out"
    deadline = time.time() + 60
    while time.time() < deadline and not (out.is_dir() and any(p.name.startswith(".") for p in out.iterdir())):
        time.sleep(0.05)
    assert out.is_dir(), "the command never started writing"
    os.killpg(p.pid, sig) if sig == signal.SIGINT else p.send_signal(sig)
    _, err = p.communicate(timeout=60)
    assert p.returncode == code, err
    leftovers = [f.name for f in out.iterdir() if f.name.startswith(".")]
    assert leftovers == []
    finished = sorted(out.iterdir())
    assert len(finished) < 6, "the command finished before it was interrupted"
    for f in finished:
        assert set(json.loads(f.read_text())) == {"n", "sq", "draw"}  # every file that exists is complete
    rec = json.loads(next((tmp_path / "runs").iterdir()).joinpath("run.json").read_text())
    assert rec["status"] in ("terminated", "interrupted")
    assert rec["exit_code"] == code
    # re-running the same command resumes: it writes only what was missing
    r = subprocess.run([sys.executable, "-m", "astrotool", "-w", str(tmp_path), "--json", "toy", "run", "--count", "6"],
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["skipped"] == len(finished) and json.loads(r.stdout)["written"] == 6 - len(finished)
    assert [json.loads(f.read_text())["sq"] for f in sorted(out.iterdir())] == [0, 1, 4, 9, 16, 25]


def test_status_shows_how_the_last_run_ended(astro, toy, tmp_path):
    """`last: <run>` said nothing of a run that was terminated; its run.json does."""
    last = tmp_path / "runs" / "20261201T000000Z-plato-simulate"
    last.mkdir(parents=True)
    (last / "run.json").write_text(json.dumps({"status": "terminated", "exit_code": 143}))
    (tmp_path / "runs" / ".overwrite").mkdir()   # where a stopped --overwrite keeps its start: not a run
    r = astro("-w", tmp_path, "status", pythonpath=toy)
    assert r.returncode == 0, r.stderr
    assert "runs: 1 (last: 20261201T000000Z-plato-simulate (terminated, exit 143))" in r.stdout, r.stdout
    s = json.loads(astro("-w", tmp_path, "status", "--json", pythonpath=toy).stdout)
    assert (s["last_run_status"], s["last_run_exit_code"]) == ("terminated", 143)
    (last / "run.json").write_text('{"status": "termin')  # cut short: not taken for a run still going
    r = astro("-w", tmp_path, "status", pythonpath=toy)
    assert r.returncode == 0 and "(run.json unreadable)" in r.stdout, r.stdout + r.stderr
    s = json.loads(astro("-w", tmp_path, "status", "--json", pythonpath=toy).stdout)
    assert (s["last_run_status"], s["last_run_exit_code"]) == ("?", None)
    (last / "run.json").write_text(json.dumps({"status": ["edited", "by hand"], "exit_code": 0}))
    r = astro("-w", tmp_path, "status", pythonpath=toy)
    assert r.returncode == 0 and "(['edited', 'by hand'], exit 0)" in r.stdout, r.stdout + r.stderr


def test_status_names_the_recent_runs_that_did_not_end_ok(astro, toy, tmp_path):
    """An array job's failed shards are named by status, not found by opening each run.json; a run without
    run.json (still going, or killed outright: out of memory, SIGKILL at the time limit) is one of them."""
    outcomes = {"a-ok": ("ok", 0), "b-failed": ("failed items", 1), "c-ok": ("ok", 0), "d-stopped": ("terminated", 143)}
    for name, (status, code) in outcomes.items():
        (tmp_path / "runs" / f"20261201T00000{len(name)}Z-{name}").mkdir(parents=True)
    for d in sorted((tmp_path / "runs").iterdir()):
        status, code = outcomes[d.name.split("Z-")[1]]
        (d / "run.json").write_text(json.dumps({"status": status, "exit_code": code}))
    (tmp_path / "runs" / "20261201T000009Z-e-running").mkdir()
    s = json.loads(astro("-w", tmp_path, "status", "--json", pythonpath=toy).stdout)
    assert [(x["run"].split("Z-")[1], x["status"], x["exit_code"]) for x in s["recent_runs_not_ok"]] == \
        [("b-failed", "failed items", 1), ("d-stopped", "terminated", 143), ("e-running", "no run.json", None)]
    r = astro("-w", tmp_path, "status", pythonpath=toy)
    assert "# 3 of the last 5 runs did not end ok:" in r.stdout and "b-failed (failed items, exit 1)" in r.stdout
    assert "e-running (no run.json: running, or killed)" in r.stdout


def test_status_from_a_subfolder_of_a_workspace_names_the_workspace(astro, toy, tmp_path):
    assert astro("init", tmp_path / "ws", pythonpath=toy).returncode == 0
    r = astro("status", pythonpath=toy, cwd=tmp_path / "ws" / "runs")
    assert r.returncode == 0 and f"give `-w {tmp_path / 'ws'}` to use that one" in r.stderr, r.stderr


def test_empty_workspace_is_refused_and_a_missing_one_named_when_created(astro, toy, tmp_path):
    """`-w ""` or an empty $ASTRO_WORKSPACE silently became the current folder; a -w folder that did
    not exist was created without a word (a typo went unseen)."""
    for args, env, name in [(["-w", ""], {}, "-w/--workspace"), ([], {"ASTRO_WORKSPACE": ""}, "$ASTRO_WORKSPACE")]:
        r = astro(*args, "toy", "run", "--count", "1", cwd=tmp_path, env=env, pythonpath=toy)
        assert r.returncode == 2 and f" ERROR   {name}: empty; give a workspace folder" in r.stderr, r.stderr
        assert list(tmp_path.iterdir()) == []  # nothing written in the current folder
    new = tmp_path / "new" / "ws"
    r = astro("-w", new, "toy", "run", "--count", "1", pythonpath=toy)
    assert r.returncode == 0, r.stderr
    assert f"workspace {new} did not exist: created it" in r.stderr and (new / "runs").is_dir()
    r = astro("-w", new, "toy", "run", "--count", "1", pythonpath=toy)
    assert r.returncode == 0 and "did not exist" not in r.stderr, r.stderr
    r = astro("-w", tmp_path / "other", "init", pythonpath=toy)
    assert r.returncode == 0 and "did not exist" not in r.stderr, r.stderr


def test_a_command_run_in_a_workspaces_subfolder_says_where_its_outputs_go(astro, toy, tmp_path):
    """Run from a workspace's subfolder (`cd ws/dre`), a command made a second workspace there, without the
    first one's astro.toml, and said nothing."""
    ws = tmp_path / "ws"
    assert astro("-w", ws, "init", pythonpath=toy).returncode == 0
    (ws / "sub").mkdir()
    r = astro("toy", "run", "--count", "1", cwd=ws / "sub", pythonpath=toy)
    assert r.returncode == 0, r.stderr
    assert (f"the workspace is the current folder {ws / 'sub'}, inside the workspace {ws}: its outputs go here and "
            f"{ws / 'astro.toml'} is not read; give `-w {ws}` to use that one") in " ".join(r.stderr.split())
    for args, cwd in ((["-w", ws / "sub"], tmp_path), ([], ws)):     # asked for, or the workspace itself: no word
        r = astro(*args, "toy", "run", "--count", "1", cwd=cwd, pythonpath=toy)
        assert r.returncode == 0 and "inside the workspace" not in r.stderr, r.stderr
    bare = tmp_path / "bare"   # made by a first command, without `astro init`: no astro.toml, its runs/ tell it
    assert astro("-w", bare, "toy", "run", "--count", "1", pythonpath=toy).returncode == 0
    (bare / "sub").mkdir()
    r = astro("toy", "run", "--count", "1", cwd=bare / "sub", pythonpath=toy)
    assert r.returncode == 0, r.stderr
    assert (f"the workspace is the current folder {bare / 'sub'}, inside the workspace {bare}: its outputs go "
            f"here; give `-w {bare}` to use that one") in " ".join(r.stderr.split())


def test_whole_outputs_are_the_finished_visible_files_of_an_item(tmp_path):
    """What a stopped item's record lists: files and folders it finished, a folder as its files; not hidden
    records, not files of a folder it had not swapped in yet, not what is gone since."""
    from astrotool.workspace import atomic_dir, collect_finished, whole_outputs, write_text_atomic

    with collect_finished() as outer:
        write_text_atomic(tmp_path / "a.txt", "a")
        with collect_finished() as inner:
            write_text_atomic(tmp_path / ".a.made_with.json", "{}")
            with atomic_dir(tmp_path / "set") as tmp:
                write_text_atomic(tmp / "part_0.npy", "x")      # inside a folder being written: not an output
                write_text_atomic(tmp / ".done", "")
        write_text_atomic(tmp_path / "gone.txt", "g")
    (tmp_path / "gone.txt").unlink()
    assert [p.name for p, _ in inner] == [".a.made_with.json", "part_0.npy", ".done", "set"]
    assert [p.name for p, _ in outer] == ["a.txt", ".a.made_with.json", "part_0.npy", ".done", "set", "gone.txt"]
    assert whole_outputs(outer) == [tmp_path / "a.txt", tmp_path / "set" / "part_0.npy"]
    write_text_atomic(tmp_path / "b.txt", "b")   # outside any collection: not collected
    assert [p.name for p, _ in outer][-1] == "gone.txt"


@pytest.mark.parametrize("when", ["after", "before"])
def test_a_stop_at_the_rename_lists_the_file_only_once_it_is_in_place(tmp_path, monkeypatch, when):
    """A stop (here a KeyboardInterrupt) just after a finished file's rename: the file is whole and listed.
    Just before it: the earlier file stays at the path, and is not listed as this item's."""
    import os

    from astrotool.workspace import collect_finished, whole_outputs, write_text_atomic

    real = os.replace

    def replace(src, dst):
        if when == "after":
            real(src, dst)
        raise KeyboardInterrupt("terminated")

    (tmp_path / "a.txt").write_text("an earlier run's")
    monkeypatch.setattr(os, "replace", replace)
    with collect_finished() as finished, pytest.raises(KeyboardInterrupt):
        write_text_atomic(tmp_path / "a.txt", "new")
    assert whole_outputs(finished) == ([tmp_path / "a.txt"] if when == "after" else [])
    assert (tmp_path / "a.txt").read_text() == ("new" if when == "after" else "an earlier run's")


def test_init_dir_records_its_run_in_that_workspace(astro, tmp_path):
    """`astro init DIR` wrote no run record (`astro -w DIR init` did): `astro status` then showed no run."""
    import json

    r = astro("init", tmp_path / "w1", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    [record] = [json.loads(p.read_text()) for p in (tmp_path / "w1" / "runs").glob("*/run.json")]
    assert record["status"] == "ok" and record["workspace"] == str(tmp_path / "w1")
    assert not (tmp_path / "runs").exists() and not (tmp_path / "astro.toml").exists()   # not the current folder
    r = astro("-w", tmp_path / "other", "init", tmp_path / "w2", cwd=tmp_path)   # DIR wins over -w, as said
    assert r.returncode == 0 and "is not used" in r.stderr, r.stderr
    assert list((tmp_path / "w2" / "runs").glob("*/run.json")) and not (tmp_path / "other").exists()


@pytest.mark.parametrize("args", [("init", "/proc/astro-no-such/ws"), ("-w", "/proc/astro-no-such/ws", "plato", "simulate", "-n", "1")])
def test_a_workspace_that_cannot_be_created_is_a_usage_error(astro, tmp_path, args):
    """`astro init /proc/foo` ended with `FileNotFoundError` (exit 1) and a plain-text run.json warning, after
    `-w` had logged "did not exist: created it"."""
    r = astro("--log-format", "json", *args, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    import json

    lines = [json.loads(line) for line in r.stderr.splitlines()]   # JSON lines only
    assert [x["message"] for x in lines] == ["/proc/astro-no-such/ws: cannot create the workspace folder: "
                                             "No such file or directory"]


def test_a_suggested_command_names_the_workspace_so_that_it_runs_as_pasted(tmp_path, monkeypatch):
    """Hints said `astro ztf export` after `astro -w work ...`: pasted, it ran in the wrong folder."""
    from astrotool.context import Context, astro_command, set_current

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ASTRO_WORKSPACE", raising=False)
    try:
        set_current(Context.create(tmp_path / "my work"))
        assert astro_command("ztf", "export", "--model", "m") == "astro -w 'my work' ztf export --model m"
        set_current(Context.create(tmp_path))
        assert astro_command("plato", "train") == "astro plato train"
        (tmp_path / "sub").mkdir()
        monkeypatch.chdir(tmp_path / "sub")   # the workspace outside the current folder: its full path
        assert astro_command("plato", "train") == f"astro -w {tmp_path} plato train"
    finally:
        set_current(None)


def test_a_suggested_command_carries_the_workspace_and_the_settings(tmp_path, monkeypatch):
    """Hints named the workspace but not --cfg/--set/--seed: pasted from a job's log, `astro -w W dre models`
    built the default grid's cube, not the one the job's --cfg asked for."""
    from astrotool.context import Context, GlobalOptions, astro_command, set_current

    monkeypatch.chdir(tmp_path)
    try:
        set_current(Context(GlobalOptions(workspace=str(tmp_path / "ws"), cfg=["small.toml", "b c.toml"],
                                          set=["dre.models.nindex=1"], seed=7)))
        assert astro_command("dre", "models") == ("astro -w ws --cfg small.toml --cfg 'b c.toml' --set "
                                                  "dre.models.nindex=1 --seed 7 dre models")
        set_current(Context(GlobalOptions()))
        assert astro_command("dre", "models") == "astro dre models"
    finally:
        set_current(None)
