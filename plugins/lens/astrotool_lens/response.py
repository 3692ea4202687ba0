r"""A trained network's own shear response, measured as metacalibration measures it.

A CNN calibrated on one simulator carries that simulator's multiplicative bias to any other
data. Here the network is only the ellipticity measure of metacalibration
(:mod:`astrotool_lens.metacal`): each stamp is deconvolved, sheared by $\pm\delta$ and
reconvolved with a round Gaussian; the network reads the five images (with that Gaussian as its
PSF stamp) and its outputs $e$ give the response
$R_{ij} = (e_i(+\delta_j) - e_i(-\delta_j)) / 2\delta$ and the second derivatives $D_{ij}$.
The shear of a field is $\langle R\rangle^{-1}\langle e\rangle$, corrected to second order
(:func:`astrotool_lens.metacal.shear_from_response`): whatever the network learned, what it
estimates is rescaled on the data themselves, so no calibration on simulations is used
(the model's stored one is not applied).

Noise: the 90-degree-rotated noise image of metacalibration (``fixnoise``) is added to the five
images, with the same seeds as ``lens measure``'s METACAL. The network is run on the raw
pixels of each image with its own normalisation, ``symmetrize`` as asked.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__docformat__ = "numpy"

PREFIX = "response"
"""Column prefix of the per-stamp columns (``response_e1`` ... ``response_d22``)."""

COLUMNS = ("e1", "e2", "r11", "r12", "r21", "r22", "d11", "d12", "d21", "d22", "noise_sigma")
"""Per-stamp columns of a network's response, unprefixed (``response_<c>`` in the tables)."""

DESCRIPTIONS = {
    "e1": "network output g1 on the reconvolved unsheared image (metacal e1)",
    "e2": "network output g2 on the reconvolved unsheared image (metacal e2)",
    "r11": "response de1/dg1 = (e1(+delta g1) - e1(-delta g1)) / (2 delta)",
    "r12": "response de1/dg2",
    "r21": "response de2/dg1",
    "r22": "response de2/dg2",
    "d11": "second derivative d2e1/dg1^2",
    "d12": "second derivative d2e1/dg2^2",
    "d21": "second derivative d2e2/dg1^2",
    "d22": "second derivative d2e2/dg2^2",
    "noise_sigma": "noise sigma of a pixel at the stamp's edge, of the added rotated noise image (0: none)",
}
"""One-line descriptions of :data:`COLUMNS`."""

UNITS = {"noise_sigma": "ct"}
"""Astropy units of the columns (of :data:`COLUMNS`, unprefixed) that have one: counts, as the truth table's
``flux``; the others are dimensionless."""

STAMPS_PER_ITEM = 500
"""Stamps per executor item (five images each go through the network)."""


@dataclass(frozen=True)
class ResponseTask:
    """Stamps ``[start, start + n)`` whose response a model measures (executor item)."""

    gal: np.ndarray
    psf: np.ndarray
    start: int
    model_dir: str
    delta: float = 0.01
    fixnoise: bool = True
    seed: int = 0
    symmetrize: bool = True
    batch_size: int = 256
    pixel_scale: float = 1.0


@functools.lru_cache(maxsize=2)
def _estimator(model_dir: str, weights_mtime: float):
    """The model of ``model_dir``, loaded once per process (the mtime keys a retrained one apart); the command
    that uses it has warned about a training cut short already."""
    from astrotool_lens.model import load_estimator

    return load_estimator(model_dir, warn=False)


def response_stamps(task: ResponseTask, seed: int | None = None) -> dict:
    """Measure one :class:`ResponseTask` (executor item; ``seed`` unused: the noise images are seeded per stamp).

    Returns
    -------
    dict
        ``index`` and ``response_<c>`` for c in :data:`COLUMNS`, plus ``response_flag`` (0 measured,
        1 failed) and ``response_error``; failed stamps are NaN.
    """
    import warnings

    import galsim

    from astrotool_lens.metacal import SHEARS, failure_reason, metacal_images, response_from_shapes, stamp_seed
    from astrotool_lens.model import predict_array

    path = Path(task.model_dir)
    est, meta = _estimator(str(path), (path / "model.safetensors").stat().st_mtime)
    two = int(meta["architecture"]["kwargs"]["in_channels"]) == 2
    n = len(task.gal)
    psf = task.psf if task.psf.ndim == 3 else np.broadcast_to(task.psf, task.gal.shape)
    out = {f"{PREFIX}_{c}": np.full(n, np.nan) for c in COLUMNS}
    flag, error = np.ones(n, dtype=np.int8), np.array([""] * n, dtype=object)
    stacks, ok = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in range(n):
            try:
                images, rpsf, sigma = metacal_images(task.gal[i], psf[i], task.pixel_scale, task.delta,
                                                     task.fixnoise, stamp_seed(task.seed, task.start + i))
            except (galsim.GalSimError, ValueError, RuntimeError, ZeroDivisionError) as exc:
                error[i] = failure_reason(exc)
                continue
            gal = np.stack([images[k] for k in SHEARS])
            stacks.append(np.stack([gal, np.broadcast_to(rpsf, gal.shape)], axis=1) if two else gal[:, None])
            out[f"{PREFIX}_noise_sigma"][i] = sigma
            ok.append(i)
    if ok:
        x = np.concatenate(stacks).astype(np.float32)
        pred = predict_array(est, x, task.batch_size, task.symmetrize, calibrated=False).astype(np.float64)
        pred = pred.reshape(len(ok), len(SHEARS), 2)
        for row, i in enumerate(ok):
            r = response_from_shapes({k: pred[row, j] for j, k in enumerate(SHEARS)}, task.delta)
            for k, v in r.items():
                out[f"{PREFIX}_{k}"][i] = v
            flag[i] = 0
    out[f"{PREFIX}_flag"], out[f"{PREFIX}_error"] = flag, error.astype(str)
    out["index"] = np.arange(task.start, task.start + n)
    return out


def model_response(model_dir: str | Path, gal: np.ndarray, psf: np.ndarray, *, mapper, delta: float = 0.01,
                   fixnoise: bool = True, seed: int = 0, symmetrize: bool = True, batch_size: int = 256,
                   pixel_scale: float = 1.0, desc: str = "response", source=None) -> dict:
    """The per-stamp metacal columns of a trained model on stamps.

    Parameters
    ----------
    model_dir : path-like
        The checkpoint folder.
    gal, psf : numpy.ndarray
        (n, S, S) galaxy stamps [counts / pixel]; (n, S, S) or (S, S) PSF stamps.
    mapper : callable
        ``astrotool.context.Context.map``-like; items of :data:`STAMPS_PER_ITEM` stamps.
    delta, fixnoise, seed, pixel_scale
        As for :func:`astrotool_lens.metacal.metacal_images` (``seed``: the noise images' seed, with
        the stamp's index).
    symmetrize : bool
        Average the network over the 8 flips/rotations.
    batch_size : int
        Images per forward pass.
    desc : str
        Progress label.
    source : path-like, optional
        What the stamps came from, named in errors.

    Returns
    -------
    dict of numpy.ndarray
        ``response_<c>`` (:data:`COLUMNS`, ``flag``, ``error``) in stamp order.

    Raises
    ------
    astrotool.errors.InputError
        The stamps do not fit the model (size), or the PSF stamps not the galaxy stamps (exit code 2).
    astrotool.errors.AstroError
        Some items failed (exit code 1): no partial result is returned.
    """
    from astrotool.errors import AstroError
    from astrotool_lens.model import check_stamps

    gal = np.asarray(gal, np.float32)
    psf = np.asarray(psf, np.float32)
    n = len(gal)
    if psf.shape[-2:] != gal.shape[-2:]:
        from astrotool.errors import InputError

        raise InputError(source or desc, f"PSF stamps of {psf.shape[-2:]} pixels for galaxy stamps of {gal.shape[-2:]}")
    path = Path(model_dir)
    _, meta = _estimator(str(path), (path / "model.safetensors").stat().st_mtime)
    if n:   # size and channels, before any work; bad pixels fail per stamp
        first = np.stack([gal[0], psf[0] if psf.ndim == 3 else psf])[None]
        channels = int(meta["architecture"]["kwargs"]["in_channels"])
        check_stamps(np.nan_to_num(first[:, :channels]), meta, source or desc)
    tasks = [ResponseTask(gal[a:a + STAMPS_PER_ITEM], psf[a:a + STAMPS_PER_ITEM] if psf.ndim == 3 else psf, a,
                          str(model_dir), float(delta), bool(fixnoise), int(seed), bool(symmetrize), int(batch_size),
                          float(pixel_scale)) for a in range(0, n, STAMPS_PER_ITEM)]
    results = [r for _, r in mapper(response_stamps, tasks, desc=desc, keys=[f"stamps{t.start:06d}" for t in tasks])]
    if len(results) != len(tasks):
        raise AstroError(f"{desc}: {len(tasks) - len(results)} of {len(tasks)} parts failed", exit_code=1)
    order = np.argsort(np.concatenate([r["index"] for r in results]), kind="stable")
    return {k: np.concatenate([r[k] for r in results])[order] for k in results[0] if k != "index"}


MIN_RESPONSE = 0.05
"""Below this mean diagonal response (or negative) the shears <R>^-1 e are not to be trusted."""


def response_problem(cols: dict, prefix: str = PREFIX) -> str | None:
    """Why the mean response of ``cols`` (:func:`model_response`'s columns) is implausible: ``<R11>`` or ``<R22>``
    below :data:`MIN_RESPONSE` or negative, which blows ``<R>^-1 e`` up (None: it is plausible)."""
    means = {}
    for c in ("r11", "r22"):
        v = np.asarray(cols[f"{prefix}_{c}"], float)
        means[c] = float(np.mean(v[np.isfinite(v)])) if np.isfinite(v).any() else float("nan")
    if all(np.isfinite(r) and r >= MIN_RESPONSE for r in means.values()):
        return None
    lacking = [c.upper() for c, r in means.items() if not np.isfinite(r)]
    if lacking:
        return (f"no stamp has a finite response ({', '.join(lacking)}), so <R>^-1 e and the biases fitted on it "
                "are undefined")
    return (f"the model's mean shear response <R11> = {means['r11']:.4g}, <R22> = {means['r22']:.4g} is implausible "
            f"(below {MIN_RESPONSE:g} or negative: the model hardly responds to shear), so <R>^-1 e and the biases "
            "fitted on it are not to be trusted")
