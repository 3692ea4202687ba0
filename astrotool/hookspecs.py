"""Hook specifications: what a plugin can register with the core.

Every hook returns lightweight metadata only. Nothing a hook returns imports the
plugin's heavy modules: targets are ``"module:attribute"`` strings that the core
imports when (and only when) they are needed. The core's own commands are
registered through the same hooks (:mod:`astrotool.builtin`).

A plugin is a module named by an entry point in group ``astrotool.plugins``::

    [project.entry-points."astrotool.plugins"]
    dre = "astrotool_dre"

and implements any of the hooks below with :data:`hookimpl`.
"""

from __future__ import annotations

from typing import NamedTuple

import pluggy

__docformat__ = "numpy"

PROJECT = "astrotool"
"""pluggy project name of the hooks (markers and plugin manager)."""
hookspec = pluggy.HookspecMarker(PROJECT)
"""Marks the hook specifications below (the core's side of the plugin contract)."""
hookimpl = pluggy.HookimplMarker(PROJECT)
"""Marks a plugin's implementation of a hook: ``@hookimpl def astro_commands(): ...``."""
"""Decorator for hook implementations in plugins."""


class CommandSpec(NamedTuple):
    """A command group (or single command) to mount on ``astro``.

    Parameters
    ----------
    name : str
        Sub-command name, e.g. ``"dre"``.
    target : str
        ``"module:attribute"`` of a ``typer.Typer`` app, imported only when the
        command runs (or when its own help is asked for).
    help : str
        One-line help shown by its parent's help without importing ``target``.
    panel : str
        Help panel heading.
    parent : str
        Command path of the group to mount under, without ``astro``: ``""`` for
        the root, ``"lens"`` for a group under ``astro lens``. The parent may belong to
        another plugin, which needs no change; a parent that does not exist marks
        this plugin broken.

    Notes
    -----
    No option of the command may be spelled like a global option (``-j``,
    ``--seed``, ... see :data:`astrotool.context.GLOBAL_OPTIONS`): such a
    command is refused, with its plugin marked broken, when it is mounted.
    """

    name: str
    target: str
    help: str
    panel: str = "Plugins"
    parent: str = ""


class ConfigSection(NamedTuple):
    """A configuration section owned by a plugin.

    Parameters
    ----------
    name : str
        Top-level TOML table, e.g. ``"dre"``.
    model : str
        ``"module:Class"`` of a pydantic v2 model (``extra="forbid"``).
    defaults : str
        ``"package:resource.toml"`` holding the packaged defaults for this table.
    foreign_keys : tuple of str, optional
        Top-level keys and tables of another program's configuration file that a command of
        this plugin translates (Panopticon's ``training_epochs``, ``[optimizer]``, ...).
    importer : str, optional
        What to tell a user who gave such a file as a configuration layer, ``{file}`` standing for
        its path (e.g. ``"a Panopticon configuration: translate it with `astro plato config import
        {file}`"``).
    """

    name: str
    model: str
    defaults: str
    foreign_keys: tuple = ()
    importer: str = ""


class DoctorCheck(NamedTuple):
    """A check for ``astro doctor``.

    Parameters
    ----------
    name : str
        What is checked, e.g. ``"source-extractor"``.
    target : str
        ``"module:function"`` returning a :class:`CheckResult` (or a list of them).
    """

    name: str
    target: str


class CheckResult(NamedTuple):
    """Outcome of a doctor check.

    Parameters
    ----------
    name : str
        What was checked.
    ok : bool
        Whether it is installed and usable.
    detail : str
        Version, path or device list.
    hint : str
        How to get it when missing.
    required : bool
        Whether the core needs it (missing optional pieces are not failures).
    """

    name: str
    ok: bool
    detail: str = ""
    hint: str = ""
    required: bool = False


class DemoStep(NamedTuple):
    """A plugin's step in ``astro demo``.

    Parameters
    ----------
    name : str
        Plugin name.
    target : str
        ``"module:function"``; called as ``function(ctx)`` with the
        :class:`astrotool.context.Context` of the demo workspace; returns a list
        of summary lines describing what it produced.
    help : str
        One line saying what the step does.
    order : int
        Steps run in increasing order.
    """

    name: str
    target: str
    help: str = ""
    order: int = 100


@hookspec
def astro_commands() -> list[CommandSpec]:
    """Return the command groups this plugin mounts on ``astro``."""


@hookspec
def astro_config_sections() -> list[ConfigSection]:
    """Return this plugin's configuration sections."""


@hookspec
def astro_workspace_stages() -> dict[str, list[str]]:
    """Return ``{plugin: [stage folder, ...]}`` created by ``astro init``."""


@hookspec
def astro_doctor_checks() -> list[DoctorCheck]:
    """Return the checks ``astro doctor`` runs for this plugin."""


@hookspec
def astro_demo_steps() -> list[DemoStep]:
    """Return this plugin's steps for ``astro demo``."""
