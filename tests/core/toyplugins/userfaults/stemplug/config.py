"""``[stem]``: ``out.path`` must name each file with ``{stem}``."""

from pydantic import model_validator

from astrotool.section import Section


class OutConfig(Section):
    """Where each item is written."""

    path: str = "{stem}.fits"
    """File of each item, named with ``{stem}``."""

    @model_validator(mode="after")
    def _stem(self):
        if "{stem}" not in self.path:
            raise ValueError(f"path {self.path!r}: name each file with {{stem}}")
        return self


class StemConfig(Section):
    """A section with a checked nested table."""

    n: int = 1
    """A number."""
    out: OutConfig = OutConfig()
    """Outputs."""
