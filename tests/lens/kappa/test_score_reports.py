"""`astro lens kappa score` run again on a report: rewritten for the same settings, whatever the spelling of
its paths or the place of a copied workspace; refused without --overwrite for another truth."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .conftest import NAMES, make_root, make_tar, perfect_predictions, run


def test_a_score_report_of_another_truth_is_refused_without_overwrite(tmp_path, capsys):
    ws = tmp_path / "ws"
    root = make_root(tmp_path / "truth", NAMES[:4])
    tar = make_tar(root, tmp_path / "other.tar.gz")
    pred = tmp_path / "r1"
    pred.mkdir()
    for n in NAMES[:4]:
        np.save(pred / f"{n}.npy", np.load(root / "KAPPA" / f"{n}.npy") * np.float16(0.5))
    report = ws / "lens" / "kappa" / "reports" / "r1_score.json"
    base = ["-w", ws, "-q", "lens", "kappa", "score", pred, "--no-plots"]
    assert run(capsys, *base, "--truth", root)[0] == 0
    first = report.read_text()
    assert json.loads(first)["settings"]["truth"].startswith("folder")
    # the same run again: rewritten
    assert run(capsys, *base, "--truth", root)[0] == 0
    first = report.read_text()
    # another truth: refused naming the key, the report kept
    code, out, err = run(capsys, *base, "--truth", tar, "--partial")
    assert code == 2 and "--overwrite" in err and "truth" in err
    assert report.read_text() == first
    # a report of an older version (no settings record): compared on its truth, split and runs
    old = json.loads(first)
    del old["settings"]
    report.write_text(json.dumps(old))
    assert run(capsys, *base, "--truth", tar, "--partial")[0] == 2
    assert run(capsys, *base, "--truth", root)[0] == 0
    code, out, err = run(capsys, "--overwrite", *base, "--truth", tar, "--partial")
    assert code == 0, err
    assert json.loads(report.read_text())["truth"].startswith("tarball")


def test_a_score_rerun_is_the_same_whatever_the_spelling_of_its_paths(tmp_path, capsys, monkeypatch):
    """A bare name, a relative path and an absolute path of the same truth or run are one setting."""
    monkeypatch.chdir(tmp_path)
    root = make_root(tmp_path / "truth", NAMES[:4])
    assert run(capsys, "-w", "ws", "-q", "lens", "kappa", "data", root, "--name", "d")[0] == 0
    pdir = Path("ws") / "lens" / "kappa" / "predictions" / "p"
    pdir.mkdir(parents=True)
    for n in NAMES[:4]:
        np.save(pdir / f"{n}.npy", np.load(root / "KAPPA" / f"{n}.npy") * np.float16(0.5))
    report = tmp_path / "ws" / "lens" / "kappa" / "reports" / "r_score.json"
    base = ["-w", "ws", "-q", "lens", "kappa", "score", "--no-plots", "--name", "r"]
    # a data set truth: bare name, relative path, absolute path; the run likewise
    assert run(capsys, *base, "p", "--truth", "d")[0] == 0
    for pred, truth in ((pdir, "d"), ("p", "ws/lens/kappa/data/d"),
                        (tmp_path / pdir, tmp_path / "ws/lens/kappa/data/d")):
        code, out, err = run(capsys, *base, pred, "--truth", truth)
        assert code == 0, (pred, truth, err)
    settings = json.loads(report.read_text())["settings"]
    # inside the workspace: relative to its root
    assert settings["truth_paths"] == ["lens/kappa/data/d"]
    assert settings["runs"] == {"p": "lens/kappa/predictions/p"}
    # a folder truth: relative vs absolute
    assert run(capsys, "--overwrite", *base, "p", "--truth", "truth")[0] == 0
    code, out, err = run(capsys, *base, "p", "--truth", tmp_path / "truth")
    assert code == 0, err
    # another folder of the same maps is still another truth
    import shutil

    shutil.copytree(root, tmp_path / "copy")
    code, out, err = run(capsys, *base, "p", "--truth", "copy")
    assert code == 2 and "truth_paths" in err


def test_a_score_rerun_in_a_copied_workspace_is_the_same(tmp_path, capsys):
    """Paths inside the workspace are recorded relative to its root, so a copied or moved workspace reruns;
    a truth outside it keeps its absolute path."""
    import shutil

    root = make_root(tmp_path / "truth", NAMES[:4])
    ws1 = tmp_path / "ws1"
    assert run(capsys, "-w", ws1, "-q", "lens", "kappa", "data", root, "--name", "d")[0] == 0
    (ws1 / "lens" / "kappa" / "predictions").mkdir(parents=True, exist_ok=True)
    perfect_predictions(root, ws1 / "lens" / "kappa" / "predictions" / "p", NAMES[:4])
    base = ["lens", "kappa", "score", "p", "--no-plots"]
    assert run(capsys, "-w", ws1, "-q", *base, "--truth", "d", "--name", "in")[0] == 0
    assert run(capsys, "-w", ws1, "-q", *base, "--truth", root, "--name", "out")[0] == 0
    ws2 = tmp_path / "ws2"
    shutil.copytree(ws1, ws2)
    for name, truth in (("in", "d"), ("out", root)):
        code, out, err = run(capsys, "-w", ws2, "-q", *base, "--truth", truth, "--name", name)
        assert code == 0, (name, err)
    settings = json.loads((ws2 / "lens" / "kappa" / "reports" / "in_score.json").read_text())["settings"]
    assert settings["truth_paths"] == ["lens/kappa/data/d"] and settings["runs"] == {"p": "lens/kappa/predictions/p"}
    settings = json.loads((ws2 / "lens" / "kappa" / "reports" / "out_score.json").read_text())["settings"]
    assert settings["truth_paths"] == [str((root / "KAPPA").resolve())]
    # the copy's own data set is not the first workspace's: named by its absolute path, it is another truth
    code, out, err = run(capsys, "-w", ws2, "-q", *base, "--truth", ws1 / "lens" / "kappa" / "data" / "d",
                         "--name", "in")
    assert code == 2 and "truth_paths" in err
