"""Fixtures of the DRE tests."""

import os

import pytest
from astrotool_dre.detect_sextractor import find_sextractor
from astrotool_dre.psf import find_psfex

HAVE_SEX = find_sextractor() is not None
HAVE_PSFEX = find_psfex() is not None
#: The detection engines to parametrize over; SExtractor's tests are skipped where its binary is not installed.
ENGINES = [
    pytest.param("sextractor", marks=pytest.mark.skipif(not HAVE_SEX, reason="source-extractor/sex not installed")),
    "photutils",
]


@pytest.fixture(scope="module")
def mapper(tmp_path_factory):
    """``Context.map`` of a serial run: the mapper the commands give library functions.

    Its configuration is resolved here, without the user's files or ``ASTRO_*``
    variables (module-scoped fixtures run before the per-test isolation).
    """
    from astrotool.context import Context

    with pytest.MonkeyPatch.context() as mp:
        for k in [k for k in os.environ if k.startswith("ASTRO_")]:
            mp.delenv(k)
        mp.setenv("ASTRO_CONFIG", os.devnull)
        ctx = Context.create(tmp_path_factory.mktemp("context"))
        assert ctx.core.executor == "serial"
    return ctx.map


#: DRE's own grid (n = 4 only, 2,730 models) for the command-line tests, set as variables so that a test's
#: ``--set dre.models...`` still wins: they exercise the chain, not the index axis, and the default grid
#: of 12 indices costs 2 GB of cube per workspace. ``test_default_grid_covers_every_index`` keeps the default.
DRE_GRID = {"ASTRO_DRE__MODELS__INDEX0": "4.0", "ASTRO_DRE__MODELS__DINDEX": "0.0", "ASTRO_DRE__MODELS__NINDEX": "1"}


@pytest.fixture
def astro():
    """:func:`tests.conftest.run_astro_here` (``astro`` in the test's process: a new interpreter spent seconds
    importing astropy, photutils and scipy) with :data:`DRE_GRID`."""
    from astrotool_dre import tiles

    from tests.conftest import run_astro_here

    def run(*args, env=None, **kw):
        tiles._NOTED.clear()   # a tile's header notes are logged once per process: here, once per command
        return run_astro_here(*args, env={**DRE_GRID, **(env or {})}, **kw)

    return run


@pytest.fixture
def astro_subprocess():
    """:func:`tests.conftest.run_astro` (a new interpreter) with :data:`DRE_GRID`, for what only a process of
    its own shows (variables read as it starts, what worker processes print)."""
    from tests.conftest import run_astro

    def run(*args, env=None, **kw):
        return run_astro(*args, env={**DRE_GRID, **(env or {})}, **kw)

    return run
