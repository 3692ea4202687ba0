"""A new user's review of ``astro ztf`` on the shared Fink alerts with SIMBAD types: each test failed before its
fix."""

from __future__ import annotations

import json
import shutil

import pytest

SHARED = __import__("tests.conftest", fromlist=["SHARED"]).SHARED / "data" / "ztf"
SIMBAD = SHARED / "fink_simbad_part2.parquet"
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

    ws = tmp_path_factory.mktemp("ztf_round3") / "ws"
    for args in (("ztf", "ingest", SIMBAD), (*LABELS, "ztf", "prepare", "--name", "real4", "fink_simbad_part2"),
                 ("ztf", "train", "--dataset", "real4", "--epochs", 1, "--seeds", "0,1")):
        r = run_astro("-w", ws, *args)
        assert r.returncode == 0, r.stderr
    return ws


@pytest.fixture
def ws(real, tmp_path):
    """A copy of the workspace the test may change."""
    shutil.copytree(real, tmp_path / "ws")
    return tmp_path / "ws"


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


def test_absent_classes_list_the_classes_found_not_raw_label_values(ws, astro):
    """The hold-out warning listed `**, AGN, C*, ...`: SIMBAD types left out, not classes."""
    r = astro("-w", ws, *LABELS, "--set", "ztf.prepare.holdout=true", "--set", 'ztf.prepare.classes=["AGN","bogus"]',
              "ztf", "prepare", "--name", "ho", "fink_simbad_part2")
    assert r.returncode == 0, r.stderr
    err = " ".join(r.stderr.split())
    assert "the classes found: AGN, SN, VS (and " in err and "other label value(s), not mapped" in err, err
    assert "C*" not in err and "**" not in err
