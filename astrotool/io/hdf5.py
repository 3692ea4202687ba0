"""HDF5 helpers (h5py): compression levels, checked opening and provenance attributes."""

from __future__ import annotations

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


def open_h5(path: str | Path, mode: str = "r"):
    """Open an HDF5 file for reading; a missing, truncated or non-HDF5 file raises
    :class:`InputError` naming it."""
    import h5py

    path = Path(path)
    if not path.exists():
        raise InputError(path, "file not found")
    try:
        return h5py.File(path, mode, locking=False)
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
