"""``[crash]``: a validator with a bug."""

from pydantic import field_validator

from astrotool.section import Section


class CrashConfig(Section):
    """A section whose check of ``mode`` looks it up in an empty table."""

    mode: str = "fast"
    """A mode."""

    @field_validator("mode")
    @classmethod
    def _mode(cls, value):
        return {}[value]
