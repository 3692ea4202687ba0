"""Prediction runs: the writer's files, zip, resume and refusals; predict and export end to end."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from astrotool.errors import AstroError
from astrotool_lens.kappa.submission import INFO_FILE, PredictionWriter

MADE_BY = {"method": "ks", "settings": {"sigma": 2.0}, "source": "tiny", "split": "test", "n": 4, "size": 8}
NAMES = ["00001_00002", "00003_00004", "00005_00006", "00007_00008"]


def maps(n=4, seed=0):
    return np.random.default_rng(seed).normal(0, 0.1, (n, 8, 8))


# ---------------------------------------------------------------- PredictionWriter


def test_writer_files_by_name_and_zip(tmp_path):
    run = tmp_path / "preds" / "tiny_ks2"
    w = PredictionWriter(run, MADE_BY)
    m = maps()
    w.write(NAMES[:2], m[:2])
    w.write(NAMES[2:], m[2:])
    res = w.finish()
    assert res == {"output": str(run), "zip": str(tmp_path / "preds" / "tiny_ks2.zip"), "n": 4}
    for name, want in zip(NAMES, m):
        got = np.load(run / f"{name}.npy")
        assert got.dtype == np.float16 and got.shape == (8, 8) and np.array_equal(got, want.astype(np.float16))
    with zipfile.ZipFile(res["zip"]) as zf:  # the .npy files at the top level, byte for byte
        assert sorted(zf.namelist()) == [f"{n}.npy" for n in NAMES]
        for n in NAMES:
            assert zf.read(f"{n}.npy") == (run / f"{n}.npy").read_bytes()
    info = json.loads((run / INFO_FILE).read_text())
    assert info["complete"] and info["made_by"] == MADE_BY and info["maps"] == 4
    assert sorted(p.name for p in run.iterdir()) == sorted([*(f"{n}.npy" for n in NAMES), INFO_FILE])


def test_writer_resume_keeps_finished_maps_and_refuses_other_settings(tmp_path):
    run = tmp_path / "tiny_ks2"
    w = PredictionWriter(run, MADE_BY)
    w.write(NAMES[:3], maps(3))
    before = (run / f"{NAMES[0]}.npy").stat().st_mtime_ns
    with pytest.raises(AstroError, match="holds 3 maps, the run has 4"):
        w.finish()  # an interrupted run is not finished
    again = PredictionWriter(run, json.loads(json.dumps(MADE_BY)))
    assert again.missing(reversed(NAMES)) == [NAMES[3]]
    assert (run / f"{NAMES[0]}.npy").stat().st_mtime_ns == before
    with pytest.raises(AstroError) as exc:
        PredictionWriter(run, {**MADE_BY, "settings": {"sigma": 3.0}})
    assert "settings.sigma: 2.0 -> 3.0" in str(exc.value) and exc.value.exit_code == 2
    with pytest.raises(AstroError, match="split: \"test\" -> \"all\""):
        PredictionWriter(run, {**MADE_BY, "split": "all"})
    fresh = PredictionWriter(run, {**MADE_BY, "settings": {"sigma": 3.0}}, overwrite=True)
    assert fresh.missing(NAMES) == NAMES and not list(run.glob("*.npy"))


def test_writer_refuses_nan_and_overflow_naming_the_map(tmp_path):
    w = PredictionWriter(tmp_path / "run", MADE_BY)
    m = maps()
    m[2, 3, 4] = np.nan
    with pytest.raises(AstroError, match=f"{NAMES[2]}.*NaN"):
        w.write(NAMES, m)
    assert not list((tmp_path / "run").glob("*.npy"))  # the batch is checked before any map is written
    m = maps()
    m[1, 0, 0] = 70000.0
    with pytest.raises(AstroError, match=f"{NAMES[1]}.*beyond float16"):
        w.write(NAMES, m)
    m[1, 0, 0] = -65504.0  # the largest float16 is fine
    w.write(NAMES, m)
    assert np.load(tmp_path / "run" / f"{NAMES[1]}.npy")[0, 0] == -65504.0
    with pytest.raises(AstroError, match="maps are 4x4"):
        w.write(NAMES[:1], np.zeros((1, 4, 4)))


def test_writer_leaves_no_partial_file_after_a_failure(tmp_path, monkeypatch):
    w = PredictionWriter(tmp_path / "run", MADE_BY)
    w.write(NAMES[:1], maps(1))
    real_save = np.save
    calls = []

    def failing_save(fh, arr, **kw):
        calls.append(1)
        if len(calls) == 2:
            fh.write(b"\x93NUMPY partial")
            raise OSError("disk full")
        return real_save(fh, arr, **kw)

    monkeypatch.setattr(np, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        w.write(NAMES[1:], maps(3))
    monkeypatch.undo()
    files = sorted(p.name for p in (tmp_path / "run").iterdir())
    assert files == sorted([INFO_FILE, f"{NAMES[0]}.npy", f"{NAMES[1]}.npy"])  # no .partial file, no map 2
    assert PredictionWriter(tmp_path / "run", MADE_BY).missing(NAMES) == NAMES[2:]


def test_writer_refuses_a_foreign_folder(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("mine")
    with pytest.raises(AstroError, match="no prediction.json"):
        PredictionWriter(tmp_path / "run", MADE_BY)
    PredictionWriter(tmp_path / "run", MADE_BY, overwrite=True)
    assert not (tmp_path / "run" / "notes.txt").exists()
