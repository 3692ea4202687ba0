"""astrotool.backends: one device resolver for the array backends and astrotool.ml, and the Backend ops."""

from __future__ import annotations

import numpy as np
import pytest

from astrotool.backends import get_backend, resolve_device
from astrotool.errors import AstroError


@pytest.fixture
def no_gpu(monkeypatch):
    """A machine without CUDA or MPS, also when the tests run on a GPU node."""
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    return torch


def test_cuda_on_a_cpu_machine_is_one_message_everywhere(no_gpu):
    from astrotool.ml.fabric import Runtime
    from astrotool.ml.training import select_device

    messages = []
    for call in (lambda: resolve_device("cuda"), lambda: get_backend("torch", "cuda"),
                 lambda: select_device("cuda")):
        with pytest.raises(AstroError) as err:
            call()
        assert err.value.exit_code == 2
        messages.append(str(err.value))
    expected = (f"--device cuda: CUDA was asked for, but torch {no_gpu.__version__} sees no CUDA GPU on this "
                "machine; use --device cpu (or auto)")
    assert messages == [expected] * 3
    with pytest.raises(AstroError) as err:
        Runtime(accelerator="cuda").fabric
    assert str(err.value) == expected.replace("--device", "ml.accelerator")
    with pytest.raises(AstroError, match="cuda:1: CUDA was asked for"):
        resolve_device("CUDA:1")


def test_auto_and_cpu_resolve_to_the_cpu(no_gpu):
    from astrotool.ml.training import select_device

    assert resolve_device("auto") == resolve_device(None) == resolve_device(" CPU ") == "cpu"
    assert resolve_device("auto", auto_mps=True) == "cpu"
    assert select_device("auto").type == "cpu"
    assert (get_backend("torch", "auto").device, get_backend("auto", "auto").name) == ("cpu", "numpy")
    with pytest.raises(AstroError) as err:
        get_backend("auto", "cuda")
    assert str(err.value) == ("--device cuda: CUDA was asked for, but neither torch nor CuPy sees a CUDA GPU "
                              "on this machine; use --device cpu (or auto)")
    with pytest.raises(AstroError, match="mps: Apple MPS is not available"):
        resolve_device("mps")


def test_auto_prefers_cuda_then_mps(monkeypatch):
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert resolve_device("auto", auto_mps=True) == "mps"
    assert resolve_device("auto") == "cpu"  # the array backends never pick MPS (no float64 there)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("auto", auto_mps=True) == "cuda" and resolve_device("cuda:1") == "cuda:1"
    with pytest.raises(AstroError, match=r"--device cuda:2: only 2 CUDA device\(s\) visible"):
        resolve_device("cuda:2")


def test_impossible_combinations():
    assert resolve_device("auto", "numpy") == "cpu"
    with pytest.raises(AstroError, match="numpy backend runs on the CPU only"):
        resolve_device("cuda", "numpy")
    with pytest.raises(AstroError, match="cupy backend runs on CUDA only"):
        resolve_device("cpu", "cupy")
    with pytest.raises(AstroError, match="unknown device 'gpu'"):
        resolve_device("gpu")
    with pytest.raises(AstroError, match="unknown device 'cuda:x'"):
        resolve_device("cuda:x")
    with pytest.raises(AstroError, match="unknown array library 'jax'"):
        resolve_device("cpu", "jax")
    with pytest.raises(AstroError, match="unknown array backend 'jax'"):
        get_backend("jax", "cpu")
    with pytest.raises(AstroError, match="numpy backend runs on the CPU only"):
        get_backend("numpy", "cuda")


# ----------------------------------------------------------------------------- Backend operations


@pytest.fixture(params=["numpy", "torch"])
def be(request):
    if request.param == "torch":
        pytest.importorskip("torch")
    return get_backend(request.param, "cpu")


def test_arrays_round_trip(be):
    big_endian = np.arange(6, dtype=">f8").reshape(2, 3)
    a = be.asarray(big_endian, dtype="float32")
    assert be.to_numpy(a).dtype == np.float32 and be.to_numpy(a).tolist() == [[0, 1, 2], [3, 4, 5]]
    assert be.to_numpy(be.sum(a, axis=1)).tolist() == [3, 12]
    assert be.to_numpy(be.amin(a, axis=0)).tolist() == [0, 1, 2]
    assert be.to_numpy(be.argmin(be.asarray([[3.0, 1.0, 2.0], [0.0, 5.0, -1.0]]))).tolist() == [1, 2]
    assert be.to_numpy(be.take_along_last(a, be.asarray(np.array([2, 0])))).tolist() == [2, 3]
    assert be.to_numpy(be.maximum(a, 2.5)).tolist() == [[2.5, 2.5, 2.5], [3, 4, 5]]
    with pytest.raises(ValueError, match="unsupported dtype"):
        be.dtype("float16")


def test_fft_round_trip_and_known_transform(be):
    x = np.zeros((1, 4, 4), dtype=np.float32)
    x[0, 0, 0] = 1.0  # a delta: flat spectrum of ones
    f = be.rfft2(be.asarray(x), (4, 4))
    assert np.allclose(be.to_numpy(f), np.ones((1, 4, 3)))
    y = np.random.default_rng(0).normal(size=(2, 5, 6)).astype(np.float32)
    back = be.irfft2(be.rfft2(be.asarray(y), (8, 8)), (8, 8))
    assert np.allclose(be.to_numpy(back)[:, :5, :6], y, atol=1e-5)
    assert [be.next_fast_len(n) for n in (1, 7, 11, 17, 97, 128)] == [1, 8, 12, 18, 100, 128]
