"""Splits of kappa map sets: exact counts for small sets, few maps moved as a set grows, the split method
recorded, and --split refused for folders, tarballs and unfinished sets (score, predict, open_maps)."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from astrotool.errors import InputError

from .conftest import NAMES, make_root, make_tar, perfect_predictions, run


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
