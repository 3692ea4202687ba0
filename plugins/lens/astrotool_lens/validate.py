r"""Checking an estimator and its calibration on a constant-shear set it was not made on.

``astro lens validate`` fits, per component i = 1, 2,

$$\langle \hat g_i \rangle_f - g_{i,f} = m_i\, g_{i,f} + c_i$$

over the constant-shear fields f of a set (:func:`astrotool_lens.evaluate.estimator_metrics`,
the fit ``evaluate`` and ``calibrate`` use: ordinary least squares over the field means,
1-sigma errors from the residuals). A field is every stamp with the same true
shear (g1, g2): a ring pair, or a whole field of ``--preset fields``; ring pairs
cancel the intrinsic shapes in each field mean, so m and c are measured with far
less noise than the shape noise of single galaxies.

The fit is made twice: on the raw estimates and on the calibrated ones,
$(\hat g - c_\mathrm{cal}) / (1 + m_\mathrm{cal})$ with a stored calibration (the
model's, from ``astro lens calibrate``, or any JSON file holding m1, m2, c1, c2).
The calibration *transfers* when every calibrated $|m_i|$ is below ``max_abs_m`` and
every $|c_i|$ below ``max_abs_c`` -- or is within ``sigmas`` fit errors of zero, when
the set is too small to tell (:func:`verdict`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

__docformat__ = "numpy"

BIAS_KEYS = ("m1", "m2", "c1", "c2")
"""Keys of a shear calibration: multiplicative (m1, m2) and additive (c1, c2) bias."""


def shear_fields(g1, g2) -> np.ndarray:
    """Constant-shear field of each stamp: stamps with the same true (g1, g2) share one.

    Returns
    -------
    numpy.ndarray of int
        Field number per stamp (0, 1, ... in order of the sorted shears).
    """
    pairs = np.stack([np.asarray(g1, float), np.asarray(g2, float)], axis=1)
    return np.unique(pairs, axis=0, return_inverse=True)[1].reshape(-1)


def read_calibration(path: str | Path, min_response: float = 0.0) -> dict:
    """m1, m2, c1, c2 from a JSON file: at its top level (a ``lens calibrate`` result), under
    ``calibration`` (a ``model.json``) or under ``raw`` (a ``lens validate`` report: the bias it measured).

    Raises
    ------
    astrotool.errors.InputError
        Missing or unreadable file, none of those places holds four numbers, or they are
        not finite, or m1 or m2 is -1 (no calibrated shear), or 1 + m1 or 1 + m2 is below
        ``min_response`` (``lens.calibrate.min_response``: dividing by it would blow the estimates up).
    """
    from astrotool.errors import InputError

    path = Path(path).expanduser()
    if not path.is_file():
        raise InputError(path, "no such calibration file")
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(path, f"unreadable JSON ({exc})") from None
    places = (obj, obj.get("calibration"), obj.get("raw")) if isinstance(obj, dict) else ()
    for place in places:
        if isinstance(place, dict) and all(isinstance(place.get(k), (int, float)) for k in BIAS_KEYS):
            cal = {k: float(place[k]) for k in BIAS_KEYS}
            for k, v in cal.items():
                if not np.isfinite(v):
                    raise InputError(path, f"{k} = {v} is not a finite number")
                if k[0] == "m" and v == -1:
                    raise InputError(path, f"{k} = -1 makes the calibrated shear (g - c) / (1 + m) undefined")
            from astrotool_lens.calibrate import low_response

            low = low_response(cal, min_response)
            if low:
                raise InputError(path, f"{low}, below lens.calibrate.min_response = {min_response:g}: dividing by "
                                       "1 + m would blow the estimates up (an estimator that hardly responds to "
                                       "shear)")
            return cal | {"source": str(path)}
    raise InputError(path, "holds no calibration: expected numbers m1, m2, c1, c2 (at the top level, under "
                           "'calibration' or under 'raw')")


def verdict(fit: dict, max_abs_m: float, max_abs_c: float, sigmas: float) -> list[str]:
    """What is off in a bias fit: each of m1, m2, c1, c2 that is neither below its tolerance
    nor within ``sigmas`` errors of zero (an empty list: everything is fine).

    Parameters
    ----------
    fit : dict
        ``m1, m1_err, ..., c2_err`` (:func:`astrotool_lens.evaluate.estimator_metrics`).
    max_abs_m, max_abs_c : float
        Tolerances on |m_i| and |c_i|.
    sigmas : float
        Errors from zero that still count as consistent with zero.
    """
    off = []
    for k in BIAS_KEYS:
        v, err = fit[k], fit[f"{k}_err"]
        tol = max_abs_m if k[0] == "m" else max_abs_c
        if not np.isfinite(v):
            off.append(f"{k} could not be fitted")
        elif abs(v) >= tol and not (np.isfinite(err) and abs(v) <= sigmas * err):
            sig = f", {abs(v) / err:.1f} sigma from 0" if np.isfinite(err) and err > 0 else ""
            off.append(f"{k} = {v:+.2e} +- {err:.1e} (|{k}| >= {tol:g}{sig})")
    return off


def validate_estimates(g1_true, g2_true, raw: tuple, calibration: dict | None, cfg, field=None,
                       uncalibrated: str = "no stored calibration", unjudged: str | None = None) -> dict:
    """m and c of raw and calibrated estimates, and whether the calibration transfers.

    Parameters
    ----------
    g1_true, g2_true : array-like
        True shear per stamp.
    raw : (est1, est2)
        Raw estimates per stamp (NaN where the estimator failed).
    calibration : dict or None
        ``m1, m2, c1, c2`` to divide out (:func:`astrotool_lens.model.calibrate_estimates`); None: none stored.
    cfg : ValidateConfig
        ``max_abs_m``, ``max_abs_c``, ``sigmas``.
    field : array-like, optional
        Field per stamp (default: :func:`shear_fields`).
    uncalibrated : str
        Why ``calibration`` is None, the verdict's start (e.g. the stored calibration is left out with
        ``--response metacal``).
    unjudged : str, optional
        Why the raw estimates cannot be judged (:func:`astrotool_lens.response.response_problem`): the
        verdict says so instead of whether they meet the tolerance; kept as ``response_problem``.

    Returns
    -------
    dict
        ``n, n_fields, n_failed, raw`` (the fit), ``calibration``, ``calibrated`` (the fit, or None),
        ``transfers`` (bool, None without a calibration), ``off`` (what is off), ``verdict`` (one line).
    """
    from astrotool_lens.evaluate import estimator_metrics
    from astrotool_lens.model import calibrate_estimates

    field = shear_fields(g1_true, g2_true) if field is None else np.asarray(field)
    est = np.stack([np.asarray(raw[0], float), np.asarray(raw[1], float)], axis=1)
    keep = ("m1", "m1_err", "m2", "m2_err", "c1", "c1_err", "c2", "c2_err", "rmse_g1", "rmse_g2", "q")
    fit_raw = estimator_metrics(g1_true, g2_true, est[:, 0], est[:, 1], field)
    out = {"n": fit_raw["n"], "n_fields": fit_raw["n_fields"], "n_failed": fit_raw["n_failed"],
           "raw": {k: fit_raw[k] for k in keep}, "calibration": calibration, "calibrated": None,
           "tolerance": {"max_abs_m": cfg.max_abs_m, "max_abs_c": cfg.max_abs_c, "sigmas": cfg.sigmas}}
    tol = f"|m| < {cfg.max_abs_m:g}, |c| < {cfg.max_abs_c:g} (or within {cfg.sigmas:g} sigma of 0)"
    if unjudged:
        out["response_problem"] = unjudged
    if calibration is None:
        off = verdict(out["raw"], cfg.max_abs_m, cfg.max_abs_c, cfg.sigmas)
        out.update(transfers=None, off=off, verdict=f"{uncalibrated}; the raw estimator "
                   + (f"is not judged: {unjudged}" if unjudged else f"meets {tol}" if not off else
                      "is off: " + "; ".join(off)))
        return out
    cal = calibrate_estimates(est, [calibration["m1"], calibration["m2"]], [calibration["c1"], calibration["c2"]])
    fit_cal = estimator_metrics(g1_true, g2_true, cal[:, 0], cal[:, 1], field)
    out["calibrated"] = {k: fit_cal[k] for k in keep}
    off = verdict(out["calibrated"], cfg.max_abs_m, cfg.max_abs_c, cfg.sigmas)
    out.update(transfers=not off, off=off,
               verdict=f"transfers: calibrated {tol}" if not off else "does not transfer: " + "; ".join(off))
    if unjudged:
        out.update(transfers=None, verdict=f"the calibration is not judged: {unjudged}")
    return out


def summary_record(report: dict) -> dict:
    """The flat record ``astro lens validate`` prints: raw and calibrated m, c with errors, the verdict."""
    rec = {k: report[k] for k in ("input", "estimator", "n", "n_fields", "n_failed")}
    for k in BIAS_KEYS:
        rec[f"{k}_raw"] = report["raw"][k]
        rec[f"{k}_raw_err"] = report["raw"][f"{k}_err"]
    if report["calibrated"] is not None:
        for k in BIAS_KEYS:
            rec[k] = report["calibrated"][k]
            rec[f"{k}_err"] = report["calibrated"][f"{k}_err"]
    rec["calibration"] = (report["calibration"] or {}).get("source")
    rec.update(transfers=report["transfers"], verdict=report["verdict"], report=report["report"])
    return rec
