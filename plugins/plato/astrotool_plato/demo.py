"""The PLATO step of ``astro demo``: a few short simulated light curves."""

from __future__ import annotations

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
    from astrotool_plato import simulate as sim
    from astrotool_plato.config import SimulateConfig

    cfg = SimulateConfig(name="demo", n_curves=4, duration_days=2.0, duration_hours=(2.0, 6.0),
                         depth_ppm=(300.0, 900.0), noise_ppm=300.0, transit_fraction=0.5, chunk_size=4)
    seed = 2024
    ws = ctx.workspace
    lc_path = ws.stage("plato", "lightcurves") / f"{sim.chunk_stem(cfg.name, 0, cfg.n_curves)}_lightcurves.parquet"
    labels_path = ws.stage("plato", "labels") / f"{cfg.name}_labels.parquet"
    result = sim.simulate_chunk({"start": 0, "stop": cfg.n_curves, "seed": seed, "cfg": cfg,
                                 "path": str(lc_path), "overwrite": True})
    params = result["params"]
    sim.write_labels(labels_path, params, [lc_path.name] * len(params), seed, cfg)
    for path in (lc_path, labels_path):
        ctx.record.add_output(path)
    lines = [f"plato: {cfg.n_curves} light curves of {cfg.duration_days:g} d at {cfg.cadence_s:g} s "
             f"({sim.n_samples(cfg)} samples each) -> {lc_path.relative_to(ws.root)}"]
    for p in params:
        if p.has_transit:
            lines.append(f"plato:   {p.id}: transit at t0 = {p.t0:.3f} d, {p.duration:.1f} h, "
                         f"{p.depth:.0f} ppm (S/N {p.snr:.0f})")
        else:
            lines.append(f"plato:   {p.id}: no transit")
    lines.append(f"plato: labels -> {labels_path.relative_to(ws.root)}")
    return lines
