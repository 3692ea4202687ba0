"""A new user's review of ``astro lens kappa``: --split on sources without splits, exact split counts, score
reports replaced with other settings, the export's parity fallback, path-like names that do not exist."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from astrotool.cli import main
from astrotool.errors import InputError

S = 32


def run(capsys, *args):
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def make_root(root: Path, names, seed=0):
    """A Datathon-layout folder: EPSILON/<name>.npy and KAPPA/<name>.npy."""
    rng = np.random.default_rng(seed)
    (root / "EPSILON").mkdir(parents=True, exist_ok=True)
    (root / "KAPPA").mkdir(parents=True, exist_ok=True)
    for n in names:
        np.save(root / "EPSILON" / f"{n}.npy", rng.normal(0, 0.3, (3, S, S)).astype(np.float16))
        np.save(root / "KAPPA" / f"{n}.npy", (0.05 + rng.normal(0, 0.05, (S, S))).astype(np.float16))
    return root


def make_tar(root: Path, tar: Path):
    with tarfile.open(tar, "w:gz") as tf:
        for p in sorted(root.rglob("*.npy")):
            tf.add(p, arcname=f"top/{p.relative_to(root)}")
    return tar


class _WS:
    def __init__(self, root):
        self.root = Path(root)

    def stage(self, plugin, name, create=True):
        return self.root / plugin / name


class _Ctx:
    def __init__(self, root):
        self.workspace = _WS(root)


NAMES = [f"m{i:03d}" for i in range(20)]


# ---------------------------------------------------------------- 1. --split on sources without splits


def test_split_given_for_a_folder_or_tarball_is_refused_naming_it(tmp_path):
    from astrotool_lens.kappa.sources import FolderMaps, TarMaps, open_maps

    root = make_root(tmp_path / "train", NAMES[:4])
    tar = make_tar(root, tmp_path / "train.tar.gz")
    ctx = _Ctx(tmp_path / "ws")
    for spec in (root, tar):
        with pytest.raises(InputError, match=r"--split val applies to data sets.*no splits") as exc:
            open_maps(str(spec), "epsilon", ctx, split="val", split_given=True)
        assert str(spec) in str(exc.value)
    # the command's default (not given), or --split all: every map, as before
    assert isinstance(open_maps(str(root), "epsilon", ctx, split="test"), FolderMaps)
    assert isinstance(open_maps(str(tar), "kappa", ctx, split="all", split_given=True), TarMaps)


def test_score_split_for_a_folder_truth_exits_2(tmp_path, capsys):
    ws = tmp_path / "ws"
    root = make_root(tmp_path / "truth", NAMES[:4])
    pred = tmp_path / "pred"
    pred.mkdir()
    for n in NAMES[:2]:
        np.save(pred / f"{n}.npy", np.load(root / "KAPPA" / f"{n}.npy"))
    base = ["-w", ws, "-q", "lens", "kappa", "score", pred, "--truth", root, "--partial", "--no-plots"]
    code, out, err = run(capsys, *base, "--split", "test")
    assert code == 2 and "--split test applies to data sets" in err and str(root) in err
    assert not (ws / "lens" / "kappa" / "reports" / "pred_score.json").exists()
    code, out, err = run(capsys, *base)
    assert code == 0, err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A workspace with a packed 32x32 set ``tiny`` (packed by ``data``) and a U-Net ``u`` trained one epoch."""
    tmp = tmp_path_factory.mktemp("kappa_review")
    ws = tmp / "ws"
    root = make_root(tmp / "tiny", NAMES)
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["-w", str(ws), "-q", "lens", "kappa", "data", str(root)]) == 0
        code = main([str(a) for a in ("-w", ws, "-q", "--set", "lens.kappa.train.depth=2", "--set",
                                      "lens.kappa.train.width=4", "lens", "kappa", "train", "--dataset", "tiny",
                                      "--model", "u", "--epochs", 1, "--batch-size", 8, "--device", "cpu")])
    assert code == 0
    return ws, root


def test_predict_split_for_a_folder_exits_2_and_the_default_runs(trained, capsys):
    ws, root = trained
    base = ["-w", ws, "-q", "lens", "kappa", "predict", root, "--model", "u", "--no-zip", "--device", "cpu"]
    code, out, err = run(capsys, *base, "--split", "val", "--name", "fsv")
    assert code == 2 and "--split val applies to data sets" in err and str(root) in err
    assert not (ws / "lens" / "kappa" / "predictions" / "fsv").exists()
    code, out, err = run(capsys, "--json", *base, "--name", "fall")
    assert code == 0, err
    assert json.loads(out)["n"] == len(NAMES)
    # a data set still takes its split
    code, out, err = run(capsys, "--json", *base[:6], "tiny", *base[7:], "--split", "val", "--name", "dval")
    assert code == 0, err
    assert json.loads(out)["n"] == 2


# ---------------------------------------------------------------- 2. split counts


def test_small_sets_get_exact_split_counts_with_no_empty_split():
    from astrotool_lens.kappa.sources import split_of

    for n, want in ((3, (1, 1, 1)), (10, (8, 1, 1)), (20, (16, 2, 2)), (40, (32, 4, 4))):
        names = [f"{i:05d}" for i in range(n)]
        for seed in range(5):
            got = Counter(split_of(seed, names, (0.8, 0.1, 0.1)))
            assert (got["train"], got["val"], got["test"]) == want, (n, seed, got)
    # deterministic whatever the order of the names; the seed matters
    names = [f"{i:05d}" for i in range(50)]
    a = dict(zip(names, split_of(3, names, (0.8, 0.1, 0.1))))
    b = dict(zip(names[::-1], split_of(3, names[::-1], (0.8, 0.1, 0.1))))
    assert a == b
    assert list(split_of(4, names, (0.8, 0.1, 0.1))) != list(a.values())


def test_adding_maps_moves_only_a_few_near_the_split_boundaries():
    from astrotool_lens.kappa.sources import split_of

    names = [f"m{i:04d}" for i in range(1000)]
    a = split_of(7, names, (0.8, 0.1, 0.1))
    more = split_of(7, names + [f"x{i}" for i in range(50)], (0.8, 0.1, 0.1))
    moved = int((more[:1000] != a).sum())
    assert moved <= 50 + 3


def test_twenty_simulated_maps_pack_into_16_2_2_and_the_split_method_is_recorded(tmp_path, capsys):
    ws = tmp_path / "ws"
    root = make_root(tmp_path / "s", NAMES)
    code, out, err = run(capsys, "--json", "-w", ws, "-q", "lens", "kappa", "data", root, "--name", "s")
    assert code == 0, err
    assert json.loads(out)["splits"] == {"train": 16, "val": 2, "test": 2}
    settings = json.loads((ws / "lens" / "kappa" / "data" / "s" / "data_settings.json").read_text())
    assert settings["split_method"] == "ranked-v2"
    # a set packed by the method before (no split_method recorded) is refused, not mixed
    del settings["split_method"]
    (ws / "lens" / "kappa" / "data" / "s" / "data_settings.json").write_text(json.dumps(settings))
    code, out, err = run(capsys, "-w", ws, "-q", "lens", "kappa", "data", root, "--name", "s")
    assert code == 2 and "split_method" in err and "--overwrite" in err


# ---------------------------------------------------------------- 3. score report with other settings


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


# ---------------------------------------------------------------- 4. export's parity inputs


def test_parity_inputs_fall_back_to_random_fields_with_a_warning(tmp_path, caplog):
    from astrotool_lens.kappa.export import parity_epsilon

    meta = {"training": {"size": 16, "dataset_path": str(tmp_path / "gone")}}
    log = logging.getLogger("astro.test_kappa_review")
    with caplog.at_level(logging.WARNING, logger=log.name):
        eps, origin = parity_epsilon(meta, 2, 0, log=log)
    assert origin == "random fields" and eps.shape == (2, 3, 16, 16)
    assert "gone" in caplog.text and "random fields" in caplog.text
    # no training set named: random fields, nothing to warn about
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=log.name):
        parity_epsilon({"training": {"size": 16}}, 1, 0, log=log)
    assert not caplog.text


# ---------------------------------------------------------------- 7. messages for inputs that do not exist


def test_a_path_that_does_not_exist_is_said_to_be_one(tmp_path):
    from astrotool_lens.kappa.sources import open_maps

    ws = tmp_path / "ws"
    (ws / "lens" / "kappa" / "data" / "half").mkdir(parents=True)   # an unfinished data set: no manifest
    ctx = _Ctx(ws)
    for spec in ("./nonexist", "a/b", "~/nonexist_kappa_review"):
        with pytest.raises(InputError, match="the path does not exist") as exc:
            open_maps(spec, "epsilon", ctx)
        assert "of that name" not in str(exc.value)
    with pytest.raises(InputError, match=r"data sets: \(none\);.*unfinished data sets.*: half"):
        open_maps("nonexist", "epsilon", ctx)
