"""``astro ztf``: ZTF alerts and their stamps."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

__docformat__ = "numpy"

app = typer.Typer(no_args_is_help=True)


@app.callback()
def main() -> None:
    """ZTF alerts: ingest Avro/Parquet alert packets into an alert table and 63x63 stamp cubes."""


@app.command()
def ingest(
    paths: List[Path] = typer.Argument(..., help="Alert files (.avro, .avro.gz, .parquet) or folders of them."),
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
    float32 N x 63 x 63 in table order; candid; objectId). Folders are searched
    for .avro, .avro.gz and .parquet files. A bad file is reported and the
    others are still ingested. Existing outputs are kept unless --overwrite.
    """
    from dataclasses import asdict

    from astrotool.context import current
    from astrotool_ztf import ALERTS, NAME, STAMPS
    from astrotool_ztf.ingest import expand_inputs, ingest_files

    ctx = current()
    cfg = ctx.section(NAME, {"ingest.stamp_size": stamp_size, "ingest.compression": compression,
                             "ingest.batch_size": batch_size, "ingest.keep_history": keep_history}).ingest
    ws = ctx.workspace
    files = expand_inputs(paths)
    for f in ctx.shard_of(files):
        ctx.record.add_input(f)
    done = ingest_files(files, ws.stage(NAME, ALERTS), ws.stage(NAME, STAMPS), cfg, ctx.map, ctx.overwrite)
    for r in done:
        if r.skipped:
            continue
        ctx.record.add_output(r.alerts)
        ctx.record.add_output(r.stamps)
        if r.n_stamps_resized:
            ctx.log.warning("%s: %d alert(s) with stamps other than %dx%d (NaN-padded or cropped)",
                            r.input, r.n_stamps_resized, cfg.stamp_size, cfg.stamp_size)
        if r.n_stamps_bad:
            ctx.log.warning("%s: %d alert(s) with missing or undecodable stamps (NaN)", r.input, r.n_stamps_bad)
    skipped = sum(r.skipped for r in done)
    if skipped:
        ctx.log.info("kept %d existing output pair(s) (use --overwrite to recompute)", skipped)
    ctx.emit({"files": len(files), "ingested": len(done) - skipped, "kept": skipped,
              "alerts": sum(r.n_alerts for r in done), "outputs": [asdict(r) for r in done]})
