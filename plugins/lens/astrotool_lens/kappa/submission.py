"""Prediction runs: one float16 ``.npy`` per map, what made them, and the zip to upload.

A prediction run is the folder ``lens/kappa/predictions/<run>/`` holding

* ``<name>.npy`` -- float16 ``(S, S)``, one per input map, named after the
  input's file stem (the Datathon's submission layout), each written
  atomically, so a file that exists is complete (one of another size, cut short or
  copied over by hand, is made again: :meth:`PredictionWriter.done`);
* ``prediction.json`` -- what made the run (``made_by``: the method or the
  model and its identity, the settings, the source, the split, the number of
  maps), written when the run starts and again, with ``complete: true`` and
  the run's summary, when it ends;

and ``<run>.zip`` next to the folder, with the ``.npy`` files at its top level:
the file to upload.

Re-running into an existing folder: made with the same ``made_by``, the
finished maps are kept and only the missing ones are computed
(:meth:`PredictionWriter.missing`), and those whose input file is not the one
they were made from (its size and modification time, kept for each map in the
hidden ``.inputs.jsonl``: a file copied over it with its older time too); made
otherwise, the run is refused (exit 2, naming each changed key) unless
``overwrite``. With ``overwrite`` the new run is written into a temporary
folder beside the old one (:func:`astrotool.workspace.atomic_dir`) and swapped
in by :meth:`PredictionWriter.finish`: the old run (and its zip) stays whole
until the new one is complete, and a run that fails keeps it unchanged.

Before a rerun recomputes maps of a finished run (maps deleted, or inputs
rewritten since), :meth:`PredictionWriter.begin` marks the run not complete and
removes the stale maps and the zip, so a run that then fails is never left
marked complete with a stale map.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from astrotool.errors import AstroError, InputError

__docformat__ = "numpy"

__all__ = ["FLOAT16_MAX", "INFO_FILE", "PredictionWriter", "finish_run", "read_info", "shard_names"]

INFO_FILE = "prediction.json"
"""File describing a prediction run, in its folder."""
INPUTS_FILE = ".inputs.jsonl"
"""One JSON line per map written from an input file: ``{"name", "size", "mtime_ns"}`` of that file (appended;
the last line of a name holds)."""
FORMAT = "astrotool-kappa-predictions"
FLOAT16_MAX = float(np.finfo(np.float16).max)
"""65504: the largest finite float16; larger values would be stored as infinity."""


def npy_size(shape: tuple) -> int:
    """Bytes of a float16 ``.npy`` file of ``shape`` as :func:`numpy.save` writes it (header included)."""
    import io

    buf = io.BytesIO()
    np.save(buf, np.zeros(shape, np.float16))
    return buf.tell()


def read_info(folder: str | Path) -> dict | None:
    """The ``prediction.json`` of a run folder (None when there is none).

    Raises
    ------
    astrotool.errors.InputError
        The file is there but unreadable.
    """
    path = Path(folder) / INFO_FILE
    if not path.is_file():
        return None
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(path, f"not a readable prediction record ({exc})") from None
    if not isinstance(info, dict) or not isinstance(info.get("made_by"), dict):
        raise InputError(path, "not a prediction record (no 'made_by' entry)")
    return info


class PredictionWriter:
    """Writes a prediction run folder (see the module docstring).

    Parameters
    ----------
    folder : path-like
        ``lens/kappa/predictions/<run>``; the zip is ``<run>.zip`` beside it.
    made_by : dict
        JSON-serialisable description of what makes the maps: ``method`` or
        ``model`` (with its identity, e.g. the weights' SHA-256), ``settings``,
        ``source``, ``split``, ``n``. Compared key by key with an existing
        run's.
    overwrite : bool
        Replace an existing run: the new one is written into a temporary folder
        and swapped in by :meth:`finish` (the old run stays until then, and is
        kept unchanged when the new one fails: :meth:`abort`).
    size : int, optional
        The maps' side [pixels] (default: ``made_by["size"]``): a map file not of
        that float16 array's size is not done (:meth:`done`), and maps of another
        side are refused (:meth:`check`).

    Raises
    ------
    astrotool.errors.AstroError
        The folder holds a run made otherwise (each changed key named, old ->
        new), or files that are not a prediction run, and ``overwrite`` is off.
    """

    def __init__(self, folder: str | Path, made_by: dict, overwrite: bool = False, size: int | None = None):
        self.folder = Path(folder)
        self.made_by = json.loads(json.dumps(made_by, default=str))
        self.size = size if size is not None else self.made_by.get("size")
        self.zip_path = self.folder.with_name(self.folder.name + ".zip")
        if self.folder.exists() and not self.folder.is_dir():
            raise InputError(self.folder, "exists and is not a folder")
        self.work = self.folder
        """Where the maps are written: ``folder``, or with ``overwrite`` the temporary folder swapped in by
        :meth:`finish`."""
        self._swap = None
        self._invalidated: list[str] = []   # stale maps removed by begin()
        if overwrite:
            from astrotool.workspace import atomic_dir

            self._swap = atomic_dir(self.folder)
            self.work = self._swap.__enter__()
        else:
            self._check_existing()
        self.info_path = self.work / INFO_FILE
        self.written = 0
        self._started = False

    def __enter__(self) -> "PredictionWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc is not None:
            self.abort(exc)

    def abort(self, exc: BaseException | None = None) -> None:
        """Give up an ``overwrite`` run: remove its temporary folder, keeping the old run as it was.

        ``exc`` (the error that stops the run), an :class:`~astrotool.errors.AstroError`,
        gets a note that the old run is kept; without ``overwrite``, that the run
        is marked not complete when :meth:`begin` removed stale maps.
        """
        if self._swap is None:
            if self._invalidated and isinstance(exc, AstroError) and exc.args and isinstance(exc.args[0], str):
                exc.args = (f"{exc.args[0]}; {self.folder} is marked not complete (the maps of "
                            f"{len(self._invalidated)} rewritten input(s) and the zip removed): a rerun finishes it",
                            *exc.args[1:])
            return
        swap, self._swap = self._swap, None
        err = exc if exc is not None else AstroError("aborted")
        try:
            swap.__exit__(type(err), err, err.__traceback__)
        except BaseException as raised:
            if raised is not err:
                raise
        if isinstance(exc, AstroError) and self.folder.is_dir() and exc.args and isinstance(exc.args[0], str):
            exc.args = (f"{exc.args[0]}; the previous run {self.folder} is kept as it was (--overwrite replaces "
                        "it only once the new run is complete)", *exc.args[1:])

    def _start(self) -> None:
        """Make the folder and its ``prediction.json`` (not complete) with the first map written or at the
        end: a run that fails before writing any leaves no folder that would pass for a run."""
        from astrotool.workspace import write_json_atomic

        if self._started:
            return
        self._started = True
        self.work.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.info_path, {"format": FORMAT, "run": self.folder.name, "made_by": self.made_by,
                                           "complete": False})

    # ------------------------------------------------------------ existing folders

    def _check_existing(self) -> None:
        from astrotool.ml.training import settings_changes

        if not self.folder.is_dir():
            return
        info = read_info(self.folder)
        if info is None:
            if any(p for p in self.folder.iterdir() if not p.name.startswith(".")):
                raise AstroError(f"{self.folder}: holds files but no {INFO_FILE}, so it is not a prediction run "
                                 "of this tool; use --overwrite to clear it, or another --name")
            return
        changes = settings_changes(info["made_by"], self.made_by)
        if changes:
            raise AstroError(f"{self.folder}: made with other settings ({'; '.join(changes)}); use --overwrite "
                             "to replace it, or another --name")

    def path(self, name: str) -> Path:
        """The file of map ``name`` (in the temporary folder of an ``overwrite`` run until :meth:`finish`)."""
        return self.work / f"{name}.npy"

    def done(self) -> set[str]:
        """Names of the maps already in the folder whole (of the size of this run's float16 array: a map cut
        short or replaced by another file is not done)."""
        whole = npy_size((int(self.size), int(self.size))) if self.size is not None else None
        return {p.stem for p in self.work.glob("*.npy") if not p.name.startswith(".")
                and (whole is None or p.stat().st_size == whole)}

    def _stamps(self) -> dict[str, list[int]]:
        """``{name: [size, mtime_ns]}`` of the input files the maps were made from (:data:`INPUTS_FILE`)."""
        out = {}
        try:
            lines = (self.work / INPUTS_FILE).read_text(encoding="utf-8").splitlines()
        except OSError:
            return out
        for line in lines:
            try:
                rec = json.loads(line)
                out[str(rec["name"])] = [int(rec["size"]), int(rec["mtime_ns"])]
            except (ValueError, KeyError, TypeError):   # a line cut short by an interruption
                continue
        return out

    def missing(self, names: Iterable[str], inputs: dict | None = None) -> list[str]:
        """The names among ``names`` (order kept) that have no map yet, or (with ``inputs``, name -> input
        file) whose input file is not the one its map was made from (another size or modification time;
        maps written before these were kept: an input newer than its map): what is left to compute."""
        have = self.done()
        stamps = self._stamps() if inputs is not None else {}
        out = []
        for n in map(str, names):
            if n not in have:
                out.append(n)
            elif inputs is not None and n in inputs:
                st = os.stat(inputs[n])
                made = stamps.get(n)
                if made is None and st.st_mtime_ns > os.stat(self.path(n)).st_mtime_ns or \
                        made is not None and made != [st.st_size, st.st_mtime_ns]:
                    out.append(n)  # the input was rewritten, or another file copied over it, since its map
        return out

    # ------------------------------------------------------------ writing

    def check(self, names: Sequence[str], maps: np.ndarray) -> np.ndarray:
        """The maps as float16, after checking that each one fits.

        Raises
        ------
        astrotool.errors.AstroError
            Not ``(n, S, S)`` for ``n`` names, or a map with NaN, infinite or
            float16-overflowing (``|x| > 65504``) values (the map's file named).
        """
        a = np.asarray(maps)
        if a.ndim != 3 or a.shape[0] != len(names):
            raise AstroError(f"{self.folder}: expected {len(names)} maps (n, S, S), got an array of shape {a.shape}")
        size = self.size
        if size is not None and a.shape[1:] != (int(size), int(size)):
            raise AstroError(f"{self.folder}: maps are {a.shape[1]}x{a.shape[2]}, this run's are {size}x{size}")
        flat = a.reshape(len(a), -1)
        with np.errstate(invalid="ignore"):
            bad = ~np.isfinite(flat).all(axis=1) | (np.abs(flat) > FLOAT16_MAX).any(axis=1)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            m = flat[i]
            what = "NaN" if np.isnan(m).any() else "infinite" if np.isinf(m).any() else \
                f"beyond float16's range (|x| up to {float(np.abs(m).max()):.6g} > {FLOAT16_MAX:g})"
            where = self.folder / f"{names[i]}.npy"   # the final path, also while an overwrite is staged
            raise AstroError(f"{where}: the predicted map {names[i]!r} holds {what} values; "
                             "nothing written for it")
        return a.astype(np.float16)

    def write(self, names: Sequence[str], maps: np.ndarray, inputs: dict | None = None) -> list[Path]:
        """Write maps ``(n, S, S)`` as ``<name>.npy`` float16, each atomically; with ``inputs`` (name -> input
        file), keep each input's size and modification time for :meth:`missing`.

        All maps of the batch are checked before any is written.
        """
        from astrotool.workspace import atomic_path

        names = [str(n) for n in names]
        h = self.check(names, maps)
        self._start()
        paths = []
        for name, m in zip(names, h):
            p = self.path(name)
            with atomic_path(p) as tmp:
                with open(tmp, "wb") as fh:
                    np.save(fh, np.ascontiguousarray(m), allow_pickle=False)
            paths.append(p)
        self.written += len(paths)
        if inputs:
            lines = []
            for name in names:
                if name in inputs:
                    st = os.stat(inputs[name])
                    lines.append(json.dumps({"name": name, "size": st.st_size, "mtime_ns": st.st_mtime_ns}) + "\n")
            with open(self.work / INPUTS_FILE, "a", encoding="utf-8") as fh:
                fh.writelines(lines)
        return paths

    def begin(self, todo: Sequence[str]) -> None:
        """Before computing the maps ``todo`` (from :meth:`missing`): when any is already in the folder (its
        input rewritten since) or the run was marked complete, remove those stale maps and the zip and mark the
        run not complete, so a rerun that fails is never left looking finished with a stale map."""
        from astrotool.workspace import write_json_atomic

        todo = [str(n) for n in todo]
        if not todo or not (self.work / INFO_FILE).is_file():
            return
        stale = [n for n in todo if self.path(n).exists()]
        info = read_info(self.work)
        if not stale and not (info or {}).get("complete"):
            return
        write_json_atomic(self.info_path, {"format": FORMAT, "run": self.folder.name, "made_by": self.made_by,
                                           "complete": False})
        self._started = True
        if self._swap is None:
            self.zip_path.unlink(missing_ok=True)
        for n in stale:
            self.path(n).unlink(missing_ok=True)
        self._invalidated = stale

    # ------------------------------------------------------------ finishing

    def _swap_in(self) -> None:
        """Put an ``overwrite`` run's folder in place of the old one (nothing to do otherwise)."""
        if self._swap is not None:
            swap, self._swap = self._swap, None
            swap.__exit__(None, None, None)
            self.work = self.folder
            self.info_path = self.folder / INFO_FILE

    def files(self) -> list[Path]:
        """The run's ``.npy`` files, sorted by name."""
        return sorted((p for p in self.work.glob("*.npy") if not p.name.startswith(".")), key=lambda p: p.name)

    def finish(self, zip: bool = True, summary: dict | None = None) -> dict:
        """Mark the run complete (``prediction.json``) and write ``<run>.zip``.

        Parameters
        ----------
        zip : bool
            Write ``<run>.zip`` next to the folder (atomically), the ``.npy``
            files at its top level, stored uncompressed (float16 maps hardly
            compress); without it an older zip is removed.
        summary : dict, optional
            The run's results (throughput...), stored in ``prediction.json``.

        Returns
        -------
        dict
            ``{"output": folder, "zip": path or None, "n": maps in the folder}``.

        Raises
        ------
        astrotool.errors.AstroError
            The folder holds another number of maps than ``made_by["n"]``.
        """
        import zipfile

        from astrotool.workspace import atomic_path, write_json_atomic

        files = self.files()
        n = self.made_by.get("n")
        if n is not None and len(files) != int(n):
            raise AstroError(f"{self.folder}: holds {len(files)} maps, the run has {n}; not finished")
        self._start()
        info = {"format": FORMAT, "run": self.folder.name, "made_by": self.made_by, "complete": True,
                "maps": len(files), "zip": str(self.zip_path) if zip else None, "summary": summary or {}}
        zpath = None
        if zip:
            with atomic_path(self.zip_path) as tmp:   # renamed into place only after the folder's swap
                with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
                    for p in files:
                        zf.write(p, arcname=p.name)
                self._swap_in()
            zpath = self.zip_path
        else:
            self._swap_in()
            self.zip_path.unlink(missing_ok=True)
        write_json_atomic(self.info_path, info)   # last, in the final folder: a run marked complete has its zip
        return {"output": str(self.folder), "zip": str(zpath) if zpath else None, "n": len(files)}


def shard_names(ctx, names: Sequence[str]) -> set[str] | None:
    """The map names this ``--shard`` task computes (every N-th of ``names``); None without ``--shard``.

    Raises
    ------
    astrotool.errors.AstroError
        ``--overwrite`` with ``--shard``: every task would replace the run the others write into.
    """
    shard = ctx.executor_options.shard
    if not shard:
        return None
    if ctx.overwrite:
        raise AstroError("--overwrite with --shard: every task would replace the run the others write into; "
                         "write the run under another --name, or remove it once before the array job")
    return set(ctx.shard_of([str(n) for n in names]))


def finish_run(ctx, writer: PredictionWriter, names: Sequence[str], inputs: dict | None, zip: bool,
               summary: dict) -> dict:
    """Finish a run (:meth:`PredictionWriter.finish`), or under ``--shard`` while maps of other tasks are
    missing, leave it not complete with a warning (the last task to finish completes it and writes the zip).

    Returns
    -------
    dict
        :meth:`PredictionWriter.finish`'s result; under ``--shard`` also ``shard`` (``"I/N"``) and
        ``missing`` (maps no task has written yet; then ``zip`` is None).
    """
    shard = ctx.executor_options.shard
    if not shard:
        return writer.finish(zip=zip, summary=summary)
    left = writer.missing(names, inputs)
    extra = {"shard": "{}/{}".format(*shard), "missing": len(left)}
    if not left:
        return {**writer.finish(zip=zip, summary=summary), **extra}
    if not writer.info_path.exists():  # never over another task's prediction.json (it may have completed the run)
        writer._start()
    ctx.log.warning("%d of %d maps missing (other --shard tasks): %s is completed, and its zip written, by the "
                    "last task to finish (or re-run the same command)", len(left), len(names), writer.folder)
    return {"output": str(writer.folder), "zip": None, "n": len(writer.files()), **extra}
