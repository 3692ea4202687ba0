"""A plugin whose packaged defaults fail its own check of a nested table (``path = "out"`` where the
check wants ``{stem}``): its defaults are wrong, so its plugin is broken and its command exits 2 with
the reason, while every other plugin's commands work (they all failed, and ``astro plugins`` said ok).
"""

from astrotool.hookspecs import CommandSpec, ConfigSection, hookimpl


@hookimpl
def astro_commands():
    """``astro stem show``."""
    return [CommandSpec("stem", "stemplug.cli:app", "Show [stem].")]


@hookimpl
def astro_config_sections():
    """``[stem]``, whose table ``[stem.out]`` is checked as a whole."""
    return [ConfigSection("stem", "stemplug.config:StemConfig", "stemplug:defaults.toml")]
