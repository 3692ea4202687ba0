"""The segmentation network: shapes and invariances, the transit shape against batman, a short training run
that finds deep transits at their known times, ``evaluate``, ``detect`` and ``bls`` on files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from astrotool.cli import main  # noqa: E402
from astrotool_plato import simulate as sim  # noqa: E402
from astrotool_plato.config import SimulateConfig  # noqa: E402
from astrotool_plato.model import TransitNet, granularity, loss_function, normalise, pad_to  # noqa: E402

EASY = ["--set", "plato.simulate.duration_hours=[1.5,3]", "--set", "plato.simulate.depth_ppm=[2000,5000]",
        "--set", "plato.simulate.noise_ppm=300", "--set", "plato.simulate.transit_fraction=0.6"]
SMALL = ["--width", "4", "--depth", "4", "--lr", "3e-3", "--batch-size", "4"]


def test_limb_darkened_transit_matches_batman_within_three_percent_of_the_depth():
    batman = pytest.importorskip("batman")
    t = np.linspace(-0.3, 0.3, 4001)
    u = (0.40, 0.26)
    for depth, b, t14_h in ((900.0, 0.1, 6.0), (300.0, 0.6, 3.0), (5000.0, 0.3, 8.0)):
        ours = sim.transit_deficit(t, 0.0, t14_h, depth, b, u, "limb-darkened")
        p, b = sim.transit_geometry(depth, b, u, "limb-darkened")
        period = 3000.0                                         # a long period: the chord is straight
        t14 = t14_h / 24.0
        a = period * math.sqrt((1 + p) ** 2 - b * b) / (math.pi * t14)
        params = batman.TransitParams()
        params.t0, params.per, params.rp, params.a = 0.0, period, p, a
        params.inc, params.ecc, params.w = math.degrees(math.acos(b / a)), 0.0, 90.0
        params.limb_dark, params.u = "quadratic", list(u)
        ref = 1.0 - batman.TransitModel(params, t).light_curve(params)
        # the small-planet approximation (intensity under the planet) errs most in ingress and egress:
        # measured 1.4-2.4 % of the depth at worst, 0.2-0.6 % rms over the transit, 0.05 % at mid-transit
        on = ref > 0
        np.testing.assert_array_equal(ours > 0, on)                          # same contact times
        assert np.abs(ours - ref).max() < 0.03 * depth * 1e-6
        assert np.sqrt(np.mean((ours - ref)[on] ** 2)) < 0.01 * depth * 1e-6
        assert ref.max() == pytest.approx(ours.max(), rel=2e-3) == depth * 1e-6


@pytest.mark.parametrize("decoder", ["unet3p", "unet", "unetpp"])
def test_network_keeps_the_length_and_ignores_the_flux_scale(decoder):
    torch.manual_seed(0)
    net = TransitNet(decoder=decoder, width=4, depth=4, bin=4).eval()
    assert net.granularity == granularity(4, 4) == 32
    x = torch.randn(3, 320, dtype=torch.float64).float() * 1e-3
    with torch.no_grad():
        y = net(x)
        assert y.shape == (3, 320)
        # normalised by its own mean and point-to-point noise: offset and scale do not matter
        torch.testing.assert_close(net(x * 7.0 + 0.02), y, atol=2e-4, rtol=1e-4)
        # one bin -> one logit, repeated over the bin's samples
        assert torch.equal(y[:, 0::4], y[:, 3::4])
    padded, n = pad_to(np.arange(40.0), 32)
    assert n == 40 and padded.shape == (64,) and padded[40] == 38.0      # reflected
    with pytest.raises(ValueError, match="too short"):
        pad_to(np.arange(10.0), 32)


def test_losses_on_hand_made_inputs():
    logits = torch.tensor([[0.0, 0.0, 0.0, 0.0]])
    target = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    assert float(loss_function("bce")(logits, target)) == pytest.approx(math.log(2))
    # soft Dice with p = 0.5 everywhere: 1 - (2 * 0.5 + 1) / (2 + 1 + 1)
    assert float(loss_function("dice")(logits, target)) == pytest.approx(0.5)
    # focal at p_t = 0.5, gamma 2: 0.25 * log 2
    assert float(loss_function("focal")(logits, target)) == pytest.approx(0.25 * math.log(2))
    assert float(loss_function("bce", pos_weight=3.0)(logits, target)) == pytest.approx(6 * math.log(2) / 4)
    with pytest.raises(ValueError, match="loss must be one of"):
        loss_function("hinge")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small network trained briefly on easy, deep transits (1-d curves)."""
    ws = tmp_path_factory.mktemp("plato_ws")
    base = ["-w", str(ws), "-q", "--seed", "3", "plato"]
    assert main([*base, "simulate", "-n", "48", "--days", "1", *EASY]) == 0
    assert main([*base, "prepare"]) == 0
    assert main([*base, "train", "--epochs", "8", *SMALL]) == 0
    return ws


def _fresh_curves(n=8):
    """Curves the network never saw (another seed), with their parameters."""
    cfg = SimulateConfig(n_curves=n, duration_days=1.0, duration_hours=(1.5, 3.0), depth_ppm=(2000.0, 5000.0),
                         noise_ppm=300.0, transit_fraction=0.6)
    time, flux, params = sim.simulate_curves(range(n), 9001, cfg)
    return time, flux, params


def test_trained_network_finds_deep_transits_at_their_times_in_csv_and_fits_files(trained, tmp_path, capsys):
    from astropy.table import Table

    time, flux, params = _fresh_curves()
    files = []
    for k, (f, p) in enumerate(zip(flux, params)):
        if k % 2:   # TESS-like FITS: TIME [d], PDCSAP_FLUX in e-/s
            path = tmp_path / f"{p.id}.fits"
            Table({"TIME": time + 2000.0, "PDCSAP_FLUX": f.astype(np.float64) * 5e4}).write(path)
        else:       # a CSV with time in seconds
            path = tmp_path / f"{p.id}.csv"
            np.savetxt(path, np.c_[time * 86400.0, f], delimiter=",", header="time,flux", comments="")
        files.append(str(path))
    capsys.readouterr()
    extra = ["--time-unit", "s"]
    assert main(["-w", str(trained), "--json", "plato", "detect", *files[0::2], *extra, "--name", "csv"]) == 0
    csv_out = json.loads(capsys.readouterr().out)
    assert main(["-w", str(trained), "--json", "plato", "detect", *files[1::2], "--name", "fits"]) == 0
    fits_out = json.loads(capsys.readouterr().out)
    events = csv_out["events"] + [{**e, "t_mid": e["t_mid"] - 2000.0} for e in fits_out["events"]]
    found = 0
    for p in params:
        mine = [e for e in events if e["id"] == p.id]
        if p.has_transit:
            near = [e for e in mine if abs(e["t_mid"] - p.t0) < 0.25 * p.duration / 24.0]
            found += bool(near)
            if near:
                assert near[0]["depth"] == pytest.approx(p.depth, rel=0.35)
    assert found >= sum(p.has_transit for p in params) - 1
    table = trained / "plato/runs/csv/csv_events.parquet"
    assert table.exists() and table.with_suffix(".csv").exists()
    # vetting that leaves every event out says so: "0 event(s)" alone reads as nothing found
    one = next(f for f in files[0::2] if any(e["file"] == Path(f).name for e in csv_out["events"]))
    assert main(["-w", str(trained), "--json", "plato", "detect", one, *extra, "--min-snr", "1e6",
                 "--name", "strict"]) == 0
    out = capsys.readouterr()
    strict, before = json.loads(out.out), [e for e in csv_out["events"] if e["file"] == Path(one).name]
    assert not any(np.isfinite(e["snr"]) for e in strict["events"])
    assert strict["left_out"]["low_snr"] == sum(np.isfinite(e["snr"]) for e in before) > 0
    assert f"vetting left out {strict['left_out']['low_snr']} event(s) below S/N 1e+06" in out.err
    # a missing file is named as such, not as a change of the run "strict" (its files)
    assert main(["-w", str(trained), "plato", "detect", str(tmp_path / "gone.csv"), "--name", "strict"]) == 2
    err = capsys.readouterr().err
    assert "gone.csv: no such light-curve file" in err and "other settings" not in err


def test_eval_scores_the_split_and_counts_every_labelled_transit(trained, capsys):
    from astrotool_plato.events import runs
    from astrotool_plato.labels import PLANET
    from astrotool_plato.prepare import PreparedDataset

    capsys.readouterr()
    assert main(["-w", str(trained), "--json", "plato", "evaluate", "--split", "all"]) == 0
    rep = json.loads(capsys.readouterr().out)
    ds = PreparedDataset(trained / "plato/prepared/quarters")
    labels = ds.read(np.arange(ds.n), ["label"])["label"]
    assert rep["transits"] == sum(len(runs(y == PLANET)) for y in labels)
    assert rep["curves"] == ds.n and len(rep["recovery"]) == len(rep["thresholds"]) == 23
    assert rep["recovery"][9] >= 0.85                          # threshold 0.5
    assert rep["pointwise"]["best"]["iou"] > 0.6
    assert rep["operating"]["false_alarm_curve_fraction"] <= 0.01 or not rep["operating"]["meets_target"]
    assert (trained / "plato/reports/quarters_unet3p_quarters_all_evaluate.png").exists()


def test_train_resumes_with_more_epochs_and_refuses_other_settings(trained, capsys):
    base = ["-w", str(trained), "--json", "--seed", "3", "plato", "train"]
    capsys.readouterr()
    assert main([*base, "--epochs", "9", *SMALL]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["resumed_from"] == 8 and out["epochs_run"] == 1 and out["epochs_total"] == 9
    assert main([*base, "--epochs", "9", *SMALL[:-2], "--batch-size", "8"]) == 2
    assert "batch_size" in capsys.readouterr().err


def test_a_retrained_model_is_evaluated_again_under_the_same_report_name(trained, tmp_path, capsys, monkeypatch):
    """The report's settings record held the weights' checksum: retrain (or train on), then evaluate, was refused
    (exit 2) on the default report name, though evaluate reuses nothing."""
    import shutil

    ws = tmp_path / "ws"
    shutil.copytree(trained, ws)
    base = ["-w", str(ws), "-q", "plato"]
    record = ws / "plato/reports/.quarters_unet3p_quarters_all_evaluate.json.made_with.json"
    assert main([*base, "evaluate", "--split", "all"]) == 0
    weights = ws / "plato/models/quarters_unet3p/model.safetensors"
    before = weights.read_bytes()
    assert main(["-w", str(ws), "-q", "--seed", "4", "plato", "train", "--epochs", "2", *SMALL, "--overwrite"]) == 0
    assert weights.read_bytes() != before
    capsys.readouterr()
    assert main([*base, "evaluate", "--split", "all"]) == 0, capsys.readouterr().err
    assert "weights" not in json.loads(record.read_text())["settings"]
    # an option that changes the report is still refused on that name
    assert main(["-w", str(ws), "--set", "plato.evaluate.thresholds=[0.3,0.5]", "plato", "evaluate", "--split",
                 "all"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    # the record is written with the report, before the plot: a failing plot leaves no new report beside the old
    # record (a rerun with the new settings was refused)
    import astrotool_plato.evaluate as ev

    def broken(*a, **k):
        raise RuntimeError("plot failed")

    monkeypatch.setattr(ev, "plot_report", broken)
    new = ["-w", str(ws), "--set", "plato.evaluate.thresholds=[0.3,0.5]", "plato", "evaluate", "--split", "all"]
    assert main([*new, "--overwrite"]) != 0
    assert json.loads(record.read_text())["settings"]["thresholds"] == [0.3, 0.5]
    monkeypatch.undo()
    assert main(new) == 0, capsys.readouterr().err


def test_detect_names_a_bad_file_and_still_writes_the_good_ones(trained, tmp_path, capsys):
    time, flux, params = _fresh_curves(2)
    good = tmp_path / "good.csv"
    np.savetxt(good, np.c_[time, flux[0]], delimiter=",", header="time,flux", comments="")
    bad = tmp_path / "bad.csv"
    np.savetxt(bad, np.c_[time[::-1], flux[1]], delimiter=",", header="time,flux", comments="")
    capsys.readouterr()
    assert main(["-w", str(trained), "plato", "detect", str(good), str(bad), "--name", "mixed"]) == 2
    err = capsys.readouterr().err
    assert "bad.csv" in err and "time is not increasing" in err and "1 item(s) failed" in err
    failed_lines = [line for line in err.splitlines() if "time is not increasing" in line and "failed" in line]
    assert failed_lines and all(line.count("bad.csv") == 1 for line in failed_lines), err   # named once
    assert (trained / "plato/runs/mixed/mixed_events.csv").read_text().startswith("file,id,t_mid")
    table = (trained / "plato/runs/mixed/mixed_events.csv").read_text()
    # the same run name on other files: the table of good.csv and bad.csv is kept, not replaced
    other = tmp_path / "other.csv"
    other.write_bytes(good.read_bytes())
    assert main(["-w", str(trained), "plato", "detect", str(other), "--name", "mixed"]) == 2
    err = capsys.readouterr().err
    assert "mixed_events.parquet: exists but was made with other settings:" in err
    assert "files searched: bad.csv, good.csv -> other.csv" in err and "--overwrite" in err
    assert (trained / "plato/runs/mixed/mixed_events.csv").read_text() == table
    assert main(["-w", str(trained), "--overwrite", "plato", "detect", str(other), "--name", "mixed"]) == 0
    from astrotool.io.tables import parquet_metadata

    assert parquet_metadata(trained / "plato/runs/mixed/mixed_events.parquet")["files"] == [str(other.resolve())]


def test_bls_baseline_finds_a_deep_transit():
    from astrotool_plato.bls import bls_search
    from astrotool_plato.config import BlsConfig

    cfg = SimulateConfig(n_curves=1, duration_days=6.0, noise_ppm=200.0, granulation_ppm=20.0,
                         rotation_fraction=0.0, transit_fraction=1.0, depth_ppm=(3000.0, 3000.0),
                         duration_hours=(3.0, 3.0), eb_fraction=0, beb_fraction=0)
    time, flux, params = sim.simulate_curves([0], 5, cfg)
    r = bls_search(time, flux[0].astype(np.float64) - 1.0, BlsConfig(min_period_days=0.5, durations_hours=[2, 3, 4]))
    # white-noise S/N of the box: its mean depth (~2500 ppm for this limb-darkened shape) / 200 ppm * sqrt(3 h / 25 s)
    assert r["detected"] and 200 < r["snr"] < 320
    assert min(abs(c - params[0].t0) for c in r["transits"]) < 0.05
    assert r["depth"] == pytest.approx(3000.0, rel=0.3)


def test_bls_reads_named_columns_and_refuses_a_curve_too_short(tmp_path, capsys):
    """bls told users to name columns with --time-column, which it did not have; a 5-row file ended in
    numpy warnings and astropy's ValueError (exit 1)."""
    cfg = SimulateConfig(n_curves=1, duration_days=2.0, noise_ppm=200.0, granulation_ppm=0.0,
                         rotation_fraction=0.0, transit_fraction=1.0, depth_ppm=(3000.0, 3000.0),
                         duration_hours=(3.0, 3.0), eb_fraction=0, beb_fraction=0)
    time, flux, _ = sim.simulate_curves([0], 5, cfg)
    named = tmp_path / "named.csv"
    np.savetxt(named, np.c_[time, flux[0]], delimiter=",", header="obs_time,sap", comments="")
    short = tmp_path / "short.csv"
    np.savetxt(short, np.c_[time[:5], flux[0, :5]], delimiter=",", header="time,flux", comments="")
    ws = ["-w", str(tmp_path / "ws"), "--json", "plato", "bls"]
    capsys.readouterr()
    assert main([*ws, str(named)]) == 2
    assert "named.csv: no time column" in capsys.readouterr().err
    assert main([*ws, str(named), "--time-column", "obs_time", "--flux-column", "sap", "--snr", "20"]) == 0
    (row,) = json.loads(capsys.readouterr().out)["curves_searched"]
    assert row["detected"] and row["n_transits"] >= 1 and row["depth"] == pytest.approx(3000.0, rel=0.3)
    assert main([*ws, str(short)]) == 2
    err = capsys.readouterr().err
    assert f"{short}: a curve of 5 samples over 0.03 h is too short for BLS" in err and "Warning" not in err


@pytest.mark.long
def test_demo_step_trains_and_finds_the_fresh_transit(tmp_path):
    import re

    from astrotool.context import Context
    from astrotool_plato.demo import run

    lines = run(Context.create(tmp_path))
    assert lines[0].startswith("plato: 48 light curves of 1 d at 25 s")
    assert (tmp_path / "plato/models/demo/model.safetensors").exists()
    t0 = float(re.search(r"at t0 = ([0-9.]+) d", lines[-1]).group(1))
    found = [float(v) for v in re.findall(r"event at ([0-9.]+) d", lines[-1])]
    assert any(abs(t - t0) < 0.03 for t in found), lines[-1]


def test_demo_step_logs_each_epoch_as_plato_train_does(tmp_path, capfd):
    """The demo's plato step trained 12 epochs (~135 s) without one log line: train_model was called without
    the log and per-epoch callback of `astro plato train`."""
    from astrotool.context import Context
    from astrotool_plato.demo import run

    run(Context.create(tmp_path), epochs=2)
    err = capfd.readouterr().err
    epochs = [line.split("INFO", 1)[1].split() for line in err.splitlines() if " INFO    epoch " in line]
    assert [e[1] for e in epochs] == ["1/2", "2/2"] and all("val_loss" in e for e in epochs), err
    assert "train demo: 2/2 done" in err


def test_plot_draws_named_curves_and_those_of_the_last_detect_run(trained, capsys):
    raw = next((trained / "plato/raw").glob("sim*_lightcurves.parquet"))   # the fixture's, not another test's
    capsys.readouterr()
    assert main(["-w", str(trained), "--json", "plato", "plot", "sim000000", "sim000001"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["plots"] == 2 and all((trained / "plato/reports/plots" / f"sim00000{k}.png").exists() for k in (0, 1))
    assert main(["-w", str(trained), "plato", "plot", "nosuchcurve"]) == 2
    assert "nosuchcurve: no such curve id" in capsys.readouterr().err
    assert main(["-w", str(trained), "--json", "plato", "detect", str(raw), "--name", "forplot"]) == 0
    n_with = json.loads(capsys.readouterr().out)["curves_with_events"]
    assert main(["-w", str(trained), "--json", "plato", "plot", "last", "--no-model-overlay"]) == 0
    assert json.loads(capsys.readouterr().out)["plots"] == n_with > 0


def test_plot_last_follows_a_moved_workspace(trained, tmp_path, capsys):
    """run.json names the detect run's table by its absolute path: in a workspace copied from a cluster (and
    the original gone) `plot last` found no table. Paths under the recorded workspace are read under this one."""
    import shutil

    there = tmp_path / "cluster"
    shutil.copytree(trained, there)
    raw = next((there / "plato/raw").glob("sim*_lightcurves.parquet"))   # the fixture's, not another test's
    assert main(["-w", str(there), "--json", "plato", "detect", str(raw), "--name", "moved"]) == 0
    n_with = json.loads(capsys.readouterr().out)["curves_with_events"]
    here = tmp_path / "laptop"
    shutil.copytree(there, here)
    shutil.rmtree(there)
    assert main(["-w", str(here), "--json", "plato", "plot", "last", "--no-model-overlay"]) == 0
    assert json.loads(capsys.readouterr().out)["plots"] == n_with > 0


def test_optimizers_and_epoch_schedules_follow_torch():
    from astrotool.errors import ConfigError
    from astrotool_plato.config import TrainConfig
    from astrotool_plato.train import lr_schedule, make_optimizer

    net = TransitNet(width=2, depth=2, bin=1)
    opt = make_optimizer(TrainConfig(optimizer="SGD", lr=0.1, weight_decay=0.0, optimizer_kwargs={"momentum": 0.9}),
                         net.parameters())
    assert isinstance(opt, torch.optim.SGD) and opt.defaults["momentum"] == 0.9
    with pytest.raises(ConfigError, match="SGD refuses"):
        make_optimizer(TrainConfig(optimizer="SGD", optimizer_kwargs={"betas": [0.9, 0.9]}), net.parameters())
    with pytest.raises(ValueError, match="unknown optimizer 'Adamm'"):
        TrainConfig(optimizer="Adamm")
    # each schedule against torch's own, stepped once per epoch
    for name, kw in (("StepLR", {"step_size": 2, "gamma": 0.5}), ("MultiStepLR", {"milestones": [1, 3], "gamma": 0.1}),
                     ("LinearLR", {"start_factor": 0.25, "total_iters": 4}), ("ConstantLR", {"factor": 0.5, "total_iters": 2}),
                     ("CosineAnnealingLR", {"T_max": 5, "eta_min": 1e-4}), ("ExponentialLR", {"gamma": 0.8})):
        cfg = TrainConfig(lr=1e-2, scheduler=name, scheduler_kwargs=kw)
        ours = lr_schedule(cfg, steps_per_epoch=3)
        o = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1e-2)
        ref = getattr(torch.optim.lr_scheduler, name)(o, **kw)
        for epoch in range(6):
            assert ours(3 * epoch + 2) * 1e-2 == pytest.approx(o.param_groups[0]["lr"], rel=1e-6), (name, epoch)
            o.step()
            ref.step()
    # the [plato.train] section refuses what the schedule cannot use (a file's error names the file)
    with pytest.raises(ValueError, match="scheduler_kwargs: StepLR needs 'step_size'"):
        TrainConfig(scheduler="StepLR")
    with pytest.raises(ValueError, match="does not take gama"):
        TrainConfig(scheduler="ExponentialLR", scheduler_kwargs={"gamma": 0.9, "gama": 1})
    for name, kw, key in (("StepLR", {"step_size": -1}, "step_size"), ("StepLR", {"step_size": 1.5}, "step_size"),
                          ("CosineAnnealingLR", {"T_max": -2}, "T_max"), ("MultiStepLR", {"milestones": [0]}, "milestones"),
                          ("MultiStepLR", {"milestones": [2, 1.5]}, "milestones"),
                          ("ConstantLR", {"total_iters": 2.7}, "total_iters"), ("StepLR", {"step_size": 1, "gamma": 0},
                                                                                   "gamma"),
                          ("LinearLR", {"end_factor": [1]}, "end_factor")):
        with pytest.raises(ValueError, match=f"scheduler_kwargs: {name}: {key}"):
            TrainConfig(scheduler=name, scheduler_kwargs=kw)
    assert TrainConfig(scheduler="MultiStepLR", scheduler_kwargs={"milestones": [2]}).scheduler_kwargs == \
        {"milestones": [2]}   # whole numbers stay integers
    assert lr_schedule(TrainConfig(scheduler="StepLR", scheduler_kwargs={"step_size": 2.0}), 1)(2) == pytest.approx(0.1)
    bad = TrainConfig.model_construct(**{**TrainConfig().model_dump(), "scheduler": "StepLR"})   # not validated
    with pytest.raises(ConfigError, match="plato.train.scheduler_kwargs: StepLR needs 'step_size'"):
        lr_schedule(bad, 1)


def test_hour_scale_noise_scales_a_red_noise_curve_and_leaves_white_noise_and_steps_alone():
    g = torch.Generator().manual_seed(11)
    n, block, white, red = 144 * 2000, 144, 1e-4, 1e-3
    x = white * torch.randn(1, 1, n, generator=g, dtype=torch.float64)
    # white noise: both scales measure the same sigma
    assert normalise(x, block).std().item() == pytest.approx(normalise(x, 1).std().item(), rel=0.04)
    assert normalise(x, 1).std().item() == pytest.approx(1.0, rel=0.02)
    # red noise constant over each block: the block means scatter by sqrt(red^2 + white^2 / block), so the
    # scale is sqrt(block * red^2 + white^2), 12x the block's own rms where the point-to-point noise sees white
    steps = red * torch.randn(1, 1, n // block, generator=g, dtype=torch.float64).repeat_interleave(block, dim=-1)
    y = x + steps
    expected = math.sqrt(block * red**2 + white**2)
    ratio = (y - y.mean()) / normalise(y, block)
    assert ratio.median().item() == pytest.approx(expected, rel=0.06)
    assert (y - y.mean()).std().item() / normalise(y, 1).std().item() < 3 * white
    # one flux step of 50x the white noise moves the scale by < 1 % (a median of block differences)
    def scale(v):
        return ((v - v.mean()).std() / normalise(v, block).std()).item()

    assert scale(x + 5e-3 * (torch.arange(n) > n // 2)) == pytest.approx(scale(x), rel=0.01)
    # too few blocks: the point-to-point noise alone
    short = x[..., :block * 8]
    torch.testing.assert_close(normalise(short, block), normalise(short, 1))
    with pytest.raises(ValueError, match="noise_bin >= 1"):
        TransitNet(noise_bin=0)


def test_trend_removal_takes_out_steps_and_rotation_and_keeps_a_twelve_hour_transit():
    """A 2-d running median: two flux steps leave under 20 % of themselves in the 3 h either side and
    under 100 ppm beyond 6 h; a 1,000 ppm, 10-d rotation leaves under 120 ppm (the median's bias at its
    extremes, A (2 pi / P)^2 W^2 / 24, is 66 ppm); a 12-h transit keeps 90 % of its depth and moves
    the level around it by less than 10 % of that."""
    from astrotool_plato.model import remove_trend

    g = torch.Generator().manual_seed(5)
    n, day = 69120, 3456                                    # 20 d at 25 s
    t = torch.arange(n, dtype=torch.float64)
    noise = 3e-4 * torch.randn(n, generator=g, dtype=torch.float64)
    transit = -2e-3 * ((t >= 20000) & (t < 21728))          # 12 h, 2,000 ppm
    steps = 1e-3 * (t >= 40000) - 8e-4 * (t >= 60000)
    rotation = 1e-3 * torch.sin(2 * math.pi * t / day / 10.0)
    chunk = day // 8                                        # 3 h

    def levels(y, skip=()):
        """Median of every 3-h chunk, those starting in a ``skip`` range left out [relative flux]."""
        return torch.tensor([y[a:a + chunk].median().item() for a in range(0, n - chunk + 1, chunk)
                             if not any(lo <= a < hi for lo, hi in skip)])

    y = remove_trend((noise + transit + steps)[None, None], 2 * day)[0, 0]
    for at, size in ((40000, 1e-3), (60000, 8e-4)):
        assert abs(y[at:at + chunk].median().item()) < 0.2 * size
        assert abs(y[at - chunk:at].median().item()) < 0.2 * size
    assert levels(y, [(40000 - 3 * chunk, 40000 + 2 * chunk), (60000 - 3 * chunk, 60000 + 2 * chunk),
                      (20000 - chunk, 21728)]).abs().max().item() < 1e-4
    y = remove_trend((noise + transit + rotation)[None, None], 2 * day)[0, 0]
    assert levels(y, [(20000 - day, 21728 + day)]).abs().max().item() < 1.2e-4
    assert levels(y, [(20000 - chunk, 21728)]).abs().max().item() < 2e-4
    depth = 0.5 * (y[19000:20000].median() + y[21728:22728].median()) - y[20000:21728].median()
    assert depth.item() == pytest.approx(2e-3, rel=0.1)
    with pytest.raises(ValueError, match="trend_window"):
        TransitNet(trend_window=-1)


def test_pooling_choice_changes_the_network_and_bad_names_are_refused():
    torch.manual_seed(1)
    avg = TransitNet(width=2, depth=3, bin=1, pool="avg").eval()
    mx = TransitNet(width=2, depth=3, bin=1, pool="max").eval()
    mx.load_state_dict(avg.state_dict())                       # same weights, other downsampling
    x = torch.randn(2, 64)
    with torch.no_grad():
        assert not torch.allclose(avg(x), mx(x))
    with pytest.raises(ValueError, match="pool must be"):
        TransitNet(pool="median")


def test_eval_pads_any_length_and_refuses_another_cadence(trained, capsys):
    base = ["-w", str(trained), "--json", "--seed", "3", "plato"]
    raw = sorted((trained / "plato/raw").glob("sim*_lightcurves.parquet"))
    assert main([*base, "prepare", *map(str, raw), "--name", "odd", "--length", "3300"]) == 0
    capsys.readouterr()
    assert main([*base, "evaluate", "--dataset", "odd", "--split", "all", "--name", "odd"]) == 0
    assert json.loads(capsys.readouterr().out)["length"] == 3300
    assert main([*base, "simulate", "-n", "6", "--days", "1", "--cadence", "50", "--name", "slow", *EASY]) == 0
    slow = sorted((trained / "plato/raw").glob("slow*_lightcurves.parquet"))
    capsys.readouterr()
    assert main(["-w", str(trained), "--set", "plato.prepare.split=[1,0,0]", "plato", "prepare", *map(str, slow),
                 "--name", "slow"]) == 0
    assert main(["-w", str(trained), "plato", "evaluate", "--dataset", "slow", "--split", "all"]) == 2
    assert "sampled every 50 s; the model was trained on 25 s" in capsys.readouterr().err


def _panopticon_u3p_reference(state, x, f, k):
    """Panopticon_U3P's forward written out from its published structure (Vivien et al. 2025, the repo's
    model.py): encoder Blocks, full-scale links (max-pool with ceil, linear upsampling), fusion, 1x1 head."""
    import torch.nn.functional as F

    def conv(h, key):
        return F.conv1d(F.pad(h, (k // 2, k // 2), mode="reflect"), state[f"{key}.weight"])

    def bn(h, key):
        return F.batch_norm(h, state[f"{key}.running_mean"], state[f"{key}.running_var"], state[f"{key}.weight"],
                            state[f"{key}.bias"], False, 0.0, 1e-5)

    def block(h, name):
        h = F.relu(bn(conv(h, f"{name}.conv_entry"), f"{name}.norm_1"))
        return F.relu(bn(conv(h, f"{name}.conv_enforce"), f"{name}.norm_2"))

    def single(h, name):
        return F.relu(bn(conv(h, f"{name}.conv_entry"), f"{name}.norm"))

    def down(h, s):
        return h if s == 1 else F.max_pool1d(h, s, s, ceil_mode=True)

    def up(h, s):
        return h if s == 1 else F.interpolate(h, scale_factor=s, mode="linear")

    e = [block(x, "conv_enc_i_0")]
    for i in range(1, 5):
        e.append(block(down(e[-1], 2), f"conv_enc_{i - 1}_{i}"))
    d = {4: e[4]}
    for stage, lvl in enumerate((3, 2, 1, 0)):
        parts = []
        for j in range(5):
            name = "enc1_to_dec_1" if (stage, j) == (0, 1) else f"enc{j}_to_dec{stage + 1}"
            parts.append(single(down(e[j], 2 ** (lvl - j)) if j <= lvl else up(d[j], 2 ** (j - lvl)), name))
        d[lvl] = single(torch.cat(parts, 1), f"dec{stage + 1}")
    return torch.sigmoid(F.conv1d(d[0], state["conv_out.weight"], state["conv_out.bias"]))[:, 0]


def test_panopticon_weights_convert_and_compute_what_panopticon_computes(tmp_path, capsys):
    from astrotool.ml.checkpoint import build_model, load_checkpoint
    from astrotool_plato.model import ARCHITECTURE, make_model
    from astrotool_plato.panopticon import rename_u3p

    f, k = 2, 5
    ours = TransitNet(width=f, depth=5, kernel_size=k, bin=1, pool="max", scaling="minmax", bn_eps=1e-5)
    names = dict(zip(rename_u3p({n: None for n in _panopticon_keys(f)}).keys(), _panopticon_keys(f)))
    g = torch.Generator().manual_seed(0)
    state = {}
    for ours_key, value in ours.state_dict().items():     # random weights under Panopticon's names
        v = torch.rand(value.shape, generator=g) + 0.5 if value.is_floating_point() else value.clone()
        state[names[ours_key]] = v
    assert len(state) == len(ours.state_dict())
    pt = tmp_path / "model_X.pt"
    torch.save(state, pt)
    assert main(["-w", str(tmp_path), "--json", "plato", "convert-weights", str(pt), "--name", "pan"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["width"], out["kernel_size"], out["bin"], out["scaling"]) == (f, k, 1, "minmax")
    net = build_model(load_checkpoint(tmp_path / "plato/models/pan", ARCHITECTURE), {ARCHITECTURE: make_model}).eval()
    x = 1.0 + 1e-3 * torch.randn(2, 256, generator=g)
    with torch.no_grad():
        lo, hi = x.amin(-1, keepdim=True), x.amax(-1, keepdim=True)
        ref = _panopticon_u3p_reference(state, ((x - lo) / (hi - lo))[:, None], f, k)
        torch.testing.assert_close(torch.sigmoid(net(x / x.median() - 1)), ref, atol=1e-4, rtol=1e-4)
    # a pickled model, a dict of non-tensors: refused with exit 2
    torch.save(torch.nn.Linear(2, 2), tmp_path / "module.pt")
    torch.save({"epoch": 3, "state": state}, tmp_path / "wrapped.pt")
    assert main(["-w", str(tmp_path), "plato", "convert-weights", str(tmp_path / "module.pt"), "--name", "m"]) == 2
    err = capsys.readouterr().err
    assert "module.pt: holds pickled code (torch.nn.modules.linear.Linear)" in err and "\x1b" not in err
    assert main(["-w", str(tmp_path), "plato", "convert-weights", str(tmp_path / "wrapped.pt"), "--name", "w"]) == 2
    assert "not a plain state dict (names -> tensors): it holds a dict of dict, int" in capsys.readouterr().err
    # a missing key is named; empty, garbage and folder "weights", bad options and names: exit 2, nothing written
    torch.save({k: v for k, v in state.items() if k != "dec2.norm.running_var"}, tmp_path / "short.pt")
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "garbage.pt").write_text("garbage")
    for args, msg in (([tmp_path / "short.pt"], "Missing key(s) in state_dict: \"fuse.1.2.running_var\""),
                      ([tmp_path / "empty.pt"], "empty.pt: empty file: not a PyTorch weights file"),
                      ([tmp_path / "garbage.pt"], "garbage.pt: not a PyTorch file"),
                      ([tmp_path], f"{tmp_path.name}: is a folder, not a weights file"),
                      ([pt, "--cadence", "0"], "--cadence: must be a positive number"),
                      ([pt, "--cadence", "nan"], "--cadence: must be a positive number"),
                      ([pt, "--dilation", "0"], "--dilation: must be 1 or more")):
        assert main(["-w", str(tmp_path), "plato", "convert-weights", *map(str, args), "--name", "bad"]) == 2, args
        assert msg in capsys.readouterr().err
    for name in ("../../../escape", ""):
        assert main(["-w", str(tmp_path), "plato", "convert-weights", str(pt), "--name", name]) == 2
        assert "--name" in capsys.readouterr().err
    assert not (tmp_path / "plato/models/bad").exists() and not (tmp_path.parent / "escape").exists()


def _panopticon_keys(f):
    """Every state-dict key of Panopticon_U3P, in its module order."""
    keys = []
    bn = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    for name in ["conv_enc_i_0"] + [f"conv_enc_{i - 1}_{i}" for i in range(1, 5)]:
        keys += [f"{name}.conv_entry.weight", *(f"{name}.norm_1.{p}" for p in bn), f"{name}.conv_enforce.weight",
                 *(f"{name}.norm_2.{p}" for p in bn)]
    for stage in range(4):
        for j in range(5):
            name = "enc1_to_dec_1" if (stage, j) == (0, 1) else f"enc{j}_to_dec{stage + 1}"
            keys += [f"{name}.conv_entry.weight", *(f"{name}.norm.{p}" for p in bn)]
        keys += [f"dec{stage + 1}.conv_entry.weight", *(f"dec{stage + 1}.norm.{p}" for p in bn)]
    return keys + ["conv_out.weight", "conv_out.bias"]


def test_eval_bins_recovery_by_depth_snr_duration_period_and_radius(trained, capsys):
    capsys.readouterr()
    assert main(["-w", str(trained), "--json", "plato", "evaluate", "--split", "all", "--name", "bins"]) == 0
    op = json.loads(capsys.readouterr().out)["operating"]
    n = sum(r["transits"] for r in op["by_depth"])
    for key in ("by_snr", "by_box_snr", "by_duration", "by_radius"):
        assert sum(r["transits"] for r in op[key]) == n
    # 2000-5000 ppm around 0.7-1.8 R_sun stars: 3.4-13.9 R_earth, so nothing below 2 R_earth
    assert min(r["low"] for r in op["by_radius"]) == 2.0 and len(op["by_radius"]) >= 2
    assert op["single_transits"]["transits"] + sum(r["transits"] for r in op["by_period"]) == n
    assert op["single_transits"]["transits"] == n               # the fixture's transits are single
    rows = (trained / "plato/reports/bins_transits.csv").read_text().splitlines()
    assert rows[0].split(",")[:8] == ["id", "kind", "depth", "snr", "box_snr", "duration", "period", "radius"]
    assert len(rows) == n + 1   # no `twin` column: evaluate leaves the twins of `prepare --augment` out


def test_detect_batches_curves_and_names_one_too_short(trained, tmp_path, capsys):
    from astrotool_plato.config import EventsConfig
    from astrotool_plato.detect import search_curves
    from astrotool_plato.evaluate import load_model
    from astrotool.context import Context
    from astrotool.errors import InputError

    time, flux, params = _fresh_curves(4)
    _, ckpt, model = load_model(Context.create(trained), "quarters_unet3p", "")
    curves = {p.id: (time, f.astype(np.float64)) for f, p in zip(flux, params)}
    events = EventsConfig()
    together = search_curves(curves, model, 25.0, events, batch_size=4)
    for cid, c in curves.items():     # batched or alone: the same probabilities
        alone = search_curves({cid: c}, model, 25.0, events, batch_size=1)[cid]
        np.testing.assert_allclose(together[cid]["probability"], alone["probability"], atol=1e-5)
    with pytest.raises(InputError, match="short: .*too short for this model"):
        search_curves({"short": (time[:40], flux[0][:40].astype(np.float64))}, model, 25.0, events)
    sparse = (time[:60:10], flux[0][:60:10].astype(np.float64))   # 6 samples at 250 s: 51 on the model's grid
    with pytest.raises(InputError, match=r"^/data/short\.csv: a curve of 6 samples over 0\.35 h is too short for "
                                         r"this model at 25 s \(it needs at least .* h: \d+ samples\)$"):
        search_curves({"short": sparse}, model, 25.0, events, names={"short": "/data/short.csv"})


def test_a_curve_too_short_for_the_deepest_convolutions_is_refused_not_crashed():
    """Padded to the granularity, a 1-7 h curve passed the length check and crashed in torch (reflection
    padding at the deepest level: "Padding size should be less than the corresponding input dimension")."""
    import torch

    from astrotool.errors import InputError
    from astrotool_plato.config import EventsConfig
    from astrotool_plato.detect import search_curves
    from astrotool_plato.model import TransitNet, min_samples

    model = TransitNet(width=2, depth=3, bin=4).eval()    # granularity 16; kernel 9 pads 4 at the deepest level
    assert model.min_length == 80 and min_samples(model.granularity, model.min_length) == 65
    with torch.no_grad():
        model(torch.randn(1, 80))
        with pytest.raises(RuntimeError, match="Padding size"):   # the bound is tight
            model(torch.randn(1, 64))
    rng = np.random.default_rng(3)
    curve = (np.arange(65) * 25.0 / 86400.0, 1.0 + rng.normal(0.0, 1e-4, 65))
    assert search_curves({"c": curve}, model, 25.0, EventsConfig())["c"]["probability"].size == 65
    with pytest.raises(InputError, match=r"^c: a curve of 64 samples over 0\.44 h is too short for this model at "
                                         r"25 s \(it needs at least 0\.44 h: 65 samples\)$"):
        search_curves({"c": (curve[0][:64], curve[1][:64])}, model, 25.0, EventsConfig())


@pytest.mark.long
def test_camera_group_channels_train_detect_and_refuse_a_co_added_set(tmp_path, capsys):
    import pyarrow as pa
    import pyarrow.feather as feather

    from astrotool_plato.prepare import PreparedDataset

    base = ["-w", str(tmp_path), "-q", "--seed", "4", "plato"]
    groups = ["--set", "plato.simulate.camera_groups=4", "--set", "plato.simulate.step_fraction=0.3"]
    assert main([*base, "simulate", "-n", "40", "--days", "1", *EASY, *groups]) == 0
    assert main([*base, "prepare", "--augment", "--channels", "groups"]) == 0
    ds = PreparedDataset(tmp_path / "plato/prepared/quarters")
    assert ds.in_channels == 5 and ds.arrays["flux"][0] == (5, ds.length)
    b = ds.read(np.arange(2), ["flux"])["flux"]
    # each channel is relative to its own median: the co-added one is the groups' mean up to an offset
    mean = b[:, :4].mean(axis=1)
    np.testing.assert_allclose(b[:, 4] - b[:, 4].mean(-1, keepdims=True), mean - mean.mean(-1, keepdims=True),
                               atol=2e-5)
    assert main([*base, "train", "--epochs", "8", *SMALL, "--model", "groups"]) == 0
    # fresh curves in Panopticon's Feather layout: time [s], one column per group, the co-added flux last
    cfg = SimulateConfig(n_curves=6, duration_days=1.0, duration_hours=(1.5, 3.0), depth_ppm=(2000.0, 5000.0),
                         noise_ppm=300.0, transit_fraction=0.6, camera_groups=4)
    time, flux, params = sim.simulate_curves(range(6), 9001, cfg)
    files = []
    for f, p in zip(flux, params):
        cols = {"time": time * 86400.0, **{f"cam{g}": f[g].astype(np.float64) for g in range(4)}, "coadd": f[4]}
        feather.write_feather(pa.table(cols), tmp_path / f"{p.id}.ftr")
        files.append(str(tmp_path / f"{p.id}.ftr"))
    capsys.readouterr()
    assert main(["-w", str(tmp_path), "--json", "plato", "detect", *files, "--time-unit", "s", "--model",
                 "groups"]) == 0
    events = json.loads(capsys.readouterr().out)["events"]
    found = sum(any(e["id"] == p.id and abs(e["t_mid"] - p.t0) < 0.25 * p.duration / 24.0 for e in events)
                for p in params if p.has_transit)
    assert found >= sum(p.has_transit for p in params) - 1
    # a file without group columns, and a co-added set, are refused by name
    csv = tmp_path / "coadd.csv"
    np.savetxt(csv, np.c_[time, flux[0, 4]], delimiter=",", header="time,flux", comments="")
    assert main(["-w", str(tmp_path), "plato", "detect", str(csv), "--model", "groups", "--name", "coadd"]) == 2
    assert "coadd.csv" in (err := capsys.readouterr().err) and "no camera-group columns" in err
    assert main([*base, "prepare", "--name", "single"]) == 0
    assert main(["-w", str(tmp_path), "plato", "evaluate", "--model", "groups", "--dataset", "single"]) == 2
    assert "curves of 1 flux channel(s) (coadd); the model reads 5" in capsys.readouterr().err


def test_eval_counts_false_alarms_on_binaries_apart_and_bins_each_transit_by_its_own_snr(tmp_path):
    """Hand-made curves and a model that flags every dip: exact counts."""
    from astrotool_plato.config import EventsConfig, PrepareConfig
    from astrotool_plato.evaluate import evaluate
    from astrotool_plato.labels import write_label_rows
    from astrotool_plato.lightcurves import write_curves
    from astrotool_plato.prepare import PreparedDataset, prepare

    class Dips(torch.nn.Module):
        granularity = 1
        in_channels = 1

        def forward(self, x):
            return -4000.0 * x - 2.0          # flat: p = 0.12; a 2,000 ppm dip: p = 0.998

    t = np.arange(1024) * 25.0 / 86400.0
    box = (np.abs(t - t[500]) < 1.0 / 24).astype(float) * 2e-3
    curves = {"planet": 1 - box, "beb": 1 - box, "flat": np.ones(t.size), "glitch": 1 - box,
              "flat2": np.ones(t.size)}
    rows = [{"id": "planet", "has_transit": True, "t0": float(t[500]), "duration": 2.0, "depth": 2000.0,
             "snr": 20.0, "n_transits": 4, "planet_radius": 3.0},
            {"id": "beb", "eclipse": "beb", "eclipse_t0": float(t[500]), "eclipse_period": 30.0,
             "eclipse_duration": 2.0, "eclipse_depth": 2000.0, "eclipse_secondary": 0.0},
            {"id": "flat"}, {"id": "glitch"}, {"id": "flat2"}]
    raw, labels = tmp_path / "raw", tmp_path / "labels"
    write_curves(raw / "x_lightcurves.parquet", [(k, t, f, 1e-4) for k, f in curves.items()],
                 {"ids": list(curves)}, "test")
    write_label_rows(labels / "x_labels.parquet", [{**r, "file": "x_lightcurves.parquet"} for r in rows], "test")
    prepare(PrepareConfig(split=(1.0, 0.0, 0.0)), 0, [], raw, labels, tmp_path / "prepared")
    ds = PreparedDataset(tmp_path / "prepared" / "quarters")
    rep, transits = evaluate(Dips(), ds, "all", [0.5], EventsConfig())
    assert rep["transits"] == 1 and rep["transit_free_curves"] == 4
    assert rep["quiet_curves"] == 3 and rep["binary_curves"] == 1
    assert rep["false_alarm_curve_fraction"] == [0.5]              # beb and glitch of 4 transit-free curves
    assert rep["false_alarm_curve_fraction_quiet"] == [pytest.approx(1 / 3)]   # glitch of 3 without a binary
    assert rep["binary_curves_flagged"] == [1.0] and rep["false_alarms_on_eclipses"] == [1]
    op = rep["operating_quiet"]
    assert not op["meets_target"] and op["recovery"] == 1.0
    # S/N 20 over 4 transits: 10 per transit
    assert transits[0]["snr"] == 10.0 and op["by_snr"] == [{"low": 10.0, "high": 15.0, "transits": 1,
                                                            "recovered": 1, "recovery": 1.0}]
    assert op["by_radius"][0]["low"] == 2.0
    assert not rep["operating"]["recovers_nothing"]
    # a model that flags nothing meets any false-alarm target: the report says it found nothing there
    rep, _ = evaluate(Dips(), ds, "all", [0.9999], EventsConfig())
    op = rep["operating"]
    assert op["meets_target"] and op["recovery"] == 0.0 and op["recovers_nothing"]


def test_eval_without_transit_free_curves_reports_no_operating_point(tmp_path, capsys, monkeypatch):
    """Every curve holds a transit: the false-alarm fraction is NaN, so there is no operating threshold (not
    the lowest one with recovery 1)."""
    from astrotool_plato.config import EventsConfig, PrepareConfig
    from astrotool_plato.evaluate import evaluate
    from astrotool_plato.labels import write_label_rows
    from astrotool_plato.lightcurves import write_curves
    from astrotool_plato.prepare import PreparedDataset, prepare

    class Dips(torch.nn.Module):
        granularity = 1
        in_channels = 1

        def forward(self, x):
            return -4000.0 * x - 2.0

    t = np.arange(1024) * 25.0 / 86400.0
    box = (np.abs(t - t[500]) < 1.0 / 24).astype(float) * 2e-3
    row = {"has_transit": True, "t0": float(t[500]), "duration": 2.0, "depth": 2000.0, "snr": 20.0,
           "n_transits": 1, "planet_radius": 3.0}
    raw, labels = tmp_path / "raw", tmp_path / "labels"
    write_curves(raw / "x_lightcurves.parquet", [(k, t, 1 - box, 1e-4) for k in ("a", "b")], {"ids": ["a", "b"]},
                 "test")
    write_label_rows(labels / "x_labels.parquet", [{**row, "id": k, "file": "x_lightcurves.parquet"}
                                                    for k in ("a", "b")], "test")
    prepare(PrepareConfig(split=(1.0, 0.0, 0.0)), 0, [], raw, labels, tmp_path / "prepared")
    ds = PreparedDataset(tmp_path / "prepared" / "quarters")
    rep, transits = evaluate(Dips(), ds, "all", [0.05, 0.5], EventsConfig())
    assert rep["transit_free_curves"] == 0 and rep["transits"] == 2
    for key in ("operating", "operating_quiet"):
        op = rep[key]
        assert "no transit-free curve" in op["undefined"] and op["meets_target"] is None
        assert math.isnan(op["threshold"]) and math.isnan(op["recovery"])
        assert all(math.isnan(r["recovery"]) for r in op["by_depth"])
    assert all(r["recovered"] is None for r in transits)
    assert rep["recovery"] == [1.0, 1.0]         # the sweep itself is still measured
    import matplotlib.figure

    from astrotool.errors import InputError
    from astrotool_plato.evaluate import plot_report

    titles = []
    real = matplotlib.figure.Figure.suptitle
    monkeypatch.setattr(matplotlib.figure.Figure, "suptitle", lambda self, t, **kw: (titles.append(t),
                                                                                       real(self, t, **kw))[1])
    plot_report(rep, tmp_path / "r.png")   # the title says why there is no operating point, not "nan"
    assert "operating point undefined: no transit-free curve among the 2 of split 'all'" in titles[0]
    assert "nan" not in titles[0]
    with pytest.raises(InputError) as exc:   # val and test are both empty: only --split all is suggested
        evaluate(Dips(), ds, "val", [0.5], EventsConfig())
    assert str(exc.value).endswith("score another: --split all") and "--split test" not in str(exc.value)


def test_prepare_warns_of_a_split_emptied_by_dropped_curves_and_eval_names_them(tmp_path, caplog):
    import logging

    from astrotool.errors import InputError
    from astrotool_plato.config import EventsConfig, PrepareConfig
    from astrotool_plato.evaluate import evaluate
    from astrotool_plato.labels import write_label_rows
    from astrotool_plato.lightcurves import write_curves
    from astrotool_plato.prepare import PreparedDataset, prepare

    t = np.arange(512) * 25.0 / 86400.0
    ids = [f"c{k}" for k in range(4)]
    raw, labels, out = tmp_path / "raw", tmp_path / "labels", tmp_path / "prepared"
    write_label_rows(labels / "x_labels.parquet", [{"id": k, "file": "x_lightcurves.parquet"} for k in ids], "test")

    def run(nan_ids, bad_values):
        flux = {k: np.ones(t.size) for k in ids}
        for k in nan_ids:
            flux[k][7] = np.nan
        write_curves(raw / "x_lightcurves.parquet", [(k, t, f, 1e-4) for k, f in flux.items()], {"ids": ids}, "t")
        cfg = PrepareConfig(split=(0.5, 0.25, 0.25), bad_values=bad_values)
        return prepare(cfg, 3, [], raw, labels, out, overwrite=True, log=logging.getLogger("astro"))

    run([], "interpolate")
    meta = PreparedDataset(out / "quarters").metadata(["id", "split"])
    test_ids = [str(c) for c, s in zip(meta["id"], meta["split"]) if str(s) == "test"]
    assert len(test_ids) == 1
    with caplog.at_level(logging.WARNING, logger="astro"):
        summary = run(test_ids, "drop")
    assert summary["splits"]["test"] == 0 and summary["empty_splits"] == {"test": test_ids}
    assert "the 'test' split (share 0.25 of plato.prepare.split) is empty" in caplog.text
    assert f"{test_ids[0]}: 1 NaN/inf sample(s)" in caplog.text
    with pytest.raises(InputError, match=f"all left out by `prepare` \\({test_ids[0]}: 1 NaN/inf"):
        evaluate(torch.nn.Identity(), PreparedDataset(out / "quarters"), "test", [0.5], EventsConfig())


def test_eval_tells_a_transit_hidden_in_red_noise_from_one_the_network_missed(tmp_path):
    """Two 2,000 ppm, 1-h transits on 9.5-d curves, both flagged by a model that sees every dip below
    1,000 ppm: one in 200 ppm white noise (true-box S/N 2000 sqrt(144) / 200 = 120; the block-scatter
    estimate is within 25 % for 99 % of noise seeds at this length), one on a 500 ppm wiggle of period
    2 h, whose 1-h block means alternate by up to +-320 ppm (S/N 2-5, against 2,400 for its 10 ppm white
    noise alone): only the first is detectable (S/N 7.1). Vetting at 7.1 drops the second: recovery 0.5,
    1.0 of the detectable transits; without vetting both are found."""
    from astrotool_plato.config import EventsConfig, PrepareConfig
    from astrotool_plato.evaluate import evaluate
    from astrotool_plato.labels import write_label_rows
    from astrotool_plato.lightcurves import write_curves
    from astrotool_plato.prepare import PreparedDataset, prepare

    class Dips(torch.nn.Module):
        granularity = 1
        in_channels = 1

        def forward(self, x):
            return -4000.0 * x - 4.0          # p > 0.5 below -1,000 ppm

    n, w, a = 32768, 144, 16000
    t = np.arange(n) * 25.0 / 86400.0
    box = np.zeros(n)
    box[a:a + w] = 2e-3
    rng = np.random.default_rng(12)
    curves = {"white": 1 - box + rng.normal(0.0, 2e-4, n),
              "wiggle": 1 - box + 5e-4 * np.sin(np.pi * np.arange(n) / w) + rng.normal(0.0, 1e-5, n),
              "flat": 1 + rng.normal(0.0, 1e-5, n)}          # transit-free: the operating point is defined
    mid = float(t[a] + w * 12.5 / 86400.0)
    rows = [{"id": k, "has_transit": True, "t0": mid, "duration": 1.0, "depth": 2000.0, "snr": 50.0,
             "n_transits": 1, "planet_radius": 3.0} for k in curves if k != "flat"] + [{"id": "flat"}]
    raw, labels = tmp_path / "raw", tmp_path / "labels"
    write_curves(raw / "x_lightcurves.parquet", [(k, t, f, 2e-4) for k, f in curves.items()],
                 {"ids": list(curves)}, "test")
    write_label_rows(labels / "x_labels.parquet", [{**r, "file": "x_lightcurves.parquet"} for r in rows], "test")
    prepare(PrepareConfig(split=(1.0, 0.0, 0.0)), 0, [], raw, labels, tmp_path / "prepared")
    with PreparedDataset(tmp_path / "prepared" / "quarters") as ds:
        rep, transits = evaluate(Dips(), ds, "all", [0.5], EventsConfig(min_snr=7.1))
        everything, _ = evaluate(Dips(), ds, "all", [0.5], EventsConfig(min_snr=0.0))
    box_snr = {r["id"]: r["box_snr"] for r in transits}
    assert box_snr["white"] == pytest.approx(2e-3 * math.sqrt(w) / 2e-4, rel=0.25)
    assert 2.0 < box_snr["wiggle"] < 5.0
    op = rep["operating"]
    assert op["recovery"] == 0.5 and op["detectable_transits"] == 1 and op["recovery_of_detectable"] == 1.0
    assert [(r["low"], r["recovered"], r["transits"]) for r in op["by_box_snr"]] == [(0.0, 0, 1), (50.0, 1, 1)]
    unvetted = everything["operating"]
    assert unvetted["recovery"] == 1.0 and unvetted["detectable_transits"] == 1


def test_eval_counts_a_transit_whose_box_snr_cannot_be_measured_as_detectable_as_vetting_keeps_it(tmp_path):
    """box_snr is NaN where the curve leaves fewer than three triples of neighbouring transit-length blocks free
    of transits (a 1-h transit in a 7-h curve: blocks 0-2 and 4-6 beside it, two triples). Vetting keeps an
    event whose S/N cannot be measured, so such a transit is *detectable* (docs: it was said to need 7.1)."""
    from astrotool_plato.config import EventsConfig, PrepareConfig
    from astrotool_plato.evaluate import evaluate
    from astrotool_plato.labels import write_label_rows
    from astrotool_plato.lightcurves import write_curves
    from astrotool_plato.prepare import PreparedDataset, prepare

    class Dips(torch.nn.Module):
        granularity = 1
        in_channels = 1

        def forward(self, x):
            return -4000.0 * x - 4.0          # p > 0.5 below -1,000 ppm

    n, w, a = 1008, 144, 432
    t = np.arange(n) * 25.0 / 86400.0
    rng = np.random.default_rng(13)
    curves = {"short": 1 - 2e-3 * ((np.arange(n) >= a) & (np.arange(n) < a + w)) + rng.normal(0.0, 1e-4, n),
              "flat": 1 + rng.normal(0.0, 1e-4, n)}
    rows = [{"id": "short", "has_transit": True, "t0": float(t[a] + w * 12.5 / 86400.0), "duration": 1.0,
             "depth": 2000.0, "snr": 50.0, "n_transits": 1, "planet_radius": 3.0}, {"id": "flat"}]
    raw, labels = tmp_path / "raw", tmp_path / "labels"
    write_curves(raw / "x_lightcurves.parquet", [(k, t, f, 1e-4) for k, f in curves.items()],
                 {"ids": list(curves)}, "test")
    write_label_rows(labels / "x_labels.parquet", [{**r, "file": "x_lightcurves.parquet"} for r in rows], "test")
    prepare(PrepareConfig(split=(1.0, 0.0, 0.0), length=n), 0, [], raw, labels, tmp_path / "prepared")
    with PreparedDataset(tmp_path / "prepared" / "quarters") as ds:
        rep, (transit,) = evaluate(Dips(), ds, "all", [0.5], EventsConfig(min_snr=7.1, min_duration_hours=0.1))
    assert math.isnan(transit["box_snr"]) and transit["recovered"]    # not measurable, and not vetted out
    assert rep["operating"]["detectable_transits"] == 1 and rep["operating"]["recovery_of_detectable"] == 1.0


def test_eval_drops_a_binarys_repeating_eclipses_but_keeps_a_periodic_planets_transits(tmp_path):
    """A background binary (2-d period, 2-h eclipses of 1,500 and 700 ppm) and a planet (2-d period, 2-h
    transits of 1,500 ppm) in 100 ppm white noise, both seen by a model that flags every dip below
    1,000 ppm: the binary's primaries, with a secondary half-way (S/N ~ 190), are dropped by the binary
    test at 7.1; the planet's equal transits with nothing half-way are kept."""
    from astrotool_plato.config import EventsConfig, PrepareConfig
    from astrotool_plato.evaluate import evaluate
    from astrotool_plato.labels import event_windows, mask, write_label_rows
    from astrotool_plato.lightcurves import write_curves
    from astrotool_plato.prepare import PreparedDataset, prepare
    from astrotool_plato.simulate import eclipse_deficit

    class Dips(torch.nn.Module):
        granularity = 1
        in_channels = 1

        def forward(self, x):
            return -4000.0 * x - 4.0          # p > 0.5 below -1,000 ppm

    n = 32768
    t = np.arange(n) * 25.0 / 86400.0
    rng = np.random.default_rng(21)
    binary = {"id": "binary", "has_transit": False, "eclipse": "beb", "eclipse_t0": 1.0, "eclipse_period": 2.0,
              "eclipse_duration": 2.0, "eclipse_depth": 1500.0, "eclipse_secondary": 700.0}
    planet = {"id": "planet", "has_transit": True, "t0": 1.0, "period": 2.0, "duration": 2.0, "depth": 1500.0,
              "snr": 100.0, "n_transits": 5, "planet_radius": 4.0}
    transit = np.where(mask(t, event_windows(planet, t[0], t[-1])) == 1, 1.5e-3, 0.0)
    curves = {"binary": 1 - eclipse_deficit(t, 1.0, 2.0, 1500.0, 700.0, 2.0, 0.9) + rng.normal(0, 1e-4, n),
              "planet": 1 - transit + rng.normal(0, 1e-4, n)}
    raw, labels = tmp_path / "raw", tmp_path / "labels"
    write_curves(raw / "x_lightcurves.parquet", [(k, t, f, 1e-4) for k, f in curves.items()],
                 {"ids": list(curves)}, "test")
    write_label_rows(labels / "x_labels.parquet", [{**r, "file": "x_lightcurves.parquet"} for r in (binary, planet)],
                     "test")
    prepare(PrepareConfig(split=(1.0, 0.0, 0.0)), 0, [], raw, labels, tmp_path / "prepared")
    with PreparedDataset(tmp_path / "prepared" / "quarters") as ds:
        kept, _ = evaluate(Dips(), ds, "all", [0.5], EventsConfig(binary_snr=0.0))
        tested, _ = evaluate(Dips(), ds, "all", [0.5], EventsConfig(binary_snr=7.1))
    assert kept["binary_curves"] == 1 and kept["transits"] == 5
    assert kept["binary_curves_flagged"] == [1.0] and kept["recovery"] == [1.0]
    assert tested["binary_curves_flagged"] == [0.0] and tested["recovery"] == [1.0]
    assert tested["events"]["binary_snr"] == 7.1


def test_detect_drops_quality_flagged_cadences_refuses_wrong_time_units_and_prints_the_snr(trained, tmp_path,
                                                                                          capsys):
    """A TESS file's flagged cadences (QUALITY = 1024, half the flux) became the event and hid the transit; its
    NaN TIME rows refused the file; seconds read as days were killed for memory, days read as seconds ended in
    an IndexError (exit 1); the printed table had no S/N."""
    from astropy.io import fits

    time, flux, params = _fresh_curves()
    k = next(i for i, p in enumerate(params) if p.has_transit)
    t, f, p = time + 1500.0, flux[k].astype(np.float64), params[k]
    bad = np.abs(time - (p.t0 + 0.3 if p.t0 < 0.5 else p.t0 - 0.3)) < 0.02      # 58 min, away from the transit
    q = np.where(bad, 1024, 0).astype(np.int32)
    f = np.where(bad, 0.5, f)
    tt = t.copy()
    tt[[5, 6, 7]] = np.nan
    path = tmp_path / "tess.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns([
        fits.Column("TIME", "D", array=tt, unit="BTJD"), fits.Column("PDCSAP_FLUX", "E", array=f * 1e3, unit="e-/s"),
        fits.Column("QUALITY", "J", array=q)])]).writeto(path)
    base = ["-w", str(trained), "--overwrite", "plato", "detect", "--name", "tess"]
    capsys.readouterr()
    assert main([*base, str(path)]) == 0
    cap = capsys.readouterr()
    assert f"dropped {int(bad.sum())} of {t.size} cadence(s) flagged in QUALITY" in cap.err
    assert "dropped 3 row(s) whose time is NaN" in cap.err and "UnitsWarning" not in cap.err
    header = next(line for line in cap.out.splitlines() if line.startswith("file"))
    assert header.split("\t") == ["file", "id", "t_mid [d]", "duration [h]", "depth [ppm]", "S/N", "peak p"]
    assert main(["-w", str(trained), "--json", "--overwrite", "plato", "detect", "--name", "tess", str(path)]) == 0
    events = json.loads(capsys.readouterr().out)["events"]
    assert any(abs(e["t_mid"] - 1500.0 - p.t0) < 0.05 for e in events)
    assert not any(abs(e["t_mid"] - t[bad].mean()) < 0.05 for e in events)
    assert main(["-w", str(trained), "--json", "--overwrite", "plato", "detect", "--name", "tess", str(path),
                 "--quality", "keep"]) == 0
    kept = json.loads(capsys.readouterr().out)["events"]
    assert any(abs(e["t_mid"] - t[bad].mean()) < 0.05 for e in kept)     # the flagged stretch, when kept
    secs, days = tmp_path / "secs.csv", tmp_path / "days.csv"
    np.savetxt(secs, np.c_[time * 86400.0, flux[k]], delimiter=",", header="time,flux", comments="")
    np.savetxt(days, np.c_[time, flux[k]], delimiter=",", header="time,flux", comments="")
    assert main([*base, str(secs)]) == 2
    assert "secs.csv: the curve spans" in (err := capsys.readouterr().err) and "use --time-unit s" in err
    assert main([*base, str(days), "--time-unit", "s"]) == 2
    assert "days.csv: the curve spans" in (err := capsys.readouterr().err) and "leave out --time-unit s" in err


def test_plot_takes_a_light_curve_file_and_names_what_works_for_an_unknown_id(trained, tmp_path, capsys):
    """`plot deep` and `plot in/deep.csv` said "no such curve id", after an unrelated warning about a missing
    default model."""
    time, flux, params = _fresh_curves(1)
    path = tmp_path / "mine.csv"
    np.savetxt(path, np.c_[time, flux[0]], delimiter=",", header="time,flux", comments="")
    capsys.readouterr()
    assert main(["-w", str(trained), "--json", "plato", "plot", str(path)]) == 0
    assert json.loads(capsys.readouterr().out)["plots"] == 1 and (trained / "plato/reports/plots/mine.png").exists()
    empty = tmp_path / "empty"
    assert main(["-w", str(empty), "plato", "plot", "mine"]) == 2
    err = capsys.readouterr().err
    assert "mine: no such curve id" in err and "plot last" in err and "no model to overlay" not in err
    other = tmp_path / "b" / "mine.csv"     # another file of the same name: its plot would replace the first's
    other.parent.mkdir()
    other.write_bytes(path.read_bytes())
    assert main(["-w", str(trained), "plato", "plot", str(path), str(other)]) == 2
    assert "has the name of a curve plotted already" in capsys.readouterr().err
    # a folder is read as detect reads it: its light-curve files (it said "no such curve id ..., nor a file"),
    # and one of them that cannot be read is left out with a warning, not the end of the command
    (other.parent / "bad.csv").write_text("time,flux\n1,2\n0,2\n")
    assert main(["-w", str(trained), "--json", "plato", "plot", str(other.parent)]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["plots"] == 1 and "left out of the plots: " in out.err and "bad.csv" in out.err
    assert main(["-w", str(trained), "plato", "plot", str(other.parent / "bad.csv")]) == 2   # named: refused


def test_eval_and_detect_warn_about_a_model_whose_training_was_cut_short(trained, tmp_path, capsys):
    """A model whose training was interrupted was scored and used without a word."""
    import shutil

    src = trained / "plato/models/quarters_unet3p"
    mdir = tmp_path / "cut"
    shutil.copytree(src, mdir)
    meta = json.loads((mdir / "model.json").read_text())
    meta["training_progress"] = {**meta["training_progress"], "epochs_done": 3, "epochs": 8, "finished": False}
    (mdir / "model.json").write_text(json.dumps(meta))
    time, flux, params = _fresh_curves(1)
    curve = tmp_path / "one.csv"
    np.savetxt(curve, np.c_[time, flux[0]], delimiter=",", header="time,flux", comments="")
    capsys.readouterr()
    for cmd in (["evaluate", "--split", "all"], ["detect", str(curve), "--name", "cut"]):
        assert main(["-w", str(trained), "plato", *cmd, "--model", str(mdir)]) == 0
        err = capsys.readouterr().err
        assert "training unfinished (trained 3 of 8 epochs)" in err and f"astro -w {trained} plato train" in err, cmd
    assert main(["-w", str(trained), "plato", "evaluate", "--split", "all"]) == 0   # the default name: a model
    # trained on (by the resume test) is scored again, not refused
    assert "unfinished" not in capsys.readouterr().err


def _three_files(tmp_path):
    time, flux, params = _fresh_curves(3)
    files = []
    for k, f in enumerate(flux):
        path = tmp_path / f"c{k}.csv"
        np.savetxt(path, np.c_[time, f], delimiter=",", header="time,flux", comments="")
        files.append(str(path))
    return files


def test_detect_shards_keep_their_events_and_the_last_writes_the_table(trained, tmp_path, capsys):
    """Each --shard task wrote the whole table: the second replaced the first's events."""
    from astrotool.io.tables import parquet_metadata, read_parquet

    files = _three_files(tmp_path)
    base = ["-w", str(trained), "--json"]
    capsys.readouterr()
    assert main([*base, "plato", "detect", *files, "--name", "whole"]) == 0
    capsys.readouterr()
    whole = read_parquet(trained / "plato/runs/whole/whole_events.parquet").to_pylist()
    assert len({r["file"] for r in whole}) >= 2                           # events in two files at least
    assert main([*base, "--shard", "0/2", "plato", "detect", *files, "--name", "sh"]) == 0
    assert json.loads(capsys.readouterr().out)["table"] is None          # c1.csv is not searched yet
    assert not (trained / "plato/runs/sh/sh_events.parquet").exists()
    assert main([*base, "--shard", "1/2", "plato", "detect", *files, "--name", "sh"]) == 0
    table = trained / "plato/runs/sh/sh_events.parquet"
    assert read_parquet(table).to_pylist() == whole
    meta = parquet_metadata(table)
    assert meta["files"] == sorted(meta["searched"]) == sorted(str(type(table)(f).resolve()) for f in files)


def test_a_file_failing_in_one_shard_task_leaves_a_table_of_the_others_and_a_rerun_completes_it(trained,
                                                                                                 tmp_path, capsys):
    """A file that failed in a task other than the last: the last waited for its part forever (no table); a
    rerun of the failed file's task found every other part deleted and never wrote the table."""
    from astrotool.io.tables import parquet_metadata, read_parquet

    files = _three_files(tmp_path)
    good = Path(files[0]).read_bytes()
    Path(files[0]).write_text("time,flux\n0.0,1.0\n0.001,1.0\n0.002,1.0\n")     # too short: fails
    base = ["-w", str(trained), "--json"]
    capsys.readouterr()
    assert main([*base, "--shard", "0/2", "plato", "detect", *files, "--name", "fail"]) == 2   # c0 and c2
    capsys.readouterr()
    assert main([*base, "--shard", "1/2", "plato", "detect", *files, "--name", "fail"]) == 0   # c1: the last
    cap = capsys.readouterr()
    assert json.loads(cap.out)["table"] is not None
    assert "lists 2 of 3 file(s)" in cap.err and "c0.csv" in cap.err and "too short" in cap.err
    table = trained / "plato/runs/fail/fail_events.parquet"
    meta = parquet_metadata(table)
    assert sorted(meta["searched"]) == sorted(str(Path(f).resolve()) for f in files[1:])
    assert meta["files"] == sorted(str(Path(f).resolve()) for f in files)
    Path(files[0]).write_bytes(good)                                      # fixed: its task run again
    assert main([*base, "--shard", "0/2", "plato", "detect", *files, "--name", "fail"]) == 0
    capsys.readouterr()
    assert sorted(parquet_metadata(table)["searched"]) == sorted(str(Path(f).resolve()) for f in files)
    assert main([*base, "plato", "detect", *files, "--name", "fail_whole"]) == 0
    capsys.readouterr()
    assert read_parquet(table).to_pylist() == read_parquet(
        trained / "plato/runs/fail_whole/fail_whole_events.parquet").to_pylist()
    assert not (table.parent / ".parts").exists()


def test_detect_searches_an_edited_file_again_and_overwrite_replaces_a_shards_parts(trained, tmp_path, capsys):
    """A part of an interrupted run was reused after its file was edited; --overwrite with --shard reused
    the task's parts too."""
    from astrotool.io.tables import read_parquet

    files = _three_files(tmp_path)
    base = ["-w", str(trained), "--json"]
    capsys.readouterr()
    assert main([*base, "--shard", "0/2", "plato", "detect", *files, "--name", "edit"]) == 0   # parts of c0, c2
    parts = trained / "plato/runs/edit/.parts"
    before = {p.name: p.stat().st_mtime_ns for p in parts.iterdir()}
    assert len(before) == 2
    assert main([*base, "--overwrite", "--shard", "0/2", "plato", "detect", *files, "--name", "edit"]) == 0
    after = {p.name: p.stat().st_mtime_ns for p in parts.iterdir()}
    assert after.keys() == before.keys() and all(after[k] > before[k] for k in before)   # searched again
    Path(files[0]).write_bytes(Path(files[1]).read_bytes() + b"\n")      # c0 edited: now c1's curve
    assert main([*base, "plato", "detect", *files, "--name", "edit"]) == 0
    capsys.readouterr()
    rows = read_parquet(trained / "plato/runs/edit/edit_events.parquet").to_pylist()
    c0 = [{**r, "file": None, "id": None} for r in rows if r["file"] == "c0.csv"]
    c1 = [{**r, "file": None, "id": None} for r in rows if r["file"] == "c1.csv"]
    assert c0 == c1 and c1


def test_detect_a_lone_overwrite_task_after_the_table_was_written_replaces_its_share(trained, tmp_path, capsys):
    """--overwrite --shard 0/2 once the table was written searched into parts that nothing merged (the other
    task's part was gone), said the task that finishes last writes the table, and left the parts behind."""
    from astrotool.io.tables import read_parquet

    files = _three_files(tmp_path)
    base = ["-w", str(trained), "--json"]
    for opts in (["--shard", "0/2"], ["--shard", "1/2"]):
        assert main([*base, *opts, "plato", "detect", *files, "--name", "lone"]) == 0
    table = trained / "plato/runs/lone/lone_events.parquet"
    whole = read_parquet(table).to_pylist()
    capsys.readouterr()
    assert main([*base, "--overwrite", "--shard", "0/2", "plato", "detect", *files, "--name", "lone"]) == 0
    assert json.loads(capsys.readouterr().out)["table"] is not None
    assert not (table.parent / ".parts").exists()
    assert sorted(map(str, read_parquet(table).to_pylist())) == sorted(map(str, whole))
    assert main([*base, "--shard", "1/2", "plato", "detect", *files, "--name", "lone"]) == 0
    assert json.loads(capsys.readouterr().out)["kept"] is True


def test_detect_a_waiting_task_counts_the_files_the_table_holds_as_done(trained, tmp_path, capsys):
    """With c2 edited since the table was written, --overwrite --shard 0/3 said 1 of 3 file(s) searched: c1, held
    by the table, was not counted because c2 was not."""
    files = _three_files(tmp_path)
    base = ["-w", str(trained), "--json"]
    for shard in ("0/3", "1/3", "2/3"):
        assert main([*base, "--shard", shard, "plato", "detect", *files, "--name", "count"]) == 0
    Path(files[2]).write_text(Path(files[2]).read_text() + "\n")
    capsys.readouterr()
    assert main([*base, "--overwrite", "--shard", "0/3", "plato", "detect", *files, "--name", "count"]) == 0
    assert "2 of 3 input(s) done" in capsys.readouterr().err


def test_plot_last_skips_a_shard_task_that_wrote_no_table_and_warns_about_changed_weights(trained, tmp_path,
                                                                                           capsys):
    """`plot last` took the latest detect run, a --shard task without the table among its outputs: it plotted
    nothing (exit 0); weights retrained since the run were used without a word."""
    import hashlib
    import shutil

    from safetensors.torch import load_file, save_file

    model = next((trained / "plato/models").glob("*/model.safetensors")).parent
    mdir = trained / "plato/models/retrained"
    shutil.copytree(model, mdir, dirs_exist_ok=True)
    files = _three_files(tmp_path)
    base = ["-w", str(trained), "--json"]
    for shard in ("0/2", "1/2", "1/2"):            # the last writes no table: c0's and c2's parts are gone
        assert main([*base, "--shard", shard, "plato", "detect", *files, "--name", "plotlast", "--model",
                     "retrained"]) == 0
    capsys.readouterr()
    assert main([*base, "plato", "plot", "last"]) == 0
    cap = capsys.readouterr()
    assert json.loads(cap.out)["plots"] > 0 and "weights" not in cap.err
    weights = mdir / "model.safetensors"
    save_file({k: v * 1.01 for k, v in load_file(weights).items()}, weights)     # trained again
    meta = json.loads((mdir / "model.json").read_text())
    meta["weights_sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()
    (mdir / "model.json").write_text(json.dumps(meta))
    assert main([*base, "plato", "plot", "last"]) == 0
    assert "retrained: its weights changed since" in capsys.readouterr().err


def test_detect_refuses_another_model_or_event_settings_under_one_name(trained, tmp_path, capsys):
    import shutil

    files = _three_files(tmp_path)[:1]
    base = ["-w", str(trained), "plato", "detect", *files, "--name", "settings"]
    assert main(base) == 0
    capsys.readouterr()
    assert main([*base, "--threshold", "0.7", "--min-snr", "3"]) == 2
    err = capsys.readouterr().err
    assert "settings_events.parquet: exists but was made with other settings" in err
    assert "events.threshold: 0.5 -> 0.7" in err and "events.min_snr: 0.0 -> 3.0" in err
    model = next((trained / "plato/models").glob("*/model.safetensors")).parent
    shutil.copytree(model, trained / "plato/models/copy", dirs_exist_ok=True)
    assert main([*base, "--model", "copy"]) == 2
    assert "model:" in capsys.readouterr().err
    assert main(["-w", str(trained), "--overwrite", "plato", "detect", *files, "--name", "settings",
                 "--threshold", "0.7"]) == 0
    import pyarrow.parquet as pq

    table = trained / "plato/runs/settings/settings_events.parquet"   # as the event cutting before version 2
    t = pq.read_table(table)
    meta = json.loads(t.schema.metadata[b"astrotool"])
    del meta["settings"]["version"]
    pq.write_table(t.replace_schema_metadata({**t.schema.metadata, b"astrotool": json.dumps(meta).encode()}), table)
    capsys.readouterr()
    assert main([*base, "--threshold", "0.7"]) == 2
    from astrotool_plato.detect import VERSION

    assert f"version: (absent) -> {VERSION}" in capsys.readouterr().err


@pytest.mark.long
def test_plot_last_uses_the_model_and_threshold_of_the_detect_run_and_tells_same_named_files_apart(trained,
                                                                                                   tmp_path, capsys):
    import shutil

    model = next((trained / "plato/models").glob("*/model.safetensors")).parent
    shutil.copytree(model, trained / "plato/models/other", dirs_exist_ok=True)
    raw = next((trained / "plato/raw").glob("sim*_lightcurves.parquet"))   # the fixture's, not another test's
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    shutil.copy(raw, tmp_path / "a" / "same.parquet")
    shutil.copy(raw, tmp_path / "b" / "same.parquet")
    files = [str(tmp_path / "a" / "same.parquet"), str(tmp_path / "b" / "same.parquet")]
    capsys.readouterr()
    assert main(["-w", str(trained), "--json", "plato", "detect", *files, "--name", "same", "--model", "other",
                 "--threshold", "0.6"]) == 0
    rows = json.loads(capsys.readouterr().out)["events"]
    assert {r["file"] for r in rows} == set(files)                      # the paths as given: the names collide
    n_curves = len({(r["file"], r["id"]) for r in rows})
    assert main(["-w", str(trained), "--json", "plato", "plot", "last"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["model"] == "other" and out["threshold"] == 0.6 and out["plots"] == n_curves > 0


def test_piped_detect_prints_every_event_row(trained, tmp_path, capsys, monkeypatch):
    """A terminal shows the first MAX_SHOWN events; piped output (here: captured) is never cut."""
    import pyarrow.parquet as pq

    from astrotool_plato import detect as detect_mod

    monkeypatch.setattr(detect_mod, "MAX_SHOWN", 1)
    time, flux, params = _fresh_curves()
    files = []
    for f, p in zip(flux, params):
        path = tmp_path / f"{p.id}.csv"
        np.savetxt(path, np.c_[time, f], delimiter=",", header="time,flux", comments="")
        files.append(str(path))
    capsys.readouterr()
    assert main(["-w", str(trained), "plato", "detect", *files, "--name", "piped"]) == 0
    out = capsys.readouterr().out
    n = pq.read_table(trained / "plato/runs/piped/piped_events.parquet").num_rows
    assert n >= 2
    assert f"# {n} event(s)\n" in out and "the first" not in out
    rows = [line for line in out.splitlines() if line.endswith(tuple("0123456789")) and "\t" in line
            and line.split("\t")[0].endswith(".csv")]
    assert len(rows) == n


def test_a_copied_workspace_makes_the_same_evaluate_and_detect_records(trained, tmp_path, capsys):
    """Records name the model, the set and searched files relative to the workspace: a copy reruns them
    without --overwrite (and a moved one too)."""
    import shutil

    ws = tmp_path / "a"
    shutil.copytree(trained, ws, ignore=shutil.ignore_patterns("reports", "runs"))
    (ws / "in").mkdir()
    files = _three_files(ws / "in")[:1]
    assert main(["-w", str(ws), "-q", "plato", "evaluate", "--split", "all", "--name", "cp"]) == 0
    assert main(["-w", str(ws), "-q", "plato", "detect", *files, "--name", "cp"]) == 0
    copy = tmp_path / "b"
    shutil.copytree(ws, copy)
    capsys.readouterr()
    assert main(["-w", str(copy), "-q", "plato", "evaluate", "--split", "all", "--name", "cp"]) == 0
    assert main(["-w", str(copy), "-q", "plato", "detect", str(copy / "in" / Path(files[0]).name),
                 "--name", "cp"]) == 0, capsys.readouterr().err
    from astrotool import made_with as mw

    rec = mw.read(copy / "plato/reports/cp_evaluate.json")
    assert rec["settings"]["model"] == "plato/models/quarters_unet3p"
    assert rec["settings"]["dataset"] == "plato/prepared/quarters"


def test_plot_last_numbers_the_plots_of_curves_of_one_id(trained, tmp_path, capsys):
    """Three files of one name detected together: the second and third curves' plots were named by how many
    plots were planned before them (``c-1.png``, ``c-2.png`` after one other), not the k-th of that id."""
    import shutil

    files = _three_files(tmp_path)
    same = []
    for k, f in enumerate(files):
        (tmp_path / f"d{k}").mkdir()
        same.append(str(shutil.copy(f, tmp_path / f"d{k}" / "c.csv")))
    assert main(["-w", str(trained), "--json", "plato", "detect", *same, "--name", "sameid"]) == 0
    capsys.readouterr()
    assert main(["-w", str(trained), "--json", "plato", "plot", "last", "--no-model-overlay"]) == 0
    names = sorted(Path(p).name for p in json.loads(capsys.readouterr().out)["files"])
    assert len(names) >= 2 and names == sorted(["c.png", *(f"c-{k}.png" for k in range(2, len(names) + 1))]), names


def test_eval_and_detect_name_the_accelerator_setting_that_cannot_run(trained, tmp_path, capsys):
    """``ml.accelerator = "cuda"`` in a configuration on a machine without a GPU: eval and detect said
    "--device cuda: ... use --device cpu", an option the user had not given."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is visible")
    time, flux, params = _fresh_curves(1)
    path = tmp_path / "one.csv"
    np.savetxt(path, np.c_[time, flux[0]], delimiter=",", header="time,flux", comments="")
    for command in (["eval"], ["detect", str(path)]):
        capsys.readouterr()
        assert main(["-w", str(trained), "--set", "ml.accelerator=cuda", "plato", *command]) == 2
        err = " ".join(capsys.readouterr().err.split())
        assert "ml.accelerator cuda: CUDA was asked for" in err and "use ml.accelerator cpu" in err, (command, err)
        assert "--device" not in err, err
        assert main(["-w", str(trained), "--set", "ml.accelerator=cuda", "plato", *command, "--device", "cpu",
                     "--name", "cpu"]) == 0


def test_evaluate_leaves_the_twins_of_an_augmented_set_out(trained, capsys):
    """The README's `prepare --augment` set: evaluate scored each time-reversed twin as a curve of its own,
    counting every transit twice. The twins are left out, and the counts are those of the curves."""
    capsys.readouterr()
    raw = sorted((trained / "plato/raw").glob("sim*_lightcurves.parquet"))   # those of `quarters` (other tests of
    # this module add curves to the workspace)
    assert main(["-w", str(trained), "--seed", "3", "plato", "prepare", *map(str, raw), "--augment",
                 "--name", "quarters_aug"]) == 0
    reports = {}
    for name in ("quarters", "quarters_aug"):
        capsys.readouterr()
        assert main(["-w", str(trained), "--json", "plato", "evaluate", "--dataset", name, "--split", "all",
                     "--name", f"twins_{name}"]) == 0
        reports[name] = json.loads(capsys.readouterr().out)
    plain, aug = reports["quarters"], reports["quarters_aug"]
    assert aug["twins_left_out"] == aug["curves"] == plain["curves"] and plain["twins_left_out"] == 0
    assert aug["transits"] == plain["transits"] and aug["recovery"] == plain["recovery"]
    assert aug["inference"]["batch_size"] == 8 and aug["inference"]["n"] == plain["curves"]


def test_detect_warns_of_curves_sampled_much_more_coarsely_than_the_model(trained, tmp_path, capsys):
    """A 2000 ppm, 4 h transit in 2- and 10-minute curves gave `# 0 event(s)` and not a word: interpolated onto
    the model's 25 s, its samples look unlike what the model learnt."""
    time, flux, _ = _fresh_curves(1)
    files = []
    for every, name in ((2, "fine"), (5, "tess2min"), (24, "ten_min")):   # 50 s: no warning; 125, 600 s: warned
        path = tmp_path / f"{name}.csv"
        np.savetxt(path, np.c_[time[::every], flux[0][::every]], delimiter=",", header="time,flux", comments="")
        files.append(str(path))
    capsys.readouterr()
    assert main(["-w", str(trained), "plato", "detect", *files, "--name", "coarse"]) == 0
    err = " ".join(capsys.readouterr().err.split())
    # each file with its own cadence: the second was "(and 1 more)" under the first's 125 s
    assert ("2 curve(s) sampled more than 2 times as coarsely as the model's 25 s: "
            f"{files[1]} every 125 s; {files[2]} every 600 s:") in err, err
    assert "fine.csv: sampled" not in err and "`astro plato bls`" in err


def test_detect_searches_the_light_curve_files_of_a_folder(trained, tmp_path, capsys):
    """`plato detect FOLDER` was refused (`is a folder, not a light-curve file`, exit 2), though `prepare`
    takes one."""
    from astrotool.io.tables import parquet_metadata

    time, flux, _ = _fresh_curves(2)
    many = tmp_path / "many"
    (many / "sub").mkdir(parents=True)
    for k, f in enumerate(flux):
        np.savetxt(many / f"c{k}.csv", np.c_[time, f], delimiter=",", header="time,flux", comments="")
    (many / "README.txt").write_text("not a curve\n")
    (many / "Complete_Parameters.ftr").write_bytes(b"Panopticon's parameter table: no light curve")
    np.savetxt(many / "sub" / "deeper.csv", np.c_[time, flux[0]], delimiter=",", header="time,flux", comments="")
    capsys.readouterr()
    assert main(["-w", str(trained), "plato", "detect", str(many), "--name", "folder"]) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert f"{many}: a folder of 2 light-curve file(s)" in err, err
    table = trained / "plato/runs/folder/folder_events.parquet"
    assert sorted(parquet_metadata(table)["files"]) == [str(many / "c0.csv"), str(many / "c1.csv")]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["-w", str(trained), "plato", "detect", str(empty), "--name", "none"]) == 2
    assert "a folder with no light-curve files (looked for *.csv.gz" in " ".join(capsys.readouterr().err.split())
