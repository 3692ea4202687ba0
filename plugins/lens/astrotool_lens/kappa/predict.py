"""Predicting kappa maps with a trained U-Net (``astro lens kappa predict``).

The inputs are any epsilon map source of
:func:`astrotool_lens.kappa.sources.open_maps` (a packed set and its split, a
folder with ``EPSILON/``, a folder of ``.npy``, Datathon tarballs), streamed in
batches: memory stays at about one batch whatever the number of maps. Each
batch's input stack is built with numpy (:func:`astrotool_lens.kappa.model.model_inputs`),
run through torch or ONNX Runtime (:func:`astrotool.ml.predict.predict`), and
its maps are written at once through
:class:`~astrotool_lens.kappa.submission.PredictionWriter`: one float16
``<name>.npy`` per input name in ``lens/kappa/predictions/<run>/``, then
``<run>.zip``, the submission.

An interrupted run is resumed by running it again: maps already written by the
same model (same weights) on the same inputs are kept and skipped. Bad input
(a wrong shape or dtype, NaN) stops the run with exit 2 naming the file; the
maps written before stay.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from astrotool.errors import InputError

__docformat__ = "numpy"

__all__ = ["check_onnx", "default_model", "default_run_name", "predict_command", "predict_maps"]


def default_model(cfg) -> str:
    """``[lens.kappa.predict] model``, else the train table's model, else ``<train dataset>_unet`` ("" if none)."""
    if cfg.predict.model:
        return cfg.predict.model
    if cfg.train.model:
        return cfg.train.model
    return f"{Path(cfg.train.dataset).name}_unet" if cfg.train.dataset else ""


def default_run_name(inputs: str, model: str) -> str:
    """``<input stem>_<model>``: ``test_public.tar.gz`` and model ``sims_unet`` give ``test_public_sims_unet``."""
    from astrotool_lens.kappa.sources import source_stem

    return f"{source_stem(inputs)}_{model}"


def check_onnx(path: str | Path, meta: dict) -> None:
    """Refuse an ONNX file exported from other weights than the checkpoint's.

    Raises
    ------
    astrotool.errors.InputError
        No such file (export it first), or its metadata names other weights (the U-Net was retrained since:
        a U-Net has no calibration, which the core's message for any model also names).
    """
    from astrotool.errors import InputError
    from astrotool.ml.export import check_onnx_weights, onnx_metadata

    if Path(path).is_file() and onnx_metadata(path).get("weights_sha256") != meta.get("weights_sha256"):
        raise InputError(path, "exported from other weights than the checkpoint beside it (the U-Net was "
                               "retrained since); run `astro lens kappa export` again")
    check_onnx_weights(path, meta, "astro lens kappa export")


def predict_maps(runner, maps, meta: dict, writer, batch_size: int, device: str | None = None,
                 only: set | None = None):
    """Predict the maps of a MapSet the writer does not hold yet, writing each batch as it comes.

    Parameters
    ----------
    runner : torch.nn.Module or path-like
        The U-Net (:func:`~astrotool_lens.kappa.model.load_unet`) or its ONNX file.
    maps : MapSet
        Epsilon maps (:func:`astrotool_lens.kappa.sources.open_maps`).
    meta : dict
        The checkpoint's ``model.json`` (how to build the input stack).
    writer : PredictionWriter
    batch_size : int
        Maps per forward pass (the source's batches, less the maps already written).
    device : str, optional
    only : set of str, optional
        Predict only these names (a ``--shard`` task's share); default all.

    Returns
    -------
    astrotool.ml.predict.Predictions
        Without outputs (``keep=False``); its time counts reading, building the
        inputs and the forward passes, not writing.
    """
    from astrotool.ml.predict import predict

    from astrotool_lens.kappa.model import model_inputs

    files = getattr(maps, "files", None)
    todo = [n for n in writer.missing(maps.names, files) if only is None or n in only]
    writer.begin(todo)   # a finished run about to change is no longer complete (stale maps removed)
    todo = set(todo)
    where = maps.describe()

    def batches():
        if not todo:
            return
        for names, eps in maps.iter_batches(batch_size):
            keep = [i for i, nm in enumerate(names) if nm in todo]
            if not keep:
                continue
            names = [names[i] for i in keep]
            eps = np.asarray(eps)[keep] if len(keep) < len(eps) else np.asarray(eps)
            yield model_inputs(eps, meta, source=where), names

    return predict(runner, batches(), batch_size=batch_size, device=device,
                   on_batch=lambda batch, out: writer.write(batch[1], out, files), keep=False)


def predict_command(ctx, cfg, inputs: str, runtime, split_given: bool = False) -> dict:
    """``astro lens kappa predict``: one float16 ``.npy`` per input map, and the zip.

    Parameters
    ----------
    ctx : astrotool.context.Context
    cfg : astrotool_lens.kappa.config.KappaConfig
        ``cfg.predict`` is read (and ``cfg.train`` for the default model).
    inputs : str
        Anything :func:`astrotool_lens.kappa.sources.open_maps` accepts.
    runtime : astrotool.ml.fabric.Runtime
        Its ``accelerator`` is the device (predictions in 32-bit).
    split_given : bool
        ``--split`` was given on the command line: refused (exit 2) for inputs
        without splits (folders, tarballs), whose maps are all predicted.

    Returns
    -------
    dict
        The emitted summary: input, model, engine, n, computed, kept, output, zip,
        samples_per_s (reading, input stack and forward passes), maps_per_s
        (everything, writing included), device.

    Raises
    ------
    astrotool.errors.InputError
        No such model or input, bad maps (the file named; maps already
        written stay), an ONNX file of other weights, ``split_given`` for inputs
        without splits.
    astrotool.errors.AstroError
        The run folder was made by another model or on other inputs (without
        ``--overwrite``).
    """
    from astrotool.ml import commands as mc

    from astrotool.ml.checkpoint import META_FILE, read_meta, warn_unfinished

    from astrotool_lens.kappa.model import ARCHITECTURE, load_unet
    from astrotool_lens.kappa.sources import PackedMaps, open_maps
    from astrotool_lens.kappa.submission import PredictionWriter, finish_run, shard_names

    p = cfg.predict
    mdir = mc.model_dir(ctx, "lens", default_model(cfg), stage="kappa/models", trained=True)
    if p.engine == "onnxruntime":  # torch is not needed (nor imported): the export's weights are checked
        meta = read_meta(mdir, ARCHITECTURE)
        if "inputs" not in meta:
            raise InputError(mdir / META_FILE, "no 'inputs' entry (which channels the model takes)")
        warn_unfinished(meta, mdir, "astro lens kappa train", "kappa/models")
        runner = mdir / "model.onnx"
        check_onnx(runner, meta)
    else:
        runner, meta = load_unet(mdir)
    maps = open_maps(inputs, "epsilon", ctx, split=p.split, split_given=split_given)
    run = p.name or default_run_name(inputs, mdir.name)
    folder = ctx.workspace.stage("lens", "kappa/predictions") / run
    made_by = {"model": {"name": mdir.name, "weights_sha256": meta.get("weights_sha256"),
                         "architecture": meta.get("architecture")},
               "settings": {"inputs": meta.get("inputs")}, "engine": p.engine,
               "source": maps.fingerprint(), "n": len(maps)}
    if isinstance(maps, PackedMaps):  # the split means nothing for folders and tarballs
        made_by["split"] = p.split
    only = shard_names(ctx, maps.names)   # under --shard, this task's share
    files = getattr(maps, "files", None)
    with PredictionWriter(folder, made_by, overwrite=ctx.overwrite, size=maps.size) as writer:   # an error keeps
        share = maps.names if only is None else [n for n in maps.names if n in only]   # an old run
        kept = len(share) - len([n for n in writer.missing(maps.names, files) if only is None or n in only])
        t0 = time.perf_counter()
        pred = predict_maps(runner, maps, meta, writer, p.batch_size, runtime.inference_device(p.engine), only=only)
        seconds = time.perf_counter() - t0
        rate = mc.report_throughput(ctx, pred, "maps") if pred.n else {"samples_per_s": None, "engine": pred.engine,
                                                                       "device": pred.device}
        summary = {"input": str(inputs), "model": mdir.name, "n": len(maps), "computed": int(pred.n), "kept": kept,
                   **rate, "maps_per_s": round(pred.n / seconds, 1) if pred.n and seconds > 0 else None,
                   "batch_size": p.batch_size}
        res = finish_run(ctx, writer, maps.names, files, p.zip, summary)
    mc.record(ctx, inputs=[runner if p.engine == "onnxruntime" else mdir],
              outputs=[x for x in (res["output"], res["zip"]) if x])
    out = {**summary, **res}
    ctx.emit(out)
    return out
