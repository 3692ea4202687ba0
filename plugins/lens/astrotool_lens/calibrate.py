"""Calibrating the CNN shear estimator on constant-shear simulations.

A regression network trained with a mean-square loss returns, per galaxy, the
posterior mean of the target. Averaged over a field it responds to shear with
a slope that is close to, but not exactly, one: the multiplicative bias m is
of order 1e-2 for the LensNet setup, and it varies from one training run to
the next by a comparable amount. Weak-lensing surveys calibrate their shear
estimators the same way for the same reason (image simulations matched to the
data; e.g. KiDS, HSC, DES).

``calibrate`` fits g_est - g_true = m g_true + c per component over the
constant-shear fields of a simulated dataset (:func:`~astrotool_lens.evaluate.fit_bias`)
and stores m and c in the checkpoint (buffers ``calib_m``, ``calib_c`` and
``model.json["calibration"]``). Predictions then return ``(g - c) / (1 + m)``.

The calibration is only as good as the match between the simulations and the
data (PSF, S/N, size, profile), and it must be checked on fields that were not
used to fit it: evaluate on a dataset drawn with another seed.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import numpy as np

__docformat__ = "numpy"


def flat_response(fit: dict, sigmas: float = 3.0) -> str | None:
    """What makes a fitted calibration unusable (``"1 + m1 = 1.6e-05 +- 0.096"``): ``1 + m`` of a component not
    above ``sigmas`` times its error (the calibrated shear ``(g - c) / (1 + m)`` then divides by noise, or flips
    its sign); None where both are usable, or ``sigmas`` is 0."""
    bad = [f"1 + m{i} = {1 + fit[f'm{i}']:.3g} +- {fit[f'm{i}_err']:.2g}" for i in (1, 2)
           if sigmas and not 1 + fit[f"m{i}"] > sigmas * fit[f"m{i}_err"]]
    return "; ".join(bad) or None


def low_response(fit: dict, floor: float = 0.1) -> str | None:
    """What makes a fitted calibration unusable however precise it is (``"1 + m1 = 8.7e-05"``): ``1 + m`` of a
    component below ``floor`` (the model hardly responds to shear, and ``(g - c) / (1 + m)`` multiplies its
    output by ``1 / (1 + m)``); None where both reach it, or ``floor`` is 0."""
    bad = [f"1 + m{i} = {1 + fit[f'm{i}']:.3g}" for i in (1, 2) if floor and not 1 + fit[f"m{i}"] >= floor]
    return "; ".join(bad) or None


def _mode(symmetrize: bool) -> str:
    return "--symmetrize" if symmetrize else "--no-symmetrize"


def calibrate_model(ds, model_dir, cfg, log=None, device: str = "cpu") -> dict:
    """Measure m and c of a model on constant-shear fields and store them in its checkpoint.

    Parameters
    ----------
    ds : ShearDataset
        Constant-shear simulations (``field_size`` > 1, ideally ring pairs).
    model_dir : path-like
        Checkpoint folder; ``model.safetensors`` and ``model.json`` are rewritten.
    cfg : CalibrateConfig
    log : logging.Logger, optional
    device : str
        Where the CNN runs (``cpu``, ``cuda``, ``cuda:N``).

    Returns
    -------
    dict
        ``model, dataset`` (its manifest's name), ``dataset_folder`` (the folder calibrated on),
        ``dataset_path, n`` (stamps fitted), ``n_flagged`` (blank stamps, not predicted nor fitted),
        ``n_fields, m1, m1_err, m2, m2_err, c1, c1_err, c2, c2_err, previous`` (the calibration it
        replaces, or None; one fitted in the other symmetrize mode is named in a warning).

    Raises
    ------
    astrotool.errors.InputError
        The dataset has no constant-shear fields (or fewer than 3), or the
        fitted |m| exceeds ``cfg.max_abs_m`` (the model does not fit these
        simulations), or a fitted ``1 + m`` is not above ``cfg.min_response_sigmas`` errors
        (:func:`flat_response`) or is below ``cfg.min_response`` (:func:`low_response`); nothing is written.
    """
    import torch

    from astrotool.errors import InputError
    from astrotool.ml.checkpoint import save_checkpoint
    from astrotool_lens.evaluate import fields_of, fit_bias
    from astrotool_lens.model import check_stamps, load_estimator, predict_array
    from astrotool_lens.train import dataset_inputs

    model_dir = Path(model_dir)
    model, meta = load_estimator(model_dir, device=device)
    field = fields_of(ds)
    if field is None:
        raise InputError(ds.root, "calibration needs constant-shear fields; generate the dataset with "
                                  "--preset fields (or --field-size N > 1)")
    n_fields = len(np.unique(field))
    if n_fields < 3:
        raise InputError(ds.root, f"{n_fields} constant-shear field(s); calibration needs at least 3")
    x = check_stamps(dataset_inputs(ds, bool(meta["training"].get("use_psf"))), meta, ds.root)
    raw = predict_array(model, x, cfg.batch_size, cfg.symmetrize, calibrated=False, device=device)
    truth = ds.truth
    fits = [fit_bias(np.asarray(truth[f"g{i}"]), raw[:, i - 1].astype(float), field) for i in (1, 2)]
    used = np.isfinite(raw).all(axis=1)   # a blank stamp is not run (NaN) and not fitted
    result = {"model": model_dir.name, "dataset": ds.name, "dataset_folder": ds.stem,
              "dataset_path": str(ds.root.resolve()), "n": int(used.sum()), "n_flagged": int((~used).sum()),
              "n_fields": int(n_fields), "symmetrize": cfg.symmetrize}
    if not used.any():
        raise InputError(ds.root, f"none of the {len(x)} stamps could be predicted (blank stamps): nothing to fit")
    fitted = min(f["n_fields"] for f in fits)   # fields left with estimates once blank stamps are out
    if fitted < 3:
        raise InputError(ds.root, f"{fitted} of {n_fields} constant-shear fields hold stamps that could be "
                                  "predicted (the others are blank); calibration needs at least 3")
    result["n_fields"] = int(fitted)
    if log and not used.all():
        log.warning("%d of %d stamps not predicted (blank): left out of the fit", int((~used).sum()), len(x))
    for i, f in zip((1, 2), fits):
        result.update({f"m{i}": f["m"], f"m{i}_err": f["m_err"], f"c{i}": f["c"], f"c{i}_err": f["c_err"]})
    worst = max(abs(result["m1"]), abs(result["m2"]))
    if not np.isfinite(worst) or worst > cfg.max_abs_m:
        raise InputError(ds.root, f"fitted |m| = {worst:.3g} exceeds lens.calibrate.max_abs_m = {cfg.max_abs_m}: "
                                  f"model {model_dir.name!r} does not match these simulations; nothing written")
    flat = flat_response(result, cfg.min_response_sigmas)
    if flat:
        raise InputError(ds.root, f"{flat}, not above lens.calibrate.min_response_sigmas = "
                                  f"{cfg.min_response_sigmas:g} errors: model {model_dir.name!r} hardly responds to "
                                  "shear, and dividing by 1 + m would blow its estimates up; nothing written")
    low = low_response(result, cfg.min_response)
    if low:
        raise InputError(ds.root, f"{low}, below lens.calibrate.min_response = {cfg.min_response:g}: model "
                                  f"{model_dir.name!r} hardly responds to shear, and dividing by 1 + m would blow "
                                  "its estimates up; nothing written")
    previous = meta.get("calibration")
    if previous and previous.get("symmetrize") != cfg.symmetrize and log:   # a model holds one calibration
        was = _mode(previous["symmetrize"]) if previous.get("symmetrize") is not None else "no recorded mode"
        log.warning("%s: this calibration (%s) replaces the one fitted with %s on %s: %s runs now give raw "
                    "estimates (calibrate in that mode to have one there instead)", model_dir.name,
                    _mode(cfg.symmetrize), was, previous.get("dataset_folder") or previous.get("dataset"),
                    _mode(not cfg.symmetrize))
    with torch.no_grad():
        model.calib_m.copy_(torch.tensor([result["m1"], result["m2"]], dtype=torch.float32))
        model.calib_c.copy_(torch.tensor([result["c1"], result["c2"]], dtype=torch.float32))
    meta = {k: v for k, v in meta.items() if k not in ("weights_sha256", "created_utc")}
    meta["calibration"] = {**result, "created_utc": datetime.now(timezone.utc).isoformat(),
                           "model": "g_calibrated = (g - c) / (1 + m), per component"}
    save_checkpoint(model_dir, model, meta)
    stale = model_dir / "model.onnx"
    if stale.exists() and log:
        from astrotool.context import astro_command
        from astrotool.ml.commands import model_option

        log.warning("%s predates this calibration; run `%s` again", stale,
                    astro_command("lens", "export", "--model", model_option(model_dir, "lens")))
    if log:
        log.info("calibration of %s on %s (%d fields): m1 %+.2e m2 %+.2e c1 %+.1e c2 %+.1e", model_dir.name,
                 ds.stem, n_fields, result["m1"], result["m2"], result["c1"], result["c2"])
    return {**result, "previous": previous}
