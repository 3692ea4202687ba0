"""Configuration of the ``[plato]`` section (pydantic v2 models).

Every key has a packaged default in ``astrotool_plato/defaults.toml``; a user
overrides them in a ``--cfg`` file, with ``ASTRO_PLATO__SIMULATE__N_CURVES=…``,
``--set plato.simulate.n_curves=…`` or a command flag.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from astrotool.section import FileName, Section, check_ordered

__docformat__ = "numpy"


MAX_SAMPLES = 10_000_000
"""The most samples one simulated light curve may have (8 bytes each, several arrays of them)."""


class SimulateConfig(Section):
    """``[plato.simulate]``: the built-in light-curve simulator.

    Ranges are ``[min, max]``; each curve draws its own value from them.
    """


    name: FileName = Field("sim",
                      description="stem of the output files and prefix of the curve ids")
    n_curves: int = Field(16, ge=1, description="number of light curves")
    duration_days: float = Field(10.0, gt=0, description="length of each light curve [d]")
    cadence_s: float = Field(25.0, gt=0, description="sampling interval [s]; PLATO normal cameras: 25 s")
    noise_ppm: float = Field(600.0, ge=0, description="white noise per cadence [ppm]; 600 ppm per 25 s ≈ 50 ppm in 1 h")
    granulation_ppm: float = Field(60.0, ge=0, description="rms of the granulation-like red noise [ppm]")
    granulation_timescale_min: float = Field(10.0, gt=0, description="characteristic time of the red noise [min]")
    granulation_exponent: float = Field(2.0, ge=1.0, le=6.0,
                                        description="slope of the Harvey profile: 2 = AR(1)/Lorentzian, 4 = super-Lorentzian")
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
    period_days: tuple[float, float] = Field((1.0, 20.0), description="period range of periodic transits [d]")
    chunk_size: int = Field(64, ge=1, description="light curves per output Parquet file")

    @model_validator(mode="after")
    def _check(self) -> "SimulateConfig":
        for key in ("rotation_period_days", "rotation_amplitude_ppm", "depth_ppm", "duration_hours", "period_days"):
            check_ordered(key, getattr(self, key))
        if self.depth_ppm[0] <= 0:
            raise ValueError("depth_ppm: depths must be positive")
        if self.depth_ppm[1] >= 1e6:
            raise ValueError("depth_ppm: depths must be below 1e6 ppm")
        if self.duration_hours[0] <= 0 or self.period_days[0] <= 0 or self.rotation_period_days[0] <= 0:
            raise ValueError("durations and periods must be positive")
        if self.duration_hours[1] / 24.0 >= self.duration_days:
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


class PlatoConfig(Section):
    """``[plato]``: the PLATO plugin."""


    simulate: SimulateConfig = Field(default_factory=SimulateConfig)
