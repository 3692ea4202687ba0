"""Toy commands: square numbers through the executor, write one file per item."""

import json
import random
import time

import typer

from astrotool.context import current
from astrotool.workspace import atomic_path, is_done

app = typer.Typer(no_args_is_help=True)


@app.callback()
def main():
    """Toy commands for the core tests."""


def square(item, seed):
    n, fail, slow, out, overwrite = item
    if n in fail:
        raise ValueError(f"item {n} is bad")
    path = f"{out}/item_{n:03d}.json"
    if is_done(path, overwrite):
        return "skipped"
    with atomic_path(path) as tmp:
        with open(tmp, "w") as fh:
            fh.write("{")
            fh.flush()
            time.sleep(slow)
            fh.write(f'"n": {n}, "sq": {n * n}, "draw": {random.Random(seed).random()!r}}}')
    return n * n


@app.command()
def run(count: int = typer.Option(None, help="Items."), fail: list[int] = typer.Option(None, help="Items that fail."),
        slow: float = typer.Option(0.0, help="Seconds per item.")):
    """Square COUNT numbers, one output file each."""
    ctx = current()
    cfg = ctx.section("toy", {"count": count})
    out = ctx.workspace.stage("toy", "out")
    items = [(i, tuple(fail or []), slow, str(out), ctx.overwrite) for i in range(cfg.count)]
    results = ctx.map(square, items, desc="squares", keys=[f"item{i}" for i in range(cfg.count)])
    for key, value in results:
        ctx.record.add_output(f"{out}/{key}")
    ctx.emit({"done": len(results), "label": cfg.label, "factor": cfg.inner.factor})


@app.command()
def show():
    """Print the toy section."""
    ctx = current()
    ctx.emit(json.loads(ctx.section("toy").model_dump_json()))


def demo(ctx):
    out = ctx.workspace.stage("toy", "out")
    results = ctx.map(square, [(i, (), 0.0, str(out), False) for i in range(3)], desc="squares",
                      keys=[f"item{i}" for i in range(3)])
    return [f"squared {len(results)} numbers into {out}"]
