"""Startup time of ``astro --help`` against ``python -c "import typer, rich"``.

Both are measured in the same run, alternating, as the median wall time of
``--repeat`` runs each. Goal: ratio <= 1.5 (the help must not import numpy,
torch, galsim, astropy, ... and plugins are mounted lazily).

Usage: ``python benchmarks/startup.py [--repeat 21]``
"""

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _cli import count  # noqa: E402 - beside this script

GOAL = 1.5


def wall(cmd: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, check=True)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    ap.add_argument("--repeat", type=count(), default=21, help="timed runs of each (the median counts)")
    args = ap.parse_args()
    astro = str(Path(sys.executable).with_name("astro"))
    env = dict(os.environ, ASTRO_CONFIG=os.devnull)
    cmds = {"astro --help": [astro, "--help"], "import typer, rich": [sys.executable, "-c", "import typer, rich"]}
    for cmd in cmds.values():  # warm the file cache and byte-code
        wall(cmd, env)
    times = {name: [] for name in cmds}
    for _ in range(args.repeat):
        for name, cmd in cmds.items():
            times[name].append(wall(cmd, env))
    med = {name: statistics.median(t) for name, t in times.items()}
    ratio = med["astro --help"] / med["import typer, rich"]
    for name, m in med.items():
        print(f"{name:<20} median {1000 * m:7.1f} ms over {args.repeat} runs")
    print(f"ratio astro --help / import typer, rich = {ratio:.2f}  (goal <= {GOAL})  "
          f"{'OK' if ratio <= GOAL else 'ABOVE GOAL'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
