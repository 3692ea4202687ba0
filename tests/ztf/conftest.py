"""ZTF tests run ``astro`` in the test's own process: each new interpreter spent 4-5 s importing torch and Fabric."""

import pytest

from tests.conftest import run_astro_here


@pytest.fixture
def astro():
    """:func:`tests.conftest.run_astro_here`, in place of the subprocess of the top-level fixture."""
    return run_astro_here


@pytest.fixture
def astro_subprocess():
    """:func:`tests.conftest.run_astro` (a new interpreter), for what only a process of its own shows."""
    from tests.conftest import run_astro

    return run_astro
