"""User-given names (one core check), unreadable file names, and seeds of any OS file name."""

from __future__ import annotations

import os

import pytest

from astrotool.errors import AstroError
from astrotool.names import MAX_LENGTH, check_name, name_problem, printable
from astrotool.seeding import derive_seed

BAD_UTF8 = os.fsdecode(b"tile_\xff")  # what os.listdir gives for a name that is not UTF-8


@pytest.mark.parametrize("name", ["sim", "cnn-small", "run_2.v3", "A", "x" * MAX_LENGTH])
def test_valid_names_pass_unchanged(name):
    assert check_name(name, "--name") == name and name_problem(name) is None


@pytest.mark.parametrize("name, problem", [
    ("", "is empty"),
    (".", "a reference to a folder"),
    ("..", "a reference to a folder"),
    ("../../../x", "path separator '/'"),
    ("sub/ds", "path separator '/'"),
    ("a\\b", "path separator '\\\\'"),
    (".hidden", "starts with '.'"),
    ("-x", "starts with '-'"),
    ("a\x00b", "contains '\\x00'"),
    ("tab\there", "contains '\\t'"),
    ("my run", "contains ' '"),
    ("a,b", "contains ','"),
    ("champ_é", "contains 'é'"),
    (BAD_UTF8, "contains '\\udcff'"),
    ("x" * (MAX_LENGTH + 1), f"at most {MAX_LENGTH}"),
])
def test_bad_names_are_usage_errors_naming_the_option(name, problem):
    with pytest.raises(AstroError) as exc:
        check_name(name, "--model")
    msg = str(exc.value)
    assert exc.value.exit_code == 2
    assert msg.startswith("--model: ") and problem in msg and "not a valid name" in msg
    msg.encode("utf-8")  # printable even for a name that is not UTF-8


def test_printable_names_undecodable_bytes():
    assert printable(BAD_UTF8 + ".fits") == "tile_\\xff.fits"
    assert printable(b"tile_\xff.fits") == "tile_\\xff.fits"
    assert printable("champ_é.fits") == "champ_é.fits"


def test_seed_of_a_name_that_is_not_utf8():
    """Any name the OS gives has a seed: its bytes are hashed (it raised UnicodeEncodeError)."""
    s = derive_seed(0, BAD_UTF8)
    assert s == derive_seed(0, BAD_UTF8) and 0 <= s < 2**63
    assert s != derive_seed(0, "tile_\\xff") and s != derive_seed(0, "tile_?")
    # UTF-8 names keep the seeds they always had (values from before the change)
    assert derive_seed(0, "tile_001") == 3661048766241908861
    assert derive_seed(7, "sim_000", "a:b") == 1116168511630169290
    assert derive_seed(3, "é") == 7169487891067113409


@pytest.mark.parametrize("where", ["option", "cfg", "set"])
def test_plato_name_that_leaves_the_workspace_is_refused(tmp_path, astro, where):
    ws = tmp_path / "a" / "ws"
    args = {"option": ["plato", "simulate", "--name", "../../x"],
            "set": ["--set", "plato.simulate.name=../../x", "plato", "simulate"]}.get(where)
    if where == "cfg":
        cfg = tmp_path / "bad.toml"
        cfg.write_text('[plato.simulate]\nname = "../../x"\n')
        args = ["--cfg", cfg, "plato", "simulate"]
    r = astro("-w", ws, *args, "-n", 1)
    assert r.returncode == 2, r.stderr
    named = {"option": "command-line option --name: plato.simulate.name", "set": "--set: plato.simulate.name",
             "cfg": f"{tmp_path / 'bad.toml'}: plato.simulate.name"}[where]
    assert named in r.stderr and "path separator" in r.stderr and "Traceback" not in r.stderr
    assert {p.name for p in tmp_path.iterdir()} <= {"a", "bad.toml"}  # nothing written outside the workspace


def test_fits_history_of_a_path_with_any_character(tmp_path):
    """A workspace path with an accent (or bytes that are not UTF-8) in a FITS table's HISTORY: it raised ValueError."""
    fits = pytest.importorskip("astropy.io.fits")
    from astrotool.io.tables import write_fits_table

    from astropy.table import Table

    out = write_fits_table(Table({"a": [1, 2]}), tmp_path / "t.fits",
                           history=[f"cuts=/data/my ws, é/{BAD_UTF8}_cuts.h5", "cuts=/data/a\tb\nc/x.h5"],
                           command="test")
    history = str(fits.getheader(out, 1)["HISTORY"])
    assert "cuts=/data/my ws, \\xe9/tile_\\xff_cuts.h5" in history
    assert "cuts=/data/a\\tb\\nc/x.h5" in history  # a tab or newline in a path: printable, the file valid
    fits.open(out).verify("exception")


@pytest.mark.parametrize("text, name", [
    ("ztf public 2024,06", "ztf_public_2024_06"),   # spaces and commas
    ("-x", "x"), ("..hidden", "hidden"), ("_a_", "a"),  # never a hidden name or an option
    ("champ_é", "champ"), ("\udcff", "maps"),         # non-ASCII, a non-UTF-8 byte
    ("a" * 200, "a" * 128),
])
def test_a_name_made_from_any_text_is_valid(text, name):
    from astrotool.names import name_from, name_problem

    assert name_from(text, "maps") == name and name_problem(name) is None


@pytest.mark.parametrize("key", ["core.seed"])
def test_a_negative_seed_is_a_configuration_error(astro, tmp_path, key):
    r = astro("-w", tmp_path, "--set", f"{key}=-1", "config", "show")
    assert r.returncode == 2 and f"{key}: Input should be greater than or equal to 0 (got -1)" in r.stderr, r.stderr


@pytest.mark.parametrize("name", ["_hsm", "_m_metrics", "_"])
def test_a_name_starting_with_an_underscore_says_so(name):
    # every character is allowed, only the first is not: no bare StopIteration, one clear usage error
    with pytest.raises(AstroError) as exc:
        check_name(name, "--name")
    assert exc.value.exit_code == 2 and "must start with a letter or digit" in str(exc.value)
