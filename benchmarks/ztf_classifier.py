"""ZTF stamp classifier: trained on simulated alerts, scored on a hold-out drawn with another seed and on real
Fink alerts that carry SIMBAD types.

Runs the tool's own commands in a temporary workspace:

1. ``astro ztf simulate`` a training set (seed 8101) and a hold-out set (seed 8202; no test or tuning uses
   either seed), ``astro ztf prepare`` them (100 validation objects per class; the hold-out all test);
2. ``astro ztf train`` one classifier per seed (``--seeds``), on the first alert of each training object as
   ALeRCE trains;
3. ``astro ztf evaluate`` on the hold-out: accuracy, macro-F1 and per-class recall (mean ± sample std over seeds)
   next to ALeRCE's published 94.2 ± 0.5 % (5 classes, real alerts, balanced test of 500), and the
   expected calibration error before and after temperature scaling;
4. ``astro ztf train --arch temporal`` (one model for 1 to 5 alerts) and its accuracy with the first k
   alerts (k = 1, 2, 3, 5) next to the single-alert classifier on the same objects;
5. ``astro ztf train --arch vae`` (no labels), its reconstruction error and clustering accuracy on the
   hold-out, an MLP probe on its frozen latents, and ``astro ztf embed`` (UMAP);
6. ``astro ztf predict`` on ``../shared/data/ztf/fink_simbad_part2.parquet``: the class of each alert whose
   SIMBAD type (``cdsxmatch``) maps to one of the classes (:data:`SIMBAD_CLASS`), the accuracy on them and
   how the predictions spread over the classes -- a measure of how real the simulator is;
7. the inference rate in alerts/s on this machine's CPUs: torch against the ``astro ztf export`` ONNX model
   run by ONNX Runtime, on the same alerts.

Usage: ``python benchmarks/ztf_classifier.py [--train 3000] [--holdout 500] [--epochs 12] [--seeds 0,1]``
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _cli import count  # noqa: E402 - beside this script

ALERCE = {"accuracy": 0.9416, "accuracy_std": 0.0046,
          "recall": {"AGN": 0.92, "SN": 0.86, "VS": 0.97, "asteroid": 0.98, "bogus": 0.98}}
"""ALeRCE's stamp classifier with features, 5 initialisations (Carrasco-Davis et al. 2021, their notebooks)."""

SIMBAD_CLASS = {
    **{t: "AGN" for t in ("QSO", "AGN", "Seyfert", "Seyfert_1", "Seyfert_2", "BLLac", "Blazar", "AGN_Candidate",
                          "QSO_Candidate", "Blazar_Candidate", "BLLac_Candidate")},
    **{t: "SN" for t in ("SN", "SN*", "Candidate_SN*")},
    **{t: "VS" for t in ("V*", "V*?", "Irregular_V*", "Orion_V*", "EllipVar", "PulsV*", "PulsV*bCep",
                         "PulsV*delSct", "delSct", "gammaDor", "RRLyr", "Candidate_RRLyr", "Cepheid", "Mira",
                         "LPV*", "Candidate_LP*", "EB*", "EB*Algol", "Candidate_EB*", "CataclyV*", "CV*",
                         "Candidate_CV*", "Nova", "TTau*", "Candidate_TTau*", "YSO", "Candidate_YSO", "RSCVn",
                         "BYDra", "RotV*", "Erupt*RCrB")},
}
"""SIMBAD main type (Fink's ``cdsxmatch``) -> class; other types (stars without known variability, radio, IR,
"Unknown", "Fail") are left out."""



def astro(ws, *args, sets=(), seed=None) -> dict:
    cmd = [str(Path(sys.executable).with_name("astro")), "-q", "--json", "-w", str(ws)]
    if seed is not None:
        cmd += ["--seed", str(seed)]
    for k, v in sets:
        cmd += ["--set", f"{k}={v}"]
    env = dict(os.environ, ASTRO_CONFIG=os.devnull)
    r = subprocess.run([*cmd, *map(str, args)], env=env, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd + list(map(str, args)))} failed:\n{r.stderr}")
    return json.loads(r.stdout)


def seeds(text: str) -> str:
    """``--seeds``: a comma list of integers >= 0, checked before any work (``ztf train`` refused it only after
    the simulation)."""
    parts = [p.strip() for p in text.split(",")]
    if not parts or not all(p.isdigit() for p in parts):
        raise argparse.ArgumentTypeError(f"{text!r}: expected a comma list of integers >= 0, e.g. 0,1")
    return ",".join(parts)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    ap.add_argument("--train", type=count(), default=3000, help="simulated training objects (seed 8101)")
    ap.add_argument("--holdout", type=count(), default=500, help="simulated hold-out objects (seed 8202)")
    ap.add_argument("--epochs", type=count(), default=12, help="training epochs")
    ap.add_argument("--seeds", type=seeds, default="0,1", help="training seeds, one classifier each")
    ap.add_argument("--group", default="c4", help="cyclic pooling group (c4 as ALeRCE 2021; d4 costs 2x)")
    ap.add_argument("--jobs", type=count(), default=2, help="worker processes")
    ap.add_argument("--keep", type=Path, default=None, help="keep the workspace in this folder")
    args = ap.parse_args()
    ws = args.keep or Path(tempfile.mkdtemp(prefix="ztf-bench-"))
    run = ["--executor", "process", "-j", args.jobs]
    t0 = time.perf_counter()
    sim = astro(ws, *run, "ztf", "simulate", "-n", args.train, sets=[("ztf.simulate.name", '"train"')], seed=8101)
    hold = astro(ws, *run, "ztf", "simulate", "-n", args.holdout, sets=[("ztf.simulate.name", '"holdout"')],
                 seed=8202)
    t_sim = time.perf_counter() - t0
    astro(ws, "ztf", "prepare", "train_*", "--name", "train", sets=[("ztf.prepare.test_per_class", 0)], seed=8101)
    astro(ws, "ztf", "prepare", "holdout_*", "--name", "holdout", sets=[("ztf.prepare.holdout", "true")])
    print(f"simulated {sim['alerts']} training alerts of {sim['objects']} objects and {hold['alerts']} hold-out "
          f"alerts of {hold['objects']} objects in {t_sim:.0f} s ({(sim['alerts'] + hold['alerts']) / t_sim:.0f} "
          f"alerts/s, {args.jobs} processes)")
    t0 = time.perf_counter()
    trained = astro(ws, "ztf", "train", "--dataset", "train", "--seeds", args.seeds, "--epochs", args.epochs,
                    sets=[("ztf.train.train_alerts", '"first"'), ("ztf.train.group", f'"{args.group}"')])
    print(f"trained {len(trained)} classifier(s) ({args.group}, first alerts, {trained[0]['n_train']} training "
          f"alerts, {trained[0]['parameters']} parameters) in {time.perf_counter() - t0:.0f} s; best epochs "
          f"{[t['best_epoch'] for t in trained]}, validation accuracy {[round(t['val_accuracy'], 3) for t in trained]}")
    models = [t["model"] for t in trained]
    ev = astro(ws, "ztf", "evaluate", "--dataset", "holdout", *[a for m in models for a in ("--model", m)])
    rows = ev["models"]
    import numpy as np

    def spread(v):  # the sample standard deviation (ddof = 1), as evaluate's summary
        return float(np.nanstd(v, ddof=1)) if np.isfinite(v).sum() > 1 else 0.0

    acc = np.array([r["accuracy"] for r in rows])
    f1 = np.array([r["macro_f1"] for r in rows])
    print(f"\nhold-out (seed 8202, first alert of {rows[0]['n']} objects), {len(rows)} seed(s):")
    print(f"  accuracy {acc.mean():.3f} ± {spread(acc):.3f}   (ALeRCE, real alerts: {ALERCE['accuracy']:.3f} ± "
          f"{ALERCE['accuracy_std']:.3f})")
    print(f"  macro-F1 {f1.mean():.3f} ± {spread(f1):.3f}")
    for c, ref in ALERCE["recall"].items():
        v = np.array([r[f"recall_{c}"] for r in rows])
        print(f"  recall {c:<9} {v.mean():.3f} ± {spread(v):.3f}   (ALeRCE {ref:.2f})")
    eb, ea = np.array([r["ece_before"] for r in rows]), np.array([r["ece_after"] for r in rows])
    print(f"  expected calibration error {eb.mean():.3f} before, {ea.mean():.3f} after temperature scaling "
          f"(T = {[r['temperature'] for r in rows]})")

    # the temporal model: one model for 1..5 alerts, against the single-alert classifier on the same objects
    t0 = time.perf_counter()
    [tm] = astro(ws, "ztf", "train", "--dataset", "train", "--arch", "temporal", "--epochs", args.epochs,
                 sets=[("ztf.train.group", f'"{args.group}"')], seed=int(args.seeds.split(",")[0]))
    gain = astro(ws, "ztf", "evaluate", "--dataset", "holdout", "--model", tm["model"],
                 "--baseline", models[0])["temporal"][tm["model"]]
    print(f"\ntemporal model ({tm['parameters']} parameters, best epoch {tm['best_epoch']}, "
          f"{time.perf_counter() - t0:.0f} s) on the hold-out objects with at least k alerts:")
    for row in gain:
        print(f"  k = {row['alerts']}: {row['objects']:>3} objects, temporal {row['temporal_accuracy']:.3f} vs "
              f"single alert {row['single_alert_accuracy']:.3f} ({row['gain']:+.3f})")

    # the autoencoder (no labels), a probe on its latents, and the UMAP of the hold-out's latents
    t0 = time.perf_counter()
    [ae] = astro(ws, "ztf", "train", "--dataset", "train", "--arch", "vae", "--epochs", args.epochs, seed=8101)
    [ae_ev] = astro(ws, "ztf", "evaluate", "--dataset", "holdout", "--model", ae["model"])["autoencoders"]
    [probe] = astro(ws, "ztf", "train", "--dataset", "train", "--arch", "probe", "--encoder", ae["model"],
                    "--epochs", args.epochs, seed=8101)
    [probe_ev] = astro(ws, "ztf", "evaluate", "--dataset", "holdout", "--model", probe["model"])["models"]
    emb = astro(ws, "ztf", "embed", "--dataset", "holdout", "--model", ae["model"])
    print(f"\nvariational autoencoder (latent 21, {ae['parameters']} parameters, {time.perf_counter() - t0:.0f} s with "
          f"the probe): hold-out reconstruction error {ae_ev['reconstruction_mse']:.4f} per pixel "
          f"(by class {json.dumps({k: round(v, 4) for k, v in ae_ev['reconstruction_mse_by_class'].items()})}); "
          f"clustering accuracy (k-means, k = 10) {ae_ev['clustering_accuracy_k10']:.3f}; MLP probe on the latents "
          f"and features: accuracy {probe_ev['accuracy']:.3f}, macro-F1 {probe_ev['macro_f1']:.3f}; UMAP: {emb['png']}")

    # inference: torch against ONNX Runtime on the hold-out's first alerts, in this process
    from astrotool.ml.predict import predict

    from astrotool_ztf.classify import calibrated_module, load_classifier, split_inputs
    from astrotool_ztf.prepare import StampDataset

    ex = astro(ws, "ztf", "export", "--model", models[0])
    net, meta = load_classifier(ws / "ztf" / "models" / models[0])
    with StampDataset(ws / "ztf" / "prepared" / "holdout") as ds:
        _, part = split_inputs(ds, "test", meta)
    x = {"stamps": part["stamps"], "features": part["features"]}
    calibrated = calibrated_module(net, float(meta["temperature"]))
    rates = {}
    for name, m in (("torch", calibrated), ("onnxruntime", ex["path"])):
        best = None
        for _ in range(3):
            pred = predict(m, x, key=("stamps", "features"), batch_size=256, device="cpu")
            best = pred if best is None or pred.samples_per_s > best.samples_per_s else best
        rates[name] = (best.samples_per_s, np.asarray(best.outputs))
    diff = float(np.abs(rates["torch"][1] - rates["onnxruntime"][1]).max())
    print(f"\ninference on {len(part['label'])} alerts ({os.cpu_count()} CPUs, batches of 256, best of 3): torch "
          f"{rates['torch'][0]:.0f} alerts/s, ONNX Runtime {rates['onnxruntime'][0]:.0f} alerts/s "
          f"({rates['onnxruntime'][0] / rates['torch'][0]:.2f}x); max |difference| {diff:.1e}")

    from astrotool_ztf.demo import shared_ztf_data

    shared = shared_ztf_data()  # $ASTRO_SHARED_DATA/ztf or ../shared/data/ztf
    real = shared / "fink_simbad_part2.parquet" if shared is not None else None
    if real is None or not real.exists():
        print("\nreal Fink alerts with SIMBAD types: fink_simbad_part2.parquet not found (set ASTRO_SHARED_DATA); "
              "skipped")
    else:
        import pandas as pd

        out = astro(ws, "ztf", "predict", real, "--model", models[0], "--name", "fink")
        pred = pd.read_parquet(ws / "ztf" / "predictions" / "fink_alerts.parquet")
        truth = pd.read_parquet(real, columns=["candid", "cdsxmatch", "roid"])
        m = pred.merge(truth, on="candid")
        m["true"] = m["cdsxmatch"].map(SIMBAD_CLASS)
        m.loc[m["roid"] == 3, "true"] = "asteroid"  # Fink: 3 = a known solar-system object
        lab = m[m["true"].notna()]
        print(f"\nreal Fink alerts with SIMBAD types ({real.name}): {len(m)} alerts, {len(lab)} of a known class "
              f"({lab['true'].value_counts().to_dict()})")
        print(f"  accuracy of the simulation-trained model: {(lab['class'] == lab['true']).mean():.3f} "
              f"(chance 0.2); predicted classes of all {len(m)}: {m['class'].value_counts().to_dict()}")
        print(f"  inference (torch, {os.cpu_count()} CPUs): {out['model_alerts_per_s']:.0f} alerts/s; end to end "
              f"(ingest + preprocessing + model) {out['alerts_per_s']:.0f} alerts/s")
    if args.keep is None:
        import shutil

        shutil.rmtree(ws, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
