"""The PLATO step of ``astro demo`` (about 15 s on two cores).

Simulates 48 one-day light curves at 25 s (60 % with a deep 1.5-3 h transit,
eclipsing binaries among the others), prepares them, trains a tiny U-Net 3+
for a few epochs, scores it on the held-out curves and searches one fresh
curve -- drawn with a seed the training never saw -- for its transit.
"""

from __future__ import annotations

from pathlib import Path

__docformat__ = "numpy"

NAME = "demo"
"""The demo's simulation, data set and model name."""


def run(ctx, epochs: int = 12) -> list[str]:
    """Run the demo in ``ctx.workspace``; return summary lines.

    Parameters
    ----------
    ctx : astrotool.context.Context
        Context of the demo workspace.
    epochs : int
        Training epochs.
    """
    import numpy as np

    from astrotool.ml import commands as mc

    from astrotool_plato import LABELS, MODELS, NAME as PLUGIN, PREPARED, RAW
    from astrotool_plato import simulate as sim
    from astrotool_plato.config import EventsConfig, PrepareConfig, SimulateConfig, TrainConfig
    from astrotool_plato.detect import search_curves
    from astrotool_plato.evaluate import evaluate
    from astrotool_plato.prepare import PreparedDataset, prepare
    from astrotool_plato.train import train_model

    ws = ctx.workspace
    cfg = SimulateConfig(name=NAME, n_curves=48, duration_days=1.0, duration_hours=(1.5, 3.0),
                         depth_ppm=(2000.0, 5000.0), noise_ppm=300.0, transit_fraction=0.6, chunk_size=48)
    res = sim.simulate(cfg, 2024, ws.stage(PLUGIN, RAW), ws.stage(PLUGIN, LABELS), ctx.map, overwrite=True)
    lines = [f"plato: {cfg.n_curves} light curves of {cfg.duration_days:g} d at {cfg.cadence_s:g} s, "
             f"{sum(p.has_transit for p in res.params)} with a transit, "
             f"{sum(bool(p.eclipse) for p in res.params)} eclipsing binaries -> "
             + ", ".join(str(Path(p).relative_to(ws.root)) for p in res.written)]
    prep = prepare(PrepareConfig(name=NAME), 2024, [], ws.stage(PLUGIN, RAW), ws.stage(PLUGIN, LABELS),
                   ws.stage(PLUGIN, PREPARED), overwrite=True)
    splits = ", ".join(f"{k} {v}" for k, v in prep["splits"].items())
    lines.append(f"plato: prepared {prep['curves']} curves of {prep['length']} samples, splits: {splits}")
    tcfg = TrainConfig(dataset=NAME, width=4, depth=4, epochs=epochs, lr=3e-3, batch_size=4)
    events = EventsConfig()
    # the epoch lines and progress of `astro plato train` (train_command): the same log and callback
    with PreparedDataset(prep["path"]) as ds, mc.epoch_progress(ctx, epochs, f"train {NAME}") as on_epoch:
        fit = train_model(ds, tcfg, events, ws.stage(PLUGIN, MODELS) / NAME, 2024, overwrite=True, log=ctx.log,
                          on_epoch=on_epoch)
        lines.append(f"plato: trained a {fit['parameters']}-parameter U-Net 3+ for {fit['epochs_run']} epochs "
                     f"({fit['seconds_per_epoch']} s each): validation recall {fit['val_recall']:.2f}, "
                     f"{fit['val_false_alarms']:.2f} false alarms per curve")
        from astrotool_plato.evaluate import load_model

        _, ckpt, model = load_model(ctx, str(ws.stage(PLUGIN, MODELS) / NAME), NAME)
        rep, _ = evaluate(model, ds, "test", [0.5], events)
    lines.append(f"plato: test split: {rep['transits']} transits, recovered {rep['recovery'][0]:.2f} at threshold "
                 f"0.5, {rep['false_alarms'][0]} false alarm(s) in {rep['curves']} curves")
    fresh = SimulateConfig(n_curves=1, duration_days=1.0, duration_hours=(2.0, 3.0), depth_ppm=(2500.0, 2500.0),
                           noise_ppm=300.0, transit_fraction=1.0)
    time, flux, params = sim.simulate_curves([0], 77, fresh)
    found = search_curves({"fresh": (time, flux[0].astype(np.float64))}, model, ckpt.meta["cadence_s"],
                          events)["fresh"]["events"]
    p = params[0]
    lines.append(f"plato: a fresh curve with a {p.depth:.0f} ppm, {p.duration:.1f} h transit at t0 = {p.t0:.3f} d: "
                 + ("; ".join(f"event at {e['t_mid']:.3f} d, {e['duration']:.1f} h, {e['depth']:.0f} ppm, "
                              f"p = {e['peak_probability']:.2f}" for e in found) or "no event found"))
    return lines
