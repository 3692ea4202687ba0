"""AnaCal's FPFS (ANACAL): a known shear recovered through the analytic response; failures counted, not fatal;
the command writes its columns and lens validate fits its m."""

from __future__ import annotations

import json

import numpy as np
import pytest

from astrotool_lens.metacal import ensemble_shear

from .test_metacal import _psf, _ring

pytest.importorskip("anacal")
galsim = pytest.importorskip("galsim")

from astrotool_lens.fpfs import fpfs_arrays  # noqa: E402


def _shear(out):
    return ensemble_shear({k.replace("anacal_", "metacal_"): v for k, v in out.items()})[0]


PSFS = {"round": lambda: _psf(), "elliptical": lambda: _psf(0.04, -0.03),
        # kernel 2 x 1.55 pixels: over anacal's 3-arcsec limit at 1 arcsec / pixel (fpfs: Units)
        "wide": lambda: galsim.Moffat(beta=2.5, fwhm=3.6).shear(g1=0.03, g2=0.02)}


@pytest.mark.parametrize("psf", PSFS)
def test_ring_recovers_known_shear_through_the_analytic_response(psf):
    """Noiseless ring pairs (no offsets): <R>^-1 <e> equals the shear to 1e-3 of g (measured: 1.6e-4 with the
    round PSF); elliptical PSFs add a leakage of at most 3.6e-5 (measured with zero shear), allowed for with 2e-5
    more. A wide PSF is measured as well as a narrow one."""
    g = (0.02, -0.01)
    gal, p = _ring(8, g, PSFS[psf]())
    out = fpfs_arrays(gal, p)
    assert (out["anacal_flag"] == 0).all(), out["anacal_error"]
    g1, g2 = _shear(out)
    slack = 0.0 if psf == "round" else 2e-5
    assert abs(g1 - g[0]) < 1e-3 * abs(g[0]) + slack and abs(g2 - g[1]) < 1e-3 * abs(g[1]) + slack, (g1, g2)
    assert 0.1 < np.mean(out["anacal_r11"]) < 1.0 and abs(np.mean(out["anacal_e1"]) - g[0]) > 0.005
    assert np.isclose(np.mean(out["anacal_g1"]), g1) and np.isclose(np.mean(out["anacal_g2"]), g2)
    assert (out["anacal_flux"] > 300).all() and (out["anacal_flux"] < 1e3).all()   # kernel-weighted, of 1e3 counts
    zero = _shear(fpfs_arrays(*_ring(8, (0.0, 0.0), PSFS[psf]())))
    assert max(abs(zero[0]), abs(zero[1])) < 5e-5, zero   # PSF leakage far below |c| < 5e-4


def test_noise_images_are_reproducible_and_optional():
    rng = np.random.default_rng(4)
    gal, psf = _ring(2, (0.02, 0.0), _psf())
    noisy = gal + rng.normal(0.0, 0.5, gal.shape)
    out = fpfs_arrays(noisy, psf, seed=3)
    assert (out["anacal_flag"] == 0).all() and np.allclose(out["anacal_noise_sigma"], 0.5, rtol=0.35)
    assert np.array_equal(out["anacal_e1"], fpfs_arrays(noisy, psf, seed=3)["anacal_e1"])
    assert not np.array_equal(out["anacal_e1"], fpfs_arrays(noisy, psf, seed=4)["anacal_e1"])
    off = fpfs_arrays(noisy, psf, fixnoise=False)
    assert (off["anacal_noise_sigma"] == 0).all() and not np.array_equal(off["anacal_e1"], out["anacal_e1"])


def test_failed_stamps_are_counted_not_fatal():
    gal, psf = _ring(2, (0.0, 0.0), _psf())
    gal[1] = 0.0
    gal[2, 3, 3] = np.nan
    out = fpfs_arrays(gal, psf)
    assert out["anacal_flag"].tolist() == [0, 1, 1, 0]
    assert "blank" in out["anacal_error"][1] and "non-finite" in out["anacal_error"][2]
    assert np.isnan(out["anacal_r11"][1:3]).all() and np.isfinite(out["anacal_g1"][[0, 3]]).all()
    wide = fpfs_arrays(np.zeros((1, 40, 30)) + 1.0, np.ones((40, 30)))
    assert wide["anacal_flag"][0] == 1 and "square" in wide["anacal_error"][0]


def test_measure_and_validate_commands(tmp_path, capsys):
    """`lens measure --methods ANACAL` writes described columns and its settings; `lens validate --method
    ANACAL` fits m on noiseless constant-shear fields (|g| <= 0.02) to |m| < 2e-3."""
    from astrotool.cli import main
    from astrotool.io.tables import parquet_metadata
    from astropy.table import Table

    ws = tmp_path / "ws"
    gen = ["-w", ws, "-q", "--seed", 11, "--set", 'lens.generate.noise.kind="none"',
           "--set", "lens.generate.shear.g1=[-0.02, 0.02]", "--set", "lens.generate.shear.g2=[-0.02, 0.02]",
           "lens", "generate", "--preset", "fields", "--name", "f", "-n", 400, "--field-size", 100]
    assert main([str(a) for a in gen]) == 0
    capsys.readouterr()
    code = main(["--json", "-w", str(ws), "-q", "--set", "lens.measure.anacal_sigma=1.8", "lens", "measure", "f",
                 "--methods", "ANACAL"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert json.loads(out.out)["failed"] == {"ANACAL": 0}
    path = ws / "lens" / "predictions" / "f_hsm.parquet"
    t = Table.read(path)
    for c in ("e1", "e2", "r11", "r12", "r21", "r22", "g1", "g2", "flux", "flag", "error", "noise_sigma"):
        assert t[f"anacal_{c}"].description, c
    assert parquet_metadata(path)["settings"]["anacal_sigma"] == 1.8
    # the table of other settings is not replaced silently (exit 2); --overwrite measures it again
    assert main(["-w", str(ws), "-q", "lens", "validate", "f", "--method", "ANACAL"]) == 2
    assert "anacal_sigma 1.8 -> 2" in capsys.readouterr().err
    code = main(["--json", "-w", str(ws), "-q", "--overwrite", "lens", "validate", "f", "--method", "ANACAL"])
    out = capsys.readouterr()
    assert code == 0, out.err
    rec = json.loads(out.out)
    assert rec["n_fields"] == 4 and rec["n_failed"] == 0
    assert abs(rec["m1_raw"]) < 2e-3 and abs(rec["m2_raw"]) < 2e-3, rec


def test_bad_settings_and_a_missing_anacal_are_refused_before_measuring(tmp_path, capsys, monkeypatch):
    """Exit 2 with a message naming the key or the package to install; no table is written."""
    import sys

    from astrotool.cli import main

    ws = tmp_path / "ws"
    gen = ["-w", ws, "-q", "--seed", 12, "lens", "generate", "--preset", "fields", "--name", "f", "-n", 8,
           "--field-size", 2, "--stamp-size", 32]
    assert main([str(a) for a in gen]) == 0
    capsys.readouterr()
    table = ws / "lens" / "predictions" / "f_hsm.parquet"
    code = main(["-w", str(ws), "-q", "--set", "lens.measure.anacal_sigma=0", "lens", "measure", "f",
                 "--methods", "ANACAL"])
    assert code == 2 and "anacal_sigma" in capsys.readouterr().err and not table.exists()
    monkeypatch.setitem(sys.modules, "anacal", None)          # as if it were not installed
    for cmd in (["measure", "f", "--methods", "REGAUSS,ANACAL"], ["validate", "f", "--method", "ANACAL"]):
        code = main(["-w", str(ws), "-q", "lens", *cmd])
        err = capsys.readouterr().err
        assert code == 2 and "pip install anacal" in err and "failed" not in err, (cmd, err)
        assert not table.exists()
