"""Fixtures of the DRE tests."""

import os

import pytest


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
