"""PLATO plugin for astrotool: simulated light curves with single transits.

``astro plato simulate`` writes light curves at PLATO cadence (25 s) with
granulation-like red noise, optional rotational modulation, white noise and
single (or periodic) transits of known time, duration and depth, plus the
label table that a transit segmentation network trains on.

This module only registers hooks; nothing heavy is imported here.
"""

from astrotool.hookspecs import CommandSpec, ConfigSection, DemoStep, DoctorCheck, hookimpl

__docformat__ = "numpy"
__version__ = "0.1.0"

NAME = "plato"
"""Command group, configuration section and workspace folder of the plugin."""

LIGHTCURVES, LABELS = STAGES = ("lightcurves", "labels")
"""Stage folders under ``<workspace>/plato/`` (those its commands write); code names them through these constants."""


@hookimpl
def astro_commands():
    """Mount ``astro plato``."""
    return [CommandSpec(name=NAME, target="astrotool_plato.cli:app",
                        help="PLATO light curves: simulate single transits (Panopticon).")]


@hookimpl
def astro_config_sections():
    """Register the ``[plato]`` configuration section."""
    return [ConfigSection(name=NAME, model="astrotool_plato.config:PlatoConfig",
                          defaults="astrotool_plato:defaults.toml")]


@hookimpl
def astro_workspace_stages():
    """Stage folders under ``<workspace>/plato/``."""
    return {NAME: list(STAGES)}


@hookimpl
def astro_doctor_checks():
    """Checks for ``astro doctor``: pyarrow (required), astropy's BLS and the optional PSLS simulator."""
    t = "astrotool_plato.doctor"
    return [DoctorCheck("pyarrow", "astrotool.doctor:check_pyarrow"),
            DoctorCheck("astropy (BLS)", f"{t}:check_astropy_bls"),
            DoctorCheck("psls", f"{t}:check_psls")]


@hookimpl
def astro_demo_steps():
    """Simulate a few light curves in the demo workspace."""
    return [DemoStep(name=NAME, target="astrotool_plato.demo:run",
                     help="simulate 4 short PLATO light curves with transits", order=30)]
