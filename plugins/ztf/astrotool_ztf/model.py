"""The stamp classifier of ALeRCE (Carrasco-Davis et al. 2021), in PyTorch.

Architecture (``deep_hits_with_features``, from Deep-HiTS, Cabrera-Vives et al. 2017):

* every stamp is seen under each transformation of a symmetry group inside the
  batch: the 4 rotations by 90° (``group="c4"``, ALeRCE 2021) or those and their
  mirror images (``group="d4"``, ALeRCE's 2025 variant; the default);
* a body shared by all of them: zero-pad 3 -> conv 4×4/32 (valid) -> conv k×k/32
  -> max-pool 2 -> 3 × conv k×k/64 -> max-pool 2 -> dense 64 (ReLU, dropout);
  ReLU after every convolution, "same" padding;
* cyclic pooling: the mean of the dense outputs over the group, so the
  prediction is exactly invariant under it;
* a head on that and the batch-normalised metadata features: dense 64
  (dropout) -> dense 64 (dropout) -> one logit per class.

Loss (:func:`entropy_regularised_loss`): cross-entropy minus β times the
entropy of the predicted distribution, which penalises over-confidence
(ALeRCE deployed β = 0.5).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__docformat__ = "numpy"

ARCHITECTURE = "ztf_stamp_classifier"
"""The architecture name of :class:`StampClassifier` checkpoints."""


def group_views(x: torch.Tensor, group: str) -> torch.Tensor:
    """The batch under every transformation of ``group`` (``"c4"``: 4 rotations, ``"d4"``: and their mirrors),
    stacked along the batch axis: ``(G * N, C, H, W)``, transformation-major."""
    # the rotations by 90, 180 and 270 degrees (torch.rot90) as flips and transposes, which ONNX exports
    views = [x, x.flip(3).transpose(2, 3), x.flip(2).flip(3), x.transpose(2, 3).flip(3)]
    if group == "d4":
        views += [torch.flip(v, dims=(3,)) for v in views]
    elif group != "c4":
        raise ValueError(f"group must be 'c4' or 'd4', not {group!r}")
    return torch.cat(views, dim=0)


def stamp_body(in_channels: int, crop: int, kernel: int, dropout: float) -> nn.Sequential:
    """ALeRCE's convolutional body: stamps ``(N, C, crop, crop)`` -> ``(N, 64)``."""
    pad = kernel // 2
    return nn.Sequential(
        nn.ZeroPad2d(3), nn.Conv2d(in_channels, 32, 4), nn.ReLU(),
        nn.Conv2d(32, 32, kernel, padding=pad), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, kernel, padding=pad), nn.ReLU(),
        nn.Conv2d(64, 64, kernel, padding=pad), nn.ReLU(),
        nn.Conv2d(64, 64, kernel, padding=pad), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * ((crop + 3) // 4) ** 2, 64), nn.ReLU(), nn.Dropout(dropout),
    )


def cyclic_embed(body: nn.Module, stamps: torch.Tensor, group: str) -> torch.Tensor:
    """The body's output averaged over the group's views of each stamp (cyclic pooling): ``(N, 64)``."""
    n = stamps.shape[0]
    z = body(group_views(stamps, group))
    return z.reshape(-1, n, z.shape[-1]).mean(dim=0)


class StampClassifier(nn.Module):
    """ALeRCE's stamp classifier (module docstring).

    Parameters
    ----------
    in_channels : int
        Stamp channels (science, template, difference and the NaN mask: 4).
    n_features : int
        Metadata features (0: images only).
    n_classes : int
    crop : int
        Stamp side [px].
    kernel : int
        Side of the body's k×k convolutions (ALeRCE 3, its staging model 5).
    dropout : float
    group : {"c4", "d4"}
        Transformations averaged over (cyclic pooling).
    """

    def __init__(self, in_channels: int = 4, n_features: int = 23, n_classes: int = 5, crop: int = 21,
                 kernel: int = 3, dropout: float = 0.5, group: str = "d4"):
        super().__init__()
        self.group = group
        self.n_features = n_features
        self.body = stamp_body(in_channels, crop, kernel, dropout)
        self.features_norm = nn.BatchNorm1d(n_features) if n_features else None
        self.head = nn.Sequential(
            nn.Linear(64 + n_features, 64), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(64, 64), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(64, n_classes),
        )

    def embed(self, stamps: torch.Tensor) -> torch.Tensor:
        """The cyclic-pooled image embedding ``(N, 64)``."""
        return cyclic_embed(self.body, stamps, self.group)

    def forward(self, stamps: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``(N, n_classes)`` of stamps ``(N, C, crop, crop)`` and z-scored features ``(N, n_features)``."""
        z = self.embed(stamps)
        if self.features_norm is not None:
            z = torch.cat([z, self.features_norm(features.to(z.dtype))], dim=1)
        return self.head(z)


class TemporalClassifier(nn.Module):
    """One model for 1 to N alerts of an object (after Neira et al. 2024, without one model per length).

    Each alert's stamps go through the stamp classifier's body with cyclic pooling (64 values); with
    the alert's z-scored features and ``log(1 + Δt)`` (days since the first alert) they make one step
    of a GRU; the hidden state after the object's last alert (``lengths``) feeds the head
    (dense 64, dropout, one logit per class). Steps after an object's last alert are padding: the
    recurrence is causal, so they change nothing, and their stamps are not run.

    Parameters
    ----------
    in_channels, n_features, n_classes, crop, kernel, dropout, group
        As :class:`StampClassifier`.
    hidden : int
        GRU state size.
    """

    def __init__(self, in_channels: int = 4, n_features: int = 23, n_classes: int = 5, crop: int = 21,
                 kernel: int = 3, dropout: float = 0.3, group: str = "c4", hidden: int = 64):
        super().__init__()
        self.group = group
        self.body = stamp_body(in_channels, crop, kernel, dropout)
        self.rnn = nn.GRU(64 + n_features + 1, hidden, batch_first=True)
        self.head = nn.Sequential(nn.Linear(hidden, 64), nn.ReLU(), nn.Dropout(dropout), nn.Linear(64, n_classes))

    def forward(self, stamps: torch.Tensor, features: torch.Tensor, dt: torch.Tensor,
                lengths: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, n_classes)`` of sequences: stamps ``(B, T, C, s, s)``, features ``(B, T, F)``,
        ``dt`` ``(B, T)`` [days since the first alert], ``lengths`` ``(B,)`` (1 to T)."""
        b, t = stamps.shape[:2]
        steps = torch.arange(t, device=stamps.device)[None, :] < lengths[:, None]
        z = stamps.new_zeros((b, t, 64))
        z[steps] = cyclic_embed(self.body, stamps[steps], self.group)
        x = torch.cat([z, features.to(z.dtype), torch.log1p(dt.clamp(min=0)).to(z.dtype)[..., None]], dim=-1)
        out, _ = self.rnn(x)
        return self.head(out[torch.arange(b, device=out.device), lengths - 1])


class StampAutoencoder(nn.Module):
    """The convolutional (variational) autoencoder of Astorga et al. (2018), for 21 × 21 stamps.

    Encoder: 4 convolutions 3×3 of 64 filters with strides 1, 2, 1, 2 (21 -> 11 -> 6 px), then
    a dense layer to the latent (``latent`` values; with ``variational``, a mean and a log-variance).
    Decoder: dense -> 64 × 6 × 6, then 6 convolutions 3×3 with nearest-neighbour upsampling to
    11 px after the second and to 21 px after the fourth; a sigmoid output in [0, 1] (the stamps
    are normalised to it). Trained on the mean squared error (plus the KL divergence to a unit
    Gaussian when variational).

    Parameters
    ----------
    in_channels : int
        Stamp channels reconstructed (science, template, difference: 3).
    latent : int
        Latent size (Astorga: 21).
    variational : bool
    crop : int
        Stamp side; only 21 (Astorga's) is supported.
    """

    def __init__(self, in_channels: int = 3, latent: int = 21, variational: bool = False, crop: int = 21):
        super().__init__()
        if crop != 21:
            raise ValueError(f"the autoencoder takes 21 px stamps (prepare --crop 21), not {crop}")
        self.variational = variational
        act = nn.ReLU
        self.encoder = nn.Sequential(
            nn.Conv2d(in_channels, 64, 3, 1, 1), act(), nn.Conv2d(64, 64, 3, 2, 1), act(),
            nn.Conv2d(64, 64, 3, 1, 1), act(), nn.Conv2d(64, 64, 3, 2, 1), act(), nn.Flatten())
        self.to_latent = nn.Linear(64 * 6 * 6, latent * (2 if variational else 1))
        self.from_latent = nn.Sequential(nn.Linear(latent, 64 * 6 * 6), act())
        self.decoder = nn.Sequential(
            nn.Conv2d(64, 64, 3, 1, 1), act(), nn.Conv2d(64, 64, 3, 1, 1), act(), nn.Upsample(size=11),
            nn.Conv2d(64, 64, 3, 1, 1), act(), nn.Conv2d(64, 64, 3, 1, 1), act(), nn.Upsample(size=21),
            nn.Conv2d(64, 64, 3, 1, 1), act(), nn.Conv2d(64, in_channels, 3, 1, 1), nn.Sigmoid())
        self.latent = latent

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Latent mean ``(N, latent)`` and log-variance (None unless variational)."""
        h = self.to_latent(self.encoder(x))
        return (h[:, :self.latent], h[:, self.latent:]) if self.variational else (h, None)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Stamps ``(N, C, 21, 21)`` decoded from latents ``(N, latent)``."""
        return self.decoder(self.from_latent(z).reshape(-1, 64, 6, 6))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Reconstruction, latent mean and log-variance; a variational model samples the latent in training."""
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if (self.variational and self.training) else mu
        return self.decode(z), mu, logvar


class ProbeClassifier(nn.Module):
    """A linear or MLP probe on a frozen autoencoder's latents (and the features): how much of the class
    the unsupervised latent space holds.

    Parameters
    ----------
    encoder_kwargs : dict
        The :class:`StampAutoencoder`'s arguments (its weights are loaded and frozen by the trainer).
    n_features : int
        Metadata features next to the latents (0: latents only).
    n_classes : int
    hidden : int
        Hidden units of the MLP; 0 for a linear probe.
    """

    def __init__(self, encoder_kwargs: dict, n_features: int = 23, n_classes: int = 5, hidden: int = 64):
        super().__init__()
        self.encoder = StampAutoencoder(**encoder_kwargs)
        self.n_features = n_features
        width = self.encoder.latent + n_features
        self.features_norm = nn.BatchNorm1d(n_features) if n_features else None
        self.head = (nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, n_classes)) if hidden
                     else nn.Linear(width, n_classes))

    def forward(self, stamps: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``(N, n_classes)`` of stamps ``(N, 4, 21, 21)`` (the NaN mask is not used) and features."""
        with torch.no_grad():
            z, _ = self.encoder.encode(stamps[:, :3])
        if self.features_norm is not None:
            z = torch.cat([z, self.features_norm(features.to(z.dtype))], dim=1)
        return self.head(z)


def autoencoder_loss(model: StampAutoencoder, x: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
    """Mean squared error per pixel, plus ``beta`` times the KL divergence per pixel for a variational model."""
    recon, mu, logvar = model(x)
    loss = torch.nn.functional.mse_loss(recon.float(), x.float())
    if logvar is not None:
        kl = -0.5 * torch.mean(torch.sum(1 + logvar - mu ** 2 - logvar.exp(), dim=1))
        loss = loss + beta * kl / x[0].numel()
    return loss


def entropy_regularised_loss(logits: torch.Tensor, target: torch.Tensor, beta: float) -> torch.Tensor:
    """Mean of ``CE(target, softmax(logits)) - beta * H(softmax(logits))`` over the batch."""
    logp = F.log_softmax(logits.float(), dim=1)
    entropy = -(logp.exp() * logp).sum(dim=1)
    return F.nll_loss(logp, target) - beta * entropy.mean()


TEMPORAL = "ztf_temporal_classifier"
"""The architecture name of :class:`TemporalClassifier` checkpoints."""

AUTOENCODER = "ztf_stamp_autoencoder"
"""The architecture name of :class:`StampAutoencoder` checkpoints."""

PROBE = "ztf_latent_probe"
"""The architecture name of :class:`ProbeClassifier` checkpoints."""

CLASSIFIERS = (ARCHITECTURE, PROBE)
"""Architectures that classify single alerts from ``(stamps, features)`` (evaluate, predict, export)."""

REGISTRY = {ARCHITECTURE: StampClassifier, TEMPORAL: TemporalClassifier, AUTOENCODER: StampAutoencoder,
            PROBE: ProbeClassifier}
"""Architectures a checkpoint may name (:func:`astrotool.ml.checkpoint.build_model`)."""
