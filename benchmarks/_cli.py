"""The command runner the benchmarks share: the real ``astro`` command line in a subprocess.

Not a benchmark itself (``make bench`` runs the scripts whose names do not
start with ``_``).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path


def count(minimum: int = 1):
    """An argparse ``type``: an integer of at least ``minimum`` (a size of 0 gave a traceback or a 0x ratio)."""
    import argparse

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: expected an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value}: expected {minimum} or more")
        return value

    return parse


class CliRunner:
    """Runs ``python -m astrotool -w WS -q --json [globals] <prefix> ...`` and returns the parsed JSON.

    Parameters
    ----------
    workspace : path-like
    jobs : int
        ``-j`` of every command (a per-item worker pool) unless a call says otherwise.
    prefix : sequence of str
        The command group, e.g. ``("lens",)`` or ``("lens", "kappa")``.
    verbose : bool
        Show each command's log (stderr).
    """

    def __init__(self, workspace: Path, jobs: int, prefix=("lens",), verbose: bool = False):
        self.ws, self.jobs, self.prefix, self.verbose = Path(workspace), jobs, tuple(prefix), verbose
        self.times: dict[str, float] = {}  # label -> wall time of the whole process [s]

    def cmd(self, args, seed: int | None = None, overwrite: bool = False, sets=(), jobs: bool = True) -> list[str]:
        cmd = [sys.executable, "-m", "astrotool", "-w", str(self.ws), "-q", "--json"]
        if jobs:
            cmd += ["-j", str(self.jobs)]
        if seed is not None:
            cmd += ["--seed", str(seed)]
        if overwrite:
            cmd += ["--overwrite"]
        for s in sets:
            cmd += ["--set", s]
        return cmd + [*self.prefix, *[str(a) for a in args]]

    def __call__(self, label: str, *args, seed: int | None = None, overwrite: bool = False, sets=(),
                 parse: bool = True) -> dict:
        """Run one command; its stdout parsed as JSON (``{}`` with ``parse=False``); stop on a failure."""
        cmd = self.cmd(args, seed, overwrite, sets)
        print(f"  $ astro {shlex.join(cmd[3:])}", flush=True)
        t = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        self.times[label] = time.perf_counter() - t
        if proc.returncode != 0:
            sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
            raise SystemExit(f"{label}: exit status {proc.returncode}")
        if self.verbose and proc.stderr.strip():
            sys.stderr.write(proc.stderr)
        print(f"    {self.times[label]:.1f} s", flush=True)
        return json.loads(proc.stdout) if parse else {}

    def peak(self, label: str, *args, log: Path) -> tuple[float, float]:
        """Run one command in a fresh process (no worker pool); (wall s, its own peak RSS in MB via wait4)."""
        cmd = self.cmd(args, overwrite=True, jobs=False)
        print(f"  $ astro {shlex.join(cmd[3:])}", flush=True)
        t = time.perf_counter()
        with open(log, "w") as fh:
            proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT)
            _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t
        self.times[label] = wall
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            sys.stderr.write(Path(log).read_text()[-4000:])
            raise SystemExit(f"{label}: exit status {code}")
        rss_mb = usage.ru_maxrss / 1024.0  # Linux: KiB
        print(f"    {wall:.1f} s, peak RSS {rss_mb:.0f} MB", flush=True)
        return wall, rss_mb
