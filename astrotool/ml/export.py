"""ONNX export with a parity check against torch.

:func:`export_onnx` traces a torch module to ONNX with a dynamic batch axis,
checks the graph with ``onnx.checker``, stores the caller's metadata (JSON
under the key ``astrotool``), runs the file with ONNX Runtime on the parity
inputs and compares with torch. The file appears at its final path only when
every step passed (an atomic write): a graph that does not reproduce the
model -- a data-dependent Python branch frozen by tracing, an operator
exported differently -- is refused with :class:`ParityError` and leaves
nothing behind. :func:`check_parity` runs the same comparison on an existing
file.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from astrotool.errors import AstroError

__docformat__ = "numpy"

__all__ = ["METADATA_KEY", "ParityError", "check_parity", "export_onnx", "onnx_metadata"]

METADATA_KEY = "astrotool"
"""Key of the JSON metadata in the ONNX file's ``metadata_props``."""


class ParityError(AstroError):
    """ONNX Runtime does not reproduce the torch model within tolerance."""


def _max_abs_diff(got, ref) -> float:
    got = got if isinstance(got, tuple) else (got,)
    ref = ref if isinstance(ref, tuple) else (ref,)
    if len(got) != len(ref):
        return float("inf")
    diffs = [float(np.max(np.abs(np.asarray(g, np.float64) - np.asarray(r, np.float64)))) if np.size(r) else 0.0
             for g, r in zip(got, ref)]
    return max(diffs) if diffs else 0.0


def check_parity(onnx_path: str | Path, model, inputs: np.ndarray, tol: float = 1e-5,
                 name: str | Path | None = None) -> float:
    """Largest |ONNX Runtime - torch| over ``inputs``; raise if above ``tol``.

    Parameters
    ----------
    onnx_path : path-like
        The exported file.
    model : torch.nn.Module
        The model it was exported from (run in eval mode, on its device: on a
        GPU, TF32 convolutions may differ from ONNX Runtime on the CPU by more than 1e-5).
    inputs : numpy.ndarray
        Parity inputs, first axis = samples (one batch).
    tol : float
        Largest accepted absolute difference over all outputs.
    name : path-like, optional
        File named in the error (default ``onnx_path``).

    Returns
    -------
    float
        The largest absolute difference.

    Raises
    ------
    ParityError
        Difference above ``tol`` (or NaN, or another number of outputs).
    """
    from astrotool.errors import InputError
    from astrotool.ml.predict import onnx_session, predict

    try:
        sess = onnx_session(onnx_path, "cpu")
    except InputError as exc:
        raise InputError(name or onnx_path, exc.problem) from None
    n = max(len(inputs), 1)
    ref = predict(model, inputs, batch_size=n).outputs
    got = predict(sess, inputs, batch_size=n).outputs
    diff = _max_abs_diff(got, ref)
    if not diff <= tol:
        raise ParityError(f"{name or onnx_path}: onnxruntime differs from torch by {diff:.3g} > {tol:g} "
                          f"on {len(inputs)} samples")
    return diff


def export_onnx(model, inputs: np.ndarray, out_path: str | Path, *, input_name: str = "input",
                output_names: Sequence[str] = ("output",), opset: int = 17, tol: float = 1e-5,
                metadata: dict | None = None, trace_samples: int = 2) -> dict:
    """Export a torch module to ONNX (dynamic batch) and check it against torch.

    Parameters
    ----------
    model : torch.nn.Module
        Exported in eval mode on the CPU (its mode and device are restored afterwards).
    inputs : numpy.ndarray
        Parity inputs (n, ...): realistic samples, since a traced graph is
        only checked where it is run. The first ``trace_samples`` are traced.
    out_path : path-like
        Final ``.onnx`` path; written atomically, only when parity holds.
    input_name, output_names
        Names of the graph's input and outputs (the batch axis of each is dynamic).
    opset : int
        ONNX opset version.
    tol : float
        Largest accepted |onnxruntime - torch| over all outputs.
    metadata : dict, optional
        Stored as JSON under :data:`METADATA_KEY` (read it with :func:`onnx_metadata`).
    trace_samples : int

    Returns
    -------
    dict
        ``path, max_abs_diff, tol, samples, opset``.

    Raises
    ------
    ParityError
        ONNX Runtime differs from torch by more than ``tol``; nothing is written.
    astrotool.errors.AstroError
        The folder is not writable (the message names ``out_path``).
    """
    import onnx
    import torch

    out_path = Path(out_path)
    inputs = np.ascontiguousarray(inputs)
    was_training = model.training
    # traced and compared on the CPU, in float32 (a GPU's TF32 convolutions would fail a 1e-5 parity)
    dev = next((p.device for p in model.parameters()), torch.device("cpu"))
    model.eval().to("cpu")
    example = torch.from_numpy(inputs[:max(1, trace_samples)])
    names = list(output_names)
    try:
        from astrotool.workspace import atomic_path

        with atomic_path(out_path) as tmp:
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")
                torch.onnx.export(model, (example,), str(tmp), dynamo=False, opset_version=opset,
                                  input_names=[input_name], output_names=names,
                                  dynamic_axes={k: {0: "n"} for k in [input_name, *names]})
            proto = onnx.load(str(tmp))
            try:
                onnx.checker.check_model(proto)
            except onnx.checker.ValidationError as exc:
                raise AstroError(f"{out_path}: the exported graph is not valid ONNX ({exc})") from None
            if metadata is not None:
                entry = proto.metadata_props.add()
                entry.key, entry.value = METADATA_KEY, json.dumps(metadata, default=str)
                onnx.save(proto, str(tmp))
            diff = check_parity(tmp, model, inputs, tol, name=out_path)
    except OSError as exc:
        raise AstroError(f"{out_path}: cannot write the ONNX file ({exc.strerror or exc})") from None
    finally:
        model.train(was_training).to(dev)
    return {"path": str(out_path), "max_abs_diff": diff, "tol": tol, "samples": int(len(inputs)), "opset": opset}


def onnx_metadata(path: str | Path) -> dict:
    """The JSON metadata that :func:`export_onnx` stored in an ONNX file ({} if none).

    Raises
    ------
    astrotool.errors.InputError
        Missing or unreadable file.
    """
    import onnx

    from astrotool.errors import InputError

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such ONNX file")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - onnx raises protobuf's DecodeError among others
        raise InputError(path, f"not a readable ONNX file ({exc})") from None
    props = {p.key: p.value for p in proto.metadata_props}
    return json.loads(props[METADATA_KEY]) if METADATA_KEY in props else {}
