"""``astro doctor`` checks of the lens plugin (built on :func:`astrotool.doctor.module_check`)."""

from __future__ import annotations

from astrotool.doctor import module_check
from astrotool.hookspecs import CheckResult

__docformat__ = "numpy"


def check_galsim() -> CheckResult:
    """GalSim importable (simulations and HSM estimators)."""
    return module_check("galsim", "pip install galsim", required=True)


def check_torch() -> CheckResult:
    """torch importable (the CNN); its devices are in the core's ``torch`` rows."""
    return module_check("torch", "pip install 'torch>=2.4'", required=True, label="torch (lens)")


def check_onnx() -> CheckResult:
    """onnx + onnxruntime for `astro lens export` and ``--engine onnxruntime``."""
    onnx = module_check("onnx", "pip install onnx onnxruntime", label="onnxruntime")
    if not onnx.ok:
        return onnx
    ort = module_check("onnxruntime", "pip install onnxruntime", label="onnxruntime")
    return ort if not ort.ok else CheckResult("onnxruntime", True, f"onnx {onnx.detail}, onnxruntime {ort.detail}")
