"""Layered configuration: order of layers, provenance, validation errors."""

import json
import re

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


def test_config_show_of_a_table_of_a_section(astro, toy, tmp_path):
    """The docs name tables such as [dre.simulate]; `config show dre.simulate` said "unknown section"."""
    r = astro("-w", tmp_path, "--set", "toy.inner.factor=2.5", "config", "show", "toy.inner", pythonpath=toy)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == "[toy.inner]" and "factor = 2.5" in r.stdout and "label" not in r.stdout
    r = astro("-w", tmp_path, "config", "show", "toy.inner", "--json", "--sources", pythonpath=toy)
    assert list(json.loads(r.stdout)) == ["toy.inner.factor"]
    r = astro("-w", tmp_path, "config", "show", "toy.outer", pythonpath=toy)
    assert r.returncode == 2 and "[toy] has no table or key 'outer'" in r.stderr, r.stderr


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


def test_a_boolean_is_not_a_number(astro, tmp_path):
    """``jobs = true`` ran with 1 job and ``seed = false`` with seed 0 (pydantic reads booleans as numbers)."""
    r = astro("--set", "core.jobs=true", "--set", "core.seed=false", "config", "show", "core")
    assert r.returncode == 2, r.stderr
    assert "core.jobs: expected a number, got a boolean" in r.stderr and "core.seed: expected a number" in r.stderr
    (tmp_path / "f.toml").write_text("[core]\nprogress_interval = true\n")
    r = astro("config", "validate", tmp_path / "f.toml")
    assert r.returncode == 2 and "core.progress_interval: expected a number, got a boolean" in r.stderr, r.stderr
    r = astro("--set", "core.jobs=2", "--set", "core.progress_interval=1", "config", "show", "core")
    assert r.returncode == 0, r.stderr


def test_a_user_file_named_by_astro_config_must_exist(astro, toy, tmp_path):
    r = astro("config", "show", pythonpath=toy, env={"ASTRO_CONFIG": str(tmp_path / "typo.tmol")})
    assert r.returncode == 2 and f"$ASTRO_CONFIG: {tmp_path / 'typo.tmol'}: file not found" in r.stderr
    r = astro("config", "show", pythonpath=toy, env={"ASTRO_CONFIG": ""})   # a batch script's unset variable
    assert r.returncode == 2 and "$ASTRO_CONFIG is set but empty" in r.stderr, r.stderr
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
    assert r.stdout.splitlines() == [f"{good}: OK", f"{bad}: 1 problem(s)"]   # stdout alone said nothing of bad
    r = astro("config", "schema", pythonpath=toy)
    s = json.loads(r.stdout)
    assert {"core", "toy"} <= set(s["properties"])
    assert s["properties"]["toy"]["properties"]["mode"]["enum"] == ["fast", "slow"]
    # a key documented by its attribute's docstring (as plugins.md shows) has that description (had none)
    assert s["properties"]["toy"]["properties"]["count"]["description"] == "How many numbers ``astro toy run`` squares."
    assert s["properties"]["core"]["properties"]["jobs"]["description"].startswith("Worker processes")


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
    (["--set", "lens.train.split=[0.5,0.5]", "lens", "train"],
     "--set: lens.train.split: three fractions (train, validation, test), got 2"),
    (["lens", "generate", "--n-stamps", "5", "--ring"],
     "command-line option --n-stamps: lens.generate: ring pairs need an even n_stamps"),
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


def test_a_check_of_a_table_on_a_key_the_user_left_alone_blames_the_users_layer(astro, tmp_path):
    """``--set plato.train.scheduler=StepLR`` was refused as ``defaults (...defaults.toml):
    plato.train.scheduler_kwargs: StepLR needs 'step_size'``: the defaults never chose StepLR."""
    r = astro("-w", tmp_path / "ws", "--set", "plato.train.scheduler=StepLR", "plato", "train")
    assert r.returncode == 2, r.stderr
    assert "--set: plato.train.scheduler_kwargs: StepLR needs 'step_size'" in r.stderr, r.stderr


def test_a_check_of_a_whole_table_is_blamed_on_the_highest_layer_that_set_one_of_its_keys(astro, tmp_path):
    """A file setting dposang and --set setting nposang: the angle-range check was blamed on the file
    (its key came first), though --set overrides it and made the range too long."""
    cfg = tmp_path / "small.toml"
    cfg.write_text("[dre.models]\nposang0 = 0\ndposang = 40\n")
    r = astro("-w", tmp_path / "ws", "--cfg", cfg, "--set", "dre.models.nposang=6", "config", "show", "dre")
    assert r.returncode == 2 and "  --set: dre.models: posang0 + (nposang-1)*dposang = 200 deg" in r.stderr, r.stderr
    r = astro("-w", tmp_path / "ws", "--cfg", cfg, "config", "show", "dre",   # an inline table's keys: its variable
              env={"ASTRO_DRE__MODELS": "{dposang = 40, nposang = 6}"})
    assert r.returncode == 2 and "$ASTRO_DRE__MODELS: dre.models: posang0" in r.stderr, r.stderr
    own = tmp_path / "defaults.toml"   # a user's file of that name is the user's, not the plugin's defaults
    own.write_text("[dre.models]\nposang0 = 0\ndposang = 40\nnposang = 6\n")
    r = astro("-w", tmp_path / "ws", "--cfg", own, "config", "show", "dre")
    assert r.returncode == 2 and f"{own}: dre.models: posang0" in r.stderr and "needs a setting" not in r.stderr, \
        r.stderr


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
    r = astro("--set", "core.interval=2", "config", "show", "core")   # a word of the key: progress_interval
    assert r.returncode == 2 and "core.interval: unknown key; did you mean 'progress_interval'?" in r.stderr, r.stderr


def test_a_key_in_the_wrong_table_names_the_table_that_has_it(astro, tmp_path):
    """``[dre] batch_size`` and ``[dre] jobs`` were a bare "unknown key"."""
    bad = write(tmp_path / "w.toml", "[dre]\nbatch_size = 3\njobs = 4\nzzz = 1\n[lens]\nboxsize = 3\n")
    r = astro("-w", tmp_path, "--cfg", bad, "config", "show", "core")
    assert r.returncode == 2
    assert f"{bad}: dre.batch_size: unknown key; it is a key of [dre.fit]\n" in r.stderr, r.stderr  # its own first
    assert f"{bad}: dre.jobs: unknown key; it is a key of [core]\n" in r.stderr, r.stderr
    assert f"{bad}: lens.boxsize: unknown key; it is a key of [dre.models]\n" in r.stderr, r.stderr
    assert f"{bad}: dre.zzz: unknown key\n" in r.stderr, r.stderr
    bad.write_text("[ml]\nbatch_size = 3\n")   # a key of many tables: three named, the rest counted
    r = astro("-w", tmp_path, "--cfg", bad, "config", "show", "core")
    assert r.returncode == 2 and re.search(r"ml.batch_size: unknown key; it is a key of \[\w+\.\w+\], "
                                           r"\[\w+\.\w+\], \[\w+\.\w+\] and \d+ more\n", r.stderr), r.stderr


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
    assert config.env_typos(env, {"core": {"jobs": None}, "toy": {"count": None}}) == [
        "$ASTRO_CORE_JOBS is not read: a configuration key is set by $ASTRO_CORE__JOBS (core.jobs; "
        "two underscores after the section and between nested keys)"]
    r = astro("config", "show", "core", pythonpath=toy, env={"ASTRO_CORE_JOBS": "3"})
    assert r.returncode == 0 and "$ASTRO_CORE_JOBS is not read" in r.stderr, r.stderr


def _registry(toy, monkeypatch, *modules):
    """A fresh registry with the core and the toy plugins ``modules`` (from ``toyplugins/userfaults``)."""
    import importlib

    from astrotool.plugins import Registry

    monkeypatch.syspath_prepend(str(toy[0]))
    monkeypatch.syspath_prepend(str(toy[0] / "userfaults"))
    return Registry(entry_points=False, extra=[importlib.import_module(m) for m in modules])


def test_a_users_error_is_not_blamed_on_defaults_that_leave_a_key_to_the_user(toy, monkeypatch, tmp_path):
    """``reqplug``'s model needs ``catalog`` or ``url``, which its defaults leave empty: a user's bad
    ``count`` was dropped and the plugin marked broken (the command went on, exit 0)."""
    ws = tmp_path / "ws"
    ws.mkdir()
    write(ws / "astro.toml", '[req]\ncatalog = "a.fits"\ncount = "x"\n')
    registry = _registry(toy, monkeypatch, "reqplug")
    with pytest.raises(ConfigError, match=r"astro.toml: req.count: Input should be a valid integer"):
        config.load(workspace=ws, environ={}, registry=registry)
    assert registry.info["reqplug"].status != "broken"
    with pytest.raises(ConfigError, match=r"--set: req.count"):   # the model's own check is left to later
        config.load(environ={}, sets=["req.count=x"], registry=_registry(toy, monkeypatch, "reqplug"))
    cfg = config.load(environ={}, sets=["req.catalog='a.fits'"], registry=_registry(toy, monkeypatch, "reqplug"))
    assert cfg.section("req").catalog == "a.fits" and not cfg.broken
    packaged = config.Packaged(_registry(toy, monkeypatch, "reqplug"))
    assert packaged.check("req") == ""  # "set catalog or url" is the user's to do
    cfg = config.load(environ={}, registry=_registry(toy, monkeypatch, "reqplug"))  # only [req] stops
    with pytest.raises(ConfigError, match=r"\[req\] needs a setting: req: set catalog or url"):
        cfg.section("req")   # said as the user's to set, not a broken plugin
    with pytest.raises(ConfigError, match=r"req: set catalog or url"):   # a command's flag that does not set it
        cfg.section("req", {"count": 5})
    assert cfg.section("req", {"url": "http://x"}).url == "http://x"   # one that does
    assert not cfg.broken and cfg.section("core").jobs == 0


def test_defaults_using_a_renamed_key_are_read_as_in_validation(toy, monkeypatch, caplog):
    """``renplug``'s defaults use ``thresh``, renamed ``threshold``: ``--set ren.count=x`` marked the
    plugin broken ("unknown key thresh") and lost the user's error."""
    registry = _registry(toy, monkeypatch, "renplug")
    with pytest.raises(ConfigError, match=r"--set: ren.count: Input should be a valid integer"):
        config.load(environ={}, sets=["ren.count=x"], registry=registry)
    assert registry.info["renplug"].status != "broken"
    cfg = config.load(environ={}, registry=_registry(toy, monkeypatch, "renplug"))
    assert cfg.section("ren").threshold == 0.5 and not cfg.broken
    assert config.Packaged(_registry(toy, monkeypatch, "renplug")).check("ren") == ""


def test_a_users_renamed_key_is_read_again_under_a_commands_flags(toy, monkeypatch, tmp_path):
    """A user's ``name`` (now ``label``, which the defaults set) was read once; a command's flags validate the
    section again, and that second reading saw two user settings, refusing "name: unknown key"."""
    ws = tmp_path / "ws"
    ws.mkdir()
    write(ws / "astro.toml", '[toy]\nname = "old"\n')
    cfg = config.load(workspace=ws, environ={}, registry=_registry(toy, monkeypatch, "toyplug"))
    assert cfg.section("toy").label == "old"
    got = cfg.section("toy", {"count": 5})
    assert (got.label, got.count) == ("old", 5)
    assert cfg.section("toy", {"count": 6}).label == "old"   # and again
    assert cfg.section("toy", {"label": "flag"}).label == "flag"   # a command's option wins over the file
    write(ws / "astro.toml", '[toy]\nname = "old"\nlabel = "new"\n')   # both given by the user: refused
    with pytest.raises(ConfigError, match=r"toy.name: unknown key; renamed to 'label'"):
        config.load(workspace=ws, environ={}, registry=_registry(toy, monkeypatch, "toyplug"))


def test_a_model_that_raises_on_its_defaults_is_not_said_to_fail_to_load(toy, monkeypatch):
    """A validator raising ``KeyError`` was reported as "model ... cannot be loaded"."""
    cfg = config.load(environ={}, registry=_registry(toy, monkeypatch, "crashplug", "toyplug"))
    assert cfg.section("toy").count == 3
    why = cfg.broken["crash"]
    assert "cannot be loaded" not in why and "KeyError" in why and "packaged defaults" in why, why
    registry = _registry(toy, monkeypatch, "toyplug")
    packaged = config.Packaged(registry)
    packaged.models["toy"] = "toyplug.config:NoSuchModel"
    assert "model toyplug.config:NoSuchModel cannot be loaded" in packaged.check("toy")
    # an error of the whole section is said without an empty key (was ": Value error, ...")
    assert config._packaged_error({"loc": (), "msg": "Value error, bad", "type": "x"}) == "bad"
    assert config._packaged_error({"loc": ("inner", "factor"), "msg": "bad", "type": "x"}) == "inner.factor: bad"


def test_a_section_given_as_a_value_is_a_config_error(astro, tmp_path):
    """``dre = 5`` in astro.toml crashed (TypeError, exit 1); ``--set dre.cuts=5`` was blamed on the defaults."""
    ws = tmp_path / "ws"
    ws.mkdir()
    write(ws / "astro.toml", "dre = 5\n")
    r = astro("-w", ws, "config", "show", "core")
    assert r.returncode == 2, r.stderr
    assert f"{ws / 'astro.toml'}: [dre] must be a table" in r.stderr and "TypeError" not in r.stderr, r.stderr
    r = astro("-w", tmp_path, "--set", "dre.cuts=5", "config", "show", "core")
    assert r.returncode == 2 and "--set: dre.cuts: Input should be a valid dictionary" in r.stderr, r.stderr


def test_validate_says_which_sections_of_broken_plugins_it_did_not_check(astro, toy, tmp_path):
    path = [toy[0], toy[0] / "baddefaults"]
    f = write(tmp_path / "f.toml", '[nodefaults]\nfactor = "not a number"\n[toy]\ncount = 1\n')
    r = astro("config", "validate", f, pythonpath=path)
    assert r.returncode == 0, r.stderr
    assert f"{f}: OK\n" not in r.stdout and "not checked" in r.stdout, r.stdout
    assert "[nodefaults] not checked: plugin 'nodefaults' is broken: config section [nodefaults]" in r.stderr, r.stderr
    r = astro("--json", "config", "validate", f, pythonpath=path)
    assert "[nodefaults]" in json.loads(r.stdout)[0]["not_checked"]["nodefaults"]


def test_show_of_a_broken_plugins_section_says_it_is_broken(astro, toy):
    r = astro("config", "show", "badvalue", pythonpath=[toy[0], toy[0] / "baddefaults"])
    assert r.returncode == 2 and "unknown section" not in r.stderr, r.stderr
    assert "plugin 'badvalue' is broken: config section [badvalue]: packaged defaults are invalid: factor" in r.stderr


def test_a_variable_is_named_only_when_it_spells_a_key(astro, toy):
    """``ASTRO_ZTF_TOKEN`` (no key ztf.token) was named; ``ASTRO_DRE_FIT_BATCH_SIZE`` was told to be
    ``ASTRO_DRE__FIT_BATCH_SIZE`` (still not a key) instead of ``ASTRO_DRE__FIT__BATCH_SIZE``."""
    known = {"core": {"jobs": None}, "dre": {"fit": {"batch_size": None, "gain": None}},
             "ztf": {"model": {"width": None}}, "my_plug": {"n_max": None}}
    env = {"ASTRO_ZTF_TOKEN": "abc", "ASTRO_DRE_FIT_BATCH_SIZE": "64", "ASTRO_DRE_FIT_BATCH": "1",
           "ASTRO_MY_PLUG_N_MAX": "2", "ASTRO_ZTF_MODEL": "x"}
    assert config.env_typos(env, known) == [
        "$ASTRO_DRE_FIT_BATCH_SIZE is not read: a configuration key is set by $ASTRO_DRE__FIT__BATCH_SIZE "
        "(dre.fit.batch_size; two underscores after the section and between nested keys)",
        "$ASTRO_MY_PLUG_N_MAX is not read: a configuration key is set by $ASTRO_MY_PLUG__N_MAX "
        "(my_plug.n_max; two underscores after the section and between nested keys)",
        "$ASTRO_ZTF_MODEL is not read: a configuration key is set by $ASTRO_ZTF__MODEL "
        "(ztf.model; two underscores after the section and between nested keys)"]
    r = astro("config", "show", "core", env={"ASTRO_ZTF_TOKEN": "abc", "ASTRO_DRE_FIT_BATCH_SIZE": "64"})
    assert r.returncode == 0, r.stderr
    assert "ASTRO_ZTF_TOKEN" not in r.stderr and "$ASTRO_DRE__FIT__BATCH_SIZE (dre.fit.batch_size" in r.stderr, r.stderr


def test_a_variable_with_two_underscores_in_the_wrong_place_names_the_one_meant():
    """``ASTRO_DRE__FIT_BATCH_SIZE`` and ``ASTRO_DRE_FIT__BATCH_SIZE`` failed as unknown keys or sections with no
    word of ``ASTRO_DRE__FIT__BATCH_SIZE``; a right spelling, or another program's variable, is not named."""
    known = {"dre": {"fit": {"batch_size": None}}, "core": {"jobs": None}}
    env = {"ASTRO_DRE__FIT_BATCH_SIZE": "3", "ASTRO_DRE_FIT__BATCH_SIZE": "3", "ASTRO_DRE__FIT__BATCH_SIZE": "3",
           "ASTRO_CORE__JOBS": "2", "ASTRO_FOO__BAR_BAZ": "1", "ASTRO_DRE__FIT": "{batch_size = 3}"}
    meant = "did you mean $ASTRO_DRE__FIT__BATCH_SIZE (dre.fit.batch_size)?"
    assert config.env_typos(env, known) == [f"$ASTRO_DRE__FIT_BATCH_SIZE names no configuration key; {meant}",
                                            f"$ASTRO_DRE_FIT__BATCH_SIZE names no configuration key; {meant}"]


def test_defaults_using_a_renamed_key_give_way_to_the_users_new_name(astro, toy, monkeypatch, caplog):
    """``renplug``'s defaults use ``thresh`` (now ``threshold``): a user's ``threshold`` failed every command
    ("defaults: ren.thresh: unknown key"), and with nothing set every command told the user to rename
    a key in the plugin's packaged file."""
    import logging

    path = [toy[0], toy[0] / "userfaults"]
    for how in [{"args": ["--set", "ren.threshold=0.7"]}, {"env": {"ASTRO_REN__THRESHOLD": "0.7"}}]:
        r = astro(*how.get("args", []), "--json", "config", "show", "ren", "--sources", pythonpath=path,
                  env={"ASTRO_CONFIG": "/dev/null", **how.get("env", {})})
        assert r.returncode == 0, r.stderr
        row = json.loads(r.stdout)["ren.threshold"]
        assert row["value"] == 0.7 and not row["source"].startswith("defaults"), row
        assert "thresh" not in r.stderr, r.stderr
    r = astro("config", "show", "ren", pythonpath=path, env={"ASTRO_CONFIG": "/dev/null"})
    assert r.returncode == 0 and "threshold = 0.5" in r.stdout and "renamed" not in r.stderr, r.stderr
    with caplog.at_level(logging.WARNING, logger="astro"):   # a user's old name is still told, once
        cfg = config.load(environ={}, sets=["ren.thresh=0.2"], registry=_registry(toy, monkeypatch, "renplug"))
    assert cfg.section("ren").threshold == 0.2 and cfg.sources["ren.threshold"] == "--set"
    assert "--set: ren.thresh: renamed to 'threshold'" in caplog.text


def test_defaults_failing_their_own_table_check_break_only_their_plugin(astro, toy, tmp_path):
    """``stemplug``'s defaults fail its own check of ``[stem.out]`` (a path without ``{stem}``): every
    command failed while ``astro plugins`` said ok. ``reqplug``'s defaults leave ``catalog``/``url`` to
    the user: with neither set, every command failed too. Now only their own commands stop (exit 2)."""
    path = [toy[0], toy[0] / "userfaults"]
    env = {"ASTRO_CONFIG": "/dev/null"}
    r = astro("-w", tmp_path, "--json", "toy", "show", pythonpath=path, env=env)
    assert r.returncode == 0, r.stderr
    r = astro("stem", "show", pythonpath=path, env=env)
    assert r.returncode == 2, r.stderr
    assert ("plugin 'stem' is broken: config section [stem]: packaged defaults are invalid: out: "
            "path 'out': name each file with {stem}") in r.stderr, r.stderr
    r = astro("req", "show", pythonpath=path, env=env)
    assert r.returncode == 2 and "[req] needs a setting: req: set catalog or url" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    r = astro("--set", "req.catalog=a.fits", "req", "show", pythonpath=path, env=env)
    assert r.returncode == 0 and json.loads(r.stdout)["catalog"] == "a.fits", r.stderr
    r = astro("--set", "stem.out.path={stem}.fits", "stem", "show", pythonpath=path, env=env)
    assert r.returncode == 0 and json.loads(r.stdout)["out"]["path"] == "{stem}.fits", r.stderr
    r = astro("plugins", "--json", pythonpath=path, env=env)
    rows = {p["name"]: p for p in json.loads(r.stdout)}
    assert rows["stem"]["status"] == "broken" and "name each file with {stem}" in rows["stem"]["error"]
    assert rows["req"]["status"] == "ok" and rows["toy"]["status"] == "ok"
    # a user's error in the section is still the user's, reported as such
    r = astro("--set", "stem.out.path=out2", "toy", "show", pythonpath=path, env=env)
    assert r.returncode == 2 and "--set: stem.out: path 'out2': name each file with {stem}" in r.stderr, r.stderr
    # `config show` names the sections it leaves out
    r = astro("config", "show", pythonpath=path, env=env)
    assert r.returncode == 0, r.stderr
    assert "[stem] not shown: plugin 'stem' is broken" in r.stderr, r.stderr
    assert "not shown: [req] needs a setting" in r.stderr, r.stderr
    assert "[toy]" in r.stdout and "[stem]" not in r.stdout and "[req]" not in r.stdout


def test_a_table_check_is_left_to_the_user_only_when_the_defaults_leave_a_key_empty():
    check = {"type": "value_error", "loc": (), "msg": "Value error, x"}
    assert config._left_to_the_user({**check, "input": {"catalog": "", "url": ""}})
    assert config._left_to_the_user({**check, "input": {"paths": []}})
    assert not config._left_to_the_user({**check, "loc": ("out",), "input": {"path": "out"}})
    assert config._left_to_the_user({"type": "missing", "loc": ("catalog",), "input": {}})
    assert not config._left_to_the_user({"type": "float_parsing", "loc": ("f",), "input": "two"})


@pytest.mark.parametrize("key,allowed", [("dre.simulate.preset", "'isolated' or 'crowded'"),
                                         ("lens.generate.preset", "'lensnet', 'shearnet'")])
def test_a_preset_that_is_not_a_name_is_a_config_error(astro, tmp_path, key, allowed):
    """``--set dre.simulate.preset=[1]`` crashed (TypeError: unhashable type: 'list', exit 1)."""
    r = astro("-w", tmp_path, "--set", f"{key}=[1]", "config", "show", "core")
    assert r.returncode == 2, r.stderr
    assert f"--set: {key}: Input should be {allowed}" in r.stderr and "TypeError" not in r.stderr, r.stderr


@pytest.mark.parametrize("args, kind, source", [
    (["-j", "2"], "process", "-j 2 alone"), (["--scheduler", "tcp://127.0.0.1:1"], "dask", "--scheduler alone"),
    (["--executor", "serial", "-j", "2"], "serial", "command-line option"), ([], "serial", "defaults")])
def test_config_show_gives_the_executor_a_command_runs(capsys, tmp_path, args, kind, source):
    """``-j 2 config show`` said ``executor = "serial"  # defaults`` where a command with ``-j 2`` runs the
    process executor (and records it in run.json)."""
    from astrotool.cli import main

    assert main(["-w", str(tmp_path), *args, "--json", "config", "show", "core", "--sources"]) == 0
    row = json.loads(capsys.readouterr().out)["core.executor"]
    assert row["value"] == kind and row["source"].startswith(source), row


@pytest.mark.parametrize("args, message", [
    (["--executor", "proces", "status"],
     "command-line option --executor: core.executor: Input should be 'serial', 'process' or 'dask'"),
    (["--set", "ml.devices=0", "config", "show", "core"], "--set: ml.devices: devices must be a positive integer"),
    (["dre", "fit", "--statistic", "chi3"], "Invalid value for '--statistic': 'chi3' is not one of 'chi2', 'dre'"),
])
def test_bad_values_are_named_by_their_option_without_pydantic_s_prefix(astro, tmp_path, args, message):
    """`--executor proces` was blamed on "command-line option" (which one?), and checks read "Value error, ..."."""
    r = astro("-w", tmp_path, *args)
    assert r.returncode == 2 and message in r.stderr and "Value error" not in r.stderr, r.stderr


def test_a_split_of_two_fractions_is_named_as_such():
    """`--set lens.train.split=[0.5,0.5]` said `lens.train.split.2: Field required`."""
    import pydantic

    from astrotool.section import Section, SplitFractions

    class Table(Section):
        split: SplitFractions = (0.8, 0.1, 0.1)

    for bad, n in (([0.5, 0.5], 2), ([0.5, 0.2, 0.2, 0.1], 4)):
        with pytest.raises(pydantic.ValidationError, match=f"three fractions \\(train, validation, test\\), got {n}"):
            Table.model_validate({"split": bad})
    assert Table.model_validate({"split": [0.6, 0.2, 0.2]}).split == (0.6, 0.2, 0.2)
