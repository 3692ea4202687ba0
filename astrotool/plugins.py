"""Plugin discovery: built-in hooks plus entry points in group ``astrotool.plugins``.

Each entry point is loaded inside its own ``try``: a plugin that raises on import
is recorded as *broken* with its error, shown by ``astro plugins``, and every
other command keeps working. The same isolation applies when a hook itself
raises. Nothing here imports a plugin's heavy modules: hooks return metadata
(:mod:`astrotool.hookspecs`) whose targets are imported only when used.
"""

from __future__ import annotations

import importlib
import os
import traceback
from typing import Any, NamedTuple

import pluggy

from astrotool import hookspecs

__docformat__ = "numpy"

ENTRY_POINT_GROUP = "astrotool.plugins"
"""Entry-point group that plugin distributions register in."""


class PluginInfo:
    """What ``astro plugins`` shows for one plugin: name, distribution, version,
    status (``"ok"`` or ``"broken"``), the error and its traceback (``details``)."""

    def __init__(self, name: str, distribution: str, version: str, status: str = "ok",
                 error: str = "", details: str = ""):
        self.name, self.distribution, self.version = name, distribution, version
        self.status, self.error, self.details = status, error, details

    def __repr__(self) -> str:
        return f"PluginInfo({self.name!r}, {self.distribution!r}, {self.version!r}, {self.status!r})"


class EntryPoint(NamedTuple):
    """An entry point read from a distribution's ``entry_points.txt``."""

    name: str
    value: str
    distribution: str
    version: str


def find_entry_points(group: str, paths: list[str] | None = None) -> list[EntryPoint]:
    """Entry points of ``group`` in the installed distributions on ``sys.path``.

    A small reader of ``*.dist-info/entry_points.txt`` (and ``*.egg-info``): it
    avoids importing :mod:`importlib.metadata`, which costs more than the rest of
    ``astro --help`` together. The first distribution found on the path wins, as
    for imports.
    """
    import sys

    found: list[EntryPoint] = []
    seen_dists: set[str] = set()
    for entry in paths if paths is not None else sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        for d in names:
            if not (d.endswith(".dist-info") or d.endswith(".egg-info")):
                continue
            stem = d.rsplit(".", 1)[0]
            dist, _, version = stem.partition("-")
            dist_key = dist.lower().replace("_", "-")
            if dist_key in seen_dists:
                continue
            ep_file = os.path.join(entry or ".", d, "entry_points.txt")
            try:
                with open(ep_file, encoding="utf-8") as fh:
                    text = fh.read()
            except OSError:
                continue
            seen_dists.add(dist_key)
            section = None
            for line in text.splitlines():
                line = line.strip()
                if not line or line.startswith(("#", ";")):
                    continue
                if line.startswith("[") and line.endswith("]"):
                    section = line[1:-1].strip()
                elif section == group and "=" in line:
                    name, _, value = line.partition("=")
                    found.append(EntryPoint(name.strip(), value.strip(), dist_key, version or "?"))
    return found


def load_target(target: str) -> Any:
    """Import ``"module:attribute"`` and return the attribute."""
    module, _, attr = target.partition(":")
    obj = importlib.import_module(module)
    for part in attr.split(".") if attr else []:
        obj = getattr(obj, part)
    return obj


class Registry:
    """The plugin manager and what the plugins registered.

    Parameters
    ----------
    entry_points : bool
        Load plugins from installed entry points (``ASTRO_NO_PLUGINS=1`` turns
        that off, e.g. to check the core alone).
    extra : list
        Additional plugin objects to register (tests).
    """

    def __init__(self, entry_points: bool = True, extra: list | None = None):
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.info: dict[str, PluginInfo] = {}
        from astrotool import builtin

        self.pm.register(builtin, name="core")
        from astrotool import __version__

        self.info["core"] = PluginInfo("core", "astrotool-core", __version__)
        if entry_points and os.environ.get("ASTRO_NO_PLUGINS", "") not in ("1", "true", "yes"):
            self._load_entry_points()
        for i, plugin in enumerate(extra or []):
            name = getattr(plugin, "__name__", f"extra{i}")
            self.pm.register(plugin, name=name)
            self.info[name] = PluginInfo(name, "-", "-")

    def _load_entry_points(self) -> None:
        for ep in sorted(find_entry_points(ENTRY_POINT_GROUP), key=lambda e: e.name):
            if ep.name in self.info:  # the first on the path wins; the other is listed, not lost
                first = self.info[ep.name]
                if ep.name == "core":
                    why = "'core' is astrotool's own plugin: rename this entry point"
                else:
                    why = (f"also provided by {first.distribution}"
                           f"{'' if first.status == 'ok' else ', which failed to load'}; uninstall one of them")
                self.info[f"{ep.name} ({ep.distribution})"] = PluginInfo(
                    ep.name, ep.distribution, ep.version, "broken", f"entry point {ep.name!r} {why}")
                continue
            try:
                module = load_target(ep.value)
                self.pm.register(module, name=ep.name)
                self.info[ep.name] = PluginInfo(ep.name, ep.distribution, ep.version)
            except BaseException as exc:  # a plugin must never break the host
                if isinstance(exc, KeyboardInterrupt):
                    raise
                self.info[ep.name] = PluginInfo(
                    ep.name, ep.distribution, ep.version, "broken",
                    f"{type(exc).__name__}: {exc}", traceback.format_exc(),
                )

    def _call(self, hook: str) -> list[tuple[str, Any]]:
        """Call ``hook`` on each plugin separately; a raising plugin is marked broken."""
        out = []
        for impl in getattr(self.pm.hook, hook).get_hookimpls():  # registration order: core first
            try:
                result = impl.function()
            except Exception as exc:
                info = self.info.get(impl.plugin_name)
                if info is not None:
                    info.status, info.error = "broken", f"{hook}: {type(exc).__name__}: {exc}"
                    info.details = traceback.format_exc()
                continue
            if result is not None:
                out.append((impl.plugin_name, result))
        return out

    def commands(self) -> list[tuple[str, hookspecs.CommandSpec]]:
        """``(plugin, CommandSpec)`` for every mounted command, core first."""
        return [(p, spec) for p, specs in self._call("astro_commands") for spec in specs]

    def config_sections(self) -> list[tuple[str, hookspecs.ConfigSection]]:
        """``(plugin, ConfigSection)`` for every configuration section."""
        return [(p, s) for p, secs in self._call("astro_config_sections") for s in secs]

    def stages(self) -> dict[str, list[str]]:
        """Workspace stage folders, ``{plugin: [stage, ...]}``."""
        out: dict[str, list[str]] = {}
        for _, mapping in self._call("astro_workspace_stages"):
            for plugin, names in mapping.items():
                out.setdefault(plugin, [])
                out[plugin] += [n for n in names if n not in out[plugin]]
        return out

    def doctor_checks(self) -> list[tuple[str, hookspecs.DoctorCheck]]:
        """``(plugin, DoctorCheck)`` for every check."""
        return [(p, c) for p, checks in self._call("astro_doctor_checks") for c in checks]

    def demo_steps(self) -> list[tuple[str, hookspecs.DemoStep]]:
        """``(plugin, DemoStep)`` sorted by ``order``."""
        steps = [(p, s) for p, ss in self._call("astro_demo_steps") for s in ss]
        return sorted(steps, key=lambda ps: (ps[1].order, ps[1].name))

    def mark_broken(self, plugin: str, error: str) -> None:
        """Record that ``plugin`` cannot be used, and why (shown by ``astro plugins``)."""
        info = self.info.get(plugin)
        if info is not None and error not in info.error:
            info.status, info.error = "broken", f"{info.error}; {error}" if info.error else error

    def broken(self) -> list[PluginInfo]:
        """Plugins that failed to load or whose hooks raised."""
        return [i for i in self.info.values() if i.status != "ok"]


_REGISTRY: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry (created on first use)."""
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = Registry()
    return _REGISTRY


def set_registry(registry: Registry | None) -> None:
    """Replace the process-wide registry (``None`` resets it; used by tests)."""
    global _REGISTRY
    _REGISTRY = registry
