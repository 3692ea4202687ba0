"""Layered TOML configuration, validated with pydantic v2.

Layers, lowest to highest priority:

1. packaged defaults of every section (``<package>/defaults.toml``)
2. the user file: ``$ASTRO_CONFIG``, else ``$XDG_CONFIG_HOME/astro/config.toml``
   (``~/.config/astro/config.toml``); ``ASTRO_CONFIG=/dev/null`` disables it
3. the workspace file ``<workspace>/astro.toml``
4. each ``--cfg FILE`` in the order given
5. environment variables ``ASTRO_<SECTION>__<KEY>[__<SUBKEY>]``, e.g.
   ``ASTRO_DRE__FIT__BATCH_SIZE=64``
6. ``--set section.key=value`` (repeatable)
7. explicit command flags

Values from layers 5 and 6 are parsed as TOML values when they parse (``64``,
``true``, ``[1, 2]``, ``"x"``) and taken as strings otherwise. Every section is
validated once by its pydantic model (``extra="forbid"``, so typos are errors);
each problem is reported with the file (or variable) that supplied the value and
its dotted key, and the command exits with code 2.
"""

from __future__ import annotations

import copy
import json
import os
import re
from pathlib import Path
from typing import Any

from astrotool.errors import ConfigError

__docformat__ = "numpy"

ENV_PREFIX = "ASTRO_"
"""Prefix of the environment variables that set configuration keys."""
DEFAULTS = "defaults"
"""Source name of a value that no layer set (the packaged defaults)."""


def user_config_path() -> Path | None:
    """The user configuration file (may not exist); ``None`` when disabled."""
    explicit = os.environ.get("ASTRO_CONFIG")
    if explicit is not None:
        return None if explicit in ("", os.devnull) else Path(explicit).expanduser()   # "": refused by load
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "astro" / "config.toml"


def file_layers(workspace: str | os.PathLike | None = None, cfg_files=()) -> list[Path]:
    """The configuration files of layers 2-4, lowest priority first: the user file (when it is there, or named
    by ``$ASTRO_CONFIG``, which must then be there: a typo would run on the defaults), the workspace's
    ``astro.toml`` when it is there, and every ``--cfg`` file (each must be there)."""
    user = user_config_path()
    files = [user] if user is not None and (os.environ.get("ASTRO_CONFIG") or user.is_file()) else []
    if workspace is not None and (Path(workspace) / "astro.toml").is_file():
        files.append(Path(workspace) / "astro.toml")
    return files + [Path(f) for f in cfg_files or ()]


def read_toml(path: str | os.PathLike) -> dict:
    """Read a TOML file; syntax errors become :class:`ConfigError` naming the file."""
    import tomllib   # here, not at the top: `astro --help` reads the user file's log format only when there is one

    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")  # a byte-order mark (Windows editors) is not TOML
        return tomllib.loads(text)
    except FileNotFoundError:
        raise ConfigError([f"{path}: file not found"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: TOML syntax error: {exc}"]) from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{path}: cannot read: {exc}"]) from None


def parse_value(text: str) -> Any:
    """Parse a command-line or environment value as a TOML value, else keep the string."""
    import tomllib

    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _set_dotted(tree: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = tree
    for k in keys[:-1]:
        nxt = node.get(k)
        if not isinstance(nxt, dict):
            nxt = node[k] = {}
        node = nxt
    node[keys[-1]] = value


def _flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _merge(base: dict, layer: dict, source: str, sources: dict[str, str], prefix: str = "") -> None:
    for k, v in layer.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _merge(base[k], v, source, sources, key + ".")
        else:
            if isinstance(base.get(k), dict):  # a table replaced by a value: its keys' sources go with it
                for sub in [s for s in sources if s.startswith(key + ".")]:
                    del sources[sub]
            base[k] = copy.deepcopy(v)
            if isinstance(v, dict):
                for sub in _flatten(v, key + "."):
                    sources[sub] = source
            sources[key] = source


def env_layer(environ: dict[str, str] | None = None) -> tuple[dict, dict[str, str]]:
    """Values from ``ASTRO_<SECTION>__<KEY>`` variables and the variable naming each key."""
    environ = os.environ if environ is None else environ
    tree: dict = {}
    names: dict[str, str] = {}
    for name, text in environ.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name[len(ENV_PREFIX):]:
            continue
        dotted = ".".join(p.lower() for p in name[len(ENV_PREFIX):].split("__"))
        _set_dotted(tree, dotted, parse_value(text))
        names[dotted] = f"${name}"
    return tree, names


_ENV_TYPOS_TOLD: set[str] = set()


def env_typos(environ: dict[str, str] | None, known) -> list[str]:
    """Warnings for ``ASTRO_*`` variables that spell a key of a section with single ``_`` after the
    section or between nested keys (``ASTRO_CORE_JOBS``, meant as ``ASTRO_CORE__JOBS``;
    ``ASTRO_DRE_FIT_BATCH_SIZE``, meant as ``ASTRO_DRE__FIT__BATCH_SIZE``), which would be ignored.

    A variable is named only when some reading of its ``_`` as separators gives a section and a
    key path of that section (``ASTRO_ZTF_TOKEN`` is not named: ztf has no key ``token``), so other
    ``ASTRO_*`` variables (``ASTRO_CONFIG``, ``ASTRO_WORKSPACE``, a plugin's own) never are.

    Parameters
    ----------
    environ : dict or None
        The environment (default ``os.environ``).
    known : mapping or callable
        ``{section: keys}`` (or ``section -> keys``, ``None`` for no such section), where ``keys``
        is the section's keys as a nested dict (a table's value a dict of its keys, a value's anything
        else), e.g. ``{"core": {"jobs": None}, "dre": {"fit": {"batch_size": None}}}``.

    Returns
    -------
    list of str
        One warning per such variable.
    """
    environ = os.environ if environ is None else environ
    lookup = known.get if isinstance(known, dict) else known
    out = []
    for name in environ:
        rest = name[len(ENV_PREFIX):]
        if not name.startswith(ENV_PREFIX) or "_" not in rest.strip("_"):
            continue
        if "__" in rest:   # read as a key: named only when it is none, but a reading of its `_` is one
            section, *parts = rest.lower().split("__")
            if _is_key(lookup(section), parts):
                continue
        words = [w for w in rest.lower().split("_") if w]
        for i in range(1, len(words)):
            section = "_".join(words[:i])
            keys = lookup(section)
            path = _key_path(keys, words[i:]) if isinstance(keys, dict) else None
            if path:
                meant = f"${ENV_PREFIX}{section.upper()}__{'__'.join(k.upper() for k in path)}"
                out.append(f"${name} is not read: a configuration key is set by {meant} "
                           f"({section}.{'.'.join(path)}; "
                           "two underscores after the section and between nested keys)" if "__" not in rest else
                           f"${name} names no configuration key; did you mean {meant} ({section}.{'.'.join(path)})?")
                break
    return out


def _is_key(keys, parts: list[str]) -> bool:
    """Whether ``parts`` is a key path of nested ``keys`` (a table's keys a dict; a value's anything else)."""
    for i, part in enumerate(parts):
        if not isinstance(keys, dict) or part not in keys:
            return False
        keys = keys[part]
    return True


def _key_path(keys: dict, words: list[str]) -> list[str] | None:
    """The key path of nested ``keys`` that ``words`` spell when joined by ``_`` or split between
    tables (``["fit", "batch", "size"]`` -> ``["fit", "batch_size"]``), else ``None``."""
    for j in range(1, len(words) + 1):
        key = "_".join(words[:j])
        if key not in keys:
            continue
        if j == len(words):
            return [key]
        if isinstance(keys[key], dict):
            sub = _key_path(keys[key], words[j:])
            if sub:
                return [key, *sub]
    return None


def _known_keys(model, values) -> dict:
    """The keys of a section (or table) as a nested dict: its model's fields and its packaged defaults'
    keys (a table's value the dict of its keys, a value's ``None``)."""
    fields = getattr(model, "model_fields", None) or {}
    tables = {name: f.annotation for name, f in fields.items() if hasattr(f.annotation, "model_fields")}
    keys: dict = {name: _known_keys(tables[name], {}) if name in tables else None for name in fields}
    for name, value in (values if isinstance(values, dict) else {}).items():
        if isinstance(value, dict):
            keys[name] = _known_keys(tables.get(name), value)
        else:
            keys.setdefault(name, None)
    return keys


def set_layer(assignments: list[str]) -> dict:
    """Parse ``--set section.key=value`` assignments into a nested dict."""
    tree: dict = {}
    for a in assignments:
        key, sep, text = a.partition("=")
        if not sep or "." not in key.strip():
            raise ConfigError([f"--set {a!r}: expected section.key=value"])
        _set_dotted(tree, key.strip(), parse_value(text.strip()))
    return tree


class Config:
    """The resolved configuration: merged values, where each came from, and models.

    Use :func:`load` to build one.
    """

    def __init__(self, data: dict, sources: dict[str, str], models: dict[str, str],
                 packaged: "Packaged | None" = None):
        self.data = data
        self.sources = sources
        self._model_targets = models
        self._packaged = packaged
        self.validated: dict[str, Any] = {}
        self.needs: dict[str, str] = {}
        """``{section: what to set}`` for the sections left out because their defaults leave a setting to the
        user that no layer of the user's gives (only that section's commands stop, see :meth:`section`)."""
        self._renames_told: set[str] = set()
        self.files: list[str] = []
        """The files read, packaged defaults first, in the order their layers apply (:func:`load`)."""
        self._moved: dict[str, tuple[str, str]] = {}   # a new key given its source by a renamed one: (old, source)

    def unset_source(self, dotted: str) -> str:
        """Where a key that no layer set takes its value from: ``"defaults"`` (its field's default), or a
        preset its table chose (:meth:`astrotool.section.Section.preset_sources`)."""
        top, *tables, key = dotted.split(".") if "." in dotted else (dotted, "")
        if top not in self._model_targets or not key:   # a section with no key: nothing of a preset
            return DEFAULTS
        values = self.data.get(top)
        for name in tables:
            values = values.get(name) if isinstance(values, dict) else None
        model = _table_model(self.model_class(top), tables)
        return (model.preset_sources(values) if model is not None and hasattr(model, "preset_sources")
                and isinstance(values, dict) else {}).get(key, DEFAULTS)

    def model_class(self, section: str):
        """The pydantic model class of ``section``."""
        from astrotool.plugins import load_target

        return load_target(self._model_targets[section])

    def validate(self) -> "Config":
        """Validate every section; raise :class:`ConfigError` listing every problem.

        A section that fails where every problem comes from its packaged defaults (the user set nothing
        that fails) is left out, so that every other section's commands work: when its defaults are wrong
        (:meth:`Packaged.check`) its plugin is marked broken; when they only leave a setting to the user
        (a required key, or a check of a whole table the defaults leave empty), the section is listed in
        :attr:`needs` and :meth:`section` refuses it with that check's message. Any problem a user's
        layer set is reported as the user's.
        """
        problems = []
        for section in list(self._model_targets):
            ours = self._packaged is not None and section in self._packaged.values
            try:
                found, crash = self._problems(section, self.data.get(section, {})), None
            except Exception as exc:  # the model cannot be imported, or raised while validating
                found, crash = [], exc
            if ours and (crash is not None or (found and all(packaged_source(src) for src, _ in found))):
                why = self._packaged.check(section)
                if why:  # the plugin's own defaults are wrong: its plugin is broken, not the user's config
                    self._packaged.mark_broken(section, why)
                    self._model_targets.pop(section, None)
                    continue
                if crash is None:  # a setting left to the user, who set nothing here: only this section stops
                    self.needs[section] = "; ".join(line for _, line in found)
                    continue
            if crash is not None:
                raise crash
            problems += [f"{src}: {line}" for src, line in found]
        unknown = [s for s in self.data if s not in self._model_targets and s not in self.broken]
        problems[:0] = [f"{self._source_of(s)}: {self._unknown_section(s)}" for s in unknown] + \
            self._foreign_files(unknown)
        if problems:
            raise ConfigError(problems)
        return self

    @property
    def broken(self) -> dict[str, str]:
        """``{section: why}`` for the sections left out because their plugin's defaults are unusable."""
        return self._packaged.broken if self._packaged is not None else {}

    def _foreign_files(self, unknown: list[str]) -> list[str]:
        """A line for each file whose unknown top-level names are another program's configuration that a
        plugin translates (at least two of its keys), saying how to translate it."""
        by_file: dict[str, set] = {}
        for name in unknown:
            by_file.setdefault(self._source_of(name), set()).add(name)
        foreign = self._packaged.foreign if self._packaged is not None else []
        lines = []
        for src, names in by_file.items():
            if not packaged_source(src) and not src.startswith(("--set", "$", OPTION_SOURCE)):
                import shlex

                lines += [f"{src}: {tell.format(file=shlex.quote(src))}" for keys, tell in foreign
                          if len(names & keys) >= 2]
        return lines

    def _unknown_section(self, name: str) -> str:
        """Why ``name`` is not a section, and the section whose key it is when one has it (``log_format``)."""
        if not isinstance(self.data.get(name), dict):
            owners = [s for s in sorted(self._model_targets) if name in self.model_class(s).model_fields]
            if owners:
                return f"{name}: a key of [{owners[0]}], not a section; put it under [{owners[0]}]"
            return f"{name}: a key outside every section; put it under one of [{'], ['.join(sorted(self._model_targets))}]"
        return f"[{name}]: unknown section{_did_you_mean(name, self._model_targets)} " \
               f"(known: {', '.join(sorted(self._model_targets))})"

    def layer_position(self, dotted: str) -> int:
        """How late the layer that set ``dotted`` comes (a later one wins): -1 for none of the user's (the
        packaged defaults), each file in the order read, then the environment, ``--set``, a command's option."""
        source = self.sources.get(dotted, DEFAULTS)
        rank = source_rank(source)
        if rank == 0:
            return -1
        if rank == 1:
            return max((i for i, name in enumerate(self.files) if name == source), default=0)
        return len(self.files) + rank

    def _source_of(self, dotted: str) -> str:
        """The layer that set ``dotted``: for an item of a list (``methods.0``) the list's, for a
        check of a whole table the highest of the user's layers that set one of its keys (a command's option,
        then ``--set``, then the environment, then a file), its first such key's."""
        hits = [s for k, s in self.sources.items() if k.startswith(dotted + ".")]
        if hits:  # a table (a section's own entry names only the file that declared it)
            return max(hits, key=source_rank)   # the first of the highest
        parts = dotted.split(".")
        for key in [dotted, *(".".join(parts[:n]) for n in range(len(parts) - 1, 1, -1))]:
            if key in self.sources:
                return self.sources[key]
        return DEFAULTS

    def _renamed(self, model, values: dict, dotted: str, tell: bool = True) -> dict:
        """``values`` with the keys of an earlier release that were only renamed (``renamed_keys`` of the
        models, a new name without a note) moved to their new names, each told once in a warning naming
        where it was set; a key whose meaning changed stays, for validation to refuse."""
        import logging

        values = dict(values)
        for old, new in getattr(model, "renamed_keys", {}).items():
            if " " in new or old not in values:
                continue
            where = self._source_of(f"{dotted}.{old}")
            packaged = packaged_source(where)  # the plugin's defaults still use the old name: not the user's
            new_source = self._source_of(f"{dotted}.{new}")
            # the new key's source was this old key's, moved here when this section was read before
            new_packaged = (new not in values or packaged_source(new_source)
                            or self._moved.get(f"{dotted}.{new}") == (f"{dotted}.{old}", new_source))
            if isinstance(values.get(new), dict) and isinstance(values[old], dict):   # a table: merged
                old_table, new_table = values.pop(old), values[new]
                values[new] = ({**old_table, **new_table} if packaged and not new_packaged else
                               {**new_table, **old_table})
                values[new].update({k: v for k, v in new_table.items()   # a command's option wins, as for a key
                                    if self._source_of(f"{dotted}.{new}.{k}").startswith(OPTION_SOURCE)})
            elif (packaged or new_source.startswith(OPTION_SOURCE)) and not new_packaged:
                values.pop(old)   # the user set the new name (a command's option: over a file's old name too)
                continue
            elif new_packaged:  # not both set
                values[new] = values.pop(old)
            else:
                continue
            for key in [k for k in self.sources if k == f"{dotted}.{old}" or k.startswith(f"{dotted}.{old}.")]:
                moved = f"{dotted}.{new}{key[len(dotted) + len(old) + 1:]}"
                if self.sources.get(moved, "").startswith(OPTION_SOURCE):   # a command's option: it stays
                    continue
                if not packaged or moved not in self.sources:  # a user's value keeps its own source
                    self.sources[moved] = self.sources[key]
                    self._moved[moved] = (key, self.sources[key])
            if packaged:  # the plugin's to rename in its defaults.toml, not something the user can do
                logging.getLogger("astro").debug("%s: %s.%s: renamed to %r; read as %s.%s",
                                                 where, dotted, old, new, dotted, new)
            elif tell and f"{dotted}.{old}" not in self._renames_told:
                self._renames_told.add(f"{dotted}.{old}")
                logging.getLogger("astro").warning("%s: %s.%s: renamed to %r; read as %s.%s (rename it there)",
                                                   where, dotted, old, new, dotted, new)
        for name, field in getattr(model, "model_fields", {}).items():
            if isinstance(values.get(name), dict) and hasattr(field.annotation, "model_fields"):
                values[name] = self._renamed(field.annotation, values[name], f"{dotted}.{name}", tell)
        return values

    def _validate_section(self, section: str, values: dict) -> list[str]:
        """``"source: key: problem"`` for each problem of ``values`` as section ``section`` (none: valid)."""
        return [f"{src}: {line}" for src, line in self._problems(section, values)]

    def _problems(self, section: str, values: dict) -> list[tuple[str, str]]:
        """``(source, "key: problem")`` for each problem of ``values`` as section ``section``; when there are
        none, its model is stored in :attr:`validated`."""
        from pydantic import ValidationError

        if not isinstance(values, dict):  # `dre = 5`: a value where the section's table belongs
            return [(self._source_of(section), f"[{section}] must be a table (got {values!r}); "
                                               f"put its keys under a [{section}] line")]
        values = self._renamed(self.model_class(section), values, section)
        try:
            self.validated[section] = self.model_class(section).model_validate(values)
        except ValidationError as exc:
            out, keys = [], set()
            for err in exc.errors():
                dotted, msg, value = _explain(section, err)
                if dotted in keys and any(_UNION_MEMBER.search(str(p)) for p in err["loc"]):
                    continue  # each member of a union reports the same value: its first problem says it
                keys.add(dotted)
                shown = err["type"] in ("missing", "extra_forbidden") or value is _NONE or re.search(r"\bgot\b", msg)
                given = "" if shown else f" (got {value!r})"  # a validator's own message may show the value
                if err["type"] == "string_type" and value is not _NONE:  # a TOML date or number, read as such
                    given += "; quote a string (--set KEY='\"...\"', or in TOML KEY = \"...\")"
                if err["type"] == "extra_forbidden":
                    *table, key = dotted.split(".")[1:]
                    model = _table_model(self.model_class(section), table)
                    renamed = getattr(model, "renamed_keys", {}).get(key)
                    new, _, why = (renamed or "").partition(" ")   # "new_key (what changed)"
                    known = list(model.model_fields) if model is not None else []
                    given += (f"; renamed to {new!r}{' ' + why if why else ''}" if renamed else
                              _did_you_mean(key, known) or self._key_elsewhere(key, section)
                              or _did_you_mean(key, known, words=True))
                source = self._source_of(dotted)
                table = ".".join([section, *(str(p) for p in err["loc"] if not _UNION_MEMBER.search(str(p)))])
                if dotted != table and packaged_source(source):   # a check of the table put on a key the user
                    source = self._source_of(table)   # left alone: the layer that set one of its keys, not the defaults
                out.append((source, f"{dotted}: {msg}{given}"))
            return out
        return []

    def _key_elsewhere(self, key: str, section: str) -> str:
        """``"; it is a key of [dre.fit]"`` for a key put in the wrong table: the tables that have a key of
        that name (``section``'s own where it has one; up to three), else ``""``."""
        found: list[str] = []

        def walk(model, dotted: str) -> None:
            for name, field in getattr(model, "model_fields", {}).items():
                if name == key:
                    found.append(dotted)
                if hasattr(field.annotation, "model_fields") and dotted.count(".") < 3:
                    walk(field.annotation, f"{dotted}.{name}")

        for name in sorted(self._model_targets):
            try:
                walk(self.model_class(name), name)
            except Exception:  # a model that cannot be imported: reported on its own
                continue
        found = [t for t in found if t.split(".")[0] == section] or found   # the section's own, where it has one
        more = f" and {len(found) - 3} more" if len(found) > 3 else ""
        return f"; it is a key of [{'], ['.join(found[:3])}]{more}" if found else ""

    def section(self, name: str, flags: dict[str, Any] | None = None):
        """The validated model of section ``name``, with explicit flag values applied.

        Parameters
        ----------
        name : str
            Section, e.g. ``"dre"``.
        flags : dict, optional
            ``{"sub.key": value}`` from command-line flags; ``None`` values are
            ignored (the flag was not given).
        """
        if name in self.broken:
            from astrotool.errors import AstroError

            plugin = self._packaged.owners.get(name, name)
            raise AstroError(f"plugin {plugin!r} is broken: {self.broken[name]} (see `astro plugins`)")
        flags = {k: v for k, v in (flags or {}).items() if v is not None}
        if name in self.needs and not flags:
            raise ConfigError([self.needs_setting(name)])
        if not flags:
            if name not in self.validated:
                problems = self._validate_section(name, self.data.get(name, {}))
                if problems:
                    raise ConfigError(problems)
            return self.validated[name]
        values = copy.deepcopy(self.data.get(name, {}))
        for k, v in flags.items():
            _set_dotted(values, k, v)
            self.sources[f"{name}.{k}"] = _option_source(f"{name}.{k}", set(self._model_targets))
        problems = self._validate_section(name, values)
        if problems:
            raise ConfigError(problems)
        self.data[name] = values
        return self.validated[name]

    def needs_setting(self, name: str) -> str:
        """What section ``name`` (one of :attr:`needs`) needs the user to set, as one problem line."""
        return (f"[{name}] needs a setting: {self.needs[name]} (set it in your configuration file, "
                f"astro.toml, $ASTRO_{name.upper()}__<KEY> or --set {name}.<key>=...)")

    def resolved(self) -> dict:
        """Every section after validation, as plain JSON-ready dicts."""
        return {name: json.loads(model.model_dump_json()) for name, model in sorted(self.validated.items())}


def renamed_key_of_option(command: list[str], option: str, registry=None) -> tuple[str, str] | None:
    """``(new dotted key, what else changed)`` for ``option`` of the command ``command`` (``["dre",
    "simulate"]``) when it spells a key its table (``dre.simulate``) lists in ``renamed_keys`` (an
    option is its key with ``-`` for ``_``), else None. Whether the command has an option for the new
    key is the caller's to check."""
    from astrotool.plugins import load_target

    if not command or not option.startswith("--"):
        return None
    target = Packaged(registry).models.get(command[0])
    model = _table_model(load_target(target), command[1:]) if target else None
    for old, new in getattr(model, "renamed_keys", {}).items():
        if "--" + old.replace("_", "-") == option:
            key, _, note = new.partition(" ")
            return ".".join([*command, key]), note
    return None


def source_rank(source: str) -> int:
    """How late the kind of layer named ``source`` (a value of :attr:`Config.sources`) comes: a command's
    option 4, ``--set`` 3, the environment 2, a user's file 1, the packaged defaults 0."""
    return (4 if source.startswith(OPTION_SOURCE) else 3 if source == "--set" else
            2 if source.startswith("$") or source == "environment" else
            0 if packaged_source(source) else 1)


def packaged_source(source: str) -> bool:
    """Whether ``source`` (a layer's name, as :attr:`Config.sources` holds it) is a plugin's packaged
    defaults (``defaults (pkg/defaults.toml)``), not a user's file that happens to be called ``defaults...``."""
    return source == DEFAULTS or source.startswith(DEFAULTS + " (")


def _did_you_mean(name: str, known, words: bool = False) -> str:
    """``"; did you mean 'executor'?"`` for the one of ``known`` closest to a misspelt ``name``, else ``""``;
    ``words``: the first of ``known`` that ``name`` is a ``_``-separated word of (``days``: ``duration_days``)."""
    import difflib

    close = ([k for k in known if name in k.split("_")] if words else difflib.get_close_matches(name, list(known), n=1))
    return f"; did you mean {close[0]!r}?" if close else ""


def _table_model(model, table: list[str]):
    """The model of ``model``'s (nested) table ``table`` (``[]``: the section's own), or None when unknown."""
    for name in table:
        field = model.model_fields.get(name)
        model = field.annotation if field is not None else None
        if not hasattr(model, "model_fields"):
            return None
    return model


_NONE = object()
#: A location part that names a member of a union (``float``, ``tuple[float, float]``,
#: ``constrained-float``), not a key (no key holds ``-`` or ``[``).
_UNION_MEMBER = re.compile(r"^(int|float|str|bool|none|list|tuple|dict)$|[-\[]")


def _explain(section: str, err: dict) -> tuple[str, str, object]:
    """The dotted key, message and offending value of one pydantic error.

    Union members are dropped from the key (``snr.float`` -> ``snr``). A check of a whole table
    whose message starts with one of its keys (``"cadence_s: ..."``, ``"snr must be > 0"``) is
    put on that key, shown with that key's value rather than the whole table.
    """
    parts = [str(p) for p in err["loc"] if not _UNION_MEMBER.search(str(p))]
    msg = "unknown key" if err["type"] == "extra_forbidden" else _message(err)
    value = err.get("input", _NONE)
    if isinstance(value, dict):
        key = re.match(r"([A-Za-z_][A-Za-z0-9_]*)(:| must)", msg)
        if key and key.group(1) in value:
            parts.append(key.group(1))
            value = value[key.group(1)]
            msg = msg.removeprefix(f"{key.group(1)}: ")
        else:
            value = _NONE
    return ".".join([section, *parts]), msg, value


OPTION_SOURCE = "command-line option"
"""How a value set by a command's own option is named in messages (``command-line option --name``)."""


def _option_source(dotted: str, sections: set[str]) -> str:
    """How a key set by a flag of the running command is named: ``command-line option --name``
    (``command-line option`` outside a command, or when no option of the command sets it)."""
    import sys

    # the click of a running command line (typer >= 0.29 carries its own copy)
    click = sys.modules.get("typer._click.globals") or sys.modules.get("click.globals")
    cctx = click.get_current_context(silent=True) if click else None
    if cctx is not None:
        from astrotool.cliconfig import option_keys

        words, c = [], cctx
        while c.parent is not None:
            words.append(c.info_name)
            c = c.parent
        path = " ".join(reversed(words))
        for param in cctx.command.params:
            if getattr(param, "opts", None) and dotted in option_keys(path, param, sections):
                return f"{OPTION_SOURCE} {param.opts[-1]}"
    return OPTION_SOURCE


class Packaged:
    """The packaged defaults of every configuration section, read once.

    A section whose ``defaults.toml`` cannot be found, read or parsed marks its
    plugin broken (``astro plugins`` says why) and is left out, so that one
    plugin's packaging mistake never stops the other plugins' commands.

    Attributes
    ----------
    layers : list of (str, dict)
        ``(layer name, {section: values})`` for each readable section.
    models : dict
        ``{section: "module:Model"}`` for each readable section.
    owners : dict
        ``{section: plugin}`` for every registered section.
    broken : dict
        ``{section: why}`` for the sections left out.
    """

    def __init__(self, registry=None):
        """Read the defaults of every section ``registry`` (default: the process's) registers."""
        import tomllib
        from importlib import resources

        from astrotool.plugins import get_registry

        self.registry = registry or get_registry()
        self.layers: list[tuple[str, dict]] = []
        self.models: dict[str, str] = {}
        self.owners: dict[str, str] = {}
        self.broken: dict[str, str] = {}
        self.values: dict[str, dict] = {}
        self.targets: dict[str, str] = {}
        self.foreign: list[tuple[frozenset, str]] = []
        """``(keys, what to tell)`` of other programs' configuration files that plugins translate."""
        for plugin, sec in self.registry.config_sections():
            self.owners[sec.name] = plugin
            self.targets[sec.name] = sec.model
            if sec.foreign_keys and sec.importer:
                self.foreign.append((frozenset(sec.foreign_keys), sec.importer))
            package, _, resource = sec.defaults.partition(":")
            where = f"{package}/{resource}"
            try:
                text = resources.files(package).joinpath(resource).read_text(encoding="utf-8")
                data = tomllib.loads(text)
                values = data.get(sec.name, {})
                if not isinstance(values, dict):
                    raise ValueError(f"{sec.name} is a key, not the table [{sec.name}]")
            except tomllib.TOMLDecodeError as exc:
                self.mark_broken(sec.name, f"packaged defaults {where}: TOML syntax error: {exc}")
                continue
            except Exception as exc:  # missing file, missing package, undecodable text
                self.mark_broken(sec.name, f"packaged defaults {where}: cannot read: {type(exc).__name__}: {exc}")
                continue
            self.layers.append((f"{DEFAULTS} ({where})", {sec.name: values}))
            self.models[sec.name] = sec.model
            self.values[sec.name] = values

    def mark_broken(self, section: str, why: str) -> None:
        """Leave ``section`` out and mark the plugin that registered it broken, saying why."""
        why = f"config section [{section}]: {why}"
        self.broken[section] = why
        self.models.pop(section, None)
        self.layers = [(n, d) for n, d in self.layers if section not in d]
        self.registry.mark_broken(self.owners.get(section, ""), why)

    def check(self, section: str) -> str:
        """Why the packaged defaults of ``section`` are unusable whatever the user sets (``""`` when
        they are usable).

        The model must import, and accept the defaults, read as in validation (keys that were only
        renamed under their new names). What the defaults leave to the user is not the plugin's
        fault: a required key (a ``missing`` error) or a check of a whole table (a model's
        validator, e.g. "set catalog or url" while the defaults leave both empty).
        """
        from pydantic import ValidationError

        from astrotool.plugins import load_target

        target = self.models[section]
        try:
            model = load_target(target)
        except Exception as exc:
            return f"model {target} cannot be loaded: {type(exc).__name__}: {exc}"
        try:
            values = Config({}, {}, {})._renamed(model, self.values.get(section, {}), section, tell=False)
            model.model_validate(values)
        except ValidationError as exc:
            bad = [_packaged_error(e) for e in exc.errors() if not _left_to_the_user(e)]
            return f"packaged defaults are invalid: {'; '.join(bad)}" if bad else ""
        except Exception as exc:  # a validator's own bug, met on the packaged defaults
            return f"model {target} raised on the packaged defaults: {type(exc).__name__}: {exc}"
        return ""

    def check_all(self) -> None:
        """Check every section's defaults against its model, marking the broken ones (``astro plugins``)."""
        for section in list(self.models):
            why = self.check(section)
            if why:
                self.mark_broken(section, why)


_EMPTY = ("", None, [], {})


def _left_to_the_user(err: dict) -> bool:
    """Whether an error of the packaged defaults alone is the user's to fix: a required key the defaults
    leave out, or a check of a whole table that the defaults leave a key of empty (``""``, ``[]``...: what
    the user must set, e.g. one of two keys). A table check failing on a table the defaults fill
    (``path = "foo"`` where the check wants ``{stem}``) is the defaults' own mistake."""
    table = err.get("input")
    return err["type"] == "missing" or (isinstance(table, dict) and any(v in _EMPTY for v in table.values())
                                        and err["type"] in ("value_error", "assertion_error", "assertion"))


def _message(err: dict) -> str:
    """A pydantic error's message as the check said it, without pydantic's ``Value error, `` prefix."""
    return err["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")


def _packaged_error(err: dict) -> str:
    """``key: message`` of an error of the packaged defaults; the message alone for the whole section."""
    key = ".".join(str(p) for p in err["loc"] if not _UNION_MEMBER.search(str(p)))
    return f"{key}: {_message(err)}" if key else _message(err)


def defaults_layers(registry=None) -> tuple[list[tuple[str, dict]], dict[str, str]]:
    """Packaged defaults of every section and the model target of each.

    A section whose defaults cannot be read is left out and its plugin marked broken
    (see :class:`Packaged`).
    """
    packaged = Packaged(registry)
    return packaged.layers, packaged.models


def load(workspace: str | os.PathLike | None = None, cfg_files: list[str] | None = None,
         sets: list[str] | None = None, flags: dict[str, Any] | None = None,
         environ: dict[str, str] | None = None, registry=None, validate: bool = True) -> Config:
    """Build the configuration from every layer.

    Parameters
    ----------
    workspace : path-like, optional
        Workspace folder whose ``astro.toml`` is a layer.
    cfg_files : list of str, optional
        ``--cfg`` files in order.
    sets : list of str, optional
        ``--set section.key=value`` assignments.
    flags : dict, optional
        Dotted keys from global flags (``{"core.jobs": 4}``), highest priority.
    environ : dict, optional
        Environment to read ``ASTRO_*`` variables from (default ``os.environ``).
    registry : astrotool.plugins.Registry, optional
        Where the sections come from.
    validate : bool
        Validate every section (raising :class:`ConfigError`).
    """
    packaged = Packaged(registry)
    layers, models = list(packaged.layers), packaged.models
    problems: list[str] = []

    def file_layer(path: Path, named_by: str = "") -> None:
        try:
            layers.append((str(path), read_toml(path)))
        except ConfigError as exc:
            problems.extend(named_by + p for p in exc.problems)

    if os.environ.get("ASTRO_CONFIG") == "":   # `export ASTRO_CONFIG=$CFG` with CFG unset: not "no file"
        problems.append("$ASTRO_CONFIG is set but empty: name a file, /dev/null to read none, or unset it to "
                        "read $XDG_CONFIG_HOME/astro/config.toml")
    user = user_config_path()
    for path in file_layers(workspace, cfg_files):
        file_layer(path, "$ASTRO_CONFIG: " if path == user and os.environ.get("ASTRO_CONFIG") else "")
    if problems:
        raise ConfigError(problems)

    data: dict = {}
    sources: dict[str, str] = {}
    for name, layer in layers:
        _merge(data, layer, name, sources)
    env_tree, env_names = env_layer(environ)
    keys_of: dict[str, dict | None] = {}

    def section_keys(section: str) -> dict | None:
        """The keys of ``section`` (``None``: no such section), read only for a variable that may name one."""
        if section not in keys_of:
            keys_of[section] = None
            if section in packaged.owners:
                from astrotool.plugins import load_target

                try:
                    model = load_target(packaged.targets[section])
                except Exception:  # a broken plugin's model: its defaults' keys still count
                    model = None
                keys_of[section] = _known_keys(model, packaged.values.get(section, {}))
        return keys_of[section]

    for warning in env_typos(environ, section_keys):
        if warning not in _ENV_TYPOS_TOLD:  # told once, however often the configuration is loaded
            _ENV_TYPOS_TOLD.add(warning)
            import logging

            logging.getLogger("astro").warning("%s", warning)
    _merge(data, env_tree, "env", sources)
    sources.update({k: v for k, v in env_names.items()})
    for k in list(sources):
        if sources[k] == "env":   # a key of an inline table (ASTRO_DRE__MODELS='{...}'): its variable's name
            parts = k.split(".")
            sources[k] = next((env_names[p] for p in (".".join(parts[:n]) for n in range(len(parts), 0, -1))
                               if p in env_names), "environment")
    _merge(data, set_layer(sets or []), "--set", sources)
    flag_tree: dict = {}
    for k, v in (flags or {}).items():
        if v is not None:
            _set_dotted(flag_tree, k, v)
    _merge(data, flag_tree, OPTION_SOURCE, sources)
    from astrotool.context import GLOBAL_OPTIONS

    for option in GLOBAL_OPTIONS:   # --executor, -j/--jobs, --seed: named as the command line spelled them
        if sources.get(option.config_key) == OPTION_SOURCE:
            sources[option.config_key] = f"{OPTION_SOURCE} {option.names[-1]}"
    config = Config(data, sources, models, packaged)
    config.files = [name for name, _ in layers]
    return config.validate() if validate else config


def validate_file(path: str | os.PathLike, registry=None) -> Config:
    """Validate one TOML file layered on the packaged defaults (``astro config validate``)."""
    return load(cfg_files=[str(path)], environ={}, registry=registry)


def schema(registry=None) -> dict:
    """JSON Schema of the whole configuration, one property per section."""
    packaged = Packaged(registry)
    packaged.check_all()
    from astrotool.plugins import load_target

    props = {name: load_target(target).model_json_schema() for name, target in sorted(packaged.models.items())}
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "astrotool configuration",
            "type": "object", "properties": props, "additionalProperties": False}


def to_toml(tree: dict) -> str:
    """Render a nested dict as TOML (tables for dicts, inline values otherwise)."""
    lines: list[str] = []

    def value(v) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v) if not (isinstance(v, float) and v != v) else "nan"
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{" + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + "}"
        return json.dumps(str(v))

    def table(prefix: str, node: dict) -> None:
        scalars = {k: v for k, v in node.items() if not isinstance(v, dict)}
        subs = {k: v for k, v in node.items() if isinstance(v, dict)}
        if prefix and (scalars or not subs):
            lines.append(f"[{prefix}]")
        for k, v in scalars.items():
            lines.append(f"# {k} is unset" if v is None else f"{k} = {value(v)}")
        if prefix and scalars:
            lines.append("")
        for k, v in subs.items():
            table(f"{prefix}.{k}" if prefix else k, v)

    table("", tree)
    return "\n".join(lines).rstrip() + "\n"
