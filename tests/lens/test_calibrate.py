"""`astro lens calibrate`: m and c fitted on constant-shear fields, stored in the checkpoint, divided out."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from .conftest import copy_shear_set as _copy, easy_config, run_cli, serial_map


def run(capsys, ws, *args):
    return run_cli(capsys, "-w", ws, *args)


@pytest.fixture(scope="module")
def easy_fields(easy_dataset):
    """6 constant-shear fields of 40 easy stamps next to the easy dataset."""
    from astrotool_lens.data import ShearDataset
    from astrotool_lens.generate import generate_dataset

    cfg = easy_config("easyfields", n=240, shard_size=240,
                      shear={"g1": [-0.1, 0.1], "g2": [-0.1, 0.1], "field_size": 40})
    out = easy_dataset.root.parent / "easyfields"
    generate_dataset(cfg, out, 23, serial_map)
    return ShearDataset(out)


@pytest.fixture
def model_copy(trained_model, tmp_path):
    mdir = tmp_path / "easy_cnn"
    shutil.copytree(trained_model[0], mdir)
    return mdir


def test_inference_copy_matches_the_model(trained_model, easy_dataset):
    import torch

    from astrotool_lens.model import load_estimator, predict_array
    from astrotool_lens.train import dataset_inputs

    model, _ = load_estimator(trained_model[0])
    x = dataset_inputs(easy_dataset, False, np.arange(64))
    model.symmetrize = True
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    assert np.max(np.abs(predict_array(model, x, batch_size=16) - ref)) < 1e-5


def test_calibration_is_fitted_stored_and_divided_out(model_copy, easy_fields):
    from astrotool_lens.calibrate import calibrate_model
    from astrotool_lens.config import CalibrateConfig, EvaluateConfig
    from astrotool_lens.evaluate import evaluate, fit_bias
    from astrotool_lens.model import load_estimator, predict_array
    from astrotool_lens.train import dataset_inputs

    x = dataset_inputs(easy_fields, False)
    truth, field = easy_fields.truth, np.asarray(easy_fields.truth["field"])
    model, _ = load_estimator(model_copy)
    assert not model.has_calibration
    raw = predict_array(model, x)
    expect = [fit_bias(np.asarray(truth[f"g{i}"]), raw[:, i - 1], field) for i in (1, 2)]

    res = calibrate_model(easy_fields, model_copy, CalibrateConfig(max_abs_m=0.5))
    assert res["n_fields"] == 6 and res["previous"] is None
    for i in (1, 2):
        assert res[f"m{i}"] == pytest.approx(expect[i - 1]["m"], abs=1e-6)
        assert res[f"c{i}"] == pytest.approx(expect[i - 1]["c"], abs=1e-7)
    assert max(abs(res["m1"]), abs(res["m2"])) > 1e-4  # a 300-step CNN is measurably biased

    model, meta = load_estimator(model_copy)  # reloaded: stored in the weights and in model.json
    assert model.has_calibration and meta["calibration"]["dataset"] == "easyfields"
    cal = predict_array(model, x)
    m = np.array([res["m1"], res["m2"]])
    c = np.array([res["c1"], res["c2"]])
    assert np.allclose(cal, (raw - c) / (1 + m), atol=1e-6)
    assert np.allclose(predict_array(model, x, calibrated=False), raw, atol=1e-6)

    # on the fields it was fitted to, the calibrated estimator has m = c = 0 by construction
    rep = evaluate(easy_fields, model_copy, EvaluateConfig(split="all", classical=[], plots=False),
                   model_copy.parent / "pred", model_copy.parent / "rep", mapper=serial_map)
    cnn, raw_r = rep["estimators"]["CNN"], rep["estimators"]["CNN raw"]
    assert abs(cnn["m1"]) < 1e-5 and abs(cnn["m2"]) < 1e-5 and abs(cnn["c1"]) < 1e-6 and abs(cnn["c2"]) < 1e-6
    assert raw_r["m1"] == pytest.approx(res["m1"], abs=1e-6)
    assert rep["calibration"]["n_fields"] == 6

    again = calibrate_model(easy_fields, model_copy, CalibrateConfig(max_abs_m=0.5))  # refits the raw output
    assert again["m1"] == pytest.approx(res["m1"], abs=1e-6) and again["previous"]["m1"] == res["m1"]


def test_onnx_export_carries_the_calibration(model_copy, easy_fields, tmp_path):
    import onnxruntime as ort

    from astrotool_lens.calibrate import calibrate_model
    from astrotool_lens.config import CalibrateConfig
    from astrotool_lens.export import export_onnx, parity_inputs
    from astrotool_lens.model import load_estimator, predict_array

    calibrate_model(easy_fields, model_copy, CalibrateConfig(max_abs_m=0.5))
    res = export_onnx(model_copy, tmp_path / "cal.onnx", parity_samples=16)
    raw = export_onnx(model_copy, tmp_path / "raw.onnx", parity_samples=16, calibrated=False)
    assert res["calibrated"] and not raw["calibrated"] and res["max_abs_diff"] <= 1e-5
    model, meta = load_estimator(model_copy)
    x = parity_inputs(meta, 16)
    got = ort.InferenceSession(str(tmp_path / "cal.onnx"), providers=["CPUExecutionProvider"]).run(None, {"stamps": x})[0]
    assert np.allclose(got, predict_array(model, x), atol=1e-5)
    assert not np.allclose(got, predict_array(model, x, calibrated=False), atol=1e-5)


def test_checkpoint_without_calibration_buffers_loads_uncalibrated(model_copy):
    from safetensors.torch import load_file, save_file

    from astrotool_lens.model import load_estimator

    weights = model_copy / "model.safetensors"
    tensors = {k: v for k, v in load_file(str(weights)).items() if not k.startswith("calib_")}
    save_file(tensors, str(weights))
    meta = json.loads((model_copy / "model.json").read_text())
    meta.pop("weights_sha256", None)
    (model_copy / "model.json").write_text(json.dumps(meta))
    model, _ = load_estimator(model_copy)
    assert not model.has_calibration


def test_calibration_refuses_bad_inputs(model_copy, easy_dataset, easy_fields):
    from astrotool.errors import InputError
    from astrotool_lens.calibrate import calibrate_model
    from astrotool_lens.config import CalibrateConfig

    before = (model_copy / "model.json").read_bytes()
    with pytest.raises(InputError, match="constant-shear fields") as exc:
        calibrate_model(easy_dataset, model_copy, CalibrateConfig())  # one shear per stamp
    assert "easy" in str(exc.value)
    with pytest.raises(InputError, match="exceeds lens.calibrate.max_abs_m"):
        calibrate_model(easy_fields, model_copy, CalibrateConfig(max_abs_m=1e-9))
    assert (model_copy / "model.json").read_bytes() == before  # nothing written


def test_calibrate_command(model_copy, easy_fields, tmp_path, capsys):
    from astrotool.cli import main

    code = main(["-w", str(tmp_path / "ws"), "-q", "--json", "lens", "calibrate", "--model", str(model_copy),
                 "--dataset", str(easy_fields.root), "--set", "lens.calibrate.max_abs_m=0.5"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert json.loads(out.out)["n_fields"] == 6
    code = main(["-w", str(tmp_path / "ws"), "-q", "lens", "calibrate", "--model", str(model_copy)])
    assert code == 2 and "--dataset" in capsys.readouterr().err
    # it runs where --device says, as predict does (there was no --device: ml.accelerator=cuda ran on the CPU)
    code = main(["-w", str(tmp_path / "ws"), "-q", "--json", "lens", "calibrate", "--model", str(model_copy),
                 "--dataset", str(easy_fields.root), "--set", "lens.calibrate.max_abs_m=0.5", "--device", "cpu"])
    assert code == 0, capsys.readouterr().err
    import torch

    if not torch.cuda.is_available():
        for how in (["--device", "cuda"], ["--set", "ml.accelerator=cuda"]):
            for cmd in (["calibrate", "--dataset", str(easy_fields.root)], ["evaluate"]):
                code = main(["-w", str(tmp_path / "ws"), "-q", "lens", *cmd, "--model", str(model_copy), *how])
                assert code == 2 and "CUDA was asked for" in capsys.readouterr().err, (how, cmd)


def test_a_model_cut_short_is_used_with_a_warning_and_export_takes_the_old_onnx_flag(model_copy, tmp_path, capsys):
    """lens used a model whose training was interrupted without a word; `export --onnx` of older scripts
    failed once the flag was dropped."""
    from astrotool.cli import main

    meta = json.loads((model_copy / "model.json").read_text())
    meta["training_progress"] = {**meta["training_progress"], "epochs_done": 3, "epochs": 15, "finished": False}
    (model_copy / "model.json").write_text(json.dumps(meta))
    code = main(["-w", str(tmp_path / "ws"), "--json", "lens", "export", "--onnx", "--model", str(model_copy)])
    cap = capsys.readouterr()
    assert code == 0, cap.err
    assert "training unfinished (trained 3 of 15 epochs)" in cap.err and \
        f"astro -w {tmp_path / 'ws'} lens train" in cap.err
    assert json.loads(cap.out)["path"] == str(model_copy / "model.onnx")


@pytest.mark.workspace("checks")
def test_calibrate_refuses_a_precise_but_tiny_response(ws, capsys):
    """1 + m = 8.7e-5 +- 1.2e-6 passed min_response_sigmas (72 sigma); the calibration then multiplied by 1e4."""
    from astrotool.errors import InputError
    from astrotool_lens.calibrate import low_response
    from astrotool_lens.export import parity_tolerance

    fit = {"m1": -0.999913, "m1_err": 1.2e-6, "m2": 0.01, "m2_err": 0.01}
    assert low_response(fit) == "1 + m1 = 8.7e-05" and low_response(fit, 0.0) is None
    assert low_response({**fit, "m1": -0.5}) is None
    with pytest.raises(InputError, match="lens.calibrate.min_response = 0.1"):
        parity_tolerance(1e-5, fit)
    assert parity_tolerance(1e-5, {**fit, "m1": -0.8}) == pytest.approx(5e-5)
    assert parity_tolerance(1e-5, fit, min_response=0) == pytest.approx(1e-5 / 8.7e-5)   # 0: no check

    dst = ws / "lens" / "models" / "mtiny"
    shutil.copytree(ws / "lens" / "models" / "m", dst)
    before = (dst / "model.json").read_text()
    lifted = ["--set", "lens.calibrate.max_abs_m=1e6", "--set", "lens.calibrate.min_response_sigmas=0"]
    code, out, err = run(capsys, ws, *lifted, "lens", "calibrate", "--model", "mtiny", "--dataset", "f3",
                         "--no-symmetrize")
    assert code == 2 and out == "" and "below lens.calibrate.min_response = 0.1" in err and "nothing written" in err
    assert (dst / "model.json").read_text() == before
    # stored all the same (the floor lifted, as before it existed): export refuses it, naming the model
    code, _, err = run(capsys, ws, *lifted, "--set", "lens.calibrate.min_response=0", "lens", "calibrate", "--model",
                       "mtiny", "--dataset", "f3", "--no-symmetrize")
    assert code == 0, err
    code, _, err = run(capsys, ws, "lens", "export", "--model", "mtiny", "--no-symmetrize")
    assert code == 2 and "mtiny/model.json" in err and "lens.calibrate.min_response = 0.1" in err, err
    assert not (dst / "model.onnx").exists()
    # and so do the commands that would apply it (predict applied it silently; validate called it "transfers")
    for args in (["predict", "f3"], ["validate", "f3"], ["evaluate", "--dataset", "f3"]):
        code, out, err = run(capsys, ws, "lens", *args, "--model", "mtiny", "--no-symmetrize")
        assert code == 2 and out == "" and "mtiny/model.json: its calibration's 1 + m" in err, (args, err)
        assert "below lens.calibrate.min_response = 0.1" in err, err
        advice = "give --calibration FILE" if args[0] == "validate" else "use --raw"   # validate has no --raw
        assert f"calibrate again, or {advice}" in " ".join(err.split()), err
    code, _, err = run(capsys, ws, "lens", "predict", "f3", "--model", "mtiny", "--no-symmetrize", "--raw")
    assert code == 0, err


@pytest.mark.workspace("checks")
def test_calibrating_in_the_other_mode_warns_that_it_replaces_the_calibration(ws, capsys):
    """It replaced the --no-symmetrize calibration silently (only the result's `previous` showed it)."""
    shutil.copytree(ws / "lens" / "models" / "m", ws / "lens" / "models" / "mmode")
    lifted = ["--set", "lens.calibrate.max_abs_m=1e6", "--set", "lens.calibrate.min_response_sigmas=0",
              "--set", "lens.calibrate.min_response=0"]   # one epoch: it hardly responds to shear
    calibrate = [*lifted, "lens", "calibrate", "--model", "mmode", "--dataset", "f3"]
    code, _, err = run(capsys, ws, *calibrate, "--no-symmetrize")
    assert code == 0 and "replaces" not in err, err
    code, _, err = run(capsys, ws, *calibrate, "--no-symmetrize")   # the same mode again: nothing to say
    assert code == 0 and "replaces" not in err, err
    code, out, err = run(capsys, ws, *calibrate, "--symmetrize")
    assert code == 0, err
    assert ("WARNING mmode: this calibration (--symmetrize) replaces the one fitted with --no-symmetrize on f3: "
            "--no-symmetrize runs now give raw estimates") in err, err
    assert json.loads(out)["previous"]["symmetrize"] is False


@pytest.mark.workspace("calibration")
def test_calibrate_refuses_a_model_that_hardly_responds_to_shear(ws, capsys):
    """With max_abs_m raised, calibrate stored m = -0.99995, and predict then divided by 1 + m = 5e-5."""
    from astrotool_lens.calibrate import flat_response

    fit = {"m1": -0.99995, "m1_err": 0.09, "m2": 0.02, "m2_err": 0.01}
    assert flat_response(fit) == "1 + m1 = 5e-05 +- 0.09" and flat_response(fit, 0.0) is None
    assert flat_response({**fit, "m1": -0.5}) is None and flat_response({**fit, "m2": -1.5}).endswith("+- 0.01")
    dst = ws / "lens" / "models" / "mflat"
    shutil.copytree(ws / "lens" / "models" / "m", dst)
    before = (dst / "model.json").read_text()
    code, _, err = run(capsys, ws, "--set", "lens.calibrate.max_abs_m=1e6", "lens", "calibrate", "--model", "mflat",
                       "--dataset", "f3", "--no-symmetrize")
    assert code == 2 and "not above lens.calibrate.min_response_sigmas = 3 errors: model 'mflat' hardly responds" \
        in err and "nothing written" in err, err
    assert (dst / "model.json").read_text() == before


@pytest.mark.workspace("folders")
def test_calibrate_records_the_folder_and_counts_only_the_stamps_used(ws, capsys):
    _copy(ws, "f3", "f3blank", lambda gal, field: gal.__setitem__(3, 0.0))
    mdir = ws / "lens" / "models" / "mcb"
    if not mdir.exists():
        shutil.copytree(ws / "lens" / "models" / "m", mdir)
    code, out, err = run(capsys, ws, "--set", "lens.calibrate.max_abs_m=1e6", "--set",
                         "lens.calibrate.min_response_sigmas=0", "--set",
                         "lens.calibrate.min_response=0", "lens", "calibrate", "--model", "mcb",
                         "--dataset", "f3blank")
    assert code == 0, err
    res = json.loads(out)
    assert res["n"] == 23 and res["n_flagged"] == 1 and res["dataset_folder"] == "f3blank"
    cal = json.loads((mdir / "model.json").read_text())["calibration"]
    assert cal["dataset_folder"] == "f3blank" and cal["n"] == 23
    # a whole field blank: 2 fields left with estimates, too few (the fit ran through 2 points, n_fields 3)
    _copy(ws, "f3", "f3field", lambda gal, field: gal.__setitem__(field == field[0], 0.0))
    code, _, err = run(capsys, ws, "--set", "lens.calibrate.max_abs_m=1e6", "--set",
                       "lens.calibrate.min_response_sigmas=0", "--set",
                       "lens.calibrate.min_response=0", "lens", "calibrate", "--model", "mcb",
                       "--dataset", "f3field")
    assert code == 2 and "2 of 3 constant-shear fields" in err, err
