"""Compare a DRE summary with a simulated tile's truth table (recovery figures).

The criteria are those of the DRE anchor measurements: LOGR within one grid step
(0.115 dex), AX_RATIO within 0.1, ANGLE within 15° (mod 180°) for galaxies with
axis ratio < 0.7, FLUX within 5 %, INDEX within 0.5, and a match within 3 px.
Error coverage is the fraction of galaxies whose truth lies within 1σ and 2σ
of the estimate, with σ the summary's ``<NAME>_ERR`` (0.683 and 0.954 expected).
"""

from __future__ import annotations

import numpy as np

__docformat__ = "numpy"

LOGR_TOL, Q_TOL, ANGLE_TOL, FLUX_TOL, INDEX_TOL, MATCH_PX = 0.115, 0.1, 15.0, 0.05, 0.5, 3.0
FIT_COLUMNS = ("LOGR", "AX_RATIO", "ANGLE", "FLUX", "INDEX", "LOGR_ERR", "AX_RATIO_ERR", "ANGLE_ERR", "FLUX_ERR",
               "INDEX_ERR", "LOGR_EDGE_LO", "LOGR_EDGE_HI", "STAR", "BLEND", "CHI2_NU")
"""Summary columns carried into :func:`match`'s pairs (suffixed ``_FIT``)."""
COVERED = ("LOGR", "AX_RATIO", "FLUX", "INDEX")
"""Quantities whose error coverage :func:`recovery` reports."""


def match(summary, truth, kind: str = "galaxy", max_dist: float = MATCH_PX):
    """Pair each truth object of ``kind`` with the nearest summary row within ``max_dist`` px.

    Parameters
    ----------
    summary, truth : pandas.DataFrame
        ``X_IMAGE``/``Y_IMAGE`` (summary) and ``X``/``Y``/``KIND`` (truth), 1-based pixels.

    Returns
    -------
    pandas.DataFrame
        One row per truth object: truth columns, ``matched`` and the fitted columns
        suffixed ``_FIT`` (NaN when unmatched).
    """
    import pandas as pd

    t = truth[truth["KIND"] == kind].reset_index(drop=True)
    sx, sy = summary["X_IMAGE"].to_numpy(float), summary["Y_IMAGE"].to_numpy(float)
    rows = []
    for _, r in t.iterrows():
        d = np.hypot(sx - r["X"], sy - r["Y"]) if len(sx) else np.array([np.inf])
        j = int(np.argmin(d))
        fit = summary.iloc[j] if d[j] <= max_dist else None
        row = {**r.to_dict(), "matched": fit is not None}
        for c in FIT_COLUMNS:
            row[f"{c}_FIT"] = (fit[c] if fit is not None and c in fit else np.nan)
        rows.append(row)
    return pd.DataFrame(rows)


def recovery(pairs) -> dict:
    """Recovery fractions of matched galaxies (see module docstring for the criteria)."""
    m = pairs[pairs["matched"]]
    dlogr = (m["LOGR_FIT"] - m["LOGR"]).to_numpy(float)
    dq = (m["AX_RATIO_FIT"] - m["AX_RATIO"]).to_numpy(float)
    dang = np.abs((m["ANGLE_FIT"] - m["ANGLE"] + 90.0) % 180.0 - 90.0).to_numpy(float)
    elong = (m["AX_RATIO"] < 0.7).to_numpy()
    dflux = (m["FLUX_FIT"] / m["FLUX"] - 1.0).to_numpy(float)
    dindex = (m["INDEX_FIT"] - m["INDEX"]).to_numpy(float)
    edge_fit = (m["LOGR_EDGE_LO_FIT"].astype(bool) | m["LOGR_EDGE_HI_FIT"].astype(bool)).to_numpy()
    n = max(len(m), 1)
    cover = {}
    for name in COVERED:
        err = m[f"{name}_ERR_FIT"].to_numpy(float)
        if not np.isfinite(err).any():
            continue
        dev = np.abs(m[f"{name}_FIT"].to_numpy(float) - m[name].to_numpy(float)) / err
        dev = np.where(np.isfinite(dev), dev, np.inf)
        cover[f"{name.lower()}_in1sig"] = float(np.mean(dev <= 1.0)) if len(m) else float("nan")
        cover[f"{name.lower()}_in2sig"] = float(np.mean(dev <= 2.0)) if len(m) else float("nan")
    return {
        "n_truth": int(len(pairs)), "n_matched": int(len(m)),
        "logr_frac": float(np.sum(np.abs(dlogr) <= LOGR_TOL) / n),
        "q_frac": float(np.sum(np.abs(dq) <= Q_TOL) / n),
        "angle_frac": float(np.sum(dang[elong] <= ANGLE_TOL) / max(int(elong.sum()), 1)),
        "n_angle": int(elong.sum()),
        "flux_frac": float(np.sum(np.abs(dflux) <= FLUX_TOL) / n),
        "index_frac": float(np.sum(np.abs(dindex) <= INDEX_TOL) / n),
        "median_dlogr": float(np.median(dlogr)) if len(m) else float("nan"),
        "median_dq": float(np.median(dq)) if len(m) else float("nan"),
        "median_dflux": float(np.median(dflux)) if len(m) else float("nan"),
        "edge_minima": int(edge_fit.sum()),
        **cover,
    }


def workspace_pairs(root, kind: str = "galaxy"):
    """:func:`match` pairs of every simulated tile of a workspace (column ``TILE`` added).

    Returns
    -------
    pandas.DataFrame or None
        None when no summary has a truth table.
    """
    from pathlib import Path

    import pandas as pd

    root = Path(root) / "dre"
    out = []
    for summ in sorted((root / "summary").glob("*_dre.parquet")):
        stem = summ.name[: -len("_dre.parquet")]
        truth = root / "tiles" / "truth" / f"{stem}_truth.parquet"
        if not truth.exists():
            continue
        pairs = match(pd.read_parquet(summ), pd.read_parquet(truth), kind)
        pairs["TILE"] = stem
        out.append(pairs)
    return pd.concat(out, ignore_index=True) if out else None


def workspace_recovery(root) -> tuple[dict, dict]:
    """Recovery of galaxies and star flagging over every simulated tile of a workspace.

    Returns
    -------
    galaxies : dict
        :func:`recovery` over all tiles.
    stars : dict
        ``n_stars`` in the summaries and how many are flagged ``STAR``.
    """
    gal = workspace_pairs(root, "galaxy")
    if gal is None:
        return {}, {}
    stars = workspace_pairs(root, "star")
    fitted = stars[stars["matched"]]
    return recovery(gal), {"n_stars_fitted": int(len(fitted)), "n_flagged": int(fitted["STAR_FIT"].astype(bool).sum())}
