"""ZTF plugin for astrotool: alert packets, simulated alerts and the ALeRCE stamp classifier.

``astro ztf ingest`` reads ZTF alert packets (Avro files as distributed by ZTF,
plain or gzipped, and Parquet alert dumps from brokers such as Fink) into one
Parquet table of candidate measurements and one HDF5 file of 63×63 science,
template and difference stamps per input file. ``simulate`` draws labelled
alerts with GalSim (:mod:`astrotool_ztf.simulate`), ``prepare`` makes a
training set (:mod:`astrotool_ztf.prepare`), ``train``, ``evaluate`` and
``predict`` run the stamp classifier (:mod:`astrotool_ztf.model`).

This module only registers hooks; nothing heavy is imported here.
"""

from astrotool.hookspecs import CommandSpec, ConfigSection, DemoStep, DoctorCheck, hookimpl

__docformat__ = "numpy"
__version__ = "0.1.0"

NAME = "ztf"
"""Command group, configuration section and workspace folder of the plugin."""

ALERTS, STAMPS, SIMULATED, PREPARED, MODELS, EMBEDDINGS, REPORTS, PREDICTIONS = STAGES = (
    "alerts", "stamps", "simulated", "prepared", "models", "embeddings", "reports", "predictions")
"""Stage folders under ``<workspace>/ztf/`` (those its commands write); code names them through these constants."""


@hookimpl
def astro_commands():
    """Mount ``astro ztf``."""
    return [CommandSpec(name=NAME, target="astrotool_ztf.cli:app",
                        help="ZTF alerts: ingest, simulate, and the ALeRCE stamp classifier.")]


@hookimpl
def astro_config_sections():
    """Register the ``[ztf]`` configuration section."""
    return [ConfigSection(name=NAME, model="astrotool_ztf.config:ZtfConfig",
                          defaults="astrotool_ztf:defaults.toml")]


@hookimpl
def astro_workspace_stages():
    """Stage folders under ``<workspace>/ztf/``."""
    return {NAME: list(STAGES)}


@hookimpl
def astro_doctor_checks():
    """Checks for ``astro doctor``: fastavro, h5py and pyarrow (all required)."""
    return [DoctorCheck("fastavro", "astrotool_ztf:check_fastavro"),
            DoctorCheck("h5py", "astrotool.doctor:check_h5py"),
            DoctorCheck("pyarrow", "astrotool.doctor:check_pyarrow")]


def check_fastavro():
    """``astro doctor`` check: fastavro, the reader of ZTF Avro alert packets (required).

    Returns
    -------
    astrotool.hookspecs.CheckResult
        fastavro's version, or the install hint.
    """
    from astrotool.doctor import module_check

    return module_check("fastavro", "pip install 'fastavro>=1.9'", required=True)


@hookimpl
def astro_demo_steps():
    """Ingest the sample alerts (or synthetic ones), train a tiny classifier on simulated alerts, classify them."""
    return [DemoStep(name=NAME, target="astrotool_ztf.demo:run",
                     help="ingest sample ZTF alerts, train a tiny stamp classifier on simulated ones, classify the "
                          "samples", order=40)]
