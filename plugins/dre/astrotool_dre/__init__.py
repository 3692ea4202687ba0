"""DRE galaxy morphology for astrotool.

The chain ``simulate → detect → psf → cuts → models → fit → mosaics`` rebuilds
DRE (Discrete Radius Ellipticals): detect sources on survey tiles (SExtractor or
photutils), build the PSF (PSFEx or photutils), cut 128×128 stamps to HDF5, fit a
grid of PSF-convolved Sérsic models by least squares, in batches, on CPU or GPU,
and write a morphology catalogue.

Workspace folders: ``dre/{tiles,sextracted,psf,cuts,models,chi,summary,mosaics}``.
File names follow DRE; for the tile ``sim_000.fits``: ``sim_000_cat.fits``,
``sim_000_nb.fits``, ``sim_000_rms.fits``, ``sim_000_seg.fits``, ``sim_000.psf``,
``sim_000_cuts.h5``, ``sim_000_chi.h5``.

This module only registers hooks; nothing heavy is imported here.
"""

from astrotool.hookspecs import CommandSpec, ConfigSection, DemoStep, DoctorCheck, hookimpl
from astrotool_dre.stages import FOLDERS

__docformat__ = "numpy"
__version__ = "0.1.0"


@hookimpl
def astro_commands():
    """Mount ``astro dre``."""
    return [CommandSpec("dre", "astrotool_dre.cli:app",
                        "Galaxy morphology (DRE): detect, PSF, cuts, Sérsic model grid, batched χ² fit.")]


@hookimpl
def astro_config_sections():
    """Register the ``[dre]`` configuration section."""
    return [ConfigSection("dre", "astrotool_dre.config:DreConfig", "astrotool_dre:defaults.toml")]


@hookimpl
def astro_workspace_stages():
    """Stage folders under ``<workspace>/dre/``."""
    return {"dre": list(FOLDERS)}


@hookimpl
def astro_doctor_checks():
    """SExtractor, PSFEx, GalSim and photutils."""
    t = "astrotool_dre.doctor"
    return [DoctorCheck("source-extractor", f"{t}:check_sextractor"), DoctorCheck("psfex", f"{t}:check_psfex"),
            DoctorCheck("galsim", f"{t}:check_galsim"), DoctorCheck("photutils", f"{t}:check_photutils")]


@hookimpl
def astro_demo_steps():
    """Simulate a tile and run the whole chain on it."""
    return [DemoStep("dre", "astrotool_dre.demo:run", "simulate a tile, detect, PSF, cuts, fit, mosaics", order=10)]
