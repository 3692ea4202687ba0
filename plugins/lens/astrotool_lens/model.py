"""CNN shear estimator (torch).

:class:`ShearEstimator` maps raw stamps (n, C, S, S) -- the galaxy, optionally
the PSF as a second channel -- to a shear estimate (g1, g2). It contains its
own input normalisation and output scaling (buffers saved in the checkpoint),
so the exported ONNX graph and a loaded checkpoint take raw pixels.

Symmetry: under the 8 flips / 90-degree rotations of the pixel grid a spin-2
quantity changes sign component-wise (:data:`D4_SIGNS`). With ``symmetrize``
the estimator averages ``signs_k * net(T_k x)`` over the 8 transforms, which
makes it exactly equivariant: flipping the input flips the sign of g2, a
90-degree rotation negates g, and for a round PSF and an isotropic population
the network cannot prefer a direction (no additive bias of its own making).
"""

from __future__ import annotations

import numpy as np

__docformat__ = "numpy"

ARCHITECTURE = "lens_shear_cnn"

# sign of (g1, g2) after each transform of the (y, x) pixel grid, see d4_transform
D4_SIGNS = (
    (1.0, 1.0),    # 0 identity
    (1.0, -1.0),   # 1 flip x
    (1.0, -1.0),   # 2 flip y
    (1.0, 1.0),    # 3 rotate 180
    (-1.0, 1.0),   # 4 transpose (mirror in the x = y diagonal)
    (-1.0, -1.0),  # 5 rotate 90
    (-1.0, -1.0),  # 6 rotate -90
    (-1.0, 1.0),   # 7 anti-transpose
)


def d4_transform(x, k: int):
    """Apply transform ``k`` (0-7) of the square's symmetry group to the last two axes.

    Works on numpy arrays and torch tensors. See :data:`D4_SIGNS` for the
    matching change of (g1, g2).
    """
    is_torch = not isinstance(x, np.ndarray)
    if k >= 4:
        x = x.transpose(-1, -2) if is_torch else np.swapaxes(x, -1, -2)
        k -= 4
    dims = {0: (), 1: (-1,), 2: (-2,), 3: (-2, -1)}[k]
    if not dims:
        return x
    return x.flip(dims) if is_torch else np.flip(x, dims)


def _torch():
    import torch
    from torch import nn

    return torch, nn


def _build_classes():
    torch, nn = _torch()

    class ShearCNN(nn.Module):
        """Conv blocks (3x3 conv, BN, ReLU twice, 2x2 max-pool) and a two-layer head.

        Parameters
        ----------
        in_channels : int
            1 (galaxy) or 2 (galaxy, PSF).
        stamp_size : int
            Stamp side [pixels]; each block halves it (rounding down), and at
            least one pixel must remain after the last block.
        width : int
            Channels of the first block; doubled by each further block.
        blocks : int
        hidden : int
            Units of the dense layer.
        """

        def __init__(self, in_channels: int = 1, stamp_size: int = 40, width: int = 32, blocks: int = 3,
                     hidden: int = 128):
            super().__init__()
            layers = []
            c_in = in_channels
            for b in range(blocks):
                c_out = width * 2**b
                layers += [
                    nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
                    nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
                    nn.MaxPool2d(2),
                ]
                c_in = c_out
            side = stamp_size // 2**blocks
            if side < 1:
                raise ValueError(f"stamp_size {stamp_size} is too small for {blocks} pooling blocks")
            self.features = nn.Sequential(*layers)
            self.head = nn.Sequential(nn.Flatten(), nn.Linear(c_in * side * side, hidden), nn.ReLU(inplace=True),
                                      nn.Linear(hidden, 2))

        def forward(self, x):
            return self.head(self.features(x))

    class ShearEstimator(nn.Module):
        """Normalisation + :class:`ShearCNN` + output scaling (+ optional 8-fold symmetrisation).

        Parameters
        ----------
        in_channels, stamp_size, width, blocks, hidden
            See ``ShearCNN``.
        normalisation : {"stamp_rms", "global", "none"}
            ``stamp_rms`` divides each channel of each stamp by its RMS (flux-free);
            ``global`` divides by the training set's per-channel RMS (``input_scale``).

        Notes
        -----
        Buffers: ``input_scale`` (C,) and ``target_scale`` (2,), the RMS of the
        training targets; the network predicts targets in units of it.
        ``symmetrize`` is a run-time switch, not part of the weights.
        """

        def __init__(self, in_channels: int = 1, stamp_size: int = 40, width: int = 32, blocks: int = 3,
                     hidden: int = 128, normalisation: str = "stamp_rms"):
            super().__init__()
            if normalisation not in ("stamp_rms", "global", "none"):
                raise ValueError(f"unknown normalisation {normalisation!r}")
            self.in_channels = in_channels
            self.stamp_size = stamp_size
            self.normalisation = normalisation
            self.symmetrize = False
            self.net = ShearCNN(in_channels, stamp_size, width, blocks, hidden)
            self.register_buffer("input_scale", torch.ones(in_channels))
            self.register_buffer("target_scale", torch.ones(2))
            self.register_buffer("d4_signs", torch.tensor(D4_SIGNS, dtype=torch.float32), persistent=False)

        def normalise(self, x):
            if self.normalisation == "stamp_rms":
                rms = torch.sqrt(torch.mean(x * x, dim=(2, 3), keepdim=True))
                return x / torch.clamp(rms, min=1e-30)
            if self.normalisation == "global":
                return x / self.input_scale.view(1, -1, 1, 1)
            return x

        def forward(self, x):
            x = self.normalise(x)
            if not self.symmetrize:
                return self.net(x) * self.target_scale
            n = x.shape[0]
            xt = x.transpose(-1, -2)
            stacked = torch.cat([x, x.flip(-1), x.flip(-2), x.flip((-2, -1)),
                                 xt, xt.flip(-1), xt.flip(-2), xt.flip((-2, -1))], dim=0)
            y = self.net(stacked).reshape(8, n, 2) * self.d4_signs.view(8, 1, 2)
            return y.mean(dim=0) * self.target_scale

    return ShearCNN, ShearEstimator


_CLASSES = None


def classes():
    """``(ShearCNN, ShearEstimator)``, built on first use (torch imported lazily)."""
    global _CLASSES
    if _CLASSES is None:
        _CLASSES = _build_classes()
    return _CLASSES


def make_estimator(**kwargs):
    """Construct a ShearEstimator (the checkpoint registry's constructor)."""
    return classes()[1](**kwargs)


REGISTRY = {ARCHITECTURE: make_estimator}


def load_estimator(path, device: str = "cpu"):
    """Load a trained estimator from a checkpoint folder.

    Returns
    -------
    model : ShearEstimator
        In eval mode, on ``device``.
    meta : dict
        ``model.json``.

    Raises
    ------
    astrotool.errors.InputError
        Not a checkpoint, another model's checkpoint, or corrupt weights.
    """
    from astrotool.ml.checkpoint import build_model, load_checkpoint

    ckpt = load_checkpoint(path, expect_architecture=ARCHITECTURE)
    model = build_model(ckpt, REGISTRY).to(device)
    return model, ckpt.meta


def check_stamps(x: np.ndarray, meta_or_model, source) -> np.ndarray:
    """Validate raw stamps for a model: shape (n, C, S, S), finite pixels.

    Raises
    ------
    astrotool.errors.InputError
        Naming ``source`` when the size or channel count is wrong or pixels are NaN/inf.
    """
    from astrotool.errors import InputError

    if isinstance(meta_or_model, dict):
        kw = meta_or_model["architecture"]["kwargs"]
        s, c = int(kw["stamp_size"]), int(kw["in_channels"])
    else:
        s, c = meta_or_model.stamp_size, meta_or_model.in_channels
    x = np.asarray(x)
    if x.ndim != 4 or x.shape[2:] != (s, s):
        got = "x".join(str(d) for d in x.shape[-2:]) if x.ndim >= 2 else str(x.shape)
        raise InputError(source, f"image is {got} pixels; the model expects {s}x{s} stamps")
    if x.shape[1] != c:
        raise InputError(source, f"{x.shape[1]} channel(s) given; the model expects {c} "
                                 f"({'galaxy + PSF' if c == 2 else 'galaxy only'})")
    finite = np.isfinite(x).all(axis=(1, 2, 3))
    if not finite.all():
        raise InputError(source, f"NaN or infinite pixels in {int((~finite).sum())} stamp(s) "
                                 f"(first: #{int(np.flatnonzero(~finite)[0])})")
    return x.astype(np.float32, copy=False)


def predict_array(model, x: np.ndarray, batch_size: int = 256, symmetrize: bool = True,
                  device=None) -> np.ndarray:
    """Run the estimator on raw stamps.

    Parameters
    ----------
    model : ShearEstimator
    x : numpy.ndarray
        float32 (n, C, S, S).
    batch_size : int
    symmetrize : bool
        Average over the 8 flips/rotations.

    Returns
    -------
    numpy.ndarray
        (n, 2) shear estimates (g1, g2).
    """
    import torch

    device = device or next(model.parameters()).device
    model.eval()
    old = model.symmetrize
    model.symmetrize = symmetrize
    out = []
    try:
        with torch.no_grad():
            for i in range(0, len(x), batch_size):
                xb = torch.from_numpy(np.ascontiguousarray(x[i:i + batch_size])).to(device)
                out.append(model(xb).cpu().numpy())
    finally:
        model.symmetrize = old
    return np.concatenate(out) if out else np.zeros((0, 2), np.float32)
