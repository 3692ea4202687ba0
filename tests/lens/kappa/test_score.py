"""`astro lens kappa score` through the CLI on tiny folders: the JSON form, pairing by name, bad maps named,
ranking, the all-zeros WMAPE floor, plots and the report, a data set truth with its epsilon."""

from __future__ import annotations

import json

import numpy as np
import pytest

from astrotool_lens.kappa import metrics as M
from astrotool_lens.kappa.maps import shear_from_kappa, wave_vectors

from tests.lens.kappa.conftest import run

S = 32
NAMES = [f"{i:05d}_{3 * i:05d}" for i in range(6)]


def fields(n, seed):
    """Smooth positive-skewed kappa-like maps (n, S, S): a Gaussian field plus a blob, float16-representable."""
    rng = np.random.default_rng(seed)
    k2 = wave_vectors((S, S))[2]
    f = np.fft.ifft2(np.fft.fft2(rng.standard_normal((n, S, S))) * np.exp(-k2 / (2 * 0.08**2))).real
    f = 0.03 * f / f.std()
    yy, xx = np.mgrid[:S, :S]
    for i in range(n):
        cy, cx = rng.uniform(8, S - 8, 2)
        f[i] += 0.3 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 3.0**2))
    return f.astype(np.float16)


@pytest.fixture()
def truth_root(tmp_path):
    """A Datathon-layout folder: KAPPA/<name>.npy and EPSILON/<name>.npy (noisy reduced shear, de = 0.05)."""
    root = tmp_path / "truth"
    (root / "KAPPA").mkdir(parents=True)
    (root / "EPSILON").mkdir()
    kap = fields(len(NAMES), 0)
    rng = np.random.default_rng(1)
    for name, k in zip(NAMES, kap):
        k64 = k.astype(np.float64)
        g1, g2 = shear_from_kappa(k64)
        eps = np.stack([g1 / (1 - k64), g2 / (1 - k64), np.full((S, S), 0.05)])
        eps[:2] += 0.05 * rng.standard_normal((2, S, S))
        np.save(root / "KAPPA" / f"{name}.npy", k)
        np.save(root / "EPSILON" / f"{name}.npy", eps.astype(np.float16))
    return root


def write_run(folder, maps: dict):
    folder.mkdir(parents=True, exist_ok=True)
    for name, m in maps.items():
        np.save(folder / f"{name}.npy", np.asarray(m, np.float16))
    return folder


def truth_maps(root):
    return {n: np.load(root / "KAPPA" / f"{n}.npy") for n in NAMES}


def test_json_form_per_map_and_mean_with_the_zeros_floor(tmp_path, capsys, truth_root):
    t = truth_maps(truth_root)
    half = write_run(tmp_path / "half", {n: m * np.float16(0.5) for n, m in t.items()})  # exact but for subnormals
    code, out, err = run(capsys, "-w", tmp_path / "ws", "-q", "lens", "kappa", "score", half, "--truth", truth_root,
                         "--json", "--no-plots")
    assert code == 0, err
    doc = json.loads(out)
    assert set(doc) == {"runs", "ranking"} and doc["ranking"] is None   # the shape of several runs'
    doc = doc["runs"]["half"]
    assert set(doc) == {"maps", "mean"} and sorted(doc["maps"]) == NAMES
    one = doc["maps"][NAMES[0]]
    assert {"wmape", "dicee", "dpeaks", "mse", "pearson", "ssim", "chi2"} <= set(one)
    # c * kappa scores |1 - c| = 0.5 exactly; the same maps scored directly give the same values
    assert one["wmape"] == pytest.approx(0.5, abs=1e-12)
    direct = M.map_metrics(t[NAMES[0]] * np.float16(0.5), t[NAMES[0]])
    assert all(one[k] == pytest.approx(v, rel=1e-12, abs=1e-15) for k, v in direct.items())
    assert one["dicee"] == 0.0 and one["dpeaks"] == 0.0 and one["pearson"] == pytest.approx(1.0)
    mean = doc["mean"]
    assert mean["wmape"] == pytest.approx(0.5, abs=1e-5)  # a few |kappa| < 6e-5 pixels: float16 subnormals
    assert mean["wmape_zeros"] == pytest.approx(1.0, abs=1e-2)  # the all-zeros map, from the truth alone
    assert mean["wmape_zeros"] == pytest.approx(np.mean([M.wmape(np.zeros((S, S)), m) for m in t.values()]))
    # the truth itself fits its epsilon at the noise level; half of it fits worse
    assert mean["truth_chi2"] == pytest.approx(1.0, abs=0.1) and mean["chi2"] > mean["truth_chi2"]
    rep = json.loads((tmp_path / "ws" / "lens" / "kappa" / "reports" / "half_score.json").read_text())
    assert rep["n"] == 6 and rep["truth_unscored"] == 0 and rep["consistency"] is True
    assert rep["runs"]["half"]["mean"] == mean and rep["plots"] == []


def test_several_runs_ranked_text_lines_and_plots(tmp_path, capsys, truth_root):
    t = truth_maps(truth_root)
    rng = np.random.default_rng(2)
    ws = tmp_path / "ws"
    preds = ws / "lens" / "kappa" / "predictions"
    write_run(preds / "exact", t)
    write_run(preds / "noisy", {n: m + 0.02 * rng.standard_normal((S, S)) for n, m in t.items()})
    write_run(preds / "zeros", {n: np.zeros((S, S)) for n in t})
    code, out, err = run(capsys, "-w", ws, "--log-format", "plain", "lens", "kappa", "score", "exact", "noisy",
                         "zeros", "--truth", truth_root, "--report", "three")
    assert code == 0, err
    rows = [x.split("\t") for x in out.splitlines()]   # piped: one tab-separated row per run
    assert rows[0][:4] == ["run", "wmape", "dicee", "dpeaks"] and rows[0][-2:] == ["borda_all", "copeland_all"]
    # the truth's own wmape_zeros and truth_chi2, one value for every row, are in the log lines and --json
    assert "wmape_zeros" not in rows[0] and "truth_chi2" not in rows[0] and len(rows[0]) <= 13
    table = {r[0]: dict(zip(rows[0], r)) for r in rows[1:]}
    assert list(table) == ["exact", "noisy", "zeros"] and float(table["zeros"]["dicee"]) == 1.0
    assert table["exact"]["borda"] == "9.0" and table["exact"]["copeland"] == "2"
    lines = [x.split("INFO", 1)[-1].strip() for x in err.splitlines()]   # the sentences are log lines
    assert any(x.startswith(f"folder {truth_root}") and "6 maps scored" in x for x in lines), err
    zline = next(x for x in lines if x.startswith("zeros:"))
    assert "all-zeros map" in zline and "DICEE 1.0000" in zline
    assert any(x.startswith("ranking on WMAPE, DICEE, DPEAKS: Borda exact 9") for x in lines)
    rdir = ws / "lens" / "kappa" / "reports"
    rep = json.loads((rdir / "three_score.json").read_text())
    comp = rep["ranking"]["competition"]
    # exact is best on all three (3 points each = 9); the zeros map's WMAPE (~1) beats noisy's, DICEE/DPEAKS do not
    assert comp["borda"]["exact"] == 9.0 and comp["copeland"] == {"exact": 2, "noisy": 0, "zeros": -2}
    assert rep["runs"]["zeros"]["mean"]["wmape"] < rep["runs"]["noisy"]["mean"]["wmape"]
    assert rep["ranking"]["all"]["metrics"][:3] == ["wmape", "dicee", "dpeaks"]
    for p in rep["plots"]:
        with open(p, "rb") as fh:
            assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
    assert {p.split("/")[-1] for p in rep["plots"]} == {"three_examples.png", "three_hist.png", "three_power.png"}
    ratio = np.array(rep["runs"] and rep["power"]["ratio"]["exact"], dtype=float)
    assert np.allclose(ratio[np.isfinite(ratio)], 1.0)
    # the same report again without plots: the earlier figures go, they would not be this report's (other runs:
    # only with --overwrite)
    code, _, err = run(capsys, "-w", ws, "-q", "lens", "kappa", "score", "exact", "zeros", "--truth", truth_root,
                       "--report", "three", "--no-plots")
    assert code == 2 and "runs.noisy" in err and "--overwrite" in err
    code, _, err = run(capsys, "-w", ws, "-q", "--overwrite", "lens", "kappa", "score", "exact", "zeros",
                       "--truth", truth_root,
                       "--report", "three", "--no-plots")
    assert code == 0, err
    assert not list(rdir.glob("three_*.png"))
    # --json for several runs
    code, out, err = run(capsys, "-w", ws, "-q", "lens", "kappa", "score", "exact", "zeros", "--truth", truth_root,
                         "--json", "--no-plots")
    assert code == 0, err
    doc = json.loads(out)
    assert set(doc) == {"runs", "ranking"} and set(doc["runs"]) == {"exact", "zeros"}
    assert set(doc["runs"]["exact"]) == {"maps", "mean"}


def test_unpaired_names_exit_2_naming_them(tmp_path, capsys, truth_root):
    t = truth_maps(truth_root)
    ws = tmp_path / "ws"
    extra = write_run(tmp_path / "extra", {**t, "99999_00000": t[NAMES[0]]})
    code, _, err = run(capsys, "-w", ws, "-q", "lens", "kappa", "score", extra, "--truth", truth_root, "--no-plots")
    assert code == 2 and "99999_00000" in err and "no true map" in err
    missing = write_run(tmp_path / "missing", {n: m for n, m in t.items() if n != NAMES[3]})
    code, _, err = run(capsys, "-w", ws, "-q", "lens", "kappa", "score", missing, "--truth", truth_root, "--no-plots")
    assert code == 2 and NAMES[3] in err and "1 of 6 true maps" in err and "no prediction" in err
    # --partial scores the 5 predicted maps and counts the other
    code, out, err = run(capsys, "-w", ws, "-q", "lens", "kappa", "score", missing, "--truth", truth_root,
                         "--no-plots", "--partial", "--json")
    assert code == 0, err
    assert len(json.loads(out)["runs"]["missing"]["maps"]) == 5
    assert json.loads((ws / "lens" / "kappa" / "reports" / "missing_score.json").read_text())["truth_unscored"] == 1
    # two runs over different maps are not ranked together
    code, _, err = run(capsys, "-w", ws, "-q", "lens", "kappa", "score", extra.parent / "missing", truth_root / "KAPPA",
                       "--truth", truth_root, "--no-plots", "--partial")
    assert code == 2 and "covers other maps" in err and NAMES[3] in err
    # an unknown run name lists the runs there are
    code, _, err = run(capsys, "-w", ws, "-q", "lens", "kappa", "score", "nosuchrun", "--truth", truth_root)
    assert code == 2 and "nosuchrun" in err and "runs:" in err
    one = next((truth_root / "KAPPA").glob("*.npy"))   # a map file: it said "no such prediction folder"
    code, _, err = run(capsys, "-w", ws, "-q", "lens", "kappa", "score", one, "--truth", truth_root)
    assert code == 2 and "a file, not a prediction folder" in " ".join(err.split()), err
    code, _, err = run(capsys, "-w", ws, "-q", "lens", "kappa", "score", extra)
    assert code == 2 and "--truth" in err


def test_a_map_of_the_wrong_shape_or_with_nan_exits_2_naming_the_file(tmp_path, capsys, truth_root):
    t = truth_maps(truth_root)
    ws = tmp_path / "ws"
    bad = write_run(tmp_path / "bad", t)
    np.save(bad / f"{NAMES[0]}.npy", np.zeros((16, 16), np.float16))  # the first file: not the run's own size
    code, _, err = run(capsys, "-w", ws, "-q", "lens", "kappa", "score", bad, "--truth", truth_root, "--no-plots")
    assert code == 2 and f"{NAMES[0]}.npy" in err and "(16, 16)" in err
    np.save(bad / f"{NAMES[0]}.npy", t[NAMES[0]])
    nan = t[NAMES[4]].copy()
    nan[3, 3] = np.nan
    np.save(bad / f"{NAMES[4]}.npy", nan)
    code, _, err = run(capsys, "-w", ws, "-q", "lens", "kappa", "score", bad, "--truth", truth_root, "--no-plots")
    assert code == 2 and f"{NAMES[4]}.npy" in err and "NaN" in err
    assert not (ws / "lens" / "kappa" / "reports" / "bad_score.json").exists()


def test_data_set_truth_scores_a_predicted_subset_with_its_epsilon(tmp_path, capsys):
    from astrotool.ml.data import DatasetWriter
    from astrotool_lens.kappa.data import KIND

    kap = fields(8, 3)
    eps = np.zeros((8, 3, S, S), np.float16)
    for i, k in enumerate(kap.astype(np.float64)):
        g1, g2 = shear_from_kappa(k)
        eps[i] = np.stack([g1 / (1 - k), g2 / (1 - k), np.full((S, S), 0.05)])
    names = np.array([f"m{i:03d}" for i in range(8)])
    ws = tmp_path / "ws"
    w = DatasetWriter(str(ws / "lens" / "kappa" / "data" / "tiny"), "tiny", kind=KIND)
    w.write_shard(0, 0, {"epsilon": eps, "kappa": kap},
                  {"name": names, "split": np.array(["train"] * 5 + ["test"] * 3)})
    w.finalize(1)
    pred = write_run(tmp_path / "pred", {n: k for n, k in zip(names[5:], kap[5:])})
    code, out, err = run(capsys, "-w", ws, "-q", "lens", "kappa", "score", pred, "--truth", "tiny", "--json",
                         "--no-plots")
    assert code == 0, err
    doc = json.loads(out)["runs"]["pred"]
    assert sorted(doc["maps"]) == ["m005", "m006", "m007"]
    assert doc["mean"]["wmape"] == 0.0 and doc["mean"]["dicee"] == 0.0
    # noiseless epsilon (float16-rounded): the true map's chi2 is tiny next to the zeros map's
    assert doc["mean"]["chi2"] < 0.01 and doc["mean"]["input_e_rms"] > 10 * doc["mean"]["input_b_rms"]
    rep = json.loads((ws / "lens" / "kappa" / "reports" / "pred_score.json").read_text())
    assert rep["truth_unscored"] == 5 and rep["n"] == 3


def test_tarball_truth_is_streamed_and_paired_by_name(tmp_path, capsys, truth_root):
    import tarfile

    t = truth_maps(truth_root)
    tgz = tmp_path / "test_public.tar.gz"
    with tarfile.open(tgz, "w:gz") as tar:
        for n in reversed(NAMES):  # member order is not name order
            tar.add(truth_root / "KAPPA" / f"{n}.npy", arcname=f"public/KAPPA/{n}.npy")
    pred = write_run(tmp_path / "pred", {n: 2 * m for n, m in t.items() if n != NAMES[1]})
    ws = tmp_path / "ws"
    code, _, err = run(capsys, "-w", ws, "-q", "lens", "kappa", "score", pred, "--truth", tgz, "--no-plots")
    assert code == 2 and NAMES[1] in err
    code, out, err = run(capsys, "-w", ws, "-q", "lens", "kappa", "score", pred, "--truth", tgz, "--no-plots",
                         "--partial", "--json")
    assert code == 0, err
    doc = json.loads(out)["runs"]["pred"]
    assert sorted(doc["maps"]) == [n for n in NAMES if n != NAMES[1]]
    assert all(m["wmape"] == pytest.approx(1.0, abs=1e-12) for m in doc["maps"].values())  # 2 kappa: |1 - 2|
    assert "chi2" not in doc["mean"]  # no epsilon in a KAPPA-only tarball


def test_metric_table_columns_means_and_streamed_json():
    import io
    import math

    from astrotool_lens.kappa.score import MetricTable, _write_json

    t = MetricTable()
    t.add("a", {"wmape": 1.0, "dicee": 0.5})
    t.add("b", {"wmape": 3.0, "chi2": 2.0})  # dicee missing here, chi2 missing for "a"
    t.add("c", {"wmape": float("nan"), "dicee": 0.25, "chi2": np.float32(4.0)})
    assert list(t) == ["a", "b", "c"] and len(t) == 3
    assert math.isnan(t["a"]["chi2"]) and math.isnan(t["b"]["dicee"]) and t["c"]["chi2"] == 4.0
    assert t.means() == {"wmape": 2.0, "dicee": 0.375, "chi2": 3.0}  # NaN left out of each mean
    doc = {"n": 3, "runs": {"r1": {"maps": t, "mean": t.means()}, "empty": MetricTable()}, "ranking": None,
           "k": [0.5, float("inf")]}
    fh = io.StringIO()
    _write_json(fh, doc)
    back = json.loads(fh.getvalue())
    assert back == {"n": 3, "runs": {"r1": {"maps": {"a": {"wmape": 1.0, "dicee": 0.5, "chi2": None},
                                                     "b": {"wmape": 3.0, "dicee": None, "chi2": 2.0},
                                                     "c": {"wmape": None, "dicee": 0.25, "chi2": 4.0}},
                                            "mean": {"wmape": 2.0, "dicee": 0.375, "chi2": 3.0}},
                                     "empty": {}}, "ranking": None, "k": [0.5, None]}


def test_the_wmape_note_states_the_all_zeros_score_of_this_truth(tmp_path, capsys):
    """Pixels with |kappa| below delta = 1e-5 lift the all-zeros map's WMAPE far above 1: the note says the value."""
    t = fields(2, 3).astype(np.float64)
    t[:, :4, :4] = -1.2e-7            # float16 subnormals: |1 - delta/kappa| ~ 85 there
    t = t.astype(np.float16)
    truth = write_run(tmp_path / "truth", dict(zip(NAMES[:2], t)))
    floor = float(np.mean([M.wmape(np.zeros((S, S)), m) for m in t]))
    assert floor > 2
    ws = tmp_path / "ws"
    write_run(ws / "lens" / "kappa" / "predictions" / "zeros", {n: np.zeros((S, S)) for n in NAMES[:2]})
    code, out, err = run(capsys, "-w", ws, "--log-format", "plain", "lens", "kappa", "score", "zeros", "--truth",
                         truth, "--no-plots")
    assert code == 0, err
    note = next(x.split("INFO", 1)[1].strip() for x in err.splitlines() if "note:" in x)
    assert f"all-zeros map's ({floor:.3f} on this truth)" in note and "about 1" not in note


def test_a_prediction_of_another_size_than_its_truth_says_so(tmp_path, capsys, truth_root):
    ws = tmp_path / "ws"
    maps = {n: np.zeros((S, S)) for n in NAMES}
    maps[NAMES[0]] = np.zeros((16, 16))
    write_run(ws / "lens" / "kappa" / "predictions" / "small", maps)
    code, out, err = run(capsys, "-w", ws, "-q", "lens", "kappa", "score", "small", "--truth", truth_root)
    assert code == 2 and f"{NAMES[0]}.npy: shape (16, 16), expected (32, 32) like its true map" in err
