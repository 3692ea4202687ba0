"""A plugin whose model imports but whose validator raises (not a ValueError) on its own defaults:
broken, and said to raise, not to be impossible to load.
"""

from astrotool.hookspecs import ConfigSection, hookimpl


@hookimpl
def astro_config_sections():
    """``[crash]``, whose model's validator raises ``KeyError``."""
    return [ConfigSection("crash", "crashplug.config:CrashConfig", "crashplug:defaults.toml")]
