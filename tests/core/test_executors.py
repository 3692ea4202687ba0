"""Executors: identical results across serial, process pool, Dask and shards; failures."""

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import pytest

from astrotool.errors import AstroError
from astrotool.executors import ExecutorOptions, derive_seed, parse_shard, run_items, select_shard

sys.path.insert(0, str(Path(__file__).parent))
from _items import draw  # noqa: E402

ITEMS = [f"tile{i}" for i in range(7)]


def test_seed_depends_on_key_and_base_only():
    """The same (base, key) gives the same seed in another interpreter, whatever its
    hash randomisation (a seed made with ``hash()`` would differ); any other key or base
    gives another seed."""
    import os
    import subprocess

    here = [derive_seed(b, k) for b, k in [(0, "a"), (0, "b"), (1, "a"), (123, "tile_001")]]
    code = ("from astrotool.executors import derive_seed; "
            "print([derive_seed(b, k) for b, k in [(0, 'a'), (0, 'b'), (1, 'a'), (123, 'tile_001')]])")
    for hashseed in ("1", "2"):
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env=dict(os.environ, PYTHONHASHSEED=hashseed))
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout) == here
    assert len(set(here)) == 4
    assert all(0 <= s < 2**63 for s in here)


def test_identical_results_across_executors_and_shards():
    serial, f = run_items(draw, ITEMS, options=ExecutorOptions("serial"), base_seed=5)
    assert not f and [k for k, _ in serial] == ITEMS
    process, f = run_items(draw, ITEMS, options=ExecutorOptions("process", jobs=2), base_seed=5)
    assert not f and process == serial
    dask, f = run_items(draw, ITEMS, options=ExecutorOptions("dask", jobs=2), base_seed=5)
    assert not f and dask == serial
    sharded = []
    for i in range(3):
        part, f = run_items(draw, ITEMS, options=ExecutorOptions("serial", shard=(i, 3)), base_seed=5)
        sharded += part
    assert sorted(sharded) == sorted(serial)
    other, _ = run_items(draw, ITEMS, base_seed=6)
    assert other != serial


@pytest.mark.parametrize("quiet", [False, True])
def test_the_resource_trackers_leak_warning_is_quiet_once_workers_may_start(quiet):
    """A stop while a local cluster started left a semaphore to multiprocessing's resource tracker, whose
    warning came after the command's last JSON line (1 run in about 10 of a stop test)."""
    import subprocess

    code = ("import os; from astrotool.executors import _quiet_resource_tracker as q; "
            f"q() if {quiet} else None; from multiprocessing import resource_tracker as rt; "
            "rt.register('/mp-astro-test-leak', 'semaphore'); print(rt._resource_tracker._pid, flush=True); "
            "os._exit(0)")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    with tempfile.TemporaryFile("w+") as err:   # the tracker writes after the process ended: no pipe to wait on
        tracker = int(subprocess.run([sys.executable, "-c", code], stderr=err, env=env, check=True,
                                     capture_output=False, stdout=subprocess.PIPE, text=True).stdout)
        deadline = time.time() + 20
        while time.time() < deadline and os.path.exists(f"/proc/{tracker}"):   # it warns as it ends
            time.sleep(0.05)
        err.seek(0)
        assert ("leaked semaphore" in err.read()) is not quiet


def test_a_workers_stop_swallowed_by_a_finaliser_still_ends_its_item(tmp_path, capfd):
    """A SIGTERM landing in a ``__del__`` of the item (a library's finaliser) raised a KeyboardInterrupt that Python
    swallowed ("Exception ignored", in plain text): the worker finished the item and went on to the next."""
    from _items import swallow_stop

    item = str(tmp_path / "a")
    results, failures = run_items(swallow_stop, [item], options=ExecutorOptions("process", jobs=2))
    assert Path(item + ".started").exists() and not Path(item + ".finished").exists()
    assert not results and [f.key for f in failures] == [item]
    assert "Exception ignored" not in capfd.readouterr().err


def test_a_local_cluster_is_quiet_when_dasks_usual_port_is_taken(capfd):
    """Another cluster on the node holding port 8787 gave Dask's plain-text "Port 8787 is already in use"
    warning on stderr, breaking --log-format json."""
    import socket
    import warnings

    from _items import draw

    holder = socket.socket()
    try:
        holder.bind(("", 8787))
        holder.listen()
    except OSError:   # taken already (another cluster, another test worker): the case under test all the same
        holder.close()
    try:
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            got, f = run_items(draw, ["a", "b"], options=ExecutorOptions("dask", jobs=2))
    finally:
        holder.close()
    assert not f and len(got) == 2
    assert not [w for w in seen if "already in use" in str(w.message)]
    assert "already in use" not in capfd.readouterr().err


def test_local_dask_workers_print_only_errors():
    """A local cluster's worker restores its log handlers when it closes, and then printed (1 CI run in
    about 40) Dask's plain-text INFO line "Received 'close-stream'" after the command's last JSON line; its
    loggers now start at ERROR."""
    import logging

    from _items import dask_log_level

    got, f = run_items(dask_log_level, ["a", "b"], options=ExecutorOptions("dask", jobs=2))
    assert not f and {v for _, v in got} == {logging.ERROR}


@pytest.mark.parametrize("kind", ["serial", "process"])
def test_one_failing_item_others_finish(kind):
    items = ["a", "bad", "c"]
    results, failures = run_items(draw, items, options=ExecutorOptions(kind, jobs=2))
    assert [k for k, _ in results] == ["a", "c"]
    assert len(failures) == 1 and failures[0].key == "bad"
    assert failures[0].error == "ValueError: this item is bad" and "Traceback" in failures[0].traceback


def test_debug_messages_name_the_shard_and_each_item(caplog):
    """``-v`` promised debug messages and gave none."""
    import logging

    with caplog.at_level(logging.DEBUG, logger="astro"):
        run_items(draw, list("abcde") + ["bad"], options=ExecutorOptions("serial", shard=(1, 2)), base_seed=4)
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert lines[0] == "serial executor: 3 of 6 item(s) (shard 1/2), 1 worker(s), base seed 4", lines
    assert [line.split(",")[0] for line in lines[1:]] == ["item b: done", "item d: done",
                                                          "item bad: failed: ValueError: this item is bad"]


def test_shard_selection_and_parsing():
    assert select_shard(list("abcdefg"), (1, 3)) == [1, 4]
    assert parse_shard("2/4") == (2, 4) and parse_shard(None) is None
    for bad in ["4/4", "x", "1/0", "-1/3"]:
        with pytest.raises(AstroError, match="--shard"):
            parse_shard(bad)
    with pytest.raises(AstroError, match="--executor"):
        ExecutorOptions("mpi")


def test_cli_failure_table_and_exit_1(astro, toy, tmp_path):
    r = astro("-w", tmp_path, "toy", "run", "--count", "4", "--fail", "2", "--executor", "process", "-j", "2",
              pythonpath=toy)
    assert r.returncode == 1, r.stderr
    assert "1 item(s) failed" in r.stderr and "item2\tValueError: item 2 is bad" in r.stderr
    assert sorted(p.name for p in (tmp_path / "toy/out").iterdir()) == [
        "item_000.json", "item_001.json", "item_003.json"]
    rec = json.loads(next((tmp_path / "runs").iterdir()).joinpath("run.json").read_text())
    assert rec["status"] == "failed items" and rec["exit_code"] == 1
    assert rec["failures"] == [{"item": "item2", "error": "ValueError: item 2 is bad"}]


@pytest.mark.parametrize("flag", [["--log-format", "json"], ["--json", "--log-format", "json"]])
def test_failures_and_the_error_are_json_lines_when_asked(astro, toy, tmp_path, flag):
    """With --log-format json the failure report and the final error were plain text on stderr."""
    r = astro("-w", tmp_path, *flag, "toy", "run", "--count", "3", "--fail", "1", pythonpath=toy)
    assert r.returncode == 1, r.stderr
    lines = [json.loads(x) for x in r.stderr.splitlines() if x.startswith("{")]
    (report,) = [x for x in lines if x.get("rows")]
    assert report["level"] == "ERROR" and report["message"] == "1 item(s) failed"
    assert report["rows"] == [{"item": "item1", "error": "ValueError: item 1 is bad"}]
    assert "item1\tValueError" not in r.stderr
    r = astro("-w", tmp_path, *flag, "--shard", "7/2", "toy", "run", pythonpath=toy)
    assert r.returncode == 2 and "Error:" not in r.stderr, r.stderr
    (err,) = [json.loads(x) for x in r.stderr.splitlines() if x.startswith("{") and "exit_code" in x]
    assert "--shard" in err["message"] and err["exit_code"] == 2


def test_cli_dask_and_shards_match_serial(astro, toy, tmp_path):
    outs = {}
    for name, args in {"serial": [], "dask": ["--executor", "dask", "-j", "2"]}.items():
        ws = tmp_path / name
        assert astro("-w", ws, *args, "toy", "run", "--count", "5", pythonpath=toy).returncode == 0
        outs[name] = {p.name: p.read_text() for p in (ws / "toy/out").iterdir()}
    ws = tmp_path / "shards"
    for i in range(2):
        r = astro("-w", ws, "--shard", f"{i}/2", "toy", "run", "--count", "5", pythonpath=toy)
        assert r.returncode == 0, r.stderr
    outs["shards"] = {p.name: p.read_text() for p in (ws / "toy/out").iterdir()}
    assert len(outs["serial"]) == 5
    assert outs["serial"] == outs["dask"] == outs["shards"]


def test_jobs_flag_alone_selects_the_process_pool(tmp_path):
    from astrotool.context import Context, GlobalOptions

    def kind(**opts):
        return Context(GlobalOptions(workspace=str(tmp_path), **opts)).executor_options.kind

    assert kind() == "serial"
    assert kind(jobs=2) == "process"
    assert kind(jobs=1) == "serial"
    assert kind(jobs=2, executor="serial") == "serial"
    assert kind(jobs=2, executor="dask") == "dask"
    assert kind(scheduler="tcp://h:8786") == "dask"
    assert kind(scheduler="tcp://h:8786", executor="serial") == "serial"


def test_jobs_the_serial_executor_ignores_are_said(astro, toy, tmp_path):
    """`--executor serial -j 4` ran one item at a time without a word (--scheduler said so already)."""
    r = astro("-w", tmp_path, "--executor", "serial", "-j", "4", "toy", "run", "--count", "2", pythonpath=toy)
    assert r.returncode == 0 and r.stderr.count("-j 4 is not used: the serial executor runs the items") == 1
    r = astro("-w", tmp_path, "-j", "1", "--overwrite", "toy", "run", "--count", "2", pythonpath=toy)
    assert r.returncode == 0 and "is not used" not in r.stderr                   # -j 1 is serial


def test_a_slurm_array_task_without_shard_is_told(astro, toy, tmp_path):
    """In an array job without --shard every task ran every item, racing on the same outputs, in silence."""
    env = {"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "0"}
    r = astro("-w", tmp_path, "toy", "run", "--count", "2", pythonpath=toy, env=env)
    assert r.returncode == 0 and "Slurm array task 3 without --shard: it runs all 2 items" in r.stderr, r.stderr
    r = astro("-w", tmp_path, "--shard", "auto", "toy", "run", "--count", "2", pythonpath=toy, env=env)
    assert r.returncode == 0 and "without --shard" not in r.stderr, r.stderr


def test_a_scheduler_another_executor_ignores_is_said(astro, toy, tmp_path):
    r = astro("-w", tmp_path, "--executor", "process", "-j", "2", "--scheduler", "tcp://h:8786", "toy", "run",
              "--count", "2", pythonpath=toy)
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("--scheduler tcp://h:8786 is not used: the process executor runs the items") == 1


def test_run_record_names_the_executor_that_ran(astro, toy, tmp_path):
    assert astro("-w", tmp_path, "-j", "2", "toy", "run", "--count", "2", pythonpath=toy).returncode == 0
    (record,) = (tmp_path / "runs").glob("*/run.json")
    assert json.loads(record.read_text())["config"]["core"]["executor"] == "process"


def test_a_malformed_scheduler_address_is_refused():
    from distributed import Client

    from astrotool import executors

    with pytest.raises(AstroError, match="--scheduler notanaddress: not a scheduler address .*tcp://HOST:PORT"):
        executors._connect(Client, "notanaddress")


PEER = """
import socket, sys, threading
from distributed import Client
from astrotool import executors
from astrotool.errors import AstroError

answer = bytes.fromhex(sys.argv[1])
server = socket.socket()
server.bind(("127.0.0.1", 0))
server.listen()

def serve():
    while True:
        conn, _ = server.accept()
        if answer:
            conn.sendall(answer)

threading.Thread(target=serve, daemon=True).start()
executors.CONNECT_TIMEOUT_S = 1.0
try:
    executors._connect(Client, "tcp://127.0.0.1:%d" % server.getsockname()[1])
except AstroError as exc:
    print(exc)
"""


@pytest.mark.parametrize("answer", [b"", b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"])
def test_a_scheduler_that_is_not_dask_is_refused_in_bounded_time(answer):
    """A peer that accepts and never answers (a dashboard port) or answers HTTP is refused within the
    connect limit, naming the address, instead of hanging or crashing on what it read. (In a process of
    its own: the connection left waiting keeps that process's Dask event loop.)"""
    import subprocess

    r = subprocess.run([sys.executable, "-c", PEER, answer.hex()], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("--scheduler tcp://127.0.0.1:") and ("no Dask answer within 1 s" in r.stdout
                                                                      or "cannot connect" in r.stdout), r.stdout


def test_process_workers_share_the_cores(monkeypatch):
    """Each of N workers gets cpu_count // N OpenMP threads unless the user chose."""
    import os

    from _items import thread_setting

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    got, _ = run_items(thread_setting, ["a", "b"], options=ExecutorOptions("process", jobs=2))
    assert {v for _, v in got} == {str(max(1, (os.cpu_count() or 1) // 2))}
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    got, _ = run_items(thread_setting, ["a", "b"], options=ExecutorOptions("process", jobs=2))
    assert {v for _, v in got} == {"3"}


def test_raise_failures_exit_code_is_2_only_when_every_failure_was_bad_input(tmp_path):
    from astrotool.context import Context
    from astrotool.errors import AstroError, InputError
    from astrotool.executors import Failure, _call

    ctx = Context.create(tmp_path / "ws", command="toy run")
    ctx.raise_failures(0, 3)  # nothing failed: no error

    def bad_input(item, seed):
        raise InputError(f"map{item}.npy", "5 NaN values")

    def crash(item, seed):
        raise RuntimeError("out of memory")

    ctx.failures += [_call(bad_input, 1, 0, "a")[1], _call(bad_input, 2, 0, "b")[1]]
    assert all(isinstance(f, Failure) and f.exit_code == 2 for f in ctx.failures)
    with pytest.raises(AstroError) as e:
        ctx.raise_failures(0, 5, "chunk")
    assert e.value.exit_code == 2 and "map1.npy" in str(e.value) and "2 of 5 chunk(s) failed" in str(e.value)
    assert ctx.failures == []  # reported by this error, not again
    ctx.failures += [_call(bad_input, 1, 0, "a")[1], _call(crash, 2, 0, "b")[1]]
    with pytest.raises(AstroError) as e:
        ctx.raise_failures(0, 2)
    assert e.value.exit_code == 1


@pytest.mark.parametrize("scheme", ["tcp://", ""])
def test_a_scheduler_where_nothing_listens_is_refused_at_once(astro, toy, tmp_path, scheme):
    """Nothing listening at --scheduler (given as tcp://HOST:PORT, or HOST:PORT as Dask also reads it):
    refused within seconds, before any progress line (it was 30 s of `0/3 (0%)` lines, then the error)."""
    import socket
    import time

    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        address = "%s127.0.0.1:%d" % (scheme, s.getsockname()[1])
    start = time.monotonic()
    r = astro("-w", tmp_path, "--executor", "dask", "--scheduler", address, "--progress-interval", "0.1",
              "--log-format", "plain", "toy", "run", "--count", "3", "--slow", "0.5", pythonpath=toy)
    assert r.returncode == 2 and f"--scheduler {address}: cannot connect" in r.stderr, r.stderr
    assert "0/3" not in r.stderr and time.monotonic() - start < 20, r.stderr


def test_failure_line_names_the_item_once():
    from astrotool.executors import failure_line

    assert failure_line("a.ftr", "a.ftr: the flux is NaN") == "a.ftr: the flux is NaN"
    assert failure_line("a.ftr", "/data/q1/a.ftr: the flux is NaN") == "/data/q1/a.ftr: the flux is NaN"
    assert failure_line("a.ftr", "ValueError: bad") == "a.ftr: ValueError: bad"
    assert failure_line("a.ftr", "/data/ba.ftr: other file") == "a.ftr: /data/ba.ftr: other file"


def test_a_stop_sent_as_a_dask_item_ends_is_withdrawn(monkeypatch):
    """A local Dask worker's SIGTERM handler read the item's thread, the item returned, then the stop's
    ``KeyboardInterrupt`` was sent to that thread: it was raised in Dask's code, outside any item (2 times in
    3 s of stops sent in a loop). Here the handler runs exactly then: the item's thread has its result and
    waits to end the item (the handler holds the lock); the stop sent is withdrawn."""
    import gc
    import inspect
    import signal
    import threading

    import astrotool.executors as ex

    monkeypatch.setattr(ex, "_STOPPING", False)
    monkeypatch.setattr(ex, "_UNWINDING", False)
    monkeypatch.setattr(ex, "_dask_worker_exit", lambda: None)   # the worker stays up here
    returned, seen = threading.Event(), {}

    def item(value, seed):
        returned.set()
        return value

    def dask_thread():
        try:
            seen["out"] = ex._call_in_dask_worker(item, 21, 0, "k")
            seen["sum"] = sum(k for k in range(1000))   # a stop still pending is raised here
        except BaseException as exc:
            seen["landed"] = exc

    lines, first = inspect.getsourcelines(ex._end_dask_item)
    at_lock = first + next(k for k, line in enumerate(lines) if "with _ITEM_LOCK" in line)
    # no garbage collection while the lock is held: a Dask client that an earlier test of this process left
    # behind, collected here, waited for its event loop's thread to end, and the suite hung
    gc.collect()
    gc.disable()
    try:
        with ex._ITEM_LOCK:
            thread = threading.Thread(target=dask_thread)
            thread.start()
            assert returned.wait(10)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:   # until the item's thread waits for the lock
                frame = sys._current_frames().get(thread.ident)
                if frame is not None and frame.f_code is ex._end_dask_item.__code__ and frame.f_lineno == at_lock:
                    break
                time.sleep(0.01)
            assert ex._ITEM_THREAD == thread.ident
            ex._dask_worker_term(signal.SIGTERM, None)
        thread.join(10)
    finally:
        gc.enable()
    assert ex._UNWINDING and "landed" not in seen, seen
    assert seen["out"] == ("ok", 21), seen   # the item had finished: it keeps its result


def _write_then_stop(item, seed):
    """An item that finishes its file and is stopped before it returns (SIGTERM just after the rename)."""
    from astrotool.workspace import write_text_atomic

    write_text_atomic(item, "whole")
    if Path(item).name == "b.txt":
        write_text_atomic(Path(item).with_name(".b.made_with.json"), "{}")   # a hidden settings record
        raise KeyboardInterrupt("terminated")
    return item


def test_a_stop_after_an_item_finished_its_file_records_the_file(tmp_path):
    """A stopped ``plato simulate`` kept a finished file that run.json did not list: the stop came after the
    item's rename, before the run recorded the item's outputs."""
    from astrotool.context import Context

    ctx = Context.create(tmp_path / "ws", command="toy run")
    files = [str(tmp_path / n) for n in ("a.txt", "b.txt", "c.txt")]
    (tmp_path / "old.txt").write_text("an earlier run's")
    with pytest.raises(KeyboardInterrupt):
        ctx.map(_write_then_stop, files, "write", keys=["a", "b", "c"], outputs=lambda r: [r])
    # b.txt is whole on disk: listed; its hidden record is not an output (nor a marker that would list old.txt);
    # c.txt never started
    assert ctx.record.outputs == files[:2]
    assert Path(files[1]).read_text() == "whole" and not Path(files[2]).exists()
    kept = []   # run_items hands the interrupted item's finished files to `kept`, and only those
    with pytest.raises(KeyboardInterrupt):
        run_items(_write_then_stop, files, ["a", "b", "c"], kept=lambda key, paths: kept.append((key, paths)))
    assert kept == [("b", [Path(files[1])])]
