"""A trained stamp classifier at work: load it, run it, calibrate it, score it.

Calibration is temperature scaling (Guo et al. 2017): one temperature ``T``
divides the logits, fitted on the validation split's first alerts by
minimising the negative log-likelihood; it changes the confidence, never the
predicted class. ``astro ztf train`` stores it in the checkpoint
(``temperature``), so ``evaluate`` and ``predict`` report calibrated
probabilities.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

__docformat__ = "numpy"


def load_classifier(model_dir):
    """The checkpoint's model (eval mode, CPU) and its metadata.

    Raises
    ------
    astrotool.errors.InputError
        A temporal model (scored by ``astro ztf evaluate`` only) or an autoencoder, said plainly.
    """
    from astrotool.errors import InputError
    from astrotool.ml.checkpoint import build_model, load_checkpoint, read_meta

    from astrotool_ztf.model import AUTOENCODER, CLASSIFIERS, REGISTRY, TEMPORAL

    arch = (read_meta(model_dir).get("architecture") or {}).get("name")
    if arch == TEMPORAL:
        raise InputError(Path(model_dir).name, "a temporal model (train --arch temporal): temporal models are "
                                               "scored by `astro ztf evaluate` only; predict and export take a "
                                               "single-alert classifier or a probe")
    if arch == AUTOENCODER:
        raise InputError(Path(model_dir).name, "an autoencoder (train --arch ae|vae), not a classifier: score it "
                                               "with `astro ztf evaluate` or `embed`, use it in `predict "
                                               "--autoencoder`, or train a probe on it (--arch probe --encoder)")
    ckpt = load_checkpoint(model_dir, CLASSIFIERS)
    model = build_model(ckpt, REGISTRY)
    model.eval()
    return model, ckpt.meta


def load_autoencoder(model_dir):
    """The checkpoint of the autoencoder in ``model_dir`` (``embed``, ``predict --autoencoder``, ``train --arch
    probe --encoder``).

    Raises
    ------
    astrotool.errors.InputError
        Another kind of model, said plainly (as :func:`load_classifier` says it of an autoencoder).
    """
    from astrotool.errors import InputError
    from astrotool.ml.checkpoint import load_checkpoint, read_meta

    from astrotool_ztf.model import AUTOENCODER, CLASSIFIERS, TEMPORAL

    arch = (read_meta(model_dir).get("architecture") or {}).get("name")
    if arch != AUTOENCODER:
        kind = ("a temporal model (train --arch temporal)" if arch == TEMPORAL else
                "a classifier (train --arch classifier or probe)" if arch in CLASSIFIERS else
                f"a model of architecture {arch!r}")
        raise InputError(Path(model_dir).name, f"{kind}, not an autoencoder: `embed`, `predict --autoencoder` and "
                                               "`train --arch probe --encoder` take an autoencoder (train --arch "
                                               "ae|vae)")
    return load_checkpoint(model_dir, AUTOENCODER)


def check_finished(meta: dict, model_dir) -> None:
    """Refuse a checkpoint whose training did not run to its end
    (:func:`astrotool.ml.checkpoint.unfinished`): its temperature, if any, is not the final model's."""
    from astrotool.errors import InputError
    from astrotool.ml.checkpoint import unfinished

    why = unfinished(meta)
    if why:
        raise InputError(Path(model_dir) / "model.json", f"training unfinished: {why}; "
                                                          f"run `{train_command(meta, model_dir)}` again to resume")


def train_command(meta: dict, model_dir) -> str:
    """The ``astro ztf train`` command that resumes the model of ``meta`` in ``model_dir``.

    It names the model (``--model <base> --seeds <seed>`` for one of several seeds, else ``--model <name>``
    and the run's ``--seed``), the epochs asked for, and each setting a resume must share
    (:func:`astrotool.ml.commands.resume_settings`) that ``model.json`` records away from its default: and ``patience``
    (a resumed run may change it, but would stop by another rule): as the option of ``astro ztf train`` that sets
    it (:func:`astrotool.cliconfig.option_keys`) where the value is a string or a number, else (a list, a flag) as
    ``--set``; defaults are the packaged ones. It names the workspace (:func:`astrotool.context.astro_command`).
    """
    import typer

    from astrotool.cliconfig import option_keys
    from astrotool.ml.commands import RESUMABLE as SHARED_RESUMABLE
    from astrotool_ztf.cli import app

    from astrotool_ztf.config import TrainConfig
    from astrotool.context import astro_command
    from astrotool_ztf.train import RESUMABLE

    name = Path(model_dir).name
    settings = meta.get("hyperparameters")
    if not isinstance(settings, dict):   # a checkpoint that recorded no settings
        return astro_command("ztf", "train", "--model", name)
    seed = (meta.get("training") or {}).get("seed")
    epochs = (meta.get("training_progress") or {}).get("epochs", settings.get("epochs"))
    if settings.get("seeds") and name.endswith(f"_seed{seed}"):
        words = ["ztf", "train", "--model", name.removesuffix(f"_seed{seed}"), "--seeds", str(seed)]
    else:
        words = [*(["--seed", str(seed)] if seed is not None else []), "ztf", "train", "--model", name]
    words += ["--epochs", str(epochs)]
    defaults = TrainConfig().model_dump(mode="json")
    command = typer.main.get_command(app).commands["train"]
    options = {key: max(p.opts, key=len) for p in command.params
               if getattr(p, "opts", None) and not getattr(p, "is_flag", False)
               for key in option_keys("ztf train", p, {"ztf"})}
    for key, default in defaults.items():
        value = settings.get(key, default)
        if value == default or (key in SHARED_RESUMABLE | RESUMABLE and key not in ("dataset", "patience")):
            continue
        text = value if isinstance(value, str) else json.dumps(value)
        scalar = isinstance(value, (str, int, float)) and not isinstance(value, bool)
        option = options.get(f"ztf.train.{key}") if scalar else None
        words += [option, text] if option else ["--set", f"ztf.train.{key}={text}"]
    return astro_command(*words)


def temperature(meta: dict, model_dir) -> float:
    """The calibration temperature stored by ``astro ztf train``: the one rule of ``evaluate``, ``predict``
    and ``export``; an unfinished checkpoint, or one without a temperature, or one that is not a positive finite
    number (a negative one would turn the ranking of the classes over, 0 gives NaN), is refused (exit 2)."""
    import math

    from astrotool.errors import InputError

    check_finished(meta, model_dir)
    value = meta.get("temperature")
    if value is None:
        raise InputError(Path(model_dir) / "model.json", "no calibration temperature stored (training stopped "
                                                          "before it was fitted, or an older checkpoint); run "
                                                          f"`{train_command(meta, model_dir)}` again to fit it")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise InputError(Path(model_dir) / "model.json", f"temperature {value!r} is not a positive number: "
                                                          "scaling changes the confidence, never the class; "
                                                          "edited by hand? train the model again (--overwrite)")
    return float(value)


def warn_stale_onnx(model_dir, log) -> None:
    """Warn when ``<model_dir>/model.onnx`` was exported from other weights or another temperature than the
    checkpoint's (``train`` wrote new ones since), naming the command that exports it again. The file is kept
    (the user's; ``predict --engine onnxruntime`` refuses it); an export that records no weights is not judged."""
    from astrotool.errors import InputError
    from astrotool.ml.checkpoint import read_meta
    from astrotool.ml.export import onnx_metadata
    from astrotool.context import astro_command
    from astrotool.ml.commands import model_option

    path = Path(model_dir) / "model.onnx"
    if not path.is_file():
        return
    meta = read_meta(model_dir)
    try:
        info = onnx_metadata(path)
    except InputError:
        info = {}
    if info.get("weights_sha256") is None or (info["weights_sha256"] == meta.get("weights_sha256")
                                              and info.get("temperature") == meta.get("temperature")):
        return
    log.warning("%s: exported from the weights before this training, not this model's; run `%s` to export "
                "the new ones", path, astro_command("ztf", "export", "--model", model_option(model_dir, "ztf")))


def check_onnx(path, meta: dict, model_dir) -> Path:
    """``path``, the ONNX export of the classifier of ``meta`` (the ``model.json`` of ``model_dir``), checked to
    hold the same weights, temperature and classes.

    Raises
    ------
    astrotool.errors.InputError
        Naming the file: missing (export it first), or exported from other weights or another temperature
        (the model was trained again since).
    """
    from astrotool.errors import InputError
    from astrotool.ml.export import check_onnx_weights
    from astrotool.context import astro_command
    from astrotool.ml.commands import model_option

    command = astro_command("ztf", "export", "--model", model_option(model_dir, "ztf"))
    info = check_onnx_weights(path, meta, command)
    if info.get("temperature") != meta.get("temperature") or list(info.get("classes", [])) != list(meta["classes"]):
        raise InputError(path, f"exported with temperature {info.get('temperature')} and classes "
                               f"{info.get('classes')}; the checkpoint has {meta.get('temperature')} and "
                               f"{meta['classes']} (run `{command}` again)")
    return Path(path)


def run_logits(model, stamps: np.ndarray, features: np.ndarray, batch_size: int = 256, device: str | None = None):
    """Logits ``(N, n_classes)`` (probabilities from an ONNX export) and the
    :class:`astrotool.ml.predict.Predictions` (throughput)."""
    from astrotool.ml.predict import predict

    pred = predict(model, {"stamps": stamps, "features": features}, key=("stamps", "features"),
                   batch_size=batch_size, device=device)
    return np.asarray(pred.outputs, np.float64), pred


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Class probabilities of ``logits / temperature``."""
    z = np.asarray(logits, np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of the true classes."""
    p = softmax(logits, temperature)
    return float(-np.mean(np.log(np.clip(p[np.arange(len(labels)), labels], 1e-300, None))))


TEMPERATURE_BOUNDS = (0.05, 20.0)
"""The range :func:`fit_temperature` searches."""


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature in :data:`TEMPERATURE_BOUNDS` that minimises the NLL of ``labels`` (1 for no samples)."""
    from scipy.optimize import minimize_scalar

    if len(labels) == 0:
        return 1.0
    res = minimize_scalar(lambda t: nll(logits, labels, float(np.exp(t))), bounds=tuple(np.log(TEMPERATURE_BOUNDS)),
                          method="bounded", options={"xatol": 1e-4})
    return float(np.exp(res.x))


def split_inputs(ds, split: str, meta: dict):
    """Stamps, features z-scored with the checkpoint's training statistics (``meta``) and labels of the first
    alerts of ``split``."""
    from astrotool_ztf.prepare import first_alerts
    from astrotool_ztf.train import load_split

    idx = first_alerts(ds, split)
    return idx, load_split(ds, idx, meta)


def _short(value) -> str:
    return ", ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def check_compatible(meta: dict, ds, model_dir, keys=("classes", "crop")) -> None:
    """Refuse a model trained on other classes or crop (``keys``) than the set holds."""
    from astrotool.errors import InputError

    have = {"classes": ds.classes, "crop": int(ds.attrs["crop"])}
    for key in keys:
        if meta.get(key) != have[key]:
            raise InputError(Path(model_dir) / "model.json",
                             f"trained with {key} {meta.get(key)!r}; the set {ds.name} has {have[key]!r} "
                             f"({key} {_short(meta.get(key))} -> {_short(have[key])})")


def calibrated_module(model, temperature: float):
    """``model`` followed by temperature scaling and the softmax: calibrated class probabilities (for ONNX)."""
    import torch

    class Calibrated(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, stamps, features):
            return torch.softmax(self.model(stamps, features) / temperature, dim=1)

    return Calibrated().eval()


def export_inputs(meta: dict, n: int = 16, seed: int = 0) -> dict:
    """Parity inputs of an export: the first alerts of the training set's validation split when it is still
    there, else stamps drawn uniform in [0, 1] and standard-normal features."""
    from astrotool_ztf.prepare import StampDataset, first_alerts
    from astrotool_ztf.train import load_split

    path = Path(meta.get("training", {}).get("dataset_path", ""))
    if path.is_dir():
        with StampDataset(path) as ds:
            idx = first_alerts(ds, "val")[:n]
            part = load_split(ds, idx, meta)
            return {"stamps": part["stamps"], "features": part["features"]}
    rng = np.random.default_rng(seed)
    crop, nf = int(meta["crop"]), len(meta["feature_mean"])
    return {"stamps": rng.uniform(0, 1, (n, len(meta["channels"]), crop, crop)).astype(np.float32),
            "features": rng.standard_normal((n, nf)).astype(np.float32)}
