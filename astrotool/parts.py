"""Parts: how ``--shard I/N`` tasks of one command make ONE table from many inputs.

``plato detect`` and ``ztf predict`` follow one convention. Each input (an *item*) of a run is computed
into a *part* file in the run's parts folder, named by

- the run's digest (:func:`run_digest`: the settings, the list of inputs and the code's versions, so a
  part of other settings, inputs or code is never taken),
- the item's key and the size and modification time of its source file (:func:`stamp`: an input edited
  since is computed again).

An item that failed leaves a *failed mark* beside (:func:`failed_mark`, holding the error, named without
the stamp, so a task rerun after the input is mended finds and removes it): it counts as finished. The task
that finds every item finished (a part or a failed mark) writes the table, recording the names of the
parts it merged in the table's metadata (:func:`merged_record`). A task clears its own parts, and reads the
parts and writes the table, under :func:`lock`, so two tasks that end together never write a table that
misses the other's rows, nor remove a part written again meanwhile. Once the table holds every item, the
parts it merged are removed (:func:`remove`); while an item has failed the parts stay, so a rerun of the
failed item's task writes the whole table.

Once the parts of a table are removed, no task would ever find them again. So the table stands in for the
parts it merged (:func:`held`, :func:`gather`):

- a task rerun without ``--overwrite`` whose items the table holds (the same run digest and input stamps)
  is kept: nothing is computed and nothing is written;
- a task that has computed its items and finds the other items' parts gone but held by the table takes
  those items' rows from the table and writes it again. A lone ``--overwrite --shard 0/2`` rerun thus
  replaces its share of the table; a whole array rerun with ``--overwrite`` rewrites the table as each task
  ends, the last one with every row of this overwrite (a task's part is removed only once a table holding
  its rows is written, under the lock).

Under ``--overwrite`` a task computes its items again (:func:`clear_mine`: its parts written before this
overwrite began are removed; those of a stopped run of it are kept) and is never kept from the table.

Importing it imports only the standard library.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

__docformat__ = "numpy"

RECORD_KEY = "parts"
"""Key of :func:`merged_record` in a table's metadata."""


def stamp(path) -> dict:
    """Size [bytes] and modification time [ns] of a file (``{}``: missing or unreadable)."""
    try:
        st = Path(path).stat()
    except OSError:
        return {}
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def run_digest(settings: dict, versions: dict) -> str:
    """The digest naming one run's parts: its ``settings`` (inputs included) and the ``versions`` of the code
    the rows depend on (a plugin's version, an algorithm's), so parts of older code are never merged."""
    from astrotool.made_with import digest, flatten

    return digest(flatten({"settings": settings, "versions": versions}))


def part_path(folder, run: str, key: str, source, suffix: str) -> Path:
    """The part file of item ``key`` of run ``run`` (:func:`run_digest`) in ``folder``, named by the
    :func:`stamp` of its ``source`` file too (``suffix``: ``.json``, ``.parquet``, ...)."""
    from astrotool.made_with import digest

    return Path(folder) / f"{run}-{digest({'key': key})}-{digest(stamp(source))}{suffix}"


def failed_mark(part) -> Path:
    """Beside an item's part: its error when it failed (the item counts as finished), named without the
    source's stamp, so a rerun of its task once the input is mended finds and removes it."""
    return Path(part).with_name(Path(part).name.rsplit("-", 1)[0] + ".failed")


def clear_mine(parts, overwrite) -> None:
    """Before a task computes its items (``parts``: their part paths): remove their failed marks and, under
    ``overwrite`` (:func:`astrotool.made_with.replaces`), their parts written before this overwrite began."""
    from astrotool.made_with import replaces

    for part in parts:
        if replaces(overwrite, part):
            Path(part).unlink(missing_ok=True)
        failed_mark(part).unlink(missing_ok=True)


def mark_failed(errors: dict) -> None:
    """Write the failed mark of each ``{part path: error}``."""
    for part, error in errors.items():
        Path(part).parent.mkdir(parents=True, exist_ok=True)
        failed_mark(part).write_text(str(error))


def collect(parts: dict, read) -> tuple[dict, dict, list]:
    """One pass over ``{key: part path}``: the items done (``read(path)``), failed (their error) and waiting
    for another task (a part gone meanwhile, once another task wrote the table, waits)."""
    found, failed, waiting = {}, {}, []
    for key, part in parts.items():
        try:
            found[key] = read(part)
        except FileNotFoundError:
            try:
                failed[key] = failed_mark(part).read_text()
            except FileNotFoundError:
                waiting.append(key)
    return found, failed, waiting


def merged_record(run: str, parts: dict, found) -> dict:
    """What a table keeps in its metadata (under :data:`RECORD_KEY`): its ``run`` (:func:`run_digest`) and the
    names of the parts of ``parts`` (``{key: path}``) whose items it holds (``found``)."""
    return {"run": run, "merged": sorted(Path(parts[k]).name for k in found)}


def of_run(table_metadata: dict | None, run: str) -> bool:
    """Whether a table was written by a task of ``run`` (:func:`run_digest`; the same settings, inputs and code):
    then it is this run's table, a part of it while an item has failed, not one made otherwise."""
    return ((table_metadata or {}).get(RECORD_KEY) or {}).get("run") == run


def held(table_metadata: dict | None, parts: dict) -> set:
    """The keys of ``parts`` (``{key: path}``) whose items a table holds, by its metadata (its merged parts'
    names: the same run, item and source stamp)."""
    merged = set(((table_metadata or {}).get(RECORD_KEY) or {}).get("merged") or ())
    return {k for k, p in parts.items() if Path(p).name in merged}


def of_other_runs(parts: dict, waiting) -> list:
    """The keys among ``waiting`` (of ``parts``, ``{key: path}``) whose item has a part of another run in the
    parts folder: a task of this name run with other settings (another model), whose parts this run never
    merges."""
    if not waiting:
        return []
    runs: dict = {}   # item digest -> the runs with a part of it (the folder listed once; hidden files, such as
    folder = Path(parts[waiting[0]]).parent   # a part being written, and failed marks are no parts)
    with contextlib.suppress(OSError):
        for q in folder.iterdir():
            bits = q.name.split("-", 2)
            if not q.name.startswith(".") and q.suffix != ".failed" and len(bits) == 3:
                runs.setdefault(bits[1], set()).add(bits[0])
    out = []
    for k in waiting:
        run, item = Path(parts[k]).name.split("-", 2)[:2]
        if runs.get(item, set()) - {run}:
            out.append(k)
    return out


def waiting_message(done: int, total: int, table, others: int = 0) -> str:
    """What a task that leaves items to the others says; ``others``: how many of those items have parts of
    another run (:func:`of_other_runs`)."""
    text = (f"{done} of {total} input(s) done (the other --shard tasks do the rest); the task that finishes "
            f"last writes {table}")
    if others:
        text += (f"; {others} of the other inputs have parts of another run of this name (other settings or "
                 "model), which this run does not merge: run their tasks with this task's settings")
    return text


def log_waiting(log: logging.Logger, done: int, total: int, table, others: int = 0) -> None:
    """Log :func:`waiting_message` (a warning when other runs' parts stand in the way)."""
    (log.warning if others else log.info)("%s", waiting_message(done, total, table, others))


_UNLOCKED: set = set()
"""The lock files that could not be locked (warned about once)."""


@contextlib.contextmanager
def lock(table):
    """Hold an exclusive lock on ``.<table name>.lock`` beside ``table`` while a task clears its parts, or
    reads the parts and writes the table. Where the file system has no locks (a Lustre mount without
    ``flock``), it warns once and goes on unlocked."""
    path = Path(table).with_name(f".{Path(table).name}.lock")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a")
    except OSError as e:
        handle, error = None, e
    else:
        try:
            import fcntl

            fcntl.flock(handle, fcntl.LOCK_EX)
            error = None
        except (ImportError, OSError) as e:
            error = e
    if error is not None and str(path) not in _UNLOCKED:
        _UNLOCKED.add(str(path))
        logging.getLogger(__name__).warning("%s: cannot be locked (%s): --shard tasks that end at the same moment "
                                            "may write a table missing the other's rows; rerun a task to mend it",
                                            path, error)
    try:
        yield
    finally:
        if handle is not None:
            handle.close()   # releases the lock


def gather(parts: dict, read, table, rows_of) -> tuple[dict, dict, list, set]:
    """Under :func:`lock`: :func:`collect` the items of ``parts`` (``{key: path}``, ``read(path)`` their rows),
    and take those whose parts are gone but the ``table`` holds (:func:`held`) from it (``rows_of(table, keys)``:
    ``{key: rows}``).

    Returns
    -------
    found, failed, waiting, from_parts
        As :func:`collect`, ``found`` in the order of ``parts``; ``from_parts``: the keys read from parts.
    """
    found, failed, waiting = collect(parts, read)
    from_parts = set(found)
    if waiting and Path(table).is_file():
        from astrotool.io.tables import parquet_metadata

        in_table = held(parquet_metadata(table), {k: parts[k] for k in waiting})
        if in_table == set(waiting):
            found.update(rows_of(table, waiting))
        waiting = [k for k in waiting if k not in in_table]   # those the table holds are done
    return {k: found[k] for k in parts if k in found}, failed, waiting, from_parts


def remove(folder, run: str, merged, current) -> None:
    """Once a table holds every item: remove the parts it merged (``merged``: their paths), the files of other
    runs (other settings, inputs or code) in ``folder``, and this run's parts of an item's earlier source (the
    file edited since; ``current``: every item's part path now); the folder goes once empty, and its parent
    when that is an empty ``.parts`` folder."""
    folder = Path(folder)
    for path in merged:
        Path(path).unlink(missing_ok=True)
    now = {Path(p).name for p in current}
    items = {name.rsplit("-", 1)[0] for name in now}
    for path in folder.glob("*"):
        stale = path.name not in now and path.suffix != ".failed" and path.name.rsplit("-", 1)[0] in items
        if not path.name.startswith(f"{run}-") or stale:
            with contextlib.suppress(OSError):
                path.unlink()
    for empty in (folder, folder.parent if folder.parent.name == ".parts" else None):
        if empty is not None:
            with contextlib.suppress(OSError):
                empty.rmdir()
