"""Batch runs: workers die with their parent, SIGTERM/Ctrl-C stop them, usable cores, --shard auto, run.json."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from astrotool.errors import AstroError
from astrotool.executors import parse_shard
from astrotool import executors

HERE = Path(__file__).parent


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for its reaper counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def _children(pid: int) -> set[int]:
    """The pids whose parent is ``pid``."""
    out = set()
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.add(int(d.name))
            except (OSError, IndexError, ValueError):
                pass
    return out


def _wait_gone(pids, seconds: float = 5.0) -> set[int]:
    deadline = time.time() + seconds
    while time.time() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.05)
    return {p for p in pids if _alive(p)}


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ASTRO_", "SLURM_"))}
    env.update(ASTRO_CONFIG=os.devnull, PYTHONPATH=os.pathsep.join([str(HERE), str(HERE / "toyplugins")]), **extra)
    return env


def _default_sigint():
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_workers_die_with_a_killed_parent(tmp_path):
    """kill -9 of the parent: its process-pool workers stop too, within seconds, mid-item."""
    script = ("import sys; from astrotool.executors import ExecutorOptions, run_items; from _batch_items import nap; "
              "run_items(nap, [(sys.argv[1], 60.0), (sys.argv[1], 60.01), (sys.argv[1], 60.02)], "
              "options=ExecutorOptions('process', jobs=2))")
    p = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], env=_env())
    deadline = time.time() + 30
    while time.time() < deadline and len(list(tmp_path.iterdir())) < 2:
        time.sleep(0.05)
    workers = {int(f.name) for f in tmp_path.iterdir()}
    try:
        assert len(workers) == 2, "the workers never started"
        p.kill()
        p.wait()
        assert _wait_gone(workers) == set(), "workers outlived their killed parent"
    finally:
        for pid in workers:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def _start_toy(ws: Path, *extra):
    """``astro toy run`` of 6 slow items on 2 process workers; returns it once both workers write."""
    p = subprocess.Popen([sys.executable, "-m", "astrotool", "-w", str(ws), "--executor", "process", "-j", "2",
                          "toy", "run", "--count", "6", "--slow", "60", *extra],
                         env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True, preexec_fn=_default_sigint)
    out = ws / "toy" / "out"
    deadline = time.time() + 60
    while time.time() < deadline and not (out.is_dir() and sum(f.name.startswith(".") for f in out.iterdir()) >= 2):
        time.sleep(0.02)
    return p, _children(p.pid)


@pytest.mark.parametrize("sig, code, status", [(signal.SIGTERM, 143, "terminated"),
                                               (signal.SIGINT, 130, "interrupted")])
def test_signal_stops_the_workers_at_once(tmp_path, sig, code, status):
    """SIGTERM (Slurm, scancel) or Ctrl-C during 60-s items: the workers are stopped, not waited for;
    their partial files are removed; the exit code and run.json say why."""
    p, workers = _start_toy(tmp_path)
    try:
        assert len(workers) >= 2, "the workers never started"
        os.killpg(p.pid, sig) if sig == signal.SIGINT else p.send_signal(sig)
        _, err = p.communicate(timeout=20)  # today's code waited for the 60-s items
        assert p.returncode == code, err
        assert "Exception ignored" not in err and "Traceback" not in err, err
        assert _wait_gone(workers) == set()
        assert [f.name for f in (tmp_path / "toy/out").iterdir()] == []
        rec = json.loads(next((tmp_path / "runs").iterdir()).joinpath("run.json").read_text())
        assert (rec["status"], rec["exit_code"]) == (status, code)
        assert rec["error"].startswith(f"{status}: unfinished outputs removed, finished ones kept; re-run the same "
                                       "command to resume")
    finally:
        for pid in workers | {p.pid}:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_a_run_killed_outright_is_listed_by_status(tmp_path):
    """kill -9 (out of memory, the SIGKILL after Slurm's time limit) leaves no run.json: the run's folder is
    made when the command starts, so `astro status` names it (it never showed such a run)."""
    p, workers = _start_toy(tmp_path)
    try:
        assert len(workers) >= 2, "the workers never started"
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate(timeout=20)
    finally:
        for pid in workers | {p.pid}:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
    run, = (tmp_path / "runs").iterdir()
    assert run.name.endswith("-toy-run") and not (run / "run.json").exists()
    r = subprocess.run([sys.executable, "-m", "astrotool", "-w", str(tmp_path), "--json", "status"], env=_env(),
                       capture_output=True, text=True)
    s = json.loads(r.stdout)
    assert s["last_run"] == run.name and s["last_run_status"] is None, r.stdout
    assert s["recent_runs_not_ok"] == [{"run": run.name, "status": "no run.json", "exit_code": None}]


@pytest.mark.parametrize("first", ["record", "workspace"])
def test_a_command_has_one_run_folder_whatever_it_uses_first(tmp_path, first):
    """The folder made at the workspace's first use is the one run.json goes to (the record, used first, made a
    second), and a library context (no command line) makes none before it finishes."""
    from astrotool.context import Context

    ctx = Context.create(tmp_path, command="toy run")
    ctx.folder_at_start = True
    getattr(ctx, first)
    made, = (tmp_path / "runs").iterdir()
    assert ctx.finish("ok", 0) == made / "run.json"
    assert [p.name for p in (tmp_path / "runs").iterdir()] == [made.name]
    lib = Context.create(tmp_path / "lib", command="toy run")
    lib.workspace
    assert not (tmp_path / "lib" / "runs").exists()


@pytest.mark.long
def test_sigterm_twenty_times_always_exits_143(tmp_path):
    """SIGTERM at varying moments of a process-pool run is never swallowed: 143 every time."""
    codes, problems = [], []
    for k in range(20):
        ws = tmp_path / f"w{k}"
        p = subprocess.Popen([sys.executable, "-m", "astrotool", "-w", str(ws), "--executor", "process", "-j", "2",
                              "toy", "run", "--count", "8", "--slow", "0.3"],
                             env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True)
        out = ws / "toy" / "out"
        deadline = time.time() + 60
        while time.time() < deadline and not (out.is_dir() and any(out.iterdir())):
            time.sleep(0.01)
        time.sleep(0.02 * (k % 10))  # before, during and between items; 3 rounds of items are still to come
        workers = _children(p.pid)
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=30)
        codes.append(p.returncode)
        if "Exception ignored" in err or "Traceback" in err:
            problems.append(err)
        problems += [f"worker {w} survived" for w in _wait_gone(workers)]
    assert codes == [143] * 20 and problems == []


def test_sigterm_swallowed_by_a_finaliser_still_stops_the_run(tmp_path):
    """A SIGTERM whose exception lands in a ``__del__`` ("Exception ignored ... KeyboardInterrupt")
    used to be lost: the run went on to the end and exited 0. It stops the run all the same."""
    out = tmp_path / "toy" / "out"
    p = subprocess.Popen([sys.executable, str(HERE / "_swallowed.py"), str(out), "-w", str(tmp_path),
                          "--executor", "process", "-j", "2", "toy", "run", "--count", "10", "--slow", "0.5"],
                         env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
    _, err = p.communicate(timeout=60)
    assert Path(f"{out}.hazard").exists()  # the hazard happened
    assert "Exception ignored" not in err  # the swallowed stop is not printed as an error: it is raised again
    assert p.returncode == 143, err
    assert len(list(out.iterdir())) < 10 and not [f for f in out.iterdir() if f.name.startswith(".")]
    rec = json.loads(next((tmp_path / "runs").iterdir()).joinpath("run.json").read_text())
    assert (rec["status"], rec["exit_code"]) == ("terminated", 143) and rec["error"].startswith("terminated: ")


def test_a_swallowed_stop_interrupts_the_running_item_not_the_next_boundary(tmp_path):
    """One long item (a whole tile in dre): the stop swallowed by a finaliser used to wait for the item
    to finish (Ctrl-C during `dre run` of one tile ran on to the end); it stops the item."""
    out = tmp_path / "toy" / "out"
    p = subprocess.Popen([sys.executable, str(HERE / "_swallowed.py"), str(out), "-w", str(tmp_path),
                          "toy", "run", "--count", "3", "--slow", "4"],
                         env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
    _, err = p.communicate(timeout=60)
    assert Path(f"{out}.hazard").exists() and p.returncode == 143, err
    # the hazard lands while item 0 is written (its temporary file is there): item 0 stops, unfinished
    assert list(out.iterdir()) == []


def test_a_resent_stop_never_outlives_its_command(tmp_path):
    """The swallowed stop's resend was never cancelled: a command ending within its delay was followed by
    a SIGTERM that killed the process, or stopped the next command run in the same process."""
    code = ("import signal, sys, time\n"
            "import _swallowed\n"
            "from astrotool import cli, executors\n"
            "prev = cli._catch_stop_signals()\n"
            "executors.request_stop(signal.SIGTERM)  # its KeyboardInterrupt lands in a __del__ ...\n"
            "executors.stop_swallowed()              # ... is swallowed, and a resend is scheduled\n"
            "executors.defer_stop()                  # the command finishes at once (main's finally)\n"
            "for s, h in prev.items(): signal.signal(s, h)\n"
            "executors.reset_stop()\n"
            "time.sleep(0.3)\n"
            "print('survived', flush=True)\n"
            "_swallowed.OUT = sys.argv[1] + '/a/toy/out'\n"
            "sys.setprofile(_swallowed._hook)\n"
            "first = cli.main(['-w', sys.argv[1] + '/a', 'toy', 'run', '--count', '1'])\n"
            "second = cli.main(['-w', sys.argv[1] + '/b', 'toy', 'run', '--count', '3', '--slow', '0.1'])\n"
            "print('codes', first, second, flush=True)\n")
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path)], env=_env(), capture_output=True, text=True,
                       timeout=60)
    assert "survived" in r.stdout and r.returncode == 0, (r.stdout, r.stderr[-500:])
    assert "codes 143 0" in r.stdout, r.stdout


def test_usable_cores_smallest_of_affinity_cgroup_and_slurm(tmp_path):
    affinity = len(os.sched_getaffinity(0))
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text("max 100000\n")
    assert executors.usable_cores({}, cpu_max) == affinity
    cpu_max.write_text("50000 100000\n")  # half a core: still one worker
    assert executors.usable_cores({}, cpu_max) == 1
    cpu_max.write_text(f"{100000 * affinity + 50000} 100000\n")  # more quota than cores: the cores
    assert executors.usable_cores({}, cpu_max) == affinity
    assert executors.usable_cores({"SLURM_CPUS_PER_TASK": "1"}, tmp_path / "absent") == 1
    assert executors.usable_cores({"SLURM_CPUS_PER_TASK": str(affinity + 4)}, tmp_path / "absent") == affinity
    with pytest.raises(AstroError, match="SLURM_CPUS_PER_TASK.*'x'"):
        executors.usable_cores({"SLURM_CPUS_PER_TASK": "x"}, tmp_path / "absent")


def test_jobs_0_uses_the_cores_slurm_gives(tmp_path, monkeypatch):
    """`-j 0` in a Slurm task of one CPU runs one worker (it used to start one per core of the node)."""
    from astrotool.executors import ExecutorOptions, run_items

    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "1")
    monkeypatch.syspath_prepend(str(HERE))
    from _batch_items import nap
    results, failures = run_items(nap, [(str(tmp_path), 0.2)] * 4, keys=list("abcd"),
                                  options=ExecutorOptions("process", jobs=0))
    assert not failures and len({pid for _, pid in results}) == 1


def test_shard_auto_from_the_slurm_array():
    env = {"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "32", "SLURM_ARRAY_TASK_MIN": "0",
           "SLURM_ARRAY_TASK_MAX": "31"}
    assert parse_shard("auto", env) == (3, 32)
    # --array=1-32: task ids from 1
    assert parse_shard("auto", {"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "32",
                                "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_MAX": "32"}) == (0, 32)
    # --array=0-30:2: 16 tasks, ids 0, 2, ...
    assert parse_shard("auto", {"SLURM_ARRAY_TASK_ID": "6", "SLURM_ARRAY_TASK_COUNT": "16",
                                "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_MAX": "30",
                                "SLURM_ARRAY_TASK_STEP": "2"}) == (3, 16)
    for empty in ("", "  "):  # `--shard "$TASK"` with TASK unset ran every item in every task
        with pytest.raises(AstroError, match="--shard: empty; expected i/N"):
            parse_shard(empty)
    with pytest.raises(AstroError, match="--shard auto: not in a Slurm job array"):
        parse_shard("auto", {})
    # a resubmitted subset (--array=3,17) cannot say which shares it is: refused, not guessed
    with pytest.raises(AstroError, match="--shard auto.*--shard I/N"):
        parse_shard("auto", {"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "2",
                             "SLURM_ARRAY_TASK_MIN": "3", "SLURM_ARRAY_TASK_MAX": "17"})
    # a task id outside the array, or off its step, was called a resubmitted subset: each says what is wrong
    with pytest.raises(AstroError, match=r"SLURM_ARRAY_TASK_ID=5 is outside the array \(indices 0-1\)"):
        parse_shard("auto", {"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_COUNT": "2",
                             "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_MAX": "1"})
    with pytest.raises(AstroError, match=r"SLURM_ARRAY_TASK_ID=1 is not on the array's step \(indices 0-4 in steps "
                                         r"of 2\)"):
        parse_shard("auto", {"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "3", "SLURM_ARRAY_TASK_MIN": "0",
                             "SLURM_ARRAY_TASK_MAX": "4", "SLURM_ARRAY_TASK_STEP": "2"})


def test_shard_auto_on_the_command_line(astro, toy, tmp_path):
    env = {"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "2", "SLURM_ARRAY_TASK_MIN": "0",
           "SLURM_ARRAY_TASK_MAX": "1", "SLURM_ARRAY_JOB_ID": "4242", "SLURM_JOB_ID": "4244"}
    r = astro("-w", tmp_path, "--shard", "auto", "toy", "run", "--count", "4", pythonpath=toy, env=env)
    assert r.returncode == 0, r.stderr
    assert sorted(f.name for f in (tmp_path / "toy/out").iterdir()) == ["item_001.json", "item_003.json"]
    rec = json.loads(next((tmp_path / "runs").iterdir()).joinpath("run.json").read_text())
    assert rec["host"] == socket.gethostname()
    assert rec["slurm"] == {"job_id": "4244", "array_job_id": "4242", "array_task_id": "1"}
    assert rec["shard"] == "1/2"   # as resolved, not "auto"
    from importlib import metadata

    for dist in ("galsim", "photutils", "torch"):
        assert rec["versions"][dist] == metadata.version(dist)
    assert sorted(Path(p).name for p in rec["outputs"]) == ["item_001.json", "item_003.json"]
    r = astro("-w", tmp_path, "--shard", "auto", "toy", "run", "--count", "4", pythonpath=toy)
    assert r.returncode == 2 and "--shard auto: not in a Slurm job array" in r.stderr, r.stderr


def test_a_shard_task_that_gets_no_item_says_so(astro, toy, tmp_path):
    """A task of a larger array than there are items ran nothing and said nothing (lens generate, plato
    simulate): the core's map says it, once, for every plugin."""
    r = astro("-w", tmp_path, "--shard", "3/4", "toy", "run", "--count", "2", pythonpath=toy)
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("--shard 3/4 had nothing to do in ") == 1, r.stderr
    assert "its 2 item(s) fall to the other --shard tasks" in r.stderr, r.stderr
    r = astro("-w", tmp_path, "--shard", "1/4", "toy", "run", "--count", "2", pythonpath=toy)
    assert r.returncode == 0 and "nothing to do" not in r.stderr, r.stderr


def test_run_record_names_real_files_and_program_versions(tmp_path, monkeypatch):
    """A hidden ``.done`` marker stands for its folder's products; a program's version line is recorded."""
    from astrotool.workspace import RunRecord, Workspace

    mosaics = tmp_path / "dre/mosaics/tile_000"
    mosaics.mkdir(parents=True)
    for name in ("a_mosaic.fits", "a_mosaic.png", ".done"):
        (mosaics / name).write_text("x")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "fakeprog").write_text("#!/bin/sh\necho 'FakeProg version 1.2.3 (2024-01-01)'\n")
    (bin_dir / "fakeprog").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    for var in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID"):
        monkeypatch.delenv(var, raising=False)
    rec = RunRecord(Workspace(tmp_path, stages={}), "dre mosaics", ["astro", "dre", "mosaics"], {})
    rec.add_output(mosaics / ".done")
    rec.add_program("fakeprog", ["nosuchprog", "fakeprog"])
    rec.add_program("absent", ["nosuchprog"])
    got = json.loads(rec.finish("ok", 0).read_text())
    assert got["outputs"] == [str(mosaics / "a_mosaic.fits"), str(mosaics / "a_mosaic.png")]
    assert got["versions"]["fakeprog"] == f"{bin_dir / 'fakeprog'}: FakeProg version 1.2.3 (2024-01-01)"
    assert got["versions"]["absent"] == "not found"
    assert "slurm" not in got and got["host"] == socket.gethostname()


@pytest.mark.parametrize("executor", ["process", "dask"])
def test_a_stop_under_json_log_format_is_a_json_line(tmp_path, executor):
    """--log-format json promises JSON lines only on stderr: the stop notice was a line of text, and Dask's
    workers printed plain warnings of their cancelled tasks."""
    p, workers = _start_toy(tmp_path, "--log-format", "json", "--executor", executor)
    try:
        assert len(workers) >= 2, "the workers never started"
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=20)
        assert p.returncode == 143, err
        records = [json.loads(line) for line in err.splitlines() if line.strip()]  # each line is JSON
        assert records[-1]["exit_code"] == 143 and records[-1]["message"].startswith("terminated: unfinished outputs")
    finally:
        for pid in workers | {p.pid}:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_a_dead_worker_fails_only_its_item(monkeypatch):
    """A worker killed outright (the out-of-memory killer's SIGKILL) broke the process pool: every item not yet
    finished failed with "BrokenProcessPool", those never started too. Its item fails, named with the cause;
    a fresh pool runs the others (the one the broken pool stopped on the other worker included)."""
    from astrotool.executors import ExecutorOptions, run_items

    monkeypatch.syspath_prepend(str(HERE))
    from _worker_items import die
    items = [("a", 0.5), ("die", 0.0), *[(f"q{k}", 0.05) for k in range(6)]]
    results, failures = run_items(die, items, keys=[name for name, _ in items],
                                  options=ExecutorOptions("process", jobs=2))
    assert [(f.key, f.error) for f in failures] == [("die", "its worker process died (killed by SIGKILL, "
                                                            "e.g. out of memory)")]
    assert [key for key, _ in results] == ["a", *[f"q{k}" for k in range(6)]]


def test_workers_that_keep_dying_end_the_retries(monkeypatch):
    """Every item kills its worker: the fresh pool breaks before it finishes any item and is not replaced,
    so the run ends (bounded), the items left failing as not run."""
    from astrotool.executors import ExecutorOptions, run_items

    monkeypatch.syspath_prepend(str(HERE))
    from _worker_items import die
    results, failures = run_items(die, [("die", 0.0)] * 6, keys=[f"d{k}" for k in range(6)],
                                  options=ExecutorOptions("process", jobs=2))
    assert not results and len(failures) == 6
    died = [f.key for f in failures if f.error.startswith("its worker process died (killed by SIGKILL")]
    not_run = [f.key for f in failures
               if f.error == "not run: the worker processes died again before any item finished"]
    assert 2 <= len(died) <= 4 and len(died) + len(not_run) == 6, failures


@pytest.mark.parametrize("step", [0.05, 60.0])
def test_sigterm_to_a_local_dask_jobs_process_group(tmp_path, step):
    """Slurm's SIGTERM to the whole process group: local Dask workers died at once, leaving the temporary files
    of their running items, and the results they held of items finished but not yet reported were lost (missing
    from run.json's outputs). Now the running items remove their temporary files (one in a long call into C,
    ``step`` 60 s, within STOP_GRACE_S) and every finished item is reported."""
    code = ("import json, sys, time\n"
            "from pathlib import Path\n"
            "from astrotool import cli\n"
            "from astrotool.executors import ExecutorOptions, run_items\n"
            "from _worker_items import write_slowly\n"
            "out, step = sys.argv[1], float(sys.argv[2])\n"
            "recorded = []\n"
            "def done(key, result):\n"
            "    recorded.append(key)\n"
            "    Path(out, 'recorded.json').write_text(json.dumps(recorded))\n"
            "    if len(recorded) == 1:\n"
            "        time.sleep(60)  # busy with the first result: the next ones finish, unreported\n"
            "items = [(out, n, 60.0 if n.startswith('s') else 0.0, step) for n in ('q1', 'q2', 'q3', 's4', 's5')]\n"
            "cli._catch_stop_signals()\n"
            "try:\n"
            "    run_items(write_slowly, items, keys=[i[1] for i in items], options=ExecutorOptions('dask', jobs=2),\n"
            "              done=done)\n"
            "except KeyboardInterrupt:\n"
            "    sys.exit(143)\n")
    out = tmp_path / "out"
    out.mkdir()
    p = subprocess.Popen([sys.executable, "-c", code, str(out), str(step)], env=_env(), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, start_new_session=True)
    workers = set()
    try:
        deadline = time.time() + 60
        while time.time() < deadline and not (
                sum(f.name.startswith(".") for f in out.iterdir()) >= 2 and (out / "recorded.json").exists()):
            time.sleep(0.02)
        workers = _children(p.pid)
        os.killpg(p.pid, signal.SIGTERM)
        _, err = p.communicate(timeout=40)
        assert p.returncode == 143, err
        assert [f.name for f in out.iterdir() if f.name.startswith(".")] == []
        written = {f.stem for f in out.glob("*.txt") if not f.name.startswith(".")}
        # the first item, reported, and (mostly) others that finished while it was: Dask may also start both
        # slow items before the quick ones, and then none does; either way every finished item is reported
        assert written and set(json.loads((out / "recorded.json").read_text())) == written
        assert _wait_gone(workers) == set()
    finally:
        for pid in workers | {p.pid}:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_sigterm_reaches_a_dask_worker_its_nanny_started_again(tmp_path):
    """A local Dask worker killed for memory is started again by its nanny. Its SIGTERM handler was set once, at
    the cluster's start, so the new worker died at once on Slurm's SIGTERM to the process group and left the
    temporary file of its running item. Now every worker, a restarted one too, removes it."""
    code = ("import sys\n"
            "from astrotool import cli\n"
            "from astrotool.executors import ExecutorOptions, run_items\n"
            "from _worker_items import die_once_then_write\n"
            "out = sys.argv[1]\n"
            "items = [(out, n, 60.0, 0.05) for n in ('die', 'w1', 'w2', 'w3')]\n"
            "cli._catch_stop_signals()\n"
            "try:\n"
            "    run_items(die_once_then_write, items, keys=[i[1] for i in items], "
            "options=ExecutorOptions('dask', jobs=2))\n"
            "except KeyboardInterrupt:\n"
            "    sys.exit(143)\n")
    out = tmp_path / "out"
    out.mkdir()
    p = subprocess.Popen([sys.executable, "-c", code, str(out)], env=_env(), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, start_new_session=True)
    workers = set()
    try:
        deadline = time.time() + 90
        while time.time() < deadline and not (
                (out / "died").exists() and sum(f.name.startswith(".") for f in out.iterdir()) >= 2):
            time.sleep(0.05)
        assert (out / "died").exists(), "no worker died"
        workers = _children(p.pid)   # two items write: one on the worker started again
        os.killpg(p.pid, signal.SIGTERM)
        _, err = p.communicate(timeout=40)
        assert p.returncode == 143, err
        assert [f.name for f in out.iterdir() if f.name.startswith(".")] == []
        assert _wait_gone(workers) == set()
    finally:
        for pid in workers | {p.pid}:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_json_progress_lines_all_have_the_same_keys(astro, toy, tmp_path):
    """The final progress line had no ``eta_s`` (the others had it, null when unknown): every line has the same
    keys, the final one ``eta_s`` 0."""
    r = astro("-w", tmp_path, "--log-format", "json", "--progress-interval", "0.1", "toy", "run", "--count", "3",
              "--slow", "0.15", pythonpath=toy)
    assert r.returncode == 0, r.stderr
    lines = [json.loads(line) for line in r.stderr.splitlines()]
    progress = [line for line in lines if line.get("event") == "progress"]
    assert len(progress) >= 2 and progress[-1]["final"] and progress[-1]["eta_s"] == 0.0, progress
    assert len({tuple(sorted(line)) for line in progress}) == 1, progress
