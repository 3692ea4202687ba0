"""Names given to `astro lens` stay inside their stage folder: a path is refused (exit 2, option named)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from astrotool.cli import main
from .conftest import run_cli

TINY = ["--preset", "shearnet", "--stamp-size", 16, "--pixel-scale", 0.3, "-n", 32, "--shard-size", 32,
        "--set", "lens.generate.galaxy.hlr=[0.5, 0.8]", "--set", "lens.generate.galaxy.hlr_unit=\"arcsec\"",
        "--set", "lens.generate.psf.fwhm=0.6"]


run = run_cli


def files_outside(tmp_path, ws) -> list[str]:
    """What is under ``tmp_path`` but not in the workspace, its parents or a test input (``*.toml``, ``*.fits``)."""
    return sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")
                  if not p.is_relative_to(ws) and p not in ws.parents and p.suffix not in (".toml", ".fits"))


def cfg_file(tmp_path, table: str, key: str, value: str):
    path = tmp_path / "bad.toml"
    path.write_text(f'[lens.{table}]\n{key} = "{value}"\n')
    return path


@pytest.fixture
def ws(tmp_path):
    return tmp_path / "a" / "b" / "ws"


@pytest.mark.parametrize("how, name, named", [
    ("option", "../../../x", "command-line option --name: lens.generate.name"),
    ("option", "sub/ds", "command-line option --name: lens.generate.name"),
    ("option", ".", "command-line option --name: lens.generate.name"),
    ("cfg", "../../../x", "bad.toml: lens.generate.name"),
    ("set", "sub/ds", "--set: lens.generate.name"),
])
def test_generate_name_is_one_folder_name(tmp_path, ws, capsys, how, name, named):
    given = {"option": ["--name", name], "set": ["--set", f"lens.generate.name={name}"],
             "cfg": ["--cfg", cfg_file(tmp_path, "generate", "name", name)] if how == "cfg" else []}[how]
    code, _, err = run(capsys, "-w", ws, "-q", "lens", "generate", *TINY, *given)
    assert code == 2, err
    assert named in err and "not a valid name" in err and "Traceback" not in err
    assert files_outside(tmp_path, ws) == []
    assert not (ws / "lens" / "shear").is_dir() or not any((ws / "lens" / "shear").iterdir())


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A workspace with a 32-stamp dataset `d` and a one-epoch model `m` (both tiny)."""
    ws = tmp_path_factory.mktemp("names") / "a" / "b" / "ws"
    assert main([str(a) for a in ["-w", ws, "-q", "lens", "generate", *TINY, "--name", "d"]]) == 0
    assert main([str(a) for a in ["-w", ws, "-q", "--set", "lens.train.threads=1", "--set", "lens.train.blocks=1",
                                  "--set", "lens.train.split=[0.5,0.25,0.25]", "lens", "train", "--dataset", "d",
                                  "--model", "m", "--no-psf", "--width", 4, "--batch-size", 16, "--epochs", 1]]) == 0
    return ws


@pytest.mark.parametrize("how", ["option", "cfg"])
def test_train_model_is_one_folder_name(trained, capsys, how):
    ws = trained
    base = ws.parent.parent.parent
    given = (["--model", "../../x"] if how == "option"
             else ["--cfg", cfg_file(base, "train", "model", "../../x")])
    before = sorted(p.name for p in base.iterdir())
    code, _, err = run(capsys, "-w", ws, "-q", "lens", "train", "--dataset", "d", "--epochs", 1, *given)
    assert code == 2, err
    assert ("--model" if how == "option" else "bad.toml: lens.train.model") in err and "Traceback" not in err
    assert sorted(p.name for p in base.iterdir()) == before
    assert sorted(p.name for p in (ws / "lens" / "models").iterdir()) == ["m"]


@pytest.mark.parametrize("how, named", [
    ("option", "command-line option --name: lens.predict.name"),
    ("old option", "lens.predict.name"),
    ("cfg", "bad.toml: lens.predict.name"),
])
def test_predict_output_is_one_file_name(trained, capsys, tmp_path, how, named):
    from astropy.io import fits

    ws = trained
    stamp = tmp_path / "stamp.fits"
    fits.PrimaryHDU(np.ones((16, 16), np.float32)).writeto(stamp)
    given = {"option": ["--name", "../../../x"], "old option": ["--output", "../../../x"],
             "cfg": ["--cfg", cfg_file(tmp_path, "predict", "name", "../../../x")] if how == "cfg" else []}[how]
    code, _, err = run(capsys, "-w", ws, "-q", "lens", "predict", stamp, "--model", "m", *given)
    assert code == 2, err
    assert named in err and "not a valid name" in err and "Traceback" not in err
    assert not list(ws.parent.parent.parent.glob("x_*")) and not list(ws.parent.glob("x_*"))
    # a plain name still works
    code, out, err = run(capsys, "-w", ws, "-q", "lens", "predict", stamp, "--model", "m", "--name", "ok")
    assert code == 0, err
    assert json.loads(out)["output"] == str(ws / "lens" / "predictions" / "ok_m.parquet")


@pytest.mark.parametrize("command, key", [
    (["kappa", "simulate"], "lens.kappa.simulate.name"),
    (["kappa", "data", "x"], "lens.kappa.data.name"),
    (["kappa", "baseline", "--dataset", "x"], "lens.kappa.baseline.name"),
    (["kappa", "train", "--dataset", "x"], "lens.kappa.train.model"),
    (["kappa", "predict", "x"], "lens.kappa.predict.name"),
    (["kappa", "score", "x"], "lens.kappa.score.name"),
])
def test_kappa_names_use_the_same_check(tmp_path, ws, capsys, command, key):
    code, _, err = run(capsys, "-w", ws, "-q", "--set", f"{key}=../../x", "lens", *command)
    assert code == 2, err
    assert f"--set: {key}: not a valid name: contains the path separator '/'" in err
    assert files_outside(tmp_path, ws) == []


@pytest.mark.parametrize("key", ["lens.generate.seed", "lens.train.seed", "lens.kappa.simulate.seed"])
def test_a_negative_plugin_seed_is_refused_like_core_seed(astro, tmp_path, key):
    r = astro("-w", tmp_path, "--set", f"{key}=-1", "config", "show")
    assert r.returncode == 2 and f"{key}: Input should be greater than or equal to 0 (got -1)" in r.stderr, r.stderr


def test_a_key_of_an_earlier_release_is_read_under_its_new_name_with_a_warning(capsys, tmp_path):
    """output/report became name: an old --cfg file failed with 'unknown key' and no word of the new one."""
    old = tmp_path / "old.toml"
    old.write_text('[lens.predict]\noutput = "x"\n[lens.kappa.score]\nreport = "y"\n')
    code, out, err = run(capsys, "-w", tmp_path / "ws", "--cfg", old, "config", "show", "lens")
    assert code == 0, err
    assert f"{old}: lens.predict.output: renamed to 'name'; read as lens.predict.name" in err, err
    assert f"{old}: lens.kappa.score.report: renamed to 'name'" in err, err
    shown = json.loads(out)
    assert shown["lens"]["predict"]["name"] == "x" and shown["lens"]["kappa"]["score"]["name"] == "y"
    both = tmp_path / "both.toml"   # the old key beside the new one: which to read is not guessed
    both.write_text('[lens.predict]\noutput = "x"\nname = "z"\n')
    code, _, err = run(capsys, "-w", tmp_path / "ws", "--cfg", both, "config", "show", "lens")
    assert code == 2 and f"{both}: lens.predict.output: unknown key; renamed to 'name'" in err, err

