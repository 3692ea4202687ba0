"""``astro stem show``: print the ``[stem]`` section (read through the run's context)."""

import typer

from astrotool.context import current

app = typer.Typer(no_args_is_help=True)


@app.callback()
def main():
    """Show [stem]."""


@app.command()
def show():
    """Print the section as JSON."""
    typer.echo(current().section("stem").model_dump_json())
