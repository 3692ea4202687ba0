"""Configuration of ``astro lens kappa``: the ``[lens.kappa.<command>]`` tables.

Each command reads its own table; its flags override single keys. Names given
here (data sets, models, prediction runs) are file names
(:data:`astrotool.section.FileName`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from astrotool.section import FileName, FileNameOrEmpty, OnnxOpset, Section, Seed

__docformat__ = "numpy"

Pair = tuple[float, float]
"""A ``(lo, hi)`` range."""

MAX_N_GAL = 10_000.0
"""Largest ``n_gal`` accepted [galaxies/arcmin^2]: a hundred times the deepest surveys'."""

MAX_GALAXIES_PER_MAP = 10_000_000
"""Largest mean number of galaxies per map (``n_gal * pixel_scale^2 * size^2``) accepted: each is held in memory
while its map is drawn, about 150 bytes apiece (1.5 GB per map at this limit, per worker)."""


class _Model(Section):
    """@public The base of every table here: unknown keys are errors, assigned values are validated too."""

    model_config = ConfigDict(validate_assignment=True)


def _ordered(v, info):
    """Refuse a ``(lo, hi)`` pair whose lower bound is above its upper bound."""
    if v[0] > v[1]:
        raise ValueError(f"{info.field_name}: lower bound {v[0]} > upper bound {v[1]}")
    return v


def _check_galaxies(n_gal: float, pixel_scale: float, size: int) -> None:
    """Refuse more than :data:`MAX_GALAXIES_PER_MAP` galaxies per map (n_gal [1/arcmin^2], pixel_scale
    [arcmin/pixel], size [pixels])."""
    per_map = n_gal * pixel_scale**2 * size**2
    if per_map > MAX_GALAXIES_PER_MAP:
        raise ValueError(f"n_gal = {n_gal:g} galaxies/arcmin^2 on {size}x{size} pixels of {pixel_scale:g} arcmin "
                         f"gives {per_map:.3g} galaxies per map, more than {MAX_GALAXIES_PER_MAP:.0e} (about "
                         f"{per_map * 150 / 1e9:.3g} GB of memory per map while it is drawn); lower n_gal, "
                         "pixel_scale or size")


class SimulateConfig(_Model):
    """``astro lens kappa simulate``: (epsilon, kappa) pairs in the Datathon layout.

    Every physical parameter is stated here; the model is described in
    :mod:`astrotool_lens.kappa.simulate`.
    """

    renamed_keys = {"n": "n_maps"}

    name: FileName = Field("sims", description="set name: folder lens/kappa/sims/<name>/ with EPSILON/ and KAPPA/")
    n_maps: int = Field(1000, ge=1, description="number of maps")
    size: int = Field(128, ge=16, le=2048, description="map side [pixels] (the Datathon's is 128; at most 2048: "
                                                      "each map is drawn on a grid of twice the side, about 3 GB "
                                                      "of memory per worker at 2048)")
    pixel_scale: float = Field(0.2, gt=0, description="[arcmin/pixel]")
    z_lens: Pair = Field((0.2, 0.5), description="cluster redshift, uniform in [lo, hi]")
    z_source: float = Field(1.0, gt=0, description="source-galaxy redshift (one sheet)")
    log10_mass: Pair = Field((14.3, 15.2), description="main halo log10(M200c / Msun), uniform in [lo, hi]")
    offset: float = Field(8.0, ge=0, description="main halo position: Gaussian about the centre, sigma [pixels]")
    n_sub: float = Field(2.0, ge=0, description="mean number of secondary halos (Poisson), uniform positions")
    log10_mass_sub: Pair = Field((13.3, 14.3), description="secondary halos' log10(M200c / Msun)")
    concentration: Literal["duffy08"] = Field(
        "duffy08", description="mass-concentration relation: Duffy et al. (2008) full sample, M200c")
    concentration_scatter: float = Field(0.15, ge=0, description="log-normal scatter of c200 [dex]")
    grf_rms: float = Field(0.02, ge=0, description="RMS of the Gaussian-random-field kappa component per pixel "
                                                   "(0.02: kappa down to about -0.09 over thousands of 128x128 "
                                                   "maps, as in the Datathon's set)")
    grf_slope: float = Field(-2.5, description="its power spectrum P(k) ~ k^slope")
    grf_cutoff: float = Field(0.25, gt=0, description="exp(-(k / cutoff)^2) cutoff of that spectrum [cycles/pixel]")
    kappa_max: float = Field(0.9, gt=0, lt=1, description="kappa is capped here (strong-lensing cores)")
    n_gal: float = Field(30.0, gt=0, le=MAX_N_GAL, description="source galaxies per arcmin^2 (Poisson per pixel; "
                                                                "surveys reach about 30 from the ground, 100 from "
                                                                "space)")
    sigma_e: float = Field(0.26, ge=0, lt=1, description="intrinsic ellipticity dispersion per component "
                                                         "(|e| < 1; observed about 0.26)")
    sigma_meas: float = Field(0.1, ge=0, description="measurement error per galaxy and component")
    chunk_size: int = Field(250, ge=1, description="maps per parallel work item")
    seed: Seed | None = Field(None, description="default: core.seed")

    check_ranges = field_validator("z_lens", "log10_mass", "log10_mass_sub")(_ordered)

    @field_validator("n_gal")
    @classmethod
    def _galaxies_fit_in_memory(cls, v, info):
        size, scale = info.data.get("size"), info.data.get("pixel_scale")
        if size is not None and scale is not None:   # else reported as their own errors
            _check_galaxies(v, scale, size)
        return v

    @model_validator(mode="after")
    def _lens_before_source(self):
        if self.z_lens[0] < 0 or self.z_lens[1] >= self.z_source:
            raise ValueError(f"z_lens {list(self.z_lens)} must lie in [0, z_source = {self.z_source}): a lens at or "
                             "behind the sources would have a negative critical density")
        _check_galaxies(self.n_gal, self.pixel_scale, self.size)   # also when size or pixel_scale is set later
        return self


class DataConfig(_Model):
    """``astro lens kappa data``: index, check and pack (epsilon, kappa) pairs into a data set."""

    name: FileNameOrEmpty = Field("", description="data set name: folder lens/kappa/data/<name>/ (default: the source's name)")
    split: tuple[float, float, float] = Field((0.8, 0.1, 0.1), description="train/validation/test fractions, "
                                              "divided by their sum ([8, 1, 1] = [0.8, 0.1, 0.1]; met as closely as "
                                              "whole maps allow; from 3 maps on no split of positive fraction is "
                                              "empty)")
    shard_size: int = Field(1000, ge=1, description="maps per HDF5 shard")
    drop_unpaired: bool = Field(False, description="pack the pairs that exist and report the unpaired files "
                                                   "(default: refuse)")
    seed: Seed | None = Field(None, description="seed of the split (default: core.seed)")


class BaselineConfig(_Model):
    """``astro lens kappa baseline``: classical reconstructions."""

    renamed_keys = {"output": "name"}

    dataset: str = Field("", description="data set name or folder")
    method: Literal["ks", "wiener", "zero", "mean"] = Field(
        "ks", description="ks: Kaiser-Squires; wiener: Wiener filter; zero: all-zeros map; mean: training-mean map")
    sigma: float = Field(2.0, ge=0, description="Gaussian smoothing of the KS map [pixels]")
    split: Literal["train", "val", "test", "all"] = Field("test", description="maps to reconstruct")
    train_dataset: str = Field("", description="data set whose training split gives the Wiener signal spectrum and "
                                               "the mean map (default: the data set itself)")
    name: FileNameOrEmpty = Field("", description="run name: lens/kappa/predictions/<name>/ "
                                                  "(default: <dataset>_<method>, ks: <dataset>_ks<sigma>)")
    zip: bool = Field(True, description="also write <name>.zip, the submission layout")


class TrainConfig(_Model):
    """``astro lens kappa train``: the U-Net.

    The defaults were checked on 3000 simulated 128x128 maps (``astro lens kappa
    simulate``'s defaults, seeds the benchmarks do not use) on 2 CPU cores: an
    epoch costs about 23 ms per map at width 8 and 41 ms at width 16, and at equal
    training time (9 and 5 epochs) both reach a test Pearson r of 0.84 (the best
    Kaiser-Squires smoothing: 0.65), so the cheaper width is the default.
    """

    dataset: str = Field("", description="data set name or folder")
    model: FileNameOrEmpty = Field("", description="model name: lens/kappa/models/<model>/ (default: <dataset>_unet)")
    width: int = Field(8, ge=2, description="channels of the first level (doubling per level)")
    depth: int = Field(4, ge=1, le=6, description="levels (each halves the map; the side must be divisible by "
                                                  "2**depth)")
    upsample: Literal["bilinear", "transpose"] = Field("bilinear", description="decoder upsampling: bilinear "
                                                                               "interpolation or 2x2 transposed conv")
    extra_inputs: list[Literal["ks", "abs_e"]] = Field(
        default_factory=lambda: ["ks"], description="channels added to (e1, e2, de): ks = smoothed Kaiser-Squires "
                                                    "E map, abs_e = |epsilon|")
    ks_sigma: float = Field(2.0, ge=0, description="smoothing of the ks input channel [pixels]")
    loss: Literal["mse", "l1"] = "mse"
    batch_size: int = Field(16, ge=1)
    epochs: int = Field(20, ge=1)
    lr: float = Field(1e-3, gt=0, description="peak learning rate (AdamW)")
    schedule: Literal["cosine", "constant"] = Field("cosine", description="learning rate: warm-up then cosine decay "
                                                                          "over the epochs, or constant")
    weight_decay: float = Field(1e-4, ge=0)
    augment: bool = Field(True, description="random flips and 90-degree rotations with spin-2 signs")
    patience: int = Field(5, ge=0, description="early-stopping patience [epochs]; 0 = off")
    max_samples: int = Field(0, ge=0, description="use at most this many training maps (0 = all)")
    resume: bool = Field(True, description="continue from <model>/last when the settings match")
    seed: Seed | None = Field(None, description="default: core.seed")

    @field_validator("extra_inputs")
    @classmethod
    def _each_once(cls, v):
        if len(set(v)) != len(v):
            raise ValueError(f"each channel once, got {v}")
        return v


class PredictConfig(_Model):
    """``astro lens kappa predict``: one float16 ``.npy`` per input name, and a zip."""

    renamed_keys = {"output": "name"}

    model: str = Field("", description="model name or folder (default: lens.kappa.train's model)")
    name: FileNameOrEmpty = Field("", description="run name: lens/kappa/predictions/<name>/ (default: <input>_<model>)")
    split: Literal["train", "val", "test", "all"] = Field("test", description="for a data set input: maps to predict")
    batch_size: int = Field(16, ge=1, description="maps per forward pass")
    engine: Literal["torch", "onnxruntime"] = "torch"
    zip: bool = Field(True, description="also write <name>.zip, the submission layout")


class ScoreConfig(_Model):
    """``astro lens kappa score``: the Datathon metrics and more (:mod:`astrotool_lens.kappa.score`)."""

    renamed_keys = {"report": "name"}

    truth: str = Field("", description="true kappa: a data set, a simulated set, a folder of .npy, a folder with "
                                       "KAPPA/ (and EPSILON/ for the consistency check), or *.tar.gz")
    split: Literal["train", "val", "test", "all"] = Field("all", description="for a data set truth: the maps "
                                                                             "predictions are paired with")
    partial: bool = Field(False, description="a folder/tarball truth may hold maps without a prediction (scored: "
                                             "the predicted ones; the rest counted). A data set truth always may")
    plots: bool = True
    examples: int = Field(3, ge=0, le=10, description="example maps (truth, prediction, residual) in the plots")
    batch_size: int = Field(64, ge=1, description="maps read at a time (memory ~ batch x runs maps)")
    name: FileNameOrEmpty = Field("", description="report name: lens/kappa/reports/<name>_score.json (default: the "
                                        "prediction folder's name; several: <first>_vs_<n>, n the number of "
                                        "the other runs)")


class ExportConfig(_Model):
    """``astro lens kappa export``."""

    model: str = Field("", description="model name or folder (default: lens.kappa.predict's model, else "
                                       "lens.kappa.train's)")
    opset: OnnxOpset = 17
    parity_tol: float = Field(1e-5, gt=0, description="max |torch - onnxruntime| accepted")
    parity_samples: int = Field(8, ge=1)


class KappaConfig(_Model):
    """The ``[lens.kappa]`` tables."""

    simulate: SimulateConfig = Field(default_factory=SimulateConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    baseline: BaselineConfig = Field(default_factory=BaselineConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    predict: PredictConfig = Field(default_factory=PredictConfig)
    score: ScoreConfig = Field(default_factory=ScoreConfig)
    export: ExportConfig = Field(default_factory=ExportConfig)
