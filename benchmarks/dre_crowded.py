"""DRE on a survey-like field: varying PSF, blends, every Sérsic index, error coverage.

Simulates ``--tiles`` tiles of the ``crowded`` preset (2048² px, 220 galaxies at
random positions, n in {1, 2, 4}, S/N 12-300, a Moffat PSF of FWHM 2.6 px at
one corner to 3.6 px at the other, 80 stars, a sky gradient) and runs the whole
chain (detect → psf → cuts → fit) in several configurations. For each it prints,
per group of galaxies (S/N, PSF region, Sérsic n, blended or not), the
fraction with LOGR within 0.115 dex, AX_RATIO within 0.1, FLUX within 5 % (and
the fraction the noise alone allows, ``noise``: :func:`noise_limit`) and INDEX
within 0.5, the fraction whose truth lies within 2σ of the estimate (σ = the
summary's ``_ERR``), and the median LOGR bias.

Baseline (named, in the same run): the same chain on a constant-PSF tile of
the same preset (``const-psf``), and DRE's original statistic
(``--statistic dre``). Goals (the DRE "real survey fields" issue): for
S/N >= 30, LOGR >= 0.95, AX_RATIO >= 0.90, FLUX >= 0.85 and INDEX >= 0.85; for
all galaxies truth within 2σ >= 0.93 in LOGR, AX_RATIO and FLUX; no LOGR bias
above 0.02 dex in any n bin.

The default seed (7301) is used by no test and no tuning.

Usage: ``python benchmarks/dre_crowded.py [--tiles 1] [--seed 7301] [--configs default,dre,const-psf]``
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GOAL = {"logr": 0.95, "q": 0.90, "flux": 0.85, "index": 0.85, "cover2": 0.93, "bias": 0.02}

CONFIGS = {
    # name: (extra --set options of `dre run`, simulate with a constant PSF)
    "default": ([], False),
    "dre": ([("dre.fit.statistic", '"dre"'), ("dre.fit.subgrid", "false")], False),
    "const-psf": ([], True),
    "mask": ([("dre.fit.neighbours", '"mask"')], False),
    "grid-only": ([("dre.fit.subgrid", "false")], False),
    "constant-fit": ([("dre.psf.var_degrees", "0")], False),
    "local-sky": ([("dre.fit.local_sky", "true")], False),
    "issue-grid": ([("dre.models.index0", "1.0"), ("dre.models.dindex", "1.0"), ("dre.models.nindex", "4")], False),
    "n4-grid": ([("dre.models.index0", "4.0"), ("dre.models.dindex", "0.0"), ("dre.models.nindex", "1")], False),
    "n-0.5-6": ([("dre.models.index0", "0.5"), ("dre.models.dindex", "0.5"), ("dre.models.nindex", "12")], False),
    "true-sky": ([], False),
    "core-psf": ([("dre.fit.core_psf", "true")], False),
}
"""``--configs`` choices: the tool as shipped; DRE's statistic on the grid; a constant-PSF field; neighbours
only masked; grid values; one PSF for the field; a local sky; the grids of the issue and of DRE; the tool
with the simulated sky subtracted instead of the estimated background (what the background costs); the objects
fit on crops wider than 64 px with their own PSF in the models' core."""


def astro(ws, *args, sets=()) -> float:
    """Run ``astro -w ws [--set k=v ...] args``; the wall time [s]."""
    cmd = [str(Path(sys.executable).with_name("astro")), "-q", "-w", str(ws)]
    for k, v in sets:
        cmd += ["--set", f"{k}={v}"]
    env = dict(os.environ, ASTRO_CONFIG=os.devnull)
    t0 = time.perf_counter()
    r = subprocess.run([*cmd, *map(str, args)], env=env, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd + list(map(str, args)))} failed:\n{r.stderr}")
    return time.perf_counter() - t0


def subtract_true_sky(ws) -> None:
    """Replace each tile's background-subtracted image (``_nb.fits``) by the tile minus its simulated sky."""
    import numpy as np
    from astropy.io import fits

    from astrotool_dre.simulate import sky_level_at

    for tile in sorted((Path(ws) / "dre" / "tiles").glob("*.fits")):
        with fits.open(tile) as hdul:
            img, hdr = hdul[0].data.astype(np.float64), hdul[0].header
        ny, nx = img.shape
        sky = sky_level_at(np.arange(1.0, nx + 1.0), nx, hdr["SKYLEVEL"], hdr.get("SKYGRAD", 0.0))
        nb = Path(ws) / "dre" / "sextracted" / tile.stem / f"{tile.stem}_nb.fits"
        with fits.open(nb, mode="update") as hdul:
            hdul[0].data = (img - sky[None, :]).astype(hdul[0].data.dtype)


def blended(truth):
    """Galaxies with another object closer than 5 (R_i + R_j) + 2 FWHM (what the isolated preset forbids)."""
    import numpy as np

    out = np.zeros(len(truth), bool)
    x, y = truth["X"].to_numpy(float), truth["Y"].to_numpy(float)
    r = np.where(truth["KIND"] == "galaxy", 10 ** truth["LOGR"].to_numpy(float), 0.0)
    fw = truth["PSF_FWHM"].to_numpy(float)
    for i in range(len(truth)):
        d = np.hypot(x - x[i], y - y[i])
        d[i] = np.inf
        out[i] = bool(np.any(d < 5.0 * (r[i] + r) + 2.0 * fw[i]))
    return out


def groups(pairs):
    """(label, boolean selection) of the table's rows."""
    snr, fw, n = pairs["SNR"], pairs["PSF_FWHM"], pairs["INDEX"]
    bright = snr >= 30
    rows = [("S/N >= 30", bright), ("all", snr > 0), ("S/N 12-30", ~bright), ("S/N 30-100", bright & (snr < 100)),
            ("S/N >= 100", snr >= 100),
            ("S/N >= 30, FWHM 2.6-2.95 px", bright & (fw < 2.95)),
            ("S/N >= 30, FWHM 3.3-3.7 px", bright & (fw >= 3.3))]
    rows += [(f"S/N >= 30, n = {v:g}", bright & (n == v)) for v in sorted(set(n))]
    rows += [("S/N >= 30, blended", bright & pairs["BLENDED"]), ("S/N >= 30, isolated", bright & ~pairs["BLENDED"])]
    return rows


def noise_limit(m) -> float:
    """FLUX within 5 % that the noise alone allows: the mean of erf(0.05 / (sqrt(2) σ)) over the galaxies,
    σ the statistical part of the relative ``FLUX_ERR`` (the floor taken out), marginal over the shape."""
    import numpy as np
    from scipy.special import erf

    from astrotool_dre.estimate import ERROR_FLOOR

    rel = (m["FLUX_ERR_FIT"] / m["FLUX_FIT"]).to_numpy(float)
    stat = np.sqrt(np.clip(rel ** 2 - ERROR_FLOOR["FLUX"] ** 2, 1e-12, None))
    return float(np.mean(erf(0.05 / (np.sqrt(2.0) * stat)))) if len(m) else float("nan")


def table(pairs) -> list[tuple]:
    import numpy as np

    from astrotool_dre.truth import recovery

    out = []
    for label, sel in groups(pairs):
        sub = pairs[sel.to_numpy()]
        if not len(sub):
            continue
        g = recovery(sub)
        m = sub[sub["matched"]]
        bias = float(np.median(m["LOGR_FIT"] - m["LOGR"])) if len(m) else float("nan")
        out.append((label, g["n_matched"], g["n_truth"], g["logr_frac"], g["q_frac"], g["flux_frac"],
                    noise_limit(m),
                    g["index_frac"], g.get("logr_in2sig", np.nan), g.get("ax_ratio_in2sig", np.nan),
                    g.get("flux_in2sig", np.nan), g.get("index_in2sig", np.nan), bias))
    return out


def config_names(text: str) -> list[str]:
    """``--configs``: a comma list of :data:`CONFIGS` names (argparse's error lists them)."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in CONFIGS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"{', '.join(unknown) or 'none'}: expected a comma list of "
                                         f"{', '.join(CONFIGS)}")
    return names


def verdict(rows) -> tuple[str, dict]:
    """The goals met or missed by one configuration's table, and its S/N >= 30 fractions."""
    import math

    by = {r[0]: r for r in rows}
    s30, every = by["S/N >= 30"], by["all"]
    got = {"logr": s30[3], "q": s30[4], "flux": s30[5], "index": s30[7]}
    cover = {"LOGR": every[8], "AX_RATIO": every[9], "FLUX": every[10]}
    bias = max((abs(r[-1]) for label, r in by.items() if label.startswith("S/N >= 30, n = ")
                and not math.isnan(r[-1])), default=float("nan"))
    parts = [f"{k.upper()} {v:.2f} {'>=' if v >= GOAL[k] else '<'} {GOAL[k]}" for k, v in got.items()]
    parts += [f"2σ {k} {v:.2f} {'>=' if v >= GOAL['cover2'] else '<'} {GOAL['cover2']}" for k, v in cover.items()]
    parts.append(f"|LOGR bias| {bias:.3f} {'<=' if bias <= GOAL['bias'] else '>'} {GOAL['bias']}")
    met = all(v >= GOAL[k] for k, v in got.items()) and all(v >= GOAL["cover2"] for v in cover.values()) \
        and bias <= GOAL["bias"]
    return f"goals {'MET' if met else 'NOT MET'}: " + "; ".join(parts) + f" (the noise allows FLUX {s30[6]:.2f})", got


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "),
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--tiles", type=int, default=1, help="crowded tiles simulated")
    ap.add_argument("--seed", type=int, default=7301, help="simulation seed (no test uses it)")
    ap.add_argument("--jobs", type=int, default=2, help="worker processes")
    ap.add_argument("--configs", type=config_names, default="default,dre,const-psf",
                    help=f"comma list of: {', '.join(CONFIGS)}")
    ap.add_argument("--keep", type=Path, default=None, help="keep the workspaces in this folder")
    args = ap.parse_args()
    tmp = Path(args.keep or tempfile.mkdtemp(prefix="dre-crowded-"))
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        return run(args, tmp)
    finally:
        if args.keep is None:
            shutil.rmtree(tmp, ignore_errors=True)


def run(args, tmp: Path) -> int:
    """Simulate the bases, run each configuration in ``tmp``, print its table, its verdict and the ratio to the
    constant-PSF baseline."""
    from astrotool_dre.truth import workspace_pairs

    bases, results = {}, {}
    for const in sorted({CONFIGS[name][1] for name in args.configs}):   # a constant-PSF base only when asked
        base = tmp / ("base-const" if const else "base")
        sets = [("dre.simulate.preset", '"crowded"')] + ([("dre.simulate.psf_fwhm", "3.1")] if const else [])
        if not (base / "dre" / "tiles").exists():
            astro(base, "--seed", args.seed, "--executor", "process", "-j", args.jobs, "dre", "simulate",
                  "-n", args.tiles, sets=sets)
        bases[const] = base
    print(f"{args.tiles} crowded tile(s), seed {args.seed}; goals: S/N >= 30 LOGR {GOAL['logr']}, q {GOAL['q']}, "
          f"flux {GOAL['flux']}, index {GOAL['index']}; all: truth within 2σ >= {GOAL['cover2']}")
    head = (f"{'group':<30} {'n':>8} {'LOGR':>5} {'q':>5} {'flux':>5} {'noise':>5} {'index':>5} | {'2σ:LOGR':>7} {'q':>5} "
            f"{'flux':>5} {'index':>5} | {'bias':>6}")
    for name in args.configs:
        sets, const = CONFIGS[name]
        ws = tmp / name
        if not (ws / "dre" / "tiles").exists():
            shutil.copytree(bases[const] / "dre" / "tiles", ws / "dre" / "tiles")
        dt = 0.0
        if name == "true-sky":  # detect, then the cuts are made from the tile minus the simulated sky
            dt = astro(ws, "--executor", "process", "-j", args.jobs, "dre", "detect", sets=sets)
            subtract_true_sky(ws)
        dt += astro(ws, "--executor", "process", "-j", args.jobs, "dre", "run", "--no-mosaics", sets=sets)
        pairs = workspace_pairs(ws)
        import pandas as pd

        truths = [pd.read_parquet(p) for p in sorted((ws / "dre" / "tiles" / "truth").glob("*_truth.parquet"))]
        flags = pd.concat([t.assign(BLENDED=blended(t))[t["KIND"] == "galaxy"] for t in truths], ignore_index=True)
        pairs["BLENDED"] = flags["BLENDED"].to_numpy()
        print(f"\n[{name}] {' '.join(f'{k}={v}' for k, v in sets) or 'as shipped'}"
              f"{' (constant PSF, FWHM 3.1 px)' if const else ''}: {dt:.0f} s for the chain")
        print(head)
        rows = table(pairs)
        for row in rows:
            label, nm, nt, *fr, bias = row
            print(f"{label:<30} {nm:>4}/{nt:<3} " + " ".join(f"{v:5.2f}" for v in fr[:5]) + " | "
                  + f"{fr[5]:7.2f} " + " ".join(f"{v:5.2f}" for v in fr[6:]) + f" | {bias:+6.3f}")
        line, results[name] = verdict(rows)
        print(line)
    base = results.get("const-psf")
    if base:   # the named baseline of the same run
        print("\nS/N >= 30 fractions as a ratio to the constant-PSF tile (const-psf):")
        for name, got in results.items():
            if name != "const-psf":
                print(f"  {name:<12} " + "  ".join(f"{k.upper()} {got[k] / base[k]:.3f}" if base[k] else
                                                  f"{k.upper()} n/a" for k in got))
    return 0


if __name__ == "__main__":
    sys.exit(main())
