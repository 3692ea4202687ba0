"""Shear review: calibration modes, NaN and blank stamps in predict, few fields in evaluate, table names."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from astrotool.cli import main
from .conftest import review_workspace, run_cli


def run(capsys, ws, *args):
    return run_cli(capsys, "-w", ws, *args)


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    """A workspace with dataset g (16 stamps), fields f3 (3 fields of 8) and model m (one epoch on g)."""
    return review_workspace(tmp_path_factory.mktemp("shear_review") / "ws", 16, 16, 24, 8)


@pytest.fixture(scope="module")
def cal_nosym(ws):
    """Model m calibrated on f3 without symmetrisation, as ``mc`` (one epoch: it hardly responds to shear, so
    the bounds on m and on the response are lifted to store its calibration all the same)."""
    shutil.copytree(ws / "lens" / "models" / "m", ws / "lens" / "models" / "mc")
    assert main(["-q", "-w", str(ws), "--set", "lens.calibrate.max_abs_m=1e6", "--set",
                 "lens.calibrate.min_response_sigmas=0", "--set",
                 "lens.calibrate.min_response=0", "lens", "calibrate", "--model", "mc",
                 "--dataset", "f3", "--no-symmetrize"]) == 0
    return ws / "lens" / "models" / "mc"


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

    # in its own mode it is applied
    code, out, err = run(capsys, ws, "lens", "predict", "f3", "--model", "mc", "--no-symmetrize", "--name", "f3ns")
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


def test_predict_flags_nan_and_blank_stamps_instead_of_refusing_the_input(ws, tmp_path, capsys):
    from astrotool.io.tables import read_parquet

    code, out, err = run(capsys, ws, "lens", "predict", _cube(ws, tmp_path), "--model", "m", "--psf",
                         tmp_path / "psf.fits")
    assert code == 0, err
    t = read_parquet(json.loads(out)["output"]).to_pydict()
    assert t["flag"] == [0, 1, 1, 0]
    assert t["error"] == ["", "NaN or infinite pixels", "blank stamp", ""]
    g1 = np.array(t["g1"])
    assert np.isnan(g1[1:3]).all() and np.isfinite(g1[[0, 3]]).all()
    assert "2 of 4 stamps not predicted" in err


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


def test_a_blank_stamp_gives_nan_not_a_finite_shear(ws):
    from astrotool_lens.model import load_estimator, predict_array

    model, meta = load_estimator(ws / "lens" / "models" / "m")
    c = int(meta["architecture"]["kwargs"]["in_channels"])
    x = np.zeros((2, c, 24, 24), np.float32)
    x[1] = np.random.default_rng(1).normal(0, 1, (c, 24, 24))
    g = predict_array(model, x)
    assert np.isnan(g[0]).all() and np.isfinite(g[1]).all()


def test_evaluate_on_one_constant_shear_field_explains_and_gives_field_means(ws, capsys):
    assert main(["-q", "-w", str(ws), "lens", "generate", "--preset", "fields", "--name", "f1", "--n-stamps", "8",
                 "--field-size", "8", "--stamp-size", "24", "--shard-size", "8"]) == 0
    capsys.readouterr()
    code, out, err = run(capsys, ws, "lens", "evaluate", "--model", "m", "--dataset", "f1", "--split", "all",
                         "--no-plots", "--classical", "")
    assert code == 0, err
    rep = json.loads(out)
    assert err.count("1 constant-shear field(s); m and c need at least 3") == 1
    (row,) = rep["field_means"]["CNN"]
    assert row["n"] == 8 and np.isfinite(row["g1"]) and row["g1_err"] > 0


def test_measure_names_a_copied_dataset_by_its_folder(ws, capsys):
    pred = ws / "lens" / "predictions"
    dst = ws / "lens" / "shear" / "gcopy"
    if not dst.exists():
        shutil.copytree(ws / "lens" / "shear" / "g", dst)
    code, out, err = run(capsys, ws, "lens", "measure", "--dataset", "gcopy", "--methods", "KSB")
    assert code == 0, err
    assert (pred / "gcopy_hsm.parquet").is_file() and not (pred / "g_hsm.parquet").exists()


def test_measure_refuses_an_input_with_another_dataset(ws, capsys):
    code, _, err = run(capsys, ws, "lens", "measure", "g", "--dataset", "f3", "--methods", "KSB")
    assert code == 2 and "--dataset" in err and "'g'" in err and "'f3'" in err


def test_generate_names_changed_settings_as_set_spells_them(tmp_path, capsys):
    from .conftest import TINY_GEN

    assert main(["-q", "-w", str(tmp_path), *map(str, TINY_GEN), "--name", "x", "-n", "8"]) == 0
    code, _, err = run(capsys, tmp_path, "-q", *TINY_GEN, "--name", "x", "-n", "12", "--snr", "50")
    assert code == 2
    assert "exists but was made with other settings:\n" in err
    assert "  lens.generate.n_stamps: 8 -> 12\n" in err and "  lens.generate.noise.snr:" in err and "--overwrite" in err


def test_an_overwrite_shard_task_removes_the_old_truth_and_names_the_other_tasks(tmp_path, capsys):
    from .conftest import TINY_GEN

    assert main(["-q", "-w", str(tmp_path), *map(str, TINY_GEN), "--name", "x", "-n", "8"]) == 0
    truth = tmp_path / "lens" / "shear" / "x" / "x_truth.parquet"
    assert truth.is_file()
    code, _, err = run(capsys, tmp_path, "--overwrite", "--shard", "0/2", *TINY_GEN, "--name", "x", "-n", "8",
                       "--snr", "50")
    assert code == 0, err
    assert not truth.exists()
    assert "the other --shard tasks" in err and "re-run the same command" not in err
    code, _, err = run(capsys, tmp_path, "--overwrite", "--shard", "1/2", *TINY_GEN, "--name", "x", "-n", "8",
                       "--snr", "50")
    assert code == 0, err
    assert truth.is_file()


def test_predict_modes_write_tables_of_their_own(ws, capsys):
    names = []
    for extra in ((), ("--raw",), ("--no-symmetrize",)):
        code, out, err = run(capsys, ws, "lens", "predict", "g", "--model", "m", *extra)
        assert code == 0, err
        names.append(json.loads(out)["output"].rsplit("/", 1)[1])
    assert names == ["g_m.parquet", "g_m_raw.parquet", "g_m_nosym.parquet"]


def test_predict_on_an_unknown_name_lists_the_datasets(ws, capsys):
    code, _, err = run(capsys, ws, "lens", "predict", "nope", "--model", "m")
    assert code == 2 and "nope" in err and "datasets in" in err and "f3" in err and " g" in err


def test_retraining_a_calibrated_model_says_its_calibration_is_discarded(ws, cal_nosym, capsys):
    dst = ws / "lens" / "models" / "mre"
    if not dst.exists():
        shutil.copytree(cal_nosym, dst)
    code, _, err = run(capsys, ws, "--overwrite", "--set", "lens.train.threads=1", "lens", "train", "--dataset", "g",
                       "--model", "mre", "--epochs", "1", "--width", "4", "--batch-size", "8", "--device", "cpu")
    assert code == 0, err
    assert "calibration discarded" in err and "lens calibrate" in err
    assert "calibration" not in json.loads((dst / "model.json").read_text())


def test_a_resume_that_keeps_the_weights_keeps_the_calibration_and_says_nothing(ws, cal_nosym, capsys):
    """Run again with nothing left to train, train said "calibration discarded" while it stayed, and applied."""
    dst = ws / "lens" / "models" / "mkeep"
    shutil.copytree(cal_nosym, dst)
    before = json.loads((dst / "model.json").read_text())["calibration"]
    code, _, err = run(capsys, ws, "--set", "lens.train.threads=1", "lens", "train", "--dataset", "g", "--model",
                       "mkeep", "--epochs", "1", "--width", "4", "--batch-size", "8", "--device", "cpu")
    assert code == 0, err
    assert "calibration discarded" not in err
    assert json.loads((dst / "model.json").read_text())["calibration"] == before


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


def test_anacal_refuses_non_square_stamps_up_front(tmp_path, capsys):
    pytest.importorskip("anacal")
    from astropy.io import fits

    yy, xx = np.mgrid[:20, :24]
    blob = np.exp(-((xx - 11.5) ** 2 + (yy - 9.5) ** 2) / 8.0).astype(np.float32)
    fits.PrimaryHDU(np.stack([blob, blob])).writeto(tmp_path / "rect.fits")
    fits.PrimaryHDU(blob).writeto(tmp_path / "psf.fits")
    code, _, err = run(capsys, tmp_path / "ws", "lens", "measure", tmp_path / "rect.fits", "--psf",
                       tmp_path / "psf.fits", "--methods", "KSB,ANACAL")
    assert code == 2 and "rect.fits" in err and "square" in err and "20x24" in err


def test_adding_metacal_to_a_table_is_not_logged_as_a_settings_change(ws, capsys):
    code, _, err = run(capsys, ws, "lens", "measure", "--dataset", "f3", "--methods", "KSB")
    assert code == 0, err
    code, _, err = run(capsys, ws, "lens", "validate", "f3", "--method", "METACAL")
    assert code == 0, err
    assert "lacks METACAL" in err and "None ->" not in err and "(HSM)" not in err


def test_a_measure_shard_task_without_items_says_it_had_nothing_to_do(ws, capsys):
    code, _, err = run(capsys, ws, "--shard", "5/8", "lens", "measure", "--dataset", "g", "--methods", "KSB",
                       "--name", "gsh")
    assert code == 0, err
    assert "--shard 5/8 had nothing to do" in err and "WARNING" not in err
    assert err.count("had nothing to do") == 1, err   # said once (the core's map), not again by measure


def test_evaluate_notes_a_plot_left_out_as_information(ws, capsys):
    code, _, err = run(capsys, ws, "lens", "evaluate", "--model", "m", "--dataset", "f3", "--split", "all",
                       "--classical", "")
    assert code == 0, err
    lines = [ln for ln in err.splitlines() if "not plotted" in ln]
    assert lines and all(" INFO " in ln for ln in lines)


def test_export_applies_a_calibration_only_in_its_mode(cal_nosym):
    from astrotool.errors import InputError
    from astrotool_lens.export import export_plan

    _, _, _, kw = export_plan(cal_nosym, symmetrize=True, parity_samples=2)
    assert kw["metadata"]["onnx"]["calibrated"] is False
    _, _, _, kw = export_plan(cal_nosym, symmetrize=False, parity_samples=2, min_response=0)   # 1 + m ~ 1e-5
    assert kw["metadata"]["onnx"]["calibrated"] is True
    with pytest.raises(InputError, match="fitted with --no-symmetrize"):
        export_plan(cal_nosym, symmetrize=True, parity_samples=2, explicit=True)


def test_validate_response_metacal_says_the_stored_calibration_is_left_out(ws, cal_nosym, capsys):
    code, out, err = run(capsys, ws, "lens", "validate", "f3", "--model", "mc", "--response", "metacal",
                         "--no-symmetrize")
    assert code == 0, err
    rec = json.loads(out)
    assert rec["calibration"] is None and rec["transfers"] is None
    assert rec["verdict"].startswith("the stored calibration is not applied with --response metacal; the raw")
