"""`astro lens predict`: NaN and blank stamps flagged (each stamp checked once), a table per mode and engine,
a calibration applied only in the symmetrize mode it was fitted in, an unknown name answered with the datasets."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from .conftest import copy_shear_set as _copy, run_cli


def run(capsys, ws, *args):
    return run_cli(capsys, "-w", ws, *args)


def test_flagged_stamps_are_counted_in_the_plural():
    from astrotool_lens.predict import flagged_message

    error = ["blank stamp"] * 4 + ["NaN or infinite pixels", ""]
    assert flagged_message(error, counts_only=True) == "1 NaN or infinite pixels, 4 blank stamps"
    assert flagged_message(["blank stamp", ""]).startswith("1 of 2 stamps not predicted (NaN, flag 1): 1 blank stamp ")


@pytest.mark.workspace("checks")
def test_predict_with_onnxruntime_keeps_the_torch_models_table(ws, capsys):
    """The onnxruntime run replaced <name>_<model>.parquet without notice; it gets _onnx, as modes get theirs."""
    from astrotool.io.tables import parquet_metadata

    code, out, err = run(capsys, ws, "lens", "predict", "f3", "--model", "m")
    assert code == 0, err
    torch_path = json.loads(out)["output"]
    code, out, err = run(capsys, ws, "lens", "export", "--model", "m")
    assert code == 0, err
    code, out, err = run(capsys, ws, "lens", "predict", "f3", "--model", "m", "--engine", "onnxruntime")
    assert code == 0, err
    onnx_path = json.loads(out)["output"]
    assert torch_path.endswith("/f3_m.parquet") and onnx_path.endswith("/f3_m_onnx.parquet")
    assert parquet_metadata(torch_path)["engine"] == "torch" and parquet_metadata(onnx_path)["engine"] == "onnxruntime"


@pytest.mark.workspace("calibration")
def test_a_calibration_is_not_applied_in_the_other_symmetrize_mode(ws, cal_nosym, capsys):
    code, out, err = run(capsys, ws, "lens", "predict", "f3", "--model", "mc")
    assert code == 0, err
    assert "fitted with --no-symmetrize" in err and "raw" in err
    from astrotool.io.tables import parquet_metadata, read_parquet

    path = json.loads(out)["output"]
    assert parquet_metadata(path)["calibration"] is None
    raw = read_parquet(path).column("g1").to_numpy()
    code, out, err = run(capsys, ws, "lens", "predict", "f3", "--model", "mc", "--raw", "--name", "f3raw")
    assert code == 0, err
    assert np.allclose(read_parquet(json.loads(out)["output"]).column("g1").to_numpy(), raw, atol=1e-6)

    code, _, err = run(capsys, ws, "lens", "predict", "f3", "--model", "mc", "--calibrated")
    assert code == 2 and "--no-symmetrize" in err and "lens calibrate" in err

    code, out, err = run(capsys, ws, "lens", "evaluate", "--model", "mc", "--dataset", "f3", "--split", "all",
                         "--no-plots", "--classical", "")
    assert code == 0, err
    assert json.loads(out)["calibration"] is None and "CNN raw" not in json.loads(out)["estimators"]

    # in its own mode it is applied (the floor on 1 + m lifted, as it was to calibrate this one-epoch model)
    code, out, err = run(capsys, ws, "--set", "lens.calibrate.min_response=0", "lens", "predict", "f3", "--model", "mc",
                         "--no-symmetrize", "--name", "f3ns")
    assert code == 0, err
    assert parquet_metadata(json.loads(out)["output"])["calibration"]["symmetrize"] is False


def _cube(ws, tmp_path, n=4):
    """``n`` stamps of g as a FITS cube: #1 with a NaN pixel, #2 blank (all zero), the rest as drawn."""
    from astropy.io import fits

    from astrotool_lens.data import ShearDataset

    gal, psf = ShearDataset(ws / "lens" / "shear" / "g").load_stamps(np.arange(n))
    gal = gal.copy()
    gal[1, 3, 4] = np.nan
    gal[2] = 0.0
    path = tmp_path / "cube_bad.fits"
    fits.PrimaryHDU(gal).writeto(path)
    fits.PrimaryHDU(psf[0]).writeto(tmp_path / "psf.fits")
    return path


@pytest.mark.workspace("calibration")
def test_predict_flags_nan_and_blank_stamps_instead_of_refusing_the_input(ws, tmp_path, capsys):
    from astrotool.io.tables import read_parquet

    code, out, err = run(capsys, ws, "lens", "predict", _cube(ws, tmp_path), "--model", "m", "--psf",
                         tmp_path / "psf.fits")
    assert code == 0, err
    from astrotool.io.tables import parquet_metadata

    assert parquet_metadata(json.loads(out)["output"])["psf"] == str(tmp_path / "psf.fits")   # which PSF it used
    t = read_parquet(json.loads(out)["output"]).to_pydict()
    assert t["flag"] == [0, 1, 1, 0]
    assert t["error"] == ["", "NaN or infinite pixels", "blank stamp", ""]
    g1 = np.array(t["g1"])
    assert np.isnan(g1[1:3]).all() and np.isfinite(g1[[0, 3]]).all()
    assert "2 of 4 stamps not predicted" in err


@pytest.mark.workspace("calibration")
def test_predict_and_evaluate_flag_a_nan_pixel_in_a_dataset(ws, capsys):
    import h5py

    from astrotool.io.tables import read_parquet

    src, dst = ws / "lens" / "shear" / "f3", ws / "lens" / "shear" / "f3nan"
    if not dst.exists():
        shutil.copytree(src, dst)
        shard = sorted(dst.glob("*.h5"))[0]
        with h5py.File(shard, "r+") as h:
            h["gal"][5, 2, 2] = np.nan
    code, out, err = run(capsys, ws, "lens", "predict", "f3nan", "--model", "m", "--name", "f3nanp")
    assert code == 0, err
    t = read_parquet(json.loads(out)["output"]).to_pydict()
    assert t["flag"][5] == 1 and sum(t["flag"]) == 1 and np.isnan(t["g1"][5])
    code, out, err = run(capsys, ws, "lens", "evaluate", "--model", "m", "--dataset", "f3nan", "--split", "all",
                         "--no-plots", "--classical", "")
    assert code == 0, err
    rep = json.loads(out)
    assert rep["estimators"]["CNN"]["n_failed"] == 1
    assert read_parquet(rep["predictions"]).column("flag").to_pylist()[5] == 1


@pytest.mark.workspace("calibration")
def test_a_blank_stamp_gives_nan_not_a_finite_shear(ws):
    from astrotool_lens.model import load_estimator, predict_array

    model, meta = load_estimator(ws / "lens" / "models" / "m")
    c = int(meta["architecture"]["kwargs"]["in_channels"])
    x = np.zeros((2, c, 24, 24), np.float32)
    x[1] = np.random.default_rng(1).normal(0, 1, (c, 24, 24))
    g = predict_array(model, x)
    assert np.isnan(g[0]).all() and np.isfinite(g[1]).all()


@pytest.mark.workspace("calibration")
def test_predict_modes_write_tables_of_their_own(ws, capsys):
    names = []
    for extra in ((), ("--raw",), ("--no-symmetrize",)):
        code, out, err = run(capsys, ws, "lens", "predict", "g", "--model", "m", *extra)
        assert code == 0, err
        names.append(json.loads(out)["output"].rsplit("/", 1)[1])
    assert names == ["g_m.parquet", "g_m_raw.parquet", "g_m_nosym.parquet"]


@pytest.mark.workspace("calibration")
def test_predict_on_an_unknown_name_lists_the_datasets(ws, capsys):
    code, _, err = run(capsys, ws, "lens", "predict", "nope", "--model", "m")
    assert code == 2 and "nope" in err and "datasets in" in err and "f3" in err and " g" in err


@pytest.mark.workspace("folders")
@pytest.mark.parametrize("how, reason", [("nan", "24 NaN or infinite pixels"), ("blank", "24 blank stamps")])
def test_predict_and_evaluate_exit_2_when_every_stamp_is_flagged(ws, capsys, how, reason):
    def edit(gal, field):
        gal[...] = np.nan if how == "nan" else 0.0

    name = f"f3all{how}"
    _copy(ws, "f3", name, edit)
    code, out, err = run(capsys, ws, "lens", "predict", name, "--model", "m")
    assert code == 2, err
    assert name in err and reason in err and "nan stamps/s" not in err
    assert json.loads(out)["n_flagged"] == 24
    code, _, err = run(capsys, ws, "lens", "evaluate", "--model", "m", "--dataset", name, "--split", "all",
                       "--classical", "")
    assert code == 2, err
    assert name in err and reason in err and "bin" not in err


@pytest.mark.workspace("folders")
def test_predict_and_evaluate_count_some_flagged_stamps(ws, capsys):
    _copy(ws, "f3", "f3one", lambda gal, field: gal.__setitem__((5, 2, 2), np.nan))
    code, out, err = run(capsys, ws, "lens", "predict", "f3one", "--model", "m")
    assert code == 0, err
    assert json.loads(out)["n_flagged"] == 1 and "1 of 24 stamps not predicted" in err
    code, out, err = run(capsys, ws, "lens", "evaluate", "--model", "m", "--dataset", "f3one", "--split", "all",
                         "--no-plots", "--classical", "")
    assert code == 0, err
    assert "1 of 24 stamps not predicted" in err and "NaN or infinite pixels" in err


@pytest.mark.workspace("folders")
def test_stamps_are_checked_once_per_prediction(ws, monkeypatch):
    import astrotool_lens.model as model_mod
    from astrotool_lens.model import load_estimator
    from astrotool_lens.predict import predict_table, read_inputs

    calls = []
    orig = model_mod.stamp_problems
    monkeypatch.setattr(model_mod, "stamp_problems", lambda x: calls.append(len(x)) or orig(x))
    est, meta = load_estimator(ws / "lens" / "models" / "m")
    inp = read_inputs(str(_copy(ws, "f3", "f3one", lambda gal, field: gal.__setitem__((5, 2, 2), np.nan))),
                      True, None)
    cols, run_ = predict_table(est, meta, inp, 8, False, False)
    assert calls == [24] and cols["flag"].sum() == 1 and np.isnan(cols["g1"][5])
    assert np.isfinite(np.delete(cols["g1"], 5)).all() and run_.n == 23
