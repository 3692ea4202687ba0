"""Layered configuration: order of layers, provenance, validation errors."""

import json

import pytest

from astrotool import config
from astrotool.errors import ConfigError


def write(path, text):
    path.write_text(text)
    return path


def test_layer_order_and_sources(astro, toy, tmp_path):
    user = write(tmp_path / "user.toml", '[toy]\nlabel = "user"\ncount = 10\n')
    ws = tmp_path / "ws"
    ws.mkdir()
    write(ws / "astro.toml", '[toy]\nlabel = "workspace"\n[toy.inner]\nfactor = 5.0\n')
    c1 = write(tmp_path / "c1.toml", '[toy]\nlabel = "cfg1"\nmode = "slow"\n')
    c2 = write(tmp_path / "c2.toml", '[toy]\nlabel = "cfg2"\n')
    r = astro("-w", ws, "--cfg", c1, "--cfg", c2, "config", "show", "toy", "--sources", "--json",
              pythonpath=toy, env={"ASTRO_CONFIG": str(user)})
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert rows["toy.count"] == {"value": 10, "source": str(user)}
    assert rows["toy.inner.factor"] == {"value": 5.0, "source": str(ws / "astro.toml")}
    assert rows["toy.mode"] == {"value": "slow", "source": str(c1)}
    assert rows["toy.label"] == {"value": "cfg2", "source": str(c2)}
    # environment beats files, --set beats environment, the flag beats --set
    env = {"ASTRO_CONFIG": str(user), "ASTRO_TOY__LABEL": "env", "ASTRO_TOY__INNER__FACTOR": "7.5"}
    r = astro("-w", ws, "--cfg", c1, "config", "show", "toy", "--sources", "--json", pythonpath=toy, env=env)
    rows = json.loads(r.stdout)
    assert rows["toy.label"] == {"value": "env", "source": "$ASTRO_TOY__LABEL"}
    assert rows["toy.inner.factor"]["value"] == 7.5
    r = astro("-w", ws, "--set", "toy.label=set", "config", "show", "toy", "--json", pythonpath=toy, env=env)
    assert json.loads(r.stdout)["toy"]["label"] == "set"
    r = astro("-w", ws, "--set", "toy.count=4", "toy", "run", "--count", "2", "--json", pythonpath=toy, env=env)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["done"] == 2


def test_every_problem_listed_with_file_and_key(astro, toy, tmp_path):
    bad = write(tmp_path / "bad.toml", '[toy]\ncount = "ten"\nmode = "ultra"\ncolour = 1\n[core]\njobs = -1\n')
    r = astro("-w", tmp_path, "--cfg", bad, "toy", "show", pythonpath=toy)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    for key in ["toy.count", "toy.mode", "toy.colour: unknown key", "core.jobs"]:
        assert f"{bad}: {key}" in r.stderr, (key, r.stderr)


def test_toml_syntax_error_names_file(astro, toy, tmp_path):
    bad = write(tmp_path / "syntax.toml", "[toy\ncount = 3\n")
    r = astro("-w", tmp_path, "--cfg", bad, "config", "show", pythonpath=toy)
    assert r.returncode == 2
    assert f"{bad}: TOML syntax error" in r.stderr and "Traceback" not in r.stderr


def test_env_var_error_names_variable(astro, toy, tmp_path):
    r = astro("-w", tmp_path, "config", "show", pythonpath=toy, env={"ASTRO_TOY__COUNT": "many"})
    assert r.returncode == 2
    assert "$ASTRO_TOY__COUNT: toy.count" in r.stderr


def test_unknown_section_and_missing_cfg(astro, toy, tmp_path):
    bad = write(tmp_path / "s.toml", "[nosuch]\nx = 1\n")
    r = astro("--cfg", bad, "config", "show", pythonpath=toy)
    assert r.returncode == 2 and f"{bad}: [nosuch]: unknown section" in r.stderr
    r = astro("--cfg", tmp_path / "missing.toml", "config", "show", pythonpath=toy)
    assert r.returncode == 2 and "missing.toml: file not found" in r.stderr


def test_a_user_file_named_by_astro_config_must_exist(astro, toy, tmp_path):
    r = astro("config", "show", pythonpath=toy, env={"ASTRO_CONFIG": str(tmp_path / "typo.tmol")})
    assert r.returncode == 2 and f"$ASTRO_CONFIG: {tmp_path / 'typo.tmol'}: file not found" in r.stderr
    bom = tmp_path / "bom.toml"  # saved by an editor that writes a byte-order mark
    bom.write_bytes("\ufeff[toy]\ncount = 3\n".encode("utf-8"))
    r = astro("--cfg", bom, "config", "show", "toy", "--json", pythonpath=toy)
    assert r.returncode == 0 and json.loads(r.stdout)["toy"]["count"] == 3, r.stderr


def test_validate_and_schema(astro, toy, tmp_path):
    good = write(tmp_path / "good.toml", '[toy]\ncount = 1\n[core]\nexecutor = "process"\n')
    bad = write(tmp_path / "bad.toml", '[core]\nexecutor = "mpi"\n')
    r = astro("config", "validate", good, pythonpath=toy)
    assert r.returncode == 0 and f"{good}: OK" in r.stdout
    r = astro("config", "validate", good, bad, pythonpath=toy)
    assert r.returncode == 2 and f"{bad}: core.executor" in r.stderr
    r = astro("config", "schema", pythonpath=toy)
    s = json.loads(r.stdout)
    assert {"core", "toy"} <= set(s["properties"])
    assert s["properties"]["toy"]["properties"]["mode"]["enum"] == ["fast", "slow"]


def test_show_toml_round_trips(astro, toy, tmp_path):
    r = astro("config", "show", pythonpath=toy)
    assert r.returncode == 0, r.stderr
    out = write(tmp_path / "all.toml", r.stdout)
    assert astro("config", "validate", out, pythonpath=toy).returncode == 0


def test_parse_value_and_set_layer():
    assert config.parse_value("64") == 64
    assert config.parse_value("true") is True
    assert config.parse_value("[1, 2]") == [1, 2]
    assert config.parse_value("tcp://host:8786") == "tcp://host:8786"
    assert config.set_layer(["a.b.c=1", "a.d=x"]) == {"a": {"b": {"c": 1}, "d": "x"}}
    with pytest.raises(ConfigError, match="expected section.key=value"):
        config.set_layer(["nodot=1"])


def test_negative_seed_from_any_layer_is_refused(astro, tmp_path):
    r = astro("-w", tmp_path, "--set", "core.seed=-1", "config", "show", "core")
    assert r.returncode == 2 and "--set: core.seed: Input should be greater than or equal to 0" in r.stderr
    r = astro("-w", tmp_path, "config", "show", "core", env={"ASTRO_CORE__SEED": "-2"})
    assert r.returncode == 2 and "$ASTRO_CORE__SEED: core.seed" in r.stderr


@pytest.mark.parametrize("args, line", [
    # a union's members each reported the same value, the first blamed on "defaults"
    (["dre", "detect", "--gain", "-1"], "command-line option --gain: dre.detect.gain: Input should be greater than 0"),
    (["lens", "generate", "-n", "4", "--snr", "inf"],
     "command-line option --snr: lens.generate.noise.snr: Input should be a finite number (got inf)"),
    (["lens", "generate", "-n", "4", "--snr", "0"], "command-line option --snr: lens.generate.noise.snr: snr must be > 0"),
    (["plato", "simulate", "--days", "inf"], "command-line option --days: plato.simulate.duration_days: Input should be a finite"),
    # a check of the whole table is put on its key, with that key's value, not the table's
    (["plato", "simulate", "--cadence", "0.0001"],
     "command-line option --cadence: plato.simulate.cadence_s: 10.0 d at 0.0001 s is 8.64e+09 samples"),
    # an item of a list is blamed on the list's layer, a check of a table on the key a user set (was "defaults")
    (["lens", "measure", "--methods", "FOO"], "command-line option --methods: lens.measure.methods.0: Input should be"),
    (["--set", "lens.train.split=[0.5,0.5]", "lens", "train"], "--set: lens.train.split.2: Field required"),
    (["lens", "generate", "--n", "5", "--ring"], "command-line option --n: lens.generate: ring pairs need an even n"),
    (["--set", "dre.models.boxsize=96", "dre", "cuts"], "--set: dre: cuts.size (128) must equal models.boxsize (96)"),
    # a validator's message that shows the value is not followed by the value again
    (["--set", "plato.simulate.name=2024-01-01", "plato", "simulate"],
     "--set: plato.simulate.name: Input should be a valid string (got datetime.date(2024, 1, 1)); quote a string"),
    (["lens", "train", "--device", "gpu"], "accelerator must be one of auto, cpu, cuda, mps or cuda:N (got 'gpu')\n"),
])
def test_a_bad_value_is_blamed_on_its_option_once(astro, tmp_path, args, line):
    r = astro("-w", tmp_path / "ws", *args)
    assert r.returncode == 2 and line in r.stderr, r.stderr
    problems = r.stderr.split("invalid configuration:\n", 1)[1].splitlines()
    assert len([p for p in problems if p.startswith("  ")]) == 1 and "{" not in r.stderr, r.stderr
    assert not (tmp_path / "ws" / "lens").exists() and not (tmp_path / "ws" / "plato").exists()


def test_a_key_outside_its_section_names_the_section(astro, tmp_path):
    """``log_format = "json"`` at the top of a file was an 'unknown section [log_format]'."""
    cfg = tmp_path / "machine.toml"
    cfg.write_text('log_format = "json"\nfoo = 1\n')
    r = astro("--cfg", cfg, "-w", tmp_path / "ws", "config", "show")
    assert r.returncode == 2, r.stderr
    assert f"{cfg}: log_format: a key of [core], not a section; put it under [core]" in r.stderr, r.stderr
    assert f"{cfg}: foo: a key outside every section" in r.stderr, r.stderr


def test_misspelt_key_or_section_suggests_the_known_one(astro, toy, tmp_path):
    bad = write(tmp_path / "typo.toml", '[core]\nexecuter = "process"\n[toyy]\ncount = 1\n')
    r = astro("-w", tmp_path, "--cfg", bad, "config", "show", pythonpath=toy)
    assert r.returncode == 2
    assert f"{bad}: core.executer: unknown key; did you mean 'executor'?" in r.stderr, r.stderr
    assert f"{bad}: [toyy]: unknown section; did you mean 'toy'?" in r.stderr, r.stderr


def test_a_plugin_with_missing_or_invalid_defaults_is_broken_and_others_work(astro, toy, tmp_path):
    """One plugin's missing ``defaults.toml`` (or a value its model refuses) marks that plugin
    broken, with the reason, instead of stopping every other plugin's commands."""
    path = [toy[0], toy[0] / "baddefaults"]
    r = astro("plugins", "--json", pythonpath=path)
    assert r.returncode == 0, r.stderr
    rows = {p["name"]: p for p in json.loads(r.stdout)}
    assert rows["nodefaults"]["status"] == "broken"
    assert "nodefaultsplug/defaults.toml: cannot read: FileNotFoundError" in rows["nodefaults"]["error"]
    assert rows["badvalue"]["status"] == "broken"
    assert "[badvalue]: packaged defaults are invalid: factor" in rows["badvalue"]["error"]
    assert rows["toy"]["status"] == "ok"
    # every other command still works, a user's [badvalue] table included (the broken section is left out)
    user = write(tmp_path / "user.toml", "[badvalue]\nfactor = 1.0\n")
    r = astro("-w", tmp_path, "--json", "toy", "show", pythonpath=path, env={"ASTRO_CONFIG": str(user)})
    assert r.returncode == 0, r.stderr
    r = astro("config", "show", "--json", pythonpath=path)
    assert r.returncode == 0, r.stderr
    assert "toy" in json.loads(r.stdout) and "badvalue" not in json.loads(r.stdout)
    # a bad value the user gives is still the user's error
    r = astro("--set", "toy.count=x", "config", "show", pythonpath=path)
    assert r.returncode == 2 and "toy.count" in r.stderr


def test_section_of_a_broken_plugin_says_so(toy, monkeypatch):
    monkeypatch.syspath_prepend(str(toy[0]))
    monkeypatch.syspath_prepend(str(toy[0] / "baddefaults"))
    import importlib

    from astrotool.errors import AstroError
    from astrotool.plugins import Registry

    registry = Registry(entry_points=False, extra=[importlib.import_module("toyplug"),
                                                   importlib.import_module("nodefaultsplug")])
    cfg = config.load(environ={}, registry=registry)
    assert cfg.section("toy").count == 3
    with pytest.raises(AstroError, match="plugin 'nodefaultsplug' is broken: config section"):
        cfg.section("nodefaults")
    assert registry.info["nodefaultsplug"].status == "broken"


def test_a_variable_with_one_underscore_after_a_section_is_named(astro, toy, tmp_path):
    """``ASTRO_CORE_JOBS=3`` (meant as ``ASTRO_CORE__JOBS``) was ignored without a word."""
    env = {"ASTRO_CORE_JOBS": "3", "ASTRO_SHARED_DATA": "/x", "ASTRO_WORKSPACE": str(tmp_path),
           "ASTRO_NO_PLUGINS": "0", "ASTRO_TOY__COUNT": "4"}
    assert config.env_typos(env, {"core", "toy"}) == [
        "$ASTRO_CORE_JOBS is not read: a configuration key is set by $ASTRO_CORE__JOBS (core.jobs; "
        "two underscores after the section and between nested keys)"]
    r = astro("config", "show", "core", pythonpath=toy, env={"ASTRO_CORE_JOBS": "3"})
    assert r.returncode == 0 and "$ASTRO_CORE_JOBS is not read" in r.stderr, r.stderr
