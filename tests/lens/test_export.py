"""`astro lens export`: the ONNX parity tolerance follows the calibration's amplification, a calibration with
1 + m = 0 refused, and a calibration applied only in the symmetrize mode it was fitted in."""

from __future__ import annotations

import pytest


def test_the_parity_tolerance_follows_the_calibration_amplification():
    from astrotool_lens.export import parity_tolerance

    assert parity_tolerance(1e-5, None) == 1e-5
    assert parity_tolerance(1e-5, {"m1": 0.02, "m2": 0.01}) == 1e-5         # shrinks differences: tol as is
    assert abs(parity_tolerance(1e-5, {"m1": -0.5, "m2": 0.0}) - 2e-5) < 1e-12
    # at most tol / lens.calibrate.min_response: below it the calibration is refused (test_calibrate.py)
    assert abs(parity_tolerance(1e-5, {"m1": -0.999, "m2": 0.0}, min_response=0) - 1e-2) < 1e-9


def test_a_calibration_with_1_plus_m_zero_is_refused_at_export():
    """m = -1 divided by zero (a ZeroDivisionError traceback)."""
    from astrotool.errors import AstroError
    from astrotool_lens.export import parity_tolerance

    for floor, said in ((0.1, "1 \\+ m1 = 0 \\(lens.calibrate.min_response = 0.1\\)"),
                        (0, "1 \\+ m = 0, below 1e-6 \\(lens.calibrate.min_response = 0\\)")):   # floor lifted too
        with pytest.raises(AstroError, match=said) as e:
            parity_tolerance(1e-5, {"m1": -1.0, "m2": 0.0}, min_response=floor)
        assert e.value.exit_code == 2


@pytest.mark.workspace("calibration")
def test_export_applies_a_calibration_only_in_its_mode(cal_nosym):
    from astrotool.errors import InputError
    from astrotool_lens.export import export_plan

    _, _, _, kw = export_plan(cal_nosym, symmetrize=True, parity_samples=2)
    assert kw["metadata"]["onnx"]["calibrated"] is False
    _, _, _, kw = export_plan(cal_nosym, symmetrize=False, parity_samples=2, min_response=0)   # 1 + m ~ 1e-5
    assert kw["metadata"]["onnx"]["calibrated"] is True
    with pytest.raises(InputError, match="fitted with --no-symmetrize"):
        export_plan(cal_nosym, symmetrize=True, parity_samples=2, explicit=True)
