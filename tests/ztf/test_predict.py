"""``astro ztf predict`` and ``astro ztf export``: the inputs predict reads (named twice, moved, changed,
ingested again, broker dumps with missing fields or stamps), the predictions it keeps or refuses to replace,
their columns, the ONNX export, and the models each accepts."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tests.ztf.conftest import AVRO, SHARED_ZTF, SMALL, run_main as _main, usage_error as _error

FINK = SHARED_ZTF / "fink_alerts.parquet"


def _fink_dump(path, n=6, drop=(), blank=(), stamps=("cutoutTemplate",)):
    """The first ``n`` alerts of the shared Fink dump, their ``candidate`` without the fields ``drop`` and the
    ``stamps`` (default the template) of the alerts ``blank`` empty."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    t = pq.read_table(FINK).slice(0, n)
    cand = t.column("candidate").combine_chunks()
    keep = [i for i in range(cand.type.num_fields) if cand.type.field(i).name not in drop]
    cand = pa.StructArray.from_arrays([cand.field(i) for i in keep], fields=[cand.type.field(i) for i in keep])
    t = t.set_column(t.column_names.index("candidate"), "candidate", cand)
    for stamp in stamps:
        col = t.column(stamp).combine_chunks()
        data = [b"" if i in blank else v for i, v in enumerate(col.field("stampData").to_pylist())]
        col = pa.StructArray.from_arrays([col.field("fileName"), pa.array(data, col.type.field("stampData").type)],
                                         fields=list(col.type))
        t = t.set_column(t.column_names.index(stamp), stamp, col)
    pq.write_table(t, path)
    return path


LACKING = ("sgscore1", "classtar", "xpos", "ypos")


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


def test_a_wrong_model_name_lists_the_models(vae_ws, astro):
    err = _error(astro("-w", vae_ws, "ztf", "export", "--model", "nosuch"))
    assert "nosuch" in err and "available" in err and "sim_vae" in err


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


def test_predict_takes_glob_patterns_of_tables_as_prepare_does(tws, astro):
    r = astro("--json", "-w", tws, "ztf", "predict", "sim_*", "--model", "sim_classifier")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["alerts"] == len(pd.read_parquet(tws / "ztf" / "alerts" / "sim_0000_alerts.parquet"))
    for command in (("predict", "fink_*", "--model", "sim_classifier"), ("prepare", "fink_*", "--name", "f")):
        err = _error(astro("-w", tws, "ztf", *command))
        assert "fink_*" in err and "tables: sim_0000" in err


def test_predict_counts_an_input_named_twice_once(tws, tmp_path, astro):
    r = astro("--json", "-w", tws, "ztf", "predict", "sim_0000", "sim_0000", "--model", "sim_classifier")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["alerts"] == len(pd.read_parquet(tws / "ztf" / "alerts" / "sim_0000_alerts.parquet"))
    # a file given twice, and once more inside its folder, is read once
    from astrotool_ztf import synthetic

    src = synthetic.write_avro(tmp_path / "in" / "night.avro", synthetic.make_alerts(3))
    r = astro("--json", "-w", tws, "ztf", "predict", src, src, src.parent, "--model", "sim_classifier",
              "--name", "night")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["alerts"] == 3


def test_predict_keeps_an_alert_found_in_two_inputs_once(tws, tmp_path, astro):
    from astrotool_ztf import synthetic

    alerts = synthetic.make_alerts(3)
    a = synthetic.write_avro(tmp_path / "tar" / "night.avro", alerts)
    b = synthetic.write_avro(tmp_path / "folder" / "again.avro", alerts)
    r = astro("--json", "-w", tws, "ztf", "predict", a, b.parent, "--model", "sim_classifier")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["alerts"] == 3 and out["repeated"] == 3 and "kept once" in r.stderr
    table = pd.read_parquet(tws / "ztf" / "predictions" / "sim_classifier_alerts.parquet")
    assert len(table) == table["candid"].nunique() == 3


def test_predict_keeps_the_copy_of_a_repeated_alert_that_has_a_prediction(tws, tmp_path, astro):
    import copy

    from astrotool_ztf import synthetic

    alerts = synthetic.make_alerts(3)
    bare = copy.deepcopy(alerts)  # the first alert without stamps: no prediction from this copy
    bare[0]["cutoutScience"] = bare[0]["cutoutTemplate"] = bare[0]["cutoutDifference"] = None
    first = synthetic.write_avro(tmp_path / "a" / "bare.avro", bare)
    second = synthetic.write_avro(tmp_path / "b" / "full.avro", alerts)
    r = astro("--json", "-w", tws, "ztf", "predict", first, second, "--model", "sim_classifier")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["alerts"] == 3 and out["repeated"] == 3 and out["no_prediction"] == 0


def test_predict_says_why_no_input_could_be_ingested(tws, tmp_path, astro):
    from astrotool_ztf import synthetic

    src = synthetic.write_avro(tmp_path / "night.avro", synthetic.make_alerts(2))
    assert astro("-w", tws, "ztf", "ingest", src).returncode == 0
    r = astro("-w", tws, "--set", "ztf.ingest.stamp_size=31", "ztf", "predict", src, "--model", "sim_classifier")
    assert r.returncode == 2 and "Traceback" not in r.stderr   # refused before any work (it was an item failure)
    assert "no alert file could be read" not in r.stderr   # the hint keeps the --set it was given
    assert f"astro -w {tws} --set ztf.ingest.stamp_size=31 ztf ingest --overwrite" in r.stderr


def test_predict_refuses_stamps_smaller_than_the_model_s_crop_naming_the_stamp_file(tws, tmp_path, astro):
    """A crop-21 model on 15-px stamps: a bare ValueError, exit 1, naming no file."""
    from astrotool_ztf import synthetic

    src = synthetic.write_avro(tmp_path / "night.avro", synthetic.make_alerts(2))
    r = astro("-w", tmp_path / "small", "--set", "ztf.ingest.stamp_size=15", "ztf", "predict", src, "--model",
              tws / "ztf/models/sim_classifier")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "night_stamps.h5: stamps of 15 px; the model crops 21 px (ingest again with ztf.ingest.stamp_size = 21 " \
           "or more)" in r.stderr, r.stderr


def test_predict_refuses_to_replace_predictions_of_other_inputs(tws, tmp_path, astro):
    """predict B after predict A with the same model replaced A's predictions without a word."""
    from astrotool_ztf import synthetic

    other = synthetic.write_avro(tmp_path / "night.avro", synthetic.make_alerts(3))
    run = ("-w", tws, "ztf", "predict")
    out = tws / "ztf" / "predictions" / "sim_classifier_alerts.parquet"
    assert astro(*run, "sim_0000", "--model", "sim_classifier").returncode == 0
    first = pd.read_parquet(out)
    assert astro(*run, "sim_0000", "--model", "sim_classifier").returncode == 0  # the same inputs: made alike
    pd.testing.assert_frame_equal(pd.read_parquet(out), first)
    err = _error(astro(*run, other, "--model", "sim_classifier"))
    assert "sim_classifier_alerts.parquet" in err and "--overwrite" in err and "--name" in err
    pd.testing.assert_frame_equal(pd.read_parquet(out), first)
    assert astro(*run, other, "--model", "sim_classifier", "--name", "b").returncode == 0
    assert astro("-w", tws, "--overwrite", "ztf", "predict", other, "--model", "sim_classifier").returncode == 0
    assert set(pd.read_parquet(out)["source"]) == {"night_alerts.parquet"}


def test_predict_again_after_the_inputs_were_ingested_again_is_made_alike(tws, tmp_path, astro):
    """The record held the alert table's checksum, provenance time included: ingesting the same file again
    (or predict --overwrite, which re-ingested it) made a plain rerun refused."""
    from astrotool_ztf import synthetic

    src = synthetic.write_avro(tmp_path / "night.avro", synthetic.make_alerts(3))
    run = ("-w", tws, "ztf", "predict", src, "--model", "sim_classifier")
    table = tws / "ztf" / "alerts" / "night_alerts.parquet"
    assert astro(*run).returncode == 0
    assert astro("-w", tws, "--overwrite", "ztf", "ingest", src).returncode == 0
    r = astro(*run)
    assert r.returncode == 0, r.stderr
    ingested = table.stat().st_mtime_ns
    assert astro("-w", tws, "--overwrite", *run[2:]).returncode == 0  # replaces the predictions only
    assert table.stat().st_mtime_ns == ingested
    r = astro(*run)
    assert r.returncode == 0, r.stderr


def test_predict_of_a_changed_input_says_to_ingest_it_again(tws, tmp_path, astro):
    """predict --overwrite no longer re-ingests: its refusal of a changed input said only 'use --overwrite'."""
    from astrotool_ztf import synthetic

    src = synthetic.write_avro(tmp_path / "night.avro", synthetic.make_alerts(3))
    run = ("-w", tws, "ztf", "predict", src, "--model", "sim_classifier")
    assert astro(*run).returncode == 0
    synthetic.write_avro(src, synthetic.make_alerts(4))
    for r in (astro(*run), astro("-w", tws, "--overwrite", *run[2:])):
        assert r.returncode != 0 and "Traceback" not in r.stderr
        assert f"astro -w {tws} ztf ingest --overwrite {src}" in r.stderr
    assert astro("-w", tws, "--overwrite", "ztf", "ingest", src).returncode == 0
    r = astro("-w", tws, "--overwrite", *run[2:])
    assert r.returncode == 0, r.stderr


def test_predict_of_a_moved_input_is_made_again_alike(tws, tmp_path, astro):
    from astrotool_ztf import synthetic

    src = synthetic.write_avro(tmp_path / "in" / "night.avro", synthetic.make_alerts(3))
    run = ("-w", tws, "ztf", "predict", "--model", "sim_classifier", "--name", "moved")
    assert astro(*run, src).returncode == 0
    moved = tmp_path / "elsewhere" / "in"
    moved.parent.mkdir()
    src.parent.rename(moved)   # the same alerts in a folder moved: the same input
    r = astro(*run, moved / "night.avro")
    assert r.returncode == 0, r.stderr
    assert not list((tws / "ztf" / "alerts").glob("*_night_alerts.parquet"))
    (moved / "night.avro").rename(moved / "renamed.avro")   # another table of the same alerts: the same input
    r = astro(*run, moved / "renamed.avro")
    assert r.returncode == 0, r.stderr
    assert (tws / "ztf" / "alerts" / "renamed_alerts.parquet").exists()


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
    # a file whose one alert lacks a stamp (ZTF ships one alert a file): refused as "no decodable stamp" before
    one = _fink_dump(tmp_path / "fink_one.parquet", n=1, blank=(0,))
    r = astro("--json", "-w", tws, "ztf", "predict", one, "--model", "sim_classifier", "--name", "one")
    assert r.returncode == 0 and json.loads(r.stdout)["incomplete_stamps"] == 1, r.stderr
    none = _fink_dump(tmp_path / "fink_none.parquet", n=1, blank=(0,),
                      stamps=("cutoutScience", "cutoutTemplate", "cutoutDifference"))
    r = astro("-w", tws, "ztf", "ingest", none)
    assert r.returncode == 2 and "none of the 1 alerts has a usable FITS stamp" in r.stderr, r.stderr


@pytest.mark.skipif(not FINK.exists(), reason=f"no {FINK}")
def test_predict_of_a_new_file_says_what_ingest_says_of_it(tws, tmp_path, astro):
    """predict ingested the file but hid the warnings `ztf ingest` gives (missing xpos/ypos, blank stamps)."""
    dump = _fink_dump(tmp_path / "fink_w.parquet", drop=("xpos", "ypos"), blank=(1,))
    r = astro("-w", tws, "ztf", "predict", dump, "--model", "sim_classifier")
    assert r.returncode == 0, r.stderr
    said = [line for line in r.stderr.splitlines() if "fink_w.parquet" in line]
    assert any("xpos, ypos (an edge stamp is centred)" in line for line in said), r.stderr
    assert any("1 alert(s) with missing, undecodable or blank stamps" in line for line in said), r.stderr


@pytest.mark.skipif(not FINK.exists(), reason=f"no {FINK}")
def test_the_predict_summary_counts_classes_of_predicted_alerts_only(tws, tmp_path, astro):
    """The summary's ``classes`` counted the alerts with no prediction under the key '' (no_prediction counts
    them)."""
    dump = _fink_dump(tmp_path / "fink_n.parquet", n=20, blank=(0, 1, 2, 3, 4, 5, 6, 7, 8, 9),
                      stamps=("cutoutScience", "cutoutTemplate", "cutoutDifference"))
    r = astro("--json", "-w", tws, "ztf", "predict", dump, "--model", "sim_classifier")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert "" not in out["classes"] and sum(out["classes"].values()) == out["alerts"] - out["no_prediction"] == 10
    objects = pd.read_parquet(tws / "ztf" / "predictions" / "sim_classifier_objects.parquet")
    assert (objects["class_first_alert"] == "").sum() == 10


def test_per_object_gives_no_first_alert_class_when_the_first_alert_has_no_prediction():
    """class_first_alert was the class of the first *predicted* alert (here a's second, SN)."""
    from astrotool_ztf.predict import per_object

    alerts = pd.DataFrame({"objectId": ["a", "a", "b"], "candid": [1, 2, 3], "jd": [2.0, 1.0, 1.0],
                           "p_SN": [0.9, np.nan, 0.2], "p_VS": [0.1, np.nan, 0.8]})
    objects = per_object(alerts, ["SN", "VS"]).set_index("objectId")
    assert objects.loc["a", "class_first_alert"] == "" and objects.loc["a", "class"] == "SN"
    assert objects.loc["b", "class_first_alert"] == "VS"


def test_predict_under_shard_the_task_that_finishes_last_writes_one_table(tws, tmp_path, astro):
    """Task 0/2 predicts its file and waits; task 1/2 writes the one table, alike a run without --shard (an object
    whose alerts fell to both tasks has one row), and removes the parts; a task rerun keeps the table made with
    the same settings and refuses other settings, as without --shard."""
    from astrotool_ztf import synthetic

    alerts = synthetic.make_alerts(4)
    for a in alerts[:3]:
        a["objectId"] = "ZTF99shared"
    files = _two_files(tmp_path, alerts)
    out = tws / "ztf" / "predictions"

    def run(*opts, name="sharded"):
        return _predict(astro, tws, files, name, *opts)

    r = run("--shard", "0/2")
    assert "1 of 2 input(s) done" in r.stderr and "the task that finishes last writes" in r.stderr, r.stderr
    assert not list(out.glob("sharded_*")) and json.loads(r.stdout)["outputs"] == []
    r = run("--shard", "1/2")
    assert len(json.loads(r.stdout)["outputs"]) == 4 and not (out / ".parts").exists()
    run(name="whole")
    for kind in ("alerts", "objects"):
        pd.testing.assert_frame_equal(pd.read_parquet(out / f"sharded_{kind}.parquet"),
                                      pd.read_parquet(out / f"whole_{kind}.parquet"))
    objects = pd.read_parquet(out / "sharded_objects.parquet").set_index("objectId")
    assert objects["n_alerts"].to_dict() == {"ZTF99shared": 3, alerts[3]["objectId"]: 1}
    r = run("--shard", "3/4")   # a task with no input, after the table was written: kept
    assert json.loads(r.stdout)["kept"] and "nothing to do" in r.stderr, r.stderr
    r = astro("-w", tws, "--shard", "0/2", "ztf", "predict", *files, "--model", "sim_classifier", "--name", "sharded",
              "--autoencoder", "sim_vae")
    assert "made with other inputs, model, autoencoder" in _error(r)


def test_predict_under_shard_writes_the_table_without_a_failed_file_until_its_task_is_rerun(tws, tmp_path, astro):
    from astrotool_ztf import synthetic

    alerts = synthetic.make_alerts(4)
    good, bad = synthetic.write_avro(tmp_path / "a.avro", alerts[:2]), tmp_path / "b.avro"
    bad.write_bytes(b"not avro")
    out = tws / "ztf" / "predictions"

    def task(shard):
        return astro("--json", "-w", tws, "--shard", shard, "ztf", "predict", good, bad, "--model", "sim_classifier")

    assert task("1/2").returncode == 2 and task("0/2").returncode == 0
    assert len(pd.read_parquet(out / "sim_classifier_alerts.parquet")) == 2 and (out / ".parts").exists()
    synthetic.write_avro(bad, alerts[2:])   # mended: the rerun of its task writes the whole table
    assert task("1/2").returncode == 0
    assert len(pd.read_parquet(out / "sim_classifier_alerts.parquet")) == 4 and not (out / ".parts").exists()


def test_per_object_orders_alerts_of_the_same_jd_by_candid_whatever_the_row_order():
    """Two alerts of one jd: class_first_alert was that of whichever row came first (an unstable sort)."""
    from astrotool_ztf.predict import per_object

    alerts = pd.DataFrame({"objectId": ["a"] * 4, "candid": [7, 3, 5, 1], "jd": [1.0, 1.0, 2.0, np.nan],
                           "p_SN": [0.9, 0.2, 0.5, 0.9], "p_VS": [0.1, 0.8, 0.5, 0.1]})
    for seed in range(4):
        shuffled = alerts.sample(frac=1, random_state=seed)
        assert per_object(shuffled, ["SN", "VS"]).loc[0, "class_first_alert"] == "VS"   # candid 3, not 7 nor 1


def _two_files(tmp_path, alerts=None, a=slice(0, 2), b=slice(2, None)):
    """Two Avro files, a.avro and b.avro, of the ``a`` and ``b`` slices of ``alerts`` (default: 4 simulated)."""
    from astrotool_ztf import synthetic

    alerts = synthetic.make_alerts(4) if alerts is None else alerts
    return [synthetic.write_avro(tmp_path / "a.avro", alerts[a]), synthetic.write_avro(tmp_path / "b.avro",
                                                                                        alerts[b])]


def _predict(astro, tws, files, name, *opts):
    """``astro --json -w tws OPTS ztf predict FILES --model sim_classifier --name NAME``, which must succeed."""
    r = astro("--json", "-w", tws, *opts, "ztf", "predict", *files, "--model", "sim_classifier", "--name", name)
    assert r.returncode == 0, r.stderr
    return r


def test_a_lone_overwrite_task_after_the_table_was_written_replaces_its_share(tws, tmp_path, astro):
    """--overwrite --shard 0/2 once the table was written: it predicted into a part that nothing ever merged (the
    other task's part was gone), said the task that finishes last writes the table, and left the part."""
    files = _two_files(tmp_path)
    out = tws / "ztf" / "predictions"

    def run(*opts):
        return json.loads(_predict(astro, tws, files, "lone", *opts).stdout)

    run("--shard", "0/2")
    assert len(run("--shard", "1/2")["outputs"]) == 4
    whole = pd.read_parquet(out / "lone_alerts.parquet")
    r = run("--overwrite", "--shard", "0/2")
    assert len(r["outputs"]) == 4 and r["predicted_inputs"] == 1 and r["predicted_alerts"] == 2 and r["alerts"] == 4
    assert not (out / ".parts").exists()
    pd.testing.assert_frame_equal(pd.read_parquet(out / "lone_alerts.parquet"), whole)
    assert run("--shard", "1/2")["kept"]


def test_shard_tables_stand_in_only_for_whole_inputs_and_keep_the_inputs_order(tws, tmp_path, astro):
    """An alert in two inputs is kept once in the table, so the table could not stand in for the input whose copy
    it dropped: its part was removed all the same, and a later task took that input's rows, one short, from the
    table. A lone task that took the other input's rows from the table put them after its own (not in the order of
    a run without --shard)."""
    files = _two_files(tmp_path, a=slice(0, 3))   # alert 2 in both
    out = tws / "ztf" / "predictions"

    def run(*opts, name="dup"):
        return json.loads(_predict(astro, tws, files, name, *opts).stdout)

    run("--shard", "0/2")
    assert run("--shard", "1/2")["repeated"] == 1
    assert len(list((out / ".parts" / "dup").glob("*.parquet"))) == 1   # b's: its copy of the alert was dropped
    run(name="whole")
    whole = pd.read_parquet(out / "whole_alerts.parquet")
    for shard in ("1/2", "0/2"):   # the other input's rows: from the table (a's), from b's part
        r = run("--overwrite", "--shard", shard)
        assert r["alerts"] == 4 and r["repeated"] == 1, r
        pd.testing.assert_frame_equal(pd.read_parquet(out / "dup_alerts.parquet"), whole)
    assert run("--shard", "0/2")["kept"]   # a's: the table holds it
    assert "kept" not in run("--shard", "1/2")   # b's: the table could not stand in for it, its part could
    pd.testing.assert_frame_equal(pd.read_parquet(out / "dup_alerts.parquet"), whole)


def test_parts_of_another_version_are_not_merged(tws, tmp_path, monkeypatch):
    """A run's parts carried no code version: an upgrade merged the parts of an unfinished run."""
    import astrotool_ztf
    from tests.conftest import run_astro_here

    files = _two_files(tmp_path)

    def run(shard):   # in this process: the version patched below is the one predict reads
        r = run_astro_here("--json", "-w", tws, "--shard", shard, "ztf", "predict", *files, "--model",
                           "sim_classifier")
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)

    run("0/2")
    monkeypatch.setattr(astrotool_ztf, "__version__", "99.0")
    assert run("1/2")["outputs"] == []   # 0/2's part is of the older version: waits for 0/2 again
    assert len(run("0/2")["outputs"]) == 4


def test_the_anomaly_score_of_predict_is_the_reconstruction_error_of_embed(tws, astro):
    r = astro("-w", tws, "ztf", "predict", "sim_0000", "--model", "sim_classifier", "--autoencoder", "sim_vae")
    assert r.returncode == 0, r.stderr
    alerts = pd.read_parquet(tws / "ztf" / "predictions" / "sim_classifier_alerts.parquet")
    assert alerts["recon_error"].notna().all() and (alerts["recon_error"] > 0).all()
    assert astro("-w", tws, "--seed", 1, "ztf", "embed", "--model", "sim_vae", "--split", "test").returncode == 0
    emb = pd.read_parquet(next((tws / "ztf" / "embeddings").glob("sim_vae_sim_test*.parquet")))
    both = emb.merge(alerts.sort_values("jd").drop_duplicates("objectId"), on="objectId", suffixes=("_e", "_p"))
    assert len(both) > 0
    np.testing.assert_allclose(both["recon_error_e"], both["recon_error_p"], rtol=1e-5)


def test_predictions_and_embeddings_carry_units_and_descriptions(tws, capsys):
    """jd had no unit and p_*, p_max, recon_error, umap_*, z* no description."""
    from astropy.table import Table

    code, _, err = _main(capsys, "-w", tws, "ztf", "predict", "sim_0000", "--model", "sim_classifier",
                         "--autoencoder", "sim_vae")
    assert code == 0, err
    alerts = Table.read(tws / "ztf" / "predictions" / "sim_classifier_alerts.parquet")
    assert str(alerts["jd"].unit) == "d" and "Julian date" in alerts["jd"].description
    for column in ("p_AGN", "p_max", "class", "recon_error"):
        assert alerts[column].description, column
    objects = Table.read(tws / "ztf" / "predictions" / "sim_classifier_objects.parquet")
    assert all(objects[c].description for c in ("p_AGN", "class_first_alert", "n_alerts"))
    code, out, err = _main(capsys, "--json", "-w", tws, "--seed", 1, "ztf", "embed", "--model", "sim_vae")
    assert code == 0, err
    embedding = Table.read(json.loads(out)["parquet"])
    assert all(embedding[c].description for c in ("umap_1", "umap_2", "recon_error", "z0", "z20", "objectId"))


def test_commands_that_run_a_model_honour_the_ml_accelerator_of_the_configuration(tws, astro):
    """``ml.accelerator`` set in a configuration file: predict, evaluate and embed ran on the CPU regardless."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("needs a machine without CUDA: the refusal shows the setting was read")
    cfg = tws / "gpu.toml"
    cfg.write_text('[ml]\naccelerator = "cuda"\n')
    for cmd in (("predict", "sim_0000", "--model", "sim_classifier"), ("evaluate", "--model", "sim_classifier"),
                ("evaluate", "--model", "sim_vae"), ("embed", "--model", "sim_vae")):
        r = astro("-w", tws, "--seed", 1, "--cfg", cfg, "ztf", *cmd)
        assert r.returncode == 2 and "CUDA was asked for" in r.stderr, (cmd, r.stderr[-400:])
        assert astro("-w", tws, "--seed", 1, "--cfg", cfg, "ztf", *cmd, "--device", "cpu").returncode == 0


def test_predict_runs_the_onnx_export_and_refuses_a_stale_one(tws, astro):
    """`ztf export` wrote model.onnx that predict could not run; lens predict has had --engine onnxruntime."""
    run = ("--json", "-w", tws, "ztf", "predict", "sim_0000", "--model", "sim_classifier")
    mdir = tws / "ztf" / "models" / "sim_classifier"
    err = _error(astro(*run, "--engine", "onnxruntime"))
    assert "model.onnx" in err and f"astro -w {tws} ztf export --model sim_classifier" in err   # not exported yet
    assert astro("-w", tws, "ztf", "export", "--model", "sim_classifier").returncode == 0
    r = astro(*run)
    assert r.returncode == 0, r.stderr
    torch_p = pd.read_parquet(tws / "ztf" / "predictions" / "sim_classifier_alerts.parquet")
    r = astro(*run, "--engine", "onnxruntime")   # its own tables, as lens predict's: the torch run's kept
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["engine"] == "onnxruntime"
    onnx_p = pd.read_parquet(tws / "ztf" / "predictions" / "sim_classifier_onnx_alerts.parquet")
    cols = [c for c in torch_p if c.startswith("p_")]
    assert np.allclose(onnx_p[cols].to_numpy(float), torch_p[cols].to_numpy(float), atol=1e-5)
    assert (onnx_p["class"] == torch_p["class"]).all()
    pd.testing.assert_frame_equal(pd.read_parquet(tws / "ztf" / "predictions" / "sim_classifier_alerts.parquet"),
                                  torch_p)
    # a checkpoint whose temperature changed since the export: the export is refused, naming it
    meta = json.loads((mdir / "model.json").read_text())
    (mdir / "model.json").write_text(json.dumps({**meta, "temperature": meta["temperature"] * 2}))
    err = _error(astro(*run, "--engine", "onnxruntime", "--name", "stale"))
    assert "model.onnx" in err and "temperature" in err and f"astro -w {tws} ztf export --model sim_classifier" in err
    assert not (tws / "ztf" / "predictions" / "stale_onnx_alerts.parquet").exists()
    for bad in (-1.0, 0, "1.5"):   # a negative temperature turned the classes' ranking over; 0 gave NaN
        (mdir / "model.json").write_text(json.dumps({**meta, "temperature": bad}))
        err = _error(astro(*run, "--name", "bad"))
        assert f"temperature {bad!r} is not a positive number" in err, err
