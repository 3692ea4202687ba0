from pathlib import Path

import pytest

TOY = Path(__file__).parent / "toyplugins"


@pytest.fixture
def toy():
    """PYTHONPATH entries that install the toy (working) and broken plugin distributions."""
    return [TOY]
