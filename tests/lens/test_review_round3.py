"""Third new-user review of `astro lens`: checks before work, response floor, shard notes, table names."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from .conftest import review_workspace, run_cli


def run(capsys, ws, *args):
    return run_cli(capsys, "-w", ws, *args)


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    """A workspace with dataset g (16 stamps), fields f3 (3 fields of 8) and model m (one epoch on g)."""
    return review_workspace(tmp_path_factory.mktemp("round3") / "ws", 16, 16, 24, 8)


def _copy_dataset(ws, src, dst):
    shutil.copytree(ws / "lens" / "shear" / src, ws / "lens" / "shear" / dst)
    return dst


def test_evaluate_refuses_a_classical_table_of_other_settings_before_predicting(ws, capsys):
    """It predicted every stamp and wrote <dataset>_<model>_all.parquet, then refused the HSM table."""
    name = _copy_dataset(ws, "f3", "f3guess")
    code, _, err = run(capsys, ws, "--set", "lens.measure.guess_sig_gal=3", "lens", "measure", name,
                       "--methods", "REGAUSS")
    assert code == 0, err
    preds, reports = ws / "lens" / "predictions", ws / "lens" / "reports"
    before = sorted(p.name for p in preds.iterdir()), sorted(p.name for p in reports.iterdir())
    code, out, err = run(capsys, ws, "lens", "evaluate", "--model", "m", "--dataset", name, "--classical", "REGAUSS",
                         "--no-plots")
    assert code == 2 and out == "" and "guess_sig_gal 3 -> 5" in err and f"{name}_hsm.parquet" in err, err
    assert (sorted(p.name for p in preds.iterdir()), sorted(p.name for p in reports.iterdir())) == before


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


def test_a_kept_table_is_up_to_date_under_shard_and_has_the_summary_of_a_fresh_one(ws, capsys):
    """--shard 3/4 said the task "did all of it" when nothing was done; the kept summary had other keys."""
    code, out, err = run(capsys, ws, "lens", "measure", "--dataset", "g", "--methods", "KSB", "--name", "gk")
    assert code == 0, err
    fresh = json.loads(out)
    code, out, err = run(capsys, ws, "--shard", "3/4", "lens", "measure", "--dataset", "g", "--methods", "KSB",
                         "--name", "gk")
    assert code == 0, err
    kept = json.loads(out)
    assert "was not used" not in err and "did all of it" not in err and "gk_hsm.parquet is up to date" in err
    assert fresh["skipped"] is False and kept["skipped"] is True and kept["measured"] == []
    assert sorted(kept) == sorted(fresh)
    assert {k: kept[k] for k in ("dataset", "n", "failed", "responsivity", "path")} == \
        {k: fresh[k] for k in ("dataset", "n", "failed", "responsivity", "path")}


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


def _cube(path, n=5, blank=(), nan=()):
    """``n`` round Gaussian galaxies (24 px) in one cube, some blank or with a NaN pixel; and a PSF stamp."""
    from astropy.io import fits

    yy, xx = np.mgrid[:24, :24] - 11.5
    gal = np.stack([np.exp(-(xx ** 2 + yy ** 2) / (2 * (2.5 + 0.1 * i) ** 2)) for i in range(n)]).astype(np.float32)
    gal[list(blank)] = 0.0
    for i in nan:
        gal[i, 3, 3] = np.nan
    fits.PrimaryHDU(gal).writeto(path, overwrite=True)
    psf = path.with_name("psf.fits")
    fits.PrimaryHDU(np.exp(-(xx ** 2 + yy ** 2) / 4.5).astype(np.float32)).writeto(psf, overwrite=True)
    return path, psf


def test_measure_again_names_what_changed_in_the_stamps(ws, capsys, tmp_path):
    """It said "measured on other stamps (n 5 -> 5, created None -> None)": nothing that changed."""
    cube, psf = _cube(tmp_path / "cube.fits")
    args = ["lens", "measure", cube, "--psf", psf, "--name", "cube5", "--methods", "KSB"]
    code, _, err = run(capsys, ws, *args)
    assert code == 0, err
    cube, psf = _cube(cube, blank=[1])   # the same file, other pixels
    code, _, err = run(capsys, ws, *args)
    assert code == 0, err
    line = next(ln for ln in err.splitlines() if "measuring cube5_hsm.parquet again" in ln)
    assert "measured on other stamps (stamps_sha256 " in line and "created" not in line and " n 5" not in line


def test_measure_counts_failures_per_reason_and_words_a_blank_stamp_alike(ws, capsys, tmp_path):
    """It warned "REGAUSS: 2 of 5 stamps failed" only; REGAUSS's blank stamp said "Masked image is all 0's."."""
    from astrotool.io.tables import read_parquet

    cube, psf = _cube(tmp_path / "cube.fits", blank=[1], nan=[3])
    code, out, err = run(capsys, ws, "lens", "measure", cube, "--psf", psf, "--name", "cubebad",
                         "--methods", "REGAUSS,METACAL")
    assert code == 0, err
    for meth in ("REGAUSS", "METACAL"):
        assert (f"{meth}: 2 of 5 stamps failed: 1 blank stamp, 1 non-finite pixels; see column {meth.lower()}_error "
                "of cubebad_hsm.parquet") in err, err
    t = read_parquet(json.loads(out)["path"])
    for k in ("regauss", "metacal"):
        assert t.column(f"{k}_error").to_pylist() == ["", "blank stamp", "", "non-finite pixels", ""]


def test_a_validation_with_a_calibration_file_keeps_the_raw_report(ws, capsys):
    """validate --calibration X.json wrote <input>_<method>_validate.json over the uncalibrated report."""
    code, out, err = run(capsys, ws, "lens", "validate", "f3", "--method", "KSB")
    assert code == 0, err
    raw_report = ws / "lens" / "reports" / "f3_ksb_validate.json"
    assert json.loads(out)["report"] == str(raw_report)
    assert json.loads(out)["estimator"] == "KSB"   # as measure and evaluate name it (it said "ksb")
    before = raw_report.read_text()
    code, out, err = run(capsys, ws, "lens", "validate", "f3", "--method", "KSB", "--calibration", raw_report)
    assert code == 0, err
    cal = json.loads(out)
    assert cal["report"] == str(ws / "lens" / "reports" / "f3_ksb_cal_validate.json") and cal["transfers"] is True
    assert raw_report.read_text() == before
    assert json.loads((ws / "lens" / "reports" / "f3_ksb_cal_validate.json").read_text())["calibration"]["source"] \
        == str(raw_report)


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


def test_validate_method_shows_no_empty_choice(capsys):
    """--help showed `--method <|regauss|ksb|...>` and the shell completed an empty candidate."""
    from astrotool.cli import main

    assert main(["lens", "validate", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "--method <regauss|ksb|bj|linear|metacal|anacal>" in out and "<|" not in out
    from astrotool_lens.config import ValidateConfig

    assert ValidateConfig(method="").method is None   # an older configuration's "" is still no method
