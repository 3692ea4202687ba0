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

A model of several inputs (stamps and metadata features, a sequence and its
mask) is exported from a dict of named parity arrays (the graph's inputs take
those names, in that order) or a tuple of arrays with ``input_name`` a list of
names; ``dynamic_axes`` makes further axes dynamic (a sequence's length).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from astrotool.errors import AstroError

__docformat__ = "numpy"

__all__ = ["METADATA_KEY", "ParityError", "check_parity", "export_onnx", "onnx_metadata", "onnx_opsets"]

METADATA_KEY = "astrotool"
"""Key of the JSON metadata in the ONNX file's ``metadata_props``."""


class ParityError(AstroError):
    """ONNX Runtime does not reproduce the torch model within tolerance."""


def _as_tuple(out) -> tuple:
    if isinstance(out, tuple):
        return out
    if isinstance(out, dict):
        return tuple(out.values())
    return (out,)


def _max_abs_diff(got, ref) -> float:
    got, ref = _as_tuple(got), _as_tuple(ref)
    if len(got) != len(ref):
        return float("inf")
    diffs = [float(np.max(np.abs(np.asarray(g, np.float64) - np.asarray(r, np.float64)))) if np.size(r) else 0.0
             for g, r in zip(got, ref)]
    return max(diffs) if diffs else 0.0


def _named_inputs(inputs, input_name: str | Sequence[str]) -> dict[str, np.ndarray] | None:
    """Several model inputs as ``{name: array}`` in the model's argument order; None for a single array."""
    if isinstance(inputs, Mapping):
        named = dict(inputs)
    elif isinstance(inputs, (tuple, list)):
        names = [input_name] if isinstance(input_name, str) else list(input_name)
        if len(names) != len(inputs):
            raise ValueError(f"{len(inputs)} parity inputs need as many names in input_name, got {names}")
        named = dict(zip(names, inputs))
    else:
        if not isinstance(input_name, str):
            raise ValueError(f"one parity input array needs one input_name, got {list(input_name)}")
        return None
    if not named:
        raise ValueError("no parity inputs")
    named = {k: np.ascontiguousarray(v) for k, v in named.items()}
    lengths = {k: len(v) for k, v in named.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"the parity inputs differ in their number of samples: {lengths}")
    return named


def check_parity(onnx_path: str | Path, model, inputs, tol: float = 1e-5,
                 name: str | Path | None = None) -> float:
    """Largest |ONNX Runtime - torch| over ``inputs``; raise if above ``tol``.

    Parameters
    ----------
    onnx_path : path-like
        The exported file.
    model : torch.nn.Module
        The model it was exported from (run in eval mode, on its device: on a
        GPU, TF32 convolutions may differ from ONNX Runtime on the CPU by more than 1e-5).
    inputs : numpy.ndarray, dict or tuple of numpy.ndarray
        Parity inputs, first axis = samples (one batch). For a model of
        several inputs: a dict named as the graph's inputs, in the model's
        argument order, or a tuple in that order (the graph's inputs are
        then taken in order).
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
    if isinstance(inputs, (tuple, list)):
        graph = [f.name for f in sess.get_inputs()]
        inputs = dict(zip(graph if len(graph) == len(inputs) else [f"input{i}" for i in range(len(inputs))],
                          inputs))
    key = list(inputs) if isinstance(inputs, Mapping) else None
    count = len(next(iter(inputs.values()))) if key else len(inputs)
    n = max(count, 1)
    ref = predict(model, inputs, batch_size=n, key=key).outputs
    got = predict(sess, inputs, batch_size=n, key=key).outputs
    diff = _max_abs_diff(got, ref)
    if not diff <= tol:
        raise ParityError(f"{name or onnx_path}: onnxruntime differs from torch by {diff:.3g} > {tol:g} "
                          f"on {count} samples")
    return diff


def onnx_opsets() -> tuple[int, int]:
    """The ONNX opsets this torch's exporter writes (``dynamo=False``), lowest and highest."""
    from torch.onnx import _constants

    return _constants.ONNX_MIN_OPSET, getattr(_constants, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET",
                                              _constants.ONNX_MAX_OPSET)


def export_onnx(model, inputs, out_path: str | Path, *, input_name: str | Sequence[str] = "input",
                output_names: Sequence[str] = ("output",), opset: int = 17, tol: float = 1e-5,
                metadata: dict | None = None, trace_samples: int = 2,
                dynamic_axes: Mapping[str, Mapping[int, str]] | None = None) -> dict:
    """Export a torch module to ONNX (dynamic batch) and check it against torch.

    Parameters
    ----------
    model : torch.nn.Module
        Exported in eval mode on the CPU (its mode and device are restored afterwards).
    inputs : numpy.ndarray, dict or tuple of numpy.ndarray
        Parity inputs (n, ...): realistic samples, since a traced graph is
        only checked where it is run. The first ``trace_samples`` are traced.
        For a model of several inputs, a dict ``{name: array}`` in the
        model's argument order (the names become the graph's input names),
        or a tuple of arrays with ``input_name`` a list of names.
    out_path : path-like
        Final ``.onnx`` path; written atomically, only when parity holds.
    input_name : str or sequence of str
        Name of the graph's input (one per input for a tuple of inputs;
        ignored for a dict). The batch axis of every input and output is dynamic.
    output_names : sequence of str
        Names of the graph's outputs.
    opset : int
        ONNX opset version.
    tol : float
        Largest accepted |onnxruntime - torch| over all outputs.
    metadata : dict, optional
        Stored as JSON under :data:`METADATA_KEY` (read it with :func:`onnx_metadata`).
    trace_samples : int
    dynamic_axes : mapping, optional
        Further dynamic axes by input or output name, e.g. ``{"seq": {1: "t"},
        "mask": {1: "t"}}`` for sequences of any length (axis 0 is always
        the dynamic batch ``n``).

    Returns
    -------
    dict
        ``path, max_abs_diff, tol, samples, opset``.

    Raises
    ------
    ParityError
        ONNX Runtime differs from torch by more than ``tol``; nothing is written.
    ValueError
        Parity inputs and names that do not match, a ``dynamic_axes`` name
        that is neither an input nor an output.
    astrotool.errors.AstroError
        The folder is not writable (the message names ``out_path``).
    """
    import onnx
    import torch

    from astrotool.ml.predict import model_float_dtype

    out_path = Path(out_path)
    named = _named_inputs(inputs, input_name)
    if named is None:
        inputs = np.ascontiguousarray(inputs)
        names_in, arrays = [input_name], [inputs]
    else:
        inputs, names_in, arrays = named, list(named), list(named.values())
    names = list(output_names)
    axes = {k: {0: "n"} for k in [*names_in, *names]}
    for k, extra in (dynamic_axes or {}).items():
        if k not in axes:
            raise ValueError(f"dynamic_axes: {k!r} is neither an input ({', '.join(names_in)}) nor an output "
                             f"({', '.join(names)})")
        axes[k] = {**axes[k], **{int(a): str(label) for a, label in extra.items()}}
    from astrotool.section import MIN_ONNX_OPSET

    low, high = onnx_opsets()
    low = max(low, MIN_ONNX_OPSET)
    if not low <= opset <= high:
        raise AstroError(f"--opset {opset}: this command exports ONNX opsets {low} to {high} (with this torch)")
    was_training = model.training
    # traced and compared on the CPU, in float32 (a GPU's TF32 convolutions would fail a 1e-5 parity)
    dev = next((p.device for p in model.parameters()), torch.device("cpu"))
    model.eval().to("cpu")
    float_dtype = model_float_dtype(model)
    example = tuple(torch.from_numpy(a[:max(1, trace_samples)]) for a in arrays)
    example = tuple(t.to(float_dtype) if float_dtype is not None and t.is_floating_point() else t for t in example)
    try:
        from astrotool.workspace import atomic_path

        with atomic_path(out_path) as tmp:
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")
                from torch.onnx.errors import UnsupportedOperatorError

                try:
                    torch.onnx.export(model, example, str(tmp), dynamo=False, opset_version=opset,
                                      input_names=names_in, output_names=names, dynamic_axes=axes)
                except UnsupportedOperatorError as exc:  # an operator newer than the opset
                    raise AstroError(f"--opset {opset}: the model needs an operator this opset lacks ({exc}); "
                                     f"use a newer opset (up to {high})") from None
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
    return {"path": str(out_path), "max_abs_diff": diff, "tol": tol, "samples": int(len(arrays[0])), "opset": opset}


def check_onnx_weights(path: str | Path, meta: dict, command: str) -> dict:
    """The metadata of an ONNX export, refused unless it was exported from the checkpoint's weights.

    Parameters
    ----------
    path : path-like
        The ``.onnx`` file.
    meta : dict
        The checkpoint's ``model.json`` (its ``weights_sha256``).
    command : str
        The command that exports it, named in the messages (e.g. ``"astro lens export"``).

    Returns
    -------
    dict
        :func:`onnx_metadata`.

    Raises
    ------
    astrotool.errors.InputError
        No such file (export it first), or its metadata names other weights (the checkpoint
        was retrained or calibrated since).
    """
    from astrotool.errors import InputError

    if not Path(path).is_file():
        raise InputError(path, f"no such ONNX file (run `{command}` first)")
    info = onnx_metadata(path)
    if info.get("weights_sha256") != meta.get("weights_sha256"):
        raise InputError(path, "exported from other weights than the checkpoint beside it (retrained or "
                               f"calibrated since); run `{command}` again")
    return info


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
