"""Benchmark: `astro lens generate` (lensnet preset) against a minimal GalSim loop.

Baseline (named "minimal loop"): the smallest sequential GalSim script that
draws the same LensNet-like samples -- truncated Moffat PSF (beta 3, FWHM
2.85", trunc 5.7") and exponential galaxy built once, then per sample: PSF
ellipticity, intrinsic shape |e| ~ |N(0, 0.2)| <= 0.6, shear g in +-0.4,
sub-pixel offset <= 1 px, galaxy and PSF stamps drawn with GalSim's defaults,
Poisson noise at S/N 200 -- and writes nothing. One sample = galaxy + PSF
stamp.

Candidate: ``generate_dataset`` with the lensnet preset through the core's
process executor with ``--jobs 1`` (serial) and ``--jobs 2``, writing HDF5
shards and the Parquet truth table. Both are measured in this run (the
fastest of ``--repeat`` tries each, interleaved so background load hits both
alike), and the pixels of the 1-job and 2-job datasets are asserted identical.

Usage::

    python benchmarks/lens_generate.py [--n 3000] [--jobs 2] [--repeat 2]
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from _cli import count  # noqa: E402 - beside this script

SEED = 7331
"""Seed of both the baseline's and the candidate's samples (used by no test)."""


def minimal_loop(n: int, seed: int = SEED) -> np.ndarray:
    """The baseline: LensNet's sample drawn with profiles built once; returns the galaxy stamps."""
    import galsim

    rng = np.random.default_rng(seed)
    ud = galsim.BaseDeviate(seed)
    psf0 = galsim.Moffat(beta=3.0, fwhm=2.85, trunc=5.7)
    gal0 = galsim.Exponential(flux=1.0, half_light_radius=0.98 * psf0.half_light_radius)
    gim = galsim.ImageF(40, 40, scale=1.0)
    pim = galsim.ImageF(40, 40, scale=1.0)
    out = np.empty((n, 40, 40), np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in range(n):
            psf = psf0.shear(g1=rng.uniform(-0.02, 0.02), g2=rng.uniform(-0.02, 0.02))
            e = abs(rng.normal(0, 0.2))
            while e > 0.6:
                e = abs(rng.normal(0, 0.2))
            gal = gal0.shear(e=e, beta=rng.uniform(0, 2 * math.pi) * galsim.radians)
            gal = gal.shear(g1=rng.uniform(-0.4, 0.4), g2=rng.uniform(-0.4, 0.4))
            r, phi = math.sqrt(rng.uniform()), rng.uniform(0, 2 * math.pi)
            offset = (r * math.cos(phi), r * math.sin(phi))
            galsim.Convolve([psf, gal]).drawImage(gim, offset=offset)
            gim.addNoiseSNR(galsim.PoissonNoise(ud, sky_level=1e6), 200)
            psf.drawImage(pim, offset=offset)
            out[i] = gim.array
    return out


def candidate(n: int, jobs: int, out_dir: Path, seed: int = SEED) -> Path:
    """`astro lens generate --preset lensnet` through the core executor; returns the dataset folder."""
    from astrotool.executors import ExecutorOptions, run_items
    from astrotool_lens.config import GenerateConfig
    from astrotool_lens.generate import generate_dataset

    cfg = GenerateConfig.model_validate({"preset": "lensnet", "name": "bench", "n_stamps": n,
                                         "shard_size": max(50, math.ceil(n / (4 * jobs)))})
    opts = ExecutorOptions(kind="serial" if jobs == 1 else "process", jobs=jobs)

    def mapper(fn, items, desc="", keys=None):
        results, failures = run_items(fn, items, keys, opts, seed)
        if failures:
            raise RuntimeError(f"{failures[0].key}: {failures[0].error}")
        return results

    if out_dir.exists():
        shutil.rmtree(out_dir)
    generate_dataset(cfg, out_dir, seed, mapper=mapper)
    return out_dir


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    ap.add_argument("--n", type=count(), default=3000, help="samples per run")
    ap.add_argument("--jobs", type=count(2), default=2, help="workers of the parallel run, compared with --jobs 1")
    ap.add_argument("--repeat", type=count(), default=2, help="tries per configuration (the fastest counts)")
    args = ap.parse_args(argv)

    from astrotool_lens.data import ShearDataset

    tmp = Path(tempfile.mkdtemp(prefix="lens-bench-"))
    times: dict[str, list[float]] = {"minimal loop": [], "generate --jobs 1": [], f"generate --jobs {args.jobs}": []}
    try:
        minimal_loop(20)  # warm GalSim's caches like the candidate's first shard does
        for _ in range(args.repeat):
            t = time.perf_counter()
            minimal_loop(args.n)
            times["minimal loop"].append(time.perf_counter() - t)
            t = time.perf_counter()
            candidate(args.n, args.jobs, tmp / f"j{args.jobs}")
            times[f"generate --jobs {args.jobs}"].append(time.perf_counter() - t)
            t = time.perf_counter()
            candidate(args.n, 1, tmp / "j1")
            times["generate --jobs 1"].append(time.perf_counter() - t)
        g1, p1 = ShearDataset(tmp / "j1").load_stamps()
        g2, p2 = ShearDataset(tmp / f"j{args.jobs}").load_stamps()
        identical = bool(np.array_equal(g1, g2) and np.array_equal(p1, p2))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    best = {k: min(v) for k, v in times.items()}
    rate = {k: args.n / v for k, v in best.items()}
    base = rate["minimal loop"]
    print(f"lens generate benchmark: {args.n} LensNet samples (40x40 galaxy + PSF stamp), "
          f"best of {args.repeat}")
    for k in times:
        print(f"  {k:22s} {best[k]:7.2f} s  {rate[k]:8.1f} samples/s  x{rate[k] / base:.2f} vs minimal loop")
    print(f"  pixels identical for --jobs 1 and --jobs {args.jobs}: {identical}")
    print(json.dumps({"benchmark": "lens_generate", "n": args.n, "samples_per_s": rate,
                      "ratio_vs_minimal_loop": {k: v / base for k, v in rate.items()},
                      "identical_pixels": identical}))
    assert identical, "pixels differ between --jobs 1 and --jobs N"
    return 0


if __name__ == "__main__":
    sys.exit(main())
