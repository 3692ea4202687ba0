"""ONNX export of a trained kappa U-Net, checked against torch (``astro lens kappa export``).

The graph is the whole :class:`~astrotool_lens.kappa.model.KappaUNet`: the raw
input stack ``(n, C, S, S)`` float32 (e1, e2, de and the extra channels that
:func:`~astrotool_lens.kappa.model.model_inputs` builds with numpy) in, kappa
``(n, S, S)`` out, the normalisation inside (buffers), the batch axis dynamic.
``model.json`` goes into the ONNX metadata (so ``predict --engine onnxruntime``
can check that the file belongs to the checkpoint's weights). Export, parity
check and atomic write are :func:`astrotool.ml.commands.export_checked`'s; the
parity inputs are the input stacks of the training set's epsilon maps when that
set is still there, else of random fields of the model's map size (with a
warning naming the set and why it was not used).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__docformat__ = "numpy"

__all__ = ["export_command", "parity_epsilon"]


def parity_epsilon(meta: dict, n: int, seed: int = 0, log=None, model: str | Path = ".",
                   stage: str | Path = ".") -> tuple[np.ndarray, str]:
    """Epsilon maps ``(n, 3, S, S)`` float32 for the parity check, and where they come from.

    The first ``n`` maps of the training data set (found by :func:`astrotool.ml.commands.trained_dataset`:
    ``meta["training"]["dataset_path"]`` relative to the model folder, as
    :func:`astrotool.ml.commands.dataset_record` records a set inside the workspace; else the set of
    the recorded name in ``stage``, so a copied workspace reads its own copy; else an absolute path,
    as older models recorded it) when it can still be read and has the model's map size; else random
    fields: Gaussian e1, e2 of standard deviation 0.3 plus a smooth component,
    and de uniform in [0.05, 0.3].

    Parameters
    ----------
    meta : dict
        The model's ``model.json``.
    n : int
        Number of maps.
    seed : int
        Seed of the random fields.
    log : logging.Logger, optional
        Warned when the model names a training set that cannot be used (gone,
        unreadable, empty, another map size, non-finite maps), saying that random
        fields are used instead.
    model : path-like
        The model folder a relative ``dataset_path`` is read under (default: the current folder).
    stage : path-like
        The folder of the workspace's packed data sets (``lens/kappa/data``) where the recorded
        set name is looked for (default: the current folder).

    Returns
    -------
    (numpy.ndarray, str)
        The maps and their origin: the data set's folder or ``"random fields"``.
    """
    from astrotool.ml.commands import trained_dataset
    from astrotool.seeding import derive_seed

    tr = meta.get("training", {}) or {}
    size = int(tr.get("size") or meta.get("inputs", {}).get("size") or 128)
    recorded, path = tr.get("dataset_path"), trained_dataset(stage, model, tr)
    why = None
    if path and Path(path).is_dir():
        try:
            from astrotool_lens.kappa.data import KappaDataset

            with KappaDataset(path) as ds:
                if not ds.n:
                    why = "holds no maps"
                elif ds.size != size:
                    why = f"holds maps of side {ds.size}, not the model's {size}"
                else:
                    eps = ds.read(np.arange(min(n, ds.n)), ["epsilon"])["epsilon"].astype(np.float32)
                    if np.isfinite(eps).all():
                        return eps, str(ds.root)
                    why = "holds NaN or infinite epsilon values"
        except Exception as exc:  # noqa: BLE001 - an unreadable set: fall back to random fields
            why = f"cannot be read ({type(exc).__name__}: {exc})"
    elif path or recorded:   # named where it was looked for last: a relative record under the model folder
        why = "is gone"
        relative = recorded and not Path(recorded).is_absolute()
        path = str((Path(model) / recorded).resolve()) if relative else recorded or path
    if why and log is not None:
        log.warning("the model's training data set %s %s: the ONNX parity check runs on random fields of the "
                    "model's map size instead", path, why)
    rng = np.random.default_rng(derive_seed(seed, "kappa_parity"))
    from astrotool_lens.kappa.maps import smooth

    e = 0.3 * rng.standard_normal((n, 2, size, size)) + 0.5 * smooth(rng.standard_normal((n, 2, size, size)), 4.0)
    de = rng.uniform(0.05, 0.3, (n, 1, size, size))
    return np.concatenate([e, de], axis=1).astype(np.float32), "random fields"


def export_command(ctx, cfg, output: str | None = None) -> dict:
    """``astro lens kappa export``: write ``<model>/model.onnx`` (or ``output``) after the parity check.

    Parameters
    ----------
    ctx : astrotool.context.Context
    cfg : astrotool_lens.kappa.config.KappaConfig
        ``cfg.export`` is read (and ``cfg.train`` for the default model).
    output : str, optional
        The ONNX path (default ``<model>/model.onnx``).

    Returns
    -------
    dict
        ``path, max_abs_diff, tol, samples, opset, parity_inputs``.

    Raises
    ------
    astrotool.errors.AstroError
        An ``--opset`` outside the range accepted (from 11 to
        the newest this torch writes); onnxruntime differs from torch by more than
        ``parity_tol`` (nothing written).
    astrotool.errors.InputError
        No such model.
    """
    from astrotool.ml import commands as mc

    from astrotool_lens.kappa.model import load_unet, model_inputs
    from astrotool_lens.kappa.predict import default_model

    x = cfg.export
    name = x.model or default_model(cfg)
    mdir = mc.model_dir(ctx, "lens", name, stage="kappa/models", trained=True)
    model, meta = load_unet(mdir)
    eps, origin = parity_epsilon(meta, x.parity_samples, ctx.seed, log=ctx.log, model=mdir,
                                 stage=ctx.workspace.stage("lens", "kappa/data", create=False))
    stack = model_inputs(eps, meta, source=origin)
    out = Path(output).expanduser() if output else mdir / "model.onnx"
    info = {"input": "stack (n, C, S, S) float32: " + ", ".join(meta["inputs"]["channels"]),
            "output": "kappa (n, S, S) float32", "parity_inputs": origin}
    res = mc.export_checked(ctx, model, stack, out, sources=[mdir], input_name="stack", output_names=["kappa"],
                            opset=x.opset, tol=x.parity_tol, metadata={**meta, "onnx": info})
    res = {**res, "model": mdir.name, "parity_inputs": origin}
    ctx.emit(res)
    return res
