"""Tables as Parquet (pyarrow) and as FITS binary tables (astropy), written atomically."""

from __future__ import annotations

import json
from pathlib import Path

from astrotool.errors import InputError
from astrotool.workspace import atomic_path

__docformat__ = "numpy"


def write_parquet(table, path: str | Path, metadata: dict | None = None, command: str = "") -> Path:
    """Write a table to Parquet atomically, with its provenance and ``metadata``.

    Parameters
    ----------
    table : pyarrow.Table, pandas.DataFrame, astropy.table.Table or dict of columns
        The table.
    path : path-like
        Output ``.parquet`` file.
    metadata : dict, optional
        The writer's own facts, stored as JSON under the ``astrotool`` key
        (read back by :func:`parquet_metadata`).
    command : str
        The command writing it (default: ``metadata["command"]`` if any), for the
        provenance record stored under ``astrotool.provenance``
        (:func:`astrotool.provenance.provenance`, read back by
        :func:`parquet_provenance`).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from astrotool.provenance import parquet_metadata as provenance_metadata
    from astrotool.provenance import provenance

    if not isinstance(table, pa.Table):
        if hasattr(table, "to_pandas") and not hasattr(table, "to_parquet"):  # astropy Table
            table = table.to_pandas()
        table = pa.Table.from_pandas(table, preserve_index=False) if hasattr(table, "to_parquet") \
            else pa.table(table)
    meta = dict(table.schema.metadata or {})
    if metadata:
        meta[b"astrotool"] = json.dumps(metadata, default=str).encode()
    command = command or str((metadata or {}).get("command", ""))
    meta.update(provenance_metadata(provenance(command)))
    table = table.replace_schema_metadata(meta)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return Path(path)


def read_parquet(path: str | Path, columns: list[str] | None = None):
    """Read a Parquet file as a ``pyarrow.Table``; problems raise :class:`InputError` naming it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.exists():
        raise InputError(path, "file not found")
    try:
        if columns is not None:
            missing = [c for c in columns if c not in pq.read_schema(path).names]
            if missing:
                raise InputError(path, f"missing column(s) {', '.join(missing)}")
        table = pq.read_table(path, columns=columns)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(path, f"not a readable Parquet file: {exc}") from None
    except KeyError as exc:
        raise InputError(path, f"missing column {exc}") from None
    return table


def parquet_metadata(path: str | Path) -> dict:
    """The ``astrotool`` provenance metadata of a Parquet file (``{}`` if none).

    Raises
    ------
    astrotool.errors.InputError
        The file is missing or is not readable Parquet (e.g. truncated).
    """
    raw = _schema_metadata(path).get(b"astrotool")
    try:
        return json.loads(raw) if raw else {}
    except ValueError:
        return {}


def parquet_provenance(path: str | Path) -> dict:
    """The provenance record of a Parquet file written by :func:`write_parquet` (``{}`` if none).

    Raises
    ------
    astrotool.errors.InputError
        The file is missing or is not readable Parquet.
    """
    from astrotool.provenance import PARQUET_KEY

    raw = _schema_metadata(path).get(PARQUET_KEY)
    try:
        return json.loads(raw) if raw else {}
    except ValueError:
        return {}


def _schema_metadata(path: str | Path) -> dict:
    """The key-value metadata of a Parquet file; problems raise :class:`InputError` naming it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_schema(path).metadata or {}
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(path, f"not a readable Parquet file ({exc}); delete it or use --overwrite") from None


def write_fits_table(table, path: str | Path, history: list[str] | None = None, extname: str = "CATALOG",
                     command: str = "") -> Path:
    """Write a table as a FITS binary table atomically, with provenance ``HISTORY`` cards.

    Parameters
    ----------
    table : astropy.table.Table, pyarrow.Table or pandas.DataFrame
        The table.
    path : path-like
        Output ``.fits`` file.
    history : list of str, optional
        The writer's own ``HISTORY`` lines, after the provenance cards
        (:func:`astrotool.provenance.fits_history`).
    extname : str
        Name of the table HDU.
    command : str
        The command writing it, e.g. ``"dre fit"``.
    """
    from astropy.io import fits
    from astropy.table import Table

    from astrotool.provenance import fits_history

    if not isinstance(table, Table):
        table = Table.from_pandas(table.to_pandas() if hasattr(table, "to_batches") else table)
    hdu = fits.table_to_hdu(table)
    hdu.name = extname
    for line in fits_history(command=command) + list(history or []):
        hdu.header.add_history(line)
    with atomic_path(path) as tmp:
        fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(tmp)
    return Path(path)
