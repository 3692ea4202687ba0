"""Raw kappa maps: checks, map sets (folders, tarballs, packed sets), pairing by name, splits, packing."""

from __future__ import annotations

import io
import json
import random
import tarfile
from pathlib import Path

import numpy as np
import pytest

from astrotool.cli import main
from astrotool.errors import InputError

from astrotool_lens.kappa import sources as src
from astrotool_lens.kappa.sources import check_map, open_maps, split_of


S = 32


def run(capsys, *args):
    code = main(["--json", *(str(a) for a in args)])
    out = capsys.readouterr()
    return code, out.out, out.err


def make_root(root: Path, names, kappa=True, seed=0):
    rng = np.random.default_rng(seed)
    (root / "EPSILON").mkdir(parents=True, exist_ok=True)
    if kappa:
        (root / "KAPPA").mkdir(parents=True, exist_ok=True)
    for n in names:
        np.save(root / "EPSILON" / f"{n}.npy", rng.normal(0, 0.3, (3, S, S)).astype(np.float16))
        if kappa:
            np.save(root / "KAPPA" / f"{n}.npy", rng.normal(0, 0.05, (S, S)).astype(np.float16))
    return root


def make_tar(root: Path, tar: Path, top="part1", seed=1, bad_member=None):
    files = sorted(p for p in root.rglob("*.npy"))
    random.Random(seed).shuffle(files)
    with tarfile.open(tar, "w:gz") as tf:
        for p in files:
            arc = f"{top}/{p.relative_to(root)}"
            data = p.read_bytes() if arc != bad_member else b"\x93NUMPY garbage"
            info = tarfile.TarInfo(arc)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return tar


NAMES = [f"{i:05d}_{j:05d}" for i, j in zip(range(0, 60, 2), range(100, 130))]


def test_check_map_messages():
    ok = np.zeros((3, S, S), np.float16)
    assert check_map(ok, "epsilon", "a.npy") is ok
    with pytest.raises(InputError, match=r"a.npy: shape \(128, 128\), expected \(3, S, S\)"):
        check_map(np.zeros((128, 128), np.float16), "epsilon", "a.npy")
    with pytest.raises(InputError, match=r"k.npy: dtype int64"):
        check_map(np.zeros((S, S), np.int64), "kappa", "k.npy")
    bad = np.zeros((S, S), np.float32)
    bad[0, :3] = np.nan
    bad[1, 0] = np.inf
    with pytest.raises(InputError, match="3 NaN values and 1 infinite value$"):
        check_map(bad, "kappa", "k.npy")
    with pytest.raises(InputError, match="at least 8"):
        check_map(np.zeros((4, 4)), "kappa", "k.npy")
    with pytest.raises(InputError, match=r"expected \(32, 32\) like the other maps"):
        check_map(np.zeros((64, 64)), "kappa", "k.npy", size=32)


def test_folder_and_tar_map_sets(tmp_path, monkeypatch, map_ctx):
    root = make_root(tmp_path / "set", NAMES[:10])
    tar = make_tar(root, tmp_path / "set.tar.gz")
    ctx = map_ctx(tmp_path / "ws")
    f = open_maps(root, "kappa", ctx)
    assert f.names == sorted(NAMES[:10]) and f.size == S and len(f) == 10
    # batches in name order, float32, and each file loaded only when its batch is built
    loads = []
    real = src.load_npy
    monkeypatch.setattr(src, "load_npy", lambda s, w: loads.append(w) or real(s, w))
    seen = []
    for names, arr in f.iter_batches(4):
        assert arr.dtype == np.float32 and arr.shape == (len(names), S, S)
        assert len(loads) <= len(seen) + len(names) + 1  # +1: the first file read for .size
        seen += names
    assert seen == f.names
    t = open_maps(tar, "kappa", ctx)
    assert t.names == f.names and t.size == S
    got = {}
    for names, arr in t.iter_batches(3):
        assert len(names) <= 3
        got.update(zip(names, arr))
    assert all(np.array_equal(got[n], f.read([n])[0]) for n in f.names)
    assert np.array_equal(t.read(f.names[::-1]), f.read(f.names[::-1]))
    with pytest.raises(InputError, match="no such file or folder.*data sets: \\(none\\)"):
        open_maps("nothing_here", "epsilon", ctx)
    (tmp_path / "eps_only" / "EPSILON").mkdir(parents=True)
    with pytest.raises(InputError, match="has no KAPPA/ folder"):
        open_maps(tmp_path / "eps_only", "kappa", ctx)


def test_splits_depend_on_seed_and_names_only():
    names = [f"m{i:04d}" for i in range(3000)]
    a = split_of(7, names, (0.8, 0.1, 0.1))
    assert list(a) == list(split_of(7, names, (0.8, 0.1, 0.1)))
    # adding maps moves only maps next to a split boundary: about as many as were added, at most
    more = split_of(7, names + [f"x{i}" for i in range(500)], (0.8, 0.1, 0.1))
    assert (more[:3000] != a).sum() <= 500 + 3
    assert [int((a == s).sum()) for s in ("train", "val", "test")] == [2400, 300, 300]   # exact counts
    assert list(split_of(8, names, (0.8, 0.1, 0.1))) != list(a)
    assert list(split_of(7, names, (8, 1, 1))) == list(a)   # the fractions are divided by their sum, as documented


def _packed(ws, name):
    from astrotool_lens.kappa.data import KappaDataset

    return KappaDataset(ws / "lens" / "kappa" / "data" / name)


def test_pack_pairs_by_name_and_unpaired(tmp_path, capsys, map_ctx):
    ws = tmp_path / "ws"
    root = make_root(tmp_path / "set", NAMES)
    # listing orders differ: KAPPA files written in another order do not matter; rename to shuffle inode order
    code, out, err = run(capsys, "-w", ws, "-q", "lens", "kappa", "data", root, "--shard-size", 8)
    assert code == 0, err
    s = json.loads(out)
    assert s["n"] == 30 and s["size"] == S and sum(s["splits"].values()) == 30 and s["shards"] == 4
    ds = _packed(ws, "set")
    assert list(ds.names) == sorted(NAMES) and ds.has_kappa
    b = ds.read(np.arange(30))
    for k, n in enumerate(ds.names):
        assert np.array_equal(b["epsilon"][k], np.load(root / "EPSILON" / f"{n}.npy"))
        assert np.array_equal(b["kappa"][k], np.load(root / "KAPPA" / f"{n}.npy"))
    # rerun with the same inputs: every shard kept; other settings refused naming the key
    code, out, err = run(capsys, "-w", ws, "-q", "lens", "kappa", "data", root, "--shard-size", 8)
    assert code == 0 and json.loads(out)["skipped_shards"] == 4
    code, out, err = run(capsys, "-w", ws, "-q", "lens", "kappa", "data", root, "--shard-size", 10)
    assert code == 2 and "shard_size" in err
    # a missing KAPPA and an extra KAPPA: named, refused; --drop-unpaired packs the rest
    (root / "KAPPA" / f"{NAMES[3]}.npy").unlink()
    np.save(root / "KAPPA" / "zz_extra.npy", np.zeros((S, S), np.float16))
    code, out, err = run(capsys, "-w", ws, "-q", "lens", "kappa", "data", root, "--name", "u")
    assert code == 2 and NAMES[3] in err and "zz_extra" in err and "1 EPSILON without KAPPA" in err
    code, out, err = run(capsys, "-w", ws, "-q", "lens", "kappa", "data", root, "--name", "u", "--drop-unpaired")
    assert code == 0, err
    s = json.loads(out)
    assert s["n"] == 29 and s["unpaired"]["epsilon_only"]["names"] == [NAMES[3]]
    assert s["unpaired"]["kappa_only"]["names"] == ["zz_extra"]
    # the packed set is a map source by name and split
    ctx = map_ctx(ws)
    m = open_maps("u", "kappa", ctx, split="train")
    assert m.names == sorted(m.names) and len(m) == s["splits"]["train"]
    names, arr = next(m.iter_batches(5))
    assert arr.dtype == np.float32 and np.array_equal(arr[0], np.load(root / "KAPPA" / f"{names[0]}.npy"))
    # one map fewer moves at most one other map (one next to a split boundary)
    su = dict(zip(_packed(ws, "u").names, _packed(ws, "u").metadata(["split"])["split"]))
    sa = dict(zip(ds.names, ds.metadata(["split"])["split"]))
    assert sum(sa[n] != su[n] for n in su) <= 1


def test_the_packed_set_s_table_opens_with_table_read_with_a_description_per_column(tmp_path, capsys):
    from astropy.table import Table

    ws = tmp_path / "ws"
    code, out, err = run(capsys, "-w", ws, "-q", "lens", "kappa", "data", make_root(tmp_path / "set", NAMES[:6]))
    assert code == 0, err
    t = Table.read(ws / "lens" / "kappa" / "data" / "set" / "set_metadata.parquet")
    assert t.colnames == ["index", "name", "split"] and sorted(t["name"]) == sorted(NAMES[:6])
    assert [c for c in t.colnames if not t[c].description] == []
    assert all(t[c].unit is None for c in t.colnames)   # a number, a file stem, a split: no unit
    assert t.meta["provenance"]["command"] == "lens kappa data"


def test_tarball_packs_like_folder(tmp_path, capsys):
    ws = tmp_path / "ws"
    root = make_root(tmp_path / "set", NAMES[:20])
    tar = make_tar(root, tmp_path / "part.tar.gz")
    assert run(capsys, "-w", ws, "-q", "lens", "kappa", "data", root, "--name", "f", "--shard-size", 6)[0] == 0
    code, out, err = run(capsys, "-w", ws, "-q", "lens", "kappa", "data", tar, "--shard-size", 6)
    assert code == 0, err
    assert json.loads(out)["name"] == "part"
    a, b = _packed(ws, "f"), _packed(ws, "part")
    assert list(a.names) == list(b.names)
    ra, rb = a.read(np.arange(20)), b.read(np.arange(20))
    assert all(np.array_equal(ra[k], rb[k]) for k in ("epsilon", "kappa"))
    assert list(a.metadata(["split"])["split"]) == list(b.metadata(["split"])["split"])
    assert not (ws / "lens" / "kappa" / "data" / "part" / ".staging").exists()
    # input-only: no KAPPA/ -> epsilon only
    eps_only = make_root(tmp_path / "test_in", NAMES[:5], kappa=False)
    code, out, err = run(capsys, "-w", ws, "-q", "lens", "kappa", "data", eps_only)
    assert code == 0, err
    assert json.loads(out)["input_only"]
    assert not _packed(ws, "test_in").has_kappa
    assert set(_packed(ws, "test_in").metadata(["split"])["split"]) == {"test"}  # it can only be predicted


def test_bad_tarballs(tmp_path, capsys):
    ws = tmp_path / "ws"
    root = make_root(tmp_path / "set", NAMES[:8])
    member = f"top/KAPPA/{NAMES[2]}.npy"
    bad = make_tar(root, tmp_path / "bad.tar.gz", top="top", bad_member=member)
    code, out, err = run(capsys, "-w", ws, "-q", "lens", "kappa", "data", bad)
    assert code == 2 and f"bad.tar.gz:{member}" in err and "not a readable .npy" in err
    good = make_tar(root, tmp_path / "good.tar.gz")
    raw = good.read_bytes()
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(raw[: len(raw) // 2])
    code, out, err = run(capsys, "-w", ws, "-q", "lens", "kappa", "data", cut)
    assert code == 2 and "cut.tar.gz" in err and "truncated" in err
    # neither left an empty set folder behind, which later errors listed as a dataset
    assert not (ws / "lens/kappa/data/bad").exists() and not (ws / "lens/kappa/data/cut").exists()


@pytest.mark.parametrize("fault,msg", [("shape", r"shape \(32, 32\), expected \(3, S, S\)"),
                                       ("dtype", "dtype int64"), ("nan", "5 NaN values")])
def test_bad_maps_named(tmp_path, capsys, fault, msg):
    import re

    ws = tmp_path / "ws"
    root = make_root(tmp_path / "set", NAMES[:12])
    victim = root / "EPSILON" / f"{NAMES[9]}.npy"
    if fault == "shape":
        np.save(victim, np.zeros((S, S), np.float16))
    elif fault == "dtype":
        np.save(victim, np.zeros((3, S, S), np.int64))
    else:
        a = np.zeros((3, S, S), np.float16)
        a[1, 2, :5] = np.nan
        np.save(victim, a)
    code, out, err = run(capsys, "-w", ws, "-q", "lens", "kappa", "data", root, "--shard-size", 4)
    assert code == 2 and str(victim) in err and re.search(msg, err), err
    assert len(re.findall(msg, err)) == 1, err   # said once, by the error (not also by the map's log)
    # the shards before the bad map stay, and a rerun once the file is fixed keeps them
    assert (ws / "lens" / "kappa" / "data" / "set" / "shard00000_arrays.h5").is_file()
    np.save(victim, np.zeros((3, S, S), np.float16))
    code, out, err = run(capsys, "-w", ws, "-q", "lens", "kappa", "data", root, "--shard-size", 4)
    assert code == 0, err
    assert json.loads(out)["skipped_shards"] == 2 and json.loads(out)["n"] == 12


def test_pairing_ignores_listing_order(tmp_path, capsys, monkeypatch):
    """KAPPA/ listed in reverse order (as another file system might): the pairs still match by name."""
    ws = tmp_path / "ws"
    root = make_root(tmp_path / "set", NAMES[:9])
    real_glob = Path.glob

    def glob(self, pattern):
        hits = list(real_glob(self, pattern))
        return iter(sorted(hits, reverse=self.name == "KAPPA"))

    monkeypatch.setattr(Path, "glob", glob)
    assert [p.stem for p in (root / "KAPPA").glob("*.npy")] == sorted(NAMES[:9], reverse=True)
    code, out, err = run(capsys, "-w", ws, "-q", "lens", "kappa", "data", root, "--shard-size", 4)
    assert code == 0, err
    ds = _packed(ws, "set")
    kap = ds.read(np.arange(9), ["kappa"])["kappa"]
    for k, n in enumerate(ds.names):
        assert np.array_equal(kap[k], np.load(root / "KAPPA" / f"{n}.npy"))


def test_sim_name_and_duplicate_across_tarballs(tmp_path, capsys, map_ctx):
    ws = tmp_path / "ws"
    make_root(ws / "lens" / "kappa" / "sims" / "mysim", NAMES[:6])
    code, out, err = run(capsys, "-w", ws, "-q", "lens", "kappa", "data", "mysim")
    assert code == 0, err
    assert json.loads(out)["name"] == "mysim" and json.loads(out)["n"] == 6
    assert open_maps("mysim", "epsilon", map_ctx(ws)).describe().startswith("data set")  # the packed set comes first
    root = make_root(tmp_path / "set", NAMES[:4])
    a = make_tar(root, tmp_path / "a.tar.gz", top="a")
    b = make_tar(root, tmp_path / "b.tar.gz", top="b")
    code, out, err = run(capsys, "-w", ws, "-q", "lens", "kappa", "data", a, b, "--name", "ab")
    assert code == 2 and "duplicate map name" in err and "a.tar.gz:a/" in err and "b.tar.gz:b/" in err
    with pytest.raises(InputError, match="duplicate map name"):
        open_maps([a, b], "kappa", map_ctx(ws))


def test_a_bare_name_is_the_workspace_set_before_a_folder_of_the_current_directory(tmp_path, capsys, monkeypatch,
                                                                                    map_ctx):
    ws = tmp_path / "ws"
    make_root(ws / "lens" / "kappa" / "sims" / "demo", NAMES[:6])
    monkeypatch.chdir(tmp_path)
    (tmp_path / "demo").mkdir()  # e.g. the workspace of `astro -w demo demo`, no maps in it
    code, out, err = run(capsys, "-w", ws, "-q", "lens", "kappa", "data", "demo")
    assert code == 0, err
    assert json.loads(out)["n"] == 6
    assert open_maps("demo", "epsilon", map_ctx(ws)).describe().startswith("data set")
    make_root(tmp_path / "demo", NAMES[6:9], kappa=False)
    assert len(open_maps("./demo", "epsilon", map_ctx(ws))) == 3  # a path stays a path


@pytest.mark.parametrize("as_tar", [False, True])
def test_data_under_shard_packs_each_tasks_shards_and_indexes_when_all_exist(tmp_path, capsys, as_tar):
    ws = tmp_path / "ws"
    root = make_root(tmp_path / "set", NAMES[:20])
    source = make_tar(root, tmp_path / "set.tar.gz") if as_tar else root
    out_dir = ws / "lens" / "kappa" / "data" / "shd"
    args = ("lens", "kappa", "data", source, "--name", "shd", "--shard-size", 5)
    code, out, err = run(capsys, "-w", ws, "--shard", "0/2", *args)
    assert code == 0, err
    s = json.loads(out)
    assert s["missing_shards"] == 2 and s["shards"] == 4 and s["shard"] == "0/2"
    assert "2 of 4 shards missing" in err
    assert sorted(p.name for p in out_dir.glob("shard*_arrays.h5")) == ["shard00000_arrays.h5",
                                                                         "shard00002_arrays.h5"]
    assert not list(out_dir.glob("*_dataset.json")) and not list(out_dir.glob(".staging*"))
    code, out, err = run(capsys, "-w", ws, "--shard", "1/2", *args)
    assert code == 0, err
    s = json.loads(out)
    assert s["missing_shards"] == 0 and s["n"] == 20
    assert list(_packed(ws, "shd").names) == sorted(NAMES[:20])
    code, _, err = run(capsys, "-w", ws, "--overwrite", "--shard", "1/2", *args)
    assert code == 2 and "--shard" in err


def test_extra_files_in_the_layout_are_reported_and_dotfiles_ignored(tmp_path, capsys):
    ws = tmp_path / "ws"
    root = make_root(tmp_path / "set", NAMES[:6])
    (root / "EPSILON" / "README.txt").write_text("notes")
    (root / "EPSILON" / "00003b.npz").write_bytes(b"PK")
    (root / "EPSILON" / "sub").mkdir()
    (root / "KAPPA" / ".DS_Store").write_bytes(b"\0")
    (root / "EPSILON" / "._00001.npy").write_bytes(b"\0\5\26\7")   # macOS AppleDouble: no map (was read as one)
    code, out, err = run(capsys, "-w", ws, "lens", "kappa", "data", root)
    assert code == 0, err
    assert "3 entries that are not .npy map files" in err and "00003b.npz, README.txt, sub/" in err, err
    assert ".DS_Store" not in err and str(root / "KAPPA") not in err
    assert json.loads(out)["n"] == 6
    code, out, err = run(capsys, "-w", ws, "lens", "kappa", "score", root / "KAPPA", "--truth", root, "--no-plots")
    assert code == 0 and "3 entries" not in err, err   # KAPPA/ holds only a dotfile besides the maps
    (root / "KAPPA" / "old").mkdir()
    code, out, err = run(capsys, "-w", ws, "lens", "kappa", "score", root / "KAPPA", "--truth", root, "--no-plots")
    assert code == 0 and "1 entry that is not a .npy map file" in err and "old/" in err, err


def test_a_text_or_object_file_named_npy_is_refused_without_numpys_advice(tmp_path):
    from astrotool_lens.kappa.sources import load_npy

    txt = tmp_path / "t.npy"
    txt.write_text("some notes, not an array\n")
    with pytest.raises(InputError) as exc:
        load_npy(txt, txt)
    msg = str(exc.value)
    assert "not a .npy array file" in msg and "allow_pickle" not in msg and "trust" not in msg
    with pytest.raises(InputError, match="not a .npy array file"):
        load_npy(txt.read_bytes(), "x.tar.gz:EPSILON/t.npy")
    obj = tmp_path / "o.npy"
    np.save(obj, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InputError) as exc:
        load_npy(obj, obj)
    assert "pickled Python objects, refused" in str(exc.value) and "allow_pickle" not in str(exc.value)


def test_extra_members_of_a_tarball_layout_are_reported(tmp_path, capsys):
    ws = tmp_path / "ws"
    root = make_root(tmp_path / "set", NAMES[:4])
    (root / "EPSILON" / "README.txt").write_text("notes")
    (root / "KAPPA" / ".DS_Store").write_bytes(b"\0")
    tar = tmp_path / "t.tar.gz"
    with tarfile.open(tar, "w:gz") as tf:
        for p in sorted(root.rglob("*")):
            tf.add(p, arcname=f"top/{p.relative_to(root)}", recursive=False)
    code, out, err = run(capsys, "-w", ws, "lens", "kappa", "data", tar)
    assert code == 0, err
    assert "1 member that is not a .npy map" in err and "top/EPSILON/README.txt" in err and ".DS_Store" not in err
    code, out, err = run(capsys, "-w", ws, "lens", "kappa", "score", root / "KAPPA", "--truth", tar, "--no-plots")
    assert code == 0 and err.count("top/EPSILON/README.txt") == 1, err


def test_a_complex_map_is_named_complex():
    from astrotool.errors import InputError
    from astrotool_lens.kappa.sources import check_map

    with pytest.raises(InputError, match=r"e\.npy: complex dtype complex64 \(shape \(32, 32\)\), expected real"):
        check_map(np.zeros((32, 32), np.complex64), "epsilon", "e.npy")
    with pytest.raises(InputError, match=r"shape \(16, 16\), expected \(32, 32\) like its true map"):
        check_map(np.zeros((16, 16), np.float16), "kappa", "k.npy", 32, like="its true map")


def test_an_empty_split_is_warned_about_with_the_key_to_change(tmp_path, capsys):
    ws = tmp_path / "ws"
    root = make_root(tmp_path / "few", NAMES[:2])   # from 3 maps on, no split of positive fraction is empty
    code, out, err = run(capsys, "-w", ws, "lens", "kappa", "data", root, "--set",
                         "lens.kappa.data.split=[0.6,0.4,0.0001]", "--set", "lens.kappa.data.seed=1")
    assert code == 0, err
    assert json.loads(out)["splits"]["test"] == 0 and json.loads(out)["splits"]["val"] > 0
    assert "split 'test' holds no map" in err and "lens.kappa.data.split" in err
    assert "split 'val'" not in err and "split 'train'" not in err
    # a fraction of 0 asks for an empty split; an input-only set is all test: no warning
    for sub, args in (("zero", ["--set", "lens.kappa.data.split=[0.6,0.4,0]"]), ("inputs", [])):
        code, out, err = run(capsys, "-w", ws, "lens", "kappa", "data", make_root(tmp_path / sub, NAMES[:10],
                             kappa=not args), *args)
        assert code == 0, err
        assert "holds no map" not in err


@pytest.mark.parametrize("command, hint", [
    ("train", "run `astro -w {ws} lens kappa data` first"),
    ("baseline", "pack one with `astro -w {ws} lens kappa data`"),
])
def test_missing_data_set_hint_names_the_workspace(tmp_path, capsys, command, hint):
    """The hint lacked the `-w` of the command that printed it: pasted, it packed maps into another folder."""
    capsys.readouterr()
    assert main(["-w", str(tmp_path), "lens", "kappa", command]) == 2
    assert hint.format(ws=tmp_path) in " ".join(capsys.readouterr().err.split())


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
