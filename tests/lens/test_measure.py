"""HSM estimators on stamps with a known shear; failures are counted, not fatal."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from astrotool_lens.config import GenerateConfig, MeasureConfig
from astrotool_lens.generate import draw_stamps
from astrotool_lens.measure import apply_responsivity, measure_arrays, measure_dataset

from .conftest import TINY_GEN as GEN, easy_config, failing_measure as _failing, run_cli, run_json as _run, serial_map


def run(capsys, ws, *args):
    return run_cli(capsys, "-w", ws, *args)


def _known_shear_stamps(n=4):
    cfg = GenerateConfig.model_validate({
        "preset": "lensnet", "n_stamps": n, "shape": {"kind": "none"}, "shear": {"g1": 0.05, "g2": -0.03},
        "psf": {"g1": 0.0, "g2": 0.0}, "noise": {"kind": "none"},
    })
    return draw_stamps(cfg, 2, 0, n)


def test_hsm_recovers_known_shear_without_shape_noise():
    gal, psf, truth = _known_shear_stamps()
    assert np.allclose(truth["g1"], 0.05) and np.allclose(truth["int_g1"], 0.0)
    out = measure_arrays(gal, psf, ["REGAUSS", "KSB", "BJ", "LINEAR"])
    for m in ("regauss", "ksb", "bj", "linear"):
        assert (out[f"{m}_flag"] == 0).all(), out[f"{m}_error"]
    # REGAUSS: PSF-corrected to better than 2% of g (docstring check of GalSim: -0.4%)
    assert np.allclose(out["regauss_g1"], 0.05, atol=1e-3)
    assert np.allclose(out["regauss_g2"], -0.03, atol=1e-3)
    # the distortion is converted to g: e = 2g/(1+g^2) ~ 0.0999, g ~ 0.05
    assert np.allclose(out["regauss_e1"], 2 * out["regauss_g1"] / (1 + out["regauss_g1"] ** 2 + out["regauss_g2"] ** 2))
    # KSB and LINEAR within 10%, BJ (no non-Gaussianity correction) within 25%
    assert np.allclose(out["ksb_g1"], 0.05, rtol=0.1) and np.allclose(out["linear_g1"], 0.05, rtol=0.1)
    assert np.allclose(out["bj_g1"], 0.05, rtol=0.25)


def test_failures_are_counted_not_raised():
    gal, psf, _ = _known_shear_stamps(3)
    gal = gal.copy()
    gal[1] = 0.0                 # blank stamp: HSM fails
    gal[2, 5, 5] = np.nan        # NaN pixel
    out = measure_arrays(gal, psf, ["REGAUSS", "KSB"])
    assert out["regauss_flag"].tolist() == [0, 1, 1]
    assert out["ksb_flag"].tolist() == [0, 1, 1]
    assert np.isnan(out["regauss_g1"][1:]).all()
    assert out["regauss_error"][1] and "non-finite" in out["regauss_error"][2]


def test_responsivity_conversion_exact_values():
    tab = {"regauss_e1": np.array([0.2, -0.2, 0.1, 0.5]), "regauss_e2": np.array([0.0, 0.0, 0.1, 0.0]),
           "regauss_flag": np.array([0, 0, 0, 1]), "regauss_g1": np.zeros(4), "regauss_g2": np.zeros(4)}
    r = apply_responsivity(tab, ["REGAUSS", "KSB"])
    erms2 = (0.04 + 0.04 + 0.02) / 3 / 2
    assert np.isclose(r["REGAUSS"], 2 * (1 - erms2)) and "KSB" not in r
    assert np.allclose(tab["regauss_g1"][:3], np.array([0.2, -0.2, 0.1]) / r["REGAUSS"])
    assert np.isnan(tab["regauss_g1"][3])


def test_measure_dataset_runs_shards_through_the_mapper(tmp_path):
    """One executor item per shard; the table is in stamp order and equals measuring the loaded stamps."""
    from astrotool.io.tables import parquet_metadata, read_parquet
    from astrotool_lens.data import ShearDataset
    from astrotool_lens.generate import generate_dataset

    generate_dataset(easy_config("m", n=12, shard_size=5), tmp_path / "m", 2, serial_map)
    ds = ShearDataset(tmp_path / "m")
    calls = []

    def mapper(fn, items, desc="", keys=None):
        calls.append([(t.start, t.stop) for t in items])
        return serial_map(fn, items, desc, keys)

    res = measure_dataset(ds, MeasureConfig(methods=["KSB"]), tmp_path / "m_hsm.parquet", mapper=mapper)
    assert calls == [[(0, 5), (5, 10), (10, 12)]] and res["n"] == 12
    t = read_parquet(tmp_path / "m_hsm.parquet")
    gal, psf = ds.load_stamps()
    want = measure_arrays(gal, psf, ["KSB"])
    assert np.array_equal(t.column("index").to_numpy(), np.arange(12))
    assert np.array_equal(t.column("ksb_g1").to_numpy(), want["ksb_g1"], equal_nan=True)
    assert parquet_metadata(tmp_path / "m_hsm.parquet")["dataset"] == "m"


def test_table_problem_names_what_makes_a_table_stale(tmp_path):
    """A table serves only the dataset it was measured on, with the same settings and methods."""
    from astrotool.io.tables import parquet_metadata
    from astrotool_lens.data import ShearDataset
    from astrotool_lens.generate import generate_dataset
    from astrotool_lens.measure import table_problem

    out, table = tmp_path / "s", tmp_path / "s_hsm.parquet"
    generate_dataset(easy_config("s", n=8, shard_size=4), out, 2, serial_map)
    ds = ShearDataset(out)
    cfg = MeasureConfig(methods=["KSB", "REGAUSS"])
    assert "no table" in table_problem(table, ds, cfg)
    measure_dataset(ds, cfg, table, mapper=serial_map)
    meta = parquet_metadata(table)
    assert meta["settings"] == {"conversion": "exact", "guess_sig_gal": 5.0, "guess_sig_psf": 3.0}
    assert meta["identity"]["n"] == 8 and meta["identity"]["created_utc"] == ds.manifest["provenance"]["created_utc"]
    assert table_problem(table, ds, cfg) is None
    assert table_problem(table, ds, MeasureConfig(methods=["KSB"])) is None            # a subset of the methods
    assert "lacks BJ" in table_problem(table, ds, MeasureConfig(methods=["KSB", "BJ"]))
    assert "conversion" in table_problem(table, ds, cfg.model_copy(update={"conversion": "responsivity"}))
    assert "guess_sig_gal 5 -> 4" in table_problem(table, ds, cfg.model_copy(update={"guess_sig_gal": 4.0}))
    # the same command again keeps the finished dataset (and so its tables) as it was
    generate_dataset(easy_config("s", n=8, shard_size=4), out, 2, serial_map)
    assert table_problem(table, ShearDataset(out), cfg) is None
    # another dataset under the same name: n differs, and so does the manifest
    generate_dataset(easy_config("s", n=12, shard_size=4), out, 2, serial_map, overwrite=True)
    assert "another dataset" in table_problem(table, ShearDataset(out), cfg)
    generate_dataset(easy_config("s", n=8, shard_size=4), out, 3, serial_map, overwrite=True)
    assert "another dataset" in table_problem(table, ShearDataset(out), cfg)             # same n, other seed
    table.write_bytes(b"PAR1 truncated")
    assert "unreadable" in table_problem(table, ShearDataset(out), cfg)


def test_measure_command_skips_only_a_valid_table_and_closes_the_dataset(tmp_path, capsys, monkeypatch):
    import json

    from astrotool.cli import main
    from astrotool_lens.data import ShearDataset

    closed = []
    monkeypatch.setattr(ShearDataset, "close", lambda self: closed.append(self.n))
    ws = tmp_path / "ws"
    gen = ["-w", ws, "-q", "lens", "generate", "--preset", "shearnet", "--name", "c", "--stamp-size", 24,
           "--shard-size", 6, "--set", "lens.generate.galaxy.hlr=[0.5, 0.8]",
           "--set", "lens.generate.galaxy.hlr_unit=\"arcsec\"", "--set", "lens.generate.psf.fwhm=0.6"]

    def run(*args):
        code = main(["--json", *(str(a) for a in args)])
        out = capsys.readouterr()
        assert code == 0, out.err
        return json.loads(out.out)

    run(*gen, "-n", 6)
    measure = ["-w", ws, "-q", "lens", "measure", "--dataset", "c", "--methods", "KSB"]
    assert run(*measure)["n"] == 6 and closed == [6]
    assert run(*measure)["skipped"] is True
    assert run(*measure, "--conversion", "responsivity")["skipped"] is False       # other settings
    run(*gen, "-n", 12, "--overwrite")
    res = run(*measure, "--conversion", "responsivity")
    assert res["skipped"] is False and res["n"] == 12                                 # another dataset
    assert closed == [6, 6, 6, 12]
    run("-w", ws, "-q", "--set", "lens.train.threads=1", "--set", "lens.train.blocks=2", "--set",
        "lens.train.hidden=8", "lens", "train", "--dataset", "c", "--epochs", 1, "--width", 4, "--batch-size", 6)
    rep = run("-w", ws, "-q", "--set", "lens.measure.conversion=\"responsivity\"", "lens", "evaluate", "--model",
              "c_cnn", "--classical", "KSB", "--split", "all", "--no-plots", "--no-symmetrize", "--json")
    assert closed == [6, 6, 6, 12, 12, 12] and rep["n"] == 12           # train and evaluate close theirs too
    records = [json.loads(p.read_text()) for p in (ws / "runs").glob("*measure*/run.json")]
    assert len(records) == 4                                           # the skipped run records its input too
    assert all(r["inputs"] and r["inputs"][0].endswith("shear/c") for r in records), records


def test_overwrite_keeps_the_parts_a_stopped_run_of_it_made(tmp_path):
    """`measure --overwrite` stopped half-way and run again threw away the parts it had measured."""
    import os

    from astrotool.made_with import Overwrite
    from astrotool_lens.measure import _parts_dir, discard_parts

    out = tmp_path / "d_hsm.parquet"
    parts = _parts_dir(out)
    parts.mkdir()
    old, mine = parts / "a.parquet", parts / "b.parquet"
    old.write_bytes(b"x")
    mine.write_bytes(b"y")
    since = mine.stat().st_mtime
    os.utime(old, (since - 60, since - 60))
    discard_parts(out, Overwrite(since))
    assert not old.exists() and mine.exists()
    discard_parts(out, True)                   # a plain --overwrite: every part
    assert not parts.exists()


def test_measuring_one_method_with_other_settings_keeps_the_others(ws, capsys):
    from astrotool.io.tables import parquet_metadata

    table = ws / "lens" / "predictions" / "s2_hsm.parquet"
    _run(capsys, ws, "lens", "measure", "--dataset", "s2", "--methods", "REGAUSS,KSB")
    _run(capsys, ws, "--set", "lens.measure.guess_sig_gal=4.0", "lens", "measure", "--dataset", "s2",
         "--methods", "KSB")
    meta = parquet_metadata(table)
    assert meta["methods"] == ["REGAUSS", "KSB"] and meta["settings"]["guess_sig_gal"] == 4.0


def test_validate_does_not_replace_a_table_of_other_settings(tmp_path, capsys):
    from astrotool.io.tables import parquet_metadata

    _run(capsys, tmp_path, *GEN, "--name", "r", "-n", 12, "--set", "lens.generate.shape.ring=true")
    table = tmp_path / "lens" / "predictions" / "r_hsm.parquet"
    _run(capsys, tmp_path, "lens", "measure", "--dataset", "r", "--methods", "REGAUSS", "--conversion",
         "responsivity")
    _, err = _run(capsys, tmp_path, "lens", "validate", "r", "--method", "regauss", code=2)
    assert "conversion responsivity -> exact" in err and "--overwrite" in err
    assert parquet_metadata(table)["conversion"] == "responsivity"
    _run(capsys, tmp_path, "--set", "lens.measure.conversion=\"responsivity\"", "lens", "validate", "r",
         "--method", "regauss")
    assert parquet_metadata(table)["conversion"] == "responsivity"


def test_measure_exits_2_when_every_stamp_failed(tmp_path, capsys):
    import numpy as np
    from astropy.io import fits

    fits.PrimaryHDU(np.zeros((3, 24, 24), np.float32)).writeto(tmp_path / "blank.fits")     # nothing to measure
    psf = np.zeros((24, 24), np.float32)
    psf[10:14, 10:14] = 1.0
    fits.PrimaryHDU(psf).writeto(tmp_path / "psf.fits")
    res, err = _run(capsys, tmp_path, "lens", "measure", tmp_path / "blank.fits", "--psf", tmp_path / "psf.fits",
                    "--name", "x1", "--methods", "KSB", code=2)
    assert res["failed"] == {"KSB": 3} and "every stamp failed" in err


def test_a_table_of_another_dataset_does_not_bring_its_methods(ws, capsys):
    from astrotool.io.tables import parquet_metadata

    _run(capsys, ws, "lens", "measure", "--dataset", "s2", "--methods", "REGAUSS,BJ")
    _run(capsys, ws, "--overwrite", *GEN, "--name", "s2", "-n", 12)          # the dataset drawn again
    _run(capsys, ws, "lens", "measure", "--dataset", "s2", "--methods", "KSB")
    assert parquet_metadata(ws / "lens" / "predictions" / "s2_hsm.parquet")["methods"] == ["KSB"]


def _spy(monkeypatch):
    """Record the methods each measure_arrays call is given (the executor runs items in this process)."""
    import astrotool_lens.measure as measure

    seen, real = [], measure.measure_arrays

    def spy(gal, psf, methods, *a, **k):
        seen.append(tuple(methods))
        return real(gal, psf, methods, *a, **k)

    monkeypatch.setattr(measure, "measure_arrays", spy)
    return seen


def test_another_method_of_the_same_settings_is_measured_alone_and_joined(ws, capsys, monkeypatch):
    from astrotool.io.tables import parquet_metadata, read_parquet

    table = ws / "lens" / "predictions" / "s2_hsm.parquet"
    _run(capsys, ws, "lens", "measure", "--dataset", "s2", "--methods", "REGAUSS")
    before = read_parquet(table).column("regauss_g1").to_numpy()
    seen = _spy(monkeypatch)
    _run(capsys, ws, "--executor", "serial", "lens", "measure", "--dataset", "s2", "--methods", "KSB")
    assert seen and set(seen) == {("KSB",)}
    t, meta = read_parquet(table), parquet_metadata(table)
    assert meta["methods"] == ["REGAUSS", "KSB"] and set(meta["failed"]) == {"REGAUSS", "KSB"}
    np.testing.assert_array_equal(t.column("regauss_g1").to_numpy(), before)
    assert t.column("index").to_pylist() == list(range(8)) and "ksb_g1" in t.column_names


def test_a_table_where_every_stamp_failed_is_recorded_as_an_error(tmp_path, capsys):
    from astropy.io import fits

    fits.PrimaryHDU(np.zeros((3, 24, 24), np.float32)).writeto(tmp_path / "blank.fits")
    psf = np.zeros((24, 24), np.float32)
    psf[10:14, 10:14] = 1.0
    fits.PrimaryHDU(psf).writeto(tmp_path / "psf.fits")
    _, err = _run(capsys, tmp_path, "lens", "measure", tmp_path / "blank.fits", "--psf", tmp_path / "psf.fits",
                  "--name", "x1", "--methods", "KSB", code=2)
    (record,) = [json.loads(p.read_text()) for p in (tmp_path / "runs").glob("*/run.json")]
    assert record["status"] == "error" and record["exit_code"] == 2 and "every stamp failed" in err
    assert f"{tmp_path / 'blank.fits'}: every stamp failed with every method" in err   # the input named


def test_adding_a_method_warns_only_of_its_own_failures(ws, capsys, monkeypatch):
    from astrotool.io.tables import parquet_metadata

    _failing(monkeypatch, methods=["REGAUSS"])
    _, err = _run(capsys, ws, "--executor", "serial", "lens", "measure", "--dataset", "s2", "--methods", "REGAUSS,KSB")
    assert "REGAUSS: 8 of 8 stamps failed" in err
    res, err = _run(capsys, ws, "--executor", "serial", "lens", "measure", "--dataset", "s2", "--methods", "BJ")
    assert "REGAUSS" not in err and res["measured"] == ["BJ"]
    meta = parquet_metadata(ws / "lens" / "predictions" / "s2_hsm.parquet")
    assert meta["failed"]["REGAUSS"] == 8 and set(meta["failed"]) == {"REGAUSS", "KSB", "BJ"}


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


@pytest.mark.workspace("checks")
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


@pytest.mark.workspace("checks")
def test_measure_dataset_option_with_a_psf_uses_that_psf(ws, capsys, tmp_path):
    """`measure --dataset f3 --psf FILE` measured with the dataset's own PSFs; the positional form used the file."""
    from astrotool.io.tables import read_parquet

    _, psf = _cube(tmp_path / "cube.fits")
    got = {}
    for name, args in (("own", ["--dataset", "f3"]), ("opt", ["--dataset", "f3", "--psf", psf]),
                       ("pos", ["f3", "--psf", psf])):
        code, out, err = run(capsys, ws, "lens", "measure", *args, "--name", name, "--methods", "KSB")
        assert code == 0, err
        got[name] = read_parquet(json.loads(out)["path"]).column("ksb_g1").to_numpy()
    assert np.array_equal(got["opt"], got["pos"], equal_nan=True)
    assert np.nanmax(np.abs(got["opt"] - got["own"])) > 1e-3


@pytest.mark.workspace("checks")
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


@pytest.mark.workspace("calibration")
def test_measure_names_a_copied_dataset_by_its_folder(ws, capsys):
    pred = ws / "lens" / "predictions"
    dst = ws / "lens" / "shear" / "gcopy"
    if not dst.exists():
        shutil.copytree(ws / "lens" / "shear" / "g", dst)
    code, out, err = run(capsys, ws, "lens", "measure", "--dataset", "gcopy", "--methods", "KSB")
    assert code == 0, err
    assert (pred / "gcopy_hsm.parquet").is_file() and not (pred / "g_hsm.parquet").exists()


@pytest.mark.workspace("calibration")
def test_measure_refuses_an_input_with_another_dataset(ws, capsys):
    code, _, err = run(capsys, ws, "lens", "measure", "g", "--dataset", "f3", "--methods", "KSB")
    assert code == 2 and "--dataset" in err and "'g'" in err and "'f3'" in err


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


@pytest.mark.workspace("folders")
def test_measure_takes_the_same_dataset_as_a_relative_path_and_a_name(ws, capsys, monkeypatch):
    monkeypatch.chdir(ws.parent)
    code, _, err = run(capsys, ws, "lens", "measure", "ws/lens/shear/g", "--dataset", "g", "--methods", "KSB")
    assert code == 0, err
    code, _, err = run(capsys, ws, "lens", "measure", "ws/lens/shear/g", "--dataset", "f3", "--methods", "KSB")
    assert code == 2 and "name one of them" in err
