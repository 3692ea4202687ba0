"""``toyplug``: the smallest complete astrotool plugin, and a template to copy.

The core's tests install it (``tests/core/toyplugins`` on ``PYTHONPATH``, with
its ``toyplug-1.2.3.dist-info/entry_points.txt``), so everything it shows is
checked by the test suite. A real plugin is a distribution whose
``pyproject.toml`` names this module in the entry-point group
``astrotool.plugins``::

    [project.entry-points."astrotool.plugins"]
    toy = "toyplug"

Files:

``__init__.py`` (this file)
    The hooks: metadata only. Every target is a ``"module:attribute"`` string
    the core imports when, and only when, it is needed, so ``astro --help``
    never imports ``cli.py``, ``squares.py`` or their libraries.
``config.py``, ``defaults.toml``
    The ``[toy]`` configuration section: a pydantic model and its defaults.
``cli.py``
    The ``astro toy`` commands: parse options, call the library, report.
``squares.py``
    The library: one frozen item type and one module-level function per item.
``stats.py``
    ``astro toy stats``: a command group mounted under ``astro toy`` through
    ``CommandSpec.parent`` (it could live in another distribution).

``tests/core/test_toyplug.py`` shows how to test such a plugin.
"""

from astrotool.hookspecs import CheckResult, CommandSpec, ConfigSection, DemoStep, DoctorCheck, hookimpl

NAME = "toy"
"""Command group, configuration section and workspace folder of the plugin."""

OUT, LOGS = STAGES = ("out", "logs")
"""Stage folders under ``<workspace>/toy/``."""


@hookimpl
def astro_commands():
    """Mount ``astro toy`` at the root and ``astro toy stats`` under it.

    ``help`` is what ``astro --help`` (or ``astro toy --help``) shows without
    importing the target. ``parent`` names the command path to mount under; a
    parent that does not exist marks the plugin broken in ``astro plugins``.
    """
    return [CommandSpec(NAME, "toyplug.cli:app", "Toy commands for the core tests."),
            CommandSpec("stats", "toyplug.stats:app", "Summarise the toy outputs.", parent=NAME)]


@hookimpl
def astro_config_sections():
    """Register the ``[toy]`` section: its model and its packaged defaults."""
    return [ConfigSection(NAME, "toyplug.config:ToyConfig", "toyplug:defaults.toml")]


@hookimpl
def astro_workspace_stages():
    """Stage folders ``astro init`` creates under ``<workspace>/toy/``."""
    return {NAME: list(STAGES)}


@hookimpl
def astro_doctor_checks():
    """Checks ``astro doctor`` runs: each target returns a :class:`CheckResult`."""
    return [DoctorCheck("toy-check", "toyplug:check")]


@hookimpl
def astro_demo_steps():
    """The plugin's step in ``astro demo``: called with the demo workspace's context."""
    return [DemoStep(NAME, "toyplug.cli:demo", "square a few numbers")]


def check():
    """A doctor check that always fails, with a hint (what a missing tool looks like)."""
    return CheckResult("toy-check", False, "not here", "install toy")
