"""The 1-D segmentation networks: a transit probability for every sample of a light curve.

:class:`TransitNet` wraps one of two decoders around the same encoder:

* ``unet3p`` -- U-Net 3+ (Huang et al. 2020), Panopticon's published model:
  every decoder level sees all encoder levels above it (max-pooled down) and
  all decoder levels below it (upsampled), each mapped to ``width`` channels,
  concatenated and fused;
* ``unet`` -- the classic U-Net: upsample, concatenate the skip, two convolutions;
* ``unetpp`` -- U-Net++ (Zhou et al. 2018): nested skip pathways, node
  ``(i, j)`` a block over every node left of it on level ``i`` and the
  upsampled node ``(i + 1, j - 1)``; the output comes from node ``(0, depth - 1)``.

Every convolution block is Dropout1d -> Conv1d (reflect padding, no bias) ->
BatchNorm -> ReLU, as in Panopticon. The network's own first steps make it
independent of the flux scale and cheap at PLATO's cadence:

1. with ``trend_window > 0``, each curve's running median over that many
   samples is subtracted (:func:`remove_trend`): left in, an aperture-mask
   update's flux step sets the level the network compares dips with, and the
   transits after a step of a few hundred ppm go unseen;
2. each curve (and channel) is centred on its mean and divided by its
   point-to-point noise, ``sqrt(pi) / 2 * mean(|diff(x)|)`` (the standard
   deviation of white noise), or, with ``noise_bin > 1``, by the larger of that
   and the same scatter measured between means of ``noise_bin`` samples and
   scaled back by ``sqrt(noise_bin)`` (:func:`normalise`): equal for white
   noise, larger where red noise (granulation, activity) dominates on that time
   scale, so a bright star's hour-long wiggles enter the network as they do for
   a faint star's;
3. ``bin`` consecutive samples are averaged (25 s x 16 = 400 s: a 2-h transit
   still spans 18 bins, and the network needs a receptive field 16 times shorter);
4. values are soft-clipped, ``c * asinh(x / c)`` with ``c =`` :data:`SOFT_CLIP`,
   so deep binary eclipses and outliers do not swamp the batch statistics.

The logits come back at the input cadence (each bin's logit repeated), so the
input and the output have the same length. The input length must be divisible
by ``bin * 2**(depth - 1)`` (:func:`granularity`); :func:`pad_to` pads a curve
to that.

Inputs are relative flux, ``flux / median - 1``, shape ``(batch, length)`` or
``(batch, channels, length)``; outputs are logits ``(batch, length)``.
"""

from __future__ import annotations

import math

import torch
from torch import nn
import torch.nn.functional as F

__docformat__ = "numpy"

ARCHITECTURE = "plato_transit_net"
"""The name checkpoints record (:func:`astrotool.ml.checkpoint.build_model`)."""

DECODERS = ("unet3p", "unet", "unetpp")
"""Decoders of :class:`TransitNet`: U-Net 3+, U-Net, U-Net++."""

BN_EPS = 1e-3
"""BatchNorm's epsilon. torch's 1e-5 lets a channel that a batch leaves constant amplify gradients by
1/sqrt(eps) = 316 per layer; over a U-Net 3+'s dozens of layers that overflowed float32 (a gradient norm
above 1e19 after 15 epochs on ten-day curves)."""

SOFT_CLIP = 5.0
"""Inputs pass through ``c * asinh(x / c)`` after normalisation and binning: linear within a few sigma
(noise, planet transits), logarithmic beyond, so a 20 % binary eclipse (~700 sigma) stays a ~35 input."""


def granularity(bin: int, depth: int) -> int:
    """The number the input length must be divisible by: ``bin * 2**(depth - 1)``."""
    return int(bin) * 2 ** (int(depth) - 1)


def min_length(bin: int, depth: int, kernel_size: int, dilation: int) -> int:
    """The shortest input [samples]: the deepest level's convolutions pad by reflection, which needs more
    samples there than the padding, ``dilation * (kernel_size // 2)``."""
    return granularity(bin, depth) * (int(dilation) * (int(kernel_size) // 2) + 1)


def _conv(cin: int, cout: int, kernel: int, dilation: int) -> nn.Conv1d:
    return nn.Conv1d(cin, cout, kernel, padding=dilation * (kernel // 2), dilation=dilation,
                     padding_mode="reflect", bias=False)


def _single(cin: int, cout: int, kernel: int, dilation: int, dropout: float, eps: float = 1e-3) -> nn.Sequential:
    """Dropout1d [0] -> Conv1d [1] -> BatchNorm1d [2] -> ReLU [3]."""
    return nn.Sequential(nn.Dropout1d(dropout), _conv(cin, cout, kernel, dilation), nn.BatchNorm1d(cout, eps=eps),
                         nn.ReLU(inplace=True))


def _block(cin: int, cout: int, kernel: int, dilation: int, dropout: float, eps: float = 1e-3) -> nn.Sequential:
    """:func:`_single` and a second Conv1d [4] -> BatchNorm1d [5] -> ReLU [6]."""
    return nn.Sequential(*_single(cin, cout, kernel, dilation, dropout, eps),
                         *list(_single(cout, cout, kernel, dilation, 0.0, eps))[1:])


def minmax(x: torch.Tensor) -> torch.Tensor:
    """Each row scaled to [0, 1] by its minimum and maximum (Panopticon's normalisation)."""
    lo = x.amin(dim=-1, keepdim=True)
    return (x - lo) / (x.amax(dim=-1, keepdim=True) - lo + 1e-12)


MEDIAN_ABS_DIFF = 0.6744897501960817 * math.sqrt(2.0)
"""Median of ``|a - b|`` for independent unit normals ``a``, ``b``."""

MIN_NOISE_BLOCKS = 16
"""Fewer block means than this and :func:`normalise` keeps the point-to-point noise alone."""


TREND_MEANS = 432
"""Means per running-median window of :func:`remove_trend`, whatever its length."""


def remove_trend(x: torch.Tensor, window: int) -> torch.Tensor:
    """Subtract each row's running median over ``window`` samples.

    The median runs over means of ``max(window // TREND_MEANS, 1)`` samples (16
    for 6912), so its cost does not grow with the window. A median keeps a flux
    step's edge sharp, so the step leaves the curve with the trend (rotation,
    drifts, aperture-mask updates), while a transit or an eclipse shorter than
    half the window stays nearly at full depth.

    Parameters
    ----------
    x : torch.Tensor
        ``(batch, channels, length)`` relative flux.
    window : int
        Samples in the running median (ends repeated).

    Returns
    -------
    torch.Tensor
        ``x`` minus the running median, same shape.
    """
    step = max(window // TREND_MEANS, 1)
    coarse = F.avg_pool1d(x, step, ceil_mode=True) if step > 1 else x
    half = max(window // (2 * step), 1)
    trend = F.pad(coarse, (half, half), mode="replicate").unfold(-1, 2 * half + 1, 1).median(dim=-1).values
    return x - trend.repeat_interleave(step, dim=-1)[..., :x.shape[-1]]


def normalise(x: torch.Tensor, noise_bin: int = 1) -> torch.Tensor:
    """Centre each row on its mean and scale it by its noise on the shortest or on a longer time scale.

    Parameters
    ----------
    x : torch.Tensor
        ``(batch, channels, length)`` relative flux.
    noise_bin : int
        1: the point-to-point noise ``sqrt(pi) / 2 * mean(|diff(x)|)`` (white-noise sigma). Larger: the
        maximum of that and ``sqrt(noise_bin) * median(|diff(m)|) / (0.6745 sqrt(2))``, ``m`` the means of
        consecutive ``noise_bin`` samples -- the white-noise sigma again for white noise, larger where red
        noise dominates on that time scale. The median ignores the few block differences a step, an
        eclipse or a transit makes.
    """
    x = x - x.mean(dim=-1, keepdim=True)
    sigma = (math.sqrt(math.pi) / 2.0) * (x[..., 1:] - x[..., :-1]).abs().mean(dim=-1, keepdim=True)
    if noise_bin > 1 and x.shape[-1] // noise_bin >= MIN_NOISE_BLOCKS:
        m = F.avg_pool1d(x, noise_bin)
        slow = (m[..., 1:] - m[..., :-1]).abs().median(dim=-1, keepdim=True).values
        sigma = torch.maximum(sigma, slow * (math.sqrt(noise_bin) / MEDIAN_ABS_DIFF))
    return x / (sigma + 1e-12)


class TransitNet(nn.Module):
    """U-Net 3+ or U-Net over light curves, with its own normalisation and binning.

    Parameters
    ----------
    decoder : {"unet3p", "unet"}
        Decoder family (module docstring).
    in_channels : int
        Flux channels: 1 (co-added) or the camera groups.
    width : int
        Channels of the first level; level ``i`` has ``width * 2**i``.
    depth : int
        Levels, the first included (Panopticon: 5).
    kernel_size : int
        Odd convolution kernel [bins].
    dilation : int
        Convolution dilation.
    dropout : float
        Dropout1d rate at the start of every block.
    bin : int
        Input samples averaged into one (1: none).
    pool : {"avg", "max"}
        Downsampling between levels. Panopticon max-pools; on a transit a few
        tenths of a sigma deep per sample, averaging keeps the signal-to-noise
        that a maximum throws away.
    scaling : {"noise", "minmax"}
        Input scaling: ``noise`` (:func:`normalise` then the asinh soft clip)
        or ``minmax`` (:func:`minmax`, Panopticon's, for its converted weights).
    bn_eps : float
        BatchNorm's epsilon (:data:`BN_EPS`; torch's 1e-5 for Panopticon's weights).
    noise_bin : int
        Samples per block of the longer-time-scale noise the input is also scaled by (:func:`normalise`;
        1: the point-to-point noise only, as models trained before this option).
    trend_window : int
        Samples of the running median subtracted first (:func:`remove_trend`; 0: none, as models trained
        before this option).
    """

    def __init__(self, decoder: str = "unet3p", in_channels: int = 1, width: int = 8, depth: int = 5,
                 kernel_size: int = 9, dilation: int = 1, dropout: float = 0.05, bin: int = 16, pool: str = "avg",
                 scaling: str = "noise", bn_eps: float = BN_EPS, noise_bin: int = 1,
                 trend_window: int = 0):
        super().__init__()
        if decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {DECODERS}, got {decoder!r}")
        if kernel_size % 2 == 0 or kernel_size < 1:
            raise ValueError(f"kernel_size must be odd and positive, got {kernel_size}")
        if depth < 2 or width < 1 or bin < 1 or in_channels < 1 or noise_bin < 1:
            raise ValueError("depth >= 2, width >= 1, bin >= 1, in_channels >= 1 and noise_bin >= 1 are needed")
        if pool not in ("avg", "max"):
            raise ValueError(f"pool must be 'avg' or 'max', got {pool!r}")
        if scaling not in ("noise", "minmax"):
            raise ValueError(f"scaling must be 'noise' or 'minmax', got {scaling!r}")
        if trend_window < 0:
            raise ValueError(f"trend_window must be 0 (none) or positive, got {trend_window}")
        self.scaling, self.noise_bin, self.trend_window = scaling, int(noise_bin), int(trend_window)
        self.decoder, self.depth, self.bin, self.in_channels = decoder, depth, bin, in_channels
        self.kernel_size, self.dilation = kernel_size, dilation
        self._pool = F.avg_pool1d if pool == "avg" else F.max_pool1d
        k, d = kernel_size, dilation
        ch = [width * 2**i for i in range(depth)]
        e = bn_eps
        self.encoder = nn.ModuleList(_block(in_channels if i == 0 else ch[i - 1], ch[i], k, d, dropout, e)
                                     for i in range(depth))
        if decoder == "unet3p":
            cat = width * depth
            # stage s builds decoder level depth-2-s from every encoder level <= it and decoder level > it
            self.links = nn.ModuleList(
                nn.ModuleList(_single(ch[j] if j <= lvl else (ch[-1] if j == depth - 1 else cat), width, k, d,
                                      dropout, e) for j in range(depth))
                for lvl in range(depth - 2, -1, -1))
            self.fuse = nn.ModuleList(_single(cat, cat, k, d, dropout, e) for _ in range(depth - 1))
            self.head = nn.Conv1d(cat, 1, 1)
        elif decoder == "unetpp":
            self.nodes = nn.ModuleDict({f"{i}_{j}": _block(ch[i] * j + ch[i + 1], ch[i], k, d, dropout, e)
                                        for j in range(1, depth) for i in range(depth - j)})
            self.head = nn.Conv1d(ch[0], 1, 1)
        else:
            self.up = nn.ModuleList(_single(ch[i + 1], ch[i], k, d, dropout, e) for i in range(depth - 1))
            self.merge = nn.ModuleList(_block(2 * ch[i], ch[i], k, d, dropout, e) for i in range(depth - 1))
            self.head = nn.Conv1d(ch[0], 1, 1)

    @property
    def granularity(self) -> int:
        """The input length must be divisible by this."""
        return granularity(self.bin, self.depth)

    @property
    def min_length(self) -> int:
        """The shortest padded input [samples] (:func:`min_length`)."""
        return min_length(self.bin, self.depth, self.kernel_size, self.dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            x = x.unsqueeze(1)
        n = x.shape[-1]
        if self.scaling == "minmax":
            h = minmax(x.float())
            if self.bin > 1:
                h = F.avg_pool1d(h, self.bin)
        else:
            h = x.float()
            if self.trend_window:
                h = remove_trend(h, self.trend_window)
            h = normalise(h, self.noise_bin)
            if self.bin > 1:
                h = F.avg_pool1d(h, self.bin)
            h = SOFT_CLIP * torch.asinh(h / SOFT_CLIP)
        enc = []
        for i, block in enumerate(self.encoder):
            h = block(h if i == 0 else self._pool(h, 2))
            enc.append(h)
        if self.decoder == "unet3p":
            dec = {self.depth - 1: enc[-1]}
            for s, lvl in enumerate(range(self.depth - 2, -1, -1)):
                size = enc[lvl].shape[-1]
                parts = []
                for j, link in enumerate(self.links[s]):
                    src = enc[j] if j <= lvl else dec[j]
                    if j < lvl:
                        src = self._pool(src, 2 ** (lvl - j))
                    elif j > lvl:
                        src = F.interpolate(src, size=size, mode="linear", align_corners=False)
                    parts.append(link(src))
                dec[lvl] = self.fuse[s](torch.cat(parts, dim=1))
            h = dec[0]
        elif self.decoder == "unetpp":
            node = {(i, 0): enc[i] for i in range(self.depth)}
            for j in range(1, self.depth):
                for i in range(self.depth - j):
                    up = F.interpolate(node[(i + 1, j - 1)], size=enc[i].shape[-1], mode="linear",
                                       align_corners=False)
                    node[(i, j)] = self.nodes[f"{i}_{j}"](torch.cat([node[(i, m)] for m in range(j)] + [up], dim=1))
            h = node[(0, self.depth - 1)]
        else:
            for i in range(self.depth - 2, -1, -1):
                up = self.up[i](F.interpolate(h, size=enc[i].shape[-1], mode="linear", align_corners=False))
                h = self.merge[i](torch.cat([enc[i], up], dim=1))
        logits = self.head(h)[:, 0]
        if self.bin > 1:
            logits = torch.repeat_interleave(logits, self.bin, dim=-1)
        return logits[..., :n]


def make_model(**kwargs) -> TransitNet:
    """:class:`TransitNet` from keyword arguments (the checkpoint's ``architecture.kwargs``)."""
    return TransitNet(**kwargs)


def min_samples(multiple: int, minimum: int = 0) -> int:
    """The fewest samples :func:`pad_to` takes: more than half of ``multiple`` (reflection pads less than the
    curve), and enough to be padded to ``minimum`` or beyond."""
    return max(multiple // 2 + 1, -(-minimum // multiple) * multiple - multiple + 1)


def pad_to(flux, multiple: int, minimum: int = 0):
    """Pad the last axis of ``flux`` (numpy) by reflection to a multiple of ``multiple``; returns (padded, n).
    ValueError where the padding would be longer than the curve or the padded curve shorter than ``minimum``
    (:attr:`TransitNet.min_length`)."""
    import numpy as np

    n = flux.shape[-1]
    if n < min_samples(multiple, minimum):
        raise ValueError(f"a curve of {n} samples is too short for this model (it needs at least "
                         f"{min_samples(multiple, minimum)})")
    extra = (-n) % multiple
    if extra == 0:
        return flux, n
    pad = [(0, 0)] * (flux.ndim - 1) + [(0, extra)]
    return np.pad(flux, pad, mode="reflect"), n


def loss_function(name: str, focal_gamma: float = 2.0, pos_weight: float = 1.0):
    """The training loss on logits and a 0/1 target: ``bce``, ``dice``, ``focal`` or ``bce+dice``.

    Parameters
    ----------
    name : str
        Loss name.
    focal_gamma : float
        Focusing exponent of the focal loss (Lin et al. 2017).
    pos_weight : float
        Weight of the in-transit samples in the BCE and focal terms.

    Returns
    -------
    callable
        ``loss(logits, target) -> scalar tensor``.
    """

    def bce(logits, target):
        w = torch.tensor(pos_weight, dtype=logits.dtype, device=logits.device)
        return F.binary_cross_entropy_with_logits(logits, target, pos_weight=w)

    def dice(logits, target):  # soft Dice over the batch (Panopticon's form, smoothing 1)
        p = torch.sigmoid(logits)
        return 1.0 - (2.0 * (p * target).sum() + 1.0) / (p.sum() + target.sum() + 1.0)

    def focal(logits, target):
        ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        p_t = torch.exp(-ce)
        w = 1.0 + (pos_weight - 1.0) * target
        return (w * (1.0 - p_t) ** focal_gamma * ce).mean()

    losses = {"bce": bce, "dice": dice, "focal": focal, "bce+dice": lambda lg, t: bce(lg, t) + dice(lg, t)}
    if name not in losses:
        raise ValueError(f"loss must be one of {sorted(losses)}, got {name!r}")
    return losses[name]
