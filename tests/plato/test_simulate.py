"""Tests of ``astro plato simulate``: transit shape and timing, reproducibility, files."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from astrotool.errors import AstroError
from astrotool.io.tables import parquet_metadata, parquet_provenance
from astrotool_plato import simulate as sim
from astrotool_plato.config import PlatoConfig, SimulateConfig

SEED = 12345


def quiet_cfg(**kw) -> SimulateConfig:
    """Low-noise curves: 3 d at 25 s, modest granulation, no spots."""
    base = dict(n_curves=6, duration_days=3.0, noise_ppm=100.0, granulation_ppm=20.0, rotation_fraction=0.0,
                transit_fraction=1.0, depth_ppm=(600.0, 900.0), duration_hours=(3.0, 6.0))
    base.update(kw)
    return SimulateConfig(**base)


def running_mean(x: np.ndarray, w: int) -> np.ndarray:
    c = np.cumsum(np.insert(x.astype(np.float64), 0, 0.0))
    return (c[w:] - c[:-w]) / w


@pytest.mark.parametrize("shape", ["limb-darkened", "trapezoid"])
def test_noiseless_transit_is_deepest_at_t0_with_labelled_depth_and_duration(shape):
    cfg = quiet_cfg(shape=shape)
    time = sim.time_grid(cfg)
    dt = cfg.cadence_s / sim.SECONDS_PER_DAY
    for i in range(cfg.n_curves):
        par = sim.draw_params(i, SEED, cfg)
        _, deficit = sim.simulate_curve(par, SEED, cfg, time)
        assert par.has_transit
        # deepest sample within one cadence of T0 (the trapezoid's flat bottom: inside T23)
        deepest = time[deficit >= deficit.max() * (1 - 1e-9)]
        assert np.min(np.abs(deepest - par.t0)) <= dt
        assert deficit.max() * 1e6 == pytest.approx(par.depth, rel=2e-3)
        assert np.ptp(time[deficit > 0]) * 24 == pytest.approx(par.duration, abs=2 * dt * 24)


def test_noisy_transit_at_t0_has_labelled_depth_within_10_percent():
    cfg = quiet_cfg(n_curves=5)
    time, flux, params = sim.simulate_curves(range(cfg.n_curves), SEED, cfg)
    for f, par in zip(flux, params):
        t14 = par.duration / 24
        w = int(round(0.8 * t14 * 86400 / cfg.cadence_s))   # box matched to the transit
        smooth = running_mean(f, w)
        t_smooth = time[: smooth.size] + 0.5 * (w - 1) * cfg.cadence_s / 86400
        assert abs(t_smooth[np.argmin(smooth)] - par.t0) < 0.06 * t14
        core = np.abs(time - par.t0) < 0.15 * t14
        near = (np.abs(time - par.t0) > 0.6 * t14) & (np.abs(time - par.t0) < 2.5 * t14)
        measured = (np.median(f[near]) - f[core].mean()) * 1e6
        assert measured == pytest.approx(par.depth, rel=0.10)


def test_curves_without_transit_have_no_dip_and_transits_are_detectable():
    cfg = quiet_cfg(n_curves=12, transit_fraction=0.5, depth_ppm=(300.0, 900.0), eb_fraction=0, beb_fraction=0)
    time, flux, params = sim.simulate_curves(range(cfg.n_curves), SEED, cfg)
    has = [p.has_transit for p in params]
    assert any(has) and not all(has)
    w = int(round(2 * 3600 / cfg.cadence_s))                  # 2 h box
    for f, par in zip(flux, params):
        dip = (np.median(f) - running_mean(f, w).min()) * 1e6
        _, deficit = sim.simulate_curve(par, SEED, cfg, time)
        if par.has_transit:
            assert deficit.max() > 0
            assert dip > 0.4 * par.depth
        else:
            assert not deficit.any()
            assert dip < 60.0                                  # noise only: ~10 ppm rms per 2 h box
            assert math.isnan(par.t0) and math.isnan(par.depth) and par.n_transits == 0 and par.snr == 0


def test_binaries_have_primary_and_secondary_eclipses_half_a_period_apart_and_no_transit():
    cfg = quiet_cfg(n_curves=40, transit_fraction=0.3, eb_fraction=0.5, beb_fraction=0.5, noise_ppm=0.0,
                    granulation_ppm=0.0, eclipse_period_days=(0.8, 2.0))
    time, flux, params = sim.simulate_curves(range(cfg.n_curves), SEED, cfg)
    kinds = {p.eclipse for p in params}
    assert kinds == {"", "eb", "beb"}
    for f, par in zip(flux, params):
        if not par.eclipse:
            assert par.has_transit or f.min() == 1.0
            continue
        assert not par.has_transit and math.isnan(par.t0)
        low, high = cfg.eb_depth_ppm if par.eclipse == "eb" else cfg.beb_depth_ppm
        assert low <= par.eclipse_depth <= high and par.eclipse_secondary < 0.8 * par.eclipse_depth
        for centre, depth in ((par.eclipse_t0, par.eclipse_depth),
                              (par.eclipse_t0 + 0.5 * par.eclipse_period, par.eclipse_secondary)):
            centre = centre % par.eclipse_period   # the first such eclipse of the curve
            k = np.argmin(np.abs(time - centre))
            assert (1.0 - f[k]) * 1e6 == pytest.approx(depth, rel=2e-3, abs=0.1)
            # zero one eclipse duration / 2 away from the centre, full depth on the flat bottom
            edge = np.abs(time - centre) >= 0.5 * par.eclipse_duration / 24 + 1e-9
            assert np.all(f[edge & (np.abs(time - centre) < 0.25 * par.eclipse_period)] == 1.0)


def test_output_does_not_depend_on_chunking_and_items_differ():
    cfg = quiet_cfg(n_curves=7, transit_fraction=0.5, rotation_fraction=0.5, granulation_ppm=60.0)
    _, whole, p_whole = sim.simulate_curves(range(7), SEED, cfg)
    parts = [sim.simulate_curves(range(a, b), SEED, cfg) for a, b in [(0, 3), (3, 4), (4, 7)]]
    chunked = np.concatenate([f for _, f, _ in parts])
    np.testing.assert_array_equal(whole, chunked)
    assert [p.__dict__ for p in p_whole] == [p.__dict__ for _, _, ps in parts for p in ps]
    # each curve has its own stream; another base seed gives other curves
    assert all(not np.array_equal(whole[i], whole[j]) for i in range(7) for j in range(i))
    _, other, _ = sim.simulate_curves(range(7), SEED + 1, cfg)
    assert not np.array_equal(whole, other)


def test_periodic_transits_repeat_with_the_period():
    cfg = quiet_cfg(n_curves=1, duration_days=6.0, periodic_fraction=1.0, period_days=(1.5, 2.0),
                    duration_hours=(2.0, 3.0), noise_ppm=0.0, granulation_ppm=0.0)
    par = sim.draw_params(0, SEED, cfg)
    time = sim.time_grid(cfg)
    _, deficit = sim.simulate_curve(par, SEED, cfg, time)
    assert 1.5 <= par.period <= 2.0 and par.n_transits >= 3
    later = [par.t0 + k * par.period for k in range(1, par.n_transits)]
    later = [tk for tk in later if tk < time[-1] - par.duration / 48]   # whole transits only
    assert len(later) >= 2
    for tk in later:
        i = np.argmin(np.abs(time - tk))
        assert deficit[i] * 1e6 == pytest.approx(par.depth, rel=0.02)
    starts = np.flatnonzero(np.diff((deficit > 0).astype(int)) == 1)
    assert len(starts) >= par.n_transits - 1


def test_curves_are_seeded_by_the_core_derive_seed_and_take_any_base_seed():
    from astrotool.seeding import derive_seed

    params_seed, noise_seed = sim.curve_seeds(7, 3)
    assert params_seed != noise_seed and (params_seed, noise_seed) == sim.curve_seeds(7, 3)
    assert sim.curve_seeds(7, 4)[0] != params_seed and sim.curve_seeds(8, 3)[0] != params_seed
    assert 0 <= min(params_seed, noise_seed) and max(params_seed, noise_seed) < 2**63
    assert params_seed == derive_seed(7, 3, "params")  # the core's rule, not a scheme of its own
    cfg = quiet_cfg(n_curves=2, duration_days=0.5, duration_hours=(1.0, 3.0))
    _, flux, params = sim.simulate_curves(range(2), -5, cfg)     # numpy's SeedSequence refuses negative seeds
    assert np.isfinite(flux).all() and [p.id for p in params] == ["sim000000", "sim000001"]
    assert sim.content_hash(-5, cfg) != sim.content_hash(5, cfg)


def test_harvey_noise_has_requested_rms_and_correlation_time():
    rng = np.random.default_rng(1)
    x = sim.harvey_noise(34560, 25.0, 80.0, 10.0, 2.0, rng)
    assert np.std(x) * 1e6 == pytest.approx(80.0, rel=0.10)
    lag = 24                                                   # 10 min = one correlation time
    r = np.corrcoef(x[:-lag], x[lag:])[0, 1]
    assert 0.2 < r < 0.5                                       # exp(-1) = 0.37 for an AR(1)
    assert abs(np.corrcoef(x[:-2000], x[2000:])[0, 1]) < 0.1


def test_chunk_files_resume_and_refuse_other_settings(tmp_path):
    cfg = quiet_cfg(n_curves=3, duration_days=1.0, transit_fraction=0.5)
    path = tmp_path / f"{sim.chunk_stem(cfg.name, 0, 3)}_lightcurves.parquet"
    item = sim.ChunkItem(start=0, stop=3, base_seed=SEED, cfg=cfg, path=str(path), overwrite=False)
    with pytest.raises(dataclasses.FrozenInstanceError):
        item.overwrite = True
    first = sim.simulate_chunk(item, 999)
    assert first.written and path.exists()
    table = pq.read_table(path)
    assert table.column_names == ["id", "time", "flux", "flux_err"]
    assert table.schema.field("time").metadata[b"unit"] == b"d"
    assert pq.ParquetFile(path).metadata.num_row_groups == 3
    meta = json.loads(table.schema.metadata[b"astrotool"])
    assert meta["seed"] == SEED and meta["ids"] == ["sim000000", "sim000001", "sim000002"]
    record = parquet_provenance(path)
    assert record["command"] == "plato simulate" and record["seed"] == SEED
    assert record["versions"]["astrotool-plato"] == "0.1.0"
    curves = sim.read_lightcurves(path)
    assert list(curves) == meta["ids"]
    _, flux, _ = sim.simulate_curves(range(3), SEED, cfg)
    for row, (t, f, e) in enumerate(curves.values()):
        np.testing.assert_array_equal(f, flux[row])
        np.testing.assert_allclose(e, 100e-6)
        assert t.size == sim.n_samples(cfg) == 3456 and t[1] - t[0] == pytest.approx(25 / 86400)
    mtime = path.stat().st_mtime_ns
    again = sim.simulate_chunk(item, 0)
    assert not again.written and path.stat().st_mtime_ns == mtime
    assert again.params == first.params
    other = quiet_cfg(n_curves=3, duration_days=1.0, noise_ppm=50.0)
    with pytest.raises(AstroError, match="other settings"):
        sim.simulate_chunk(dataclasses.replace(item, cfg=other), 0)
    assert path.stat().st_mtime_ns == mtime
    assert sim.simulate_chunk(dataclasses.replace(item, overwrite=True), 0).written
    assert path.stat().st_mtime_ns > mtime


def recording_mapper(calls: list):
    """A ``Context.map``-like mapper that runs serially and records what it was given."""
    def mapper(fn, items, desc="", keys=None):
        calls.append((fn, list(items), list(keys)))
        return [(k, fn(item, 0)) for k, item in zip(keys, items)]
    return mapper


def test_simulate_maps_frozen_chunk_items_and_writes_labels_of_every_curve_made(tmp_path):
    cfg = quiet_cfg(n_curves=5, duration_days=0.5, duration_hours=(1.0, 3.0), transit_fraction=0.5,
                    chunk_size=2)
    calls = []
    res = sim.simulate(cfg, SEED, tmp_path / "lc", tmp_path / "labels", recording_mapper(calls), overwrite=False)
    (fn, items, keys), = calls
    assert fn is sim.simulate_chunk
    assert keys == ["sim000000-000001", "sim000002-000003", "sim000004-000004"]
    assert [(i.start, i.stop) for i in items] == [(0, 2), (2, 4), (4, 5)]
    assert all(isinstance(i, sim.ChunkItem) and i.base_seed == SEED and i.cfg is cfg for i in items)
    assert len(res.written) == 3 and res.kept == [] and res.labels_written and res.stale == ()
    labels = pq.read_table(res.labels).to_pylist()
    assert [r["id"] for r in labels] == [f"sim{i:06d}" for i in range(5)]
    assert [r["file"] for r in labels] == [f"{k}_lightcurves.parquet" for k in keys for _ in range(2)][:5]
    # a mapper that lost an item (a failed file): labels for the curves made only, none for a file not written
    lossy = sim.simulate(cfg, SEED, tmp_path / "lc2", tmp_path / "labels2",
                         lambda fn, items, desc, keys: [(keys[0], fn(items[0], 0))], overwrite=False)
    assert len(lossy.chunks) == 1 and pq.read_metadata(lossy.labels).num_rows == 2


def test_labels_table_matches_parameters(tmp_path):
    cfg = quiet_cfg(n_curves=8, transit_fraction=0.5)
    params = [sim.draw_params(i, SEED, cfg) for i in range(8)]
    path = sim.write_labels(tmp_path / "sim_labels.parquet", params, ["f.parquet"] * 8, SEED, cfg)
    t = pq.read_table(path)
    for col in ("id", "has_transit", "t0", "duration", "depth", "period"):
        assert col in t.column_names
    assert t.schema.field("duration").metadata[b"unit"] == b"h"
    assert t.schema.field("depth").metadata[b"unit"] == b"1e-06"          # ppm, as an astropy unit
    from astropy.table import Table

    labels = Table.read(path, format="parquet")
    assert str(labels["duration"].unit) == "h" and labels["depth"].unit.scale == 1e-6
    assert parquet_provenance(path)["command"] == "plato simulate"
    assert parquet_metadata(path)["content_hash"] == sim.content_hash(SEED, cfg)
    rows = t.to_pylist()
    assert len(rows) == 8 and 0 < sum(p.has_transit for p in params) < 8
    for row, par in zip(rows, params):
        assert row["id"] == par.id and row["has_transit"] == par.has_transit
        if par.has_transit:
            assert row["depth"] == par.depth and 600 <= row["depth"] <= 900
            assert 3.0 <= row["duration"] <= 6.0 and 0 < row["t0"] < 3.0
            assert math.isnan(row["period"])
        else:
            assert math.isnan(row["t0"])


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="extra"):
        PlatoConfig.model_validate({"simulate": {"n_curve": 3}})
    with pytest.raises(ValueError, match="does not fit"):
        SimulateConfig(duration_days=0.2, duration_hours=(2.0, 6.0))
    with pytest.raises(ValueError, match="lower bound"):
        SimulateConfig(depth_ppm=(900.0, 100.0))
    assert PlatoConfig.model_validate({"simulate": {"depth_ppm": [100, 200]}}).simulate.depth_ppm == (100.0, 200.0)


def test_cli_simulate_same_files_with_serial_and_two_processes(tmp_path, capsys):
    from astrotool.cli import main

    args = ["--json", "plato", "simulate", "-n", "5", "--days", "0.5", "--chunk-size", "2", "--seed", "7",
            "--set", "plato.simulate.duration_hours=[1.0, 3.0]"]
    assert main(["-w", str(tmp_path / "a"), *args]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["curves"] == 5 and len(out["lightcurves_written"]) == 3 and out["labels_written"]
    assert main(["-w", str(tmp_path / "b"), "--executor", "process", "-j", "2", *args]) == 0
    capsys.readouterr()
    for name in ("sim000000-000001", "sim000002-000003", "sim000004-000004"):
        a = pq.read_table(tmp_path / "a/plato/raw" / f"{name}_lightcurves.parquet")
        b = pq.read_table(tmp_path / "b/plato/raw" / f"{name}_lightcurves.parquet")
        assert a.equals(b)
    la = pq.read_table(tmp_path / "a/plato/labels/sim_labels.parquet")
    lb = pq.read_table(tmp_path / "b/plato/labels/sim_labels.parquet")
    assert la.num_rows == lb.num_rows == 5
    for col in la.column_names:                                # NaN-aware comparison
        np.testing.assert_array_equal(np.asarray(la[col].to_pylist()), np.asarray(lb[col].to_pylist()))
    # a second run keeps everything; other settings under the same name are refused (exit 2)
    files = sorted((tmp_path / "a/plato").rglob("*.parquet"))
    assert len(files) == 4
    mtimes = [f.stat().st_mtime_ns for f in files]
    assert main(["-w", str(tmp_path / "a"), *args]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["lightcurves_written"] == [] and not again["labels_written"]
    assert sorted(again["lightcurves_kept"]) == sorted(out["lightcurves_written"])
    assert [f.stat().st_mtime_ns for f in files] == mtimes
    assert main(["-w", str(tmp_path / "a"), *args, "--noise-ppm", "10"]) == 2
    err = capsys.readouterr().err
    assert "other settings" in err and "plato.simulate.noise_ppm: " in err and " -> 10.0" in err, err
    assert [f.stat().st_mtime_ns for f in files] == mtimes


def test_labels_follow_a_new_chunk_size_and_corrupt_outputs_are_named(tmp_path, capsys):
    from astrotool.cli import main

    ws = tmp_path / "ws"
    args = ["--json", "plato", "simulate", "-n", "4", "--days", "0.5", "--seed", "7",
            "--set", "plato.simulate.duration_hours=[1.0, 3.0]"]
    assert main(["-w", str(ws), *args, "--chunk-size", "2"]) == 0
    capsys.readouterr()
    assert main(["-w", str(ws), *args, "--chunk-size", "3"]) == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert out["labels_written"]  # same settings and seed, but the curves moved to other files
    assert "holds 2 file(s) of an earlier layout" in captured.err
    assert "sim000000-000001_lightcurves.parquet, sim000002-000003_lightcurves.parquet" in captured.err
    labels = pq.read_table(ws / "plato/labels/sim_labels.parquet").column("file").to_pylist()
    assert labels == ["sim000000-000002_lightcurves.parquet"] * 3 + ["sim000003-000003_lightcurves.parquet"]

    bad = ws / "plato/labels/sim_labels.parquet"
    bad.write_bytes(bad.read_bytes()[:100])  # truncated
    assert main(["-w", str(ws), *args, "--chunk-size", "3"]) == 2
    err = capsys.readouterr().err
    assert "sim_labels.parquet" in err and "not a readable Parquet file" in err and "Traceback" not in err


def test_read_lightcurves_rejects_other_files(tmp_path):
    from astrotool.errors import InputError

    other = tmp_path / "other.parquet"
    pq.write_table(pa.table({"id": ["a"], "mag": [1.0]}), other)
    with pytest.raises(InputError, match="other.parquet: missing column\(s\) time, flux, flux_err"):
        sim.read_lightcurves(other)
    with pytest.raises(InputError, match="file not found"):
        sim.read_lightcurves(tmp_path / "missing.parquet")


def test_psls_backend_injects_events_into_psls_curves_and_prepare_accepts_them(tmp_path, capsys):
    pytest.importorskip("psls")
    from astrotool.cli import main
    from astrotool_plato import psls_backend

    cfg = SimulateConfig(backend="psls", n_curves=2, duration_days=5.5, transit_fraction=1.0, depth_ppm=(500.0, 800.0),
                         duration_hours=(3.0, 5.0), magnitude=(10.0, 10.0))
    t1, f1, p1 = psls_backend.simulate_curves([0, 1], SEED, cfg)
    t0, f0, p0 = psls_backend.simulate_curves([0, 1], SEED, cfg.model_copy(update={"transit_fraction": 0.0}))
    for a, b, fa, fb, par in zip(t1, t0, f1, f0, p1):
        np.testing.assert_array_equal(a, b)                   # the same PSLS star: seeded by (seed, index) only
        assert 0.3 < np.diff(a).max() * 24 < 0.5              # PLATO's 20-min gap near day 5
        deficit = sim.transit_deficit(a, par.t0, par.duration, par.depth, par.impact, cfg.limb_darkening, cfg.shape)
        np.testing.assert_allclose(1.0 - fa.astype(np.float64) / fb, deficit, atol=2e-6)
        assert deficit.max() == pytest.approx(par.depth * 1e-6, rel=0.02)
        assert 3 < par.snr < 300                              # from the curve's own noise (V = 10)
    args = ["-w", str(tmp_path), "--json", "--seed", str(SEED), "plato", "simulate", "-n", "2", "--days", "5.5",
            "--set", "plato.simulate.backend=psls", "--set", "plato.simulate.magnitude=[10,10]",
            "--set", "plato.simulate.transit_fraction=1", "--set", "plato.simulate.depth_ppm=[500,800]",
            "--set", "plato.simulate.duration_hours=[3,5]"]
    assert main(args) == 0
    capsys.readouterr()
    curves = sim.read_lightcurves(next((tmp_path / "plato/raw").glob("*_lightcurves.parquet")))
    np.testing.assert_array_equal(curves["sim000000"][1], f1[0])
    # the label table holds each curve's own S/N, not the one the drawn noise_ppm would give
    snr = pq.read_table(tmp_path / "plato/labels/sim_labels.parquet").column("snr").to_pylist()
    assert snr == pytest.approx([p.snr for p in p1]) and snr != pytest.approx([
        sim.draw_params(i, SEED, cfg).snr for i in range(2)], rel=0.05)
    assert main(["-w", str(tmp_path), "--json", "--set", "plato.prepare.split=[1,0,0]", "plato", "prepare"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["curves"] == 2 and out["length"] == 18944 and out["kinds"] == {"planet": 2}


def test_builtin_gaps_steps_and_magnitude_noise():
    cfg = quiet_cfg(n_curves=40, duration_days=11.0, transit_fraction=0.0, eb_fraction=0, beb_fraction=0,
                    granulation_ppm=0.0, gaps=True, step_fraction=0.5, noise_from_magnitude=True,
                    magnitude=(9.0, 13.0))
    time, flux, params = sim.simulate_curves(range(cfg.n_curves), SEED, cfg)
    # two 20-min gaps (days 5 and 10), nothing else missing
    missing = sim.n_samples(cfg) - time.size
    assert missing == 2 * 48 and (np.diff(time) > 0.9 * 20 / 1440).sum() == 2
    steps = [p for p in params if p.step_ppm]
    assert 10 < len(steps) < 30 and all(100 <= abs(p.step_ppm) <= 1200 for p in steps)
    for f, p in zip(flux, params):
        assert p.noise_ppm == pytest.approx(170 * 10 ** (0.25 * (p.magnitude - 9)))
        d = np.diff(f.astype(np.float64))
        assert 1.4826 * np.median(np.abs(d)) / np.sqrt(2) * 1e6 == pytest.approx(p.noise_ppm, rel=0.05)
        if p.step_ppm:   # the step: the mean flux after it differs by its size
            after = time >= p.step_time
            if 500 < after.sum() < time.size - 500:
                jump = (f[after].mean() - f[~after].mean()) * 1e6
                assert jump == pytest.approx(p.step_ppm, abs=6 * p.noise_ppm / np.sqrt(500))
    # off by default: the same configuration without them draws the same transits as before
    a = sim.draw_params(3, SEED, quiet_cfg())
    b = sim.draw_params(3, SEED, quiet_cfg(gaps=True))
    assert (a.t0, a.depth) == (b.t0, b.depth) and a.step_ppm == 0 and np.isnan(a.noise_ppm)


def test_camera_groups_share_the_star_and_differ_in_noise_and_steps():
    cfg = quiet_cfg(n_curves=12, duration_days=4.0, camera_groups=4, step_fraction=0.4, noise_ppm=300.0,
                    transit_fraction=1.0, depth_ppm=(600.0, 900.0), granulation_ppm=0.0, rotation_fraction=0.0)
    time, flux, params = sim.simulate_curves(range(cfg.n_curves), SEED, cfg)
    assert flux.shape == (12, 5, time.size)
    # the co-added flux is the groups' mean; each group is twice as noisy (a quarter of the cameras)
    np.testing.assert_allclose(flux[:, 4], flux[:, :4].mean(axis=1), atol=2e-7)
    from astrotool_plato.lightcurves import noise_sigma

    for f, p in zip(flux, params):
        sig = [noise_sigma(c.astype(np.float64)) * 1e6 for c in f]
        assert sig[4] == pytest.approx(300.0, rel=0.06)
        assert all(s == pytest.approx(600.0, rel=0.06) for s in sig[:4])
        # the transit is in every group, the step only in its own
        inside = np.abs(time - p.t0) < 0.2 * p.duration / 24.0
        for g in range(4):
            c = f[g].astype(np.float64)
            steps = (time >= p.group_step_time[g]) * p.group_step_ppm[g] * 1e-6 if p.group_step_ppm[g] else 0.0
            out = np.median((c - steps)[~inside])
            assert (out - (c - steps)[inside].mean()) * 1e6 == pytest.approx(p.depth, abs=4 * 600 / np.sqrt(
                inside.sum()) + 0.1 * p.depth)
    stepped = [(p, g) for p in params for g in range(4) if p.group_step_ppm[g]]
    assert 8 <= len(stepped) <= 32 and all(np.isnan(p.group_step_time[g]) == (p.group_step_ppm[g] == 0)
                                           for p in params for g in range(4))
    for p, g in stepped:   # the step is in its group's flux; a group without a step shows none
        f = flux[params.index(p)].astype(np.float64)
        after, inside = time >= p.group_step_time[g], np.abs(time - p.t0) < 0.6 * p.duration / 24.0
        if 1000 < after.sum() < time.size - 1000:
            for h in range(4):
                if h == g or not p.group_step_ppm[h]:
                    jump = (np.median(f[h][after & ~inside]) - np.median(f[h][~after & ~inside])) * 1e6
                    assert jump == pytest.approx(p.group_step_ppm[g] if h == g else 0.0, abs=40.0)
    # the planet's radius from the star's: rp/rs x R_star
    for p in params:
        assert 0.7 <= p.star_radius <= 1.8
        assert p.planet_radius == pytest.approx(p.rp_rs * p.star_radius * 109.08)
    # the label table carries the group steps; PSLS and a single group are refused
    table = sim.labels_table(params, ["x"] * len(params))
    assert table.column("group_step_ppm").to_pylist()[0] == params[0].group_step_ppm
    with pytest.raises(ValueError, match="camera_groups"):
        quiet_cfg(camera_groups=1)
    with pytest.raises(ValueError, match="PSLS writes the co-added flux only"):
        quiet_cfg(camera_groups=4, backend="psls")
    # without groups nothing changes: the same curve as before, its step in the co-added flux
    a, b = sim.draw_params(5, SEED, quiet_cfg(step_fraction=0.5)), sim.draw_params(5, SEED, quiet_cfg())
    assert (a.t0, a.depth, a.noise_ppm is b.noise_ppm or np.isnan(a.noise_ppm)) == (b.t0, b.depth, True)
    assert a.group_step_ppm == [] and b.group_step_ppm == []


def test_red_noise_component_adds_the_drawn_rms_on_the_drawn_timescale_and_nothing_else():
    cfg = quiet_cfg(n_curves=6, duration_days=20.0, transit_fraction=0.0, eb_fraction=0, beb_fraction=0)
    red = cfg.model_copy(update={"red_noise_ppm": (50.0, 200.0), "red_noise_hours": (1.0, 3.0)})
    time, plain, _ = sim.simulate_curves(range(6), SEED, cfg)
    _, noisy, params = sim.simulate_curves(range(6), SEED, red)
    for a, b, p in zip(plain, noisy, params):
        assert 50 <= p.red_noise_ppm <= 200 and 1 <= p.red_noise_hours <= 3
        d = (b.astype(np.float64) - a) * 1e6             # the same white noise: the difference is the red noise
        assert d.std() == pytest.approx(p.red_noise_ppm, rel=0.3)
        lag = int(round(p.red_noise_hours * 3600 / cfg.cadence_s))      # AR(1): correlation e^-1 after tau
        assert np.corrcoef(d[:-lag], d[lag:])[0, 1] == pytest.approx(math.exp(-1), abs=0.15)
    assert sim.draw_params(2, SEED, cfg).red_noise_ppm == 0.0
    with pytest.raises(ValueError, match="red_noise_ppm"):
        quiet_cfg(red_noise_ppm=(0.0, 100.0))


def test_a_curve_file_of_other_settings_is_refused_before_any_work(tmp_path, astro):
    """After ``--overwrite --shard 1/2`` with other settings, the labels held the new settings and only the
    curve files of shard 0 the old ones: ``--shard 0/2`` failed item by item (exit 1) instead of stopping."""
    ws = tmp_path / "ws"
    args = ("-w", ws, "-q", "--seed", 3)
    sim_ = ("plato", "simulate", "-n", 4, "--days", 1, "--chunk-size", 2)
    assert astro(*args, *sim_).returncode == 0
    assert astro(*args, "--overwrite", "--shard", "1/2", *sim_, "--noise-ppm", 500).returncode == 0
    raw = ws / "plato" / "raw"
    before = {p.name: p.stat().st_mtime_ns for p in raw.iterdir()}
    r = astro(*args, "--shard", "0/2", *sim_, "--noise-ppm", 500)
    assert r.returncode == 2, r.stderr
    assert "sim000000-000001_lightcurves.parquet" in r.stderr and "plato.simulate.noise_ppm" in r.stderr
    assert "failed" not in r.stderr   # refused up front, not item by item
    assert {p.name: p.stat().st_mtime_ns for p in raw.iterdir()} == before
    # only this task's files are checked: shard 0's old (here also unreadable) file does not stop shard 1
    (raw / "sim000000-000001_lightcurves.parquet").write_bytes(b"PAR1")
    assert astro(*args, "--shard", "1/2", *sim_, "--noise-ppm", 500).returncode == 0


def test_a_stopped_run_records_the_curve_files_it_finished(tmp_path):
    """A SIGTERM'd simulate kept its finished files, but run.json listed no outputs (they were added after
    every item had run)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    ws = tmp_path / "ws"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ASTRO_", "SLURM_"))}
    env["ASTRO_CONFIG"] = os.devnull
    p = subprocess.Popen([sys.executable, "-m", "astrotool", "-w", str(ws), "-q", "--seed", "4", "plato", "simulate",
                          "-n", "200", "--days", "4", "--chunk-size", "1"], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    raw = ws / "plato" / "raw"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(raw.glob("*_lightcurves.parquet"))) < 2:
        time.sleep(0.05)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 143, err
    [record] = [json.loads(f.read_text()) for f in (ws / "runs").glob("*/run.json")]
    listed = {Path(o["path"] if isinstance(o, dict) else o).name for o in record["outputs"]}
    kept = {f.name for f in raw.glob("*_lightcurves.parquet")}
    assert record["status"] == "terminated" and len(kept) >= 2 and listed == kept


def test_too_short_days_blame_days_not_the_default_transit_durations(tmp_path, capsys):
    from astrotool.cli import main

    assert main(["-w", str(tmp_path), "plato", "simulate", "-n", "2", "--days", "0.2"]) == 2
    err = capsys.readouterr().err
    assert "command-line option --days: plato.simulate.duration_days: a 0.2 d light curve cannot hold" in err
    assert "defaults" not in err


def test_psls_without_systematics_runs_and_its_labels_hold_no_built_in_spots(tmp_path, capsys):
    """`psls_systematics=` (documented: none) failed every curve in PSLS ('when Type=PLATO_SIMU, systematic errors
    must also be activated'), and PSLS rows carried the built-in draw's spot modulation, never injected."""
    pytest.importorskip("psls")
    from astrotool.cli import main

    assert sim.draw_params(0, 4242, SimulateConfig()).rotation_amplitude > 0   # drawn: would be listed
    args = ["-w", str(tmp_path), "-q", "--seed", "4242", "plato", "simulate", "-n", "1", "--days", "1",
            "--set", "plato.simulate.backend=psls", "--set", "plato.simulate.psls_systematics=",
            "--set", "plato.simulate.magnitude=[10,10]"]
    assert main(args) == 0
    row = pq.read_table(tmp_path / "plato/labels/sim_labels.parquet").to_pylist()[0]
    assert math.isnan(row["rotation_period"]) and row["rotation_amplitude"] == 0.0


def test_a_failed_chunk_leaves_its_curves_out_of_the_label_table(tmp_path, capsys, monkeypatch):
    """The label table listed the curves of a chunk that failed, in a file that does not exist."""
    from astrotool.cli import main

    real = sim.simulate_curves

    def fail_first(indices, seed, cfg):
        if 0 in indices:
            raise RuntimeError("this chunk fails")
        return real(indices, seed, cfg)

    monkeypatch.setattr(sim, "simulate_curves", fail_first)
    ws = ["-w", str(tmp_path), "-q", "plato", "simulate", "-n", "4", "--days", "1", "--chunk-size", "2"]
    assert main(ws) == 1
    assert "this chunk fails" in capsys.readouterr().err
    table = pq.read_table(tmp_path / "plato/labels/sim_labels.parquet")
    assert table.column("id").to_pylist() == ["sim000002", "sim000003"]
    monkeypatch.setattr(sim, "simulate_curves", real)
    assert main(ws) == 0                                  # the rerun makes the chunk and labels every curve
    assert pq.read_table(tmp_path / "plato/labels/sim_labels.parquet").num_rows == 4


def test_a_stopped_overwrite_is_resumed_by_running_it_again(tmp_path):
    """Stopped, `--overwrite` with new settings could not go on: run again it drew every curve again (a Slurm job
    with a time limit never finished), and without --overwrite it was refused (the old labels' settings)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import run_astro

    ws = tmp_path / "ws"
    args = ["-w", ws, "plato", "simulate", "-n", "120", "--days", "4", "--chunk-size", "1"]
    assert run_astro(*args).returncode == 0
    raw = ws / "plato" / "raw"
    began = time.time()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ASTRO_", "SLURM_"))}
    env["ASTRO_CONFIG"] = os.devnull
    new = [*map(str, args), "--overwrite", "--noise-ppm", "300"]
    p = subprocess.Popen([sys.executable, "-m", "astrotool", *new], env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and sum(f.stat().st_mtime > began for f in raw.glob("*.parquet")) < 4:
        time.sleep(0.05)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 143 and "re-run the same command, --overwrite included, to resume" in err, err
    made = {f.name: f.stat().st_mtime_ns for f in raw.glob("*.parquet") if f.stat().st_mtime > began}
    assert 1 <= len(made) < 120
    r = run_astro(*new)
    assert r.returncode == 0, r.stderr
    assert f"kept {len(made)} existing file(s) (made with these settings by a run of this --overwrite that did " \
           "not finish)" in r.stderr
    assert "--overwrite: going on with the one begun" in r.stderr and "delete " in r.stderr   # and how not to
    assert {n: (raw / n).stat().st_mtime_ns for n in made} == made            # not drawn again
    cfg = SimulateConfig(n_curves=120, duration_days=4, chunk_size=1, noise_ppm=300)
    assert all(sim.check_existing(f, 0, cfg, False) for f in raw.glob("*.parquet"))   # every file: 300 ppm
    assert sim.check_existing(ws / "plato" / "labels" / "sim_labels.parquet", 0, cfg, False)
    assert not list((ws / "runs" / ".overwrite").glob("*.json"))               # finished: ended
    again = run_astro(*new)                                                    # a new --overwrite: all again
    assert again.returncode == 0 and all((raw / n).stat().st_mtime_ns != t for n, t in made.items())
