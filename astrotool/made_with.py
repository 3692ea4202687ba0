"""What made an output: the settings record kept beside it, and the rule for reruns.

Every stage output is kept with the settings that made it: the values of the
stage's configuration section that change the output, the seed when the stage
draws random numbers, and the stage's algorithm ``version``. The record is a small
hidden JSON file beside the output (the *sidecar*)::

    dre/chi/tile_chi.h5
    dre/chi/.tile_chi.h5.made_with.json

A plugin that already stores settings in the file's own metadata (PLATO's
Parquet key-value metadata) compares them with :func:`changes` and reports them
with :class:`SettingsChanged` instead.

On a rerun, :func:`keep` decides, one rule for every stage:

- outputs missing, or ``--overwrite``: make them;
- the record holds the same settings: keep the outputs (``skipped (done)``);
- the settings differ: refuse with exit 2, naming each changed key as
  ``key: old -> new`` and suggesting ``--overwrite`` -- or, for a stage that
  declares ``recompute=True`` (cheap, derived outputs), make them again;
- outputs without a record (stopped between the outputs and their record, or made
  before records were kept): make them again; nothing says what made them.

Outputs about to be made lose their old record first (:func:`keep` returning False
removes it), so a stage stopped half-way through replacing them never leaves new
outputs beside the record of the old ones.

A stopped ``--overwrite`` run is resumed by running it again: the command's
``overwrite`` is then an :class:`Overwrite` that remembers when the first of these
runs started, and outputs written since then with the same settings are kept
(:func:`replaces`), so a Slurm job that keeps hitting its time limit still gets
through its items.

Only the standard library is imported here.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from astrotool.errors import AstroError

__docformat__ = "numpy"

SCHEMA = 1
"""Layout of the record file itself."""

SUFFIX = ".made_with.json"
"""Suffix of the settings record kept beside an output file."""


def flatten(settings: Mapping, prefix: str = "") -> dict:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; tuples become lists (as JSON keeps them)."""
    out: dict = {}
    for key, value in settings.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = json.loads(json.dumps(value, default=str))
    return out


def record(settings: Mapping, *, seed: int | None = None, version: int = 1, ignore: Iterable[str] = (),
           made_by: str | None = None) -> dict:
    """The settings record of one output.

    Parameters
    ----------
    settings : mapping
        The stage's settings that change its output (nested mappings are
        flattened to dotted keys, e.g. a section's ``model_dump(mode="json")``).
    seed : int, optional
        The seed, for stages that draw random numbers.
    version : int
        The stage's algorithm version; bump it when the same settings give other outputs.
    ignore : iterable of str
        Dotted keys that do not change the output (threads, timeouts, how many items).
    made_by : str, optional
        What makes the output, for the message of a ``version`` change (``"astrotool-dre fit stage"``);
        kept beside the settings, not in them or the hash.

    Returns
    -------
    dict
        ``{"settings": {dotted key: value}, "hash": str}`` (and ``made_by`` when given); ``seed`` and
        ``version`` are among the settings.
    """
    skip = set(ignore)
    flat = {k: v for k, v in flatten(settings).items() if k not in skip}
    if seed is not None:
        flat["seed"] = int(seed)
    flat["version"] = int(version)
    flat = dict(sorted(flat.items()))
    return {"settings": flat, "hash": digest(flat), **({"made_by": made_by} if made_by else {})}


@dataclass(frozen=True)
class Overwrite:
    """``--overwrite`` as a command passes it on: true, and ``since``, when this overwrite began.

    ``since`` is the start (POSIX time [s]) of the first run of the same command, with the same
    arguments and settings, that was stopped before it finished (the same run's start when none
    was): outputs written since then are this overwrite's own, and are kept when their settings
    match (:func:`replaces`). None: every output is made again.
    """

    since: float | None = None

    def __bool__(self) -> bool:
        return True


def replaces(overwrite, path: str | os.PathLike) -> bool:
    """Whether ``overwrite`` (a bool or an :class:`Overwrite`) makes ``path`` again: it is true and the
    file is missing or older than the overwrite (its ``since``)."""
    if not overwrite:
        return False
    since = getattr(overwrite, "since", None)
    try:
        return since is None or os.stat(path).st_mtime < since
    except OSError:
        return True


def digest(settings: Mapping) -> str:
    """A stable 16-hex-digit hash of flat settings (key order does not matter)."""
    blob = json.dumps(dict(settings), sort_keys=True, default=str, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def sidecar(path: str | os.PathLike) -> Path:
    """The record file of ``path``: ``<folder>/.<name>.made_with.json``."""
    p = Path(path)
    return p.with_name(f".{p.name.lstrip('.')}{SUFFIX}")


def read(path: str | os.PathLike) -> dict | None:
    """The record kept beside ``path``, or None when there is none (or it is unreadable)."""
    try:
        data = json.loads(sidecar(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("settings"), dict) else None


def write(path: str | os.PathLike, rec: Mapping) -> Path:
    """Keep ``rec`` (from :func:`record`) beside ``path``, atomically; after the output is complete."""
    from astrotool.workspace import write_json_atomic

    return write_json_atomic(sidecar(path), {"schema": SCHEMA, **rec})


def record_path(path: str | os.PathLike, root: str | os.PathLike | None = None) -> str:
    """How a settings record names a file or folder: resolved, and relative to the workspace ``root``
    when it lies inside it (``plato/models/m``: a copied or moved workspace makes the same record),
    else absolute.

    Parameters
    ----------
    path : path-like
    root : path-like, optional
        The workspace root; none: always absolute.

    Returns
    -------
    str
        A POSIX relative path, or an absolute one.
    """
    path = Path(path).expanduser().resolve()
    if root is not None:
        try:
            return path.relative_to(Path(root).expanduser().resolve()).as_posix()
        except ValueError:
            pass
    return str(path)


def file_checksum(path: str | os.PathLike, cache: str | os.PathLike | None = None) -> str | None:
    """What identifies an input file's content, for a settings record: ``"sha256 <16 hex>, <size> B"``.

    With ``cache`` (a JSON file), the checksum is read once and kept there with the file's size,
    modification and change times, inode and device; while those stay, the kept value is returned
    without reading the file (inputs of hundreds of MB checked on every rerun). A file whose content was
    replaced keeps none of them (its change time cannot be set back, as its modification time can); a
    copied workspace reads each file once more and finds the same checksum.

    Returns
    -------
    str or None
        None when the file does not exist or cannot be read.
    """
    try:
        st = os.stat(path)
    except OSError:
        return None
    key = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]
    try:
        kept = json.loads(Path(cache).read_text(encoding="utf-8")) if cache else {}
    except (OSError, ValueError):
        kept = {}
    if isinstance(kept, dict) and kept.get("stat") == key and isinstance(kept.get("checksum"), str):
        return kept["checksum"]
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)
    except OSError:   # unreadable: the stage that reads it names the problem
        return None
    checksum = f"sha256 {h.hexdigest()[:16]}, {st.st_size} B"
    if cache:
        from astrotool.workspace import write_json_atomic

        try:
            Path(cache).parent.mkdir(parents=True, exist_ok=True)
            write_json_atomic(cache, {"stat": key, "checksum": checksum})
        except OSError:   # a read-only workspace: read again next time
            pass
    return checksum


_MISSING = object()


def _show(value) -> str:
    return "(absent)" if value is _MISSING else json.dumps(value, default=str)


def changes(old: Mapping, new: Mapping) -> list[str]:
    """Each key whose value differs between two settings mappings, as ``key: old -> new``.

    Nested mappings are compared key by key (``dataset.name``); values are compared
    and shown as JSON (a tuple equals the list it is stored as), ``(absent)`` for a
    key only one side has.

    Returns
    -------
    list of str
        Sorted by key; empty when the settings agree.

    Examples
    --------
    >>> changes({"lr": 0.002, "loss": "mse", "split": [0.8, 0.2]},
    ...         {"lr": 0.5, "loss": "mse", "split": (0.8, 0.2), "augment": True})
    ['augment: (absent) -> true', 'lr: 0.002 -> 0.5']
    """
    a, b = flatten(old), flatten(new)
    return [f"{k}: {_show(a.get(k, _MISSING))} -> {_show(b.get(k, _MISSING))}"
            for k in sorted(set(a) | set(b)) if a.get(k, _MISSING) != b.get(k, _MISSING)]


class SettingsChanged(AstroError):
    """An output exists but was made with other settings (exit 2).

    Parameters
    ----------
    path : path-like
        The output.
    changed : list of str
        ``key: old -> new`` lines (:func:`changes`).
    hint : str
        What to do instead.
    """

    def __init__(self, path, changed: list[str], hint: str = "use --overwrite to make it again with the new settings"):
        from astrotool.names import printable

        self.path = str(path)
        self.changed = list(changed)
        lines = "\n".join(f"  {c}" for c in self.changed)
        super().__init__(f"{printable(str(path))}: exists but was made with other settings:\n{lines}\n{hint}")


class VersionChanged(SettingsChanged):
    """An output exists but was made by another version of the code that makes it (exit 2): the same
    settings give other outputs now.

    Parameters
    ----------
    path : path-like
        The output.
    old, new : int
        The version that made it and the version now.
    made_by : str
        What makes it (``"astrotool-dre fit stage"``).
    changed : list of str
        The other recorded differences (``key: old -> new``), if any.
    """

    def __init__(self, path, old, new, made_by: str, changed: list[str] = ()):
        from astrotool.names import printable

        self.path = str(path)
        self.changed = [f"version: {old} -> {new}", *changed]
        newer = isinstance(old, int) and isinstance(new, int) and old > new
        what = f"{'a newer' if newer else 'an older'} {made_by} (version {old}; this one is {new})"
        others = "".join(f"\n  {c}" for c in changed)
        if others:
            others = "\nits record also differs in (settings the new version may record otherwise):" + others
        AstroError.__init__(self, f"{printable(str(path))}: exists but was made by {what}, whose outputs this "
                                  f"version does not reuse{others}\nuse --overwrite to make it again with this version")


def keep(outputs: Iterable[str | os.PathLike], rec: Mapping, *, overwrite: bool = False,
         recompute: bool = False, warn: bool = True, hint: str | None = None, forget: bool = True) -> bool:
    """Whether finished ``outputs`` can be kept for a rerun with the settings ``rec``.

    Parameters
    ----------
    outputs : iterable of path-like
        The stage's outputs for one item; the record is kept beside the first.
    rec : mapping
        The settings now (:func:`record`).
    overwrite : bool or Overwrite
        ``--overwrite``: nothing is kept but what this overwrite made itself (:func:`replaces`).
    recompute : bool
        The stage may make its outputs again when the settings changed (instead of refusing).
    warn : bool
        Log a warning for outputs that have no record (they are made again).
    hint : str, optional
        What a refusal says to do (default: ``--overwrite``), e.g. another ``--name``.
    forget : bool
        When the outputs are to be made, remove their old record now (False: only check, as
        :func:`check_all` does before any work).

    Returns
    -------
    bool
        True: keep (skip the stage); False: make the outputs (then :func:`write` the record).

    Raises
    ------
    SettingsChanged
        The outputs were made with other settings and the stage does not recompute.
    """
    outputs = [Path(p) for p in outputs]

    def make() -> bool:
        if forget:
            sidecar(outputs[0]).unlink(missing_ok=True)
        return False

    if replaces(overwrite, outputs[0]) or not all(p.exists() for p in outputs):
        return make()
    old = read(outputs[0])
    if overwrite:   # made by a stopped run of this overwrite: kept when its record says these settings
        return True if old is not None and old.get("hash") == rec["hash"] else make()
    if old is None:
        if warn:
            logging.getLogger("astro").warning("%s: no record of the settings that made it (a run stopped "
                                               "before writing it, or an older version): made again", outputs[0])
        return make()
    if old.get("hash") == rec["hash"] or old["settings"] == rec["settings"]:
        return True
    if recompute:
        return make()
    before, now = old["settings"].get("version", _MISSING), rec["settings"].get("version", _MISSING)
    if before != now:  # another version of the code: the keys it records may differ for that reason alone
        others = [c for c in changes(old["settings"], rec["settings"]) if not c.startswith("version: ")]
        raise VersionChanged(outputs[0], _show(before) if before is _MISSING else before, now,
                             rec.get("made_by") or "version of the code that makes it", others)
    raise SettingsChanged(outputs[0], changes(old["settings"], rec["settings"]), *((hint,) if hint else ()))


def check_all(checks: Iterable[tuple[Iterable, Mapping, bool]], *, overwrite: bool = False,
              hint: str | None = None) -> None:
    """Refuse before any work: :func:`keep` for each ``(outputs, record, recompute)``; one error naming
    every output made with other settings (at most five listed), exit 2 (:func:`refuse`)."""
    refused: list[SettingsChanged] = []
    for outputs, rec, recompute in checks:
        try:
            keep(outputs, rec, overwrite=overwrite, recompute=recompute, warn=False, forget=False)
        except SettingsChanged as exc:
            refused.append(exc)
    refuse(refused, hint)


def refuse(refused: list[SettingsChanged], hint: str | None = None) -> None:
    """Raise one error for the outputs ``refused`` (none: return): the one, or a list of at most five.

    Parameters
    ----------
    refused : list of SettingsChanged
    hint : str, optional
        What to do instead of ``--overwrite`` (outputs made by another version keep their own advice).
    """
    if not refused:
        return
    if hint:
        refused = [e if isinstance(e, VersionChanged) else SettingsChanged(e.path, e.changed, hint) for e in refused]
    if len(refused) == 1:
        raise refused[0]
    body = "\n".join(str(e).rsplit("\n", 1)[0] for e in refused[:5])
    more = f"\n(and {len(refused) - 5} more)" if len(refused) > 5 else ""
    if all(isinstance(e, VersionChanged) for e in refused):
        raise AstroError(f"{len(refused)} outputs exist but were made by another version:\n{body}{more}\n"
                         "use --overwrite to make them again with this version")
    raise AstroError(f"{len(refused)} outputs exist but were made with other settings or by another version:"
                     f"\n{body}{more}\nuse --overwrite to make them again with the new settings"
                     if any(isinstance(e, VersionChanged) for e in refused) else
                     f"{len(refused)} outputs exist but were made with other settings:\n{body}{more}\n"
                     + (hint or "use --overwrite to make them again with the new settings"))
