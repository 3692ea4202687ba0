"""astrotool.ml.data: sharded array datasets -- round trip, damage, splits, streaming, DataLoader."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("h5py")
pytest.importorskip("pyarrow")

from astrotool.errors import AstroError, InputError  # noqa: E402
from astrotool.ml.data import (  # noqa: E402
    ArrayDataset, DatasetWriter, EpochBatchSampler, group_split, resolve_dataset, torch_loader,
)


def _samples(n: int, seed: int = 0) -> tuple[dict, dict]:
    rng = np.random.default_rng(seed)
    arrays = {"img": rng.normal(size=(n, 2, 5, 4)).astype(np.float32),
              "label": (np.arange(n) % 3).astype(np.int16)}
    meta = {"obj": np.array([f"ZTF{i // 2:03d}" for i in range(n)]), "mag": rng.uniform(18, 21, n)}
    return arrays, meta


def _write(root, n=23, shard_size=10, name="toy", compression="low", seed=0, **attrs) -> tuple[dict, dict]:
    arrays, meta = _samples(n, seed)
    w = DatasetWriter(str(root), name, shard_product="cubes", kind="toy", compression=compression,
                      command="test write")
    starts = list(range(0, n, shard_size))
    for k, a in enumerate(starts):
        b = min(n, a + shard_size)
        w.write_shard(k, a, {key: v[a:b] for key, v in arrays.items()}, {c: v[a:b] for c, v in meta.items()},
                      attrs={"config": {"x": 1}})
    w.finalize(len(starts), attrs=attrs or {"pixel_scale": 0.2, "bands": ["g", "r"]})
    return arrays, meta


def test_round_trip_arrays_metadata_and_manifest(tmp_path):
    import h5py

    arrays, meta = _write(tmp_path / "ds")
    ds = ArrayDataset(tmp_path / "ds")
    assert (ds.n, ds.name, len(ds)) == (23, "toy", 23)
    assert ds.arrays == {"img": ((2, 5, 4), np.dtype("float32")), "label": ((), np.dtype("int16"))}
    assert ds.attrs == {"pixel_scale": 0.2, "bands": ["g", "r"]}
    assert [p.name for p in ds.shard_paths] == ["shard00000_cubes.h5", "shard00001_cubes.h5", "shard00002_cubes.h5"]
    m = json.loads((tmp_path / "ds" / "toy_dataset.json").read_text())
    assert len({s["sha256"] for s in m["shards"]}) == len(m["shards"])  # each shard's own content
    sha = m["shards"][2].pop("sha256")
    assert m["shards"][2] == {"file": "shard00002_cubes.h5", "start": 20, "stop": 23} and len(sha) == 16
    assert m["arrays"]["img"] == {"shape": [2, 5, 4], "dtype": "float32"} and m["metadata"] == "toy_metadata.parquet"
    assert m["provenance"]["command"] == "test write" and "astrotool" in m["provenance"]["versions"]
    # everything, and random access in any order with repeats, across shards
    got = ds.read()
    assert np.array_equal(got["img"], arrays["img"]) and np.array_equal(got["label"], arrays["label"])
    pick = [22, 3, 10, 3, 0, 19]
    part = ds.read(pick, names="img")
    assert list(part) == ["img"] and np.array_equal(part["img"], arrays["img"][pick])
    md = ds.metadata()
    assert ds.columns == ["index", "obj", "mag"]
    assert np.array_equal(md["index"], np.arange(23)) and np.array_equal(md["obj"], meta["obj"])
    assert np.array_equal(md["mag"], meta["mag"])
    assert list(ds.metadata(["obj"])) == ["obj"]
    with h5py.File(ds.shard_paths[1], "r", locking=False) as h5:  # provenance and writer attributes
        assert h5.attrs["astrotool_command"] == "test write" and json.loads(h5.attrs["config"]) == {"x": 1}
        assert (h5.attrs["start"], h5.attrs["stop"]) == (10, 20) and h5["img"].compression == "lzf"
        assert h5["img"].chunks[1:] == (2, 5, 4)
    with pytest.raises(KeyError, match="no array 'nope'"):
        ds.read([0], names=["nope"])
    with pytest.raises(IndexError):
        ds.read([23])


def test_a_shard_replaced_by_another_set_s_is_refused(tmp_path):
    """Another set's shard of the same samples [start, stop) copied over one of this set's: it was read as
    this set's (and a measurement kept), though its content digest is not the manifest's."""
    import shutil

    _write(tmp_path / "a", seed=0)
    _write(tmp_path / "b", seed=1)
    shutil.copyfile(tmp_path / "b/shard00001_cubes.h5", tmp_path / "a/shard00001_cubes.h5")
    with pytest.raises(InputError, match=r"shard00001_cubes.h5: its content \(content_sha256 [0-9a-f]{16}\) is not "
                                         r"the manifest's \([0-9a-f]{16}\): the shard was replaced"):
        ArrayDataset(tmp_path / "a")
    assert ArrayDataset(tmp_path / "b").n == 23


def test_writer_refuses_bad_input_and_finalize_needs_every_shard(tmp_path):
    with pytest.raises(AstroError, match="dataset name"):   # wrote ../evil_dataset.json outside the folder
        DatasetWriter(str(tmp_path / "set"), "../evil")
    w = DatasetWriter(str(tmp_path), "w")
    with pytest.raises(ValueError, match="holds 2 samples, expected 3"):
        w.write_shard(0, 0, {"a": np.zeros((3, 2)), "b": np.zeros((2, 2))})
    with pytest.raises(ValueError, match="reserved"):
        w.write_shard(0, 0, {"index": np.zeros(3)})
    w.write_shard(0, 0, {"a": np.zeros((3, 2))})
    with pytest.raises(ValueError, match="reserved manifest keys n"):
        w.finalize(1, attrs={"n": 5})
    with pytest.raises(InputError, match="shard00001_arrays.h5: file not found"):
        w.finalize(2)
    assert not w.manifest_path.exists()                      # no manifest: the set is not complete
    w.write_shard(1, 5, {"a": np.zeros((3, 2))})             # leaves a gap at 3..4
    with pytest.raises(InputError, match="starts at sample 5, expected 3"):
        w.finalize(2)
    w.write_shard(1, 3, {"a": np.zeros((3, 2))}, metadata={"field": np.arange(3)})
    with pytest.raises(InputError, match=r"shard00001_arrays.h5: its metadata columns \['field'\] differ"):
        w.finalize(2)                                        # named, not a bare KeyError
    with pytest.raises(ValueError, match="metadata 'name' mixes strings"):
        w.write_shard(1, 3, {"a": np.zeros((3, 2))}, metadata={"name": np.array([None, "x", "y"], dtype=object)})
    with pytest.raises(ValueError, match="empty sample shape"):
        w.write_shard(1, 3, {"a": np.zeros((3, 0))})
    w.write_shard(0, 0, {"a": np.zeros((3, 2))}, metadata={"field": np.array(["a", "b", "c"])})
    w.write_shard(1, 3, {"a": np.zeros((3, 2))}, metadata={"field": np.arange(3)})
    with pytest.raises(InputError, match=r"shard00001_arrays.h5: its metadata column\(s\) field hold another type"):
        w.finalize(2)                                        # text in one shard, numbers in the other
    w.write_shard(0, 0, {"a": np.zeros((3, 2))})
    w.write_shard(1, 3, {"a": np.zeros((3, 2))})
    assert w.finalize(2)["n"] == 6 and ArrayDataset(tmp_path).n == 6


def test_finished_shard_tells_what_to_redraw(tmp_path):
    _write(tmp_path, n=20, shard_size=10)
    w = DatasetWriter(str(tmp_path), "toy", shard_product="cubes")
    assert np.array_equal(w.finished_shard(1, 10, 20)["obj"], _samples(20)[1]["obj"][10:])
    assert w.finished_shard(1, 10, 15) is None                 # written for another shard size
    assert w.finished_shard(2, 20, 30) is None                 # missing
    w.shard_path(0).write_bytes(b"not hdf5 at all")
    assert w.finished_shard(0, 0, 10) is None                  # damaged: draw it again


@pytest.mark.parametrize("damage, culprit, message", [
    ("truncate_manifest", "toy_dataset.json", "unreadable dataset manifest"),
    ("foreign_manifest", "toy_dataset.json", "not an astrotool-array-dataset manifest"),
    ("malformed_manifest", "toy_dataset.json", "malformed dataset manifest"),
    ("wrong_n", "toy_dataset.json", "the manifest says n = 99"),
    ("missing_shard", "shard00001_cubes.h5", "shard listed in the manifest is missing"),
    ("corrupt_shard", "shard00001_cubes.h5", "not a readable HDF5 file"),
    # bytes damaged inside: h5py's bare KeyError/RuntimeError named neither file nor object (exit 1)
    ("damaged_heap", "shard00001_cubes.h5", r"unreadable HDF5 content \(corrupt\?\)"),
    ("damaged_group", "shard00001_cubes.h5", r"unreadable HDF5 content \(corrupt\?\)"),
    ("wrong_shape", "shard00001_cubes.h5",
     r"array 'img' is float32 \(3, 5, 4\) per sample, the manifest says float32 \(2, 5, 4\)"),
    ("no_manifest", "ds", "not a finished dataset"),
])
def test_damage_names_the_file(tmp_path, damage, culprit, message):
    root = tmp_path / "ds"
    _write(root)
    mpath = root / "toy_dataset.json"
    shard = root / "shard00001_cubes.h5"
    m = json.loads(mpath.read_text())
    if damage == "truncate_manifest":
        mpath.write_text(mpath.read_text()[:40])
    elif damage == "foreign_manifest":
        mpath.write_text(json.dumps({**m, "format": "something-else"}))
    elif damage == "malformed_manifest":
        mpath.write_text(json.dumps({**m, "arrays": {"img": {"shape": "2x5"}}}))
    elif damage == "wrong_n":
        mpath.write_text(json.dumps({**m, "n": 99}))
    elif damage == "missing_shard":
        shard.unlink()
    elif damage == "corrupt_shard":
        shard.write_bytes(shard.read_bytes()[:300])
    elif damage.startswith("damaged_"):
        data = bytearray(shard.read_bytes())
        start = 300 if damage == "damaged_heap" else 1000
        data[start:start + 400] = bytes((b * 7 + 13) % 256 for b in data[start:start + 400])
        shard.write_bytes(bytes(data))
    elif damage == "wrong_shape":
        DatasetWriter(str(root), "toy", shard_product="cubes").write_shard(
            1, 10, {"img": np.zeros((10, 3, 5, 4), np.float32), "label": np.zeros(10, np.int16)})
    else:
        mpath.unlink()
    with pytest.raises(InputError, match=message) as err:
        ArrayDataset(root)
    assert err.value.path.endswith(culprit)


def test_a_missing_attribute_or_object_is_not_called_corrupt(tmp_path):
    """The damaged-content check took h5py's KeyError for a missing attribute for corruption."""
    import h5py

    from astrotool.io.hdf5 import open_h5

    with h5py.File(tmp_path / "a.h5", "w") as h5:
        h5["x"] = np.zeros(3)
    for read in (lambda h5: h5.attrs["nope"], lambda h5: h5["x/y"], lambda h5: h5["zz"]):
        with pytest.raises(KeyError):
            with open_h5(tmp_path / "a.h5") as h5:
                read(h5)


def test_check_finite_names_shard_and_sample(tmp_path):
    import h5py

    _write(tmp_path)
    with h5py.File(tmp_path / "shard00001_cubes.h5", "r+") as h5:
        h5["img"][4, 1, 2, 3] = np.inf
    ds = ArrayDataset(tmp_path)
    ds.read([13])                                              # not asked to check
    with pytest.raises(InputError, match=r"shard00001_cubes.h5: NaN or infinite values in 'img' \(sample 14\)"):
        list(ds.iter_batches(8, check_finite=True))


def test_kind_is_checked_by_subclasses(tmp_path):
    _write(tmp_path)

    class Spectra(ArrayDataset):
        KIND = "spectra"

    with pytest.raises(InputError, match="holds a 'toy' dataset, expected 'spectra'"):
        Spectra(tmp_path)


def test_streaming_yields_every_sample_once_in_order(tmp_path):
    arrays, _ = _write(tmp_path, n=23, shard_size=10)
    ds = ArrayDataset(tmp_path)
    batches = list(ds.iter_batches(7, names=["img"]))
    assert [len(b["index"]) for b in batches] == [7, 7, 7, 2]
    assert np.array_equal(np.concatenate([b["index"] for b in batches]), np.arange(23))
    assert np.array_equal(np.concatenate([b["img"] for b in batches]), arrays["img"])
    assert set(batches[0]) == {"img", "index"}
    sub = [21, 2, 15, 8, 9]                                  # a subset, in its own order
    got = list(ds.iter_batches(2, indices=sub))
    assert [b["index"].tolist() for b in got] == [[21, 2], [15, 8], [9]]
    assert np.array_equal(np.concatenate([b["label"] for b in got]), arrays["label"][sub])


def test_close_and_with_release_the_shard_files(tmp_path):
    from astrotool.ml.data import OPEN_SHARDS

    arrays, _ = _write(tmp_path, n=60, shard_size=10)
    with ArrayDataset(tmp_path) as ds:
        ds.read([5, 15, 25, 35, 45, 55])
        handles = list(ds._handles.values())
        assert len(handles) == OPEN_SHARDS == 4 and all(h.id.valid for h in handles)  # the least recent went
    assert not ds._handles and not any(h.id.valid for h in handles)
    assert np.array_equal(ds.read([59])["img"], arrays["img"][[59]])         # reopened on the next read
    ds.close()
    assert not ds._handles


# ---------------------------------------------------------------------------- splits


def test_group_split_keeps_groups_whole_and_is_fixed_by_seed():
    rng = np.random.default_rng(4)
    groups = rng.integers(0, 40, size=500)                   # 40 groups of uneven sizes
    n_groups = len(np.unique(groups))
    parts = group_split(groups, (0.8, 0.1, 0.1), seed=7)
    allidx = np.concatenate(parts)
    assert np.array_equal(np.sort(allidx), np.arange(500))   # a partition
    seen = [set(groups[p]) for p in parts]
    assert not (seen[0] & seen[1] or seen[0] & seen[2] or seen[1] & seen[2])   # no group straddles
    assert [len(s) for s in seen] == [32, 4, 4] and n_groups == 40
    assert all(np.array_equal(a, b) for a, b in zip(parts, group_split(groups, (0.8, 0.1, 0.1), seed=7)))
    other = group_split(groups, (0.8, 0.1, 0.1), seed=8)
    assert not np.array_equal(other[1], parts[1])
    # string labels (objectIds) and un-normalised fractions
    names = np.array([f"obj{g}" for g in groups])
    codes = np.unique(names, return_inverse=True)[1]
    assert all(np.array_equal(a, b) for a, b in zip(group_split(names, (8, 1, 1), 7),
                                                   group_split(codes, (0.8, 0.1, 0.1), 7)))


def test_group_split_tiny_group_counts():
    # 3 groups, three positive fractions: one group each, whatever the rounding says
    parts = group_split([5, 5, 9, 9, 1], (0.8, 0.1, 0.1), seed=0)
    assert sorted(len(set(np.array([5, 5, 9, 9, 1])[p])) for p in parts) == [1, 1, 1]
    # 2 groups and a zero fraction: the empty subset is allowed
    a, b, c = group_split([0, 0, 1], (0.5, 0.5, 0.0), seed=0)
    assert len(c) == 0 and len(a) + len(b) == 3
    with pytest.raises(AstroError, match="2 group\\(s\\) cannot fill 3 non-empty subsets"):
        group_split([0, 0, 1], (0.8, 0.1, 0.1), seed=0)
    with pytest.raises(ValueError, match="non-negative"):
        group_split([0, 1], (0.5, -0.5), seed=0)


# ---------------------------------------------------------------------------- lookup


def test_resolve_dataset_by_name_or_path(tmp_path, monkeypatch):
    stage = tmp_path / "stage"
    _write(stage / "alpha")
    (stage / "beta").mkdir()
    assert resolve_dataset(stage, "alpha").name == "toy"
    assert resolve_dataset(tmp_path / "elsewhere", str(stage / "alpha")).n == 23
    with pytest.raises(InputError, match="no dataset named 'gamma' \\(available: alpha; unfinished \\(no "
                                         "manifest\\): beta\\)"):   # beta cannot be opened: not listed as one
        resolve_dataset(stage, "gamma")
    (tmp_path / "failed" / "beta").mkdir(parents=True)   # only an unfinished one: the hint, then its name
    with pytest.raises(InputError, match="\\(pack one; unfinished \\(no manifest\\): beta\\)"):
        resolve_dataset(tmp_path / "failed", "gamma", hint="pack one")
    with pytest.raises(InputError, match="run the simulator first"):
        resolve_dataset(tmp_path / "empty", "x", hint="run the simulator first")
    (tmp_path / "raw" / "maps").mkdir(parents=True)   # a folder given by a relative path, not a dataset:
    monkeypatch.chdir(tmp_path)                        # named as given, not as a name under the stage
    with pytest.raises(InputError) as err:
        resolve_dataset(stage, "./raw/maps", hint="pack it first")
    assert str(err.value).startswith("raw/maps: not a finished dataset") and "pack it first" in str(err.value)
    with pytest.raises(InputError, match="no dataset named 'raw' \\(available: alpha;"):
        resolve_dataset(stage, "raw")   # a bare name is a name, even when the current folder holds one like it


# ---------------------------------------------------------------------------- torch


def test_epoch_sampler_is_fixed_by_seed_and_epoch():
    s = EpochBatchSampler(np.arange(10, 20), 4, seed=1)
    e0 = list(s)
    assert [len(b) for b in e0] == [4, 4, 2] and sorted(sum(e0, [])) == list(range(10, 20))
    assert list(s) == e0
    s.set_epoch(1)
    assert list(s) != e0 and sorted(sum(list(s), [])) == list(range(10, 20))
    assert len(EpochBatchSampler(np.arange(10), 4, drop_last=True)) == 2
    # local shuffle: runs of 10 move as units, samples mix only within windows of 2 runs
    local = EpochBatchSampler(np.arange(100), 20, seed=3, block=10, window=2)
    batches = list(local)
    assert sorted(sum(batches, [])) == list(range(100))
    assert batches != [list(range(k, k + 20)) for k in range(0, 100, 20)]
    assert all(len({i // 10 for i in b}) == 2 for b in batches)          # each batch reads from 2 runs
    assert local.order().tolist() == EpochBatchSampler(np.arange(100), 20, seed=3, block=10, window=2).order().tolist()
    assert list(EpochBatchSampler(np.arange(5), 2, shuffle=False)) == [[0, 1], [2, 3], [4]]


def test_dataloader_batches_do_not_depend_on_workers(tmp_path):
    torch = pytest.importorskip("torch")
    arrays, _ = _write(tmp_path, n=37, shard_size=10)
    ds = ArrayDataset(tmp_path)
    ds.read([0, 36])                      # handles already open in the parent: forked workers open their own
    train = np.arange(3, 37)

    def epochs(workers):
        loader = torch_loader(ds, 5, indices=train, seed=11, num_workers=workers)
        out = []
        for epoch in (0, 1):
            loader.sampler.set_epoch(epoch)
            out.append([(b["index"].numpy().copy(), b["img"].clone(), b["label"].clone()) for b in loader])
        return out

    serial, parallel = epochs(0), epochs(2)
    for e in (0, 1):
        assert len(serial[e]) == len(parallel[e]) == 7
        for (i0, x0, y0), (i2, x2, y2) in zip(serial[e], parallel[e]):
            assert np.array_equal(i0, i2) and torch.equal(x0, x2) and torch.equal(y0, y2)
        idx = np.concatenate([b[0] for b in serial[e]])
        assert np.array_equal(np.sort(idx), train)            # every training sample once
        x = torch.cat([b[1] for b in serial[e]]).numpy()
        assert np.array_equal(x, arrays["img"][idx])           # the right pixels with the right index
    assert not np.array_equal(np.concatenate([b[0] for b in serial[0]]),
                              np.concatenate([b[0] for b in serial[1]]))


# ---------------------------------------------------------------------------- memory

_PEAK_SCRIPT = """
import json, resource, sys, tracemalloc
import numpy as np
from astrotool.ml.data import ArrayDataset
ds = ArrayDataset(sys.argv[1])
tracemalloc.start()
if sys.argv[2] == "stream":
    total = sum(float(b["x"].sum(dtype=np.float64)) for b in ds.iter_batches(256, names="x"))
else:
    total = float(ds.read(names="x")["x"].sum(dtype=np.float64))
traced = tracemalloc.get_traced_memory()[1]
# VmHWM: this process's own peak (ru_maxrss would also count the forked parent's pages before exec)
hwm = [int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmHWM:")]
print(json.dumps({"rss": hwm[0] if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                  "traced": traced, "total": total}))
"""


def _big(root, n_shards: int, per_shard: int = 512, side: int = 32) -> float:
    """``n_shards`` x ``per_shard`` samples of float32 (side, side): 2 MiB per shard; returns the sum."""
    w = DatasetWriter(str(root), "big", compression="none")
    total = 0.0
    for k in range(n_shards):
        x = np.random.default_rng(k).random((per_shard, side, side), dtype=np.float32)
        total += float(x.sum(dtype=np.float64))
        w.write_shard(k, k * per_shard, {"x": x})
    w.finalize(n_shards)
    return total


def _peak(root, mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", _PEAK_SCRIPT, str(root), mode], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout)


def test_streaming_peak_memory_stays_flat_as_the_set_grows_tenfold(tmp_path):
    """Measured in fresh processes: peak RSS and peak numpy allocation while streaming 4 MiB and 40 MiB."""
    MiB = 1 << 20
    small, big = tmp_path / "x1", tmp_path / "x10"
    t1, t10 = _big(small, 2), _big(big, 20)
    assert sum(p.stat().st_size for p in big.glob("*.h5")) > 40 * MiB
    p1, p10 = _peak(small, "stream"), _peak(big, "stream")
    assert np.isclose(p1["total"], t1) and np.isclose(p10["total"], t10)       # every sample was read
    print(f"\nstreaming peak: 1x RSS {p1['rss'] / MiB:.1f} MiB, numpy {p1['traced'] / MiB:.2f} MiB; "
          f"10x RSS {p10['rss'] / MiB:.1f} MiB, numpy {p10['traced'] / MiB:.2f} MiB")
    assert p10["traced"] < 1.2 * p1["traced"] + 0.25 * MiB and p10["traced"] < 6 * MiB
    assert p10["rss"] - p1["rss"] < 6 * MiB
    # the measurement would see a loaded set: reading all of the 10x set adds its 40 MiB
    full = _peak(big, "load")
    print(f"loading the 10x set whole: RSS {full['rss'] / MiB:.1f} MiB, numpy {full['traced'] / MiB:.2f} MiB")
    assert full["rss"] - p10["rss"] > 30 * MiB and full["traced"] > 40 * MiB


# ---------------------------------------------------------------------------- mixed shapes, sequences


def test_arrays_of_different_shapes_and_padded_sequences_in_one_set(tmp_path):
    """Stamps (3, 6, 6), features (k,), scalar labels and padded 1..4-step sequences with their lengths."""
    torch = pytest.importorskip("torch")
    from astrotool.ml.data import pad_sequences

    g = np.random.default_rng(3)
    n = 7
    steps = [g.normal(size=(k, 2)).astype(np.float32) for k in (1, 4, 2, 3, 1, 4, 2)]
    seq, lengths = pad_sequences(steps, length=4, value=-1)
    assert seq.shape == (7, 4, 2) and seq.dtype == np.float32 and lengths.tolist() == [1, 4, 2, 3, 1, 4, 2]
    assert np.array_equal(seq[2, :2], steps[2]) and np.all(seq[2, 2:] == -1)
    arrays = {"stamps": g.normal(size=(n, 3, 6, 6)).astype(np.float32),
              "features": g.normal(size=(n, 5)).astype(np.float32),
              "label": np.arange(n, dtype=np.int64) % 3, "seq": seq, "length": lengths}
    w = DatasetWriter(str(tmp_path), "mixed", compression="low")
    w.write_shard(0, 0, {k: v[:4] for k, v in arrays.items()})
    w.write_shard(1, 4, {k: v[4:] for k, v in arrays.items()})
    m = w.finalize(2)
    assert {k: v["shape"] for k, v in m["arrays"].items()} == {
        "stamps": [3, 6, 6], "features": [5], "label": [], "seq": [4, 2], "length": []}
    ds = ArrayDataset(tmp_path)
    got = ds.read([6, 1, 4])
    for k, v in arrays.items():
        assert np.array_equal(got[k], v[[6, 1, 4]]), k
    batch = next(iter(torch_loader(ds, 7, shuffle=False)))
    mask = torch.arange(4)[None, :] < batch["length"][:, None]  # True on the valid steps
    assert mask.sum(1).tolist() == lengths.tolist()
    assert torch.all(batch["seq"][~mask] == -1) and batch["label"].dtype == torch.int64
    assert batch["stamps"].shape == (7, 3, 6, 6) and batch["features"].shape == (7, 5)


def test_pad_sequences_defaults_and_refusals():
    from astrotool.ml.data import pad_sequences

    padded, lengths = pad_sequences([[1, 2, 3], [], [4]])
    assert padded.tolist() == [[1, 2, 3], [0, 0, 0], [4, 0, 0]] and lengths.tolist() == [3, 0, 1]
    assert padded.dtype == np.int64 and lengths.dtype == np.int64
    as_float, _ = pad_sequences([[1, 2], [3]], dtype=np.float32, value=np.nan)
    assert as_float.dtype == np.float32 and np.isnan(as_float[1, 1])
    with pytest.raises(ValueError, match="sequence 1 has 3 steps, more than length=2"):
        pad_sequences([[1], [1, 2, 3]], length=2)
    with pytest.raises(ValueError, match=r"sequence 1 has steps of shape \(3,\), sequence 0 \(2,\)"):
        pad_sequences([np.zeros((2, 2)), np.zeros((1, 3))])
    with pytest.raises(ValueError, match="no sequences"):
        pad_sequences([])


def test_group_split_by_strata_gives_every_subset_every_class():
    # 40 objects of class 0 (4 alerts each), 5 of the rare class 1 (2 alerts each)
    groups = np.concatenate([np.repeat(np.arange(40), 4), np.repeat(np.arange(40, 45), 2)])
    classes = (groups >= 40).astype(int)
    plain = group_split(groups, (0.6, 0.2, 0.2), seed=1)
    # without strata the split is the one fixed before strata existed (every model's test set depends on it)
    assert plain[1][:8].tolist() == [8, 9, 10, 11, 12, 13, 14, 15]
    assert plain[2][:8].tolist() == [28, 29, 30, 31, 40, 41, 42, 43]
    parts = group_split(groups, (0.6, 0.2, 0.2), seed=1, strata=classes)
    assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(groups.size))
    seen = [set(groups[p]) for p in parts]
    assert not (seen[0] & seen[1] or seen[0] & seen[2] or seen[1] & seen[2])
    # per class, groups dealt 60/20/20 by largest remainders: 24/8/8 of class 0, 3/1/1 of class 1
    assert [[len({g for g in s if g < 40}), len({g for g in s if g >= 40})] for s in seen] == [[24, 3], [8, 1], [8, 1]]
    assert all(np.array_equal(a, b) for a, b in zip(parts, group_split(groups, (0.6, 0.2, 0.2), 1, classes)))
    # the rare class cannot fill three subsets with two objects; a group in two classes is refused
    with pytest.raises(AstroError, match="2 group\\(s\\) of stratum 1 cannot fill 3 non-empty subsets"):
        group_split([0, 0, 1, 2, 3, 4, 5], (0.6, 0.2, 0.2), 0, strata=[0, 0, 1, 0, 0, 1, 0])
    with pytest.raises(ValueError, match="the samples of group 7 lie in several strata \\(a, b\\)"):
        group_split([7, 7, 8], (0.5, 0.5), 0, strata=["a", "b", "a"])


def test_content_digest_tells_apart_a_set_rewritten_with_other_values(tmp_path):
    from astrotool.ml.commands import dataset_identity

    def write(values):
        w = DatasetWriter(str(tmp_path / "d"), "d", kind="toy")
        w.write_shard(0, 0, {"x": values}, {"name": np.array(["a", "b"])})
        w.finalize(1)
        return dataset_identity(ArrayDataset(tmp_path / "d"))

    first = write(np.zeros((2, 3), np.float32))
    assert write(np.zeros((2, 3), np.float32)) == first  # the same content: the same identity
    assert write(np.ones((2, 3), np.float32))["manifest_sha256"] != first["manifest_sha256"]


def test_split_indices_read_the_split_column_and_refuse_unknown_names(tmp_path):
    from astrotool.errors import InputError
    from astrotool.ml.data import ArrayDataset, DatasetWriter

    w = DatasetWriter(str(tmp_path / "s"), "s", kind="t")
    w.write_shard(0, 0, {"x": np.zeros((5, 2))}, {"split": np.array(["train", "val", "train", "test", "val"])})
    w.finalize(1)
    ds = ArrayDataset(tmp_path / "s")
    assert ds.split_indices("val").tolist() == [1, 4] and ds.split_indices("all").tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="split must be one of"):
        ds.split_indices("validation")
    w = DatasetWriter(str(tmp_path / "n"), "n", kind="t")
    w.write_shard(0, 0, {"x": np.zeros((3, 2))})
    w.finalize(1)
    with pytest.raises(InputError, match="no train/val/test splits"):
        ArrayDataset(tmp_path / "n").split_indices("train")
