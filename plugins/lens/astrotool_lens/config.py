"""Configuration of the ``lens`` section (pydantic v2, unknown keys are errors).

Simulation presets
------------------
``lens.generate.preset`` selects a named set of physical parameters that is
merged *under* whatever the configuration layers give: any key set in a file,
an ``ASTRO_LENS__...`` variable, ``--set`` or a flag wins over the preset.
The packaged ``defaults.toml`` therefore sets no physical parameter of
``lens.generate``; with ``preset = "custom"`` the field defaults below apply
(they equal ``lensnet``).

``lensnet``
    LensNet's generator (a randomised GalSim demo5 / GREAT08 LowNoise):
    40x40 px at 1 arcsec/px, Moffat beta=3, FWHM 2.85 arcsec truncated at
    2 FWHM, PSF ellipticity g1, g2 ~ U(-0.02, 0.02) (LensNet's distortion
    +-0.04), exponential galaxies with half-light radius 0.98 x the PSF's,
    intrinsic distortion |e| ~ |N(0, 0.2)| redrawn while > 0.6, shear
    g1, g2 ~ U(-0.4, 0.4) per stamp, centroid uniform in a 1 px disc, Poisson
    sky noise at S/N 200.
``shearnet``
    ShearNet-like: 48x48 px at 0.141 arcsec/px, Gaussian PSF FWHM 0.59 arcsec,
    round exponential galaxies (no shape noise) with half-light radius
    U(0.4, 0.8) arcsec, g1, g2 ~ U(-0.1, 0.1), Gaussian noise at S/N 1000.
``fields``
    ``lensnet`` galaxies and PSF arranged for a bias measurement: 90-degree
    ring pairs in constant-shear fields of 1000 stamps, g1, g2 ~ U(-0.1, 0.1)
    per field, PSF ellipticity constant within a field.
``wide``
    Wide priors, for an estimator that must not depend on one simulator: per stamp a
    Moffat (beta 2-5, truncated at 1.5-4 FWHM), Kolmogorov or Gaussian PSF of FWHM
    2.2-3.8 arcsec at 1 arcsec/px with |g_psf| up to 0.05 per component; Sersic
    galaxies (n 0.5-4) of half-light radius 0.5-1.8x the PSF's, |e| ~ |N(0, 0.25)|
    below 0.7; Gaussian or Poisson noise at S/N 50-1000 (log-uniform); g1, g2 ~
    U(-0.3, 0.3). Draws that only this mixing makes come from their own seed streams,
    so the other presets draw the same pixels as before.

Ranges
------
A parameter given as a number is constant; given as ``[lo, hi]`` it is drawn
uniformly in that interval (log-uniformly where a ``*_dist = "loguniform"``
option says so).
"""

from __future__ import annotations

import copy
import warnings
from typing import Literal, Union

from pydantic import ConfigDict, Field, field_validator, model_validator

from astrotool.section import FileNameOrEmpty, OnnxOpset, Section, Seed, SplitFractions
from astrotool_lens.kappa.config import KappaConfig

__docformat__ = "numpy"

Range = Union[float, tuple[float, float]]
"""A constant, or ``(lo, hi)`` bounds of a uniform draw."""
Method = Literal["REGAUSS", "KSB", "BJ", "LINEAR", "METACAL", "ANACAL"]
"""A shape-measurement method name."""
METHODS: tuple[str, ...] = ("REGAUSS", "KSB", "BJ", "LINEAR", "METACAL", "ANACAL")
"""Every shape-measurement method."""
RESPONSE_METHODS: tuple[str, ...] = ("METACAL", "ANACAL")   # shear = <R>^-1 <e>, e and R per stamp
"""Methods that measure a response per stamp (shear = <R>^-1 <e>)."""
HSM_METHODS: tuple[str, ...] = ("REGAUSS", "KSB", "BJ", "LINEAR")   # the default set (METACAL, ANACAL on request)
"""GalSim HSM methods: the default set (METACAL, ANACAL on request)."""


class _Model(Section):
    """@public The base of every table here: unknown keys are errors, assigned values are validated too."""

    model_config = ConfigDict(validate_assignment=True)  # extra="forbid" comes from Section


def bounds(r: Range) -> tuple[float, float]:
    """``(lo, hi)`` of a :data:`Range` (equal for a constant)."""
    if isinstance(r, (tuple, list)):
        return float(r[0]), float(r[1])
    return float(r), float(r)


def _check_range(v, info):
    """Refuse a range whose lower bound is above its upper bound."""
    lo, hi = bounds(v)
    if lo > hi:
        raise ValueError(f"{info.field_name}: lower bound {lo} > upper bound {hi}")
    return v


class GalaxyConfig(_Model):
    """Galaxy light profile before shearing and PSF convolution."""

    profile: Literal["exponential", "sersic", "bulge+disk"] = Field(
        "exponential", description="exponential | sersic | bulge+disk (de Vaucouleurs bulge + exponential disk)")
    hlr: Range = Field(0.98, description="half-light radius (of the disk for bulge+disk), in hlr_unit")
    hlr_unit: Literal["arcsec", "psf_hlr"] = Field(
        "psf_hlr", description="arcsec, or multiples of the PSF's half-light radius")
    hlr_dist: Literal["uniform", "loguniform"] = "uniform"
    flux: Range = Field(1.0, description="total flux [counts] before noise scaling (Poisson noise rescales it to reach the S/N)")
    sersic_n: Range = Field((0.8, 4.0), description="Sersic index (profile = sersic)")
    sersic_n_step: float = Field(
        0.05, gt=0, description="Sersic n is rounded to this grid so GalSim's per-n tables are built once")
    bulge_fraction: Range = Field((0.0, 0.5), description="bulge flux fraction (profile = bulge+disk)")
    bulge_hlr_ratio: Range = Field(0.5, description="bulge half-light radius / disk half-light radius")

    check_ranges = field_validator("hlr", "flux", "sersic_n", "bulge_fraction", "bulge_hlr_ratio")(_check_range)

    @model_validator(mode="after")
    def _positive(self):
        for name in ("hlr", "flux", "bulge_hlr_ratio"):
            if bounds(getattr(self, name))[0] <= 0:
                raise ValueError(f"{name} must be > 0")
        lo, hi = bounds(self.sersic_n)
        if lo < 0.3 or hi > 6.2:
            raise ValueError("sersic_n must lie in [0.3, 6.2] (GalSim's range)")
        lo, hi = bounds(self.bulge_fraction)
        if lo < 0 or hi > 1:
            raise ValueError("bulge_fraction must lie in [0, 1]")
        return self


class ShapeConfig(_Model):
    """Intrinsic (pre-shear) ellipticity distribution."""

    kind: Literal["none", "gaussian", "uniform"] = Field(
        "gaussian", description="none (round) | gaussian: |ellipticity| ~ |N(0, sigma)| redrawn while > max | "
                                "uniform: uniform in the disc |ellipticity| <= max")
    sigma: float = Field(0.2, ge=0, description="width of the gaussian modulus distribution")
    max: float = Field(0.6, gt=0, lt=1, description="largest modulus")
    convention: Literal["g", "e"] = Field(
        "e", description="whether sigma/max describe the reduced-shear ellipticity g or the distortion e")
    ring: bool = Field(False, description="90-degree ring pairs: stamps 2k and 2k+1 have opposite intrinsic ellipticity")


class PsfConfig(_Model):
    """Point-spread function; its ellipticity is a reduced shear g applied to the round profile."""

    profile: Literal["moffat", "kolmogorov", "gaussian"] = "moffat"
    profiles: list[Literal["moffat", "kolmogorov", "gaussian"]] = Field(
        default_factory=list, description="draw each PSF's profile uniformly from these (empty: profile)")
    fwhm: Range = Field(2.85, description="FWHM [arcsec]")
    beta: Range = Field(3.0, description="Moffat beta (> 1.1)")
    trunc: Range = Field(2.0, description="Moffat truncation radius in units of the FWHM (0 = none)")
    g1: Range = Field((-0.02, 0.02), description="PSF ellipticity g1 (reduced shear)")
    g2: Range = Field((-0.02, 0.02), description="PSF ellipticity g2 (reduced shear)")
    vary: Literal["stamp", "field"] = Field(
        "stamp", description="draw PSF parameters per stamp (per pair with ring) or once per shear field")
    shift_with_galaxy: bool = Field(
        True, description="apply the galaxy's sub-pixel offset to the PSF stamp too (LensNet does)")

    check_ranges = field_validator("fwhm", "beta", "trunc", "g1", "g2")(_check_range)

    @model_validator(mode="after")
    def _positive(self):
        if bounds(self.fwhm)[0] <= 0:
            raise ValueError("fwhm must be > 0")
        if bounds(self.beta)[0] <= 1.1:
            raise ValueError("beta must be > 1.1")
        if bounds(self.trunc)[0] < 0:
            raise ValueError("trunc must be >= 0")
        return self

    @property
    def mixed(self) -> bool:
        """Whether each PSF draws its profile, beta or truncation (the ``wide`` preset)."""
        return bool(self.profiles) or any(lo != hi for lo, hi in (bounds(self.beta), bounds(self.trunc)))


class ShearConfig(_Model):
    """Applied (lensing) reduced shear."""

    g1: Range = Field((-0.4, 0.4), description="g1 value or [lo, hi]")
    g2: Range = Field((-0.4, 0.4), description="g2 value or [lo, hi]")
    field_size: int = Field(
        1, ge=1, description="stamps per constant-shear field (1 = a new shear per stamp, per pair with ring)")

    check_ranges = field_validator("g1", "g2")(_check_range)

    @model_validator(mode="after")
    def _below_one(self):
        a = max(abs(x) for x in bounds(self.g1))
        b = max(abs(x) for x in bounds(self.g2))
        if a * a + b * b >= 1:
            raise ValueError("|g| must stay below 1 over the whole g1, g2 range")
        return self


class NoiseConfig(_Model):
    """Pixel noise. S/N is GalSim's matched-filter definition sqrt(sum I^2) / sigma."""

    kind: Literal["none", "gaussian", "poisson"] = Field(
        "poisson", description="none | gaussian (flux kept, sigma set by S/N) | poisson "
                               "(sky-dominated Poisson noise, flux rescaled to reach the S/N, as GalSim addNoiseSNR)")
    snr: Range = Field(200.0, description="target S/N (value or [lo, hi])")
    snr_dist: Literal["uniform", "loguniform"] = "uniform"
    kinds: list[Literal["gaussian", "poisson"]] = Field(
        default_factory=list, description="draw each stamp's noise kind uniformly from these (empty: kind)")
    sky_level: float = Field(1e6, gt=0, description="sky level [counts/arcsec^2] for Poisson noise")

    check_ranges = field_validator("snr")(_check_range)

    @model_validator(mode="after")
    def _positive(self):
        if bounds(self.snr)[0] <= 0:
            raise ValueError("snr must be > 0")
        return self


PRESETS: dict[str, dict] = {
    "lensnet": {
        "stamp_size": 40,
        "pixel_scale": 1.0,
        "offset_radius": 1.0,
        "galaxy": {"profile": "exponential", "hlr": 0.98, "hlr_unit": "psf_hlr", "flux": 1.0},
        "shape": {"kind": "gaussian", "sigma": 0.2, "max": 0.6, "convention": "e", "ring": False},
        "psf": {"profile": "moffat", "fwhm": 2.85, "beta": 3.0, "trunc": 2.0, "g1": [-0.02, 0.02],
                "g2": [-0.02, 0.02], "vary": "stamp", "shift_with_galaxy": True},
        "shear": {"g1": [-0.4, 0.4], "g2": [-0.4, 0.4], "field_size": 1},
        "noise": {"kind": "poisson", "snr": 200.0, "sky_level": 1e6},
    },
    "shearnet": {
        "stamp_size": 48,
        "pixel_scale": 0.141,
        "offset_radius": 0.5,
        "galaxy": {"profile": "exponential", "hlr": [0.4, 0.8], "hlr_unit": "arcsec", "flux": 1.0},
        "shape": {"kind": "none", "ring": False},
        "psf": {"profile": "gaussian", "fwhm": 0.59, "g1": 0.0, "g2": 0.0, "vary": "stamp",
                "shift_with_galaxy": False},
        "shear": {"g1": [-0.1, 0.1], "g2": [-0.1, 0.1], "field_size": 1},
        "noise": {"kind": "gaussian", "snr": 1000.0},
    },
}
"""Settings of each simulation preset (``lens generate --preset``)."""
PRESETS["wide"] = {   # wide priors, for estimators that must not depend on one simulator
    "stamp_size": 40,
    "pixel_scale": 1.0,
    "offset_radius": 1.0,
    "galaxy": {"profile": "sersic", "sersic_n": [0.5, 4.0], "hlr": [0.5, 1.8], "hlr_unit": "psf_hlr",
               "hlr_dist": "loguniform", "flux": 1.0},
    "shape": {"kind": "gaussian", "sigma": 0.25, "max": 0.7, "convention": "e", "ring": False},
    "psf": {"profile": "moffat", "profiles": ["moffat", "kolmogorov", "gaussian"], "fwhm": [2.2, 3.8],
            "beta": [2.0, 5.0], "trunc": [1.5, 4.0], "g1": [-0.05, 0.05], "g2": [-0.05, 0.05], "vary": "stamp",
            "shift_with_galaxy": True},
    "shear": {"g1": [-0.3, 0.3], "g2": [-0.3, 0.3], "field_size": 1},
    "noise": {"kind": "poisson", "kinds": ["gaussian", "poisson"], "snr": [50.0, 1000.0], "snr_dist": "loguniform",
              "sky_level": 1e6},
}
PRESETS["fields"] = copy.deepcopy(PRESETS["lensnet"])
PRESETS["fields"]["shape"]["ring"] = True
PRESETS["fields"]["psf"]["vary"] = "field"
PRESETS["fields"]["shear"] = {"g1": [-0.1, 0.1], "g2": [-0.1, 0.1], "field_size": 1000}


def _deep_merge(base: dict, top: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in top.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


class GenerateConfig(_Model):
    """``astro lens generate``: sheared galaxy stamps."""

    renamed_keys = {"n": "n_stamps"}

    preset: Literal["lensnet", "shearnet", "fields", "wide", "custom"] = Field(
        "lensnet", description="physical parameters merged under the given keys (see module docs)")
    name: FileNameOrEmpty = Field("", description="dataset name (folder lens/shear/<name>); default: the preset's name")
    n_stamps: int = Field(10000, ge=1, description="number of stamps")
    shard_size: int = Field(1000, ge=1, description="stamps per HDF5 shard (the unit of parallel work and of resuming)")
    seed: Seed | None = Field(None, description="base seed (default: core.seed); stamp i uses a seed derived from (seed, i)")
    stamp_size: int = Field(40, ge=8, le=512, description="stamp side [pixels]")
    pixel_scale: float = Field(1.0, gt=0, description="[arcsec / pixel]")
    offset_radius: float = Field(1.0, ge=0, description="sub-pixel centroid offsets uniform in a disc of this radius [pixels]")
    format: Literal["hdf5", "lensnet"] = Field(
        "hdf5", description="hdf5 | lensnet (also gal_N.fits, psf_N.fits and data.json as LensNet reads them)")
    compression: Literal["none", "low", "medium", "high"] = "low"
    galaxy: GalaxyConfig = Field(default_factory=GalaxyConfig)
    shape: ShapeConfig = Field(default_factory=ShapeConfig)
    psf: PsfConfig = Field(default_factory=PsfConfig)
    shear: ShearConfig = Field(default_factory=ShearConfig)
    noise: NoiseConfig = Field(default_factory=NoiseConfig)

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data):
        if isinstance(data, dict):
            preset = data.get("preset", "lensnet")
            if isinstance(preset, str) and preset in PRESETS:  # a value that is no name is refused by the field
                data = _deep_merge(PRESETS[preset], data)
        return data

    @field_validator("shear")
    @classmethod
    def _even_fields(cls, shear, info):
        """A check of ``shear`` (not of the whole section), so an error names where field_size was set."""
        shape = info.data.get("shape")
        if shape is not None and shape.ring and shear.field_size > 1 and shear.field_size % 2:
            raise ValueError(f"ring pairs need an even field_size, got {shear.field_size}")
        return shear

    @model_validator(mode="after")
    def _consistent(self):
        if self.shape.ring and self.n_stamps % 2:
            raise ValueError("ring pairs need an even n_stamps")
        return self

    @property
    def dataset_name(self) -> str:
        """The dataset name: ``name``, else the preset's name."""
        return self.name or self.preset

    @property
    def effective_field_size(self) -> int:
        """Stamps sharing one shear: ``shear.field_size``, at least 2 with ring pairs."""
        return max(self.shear.field_size, 2 if self.shape.ring else 1)


class MeasureConfig(_Model):
    """``astro lens measure``: GalSim HSM shear estimators."""

    renamed_keys = {"output": "name"}

    dataset: str = Field("", description="dataset name or folder (default: lens.generate's dataset)")
    methods: list[Method] = Field(default_factory=lambda: list(HSM_METHODS),
                                  description="REGAUSS, KSB, BJ, LINEAR (GalSim HSM), METACAL (metacalibration), "
                                              "ANACAL (AnaCal's FPFS)")
    conversion: Literal["exact", "responsivity"] = Field(
        "exact", description="distortion e -> shear estimate for REGAUSS/BJ/LINEAR: exact = per object "
                             "g = e/(1+sqrt(1-|e|^2)) (unbiased for isotropic shapes); responsivity = e/R, "
                             "R = 2(1 - e_rms^2) over the dataset")
    guess_sig_gal: float = Field(5.0, gt=0, description="initial galaxy sigma guess [pixels]")
    guess_sig_psf: float = Field(3.0, gt=0, description="initial PSF sigma guess [pixels]")
    metacal_delta: float = Field(0.01, gt=0, le=0.1, description="METACAL: the shear applied (+ and -, each "
                                                                  "component) to measure the response")
    metacal_fixnoise: bool = Field(True, description="METACAL: add a 90-degree-rotated noise image of the stamp's "
                                                     "noise level (from its edge) to cancel the sheared noise")
    metacal_seed: Seed = Field(0, description="METACAL: seed of those noise images (per stamp: (seed, index))")
    anacal_sigma: float = Field(2.0, gt=0, le=6, description="ANACAL: shapelet kernel sigma in units of the PSF's "
                                                              "adaptive-moments sigma")
    anacal_c0: float = Field(4.0, ge=0, description="ANACAL: ellipticity weight C0 = anacal_c0 x the noise std of "
                                                     "M00 (e = M22 / (M00 + C0))")
    anacal_seed: Seed = Field(0, description="ANACAL: seed of the pure-noise images that remove the noise bias "
                                             "(per stamp: (seed, index))")
    name: FileNameOrEmpty = Field("", description="output stem: lens/predictions/<name>_hsm.parquet (default: "
                                                    "the dataset's or input's name)")

    @field_validator("methods")
    @classmethod
    def _some(cls, v):
        if not v:
            raise ValueError("give at least one method")
        return v


class TrainConfig(_Model):
    """``astro lens train``: CNN shear estimator."""

    dataset: str = Field("", description="dataset name or folder (default: lens.generate's dataset)")
    model: FileNameOrEmpty = Field("", description="model name, folder lens/models/<model> (default: <dataset>_cnn)")
    target: Literal["ellipticity", "shear"] = Field(
        "ellipticity", description="ellipticity: the lensed galaxy's pre-PSF reduced-shear ellipticity, whose "
                                   "ensemble mean is g (unbiased ensemble estimator); shear: g itself "
                                   "(lower per-galaxy MSE, shrunk towards 0 when there is shape noise)")
    use_psf: bool = Field(True, description="feed the PSF stamp as a second channel (without it the network "
                                            "cannot correct a PSF ellipticity that varies between images)")
    width: int = Field(32, ge=2, description="channels of the first convolution block (doubling per block)")
    blocks: int = Field(3, ge=1, le=6, description="conv blocks, each halving the stamp")
    hidden: int = Field(128, ge=4, description="units of the dense layer")
    batch_size: int = Field(64, ge=1)
    epochs: int = Field(30, ge=1)
    lr: float = Field(2e-3, gt=0, description="peak learning rate (AdamW)")
    weight_decay: float = Field(1e-4, ge=0)
    schedule: Literal["cosine", "constant"] = "cosine"
    warmup_epochs: float = Field(0.5, ge=0)
    loss: Literal["mse", "mae", "huber"] = "mse"
    normalisation: Literal["stamp_rms", "stamp_rms+noise", "global", "none"] = Field(
        "stamp_rms", description="stamp_rms: each stamp/channel divided by its RMS; stamp_rms+noise: the same, "
                                 "and the galaxy's noise sigma (MAD of the stamp's outer 2 pixels) over its RMS "
                                 "as one more input; global: by the training set's per-channel RMS (stored in the "
                                 "checkpoint); none")
    activation: Literal["smooth", "relu"] = Field(
        "smooth", description="smooth: SiLU and average pooling, a smooth function of the pixels whose response to "
                            "small shears (lens predict --response metacal) finite differences measure well; "
                            "relu: ReLU and max pooling (piecewise linear)")
    split: SplitFractions = Field(
        (0.8, 0.1, 0.1), description="train/validation/test fractions, assigned by shear field (or ring pair)")
    augment: bool = Field(True, description="random flips/90-degree rotations with the matching sign changes of (g1, g2)")
    patience: int = Field(6, ge=0, description="early-stopping patience [epochs]; 0 = off")
    seed: Seed | None = Field(None, description="default: core.seed")
    threads: int = Field(0, ge=0, description="torch CPU threads (0 = torch's default)")
    resume: bool = Field(True, description="continue from lens/models/<model>/last when present")
    max_samples: int = Field(0, ge=0, description="use at most this many stamps (0 = all)")

    @field_validator("split")
    @classmethod
    def _split(cls, v):
        if min(v) < 0 or abs(sum(v) - 1) > 1e-6 or v[0] <= 0 or v[1] <= 0:
            raise ValueError("split: three non-negative fractions summing to 1, train and validation > 0")
        return v


class EvaluateConfig(_Model):
    """``astro lens evaluate``: CNN and classical estimators side by side."""

    dataset: str = Field("", description="dataset (default: the model's training dataset, test split)")
    model: str = Field("", description="model name or folder (default: lens.train's model)")
    split: Literal["auto", "test", "all"] = Field(
        "auto", description="auto = the test split on the training dataset, all stamps on another dataset")
    classical: list[Method] = Field(default_factory=lambda: list(HSM_METHODS),
                                    description="HSM estimators to compare (measured if missing)")
    symmetrize: bool = Field(True, description="average the CNN over the 8 flips/rotations (exactly spin-2 equivariant)")
    calibrated: bool = Field(True, description="apply the model's calibration (astro lens calibrate); the raw "
                                               "CNN is scored too, as 'CNN raw'")
    batch_size: int = Field(32, ge=1, description="stamps per forward pass")
    q_sigma2_min: float = Field(4.0, gt=0, description="GREAT3 Q softening: 4 ground, 1 space")
    plots: bool = True
    bins: int = Field(5, ge=2, description="bins for bias vs S/N and size")


class PredictConfig(_Model):
    """``astro lens predict``."""

    renamed_keys = {"output": "name"}

    model: str = Field("", description="model name or folder (default: lens.train's model)")
    batch_size: int = Field(32, ge=1, description="stamps per forward pass")
    symmetrize: bool = True
    calibrated: bool = Field(True, description="apply the model's calibration (astro lens calibrate)")
    response: Literal["none", "metacal"] = Field(
        "none", description="none: the model's outputs; metacal: its shear response measured on the stamps as "
                            "lens validate --response metacal does, g = <R>^-1 e over the whole input (torch only, no "
                            "calibration)")
    engine: Literal["torch", "onnxruntime"] = Field(
        "torch", description="torch, or onnxruntime on <model>/model.onnx (astro lens export; its symmetrize and "
                             "calibrated must match these)")
    name: FileNameOrEmpty = Field("", description="output stem (default: from the input's name)")


class ExportConfig(_Model):
    """``astro lens export``."""

    model: str = Field("", description="model name or folder (default: lens.train's model)")
    opset: OnnxOpset = 17
    symmetrize: bool = Field(True, description="include the 8-fold symmetrisation in the exported graph")
    calibrated: bool = Field(True, description="include the model's calibration in the exported graph")
    parity_tol: float = Field(1e-5, gt=0, description="max |torch - onnxruntime| accepted")
    parity_samples: int = Field(64, ge=1)


class CalibrateConfig(_Model):
    """``astro lens calibrate``: multiplicative and additive bias from constant-shear simulations."""

    model: str = Field("", description="model name or folder (default: lens.train's model)")
    dataset: str = Field("", description="constant-shear dataset (preset fields, another seed than the one "
                                         "you evaluate on); required")
    symmetrize: bool = Field(True, description="calibrate the 8-fold averaged estimate (as evaluate/predict use it)")
    batch_size: int = Field(32, ge=1, description="stamps per forward pass")
    max_abs_m: float = Field(0.1, gt=0, description="refuse (exit 2, nothing written) a fit with |m1| or |m2| above "
                                                     "this: the model does not match the simulations")
    min_response_sigmas: float = Field(3.0, ge=0, description="refuse a fit whose 1 + m1 or 1 + m2 is not above "
                                                              "this many times its error (0: no check)")
    min_response: float = Field(0.1, ge=0, lt=1, description="refuse a fit whose 1 + m1 or 1 + m2 is below this "
                                                             "(a model that hardly responds to shear; 0: no check); "
                                                             "export refuses such a stored calibration too")


class ValidateConfig(_Model):
    """``astro lens validate``: m and c of an estimator on a constant-shear set, and whether a calibration transfers."""

    model: str = Field("", description="the estimator: a trained model (name or folder); or give method")
    method: Method | None = Field(   # not Literal["", ...]: --method's choices would show an empty one
        None, description="the estimator: a classical method measured with lens measure's settings; or give model")
    calibration: str = Field("", description="JSON file holding m1, m2, c1, c2 (a lens validate report, a model.json, "
                                             "a lens calibrate result); default: the model's own calibration")
    symmetrize: bool = Field(True, description="average the CNN over the 8 flips/rotations")
    response: Literal["none", "metacal"] = Field(
        "none", description="none: the model's outputs (and its stored calibration); metacal: the model measures "
                            "the ellipticities of metacalibration, its response measured on each stamp (lens.measure's "
                            "metacal_delta, metacal_fixnoise, metacal_seed) and no calibration applied")
    batch_size: int = Field(32, ge=1, description="stamps per forward pass")
    max_abs_m: float = Field(5e-3, gt=0, description="a calibration transfers when every calibrated |m_i| is below "
                                                    "this (or within `sigmas` errors of 0)")
    max_abs_c: float = Field(5e-4, gt=0, description="... and every calibrated |c_i| below this (or within `sigmas` "
                                                    "errors of 0)")
    sigmas: float = Field(2.0, gt=0, description="how many fit errors from 0 still count as consistent with 0")

    @field_validator("method", mode="before")
    @classmethod
    def _empty_method(cls, value):
        """``""`` (an older configuration's "no method") is no method."""
        return None if value == "" else value


class DemoConfig(_Model):
    """The ``astro demo`` step (<= 60 s on 2 cores)."""

    n_train: int = Field(2400, ge=64)
    n_fields: int = Field(20, ge=3, description="constant-shear fields of each set (calibration, test)")
    field_size: int = Field(100, ge=2)
    epochs: int = Field(6, ge=1)
    width: int = Field(12, ge=2)


warnings.filterwarnings("ignore", message='Field name "validate" in "LensConfig" shadows', category=UserWarning)


class LensConfig(_Model):
    """The ``[lens]`` section."""

    generate: GenerateConfig = Field(default_factory=GenerateConfig)
    measure: MeasureConfig = Field(default_factory=MeasureConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    predict: PredictConfig = Field(default_factory=PredictConfig)
    export: ExportConfig = Field(default_factory=ExportConfig)
    calibrate: CalibrateConfig = Field(default_factory=CalibrateConfig)
    validate: ValidateConfig = Field(default_factory=ValidateConfig)   # shadows BaseModel.validate (pydantic v1 API)
    demo: DemoConfig = Field(default_factory=DemoConfig)
    kappa: KappaConfig = Field(default_factory=KappaConfig)

    @property
    def dataset(self) -> str:
        """Default dataset name: ``generate``'s."""
        return self.generate.dataset_name
