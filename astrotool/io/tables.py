"""Tables as Parquet (pyarrow) and as FITS binary tables (astropy), written atomically.

Both writers take each column's unit (an astropy unit string: ``"mag"``, ``"d"``,
``"deg"``, ``"pix"``) and description, so the files open with their units in
``astropy.table.Table.read`` and TOPCAT:

- Parquet: the units and descriptions, the provenance record (table ``meta`` key
  ``provenance``) and the writer's facts (``astrotool``) go in the
  ``table_meta_yaml`` key-value metadata that astropy's Parquet reader reads
  (:func:`astropy_parquet_metadata`), beside the same records as JSON under the
  keys ``provenance`` and ``astrotool``;
- FITS: ``TUNITn`` and ``TCOMMn`` cards, the writer's keywords (``MAGZP``,
  ``GAIN``...) and the provenance keywords ``DATE``, ``CREATOR`` and ``ASTROVER``
  (:func:`astrotool.provenance.fits_keywords`) beside the ``HISTORY`` cards.
"""

from __future__ import annotations

import json
from pathlib import Path

from astrotool.errors import InputError
from astrotool.workspace import atomic_path

__docformat__ = "numpy"


def write_parquet(table, path: str | Path, metadata: dict | None = None, command: str = "",
                  units: dict | None = None, descriptions: dict | None = None, compression: str = "snappy",
                  seed: int | None = None, config: dict | None = None) -> Path:
    """Write a table to Parquet atomically, with its provenance, ``metadata``, units and descriptions.

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
        provenance record stored under ``provenance``
        (:func:`astrotool.provenance.provenance`, read back by
        :func:`parquet_provenance`).
    units, descriptions : dict, optional
        Column name -> astropy unit string / one-line description (an astropy
        Table's own column units and descriptions are used too).
    compression : str
        Parquet codec (``"snappy"``, ``"zstd"``...).
    seed, config : optional
        The seed the content derives from and the settings it was made with, for the provenance record
        (:func:`astrotool.provenance.provenance`).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from astrotool.provenance import parquet_metadata as provenance_metadata
    from astrotool.provenance import provenance

    units, descriptions = dict(units or {}), dict(descriptions or {})
    if not isinstance(table, pa.Table):
        if hasattr(table, "to_pandas") and not hasattr(table, "to_parquet"):  # astropy Table
            units = {**{c.name: str(c.unit) for c in table.columns.values() if c.unit is not None}, **units}
            descriptions = {**{c.name: c.description for c in table.columns.values() if c.description},
                            **descriptions}
            table = table.to_pandas()
        table = pa.Table.from_pandas(table, preserve_index=False) if hasattr(table, "to_parquet") \
            else pa.table(table)
    meta = dict(table.schema.metadata or {})
    if metadata:
        meta[b"astrotool"] = json.dumps(metadata, default=str).encode()
    command = command or str((metadata or {}).get("command", ""))
    record = provenance(command, seed=seed, config=config)
    meta.update(provenance_metadata(record))
    table_meta = {"provenance": record, **({"astrotool": metadata} if metadata else {})}
    meta.update(astropy_parquet_metadata(table.schema, units, descriptions, table_meta, string_lengths(table)))
    table = table.replace_schema_metadata(meta)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression=compression)
    return Path(path)


def astropy_parquet_metadata(schema, units: dict | None = None, descriptions: dict | None = None,
                             meta: dict | None = None, lengths: dict | None = None) -> dict[bytes, bytes]:
    """Parquet key-value metadata from which ``astropy.table.Table.read`` restores units and descriptions.

    Parameters
    ----------
    schema : pyarrow.Schema
        The columns, in order (nested columns cannot be read by astropy).
    units, descriptions : dict, optional
        Column name -> astropy unit string (checked with ``parse_strict="raise"``) /
        description; by default a field's own ``unit`` / ``description`` metadata.
    meta : dict, optional
        The table's ``meta`` (e.g. ``{"provenance": record}``); JSON-serialisable.
    lengths : dict, optional
        String column -> longest value in characters (see :func:`string_lengths`);
        astropy reads string columns with this width.

    Returns
    -------
    dict
        ``table_meta_yaml`` and ``table::len::<name>`` entries, as astropy's own
        Parquet writer makes them.
    """
    import numpy as np
    from astropy import units as u
    from astropy.table import Table
    from astropy.table import meta as table_meta

    t = Table(meta=json.loads(json.dumps(meta or {}, default=str)))
    units, descriptions = {**_field_metadata(schema, b"unit"), **(units or {})}, \
        {**_field_metadata(schema, b"description"), **(descriptions or {})}
    for field in schema:
        try:
            dtype = np.dtype(field.type.to_pandas_dtype())
        except (NotImplementedError, TypeError):
            dtype = np.dtype(object)
        t[field.name] = np.zeros(0, dtype="U1" if dtype == object and field.type in _string_types() else dtype)
        if units.get(field.name):
            try:
                t[field.name].unit = u.Unit(units[field.name], parse_strict="raise")
            except ValueError as exc:
                raise ValueError(f"column {field.name}: unit {units[field.name]!r} is not an astropy unit "
                                 f"({exc})") from None
        if descriptions.get(field.name):
            t[field.name].description = descriptions[field.name]
    out = {b"table_meta_yaml": "\n".join(table_meta.get_yaml_from_table(t)).encode()}
    out.update({f"table::len::{name}".encode(): str(max(int(n), 1)).encode() for name, n in (lengths or {}).items()})
    return out


def _field_metadata(schema, key: bytes) -> dict[str, str]:
    """``{column: value}`` of one key of the fields' own metadata (e.g. ``b"unit"``)."""
    return {f.name: f.metadata[key].decode() for f in schema if f.metadata and f.metadata.get(key)}


def add_parquet_metadata(path: str | Path, metadata: dict[bytes, bytes], compression: str = "zstd") -> Path:
    """Rewrite a Parquet file batch by batch with ``metadata`` added to its schema's key-value metadata.

    For what is known only once a streamed table is written, such as the widths of
    its string columns (:func:`astropy_parquet_metadata`); the file is replaced
    atomically.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    with pq.ParquetFile(path) as src:
        schema = src.schema_arrow
        schema = schema.with_metadata({**(schema.metadata or {}), **metadata})
        with atomic_path(path) as tmp, pq.ParquetWriter(tmp, schema, compression=compression) as writer:
            for batch in src.iter_batches():
                writer.write_table(pa.Table.from_batches([batch]).cast(schema))
    return Path(path)


def _string_types():
    """The pyarrow string and binary types (astropy reads them as fixed-width strings)."""
    import pyarrow as pa

    return (pa.string(), pa.large_string(), pa.binary(), pa.large_binary())


def string_lengths(table, lengths: dict | None = None) -> dict[str, int]:
    """Longest value [characters] of each string column of a ``pyarrow.Table``, merged with ``lengths``."""
    import pyarrow.compute as pc

    out = dict(lengths or {})
    for field in table.schema:
        if field.type in _string_types():
            col = table.column(field.name)
            n = pc.max(pc.binary_length(col) if "binary" in str(field.type) else pc.utf8_length(col)).as_py()
            out[field.name] = max(out.get(field.name, 1), int(n or 1))
    return out


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
    from astrotool.provenance import OLD_PARQUET_KEYS, PARQUET_KEY

    meta = _schema_metadata(path)
    raw = next((meta[k] for k in (PARQUET_KEY, *OLD_PARQUET_KEYS) if k in meta), None)
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
                     command: str = "", units: dict | None = None, descriptions: dict | None = None,
                     keywords: dict | None = None) -> Path:
    """Write a table as a FITS binary table atomically, with units, descriptions and provenance.

    Parameters
    ----------
    table : astropy.table.Table, pyarrow.Table or pandas.DataFrame
        The table.
    path : path-like
        Output ``.fits`` file.
    history : list of str, optional
        The writer's own ``HISTORY`` lines, after the provenance cards
        (:func:`astrotool.provenance.stamp_fits`).
    extname : str
        Name of the table HDU.
    command : str
        The command writing it, e.g. ``"dre fit"``.
    units, descriptions : dict, optional
        Column name -> astropy unit string (``TUNITn``) / description (``TCOMMn``);
        an astropy Table's own column units and descriptions are used too.
    keywords : dict, optional
        Header keywords of the table HDU: name -> value or ``(value, comment)``
        (e.g. ``{"MAGZP": (30.0, "[mag] zero point")}``), beside ``DATE``,
        ``CREATOR`` and ``ASTROVER`` (:func:`astrotool.provenance.fits_keywords`);
        names of at most 8 characters (no ``HIERARCH`` cards).
    """
    from astropy import units as u
    from astropy.io import fits
    from astropy.table import Table

    from astrotool.provenance import provenance, stamp_fits

    if not isinstance(table, Table):
        table = Table.from_pandas(table.to_pandas() if hasattr(table, "to_batches") else table)
    else:
        table = table.copy(copy_data=False)
    for name, unit in (units or {}).items():
        if name in table.colnames and unit:
            try:
                table[name].unit = u.Unit(unit, parse_strict="raise")
            except ValueError as exc:
                raise ValueError(f"column {name}: unit {unit!r} is not an astropy unit ({exc})") from None
    for name, text in (descriptions or {}).items():
        if name in table.colnames:
            table[name].description = text
    hdu = fits.table_to_hdu(table)
    hdu.name = extname
    for i, name in enumerate(table.colnames, start=1):
        if table[name].description:
            hdu.header.insert(f"TFORM{i}", (f"TCOMM{i}", _ascii(table[name].description)), after=True)
    record = provenance(command)
    long = [k for k in keywords or {} if len(k) > 8]
    if long:  # astropy would write HIERARCH cards, which many readers skip
        raise ValueError(f"FITS keyword(s) longer than 8 characters: {', '.join(long)}")
    stamp_fits(hdu.header, record, history or ())   # a path may hold any character: made ASCII
    for key, value in (keywords or {}).items():   # before the HISTORY cards, as astropy places a new keyword
        hdu.header[key] = value
    with atomic_path(path) as tmp:
        fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(tmp)
    return Path(path)


def _ascii(text: str) -> str:
    """``text`` with non-ASCII characters escaped (FITS headers are ASCII)."""
    from astrotool.names import printable

    return printable(str(text), ascii_only=True)
