r"""Shear metrics and the side-by-side evaluation of the CNN and HSM estimators.

Metrics (per component i = 1, 2)
--------------------------------
* RMSE and MAE of the per-galaxy estimate against the true shear g, over
  finite pairs (:func:`astrotool.ml.metrics.rmse`, :func:`~astrotool.ml.metrics.mae`).
* Multiplicative and additive bias from the linear fit
  $g_\mathrm{obs} - g_\mathrm{true} = m\, g_\mathrm{true} + c$, by ordinary least squares over constant-shear
  fields (the per-field mean of the estimates; each stamp is its own field when
  every stamp has its own shear, each ring pair when every pair has one), with
  1-sigma errors from the fit residuals (N - 2 degrees of freedom). Computed
  in the pixel frame (GREAT3 rotates to the PSF frame; for a random or round
  PSF the two agree on average). METACAL's (and ANACAL's) estimate of a field is
  $\langle R \rangle^{-1} \langle e \rangle$, its response averaged over that field's stamps
  (:func:`astrotool_lens.metacal.shear_from_response`; over all evaluated stamps when each
  stamp has its own shear).
* GREAT3 constant-shear metric

  $$Q = \frac{2000\, \eta}{\sqrt{\sigma^2_\mathrm{min} + \sum_i \left[\left(\frac{m_i}{2 \times 10^{-3}}\right)^2
  + \left(\frac{c_i}{2 \times 10^{-4}}\right)^2\right]}}$$

  with $\eta = 1.232$ and $\sigma^2_\mathrm{min} = 4$ (ground) or 1 (space); an unbiased
  estimator scores 1232 on ground.

Report
------
``<dataset>_<model>_metrics.json`` (in ``lens/reports``; ``<dataset>_<model>_all_metrics.json`` for every
stamp, ``<dataset>_<model>_raw_metrics.json`` with ``--raw``: :func:`report_stem`) holds the metrics,
the binned biases (``binned``: m and c per S/N and size bin, also when a plot would have a single point and is
therefore not drawn), ``field_means`` (with at most :data:`MAX_FIELD_MEANS` distinct true shears:
per estimator and field, the mean estimated shear ± standard error (of the pair means with ring pairs),
:func:`shear_field_means`;
with fewer than 3 fields m and c are NaN and a note says so) and ``notes``: what a reader must not miss, such as a
calibration that makes a bias worse on the evaluated fields
(:func:`calibration_notes`); ``astro lens evaluate`` prints the notes too.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np

from astrotool.ml.metrics import mae, rmse

__docformat__ = "numpy"

GREAT3_ETA = 1.232
"""Normalisation of the GREAT3 quality factor Q (1000 for the fiducial bias)."""
GREAT3_M_FID = 2e-3
"""Fiducial multiplicative bias of the GREAT3 quality factor."""
GREAT3_C_FID = 2e-4
"""Fiducial additive bias of the GREAT3 quality factor."""
MAX_FIELD_MEANS = 20
"""With at most this many distinct true shears, the report lists each one's mean estimate (``field_means``)."""


def field_means(g_true, g_est, field=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-field mean true and estimated shear (finite estimates only).

    Returns
    -------
    true_mean, est_mean, count : numpy.ndarray
    """
    g_true, g_est = np.asarray(g_true, float), np.asarray(g_est, float)
    ok = np.isfinite(g_est) & np.isfinite(g_true)
    if field is None:
        return g_true[ok], g_est[ok], np.ones(int(ok.sum()))
    field = np.asarray(field)[ok]
    uniq, inv = np.unique(field, return_inverse=True)
    cnt = np.bincount(inv).astype(float)
    return (np.bincount(inv, g_true[ok]) / cnt, np.bincount(inv, g_est[ok]) / cnt, cnt)


def fit_bias(g_true, g_est, field=None) -> dict:
    """Fit g_est - g_true = m g_true + c (OLS over fields).

    Parameters
    ----------
    g_true, g_est : array-like
        True and estimated shear of one component, per stamp.
    field : array-like, optional
        Constant-shear field of each stamp; estimates are averaged per field
        first. ``None``: every stamp is its own field.

    Returns
    -------
    dict
        ``m, m_err, c, c_err`` and ``n_fields``. All NaN with fewer than 3 fields (two points fit any
        line exactly: neither the fit nor its error says anything).
    """
    x, yest, _ = field_means(g_true, g_est, field)
    n = len(x)
    if n < 3 or np.ptp(x) == 0:
        return {"m": float("nan"), "m_err": float("nan"), "c": float("nan"), "c_err": float("nan"), "n_fields": n}
    y = yest - x
    xm, ym = x.mean(), y.mean()
    sxx = float(np.sum((x - xm) ** 2))
    m = float(np.sum((x - xm) * (y - ym)) / sxx)
    c = float(ym - m * xm)
    s2 = float(np.sum((y - (m * x + c)) ** 2) / (n - 2))
    m_err = math.sqrt(s2 / sxx)
    c_err = math.sqrt(s2 * (1.0 / n + xm * xm / sxx))
    return {"m": m, "m_err": m_err, "c": c, "c_err": c_err, "n_fields": n}


def shear_field_means(g1_true, g2_true, est1, est2, pair=None) -> list[dict]:
    """Mean estimated shear ± its standard error per constant true shear (finite estimates only).

    Parameters
    ----------
    g1_true, g2_true : array-like
        True reduced shear per stamp (dimensionless); stamps with the same (g1, g2) form one field.
    est1, est2 : array-like
        Estimated shear per stamp (dimensionless; NaN: failed).
    pair : array-like, optional
        Ring pair of each stamp (the truth's ``pair``) when the dataset has ring pairs: a pair's two stamps
        cancel its intrinsic shape, so they are not independent and the error comes from the pair means.

    Returns
    -------
    list of dict
        Per field, in order of the sorted true shears: ``true_g1, true_g2, n`` (finite estimates),
        ``g1, g1_err, g2, g2_err`` (mean of the stamps and standard error s / sqrt(n); with ``pair``,
        s and n those of the pair means, and ``n_pairs``; the error is NaN for n < 2).
    """
    from astrotool_lens.validate import shear_fields

    g1_true, g2_true = np.asarray(g1_true, float), np.asarray(g2_true, float)
    est1, est2 = np.asarray(est1, float), np.asarray(est2, float)
    field = shear_fields(g1_true, g2_true)
    ok = np.isfinite(est1) & np.isfinite(est2)
    out = []
    for f in np.unique(field):
        sel = (field == f) & ok
        row = {"true_g1": float(g1_true[field == f][0]), "true_g2": float(g2_true[field == f][0]),
               "n": int(sel.sum())}
        if pair is not None:
            _, inv = np.unique(np.asarray(pair)[sel], return_inverse=True)
            cnt = np.bincount(inv).astype(float)
            row["n_pairs"] = len(cnt)
        for k, e in (("g1", est1), ("g2", est2)):
            v = e[sel]
            row[k] = float(v.mean()) if len(v) else float("nan")
            u = v if pair is None else np.bincount(inv, v) / cnt     # the independent units: stamps or pairs
            row[f"{k}_err"] = float(u.std(ddof=1) / math.sqrt(len(u))) if len(u) > 1 else float("nan")
        out.append(row)
    return out


def great3_q(m1: float, m2: float, c1: float, c2: float, sigma2_min: float = 4.0) -> float:
    """GREAT3 constant-shear quality factor Q (higher is better; 1232 = unbiased, ground)."""
    s = sigma2_min + (m1 / GREAT3_M_FID) ** 2 + (m2 / GREAT3_M_FID) ** 2 + (c1 / GREAT3_C_FID) ** 2 \
        + (c2 / GREAT3_C_FID) ** 2
    return float(2000.0 * GREAT3_ETA / math.sqrt(s)) if np.isfinite(s) else float("nan")


def estimator_metrics(g1_true, g2_true, est1, est2, field=None, sigma2_min: float = 4.0) -> dict:
    """Every metric for one estimator.

    Returns
    -------
    dict
        ``n, n_failed, rmse_g1, rmse_g2, mae_g1, mae_g2, m1, m1_err, m2, m2_err,
        c1, c1_err, c2, c2_err, q, n_fields``.
    """
    est1, est2 = np.asarray(est1, float), np.asarray(est2, float)
    ok = np.isfinite(est1) & np.isfinite(est2)
    b1 = fit_bias(g1_true, np.where(ok, est1, np.nan), field)
    b2 = fit_bias(g2_true, np.where(ok, est2, np.nan), field)
    out = {
        "n": int(len(est1)), "n_failed": int((~ok).sum()),
        "rmse_g1": rmse(est1, g1_true), "rmse_g2": rmse(est2, g2_true),
        "mae_g1": mae(est1, g1_true), "mae_g2": mae(est2, g2_true),
        "m1": b1["m"], "m1_err": b1["m_err"], "m2": b2["m"], "m2_err": b2["m_err"],
        "c1": b1["c"], "c1_err": b1["c_err"], "c2": b2["c"], "c2_err": b2["c_err"],
        "n_fields": b1["n_fields"],
    }
    out["q"] = great3_q(out["m1"], out["m2"], out["c1"], out["c2"], sigma2_min)
    return out


def binned_bias(g1_true, g2_true, est1, est2, by, bins: int = 5, field=None) -> list[dict]:
    """m and c per quantile bin of ``by`` (e.g. S/N or size).

    Returns
    -------
    list of dict
        ``lo, hi, center, n, m1, m1_err, m2, m2_err, c1, c1_err, c2, c2_err`` per non-empty bin.
    """
    by = np.asarray(by, float)
    fin = np.isfinite(by)
    if not fin.any():
        return []
    uniq = np.unique(by[fin])
    edges = np.unique(np.quantile(by[fin], np.linspace(0, 1, bins + 1))) if len(uniq) > 1 else uniq[[0, 0]]
    out = []
    for k in range(max(len(edges) - 1, 1)):
        lo, hi = edges[k], edges[min(k + 1, len(edges) - 1)]
        sel = fin & (by >= lo) & ((by <= hi) if k == len(edges) - 2 or lo == hi else (by < hi))
        if sel.sum() < 3:
            continue
        f = None if field is None else np.asarray(field)[sel]
        b1 = fit_bias(np.asarray(g1_true)[sel], np.asarray(est1)[sel], f)
        b2 = fit_bias(np.asarray(g2_true)[sel], np.asarray(est2)[sel], f)
        out.append({"lo": float(lo), "hi": float(hi), "center": float(np.median(by[sel])), "n": int(sel.sum()),
                    "m1": b1["m"], "m1_err": b1["m_err"], "m2": b2["m"], "m2_err": b2["m_err"],
                    "c1": b1["c"], "c1_err": b1["c_err"], "c2": b2["c"], "c2_err": b2["c_err"]})
    return out


def calibration_notes(results: dict, subset: str, calibrated: str = "CNN", raw: str = "CNN raw") -> list[str]:
    """Notes for each bias (m1, m2, c1, c2) that the calibration makes worse on the evaluated stamps.

    A bias is worse when its magnitude grows by more than the calibrated
    estimate's 1-sigma error (or at all, without an error).

    Parameters
    ----------
    results : dict
        Estimator name -> :func:`estimator_metrics`.
    subset : str
        ``"test"`` or ``"all"``: the stamps the metrics are of (named in the note).
    calibrated, raw : str
        The names of the calibrated and the raw estimates in ``results``.

    Returns
    -------
    list of str
        One line per worse bias; empty when there is no raw estimate to compare.
    """
    if calibrated not in results or raw not in results:
        return []
    cal, unc = results[calibrated], results[raw]
    where = "the test fields" if subset == "test" else "the evaluated stamps"
    notes = []
    for k in ("m1", "m2", "c1", "c2"):
        a, b, err = unc[k], cal[k], cal[f"{k}_err"]
        if np.isfinite(a) and np.isfinite(b) and abs(b) - abs(a) > (err if np.isfinite(err) else 0.0):
            notes.append(f"calibration makes {k} worse on {where}: {a:+.4f} raw -> {b:+.4f}"
                         + (f" ± {err:.4f}" if np.isfinite(err) else "") + " calibrated")
    return notes


# ============================================================================ plots


def plot_bias_vs(path: Path, quantity: str, unit: str, binned: dict, title: str = "") -> Path | None:
    """m1, m2 (top) and c1, c2 (bottom), with errors, per bin of ``quantity`` for every estimator (PNG).

    The grey bands are the GREAT3 targets (|m| < 2e-3, |c| < 2e-4) and are
    labelled in the legend, which sits beside the panels, off the data.

    Returns
    -------
    pathlib.Path or None
        None, and nothing is written, when no estimator has two bins or more:
        an axis with one point shows nothing (the values are in the report).
    """
    from astrotool.io.figures import figure

    if max((len(rows) for rows in binned.values()), default=0) < 2:
        return None
    with figure(path, 2, 3, figsize=(10.5, 6.0), title=title, gridspec_kw={"width_ratios": [1, 1, 0.42]}) \
            as (fig, axs):
        for name, rows in binned.items():
            if not rows:
                continue
            x = np.array([r["center"] for r in rows])
            for row, (bias, ax_pair) in enumerate((("m", axs[0, :2]), ("c", axs[1, :2]))):
                for i, ax in enumerate(ax_pair):
                    v = np.array([r[f"{bias}{i + 1}"] for r in rows])
                    e = np.array([r.get(f"{bias}{i + 1}_err", np.nan) for r in rows])
                    ax.errorbar(x, v, yerr=np.nan_to_num(e), marker="o", ms=4, capsize=2, label=name)
        for row, (bias, fid) in enumerate((("m", GREAT3_M_FID), ("c", GREAT3_C_FID))):
            for i, ax in enumerate(axs[row, :2]):
                ax.axhline(0, color="k", lw=0.8)
                ax.axhspan(-fid, fid, color="0.85", zorder=0, label=f"GREAT3 target |{bias}| < {fid:g}")
                ax.set_xlabel(f"{quantity} [{unit}]" if unit else quantity)
                ax.set_ylabel(f"{bias}{i + 1}")
        for ax in axs[:, 2]:
            ax.set_axis_off()
        for row in range(2):
            handles, labels = axs[row, 0].get_legend_handles_labels()
            axs[row, 2].legend(handles, labels, loc="center left", fontsize=8, frameon=False)
    return Path(path)


# ============================================================================ evaluation


def evaluation_indices(ds, meta: dict, split: str) -> tuple[np.ndarray, str]:
    """Stamp indices to evaluate and the name of the subset."""
    from astrotool.errors import InputError

    from astrotool.ml.commands import dataset_identity

    tr, trained = meta.get("training", {}), (meta.get("settings") or {}).get("dataset") or {}
    if "manifest_sha256" in trained:  # its content: a moved or copied workspace keeps its test split
        same = trained.get("name") == ds.name and trained["manifest_sha256"] == dataset_identity(ds)["manifest_sha256"]
    else:
        same = tr.get("dataset") == ds.name and Path(tr.get("dataset_path", "")).resolve() == ds.root.resolve()
    if split == "all" or (split == "auto" and not same):
        return np.arange(ds.n), "all"
    if not same:
        raise InputError(ds.root, f"split 'test' needs the model's training dataset ({tr.get('dataset')!r})")
    _, _, test = ds.split(tr["split"], tr["seed"])
    if len(test) == 0:
        raise InputError(ds.root, "the training split left no test fields; evaluate on another dataset")
    return test, "test"


def fields_of(ds) -> np.ndarray | None:
    """Constant-shear field of each stamp (None when every stamp has its own shear)."""
    if int(ds.manifest.get("field_size", 1)) <= 1:
        return None
    return np.asarray(ds.truth["field"])


def table_rows(table_index, wanted) -> np.ndarray:
    """Row of each ``wanted`` stamp index in a table's ``index`` column; -1 where it has none."""
    table_index, wanted = np.asarray(table_index, np.int64), np.asarray(wanted, np.int64)
    if not table_index.size:
        return np.full(wanted.shape, -1, dtype=np.int64)
    order = np.argsort(table_index, kind="stable")
    pos = np.minimum(np.searchsorted(table_index[order], wanted), table_index.size - 1)
    return np.where(table_index[order][pos] == wanted, order[pos], -1)


def table_estimates(table, rows, methods: Sequence[str], field=None) -> dict:
    """Per-stamp shear estimates ``{method: (g1, g2)}`` of a ``lens measure`` table's ``rows``.

    HSM methods: their ``<m>_g1, <m>_g2`` columns. METACAL and ANACAL: $\langle R\rangle^{-1} e$ with the
    response averaged per ``field`` over these rows (:func:`astrotool_lens.metacal.shear_from_response`),
    so that a field's mean estimate is $\langle R\rangle^{-1}\langle e\rangle$ (METACAL: corrected to
    second order in the field's shear).

    Parameters
    ----------
    table : pyarrow.Table
    rows : array of int
        Rows to use (an index array or a slice), in the order of ``field``.
    methods : sequence of str
    field : array-like, optional
        Constant-shear field of each row (None: one response for all rows).
    """
    from astrotool_lens.config import RESPONSE_METHODS

    def col(name):
        return table.column(name).to_numpy(zero_copy_only=False)[rows].astype(float)

    out = {}
    for m in methods:
        if m in RESPONSE_METHODS:
            from astrotool_lens.metacal import RESPONSE, SECOND_ORDER, shear_from_response

            k = m.lower()
            names = [f"{k}_{c}" for c in RESPONSE + SECOND_ORDER if f"{k}_{c}" in table.column_names]
            out[m] = shear_from_response({c: col(c) for c in names}, field, prefix=k)
        else:
            out[m] = (col(f"{m.lower()}_g1"), col(f"{m.lower()}_g2"))
    return out


def check_hsm_table(ds, path: Path, cfg, overwrite: bool = False) -> str | None:
    """Why the HSM table at ``path`` must be measured for ``cfg`` (None: it serves ``ds``), refusing first
    what measuring it would refuse, so that a command can check before it does any other work.

    Returns
    -------
    str or None
        :func:`astrotool_lens.measure.table_problem`.

    Raises
    ------
    astrotool.errors.AstroError
        Exit code 2: the table was measured on these stamps with other settings for a method of ``cfg``
        (:func:`astrotool_lens.measure.replaced_settings`) and ``overwrite`` is off, or a method's package
        is missing (:func:`astrotool_lens.measure.require_packages`).
    """
    from astrotool.errors import AstroError
    from astrotool_lens.measure import replaced_settings, require_packages, table_problem

    problem = table_problem(path, ds, cfg)
    if problem:
        changes = [] if overwrite else replaced_settings(path, ds, cfg)
        if changes:
            raise AstroError(f"{path}: measured on these stamps with other settings ({'; '.join(changes)}), which "
                             "measuring it again would replace: give its settings (--set lens.measure.KEY=VALUE) "
                             "or --overwrite to measure it again with these", exit_code=2)
        require_packages(cfg)
    return problem


def hsm_estimates(ds, path: Path, cfg, mapper, log=None, overwrite: bool = False):
    """The HSM table of ``ds`` for ``cfg`` (a pyarrow Table): the one at ``path`` if it serves, else measured.

    ``ds`` is a dataset, or stamps loaded by :func:`astrotool_lens.predict.read_inputs`
    (measured with :func:`~astrotool_lens.measure.measure_inputs`). Only the settings of ``cfg.methods``
    are compared: a method the table lacks is measured alone and joined into it, and a held method not
    asked for keeps its own settings (:func:`~astrotool_lens.measure.methods_to_add`). With ``overwrite``
    the table is measured again with its methods and the wanted ones, so that nothing it held is lost.

    Raises
    ------
    astrotool.errors.AstroError
        Exit code 2: the table was measured on these stamps with other settings (a ``lens measure`` of the
        user's own) and ``overwrite`` is off; it is never replaced silently (:func:`check_hsm_table`). Or
        items failed (exit code 1).
    """
    from astrotool.errors import AstroError
    from astrotool.io.tables import read_parquet
    from astrotool_lens.measure import discard_parts, measure_dataset, measure_inputs, measure_plan

    problem = check_hsm_table(ds, path, cfg, overwrite)
    if problem:
        name = getattr(ds, "stem", None) or ds.name
        if overwrite:
            discard_parts(path, overwrite)
        wanted, add = measure_plan(path, ds, cfg, overwrite, every_method=False)
        if log:
            log.info("measuring %s on %s (the table %s: %s)", ", ".join(wanted.methods), name,
                     "gains it" if add else "is measured again", problem)
        run = measure_inputs if hasattr(ds, "gal") else measure_dataset
        res = run(ds, wanted, path, mapper=mapper, add=add)
        if res.get("missing_parts"):
            raise AstroError(f"{path}: {res['missing_parts']} of {res['parts']} parts not measured (failures or "
                             "--shard; the measured ones are kept, a re-run resumes)", exit_code=1)
    return read_parquet(path)


def evaluate(ds, model_dir: Path, cfg, predictions_dir: Path, reports_dir: Path, *, mapper,
             hsm_table: Path | None = None, measure_cfg=None, log=None, overwrite: bool = False,
             explicit_calibrated: bool = False, device: str = "cpu", min_response: float | None = None) -> dict:
    """Score the CNN and the classical estimators on the same stamps.

    Parameters
    ----------
    ds : ShearDataset
    model_dir : path-like
        Checkpoint folder.
    cfg : EvaluateConfig
    predictions_dir, reports_dir : path-like
        ``lens/predictions`` and ``lens/reports``.
    mapper : callable
        ``Context.map``-like, used to measure the HSM estimators when needed.
    hsm_table : path-like, optional
        Existing HSM table (default ``<predictions>/<dataset>_hsm.parquet``;
        measured again unless it serves ``ds`` with ``measure_cfg``:
        :func:`astrotool_lens.measure.table_problem`).
    measure_cfg : MeasureConfig, optional
        HSM settings when the classical estimators must be measured (default: the section's defaults).
    overwrite : bool
        Measure a table of these stamps made with other settings again (:func:`hsm_estimates`).
    explicit_calibrated : bool
        ``--calibrated`` was given: a calibration fitted in the other symmetrize mode is refused, not
        skipped with a warning (:func:`astrotool_lens.model.calibration_in_use`).
    device : str
        Where the CNN runs (``cpu``, ``cuda``, ``cuda:N``; ``--device``, ``ml.accelerator``).
    min_response : float
        ``lens.calibrate.min_response``: a raw CNN whose fitted ``1 + m1`` or ``1 + m2`` is below it gets a
        note (:func:`response_notes`), as ``calibrate`` refuses to calibrate it.

    Raises
    ------
    astrotool.errors.InputError
        ``ds`` bears the name of the model's training set but was made again since (unless ``split`` is all)
        (:func:`astrotool.ml.commands.check_trained_on`), or its truth table lacks a column.
    astrotool.errors.AstroError
        Exit code 2: the HSM table of ``cfg.classical`` cannot be measured again without ``overwrite``
        (:func:`check_hsm_table`), refused before any stamp is predicted and with nothing written.

    Returns
    -------
    dict
        ``dataset, model, subset, n, estimators {name: metrics}, plots, report, predictions``
        (the CNN's estimates of the evaluated stamps, ``<predictions>/<dataset>_<model>_<subset>.parquet``,
        ``subset`` ``test`` or ``all``: a ``lens predict`` table is never replaced).
    """
    import pyarrow as pa

    from astrotool.io.figures import plot_pred_vs_true
    from astrotool.io.tables import write_parquet
    from astrotool.ml.commands import check_trained_on
    from astrotool.workspace import write_json_atomic
    from astrotool_lens.config import MeasureConfig
    from astrotool_lens.measure import running_command
    from astrotool_lens.model import apply_calibration, calibration_in_use, load_estimator, predict_array
    from astrotool_lens.predict import PREDICTION_COLUMNS
    from astrotool_lens.train import dataset_inputs

    model_dir = Path(model_dir)
    model, meta = load_estimator(model_dir, device=device)
    if cfg.split != "all":  # a split of its training set drawn anew is no hold-out; all is all
        check_trained_on((meta.get("settings") or {}).get("dataset"), ds, model_dir,
                         "--split all to score every stamp, training ones included")
    idx, subset = evaluation_indices(ds, meta, cfg.split)
    truth = ds.truth
    ds.truth_columns(("snr", "hlr"))     # binned below: a missing column is named before the model runs
    g1, g2 = np.asarray(truth["g1"])[idx], np.asarray(truth["g2"])[idx]
    fields_all = fields_of(ds)
    if fields_all is None and ds.manifest.get("ring"):
        fields_all = np.asarray(truth["pair"])
    field = None if fields_all is None else fields_all[idx]

    methods = list(cfg.classical)
    hsm_path = Path(hsm_table) if hsm_table else Path(predictions_dir) / f"{ds.stem}_hsm.parquet"
    hsm_cfg = (measure_cfg or MeasureConfig()).model_copy(update={"methods": methods})
    if methods:   # a table of other settings is refused before any stamp is predicted
        check_hsm_table(ds, hsm_path, hsm_cfg, overwrite)

    use_psf = bool(meta["training"].get("use_psf"))
    x = dataset_inputs(ds, use_psf, idx, check_finite=False)
    from astrotool_lens.model import check_stamps, stamp_problems

    x = check_stamps(x, meta, ds.root, per_stamp=True)   # a bad stamp: NaN, flagged, counted in n_failed
    error = stamp_problems(x)    # once: predict_array skips these stamps
    calibration = calibration_in_use(model, meta, cfg.calibrated, cfg.symmetrize, explicit=explicit_calibrated,
                                     model_name=model_dir.name, min_response=min_response or 0.0,
                                     source=Path(model_dir) / "model.json")   # before the stamps are predicted
    raw = predict_array(model, x, cfg.batch_size, cfg.symmetrize, calibrated=False, device=device,
                        problems=error).astype(float)
    pred = apply_calibration(model, raw) if calibration else raw
    mname = model_dir.name
    # predict's suffixes: --no-symmetrize adds _nosym, --raw _raw, so that a run in another mode replaces
    # neither the default run's report nor its table (not predict's <dataset>_<model>: the subset is named)
    mode = ("" if cfg.symmetrize else "_nosym") + ("" if cfg.calibrated else "_raw")
    pred_path = Path(predictions_dir) / f"{ds.stem}_{mname}_{subset}{mode}.parquet"
    write_parquet(pa.table({"index": idx, "g1": pred[:, 0], "g2": pred[:, 1], "raw_g1": raw[:, 0],
                            "raw_g2": raw[:, 1], "true_g1": g1, "true_g2": g2,
                            "flag": (error != "").astype(np.int8), "error": error}), pred_path,
                  metadata={"dataset": ds.stem, "model": mname, "subset": subset, "symmetrize": cfg.symmetrize,
                            "calibration": calibration}, descriptions=PREDICTION_COLUMNS,
                  command=running_command("lens evaluate"))
    n_flagged = int(np.count_nonzero(error != ""))
    if n_flagged == len(error) and len(error):   # nothing to score: the input is bad
        from astrotool.errors import AstroError
        from astrotool_lens.predict import flagged_message

        raise AstroError(f"{ds.root}: no stamp of the {len(error)} evaluated could be predicted "
                         f"({flagged_message(error, counts_only=True)}; written with NaN and flag 1 to {pred_path})",
                         exit_code=2)
    if n_flagged and log:
        from astrotool_lens.predict import flagged_message

        log.warning("%s: %s", ds.stem, flagged_message(error).replace("see column error",
                                                                      f"see column error of {pred_path.name}"))

    estimates = {"CNN": (pred[:, 0], pred[:, 1])}
    if calibration:
        estimates["CNN raw"] = (raw[:, 0], raw[:, 1])
    if methods:
        t = hsm_estimates(ds, hsm_path, hsm_cfg, mapper, log, overwrite)
        rows = table_rows(t.column("index").to_numpy(), idx)
        if (rows < 0).any():
            from astrotool.errors import InputError

            lost = idx[rows < 0]
            raise InputError(hsm_path, f"no row for {len(lost)} of the {len(idx)} evaluated stamps (stamp "
                                       f"{int(lost[0])}); delete it or run `astro --overwrite lens measure`")
        estimates.update(table_estimates(t, rows, methods, field))

    results = {name: estimator_metrics(g1, g2, e1, e2, field, cfg.q_sigma2_min) for name, (e1, e2) in estimates.items()}
    plots = []
    stem = report_stem(ds.stem, mname, subset, mode)
    if not cfg.plots:   # an earlier run's figures would sit beside a report they do not show
        for name in ("pred-vs-true", "bias-vs-snr", "bias-vs-hlr"):
            (Path(reports_dir) / f"{stem}_{name}.png").unlink(missing_ok=True)
    else:
        rd = Path(reports_dir)
        title = f"{ds.stem} ({subset}, {len(idx)} stamps), model {mname}"
        lim = float(np.nanmax(np.abs(np.concatenate([g1, g2])))) * 1.3 or 0.1   # one range for g1 and g2
        plots.append(str(plot_pred_vs_true(rd / f"{stem}_pred-vs-true.png", (g1, g2), estimates, labels=("g1", "g2"),
                                           title=title, lim=lim, symmetric=True)))
    binned, notes = {}, calibration_notes(results, subset)
    for col, label, unit in (("snr", "S/N", ""), ("hlr", "half-light radius", "arcsec")):
        by = np.asarray(truth[col], float)[idx]
        binned[col] = {name: binned_bias(g1, g2, e1, e2, by, cfg.bins, field) for name, (e1, e2) in estimates.items()}
        if cfg.plots:
            plot = plot_bias_vs(rd / f"{stem}_bias-vs-{col}.png", label, unit, binned[col], title)
            if plot is None:
                (rd / f"{stem}_bias-vs-{col}.png").unlink(missing_ok=True)     # an earlier run's, now wrong
                notes.append(f"bias vs {label} not plotted: the stamps fill one {label} bin "
                             f"(values in the report's binned.{col})")
            else:
                plots.append(str(plot))
    n_shears = len(np.unique(np.stack([g1, g2], axis=1), axis=0))
    field_means = None
    if n_shears <= MAX_FIELD_MEANS:   # few fields: each one's mean is what a constant-shear test reads
        pair = np.asarray(truth["pair"])[idx] if ds.manifest.get("ring") else None   # errors of the pair means
        field_means = {name: shear_field_means(g1, g2, e1, e2, pair) for name, (e1, e2) in estimates.items()}
    notes[:0] = response_notes(results, mname, "CNN raw" if calibration else "CNN", min_response) \
        + few_fields_notes(results, field is not None)
    report = {
        "dataset": ds.stem, "model": mname, "subset": subset, "n": int(len(idx)),
        "target": meta["training"].get("target"), "symmetrize": cfg.symmetrize,
        "bias_fit": "per constant-shear field" if field is not None else "per stamp",
        "calibration": calibration,
        "estimators": results, "field_means": field_means, "binned": binned, "notes": notes, "plots": plots, "predictions": str(pred_path),
    }
    report_path = Path(reports_dir) / f"{stem}_metrics.json"
    write_json_atomic(report_path, report)
    if subset != "test":
        remove_old_report(Path(reports_dir), ds.stem, mname, subset, mode, log)
    report["report"] = str(report_path)
    return report


def report_stem(dataset: str, model: str, subset: str, mode: str = "") -> str:
    """The stem of ``evaluate``'s report and plots: ``<dataset>_<model><mode>`` for the test split,
    ``<dataset>_<model>_all<mode>`` for every stamp, as its prediction table names the subset, so that a
    ``--split all`` run replaces neither the test split's report nor its plots (``mode``: ``_nosym``, ``_raw``)."""
    return f"{dataset}_{model}{'' if subset == 'test' else '_' + subset}{mode}"


def remove_old_report(reports_dir: Path, dataset: str, model: str, subset: str, mode: str = "",
                      log=None) -> Path | None:
    """Remove the test split's name, ``<dataset>_<model><mode>_metrics.json``, and its plots when the report
    there says ``subset`` (not ``test``): one of every stamp written before such reports had a name of their
    own (:func:`report_stem`), which would now read as the test split's. A test split's report, or one that
    cannot be read, is kept. Returns the path removed, if any."""
    import json

    stem = report_stem(dataset, model, "test", mode)
    path = reports_dir / f"{stem}_metrics.json"
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(old, dict) or old.get("subset") != subset:
        return None
    path.unlink(missing_ok=True)
    for name in ("pred-vs-true", "bias-vs-snr", "bias-vs-hlr"):
        (reports_dir / f"{stem}_{name}.png").unlink(missing_ok=True)
    if log:
        log.info("removed %s and its plots: a report of subset %r written before that subset's reports were "
                 "named %s_metrics.json", path, subset, report_stem(dataset, model, subset, mode))
    return path


def response_notes(results: dict, model: str, name: str = "CNN", min_response: float | None = None) -> list[str]:
    """A note when the raw CNN (``results[name]``) hardly responds to shear: a fitted ``1 + m1`` or ``1 + m2``
    below ``min_response`` (``lens.calibrate.min_response``; :func:`astrotool_lens.calibrate.low_response`,
    the test ``calibrate`` refuses a fit with). None without finite m (fewer than 3 fields)."""
    from astrotool_lens.calibrate import low_response

    if min_response is None:
        from astrotool_lens.config import CalibrateConfig

        min_response = CalibrateConfig().min_response
    r = results.get(name)
    if r is None or not (np.isfinite(r["m1"]) and np.isfinite(r["m2"])):
        return []
    low = low_response(r, min_response)
    if not low:
        return []
    return [f"{name}: {low}, below lens.calibrate.min_response = {min_response:g}: model {model!r} hardly "
            "responds to shear (m near -1), so its m, c and Q say little, and `lens calibrate` would refuse it; "
            "train it longer or larger"]


def few_fields_notes(results: dict, fields: bool = True) -> list[str]:
    """A note per number of fields below 3 that estimators fitted m and c on (``n_fields``: the fields, or the
    stamps of a per-stamp fit, that still have an estimate), naming the estimators when not all share it."""
    groups: dict[int, list[str]] = {}
    for name, r in results.items():
        if r["n_fields"] < 3:
            groups.setdefault(int(r["n_fields"]), []).append(name)
    unit = "constant-shear field(s)" if fields else "stamp(s) with a shear of its own"
    notes = []
    for n, names in sorted(groups.items()):
        who = "" if len(names) == len(results) else f" ({', '.join(names)})"
        notes.append(f"{n} {unit}{who}; m and c need at least 3 with estimates (ring pairs or fields of one "
                     "shear each): see each field's mean shear ± standard error (field_means)")
    return notes


SUMMARY_KEYS = ("rmse_g1", "rmse_g2", "m1", "m1_err", "m2", "m2_err", "c1", "c1_err", "c2", "c2_err", "q", "n_failed")
"""The metrics of each estimator ``astro lens evaluate`` prints (all of them: ``--json``)."""


def summary_rows(report: dict) -> list[dict]:
    """One record per estimator (``estimator`` and :data:`SUMMARY_KEYS`, 4 significant digits), the table
    ``astro lens evaluate`` prints."""
    def num(v):
        return float(f"{v:.4g}") if isinstance(v, float) else v

    return [{"estimator": name, **{k: num(r.get(k)) for k in SUMMARY_KEYS}} for name, r in report["estimators"].items()]
