"""astrotool.ml.predict and astrotool.ml.export: batching, torch vs ONNX Runtime, parity refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from torch import nn  # noqa: E402

from astrotool.errors import AstroError  # noqa: E402
from astrotool.ml.export import ParityError, check_parity, export_onnx, onnx_metadata  # noqa: E402
from astrotool.ml.predict import Predictions, fuse_batchnorm, onnx_session, predict  # noqa: E402


def tiny_cnn(seed: int = 0):
    """Conv-BN-ReLU, pool, linear head: (n, 1, 8, 8) -> (n, 3); BN statistics made non-trivial."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(),
                        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4 * 4 * 4, 3))
    with torch.no_grad():
        net[1].running_mean.uniform_(-0.5, 0.5)
        net[1].running_var.uniform_(0.5, 2.0)
        net[1].weight.uniform_(0.5, 1.5)
        net[1].bias.uniform_(-0.2, 0.2)
    return net.eval()


def stamps(n: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 1, 8, 8)).astype(np.float32)


def test_batch_size_does_not_change_predictions():
    net, x = tiny_cnn(), stamps(23)
    with torch.no_grad():
        ref = net(torch.from_numpy(x)).numpy()
    for bs in (1, 7, 23, 1000):
        p = predict(net, x, batch_size=bs)
        assert isinstance(p, Predictions) and p.engine == "torch" and p.device == "cpu"
        assert p.outputs.shape == (23, 3) and p.n == 23 and p.batch_size == bs
        assert np.allclose(p.outputs, ref, atol=1e-6), bs
    assert p.samples_per_s > 0 and p.summary()["n"] == 23 and p.summary()["engine"] == "torch"


def test_eval_mode_and_no_grad_and_mode_restored():
    """BatchNorm uses its running statistics (eval mode) even for a module left in train mode."""
    net, x = tiny_cnn(), stamps(5)
    with torch.no_grad():
        ref = net(torch.from_numpy(x)).numpy()
        train_out = tiny_cnn().train()(torch.from_numpy(x)).numpy()
    assert not np.allclose(ref, train_out, atol=1e-3)  # batch statistics differ from running ones
    net.train()
    before = net[1].running_mean.clone()
    p = predict(net, x, batch_size=2)
    assert net.training  # restored
    assert torch.equal(net[1].running_mean, before)  # eval mode: statistics not updated
    assert np.allclose(p.outputs, ref, atol=1e-6)
    assert isinstance(p.outputs, np.ndarray)


def test_streamed_batches_and_tuple_batches():
    net, x = tiny_cnn(), stamps(10)
    ref = predict(net, x).outputs
    stream = (x[i:i + 3] for i in range(0, 10, 3))
    p = predict(net, stream)
    assert p.n == 10 and p.batch_size is None and np.allclose(p.outputs, ref, atol=1e-6)
    loader = [(torch.from_numpy(x[i:i + 4]), torch.zeros(len(x[i:i + 4]))) for i in range(0, 10, 4)]
    assert np.allclose(predict(net, loader).outputs, ref, atol=1e-6)


def test_streamed_from_a_sharded_dataset(tmp_path):
    """ArrayDataset.iter_batches / torch_loader dict batches, torch and ONNX Runtime alike."""
    from astrotool.ml.data import ArrayDataset, DatasetWriter, torch_loader

    net, x = tiny_cnn(), stamps(25)
    w = DatasetWriter(str(tmp_path / "set"), "set", compression="none")
    for k, a in enumerate(range(0, 25, 10)):
        w.write_shard(k, a, {"x": x[a:a + 10], "y": np.zeros((len(x[a:a + 10]), 2), np.float32)},
                      metadata={"group": np.arange(a, a + len(x[a:a + 10]))})
    w.finalize(3)
    ds = ArrayDataset(tmp_path / "set")
    ref = predict(net, x).outputs
    streamed = predict(net, ds.iter_batches(4, names=["x", "y"]), key="x")
    assert streamed.n == 25 and np.allclose(streamed.outputs, ref, atol=1e-6)
    loader = torch_loader(ds, 6, names=["x"], shuffle=False)
    assert np.allclose(predict(net, loader).outputs, ref, atol=1e-6)  # one array: no key needed
    with pytest.raises(ValueError, match="name the model input with key="):
        predict(net, ds.iter_batches(4, names=["x", "y"]))
    export_onnx(net, x, tmp_path / "m.onnx")
    o = predict(tmp_path / "m.onnx", ds.iter_batches(7, names=["x"]))
    assert o.engine == "onnxruntime" and np.abs(o.outputs - ref).max() <= 1e-5


def test_multi_output_model_and_empty_input():
    class Two(nn.Module):
        def forward(self, x):
            return x.sum(dim=(1, 2, 3)), x.amax(dim=(1, 2, 3))

    x = stamps(5)
    out = predict(Two(), x, batch_size=2).outputs
    assert isinstance(out, tuple) and len(out) == 2
    assert np.allclose(out[0], x.sum(axis=(1, 2, 3)), atol=1e-5) and np.array_equal(out[1], x.max(axis=(1, 2, 3)))
    empty = predict(tiny_cnn(), stamps(0))
    assert empty.outputs.shape == (0, 3) and empty.n == 0 and np.isnan(empty.samples_per_s)


def test_an_output_the_model_leaves_out_stays_none():
    """An autoencoder without a variance returns (reconstruction, mean, None)."""
    class WithNone(nn.Module):
        def forward(self, x):
            return x * 2, x.mean(dim=(1, 2, 3)), None

    x = stamps(5)
    recon, mean, none = predict(WithNone(), x, batch_size=2).outputs
    assert none is None and np.allclose(recon, 2 * x) and mean.shape == (5,)


def test_mixed_precision_is_close_but_not_identical():
    net, x = tiny_cnn(), stamps(16)
    ref = predict(net, x).outputs
    bf = predict(net, x, precision="bf16-mixed")
    assert bf.precision == "bf16-mixed" and bf.outputs.dtype == np.float32
    assert np.allclose(bf.outputs, ref, atol=0.1) and not np.array_equal(bf.outputs, ref)
    with pytest.raises(AstroError, match="precision 'fp8'"):
        predict(net, x, precision="fp8")
    # the spellings training accepts (--precision bf16, 32-true) mean the same here
    assert predict(net, x, precision="bf16").precision == "bf16-mixed"
    assert predict(net, x, precision="32-true").precision == "32"


def test_torch_and_onnxruntime_agree(tmp_path):
    net, x = tiny_cnn(), stamps(40)
    res = export_onnx(net, x, tmp_path / "m.onnx", input_name="stamps", output_names=["y"],
                      metadata={"architecture": "tiny"})
    assert res["samples"] == 40 and 0 <= res["max_abs_diff"] <= 1e-5 and res["path"] == str(tmp_path / "m.onnx")
    assert onnx_metadata(tmp_path / "m.onnx") == {"architecture": "tiny"}
    assert not list(tmp_path.glob(".*partial*"))
    t = predict(net, x, batch_size=7)
    for bs in (1, 7, 40):
        o = predict(tmp_path / "m.onnx", x, batch_size=bs)
        assert o.engine == "onnxruntime" and o.device == "CPUExecutionProvider" and o.n == 40
        assert np.abs(o.outputs - t.outputs).max() <= 1e-5
    assert o.samples_per_s > 0
    sess = onnx_session(tmp_path / "m.onnx")
    assert np.abs(predict(sess, x[:3]).outputs - t.outputs[:3]).max() <= 1e-5
    with pytest.raises(AstroError, match="ONNX Runtime runs the exported graph"):
        predict(sess, x, precision="bf16-mixed")


def test_onnx_cuda_refused_without_the_provider(tmp_path):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    net, x = tiny_cnn(), stamps(4)
    export_onnx(net, x, tmp_path / "m.onnx")
    with pytest.raises(AstroError, match="no CUDA execution provider"):
        predict(tmp_path / "m.onnx", x, device="cuda")
    assert predict(tmp_path / "m.onnx", x, device="auto").device == "CPUExecutionProvider"


def test_an_opset_this_torch_cannot_write_is_one_line(tmp_path, capfd):
    """torch printed its whole IR graph, then a RuntimeError (exit 1), for an opset above its range."""
    from astrotool.ml.export import onnx_opsets

    from astrotool.section import MIN_ONNX_OPSET

    low, high = onnx_opsets()
    low = max(low, MIN_ONNX_OPSET)   # older opsets lack operators the models use
    net, x = tiny_cnn(), stamps(4)
    for opset in (low - 1, high + 1):
        with pytest.raises(AstroError, match=f"--opset {opset}: this command exports ONNX opsets {low} to {high}"):
            export_onnx(net, x, tmp_path / "m.onnx", opset=opset)
    assert not list(tmp_path.iterdir()) and "graph(" not in capfd.readouterr().out


class Resampled(nn.Module):
    """grid_sample: an operator ONNX has from opset 16 only."""

    def forward(self, x):
        grid = torch.zeros(x.shape[0], 4, 4, 2)
        return nn.functional.grid_sample(x, grid, align_corners=False).flatten(1).sum(dim=1, keepdim=True)


def test_an_operator_the_opset_lacks_is_one_clear_error(tmp_path):
    """ztf export --opset 9 ended in torch's UnsupportedOperatorError (exit 1, a traceback under -vv)."""
    with pytest.raises(AstroError, match="--opset 11: the model needs an operator this opset lacks"):
        export_onnx(Resampled(), stamps(4), tmp_path / "m.onnx", opset=11)
    assert not list(tmp_path.iterdir())
    assert export_onnx(Resampled(), stamps(4), tmp_path / "m.onnx", opset=16)["opset"] == 16


class SignBranch(nn.Module):
    """A data-dependent Python branch: tracing freezes the branch of the example batch."""

    def forward(self, x):
        if float(x.mean()) > 0:
            return x.flatten(1).sum(dim=1, keepdim=True) * 2.0
        return x.flatten(1).sum(dim=1, keepdim=True) * -3.0


def test_parity_refuses_a_graph_that_froze_a_torch_only_branch(tmp_path):
    x = np.abs(stamps(8))
    x[4:] *= -1  # traced on the positive first two; the negative half takes the other branch in torch
    out = tmp_path / "branch.onnx"
    with pytest.raises(ParityError, match=r"branch\.onnx: onnxruntime differs from torch by .* > 1e-05") as e:
        export_onnx(SignBranch(), x, out)
    assert "partial" not in str(e.value)
    assert not out.exists() and not list(tmp_path.iterdir())  # nothing written, no temporary left
    # when the parity inputs only ever take the traced branch, the export is accepted
    assert export_onnx(SignBranch(), np.abs(x), out)["max_abs_diff"] <= 1e-5


def test_parity_detects_a_tampered_file(tmp_path):
    import onnx
    from onnx import numpy_helper

    net, x = tiny_cnn(), stamps(12)
    path = tmp_path / "m.onnx"
    export_onnx(net, x, path)
    assert check_parity(path, net, x) <= 1e-5
    proto = onnx.load(str(path))
    init = proto.graph.initializer[-1]  # the head's bias
    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) + 0.01, init.name))
    onnx.save(proto, str(path))
    with pytest.raises(ParityError, match=r"m\.onnx: onnxruntime differs from torch by 0\.01"):
        check_parity(path, net, x)
    # another model's weights are caught too
    with pytest.raises(ParityError):
        check_parity(path, tiny_cnn(seed=9), x, tol=1e-3)


def test_export_into_an_unwritable_folder_names_the_target(tmp_path, monkeypatch):
    """The error names model.onnx, not the hidden temporary file the exporter was writing."""
    def refuse(model, args, f, **kw):
        raise PermissionError(13, "Permission denied", f)

    monkeypatch.setattr(torch.onnx, "export", refuse)
    target = tmp_path / "ro" / "model.onnx"
    with pytest.raises(AstroError) as e:
        export_onnx(tiny_cnn(), stamps(4), target)
    assert str(e.value) == f"permission denied writing {target}"
    assert e.value.exit_code == 2


def test_export_into_a_read_only_folder_for_real():
    """A real read-only folder (as user nobody when the tests run as root): the target is named."""
    import os
    import shutil
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    if os.geteuid() == 0 and not hasattr(os, "setuid"):
        pytest.skip("cannot drop root here")
    base = Path(tempfile.mkdtemp(prefix="astro-ro-"))
    base.chmod(0o755)
    ro = base / "ro"
    ro.mkdir(mode=0o555)
    ro.chmod(0o555)
    script = f"""
import os
import numpy as np
from torch import nn
from astrotool.ml.export import export_onnx
net = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
x = np.ones((3, 1, 2, 2), np.float32)
export_onnx(net, x, {str(base / "warm.onnx")!r})  # lazy imports happen while still allowed
if os.geteuid() == 0:
    os.setgid(65534)
    os.setuid(65534)
try:
    export_onnx(net, x, {str(ro / "model.onnx")!r})
except Exception as exc:
    print(type(exc).__name__, exc)
"""
    try:
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    finally:
        ro.chmod(0o755)
        shutil.rmtree(base)
    assert out.stdout.strip() == f"WriteError permission denied writing {ro / 'model.onnx'}", \
        out.stderr[-2000:]


def test_fuse_batchnorm_matches_and_leaves_the_model_alone():
    net, x = tiny_cnn(), stamps(9)
    fast = fuse_batchnorm(net)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fast.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    assert np.abs(predict(fast, x).outputs - predict(net, x).outputs).max() < 1e-5
    assert len(list(fast)) == len(list(net)) - 1


def test_bad_onnx_file_is_named(tmp_path):
    from astrotool.errors import InputError

    bad = tmp_path / "junk.onnx"
    bad.write_bytes(b"not a protobuf" * 10)
    with pytest.raises(InputError, match="junk.onnx"):
        predict(bad, stamps(2))
    with pytest.raises(InputError, match="no such ONNX file"):
        onnx_session(tmp_path / "none.onnx")
    with pytest.raises(InputError, match="junk.onnx"):
        onnx_metadata(bad)
    assert json.dumps(predict(tiny_cnn(), stamps(3)).summary())


# ----------------------------------------------------------------------------- several inputs and outputs


class StampsAndFeatures(nn.Module):
    """(stamps (n, 3, 6, 6), features (n, 4)) -> (logits (n, 2), latent (n, 3)): a classifier with metadata."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(2)
        self.conv = nn.Sequential(nn.Conv2d(3, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 4 * 4, 3))
        self.head = nn.Linear(3 + 4, 2)

    def forward(self, stamps, features):
        latent = self.conv(stamps)
        return self.head(torch.cat([latent, features], dim=1)), latent


def _stamps_and_features(n: int):
    g = np.random.default_rng(5)
    return {"stamps": g.normal(size=(n, 3, 6, 6)).astype(np.float32),
            "features": g.normal(size=(n, 4)).astype(np.float32),
            "label": (np.arange(n) % 2).astype(np.int64)}


def _by_hand(net, d):
    with torch.no_grad():
        logits, latent = net(torch.from_numpy(d["stamps"]), torch.from_numpy(d["features"]))
    return logits.numpy(), latent.numpy()


def test_several_inputs_from_dicts_tuples_and_a_dataset(tmp_path):
    from astrotool.ml.data import ArrayDataset, DatasetWriter, torch_loader

    net, d = StampsAndFeatures(), _stamps_and_features(11)
    logits, latent = _by_hand(net, d)
    keys = ["stamps", "features"]
    whole = predict(net, d, batch_size=4, key=keys)  # a dict of arrays, cut into slices of 4
    assert whole.n == 11 and whole.batch_size == 4 and isinstance(whole.outputs, tuple)
    assert np.allclose(whole.outputs[0], logits, atol=1e-6) and np.allclose(whole.outputs[1], latent, atol=1e-6)
    # the order of key is the order of the arguments: swapped, the shapes no longer fit
    with pytest.raises(RuntimeError):
        predict(net, d, key=["features", "stamps"])
    with pytest.raises(ValueError, match="name the model input with key="):
        predict(net, d)
    # ((x, features), y) batches of a training loader
    loader = [((torch.from_numpy(d["stamps"][a:a + 5]), torch.from_numpy(d["features"][a:a + 5])),
               torch.from_numpy(d["label"][a:a + 5])) for a in range(0, 11, 5)]
    assert np.allclose(predict(net, loader).outputs[0], logits, atol=1e-6)
    # a set on disk with stamps (3, 6, 6), features (4,) and scalar labels, streamed both ways
    w = DatasetWriter(str(tmp_path / "set"), "set", compression="none")
    w.write_shard(0, 0, {k: v[:6] for k, v in d.items()})
    w.write_shard(1, 6, {k: v[6:] for k, v in d.items()})
    w.finalize(2)
    ds = ArrayDataset(tmp_path / "set")
    streamed = predict(net, ds.iter_batches(3), key=keys)  # "label" and "index" are left out
    assert np.allclose(streamed.outputs[1], latent, atol=1e-6)
    shuffled = predict(net, torch_loader(ds, 4, seed=1), key=keys, keep=True)
    order = np.concatenate([b["index"].numpy() for b in torch_loader(ds, 4, seed=1)])
    assert sorted(order.tolist()) == list(range(11)) and order.tolist() != list(range(11))
    assert np.allclose(shuffled.outputs[0], logits[order], atol=1e-6)
    with pytest.raises(KeyError, match="the batches hold no 'meta'"):
        predict(net, ds.iter_batches(3), key=["stamps", "meta"])


def test_on_batch_streams_outputs_with_their_batch_and_keep_false_keeps_none(tmp_path):
    """The caller sees every batch (index, label) with its outputs; nothing is accumulated."""
    net, d = StampsAndFeatures(), _stamps_and_features(11)
    logits, _ = _by_hand(net, d)
    seen, correct = [], [0]

    def on_batch(batch, out):
        seen.append(batch["index"].tolist())
        correct[0] += int((out[0].argmax(1) == batch["label"]).sum())

    batches = ({**{k: v[a:a + 4] for k, v in d.items()}, "index": np.arange(a, min(a + 4, 11))}
               for a in range(0, 11, 4))
    p = predict(net, batches, key=["stamps", "features"], on_batch=on_batch, keep=False)
    assert p.outputs is None and p.n == 11 and p.summary()["n"] == 11
    assert seen == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10]]
    assert correct[0] == int((logits.argmax(1) == d["label"]).sum())
    # an array input hands its slices to on_batch; the callback's time is not the model's
    slices = []
    predict(net, d, batch_size=5, key=["stamps", "features"],
            on_batch=lambda batch, out: slices.append((len(batch["stamps"]), out[0].shape)))
    assert slices == [(5, (5, 2)), (5, (5, 2)), (1, (1, 2))]


def test_dict_outputs_are_concatenated_per_name(tmp_path):
    class Named(nn.Module):
        def forward(self, x):
            return {"total": x.sum(dim=1), "peak": x.amax(dim=1)}

    x = np.random.default_rng(0).normal(size=(7, 5)).astype(np.float32)
    out = predict(Named(), x, batch_size=3).outputs
    assert list(out) == ["total", "peak"]
    assert np.allclose(out["total"], x.sum(1), atol=1e-6) and np.array_equal(out["peak"], x.max(1))
    # exported, the dict's values are the graph's outputs in order; parity compares them one by one
    export_onnx(Named(), x, tmp_path / "named.onnx", output_names=["total", "peak"])
    o = predict(tmp_path / "named.onnx", x).outputs
    assert isinstance(o, tuple) and np.array_equal(o[1], x.max(1)) and np.allclose(o[0], x.sum(1), atol=1e-5)


def test_onnx_export_of_several_named_inputs_and_outputs(tmp_path):
    import onnxruntime as ort

    net, d = StampsAndFeatures(), _stamps_and_features(9)
    parity = {"stamps": d["stamps"], "features": d["features"]}
    res = export_onnx(net, parity, tmp_path / "m.onnx", output_names=["logits", "latent"])
    assert res["samples"] == 9 and res["max_abs_diff"] <= 1e-5
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    assert [(i.name, i.shape) for i in sess.get_inputs()] == [("stamps", ["n", 3, 6, 6]), ("features", ["n", 4])]
    assert [o.name for o in sess.get_outputs()] == ["logits", "latent"]
    logits, latent = _by_hand(net, d)
    # fed by name: the batch's order of arrays does not matter to ONNX Runtime
    o = predict(tmp_path / "m.onnx", {"features": d["features"], "stamps": d["stamps"]}, batch_size=4,
                key=["features", "stamps"])
    assert o.engine == "onnxruntime" and np.abs(o.outputs[0] - logits).max() <= 1e-5
    assert np.abs(o.outputs[1] - latent).max() <= 1e-5
    # by position when the names are not the graph's
    renamed = {"a": d["stamps"], "b": d["features"]}
    assert np.abs(predict(tmp_path / "m.onnx", renamed, key=["a", "b"]).outputs[0] - logits).max() <= 1e-5
    with pytest.raises(AstroError, match=r"takes 2 input\(s\) \(stamps, features\); the batches give 1"):
        predict(tmp_path / "m.onnx", d, key="stamps")
    # a tuple of parity inputs with a list of names; the parity check over both inputs
    export_onnx(net, (d["stamps"], d["features"]), tmp_path / "t.onnx", input_name=["img", "meta"],
                output_names=["logits", "latent"])
    assert check_parity(tmp_path / "t.onnx", net, (d["stamps"], d["features"])) <= 1e-5
    # the parity check runs every input: a branch on the second one, frozen by tracing, is caught
    class FeatureBranch(StampsAndFeatures):
        def forward(self, stamps, features):
            logits, latent = super().forward(stamps, features)
            return (logits if float(features.mean()) > 0 else -logits), latent

    signed = {"stamps": d["stamps"], "features": np.abs(d["features"])}
    signed["features"][4:] *= -1  # traced on the first two (positive); torch takes the other branch here
    with pytest.raises(ParityError, match=r"b\.onnx: onnxruntime differs from torch by .* on 9 samples"):
        export_onnx(FeatureBranch(), signed, tmp_path / "b.onnx", output_names=["logits", "latent"])
    assert not (tmp_path / "b.onnx").exists()
    with pytest.raises(ValueError, match="2 parity inputs need as many names"):
        export_onnx(net, (d["stamps"], d["features"]), tmp_path / "u.onnx")
    with pytest.raises(ValueError, match="dynamic_axes: 'time' is neither an input"):
        export_onnx(net, parity, tmp_path / "u.onnx", dynamic_axes={"time": {1: "t"}})
    assert not (tmp_path / "u.onnx").exists()


class MaskedMean(nn.Module):
    """(seq (n, t, 2), mask (n, t) bool) -> (n, 1): a linear map of the mean over the valid steps."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(4)
        self.linear = nn.Linear(2, 1)

    def forward(self, seq, mask):
        m = mask.to(seq.dtype).unsqueeze(-1)
        return self.linear((seq * m).sum(1) / m.sum(1).clamp(min=1.0))


def _sequences(lengths, t_max, seed=0):
    """Padded sequences of the given lengths: (n, t_max, 2) float32 and their (n, t_max) bool mask."""
    g = np.random.default_rng(seed)
    seq = np.zeros((len(lengths), t_max, 2), np.float32)
    for i, k in enumerate(lengths):
        seq[i, :k] = g.normal(size=(k, 2))
    return seq, np.arange(t_max)[None, :] < np.asarray(lengths)[:, None]


def test_onnx_export_with_a_dynamic_sequence_axis(tmp_path):
    import onnxruntime as ort

    net = MaskedMean()
    seq, mask = _sequences([1, 3, 5, 2], 5)
    out = tmp_path / "seq.onnx"
    export_onnx(net, {"seq": seq, "mask": mask}, out, output_names=["logit"],
                dynamic_axes={"seq": {1: "t"}, "mask": {1: "t"}})
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.shape for i in sess.get_inputs()] == [["n", "t", 2], ["n", "t"]]
    assert sess.get_inputs()[1].type == "tensor(bool)"
    # sequences of another length than the traced one: same answers as torch
    seq9, mask9 = _sequences([9, 1, 4], 9, seed=1)
    assert check_parity(out, net, {"seq": seq9, "mask": mask9}) <= 1e-5
    # padding does not change a sequence's answer: the mask leaves the padded steps out
    o = predict(out, {"seq": seq9, "mask": mask9}, key=["seq", "mask"]).outputs
    short = predict(out, {"seq": seq9[2:3, :4], "mask": mask9[2:3, :4]}, key=["seq", "mask"]).outputs
    assert abs(float(o[2, 0] - short[0, 0])) <= 1e-6
    assert abs(float(o[2, 0]) - float(net.linear(torch.from_numpy(seq9[2, :4].mean(0))).detach()[0])) <= 1e-5
    # without the dynamic axis the graph is fixed to the traced length
    export_onnx(net, {"seq": seq, "mask": mask}, tmp_path / "fixed.onnx")
    assert [i.shape for i in onnx_session(tmp_path / "fixed.onnx").get_inputs()] == [["n", 5, 2], ["n", 5]]


def test_float_inputs_are_cast_to_the_model_dtype(tmp_path):
    """float16 maps (a submission's format) and float64 arrays run through a float32 model, torch and ONNX."""
    net, x = tiny_cnn(), stamps(6)
    x16 = x.astype(np.float16)
    ref16 = predict(net, x16.astype(np.float32), batch_size=4).outputs  # the float16 values, in float32
    got = predict(net, x16, batch_size=4)
    assert got.outputs.dtype == np.float32 and np.array_equal(got.outputs, ref16)
    assert np.array_equal(predict(net, x.astype(np.float64)).outputs, predict(net, x).outputs)
    export_onnx(net, x16, tmp_path / "m.onnx")  # traced and checked from float16 parity maps
    assert np.abs(predict(tmp_path / "m.onnx", x16).outputs - ref16).max() <= 1e-5
    # integer and boolean inputs are not touched (the mask of MaskedMean stays bool)
    seq, mask = _sequences([2, 3], 3)
    assert predict(MaskedMean(), {"seq": seq.astype(np.float16), "mask": mask}, key=["seq", "mask"]).n == 2


def test_outputs_of_batch_dependent_shapes_say_what_to_do():
    """A temporal model's per-step outputs, batches trimmed to their own longest sequence."""
    class PerStep(nn.Module):
        def forward(self, seq):
            return seq.sum(-1)  # (n, t)

    batches = [np.ones((2, 3, 2), np.float32), np.ones((2, 5, 2), np.float32)]
    with pytest.raises(ValueError, match=r"differ in shape beyond the sample axis \(\(3,\), \(5,\)\).*on_batch="):
        predict(PerStep(), batches)
    got = []
    p = predict(PerStep(), batches, on_batch=lambda b, out: got.append(out.shape), keep=False)
    assert got == [(2, 3), (2, 5)] and p.n == 4 and p.outputs is None
