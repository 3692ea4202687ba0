"""What a batch user reads: outputs recorded per item, early usage errors, log lines, progress timing."""

import json
import logging
import re
import signal
import sys
import time
from pathlib import Path

import pytest

from astrotool import console
from astrotool.context import Context

sys.path.insert(0, str(Path(__file__).parent))
from _items import draw, touch  # noqa: E402

STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


def _record(ws: Path) -> dict:
    (run,) = (ws / "runs").iterdir()
    return json.loads((run / "run.json").read_text())


@pytest.mark.parametrize("kind", ["serial", "process", "dask"])
def test_map_records_each_items_outputs_as_it_finishes(tmp_path, kind):
    """``outputs=`` records an item's files in the parent as it finishes, each once."""
    ctx = Context.create(tmp_path / "ws", executor=kind, jobs=2)
    items = [(str(tmp_path), f"f{i}") for i in range(4)]
    seen = []

    def outputs(path):
        seen.append(list(ctx.record.outputs))  # what the record held before this item's files
        return [path]

    results = ctx.map(touch, items, "touch", keys=[n for _, n in items], outputs=outputs)
    for _, path in results:  # a command that still adds its outputs afterwards records none twice
        ctx.record.add_output(path)
    assert [len(s) for s in seen] == [0, 1, 2, 3]
    ctx.finish("ok", 0)
    assert sorted(_record(tmp_path / "ws")["outputs"]) == [str(tmp_path / f"f{i}.txt") for i in range(4)]


def test_a_stopped_run_records_the_outputs_that_finished(tmp_path):
    ctx = Context.create(tmp_path / "ws")
    items = [(str(tmp_path), n) for n in ("a", "b", "stop", "c")]
    with pytest.raises(KeyboardInterrupt):
        ctx.map(touch, items, "touch", keys=[n for _, n in items], outputs=lambda path: [path])
    ctx.finish("terminated", 143)
    rec = _record(tmp_path / "ws")
    assert rec["status"] == "terminated" and rec["outputs"] == [str(tmp_path / "a.txt"), str(tmp_path / "b.txt")]


@pytest.mark.parametrize("shard", ["1", "9/4", "auto", "x/2"])
def test_a_bad_shard_is_refused_before_anything_is_created(astro, toy, tmp_path, shard):
    ws = tmp_path / "new"
    r = astro("-w", ws, "--shard", shard, "toy", "run", "--count", "4", pythonpath=toy)
    assert r.returncode == 2 and "--shard" in r.stderr, r.stderr
    assert not ws.exists() and "created" not in r.stderr, r.stderr


def test_a_bad_shard_is_not_hidden_by_a_changed_setting(astro, toy, tmp_path):
    assert astro("-w", tmp_path, "toy", "run", "--count", "2", pythonpath=toy).returncode == 0
    r = astro("-w", tmp_path, "--shard", "9/4", "--set", "toy.label=other", "toy", "run", "--count", "2",
              pythonpath=toy)
    assert r.returncode == 2 and "--shard" in r.stderr, r.stderr
    assert len(list((tmp_path / "runs").iterdir())) == 1  # no run record for a usage error


def test_plain_error_and_stop_notice_are_log_lines(astro, tmp_path, capsys):
    r = astro("-w", tmp_path, "--log-format", "plain", "--set", "core.jobs=-1", "status")
    assert r.returncode == 2
    assert re.match(STAMP + " ERROR   invalid configuration:\n  --set: core.jobs", r.stderr), r.stderr
    from astrotool.cli import _report_stop

    console.setup("plain")
    try:
        _report_stop("terminated", 143)
    finally:
        console.setup("plain")
    err = capsys.readouterr().err
    assert re.fullmatch(STAMP + r" ERROR   terminated: unfinished outputs removed, finished ones kept; re-run the "
                                r"same command to resume\.\n", err), repr(err)
    try:   # after --overwrite, the same command resumes too (it keeps what this overwrite made)
        _report_stop("interrupted", 130, overwrite=True)
    finally:
        console.setup("plain")
    assert capsys.readouterr().err.endswith("interrupted: unfinished outputs removed, finished ones kept; re-run "
                                            "the same command, --overwrite included, to resume: a command that "
                                            "works item by item (or a training of one process) keeps what it "
                                            "finished with these settings (docs: workspace).\n")


def test_plain_and_json_timestamps_have_one_form():
    rec = logging.LogRecord("astro", logging.INFO, __file__, 1, "hello", None, None)
    plain = console.PlainFormatter().format(rec).split()[0]
    assert json.loads(console.JsonFormatter().format(rec))["time"] == plain and re.fullmatch(STAMP, plain)


@pytest.mark.parametrize("value", ["0.001", "0.05"])
def test_a_tiny_progress_interval_is_refused(astro, value):
    r = astro("--progress-interval", value, "status")
    assert r.returncode == 2 and "--progress-interval" in r.stderr and "0.1" in r.stderr, r.stderr


def test_a_tiny_progress_interval_in_a_config_file_is_refused(astro, tmp_path):
    cfg = tmp_path / "batch.toml"
    cfg.write_text("[core]\nprogress_interval = 0.001\n")
    r = astro("-w", tmp_path, "--cfg", cfg, "status")
    assert r.returncode == 2 and "core.progress_interval" in r.stderr, r.stderr


def test_a_progress_line_comes_on_time(capsys):
    """With an interval of 1.5 s the heartbeat checked each second: the first line came at 2 s."""
    console.setup("plain", interval=1.5)
    try:
        with console.progress(3, "wait"):
            time.sleep(1.8)
    finally:
        console.setup("plain")
    lines = [ln for ln in capsys.readouterr().err.splitlines() if "wait: 0/3" in ln]
    assert len(lines) == 1, lines


def test_failure_table_keeps_multi_line_errors_readable(capsys):
    console.print_table("1 item(s) failed", ["item", "error"],
                        [["t1", "changed settings:\n  a.b: 1 -> 2\n  c.d: x -> y\nuse --overwrite"]], stream="stderr")
    err = capsys.readouterr().err
    assert "t1\tchanged settings:; a.b: 1 -> 2; c.d: x -> y; use --overwrite\n" in err or \
        "t1\tchanged settings: a.b: 1 -> 2; c.d: x -> y; use --overwrite\n" in err, repr(err)
    assert "  " not in err.split("\t", 2)[-1]


def test_a_scheduler_from_a_config_file_is_named_as_such(astro, toy, tmp_path):
    cfg = tmp_path / "cluster.toml"
    cfg.write_text('[core]\nexecutor = "dask"\nscheduler = "tcp://127.0.0.1:1"\n')
    r = astro("-w", tmp_path / "ws", "--cfg", cfg, "toy", "run", "--count", "2", pythonpath=toy)
    assert r.returncode == 2, r.stderr
    assert "core.scheduler" in r.stderr and "cluster.toml" in r.stderr and "--scheduler" not in r.stderr, r.stderr


def test_run_record_has_the_number_of_workers_started(tmp_path):
    """jobs_resolved was the configured worker count: the pool starts min(workers, items), and a command
    that ran no map (train) started none."""
    ctx = Context.create(tmp_path / "a", executor="process", jobs=0)
    ctx.record
    ctx.finish("ok", 0)
    assert "jobs_resolved" not in _record(tmp_path / "a")
    ctx = Context.create(tmp_path / "b", executor="process", jobs=8)
    ctx.record
    ctx.map(draw, ["x"], "draw")
    ctx.finish("ok", 0)
    rec = _record(tmp_path / "b")
    assert rec["config"]["core"]["jobs"] == 8 and rec["jobs_resolved"] == 1
    ctx = Context.create(tmp_path / "c")
    ctx.record
    ctx.map(draw, ["x", "y"], "draw")
    ctx.finish("ok", 0)
    assert _record(tmp_path / "c")["jobs_resolved"] == 1


def test_init_says_which_folder_wins(astro, toy, tmp_path):
    r = astro("-w", tmp_path / "a", "init", tmp_path / "b", pythonpath=toy)
    assert r.returncode == 0 and (tmp_path / "b/astro.toml").exists() and not (tmp_path / "a").exists()
    assert "-w" in r.stderr and "not used" in r.stderr, r.stderr


def test_status_of_a_missing_workspace_says_so(astro, tmp_path):
    r = astro("status", env={"ASTRO_WORKSPACE": str(tmp_path / "typo")})
    assert r.returncode == 2 and "does not exist" in r.stderr and str(tmp_path / "typo") in r.stderr, r.stderr
    assert not (tmp_path / "typo").exists()


def test_configured_defaults_are_shown_without_parentheses(astro, toy):
    r = astro("toy", "run", "--help", pythonpath=toy)
    assert r.returncode == 0 and "[default: (" not in r.stdout and "[default: " in r.stdout, r.stdout


def test_a_stop_while_a_local_dask_cluster_starts_is_quiet(tmp_path):
    """SIGTERM while the local cluster starts printed Dask's tracebacks (``Nanny failed to start``, an atexit
    ``AssertionError: Status.init``) on stderr, breaking --log-format json."""
    import os
    import signal
    import subprocess

    env = {k: v for k, v in os.environ.items() if not k.startswith(("ASTRO_", "SLURM_"))}
    env.update(ASTRO_CONFIG=os.devnull, PYTHONPATH=str(Path(__file__).parent / "toyplugins"))
    for k, delay in enumerate((0.0, 0.3, 0.6)):
        ws = tmp_path / f"w{k}"
        p = subprocess.Popen([sys.executable, "-m", "astrotool", "-w", str(ws), "--executor", "dask", "-j", "2",
                              "--log-format", "json", "toy", "run", "--count", "4", "--slow", "1"],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 30
        while time.time() < deadline and not (ws / "toy" / "out").is_dir():  # made just before the cluster starts
            time.sleep(0.01)
        time.sleep(delay)
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=30)
        # 143; under `python -m` rarely (about 1 in 30 here) the process ends by SIGINT in Python's shutdown,
        # after the record and the stop notice are written (not seen with the `astro` script): not yet understood
        assert p.returncode in (143, -signal.SIGINT), err
        assert all(line.startswith("{") for line in err.splitlines() if line.strip()), err


def test_json_results_list_the_failed_items(astro, toy, tmp_path):
    """--json printed the finished items' counts only: a script reading stdout could not tell what failed."""
    r = astro("-w", tmp_path, "--json", "toy", "run", "--count", "3", "--fail", "1", pythonpath=toy)
    assert r.returncode == 1
    out = json.loads(r.stdout)
    assert out["done"] == 2 and [f["item"] for f in out["failures"]] == ["item1"] and out["failures"][0]["error"]
    ok = json.loads(astro("-w", tmp_path / "b", "--json", "toy", "run", "--count", "2", pythonpath=toy).stdout)
    assert "failures" not in ok


@pytest.mark.parametrize("kind", ["process", "dask"])
def test_a_stopped_parallel_run_records_every_file_it_keeps(tmp_path, kind):
    """With -j 2 a stop shut the pool down without reporting the items already finished: their files were
    kept but missing from run.json's outputs. Here the stop comes while the second item is finished but
    not yet reported."""
    from astrotool import executors

    ctx = Context.create(tmp_path / "ws", executor=kind, jobs=2)
    items = [(str(tmp_path), n) for n in ("a", "b")]
    files = [tmp_path / "a.txt", tmp_path / "b.txt"]

    def outputs(path):
        if executors.stop_requested() is None:  # the first item to finish: wait for the other, then stop
            deadline = time.time() + 10
            while not all(f.exists() for f in files) and time.time() < deadline:
                time.sleep(0.02)
            time.sleep(0.5)  # its result reaches this process
            executors.request_stop(signal.SIGTERM)
        return [path]

    try:
        with pytest.raises(KeyboardInterrupt):
            ctx.map(touch, items, "touch", keys=[n for _, n in items], outputs=outputs)
    finally:
        executors.reset_stop()
    ctx.finish("terminated", 143)
    kept = sorted(str(p) for p in tmp_path.glob("*.txt"))
    assert kept == [str(f) for f in files]
    assert sorted(_record(tmp_path / "ws")["outputs"]) == kept


def test_a_failing_outputs_function_is_a_warning_not_a_failed_run(tmp_path, capsys):
    ctx = Context.create(tmp_path / "ws")
    items = [(str(tmp_path), n) for n in ("a", "b")]

    def outputs(path):
        if path.endswith("a.txt"):
            raise OSError("cannot list it")
        return [path]

    results = ctx.map(touch, items, "touch", keys=["a", "b"], outputs=outputs)
    assert len(results) == 2 and not ctx.failures
    err = capsys.readouterr().err
    assert "WARNING" in err and "could not be recorded" in err and "cannot list it" in err, err
    assert ctx.record.outputs == [str(tmp_path / "b.txt")]


def test_an_interrupt_inside_add_output_does_not_lose_the_path(tmp_path):
    """add_output marked a path recorded before listing it: an interrupt between the two dropped it for good."""
    from astrotool.workspace import RunRecord, Workspace

    class Interrupting(set):
        def add(self, item):
            raise KeyboardInterrupt("terminated")

    rec = RunRecord(Workspace(tmp_path), "x", [], {})
    rec._recorded = Interrupting()
    with pytest.raises(KeyboardInterrupt):
        rec.add_output(tmp_path / "a.txt")
    assert rec.outputs == [str(tmp_path / "a.txt")]


@pytest.mark.parametrize("args", [["--shard", "9/4", "status"], ["status", "--nope"], ["nosuchcmd"]])
def test_usage_errors_are_log_lines_under_plain(astro, tmp_path, args):
    """Usage errors printed click's `Usage: …` / `Error: …` text under --log-format plain (and auto off a
    terminal), among log lines; json was already JSON lines."""
    r = astro("-w", tmp_path, "--log-format", "plain", *args)
    assert r.returncode == 2 and re.fullmatch(STAMP + r" ERROR   \S.*\n", r.stderr), r.stderr
    r = astro("-w", tmp_path, "--log-format", "json", *args)
    assert r.returncode == 2 and [json.loads(x)["exit_code"] for x in r.stderr.splitlines()] == [2], r.stderr


def test_usage_errors_keep_clicks_look_on_a_terminal(tmp_path):
    import os
    import subprocess

    env = {k: v for k, v in os.environ.items() if not k.startswith(("ASTRO_", "SLURM_"))}
    env.update(ASTRO_CONFIG=os.devnull, TERM="xterm", NO_COLOR="1")
    master, slave = os.openpty()
    try:
        r = subprocess.run([sys.executable, "-m", "astrotool", "-w", str(tmp_path), "status", "--nope"], env=env,
                           stdout=subprocess.DEVNULL, stderr=slave, timeout=60)
        os.close(slave)
        err = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            err += chunk
    finally:
        os.close(master)
    text = err.decode(errors="replace")
    assert r.returncode == 2 and "Usage:" in text and "No such option: --nope" in text and " ERROR " not in text, text
