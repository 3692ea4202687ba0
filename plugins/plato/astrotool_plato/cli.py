"""``astro plato``: PLATO light curves and single-transit detection."""

from __future__ import annotations

from typing import Optional

import typer

__docformat__ = "numpy"

app = typer.Typer(no_args_is_help=True)


@app.callback()
def main() -> None:
    """PLATO light curves (Panopticon): simulated curves with known single transits and their label table."""


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

    Writes plato/lightcurves/NAME<first>-<last>_lightcurves.parquet (columns
    id, time in days, normalised flux, flux_err; one row group per curve) and
    plato/labels/NAME_labels.parquet (id, has_transit, t0 in days, duration in h,
    depth in ppm, period in days, ...). Curve i is seeded from (--seed, i), so the
    output does not depend on --executor, --jobs or --shard. Existing files are
    kept (the run resumes) unless --overwrite.
    """
    from astrotool.context import current
    from astrotool_plato import LABELS, LIGHTCURVES, NAME
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
    lc_dir = ws.stage(NAME, LIGHTCURVES)
    ctx.log.info("simulating %d light curves of %.3g d at %g s (%d samples each), %d per file, seed %d",
                 cfg.n_curves, cfg.duration_days, cfg.cadence_s, sim.n_samples(cfg), cfg.chunk_size, ctx.seed)
    res = sim.simulate(cfg, ctx.seed, lc_dir, ws.stage(NAME, LABELS), ctx.map, ctx.overwrite)
    for path in res.written + ([res.labels] if res.labels_written else []):
        ctx.record.add_output(path)
    if res.kept:
        ctx.log.info("kept %d existing file(s) (use --overwrite to recompute)", len(res.kept))
    if res.stale:
        ctx.log.warning("%s holds %d file(s) of an earlier layout of %r (other --n-curves or --chunk-size) "
                        "that the new labels do not list: %s", lc_dir, len(res.stale), cfg.name,
                        ", ".join(res.stale[:5]))
    ctx.emit({
        "curves": cfg.n_curves, "with_transit": sum(p.has_transit for p in res.params),
        "samples_per_curve": sim.n_samples(cfg), "seed": ctx.seed, "lightcurves_written": res.written,
        "lightcurves_kept": res.kept, "labels": res.labels, "labels_written": res.labels_written,
    })
