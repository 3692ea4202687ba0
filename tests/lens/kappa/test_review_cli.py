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


NAMES = [f"m{i:03d}" for i in range(20)]


def perfect_predictions(root: Path, pred: Path, names) -> Path:
    """A prediction folder holding the true KAPPA maps of ``names``."""
    pred.mkdir()
    for n in names:
        np.save(pred / f"{n}.npy", np.load(root / "KAPPA" / f"{n}.npy"))
    return pred


# ---------------------------------------------------------------- 1. --split on sources without splits


def test_split_given_for_a_folder_or_tarball_is_refused_naming_it(tmp_path, map_ctx):
    from astrotool_lens.kappa.sources import FolderMaps, TarMaps, open_maps

    root = make_root(tmp_path / "train", NAMES[:4])
    tar = make_tar(root, tmp_path / "train.tar.gz")
    ctx = map_ctx(tmp_path / "ws")
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
    pred = perfect_predictions(root, tmp_path / "pred", NAMES[:2])
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
    # the refusal says why: the split method changed in this version; --overwrite (or, under --shard, removing
    # the set once) packs it again
    assert "earlier version" in err and "per-name-v1" in err and "ranked-v2" in err and "--shard" in err


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

    meta = {"training": {"size": 16, "dataset_path": str(tmp_path / "train_set")}}
    log = logging.getLogger("astro.test_kappa_review")
    with caplog.at_level(logging.WARNING, logger=log.name):
        eps, origin = parity_epsilon(meta, 2, 0, log=log)
    assert origin == "random fields" and eps.shape == (2, 3, 16, 16)
    # the warning names the set, why it is not used and what is used instead
    assert str(tmp_path / "train_set") in caplog.text and "is gone" in caplog.text
    assert "ONNX parity check runs on random fields" in caplog.text
    # no training set named: random fields, nothing to warn about
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=log.name):
        parity_epsilon({"training": {"size": 16}}, 1, 0, log=log)
    assert not caplog.text


# ---------------------------------------------------------------- 7. messages for inputs that do not exist


def test_a_path_that_does_not_exist_is_said_to_be_one(tmp_path, map_ctx):
    from astrotool_lens.kappa.sources import open_maps

    ws = tmp_path / "ws"
    (ws / "lens" / "kappa" / "data" / "half").mkdir(parents=True)   # an unfinished data set: no manifest
    ctx = map_ctx(ws)
    for spec in ("./nonexist", "a/b", "~/nonexist_kappa_review"):
        with pytest.raises(InputError, match="the path does not exist") as exc:
            open_maps(spec, "epsilon", ctx)
        assert "of that name" not in str(exc.value)
    with pytest.raises(InputError, match=r"data sets: \(none\);.*unfinished data sets.*: half"):
        open_maps("nonexist", "epsilon", ctx)


# ---------------------------------------------------------------- follow-up review


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
    for pred, truth in ((pdir, "d"), ("p", "ws/lens/kappa/data/d"), (tmp_path / pdir, tmp_path / "ws/lens/kappa/data/d")):
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


def test_a_configured_split_for_a_folder_truth_is_recorded_as_all(tmp_path, capsys):
    """A config split is a default for data sets: not refused for a folder, and the report says "all"."""
    ws = tmp_path / "ws"
    root = make_root(tmp_path / "truth", NAMES[:4])
    pred = perfect_predictions(root, tmp_path / "pred", NAMES[:4])
    report = ws / "lens" / "kappa" / "reports" / "pred_score.json"
    base = ["lens", "kappa", "score", pred, "--truth", root, "--no-plots"]
    code, out, err = run(capsys, "-w", ws, "-q", "--set", "lens.kappa.score.split=val", *base)
    assert code == 0, err
    doc = json.loads(report.read_text())
    assert doc["split"] == "all" and doc["settings"]["split"] == "all"
    # the same scoring without the configured split: the same settings, rewritten
    code, out, err = run(capsys, "-w", ws, "-q", *base)
    assert code == 0, err


def test_split_on_an_unfinished_data_set_says_it_is_unfinished(tmp_path, map_ctx):
    from astrotool_lens.kappa.sources import open_maps

    ws = tmp_path / "ws"
    half = ws / "lens" / "kappa" / "data" / "half"   # a --shard array job still packing: settings, shards, no index
    half.mkdir(parents=True)
    (half / "data_settings.json").write_text("{}")
    (half / "shard00000_arrays.h5").write_bytes(b"")
    ctx = map_ctx(ws)
    for spec, kw in (("half", {"split": "test", "split_given": True}), ("half", {}),
                     (str(half), {"split": "val", "split_given": True})):
        with pytest.raises(InputError, match="unfinished data set") as exc:
            open_maps(spec, "kappa", ctx, **kw)
        assert "no splits" not in str(exc.value) and "lens kappa data" in str(exc.value)


def test_parity_warning_for_an_empty_training_set_says_it_is_empty(tmp_path, caplog, monkeypatch):
    import astrotool_lens.kappa.data as kdata
    from astrotool_lens.kappa.export import parity_epsilon

    class Empty:
        def __init__(self, path):
            self.root, self.n, self.size = Path(path), 0, 16

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(kdata, "KappaDataset", Empty)
    (tmp_path / "e").mkdir()
    log = logging.getLogger("astro.test_kappa_review")
    with caplog.at_level(logging.WARNING, logger=log.name):
        eps, origin = parity_epsilon({"training": {"size": 16, "dataset_path": str(tmp_path / "e")}}, 1, 0, log=log)
    assert origin == "random fields"
    assert "holds no maps" in caplog.text and "not the model's" not in caplog.text


# ---------------------------------------------------------------- review of copied workspaces and messages


def test_export_in_a_copied_workspace_reads_the_copy_s_training_set(trained, tmp_path, capsys, caplog):
    """model.json kept the training set's absolute path: a copied workspace's export read the original's set,
    and with the copy's set removed it still read the original's, with no warning."""
    import shutil

    ws, _ = trained
    meta = json.loads((ws / "lens" / "kappa" / "models" / "u" / "model.json").read_text())
    assert meta["training"]["dataset_path"] == "../../data/tiny"     # relative to the model folder
    copy = tmp_path / "copy"
    shutil.copytree(ws, copy, ignore=shutil.ignore_patterns("runs", "predictions", "*.onnx"))
    base = ["-w", copy, "--json", "--set", "lens.kappa.export.parity_samples=2", "lens", "kappa", "export",
            "--model", "u"]
    code, out, err = run(capsys, *base)
    assert code == 0, err
    assert json.loads(out)["parity_inputs"] == str((copy / "lens" / "kappa" / "data" / "tiny").resolve())
    # a model.json of an earlier version (the original's absolute path): the copy's set of that name
    mjson = copy / "lens" / "kappa" / "models" / "u" / "model.json"
    old = json.loads(mjson.read_text())
    old["training"]["dataset_path"] = str((ws / "lens" / "kappa" / "data" / "tiny").resolve())
    mjson.write_text(json.dumps(old))
    code, out, err = run(capsys, "--overwrite", *base)
    assert code == 0, err
    assert json.loads(out)["parity_inputs"] == str((copy / "lens" / "kappa" / "data" / "tiny").resolve())
    mjson.write_text(json.dumps(meta))
    shutil.rmtree(copy / "lens" / "kappa" / "data" / "tiny")
    code, out, err = run(capsys, "--overwrite", *base)
    assert code == 0, err
    assert json.loads(out)["parity_inputs"] == "random fields"
    gone = str((copy / "lens" / "kappa" / "data" / "tiny").resolve())   # named where it was looked for
    assert gone in err + caplog.text and "is gone" in err + caplog.text


def test_parity_inputs_of_an_old_model_json_with_an_absolute_path(trained, tmp_path, caplog):
    from astrotool_lens.kappa.export import parity_epsilon

    ws, _ = trained
    tiny = (ws / "lens" / "kappa" / "data" / "tiny").resolve()
    elsewhere = tmp_path / "elsewhere" / "lens" / "kappa"
    old = {"training": {"size": S, "dataset_path": str(tiny), "dataset": "tiny"}}
    eps, origin = parity_epsilon(old, 2, 0, model=elsewhere / "models" / "u",
                                 stage=elsewhere / "data")          # an absolute path, no copy here: read as is
    assert origin == str(tiny) and eps.shape == (2, 3, S, S)
    log = logging.getLogger("astro.test_kappa_review")
    with caplog.at_level(logging.WARNING, logger=log.name):
        gone = {"training": {"size": S, "dataset_path": str(tmp_path / "gone"), "dataset": "gone"}}
        _, origin = parity_epsilon(gone, 1, 0, log=log, model=ws / "lens" / "kappa" / "models" / "u",
                                   stage=ws / "lens" / "kappa" / "data")
    assert origin == "random fields" and "is gone" in caplog.text and str(tmp_path / "gone") in caplog.text


def test_train_help_lists_the_precision_default_among_its_choices(capsys, monkeypatch):
    """--precision listed ``32 | bf16-mixed | 16-mixed`` but showed ``[default: 32-true]``."""
    import re

    monkeypatch.setenv("COLUMNS", "300")
    monkeypatch.setenv("TERMINAL_WIDTH", "300")
    for cmd in (("lens", "kappa", "train"), ("lens", "train")):
        with contextlib.suppress(SystemExit):
            main([*cmd, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        m = re.search(r"--precision <str> (.+?) \(sets ml\.precision\) \[default: ([\w-]+)\]", text)
        assert m, text
        assert m.group(2) in [c.strip() for c in m.group(1).split("|")], m.group(0)


def test_an_input_channel_named_twice_is_a_configuration_error(tmp_path, capsys):
    """--extra-inputs ks,ks ran for 7 s, then stopped with a bare ValueError (exit 1)."""
    code = main(["-w", str(tmp_path / "ws"), "lens", "kappa", "train", "--dataset", "none", "--extra-inputs",
                 "ks,ks"])
    err = capsys.readouterr().err
    assert code == 2 and "lens.kappa.train.extra_inputs" in err and "each channel once, got ['ks', 'ks']" in err
