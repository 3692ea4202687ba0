"""``astro doctor`` checks of the ZTF plugin.

Each function returns an :class:`astrotool.hookspecs.CheckResult`; they are
registered by :func:`astrotool_ztf.astro_doctor_checks` and imported only when
``astro doctor`` runs.
"""

from __future__ import annotations

from astrotool.doctor import module_check
from astrotool.hookspecs import CheckResult

__docformat__ = "numpy"


def check_fastavro() -> CheckResult:
    """fastavro importable: reads ZTF Avro alert packets (required).

    Returns
    -------
    CheckResult
        Version of fastavro, or the install hint.
    """
    return module_check("fastavro", "pip install 'fastavro>=1.9'", required=True)


def check_h5py() -> CheckResult:
    """h5py importable: the stamp cubes are HDF5 files (required).

    Returns
    -------
    CheckResult
        Version of h5py, or the install hint.
    """
    return module_check("h5py", "pip install 'h5py>=3.10'", required=True, label="h5py (ztf)")


def check_pyarrow() -> CheckResult:
    """pyarrow importable: alert tables and broker dumps are Parquet (required).

    Returns
    -------
    CheckResult
        Version of pyarrow, or the install hint.
    """
    return module_check("pyarrow", "pip install 'pyarrow>=14'", required=True, label="pyarrow (ztf)")
