"""CNN shear estimator (torch).

:class:`ShearEstimator` maps raw stamps (n, C, S, S) -- the galaxy, optionally
the PSF as a second channel -- to a shear estimate (g1, g2). It contains its
own input normalisation and output scaling (buffers saved in the checkpoint),
so the exported ONNX graph and a loaded checkpoint take raw pixels.

Noise level: with ``normalisation="stamp_rms+noise"`` the network also reads
each galaxy stamp's noise sigma (1.4826 MAD of its outer frame,
:func:`frame_sigma`, the estimate :func:`astrotool_lens.metacal.frame_sigma`
makes) over the stamp's RMS, as one more input channel. It is computed inside
the model from the pixels, so training, ``predict`` on a user's stamps and the
ONNX export all use this one estimate; no truth is needed.

Calibration: ``calib_m`` and ``calib_c`` (buffers, zero until ``astro lens
calibrate`` measures them on constant-shear simulations) turn the network's
estimate into ``(g - c) / (1 + m)`` per component when ``calibrated`` is on
(the default), so a calibrated checkpoint and its ONNX export agree.

Symmetry: under the 8 flips / 90-degree rotations of the pixel grid a spin-2
quantity changes sign component-wise (:data:`D4_SIGNS`). With ``symmetrize``
the estimator averages ``signs_k * net(T_k x)`` over the 8 transforms, which
makes it exactly equivariant: flipping the input flips the sign of g2, a
90-degree rotation negates g, and for a round PSF and an isotropic population
the network cannot prefer a direction (no additive bias of its own making).
"""

from __future__ import annotations

import functools

import numpy as np

from astrotool_lens.shear import D4_SIGNS, d4_transform  # noqa: F401 - the spin-2 D4 convention, used here

__docformat__ = "numpy"

ARCHITECTURE = "lens_shear_cnn"
"""The architecture name checkpoints of the shear CNN record."""

NORMALISATIONS = ("stamp_rms", "stamp_rms+noise", "global", "none")
"""Input normalisations of :class:`ShearEstimator` (``model.json``: ``architecture.kwargs.normalisation``)."""

ACTIVATIONS = ("relu", "smooth")
"""Activations of :class:`ShearCNN` (``architecture.kwargs.activation``; absent in checkpoints written
before the option: ``relu``, what they were trained with)."""

NOISE_FRAME = 2
"""Width [pixels] of the outer frame of a stamp whose pixels give its noise sigma (:func:`frame_sigma`)."""


def frame_sigma(x, width: int = NOISE_FRAME):
    """Noise sigma of each stamp from its outer frame of ``width`` pixels: 1.4826 x MAD.

    The torch twin of :func:`astrotool_lens.metacal.frame_sigma` (the same
    frame, numpy's median: the mean of the two middle values of an even
    count), written with ``torch.sort`` so that it exports to ONNX.

    Parameters
    ----------
    x : torch.Tensor
        (n, S, S) stamps [counts / pixel], S > 2 ``width``.
    width : int
        Frame width [pixels].

    Returns
    -------
    torch.Tensor
        (n,) noise sigma [counts / pixel]; 0 for a noiseless, empty frame.
    """
    import torch

    w = int(width)
    frame = torch.cat([x[:, :w].flatten(1), x[:, -w:].flatten(1), x[:, w:-w, :w].flatten(1),
                       x[:, w:-w, -w:].flatten(1)], dim=1)
    med = _median(frame)
    return 1.4826 * _median(torch.abs(frame - med.unsqueeze(1)))


def _median(v):
    """Median along axis 1 of (n, k), as numpy's (mean of the two middle values for even k)."""
    import torch

    s = torch.sort(v, dim=1).values
    k = int(v.shape[1])
    return s[:, k // 2] if k % 2 else 0.5 * (s[:, k // 2 - 1] + s[:, k // 2])


def _torch():
    import torch
    from torch import nn

    return torch, nn


def _build_classes():
    torch, nn = _torch()

    class ShearCNN(nn.Module):
        """Conv blocks (3x3 conv, BN, activation twice, 2x2 pooling) and a two-layer head.

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
        activation : {"relu", "smooth"}
            ``relu``: ReLU and max-pooling (a piecewise-linear function of the pixels);
            ``smooth``: SiLU and average pooling, so the output is a smooth function of
            the pixels and finite-difference responses to small shears are accurate.
        """

        def __init__(self, in_channels: int = 1, stamp_size: int = 40, width: int = 32, blocks: int = 3,
                     hidden: int = 128, activation: str = "relu"):
            super().__init__()
            if activation not in ACTIVATIONS:
                raise ValueError(f"unknown activation {activation!r}")
            act_class, pool = {"relu": (nn.ReLU, nn.MaxPool2d), "smooth": (nn.SiLU, nn.AvgPool2d)}[activation]

            def act():
                return act_class(inplace=True)

            layers = []
            c_in = in_channels
            for b in range(blocks):
                c_out = width * 2**b
                layers += [
                    nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), act(),
                    nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), act(),
                    pool(2),
                ]
                c_in = c_out
            side = stamp_size // 2**blocks
            if side < 1:
                raise ValueError(f"stamp_size {stamp_size} is too small for {blocks} pooling blocks")
            self.features = nn.Sequential(*layers)
            self.head = nn.Sequential(nn.Flatten(), nn.Linear(c_in * side * side, hidden), act(),
                                      nn.Linear(hidden, 2))

        def forward(self, x):
            return self.head(self.features(x))

    class ShearEstimator(nn.Module):
        """Normalisation + :class:`ShearCNN` + output scaling (+ optional 8-fold symmetrisation).

        Parameters
        ----------
        in_channels, stamp_size, width, blocks, hidden, activation
            See ``ShearCNN``.
        normalisation : {"stamp_rms", "stamp_rms+noise", "global", "none"}
            ``stamp_rms`` divides each channel of each stamp by its RMS (flux-free);
            ``stamp_rms+noise`` does too and appends a channel holding the galaxy
            stamp's noise sigma (:func:`frame_sigma`) over its RMS, so the network
            knows the noise level (both ratios are independent of the flux unit);
            ``global`` divides by the training set's per-channel RMS (``input_scale``).
        noise_frame : int
            Frame width [pixels] of the noise estimate (``stamp_rms+noise``).

        Notes
        -----
        Buffers: ``input_scale`` (C,) and ``target_scale`` (2,), the RMS of the
        training targets (the network predicts targets in units of it), and
        ``calib_m``, ``calib_c`` (2,), the multiplicative and additive bias that
        ``calibrated`` divides out. ``symmetrize`` and ``calibrated`` are
        run-time switches, not part of the weights.
        """

        def __init__(self, in_channels: int = 1, stamp_size: int = 40, width: int = 32, blocks: int = 3,
                     hidden: int = 128, normalisation: str = "stamp_rms", noise_frame: int = NOISE_FRAME,
                     activation: str = "relu"):
            super().__init__()
            if normalisation not in NORMALISATIONS:
                raise ValueError(f"unknown normalisation {normalisation!r}")
            if normalisation == "stamp_rms+noise" and not 1 <= noise_frame < stamp_size / 2:
                raise ValueError(f"noise_frame {noise_frame} does not fit a {stamp_size}-pixel stamp")
            self.in_channels = in_channels
            self.stamp_size = stamp_size
            self.normalisation = normalisation
            self.noise_frame = noise_frame
            self.symmetrize = False
            self.calibrated = True
            self.channels_last = False
            extra = 1 if normalisation == "stamp_rms+noise" else 0
            self.net = ShearCNN(in_channels + extra, stamp_size, width, blocks, hidden, activation)
            self.register_buffer("input_scale", torch.ones(in_channels))
            self.register_buffer("target_scale", torch.ones(2))
            self.register_buffer("calib_m", torch.zeros(2))
            self.register_buffer("calib_c", torch.zeros(2))
            self.register_buffer("d4_signs", torch.tensor(D4_SIGNS, dtype=torch.float32), persistent=False)
            self.register_load_state_dict_pre_hook(_default_calibration)

        @property
        def has_calibration(self) -> bool:
            return bool(torch.any(self.calib_m != 0) or torch.any(self.calib_c != 0))

        def normalise(self, x):
            """The network's input: raw stamps (n, C, S, S) normalised (n, C or C + 1, S, S)."""
            if self.normalisation in ("stamp_rms", "stamp_rms+noise"):
                rms = torch.clamp(torch.sqrt(torch.mean(x * x, dim=(2, 3), keepdim=True)), min=1e-30)
                if self.normalisation == "stamp_rms":
                    return x / rms
                noise = frame_sigma(x[:, 0], self.noise_frame) / rms[:, 0, 0, 0]
                return torch.cat([x / rms, noise.view(-1, 1, 1, 1).expand(-1, 1, *x.shape[2:])], dim=1)
            if self.normalisation == "global":
                return x / self.input_scale.view(1, -1, 1, 1)
            return x

        def _net(self, x):
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            return self.net(x)

        def forward(self, x):
            x = self.normalise(x)
            if not self.symmetrize:
                y = self._net(x) * self.target_scale
            else:
                n = x.shape[0]
                xt = x.transpose(-1, -2)
                stacked = torch.cat([x, x.flip(-1), x.flip(-2), x.flip((-2, -1)),
                                     xt, xt.flip(-1), xt.flip(-2), xt.flip((-2, -1))], dim=0)
                y = self._net(stacked).reshape(8, n, 2) * self.d4_signs.view(8, 1, 2)
                y = y.mean(dim=0) * self.target_scale
            if self.calibrated:
                y = (y - self.calib_c) / (1.0 + self.calib_m)
            return y

    return ShearCNN, ShearEstimator


def _default_calibration(module, state_dict, prefix, *args):
    """Checkpoints written before calibration existed load as uncalibrated."""
    for name in ("calib_m", "calib_c"):
        state_dict.setdefault(prefix + name, getattr(module, name).detach().clone())


def inference_copy(model):
    """A faster copy of an estimator for CPU/GPU inference.

    Each convolution absorbs the batch normalisation that follows it
    (:func:`astrotool.ml.predict.fuse_batchnorm`, eval-mode statistics) and the
    activations are kept channels-last, which oneDNN runs about twice as fast
    on CPU. Outputs agree with ``model`` to float32 rounding (~1e-7).
    """
    import torch

    from astrotool.ml.predict import fuse_batchnorm

    fast = fuse_batchnorm(model)
    fast.net.to(memory_format=torch.channels_last)
    fast.channels_last = True
    return fast


@functools.cache
def classes():
    """``(ShearCNN, ShearEstimator)``, built on first use (torch imported lazily)."""
    return _build_classes()


def make_estimator(**kwargs):
    """Construct a ShearEstimator (the checkpoint registry's constructor)."""
    return classes()[1](**kwargs)


REGISTRY = {ARCHITECTURE: make_estimator}
"""Builder of each architecture name of this module."""


def load_estimator(path, device: str = "cpu", warn: bool = True):
    """Load a trained estimator from a checkpoint folder (``warn``: about a training cut short,
    :func:`astrotool.ml.checkpoint.warn_unfinished`).

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
    from astrotool.ml.checkpoint import build_model, load_checkpoint, warn_unfinished

    ckpt = load_checkpoint(path, expect_architecture=ARCHITECTURE)
    if warn:
        warn_unfinished(ckpt.meta, ckpt.path, "astro lens train")
    model = build_model(ckpt, REGISTRY).to(device)
    return model, ckpt.meta


def stamp_problems(x: np.ndarray) -> np.ndarray:
    """Why each raw stamp cannot be predicted on, ``""`` when it can.

    Parameters
    ----------
    x : numpy.ndarray
        (n, C, S, S) raw stamps [counts / pixel].

    Returns
    -------
    numpy.ndarray
        (n,) str: ``"NaN or infinite pixels"``, ``"blank stamp"`` (every galaxy pixel 0: the
        ``stamp_rms`` normalisation would divide 0 by 0), ``"blank PSF stamp"``, or ``""``.
    """
    x = np.asarray(x)
    out = np.full(len(x), "", dtype=object)
    finite = np.isfinite(x).all(axis=(1, 2, 3))
    blank = ~np.any(x != 0, axis=(2, 3))            # (n, C): a channel of zeros
    out[blank[:, 1:].any(axis=1)] = "blank PSF stamp" if x.shape[1] > 1 else ""
    out[blank[:, 0]] = "blank stamp"
    out[~finite] = "NaN or infinite pixels"
    return out.astype(str)


def check_stamps(x: np.ndarray, meta_or_model, source, per_stamp: bool = False) -> np.ndarray:
    """Validate raw stamps for a model: shape (n, C, S, S), finite pixels.

    Parameters
    ----------
    per_stamp : bool
        Leave NaN/inf pixels to :func:`predict_stamps` (NaN shear for those stamps, flagged)
        instead of refusing the input; training and calibration refuse them.

    Raises
    ------
    astrotool.errors.InputError
        Naming ``source`` when the size or channel count is wrong or (unless ``per_stamp``) pixels are NaN/inf.
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
    if not per_stamp and not finite.all():
        raise InputError(source, f"NaN or infinite pixels in {int((~finite).sum())} stamp(s) "
                                 f"(first: #{int(np.flatnonzero(~finite)[0])}); training and calibration need "
                                 "finite pixels (predict and evaluate flag such stamps)")
    return x.astype(np.float32, copy=False)


def _mode(symmetrize: bool) -> str:
    return "--symmetrize" if symmetrize else "--no-symmetrize"


def calibration_in_use(model, meta: dict, calibrated: bool = True, symmetrize: bool | None = None, *,
                       explicit: bool = False, model_name: str | None = None, min_response: float = 0.0,
                       source=None, instead: str = "use --raw") -> dict | None:
    """The checkpoint's calibration record when ``calibrated`` applies one, else None.

    A calibration is only applied in the symmetrize mode it was fitted in (``model.json``:
    ``calibration.symmetrize``; a record without it is applied in either mode).

    Parameters
    ----------
    model : ShearEstimator
    meta : dict
        ``model.json``.
    calibrated : bool
        Apply the calibration (``--calibrated``, the default).
    symmetrize : bool, optional
        The mode the estimates are made in; None: not checked.
    explicit : bool
        ``--calibrated`` was asked for explicitly: a calibration of the other mode is refused
        (exit 2) instead of skipped with a warning.
    model_name : str, optional
        For the messages (default ``meta["name"]`` or "the model").
    min_response : float
        A calibration applied whose ``1 + m1`` or ``1 + m2`` is below this is refused
        (``lens.calibrate.min_response``, as for a calibration file and in ``export``).
    source : path-like, optional
        The ``model.json`` named in that refusal.
    instead : str
        What else that refusal advises, after calibrating again (the command's way to raw estimates).

    Raises
    ------
    astrotool.errors.InputError
        ``explicit`` and the calibration was fitted in the other mode, or the calibration applied
        responds less than ``min_response``.
    """
    record = meta.get("calibration") if calibrated and model.has_calibration else None
    if record is None or symmetrize is None or record.get("symmetrize") is None \
            or bool(record["symmetrize"]) == bool(symmetrize):
        from astrotool_lens.calibrate import low_response

        low = low_response(record, min_response) if record is not None else None
        if low:
            from astrotool.errors import InputError

            raise InputError(source or model_name or "model.json",
                             f"its calibration's {low}, below lens.calibrate.min_response = {min_response:g}: "
                             "dividing by 1 + m would blow the estimates up (a model that hardly responds to "
                             f"shear); calibrate again, or {instead}")
        return record
    name = model_name or meta.get("name") or "the model"
    fitted, now = _mode(bool(record["symmetrize"])), _mode(bool(symmetrize))
    how = f"`astro lens calibrate --model {name} --dataset ... {now}` (it replaces the {fitted} one)"
    if explicit:
        from astrotool.errors import InputError

        raise InputError("--calibrated", f"the calibration of {name} was fitted with {fitted} and is not valid "
                                         f"with {now}: use {fitted}, --raw, or calibrate in this mode with {how}")
    import logging

    logging.getLogger("astro").warning("%s: calibration fitted with %s, not applied with %s: estimates are raw "
                                       "(calibrate in this mode with %s)", name, fitted, now, how)
    return None


def apply_calibration(model, g: np.ndarray) -> np.ndarray:
    """``(g - c) / (1 + m)`` with the model's calibration, for raw estimates ``g`` (n, 2)."""
    return calibrate_estimates(g, model.calib_m.detach().cpu().numpy(), model.calib_c.detach().cpu().numpy())


def calibrate_estimates(g: np.ndarray, m, c) -> np.ndarray:
    """``(g - c) / (1 + m)`` per component, for raw estimates ``g`` (n, 2) and a bias ``m, c`` (2,) each."""
    m, c = np.asarray(m, float).reshape(2), np.asarray(c, float).reshape(2)
    return (np.asarray(g, float) - c) / (1.0 + m)


def predict_stamps(model, x: np.ndarray, batch_size: int = 32, symmetrize: bool = True,
                   calibrated: bool = True, device=None, precision: str = "32", problems=None):
    """Run the estimator on raw stamps through :func:`astrotool.ml.predict.predict`.

    Parameters
    ----------
    model : ShearEstimator, path-like or onnxruntime.InferenceSession
        A loaded estimator (run through its :func:`inference_copy`), or its
        ONNX export (``astro lens export``), whose graph already fixes
        ``symmetrize`` and ``calibrated``: check them with :func:`check_onnx`.
    x : numpy.ndarray
        float32 (n, C, S, S).
    batch_size : int
        Stamps per forward pass (8 times as many images with ``symmetrize``).
    symmetrize : bool
        Average over the 8 flips/rotations (torch only).
    calibrated : bool
        Divide out the checkpoint's calibration (a no-op for an uncalibrated one; torch only).
    device : str or torch.device, optional
        Default: the model's device (torch), the CPU (ONNX Runtime).
    precision : {"32", "bf16-mixed", "16-mixed"}
        Autocast (torch only).
    problems : numpy.ndarray, optional
        :func:`stamp_problems` of ``x``, when the caller has them already (default: computed here).

    Returns
    -------
    astrotool.ml.predict.Predictions
        ``outputs`` (n, 2) shear estimates (g1, g2), and the throughput (``n``: the stamps run). A
        stamp with NaN/inf pixels or a blank one (:func:`stamp_problems`) is not run: its row is NaN.
    """
    import dataclasses

    from astrotool.ml.predict import Predictions, predict

    x = np.asarray(x)
    good = (stamp_problems(x) if problems is None else np.asarray(problems)) == ""
    if good.all():
        part = x
    else:   # batches of the good stamps only: no copy of the whole array
        keep = np.flatnonzero(good)
        part = (np.ascontiguousarray(x[keep[i:i + batch_size]]) for i in range(0, len(keep), batch_size))
    onnx = not hasattr(model, "net")
    if not good.any():   # nothing to run
        run = Predictions(np.zeros((0, 2), np.float32), 0, 0.0, "onnxruntime" if onnx else "torch",
                          "cpu" if device is None else str(device), precision, batch_size)
    elif onnx:  # an ONNX export
        run = predict(model, part, batch_size=batch_size, device=None if device is None else str(device),
                      precision=precision)
    else:
        device = device or next(model.parameters()).device
        fast = inference_copy(model)
        fast.symmetrize, fast.calibrated = symmetrize, calibrated
        run = predict(fast, part, batch_size=batch_size, device=str(device), precision=precision)
    if good.all():
        return run
    outputs = np.full((len(x), 2), np.nan, dtype=np.float32)
    if good.any():
        outputs[good] = np.asarray(run.outputs).reshape(-1, 2)
    return dataclasses.replace(run, outputs=outputs, batch_size=batch_size)


def predict_array(model, x: np.ndarray, batch_size: int = 32, symmetrize: bool = True,
                  calibrated: bool = True, device=None, problems=None) -> np.ndarray:
    """(n, 2) shear estimates (g1, g2) of raw stamps; see :func:`predict_stamps`."""
    return predict_stamps(model, x, batch_size, symmetrize, calibrated, device, problems=problems).outputs


def check_onnx(path, meta: dict, symmetrize: bool, calibrated: bool) -> dict:
    """The ONNX export's own description, checked against the checkpoint and the request.

    Raises
    ------
    astrotool.errors.InputError
        Naming the file: it was exported from other weights (the checkpoint was
        retrained or calibrated since), or with another symmetrisation or
        calibration than asked for.
    """
    from astrotool.errors import InputError
    from astrotool.ml.export import check_onnx_weights

    onnx = check_onnx_weights(path, meta, "astro lens export").get("onnx", {})
    has_calibration = meta.get("calibration") is not None
    if bool(onnx.get("symmetrize")) != bool(symmetrize) or bool(onnx.get("calibrated")) != (calibrated and
                                                                                             has_calibration):
        raise InputError(path, f"exported with symmetrize={onnx.get('symmetrize')}, calibrated="
                               f"{onnx.get('calibrated')}; asked for symmetrize={symmetrize}, calibrated="
                               f"{calibrated and has_calibration} (export again with those options)")
    return onnx
