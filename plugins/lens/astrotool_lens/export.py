"""ONNX export of a trained estimator with an onnxruntime parity check.

The exported graph is the whole :class:`~astrotool_lens.model.ShearEstimator`:
raw stamps (n, C, S, S) float32 in, shear (n, 2) out, with the normalisation,
the output scaling and (by default) the 8-fold symmetrisation inside, so no
constants have to travel separately. ``model.json`` is copied into the ONNX
metadata under the key ``astrotool``. The export, its parity check and its
atomic write are :func:`astrotool.ml.export.export_onnx`'s; this module picks
the lens inputs and names.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from astrotool.seeding import derive_seed

__docformat__ = "numpy"


def parity_inputs(meta: dict, n: int, seed: int = 0) -> np.ndarray:
    """Inputs for the parity check: stamps of the training dataset when it is
    still there, else noisy Gaussian blobs of the right size."""
    kw = meta["architecture"]["kwargs"]
    s, c = int(kw["stamp_size"]), int(kw["in_channels"])
    tr = meta.get("training", {})
    path = tr.get("dataset_path")
    if path and Path(path).is_dir():
        try:
            from astrotool_lens.data import ShearDataset
            from astrotool_lens.train import dataset_inputs

            ds = ShearDataset(path)
            if ds.stamp_size == s:
                return dataset_inputs(ds, c == 2, np.arange(min(n, ds.n)))
        except Exception:  # noqa: BLE001 - fall back to synthetic stamps
            pass
    rng = np.random.default_rng(derive_seed(seed, "parity_stamps"))
    yy, xx = np.mgrid[:s, :s] - (s - 1) / 2
    out = np.empty((n, c, s, s), np.float32)
    for i in range(n):
        a, b = rng.uniform(1.5, s / 6, 2)
        th = rng.uniform(0, np.pi)
        u = xx * np.cos(th) + yy * np.sin(th)
        v = -xx * np.sin(th) + yy * np.cos(th)
        out[i, 0] = np.exp(-0.5 * ((u / a) ** 2 + (v / b) ** 2)) + rng.normal(0, 0.01, (s, s))
        if c == 2:
            out[i, 1] = np.exp(-0.5 * (xx**2 + yy**2) / 2.0**2)
    return out


def export_onnx(model_dir: str | Path, out_path: str | Path | None = None, opset: int = 17,
                symmetrize: bool = True, parity_samples: int = 64, tol: float = 1e-5,
                calibrated: bool = True, min_response: float = 0.1) -> dict:
    """Export a checkpoint to ONNX and compare onnxruntime with torch.

    Parameters
    ----------
    model_dir : path-like
        Checkpoint folder.
    out_path : path-like, optional
        Default ``<model_dir>/model.onnx``.
    opset : int
    symmetrize : bool
        Include the 8-fold symmetrisation in the graph.
    parity_samples : int
        Stamps compared.
    tol : float
        Largest accepted absolute difference in the raw (g1, g2); with a calibration in the graph,
        ``tol / |1 + m|`` of the calibrated outputs, which amplify the raw ones' float noise so
        (:func:`parity_tolerance`).
    calibrated : bool
        Include the checkpoint's calibration (``astro lens calibrate``) in the graph.
    min_response : float
        A calibration whose ``1 + m1`` or ``1 + m2`` is below this is refused (``lens.calibrate.min_response``).

    Returns
    -------
    dict
        ``path, max_abs_diff, tol, samples, opset, symmetrize, calibrated``.

    Raises
    ------
    astrotool.ml.export.ParityError
        Parity worse than ``tol`` (the file is not written).
    """
    from astrotool.ml.export import export_onnx as export_checked_onnx

    model, x, out_path, kwargs = export_plan(model_dir, out_path, opset, symmetrize, parity_samples, tol, calibrated,
                                             min_response=min_response)
    res = export_checked_onnx(model, x, out_path, **kwargs)
    return {**res, **{k: kwargs["metadata"]["onnx"][k] for k in ("symmetrize", "calibrated")}}


def parity_tolerance(tol: float, calibration: dict | None, min_response: float = 0.1,
                     source: str | Path = "model.json") -> float:
    """The parity tolerance of outputs ``(g - c) / (1 + m)``: ``tol`` of raw ones divided by the smallest
    ``|1 + m_i|`` (below 1: a calibration that shrinks differences leaves ``tol`` as it is), so at most
    ``tol / min_response``.

    Raises
    ------
    astrotool.errors.InputError
        A ``|1 + m_i|`` below ``min_response`` (``lens.calibrate.min_response``, which ``calibrate`` refuses
        since; a calibration stored before) or, with ``min_response`` 0, below 1e-6: the calibrated outputs
        are the raw ones' float noise blown up, and so would be the tolerance. ``source`` (the model's
        ``model.json``) is named.
    """
    if not calibration:
        return tol
    from astrotool_lens.calibrate import low_response

    scale = min(1.0, *(abs(1.0 + float(calibration[k])) for k in ("m1", "m2")))
    low = low_response(calibration, min_response)   # the floor calibrate and validate apply
    if low or not scale >= 1e-6:
        from astrotool.errors import InputError

        detail = low or f"1 + m = {scale:.3g}, below 1e-6"
        raise InputError(source, f"its calibration's {detail} (lens.calibrate.min_response = {min_response:g}): a "
                                 "model that hardly responds to shear; calibrate again, or export with --raw")
    return tol / scale


def export_plan(model_dir: str | Path, out_path: str | Path | None = None, opset: int = 17,
                symmetrize: bool = True, parity_samples: int = 64, tol: float = 1e-5, calibrated: bool = True,
                explicit: bool = False, min_response: float = 0.1):
    """What :func:`export_onnx` hands to :func:`astrotool.ml.export.export_onnx`.

    The calibration goes into the graph only in the symmetrize mode it was fitted in; ``explicit``
    (``--calibrated`` given) refuses the other mode instead of exporting raw with a warning; a calibration
    whose ``1 + m`` is below ``min_response`` is refused (:func:`parity_tolerance`).

    Returns
    -------
    model : ShearEstimator
        With ``symmetrize`` and ``calibrated`` set.
    inputs : numpy.ndarray
        Parity stamps (:func:`parity_inputs`).
    out_path : pathlib.Path
    kwargs : dict
        ``input_name, output_names, opset, tol, metadata`` (``model.json`` plus an ``onnx`` entry).
    """
    from astrotool_lens.model import calibration_in_use, load_estimator

    model_dir = Path(model_dir)
    model, meta = load_estimator(model_dir)
    calibration = calibration_in_use(model, meta, calibrated, symmetrize, explicit=explicit,
                                     model_name=model_dir.name)   # only in the mode it was fitted in
    model.symmetrize = symmetrize
    model.calibrated = calibration is not None
    out_path = Path(out_path) if out_path else model_dir / "model.onnx"
    info = {"symmetrize": symmetrize, "calibrated": bool(calibration),
            "input": "stamps (n, C, S, S) raw float32", "output": "g (n, 2) reduced shear"}
    tol = parity_tolerance(tol, calibration, min_response, model_dir / "model.json")
    kwargs = {"input_name": "stamps", "output_names": ["g"], "opset": opset, "tol": tol,
              "metadata": {**meta, "onnx": info}}
    return model, parity_inputs(meta, parity_samples), out_path, kwargs
