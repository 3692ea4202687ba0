"""``astro plato``: PLATO light curves and single-transit detection."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated, List, Optional

import typer

from astrotool.context import astro_command, old_option
from astrotool.ml import commands as mc

__docformat__ = "numpy"

TimeColumn = Annotated[Optional[str], typer.Option("--time-column", help="time column (default: time, TIME, ...) "
                                                                           "(sets plato.detect.time_column)")]
"""Option ``--time-column`` (sets ``plato.detect.time_column``)."""
FluxColumn = Annotated[Optional[str], typer.Option("--flux-column",
                                                   help="flux column (default: flux, PDCSAP_FLUX, SAP_FLUX, ...) "
                                                        "(sets plato.detect.flux_column)")]
"""Option ``--flux-column`` (sets ``plato.detect.flux_column``)."""
TimeUnit = Annotated[Optional[str], typer.Option("--time-unit", help="d | h | s (unit of the time column) "
                                                                     "(sets plato.detect.time_unit)")]
"""Option ``--time-unit``: unit of the time column, d, h or s (sets ``plato.detect.time_unit``)."""
Quality = Annotated[Optional[str], typer.Option("--quality", help="drop | keep the cadences flagged in a QUALITY "
                                                                  "or SAP_QUALITY column (default: drop) "
                                                                  "(sets plato.detect.quality)")]
"""Option ``--quality``: drop or keep flagged cadences (sets ``plato.detect.quality``)."""
Threshold = Annotated[Optional[float], typer.Option("--threshold", help="probability threshold of an event "
                                                                       "(sets plato.events.threshold)")]
"""Option ``--threshold``: probability threshold of an event (sets ``plato.events.threshold``)."""
MergeGap = Annotated[Optional[float], typer.Option("--merge-gap", help="events closer than this are one [h] "
                                                                       "(sets plato.events.merge_gap_hours)")]
"""Option ``--merge-gap``: events closer than this are merged [h] (sets ``plato.events.merge_gap_hours``)."""
MinDuration = Annotated[Optional[float], typer.Option("--min-duration", help="shorter events are dropped [h] "
                                                                             "(sets plato.events.min_duration_hours)")]
"""Option ``--min-duration``: shorter events are dropped [h] (sets ``plato.events.min_duration_hours``)."""
MinSnr = Annotated[Optional[float], typer.Option("--min-snr", help="drop events below this S/N against the scatter "
                                                                   "binned at their length (0: keep all) "
                                                                   "(sets plato.events.min_snr)")]
"""Option ``--min-snr``: least S/N of an event, 0 keeps all (sets ``plato.events.min_snr``)."""
BinarySnr = Annotated[Optional[float], typer.Option("--binary-snr", help="drop a curve's repeating events whose "
                                                                         "odd/even or secondary-eclipse test reaches "
                                                                         "this S/N (0: no test) "
                                                                         "(sets plato.events.binary_snr)")]
"""Option ``--binary-snr``: S/N of an odd/even or secondary test that drops repeating events
(sets ``plato.events.binary_snr``)."""

app = typer.Typer(no_args_is_help=True)
"""Typer app of ``astro plato``."""


config_app = typer.Typer(no_args_is_help=True, help="Configuration: translate a Panopticon TOML.")
"""Typer group of ``astro plato config``."""
app.add_typer(config_app, name="config")


@app.callback()
def main() -> None:
    """PLATO light curves (Panopticon): simulate, label, prepare, train a transit segmentation network, evaluate,
    detect single transits, compare with BLS."""


@app.command()
def simulate(
    n_curves: Optional[int] = typer.Option(None, "--n-curves", "-n", help="Number of light curves."),
    duration_days: Optional[float] = typer.Option(None, "--days", help="Length of each light curve (days)."),
    cadence_s: Optional[float] = typer.Option(None, "--cadence", help="Sampling interval (s) (PLATO: 25)."),
    noise_ppm: Optional[float] = typer.Option(None, "--noise-ppm", help="White noise per cadence (ppm)."),
    granulation_ppm: Optional[float] = typer.Option(None, "--granulation-ppm", help="Red-noise rms (ppm)."),
    rotation_fraction: Optional[float] = typer.Option(None, "--rotation-fraction",
                                                      help="Fraction of stars with spot modulation."),
    transit_fraction: Optional[float] = typer.Option(None, "--transit-fraction",
                                                     help="Fraction of curves with a transit."),
    periodic_fraction: Optional[float] = typer.Option(None, "--periodic-fraction",
                                                      help="Fraction of transiting curves with repeated transits."),
    shape: Optional[str] = typer.Option(None, "--shape", help="Transit profile: limb-darkened or trapezoid."),
    name: Optional[str] = typer.Option(None, "--name", help="Stem of the output files and prefix of curve ids."),
    chunk_size: Optional[int] = typer.Option(None, "--chunk-size", help="Light curves per Parquet file."),
) -> None:
    """Simulate light curves at PLATO cadence with red noise, spots and known transits.

    Writes plato/raw/NAME<first>-<last>_lightcurves.parquet (columns
    id, time in days, normalised flux, flux_err; one row group per curve) and
    plato/labels/NAME_labels.parquet (id, has_transit, t0 in days, duration in h,
    depth in ppm, period in days, ...). Curve i is seeded from (--seed, i), so the
    output does not depend on --executor, --jobs or --shard. Existing files are
    kept (the run resumes) unless --overwrite; files of an earlier layout (other
    --chunk-size) are named in a warning, and removed with --overwrite.
    """
    from astrotool.context import current
    from astrotool_plato import LABELS, RAW, NAME
    from astrotool_plato import simulate as sim

    ctx = current()
    cfg = ctx.section(NAME, {
        "simulate.n_curves": n_curves, "simulate.duration_days": duration_days, "simulate.cadence_s": cadence_s,
        "simulate.noise_ppm": noise_ppm, "simulate.granulation_ppm": granulation_ppm,
        "simulate.rotation_fraction": rotation_fraction, "simulate.transit_fraction": transit_fraction,
        "simulate.periodic_fraction": periodic_fraction, "simulate.shape": shape, "simulate.name": name,
        "simulate.chunk_size": chunk_size,
    }).simulate
    ws = ctx.workspace
    lc_dir = ws.stage(NAME, RAW)
    ctx.log.info("simulating %d light curves of %.3g d at %g s (%d samples each), %d per file, seed %d",
                 cfg.n_curves, cfg.duration_days, cfg.cadence_s, sim.n_samples(cfg), cfg.chunk_size, ctx.seed)
    res = sim.simulate(cfg, ctx.seed, lc_dir, ws.stage(NAME, LABELS),   # each file in run.json as it is written
                       functools.partial(ctx.map, outputs=lambda r: [r.path] if r.written else []), ctx.overwrite,
                       ctx.shard_of)
    for path in res.written + ([res.labels] if res.labels_written else []):
        ctx.record.add_output(path)
    if res.kept:
        ctx.log.info("kept %d existing file(s) (%s)", len(res.kept), ctx.kept_hint)
    stale_layout(ctx, lc_dir, cfg.name, res.stale, "--n-curves or --chunk-size")
    ctx.emit({
        "curves": cfg.n_curves, "with_transit": sum(p.has_transit for p in res.params),
        "samples_per_curve": sim.n_samples(cfg), "seed": ctx.seed, "lightcurves_written": res.written,
        "lightcurves_kept": res.kept, "labels": res.labels, "labels_written": res.labels_written,
    })


def stale_layout(ctx, folder: Path, name: str, stale, options: str) -> None:
    """Files of ``name`` in ``folder`` from an earlier layout that the new labels do not list: removed with
    --overwrite (the new files are written by then), else named in a warning (``prepare`` refuses them: their
    curves are in the new files too, or have no label row)."""
    if not stale:
        return
    if ctx.overwrite:
        for f in stale:
            (Path(folder) / f).unlink(missing_ok=True)
        ctx.log.info("removed %d file(s) of an earlier layout of %r (--overwrite): %s", len(stale), name,
                     ", ".join(stale[:5]))
        return
    ctx.log.warning("%s holds %d file(s) of an earlier layout of %r (other %s) that the new labels do not "
                    "list: %s; `prepare` refuses them (their curves are in the new files too, or have no label "
                    "row) -- delete them, or rerun with --overwrite to remove them", folder, len(stale), name, options,
                    ", ".join(stale[:5]))


def plato_config(ctx, flags: dict):
    """The ``[plato]`` section with ``flags`` (keys relative to ``plato``, e.g. ``"train.epochs"``) applied
    as command-line options are; None values leave a key as configured."""
    from astrotool_plato import NAME

    return ctx.section(NAME, flags)


@app.command()
def labels() -> None:
    """Write per-sample masks of every simulated file: plato/labels/<stem>_masks.parquet.

    Columns id, time [d], label (0 continuum, 1 planet transit, 2 binary
    eclipse), on each curve's own time axis, from the label tables in
    plato/labels/. `prepare` labels curves itself; these files are for
    inspection and other tools. Files are executor items (--jobs, --executor,
    --shard); a file that fails is named and the others are still written.
    """
    from astrotool.context import current
    from astrotool_plato import LABELS, NAME, RAW
    from astrotool_plato.labels import MasksItem, masks_file, read_label_tables, rows_by_file

    ctx = current()
    ws = ctx.workspace
    rows = rows_by_file(read_label_tables(ws.stage(NAME, LABELS)))   # read once; a bad table stops the command
    files = sorted(ws.stage(NAME, RAW).glob("*_lightcurves.parquet"))
    if not files:
        from astrotool.errors import AstroError

        raise AstroError(f"{ws.stage(NAME, RAW)}: no *_lightcurves.parquet; "
                         f"run `{astro_command('plato', 'simulate')}` first")
    items = [MasksItem(str(f), str(ws.stage(NAME, LABELS) / f.name.replace("_lightcurves.parquet", "_masks.parquet")),
                       rows.get(f.name, rows[None])) for f in files]
    wanted = {Path(it.out).name for it in items}
    stale = [m for m in ws.stage(NAME, LABELS).glob("*_masks.parquet") if m.name not in wanted]
    for m in stale:   # of light curves no longer there (another --chunk-size): each curve masked once
        m.unlink(missing_ok=True)
    if stale:
        ctx.log.info("removed %d mask file(s) of light curves no longer in %s: %s", len(stale), ws.stage(NAME, RAW),
                     ", ".join(m.name for m in stale[:3]) + (" ..." if len(stale) > 3 else ""))
    results = ctx.map(masks_file, items, "labels", keys=[f.name for f in files], outputs=lambda r: [r["out"]])
    for f in ctx.shard_of(files):
        ctx.record.add_input(f)
    totals: dict[str, int] = {}
    for _, res in results:
        for k, v in res["samples"].items():
            totals[k] = totals.get(k, 0) + v
        ctx.record.add_output(res["out"])
    ctx.emit({"files": [res["out"] for _, res in results], "samples": totals})


@app.command()
def prepare(
    sources: List[str] = typer.Argument(None, help="light-curve files, or folders (their *_lightcurves.parquet "
                                                   "and *.ftr files) (default: every *_lightcurves.parquet in "
                                                   "plato/raw/)"),
    name: Optional[str] = typer.Option(None, "--name", help="data set name (plato/prepared/<name>/)"),
    length: Optional[int] = typer.Option(None, "--length", help="samples kept per curve (0: the shortest curve's)"),
    augment: Optional[bool] = typer.Option(None, "--augment/--no-augment",
                                           help="add each curve's time-reversed twin about its spline trend"),
    filter_inf: Optional[bool] = typer.Option(None, "--filter-inf/--interpolate-inf",
                                              help="drop curves whose samples hold NaN/inf flux, or interpolate "
                                                   "over them (plato.prepare.bad_values); gaps (missing samples) "
                                                   "are interpolated either way"),
    channels: Optional[str] = typer.Option(None, "--channels",
                                           help="network input: coadd (the co-added flux) or groups (the camera "
                                                "groups, then the co-added flux)"),
    spline_k: Optional[int] = typer.Option(None, "--spline-k", help="degree of the trend spline"),
    spline_s: Optional[float] = typer.Option(None, "--spline-s", help="spline smoothing [m sigma^2]"),
    spline_stride: Optional[int] = typer.Option(None, "--spline-stride", help="fit the trend to every n-th sample"),
    time_column: TimeColumn = None,
    flux_column: FluxColumn = None,
    time_unit: TimeUnit = None,
) -> None:
    """Pack light curves and per-sample labels into a training set with fixed splits.

    Uniform time grid, fixed length, relative flux with NaN/inf interpolated
    (or the curve dropped: --filter-inf), labels per sample, and with --augment
    each curve's time-reversed twin (kept in the same split). Every curve needs
    a row in the label tables of plato/labels/ (simulate, import-panopticon).
    Feather, CSV and FITS tables are read with detect's --time-column,
    --flux-column and --time-unit: Panopticon's Feather files (export-panopticon's
    too) need --time-unit s, and a quarter K > 1 in Panopticon's layout is put on its
    simulation's time axis as import-panopticon does; a time axis in another unit is refused (exit 2). A
    --length that the configured network cannot train on (not a multiple of plato.train's
    bin * 2**(depth-1), or too short for its deepest convolutions) is warned about (evaluate and detect pad it). A rerun with the same
    settings and inputs keeps the set; other settings are refused (exit 2)
    unless --overwrite.
    """
    from astrotool.context import current
    from astrotool_plato import LABELS, NAME, PREPARED, RAW
    from astrotool_plato.prepare import GRANULE, prepare as run

    ctx = current()
    cfg = plato_config(ctx, {"prepare.name": name, "prepare.length": length, "prepare.augment": augment,
                             "prepare.bad_values": None if filter_inf is None else "drop" if filter_inf else "interpolate", "prepare.channels": channels,
                             "prepare.spline_k": spline_k,
                             "prepare.spline_s": spline_s, "prepare.spline_stride": spline_stride,
                             "detect.time_column": time_column, "detect.flux_column": flux_column,
                             "detect.time_unit": time_unit})
    d, t, cfg = cfg.detect, cfg.train, cfg.prepare
    if cfg.length >= GRANULE:   # a shorter one is refused as too short by `prepare`; the default 0 imports no torch
        from astrotool_plato.model import granularity, min_length, min_samples

        g = granularity(t.bin, t.depth)   # what `train` will need the length to be divisible by
        shortest = min_length(t.bin, t.depth, t.kernel_size, t.dilation)   # a multiple of g
        if cfg.length % g or cfg.length < shortest:
            lo = (cfg.length // g) * g
            use = [n for n in (lo, max(lo + g, shortest)) if n >= shortest and n != cfg.length]
            zero = (f" or 0 (the shortest curve's length, rounded down to a multiple of {GRANULE}"
                    + (f" and so of {g})" if g != GRANULE else ")")
                    if GRANULE % g == 0 else
                    f"; not 0 (the shortest curve's length, a multiple of {GRANULE}, of {g} only by chance)")
            others = ("`evaluate` and `detect` pad it" if cfg.length >= min_samples(g, shortest) else
                      "nor can `evaluate` and `detect` pad it")
            ctx.log.warning("--length %d: `train` (plato.train.bin = %d, depth = %d, kernel_size = %d, dilation = "
                            "%d) needs a multiple of bin * 2**(depth-1) = %d, at least %d (its deepest "
                            "convolutions pad by reflection), and will refuse this set (%s); for training use "
                            "%s%s", cfg.length, t.bin, t.depth, t.kernel_size, t.dilation, g, shortest, others,
                            " or ".join(map(str, use)), zero)
    ws = ctx.workspace
    res = run(cfg, ctx.stage_seed(cfg.seed, "plato.prepare.seed"), sources or [], ws.stage(NAME, RAW),
              ws.stage(NAME, LABELS), ws.stage(NAME, PREPARED), overwrite=ctx.overwrite, log=ctx.log,
              reader={"time_column": d.time_column, "flux_column": d.flux_column, "time_unit": d.time_unit})
    if res["kept"]:
        ctx.log.info("%s is up to date (same settings and inputs; %s)", res["path"], ctx.kept_hint)
    else:
        ctx.record.add_output(res["path"])
    for f in res.pop("inputs"):
        ctx.record.add_input(f)
    ctx.emit(res)


@app.command()
def train(
    dataset: Optional[str] = typer.Option(None, "--dataset", help="prepared data set name or folder"),
    model: Optional[str] = typer.Option(None, "--model", help="model name (plato/models/<model>)"),
    decoder: Optional[str] = typer.Option(None, "--decoder", help="unet3p (U-Net 3+, Panopticon's) | unet | unetpp"),
    width: Optional[int] = typer.Option(None, "--width", help="channels of the first level"),
    depth: Optional[int] = typer.Option(None, "--depth", help="levels"),
    kernel_size: Optional[int] = typer.Option(None, "--kernel-size", help="odd convolution kernel [bins]"),
    bin_: Optional[int] = typer.Option(None, "--bin", help="samples averaged into one before the network"),
    loss: Optional[str] = typer.Option(None, "--loss", help="bce | dice | focal | bce+dice"),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="training epochs"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="curves per optimiser step"),
    lr: Optional[float] = typer.Option(None, "--lr", help="learning rate (of plato.train.optimizer, AdamW by "
                                                          "default)"),
    patience: Optional[int] = typer.Option(None, "--patience", help="early-stopping patience [epochs]; 0 = off"),
    resume: Optional[bool] = typer.Option(None, "--resume/--no-resume", help="continue from the last checkpoint "
                                          "(--no-resume refuses an existing model: --overwrite starts over)"),
    device: mc.Device = None,
    precision: mc.Precision = None,
    devices: mc.Devices = None,
    num_nodes: mc.NumNodes = None,
) -> None:
    """Train the transit segmentation network on a prepared set's train split (validated on val).

    Checkpoints every epoch in plato/models/<model>/ (the best epoch by
    val_loss, and last/ to resume). Re-running with the same settings resumes
    (more --epochs train on); other settings are refused (exit 2) naming them;
    --overwrite starts afresh. Where it trains comes from the [ml] section
    (--device, --precision, --devices, --num-nodes). The loss curves go to
    plato/reports/<model>_history.png.
    """
    from astrotool.context import current
    from astrotool_plato.train import train_command

    ctx = current()
    cfg = plato_config(ctx, {"train.dataset": dataset, "train.model": model, "train.decoder": decoder,
                             "train.width": width, "train.depth": depth, "train.kernel_size": kernel_size,
                             "train.bin": bin_, "train.loss": loss, "train.epochs": epochs,
                             "train.batch_size": batch_size, "train.lr": lr, "train.patience": patience,
                             "train.resume": resume})
    train_command(ctx, cfg, mc.runtime(ctx, device=device, precision=precision, devices=devices,
                                       num_nodes=num_nodes))


@app.command("evaluate")
def evaluate(
    model: Optional[str] = typer.Option(None, "--model", help="model name or folder"),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="prepared data set (default: the model's)"),
    split: Optional[str] = typer.Option(None, "--split", help="train | val | test | all"),
    merge_gap_hours: MergeGap = None,
    min_duration_hours: MinDuration = None,
    min_snr: MinSnr = None,
    binary_snr: BinarySnr = None,
    name: Optional[str] = typer.Option(None, "--name", help="report name (plato/reports/<name>_evaluate.json)"),
    device: mc.Device = None,
) -> None:
    """Score a model on a prepared split: point-wise and event-level, over a threshold grid.

    Transits recovered, false alarms per curve and per day, the fraction of
    transit-free curves with a false alarm, Panopticon's FP/(TP+FP); the
    operating threshold (false alarms on at most 1 % of transit-free curves)
    with recovery against depth, S/N, duration and period. Writes plato/reports/<name>_evaluate.json,
    _transits.csv (one row per transit) and _evaluate.png; --json prints the report.
    `eval` is the old, hidden name of this command.
    """
    from astrotool.context import current
    from astrotool_plato.evaluate import evaluate_command

    ctx = current()
    cfg = plato_config(ctx, {"evaluate.model": model, "evaluate.dataset": dataset, "evaluate.split": split,
                             "evaluate.name": name, "events.merge_gap_hours": merge_gap_hours,
                             "events.min_duration_hours": min_duration_hours,
                             "events.min_snr": min_snr, "events.binary_snr": binary_snr})
    evaluate_command(ctx, cfg, mc.runtime(ctx, device=device))


@app.command("eval", hidden=True)
@functools.wraps(evaluate)
def eval_alias(**options) -> None:   # evaluate's old name, for old scripts; recorded as evaluate, not eval
    from astrotool.context import current

    ctx = current()
    words = ctx.command.split(" ")
    if words[-1:] == ["eval"]:   # the core names the run from the command line's words
        ctx.command = " ".join([*words[:-1], "evaluate"])
    evaluate(**options)


@app.command()
def detect(
    files: List[str] = typer.Argument(..., help="light curves: the simulator's Parquet, or Feather, Parquet, "
                                                "CSV or FITS tables; a folder stands for its files of those "
                                                "formats"),
    model: Optional[str] = typer.Option(None, "--model", help="model name or folder"),
    name: Optional[str] = typer.Option(None, "--name", help="run name (plato/runs/<name>/; default: the model's)"),
    threshold: Threshold = None,
    merge_gap_hours: MergeGap = None,
    min_duration_hours: MinDuration = None,
    min_snr: MinSnr = None,
    binary_snr: BinarySnr = None,
    time_column: TimeColumn = None,
    flux_column: FluxColumn = None,
    time_unit: TimeUnit = None,
    quality: Quality = None,
    device: mc.Device = None,
) -> None:
    """Find single transits in light-curve files: an event table (mid-time, duration, depth, S/N, peak probability).

    A folder stands for its light-curve files (.parquet, .pq, .ftr, .feather, .csv,
    .ecsv (or .gz), .fits, .fit, .fits.gz; not its subfolders'), their number logged.
    Cadences flagged in a QUALITY or SAP_QUALITY column and rows without a finite
    time are dropped (--quality keep keeps the flagged ones). Curves are
    interpolated onto the model's cadence (one sampled more than twice as
    coarsely gets a warning: the model may miss its transits; `astro plato bls`
    searches it as it is); files are searched in parallel (--jobs, --executor);
    a file that cannot be read, or whose time is in another unit than
    --time-unit, is named with its problem and the others still run. Writes
    plato/runs/<name>/<name>_events.parquet and .csv. The duration is the time
    the probability stays above the threshold and the depth the flux drop over
    the event's middle half: estimates for vetting, not a transit fit (docs:
    plato).
    """
    from astrotool.context import current
    from astrotool_plato.detect import curve_files, detect_command

    ctx = current()
    cfg = plato_config(ctx, {"detect.model": model, "detect.name": name, "events.threshold": threshold,
                             "events.merge_gap_hours": merge_gap_hours, "events.min_snr": min_snr,
                             "events.min_duration_hours": min_duration_hours,
                             "events.binary_snr": binary_snr, "detect.time_column": time_column,
                             "detect.flux_column": flux_column, "detect.time_unit": time_unit,
                             "detect.quality": quality})
    detect_command(ctx, cfg, curve_files(files, ctx.log), mc.runtime(ctx, device=device))


@app.command()
def bls(
    files: List[str] = typer.Argument(..., help="light curves, or folders of them (as for detect)"),
    window_days: Optional[float] = typer.Option(None, "--window", help="wotan biweight window [d]"),
    snr_threshold: Optional[float] = typer.Option(None, "--snr", help="box S/N above which the best peak is a "
                                                                      "detection"),
    time_column: TimeColumn = None,
    flux_column: FluxColumn = None,
    time_unit: TimeUnit = None,
    quality: Quality = None,
) -> None:
    """The classical baseline on the same files: wotan biweight detrending, then astropy's Box Least Squares.

    Prints the best peak per curve (S/N, SDE, period, t0, duration, depth; duration and
    t0 refined on a finer grid at the best period) and the seconds spent detrending
    and searching, for a fair comparison with detect. Files are searched in parallel
    (--jobs, --executor); a file that cannot be read is named with its problem and
    the others still run.
    """
    from astrotool.context import current
    from astrotool_plato.bls import bls_command
    from astrotool_plato.detect import curve_files

    ctx = current()
    cfg = plato_config(ctx, {"bls.window_days": window_days, "bls.snr_threshold": snr_threshold,
                             "detect.time_column": time_column, "detect.flux_column": flux_column,
                             "detect.time_unit": time_unit, "detect.quality": quality})
    bls_command(ctx, cfg, curve_files(files, ctx.log))


@config_app.command("import")
def config_import(
    source: str = typer.Argument(..., help="Panopticon's TOML (e.g. config/default.toml)"),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="write the translation here (default: print)"),
) -> None:
    """Translate a Panopticon configuration into astrotool's, key by key, with a comment per key.

    Paths and data-loader workers have no counterpart and are listed as
    comments; an unknown optimizer or scheduler name, a key Panopticon does not
    have, a value of the wrong type (a [scheduler] use that is not true or
    false included) and [fraction]s not summing to 1 are refused (exit 2)
    naming the key; [scheduler.kwargs] are checked whenever a scheduler is
    named, and a [scheduler] without use is translated as off, with a
    warning. Use the result with --cfg FILE, or append it to the workspace's
    astro.toml.
    """
    from astrotool.context import current
    from astrotool.errors import AstroError
    from astrotool.console import json_results
    from astrotool.workspace import write_text_atomic
    from astrotool_plato.panopticon import import_config

    ctx = current()
    text = import_config(source)
    if output is None:
        if json_results():   # --json: the translation as a string, as every result is JSON
            ctx.emit({"source": str(source), "toml": text, "path": None})
        else:
            typer.echo(text, nl=False)
        return
    out = Path(output)
    if out.exists() and not ctx.overwrite:
        raise AstroError(f"{out}: exists; use --overwrite to replace it")
    write_text_atomic(out, text)
    ctx.log.info("wrote %s", out)
    if json_results():
        ctx.emit({"source": str(source), "toml": text, "path": str(out)})


@app.command()
def plot(
    ids: List[str] = typer.Argument(..., help="curve ids, light-curve files or folders, `all`, or `last` (the "
                                              "curves with events in the latest detect run)"),
    model: Optional[str] = typer.Option(None, "--model", help="model whose probabilities are overlaid"),
    use_model: bool = typer.Option(True, "--model-overlay/--no-model-overlay", help="overlay a model's probabilities"),
    no_model: bool = old_option("--no-model", "renamed --no-model-overlay", False),
    time_column: TimeColumn = None,
    flux_column: FluxColumn = None,
    time_unit: TimeUnit = None,
    quality: Quality = None,
) -> None:
    """Plot light curves and a model's probabilities below, with the events it detected shaded red.

    Curves are simulated curve ids (their true transits and eclipses shaded green
    and orange), light-curve files (read as detect reads them), `all`, or `last`.
    One PNG per curve in plato/reports/plots/<id>.png. Files are executor items
    (--jobs, --executor, --shard); a file that fails is named and the others are
    still drawn.
    """
    from astrotool.context import current
    from astrotool_plato.plot import plot_command

    ctx = current()
    cfg = plato_config(ctx, {"detect.model": model, "detect.time_column": time_column,
                             "detect.flux_column": flux_column, "detect.time_unit": time_unit,
                             "detect.quality": quality})
    plot_command(ctx, cfg, ids, use_model and not no_model)


@app.command("import-panopticon")
def import_panopticon(
    folder: str = typer.Argument(..., help="Panopticon's data folder (<dir with '-'>/simNNNNN_QK.ftr and "
                                           "config/Complete_Parameters.ftr)"),
    name: str = typer.Option("panopticon", "--name", help="stem of the files written"),
    chunk_size: int = typer.Option(64, "--chunk-size", min=1, help="curves per Parquet file"),
) -> None:
    """Read Panopticon's light curves and parameters into plato/raw/ and plato/labels/.

    Each quarter file becomes a curve `simNNNNN_QK` (co-added flux; times on one
    axis per simulation); its transit and binary parameters become label rows,
    so `prepare`, `evaluate`, `detect` and `plot` work on Panopticon's data as on
    simulated curves. Files of NAME from an earlier import (another --chunk-size,
    or a source folder with more quarters) are named in a warning (prepare
    refuses them); --overwrite removes them. Not split by
    --shard: the camera-group check and the one label table need every quarter.
    """
    from astrotool.context import current
    from astrotool.errors import InputError
    from astrotool_plato import LABELS, NAME, RAW
    from astrotool_plato.labels import write_label_rows
    from astrotool_plato.lightcurves import noise_sigma, write_curves
    from astrotool_plato.panopticon import read_layout
    from astrotool.names import check_name
    from astrotool_plato.simulate import layout_files

    import numpy as np

    ctx = current()
    ws = ctx.workspace
    check_name(name, "--name")
    curves, labels = read_layout(folder)
    ids = list(curves)
    channels = {len(np.atleast_2d(f)) for _, f in curves.values()}
    if len(channels) > 1:
        raise InputError(folder, f"quarter files with {' and '.join(map(str, sorted(channels)))} flux columns; "
                                 "import curves with the same camera groups together")
    groups = channels.pop() - 1
    written, rows = [], []
    for a in range(0, len(ids), chunk_size):
        part = ids[a:a + chunk_size]
        path = ws.stage(NAME, RAW) / f"{name}{a:06d}-{a + len(part) - 1:06d}_lightcurves.parquet"
        rel = [(cid, curves[cid][0], curves[cid][1] / np.nanmedian(curves[cid][1], axis=-1, keepdims=True))
               for cid in part]
        rel = [(cid, t, f, noise_sigma(np.atleast_2d(f)[-1][np.isfinite(np.atleast_2d(f)[-1])]))
               for cid, t, f in rel]
        write_curves(path, rel, {"ids": part, "source": str(Path(folder).resolve()), "layout": "panopticon"},
                     "plato import-panopticon", groups=groups)
        rows += [{**labels[cid], "file": path.name} for cid in part]
        written.append(str(path))
        ctx.record.add_output(path)
    lab = write_label_rows(ws.stage(NAME, LABELS) / f"{name}_labels.parquet", rows, "plato import-panopticon")
    stale_layout(ctx, ws.stage(NAME, RAW), name,
                 [p.name for p in layout_files(ws.stage(NAME, RAW), name) if str(p) not in written],
                 "source folder (fewer quarters) or --chunk-size")
    ctx.record.add_input(Path(folder).resolve())
    ctx.record.add_output(lab)
    ctx.emit({"curves": len(ids), "with_transit": sum(r["has_transit"] for r in rows),
              "binaries": sum(bool(r["eclipse"]) for r in rows), "files": written, "labels": str(lab)})


@app.command("export-panopticon")
def export_panopticon(
    folder: str = typer.Argument(..., help="output folder (Panopticon's path_data)"),
    sources: List[str] = typer.Option(None, "--source", help="light-curve files (default: every "
                                                             "*_lightcurves.parquet in plato/raw/)"),
) -> None:
    """Write curves and their labels in Panopticon's layout, for Panopticon itself to read.

    One simNNNNN_Q1.ftr per curve (time [s] from its first sample, the camera
    groups' fluxes where the files have them, the co-added flux) in
    FOLDER/astrotool-export/, and FOLDER/config/Complete_Parameters.ftr
    (times, periods, durations in days, depth as a fraction; curve_id names the
    source curve). A rerun with other sources is refused unless --overwrite,
    which deletes the earlier export's files first. Not split by --shard: the
    curves are numbered simNNNNN across every source and the one parameter
    table lists them all.
    """
    from astrotool.context import current
    from astrotool_plato import LABELS, NAME, RAW
    from astrotool_plato.labels import read_label_tables
    from astrotool_plato.lightcurves import group_columns, read_curves
    from astrotool import made_with as mw
    from astrotool.errors import AstroError, InputError
    from astrotool_plato.panopticon import EXPORT_DIR, PARAMS_FILE, write_layout

    import pyarrow.parquet as pq

    ctx = current()
    ws = ctx.workspace
    files = [Path(s) for s in sources] if sources else sorted(ws.stage(NAME, RAW).glob("*_lightcurves.parquet"))
    for p in (Path(folder), Path(folder) / EXPORT_DIR, Path(folder) / PARAMS_FILE.parent):
        if p.exists() and not p.is_dir():
            raise InputError(p, "exists and is not a folder; give the export another folder")
    curves = {}
    for f in files:
        try:
            has_groups = f.suffix == ".parquet" and f.is_file() and group_columns(pq.read_schema(f).names)
        except Exception as exc:  # ArrowInvalid, OSError: not Parquet
            raise InputError(f, f"not a readable Parquet file ({type(exc).__name__}: "
                                f"{str(exc).splitlines()[0][:200]})") from None
        curves.update(read_curves(f, channels="groups" if has_groups else "coadd"))
        ctx.record.add_input(f)
    labels = read_label_tables(ws.stage(NAME, LABELS))
    pfile = Path(folder) / PARAMS_FILE
    rec = mw.record({"sources": [str(f.resolve()) for f in files], "curves": mw.digest({"ids": list(curves)})})
    old = sorted((Path(folder) / EXPORT_DIR).glob("sim*_Q*.ftr")) + ([pfile] if pfile.exists() else [])
    if old and not ctx.overwrite:
        made = mw.read(pfile)
        if made is None:
            raise AstroError(f"{folder}: holds an export ({len(old)} file(s)) made before its sources were "
                             "recorded; use --overwrite to replace it")
        if made.get("hash") != rec["hash"]:
            raise mw.SettingsChanged(pfile, mw.changes(made["settings"], rec["settings"]),
                                     "use --overwrite to replace the export (its files are deleted first)")
    elif old:
        for p in old:
            p.unlink()
        mw.sidecar(pfile).unlink(missing_ok=True)
        ctx.log.info("removed the earlier export in %s (%d file(s), --overwrite)", folder, len(old))
    out = write_layout(folder, curves, labels)
    mw.write(pfile, rec)
    for p in out:
        ctx.record.add_output(p)
    ctx.emit({"curves": len(curves), "folder": str(folder), "parameters": str(out[-1])})


@app.command("convert-weights")
def convert_weights(
    source: str = typer.Argument(..., help="Panopticon's .pt (e.g. models/Vivien_2024/model_B.pt)"),
    name: str = typer.Option(..., "--name", help="model name (plato/models/<name>/)"),
    cadence: float = typer.Option(60.0, "--cadence", help="the cadence the weights were trained at [s]"),
    dilation: int = typer.Option(1, "--dilation", help="the convolutions' dilation (not in the weights)"),
) -> None:
    """Convert Panopticon's released U-Net 3+ weights into a checkpoint that detect and evaluate run.

    The file is loaded with torch.load(weights_only=True) only (no code runs);
    a .pt that is not a plain state dict is refused (exit 2). The checkpoint is
    model.safetensors + model.json in plato/models/<name>/.
    """
    import math

    from astrotool.context import current
    from astrotool.errors import AstroError, InputError
    from astrotool.names import check_name
    from astrotool_plato import MODELS, NAME
    from astrotool_plato.panopticon import convert_weights as run

    ctx = current()
    check_name(name, "--name")
    if not (math.isfinite(cadence) and cadence > 0):
        raise InputError("--cadence", f"must be a positive number of seconds, got {cadence:g}")
    if dilation < 1:
        raise InputError("--dilation", f"must be 1 or more, got {dilation}")
    out = ctx.workspace.stage(NAME, MODELS) / name
    if out.exists() and not ctx.overwrite:
        raise AstroError(f"{out}: exists; use --overwrite to replace it")
    res = run(source, out, cadence, dilation)
    ctx.record.add_input(Path(source).resolve())
    ctx.record.add_output(out)
    ctx.emit(res)
