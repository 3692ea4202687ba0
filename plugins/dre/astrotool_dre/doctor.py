"""``astro doctor`` checks of the DRE plugin."""

from astrotool.doctor import module_check, program_check

__docformat__ = "numpy"


def check_sextractor():
    """The version line of ``source-extractor`` (or ``sex``) on ``PATH``, or how to install it."""
    return program_check(["source-extractor", "sex"], "apt-get install source-extractor (optional: photutils is "
                         "the embedded default)", ("--version",), label="source-extractor")


def check_psfex():
    """The version line of ``psfex`` on ``PATH``, or how to install it."""
    return program_check(["psfex"], "apt-get install psfex (optional: photutils ePSF is the embedded default)",
                         ("--version",), label="psfex")


def check_galsim():
    """Import GalSim and report its version, or how to install it."""
    return module_check("galsim", "pip install galsim")


def check_photutils():
    """Import photutils and report its version, or how to install it."""
    return module_check("photutils", "pip install photutils")
