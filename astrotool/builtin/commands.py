"""The core commands: ``init``, ``status``, ``config``, ``plugins``, ``doctor``, ``demo``."""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path

import typer

from astrotool.context import current

__docformat__ = "numpy"

# ---------------------------------------------------------------------------- init
init_app = typer.Typer()
"""Typer app of ``astro init``."""


@init_app.command("init")
def init(directory: Path = typer.Argument(None, help="Workspace folder (default: -w, $ASTRO_WORKSPACE or the current folder); given, it wins over -w.")):
    """Create a workspace: astro.toml, runs/ and every plugin's stage folders (and its run record)."""
    ctx = current()
    if directory:
        if ctx.options.workspace is not None and Path(directory).expanduser().resolve() != ctx.workspace_root:
            ctx.log.warning("-w %s is not used: `astro init DIR` creates DIR (%s)", ctx.options.workspace, directory)
        ctx.use_workspace(directory)   # as -w DIR: its configuration, and its runs/ for the record
    ctx.config   # a bad --cfg file, --set or astro.toml of the workspace made is refused before anything is created
    ws = ctx.workspace
    created = ws.init()
    ctx.log.info("workspace %s: created %d item(s)", ws.root, len(created))
    ctx.emit(str(ws.root))


# ---------------------------------------------------------------------------- status
status_app = typer.Typer()
"""Typer app of ``astro status``."""


RECENT_RUNS = 100
"""How many of the latest runs ``astro status`` reads to name those that did not end ``ok``."""


@status_app.command("status")
def status():
    """Show each plugin's stage folders with their file counts, the last run and the recent runs that did not
    end ok (--json: as JSON)."""
    from astrotool import console
    from astrotool.workspace import Workspace

    from astrotool.errors import AstroError

    ctx = current()
    ctx.config  # a broken astro.toml, --cfg file or --set is reported here as in every command
    ws = Workspace(ctx.workspace_root)
    if not ws.root.is_dir():  # a typo in -w or $ASTRO_WORKSPACE would show a table of zeros
        raise AstroError(f"workspace {ws.root} does not exist (`astro init {ws.root}` creates it)")
    ctx._warn_inside_workspace(ws)
    counts = ws.status()
    runs_dir = ws.root / "runs"
    runs = sorted(p.name for p in runs_dir.iterdir() if p.is_dir() and not p.name.startswith(".")) \
        if runs_dir.is_dir() else []   # not runs/.overwrite (Context.overwrite)
    last = _run_outcome(runs_dir / runs[-1]) if runs else None
    # an array job's failed shards among the recent runs; one without run.json is running, or was killed outright
    # (out of memory, past the time limit's SIGKILL), the commonest end of a shard that did not finish
    not_ok = [(r, o) for r in runs[-RECENT_RUNS:] if not isinstance(o := _run_outcome(runs_dir / r), tuple)
              or o[0] != "ok"]
    if console.json_results():
        ctx.emit({"workspace": str(ws.root), "initialised": ws.config_file.exists(), "stages": counts,
                  "runs": len(runs), "last_run": runs[-1] if runs else None,
                  "last_run_status": last[0] if isinstance(last, tuple) else last,
                  "last_run_exit_code": last[1] if isinstance(last, tuple) else None,
                  "recent_runs_not_ok": [{"run": r, "status": o[0] if isinstance(o, tuple) else
                                          "no run.json" if o is None else o,
                                          "exit_code": o[1] if isinstance(o, tuple) else None} for r, o in not_ok]})
        return
    rows = [[plugin, stage, n] for plugin, stages in counts.items() for stage, n in stages.items()]
    console.print_table(f"workspace {ws.root}" + ("" if ws.config_file.exists() else " (not initialised: astro init)"),
                        ["plugin", "stage", "files"], rows)
    console.note(f"runs: {len(runs)}" + (f" (last: {runs[-1]} ({_outcome_text(last)}))" if runs else ""))
    if not_ok:
        console.note(f"{len(not_ok)} of the last {min(len(runs), RECENT_RUNS)} runs did not end ok:")
        for r, o in not_ok:
            console.note(f"  {r} ({_outcome_text(o)})")


def _outcome_text(outcome) -> str:
    """How a run ended, in words, from :func:`_run_outcome`."""
    return ("no run.json: running, or killed" if outcome is None else "run.json unreadable" if outcome == "?" else
            f"{outcome[0]}, exit {outcome[1]}")


def _run_outcome(run_dir) -> tuple[str, int] | str | None:
    """``(status, exit_code)`` of a run from its ``run.json``; ``None`` while it has none (running, or killed),
    ``"?"`` for one that cannot be read or lacks them."""
    path = run_dir / "run.json"
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        return record["status"], record["exit_code"]
    except (OSError, ValueError, KeyError, TypeError):
        return "?"


# ---------------------------------------------------------------------------- config
config_app = typer.Typer(help="Show, validate and describe the layered configuration.", no_args_is_help=True)
"""Typer group of ``astro config`` (show, validate, describe)."""


@config_app.callback()
def _config():
    """Show, validate and describe the layered configuration.

    Layers, lowest to highest: packaged defaults < user file < <workspace>/astro.toml
    < --cfg files < ASTRO_<SECTION>__<KEY> variables < --set section.key=value < flags.
    """


@config_app.command("show")
def config_show(
    section: str = typer.Argument(None, help="Only this section, table or key, e.g. dre, dre.simulate or "
                                             "dre.fit.statistic."),
    sources: bool = typer.Option(False, "--sources", help="Show where each value came from."),
):
    """Print the resolved configuration (TOML, or JSON with --json)."""
    from astrotool.console import json_results
    from astrotool.config import _did_you_mean, _flatten, to_toml
    from astrotool.errors import AstroError

    ctx = current()
    as_json = json_results()
    cfg = ctx.config
    data = ctx.resolved_config()   # core.executor as a command runs it (`-j 2` alone: process)
    if section:
        top, *tables = section.split(".")
        if top in cfg.broken or top in cfg.needs:  # say why it is left out, as its commands do
            cfg.section(top)
        if top not in data:
            raise AstroError(f"config show: unknown section {top!r}{_did_you_mean(top, data)} "
                             f"(known: {', '.join(data)})")
        shown = data[top]
        for depth, name in enumerate(tables, start=1):   # a table of the section: [dre.simulate]; a key last
            inner = sorted(k for k, v in shown.items() if isinstance(v, dict))
            if name not in inner and not (depth == len(tables) and name in shown):
                where = ".".join([top, *tables[:depth - 1]])
                if name in shown:   # a key with more after it: dre.fit.statistic.x
                    raise AstroError(f"config show: {where}.{name} is a key, not a table: "
                                     f"`astro config show {where}.{name}` shows it")
                keys = sorted(k for k in shown if k not in inner)
                raise AstroError(f"config show: [{where}] has no table or key {name!r}{_did_you_mean(name, shown)} "
                                 f"(its tables: {', '.join(inner) or 'none'}; its keys: {', '.join(keys) or 'none'})")
            shown = shown[name]
        for name in reversed([top, *tables]):
            shown = {name: shown}
        data = shown
    else:  # a section left out is named, not silently missing
        for name, why in sorted(cfg.broken.items()):
            ctx.log.warning("[%s] not shown: plugin %r is broken: %s (see `astro plugins`)", name,
                            cfg._packaged.owners.get(name, name), why)
        for name in sorted(cfg.needs):
            ctx.log.warning("not shown: %s", cfg.needs_setting(name))
    if sources:
        flat = _flatten(data)
        rows = {k: {"value": v, "source": cfg.sources.get(k) or cfg.unset_source(k)} for k, v in flat.items()}
        if "core.executor" in rows and ctx.executor_source():
            rows["core.executor"]["source"] = ctx.executor_source()
        if as_json:
            ctx.emit(rows)
        else:
            width = max(len(k) for k in rows) if rows else 0
            for k, r in rows.items():
                typer.echo(f"{k:<{width}} = {json.dumps(r['value'])}    # {r['source']}")
        return
    if as_json:
        ctx.emit(data)
    else:
        typer.echo(to_toml(data), nl=False)


@config_app.command("validate")
def config_validate(files: list[Path] = typer.Argument(..., help="TOML files to check.")):
    """Check TOML files against every section's schema: one line per file on stdout (``FILE: OK`` or
    ``FILE: N problem(s)``), every problem on stderr (exit 2)."""
    from astrotool.config import validate_file
    from astrotool.errors import ConfigError

    from astrotool.console import emit, json_results

    problems, results = [], []
    for f in files:
        try:
            cfg = validate_file(f)
            # a section of a plugin that is broken (its own defaults are unusable) is left out: not checked
            ours = {k.split(".")[0] for k, src in cfg.sources.items() if src == str(Path(f))}
            skipped = {s: why for s, why in cfg.broken.items() if s in ours}
            for s, why in skipped.items():
                current().log.warning("%s: [%s] not checked: plugin %r is broken: %s", f, s,
                                      cfg._packaged.owners.get(s, s), why)
            results.append({"file": str(f), "ok": True, "problems": [], "not_checked": skipped})
            if not json_results():
                typer.echo(f"{f}: OK" if not skipped else
                           f"{f}: OK, but not checked: [{'], ['.join(skipped)}] (plugin broken, see above)")
        except ConfigError as exc:
            problems += exc.problems
            results.append({"file": str(f), "ok": False, "problems": exc.problems})
            if not json_results():   # every file has its verdict on stdout; the problems follow on stderr
                typer.echo(f"{f}: {len(exc.problems)} problem(s)")
    if json_results():
        emit(results)
    if problems:
        raise ConfigError(problems)


@config_app.command("schema")
def config_schema():
    """Print the JSON Schema of the whole configuration (a JSON document, whatever --json says)."""
    from astrotool.config import schema

    typer.echo(json.dumps(schema(), indent=2))


# ---------------------------------------------------------------------------- plugins
plugins_app = typer.Typer()
"""Typer app of ``astro plugins``."""


@plugins_app.command("plugins")
def plugins():
    """List installed plugins with their distribution, version and status (broken ones with their error).

    Every command group is mounted to check it, so a plugin whose commands cannot be imported, whose
    parent group does not exist or whose options are spelled like global options shows as broken."""
    from astrotool import console
    from astrotool.cli import build_app, mount_all
    from astrotool.plugins import get_registry

    registry = get_registry()
    mount_all(build_app()._astro_group)  # commands that cannot mount mark their plugin broken
    from astrotool.config import Packaged

    Packaged(registry).check_all()  # so do defaults.toml files that are missing or that their model refuses
    infos = list(registry.info.values())
    console.print_table("plugins", ["name", "distribution", "version", "status", "error"],
                        [[i.name, i.distribution, i.version, i.status, i.error] for i in infos])


# ---------------------------------------------------------------------------- doctor
doctor_app = typer.Typer()
"""Typer app of ``astro doctor``."""


@doctor_app.command("doctor")
def doctor():
    """Check what is installed and usable: Python, numpy, torch and its devices, cupy and a GPU,
    the plugins' libraries and external tools; a hint for each missing piece."""
    from astrotool import console
    from astrotool.errors import AstroError
    from astrotool.hookspecs import CheckResult
    from astrotool.plugins import get_registry, load_target

    registry = get_registry()
    from astrotool.config import Packaged

    Packaged(registry).check_all()  # a plugin whose defaults.toml is missing or invalid is listed as broken
    results: list[tuple[str, CheckResult]] = []
    done: set[str] = set()
    for plugin, check in registry.doctor_checks():
        if check.target in done:  # a shared check (e.g. pyarrow) named by several plugins runs once
            continue
        done.add(check.target)
        try:
            out = load_target(check.target)()
        except Exception as exc:
            out = CheckResult(check.name, False, f"check failed: {type(exc).__name__}: {exc}")
        for r in out if isinstance(out, list) else [out]:
            if not isinstance(r, CheckResult):  # a plugin's mistake is its check's failure, not doctor's crash
                r = CheckResult(check.name, False, f"check {check.target} returned {type(r).__name__}, "
                                                   "not a CheckResult", f"report it to plugin {plugin!r}")
            results.append((plugin, r))
    for info in registry.broken():
        results.append((info.name, CheckResult(f"plugin {info.name}", False, info.error,
                                               f"reinstall {info.distribution}")))
    if console.json_results():
        current().emit([{"plugin": p, "name": r.name, "ok": r.ok, "detail": r.detail, "hint": r.hint,
                         "required": r.required} for p, r in results])
    else:
        console.print_table("astro doctor", ["plugin", "check", "ok", "detail", "hint"],
                            [[p, r.name, "yes" if r.ok else "no", r.detail, r.hint] for p, r in results])
    missing = [r.name for _, r in results if r.required and not r.ok]
    if missing:
        raise AstroError(f"required pieces missing: {', '.join(missing)}", exit_code=1)


# ---------------------------------------------------------------------------- demo
demo_app = typer.Typer()
"""Typer app of ``astro demo``."""


@demo_app.command("demo")
def demo(
    directory: Path = typer.Argument(None, help="Fresh workspace folder (default: -w, else $ASTRO_WORKSPACE, else "
                                                "./astro-demo-<utc>)."),
    only: list[str] = typer.Option(None, "--only", metavar="NAME[,NAME...]",
                                   help="Run only these demo steps (a comma list, or the option repeated): dre, "
                                        "lens, lens-kappa, plato, ztf with every plugin installed."),
):
    """Run every plugin's demo step in a fresh workspace and summarise what it produced."""
    from astrotool.console import results_muted
    from astrotool.context import Context, set_current
    from astrotool.errors import AstroError
    from astrotool.plugins import get_registry, load_target
    from astrotool.workspace import Workspace

    parent = current()
    if directory is None:   # -w or $ASTRO_WORKSPACE, as every command's workspace; else a new folder here
        given = parent.options.workspace is not None or os.environ.get("ASTRO_WORKSPACE") is not None
        directory = parent.workspace_root if given else \
            Path(f"astro-demo-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}")
    directory = Workspace(directory).root  # refuses a path that is, or lies under, a file
    if directory.exists() and any(p.name not in ("runs",) for p in directory.iterdir()) and \
            not parent.options.overwrite:   # (not parent.overwrite: it would use the parent's workspace)
        raise AstroError(f"{directory}: not empty; the demo needs a fresh workspace (or use --overwrite)")
    every = get_registry().demo_steps()
    given = only
    only = [name.strip() for entry in only or () for name in entry.split(",") if name.strip()]
    if given and not only:  # `--only ","` or `--only ""` would run every step
        raise AstroError(f"--only {','.join(given)!r}: no demo named (known: {', '.join(s.name for _, s in every)})")
    unknown = sorted(set(only or ()) - {s.name for _, s in every})
    if unknown:
        raise AstroError(f"--only {', '.join(unknown)}: no such demo (known: {', '.join(s.name for _, s in every)})")
    steps = [(p, s) for p, s in every if not only or s.name in only]
    if not steps:
        raise AstroError("no demo steps: install a plugin (astrotool-dre, -lens, -plato, -ztf)")
    opts = parent.options
    opts.workspace = str(directory)
    ctx = Context(opts, "demo", parent.argv)
    ctx.folder_at_start = parent.folder_at_start   # its runs/ folder from the start, as every command's
    ctx.failures = parent.failures
    set_current(ctx)
    Workspace(directory).init()
    summary, failed = [], []
    t_all = time.time()
    try:
        for plugin, step in steps:
            ctx.log.info("demo: %s — %s", step.name, step.help)
            t0 = time.time()
            try:
                with results_muted():   # the commands a step runs print nothing: stdout holds the summary alone
                    lines = _demo_lines(load_target(step.target)(ctx))
            except Exception as exc:  # one step's failure is reported; the other plugins' steps still run
                failed.append(step.name)
                why = str(exc) if isinstance(exc, AstroError) else f"{type(exc).__name__}: {exc}"
                lines = [f"FAILED: {why}"]
                ctx.log.error("demo %s failed: %s", step.name, why)
                if opts.traceback or opts.verbose >= 2:  # as for the errors of every command
                    import traceback

                    ctx.log.error("demo %s: %s", step.name, traceback.format_exc().rstrip())
            summary.append((step.name, time.time() - t0, lines))
        _record_written(ctx, directory, t_all)  # the demo is recorded in its workspace, with what it wrote
    finally:
        if parent._record is not None and parent._record.dir is not None:   # made before the demo's: empty
            with contextlib.suppress(OSError):
                parent._record.dir.rmdir()
        parent._record, parent._workspace = ctx._record, ctx._workspace
        set_current(parent)
    from astrotool.console import emit, json_results

    if json_results():
        emit({"workspace": str(directory), "seconds": round(time.time() - t_all, 1), "failed": failed,
              "steps": [{"name": n, "seconds": round(dt, 1), "lines": lines} for n, dt, lines in summary]})
        summary = []
    else:
        typer.echo(f"\nastro demo: workspace {directory} ({time.time() - t_all:.0f} s)")
    for name, dt, lines in summary:
        typer.echo(f"\n[{name}] {dt:.1f} s")
        for line in lines:
            typer.echo(f"  {line}")
    if failed:
        raise AstroError(f"demo steps failed: {', '.join(failed)}", exit_code=1)


def _record_written(ctx, root: Path, since: float) -> None:
    """List in the demo's ``run.json`` every file its steps wrote in the workspace ``root`` (modified since
    ``since``, a time in s; ``runs/`` and hidden files left out): a step calls library functions as well as
    commands, and only commands record what they write."""
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).parts
        if rel[0] != "runs" and not any(part.startswith(".") for part in rel) and path.is_file() \
                and path.stat().st_mtime >= since - 1.0:   # a second for coarse file-system clocks
            ctx.record.add_output(path)


def _demo_lines(out) -> list[str]:
    """The summary lines a demo step returned: a list or tuple of lines; a single string is one
    line, ``None`` none.

    Raises
    ------
    TypeError
        The step returned something else (its step is then reported as failed).
    """
    if out is None:
        return []
    if isinstance(out, str):
        return [out]
    if isinstance(out, (list, tuple)):
        return [str(line) for line in out]
    raise TypeError(f"a demo step returns a list of lines, not {type(out).__name__}")
