"""Run per-item work (a tile, a shard, a file) serially, in processes or on Dask.

One interface for every plugin: :func:`run_items` calls ``fn(item, seed)`` for
each item and collects results and failures.

- ``serial``: in this process.
- ``process``: a pool of ``--jobs`` worker processes (spawned, so CUDA and
  threads are safe).
- ``dask``: Dask distributed, on the cluster at ``--scheduler tcp://host:8786``
  or on a ``LocalCluster`` of ``--jobs`` workers when no address is given.

``--shard i/N`` keeps every N-th item starting at item i (0-based), for Slurm
job arrays; ``--shard auto`` takes i and N from the array task's variables
(:func:`parse_shard`). ``-j 0`` is the number of cores this process may use
(:func:`usable_cores`).

Each item's random seed is derived from the run's base seed and the item's key
(:func:`derive_seed`), never from its position in a worker's queue, so results
are identical whatever the executor, the number of jobs or the sharding (but for
float rounding where the number of BLAS threads differs: see docs/batch.md).
A failing item does not stop the others; its error is returned as a
:class:`Failure`. A pool worker that dies (killed for memory) fails the item it
was running; a fresh pool runs the others (:func:`_run_process`).

Stopping: process-pool workers die with their parent (``PR_SET_PDEATHSIG`` on
Linux, and a thread that watches for a new parent pid elsewhere). On SIGTERM or
Ctrl-C the command line calls :func:`request_stop`: running workers get SIGTERM
(each removes the temporary file it was writing and exits; one that does not
within :data:`STOP_GRACE_S` is killed; a local Dask cluster's workers stop their
items alike, :func:`_dask_worker_term`), queued items are cancelled, and
:func:`run_items` raises ``KeyboardInterrupt`` even when the signal's own
exception was swallowed (a signal that lands in a ``__del__``).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, Sequence

from astrotool.errors import AstroError, WriteError
from astrotool.seeding import derive_seed  # noqa: F401  (public here since the first release)

__docformat__ = "numpy"

KINDS = ("serial", "process", "dask")
"""Executor kinds (``--executor``)."""

STOP_GRACE_S = 5.0
"""Seconds a worker gets to remove its temporary file and exit after SIGTERM before it is killed [s]."""
CONNECT_TIMEOUT_S = 30.0
"""Seconds to reach a ``--scheduler`` and hear it answer as a Dask scheduler [s] (a peer that is something
else, such as the dashboard's port, may accept the connection and never answer)."""


@dataclass(frozen=True)
class ExecutorOptions:
    """How to run items.

    Parameters
    ----------
    kind : {"serial", "process", "dask"}
        Executor.
    jobs : int
        Worker processes (``process`` and a local Dask cluster); 0 = the cores this
        process may use (:func:`usable_cores`).
    scheduler : str or None
        Dask scheduler address; ``None`` starts a ``LocalCluster``.
    shard : tuple of int or None
        ``(i, n)``: run only items ``i, i+n, i+2n, ...``.
    """

    kind: str = "serial"
    jobs: int = 1
    scheduler: str | None = None
    shard: tuple[int, int] | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise AstroError(f"--executor: expected one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.jobs < 0:
            raise AstroError(f"--jobs: must be >= 0, got {self.jobs}")
        if self.shard is not None:
            i, n = self.shard
            if not (n >= 1 and 0 <= i < n):
                raise AstroError(f"--shard: expected i/N with 0 <= i < N, got {i}/{n}")

    @property
    def workers(self) -> int:
        """Number of workers (``jobs``, or :func:`usable_cores` when 0)."""
        return self.jobs or usable_cores()


def _cgroup_cpu_max_files() -> list[Path]:
    """The cgroup v2 ``cpu.max`` files of this process's cgroup and its parents."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return []
    rel = next((line[3:] for line in lines if line.startswith("0::")), None)
    if rel is None:
        return []
    files = []
    for root in (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified")):
        folder = root / rel.strip("/")
        while True:
            files.append(folder / "cpu.max")
            if folder == root:
                break
            folder = folder.parent
    return files


def usable_cores(environ: Mapping[str, str] | None = None,
                 cpu_max: str | os.PathLike | Sequence[str | os.PathLike] | None = None) -> int:
    """The number of cores this process may use: what ``-j 0`` means.

    The smallest of the CPU affinity (``taskset``, Slurm's binding), the cgroup v2
    CPU quota (``cpu.max``: quota / period, rounded up; containers, Slurm's cgroup
    plugin) and ``SLURM_CPUS_PER_TASK``; at least 1.

    Parameters
    ----------
    environ : mapping, optional
        Environment variables (default ``os.environ``).
    cpu_max : path or list of paths, optional
        ``cpu.max`` files to read (default: this process's cgroup and its parents);
        missing or unreadable files are skipped.

    Raises
    ------
    AstroError
        ``SLURM_CPUS_PER_TASK`` is set but not a positive integer.
    """
    environ = os.environ if environ is None else environ
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cores = os.cpu_count() or 1
    files = _cgroup_cpu_max_files() if cpu_max is None else (
        [cpu_max] if isinstance(cpu_max, (str, os.PathLike)) else list(cpu_max))
    for f in files:
        try:
            quota, period = Path(f).read_text().split()[:2]
            if quota != "max":
                cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
        except (OSError, ValueError, ZeroDivisionError):
            continue
    text = environ.get("SLURM_CPUS_PER_TASK", "").strip()
    if text:
        if not text.isdigit() or int(text) < 1:
            raise AstroError(f"SLURM_CPUS_PER_TASK must be a positive integer (the CPUs of a Slurm task), got {text!r}")
        cores = min(cores, int(text))
    return max(1, cores)


def _slurm_int(environ: Mapping[str, str], name: str, default: int | None = None) -> int:
    text = environ.get(name, "").strip()
    if not text:
        if default is None:
            raise AstroError(f"--shard auto: {name} is not set; give --shard I/N")
        return default
    try:
        return int(text)
    except ValueError:
        raise AstroError(f"--shard auto: {name} must be an integer, got {text!r}") from None


def _auto_shard(environ: Mapping[str, str]) -> tuple[int, int]:
    """``(i, N)`` of this Slurm array task: i counts the tasks from the array's first index."""
    if not environ.get("SLURM_ARRAY_TASK_ID", "").strip():
        raise AstroError("--shard auto: not in a Slurm job array (SLURM_ARRAY_TASK_ID is not set); "
                         "submit with sbatch --array, or give --shard I/N")
    task = _slurm_int(environ, "SLURM_ARRAY_TASK_ID")
    count = _slurm_int(environ, "SLURM_ARRAY_TASK_COUNT")
    first = _slurm_int(environ, "SLURM_ARRAY_TASK_MIN", 0)
    step = _slurm_int(environ, "SLURM_ARRAY_TASK_STEP", 1) or 1
    last = _slurm_int(environ, "SLURM_ARRAY_TASK_MAX", first + (count - 1) * step)
    i = (task - first) // step
    indices = f"indices {first}-{last}" + (f" in steps of {step}" if step != 1 else "")
    if (last - first) // step + 1 != count:
        raise AstroError(f"--shard auto: the array ({indices}, {count} tasks) is not one range "
                         "of equal steps, e.g. a resubmitted subset (--array=3,17); give --shard I/N as the first "
                         "submission numbered its tasks: N its task count, I = (task id - its first index) / its "
                         "step (--shard $SLURM_ARRAY_TASK_ID/N for an array 0-(N-1))")
    if not first <= task <= last:
        raise AstroError(f"--shard auto: SLURM_ARRAY_TASK_ID={task} is outside the array ({indices}); "
                         "check the SLURM_ARRAY_TASK_* variables, or give --shard I/N")
    if (task - first) % step:
        raise AstroError(f"--shard auto: SLURM_ARRAY_TASK_ID={task} is not on the array's step ({indices}); "
                         "check the SLURM_ARRAY_TASK_* variables, or give --shard I/N")
    return i, count


def parse_shard(text: str | None, environ: Mapping[str, str] | None = None) -> tuple[int, int] | None:
    """Parse ``"i/N"`` into ``(i, N)``; ``None`` passes through.

    ``"auto"`` is this Slurm array task's share: i = (``SLURM_ARRAY_TASK_ID`` -
    ``SLURM_ARRAY_TASK_MIN``) / ``SLURM_ARRAY_TASK_STEP``, N = ``SLURM_ARRAY_TASK_COUNT``
    (``environ``, default ``os.environ``). An array that is not one evenly stepped
    range (a resubmitted subset) is refused: its count is not the number of shares.
    """
    if text is None:
        return None
    if not str(text).strip():  # `--shard "$TASK"` with TASK unset: every task would run every item
        raise AstroError("--shard: empty; expected i/N (e.g. 0/4) or auto")
    if str(text).strip().lower() == "auto":
        return _auto_shard(os.environ if environ is None else environ)
    try:
        i, n = (int(x) for x in str(text).split("/"))
    except ValueError:
        raise AstroError(f"--shard: expected i/N (e.g. 0/4), got {text!r}") from None
    ExecutorOptions(shard=(i, n))
    return i, n


def select_shard(keys: Sequence[str], shard: tuple[int, int] | None) -> list[int]:
    """Indices of the items this shard runs (every N-th, by position in ``keys``)."""
    if shard is None:
        return list(range(len(keys)))
    i, n = shard
    return list(range(i, len(keys), n))


@dataclass(frozen=True)
class Failure:
    """An item that raised: its key, a one-line cause, the traceback and the exit code its error asks for
    (an :class:`~astrotool.errors.AstroError`'s, 2 for bad input; 1 for anything else)."""

    key: str
    error: str
    traceback: str = ""
    exit_code: int = 1
    full_disk: bool = False
    """The item could not write its output for lack of space (ENOSPC, EDQUOT): the batch cancels the queued items."""


def failure_line(key: str, error: str) -> str:
    """``"<key>: <error>"``, or the error alone when it already begins with the item (``"a.ftr: the flux is NaN"``
    for the item ``a.ftr``, also when the error names it by a longer path), so no message names a file twice."""
    head = error.split(": ", 1)[0]
    if head == key or head.replace("\\", "/").endswith("/" + key):
        return error
    return f"{key}: {error}"


def _cancelled(key: str, cause: Failure) -> Failure:
    """The failure of an item cancelled (not started, or its result dropped) because ``cause`` found the disk full."""
    return Failure(key, f"cancelled: the disk is full (see {cause.key})", exit_code=1)


def _format_error(exc: BaseException) -> str:
    if isinstance(exc, AstroError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _call(fn: Callable, item: Any, seed: int, key: str):
    """Run one item; return ``("ok", result)`` or ``("error", Failure)`` (never raises)."""
    try:
        return "ok", fn(item, seed)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001 - reported, not swallowed
        return "error", Failure(key, _format_error(exc), traceback.format_exc(),
                                exc.exit_code if isinstance(exc, AstroError) else 1,
                                isinstance(exc, WriteError) and exc.errno in WriteError.FULL_DISK)


THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
"""Environment variables that set the threads of the BLAS/OpenMP libraries of a worker."""

_STOP: dict = {"signum": None, "deferred": False, "again": False, "timer": None}
_POOLS: list = []  # process pools running now, whose workers a stop request signals


def request_stop(signum: int) -> bool:
    """Record a stop request (SIGTERM, SIGINT) and send SIGTERM to the running workers.

    Returns
    -------
    bool
        Whether the caller (a signal handler) should raise ``KeyboardInterrupt``
        now: only for the first request, and not once the command is finishing.
    """
    first = _STOP["signum"] is None
    if first:
        _STOP["signum"] = signum
    again = _STOP["again"]
    if again:
        _cancel_resend()
    for pool in list(_POOLS):
        _signal_workers(pool, signal.SIGTERM)
    return (first or again) and not _STOP["deferred"]


def stop_swallowed() -> None:
    """The stop request's ``KeyboardInterrupt`` was swallowed (it was raised inside a ``__del__`` or a
    weakref callback, where Python only prints "Exception ignored"): send the signal again in a
    moment, so that it is raised where the command is running, not at the end of the work item."""
    if _STOP["signum"] is None or _STOP["deferred"]:
        return
    _cancel_resend()
    _STOP["again"] = True
    timer = threading.Timer(0.05, _resend, (_STOP["signum"],))
    timer.daemon = True
    _STOP["timer"] = timer
    timer.start()


_RESEND_LOCK = threading.RLock()  # re-entrant: a signal handler in the main thread may cancel while it holds it


def _resend(signum: int) -> None:
    """Send the swallowed stop signal again, unless the stop was raised meanwhile or the command is
    finishing (:func:`defer_stop`) or over (:func:`reset_stop`)."""
    with _RESEND_LOCK:  # checked and sent as one step: a cancel cannot fall between them
        if _STOP["again"] and not _STOP["deferred"] and _STOP["signum"] == signum:
            os.kill(os.getpid(), signum)


def _cancel_resend() -> None:
    """Forget a pending :func:`_resend`: the stop is being raised, or the command is finishing."""
    with _RESEND_LOCK:
        _STOP["again"] = False
        timer, _STOP["timer"] = _STOP["timer"], None
    if timer is not None:
        timer.cancel()


def stop_requested() -> int | None:
    """The signal of the stop request of this run, if any."""
    return _STOP["signum"]


def defer_stop(defer: bool = True) -> None:
    """While deferred, :func:`request_stop` only records (the command is writing its record)."""
    _STOP["deferred"] = defer
    if defer:
        _cancel_resend()


def reset_stop() -> None:
    """Forget any stop request (a new command in the same process)."""
    _cancel_resend()
    _STOP.update(signum=None, deferred=False)


def stop_interrupt(signum: int | None) -> KeyboardInterrupt:
    """The exception a stop request raises: ``"terminated"`` for SIGTERM, which the command line maps to 143."""
    return KeyboardInterrupt("terminated" if signum == signal.SIGTERM else "")


def _check_stop() -> None:
    """Raise the stop request's ``KeyboardInterrupt`` (its own may have been swallowed by a ``__del__``)."""
    if _STOP["signum"] is not None and not _STOP["deferred"]:
        _cancel_resend()  # raised here: a pending resend would interrupt the unwinding
        raise stop_interrupt(_STOP["signum"])


def _workers(pool) -> list:
    """The worker processes of a ``ProcessPoolExecutor`` (none once it is shut down)."""
    return list((getattr(pool, "_processes", None) or {}).values())


def _signal_workers(pool, signum: int) -> None:
    for proc in _workers(pool):
        try:
            os.kill(proc.pid, signum)
        except (OSError, TypeError):
            pass


_STARTED = None  # in a pool worker: the pool's table of started items (item index -> worker pid)
_ITEM_THREAD: int | None = None  # in a worker: the thread running an item (its ident); None while idle
_UNWINDING = False
_STOPPING = False  # in a local Dask worker: a stop (SIGTERM) arrived; it starts no further item
_ITEM_LOCK = threading.RLock()  # in a local Dask worker: held to send the stop to the item's thread, or withdraw it


def _worker_term(signum, frame):
    """A pool worker's SIGTERM: inside an item, unwind (``atomic_path`` removes the temporary file) and exit; idle,
    exit. A repeated SIGTERM does not interrupt the unwinding."""
    global _UNWINDING
    if _ITEM_THREAD is None:
        os._exit(143)
    if not _UNWINDING:
        _UNWINDING = True
        raise KeyboardInterrupt("terminated")


def _dask_worker_term(signum, frame):
    """A local Dask worker's SIGTERM: as :func:`_worker_term`, the running item unwinds (its temporary file is
    removed) and fails, but the worker stays up, starting no further item, so that the command can still fetch the
    results it holds (items that finished); it exits :data:`STOP_GRACE_S` [s] later unless the command closed it.

    The item runs in a thread of the worker, and a signal is handled in its main thread (Dask's event loop): the
    ``KeyboardInterrupt`` is raised in the item's thread, at its next Python instruction."""
    import ctypes

    global _STOPPING, _UNWINDING
    if not _STOPPING:
        _STOPPING = True
        timer = threading.Timer(STOP_GRACE_S, _dask_worker_exit)
        timer.daemon = True
        timer.start()
    with _ITEM_LOCK:   # reentrant: a second SIGTERM may interrupt this handler
        thread = _ITEM_THREAD
        if thread is not None and not _UNWINDING:
            _UNWINDING = True
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread), ctypes.py_object(KeyboardInterrupt))


def _end_dask_item() -> None:
    """In a local Dask worker's item thread, as its item ends: no stop is sent to it from here on, and one sent
    but not raised yet (the item returned first) is withdrawn: the item keeps its result, and the exception is
    not raised later in Dask's code."""
    import ctypes

    global _ITEM_THREAD
    withdraw, thread = ctypes.pythonapi.PyThreadState_SetAsyncExc, ctypes.c_ulong(threading.get_ident())
    with _ITEM_LOCK:   # no call in here before the withdrawal: a pending exception is raised after a call
        _ITEM_THREAD = None
        if _UNWINDING:
            withdraw(thread, None)


def _dask_worker_exit() -> None:
    """End a stopped local Dask worker whose item did not unwind in time (a long call into C): remove the
    temporary files it was writing, then exit."""
    workspace = sys.modules.get("astrotool.workspace")  # imported where an item wrote through it
    if workspace is not None:
        with contextlib.suppress(Exception):
            workspace.remove_live_temps()
    os._exit(143)


def _worker_unraisable(args, previous: Callable) -> None:
    """A worker's ``sys.unraisablehook``: its stop's ``KeyboardInterrupt`` raised inside a ``__del__`` or a weakref
    callback (where Python only prints "Exception ignored" and the item went on, the worker then taking the
    next one) is not printed but raised again in a moment, where the item runs; other errors go to ``previous``."""
    global _UNWINDING
    if not (isinstance(args.exc_value, KeyboardInterrupt) and _UNWINDING):
        previous(args)
        return
    _UNWINDING = False
    timer = threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGTERM))
    timer.daemon = True
    timer.start()


def _set_parent_death_signal(signum: int) -> None:
    """Linux: have the kernel send ``signum`` to this process when its parent dies."""
    import ctypes
    import ctypes.util

    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(1, signum, 0, 0, 0)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        pass


def _watch_parent(parent: int, interval: float = 0.5) -> None:
    """Thread: once the parent is gone (a new parent pid), SIGTERM this worker; kill it if that does not end it."""
    while os.getppid() == parent:
        time.sleep(interval)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(STOP_GRACE_S)
    os._exit(143)


def _worker_init(threads: int = 1, parent: int | None = None, started=None) -> None:
    """Worker processes: they die with the parent ``parent`` (its pid); SIGTERM removes the
    temporary file being written and exits; SIGINT is left to the parent, which stops the pool.
    ``started``: the pool's shared table where a worker writes its pid as it starts an item.

    Each worker gets ``threads`` OpenMP/BLAS threads (its share of the cores) unless
    the user set them: N workers each starting one thread per core oversubscribe
    the machine, and spinning OpenMP threads then slow GalSim down several-fold.
    """
    global _STARTED
    _STARTED = started
    for var in THREAD_VARIABLES:
        os.environ.setdefault(var, str(threads))
    signal.signal(signal.SIGTERM, _worker_term)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.unraisablehook = functools.partial(_worker_unraisable, previous=sys.unraisablehook)
    if parent is not None:
        _set_parent_death_signal(signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before the line above
            os._exit(143)
        threading.Thread(target=_watch_parent, args=(parent,), daemon=True, name="astro-parent-watch").start()


def _call_in_worker(fn: Callable, item: Any, seed: int, key: str, slot: int | None = None):
    """:func:`_call` in a pool worker; a stop (SIGTERM) ends the worker once the item has cleaned up.
    ``slot``: where this worker writes its pid in the pool's table of started items."""
    global _ITEM_THREAD
    if slot is not None and _STARTED is not None:
        _STARTED[slot] = os.getpid()
    _ITEM_THREAD = threading.get_ident()
    try:
        return _call(fn, item, seed, key)
    except KeyboardInterrupt:
        os._exit(143)
    finally:
        _ITEM_THREAD = None


def _call_in_dask_worker(fn: Callable, item: Any, seed: int, key: str):
    """:func:`_call` in a local Dask worker: a stop (SIGTERM, :func:`_dask_worker_term`) makes the running item and
    any item that would start after it fail as ``terminated``, without ending the worker."""
    global _ITEM_THREAD
    _ITEM_THREAD = threading.get_ident()  # before the check: a stop from here on interrupts this item
    try:
        try:
            if _STOPPING:
                raise KeyboardInterrupt("terminated")
            return _call(fn, item, seed, key)
        finally:
            _end_dask_item()
    except KeyboardInterrupt:   # also a stop raised as the item ended, before _end_dask_item withdrew it
        _end_dask_item()
        return "error", Failure(key, "terminated")


def _dask_worker_init() -> None:
    """In a local cluster's worker process (its main thread): leave Ctrl-C to the command (sent to the whole
    process group, it made each worker print tracebacks), and stop the running item on SIGTERM as pool workers do
    (:func:`_dask_worker_term`)."""
    with contextlib.suppress(ValueError):  # not the worker's main thread
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, _dask_worker_term)
        sys.unraisablehook = functools.partial(_worker_unraisable, previous=sys.unraisablehook)


def _dask_worker_plugin():
    """A Dask ``WorkerPlugin`` that runs :func:`_dask_worker_init` in each worker of a local cluster as it starts,
    also in one that its nanny starts again (a worker killed for memory): one started by hand (``client.run``)
    died on Slurm's SIGTERM with its temporary file left."""
    from distributed import WorkerPlugin

    class AstroStop(WorkerPlugin):
        name = "astro-stop"

        def setup(self, worker):
            _dask_worker_init()

    return AstroStop()


def _local_worker_pids(cluster) -> list[int]:
    """The pids of the worker processes of local cluster ``cluster`` now (one its nanny started again included;
    the nannies run in this process)."""
    pids = []
    for nanny in list(getattr(cluster, "workers", {}).values()):
        with contextlib.suppress(AttributeError):
            pid = nanny.process.process.pid
            if pid:
                pids.append(pid)
    return pids


def run_items(fn: Callable[[Any, int], Any], items: Sequence[Any], keys: Sequence[str] | None = None,
              options: ExecutorOptions = ExecutorOptions(), base_seed: int = 0,
              advance: Callable[[int], None] | None = None,
              client=None, done: Callable[[str, Any], None] | None = None,
              started: Callable[[int], None] | None = None,
              kept: Callable[[str, list], None] | None = None
              ) -> tuple[list[tuple[str, Any]], list[Failure]]:
    """Run ``fn(item, seed)`` for every item of this shard.

    Parameters
    ----------
    fn : callable
        A module-level (picklable) function ``fn(item, seed) -> result``.
    items : sequence
        The work items (picklable: paths and small parameters, never open files).
    keys : sequence of str, optional
        Stable identities of the items (default: their string form); seeds come from them.
    options : ExecutorOptions
        Executor, jobs, scheduler, shard.
    base_seed : int
        The run's seed.
    advance : callable, optional
        Called with 1 after each finished item (progress).
    client : distributed.Client, optional
        The Dask client of ``--scheduler``, already connected (:func:`connected`); default: one made here.
    done : callable, optional
        Called in this process with ``(key, result)`` as each item succeeds (before ``advance``).
    started : callable, optional
        Called with the number of workers about to run the items (1 for serial; ``min(workers, items)``
        for a process pool or a local Dask cluster); not called without items or for a ``--scheduler``
        cluster (its workers are not started here).
    kept : callable, optional
        Serial executor: called with ``(key, paths)`` when a stop (``KeyboardInterrupt``) interrupts the item
        ``key`` after it finished output files (:func:`astrotool.workspace.atomic_path`,
        :func:`astrotool.workspace.whole_outputs`): they stay on disk, whole. (A process-pool or Dask worker
        that a stop ends reports nothing: its item's finished files stay on disk unlisted.)

    Returns
    -------
    results : list of (key, result)
        Successful items, in input order.
    failures : list of Failure
        Items that raised, in input order.
    """
    keys = [str(k) for k in (keys if keys is not None else items)]
    if len(set(keys)) != len(keys):
        raise AstroError("internal: item keys must be unique")
    chosen = select_shard(keys, options.shard)
    tasks = [(i, items[i], derive_seed(base_seed, keys[i]), keys[i]) for i in chosen]
    log = logging.getLogger("astro")
    log.debug("%s executor: %d of %d item(s)%s, %s, base seed %d", options.kind, len(tasks), len(keys),
              f" (shard {options.shard[0]}/{options.shard[1]})" if options.shard else "",
              f"scheduler {options.scheduler}" if options.kind == "dask" and options.scheduler
              else f"{1 if options.kind == 'serial' else options.workers} worker(s)", base_seed)
    advance = _reporting(advance or (lambda n=1: None), done)
    outcomes: dict[int, tuple[str, Any]] = {}
    _check_stop()
    if started is not None and tasks and not (options.kind == "dask" and (options.scheduler or client)):
        started(1 if options.kind == "serial" else min(options.workers, len(tasks)))

    if options.kind == "serial" or not tasks:
        full = None  # the failure that found the disk full: the items after it are not started
        from astrotool import workspace

        for i, item, seed, key in tasks:
            with workspace.collect_finished() as finished:
                try:
                    outcomes[i] = ("error", _cancelled(key, full)) if full else _call(fn, item, seed, key)
                    if outcomes[i][0] == "error" and outcomes[i][1].full_disk:
                        full = outcomes[i][1]
                    advance(1, key, outcomes[i])
                except KeyboardInterrupt:   # a stop after the item finished a file, before `done` recorded it
                    if kept is not None:
                        deferred = _STOP["deferred"]
                        defer_stop()   # a stop sent again does not cut the recording short
                        try:
                            kept(key, workspace.whole_outputs(finished))
                        finally:
                            defer_stop(deferred)
                    raise
            _check_stop()
    elif options.kind == "process":
        outcomes = _run_process(InCommand(fn), tasks, options.workers, advance)
    else:
        outcomes = _run_dask(InCommand(fn), tasks, options, advance, client)

    results, failures = [], []
    for i, *_ in tasks:
        status, value = outcomes[i]
        (results.append((keys[i], value)) if status == "ok" else failures.append(value))
    return results, failures


class InCommand:
    """``fn(item, seed)`` run in a worker process with the command line of the command that runs it (taken here,
    in the command's process), for the provenance of the files it writes
    (:data:`astrotool.provenance.WORKER_COMMAND_LINE`)."""

    def __init__(self, fn: Callable[[Any, int], Any]):
        from astrotool.provenance import command_line

        self.fn, self.command_line = fn, command_line()

    def __call__(self, item: Any, seed: int):
        from astrotool.provenance import WORKER_COMMAND_LINE

        token = WORKER_COMMAND_LINE.set(self.command_line)
        try:
            return self.fn(item, seed)
        finally:
            WORKER_COMMAND_LINE.reset(token)


def _reporting(advance: Callable, done: Callable | None) -> Callable:
    """``advance(1, key, outcome)``: ``done(key, result)`` for a success, then the progress ``advance(1)``."""
    t0 = time.perf_counter()

    def step(n: int = 1, key: str | None = None, outcome: tuple | None = None) -> None:
        if outcome is not None:
            logging.getLogger("astro").debug("item %s: %s, %.1f s after the first started", key,
                                             "done" if outcome[0] == "ok" else f"failed: {outcome[1].error}",
                                             time.perf_counter() - t0)
        if done is not None and outcome is not None and outcome[0] == "ok":
            done(key, outcome[1])
        advance(n)

    return step


def _quiet_resource_tracker() -> None:
    """Before worker processes start: multiprocessing's resource tracker, a process that reads
    ``$PYTHONWARNINGS`` when it starts, warned of "leaked semaphore objects" (which it removes itself) when a
    stop ended a run while its workers started, after the command's last line (breaking --log-format json)."""
    rule = "ignore::UserWarning:multiprocessing.resource_tracker"
    given = os.environ.get("PYTHONWARNINGS", "")
    if rule not in given.split(","):
        os.environ["PYTHONWARNINGS"] = f"{given},{rule}" if given else rule


def _run_process(fn, tasks, workers: int, advance) -> dict:
    """Run ``tasks`` on a pool of ``workers`` processes. A worker that dies (killed for memory, a crash) breaks
    the pool: the item it was running fails, the others not yet finished run on a fresh pool, unless the pool
    that broke was itself a fresh one that finished no item (the workers keep dying: the items left fail)."""
    import multiprocessing as mp

    outcomes: dict = {}
    reported: set = set()  # the items whose outcome went through advance
    n = min(workers, len(tasks))
    threads = max(1, usable_cores() // n)  # the same in every pool: the same BLAS sums
    context = mp.get_context("spawn")
    _quiet_resource_tracker()
    todo, full, replaced = list(tasks), None, False
    while todo:
        started = context.RawArray("q", max(i for i, *_ in todo) + 1)  # item index -> pid of the worker that began it
        pool = _pool(n, context, threads, started)
        todo, full, finished = _run_pool(pool, fn, todo, advance, outcomes, reported, full, started)
        if todo and full is not None:
            _fail(todo, lambda key: _cancelled(key, full), outcomes, reported, advance)
            todo = []
        elif todo and replaced and not finished:
            _fail(todo, lambda key: Failure(key, "not run: the worker processes died again before any item "
                                                 "finished"), outcomes, reported, advance)
            todo = []
        replaced = True
    return outcomes


def _pool(n: int, context, threads: int, started):
    """A pool of ``n`` spawned workers of ``threads`` BLAS threads each, writing to the table ``started``."""
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(max_workers=n, mp_context=context, initializer=_worker_init,
                               initargs=(threads, os.getpid(), started))


def _fail(tasks, failure: Callable[[str], Failure], outcomes: dict, reported: set, advance: Callable) -> None:
    """Record ``failure(key)`` as the outcome of each of ``tasks``."""
    for i, _, _, key in tasks:
        outcomes[i] = ("error", failure(key))
        advance(1, key, outcomes[i])
        reported.add(i)


def _run_pool(pool, fn, tasks, advance, outcomes: dict, reported: set, full: Failure | None, started):
    """Run ``tasks`` on ``pool`` until each has an outcome or the pool breaks (a worker died).

    Returns
    -------
    left : list
        The tasks to run again: not started, or stopped with the pool (not on the worker that died).
    full : Failure or None
        The failure that found the disk full, if any.
    finished : int
        The items whose result came back.
    """
    from concurrent.futures import as_completed
    from concurrent.futures.process import BrokenProcessPool

    _POOLS.append(pool)
    futures: dict = {}
    lost, finished = [], 0
    try:
        for task in tasks:   # filled as submitted: a stop meanwhile still sees what finished
            i, item, seed, key = task
            try:
                futures[pool.submit(_call_in_worker, fn, item, seed, key, i)] = (i, key)
            except BrokenProcessPool:  # a worker died meanwhile
                break
        left = tasks[len(futures):]
        by_index = {task[0]: task for task in tasks}
        for fut in as_completed(futures):
            _check_stop()
            i, key = futures[fut]
            if not fut.cancelled() and isinstance(fut.exception(), BrokenProcessPool):
                lost.append(by_index[i])
                continue
            finished += not fut.cancelled()
            outcomes[i] = _outcome(fut, key, full)
            if full is None and outcomes[i][0] == "error" and outcomes[i][1].full_disk:
                full = outcomes[i][1]
                for other in futures:  # the queued items; the running ones finish (or fail) on their own
                    other.cancel()
            advance(1, key, outcomes[i])
            reported.add(i)
        if lost or left:  # broken: the pool stops its other workers, whose items run again
            workers = _workers(pool)
            dead = _dead_workers(workers, killed=_stop_pool(pool))
            for task in lost:
                i, key = task[0], task[3]
                if started[i] in dead:
                    outcomes[i] = ("error", Failure(key, f"its worker process died ({dead[started[i]]})"))
                    advance(1, key, outcomes[i])
                    reported.add(i)
                else:
                    left.append(task)
            left.sort(key=lambda task: task[0])
    except BaseException:
        # a stop: the items that finished (their files are kept) are reported first, so that
        # `done` records them; then again once the workers have ended (one may finish meanwhile)
        _report_finished(futures, reported, advance, lambda f: f.result(timeout=0))
        _stop_pool(pool)
        _report_finished(futures, reported, advance, lambda f: f.result(timeout=0))
        raise
    finally:
        _POOLS.remove(pool)
    pool.shutdown(wait=True)
    return left, full, finished


def _dead_workers(workers: Sequence, killed: set[int]) -> dict[int, str]:
    """The ``workers`` of a broken pool, ended, that died on their own: not by the SIGTERM with which the pool
    stops the others, nor killed by :func:`_stop_pool` (pids ``killed``). Returns pid -> how
    (``"killed by SIGKILL, e.g. out of memory"``)."""
    dead = {}
    for proc in workers:
        code = proc.exitcode
        if code is None or code in (143, -signal.SIGTERM) or proc.pid in killed:
            continue
        if code == -getattr(signal, "SIGKILL", 9):
            dead[proc.pid] = "killed by SIGKILL, e.g. out of memory"
        elif code < 0:
            with contextlib.suppress(ValueError):
                dead[proc.pid] = f"killed by {signal.Signals(-code).name}"
            dead.setdefault(proc.pid, f"killed by signal {-code}")
        else:
            dead[proc.pid] = f"exit code {code}"
    return dead


def _outcome(fut, key: str, full: Failure | None) -> tuple[str, Any]:
    """A finished future's ``(status, value)``; a cancelled one's failure names ``full``."""
    if fut.cancelled():
        return "error", _cancelled(key, full)
    try:
        return fut.result()
    except Exception as exc:  # a result that could not come back (e.g. not picklable), a Dask worker lost
        return "error", Failure(key, f"worker failed: {_format_error(exc)}")


def _report_finished(futures: dict, reported: set, advance: Callable, result: Callable) -> None:
    """On a stop: pass the futures that finished with success and were not reported yet through ``advance``
    (its ``done`` records their outputs). ``result(future)`` fetches a future's outcome, and raises or returns
    ``None`` where it has none. Nothing here raises but a second stop, which :func:`request_stop` does not raise."""
    for fut, (i, key) in list(futures.items()):
        if i in reported:
            continue
        try:
            outcome = result(fut)
        except Exception:  # noqa: BLE001 - unfinished, failed, cancelled, lost with its worker: nothing was kept
            continue
        if isinstance(outcome, tuple) and outcome and outcome[0] == "ok":
            reported.add(i)
            with contextlib.suppress(Exception):
                advance(1, key, outcome)


def _stop_pool(pool) -> set[int]:
    """Cancel the queued items, SIGTERM the workers and kill those still running after :data:`STOP_GRACE_S`;
    return the pids of those it killed. Once it returns, the workers' exit codes are known (unless a worker
    could not be joined in time)."""
    procs = _workers(pool)
    manager = getattr(pool, "_executor_manager_thread", None)
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in procs:
        try:
            os.kill(proc.pid, signal.SIGTERM)
        except OSError:
            pass
    from multiprocessing.connection import wait

    running = {proc.sentinel: proc for proc in procs}  # a sentinel is ready once its process has ended
    deadline = time.monotonic() + STOP_GRACE_S
    while running and time.monotonic() < deadline:
        for ended in wait(list(running), timeout=max(0.0, deadline - time.monotonic())):
            running.pop(ended)
    for proc in running.values():
        try:
            proc.kill()
        except OSError:
            pass
    if manager is not None:  # it notices the ended workers, fails their futures, closes the queues, joins them
        manager.join(STOP_GRACE_S)
    return {proc.pid for proc in running.values()}


def _connect(client_class, address: str, name: str = "--scheduler"):
    """A Dask ``Client`` of the scheduler at ``address``, or :class:`AstroError` within
    :data:`CONNECT_TIMEOUT_S` (the handshake has no time limit of its own, so it runs in a daemon
    thread that the process may leave behind)."""
    box: dict = {}

    def connect() -> None:
        start = time.monotonic()
        try:
            _refused_at_once(address)
            left = max(1.0, CONNECT_TIMEOUT_S - (time.monotonic() - start))  # one time limit for both steps
            box["client"] = client_class(address, timeout=f"{left:g}s")
        except Exception as exc:  # noqa: BLE001 - refused, unreachable, not Dask, a malformed address
            box["error"] = exc

    thread = threading.Thread(target=connect, name="astro-dask-connect", daemon=True)
    thread.start()
    thread.join(CONNECT_TIMEOUT_S + 5.0)
    if "client" in box:
        return box["client"]
    exc = box.get("error")
    if exc is None:
        why = f"no Dask answer within {CONNECT_TIMEOUT_S:g} s (is it the scheduler's port, 8786 by default?)"
    elif isinstance(exc, (ValueError, TypeError)):
        why = f"not a scheduler address ({exc}); give tcp://HOST:PORT"
    elif isinstance(exc, (OSError, TimeoutError)):
        why = f"cannot connect: {exc}"
    else:
        why = f"cannot connect: it does not answer as a Dask scheduler ({type(exc).__name__})"
    raise AstroError(f"{name} {address}: {why}" if name == "--scheduler" else f"{name}: {address}: {why}")


def _refused_at_once(address: str) -> None:
    """Raise ``ConnectionRefusedError`` at once where nothing listens at a ``tcp://HOST:PORT`` (or
    ``HOST:PORT``) address (Dask's own connect retries a refused connection until its time limit)."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(address if "://" in address else f"tcp://{address}")  # Dask reads HOST:PORT as tcp
    try:
        host, port = parts.hostname, parts.port
    except ValueError:  # a malformed port: Dask's message says so
        return
    if parts.scheme == "tcp" and host and port:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()


def _distributed():
    """The ``distributed`` module, its loggers quieted, or :class:`AstroError` saying how to install it."""
    try:
        import distributed
    except ImportError:
        raise AstroError("--executor dask needs Dask distributed: pip install 'dask[distributed]'") from None
    # Dask's plain-text warnings (cancelled tasks and workers killed on a stop, a version mismatch on connecting)
    # would break --log-format json; `distributed.client` has its own handler, so it is named too
    for name in ("distributed", "distributed.client", "distributed.worker", "distributed.scheduler",
                 "distributed.nanny"):
        logging.getLogger(name).setLevel(logging.ERROR)
    return distributed


@contextlib.contextmanager
def connected(options: ExecutorOptions, n: int, name: str = "--scheduler") -> Iterator:
    """The Dask ``Client`` of ``--scheduler`` for a run of ``n`` items, or ``None`` (another executor, a
    local cluster, no items): connecting before the progress starts, a wrong address is refused at once,
    not after lines of ``0/n`` done. ``name`` says where the address came from in errors (``--scheduler``,
    or ``core.scheduler (cluster.toml)``)."""
    if options.kind != "dask" or not options.scheduler or not n:
        yield None
        return
    client = _connect(_distributed().Client, options.scheduler, name)
    try:
        yield client
    finally:
        client.close()


def _quiet_dask_shutdown() -> None:
    """Silence the loggers of Dask, Tornado and asyncio for the rest of this process: a cluster stopped while it
    starts leaves tasks whose errors ("Nanny failed to start") are printed when they are collected."""
    for name in ("distributed", "asyncio", "tornado"):
        logger = logging.getLogger(name)
        logger.setLevel(logging.CRITICAL + 1)
        logger.propagate = False
        for handler in list(logger.handlers):  # Dask's own handlers (silence_logs) would still print
            handler.setLevel(logging.CRITICAL + 1)


def _close_starting_clusters(clusters) -> None:
    """Close, quietly, the local ``clusters`` a stop interrupted while they started (a half-made one too), so
    that Dask's exit handler does not print its tracebacks (``AssertionError: Status.init``) on stderr."""
    from distributed.deploy.spec import SpecCluster

    _quiet_dask_shutdown()
    for c in clusters:
        with contextlib.suppress(BaseException):  # a half-started cluster may fail to close
            c.close(timeout=STOP_GRACE_S)
        SpecCluster._instances.discard(c)  # Dask's atexit handler would close it again, loudly


def _run_dask(fn, tasks, options: ExecutorOptions, advance, client=None) -> dict:
    _distributed()  # or AstroError: not installed
    from distributed import Client, LocalCluster, as_completed

    cluster, own = None, client is None  # a client given is closed by who made it
    if own and options.scheduler:
        client = _connect(Client, options.scheduler)
    elif own:
        from distributed.deploy.spec import SpecCluster

        before = set(SpecCluster._instances)  # the caller's own clusters, left alone
        # a worker process quiets its log handlers only while it runs: closing, it printed Dask's INFO lines
        # ("Received 'close-stream'") after the command's last line; its `distributed` loggers start at ERROR
        # instead (distributed.client and distributed.gc keep Dask's own WARNING).
        # The scheduler's HTTP server (dashboard_address None still starts it, on 8787) takes a free port of
        # this host only, with no dashboard: 8787 taken by another user's cluster gave a plain-text "Port 8787
        # is already in use" warning
        os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "error")
        _quiet_resource_tracker()
        try:
            cluster = LocalCluster(n_workers=min(options.workers, len(tasks)), threads_per_worker=1,
                                   processes=True, dashboard_address="127.0.0.1:0", silence_logs=logging.ERROR,
                                   scheduler_kwargs={"dashboard": False})
            client = Client(cluster)
            with contextlib.suppress(Exception):   # best effort: a worker that cannot is still used
                client.register_plugin(_dask_worker_plugin())
        except KeyboardInterrupt:  # a stop while the cluster starts
            _close_starting_clusters((set(SpecCluster._instances) | {cluster}) - before - {None})
            raise
    outcomes = {}
    futures: dict = {}
    reported: set = set()  # the items whose outcome went through advance
    stack = contextlib.ExitStack()   # what a stop changes until the cluster is closed
    call = _call_in_dask_worker if cluster is not None else _call  # a --scheduler's workers are not astro's to stop
    try:
        for i, item, seed, key in tasks:   # filled as submitted, as in the process pool
            futures[client.submit(call, fn, item, seed, key, key=f"astro-{key}-{seed}", pure=False)] = (i, key)
        full = None
        for fut in as_completed(list(futures)):
            _check_stop()
            i, key = futures[fut]
            outcomes[i] = _outcome(fut, key, full)
            if full is None and outcomes[i][0] == "error" and outcomes[i][1].full_disk:
                full = outcomes[i][1]
                client.cancel([f for f in futures if not f.done()])
            advance(1, key, outcomes[i])
            reported.add(i)
    except BaseException:
        if cluster is not None:   # the scheduler's "broadcast to <worker> failed" of workers that stop, in plain text
            scheduler_log = logging.getLogger("distributed.scheduler")
            stack.callback(scheduler_log.setLevel, scheduler_log.level)
            scheduler_log.setLevel(logging.CRITICAL)
        _stop_dask_items(client, futures, reported, advance, _local_worker_pids(cluster) if cluster else [])
        raise
    finally:
        try:
            if own:
                client.close()
            if cluster is not None:
                cluster.close()
        finally:
            stack.close()
    return outcomes


def _stop_dask_items(client, futures: dict, reported: set, advance: Callable, pids: Sequence[int]) -> None:
    """On a stop: SIGTERM the local cluster's workers ``pids`` (their running items remove their temporary files
    and fail, :func:`_dask_worker_term`); report the items that finished, also those whose result the client has
    not heard of yet (held by a worker); cancel the others, and wait for the workers' running items to end
    (up to :data:`STOP_GRACE_S` [s]: one stuck in a long C call ends with its worker). Nothing here raises but a
    second stop."""
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)
    if pids:  # first: a worker that ends meanwhile (stuck in C) is not started again to compute its results anew
        with contextlib.suppress(Exception):
            client.run(_no_restart, nanny=True)
    held = _report_held(client, futures, reported, advance)
    if not pids:  # a --scheduler's workers are not astro's to stop
        return
    with contextlib.suppress(Exception):
        held |= _report_held(client, futures, reported, advance)  # those that finished while the first were fetched
        client.cancel([f for f in futures if not f.done() and f.key not in held])
        deadline = time.monotonic() + STOP_GRACE_S + 1
        while any(client.run(_item_running, on_error="ignore").values()) and time.monotonic() < deadline:
            time.sleep(0.05)


def _report_held(client, futures: dict, reported: set, advance: Callable) -> set:
    """Report the items that finished (:func:`_report_finished`), also those whose result the client has not
    heard of yet (held by a worker); return the keys of those held."""
    held = set()
    with contextlib.suppress(Exception):
        held = {key for key, workers in client.who_has(list(futures)).items() if workers}
    _report_finished(futures, reported, advance,
                     lambda f: f.result(timeout=STOP_GRACE_S) if f.status == "finished" or f.key in held else None)
    return held


def _item_running() -> bool:
    """In a worker: whether an item is running (or unwinding)."""
    return _ITEM_THREAD is not None


def _no_restart(dask_worker) -> None:
    """On a local cluster's nanny (``dask_worker``): do not start its worker again when it ends (a stop)."""
    dask_worker.close_gracefully(reason="astro-stop")
