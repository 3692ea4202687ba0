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
