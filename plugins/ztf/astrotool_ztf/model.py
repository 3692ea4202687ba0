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


def group_views(x: torch.Tensor, group: str) -> torch.Tensor:
    """The batch under every transformation of ``group`` (``"c4"``: 4 rotations, ``"d4"``: and their mirrors),
    stacked along the batch axis: ``(G * N, C, H, W)``, transformation-major."""
    views = [torch.rot90(x, k, dims=(2, 3)) for k in range(4)]
    if group == "d4":
        views += [torch.flip(v, dims=(3,)) for v in views]
    elif group != "c4":
        raise ValueError(f"group must be 'c4' or 'd4', not {group!r}")
    return torch.cat(views, dim=0)


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
        pad = kernel // 2
        self.body = nn.Sequential(
            nn.ZeroPad2d(3), nn.Conv2d(in_channels, 32, 4), nn.ReLU(),
            nn.Conv2d(32, 32, kernel, padding=pad), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, kernel, padding=pad), nn.ReLU(),
            nn.Conv2d(64, 64, kernel, padding=pad), nn.ReLU(),
            nn.Conv2d(64, 64, kernel, padding=pad), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64 * ((crop + 3) // 4) ** 2, 64), nn.ReLU(), nn.Dropout(dropout),
        )
        self.features_norm = nn.BatchNorm1d(n_features) if n_features else None
        self.head = nn.Sequential(
            nn.Linear(64 + n_features, 64), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(64, 64), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(64, n_classes),
        )

    def embed(self, stamps: torch.Tensor) -> torch.Tensor:
        """The cyclic-pooled image embedding ``(N, 64)``."""
        n = stamps.shape[0]
        z = self.body(group_views(stamps, self.group))
        return z.reshape(-1, n, z.shape[-1]).mean(dim=0)

    def forward(self, stamps: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``(N, n_classes)`` of stamps ``(N, C, crop, crop)`` and z-scored features ``(N, n_features)``."""
        z = self.embed(stamps)
        if self.features_norm is not None:
            z = torch.cat([z, self.features_norm(features.to(z.dtype))], dim=1)
        return self.head(z)


def entropy_regularised_loss(logits: torch.Tensor, target: torch.Tensor, beta: float) -> torch.Tensor:
    """Mean of ``CE(target, softmax(logits)) - beta * H(softmax(logits))`` over the batch."""
    logp = F.log_softmax(logits.float(), dim=1)
    entropy = -(logp.exp() * logp).sum(dim=1)
    return F.nll_loss(logp, target) - beta * entropy.mean()


REGISTRY = {ARCHITECTURE: StampClassifier}
"""Architectures a checkpoint may name (:func:`astrotool.ml.checkpoint.build_model`)."""
