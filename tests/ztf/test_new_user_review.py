"""Findings of a new user's review of ``astro ztf``: each test failed before its fix."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

SHARED = __import__("tests.conftest", fromlist=["SHARED"]).SHARED / "data" / "ztf"
AVRO = sorted(SHARED.glob("*.avro"))
needs_shared = pytest.mark.skipif(not AVRO, reason=f"no sample ZTF alerts in {SHARED}")


def _error(r):
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    return r.stderr


@needs_shared
@pytest.mark.parametrize("overwrite", [(), ("--overwrite",)])
def test_simulate_never_replaces_an_ingested_table_of_its_names(tmp_path, astro, overwrite):
    (tmp_path / "xx").mkdir()
    real = shutil.copy(AVRO[0], tmp_path / "xx" / "sim_0001.avro")
    ws = tmp_path / "ws"
    assert astro("-w", ws, "ztf", "ingest", real).returncode == 0
    table = ws / "ztf" / "alerts" / "sim_0001_alerts.parquet"
    before = pd.read_parquet(table)
    err = _error(astro("-w", ws, "--set", "ztf.simulate.chunk_size=1", *overwrite, "ztf", "simulate", "-n", 2))
    assert "sim_0001_alerts.parquet" in err and "--name" in err and str(real) in err
    pd.testing.assert_frame_equal(pd.read_parquet(table), before)
    assert not list((ws / "ztf" / "simulated").glob("*.parquet"))   # refused before anything was drawn
    r = astro("-w", ws, "--set", "ztf.simulate.chunk_size=1", *overwrite, "ztf", "simulate", "-n", 2, "--name", "s")
    assert r.returncode == 0, r.stderr
    pd.testing.assert_frame_equal(pd.read_parquet(table), before)
    # simulate's own table whose stamps file is gone says nothing against it: made again, not refused for ever
    (ws / "ztf" / "stamps" / "s_0000_stamps.h5").unlink()
    r = astro("-w", ws, "--set", "ztf.simulate.chunk_size=1", "--overwrite", "ztf", "simulate", "-n", 2, "--name", "s")
    assert r.returncode == 0, r.stderr


SMALL = ("--set", "ztf.prepare.val_per_class=2", "--set", "ztf.prepare.test_per_class=2")
FINK = SHARED / "fink_alerts.parquet"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A workspace with 40 simulated objects, the set ``sim`` and the classifier ``sim_classifier`` (1 epoch)."""
    from tests.conftest import run_astro_here as run_astro

    ws = tmp_path_factory.mktemp("ztf_new_user") / "ws"
    for args in (("ztf", "simulate", "-n", 40), (*SMALL, "ztf", "prepare"), ("ztf", "train", "--epochs", 1)):
        r = run_astro("-w", ws, "--seed", 1, *args)
        assert r.returncode == 0, r.stderr
    return ws


@pytest.fixture
def tws(trained, tmp_path):
    """A copy of the trained workspace the test may change."""
    shutil.copytree(trained, tmp_path / "ws")
    return tmp_path / "ws"


def _fink_dump(path, n=6, drop=(), blank=()):
    """The first ``n`` alerts of the shared Fink dump, their ``candidate`` without the fields ``drop`` and the
    template stamps of the alerts ``blank`` empty."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    t = pq.read_table(FINK).slice(0, n)
    cand = t.column("candidate").combine_chunks()
    keep = [i for i in range(cand.type.num_fields) if cand.type.field(i).name not in drop]
    cand = pa.StructArray.from_arrays([cand.field(i) for i in keep], fields=[cand.type.field(i) for i in keep])
    t = t.set_column(t.column_names.index("candidate"), "candidate", cand)
    col = t.column("cutoutTemplate").combine_chunks()
    data = [b"" if i in blank else v for i, v in enumerate(col.field("stampData").to_pylist())]
    col = pa.StructArray.from_arrays([col.field("fileName"), pa.array(data, col.type.field("stampData").type)],
                                     fields=list(col.type))
    pq.write_table(t.set_column(t.column_names.index("cutoutTemplate"), "cutoutTemplate", col), path)
    return path


LACKING = ("sgscore1", "classtar", "xpos", "ypos")


@pytest.mark.skipif(not FINK.exists(), reason=f"no {FINK}")
def test_alerts_without_feature_fields_are_warned_about_and_refused_by_prepare(tws, tmp_path, astro):
    dump = _fink_dump(tmp_path / "fink_x.parquet", drop=LACKING)
    r = astro("-w", tws, "ztf", "ingest", dump)
    assert r.returncode == 0, r.stderr
    lines = [line for line in r.stderr.splitlines() if "sgscore1" in line]
    assert len(lines) == 1 and "fink_x.parquet" in lines[0]   # once per file, not per alert
    assert all(f in lines[0] for f in LACKING)
    r = astro("--json", "-w", tws, "ztf", "predict", "fink_x", "--model", "sim_classifier")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["imputed_features"] == {"fink_x_alerts.parquet": ["sgscore1", "classtar"]}
    assert "fink_x_alerts.parquet" in r.stderr and "sgscore1, classtar" in r.stderr
    err = _error(astro("-w", tws, *SMALL, "--set", 'ztf.prepare.label_column="objectId"', "ztf", "prepare",
                       "fink_x", "--name", "fx"))
    assert "fink_x_alerts.parquet" in err and "sgscore1, classtar" in err
    assert not (tws / "ztf" / "prepared" / "fx").exists()


@pytest.mark.skipif(not FINK.exists(), reason=f"no {FINK}")
def test_predictions_say_which_alerts_had_a_blank_stamp(tws, tmp_path, astro):
    dump = _fink_dump(tmp_path / "fink_b.parquet", blank=(1, 2))
    r = astro("--json", "-w", tws, "ztf", "predict", dump, "--model", "sim_classifier")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["incomplete_stamps"] == 2 and out["no_prediction"] == 0 and out["imputed_features"] == {}
    assert "2 alert(s) with a missing or undecodable stamp" in r.stderr
    table = pd.read_parquet(tws / "ztf" / "predictions" / "sim_classifier_alerts.parquet")
    assert table["stamps_ok"].tolist() == [True, False, False, True, True, True]
    assert (table["class"] != "").all()


def test_suggested_commands_name_the_workspace_and_the_model(tws, tmp_path, astro):
    """The hints said `astro ztf export` (no -w, no --model): pasted, they ran on another workspace."""
    err = _error(astro("-w", tws, "ztf", "predict", "sim_0000", "--model", "sim_classifier", "--engine",
                       "onnxruntime"))
    assert f"`astro -w {tws} ztf export --model sim_classifier`" in " ".join(err.split())
    err = _error(astro("ztf", "predict", "sim_0000", "--model", "sim_classifier", "--engine", "onnxruntime",
                       cwd=tws))   # the workspace is the current folder: no -w
    assert "`astro ztf export --model sim_classifier`" in " ".join(err.split())
    err = _error(astro("ztf", "prepare", "--name", "x", env={"ASTRO_WORKSPACE": str(tmp_path / "empty")}))
    assert f"astro -w {tmp_path / 'empty'} ztf simulate" in " ".join(err.split())
    err = _error(astro("-w", "rel", "ztf", "train", "--dataset", "nosuch", cwd=tmp_path))
    assert "`astro -w rel ztf prepare`" in " ".join(err.split())


def test_empty_seeds_are_refused(tws, astro):
    for seeds in ("", "1,"):   # "" trained the default model as if no --seeds had been given
        err = _error(astro("-w", tws, "ztf", "train", "--seeds", seeds, "--model", "m"))
        assert "--seeds" in err
    assert not (tws / "ztf" / "models" / "m").exists()


def test_seed_groups_hold_only_models_trained_for_the_same_epochs(tmp_path):
    from astrotool_ztf.evaluate import seed_groups

    def model(name, seed, epochs, patience=5):
        d = tmp_path / name
        d.mkdir()
        (d / "model.json").write_text(json.dumps({
            "format": "astrotool-checkpoint", "format_version": 1,
            "architecture": {"name": "ztf_stamp_classifier", "kwargs": {}},
            "settings": {"lr": 1e-3, "seed": seed, "dataset": {"name": "sim"}},
            "hyperparameters": {"epochs": epochs, "patience": patience},
            "training_progress": {"epochs_done": epochs, "epochs": epochs, "finished": True}}))
        return d

    dirs = [model("m_seed0", 0, 3), model("m_seed1", 1, 3), model("m_seed2", 2, 12), model("m_seed3", 3, 3, 0)]
    assert [[d.name for d in g] for g in seed_groups(dirs)] == [["m_seed0", "m_seed1"], ["m_seed2"], ["m_seed3"]]


def test_prepare_refuses_a_class_no_alert_holds(tws, astro):
    err = _error(astro("-w", tws, *SMALL, "--set", "ztf.prepare.classes=['SN','XX']", "ztf", "prepare",
                       "--name", "cx"))
    assert "XX" in err and "ztf.prepare.classes" in err and "found: AGN, SN, VS, asteroid, bogus" in err
    assert not (tws / "ztf" / "prepared" / "cx").exists()
    r = astro("-w", tws, *SMALL, "--set", "ztf.prepare.classes=['SN','VS']", "ztf", "prepare", "--name", "sv")
    assert r.returncode == 0, r.stderr
    # a hold-out set keeps the model's classes though one is absent (evaluate needs them equal): a warning
    r = astro("-w", tws, *SMALL, "--set", "ztf.prepare.classes=['SN','XX']", "--set", "ztf.prepare.holdout=true",
              "ztf", "prepare", "--name", "hx")
    assert r.returncode == 0 and "XX" in r.stderr and "a hold-out set: kept" in r.stderr, r.stderr


def test_training_new_weights_warns_of_the_stale_onnx_export(tws, astro):
    onnx = tws / "ztf" / "models" / "sim_classifier" / "model.onnx"
    train = ("-w", tws, "--seed", 1, "ztf", "train", "--epochs", 2)
    assert astro("-w", tws, "ztf", "export", "--model", "sim_classifier").returncode == 0
    r = astro(*train)   # resumed: one more epoch, new weights
    assert r.returncode == 0, r.stderr
    assert onnx.exists() and "model.onnx: exported from the weights before this training" in r.stderr
    assert "ztf export --model sim_classifier" in r.stderr
    assert astro("-w", tws, "ztf", "export", "--model", "sim_classifier").returncode == 0
    r = astro(*train)   # no epoch left: the same weights, nothing said
    assert r.returncode == 0, r.stderr
    assert "exported from the weights before" not in r.stderr


def test_predict_takes_glob_patterns_of_tables_as_prepare_does(tws, astro):
    r = astro("--json", "-w", tws, "ztf", "predict", "sim_*", "--model", "sim_classifier")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["alerts"] == len(pd.read_parquet(tws / "ztf" / "alerts" / "sim_0000_alerts.parquet"))
    for command in (("predict", "fink_*", "--model", "sim_classifier"), ("prepare", "fink_*", "--name", "f")):
        err = _error(astro("-w", tws, "ztf", *command))
        assert "fink_*" in err and "tables: sim_0000" in err


def test_models_of_the_wrong_kind_or_name_are_refused_in_plain_words(tws, astro):
    assert astro("-w", tws, "--seed", 1, "ztf", "train", "--arch", "vae", "--epochs", 1).returncode == 0
    err = _error(astro("-w", tws, "ztf", "train", "--arch", "probe", "--encoder", "nosuch"))
    assert "--encoder" in err and "no trained model named 'nosuch'" in err and "sim_classifier, sim_vae" in err
    for command in (("embed", "--model", "sim_classifier"),
                    ("predict", "sim_0000", "--model", "sim_classifier", "--autoencoder", "sim_classifier")):
        err = _error(astro("-w", tws, "ztf", *command))
        assert "a classifier" in err and "not an autoencoder" in err and "architecture" not in err
    err = _error(astro("-w", tws, "ztf", "evaluate", "--model", "sim_classifier", "--baseline", "sim_vae"))
    assert "--baseline" in err and "sim_vae is an autoencoder" in err and "astro ztf evaluate" not in err


def test_a_kept_prepare_reports_what_a_fresh_one_reports(tws, astro):
    run = ("--json", "-w", tws, "--seed", 1, *SMALL, "ztf", "prepare")
    fresh = json.loads(astro(*run[:-2], "--overwrite", *run[-2:]).stdout)
    kept = json.loads(astro(*run).stdout)
    assert (fresh.pop("kept"), kept.pop("kept")) == (False, True)
    assert kept == fresh and set(kept) == {"dataset", "n", "objects", "alerts_per_split_and_class"}
