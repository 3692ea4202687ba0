"""The ``astro`` command tree as documentation: walk it, write its reference, check it.

The documentation build (``make docs``) writes the CLI reference with
:func:`cli_reference_markdown`; the tests use :func:`missing_from_reference` to
fail when a command or option is missing from it, and
:func:`check_command_line` to make sure every ``astro ...`` command line shown in
the guides names a real command and real options.

Unlike ``astro --help``, which stays lazy, this module imports every plugin's
command module (:func:`root_command`), so it sees the same commands and options
a user can run. It is documentation tooling, not part of the ``astrotool``
package: ``docs/build.py`` and ``tests/core/test_docs.py`` import it from here.
"""

from __future__ import annotations

import html
import inspect
import re
import shlex
import types
import typing
from enum import Enum
from pathlib import PurePath
from typing import Any, Iterator, NamedTuple

__docformat__ = "numpy"

PROG = "astro"
# options every typer app gets; documented once, on the root command
_HOUSEKEEPING = {"help", "install_completion", "show_completion"}
_TYPE_NAMES = {"str": "text", "int": "integer", "float": "number", "bool": "boolean",
               "Path": "path", "PurePath": "path", "datetime": "date/time"}


class LoadProblem(NamedTuple):
    """A plugin command group that could not be imported (shown in the reference)."""

    path: str
    error: str


# ------------------------------------------------------------------------------ walking
def _click():
    from typer import _click  # typer >= 0.26 ships its own click

    return _click


def _context(cmd, name: str, parent=None):
    settings = dict(getattr(cmd, "context_settings", None) or {})
    return _click().Context(cmd, info_name=name, parent=parent, **settings)


def root_command(problems: list[LoadProblem] | None = None):
    """The root ``astro`` group with every plugin's command group imported.

    Parameters
    ----------
    problems : list, optional
        Receives a :class:`LoadProblem` for each command group that failed to
        mount; it stays a stub whose help names the error.

    Returns
    -------
    group
        The click group of ``astro`` (global options are its parameters), core
        commands first, then the plugins by name.
    """
    from astrotool.cli import build_app, mount_all

    group = build_app()._astro_group
    failed = mount_all(group)
    for path, error in failed:
        stub = _find(group, path)
        known = stub.spec.help if stub.spec.help != error else ""
        stub.help = f"{known}\n\nNot available in this build: {error}".strip()
    if problems is not None:
        problems += [LoadProblem(path, error) for path, error in failed]
    core = [n for n, c in group.commands.items() if getattr(c, "rich_help_panel", None) == "Core"]
    group.commands = {n: group.commands[n] for n in core + sorted(set(group.commands) - set(core))}
    return group


def _find(group, path: str):
    """The command at ``path`` (``"astro lens kappa"``) under the root ``group``."""
    cmd = group
    for word in path.split()[1:]:
        cmd = cmd.commands[word]
    return cmd


def iter_commands(root=None, problems: list[LoadProblem] | None = None) -> Iterator[tuple[str, Any]]:
    """Every command of ``astro``, depth first, the root included.

    Parameters
    ----------
    root : click command, optional
        The tree to walk (default: :func:`root_command`).
    problems : list, optional
        Receives the command groups that failed to import (see :func:`root_command`).

    Yields
    ------
    path : str
        The command path, e.g. ``"astro dre fit"``.
    command : click command
        The command (a group for ``"astro"``, ``"astro dre"``, ...).
    """
    root = root if root is not None else root_command(problems)
    yield from _walk(root, PROG, None)


def _walk(cmd, path: str, parent_ctx) -> Iterator[tuple[str, Any]]:
    ctx = _context(cmd, path.rsplit(" ", 1)[-1], parent_ctx)
    yield path, cmd
    if hasattr(cmd, "list_commands"):
        for name in cmd.list_commands(ctx):
            sub = cmd.get_command(ctx, name)
            if sub is None or getattr(sub, "hidden", False):
                continue
            yield from _walk(sub, f"{path} {name}", ctx)


def command_paths(root=None) -> list[str]:
    """The command paths of :func:`iter_commands`."""
    return [path for path, _ in iter_commands(root)]


# ------------------------------------------------------------------------------ describing
class ParamDoc(NamedTuple):
    """One argument or option as documented."""

    kind: str  # "argument" or "option"
    names: str  # "-j, --jobs" or "FILES"
    type: str
    default: str
    required: bool
    help: str
    opts: tuple  # every spelling, for checks


def _unwrap_optional(ann):
    origin = typing.get_origin(ann)
    if origin is typing.Union or (hasattr(types, "UnionType") and origin is types.UnionType):
        args = [a for a in typing.get_args(ann) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return ann


def _type_text(param) -> str:
    if getattr(param, "count", False):
        return "count"
    if getattr(param, "is_flag", False):
        return "flag"
    td = getattr(param, "type_descriptor", None)
    if td is not None:
        choices = getattr(td, "choices", None)
        text = None
        if choices:
            text = " | ".join(str(getattr(c, "value", c)) for c in choices)
        ann = _unwrap_optional(td.annotation)
        repeat = typing.get_origin(ann) in (list, tuple, set)
        if repeat:
            args = typing.get_args(ann)
            ann = _unwrap_optional(args[0]) if args else str
        if text is None:
            if isinstance(ann, type) and issubclass(ann, Enum):
                text = " | ".join(str(m.value) for m in ann)
            elif typing.get_origin(ann) is typing.Literal:
                text = " | ".join(str(a) for a in typing.get_args(ann))
            else:
                name = getattr(ann, "__name__", str(ann))
                text = _TYPE_NAMES.get(name, name)
        return text
    ptype = getattr(param, "type", None)  # plain click
    return str(getattr(ptype, "name", "") or "")


def _default_text(param) -> str:
    if getattr(param, "is_flag", False) and not getattr(param, "secondary_opts", None):
        return ""
    if getattr(param, "show_default", True) is False:
        return ""
    if isinstance(getattr(param, "show_default", None), str):
        return param.show_default
    value = getattr(param, "default", None)
    if callable(value):
        return "(dynamic)"
    if value is None or value == () or value == []:
        return ""
    if isinstance(value, (list, tuple)):
        return ", ".join(_plain(v) for v in value)
    return _plain(value)


def _plain(value) -> str:
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def describe_params(cmd, ctx=None, include_housekeeping: bool = False) -> list[ParamDoc]:
    """Arguments and options of ``cmd``, in the order ``--help`` shows them.

    Parameters
    ----------
    cmd : click command
    ctx : click context, optional
    include_housekeeping : bool
        Also list ``--help``, ``--install-completion`` and ``--show-completion``.
    """
    ctx = ctx if ctx is not None else _context(cmd, cmd.name or PROG)
    out = []
    for p in cmd.get_params(ctx):
        if getattr(p, "hidden", False):
            continue
        if p.name in _HOUSEKEEPING and not include_housekeeping:
            continue
        kind = getattr(p, "param_type_name", "option")
        help_text = inspect.cleandoc(getattr(p, "help", None) or "")
        if kind == "argument":
            names = (p.metavar or p.name or "").upper()
            if p.nargs == -1:
                names += "..."
            opts: tuple = ()
        else:
            opts = tuple(p.opts) + tuple(p.secondary_opts)
            names = ", ".join(p.opts)
            if p.secondary_opts:
                names += " / " + ", ".join(p.secondary_opts)
        typ = _type_text(p)
        if getattr(p, "multiple", False) and kind == "option":
            typ += " (repeatable)"
        out.append(ParamDoc(kind, names, typ, _default_text(p), bool(getattr(p, "required", False)),
                            help_text, opts))
    return out


def _help_text(cmd) -> str:
    text = getattr(cmd, "help", None) or getattr(cmd, "short_help", None) or ""
    return inspect.cleandoc(text).partition("\f")[0].replace("\b\n", "").strip()


def _short_help(cmd) -> str:
    text = _help_text(cmd)
    first = text.split("\n\n", 1)[0].replace("\n", " ").strip()
    return first


# ------------------------------------------------------------------------------ markdown
_CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.S)


def _escape_text(text: str) -> str:
    """Escape prose from help strings for Markdown: HTML, emphasis, math and table pipes."""
    out = []
    pos = 0
    for m in _CODE_SPAN.finditer(text):
        out.append(_escape_plain(text[pos:m.start()]))
        out.append(m.group(0).replace("|", "\\|"))
        pos = m.end()
    out.append(_escape_plain(text[pos:]))
    return "".join(out)


def _escape_plain(text: str) -> str:
    text = html.escape(text, quote=False)
    for ch, rep in (("\\", "\\\\"), ("*", "\\*"), ("_", "\\_"), ("[", "\\["), ("]", "\\]"),
                    ("|", "&#124;"), ("$", "&#36;")):
        text = text.replace(ch, rep)
    return text


def _cell(text: str) -> str:
    return _escape_text(" ".join(text.split())) if text else ""


def _anchor(path: str) -> str:
    return "-".join(path.split())


def _section(path: str, cmd, ctx, root: bool = False) -> str:
    lines = [f"## {path}", ""]
    help_text = _help_text(cmd)
    if help_text:
        lines += [_escape_text(help_text), ""]
    usage = " ".join(cmd.collect_usage_pieces(ctx))
    if root:
        usage = "[GLOBAL OPTIONS] COMMAND [ARGS]..."
    lines += ["```text", f"{path} {usage}".rstrip(), "```", ""]
    params = describe_params(cmd, ctx, include_housekeeping=root)
    args = [p for p in params if p.kind == "argument"]
    opts = [p for p in params if p.kind != "argument"]
    if args:
        lines += ["**Arguments**", "", "| argument | type | required | description |", "|---|---|---|---|"]
        for p in args:
            lines.append(f"| `{p.names}` | {_cell(p.type)} | {'yes' if p.required else 'no'} | {_cell(p.help)} |")
        lines.append("")
    if opts:
        title = "**Global options** (accepted before or after any sub-command)" if root else "**Options**"
        lines += [title, "", "| option | type | default | description |", "|---|---|---|---|"]
        for p in opts:
            req = " (required)" if p.required else ""
            lines.append(f"| `{p.names}` | {_cell(p.type)} | {_cell(p.default)} | {_cell(p.help)}{req} |")
        lines.append("")
    if hasattr(cmd, "list_commands"):
        subs = [(n, cmd.get_command(ctx, n)) for n in cmd.list_commands(ctx)]
        subs = [(n, c) for n, c in subs if c is not None and not getattr(c, "hidden", False)]
        if subs:
            lines += ["**Commands**", ""]
            for n, c in subs:
                sub_path = f"{path} {n}"
                lines.append(f"- [{sub_path}](#{_anchor(sub_path)}): {_escape_text(_short_help(c))}")
            lines.append("")
    return "\n".join(lines)


def cli_reference_markdown(root=None, problems: list[LoadProblem] | None = None) -> str:
    """The CLI reference: one section per command path with its help, usage,
    arguments and options (name, type, default, description).

    Parameters
    ----------
    root : click command, optional
        The tree to document (default: :func:`root_command`).
    problems : list, optional
        Receives the command groups that failed to import.

    Returns
    -------
    str
        Markdown; each command starts with a heading ``## astro <path>``.
    """
    from astrotool.cli import GLOBAL_HELP

    root = root if root is not None else root_command(problems)
    parts = [
        "Every `astro` command with its arguments and options, generated from the installed "
        "command tree. Options shown without a default take their value from the configuration "
        "(see `astro config show --sources`); a command-line value overrides it.",
        "",
        _escape_text(GLOBAL_HELP),
        "",
        "Exit codes: 0 success; 1 some items failed (a table of failures is printed); "
        "2 usage, configuration or input error; 130 interrupted (Ctrl-C); 143 terminated (SIGTERM).",
        "",
    ]
    ctxs: dict[str, Any] = {}
    for path, cmd in iter_commands(root):
        parent = ctxs.get(path.rsplit(" ", 1)[0]) if " " in path else None
        ctx = _context(cmd, path.rsplit(" ", 1)[-1], parent)
        ctxs[path] = ctx
        parts.append(_section(path, cmd, ctx, root=(path == PROG)))
    return "\n".join(parts).rstrip() + "\n"


# ------------------------------------------------------------------------------ checks
_HEADING = re.compile(r"^#{1,6}\s+`?(astro(?: [\w.-]+)*)`?\s*$", re.M)


def reference_sections(markdown: str) -> dict[str, str]:
    """Split a CLI reference into ``{command path: section text}``."""
    marks = list(_HEADING.finditer(markdown))
    out = {}
    for i, m in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(markdown)
        out[m.group(1)] = markdown[m.end():end]
    return out


def missing_from_reference(markdown: str, root=None) -> list[str]:
    """What the reference lacks: command paths without a section, and options
    (``"astro dre fit --n-tiles"``) not named in their command's section.

    Also checks that every spelling of every global option
    (:data:`astrotool.context.GLOBAL_OPTIONS`) is in the ``astro`` section. An empty list means the reference is complete.
    """
    from astrotool.context import GLOBAL_OPTIONS

    root = root if root is not None else root_command()
    sections = reference_sections(markdown)
    missing = []
    for path, cmd in iter_commands(root):
        if path not in sections:
            missing.append(path)
            continue
        body = sections[path]
        wanted = [o for p in describe_params(cmd, include_housekeeping=(path == PROG)) for o in p.opts]
        if path == PROG:
            wanted += [name for o in GLOBAL_OPTIONS for name in o.names]
        for opt in dict.fromkeys(wanted):
            if not re.search(rf"(?<![\w-]){re.escape(opt)}(?![\w-])", body):
                missing.append(f"{path} {opt}")
    return missing


class Resolved(NamedTuple):
    """A command line resolved against the command tree."""

    path: str
    problems: list


def check_command_line(line: str | list[str], root=None) -> Resolved:
    """Resolve an ``astro ...`` command line against the real command tree.

    Parameters
    ----------
    line : str or list of str
        The words after ``astro`` (a string is split like a shell does).
    root : click command, optional
        The tree (default: :func:`root_command`).

    Returns
    -------
    Resolved
        ``path``: the command the line runs; ``problems``: unknown commands
        and unknown options (empty when the line is valid).
    """
    from astrotool.cli import global_option

    words = shlex.split(line, comments=True) if isinstance(line, str) else list(line)
    cmd = root if root is not None else root_command()
    ctx = _context(cmd, PROG)
    path = PROG
    problems: list[str] = []
    i = 0
    while i < len(words):
        w = words[i]
        if w == "--":
            break
        name, eq, _ = w.partition("=") if w.startswith("--") else (w, "", "")
        option = global_option(name)
        if option is not None:
            i += 2 if (option.takes_value and not eq) else 1
            continue
        if w in ("-vv", "-vvv", "-h", "--help", "--version"):
            i += 1
            continue
        if w.startswith("-") and len(w) > 1:
            opt = _find_option(cmd, ctx, name)
            if opt is None:
                problems.append(f"{path}: no such option {name}")
                i += 1
                continue
            takes_value = not (getattr(opt, "is_flag", False) or getattr(opt, "count", False))
            i += 2 if (takes_value and not eq) else 1
            continue
        if w.startswith(("<", "{", "[")):
            break  # a placeholder such as <FILE>
        if hasattr(cmd, "list_commands"):
            sub = cmd.get_command(ctx, w)
            if sub is None:
                problems.append(f"{path}: no such command {w!r}")
                break
            cmd, path = sub, f"{path} {w}"
            ctx = _context(cmd, w, ctx)
        i += 1  # an argument of a leaf command
    return Resolved(path, problems)


def _find_option(cmd, ctx, name: str):
    for p in cmd.get_params(ctx):
        if getattr(p, "param_type_name", "") == "option" and name in (*p.opts, *p.secondary_opts):
            return p
    return None


def _astro_calls(line: str) -> list[str]:
    """The arguments of each ``astro`` call in one shell line."""
    line = re.sub(r"(?:^|\s)\d*(?:>>?|<)&?\s*\S+", " ", line)  # redirections
    lex = shlex.shlex(line, posix=True, punctuation_chars=";&|()")
    lex.whitespace_split = True
    try:
        tokens = list(lex)
    except ValueError:  # unbalanced quotes: not a command line
        return []
    calls, current = [], None
    for tok in tokens + [";"]:
        if tok and set(tok) <= set(";&|()"):
            if current is not None:
                calls.append(" ".join(t if re.fullmatch(r"[^\s'\"\\]+", t) else shlex.quote(t) for t in current))
            current = None
        elif current is not None:
            current.append(tok)
        elif tok == PROG or tok.endswith("/" + PROG):
            current = []
    return calls


_FENCE = re.compile(r"^(?P<ind>[ \t]*)(?P<fence>```+|~~~+)[ \t]*(?P<lang>[\w+-]*)[^\n]*\n(?P<body>.*?)^(?P=ind)(?P=fence)[ \t]*$",
                    re.M | re.S)
_SHELL_LANGS = {"", "bash", "sh", "shell", "console", "shell-session", "zsh", "text"}
_PROGRAM = re.compile(r"(?:^|[\s;&|(])(?:\S*/)?astro(?=\s|$)")


def command_lines(markdown: str) -> list[str]:
    """``astro ...`` invocations in a Markdown text: from shell code blocks (line
    continuations joined, comments dropped, one entry per ``astro`` call) and from
    inline code spans that start with ``astro ``.

    Returns
    -------
    list of str
        The words after ``astro`` of each call, as one string.
    """
    found = []
    for m in _FENCE.finditer(markdown):
        if m.group("lang").lower() not in _SHELL_LANGS:
            continue
        body = re.sub(r"\\\n", " ", m.group("body"))
        for raw in body.splitlines():
            line = raw.strip()
            if line.startswith("$ "):
                line = line[2:]
            if not line or line.startswith("#"):
                continue
            found += _astro_calls(line)
    outside = _FENCE.sub("", markdown)
    for m in _CODE_SPAN.finditer(outside):
        code = m.group(2).strip()
        if code == PROG or code.startswith(PROG + " "):
            found.append(code[len(PROG):].strip())
    return found
