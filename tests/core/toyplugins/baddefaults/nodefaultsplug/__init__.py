"""A plugin whose ``defaults.toml`` was left out of its distribution (no package-data).

It must be marked broken in ``astro plugins`` while every other plugin keeps working.
"""

from astrotool.hookspecs import CommandSpec, ConfigSection, hookimpl


@hookimpl
def astro_commands():
    """``astro nodefaults``: mounted, but its configuration cannot be read."""
    return [CommandSpec("nodefaults", "toyplug.cli:app", "A plugin without its defaults.toml.")]


@hookimpl
def astro_config_sections():
    """``[nodefaults]``, whose ``defaults.toml`` is not there."""
    return [ConfigSection("nodefaults", "toyplug.config:Inner", "nodefaultsplug:defaults.toml")]
