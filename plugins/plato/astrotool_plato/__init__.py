"""PLATO plugin for astrotool: single transits in undetrended light curves (Panopticon, rebuilt).

``astro plato simulate`` writes light curves at PLATO cadence (25 s) with
granulation-like red noise, spots, white noise, single (or periodic) transits
and eclipsing binaries of known times, plus their label table; ``labels``
writes per-sample masks; ``prepare`` packs curves into a training set (NaN
handling, time-reversed twins, splits by curve); ``train`` fits a 1-D U-Net 3+
(or U-Net) that gives every sample a transit probability; ``evaluate`` scores it
point by point and event by event; ``detect`` finds events in Feather, Parquet,
CSV or FITS light curves; ``bls`` runs the classical wotan + BLS baseline.

This module only registers hooks; nothing heavy is imported here.
"""

from astrotool.hookspecs import CommandSpec, ConfigSection, DemoStep, DoctorCheck, hookimpl

__docformat__ = "numpy"
__version__ = "0.1.0"

NAME = "plato"
"""Command group, configuration section and workspace folder of the plugin."""

RAW, LABELS, PREPARED, MODELS, RUNS, REPORTS = STAGES = (
    "raw", "labels", "prepared", "models", "runs", "reports")
"""Stage folders under ``<workspace>/plato/`` (those its commands write); code names them through these constants."""

PANOPTICON_KEYS = ("path_data", "path_prepared", "path_output", "seed", "training_epochs", "base_model",
                   "export_sets", "model", "fraction", "dataloader", "dataloaders", "optimizer", "scheduler",
                   "bounds")
"""The top-level keys and tables of Panopticon's configuration (its ``config/default.toml``)."""


@hookimpl
def astro_commands():
    """Mount ``astro plato``."""
    return [CommandSpec(name=NAME, target="astrotool_plato.cli:app",
                        help="PLATO light curves: find single transits with a 1-D U-Net 3+ (Panopticon).")]


@hookimpl
def astro_config_sections():
    """Register the ``[plato]`` configuration section."""
    return [ConfigSection(name=NAME, model="astrotool_plato.config:PlatoConfig",
                          defaults="astrotool_plato:defaults.toml", foreign_keys=PANOPTICON_KEYS,
                          importer="a Panopticon configuration: translate it with `astro plato config import "
                                   "{file}` and give the result to --cfg")]


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
    """Simulate light curves, train a tiny transit finder, detect a transit in a fresh curve."""
    return [DemoStep(name=NAME, target="astrotool_plato.demo:run",
                     help="simulate 48 one-day light curves, train a tiny U-Net 3+, find a fresh curve's transit",
                     order=30)]
