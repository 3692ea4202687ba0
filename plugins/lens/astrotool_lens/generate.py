"""GalSim shear simulations: galaxy (x) PSF stamps with a full truth table.

Conventions
-----------
* Shear, PSF ellipticity and every ellipticity in the truth table are reduced
  shears g = (a - b)/(a + b) in the pixel frame (x = array axis 1, y = axis 0).
  An intrinsic shape distribution given in distortion (``shape.convention =
  "e"``) is converted per object (:mod:`astrotool_lens.shear`).
* A stamp is ``Convolve(galaxy.shear(intrinsic).shear(g), psf.shear(g_psf))``
  drawn with GalSim's default method (pixel response included) at a sub-pixel
  offset. ``obs_g1, obs_g2`` in the truth table are the pre-PSF ellipticity of
  the lensed galaxy, (eps_s + g) / (1 + conj(g) eps_s), whose ensemble mean over
  isotropic intrinsic shapes is exactly g.
* The PSF stamp is the PSF convolved with the pixel, drawn by FFT like the
  galaxy (unit flux), centred unless ``psf.shift_with_galaxy``.

Reproducibility
---------------
Every random number of stamp ``i`` comes from generators seeded with
``(seed, i)`` (offset and noise), ``(seed, galaxy key)`` (galaxy, intrinsic
shape, per-stamp PSF; the key is the pair index with ring pairs) and
``(seed, field)`` (shear, per-field PSF). Pixels therefore do not depend on how
stamps are split into shards, on ``--jobs`` or on the executor.

Speed
-----
Profiles are built once per worker with unit size and flux and then dilated /
rescaled (GalSim's expensive per-profile set-up, e.g. a truncated Moffat's or a
Sersic index's tables, is paid once), and the PSF stamp is drawn once when it
does not change from stamp to stamp.
"""

from __future__ import annotations

import math
import warnings
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from astrotool.made_with import replaces
from astrotool.ml.data import MANIFEST_SUFFIX, DatasetWriter
from astrotool_lens.config import GenerateConfig, bounds
from astrotool_lens.data import ShearDataset
from astrotool_lens.shear import compose_shear, e_to_g, g_to_e

__docformat__ = "numpy"

TRUTH_COLUMNS = (
    "index", "field", "pair", "ring_member", "g1", "g2", "int_g1", "int_g2", "obs_g1", "obs_g2",
    "profile", "hlr", "flux", "sersic_n", "bulge_fraction", "bulge_hlr", "psf_fwhm", "psf_hlr",
    "psf_g1", "psf_g2", "dx", "dy", "snr", "noise_var", "noise_seed", "psf_profile", "psf_beta", "psf_trunc",
    "noise_kind",
)
"""Columns of the truth table (angles and sizes in arcsec, offsets in pixels)."""

PROFILE_CODES = {"exponential": 0, "sersic": 1, "bulge+disk": 2}
"""Integer code of each galaxy profile."""

_KIND_STAMP, _KIND_GALAXY, _KIND_FIELD = 0, 1, 2
_KIND_FIELD_MIX, _KIND_GALAXY_MIX = 3, 4   # draws only mixed settings make (``wide``): streams of their own
MIX_STEP = 0.05
"""Grid of drawn Moffat beta and truncation, so GalSim's per-profile set-up is made once per value."""


def _rng(base_seed: int, kind: int, key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(int(base_seed) & ((1 << 64) - 1), spawn_key=(kind, int(key))))


def _uniform(rng: np.random.Generator, r, dist: str = "uniform") -> float:
    """One draw of a Range; always consumes exactly one variate (stable streams)."""
    u = rng.random()
    lo, hi = bounds(r)
    if lo == hi:
        return lo
    if dist == "loguniform":
        return float(math.exp(math.log(lo) + u * (math.log(hi) - math.log(lo))))
    return lo + u * (hi - lo)


@dataclass
class _Params:
    """Everything drawn for one stamp."""

    index: int
    field: int
    pair: int
    ring_member: int
    g1: float
    g2: float
    int_g1: float
    int_g2: float
    hlr: float
    flux: float
    sersic_n: float
    bulge_fraction: float
    bulge_hlr: float
    psf_fwhm: float
    psf_g1: float
    psf_g2: float
    dx: float
    dy: float
    snr: float
    noise_seed: int
    psf_profile: str = "moffat"
    psf_beta: float = 3.0
    psf_trunc: float = 2.0
    noise_kind: str = "none"


class StampRenderer:
    """Draws stamps for one configuration, caching GalSim profiles per worker.

    Parameters
    ----------
    cfg : GenerateConfig
        The simulation configuration.
    base_seed : int
        Base seed; stamp ``i`` depends only on ``(base_seed, i)`` and the config.
    """

    def __init__(self, cfg: GenerateConfig, base_seed: int):
        import galsim

        self.galsim = galsim
        self.cfg = cfg
        self.base_seed = int(base_seed)
        self.field_size = cfg.effective_field_size
        self._psf_units: dict[tuple, tuple] = {}
        self.exp_unit = galsim.Exponential(half_light_radius=1.0)
        self.dev_unit = None
        self._sersic: dict[float, Any] = {}
        self._psf_cache: dict[tuple, np.ndarray] = {}
        self._field_cache: dict[int, tuple] = {}
        self._gal_cache: dict[int, tuple] = {}
        s = cfg.stamp_size
        self.gimg = galsim.ImageF(s, s, scale=cfg.pixel_scale)
        self.pimg = galsim.ImageF(s, s, scale=cfg.pixel_scale)

    def psf_unit(self, profile: str, beta: float, trunc: float) -> tuple:
        """The PSF profile of FWHM 1 and its half-light radius (cached per profile, beta, truncation)."""
        key = (profile, beta, trunc) if profile == "moffat" else (profile,)
        if key not in self._psf_units:
            galsim = self.galsim
            if profile == "moffat":
                unit = galsim.Moffat(beta=beta, fwhm=1.0, **({"trunc": trunc} if trunc > 0 else {}))
            elif profile == "kolmogorov":
                unit = galsim.Kolmogorov(fwhm=1.0)
            else:
                unit = galsim.Gaussian(fwhm=1.0)
            if len(self._psf_units) > 256:
                self._psf_units.clear()
            self._psf_units[key] = (unit, float(unit.half_light_radius))
        return self._psf_units[key]

    # ------------------------------------------------------------------ parameters
    def _field_params(self, field: int) -> tuple:
        if field not in self._field_cache:
            cfg = self.cfg
            rng = _rng(self.base_seed, _KIND_FIELD, field)
            g1 = _uniform(rng, cfg.shear.g1)
            g2 = _uniform(rng, cfg.shear.g2)
            psf = self._draw_psf(rng, _rng(self.base_seed, _KIND_FIELD_MIX, field))
            if len(self._field_cache) > 64:
                self._field_cache.clear()
            self._field_cache[field] = (g1, g2, psf)
        return self._field_cache[field]

    def _draw_psf(self, rng, mix_rng) -> tuple:
        """``(fwhm, g1, g2, profile, beta, trunc)``; profile, beta and truncation from ``mix_rng``
        when they are mixed (:attr:`PsfConfig.mixed`), so unmixed settings draw as they always did."""
        p = self.cfg.psf
        out = (_uniform(rng, p.fwhm), _uniform(rng, p.g1), _uniform(rng, p.g2))
        if not p.mixed:
            return (*out, p.profile, bounds(p.beta)[0], bounds(p.trunc)[0])
        profile = p.profiles[int(mix_rng.random() * len(p.profiles))] if p.profiles else p.profile
        beta = round(round(_uniform(mix_rng, p.beta) / MIX_STEP) * MIX_STEP, 6)
        trunc = round(round(_uniform(mix_rng, p.trunc) / MIX_STEP) * MIX_STEP, 6)
        return (*out, profile, beta, trunc)

    def _galaxy_params(self, key: int) -> tuple:
        if key in self._gal_cache:
            return self._gal_cache[key]
        cfg = self.cfg
        g = cfg.galaxy
        rng = _rng(self.base_seed, _KIND_GALAXY, key)
        hlr = _uniform(rng, g.hlr, g.hlr_dist)
        flux = _uniform(rng, g.flux)
        n = _uniform(rng, g.sersic_n)
        n = round(round(n / g.sersic_n_step) * g.sersic_n_step, 6)
        bf = _uniform(rng, g.bulge_fraction)
        br = _uniform(rng, g.bulge_hlr_ratio)
        # intrinsic shape
        sh = cfg.shape
        if sh.kind == "none":
            mod = 0.0
            rng.random()
        elif sh.kind == "gaussian":
            mod = abs(rng.normal(0.0, sh.sigma))
            for _ in range(10000):
                if mod <= sh.max:
                    break
                mod = abs(rng.normal(0.0, sh.sigma))
            else:  # pragma: no cover - sigma >> max
                mod = sh.max * rng.random()
        else:
            mod = sh.max * math.sqrt(rng.random())
        beta = math.pi * rng.random()
        c, s = math.cos(2 * beta), math.sin(2 * beta)
        if sh.convention == "e":
            i1, i2 = (float(x) for x in e_to_g(mod * c, mod * s))
        else:
            i1, i2 = mod * c, mod * s
        mix = _rng(self.base_seed, _KIND_GALAXY_MIX, key)
        psf = self._draw_psf(rng, mix)
        snr = _uniform(rng, cfg.noise.snr, cfg.noise.snr_dist)
        kinds = cfg.noise.kinds
        noise_kind = kinds[int(mix.random() * len(kinds))] if kinds else cfg.noise.kind
        out = (hlr, flux, n, bf, br, i1, i2, psf, snr, noise_kind)
        if len(self._gal_cache) > 64:
            self._gal_cache.clear()
        self._gal_cache[key] = out
        return out

    def params(self, i: int) -> _Params:
        """Draw the parameters of stamp ``i`` (independent of any other stamp's)."""
        cfg = self.cfg
        field = i // self.field_size  # a field is one stamp (one pair with ring) when field_size = 1
        ring = cfg.shape.ring
        pair = i // 2 if ring else i
        member = i % 2 if ring else 0
        g1, g2, field_psf = self._field_params(field)
        hlr, flux, n, bf, br, i1, i2, gal_psf, snr, noise_kind = self._galaxy_params(pair)
        if member:
            i1, i2 = -i1, -i2
        fwhm, pg1, pg2, profile, beta, trunc = field_psf if cfg.psf.vary == "field" else gal_psf
        psf_hlr = self.psf_unit(profile, beta, trunc)[1] * fwhm
        if cfg.galaxy.hlr_unit == "psf_hlr":
            hlr = hlr * psf_hlr
        srng = _rng(self.base_seed, _KIND_STAMP, i)
        r = cfg.offset_radius * math.sqrt(srng.random())
        phi = 2 * math.pi * srng.random()
        noise_seed = int(srng.integers(1, 2**31 - 1))
        return _Params(
            index=i, field=field, pair=pair, ring_member=member, g1=g1, g2=g2, int_g1=i1, int_g2=i2,
            hlr=hlr, flux=flux, sersic_n=n, bulge_fraction=bf, bulge_hlr=br * hlr, psf_fwhm=fwhm,
            psf_g1=pg1, psf_g2=pg2, dx=r * math.cos(phi), dy=r * math.sin(phi), snr=snr,
            noise_seed=noise_seed, psf_profile=profile, psf_beta=beta, psf_trunc=trunc, noise_kind=noise_kind,
        )

    # ------------------------------------------------------------------ profiles
    def _sersic_unit(self, n: float):
        if n not in self._sersic:
            if len(self._sersic) > 256:
                self._sersic.clear()
            self._sersic[n] = self.galsim.Sersic(n=n, half_light_radius=1.0)
        return self._sersic[n]

    def galaxy(self, p: _Params):
        """The pre-PSF galaxy profile of stamp parameters ``p`` (sheared, intrinsic shape applied)."""
        prof = self.cfg.galaxy.profile
        if prof == "exponential":
            gal = self.exp_unit.dilate(p.hlr).withFlux(p.flux)
        elif prof == "sersic":
            gal = self._sersic_unit(p.sersic_n).dilate(p.hlr).withFlux(p.flux)
        else:
            if self.dev_unit is None:
                self.dev_unit = self.galsim.DeVaucouleurs(half_light_radius=1.0)
            gal = self.galsim.Add([
                self.dev_unit.dilate(p.bulge_hlr).withFlux(p.flux * p.bulge_fraction),
                self.exp_unit.dilate(p.hlr).withFlux(p.flux * (1.0 - p.bulge_fraction)),
            ])
        if p.int_g1 or p.int_g2:
            gal = gal.shear(g1=p.int_g1, g2=p.int_g2)
        return gal.shear(g1=p.g1, g2=p.g2)

    def psf(self, p: _Params):
        """The PSF profile of stamp parameters ``p``."""
        psf = self.psf_unit(p.psf_profile, p.psf_beta, p.psf_trunc)[0].dilate(p.psf_fwhm)
        if p.psf_g1 or p.psf_g2:
            psf = psf.shear(g1=p.psf_g1, g2=p.psf_g2)
        return psf

    # ------------------------------------------------------------------ drawing
    def draw(self, i: int) -> tuple[np.ndarray, np.ndarray, dict]:
        """Draw stamp ``i``.

        Returns
        -------
        gal, psf : numpy.ndarray
            float32 (stamp_size, stamp_size) galaxy and PSF stamps.
        truth : dict
            The stamp's row of the truth table.
        """
        galsim = self.galsim
        cfg = self.cfg
        p = self.params(i)
        psf = self.psf(p)
        offset = (p.dx, p.dy)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", galsim.GalSimWarning)
            galsim.Convolve([self.galaxy(p), psf]).drawImage(image=self.gimg, offset=offset)
            pkey = (p.psf_profile, p.psf_beta, p.psf_trunc, p.psf_fwhm, p.psf_g1, p.psf_g2,
                    offset if cfg.psf.shift_with_galaxy else None)
            parr = self._psf_cache.get(pkey)
            if parr is None:
                psf.drawImage(image=self.pimg, method="fft",
                              offset=offset if cfg.psf.shift_with_galaxy else None)
                parr = self.pimg.array.astype(np.float32, copy=True)
                if len(self._psf_cache) > 8:
                    self._psf_cache.clear()
                self._psf_cache[pkey] = parr
        flux, noise_var = p.flux, 0.0
        nz = cfg.noise
        kind = p.noise_kind
        if kind != "none":
            dev = galsim.BaseDeviate(p.noise_seed)
            signal = float(np.sqrt(np.sum(self.gimg.array.astype(np.float64) ** 2)))
            if kind == "gaussian":
                sigma = signal / p.snr
                self.gimg.addNoise(galsim.GaussianNoise(dev, sigma=sigma))
                noise_var = sigma * sigma
            else:
                sky = nz.sky_level * cfg.pixel_scale**2
                scale = p.snr * math.sqrt(sky) / signal
                self.gimg *= scale
                self.gimg.addNoise(galsim.PoissonNoise(dev, sky_level=sky))
                flux, noise_var = p.flux * scale, sky
        obs1, obs2 = compose_shear(p.int_g1, p.int_g2, p.g1, p.g2)
        truth = {
            "index": p.index, "field": p.field, "pair": p.pair, "ring_member": p.ring_member,
            "g1": p.g1, "g2": p.g2, "int_g1": p.int_g1, "int_g2": p.int_g2,
            "obs_g1": float(obs1), "obs_g2": float(obs2),
            "profile": cfg.galaxy.profile, "hlr": p.hlr, "flux": flux,
            "sersic_n": p.sersic_n if cfg.galaxy.profile == "sersic" else (
                4.0 if cfg.galaxy.profile == "bulge+disk" else 1.0),
            "bulge_fraction": p.bulge_fraction if cfg.galaxy.profile == "bulge+disk" else 0.0,
            "bulge_hlr": p.bulge_hlr if cfg.galaxy.profile == "bulge+disk" else 0.0,
            "psf_fwhm": p.psf_fwhm, "psf_hlr": self.psf_unit(p.psf_profile, p.psf_beta, p.psf_trunc)[1] * p.psf_fwhm,
            "psf_g1": p.psf_g1, "psf_g2": p.psf_g2, "dx": p.dx, "dy": p.dy,
            "snr": p.snr if kind != "none" else float("inf"), "noise_var": noise_var,
            "noise_seed": p.noise_seed, "psf_profile": p.psf_profile, "psf_beta": p.psf_beta,
            "psf_trunc": p.psf_trunc, "noise_kind": kind,
        }
        return self.gimg.array.astype(np.float32, copy=True), parr.copy(), truth


def draw_stamps(cfg: GenerateConfig, base_seed: int, start: int, stop: int,
                renderer: StampRenderer | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """Draw stamps ``start .. stop-1``.

    Parameters
    ----------
    cfg : GenerateConfig
    base_seed : int
    start, stop : int
        Global stamp indices; the pixels of stamp ``i`` do not depend on them.
    renderer : StampRenderer, optional
        Reuse a renderer (and its cached profiles) across calls.

    Returns
    -------
    gal, psf : numpy.ndarray
        float32 arrays of shape (stop - start, stamp_size, stamp_size).
    truth : dict of numpy.ndarray
        Columns :data:`TRUTH_COLUMNS`.
    """
    r = renderer or StampRenderer(cfg, base_seed)
    n, s = stop - start, cfg.stamp_size
    gal = np.empty((n, s, s), np.float32)
    psf = np.empty((n, s, s), np.float32)
    rows = []
    for k, i in enumerate(range(start, stop)):
        gal[k], psf[k], row = r.draw(i)
        rows.append(row)
    truth = {c: np.array([row[c] for row in rows]) for c in TRUTH_COLUMNS}
    if n == 0:
        truth = {c: np.array([]) for c in TRUTH_COLUMNS}
    return gal, psf, truth


# ============================================================================ dataset on disk

UNITS = "gal: counts per pixel (noise added); psf: unit flux; sizes arcsec; offsets pixels"
"""Units of the stamps and truth values, in one line of text."""

TRUTH_DESCRIPTIONS = {
    "index": "stamp number in the dataset",
    "field": "constant-shear field (stamps of one field share g1, g2)",
    "pair": "ring pair (the stamp itself without --ring)",
    "ring_member": "0 the first of a ring pair, 1 its copy rotated by 90 degrees (0 without --ring)",
    "g1": "applied reduced shear g1 (shear, not distortion)",
    "g2": "applied reduced shear g2 (shear, not distortion)",
    "int_g1": "intrinsic ellipticity before shearing, reduced-shear convention |g| = (a-b)/(a+b), component 1",
    "int_g2": "intrinsic ellipticity before shearing, reduced-shear convention |g| = (a-b)/(a+b), component 2",
    "obs_g1": "intrinsic ellipticity composed with the shear (reduced-shear convention), component 1",
    "obs_g2": "intrinsic ellipticity composed with the shear (reduced-shear convention), component 2",
    "profile": "galaxy profile: exponential, sersic or bulge+disk",
    "hlr": "half-light radius of the galaxy (of the disk for bulge+disk)",
    "flux": "total galaxy flux, scaled with the noise for Poisson noise",
    "sersic_n": "Sersic index (1 exponential; 4 the bulge of bulge+disk)",
    "bulge_fraction": "flux fraction of the bulge (0 unless bulge+disk)",
    "bulge_hlr": "half-light radius of the bulge (0 unless bulge+disk)",
    "psf_fwhm": "PSF full width at half maximum",
    "psf_hlr": "PSF half-light radius",
    "psf_g1": "PSF ellipticity, reduced-shear convention, component 1",
    "psf_g2": "PSF ellipticity, reduced-shear convention, component 2",
    "dx": "offset of the galaxy centre from the stamp centre, x",
    "dy": "offset of the galaxy centre from the stamp centre, y",
    "snr": "target signal-to-noise ratio (inf without noise)",
    "noise_var": "pixel noise variance (0 without noise)",
    "noise_seed": "seed of the stamp's noise",
    "psf_profile": "PSF profile: moffat, kolmogorov or gaussian",
    "psf_beta": "Moffat beta of the PSF",
    "psf_trunc": "Moffat truncation radius of the PSF in units of its FWHM (0 none)",
    "noise_kind": "pixel noise: none, gaussian or poisson",
}
"""One-line description of each truth-table column (:data:`TRUTH_COLUMNS`)."""

TRUTH_UNITS = {"hlr": "arcsec", "bulge_hlr": "arcsec", "psf_fwhm": "arcsec", "psf_hlr": "arcsec", "dx": "pix",
               "dy": "pix", "flux": "ct", "noise_var": "ct2"}
"""Astropy units of the truth-table columns that have one (the others are dimensionless or labels)."""


def dataset_writer(cfg: GenerateConfig, out_dir: str | Path, command: str = "lens generate") -> DatasetWriter:
    """The :class:`astrotool.ml.data.DatasetWriter` of a shear dataset.

    Shards are ``shardNNNNN_stamps.h5`` (arrays ``gal`` and ``psf``, float32
    (n, S, S)), the table ``<name>_truth.parquet`` (:data:`TRUTH_COLUMNS`).
    """
    return DatasetWriter(str(out_dir), cfg.dataset_name, shard_product="stamps", table_product="truth",
                         kind=ShearDataset.KIND, compression=cfg.compression, command=command)


@dataclass(frozen=True)
class ShardTask:
    """One shard of a dataset (executor item): stamps ``[start, stop)`` written by ``writer``."""

    shard: int
    start: int
    stop: int
    writer: DatasetWriter
    config: dict
    base_seed: int
    overwrite: bool = False
    lensnet_dir: str | None = None

    @property
    def path(self) -> Path:
        return self.writer.shard_path(self.shard)


LENSNET_BUNIT = {"gal": ("ct", "counts per pixel (noise added)"),
                 "psf": ("", "dimensionless: fraction of the unit-flux PSF per pixel")}
"""``BUNIT`` value and comment of the LensNet ``gal_i.fits`` and ``psf_i.fits`` stamps (as :data:`UNITS`)."""


def _write_lensnet_files(folder: Path, gal, psf, truth: dict, command: str, base_seed: int, stack,
                         pixel_scale: float) -> None:
    """Write the stamps' ``gal_i.fits``/``psf_i.fits`` under temporary names, each renamed to its own
    when ``stack`` (a :class:`contextlib.ExitStack`) closes without an exception, removed otherwise.
    Each header holds ``BUNIT`` (:data:`LENSNET_BUNIT`) and ``PIXSCALE``, ``pixel_scale`` [arcsec / pixel]."""
    from astropy.io import fits

    from astrotool.provenance import provenance, stamp_fits
    from astrotool.workspace import atomic_path

    record = provenance(command=command, seed=base_seed)
    folder.mkdir(parents=True, exist_ok=True)
    for k, idx in enumerate(truth["index"]):
        for prefix, arr in (("gal", gal[k]), ("psf", psf[k])):
            tmp = stack.enter_context(atomic_path(folder / f"{prefix}_{int(idx)}.fits"))
            hdu = fits.PrimaryHDU(arr)
            hdu.header["BUNIT"] = LENSNET_BUNIT[prefix]
            hdu.header["PIXSCALE"] = (float(pixel_scale), "[arcsec/pixel] pixel scale")
            stamp_fits(hdu.header, record, ["format lensnet"])
            hdu.writeto(tmp)


def _lensnet_paths(task: ShardTask) -> list[Path]:
    """The LensNet files of a shard's stamps."""
    return [Path(task.lensnet_dir) / f"{p}_{i}.fits" for i in range(task.start, task.stop) for p in ("gal", "psf")]


def _drawn_settings(path: Path) -> tuple[dict, int] | None:
    """``(config, base_seed)`` a shard file was drawn with (its ``seed`` the base seed used:
    :func:`_seeded`); None when unreadable or unfinished."""
    import json

    from astrotool.errors import InputError
    from astrotool.io.hdf5 import open_h5

    try:
        with open_h5(path) as h5:
            seed = int(h5.attrs["base_seed"])
            return _seeded(_current_keys(json.loads(h5.attrs["config"])), seed), seed
    except (InputError, KeyError, ValueError, TypeError, AttributeError):
        return None


def _current_keys(settings: dict) -> dict:
    """``settings`` as recorded (a shard's, a manifest's), keys an earlier release named otherwise
    (``GenerateConfig.renamed_keys``) under their current names."""
    return {GenerateConfig.renamed_keys.get(k, k): v for k, v in settings.items()}


def _seeded(settings: dict, base_seed: int) -> dict:
    """``settings`` with ``seed`` the base seed actually used: ``lens.generate.seed=1`` and ``--seed 1``
    draw the same pixels, so they are the same settings (the one rule of what is recorded and compared)."""
    return {**settings, "seed": int(base_seed)}


def shard_done(task: ShardTask) -> bool:
    """Whether the task's shard exists with exactly its stamps, drawn with its settings (and its
    LensNet files when the format asks for them): the one test of a finished shard."""
    if task.writer.finished_shard(task.shard, task.start, task.stop) is None:
        return False
    if _drawn_settings(task.writer.shard_path(task.shard)) != (_seeded(task.config, task.base_seed), task.base_seed):
        return False
    return not task.lensnet_dir or all(p.is_file() for p in _lensnet_paths(task))


def generate_shard(task: ShardTask, seed: int | None = None) -> dict:
    """Draw and write one shard; skip it when a readable shard of the same stamps exists.

    Parameters
    ----------
    task : ShardTask
    seed : int, optional
        The executor's per-item seed; unused, because stamps are seeded by
        their global index (so any sharding gives the same pixels).

    Returns
    -------
    dict
        ``{"shard": int, "skipped": bool, "path": str}`` (the shard file).
    """
    if not replaces(task.overwrite, task.writer.shard_path(task.shard)) and shard_done(task):
        return {"shard": task.shard, "skipped": True}
    cfg = GenerateConfig.model_validate(task.config)
    gal, psf, truth = draw_stamps(cfg, task.base_seed, task.start, task.stop)
    try:
        # like the HDF5 shard, its LensNet files appear whole or not at all: written under temporary
        # names, renamed once the shard is written; an interrupted shard leaves none (not even earlier ones)
        with ExitStack() as stack:
            if task.lensnet_dir:
                _write_lensnet_files(Path(task.lensnet_dir), gal, psf, truth, task.writer.command, task.base_seed,
                                     stack, cfg.pixel_scale)
            task.writer.write_shard(task.shard, task.start, {"gal": gal, "psf": psf}, truth,
                                    attrs={"config": task.config, "base_seed": task.base_seed,
                                           "pixel_scale": cfg.pixel_scale, "units": UNITS})
    except BaseException:
        for p in _lensnet_paths(task) if task.lensnet_dir else []:
            p.unlink(missing_ok=True)
        raise
    return {"shard": task.shard, "skipped": False, "path": str(task.writer.shard_path(task.shard))}


def plan_shards(cfg: GenerateConfig, out_dir: Path, base_seed: int, overwrite: bool = False,
                command: str = "lens generate") -> list[ShardTask]:
    """The shard tasks of a dataset."""
    conf = _seeded(cfg.model_dump(mode="json"), base_seed)
    writer = dataset_writer(cfg, out_dir, command)
    lensnet = str(Path(out_dir) / "lensnet") if cfg.format == "lensnet" else None
    return [ShardTask(k, start, min(cfg.n_stamps, start + cfg.shard_size), writer, conf, int(base_seed), overwrite,
                      lensnet)
            for k, start in enumerate(range(0, cfg.n_stamps, cfg.shard_size))]


def finalize_dataset(cfg: GenerateConfig, out_dir: Path, base_seed: int, n_shards: int,
                     command: str = "lens generate") -> dict:
    """Write ``<name>_truth.parquet``, LensNet's ``data.json`` and then ``<name>_dataset.json``.

    Called once every shard exists.

    Returns
    -------
    dict
        The manifest.
    """
    from astrotool.workspace import write_json_atomic

    conf = _seeded(cfg.model_dump(mode="json"), base_seed)

    def lensnet_json(cols: dict) -> None:
        pe1, pe2 = g_to_e(cols["psf_g1"], cols["psf_g2"])
        entries = [
            {"galaxy": f"gal_{i}.fits", "psf": f"psf_{i}.fits", "e1": float(pe1[k]), "e2": float(pe2[k]),
             "g1": float(cols["g1"][k]), "g2": float(cols["g2"][k]),
             "dx": float(cols["dx"][k]), "dy": float(cols["dy"][k])}
            for k, i in enumerate(cols["index"].tolist())
        ]
        write_json_atomic(Path(out_dir) / "lensnet" / "data.json", entries)

    meta = {"config": conf, "base_seed": int(base_seed),
            "conventions": "reduced shear g; PSF ellipticity g; offsets in pixels; sizes in arcsec"}
    attrs = {"stamp_size": cfg.stamp_size, "pixel_scale": cfg.pixel_scale, "base_seed": int(base_seed),
             "field_size": cfg.effective_field_size, "ring": cfg.shape.ring, "config": conf}
    return dataset_writer(cfg, out_dir, command).finalize(
        n_shards, attrs=attrs, table_metadata=meta, units=TRUTH_UNITS, descriptions=TRUTH_DESCRIPTIONS,
        before_manifest=lensnet_json if cfg.format == "lensnet" else None)


def finished_manifest(cfg: GenerateConfig, out_dir: Path, base_seed: int, n_shards: int) -> dict | None:
    """The manifest already in ``out_dir`` when it finishes this very dataset, else None.

    A repeated run that draws nothing keeps it and the truth table as they
    are, with the provenance of the run that finished them.
    """
    import json

    writer = dataset_writer(cfg, out_dir)
    try:
        m = json.loads(writer.manifest_path.read_text(encoding="utf-8"))
        plan = [(writer.shard_path(k).name, start, min(cfg.n_stamps, start + cfg.shard_size))
                for k, start in enumerate(range(0, cfg.n_stamps, cfg.shard_size))]
        same = (_seeded(_current_keys(m["config"]), m["base_seed"]) == _seeded(cfg.model_dump(mode="json"), base_seed)
                and int(m["n"]) == cfg.n_stamps and len(plan) == n_shards
                and [(s["file"], int(s["start"]), int(s["stop"])) for s in m["shards"]] == plan)
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError):
        return None
    lensnet_ok = cfg.format != "lensnet" or (Path(out_dir) / "lensnet" / "data.json").is_file()
    return m if same and lensnet_ok and (Path(out_dir) / m.get("metadata", "")).is_file() else None


def check_existing(cfg: GenerateConfig, out_dir: str | Path, base_seed: int, overwrite: bool = False) -> None:
    """Refuse to mix new stamps with shards drawn with another configuration or seed.

    With ``overwrite``, clear the way instead: the manifest goes first (an
    interrupted overwrite must not leave a folder that reads as finished), then
    shards the new plan does not have, the ``lensnet/`` folder when the format
    no longer asks for it, else its ``data.json`` (written again at the end) and the
    stamps beyond the new ``n``. Shards a ``--shard`` run
    does not redraw stay, and count as finished when they hold these settings.

    Raises
    ------
    astrotool.made_with.SettingsChanged
        A readable shard in ``out_dir`` was drawn with other settings (exit 2; each changed key
        named as ``--set`` spells it, ``lens.generate.noise.snr: 200.0 -> 50.0``).
    """
    from astrotool.made_with import SettingsChanged, changes

    out_dir = Path(out_dir)
    writer = dataset_writer(cfg, out_dir)
    shards = sorted(out_dir.glob(f"shard*_{writer.shard_product}.h5")) if out_dir.is_dir() else []
    if overwrite:
        writer.manifest_path.unlink(missing_ok=True)
        writer.table_path.unlink(missing_ok=True)   # the old stamps' truth: written again once all shards are
        keep = {writer.shard_path(k) for k in range(-(-cfg.n_stamps // cfg.shard_size))}
        for p in shards:
            if p not in keep:
                p.unlink()
        lensnet = out_dir / "lensnet"
        if lensnet.is_symlink() or lensnet.is_file():
            lensnet.unlink()
        elif lensnet.is_dir() and cfg.format != "lensnet":
            import shutil

            shutil.rmtree(lensnet)
        elif lensnet.is_dir():
            (lensnet / "data.json").unlink(missing_ok=True)
            for p in lensnet.glob("*_*.fits"):
                index = p.stem.split("_", 1)[1]
                if not index.isdigit() or int(index) >= cfg.n_stamps:
                    p.unlink()
        return
    new_cfg = _seeded(cfg.model_dump(mode="json"), base_seed)
    for p in shards:
        drawn = _drawn_settings(p)
        if drawn is None:
            continue  # unreadable or unfinished: generate_shard draws it again
        # the seed compared is the one used (lens.generate.seed, else --seed / core.seed): _seeded
        changed = changes(_as_set(drawn[0]), _as_set(new_cfg))
        if changed:
            raise SettingsChanged(out_dir, changed, "use --overwrite to replace it, or --name for a new dataset")


def _as_set(settings: dict) -> dict:
    """``settings`` under ``lens.generate``, so that :func:`astrotool.made_with.changes` names each key as
    ``--set`` spells it."""
    return {"lens": {"generate": settings}}


def generate_dataset(cfg: GenerateConfig, out_dir: str | Path, base_seed: int, mapper: Callable,
                     overwrite: bool = False, command: str = "lens generate") -> dict:
    """Generate (or finish) a dataset in ``out_dir``.

    Parameters
    ----------
    cfg : GenerateConfig
    out_dir : path-like
        Dataset folder, e.g. ``<workspace>/lens/shear/<name>``.
    base_seed : int
    mapper : callable
        ``mapper(fn, items, desc=..., keys=...) -> [(key, result)]``, such as
        :meth:`astrotool.context.Context.map` (failed items left out).
    overwrite : bool
        Redraw shards that exist (otherwise finished shards are kept, and shards
        drawn with other settings are refused: :func:`check_existing`). Under ``--shard``
        each run redraws its own shards; the last one finishes the dataset.

    Returns
    -------
    dict
        ``{"manifest": dict or None, "drawn": int, "skipped": int, "missing": int, "shards": int,
        "written": [paths]}`` (``written``: the shards this run drew, then the truth table and the
        manifest when this run finished the dataset);
        the manifest is None while shards are missing: shards neither finished by this run nor
        by an earlier one with these settings (``--shard`` runs, failures). A run that draws
        nothing keeps the existing manifest (:func:`finished_manifest`).
    """
    out_dir = Path(out_dir)
    check_existing(cfg, out_dir, base_seed, overwrite)
    out_dir.mkdir(parents=True, exist_ok=True)
    tasks = plan_shards(cfg, out_dir, base_seed, overwrite, command)
    results = [r for _, r in mapper(generate_shard, tasks, desc=f"generate {cfg.dataset_name}",
                                    keys=[f"shard{t.shard:05d}" for t in tasks])]
    drawn = sum(1 for r in results if not r["skipped"])
    written = [str(t.writer.shard_path(t.shard)) for t in tasks
               if any(r["shard"] == t.shard and not r["skipped"] for r in results)]
    ran = {r["shard"] for r in results}
    # a shard this run did not finish counts when an earlier run (another --shard) finished it with
    # these settings
    missing = sum(1 for t in tasks if t.shard not in ran and not shard_done(t))
    manifest = None
    if not missing:
        manifest = None if drawn or overwrite else finished_manifest(cfg, out_dir, base_seed, len(tasks))
        if manifest is None:
            manifest = finalize_dataset(cfg, out_dir, base_seed, len(tasks), command)
            written += [str(out_dir / manifest["metadata"]), str(out_dir / f"{cfg.dataset_name}{MANIFEST_SUFFIX}")]
    return {"manifest": manifest, "drawn": drawn, "skipped": len(results) - drawn, "missing": missing,
            "shards": len(tasks), "written": written}
