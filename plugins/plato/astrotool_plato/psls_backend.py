"""The PSLS backend of ``astro plato simulate``: PLATO's own light-curve simulator, with injected events.

PSLS (Samadi et al. 2019, A&A 624, A117; PyPI ``psls``) simulates a PLATO star
as 4 camera groups x 6 cameras at 25 s: granulation (Kallinger et al. 2014),
stochastic activity, the random noise of realistic simulated light curves for
the star's magnitude (``PLATO_SIMU``), and the instrument's *systematics*:
drifts and the flux steps of aperture-mask updates inside the quarter, which a
transit finder must not report. Oscillations are off (their grids are not
shipped); PSLS's own transits are periodic and edge-on only, so it is run
without them and this module injects the same transits and binary eclipses as
the built-in simulator (:func:`astrotool_plato.simulate.draw_params`) into the
mean light curve: ``flux = (1 + psls_ppm * 1e-6) * (1 - deficit)``.

The PyPI wheel has no data files; its source distribution holds the YAML
template, a main-sequence stellar model and the systematics tables.
:func:`data_dir` uses ``psls_data`` when set, else a copy in the user's cache
(``~/.cache/astrotool/psls-<version>``), unpacked from the source distribution
that ``pip download`` fetches from the package index the first time.

Each curve is one PSLS run (about 3 s per 36.7 d), seeded from ``(seed,
index)``: its ``MasterSeed`` and its V magnitude (uniform in ``magnitude``).
The time stamps are PSLS's, with its periodic gaps (20 min every 5 d) left out.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np

from astrotool.errors import AstroError
from astrotool.workspace import atomic_dir

__docformat__ = "numpy"

DATA_FILES = ("psls.yaml", "models", "systematics")
"""Files and folders of PSLS's data that a PSLS data folder must hold."""


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("psls")
    except PackageNotFoundError:
        raise AstroError("the PSLS backend needs the psls package: pip install psls") from None


def data_dir(configured: str = "") -> Path:
    """The folder holding PSLS's ``psls.yaml``, ``models/`` and ``systematics/``.

    Parameters
    ----------
    configured : str
        ``plato.simulate.psls_data``; empty: the user cache, filled from the
        source distribution on first use.

    Raises
    ------
    astrotool.errors.AstroError
        psls is not installed, the configured folder lacks the files, or the
        source distribution cannot be fetched (the message says how to do it by hand).
    """
    if configured:
        p = Path(configured).expanduser()
        missing = [f for f in DATA_FILES if not (p / f).exists()]
        if missing:
            raise AstroError(f"{p}: not a PSLS data folder (no {', '.join(missing)}); unpack the psls source "
                             "distribution (pip download psls --no-deps --no-binary :all:) and point "
                             "plato.simulate.psls_data at its folder")
        return p
    ver = _version()
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "astrotool" / f"psls-{ver}"
    if all((cache / f).exists() for f in DATA_FILES):
        return cache
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", f"psls=={ver}", "--no-deps", "--no-binary", ":all:",
               "--quiet", "-d", tmp]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        sdists = sorted(Path(tmp).glob("psls-*.tar.gz"))
        if proc.returncode != 0 or not sdists:
            raise AstroError(f"could not fetch the psls {ver} source distribution for its data files "
                             f"({proc.stderr.strip()[-300:] or 'no file'}); fetch it by hand with "
                             f"`pip download psls=={ver} --no-deps --no-binary :all:`, unpack it and set "
                             "plato.simulate.psls_data to its folder")
        with atomic_dir(cache) as staging, tarfile.open(sdists[0]) as tar:
            top = tar.getnames()[0].split("/")[0]
            members = [m for m in tar.getmembers() if m.isfile() and ".." not in m.name.split("/") and
                       any(m.name == f"{top}/{f}" or m.name.startswith(f"{top}/{f}/") for f in DATA_FILES)]
            for m in members:
                m.name = m.name[len(top) + 1:]
            # members were chosen by name above (regular files under the three data folders); the "data"
            # filter (Python >= 3.11.4) also refuses links and absolute paths where it exists
            safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(staging, members=members, **safe)
    return cache


def _yaml(template: dict, data: Path, duration_days: float, cadence_s: float, master_seed: int, mag: float,
          gaps: bool, systematics: str) -> dict:
    """The PSLS configuration of one curve (a copy of the template with our settings)."""
    import copy

    c = copy.deepcopy(template)
    obs = c["Observation"]
    obs["QuarterDuration"] = [float(duration_days)]
    obs["MasterSeed"] = int(master_seed)
    obs["Gaps"]["Enable"] = int(gaps)
    obs["Gaps"]["InterQuarterGapDuration"] = 0.0
    ins = c["Instrument"]
    ins["Sampling"] = float(cadence_s)
    ins["IntegrationTime"] = min(float(ins.get("IntegrationTime", 21.0)), float(cadence_s))
    ins["Systematics"]["Enable"] = int(bool(systematics))
    if systematics:
        ins["Systematics"]["Table"] = str(data / "systematics" / systematics)
    else:   # PLATO_SIMU, the simulated curves' noise, needs their systematics: PSLS's noise table for the magnitude
        ins["RandomNoise"]["Type"] = "PLATO_SCALING"
    c["Star"]["Mag"] = float(mag)
    c["Star"]["ModelDir"] = str(data / "models") + os.sep
    c["Oscillations"]["Enable"] = 0
    c["Transit"]["Enable"] = 0
    return c


def run_psls(config: dict, workdir: Path) -> tuple[np.ndarray, np.ndarray]:
    """Run PSLS once in ``workdir``; return ``(time [d] from the first sample, relative flux [ppm])``."""
    import h5py
    import psls
    import yaml

    path = workdir / "psls.yaml"
    path.write_text(yaml.safe_dump(config))
    argv = sys.argv
    sys.argv = ["psls", "--hdf5", "-o", str(workdir) + os.sep, str(path)]
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            psls.main()
    except SystemExit as exc:
        if exc.code not in (None, 0):
            raise AstroError(f"PSLS stopped with status {exc.code}") from None
    finally:
        sys.argv = argv
    out = sorted(workdir.glob("*.hdf5"))
    if not out:
        raise AstroError(f"PSLS wrote no light curve in {workdir}")
    with h5py.File(out[0], "r") as f:
        t = np.asarray(f["TIME_MEAN"][:], np.float64)
        lc = np.asarray(f["MEAN_LC"][:, 0], np.float64)
    for p in workdir.iterdir():
        p.unlink()
    return (t - t[0]) / 86400.0, lc


def simulate_curves(indices, seed: int, cfg):
    """Simulate curves with PSLS and inject their events.

    Parameters
    ----------
    indices : iterable of int
        Curve numbers.
    seed : int
        Base seed of the simulation.
    cfg : astrotool_plato.config.SimulateConfig
        ``backend = "psls"`` settings.

    Returns
    -------
    times : list of numpy.ndarray
        Sample times of each curve [d] (PSLS's gaps left out).
    fluxes : list of numpy.ndarray
        Normalised flux (float32).
    params : list of CurveParams
        With ``snr`` from the curve's own point-to-point noise.
    """
    import yaml

    from astrotool.seeding import derive_seed

    from astrotool_plato import simulate as sim
    from astrotool_plato.lightcurves import noise_sigma

    data = data_dir(cfg.psls_data)
    template = yaml.safe_load((data / "psls.yaml").read_text())
    times, fluxes, params = [], [], []
    with tempfile.TemporaryDirectory(prefix="psls-") as tmp:
        for index in indices:
            par = sim.draw_params(index, seed, cfg)
            rng = np.random.default_rng(derive_seed(seed, index, "psls-star"))
            mag = float(rng.uniform(*cfg.magnitude))
            conf = _yaml(template, data, cfg.duration_days, cfg.cadence_s, derive_seed(seed, index, "psls") % 2**31,
                         mag, cfg.psls_gaps, cfg.psls_systematics)
            t, lc = run_psls(conf, Path(tmp))
            deficit = np.zeros_like(t)
            if par.has_transit:
                deficit += sim.transit_deficit(t, par.t0, par.duration, par.depth, par.impact, cfg.limb_darkening,
                                               cfg.shape, par.period)
                sigma = noise_sigma(lc)
                points = par.duration * 3600.0 / cfg.cadence_s * par.n_transits
                par.snr = float(par.depth / sigma * math.sqrt(points)) if sigma > 0 else math.inf
            if par.eclipse:
                deficit += sim.eclipse_deficit(t, par.eclipse_t0, par.eclipse_duration, par.eclipse_depth,
                                               par.eclipse_secondary, par.eclipse_period, par.eclipse_flat)
            times.append(t)
            fluxes.append(((1.0 + lc * 1e-6) * (1.0 - deficit)).astype(np.float32))
            params.append(par)
    return times, fluxes, params
