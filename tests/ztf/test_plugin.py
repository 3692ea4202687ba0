"""What the ztf plugin registers: targets the core imports later exist, defaults agree, stages exist."""

from __future__ import annotations

import tomllib
from importlib.resources import files

import typer

import astrotool_ztf as plugin
from astrotool.hookspecs import CheckResult
from astrotool.plugins import load_target
from astrotool.workspace import Workspace


def test_hook_targets_load_and_packaged_defaults_equal_the_model_defaults():
    (command,) = plugin.astro_commands()
    assert command.name == plugin.NAME and isinstance(load_target(command.target), typer.Typer)
    (section,) = plugin.astro_config_sections()
    package, _, resource = section.defaults.partition(":")
    packaged = tomllib.loads(files(package).joinpath(resource).read_text())
    model = load_target(section.model)
    assert list(packaged) == [plugin.NAME] and model.model_validate(packaged[plugin.NAME]) == model()
    results = {check.name: load_target(check.target)() for check in plugin.astro_doctor_checks()}
    assert list(results) == ["fastavro", "h5py", "pyarrow"]
    assert all(isinstance(r, CheckResult) and r.ok and r.required for r in results.values())
    (demo,) = plugin.astro_demo_steps()
    assert callable(load_target(demo.target))


def test_astro_init_creates_the_declared_stage_folders(tmp_path):
    # only folders its commands write
    assert plugin.astro_workspace_stages() == {"ztf": ["alerts", "stamps", "simulated", "prepared", "models",
                                                       "embeddings", "reports", "predictions"]}
    Workspace(tmp_path).init()
    assert sorted(p.name for p in (tmp_path / "ztf").iterdir()) == sorted(plugin.STAGES)
