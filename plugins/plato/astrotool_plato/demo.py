"""The PLATO step of ``astro demo``: a few short simulated light curves."""

from __future__ import annotations

from pathlib import Path

__docformat__ = "numpy"


def run(ctx) -> list[str]:
    """Simulate 4 two-day light curves in ``ctx.workspace`` and describe them.

    Parameters
    ----------
    ctx : astrotool.context.Context
        Context of the demo workspace.

    Returns
    -------
    list of str
        Summary lines.
    """
    from astrotool_plato import LABELS, LIGHTCURVES, NAME
    from astrotool_plato import simulate as sim
    from astrotool_plato.config import SimulateConfig

    cfg = SimulateConfig(name="demo", n_curves=4, duration_days=2.0, duration_hours=(2.0, 6.0),
                         depth_ppm=(300.0, 900.0), noise_ppm=300.0, transit_fraction=0.5, chunk_size=4)
    ws = ctx.workspace
    res = sim.simulate(cfg, 2024, ws.stage(NAME, LIGHTCURVES), ws.stage(NAME, LABELS), ctx.map, overwrite=True)
    for path in res.written + [res.labels]:
        ctx.record.add_output(path)
    lines = [f"plato: {cfg.n_curves} light curves of {cfg.duration_days:g} d at {cfg.cadence_s:g} s "
             f"({sim.n_samples(cfg)} samples each) -> "
             + ", ".join(str(Path(p).relative_to(ws.root)) for p in res.written)]
    for p in res.params:
        if p.has_transit:
            lines.append(f"plato:   {p.id}: transit at t0 = {p.t0:.3f} d, {p.duration:.1f} h, "
                         f"{p.depth:.0f} ppm (S/N {p.snr:.0f})")
        else:
            lines.append(f"plato:   {p.id}: no transit")
    lines.append(f"plato: labels -> {Path(res.labels).relative_to(ws.root)}")
    return lines
