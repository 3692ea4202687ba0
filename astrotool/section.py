"""The base class of every configuration table (core and plugins).

A :class:`Section` forbids unknown keys, so a typo in a TOML file is reported
with its file and dotted key instead of being silently ignored. Import it only
from configuration modules (it imports pydantic).
"""

from pydantic import BaseModel, ConfigDict

__docformat__ = "numpy"


class Section(BaseModel):
    """A configuration table: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


FILE_STEM = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
"""Pattern of a name used as a file stem: no path separators, no leading dot."""

FILE_STEM_OR_EMPTY = r"^(|[A-Za-z0-9][A-Za-z0-9_.-]*)$"
""":data:`FILE_STEM`, or ``""`` for a name that defaults to another."""


def check_ordered(name: str, pair) -> None:
    """Raise ``ValueError`` when a ``(min, max)`` range is reversed."""
    if pair[0] > pair[1]:
        raise ValueError(f"{name}: lower bound {pair[0]} is above upper bound {pair[1]}")


def check_odd(name: str, value: int) -> None:
    """Raise ``ValueError`` when an image side that needs a central pixel is even."""
    if value % 2 == 0:
        raise ValueError(f"{name} must be odd (a central pixel), got {value}")
