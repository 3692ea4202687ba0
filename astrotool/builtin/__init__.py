"""The core's own commands, configuration and doctor checks, registered through the
same hooks as any plugin."""

from astrotool.hookspecs import CommandSpec, ConfigSection, DoctorCheck, hookimpl

__docformat__ = "numpy"

_CMD = "astrotool.builtin.commands"


@hookimpl
def astro_commands():
    """The core's commands: init, status, config, plugins, doctor, demo."""
    return [
        CommandSpec("init", f"{_CMD}:init_app", "Create a workspace: astro.toml, runs/ and every stage folder.", "Core"),
        CommandSpec("status", f"{_CMD}:status_app", "Show the workspace's stage folders and their file counts.", "Core"),
        CommandSpec("config", f"{_CMD}:config_app", "Show, validate and describe the layered configuration.", "Core"),
        CommandSpec("plugins", f"{_CMD}:plugins_app", "List installed plugins, their versions and status.", "Core"),
        CommandSpec("doctor", f"{_CMD}:doctor_app", "Check what is installed and usable (GPU, libraries, tools).", "Core"),
        CommandSpec("demo", f"{_CMD}:demo_app", "Run every plugin's demo in a fresh workspace and summarise it.", "Core"),
    ]


@hookimpl
def astro_config_sections():
    """The ``[core]`` and ``[ml]`` sections."""
    return [
        ConfigSection("core", "astrotool.builtin.config:CoreConfig", "astrotool:defaults.toml"),
        ConfigSection("ml", "astrotool.builtin.config:MLConfig", "astrotool:defaults.toml"),
    ]


@hookimpl
def astro_doctor_checks():
    """The core's checks: Python, numpy, torch (and its GPUs), cupy, dask."""
    d = "astrotool.doctor"
    return [
        DoctorCheck("python", f"{d}:check_python"),
        DoctorCheck("numpy", f"{d}:check_numpy"),
        DoctorCheck("torch", f"{d}:check_torch"),
        DoctorCheck("cupy", f"{d}:check_cupy"),
        DoctorCheck("dask", f"{d}:check_dask"),
    ]
