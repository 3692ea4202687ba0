"""`astro ztf simulate` (GalSim alerts in the ZTF schema) and `astro ztf prepare` (the training set): their
settings, names, classes and shards, and refusals that keep what was there before."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from astrotool_ztf.ingest import read_stamps
from astrotool_ztf.prepare import (CLIP, FEATURES, StampDataset, assign_splits, crop_centre, features,
                                   normalise_stamps, standardise)
from astrotool_ztf.simulate import CLASSES, PIXEL_SCALE, simulate_objects
from tests.ztf.conftest import AVRO, SHARED_ZTF, SMALL, stamps_source as _source, usage_error as _error

CFG = {"stamp_size": 63, "class_fractions": {c: 1.0 for c in CLASSES}, "alerts_per_object": (1, 3),
       "seeing_fwhm": (1.5, 3.0), "template_depth": 16.0, "psf_mismatch": 0.02, "edge_fraction": 0.0,
       "chunk_size": 10, "n_objects": 10, "name": "t"}
needs_shared = pytest.mark.skipif(not AVRO, reason=f"no sample ZTF alerts in {SHARED_ZTF}")


@pytest.fixture(scope="module")
def alerts():
    return simulate_objects(0, 30, 5, CFG)


def _stamp(alert, which):
    import gzip
    import io

    from astropy.io import fits

    return fits.getdata(io.BytesIO(gzip.decompress(alert[which]["stampData"]))).astype(float)


def _rms(x):
    return 1.4826 * np.median(np.abs(x - np.median(x)))


def _psf_flux(diff, fwhm_px, noise):
    """PSF-fit flux at the stamp centre and its error [ADU]."""
    from astrotool_ztf.simulate import _psf

    p = _psf(fwhm_px * PIXEL_SCALE).drawImage(nx=diff.shape[1], ny=diff.shape[0], scale=PIXEL_SCALE).array
    return (diff * p).sum() / (p * p).sum(), noise / np.sqrt((p * p).sum())


def test_each_class_shows_its_signature_in_the_stamps(alerts):
    seen = set()
    for a in alerts:
        cls, c = a["class"], a["candidate"]
        sci, ref, diff = (_stamp(a, k) for k in ("cutoutScience", "cutoutTemplate", "cutoutDifference"))
        seen.add(cls)
        centre = (slice(28, 35), slice(28, 35))
        sky, noise_ref, noise_diff = np.median(ref), _rms(ref), _rms(diff)
        if cls in ("SN", "asteroid"):  # a new source at the centre of the difference, positive
            flux, err = _psf_flux(diff, c["fwhm"], noise_diff)
            assert c["isdiffpos"] == "t" and flux > 3 * err
        if cls == "asteroid":  # nothing at its place in the template
            assert ref[centre].mean() - sky < 3 * noise_ref
        if cls == "VS":  # the star is in the template
            assert ref[centre].max() - sky > 20 * noise_ref
        if cls != "bogus":  # every alert is a 5-sigma detection with a consistent magnitude limit
            assert c["magpsf"] < c["diffmaglim"] + 0.3
            assert c["sigmapsf"] <= 1.0857 / 5 + 1e-6
    assert seen == set(CLASSES)


def test_magpsf_measures_the_difference_flux(alerts):
    # PSF-weighted flux of the difference stamp against magpsf, for real transients
    errs = []
    for a in alerts:
        if a["class"] == "bogus":
            continue
        diff = _stamp(a, "cutoutDifference")
        flux, _ = _psf_flux(diff, a["candidate"]["fwhm"], _rms(diff))
        m = a["candidate"]["magzpsci"] - 2.5 * np.log10(abs(flux))
        errs.append(m - a["candidate"]["magpsf"])
    assert abs(np.median(errs)) < 0.15 and np.percentile(np.abs(errs), 80) < 0.5


def test_objects_do_not_depend_on_how_they_are_split(alerts):
    again = simulate_objects(10, 20, 5, CFG)
    same = [a for a in alerts if a["objectId"] in {b["objectId"] for b in again}]
    assert [a["candid"] for a in same] == [b["candid"] for b in again]
    assert all(a["cutoutDifference"]["stampData"] == b["cutoutDifference"]["stampData"] for a, b in zip(same, again))
    # sequences: time-ordered, with the earlier alerts as history
    multi = [a for a in alerts if a["prv_candidates"]]
    assert multi and all(a["candidate"]["jd"] > max(p["jd"] for p in a["prv_candidates"]) for a in multi)


def test_simulate_ingests_keeps_and_refuses_changed_settings(tmp_path, astro):
    ws = tmp_path / "ws"
    r = astro("--json", "-w", ws, "--seed", 2, "--set", "ztf.simulate.chunk_size=6", "--set",
              "ztf.simulate.edge_fraction=0.25", "ztf", "simulate", "-n", 12)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["files"] == 2 and out["written"] == 2 and out["objects"] == 12
    table = pd.concat(pd.read_parquet(p) for p in sorted((ws / "ztf" / "alerts").glob("sim_*_alerts.parquet")))
    assert set(table["class"]) <= set(CLASSES) and len(table) == out["alerts"]
    from astrotool.io.tables import parquet_provenance

    made = parquet_provenance(ws / "ztf" / "simulated" / "sim_0000.parquet")   # the seed and settings in the file
    assert made["command"] == "ztf simulate" and made["seed"] == 2
    assert made["config"]["ztf"]["simulate"]["edge_fraction"] == 0.25
    stamps = read_stamps(ws / "ztf" / "stamps" / "sim_0000_stamps.h5")
    edge = table["stamps_resized"].to_numpy()[: len(stamps["candid"])]
    assert edge.any() and np.isnan(stamps["science"][edge]).any() and not np.isnan(stamps["science"][~edge]).any()
    fewer = astro("--json", "-w", ws, "--seed", 2, "--set", "ztf.simulate.chunk_size=6", "--set",
                  "ztf.simulate.edge_fraction=0.25", "ztf", "simulate", "-n", 6)
    assert fewer.returncode == 2 and "--overwrite" in fewer.stderr  # removing files needs --overwrite
    assert (ws / "ztf" / "alerts" / "sim_0001_alerts.parquet").exists()
    again = astro("--json", "-w", ws, "--seed", 2, "--overwrite", "--set", "ztf.simulate.chunk_size=6", "--set",
                  "ztf.simulate.edge_fraction=0.25", "ztf", "simulate", "-n", 6)
    assert again.returncode == 0 and json.loads(again.stdout)["files"] == 1
    assert not (ws / "ztf" / "alerts" / "sim_0001_alerts.parquet").exists()  # a smaller run leaves no extra file
    bad = astro("--json", "-w", ws, "--seed", 2, "--set", "ztf.simulate.chunk_size=6", "ztf", "simulate", "-n", 6)
    assert bad.returncode == 2 and "edge_fraction" in bad.stderr and "--overwrite" in bad.stderr


def test_normalisation_crop_and_nan_mask():
    rng = np.random.default_rng(0)
    sci = rng.normal(100, 5, (2, 63, 63))
    sci[1, :, :20] = np.nan  # an edge stamp
    x = normalise_stamps(*(crop_centre(a, 21) for a in (sci, sci * 2 + 7, sci - 100)))
    assert x.shape == (2, 4, 21, 21) and x.dtype == np.float32
    assert np.allclose(x[0, :3].min(axis=(1, 2)), 0) and np.allclose(x[0, :3].max(axis=(1, 2)), 1)
    assert np.allclose(x[0, 0], x[0, 1], atol=1e-6)  # a linear change of an image does not change it
    assert x[0, 3].sum() == 0
    full = normalise_stamps(sci, sci, sci)
    assert full[1, 3, :, :20].all() and not full[1, 3, :, 20:].any() and (full[1, 0, :, :20] == 0).all()
    assert np.array_equal(crop_centre(np.arange(63 * 63).reshape(63, 63), 21),
                          np.arange(63 * 63).reshape(63, 63)[21:42, 21:42])


def test_features_clip_fill_and_derive():
    t = pd.DataFrame({"ra": [266.405, 10.0], "dec": [-28.936, 20.0], "sgscore1": [-999.0, 0.7],
                      "distpsnr1": [np.nan, 2.0], "ndethist": [50, 3], "ncovhist": [5000, 10], "fwhm": [12.0, 2.0],
                      "isdiffpos": [True, False], "chinr": [30.0, None], "sharpnr": [0.1, -5.0]})
    f = features(t)
    col = {n: f[:, i] for i, n in enumerate(FEATURES)}
    assert f.shape == (2, 23)
    assert col["sgscore1"][0] == -1 and col["distpsnr1"][0] == -1 and col["sgscore1"][1] == np.float32(0.7)
    assert col["ndethist"][0] == 20 and col["ncovhist"][0] == 3000 and col["fwhm"][0] == 10
    assert col["non_detections"][0] == 2000 and col["non_detections"][1] == 7
    assert col["isdiffpos"].tolist() == [1.0, 0.0] and col["chinr"].tolist() == [15.0, -1.0]
    assert col["sharpnr"][1] == -1
    assert abs(col["gal_lat"][0]) < 0.1  # Sgr A*
    assert CLIP["sharpnr"] == (-1, 1.5)
    assert np.isnan(col["magpsf"]).all()  # missing, no clip floor: imputed with the training mean when z-scored
    assert standardise(np.array([[np.nan, 2.0]]), [1.0, 1.0], [1.0, 2.0]).tolist() == [[0.0, 0.5]]


def test_splits_are_balanced_by_object_and_fixed_by_seed():
    objects = np.repeat([f"o{i}" for i in range(60)], 2)
    labels = np.repeat(np.arange(60) % 3, 2)
    s = assign_splits(objects, labels, n_val=4, n_test=5, seed=1)
    assert s == assign_splits(objects, labels, n_val=4, n_test=5, seed=1)
    assert s != assign_splits(objects, labels, n_val=4, n_test=5, seed=2)
    for c in range(3):
        mine = [s[o] for o in np.unique(objects[labels == c])]
        assert mine.count("test") == 5 and mine.count("val") == 4


def test_prepare_writes_a_set_and_refuses_a_bad_table(tmp_path, astro):
    ws = tmp_path / "ws"
    assert astro("--json", "-w", ws, "--seed", 4, "ztf", "simulate", "-n", 30).returncode == 0
    r = astro("--json", "-w", ws, "--seed", 4, "--set", "ztf.prepare.val_per_class=2", "--set",
              "ztf.prepare.test_per_class=2", "ztf", "prepare", "--crop", "33")
    assert r.returncode == 0, r.stderr
    ds = StampDataset(ws / "ztf" / "prepared" / "sim")
    assert ds.arrays["stamps"][0] == (4, 33, 33) and ds.classes == list(CLASSES)
    meta = ds.metadata(["objectId", "split", "alert_index", "n_alerts", "jd"])
    frame = pd.DataFrame(meta)
    assert (frame.groupby("objectId")["split"].nunique() == 1).all()  # an object never straddles splits
    first = frame[frame.alert_index == 0].set_index("objectId")["jd"]
    assert (frame.groupby("objectId")["jd"].min() == first).all()
    assert len(ds.attrs["feature_mean"]) == 23
    kept = astro("--json", "-w", ws, "--seed", 4, "--set", "ztf.prepare.val_per_class=2", "--set",
                 "ztf.prepare.test_per_class=2", "ztf", "prepare", "--crop", "33")
    assert kept.returncode == 0 and json.loads(kept.stdout)["kept"]
    changed = astro("--json", "-w", ws, "--seed", 4, "ztf", "prepare", "--crop", "21")
    assert changed.returncode == 2 and "crop" in changed.stderr
    # the same alert table's name, other alerts (simulated again): refused, not the old set kept
    src = ws / "ztf" / "alerts" / "sim_0000_alerts.parquet"
    table = pd.read_parquet(src)
    table.assign(magpsf=table["magpsf"] + 0.5).to_parquet(src)
    other = astro("--json", "-w", ws, "--seed", 4, "--set", "ztf.prepare.val_per_class=2", "--set",
                  "ztf.prepare.test_per_class=2", "ztf", "prepare", "--crop", "33")
    assert other.returncode == 2 and "inputs.sim_0000_alerts.parquet: " in other.stderr, other.stderr
    table.to_parquet(src)
    # an alert table without the label column
    pd.read_parquet(src).drop(columns=["class"]).to_parquet(ws / "ztf" / "alerts" / "nolabel_alerts.parquet")
    (ws / "ztf" / "stamps" / "nolabel_stamps.h5").write_bytes(
        (ws / "ztf" / "stamps" / "sim_0000_stamps.h5").read_bytes())
    bad = astro("--json", "-w", ws, "ztf", "prepare", "nolabel", "--name", "other")
    assert bad.returncode == 2 and "nolabel_alerts.parquet" in bad.stderr and "label column 'class'" in bad.stderr
    assert not (ws / "ztf" / "prepared" / "other").exists()
    again = astro("-w", ws, "--overwrite", "ztf", "prepare", "nolabel", "--crop", "33")
    assert again.returncode == 2 and StampDataset(ws / "ztf" / "prepared" / "sim").n == ds.n  # the old set is kept


def test_an_alert_in_two_inputs_is_prepared_once(tmp_path, astro):
    ws = tmp_path / "ws"
    assert astro("-w", ws, "--seed", 6, "ztf", "simulate", "-n", 20).returncode == 0
    for suffix in ("_alerts.parquet", "_stamps.h5"):  # the same alerts again, e.g. a broker dump of the night
        src = ws / "ztf" / ("alerts" if "alerts" in suffix else "stamps") / f"sim_0000{suffix}"
        (src.parent / f"copy{suffix}").write_bytes(src.read_bytes())
    r = astro("--json", "-w", ws, "--seed", 6, "--set", "ztf.prepare.val_per_class=1", "--set",
              "ztf.prepare.test_per_class=1", "ztf", "prepare", "sim_*", "copy")
    assert r.returncode == 0, r.stderr
    n_alerts = len(pd.read_parquet(ws / "ztf" / "alerts" / "sim_0000_alerts.parquet"))
    assert f"{n_alerts} repeated alert(s) (the same candid, in one input or several) kept once" in r.stderr
    meta = pd.DataFrame(StampDataset(ws / "ztf" / "prepared" / "sim").metadata(["candid", "objectId", "alert_index"]))
    assert len(meta) == n_alerts and meta["candid"].is_unique
    assert (meta.groupby("objectId")["alert_index"].max() + 1 == meta.groupby("objectId").size()).all()


def test_quasars_are_star_like_and_hosted_agn_are_not(alerts):
    agn = [a["candidate"] for a in alerts if a["class"] == "AGN"]
    point = [c for c in agn if c["sgscore1"] >= 0.5]
    hosted = [c for c in agn if c["sgscore1"] < 0.5]
    assert point and hosted  # half of the AGN are quasars without a resolved host
    assert all(c["classtar"] >= 0.85 and c["distpsnr1"] < 1.5 for c in point)
    assert all(c["classtar"] <= 0.6 for c in hosted)


def test_limiting_magnitudes_follow_the_real_alerts_histories(alerts):
    """The Moon, clouds and the Moffat PSF's noise give diffmaglim the spread of real ZTF epochs
    (the shared alerts' histories: median 20.1 mag, 5-95 % 18.7-20.9)."""
    import os
    from pathlib import Path

    sim = np.array([a["candidate"]["diffmaglim"] for a in alerts])
    assert 19.8 < np.median(sim) < 20.5 and np.ptp(sim) > 1.0
    shared = Path(os.environ.get("ASTRO_SHARED_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))
    paths = sorted((shared / "ztf").glob("fink_*.parquet"))  # two samples: medians 19.9 and 20.3 mag
    if paths:
        real = [p["diffmaglim"] for path in paths
                for row in pd.read_parquet(path, columns=["prv_candidates"])["prv_candidates"]
                for p in (row if row is not None else []) if p["diffmaglim"] is not None]
        assert len(real) > 1000 and abs(np.median(sim) - np.median(real)) < 0.3


def _sim(ws, astro, *args):
    import json

    r = astro("--json", "-w", ws, *args, "ztf", "simulate", "-n", 12)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_a_large_psf_mismatch_is_refused_before_any_work(tmp_path, astro):
    err = _error(astro("-w", tmp_path / "ws", "--set", "ztf.simulate.psf_mismatch=0.5", "ztf", "simulate", "-n", 3))
    assert "ztf.simulate.psf_mismatch" in err
    assert not (tmp_path / "ws" / "ztf" / "simulated").exists() or not list((tmp_path / "ws").rglob("*.parquet"))


def test_the_matched_psf_width_stays_in_a_safe_range():
    from astrotool_ztf.simulate import MISMATCH_RANGE, matched_fwhm

    rng = np.random.default_rng(0)
    widths = [matched_fwhm(rng, 2.0, 5.0) for _ in range(200)]
    assert min(widths) >= 2.0 * MISMATCH_RANGE[0] and max(widths) <= 2.0 * MISMATCH_RANGE[1]


@pytest.mark.parametrize("setting", ["ztf.simulate.seeing_fwhm=[3.0,1.0]", "ztf.simulate.seeing_fwhm=[-1,2]",
                                     "ztf.simulate.alerts_per_object=[0,0]", "ztf.simulate.alerts_per_object=[5,1]",
                                     "ztf.simulate.class_fractions.AGN=-1", 'ztf.simulate.name="a/b"'])
def test_bad_simulate_settings_are_refused_before_any_work(tmp_path, astro, setting):
    err = _error(astro("-w", tmp_path / "ws", "--set", setting, "ztf", "simulate", "-n", 5))
    assert "invalid configuration" in err and f"ztf.simulate.{setting.split('.')[2].split('=')[0]}" in err
    assert not list(tmp_path.glob("ws/ztf/simulated/*.parquet"))


def test_all_class_fractions_zero_is_refused(tmp_path, astro):
    zero = [a for c in ("AGN", "SN", "VS", "asteroid", "bogus")
            for a in ("--set", f"ztf.simulate.class_fractions.{c}=0")]
    err = _error(astro("-w", tmp_path / "ws", *zero, "ztf", "simulate", "-n", 5))
    assert "ztf.simulate" in err and "class_fractions" in err


def test_simulate_shards_together_draw_what_one_run_draws(tmp_path, astro):
    """Shards 1/3 and 2/3 drew nothing (their files were sharded twice) and exited 0."""
    sim = ("--set", "ztf.simulate.chunk_size=4", "--set", "ztf.simulate.stamp_size=21", "ztf", "simulate",
           "-n", 12)
    assert astro("-w", tmp_path / "one", "--seed", 3, *sim).returncode == 0
    for i in range(3):
        r = astro("-w", tmp_path / "shards", "--seed", 3, "--shard", f"{i}/3", *sim)
        assert r.returncode == 0, r.stderr
    for stage in ("simulated", "alerts", "stamps"):
        one = sorted(p.name for p in (tmp_path / "one" / "ztf" / stage).glob("sim_*"))
        assert len(one) == 3 and sorted(p.name for p in (tmp_path / "shards" / "ztf" / stage).glob("sim_*")) == one
    a, b = (pd.read_parquet(tmp_path / w / "ztf" / "alerts" / "sim_0002_alerts.parquet") for w in ("one", "shards"))
    assert a["candid"].tolist() == b["candid"].tolist()


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


@pytest.mark.parametrize("args", [("ztf", "simulate", "--name", "../../x"), ("ztf", "simulate", "--name", ""),
                                  ("ztf", "prepare", "--name", "../esc")])
def test_names_that_leave_their_folder_are_refused(tmp_path, astro, args):
    err = _error(astro("-w", tmp_path / "ws", *args))
    assert "--name" in err or ".name" in err
    assert not (tmp_path / "x").exists() and not (tmp_path / "ws" / "ztf" / "esc").exists()


def test_a_label_map_to_an_unknown_class_is_refused_naming_the_key(tmp_path, astro):
    err = _error(astro("-w", tmp_path / "ws", "--set", 'ztf.prepare.label_map.QSO="Quasar"', "ztf", "prepare"))
    assert "ztf.prepare.label_map" in err and "'Quasar'" in err and "AGN, SN, VS, asteroid, bogus" in err


def test_a_label_map_to_a_class_left_out_of_a_reduced_list_is_accepted():
    """A SIMBAD map shared with classes ["SN", "AGN"] mapped RRLyr to VS: every command was refused."""
    from astrotool_ztf.config import PrepareConfig

    PrepareConfig(classes=["SN", "AGN"], label_map={"RRLyr": "VS", "QSO": "AGN"})
    PrepareConfig(classes=["SN", "KN"], label_map={"KN": "KN"})
    with pytest.raises(ValueError, match="'Quasar'"):
        PrepareConfig(classes=["SN", "AGN"], label_map={"QSO": "Quasar"})


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


def test_prepare_suggests_an_allowed_crop(tmp_path, astro):
    ws = tmp_path / "ws"
    assert astro("-w", ws, "-q", "ztf", "ingest", AVRO[0], "--stamp-size", 31).returncode == 0
    err = _error(astro("-w", ws, "--set", 'ztf.prepare.inputs=["*"]', "--set", "ztf.prepare.label_column=objectId",
                       "ztf", "prepare", "--crop", 33))
    assert "ztf.prepare.crop to 21" in err and "31 or less" not in err


def test_a_crop_larger_than_the_stamps_is_an_input_error_and_full_cutouts_are_not_flagged(ws, tmp_path, astro):
    """crop 63 of 45 px stamps was a ValueError with a traceback hint; --stamp-size 45 flagged every alert
    stamps_resized, which means a stamp cut at a CCD edge."""
    from astrotool_ztf import synthetic

    src = synthetic.write_avro(tmp_path / "night.avro", synthetic.make_alerts(3))
    assert astro("-w", ws, "ztf", "ingest", "--stamp-size", 45, src).returncode == 0
    assert not pd.read_parquet(ws / "ztf" / "alerts" / "night_alerts.parquet")["stamps_resized"].any()
    err = _error(astro("-w", ws, "--set", "ztf.prepare.crop=63", "ztf", "prepare", "night", "--name", "n"))
    assert "night_stamps.h5" in err and "ztf.prepare.crop" in err and "--traceback" not in err
    assert not (ws / "ztf" / "prepared" / "n").exists()


def test_a_stamps_file_without_science_stamps_is_an_input_error(tmp_path):
    import h5py

    from astrotool.errors import InputError
    from astrotool_ztf.prepare import check_crop

    path = tmp_path / "x_stamps.h5"
    with h5py.File(path, "w") as h5:
        h5["candid"] = np.arange(3)
    with pytest.raises(InputError, match="science"):
        check_crop([(tmp_path / "x_alerts.parquet", path)], 21)


def test_a_failed_prepare_overwrite_names_the_column_and_keeps_the_old_set(ws, astro):
    src = ws / "ztf" / "alerts" / "sim_0000_alerts.parquet"
    n = StampDataset(ws / "ztf" / "prepared" / "sim").n
    table = pd.read_parquet(src)
    table.assign(magpsf="abc").to_parquet(src)
    err = _error(astro("-w", ws, "--seed", 1, *SMALL, "--overwrite", "ztf", "prepare"))
    assert "sim_0000_alerts.parquet" in err and "'magpsf'" in err
    assert StampDataset(ws / "ztf" / "prepared" / "sim").n == n
    assert not list((ws / "ztf" / "prepared").glob(".sim*"))


def test_prepare_refuses_a_table_without_feature_columns_or_truncated(ws, astro):
    src = ws / "ztf" / "alerts" / "sim_0000_alerts.parquet"
    pd.read_parquet(src).drop(columns=["magpsf", "sgscore1"]).to_parquet(src)
    err = _error(astro("-w", ws, "--seed", 1, *SMALL, "--overwrite", "ztf", "prepare", "--name", "x"))
    assert "sim_0000_alerts.parquet" in err and "magpsf" in err and "sgscore1" in err
    src.write_bytes((ws / "ztf" / "stamps" / "sim_0000_stamps.h5").read_bytes()[:2000])
    err = _error(astro("-w", ws, "--seed", 1, *SMALL, "ztf", "prepare", "--name", "x"))
    assert "sim_0000_alerts.parquet" in err and "not a readable alert table" in err
    assert not (ws / "ztf" / "prepared" / "x").exists()


def test_prepare_says_when_a_small_class_caps_val_and_test(ws, astro):
    r = astro("-w", ws, "--seed", 1, "ztf", "prepare", "--name", "capped")
    assert r.returncode == 0, r.stderr
    assert "test and val hold at most a third each" in r.stderr and "test_per_class 100" in r.stderr


def test_a_kept_prepare_reports_what_a_fresh_one_reports(tws, astro):
    run = ("--json", "-w", tws, "--seed", 1, *SMALL, "ztf", "prepare")
    fresh = json.loads(astro(*run[:-2], "--overwrite", *run[-2:]).stdout)
    kept = json.loads(astro(*run).stdout)
    assert (fresh.pop("kept"), kept.pop("kept")) == (False, True)
    assert kept == fresh and set(kept) == {"dataset", "n", "objects", "alerts_per_split_and_class"}
