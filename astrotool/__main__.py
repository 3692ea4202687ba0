"""``python -m astrotool`` is the same as ``astro``."""

from astrotool.cli import run

run()
