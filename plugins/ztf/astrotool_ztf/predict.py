"""``astro ztf predict``: class probabilities of ingested alerts, per alert and per object.

The alerts go through the preprocessing of :mod:`astrotool_ztf.prepare` with
the checkpoint's crop and feature statistics, then the classifier with its
temperature (calibrated probabilities). An object's probabilities are the
normalised product of its alerts' (the sum of log-probabilities: each alert is
independent evidence); its first alert's are given too, the single-alert
answer ALeRCE deploys. Alerts whose stamps are all NaN get no prediction (NaN)
and are counted; ``stamps_ok`` (from the alert table) is false for an alert with a
missing or undecodable stamp, predicted from the others.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__docformat__ = "numpy"


def alert_descriptions(classes) -> dict:
    """Column descriptions of predict's per-alert table of a model of ``classes``."""
    from astrotool_ztf.autoencoder import RECON_ERROR

    return {"source": "alert table the alert was read from",
            "stamps_ok": "all three stamps decoded (false: a blank stamp, predicted from the others)",
            **{f"p_{c}": f"calibrated probability of the class {c}" for c in classes},
            "class": "most probable class ('': no prediction)", "p_max": "calibrated probability of that class",
            "recon_error": RECON_ERROR}


def object_descriptions(classes) -> dict:
    """Column descriptions of predict's per-object table (:func:`per_object`) of a model of ``classes``."""
    return {"n_alerts": "alerts of the object", "n_predicted": "of them with a prediction",
            **{f"p_{c}": f"probability of the class {c}: normalised product of the alerts'" for c in classes},
            "class": "most probable class ('': no prediction)",
            "class_first_alert": "most probable class of the object's first alert (earliest jd in the inputs; "
                                 "'': that alert has no prediction)"}


def alert_inputs(alerts_path, stamps_path, meta: dict):
    """The table, model inputs and a usable-row mask of one ingested alert file (checkpoint's preprocessing)."""
    from astrotool.errors import InputError
    from astrotool_ztf.ingest import read_stamps
    from astrotool_ztf.prepare import crop_centre, features, normalise_stamps, read_alert_table, standardise

    table = read_alert_table(alerts_path)
    stamps = read_stamps(stamps_path)
    if len(stamps["candid"]) != len(table) or not np.array_equal(stamps["candid"], table["candid"].to_numpy()):
        raise InputError(stamps_path, f"does not hold the stamps of {Path(alerts_path).name} in its order "
                                      "(ingest again)")
    crop, side = int(meta["crop"]), stamps["science"].shape[-1]
    if crop > side:
        raise InputError(stamps_path, f"stamps of {side} px; the model crops {crop} px (ingest again with "
                                      f"ztf.ingest.stamp_size = {crop} or more)")
    raw = [crop_centre(stamps[k], crop) for k in ("science", "template", "difference")]
    usable = np.isfinite(np.stack(raw, axis=1)).any(axis=(1, 2, 3))  # alerts with at least one pixel
    x = normalise_stamps(*raw)
    f = standardise(features(table), meta["feature_mean"], meta["feature_std"])
    return table, x, f, usable


def input_identity(alerts_path, stamps_path) -> str | None:
    """What identifies an ingested input for predict's record: its alerts (``candid``), stamp side and the
    ingest version that placed the stamps, not when it was ingested (None: unreadable, :func:`predict_file`
    names the problem)."""
    import hashlib

    import pyarrow.parquet as pq

    from astrotool.io.hdf5 import open_h5

    try:
        candid = pq.read_table(alerts_path, columns=["candid"])["candid"].to_numpy().astype("<i8")
        with open_h5(stamps_path) as h5:
            side = h5.attrs.get("stamp_size")
            version = int(h5.attrs.get("ingest_version", 1))
    except Exception:  # noqa: BLE001 - any unreadable input is reported by predict_file
        return None
    return (f"candid sha256 {hashlib.sha256(candid.tobytes()).hexdigest()[:16]}, {len(candid)} alerts, "
            f"stamps {side} px, ingest version {version}")


OTHER_PREDICTIONS = ("made with other inputs, model, autoencoder or engine; use --overwrite to replace it, or "
                     "--name")
"""What a refusal to replace predictions made otherwise says to do."""


def check_models(table, models: dict) -> None:
    """Refuse predictions at ``table`` made with other ``models`` (model, autoencoder, their weights, engine) by
    its record, without reading any input: a ``--shard`` task's check before its work (the inputs are compared
    by the task that writes the tables).

    Raises
    ------
    astrotool.made_with.SettingsChanged
        Other models.
    """
    from astrotool import made_with

    old = (made_with.read(table) or {}).get("settings")
    if old is None:   # no record: the task that writes the tables decides
        return
    new = made_with.record(models)["settings"]
    was = {k: v for k, v in old.items() if k != "inputs"}
    if was != new:
        raise made_with.SettingsChanged(table, made_with.changes(was, new), hint=OTHER_PREDICTIONS)


def predict_file(alerts_path, stamps_path, model, meta: dict, batch_size: int = 256, device: str | None = None,
                 autoencoder=None, autoencoder_device: str | None = None):
    """Per-alert predictions of one ingested file: a DataFrame and the alerts/s reached.

    ``model`` is the torch classifier (its logits are divided by the checkpoint's temperature), or its ONNX
    export (``astro ztf export``: calibrated probabilities, temperature included), as a path or an
    ``onnxruntime.InferenceSession``.
    With an ``autoencoder`` (a :class:`~astrotool_ztf.model.StampAutoencoder`, 21 px stamps) the column
    ``recon_error`` holds its mean squared reconstruction error per pixel: an anomaly score.
    """
    import pandas as pd

    from astrotool_ztf.classify import run_logits, softmax

    table, x, f, usable = alert_inputs(alerts_path, stamps_path, meta)
    classes = list(meta["classes"])
    probs = np.full((len(table), len(classes)), np.nan)
    rate = None
    if usable.any():
        out, pred = run_logits(model, x[usable], f[usable], batch_size, device)
        onnx = not hasattr(model, "parameters")   # the export's output: probabilities, temperature included
        probs[usable] = out if onnx else softmax(out, float(meta["temperature"]))
        rate = float(pred.samples_per_s)
    out = pd.DataFrame({"objectId": table["objectId"].astype(str), "candid": table["candid"].to_numpy(np.int64),
                        "jd": table["jd"].to_numpy(float), "source": Path(alerts_path).name,
                        "stamps_ok": table["stamps_ok"].astype("boolean").fillna(False).to_numpy(bool)
                        if "stamps_ok" in table else usable})
    for j, c in enumerate(classes):
        out[f"p_{c}"] = probs[:, j]
    out["class"] = [classes[int(np.argmax(p))] if np.isfinite(p).all() else "" for p in probs]
    out["p_max"] = np.nanmax(np.where(np.isfinite(probs), probs, -1), axis=1).clip(0, None)
    out.loc[~usable, "p_max"] = np.nan
    if autoencoder is not None:
        out["recon_error"] = reconstruction_error(autoencoder, x, usable, autoencoder_device or device)
    return out, rate


def per_object(alerts, classes):
    """One row per objectId: the normalised product of its alerts' probabilities, the first alert's class, counts.

    The first alert is the object's earliest (``jd``) in ``alerts``, predicted or not: its class is the
    single-alert answer to the first detection, ``""`` where that alert has no prediction (no usable stamp),
    not the class of a later alert. Alerts of the same ``jd`` are ordered by ``candid`` (the lowest is the first,
    whatever the rows' order); an alert without a ``jd`` comes last. An alert found in several inputs (the same
    ``candid``) counts once.
    """
    import pandas as pd

    if "candid" in alerts:
        alerts = alerts.drop_duplicates("candid")
    cols = [f"p_{c}" for c in classes]
    rows = []
    order = ["jd", "candid"] if "candid" in alerts else ["jd"]
    for oid, g in alerts.sort_values(order, kind="stable", na_position="last").groupby("objectId", sort=True):
        ok = g[cols].notna().all(axis=1)
        p = g.loc[ok, cols].to_numpy(float)
        row = {"objectId": oid, "n_alerts": len(g), "n_predicted": int(ok.sum())}
        if len(p):
            logp = np.log(np.clip(p, 1e-12, None)).sum(axis=0)
            comb = np.exp(logp - logp.max())
            comb /= comb.sum()
            row.update({c: float(v) for c, v in zip(cols, comb)})
            row["class"] = classes[int(np.argmax(comb))]
        else:
            row.update({c: np.nan for c in cols})
            row["class"] = ""
        first = g[cols].iloc[0].to_numpy(float)   # the earliest alert, whether it was predicted or not
        row["class_first_alert"] = classes[int(np.argmax(first))] if ok.iloc[0] else ""
        rows.append(row)
    return pd.DataFrame(rows)


def reconstruction_error(autoencoder, stamps: np.ndarray, usable: np.ndarray,
                         device: str | None = None) -> np.ndarray:
    """Mean squared reconstruction error per pixel of each stamp ``(N, 4, 21, 21)`` (NaN where not usable)."""
    from astrotool.errors import InputError

    from astrotool_ztf.autoencoder import encode

    if stamps.shape[-1] != 21:
        raise InputError("--autoencoder", f"the autoencoder takes 21 px stamps; the classifier's are "
                                          f"{stamps.shape[-1]}")
    err = np.full(len(stamps), np.nan)
    rows = np.flatnonzero(usable)
    err[rows] = encode(autoencoder, stamps[rows, :3], device)[1]
    return err
