"""The layer every plugin that trains a model (lens today) stands on.

Submodules (import them directly; nothing heavy is imported here):

- :mod:`astrotool.ml.data` -- sharded array datasets on disk (HDF5 shards, a
  Parquet table of per-sample metadata, a manifest written last): write them
  shard by shard, read them, stream them in constant memory, split them by
  whole groups fixed by seed, feed them to a deterministic torch ``DataLoader``;
  find one by name under a stage folder or by path.
- :mod:`astrotool.ml.fabric` -- the ``[ml]`` section (accelerator, devices,
  nodes, strategy, precision) as a :class:`~astrotool.ml.fabric.Runtime` and
  the Lightning Fabric it builds: CPU, one GPU, DDP, Slurm nodes, mixed precision.
- :mod:`astrotool.ml.training` -- seeding, per-epoch reproducible shuffling,
  early stopping and :func:`~astrotool.ml.training.fit`, the epoch loop run
  through Fabric that checkpoints the best and the last epoch and resumes from
  the last one to identical weights.
- :mod:`astrotool.ml.checkpoint` -- a checkpoint is a folder holding
  ``model.safetensors`` (the weights) and ``model.json`` (architecture,
  hyper-parameters, normalisation constants, training configuration, metrics,
  package versions). No pickles: loading a checkpoint never executes code.
  The resumable training state lives beside it in ``last/``.
- :mod:`astrotool.ml.predict` -- batched inference: a torch module (eval mode,
  ``inference_mode``, optional autocast) or an exported ONNX model (ONNX
  Runtime, CPU or CUDA) through one function, over arrays or streamed batches,
  with the samples/s it reached.
- :mod:`astrotool.ml.export` -- ONNX export (dynamic batch, ``onnx.checker``,
  metadata, atomic write) refused unless ONNX Runtime reproduces torch on
  the parity inputs.
- :mod:`astrotool.ml.metrics` -- regression, classification, calibration and
  segmentation metrics on torchmetrics, as JSON-ready numbers (the figures
  that show them: :mod:`astrotool.io.figures`).
- :mod:`astrotool.ml.commands` -- the parts a plugin's ``train``,
  ``evaluate``, ``predict`` and ``export`` commands are made of: dataset by
  name or path, model folders, resume/restart/refuse, seed, per-epoch
  progress, run records, the ``[ml]`` command-line options, recorded exports.

Typical ``train`` in a plugin (see :mod:`astrotool.ml.commands` for the command around it)::

    import torch
    from astrotool.ml.checkpoint import build_model, load_checkpoint
    from astrotool.ml.training import epoch_rng, fit, seed_everything

    seed_everything(seed)
    model = MyNet(**kwargs)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr)

    def batches(epoch):                       # reproducible shuffling per epoch
        order = epoch_rng(seed, epoch).permutation(n_train)
        for i in range(0, n_train, bs):
            yield x[order[i:i + bs]], y[order[i:i + bs]]

    result = fit(model, opt, batches=batches, loss_fn=lambda m, b: loss(m(b[0]), b[1]),
                 validate=lambda m: {"val_loss": ...}, epochs=cfg.epochs,
                 checkpoint_dir=model_dir, seed=seed, patience=cfg.patience, runtime=runtime,
                 meta={"architecture": {"name": "my_net", "kwargs": kwargs},
                       "normalisation": {...}, "training": {...},
                       "settings": {"lr": cfg.lr, "seed": seed, ...}})  # a resume must share them

and its ``predict``::

    from astrotool.ml.predict import predict

    model = build_model(load_checkpoint(model_dir, "my_net"), {"my_net": MyNet})
    pred = predict(model, x, batch_size=256, device="auto")   # or predict(model_dir / "model.onnx", x)
    pred.outputs, pred.samples_per_s
"""

__docformat__ = "numpy"

__all__ = ["checkpoint", "commands", "data", "export", "fabric", "metrics", "predict", "training"]
