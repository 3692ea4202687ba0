"""HDF5 helpers (h5py): compression levels and checked opening."""

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


def provenance_attrs(command: str = "") -> dict:
    """Attributes recording what wrote a file: software versions and the command."""
    from datetime import datetime, timezone

    from astrotool import __version__

    return {"astrotool_version": __version__, "astrotool_command": command,
            "created_utc": datetime.now(timezone.utc).isoformat()}
