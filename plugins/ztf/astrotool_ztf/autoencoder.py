"""``astro ztf train --arch ae|vae`` and ``astro ztf embed``: the stamp autoencoder and its latent space.

The autoencoder (:class:`~astrotool_ztf.model.StampAutoencoder`, Astorga et al.
2018) learns to reconstruct the science, template and difference stamps of every
training alert without their labels; the checkpoint of the lowest validation
loss is kept. Its latents (the encoder's mean) are what ``embed`` maps to two
dimensions with UMAP (``umap-learn``) and what :func:`clustering_accuracy`
scores: k-means clusters of the latents, each given its most common class.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__docformat__ = "numpy"

CHANNELS = 3
"""Channels the autoencoder reconstructs: science, template, difference (not the NaN mask)."""

RECON_ERROR = "autoencoder's mean squared reconstruction error per pixel (stamps in [0, 1]): an anomaly score"
"""Description of the ``recon_error`` column of ``embed`` and ``predict --autoencoder``."""


def embedding_descriptions(n_latent: int) -> dict:
    """Column descriptions of ``embed``'s table, whose latents are ``z0`` ... ``z<n_latent - 1>``."""
    return {"class": "class of the object", "umap_1": "first UMAP coordinate of the latents",
            "umap_2": "second UMAP coordinate of the latents", "recon_error": RECON_ERROR,
            **{f"z{j}": f"latent {j} of the autoencoder (the encoder's mean)" for j in range(n_latent)}}


def _stamps(ds, indices) -> np.ndarray:
    return ds.read(np.sort(indices), ["stamps"])["stamps"][:, :CHANNELS].astype(np.float32)


def train_autoencoder(ds, cfg, model_dir, seed: int, overwrite: bool = False, log=None, on_epoch=None,
                      runtime=None) -> dict:
    """Train (or resume) the autoencoder on every alert of the training split; arguments as
    :func:`astrotool_ztf.train.train_classifier` (``cfg.arch`` "ae" or "vae")."""
    import torch

    from astrotool.errors import InputError
    from astrotool.ml.training import epoch_rng, fit

    from astrotool_ztf.model import AUTOENCODER, StampAutoencoder, autoencoder_loss
    from astrotool_ztf.prepare import first_alerts
    from astrotool_ztf.train import check_splits, start_training, train_indices

    model_dir = Path(model_dir)
    if int(ds.attrs["crop"]) != 21:
        raise InputError(ds.root, f"the autoencoder takes 21 px stamps; this set has {ds.attrs['crop']} px "
                                  "(prepare --crop 21)")
    tr_idx, va_idx = train_indices(ds, "all"), first_alerts(ds, "val")
    check_splits(ds, len(tr_idx), len(va_idx))
    train, val = _stamps(ds, tr_idx), _stamps(ds, va_idx)
    rt, settings, resume = start_training(ds, cfg, model_dir, seed, overwrite, runtime)
    kwargs = {"in_channels": CHANNELS, "latent": cfg.latent, "variational": cfg.arch == "vae", "crop": 21}
    model = StampAutoencoder(**kwargs).to(rt.device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

    def batches(epoch: int):
        order = epoch_rng(seed, epoch).permutation(len(train))
        for i in range(0, len(order), cfg.batch_size):   # every alert, the last batch partial (no batch-norm)
            yield torch.from_numpy(train[order[i:i + cfg.batch_size]])

    def validate(m):
        dev = next(m.parameters()).device
        with torch.no_grad():
            total = sum(float(autoencoder_loss(m, torch.from_numpy(val[i:i + 256]).to(dev), cfg.kl_beta))
                        * len(val[i:i + 256]) for i in range(0, len(val), 256))
        return {"val_loss": total / len(val)}

    meta = {
        "architecture": {"name": AUTOENCODER, "kwargs": kwargs}, "settings": settings,
        "hyperparameters": cfg.model_dump(mode="json"), "classes": ds.classes, "crop": 21,
        "channels": list(ds.attrs["channels"][:CHANNELS]),
        "inputs": "stamps (N, 3, 21, 21) float32: science, template, difference each scaled to [0, 1], NaN -> 0",
        "outputs": "reconstruction (N, 3, 21, 21), latent mean (N, latent), log-variance (vae) or None",
        "training": {"dataset": ds.name, "dataset_path": str(ds.root), "seed": int(seed),
                     "n_train": int(len(tr_idx)), "n_val": int(len(va_idx)), "monitor": "val_loss",
                     "device": str(rt.device), "precision": rt.precision, "processes": rt.world_size},
    }
    result = fit(model, opt, batches=batches, loss_fn=lambda m, b: autoencoder_loss(m, b, cfg.kl_beta),
                 validate=validate, epochs=cfg.epochs, checkpoint_dir=model_dir, meta=meta, seed=seed,
                 monitor="val_loss", patience=cfg.patience, resume=resume,
                 on_epoch=on_epoch, log=log, runtime=rt)
    return {"model": model_dir.name, "path": str(model_dir), "dataset": ds.name, "seed": int(seed),
            **result.summary, "val_loss": result.best_metrics.get("val_loss"),
            "n_train": int(len(tr_idx)), "n_val": int(len(va_idx)),
            "parameters": int(sum(p.numel() for p in model.parameters())),
            "device": str(rt.device)}


def encode(model, stamps: np.ndarray, device: str | None = None, batch_size: int = 256):
    """Latent means and mean squared reconstruction error per pixel of each stamp.

    Parameters
    ----------
    model : astrotool_ztf.model.StampAutoencoder
    stamps : numpy.ndarray
        ``(N, 3, S, S)`` float32 science, reference and difference stamps, as the autoencoder was trained on.
    device : str, optional
        ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps`` (default: CPU).
    batch_size : int
        Stamps per forward pass.

    Returns
    -------
    latent : numpy.ndarray
        ``(N, latent)`` float32.
    error : numpy.ndarray
        ``(N,)`` float32, in the stamps' normalised units squared.
    """
    from astrotool.ml.predict import predict

    if not len(stamps):
        return np.zeros((0, model.latent), np.float32), np.zeros(0, np.float32)
    recon, mu, _ = predict(model, stamps, batch_size=batch_size, device=device or "cpu").outputs
    return mu, ((recon.astype(np.float32) - stamps) ** 2).mean(axis=(1, 2, 3))


def latents(model_dir, ds, split: str, device: str | None = None) -> dict:
    """Latent means, per-alert reconstruction error (mean squared, per pixel) and labels of the first alert of
    each object of ``split``, computed on ``device`` (``auto``, ``cpu``, ``cuda:N``...; default CPU)."""
    from astrotool.errors import InputError
    from astrotool.ml.checkpoint import build_model

    from astrotool_ztf.classify import check_finished, load_autoencoder
    from astrotool_ztf.model import REGISTRY
    from astrotool_ztf.prepare import first_alerts

    ckpt = load_autoencoder(model_dir)
    check_finished(ckpt.meta, model_dir)   # as evaluate: an autoencoder cut short is not embedded
    if int(ds.attrs["crop"]) != int(ckpt.meta.get("crop", 21)):
        raise InputError(Path(model_dir) / "model.json", f"trained with crop {ckpt.meta.get('crop', 21)}; the set "
                                                         f"{ds.name} has {ds.attrs['crop']}")
    model = build_model(ckpt, REGISTRY).eval()
    idx = np.sort(first_alerts(ds, split))
    mu, err = encode(model, _stamps(ds, idx), device)
    meta = ds.metadata(["objectId", "label", "class_name"])
    return {"latent": mu, "recon_error": err, "label": meta["label"][idx],
            "class_name": meta["class_name"][idx], "objectId": meta["objectId"][idx]}


def clustering_accuracy(latent: np.ndarray, labels: np.ndarray, k: int, seed: int = 0) -> float:
    """Astorga et al.'s clustering accuracy: k-means clusters of the latents, each counted as its most common
    class, ``(1/N) sum_c max_class n(c, class)``; NaN unless there are more objects than clusters (with
    as many clusters as objects every object is a cluster of its own, and the figure is 1 whatever the
    latents)."""
    from sklearn.cluster import KMeans

    if len(labels) <= k:
        return float("nan")
    clusters = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(latent)
    return float(sum(np.bincount(labels[clusters == c]).max() for c in np.unique(clusters)) / len(labels))


def check_metric(metric: str) -> None:
    """Refuse a ``ztf.embed.metric`` that UMAP does not know (before any work)."""
    from umap.distances import named_distances

    from astrotool.errors import ConfigError

    if metric not in named_distances:
        raise ConfigError([f"ztf.embed.metric: {metric!r} is not a UMAP metric (one of "
                           f"{', '.join(sorted(named_distances))})"])


def cache_umap_compilation() -> int:
    """Have numba keep the machine code it compiles for UMAP and pynndescent on disk, as it does for functions
    marked ``cache=True`` (few of theirs are): compiling took about 15 s of every ``ztf embed`` on 2 CPU cores,
    loading it takes 0.1 s. The cache is numba's: ``NUMBA_CACHE_DIR``, else beside the packages' files, else the
    user's cache folder. Returns how many of their jitted functions were switched to caching."""
    import importlib
    import sys

    from numba.core.registry import CPUDispatcher

    importlib.import_module("umap")   # its modules and pynndescent's
    n = 0
    for name, module in list(sys.modules.items()):
        if name.split(".")[0] in ("umap", "pynndescent") and module is not None:
            for obj in list(vars(module).values()):
                if isinstance(obj, CPUDispatcher) and type(obj._cache).__name__ == "NullCache":
                    obj.enable_caching()
                    n += 1
    return n


UMAP_MIN_POINTS = 3
"""Fewest latents :func:`umap_embedding` maps: UMAP needs at least 2 neighbours besides each point."""


def umap_embedding(latent: np.ndarray, n_neighbors: int, min_dist: float, metric: str, seed: int,
                   where: str = "latents") -> np.ndarray:
    """Two-dimensional UMAP of the (standardised) latents (compiled code cached: :func:`cache_umap_compilation`).

    ``n_neighbors`` is cut to the number of points less one; UMAP's spectral start needs more points than
    3 (the dimensions plus one), so 3 points start from random positions (UMAP's ``init="random"``).

    Raises
    ------
    astrotool.errors.InputError
        Fewer than :data:`UMAP_MIN_POINTS` latents, naming ``where`` (the set and split).
    """
    import warnings

    import umap
    from numba.core.errors import NumbaWarning

    from astrotool.errors import InputError

    if len(latent) < UMAP_MIN_POINTS:
        raise InputError(where, f"{len(latent)} object(s) to embed; UMAP needs at least {UMAP_MIN_POINTS}")
    cache_umap_compilation()
    z = (latent - latent.mean(0)) / np.where(latent.std(0) > 0, latent.std(0), 1.0)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="n_jobs value .* overridden", category=UserWarning)
        warnings.filterwarnings("ignore", message="Cannot cache", category=NumbaWarning)   # compiled, not kept
        return umap.UMAP(n_neighbors=min(n_neighbors, len(z) - 1), min_dist=min_dist, metric=metric,
                         init="spectral" if len(z) > 3 else "random", random_state=seed).fit_transform(z)


def plot_embedding(path, xy: np.ndarray, class_names, title: str) -> Path:
    """The 2-D embedding as a PNG, one colour per class."""
    from astrotool.io.figures import figure

    with figure(path, figsize=(6.0, 5.0)) as (fig, axes):
        ax = axes[0, 0]
        for c in sorted(set(class_names)):
            sel = np.asarray(class_names) == c
            ax.scatter(xy[sel, 0], xy[sel, 1], s=6, alpha=0.7, label=f"{c} ({sel.sum()})")
        ax.set_xlabel("UMAP 1")
        ax.set_ylabel("UMAP 2")
        ax.set_title(title)
        ax.legend(markerscale=3, fontsize=8)
    return Path(path)
