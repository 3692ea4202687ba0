"""A plugin whose model needs the user to set ``catalog`` or ``url`` (its defaults leave both empty).

Its defaults alone fail the model's check of the whole table: that is the user's to fill, not the
plugin's fault, so a user's other error (``count = "x"``) must still be reported as the user's.
"""

from astrotool.hookspecs import CommandSpec, ConfigSection, hookimpl


@hookimpl
def astro_commands():
    """``astro req show``."""
    return [CommandSpec("req", "reqplug.cli:app", "Show [req].")]


@hookimpl
def astro_config_sections():
    """``[req]``, checked as a whole by ``ReqConfig``."""
    return [ConfigSection("req", "reqplug.config:ReqConfig", "reqplug:defaults.toml")]
