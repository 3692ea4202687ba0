"""Bad input and reruns: one clear message (exit 2), nothing lost, no stale results."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest

from astrotool.cli import main

pytest.importorskip("torch")


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A tiny workspace: 6 simulated curves in two files, prepared, a width-2 network trained one epoch."""
    ws = tmp_path_factory.mktemp("plato_small")
    base = ["-w", str(ws), "-q", "plato"]
    assert main([*base, "simulate", "-n", "6", "--days", "2", "--chunk-size", "3"]) == 0
    assert main([*base, "prepare"]) == 0
    assert main([*base, "train", "--epochs", "1", "--width", "2", "--batch-size", "2"]) == 0
    return ws


def _copy(small, tmp_path, name="w"):
    shutil.copytree(small, tmp_path / name)
    return tmp_path / name


def test_eval_refuses_a_set_prepared_again_since_training(small, tmp_path, capsys):
    ws = _copy(small, tmp_path)
    assert main(["-w", str(ws), "-q", "--overwrite", "--seed", "11", "plato", "prepare"]) == 0
    capsys.readouterr()
    assert main(["-w", str(ws), "plato", "evaluate", "--model", "quarters_unet3p"]) == 2
    err = capsys.readouterr().err
    assert "not the set that model quarters_unet3p was trained on" in err and "--split all" in err
    assert main(["-w", str(ws), "-q", "plato", "evaluate", "--model", "quarters_unet3p", "--split", "all"]) == 0


def test_eval_in_a_copied_workspace_scores_the_copy_s_data(small, tmp_path, capsys):
    ws = _copy(small, tmp_path, "copy")
    meta = json.loads((ws / "plato/models/quarters_unet3p/model.json").read_text())
    assert not meta["training"]["dataset_path"].startswith("/")      # relative to the model folder
    meta["training"]["dataset_path"] = str(small / "plato/prepared/quarters")   # an older, absolute record
    (ws / "plato/models/quarters_unet3p/model.json").write_text(json.dumps(meta))
    for w in (ws, small):
        capsys.readouterr()
        assert main(["-w", str(w), "--json", "plato", "evaluate"]) == 0
        assert json.loads(capsys.readouterr().out)["dataset"] == "quarters"
    runs = sorted((ws / "runs").glob("*-plato-evaluate"))
    record = (runs[-1] / "run.json").read_text()
    assert str(ws / "plato/prepared/quarters") in record and str(small / "plato/prepared") not in record


@pytest.fixture
def pan(small, tmp_path):
    """Panopticon's layout of the small workspace's curves."""
    assert main(["-w", str(small), "-q", "--overwrite", "plato", "export-panopticon", str(tmp_path / "pan")]) == 0
    return tmp_path / "pan"


def test_import_panopticon_refuses_bad_folders_names_sizes_and_columns(pan, tmp_path, capsys):
    import pyarrow as pa
    import pyarrow.feather as feather

    ws = tmp_path / "w"
    for args, msg in ((["nosuchdir"], "nosuchdir: no such folder"),
                      ([str(pan), "--chunk-size", "0"], "--chunk-size"),
                      ([str(pan), "--chunk-size", "-1"], "--chunk-size"),
                      ([str(pan), "--name", "../x"], "--name: '../x' is not a valid name")):
        capsys.readouterr()
        assert main(["-w", str(ws), "plato", "import-panopticon", *args]) == 2, args
        assert msg in capsys.readouterr().err
    assert not list(ws.glob("plato/raw/*")) and not list(tmp_path.glob("x*"))
    pfile = pan / "config/Complete_Parameters.ftr"
    table = feather.read_table(pfile)
    feather.write_feather(table.drop_columns(["transit_t0"]), pfile)
    assert main(["-w", str(ws), "plato", "import-panopticon", str(pan)]) == 2
    assert "Complete_Parameters.ftr: no column transit_t0" in capsys.readouterr().err
    feather.write_feather(table, pfile)
    q = sorted((pan / "astrotool-export").glob("*.ftr"))[0]
    good = feather.read_table(q)
    feather.write_feather(pa.table({"time": good["time"], "coadd": ["x"] * good.num_rows}), q)
    assert main(["-w", str(ws), "plato", "import-panopticon", str(pan)]) == 2
    assert f"{q.name}: a column that is not numeric" in capsys.readouterr().err
    feather.write_feather(pa.table({"time": good["time"].to_numpy()[::-1].copy(), "coadd": good["coadd"]}), q)
    assert main(["-w", str(ws), "plato", "import-panopticon", str(pan)]) == 2
    assert f"{q.name}: time is not increasing" in capsys.readouterr().err


def test_import_panopticon_names_the_folder_to_pass_when_the_quarter_files_lie_elsewhere(tmp_path):
    """Given the export's own folder, it said 'no Panopticon quarter files (<dir with '-'>/simNNNNN_QK.ftr)'
    though that folder holds sim00000_Q1.ftr."""
    from astrotool.errors import InputError
    from astrotool_plato.panopticon import read_layout

    sims = tmp_path / "exp" / "astrotool-export"
    sims.mkdir(parents=True)
    (sims / "sim00000_Q1.ftr").write_bytes(b"")
    (tmp_path / "exp" / "config").mkdir()
    (tmp_path / "exp" / "config" / "Complete_Parameters.ftr").write_bytes(b"")
    for given, hint in ((sims, f"lie in this folder itself; pass the folder above it, {tmp_path / 'exp'} (which "
                               "holds config/Complete_Parameters.ftr too)"),
                        (tmp_path, f"they lie one level down; pass {tmp_path / 'exp'}")):
        with pytest.raises(InputError, match="no Panopticon quarter files") as exc:
            read_layout(given)
        assert hint in str(exc.value), str(exc.value)
    plain = tmp_path / "plain" / "data"
    plain.mkdir(parents=True)
    (plain / "sim00001_Q2.ftr").write_bytes(b"")
    with pytest.raises(InputError, match=re.escape(f"{plain} holds quarter files, but its name has no '-'")):
        read_layout(plain.parent)


def test_another_chunk_layout_is_named_removed_with_overwrite_and_prepare_refuses_repeated_curves(tmp_path, capsys):
    ws = tmp_path / "w"
    sim = ["-w", str(ws), "plato", "simulate", "-n", "4", "--days", "1"]
    assert main([*sim, "--chunk-size", "1"]) == 0
    assert main([*sim, "--chunk-size", "2"]) == 0
    assert "holds 4 file(s) of an earlier layout" in capsys.readouterr().err
    raw = sorted((ws / "plato/raw").glob("*.parquet"))
    assert len(raw) == 6                                           # nothing deleted without --overwrite
    assert main(["-w", str(ws), "plato", "prepare"]) == 2
    err = capsys.readouterr().err
    assert "curve 'sim000000' is also in" in err and "sim000000-000000_lightcurves.parquet is of an earlier" in err
    one = str(raw[0])
    assert main(["-w", str(ws), "plato", "prepare", "--name", "dup", one, one]) == 2
    assert "given twice" in capsys.readouterr().err
    assert main(["-w", str(ws), "--overwrite", *sim[2:], "--chunk-size", "2"]) == 0
    assert sorted(p.name for p in (ws / "plato/raw").glob("*.parquet")) == [
        "sim000000-000001_lightcurves.parquet", "sim000002-000003_lightcurves.parquet"]


def test_import_panopticon_in_another_chunk_layout_names_the_old_files(pan, tmp_path, capsys):
    ws = tmp_path / "w"
    assert main(["-w", str(ws), "-q", "plato", "import-panopticon", str(pan), "--name", "pan"]) == 0
    assert main(["-w", str(ws), "plato", "import-panopticon", str(pan), "--name", "pan", "--chunk-size", "2"]) == 0
    assert "holds 1 file(s) of an earlier layout of 'pan'" in capsys.readouterr().err
    assert main(["-w", str(ws), "plato", "prepare"]) == 2
    assert "pan000000-000005_lightcurves.parquet is of an earlier layout" in capsys.readouterr().err
    assert main(["-w", str(ws), "-q", "--overwrite", "plato", "import-panopticon", str(pan), "--name", "pan",
                 "--chunk-size", "2"]) == 0
    assert len(list((ws / "plato/raw").glob("pan*"))) == 3
    assert main(["-w", str(ws), "-q", "plato", "prepare"]) == 0


def test_export_panopticon_refuses_other_sources_and_replaces_the_whole_export_with_overwrite(small, tmp_path,
                                                                                              capsys):
    ws, out = _copy(small, tmp_path), tmp_path / "exp"
    raw = sorted((ws / "plato/raw").glob("*.parquet"))
    assert main(["-w", str(ws), "-q", "plato", "export-panopticon", str(out)]) == 0
    assert main(["-w", str(ws), "-q", "plato", "export-panopticon", str(out)]) == 0       # same sources: fine
    capsys.readouterr()
    assert main(["-w", str(ws), "plato", "export-panopticon", str(out), "--source", str(raw[0])]) == 2
    assert "Complete_Parameters.ftr: exists but was made with other settings" in capsys.readouterr().err
    assert len(list((out / "astrotool-export").glob("*.ftr"))) == 6                      # untouched
    assert main(["-w", str(ws), "-q", "--overwrite", "plato", "export-panopticon", str(out),
                 "--source", str(raw[0])]) == 0
    assert len(list((out / "astrotool-export").glob("*.ftr"))) == 3                      # no stale curves
    (tmp_path / "garbage.parquet").write_text("garbage")
    (tmp_path / "afile").write_text("")
    for args, msg in (([str(tmp_path / "e2"), "--source", str(tmp_path / "garbage.parquet")],
                       "garbage.parquet: not a readable Parquet file"),
                      ([str(tmp_path / "afile")], "afile: exists and is not a folder")):
        assert main(["-w", str(ws), "plato", "export-panopticon", *args]) == 2
        assert msg in capsys.readouterr().err
    raw[1].write_text("corrupt")
    assert main(["-w", str(ws), "plato", "export-panopticon", str(tmp_path / "e3")]) == 2
    assert f"{raw[1].name}: not a readable Parquet file" in capsys.readouterr().err


PAN_TOML = """seed = 101
training_epochs = 20
[model.general]
init_features = 8
[fraction]
train = 0.85
valid = 0.15
[dataloader.train]
batch_size = 45
[bounds]
transit_depth = [50e-6, 1.0]
"""


@pytest.mark.parametrize("old, new, msg", [
    ("seed = 101", "seed = 101\ntypo_key = 1", "unknown key(s) typo_key"),
    ("batch_size = 45", "bach_size = 45", "unknown key(s) [dataloader.train] bach_size"),
    ("init_features = 8", "init_featurs = 8", "unknown key(s) [model.general] init_featurs"),
    ("valid = 0.15", "valid = 0.3", "fraction: train, valid = 0.85, 0.3: the fractions must be non-negative and sum"),
    ("seed = 101", "seed = 101\nfraction = 0.8", "fraction: expected a table [fraction], got 0.8"),
    ("init_features = 8", 'channels_in = "two"', "model.general.channels_in: expected a number, got 'two'"),
    ("transit_depth = [50e-6, 1.0]", "transit_depth = 0.01", "bounds.transit_depth: expected [low, high]"),
    ("training_epochs = 20", "training_epochs = -3", "training_epochs: Input should be greater than or equal to 1"),
    ("[bounds]", '[scheduler]\nname = "ExponentialLR"\nuse = true\n[scheduler.kwargs]\ngama = 0.9\n[bounds]',
     "scheduler.kwargs = {gama = 0.9}: ExponentialLR needs 'gamma' (unknown: gama; it takes gamma)"),
    ("[bounds]", '[scheduler]\nname = "MultiStepLR"\nuse = true\n[scheduler.kwargs]\nmilestones = 5\n[bounds]',
     "scheduler.kwargs = {milestones = 5}: MultiStepLR: milestones must be a list of epochs"),
    ("[bounds]", '[scheduler]\nname = "StepLR"\nuse = true\n[scheduler.kwargs]\nstep_size = 0\n[bounds]',
     "scheduler.kwargs = {step_size = 0}: StepLR: step_size must be a whole number >= 1, not 0"),
    ("[bounds]", '[scheduler]\nname = "CosineAnnealingLR"\nuse = true\n[bounds]',
     "scheduler.kwargs (not given): CosineAnnealingLR needs 'T_max'"),
    ("[bounds]", '[scheduler]\nname = "StepLR"\nuse = true\n[scheduler.kwargs]\nstep_size = -1\n[bounds]',
     "StepLR: step_size must be a whole number >= 1, not -1"),
    ("[bounds]", '[scheduler]\nname = "CosineAnnealingLR"\nuse = true\n[scheduler.kwargs]\nT_max = -2\n[bounds]',
     "CosineAnnealingLR: T_max must be a whole number >= 1, not -2"),
    ("[bounds]", '[scheduler]\nname = "MultiStepLR"\nuse = true\n[scheduler.kwargs]\nmilestones = [1.5]\n[bounds]',
     "MultiStepLR: milestones must be a whole number >= 1, not 1.5"),
    ("[bounds]", '[scheduler]\nname = "LinearLR"\nuse = true\n[scheduler.kwargs]\ntotal_iters = 2.7\n[bounds]',
     "LinearLR: total_iters must be a whole number >= 1, not 2.7"),
    ("[bounds]", '[scheduler]\nname = "ExponentialLR"\nuse = true\n[scheduler.kwargs]\ngamma = -0.5\n[bounds]',
     "ExponentialLR: gamma must be > 0, not -0.5"),
    ("[bounds]", '[scheduler]\nname = "ConstantLR"\nuse = true\n[scheduler.kwargs]\nfactor = 0\n[bounds]',
     "ConstantLR: factor must be > 0, not 0"),
    ("[bounds]", '[optimizer]\nname = "Adam"\n[optimizer.kwargs]\nmomentum = 0.9\n[bounds]',
     "optimizer.kwargs: Adam refuses {'momentum': 0.9}"),
    ("[bounds]", '[scheduler]\nuse = true\n[bounds]', "scheduler.name: missing while use = true"),
    # whole numbers were truncated (1.9 -> 1), a negative seed passed to fail later, ppm bounds passed as fractions
    ("seed = 101", "seed = 1.9", "seed: expected a whole number, got 1.9"),
    ("seed = 101", "seed = -1", "seed: -1: astrotool takes a seed >= 0"),
    ("training_epochs = 20", "training_epochs = 3.7", "training_epochs: expected a whole number, got 3.7"),
    ("batch_size = 45", "batch_size = 2.5", "dataloader.train.batch_size: expected a whole number, got 2.5"),
    ("[fraction]", "[model.convolution]\nkernel_size = 30.9\n[fraction]",
     "model.convolution.kernel_size: expected a whole number, got 30.9"),
    ("transit_depth = [50e-6, 1.0]", "transit_depth = [0, 900]",
     "bounds.transit_depth: upper bound 900 is above 1: Panopticon's depths are fractions"),
    ("[bounds]", "[dataloaders.train]\nbatch_size = 10\n[bounds]",
     "dataloaders: given with [dataloader]: keep one of the two tables"),
    ("[bounds]", '[scheduler]\nname = "ReduceLROnPlateau"\nuse = true\n[bounds]',
     "scheduler.name: unknown or unsupported scheduler 'ReduceLROnPlateau' (expected one of ConstantLR, "
     "CosineAnnealingLR, ExponentialLR, LinearLR, MultiStepLR, StepLR; ReduceLROnPlateau is not offered: StepLR "
     "or CosineAnnealingLR lower the rate by epoch, and plato.train.patience stops the training on a plateau)"),
])
def test_config_import_names_unknown_keys_bad_fractions_and_types(tmp_path, capsys, old, new, msg):
    src = tmp_path / "pan.toml"
    src.write_text(PAN_TOML)
    assert main(["plato", "config", "import", str(src)]) == 0
    assert "astrotool's default bins 16" in capsys.readouterr().out
    src.write_text(PAN_TOML.replace(old, new) if "fraction = 0.8" not in new else
                   PAN_TOML.replace("[fraction]\ntrain = 0.85\nvalid = 0.15\n", "").replace(old, new))
    assert main(["plato", "config", "import", str(src)]) == 2
    err = capsys.readouterr().err
    assert msg in err and len(err.strip().splitlines()) == 1 and "pydantic.dev" not in err


def test_prepare_train_and_eval_name_bad_options_and_inputs(small, tmp_path, capsys):
    ws = _copy(small, tmp_path)
    bad = tmp_path / "bad_lightcurves.parquet"
    good = sorted((ws / "plato/raw").glob("*.parquet"))[0].read_bytes()
    bad.write_bytes(good[:len(good) // 2])
    for args, msg in (
            (["prepare", "--name", "z", str(bad)], "bad_lightcurves.parquet: not a readable Parquet file"),
            (["prepare", "--name", "z", "--length", "100"], "--length: 100 samples; at least 256 are needed"),
            (["--set", "plato.prepare.split=[0.5,0.2,0.2]", "prepare", "--name", "z"], "split: fractions must be "
                                                                                         "non-negative, sum to 1"),
            (["--set", "plato.evaluate.thresholds=[]", "eval"], "plato.evaluate.thresholds"),
            (["--set", "plato.evaluate.thresholds=[0.5,1.5]", "eval"], "thresholds: each must lie in (0, 1)"),
            (["--set", "plato.train.optimizer_kwargs={eps=-1}", "train", "--model", "o", "--width", "2"],
             "plato.train.optimizer_kwargs: AdamW refuses {'eps': -1.0} (Invalid epsilon value")):
        capsys.readouterr()
        assert main(["-w", str(ws), "plato", *args]) == 2, args
        err = capsys.readouterr().err
        assert msg in err and "--overwrite" not in err, err
    assert not (ws / "plato/prepared/z").exists() and not (ws / "plato/models/o/model.json").exists()


def test_prepare_warns_of_a_length_train_cannot_take(small, tmp_path, capsys):
    ws = _copy(small, tmp_path)
    capsys.readouterr()
    assert main(["-w", str(ws), "plato", "prepare", "--name", "z", "--length", "1000"]) == 0
    err = capsys.readouterr().err
    assert "--length 1000: `train` (plato.train.bin = 16, depth = 5, kernel_size = 9, dilation = 1) needs a " \
        "multiple of bin * 2**(depth-1) = 256, at least 1280 (its deepest convolutions pad by reflection), and " \
        "will refuse this set (nor can `evaluate` and `detect` pad it)" in err \
        and "for training use 1280 or 0 (the shortest curve's length, rounded down to a multiple of 256)" in err \
        and "and so of 256" not in err, err     # 768 and 1024 are multiples of 256, but too short
    # a finer granularity, 128 (depth 4): 0 is a multiple of it as of 256
    assert main(["-w", str(ws), "--set", "plato.train.depth=4", "plato", "prepare", "--name", "v", "--length",
                 "1000"]) == 0
    err = capsys.readouterr().err
    assert "use 896 or 1024 or 0 (the shortest curve's length, rounded down to a multiple of 256 and so of 128)" \
        in err and "will refuse this set (`evaluate` and `detect` pad it)" in err, err
    # another granularity, 512: every number of the message is its own, and 0 (a multiple of 256) is no advice
    assert main(["-w", str(ws), "--set", "plato.train.depth=6", "plato", "prepare", "--name", "x", "--length",
                 "1000"]) == 0
    err = capsys.readouterr().err
    assert "depth = 6, kernel_size = 9, dilation = 1) needs a multiple of bin * 2**(depth-1) = 512, at least 2560" \
        in err and "for training use 2560; not 0 (the shortest curve's length, a multiple of 256, of 512 only by " \
        "chance)" in err, err
    assert main(["-w", str(ws), "plato", "prepare", "--name", "u", "--length", "1024"]) == 0   # a multiple, too short
    assert "--length 1024: `train`" in capsys.readouterr().err
    assert main(["-w", str(ws), "plato", "prepare", "--name", "y", "--length", "1280"]) == 0
    assert "needs a multiple" not in capsys.readouterr().err


def test_filter_inf_keeps_gappy_curves_and_drops_those_with_nan_samples(tmp_path, capsys):
    from astrotool_plato.config import PrepareConfig
    from astrotool_plato.prepare import PreparedDataset, prepare_curve

    ws = tmp_path / "w"
    assert main(["-w", str(ws), "-q", "--set", "plato.simulate.gaps=true", "plato", "simulate", "-n", "3",
                 "--days", "6", "--set", "plato.simulate.duration_hours=[1,3]"]) == 0
    capsys.readouterr()
    assert main(["-w", str(ws), "--json", "plato", "prepare", "--filter-inf"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["curves"] == 3 and out["dropped"] == {}
    assert np.asarray(PreparedDataset(ws / "plato/prepared/quarters").metadata(["filled"])["filled"]).min() > 0
    t = np.delete(np.arange(1024) * 25.0 / 86400.0, np.s_[100:150])      # a gap
    f = np.ones(t.size)
    cfg = PrepareConfig(bad_values="drop")
    assert isinstance(prepare_curve(t, f, {}, cfg, 512), dict)
    f[10] = np.nan
    assert prepare_curve(t, f, {}, cfg, 512) == "1 NaN/inf sample(s) (bad_values = drop)"
    assert isinstance(prepare_curve(t, f, {}, PrepareConfig(), 512), dict)


def test_prepare_refuses_shards_simulated_with_other_settings(tmp_path, capsys):
    """One shard of an array simulated again with --overwrite and another noise: its labels replaced every
    curve's, and prepare mixed 600 and 700 ppm curves under 700 ppm labels (exit 0)."""
    sim = ["-w", str(tmp_path), "-q", "plato", "simulate", "-n", "4", "--days", "1", "--chunk-size", "2"]
    for i in (0, 1):
        assert main(["--shard", f"{i}/2", *sim]) == 0
    assert main(["--shard", "1/2", "--overwrite", *sim, "--noise-ppm", "700"]) == 0
    capsys.readouterr()
    assert main(["-w", str(tmp_path), "plato", "prepare"]) == 2
    err = capsys.readouterr().err
    assert "sim000000-000001_lightcurves.parquet: simulated with other settings than the labels in " \
           "sim_labels.parquet" in err
    assert not (tmp_path / "plato" / "prepared" / "quarters").exists()


def test_prepare_records_the_files_it_read(tmp_path):
    base = ["-w", str(tmp_path), "-q", "plato"]
    assert main([*base, "simulate", "-n", "4", "--days", "1", "--chunk-size", "2"]) == 0
    assert main([*base, "prepare"]) == 0
    (record,) = [json.loads(p.read_text()) for p in (tmp_path / "runs").glob("*prepare*/run.json")]
    assert [p.rsplit("/", 2)[-2:] for p in record["inputs"]] == [
        ["raw", "sim000000-000001_lightcurves.parquet"], ["raw", "sim000002-000003_lightcurves.parquet"],
        ["labels", "sim_labels.parquet"]]   # were none


def test_a_panopticon_split_without_test_share_points_eval_to_the_validation_curves(tmp_path, capsys):
    from astrotool.errors import InputError
    from astrotool_plato.evaluate import evaluate
    from astrotool_plato.prepare import PreparedDataset

    src = tmp_path / "pan.toml"
    src.write_text(PAN_TOML)
    assert main(["plato", "config", "import", str(src)]) == 0
    assert "(no test curves: `evaluate --split val` scores the validation ones)" in capsys.readouterr().out
    ws = tmp_path / "w"
    assert main(["-w", str(ws), "-q", "plato", "simulate", "-n", "4", "--days", "1"]) == 0
    assert main(["-w", str(ws), "-q", "--set", "plato.prepare.split=[0.5,0.5,0]", "plato", "prepare"]) == 0
    with pytest.raises(InputError, match=r"the 'test' split holds no curves .*--split val"):
        evaluate(None, PreparedDataset(ws / "plato/prepared/quarters"), "test", [0.5], None, 1, None)


def test_fewer_curves_simulated_again_leave_files_prepare_refuses_as_the_warning_says(tmp_path, capsys):
    ws = tmp_path / "w"
    sim = ["-w", str(ws), "plato", "simulate", "--days", "1", "--chunk-size", "2"]
    assert main([*sim, "-n", "4"]) == 0
    assert main([*sim, "-n", "2"]) == 0
    err = capsys.readouterr().err
    assert "sim000002-000003_lightcurves.parquet" in err and "or have no label row" in err
    assert main(["-w", str(ws), "plato", "prepare"]) == 2
    assert "curve 'sim000002' has no row in the label tables" in capsys.readouterr().err


def test_eval_writes_strict_json_with_null_for_undefined_scores(small, tmp_path, capsys):
    def strict(text):
        return json.loads(text, parse_constant=lambda c: pytest.fail(f"bare {c} in the JSON"))

    ws = _copy(small, tmp_path)
    capsys.readouterr()
    assert main(["-w", str(ws), "--json", "plato", "evaluate", "--split", "all", "--name", "r"]) == 0
    out = strict(capsys.readouterr().out)
    assert strict((ws / "plato/reports/r_evaluate.json").read_text())["curves"] == out["curves"]


def test_evaluate_refuses_to_replace_a_report_made_with_other_settings(small, tmp_path, capsys):
    ws = _copy(small, tmp_path)
    base = ["-w", str(ws), "-q", "plato", "evaluate", "--split", "all", "--name", "r"]
    assert main(base) == 0
    assert main(base) == 0                                        # the same settings: made again
    report = ws / "plato/reports/r_evaluate.json"
    before = report.read_text()
    capsys.readouterr()
    assert main([*base, "--min-snr", "500"]) == 2
    err = capsys.readouterr().err
    assert "r_evaluate.json: exists but was made with other settings" in err and "events.min_snr" in err
    assert "use --overwrite" in err and report.read_text() == before
    assert main(["-w", str(ws), "-q", "--overwrite", *base[3:], "--min-snr", "500"]) == 0
    assert json.loads(report.read_text())["events"]["min_snr"] == 500


def test_evaluate_is_named_as_in_the_other_plugins_and_eval_still_runs_hidden(small, tmp_path, capsys):
    ws = _copy(small, tmp_path)
    capsys.readouterr()
    assert main(["-w", str(ws), "-q", "--set", "plato.evaluate.name=viaset", "plato", "evaluate",
                 "--split", "all"]) == 0
    reports = ws / "plato/reports"
    assert (reports / "viaset_evaluate.json").is_file() and (reports / "viaset_evaluate.png").is_file()
    assert (reports / "viaset_transits.csv").is_file()
    assert main(["-w", str(ws), "-q", "plato", "evaluate", "--split", "all", "--name", "old"]) == 0   # old scripts
    assert (reports / "old_evaluate.json").is_file()
    assert not list(reports.glob("*_eval.*"))
    capsys.readouterr()
    assert main(["plato", "--help"]) == 0
    text = capsys.readouterr().out
    assert "evaluate" in text and " eval " not in text


def test_detect_s_reader_settings_do_not_invalidate_a_set_of_simulated_curves(tmp_path, capsys):
    ws = tmp_path / "w"
    assert main(["-w", str(ws), "-q", "plato", "simulate", "-n", "4", "--days", "1"]) == 0
    assert main(["-w", str(ws), "-q", "plato", "prepare"]) == 0
    capsys.readouterr()
    assert main(["-w", str(ws), "--set", 'plato.detect.flux_column="PDCSAP_FLUX"', "--set",
                 'plato.detect.time_unit="s"', "plato", "prepare"]) == 0   # not read with them: kept
    assert "is up to date" in capsys.readouterr().err


def test_keys_of_an_earlier_release_are_read_or_told_their_new_names(tmp_path, capsys):
    """[plato.eval] and its report were renamed (read under the new names, with a warning); [plato.bls] bin
    became bin_seconds, a length in seconds (refused, naming it): an old file said only 'unknown key'."""
    old = tmp_path / "old.toml"
    old.write_text('[plato.eval]\nname = "x"\nreport = "r"\n')
    assert main(["-w", str(tmp_path / "ws"), "--json", "--cfg", str(old), "config", "show", "plato"]) == 2
    assert "plato.evaluate.report: unknown key; renamed to 'name'" in capsys.readouterr().err  # both set
    old.write_text('[plato.eval]\nreport = "r"\nsplit = "val"\n')
    assert main(["-w", str(tmp_path / "ws"), "--json", "--cfg", str(old), "config", "show", "plato"]) == 0
    cap = capsys.readouterr()
    assert "plato.eval: renamed to 'evaluate'" in cap.err and "plato.evaluate.report: renamed to 'name'" in cap.err
    shown = json.loads(cap.out)["plato"]["evaluate"]
    assert shown["name"] == "r" and shown["split"] == "val" and shown["thresholds"]   # the defaults kept
    old.write_text('[plato.bls]\nbin = 4\n')
    assert main(["-w", str(tmp_path / "ws"), "--cfg", str(old), "config", "show", "plato"]) == 2
    assert "plato.bls.bin: unknown key; renamed to 'bin_seconds' (a length in seconds" in capsys.readouterr().err


@pytest.mark.parametrize("value, msg", [("[]", "plato.bls.durations_hours: List should have at least 1 item"),
                                        ("[-1, 2]", "plato.bls.durations_hours.0: Input should be greater than 0")])
def test_bls_trial_durations_are_checked_as_settings(tmp_path, capsys, value, msg):
    """An empty list failed every curve with 'min() arg is an empty sequence' (exit 1), and 0 or a negative
    duration blamed the file ('is the time in seconds?')."""
    assert main(["-w", str(tmp_path / "ws"), "--set", f"plato.bls.durations_hours={value}", "config", "show",
                 "plato"]) == 2
    assert msg in capsys.readouterr().err


def test_a_commands_option_wins_over_a_files_renamed_table(tmp_path):
    """``[plato.eval] split = "val"`` in a file and the command's own option for evaluate.split: the file's old
    table was merged over the option (the run used "val")."""
    from astrotool import config

    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "astro.toml").write_text('[plato.eval]\nsplit = "val"\nname = "r"\n')
    cfg = config.load(workspace=ws, environ={})
    assert cfg.section("plato").evaluate.split == "val"
    got = cfg.section("plato", {"evaluate.split": "train"}).evaluate
    assert (got.split, got.name) == ("train", "r")


def test_the_hidden_eval_alias_is_recorded_as_evaluate(small, tmp_path):
    """Runs through `eval` were recorded as runs/*-plato-eval, beside evaluate's *-plato-evaluate."""
    ws = _copy(small, tmp_path)
    before = set((ws / "runs").glob("*-plato-evaluate"))
    assert main(["-w", str(ws), "-q", "plato", "eval", "--split", "all", "--name", "old"]) == 0   # old scripts
    assert (ws / "plato/reports/old_evaluate.json").is_file()
    assert not list((ws / "runs").glob("*-plato-eval"))
    new = set((ws / "runs").glob("*-plato-evaluate")) - before
    assert len(new) == 1 and json.loads((new.pop() / "run.json").read_text())["command"] == "plato evaluate"


def test_event_options_show_their_configured_defaults_and_detect_takes_min_duration(capsys):
    """`--help` of detect and evaluate showed no default for the event options (the README says it shows the
    configured default of every option with a key), and detect had no --min-duration."""
    for command in ("detect", "evaluate"):
        capsys.readouterr()
        assert main(["--set", "plato.events.merge_gap_hours=1.5", "--set", "plato.events.min_duration_hours=0.75",
                     "plato", command, "--help"]) == 0
        text = " ".join(capsys.readouterr().out.split())
        assert "(sets plato.events.merge_gap_hours) [default: 1.5]" in text, text
        assert "--min-duration <float> shorter events are dropped [h] (sets plato.events.min_duration_hours) " \
               "[default: 0.75]" in text, text
        assert "(sets plato.events.min_snr) [default:" in text and "(sets plato.events.binary_snr) [default:" in text


def test_plot_all_without_labelled_curves_is_refused(tmp_path, capsys):
    """`plot all` in a workspace with no curves said `plots 0` and exited 0."""
    capsys.readouterr()
    assert main(["-w", str(tmp_path), "plato", "plot", "all", "--no-model-overlay"]) == 2
    assert f"plato/labels: no labelled curves to plot; run `astro -w {tmp_path} plato simulate`" \
        in capsys.readouterr().err


@pytest.mark.parametrize("command, suggested", [
    (["plato", "prepare"], "plato simulate"), (["plato", "labels"], "plato simulate"),
    (["plato", "train"], "plato prepare"),
])
def test_suggested_command_names_the_workspace(tmp_path, capsys, command, suggested):
    """A hint run in another folder ran elsewhere: `run astro plato simulate first` lacked the `-w` of the
    command that printed it."""
    capsys.readouterr()
    assert main(["-w", str(tmp_path), *command]) == 2
    assert f"run `astro -w {tmp_path} {suggested}` first" in " ".join(capsys.readouterr().err.split())


def test_eval_names_binaries_when_every_transit_free_curve_holds_one(tmp_path, capsys):
    """The quiet operating point, undefined because each transit-free curve held a binary, got the hint to
    simulate with plato.simulate.transit_fraction < 1 (it was 0.5)."""
    ws = tmp_path / "w"
    base = ["-w", str(ws), "-q", "plato"]
    assert main([*base, "--set", "plato.simulate.eb_fraction=0.6", "--set", "plato.simulate.beb_fraction=0.4",
                 "simulate", "-n", "6", "--days", "1"]) == 0
    assert main([*base, "prepare"]) == 0
    assert main([*base, "train", "--epochs", "1", "--width", "2", "--batch-size", "2"]) == 0
    capsys.readouterr()
    assert main(["-w", str(ws), "plato", "evaluate", "--split", "all"]) == 0
    err = " ".join(capsys.readouterr().err.split())
    quiet = err[err.index("the quiet operating point is undefined"):]
    assert "transit-free curve(s) holds an eclipsing binary" in quiet, err
    assert "plato.simulate.eb_fraction + beb_fraction < 1" in quiet and "transit_fraction" not in quiet
