"""Shear review of cab6b03: `--dataset .`, copied dataset folders, every stamp flagged, fields without estimates,
one stamp check, the input/--dataset check, evaluate's mode suffixes, calibration counts."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from astrotool.cli import main
from .conftest import review_workspace, run_cli


def run(capsys, ws, *args):
    return run_cli(capsys, "-w", ws, *args)


TRAIN = ["--set", "lens.train.threads=1", "lens", "train", "--epochs", "1", "--width", "4", "--batch-size", "8",
         "--device", "cpu"]


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    """A workspace with dataset g (16 stamps), fields f3 (3 fields of 8) and model m (one epoch on g)."""
    return review_workspace(tmp_path_factory.mktemp("shear_names") / "ws", 16, 16, 24, 8)


def _copy(ws, src, dst, edit=None):
    """``lens/shear/src`` copied to ``dst``; ``edit(gal, field)`` changes the copy's stamps in place."""
    import h5py

    from astrotool.io.tables import read_parquet

    d = ws / "lens" / "shear" / dst
    if not d.exists():
        shutil.copytree(ws / "lens" / "shear" / src, d)
        if edit is not None:
            field = np.asarray(read_parquet(d / f"{src}_truth.parquet").column("field").to_pylist())
            (shard,) = sorted(d.glob("*.h5"))
            with h5py.File(shard, "r+") as h:
                gal = h["gal"][...]
                edit(gal, field)
                h["gal"][...] = gal
    return d


def test_dataset_dot_names_outputs_by_the_folder(ws, capsys, monkeypatch):
    monkeypatch.chdir(ws / "lens" / "shear" / "g")
    pred, rep = ws / "lens" / "predictions", ws / "lens" / "reports"
    code, _, err = run(capsys, ws, "lens", "measure", "--dataset", ".", "--methods", "KSB", "--name", "gdot")
    assert code == 0, err
    code, _, err = run(capsys, ws, "lens", "measure", "--dataset", ".", "--methods", "KSB")
    assert code == 0, err
    assert (pred / "g_hsm.parquet").is_file() and not (pred / "_hsm.parquet").exists()
    code, out, err = run(capsys, ws, "lens", "evaluate", "--model", "m", "--dataset", ".", "--split", "all",
                         "--no-plots", "--classical", "")
    assert code == 0, err
    assert json.loads(out)["dataset"] == "g" and (rep / "g_m_all_metrics.json").is_file()
    assert not (rep / "_m_all_metrics.json").exists() and not (rep / "_m_metrics.json").exists()
    code, out, err = run(capsys, ws, *TRAIN, "--dataset", ".")
    assert code == 0, err
    res = json.loads(out)
    assert res["model"] == "g_cnn" and res["dataset"] == "g"
    tr = json.loads((ws / "lens" / "models" / "g_cnn" / "model.json").read_text())["training"]
    assert tr["dataset_folder"] == "g" and tr["dataset_path"] == str((ws / "lens" / "shear" / "g").resolve())


def test_a_copied_dataset_trains_and_is_evaluated_under_its_folder(ws, capsys):
    _copy(ws, "g", "gcopy", lambda gal, field: gal.__imul__(2.0))   # other pixels than g's
    code, out, err = run(capsys, ws, *TRAIN, "--dataset", "gcopy")
    assert code == 0, err
    res = json.loads(out)
    assert res["model"] == "gcopy_cnn" and res["dataset"] == "gcopy"
    tr = json.loads((ws / "lens" / "models" / "gcopy_cnn" / "model.json").read_text())["training"]
    assert tr["dataset_folder"] == "gcopy"
    code, out, err = run(capsys, ws, "lens", "evaluate", "--model", "gcopy_cnn", "--split", "all", "--no-plots",
                         "--classical", "")
    assert code == 0, err
    assert json.loads(out)["dataset"] == "gcopy"


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


def test_predict_and_evaluate_count_some_flagged_stamps(ws, capsys):
    _copy(ws, "f3", "f3one", lambda gal, field: gal.__setitem__((5, 2, 2), np.nan))
    code, out, err = run(capsys, ws, "lens", "predict", "f3one", "--model", "m")
    assert code == 0, err
    assert json.loads(out)["n_flagged"] == 1 and "1 of 24 stamps not predicted" in err
    code, out, err = run(capsys, ws, "lens", "evaluate", "--model", "m", "--dataset", "f3one", "--split", "all",
                         "--no-plots", "--classical", "")
    assert code == 0, err
    assert "1 of 24 stamps not predicted" in err and "NaN or infinite pixels" in err


def test_evaluate_notes_an_estimator_left_with_fewer_than_3_fields(ws, capsys):
    _copy(ws, "f3", "f3field", lambda gal, field: gal.__setitem__(field == field[0], np.nan))
    code, out, err = run(capsys, ws, "lens", "evaluate", "--model", "m", "--dataset", "f3field", "--split", "all",
                         "--no-plots", "--classical", "")
    assert code == 0, err
    rep = json.loads(out)
    assert rep["estimators"]["CNN"]["n_fields"] == 2
    assert any("2 constant-shear field(s); m and c need at least 3" in n for n in rep["notes"]), rep["notes"]
    # without --json the field means are printed
    assert main(["-w", str(ws), "lens", "evaluate", "--model", "m", "--dataset", "f3field", "--split", "all",
                 "--no-plots", "--classical", ""]) == 0
    assert "CNN, field g1" in capsys.readouterr().err


def test_evaluate_on_3_fields_gives_no_few_fields_note(ws, capsys):
    code, out, err = run(capsys, ws, "lens", "evaluate", "--model", "m", "--dataset", "f3", "--split", "all",
                         "--no-plots", "--classical", "")
    assert code == 0, err
    assert not any("constant-shear field(s)" in n for n in json.loads(out)["notes"])


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


def test_measure_takes_the_same_dataset_as_a_relative_path_and_a_name(ws, capsys, monkeypatch):
    monkeypatch.chdir(ws.parent)
    code, _, err = run(capsys, ws, "lens", "measure", "ws/lens/shear/g", "--dataset", "g", "--methods", "KSB")
    assert code == 0, err
    code, _, err = run(capsys, ws, "lens", "measure", "ws/lens/shear/g", "--dataset", "f3", "--methods", "KSB")
    assert code == 2 and "name one of them" in err


def test_evaluate_modes_write_reports_of_their_own(ws, capsys):
    names = []
    for extra in ((), ("--raw",), ("--no-symmetrize",), ("--no-symmetrize", "--raw")):
        code, out, err = run(capsys, ws, "lens", "evaluate", "--model", "m", "--dataset", "f3", "--split", "all",
                             "--no-plots", "--classical", "", *extra)
        assert code == 0, err
        rep = json.loads(out)
        names.append((rep["report"].rsplit("/", 1)[1], rep["predictions"].rsplit("/", 1)[1]))
    assert names == [("f3_m_all_metrics.json", "f3_m_all.parquet"),
                     ("f3_m_all_raw_metrics.json", "f3_m_all_raw.parquet"),
                     ("f3_m_all_nosym_metrics.json", "f3_m_all_nosym.parquet"),
                     ("f3_m_all_nosym_raw_metrics.json", "f3_m_all_nosym_raw.parquet")]
