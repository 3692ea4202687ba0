"""astrotool-lens: weak-lensing shear simulations and shear estimators.

``astro lens generate`` draws GalSim stamps of sheared galaxies convolved with a
PSF, ``astro lens measure`` runs the classical HSM estimators (REGAUSS, KSB, BJ,
LINEAR), ``astro lens train|calibrate|evaluate|predict|export`` train, calibrate,
score, apply and export a CNN shear estimator on the core ML layer
(:mod:`astrotool.ml`: datasets, Fabric training, batched torch/ONNX Runtime
inference, metrics, the command parts).

Conventions used throughout: the applied shear, the PSF ellipticity and every
ellipticity written to a table are *reduced-shear* ellipticities
g = (a - b)/(a + b) (GalSim's ``g1``/``g2``), measured in the pixel frame with
x along array axis 1 and y along array axis 0. Where an input is a distortion
e = (a^2 - b^2)/(a^2 + b^2) it is named ``e`` and converted with
g = e / (1 + sqrt(1 - |e|^2)).

This module only registers hooks; it imports nothing heavy.
"""

from astrotool.hookspecs import CommandSpec, ConfigSection, DemoStep, DoctorCheck, hookimpl

__docformat__ = "numpy"
__version__ = "0.1.0"


@hookimpl
def astro_commands():
    """The ``lens`` command group and its ``kappa`` sub-group."""
    return [CommandSpec(name="lens", target="astrotool_lens.cli:app",
                        help="Weak lensing: GalSim shear simulations, HSM estimators, a CNN shear estimator, mass maps."),
            CommandSpec(name="kappa", target="astrotool_lens.kappa.cli:app", parent="lens",
                        help="Mass maps from ellipticity maps (the Astro-Datathon 2024 problem).")]


@hookimpl
def astro_config_sections():
    """The ``[lens]`` configuration section and its defaults."""
    return [ConfigSection(name="lens", model="astrotool_lens.config:LensConfig",
                          defaults="astrotool_lens:defaults.toml")]


@hookimpl
def astro_workspace_stages():
    """The plugin's folders under ``<workspace>/lens/``."""
    return {"lens": ["shear", "models", "predictions", "reports",
                     "kappa/sims", "kappa/data", "kappa/models", "kappa/predictions", "kappa/reports"]}


@hookimpl
def astro_doctor_checks():
    """Checks of GalSim, torch and onnxruntime for ``astro doctor``."""
    return [DoctorCheck(name="galsim", target="astrotool_lens.doctor:check_galsim"),
            DoctorCheck(name="torch (lens)", target="astrotool_lens.doctor:check_torch"),
            DoctorCheck(name="onnxruntime", target="astrotool_lens.doctor:check_onnx")]


@hookimpl
def astro_demo_steps():
    """The shear and mass-map steps of ``astro demo``."""
    return [DemoStep(name="lens", target="astrotool_lens.demo:run", order=20,
                     help="simulate sheared galaxies, train a small CNN, compare it with REGAUSS and KSB"),
            DemoStep(name="lens-kappa", target="astrotool_lens.kappa.demo:run", order=25,
                     help="simulate 64x64 mass maps, rank Kaiser-Squires, Wiener and a small U-Net, export ONNX")]
