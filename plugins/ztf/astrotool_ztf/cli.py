"""``astro ztf``: ZTF alerts and their stamps."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from astrotool.ml import commands as mc

__docformat__ = "numpy"

app = typer.Typer(no_args_is_help=True)
"""Typer app of ``astro ztf``."""


def _model(ctx, name: str, option: str = "--model") -> Path:
    """:func:`astrotool.ml.commands.model_dir` of a model that must exist; a missing one is refused listing
    the models of the workspace (as a missing dataset is)."""
    from astrotool_ztf import NAME

    return mc.model_dir(ctx, NAME, name, option, trained=True)


@app.callback()
def main() -> None:
    """ZTF alerts: ingest Avro/Parquet alert packets into an alert table and 63×63 stamp cubes, or simulate
    labelled ones; train, evaluate and run ALeRCE's stamp classifier, a temporal model and an autoencoder."""


@app.command()
def ingest(
    paths: List[Path] = typer.Argument(..., help="Alert files (.avro, .avro.gz, .parquet), tar archives of "
                                                          ".avro files (.tar, .tar.gz) or folders of them."),
    stamp_size: Optional[int] = typer.Option(None, "--stamp-size",
                                             help="Stamp side in pixels; smaller stamps are NaN-padded."),
    compression: Optional[str] = typer.Option(None, "--compression",
                                              help="HDF5 compression: none, low, medium or high."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Alerts decoded at a time."),
    keep_history: Optional[bool] = typer.Option(None, "--history/--no-history",
                                                help="Keep prv_candidates as a JSON column."),
) -> None:
    """Read ZTF alert files into an alert table and a stamp file per input.

    For each input NAME writes ztf/alerts/NAME_alerts.parquet (one row per
    alert: objectId, candid, jd, fid, magpsf, sigmapsf, ra, dec and other
    candidate fields, history counts, stamp flags and any label columns of a
    broker dump) and ztf/stamps/NAME_stamps.h5 (science, template, difference:
    float32 N x 63 x 63 in table order; candid; objectId). A tar archive of
    single-alert .avro files (ZTF's nightly archives) is one input. Folders are
    searched for .avro, .avro.gz, .parquet and .tar[.gz] files. A bad file (or
    archive member) is reported and the others are still ingested. Existing
    outputs are kept unless --overwrite; outputs made with other settings are
    refused before any work. Inputs of one call sharing a name get their parent
    folders prefixed; a file ingested before keeps its name (also moved or copied:
    the same content), and a new file never takes the name of another file's
    outputs. A file named twice is ingested once.
    """
    import time
    from dataclasses import asdict

    from astrotool.context import current
    from astrotool_ztf import ALERTS, NAME, STAMPS
    from astrotool_ztf.ingest import expand_inputs, ingest_files, version_key, warn_ingested

    ctx = current()
    cfg = ctx.section(NAME, {"ingest.stamp_size": stamp_size, "ingest.compression": compression,
                             "ingest.batch_size": batch_size, "ingest.keep_history": keep_history}).ingest
    ws = ctx.workspace
    files = expand_inputs(paths)
    for f in ctx.shard_of(files):
        ctx.record.add_input(f)
    t0 = time.perf_counter()
    done = ingest_files(files, ws.stage(NAME, ALERTS), ws.stage(NAME, STAMPS), cfg, ctx.map, ctx.overwrite,
                        shard_of=ctx.shard_of)
    seconds = time.perf_counter() - t0   # wall clock: the rate of this run, whatever --jobs
    for r in done:
        if not r.skipped:
            ctx.record.add_output(r.alerts)
            ctx.record.add_output(r.stamps)
    warn_ingested(ctx.log, done, cfg.stamp_size)
    skipped = sum(r.skipped for r in done)
    if skipped:
        ctx.log.info("kept %d existing output pair(s) (%s)", skipped, ctx.kept_hint)
    fresh = sum(r.n_alerts for r in done if not r.skipped)   # failed and kept files left out
    versions = {v for r in done for v in r.schema_versions.split(", ") if v}
    mine = len(ctx.shard_of(files))   # every input of this task, a folder with no alert file included: as the
    ctx.emit({"files": mine, "ingested": len(done) - skipped, "kept": skipped,   # progress line counts them
              "failed": mine - len(done),
              "alerts": sum(r.n_alerts for r in done),
              "schema_versions": ", ".join(sorted(versions, key=version_key)),
              "alerts_per_s": round(fresh / seconds, 1) if fresh and seconds > 0 else None,
              "outputs": [asdict(r) for r in done]})


@app.command()
def simulate(
    n_objects: Optional[int] = typer.Option(None, "-n", "--n-objects", help="Objects to draw (AGN, SN and VS have "
                                                                          "several alerts)."),
    name: Optional[str] = typer.Option(None, "--name", help="File stem (default: ztf.simulate.name)."),
) -> None:
    """Draw labelled alerts (AGN, SN, VS, asteroid, bogus) with GalSim, then ingest them.

    Writes ztf/simulated/NAME_NNNN.parquet (alert packets in the ZTF schema,
    gzipped FITS cutouts, label columns class and bogus_kind), then ingests
    each into ztf/alerts/ and ztf/stamps/ as `astro ztf ingest` does. Object i
    is drawn from the seed (core.seed, i): the same alerts for any --jobs.
    Files made with the same settings are kept; other settings are refused
    unless --overwrite. Under --shard I/N a task draws and ingests its share of
    the files.
    """
    import dataclasses
    import functools
    import time

    from astrotool.context import current
    from astrotool_ztf import ALERTS, NAME, SIMULATED, STAMPS
    from astrotool_ztf.ingest import ingest_files, output_name
    from astrotool import made_with
    from astrotool_ztf.simulate import check_own_tables, file_record, plan_files, simulate_item, stale_files

    ctx = current()
    cfg = ctx.section(NAME, {"simulate.n_objects": n_objects, "simulate.name": name})
    sim = cfg.simulate
    ws = ctx.workspace
    folder = ws.stage(NAME, SIMULATED)
    # an ingested table named NAME_NNNN is not simulate's to replace: refused before anything is drawn
    check_own_tables(sim.name, folder, ws.stage(NAME, ALERTS), ws.stage(NAME, STAMPS))
    items = plan_files(sim.name, folder, ctx.seed, sim.model_dump(mode="json"), ctx.overwrite)
    # files made with other settings: refused before anything is drawn
    made_with.check_all([([i.path], file_record(i), False) for i in items], overwrite=ctx.overwrite)
    stale = stale_files(sim.name, [folder, ws.stage(NAME, ALERTS), ws.stage(NAME, STAMPS)], len(items))
    if stale and not ctx.overwrite:  # fewer objects: the extra files go only with --overwrite
        raise made_with.SettingsChanged(stale[0], [f"ztf.simulate.n_objects: {sim.n_objects} objects fill "
                                                   f"{len(items)} file(s); the files of an earlier run with more "
                                                   "objects exist"],
                                        hint="use --overwrite to remove them")
    for path in stale:  # every task of an array removes them: one of them first
        ctx.log.info("removing %s (an earlier run with more objects)", path)
        path.unlink(missing_ok=True)
    t0 = time.perf_counter()
    done = [r for _, r in ctx.map(simulate_item, items, desc="simulate alerts", keys=[i.path for i in items])]
    t_sim = time.perf_counter() - t0  # ctx.map ran this shard's files: they are ingested here, all of them
    own_files = functools.partial(ctx.map, options=dataclasses.replace(ctx.executor_options, shard=None))
    written = [p for p, new in done if new]
    for p in written:   # recorded now: a stop during the ingest keeps them, and run.json names them
        ctx.record.add_output(p)
    # NAME_NNNN: unique by construction, named as they are (not by ingest's clash rules: in a copied
    # workspace the recorded inputs are elsewhere, and NAME_NNNN must still be these files' tables)
    kept = [p for p, new in done if not new]
    results = []   # an empty list is no batch (no progress bar, no Dask cluster started for nothing)
    if written:
        results += ingest_files(written, ws.stage(NAME, ALERTS), ws.stage(NAME, STAMPS), cfg.ingest, own_files, True,
                                names=[output_name(p) for p in written])
    simulated = sum(r.n_alerts for r in results)   # this run's: not those of files a stopped run left
    if kept:
        results += ingest_files(kept, ws.stage(NAME, ALERTS), ws.stage(NAME, STAMPS), cfg.ingest, own_files,
                                ctx.overwrite, names=[output_name(p) for p in kept])
    for r in results:
        if not r.skipped:
            ctx.record.add_output(r.alerts)
            ctx.record.add_output(r.stamps)
    n_alerts = sum(r.n_alerts for r in results)
    ctx.emit({"files": len(done), "written": len(written), "kept": len(done) - len(written), "alerts": n_alerts,
              "objects": sum(r.n_objects for r in results),
              "alerts_per_s": round(simulated / t_sim, 1) if written and t_sim > 0 else None,
              "alert_tables": [r.alerts for r in results]})


@app.command()
def prepare(
    tables: List[str] = typer.Argument(None, help="Alert tables in ztf/alerts: names or glob patterns "
                                                  "(default: ztf.prepare.inputs)."),
    name: Optional[str] = typer.Option(None, "--name", help="Dataset name: ztf/prepared/NAME."),
    crop: Optional[int] = typer.Option(None, "--crop", help="Stamp side after the centre crop: 21, 33, 45 or 63."),
) -> None:
    """Make a training set: cropped, normalised stamps (+ NaN mask), 23 features, labels, splits by objectId.

    Reads NAME_alerts.parquet and NAME_stamps.h5 of each table (from `astro ztf
    ingest` or `astro ztf simulate`); keeps the alerts whose label column holds
    a known class. Validation and test hold ztf.prepare.val_per_class and
    test_per_class objects of each class, fixed by the seed. An existing set
    made with the same settings is kept; other settings are refused unless
    --overwrite.
    """
    from astrotool.context import current
    from astrotool_ztf import ALERTS, NAME, PREPARED, STAMPS
    from astrotool_ztf.ingest import alert_tables
    from astrotool_ztf.prepare import prepare_dataset

    ctx = current()
    cfg = ctx.section(NAME, {"prepare.name": name, "prepare.crop": crop,
                             "prepare.inputs": list(tables) if tables else None}).prepare
    ws = ctx.workspace
    alerts_dir, stamps_dir = ws.stage(NAME, ALERTS), ws.stage(NAME, STAMPS)
    pairs = [(alerts_dir / f"{n}_alerts.parquet", stamps_dir / f"{n}_stamps.h5")
             for n in alert_tables(alerts_dir, cfg.inputs)]
    for a, s in pairs:
        ctx.record.add_input(a)
        ctx.record.add_input(s)
    out = prepare_dataset(pairs, ws.stage(NAME, PREPARED) / cfg.name, cfg, ctx.seed, ctx.overwrite, ctx.log)
    if not out["kept"]:
        ctx.record.add_output(out["dataset"])
    ctx.emit(out)


@app.command()
def train(
    dataset: Optional[str] = typer.Option(None, "--dataset", help="Prepared set name or folder."),
    model: Optional[str] = typer.Option(None, "--model", help="Model name (ztf/models/<model>)."),
    arch: Optional[str] = typer.Option(None, "--arch", help="What to train: classifier (ALeRCE's stamp "
                                                            "classifier, first alert), temporal (1 to "
                                                            "max_alerts alerts), ae or vae (Astorga's "
                                                            "autoencoder), probe (on an autoencoder's "
                                                            "latents, --encoder)."),
    seeds: Optional[str] = typer.Option(None, "--seeds", help="Comma-separated seeds: one model each."),
    encoder: Optional[str] = typer.Option(None, "--encoder", help="--arch probe: the trained autoencoder."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Training epochs."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Alerts per optimiser step."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Adam learning rate."),
    patience: Optional[int] = typer.Option(None, "--patience", help="Early-stopping patience [epochs]; 0 = off."),
    resume: Optional[bool] = typer.Option(None, "--resume/--no-resume", help="Continue from the last checkpoint "
                                          "(--no-resume refuses an existing model: --overwrite starts over)."),
    device: mc.Device = None,
    precision: mc.Precision = None,
    devices: mc.Devices = None,
    num_nodes: mc.NumNodes = None,
) -> None:
    """Train the stamp classifier on a prepared set's train split (validated on the first alerts of val), or
    with --arch temporal one model for an object's first 1 to max_alerts alerts, or with --arch ae|vae the
    autoencoder (no labels used).

    Checkpoints every epoch in ztf/models/<model>/ (the best epoch by val_loss,
    and last/ to resume). Re-running with the same settings resumes; other
    settings are refused (exit 2) naming them; --overwrite starts afresh. With
    --seeds 0,1,2 one model per seed (<model>_seed0, ...). Where it trains comes
    from the [ml] section (--device, --precision, --devices, --num-nodes). The
    loss curves go to ztf/reports/<model>_history.png.
    """
    import contextlib

    from astrotool.console import json_results
    from astrotool.context import current
    from astrotool.errors import ConfigError
    from astrotool_ztf import NAME, PREPARED, REPORTS
    from astrotool_ztf.prepare import StampDataset
    from astrotool_ztf.autoencoder import train_autoencoder
    from astrotool_ztf.classify import warn_stale_onnx
    from astrotool_ztf.temporal import train_temporal
    from astrotool_ztf.train import no_dataset, require_encoder, train_classifier

    ctx = current()
    if encoder and (arch or ctx.section(NAME).train.arch) != "probe":
        raise ConfigError(["--encoder: used only with --arch probe (a probe on the autoencoder's latents)"])
    try:
        seed_list = [int(v) for v in seeds.split(",")] if seeds is not None else None   # "": refused
    except ValueError:
        raise ConfigError([f"--seeds: expected comma-separated integers, got {seeds!r}"]) from None
    cfg = ctx.section(NAME, {"train.dataset": dataset, "train.model": model, "train.arch": arch,
                             "train.seeds": seed_list, "train.encoder": encoder, "train.epochs": epochs,
                             "train.batch_size": batch_size,
                             "train.lr": lr, "train.patience": patience, "train.resume": resume}).train
    require_encoder(cfg)
    if cfg.arch == "probe":   # a name with no model: refused listing the models, as --model is
        _model(ctx, cfg.encoder, "--encoder")
    rt = mc.runtime(ctx, device=device, precision=precision, devices=devices, num_nodes=num_nodes)
    rt.launch()
    if not rt.is_global_zero:
        ctx.mark_copy()
    elif cfg.seeds and ctx.options.seed is not None:   # each model takes its seed of the list, none the global one
        ctx.log.warning("--seed %s is not used: --seeds (ztf.train.seeds) %s gives each model its own seed; leave "
                        "--seed out, or put it in --seeds", ctx.options.seed, ",".join(map(str, cfg.seeds)))
    ds = mc.open_dataset(ctx, NAME, PREPARED, cfg.dataset, StampDataset, no_dataset())
    base = cfg.model or f"{ds.name}_{cfg.arch}"
    runs = [(s, f"{base}_seed{s}") for s in cfg.seeds] if cfg.seeds else [(ctx.seed, base)]
    summaries = []
    with ds:
        for seed, name in runs:
            mdir = mc.model_dir(ctx, NAME, name)
            progress = (mc.epoch_progress(ctx, cfg.epochs, f"train {mdir.name}",
                                          mc.resumed_dir(ctx, mdir, rt, cfg.resume))
                        if rt.is_global_zero else contextlib.nullcontext(None))
            with progress as on_epoch:
                trainer = {"temporal": train_temporal, "ae": train_autoencoder,
                           "vae": train_autoencoder}.get(cfg.arch, train_classifier)  # classifier, probe
                res = trainer(ds, cfg, mdir, seed, overwrite=ctx.overwrite, log=ctx.log, on_epoch=on_epoch, runtime=rt)
            if rt.is_global_zero:
                warn_stale_onnx(mdir, ctx.log)   # an export of the weights before: no longer this model
                mc.record(ctx, outputs=mc.checkpoint_files(mdir))
                plot = mc.history_figure(ctx, mdir, ctx.workspace.stage(NAME, REPORTS) / f"{mdir.name}_history.png")
                summaries.append({**res, "history_plot": str(plot) if plot else None})
    if rt.is_global_zero:   # --json: a list, one summary per model, however many were trained
        ctx.emit(summaries if json_results() or len(summaries) > 1 else summaries[0])


def _seen_objects(ctx, meta: dict, ds, split: str) -> str | None:
    """``"k of n"`` where a model trained on another prepared set of the workspace saw ``k`` of the ``n`` objects of
    ``ds``'s ``split`` in its training or validation split (a set of the same name keeps them apart by
    construction); None where it saw none, or its set is gone or unreadable."""
    from astrotool.errors import AstroError
    from astrotool_ztf import NAME, PREPARED
    from astrotool_ztf.prepare import StampDataset

    ident = (meta.get("settings") or {}).get("dataset")
    name = ident.get("name") if isinstance(ident, dict) else (meta.get("training") or {}).get("dataset")
    if not isinstance(name, str) or name == ds.name:
        return None
    try:
        trained = StampDataset(ctx.workspace.stage(NAME, PREPARED) / name).metadata(["objectId", "split"])
        scored = ds.metadata(["objectId", "split"])
    except (AstroError, OSError, ValueError, KeyError):
        return None
    objects = set(scored["objectId"][scored["split"] == split].astype(str))
    seen = objects & set(trained["objectId"][trained["split"] != "test"].astype(str))
    return f"{len(seen)} of {len(objects)}" if seen else None


def _scored_set(ctx, sections, model_dirs) -> str:
    """The prepared set ``evaluate`` scores: ``--dataset`` (``ztf.evaluate.dataset``), else the set the models
    named with ``--model`` were trained on when they share one that can still be found
    (:func:`astrotool.ml.commands.trained_dataset`), else ``ztf.train.dataset`` with a warning; an info line
    names the set chosen from the models."""
    from astrotool.errors import InputError
    from astrotool.ml import commands as mc
    from astrotool.ml.checkpoint import read_meta
    from astrotool_ztf import NAME, PREPARED

    if sections.evaluate.dataset:
        return sections.evaluate.dataset
    fallback = sections.train.dataset
    if not model_dirs:
        return fallback
    stage, sets = ctx.workspace.stage(NAME, PREPARED), set()
    for d in model_dirs:
        try:
            training = read_meta(d).get("training") or {}
        except InputError:   # said where the model is checked
            return fallback
        sets.add(mc.trained_dataset(stage, d, training))
    (own,) = sets if len(sets) == 1 else ("",)
    models, were = ", ".join(d.name for d in model_dirs), "was" if len(model_dirs) == 1 else "were"
    if own and Path(own).is_absolute() and Path(own).is_dir():
        ctx.log.info("scoring on the set %s, the one %s %s trained on (--dataset to score on another)",
                     Path(own).name, models, were)
        return own
    why = ("were trained on different sets" if len(sets) > 1 else
           f"{were} trained on {own}, which is not there" if own else f"{were} recorded with no training set")
    ctx.log.warning("scoring on the set %s (ztf.train.dataset): %s %s; --dataset names the set to score on",
                    fallback, models, why)
    return fallback


@app.command()
def evaluate(
    models: List[str] = typer.Option(None, "--model", help="Model name or folder; repeat for several (seeds). "
                                                           "Default: every model of --dataset."),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="Prepared set name or folder (default: "
                                                                  "ztf.evaluate.dataset, else the --model's own "
                                                                  "set, else ztf.train.dataset)."),
    split: Optional[str] = typer.Option(None, "--split", help="train | val | test (first alerts)."),
    baseline: Optional[str] = typer.Option(None, "--baseline", help="Temporal models: the single-alert "
                                                                    "classifier to compare with (default: "
                                                                    "<dataset>_classifier, else the lowest "
                                                                    "<dataset>_classifier_seedN)."),
    device: mc.Device = None,
) -> None:
    """Score classifiers on the first alert of each object of a split: accuracy, macro-F1, per-class recall,
    confusion matrix, calibration error before and after temperature scaling.

    With --json the result is one object whatever was scored: `split`, `dataset`,
    `models` (a row per classifier), `summary` (the mean and sample standard
    deviation, ddof = 1, of each figure over each group of models trained alike
    but for the seed, the group's models in `of`), `autoencoders` (a row per
    autoencoder) and `temporal` (per temporal model, a row per number of alerts). Without --model, the models of
    the set (<dataset>_*, trained on a set of that name) that do not fit it
    (unfinished, damaged weights, other classes or crop) are left out with a
    warning. With --model and no --dataset, the set the models were trained
    on is scored. Writes
    ztf/reports/<model>_<dataset>_<split>_evaluate.json, _confusion.png
    (normalised) and _reliability.png. An unfinished checkpoint is refused.
    """
    from astrotool.console import json_results
    from astrotool.context import current
    import numpy as np

    from astrotool.errors import InputError
    from astrotool.ml.checkpoint import load_checkpoint, read_meta
    from astrotool.workspace import write_json_atomic
    from astrotool_ztf import MODELS, NAME, PREPARED, REPORTS
    from astrotool_ztf.autoencoder import clustering_accuracy, latents
    from astrotool_ztf.classify import check_compatible, check_finished, temperature
    from astrotool_ztf.evaluate import (baseline_candidates, evaluate_model, seed_groups, shown_row, summarise,
                                        write_figures)
    from astrotool_ztf.model import AUTOENCODER, CLASSIFIERS, PROBE, TEMPORAL
    from astrotool_ztf.prepare import StampDataset
    from astrotool_ztf.temporal import gain_table
    from astrotool_ztf.train import no_dataset, probe_encoder_dataset

    ctx = current()
    warnings = []   # every warning, also in the --json result

    def warn(message: str) -> None:
        ctx.log.warning("%s", message)
        warnings.append(message)

    sections = ctx.section(NAME, {"evaluate.dataset": dataset, "evaluate.split": split})
    split = sections.evaluate.split
    dev = mc.runtime(ctx, device=device).accelerator
    named = [_model(ctx, m) for m in models] if models else []
    ds = mc.open_dataset(ctx, NAME, PREPARED, _scored_set(ctx, sections, named), StampDataset, no_dataset())
    base = _model(ctx, baseline, "--baseline") if baseline else None   # a trained model, or InputError
    if base is not None and read_meta(base)["architecture"]["name"] not in CLASSIFIERS:
        kind = "a temporal model" if read_meta(base)["architecture"]["name"] == TEMPORAL else "an autoencoder"
        raise InputError("--baseline", f"{base.name} is {kind}, not a single-alert classifier: the baseline of a "
                                       "temporal model is a classifier or a probe (train --arch classifier|probe)")
    verdicts: dict = {}   # model folder -> whether it fits the set (fits()): each left out is warned about once
    if models:
        dirs = named
        twice = sorted({d.name for d in dirs if [e.resolve() for e in dirs].count(d.resolve()) > 1})
        if twice:
            raise InputError("--model", f"{', '.join(twice)} given more than once (each model is scored once)")
    else:
        def trained_on(d):  # the name of the set a model recorded it was trained on (None: none recorded;
            try:  # False: unreadable, left out with a warning as fits() does, and as fits() judged)
                meta = read_meta(d)
            except InputError as e:
                warn(f"left out {d.name}: {e.problem}")
                verdicts[d] = False   # not warned about again as a default baseline
                return False
            ident = (meta.get("settings") or {}).get("dataset")
            return ident.get("name") if isinstance(ident, dict) else (meta.get("training") or {}).get("dataset")

        root = ctx.workspace.stage(NAME, MODELS)
        dirs = sorted(p for p in root.glob(f"{ds.name}_*") if (p / "model.json").is_file()
                      and trained_on(p) in (None, ds.name))  # not sim_c33_* of the set sim_c33
        if not dirs:
            raise InputError(root, f"no model of the set {ds.name!r} (train one, or name it with --model)")

    def check(d):  # before any work: a set re-made since a model's training is no hold-out; an unfinished model
        meta = read_meta(d)  # is not scored, nor a classifier without its temperature (as predict and export),
        arch = meta["architecture"]["name"]  # nor one of other classes or crop (said first: "crop 21 -> 33")
        check_compatible(meta, ds, d, ("crop",) if arch == AUTOENCODER else ("classes", "crop"))
        mc.check_trained_on((meta.get("settings") or {}).get("dataset"), ds, d)
        if arch == PROBE:   # nor a probe whose encoder saw another set of this name
            encoder = (meta.get("hyperparameters") or {}).get("encoder") or "?"
            mc.check_trained_on(probe_encoder_dataset(meta, d), ds, f"{encoder} (the encoder of {d.name})",
                                remedy=f"train the autoencoder {encoder} on it (--overwrite), then the probe")
        (temperature if arch in CLASSIFIERS else check_finished)(meta, d)
        load_checkpoint(d)   # damaged weights (truncated, SHA-256 differs): before any report is written

    def fits(d):  # the implicit models and baseline: one that does not fit is left out, warned about once
        if d not in verdicts:
            try:
                check(d)
                verdicts[d] = True
            except InputError as e:
                warn(f"left out {d.name}: {e.problem}")
                verdicts[d] = False
        return verdicts[d]

    for d in dirs if models else []:
        check(d)
    if base is not None:
        check(base)
    if not models:
        dirs = [d for d in dirs if fits(d)]
        if not dirs:
            raise InputError(ds.root, f"no model of the set {ds.name!r} fits it (the warnings above say why)")
    for d in dict.fromkeys([*dirs, *([base] if base is not None else [])]):   # a model given twice: once
        seen = _seen_objects(ctx, read_meta(d), ds, split)
        if seen:
            warn(f"{d.name}: {seen} objects of the {split!r} split of {ds.name} were in the training or validation "
                 "split of the set it was trained on: its scores here are optimistic")
    reports = ctx.workspace.stage(NAME, REPORTS)
    stem = f"{ds.name}_{split}"  # reports: <model>_<dataset>_<split>_...

    def arch_of(d):
        return read_meta(d)["architecture"]["name"]

    autoencoders = [d for d in dirs if arch_of(d) == AUTOENCODER]
    ae_rows, tables = [], {}  # shown beside the classifiers' results when the set has both
    if autoencoders:
        from astrotool_ztf.prepare import first_alerts

        with ds:
            if not len(first_alerts(ds, split)):   # as a classifier: refused, no report, no mean of nothing
                raise InputError(ds.root, f"no object in the {split!r} split")
            for d in autoencoders:
                lat = latents(d, ds, split, device=dev)
                acc = clustering_accuracy(lat["latent"], lat["label"], 10)
                row = {"model": d.name, "split": split, "n": int(len(lat["label"])),
                       "reconstruction_mse": float(np.mean(lat["recon_error"])),
                       "clustering_accuracy_k10": None if np.isnan(acc) else acc,  # null: 10 objects or fewer
                       "reconstruction_mse_by_class": {c: float(np.mean(lat["recon_error"][lat["class_name"] == c]))
                                                       for c in sorted(set(lat["class_name"]))}}
                out = reports / f"{d.name}_{stem}_evaluate.json"
                write_json_atomic(out, {**row, "dataset": ds.name})
                ctx.record.add_output(out)
                ae_rows.append(row)
        dirs = [d for d in dirs if d not in autoencoders]
    temporal = [d for d in dirs if arch_of(d) == TEMPORAL]
    if temporal:
        if base is None:
            base = next((b for b in baseline_candidates(ctx.workspace.stage(NAME, MODELS), ds.name) if fits(b)),
                        None)
            if base is None:
                warn(f"no single-alert classifier of the set {ds.name!r} to compare with ({ds.name}_classifier "
                     f"or {ds.name}_classifier_seedN); pass --baseline")
            else:
                ctx.log.info("baseline: %s", base.name)
        with ds:
            for d in temporal:
                tables[d.name] = gain_table(ds, d, split, baseline_dir=base, device=dev)
                out = reports / f"{d.name}_{stem}_temporal.json"
                write_json_atomic(out, {"model": d.name, "baseline": base.name if base else None,
                                        "dataset": ds.name, "split": split, "by_alerts": tables[d.name]})
                ctx.record.add_output(out)
        dirs = [d for d in dirs if d not in temporal]
    results = []
    with ds:
        for d in dirs:
            ctx.record.add_input(d / "model.json")
            r = evaluate_model(ds, d, split, device=dev)
            r.update(write_figures(r, reports))
            out = reports / f"{r['model']}_{stem}_evaluate.json"
            write_json_atomic(out, r)
            ctx.record.add_output(out)
            results.append(r)
            c = r["classification"]
            ctx.log.info("%s: accuracy %.3f, macro-F1 %.3f, ECE %.3f -> %.3f (T = %.2f) on %d alerts", r["model"],
                         c["accuracy"], c["macro_f1"], r["calibration_before"]["ece"], r["calibration_after"]["ece"],
                         r["temperature"], r["n"])
    rows = [{"model": r["model"], "n": r["n"], "accuracy": r["classification"]["accuracy"],   # as computed: --json
             "macro_f1": r["classification"]["macro_f1"],
             **{f"recall_{c}": v for c, v in zip(r["classification"]["class_names"], r["classification"]["recall"])},
             "ece_before": r["calibration_before"]["ece"], "ece_after": r["calibration_after"]["ece"],
             "temperature": r["temperature"], "confusion_png": r["confusion_png"]} for r in results]
    by_name = {r["model"]: r for r in results}  # mean ± std only over seeds of one configuration
    summaries = [{**summarise([by_name[d.name] for d in group]), "of": [d.name for d in group]}
                 for group in seed_groups(dirs, warn) if len(group) > 1]
    if not (rows or ae_rows or any(tables.values())):
        warn(f"nothing scored: the {split} split of {ds.name} holds no object the models could be scored on")
    if json_results():   # one shape whatever models were scored
        ctx.emit({"split": split, "dataset": ds.name, "models": rows, "summary": summaries,
                  "autoencoders": ae_rows, "temporal": tables, "warnings": warnings})
        return
    from astrotool.console import print_table

    def table(title, records):   # one titled table per kind (a `# title` line before each when piped), 4 decimals
        records = [shown_row(r) for r in records]
        if records:
            columns = list(dict.fromkeys(k for r in records for k in r))
            print_table(title, columns, [[r.get(c) for c in columns] for r in records])

    table(f"classifiers on {ds.name} {split}", rows)
    table(f"seed groups on {ds.name} {split}: mean ± std (ddof = 1)",
          [{"models": ", ".join(g["of"]), **{k: f"{g[k]['mean']:.4f} ± {g[k]['std']:.4f}" for k in
                                             ("accuracy", "macro_f1", "ece_before", "ece_after")}} for g in summaries])
    table(f"autoencoders on {ds.name} {split}", ae_rows)
    for m, t in tables.items():
        table(f"temporal model {m} on {ds.name} {split}: objects with at least k alerts", t)


@app.command()
def predict(
    inputs: List[str] = typer.Argument(..., help="Alert files (.avro, .avro.gz, .parquet, .tar[.gz]) or folders, "
                                                 "or names or glob patterns of ingested tables in ztf/alerts."),
    model: str = typer.Option(..., "--model", help="Model name or folder."),
    name: Optional[str] = typer.Option(None, "--name", help="Output stem in ztf/predictions (default: the model's)."),
    autoencoder: Optional[str] = typer.Option(None, "--autoencoder", help="An autoencoder (name or folder): its "
                                                                          "reconstruction error as an anomaly "
                                                                          "score per alert."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Alerts per forward pass."),
    engine: Optional[str] = typer.Option(None, "--engine", help="torch | onnxruntime (runs <model>/model.onnx "
                                                                "from `astro ztf export`)."),
    device: mc.Device = None,
) -> None:
    """Calibrated class probabilities of alerts, per alert and per objectId.

    Alert files are ingested first (as `astro ztf ingest`; finished outputs are
    kept, also with --overwrite: `astro ztf ingest --overwrite` ingests again).
    Tables are named or matched by glob patterns, as in `astro ztf prepare`.
    Writes ztf/predictions/NAME_alerts.parquet (p_<class>, class, p_max per
    alert, stamps_ok: false where a stamp was blank; recon_error with
    --autoencoder) and NAME_objects.parquet (per objectId: the normalised
    product of its alerts' probabilities, and the first alert's class), and CSV
    copies. An alert in several inputs (same candid) is kept once, a copy with a
    prediction if any. Predictions of other inputs (other alerts or stamp size),
    another model, autoencoder or engine under NAME are refused unless
    --overwrite, which replaces them. An unfinished checkpoint is refused.
    With --engine onnxruntime the classifier runs from <model>/model.onnx,
    refused unless exported from the checkpoint's weights and temperature
    (the autoencoder, if any, runs with torch), and _onnx is added to NAME
    (as lens predict does), so the torch run's tables are kept beside.
    Under --shard I/N (a Slurm array) a task predicts its share of the input
    files and of the tables named, kept per input in ztf/predictions/.parts/;
    the task that finishes last (or a rerun) writes the one pair of tables,
    over every input, and removes the parts.
    """
    import functools
    import time

    import numpy as np
    import pandas as pd

    import astrotool
    from astrotool import parts
    from astrotool.context import current
    from astrotool.errors import InputError
    from astrotool.executors import failure_line
    from astrotool.io.tables import parquet_metadata, write_parquet
    from astrotool.names import check_name
    from astrotool.workspace import atomic_path
    from astrotool_ztf import ALERTS, NAME, PREDICTIONS, STAMPS
    from astrotool import made_with
    from astrotool_ztf.classify import check_finished, load_classifier, temperature
    from astrotool.context import astro_command
    from astrotool_ztf.ingest import (FEATURE_FIELDS, alert_tables, column_metadata, expand_inputs, ingest_files,
                                      missing_fields, output_names, warn_ingested)
    from astrotool_ztf import __version__ as ztf_version
    from astrotool_ztf.predict import (OTHER_PREDICTIONS, alert_descriptions, check_models, input_identity,
                                       object_descriptions, per_object, predict_file)

    ctx = current()
    if name is not None:
        check_name(name, "--name")
    pc = ctx.section(NAME, {"predict.batch_size": batch_size, "predict.engine": engine}).predict
    batch_size = pc.batch_size
    rt = mc.runtime(ctx, device=device)   # the option, else ml.accelerator
    dev = rt.inference_device(pc.engine)  # a device this machine lacks: refused before any work
    ws = ctx.workspace
    alerts_dir, stamps_dir = ws.stage(NAME, ALERTS), ws.stage(NAME, STAMPS)
    mdir = _model(ctx, model)
    net, meta = load_classifier(mdir)
    temperature(meta, mdir)  # an unfinished checkpoint is refused before any work
    ctx.record.add_input(mdir / "model.json")
    if pc.engine == "onnxruntime":
        from astrotool_ztf.classify import check_onnx

        from astrotool.ml.predict import onnx_session

        path = check_onnx(mdir / "model.onnx", meta, mdir)
        ctx.record.add_input(path)
        net = onnx_session(path, dev)   # one session for every input table
    ae_dev = rt.inference_device("torch") if autoencoder else None
    ae = None
    if autoencoder:
        from astrotool.ml.checkpoint import build_model
        from astrotool_ztf.classify import load_autoencoder
        from astrotool_ztf.model import REGISTRY

        ae_dir = _model(ctx, autoencoder, "--autoencoder")
        ae_ckpt = load_autoencoder(ae_dir)
        check_finished(ae_ckpt.meta, ae_dir)   # as embed and evaluate: an autoencoder cut short is not used
        ae, ae_meta = build_model(ae_ckpt, REGISTRY).eval(), ae_ckpt.meta
        ctx.record.add_input(ae_dir / "model.json")
    shard = ctx.executor_options.shard
    pairs = []   # this task's inputs (alerts, stamps): every input without --shard
    every = []   # every input (alerts, stamps, the file naming its part under --shard), the other tasks' too
    files = [p for p in inputs if Path(p).exists()]
    names = [p for p in inputs if not Path(p).exists()]
    n_failed, errors = 0, {}
    if files:
        once: dict = {}  # a file named twice (or in a folder named too) is read once
        for f in expand_inputs([Path(p) for p in files]):
            once.setdefault(f.resolve(), f)
        expanded = list(once.values())
        stems = output_names(expanded, stamps_dir)   # over every file: alike in every --shard task
        # finished outputs are kept: --overwrite replaces the predictions, not the ingested tables
        # an input file replaced, or other ingest settings: refused before any work (predict --overwrite
        # does not ingest again)
        ingest_cfg = ctx.section(NAME).ingest
        since = len(ctx.failures)
        done = ingest_files(expanded, alerts_dir, stamps_dir, ingest_cfg, ctx.map, False, names=stems,
                            shard_of=ctx.shard_of,
                            hint=f"run `{astro_command('ztf', 'ingest', '--overwrite')} {{files}}` first (predict "
                                 "--overwrite replaces only the predictions)")
        errors = {(alerts_dir / f"{f.key}_alerts.parquet", stamps_dir / f"{f.key}_stamps.h5"): f.error
                  for f in ctx.failures[since:]}   # an item's key is its stem
        warn_ingested(ctx.log, done, ingest_cfg.stamp_size)   # as ingest says them
        n_failed = len(ctx.shard_of(expanded)) - len(done)   # under --shard: of this task's files
        pairs += [(Path(r.alerts), Path(r.stamps)) for r in done]
        every += [(alerts_dir / f"{n}_alerts.parquet", stamps_dir / f"{n}_stamps.h5", f)
                  for f, n in zip(expanded, stems)]
    tables = alert_tables(alerts_dir, names, "neither a file nor the name or glob pattern of an alert table") \
        if names else []   # table names and patterns, as prepare takes them
    for n in ctx.shard_of(tables):   # under --shard, this task's share of them, as of the files
        pairs.append((alerts_dir / f"{n}_alerts.parquet", stamps_dir / f"{n}_stamps.h5"))
    every += [(alerts_dir / f"{n}_alerts.parquet", stamps_dir / f"{n}_stamps.h5",
               alerts_dir / f"{n}_alerts.parquet") for n in tables]
    pairs = list(dict.fromkeys(pairs))  # an input named twice counts once
    if not pairs and shard is not None and not n_failed:   # more tasks than inputs: none fell to this one
        ctx.log.info("--shard %d/%d had nothing to do: the inputs fall to the other --shard tasks", *shard)
    if not pairs and shard is None:
        raise InputError(", ".join(inputs), f"no alert file could be ingested: {n_failed} failed (the errors "
                                            "above say why)")
    stem = (name or mdir.name) + ("_onnx" if pc.engine == "onnxruntime" else "")   # beside the torch run's
    out_dir = ws.stage(NAME, PREDICTIONS)
    models = {"model": mdir.name, "model_weights": meta.get("weights_sha256"),
              "autoencoder": ae_dir.name if ae is not None else None,
              "autoencoder_weights": ae_meta.get("weights_sha256") if ae is not None else None,
              **({"engine": pc.engine} if pc.engine != "torch" else {})}

    table_path = out_dir / f"{stem}_alerts.parquet"

    identity = functools.cache(input_identity)   # each input read once for the record

    def settings(identities) -> dict:   # an input is its alerts (candid) and stamp side, whatever its table is named
        return made_with.record({**models, "inputs": sorted(str(i) for i in identities)})

    def kept(rec: dict) -> bool:   # the same inputs and model: made again alike; others: refused unless --overwrite
        try:
            return made_with.keep([table_path], rec, overwrite=ctx.overwrite, warn=False, forget=False)
        except made_with.SettingsChanged as e:
            raise made_with.SettingsChanged(e.path, e.changed, hint=OTHER_PREDICTIONS) from None

    # each input's predictions wait in a part (astrotool.parts) until every input is done; the one table records
    # the parts it merged, so a --shard task whose inputs it holds is kept
    folder = out_dir / ".parts" / stem
    run = parts.run_digest({**models, "ingest": ingest_cfg.model_dump(mode="json") if files else None,
                            "inputs": [str(k[0]) for k in every]},
                           {"astrotool_ztf": ztf_version, "astrotool": astrotool.__version__})
    part_of: dict = {}
    for a, s, f in every:   # an input named twice (a file and its table) waits in one part
        part_of.setdefault((a, s), parts.part_path(folder, run, Path(a).name.removesuffix("_alerts.parquet"), f,
                                                   ".parquet"))
    own = {"inputs": 0, "alerts": 0, "seconds": 0.0, "rates": [], "imputed": {}}   # this task's own work

    def predict_one(a, s):   # one input's per-alert predictions
        ctx.record.add_input(a)
        lacking = [f for f in missing_fields(s) if f in FEATURE_FIELDS]
        if lacking:   # null columns: the features fall back to the clip floor or the training mean
            own["imputed"][Path(a).name] = lacking
            ctx.log.warning("%s: its alerts have no feature field(s) %s: their predictions rest on filled-in "
                            "values (the clip floor, else the training mean)", Path(a).name, ", ".join(lacking))
        t0 = time.perf_counter()
        df, rate = predict_file(a, s, net, meta, batch_size, dev, autoencoder=ae, autoencoder_device=ae_dev)
        own["seconds"] += time.perf_counter() - t0
        own["inputs"] += 1
        own["alerts"] += len(df)
        if rate:
            own["rates"].append(rate)
        return df

    def own_summary() -> dict:   # what this task did (the tables' totals are named alerts, objects, ...)
        return {"predicted_inputs": own["inputs"], "predicted_alerts": own["alerts"],
                "alerts_per_s": round(own["alerts"] / own["seconds"], 1) if own["seconds"] else None,
                "model_alerts_per_s": round(float(np.mean(own["rates"])), 1) if own["rates"] else None,
                "imputed_features": own["imputed"]}

    def rows_of(table, keys) -> dict:   # the predictions of inputs whose parts are gone into the tables
        rows = pd.read_parquet(table)
        by_source = dict(tuple(rows.groupby("source", sort=False)))
        return {k: by_source.get(Path(k[0]).name, rows.iloc[:0]).reset_index(drop=True) for k in keys}

    def write_tables(found: dict):   # {input: its per-alert predictions} -> the tables, as without --shard
        rec = settings(identity(*k) for k in found)
        if shard is not None and table_path.exists() and not ctx.overwrite \
                and not parts.of_run(parquet_metadata(table_path), run):   # another run's: other inputs refused,
            kept(rec)                                                       # as without --shard
        alerts = pd.concat(found.values(), ignore_index=True)
        n_repeated = len(alerts) - alerts["candid"].nunique()
        if n_repeated:  # the same alert in several inputs (a nightly archive and a broker dump): kept once,
            first = alerts["class"].eq("").sort_values(kind="stable").index  # a copy with a prediction first
            alerts = alerts.loc[first].drop_duplicates("candid").sort_index().reset_index(drop=True)
            ctx.log.warning("%d repeated alert(s) (the same candid, in one input or several) kept once", n_repeated)
        in_table = alerts.groupby("source")["candid"].agg(set)   # an input whose copy of an alert of another
        short = {k for k, df in found.items()                     # input was dropped: the tables cannot stand
                 if not set(df["candid"]) <= in_table.get(Path(k[0]).name, set())}   # in for it
        objects = per_object(alerts, list(meta["classes"]))
        outputs = []
        for table, kind, descriptions in ((alerts, "alerts", alert_descriptions(meta["classes"])),
                                          (objects, "objects", object_descriptions(meta["classes"]))):
            path = write_parquet(table, out_dir / f"{stem}_{kind}.parquet", command="ztf predict",
                                 metadata={"model": str(mdir), "temperature": meta.get("temperature"),
                                           "engine": pc.engine,
                                           parts.RECORD_KEY: parts.merged_record(
                                               run, part_of, [k for k in found if k not in short])},
                                 **column_metadata(table.columns, descriptions))
            with atomic_path(out_dir / f"{stem}_{kind}.csv") as tmp:
                table.to_csv(tmp, index=False)
            outputs += [path, out_dir / f"{stem}_{kind}.csv"]
        made_with.write(outputs[0], rec)
        for p in outputs:
            ctx.record.add_output(p)
        return alerts, objects, outputs, n_repeated, short

    failed = {}
    if shard is None:
        kept(settings(identity(a, s) for a, s in pairs))   # other inputs or model: refused before any work
        found = {k: predict_one(*k) for k in pairs}
    else:   # each input's predictions wait in a part; the task that finishes last writes the tables
        mine = [*pairs, *errors]
        if table_path.exists() and not ctx.overwrite:
            check_models(table_path, models)
            if parts.held(parquet_metadata(table_path), {k: part_of[k] for k in mine}) == set(mine):
                ctx.log.info("%s: kept: it holds this task's inputs, predicted with the same model", table_path.name)
                ctx.emit({"kept": True, "outputs": [str(out_dir / f"{stem}_{kind}.{ext}")
                                                    for kind in ("alerts", "objects") for ext in ("parquet", "csv")]})
                return
        with parts.lock(table_path):   # not while another task reads the parts
            parts.clear_mine([part_of[k] for k in mine], ctx.overwrite)   # --overwrite: predicted again
            parts.mark_failed({part_of[k]: e for k, e in errors.items()})   # a failed input counts as finished
        for k in pairs:
            if not part_of[k].is_file():   # a part already there (a stopped run, another task) is kept
                df = predict_one(*k)
                with atomic_path(part_of[k]) as tmp:
                    df.to_parquet(tmp, index=False)
        with parts.lock(table_path):   # reading the parts and writing the tables: one task at a time
            found, failed, waiting, from_parts = parts.gather(part_of, pd.read_parquet, table_path, rows_of)
            if waiting:
                parts.log_waiting(ctx.log, len(part_of) - len(waiting), len(part_of), table_path,
                                  len(parts.of_other_runs(part_of, waiting)))
                ctx.emit({"outputs": [], "inputs_done": len(part_of) - len(waiting), "inputs": len(part_of),
                          **own_summary()})
                return
            if not found:
                raise InputError(", ".join(inputs), f"no alert file could be ingested: {len(failed)} failed (the "
                                                    "errors above and the tasks' logs say why)")
            alerts, objects, outputs, n_repeated, short = write_tables(found)
            # every input in the tables: the parts they merged go, but those of inputs whose repeated alerts the
            # tables dropped (the tables could not stand in for them)
            if not failed:
                parts.remove(folder, run, [part_of[k] for k in from_parts - short], part_of.values())
    if shard is None:
        with parts.lock(table_path):
            alerts, objects, outputs, n_repeated, _ = write_tables(found)
            if folder.is_dir():   # an earlier --shard run's parts and failed marks: the tables hold every input
                parts.remove(folder, run, list(folder.glob("*")), ())
    if failed:   # the parts stay: a rerun of the failed inputs' tasks writes the whole tables
        ctx.log.warning("%s holds %d of %d input(s); failed: %s; rerun the task(s) that ingest them (the others' "
                        "predictions are kept)", outputs[0].name, len(found), len(part_of),
                        "; ".join(failure_line(Path(a).name.removesuffix("_alerts.parquet"), e)
                                  for (a, _), e in failed.items()))
    n_bad = int(alerts["class"].eq("").sum())
    if n_bad:
        ctx.log.warning("%d alert(s) with no usable stamp: no prediction", n_bad)
    n_partial = int((~alerts["stamps_ok"] & alerts["class"].ne("")).sum())
    if n_partial:
        ctx.log.warning("%d alert(s) with a missing or undecodable stamp predicted from the others (stamps_ok "
                        "false in %s)", n_partial, outputs[0].name)
    ctx.emit({"alerts": len(alerts), "objects": len(objects), "no_prediction": n_bad,
              "incomplete_stamps": n_partial, "repeated": n_repeated, "engine": pc.engine, **own_summary(),
              "classes": alerts.loc[alerts["class"].ne(""), "class"].value_counts().to_dict(),   # no_prediction:
              "outputs": [str(p) for p in outputs]})   # the others


@app.command()
def export(
    model: str = typer.Option(..., "--model", help="Model name or folder."),
    output: Optional[str] = typer.Option(None, "--output", help="ONNX path (default <model>/model.onnx)."),
    opset: Optional[int] = typer.Option(None, "--opset", help="ONNX opset version."),
) -> None:
    """Export a classifier to ONNX: inputs stamps and features, output calibrated probabilities (temperature
    and softmax included); written only when ONNX Runtime matches torch to 1e-5 on validation alerts."""
    from astrotool.context import current
    from astrotool_ztf import NAME
    from astrotool_ztf.classify import calibrated_module, export_inputs, load_classifier, temperature

    ctx = current()
    opset = ctx.section(NAME, {"export.opset": opset}).export.opset
    mdir = _model(ctx, model)
    net, meta = load_classifier(mdir)
    t = temperature(meta, mdir)
    out = Path(output) if output else mdir / "model.onnx"
    res = mc.export_checked(ctx, calibrated_module(net, t), export_inputs(meta), out, sources=[mdir], opset=opset,
                            output_names=("probabilities",),
                            metadata={"classes": meta["classes"], "features": meta["features"], "crop": meta["crop"],
                                      "temperature": t, "feature_mean": meta["feature_mean"],
                                      "feature_std": meta["feature_std"],
                                      "weights_sha256": meta.get("weights_sha256")})
    ctx.emit({**res, "classes": meta["classes"], "temperature": t})


@app.command()
def embed(
    model: str = typer.Option(..., "--model", help="Autoencoder name or folder."),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="Prepared set name or folder (default: "
                                                                  "ztf.train.dataset)."),
    split: Optional[str] = typer.Option(None, "--split", help="train | val | test (first alerts)."),
    device: mc.Device = None,
) -> None:
    """Map an autoencoder's latents to 2-D with UMAP: ztf/embeddings/<model>_<dataset>_<split>.parquet (latents,
    UMAP coordinates, class, reconstruction error per alert) and a PNG coloured by class.

    An embedding made with the same model, set and [ztf.embed] settings is
    kept; other settings are refused unless --overwrite.
    """
    import pandas as pd

    from astrotool import made_with
    from astrotool.context import current
    from astrotool.io.tables import write_parquet
    from astrotool.ml.checkpoint import read_meta
    from astrotool_ztf import EMBEDDINGS, NAME, PREPARED
    from astrotool_ztf.autoencoder import check_metric, embedding_descriptions, latents, plot_embedding, umap_embedding
    from astrotool_ztf.classify import check_compatible, load_autoencoder
    from astrotool_ztf.ingest import column_metadata
    from astrotool_ztf.prepare import StampDataset
    from astrotool_ztf.train import no_dataset

    ctx = current()
    cfg = ctx.section(NAME, {"train.dataset": dataset, "embed.split": split})
    e = cfg.embed
    check_metric(e.metric)
    dev = mc.runtime(ctx, device=device).accelerator
    ds = mc.open_dataset(ctx, NAME, PREPARED, cfg.train.dataset, StampDataset, no_dataset())
    mdir = _model(ctx, model)
    load_autoencoder(mdir)   # a classifier: refused in plain words, before the UMAP settings are compared
    check_compatible(read_meta(mdir), ds, mdir, ("crop",))   # "crop 21 -> 33" rather than the manifest
    mc.check_trained_on((read_meta(mdir).get("settings") or {}).get("dataset"), ds, mdir)
    ctx.record.add_input(mdir / "model.json")
    out_dir = ctx.workspace.stage(NAME, EMBEDDINGS)
    stem = f"{mdir.name}_{ds.name}_{e.split}"   # as evaluate's reports: <model>_<dataset>_<split>
    outputs = [out_dir / f"{stem}.parquet", out_dir / f"{stem}.png"]
    rec = made_with.record({"model": mdir.name, "model_weights": read_meta(mdir).get("weights_sha256"),
                            "dataset": mc.dataset_identity(ds), "ztf": {"embed": e.model_dump(mode="json")}},
                           seed=ctx.seed)
    if made_with.keep(outputs, rec, overwrite=ctx.overwrite, warn=False):
        ctx.log.info("%s: skipped (done): made with the same settings", outputs[0].name)
        ctx.emit({"embedding": "skipped (done)", "parquet": str(outputs[0]), "png": str(outputs[1])})
        return
    with ds:
        lat = latents(mdir, ds, e.split, device=dev)
    xy = umap_embedding(lat["latent"], e.n_neighbors, e.min_dist, e.metric, ctx.seed,
                        where=f"{ds.root}: the {e.split!r} split")
    table = pd.DataFrame({"objectId": lat["objectId"], "class": lat["class_name"], "umap_1": xy[:, 0],
                          "umap_2": xy[:, 1], "recon_error": lat["recon_error"]})
    for j in range(lat["latent"].shape[1]):
        table[f"z{j}"] = lat["latent"][:, j]
    path = write_parquet(table, outputs[0], command="ztf embed",
                         metadata={"model": str(mdir), "dataset": ds.name, "umap": e.model_dump(mode="json")},
                         **column_metadata(table.columns, embedding_descriptions(lat["latent"].shape[1])))
    png = plot_embedding(outputs[1], xy, lat["class_name"],
                         f"{mdir.name}: UMAP of the latents ({ds.name}, {e.split}, {len(xy)} alerts)")
    made_with.write(path, rec)
    ctx.record.add_output(path)
    ctx.record.add_output(png)
    ctx.emit({"alerts": len(table), "latent": int(lat["latent"].shape[1]), "parquet": str(path), "png": str(png)})
