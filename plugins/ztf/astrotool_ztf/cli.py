"""``astro ztf``: ZTF alerts and their stamps."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

__docformat__ = "numpy"

app = typer.Typer(help="ZTF alerts: ingest Avro/Parquet alerts and their stamps.", no_args_is_help=True)


@app.callback()
def main() -> None:
    """ZTF alerts: ingest alert packets, then train and apply stamp models."""


@app.command()
def ingest(
    paths: List[Path] = typer.Argument(..., help="Alert files (.avro, .avro.gz, .parquet) or folders of them."),
    stamp_size: Optional[int] = typer.Option(None, "--stamp-size",
                                             help="Stamp side in pixels; smaller stamps are NaN-padded."),
    compression: Optional[str] = typer.Option(None, "--compression",
                                              help="HDF5 compression: none, low, medium or high."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Alerts decoded at a time."),
    keep_history: Optional[bool] = typer.Option(None, "--history/--no-history",
                                                help="Keep prv_candidates as a list column."),
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
    from astrotool.context import current
    from astrotool_ztf.ingest import expand_inputs, ingest_item, unique_names

    ctx = current()
    cfg = ctx.section("ztf", {"ingest.stamp_size": stamp_size, "ingest.compression": compression,
                              "ingest.batch_size": batch_size, "ingest.keep_history": keep_history}).ingest
    ws = ctx.workspace
    alerts_dir, stamps_dir = ws.stage("ztf", "alerts"), ws.stage("ztf", "stamps")
    files = expand_inputs(paths)
    names = unique_names(files)
    items = [{"path": str(f), "alerts_path": str(alerts_dir / f"{n}_alerts.parquet"),
              "stamps_path": str(stamps_dir / f"{n}_stamps.h5"), "size": cfg.stamp_size,
              "compression": cfg.compression, "batch_size": cfg.batch_size, "keep_history": cfg.keep_history,
              "overwrite": ctx.overwrite} for f, n in zip(files, names)]
    for f in files:
        ctx.record.add_input(f)
    results = ctx.map(ingest_item, items, desc="ingest alert files", keys=names)
    done = [r for _, r in results]
    for r in done:
        if not r["skipped"]:
            ctx.record.add_output(r["alerts"])
            ctx.record.add_output(r["stamps"])
        if r.get("n_stamps_resized") and not r["skipped"]:
            ctx.log.warning("%s: %d alert(s) with stamps other than %dx%d (NaN-padded or cropped)",
                            r["input"], r["n_stamps_resized"], cfg.stamp_size, cfg.stamp_size)
        if r.get("n_stamps_bad") and not r["skipped"]:
            ctx.log.warning("%s: %d alert(s) with missing or undecodable stamps (NaN)", r["input"], r["n_stamps_bad"])
    skipped = sum(r["skipped"] for r in done)
    if skipped:
        ctx.log.info("kept %d existing output pair(s) (use --overwrite to recompute)", skipped)
    ctx.emit({"files": len(files), "ingested": len(done) - skipped, "kept": skipped,
              "alerts": sum(int(r.get("n_alerts") or 0) for r in done), "outputs": done})
