"""The CNN shear estimator: learning, symmetry, checkpoints, resume, ONNX."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from astrotool_lens.model import D4_SIGNS, d4_transform, load_estimator, make_estimator, predict_array
from astrotool_lens.train import dataset_inputs


def test_cnn_beats_predicting_zero(easy_dataset, trained_model):
    """300 steps on the easy preset: test-split MSE < 0.3 x the MSE of predicting g = 0."""
    mdir, summary = trained_model
    assert summary["epochs_total"] == 15 and summary["n_train"] == 640
    model, meta = load_estimator(mdir)
    test = easy_dataset.split(meta["training"]["split"], meta["training"]["seed"])[2]
    assert len(test) >= 50
    x = dataset_inputs(easy_dataset, False, test)
    pred = predict_array(model, x, symmetrize=True)
    g = np.stack([easy_dataset.truth["g1"][test], easy_dataset.truth["g2"][test]], axis=1)
    mse = ((pred - g) ** 2).mean(axis=0)
    zero = (g**2).mean(axis=0)
    assert (mse < 0.3 * zero).all(), (mse, zero)


def test_symmetrized_estimator_is_spin2_equivariant():
    """Flips and quarter turns of the stamp change (g1, g2) exactly as a spin-2 field must."""
    torch.manual_seed(0)
    est = make_estimator(in_channels=1, stamp_size=16, width=4, blocks=2, hidden=8).eval()
    x = np.random.default_rng(0).normal(size=(3, 1, 16, 16)).astype(np.float32) + 2.0
    y = predict_array(est, x, symmetrize=True)
    assert np.abs(y).max() > 0
    for k in range(8):
        yk = predict_array(est, np.ascontiguousarray(d4_transform(x, k)), symmetrize=True)
        assert np.allclose(yk, y * np.array(D4_SIGNS[k]), atol=1e-6), k
    # without symmetrisation a random network is not equivariant
    y0 = predict_array(est, x, symmetrize=False)
    y1 = predict_array(est, np.ascontiguousarray(d4_transform(x, 1)), symmetrize=False)
    assert not np.allclose(y1, y0 * np.array(D4_SIGNS[1]), atol=1e-6)


def test_checkpoint_round_trip(trained_model, easy_dataset, tmp_path):
    from astrotool.ml.checkpoint import load_checkpoint, save_checkpoint

    mdir, _ = trained_model
    model, meta = load_estimator(mdir)
    for key in ("architecture", "hyperparameters", "normalisation", "training", "metrics", "versions",
                "weights_sha256"):
        assert key in meta
    assert meta["normalisation"]["target_scale"] == pytest.approx(model.target_scale.tolist())
    assert not any(p.suffix in (".pt", ".pth", ".pkl") for p in mdir.rglob("*"))
    x = dataset_inputs(easy_dataset, False, np.arange(16))
    save_checkpoint(tmp_path / "copy", model, {k: v for k, v in meta.items() if k != "weights_sha256"})
    again, _ = load_estimator(tmp_path / "copy")
    assert np.array_equal(predict_array(model, x), predict_array(again, x))
    ck = load_checkpoint(tmp_path / "copy")
    assert all(torch.equal(ck.state_dict[k], v) for k, v in model.state_dict().items())


def test_resume_gives_the_same_weights(easy_dataset, tmp_path):
    """2 epochs in one go == 1 epoch, interrupted, resumed (same batches, same optimizer state)."""
    from astrotool.ml.checkpoint import load_checkpoint
    from astrotool_lens.config import TrainConfig
    from astrotool_lens.train import train_model

    cfg = TrainConfig(epochs=2, width=4, blocks=2, hidden=8, batch_size=32, lr=2e-3, patience=0, threads=1,
                      max_samples=128)
    train_model(easy_dataset, cfg, tmp_path / "straight", seed=3)

    def interrupt(entry):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_model(easy_dataset, cfg, tmp_path / "resumed", seed=3, on_epoch=interrupt)
    r2 = train_model(easy_dataset, cfg, tmp_path / "resumed", seed=3)
    assert r2["resumed_from"] == 1 and r2["epochs_run"] == 1 and r2["epochs_total"] == 2
    a = load_checkpoint(tmp_path / "straight" / "last").state_dict
    b = load_checkpoint(tmp_path / "resumed" / "last").state_dict
    assert all(torch.equal(a[k], b[k]) for k in a)
    # a finished run resumes to nothing; --overwrite starts again
    r3 = train_model(easy_dataset, cfg, tmp_path / "resumed", seed=3)
    assert r3["epochs_run"] == 0
    hist = json.loads((tmp_path / "resumed" / "last" / "training_state.json").read_text())["loop"]["history"]
    assert [h["epoch"] for h in hist] == [0, 1]
    r4 = train_model(easy_dataset, cfg, tmp_path / "resumed", seed=3, overwrite=True)
    assert r4["resumed_from"] is None and r4["epochs_run"] == 2


def test_early_stopping():
    from astrotool.ml.training import EarlyStopping

    es = EarlyStopping(patience=2, min_delta=0.01)
    seq = [1.0, 0.5, 0.495, 0.6, 0.4]
    flags = [es.step(v, i) for i, v in enumerate(seq[:4])]
    assert flags == [True, True, False, False] and es.should_stop and es.best_epoch == 1
    es2 = EarlyStopping(patience=2)
    es2.load_state_dict(es.state_dict())
    assert es2.best == 0.5 and es2.bad_epochs == 2


def test_onnx_parity(trained_model, tmp_path):
    import onnx

    from astrotool_lens.export import export_onnx

    mdir, _ = trained_model
    res = export_onnx(mdir, tmp_path / "m.onnx", parity_samples=32)
    assert res["max_abs_diff"] <= 1e-5 and res["samples"] == 32
    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "m.onnx")).metadata_props}
    assert json.loads(meta["astrotool"])["architecture"]["kwargs"]["stamp_size"] == 24


def test_onnx_export_runs_through_the_same_predict(trained_model, easy_dataset, tmp_path):
    """The export gives torch's estimates through ml.predict, and refuses to stand in for other settings or weights."""
    import shutil

    from astrotool.errors import InputError
    from astrotool.ml.checkpoint import save_checkpoint
    from astrotool_lens.export import export_onnx
    from astrotool_lens.model import check_onnx, predict_stamps

    mdir = tmp_path / "m"
    shutil.copytree(trained_model[0], mdir, ignore=shutil.ignore_patterns("last", "*.onnx"))
    res = export_onnx(mdir, parity_samples=16)
    onnx_path = mdir / "model.onnx"
    assert res["path"] == str(onnx_path) and res["symmetrize"] and not res["calibrated"]
    model, meta = load_estimator(mdir)
    x = dataset_inputs(easy_dataset, False, np.arange(40))
    t = predict_stamps(model, x, batch_size=7)
    o = predict_stamps(onnx_path, x, batch_size=7)
    assert (t.engine, o.engine) == ("torch", "onnxruntime") and t.n == o.n == 40
    assert np.abs(o.outputs - t.outputs).max() <= 1e-5 and o.outputs.shape == (40, 2)
    assert check_onnx(onnx_path, meta, symmetrize=True, calibrated=True)["symmetrize"] is True
    with pytest.raises(InputError, match="exported with symmetrize=True"):
        check_onnx(onnx_path, meta, symmetrize=False, calibrated=True)
    # new weights (a calibration, a retraining) make the export stale
    with torch.no_grad():
        model.calib_m.fill_(0.01)
    save_checkpoint(mdir, model, {k: v for k, v in meta.items() if k != "weights_sha256"})
    _, meta2 = load_estimator(mdir)
    with pytest.raises(InputError, match="exported from other weights") as e:
        check_onnx(onnx_path, meta2, symmetrize=True, calibrated=True)
    assert "model.onnx" in str(e.value)


def test_frame_sigma_is_the_noise_of_the_stamp_edge():
    """1.4826 MAD of the outer 2-pixel frame: metacal's estimate, the true sigma of pure noise, blind to the galaxy."""
    from astrotool_lens.metacal import frame_sigma as numpy_frame_sigma
    from astrotool_lens.model import frame_sigma

    rng = np.random.default_rng(41)
    x = rng.normal(0.0, 2.5, (24, 40, 40)).astype(np.float32)
    got = frame_sigma(torch.from_numpy(x)).numpy()
    assert np.allclose(got, [numpy_frame_sigma(s) for s in x], rtol=1e-5)
    assert abs(got.mean() / 2.5 - 1) < 0.03 and got.std() / 2.5 < 0.12   # 304 frame pixels: ~7 % per stamp
    x[:, 4:-4, 4:-4] += 1e4                                                # a bright source inside the frame
    assert np.array_equal(frame_sigma(torch.from_numpy(x)).numpy(), got)
    assert np.array_equal(frame_sigma(torch.zeros(2, 12, 12)).numpy(), [0.0, 0.0])


def test_noise_normalised_estimator_reads_the_noise_level_not_the_flux_unit():
    """stamp_rms+noise: a stamp in other flux units (galaxy and noise scaled alike) gives the same shear;
    the same galaxy with more noise gives another input (noise sigma / RMS as a channel)."""
    torch.manual_seed(1)
    yy, xx = np.mgrid[:24, :24] - 11.5
    gal = np.exp(-0.5 * (xx**2 / 9.0 + yy**2 / 4.0))
    rng = np.random.default_rng(2)
    noise = rng.normal(0, 1, (4, 24, 24))
    x = np.stack([gal + 0.02 * noise, np.broadcast_to(np.exp(-0.5 * (xx**2 + yy**2) / 2.0), (4, 24, 24))],
                 axis=1).astype(np.float32)
    noisier = x.copy()
    noisier[:, 0] = gal + 0.06 * noise
    for norm, invariant in (("stamp_rms+noise", True), ("none", False)):
        est = make_estimator(in_channels=2, stamp_size=24, width=4, blocks=2, hidden=8, normalisation=norm).eval()
        y = predict_array(est, x, symmetrize=True)
        same = np.allclose(predict_array(est, 37.0 * x, symmetrize=True), y, rtol=1e-4, atol=1e-6)
        assert same is invariant, norm
    est = make_estimator(in_channels=2, stamp_size=24, width=4, blocks=2, hidden=8,
                         normalisation="stamp_rms+noise").eval()
    with torch.no_grad():
        a, b = est.normalise(torch.from_numpy(x)), est.normalise(torch.from_numpy(noisier))
    assert a.shape == (4, 3, 24, 24) and torch.all(a[:, 2] == a[:, 2, :1, :1])     # one value per stamp
    rms = np.sqrt((x[:, 0].astype(np.float64) ** 2).mean(axis=(1, 2)))
    assert np.allclose(a[:, 2, 0, 0].numpy(), 0.02 * np.std(noise, axis=(1, 2)) / rms, rtol=0.2)
    assert (b[:, 2, 0, 0] > 2.5 * a[:, 2, 0, 0]).all()


def test_noise_normalised_model_trains_records_and_exports(easy_dataset, tmp_path):
    """The noise input is part of the checkpoint (model.json) and of the ONNX graph (parity with torch)."""
    from astrotool_lens.config import TrainConfig
    from astrotool_lens.export import export_onnx
    from astrotool_lens.train import train_model

    cfg = TrainConfig(epochs=1, width=4, blocks=2, hidden=8, batch_size=32, patience=0, threads=1,
                      max_samples=128, use_psf=True, normalisation="stamp_rms+noise")
    train_model(easy_dataset, cfg, tmp_path / "noise_cnn", seed=3)
    model, meta = load_estimator(tmp_path / "noise_cnn")
    assert meta["architecture"]["kwargs"]["normalisation"] == "stamp_rms+noise"
    assert meta["normalisation"]["noise"]["frame_pixels"] == model.noise_frame == 2
    assert model.net.features[0].in_channels == 3
    res = export_onnx(tmp_path / "noise_cnn", tmp_path / "m.onnx", parity_samples=16)
    assert res["max_abs_diff"] <= 1e-5
    x = dataset_inputs(easy_dataset, True, np.arange(16))
    from astrotool_lens.model import predict_stamps

    o = predict_stamps(tmp_path / "m.onnx", x).outputs
    assert np.abs(o - predict_array(model, x)).max() <= 1e-5


def test_smooth_activation_has_the_second_derivative_finite_differences_measure():
    """activation="smooth" (SiLU, average pooling): the second difference of the output along a
    direction in pixel space, at steps of 1e-2 and 1e-3, matches autograd's second derivative; with
    ReLU and max pooling the kinks crossed within the step make the second difference differ from
    the derivative at the point, so metacal's D would depend on the step."""
    rng = np.random.default_rng(5)
    x = torch.from_numpy(rng.normal(1.0, 0.5, (3, 2, 16, 16)))
    v = torch.from_numpy(rng.normal(0.0, 0.5, (3, 2, 16, 16)))

    def second(est, h):
        f = lambda t: est(x + t * v)[:, 0]   # noqa: E731
        return ((f(h) + f(-h) - 2 * f(0.0)) / h**2).detach().numpy()

    for activation in ("smooth", "relu"):
        torch.manual_seed(0)
        est = make_estimator(in_channels=2, stamp_size=16, width=4, blocks=2, hidden=8, activation=activation)
        est = est.double().eval()
        est.calibrated = False
        exact = np.array([float(torch.autograd.functional.hessian(lambda t: est(x[i:i + 1] + t * v[i:i + 1])[0, 0],
                                                                    torch.zeros((), dtype=torch.float64)))
                          for i in range(3)])
        coarse, fine = second(est, 1e-2), second(est, 1e-3)
        if activation == "smooth":
            assert np.abs(exact).min() > 0
            assert np.allclose(coarse, exact, rtol=2e-2) and np.allclose(fine, exact, rtol=2e-3), (coarse, fine, exact)
        else:
            assert not np.allclose(coarse, exact, rtol=0.2), (coarse, fine, exact)
    old = make_estimator(in_channels=1, stamp_size=16, width=4, blocks=2, hidden=8)   # a checkpoint's kwargs from before
    assert isinstance(old.net.features[2], torch.nn.ReLU) and isinstance(old.net.features[6], torch.nn.MaxPool2d)
    with pytest.raises(ValueError, match="activation"):
        make_estimator(in_channels=1, stamp_size=16, width=4, blocks=2, hidden=8, activation="tanh")
