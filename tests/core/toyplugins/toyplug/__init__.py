"""A small real plugin used by the core tests (installed on sys.path as a distribution)."""

from astrotool.hookspecs import CheckResult, CommandSpec, ConfigSection, DemoStep, DoctorCheck, hookimpl


@hookimpl
def astro_commands():
    return [CommandSpec("toy", "toyplug.cli:app", "Toy commands for the core tests.")]


@hookimpl
def astro_config_sections():
    return [ConfigSection("toy", "toyplug.config:ToyConfig", "toyplug:defaults.toml")]


@hookimpl
def astro_workspace_stages():
    return {"toy": ["out", "logs"]}


@hookimpl
def astro_doctor_checks():
    return [DoctorCheck("toy-check", "toyplug:check")]


@hookimpl
def astro_demo_steps():
    return [DemoStep("toy", "toyplug.cli:demo", "square a few numbers")]


def check():
    return CheckResult("toy-check", False, "not here", "install toy")
