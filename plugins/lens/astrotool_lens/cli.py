"""``astro lens``: shear simulations, HSM estimators and the CNN shear estimator.

Every command reads its parameters from the ``[lens.<command>]`` configuration
table; the flags below override single keys. Outputs go to the workspace's
``lens/`` stages: ``shear/`` (datasets), ``models/``, ``predictions/``,
``reports/``.
"""

from __future__ import annotations

import contextlib
import functools

from pathlib import Path

import typer

from astrotool.context import astro_command, current, old_option
from astrotool.ml import commands as mc

__docformat__ = "numpy"

app = typer.Typer(help="Weak lensing: GalSim shear simulations, HSM estimators, a CNN shear estimator, mass maps.",
                  no_args_is_help=True)
"""Typer app of ``astro lens``."""


@app.callback()
def main():
    """Weak lensing: simulate sheared galaxies (GalSim), measure them with HSM, metacalibration or FPFS, train,
    calibrate and evaluate a CNN shear estimator; `lens kappa`: mass maps from ellipticity maps."""


def _split_list(text: str | None) -> list[str] | None:
    if text is None:
        return None
    return [t.strip().upper() for t in text.split(",") if t.strip()]


def _model_dir(ctx, name: str, default_dataset: str, trained: bool = True) -> Path:
    """A model folder: an existing checkpoint path, else ``lens/models/<name>`` (default ``<dataset>_cnn``).

    With ``trained``, a default name (no ``--model``) whose folder holds no checkpoint is refused, saying
    it was the default."""
    from astrotool.errors import InputError
    from astrotool.ml.checkpoint import META_FILE

    path = mc.model_dir(ctx, "lens", name or f"{default_dataset}_cnn")
    if trained and not name and not (path / META_FILE).is_file():
        raise InputError("--model", f"no --model given, and the default {path.name!r} (<dataset>_cnn) has no "
                                    f"checkpoint in {path.parent}: name a trained model with --model, or train "
                                    f"one with `{astro_command('lens', 'train', '--dataset', default_dataset)}`")
    return mc.model_dir(ctx, "lens", name, trained=True) if trained and name else path


def _no_dataset() -> str:
    """The hint for a missing shear dataset."""
    return f"run `{astro_command('lens', 'generate')}` first"


def _open_dataset(ctx, given: str | None, default: str):
    """:func:`astrotool.ml.commands.open_dataset` of the dataset ``given``, else ``default``, whose
    error then says that the name was the default (lens.generate's dataset)."""
    from astrotool.errors import InputError

    from astrotool_lens.data import ShearDataset

    try:
        return mc.open_dataset(ctx, "lens", "shear", given or default, ShearDataset, _no_dataset())
    except InputError as exc:
        if given or not default:
            raise
        raise InputError(exc.path, f"no --dataset given, and the default {default!r} (lens.generate's dataset) "
                                   f"does not serve: {exc.problem}") from None


def _dataset_root(text: str, shear_stage: Path) -> Path | None:
    """The resolved folder of the dataset ``text`` names, found as :func:`astrotool.ml.data.resolve_dataset`
    finds it (a folder holding a manifest, else a name under ``lens/shear``); None when it names none."""
    from astrotool.ml.data import MANIFEST_SUFFIX

    for p in (Path(text).expanduser(), shear_stage / text):
        if p.is_dir() and any(p.glob(f"*{MANIFEST_SUFFIX}")):
            return p.resolve()
    return None


def _same_dataset(a: str, b: str, shear_stage: Path) -> bool:
    """Whether ``a`` and ``b`` name one dataset (a name and a relative or absolute path of its folder)."""
    root = _dataset_root(a, shear_stage)
    return root is not None and root == _dataset_root(b, shear_stage)


CLASSICAL_NEEDS_PSF = "each classical estimator"   # who needs a PSF stamp per galaxy (read_inputs' message)
"""Who needs a PSF stamp per galaxy, as ``read_inputs`` names it in its message."""


@app.command()
def generate(
    preset: str = typer.Option(None, "--preset", help="lensnet | shearnet | fields | wide | custom"),
    name: str = typer.Option(None, "--name", help="dataset name (folder lens/shear/<name>)"),
    n_stamps: int = typer.Option(None, "-n", "--n-stamps", help="number of stamps"),
    shard_size: int = typer.Option(None, "--shard-size", help="stamps per HDF5 shard"),
    format: str = typer.Option(None, "--format", help="hdf5 | lensnet (adds gal_N.fits, psf_N.fits, data.json)"),
    stamp_size: int = typer.Option(None, "--stamp-size", help="stamp side [pixels]"),
    pixel_scale: float = typer.Option(None, "--pixel-scale", help="[arcsec/pixel]"),
    noise__snr: float = typer.Option(None, "--snr", help="constant target S/N"),
    noise__kind: str = typer.Option(None, "--noise", help="pixel noise"),
    shape__ring: bool = typer.Option(None, "--ring/--no-ring", help="90-degree ring pairs"),
    shear__field_size: int = typer.Option(None, "--field-size", help="stamps per constant-shear field"),
    compression: str = typer.Option(None, "--compression", help="none | low | medium | high"),
):
    """Draw galaxy (x) PSF stamps with GalSim into HDF5 shards plus a Parquet truth table.

    Parallel over shards (--jobs / --executor), seeded per stamp: the pixels do
    not depend on the executor or the number of jobs. Finished shards are kept
    when a run is repeated, so an interrupted run resumes.
    """
    from astrotool_lens.generate import generate_dataset

    ctx = current()
    cfg = ctx.section("lens", {
        "generate.preset": preset, "generate.name": name, "generate.n_stamps": n_stamps,
        "generate.shard_size": shard_size,
        "generate.format": format, "generate.stamp_size": stamp_size, "generate.pixel_scale": pixel_scale,
        "generate.noise.snr": noise__snr, "generate.noise.kind": noise__kind, "generate.shape.ring": shape__ring,
        "generate.shear.field_size": shear__field_size, "generate.compression": compression,
    })
    g = cfg.generate
    out = ctx.workspace.stage("lens", "shear") / g.dataset_name
    seed = ctx.stage_seed(g.seed, "lens.generate.seed")
    res = generate_dataset(g, out, seed, overwrite=ctx.overwrite,   # each shard in run.json as it is drawn
                           mapper=functools.partial(ctx.map, outputs=lambda r: [] if r["skipped"] else [r["path"]]))
    for p in res["written"]:  # the truth table and manifest too (the shards are listed already: kept once)
        ctx.record.add_output(p)
    summary = {"dataset": g.dataset_name, "path": str(out), "n": g.n_stamps, "shards": res["shards"],
               "drawn_shards": res["drawn"], "skipped_shards": res["skipped"], "missing_shards": res["missing"],
               "stamp_size": g.stamp_size, "pixel_scale": g.pixel_scale, "seed": seed}
    if res["manifest"] is None and ctx.executor_options.shard is not None:   # a task of an array
        ctx.log.info("%d of %d shards not drawn yet (the other --shard tasks draw the rest); the task that "
                     "finishes last writes the truth table", res["missing"], res["shards"])
    elif res["manifest"] is None:
        ctx.log.warning("%d of %d shards missing (failed): the truth table is written once all exist "
                        "(re-run the same command to finish)", res["missing"], res["shards"])
    else:
        summary["truth"] = str(out / res["manifest"]["metadata"])
        if g.format == "lensnet":
            summary["lensnet"] = str(out / "lensnet" / "data.json")
    ctx.emit(summary)


@app.command()
def measure(
    inputs: str = typer.Argument(None, help="FITS file, folder of FITS, LensNet data.json, or dataset name/folder "
                                            "(default: --dataset)"),
    dataset: str = typer.Option(None, "--dataset", help="dataset name or folder"),
    methods: str = typer.Option(None, "--methods", help="comma list of REGAUSS,KSB,BJ,LINEAR,METACAL,ANACAL"),
    conversion: str = typer.Option(None, "--conversion", help="exact | responsivity (distortion -> shear)"),
    psf: str = typer.Option(None, "--psf", help="one PSF FITS stamp for every galaxy (instead of psf_N.fits)"),
    name: str = typer.Option(None, "--name", help="output stem in lens/predictions (default: the input's)"),
):
    """Measure every stamp with GalSim HSM, metacalibration or FPFS into lens/predictions/<name>_hsm.parquet.

    Methods: REGAUSS, KSB, BJ, LINEAR (HSM), METACAL (metacalibration) and ANACAL (AnaCal's FPFS):
    the last two give a per-stamp ellipticity and shear response, shear = <R>^-1 <e> over an
    ensemble (docs/lens.md).

    Reads what `astro lens predict` reads: a generated dataset, a FITS stamp or cube, a folder of
    FITS files (gal_N.fits with its psf_N.fits) or a LensNet data.json; every galaxy needs a PSF
    stamp (psf_N.fits, the data.json's psf entries, or --psf).

    Failures are counted per method (and stored as NaN with a flag and message), never fatal;
    when every stamp failed with every method the table is still written and the exit code is 2.
    An existing table is kept only when it was measured on these very stamps with the same
    conversion, guesses and methods. A method it lacks is measured alone and added to it when all
    its methods were measured with these settings; otherwise (other settings, or --overwrite) the
    stamps are measured again for the methods asked and those the table held, so it never loses
    one. A table of other stamps (a dataset drawn again) is replaced by the methods asked.
    --overwrite without --shard also discards part files an earlier run left.
    """
    from astrotool_lens.measure import discard_parts, measure_dataset, measure_inputs, measure_plan, table_problem
    from astrotool_lens.predict import is_dataset, read_inputs

    ctx = current()
    cfg = ctx.section("lens", {"measure.dataset": dataset, "measure.methods": _split_list(methods),
                               "measure.conversion": conversion, "measure.name": name})
    m = cfg.measure
    shear_stage = ctx.workspace.stage("lens", "shear")
    if inputs is not None and dataset is not None and inputs != dataset and not (
            Path(inputs).expanduser().resolve() == Path(dataset).expanduser().resolve()
            or (shear_stage / inputs).resolve() == (shear_stage / dataset).resolve()
            or _same_dataset(inputs, dataset, shear_stage)):
        from astrotool.errors import InputError

        raise InputError("--dataset", f"{dataset!r} given with the input {inputs!r}: name one of them")
    if inputs is None and psf is not None:   # --dataset with --psf: its stamps read as predict reads them
        inputs = m.dataset or cfg.dataset
    with contextlib.ExitStack() as stack:
        if inputs is None or (psf is None and is_dataset(inputs, shear_stage)):
            src = stack.enter_context(_open_dataset(ctx, inputs or m.dataset, cfg.dataset))
            stem, label = src.stem, {"dataset": src.stem}

            def run(out, cfg, add=False):
                return measure_dataset(src, cfg, out, mapper=ctx.map, add=add)
        else:
            src = read_inputs(inputs, True, psf, shear_stage=shear_stage, who=CLASSICAL_NEEDS_PSF)
            ctx.record.add_input(inputs)
            stem, label = src.stem, {"input": str(inputs)}

            def run(out, cfg, add=False):
                return measure_inputs(src, cfg, out, mapper=ctx.map, add=add)
        out = ctx.workspace.stage("lens", "predictions") / f"{m.name or stem}_hsm.parquet"
        problem = table_problem(out, src, m)
        if problem is None and not ctx.overwrite:   # the summary of a fresh table, read from its metadata
            from astrotool.io.tables import parquet_metadata

            held = parquet_metadata(out)
            ctx.shard_used = True   # nothing to split: no --shard task has anything to do (no "was not used")
            ctx.log.info("%s is up to date: measured on these stamps with these settings and methods (--overwrite "
                         "measures it again)", out)
            ctx.emit({**label, "n": held["identity"]["n"], "failed": held.get("failed"),
                      "responsivity": held.get("responsivity"), "path": str(out), "measured": [], "skipped": True})
            return
        if ctx.overwrite and ctx.executor_options.shard is None:   # not an interrupted run's parts
            discard_parts(out, ctx.overwrite)
        wanted, add = measure_plan(out, src, m, ctx.overwrite)
        if add:   # these stamps, these settings: only the methods it lacks, joined into it
            ctx.log.info("adding %s to %s", ", ".join(wanted.methods), out.name)
        elif out.exists() and problem:
            ctx.log.info("measuring %s again: %s", out.name, problem)
        res = run(out, wanted, add=add)
    if res.get("written_by_another_task"):   # it read the parts first: nothing is missing
        ctx.log.info("%s was written by another task", out.name)
        ctx.emit({**label, **res})
        return
    shard = ctx.executor_options.shard
    if res.get("missing_parts") and shard is not None and shard[0] >= res["parts"]:   # no item fell to it
        ctx.log.info("the last --shard task to finish writes %s", out.name)   # the core said it had no part
        ctx.emit({**label, **res})
        return
    if res.get("missing_parts"):  # other --shard tasks' parts, or failed ones: kept, the table comes later
        ctx.log.warning("%d of %d parts not measured yet: %s is written once all are (the last --shard task to "
                        "finish writes it; or re-run the same command)", res["missing_parts"], res["parts"], out.name)
        ctx.emit({**label, **res})
        return
    mc.record(ctx, outputs=[out])
    # the table's counts: with add, a held method's failures were warned of before
    warned = [meth for meth, k in res["failed"].items() if k and meth in res["measured"]]
    if warned:
        from astrotool.io.tables import read_parquet
        from astrotool_lens.predict import flagged_message

        errors = read_parquet(out, columns=[f"{meth.lower()}_error" for meth in warned])
        for meth in warned:   # the count of each reason, as predict gives them
            col = f"{meth.lower()}_error"
            ctx.log.warning("%s: %d of %d stamps failed: %s; see column %s of %s", meth, res["failed"][meth], res["n"],
                            flagged_message(errors.column(col).to_numpy(zero_copy_only=False), counts_only=True),
                            col, out.name)
    ctx.emit({**label, **res, "skipped": False})
    if res["n"] and all(k == res["n"] for k in res["failed"].values()):   # nothing measured: the input is bad
        from astrotool.errors import AstroError

        where = getattr(src, "root", None) or getattr(src, "origin", None) or inputs   # the dataset, the file
        raise AstroError(f"{where}: every stamp failed with every method (the reasons are in {out}, columns "
                         "<method>_error)", exit_code=2)


@app.command()
def train(
    dataset: str = typer.Option(None, "--dataset", help="dataset name or folder"),
    model: str = typer.Option(None, "--model", help="model name (lens/models/<model>)"),
    epochs: int = typer.Option(None, "--epochs", help="training epochs"),
    batch_size: int = typer.Option(None, "--batch-size", help="stamps per optimiser step"),
    lr: float = typer.Option(None, "--lr", help="peak learning rate"),
    loss: str = typer.Option(None, "--loss", help="training loss"),
    target: str = typer.Option(None, "--target", help="ellipticity | shear"),
    use_psf: bool = typer.Option(None, "--use-psf/--no-psf", help="PSF stamp as a second channel"),
    width: int = typer.Option(None, "--width", help="channels of the first conv block"),
    normalisation: str = typer.Option(None, "--normalisation", help="stamp_rms | stamp_rms+noise | global | none"),
    activation: str = typer.Option(None, "--activation", help="smooth (SiLU, average pooling) | relu (ReLU, max pooling)"),
    patience: int = typer.Option(None, "--patience", help="early-stopping patience [epochs]; 0 = off"),
    resume: bool = typer.Option(None, "--resume/--no-resume", help="continue from the last checkpoint "
                                "(--no-resume refuses an existing model: --overwrite starts over)"),
    device: mc.Device = None,
    precision: mc.Precision = None,
    devices: mc.Devices = None,
    num_nodes: mc.NumNodes = None,
):
    """Train the CNN shear estimator; checkpoints (safetensors + JSON) in lens/models/<model>/.

    The loss curves go to lens/reports/<model>_history.png (docs: lens, Training the CNN).
    val_rmse_g1, val_rmse_g2 are the validation error against the training target: with --target
    ellipticity (the default) the lensed ellipticity obs_g1, obs_g2, shape noise included, not the
    true shear that evaluate's rmse_g1, rmse_g2 use; with --target shear the true shear g1, g2.
    Re-running with the same settings resumes from lens/models/<model>/last (more --epochs train on);
    other settings are refused (exit 2); --overwrite starts afresh.
    Where it trains comes from the [ml] section (--device, --precision, --devices,
    --num-nodes; several Slurm nodes: srun astro lens train ...).
    """
    from astrotool_lens.train import train_model

    ctx = current()
    cfg = ctx.section("lens", {
        "train.dataset": dataset, "train.model": model, "train.epochs": epochs, "train.batch_size": batch_size,
        "train.lr": lr, "train.loss": loss, "train.target": target, "train.use_psf": use_psf, "train.width": width,
        "train.normalisation": normalisation, "train.activation": activation,
        "train.patience": patience, "train.resume": resume,
    })
    t = cfg.train
    rt = mc.runtime(ctx, device=device, precision=precision,
                    devices=devices, num_nodes=num_nodes)
    rt.launch()  # several processes: the copies start here; they write no record and show no progress
    if not rt.is_global_zero:
        ctx.mark_copy()
    ds = _open_dataset(ctx, t.dataset, cfg.dataset)
    mdir = _model_dir(ctx, t.model, ds.stem, trained=False)
    progress = (mc.epoch_progress(ctx, t.epochs, f"train {mdir.name}", mc.resumed_dir(ctx, mdir, rt, t.resume))
                if rt.is_global_zero else contextlib.nullcontext(None))
    with ds, progress as on_epoch:
        res = train_model(ds, t, mdir, ctx.stage_seed(t.seed, "lens.train.seed"), overwrite=ctx.overwrite, log=ctx.log,
                          on_epoch=on_epoch, runtime=rt)
    if not rt.is_global_zero:
        return
    mc.record(ctx, outputs=mc.checkpoint_files(mdir))
    plot = mc.history_figure(ctx, mdir, ctx.workspace.stage("lens", "reports") / f"{mdir.name}_history.png")
    ctx.emit({**res, "history_plot": str(plot) if plot else None})


@app.command()
def evaluate(
    model: str = typer.Option(None, "--model", help="model name or folder"),
    dataset: str = typer.Option(None, "--dataset", help="dataset (default: the model's, test split)"),
    split: str = typer.Option(None, "--split", help="auto | test | all"),
    classical: str = typer.Option(None, "--classical",
                                  help="comma list of REGAUSS,KSB,BJ,LINEAR,METACAL,ANACAL ('' for none)"),
    symmetrize: bool = typer.Option(None, "--symmetrize/--no-symmetrize", help="8-fold flip/rotation averaging"),
    calibrated: bool = typer.Option(None, "--calibrated/--raw", help="apply the model's calibration"),
    plots: bool = typer.Option(None, "--plots/--no-plots", help="write the PNG plots"),
    device: mc.Device = None,
):
    """RMSE, MAE, m and c (with errors) and GREAT3 Q for the CNN and the HSM estimators side by side.

    Writes lens/reports/<dataset>_<model>_metrics.json (the test split; every stamp:
    <dataset>_<model>_all_metrics.json) and PNG plots of the same stem (estimate vs truth, bias vs
    S/N and size; --no-plots removes earlier ones), and the CNN's estimates of the evaluated stamps
    in lens/predictions/<dataset>_<model>_<test|all>.parquet; as predict's, --no-symmetrize adds
    _nosym and --raw _raw to both (<dataset>_<model>_nosym_raw_metrics.json).
    Without --dataset it scores the dataset folder the model was trained on. Exit code 2 when no
    stamp could be predicted (every one NaN or blank).
    Prints one row of metrics per estimator (tab-separated when piped); --json prints the full metrics.
    """
    from astrotool.console import json_results

    from astrotool_lens.data import ShearDataset
    from astrotool_lens.evaluate import evaluate as run_eval, summary_rows
    from astrotool.ml.checkpoint import read_meta
    from astrotool_lens.model import ARCHITECTURE

    ctx = current()
    cls = _split_list(classical) if classical is not None else None
    cfg = ctx.section("lens", {"evaluate.model": model, "evaluate.dataset": dataset, "evaluate.split": split,
                               "evaluate.classical": cls, "evaluate.symmetrize": symmetrize,
                               "evaluate.calibrated": calibrated, "evaluate.plots": plots})
    e = cfg.evaluate
    dev = _torch_device(ctx, device)   # a device that cannot run: refused before any work
    mdir = _model_dir(ctx, e.model or cfg.train.model, cfg.train.dataset or cfg.dataset)
    meta = read_meta(mdir, ARCHITECTURE)  # evaluate loads the weights
    tr = meta["training"]   # the folder trained on (a copy's own), not its manifest's name
    ds_name = e.dataset or mc.trained_dataset(ctx.workspace.stage("lens", "shear"), mdir,
                                              {**tr, "dataset": tr.get("dataset_folder") or tr.get("dataset")})
    with mc.open_dataset(ctx, "lens", "shear", ds_name, ShearDataset, _no_dataset()) as ds:
        report = run_eval(ds, mdir, e, ctx.workspace.stage("lens", "predictions"),
                          ctx.workspace.stage("lens", "reports"), mapper=ctx.map, measure_cfg=cfg.measure, log=ctx.log,
                          overwrite=ctx.overwrite, explicit_calibrated=calibrated is True, device=dev,
                          min_response=cfg.calibrate.min_response)
    mc.record(ctx, inputs=[mdir], outputs=[report["report"], report["predictions"], *report["plots"]])
    for note in report.get("notes", []):   # a plot left out is information; the others a reader must not miss
        (ctx.log.info if " not plotted: " in note else ctx.log.warning)("note: %s", note)
    if json_results():
        ctx.emit(report)
    else:
        ctx.log.info("%s (%s, %d stamps, bias fit %s), model %s; report: %s", report["dataset"], report["subset"],
                     report["n"], report["bias_fit"], report["model"], report["report"])
        for est_name, rows in (report.get("field_means") or {}).items():
            if report["estimators"][est_name]["n_fields"] < 3:   # no m, c: each field's mean is the result
                for r in rows:
                    ctx.log.info("%s, field g1 %+.4f g2 %+.4f (%d stamps): g1 %+.5f ± %.5f, g2 %+.5f ± %.5f",
                                 est_name, r["true_g1"], r["true_g2"], r["n"], r["g1"], r["g1_err"], r["g2"],
                                 r["g2_err"])
        ctx.emit(summary_rows(report))   # one row per estimator: a table, tab-separated when piped


def _torch_device(ctx, device) -> str:
    """The torch device the CNN runs on for ``--device`` (or ``ml.accelerator``): ``cpu``, ``cuda``, ``cuda:N``
    or ``mps``, ``auto`` resolved; one that cannot run here is refused (exit 2), naming the setting."""
    from astrotool.backends import resolve_device

    rt = mc.runtime(ctx, device=device)
    return resolve_device(rt.accelerator, "torch", auto_mps=True, option=rt.accelerator_option)


@app.command()
def calibrate(
    model: str = typer.Option(None, "--model", help="model name or folder"),
    dataset: str = typer.Option(None, "--dataset", help="constant-shear simulations (preset fields)"),
    symmetrize: bool = typer.Option(None, "--symmetrize/--no-symmetrize", help="8-fold flip/rotation averaging"),
    device: mc.Device = None,
):
    """Fit the CNN's multiplicative and additive bias (m, c) on constant-shear simulations and store it.

    Predictions, evaluation and ONNX export then return (g - c) / (1 + m). Check the
    calibration with `evaluate` on fields drawn with another seed; `--raw` skips it.
    A fit with |m1| or |m2| above lens.calibrate.max_abs_m (default 0.1: the model does not
    match the simulations), or whose 1 + m1 or 1 + m2 is below lens.calibrate.min_response
    (default 0.1) or within lens.calibrate.min_response_sigmas (3) errors of 0 (the model hardly
    responds to shear), is refused (exit 2) and nothing is written.
    """
    from astrotool.errors import InputError
    from astrotool_lens.calibrate import calibrate_model
    from astrotool_lens.data import ShearDataset

    ctx = current()
    cfg = ctx.section("lens", {"calibrate.model": model, "calibrate.dataset": dataset,
                               "calibrate.symmetrize": symmetrize})
    c = cfg.calibrate
    dev = _torch_device(ctx, device)
    mdir = _model_dir(ctx, c.model or cfg.train.model, cfg.train.dataset or cfg.dataset)
    if not c.dataset:
        raise InputError("lens.calibrate.dataset", "name the constant-shear simulations to calibrate on (--dataset)")
    with mc.open_dataset(ctx, "lens", "shear", c.dataset, ShearDataset, _no_dataset()) as ds:
        res = calibrate_model(ds, mdir, c, log=ctx.log, device=dev)
    mc.record(ctx, outputs=mc.checkpoint_files(mdir))
    ctx.emit(res)


@app.command()
def validate(
    inputs: str = typer.Argument(..., help="constant-shear set with true shears: dataset name/folder, LensNet "
                                           "data.json (with g1, g2) or its folder"),
    model: str = typer.Option(None, "--model", help="estimator: a trained model (name or folder)"),
    method: str = typer.Option(None, "--method", case_sensitive=False,  # the choice core makes of the Literal
                               help="estimator: REGAUSS | KSB | BJ | LINEAR | METACAL | ANACAL (any case)"),
    calibration: str = typer.Option(None, "--calibration",
                                    help="JSON with m1, m2, c1, c2 (default: the model's own calibration)"),
    psf: str = typer.Option(None, "--psf", help="one PSF FITS stamp for every galaxy"),
    symmetrize: bool = typer.Option(None, "--symmetrize/--no-symmetrize", help="8-fold flip/rotation averaging"),
    response: str = typer.Option(None, "--response",
                                 help="none | metacal: the model's shear response measured on each stamp (no calibration)"),
    max_abs_m: float = typer.Option(None, "--max-abs-m", help="tolerance on the calibrated |m1|, |m2|"),
    max_abs_c: float = typer.Option(None, "--max-abs-c", help="tolerance on the calibrated |c1|, |c2|"),
    sigmas: float = typer.Option(None, "--sigmas", help="errors from 0 that still count as 0"),
):
    """Fit m and c per component (with errors) on any constant-shear set and say whether a calibration transfers.

    Fields are the stamps that share a true shear (ring pairs, fields). The estimator is a
    trained model (run as `predict` runs it; with --response metacal, its shear response is
    measured on each stamp as METACAL's is, and no calibration applied) or a classical method
    (measured as `measure` does, its table kept in lens/predictions). m and c are fitted on the raw estimates and on
    the calibrated ones; the calibration transfers when every calibrated |m_i| < max_abs_m and
    |c_i| < max_abs_c, or each is within --sigmas errors of 0. Writes
    lens/reports/<input>_<estimator>_validate.json (a model with --no-symmetrize:
    <input>_<model>_nosym_validate.json; the report records symmetrize); with --calibration FILE
    _cal is added (<input>_<estimator>_cal_validate.json), so the report of the raw estimator or of
    the model's own calibration is kept.
    """
    import numpy as np

    from astrotool.errors import InputError
    from astrotool.workspace import write_json_atomic
    from astrotool_lens.predict import is_dataset, read_inputs
    from astrotool_lens.validate import read_calibration, shear_fields, summary_record, validate_estimates

    ctx = current()
    cfg = ctx.section("lens", {"validate.model": model, "validate.method": method.upper() if method else None,
                               "validate.calibration": calibration, "validate.symmetrize": symmetrize,
                               "validate.response": response,
                               "validate.max_abs_m": max_abs_m, "validate.max_abs_c": max_abs_c,
                               "validate.sigmas": sigmas})
    v = cfg.validate
    if bool(v.model) == bool(v.method):
        raise InputError("lens.validate", "name one estimator: --model NAME (a trained model) or --method "
                                          "REGAUSS|KSB|BJ|LINEAR|METACAL|ANACAL")
    if v.method and v.response != "none":
        raise InputError("lens.validate.response", f"{v.response!r} is the response of a trained model (--model); "
                                                   f"{v.method} has its own")
    shear_stage = ctx.workspace.stage("lens", "shear")
    cal = read_calibration(v.calibration, cfg.calibrate.min_response) if v.calibration else None

    def truth_fields(truth, origin):
        """The constant-shear field per stamp; checked before any stamp is measured or predicted."""
        if not truth:
            raise InputError(origin or inputs, "no true shears: validate needs a dataset or a data.json with g1, g2 "
                                               "per entry")
        field = shear_fields(truth["g1"], truth["g2"])
        n_fields = len(np.unique(field))
        if n_fields == len(field) > 1:   # as calibrate: a field of one stamp cancels no shape noise
            raise InputError(origin or inputs, "every stamp has a shear of its own: validate needs constant-shear "
                                               "fields (ring pairs, or --preset fields / --field-size N > 1)")
        if n_fields < 3:
            raise InputError(origin or inputs, f"{n_fields} constant-shear field(s); m and c need at least 3 (ring "
                                               "pairs or fields of one shear each)")
        return field

    if v.model:
        from astrotool_lens.model import calibration_in_use, load_estimator
        from astrotool_lens.predict import predict_table

        mdir = _model_dir(ctx, v.model, cfg.dataset)
        est, meta = load_estimator(mdir)
        metacal = v.response == "metacal"
        estimator = f"{mdir.name}_metacal" if metacal else mdir.name
        inp = read_inputs(inputs, metacal or int(meta["architecture"]["kwargs"]["in_channels"]) == 2, psf,
                          shear_stage=shear_stage)
        truth, stem, origin = inp.truth, inp.stem, inp.origin
        field = truth_fields(truth, origin)
        if metacal:         # shear_from_response once the fields are known
            from astrotool_lens.response import model_response

            m = cfg.measure
            response_cols = model_response(mdir, inp.gal, inp.psf, mapper=ctx.map, delta=m.metacal_delta,
                                           fixnoise=m.metacal_fixnoise, seed=m.metacal_seed, symmetrize=v.symmetrize,
                                           batch_size=v.batch_size, desc=f"response {stem}",
                                           source=origin or inputs)
        else:
            own = None if cal is not None else calibration_in_use(   # checked before the stamps are predicted
                est, meta, True, v.symmetrize, model_name=mdir.name, min_response=cfg.calibrate.min_response,
                source=mdir / "model.json", instead="give --calibration FILE, or lower lens.calibrate.min_response")
            cols, _ = predict_table(est, meta, inp, v.batch_size, v.symmetrize, calibrated=False,
                                    device=mc.runtime(ctx).accelerator)
            raw = (cols["g1"], cols["g2"])
            if cal is None and own is not None:
                cal = {k: float(own[k]) for k in ("m1", "m2", "c1", "c2")} | {"source": str(mdir / "model.json")}
        ctx.record.add_input(mdir)
    else:
        from astrotool_lens.evaluate import hsm_estimates, table_estimates

        estimator = v.method   # REGAUSS, as measure and evaluate name it (its report's file name: regauss)
        if psf is None and is_dataset(inputs, shear_stage):
            from astrotool_lens.data import ShearDataset

            with mc.open_dataset(ctx, "lens", "shear", inputs, ShearDataset, _no_dataset()) as src:
                truth = {"g1": np.asarray(src.truth["g1"], float), "g2": np.asarray(src.truth["g2"], float)}
                stem, origin = src.stem, src.root
                field = truth_fields(truth, origin)
                table = hsm_estimates(src, ctx.workspace.stage("lens", "predictions") / f"{stem}_hsm.parquet",
                                      cfg.measure.model_copy(update={"methods": [v.method]}), ctx.map, ctx.log,
                                  ctx.overwrite)
        else:
            src = read_inputs(inputs, True, psf, shear_stage=shear_stage, who=CLASSICAL_NEEDS_PSF)
            truth, stem, origin = src.truth, src.stem, src.origin
            field = truth_fields(truth, origin)
            table = hsm_estimates(src, ctx.workspace.stage("lens", "predictions") / f"{stem}_hsm.parquet",
                                  cfg.measure.model_copy(update={"methods": [v.method]}), ctx.map, ctx.log,
                                  ctx.overwrite)
    problem = None   # a response that makes the biases meaningless: no verdict
    if not v.model:
        raw = table_estimates(table, np.arange(len(field)), [v.method], field)[v.method]
    elif v.response == "metacal":
        from astrotool_lens.metacal import shear_from_response
        from astrotool_lens.response import PREFIX, response_problem

        problem = response_problem(response_cols)
        if problem:
            ctx.log.warning("%s: %s", estimator, problem)
        raw = shear_from_response(response_cols, field, prefix=PREFIX)
    uncalibrated = "no stored calibration"
    if v.model and v.response == "metacal" and meta.get("calibration") is not None:
        uncalibrated = "the stored calibration is not applied with --response metacal"
    report = validate_estimates(truth["g1"], truth["g2"], raw, cal, v, field, uncalibrated, problem)
    sym = v.symmetrize if v.model else None   # a model's mode; predict's and evaluate's _nosym: a report of its own
    mode = ("_nosym" if sym is False else "") + ("_cal" if v.calibration else "")   # --calibration FILE: _cal
    named = estimator if v.model else v.method.lower()
    out = ctx.workspace.stage("lens", "reports") / f"{stem}_{named}{mode}_validate.json"
    report = {"input": str(inputs), "estimator": estimator, "symmetrize": sym, **report, "report": str(out)}
    write_json_atomic(out, report)
    mc.record(ctx, inputs=[inputs], outputs=[out])
    if not report["transfers"] and report["transfers"] is not None:
        ctx.log.warning("%s: %s", estimator, report["verdict"])
    ctx.emit(summary_record(report))


@app.command()
def predict(
    inputs: str = typer.Argument(..., help="FITS file, folder of FITS, LensNet data.json, or dataset name/folder"),
    model: str = typer.Option(None, "--model", help="model name or folder"),
    psf: str = typer.Option(None, "--psf", help="one PSF FITS stamp for every galaxy (PSF-channel models)"),
    name: str = typer.Option(None, "--name", help="output stem in lens/predictions (default: the input's)"),
    old_output: str = old_option("--output", "renamed --name"),
    symmetrize: bool = typer.Option(None, "--symmetrize/--no-symmetrize", help="8-fold flip/rotation averaging"),
    calibrated: bool = typer.Option(None, "--calibrated/--raw", help="apply the model's calibration"),
    response: str = typer.Option(None, "--response",
                                 help="none | metacal: the model's shear response measured on the stamps (no calibration)"),
    engine: str = typer.Option(None, "--engine", help="torch | onnxruntime (runs <model>/model.onnx)"),
    batch_size: int = typer.Option(None, "--batch-size", help="stamps per forward pass"),
    device: mc.Device = None,
):
    """Predict (g1, g2) for stamps; writes lens/predictions/<name>_<model>.parquet and reports stamps/s.

    --no-symmetrize adds _nosym, --raw _raw and --engine onnxruntime _onnx to the name, so a run in
    another mode or engine keeps the default run's table. Stamps with NaN/inf pixels or blank ones
    get NaN shear, flag 1 and the reason in column error (counted in n_flagged); when no stamp could
    be predicted the table is still written and the exit code is 2. A calibration is applied only in
    the symmetrize mode it was fitted in.

    With --response metacal the model measures metacalibration's ellipticities (as `validate
    --response metacal` does): g = <R>^-1 e with the response averaged over the whole input, to
    second order, the per-stamp e, R and D next to it, in <name>_<model>_metacal.parquet.
    """
    import numpy as np
    import pyarrow as pa

    from astrotool.errors import InputError
    from astrotool.io.tables import write_parquet
    from astrotool_lens.evaluate import rmse
    from astrotool_lens.model import calibration_in_use, check_onnx, load_estimator
    from astrotool_lens.predict import PREDICTION_COLUMNS, flagged_message, predict_table, read_inputs

    ctx = current()
    cfg = ctx.section("lens", {"predict.model": model, "predict.name": name or old_output,
                               "predict.symmetrize": symmetrize,
                               "predict.calibrated": calibrated, "predict.engine": engine,
                               "predict.response": response, "predict.batch_size": batch_size})
    pc = cfg.predict
    rt = mc.runtime(ctx, device=device)
    metacal = pc.response == "metacal"
    if metacal and pc.engine != "torch":
        raise InputError("lens.predict.response", "metacal runs the torch model; use --engine torch")
    if metacal and calibrated is True:
        raise InputError("--calibrated", "--response metacal applies no calibration (the shear response measured on "
                                         "each stamp takes its place): leave out --calibrated")
    mdir = _model_dir(ctx, pc.model or cfg.train.model, cfg.train.dataset or cfg.dataset)
    est, meta = load_estimator(mdir)
    runner = est
    calibration = None if metacal else calibration_in_use(est, meta, pc.calibrated, pc.symmetrize,
                                                          explicit=calibrated is True, model_name=mdir.name,
                                                          min_response=cfg.calibrate.min_response,
                                                          source=mdir / "model.json")
    if pc.engine == "onnxruntime":
        runner = mdir / "model.onnx"
        check_onnx(runner, meta, pc.symmetrize, calibration is not None)
    need_psf = metacal or int(meta["architecture"]["kwargs"]["in_channels"]) == 2
    inp = read_inputs(inputs, need_psf, psf, shear_stage=ctx.workspace.stage("lens", "shear"))
    descriptions, units = PREDICTION_COLUMNS, None
    if metacal:
        cols, pred, descriptions, units = _predict_response(ctx, cfg, mdir, inp)
        suffix = "_metacal"
    else:
        cols, pred = predict_table(runner, meta, inp, pc.batch_size, pc.symmetrize, calibration is not None,
                                   rt.inference_device(pc.engine))
        suffix = ""
        bad = np.flatnonzero(cols["flag"])
        if 0 < len(bad) < len(cols["flag"]):
            ctx.log.warning("%s", flagged_message(cols["error"]))
    # a mode of its own names a table of its own (as evaluate's --raw): runs in other modes never replace it,
    # nor does the ONNX export's run the torch model's (the two are compared side by side)
    mode = ("" if pc.symmetrize else "_nosym") + ("" if pc.calibrated or metacal else "_raw")
    suffix += "_onnx" if pc.engine == "onnxruntime" else ""
    out = ctx.workspace.stage("lens", "predictions") / f"{pc.name or inp.stem}_{mdir.name}{mode}{suffix}.parquet"
    write_parquet(pa.table(cols), out, metadata={"input": str(inputs), "model": str(mdir),
                                                 "psf": str(psf) if psf else None,   # one for every galaxy
                                                 "symmetrize": pc.symmetrize, "calibration": calibration,
                                                 "response": pc.response, "engine": pred.engine},
                  units=units, descriptions=descriptions, command=ctx.command)
    mc.record(ctx, inputs=[inputs, runner if pc.engine == "onnxruntime" else mdir], outputs=[out])
    summary = {"input": str(inputs), "model": mdir.name, "n": int(len(cols["g1"])), "output": str(out)}
    if not metacal:
        summary["n_flagged"] = int(np.count_nonzero(cols["flag"]))
    if "true_g1" in cols:
        summary["rmse_g1"] = rmse(cols["g1"], cols["true_g1"])
        summary["rmse_g2"] = rmse(cols["g2"], cols["true_g2"])
    if not metacal and len(cols["flag"]) and summary["n_flagged"] == len(cols["flag"]):   # nothing predicted
        from astrotool.errors import AstroError

        ctx.emit(summary)
        raise AstroError(f"{inputs}: no stamp could be predicted ({flagged_message(cols['error'], counts_only=True)}"
                         f"; written with NaN and flag 1 to {out})", exit_code=2)
    summary.update(mc.report_throughput(ctx, pred, "stamps"))
    ctx.emit(summary)


def _predict_response(ctx, cfg, mdir, inp):
    """``predict --response metacal``: the table's columns, a Predictions record of the run, their descriptions
    and units."""
    import time

    import numpy as np

    from astrotool.ml.predict import Predictions
    from astrotool_lens.metacal import shear_from_response
    from astrotool_lens.predict import PREDICTION_COLUMNS
    from astrotool_lens.response import DESCRIPTIONS, PREFIX, UNITS, model_response, response_problem

    pc, m = cfg.predict, cfg.measure
    t0 = time.perf_counter()
    resp = model_response(mdir, inp.gal, inp.psf, mapper=ctx.map, delta=m.metacal_delta, fixnoise=m.metacal_fixnoise,
                          seed=m.metacal_seed, symmetrize=pc.symmetrize, batch_size=pc.batch_size,
                          desc=f"response {inp.stem}", source=inp.origin or inp.stem)
    pred = Predictions(None, len(inp.gal), time.perf_counter() - t0, "torch", "cpu")
    problem = response_problem(resp)
    if problem:
        ctx.log.warning("%s: %s", mdir.name, problem)
    g1, g2 = shear_from_response(resp, prefix=PREFIX)
    cols = {"source": np.array(inp.source, dtype=str), "index": np.arange(len(g1)), "g1": g1, "g2": g2, **resp}
    if inp.truth:
        cols["true_g1"] = np.asarray(inp.truth["g1"], float)
        cols["true_g2"] = np.asarray(inp.truth["g2"], float)
    descriptions = {**PREDICTION_COLUMNS,
                    "g1": "shear g1 = <R>^-1 e with the response averaged over the table, to second order",
                    "g2": "shear g2 = <R>^-1 e with the response averaged over the table, to second order",
                    **{f"{PREFIX}_{k}": v for k, v in DESCRIPTIONS.items()},
                    f"{PREFIX}_flag": "0 measured, 1 failed", f"{PREFIX}_error": "why it failed"}
    return cols, pred, descriptions, {f"{PREFIX}_{k}": v for k, v in UNITS.items()}


@app.command()
def export(
    model: str = typer.Option(None, "--model", help="model name or folder"),
    output: str = typer.Option(None, "--output", help="ONNX path (default <model>/model.onnx)"),
    opset: int = typer.Option(None, "--opset", help="ONNX opset version"),
    _onnx: bool = old_option("--onnx", "not needed: ONNX is the only format", False),
    symmetrize: bool = typer.Option(None, "--symmetrize/--no-symmetrize", help="include 8-fold averaging"),
    calibrated: bool = typer.Option(None, "--calibrated/--raw", help="include the model's calibration"),
):
    """Export a trained model to ONNX and check onnxruntime against torch (max |diff| <= parity_tol).

    With the calibration in the graph the tolerance is parity_tol / (1 + m), at most
    parity_tol / lens.calibrate.min_response: a stored calibration whose 1 + m1 or 1 + m2 is below
    lens.calibrate.min_response is refused (exit 2; calibrate again, or --raw).
    """
    from astrotool_lens.export import export_plan

    ctx = current()
    cfg = ctx.section("lens", {"export.model": model, "export.opset": opset, "export.symmetrize": symmetrize,
                               "export.calibrated": calibrated})
    x = cfg.export
    mdir = _model_dir(ctx, x.model or cfg.train.model, cfg.train.dataset or cfg.dataset)
    est, stamps, out, kwargs = export_plan(mdir, output, x.opset, x.symmetrize, x.parity_samples, x.parity_tol,
                                           x.calibrated, explicit=calibrated is True,
                                           min_response=cfg.calibrate.min_response)
    res = mc.export_checked(ctx, est, stamps, out, sources=[mdir], **kwargs)
    ctx.emit({**res, **{k: kwargs["metadata"]["onnx"][k] for k in ("symmetrize", "calibrated")}})
