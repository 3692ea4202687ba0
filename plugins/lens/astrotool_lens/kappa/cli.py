"""``astro lens kappa``: convergence (mass) maps from ellipticity maps, the Astro-Datathon 2024 problem.

Every command reads its parameters from the ``[lens.kappa.<command>]``
configuration table; the flags below override single keys. Outputs go to the
workspace's ``lens/kappa/`` stages: ``sims/`` (simulated sets in the Datathon
layout), ``data/`` (packed data sets), ``models/``, ``predictions/`` (one
``.npy`` per map, and a zip), ``reports/``.
"""

from __future__ import annotations

from typing import List

import typer

from astrotool.context import current, old_option
from astrotool.ml import commands as mc

__docformat__ = "numpy"

app = typer.Typer(help="Mass maps from ellipticity maps (the Astro-Datathon 2024 problem).", no_args_is_help=True)
"""Typer app of ``astro lens kappa``."""


@app.callback()
def main():
    """Convergence maps from ellipticity maps: simulate, pack, reconstruct (KS, Wiener, U-Net), score, export."""


def kappa_config(ctx, flags: dict):
    """The ``[lens.kappa]`` tables with ``flags`` (keys relative to ``lens.kappa``, e.g. ``"train.epochs"``)
    applied as command-line options are; None values leave a key as configured."""
    return ctx.section("lens", {f"kappa.{k}": v for k, v in flags.items()}).kappa


@app.command()
def simulate(
    name: str = typer.Option(None, "--name", help="set name (folder lens/kappa/sims/<name>)"),
    n_maps: int = typer.Option(None, "-n", "--n-maps", help="number of maps"),
    size: int = typer.Option(None, "--size", help="map side [pixels]"),
    n_gal: float = typer.Option(None, "--n-gal", help="source galaxies per arcmin^2"),
    chunk_size: int = typer.Option(None, "--chunk-size", help="maps per parallel work item"),
):
    """Simulate (epsilon, kappa) pairs in the Datathon layout: EPSILON/<id>.npy and KAPPA/<id>.npy (float16).

    Cluster-scale NFW halos plus a Gaussian random field, shear through the
    Fourier-space lensing relation, reduced shear, shape and measurement noise
    (every parameter in [lens.kappa.simulate]). Parallel over chunks (--jobs /
    --executor), seeded per map; a repeated run keeps the finished chunks, and
    other settings are refused (exit 2) unless --overwrite.
    """
    from astrotool_lens.kappa.simulate import simulate_command

    ctx = current()
    cfg = kappa_config(ctx, {"simulate.name": name, "simulate.n_maps": n_maps, "simulate.size": size,
                             "simulate.n_gal": n_gal, "simulate.chunk_size": chunk_size})
    simulate_command(ctx, cfg)


@app.command()
def data(
    sources: List[str] = typer.Argument(..., help="folder with EPSILON/ (and KAPPA/), a simulated set's name, "
                                                  "or Datathon *.tar.gz files"),
    name: str = typer.Option(None, "--name", help="data set name (folder lens/kappa/data/<name>)"),
    drop_unpaired: bool = typer.Option(None, "--drop-unpaired/--refuse-unpaired",
                                       help="pack the existing pairs and report unpaired files"),
    shard_size: int = typer.Option(None, "--shard-size", help="maps per HDF5 shard"),
):
    """Index, check and pack (epsilon, kappa) pairs into a streamable data set with fixed splits.

    Pairs are matched by file name (a missing or extra file is reported, never
    mis-paired); tarballs are read directly, without unpacking; every map is
    checked (shape, dtype, finite values) and the file at fault is named.
    """
    from astrotool_lens.kappa.sources import data_command

    ctx = current()
    cfg = kappa_config(ctx, {"data.name": name, "data.drop_unpaired": drop_unpaired, "data.shard_size": shard_size})
    data_command(ctx, cfg, sources)


@app.command()
def baseline(
    dataset: str = typer.Option(None, "--dataset", help="data set name or folder"),
    method: str = typer.Option(None, "--method", help="ks | wiener | zero | mean"),
    sigma: float = typer.Option(None, "--sigma", help="Gaussian smoothing of the KS map [pixels]; with --method ks "
                                                      "only"),
    split: str = typer.Option(None, "--split", help="train | val | test | all"),
    name: str = typer.Option(None, "--name", help="run name (lens/kappa/predictions/<name>)"),
    old_output: str = old_option("--output", "renamed --name"),
    train_dataset: str = typer.Option(None, "--train-dataset",
                                      help="data set whose training split gives the Wiener spectrum and the mean "
                                           "map (default: --dataset); with --method wiener or mean only"),
    zip_: bool = typer.Option(None, "--zip/--no-zip", help="also write <name>.zip (the submission layout)"),
):
    """Classical reconstructions written like predictions: Kaiser-Squires, Wiener filter, all-zeros, training mean.

    The Wiener filter takes its signal power spectrum from the training split and
    its noise from the error map; `score` then compares any of them with the U-Net.
    One float16 .npy per map in lens/kappa/predictions/<name>/ (default
    <dataset>_<method>, <dataset>_ks<sigma> for KS); a rerun keeps the maps
    written with the same settings, other settings are refused (exit 2) unless
    --overwrite. Reports maps/s.
    """
    from astrotool_lens.kappa.baseline import baseline_command

    ctx = current()
    cfg = kappa_config(ctx, {"baseline.dataset": dataset, "baseline.method": method, "baseline.sigma": sigma,
                       "baseline.split": split, "baseline.name": name or old_output, "baseline.train_dataset": train_dataset,
                       "baseline.zip": zip_})
    from astrotool.errors import AstroError

    if sigma is not None and cfg.baseline.method != "ks":
        raise AstroError(f"--sigma applies to --method ks only (the method is {cfg.baseline.method!r})")
    if train_dataset is not None and cfg.baseline.method not in ("wiener", "mean"):   # it would be ignored
        raise AstroError(f"--train-dataset applies to --method wiener or mean only (the method is "
                         f"{cfg.baseline.method!r}, which uses no training maps)")
    baseline_command(ctx, cfg)


@app.command()
def train(
    dataset: str = typer.Option(None, "--dataset", help="data set name or folder"),
    model: str = typer.Option(None, "--model", help="model name (lens/kappa/models/<model>)"),
    epochs: int = typer.Option(None, "--epochs", help="training epochs"),
    batch_size: int = typer.Option(None, "--batch-size", help="maps per optimiser step"),
    lr: float = typer.Option(None, "--lr", help="peak learning rate"),
    width: int = typer.Option(None, "--width", help="channels of the first U-Net level"),
    depth: int = typer.Option(None, "--depth", help="U-Net levels (the map side must be divisible by 2**depth)"),
    extra_inputs: str = typer.Option(None, "--extra-inputs",
                                     help="comma list of channels added to (e1, e2, de): ks, abs_e ('' for none)"),
    ks_sigma: float = typer.Option(None, "--ks-sigma", help="smoothing of the ks input channel [pixels]"),
    loss: str = typer.Option(None, "--loss", help="mse | l1"),
    augment: bool = typer.Option(None, "--augment/--no-augment", help="spin-2 flips and rotations"),
    patience: int = typer.Option(None, "--patience", help="early-stopping patience [epochs]; 0 = off"),
    max_samples: int = typer.Option(None, "--max-samples", help="train on at most this many maps (0 = all)"),
    resume: bool = typer.Option(None, "--resume/--no-resume", help="continue from the last checkpoint "
                                "(--no-resume refuses an existing model: --overwrite starts over)"),
    device: mc.Device = None,
    precision: mc.Precision = None,
    devices: mc.Devices = None,
    num_nodes: mc.NumNodes = None,
):
    """Train the U-Net on a packed set's train split (validated on val); checkpoints in lens/kappa/models/<model>/.

    Maps are streamed from the set batch by batch with random flips and quarter
    turns (spin-2 signs); the kept checkpoint is the epoch of lowest val_loss
    (the training loss function on the val split), with val_mse and val_pearson
    reported beside it.
    Re-running with the same settings resumes (more --epochs train on); other
    settings are refused (exit 2) naming them; --overwrite starts afresh. Where
    it trains comes from the [ml] section (--device, --precision, --devices,
    --num-nodes). The loss curves go to lens/kappa/reports/<model>_history.png.
    """
    from astrotool_lens.kappa.train import train_command

    ctx = current()
    extra = None if extra_inputs is None else [c.strip() for c in extra_inputs.split(",") if c.strip()]
    cfg = kappa_config(ctx, {"train.dataset": dataset, "train.model": model, "train.epochs": epochs,
                       "train.batch_size": batch_size, "train.lr": lr, "train.width": width, "train.depth": depth,
                       "train.extra_inputs": extra, "train.ks_sigma": ks_sigma, "train.loss": loss,
                       "train.augment": augment, "train.patience": patience, "train.max_samples": max_samples,
                       "train.resume": resume})
    train_command(ctx, cfg, mc.runtime(ctx, device=device, precision=precision, devices=devices,
                                       num_nodes=num_nodes))


@app.command()
def predict(
    inputs: str = typer.Argument(..., help="data set name or folder, a folder with EPSILON/ or of .npy, "
                                           "or a Datathon *.tar.gz"),
    model: str = typer.Option(None, "--model", help="model name or folder"),
    name: str = typer.Option(None, "--name", help="run name (lens/kappa/predictions/<name>)"),
    old_output: str = old_option("--output", "renamed --name"),
    split: str = typer.Option(None, "--split", help="for a data set: train | val | test | all (refused for a "
                                                    "folder or tarball, which has no splits)"),
    batch_size: int = typer.Option(None, "--batch-size", help="maps per forward pass"),
    engine: str = typer.Option(None, "--engine", help="torch | onnxruntime (runs <model>/model.onnx)"),
    zip_: bool = typer.Option(None, "--zip/--no-zip", help="also write <name>.zip (the submission layout)"),
    device: mc.Device = None,
):
    """Predict kappa: one float16 .npy per input name in lens/kappa/predictions/<name>/, and a zip.

    Streams the inputs (constant memory); maps already written by an
    interrupted run of the same model are kept. Reports maps/s.
    """
    from astrotool_lens.kappa.predict import predict_command

    ctx = current()
    cfg = kappa_config(ctx, {"predict.model": model, "predict.name": name or old_output, "predict.split": split,
                       "predict.batch_size": batch_size, "predict.engine": engine, "predict.zip": zip_})
    predict_command(ctx, cfg, inputs, mc.runtime(ctx, device=device), split_given=split is not None)


@app.command()
def score(
    predictions: List[str] = typer.Argument(..., help="prediction folder(s) of .npy maps (names under "
                                                      "lens/kappa/predictions work too)"),
    truth: str = typer.Option(None, "--truth", help="true kappa: a data set, a folder with KAPPA/ (and EPSILON/), "
                                                    "a folder of .npy, or *.tar.gz"),
    split: str = typer.Option(None, "--split", help="for a data set truth: train | val | test | all (refused for "
                                                    "a folder or tarball, which has no splits)"),
    partial: bool = typer.Option(None, "--partial/--complete",
                                 help="a folder truth may hold maps without a prediction"),
    batch_size: int = typer.Option(None, "--batch-size", help="maps read at a time"),
    plots: bool = typer.Option(None, "--plots/--no-plots", help="write the PNG plots"),
    name: str = typer.Option(None, "--name", help="report name (lens/kappa/reports/<name>_score.json)"),
    old_report: str = old_option("--report", "renamed --name"),
):
    """Score predicted kappa maps: WMAPE, DICEE, DPEAKS (the Datathon's), and MSE, Pearson r, SSIM, spectra, peaks.

    Pairs .npy files by name with the truth (a prediction without a true map is
    refused, exit 2, naming it; so is a true map without a prediction, unless
    the truth is a data set or --partial); per map and mean, each run next to
    the WMAPE of the all-zeros map on that truth (the floor: c*kappa scores |1-c| for c != 0). Several
    folders are also ranked (Borda and Copeland). With the input ellipticities
    at hand (a data set or a folder with EPSILON/), the predicted kappa is
    pushed back to shear and compared with them (chi2 per pixel). Report and
    plots in lens/kappa/reports/. Prints one row of mean scores per run (tab-separated when piped; the
    sentences, note and rankings go to the log); --json prints {"runs": {run: {"maps": {name: {...}},
    "mean": {...}}}, "ranking": ...} (ranking null for one run).
    """
    from astrotool.console import json_results

    from astrotool_lens.kappa.score import score_command

    ctx = current()
    cfg = kappa_config(ctx, {"score.truth": truth, "score.split": split, "score.partial": partial,
                       "score.batch_size": batch_size, "score.plots": plots, "score.name": name or old_report})
    score_command(ctx, cfg, predictions, as_json=json_results(), split_given=split is not None)


@app.command()
def export(
    model: str = typer.Option(None, "--model", help="model name or folder"),
    output: str = typer.Option(None, "--output", help="ONNX path (default <model>/model.onnx)"),
    opset: int = typer.Option(None, "--opset", help="ONNX opset version"),
    _onnx: bool = old_option("--onnx", "not needed: ONNX is the only format", False),
):
    """Export a trained U-Net to ONNX and check onnxruntime against torch (max |diff| <= parity_tol)."""
    from astrotool_lens.kappa.export import export_command

    ctx = current()
    cfg = kappa_config(ctx, {"export.model": model, "export.opset": opset})
    export_command(ctx, cfg, output=output)
