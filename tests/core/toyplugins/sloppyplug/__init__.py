"""A plugin with the mistakes ``astro doctor`` and ``astro demo`` must survive.

It has no ``*.dist-info``: tests register it in a fresh registry
(``Registry(extra=[sloppyplug])``). Its doctor check returns ``True`` instead of a
:class:`CheckResult`; of its demo steps, ``crash`` raises an ordinary exception,
``text`` returns one string instead of a list of lines and ``after`` runs last.
"""

from astrotool.hookspecs import DemoStep, DoctorCheck, hookimpl


@hookimpl
def astro_doctor_checks():
    """A check whose target returns ``True``, not a ``CheckResult``."""
    return [DoctorCheck("sloppy-check", "sloppyplug:check")]


@hookimpl
def astro_demo_steps():
    """Three demo steps, in this order: ``crash``, ``text``, ``after``."""
    return [DemoStep("crash", "sloppyplug:crash", "raises", order=1),
            DemoStep("text", "sloppyplug:text", "returns a str", order=2),
            DemoStep("after", "sloppyplug:after", "runs after the crash", order=3)]


def check():
    """Returns the wrong type."""
    return True


def crash(ctx):
    """Fails with an ordinary exception, not an ``AstroError``."""
    raise ZeroDivisionError("division by zero in the demo")


def text(ctx):
    """Returns one line as a string, after running "commands" that print results (the summary gives them)."""
    from astrotool import console

    ctx.emit({"a command's": "result"})
    console.print_table("a command's table", ["tile"], [["t1"]])
    return "one whole line"


def after(ctx):
    """Proves the demo went on; writes ``after/written.txt`` as a library function would, unrecorded."""
    (ctx.workspace.root / "after").mkdir()
    (ctx.workspace.root / "after" / "written.txt").write_text("by the demo step\n")
    return ["after ran"]
