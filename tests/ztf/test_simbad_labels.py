"""``astro ztf`` prepare, train and evaluate on the shared Fink alerts labelled by their SIMBAD types, which
hold 3 of the 5 default classes: the absent classes, damaged weights, seeds, and the descriptions of the alert
table's columns.

These tests share one workspace of those alerts (``real``): ``ws`` here is a copy of it, not of the simulated
workspace of ``tests/ztf/conftest.py``."""

from __future__ import annotations

import json

import pytest

from tests.ztf.conftest import SHARED_ZTF, copy_workspace

SIMBAD = SHARED_ZTF / "fink_simbad_part2.parquet"
pytestmark = pytest.mark.skipif(not SIMBAD.is_file(), reason=f"no {SIMBAD}")

LABELS = ("--set", "ztf.prepare.label_column=cdsxmatch",
          "--set", 'ztf.prepare.label_map={QSO="AGN","V*?"="VS","Candidate_SN*"="SN",EllipVar="VS"}')
"""SIMBAD types of the shared alerts -> classes: the tables hold AGN, SN and VS, no asteroid and no bogus."""


def _error(r):
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    return " ".join(r.stderr.split())


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    """A workspace with the shared SIMBAD-typed alerts ingested and the set ``real4`` (default classes)."""
    from tests.conftest import run_astro_here as run_astro

    ws = tmp_path_factory.mktemp("ztf_simbad") / "ws"
    for args in (("ztf", "ingest", SIMBAD), (*LABELS, "ztf", "prepare", "--name", "real4", "fink_simbad_part2"),
                 ("ztf", "train", "--dataset", "real4", "--epochs", 1, "--seeds", "0,1")):
        r = run_astro("-w", ws, *args)
        assert r.returncode == 0, r.stderr
    return ws


@pytest.fixture
def ws(real, tmp_path):
    """A copy of the workspace ``real`` the test may change."""
    return copy_workspace(real, tmp_path)


def test_default_classes_that_no_alert_holds_are_warned_about_by_prepare_and_train(ws, astro):
    """The set listed 5 classes while its tables held 3, and train fitted a 5-class model, both silently."""
    r = astro("-w", ws, *LABELS, "--overwrite", "ztf", "prepare", "--name", "real4", "fink_simbad_part2")
    assert r.returncode == 0, r.stderr
    err = " ".join(r.stderr.split())
    assert "no alert of the class(es) asteroid, bogus (the default classes" in err, err
    assert "the classes found: AGN, SN, VS" in err and 'ztf.prepare.classes = ["AGN", "SN", "VS"]' in err
    from astrotool_ztf.prepare import StampDataset

    assert StampDataset(ws / "ztf" / "prepared" / "real4").classes == ["AGN", "SN", "VS", "asteroid", "bogus"]
    r = astro("-w", ws, "ztf", "train", "--dataset", "real4", "--epochs", 1, "--model", "m")
    assert r.returncode == 0, r.stderr
    assert "m: no training alert of the class(es) asteroid, bogus in the set real4" in " ".join(r.stderr.split())
    # named in ztf.prepare.classes: refused, as documented
    err = _error(astro("-w", ws, *LABELS, "--set", 'ztf.prepare.classes=["AGN","VS","bogus"]', "ztf", "prepare",
                       "--name", "r3", "fink_simbad_part2"))
    assert "no alert of the class(es) bogus (ztf.prepare.classes)" in err, err
    # no default class at all (no label map): the error alone, not a warning suggesting `classes = []`
    r = astro("-w", ws, "--set", "ztf.prepare.label_column=cdsxmatch", "ztf", "prepare", "--name", "raw",
              "fink_simbad_part2")
    assert r.returncode == 2 and "no alert with a class in" in r.stderr and "classes = []" not in r.stderr, r.stderr


def test_absent_classes_list_the_classes_found_not_raw_label_values(ws, astro):
    """The hold-out warning listed `**, AGN, C*, ...`: SIMBAD types left out, not classes."""
    r = astro("-w", ws, *LABELS, "--set", "ztf.prepare.holdout=true", "--set", 'ztf.prepare.classes=["AGN","bogus"]',
              "ztf", "prepare", "--name", "ho", "fink_simbad_part2")
    assert r.returncode == 0, r.stderr
    err = " ".join(r.stderr.split())
    assert "the classes found: AGN, SN, VS (and " in err and "other label value(s), not mapped" in err, err
    assert "C*" not in err and "**" not in err


def test_evaluate_of_every_model_leaves_out_damaged_weights(ws, astro):
    """A truncated model.safetensors aborted evaluate (exit 2) after other models' reports were rewritten."""
    models, reports = ws / "ztf" / "models", ws / "ztf" / "reports"
    weights = models / "real4_classifier_seed1" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    r = astro("--json", "-w", ws, "ztf", "evaluate", "--dataset", "real4")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert [m["model"] for m in out["models"]] == ["real4_classifier_seed0"]
    assert any(w.startswith("left out real4_classifier_seed1: weights do not match") for w in out["warnings"]), out
    report = reports / "real4_classifier_seed0_real4_test_evaluate.json"
    before = report.stat().st_mtime_ns
    # named with --model: refused before any report is written
    err = _error(astro("-w", ws, "ztf", "evaluate", "--dataset", "real4", "--model", "real4_classifier_seed0",
                       "--model", "real4_classifier_seed1"))
    assert str(weights) in err and "truncated or damaged" in err, err
    assert report.stat().st_mtime_ns == before


def test_evaluate_of_a_named_model_scores_the_set_it_was_trained_on(ws, astro):
    """Without --dataset it scored ztf.train.dataset (sim: none here, exit 2), not the model's set."""
    r = astro("--json", "-w", ws, "ztf", "evaluate", "--model", "real4_classifier_seed0")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["dataset"] == "real4"
    assert "scoring on the set real4, the one real4_classifier_seed0 was trained on" in " ".join(r.stderr.split())
    # --dataset and ztf.evaluate.dataset still choose
    err = _error(astro("-w", ws, "--set", "ztf.evaluate.dataset=nosuch", "ztf", "evaluate", "--model",
                       "real4_classifier_seed0"))
    assert "nosuch" in err


def test_evaluate_of_seeds_with_a_class_absent_from_the_split_is_quiet_in_json_logs(ws, astro):
    """numpy's `RuntimeWarning: Mean of empty slice` (the mean recall of a class no object holds) reached
    stderr, a line that is not JSON under --log-format json."""
    r = astro("--json", "--log-format", "json", "-w", ws, "ztf", "evaluate", "--dataset", "real4")
    assert r.returncode == 0, r.stderr
    assert "RuntimeWarning" not in r.stderr
    for line in r.stderr.splitlines():
        json.loads(line)
    [summary] = json.loads(r.stdout)["summary"]
    assert summary["recall"]["asteroid"]["mean"] is None and summary["models"] == 2


def test_train_says_the_global_seed_is_not_used_with_seeds(ws, astro):
    """--seed was silently ignored when --seeds was given."""
    r = astro("-w", ws, "--seed", 5, "ztf", "train", "--dataset", "real4", "--epochs", 1, "--seeds", "0")
    assert r.returncode == 0, r.stderr
    assert "--seed 5 is not used: --seeds (ztf.train.seeds) 0 gives each model its own seed" in r.stderr
    r = astro("-w", ws, "ztf", "train", "--dataset", "real4", "--epochs", 1, "--seeds", "0")
    assert r.returncode == 0 and "is not used" not in r.stderr


def test_every_candidate_column_of_an_alert_table_has_a_description(real):
    """39 of 76 columns had none (sgscore1..3, classtar, ndethist, rb, drb, field, rcid, fwhm, ...)."""
    import pyarrow.parquet as pq

    from astrotool_ztf.ingest import CANDIDATE_COLUMNS

    schema = pq.read_schema(real / "ztf" / "alerts" / "fink_simbad_part2_alerts.parquet")
    bare = [n for n in ("objectId", "candid", "schemavsn", *(n for n, _ in CANDIDATE_COLUMNS))
            if not (schema.field(n).metadata or {}).get(b"description")]
    assert bare == []
    assert b"PS1" in schema.field("sgscore1").metadata[b"description"]
