"""``astro doctor`` checks of the lens plugin."""

from __future__ import annotations

from astrotool.hookspecs import CheckResult

__docformat__ = "numpy"


def check_galsim() -> CheckResult:
    """GalSim importable (simulations and HSM estimators)."""
    try:
        import galsim
    except Exception as exc:  # noqa: BLE001
        return CheckResult("galsim", False, f"{type(exc).__name__}: {exc}", "pip install galsim", required=True)
    return CheckResult("galsim", True, galsim.__version__)


def check_torch() -> CheckResult:
    """torch importable, with the devices it sees."""
    try:
        import torch
    except Exception as exc:  # noqa: BLE001
        return CheckResult("torch (lens)", False, f"{type(exc).__name__}: {exc}", "pip install 'torch>=2.4'",
                           required=True)
    dev = "cuda: " + torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu only"
    return CheckResult("torch (lens)", True, f"{torch.__version__}, {dev}")


def check_onnx() -> CheckResult:
    """onnx + onnxruntime for `astro lens export`."""
    try:
        import onnx
        import onnxruntime
    except Exception as exc:  # noqa: BLE001
        return CheckResult("onnxruntime", False, f"{type(exc).__name__}: {exc}", "pip install onnx onnxruntime")
    return CheckResult("onnxruntime", True, f"onnx {onnx.__version__}, onnxruntime {onnxruntime.__version__}")
