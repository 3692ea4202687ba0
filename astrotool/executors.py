"""Run per-item work (a tile, a shard, a file) serially, in processes or on Dask.

One interface for every plugin: :func:`run_items` calls ``fn(item, seed)`` for
each item and collects results and failures.

- ``serial``: in this process.
- ``process``: a pool of ``--jobs`` worker processes (spawned, so CUDA and
  threads are safe).
- ``dask``: Dask distributed, on the cluster at ``--scheduler tcp://host:8786``
  or on a ``LocalCluster`` of ``--jobs`` workers when no address is given.

``--shard i/N`` keeps every N-th item starting at item i (0-based), for Slurm
job arrays (``--shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT``).

Each item's random seed is derived from the run's base seed and the item's key
(:func:`derive_seed`), never from its position in a worker's queue, so results
are identical whatever the executor, the number of jobs or the sharding.
A failing item does not stop the others; its error is returned as a
:class:`Failure`.
"""

from __future__ import annotations

import os
import signal
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from astrotool.errors import AstroError
from astrotool.seeding import derive_seed  # noqa: F401  (public here since the first release)

__docformat__ = "numpy"

KINDS = ("serial", "process", "dask")


@dataclass(frozen=True)
class ExecutorOptions:
    """How to run items.

    Parameters
    ----------
    kind : {"serial", "process", "dask"}
        Executor.
    jobs : int
        Worker processes (``process`` and a local Dask cluster); 0 = all cores.
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
        """Number of workers (``jobs``, or the number of cores when 0)."""
        return self.jobs or (os.cpu_count() or 1)


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """Parse ``"i/N"`` into ``(i, N)``; ``None`` passes through."""
    if text in (None, ""):
        return None
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
                                exc.exit_code if isinstance(exc, AstroError) else 1)


THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def _worker_init(threads: int = 1) -> None:
    """Worker processes: SIGTERM raises KeyboardInterrupt so partial files are removed;
    SIGINT is left to the parent, which cancels the pool.

    Each worker gets ``threads`` OpenMP/BLAS threads (its share of the cores) unless
    the user set them: N workers each starting one thread per core oversubscribe
    the machine, and spinning OpenMP threads then slow GalSim down several-fold.
    """
    for var in THREAD_VARIABLES:
        os.environ.setdefault(var, str(threads))
    def _term(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, _term)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def run_items(fn: Callable[[Any, int], Any], items: Sequence[Any], keys: Sequence[str] | None = None,
              options: ExecutorOptions = ExecutorOptions(), base_seed: int = 0,
              advance: Callable[[int], None] | None = None) -> tuple[list[tuple[str, Any]], list[Failure]]:
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
    advance = advance or (lambda n=1: None)
    outcomes: dict[int, tuple[str, Any]] = {}

    if options.kind == "serial" or not tasks:
        for i, item, seed, key in tasks:
            outcomes[i] = _call(fn, item, seed, key)
            advance(1)
    elif options.kind == "process":
        outcomes = _run_process(fn, tasks, options.workers, advance)
    else:
        outcomes = _run_dask(fn, tasks, options, advance)

    results, failures = [], []
    for i, *_ in tasks:
        status, value = outcomes[i]
        (results.append((keys[i], value)) if status == "ok" else failures.append(value))
    return results, failures


def _run_process(fn, tasks, workers: int, advance) -> dict:
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    outcomes = {}
    n = min(workers, len(tasks))
    pool = ProcessPoolExecutor(max_workers=n, mp_context=mp.get_context("spawn"),
                               initializer=_worker_init, initargs=(max(1, (os.cpu_count() or 1) // n),))
    try:
        futures = {pool.submit(_call, fn, item, seed, key): (i, key) for i, item, seed, key in tasks}
        for fut in as_completed(futures):
            i, key = futures[fut]
            try:
                outcomes[i] = fut.result()
            except Exception as exc:  # a worker died (e.g. killed for memory)
                outcomes[i] = ("error", Failure(key, f"worker failed: {_format_error(exc)}"))
            advance(1)
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return outcomes


def _run_dask(fn, tasks, options: ExecutorOptions, advance) -> dict:
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise AstroError("--executor dask needs Dask distributed: pip install 'dask[distributed]'") from None
    import logging

    for name in ("distributed", "distributed.worker", "distributed.scheduler", "distributed.nanny"):
        logging.getLogger(name).setLevel(logging.WARNING)

    cluster = None
    if options.scheduler:
        try:
            client = Client(options.scheduler, timeout="20s")
        except (OSError, TimeoutError) as exc:
            raise AstroError(f"--scheduler {options.scheduler}: cannot connect: {exc}") from None
    else:
        cluster = LocalCluster(n_workers=min(options.workers, len(tasks)), threads_per_worker=1,
                               processes=True, dashboard_address=None, silence_logs=logging.WARNING)
        client = Client(cluster)
    outcomes = {}
    try:
        futures = {client.submit(_call, fn, item, seed, key, key=f"astro-{key}-{seed}", pure=False): (i, key)
                   for i, item, seed, key in tasks}
        for fut in as_completed(list(futures)):
            i, key = futures[fut]
            try:
                outcomes[i] = fut.result()
            except Exception as exc:
                outcomes[i] = ("error", Failure(key, f"worker failed: {_format_error(exc)}"))
            advance(1)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return outcomes
