"""Bad input -> astrotool.errors.InputError naming the file."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
from astropy.io import fits

from astrotool.errors import InputError
from astrotool_lens.model import load_estimator
from astrotool_lens.predict import predict_table, read_inputs

from .conftest import run_cli, run_json as _run


def run(capsys, ws, *args):
    return run_cli(capsys, "-q", "-w", ws, *args)


def _fits(path, arr):
    fits.PrimaryHDU(np.asarray(arr, dtype=np.float32)).writeto(path)
    return path


def test_wrong_size_image(trained_model, tmp_path):
    model, meta = load_estimator(trained_model[0])
    p = _fits(tmp_path / "big.fits", np.ones((40, 40)))
    with pytest.raises(InputError, match="40x40 pixels; the model expects 24x24") as e:
        predict_table(model, meta, read_inputs(p, need_psf=False))
    assert str(p) in str(e.value)


def test_nan_pixels(trained_model, tmp_path):
    """A stamp with a NaN pixel gets NaN shear and a flag; the others are predicted."""
    model, meta = load_estimator(trained_model[0])
    arr = np.ones((2, 24, 24))
    arr[1, 3, 3] = np.nan
    p = _fits(tmp_path / "cube.fits", arr)
    cols, _ = predict_table(model, meta, read_inputs(p, need_psf=False))
    assert cols["flag"].tolist() == [0, 1] and cols["error"][1] == "NaN or infinite pixels"
    assert np.isfinite(cols["g1"][0]) and np.isnan(cols["g1"][1])


def test_nan_pixels_refused_for_calibration(trained_model):
    from astrotool_lens.model import check_stamps

    _, meta = load_estimator(trained_model[0])
    x = np.ones((2, 1, 24, 24), np.float32)
    x[1, 0, 3, 3] = np.nan
    with pytest.raises(InputError, match="training and calibration need finite pixels"):
        check_stamps(x, meta, "cube.fits")


def test_data_json_pointing_to_missing_files(tmp_path):
    _fits(tmp_path / "gal_0.fits", np.ones((24, 24)))
    (tmp_path / "data.json").write_text(json.dumps([
        {"galaxy": "gal_0.tif", "psf": "psf_0.tif", "g1": 0.1, "g2": 0.0},
        {"galaxy": "gal_1.tif", "psf": "psf_1.tif", "g1": 0.0, "g2": 0.1},
    ]))
    with pytest.raises(InputError, match="missing") as e:
        read_inputs(tmp_path / "data.json", need_psf=False)
    assert "gal_1.fits" in str(e.value)                  # the .tif's FITS sibling is named
    with pytest.raises(InputError) as e:
        read_inputs(tmp_path / "data.json", need_psf=True)
    assert "psf_0.fits" in str(e.value)


def test_data_json_with_a_shear_that_is_not_a_number_names_the_entry(tmp_path):
    """A null or text g1 gave a bare TypeError/ValueError (exit 1) naming no file."""
    for k in range(2):
        _fits(tmp_path / f"gal_{k}.fits", np.ones((24, 24)))
    for bad, shown in ((None, "null"), ("abc", '"abc"'), (True, "true")):
        (tmp_path / "data.json").write_text(json.dumps([{"galaxy": "gal_0.fits", "g1": 0.1, "g2": 0.0},
                                                        {"galaxy": "gal_1.fits", "g1": bad, "g2": 0.1}]))
        with pytest.raises(InputError, match=rf"data\.json: entry 1: g1 is not a finite number \({shown}\)$"):
            read_inputs(tmp_path / "data.json", need_psf=False)
    (tmp_path / "data.json").write_text(json.dumps([{"galaxy": "gal_0.fits", "g1": "0.1", "g2": 0},
                                                    {"galaxy": "gal_1.fits", "g1": 0.0, "g2": -0.05}]))
    np.testing.assert_array_equal(read_inputs(tmp_path / "data.json", need_psf=False).truth["g1"], [0.1, 0.0])


def test_a_folder_pairs_galaxy_and_psf_stamps_whatever_their_fits_suffix(tmp_path):
    """gal_10.fits.gz looked for psf_10.fits.gz only: psf_10.fits beside it was "no matching PSF file"."""
    gal = np.ones((24, 24))
    _fits(tmp_path / "gal_10.fits.gz", gal)
    _fits(tmp_path / "psf_10.fits", 2 * gal)
    _fits(tmp_path / "gal_2.FITS", 3 * gal)
    _fits(tmp_path / "psf_2.fit.gz", 4 * gal)
    inp = read_inputs(tmp_path, need_psf=True)
    assert inp.source == ["gal_2.FITS", "gal_10.fits.gz"]
    assert inp.psf[:, 0, 0].tolist() == [4.0, 2.0]
    _fits(tmp_path / "psf_2.fits", 4 * gal)
    with pytest.raises(InputError, match=r"psf_2\.f.*: two PSF files for one stamp: psf_2\.f"):
        read_inputs(tmp_path, need_psf=True)
    assert read_inputs(tmp_path, need_psf=False).psf is None   # no PSF read: none refused
    (tmp_path / "psf_2.fits").unlink()
    (tmp_path / "psf_10.fits").unlink()
    with pytest.raises(InputError, match=r"gal_10\.fits\.gz: no matching PSF file psf_10\.fits \(or \.fits\.gz"):
        read_inputs(tmp_path, need_psf=True)


def test_corrupt_and_non_fits(tmp_path):
    bad = tmp_path / "x.fits"
    bad.write_bytes(b"not a fits file at all" * 100)
    with pytest.raises(InputError) as e:
        read_inputs(bad, need_psf=False)
    assert "x.fits" in str(e.value)
    with pytest.raises(InputError, match="no FITS files"):
        read_inputs(tmp_path / "empty_dir" if (tmp_path / "empty_dir").mkdir() is None else None, False)


def test_checkpoint_of_another_model(trained_model, tmp_path):
    from astrotool.ml.checkpoint import save_checkpoint

    other = tmp_path / "other"
    save_checkpoint(other, {"w": __import__("torch").zeros(3)},
                    {"architecture": {"name": "plato_unet1d", "kwargs": {}}})
    with pytest.raises(InputError, match="checkpoint of another model") as e:
        load_estimator(other)
    assert "model.json" in str(e.value)
    # weights of one checkpoint next to the JSON of another
    mixed = tmp_path / "mixed"
    shutil.copytree(trained_model[0], mixed, ignore=shutil.ignore_patterns("last", "*.onnx"))
    shutil.copy(other / "model.safetensors", mixed / "model.safetensors")
    with pytest.raises(InputError, match="SHA-256") as e:
        load_estimator(mixed)
    assert "model.safetensors" in str(e.value)
    with pytest.raises(InputError, match="no checkpoint"):
        load_estimator(tmp_path / "nowhere")


def test_dataset_with_nan_stamp(tmp_path):
    import h5py

    from astrotool_lens.data import ShearDataset
    from astrotool_lens.generate import generate_dataset

    from .conftest import easy_config, serial_map

    out = tmp_path / "nan"
    generate_dataset(easy_config("nan", n=20, shard_size=10), out, 1, serial_map)
    with h5py.File(out / "shard00001_stamps.h5", "r+") as h5:
        h5["gal"][3, 0, 0] = np.nan
    with pytest.raises(InputError, match="stamp 13") as e:
        ShearDataset(out).load_stamps()
    assert "shard00001_stamps.h5" in str(e.value)


def test_folder_of_fits_pairs_psf_files(trained_model, tmp_path):
    """gal_N.fits are galaxies, psf_N.fits their PSFs; a missing PSF is named."""
    rng = np.random.default_rng(0)
    for i in range(3):
        _fits(tmp_path / f"gal_{i}.fits", rng.normal(1, 0.1, (24, 24)))
        _fits(tmp_path / f"psf_{i}.fits", np.ones((24, 24)))
    inp = read_inputs(tmp_path, need_psf=True)
    assert inp.gal.shape == (3, 24, 24) and inp.psf.shape == (3, 24, 24)
    assert inp.source == ["gal_0.fits", "gal_1.fits", "gal_2.fits"]
    model, meta = load_estimator(trained_model[0])
    cols, _ = predict_table(model, meta, read_inputs(tmp_path, need_psf=False))
    assert len(cols["g1"]) == 3 and np.isfinite(cols["g1"]).all()
    (tmp_path / "psf_2.fits").unlink()
    with pytest.raises(InputError, match="psf_2.fits") as e:
        read_inputs(tmp_path, need_psf=True)
    assert "gal_2.fits" in str(e.value)


def test_device_and_schedule():
    from astrotool.errors import AstroError
    from astrotool.ml.training import cosine_schedule, select_device

    import torch

    if not torch.cuda.is_available():
        with pytest.raises(AstroError, match="CUDA"):
            select_device("cuda")
    assert select_device("cpu").type == "cpu"
    f = cosine_schedule(100, warmup_steps=10, floor=0.0)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0) and f(55) == pytest.approx(0.5) and f(100) == pytest.approx(0.0)


def test_missing_dataset_hint_names_the_workspace(tmp_path):
    """`run astro lens generate first` lacked the `-w` of the command that printed it."""
    from tests.conftest import run_astro_here

    r = run_astro_here("-w", tmp_path, "lens", "train")
    assert r.returncode == 2 and f"run `astro -w {tmp_path} lens generate` first" in " ".join(r.stderr.split())


@pytest.fixture
def no_g1(ws):
    """f3 with column g1 dropped from its truth table (the dataset is otherwise complete), once per copy of the
    workspace."""
    path = ws / "lens" / "shear" / "f3" / "f3_truth.parquet"
    table = pq.read_table(path)
    if "g1" in table.column_names:
        pq.write_table(table.drop(["g1"]), path)
    return path


@pytest.mark.workspace("inputs")
@pytest.mark.parametrize("args", [
    ("lens", "predict", "f3", "--model", "m"),
    ("lens", "calibrate", "--model", "m", "--dataset", "f3"),
    ("lens", "validate", "f3", "--method", "REGAUSS"),
    ("lens", "validate", "f3", "--model", "m"),
    ("lens", "evaluate", "--model", "m", "--dataset", "f3", "--no-plots", "--classical", ""),
    ("lens", "train", "--dataset", "f3", "--model", "m_f3", "--epochs", "1", "--width", "4", "--device", "cpu"),
])
def test_truth_without_g1_is_named(ws, no_g1, capsys, args):
    code, _, err = run(capsys, ws, *args)
    assert code == 2, err
    assert str(no_g1) in err and "missing column(s) g1" in err and "KeyError" not in err


@pytest.mark.workspace("inputs")
def test_measure_needs_a_method(ws, capsys):
    code, _, err = run(capsys, ws, "lens", "measure", "--dataset", "g", "--methods", "")
    assert code == 2 and "--methods" in err and "give at least one method" in err


@pytest.mark.workspace("inputs")
def test_calibration_with_m_minus_one(ws, tmp_path, capsys):
    cal = tmp_path / "cal.json"
    cal.write_text(json.dumps({"m1": 0.0, "m2": -1, "c1": 0.0, "c2": 0.0}))
    code, _, err = run(capsys, ws, "lens", "validate", "g", "--model", "m", "--calibration", cal)
    assert code == 2 and str(cal) in err and "m2 = -1" in err


@pytest.mark.workspace("inputs")
def test_method_any_case(ws, capsys):
    """--method regauss is REGAUSS, as --methods regauss is (it was refused, exit 2)."""
    reports = []
    # constant-shear fields (f3 loses g1 here)
    assert run(capsys, ws, "lens", "generate", "--preset", "fields", "--name", "f4", "--n-stamps", "40",
               "--field-size", "10", "--stamp-size", "24", "--shard-size", "40")[0] == 0
    for method in ("regauss", "REGAUSS"):
        code, out, err = run(capsys, ws, "lens", "validate", "f4", "--method", method)
        assert code == 0, err
        report = json.loads(out)
        assert report["estimator"] == "REGAUSS" and report["n"] == 40
        reports.append(report)
    assert reports[0]["report"] == reports[1]["report"] and reports[0]["m1_raw"] == reports[1]["m1_raw"]


@pytest.mark.workspace("inputs")
def test_validate_without_truth_says_so_before_measuring(ws, tmp_path, capsys, monkeypatch):
    import astrotool_lens.evaluate as ev

    code, _, err = run(capsys, ws, "lens", "generate", "--name", "lj", "--n-stamps", "6", "--shard-size", "6",
                       "--stamp-size", "24", "--format", "lensnet")
    assert code == 0, err
    folder = ws / "lens" / "shear" / "lj" / "lensnet"
    data = json.loads((folder / "data.json").read_text())
    for e in data:
        e.pop("g1", None)
    (folder / "data.json").write_text(json.dumps(data))
    monkeypatch.setattr(ev, "hsm_estimates", lambda *a, **k: pytest.fail("measured before checking the truth"))
    code, _, err = run(capsys, ws, "lens", "validate", folder, "--method", "REGAUSS")
    assert code == 2 and "no true shears" in err


@pytest.mark.workspace("inputs")
def test_missing_psf_message_names_no_model(ws, tmp_path, capsys):
    import numpy as np
    from astropy.io import fits

    fits.writeto(tmp_path / "gal_0.fits", np.ones((24, 24), np.float32))
    code, _, err = run(capsys, ws, "lens", "validate", tmp_path / "gal_0.fits", "--method", "REGAUSS")
    assert code == 2 and "each classical estimator needs a PSF stamp per galaxy" in err
    assert "the model needs" not in err


def test_evaluate_refuses_a_remade_training_set(tmp_path, capsys):
    ws = tmp_path / "ws"
    gen = ["lens", "generate", "--name", "r", "--n-stamps", "40", "--shard-size", "40", "--stamp-size", "24"]
    assert run(capsys, ws, *gen)[0] == 0
    code, _, err = run(capsys, ws, "--set", "lens.train.threads=1", "lens", "train", "--dataset", "r", "--model",
                       "rm", "--epochs", "1", "--width", "4", "--batch-size", "8", "--device", "cpu")
    assert code == 0, err
    assert run(capsys, ws, "--seed", "99", "--overwrite", *gen)[0] == 0
    code, _, err = run(capsys, ws, "lens", "evaluate", "--model", "rm", "--no-plots", "--classical", "")
    assert code == 2 and "not the set that model rm was trained on" in err and "--split all" in err
    code, out, err = run(capsys, ws, "lens", "evaluate", "--model", "rm", "--no-plots", "--classical", "",
                         "--split", "all")   # every stamp asked for: scored
    assert code == 0 and json.loads(out)["n"] == 40, err


def test_a_default_model_or_dataset_that_does_not_exist_is_named_as_the_default(ws, capsys):
    _, err = _run(capsys, ws, "lens", "evaluate", "--dataset", "s2", "--classical", "KSB", code=2)
    assert "no --model given" in err and "lensnet_cnn" in err
    _, err = _run(capsys, ws, "lens", "measure", code=2)
    assert "no --dataset given" in err and "'lensnet'" in err


def test_validate_refuses_a_set_without_constant_shear_fields(ws, capsys):
    _, err = _run(capsys, ws, "lens", "validate", "s2", "--method", "ksb", code=2)
    assert "constant-shear fields" in err
