"""HDF5 helpers (h5py): compression levels, checked opening and provenance attributes."""

from __future__ import annotations

import functools
from pathlib import Path

from astrotool.errors import InputError

__docformat__ = "numpy"

COMPRESSION = {
    "none": {},
    "low": {"compression": "lzf"},
    "medium": {"compression": "gzip", "compression_opts": 4},
    "high": {"compression": "gzip", "compression_opts": 9},
}
"""Compression level name -> ``h5py.Group.create_dataset`` keyword arguments."""


def compression_kwargs(level: str) -> dict:
    """Keyword arguments for ``create_dataset`` at compression ``level``.

    Parameters
    ----------
    level : {"none", "low", "medium", "high"}
        none, lzf, gzip 4, gzip 9.
    """
    try:
        return dict(COMPRESSION[level])
    except KeyError:
        raise ValueError(f"compression: expected one of {', '.join(COMPRESSION)}, got {level!r}") from None


_DAMAGE = ("bad ", "signature", "checksum", "inflate", "decompress", "can't read data", "filter returned failure",
           "truncated", "addr overflow", "b-tree", "heap", "corrupt")
"""Words of HDF5's reports of content it cannot read (not of an attribute or object that is not there)."""


def _damaged(exc: BaseException, tb) -> bool:
    """Whether ``exc`` (raised through traceback ``tb``) is HDF5's report of content it cannot read (a bad
    object header or heap, a chunk that does not decompress): raised inside h5py and saying so, not about an
    attribute or object that is not there, nor by the code reading the file."""
    text = str(exc).lower()
    if not isinstance(exc, (OSError, KeyError, RuntimeError)) or not any(word in text for word in _DAMAGE):
        return False
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and "h5py" in Path(tb.tb_frame.f_code.co_filename).parts


@functools.cache
def _checked_file():
    import h5py

    class CheckedFile(h5py.File):
        """An ``h5py.File`` whose damaged content, met inside its ``with`` block, raises :class:`InputError`
        naming the file (h5py's own ``KeyError``/``OSError`` name neither file nor object)."""

        def __exit__(self, typ, exc, tb):
            path = self.filename
            super().__exit__(typ, exc, tb)
            if exc is not None and _damaged(exc, tb):
                raise InputError(path, f"unreadable HDF5 content (corrupt?): {exc}") from None
            return False

    return CheckedFile


def open_h5(path: str | Path, mode: str = "r"):
    """Open an HDF5 file for reading; a missing, truncated or non-HDF5 file, or content that cannot be read
    inside the ``with`` block (a damaged object header or chunk), raises :class:`InputError` naming it."""
    import h5py

    path = Path(path)
    if not path.exists():
        raise InputError(path, "file not found")
    try:
        return (_checked_file() if mode == "r" else h5py.File)(path, mode, locking=False)
    except OSError as exc:
        raise InputError(path, f"not a readable HDF5 file (truncated or corrupt?): {exc}") from None


def provenance_attrs(command: str = "", **kwargs) -> dict:
    """File attributes recording what wrote a file (see :mod:`astrotool.provenance`).

    Parameters
    ----------
    command : str
        The command writing it, e.g. ``"dre fit"``.
    **kwargs
        ``seed``, ``config``, ``packages`` of :func:`astrotool.provenance.provenance`.

    Returns
    -------
    dict
        ``astrotool_version``, ``astrotool_command``, ``astrotool_command_line``,
        ``created_utc``, ``astrotool_versions`` (JSON) and, when given,
        ``astrotool_seed``, ``astrotool_config`` (JSON): ready for
        ``h5py.File.attrs.update``.
    """
    from astrotool.provenance import hdf5_attrs, provenance

    return hdf5_attrs(provenance(command, **kwargs))
