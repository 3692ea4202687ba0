"""``[req]``: ``catalog`` or ``url`` must be set by the user."""

from pydantic import model_validator

from astrotool.section import Section


class ReqConfig(Section):
    """A section the user must complete."""

    count: int = 3
    """A number."""
    catalog: str = ""
    """A catalogue file (this or ``url``)."""
    url: str = ""
    """A catalogue address (this or ``catalog``)."""

    @model_validator(mode="after")
    def one_source(self):
        if not (self.catalog or self.url):
            raise ValueError("set catalog or url (the plugin cannot guess your data)")
        return self
