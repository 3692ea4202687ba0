"""The base class of every configuration table (core and plugins).

A :class:`Section` forbids unknown keys, so a typo in a TOML file is reported
with its file and dotted key instead of being silently ignored. Import it only
from configuration modules (it imports pydantic).
"""

import re
from types import UnionType
from typing import Annotated, ClassVar, Union, get_args, get_origin

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from astrotool.names import name_problem

__docformat__ = "numpy"


class Section(BaseModel):
    """A configuration table: unknown keys are errors, and so are ``inf`` and ``nan`` for a number.

    ``renamed_keys`` maps a key (or table) of an earlier release to what replaced it (``"new_key"``, or
    ``"new_key (what else changed)"``), so that a configuration file still using it is told the new name
    (it stays an error: nothing is read from it).
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, use_attribute_docstrings=True)
    renamed_keys: ClassVar[dict[str, str]] = {}

    @classmethod
    def preset_sources(cls, values: dict) -> dict[str, str]:
        """``{key: source}`` for the keys a preset chosen in ``values`` gives (``'preset "crowded"'``), for
        ``astro config show --sources``; none here."""
        return {}

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_a_number(cls, value, info):
        """``jobs = true`` is an error, not 1 (pydantic reads a boolean as a number): a slip such as
        ``seed = true`` would silently run with seed 1."""
        if isinstance(value, bool) and info.field_name in cls.model_fields \
                and _numbers_only(cls.model_fields[info.field_name].annotation):
            raise PydanticCustomError("bool_not_number", "expected a number, got a boolean")
        return value


def _numbers_only(annotation) -> bool:
    """Whether a field's type takes numbers and nothing else (``int``, ``float``, ``int | None``)."""
    members = [a for a in (get_args(annotation) if get_origin(annotation) in (Union, UnionType) else (annotation,))
               if a is not type(None)]
    members = [get_args(a)[0] if get_origin(a) is Annotated else a for a in members]
    return bool(members) and all(isinstance(a, type) and issubclass(a, (int, float)) and a is not bool
                                 for a in members)


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

def _three_fractions(value):
    if isinstance(value, (list, tuple)) and len(value) != 3:
        raise PydanticCustomError("three_fractions", "three fractions (train, validation, test), got {n}",
                                  {"n": len(value)})
    return value


SplitFractions = Annotated[tuple[float, float, float], BeforeValidator(_three_fractions)]
"""A ``split`` key: train, validation and test fractions (a list of another length named as such, not as a
missing third item)."""

MIN_ONNX_OPSET = 11
"""The oldest ONNX opset an export writes (older ones lack operators the models use, e.g. ``Flip``)."""

OnnxOpset = Annotated[int, Field(ge=MIN_ONNX_OPSET, description=f"ONNX opset version (at least {MIN_ONNX_OPSET}; "
                                                                "at most the newest this torch exports)")]
"""The ``opset`` key of every ``export`` table."""


def _array_device(value) -> str:
    device = str(value).strip().lower()
    if device in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", device):
        return device
    raise PydanticCustomError("device", "expected auto, cpu, cuda or cuda:N (got '{value}')", {"value": str(value)})


ArrayDevice = Annotated[str, BeforeValidator(_array_device)]
"""Where an array backend runs (:func:`astrotool.backends.get_backend`): ``auto``, ``cpu``, ``cuda`` or
``cuda:N``, one GPU of several; any case."""


def check_ordered(name: str, pair) -> None:
    """Raise ``ValueError`` when a ``(min, max)`` range is reversed."""
    if pair[0] > pair[1]:
        raise ValueError(f"{name}: lower bound {pair[0]} is above upper bound {pair[1]}")


def check_odd(name: str, value: int) -> None:
    """Raise ``ValueError`` when an image side that needs a central pixel is even."""
    if value % 2 == 0:
        raise ValueError(f"{name} must be odd (a central pixel), got {value}")
