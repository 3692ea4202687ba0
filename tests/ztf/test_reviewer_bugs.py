"""Defects found by reviewers: each test failed before its fix."""

from __future__ import annotations

import numpy as np
import pytest

SHARED = __import__("tests.conftest", fromlist=["SHARED"]).SHARED / "data" / "ztf"
AVRO = sorted(SHARED.glob("*.avro"))


def _error(r):
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    return r.stderr


def test_a_large_psf_mismatch_is_refused_before_any_work(tmp_path, astro):
    err = _error(astro("-w", tmp_path / "ws", "--set", "ztf.simulate.psf_mismatch=0.5", "ztf", "simulate", "-n", 3))
    assert "ztf.simulate.psf_mismatch" in err
    assert not (tmp_path / "ws" / "ztf" / "simulated").exists() or not list((tmp_path / "ws").rglob("*.parquet"))


def test_the_matched_psf_width_stays_in_a_safe_range():
    from astrotool_ztf.simulate import MISMATCH_RANGE, matched_fwhm

    rng = np.random.default_rng(0)
    widths = [matched_fwhm(rng, 2.0, 5.0) for _ in range(200)]
    assert min(widths) >= 2.0 * MISMATCH_RANGE[0] and max(widths) <= 2.0 * MISMATCH_RANGE[1]


@pytest.fixture(scope="module")
def vae_ws(tmp_path_factory):
    """A workspace with 40 simulated objects, the prepared sets ``sim`` and ``real``, a VAE and one embedding."""
    from tests.conftest import run_astro_here as run_astro

    ws = tmp_path_factory.mktemp("ztf_embed") / "ws"
    small = ("--seed", 1, "--set", "ztf.prepare.val_per_class=2", "--set", "ztf.prepare.test_per_class=2")
    assert run_astro("-w", ws, "--seed", 1, "ztf", "simulate", "-n", 40).returncode == 0
    for name in ("sim", "real"):
        r = run_astro("-w", ws, *small, "ztf", "prepare", "--name", name)
        assert r.returncode == 0, r.stderr
    r = run_astro("-w", ws, "--seed", 1, "ztf", "train", "--arch", "vae", "--epochs", 1)
    assert r.returncode == 0, r.stderr
    r = run_astro("-w", ws, "--seed", 1, "--set", "ztf.embed.n_neighbors=5", "ztf", "embed", "--model", "sim_vae")
    assert r.returncode == 0, r.stderr
    return ws


def test_embed_names_the_dataset_and_keeps_an_identical_rerun(vae_ws, astro):
    out = vae_ws / "ztf" / "embeddings"
    assert (out / "sim_vae_sim_test.parquet").is_file() and (out / "sim_vae_sim_test.png").is_file()
    before = (out / "sim_vae_sim_test.parquet").stat().st_mtime_ns
    r = astro("-w", vae_ws, "--seed", 1, "--set", "ztf.embed.n_neighbors=5", "ztf", "embed", "--model", "sim_vae")
    assert r.returncode == 0, r.stderr
    assert "skipped (done)" in r.stdout + r.stderr
    assert (out / "sim_vae_sim_test.parquet").stat().st_mtime_ns == before


@pytest.mark.parametrize("change", [("--set", "ztf.embed.n_neighbors=6"), ("--set", "ztf.embed.min_dist=0.3")])
def test_embed_refuses_other_settings_without_overwrite(vae_ws, astro, change):
    out = vae_ws / "ztf" / "embeddings" / "sim_vae_sim_test.parquet"
    before = out.stat().st_mtime_ns
    err = _error(astro("-w", vae_ws, "--seed", 1, "--set", "ztf.embed.n_neighbors=5", *change,
                       "ztf", "embed", "--model", "sim_vae"))
    assert change[1].split("=")[0] in err and "--overwrite" in err
    assert out.stat().st_mtime_ns == before


def test_embed_of_another_dataset_is_another_file(vae_ws, astro):
    out = vae_ws / "ztf" / "embeddings"
    r = astro("-w", vae_ws, "--seed", 1, "--set", "ztf.embed.n_neighbors=5", "--set", "ztf.embed.min_dist=0.3",
              "ztf", "embed", "--model", "sim_vae", "--dataset", "real")
    assert r.returncode == 0, r.stderr
    assert (out / "sim_vae_real_test.parquet").is_file()


def _two_files_of_one_name(tmp_path):
    for i, src in enumerate(AVRO[:2], 1):
        (tmp_path / f"c{i}").mkdir()
        (tmp_path / f"c{i}" / "a.avro").write_bytes(src.read_bytes())
    return tmp_path / "c1" / "a.avro", tmp_path / "c2" / "a.avro"


def _source(ws, name):
    import h5py

    with h5py.File(ws / "ztf" / "stamps" / f"{name}_stamps.h5", "r") as h5:
        return h5.attrs["source"]


def test_an_ingested_file_keeps_its_name_whatever_else_is_on_the_command_line(tmp_path, astro):
    c1, c2 = _two_files_of_one_name(tmp_path)
    ws = tmp_path / "ws"
    assert astro("-w", ws, "ztf", "ingest", c1, c2).returncode == 0
    for f in (c1, c2):
        r = astro("-w", ws, "ztf", "ingest", f)
        assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (ws / "ztf" / "alerts").glob("*.parquet")) == ["c1_a_alerts.parquet",
                                                                                 "c2_a_alerts.parquet"]


def test_a_file_of_a_taken_name_never_replaces_the_other_files_alerts(tmp_path, astro):
    c1, c2 = _two_files_of_one_name(tmp_path)
    ws = tmp_path / "ws"
    assert astro("-w", ws, "ztf", "ingest", c1).returncode == 0
    r = astro("-w", ws, "ztf", "ingest", c2)
    assert r.returncode == 0, r.stderr
    assert "--overwrite" not in r.stderr
    assert _source(ws, "a") == str(c1.resolve()) and _source(ws, "c2_a") == str(c2.resolve())
    r = astro("-w", ws, "--overwrite", "ztf", "ingest", c1, c2)   # together: each keeps its name
    assert r.returncode == 0, r.stderr
    assert _source(ws, "a") == str(c1.resolve()) and _source(ws, "c2_a") == str(c2.resolve())
    assert not (ws / "ztf" / "alerts" / "c1_a_alerts.parquet").exists()


@pytest.mark.parametrize("command", [("predict", str(AVRO[0])), ("export",)])
def test_predict_and_export_say_plainly_that_temporal_models_are_scored_by_evaluate(vae_ws, astro, command):
    import json
    import shutil

    models = vae_ws / "ztf" / "models"
    if not (models / "sim_temporal").exists():   # a temporal checkpoint as far as its metadata goes
        shutil.copytree(models / "sim_vae", models / "sim_temporal")
        meta = json.loads((models / "sim_temporal" / "model.json").read_text())
        meta["architecture"]["name"] = "ztf_temporal_classifier"
        (models / "sim_temporal" / "model.json").write_text(json.dumps(meta))
    err = _error(astro("-w", vae_ws, "ztf", *command, "--model", "sim_temporal"))
    assert "temporal" in err and "evaluate" in err and "another model" not in err
    err = _error(astro("-w", vae_ws, "ztf", *command, "--model", "sim_vae"))
    assert "autoencoder" in err and "another model" not in err


def test_ingest_refuses_changed_settings_before_any_work(tmp_path, astro):
    src = tmp_path / "in"
    src.mkdir()
    for f in AVRO[:2]:
        (src / f.name).write_bytes(f.read_bytes())
    ws = tmp_path / "ws"
    assert astro("-w", ws, "-q", "ztf", "ingest", src / AVRO[0].name).returncode == 0
    err = _error(astro("-w", ws, "ztf", "ingest", src, "--stamp-size", 31))
    assert "ztf.ingest.stamp_size: 63 -> 31" in err and "--overwrite" in err
    assert len(list((ws / "ztf" / "alerts").glob("*.parquet"))) == 1


def test_prepare_suggests_an_allowed_crop(tmp_path, astro):
    ws = tmp_path / "ws"
    assert astro("-w", ws, "-q", "ztf", "ingest", AVRO[0], "--stamp-size", 31).returncode == 0
    err = _error(astro("-w", ws, "--set", 'ztf.prepare.inputs=["*"]', "--set", "ztf.prepare.label_column=objectId",
                       "ztf", "prepare", "--crop", 33))
    assert "ztf.prepare.crop to 21" in err and "31 or less" not in err


def test_an_even_stamp_size_is_refused(tmp_path, astro):
    err = _error(astro("-w", tmp_path / "ws", "ztf", "ingest", AVRO[0], "--stamp-size", 20))
    assert "stamp_size" in err and "odd" in err


def test_encoder_without_arch_probe_is_refused(tmp_path, astro):
    err = _error(astro("-w", tmp_path / "ws", "ztf", "train", "--encoder", "sim_vae"))
    assert "--encoder" in err and "probe" in err


def test_a_sharded_ingest_reports_its_own_files(tmp_path, astro):
    import json

    src = tmp_path / "in"
    src.mkdir()
    for i in range(4):
        (src / f"{i}.avro").write_bytes(AVRO[i % 2].read_bytes())
    r = astro("--json", "-w", tmp_path / "ws", "--shard", "0/2", "ztf", "ingest", src)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["files"] == 2 and out["ingested"] == 2


def test_a_wrong_model_name_lists_the_models(vae_ws, astro):
    err = _error(astro("-w", vae_ws, "ztf", "export", "--model", "nosuch"))
    assert "nosuch" in err and "available" in err and "sim_vae" in err


def test_alerts_per_s_is_the_rate_of_the_files_ingested_in_this_run(tmp_path, astro):
    import json

    import h5py

    ws = tmp_path / "ws"
    first = json.loads(astro("--json", "-w", ws, "ztf", "ingest", AVRO[0]).stdout)
    assert first["ingested"] == 1 and first["alerts_per_s"] > 0
    again = json.loads(astro("--json", "-w", ws, "ztf", "ingest", AVRO[0]).stdout)
    assert again["kept"] == 1 and again["alerts_per_s"] is None   # nothing ingested: no rate of this run
    with h5py.File(ws / "ztf" / "stamps" / f"{AVRO[0].name[:-5]}_stamps.h5", "r+") as h5:
        h5.attrs["seconds"] = 1e6   # an earlier run's time, which is not this run's
    fink = SHARED / "fink_alerts.parquet"
    out = json.loads(astro("--json", "-w", ws, "ztf", "ingest", AVRO[0], fink).stdout)
    new = next(o for o in out["outputs"] if not o["skipped"])
    assert out["kept"] == 1 and out["ingested"] == 1
    assert out["alerts_per_s"] >= new["n_alerts"] / 60   # the new file over this run's wall clock


def _sim(ws, astro, *args):
    import json

    r = astro("--json", "-w", ws, *args, "ztf", "simulate", "-n", 12)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_a_copied_workspace_simulates_into_its_own_tables(tmp_path, astro):
    import shutil

    import pyarrow.parquet as pq

    wsp, wsd, wsc = tmp_path / "wsp", tmp_path / "wsd", tmp_path / "wsc"
    _sim(wsp, astro, "--seed", 1)
    shutil.copytree(wsp, wsd)
    shutil.copytree(wsp, wsc)
    tables = sorted(p.name for p in (wsp / "ztf" / "alerts").glob("*.parquet"))
    assert all(t.startswith("sim_") for t in tables)
    out = _sim(wsd, astro, "--seed", 2, "--overwrite")   # new alerts in the copy: into sim_NNNN
    assert sorted(__import__("pathlib").Path(t).name for t in out["alert_tables"]) == tables
    assert sorted(p.name for p in (wsd / "ztf" / "alerts").glob("*.parquet")) == tables
    for t in tables:   # the tables prepare reads (sim_*) hold the new alerts
        stem = t[: -len("_alerts.parquet")]
        new = pq.read_table(wsd / "ztf" / "simulated" / f"{stem}.parquet", columns=["candid"])["candid"]
        assert pq.read_table(wsd / "ztf" / "alerts" / t, columns=["candid"])["candid"].to_pylist() == new.to_pylist()
    assert _source(wsd, "sim_0000") == "ztf/simulated/sim_0000.parquet"   # recorded inside the workspace
    again = _sim(wsc, astro, "--seed", 1)   # a plain rerun in a copy: everything kept, nothing doubled
    assert again["written"] == 0
    assert sorted(p.name for p in (wsc / "ztf" / "alerts").glob("*.parquet")) == tables


def test_a_moved_input_keeps_its_name(tmp_path, astro):
    import json

    src = tmp_path / "in"
    src.mkdir()
    (src / "0.avro").write_bytes(AVRO[0].read_bytes())
    ws = tmp_path / "ws"
    assert astro("-w", ws, "ztf", "ingest", src / "0.avro").returncode == 0
    moved = tmp_path / "elsewhere" / "night"
    moved.parent.mkdir()
    src.rename(moved)
    r = astro("--json", "-w", ws, "ztf", "ingest", moved / "0.avro")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["kept"] == 1
    assert [p.name for p in (ws / "ztf" / "alerts").glob("*.parquet")] == ["0_alerts.parquet"]


def test_a_copy_beside_its_original_gets_one_name_whatever_the_command_line(tmp_path, astro):
    """A copy ingested alone took its original's name by content, and with its original on the command line
    another: the same file under two names in two runs."""
    import json

    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "x.avro").write_bytes(AVRO[0].read_bytes())
    ws = tmp_path / "ws"
    assert astro("-w", ws, "ztf", "ingest", tmp_path / "a" / "x.avro").returncode == 0
    assert astro("-w", ws, "ztf", "ingest", tmp_path / "b" / "x.avro").returncode == 0
    names = sorted(p.name for p in (ws / "ztf" / "alerts").glob("*.parquet"))
    assert names == ["b_x_alerts.parquet", "x_alerts.parquet"]   # the original is still there: a file of its own
    r = astro("--json", "-w", ws, "ztf", "ingest", tmp_path / "a" / "x.avro", tmp_path / "b" / "x.avro")
    assert r.returncode == 0 and json.loads(r.stdout)["kept"] == 2, r.stderr
    assert sorted(p.name for p in (ws / "ztf" / "alerts").glob("*.parquet")) == names


def test_a_shard_is_not_refused_over_another_shards_outputs(tmp_path, astro):
    import json

    src = tmp_path / "in"
    src.mkdir()
    for i in range(4):
        (src / f"{i}.avro").write_bytes(AVRO[i % 2].read_bytes())
    ws = tmp_path / "ws"
    assert astro("-w", ws, "--shard", "0/2", "ztf", "ingest", src, "--stamp-size", 31).returncode == 0
    r = astro("--json", "-w", ws, "--shard", "1/2", "ztf", "ingest", src)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["ingested"] == 2
    err = _error(astro("-w", ws, "--shard", "0/2", "ztf", "ingest", src))   # its own kept outputs still are
    assert "ztf.ingest.stamp_size: 31 -> 63" in err


def test_an_unreadable_or_incomplete_output_is_never_taken_by_another_file(tmp_path, astro):
    c1, c2 = _two_files_of_one_name(tmp_path)
    ws = tmp_path / "ws"
    assert astro("-w", ws, "ztf", "ingest", c1).returncode == 0
    stamps, alerts = ws / "ztf" / "stamps" / "a_stamps.h5", ws / "ztf" / "alerts" / "a_alerts.parquet"
    stamps.write_bytes(b"not an HDF5 file")
    r = astro("-w", ws, "ztf", "ingest", c2)
    assert r.returncode == 0, r.stderr
    assert stamps.read_bytes() == b"not an HDF5 file" and (ws / "ztf" / "alerts" / "c2_a_alerts.parquet").exists()
    # an alert table whose stamps file is missing: its name is taken too
    shutil = __import__("shutil")
    shutil.rmtree(ws / "ztf" / "stamps")
    before = alerts.read_bytes()
    (ws / "ztf" / "alerts" / "c2_a_alerts.parquet").unlink()
    r = astro("-w", ws, "ztf", "ingest", c2)
    assert r.returncode == 0, r.stderr
    assert alerts.read_bytes() == before and (ws / "ztf" / "alerts" / "c2_a_alerts.parquet").exists()


def test_a_file_named_twice_is_ingested_once(tmp_path, astro):
    import json

    src = tmp_path / "in"
    src.mkdir()
    (src / "0.avro").write_bytes(AVRO[0].read_bytes())
    r = astro("--json", "-w", tmp_path / "ws", "ztf", "ingest", src / "0.avro", src / ".." / "in" / "0.avro", src)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["ingested"] == 1
    assert [p.name for p in (tmp_path / "ws" / "ztf" / "alerts").glob("*.parquet")] == ["0_alerts.parquet"]


def test_a_set_made_again_with_another_crop_names_the_crop(vae_ws, tmp_path, astro):
    import shutil

    ws = tmp_path / "ws"
    shutil.copytree(vae_ws, ws)
    small = ("--seed", 1, "--set", "ztf.prepare.val_per_class=2", "--set", "ztf.prepare.test_per_class=2")
    assert astro("-w", ws, *small, "--overwrite", "ztf", "prepare", "--crop", 33).returncode == 0
    err = _error(astro("-w", ws, "--seed", 1, "ztf", "evaluate", "--model", "sim_vae"))
    assert "crop 21 -> 33" in err and "manifest" not in err
