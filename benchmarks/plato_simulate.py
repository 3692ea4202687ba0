"""Benchmark: light curves/s of ``astro plato simulate`` against a per-cadence Python loop.

Prints, all measured in this run:

(a) light curves/s of the plugin's simulator (``simulate_curves``: Harvey red
    noise synthesised by FFT, spots, transit and white noise as array operations),
    in this process, computing only;
(b) light curves/s of the baseline "per-cadence loop": the same light-curve model
    written sample by sample in plain Python (an AR(1) recursion for the
    granulation, which is the exponent-2 Harvey process of the defaults; spot
    sinusoids; the limb-darkened transit profile evaluated with ``math``; white
    noise), with the random numbers drawn beforehand by numpy so that only the
    model itself runs per cadence; and the ratio (a)/(b). A sanity line checks
    that both produce the same transit deficit and noise statistics;
(c) ``astro plato simulate`` end to end through the CLI (Parquet writing
    included) with ``-j 1`` and with ``--executor process -j 2``, their rates and
    ratio, asserting that the two runs wrote the same files with the same content
    (tables and the simulation's metadata; the provenance records differ in time and command line).

Run: ``python benchmarks/plato_simulate.py [--curves 48] [--baseline-curves 6] [--cli-curves 256]
[--cli-repeat 2]``; ``--quick`` is a smoke run of a few seconds (sizes too small to judge the ratios).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
for extra in (ROOT, ROOT / "plugins" / "plato"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

from astrotool_plato import simulate as S  # noqa: E402
from astrotool_plato.config import SimulateConfig  # noqa: E402
from _cli import count  # noqa: E402 - beside this script

QUICK = {"curves": 8, "baseline_curves": 2, "cli_curves": 32, "cli_repeat": 1}
"""Sizes of ``--quick`` (each applies unless the option is given)."""

BASELINE = "per-cadence Python loop (AR(1) granulation, spots, limb-darkened transit, white noise)"


# ---------------------------------------------------------------------------- baseline

def _overlap_area_scalar(p: float, z: float) -> float:
    """Area of overlap of a disc of radius ``p`` at distance ``z`` with the unit disc (scalar)."""
    if z <= 1.0 - p:
        return math.pi * p * p
    if z >= 1.0 + p or z <= abs(1.0 - p):
        return 0.0
    k0 = math.acos(min(1.0, max(-1.0, (p * p + z * z - 1.0) / (2.0 * p * z))))
    k1 = math.acos(min(1.0, max(-1.0, (1.0 - p * p + z * z) / (2.0 * z))))
    root = math.sqrt(max(4.0 * z * z - (1.0 + z * z - p * p) ** 2, 0.0))
    return p * p * k0 + k1 - 0.5 * root


def _deficit_scalar(t: float, par, cfg, p: float, b: float, x14: float) -> float:
    """Transit deficit at one time ``t`` [d] (same geometry as the plugin's profile)."""
    if not par.has_transit:
        return 0.0
    t14 = par.duration / 24.0
    dt = t - par.t0
    if math.isfinite(par.period):
        dt = (dt + 0.5 * par.period) % par.period - 0.5 * par.period
    if abs(dt) >= 0.5 * t14:
        return 0.0
    if cfg.shape == "trapezoid":
        x23 = math.sqrt(max((1.0 - p) ** 2 - b * b, 0.0))
        t23 = t14 * x23 / x14
        return par.depth * 1e-6 * min(1.0, max(0.0, (0.5 * t14 - abs(dt)) / (0.5 * (t14 - t23))))
    u1, u2 = cfg.limb_darkening
    x = dt * (2.0 * x14 / t14)
    z = math.sqrt(b * b + x * x)
    r = z if z <= 1.0 - p else 0.5 * (z - p + 1.0)
    r = min(1.0, max(0.0, r))
    one_minus_mu = 1.0 - math.sqrt(1.0 - r * r)
    intensity = 1.0 - u1 * one_minus_mu - u2 * one_minus_mu ** 2
    return intensity * _overlap_area_scalar(p, z) / (math.pi * (1.0 - u1 / 3.0 - u2 / 6.0))


def baseline_curve(par, seed: int, cfg, parts: bool = False):
    """One light curve computed cadence by cadence in plain Python (the baseline).

    Parameters
    ----------
    par : astrotool_plato.simulate.CurveParams
        Parameters of the curve (drawn by the plugin, so both compute the same curves).
    seed : int
        Base seed (the curve's noise stream is ``curve_seeds(seed, index)[1]``).
    cfg : astrotool_plato.config.SimulateConfig
        Simulator settings.
    parts : bool
        Also return the red noise and the transit deficit (sanity checks).

    Returns
    -------
    numpy.ndarray or tuple
        Flux (float32, like the plugin's), or ``(flux, red, deficit)`` with ``parts``.
    """
    n = S.n_samples(cfg)
    step = cfg.cadence_s / S.SECONDS_PER_DAY
    rng = np.random.default_rng(S.curve_seeds(seed, par.index)[1])
    normals = rng.standard_normal(2 * n + 1).tolist()        # drawn up front: only the model loops
    phi = math.exp(-cfg.cadence_s / (cfg.granulation_timescale_min * 60.0))
    rms = cfg.granulation_ppm * 1e-6
    innovation = rms * math.sqrt(1.0 - phi * phi)
    white = cfg.noise_ppm * 1e-6
    amp, harm = par.rotation_amplitude * 1e-6, par.rotation_harmonic
    omega = 2.0 * math.pi / par.rotation_period if amp > 0 else 0.0
    p = b = x14 = 0.0
    if par.has_transit:
        p, b = S.transit_geometry(par.depth, par.impact, cfg.limb_darkening, cfg.shape)
        x14 = math.sqrt((1.0 + p) ** 2 - b * b)
    flux = [0.0] * n
    red = [0.0] * n if parts else None
    deficit = [0.0] * n if parts else None
    g = rms * normals[2 * n]                                  # stationary start
    for k in range(n):
        t = k * step
        g = phi * g + innovation * normals[k]
        spots = amp * (math.sin(omega * t + par.rotation_phase1)
                       + harm * math.sin(2.0 * omega * t + par.rotation_phase2)) if amp > 0 else 0.0
        d = _deficit_scalar(t, par, cfg, p, b, x14)
        flux[k] = (1.0 + spots + g) * (1.0 - d) + white * normals[n + k]
        if parts:
            red[k], deficit[k] = g, d
    flux = np.asarray(flux, dtype=np.float32)
    return (flux, np.asarray(red), np.asarray(deficit)) if parts else flux


def _lag1(x: np.ndarray) -> float:
    x = x - x.mean()
    return float(np.dot(x[:-1], x[1:]) / np.dot(x, x))


def sanity(cfg, seed: int) -> str:
    """Compare the baseline's transit deficit and red noise with the plugin's on a few curves."""
    max_diff, idx = 0.0, [i for i in range(64) if S.draw_params(i, seed, cfg).has_transit][:3]
    time_grid = S.time_grid(cfg)
    red_b, red_p = [], []
    for i in idx:
        par = S.draw_params(i, seed, cfg)
        _, red, deficit = baseline_curve(par, seed, cfg, parts=True)
        ref = S.transit_deficit(time_grid, par.t0, par.duration, par.depth, par.impact, cfg.limb_darkening,
                                cfg.shape, par.period)
        max_diff = max(max_diff, float(np.max(np.abs(deficit - ref))))
        red_b.append(red)
        red_p.append(S.harvey_noise(time_grid.size, cfg.cadence_s, cfg.granulation_ppm,
                                    cfg.granulation_timescale_min, cfg.granulation_exponent,
                                    np.random.default_rng(i)))
    expect = math.exp(-cfg.cadence_s / (cfg.granulation_timescale_min * 60.0))
    return (f"    sanity: transit deficit baseline vs plugin max |diff| {max_diff:.1e} on {len(idx)} curves; "
            f"red noise rms {1e6 * np.std(red_b):.1f} / {1e6 * np.std(red_p):.1f} ppm "
            f"(asked {cfg.granulation_ppm:g}), lag-1 correlation {np.mean([_lag1(r) for r in red_b]):.4f} / "
            f"{np.mean([_lag1(r) for r in red_p]):.4f} (AR(1) {expect:.4f})")


# ---------------------------------------------------------------------------- CLI runs

def run_cli(workspace: Path, jobs: int, n_curves: int, chunk: int, seed: int) -> tuple[float, float]:
    """Run ``astro plato simulate`` once; return its wall time and CPU time (all its processes) [s]."""
    import resource

    astro = str(Path(sys.executable).with_name("astro"))
    executor = ["--executor", "process", "-j", str(jobs)] if jobs > 1 else ["-j", "1"]
    cmd = [astro, "-q", "-w", str(workspace), *executor, "--seed", str(seed),
           "plato", "simulate", "-n", str(n_curves), "--chunk-size", str(chunk)]
    env = dict(os.environ, ASTRO_CONFIG=os.devnull)
    subprocess.run([astro, "-q", "init", str(workspace)], check=True, stdout=subprocess.DEVNULL, env=env)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def same_outputs(a: Path, b: Path) -> int:
    """Assert that two workspaces hold the same plato files with the same content; return the file count."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    files_a = sorted(p.relative_to(a) for p in (a / "plato").rglob("*.parquet"))
    files_b = sorted(p.relative_to(b) for p in (b / "plato").rglob("*.parquet"))
    assert files_a == files_b and files_a, f"different files: {files_a} vs {files_b}"
    for rel in files_a:
        ta, tb = pq.read_table(a / rel), pq.read_table(b / rel)
        pa_, pb = (json.loads(t.schema.metadata[b"astrotool"]) for t in (ta, tb))
        assert pa_ == pb, f"{rel}: the simulation's metadata differs"
        assert ta.column_names == tb.column_names and ta.num_rows == tb.num_rows, f"{rel}: other columns or rows"
        for name in ta.column_names:       # NaN-aware (labels hold NaN for curves without transit)
            if pa.types.is_list(ta.schema.field(name).type) or pa.types.is_large_list(ta.schema.field(name).type):
                for i, (x, y) in enumerate(zip(ta[name].to_pylist(), tb[name].to_pylist())):  # row by row
                    np.testing.assert_array_equal(np.asarray(x, dtype=float), np.asarray(y, dtype=float),
                                                  err_msg=f"{rel}: {name}[{i}]")
            else:
                np.testing.assert_array_equal(ta[name].to_numpy(zero_copy_only=False),
                                              tb[name].to_numpy(zero_copy_only=False), err_msg=str(rel))
    return len(files_a)


# ---------------------------------------------------------------------------- main

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    ap.add_argument("--curves", type=count(), default=48, help="curves simulated by the plugin in (a)")
    ap.add_argument("--baseline-curves", type=count(), default=6, help="curves computed by the baseline in (b)")
    ap.add_argument("--cli-curves", type=count(), default=256, help="curves of each CLI run in (c)")
    ap.add_argument("--cli-repeat", type=count(), default=2, help="runs of each CLI variant (best is kept)")
    ap.add_argument("--seed", type=int, default=7321, help="used by no test")
    ap.add_argument("--quick", action="store_true", help="smoke-run sizes: " + ", ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in QUICK.items()))
    args = ap.parse_args(argv)
    if args.quick:
        for key, value in QUICK.items():
            if getattr(args, key) == ap.get_default(key):
                setattr(args, key, value)

    cfg = SimulateConfig()                      # packaged defaults: 10 d at 25 s
    n = S.n_samples(cfg)
    print(f"# plato simulate benchmark  (numpy {np.__version__}, {os.cpu_count()} CPUs visible; "
          f"load average {os.getloadavg()[0]:.2f} at start: other processes share these CPUs)")
    print(f"curves of {cfg.duration_days:g} d at {cfg.cadence_s:g} s = {n} samples; "
          f"granulation {cfg.granulation_ppm:g} ppm, tau {cfg.granulation_timescale_min:g} min, "
          f"exponent {cfg.granulation_exponent:g}; white noise {cfg.noise_ppm:g} ppm; shape {cfg.shape}")

    S.simulate_curves(range(2), args.seed, cfg)                 # warm-up (FFT plans, imports)
    best = math.inf
    for _ in range(2):
        t = time.perf_counter()
        S.simulate_curves(range(args.curves), args.seed, cfg)
        best = min(best, time.perf_counter() - t)
    rate = args.curves / best
    print(f"(a) plugin simulator (simulate_curves, 1 process): {rate:.1f} curves/s "
          f"({args.curves} curves in {best:.2f} s, best of 2)")

    params = [S.draw_params(i, args.seed, cfg) for i in range(args.baseline_curves)]
    t = time.perf_counter()
    for par in params:
        baseline_curve(par, args.seed, cfg)
    t_base = time.perf_counter() - t
    rate_base = args.baseline_curves / t_base
    ratio = rate / rate_base
    print(f"(b) baseline {BASELINE}: {rate_base:.2f} curves/s ({args.baseline_curves} curves in {t_base:.2f} s); "
          f"plugin/baseline = {ratio:.0f}x")
    if cfg.granulation_exponent == 2.0:
        print(sanity(cfg, args.seed))

    with tempfile.TemporaryDirectory(prefix="astro-bench-plato-") as tmp:
        chunk = max(1, args.cli_curves // 8)
        times = {1: [], 2: []}
        for rep in range(args.cli_repeat):      # alternate, keep the best: the CPUs are shared
            for jobs in (1, 2):
                times[jobs].append(run_cli(Path(tmp) / f"j{jobs}-{rep}", jobs, args.cli_curves, chunk, args.seed))
        (t1, c1), (t2, c2) = min(times[1]), min(times[2])
        nfiles = same_outputs(Path(tmp) / "j1-0", Path(tmp) / "j2-0")
    r1, r2 = args.cli_curves / t1, args.cli_curves / t2
    print(f"(c) astro plato simulate -n {args.cli_curves} --chunk-size {chunk} (Parquet included, CLI start-up "
          f"included, best of {args.cli_repeat}): -j 1 {r1:.1f} curves/s ({t1:.1f} s wall, {c1:.1f} s CPU), "
          f"--executor process -j 2 {r2:.1f} curves/s ({t2:.1f} s wall, {c2:.1f} s CPU); -j 2 / -j 1 = "
          f"{r2 / r1:.2f}x; {nfiles} output files identical in content")
    print(f"plato simulate: {rate:.1f} light curves/s = {ratio:.0f}x the {BASELINE} "
          f"({rate_base:.2f} curves/s); CLI -j 2 / -j 1 = {r2 / r1:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
