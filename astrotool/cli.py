"""The ``astro`` command line.

Global options work before or after the sub-command (``astro -q dre fit`` and
``astro dre fit -q`` are the same): they are taken out of the argument list
before Typer parses the rest; they are defined once, in
:data:`astrotool.context.GLOBAL_OPTIONS`. Plugin command groups are mounted
lazily (:class:`LazyCommand`): ``astro --help`` shows the one-line help each
plugin registered and imports a plugin's command module only when one of its
commands runs. A group can mount under another plugin's group
(``CommandSpec("sub", ..., parent="lens")`` puts ``sub`` under ``lens``); its module is
imported only when it runs, not for ``astro lens --help``.

Exit codes: 0 success; 1 some items failed (a table of failures is printed);
2 usage, configuration or input error (one clear message, no traceback unless
``--traceback``), also when items failed and every one of them on bad input (the
others finished; the table names each file and its problem); 130 interrupted
(Ctrl-C), 143 terminated (SIGTERM).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading

import typer
from typer.core import TyperGroup

from astrotool import __version__
from astrotool.context import GLOBAL_OPTIONS, RESERVED_OPTION_NAMES, Context, GlobalOptions, set_current

__docformat__ = "numpy"


def _global_help() -> str:
    """The epilog of ``astro --help``: every global option in one line."""
    parts = []
    for o in GLOBAL_OPTIONS:
        text = "/".join(o.names) + (f" {o.metavar}" if o.metavar else "")
        parts.append(text + (" (repeatable)" if o.repeatable else "") + ("/-vv" if o.count else ""))
    return "Global options (before or after the sub-command): " + ", ".join(parts) + "."


GLOBAL_HELP = _global_help()
"""Epilog of the root command's help: one sentence listing the global options."""
_BY_NAME = {n: o for o in GLOBAL_OPTIONS for n in o.names}


class UsageProblem(Exception):
    """A malformed global option."""


class Interrupted(Exception):
    """Ctrl-C or SIGTERM during a command (carried past Typer, which would swallow it)."""


def global_option(name: str):
    """The :class:`astrotool.context.GlobalOption` spelled ``name`` (``"-j"``, ``"--seed"``), else ``None``."""
    return _BY_NAME.get(name)


def split_global_options(argv: list[str]) -> tuple[GlobalOptions, list[str]]:
    """Take the global options out of ``argv`` wherever they are (up to ``--``).

    Returns
    -------
    options : GlobalOptions
    rest : list of str
        The arguments left for Typer.

    Raises
    ------
    UsageProblem
        An option without its value, or with a value it does not accept.
    """
    values: dict = {}
    rest: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            rest += argv[i:]
            break
        name, eq, inline = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        flags, attached = _short_bundle(arg)
        for o in flags:   # -qv, -vv: flags bundled, as getopt reads them
            values[o.attr] = values.get(o.attr, 0) + 1 if o.count else True
        if attached is not None:   # -j2, -wDIR, -vj2: the value attached
            name, eq, inline = attached
        elif flags:
            i += 1
            continue
        opt = _BY_NAME.get(name)
        if opt is None:
            rest.append(arg)
        elif opt.count:
            values[opt.attr] = values.get(opt.attr, 0) + 1
        elif not opt.takes_value:
            values[opt.attr] = True
        else:
            if eq:
                text = inline
            elif i + 1 < len(argv):
                i += 1
                text = argv[i]
            else:
                raise UsageProblem(f"option {name} requires a value")
            try:
                value = opt.parse(text)
            except ValueError as exc:
                raise UsageProblem(str(exc)) from None
            if opt.repeatable:
                values.setdefault(opt.attr, []).append(value)
            else:
                values[opt.attr] = value
        i += 1
    return GlobalOptions(**values), rest


def _short_bundle(arg: str) -> tuple[list, tuple[str, str, str] | None]:
    """A bundle of global short options (``-qv``, ``-j2``, ``-vj2``, ``-w/scratch``) read as getopt reads it: its
    flags, and the option that takes the rest of the argument as its value (``("-j", "=", "2")``; ``("-j", "",
    "")`` at its end: the next argument), if any;
    ``([], None)`` for anything else (``-n2``, a plugin's option, is left to its command)."""
    if len(arg) < 3 or arg[0] != "-" or arg[1] == "-":
        return [], None
    flags = []
    for k, c in enumerate(arg[1:], start=1):
        o = _BY_NAME.get("-" + c)
        if o is None:
            return [], None
        if o.takes_value:
            return flags, ("-" + c, "=", arg[k + 1:]) if k + 1 < len(arg) else ("-" + c, "", "")   # -qj 2
        flags.append(o)
    return flags, None


COMMAND_EPILOG = ("Global options (-w DIR, --cfg FILE, --set KEY=VALUE, -q, -v, -j N, --executor, --shard, --seed, "
                  "--overwrite, --json, ...) go before or after the sub-command; `astro --help` lists them.")
"""The epilog of every command's help but the root's (which lists the global options)."""


def _plain_markup(cmd) -> None:
    """Help text is plain text everywhere (units like ``[px]`` must not be read as rich markup), and every
    command's help ends by pointing to the global options."""
    cmd.rich_markup_mode = None
    if not getattr(cmd, "epilog", None):
        cmd.epilog = COMMAND_EPILOG
    for param in getattr(cmd, "params", []):   # an on/off pair shows its default as the option: --mosaics
        pair = getattr(param, "secondary_opts", None) and getattr(param, "is_flag", False)
        if pair and isinstance(param.default, bool) and param.show_default in (None, True):
            from astrotool.cliconfig import show_default

            show_default(param, (param.opts if param.default else param.secondary_opts)[0])
    for sub in getattr(cmd, "commands", {}).values():
        _plain_markup(sub)


def _reserved_options(cmd, path: str):
    """``(command path, option)`` for each option of ``cmd`` and its loaded sub-commands
    spelled like a global option (the pre-parser would take it away from the command)."""
    for param in getattr(cmd, "params", []):
        if getattr(param, "param_type_name", "") == "option":
            for name in (*param.opts, *param.secondary_opts):
                if name in RESERVED_OPTION_NAMES:
                    yield path, name
    for name, sub in getattr(cmd, "commands", {}).items():
        if not isinstance(sub, LazyCommand):
            yield from _reserved_options(sub, f"{path} {name}")


def _mark_broken(plugin: str, error: str) -> None:
    from astrotool.plugins import get_registry

    get_registry().mark_broken(plugin, error)


class LazyCommand(TyperGroup):
    """A mounted command group that imports its plugin module only when used.

    Until then it carries only what the plugin registered (name, one-line help,
    panel), which is all ``astro --help`` (or its parent group's help) shows.
    Parsing its arguments (running it, or ``--help`` on it) mounts the real
    command: the target is imported, its options are checked against the global
    options, and the commands registered under it (``CommandSpec.parent``) are
    attached, lazily in turn.

    Parameters
    ----------
    path : str
        Command path without ``astro``, e.g. ``"lens"`` or a nested ``"lens sub"``.
    spec : astrotool.hookspecs.CommandSpec
        What the plugin registered.
    plugin : str
        The plugin that registered it.
    broken : str
        Why the plugin cannot be used (empty when it can).
    """

    def __init__(self, path: str, spec, plugin: str, broken: str = ""):
        super().__init__(name=spec.name, help=f"[broken plugin] {broken}" if broken else spec.help,
                         rich_help_panel=spec.panel, rich_markup_mode=None)
        self.path, self.spec, self.plugin, self.broken = path, spec, plugin, broken
        self.children: list[LazyCommand] = []
        self._real = None

    def load(self):
        """The real command, imported and mounted on first use.

        Raises
        ------
        astrotool.errors.AstroError
            The plugin is broken, its module cannot be imported, or one of its
            options is spelled like a global option (the plugin is then marked
            broken, as ``astro plugins`` shows).
        """
        if self._real is None:
            self._real = self._mount()
        return self._real

    def _refuse(self, error: str):
        from astrotool.errors import AstroError

        _mark_broken(self.plugin, error)
        self.broken = error
        return AstroError(f"plugin {self.plugin!r}: {error} (see `astro plugins`)")

    def _mount(self):
        from astrotool.errors import AstroError
        from astrotool.plugins import load_target

        if self.broken:
            raise AstroError(f"plugin {self.plugin!r} is broken: {self.broken} (see `astro plugins`)")
        try:
            target = load_target(self.spec.target)
            cmd = typer.main.get_command(target) if isinstance(target, typer.Typer) else target
        except Exception as exc:
            raise self._refuse(f"cannot load command `astro {self.path}` ({self.spec.target}): "
                               f"{type(exc).__name__}: {exc}") from exc
        # completion is installed once, on the root command, not per plugin
        cmd.params = [p for p in cmd.params if p.name not in ("install_completion", "show_completion")]
        for path, option in _reserved_options(cmd, f"astro {self.path}"):
            owner = "/".join(global_option(option).names)
            raise self._refuse(f"`{path}` defines option {option}, which is the global option {owner}; "
                               "rename the command's option")
        _plain_markup(cmd)
        from astrotool.cliconfig import describe_options

        describe_options(cmd, self.path)
        cmd.name = self.spec.name
        cmd.rich_help_panel = self.spec.panel
        if not cmd.help:
            cmd.help = self.spec.help
        for child in self.children:
            subs = getattr(cmd, "commands", None)
            if subs is None:
                child._refuse(f"cannot mount `astro {child.path}`: `astro {self.path}` is not a command group")
            elif child.spec.name in subs:
                child._refuse(f"cannot mount `astro {child.path}`: `astro {self.path}` already has a command "
                              f"{child.spec.name!r}")
            else:
                subs[child.spec.name] = child
        return cmd

    def make_context(self, info_name, args, parent=None, **extra):
        """The real command's context: parsing the arguments mounts it."""
        from astrotool.errors import AstroError

        try:
            real = self.load()
        except AstroError:
            if extra.get("resilient_parsing") or getattr(parent, "resilient_parsing", False):
                return super().make_context(info_name, args, parent=parent, **extra)  # shell completion
            raise
        if not hasattr(real, "commands"):   # a command, not a group: the words after it are its arguments,
            from astrotool import context   # not part of the name of its run (`astro init DIR` is `init`)

            if context._CURRENT is not None:
                context._CURRENT.command = self.path
        return real.make_context(info_name, args, parent=parent, **extra)


class RootGroup(TyperGroup):
    """The ``astro`` group: its sub-commands are :class:`LazyCommand` mounts."""

    mounts: set = set()
    """Every mounted command path, e.g. ``{"dre", "lens", "lens sub", ...}`` (``sub`` mounted under ``lens``)."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as exc:
            raise Interrupted(str(exc)) from exc


SYNONYMS = {"check": ("validate",), "lint": ("validate",), "verify": ("validate",), "list": ("show", "status"),
            "ls": ("status",), "info": ("status", "show"), "run-all": ("run",),
            "analyze": ("evaluate",), "analyse": ("evaluate",), "score": ("evaluate",), "test": ("evaluate",),
            "evaluate": ("score",)}
"""Words a user may try for a command of another name (``astro config check``: ``validate``)."""


def _synonym_hint(exc) -> str:
    """A hint for a command not found that click's spelling suggestion misses: a synonym of a command of
    that group (``check`` for ``validate``), or ``--help`` for ``help``."""
    import re

    m = re.match(r"No such command '(.+)'\.$", exc.message)
    if m is None:
        return ""
    word = m.group(1)
    if word == "help":
        return " Use --help: `astro --help`, `astro COMMAND --help`."
    names = getattr(getattr(getattr(exc, "ctx", None), "command", None), "commands", {})
    found = [n for n in SYNONYMS.get(word, ()) if n in names]
    return f" Did you mean {found[0]!r}?" if found else ""


def _completer(choices: list[str]):
    """Shell completion of a global option's few values (``--executor``, ``--log-format``)."""
    def complete(incomplete: str) -> list[str]:
        return [c for c in choices if c.startswith(incomplete)]

    return complete


def _root_callback():
    """The root callback, its parameters made from :data:`GLOBAL_OPTIONS` (for the help
    and the reference only: the pre-parser has taken the global options away before
    Typer parses)."""
    import inspect

    kw = inspect.Parameter.KEYWORD_ONLY
    params = [inspect.Parameter("version", kw, annotation=bool, default=typer.Option(
        False, "--version", help="Show the version of astrotool and its plugins."))]
    for o in GLOBAL_OPTIONS:
        kind = list[str] if o.repeatable else o.type
        choices = o.metavar.split("|") if "|" in o.metavar and "/" not in o.metavar else None   # not I/N|auto
        option = typer.Option(None if o.repeatable else o.default, *o.names, help=o.help,
                              count=o.count, metavar=o.metavar or None, show_default=False,
                              autocompletion=_completer(choices) if choices else None)
        params.append(inspect.Parameter(o.attr, kw, annotation=kind, default=option))

    def root(**_):
        """Global options are accepted here and after any sub-command."""

    root.__signature__ = inspect.Signature(params)
    root.__annotations__ = {p.name: p.annotation for p in params}
    return root


def mount_tree(registry=None) -> tuple[dict, list]:
    """Arrange the registered commands as a tree of :class:`LazyCommand` (nothing imported).

    A command mounts at the root or under the command path its ``parent`` names;
    the first registration of a path wins (the core's first) and a later one
    from another plugin marks that plugin broken, as does a parent that does not
    exist.

    Returns
    -------
    mounts : dict
        ``{path: LazyCommand}``, e.g. ``{"lens": ..., "lens sub": ...}``.
    roots : list of LazyCommand
        The commands mounted at the root, in registration order.
    """
    from astrotool.hookspecs import CommandSpec
    from astrotool.plugins import get_registry

    registry = registry or get_registry()
    mounts: dict[str, LazyCommand] = {}
    roots: list[LazyCommand] = []
    specs = sorted(registry.commands(), key=lambda ps: len(ps[1].parent.split()))  # parents first
    for plugin, spec in specs:
        parent = " ".join(spec.parent.split())
        path = f"{parent} {spec.name}".strip()
        if path in mounts:  # first registration wins (core first)
            if mounts[path].plugin != plugin:
                registry.mark_broken(plugin, f"command `astro {path}` is already registered by plugin "
                                             f"{mounts[path].plugin!r}")
            continue
        if parent and parent not in mounts:
            registry.mark_broken(plugin, f"command {spec.name!r}: its parent `astro {parent}` does not exist")
            continue
        node = mounts[path] = LazyCommand(path, spec, plugin)
        (mounts[parent].children if parent else roots).append(node)
    for info in registry.broken():
        if info.name != "core" and info.name not in mounts:
            node = mounts[info.name] = LazyCommand(info.name, CommandSpec(info.name, "", info.error),
                                                   info.name, broken=info.error)
            roots.append(node)
    return mounts, roots


def build_app() -> typer.Typer:
    """The root Typer app with every registered command mounted lazily."""
    app = typer.Typer(
        cls=RootGroup, name="astro", no_args_is_help=True, add_completion=True,
        help="One command for galaxy morphology (dre), weak lensing (lens), PLATO transits (plato) "
             "and ZTF alerts (ztf).",
        epilog=GLOBAL_HELP, context_settings={"help_option_names": ["-h", "--help"]},
        rich_markup_mode=None,
    )
    app.callback()(_root_callback())
    group = typer.main.get_command(app)
    mounts, roots = mount_tree()
    group.mounts = set(mounts)
    for node in roots:
        group.commands[node.spec.name] = node
    app._astro_group = group
    return app


def mount_all(group) -> list[tuple[str, str]]:
    """Mount every lazy command under ``group`` (importing every plugin's command module).

    ``astro plugins`` does this to find the plugins whose commands cannot be
    mounted; the documentation build, to document every command. A command that
    cannot be mounted stays a stub whose help says why.

    Returns
    -------
    list of (path, error)
        The commands that could not be mounted, e.g. ``("astro ghost", "...")``.
    """
    from astrotool.errors import AstroError

    problems = []
    for name, sub in list(getattr(group, "commands", {}).items()):
        if isinstance(sub, LazyCommand):
            try:
                sub = group.commands[name] = sub.load()
            except AstroError:
                problems.append((f"astro {sub.path}", sub.broken))
                continue
        problems += mount_all(sub)
    return problems


def _versions() -> dict:
    """``{"astro": version, "plugins": {name: {"distribution", "version", "status"}}}`` (``--json --version``)."""
    from astrotool.plugins import get_registry

    return {"astro": __version__, "plugins": {i.name: {"distribution": i.distribution, "version": i.version,
                                                       "status": i.status}
                                              for i in get_registry().info.values() if i.name != "core"}}


def _version_text() -> str:
    versions = _versions()
    lines = [f"astro {versions['astro']} (astrotool-core)"]
    for name, p in versions["plugins"].items():
        lines.append(f"  {name}: {p['distribution']} {p['version']}" + (" (broken)" if p["status"] != "ok" else ""))
    return "\n".join(lines)


def _command_path(rest: list[str], group) -> str:
    """The command a run names itself after (``runs/<utc>-<command>/``), e.g. ``"lens train"``."""
    words: list[str] = []
    for a in rest:
        if a.startswith("-"):
            break
        words.append(a)
        if " ".join(words) not in group.mounts:
            break
    return " ".join(words) or "astro"


def _print_failures(failures) -> None:
    from astrotool import console

    console.print_table(f"{len(failures)} item(s) failed", ["item", "error"],
                        [[f.key, f.error] for f in failures], stream="stderr")


def main(argv: list[str] | None = None) -> int:
    """Run ``astro`` with ``argv`` (default ``sys.argv[1:]``) and return the exit code.

    The console script exits the process with this code.
    """
    from astrotool.errors import AstroError

    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        opts, rest = split_global_options(argv)
        _check_shard(opts, rest)
    except UsageProblem as exc:
        fmt = _early_log_format(argv)
        if fmt in ("json", "plain"):  # stderr holds log lines only, this error too
            from astrotool import console

            console.setup(fmt)
            console.report_error(str(exc), exit_code=2)
        else:
            sys.stderr.write(f"Usage: astro [OPTIONS] COMMAND [ARGS]...\nError: {exc}\n")
        return 2
    if "--version" in rest[:1]:
        import json

        sys.stdout.write((json.dumps(_versions()) if opts.json else _version_text()) + "\n")
        return 0

    ctx = None
    code = 0
    status, error = "ok", None
    previous = _catch_stop_signals()
    try:
        from astrotool import console

        console.set_json(opts.json)
        console.setup(_log_format_asked(argv, opts),
                      verbosity=opts.verbose, quiet=opts.quiet,
                      interval=opts.progress_interval or _env_interval())
        app = build_app()
        group = app._astro_group
        ctx = Context(opts, _command_path(rest, group), ["astro", *argv])
        ctx.folder_at_start = True
        set_current(ctx)
        try:
            result = group.main(args=rest, prog_name="astro", standalone_mode=False)
        except SystemExit as exc:   # click ends a broken pipe (`| head` stopped reading) with sys.exit(1)
            if not isinstance(exc.__context__, BrokenPipeError):
                raise
            result = _stdout_gone()[0]
        code = result if isinstance(result, int) else 0
        if opts.shard is not None and not ctx.shard_used and code == 0 and not {"-h", "--help"} & set(rest):
            ctx.log.warning("--shard %s was not used: `%s` does not split its work into shards, so this task did "
                            "all of it (run it once, not in an array)", opts.shard, ctx.command)
        if ctx.failures:   # the others finished; 2 where every failure was bad input (set before the table: a
            status, code = "failed items", 2 if all(f.exit_code == 2 for f in ctx.failures) else 1   # dead pipe)
            _print_failures(ctx.failures)
    except AstroError as exc:
        code, status, error = exc.exit_code, "error", str(exc)
        if not (ctx is not None and ctx.is_copy):   # every rank meets bad input alike: rank 0 says it
            console.report_error(str(exc), exit_code=code, **_traceback(opts))
        if ctx is not None and ctx.failures:
            _print_failures(ctx.failures)
    except (KeyboardInterrupt, Exception) as exc:
        interrupt = _interrupt_in_chain(exc)
        if interrupt is not None:
            from astrotool.workspace import remove_live_temps

            remove_live_temps()
            terminated = str(interrupt) == "terminated"
            code, status = (143, "terminated") if terminated else (130, "interrupted")
            error = _report_stop(status, code, opts.overwrite, say=not (ctx is not None and ctx.is_copy))
        elif isinstance(exc, BrokenPipeError):   # the reader of stdout (or of a stderr shared with it) left
            _stdout_gone()                         # the outcome stands: ok, or the failed items' status and code
        elif ctx is not None and ctx.is_copy and _peers_gone(exc):
            # a training copy whose rank 0 stopped (SIGTERM to it alone) or died: rank 0 says why, or its exit
            code, status, error = 1, "error", f"{type(exc).__name__}: {exc}"
        else:
            code, status = _handle_other(exc, opts)
            error = f"{type(exc).__name__}: {exc}"
    finally:
        from astrotool import executors

        executors.defer_stop()  # a signal from here on is recorded, not raised into the record's writing
        if executors.stop_requested() is not None and code not in (130, 143):
            # the signal's exception was swallowed (it landed in a __del__): still a stop
            from astrotool.workspace import remove_live_temps

            remove_live_temps()
            code, status = (143, "terminated") if executors.stop_requested() == signal.SIGTERM else (130, "interrupted")
            stop = _report_stop(status, code, opts.overwrite, say=not (ctx is not None and ctx.is_copy))
            error = error or stop   # an error met before the stop is the one to read
        if ctx is not None:
            try:
                ctx.finish(status, code, error)
            except Exception as exc:  # never hide the real outcome
                logging.getLogger("astro").warning("could not write run.json: %s", exc)
        set_current(None)
        from astrotool import console

        console.set_json(False)  # --json holds for this command line only (main may run again in-process)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        executors.reset_stop()
    return code


def _env_interval() -> float:
    """``$ASTRO_CORE__PROGRESS_INTERVAL`` for the logger set up before the configuration is read (10 s when
    unset or not a number: the configuration reports a bad value)."""
    try:
        from astrotool.context import MIN_PROGRESS_INTERVAL_S

        return max(MIN_PROGRESS_INTERVAL_S, float(os.environ.get("ASTRO_CORE__PROGRESS_INTERVAL", 10.0)))
    except ValueError:
        return 10.0


def _check_shard(opts: GlobalOptions, rest: list[str]) -> None:
    """Refuse a malformed ``--shard`` (or ``auto`` outside a Slurm job array) before anything is created or run.

    Raises
    ------
    UsageProblem
        The value is not ``I/N`` with ``0 <= I < N``, or ``auto`` lacks the array's variables.
    """
    if opts.shard is None or {"-h", "--help"} & set(rest):
        return
    from astrotool.errors import AstroError
    from astrotool.executors import parse_shard

    try:
        parse_shard(opts.shard)
    except AstroError as exc:
        raise UsageProblem(str(exc)) from None


def _report_stop(status: str, code: int, overwrite: bool = False, say: bool = True) -> str:
    """Say (when ``say``) and return, for ``run.json``'s ``error``, that the command was stopped (``status``:
    ``interrupted`` or ``terminated``): a line of text on a terminal, an ``ERROR`` log line with ``--log-format
    plain``, or under ``--log-format json`` one JSON line with ``exit_code`` (stderr holds JSON lines only).
    The same command resumes it, ``--overwrite`` too: a command that works item by item, or a training of one
    process, keeps what it finished with these settings (:class:`astrotool.made_with.Overwrite`)."""
    from astrotool import console

    again = ("re-run the same command, --overwrite included, to resume: a command that works item by item (or a "
             "training of one process) keeps what it finished with these settings (docs: workspace)"
             if overwrite else "re-run the same command to resume")
    message = f"{status}: unfinished outputs removed, finished ones kept; {again}."
    if not say:
        pass
    elif console.log_format() in ("json", "plain"):
        console.report_error(message, exit_code=code, status=status)
    else:
        sys.stderr.write(f"\n{message}\n")
    return message


_UNRAISABLE_HOOKED = False


def _catch_stop_signals() -> dict:
    """Make SIGTERM and SIGINT stop the command: the workers get SIGTERM at once
    (:func:`astrotool.executors.request_stop`) and ``KeyboardInterrupt`` unwinds this
    process, removing the temporary files; a repeated signal does not interrupt that
    cleanup. SIGINT stays ignored where it was (a background job). Returns the
    previous handlers."""
    from astrotool import executors

    def _stop(signum, frame):
        if executors.request_stop(signum):
            raise executors.stop_interrupt(signum)

    executors.reset_stop()
    previous = {}
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        return previous
    global _UNRAISABLE_HOOKED
    if not _UNRAISABLE_HOOKED:  # once per process (the hook does nothing without a stop request)
        _UNRAISABLE_HOOKED = True

        def unraisable(args, _previous=sys.unraisablehook):
            if isinstance(args.exc_value, KeyboardInterrupt) and executors.stop_requested() is not None:
                executors.stop_swallowed()  # raised again shortly, where the command runs; not printed
            else:
                _previous(args)

        sys.unraisablehook = unraisable
    for signum in (signal.SIGTERM, signal.SIGINT):
        if signum == signal.SIGINT and signal.getsignal(signum) is not signal.default_int_handler:
            continue
        previous[signum] = signal.signal(signum, _stop)
    return previous


def _interrupt_in_chain(exc: BaseException) -> BaseException | None:
    """The KeyboardInterrupt behind ``exc`` (Typer turns Ctrl-C into ``Exit(130)``), if any."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, (KeyboardInterrupt, Interrupted)):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def _traceback(opts: GlobalOptions) -> dict:
    """With ``--traceback`` (or ``-vv``), the exception being handled: printed now, or under
    ``--log-format json`` returned as the ``traceback`` key of the error's JSON line (stderr holds
    JSON lines only)."""
    if not (opts.traceback or opts.verbose >= 2):
        return {}
    import traceback

    from astrotool import console

    if console.log_format() == "json":
        return {"traceback": traceback.format_exc()}
    traceback.print_exc()
    return {}


def _early_log_format(argv: list[str]) -> str:
    """The format of stderr's lines for an error met before the global options could be read: ``json`` or
    ``plain`` as :func:`_log_format_asked` finds, ``auto`` resolved as :func:`astrotool.console.setup` does
    (``plain`` when stderr is not a terminal), else ``rich``."""
    from astrotool import console

    fmt = _log_format_asked(argv)
    if fmt not in ("json", "plain", "rich"):
        fmt = "rich" if console.stderr_is_terminal() else "plain"
    return fmt


def _log_format_asked(argv: list[str], opts: GlobalOptions | None = None) -> str:
    """``core.log_format`` as the layers give it before the configuration is read and checked, so that its
    errors (a bad ``--shard``, an invalid value) come out in that format too: ``--log-format``, else
    ``--set core.log_format=...``, ``$ASTRO_CORE__LOG_FORMAT``, the last ``--cfg`` file, the workspace's
    ``astro.toml`` and the user file that set it (read as they are; unreadable ones are passed over, and so
    are values that are not a format: the configuration's check names them with their file), else ``auto``.
    The global options as parsed (``opts``), or where they could not be, as ``argv`` spells them before
    ``--``."""
    from astrotool.console import FORMATS

    words = argv[:argv.index("--")] if "--" in argv else argv

    def given(*names: str) -> list[str]:
        out = []
        for i, word in enumerate(words):
            if word in names and i + 1 < len(words):
                out.append(words[i + 1])
            out += [word.split("=", 1)[1] for n in names if word.startswith(n + "=")]
            out += [word[2:] for n in names if len(n) == 2 and word.startswith(n) and len(word) > 2]   # -wDIR
        return out

    if opts is not None:
        option, sets, cfgs = [opts.log_format] if opts.log_format else [], list(opts.set or []), list(opts.cfg or [])
        workspaces = [opts.workspace] if opts.workspace is not None else []
    else:
        option, sets, cfgs, workspaces = given("--log-format"), given("--set"), given("--cfg"), \
            given("-w", "--workspace")
    if option:
        return option[-1]   # checked with the global options
    asked = [s.split("=", 1)[1].strip().strip("'\"") for s in sets
             if s.split("=", 1)[0].strip() == "core.log_format" and "=" in s]
    if asked and asked[-1] in FORMATS:
        return asked[-1]
    if os.environ.get("ASTRO_CORE__LOG_FORMAT") in FORMATS:
        return os.environ["ASTRO_CORE__LOG_FORMAT"]
    from pathlib import Path

    from astrotool.config import file_layers

    workspace = Path((workspaces or [os.environ.get("ASTRO_WORKSPACE") or "."])[-1]).expanduser()
    files = [p for p in reversed(file_layers(workspace, cfgs)) if p.is_file()]   # the highest layer first
    if not files:
        return "auto"
    import tomllib   # only where there is a file to read: `astro --help` stays fast

    for path in files:
        try:
            with open(path, "rb") as f:
                value = tomllib.load(f).get("core", {}).get("log_format")
        except Exception:   # missing, unreadable, not TOML: its own error is told later, if it matters
            continue
        if value in FORMATS:
            return value
    return "auto"


def _tell_renamed_option(exc) -> None:
    """Name the new option in click's "No such option" for an option of an earlier release (``--prefix``:
    "renamed --name"): the command's configuration table's ``renamed_keys`` give the new key, and the
    command's option that sets it (:func:`astrotool.cliconfig.option_keys`) is named; nothing is added where
    the command has none."""
    if type(exc).__name__ != "NoSuchOption" or getattr(exc, "ctx", None) is None:
        return
    from astrotool.cliconfig import option_keys
    from astrotool.config import renamed_key_of_option

    try:
        path = exc.ctx.command_path.split()[1:]
        found = renamed_key_of_option(path, exc.option_name)
        if found is None:
            return
        key, note = found   # found: path[0] is a section (its model has the table), no second read of the defaults
        new = next((max(p.opts, key=len) for p in exc.ctx.command.params
                    if getattr(p, "opts", None) and key in option_keys(" ".join(path), p, {path[0]})), None)
    except Exception:  # a hint only: never hide the usage error
        return
    if new is not None:
        exc.message = f"No such option: {exc.option_name} (renamed {new}{' ' + note if note else ''})"
        exc.possibilities = None


def _handle_other(exc: Exception, opts: GlobalOptions) -> tuple[int, str]:
    """Click usage errors -> 2; anything else -> 1 with a one-line message."""
    from typer.exceptions import Abort, Exit, TyperException

    if isinstance(exc, Exit):
        return exc.exit_code, "ok" if exc.exit_code == 0 else "error"
    if isinstance(exc, Abort):
        sys.stderr.write("Aborted.\n")
        return 130, "interrupted"
    if isinstance(exc, TyperException) and hasattr(exc, "show"):
        from astrotool import console

        _tell_renamed_option(exc)
        if isinstance(getattr(exc, "message", None), str):   # typer checks choices through pydantic
            exc.message = exc.message.replace("Value error, ", "") + _synonym_hint(exc)

        fmt = console.log_format()
        if hasattr(exc, "format_message") and (fmt == "json" or fmt == "plain" and type(exc).__name__ !=
                                               "NoArgsIsHelpError"):  # a bare `astro` shows its help as text
            # stderr holds log lines only (JSON lines with json): a usage error is one ERROR line too
            console.report_error(exc.format_message(), exit_code=exc.exit_code)
        else:
            exc.show()
        return exc.exit_code, "error"
    from astrotool.workspace import write_failure

    failure = write_failure(exc)   # a full disk or a read-only folder outside atomic_path (mkdir, ...)
    from astrotool import console

    if failure is not None:
        console.report_error(str(failure), exit_code=failure.exit_code)
        return failure.exit_code, "error"
    console.report_error(f"{type(exc).__name__}: {exc}", "(run again with --traceback for details)", exit_code=1,
                         **_traceback(opts))
    return 1, "error"


PEER_LOSS = ("Connection closed by peer", "Connection reset by peer", "Broken pipe")
"""Words of torch.distributed's errors (gloo, NCCL's TCP store) when another process of the training is gone."""


def _peers_gone(exc: BaseException) -> bool:
    """Whether ``exc`` is torch.distributed's error for a training process that lost the others."""
    return type(exc).__name__ in ("RuntimeError", "DistBackendError", "DistNetworkError") and \
        any(words in str(exc) for words in PEER_LOSS)


def _stdout_gone() -> tuple[int, str]:
    """Stdout's reader stopped reading (``astro ... | head``): the command's work is done and kept, so exit 0
    (``ok``), with stdout, and stderr where it went to the same reader, sent to the null device
    (:func:`astrotool.console.streams_gone`)."""
    from astrotool import console

    console.streams_gone()
    return 0, "ok"


def run() -> None:
    """Console-script entry point."""
    code = main()
    h5py = sys.modules.get("h5py")
    if code and h5py is not None and h5py.h5f.get_obj_ids(types=h5py.h5f.OBJ_FILE):
        # an HDF5 file that could not be closed (a full disk) makes HDF5's exit handler crash
        # (segmentation fault): the outcome is reported and recorded already, so leave now
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
