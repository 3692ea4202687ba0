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


def test_mixed_precision_is_close_but_not_identical():
    net, x = tiny_cnn(), stamps(16)
    ref = predict(net, x).outputs
    bf = predict(net, x, precision="bf16-mixed")
    assert bf.precision == "bf16-mixed" and bf.outputs.dtype == np.float32
    assert np.allclose(bf.outputs, ref, atol=0.1) and not np.array_equal(bf.outputs, ref)
    with pytest.raises(AstroError, match="precision 'fp8'"):
        predict(net, x, precision="fp8")


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
    assert str(e.value) == f"{target}: cannot write the ONNX file (Permission denied)"


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
    assert out.stdout.strip() == f"AstroError {ro / 'model.onnx'}: cannot write the ONNX file (Permission denied)", \
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
