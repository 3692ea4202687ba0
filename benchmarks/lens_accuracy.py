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

4. **Transfer** (issue 14): the estimators calibrated on the ``fields``
   configuration above are tested, without recalibration, on constant-shear
   fields from other configurations (:data:`TRANSFER`: another Moffat beta, no
   truncation, wider PSF and galaxy-size ranges; a Kolmogorov PSF with Gaussian
   noise at S/N 100; a Gaussian PSF with Sersic galaxies at S/N 500), through
   ``astro lens validate``: the CNN with its stored calibration and with its own
   response (``--response metacal``: the network measures metacal's
   ellipticities, no calibration), REGAUSS, KSB, METACAL and ANACAL (when
   installed). ``--wide`` also trains a CNN on the ``wide`` preset (wide priors)
   and scores it the same two ways. METACAL's and the response's field shears
   are second order in g, per component (:mod:`astrotool_lens.metacal`). Goal:
   the estimator for field shears (the CNN's own response) has |m| < 5e-3 and
   |c| < 5e-4 on every test configuration, as METACAL has.

A final table gives PASS/MISS per goal (for m and c: the central value, the
error is printed next to it).

``--galaxy-cnn`` also trains a galaxy-only CNN (``--no-psf``, LensNet's
default input) and scores it raw in steps 2 and 3: it cannot see the per-field
PSF ellipticity, so its PSF leakage moves whole fields.

Usage::

    python benchmarks/lens_accuracy.py --quick     # smoke run, about 2 min on 2 cores (too few fields to judge m)
    python benchmarks/lens_accuracy.py             # full size, about 60 min on 2 cores (the CNN's own response,
                                                   # METACAL and ANACAL on the 3 x 24,000 transfer stamps take 43)
    python benchmarks/lens_accuracy.py --keep ws/  # keep the workspace
    python benchmarks/lens_accuracy.py --skip-shearnet --wide   # steps 2-4, and a wide-prior CNN (about 85 min:
                                                                # an own response runs the CNN 40 times per stamp)
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
              "fields": 8, "field_size": 250, "width": 16, "transfer_fields": 6, "transfer_field_size": 250},
    "full": {"shearnet_n": 3000, "shearnet_epochs": 8, "lensnet_n": 12000, "lensnet_epochs": 10,
             "fields": 80, "field_size": 500, "width": 16, "transfer_fields": 30, "transfer_field_size": 800},
}

#: Test configurations of step 4: ``--set`` assignments over the ``fields`` preset (ring pairs, one
#: shear and one PSF per field); none is the configuration the estimators were calibrated on.
TRANSFER = {
    "moffat b2.5 untruncated": [
        "lens.generate.psf.beta=2.5", "lens.generate.psf.trunc=0.0", "lens.generate.psf.g1=[-0.04, 0.04]",
        "lens.generate.psf.g2=[-0.04, 0.04]", "lens.generate.galaxy.hlr=[0.7, 1.3]",
        "lens.generate.shear.g1=[-0.08, 0.08]", "lens.generate.shear.g2=[-0.08, 0.08]"],
    "kolmogorov S/N 100": [
        'lens.generate.psf.profile="kolmogorov"', "lens.generate.galaxy.hlr=0.8",
        'lens.generate.noise.kind="gaussian"', "lens.generate.noise.snr=100.0"],
    "gaussian sersic S/N 500": [
        'lens.generate.psf.profile="gaussian"', 'lens.generate.galaxy.profile="sersic"',
        "lens.generate.galaxy.sersic_n=[0.8, 3.0]", "lens.generate.galaxy.hlr=1.3", "lens.generate.noise.snr=500.0"],
}
TRANSFER_METHODS = ("REGAUSS", "KSB", "METACAL", "ANACAL")

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


def shearnet_step(run, size: dict, seed: int, train_common: list) -> dict:
    """Step 1: train on ShearNet-like stamps; MSE per component of the CNN and REGAUSS on the test split."""
    print(f"[1/4] ShearNet-like: {size['shearnet_n']} stamps, {size['shearnet_epochs']} epochs", flush=True)
    run("shearnet generate", "generate", "--preset", "shearnet", "--name", "shearnet",
        "-n", size["shearnet_n"], "--shard-size", 500, seed=seed)
    run("shearnet train", "train", "--dataset", "shearnet", "--model", "shearnet_cnn",
        "--epochs", size["shearnet_epochs"], "--patience", 0, *train_common, seed=seed)
    sn = run("shearnet evaluate", "evaluate", "--model", "shearnet_cnn", "--classical", "REGAUSS",
             "--no-plots", "--json")["estimators"]
    return {k: {"mse_g1": v["rmse_g1"] ** 2, "mse_g2": v["rmse_g2"] ** 2, "n": v["n"], "n_failed": v["n_failed"]}
            for k, v in sn.items()}


def transfer_step(run, size: dict, seed: int, models: dict, calibrations: dict) -> dict:
    """Step 4: m and c on fields of each :data:`TRANSFER` configuration, no recalibration.

    Parameters
    ----------
    models : dict
        Label -> ``lens validate`` options naming a trained model (its stored calibration is used as
        is) and, for its own response, ``--response metacal``.
    calibrations : dict
        Method -> path of a JSON with m1, m2, c1, c2 fitted on the calibration fields.

    Returns
    -------
    dict
        ``{configuration: {estimator: lens validate --json record}}``.
    """
    from astrotool_lens.config import METHODS

    n = size["transfer_fields"] * size["transfer_field_size"]
    out: dict = {}
    for k, (label, sets) in enumerate(TRANSFER.items()):
        name = f"transfer{k}"
        print(f"[4/4] transfer to '{label}': {size['transfer_fields']} fields x {size['transfer_field_size']} stamps",
              flush=True)
        run(f"{name} generate", "generate", "--preset", "fields", "--name", name, "-n", n,
            "--field-size", size["transfer_field_size"], "--shard-size", 1000, seed=seed + 10 + k, sets=sets)
        rows = {}
        for est, options in models.items():
            rows[est] = run(f"{name} validate {est}", "validate", name, *options)
        for method in (m for m in TRANSFER_METHODS if m in METHODS):
            cal = ["--calibration", calibrations[method]] if method in calibrations else []
            rows[method] = run(f"{name} validate {method}", "validate", name, "--method", method, *cal)
        out[label] = rows
    return out


def _transfer_fit(rec: dict) -> dict:
    """m, c and errors of one ``lens validate --json`` record: the calibrated fit when there is one."""
    kind = "calibrated" if rec.get("m1") is not None else "raw"
    suffix = "" if kind == "calibrated" else "_raw"
    return {"kind": kind, **{f"{q}{i}{e}": rec[f"{q}{i}{suffix}{e}"] for q in "mc" for i in (1, 2) for e in ("", "_err")}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    ap.add_argument("--quick", action="store_true", help="smoke-run sizes (<= 4 min on 2 cores)")
    ap.add_argument("--jobs", type=int, default=2, help="worker processes for generate/measure")
    ap.add_argument("--seed", type=int, default=2026, help="base seed (each dataset gets its own)")
    ap.add_argument("--width", type=int, default=None, help="CNN width (default: the size's)")
    ap.add_argument("--fields", type=int, default=None, help="number of constant-shear fields")
    ap.add_argument("--field-size", type=int, default=None, help="stamps per field (even)")
    ap.add_argument("--lensnet-n", type=int, default=None, help="stamps of the LensNet training set")
    ap.add_argument("--skip-shearnet", action="store_true", help="skip step 1 (ShearNet-like)")
    ap.add_argument("--wide", action="store_true", help="also train a CNN on the `wide` preset and score it in step 4")
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
        if not args.skip_shearnet:
            out["shearnet"] = shearnet_step(run, size, args.seed, train_common)

        # ---------------------------------------------------------------- 2. LensNet
        print(f"[2/4] LensNet: {size['lensnet_n']} stamps, {size['lensnet_epochs']} epochs", flush=True)
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
        print(f"[3/4] fields: calibration and test sets of {size['fields']} fields x {size['field_size']} "
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

        # ---------------------------------------------------------------- 4. transfer
        models = {"CNN": ["--model", "lensnet_cnn"],
                  "CNN, own response": ["--model", "lensnet_cnn", "--response", "metacal"]}
        if args.wide:
            print(f"[4/4] wide priors: {size['lensnet_n']} stamps, {size['lensnet_epochs']} epochs", flush=True)
            run("wide generate", "generate", "--preset", "wide", "--name", "wide", "-n", size["lensnet_n"],
                "--shard-size", 1000, seed=args.seed + 4)
            run("wide train", "train", "--dataset", "wide", "--model", "wide_cnn", "--use-psf",
                "--epochs", size["lensnet_epochs"], "--patience", 0, *train_common, seed=args.seed + 4)
            out["wide_calibration"] = run("wide calibrate", "calibrate", "--model", "wide_cnn", "--dataset", "calib")
            models["CNN wide"] = ["--model", "wide_cnn"]
            models["CNN wide, own response"] = ["--model", "wide_cnn", "--response", "metacal"]
        calibrations = {}
        for k in ("REGAUSS", "KSB"):   # fitted on the calibration fields, as the CNN's was
            calibrations[k] = tmp / f"{k.lower()}_calibration.json"
            calibrations[k].write_text(json.dumps({q: hsm_cal[k][q] for q in ("m1", "m2", "c1", "c2")}))
        out["transfer"] = transfer_step(run, size, args.seed, models, calibrations)
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
    if "shearnet" in out:
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

    tr = out["transfer"]
    print(f"\n4. Transfer ({size['transfer_fields']} fields x {size['transfer_field_size']} stamps per configuration, "
          "no recalibration): m, c (1 sigma); calibrated where a calibration was fitted on the step-3 fields "
          "(CNN, REGAUSS, KSB), raw for the self-calibrating METACAL and ANACAL")
    width_est = max(len(est) for rows_ in tr.values() for est in rows_)
    for label, rows_ in tr.items():
        print(f"   {label}")
        for est, r in rows_.items():
            f = _transfer_fit(r)
            print(f"     {est:{width_est}s} m1 {f['m1']:+.2e}±{f['m1_err']:.1e}  m2 {f['m2']:+.2e}±{f['m2_err']:.1e}  "
                  f"c1 {f['c1']:+.1e}±{f['c1_err']:.1e}  c2 {f['c2']:+.1e}±{f['c2_err']:.1e}  ({f['kind']})")
            worst_m, worst_c = max(abs(f["m1"]), abs(f["m2"])), max(abs(f["c1"]), abs(f["c2"]))
            rows.append((f"transfer {label}: {est} max|m|, max|c|", f"{worst_m:.1e}, {worst_c:.1e}",
                         f"< {GOALS['m']:.0e}, < {GOALS['c']:.0e}",
                         verdict(worst_m < GOALS["m"] and worst_c < GOALS["c"])))

    print("\nSummary")
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    w2 = max(len(r[2]) for r in rows)
    for fig, val, goal, v in rows:
        print(f"  {fig:{w0}s}  {val:>{w1}s}  {goal:{w2}s}  {v}")
    print("\nseconds: " + ", ".join(f"{k} {v:.0f}" for k, v in out["seconds"].items()))
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
