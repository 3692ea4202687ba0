"""Checks for ``astro doctor``: what is installed and usable, with a hint for what is not.

Plugins reuse :func:`module_check` and :func:`program_check` for their own pieces.
"""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys

from astrotool.hookspecs import CheckResult

__docformat__ = "numpy"


def module_check(module: str, hint: str, required: bool = False, label: str | None = None) -> CheckResult:
    """Import ``module`` and report its version, or the hint when it is missing.

    Parameters
    ----------
    module : str
        Importable module name.
    hint : str
        How to install it.
    required : bool
        Whether a missing module is an error.
    label : str, optional
        Name shown in the table (default: ``module``).
    """
    try:
        mod = importlib.import_module(module)
    except Exception as exc:  # ImportError, or a broken install
        return CheckResult(label or module, False, f"{type(exc).__name__}: {exc}"[:120], hint, required)
    return CheckResult(label or module, True, str(getattr(mod, "__version__", "installed")), "", required)


def program_check(names: list[str], hint: str, version_args: tuple[str, ...] = ("--version",),
                  label: str | None = None) -> CheckResult:
    """Find the first of ``names`` on ``PATH`` and report its version line."""
    for name in names:
        path = shutil.which(name)
        if path:
            try:
                out = subprocess.run([path, *version_args], capture_output=True, text=True, timeout=20)
                text = (out.stdout + out.stderr).strip().splitlines()
                detail = f"{path}: {text[0] if text else 'found'}"
            except (OSError, subprocess.SubprocessError) as exc:
                detail = f"{path}: found, but running it failed: {exc}"
            return CheckResult(label or names[0], True, detail)
    return CheckResult(label or names[0], False, f"none of {', '.join(names)} on PATH", hint)


def check_python() -> CheckResult:
    """Python 3.10 or newer (required)."""
    ok = sys.version_info >= (3, 10)
    return CheckResult("python", ok, sys.version.split()[0], "" if ok else "Python >= 3.10 is needed", True)


def check_pyarrow() -> CheckResult:
    """pyarrow, behind :mod:`astrotool.io.tables` (Parquet); for the plugins that write tables."""
    return module_check("pyarrow", "pip install 'pyarrow>=14'", required=True)


def check_h5py() -> CheckResult:
    """h5py, behind :mod:`astrotool.io.hdf5`; for the plugins that write HDF5 files."""
    return module_check("h5py", "pip install 'h5py>=3.10'", required=True)


def check_numpy() -> CheckResult:
    """numpy (required)."""
    return module_check("numpy", "pip install numpy", required=True)


def check_torch() -> list[CheckResult]:
    """torch (for the ML plugins and ``--backend torch``) and the CUDA devices it sees."""
    res = module_check("torch", "pip install torch (CPU: pip install torch --index-url .../cpu)")
    if not res.ok:
        return [res]
    import torch

    devices = ["cpu"]
    if torch.cuda.is_available():
        devices += [f"cuda:{i} {torch.cuda.get_device_name(i)}" for i in range(torch.cuda.device_count())]
    gpu = CheckResult("torch GPU", torch.cuda.is_available(), ", ".join(devices[1:]) or "no CUDA device",
                      "" if torch.cuda.is_available() else "a CUDA GPU and a CUDA build of torch enable --device cuda")
    return [CheckResult("torch", True, f"{torch.__version__} (devices: {', '.join(devices)})"), gpu]


def check_cupy() -> CheckResult:
    """cupy and the GPUs it sees, for ``--backend cupy``."""
    res = module_check("cupy", "pip install cupy-cuda12x (needs an NVIDIA GPU) for --backend cupy")
    if not res.ok:
        return res
    try:
        import cupy

        n = cupy.cuda.runtime.getDeviceCount()
        return CheckResult("cupy", n > 0, f"{res.detail}, {n} GPU(s)", "" if n else "no CUDA device visible")
    except Exception as exc:
        return CheckResult("cupy", False, f"{res.detail}, GPU unusable: {exc}", "check the CUDA driver")


def check_dask() -> CheckResult:
    """dask.distributed, for ``--executor dask``."""
    return module_check("distributed", "pip install 'dask[distributed]' for --executor dask", label="dask distributed")
