"""Console: stdout for results, stderr for logs; plain lines and progress off a terminal; JSON logs."""

import json
import re

import pytest

ANSI = re.compile(r"\x1b\[")


def test_plain_logs_and_progress_lines_in_batch_logs(astro, toy, tmp_path):
    r = astro("-w", tmp_path, "--progress-interval", "0.2", "toy", "run", "--count", "4", "--slow", "0.15",
              pythonpath=toy)
    assert r.returncode == 0, r.stderr
    assert not ANSI.search(r.stderr) and not ANSI.search(r.stdout)
    assert r.stdout.startswith("key\tvalue\n")  # stdout holds the result only, tab-separated
    lines = [ln for ln in r.stderr.splitlines() if "squares:" in ln]
    assert len(lines) >= 2, r.stderr
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO    squares: \d/4 \(\d+%\)", lines[0])
    assert lines[-1].split("squares: ")[1].startswith("4/4 done, ")


def test_json_log_format(astro, toy, tmp_path):
    r = astro("toy", "run", "--count", "2", "--fail", "1", "-w", tmp_path, "--log-format", "json",
              "--progress-interval", "0.1", pythonpath=toy)
    assert r.returncode == 1
    records = [json.loads(ln) for ln in r.stderr.splitlines() if ln.startswith("{")]
    assert any(rec["level"] == "ERROR" and "item 1 is bad" in rec["message"] for rec in records)
    prog = [rec for rec in records if rec.get("event") == "progress"]
    assert prog and prog[-1]["done"] == 2 and prog[-1]["total"] == 2


@pytest.mark.parametrize("args, message", [
    (["--seed", "-1", "status"], "option --seed: expected an integer >= 0"),  # a global option's value
    (["--bogus-option", "status"], "No such option: --bogus-option"),          # click's usage errors
    (["toy", "run", "--count", "abc"], "Invalid value for '--count'"),
    (["nosuch"], "No such command 'nosuch'"),
])
def test_usage_errors_are_json_lines_with_json_log_format(astro, toy, tmp_path, args, message):
    """stderr holds JSON lines only under --log-format json: usage errors were printed as text."""
    r = astro("-w", tmp_path, "--log-format", "json", *args, pythonpath=toy)
    assert r.returncode == 2
    (line,) = r.stderr.splitlines()
    record = json.loads(line)
    assert message in record["message"] and record["exit_code"] == 2 and record["level"] == "ERROR"


@pytest.mark.parametrize("where", ["--cfg", "astro.toml", "--set"])
@pytest.mark.parametrize("args", [["--shard", "5/2", "status"], ["--set", "core.seed=x", "status"],
                                  ["--bogus-option", "status"]])
def test_log_format_of_a_file_applies_to_early_errors_too(astro, tmp_path, where, args):
    """`[core] log_format = "json"` in a --cfg file or astro.toml left errors met before the configuration was
    read (a bad --shard, an invalid value, an unknown option) as plain lines in a JSON log."""
    (tmp_path / "json.toml").write_text('[core]\nlog_format = "json"\n')
    if where == "astro.toml":
        (tmp_path / "json.toml").rename(tmp_path / "astro.toml")
    given = {"--cfg": ["--cfg", tmp_path / "json.toml"], "--set": ["--set", "core.log_format=json"]}.get(where, [])
    r = astro("-w", tmp_path, *given, *args)
    assert r.returncode == 2
    (line,) = r.stderr.splitlines()
    assert json.loads(line)["exit_code"] == 2
    r = astro("-w", tmp_path, *given, "--log-format", "plain", *args)   # the option still wins
    assert r.returncode == 2 and not r.stderr.startswith("{") and " ERROR " in r.stderr


def test_a_bad_log_format_in_a_file_is_named_with_its_file_and_help_still_shows(astro, tmp_path):
    """Read before the configuration's check, `log_format = "jsn"` in astro.toml stopped even `astro --help`,
    blamed on an option never given (--log-format)."""
    (tmp_path / "astro.toml").write_text('[core]\nlog_format = "jsn"\n')
    assert astro("-w", tmp_path, "--help").returncode == 0
    r = astro("-w", tmp_path, "status")
    assert r.returncode == 2 and f"{tmp_path / 'astro.toml'}: core.log_format:" in r.stderr, r.stderr
    assert "--log-format" not in r.stderr


def test_traceback_goes_into_the_json_line(astro, toy, tmp_path):
    """--traceback under --log-format json printed the raw traceback before the JSON line."""
    (tmp_path / "f").write_text("x")
    r = astro("--log-format", "json", "--traceback", "init", tmp_path / "f" / "sub", pythonpath=toy)
    assert r.returncode == 2
    (line,) = r.stderr.splitlines()
    record = json.loads(line)
    assert "exists and is not a folder" in record["message"] and "Traceback (most recent call last)" in \
        record["traceback"]


def test_quiet_hides_progress_but_not_errors(astro, toy, tmp_path):
    r = astro("-q", "toy", "run", "--count", "2", "--fail", "0", "-w", tmp_path, "--progress-interval", "0.1",
              pythonpath=toy)
    assert r.returncode == 1
    assert "squares: 1/2" not in r.stderr and "squares: 2/2" not in r.stderr
    assert "failed: item0: ValueError: item 0 is bad" in r.stderr


def test_bad_log_format_is_usage_error(astro):
    r = astro("--log-format", "xml", "status")
    assert r.returncode == 2 and "--log-format" in r.stderr


def test_terminal_gets_rich_progress_and_logs(toy, tmp_path):
    """On a terminal (a pseudo-terminal from `script`), progress is a live bar and logs are rich."""
    import os
    import shlex
    import shutil
    import subprocess
    import sys

    import pytest

    if shutil.which("script") is None:
        pytest.skip("util-linux `script` is not installed")
    cmd = shlex.join([sys.executable, "-m", "astrotool", "-w", str(tmp_path), "toy", "run", "--count", "3",
                      "--fail", "1"])
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASTRO_")}
    env.update(ASTRO_CONFIG=os.devnull, PYTHONPATH=str(toy[0]), TERM="xterm", COLUMNS="100")
    env.pop("NO_COLOR", None)
    r = subprocess.run(["script", "-qec", cmd, "/dev/null"], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, r.stdout
    assert ANSI.search(r.stdout), "no ANSI codes on a terminal"
    assert "━" in r.stdout and "3/3" in r.stdout  # the rich progress bar reached the end
    assert "item 1 is bad" in r.stdout


def test_cfg_file_log_format_and_progress_interval(astro, toy, tmp_path):
    cfg = tmp_path / "batch.toml"
    cfg.write_text('[core]\nlog_format = "json"\nprogress_interval = 0.1\n')
    r = astro("-w", tmp_path / "ws", "--cfg", cfg, "toy", "run", "--count", "1", "--slow", "0.5", pythonpath=toy)
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    records = [json.loads(ln) for ln in lines]  # every stderr line is one JSON object
    beats = [rec for rec in records if rec.get("event") == "progress"]
    assert len(beats) >= 3, r.stderr  # a heartbeat every 0.1 s while the 0.5-s item runs, then the final line


def test_heartbeat_during_slow_item_final_line_once_failures_counted(astro, toy, tmp_path):
    r = astro("-w", tmp_path, "--progress-interval", "0.2", "toy", "run", "--count", "4", "--fail", "2",
              "--slow", "0.6", "-j", "1", pythonpath=toy)
    assert r.returncode == 1, r.stderr
    lines = [ln.split("squares: ", 1)[1] for ln in r.stderr.splitlines() if "squares: " in ln and "failed:" not in ln]
    assert any(ln.startswith("0/4") for ln in lines), r.stderr  # a heartbeat while the first item runs
    finals = [ln for ln in lines if ln.startswith("4/4")]
    assert len(finals) == 1, r.stderr
    assert finals[0].startswith("4/4 done, 1 failed"), r.stderr


def test_table_on_a_terminal_shows_brackets_as_text(monkeypatch):
    """A file named ``g[red]y.parquet`` is shown as named, not as ``gy.parquet`` in red."""
    import io

    from astrotool import console

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    out = Terminal()
    monkeypatch.setattr("sys.stdout", out)
    console.print_table("[i]x[/i]", ["file"], [["g[red]y.parquet"], ["C:\\dir\\"]])
    assert "g[red]y.parquet" in out.getvalue() and "[i]x[/i]" in out.getvalue()
    assert "C:\\dir\\ " in out.getvalue() and "C:\\dir\\\\" not in out.getvalue()  # not doubled


def _strict(text: str):
    """``text`` parsed as strict JSON (``NaN`` and ``Infinity`` refused)."""
    def refuse(word):
        raise ValueError(f"not strict JSON: {word}")

    return json.loads(text, parse_constant=refuse)


def test_results_and_json_files_are_strict_json(tmp_path, capsys):
    """Non-finite floats (numpy's too, nested) are written as null; other objects as their text."""
    import numpy as np

    from astrotool import console
    from astrotool.workspace import write_json_atomic

    obj = {"a": float("nan"), "b": [np.float64("inf"), np.float32("-inf"), (1.5, np.float32(2.5))],
           "c": {"d": np.nan}, "e": tmp_path}
    want = {"a": None, "b": [None, None, [1.5, 2.5]], "c": {"d": None}, "e": str(tmp_path)}
    console.set_json(True)
    try:
        console.emit(obj)
    finally:
        console.set_json(False)
    assert _strict(capsys.readouterr().out) == want
    assert _strict(write_json_atomic(tmp_path / "r.json", obj).read_text()) == want


def test_a_missing_value_is_an_empty_cell_not_none(capsys):
    """`calibration None` was printed for a value that is absent (JSON says null)."""
    from astrotool import console

    console.emit({"calibration": None, "n": 3})
    console.emit([{"a": 1, "b": None}, {"a": 2}])
    assert capsys.readouterr().out == "key\tvalue\ncalibration\t\nn\t3\na\tb\n1\t\n2\t\n"


def test_a_truth_value_is_written_as_json_writes_it(capsys):
    """Piped records printed Python's ``False`` where ``--json`` prints ``false``."""
    import numpy as np

    from astrotool import console

    console.emit({"skipped": False, "stopped_early": np.bool_(True), "n": 0, "x": np.float32(0.1)})
    console.emit([{"a": True, "b": 1}])
    assert capsys.readouterr().out == ("key\tvalue\nskipped\tfalse\nstopped_early\ttrue\nn\t0\nx\t0.1\n"
                                       "a\tb\ntrue\t1\n")   # a float32 as numpy prints it


def test_piped_status_is_tab_separated_rows_and_comment_lines(tmp_path, capsys):
    """Piped, ``astro status`` printed a bare ``runs: N`` line among its tab-separated rows."""
    from astrotool.cli import main
    from astrotool.plugins import Registry, set_registry

    set_registry(Registry(entry_points=False))
    try:
        assert main(["init", str(tmp_path)]) == 0
        capsys.readouterr()
        assert main(["-w", str(tmp_path), "status"]) == 0
    finally:
        set_registry(None)
    lines = capsys.readouterr().out.splitlines()
    data = [ln for ln in lines if not ln.startswith("#")]
    assert data[0] == "plugin\tstage\tfiles" and all(ln.count("\t") == 2 for ln in data), lines
    assert any(ln.startswith("# runs: ") for ln in lines), lines


def test_eta_comes_from_the_recent_steps_not_those_a_resumed_run_kept():
    """A resumed run's kept items, all done in its first 0.1 s, made `17/50 (34%) 2.0s elapsed, ~4s left`
    of a run with 2 s per item: the mean rate of the whole loop."""
    from collections import deque

    from astrotool.console import recent_rate

    def rate(times, now):
        return recent_rate(deque(times), now, 0.0, len(times))

    kept = [0.1] * 17                                   # finished at once
    assert rate(kept + [2.0], 2.0) == 1.0               # one step in the last second (the mean said 9/s)
    real = kept + [2.0, 4.0, 6.0, 8.0]
    assert rate(real, 8.0) == pytest.approx(1 / 2)      # 2 steps in the later half: 0.5/s, not 2.6/s
    assert rate(kept, 10.0) == pytest.approx(1 / 5)     # a long step running: at most 1 per window
    assert rate([1.0, 2.0, 3.0, 4.0], 4.0) == pytest.approx(1.0)   # a steady rate is that rate
    assert rate([], 5.0) == 0.0 and rate([0.0], 0.0) == 0.0
    recent = deque(real)
    recent_rate(recent, 8.0, 0.0, len(real))
    assert list(recent) == [6.0, 8.0]                   # the older ones dropped: memory stays small


def test_steps_an_earlier_run_did_count_as_done_but_not_in_the_time_left(monkeypatch):
    """A training resumed after epoch 2 of 5: `2/5 (40%) 10.0s elapsed, ~15s left` before this run finished any
    epoch. The two epochs are done, but the rate, and so the time left, is that of this run's epochs."""
    import logging
    import time

    from astrotool import console

    lines = []

    class Keep(logging.Handler):
        def emit(self, record):
            lines.append(record.astro)

    console.setup("plain", interval=0.1)
    handler = Keep()
    console.get_logger().addHandler(handler)
    try:
        with console.progress(5, "train", already=2) as advance:
            time.sleep(0.35)      # no epoch of this run yet: no time left is promised
            advance(1)
            time.sleep(0.35)
    finally:
        console.get_logger().removeHandler(handler)
        console.setup("auto")
    before = [x for x in lines if x["done"] == 2]
    assert before and all(x["eta_s"] is None and x["total"] == 5 for x in before), before
    after = [x for x in lines if x["done"] == 3 and not x["final"]]
    assert after and all(x["eta_s"] is not None and x["eta_s"] >= 2 * 0.3 for x in after), after  # 2 epochs to go
    assert lines[-1]["final"] and lines[-1]["done"] == 3 and lines[-1]["rate_per_s"] < 2.0
