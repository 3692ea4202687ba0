"""Raw kappa maps: check them, read them from any source, and pack (epsilon, kappa) pairs.

Sources (:func:`open_maps`):

* a packed data set (``lens/kappa/data/<name>`` or its folder), restricted to a split;
* a simulated set (``lens/kappa/sims/<name>``) or any folder in the Datathon
  layout, ``<root>/EPSILON/<id>.npy`` (float16 ``(3, S, S)``: epsilon1,
  epsilon2, Delta-epsilon) and ``<root>/KAPPA/<id>.npy`` (float16 ``(S, S)``);
* a prediction run (``lens/kappa/predictions/<run>``) or any folder of ``.npy`` maps;
* Datathon tarballs ``*.tar.gz``, read with :mod:`tarfile` in streaming mode
  (never unpacked to disk): members ``.../EPSILON/<id>.npy`` and
  ``.../KAPPA/<id>.npy`` under any top folder (a tarball without such folders:
  every ``.npy`` member).

Every set is a :class:`MapSet`: sorted ``names`` (file stems, the key pairs are
matched on -- never the listing order), the map side ``size``, constant-memory
streaming with ``iter_batches`` and random access with ``read``. Every map read
passes :func:`check_map`, so a bad file gives :class:`astrotool.errors.InputError`
(exit 2) naming it (a tarball member as ``<tarball>:<member>``).

:func:`data_command` (``astro lens kappa data``) pairs EPSILON and KAPPA maps by
name, assigns the splits (:func:`split_of`: exact counts, deterministic in the seed and
the names) and packs a :class:`astrotool_lens.kappa.data.KappaDataset`.
"""

from __future__ import annotations

import glob
import io
import os
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Protocol, Sequence

import numpy as np

from astrotool.context import astro_command
from astrotool.errors import AstroError, InputError

__docformat__ = "numpy"

__all__ = ["KINDS", "MapSet", "FolderMaps", "TarMaps", "PackedMaps", "check_map", "load_npy", "open_maps",
           "is_tarball", "stream_tar", "split_of", "split_counts", "PackShard", "pack_shard", "data_command"]

KINDS = {"epsilon": "EPSILON", "kappa": "KAPPA"}
"""Map kind -> the Datathon folder holding it."""

MIN_SIZE = 8
"""Smallest map side accepted [pixels]."""

TAR_SUFFIXES = (".tar.gz", ".tgz", ".tar")

_EXPECT = {"epsilon": "(3, S, S)", "kappa": "(S, S)"}


# ============================================================================ one map


def check_map(arr, kind: str, where, size: int | None = None, like: str = "the other maps of its set") -> np.ndarray:
    """Check one map; return it unchanged.

    Parameters
    ----------
    arr : numpy.ndarray
        The map as loaded.
    kind : {"epsilon", "kappa"}
        ``epsilon``: ``(3, S, S)`` (epsilon1, epsilon2, Delta-epsilon);
        ``kappa``: ``(S, S)``.
    where : str or path-like
        What the message names: the file, or ``<tarball>:<member>``.
    size : int, optional
        The side ``S`` the map must have [pixels].
    like : str
        What ``size`` comes from, for the message (default: the other maps of its set).

    Returns
    -------
    numpy.ndarray
        ``arr`` (float16 as stored; float32 and float64 accepted).

    Raises
    ------
    astrotool.errors.InputError
        A complex dtype, wrong shape (or a side under 8 pixels, or not ``size``), a non-floating
        dtype, NaN or infinite values -- e.g. ``"shape (128, 128), expected (3, S, S)"``,
        ``"dtype int64"``, ``"3 NaN values"``.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {tuple(KINDS)}, got {kind!r}")
    arr = np.asarray(arr)
    shape = tuple(arr.shape)
    if arr.dtype.kind == "c":
        planes = "; e1, e2, de as three planes" if kind == "epsilon" else ""
        raise InputError(where, f"complex dtype {arr.dtype} (shape {shape}), expected real floating point "
                                f"{_EXPECT[kind]} ({kind} map{planes})")
    ok = (len(shape) == 3 and shape[0] == 3 and shape[1] == shape[2]) if kind == "epsilon" else \
        (len(shape) == 2 and shape[0] == shape[1])
    if not ok:
        raise InputError(where, f"shape {shape}, expected {_EXPECT[kind]} ({kind} map)")
    if shape[-1] < MIN_SIZE:
        raise InputError(where, f"shape {shape}: a map side must be at least {MIN_SIZE} pixels")
    if size is not None and shape[-1] != size:
        want = (3, size, size) if kind == "epsilon" else (size, size)
        raise InputError(where, f"shape {shape}, expected {want} like {like}")
    if arr.dtype.kind != "f":
        raise InputError(where, f"dtype {arr.dtype}, expected floating point (float16 as stored, float32 or float64)")
    if not np.isfinite(arr).all():
        n_nan = int(np.isnan(arr).sum())
        n_inf = int(np.isinf(arr).sum())
        parts = [f"{n_nan} NaN value{'s' if n_nan != 1 else ''}"] if n_nan else []
        parts += [f"{n_inf} infinite value{'s' if n_inf != 1 else ''}"] if n_inf else []
        raise InputError(where, " and ".join(parts))
    return arr


def load_npy(source, where) -> np.ndarray:
    """``np.load`` a ``.npy`` file or its bytes (``allow_pickle=False``), naming ``where`` when it fails."""
    try:
        f = io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else source
        arr = np.load(f, allow_pickle=False)
    except (ValueError, OSError, EOFError, TypeError, SyntaxError, zlib.error) as exc:
        if "pickle" in str(exc):   # numpy's text advises loading unsafely: never relayed
            if _head(source, 6) == b"\x93NUMPY":
                raise InputError(where, "a .npy file of pickled Python objects, refused (a map is an array of "
                                        "floats)") from None
            raise InputError(where, "not a .npy array file (no .npy header: a text file, a pickle or another "
                                    "format under the .npy name)") from None
        raise InputError(where, f"not a readable .npy file ({type(exc).__name__}: {exc})") from None
    if not isinstance(arr, np.ndarray):
        raise InputError(where, "not a .npy array (an .npz archive?)")
    return arr


def map_files(folder) -> list[Path]:
    """The ``.npy`` map files of ``folder``, sorted; hidden ones (macOS ``._*`` copies, dotfiles) are left out,
    as they are from tarballs."""
    return sorted(p for p in Path(folder).glob("*.npy") if p.is_file() and not p.name.startswith("."))


def extra_entries(folder) -> list[str]:
    """The entries of a Datathon layout folder (``EPSILON/``, ``KAPPA/``) that are not ``.npy`` map files:
    other files, ``.npy`` names that are folders, subfolders; sorted. Hidden entries (dotfiles such as
    ``.DS_Store``) are left out."""
    out = []
    for p in Path(folder).iterdir():
        if p.name.startswith("."):
            continue
        if not (p.suffix == ".npy" and p.is_file()):
            out.append(p.name + ("/" if p.is_dir() else ""))
    return sorted(out)


def warn_extra(folder) -> list[str]:
    """Warn (log) about :func:`extra_entries` of ``folder``, naming up to five and the count; return them."""
    import logging

    extra = extra_entries(folder)
    if extra:
        what = "entry that is not a .npy map file" if len(extra) == 1 else "entries that are not .npy map files"
        logging.getLogger("astro").warning("%s: %d %s, skipped: %s", folder, len(extra), what, few(extra))
    return extra


def _head(source, n: int) -> bytes:
    """The first ``n`` bytes of a file (path) or of bytes; ``b""`` when unreadable."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source[:n])
    try:
        with open(source, "rb") as fh:
            return fh.read(n)
    except (OSError, TypeError):
        return b""


def _stack(maps: list[np.ndarray], kind: str, size: int) -> np.ndarray:
    shape = (len(maps), 3, size, size) if kind == "epsilon" else (len(maps), size, size)
    out = np.empty(shape, np.float32)
    for k, m in enumerate(maps):
        out[k] = m
    return out


# ============================================================================ map sets


class MapSet(Protocol):
    """A set of maps of one kind and one side, by name.

    Attributes
    ----------
    names : list of str
        The map names (file stems), sorted.
    size : int
        The map side ``S`` [pixels].
    """

    kind: str
    names: list[str]

    @property
    def size(self) -> int: ...

    def __len__(self) -> int: ...

    def iter_batches(self, batch_size: int) -> Iterator[tuple[list[str], np.ndarray]]:
        """``(names, maps)`` batches, maps float32 ``(n, 3, S, S)`` or ``(n, S, S)``; memory ~ one batch."""

    def read(self, names: Sequence[str]) -> np.ndarray:
        """The maps of ``names`` (float32), in that order."""

    def describe(self) -> str:
        """What the set is, for messages and provenance."""

    def fingerprint(self):
        """What tells these maps apart from others under the same names, for the settings a rerun must share."""


def _unknown(where, names: Iterable[str], have: dict) -> None:
    missing = [n for n in names if n not in have]
    if missing:
        raise InputError(where, f"no map named {', '.join(map(repr, missing[:5]))}"
                                f"{f' (and {len(missing) - 5} more)' if len(missing) > 5 else ''}")


class FolderMaps:
    """The ``.npy`` maps of one folder (the file stems are the names).

    Parameters
    ----------
    folder : path-like
    kind : {"epsilon", "kappa"}
    label : str, optional
        How :meth:`describe` names the set (default: the folder).
    report_extra : bool
        Warn about entries that are not ``.npy`` files (:func:`warn_extra`): for
        the Datathon layout's ``EPSILON/`` and ``KAPPA/``.
    """

    def __init__(self, folder, kind: str, label: str | None = None, report_extra: bool = False):
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {tuple(KINDS)}, got {kind!r}")
        self.folder = Path(folder)
        self.kind = kind
        self.label = label
        if report_extra:
            warn_extra(self.folder)
        self.files = {p.stem: p for p in map_files(self.folder)}
        if not self.files:
            raise InputError(self.folder, f"no .npy maps ({kind} maps expected)")
        self.names = sorted(self.files)
        self._size: int | None = None

    @property
    def size(self) -> int:
        if self._size is None:
            p = self.files[self.names[0]]
            self._size = int(check_map(load_npy(p, p), self.kind, p).shape[-1])
        return self._size

    def __len__(self) -> int:
        return len(self.names)

    def load(self, name: str) -> np.ndarray:
        """One map as stored, checked (shape, this set's side, dtype, finite)."""
        p = self.files[name]
        return check_map(load_npy(p, p), self.kind, p, self.size)

    def read(self, names: Sequence[str]) -> np.ndarray:
        """The maps of ``names``, in that order, loaded and checked."""
        names = list(names)
        _unknown(self.folder, names, self.files)
        return _stack([self.load(n) for n in names], self.kind, self.size)

    def iter_batches(self, batch_size: int) -> Iterator[tuple[list[str], np.ndarray]]:
        """Batches in ``names`` order; each file is loaded when its batch is built."""
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        for a in range(0, len(self.names), batch_size):
            chunk = self.names[a:a + batch_size]
            yield chunk, self.read(chunk)

    def describe(self) -> str:
        """The label given, else the folder, for messages."""
        return self.label or f"folder {self.folder}"

    def fingerprint(self) -> dict:
        """The map names and, for a simulated set, its simulation settings (a rerun re-predicts single maps
        rewritten since by their times: :meth:`~astrotool_lens.kappa.submission.PredictionWriter.missing`)."""
        import hashlib

        from astrotool_lens.kappa.simulate import SETTINGS_FILE

        out = {"names_sha256": _names_hash(self.names)}
        for d in (self.folder, self.folder.parent):
            if (d / SETTINGS_FILE).is_file():
                out["simulation_sha256"] = hashlib.sha256((d / SETTINGS_FILE).read_bytes()).hexdigest()[:16]
                break
        return out

    def __repr__(self) -> str:
        return f"FolderMaps({str(self.folder)!r}, {self.kind!r}, n={len(self)})"


def is_tarball(path) -> bool:
    """Whether ``path`` is named like a tarball (``.tar.gz``, ``.tgz``, ``.tar``)."""
    return str(path).lower().endswith(TAR_SUFFIXES)


def _member_kind(member_name: str) -> tuple[str | None, str] | None:
    """``(kind or None, stem)`` of a ``.npy`` member: kind from its parent folder EPSILON/KAPPA."""
    parts = member_name.replace("\\", "/").split("/")
    if not parts[-1].lower().endswith(".npy") or parts[-1].startswith("._"):  # macOS resource forks
        return None
    stem = parts[-1][:-4]
    parent = parts[-2].upper() if len(parts) > 1 else ""
    kind = next((k for k, d in KINDS.items() if d == parent), None)
    return kind, stem


def _extra_member(member_name: str) -> bool:
    """Whether a tarball member sits in an ``EPSILON/`` or ``KAPPA/`` folder without being a ``.npy`` map
    (hidden names, such as macOS's ``._*`` and ``.DS_Store``, are not counted)."""
    parts = member_name.replace("\\", "/").split("/")
    return (len(parts) > 1 and parts[-2].upper() in KINDS.values() and not parts[-1].startswith(".")
            and not parts[-1].lower().endswith(".npy"))


def warn_extra_members(tarball, names: Sequence[str]) -> None:
    """Warn (log) about the members :func:`_extra_member` found, naming up to five and the count."""
    import logging

    if names:
        what = "member that is not a .npy map" if len(names) == 1 else "members that are not .npy maps"
        logging.getLogger("astro").warning("%s: %d %s in EPSILON/ or KAPPA/, skipped: %s", tarball, len(names),
                                           what, few(sorted(names)))


def stream_tar(path, want=None, extra: list | None = None) -> Iterator[tuple[str | None, str, str, bytes | None]]:
    """One streaming pass (``tarfile`` ``"r|*"``) over a tarball's ``.npy`` members.

    Parameters
    ----------
    path : path-like
    want : callable, optional
        ``want(kind, stem, member_name) -> bool``: read this member's bytes
        (default: none, an index pass -- which still decompresses the whole stream).
    extra : list, optional
        Receives the names of the members in an ``EPSILON/`` or ``KAPPA/``
        folder that are not ``.npy`` maps (skipped).

    Yields
    ------
    (kind, stem, member_name, data)
        ``kind`` ``"epsilon"``, ``"kappa"`` or ``None`` (no EPSILON/KAPPA parent
        folder); ``data`` the member's bytes, or None when not wanted.

    Raises
    ------
    astrotool.errors.InputError
        Unreadable, corrupt or truncated tarball (naming it and the last member read).
    """
    last = None
    try:
        with tarfile.open(path, mode="r|*") as tf:
            for m in tf:
                last = m.name
                if extra is not None and _extra_member(m.name.rstrip("/")):
                    extra.append(m.name + ("/" if m.isdir() else ""))
                if not m.isfile():
                    continue
                mk = _member_kind(m.name)
                if mk is None:
                    continue
                kind, stem = mk
                data = None
                if want is not None and want(kind, stem, m.name):
                    f = tf.extractfile(m)
                    data = f.read()
                    if len(data) != m.size:
                        raise EOFError(f"member {m.name} holds {len(data)} of {m.size} bytes")
                yield kind, stem, m.name, data
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        after = f" after member {last}" if last else ""
        raise InputError(path, f"unreadable, corrupt or truncated tarball{after} "
                               f"({type(exc).__name__}: {exc})") from None


class TarMaps:
    """The maps of one kind in one or more tarballs, read without unpacking.

    Constructing it makes one index pass over each tarball (member names only,
    but a ``.tar.gz`` is still decompressed through). Members of the kind's
    folder (``EPSILON/`` or ``KAPPA/``) count; a tarball with neither folder
    counts every ``.npy`` member. Names must be unique across tarballs.

    Parameters
    ----------
    tarballs : sequence of path-like
    kind : {"epsilon", "kappa"}
    """

    def __init__(self, tarballs: Sequence, kind: str):
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {tuple(KINDS)}, got {kind!r}")
        self.tarballs = [Path(t) for t in tarballs]
        self.kind = kind
        self.where: dict[str, str] = {}  # name -> "<tarball>:<member>"
        self.flat: dict[Path, bool] = {}
        for t in self.tarballs:
            if not t.is_file():
                raise InputError(t, "no such tarball")
            extra: list = []
            members = [(k, s, mn) for k, s, mn, _ in stream_tar(t, extra=extra)]
            warn_extra_members(t, extra)
            flat = not any(k is not None for k, _, _ in members)
            self.flat[t] = flat
            for k, s, mn in members:
                if (k == kind) or (flat and k is None):
                    here = f"{t}:{mn}"
                    if s in self.where:
                        raise InputError(here, f"duplicate map name {s!r} (also {self.where[s]})")
                    self.where[s] = here
        if not self.where:
            raise InputError(", ".join(map(str, self.tarballs)),
                             f"no {KINDS[kind]}/*.npy members ({kind} maps expected)")
        self.names = sorted(self.where)
        self._size: int | None = None

    def __len__(self) -> int:
        return len(self.names)

    def _wanted(self, t: Path):
        flat = self.flat[t]
        return lambda k, s, mn: ((k == self.kind) or (flat and k is None)) and self.where.get(s) == f"{t}:{mn}"

    def _members(self, only: set | None = None) -> Iterator[tuple[str, np.ndarray]]:
        """``(name, checked map)`` in stream order, one tarball after the other."""
        for t in self.tarballs:
            ok = self._wanted(t)
            want = ok if only is None else (lambda k, s, mn, ok=ok: s in only and ok(k, s, mn))
            for k, s, mn, data in stream_tar(t, want):
                if data is None:
                    continue
                where = f"{t}:{mn}"
                arr = check_map(load_npy(data, where), self.kind, where, self._size)
                if self._size is None:
                    self._size = int(arr.shape[-1])
                yield s, arr

    @property
    def size(self) -> int:
        if self._size is None:
            for _ in self._members({self.names[0]}):
                break
        return self._size

    def iter_batches(self, batch_size: int) -> Iterator[tuple[list[str], np.ndarray]]:
        """Batches in the tarballs' member order (not ``names`` order): one streaming pass."""
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        names, maps = [], []
        for s, arr in self._members():
            names.append(s)
            maps.append(arr)
            if len(names) == batch_size:
                yield names, _stack(maps, self.kind, self._size)
                names, maps = [], []
        if names:
            yield names, _stack(maps, self.kind, self._size)

    def read(self, names: Sequence[str]) -> np.ndarray:
        """The maps of ``names``, in that order: one streaming pass, holding only those maps."""
        names = list(names)
        _unknown(self.describe(), names, self.where)
        got = dict(self._members(set(names)))
        return _stack([got[n] for n in names], self.kind, self._size or 0) if names else \
            np.empty((0,), np.float32)

    def describe(self) -> str:
        """The tarballs, for messages."""
        return "tarball" + ("s " if len(self.tarballs) > 1 else " ") + ", ".join(map(str, self.tarballs))

    def fingerprint(self) -> str:
        """Fingerprint of the tarballs (:func:`files_fingerprint`)."""
        return files_fingerprint(self.tarballs)

    def __repr__(self) -> str:
        return f"TarMaps({[str(t) for t in self.tarballs]!r}, {self.kind!r}, n={len(self)})"


class PackedMaps:
    """The maps of one kind of a packed :class:`~astrotool_lens.kappa.data.KappaDataset`, in one split.

    Parameters
    ----------
    ds : KappaDataset
    kind : {"epsilon", "kappa"}
    split : {"train", "val", "test", "all"}
    """

    def __init__(self, ds, kind: str, split: str = "all"):
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {tuple(KINDS)}, got {kind!r}")
        if kind not in ds.arrays:
            raise InputError(ds.root, f"an input-only data set: it holds no {kind} maps")
        self.ds, self.kind, self.split = ds, kind, split
        try:
            idx = ds.split_indices(split)
        except ValueError as exc:
            raise InputError(ds.root, str(exc)) from None
        if not idx.size:
            raise InputError(ds.root, f"the {split!r} split holds no maps")
        all_names = ds.names
        order = np.argsort(all_names[idx], kind="stable")
        self.indices = idx[order]
        self.names = [str(n) for n in all_names[self.indices]]
        self._index = dict(zip(self.names, self.indices.tolist()))

    @property
    def size(self) -> int:
        return self.ds.size

    def __len__(self) -> int:
        return len(self.names)

    def iter_batches(self, batch_size: int) -> Iterator[tuple[list[str], np.ndarray]]:
        """Batches in ``names`` order (the set's streaming reader, NaN/inf refused)."""
        a = 0
        for b in self.ds.iter_batches(batch_size, names=[self.kind], indices=self.indices, check_finite=True):
            n = len(b["index"])
            yield self.names[a:a + n], b[self.kind].astype(np.float32)
            a += n

    def read(self, names: Sequence[str]) -> np.ndarray:
        """The maps of ``names``, in that order, read from the data set (NaN/inf refused)."""
        names = list(names)
        _unknown(self.ds.root, names, self._index)
        idx = np.array([self._index[n] for n in names], dtype=np.int64)
        return self.ds.read(idx, [self.kind], check_finite=True)[self.kind].astype(np.float32)

    def describe(self) -> str:
        """The data set and split, for messages."""
        return f"data set {self.ds.root}" + ("" if self.split == "all" else f" ({self.split} split)")

    def fingerprint(self) -> dict:
        """The data set's identity and the split."""
        from astrotool.ml.commands import dataset_identity

        return {**dataset_identity(self.ds), "split": self.split}

    def __repr__(self) -> str:
        return f"PackedMaps({str(self.ds.root)!r}, {self.kind!r}, split={self.split!r}, n={len(self)})"


# ============================================================================ resolving a source


def files_fingerprint(paths: Iterable) -> str:
    """SHA-256 (16 hex digits) of each file's name, size and modification time [ns], in the order given.

    Changes when a file is added, removed or rewritten (a simulated set drawn
    again, a tarball replaced), without reading the files.
    """
    import hashlib

    h = hashlib.sha256()
    for p in paths:
        st = os.stat(p)
        h.update(f"{Path(p).name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def _check_finished_simulation(root: Path) -> None:
    """Refuse a simulated set whose ``simulate`` run has not finished (no ``truth.parquet`` yet)."""
    from astrotool_lens.kappa.simulate import SETTINGS_FILE, TRUTH_FILE

    if (root / SETTINGS_FILE).is_file() and not (root / TRUTH_FILE).is_file():
        again = astro_command('lens', 'kappa', 'simulate', '--name', root.name)
        raise InputError(root, f"a simulated set whose simulate run has not finished (no {TRUTH_FILE} yet); run "
                               f"`{again}` again with its -n and the settings it was started with (options or "
                               f"--set; they are in {root / SETTINGS_FILE})")


def _layout_dir(root: Path, kind: str) -> Path | None:
    """``root/EPSILON`` or ``root/KAPPA`` (any case) for ``kind``; None when ``root`` has neither folder."""
    subs = {d.name.upper(): d for d in root.iterdir() if d.is_dir() and d.name.upper() in KINDS.values()}
    if not subs:
        return None
    if KINDS[kind] not in subs:
        raise InputError(root, f"has no {KINDS[kind]}/ folder ({kind} maps expected; it has "
                               f"{', '.join(sorted(s + '/' for s in subs))})")
    return subs[KINDS[kind]]


def _refuse_split(spec, what: str, split: str, split_given: bool) -> None:
    """Refuse a ``--split`` given for a source without splits (it would be ignored: every map is used).

    ``--split all`` asks for every map, which such a source gives: accepted.
    """
    if split_given and split != "all":
        raise InputError(spec, f"--split {split} applies to data sets (packed with `astro lens kappa data`, which "
                               f"hold train/val/test splits); this is {what}, which has no splits: leave --split "
                               "out (all its maps are used) or pack it into a data set first")


def _open_folder(p: Path, kind: str, split: str, label: str | None = None, split_given: bool = False,
                 spec=None):
    from astrotool.ml.data import MANIFEST_SUFFIX

    from astrotool_lens.kappa.data import KappaDataset

    if any(p.glob(f"*{MANIFEST_SUFFIX}")):
        return PackedMaps(KappaDataset(p), kind, split)
    if (p / SETTINGS_FILE).is_file():   # before the split refusal: this one has splits once finished
        from astrotool_lens.kappa.data import unfinished_problem

        raise InputError(p if spec is None else spec, unfinished_problem(p))
    what = f"the {label}" if label else f"a folder ({p})"
    _refuse_split(p if spec is None else spec, what, split, split_given)
    _check_finished_simulation(p)
    sub = _layout_dir(p, kind)
    if sub is not None:
        return FolderMaps(sub, kind, label=f"{label or 'folder ' + str(p)} ({sub.name}/)", report_extra=True)
    if map_files(p):
        return FolderMaps(p, kind, label=label)
    tars = sorted(x for x in p.iterdir() if x.is_file() and is_tarball(x))
    if tars:
        return TarMaps(tars, kind)
    raise InputError(p, "holds no maps: no data set manifest, no EPSILON/ or KAPPA/ folder, no .npy files, "
                        "no *.tar.gz")


def _data_set_names(ctx) -> tuple[list[str], list[str]]:
    """The workspace's data sets: ``(finished, unfinished)`` names (unfinished: no manifest written yet)."""
    from astrotool.ml.data import MANIFEST_SUFFIX

    d = ctx.workspace.stage("lens", "kappa/data", create=False)
    finished, unfinished = [], []
    for n in _stage_names(ctx, "data"):
        (finished if any((d / n).glob(f"*{MANIFEST_SUFFIX}")) else unfinished).append(n)
    return finished, unfinished


def _stage_names(ctx, stage: str) -> list[str]:
    d = ctx.workspace.stage("lens", f"kappa/{stage}", create=False)
    return sorted(x.name for x in d.iterdir() if x.is_dir()) if d.is_dir() else []


def _named_set(ctx, text: str, stages=(("data", "data set"), ("sims", "simulated set"),
                                       ("predictions", "prediction run"))):
    """``(folder, what)`` of the first workspace set called ``text`` (a bare name, no separator), else None.

    A bare name is the workspace's before a folder of the current directory: ``demo`` is the data set
    ``lens/kappa/data/demo`` even where ``./demo`` exists (write ``./demo`` for the folder).
    """
    if os.sep in text or "/" in text or text in ("", ".", ".."):
        return None
    for stage, what in stages:
        d = ctx.workspace.stage("lens", f"kappa/{stage}", create=False) / text
        if d.is_dir():
            return d, what
    return None


def open_maps(spec, kind: str, ctx, split: str = "all", split_given: bool = False):
    """The :class:`MapSet` a command-line source names.

    ``spec`` is tried as, in order: a bare name (no path separator) in the
    workspace: a packed data set (``lens/kappa/data/<spec>``), a simulated set
    (``lens/kappa/sims/<spec>``), a prediction run
    (``lens/kappa/predictions/<spec>``), the first that exists; tarball file(s)
    (``*.tar.gz``, ``*.tgz``, ``*.tar``; a glob pattern or a list of paths too);
    an existing folder (a packed data set, a Datathon root with EPSILON/ and/or
    KAPPA/ -- ``kind`` picks which --, a folder of ``.npy`` maps, a folder of
    tarballs). Write ``./name`` for a folder that shares a set's name.

    Parameters
    ----------
    spec : str, path-like or list of them
    kind : {"epsilon", "kappa"}
    ctx : astrotool.context.Context
        Its workspace resolves names.
    split : {"train", "val", "test", "all"}
        For a packed data set; other sources give all their maps.
    split_given : bool
        ``split`` was asked for explicitly (``--split`` on the command line): a
        source without splits (a folder, a simulated set, a prediction run, a
        tarball) is then refused unless ``split`` is ``"all"``, instead of
        silently giving all its maps.

    Returns
    -------
    MapSet
        :class:`PackedMaps`, :class:`FolderMaps` or :class:`TarMaps`.

    Raises
    ------
    astrotool.errors.InputError
        Nothing matches (a path -- with a ``/`` or starting with ``.`` or ``~``
        -- is said not to exist; a bare name gets the workspace's data sets,
        unfinished data sets, simulated sets and prediction runs listed), an
        unfinished data set (its ``data`` run, e.g. a ``--shard`` array job, has
        written no index yet; said so with or without ``split_given``), the
        source holds no maps of ``kind``, or ``split_given`` for a source without
        splits.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {tuple(KINDS)}, got {kind!r}")
    if isinstance(spec, (list, tuple)):
        if len(spec) == 1:
            return open_maps(spec[0], kind, ctx, split, split_given)
        paths = [Path(s).expanduser() for s in spec]
        bad = [str(s) for s in paths if not is_tarball(s)]
        if bad:
            raise InputError(bad[0], "several sources must all be tarballs (*.tar.gz); pack folders with "
                                     "`astro lens kappa data` to combine them")
        _refuse_split(", ".join(map(str, paths)), "a set of tarballs", split, split_given)
        return TarMaps(paths, kind)
    text = str(spec)
    named = _named_set(ctx, text)
    if named is not None:
        return _open_folder(named[0], kind, split, label=f"{named[1]} {text}", split_given=split_given, spec=text)
    p = Path(text).expanduser()
    if not p.exists() and any(c in text for c in "*?["):
        hits = sorted(Path(h) for h in glob.glob(str(p)))
        if not hits:
            raise InputError(text, "the pattern matches no file")
        return open_maps(hits, kind, ctx, split, split_given)
    if p.is_file():
        if is_tarball(p):
            _refuse_split(text, "a tarball", split, split_given)
            return TarMaps([p], kind)
        raise InputError(p, "not a map source (expected a folder, a data set name or a *.tar.gz)")
    if p.is_dir():
        return _open_folder(p, kind, split, split_given=split_given, spec=text)
    if "/" in text or os.sep in text or text.startswith((".", "~")):
        raise InputError(text, "no such file or folder (the path does not exist)")
    finished, unfinished = _data_set_names(ctx)
    listing = "; ".join(f"{what}: {', '.join(names) if names else '(none)'}" for what, names in (
        ("data sets", finished), ("simulated sets", _stage_names(ctx, "sims")),
        ("prediction runs", _stage_names(ctx, "predictions"))))
    if unfinished:
        listing += f"; unfinished data sets (no index yet: run their `astro lens kappa data` again): " \
                   f"{', '.join(unfinished)}"
    raise InputError(text, f"no such file or folder, and no data set, simulated set or prediction run of that "
                           f"name in the workspace ({listing})")


# ============================================================================ splits


SPLIT_NAMES = ("train", "val", "test")


SPLIT_METHOD = "ranked-v2"
"""How :func:`split_of` assigns splits, recorded in a packed set's settings: a set packed by another method
(``per-name-v1``, a cut of each name's own number, the method before) is refused on a rerun without
``--overwrite`` instead of being mixed with shards split the new way."""


def split_counts(n: int, fractions: Sequence[float]) -> np.ndarray:
    """How many of ``n`` maps each split gets: as close to ``fractions`` as whole maps allow.

    Largest remainders of ``n * fraction`` (normalised fractions; ties to the
    earlier split), then every split of positive fraction that got no map takes
    one from the split holding most, as long as that one keeps a map: with
    ``n >= 3`` (or as many maps as positive fractions) no such split is empty.

    Parameters
    ----------
    n : int
        The number of maps.
    fractions : sequence of 3 float
        Train, validation, test fractions (non-negative, positive sum).

    Returns
    -------
    numpy.ndarray of int
        ``(n_train, n_val, n_test)``, summing to ``n``.

    Examples
    --------
    >>> split_counts(20, (0.8, 0.1, 0.1)).tolist()
    [16, 2, 2]
    >>> split_counts(3, (0.8, 0.1, 0.1)).tolist()
    [1, 1, 1]
    >>> split_counts(10, (0.6, 0.4, 0.0)).tolist()
    [6, 4, 0]
    """
    frac = _fractions(fractions)
    ideal = n * frac / frac.sum()
    counts = np.floor(ideal).astype(int)
    rest = ideal - counts
    for k in sorted(range(3), key=lambda i: (-rest[i], i))[: n - int(counts.sum())]:
        counts[k] += 1
    for k in range(3):   # an empty split of positive fraction: one map from the fullest split that can spare it
        if frac[k] > 0 and counts[k] == 0:
            donor = int(np.argmax(counts))
            if counts[donor] > 1:
                counts[donor] -= 1
                counts[k] += 1
    return counts


def _fractions(fractions: Sequence[float]) -> np.ndarray:
    frac = np.asarray(fractions, dtype=float)
    if frac.shape != (3,) or not np.isfinite(frac).all() or (frac < 0).any() or frac.sum() <= 0:
        raise AstroError("lens.kappa.data.split: three non-negative fractions with a positive sum, got "
                         f"{list(fractions)}")
    return frac


def split_of(seed: int, names: Sequence[str], fractions: Sequence[float]) -> np.ndarray:
    """The split of each name: as close to ``fractions`` as whole maps allow, deterministic in ``(seed, names)``.

    Each name gets a number ``derive_seed(seed, "kappa-split", name)`` (a function
    of the seed and the name alone); the names in the order of these numbers
    fill ``train``, then ``val``, then ``test``, with :func:`split_counts` maps
    each. So the counts are exact (16/2/2 for 20 maps at 80/10/10 %; no split of
    positive fraction is empty from 3 maps on), the same names and seed always
    give the same splits (whatever order the names come in), and adding or
    removing maps moves only maps whose numbers lie next to a split boundary,
    about as many as were added or removed (an independent cut per name, the
    method before -- ``per-name-v1`` --, never moved a map but left small sets
    far off the fractions, e.g. 19/0/1 for 20 maps).

    Parameters
    ----------
    seed : int
    names : sequence of str
        The map names (unique).
    fractions : sequence of 3 float
        Train, validation, test fractions (non-negative, positive sum; normalised).

    Returns
    -------
    numpy.ndarray of str
        ``"train"``, ``"val"`` or ``"test"`` per name, in the order of ``names``.

    Raises
    ------
    astrotool.errors.AstroError
        Fractions that are not three non-negative numbers with a positive sum.
    """
    from astrotool.seeding import derive_seed

    frac = _fractions(fractions)
    names = [str(n) for n in names]
    keys = [derive_seed(int(seed), "kappa-split", n) for n in names]
    order = sorted(range(len(names)), key=lambda i: (keys[i], names[i]))
    counts = split_counts(len(names), frac)
    out = np.empty(len(names), dtype=object)
    out[order] = np.repeat(np.asarray(SPLIT_NAMES, dtype=object), counts)
    return out.astype(str)


# ============================================================================ packing


@dataclass(frozen=True)
class PackShard:
    """One shard of a packed set (executor item): maps read from files."""

    shard: int
    start: int
    names: tuple
    epsilon: tuple
    kappa: tuple | None
    splits: tuple
    size: int
    writer: object
    settings: str


def _shard_settings(writer, shard: int, start: int, stop: int) -> str | None:
    if writer.finished_shard(shard, start, stop) is None:
        return None
    from astrotool.io.hdf5 import open_h5

    try:
        with open_h5(writer.shard_path(shard)) as h5:
            v = h5.attrs.get("settings")
            return v.decode() if isinstance(v, bytes) else (None if v is None else str(v))
    except InputError:
        return None


def _write_pack_shard(item: PackShard, eps: np.ndarray, kap: np.ndarray | None) -> None:
    arrays = {"epsilon": eps.astype(np.float16)}
    if kap is not None:
        arrays["kappa"] = kap.astype(np.float16)
    item.writer.write_shard(item.shard, item.start, arrays,
                            {"name": np.asarray(item.names, dtype=object), "split": np.asarray(item.splits, dtype=object)},
                            attrs={"settings": item.settings})


def _overflow(arr: np.ndarray, where) -> None:
    if arr.dtype != np.float16 and np.abs(arr).max() > np.finfo(np.float16).max:
        raise InputError(where, "values beyond the float16 range (the packed set stores float16)")


def pack_shard(item: PackShard, seed: int | None = None) -> dict:
    """Read, check and write one shard; skip it when it is finished with the same settings."""
    stop = item.start + len(item.names)
    if _shard_settings(item.writer, item.shard, item.start, stop) == item.settings:
        return {"shard": item.shard, "skipped": True}
    eps = np.empty((len(item.names), 3, item.size, item.size), np.float16)
    kap = None if item.kappa is None else np.empty((len(item.names), item.size, item.size), np.float16)
    for k, p in enumerate(item.epsilon):
        a = check_map(load_npy(p, p), "epsilon", p, item.size)
        _overflow(a, p)
        eps[k] = a
        if kap is not None:
            q = item.kappa[k]
            a = check_map(load_npy(q, q), "kappa", q, item.size)
            _overflow(a, q)
            kap[k] = a
    _write_pack_shard(item, eps, kap)
    return {"shard": item.shard, "skipped": False}


def _source_roots(ctx, sources: Sequence[str]):
    """``("folders", [(label, eps_dir, kap_dir|None)])`` or ``("tarballs", [paths])``."""
    folders, tars = [], []
    for s in sources:
        named = _named_set(ctx, str(s), (("sims", "simulated set"),))
        p = named[0] if named else Path(str(s)).expanduser()
        if not p.exists() and any(c in str(s) for c in "*?["):
            hits = sorted(Path(h) for h in glob.glob(str(p)))
            if not hits:
                raise InputError(s, "the pattern matches no file")
            tars += hits
            continue
        if p.is_file() and is_tarball(p):
            tars.append(p)
            continue
        if not p.is_dir():
            names = _stage_names(ctx, "sims")
            raise InputError(s, "no such folder or tarball, and no simulated set of that name (simulated sets: "
                                f"{', '.join(names) if names else '(none)'})")
        _check_finished_simulation(p)
        sub = {d.name.upper(): d for d in p.iterdir() if d.is_dir() and d.name.upper() in KINDS.values()}
        if "EPSILON" in sub:
            folders.append((p, sub["EPSILON"], sub.get("KAPPA")))
        elif sub:
            raise InputError(p, "has KAPPA/ but no EPSILON/ folder (the inputs)")
        else:
            t = sorted(x for x in p.iterdir() if x.is_file() and is_tarball(x))
            if not t:
                raise InputError(p, "holds no EPSILON/ folder and no *.tar.gz")
            tars += t
    if folders and tars:
        raise InputError(", ".join(map(str, sources)), "mixes folders and tarballs; pack them separately")
    return ("folders", folders) if folders else ("tarballs", tars)


def source_stem(source) -> str:
    """A file-stem name for a source: its last path part without a tarball suffix, other characters as ``_``
    (``/data/test_public.tar.gz`` -> ``test_public``; ``maps`` when nothing is left)."""
    from astrotool.names import name_from

    stem = Path(str(source).rstrip("/")).name
    for suf in TAR_SUFFIXES:
        if stem.lower().endswith(suf):
            stem = stem[: -len(suf)]
            break
    return name_from(stem, "maps")


def few(names: Sequence[str], k: int = 5) -> str:
    """The first ``k`` names and how many more, for messages."""
    return ", ".join(names[:k]) + (f" ... (+{len(names) - k} more)" if len(names) > k else "")


def data_command(ctx, cfg, sources: Sequence[str]) -> dict:
    """``astro lens kappa data``: pair, check, split and pack maps into ``lens/kappa/data/<name>/``.

    Parameters
    ----------
    ctx : astrotool.context.Context
    cfg : astrotool_lens.kappa.config.KappaConfig
        ``cfg.data`` is read.
    sources : list of str
        Datathon roots (EPSILON/ and KAPPA/; EPSILON/ alone packs an input-only
        set), simulated set names, or tarballs (``*.tar.gz``, globs, a folder
        of them). Folders and tarballs are not mixed in one set.

    Returns
    -------
    dict
        The emitted summary: name, path, n, splits (counts), unpaired
        (``{"epsilon_only": [...], "kappa_only": [...]}``, dropped), size, input_only,
        shards, skipped_shards, missing_shards, seconds, maps_per_s; under
        ``--shard`` also ``shard``. A ``--shard`` task packs only its own shards
        (every N-th); the index (metadata table and manifest) is written by the
        task that finds every shard finished, the others warn how many are
        missing and exit 0.

    Raises
    ------
    astrotool.errors.InputError
        A bad map (the file or ``<tarball>:<member>`` named; finished shards stay),
        a duplicate name, a corrupt or truncated tarball.
    astrotool.errors.AstroError
        Unpaired maps without ``drop_unpaired``; an existing set made from other
        inputs or settings (the keys named) without ``--overwrite``;
        ``--overwrite`` with ``--shard``.
    """
    import json
    import time

    from astrotool.ml.data import DatasetWriter

    from astrotool_lens.kappa.data import DESCRIPTIONS, KIND

    t0 = time.perf_counter()
    d = cfg.data
    sources = [str(s) for s in sources]
    if not sources:
        raise AstroError("astro lens kappa data: give at least one source")
    mode, roots = _source_roots(ctx, sources)
    seed = ctx.stage_seed(d.seed, "lens.kappa.data.seed")
    name = d.name or source_stem(sources[0])
    out = ctx.workspace.stage("lens", "kappa/data") / name

    # ---- index by name (folders: listings; tarballs: one streaming pass, staged)
    eps_at: dict[str, str] = {}
    kap_at: dict[str, str] = {}
    stage = None
    if mode == "folders":
        described = [str(r) for r, _, _ in roots]
        for _, e, k in roots:
            for dst, folder in ((eps_at, e), (kap_at, k)):
                if folder is None:
                    continue
                warn_extra(folder)
                for p in map_files(folder):
                    if p.stem in dst:
                        raise InputError(p, f"duplicate map name {p.stem!r} (also {dst[p.stem]})")
                    dst[p.stem] = str(p)
        any_kappa = any(k is not None for _, _, k in roots)
    else:
        described = [str(t) for t in roots]
    settings = {"sources": [str(Path(s).expanduser().resolve()) for s in described], "seed": seed,
                "split": [float(x) for x in d.split], "split_method": SPLIT_METHOD, "shard_size": int(d.shard_size),
                "drop_unpaired": bool(d.drop_unpaired)}
    shard = ctx.executor_options.shard
    if ctx.overwrite and shard:
        raise AstroError("--overwrite with --shard: every task would clear the shards the others pack; pack the "
                         "set again under another --name, or remove it once before the array job")
    clear = _check_settings(out, settings, ctx.overwrite)
    made = not out.exists()   # removed again if nothing but the staged maps went in (a bad tarball)
    if mode == "tarballs":
        out.mkdir(parents=True, exist_ok=True)
        # one staging folder per --shard task: the tasks of an array job run at once
        stage = _TarStage(out / (".staging" + (f"-{shard[0]}of{shard[1]}" if shard else "")))
        try:
            stage.fill(roots)
        except BaseException:
            stage.remove()
            _remove_if_empty(out, made)
            raise
        eps_at, kap_at = stage.where["epsilon"], stage.where["kappa"]
        any_kappa = bool(kap_at)
    try:
        if not eps_at:
            raise InputError(", ".join(described), "no EPSILON/*.npy maps")
        eps_only = sorted(set(eps_at) - set(kap_at)) if any_kappa else []
        kap_only = sorted(set(kap_at) - set(eps_at))
        if (eps_only or kap_only) and not d.drop_unpaired:
            raise AstroError(f"{', '.join(described)}: unpaired maps: {len(eps_only)} EPSILON without KAPPA"
                             f"{' (' + few(eps_only) + ')' if eps_only else ''}, {len(kap_only)} KAPPA without "
                             f"EPSILON{' (' + few(kap_only) + ')' if kap_only else ''}; pairs are matched by file "
                             "name. Pack the pairs that exist with --drop-unpaired")
        names = sorted(set(eps_at) & set(kap_at)) if any_kappa else sorted(eps_at)
        if not names:
            raise AstroError(f"{', '.join(described)}: no (EPSILON, KAPPA) pair shares a name")
        # maps without kappa can only be predicted: all of an input-only set is its test split
        splits = split_of(seed, names, d.split) if any_kappa else np.full(len(names), "test")
        if mode == "folders":
            p0 = eps_at[names[0]]
            size = int(check_map(load_npy(p0, p0), "epsilon", p0).shape[-1])
        else:
            size = stage.size
        full = {**settings, "n": len(names), "size": size, "input_only": not any_kappa,
                "names_sha256": _names_hash(names)}
        if mode == "tarballs":  # a tarball rewritten under the same name: every shard is packed again
            full["files_sha256"] = files_fingerprint(roots)
        key = json.dumps(full, sort_keys=True)
        _start_output(out, settings, clear)
        writer = DatasetWriter(str(out), name, kind=KIND, command="lens kappa data")
        ss = int(d.shard_size)
        starts = list(range(0, len(names), ss))
        if mode == "folders":
            items = [PackShard(k, a, tuple(names[a:a + ss]), tuple(eps_at[n] for n in names[a:a + ss]),
                               tuple(kap_at[n] for n in names[a:a + ss]) if any_kappa else None,
                               tuple(splits[a:a + ss]), size, writer, _shard_key(key, names[a:a + ss], eps_at, kap_at))
                     for k, a in enumerate(starts)]
            keys = [f"shard{k:05d}" for k in range(len(items))]
            results = ctx.map(pack_shard, items, "pack kappa maps", keys=keys, need_all="shard")
            skipped = sum(1 for _, r in results if r["skipped"])
            ran = {r["shard"] for _, r in results}
            missing = sum(1 for it in items if it.shard not in ran and
                          _shard_settings(writer, it.shard, it.start, it.start + len(it.names)) != it.settings)
        else:   # under --shard, this task's shards (each task stages the tarballs: they stream only whole)
            mine = set(ctx.shard_of(list(range(len(starts)))))
            skipped = stage.pack(writer, names, splits, any_kappa, ss, key, only=mine)
            missing = sum(1 for k, a in enumerate(starts) if k not in mine and
                          _shard_settings(writer, k, a, min(a + ss, len(names))) != key)
        n_split = {s: int((splits == s).sum()) for s in SPLIT_NAMES}
        for s, frac in zip(SPLIT_NAMES, d.split):
            if any_kappa and frac > 0 and not n_split[s]:   # an input-only set is all test by design
                ctx.log.warning("split %r holds no map (%d maps, fractions %s): repack with other fractions, "
                                "e.g. --set lens.kappa.data.split=[0.6,0.2,0.2]", s, len(names),
                                [float(x) for x in d.split])
        unpaired = {"epsilon_only": eps_only, "kappa_only": kap_only}
        if not missing:
            manifest = writer.finalize(len(starts), attrs={
                "size": size, "seed": seed, "split_fractions": [float(x) for x in d.split], "splits": n_split,
                "sources": settings["sources"], "source_kind": mode, "input_only": not any_kappa,
                "dropped_unpaired": {k: len(v) for k, v in unpaired.items()}, "settings": full},
                descriptions=DESCRIPTIONS)
            # another settings file from a differently-sized earlier attempt: drop stale shards beyond the set
            for p in sorted(out.glob("shard*_arrays.h5")):
                if p.name not in {s["file"] for s in manifest["shards"]}:
                    p.unlink()
    finally:
        if stage is not None:
            stage.remove()
        if made and not shard:   # no shard packed: no set (other --shard tasks may be packing theirs)
            _remove_unpacked(out)
        _remove_if_empty(out, made)
    seconds = time.perf_counter() - t0
    summary = {"name": name, "path": str(out), "n": len(names), "splits": n_split, "size": size,
               "input_only": not any_kappa, "unpaired": {k: {"n": len(v), "names": v[:20]} for k, v in unpaired.items()},
               "shards": len(starts), "skipped_shards": skipped, "missing_shards": missing,
               "seconds": round(seconds, 3), "maps_per_s": round(len(names) / seconds, 1) if seconds > 0 else None}
    if shard:
        summary["shard"] = "{}/{}".format(*shard)   # as resolved (--shard auto: this array task's)
    from astrotool.ml import commands as mc

    if missing:   # other --shard tasks have not finished theirs: the last one to finish writes the index
        ctx.log.warning("%d of %d shards missing (other --shard tasks): the index is written once all exist (the "
                        "last task to finish writes it; or re-run the same command)", missing, len(starts))
        mc.record(ctx, inputs=[Path(s) for s in settings["sources"]],
                  outputs=[writer.shard_path(k) for k in range(len(starts)) if writer.shard_path(k).exists()])
        ctx.emit(summary)
        return summary
    mc.record(ctx, inputs=[Path(s) for s in settings["sources"]], outputs=[writer.manifest_path])
    ctx.emit(summary)
    return summary


def _shard_key(key: str, names: list[str], eps_at: dict, kap_at: dict) -> str:
    """A folder shard's settings key: the set's, and its own files (a map rewritten under its name repacks the
    shard that holds it, and only that one)."""
    return f"{key}|{files_fingerprint([eps_at[n] for n in names] + [kap_at[n] for n in names if n in kap_at])}"


def _names_hash(names: list[str]) -> str:
    import hashlib

    return hashlib.sha256("\n".join(names).encode()).hexdigest()


SETTINGS_FILE = "data_settings.json"


def _check_settings(out: Path, settings: dict, overwrite: bool) -> bool:
    """Refuse a folder made from other inputs/settings (naming the keys) unless ``overwrite``.

    Returns whether the folder must be emptied before packing.
    """
    import json

    f = out / SETTINGS_FILE
    if f.is_file():
        try:
            old = json.loads(f.read_text())
        except (OSError, ValueError):
            old = {}
        from astrotool.ml.training import settings_changes

        changed = settings_changes(old, settings)
        if changed and not overwrite:
            hint = ""
            if old.get("split_method") != settings.get("split_method"):
                hint = (f" (packed by an earlier version: the split method changed in this version, "
                        f"{old.get('split_method') or 'per-name-v1'!s} -> {settings.get('split_method')}, so maps "
                        "would change splits and its shards are not mixed with new ones; --overwrite packs it "
                        "again, or under --shard remove the set once before the array job)")
            raise AstroError(f"{out}: made with other inputs or settings ({'; '.join(changed)}); "
                             f"use another --name or --overwrite{hint}")
        return bool(changed)
    if out.is_dir() and any(not p.name.startswith(".staging") for p in out.iterdir()):
        if not overwrite:
            raise AstroError(f"{out}: exists and was not made by this command's settings record; use another "
                             "--name or --overwrite")
        return True
    return False


def _remove_unpacked(folder: Path) -> None:
    """Remove the settings record of ``folder`` when it holds nothing else: a run that packed no shard leaves no
    folder that other commands list as an unfinished set (finished shards stay, and a rerun resumes)."""
    if folder.is_dir() and [x.name for x in folder.iterdir()] == [SETTINGS_FILE]:
        (folder / SETTINGS_FILE).unlink()


def _remove_if_empty(folder: Path, made: bool) -> None:
    """Remove ``folder`` if this run made it and it is empty: a failed run leaves no set that is not one."""
    if made and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()


def _start_output(out: Path, settings: dict, clear: bool) -> None:
    """Empty the folder when asked (keeping the staged maps), then write the settings record."""
    import shutil

    from astrotool.workspace import write_json_atomic

    if clear and out.is_dir():
        for p in out.iterdir():
            if not p.name.startswith(".staging"):
                shutil.rmtree(p) if p.is_dir() else p.unlink()
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / SETTINGS_FILE, settings)


class _TarStage:
    """Tarball members staged on disk in one streaming pass, then packed in name order.

    The tar order is arbitrary (all EPSILON/ before all KAPPA/, or shuffled), so
    pairing by name needs either every map in memory or a second look at it.
    Each checked member is appended (float16) to a raw file per kind in arrival
    order; the shards are then written in sorted-name order by reading rows back
    (``os.pread``). Memory: one member plus one shard; disk: the
    uncompressed float16 maps, deleted when packing ends (even on failure).
    """

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.where: dict[str, dict[str, str]] = {"epsilon": {}, "kappa": {}}
        self.row: dict[str, dict[str, int]] = {"epsilon": {}, "kappa": {}}
        self.size: int | None = None

    def _file(self, kind: str) -> Path:
        return self.folder / f"{kind}.f16"

    def fill(self, tarballs: Sequence[Path]) -> None:
        if self.folder.exists():
            import shutil

            shutil.rmtree(self.folder)
        self.folder.mkdir(parents=True)
        fh = {k: open(self._file(k), "wb") for k in KINDS}
        try:
            for t in tarballs:
                if not Path(t).is_file():
                    raise InputError(t, "no such tarball")
                has_layout = None
                extra: list = []
                for kind, stem, mn, data in stream_tar(t, lambda k, s, mn: k is not None, extra=extra):
                    if kind is None:
                        continue
                    where = f"{t}:{mn}"
                    if stem in self.where[kind]:
                        raise InputError(where, f"duplicate map name {stem!r} (also {self.where[kind][stem]})")
                    arr = check_map(load_npy(data, where), kind, where, self.size)
                    _overflow(arr, where)
                    if self.size is None:
                        self.size = int(arr.shape[-1])
                    self.where[kind][stem] = where
                    self.row[kind][stem] = len(self.row[kind])
                    fh[kind].write(np.ascontiguousarray(arr, dtype=np.float16).tobytes())
                    has_layout = True
                if not has_layout:
                    raise InputError(t, "no EPSILON/*.npy or KAPPA/*.npy members (not a Datathon tarball)")
                warn_extra_members(t, extra)
        finally:
            for f in fh.values():
                f.close()

    def _rows(self, kind: str, fh, chunk: list[str]) -> np.ndarray:
        """The staged maps of ``chunk``, read row by row (pread: no mapping grows the resident memory)."""
        shape = (3, self.size, self.size) if kind == "epsilon" else (self.size, self.size)
        nbytes = int(np.prod(shape)) * 2
        out = np.empty((len(chunk), *shape), np.float16)
        for k, n in enumerate(chunk):
            buf = os.pread(fh.fileno(), nbytes, self.row[kind][n] * nbytes)
            if len(buf) != nbytes:
                raise InputError(self._file(kind), "staged maps cut short (disk full?)")
            out[k] = np.frombuffer(buf, np.float16).reshape(shape)
        return out

    def pack(self, writer, names: list[str], splits: np.ndarray, with_kappa: bool, ss: int, key: str,
             only: set | None = None) -> int:
        """Write the shards (those in ``only``, default all; skipping finished ones of the same settings);
        return how many were skipped."""
        skipped = 0
        with open(self._file("epsilon"), "rb") as fe, open(self._file("kappa"), "rb") as fk:
            for k, a in enumerate(range(0, len(names), ss)):
                if only is not None and k not in only:
                    continue
                chunk = names[a:a + ss]
                item = PackShard(k, a, tuple(chunk), (), None, tuple(splits[a:a + ss]), self.size, writer, key)
                if _shard_settings(writer, k, a, a + len(chunk)) == key:
                    skipped += 1
                    continue
                _write_pack_shard(item, self._rows("epsilon", fe, chunk),
                                  self._rows("kappa", fk, chunk) if with_kappa else None)
        return skipped

    def remove(self) -> None:
        import shutil

        shutil.rmtree(self.folder, ignore_errors=True)
