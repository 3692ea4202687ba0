"""The ZTF step of ``astro demo``: ingest sample alerts (real when available, else synthetic), train a tiny
stamp classifier on simulated alerts and classify the samples."""

from __future__ import annotations

import os
from pathlib import Path

__docformat__ = "numpy"


def shared_ztf_data() -> Path | None:
    """Folder of the sample ZTF alerts, if there is one.

    Looked for in ``$ASTRO_SHARED_DATA/ztf``, then ``../shared/data/ztf`` relative
    to the repository root (for a checkout with the plugin installed in
    editable mode) and to the current folder.
    """
    candidates = []
    if os.environ.get("ASTRO_SHARED_DATA"):
        candidates.append(Path(os.environ["ASTRO_SHARED_DATA"]).expanduser() / "ztf")
    repo_root = Path(__file__).resolve().parents[3]
    candidates += [repo_root.parent / "shared" / "data" / "ztf", Path.cwd().parent / "shared" / "data" / "ztf"]
    for folder in candidates:
        if folder.is_dir() and (any(folder.glob("*.avro")) or any(folder.glob("*.parquet"))):
            return folder
    return None


def run(ctx, sample_dir="auto", n_objects: int = 200, epochs: int = 4) -> list[str]:
    """Ingest the sample alerts, train a tiny stamp classifier on simulated alerts, and classify the samples.

    Parameters
    ----------
    ctx : astrotool.context.Context
        Context of the demo workspace.
    sample_dir : path-like, "auto" or None
        Folder of alert files; ``"auto"``: :func:`shared_ztf_data`; ``None`` (or
        nothing found): five synthetic alerts written to a temporary folder.
    n_objects : int
        Simulated training objects.
    epochs : int
        Training epochs.

    Returns
    -------
    list of str
        Summary lines.
    """
    import tempfile

    import pandas as pd

    from astrotool_ztf import ALERTS, MODELS, NAME, PREPARED, SIMULATED, STAMPS, synthetic
    from astrotool_ztf.classify import load_classifier
    from astrotool_ztf.ingest import expand_inputs, ingest_files, output_name
    from astrotool_ztf.predict import per_object, predict_file
    from astrotool_ztf.prepare import StampDataset, prepare_dataset
    from astrotool_ztf.simulate import plan_files, simulate_item
    from astrotool_ztf.train import train_classifier

    ws = ctx.workspace
    cfg = ctx.section(NAME)
    lines = []
    with tempfile.TemporaryDirectory(prefix="astro-ztf-demo-") as tmp:
        folder = shared_ztf_data() if sample_dir == "auto" else sample_dir
        folder = None if folder is None else Path(folder)
        if folder is None:
            folder = Path(tmp)
            synthetic.write_avro(folder / "synthetic_alerts.avro", synthetic.make_alerts(5, seed=1, small_stamp=2))
            lines.append("ztf: no sample data found (set ASTRO_SHARED_DATA); using 5 synthetic alerts")
        files = expand_inputs([folder])
        for path in files:
            ctx.record.add_input(path)
        samples = ingest_files(files, ws.stage(NAME, ALERTS), ws.stage(NAME, STAMPS), cfg.ingest, ctx.map,
                               overwrite=True)
        for r in samples:
            ctx.record.add_output(r.alerts)
            ctx.record.add_output(r.stamps)
            extra = f", {r.n_stamps_resized} padded" if r.n_stamps_resized else ""
            lines.append(f"ztf: {Path(r.input).name}: {r.n_alerts} alert(s) of {r.n_objects} object(s){extra} -> "
                         f"{Path(r.alerts).relative_to(ws.root)}, {Path(r.stamps).relative_to(ws.root)}")
    # a tiny classifier on simulated alerts, then the samples classified
    sim = cfg.simulate.model_copy(update={"name": "demo", "n_objects": n_objects, "chunk_size": 100,
                                         "alerts_per_object": (1, 2)})
    items = plan_files(sim.name, ws.stage(NAME, SIMULATED), 2024, sim.model_dump(mode="json"), overwrite=True)
    written = [r[0] for _, r in ctx.map(simulate_item, items, desc="simulate alerts", keys=[i.path for i in items])]
    made = ingest_files(written, ws.stage(NAME, ALERTS), ws.stage(NAME, STAMPS), cfg.ingest, ctx.map, overwrite=True,
                        names=[output_name(p) for p in written])   # demo_NNNN: unique by construction
    lines.append(f"ztf: simulated {sum(r.n_alerts for r in made)} alerts of {n_objects} objects (AGN, SN, VS, "
                 f"asteroid, bogus) with GalSim -> ztf/simulated/demo_*.parquet")
    prep = cfg.prepare.model_copy(update={"name": "demo", "val_per_class": 6, "test_per_class": 0})
    pairs = [(Path(r.alerts), Path(r.stamps)) for r in made]
    prepare_dataset(pairs, ws.stage(NAME, PREPARED) / "demo", prep, 2024, overwrite=True)
    ds = StampDataset(ws.stage(NAME, PREPARED) / "demo")
    tcfg = cfg.train.model_copy(update={"dataset": "demo", "epochs": epochs, "group": "c4", "dropout": 0.2,
                                        "lr": 2e-3, "patience": 0})
    mdir = ws.stage(NAME, MODELS) / "demo_classifier"
    with ds:
        res = train_classifier(ds, tcfg, mdir, 2024, overwrite=True)
    lines.append(f"ztf: trained the stamp classifier {epochs} epochs ({res['seconds_per_epoch']} s each): validation "
                 f"accuracy {res['val_accuracy']:.2f} (chance 0.20) -> {mdir.relative_to(ws.root)}")
    model, meta = load_classifier(mdir)
    preds = pd.concat([predict_file(r.alerts, r.stamps, model, meta)[0] for r in samples], ignore_index=True)
    objects = per_object(preds, list(meta["classes"]))
    per_class = ", ".join(f"{c} {n}" for c, n in preds["class"].value_counts().items())
    lines.append(f"ztf: the {len(preds)} sample alerts classified, alerts per class: {per_class} "
                 f"({len(objects)} objects; a model trained on simulated stamps only)")
    return lines
