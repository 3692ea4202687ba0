"""The base class of every configuration table (core and plugins).

A :class:`Section` forbids unknown keys, so a typo in a TOML file is reported
with its file and dotted key instead of being silently ignored. Import it only
from configuration modules (it imports pydantic).
"""

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

from astrotool.names import name_problem

__docformat__ = "numpy"


class Section(BaseModel):
    """A configuration table: unknown keys are errors, and so are ``inf`` and ``nan`` for a number."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


def _file_name(value: str) -> str:
    problem = name_problem(value)
    if problem:
        raise PydanticCustomError("file_name", "not a valid name: {problem}", {"problem": problem})
    return value


FileName = Annotated[str, AfterValidator(_file_name)]
"""A key that names a file or folder: :func:`astrotool.names.check_name`'s rule."""

FileNameOrEmpty = Annotated[str, AfterValidator(lambda v: v and _file_name(v))]
""":data:`FileName`, or ``""`` for a name that defaults to another."""

Seed = Annotated[int, Field(ge=0)]
"""A random seed: an integer >= 0 (numpy refuses negative seeds), as ``core.seed``."""


def check_ordered(name: str, pair) -> None:
    """Raise ``ValueError`` when a ``(min, max)`` range is reversed."""
    if pair[0] > pair[1]:
        raise ValueError(f"{name}: lower bound {pair[0]} is above upper bound {pair[1]}")


def check_odd(name: str, value: int) -> None:
    """Raise ``ValueError`` when an image side that needs a central pixel is even."""
    if value % 2 == 0:
        raise ValueError(f"{name} must be odd (a central pixel), got {value}")
