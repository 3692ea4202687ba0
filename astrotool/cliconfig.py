"""Command-line options described by the configuration they override.

A plugin option that overrides a configuration key is declared once, in the
pydantic model of its section; when a command group is mounted,
:func:`describe_options` gives each such option

* the key's fixed set of values (a ``Literal``) as a real choice: shown as
  ``[chi2|dre]`` in ``--help``, completed by the shell, and checked while the
  command line is parsed, before any work starts (exit 2);
* the key's configured value as its shown default (the resolved configuration
  of the run, else the packaged defaults), never a copy in the command's code;
* the key's description as its help text, when the option has none.

Which key an option overrides follows from where the command is mounted and
the option's parameter name: option ``statistic`` of ``astro dre fit`` sets
``dre.fit.statistic``; ``astro lens kappa train --epochs`` sets
``lens.kappa.train.epochs``. A ``__`` in the parameter name is a dot
(``noise__kind`` of ``lens generate`` sets ``lens.generate.noise.kind``); a
name that is not a key of the command's own table is looked up from the
section's sub-table (``fit__statistic`` of ``dre run`` sets
``dre.fit.statistic``); a help text ending in ``(sets ml.accelerator)`` names
the key outright.
"""

from __future__ import annotations

import re
import typing
from typing import Any, Iterator

__docformat__ = "numpy"

_SETS = re.compile(r"\(sets ([A-Za-z_][\w.]*)\)\s*$")


def _field(model_cls, dotted: str):
    """The pydantic field at ``dotted`` under ``model_cls`` (``"fit.statistic"``), else ``None``."""
    field = None
    cls = model_cls
    for part in dotted.split("."):
        fields = getattr(cls, "model_fields", None)
        if not fields or part not in fields:
            return None
        field = fields[part]
        cls = _unwrap(field.annotation)
    return field


def _unwrap(ann):
    """``Optional[X]`` -> ``X``; ``Annotated[X, ...]`` -> ``X``."""
    while True:
        origin = typing.get_origin(ann)
        if origin is typing.Annotated:
            ann = typing.get_args(ann)[0]
            continue
        if origin is typing.Union or type(ann).__name__ == "UnionType":
            args = [a for a in typing.get_args(ann) if a is not type(None)]
            if len(args) == 1:
                ann = args[0]
                continue
        return ann


def choices_of(annotation) -> tuple[str, ...] | None:
    """The fixed string values of a ``Literal`` annotation (``Optional``/``Annotated`` unwrapped), else ``None``."""
    ann = _unwrap(annotation)
    if typing.get_origin(ann) is typing.Literal:
        values = typing.get_args(ann)
        if values and all(isinstance(v, str) for v in values):
            return values
    return None


def option_keys(path: str, param, sections: set[str]) -> list[str]:
    """The dotted configuration keys option ``param`` of command ``path`` may set, first match wins.

    Parameters
    ----------
    path : str
        Command path without ``astro`` (``"dre fit"``, ``"lens kappa train"``).
    param : click parameter
    sections : set of str
        The known configuration sections.
    """
    match = _SETS.search(getattr(param, "help", None) or "")
    if match:
        return [match.group(1)]
    words = path.split()
    if len(words) < 2 or words[0] not in sections:
        return []
    name = (param.name or "").rstrip("_").replace("__", ".")
    table = ".".join(words[1:])
    parent = ".".join(words[1:-1])
    return [f"{words[0]}.{table}.{name}", ".".join(w for w in (words[0], parent, name) if w)]


class _Config:
    """Models and values of the configuration, loaded once per mount."""

    def __init__(self):
        from astrotool.config import defaults_layers

        self.layers, self.targets = defaults_layers()
        self._models: dict[str, Any] = {}
        self._values: dict[str, Any] = {}
        self.error: Exception | None = None
        """Why the run's configuration could not be used (the defaults shown are then the packaged ones)."""

    def model(self, section: str):
        if section not in self._models:
            from astrotool.plugins import load_target

            try:
                self._models[section] = load_target(self.targets[section])
            except Exception:
                self._models[section] = None
        return self._models[section]

    def values(self, section: str):
        """The section's validated model: the run's resolved configuration, else the packaged defaults."""
        if section not in self._values:
            model = None
            try:
                from astrotool.context import current

                model = current().config.section(section)
            except Exception as exc:  # no run, or a configuration the command itself will report
                from astrotool.errors import AstroError

                if isinstance(exc, AstroError):   # --help would show other defaults in silence
                    self.error = exc
                try:
                    data = next(d[section] for _, d in self.layers if section in d)
                    model = self.model(section).model_validate(data)
                except Exception:
                    model = None
            self._values[section] = model
        return self._values[section]


def _value(model, dotted: str):
    for part in dotted.split("."):
        model = getattr(model, part, None)
        if model is None:
            return None
    return model


def _shown(param, value) -> str | None:
    """How the configured ``value`` is shown as the default of ``param``."""
    if value is None:
        return None
    if isinstance(value, bool):
        if getattr(param, "secondary_opts", None):
            return (param.opts if value else param.secondary_opts)[0]
        return "on" if value else "off"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value) if value else None
    if value == "":
        return None
    return str(value)


def _options(cmd, path: str) -> Iterator[tuple[str, Any]]:
    """``(command path, option)`` of ``cmd`` and its already mounted sub-commands."""
    from astrotool.cli import LazyCommand

    for param in getattr(cmd, "params", []):
        if getattr(param, "param_type_name", "") == "option":
            yield path, param
    for name, sub in getattr(cmd, "commands", {}).items():
        if not isinstance(sub, LazyCommand):
            yield from _options(sub, f"{path} {name}")


def describe_options(cmd, path: str) -> None:
    """Give the options of mounted command ``cmd`` (at ``path``, e.g. ``"dre"``) their configuration
    key's choices, configured default and description (see the module docstring)."""
    try:
        cfg = _Config()
    except Exception:  # the configuration cannot be read: options stay as declared
        return
    sections = set(cfg.targets)
    for cmd_path, param in _options(cmd, path):
        for key in option_keys(cmd_path, param, sections):
            section, _, rest = key.partition(".")
            model_cls = cfg.model(section) if section in sections else None
            field = _field(model_cls, rest) if model_cls is not None and rest else None
            if field is not None and not hasattr(_unwrap(field.annotation), "model_fields"):  # a key, not a table
                _apply(param, field, _value(cfg.values(section), rest))
                break
    if cfg.error is not None:   # said in the help itself (a command run is stopped by the error anyway)
        note = f"\b\nThe configuration cannot be used, so the defaults shown are the packaged ones:\n{cfg.error}"
        for command in _commands(cmd):
            command.epilog = f"{note}\n\n{command.epilog}" if command.epilog else note


def _commands(cmd):
    """``cmd`` and its already mounted sub-commands."""
    from astrotool.cli import LazyCommand

    yield cmd
    for sub in getattr(cmd, "commands", {}).values():
        if not isinstance(sub, LazyCommand):
            yield from _commands(sub)


def _apply(param, field, value) -> None:
    choices = choices_of(field.annotation)
    desc = getattr(param, "type_descriptor", None)
    if choices and desc is not None and _unwrap(desc.annotation) is str and not getattr(param, "is_flag", False):
        from dataclasses import replace

        param.type_descriptor = replace(desc, annotation=typing.Literal[choices])
        param._runtime_param = None
    if not getattr(param, "help", None) and field.description:
        param.help = field.description[:1].upper() + field.description[1:]
    shown = _shown(param, value)
    if shown is not None and param.show_default in (False, None, True):
        show_default(param, shown)


def show_default(param, shown: str) -> None:
    """Show ``shown`` as the default of option ``param``: ``[default: 16]``, ``[default: --use-psf]`` (Click
    and Typer put a text ``show_default`` in parentheses, ``[default: (16)]``, as for a description)."""
    param.show_default = shown
    _bare_default(param)


def _bare_default(param) -> None:
    """Make the text ``show_default`` of ``param`` show bare."""
    original = getattr(param, "_get_default_string", None)
    if original is None:
        return

    def default_string(*, ctx, show_default_is_str, default_value):
        if show_default_is_str:
            return str(param.show_default)
        return original(ctx=ctx, show_default_is_str=show_default_is_str, default_value=default_value)

    param._get_default_string = default_string
