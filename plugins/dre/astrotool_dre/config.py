"""The ``[dre]`` configuration section (pydantic models, ``extra="forbid"``).

One sub-table per stage: ``[dre.simulate]``, ``[dre.detect]``, ``[dre.psf]``,
``[dre.cuts]``, ``[dre.models]``, ``[dre.fit]``, ``[dre.mosaics]``. Units are
given in each field's description; pixels are tile pixels.

Simulation presets
------------------
``dre.simulate.preset`` selects a named set of tile parameters merged *under*
whatever the configuration layers give (a key set in a file, a variable,
``--set`` or a flag wins over the preset):

``isolated`` (default)
    The field defaults below: 1024² px, 40 isolated de Vaucouleurs galaxies of
    S/N 30-300, 30 stars, one Moffat PSF of FWHM 3 px.
``crowded``
    A survey field as it comes: 2048² px, 220 galaxies at random positions
    (blends happen), Sérsic n drawn from {1, 2, 4}, S/N 12-300, 80 stars, a
    Moffat PSF whose FWHM goes from 2.6 px at pixel (1, 1) to 3.6 px at the
    opposite corner, and a sky that rises by 20 % from left to right.
"""

import copy
from typing import Annotated, Literal, Union

from pydantic import AfterValidator, Field, NonNegativeFloat, PositiveFloat, ValidationInfo, model_validator

from astrotool.section import ArrayDevice, FileName, Section, check_odd, check_ordered

__docformat__ = "numpy"

Engine = Literal["auto", "sextractor", "photutils"]
"""Source extraction engine of ``dre.detect.engine``."""
PsfEngine = Literal["auto", "psfex", "photutils"]
"""PSF model engine of ``dre.psf.engine``."""
Compression = Literal["none", "low", "medium", "high"]
"""Compression level of written FITS files."""
Gain = Union[PositiveFloat, Literal["counts", "cps"]]
"""Detector gain [e-/ADU], or ``counts``/``cps``: read from the header for data in counts or counts/s."""


def _odd(value: int, info: ValidationInfo) -> int:
    check_odd(info.field_name, value)
    return value


OddSide = Annotated[int, AfterValidator(_odd)]
"""An image side in pixels that needs a central pixel (odd)."""


SIMULATE_PRESETS: dict[str, dict] = {
    "isolated": {},
    "crowded": {"size": 2048, "n_galaxies": 220, "n_stars": 80, "sersic_n": [1.0, 2.0, 4.0],
                "sersic_dist": "choice", "galaxy_snr": [12.0, 300.0], "psf_fwhm": [2.6, 3.6],
                "sky_gradient": 0.2, "isolation": 0.0, "min_separation": 8.0},
}
"""Tile parameters of each ``dre.simulate.preset`` (see the module docstring)."""


class SimulateConfig(Section):
    """``astro dre simulate``: survey-like tiles with known galaxies and stars."""

    renamed_keys = {"ntiles": "n_tiles", "prefix": "name"}

    preset: Literal["isolated", "crowded"] = Field("isolated", description="tile parameters merged under the given "
                                                   "keys (module docstring)")
    n_tiles: int = Field(2, ge=1, description="number of tiles")
    name: FileName = Field("sim", description="tile names: <name>_<i:03d>.fits")
    size: int = Field(1024, ge=256, description="tile side [px]")
    n_galaxies: int = Field(40, ge=0, description="galaxies per tile")
    n_stars: int = Field(30, ge=0, description="stars per tile (the PSF is built from them)")
    sersic_n: Union[float, list[float]] = Field(4.0, description="Sérsic index; or [min, max] (uniform), or the "
                                                "values to pick from (sersic_dist = 'choice')")
    sersic_dist: Literal["uniform", "choice"] = Field("uniform", description="how a list of sersic_n is drawn")
    logr_range: tuple[float, float] = Field((0.30103, 1.07918), description="log10 major-axis half-light radius [px]")
    q_range: tuple[float, float] = Field((0.3, 1.0), description="axis ratio b/a range")
    galaxy_snr: tuple[float, float] = Field((30.0, 300.0), description="galaxy S/N range")
    star_snr: tuple[float, float] = Field((100.0, 1000.0), description="star S/N range")
    psf_beta: float = Field(3.5, gt=1, description="Moffat beta")
    psf_fwhm: Union[PositiveFloat, tuple[PositiveFloat, PositiveFloat]] = Field(
        3.0, description="PSF FWHM [px]; or [at pixel (1, 1), at (size, size)], linear in X + Y between")
    psf_size: OddSide = Field(41, ge=9, description="true-PSF image side [px]")
    pixel_scale: float = Field(0.2, gt=0, description="[arcsec/px] (WCS)")
    sky_level: float = Field(300.0, ge=0, description="mean sky [counts/px]")
    sky_gradient: float = Field(0.0, ge=0, lt=2, description="the sky rises by this fraction of sky_level from "
                                "the left edge to the right edge")
    gain: float = Field(2.0, gt=0, description="[e-/count]")
    read_noise: float = Field(5.0, ge=0, description="[e-]")
    exptime: float = Field(600.0, gt=0, description="[s]")
    zero_point: float = Field(30.0, description="[mag] for 1 count (or 1 count/s with units='cps')")
    saturation: float = Field(60000.0, gt=0, description="[counts]")
    units: Literal["counts", "cps"] = Field("counts", description="pixel units of the tile")
    edge: float = Field(80.0, ge=0, description="minimum distance of objects from the edge [px]")
    min_separation: float = Field(24.0, ge=0, description="minimum distance between objects [px]")
    isolation: float = Field(5.0, ge=0, description="galaxies are separated by this many half-light radii")
    stamp_radius: float = Field(15.0, gt=0, description="galaxies are drawn out to this many half-light radii "
                                "(plus 4 PSF FWHM; at least 24, at most 256 px): at 15 an n = 4 galaxy keeps ~99.4 % "
                                "of its flux (the truth's FLUX_DRAWN)")
    ra: float = Field(150.1, description="tile centre [deg]")
    dec: float = Field(2.2, description="tile centre [deg]")

    @classmethod
    def preset_sources(cls, values: dict) -> dict[str, str]:
        """The keys the chosen preset gives (those no layer set), named by it."""
        name = values.get("preset", "isolated")
        preset = SIMULATE_PRESETS.get(name, {}) if isinstance(name, str) else {}
        return {k: f'preset "{name}" (dre.simulate.preset)' for k in preset if k not in values}

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data):
        if isinstance(data, dict):
            name = data.get("preset", "isolated")  # a value that is no name (a list) is refused by the field
            preset = SIMULATE_PRESETS.get(name, {}) if isinstance(name, str) else {}
            data = {**copy.deepcopy(preset), **data}
        return data

    @model_validator(mode="after")
    def _check(self) -> "SimulateConfig":
        ranges = {"logr_range": self.logr_range, "q_range": self.q_range, "galaxy_snr": self.galaxy_snr,
                  "star_snr": self.star_snr}
        n = [self.sersic_n] if isinstance(self.sersic_n, (int, float)) else list(self.sersic_n)
        if self.sersic_dist == "uniform" and len(n) > 1:
            if len(n) != 2:
                raise ValueError(f"sersic_n: a uniform range is [min, max], got {len(n)} values "
                                 "(set sersic_dist = 'choice' to pick from them)")
            ranges["sersic_n"] = tuple(n)
        if not n:
            raise ValueError("sersic_n: give at least one index")
        for key, pair in ranges.items():
            check_ordered(key, pair)
        if min(n) < 0.3 or max(n) > 6.2:
            raise ValueError("sersic_n must lie in [0.3, 6.2] (GalSim's range)")
        if self.q_range[0] <= 0 or self.q_range[1] > 1:
            raise ValueError("q_range: axis ratios must lie in (0, 1]")
        if min(self.galaxy_snr[0], self.star_snr[0]) <= 0:
            raise ValueError("galaxy_snr, star_snr: S/N must be > 0")
        if self.size - self.edge - 2.0 <= self.edge + 2.0:  # as simulate's placement: 2 px more on each side
            raise ValueError(f"edge: a {self.size} px tile leaves no room inside an edge of {self.edge:g} px "
                             f"(the edge must be below {self.size / 2 - 2:g} px): lower dre.simulate.edge or raise "
                             "dre.simulate.size (--size)")
        return self


class DetectConfig(Section):
    """``astro dre detect``: SExtractor when installed, photutils otherwise."""

    engine: Engine = "auto"
    gain: Gain = Field("counts", description="'counts': header GAIN; 'cps': GAIN*EXPTIME; or a number [e-/unit]")
    zero_point: Union[float, None] = Field(None, description="[mag]; None: header MAGZP/ZP or 30")
    detect_thresh: float = Field(1.5, gt=0, description="detection threshold [sigma]")
    detect_minarea: int = Field(5, ge=1, description="minimum area [px]")
    filter_fwhm: float = Field(3.0, gt=0, description="Gaussian detection filter FWHM [px]")
    deblend_nthresh: int = Field(32, ge=1)
    deblend_mincont: float = Field(0.005, ge=0, le=1)
    back_size: int = Field(256, ge=8, description="background mesh [px]; galaxies' wings must not raise it "
                           "(64 px took 5 % of the flux and 0.5 in n from de Vaucouleurs galaxies)")
    back_filtersize: OddSide = Field(3, ge=1, description="background filter [meshes], odd")
    phot_aperture: float = Field(10.0, gt=0, description="aperture diameter [px]")
    vignet_size: OddSide = Field(35, ge=9, description="VIGNET side for PSFEx [px]")
    seeing_fwhm: Union[float, None] = Field(None, gt=0, description="stars' FWHM [px] (SExtractor's SEEING_FWHM, "
                                            "for CLASS_STAR); None: measured in a first pass")
    satur_level: Union[float, None] = None
    weight_image: Union[str, None] = Field(None, description="each tile's weight map (SExtractor engine only): "
                                           "a file name with {stem}, beside the tile, e.g. 'weights/{stem}_wht.fits'")
    weight_type: str = Field("MAP_WEIGHT", description="SExtractor WEIGHT_TYPE of the weight maps")
    sextractor_args: dict[str, str] = Field(default_factory=dict, description="extra -KEY value pairs (not the "
                                            "catalogue's and check images' keys, which DRE sets)")
    nthreads: int = Field(1, ge=0)
    timeout: float = Field(600.0, gt=0, description="[s]")

    @model_validator(mode="after")
    def _no_output_keys(self) -> "DetectConfig":
        mine = sorted(k for k in self.sextractor_args if str(k).lstrip("-").upper() in SEXTRACTOR_OUTPUT_KEYS)
        if mine:
            raise ValueError(f"sextractor_args: {', '.join(mine)}: set by DRE (its catalogue and check images), "
                             "not by the user")
        return self

    @model_validator(mode="after")
    def _one_weight_map_per_tile(self) -> "DetectConfig":
        if self.weight_image is not None and "{stem}" not in self.weight_image:
            raise ValueError(f"weight_image {self.weight_image!r}: name each tile's weight map with {{stem}}, "
                             "the tile's name without suffix (e.g. 'weights/{stem}_wht.fits', beside the tile); for one map "
                             "shared by all tiles, link it once per tile under those names")
        return self


SEXTRACTOR_OUTPUT_KEYS = frozenset({"CATALOG_NAME", "CATALOG_TYPE", "PARAMETERS_NAME", "CHECKIMAGE_TYPE",
                                    "CHECKIMAGE_NAME"})
"""SExtractor's keys that name what DRE reads back: not for ``dre.detect.sextractor_args``."""


class PsfConfig(Section):
    """``astro dre psf``: PSFEx (PSF_SAMPLING 1) when installed, photutils ePSF otherwise."""

    engine: PsfEngine = "auto"
    size: OddSide = Field(25, ge=5, description="PSF side [px]")
    min_stellarity: float = Field(0.8, ge=0, le=1)
    min_snr: float = Field(30.0, ge=0)
    max_ellip: float = Field(0.3, ge=0, le=1)
    isolation: Union[float, None] = Field(None, description="[px]; None: from the PSF size")
    min_stars: int = Field(5, ge=1)
    var_degrees: int = Field(2, ge=0, le=4, description="degree of the PSF's variation with the position (PSFEx "
                             "PSFVAR_DEGREES; photutils: zone ePSFs); lowered to keep 5 stars per component")
    psfex_args: dict[str, str] = Field(default_factory=dict)
    maxiters: int = Field(5, ge=1, description="ePSF iterations")
    timeout: float = Field(600.0, gt=0, description="[s]")


class CutsConfig(Section):
    """``astro dre cuts``: stamps around each selected object, to HDF5."""

    size: int = Field(128, ge=16, description="cut side [px]; must equal the model box")
    margin: float = Field(80.0, ge=0, description="objects closer than this to the edge are skipped [px]")
    max_stellarity: float = Field(0.5, ge=0, le=1, description="skip objects with CLASS_STAR >= this (1.0 keeps all)")
    filters: list[tuple[str, float, float]] = Field(default_factory=list, description="[[COLUMN, MIN, MAX], ...]")
    compression: Compression = "medium"
    dilate: int = Field(4, ge=0, description="grow the object's mask into sky only [px]")
    centre_block: int = Field(4, ge=0, description="central block forced into the mask [px]")
    neighbour_grow: int = Field(2, ge=0, description="grow neighbours' segments before masking them out [px]")
    centroid: Literal["windowed", "isophotal"] = Field(
        "windowed", description="the centre the fit puts the models on: XWIN_IMAGE, YWIN_IMAGE (the detection's "
        "windowed centroid; X_IMAGE where it is missing or over 2 px away) or X_IMAGE, Y_IMAGE (DRE's)")

    @model_validator(mode="after")
    def _filters_are_ranges(self) -> "CutsConfig":
        for column, lo, hi in self.filters:  # as `--filter` checks: MIN above MAX keeps no object
            if not lo < hi:
                raise ValueError(f"filters: {column} [{lo:g}, {hi:g}]: MIN must be below MAX")
        return self


class ModelsConfig(Section):
    """``astro dre models``: the Sérsic model grid (axis value i = start + i*step)."""

    index0: float = Field(0.5, gt=0, description="first Sérsic index")
    dindex: float = Field(0.5, ge=0)
    nindex: int = Field(12, ge=1, description="Sérsic indices (0.5-6 by default; DRE's grid: index0 = 4, nindex = 1)")
    axrat0: float = Field(0.1, gt=0, le=1, description="first axis ratio b/a")
    daxrat: float = Field(0.1, ge=0)
    naxrat: int = Field(10, ge=1)
    posang0: float = Field(0.0, ge=0, lt=180, description="first position angle [deg CCW from +x]")
    dposang: float = Field(180.0 / 13.0, ge=0, description="[deg]")
    nposang: int = Field(13, ge=1)
    logh0: float = Field(-0.6, description="first log10 major-axis half-light radius [log10 px]")
    dlogh: float = Field(0.115, ge=0, description="[dex]")
    nlogh: int = Field(21, ge=1)
    boxsize: int = Field(128, ge=16, description="[px]")
    supersample: int = Field(4, ge=1, description="sub-pixels per pixel side away from the centre")

    @model_validator(mode="after")
    def _steps_move(self) -> "ModelsConfig":
        for axis in ("index", "axrat", "posang", "logh"):  # a step of 0 repeats one model: a grid of twins
            step, count = getattr(self, f"d{axis}"), getattr(self, f"n{axis}")
            if step == 0 and count > 1:
                raise ValueError(f"d{axis} = 0 with n{axis} = {count}: every grid value would be the same; "
                                 f"give d{axis} > 0, or n{axis} = 1 for a single value")
        # the first value is checked by its field and the steps are >= 0: only the last can leave the range
        # (the index and the radius have no upper bound)
        last = {axis: getattr(self, f"{axis}0") + (getattr(self, f"n{axis}") - 1) * getattr(self, f"d{axis}")
                for axis in ("axrat", "posang")}
        if last["axrat"] > 1 + 1e-9:
            raise ValueError(f"axrat0 + (naxrat-1)*daxrat = {last['axrat']:g}: axis ratios must lie in (0, 1]")
        if last["posang"] >= 180 - 1e-9:
            raise ValueError(f"posang0 + (nposang-1)*dposang = {last['posang']:g} deg: angles must lie in [0, 180)")
        return self


class FitConfig(Section):
    """``astro dre fit``: least-squares flux and χ² of every model, in batches."""

    statistic: Literal["chi2", "dre"] = Field("chi2", description="'chi2': weighted least squares; 'dre': DRE's original")
    backend: Literal["auto", "numpy", "torch", "cupy"] = "auto"
    device: ArrayDevice = Field("auto", description="auto | cpu | cuda | cuda:N (a GPU of several)")
    batch_size: int = Field(64, ge=1, description="objects per matrix product")
    gain: Gain = Field("counts", description="source-noise gain: 'counts' header GAIN, 'cps' GAIN*EXPTIME, or a number")
    reweight: int = Field(1, ge=0, description="passes re-weighting with the best model's source noise")
    zero_point: Union[float, None] = Field(None, description="[mag]; None: the header's MAGZP/ZP, else 30")
    psf_has_pixel: bool = Field(True, description="the PSF was measured from stars (PSFEx, ePSF), so it contains "
                                "the pixel response; divide it out once (the models are pixel-integrated)")
    recentre: bool = Field(True, description="shift each cut so the object sits on the models' centre pixel")
    compression: Compression = "medium"
    star_stellarity: float = Field(0.8, ge=0, le=1, description="STAR flag: CLASS_STAR at or above this "
                                   "(or a best radius on the grid's lowest edge)")
    neighbours: Literal["mask", "subtract"] = Field("subtract", description="'mask': neighbours' segments are "
                                                    "left out; 'subtract': also their best models are subtracted "
                                                    "and the blended objects fit again")
    local_sky: bool = Field(False, description="fit a constant sky under each object with its flux (statistic "
                            "'chi2' only: 'dre' ignores it; the summary's SKY, SKY_ERR)")
    psf_tolerance: float = Field(0.04, gt=0, description="objects whose PSFs differ by at most this (relative L2; "
                                 "0.04 ~ 0.1 px of FWHM at 3 px) share one convolved model bank")
    max_psf_groups: int = Field(8, ge=1, description="at most this many banks per tile (the tolerance grows)")
    core_psf: bool = Field(False, description="with 2 or more PSF groups, objects fit on crops wider than 64 px: "
                           "their group's PSF in the models' central 64 px (true; about 2x the fit time and one "
                           "64 px bank per group held, docs/dre.md) or the groups' mean PSF (false)")
    subgrid: bool = Field(True, description="refine the parameters between grid points (a local quadratic of the "
                          "statistic); false: the grid minimum, as DRE")
    subgrid_axes: list[Literal["INDEX", "AX_RATIO", "ANGLE", "LOGR"]] = Field(
        ["AX_RATIO", "ANGLE", "LOGR"], description="the axes refined (INDEX keeps its grid value unless listed: "
        "see astrotool_dre.estimate.best_parameters)")
    error_floor: dict[Literal["INDEX", "AX_RATIO", "ANGLE", "LOGR", "FLUX"], NonNegativeFloat] = Field(
        default_factory=dict, description="added in quadrature to the errors (INDEX, AX_RATIO, ANGLE [deg], "
        "LOGR [dex]; FLUX relative); unset keys: astrotool_dre.estimate.ERROR_FLOOR")

    @property
    def sky_fitted(self) -> bool:
        """Whether a local sky is fit: ``local_sky`` with the statistic ``chi2`` (``dre`` ignores it)."""
        return self.local_sky and self.statistic == "chi2"


class MosaicsConfig(Section):
    """``astro dre mosaics``: data | segment | model | residual panels per object."""

    png: bool = True
    max_objects: int = Field(0, ge=0, description="0 = every object")


class DreConfig(Section):
    """Every DRE setting; sub-tables per stage."""

    simulate: SimulateConfig = SimulateConfig()
    detect: DetectConfig = DetectConfig()
    psf: PsfConfig = PsfConfig()
    cuts: CutsConfig = CutsConfig()
    models: ModelsConfig = ModelsConfig()
    fit: FitConfig = FitConfig()
    mosaics: MosaicsConfig = MosaicsConfig()

    @model_validator(mode="after")
    def _cuts_fit_the_models(self) -> "DreConfig":
        if self.cuts.size != self.models.boxsize:
            raise ValueError(f"cuts.size ({self.cuts.size}) must equal models.boxsize ({self.models.boxsize})")
        return self
