"""Benchmark: accuracy of the `astro lens` CNN shear estimator against HSM baselines.

Everything runs through the real command line (``python -m astrotool -w TMP
lens generate | train | calibrate | evaluate --json``) in a temporary
workspace, and every baseline is measured in the same run on the same stamps:

1. **ShearNet-like** (``--preset shearnet``: round exponential galaxies, no
   shape noise, Gaussian noise at S/N 1000, g1, g2 ~ U(-0.1, 0.1)): per-component
   MSE of the CNN on the test split (goal <= 3e-4; ShearNet's README reports
   about 6e-4) next to REGAUSS's on the same stamps.
2. **LensNet** (``--preset lensnet``: shape noise |e| ~ |N(0, 0.2)|, Poisson
   noise at S/N 200, g ~ U(-0.4, 0.4), PSF ellipticity +-0.02 per stamp): the CNN
   reads the galaxy and the PSF stamp (``lens.train.use_psf``); per-galaxy RMSE
   per component on the test split (goal <= 0.08; the shape-noise floor is
   about 0.07) with REGAUSS and KSB side by side.
3. **Constant-shear fields** (``--preset fields``: LensNet galaxies, 90-degree
   ring pairs, fields of ``--field-size`` stamps with one shear in +-0.1 and one
   PSF each). Two independent datasets are drawn with different seeds: the
   *calibration* fields, on which ``astro lens calibrate`` fits the CNN's m and
   c and stores them in the checkpoint, and the *test* fields, on which m1, m2,
   c1, c2 (1 sigma) and GREAT3 Q are measured for the calibrated CNN, the raw
   CNN, REGAUSS and KSB (goal |m| < 5e-3, |c| < 5e-4). For a like-for-like
   comparison REGAUSS and KSB are also calibrated on the same calibration
   fields (g -> (g - c) / (1 + m), which turns the test fit into
   m' = (1 + m_test) / (1 + m_cal) - 1 and c' = (c_test - c_cal) / (1 + m_cal);
   errors of the two fits are added in quadrature).

A final table gives PASS/MISS per goal (for m and c: the central value, the
error is printed next to it).

``--galaxy-cnn`` also trains a galaxy-only CNN (``--no-psf``, LensNet's
default input) and scores it raw in steps 2 and 3: it cannot see the per-field
PSF ellipticity, so its PSF leakage moves whole fields.

Usage::

    python benchmarks/lens_accuracy.py --quick     # smoke run, about 2 min on 2 cores (too few fields to judge m)
    python benchmarks/lens_accuracy.py             # full size, about 16 min on 2 cores
    python benchmarks/lens_accuracy.py --keep ws/  # keep the workspace
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from _cli import CliRunner  # benchmarks/_cli.py (this folder is on sys.path when a script runs)

# sizes: stamps per dataset, training epochs, CNN width; fields = number of constant-shear fields
SIZES = {
    "quick": {"shearnet_n": 1200, "shearnet_epochs": 4, "lensnet_n": 2400, "lensnet_epochs": 4,
              "fields": 8, "field_size": 250, "width": 16},
    "full": {"shearnet_n": 3000, "shearnet_epochs": 8, "lensnet_n": 12000, "lensnet_epochs": 10,
             "fields": 80, "field_size": 500, "width": 16},
}

GOALS = {"shearnet_mse": 3e-4, "lensnet_rmse": 0.08, "m": 5e-3, "c": 5e-4}
SHEARNET_REPORTED_MSE = 6e-4
SHAPE_NOISE_FLOOR = 0.07


def fmt_e(x: float, digits: int = 1) -> str:
    return f"{x:.{digits}e}"


def hsm_metrics(workspace: Path, dataset: str, methods) -> dict:
    """m, c (and the rest) of HSM estimators and METACAL from ``lens/predictions/<dataset>_hsm.parquet``."""
    from astrotool.io.tables import read_parquet
    from astrotool_lens.data import ShearDataset
    from astrotool_lens.evaluate import estimator_metrics, fields_of, table_estimates

    ds = ShearDataset(workspace / "lens" / "shear" / dataset)
    t = read_parquet(workspace / "lens" / "predictions" / f"{dataset}_hsm.parquet")
    idx = t.column("index").to_numpy()
    g1, g2, field = ds.truth["g1"][idx], ds.truth["g2"][idx], fields_of(ds)[idx]
    est = table_estimates(t, slice(None), methods, field)    # METACAL: <R>^-1 <e> per field
    return {m: estimator_metrics(g1, g2, *est[m], field) for m in methods}


def calibrated(test: dict, cal: dict) -> dict:
    """Test-field metrics of an estimator after g -> (g - c_cal) / (1 + m_cal), from the two linear fits."""
    from astrotool_lens.evaluate import great3_q

    r = dict(test)
    for i in (1, 2):
        mc, cc = cal[f"m{i}"], cal[f"c{i}"]
        r[f"m{i}"] = (1 + test[f"m{i}"]) / (1 + mc) - 1
        r[f"m{i}_err"] = (test[f"m{i}_err"] ** 2 + cal[f"m{i}_err"] ** 2) ** 0.5 / (1 + mc)
        r[f"c{i}"] = (test[f"c{i}"] - cc) / (1 + mc)
        r[f"c{i}_err"] = (test[f"c{i}_err"] ** 2 + cal[f"c{i}_err"] ** 2) ** 0.5 / (1 + mc)
    r["q"] = great3_q(r["m1"], r["m2"], r["c1"], r["c2"])
    return r


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke-run sizes (<= 4 min on 2 cores)")
    ap.add_argument("--jobs", type=int, default=2, help="worker processes for generate/measure")
    ap.add_argument("--seed", type=int, default=2026, help="base seed (each dataset gets its own)")
    ap.add_argument("--width", type=int, default=None, help="CNN width (default: the size's)")
    ap.add_argument("--fields", type=int, default=None, help="number of constant-shear fields")
    ap.add_argument("--field-size", type=int, default=None, help="stamps per field (even)")
    ap.add_argument("--lensnet-n", type=int, default=None, help="stamps of the LensNet training set")
    ap.add_argument("--galaxy-cnn", action="store_true",
                    help="also train and score a galaxy-only CNN (no PSF channel)")
    ap.add_argument("--keep", type=Path, default=None, help="use/keep this workspace instead of a temp one")
    ap.add_argument("--json-out", type=Path, default=None, help="also write the figures as JSON here")
    ap.add_argument("-v", "--verbose", action="store_true", help="show the commands' logs")
    args = ap.parse_args(argv)

    size = dict(SIZES["quick" if args.quick else "full"])
    for k, v in (("width", args.width), ("fields", args.fields), ("field_size", args.field_size),
                 ("lensnet_n", args.lensnet_n)):
        if v is not None:
            size[k] = v
    width = size["width"]
    tmp = args.keep or Path(tempfile.mkdtemp(prefix="lens-accuracy-"))
    tmp.mkdir(parents=True, exist_ok=True)
    run = CliRunner(tmp, args.jobs, ("lens",), args.verbose)
    t0 = time.perf_counter()
    train_common = ["--width", width, "--overwrite"]  # train afresh, also in a kept workspace
    out: dict = {"sizes": size, "seed": args.seed}
    try:
        # ---------------------------------------------------------------- 1. ShearNet-like
        print(f"[1/3] ShearNet-like: {size['shearnet_n']} stamps, {size['shearnet_epochs']} epochs", flush=True)
        run("shearnet generate", "generate", "--preset", "shearnet", "--name", "shearnet",
            "-n", size["shearnet_n"], "--shard-size", 500, seed=args.seed)
        run("shearnet train", "train", "--dataset", "shearnet", "--model", "shearnet_cnn",
            "--epochs", size["shearnet_epochs"], "--patience", 0, *train_common, seed=args.seed)
        sn = run("shearnet evaluate", "evaluate", "--model", "shearnet_cnn", "--classical", "REGAUSS",
                 "--no-plots", "--json")["estimators"]
        out["shearnet"] = {k: {"mse_g1": v["rmse_g1"] ** 2, "mse_g2": v["rmse_g2"] ** 2, "n": v["n"],
                               "n_failed": v["n_failed"]} for k, v in sn.items()}

        # ---------------------------------------------------------------- 2. LensNet
        print(f"[2/3] LensNet: {size['lensnet_n']} stamps, {size['lensnet_epochs']} epochs", flush=True)
        run("lensnet generate", "generate", "--preset", "lensnet", "--name", "lensnet",
            "-n", size["lensnet_n"], "--shard-size", 1000, seed=args.seed + 1)
        cnns = {"CNN": ("lensnet_cnn", "--use-psf")}
        if args.galaxy_cnn:
            cnns["CNN galaxy-only"] = ("lensnet_gal_cnn", "--no-psf")
        out["lensnet"] = {}
        for label, (mname, psf_flag) in cnns.items():
            run(f"lensnet train ({mname})", "train", "--dataset", "lensnet", "--model", mname, psf_flag,
                "--epochs", size["lensnet_epochs"], "--patience", 0, *train_common, seed=args.seed + 1)
            ln = run(f"lensnet evaluate ({mname})", "evaluate", "--model", mname,
                     "--classical", "REGAUSS,KSB" if label == "CNN" else "", "--no-plots", "--json")["estimators"]
            out["lensnet"].update({(label if k == "CNN" else k): v for k, v in ln.items()})

        # ---------------------------------------------------------------- 3. fields
        nf = size["fields"] * size["field_size"]
        print(f"[3/3] fields: calibration and test sets of {size['fields']} fields x {size['field_size']} "
              "stamps (ring pairs)", flush=True)
        for name, seed in (("calib", args.seed + 3), ("fields", args.seed + 2)):
            run(f"{name} generate", "generate", "--preset", "fields", "--name", name, "-n", nf,
                "--field-size", size["field_size"], "--shard-size", 1000, seed=seed)
            run(f"{name} measure", "measure", "--dataset", name, "--methods", "REGAUSS,KSB")
        cal = run("calibrate", "calibrate", "--model", "lensnet_cnn", "--dataset", "calib")
        out["calibration"] = cal
        hsm_cal = hsm_metrics(tmp, "calib", ("REGAUSS", "KSB"))  # from the table `measure` wrote
        fd = run("fields evaluate", "evaluate", "--model", "lensnet_cnn", "--dataset", "fields", "--split", "all",
                 "--classical", "REGAUSS,KSB", "--no-plots", "--json")["estimators"]
        for k in ("REGAUSS", "KSB"):
            fd[f"{k} calibrated"] = calibrated(fd[k], hsm_cal[k])
        for i in (1, 2):  # the calibrated CNN's errors include the calibration's own
            for q in ("m", "c"):
                e = fd["CNN"][f"{q}{i}_err"], cal[f"{q}{i}_err"]
                fd["CNN"][f"{q}{i}_err"] = (e[0] ** 2 + e[1] ** 2) ** 0.5 / (1 + cal[f"m{i}"])
        if args.galaxy_cnn:
            g = run("fields evaluate (galaxy-only)", "evaluate", "--model", "lensnet_gal_cnn", "--dataset", "fields",
                    "--split", "all", "--classical", "", "--no-plots", "--json")["estimators"]
            fd["CNN galaxy-only"] = g["CNN"]
        out["fields"] = fd
    finally:
        if args.keep is None:
            shutil.rmtree(tmp, ignore_errors=True)
    wall = time.perf_counter() - t0
    out["seconds"] = {**run.times, "total": wall}

    # -------------------------------------------------------------------- report
    rows: list[tuple[str, str, str, str]] = []  # (figure, value, goal, verdict)

    def verdict(ok: bool) -> str:
        return "PASS" if ok else "MISS"

    print()
    print(f"lens accuracy benchmark ({'quick' if args.quick else 'full'} size, seed {args.seed}, "
          f"CNN width {width}, {wall / 60:.1f} min)")
    s = out["shearnet"]
    print(f"\n1. ShearNet-like (test split, {s['CNN']['n']} stamps): MSE per component "
          f"(goal <= {GOALS['shearnet_mse']:.0e}; ShearNet reports {SHEARNET_REPORTED_MSE:.0e})")
    for name, r in s.items():
        fail = f"  (failed {r['n_failed']})" if r["n_failed"] else ""
        print(f"   {name:18s} MSE g1 {fmt_e(r['mse_g1'])}  g2 {fmt_e(r['mse_g2'])}{fail}")
    for i in (1, 2):
        v = s["CNN"][f"mse_g{i}"]
        rows.append((f"ShearNet-like CNN MSE g{i}", fmt_e(v), f"<= {GOALS['shearnet_mse']:.0e}",
                     verdict(v <= GOALS["shearnet_mse"])))

    ln = out["lensnet"]
    print(f"\n2. LensNet (test split, {ln['CNN']['n']} stamps): per-galaxy RMSE per component "
          f"(goal <= {GOALS['lensnet_rmse']}; shape-noise floor ~ {SHAPE_NOISE_FLOOR})")
    for name, r in ln.items():
        fail = f"  (failed {r['n_failed']})" if r["n_failed"] else ""
        print(f"   {name:18s} RMSE g1 {r['rmse_g1']:.4f}  g2 {r['rmse_g2']:.4f}{fail}")
    for name in [k for k in ln if k.startswith("CNN")]:
        for i in (1, 2):
            v = ln[name][f"rmse_g{i}"]
            rows.append((f"LensNet {name} RMSE g{i}", f"{v:.4f}", f"<= {GOALS['lensnet_rmse']}",
                         verdict(v <= GOALS["lensnet_rmse"])))

    fd = out["fields"]
    first = next(iter(fd.values()))
    print(f"\n3. Constant-shear fields ({first['n']} stamps, {first['n_fields']} fields, ring pairs): "
          f"m, c (1 sigma) and GREAT3 Q (goal |m| < {GOALS['m']:.0e}, |c| < {GOALS['c']:.0e})")
    for name, r in fd.items():
        fail = f"  (failed {r['n_failed']})" if r["n_failed"] else ""
        print(f"   {name:18s} m1 {r['m1']:+.2e}±{r['m1_err']:.1e}  m2 {r['m2']:+.2e}±{r['m2_err']:.1e}  "
              f"c1 {r['c1']:+.1e}±{r['c1_err']:.1e}  c2 {r['c2']:+.1e}±{r['c2_err']:.1e}  Q {r['q']:.0f}{fail}")
    cal = out["calibration"]
    print("   (CNN = calibrated; its errors and the calibrated HSM ones add the calibration fit's in quadrature)")
    print(f"   (calibration of the CNN on {cal['n_fields']} other fields: m1 {cal['m1']:+.2e}±{cal['m1_err']:.1e}  "
          f"m2 {cal['m2']:+.2e}±{cal['m2_err']:.1e}  c1 {cal['c1']:+.1e}  c2 {cal['c2']:+.1e})")
    for name in ("CNN", "CNN raw"):
        r = fd[name]
        for q, goal in (("m1", "m"), ("m2", "m"), ("c1", "c"), ("c2", "c")):
            rows.append((f"fields {name} {q}", f"{r[q]:+.1e}±{r[q + '_err']:.0e}", f"|{q}| < {GOALS[goal]:.0e}",
                         verdict(abs(r[q]) < GOALS[goal])))

    print("\nSummary")
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    w2 = max(len(r[2]) for r in rows)
    for fig, val, goal, v in rows:
        print(f"  {fig:{w0}s}  {val:>{w1}s}  {goal:{w2}s}  {v}")
    print("\nseconds: " + ", ".join(f"{k} {v:.0f}" for k, v in out["seconds"].items()))
    if args.json_out:
        args.json_out.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
