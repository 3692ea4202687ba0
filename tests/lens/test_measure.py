"""HSM estimators on stamps with a known shear; failures are counted, not fatal."""

from __future__ import annotations

import numpy as np

from astrotool_lens.config import GenerateConfig, MeasureConfig
from astrotool_lens.generate import draw_stamps
from astrotool_lens.measure import apply_responsivity, measure_arrays, measure_dataset

from .conftest import easy_config, serial_map


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
