"""Bad input -> astrotool.errors.InputError naming the file."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from astropy.io import fits

from astrotool.errors import InputError
from astrotool_lens.model import load_estimator
from astrotool_lens.predict import predict_table, read_inputs


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
