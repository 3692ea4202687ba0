"""Readers and writers shared by the plugins: HDF5, tables (Parquet and FITS), FITS images.

Every writer is atomic (see :func:`astrotool.workspace.atomic_path`) and records
provenance: HDF5 attributes, Parquet key-value metadata, FITS ``HISTORY`` cards.
"""

__docformat__ = "numpy"
