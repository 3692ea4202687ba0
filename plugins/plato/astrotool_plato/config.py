"""Configuration of the ``[plato]`` section (pydantic v2 models).

Every key has a packaged default in ``astrotool_plato/defaults.toml``; a user
overrides them in a ``--cfg`` file, with ``ASTRO_PLATO__SIMULATE__N_CURVES=…``,
``--set plato.simulate.n_curves=…`` or a command flag.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveFloat, model_validator

from astrotool.section import FileName, FileNameOrEmpty, Section, Seed, SplitFractions, check_ordered

__docformat__ = "numpy"


OPTIMIZERS = ("Adadelta", "Adafactor", "Adagrad", "Adam", "AdamW", "Adamax", "ASGD", "NAdam", "RAdam", "RMSprop",
              "Rprop", "SGD")
"""``torch.optim`` classes ``train`` accepts by name (LBFGS needs a closure, SparseAdam sparse gradients: not here)."""

SCHEDULERS = ("", "ConstantLR", "CosineAnnealingLR", "ExponentialLR", "LinearLR", "MultiStepLR", "StepLR")
"""Learning-rate schedules by ``torch.optim.lr_scheduler`` name, stepped once per epoch ("" = none)."""
SCHEDULER_HINT = ("ReduceLROnPlateau is not offered: StepLR or CosineAnnealingLR lower the rate by epoch, and "
                  "plato.train.patience stops the training on a plateau")
"""What to use for a schedule not in :data:`SCHEDULERS` (the one people ask for)."""

MAX_SAMPLES = 10_000_000
"""The most samples one simulated light curve may have (8 bytes each, several arrays of them)."""


class SimulateConfig(Section):
    """``[plato.simulate]``: the built-in light-curve simulator.

    Ranges are ``[min, max]``; each curve draws its own value from them.
    """


    name: FileName = Field("sim",
                      description="stem of the output files and prefix of the curve ids")
    backend: Literal["builtin", "psls"] = Field(
        "builtin", description="builtin: this module's model (fast); psls: PLATO's light-curve simulator (PSLS: "
                               "camera noise for the magnitude, granulation, activity, systematics with mask-update "
                               "steps, gaps), with the same transits and binaries injected")
    magnitude: tuple[float, float] = Field((9.0, 13.0), description="psls: V magnitude range, uniform (sets the "
                                                                     "noise; noise_ppm, granulation and rotation "
                                                                     "keys are not used)")
    psls_systematics: str = Field("PLATO_systematics_BOL_V2.npy",
                                  description="psls: systematics table (BOL_V2: mask updates inside quarters; "
                                              "BOL_FixedMask_V2: none); empty: no systematics")
    psls_gaps: bool = Field(True, description="psls: PLATO's periodic gaps (20 min every 5 d)")
    psls_data: str = Field("", description="psls: folder of the unpacked psls source distribution (psls.yaml, "
                                           "models/, systematics/); empty: fetched once into ~/.cache/astrotool")
    n_curves: int = Field(16, ge=1, description="number of light curves")
    duration_days: float = Field(10.0, gt=0, description="length of each light curve [d]")
    cadence_s: float = Field(25.0, gt=0, description="sampling interval [s]; PLATO normal cameras: 25 s")
    noise_ppm: float = Field(600.0, ge=0, description="white noise per cadence [ppm]; 600 ppm per 25 s ≈ 50 ppm in 1 h")
    granulation_ppm: float = Field(60.0, ge=0, description="rms of the granulation-like red noise [ppm]")
    granulation_timescale_min: float = Field(10.0, gt=0, description="characteristic time of the red noise [min]")
    granulation_exponent: float = Field(2.0, ge=1.0, le=6.0,
                                        description="slope of the Harvey profile: 2 = AR(1)/Lorentzian, 4 = super-Lorentzian")
    red_noise_ppm: tuple[float, float] = Field((0.0, 0.0), description="builtin: rms range [ppm] of a second "
                                                                     "red-noise component drawn per curve "
                                                                     "(activity, the granulation of larger stars), "
                                                                     "log-uniform; [0, 0]: none")
    red_noise_hours: tuple[float, float] = Field((0.5, 24.0), description="builtin: characteristic-time range [h] "
                                                                          "of that component, log-uniform")
    rotation_fraction: float = Field(0.5, ge=0, le=1, description="fraction of stars with spot modulation")
    rotation_period_days: tuple[float, float] = Field((2.0, 30.0), description="rotation period range [d]")
    rotation_amplitude_ppm: tuple[float, float] = Field((100.0, 2000.0), description="semi-amplitude range [ppm]")
    transit_fraction: float = Field(0.5, ge=0, le=1, description="fraction of curves with a transit")
    depth_ppm: tuple[float, float] = Field((50.0, 900.0), description="transit depth range [ppm], drawn log-uniform")
    duration_hours: tuple[float, float] = Field((2.0, 12.0), description="total transit duration T14 range [h]")
    impact_max: float = Field(0.8, ge=0, lt=1, description="largest impact parameter [stellar radii]")
    shape: Literal["limb-darkened", "trapezoid"] = Field(
        "limb-darkened", description="transit profile: quadratic limb darkening (small-planet approximation) or trapezoid")
    limb_darkening: tuple[float, float] = Field((0.40, 0.26), description="quadratic limb-darkening coefficients u1, u2")
    periodic_fraction: float = Field(0.0, ge=0, le=1,
                                     description="fraction of transiting curves that repeat with a period")
    period_days: tuple[float, float] = Field((1.0, 20.0), description="period range of periodic transits [d], "
                                             "log-uniform; a period below 1.5 x its transit's duration is raised "
                                             "to that")
    noise_from_magnitude: bool = Field(False, description="builtin: draw each star's V magnitude in `magnitude` "
                                                          "and take its white noise from PLATO's noise-to-signal "
                                                          "(170 ppm per 25 s at V = 9, x 10^(0.25 (V - 9))) "
                                                          "instead of noise_ppm")
    gaps: bool = Field(False, description="builtin: PLATO's periodic gaps, 20 min every 5 d (samples removed)")
    step_fraction: float = Field(0.0, ge=0, le=1, description="builtin: fraction of curves with a flux step (an "
                                                              "aperture-mask update) at a random time")
    step_ppm: tuple[float, float] = Field((100.0, 1200.0), description="builtin: size range of those steps [ppm], "
                                                                       "log-uniform, either sign")
    eb_fraction: float = Field(0.2, ge=0, le=1, description="fraction of the transit-free curves with an "
                                                            "eclipsing binary (a negative example)")
    beb_fraction: float = Field(0.3, ge=0, le=1, description="fraction of the transit-free curves with a background "
                                                             "eclipsing binary, diluted to planet-like depths")
    eb_depth_ppm: tuple[float, float] = Field((2000.0, 200000.0), description="primary eclipse depth range of "
                                                                              "eclipsing binaries [ppm], log-uniform")
    beb_depth_ppm: tuple[float, float] = Field((50.0, 2000.0), description="primary eclipse depth range of "
                                                                           "background binaries [ppm], log-uniform")
    eclipse_secondary_ratio: tuple[float, float] = Field((0.0, 0.8), description="secondary-to-primary depth "
                                                                                 "ratio range")
    eclipse_period_days: tuple[float, float] = Field((0.5, 30.0), description="binary period range [d], "
                                                                              "log-uniform; a period below 3 x "
                                                                              "its eclipse's duration is raised "
                                                                              "to that")
    camera_groups: int = Field(0, ge=0, le=4, description="builtin: also write the flux of this many camera "
                                                          "groups (PLATO: 4 groups of 6 cameras) as columns "
                                                          "flux_g1 ... next to the co-added flux, their mean; each "
                                                          "group has its own white noise (sqrt(groups) x the "
                                                          "co-added noise) and its own mask-update steps "
                                                          "(step_fraction per group); 0: co-added flux only")
    star_radius: tuple[float, float] = Field((0.7, 1.8), description="stellar radius range [R_sun], uniform "
                                                                     "(PLATO's F5-K7 dwarfs and subgiants); gives "
                                                                     "the planet radius, rp_rs x R_star")
    chunk_size: int = Field(64, ge=1, description="light curves per output Parquet file")

    @model_validator(mode="after")
    def _check(self) -> "SimulateConfig":
        for key in ("rotation_period_days", "rotation_amplitude_ppm", "depth_ppm", "duration_hours", "period_days",
                    "eb_depth_ppm", "beb_depth_ppm", "eclipse_secondary_ratio", "eclipse_period_days", "magnitude",
                    "step_ppm", "star_radius", "red_noise_ppm", "red_noise_hours"):
            check_ordered(key, getattr(self, key))
        if self.camera_groups == 1:
            raise ValueError("camera_groups: one group is the co-added flux; use 0, or 2 to 4 groups")
        if self.camera_groups and self.backend == "psls":
            raise ValueError("camera_groups: PSLS writes the co-added flux only; camera groups come from the "
                             "builtin backend")
        if self.star_radius[0] <= 0:
            raise ValueError("star_radius: radii must be positive")
        if self.red_noise_ppm[1] > 0 and (self.red_noise_ppm[0] <= 0 or self.red_noise_hours[0] <= 0):
            raise ValueError("red_noise_ppm, red_noise_hours: a log-uniform range needs positive bounds "
                             "([0, 0] turns the component off)")
        if self.eb_fraction + self.beb_fraction > 1:
            raise ValueError(f"eb_fraction + beb_fraction = {self.eb_fraction + self.beb_fraction:g}: they share "
                             "the transit-free curves, so they may add up to 1 at most")
        if min(self.eb_depth_ppm[0], self.beb_depth_ppm[0], self.eclipse_period_days[0]) <= 0 \
                or max(self.eb_depth_ppm[1], self.beb_depth_ppm[1]) >= 1e6:
            raise ValueError("eclipse depths must lie in (0, 1e6) ppm and periods be positive")
        if self.depth_ppm[0] <= 0:
            raise ValueError("depth_ppm: depths must be positive")
        if self.depth_ppm[1] >= 1e6:
            raise ValueError("depth_ppm: depths must be below 1e6 ppm")
        if self.duration_hours[0] <= 0 or self.period_days[0] <= 0 or self.rotation_period_days[0] <= 0:
            raise ValueError("durations and periods must be positive")
        if self.duration_hours[1] / 24.0 >= self.duration_days:
            # blamed on duration_days (--days) while duration_hours is left at its default: the curve was shortened
            if tuple(self.duration_hours) == tuple(type(self).model_fields["duration_hours"].get_default(
                    call_default_factory=True)):
                raise ValueError(f"duration_days: a {self.duration_days} d light curve cannot hold the longest "
                                 f"transit of duration_hours ({self.duration_hours[1]} h); lengthen it (more than "
                                 f"{self.duration_hours[1] / 24.0:g} d) or lower duration_hours, e.g. --set "
                                 "plato.simulate.duration_hours=[1,3]")
            raise ValueError(f"duration_hours: the longest transit ({self.duration_hours[1]} h) "
                             f"does not fit in a {self.duration_days} d light curve; "
                             "lower it, e.g. --set plato.simulate.duration_hours=[1,3]")
        if self.cadence_s >= self.duration_days * 86400.0 / 2:
            raise ValueError("cadence_s: a light curve needs at least two samples")
        if self.duration_days * 86400.0 / self.cadence_s > MAX_SAMPLES:
            raise ValueError(f"cadence_s: {self.duration_days} d at {self.cadence_s} s is "
                             f"{self.duration_days * 86400.0 / self.cadence_s:.3g} samples per light curve; "
                             f"at most {MAX_SAMPLES:.0e} (PLATO's 2-year field at 25 s is 2.5e6)")
        u1, u2 = self.limb_darkening
        if not (u1 + u2 <= 1.0 and u1 >= 0 and u1 + 2 * u2 >= 0):
            raise ValueError("limb_darkening: need u1 >= 0, u1 + u2 <= 1, u1 + 2 u2 >= 0 (positive, decreasing profile)")
        return self


class PrepareConfig(Section):
    """``[plato.prepare]``: light curves and labels packed into a training set (``plato/prepared/<name>/``)."""

    name: FileName = Field("quarters", description="data set name: folder plato/prepared/<name>/")
    length: int = Field(0, ge=0, description="samples kept per curve, from its start (Panopticon: 126720); "
                                             "0 = the shortest curve's length, down to a multiple of 256")
    cadence_s: float = Field(0.0, ge=0, description="resample every curve to this cadence [s] (averaging when "
                                                     "coarser, e.g. 60 for Panopticon's models); 0 = the curve's own")
    bad_values: Literal["interpolate", "drop"] = Field(
        "interpolate", description="NaN/inf samples: interpolate linearly over them (counted per curve), or "
                                   "drop the curve (--filter-inf); gaps (grid points with no sample) are "
                                   "interpolated either way")
    channels: Literal["coadd", "groups"] = Field(
        "coadd", description="network input: the co-added flux (1 channel), or the camera groups' fluxes and then "
                             "the co-added flux (groups + 1 channels; Panopticon's Feather columns, or flux_g1 ...)")
    augment: bool = Field(False, description="add each curve's time-reversed twin about its spline trend")
    spline_k: int = Field(3, ge=1, le=5, description="degree of the trend spline")
    spline_s: float = Field(1.0, gt=0, description="smoothing of the trend spline, in units of (fitted points x "
                                                   "noise variance), the spline's expected chi^2")
    spline_stride: int = Field(10, ge=1, description="fit the trend to every stride-th sample (Panopticon: 10)")
    depth_bounds: tuple[float, float] = Field((0.0, 1e6), description="curves whose transit depth [ppm] lies "
                                                                      "outside [low, high) are left out; low "
                                                                      "below 1e6 (a depth of 1) "
                                                                      "(Panopticon's [bounds]); transit-free curves "
                                                                      "are kept")
    split: SplitFractions = Field((0.8, 0.1, 0.1), description="train/validation/test fractions of "
                                                                            "the curves, summing to 1 (a twin stays "
                                                                            "with its curve)")
    shard_size: int = Field(256, ge=1, description="curves per HDF5 shard")
    seed: Seed | None = Field(None, description="seed of the split (default: core.seed)")

    @model_validator(mode="after")
    def _check(self) -> "PrepareConfig":
        check_ordered("depth_bounds", self.depth_bounds)
        if self.depth_bounds[0] >= 1e6:   # ppm given for a fraction (x 1e6 again): no transit could pass
            raise ValueError(f"depth_bounds: lower bound {self.depth_bounds[0]!r} ppm is at or above 1e6 ppm, a "
                             "depth of 1 (the whole flux), so no transit is kept: the bounds are in ppm, a fraction "
                             "times 1e6 (Panopticon's "
                             "[bounds] transit_depth = [50e-6, 1.0] is [50, 1e6] ppm)")
        if min(self.split) < 0 or self.split[0] <= 0 or abs(sum(self.split) - 1.0) > 1e-6:
            raise ValueError(f"split: fractions must be non-negative, sum to 1 and give training a share, "
                             f"got {list(self.split)}")
        return self


class TrainConfig(Section):
    """``[plato.train]``: the segmentation network (:mod:`astrotool_plato.model`)."""

    dataset: str = Field("quarters", description="prepared data set name or folder")
    model: FileNameOrEmpty = Field("", description="model name: plato/models/<model>/ (default: <dataset>_<decoder>)")
    decoder: Literal["unet3p", "unet", "unetpp"] = Field("unet3p", description="U-Net 3+ (Panopticon's), U-Net "
                                                                             "or U-Net++")
    width: int = Field(8, ge=1, description="channels of the first level (Panopticon A: 4, B and C: 8)")
    depth: int = Field(5, ge=2, le=8, description="levels (Panopticon: 5)")
    kernel_size: int = Field(9, ge=1, description="odd convolution kernel [bins]")
    dilation: int = Field(1, ge=1)
    dropout: float = Field(0.05, ge=0, lt=1, description="Dropout1d rate of every block")
    bin: int = Field(16, ge=1, description="input samples averaged into one before the network (25 s x 16 = 400 s: "
                                           "a 2-h transit spans 18 bins)")
    pool: Literal["avg", "max"] = Field("avg", description="downsampling between levels: average (keeps the S/N "
                                                           "of shallow transits) or max (Panopticon's)")
    noise_bin: int = Field(144, ge=1, description="input samples per block of the slower noise the network also "
                                                  "scales by (144 = 1 h at 25 s; 1 = point-to-point noise only)")
    trend_window: int = Field(6912, ge=0, description="input samples of the running median the network subtracts "
                                                      "first (6912 = 2 d at 25 s: flux steps, rotation, drifts); "
                                                      "0 = none")
    loss: Literal["bce", "dice", "focal", "bce+dice"] = Field("bce+dice", description="training loss")
    pos_weight: float = Field(1.0, gt=0, description="weight of in-transit samples in the BCE and focal terms")
    focal_gamma: float = Field(2.0, ge=0, description="focusing exponent of the focal loss")
    batch_size: int = Field(8, ge=1, description="curves per optimiser step")
    epochs: int = Field(20, ge=1)
    lr: float = Field(2e-3, gt=0, description="learning rate")
    weight_decay: float = Field(1e-4, ge=0)
    optimizer: str = Field("AdamW", description="torch.optim class name: " + ", ".join(OPTIMIZERS))
    optimizer_kwargs: dict[str, float | bool | list[float]] = Field(
        default_factory=dict, description="other keyword arguments of the optimizer (e.g. betas, momentum)")
    scheduler: str = Field("", description="learning-rate schedule, stepped per epoch: "
                                           + ", ".join(s for s in SCHEDULERS if s) + ", or empty for none")
    scheduler_kwargs: dict[str, int | float | list[int | float]] = Field(
        default_factory=dict, description="its keyword arguments (e.g. gamma, step_size, T_max)")
    clip_grad_norm: float = Field(1.0, ge=0, description="gradient norm clipped to this (0: no clipping)")
    patience: int = Field(0, ge=0, description="early-stopping patience [epochs]; 0 = off")
    resume: bool = Field(True, description="continue from <model>/last when the settings match")
    seed: Seed | None = Field(None, description="default: core.seed")

    @model_validator(mode="after")
    def _check(self) -> "TrainConfig":
        if self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size: must be odd, got {self.kernel_size}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer: unknown optimizer {self.optimizer!r}; expected one of {', '.join(OPTIMIZERS)}")
        if self.scheduler not in SCHEDULERS:
            raise ValueError(f"scheduler: unknown or unsupported schedule {self.scheduler!r}; expected one of "
                             f"{', '.join(s for s in SCHEDULERS if s)} ({SCHEDULER_HINT})")
        if self.scheduler:   # checked here, where a bad value is named with the file that set it
            from astrotool_plato.train import epoch_factor

            try:
                epoch_factor(self.scheduler, self.scheduler_kwargs, self.lr)
            except ValueError as exc:
                raise ValueError(f"scheduler_kwargs: {exc}") from None
        return self


class EventsConfig(Section):
    """``[plato.events]``: how per-sample probabilities become events (``evaluate`` and ``detect``)."""

    threshold: float = Field(0.5, gt=0, lt=1, description="probability above which a sample is in an event")
    merge_gap_hours: float = Field(1.0, ge=0, description="events closer than this are one event [h] "
                                                         "(Panopticon: 1200 samples of 60 s = 20 h)")
    min_duration_hours: float = Field(0.25, ge=0, description="shorter events are dropped [h]")
    min_snr: float = Field(0.0, ge=0, description="events whose depth over the curve's scatter binned at the "
                                                  "event's length (red noise included) is below this are dropped "
                                                  "(e.g. 7.1, Kepler's detection threshold); 0: keep every event")
    binary_snr: float = Field(3.0, ge=0, description="a curve's repeating events whose odd and even depths differ, "
                                                     "or with a shallower dip half-way between them (a secondary "
                                                     "eclipse), at this S/N (a normal one's tail: the error's "
                                                     "degrees of freedom are allowed for) are an eclipsing binary's "
                                                     "and are dropped; 0: no binary test")


class EvaluateConfig(Section):
    """``[plato.evaluate]``: point-wise and event-level scores of a model on a prepared split."""

    renamed_keys = {"report": "name"}

    model: str = Field("", description="model name or folder (default: plato.train's model)")
    dataset: str = Field("", description="prepared data set (default: the model's)")
    split: Literal["train", "val", "test", "all"] = Field("test")
    thresholds: list[float] = Field(default_factory=lambda: [round(0.05 * k, 2) for k in range(1, 20)]
                                    + [0.98, 0.99, 0.995, 0.999],
                                    description="threshold grid (Panopticon's 0.05, 0.10, ..., 0.95, then 0.98 to "
                                                "0.999 so that a 1 % false-alarm point can be found); "
                                                "each in (0, 1), as plato.events.threshold",
                                    min_length=1)
    batch_size: int = Field(8, ge=1)
    name: FileNameOrEmpty = Field("", description="report name: plato/reports/<name>_evaluate.json "
                                                    "(default: <model>_<dataset>_<split>)")


    @model_validator(mode="after")
    def _check(self) -> "EvaluateConfig":
        out = [t for t in self.thresholds if not 0 < t < 1]
        if out:
            raise ValueError(f"thresholds: each must lie in (0, 1) (probabilities, as plato.events.threshold), "
                             f"got {', '.join(f'{t:g}' for t in out)}")
        return self


class DetectConfig(Section):
    """``[plato.detect]``: events in light-curve files."""

    model: str = Field("", description="model name or folder (default: plato.train's model)")
    name: FileNameOrEmpty = Field("", description="run name: plato/runs/<name>/ (default: <model>)")
    time_column: str = Field("", description="time column (default: the first of time, TIME, t, BJD, "
                                                "BTJD, in any case)")
    flux_column: str = Field("", description="flux column (default: the first of flux, PDCSAP_FLUX, SAP_FLUX, "
                                             "FLUX, coadd, the last numeric column)")
    time_unit: Literal["d", "h", "s"] = Field("d", description="unit of the time column: days, hours or seconds "
                                                              "(a FITS column's TUNIT naming another is refused)")
    quality: Literal["drop", "keep"] = Field("drop", description="cadences flagged non-zero in a QUALITY or "
                                                                 "SAP_QUALITY column (TESS, Kepler): drop or keep "
                                                                 "(detect, bls and plot)")
    batch_size: int = Field(4, ge=1, description="curves per forward pass")


class BlsConfig(Section):
    """``[plato.bls]``: the classical baseline, wotan detrending then astropy's Box Least Squares."""

    renamed_keys = {"bin": "bin_seconds (a length in seconds, no longer a number of samples)"}

    window_days: float = Field(0.75, gt=0, description="biweight window of wotan [d]: about 3x the longest "
                                                       "transit kept")
    durations_hours: list[PositiveFloat] = Field(default_factory=lambda: [1.0, 2.0, 4.0, 8.0, 12.0], min_length=1,
                                                 description="trial durations [h]")
    min_period_days: float = Field(0.5, gt=0)
    max_period_fraction: float = Field(1.0, gt=0, description="longest trial period, as a fraction of the curve "
                                                              "length (1: single transits count)")
    oversample: int = Field(1, ge=1, description="period-grid oversampling (1: astropy's autoperiod grid)")
    snr_threshold: float = Field(9.0, gt=0, description="box S/N (depth / its error) above which the best peak "
                                                        "counts as a detection")
    bin_seconds: float = Field(100.0, ge=0, description="the flux is averaged in bins of this length [s] before "
                                                        "the search (100: 4 samples at 25 s); a curve whose "
                                                        "cadence is over half as long is not binned")


class PlatoConfig(Section):
    """``[plato]``: the PLATO plugin."""

    renamed_keys = {"eval": "evaluate"}


    simulate: SimulateConfig = Field(default_factory=SimulateConfig)
    prepare: PrepareConfig = Field(default_factory=PrepareConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    events: EventsConfig = Field(default_factory=EventsConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    detect: DetectConfig = Field(default_factory=DetectConfig)
    bls: BlsConfig = Field(default_factory=BlsConfig)
