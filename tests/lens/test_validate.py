"""`astro lens validate`: m and c from ring pairs, and whether a stored calibration transfers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from astrotool.cli import main
from astrotool_lens.config import ValidateConfig
from astrotool_lens.validate import read_calibration, shear_fields, validate_estimates

from .conftest import easy_config, run_cli, serial_map


def run(capsys, ws, *args):
    return run_cli(capsys, "-w", ws, *args)


def _ring_fields(m, c, n_fields=12, seed=3):
    """Hand-made estimates g_est = (1 + m) g + c + e per stamp, e = +-shape noise in each ring pair."""
    rng = np.random.default_rng(seed)
    g = rng.uniform(-0.08, 0.08, (n_fields, 2))
    e = rng.normal(0, 0.25, (n_fields, 2))
    true = np.repeat(g, 2, axis=0)                                  # two stamps (a ring pair) per field
    noise = np.stack([e, -e], axis=1).reshape(-1, 2)                # cancels in each pair
    est = (1 + np.asarray(m)) * true + np.asarray(c) + noise
    return true, est


def test_estimates_of_an_implausible_response_are_not_judged():
    """`validate --response metacal` warned that the response was meaningless, then said the estimator "meets"
    the tolerance, and the report kept only that."""
    true, est = _ring_fields((0.0, 0.0), (0.0, 0.0))
    rep = validate_estimates(true[:, 0], true[:, 1], (est[:, 0], est[:, 1]), None, ValidateConfig(),
                             unjudged="the model's mean shear response <R11> = 5e-05 is implausible")
    assert rep["verdict"] == ("no stored calibration; the raw estimator is not judged: the model's mean shear "
                              "response <R11> = 5e-05 is implausible")
    assert rep["response_problem"].endswith("is implausible") and rep["transfers"] is None
    assert "meets" in validate_estimates(true[:, 0], true[:, 1], (est[:, 0], est[:, 1]), None,
                                         ValidateConfig())["verdict"]
    cal = {"m1": 0.0, "m2": 0.0, "c1": 0.0, "c2": 0.0}                 # with --calibration FILE: not judged either
    rep = validate_estimates(true[:, 0], true[:, 1], (est[:, 0], est[:, 1]), cal, ValidateConfig(), unjudged="flat")
    assert rep["verdict"] == "the calibration is not judged: flat" and rep["transfers"] is None
    assert rep["response_problem"] == "flat" and rep["calibrated"] is not None


def test_fit_returns_a_known_m_and_c():
    m, c = (0.031, -0.012), (4e-4, -7e-4)
    true, est = _ring_fields(m, c)
    assert len(np.unique(shear_fields(true[:, 0], true[:, 1]))) == 12
    rep = validate_estimates(true[:, 0], true[:, 1], (est[:, 0], est[:, 1]), None, ValidateConfig())
    for i in (0, 1):
        assert rep["raw"][f"m{i + 1}"] == pytest.approx(m[i], abs=1e-6)
        assert rep["raw"][f"c{i + 1}"] == pytest.approx(c[i], abs=1e-6)
    assert rep["transfers"] is None and "is off" in rep["verdict"] and rep["n_fields"] == 12

    # the true bias as calibration: calibrated m, c vanish -> transfers
    cal = {"m1": m[0], "m2": m[1], "c1": c[0], "c2": c[1]}
    rep = validate_estimates(true[:, 0], true[:, 1], (est[:, 0], est[:, 1]), cal, ValidateConfig())
    assert rep["transfers"] is True and rep["verdict"].startswith("transfers")
    assert max(abs(rep["calibrated"][k]) for k in ("m1", "m2", "c1", "c2")) < 1e-9
    # a calibration 2 % off in m1 (errors ~0, so no sigma can excuse it): m1 named, nothing else
    rep = validate_estimates(true[:, 0], true[:, 1], (est[:, 0], est[:, 1]), {**cal, "m1": m[0] + 0.02},
                             ValidateConfig())
    assert rep["transfers"] is False and len(rep["off"]) == 1 and rep["off"][0].startswith("m1 =")
    assert rep["calibrated"]["m1"] == pytest.approx((1 + m[0]) / (1 + m[0] + 0.02) - 1, abs=1e-9)
    # within tolerance although many sigma from zero
    rep = validate_estimates(true[:, 0], true[:, 1], (est[:, 0], est[:, 1]), {**cal, "m1": m[0] + 0.004},
                             ValidateConfig())
    assert rep["transfers"] is True


def _fields(ws, name="v", n=48, fmt="hdf5"):
    from astrotool_lens.generate import generate_dataset

    cfg = easy_config(name, n=n, shard_size=24, format=fmt, shape={"kind": "gaussian", "sigma": 0.2, "max": 0.6,
                                                                   "ring": True},
                      shear={"g1": [-0.08, 0.08], "g2": [-0.08, 0.08], "field_size": 4})
    out = ws / "lens" / "shear" / name
    generate_dataset(cfg, out, 9, serial_map)
    return out


def _run(capsys, *args):
    code = main(["--json", *(str(a) for a in args)])
    cap = capsys.readouterr()
    return code, (json.loads(cap.out) if code == 0 else None), cap.err


def test_validate_command_end_to_end_with_an_hsm_method(tmp_path, capsys):
    ws = tmp_path / "ws"
    ds = _fields(ws, fmt="lensnet")
    base = ["-w", ws, "-q", "lens", "validate"]
    code, raw, err = _run(capsys, *base, "v", "--method", "KSB")
    assert code == 0, err
    assert raw["n"] == 48 and raw["n_fields"] == 12 and raw["transfers"] is None and raw["estimator"] == "KSB"
    report = ws / "lens" / "reports" / "v_ksb_validate.json"
    assert raw["report"] == str(report) and json.loads(report.read_text())["raw"]["m1"] == raw["m1_raw"]
    assert (ws / "lens" / "predictions" / "v_hsm.parquet").is_file()            # measured as `measure` does

    # the same stamps as LensNet files (data.json's g1, g2 as truth): the same fit
    code, js, err = _run(capsys, *base, ds / "lensnet" / "data.json", "--method", "KSB")
    assert code == 0, err
    assert js["m1_raw"] == pytest.approx(raw["m1_raw"], abs=1e-12) and js["n_fields"] == 12
    code, folder, err = _run(capsys, *base, ds / "lensnet", "--method", "KSB")     # its folder: the same
    assert code == 0, err
    assert folder["m2_raw"] == pytest.approx(raw["m2_raw"], abs=1e-12)

    # the bias measured here, stored and applied to the same set: transfers
    code, same, err = _run(capsys, *base, "v", "--method", "KSB", "--calibration", report)
    assert code == 0, err
    assert same["transfers"] is True and abs(same["m1"]) < 1e-9 and same["calibration"] == str(report)
    # a calibration 30 % off: does not transfer, and says what is off
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"m1": raw["m1_raw"] + 0.3, "m2": raw["m2_raw"] + 0.3,
                               "c1": raw["c1_raw"], "c2": raw["c2_raw"]}))
    code, off, err = _run(capsys, *base, "v", "--method", "KSB", "--calibration", bad)
    assert code == 0, err
    assert off["transfers"] is False and "m1 =" in off["verdict"] and "m2 =" in off["verdict"]
    assert "c1" not in off["verdict"] and off["m1"] == pytest.approx((1 + raw["m1_raw"]) / (1.3 + raw["m1_raw"]) - 1)


def test_validate_refuses_what_it_cannot_use(tmp_path, capsys):
    ws = tmp_path / "ws"
    ds = _fields(ws, n=8)
    base = ["-w", ws, "-q", "lens", "validate"]
    code, _, err = _run(capsys, *base, "nosuch", "--method", "KSB")
    assert code == 2 and "nosuch" in err
    code, _, err = _run(capsys, *base, "v", "--method", "KSB")
    assert code == 2 and "2 constant-shear field(s)" in err and "at least 3" in err     # 8 stamps, fields of 4
    code, _, err = _run(capsys, *base, "v", "--method", "KSB", "--calibration", tmp_path / "nocal.json")
    assert code == 2 and "nocal.json" in err
    code, _, err = _run(capsys, *base, "v")
    assert code == 2 and "--model NAME" in err
    code, _, err = _run(capsys, *base, "v", "--method", "KSB", "--model", "x")
    assert code == 2 and "one estimator" in err
    (tmp_path / "cal.json").write_text('{"m1": 0.1}')
    with pytest.raises(Exception, match="holds no calibration"):
        read_calibration(tmp_path / "cal.json")
    # the bias of an estimator that hardly responds (1 + m = 1e-4) would multiply the estimates by 1e4
    (tmp_path / "flat.json").write_text('{"raw": {"m1": -0.9999, "m2": 0.01, "c1": 0, "c2": 0}}')
    code, _, err = _run(capsys, *base, "v", "--method", "KSB", "--calibration", tmp_path / "flat.json")
    assert code == 2 and "flat.json" in err and "1 + m1 = 0.0001" in err and "lens.calibrate.min_response" in err
    assert read_calibration(tmp_path / "flat.json")["m1"] == -0.9999   # no floor asked: read as it is
    # a FITS folder has no true shears
    from astrotool_lens.generate import generate_dataset

    generate_dataset(easy_config("f", n=8, shard_size=8, format="lensnet"), ws / "f", 1, serial_map)
    (ws / "f" / "lensnet" / "data.json").unlink()
    code, _, err = _run(capsys, *base, ws / "f" / "lensnet", "--method", "KSB")
    assert code == 2 and "no true shears" in err
    assert ds.is_dir()


def test_validate_a_model_with_and_without_its_calibration(tmp_path, capsys):
    ws = tmp_path / "ws"
    ds = _fields(ws, fmt="lensnet")
    code, _, err = _run(capsys, "-w", ws, "-q", "--set", "lens.train.threads=1", "--set", "lens.train.blocks=2",
                        "--set", "lens.train.hidden=8", "lens", "train", "--dataset", "v", "--epochs", 1,
                        "--width", 4, "--batch-size", 8, "--model", "c")
    assert code == 0, err
    # the floor on 1 + m lifted, as it is to calibrate this one-epoch model
    base = ["-w", ws, "-q", "--set", "lens.calibrate.min_response=0", "lens", "validate", "--model", "c",
            "--no-symmetrize"]
    code, raw, err = _run(capsys, *base, "v")
    assert code == 0, err
    assert raw["transfers"] is None and raw["calibration"] is None and "m1" not in raw
    code, _, err = _run(capsys, "-w", ws, "-q", "--set", "lens.calibrate.max_abs_m=10", "--set",
                        "lens.calibrate.min_response_sigmas=0", "--set",
                        "lens.calibrate.min_response=0", "lens", "calibrate",
                        "--model", "c", "--dataset", "v", "--no-symmetrize")
    assert code == 0, err
    code, cal, err = _run(capsys, *base, "v")
    assert code == 0, err
    # the model's own calibration, fitted on these very fields, removes its bias here
    assert cal["calibration"].endswith("model.json") and cal["transfers"] is True
    assert abs(cal["m1"]) < 1e-6 and abs(cal["c2"]) < 1e-6
    assert cal["m1_raw"] == pytest.approx(raw["m1_raw"], abs=1e-9)                 # raw: calibration not applied
    code, js, err = _run(capsys, *base, ds / "lensnet" / "data.json")
    assert code == 0, err
    assert js["m1_raw"] == pytest.approx(raw["m1_raw"], abs=1e-9) and js["transfers"] is True


def test_validate_keeps_the_no_symmetrize_report_apart_and_records_its_mode(tmp_path, capsys):
    """As predict and evaluate: --no-symmetrize writes <input>_<model>_nosym_validate.json, and each report
    records its mode (``symmetrize``); a classical method has none."""
    ws = tmp_path / "ws"
    _fields(ws, fmt="lensnet")
    code, _, err = _run(capsys, "-w", ws, "-q", "--set", "lens.train.threads=1", "--set", "lens.train.blocks=2",
                        "--set", "lens.train.hidden=8", "lens", "train", "--dataset", "v", "--epochs", 1,
                        "--width", 4, "--batch-size", 8, "--model", "c")
    assert code == 0, err
    reports = {}
    for mode in ("--symmetrize", "--no-symmetrize"):
        code, res, err = _run(capsys, "-w", ws, "-q", "lens", "validate", "v", "--model", "c", mode)
        assert code == 0, err
        reports[mode] = res["report"]
    assert reports["--symmetrize"].endswith("v_c_validate.json")
    assert reports["--no-symmetrize"].endswith("v_c_nosym_validate.json")
    assert json.loads(Path(reports["--symmetrize"]).read_text())["symmetrize"] is True
    assert json.loads(Path(reports["--no-symmetrize"]).read_text())["symmetrize"] is False


@pytest.mark.workspace("checks")
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


def test_validate_method_shows_no_empty_choice(capsys):
    """--help showed `--method <|regauss|ksb|...>` and the shell completed an empty candidate."""
    from astrotool.cli import main

    assert main(["lens", "validate", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "--method <regauss|ksb|bj|linear|metacal|anacal>" in out and "<|" not in out
    from astrotool_lens.config import ValidateConfig

    assert ValidateConfig(method="").method is None   # an older configuration's "" is still no method


@pytest.mark.workspace("calibration")
def test_adding_metacal_to_a_table_is_not_logged_as_a_settings_change(ws, capsys):
    code, _, err = run(capsys, ws, "lens", "measure", "--dataset", "f3", "--methods", "KSB")
    assert code == 0, err
    code, _, err = run(capsys, ws, "lens", "validate", "f3", "--method", "METACAL")
    assert code == 0, err
    assert "lacks METACAL" in err and "None ->" not in err and "(HSM)" not in err


@pytest.mark.workspace("calibration")
def test_validate_response_metacal_says_the_stored_calibration_is_left_out(ws, cal_nosym, capsys):
    code, out, err = run(capsys, ws, "lens", "validate", "f3", "--model", "mc", "--response", "metacal",
                         "--no-symmetrize")
    assert code == 0, err
    rec = json.loads(out)
    assert rec["calibration"] is None and rec["transfers"] is None
    assert rec["verdict"].startswith("the stored calibration is not applied with --response metacal; the raw")
