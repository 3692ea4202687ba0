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
