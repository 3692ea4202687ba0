"""``astro toy``: the commands parse options, call :mod:`toyplug.squares` and report.

Each command gets the run's :class:`astrotool.context.Context` with
:func:`astrotool.context.current`; through it, it reads its configuration section
(command-line flags override it: ``None`` means "not given"), finds its stage
folder, runs its items through the run's executor (``-j``, ``--executor``,
``--shard``, ``--seed`` apply without any code here), records what it wrote in
``runs/<utc>-toy-run/run.json`` and prints its result on stdout.
"""

import json

import typer

from astrotool.context import current

from toyplug import NAME, OUT
from toyplug.squares import Square, square

app = typer.Typer(no_args_is_help=True)


@app.callback()
def main():
    """Toy commands for the core tests."""


@app.command()
def run(count: int = typer.Option(None, help="Items (default: toy.count)."),
        fail: list[int] = typer.Option(None, help="Items that fail."),
        slow: float = typer.Option(0.0, help="Seconds per item [s].")):
    """Square COUNT numbers, one output file each; finished files are kept (resume)."""
    ctx = current()
    cfg = ctx.section(NAME, {"count": count})
    out = str(ctx.workspace.stage(NAME, OUT))
    items = [Square(i, out, ctx.overwrite, i in (fail or []), slow) for i in range(cfg.count)]
    results = ctx.map(square, items, desc="squares", keys=[item.key for item in items])
    for _, result in results:
        ctx.record.add_output(result["path"])
    skipped = sum(result["skipped"] for _, result in results)
    ctx.emit({"done": len(results), "written": len(results) - skipped, "skipped": skipped,
              "label": cfg.label, "factor": cfg.inner.factor})


@app.command()
def show():
    """Print the toy section."""
    ctx = current()
    ctx.emit(json.loads(ctx.section(NAME).model_dump_json()))


def demo(ctx):
    """The ``astro demo`` step: square three numbers in the demo workspace."""
    out = str(ctx.workspace.stage(NAME, OUT))
    items = [Square(i, out) for i in range(3)]
    results = ctx.map(square, items, desc="squares", keys=[item.key for item in items])
    return [f"squared {len(results)} numbers into {out}"]
