"""``[ren]``: ``thresh`` was renamed ``threshold``."""

from astrotool.section import Section


class RenConfig(Section):
    """A section with a renamed key."""

    renamed_keys = {"thresh": "threshold"}
    count: int = 3
    """A number."""
    threshold: float = 0.5
    """A threshold (``thresh`` before)."""
