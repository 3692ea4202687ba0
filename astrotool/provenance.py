"""What wrote a file: one provenance record, in every format the project writes.

:func:`provenance` gathers the facts once: the software versions (Python,
astrotool, every installed plugin distribution, the scientific libraries already
imported, and any distribution asked for), the command, the command line of the
running ``astro`` process, the UTC time, and optionally the seed and the
configuration. The writers turn it into what each format holds:

========================  ==========================================================
HDF5 attributes           :func:`hdf5_attrs` (:func:`astrotool.io.hdf5.provenance_attrs`)
Parquet key-value         :func:`parquet_metadata`, written by
metadata                  :func:`astrotool.io.tables.write_parquet` under the key
                          ``provenance`` (and in the astropy table ``meta``)
FITS keywords and         :func:`fits_keywords` (``DATE``, ``CREATOR``, ``ASTROVER``)
``HISTORY`` cards         and :func:`fits_history`, both written by :func:`stamp_fits`
checkpoints, run records  :func:`package_versions`, :func:`versions`
========================  ==========================================================

The record is stored under one key name, ``provenance``, wherever a format has
named entries (Parquet metadata, the astropy table ``meta``, HDF5 attribute,
JSON manifests); files written before under ``astrotool.provenance`` are still
read (:data:`OLD_PARQUET_KEYS`).

Nothing here imports a heavy library.
"""

from __future__ import annotations

import contextvars
import functools
import json
import platform
import shlex
import sys
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping

__docformat__ = "numpy"

__all__ = ["provenance", "versions", "package_versions", "hdf5_attrs", "parquet_metadata", "fits_history", "stamp_fits",
           "fits_keywords", "PARQUET_KEY", "OLD_PARQUET_KEYS"]

LIBRARIES = ("numpy", "scipy", "torch", "galsim", "astropy", "photutils", "h5py", "pyarrow", "dask", "cupy")
"""Libraries whose version is recorded when the process has imported them."""

PARQUET_KEY = b"provenance"
"""Parquet key-value metadata key of the provenance record (JSON)."""

OLD_PARQUET_KEYS = (b"astrotool.provenance",)
"""Keys under which earlier versions stored the record; still read."""

FITS_CARD_TEXT = 72
"""Characters of text a FITS ``HISTORY`` card holds."""


@functools.lru_cache(maxsize=None)
def _installed_plugins() -> tuple[tuple[str, str], ...]:
    """``(distribution, version)`` of every plugin entry point on ``sys.path`` (read once)."""
    from astrotool.plugins import ENTRY_POINT_GROUP, find_entry_points

    return tuple(sorted({(ep.distribution, ep.version) for ep in find_entry_points(ENTRY_POINT_GROUP)}))


def package_versions(packages: Iterable[str] = ()) -> dict[str, str]:
    """Python and the installed versions of the named distributions.

    Parameters
    ----------
    packages : iterable of str
        Distribution names (``"astrotool-lens"``, ``"torch"``); missing ones
        are reported as ``"not installed"``.

    Returns
    -------
    dict
        ``{"python": ..., name: version, ...}``.
    """
    from importlib import metadata

    out = {"python": platform.python_version()}
    for name in packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def versions(packages: Iterable[str] = ()) -> dict[str, str]:
    """Versions of Python, astrotool, every installed plugin, the :data:`LIBRARIES`
    already imported, and the named distributions.

    Parameters
    ----------
    packages : iterable of str
        Further distribution names (see :func:`package_versions`).

    Returns
    -------
    dict
        ``{name: version}``; plugins under their distribution name
        (``"astrotool-dre"``).
    """
    from astrotool import __version__

    out = {"python": platform.python_version(), "astrotool": __version__}
    out.update(dict(_installed_plugins()))
    for mod in LIBRARIES:
        m = sys.modules.get(mod)
        if m is not None:
            out[mod] = str(getattr(m, "__version__", "?"))
    packages = [p for p in packages if p not in out]
    if packages:
        out.update({k: v for k, v in package_versions(packages).items() if k != "python"})
    return out


WORKER_COMMAND_LINE: contextvars.ContextVar[str] = contextvars.ContextVar("astro_command_line", default="")
"""In a worker (which has no command context): the command line of the ``astro`` command whose item it runs,
set for that item only (:class:`astrotool.executors.InCommand`; a Dask worker's threads may run items of
several commands)."""


def command_line() -> str:
    """The command line of the running ``astro`` command (in a worker: :data:`WORKER_COMMAND_LINE`; empty outside
    one); bytes of an argument that are not UTF-8 as ``\\xNN``."""
    from astrotool import context
    from astrotool.names import printable

    ctx = context._CURRENT
    return printable(shlex.join(ctx.argv)) if ctx is not None and ctx.argv else WORKER_COMMAND_LINE.get()


def provenance(command: str = "", *, seed: int | None = None, config: Mapping | None = None,
               packages: Iterable[str] = (), created_utc: str | None = None) -> dict[str, Any]:
    """The provenance record of a file about to be written.

    Parameters
    ----------
    command : str
        The command that writes it, e.g. ``"dre fit"``.
    seed : int, optional
        The seed its random content derives from.
    config : mapping, optional
        The configuration it was made with (JSON-serialisable).
    packages : iterable of str
        Distributions to record besides the defaults of :func:`versions`.
    created_utc : str, optional
        ISO 8601 time; default now.

    Returns
    -------
    dict
        ``software`` (``"astrotool 0.1.0"``), ``command``, ``command_line``
        (the ``astro`` process's, if any), ``created_utc``, ``versions``, and
        ``seed`` / ``config`` when given.
    """
    from astrotool import __version__

    record: dict[str, Any] = {
        "software": f"astrotool {__version__}",
        "command": command,
        "command_line": command_line(),
        "created_utc": created_utc or datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": versions(packages),
    }
    if seed is not None:
        record["seed"] = int(seed)
    if config is not None:
        record["config"] = dict(config)
    return record


def hdf5_attrs(record: Mapping[str, Any]) -> dict[str, Any]:
    """HDF5 file attributes for a :func:`provenance` record (scalars and JSON text).

    Returns
    -------
    dict
        ``astrotool_version``, ``astrotool_command``, ``astrotool_command_line``,
        ``created_utc``, ``astrotool_versions`` (JSON), and ``astrotool_seed`` /
        ``astrotool_config`` (JSON) when the record has them; ``provenance``: the
        whole record as JSON.
    """
    attrs = {
        "provenance": json.dumps(record, default=str, sort_keys=True),
        "astrotool_version": record["versions"]["astrotool"],
        "astrotool_command": record["command"],
        "astrotool_command_line": record["command_line"],
        "created_utc": record["created_utc"],
        "astrotool_versions": json.dumps(record["versions"], sort_keys=True),
    }
    if "seed" in record:
        attrs["astrotool_seed"] = int(record["seed"])
    if "config" in record:
        attrs["astrotool_config"] = json.dumps(record["config"], default=str, sort_keys=True)
    return attrs


def parquet_metadata(record: Mapping[str, Any]) -> dict[bytes, bytes]:
    """Parquet key-value metadata holding a :func:`provenance` record as JSON under :data:`PARQUET_KEY`."""
    return {PARQUET_KEY: json.dumps(record, default=str, sort_keys=True).encode()}


def fits_keywords(record: Mapping[str, Any]) -> dict[str, tuple]:
    """FITS header keywords of a :func:`provenance` record.

    Returns
    -------
    dict
        ``DATE`` (UTC time the file was written, ``YYYY-MM-DDThh:mm:ss``),
        ``CREATOR`` (``"astrotool 0.1.0 dre fit"``) and ``ASTROVER`` (the
        astrotool version), each ``(value, comment)``.
    """
    created = datetime.fromisoformat(record["created_utc"]).astimezone(timezone.utc)
    creator = _wrap(f"{record['software']} {record['command']}".strip(), 68)[0]
    # a card is 80 characters: 'CREATOR = ', the quoted value (20 at least), ' / ', the comment
    room = 80 - 10 - max(len(creator) + 2, 20) - 3
    comment = next((c for c in ("software and command that wrote the file", "program that wrote the file")
                    if len(c) <= room), "")
    return {"DATE": (created.strftime("%Y-%m-%dT%H:%M:%S"), "UTC time the file was written"),
            "CREATOR": (creator, comment),
            "ASTROVER": (record["versions"]["astrotool"], "astrotool version")}


def fits_history(record: Mapping[str, Any] | None = None, **kwargs) -> list[str]:
    """FITS ``HISTORY`` lines (at most 72 characters each) for a provenance record.

    Parameters
    ----------
    record : mapping, optional
        A :func:`provenance` record; by default one is made from ``kwargs``
        (``command``, ``seed``, ``config``, ``packages``).

    Returns
    -------
    list of str
        ``"astrotool 0.1.0 dre fit"``, the UTC time, the command line, one
        ``name=version`` line per package, the seed and the configuration, long
        values continued on the following cards.
    """
    record = record if record is not None else provenance(**kwargs)
    lines = [f"{record['software']} {record['command']}".strip(), f"created {record['created_utc']}"]
    if record.get("command_line"):
        lines.append(f"command: {record['command_line']}")
    lines += [f"version {name}={v}" for name, v in record["versions"].items()]
    if "seed" in record:
        lines.append(f"seed {record['seed']}")
    if "config" in record:
        lines.append("config " + json.dumps(record["config"], default=str, sort_keys=True))
    return [chunk for line in lines for chunk in _wrap(line)]


def stamp_fits(header, record: Mapping[str, Any] | None = None, history: Iterable[str] = (), **kwargs) -> None:
    """Write a provenance record into a FITS header: the keywords of :func:`fits_keywords` (``DATE``,
    ``CREATOR``, ``ASTROVER``), then :func:`fits_history`'s ``HISTORY`` cards and ``history``'s (each line made
    ASCII and cut to the card's width as those are).

    Parameters
    ----------
    header : astropy.io.fits.Header
        The header, changed in place.
    record : mapping, optional
        A :func:`provenance` record; by default one is made from ``kwargs`` (``command``, ``seed``,
        ``config``, ``packages``).
    history : iterable of str
        Further ``HISTORY`` lines (what the file holds, from what input).
    """
    record = record if record is not None else provenance(**kwargs)
    for key, value in fits_keywords(record).items():
        header[key] = value
    for line in fits_history(record) + [chunk for text in history for chunk in _wrap(text)]:
        header.add_history(line)


def _wrap(line: str, width: int = FITS_CARD_TEXT) -> list[str]:
    """Cut ``line`` into ASCII pieces of ``width`` characters (FITS headers are printable ASCII;
    other characters, tabs and newlines too, are escaped); continuations start with ``"  "``."""
    from astrotool.names import printable

    line = printable(line, ascii_only=True)
    pieces = [line[:width]]
    rest = line[width:]
    while rest:
        pieces.append("  " + rest[:width - 2])
        rest = rest[width - 2:]
    return pieces
