"""Labels on the real time axis, events, and ``astro plato prepare`` (NaN, twins, splits, bad input)."""

from __future__ import annotations

import json
import re
import numpy as np
import pytest

from astrotool.cli import main
from astrotool.errors import InputError
from astrotool_plato import labels as lab
from astrotool_plato import simulate as sim
from astrotool_plato.config import PrepareConfig, SimulateConfig
from astrotool_plato.events import find_events, match, overlaps, runs
from astrotool_plato.prepare import PreparedDataset, prepare_curve, spline_trend, twin

SEED = 4242


def test_labels_land_exactly_where_the_injected_deficit_is_non_zero_even_with_gaps():
    cfg = SimulateConfig(n_curves=30, duration_days=3.0, noise_ppm=0.0, granulation_ppm=0.0, rotation_fraction=0.0,
                         transit_fraction=0.5, periodic_fraction=0.5, period_days=(0.7, 2.0),
                         eb_fraction=0.4, beb_fraction=0.4, eclipse_period_days=(0.6, 4.0))
    time = sim.time_grid(cfg)
    keep = np.ones(time.size, bool)
    keep[1000:1400] = False                            # a gap: the mask uses the real time stamps
    keep[5000:5003] = False
    t = time[keep]
    seen = set()
    for i in range(cfg.n_curves):
        par = sim.draw_params(i, SEED, cfg)
        _, deficit = sim.simulate_curve(par, SEED, cfg, t)
        row = sim.labels_table([par], ["f"]).to_pylist()[0]
        m = lab.mask(t, lab.event_windows(row, float(t[0]), float(t[-1])))
        kind = lab.PLANET if par.has_transit else lab.ECLIPSE if par.eclipse else lab.CONTINUUM
        seen.add(kind)
        np.testing.assert_array_equal(m != lab.CONTINUUM, deficit > 0)
        assert set(np.unique(m)) <= {lab.CONTINUUM, kind}
    assert seen == {lab.CONTINUUM, lab.PLANET, lab.ECLIPSE}


def test_events_merge_gaps_drop_short_runs_and_match_by_overlap():
    p = np.zeros(40)
    p[[3, 4, 5, 8, 9, 20, 30, 31, 32, 33]] = 0.9
    np.testing.assert_array_equal(runs(p > 0.5), [[3, 6], [8, 10], [20, 21], [30, 34]])
    np.testing.assert_array_equal(find_events(p, 0.5, merge_gap=2), [[3, 10], [20, 21], [30, 34]])
    np.testing.assert_array_equal(find_events(p, 0.5, merge_gap=2, min_length=2), [[3, 10], [30, 34]])
    assert find_events(p, 0.95).shape == (0, 2)
    label = np.zeros(40, np.int8)
    label[9:12] = lab.PLANET      # overlapped by [3, 10)
    label[15:18] = lab.PLANET     # missed
    label[29:31] = lab.ECLIPSE    # the event [30, 34) lies on an eclipse
    m = match(find_events(p, 0.5, merge_gap=2), label)
    np.testing.assert_array_equal(m.true, [[9, 12], [15, 18]])
    np.testing.assert_array_equal(m.recovered, [True, False])
    np.testing.assert_array_equal(m.false_alarm, [False, True, True])
    np.testing.assert_array_equal(m.on_eclipse, [False, False, True])
    assert not overlaps([[0, 5]], [[5, 9]]).any()   # half-open: touching is not overlapping


def test_twin_is_the_time_reversed_residual_about_a_trend_fitted_around_the_transit():
    rng = np.random.default_rng(1)
    n = 4096
    i = np.arange(n)
    slow = 2e-3 * np.sin(2 * np.pi * i / 3000.0)
    label = np.zeros(n, np.int8)
    label[2000:2300] = lab.PLANET
    x = slow + 1e-4 * rng.standard_normal(n) - 3e-3 * (label == lab.PLANET)
    trend = spline_trend(x, label, k=3, s=1.0, stride=10)
    # the transit is masked out of the fit: the trend follows the slow signal through it, not the dip
    assert np.abs(trend[2000:2300] - slow[2000:2300]).max() < 2e-4
    tw = twin(x, trend)
    np.testing.assert_allclose(tw - trend, (x - trend)[::-1], atol=1e-15)
    # the reversed dip sits where its mirror image is
    assert tw[n - 2300:n - 2000].mean() - trend[n - 2300:n - 2000].mean() < -2.5e-3


def test_prepare_curve_interpolates_or_drops_nan_and_inf():
    t = np.arange(2048) / 3456.0
    f = 1.0 + 1e-4 * np.random.default_rng(0).standard_normal(t.size)
    f[[10, 11, 500]] = np.nan
    f[700] = np.inf
    row = {"has_transit": False}
    got = prepare_curve(t, f, row, PrepareConfig(), 1024)
    assert got["filled"] == 4 and np.isfinite(got["flux"]).all()
    x9, x12 = float(got["flux"][9]), float(got["flux"][12])
    assert got["flux"][10] == pytest.approx(x9 + (x12 - x9) / 3, abs=1e-7)
    assert "3 NaN/inf" in prepare_curve(t[:600], f[:600], row, PrepareConfig(bad_values="drop"), 512)
    assert prepare_curve(t, np.full(t.size, np.nan), row, PrepareConfig(), 1024) == "no finite flux in the kept samples"
    assert "shorter than length" in prepare_curve(t, f, row, PrepareConfig(), 4096)


def _simulate(ws, n=24, days=1.0, extra=()):
    args = ["-w", str(ws), "-q", "--seed", "11", "plato", "simulate", "-n", str(n), "--days", str(days),
            "--chunk-size", "12", "--set", "plato.simulate.duration_hours=[1.0,4.0]", *extra]
    assert main(args) == 0


def test_prepare_keeps_twins_in_their_split_and_refuses_changed_settings(tmp_path, capsys):
    _simulate(tmp_path)
    capsys.readouterr()
    assert main(["-w", str(tmp_path), "--json", "plato", "prepare", "--augment"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["curves"] == 24 and out["twins"] == 24 and out["length"] == 3328 and not out["kept"]
    ds = PreparedDataset(tmp_path / "plato/prepared/quarters")
    meta = ds.metadata()
    ids, split, is_twin = (np.asarray(meta[c]).astype(str) if c != "twin" else np.asarray(meta[c])
                           for c in ("id", "split", "twin"))
    for cid in set(ids):
        assert len(set(split[ids == cid])) == 1 and sorted(is_twin[ids == cid]) == [False, True]
    assert set(split) == {"train", "val", "test"}
    both = ds.read(np.arange(ds.n), ["flux", "label"])
    for cid in set(ids):
        a, b = np.flatnonzero((ids == cid) & ~is_twin)[0], np.flatnonzero((ids == cid) & is_twin)[0]
        np.testing.assert_array_equal(both["label"][b], both["label"][a][::-1])
    # the same settings keep the set; other settings are refused and the set stays
    assert main(["-w", str(tmp_path), "--json", "plato", "prepare", "--augment"]) == 0
    again = json.loads(capsys.readouterr().out)   # counted as the first run counted them (curves was 48)
    assert again["kept"] and (again["curves"], again["twins"]) == (out["curves"], out["twins"]) == (24, 24)
    assert main(["-w", str(tmp_path), "plato", "prepare"]) == 2
    assert "augment: true -> false" in capsys.readouterr().err
    assert PreparedDataset(tmp_path / "plato/prepared/quarters").n == 48
    # an --overwrite that stops before the new set is complete keeps the old set with its record
    assert main(["-w", str(tmp_path), "--overwrite", "plato", "prepare", "--augment", "--length", "100"]) == 2
    assert main(["-w", str(tmp_path), "--json", "plato", "prepare", "--augment"]) == 0
    assert json.loads(capsys.readouterr().out)["kept"]


def test_prepare_reads_gappy_nan_curves_and_names_bad_inputs(tmp_path, capsys):
    _simulate(tmp_path, n=4)
    raw = tmp_path / "plato/raw"
    lc = sim.read_lightcurves(next(raw.glob("*_lightcurves.parquet")))
    import pyarrow as pa
    import pyarrow.feather as feather

    t, f, _ = lc["sim000000"]
    feather.write_feather(pa.table({"time": t[::-1].copy(), "flux": f}), tmp_path / "reversed.ftr")
    feather.write_feather(pa.table({"x": t, "flux": f}), tmp_path / "notime.ftr")
    (tmp_path / "noflux.csv").write_text("TIME,x\n" + "".join(f"{a},{b}\n" for a, b in zip(t[:50], f[:50])))
    feather.write_feather(pa.table({"time": t, "flux": np.full(t.size, np.nan)}), tmp_path / "nan.ftr")
    capsys.readouterr()
    assert main(["-w", str(tmp_path), "plato", "prepare", str(tmp_path / "reversed.ftr")]) == 2
    assert "reversed.ftr: time is not increasing: row 2" in capsys.readouterr().err
    from astrotool.errors import InputError
    from astrotool_plato.lightcurves import read_curves

    with pytest.raises(InputError, match="notime.ftr: no time column"):
        read_curves(tmp_path / "notime.ftr")
    with pytest.raises(InputError, match="noflux.csv: no flux column .*--flux-column"):
        read_curves(tmp_path / "noflux.csv")
    assert read_curves(tmp_path / "noflux.csv", flux_column="x")["noflux"][1].size == 50
    with pytest.raises(InputError, match="nan.ftr: the flux is NaN or infinite everywhere"):
        read_curves(tmp_path / "nan.ftr")


def test_light_curve_files_that_are_not_fluxes_are_named_with_their_problem(tmp_path):
    """Each of these came out as a bare ValueError (exit 1), a missing column, or astropy's 100-line format
    table."""
    from astrotool.errors import InputError
    from astrotool_plato.lightcurves import read_curves

    t = np.arange(3000) * 25.0 / 86400.0
    (tmp_path / "zeros.csv").write_text("time,flux\n" + "".join(f"{a},0\n" for a in t))
    (tmp_path / "relative.csv").write_text("time,flux\n" + "".join(f"{a},{-1e-4 * (i % 3)}\n" for i, a in enumerate(t)))
    (tmp_path / "empty_flux.csv").write_text("time,flux\n" + "".join(f"{a},\n" for a in t))
    (tmp_path / "text.fits").write_text("not a FITS file")
    (tmp_path / "text.parquet").write_text("not Parquet")
    (tmp_path / "back.csv").write_text("time,flux\n0.5,1\n0.25,1\n")
    (tmp_path / "bjd.csv").write_text("time,flux\n2460100.0287,1\n2460100.029,1\n2460100.0287,1\n")
    (tmp_path / "notes.txt").write_text("time flux\n1 2\n")
    for name, problem in (("zeros.csv", "the median flux is 0: not a flux level"),
                          ("relative.csv", "the median flux is -0.0001: not a flux level"),
                          ("empty_flux.csv", "the flux is NaN or infinite everywhere"),
                          ("text.fits", "not a readable FITS file (no valid FITS header)"),
                          ("text.parquet", "unreadable light curve (ArrowInvalid: "),
                          ("back.csv", "time is not increasing: row 2 (0.25) follows row 1 (0.5), counting from 1"),
                          ("bjd.csv", "time is not increasing: row 3 (2460100.0287) follows row 2 (2460100.029)"),
                          ("notes.txt", ".txt: not a light-curve format (.parquet, .ftr or .feather, .csv, "
                                        ".ecsv (or .gz), .fits)")):
        with pytest.raises(InputError) as err:
            read_curves(tmp_path / name)
        assert f"{tmp_path / name}: {problem}" in str(err.value), str(err.value)
        assert "--overwrite" not in str(err.value) and len(str(err.value).replace(str(tmp_path), "")) < 250


def test_simulated_curves_keep_their_depth_in_the_prepared_flux(tmp_path):
    _simulate(tmp_path, n=12, extra=["--set", "plato.simulate.noise_ppm=0", "--set", "plato.simulate.granulation_ppm=0",
                                     "--set", "plato.simulate.rotation_fraction=0"])
    assert main(["-w", str(tmp_path), "-q", "plato", "prepare"]) == 0
    ds = PreparedDataset(tmp_path / "plato/prepared/quarters")
    b = ds.read(np.arange(ds.n), ["flux", "label"])
    meta = ds.metadata()
    checked = 0
    for x, y, depth, kind in zip(b["flux"], b["label"], meta["depth"], np.asarray(meta["kind"]).astype(str)):
        if kind == "planet" and (y == lab.PLANET).any():
            assert -x[y == lab.PLANET].min() * 1e6 == pytest.approx(depth, rel=0.02)
            checked += 1
        elif kind == "none":
            assert np.abs(x).max() < 1e-6
    assert checked >= 3


def test_the_prepared_table_reads_with_a_unit_and_a_description_per_column(tmp_path):
    from astropy.table import Table

    _simulate(tmp_path, n=12)
    assert main(["-w", str(tmp_path), "-q", "plato", "prepare"]) == 0
    t = Table.read(tmp_path / "plato/prepared/quarters/quarters_curves.parquet")
    assert [c for c in t.colnames if not t[c].description] == []
    units = {c: t[c].unit for c in ("depth", "eclipse_depth", "duration", "period", "radius", "t_start", "cadence")}
    assert units == {"depth": "1e-06", "eclipse_depth": "1e-06", "duration": "h", "period": "d", "radius": "earthRad",
                     "t_start": "d", "cadence": "s"}
    assert t["snr"].unit is None and t["n_transits"].unit is None
    # the values are in those units: a transit's depth in ppm, its duration in hours (simulated: 1 to 4 h)
    planets = t[t["kind"] == "planet"]
    assert len(planets) and (planets["depth"] > 10).all()
    assert ((planets["duration"] >= 1) & (planets["duration"] <= 4)).all()


PANOPTICON = """
path_data = "/data/plato"
seed = 101
training_epochs = 20
[model]
name = "Panopticon_U3P"
loss = "BCELoss"
[model.general]
init_features = 8
drop_rate = 0.05
[model.convolution]
kernel_size = 21
dilation = 6
padding = 60
[fraction]
train = 0.85
valid = 0.15
[dataloader.train]
batch_size = 45
num_workers = 4
[optimizer]
name = "Adam"
[optimizer.kwargs]
lr = 1e-3
betas = [0.9, 0.99]
[scheduler]
name = "ExponentialLR"
use = true
[scheduler.kwargs]
gamma = 0.9
[bounds]
radius_star = [0, 2.5]
transit_depth = [50e-6, 1.0]
"""


def test_a_panopticon_toml_given_to_cfg_is_refused_saying_how_to_translate_it(tmp_path, capsys):
    """`--cfg panopticon.toml` listed unknown sections and keys, but not the command that reads the file."""
    src = tmp_path / "panopticon.toml"
    src.write_text(PANOPTICON)
    assert main(["--cfg", str(src), "-w", str(tmp_path / "ws"), "plato", "train"]) == 2
    err = capsys.readouterr().err
    assert "[optimizer]: unknown section" in err and f"astro plato config import {src}" in err
    # a user's file with one stray table is not taken for Panopticon's
    (tmp_path / "mine.toml").write_text("[optimizer]\nname = 'Adam'\n")
    assert main(["--cfg", str(tmp_path / "mine.toml"), "-w", str(tmp_path / "ws"), "plato", "train"]) == 2
    assert "config import" not in capsys.readouterr().err


def test_panopticon_toml_imports_line_for_line_and_bad_names_are_refused(tmp_path, capsys):
    import tomllib

    from astrotool_plato.config import PlatoConfig

    src = tmp_path / "panopticon.toml"
    src.write_text(PANOPTICON)
    assert main(["plato", "config", "import", str(src), "-o", str(tmp_path / "astro.toml")]) == 0
    got = tomllib.loads((tmp_path / "astro.toml").read_text())
    assert got["core"] == {"seed": 101}
    train = PlatoConfig.model_validate(got["plato"]).train
    assert (train.epochs, train.batch_size, train.optimizer, train.lr, train.weight_decay) == (20, 45, "Adam", 1e-3, 0.0)
    assert train.optimizer_kwargs == {"betas": [0.9, 0.99]} and train.scheduler == "ExponentialLR"
    assert (train.decoder, train.loss, train.width, train.dropout, train.kernel_size, train.dilation, train.bin) == \
        ("unet3p", "bce", 8, 0.05, 21, 6, 1)
    prep = PlatoConfig.model_validate(got["plato"]).prepare
    assert prep.split == (0.85, 0.15, 0.0) and prep.depth_bounds == pytest.approx((50.0, 1e6))
    text = (tmp_path / "astro.toml").read_text()
    assert "# training_epochs" in text and "path_data: no keys here" in text and "[bounds] radius_star" in text
    capsys.readouterr()   # --json: the translation as a JSON string (it printed TOML, and nothing with -o)
    assert main(["--json", "plato", "config", "import", str(src)]) == 0
    assert json.loads(capsys.readouterr().out) == {"source": str(src), "toml": text, "path": None}
    # the translation is a working configuration: the schedule's factors follow torch's ExponentialLR
    from astrotool_plato.train import lr_schedule

    f = lr_schedule(train, steps_per_epoch=10)
    assert [f(s) for s in (0, 9, 10, 25)] == pytest.approx([1.0, 1.0, 0.9, 0.81])
    for bad, msg in (('name = "Adam"', "optimizer.name: unknown optimizer 'Adamm'"),
                     ('name = "ExponentialLR"', "scheduler.name: unknown or unsupported scheduler 'ReduceLROnPlateau'"),
                     ('name = "Panopticon_U3P"', "model.name: 'Panopticon_UNet' has no counterpart")):
        repl = {"Adam": "Adamm", "ExponentialLR": "ReduceLROnPlateau", "Panopticon_U3P": "Panopticon_UNet"}
        word = bad.split('"')[1]
        src.write_text(PANOPTICON.replace(bad, bad.replace(word, repl[word])))
        capsys.readouterr()
        assert main(["plato", "config", "import", str(src)]) == 2
        assert msg in capsys.readouterr().err
    assert main(["plato", "config", "import", str(tmp_path / "astro.toml"), "-o", str(tmp_path / "astro.toml")]) == 2


def test_panopticon_scheduler_use_must_be_a_boolean_and_kwargs_are_checked_without_it(tmp_path, capsys):
    src = tmp_path / "panopticon.toml"
    for use in ('"false"', '"yes"', "1"):
        src.write_text(PANOPTICON.replace("use = true", f"use = {use}"))
        capsys.readouterr()
        assert main(["plato", "config", "import", str(src)]) == 2, use
        assert "scheduler.use: expected true or false" in capsys.readouterr().err
    no_use = PANOPTICON.replace("use = true\n", "")
    assert no_use != PANOPTICON
    src.write_text(no_use.replace("gamma", "gama"))          # a typo is refused though the scheduler is off
    capsys.readouterr()
    assert main(["plato", "config", "import", str(src)]) == 2
    assert "scheduler.kwargs: ExponentialLR needs 'gamma' (unknown: gama" in capsys.readouterr().err
    src.write_text(PANOPTICON.replace("use = true", "use = false").replace("gamma", "gama"))
    assert main(["plato", "config", "import", str(src)]) == 2
    src.write_text(no_use)
    capsys.readouterr()
    assert main(["plato", "config", "import", str(src)]) == 0
    got = capsys.readouterr()
    assert "[scheduler] use: missing" in got.err and 'scheduler = ""' in got.out


def test_prepare_leaves_out_curves_outside_the_depth_bounds(tmp_path, capsys):
    _simulate(tmp_path, n=16)
    capsys.readouterr()
    assert main(["-w", str(tmp_path), "--json", "--set", "plato.prepare.depth_bounds=[300,1e6]", "plato",
                 "prepare"]) == 0
    out = json.loads(capsys.readouterr().out)
    ds = PreparedDataset(tmp_path / "plato/prepared/quarters")
    depth = np.asarray(ds.metadata(["depth"])["depth"], float)
    assert out["dropped"] and all("outside depth_bounds [300, 1e+06)" in v for v in out["dropped"].values())
    assert np.all(np.isnan(depth) | (depth >= 300)) and ds.n + len(out["dropped"]) == 16


def test_a_depth_bound_above_a_depth_of_one_is_refused_and_a_training_split_without_transit_is_warned_of(
        tmp_path, capsys):
    """[bounds] transit_depth = [50, 2000] (ppm written for a fraction) became depth_bounds [5e7, 2e9] ppm: exit 0,
    and prepare then dropped every planet without a word about the training split left with no transit."""
    with pytest.raises(ValueError, match=r"depth_bounds: lower bound 50000000.0 ppm is at or above 1e6 ppm"):
        PrepareConfig(depth_bounds=(5e7, 2e9))
    assert PrepareConfig(depth_bounds=(50.0, 1e6)).depth_bounds == (50.0, 1e6)
    assert PrepareConfig(depth_bounds=(100.0, 1e7)).depth_bounds == (100.0, 1e7)   # no upper cut: harmless, kept
    src = tmp_path / "pan.toml"
    src.write_text("[bounds]\ntransit_depth = [50, 2000]\n")
    capsys.readouterr()
    assert main(["plato", "config", "import", str(src), "-o", str(tmp_path / "imp.toml")]) == 2
    assert "bounds.transit_depth: upper bound 2000 is above 1: Panopticon's depths are fractions" in \
        capsys.readouterr().err
    assert not (tmp_path / "imp.toml").exists()
    _simulate(tmp_path, n=8)
    capsys.readouterr()
    assert main(["-w", str(tmp_path), "--set", "plato.prepare.depth_bounds=[1e5,1e6]", "plato", "prepare"]) == 0
    assert "the 'train' split holds no transit" in capsys.readouterr().err
    assert main(["-w", str(tmp_path), "--overwrite", "plato", "prepare"]) == 0
    assert "holds no transit" not in capsys.readouterr().err


def test_the_prepared_cadence_is_the_grid_step_not_a_difference_of_day_stamps():
    """evaluate reported cadence_s 25.00000000000071 (and days 142.22222222222626): the median difference of
    time stamps in days, times 86400."""
    t = np.arange(1024) * (25.0 / 86400.0)
    assert np.median(np.diff(t)) * 86400.0 != 25.0   # the rounding the cadence must not carry
    f = np.ones(t.size)
    assert prepare_curve(t, f, {}, PrepareConfig(), 512)["cadence"] == 25.0
    assert prepare_curve(t, f, {}, PrepareConfig(cadence_s=50.0), 256)["cadence"] == 50.0
    assert prepare_curve(t * 1.000001, f, {}, PrepareConfig(), 512)["cadence"] == 25.000025


def test_panopticon_layout_round_trip_keeps_curves_and_labels(tmp_path, capsys):
    import pyarrow as pa
    import pyarrow.feather as feather

    from astrotool_plato.lightcurves import read_curves

    a, b = tmp_path / "a", tmp_path / "b"
    _simulate(a, n=10, extra=["--set", "plato.simulate.periodic_fraction=0.5",
                              "--set", "plato.simulate.period_days=[0.3,0.6]"])
    assert main(["-w", str(a), "-q", "plato", "export-panopticon", str(tmp_path / "pan")]) == 0
    qfiles = sorted((tmp_path / "pan" / "astrotool-export").glob("sim*_Q1.ftr"))
    assert len(qfiles) == 10 and feather.read_table(qfiles[0]).column_names == ["time", "coadd"]
    capsys.readouterr()
    assert main(["-w", str(b), "--json", "plato", "import-panopticon", str(tmp_path / "pan")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["curves"] == 10
    orig = {**read_curves(next((a / "plato/raw").glob("*_lightcurves.parquet")))}
    back = {}
    for f in (b / "plato/raw").glob("*_lightcurves.parquet"):
        back.update(read_curves(f))
    ra, rb = lab.read_label_tables(a / "plato/labels"), lab.read_label_tables(b / "plato/labels")
    assert sum(r["n_transits"] > 1 for r in ra.values()) >= 2
    for k, (cid, (t, f)) in enumerate(orig.items()):
        tb, fb = back[f"sim{k:05d}_Q1"]
        np.testing.assert_allclose(tb, t, atol=1e-9)
        np.testing.assert_allclose(fb, f / np.median(f), rtol=1e-6)
        ma = lab.mask(t, lab.event_windows(ra[cid], t[0], t[-1]))
        mb = lab.mask(tb, lab.event_windows(rb[f"sim{k:05d}_Q1"], tb[0], tb[-1]))
        np.testing.assert_array_equal(ma == lab.PLANET, mb == lab.PLANET)
        assert rb[f"sim{k:05d}_Q1"]["n_transits"] == ra[cid]["n_transits"]   # as the simulator counts them
        assert np.all(mb[ma == lab.ECLIPSE] == lab.ECLIPSE)   # every eclipse; secondaries of unknown depth too
    # quarter 2 starts one quarter after quarter 1 (below simulation 6700, old PlatoSim: 90 - 1.5 d);
    # a missing parameter table is named
    q2 = tmp_path / "pan" / "astrotool-export" / "sim00000_Q2.ftr"
    feather.write_feather(pa.table({"time": [0.0, 25.0, 50.0], "g1": [1.0, 1.0, 1.0], "coadd": [2.0, 2.0, 2.0]}), q2)
    from astrotool_plato.panopticon import read_layout

    curves, labels = read_layout(tmp_path / "pan")
    assert curves["sim00000_Q2"][0][0] == pytest.approx(88.5) and curves["sim00000_Q2"][1][:, 0].tolist() == [1, 2]
    assert main(["-w", str(b), "plato", "import-panopticon", str(tmp_path / "pan"), "--name", "mixed"]) == 2
    assert "quarter files with 1 and 2 flux columns" in capsys.readouterr().err
    (tmp_path / "pan" / "config" / "Complete_Parameters.ftr").unlink()
    assert main(["-w", str(b), "plato", "import-panopticon", str(tmp_path / "pan")]) == 2
    assert "Complete_Parameters.ftr: missing" in capsys.readouterr().err


def test_panopticon_layout_keeps_the_camera_groups(tmp_path, capsys):
    import pyarrow.feather as feather

    from astrotool_plato.lightcurves import read_curves

    a, b = tmp_path / "a", tmp_path / "b"
    _simulate(a, n=3, extra=["--set", "plato.simulate.camera_groups=4"])
    assert main(["-w", str(a), "-q", "plato", "export-panopticon", str(tmp_path / "pan")]) == 0
    q = sorted((tmp_path / "pan" / "astrotool-export").glob("sim*_Q1.ftr"))
    assert feather.read_table(q[0]).column_names == ["time", "cam1", "cam2", "cam3", "cam4", "coadd"]
    assert main(["-w", str(b), "-q", "plato", "import-panopticon", str(tmp_path / "pan")]) == 0
    orig = read_curves(next((a / "plato/raw").glob("*_lightcurves.parquet")), channels="groups")
    back = read_curves(next((b / "plato/raw").glob("*_lightcurves.parquet")), channels="groups")
    for k, (t, f) in enumerate(orig.values()):
        assert f.shape == back[f"sim{k:05d}_Q1"][1].shape == (5, t.size)
        np.testing.assert_allclose(back[f"sim{k:05d}_Q1"][1], f / np.median(f, axis=-1, keepdims=True), rtol=1e-6)
    # a Feather file read for a groups model: the columns between time and the last
    one = read_curves(q[0], time_unit="s", channels="groups")["sim00000_Q1"][1]
    np.testing.assert_allclose(one, next(iter(orig.values()))[1], rtol=1e-6)
    csv = tmp_path / "one.csv"
    csv.write_text("time,flux,flux_g1\n0,1,1\n1,1,1\n")
    assert read_curves(csv, channels="groups")["one"][1].shape == (2, 2)
    csv.write_text("time,flux\n0,1\n1,1\n")
    with pytest.raises(InputError, match="one.csv.*no camera-group columns"):
        read_curves(csv, channels="groups")


def test_resampling_to_a_coarser_cadence_averages_and_keeps_the_transit_times():
    from astrotool_plato.lightcurves import uniform

    t = np.arange(3456) * 25.0 / 86400
    f = 1.0 + 1e-3 * np.random.default_rng(3).standard_normal(t.size)
    f[1000:1288] -= 2e-3                                 # a 2-h box
    tg, fg = uniform(t, f, 60.0 / 86400)
    assert np.allclose(np.diff(tg), 60.0 / 86400)
    # averaging over ~2 samples: the noise drops by about sqrt(2), the box keeps its depth and place
    assert 0.6e-3 < np.std(fg[:300]) < 0.8e-3
    inside = (tg > t[1000] + 0.01) & (tg < t[1287] - 0.01)
    assert np.mean(fg[inside]) == pytest.approx(1.0 - 2e-3, abs=2e-4)
    tg, fg = uniform(t, f, 10.0 / 86400)                 # finer: interpolated
    assert np.allclose(fg[::5][:100], f[::2][:100])
    assert np.isfinite(fg).all()   # between two samples 25 s apart is no gap (it was NaN over 10 s away)
    keep = np.r_[0:2000, 2010:t.size]                    # ten samples missing (250 s): a gap
    tg, fg = uniform(t[keep], f[keep], 10.0 / 86400)
    gap = np.isnan(fg)
    assert gap.any() and np.all((tg[gap] > t[1999]) & (tg[gap] < t[2010]))


def test_prepare_takes_the_default_length_on_the_resampled_grid(tmp_path, capsys):
    # 1-d curves at 25 s (3,456 samples) averaged onto 60 s: 1,440 samples, so 1,280 kept
    _simulate(tmp_path, n=6)
    capsys.readouterr()
    assert main(["-w", str(tmp_path), "--json", "--set", "plato.prepare.cadence_s=60", "plato", "prepare"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["length"] == 1280 and out["curves"] == 6 and out["dropped"] == {}
    ds = PreparedDataset(tmp_path / "plato/prepared/quarters")
    assert np.allclose(np.asarray(ds.metadata(["cadence"])["cadence"], float), 60.0)
    # too short on that grid for even one granule: named, with the cadence
    assert main(["-w", str(tmp_path), "--set", "plato.prepare.cadence_s=600", "plato", "prepare", "--name", "x"]) == 2
    err = capsys.readouterr().err
    assert "_lightcurves.parquet" in err and "the shortest curve has 144 samples at 600 s" in err


def test_prepare_sees_a_relabelled_curve(tmp_path, capsys):
    _simulate(tmp_path, n=4)
    assert main(["-w", str(tmp_path), "-q", "--set", "plato.prepare.split=[1,0,0]", "plato", "prepare"]) == 0
    path = tmp_path / "plato/labels/sim_labels.parquet"
    rows = list(lab.read_label_tables(tmp_path / "plato/labels").values())
    rows[0]["snr"] = 99.0
    lab.write_label_rows(path, rows, "test")
    capsys.readouterr()
    assert main(["-w", str(tmp_path), "--set", "plato.prepare.split=[1,0,0]", "plato", "prepare"]) == 2
    assert "parquet.labels" in capsys.readouterr().err            # the relabelled file's labels changed
    assert main(["-w", str(tmp_path), "-q", "--overwrite", "--set", "plato.prepare.split=[1,0,0]", "plato",
                 "prepare"]) == 0
    meta = PreparedDataset(tmp_path / "plato/prepared/quarters").metadata(["id", "snr"])
    assert dict(zip(np.asarray(meta["id"]).astype(str), meta["snr"]))[rows[0]["id"]] == 99.0


def test_event_snr_is_the_depth_over_the_scatter_binned_at_the_event_length():
    from astrotool_plato.events import event_snr, vetted

    rng = np.random.default_rng(8)
    n, w, sigma = 40_000, 200, 1e-3
    x = rng.standard_normal(n) * sigma
    x[10_000:10_000 + w] -= 5e-4                     # white-noise S/N: 5e-4 / (1e-3 / sqrt(200)) = 7.07
    events = np.array([[10_000, 10_000 + w]])
    assert event_snr(x, events, found=False)[0] == pytest.approx(7.07, abs=1.2)   # a known box
    # variability slower than the event (a 3,000 ppm rotation over the whole curve) leaves its S/N alone
    spotted = x + 3e-3 * np.sin(2 * np.pi * np.arange(n) / n)
    assert event_snr(spotted, events)[0] == pytest.approx(event_snr(x, events)[0], rel=0.1)
    # a slow wiggle of 300 ppm (period 1,000 samples): a dip in it scores low against the binned scatter,
    # which a white-noise S/N (2e-4 / (1e-3 / sqrt(200)) = 2.8 per 100 ppm) would not know
    red = x + 3e-4 * np.sin(2 * np.pi * np.arange(n) / 1000.0)
    trough = np.array([[30_150, 30_350]])           # the bottom of one wiggle, 200 samples
    assert event_snr(red, trough)[0] < 3.0
    both = np.vstack([events, trough])
    np.testing.assert_array_equal(vetted(both, x, 5.0), events)
    np.testing.assert_array_equal(vetted(both, red, 0.0), both)
    short = np.array([[100, 250]])
    assert np.isnan(event_snr(x[:300], short))[0]                     # fewer than three blocks: unknown
    np.testing.assert_array_equal(vetted(short, x[:300], 5.0), short)  # ... and kept, not silently dropped


def _boxes(x, centres, w, depth):
    for c in centres:
        x[c - w // 2:c + w // 2] -= depth
    return np.array([[c - w // 2, c + w // 2] for c in centres])


def test_binary_tests_find_a_secondary_eclipse_and_unequal_alternate_depths_but_pass_a_planet():
    from astrotool_plato.events import HALF_PERIOD_SNR, binary_tests, vetted

    n, w, period, noise = 40_000, 200, 4000, 1e-3
    box_error = noise * np.sqrt(1 / w + np.pi / (4 * w))      # mean of w samples minus the median of 2w (band = w)
    primaries, secondaries = 1000 + period * np.arange(10), 3000 + period * np.arange(10)
    for seed in (1, 2, 3):
        rng = np.random.default_rng(seed)
        binary = rng.standard_normal(n) * noise
        prim = _boxes(binary, primaries, w, 1e-3)
        sec = _boxes(binary, secondaries, w, 5e-4)
        # the network flags the primaries only: a secondary half-way, shallower than them
        t = binary_tests(binary, prim)
        assert t.period == pytest.approx(period, abs=1)
        # (the error comes from the depths' own scatter, 17 degrees of freedom: +-25 % from seed to seed)
        assert t.secondary == pytest.approx(5e-4 / (box_error / np.sqrt(10)), rel=0.4)        # 16.7
        assert t.primary_minus_secondary == pytest.approx(5e-4 / (box_error * np.sqrt(0.2)), rel=0.4)  # 11.8
        assert t.odd_even < 4 and t.binary(5.0)
        # ... or primaries and secondaries: alternate depths differ
        both = np.sort(np.vstack([prim, sec]), axis=0)
        t = binary_tests(binary, both)
        assert t.period == pytest.approx(period / 2, abs=1)
        assert t.odd_even == pytest.approx(5e-4 / (box_error * np.sqrt(0.2)), rel=0.4) and t.binary(5.0)
        assert vetted(both, binary, 0.0, 5.0).shape == (0, 2)
        # a false alarm off the binary's ephemeris neither hides it nor goes with it
        stray = np.array([[2400, 2600]])
        assert binary_tests(binary, np.vstack([prim, stray])).period == pytest.approx(period, abs=1)
        np.testing.assert_array_equal(vetted(np.vstack([prim, stray]), binary, 0.0, 5.0), stray)
        # a planet: equal depths, nothing half-way
        planet = rng.standard_normal(n) * noise
        transits = _boxes(planet, primaries, w, 6e-4)
        t = binary_tests(planet, transits)
        assert t.odd_even < 4 and t.secondary < 4 and not t.binary(3.0)
        np.testing.assert_array_equal(vetted(transits, planet, 0.0, 5.0), transits)
        # ... whose every other transit was missed: the dip half-way is as deep as the events, so the period is
        # halved, and there the planet passes
        t = binary_tests(planet, transits[::2])
        assert t.period == pytest.approx(period, abs=1)
        assert t.odd_even < 4 and t.secondary < 4 and not t.binary(5.0)
        np.testing.assert_array_equal(vetted(transits[::2], planet, 0.0, 5.0), transits[::2])
        # a binary whose network missed every other primary: halved, its secondary shows
        t = binary_tests(binary, prim[::2])
        assert t.period == pytest.approx(period, abs=1) and t.binary(5.0)
        # ... or two of three: half-way between the events (1.5 orbits) lies a secondary, shallower than the
        # events, so the period stays (4 cycles: the difference is 500 / (box_error sqrt(1/4 + 1/3)) ~ 7)
        t = binary_tests(binary, prim[::3])
        assert t.period == pytest.approx(3 * period, abs=2)
        assert t.secondary > 7.1 and t.primary_minus_secondary > HALF_PERIOD_SNR
    assert np.isnan(binary_tests(planet, transits[:1]).odd_even)                 # one event: nothing to test
    short = binary_tests(planet[:560], np.array([[20, 220], [340, 540]]))       # too short for any scatter
    assert np.isnan(short.odd_even) and np.isnan(short.primary_minus_secondary)
    np.testing.assert_array_equal(vetted(transits[:1], planet, 0.0, 5.0), transits[:1])


def test_binary_tests_measure_eclipses_closer_than_their_length_apart():
    """A 0.7-d binary with 5-h eclipses: the flux band either side shrinks to fit between the eclipses."""
    from astrotool_plato.events import binary_tests

    rng = np.random.default_rng(5)
    n, w, period = 38_400, 720, 2400                             # eclipses 720 samples long, 480 samples apart
    x = rng.standard_normal(n) * 1e-3
    prim = _boxes(x, 600 + period * np.arange(16), w, 2e-2)
    _boxes(x, 1800 + period * np.arange(16), w, 1e-2)
    t = binary_tests(x, prim)
    assert t.period == pytest.approx(period, abs=1)
    assert t.secondary > 100 and t.primary_minus_secondary > 100


def test_a_stray_event_just_after_a_transit_does_not_make_a_planet_a_short_period_binary():
    """A short spacing's window covers much of the phase and catches most events by chance; the period must
    be scored beyond that chance count, or a stray event 1.5 event lengths after one transit wins and
    every transit of the planet is dropped as a binary's."""
    from astrotool_plato.events import binary_tests, vetted

    n, w, period = 40_000, 200, 2400
    x = np.random.default_rng(0).standard_normal(n) * 1e-4
    transits = _boxes(x, 500 + period * np.arange(16), w, 1e-3)
    stray = 500 + 3 * period + 300
    x[stray - 100:stray + 100] -= 5e-4
    events = np.sort(np.vstack([transits, [[stray - 100, stray + 100]]]), axis=0)
    t = binary_tests(x, events)
    assert t.period == pytest.approx(period, rel=0.01)
    assert not t.binary(5.0)
    assert len(vetted(events, x, 0.0, 5.0)) == len(events)


def test_binary_tests_read_their_s_n_through_the_error_s_degrees_of_freedom():
    """A planet's depths on white noise: where the error comes from a few depths (4 degrees of freedom) the S/N
    is a Student-t statistic and is read through that distribution; where it comes from the binned scatter
    (2 transits, fewer degrees of freedom) it is a t of about 20 degrees of freedom, the band's median included."""
    from scipy import stats

    from astrotool_plato.events import binary_tests, t_threshold

    assert t_threshold(5.0, np.inf) == 5.0
    assert stats.t.sf(t_threshold(5.0, 4), 4) == pytest.approx(stats.norm.sf(5.0), rel=1e-6)   # a t of 57
    assert stats.t.sf(t_threshold(10.0, 30), 30) == pytest.approx(stats.norm.sf(10.0), rel=1e-6)  # not inf
    n, w = 18_000, 200
    few, binned = [], []
    for seed in range(600):
        rng = np.random.default_rng(seed)
        for period, k, out in ((5_000, 4, few), (9_000, 2, binned)):   # 4 cycles and 3 half-way; 2 and 2
            x = rng.standard_normal(n) * 1e-3
            t = binary_tests(x, _boxes(x, 1500 + period * np.arange(k), w, 1e-3))
            out.append((t.secondary, t.dof, t.significant(t.secondary, 2.0)))
    secondary, dof, above = (np.array(v, float) for v in zip(*few))
    assert set(dof) == {4.0}
    # one-sided 2 sigma: 2.3 % (+-0.6 % for 600 draws); 5.8 % when a t of 4 degrees is read as a normal
    assert 0.012 < above.mean() < 0.038 and (secondary >= 2.0).mean() > 0.045
    secondary, dof, _ = (np.array(v, float) for v in zip(*binned))
    assert ((dof > 19) & (dof < 22)).all()     # 0.25 per triple of 200-sample blocks free of the two transits
    assert 0.88 < np.nanstd(secondary) < 1.12 and abs(np.nanmean(secondary)) < 0.15   # 1.34 times wider without the median's share


def test_the_binned_scatter_s_degrees_of_freedom_per_triple_of_blocks():
    """The binned scatter is a median of |second differences| of block means: its relative spread on white
    noise gives its degrees of freedom, 1 / (2 (sd / mean)^2), which :data:`BLOCK_DOF_PER_TRIPLE` states (one
    per triple would make the binary test fire several times too often on few-eclipse curves)."""
    from astrotool_plato.events import BLOCK_DOF_PER_TRIPLE, _block_sigma

    rng = np.random.default_rng(21)
    n, w = 3000, 40
    est = [_block_sigma(rng.standard_normal(n), np.ones(n, bool), w) for _ in range(400)]
    sigma, triples = (np.array(v, float) for v in zip(*est))
    assert set(triples) == {n // w - 2}
    assert np.mean(sigma) * np.sqrt(w) == pytest.approx(1.0, abs=0.03)
    dof = 1.0 / (2.0 * (sigma.std() / sigma.mean()) ** 2)
    assert 0.8 < dof / (BLOCK_DOF_PER_TRIPLE * triples[0]) < 1.25


def test_a_binary_found_by_alternate_depths_keeps_a_transit_a_quarter_cycle_away():
    """Both eclipses flagged: the events' period is half the orbit and odd/even depths differ. Half-way between
    those events lies no eclipse, so a transit there stays; the eclipses go."""
    from astrotool_plato.events import binary_tests, vetted

    n, w, period = 40_000, 200, 4000
    x = np.random.default_rng(4).standard_normal(n) * 1e-3
    eclipses = np.sort(np.vstack([_boxes(x, 1000 + period * np.arange(10), w, 1e-3),
                                  _boxes(x, 3000 + period * np.arange(10), w, 5e-4)]), axis=0)
    transit = _boxes(x, [22_000], w, 8e-4)                     # 22,000 = 1,000 + 10.5 x 2,000
    events = np.sort(np.vstack([eclipses, transit]), axis=0)
    t = binary_tests(x, events)
    assert t.period == pytest.approx(period / 2, abs=2) and t.binary(5.0) and not t.secondary_eclipse(5.0)
    np.testing.assert_array_equal(vetted(events, x, 0.0, 5.0), transit)


def test_a_transit_and_one_false_alarm_are_not_a_binary_s_alternate_eclipses():
    """Two events always make a period, and two of unequal depth are one odd and one even cycle of it: that
    is no odd/even test, and the transit must stay. A third event on the same ephemeris makes it one."""
    from astrotool_plato.events import binary_tests, vetted

    n, w = 120_000, 400
    x = np.random.default_rng(18).standard_normal(n) * 3e-4
    events = np.vstack([_boxes(x, [40_800], w, 2e-4), _boxes(x, [92_200], w, 7e-4)])   # a dip, then the transit
    t = binary_tests(x, events)
    assert np.isnan(t.odd_even) and not t.binary(3.0)
    np.testing.assert_array_equal(vetted(events, x, 0.0, 3.0), events)
    # primary, secondary, primary: three cycles of the events' spacing, the alternate depths are tested
    x = np.random.default_rng(18).standard_normal(n) * 3e-4
    eclipses = np.vstack([_boxes(x, [20_000, 72_000], w, 7e-4), _boxes(x, [46_000], w, 2e-4)])
    t = binary_tests(x, np.sort(eclipses, axis=0))
    assert t.period == pytest.approx(26_000, abs=2) and t.odd_even > 5 and t.binary(3.0)
    assert vetted(np.sort(eclipses, axis=0), x, 0.0, 3.0).shape == (0, 2)


def _labels_by_id(folder):
    ds = PreparedDataset(folder)
    meta = ds.metadata(["id", "cadence"])
    labels = ds.read(np.arange(ds.n), ["label"])["label"]
    return dict(zip(np.asarray(meta["id"]).astype(str), labels)), np.asarray(meta["cadence"], float)


def test_prepare_reads_panopticon_feather_in_seconds_and_refuses_them_read_as_days(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    _simulate(a, n=6, extra=["--set", "plato.simulate.transit_fraction=1"])
    assert main(["-w", str(a), "-q", "plato", "export-panopticon", str(tmp_path / "pan")]) == 0
    assert main(["-w", str(b), "-q", "plato", "import-panopticon", str(tmp_path / "pan")]) == 0
    ftr = sorted(str(p) for p in (tmp_path / "pan" / "astrotool-export").glob("*.ftr"))
    base = ["-w", str(b), "--set", "plato.prepare.split=[1,0,0]", "plato", "prepare"]
    capsys.readouterr()
    assert main([*base, "--name", "f", *ftr]) == 2                   # seconds read as days: 25-d steps
    err = capsys.readouterr().err
    assert "sim00000_Q1.ftr: a median time step of 600 h" in err and "use --time-unit s" in err
    assert main([*base, "--name", "f", *ftr, "--time-unit", "s"]) == 0
    assert main([*base, "--name", "p"]) == 0                         # the same curves, imported
    got, cadence = _labels_by_id(b / "plato/prepared/f")
    want, _ = _labels_by_id(b / "plato/prepared/p")
    assert np.allclose(cadence, 25.0) and sorted(got) == sorted(want)
    assert all((got[k] == lab.PLANET).sum() > 0 and np.array_equal(got[k], want[k]) for k in want)
    # a folder is read for its Feather files too; one without light curves is named with what was looked for
    assert main([*base, "--name", "g", str(tmp_path / "pan" / "astrotool-export"), "--time-unit", "s"]) == 0
    assert _labels_by_id(b / "plato/prepared/g")[0].keys() == got.keys()
    (tmp_path / "empty").mkdir()
    capsys.readouterr()
    assert main([*base, "--name", "h", str(tmp_path / "empty")]) == 2
    assert "empty: a folder with no light-curve files (looked for *_lightcurves.parquet, *.ftr)" in \
        capsys.readouterr().err


def test_prepare_takes_detect_s_column_options_and_sees_a_feather_file_rewritten_at_the_same_size(tmp_path,
                                                                                                    capsys):
    import pyarrow as pa
    import pyarrow.feather as feather

    a, b = tmp_path / "a", tmp_path / "b"
    _simulate(a, n=2)
    assert main(["-w", str(a), "-q", "plato", "export-panopticon", str(tmp_path / "pan")]) == 0
    assert main(["-w", str(b), "-q", "plato", "import-panopticon", str(tmp_path / "pan")]) == 0
    q = tmp_path / "pan" / "astrotool-export" / "sim00000_Q1.ftr"
    table = feather.read_table(q)
    only = tmp_path / "sim00000_Q1.ftr"
    feather.write_feather(pa.table({"time": table["time"]}), only)
    base = ["-w", str(b), "-q", "--set", "plato.prepare.split=[1,0,0]", "plato", "prepare", "--time-unit", "s"]
    capsys.readouterr()
    assert main([*base, "--name", "o", str(only)]) == 2
    assert "no flux column" in capsys.readouterr().err
    renamed = tmp_path / "renamed" / "sim00000_Q1.ftr"
    renamed.parent.mkdir()
    feather.write_feather(pa.table({"secs": table["time"], "bright": table["coadd"]}), renamed,
                          compression="uncompressed")
    opts = ["--name", "r", str(renamed), "--time-column", "secs", "--flux-column", "bright"]
    assert main([*base, *opts]) == 0
    x = PreparedDataset(b / "plato/prepared/r").read(np.arange(1), ["flux"])["flux"][0].copy()
    size = renamed.stat().st_size
    flux = table["coadd"].to_numpy().copy()
    flux[:100] *= 1.5                                                # same size, other content
    feather.write_feather(pa.table({"secs": table["time"], "bright": flux}), renamed, compression="uncompressed")
    assert renamed.stat().st_size == size
    capsys.readouterr()
    assert main([*base, *opts]) == 2                                 # never kept
    assert "sim00000_Q1.ftr.content" in capsys.readouterr().err
    assert main(["-w", str(b), "-q", "--overwrite", *base[3:], *opts]) == 0
    assert not np.array_equal(PreparedDataset(b / "plato/prepared/r").read(np.arange(1), ["flux"])["flux"][0], x)


def test_prepare_puts_a_later_panopticon_quarter_on_its_simulation_s_time_axis_as_the_import_does(tmp_path, capsys):
    a, b, pan = tmp_path / "a", tmp_path / "b", tmp_path / "pan"
    _simulate(a, n=4, extra=["--set", "plato.simulate.transit_fraction=1"])
    assert main(["-w", str(a), "-q", "plato", "export-panopticon", str(pan)]) == 0
    import pyarrow.feather as feather

    from astrotool_plato.panopticon import PARAMS_FILE, quarter_start

    for f in (pan / "astrotool-export").glob("*_Q1.ftr"):            # quarter 2: its time counts from 88.5 d on
        f.rename(f.with_name(f.name.replace("_Q1", "_Q2")))
    params = feather.read_table(pan / PARAMS_FILE).to_pandas()       # its transits there
    params["transit_t0"] += [quarter_start(k, 2) for k in params["index_sim"]]
    feather.write_feather(params, pan / PARAMS_FILE)
    assert main(["-w", str(b), "-q", "plato", "import-panopticon", str(pan)]) == 0
    base = ["-w", str(b), "-q", "--set", "plato.prepare.split=[1,0,0]", "plato", "prepare"]
    assert main([*base, "--name", "f", str(pan / "astrotool-export"), "--time-unit", "s"]) == 0
    assert main([*base, "--name", "p"]) == 0
    got, want = _labels_by_id(b / "plato/prepared/f")[0], _labels_by_id(b / "plato/prepared/p")[0]
    assert sorted(got) == sorted(want) == [f"sim{k:05d}_Q2" for k in range(4)]
    assert all((want[k] == lab.PLANET).sum() > 0 and np.array_equal(got[k], want[k]) for k in want)
    t_start = [PreparedDataset(b / f"plato/prepared/{n}").metadata(["t_start"])["t_start"] for n in "fp"]
    np.testing.assert_allclose(t_start[0], t_start[1])


def test_a_kept_set_reads_no_unchanged_feather_input_whole_again(tmp_path, capsys, monkeypatch):
    from astrotool import made_with

    a, b, pan = tmp_path / "a", tmp_path / "b", tmp_path / "pan"
    _simulate(a, n=2)
    assert main(["-w", str(a), "-q", "plato", "export-panopticon", str(pan)]) == 0
    assert main(["-w", str(b), "-q", "plato", "import-panopticon", str(pan)]) == 0
    args = ["-w", str(b), "-q", "--set", "plato.prepare.split=[1,0,0]", "plato", "prepare", "--name", "f",
            str(pan / "astrotool-export"), "--time-unit", "s"]
    assert main(args) == 0
    assert (b / "plato/prepared/.f_checksums/sim00000_Q1.ftr.json").is_file()

    def no_read(*a, **k):
        raise AssertionError("an unchanged input read whole again")

    monkeypatch.setattr(made_with, "open", no_read, raising=False)
    capsys.readouterr()
    assert main(args[:2] + args[3:]) == 0
    assert "is up to date" in capsys.readouterr().err


def test_a_user_file_named_like_a_panopticon_quarter_outside_its_layout_is_not_shifted(tmp_path, capsys):
    import shutil

    from astrotool_plato.panopticon import quarter_offset, quarter_start

    a, b, pan = tmp_path / "a", tmp_path / "b", tmp_path / "pan"
    _simulate(a, n=2)
    assert main(["-w", str(a), "-q", "plato", "export-panopticon", str(pan)]) == 0
    for f in (pan / "astrotool-export").glob("*_Q1.ftr"):
        f.rename(f.with_name(f.name.replace("_Q1", "_Q2")))
    assert main(["-w", str(b), "-q", "plato", "import-panopticon", str(pan)]) == 0
    quarter = pan / "astrotool-export" / "sim00001_Q2.ftr"
    mine, dashed = tmp_path / "mine" / quarter.name, tmp_path / "my-curves" / quarter.name   # no config/ beside
    for f in (mine, dashed):
        f.parent.mkdir()
        shutil.copy(quarter, f)
    assert quarter_offset(quarter) == quarter_start(1, 2) > 0
    assert quarter_offset(mine) == quarter_offset(dashed) == 0.0
    base = ["-w", str(b), "-q", "--set", "plato.prepare.split=[1,0,0]", "plato", "prepare", "--time-unit", "s"]
    assert main([*base, "--name", "p", str(quarter)]) == 0
    assert main([*base, "--name", "m", str(mine)]) == 0
    t_start = [PreparedDataset(b / f"plato/prepared/{n}").metadata(["t_start"])["t_start"] for n in "pm"]
    np.testing.assert_allclose(t_start[1], t_start[0] - quarter_start(1, 2))


def test_a_folder_given_to_prepare_yields_no_panopticon_parameter_table(tmp_path):
    """`prepare pan/config/` read Complete_Parameters.ftr as a light curve."""
    from astrotool_plato.panopticon import PARAMS_FILE
    from astrotool_plato.prepare import input_files

    (tmp_path / PARAMS_FILE.name).write_bytes(b"")
    (tmp_path / "sim00001_Q1.ftr").write_bytes(b"")
    assert [f.name for f in input_files([str(tmp_path)], tmp_path / "raw")] == ["sim00001_Q1.ftr"]


def test_prepare_given_panopticon_s_data_folder_names_its_quarter_folder_and_import_panopticon(tmp_path):
    """`prepare pan` said only 'a folder with no light-curve files'."""
    from astrotool_plato.panopticon import PARAMS_FILE
    from astrotool_plato.prepare import input_files

    (tmp_path / "pan" / "sims-1").mkdir(parents=True)
    (tmp_path / "pan" / "sims-1" / "sim00001_Q1.ftr").write_bytes(b"")
    (tmp_path / "pan" / PARAMS_FILE).parent.mkdir()
    (tmp_path / "pan" / PARAMS_FILE).write_bytes(b"")
    with pytest.raises(InputError, match=re.escape(
            f"its subfolder {tmp_path / 'pan' / 'sims-1'} holds Panopticon quarter files: give it (with --time-unit "
            f"s), or import Panopticon's layout with `astro plato import-panopticon {tmp_path / 'pan'}`")):
        input_files([str(tmp_path / "pan")], tmp_path / "raw")



def _run_json(capsys, argv) -> dict:
    capsys.readouterr()
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "--shard was not used" not in err
    return json.loads(out)


@pytest.mark.parametrize("command", [["labels"], ["plot", "all", "--no-model-overlay"]])
def test_labels_and_plot_run_per_file_through_the_executor_shards_and_jobs(tmp_path, capsys, command):
    """Each file is an executor item: --shard 0/2 and 1/2 cover every file once, -j 2 writes what serial does."""
    import io
    from pathlib import Path

    import pyarrow.parquet as pq

    ws = tmp_path / "w"
    assert main(["-w", str(ws), "-q", "plato", "simulate", "-n", "3", "--days", "1", "--chunk-size", "1"]) == 0
    base = ["-w", str(ws), "--json"]
    shards = [sorted(_run_json(capsys, [*base, "--shard", f"{i}/2", "plato", *command])["files"]) for i in (0, 1)]
    assert [len(s) for s in shards] == [2, 1] and not set(shards[0]) & set(shards[1])
    every = sorted(shards[0] + shards[1])
    serial = {f: Path(f).read_bytes() for f in every}
    par = _run_json(capsys, [*base, "--overwrite", "--executor", "process", "-j", "2", "plato", *command])
    assert sorted(par["files"]) == every
    for f in every:
        if f.endswith(".parquet"):   # the provenance (time, command line) differs
            assert pq.read_table(f).equals(pq.read_table(io.BytesIO(serial[f])))
        else:
            assert Path(f).read_bytes() == serial[f]


def test_labels_reads_the_label_tables_once_and_hands_each_file_its_rows(tmp_path, capsys, monkeypatch):
    """Every item read every label table again (reads grew with the square of the file count)."""
    from astrotool_plato import labels as lab

    ws = tmp_path / "w"
    assert main(["-w", str(ws), "-q", "plato", "simulate", "-n", "3", "--days", "1", "--chunk-size", "1"]) == 0
    reads = []
    real = lab.read_label_tables
    monkeypatch.setattr(lab, "read_label_tables", lambda folder: reads.append(folder) or real(folder))
    out = _run_json(capsys, ["-w", str(ws), "--json", "plato", "labels"])
    assert len(out["files"]) == 3 and len(reads) == 1
    item = lab.MasksItem(str(next((ws / "plato/raw").glob("*_lightcurves.parquet"))), str(tmp_path / "m.parquet"),
                         ())
    with pytest.raises(InputError, match="no label row"):           # its rows travel in the item
        lab.masks_file(item)


def test_labels_removes_the_masks_of_light_curves_no_longer_there(tmp_path, capsys):
    """After `simulate --chunk-size 2 --overwrite`, `labels` left the masks of the old files beside the new ones:
    every curve was masked twice."""
    ws = tmp_path / "w"
    sim = ["-w", str(ws), "-q", "plato", "simulate", "-n", "3", "--days", "1"]
    assert main([*sim, "--chunk-size", "1"]) == 0
    assert main(["-w", str(ws), "-q", "plato", "labels"]) == 0
    assert main([*sim, "--chunk-size", "2", "--overwrite"]) == 0
    capsys.readouterr()
    assert main(["-w", str(ws), "plato", "labels"]) == 0
    assert "removed 2 mask file(s) of light curves no longer in" in capsys.readouterr().err   # 0-0, 1-1
    raw = {p.name.replace("_lightcurves", "_masks") for p in (ws / "plato/raw").glob("*_lightcurves.parquet")}
    assert {p.name for p in (ws / "plato/labels").glob("*_masks.parquet")} == raw and len(raw) == 2


def test_plot_s_old_no_model_option_still_works_hidden(tmp_path, capsys):
    """`--no-model` was renamed `--no-model-overlay`; scripts using it failed with "No such option". It is
    read, with a warning naming the new name (as every old option: `astrotool.context.old_option`)."""
    ws = tmp_path / "w"
    assert main(["-w", str(ws), "-q", "plato", "simulate", "-n", "1", "--days", "1"]) == 0
    capsys.readouterr()
    assert main(["-w", str(ws), "plato", "plot", "all", "--no-model"]) == 0
    err = capsys.readouterr().err
    assert "no model to overlay" not in err and list((ws / "plato/reports/plots").glob("*.png"))
    assert "--no-model: renamed --no-model-overlay" in err
    assert main(["-w", str(ws), "plato", "plot", "all", "--overwrite"]) == 0   # the default: overlay one if any
    assert "no model to overlay" in capsys.readouterr().err
    assert main(["plato", "plot", "--help"]) == 0
    text = capsys.readouterr().out
    assert "--no-model-overlay" in text and not re.search(r"--no-model(?!-)", text)


def test_dropped_curve_lists_say_how_many_more_there_are():
    from astrotool_plato.prepare import _listed

    assert _listed({f"c{k}": "NaN" for k in range(7)}) == "c0: NaN; c1: NaN; c2: NaN; c3: NaN; c4: NaN; and 2 more"
    assert _listed({"c0": "NaN"}) == "c0: NaN"


def test_a_gzipped_csv_light_curve_reads_as_the_csv(tmp_path):
    """Since files of other extensions are named as not light curves, a .csv.gz is read (pyarrow decompresses it)."""
    import gzip

    from astrotool_plato.lightcurves import read_curves

    t = np.arange(2000) * 25.0 / 86400.0
    text = "time,flux\n" + "".join(f"{float(a)!r},{float(1.0 + 1e-4 * np.sin(a))!r}\n" for a in t)
    (tmp_path / "c.csv").write_text(text)
    (tmp_path / "c.csv.gz").write_bytes(gzip.compress(text.encode()))
    plain, packed = (list(read_curves(tmp_path / name).values()) for name in ("c.csv", "c.csv.gz"))
    assert len(plain) == len(packed) == 1 and len(plain[0][0]) == 2000
    np.testing.assert_array_equal(plain[0][0], packed[0][0])   # time [d]
    np.testing.assert_array_equal(plain[0][1], packed[0][1])   # flux


def _pan_quarters(tmp_path, sims=6):
    """Panopticon's layout of ``sims`` simulations of two quarters each (every Q1 holds a single transit, no Q2
    does), imported into the workspace ``tmp_path / "b"``; returns the layout's folder."""
    a, b, pan = tmp_path / "a", tmp_path / "b", tmp_path / "pan"
    _simulate(a, n=2 * sims, extra=["--set", "plato.simulate.transit_fraction=1", "--set",
                                    "plato.simulate.periodic_fraction=0"])
    assert main(["-w", str(a), "-q", "plato", "export-panopticon", str(pan)]) == 0
    for k in range(1, 2 * sims, 2):                                 # the odd curves: the even ones' 2nd quarters
        (pan / "astrotool-export" / f"sim{k:05d}_Q1.ftr").rename(pan / "astrotool-export" / f"sim{k - 1:05d}_Q2.ftr")
    assert main(["-w", str(b), "-q", "plato", "import-panopticon", str(pan), "--name", "pan"]) == 0
    return pan


def test_a_one_curve_table_s_labels_are_found_by_its_curve_id_whatever_its_suffixes(tmp_path):
    """``star2.csv.gz`` looked for its label rows under ``star2.csv`` (its stem), found none, and so a relabelled
    curve kept a constant labels hash: its stale set was kept."""
    import pandas as pd

    from astrotool_plato.lightcurves import curve_id
    from astrotool_plato.prepare import _identity

    t = np.arange(0.0, 1.0, 25.0 / 86400.0)
    # the id is the name without the table's suffix: kic123.q1.csv and kic123.q2.csv were both "kic123"
    assert [curve_id(n) for n in ("star.csv", "star2.csv.gz", "kic.123.csv", "g0_t0.8.FITS", "x.ftr")] == \
        ["star", "star2", "kic.123", "g0_t0.8", "x"]
    for name in ("star.csv", "star2.csv.gz", "kic.123.csv"):
        pd.DataFrame({"time": t, "flux": np.ones_like(t)}).to_csv(tmp_path / name, index=False)
        cid = curve_id(name)
        before = _identity([tmp_path / name], {cid: {"id": cid, "depth": 100.0}})
        after = _identity([tmp_path / name], {cid: {"id": cid, "depth": 900.0}})
        assert before[name]["labels"] != after[name]["labels"], name


def test_prepare_sees_a_panopticon_quarter_relabelled_in_its_parameter_table(tmp_path, capsys):
    """The labels of a .ftr input were hashed as those of no curve: a changed parameter table kept the old set."""
    import pyarrow.feather as feather

    from astrotool_plato.panopticon import PARAMS_FILE

    pan = _pan_quarters(tmp_path, sims=2)
    b = tmp_path / "b"
    args = ["-w", str(b), "--set", "plato.prepare.split=[1,0,0]", "plato", "prepare", "--name", "direct",
            "--time-unit", "s", str(pan / "astrotool-export")]
    assert main(["-q", *args]) == 0
    params = feather.read_table(pan / PARAMS_FILE).to_pandas()
    params["transit_duration"] *= 1.5
    feather.write_feather(params, pan / PARAMS_FILE)
    assert main(["-w", str(b), "-q", "--overwrite", "plato", "import-panopticon", str(pan), "--name", "pan"]) == 0
    capsys.readouterr()
    assert main(args) == 2
    assert "sim00000_Q1.ftr.labels" in capsys.readouterr().err
    assert main(["-q", "--overwrite", *args]) == 0
    meta = PreparedDataset(b / "plato/prepared/direct").metadata(["id", "duration"])
    want = dict(zip(params["curve_id"], params["transit_duration"] * 24.0))
    assert dict(zip(np.asarray(meta["id"]).astype(str), meta["duration"]))["sim00000_Q1"] == \
        pytest.approx(want["sim000000"])


def test_prepare_keeps_the_quarters_of_a_panopticon_simulation_in_one_split_and_kinds_them_by_their_samples(
        tmp_path, capsys):
    """Quarters of one star went to different splits (train/test leak), and a quarter without the transit of its
    simulation was a `planet`."""
    _pan_quarters(tmp_path, sims=6)
    b = tmp_path / "b"
    capsys.readouterr()
    assert main(["-w", str(b), "--json", "--set", "plato.prepare.split=[0.5,0.5,0]", "plato", "prepare"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["kinds"] == {"none": 6, "planet": 6}
    meta = PreparedDataset(b / "plato/prepared/quarters").metadata(["id", "split", "kind", "n_transits"])
    ids, split, kind = (np.asarray(meta[c]).astype(str) for c in ("id", "split", "kind"))
    assert all(kind[ids == f"sim{k:05d}_Q1"] == "planet" and kind[ids == f"sim{k:05d}_Q2"] == "none"
               for k in range(0, 12, 2))
    np.testing.assert_array_equal(meta["n_transits"], (kind == "planet").astype(int))
    for k in range(0, 12, 2):
        assert len(set(split[np.char.startswith(ids, f"sim{k:05d}_")])) == 1, k
    assert set(split) == {"train", "val"}


def test_prepare_kinds_counts_and_snr_follow_the_kept_samples(tmp_path, capsys):
    """`--length` keeps a part of each curve: a transit beyond it made the curve a `planet` all the same."""
    _simulate(tmp_path, n=12, days=2.0, extra=["--set", "plato.simulate.transit_fraction=1"])
    capsys.readouterr()
    assert main(["-w", str(tmp_path), "--json", "--set", "plato.prepare.split=[1,0,0]", "plato", "prepare",
                 "--length", "512"]) == 0
    out = json.loads(capsys.readouterr().out)
    ds = PreparedDataset(tmp_path / "plato/prepared/quarters")
    meta = ds.metadata(["id", "kind", "n_transits", "snr"])
    label = ds.read(np.arange(ds.n), ["label"])["label"]
    has = (label == lab.PLANET).any(axis=1)
    assert 0 < has.sum() < ds.n                                     # some transits kept, some cut off
    np.testing.assert_array_equal(np.asarray(meta["kind"]).astype(str) == "planet", has)
    np.testing.assert_array_equal(np.asarray(meta["n_transits"]) > 0, has)
    assert out["kinds"]["planet"] == has.sum()
    rows = lab.read_label_tables(tmp_path / "plato/labels")
    for cid, n, snr in zip(np.asarray(meta["id"]).astype(str), meta["n_transits"], meta["snr"]):
        r = rows[cid]                                               # each transit's own S/N stays the label's
        assert snr == pytest.approx(r["snr"] * np.sqrt(n / r["n_transits"]))


def test_panopticon_toml_translates_channels_defaults_and_an_unused_scheduler_and_lists_what_it_leaves(tmp_path,
                                                                                                      capsys):
    """channels_in = 4 only got a stale note, activation and channels_out went unmentioned, a missing lr left
    astrotool's 2e-3 (torch: 1e-3), and an unused ReduceLROnPlateau was refused."""
    import tomllib

    from astrotool_plato.config import PlatoConfig

    src = tmp_path / "panopticon.toml"
    src.write_text(PANOPTICON.replace("init_features = 8", "init_features = 8\nchannels_in = 4\nchannels_out = 1")
                   .replace('loss = "BCELoss"', 'loss = "BCELoss"\nactivation = "sigmoid"')
                   .replace("lr = 1e-3\n", "").replace('name = "ExponentialLR"\nuse = true\n[scheduler.kwargs]\n'
                                                       'gamma = 0.9', 'name = "ReduceLROnPlateau"\nuse = false'))
    assert main(["plato", "config", "import", str(src), "-o", str(tmp_path / "astro.toml")]) == 0
    text = (tmp_path / "astro.toml").read_text()
    cfg = PlatoConfig.model_validate(tomllib.loads(text)["plato"])
    assert cfg.prepare.channels == "groups" and cfg.train.lr == 1e-3 and cfg.train.scheduler == ""
    assert "lr (torch's default for Adam)" in text
    for said in ("[model.general] channels_out = 1:", "[model] activation = 'sigmoid':",
                 "[scheduler] name = 'ReduceLROnPlateau' and its kwargs: not used (use = false)"):
        assert said in text, said


def test_prepare_sees_a_simulated_file_edited_with_its_metadata_kept_and_keeps_an_unchanged_one_unread(
        tmp_path, capsys, monkeypatch):
    """A simulated file was known by its simulation settings' hash, which an edit that keeps the file's metadata
    (pyarrow) keeps: the stale set was kept ("is up to date")."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from astrotool import made_with

    _simulate(tmp_path, n=4)
    args = ["-w", str(tmp_path), "--set", "plato.prepare.split=[1,0,0]", "plato", "prepare", "--augment"]
    assert main(args) == 0
    path = tmp_path / "plato/raw/sim000000-000003_lightcurves.parquet"
    table = pq.read_table(path)
    table = table.set_column(table.schema.get_field_index("flux"), table.schema.field("flux"),
                             pa.array(table["flux"].to_numpy() * np.float32(1.01)))
    pq.write_table(table, path)                                       # the same key-value metadata
    capsys.readouterr()
    assert main(args) == 2                                            # never kept
    err = capsys.readouterr().err
    assert "sim000000-000003_lightcurves.parquet.content" in err and "is up to date" not in err
    assert main(["-w", str(tmp_path), "--overwrite", *args[2:]]) == 0

    def no_read(*a, **k):
        raise AssertionError("an unchanged input read whole again")

    monkeypatch.setattr(made_with, "open", no_read, raising=False)   # a rerun: the kept checksums, no file read
    capsys.readouterr()
    assert main(args) == 0
    assert "is up to date" in capsys.readouterr().err


def test_prepare_names_the_sets_it_mixes_and_warns_when_the_shortest_curve_cuts_the_others(tmp_path, capsys):
    """Every *_lightcurves.parquet of plato/raw/ was mixed in silently, each curve cut to the shortest's length."""
    _simulate(tmp_path, n=4, days=1.5)                               # 5,184 samples each
    _simulate(tmp_path, n=2, extra=["--name", "pl"])                 # 3,456: the set's length is 3,328
    capsys.readouterr()
    assert main(["-w", str(tmp_path), "--json", "plato", "prepare"]) == 0
    captured = capsys.readouterr()
    out, err = json.loads(captured.out), captured.err
    assert out["curves"] == 6 and out["length"] == 3328
    assert "'sim' 4 curve(s) in sim000000-000003_lightcurves.parquet" in err
    assert "'pl' 2 curve(s) in pl000000-000001_lightcurves.parquet" in err
    assert re.search(r"WARNING.*length 3328 samples .*cuts 4 of the 6 curves \('sim' 4\).*--length", err), err
    # one set: named, no warning
    assert main(["-w", str(tmp_path), "--json", "plato", "prepare", "--name", "one",
                 str(tmp_path / "plato/raw/sim000000-000003_lightcurves.parquet")]) == 0
    err = capsys.readouterr().err
    assert "'sim' 4 curve(s)" in err and "cuts" not in err
