"""Simulated (epsilon, kappa) map pairs in the Astro-Datathon 2024 layout.

The model
---------
Each map ``i`` (side ``S`` pixels of ``pixel_scale`` arcmin) is drawn from its own
random generator, seeded with ``derive_seed(seed, "kappa-sim", i)``, so a map does
not depend on how maps are split into chunks, on ``--jobs`` or on the executor.

Convergence (on a grid padded to ``2S``, the field in its centre)
    * Cosmology: astropy's ``Planck18``. Lens redshift ``z_l ~ U(z_lens)``; all
      sources on one sheet at ``z_source``. Critical surface density
      ``Sigma_crit = c^2 D_s / (4 pi G D_l D_ls)`` (angular-diameter distances).
    * Main halo: ``log10(M200c / Msun) ~ U(log10_mass)``; position = field centre
      + Gaussian offset of ``offset`` pixels per axis.
    * Secondary halos: ``Poisson(n_sub)`` of them, ``log10 M200c ~ U(log10_mass_sub)``,
      positions uniform over the field (``S x S``), same redshift.
    * Concentration: Duffy et al. (2008), full sample, M200c:
      ``c200 = 5.71 (M200c / 2e12 h^-1 Msun)^-0.084 (1 + z_l)^-0.47``, times a
      log-normal scatter of ``concentration_scatter`` dex.
    * NFW: ``r200 = (3 M200c / (4 pi 200 rho_c(z_l)))^(1/3)``, ``r_s = r200 / c``,
      ``rho_s = (200/3) c^3 / (ln(1+c) - c/(1+c)) rho_c(z_l)``,
      ``kappa_s = rho_s r_s / Sigma_crit``, ``theta_s = r_s / D_l``. The projected
      convergence (Bartelmann 1996; Wright & Brainerd 2000) at ``x = theta/theta_s``
      is ``kappa(x) = 2 kappa_s (1 - F(x)) / (x^2 - 1)`` with
      ``F = arccos(1/x) / sqrt(x^2 - 1)`` (x > 1), ``arccosh(1/x) / sqrt(1 - x^2)``
      (x < 1), and the bracket's limit 1/3 at x = 1. It is evaluated at pixel
      centres at a distance of at least half a pixel from the halo centre (the
      centre is softened by clamping ``theta >= pixel_scale / 2``, not by
      sub-pixel averaging).
    * Gaussian random field (the smaller-scale structure): white noise filtered in
      Fourier space to the power spectrum ``P(k) ~ k^grf_slope exp(-(k/grf_cutoff)^2)``
      (k in cycles/pixel, ``P(0) = 0``), rescaled to a pixel RMS of ``grf_rms`` over
      the padded grid.
    * ``kappa = min(sum of halos + GRF, kappa_max)`` on the padded grid.

Shear
    ``gamma`` from ``kappa`` on the padded grid by the Fourier-space lensing relation
    (:func:`astrotool_lens.kappa.maps.shear_from_kappa`), so mass outside the field
    (halo tails, the GRF) shears the field, and the periodic wrap is half a field
    away; then both are cropped to the central ``S x S``. Reduced shear
    ``g = gamma / (1 - kappa)``.

Galaxies and noise
    * Number per pixel ``N ~ Poisson(n_gal * pixel_scale^2)`` (n_gal per arcmin^2).
    * Intrinsic complex ellipticity ``eps_s``: each component Gaussian with sigma
      ``sigma_e``, redrawn until ``|eps_s| < 1``.
    * Lensed ellipticity (ellipticity of the ``(a-b)/(a+b)`` kind):
      ``eps = (eps_s + g) / (1 + conj(g) eps_s)`` for ``|g| <= 1`` and
      ``(1 + g conj(eps_s)) / (conj(eps_s) + conj(g))`` for ``|g| > 1``.
    * Measurement noise: Gaussian with sigma ``sigma_meas`` per component, added
      to each galaxy.
    * Pixel value ``epsilon`` = mean over its galaxies;
      ``Delta-epsilon = sqrt(sigma_e^2 + sigma_meas^2) / sqrt(N)``.
    * Pixels without galaxies: ``epsilon = 0`` and the sentinel
      ``Delta-epsilon = EMPTY_ERROR_FACTOR * sqrt(sigma_e^2 + sigma_meas^2)``
      (10 times the error of a single galaxy: an inverse-variance weight of 1/100
      of a galaxy; finite in float16 and bounded, so networks can take it).

Files
-----
``lens/kappa/sims/<name>/EPSILON/<id>.npy`` float16 ``(3, S, S)`` ``[e1, e2, de]``,
``KAPPA/<id>.npy`` float16 ``(S, S)``, ids ``00000``... (zero-padded to at least 5
digits); ``truth.parquet`` (per map: :data:`TRUTH_COLUMNS`, written last) and
``simulate_settings.json`` (the model's parameters and the seed, written first so
an interrupted run is resumed only with the same ones) inside the set's folder.
Maps are written in chunks of ``chunk_size`` (one work item each); a finished
chunk leaves ``.chunks/<first id>-<last id>.json`` with its truth rows, so a rerun skips it,
and a larger ``n_maps`` adds maps (a last chunk that was shorter is drawn again, to the same bytes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from astrotool.errors import AstroError
from astrotool_lens.kappa.config import SimulateConfig

__docformat__ = "numpy"

__all__ = ["simulate_command", "simulate_chunk", "SimChunk", "simulate_maps", "simulate_one", "map_seed", "lens_ellipticity", "nfw_kappa_profile", "sigma_crit", "nfw_params",
           "TRUTH_COLUMNS", "EMPTY_ERROR_FACTOR"]

EMPTY_ERROR_FACTOR = 10.0
"""Delta-epsilon of a pixel without galaxies, in units of one galaxy's error."""

TRUTH_COLUMNS = (
    "id", "seed", "z_lens", "sigma_crit", "log10_mass", "concentration", "x", "y", "n_halos",
    "kappa_min", "kappa_max", "mean_n_gal",
)
"""Columns of the truth table: ``sigma_crit`` in Msun/Mpc^2, ``log10_mass`` of the
main halo's M200c/Msun, ``x, y`` its centre in field pixels (x = last axis),
``mean_n_gal`` the mean number of galaxies per pixel (not per arcmin^2)."""

TRUTH_UNITS = {"sigma_crit": "solMass / Mpc2", "x": "pix", "y": "pix", "mean_n_gal": "1 / pix"}
"""Units of the truth table's columns (the others are counts, labels or dimensionless)."""

TRUTH_DESCRIPTIONS = {
    "id": "map number", "name": "map file stem", "seed": "seed the map was drawn with", "z_lens": "lens redshift",
    "sigma_crit": "critical surface density", "log10_mass": "log10(M200c / Msun) of the main halo",
    "concentration": "NFW concentration of the main halo", "x": "main halo centre, last axis",
    "y": "main halo centre, first axis", "n_halos": "haloes in the field", "kappa_min": "smallest convergence",
    "kappa_max": "largest convergence", "mean_n_gal": "mean number of galaxies per pixel of the field",
}
"""One-line descriptions of the truth table's columns."""

_SALT = "kappa-sim"


# ---------------------------------------------------------------- physics

def nfw_kappa_profile(x) -> np.ndarray:
    """The dimensionless projected NFW profile ``2 (1 - F(x)) / (x^2 - 1)``.

    ``kappa(theta) = kappa_s * nfw_kappa_profile(theta / theta_s)``.

    Parameters
    ----------
    x : array_like
        ``theta / theta_s`` (> 0).

    Returns
    -------
    numpy.ndarray
        float64; 2/3 at ``x = 1``.
    """
    x = np.asarray(x, dtype=np.float64)
    out = np.empty_like(x)
    lo = x < 1 - 1e-4
    hi = x > 1 + 1e-4
    mid = ~(lo | hi)
    xl = x[lo]
    s = np.sqrt(1 - xl * xl)
    f = np.arccosh(1 / xl) / s
    out[lo] = 2 * (1 - f) / (xl * xl - 1)
    xh = x[hi]
    s = np.sqrt(xh * xh - 1)
    f = np.arccos(1 / xh) / s
    out[hi] = 2 * (1 - f) / (xh * xh - 1)
    # Taylor expansion about x = 1: 2 [1/3 - 0.4 (x - 1)]
    out[mid] = 2 * (1 / 3 - 0.4 * (x[mid] - 1))
    return out


def sigma_crit(z_lens: float, z_source: float) -> float:
    """Critical surface density ``c^2 D_s / (4 pi G D_l D_ls)`` [Msun/Mpc^2] (Planck18)."""
    import astropy.units as u
    from astropy.constants import G, c
    from astropy.cosmology import Planck18

    d_l = Planck18.angular_diameter_distance(z_lens)
    d_s = Planck18.angular_diameter_distance(z_source)
    d_ls = Planck18.angular_diameter_distance(z_lens, z_source)
    return float((c**2 * d_s / (4 * np.pi * G * d_l * d_ls)).to_value(u.Msun / u.Mpc**2))


def duffy08_concentration(m200c, z, h: float) -> np.ndarray:
    """Duffy et al. (2008) full-sample M200c relation: ``5.71 (M / 2e12 h^-1 Msun)^-0.084 (1+z)^-0.47``.

    ``m200c`` in Msun.
    """
    return 5.71 * (np.asarray(m200c, dtype=np.float64) / (2e12 / h)) ** -0.084 * (1 + z) ** -0.47


def nfw_params(m200c, c200, z_lens: float, z_source: float, sig_crit: float | None = None):
    """``(kappa_s, theta_s [arcmin])`` of NFW halos of M200c [Msun] and concentration c200."""
    import astropy.units as u
    from astropy.cosmology import Planck18

    m = np.asarray(m200c, dtype=np.float64)
    c = np.asarray(c200, dtype=np.float64)
    rho_c = Planck18.critical_density(z_lens).to_value(u.Msun / u.Mpc**3)
    d_l = Planck18.angular_diameter_distance(z_lens).to_value(u.Mpc)
    if sig_crit is None:
        sig_crit = sigma_crit(z_lens, z_source)
    r200 = (3 * m / (4 * np.pi * 200 * rho_c)) ** (1 / 3)
    rs = r200 / c
    delta_c = 200 / 3 * c**3 / (np.log1p(c) - c / (1 + c))
    kappa_s = delta_c * rho_c * rs / sig_crit
    theta_s = rs / d_l * (180 / np.pi) * 60
    return kappa_s, theta_s


def _grf(rng: np.random.Generator, n: int, cfg: SimulateConfig) -> np.ndarray:
    """Gaussian random field on an ``n x n`` grid with the configured spectrum and pixel RMS."""
    if cfg.grf_rms == 0:
        return np.zeros((n, n))
    from astrotool_lens.kappa.maps import wave_vectors

    ksq = wave_vectors((n, n))[2]
    k = np.sqrt(ksq)
    amp = np.zeros_like(k)
    nz = k > 0
    amp[nz] = np.sqrt(k[nz] ** cfg.grf_slope * np.exp(-(k[nz] / cfg.grf_cutoff) ** 2))
    field = np.fft.ifft2(np.fft.fft2(rng.standard_normal((n, n))) * amp).real
    rms = field.std()
    return field * (cfg.grf_rms / rms) if rms > 0 else field


def _kappa_map(rng: np.random.Generator, cfg: SimulateConfig) -> tuple[np.ndarray, dict]:
    """Padded ``(2S, 2S)`` convergence and the map's truth values."""
    from astropy.cosmology import Planck18

    s = cfg.size
    n = 2 * s
    z = float(rng.uniform(*cfg.z_lens))
    sc = sigma_crit(z, cfg.z_source)
    n_sub = int(rng.poisson(cfg.n_sub))
    logm = np.concatenate([[rng.uniform(*cfg.log10_mass)], rng.uniform(*cfg.log10_mass_sub, size=n_sub)])
    m = 10.0**logm
    c = duffy08_concentration(m, z, Planck18.h) * 10.0 ** (cfg.concentration_scatter * rng.standard_normal(1 + n_sub))
    # positions in field pixels (x = last axis), pixel centres at 0..S-1
    centre = (s - 1) / 2
    pos = np.empty((1 + n_sub, 2))
    pos[0] = centre + cfg.offset * rng.standard_normal(2)
    pos[1:] = rng.uniform(-0.5, s - 0.5, size=(n_sub, 2))
    kappa_s, theta_s = nfw_params(m, c, z, cfg.z_source, sc)
    # padded grid: field pixel j sits at padded index j + S/2
    off = s // 2
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float64)
    kappa = np.zeros((n, n))
    for (px, py), ks, ts in zip(pos, kappa_s, theta_s):
        r = np.hypot(xx - off - px, yy - off - py)
        theta = np.maximum(r, 0.5) * cfg.pixel_scale
        kappa += ks * nfw_kappa_profile(theta / ts)
    kappa += _grf(rng, n, cfg)
    np.minimum(kappa, cfg.kappa_max, out=kappa)
    truth = {"z_lens": z, "sigma_crit": sc, "log10_mass": float(logm[0]), "concentration": float(c[0]),
             "x": float(pos[0, 0]), "y": float(pos[0, 1]), "n_halos": 1 + n_sub}
    return kappa, truth


def lens_ellipticity(eps_s: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Lensed complex ellipticity of intrinsic ``eps_s`` under reduced shear ``g`` (both complex)."""
    out = np.empty(np.broadcast(eps_s, g).shape, dtype=np.complex128)
    eps_s, g = np.broadcast_arrays(eps_s, g)
    weak = np.abs(g) <= 1
    es, gg = eps_s[weak], g[weak]
    out[weak] = (es + gg) / (1 + np.conj(gg) * es)
    es, gg = eps_s[~weak], g[~weak]
    out[~weak] = (1 + gg * np.conj(es)) / (np.conj(es) + np.conj(gg))
    return out


def _galaxies(rng: np.random.Generator, g: np.ndarray, cfg: SimulateConfig) -> tuple[np.ndarray, float]:
    """``(3, S, S)`` [e1, e2, de] of the reduced-shear map ``g`` (complex), and mean N per pixel."""
    shape = g.shape
    npix = g.size
    counts = rng.poisson(cfg.n_gal * cfg.pixel_scale**2, size=npix)
    total = int(counts.sum())
    pix = np.repeat(np.arange(npix), counts)
    eps_s = cfg.sigma_e * (rng.standard_normal(total) + 1j * rng.standard_normal(total))
    bad = np.abs(eps_s) >= 1
    while bad.any():
        k = int(bad.sum())
        eps_s[bad] = cfg.sigma_e * (rng.standard_normal(k) + 1j * rng.standard_normal(k))
        bad = np.abs(eps_s) >= 1
    eps = lens_ellipticity(eps_s, g.ravel()[pix])
    if cfg.sigma_meas > 0:
        eps = eps + cfg.sigma_meas * (rng.standard_normal(total) + 1j * rng.standard_normal(total))
    n = np.maximum(counts, 1)
    e1 = np.bincount(pix, eps.real, minlength=npix) / n
    e2 = np.bincount(pix, eps.imag, minlength=npix) / n
    sig = math.hypot(cfg.sigma_e, cfg.sigma_meas)
    de = np.where(counts > 0, sig / np.sqrt(n), EMPTY_ERROR_FACTOR * sig)
    return np.stack([e1, e2, de]).reshape(3, *shape), float(counts.mean())


def simulate_one(cfg: SimulateConfig, seed: int) -> tuple[np.ndarray, np.ndarray, dict, np.ndarray]:
    """One map from its own seed: ``(epsilon (3,S,S), kappa (S,S), truth, g (S,S) complex)``, float64."""
    from astrotool_lens.kappa.maps import shear_from_kappa

    rng = np.random.default_rng(seed)
    s = cfg.size
    kappa_pad, truth = _kappa_map(rng, cfg)
    g1, g2 = shear_from_kappa(kappa_pad)
    sl = slice(s // 2, s // 2 + s)
    kappa = kappa_pad[sl, sl]
    g = (g1[sl, sl] + 1j * g2[sl, sl]) / (1 - kappa)
    epsilon, mean_n = _galaxies(rng, g, cfg)
    truth.update(kappa_min=float(kappa.min()), kappa_max=float(kappa.max()), mean_n_gal=mean_n)
    return epsilon, kappa, truth, g


def map_seed(seed: int, i: int) -> int:
    """The seed of map ``i`` of a set drawn with ``seed``."""
    from astrotool.seeding import derive_seed

    return derive_seed(int(seed), _SALT, int(i))


def simulate_maps(cfg: SimulateConfig, ids, seed: int) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """Draw maps in memory.

    Parameters
    ----------
    cfg : SimulateConfig
        The model's parameters (``cfg.seed`` is not used: ``seed`` is).
    ids : iterable of int
        Map indices; map ``i`` is the same as file ``<i>.npy`` of a set drawn with ``seed``.
    seed : int
        The set's seed.

    Returns
    -------
    epsilon : numpy.ndarray
        float32 ``(n, 3, S, S)``: e1, e2, Delta-epsilon.
    kappa : numpy.ndarray
        float32 ``(n, S, S)``.
    truth : list of dict
        One per map, keys :data:`TRUTH_COLUMNS`.
    """
    ids = [int(i) for i in ids]
    s = cfg.size
    eps = np.empty((len(ids), 3, s, s), dtype=np.float32)
    kap = np.empty((len(ids), s, s), dtype=np.float32)
    rows = []
    for k, i in enumerate(ids):
        sd = map_seed(seed, i)
        e, kp, t, _ = simulate_one(cfg, sd)
        eps[k], kap[k] = e, kp
        rows.append({"id": i, "seed": sd, **t})
    return eps, kap, rows


# ---------------------------------------------------------------- the command

SETTINGS_FILE = "simulate_settings.json"
TRUTH_FILE = "truth.parquet"
_CHUNKS = ".chunks"
# parameters that do not change a map: how many, how they are grouped, the set's name
_NOT_SETTINGS = ("name", "n_maps", "chunk_size", "seed")


def map_name(i: int) -> str:
    """File stem of map ``i``: zero-padded to 5 digits (``00042``)."""
    return f"{int(i):05d}"


@dataclass(frozen=True)
class SimChunk:
    """One work item of ``simulate``: maps ``ids`` of the set in ``out`` drawn with ``seed``."""

    out: str
    ids: tuple
    seed: int
    cfg: SimulateConfig


def simulate_chunk(item: SimChunk, seed: int) -> dict:
    """Draw and write one chunk of maps (``seed`` of the executor is unused: maps have their own).

    Each map is written atomically as float16 ``EPSILON/<id>.npy`` and
    ``KAPPA/<id>.npy``; the chunk's truth rows go to ``.chunks/<first>-<last id>.json``
    last, which marks the chunk done. A marked chunk is kept only when each of
    its map files is there with the size of its array (:func:`_chunk_complete`);
    otherwise (a map deleted or cut short) the whole chunk is drawn again, to
    the same maps.

    Returns
    -------
    dict
        ``{"skipped": bool, "n": maps in the chunk}``.
    """
    from astrotool.workspace import atomic_path, write_json_atomic

    out = Path(item.out)
    done = _chunk_file(item)
    if done.is_file() and _chunk_complete(item):
        return {"skipped": True, "n": len(item.ids)}
    eps, kap, rows = simulate_maps(item.cfg, item.ids, item.seed)
    for k, i in enumerate(item.ids):
        for sub, arr in (("EPSILON", eps[k]), ("KAPPA", kap[k])):
            a16 = arr.astype(np.float16)
            if not np.isfinite(a16).all():
                raise AstroError(f"map {map_name(i)} (seed {rows[k]['seed']}): {sub} is not finite in float16 "
                                 "(the model's parameters give values beyond +-65504)")
            with atomic_path(out / sub / f"{map_name(i)}.npy") as tmp:
                np.save(tmp, a16)
    write_json_atomic(done, rows)
    return {"skipped": False, "n": len(item.ids)}


def _chunk_complete(item: SimChunk) -> bool:
    """Whether every map file of the chunk exists with the size of its float16 array."""
    from astrotool_lens.kappa.submission import npy_size

    out, s = Path(item.out), item.cfg.size
    want = {"EPSILON": npy_size((3, s, s)), "KAPPA": npy_size((s, s))}
    for i in item.ids:
        for sub, size in want.items():
            try:
                if (out / sub / f"{map_name(i)}.npy").stat().st_size != size:
                    return False
            except OSError:
                return False
    return True


def _chunk_file(item: SimChunk) -> Path:
    """``.chunks/<first id>-<last id>.json``: the marker (and truth rows) of a finished chunk."""
    return Path(item.out) / _CHUNKS / f"{map_name(item.ids[0])}-{map_name(item.ids[-1])}.json"


def _settings(cfg: SimulateConfig, seed: int) -> dict:
    return {**cfg.model_dump(mode="json", exclude=set(_NOT_SETTINGS)), "seed": int(seed)}


def _prepare_folder(out: Path, settings: dict, n: int, overwrite: bool) -> int:
    """Empty the folder on ``overwrite``; else refuse one of other settings (naming the keys), of more maps
    than ``n`` or without a settings record. Then write the settings record; return the maps it holds."""
    import json
    import shutil

    from astrotool.errors import InputError
    from astrotool.made_with import replaces
    from astrotool.ml.training import settings_changes
    from astrotool.workspace import write_json_atomic

    f = out / SETTINGS_FILE
    if overwrite and out.is_dir() and (replaces(overwrite, f) or _recorded(f) != settings):
        shutil.rmtree(out)   # kept: a set of these settings that this overwrite began before it was stopped
    held = len(list((out / "KAPPA").glob("*.npy"))) if (out / "KAPPA").is_dir() else 0
    existed = f.is_file()   # looked at once: a record claimed by another task after this is compared below
    if existed:
        try:
            old = json.loads(f.read_text())
        except (OSError, ValueError) as exc:
            raise InputError(f, f"unreadable settings record ({exc}); use --overwrite to draw the set again") \
                from None
        changes = settings_changes(old, settings)
        if changes:
            raise AstroError(f"{out}: simulated with other settings ({'; '.join(changes)}); use --overwrite to "
                             "draw it again, or another --name")
        if held > n:
            raise AstroError(f"{out}: holds {held} maps, more than -n {n}; use --overwrite to draw {n}, or "
                             "another --name")
    elif out.is_dir() and not _own_layout(out):
        raise AstroError(f"{out}: exists without a {SETTINGS_FILE} of this command; use another --name or "
                         "--overwrite")
    out.mkdir(parents=True, exist_ok=True)
    if existed:   # compared above
        write_json_atomic(f, settings)
        return held
    old = _claim_settings(f, settings)   # --shard tasks starting together: one writes it, the others compare
    changes = settings_changes(old, settings) if old is not None else []
    if changes:
        raise AstroError(f"{out}: another task is simulating it with other settings ({'; '.join(changes)}); use "
                         "another --name")
    return held


def _recorded(f: Path) -> dict | None:
    """The settings record ``f`` (None: missing or unreadable)."""
    import json

    try:
        return json.loads(f.read_text())
    except (OSError, ValueError):
        return None


def _own_layout(out: Path) -> bool:
    """Whether a folder without a settings record holds only what ``simulate`` writes there (``KAPPA/``,
    ``EPSILON/``, ``.chunks/``, the truth table, hidden partial files, the record another task has just
    claimed): another task of the same command (``--shard``) that has just begun, or an interrupted one."""
    own = {"KAPPA", "EPSILON", _CHUNKS, TRUTH_FILE, SETTINGS_FILE}
    return all(p.name in own or p.name.startswith(".") for p in out.iterdir())


def _claim_settings(f: Path, settings: dict) -> dict | None:
    """Write the settings record ``f`` unless one exists, atomically and exclusively (a hard link of a
    written temporary file); return the record another task wrote first (None: this one wrote it)."""
    import json
    import os

    from astrotool.workspace import temp_sibling, write_json_atomic

    tmp = temp_sibling(f)
    try:
        write_json_atomic(tmp, settings)
        try:
            os.link(tmp, f)
        except FileExistsError:
            return json.loads(f.read_text())
        except OSError:   # no hard links on this file system: a plain atomic write
            os.replace(tmp, f)
        return None
    finally:
        tmp.unlink(missing_ok=True)


def simulate_command(ctx, cfg) -> dict:
    """``astro lens kappa simulate``: write a simulated set in the Datathon layout.

    Parameters
    ----------
    ctx : astrotool.context.Context
    cfg : astrotool_lens.kappa.config.KappaConfig
        ``cfg.simulate`` is read.

    Returns
    -------
    dict
        The emitted summary: name, path, n, added (maps the set did not hold),
        new (maps drawn, a redrawn short last chunk included), skipped, size,
        seed, kappa_range, seconds, maps_per_s (of the drawn maps).

    Raises
    ------
    astrotool.errors.AstroError
        The set exists with other settings (the keys named), with more maps than
        ``n``, or without a settings record, and ``--overwrite`` is off (exit 2);
        chunks that failed (the finished ones stay, a rerun resumes).
    """
    import json
    import time

    from astrotool.io.tables import write_parquet
    from astrotool.ml import commands as mc

    t0 = time.perf_counter()
    sc = cfg.simulate
    seed = ctx.stage_seed(sc.seed, "lens.kappa.simulate.seed")
    out = ctx.workspace.stage("lens", "kappa/sims") / sc.name
    settings = _settings(sc, seed)
    if ctx.overwrite and ctx.executor_options.shard:
        raise AstroError("--overwrite with --shard: every task would clear the maps the others draw; draw the set "
                         "again under another --name, or remove it once before the array job")
    held = _prepare_folder(out, settings, sc.n_maps, ctx.overwrite)
    (out / TRUTH_FILE).unlink(missing_ok=True)  # rewritten below for the set as it now is
    step = int(sc.chunk_size)
    items = [SimChunk(str(out), tuple(range(a, min(a + step, sc.n_maps))), seed, sc) for a in range(0, sc.n_maps, step)]
    results = ctx.map(simulate_chunk, items, "simulate kappa maps", keys=[map_name(it.ids[0]) for it in items],
                      need_all="chunk")
    skipped = sum(r["n"] for _, r in results if r["skipped"])
    new = sum(r["n"] for _, r in results if not r["skipped"])
    shard = ctx.executor_options.shard
    if shard:  # one Slurm task of several: the task that finds every chunk finished writes the truth table
        ran = {key for key, _ in results}
        missing = [it for it in items if map_name(it.ids[0]) not in ran and
                   not (_chunk_file(it).is_file() and _chunk_complete(it))]
        if missing:
            summary = {"name": sc.name, "path": str(out), "n": sum(r["n"] for _, r in results), "new": new,
                       "skipped": skipped, "missing": sum(len(it.ids) for it in missing),
                       "shard": "{}/{}".format(*shard)}  # as resolved (--shard auto: this task's)
            ctx.log.warning("%d of %d maps missing (other --shard tasks): %s is written once all exist (the last "
                            "task to finish writes it; or re-run the same command)", summary["missing"], sc.n_maps,
                            TRUTH_FILE)
            ctx.emit(summary)
            return summary
    rows = []
    for it in items:
        rows.extend(json.loads(_chunk_file(it).read_text()))
    current = {_chunk_file(it).name for it in items}
    for p in (out / _CHUNKS).glob("*.json"):  # markers of an earlier n or chunk_size
        if p.name not in current:
            p.unlink()
    table = {c: [r[c] for r in rows] for c in TRUTH_COLUMNS}
    table["name"] = [map_name(r["id"]) for r in rows]
    write_parquet(table, out / TRUTH_FILE, metadata={"settings": settings, "n": len(rows)},
                  command="lens kappa simulate", units=TRUTH_UNITS, descriptions=TRUTH_DESCRIPTIONS)
    seconds = time.perf_counter() - t0
    summary = {"name": sc.name, "path": str(out), "n": len(rows), "added": len(rows) - held, "new": new,
               "skipped": skipped, "size": sc.size,
               "seed": seed, "kappa_range": [round(min(table["kappa_min"]), 4), round(max(table["kappa_max"]), 4)],
               "seconds": round(seconds, 3), "maps_per_s": round(new / seconds, 1) if seconds > 0 and new else None}
    if shard:
        summary.update(missing=0, shard="{}/{}".format(*shard))
    mc.record(ctx, outputs=[out / TRUTH_FILE, out / SETTINGS_FILE])
    ctx.emit(summary)
    return summary
