"""Readers and writers shared by the plugins: HDF5, tables (Parquet and FITS), FITS images.

Every writer is atomic (see :func:`astrotool.workspace.atomic_path`) and records
provenance, made once by :mod:`astrotool.provenance`: HDF5 attributes
(:func:`astrotool.io.hdf5.provenance_attrs`), Parquet key-value metadata
(:func:`astrotool.io.tables.write_parquet`), FITS keywords and ``HISTORY`` cards
(:func:`astrotool.io.tables.write_fits_table`, :func:`astrotool.provenance.stamp_fits`).
"""

__docformat__ = "numpy"
