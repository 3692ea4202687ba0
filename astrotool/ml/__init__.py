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

Typical use in a plugin::

    from astrotool.ml.training import epoch_rng, fit, seed_everything, select_device
    from astrotool.ml.checkpoint import build_model, load_checkpoint

    seed_everything(seed)
    device = select_device(cfg.device)
    model = MyNet(**kwargs).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr)

    def batches(epoch):                       # reproducible shuffling per epoch
        order = epoch_rng(seed, epoch).permutation(n_train)
        for i in range(0, n_train, bs):
            yield x[order[i:i + bs]], y[order[i:i + bs]]

    result = fit(model, opt, batches=batches, loss_fn=lambda m, b: loss(m(b[0]), b[1]),
                 validate=lambda m: {"val_loss": ...}, epochs=cfg.epochs,
                 checkpoint_dir=model_dir, seed=seed, patience=cfg.patience,
                 meta={"architecture": {"name": "my_net", "kwargs": kwargs},
                       "normalisation": {...}, "training": {...}})

    model = build_model(load_checkpoint(model_dir, "my_net"), {"my_net": MyNet})
"""

__docformat__ = "numpy"

__all__ = ["checkpoint", "training"]
