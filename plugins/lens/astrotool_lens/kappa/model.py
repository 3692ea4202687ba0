"""The U-Net that maps ellipticity maps to convergence maps (torch, imported lazily).

Inputs: the full stack ``(n, C, S, S)`` float32 of raw channels, always
``e1, e2, de`` (the Datathon's ``EPSILON`` map) followed by the extra channels
the model was trained with (:func:`model_inputs` builds them with numpy, outside
the network, so torch and ONNX Runtime see identical inputs):

* ``ks`` -- the Kaiser-Squires E-mode map of ``(e1, e2)``
  (:func:`astrotool_lens.kappa.maps.kaiser_squires`), Gaussian-smoothed by
  ``ks_sigma`` pixels;
* ``abs_e`` -- ``|epsilon| = sqrt(e1^2 + e2^2)``.

Output: kappa ``(n, S, S)`` float32. The network (:class:`KappaUNet`) holds its
own normalisation as buffers -- per-channel ``input_shift``/``input_scale`` (the
training set's mean and RMS about it) and ``target_shift``/``target_scale`` (of
kappa) -- so the saved weights and the ONNX graph need nothing else.

Architecture: ``depth`` levels of 2x2 max-pool down and bilinear (or transposed
convolution) up with skip connections; every level is a DoubleConv (3x3
convolution, batch norm, ReLU, twice) of ``width * 2**level`` channels. The map
side must be divisible by ``2**depth``.

Symmetry: channels 0 and 1 are a spin-2 field; a flip of the grid negates
``e2`` and a 90-degree rotation negates ``e1`` and ``e2``, while ``de``, ``ks``,
``abs_e`` and kappa are scalars (:func:`astrotool_lens.kappa.maps.d4_maps`).
``ks`` of the transformed epsilon equals the transformed ``ks``, so the stack
can be augmented after it is built (:func:`augment`).
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

__docformat__ = "numpy"

__all__ = ["ARCHITECTURE", "BASE_CHANNELS", "EXTRA_CHANNELS", "augment", "channel_names", "classes",
           "input_spec", "load_unet", "make_unet", "model_inputs"]

ARCHITECTURE = "lens_kappa_unet"
"""The architecture name checkpoints of the mass-map U-Net record."""

BASE_CHANNELS = ("e1", "e2", "de")
"""The channels of a Datathon ``EPSILON`` map, always the first three inputs."""

EXTRA_CHANNELS = ("ks", "abs_e")
"""Extra input channels :func:`model_inputs` can add (in the order the configuration lists them)."""


def _torch():
    import torch
    from torch import nn

    return torch, nn


def _build_classes():
    torch, nn = _torch()
    F = torch.nn.functional

    class DoubleConv(nn.Module):
        """(3x3 convolution, batch norm, ReLU) twice."""

        def __init__(self, c_in: int, c_out: int, c_mid: int | None = None):
            super().__init__()
            c_mid = c_mid or c_out
            self.block = nn.Sequential(
                nn.Conv2d(c_in, c_mid, 3, padding=1, bias=False), nn.BatchNorm2d(c_mid), nn.ReLU(inplace=True),
                nn.Conv2d(c_mid, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
            )

        def forward(self, x):
            return self.block(x)

    class Up(nn.Module):
        """Upsample by 2, concatenate the skip connection, DoubleConv."""

        def __init__(self, c_in: int, c_skip: int, c_out: int, upsample: str):
            super().__init__()
            self.upsample = upsample
            if upsample == "transpose":
                self.up = nn.ConvTranspose2d(c_in, c_in // 2, 2, stride=2)
                c_in = c_in // 2
            else:
                self.up = None
            self.conv = DoubleConv(c_in + c_skip, c_out)

        def forward(self, x, skip):
            if self.up is None:
                x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
            else:
                x = self.up(x)
            return self.conv(torch.cat([skip, x], dim=1))

    class UNet(nn.Module):
        """A plain U-Net: ``(n, C, S, S)`` -> ``(n, 1, S, S)``."""

        def __init__(self, in_channels: int, width: int, depth: int, upsample: str = "bilinear"):
            super().__init__()
            chans = [width * 2**k for k in range(depth + 1)]
            self.inc = DoubleConv(in_channels, chans[0])
            self.down = nn.ModuleList(DoubleConv(chans[k], chans[k + 1]) for k in range(depth))
            self.up = nn.ModuleList(Up(chans[k + 1], chans[k], chans[k], upsample) for k in reversed(range(depth)))
            self.outc = nn.Conv2d(chans[0], 1, 1)

        def forward(self, x):
            skips = [self.inc(x)]
            for block in self.down:
                skips.append(block(F.max_pool2d(skips[-1], 2)))
            y = skips.pop()
            for block in self.up:
                y = block(y, skips.pop())
            return self.outc(y)

    class KappaUNet(nn.Module):
        """Normalisation + :class:`UNet` + output scaling: raw input stack -> kappa ``(n, S, S)``.

        Parameters
        ----------
        in_channels : int
            3 (e1, e2, de) plus the extra channels.
        width : int
            Channels of the first level (doubled per level).
        depth : int
            Pooling levels; the map side must be divisible by ``2**depth``.
        upsample : {"bilinear", "transpose"}

        Notes
        -----
        Buffers: ``input_shift``, ``input_scale`` (C,) and ``target_shift``,
        ``target_scale`` (1,): ``kappa = target_shift + target_scale *
        net((x - input_shift) / input_scale)``.
        """

        def __init__(self, in_channels: int = 4, width: int = 16, depth: int = 4, upsample: str = "bilinear"):
            super().__init__()
            if upsample not in ("bilinear", "transpose"):
                raise ValueError(f"upsample must be 'bilinear' or 'transpose', got {upsample!r}")
            if in_channels < 3:
                raise ValueError(f"in_channels must be >= 3 (e1, e2, de), got {in_channels}")
            self.in_channels, self.width, self.depth, self.upsample = int(in_channels), int(width), int(depth), upsample
            self.net = UNet(self.in_channels, self.width, self.depth, upsample)
            self.register_buffer("input_shift", torch.zeros(self.in_channels))
            self.register_buffer("input_scale", torch.ones(self.in_channels))
            self.register_buffer("target_shift", torch.zeros(1))
            self.register_buffer("target_scale", torch.ones(1))

        @property
        def multiple(self) -> int:
            """The map side must be a multiple of this (``2**depth``)."""
            return 2**self.depth

        def normalised(self, x):
            """The network's output in units of the target scale (for the training loss)."""
            x = (x - self.input_shift.view(1, -1, 1, 1)) / self.input_scale.view(1, -1, 1, 1)
            return self.net(x)[:, 0]

        def forward(self, x):
            return self.normalised(x) * self.target_scale + self.target_shift

    return DoubleConv, UNet, KappaUNet


@functools.cache
def classes():
    """``(DoubleConv, UNet, KappaUNet)``, built on first use (torch imported lazily)."""
    return _build_classes()


def make_unet(**kwargs):
    """Construct a :class:`KappaUNet` (the checkpoint registry's constructor)."""
    return classes()[2](**kwargs)


REGISTRY = {ARCHITECTURE: make_unet}


# ---------------------------------------------------------------- inputs


def channel_names(extra_inputs) -> list[str]:
    """Names of the input channels: ``e1, e2, de`` and then ``extra_inputs`` in order.

    Raises
    ------
    ValueError
        An unknown or repeated extra channel.
    """
    extra = list(extra_inputs)
    bad = [c for c in extra if c not in EXTRA_CHANNELS]
    if bad:
        raise ValueError(f"unknown extra input channel(s) {', '.join(map(repr, bad))} "
                         f"(known: {', '.join(EXTRA_CHANNELS)})")
    if len(set(extra)) != len(extra):
        raise ValueError(f"extra input channels repeat: {extra}")
    return [*BASE_CHANNELS, *extra]


def input_spec(extra_inputs, ks_sigma: float, size: int, depth: int) -> dict:
    """What :func:`model_inputs` needs, as stored in a checkpoint's ``meta["inputs"]``."""
    return {"channels": channel_names(extra_inputs), "extra_inputs": list(extra_inputs), "ks_sigma": float(ks_sigma),
            "size": int(size), "multiple": 2 ** int(depth)}


def _spec(meta: dict) -> dict:
    spec = meta.get("inputs", meta)
    if not isinstance(spec, dict) or "extra_inputs" not in spec:
        raise ValueError("not a kappa U-Net's metadata: no 'inputs' (channels, extra_inputs, ks_sigma)")
    return spec


def model_inputs(epsilon: np.ndarray, meta: dict, source=None) -> np.ndarray:
    """The model's full input stack from Datathon ``EPSILON`` maps.

    Parameters
    ----------
    epsilon : numpy.ndarray, shape (n, 3, S, S)
        e1, e2, de (any floating dtype; float16 as stored).
    meta : dict
        The checkpoint's ``model.json`` (:func:`load_unet`), or its ``inputs``
        entry (:func:`input_spec`).
    source : str or path-like, optional
        Named in error messages.

    Returns
    -------
    numpy.ndarray
        float32 ``(n, C, S, S)``: ``e1, e2, de`` and the extra channels in the
        order of ``meta["inputs"]["channels"]``.

    Raises
    ------
    astrotool.errors.InputError
        Wrong shape, a side other than the training maps' (``meta["inputs"]["size"]``),
        or one the network cannot take (not a multiple of ``2**depth``).
    """
    from astrotool.errors import InputError

    from astrotool_lens.kappa.maps import kaiser_squires

    spec = _spec(meta)
    where = source if source is not None else "epsilon"
    eps = np.asarray(epsilon)
    if eps.ndim != 4 or eps.shape[1] != 3 or eps.shape[2] != eps.shape[3]:
        raise InputError(where, f"epsilon maps must be (n, 3, S, S) (e1, e2, de), got {eps.shape}")
    side, mult = int(eps.shape[-1]), int(spec.get("multiple", 1))
    if spec.get("size") and side != int(spec["size"]):
        raise InputError(where, f"maps are {side}x{side} pixels; this U-Net was trained on {spec['size']}x"
                                f"{spec['size']} maps (it learned one field size and pixel scale): train one on maps "
                                "like these")
    if side % mult:
        raise InputError(where, f"maps are {side}x{side} pixels; this U-Net needs a side divisible by {mult} "
                                f"(2**depth)")
    out = np.empty((eps.shape[0], len(spec["channels"]), side, side), np.float32)
    out[:, :3] = eps
    for c, name in enumerate(spec["channels"][3:], start=3):
        if name == "ks":
            out[:, c] = kaiser_squires(eps[:, 0], eps[:, 1], sigma=float(spec["ks_sigma"]))[0]
        elif name == "abs_e":
            e1, e2 = eps[:, 0].astype(np.float32), eps[:, 1].astype(np.float32)
            out[:, c] = np.sqrt(e1 * e1 + e2 * e2)
        else:
            raise ValueError(f"unknown input channel {name!r}")
    return out


def augment(x: np.ndarray, kappa: np.ndarray | None, ks) -> tuple[np.ndarray, np.ndarray | None]:
    """Apply the grid symmetry ``ks[i]`` (0-7) to input stack ``x[i]`` and target ``kappa[i]``.

    Spin-2 signs on channels 0 and 1, the other channels and kappa as scalars
    (:func:`astrotool_lens.kappa.maps.d4_maps`).

    Parameters
    ----------
    x : numpy.ndarray, shape (n, C, S, S)
    kappa : numpy.ndarray, shape (n, S, S), optional
    ks : array-like of int, shape (n,)

    Returns
    -------
    x, kappa : numpy.ndarray
        Transformed copies.
    """
    from astrotool_lens.kappa.maps import d4_maps

    ks = np.asarray(ks, dtype=int)
    x_out = np.array(x, copy=True)
    k_out = None if kappa is None else np.array(kappa, copy=True)
    for k in np.unique(ks):
        if not k:
            continue
        sel = np.flatnonzero(ks == k)
        e, kt = d4_maps(x_out[sel], None if k_out is None else k_out[sel], int(k))
        x_out[sel] = e
        if k_out is not None:
            k_out[sel] = kt
    return x_out, k_out


# ---------------------------------------------------------------- checkpoints


def load_unet(model_dir, device: str = "cpu"):
    """Load a trained kappa U-Net from its checkpoint folder.

    Parameters
    ----------
    model_dir : path-like
        ``lens/kappa/models/<model>`` (``model.safetensors`` + ``model.json``).
    device : str

    Returns
    -------
    model : KappaUNet
        In eval mode, on ``device``: raw input stack (:func:`model_inputs`) ->
        kappa ``(n, S, S)``.
    meta : dict
        ``model.json``; ``meta["inputs"]`` says how to build the inputs.

    Raises
    ------
    astrotool.errors.InputError
        Not a checkpoint, another model's checkpoint, or corrupt weights.
    """
    from astrotool.errors import InputError
    from astrotool.ml.checkpoint import META_FILE, build_model, load_checkpoint, warn_unfinished

    ckpt = load_checkpoint(model_dir, expect_architecture=ARCHITECTURE)
    warn_unfinished(ckpt.meta, ckpt.path, "astro lens kappa train", "kappa/models")
    if "inputs" not in ckpt.meta:
        raise InputError(Path(ckpt.path) / META_FILE, "no 'inputs' entry (which channels the model takes)")
    model = build_model(ckpt, REGISTRY).to(device)
    return model, ckpt.meta
