"""DRE recovery through the whole chain (simulate → detect → psf → cuts → fit).

Simulated 1024² tiles with stars (the PSF is built from them, as on real data)
and isolated de Vaucouleurs galaxies with S/N > 30. For each configuration it
prints the fraction of galaxies with LOGR within one grid step (0.115 dex),
AX_RATIO within 0.1, ANGLE within 15° (axis ratio < 0.7) and FLUX within 5 %,
the minima on the radius grid's edges, and how many fitted stars are flagged.

The configurations use DRE's grid (n = 4 only), as the anchor did; the last
row fits the same tiles on the default grid (every index 0.5-6), where the
index is free and its degeneracy with radius and flux widens both.

Baseline (named, measured once on this machine with the original DRE on such a
tile and fixed below in ``DRE_ORIGINAL``): LOGR 100 %, AX_RATIO 86 %, ANGLE 97 %, no flux.
Goal: LOGR >= 98 %, AX_RATIO >= 95 %, ANGLE >= 97 %, FLUX within 5 % >= 95 %.
The default seed (7311) is used by no test and no tuning.

Usage: ``python benchmarks/dre_recovery.py [--tiles 4] [--seed 7311]``
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DRE_ORIGINAL = {"logr_frac": 1.00, "q_frac": 0.86, "angle_frac": 0.97, "flux_frac": None}
GOAL = {"logr_frac": 0.98, "q_frac": 0.95, "angle_frac": 0.97, "flux_frac": 0.95}


def astro(*args) -> None:
    astro_bin = str(Path(sys.executable).with_name("astro"))
    env = dict(os.environ, ASTRO_CONFIG=os.devnull)
    r = subprocess.run([astro_bin, "-q", *map(str, args)], env=env, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"astro {' '.join(map(str, args))} failed:\n{r.stderr}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    ap.add_argument("--tiles", type=int, default=4)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=7311, help="seed of the simulated tiles")
    args = ap.parse_args()
    # DRE's grid (n = 4 only), as the anchor; then the default grid (every index 0.5-6) on the same tiles
    dre_grid = ["--set", "dre.models.index0=4.0", "--set", "dre.models.dindex=0.0", "--set", "dre.models.nindex=1"]
    configs = [("chi2", "auto", "auto", dre_grid), ("dre", "auto", "auto", dre_grid),
               ("chi2", "photutils", "photutils", dre_grid), ("chi2", "auto", "auto", [])]
    tmp = Path(tempfile.mkdtemp(prefix="dre-recovery-"))
    try:
        return run_configs(args, configs, tmp)
    finally:   # the temporary workspaces hold a 2 GB model cube: never left behind
        shutil.rmtree(tmp, ignore_errors=True)


def run_configs(args, configs, tmp: Path) -> int:
    """Simulate the tiles under ``tmp``, run each configuration on a copy and print the table."""
    from astrotool_dre.detect_sextractor import find_sextractor
    from astrotool_dre.psf import find_psfex
    from astrotool_dre.truth import workspace_recovery

    base = tmp / "base"
    astro("-w", base, "--seed", args.seed, "--executor", "process", "-j", args.jobs,
          "--set", "dre.cuts.max_stellarity=1.0", "dre", "simulate", "-n", args.tiles)
    print(f"{args.tiles} tiles of 1024² px (seed {args.seed}), 40 de Vaucouleurs galaxies (S/N 30-300) and 30 stars each; "
          f"source-extractor: {find_sextractor() or 'no'}, psfex: {find_psfex() or 'no'}")
    header = f"{'statistic':<9} {'detect/psf':<22} {'LOGR':>6} {'q':>6} {'angle':>6} {'flux5%':>6} " \
             f"{'edges':>5} {'stars flagged':>13} {'time':>6}"
    print(header)
    rows = []
    for statistic, det, psf, grid in configs:
        ws = tmp / f"{statistic}-{det}{'' if grid else '-every-index'}"
        shutil.copytree(base / "dre" / "tiles", ws / "dre" / "tiles")
        if (base / "dre" / "models").exists():
            shutil.copytree(base / "dre" / "models", ws / "dre" / "models")
        t0 = time.perf_counter()
        astro("-w", ws, "--executor", "process", "-j", args.jobs, "--set", "dre.cuts.max_stellarity=1.0",
              "--set", f'dre.detect.engine="{det}"', "--set", f'dre.psf.engine="{psf}"', *grid,
              "dre", "run", "--no-mosaics", "--statistic", statistic)
        dt = time.perf_counter() - t0
        if not (base / "dre" / "models").exists():
            shutil.copytree(ws / "dre" / "models", base / "dre" / "models")
        g, s = workspace_recovery(ws)
        rows.append((statistic, det, g))
        label = det + "/" + psf + ("" if grid else ", n 0.5-6")
        print(f"{statistic:<9} {label:<22} {g['logr_frac']:6.1%} {g['q_frac']:6.1%} "
              f"{g['angle_frac']:6.1%} {g['flux_frac']:6.1%} {g['edge_minima']:5d} "
              f"{s['n_flagged']:>6}/{s['n_stars_fitted']:<6} {dt:5.0f}s")
    g = rows[0][2]
    print(f"\nmatched {g['n_matched']}/{g['n_truth']} galaxies; median ΔLOGR {g['median_dlogr']:+.3f} dex, "
          f"Δq {g['median_dq']:+.3f}, ΔFLUX {g['median_dflux']:+.2%}")
    d = DRE_ORIGINAL
    print(f"original DRE on such a tile (anchor): LOGR {d['logr_frac']:.1%}, q {d['q_frac']:.1%}, "
          f"angle {d['angle_frac']:.1%}, no flux output")
    ok = all(g[k] >= v for k, v in GOAL.items())
    print(f"default (chi2, {rows[0][1]}): q {g['q_frac']:.1%} vs DRE {d['q_frac']:.1%} -> "
          f"{'meets' if ok else 'misses'} the goal (LOGR>=98%, q>=95%, angle>=97%, flux>=95%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
