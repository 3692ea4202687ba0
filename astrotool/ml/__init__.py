"""Shared torch training machinery for the plugins.

Submodules (import them directly; nothing heavy is imported here):

- :mod:`astrotool.ml.checkpoint` -- a checkpoint is a folder holding
  ``model.safetensors`` (the weights) and ``model.json`` (architecture,
  hyper-parameters, normalisation constants, training configuration, metrics,
  package versions). No pickles: loading a checkpoint never executes code.
  The resumable training state (optimizer moments, epoch, early-stopping
  counters, history) lives beside it in ``last/``.
- :mod:`astrotool.ml.training` -- seeding, device selection, reproducible
  per-epoch shuffling, early stopping and :func:`~astrotool.ml.training.fit`,
  a generic epoch loop that checkpoints the best and the last epoch and
  resumes from the last one.
"""

__docformat__ = "numpy"

__all__ = ["checkpoint", "training"]
