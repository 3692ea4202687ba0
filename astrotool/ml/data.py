"""Sharded array datasets on disk: write, check, read, stream, split and feed torch.

A dataset folder holds

* ``shardNNNNN_<product>.h5`` -- one HDF5 file per shard: one dataset per named
  array, shape ``(n_shard, *shape)``, chunked (about 1 MiB per chunk) and
  compressed; the shard's per-sample metadata columns in the ``metadata`` group;
  attributes: provenance, ``start`` and ``stop`` (the global sample indices it
  holds, ``[start, stop)``) and the writer's own attributes;
* ``<name>_<table>.parquet`` -- the per-sample metadata of the whole set, one row
  per sample in sample order, with an ``index`` column;
* ``<name>_dataset.json`` -- the manifest, written last, so that its presence
  marks the set complete: ``format``, ``kind``, ``name``, ``n``, ``arrays``
  (``{name: {"shape": [...], "dtype": "float32"}}``, per sample), ``shards``
  (``[{"file", "start", "stop"}]``, covering ``0 .. n-1`` in order),
  ``metadata`` (the Parquet file), ``provenance``
  (:func:`astrotool.provenance.provenance`), and the plugin's own keys
  (e.g. ``stamp_size``, ``pixel_scale``, ``config``) at the top level.

Write with :class:`DatasetWriter` (one shard per executor item, then
:meth:`DatasetWriter.finalize`), read with :class:`ArrayDataset`
(random access with :meth:`~ArrayDataset.read`, constant-memory streaming with
:meth:`~ArrayDataset.iter_batches`), split with :func:`group_split` and train
with :func:`torch_loader`. Samples of different lengths are stored padded, next
to their lengths (:func:`pad_sequences`). h5py, pyarrow and torch are imported
inside functions.
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from astrotool.errors import AstroError, InputError
from astrotool.seeding import entropy

__docformat__ = "numpy"

__all__ = ["FORMAT", "MANIFEST_SUFFIX", "DatasetWriter", "ArrayDataset", "EpochBatchSampler",
           "group_split", "pad_sequences", "resolve_dataset", "torch_loader", "shard_name", "read_shard_arrays",
           "read_shard_metadata"]

FORMAT = "astrotool-array-dataset"
"""``format`` of an array data set's manifest."""
FORMAT_VERSION = 1
MANIFEST_SUFFIX = "_dataset.json"
"""Suffix of an array data set's manifest file (``<name>_dataset.json``)."""
META_GROUP = "metadata"
RESERVED_KEYS = frozenset({"format", "format_version", "kind", "name", "n", "arrays", "shards", "metadata",
                           "provenance"})
"""Manifest keys owned by this module; a writer's own attributes may not use them."""

SPLITS = ("train", "val", "test")
"""The subsets :meth:`ArrayDataset.split_indices` knows (the metadata column ``split``)."""

CHUNK_BYTES = 1 << 20
"""Target HDF5 chunk size (h5py's default chunk cache holds one such chunk per dataset)."""

OPEN_SHARDS = 4
"""Shard files a reader keeps open at once (least recently used are closed)."""

_SPLIT_STREAM = 0x5B117
_EPOCH_STREAM = 0xBA7C4


def shard_name(shard: int, product: str = "arrays") -> str:
    """File name of shard ``shard``: ``shard00000_<product>.h5``."""
    return f"shard{int(shard):05d}_{product}.h5"


def _encode_attr(value):
    return json.dumps(value) if isinstance(value, (dict, list, tuple)) else value


def _dtype_name(dtype) -> str:
    """``"float32"`` where that names the dtype exactly, else its array-protocol string (``"<U8"``)."""
    dtype = np.dtype(dtype)
    try:
        return dtype.name if np.dtype(dtype.name) == dtype else dtype.str
    except TypeError:
        return dtype.str


def _decode_column(v: np.ndarray) -> np.ndarray:
    return np.char.decode(v, "utf-8") if v.dtype.kind == "S" else v


def read_shard_metadata(path: str | Path) -> dict[str, np.ndarray]:
    """The per-sample metadata columns stored in one shard file.

    Raises
    ------
    astrotool.errors.InputError
        The file is missing, unreadable or has no metadata group.
    """
    from astrotool.io.hdf5 import open_h5

    with open_h5(path) as h5:
        if META_GROUP not in h5:
            raise InputError(path, f"no {META_GROUP!r} group (not a shard of an {FORMAT})")
        grp = h5[META_GROUP]
        order = json.loads(grp.attrs.get("columns", "[]")) or list(grp)
        return {k: _decode_column(grp[k][()]) for k in order}


def read_shard_arrays(path: str | Path, names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """Every sample of the named arrays of one shard file (an executor item's input).

    Raises
    ------
    astrotool.errors.InputError
        The file is missing or unreadable, or an array is absent.
    """
    from astrotool.io.hdf5 import open_h5

    with open_h5(path) as h5:
        names = list(names) if names is not None else [k for k in h5 if k != META_GROUP]
        try:
            return {k: h5[k][()] for k in names}
        except KeyError as exc:
            raise InputError(path, f"missing array {exc}") from None


def _shard_header(path: Path) -> tuple[int, int, dict[str, tuple[tuple[int, ...], np.dtype]], str | None]:
    """``(start, stop, {array: (per-sample shape, dtype)}, content digest or None)`` of a shard file."""
    from astrotool.io.hdf5 import open_h5

    with open_h5(path) as h5:
        try:
            start, stop = int(h5.attrs["start"]), int(h5.attrs["stop"])
            digest = h5.attrs.get(CONTENT_ATTR)
        except (KeyError, TypeError, ValueError):
            raise InputError(path, "no start/stop attributes (not a shard of an array dataset)") from None
        arrays = {k: (tuple(int(s) for s in h5[k].shape[1:]), h5[k].dtype) for k in h5 if k != META_GROUP}
        for k in arrays:
            if h5[k].shape[0] != stop - start:
                raise InputError(path, f"array {k!r} holds {h5[k].shape[0]} samples, attributes say "
                                       f"{stop - start}")
    return start, stop, arrays, (None if digest is None else str(digest))


CONTENT_ATTR = "content_sha256"
"""Shard attribute: SHA-256 (16 hex digits) of its arrays and metadata, copied into the manifest's shard
list so that a set rewritten with other values under the same name is told apart
(:func:`astrotool.ml.commands.dataset_identity`)."""


def _content_sha256(arrays: Mapping[str, np.ndarray], metadata: Mapping[str, np.ndarray] | None) -> str:
    import hashlib

    h = hashlib.sha256()
    for k, v in sorted({**arrays, **{f"metadata/{c}": np.asarray(m) for c, m in (metadata or {}).items()}}.items()):
        h.update(f"{k}:{v.dtype.str}:{v.shape}".encode())
        h.update(memoryview(np.ascontiguousarray(v)).cast("B") if v.dtype.kind not in "OU" else
                 "\x1f".join(map(str, v.ravel())).encode())
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class DatasetWriter:
    """Writes a dataset folder shard by shard, then its table and manifest.

    Small and picklable, so executor items can carry it.

    Parameters
    ----------
    root : str
        The dataset folder.
    name : str
        Dataset name (names the table and manifest).
    shard_product, table_product : str
        ``shardNNNNN_<shard_product>.h5`` and ``<name>_<table_product>.parquet``.
    kind : str
        What the set holds, e.g. ``"lens-shear"``; a reader class may require it.
    compression : {"none", "low", "medium", "high"}
        HDF5 compression of the arrays (:func:`astrotool.io.hdf5.compression_kwargs`).
    command : str
        The command recorded in the provenance attributes.
    """

    root: str
    name: str
    shard_product: str = "arrays"
    table_product: str = "metadata"
    kind: str = ""
    compression: str = "medium"
    command: str = ""

    def __post_init__(self):
        from astrotool.names import check_name

        check_name(self.name, "dataset name")   # one folder's file names: never a path outside it

    @property
    def folder(self) -> Path:
        return Path(self.root)

    def shard_path(self, shard: int) -> Path:
        """Path of shard number ``shard``."""
        return self.folder / shard_name(shard, self.shard_product)

    @property
    def table_path(self) -> Path:
        return self.folder / f"{self.name}_{self.table_product}.parquet"

    @property
    def manifest_path(self) -> Path:
        return self.folder / f"{self.name}{MANIFEST_SUFFIX}"

    def write_shard(self, shard: int, start: int, arrays: Mapping[str, np.ndarray],
                    metadata: Mapping[str, np.ndarray] | None = None, attrs: Mapping[str, Any] | None = None) -> Path:
        """Write one shard atomically.

        Parameters
        ----------
        shard : int
            Shard number.
        start : int
            Global index of the shard's first sample.
        arrays : mapping of str to numpy.ndarray
            Named arrays, each ``(n, *shape)`` with the same ``n``.
        metadata : mapping of str to numpy.ndarray, optional
            Per-sample columns of length ``n`` (numbers or strings).
        attrs : mapping, optional
            Extra HDF5 attributes (dicts and lists are stored as JSON).

        Returns
        -------
        pathlib.Path
        """
        import h5py

        from astrotool.io.hdf5 import compression_kwargs, provenance_attrs
        from astrotool.workspace import atomic_path

        arrays = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
        if not arrays:
            raise ValueError("write_shard: no arrays")
        lengths = {k: v.shape[0] if v.ndim else -1 for k, v in arrays.items()}
        n = next(iter(lengths.values()))
        for k, v in {**lengths, **{f"metadata {c}": len(v) for c, v in (metadata or {}).items()}}.items():
            if v != n:
                raise ValueError(f"write_shard: {k} holds {v} samples, expected {n}")
        if "index" in arrays or META_GROUP in arrays:
            raise ValueError(f"write_shard: 'index' and {META_GROUP!r} are reserved names")
        for c, v in (metadata or {}).items():
            v = np.asarray(v)
            if v.dtype.kind == "O" and not all(isinstance(x, str) for x in v.ravel()):
                raise ValueError(f"write_shard: metadata {c!r} mixes strings with other values "
                                 "(would be stored as their text, e.g. 'None')")
        for k, v in arrays.items():
            if 0 in v.shape[1:]:
                raise ValueError(f"write_shard: array {k!r} has an empty sample shape {v.shape[1:]}")
        comp = compression_kwargs(self.compression)
        path = self.shard_path(shard)
        digest = _content_sha256(arrays, metadata)
        with atomic_path(path) as tmp:
            with h5py.File(tmp, "w") as h5:
                for k, v in arrays.items():
                    rows = max(1, min(n, CHUNK_BYTES // max(1, v[:1].nbytes)))
                    h5.create_dataset(k, data=v, chunks=(rows, *v.shape[1:]) if n else None,
                                      **(comp if n else {}))
                grp = h5.create_group(META_GROUP)
                grp.attrs["columns"] = json.dumps(list(metadata or {}))  # h5py lists members alphabetically
                for c, v in (metadata or {}).items():
                    v = np.asarray(v)
                    grp.create_dataset(c, data=np.char.encode(v.astype(str), "utf-8") if v.dtype.kind in "UO" else v)
                for k, v in {**provenance_attrs(self.command), **(attrs or {})}.items():
                    h5.attrs[k] = _encode_attr(v)
                h5.attrs["kind"] = self.kind
                h5.attrs["start"], h5.attrs["stop"] = int(start), int(start) + n
                h5.attrs[CONTENT_ATTR] = digest
        return path

    def finished_shard(self, shard: int, start: int, stop: int) -> dict[str, np.ndarray] | None:
        """The metadata of shard ``shard`` if it exists, is readable and holds ``[start, stop)``.

        ``None`` means it must be (re)written: missing, damaged, or written for
        another shard size. Used to resume an interrupted run.
        """
        path = self.shard_path(shard)
        if not path.exists():
            return None
        try:
            if _shard_header(path)[:2] != (start, stop):
                return None
            return read_shard_metadata(path)
        except InputError:
            return None

    def finalize(self, n_shards: int, attrs: Mapping[str, Any] | None = None,
                 table_metadata: Mapping[str, Any] | None = None,
                 before_manifest: Callable[[dict], None] | None = None,
                 units: Mapping[str, str] | None = None, descriptions: Mapping[str, str] | None = None) -> dict:
        """Write the metadata table and then the manifest, once every shard exists.

        Parameters
        ----------
        n_shards : int
            Shards ``0 .. n_shards-1`` make up the set, in sample order.
        attrs : mapping, optional
            The plugin's own manifest keys (not :data:`RESERVED_KEYS`).
        table_metadata : mapping, optional
            Provenance stored in the Parquet file.
        before_manifest : callable, optional
            Called with the metadata columns after the table is written and
            before the manifest (an export that must exist when the set counts
            as complete).
        units, descriptions : mapping, optional
            Astropy unit strings and one-line descriptions of the table's columns.

        Returns
        -------
        dict
            The manifest.

        Raises
        ------
        astrotool.errors.InputError
            A shard is missing or unreadable, shards leave a gap, or their arrays differ.
        """
        import pyarrow as pa

        from astrotool.io.tables import write_parquet
        from astrotool.provenance import provenance
        from astrotool.workspace import write_json_atomic

        clash = sorted(set(attrs or {}) & RESERVED_KEYS)
        if clash:
            raise ValueError(f"finalize: reserved manifest keys {', '.join(clash)}")
        shards, columns, spec = [], [], None
        expect = 0
        for k in range(n_shards):
            path = self.shard_path(k)
            start, stop, arrays, content = _shard_header(path)
            if start != expect:
                raise InputError(path, f"starts at sample {start}, expected {expect} (shards leave a gap)")
            if spec is None:
                spec = arrays
            elif arrays != spec:
                raise InputError(path, "its arrays differ from shard 0's (shapes, dtypes or names)")
            shards.append({"file": path.name, "start": start, "stop": stop,
                           **({"sha256": content} if content else {})})
            columns.append(read_shard_metadata(path))
            if set(columns[-1]) != set(columns[0]):
                raise InputError(path, f"its metadata columns {sorted(columns[-1])} differ from shard 0's "
                                       f"{sorted(columns[0])}")
            kinds = {c: v.dtype.kind for c, v in columns[-1].items()}
            first = {c: v.dtype.kind for c, v in columns[0].items()}
            if kinds != first:
                bad = sorted(c for c in kinds if kinds[c] != first[c])
                raise InputError(path, f"its metadata column(s) {', '.join(bad)} hold another type than shard 0's")
            expect = stop
        n = expect
        cols = {c: np.concatenate([m[c] for m in columns]) for c in (columns[0] if columns else {})}
        cols.setdefault("index", np.arange(n))
        cols = {"index": cols.pop("index"), **cols}
        write_parquet(pa.table(cols), self.table_path,
                      metadata={"dataset": self.name, "kind": self.kind, **(table_metadata or {})},
                      command=self.command, units=units, descriptions=descriptions)
        if before_manifest is not None:
            before_manifest(cols)
        manifest = {
            "format": FORMAT, "format_version": FORMAT_VERSION, "kind": self.kind, "name": self.name, "n": n,
            "arrays": {k: {"shape": list(s), "dtype": _dtype_name(d)} for k, (s, d) in (spec or {}).items()},
            "shards": shards, "metadata": self.table_path.name, "provenance": provenance(self.command),
            **(attrs or {}),
        }
        write_json_atomic(self.manifest_path, manifest)
        return manifest


class ArrayDataset:
    """A finished dataset folder (see the module docstring).

    Opening checks the manifest and every shard's header (array names, shapes,
    dtypes, sample ranges); samples are read on demand and shard files are
    opened lazily, per process, so a reader can be handed to DataLoader workers.

    Parameters
    ----------
    root : path-like
        The dataset folder.

    Attributes
    ----------
    root : pathlib.Path
    manifest_path : pathlib.Path
    manifest : dict
        The manifest as written.
    name : str
    n : int
        Number of samples.
    arrays : dict of str to (tuple, numpy.dtype)
        Per-sample shape and dtype of each named array.
    attrs : dict
        The writer's own manifest keys.
    shards : list of (pathlib.Path, int, int)
        Each shard file with the samples ``[start, stop)`` it holds.
    shard_paths : list of pathlib.Path

    Raises
    ------
    astrotool.errors.InputError
        No manifest (unfinished), unreadable or malformed manifest, wrong kind,
        missing, damaged or inconsistent shards -- naming the file.
    """

    KIND: str | None = None
    """Required ``kind`` (subclasses set it); ``None`` accepts any."""

    SAMPLE_WORD = "sample"
    """How messages name one sample (``"stamp"``, ``"light curve"``)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        manifests = sorted(self.root.glob(f"*{MANIFEST_SUFFIX}")) if self.root.is_dir() else []
        if not manifests:
            raise InputError(self.root, f"not a finished dataset (no *{MANIFEST_SUFFIX}; run or resume the "
                                        "command that writes it)")
        if len(manifests) > 1:
            raise InputError(self.root, f"several manifests ({', '.join(p.name for p in manifests)})")
        self.manifest_path = mp = manifests[0]
        try:
            self.manifest = m = json.loads(mp.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(mp, f"unreadable dataset manifest ({exc})") from None
        if not isinstance(m, dict) or m.get("format") != FORMAT:
            found = m.get("format") if isinstance(m, dict) else None
            raise InputError(mp, f"not an {FORMAT} manifest (format {found!r}: another program's, or an older "
                                 "astrotool's; write the dataset again)")
        if int(m.get("format_version", 0)) > FORMAT_VERSION:
            raise InputError(mp, f"format version {m['format_version']} is newer than this astrotool reads "
                                 f"({FORMAT_VERSION})")
        if self.KIND is not None and m.get("kind") != self.KIND:
            raise InputError(mp, f"holds a {m.get('kind')!r} dataset, expected {self.KIND!r}")
        try:
            self.name = str(m["name"])
            self.n = int(m["n"])
            self.arrays = {k: (tuple(int(s) for s in v["shape"]), np.dtype(v["dtype"]))
                           for k, v in m["arrays"].items()}
            self.shards = [(self.root / s["file"], int(s["start"]), int(s["stop"])) for s in m["shards"]]
            contents = [s.get("sha256") for s in m["shards"]]
            self._table = self.root / m["metadata"]
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InputError(mp, f"malformed dataset manifest ({type(exc).__name__}: {exc})") from None
        self.attrs = {k: v for k, v in m.items() if k not in RESERVED_KEYS}
        expect = 0
        for p, start, stop in self.shards:
            if start != expect or stop < start:
                raise InputError(mp, f"shard {p.name} holds [{start}, {stop}), expected to start at {expect}")
            expect = stop
        if expect != self.n:
            raise InputError(mp, f"shards hold {expect} samples, the manifest says n = {self.n}")
        for (p, start, stop), want in zip(self.shards, contents):
            if not p.is_file():
                raise InputError(p, "shard listed in the manifest is missing")
            got_start, got_stop, arrays, got = _shard_header(p)
            if (got_start, got_stop) != (start, stop):
                raise InputError(p, f"holds samples [{got_start}, {got_stop}), the manifest says [{start}, {stop})")
            for k, (shape, dtype) in self.arrays.items():
                if k not in arrays:
                    raise InputError(p, f"missing array {k!r}")
                if arrays[k] != (shape, dtype):
                    raise InputError(p, f"array {k!r} is {arrays[k][1]} {arrays[k][0]} per {self.SAMPLE_WORD}, "
                                        f"the manifest says {dtype} {shape}")
            if want and got and want != got:
                raise InputError(p, f"its content ({CONTENT_ATTR} {got}) is not the manifest's ({want}): the shard "
                                    "was replaced after the set was written; write the set again")
        self.shard_paths = [p for p, _, _ in self.shards]
        self._starts = np.array([s for _, s, _ in self.shards], dtype=np.int64)
        self._handles: OrderedDict = OrderedDict()
        self._pid = os.getpid()
        self._meta: dict | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.root)!r}, n={self.n}, arrays={list(self.arrays)})"

    def __len__(self) -> int:
        return self.n

    # ---------------------------------------------------------------- handles
    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_handles"] = OrderedDict()
        state["_meta"] = None
        return state

    def _handle(self, shard: int):
        """The open HDF5 file of a shard, opened lazily in this process (at most :data:`OPEN_SHARDS`)."""
        from astrotool.io.hdf5 import open_h5

        if os.getpid() != self._pid:  # a forked worker: the parent's handles are not ours
            self._handles, self._pid = OrderedDict(), os.getpid()
        h5 = self._handles.get(shard)
        if h5 is None:
            while len(self._handles) >= OPEN_SHARDS:
                self._handles.popitem(last=False)[1].close()
            h5 = self._handles[shard] = open_h5(self.shards[shard][0])
        else:
            self._handles.move_to_end(shard)
        return h5

    def close(self) -> None:
        """Close the open shard files (they reopen on the next read)."""
        if os.getpid() == self._pid:
            for h5 in self._handles.values():
                h5.close()
        self._handles = OrderedDict()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---------------------------------------------------------------- metadata
    def split_indices(self, split: str) -> np.ndarray:
        """Sample indices of ``split`` (``train``, ``val``, ``test``, or ``all``), ascending.

        The subsets are the metadata column ``split`` (written by the plugin, e.g.
        from :func:`group_split`); a set without that column has only ``all``.
        """
        if split == "all":
            return np.arange(self.n)
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS + ('all',)}, got {split!r}")
        if "split" not in self.columns:
            raise InputError(self.root, "has no train/val/test splits (no metadata column 'split'); use 'all'")
        return np.flatnonzero(np.asarray(self.metadata(["split"])["split"]).astype(str) == split)

    @property
    def columns(self) -> list[str]:
        """Names of the per-sample metadata columns."""
        import pyarrow.parquet as pq

        try:
            return list(pq.read_schema(self._table).names)
        except (OSError, ValueError) as exc:
            raise InputError(self._table, f"not a readable Parquet file: {exc}") from None

    def metadata(self, columns: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Per-sample metadata columns as numpy arrays, in sample order.

        Parameters
        ----------
        columns : sequence of str, optional
            Only these (default: all, read once and cached).
        """
        from astrotool.io.tables import read_parquet

        if self._meta is None or (columns is not None and not set(columns) <= set(self._meta)):
            t = read_parquet(self._table, columns=None if columns is None else list(columns))
            if t.num_rows != self.n:
                raise InputError(self._table, f"has {t.num_rows} rows, the manifest says {self.n}")
            got = {c: t.column(c).to_numpy(zero_copy_only=False) for c in t.column_names}
            if columns is not None:
                return got
            self._meta = got
        return self._meta if columns is None else {c: self._meta[c] for c in columns}

    # ---------------------------------------------------------------- samples
    def _names(self, names) -> list[str]:
        names = list(self.arrays) if names is None else ([names] if isinstance(names, str) else list(names))
        unknown = [k for k in names if k not in self.arrays]
        if unknown:
            raise KeyError(f"{self.root}: no array {', '.join(map(repr, unknown))} "
                           f"(has {', '.join(self.arrays)})")
        return names

    def read(self, indices=None, names: Sequence[str] | str | None = None,
             check_finite: bool = False) -> dict[str, np.ndarray]:
        """Samples by global index, in the order given (random access).

        Parameters
        ----------
        indices : array-like of int, optional
            Sample indices (default: every sample -- the whole set in memory).
        names : str or sequence of str, optional
            Arrays to read (default: all).
        check_finite : bool
            Raise :class:`InputError` naming the shard and the sample when a
            floating-point value is NaN or infinite.

        Returns
        -------
        dict of str to numpy.ndarray
            ``(len(indices), *shape)`` per array.
        """
        names = self._names(names)
        idx = np.arange(self.n) if indices is None else np.asarray(indices, dtype=np.int64).ravel()
        if idx.size and (idx.min() < 0 or idx.max() >= self.n):
            raise IndexError(f"{self.root}: sample indices must lie in 0..{self.n - 1}")
        out = {k: np.empty((idx.size, *self.arrays[k][0]), self.arrays[k][1]) for k in names}
        shard_of = np.searchsorted(self._starts, idx, side="right") - 1
        for s in np.unique(shard_of):
            sel = np.flatnonzero(shard_of == s)
            local, inverse = np.unique(idx[sel] - self._starts[s], return_inverse=True)
            lo, hi = int(local[0]), int(local[-1]) + 1
            h5 = self._handle(int(s))
            run = local.size == hi - lo and bool(np.all(np.diff(sel) == 1)) and bool(np.all(np.diff(idx[sel]) == 1))
            for k in names:
                d = h5[k]
                if run:  # consecutive samples in order (streaming): read straight into the output
                    d.read_direct(out[k], np.s_[lo:hi], np.s_[sel[0]:sel[-1] + 1])
                    block = out[k][sel[0]:sel[-1] + 1]
                else:
                    block = d[lo:hi][local - lo] if 4 * local.size >= hi - lo else d[local]
                if check_finite and block.dtype.kind in "fc":
                    bad = ~np.isfinite(block.reshape(len(block), -1)).all(axis=1)
                    if bad.any():
                        i = int(self._starts[s] + local[np.flatnonzero(bad)[0]])
                        raise InputError(self.shards[s][0], f"NaN or infinite values in {k!r} "
                                                             f"({self.SAMPLE_WORD} {i})")
                if not run:
                    out[k][sel] = block[inverse.ravel()]
        return out

    def iter_batches(self, batch_size: int, names: Sequence[str] | str | None = None, indices=None,
                     check_finite: bool = False) -> Iterator[dict[str, np.ndarray]]:
        """Stream samples in batches without loading the set (memory ~ one batch).

        Parameters
        ----------
        batch_size : int
            Samples per batch (the last one may be smaller).
        names : str or sequence of str, optional
            Arrays to read (default: all).
        indices : array-like of int, optional
            Stream only these samples, in this order (default: all, in order).
        check_finite : bool
            As in :meth:`read`.

        Yields
        ------
        dict of str to numpy.ndarray
            The arrays and ``"index"``, the samples' global indices.
        """
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        total = self.n if indices is None else len(indices)
        for a in range(0, total, batch_size):
            b = min(total, a + batch_size)
            idx = np.arange(a, b) if indices is None else np.asarray(indices[a:b], dtype=np.int64)
            yield {**self.read(idx, names, check_finite), "index": idx}


# ============================================================================ sequences


def pad_sequences(sequences: Sequence, length: int | None = None, value: float = 0,
                  dtype=None) -> tuple[np.ndarray, np.ndarray]:
    """Stack sequences of different lengths into one padded array and their lengths.

    A dataset's arrays have one shape per sample, so variable-length samples
    (the 1..N alerts of an object, light curves of different spans) are
    stored padded to a common ``length`` next to an array of their lengths;
    a model's mask is ``np.arange(length) < lengths[:, None]`` (True on the
    valid steps).

    Parameters
    ----------
    sequences : sequence of array-like
        Each ``(t_i, *feature_shape)`` with the same feature shape (``t_i``
        may be 0).
    length : int, optional
        Padded length (default: the longest sequence).
    value : float
        Fill value of the padded steps.
    dtype : numpy dtype, optional
        Default: that of the (non-empty) sequences.

    Returns
    -------
    padded : numpy.ndarray
        ``(n, length, *feature_shape)``; sequence ``i`` in ``padded[i, :t_i]``.
    lengths : numpy.ndarray
        ``(n,)`` int64, the ``t_i``.

    Raises
    ------
    ValueError
        Feature shapes that differ, no sequences, or a sequence longer than ``length``.
    """
    arrays = [np.asarray(a) for a in sequences]
    if not arrays:
        raise ValueError("pad_sequences: no sequences")
    if any(a.ndim == 0 for a in arrays):
        raise ValueError("pad_sequences: each sequence needs a first (time) axis")
    feature = arrays[0].shape[1:]
    for i, a in enumerate(arrays):
        if a.shape[1:] != feature:
            raise ValueError(f"pad_sequences: sequence {i} has steps of shape {a.shape[1:]}, sequence 0 {feature}")
    lengths = np.array([len(a) for a in arrays], dtype=np.int64)
    length = int(lengths.max()) if length is None else int(length)
    if lengths.max() > length:
        i = int(np.argmax(lengths))
        raise ValueError(f"pad_sequences: sequence {i} has {lengths[i]} steps, more than length={length}")
    if dtype is None:  # an empty sequence ([] is float64 to numpy) does not decide the dtype
        dtype = np.result_type(*([a for a in arrays if a.size] or arrays))
    padded = np.full((len(arrays), length, *feature), value, dtype=dtype)
    for i, a in enumerate(arrays):
        padded[i, :len(a)] = a
    return padded, lengths


# ============================================================================ splits


def group_split(groups, fractions: Sequence[float], seed: int, strata=None) -> tuple[np.ndarray, ...]:
    """Split samples into subsets by whole groups, fixed by seed.

    Every sample of a group (a shear field, a star and its augmented twins, an
    objectId) lands in the same subset. Groups are shuffled with a generator
    seeded by ``seed`` and dealt out in proportion to ``fractions`` (largest
    remainders); every subset with a positive fraction gets at least one group.
    With ``strata`` (a class per sample), the groups of each stratum are dealt
    out separately, so every subset gets its share of every class -- a rare
    class too.

    Parameters
    ----------
    groups : array-like
        Group label of each sample (integers or strings).
    fractions : sequence of float
        Share of the groups in each subset (e.g. ``(0.8, 0.1, 0.1)``); they
        are normalised; a zero gives an empty subset.
    seed : int
    strata : array-like, optional
        Stratum (e.g. class) of each sample; the samples of one group must
        share it.

    Returns
    -------
    tuple of numpy.ndarray
        Sorted sample indices of each subset.

    Raises
    ------
    astrotool.errors.AstroError
        Fewer groups (in a stratum) than subsets with a positive fraction.
    ValueError
        Bad fractions; a group whose samples lie in several strata.
    """
    groups = np.asarray(groups)
    frac = np.asarray(fractions, dtype=float)
    if frac.ndim != 1 or frac.size == 0 or (frac < 0).any() or frac.sum() <= 0:
        raise ValueError(f"fractions must be non-negative with a positive sum, got {list(fractions)}")
    uniq, inverse = np.unique(groups, return_inverse=True)
    inverse = inverse.ravel()
    if strata is None:
        subset_of_group = _deal(len(uniq), frac, fractions, entropy(seed, _SPLIT_STREAM), "")
    else:
        strata = np.asarray(strata).ravel()
        if strata.shape != inverse.shape:
            raise ValueError(f"strata: {strata.size} labels for {inverse.size} samples")
        s_uniq, s_of_sample = np.unique(strata, return_inverse=True)
        s_of_group = np.full(len(uniq), -1, dtype=np.int64)
        s_of_group[inverse] = s_of_sample.ravel()
        split = np.flatnonzero(s_of_group[inverse] != s_of_sample.ravel())
        if split.size:
            g = uniq[inverse[split[0]]].item()
            raise ValueError(f"strata: the samples of group {g!r} lie in several strata "
                             f"({', '.join(map(str, np.unique(strata[inverse == inverse[split[0]]])))})")
        subset_of_group = np.empty(len(uniq), dtype=np.int64)
        for k, label in enumerate(s_uniq):
            members = np.flatnonzero(s_of_group == k)
            subset_of_group[members] = _deal(len(members), frac, fractions, entropy(seed, _SPLIT_STREAM, k + 1),
                                             f" of stratum {label.item()!r}")
    subset = subset_of_group[inverse]
    return tuple(np.flatnonzero(subset == k) for k in range(len(frac)))


def _deal(n: int, frac: np.ndarray, fractions, entropy_value, where: str) -> np.ndarray:
    """The subset of each of ``n`` groups: shuffled, then dealt out by largest remainders."""
    want = int((frac > 0).sum())
    if n < want:
        raise AstroError(f"split: {n} group(s){where} cannot fill {want} non-empty subsets (fractions "
                         f"{', '.join(f'{f:g}' for f in fractions)}); use more data or fewer subsets")
    share = frac / frac.sum() * n
    counts = np.floor(share).astype(int)
    for k in np.argsort(-(share - counts), kind="stable")[: n - counts.sum()]:
        counts[k] += 1
    for k in np.flatnonzero((frac > 0) & (counts == 0)):
        counts[int(np.argmax(counts))] -= 1
        counts[k] += 1
    perm = np.random.default_rng(entropy_value).permutation(n)
    subset_of_group = np.empty(n, dtype=np.int64)
    subset_of_group[perm] = np.repeat(np.arange(len(frac)), counts)
    return subset_of_group


# ============================================================================ torch


class EpochBatchSampler:
    """Batches of sample indices whose order is fixed by ``(seed, epoch)``.

    The batches are computed in the main process, so a :func:`torch_loader`
    yields the same batches whatever its number of workers.

    A full shuffle makes every batch touch samples all over the set, and a
    compressed HDF5 chunk is decompressed whole for each sample read from it.
    With ``block > 1`` the shuffle is local instead: runs of ``block``
    consecutive samples (e.g. the chunk's rows) are shuffled as units, then
    samples are shuffled within each window of ``window`` runs, so a batch
    reads from about ``window`` chunks.

    Parameters
    ----------
    indices : array-like of int
        The samples to draw from (e.g. a training split).
    batch_size : int
    seed : int
    shuffle : bool
        Shuffle per epoch (otherwise the given order).
    drop_last : bool
        Drop a final partial batch.
    block, window : int
        Local shuffle (see above); ``block = 1`` shuffles fully.
    """

    def __init__(self, indices, batch_size: int, seed: int = 0, shuffle: bool = True, drop_last: bool = False,
                 block: int = 1, window: int = 8):
        self.indices = np.asarray(indices, dtype=np.int64)
        self.batch_size, self.seed, self.shuffle, self.drop_last = int(batch_size), int(seed), shuffle, drop_last
        self.block, self.window = max(1, int(block)), max(1, int(window))
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose order the next iteration yields."""
        self.epoch = int(epoch)

    def order(self, epoch: int | None = None) -> np.ndarray:
        """Sample order of ``epoch`` (default: the current one)."""
        e = self.epoch if epoch is None else int(epoch)
        if not self.shuffle:
            return self.indices
        rng = np.random.default_rng(entropy(self.seed, e, _EPOCH_STREAM))
        n, b = len(self.indices), self.block
        if b == 1:
            return self.indices[rng.permutation(n)]
        runs = [self.indices[k:k + b] for k in range(0, n, b)]
        order = np.concatenate([runs[k] for k in rng.permutation(len(runs))]) if runs else self.indices
        span = b * self.window
        return np.concatenate([rng.permutation(order[k:k + span]) for k in range(0, n, span)]) if n else order

    def __len__(self) -> int:
        n, b = len(self.indices), self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def __iter__(self) -> Iterator[list[int]]:
        order = self.order()
        for k in range(len(self)):
            yield order[k * self.batch_size:(k + 1) * self.batch_size].tolist()


class _Batches:
    """Map-style dataset for torch: item = a list of sample indices, value = a batch dict."""

    def __init__(self, ds: ArrayDataset, names, transform):
        self.ds, self.names, self.transform = ds, names, transform

    def __len__(self) -> int:
        return self.ds.n

    def __getitem__(self, indices):
        idx = np.asarray(indices, dtype=np.int64)
        batch = {**self.ds.read(idx, self.names), "index": idx}
        return self.transform(batch) if self.transform is not None else batch


def torch_loader(ds: ArrayDataset, batch_size: int, names: Sequence[str] | None = None, indices=None,
                 seed: int = 0, epoch: int = 0, shuffle: bool = True, drop_last: bool = False,
                 num_workers: int = 0, transform: Callable[[dict], Any] | None = None, block: int = 1,
                 window: int = 8, **loader_kwargs):
    """A ``torch.utils.data.DataLoader`` over a dataset, deterministic with workers.

    Each item is a whole batch (a dict of tensors plus ``"index"``) read by
    :meth:`ArrayDataset.read`; the batches come from an
    :class:`EpochBatchSampler` (``loader.sampler``; call its ``set_epoch``
    before each epoch), so the same ``seed`` and epoch give the same batches for
    any ``num_workers``. Workers open the shard files lazily in their own process.

    Parameters
    ----------
    ds : ArrayDataset
    batch_size : int
    names : sequence of str, optional
        Arrays to read (default: all).
    indices : array-like of int, optional
        Samples to draw from (default: all).
    seed, epoch : int
        Fix the order.
    shuffle, drop_last : bool
    num_workers : int
        DataLoader worker processes.
    transform : callable, optional
        Applied to each batch dict (numpy arrays) in the worker; must be picklable.
    block, window : int
        Local shuffle for large compressed sets (:class:`EpochBatchSampler`).
    **loader_kwargs
        Passed to DataLoader (e.g. ``pin_memory``, ``persistent_workers``).
    """
    from torch.utils.data import DataLoader

    sampler = EpochBatchSampler(np.arange(ds.n) if indices is None else indices, batch_size, seed, shuffle,
                                drop_last, block, window)
    sampler.set_epoch(epoch)
    return DataLoader(_Batches(ds, ds._names(names), transform), batch_size=None, sampler=sampler,
                      num_workers=num_workers, **loader_kwargs)


# ============================================================================ lookup


def resolve_dataset(stage_dir: str | os.PathLike, name_or_path: str, cls: type[ArrayDataset] = ArrayDataset,
                    hint: str = "write one first"):
    """Open a dataset by folder path or by name under a stage folder.

    Parameters
    ----------
    stage_dir : path-like
        The stage folder holding one folder per dataset (e.g. ``lens/shear``).
    name_or_path : str
        A dataset name under ``stage_dir`` or a dataset folder.
    cls : type
        The reader class (a subclass of :class:`ArrayDataset`).
    hint : str
        What to do when the stage is empty (e.g. "run `astro lens generate` first").

    Raises
    ------
    astrotool.errors.InputError
        No such dataset; the message lists the available names.
    """
    p = Path(name_or_path).expanduser()
    if p.is_dir() and any(p.glob(f"*{MANIFEST_SUFFIX}")):
        return cls(p)
    stage_dir = Path(stage_dir)
    candidate = stage_dir / name_or_path
    if candidate.is_dir():
        return cls(candidate)
    looks_like_path = p.is_absolute() or "/" in name_or_path or os.sep in name_or_path or \
        name_or_path.startswith((".", "~"))
    if looks_like_path and p.is_dir():  # a folder given as a path that holds no finished dataset: named as given
        raise InputError(p, f"not a finished dataset (no *{MANIFEST_SUFFIX}): {hint}")
    folders = sorted(d for d in stage_dir.iterdir() if d.is_dir() and not d.name.startswith(".")) \
        if stage_dir.is_dir() else []   # a hidden folder (a cache) is no dataset
    have = [d.name for d in folders if any(d.glob(f"*{MANIFEST_SUFFIX}"))]
    unfinished = [d.name for d in folders if d.name not in have]
    told = [f"available: {', '.join(have)}" if have else hint]
    if unfinished:   # a pack that failed or is still running is named apart: it cannot be opened
        told.append(f"unfinished (no manifest): {', '.join(unfinished)}")
    raise InputError(candidate, f"no dataset named {name_or_path!r} ({'; '.join(told)})")
