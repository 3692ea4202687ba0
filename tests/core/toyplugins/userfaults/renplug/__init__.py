"""A plugin whose packaged defaults still use a key of an earlier release that was only renamed
(``thresh``, now ``threshold``): read under its new name, the defaults are valid, so a user's bad
value (``--set ren.count=x``) is the user's error, not a broken plugin.
"""

from astrotool.hookspecs import ConfigSection, hookimpl


@hookimpl
def astro_config_sections():
    """``[ren]``, whose defaults use the old name ``thresh``."""
    return [ConfigSection("ren", "renplug.config:RenConfig", "renplug:defaults.toml")]
