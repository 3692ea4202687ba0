"""A plugin whose packaged ``defaults.toml`` holds a value its own model refuses.

It must be marked broken in ``astro plugins`` while every other plugin keeps working.
"""

from astrotool.hookspecs import ConfigSection, hookimpl


@hookimpl
def astro_config_sections():
    """``[badvalue]``, whose packaged ``factor`` is not a number."""
    return [ConfigSection("badvalue", "toyplug.config:Inner", "badvalueplug:defaults.toml")]
