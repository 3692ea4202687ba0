"""Console output: logs and progress on stderr, results on stdout.

On a terminal, logs go through rich and progress is a live bar. Not on a terminal
(a Slurm ``.out`` file, a pipe) a rich bar would print nothing until the end, so
logs are plain ISO-timestamped lines and progress is a line every
``core.progress_interval`` seconds. ``--log-format json`` writes one JSON object
per line (logs and progress records alike). ``-q`` shows warnings only and no
progress; ``-v`` shows debug messages. ``NO_COLOR`` is honoured.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import math
import os
import sys
import time
from datetime import datetime, timezone
from typing import Callable, Iterator

__docformat__ = "numpy"

LOGGER_NAME = "astro"
"""Name of the ``logging`` logger astrotool writes to."""
FORMATS = ("auto", "rich", "plain", "json")
"""Output formats of the console (``--log-format``)."""


class _State:
    fmt = "plain"
    quiet = False
    interval = 10.0


_state = _State()


def stderr_is_terminal() -> bool:
    """Whether stderr is an interactive terminal (rich output is wanted)."""
    try:
        return sys.stderr.isatty() and os.environ.get("TERM") != "dumb"
    except (AttributeError, ValueError):
        return False


def _finite(obj):
    """``obj`` with each non-finite float (NaN, infinity; numpy's too) as ``None``, in nested dicts and lists."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def _json_default(obj):
    """A numpy scalar as its Python value, anything else JSON does not know as its text."""
    if type(obj).__module__ == "numpy" and getattr(obj, "shape", None) == ():
        return _finite(obj.item())
    return str(obj)


def to_json(obj, indent: int | None = None) -> str:
    """Strict JSON text of ``obj``: non-finite floats as ``null`` (strict parsers reject ``NaN``),
    numpy scalars as numbers, other unknown objects as their text.

    Used for every JSON result, log line and file (:func:`astrotool.workspace.write_json_atomic`).
    """
    return json.dumps(_finite(obj), indent=indent, default=_json_default)


def timestamp(posix: float | None = None) -> str:
    """The UTC time of log lines, plain and JSON alike: ``2026-11-23T12:00:00.123Z`` (milliseconds)."""
    when = datetime.fromtimestamp(time.time() if posix is None else posix, timezone.utc)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _plain_line(level: str, message: str) -> str:
    """A line as :class:`PlainFormatter` writes it, stamped now."""
    return f"{timestamp()} {level:<7} {message}"


class PlainFormatter(logging.Formatter):
    """``2026-11-23T12:00:00.123Z LEVEL message`` with no wrapping and no colour."""

    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        if record.exc_info and _show_tracebacks():
            msg += "\n" + self.formatException(record.exc_info)
        return f"{timestamp(record.created)} {record.levelname:<7} {msg}"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time``, ``level``, ``logger``, ``message`` and extras."""

    def format(self, record: logging.LogRecord) -> str:
        obj = {
            "time": timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        obj.update(getattr(record, "astro", {}) or {})
        return to_json(obj)


def log_format() -> str:
    """The format of stderr's lines in force: ``rich``, ``plain`` or ``json``."""
    return _state.fmt


def _show_tracebacks() -> bool:
    return logging.getLogger(LOGGER_NAME).level <= logging.DEBUG


def setup(fmt: str = "auto", verbosity: int = 0, quiet: bool = False, interval: float = 10.0) -> logging.Logger:
    """Configure the ``astro`` logger on stderr.

    Parameters
    ----------
    fmt : {"auto", "rich", "plain", "json"}
        ``auto`` picks ``rich`` on a terminal and ``plain`` otherwise.
    verbosity : int
        0 = INFO, 1 or more = DEBUG.
    quiet : bool
        WARNING level and no progress output.
    interval : float
        Seconds between progress lines when not on a terminal.

    Returns
    -------
    logging.Logger
        The configured ``astro`` logger.
    """
    if fmt not in FORMATS:
        from astrotool.errors import AstroError

        raise AstroError(f"--log-format: expected one of {', '.join(FORMATS)}, got {fmt!r}")
    if fmt == "auto":
        fmt = "rich" if stderr_is_terminal() else "plain"
    _state.fmt, _state.quiet, _state.interval = fmt, quiet, float(interval)
    logger = logging.getLogger(LOGGER_NAME)
    for h in list(logger.handlers):
        logger.removeHandler(h)
    if fmt == "rich":
        from rich.logging import RichHandler

        handler: logging.Handler = RichHandler(console=err_console(), show_path=False, markup=False,
                                               rich_tracebacks=False, log_time_format="%H:%M:%S")
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter() if fmt == "json" else PlainFormatter())
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING if quiet else (logging.DEBUG if verbosity > 0 else logging.INFO))
    logger.propagate = False
    os.environ[_WORKER_ENV] = f"{fmt},{int(quiet)}"  # spawned worker processes log the same way
    return logger


_WORKER_ENV = "_ASTRO_WORKER_LOG"


def item_step(desc: str, key: str, step: str, i: int, n: int) -> None:
    """Log one step of one item off a terminal: ``dre run: field_007 fit 3/5``.

    Called from the item function, in this process or a worker process; on a
    terminal (the live bar) and with ``-q`` it prints nothing.

    Parameters
    ----------
    desc : str
        The progress description of the run, e.g. ``"dre run"``.
    key : str
        The item, e.g. the tile name.
    step : str
        The step starting, e.g. ``"fit"``.
    i, n : int
        The step's number (from 1) and the number of steps.
    """
    logger = get_logger()
    if not logger.handlers and os.environ.get(_WORKER_ENV):  # a spawned worker: set up as the parent was
        fmt, quiet = os.environ[_WORKER_ENV].split(",")
        setup(fmt, quiet=quiet == "1")
    if _state.fmt == "rich" or _state.quiet or not logger.handlers:
        return
    logger.info("%s: %s %s %d/%d", desc, key, step, i, n,
                extra={"astro": {"event": "step", "desc": desc, "item": key, "step": step, "index": i, "of": n}})


def get_logger() -> logging.Logger:
    """The ``astro`` logger (plugins log through it or a child of it)."""
    return logging.getLogger(LOGGER_NAME)


_ERR_CONSOLE = None


def err_console():
    """A rich ``Console`` on stderr (created on first use)."""
    global _ERR_CONSOLE
    if _ERR_CONSOLE is None:
        from rich.console import Console

        _ERR_CONSOLE = Console(stderr=True, highlight=False, soft_wrap=True)
    return _ERR_CONSOLE


def recent_rate(finished, now: float, start: float, done: int) -> float:
    """Steps per second [1/s] over the later half of a loop so far (at least its last second).

    Steps kept from an earlier, stopped run all finish at once at the start: the mean rate of the
    whole loop would promise an end far too soon once real work begins.

    Parameters
    ----------
    finished : collections.deque of float
        When each recent step finished (``time.monotonic``, ascending), one entry per step; those
        older than the window are dropped from it (the window's start only moves on).
    now, start : float
        The time now and when the loop began [s].
    done : int
        Steps finished since the start, dropped ones included.
    """
    elapsed = now - start
    if elapsed <= 0 or not done:
        return 0.0
    window = max(1.0, elapsed / 2)
    while finished and finished[0] <= now - window:
        finished.popleft()
    # none of late: at most one step per window (a long step is running), never more than the mean
    return len(finished) / window if finished else min(done / elapsed, 1.0 / window)


@contextlib.contextmanager
def progress(total: int | None, desc: str, already: int = 0) -> Iterator[Callable[[int], None]]:
    """Report progress of a loop on stderr.

    Parameters
    ----------
    total : int or None
        Number of steps, if known.
    desc : str
        What is being processed, e.g. ``"fit tiles"``.
    already : int
        Steps done by an earlier run (the epochs a resumed training starts after): counted as done from the
        start, but not in the rate, so the time left is that of this run's steps.

    Yields
    ------
    callable
        ``advance(n=1)``: call after each finished step.
    """
    logger = get_logger()
    if _state.quiet:
        def nothing(n: int = 1) -> None:
            pass

        nothing.set_failed = lambda n: None
        yield nothing
        return
    if _state.fmt == "rich":
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), TimeRemainingColumn(), console=err_console(),
                      transient=False) as bar:
            task = bar.add_task(desc, total=total, completed=already)

            def advance_bar(n: int = 1) -> None:
                bar.advance(task, n)

            advance_bar.set_failed = lambda n: None
            yield advance_bar
        return

    import threading

    start = time.monotonic()
    state = {"done": already, "failed": 0, "last": start}
    finished = collections.deque()   # when each recent step finished, for their rate (recent_rate)
    lock = threading.Lock()

    def line(final: bool = False) -> None:
        now = time.monotonic()
        done, failed, elapsed = state["done"], state["failed"], now - start
        mine = done - already
        rate = (mine / elapsed if elapsed > 0 else 0.0) if final else recent_rate(finished, now, start, mine)
        # every line has the same keys; eta_s [s] is None where unknown (no total, no rate yet), 0 once all is done
        extra = {"event": "progress", "desc": desc, "done": done, "total": total, "failed": failed,
                 "final": final, "elapsed_s": round(elapsed, 2), "rate_per_s": round(rate, 3), "eta_s": None}
        if final:
            extra["eta_s"] = 0.0 if total and done >= total else None
            msg = f"{desc}: {done}/{total} done" if total else f"{desc}: {done} done"
            msg += f", {failed} failed" if failed else ""
            msg += f", {elapsed:.1f}s elapsed"
        elif total:
            eta = (total - done) / rate if rate > 0 else float("nan")
            extra["eta_s"] = None if eta != eta else round(eta, 1)
            msg = f"{desc}: {done}/{total} ({100 * done / total:.0f}%) {elapsed:.1f}s elapsed"
            if rate > 0:
                msg += f", ~{eta:.0f}s left"
        else:
            msg = f"{desc}: {done} done, {elapsed:.1f}s elapsed"
        logger.info(msg, extra={"astro": extra})

    def advance(n: int = 1) -> None:
        with lock:
            state["done"] += n
            now = time.monotonic()
            finished.extend([now] * n)
            if now - state["last"] >= _state.interval and not (total and state["done"] >= total):
                state["last"] = now  # the last step is reported once, by the final line
                line()

    def heartbeat() -> None:  # a line every interval even while one long item runs
        due = start + _state.interval
        while not stop.wait(max(0.0, due - time.monotonic())):  # wakes when the next line is due
            with lock:  # all done: the final line follows, a heartbeat would say it twice
                now = time.monotonic()
                if now - state["last"] >= _state.interval and not (total and state["done"] >= total):
                    state["last"] = now
                    line()
                due = state["last"] + _state.interval
                if due <= now:  # all done, the final line to come: no busy wait
                    due = now + _state.interval

    def set_failed(n: int) -> None:
        state["failed"] = int(n)

    advance.set_failed = set_failed  # the caller reports failures before the final line
    stop = threading.Event()
    beat = threading.Thread(target=heartbeat, name="astro-progress", daemon=True)
    beat.start()
    try:
        yield advance
    finally:
        stop.set()
        beat.join()
    if state["done"]:
        line(final=True)


_RESULTS = {"json": False, "muted": False}


@contextlib.contextmanager
def results_muted(on: bool = True):
    """Within it, results (:func:`emit`, :func:`print_table` on stdout) print nothing: ``astro demo`` runs
    commands whose results its own summary gives (``on=False``: they print again, for a step that captures
    a command's output to quote it)."""
    before, _RESULTS["muted"] = _RESULTS["muted"], bool(on)
    try:
        yield
    finally:
        _RESULTS["muted"] = before


def set_json(on: bool) -> None:
    """Print every result as JSON (the global ``--json``)."""
    _RESULTS["json"] = bool(on)


def json_results() -> bool:
    """Whether results are printed as JSON (``--json``)."""
    return _RESULTS["json"]


def _cell(value) -> str:
    """A table cell: text as is (a file name that is not UTF-8 with ``\\xNN``), nested values as compact JSON,
    ``None`` (no value) empty, as ``null`` is in JSON, and a truth value ``true``/``false`` as in JSON."""
    from astrotool.names import printable

    if value is None:
        return ""
    if isinstance(value, bool) or type(value).__module__ == "numpy" and type(value).__name__ in ("bool", "bool_"):
        return "true" if value else "false"
    if isinstance(value, (dict, list, tuple)):
        return to_json(value)
    return printable(str(value))


def _one_line(text: str) -> str:
    """A tab-separated cell: the lines of a multi-line message joined with ``"; "`` (after a line ending in
    ``:`` with a space), stripped of their indentation; tabs as spaces."""
    text = text.replace("\t", " ")
    if "\n" not in text and "\r" not in text:
        return text
    out = ""
    for part in (ln.strip() for ln in text.splitlines()):
        if part:
            out += (" " if out.endswith(":") else "; " if out else "") + part
    return out


def emit(obj) -> None:
    """Write a result to stdout.

    With ``--json`` everything is JSON. Otherwise a record (dict) is a
    ``key``/``value`` table and a list of records a table with one column per key:
    rich on a terminal, tab-separated text when stdout is a file or a pipe (nested
    values as compact JSON in their cell); other lists and text are printed as they are.
    """
    if _RESULTS["muted"]:
        return
    if _RESULTS["json"]:
        sys.stdout.write(to_json(obj, indent=2) + "\n")
        sys.stdout.flush()
        return
    if isinstance(obj, dict):
        print_table("", ["key", "value"], [[k, _cell(v)] for k, v in obj.items()])
        return
    if isinstance(obj, list) and obj and all(isinstance(r, dict) for r in obj):
        cols = list(dict.fromkeys(k for r in obj for k in r))
        print_table("", cols, [[_cell(r.get(c)) for c in cols] for r in obj])
        return
    if isinstance(obj, list):
        sys.stdout.write("".join(f"{_cell(x)}\n" for x in obj))
    else:
        sys.stdout.write(f"{_cell(obj)}\n")
    sys.stdout.flush()


def _json_line(level: str, message: str, **extra) -> None:
    """One JSON object on a line of stderr, shaped like a log record of :class:`JsonFormatter`."""
    obj = {"time": timestamp(), "level": level, "logger": LOGGER_NAME,
           "message": message, **extra}
    sys.stderr.write(to_json(obj) + "\n")
    sys.stderr.flush()


def streams_gone() -> None:
    """Send stdout, and stderr, to the null device where their reader stopped reading (``astro ... 2>&1 |
    head``), so that writing or flushing them later (at exit) raises nothing."""
    import os

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
            continue
        except BrokenPipeError:
            pass
        except (OSError, ValueError):
            continue
        try:
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, stream.fileno())
            os.close(null)
        except (OSError, ValueError):   # not a real file (a test's capture)
            pass


def report_error(message: str, hint: str = "", **extra) -> None:
    """The command's final error on stderr: ``Error: <message>`` (and ``hint`` on the next line) on a
    terminal, an ``ERROR`` log line (``hint`` after the message) with ``--log-format plain``, or one JSON
    line with ``--log-format json`` (``exit_code`` and other ``extra`` keys beside it). Where stderr's reader
    has gone, nothing is said (the run's record keeps the message)."""
    try:
        _report_error(message, hint, **extra)
    except BrokenPipeError:
        streams_gone()


def _report_error(message: str, hint: str = "", **extra) -> None:
    if _state.fmt == "json":
        _json_line("ERROR", message, **({"hint": hint} if hint else {}), **extra)
        return
    if _state.fmt == "plain":
        sys.stderr.write(_plain_line("ERROR", message + (f" {hint}" if hint else "")) + "\n")
        sys.stderr.flush()
        return
    sys.stderr.write(f"Error: {message}\n" + (f"{hint}\n" if hint else ""))
    sys.stderr.flush()


def _stdout_is_terminal() -> bool:
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


def stdout_is_terminal() -> bool:
    """Whether results go to a terminal: a command may shorten a long table there (saying so in its
    title), never when piped, where every row is printed."""
    return _stdout_is_terminal()


def note(text: str) -> None:
    """Print a line about a result on stdout (a count, a summary such as ``runs: 3``).

    On a terminal it is printed as it is; piped, it is a ``# `` comment line, as a table's
    title is, so that piped output is tab-separated rows and ``#`` lines only
    (``grep -v '^#'`` leaves the data). With ``--json`` nothing is printed: the result says it.
    """
    if _RESULTS["json"]:
        return
    sys.stdout.write((text if _stdout_is_terminal() else f"# {text}") + "\n")
    sys.stdout.flush()


def print_table(title: str, columns: list[str], rows: list[list], stream: str = "stdout") -> None:
    """Print a table: rich on a terminal, tab-separated text otherwise, JSON with ``--json``.

    Parameters
    ----------
    title : str
        Table title (a ``# title`` comment line before tab-separated text). Piped, every row
        is printed: a caller that shows only some rows on a terminal should pass them all.
    columns : list of str
        Column headings.
    rows : list of list
        Cell values (converted with ``str``; nested values as JSON).
    stream : {"stdout", "stderr"}
        Where to print. With ``--json`` a table on stdout is a JSON list of
        ``{column: value}`` objects. A table on stderr (a failure report) follows the log format:
        with ``--log-format json`` it is one JSON line (``message``: the title, ``rows``: those objects).
    """
    out = sys.stdout if stream == "stdout" else sys.stderr
    if _RESULTS["muted"] and stream == "stdout":
        return
    if _RESULTS["json"] and stream == "stdout":
        out.write(to_json([dict(zip(columns, r)) for r in rows], indent=2) + "\n")
        out.flush()
        return
    if stream == "stderr" and _state.fmt == "json":
        _json_line("ERROR", title, rows=[dict(zip(columns, r)) for r in rows])
        return
    if out.isatty() and _state.fmt != "json":
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text

        # Text, not markup: `g[red]y.parquet` and a trailing backslash are shown as they are
        table = Table(title=Text(title) if title else None)
        for c in columns:
            table.add_column(Text(c), overflow="fold")  # a path is shown whole, never cut with …
        for r in rows:
            table.add_row(*[Text(_cell(x)) for x in r])
        Console(file=out, highlight=False).print(table)
    else:
        out.write((f"# {title}\n" if title else "") + "\t".join(columns) + "\n")
        for r in rows:
            out.write("\t".join(_one_line(_cell(x)) for x in r) + "\n")
        out.flush()
