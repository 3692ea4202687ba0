"""The workspace convention: one folder per project, atomic writes, run records.

A workspace is a folder holding ``astro.toml`` (its configuration layer),
``runs/`` (one ``runs/<utc>-<command>/run.json`` per command run) and one folder
per plugin (``dre/``, ``lens/``, ...) with that plugin's stage folders, as
declared through the ``astro_workspace_stages`` hook.

Every output is written to a temporary file in the same folder and renamed into
place only when complete (:func:`atomic_path`), so an interrupted run never leaves
a truncated file that looks finished, and re-running skips finished outputs.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import socket
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

__docformat__ = "numpy"

WORKSPACE_FILE = "astro.toml"
"""File marking a workspace's root folder (and holding its configuration)."""

# temporary files being written right now (temporary path -> final path); removed on SIGINT/SIGTERM
_LIVE_TEMPS: dict[Path, Path] = {}
# folders already swept of dead writers' temporary files by this process
_SWEPT: set[Path] = set()
# temporary files whose write failed: HDF5's later complaints about them are not repeated
_FAILED_TEMPS: set[str] = set()
# the errors of those writes, kept with their frames: freeing HDF5 objects of a file that HDF5
# failed to close crashes the process (segmentation fault), so they live until it exits
_KEPT: list[BaseException] = []
# the files atomic_path and atomic_dir finish inside :func:`collect_finished` (a serial item), else None: a stop
# that interrupts the item after it finished a file keeps the file, and the run's record lists it
_FINISHED: list[tuple[Path, int]] | None = None


@contextlib.contextmanager
def collect_finished() -> Iterator[list[tuple[Path, int]]]:
    """Collect what :func:`atomic_path` and :func:`atomic_dir` finish inside the block, in order: ``(path,
    inode)``, noted just before the rename that puts the new file or folder (that inode) at ``path``. A block
    inside another adds its entries to the outer one's as it ends."""
    global _FINISHED
    outer, _FINISHED = _FINISHED, []
    inner = _FINISHED
    try:
        yield inner
    finally:
        _FINISHED = outer
        if outer is not None:
            outer.extend(inner)


def whole_outputs(finished) -> list[Path]:
    """The output files among ``finished`` (:func:`collect_finished`'s entries): each path that holds what was
    renamed there (a stop before the rename leaves the old file or nothing: not listed), a folder as its files,
    leaving out hidden files (settings and checksum records, markers) and what is gone since."""
    out: list[Path] = []
    for path, inode in finished:
        path = Path(path)
        if path.name.startswith(".") or not _holds(path, inode):   # gone, replaced, or never renamed there
            continue
        if path.is_dir():
            out += sorted(p for p in path.rglob("*") if p.is_file()
                          and not any(part.startswith(".") for part in p.relative_to(path).parts))
        else:
            out.append(path)
    return list(dict.fromkeys(out))


def _note_finished(path: Path, tmp: Path) -> None:
    """Note that ``tmp`` is about to be renamed to ``path``, before the rename: a stop right after the rename
    cannot leave it unnoted (:func:`whole_outputs` checks that the rename happened)."""
    if _FINISHED is not None:
        _FINISHED.append((path, os.stat(tmp).st_ino))


def _host() -> str:
    """This machine's short name, as temporary file names carry it (``[A-Za-z0-9_-]``)."""
    name = socket.gethostname().split(".")[0] or "host"
    return re.sub(r"[^A-Za-z0-9_-]", "_", name)


def temp_sibling(path: str | os.PathLike) -> Path:
    """Return a fresh temporary path beside ``path`` with the same extension.

    Parameters
    ----------
    path : path-like
        The final output path.

    Returns
    -------
    pathlib.Path
        ``<dir>/.<name>.partial-<host>-<pid>-<token><suffix>``: hidden, same folder
        (so the final rename is atomic), same suffix (so writers that look at the
        extension still work), and naming its writer, so that a later run can remove
        it once that process is gone (:func:`remove_stale_temps`).
    """
    path = Path(path)
    return path.with_name(f".{path.name}.partial-{_host()}-{os.getpid()}-{secrets.token_hex(4)}{path.suffix}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: someone else's process
        return True
    return True


def remove_stale_temps(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary files in ``folder`` left by writers of this machine that are
    gone (``kill -9``, a node crash); return them. Another machine's are left alone,
    since its processes cannot be seen from here.

    Parameters
    ----------
    folder : path-like
        A folder outputs are written to.
    """
    import shutil

    pattern = re.compile(r"\.(.+)\.(partial|replaced)-" + re.escape(_host()) + r"-(\d+)-[0-9a-f]{8}")
    removed = []
    with contextlib.suppress(OSError), os.scandir(folder) as entries:
        for entry in entries:
            m = pattern.match(entry.name)
            if not m or int(m.group(3)) == os.getpid() or _alive(int(m.group(3))):
                continue
            with contextlib.suppress(OSError):
                if m.group(2) == "replaced":  # a folder set aside by atomic_dir, whose swap never finished
                    final = Path(folder) / m.group(1)
                    if not final.exists():
                        os.rename(entry.path, final)  # the only copy: it comes back
                        continue
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path)
                else:
                    os.unlink(entry.path)
                removed.append(Path(entry.path))
    return removed


#: How astropy ("Not enough space on disk: requested …") and numpy's ``tofile`` ("1048576 requested
#: and 260704 written") report a write the disk had no room for, with no errno.
_SHORT_WRITE = re.compile(r"Not enough space on disk|\d+ requested and \d+ written")


def write_failure(exc: BaseException, path: str | os.PathLike | None = None):
    """The :class:`~astrotool.errors.WriteError` behind ``exc``, if it is a write that failed
    for lack of space or permission; None otherwise.

    Parameters
    ----------
    exc : BaseException
        What a writer raised: an ``OSError`` (ENOSPC, EDQUOT, EROFS, EACCES), or anything
        whose cause is one or whose text reports one (HDF5 puts ``errno = 28`` in a
        ``RuntimeError``'s message).
    path : path-like, optional
        The output being written; named unless the error names another file being
        written (a temporary file is named by its final path).
    """
    from astrotool.errors import AstroError, WriteError

    seen = set()
    while exc is not None and id(exc) not in seen and not isinstance(exc, AstroError):
        seen.add(id(exc))
        number, filename = getattr(exc, "errno", None), getattr(exc, "filename", None)
        text = str(exc)
        if number not in WriteError.REASONS and (m := re.search(r"errno = (\d+)", text)):
            number = int(m.group(1))
        if number not in WriteError.REASONS and isinstance(exc, OSError) and _SHORT_WRITE.search(text):
            number = errno.ENOSPC  # astropy and numpy report a full disk without an errno
        if number in WriteError.REASONS:
            if filename is None and (m := re.search(r"filename = '([^']*)'", text)):
                filename = m.group(1)
            if not filename:
                return WriteError(path, number) if path is not None else None
            target = _LIVE_TEMPS.get(Path(os.fsdecode(filename)))
            if target is None and path is not None:
                # this output, or a folder made for it; another file's error (an input) is not a write's
                mine = Path(os.fsdecode(filename)) in (Path(path), *Path(path).parents)
                return WriteError(path, number) if mine else None
            return WriteError(target or os.fsdecode(filename), number)
        exc = exc.__cause__ or exc.__context__
    return None


def _free_space(tmp: Path) -> None:
    """Empty ``tmp`` through the descriptors this process still has open on it (HDF5 keeps
    a file it failed to close open until exit, holding the disk space that the run
    record needs). Linux (``/proc``); elsewhere nothing is done."""
    with contextlib.suppress(OSError):
        for fd in os.listdir("/proc/self/fd"):
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/self/fd/{fd}").removesuffix(" (deleted)") == str(tmp.absolute()):
                    os.ftruncate(int(fd), 0)


def _quiet_repeats() -> None:
    """Drop the errors a library prints on its own about a temporary file whose write
    failed for lack of space or permission (HDF5 repeats it, with a traceback, as each
    of its objects is freed): the command reports it once, naming the output."""
    import sys

    if getattr(sys.unraisablehook, "_astro_quiet", False):
        return

    def repeat(value) -> bool:
        text = str(value)
        return ".partial-" in text and write_failure(value) is not None and any(
            str(t) in text for t in [*_LIVE_TEMPS, *_FAILED_TEMPS])

    def unraisable(args, _previous=sys.unraisablehook):
        if not repeat(args.exc_value):
            _previous(args)

    def printed(kind, value, tb, _previous=sys.excepthook):
        if not repeat(value):
            _previous(kind, value, tb)

    unraisable._astro_quiet = True
    sys.unraisablehook, sys.excepthook = unraisable, printed


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Write a file atomically: yield a temporary path, rename it on success.

    Parameters
    ----------
    path : path-like
        The final output path. Its folder is created if needed; the first write to
        a folder removes the temporary files of dead writers there.

    Yields
    ------
    pathlib.Path
        Where to write. On normal exit it is renamed to ``path``; on an
        exception (or Ctrl-C) it is removed and ``path`` is left untouched.

    Raises
    ------
    astrotool.errors.WriteError
        The disk is full, or the folder cannot be written: the message names
        ``path`` (not the temporary file).

    Examples
    --------
    >>> with atomic_path("out/table.parquet") as tmp:   # doctest: +SKIP
    ...     pq.write_table(table, tmp)
    """
    path = Path(path)
    tmp = temp_sibling(path)
    _LIVE_TEMPS[tmp] = path
    _quiet_repeats()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.parent not in _SWEPT:
            _SWEPT.add(path.parent)
            remove_stale_temps(path.parent)
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"{tmp}: the writer produced no file for {path}")
        _note_finished(path, tmp)
        os.replace(tmp, path)
    except Exception as exc:
        failure = write_failure(exc, path)
        if failure is None:
            raise
        _FAILED_TEMPS.add(str(tmp))
        _KEPT.append(exc)
        _free_space(tmp)
        raise failure from exc
    finally:
        _LIVE_TEMPS.pop(tmp, None)
        with contextlib.suppress(OSError):  # gone, or a read-only folder (EROFS): never hide the real error
            tmp.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Write a folder atomically: yield a temporary folder, swap it in on success.

    The previous folder at ``path`` (a data set being re-made) stays whole until the new
    one is complete, and comes back if the swap fails; a writer killed mid-swap leaves it
    set aside under a name that the next write to the parent folder restores
    (:func:`remove_stale_temps`).

    Parameters
    ----------
    path : path-like
        The final folder. Its parent is created if needed.

    Yields
    ------
    pathlib.Path
        An empty temporary folder beside ``path`` to fill. On normal exit it replaces
        ``path``; on an exception (or Ctrl-C) it is removed and ``path`` is untouched.

    Raises
    ------
    astrotool.errors.WriteError
        The disk is full, or the parent folder cannot be written: the message names ``path``.
    """
    import shutil

    path = Path(path)
    tmp = temp_sibling(path).with_suffix("") if path.suffix else temp_sibling(path)
    aside, new = None, None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.parent not in _SWEPT:
            _SWEPT.add(path.parent)
            remove_stale_temps(path.parent)
        tmp.mkdir()
        yield tmp
        aside = path.with_name(tmp.name.replace(".partial-", ".replaced-", 1))
        new = os.stat(tmp).st_ino
        _note_finished(path, tmp)
        try:
            if path.exists():
                os.rename(path, aside)
            os.rename(tmp, path)
        except BaseException:
            if aside.exists() and not path.exists():
                os.rename(aside, path)  # the old folder comes back (also when a signal came mid-rename)
            raise
        if aside.exists():  # under the temporary name (free again) before it is deleted: only a whole
            os.rename(aside, tmp)  # folder set aside ever carries .replaced-, which a sweep puts back
    except Exception as exc:
        failure = write_failure(exc, path)
        if failure is None:
            raise
        raise failure from exc
    finally:
        if aside is not None and _holds(path, new):  # a stop came right after the swap: the old folder goes
            with contextlib.suppress(OSError):
                os.rename(aside, tmp)
        shutil.rmtree(tmp, ignore_errors=True)


def _holds(path: Path, inode: int | None) -> bool:
    """Whether ``path`` is the file or folder of ``inode`` (what a rename put there)."""
    try:
        return inode is not None and path.stat().st_ino == inode
    except OSError:
        return False


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (UTF-8) and return the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json_atomic(path: str | os.PathLike, obj) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically and return the path."""
    from astrotool.console import to_json

    return write_text_atomic(path, to_json(obj, indent=2) + "\n")


def remove_live_temps() -> None:
    """Remove every temporary file still being written (used on SIGINT/SIGTERM)."""
    for tmp in list(_LIVE_TEMPS):
        with contextlib.suppress(OSError):
            tmp.unlink()
        _LIVE_TEMPS.pop(tmp, None)


def is_done(path: str | os.PathLike, overwrite: bool = False, made_with: dict | None = None,
            recompute: bool = False) -> bool:
    """Whether a stage output already exists, was made with these settings, and should be skipped.

    Parameters
    ----------
    path : path-like
        The final output path.
    overwrite : bool or astrotool.made_with.Overwrite
        When true nothing counts as done; with ``made_with``, but what this overwrite made with these
        settings (:func:`astrotool.made_with.keep`: without a record nothing tells its settings).
    made_with : dict, optional
        The settings record now (:func:`astrotool.made_with.record`); when given, an
        output made with other settings is refused (exit 2, naming the changed keys),
        or remade when ``recompute``. Write the record after the output with
        :func:`astrotool.made_with.write`.
    recompute : bool
        Remake an output made with other settings instead of refusing.
    """
    if made_with is None:
        return (not overwrite) and Path(path).exists()
    from astrotool import made_with as mw

    return mw.keep([path], made_with, overwrite=overwrite, recompute=recompute)


def _count_visible_files(folder: Path) -> int:
    """Files under ``folder`` (0 if it is missing), hidden files and hidden folders not walked into."""
    n = 0
    for _, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        n += sum(1 for f in files if not f.startswith("."))
    return n


class Workspace:
    """A workspace folder.

    Parameters
    ----------
    root : path-like
        The workspace folder (created by :meth:`init` or on first write).
    stages : dict[str, list[str]], optional
        Stage folders per plugin, e.g. ``{"dre": ["tiles", "cuts"]}``; by default
        those that the installed plugins declare.

    Raises
    ------
    astrotool.errors.InputError
        When ``root``, or the first of its parents that exists, is not a folder.
    """

    def __init__(self, root: str | os.PathLike, stages: dict[str, list[str]] | None = None):
        self.root = Path(root).expanduser().resolve()
        for p in (self.root, *self.root.parents):  # the first that exists must be a folder
            if p.exists():
                if not p.is_dir():
                    from astrotool.errors import InputError

                    raise InputError(p, "exists and is not a folder; give the workspace another path (-w)")
                break
        self._stages = stages

    @property
    def stages(self) -> dict[str, list[str]]:
        """Stage folders declared by the plugins, ``{plugin: [stage, ...]}``."""
        if self._stages is None:
            from astrotool.plugins import get_registry

            self._stages = get_registry().stages()
        return self._stages

    @property
    def config_file(self) -> Path:
        """The workspace's configuration layer, ``<root>/astro.toml``."""
        return self.root / WORKSPACE_FILE

    def stage(self, plugin: str, name: str, create: bool = True) -> Path:
        """Path of a stage folder ``<root>/<plugin>/<name>``.

        Parameters
        ----------
        plugin, name : str
            Plugin and stage, e.g. ``"dre", "cuts"``.
        create : bool
            Create the folder if missing.
        """
        path = self.root / plugin / name
        if create:
            path.mkdir(parents=True, exist_ok=True)
        return path

    def create_root(self) -> None:
        """Create the workspace folder (and its parents).

        Raises
        ------
        astrotool.errors.InputError
            It cannot be created (no permission, a read-only or virtual file system), naming it.
        """
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            from astrotool.errors import InputError

            raise InputError(self.root, f"cannot create the workspace folder: {exc.strerror or exc}") from None

    def init(self) -> list[Path]:
        """Create ``astro.toml``, ``runs/`` and every stage folder; return what was created."""
        created = []
        self.create_root()
        if not self.config_file.exists():
            write_text_atomic(
                self.config_file,
                "# astrotool workspace configuration: overrides the packaged defaults and your\n"
                "# user file; overridden by --cfg, ASTRO_* variables, --set and flags.\n"
                "# See `astro config show --sources`.\n",
            )
            created.append(self.config_file)
        for folder in [self.root / "runs"] + [
            self.root / p / s for p, names in self.stages.items() for s in names
        ]:
            if not folder.exists():
                folder.mkdir(parents=True)
                created.append(folder)
        return created

    def status(self) -> dict[str, dict[str, int]]:
        """Number of files per stage folder, ``{plugin: {stage: count}}`` (missing = 0); hidden files and
        the files of hidden folders (caches, parts kept until an output is complete) are not counted."""
        out: dict[str, dict[str, int]] = {}
        for plugin, names in self.stages.items():
            out[plugin] = {}
            for name in names:
                folder = self.root / plugin / name
                out[plugin][name] = _count_visible_files(folder)
        return out

    def new_run_dir(self, command: str, started: float | None = None) -> Path:
        """Create and return ``runs/<utc>-<command>/`` for a run record (``started``: POSIX time)."""
        when = datetime.fromtimestamp(started, timezone.utc) if started else datetime.now(timezone.utc)
        stamp = when.strftime("%Y%m%dT%H%M%S.%fZ")
        safe = "-".join(command.split()) or "astro"
        path = self.root / "runs" / f"{stamp}-{safe}"
        path.mkdir(parents=True, exist_ok=False)
        return path


SLURM_VARIABLES = {"job_id": "SLURM_JOB_ID", "array_job_id": "SLURM_ARRAY_JOB_ID",
                   "array_task_id": "SLURM_ARRAY_TASK_ID"}
"""The ``slurm`` entry of ``run.json``: its keys and the variables they come from (set ones only)."""

RUN_DISTRIBUTIONS = ("numpy", "scipy", "astropy", "h5py", "pyarrow", "galsim", "photutils", "torch")
"""Distributions whose installed version every ``run.json`` records (read from their metadata, not imported): the
same whether the work ran in this process or in process-pool or Dask workers, which import them there."""


class RunRecord:
    """What a run did, written to ``runs/<utc>-<command>/run.json``.

    Commands add inputs and outputs with :meth:`add_input` / :meth:`add_output`
    and the external programs they run with :meth:`add_program`; the command
    line finishes the record with status and duration. The record holds the
    host, the Slurm job and array ids (when set), and the versions of Python,
    astrotool, its plugins, the :data:`RUN_DISTRIBUTIONS` and the programs.
    """

    def __init__(self, workspace: Workspace, command: str, argv: list[str], config: dict,
                 started: float | None = None):
        self.workspace = workspace
        self.command = command
        self.argv = list(argv)
        self.config = config
        self.inputs: list[str] = []
        self.outputs: list[str] = []
        self._recorded: set[str] = set()  # the outputs, for add_output's check
        self.extra: dict = {}
        self.programs: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}
        self.started = started or time.time()  # POSIX time the command started
        self.dir: Path | None = None

    def add_input(self, path) -> None:
        """Record an input file."""
        self.inputs.append(str(path))

    def add_output(self, path) -> None:
        """Record an output file.

        A hidden marker file (``.done``) that marks a folder finished stands for
        that folder's products: its visible files are recorded instead. A path
        already recorded is not recorded again.
        """
        path = Path(path)
        if path.name.startswith(".") and path.is_file():
            paths = [str(p) for p in sorted(path.parent.iterdir()) if p.is_file() and not p.name.startswith(".")]
        else:
            paths = [str(path)]
        for text in paths:
            if text not in self._recorded:  # listed before it is marked: an interrupt between them cannot drop it
                self.outputs.append(text)
                self._recorded.add(text)

    def add_program(self, label: str, names: tuple[str, ...] | list[str],
                    version_args: tuple[str, ...] = ("--version",)) -> None:
        """Record the version of an external program the run uses (the first of ``names`` on ``PATH``),
        asked with ``version_args`` when the record is written, e.g.
        ``add_program("psfex", ["psfex"])``."""
        self.programs[label] = (tuple(names), tuple(version_args))

    def _program_versions(self) -> dict[str, str]:
        from astrotool.doctor import program_check

        out = {}
        for label, (names, args) in self.programs.items():
            check = program_check(list(names), "", args, label)
            out[label] = check.detail if check.ok else "not found"
        return out

    def finish(self, status: str, exit_code: int, error: str | None = None) -> Path:
        """Write ``run.json`` and return its path."""
        from astrotool.provenance import versions

        self.dir = self.dir or self.workspace.new_run_dir(self.command, self.started)
        record = {
            "command": self.command,
            "argv": self.argv,
            "status": status,
            "exit_code": exit_code,
            "error": error,
            "started_utc": datetime.fromtimestamp(self.started, timezone.utc).isoformat(),
            "duration_s": round(time.time() - self.started, 3),
            "workspace": str(self.workspace.root),
            "host": socket.gethostname(),
            **({"slurm": slurm} if (slurm := {k: os.environ[v] for k, v in SLURM_VARIABLES.items()
                                              if os.environ.get(v)}) else {}),
            "config": self.config,
            "versions": {**versions(RUN_DISTRIBUTIONS), **self._program_versions()},
            "inputs": self.inputs,
            "outputs": self.outputs,
            **self.extra,
        }
        return write_json_atomic(self.dir / "run.json", record)
