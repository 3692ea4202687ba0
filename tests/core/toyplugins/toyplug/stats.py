"""``astro toy stats``: mounted under ``astro toy`` by ``CommandSpec(parent="toy")``.

``astro toy --help`` lists it with its registered one-line help without
importing this module; it is imported only when ``astro toy stats ...`` runs.
"""

import json

import typer

from astrotool.context import current
from astrotool.errors import InputError

from toyplug import NAME, OUT

app = typer.Typer(no_args_is_help=True)


@app.callback()
def main():
    """Summarise the toy outputs."""


@app.command()
def total():
    """Print how many squares are in the workspace and their sum."""
    ctx = current()
    files = sorted(ctx.workspace.stage(NAME, OUT, create=False).glob("item_*.json"))
    squares = []
    for path in files:
        try:
            squares.append(json.loads(path.read_text())["sq"])
        except (ValueError, KeyError) as exc:
            raise InputError(path, f"not a toy output ({exc})") from None
    ctx.emit({"files": len(files), "sum": sum(squares)})
