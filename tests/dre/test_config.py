"""The [dre] section rejects settings that would otherwise fail deep inside a stage."""

import numpy as np
import pydantic
import pytest

from astrotool_dre.config import DreConfig


@pytest.mark.parametrize("bad, message", [
    ({"simulate": {"psf_size": 40}}, "psf_size must be odd"),
    ({"simulate": {"name": "../escaped"}}, "not a valid name: contains the path separator"),
    ({"simulate": {"q_range": [0.5, 1.5]}}, "axis ratios must lie in (0, 1]"),
    ({"simulate": {"galaxy_snr": [0, 100]}}, "S/N must be > 0"),
    ({"simulate": {"logr_range": [1.0, 0.5]}}, "logr_range: lower bound 1.0 is above upper bound 0.5"),
    ({"simulate": {"sersic_n": [0.1, 4.0]}}, "sersic_n must lie in [0.3, 6.2]"),
    ({"psf": {"size": 24}}, "size must be odd"),
    ({"detect": {"vignet_size": 34}}, "vignet_size must be odd"),
    ({"detect": {"back_filtersize": 2}}, "back_filtersize must be odd"),   # a median filter needs a centre
    ({"detect": {"gain": -2}}, "greater than 0"),
    ({"cuts": {"size": 64}}, "cuts.size (64) must equal models.boxsize (128)"),
    ({"fit": {"error_floor": {"LOGR": -0.1}}}, "greater than or equal to 0"),
    ({"fit": {"error_floor": {"RADIUS": 0.1}}}, "RADIUS"),
    ({"simulate": {"sersic_n": [1.0, 2.0, 4.0]}}, "a uniform range is [min, max], got 3 values"),
    ({"models": {"dlogh": 0}}, "dlogh = 0 with nlogh = 21"),
    ({"models": {"daxrat": 0.0}}, "daxrat = 0 with naxrat = 10"),
    ({"models": {"dposang": 0}}, "dposang = 0 with nposang = 13"),
    ({"models": {"dindex": 0}}, "dindex = 0 with nindex = 12"),
    ({"models": {"dposang": 60}}, "posang0 + (nposang-1)*dposang = 720 deg: angles must lie in [0, 180)"),
    ({"models": {"posang0": 15, "dposang": 30, "nposang": 12}}, "posang0 + (nposang-1)*dposang = 345 deg"),
    ({"models": {"dposang": 15, "nposang": 13}}, "posang0 + (nposang-1)*dposang = 180 deg"),
    ({"models": {"axrat0": 0.6}}, "axrat0 + (naxrat-1)*daxrat = 1.5: axis ratios must lie in (0, 1]"),
    # a seeing of 0 stopped SExtractor with "PSF file not found: default.psf"; the key never had an effect
    ({"detect": {"seeing_fwhm": 0}}, "greater than 0"),
    ({"detect": {"flag_image": "flags.fits"}}, "Extra inputs are not permitted"),
    # SExtractor wrote an ASCII catalogue that DRE then failed to read as FITS, naming no file
    ({"detect": {"sextractor_args": {"catalog_type": "ASCII", "-CHECKIMAGE_NAME": "x.fits", "BACK_SIZE": "64"}}},
     "sextractor_args: -CHECKIMAGE_NAME, catalog_type: set by DRE (its catalogue and check images)"),
])
def test_bad_settings_are_refused(bad, message):
    with pytest.raises(pydantic.ValidationError) as exc:
        DreConfig.model_validate(bad)
    assert message in str(exc.value)


def test_defaults_and_matching_sizes_are_accepted():
    cfg = DreConfig.model_validate({"cuts": {"size": 64}, "models": {"boxsize": 64}, "detect": {"gain": "cps"}})
    assert cfg.cuts.size == cfg.models.boxsize == 64
    assert DreConfig().simulate.psf_size % 2 == 1
    assert DreConfig.model_validate({"models": {"dindex": 0, "nindex": 1}}).models.nindex == 1  # DRE's grid


def test_a_zero_grid_step_is_a_config_error_naming_the_key(astro, tmp_path):
    r = astro("-w", str(tmp_path / "ws"), "--set", "dre.models.dlogh=0", "dre", "models")
    assert r.returncode == 2
    assert "dlogh = 0" in r.stderr and "--set" in r.stderr


def test_a_grid_beyond_its_axis_range_is_a_config_error_naming_the_keys(astro, tmp_path):
    """Angles reaching 180 deg crashed the cube build (KeyError, exit 1); axis ratios above 1 stopped with
    ModelGrid's words, naming no key (exit 1)."""
    for key, words in (("dre.models.dposang=60", "posang0 + (nposang-1)*dposang = 720 deg"),
                       ("dre.models.axrat0=0.6", "axrat0 + (naxrat-1)*daxrat = 1.5")):
        r = astro("-w", str(tmp_path / "ws"), "--set", key, "dre", "models")
        assert r.returncode == 2 and words in r.stderr and "dre.models" in r.stderr, r.stderr
    edge = DreConfig.model_validate({"models": {"axrat0": 0.1, "daxrat": 0.1, "naxrat": 10}}).models
    assert edge.naxrat == 10   # 0.1 + 9 * 0.1 = 1.0000000000000002 is 1


def test_default_grid_covers_every_index():
    from astrotool_dre.config import ModelsConfig
    from astrotool_dre.models import grid_from_config

    grid = grid_from_config(ModelsConfig())
    assert grid.index[0] == 0.5 and grid.index[-1] == pytest.approx(6.0) and np.all(np.diff(grid.index) == 0.5)
    assert grid.shape == (12, 10, 13, 21)


def test_the_fit_device_may_name_one_gpu_of_several(astro, tmp_path):
    """``cuda:N`` was refused by the configuration, though the backends take it (a GPU of a multi-GPU node)."""
    assert DreConfig(fit={"device": "CUDA:1"}).fit.device == "cuda:1"
    with pytest.raises(pydantic.ValidationError, match="expected auto, cpu, cuda or cuda:N"):
        DreConfig(fit={"device": "gpu"})
    r = astro("-w", tmp_path, "--set", 'dre.fit.device="cuda:1"', "config", "show", "dre")
    assert r.returncode == 0 and 'device = "cuda:1"' in r.stdout
