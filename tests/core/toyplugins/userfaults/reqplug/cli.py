"""``astro req show``: print the ``[req]`` section (read through the run's context)."""

import typer

from astrotool.context import current

app = typer.Typer(no_args_is_help=True)


@app.callback()
def main():
    """Show [req]."""


@app.command()
def show():
    """Print the section as JSON."""
    typer.echo(current().section("req").model_dump_json())
