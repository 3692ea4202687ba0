"""The stamp classifier: symmetry, loss, calibration, a short training run, evaluate and predict end to end."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from astrotool_ztf.classify import fit_temperature, nll, softmax  # noqa: E402
from astrotool_ztf.autoencoder import clustering_accuracy  # noqa: E402
from astrotool_ztf.model import (StampAutoencoder, StampClassifier, TemporalClassifier,  # noqa: E402
                                 autoencoder_loss, entropy_regularised_loss, group_views)
from astrotool_ztf.predict import per_object  # noqa: E402

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "ztf"


@pytest.mark.parametrize("group", ["c4", "d4"])
def test_predictions_are_invariant_under_the_group(group):
    torch.manual_seed(0)
    model = StampClassifier(crop=21, group=group).eval()
    x, f = torch.rand(3, 4, 21, 21), torch.randn(3, 23)
    with torch.no_grad():
        z = model(x, f)
        for k in range(1, 4):
            assert (model(torch.rot90(x, k, (2, 3)), f) - z).abs().max() < 1e-5
        gap = (model(torch.flip(x, (3,)), f) - z).abs().max()
        spread = (model(x.flip(0), f) - z).abs().max()  # how much the logits move between different stamps
    assert (gap < 1e-5) if group == "d4" else (gap > 1e-3 * spread)
    assert group_views(x, group).shape[0] == (8 if group == "d4" else 4) * 3


def test_temporal_model_takes_sequences_of_any_length_in_one_batch():
    torch.manual_seed(1)
    model = TemporalClassifier(crop=21, group="c4").eval()
    x, f, dt = torch.rand(3, 4, 4, 21, 21), torch.randn(3, 4, 23), torch.tensor([[0, 1, 3, 9.0]] * 3)
    lengths = torch.tensor([1, 3, 4])
    with torch.no_grad():
        z = model(x, f, dt, lengths)
        assert z.shape == (3, 5)
        junk = x.clone()
        junk[0, 1:] = 7.0  # what lies after an object's last alert changes nothing
        junk[1, 3:] = -3.0
        assert torch.allclose(model(junk, f, dt, lengths), z, atol=1e-6)
        alone = model(x[1:2, :3], f[1:2, :3], dt[1:2, :3], torch.tensor([3]))
        assert torch.allclose(alone, z[1:2], atol=1e-5)
        assert not torch.allclose(model(x, f, dt, torch.tensor([1, 2, 4])), z)  # a later alert does count


def test_autoencoder_shapes_loss_and_clustering_accuracy():
    torch.manual_seed(2)
    x = torch.rand(4, 3, 21, 21)
    ae, vae = StampAutoencoder().eval(), StampAutoencoder(variational=True).eval()
    with torch.no_grad():
        recon, mu, logvar = ae(x)
        assert recon.shape == x.shape and mu.shape == (4, 21) and logvar is None
        assert float(autoencoder_loss(ae, x)) == pytest.approx(float(((recon - x) ** 2).mean()), rel=1e-6)
        r2, mu2, lv2 = vae(x)
        kl = float(-0.5 * torch.mean(torch.sum(1 + lv2 - mu2 ** 2 - lv2.exp(), dim=1)))
        mse = float(((r2 - x) ** 2).mean())
        assert float(autoencoder_loss(vae, x)) == pytest.approx(mse + kl / x[0].numel(), rel=1e-5)
    with pytest.raises(ValueError, match="21 px"):
        StampAutoencoder(crop=33)
    # two clusters, one holding a stray label: 3 of 4 counted right
    assert clustering_accuracy(np.array([[0.0], [0.1], [10.0], [10.1]]), np.array([0, 0, 1, 0]), 2) == 0.75
    assert np.isnan(clustering_accuracy(np.array([[0.0], [0.1], [10.0]]), np.array([0, 1, 1]), 3))  # was 1.0


def test_entropy_regularised_loss_on_hand_made_logits():
    uniform = torch.zeros(2, 5)
    assert float(entropy_regularised_loss(uniform, torch.tensor([0, 3]), 0.5)) == pytest.approx(0.5 * math.log(5))
    sure = torch.tensor([[20.0, 0, 0, 0, 0]])
    assert float(entropy_regularised_loss(sure, torch.tensor([0]), 0.5)) == pytest.approx(0.0, abs=1e-6)


def test_temperature_scaling_recovers_a_known_temperature():
    rng = np.random.default_rng(3)
    logits = rng.normal(0, 3, (4000, 5))
    p = softmax(logits, 2.5)  # labels drawn from logits / 2.5: the best temperature is 2.5
    labels = np.array([rng.choice(5, p=row) for row in p])
    t = fit_temperature(logits, labels)
    assert t == pytest.approx(2.5, rel=0.08)
    assert nll(logits, labels, t) < nll(logits, labels, 1.0)
    assert np.array_equal(softmax(logits, t).argmax(1), logits.argmax(1))


def test_objects_combine_their_alerts():
    import pandas as pd

    alerts = pd.DataFrame({"objectId": ["a", "a", "b", "c"], "jd": [2.0, 1.0, 1.0, 1.0],
                           "p_X": [0.6, 0.3, 0.9, np.nan], "p_Y": [0.4, 0.7, 0.1, np.nan]})
    obj = per_object(alerts, ["X", "Y"]).set_index("objectId")
    pa = 0.6 * 0.3 / (0.6 * 0.3 + 0.4 * 0.7)
    assert obj.loc["a", "p_X"] == pytest.approx(pa) and obj.loc["a", "class"] == "Y"
    assert obj.loc["a", "class_first_alert"] == "Y" and obj.loc["a", "n_alerts"] == 2  # the first by jd
    assert obj.loc["c", "class"] == "" and obj.loc["c", "n_predicted"] == 0
    twice = pd.concat([alerts, alerts.iloc[[0]]], ignore_index=True).assign(candid=[1, 2, 3, 4, 1])
    again = per_object(twice, ["X", "Y"]).set_index("objectId")  # the same alert in two inputs counts once
    assert again.loc["a", "p_X"] == pytest.approx(pa) and again.loc["a", "n_alerts"] == 2


@pytest.mark.long
def test_train_evaluate_and_predict_end_to_end(tmp_path, astro):
    ws = tmp_path / "ws"
    assert astro("-w", ws, "--seed", 21, "--set", "ztf.simulate.alerts_per_object=[1,2]", "ztf", "simulate",
                 "-n", 300).returncode == 0
    r = astro("-w", ws, "--seed", 21, "--set", "ztf.prepare.val_per_class=6", "--set", "ztf.prepare.test_per_class=6",
              "ztf", "prepare")
    assert r.returncode == 0, r.stderr
    r = astro("--json", "-w", ws, "--seed", 5, "--set", 'ztf.train.group="c4"', "--set", "ztf.train.dropout=0.2",
              "ztf", "train", "--epochs", 8, "--patience", 0, "--lr", 0.002)
    assert r.returncode == 0, r.stderr
    [out] = json.loads(r.stdout)   # a list whatever the number of models trained
    assert out["val_accuracy"] >= 0.6 and out["temperature"] > 0  # chance: 0.2
    model_json = json.loads((ws / "ztf" / "models" / "sim_classifier" / "model.json").read_text())
    assert model_json["temperature"] == pytest.approx(out["temperature"]) and len(model_json["feature_mean"]) == 23
    ev = astro("--json", "-w", ws, "ztf", "evaluate")
    assert ev.returncode == 0, ev.stderr
    doc = json.loads(ev.stdout)
    assert doc["split"] == "test" and doc["summary"] == [] and doc["autoencoders"] == [] and doc["temporal"] == {}
    [e] = doc["models"]
    assert e["n"] == 30 and e["accuracy"] >= 0.5 and e["ece_after"] <= e["ece_before"] + 0.05
    assert Path(e["confusion_png"]).stat().st_size > 0
    # predict: simulated packets, plus the real sample alerts when present
    inputs = [ws / "ztf" / "simulated" / "sim_0000.parquet"] + ([SHARED] if SHARED.is_dir() else [])
    pr = astro("--json", "-w", ws, "ztf", "predict", *inputs, "--model", "sim_classifier", "--name", "p")
    assert pr.returncode == 0, pr.stderr
    res = json.loads(pr.stdout)
    import pandas as pd

    alerts = pd.read_parquet(ws / "ztf" / "predictions" / "p_alerts.parquet")
    probs = alerts[[c for c in alerts.columns if c.startswith("p_") and c != "p_max"]].to_numpy(float)
    assert len(alerts) == res["alerts"] and np.allclose(probs.sum(1), 1.0)
    objects = pd.read_csv(ws / "ztf" / "predictions" / "p_objects.csv")
    assert objects["objectId"].is_unique and len(objects) == res["objects"]
    if SHARED.is_dir():
        assert res["alerts"] >= 120 + 100  # every real sample alert got a row
    bad = astro("-w", ws, "ztf", "predict", "nosuchtable", "--model", "sim_classifier")
    assert bad.returncode == 2 and "nosuchtable" in bad.stderr
    # the temporal model: one model for 1 and 2 alerts, compared with the single-alert classifier
    tr = astro("--json", "-w", ws, "--seed", 5, "--set", 'ztf.train.group="c4"', "ztf", "train", "--arch", "temporal",
               "--epochs", 2, "--patience", 0)
    assert tr.returncode == 0, tr.stderr
    gain = json.loads(astro("--json", "-w", ws, "ztf", "evaluate", "--model", "sim_temporal").stdout)
    assert gain["models"] == [] and gain["autoencoders"] == []
    gain = gain["temporal"]["sim_temporal"]
    assert [row["alerts"] for row in gain] == [1, 2] and gain[0]["objects"] == 30
    assert all(0 <= row["temporal_accuracy"] <= 1 and "single_alert_accuracy" in row for row in gain)
    # the autoencoder: reconstruction error, clustering accuracy, and the UMAP of its latents
    assert astro("-w", ws, "--seed", 5, "ztf", "train", "--arch", "ae", "--epochs", 2).returncode == 0
    [ae] = json.loads(astro("--json", "-w", ws, "ztf", "evaluate", "--model", "sim_ae").stdout)["autoencoders"]
    assert ae["n"] == 30 and 0 < ae["reconstruction_mse"] < 0.2 and 0.2 <= ae["clustering_accuracy_k10"] <= 1
    em = astro("--json", "-w", ws, "ztf", "embed", "--model", "sim_ae")
    assert em.returncode == 0, em.stderr
    emb = pd.read_parquet(json.loads(em.stdout)["parquet"])
    assert len(emb) == 30 and {"umap_1", "umap_2", "z20", "class"} <= set(emb.columns)
    assert Path(json.loads(em.stdout)["png"]).stat().st_size > 0
    # a probe on the frozen latents, and the autoencoder's error as an anomaly score next to predictions
    ae_weights = json.loads((ws / "ztf" / "models" / "sim_ae" / "model.json").read_text())["weights_sha256"]
    no_encoder = astro("-w", ws, "ztf", "train", "--arch", "probe", "--epochs", 1)
    assert no_encoder.returncode == 2 and "--encoder" in no_encoder.stderr
    assert astro("-w", ws, "--seed", 5, "ztf", "train", "--arch", "probe", "--encoder", "sim_ae", "--epochs",
                 3).returncode == 0
    [probe] = json.loads(astro("--json", "-w", ws, "ztf", "evaluate", "--model", "sim_probe").stdout)["models"]
    assert probe["n"] == 30 and 0 <= probe["accuracy"] <= 1
    enc = json.loads((ws / "ztf" / "models" / "sim_ae" / "model.json").read_text())
    assert enc["weights_sha256"] == ae_weights  # the probe left its encoder as it was
    an = astro("--json", "-w", ws, "ztf", "predict", "sim_0000", "--model", "sim_probe", "--autoencoder", "sim_ae",
               "--name", "anomaly")
    assert an.returncode == 0, an.stderr
    scores = pd.read_parquet(ws / "ztf" / "predictions" / "anomaly_alerts.parquet")["recon_error"]
    assert scores.notna().all() and (scores > 0).all()
    # ONNX: calibrated probabilities, the same as predict's
    ex = astro("--json", "-w", ws, "ztf", "export", "--model", "sim_classifier")
    assert ex.returncode == 0, ex.stderr
    assert json.loads(ex.stdout)["max_abs_diff"] <= 1e-5
    import onnxruntime

    from astrotool_ztf.predict import alert_inputs

    meta = json.loads((ws / "ztf" / "models" / "sim_classifier" / "model.json").read_text())
    _, x, f, _ = alert_inputs(ws / "ztf" / "alerts" / "sim_0000_alerts.parquet",
                              ws / "ztf" / "stamps" / "sim_0000_stamps.h5", meta)
    sess = onnxruntime.InferenceSession(str(ws / "ztf" / "models" / "sim_classifier" / "model.onnx"))
    p_onnx = sess.run(None, {"stamps": x[:20], "features": f[:20]})[0]
    mine = alerts[alerts["source"] == "sim_0000_alerts.parquet"].iloc[:20]
    assert np.allclose(p_onnx, mine[[f"p_{c}" for c in meta["classes"]]].to_numpy(float), atol=1e-5)


def test_alerts_with_all_nan_stamps_get_no_prediction_and_are_counted(tmp_path):
    from astrotool.ml.checkpoint import save_checkpoint
    from astrotool_ztf import synthetic
    from astrotool_ztf.classify import load_classifier
    from astrotool_ztf.config import IngestConfig
    from astrotool_ztf.ingest import ingest_file
    from astrotool_ztf.predict import per_object, predict_file

    alerts = synthetic.make_alerts(4, seed=9)
    blank = synthetic.fits_stamp(np.full((63, 63), np.nan, np.float32))
    for key in ("cutoutScience", "cutoutTemplate", "cutoutDifference"):
        alerts[2][key]["stampData"] = blank
    src = synthetic.write_avro(tmp_path / "a.avro", alerts)
    ingest_file(src, tmp_path / "a_alerts.parquet", tmp_path / "a_stamps.h5", IngestConfig(), overwrite=False)
    torch.manual_seed(0)
    kwargs = {"in_channels": 4, "n_features": 23, "n_classes": 5, "crop": 21, "kernel": 3, "dropout": 0.5,
              "group": "c4"}
    save_checkpoint(tmp_path / "m", StampClassifier(**kwargs), {
        "architecture": {"name": "ztf_stamp_classifier", "kwargs": kwargs},
        "classes": ["AGN", "SN", "VS", "asteroid", "bogus"], "crop": 21, "temperature": 1.0,
        "feature_mean": [0.0] * 23, "feature_std": [1.0] * 23})
    model, meta = load_classifier(tmp_path / "m")
    df, rate = predict_file(tmp_path / "a_alerts.parquet", tmp_path / "a_stamps.h5", model, meta)
    assert df["class"].tolist()[2] == "" and df["p_max"].isna().tolist() == [False, False, True, False]
    assert np.allclose(df.drop(index=2)[[f"p_{c}" for c in meta["classes"]]].sum(axis=1), 1.0) and rate > 0
    obj = per_object(df, meta["classes"]).set_index("objectId")
    assert obj.loc[df["objectId"][2], "n_predicted"] == 0 and obj.loc[df["objectId"][2], "class"] == ""


def test_umaps_compiled_code_is_kept_on_disk():
    """Numba compiled UMAP's code afresh in every `ztf embed` (about 15 s on 2 cores): few of UMAP's functions
    are marked ``cache=True``. Each one an embedding compiles now has its machine code in numba's cache
    (those compiled as UMAP is imported, for the signature they name, are left as they are)."""
    import sys

    from numba.core.registry import CPUDispatcher

    from astrotool_ztf.autoencoder import umap_embedding

    xy = umap_embedding(np.random.default_rng(4).normal(size=(40, 21)), 15, 0.1, "euclidean", 3)
    assert xy.shape == (40, 2) and np.isfinite(xy).all()
    compiled = {obj for name, module in list(sys.modules.items()) if name.split(".")[0] == "umap"
                for obj in vars(module).values()
                if isinstance(obj, CPUDispatcher) and obj.signatures and obj._can_compile}
    assert "_optimize_layout_euclidean_single_epoch" in {obj.py_func.__name__ for obj in compiled}
    for obj in compiled:
        cache = obj._cache
        assert type(cache).__name__ == "FunctionCache", obj
        assert list(Path(cache._cache_path).glob(f"*{obj.py_func.__name__}*.nbi")), obj
