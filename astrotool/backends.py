"""Array backends: one numerical code path for numpy, torch (CPU or CUDA) and cupy.

A numerical kernel takes a :class:`Backend` and uses only its methods
(:meth:`Backend.asarray`, :meth:`Backend.matmul`, :meth:`Backend.sum`, ...), so the
CPU path that the tests run is the same code that runs on a GPU.

===========  ===========  =====================================================
name         device       arrays
===========  ===========  =====================================================
``numpy``    ``cpu``      :class:`numpy.ndarray` (FFTs through ``scipy.fft`` when
                          installed, multithreaded, else ``numpy.fft``)
``torch``    ``cpu``,     :class:`torch.Tensor` on that device
             ``cuda``
``cupy``     ``cuda``     :class:`cupy.ndarray`
``auto``     ``auto``     torch on CUDA, else cupy on CUDA, else numpy
===========  ===========  =====================================================

``device="auto"`` picks CUDA when the backend can use it and a GPU is visible,
otherwise the CPU.  Asking for something that cannot run here (``cuda`` with no
GPU, ``numpy`` on ``cuda``, a backend that is not installed) raises
:class:`astrotool.errors.AstroError` (exit code 2) with the reason.

torch and cupy are imported only when such a backend is requested, and this
module is imported only by command code, never by ``astro --help``.
"""

from __future__ import annotations

import numpy as np

from astrotool.errors import AstroError

__docformat__ = "numpy"

__all__ = ["Backend", "get_backend", "resolve_device", "BACKENDS", "DEVICES"]

BACKENDS = ("numpy", "torch", "cupy", "auto")
"""Array backends ``get_backend`` accepts, ``auto`` included."""
DEVICES = ("cpu", "cuda", "auto")
"""Devices accepted (``auto``: CUDA when the backend can use it and a GPU is visible, else CPU)."""

_DTYPES = ("float32", "float64", "bool", "int64", "complex64", "complex128")


class Backend:
    """The array operations numerical kernels need, for one library and device.

    Parameters
    ----------
    name : {"numpy", "torch", "cupy"}
        Array library.
    device : {"cpu", "cuda"}
        Where arrays live.  ``cuda`` may carry an index, e.g. ``"cuda:1"``.

    Attributes
    ----------
    name, device : str
        As given (resolved, never ``"auto"``).
    xp : module
        The library (``numpy``, ``torch`` or ``cupy``) for anything not wrapped here.
    is_gpu : bool
        Whether arrays live on a GPU.

    Notes
    -----
    Use :func:`get_backend` rather than this constructor: it checks that the
    library and device are available.
    """

    def __init__(self, name: str, device: str):
        self.name = name
        self.device = device
        self.is_gpu = device.startswith("cuda")
        if name == "numpy":
            self.xp = np
        elif name == "torch":
            import torch

            self.xp = torch
            self._tdev = torch.device(device)
        elif name == "cupy":
            import cupy

            self.xp = cupy
        else:  # pragma: no cover - guarded by get_backend
            raise AstroError(f"unknown array backend {name!r}")

    def __repr__(self) -> str:
        return f"Backend({self.name!r}, {self.device!r})"

    # ------------------------------------------------------------------ dtypes
    def dtype(self, name: str):
        """The library's dtype object for ``name`` (``"float32"``, ``"float64"``, ``"bool"``...)."""
        if name not in _DTYPES:
            raise ValueError(f"unsupported dtype {name!r}; use one of {_DTYPES}")
        if self.name == "torch":
            return getattr(self.xp, name)
        return np.dtype(name)

    def _dt(self, dtype):
        if dtype is None:
            return None
        if isinstance(dtype, str):
            return self.dtype(dtype)
        if self.name == "torch" and not isinstance(dtype, self.xp.dtype):
            return self.dtype(np.dtype(dtype).name)
        return dtype

    # ------------------------------------------------------------------ creation and transfer
    def asarray(self, x, dtype=None):
        """Array on this backend's device (no copy when already there with that dtype).

        Parameters
        ----------
        x : array-like
            numpy array, scalar, list, or an array of this backend.
        dtype : str or dtype, optional
            Target dtype, e.g. ``"float32"``.
        """
        dt = self._dt(dtype)
        if self.name == "torch":
            torch = self.xp
            if isinstance(x, torch.Tensor):
                return x.to(device=self._tdev, dtype=dt) if dt is not None else x.to(self._tdev)
            arr = np.asarray(x)
            if not arr.flags.writeable or not arr.flags.c_contiguous or arr.dtype.byteorder not in "=|":
                arr = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("="))
            t = torch.from_numpy(arr) if arr.dtype != np.float16 else torch.tensor(arr)
            return t.to(device=self._tdev, dtype=dt) if dt is not None else t.to(self._tdev)
        if self.name == "cupy":
            return self.xp.asarray(x, dtype=dt)
        arr = np.asarray(x, dtype=dt)
        if arr.dtype.byteorder not in "=|":
            arr = arr.astype(arr.dtype.newbyteorder("="))
        return arr

    def to_numpy(self, x) -> np.ndarray:
        """Copy (or view, for numpy) an array of this backend to a numpy array on the host."""
        if self.name == "torch" and isinstance(x, self.xp.Tensor):
            return x.detach().cpu().numpy()
        if self.name == "cupy" and isinstance(x, self.xp.ndarray):
            return self.xp.asnumpy(x)
        return np.asarray(x)

    def zeros(self, shape, dtype="float32"):
        """Zero-filled array of ``shape``."""
        if self.name == "torch":
            return self.xp.zeros(tuple(shape), dtype=self._dt(dtype), device=self._tdev)
        return self.xp.zeros(tuple(shape), dtype=self._dt(dtype))

    def astype(self, x, dtype):
        """``x`` converted to ``dtype`` (a copy only when the dtype changes)."""
        dt = self._dt(dtype)
        if self.name == "torch":
            return x.to(dt)
        return x.astype(dt, copy=False)

    def contiguous(self, x):
        """A C-contiguous version of ``x`` (a copy only when needed)."""
        if self.name == "torch":
            return x.contiguous()
        return self.xp.ascontiguousarray(x)

    def copy(self, x):
        """An independent copy of ``x``."""
        return x.clone() if self.name == "torch" else x.copy()

    def arange(self, n: int):
        """Integers 0 .. n-1 (int64) on the device."""
        if self.name == "torch":
            return self.xp.arange(n, device=self._tdev)
        return self.xp.arange(n, dtype=np.int64)

    # ------------------------------------------------------------------ arithmetic and reductions
    def matmul(self, a, b):
        """Matrix product ``a @ b`` (BLAS / cuBLAS GEMM for 2-D float arrays)."""
        return a @ b

    def sum(self, x, axis=None, keepdims: bool = False):
        """Sum over ``axis`` (int or tuple; all when None)."""
        if self.name == "torch":
            if axis is None:
                return x.sum()
            return x.sum(dim=axis, keepdim=keepdims)
        return x.sum(axis=axis, keepdims=keepdims)

    def amin(self, x, axis=None, keepdims: bool = False):
        """Minimum over ``axis`` (int or tuple; all when None); NaN propagates."""
        if self.name == "torch":
            if axis is None:
                return x.amin()
            return self.xp.amin(x, dim=axis, keepdim=keepdims)
        return x.min(axis=axis, keepdims=keepdims)

    def argmin(self, x, axis: int = -1):
        """Index of the minimum along ``axis`` (int64)."""
        if self.name == "torch":
            return self.xp.argmin(x, dim=axis)
        return x.argmin(axis=axis)

    def where(self, cond, a, b):
        """Elementwise ``a`` where ``cond`` else ``b`` (scalars allowed for a and b)."""
        if self.name == "torch":
            return self.xp.where(cond, a, b)
        return self.xp.where(cond, a, b)

    def maximum(self, x, value):
        """Elementwise max of ``x`` and a scalar or array ``value``."""
        if self.name == "torch":
            if isinstance(value, (int, float)):
                return self.xp.clamp(x, min=value)
            return self.xp.maximum(x, value)
        return self.xp.maximum(x, value)

    def isfinite(self, x):
        """Elementwise finiteness."""
        return self.xp.isfinite(x)

    def isnan(self, x):
        """Elementwise NaN test."""
        return self.xp.isnan(x)

    def sqrt(self, x):
        """Elementwise square root."""
        return self.xp.sqrt(x)

    def any(self, x, axis=None):
        """Whether any element is true (over ``axis``)."""
        if self.name == "torch":
            return x.any() if axis is None else x.any(dim=axis)
        return x.any(axis=axis)

    def take_along_last(self, x, index):
        """``x[i, index[i]]`` for a 2-D ``x`` and an integer ``index`` of shape ``(N,)`` or ``(N, M)``."""
        rows = self.arange(x.shape[0])
        return x[rows if index.ndim == 1 else rows[:, None], index]

    # ------------------------------------------------------------------ FFT
    def rfft2(self, x, s):
        """Real 2-D FFT over the last two axes, zero-padded to shape ``s`` (complex64 for float32)."""
        s = tuple(int(v) for v in s)
        if self.name == "torch":
            return self.xp.fft.rfft2(x, s=s, dim=(-2, -1))
        if self.name == "cupy":
            return self.xp.fft.rfft2(x, s=s, axes=(-2, -1))
        try:
            import scipy.fft as sfft

            return sfft.rfft2(x, s=s, axes=(-2, -1), workers=-1)
        except ImportError:  # pragma: no cover - scipy is normally present
            return np.fft.rfft2(x, s=s, axes=(-2, -1))

    def irfft2(self, x, s):
        """Inverse of :meth:`rfft2`: real array whose last two axes have shape ``s``."""
        s = tuple(int(v) for v in s)
        if self.name == "torch":
            return self.xp.fft.irfft2(x, s=s, dim=(-2, -1))
        if self.name == "cupy":
            return self.xp.fft.irfft2(x, s=s, axes=(-2, -1))
        try:
            import scipy.fft as sfft

            return sfft.irfft2(x, s=s, axes=(-2, -1), workers=-1)
        except ImportError:  # pragma: no cover
            return np.fft.irfft2(x, s=s, axes=(-2, -1))

    def next_fast_len(self, n: int) -> int:
        """Smallest size >= n with only small prime factors (2, 3, 5)."""
        m = max(1, int(n))
        while True:
            v = m
            for p in (2, 3, 5):
                while v % p == 0:
                    v //= p
            if v == 1:
                return m
            m += 1

    # ------------------------------------------------------------------ misc
    def synchronize(self) -> None:
        """Wait for queued GPU work (for timing); a no-op on the CPU."""
        if self.name == "torch" and self.is_gpu:
            self.xp.cuda.synchronize(self._tdev)
        elif self.name == "cupy":
            self.xp.cuda.Stream.null.synchronize()

    def describe(self) -> str:
        """One line naming the library, its version and the device."""
        version = getattr(self.xp, "__version__", "?")
        where = self.device
        if self.is_gpu:
            try:
                if self.name == "torch":
                    where += f" ({self.xp.cuda.get_device_name(self._tdev)})"
                else:
                    props = self.xp.cuda.runtime.getDeviceProperties(self.xp.cuda.Device().id)
                    where += f" ({props['name'].decode() if isinstance(props['name'], bytes) else props['name']})"
            except Exception:  # pragma: no cover - cosmetic only
                pass
        return f"{self.name} {version} on {where}"


def _torch_cuda_ok() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def _cupy_cuda_ok() -> bool:
    try:
        import cupy
    except ImportError:
        return False
    try:
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


def _no_cuda(preference: str, library: str, option: str) -> AstroError:
    """The one message for a CUDA request on a machine where the library sees no GPU.

    ``library`` names who looked (``"torch 2.5.1"``, ``"CuPy"``); an empty one
    means that neither torch nor CuPy can see a GPU.
    """
    who = f"{library} sees no CUDA GPU" if library else "neither torch nor CuPy sees a CUDA GPU"
    return AstroError(f"{option} {preference}: CUDA was asked for, but {who} on this machine; "
                      f"use {option} cpu (or auto)")


def resolve_device(preference: str | None = "auto", library: str = "torch", *, auto_mps: bool = False,
                   option: str = "--device") -> str:
    """The device a library will use for a requested ``--device``.

    The one place where ``auto`` is decided and where an impossible request is
    refused, for the array backends (:func:`get_backend`) and for training and
    inference (:func:`astrotool.ml.training.select_device`,
    :class:`astrotool.ml.fabric.Runtime`).

    Parameters
    ----------
    preference : {"auto", "cpu", "cuda", "cuda:N", "mps"} or None
        Requested device; None means ``auto``. Case is ignored.
    library : {"torch", "cupy", "numpy", "onnxruntime"}
        Who will hold the arrays. numpy runs on the CPU only, cupy on CUDA only,
        ONNX Runtime on the CPU or on CUDA when it has the CUDA execution provider.
    auto_mps : bool
        Let ``auto`` choose Apple's MPS when there is no CUDA GPU (torch only;
        the numerical kernels need float64, which MPS lacks, so the array
        backends leave it off).
    option : str
        How the user spelled the setting, for messages (``--device``,
        ``ml.accelerator``...).

    Returns
    -------
    str
        ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``.

    Raises
    ------
    astrotool.errors.AstroError
        (exit code 2) unknown device or library, CUDA requested where the library
        sees no GPU, a CUDA index beyond the visible devices, MPS unavailable,
        numpy on CUDA, cupy on the CPU.
    """
    pref = str(preference or "auto").strip().lower()
    library = str(library or "torch").lower()
    if pref not in ("auto", "cpu", "cuda", "mps") and not (pref.startswith("cuda:") and pref[5:].isdigit()):
        raise AstroError(f"{option}: unknown device {preference!r}; choose one of auto, cpu, cuda, cuda:N, mps")
    if library not in ("torch", "cupy", "numpy", "onnxruntime"):
        raise AstroError(f"unknown array library {library!r}; choose one of torch, cupy, numpy, onnxruntime")
    if library == "onnxruntime":
        import onnxruntime as ort

        available = ort.get_available_providers()
        if "CUDAExecutionProvider" not in available:
            if pref.startswith("cuda"):
                raise AstroError(f"{option} {pref}: this onnxruntime ({ort.__version__}) has no CUDA execution "
                                 f"provider (available: {', '.join(available)}); use {option} cpu (or auto)")
            if pref == "mps":
                raise AstroError(f"{option} mps: ONNX Runtime runs on cpu or cuda[:N]")
            return "cpu"
        return "cuda" if pref == "auto" else pref
    if library == "numpy":
        if pref.startswith("cuda") or pref == "mps":
            raise AstroError(f"{option} {pref}: the numpy backend runs on the CPU only; for a GPU use "
                             "--backend torch or --backend cupy")
        return "cpu"
    if library == "cupy":
        if pref in ("cpu", "mps"):
            raise AstroError(f"{option} {pref}: the cupy backend runs on CUDA only; for the CPU use "
                             "--backend numpy or torch")
        if not _cupy_cuda_ok():
            raise _no_cuda("cuda" if pref == "auto" else pref, "CuPy", option)
        if ":" in pref:
            import cupy

            count = cupy.cuda.runtime.getDeviceCount()
            if int(pref[5:]) >= count:
                raise AstroError(f"{option} {pref}: only {count} CUDA device(s) visible")
        return "cuda" if pref == "auto" else pref
    # torch
    try:
        import torch
    except ImportError:
        if pref in ("auto", "cpu"):
            raise AstroError("PyTorch is needed here but is not installed; install it (pip install torch)") from None
        raise AstroError(f"{option} {pref}: PyTorch is needed but is not installed (pip install torch)") from None
    has_cuda = bool(torch.cuda.is_available())
    mps = getattr(torch.backends, "mps", None)
    has_mps = bool(mps is not None and mps.is_available())
    if pref == "auto":
        if has_cuda:
            return "cuda"
        return "mps" if (auto_mps and has_mps) else "cpu"
    if pref.startswith("cuda"):
        if not has_cuda:
            raise _no_cuda(pref, f"torch {torch.__version__}", option)
        if ":" in pref and int(pref[5:]) >= torch.cuda.device_count():
            raise AstroError(f"{option} {pref}: only {torch.cuda.device_count()} CUDA device(s) visible")
        return pref
    if pref == "mps" and not has_mps:
        raise AstroError(f"{option} mps: Apple MPS is not available on this machine; use {option} cpu (or auto)")
    return pref


def get_backend(name: str = "numpy", device: str = "auto") -> Backend:
    """Return the array backend for a library and a device.

    Parameters
    ----------
    name : {"numpy", "torch", "cupy", "auto"}
        Array library.  ``auto``: torch on CUDA if possible, else cupy on CUDA,
        else numpy on the CPU (honouring ``device="cpu"``).
    device : {"cpu", "cuda", "auto"} or "cuda:N"
        Where the arrays live.  ``auto`` means CUDA when the library can use a
        visible GPU, else the CPU.

    Returns
    -------
    Backend

    Raises
    ------
    astrotool.errors.AstroError
        (exit code 2) the library is not installed, the device is not available,
        or the combination is impossible (numpy on CUDA, cupy on the CPU).
    """
    name = (name or "numpy").lower()
    device = (device or "auto").lower()
    if name not in BACKENDS:
        raise AstroError(f"unknown array backend {name!r}; choose one of {', '.join(BACKENDS)}")
    if device not in DEVICES and not device.startswith("cuda:"):
        raise AstroError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")

    if name == "auto":
        if device == "cpu":
            return Backend("numpy", "cpu")
        if _torch_cuda_ok():
            return Backend("torch", resolve_device(device, "torch"))
        if _cupy_cuda_ok():
            return Backend("cupy", resolve_device(device, "cupy"))
        if device.startswith("cuda"):
            raise _no_cuda(device, "", "--device")
        return Backend("numpy", "cpu")

    if name == "torch":
        try:
            import torch  # noqa: F401
        except ImportError:
            raise AstroError("--backend torch needs PyTorch, which is not installed; "
                             "install it (pip install torch) or use --backend numpy") from None
    if name == "cupy" and device != "cpu":
        try:
            import cupy  # noqa: F401
        except ImportError:
            raise AstroError("--backend cupy needs CuPy, which is not installed (pip install cupy-cuda12x); "
                             "or use --backend torch") from None
    resolved = resolve_device(device, name)
    if name == "cupy" and resolved.startswith("cuda:"):
        import cupy

        cupy.cuda.Device(int(resolved.split(":", 1)[1])).use()
    return Backend(name, resolved)
