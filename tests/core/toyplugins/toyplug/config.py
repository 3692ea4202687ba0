"""The ``[toy]`` configuration section.

Defaults live here and in ``defaults.toml`` only; commands read them with
``ctx.section("toy", flags)`` and never restate them in their signatures.
"""

from typing import Literal

from pydantic import Field

from astrotool.section import Section


class Inner(Section):
    """A nested table, ``[toy.inner]``."""

    factor: float = 2.0
    """A number the commands report."""


class ToyConfig(Section):
    """Settings of ``astro toy`` (unknown keys are errors naming the file and key)."""

    renamed_keys = {"name": "label"}   # as if ``label`` was called ``name`` in an earlier release

    count: int = Field(3, ge=0)
    """How many numbers ``astro toy run`` squares."""
    label: str = "default"
    """A label the commands report."""
    mode: Literal["fast", "slow"] = "fast"
    """An enumerated setting (the schema lists its choices)."""
    inner: Inner = Inner()
