"""The ``astro`` command line.

Global options work before or after the sub-command (``astro -q dre fit`` and
``astro dre fit -q`` are the same): they are taken out of the argument list
before Typer parses the rest. Plugin command groups are mounted lazily: ``astro
--help`` shows the one-line help each plugin registered and imports a plugin's
command module only when one of its commands runs.

Exit codes: 0 success; 1 some items failed (a table of failures is printed);
2 usage, configuration or input error (one clear message, no traceback unless
``--traceback``); 130 interrupted (Ctrl-C), 143 terminated (SIGTERM).
"""

from __future__ import annotations

import os
import signal
import sys

import typer
from typer.core import TyperGroup

from astrotool import __version__
from astrotool.context import Context, GlobalOptions, set_current

__docformat__ = "numpy"

# option -> (attribute, takes a value, repeatable)
GLOBAL_OPTIONS: dict[str, tuple[str, bool, bool]] = {
    "-w": ("workspace", True, False), "--workspace": ("workspace", True, False),
    "--cfg": ("cfg", True, True), "--set": ("set", True, True),
    "-q": ("quiet", False, False), "--quiet": ("quiet", False, False),
    "-v": ("verbose", False, False), "--verbose": ("verbose", False, False),
    "--log-format": ("log_format", True, False), "--traceback": ("traceback", False, False),
    "--executor": ("executor", True, False), "-j": ("jobs", True, False), "--jobs": ("jobs", True, False),
    "--scheduler": ("scheduler", True, False), "--shard": ("shard", True, False),
    "--seed": ("seed", True, False), "--overwrite": ("overwrite", False, False),
    "--progress-interval": ("progress_interval", True, False),
}

GLOBAL_HELP = (
    "Global options (before or after the sub-command): -w/--workspace DIR, --cfg FILE (repeatable), "
    "--set SECTION.KEY=VALUE (repeatable), -q, -v/-vv, --log-format auto|rich|plain|json, --traceback, "
    "--executor serial|process|dask, -j/--jobs N, --scheduler ADDRESS, --shard I/N, --seed N, --overwrite, "
    "--progress-interval SECONDS."
)


class UsageProblem(Exception):
    """A malformed global option."""


class Interrupted(Exception):
    """Ctrl-C or SIGTERM during a command (carried past Typer, which would swallow it)."""


def split_global_options(argv: list[str]) -> tuple[GlobalOptions, list[str]]:
    """Take the global options out of ``argv`` wherever they are (up to ``--``).

    Returns
    -------
    options : GlobalOptions
    rest : list of str
        The arguments left for Typer.
    """
    opts = GlobalOptions()
    rest: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            rest += argv[i:]
            break
        name, eq, inline = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        if arg in ("-vv", "-vvv"):
            opts.verbose += len(arg) - 1
            i += 1
            continue
        if name in GLOBAL_OPTIONS:
            attr, takes_value, repeat = GLOBAL_OPTIONS[name]
            if takes_value:
                if eq:
                    value = inline
                elif i + 1 < len(argv):
                    i += 1
                    value = argv[i]
                else:
                    raise UsageProblem(f"option {name} requires a value")
                if attr in ("jobs", "seed"):
                    try:
                        value = int(value)
                    except ValueError:
                        raise UsageProblem(f"option {name}: expected an integer, got {value!r}") from None
                elif attr == "progress_interval":
                    try:
                        value = float(value)
                    except ValueError:
                        raise UsageProblem(f"option {name}: expected seconds, got {value!r}") from None
                if repeat:
                    getattr(opts, attr).append(value)
                else:
                    setattr(opts, attr, value)
            elif attr == "verbose":
                opts.verbose += 1
            else:
                setattr(opts, attr, True)
        else:
            rest.append(arg)
        i += 1
    return opts, rest


def _plain_markup(cmd) -> None:
    """Help text is plain text everywhere: units like ``[px]`` must not be read as rich markup."""
    cmd.rich_markup_mode = None
    for sub in getattr(cmd, "commands", {}).values():
        _plain_markup(sub)


def _stub(spec, broken: str | None = None):
    """A help-only stand-in for a lazily loaded command (no plugin import)."""
    help_text = spec.help if not broken else f"[broken plugin] {broken}"
    return TyperGroup(name=spec.name, help=help_text, rich_help_panel=spec.panel)


class LazyGroup(TyperGroup):
    """Root group whose plugin commands are imported only when invoked."""

    specs: dict = {}
    plugin_of: dict = {}
    _loaded: dict = {}

    def _load(self, name: str):
        if name in self._loaded:
            return self._loaded[name]
        from astrotool.errors import AstroError
        from astrotool.plugins import get_registry, load_target

        spec = self.specs[name]
        try:
            app = load_target(spec.target)
        except Exception as exc:
            plugin = self.plugin_of.get(name, name)
            info = get_registry().info.get(plugin)
            if info is not None:
                info.status, info.error = "broken", f"{type(exc).__name__}: {exc}"
            raise AstroError(f"plugin {plugin!r}: cannot load command {name!r} ({spec.target}): "
                             f"{type(exc).__name__}: {exc}") from exc
        cmd = typer.main.get_command(app)
        # completion is installed once, on the root command, not per plugin
        cmd.params = [p for p in cmd.params if p.name not in ("install_completion", "show_completion")]
        _plain_markup(cmd)
        cmd.name = name
        cmd.rich_help_panel = spec.panel
        if not cmd.help:
            cmd.help = spec.help
        self._loaded[name] = cmd
        return cmd

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as exc:
            raise Interrupted(str(exc)) from exc

    def get_command(self, ctx, cmd_name):
        if cmd_name in self.specs and getattr(ctx, "resilient_parsing", False):
            try:  # shell completion wants the real sub-commands
                return self._load(cmd_name)
            except Exception:
                return None
        return super().get_command(ctx, cmd_name)

    def resolve_command(self, ctx, args):
        name = args[0] if args else None
        if name in self.specs:
            broken = getattr(self.commands.get(name), "_astro_broken", None)
            if broken:
                from astrotool.errors import AstroError

                raise AstroError(f"plugin {self.plugin_of.get(name, name)!r} is broken: {broken} "
                                 "(see `astro plugins`)")
            return name, self._load(name), args[1:]
        return super().resolve_command(ctx, args)


def build_app() -> typer.Typer:
    """The root Typer app with every registered command mounted lazily."""
    from astrotool.plugins import get_registry

    app = typer.Typer(
        cls=LazyGroup, name="astro", no_args_is_help=True, add_completion=True,
        help="One command for galaxy morphology (dre), weak lensing (lens), PLATO transits (plato) "
             "and ZTF alerts (ztf).",
        epilog=GLOBAL_HELP, context_settings={"help_option_names": ["-h", "--help"]},
        rich_markup_mode=None,
    )

    @app.callback()
    def root(
        version: bool = typer.Option(False, "--version", help="Show the version of astrotool and its plugins."),
        workspace: str = typer.Option(None, "-w", "--workspace", help="Workspace folder (default: $ASTRO_WORKSPACE, else the current folder)."),
        cfg: list[str] = typer.Option(None, "--cfg", help="TOML config file; repeatable, later wins."),
        set_: list[str] = typer.Option(None, "--set", help="Override one key: section.key=value; repeatable."),
        quiet: bool = typer.Option(False, "-q", "--quiet", help="Warnings only, no progress."),
        verbose: int = typer.Option(0, "-v", "--verbose", count=True, help="More output (-vv: tracebacks)."),
        log_format: str = typer.Option(None, "--log-format", help="auto | rich | plain | json."),
        traceback: bool = typer.Option(False, "--traceback", help="Show the full traceback of errors."),
        executor: str = typer.Option(None, "--executor", help="serial | process | dask."),
        jobs: int = typer.Option(None, "-j", "--jobs", help="Worker processes (0 = all cores); alone, selects the process executor."),
        scheduler: str = typer.Option(None, "--scheduler", help="Dask scheduler address (default: a local cluster)."),
        shard: str = typer.Option(None, "--shard", help="Run only shard I of N (I/N), for Slurm arrays."),
        seed: int = typer.Option(None, "--seed", help="Base random seed."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Recompute outputs that already exist."),
        progress_interval: float = typer.Option(None, "--progress-interval", help="Seconds between progress lines off a terminal."),
    ):
        """Global options are accepted here and after any sub-command."""

    group = typer.main.get_command(app)
    registry = get_registry()
    group.specs, group.plugin_of, group._loaded = {}, {}, {}
    for plugin, spec in registry.commands():
        if spec.name in group.specs:
            continue  # first registration wins (core first)
        group.specs[spec.name] = spec
        group.plugin_of[spec.name] = plugin
        group.commands[spec.name] = _stub(spec)
    for info in registry.broken():
        if info.name not in group.specs and info.name != "core":
            from astrotool.hookspecs import CommandSpec

            spec = CommandSpec(info.name, "", info.error)
            group.specs[info.name] = spec
            group.plugin_of[info.name] = info.name
            stub = _stub(spec, broken=info.error)
            stub._astro_broken = info.error
            group.commands[info.name] = stub
    app._astro_group = group
    return app


def _version_text() -> str:
    from astrotool.plugins import get_registry

    lines = [f"astro {__version__}"]
    for info in get_registry().info.values():
        if info.name != "core":
            lines.append(f"  {info.name}: {info.distribution} {info.version}" + (" (broken)" if info.status != "ok" else ""))
    return "\n".join(lines)


def _command_path(rest: list[str], group) -> str:
    words = []
    for a in rest:
        if a.startswith("-"):
            break
        words.append(a)
        if len(words) == 2 or (len(words) == 1 and a not in group.specs):
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
    except UsageProblem as exc:
        sys.stderr.write(f"Usage: astro [OPTIONS] COMMAND [ARGS]...\nError: {exc}\n")
        return 2
    if "--version" in rest[:1]:
        sys.stdout.write(_version_text() + "\n")
        return 0

    ctx = None
    code = 0
    status, error = "ok", None
    previous_term = signal.getsignal(signal.SIGTERM)

    def _terminate(signum, frame):
        raise KeyboardInterrupt("terminated")

    try:
        from astrotool import console

        console.setup(opts.log_format or os.environ.get("ASTRO_CORE__LOG_FORMAT", "auto"),
                      verbosity=opts.verbose, quiet=opts.quiet,
                      interval=opts.progress_interval or float(os.environ.get("ASTRO_CORE__PROGRESS_INTERVAL", 10.0)))
        signal.signal(signal.SIGTERM, _terminate)
        app = build_app()
        group = app._astro_group
        ctx = Context(opts, _command_path(rest, group), ["astro", *argv])
        set_current(ctx)
        result = group.main(args=rest, prog_name="astro", standalone_mode=False)
        code = result if isinstance(result, int) else 0
        if ctx.failures:
            _print_failures(ctx.failures)
            status, code = "failed items", 1
    except AstroError as exc:
        code, status, error = exc.exit_code, "error", str(exc)
        if opts.traceback or opts.verbose >= 2:
            import traceback

            traceback.print_exc()
        sys.stderr.write(f"Error: {exc}\n")
        if ctx is not None and ctx.failures:
            _print_failures(ctx.failures)
    except (KeyboardInterrupt, Exception) as exc:
        interrupt = _interrupt_in_chain(exc)
        if interrupt is not None:
            from astrotool.workspace import remove_live_temps

            remove_live_temps()
            terminated = str(interrupt) == "terminated"
            code, status = (143, "terminated") if terminated else (130, "interrupted")
            sys.stderr.write(f"\n{status}: partial outputs removed; re-run the same command to resume.\n")
        else:
            code, status = _handle_other(exc, opts)
            error = f"{type(exc).__name__}: {exc}"
    finally:
        signal.signal(signal.SIGTERM, previous_term)
        if ctx is not None:
            try:
                ctx.finish(status, code, error)
            except Exception as exc:  # never hide the real outcome
                sys.stderr.write(f"warning: could not write run.json: {exc}\n")
        set_current(None)
    return code


def _interrupt_in_chain(exc: BaseException) -> BaseException | None:
    """The KeyboardInterrupt behind ``exc`` (Typer turns Ctrl-C into ``Exit(130)``), if any."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, (KeyboardInterrupt, Interrupted)):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def _handle_other(exc: Exception, opts: GlobalOptions) -> tuple[int, str]:
    """Click usage errors -> 2; anything else -> 1 with a one-line message."""
    from typer.exceptions import Abort, Exit, TyperException

    if isinstance(exc, Exit):
        return exc.exit_code, "ok" if exc.exit_code == 0 else "error"
    if isinstance(exc, Abort):
        sys.stderr.write("Aborted.\n")
        return 130, "interrupted"
    if isinstance(exc, TyperException) and hasattr(exc, "show"):
        exc.show()
        return exc.exit_code, "error"
    if isinstance(exc, BrokenPipeError):
        return 0, "ok"
    if opts.traceback or opts.verbose >= 2:
        import traceback

        traceback.print_exc()
    sys.stderr.write(f"Error: {type(exc).__name__}: {exc}\n(run again with --traceback for details)\n")
    return 1, "error"


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
