"""The lens step of ``astro demo`` (about a minute on two cores).

Simulates a small ShearNet-like training set with shape noise (32x32 px,
0.2 arcsec/px, Gaussian PSF), trains a small CNN for a few epochs, then
simulates two sets of constant-shear fields of 90-degree ring pairs: the CNN
is calibrated (m, c) on the first and compared, calibrated and raw, with
REGAUSS and KSB on the second: per-galaxy RMSE, m and c.
"""

from __future__ import annotations

import time

__docformat__ = "numpy"


def demo_generate_config(name: str, n: int, field_size: int = 1, g_max: float = 0.1, ring: bool = False):
    """The demo's simulation settings (small stamps so a CPU trains in seconds)."""
    from astrotool_lens.config import GenerateConfig

    return GenerateConfig.model_validate({
        "preset": "custom", "name": name, "n_stamps": n, "shard_size": max(100, n // 4), "stamp_size": 32,
        "pixel_scale": 0.2, "offset_radius": 0.5,
        "galaxy": {"profile": "exponential", "hlr": [0.5, 0.9], "hlr_unit": "arcsec"},
        "shape": {"kind": "gaussian", "sigma": 0.2, "max": 0.6, "convention": "e", "ring": ring},
        "psf": {"profile": "gaussian", "fwhm": 0.6, "g1": 0.0, "g2": 0.0, "shift_with_galaxy": False},
        "shear": {"g1": [-g_max, g_max], "g2": [-g_max, g_max], "field_size": field_size},
        "noise": {"kind": "gaussian", "snr": 400.0},
    })


def run(ctx) -> list[str]:
    """Run the demo in ``ctx.workspace``; return summary lines."""
    from astrotool_lens.calibrate import calibrate_model
    from astrotool_lens.config import CalibrateConfig, EvaluateConfig, TrainConfig
    from astrotool_lens.data import ShearDataset
    from astrotool_lens.evaluate import evaluate
    from astrotool_lens.generate import generate_dataset
    from astrotool_lens.train import train_model

    cfg = ctx.section("lens")
    d = cfg.demo
    ws = ctx.workspace
    shear = ws.stage("lens", "shear")
    t0 = time.perf_counter()
    train_cfg = demo_generate_config("demo_train", d.n_train, g_max=0.15)
    fields_cfg = demo_generate_config("demo_fields", d.n_fields * d.field_size, field_size=d.field_size,
                                      g_max=0.1, ring=True)
    calib_cfg = demo_generate_config("demo_calib", d.n_fields * d.field_size, field_size=d.field_size,
                                     g_max=0.1, ring=True)
    for g, seed in ((train_cfg, ctx.seed), (fields_cfg, ctx.seed), (calib_cfg, ctx.seed + 1)):
        generate_dataset(g, shear / g.dataset_name, seed, mapper=ctx.map, overwrite=ctx.overwrite)
    t_gen = time.perf_counter() - t0

    t1 = time.perf_counter()
    tc = TrainConfig(width=d.width, blocks=3, hidden=64, batch_size=64, epochs=d.epochs, lr=3e-3, patience=0,
                     split=(0.85, 0.15, 0.0), threads=1)
    mdir = ws.stage("lens", "models") / "demo_cnn"
    tr = train_model(ShearDataset(shear / "demo_train"), tc, mdir, ctx.seed, overwrite=ctx.overwrite)
    t_train = time.perf_counter() - t1

    t2 = time.perf_counter()
    cal = calibrate_model(ShearDataset(shear / "demo_calib"), mdir, CalibrateConfig(max_abs_m=0.5))
    ec = EvaluateConfig(classical=["REGAUSS", "KSB"], split="all", plots=True)
    rep = evaluate(ShearDataset(shear / "demo_fields"), mdir, ec, ws.stage("lens", "predictions"),
                   ws.stage("lens", "reports"), mapper=ctx.map, measure_cfg=cfg.measure,
                   overwrite=True,   # the demo's own table of its own fields: measured again with other settings
                   min_response=cfg.calibrate.min_response)
    t_eval = time.perf_counter() - t2

    lines = [
        f"lens: simulated {d.n_train} training stamps and {d.n_fields} ring-pair fields x {d.field_size} "
        f"(32x32 px, GalSim) in {t_gen:.1f} s",
        f"lens: trained CNN {mdir.name} for {tr['epochs_total']} epochs in {t_train:.1f} s "
        f"(validation RMSE g1 {tr['val_rmse_g1']:.4f}, g2 {tr['val_rmse_g2']:.4f})",
        f"lens: calibrated it on {cal['n_fields']} other fields: m1 {cal['m1']:+.4f}±{cal['m1_err']:.4f}  "
        f"m2 {cal['m2']:+.4f}±{cal['m2_err']:.4f}  c {cal['c1']:+.5f}/{cal['c2']:+.5f}",
    ]
    for name, r in rep["estimators"].items():
        lines.append(
            f"lens: {name:7s} on test fields: RMSE {r['rmse_g1']:.4f}/{r['rmse_g2']:.4f}  "
            f"m1 {r['m1']:+.4f}±{r['m1_err']:.4f}  m2 {r['m2']:+.4f}±{r['m2_err']:.4f}  "
            f"c {r['c1']:+.5f}/{r['c2']:+.5f}"
            + (f"  ({r['n_failed']} failed)" if r["n_failed"] else ""))
    lines += [f"lens: note: {note}" for note in rep.get("notes", [])]   # as `astro lens evaluate` prints them
    lines.append(f"lens: evaluated in {t_eval:.1f} s; report {rep['report']}")
    return lines
