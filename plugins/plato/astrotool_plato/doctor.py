"""``astro doctor`` checks of the PLATO plugin.

Each function returns an :class:`astrotool.hookspecs.CheckResult`; they are
registered by :func:`astrotool_plato.astro_doctor_checks` and imported only when
``astro doctor`` runs.
"""

from __future__ import annotations

from astrotool.doctor import module_check
from astrotool.hookspecs import CheckResult

__docformat__ = "numpy"


def check_astropy_bls() -> CheckResult:
    """astropy with :class:`astropy.timeseries.BoxLeastSquares` (the BLS transit search).

    Returns
    -------
    CheckResult
        astropy's version when BLS imports, else what failed and the install hint.
    """
    hint = "pip install 'astropy>=6'"
    res = module_check("astropy", hint, label="astropy (BLS)")
    if not res.ok:
        return res
    try:
        from astropy.timeseries import BoxLeastSquares  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - ImportError or a broken install
        return CheckResult("astropy (BLS)", False, f"astropy {res.detail}, BoxLeastSquares: "
                           f"{type(exc).__name__}: {exc}"[:120], hint)
    return CheckResult("astropy (BLS)", True, f"{res.detail} (astropy.timeseries.BoxLeastSquares)")


def check_psls() -> CheckResult:
    """PSLS, the PLATO Solar-like Light-curve Simulator (optional).

    The built-in simulator needs no PSLS; it is an optional, more realistic
    source of stellar signal.

    Returns
    -------
    CheckResult
        PSLS's version, or the install hint (a missing PSLS is not a failure).
    """
    return module_check("psls", "pip install psls pyyaml (optional: the built-in simulator is the default)")
