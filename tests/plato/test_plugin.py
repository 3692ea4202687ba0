"""What the plato plugin registers: targets the core imports later exist, defaults agree, stages exist."""

from __future__ import annotations

import tomllib
from importlib.resources import files

import typer

import astrotool_plato as plugin
from astrotool.hookspecs import CheckResult
from astrotool.plugins import load_target
from astrotool.workspace import Workspace


def test_registered_targets_exist_and_the_defaults_file_restates_the_model():
    spec = plugin.astro_config_sections()[0]
    package, _, resource = spec.defaults.partition(":")
    toml = tomllib.loads(files(package).joinpath(resource).read_text())
    config = load_target(spec.model)
    assert config.model_validate(toml["plato"]) == config() and set(toml) == {"plato"}
    assert isinstance(load_target(plugin.astro_commands()[0].target), typer.Typer)
    checks = [(c.name, load_target(c.target)()) for c in plugin.astro_doctor_checks()]
    assert [name for name, _ in checks] == ["pyarrow", "astropy (BLS)", "psls"]
    assert all(isinstance(res, CheckResult) and res.name == name for name, res in checks)
    assert checks[0][1].ok and checks[1][1].ok                  # required here; psls is optional
    assert callable(load_target(plugin.astro_demo_steps()[0].target))


def test_init_makes_every_stage_folder_and_nothing_else(tmp_path):
    assert plugin.STAGES == ("raw", "labels", "prepared", "models", "runs", "reports")  # only folders its commands write
    assert plugin.astro_workspace_stages() == {"plato": ["raw", "labels", "prepared", "models", "runs", "reports"]}
    Workspace(tmp_path).init()
    assert {p.name for p in (tmp_path / "plato").iterdir()} == set(plugin.STAGES)
