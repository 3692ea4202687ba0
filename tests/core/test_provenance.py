"""Provenance: one record, written as HDF5 attributes, Parquet metadata and FITS HISTORY."""

import json
from datetime import datetime, timedelta, timezone

import pytest

from astrotool import __version__
from astrotool.context import Context, GlobalOptions, set_current
from astrotool.provenance import fits_history, provenance, versions


@pytest.fixture
def running(tmp_path):
    """A command line in progress, as ``astro`` sets it up."""
    set_current(Context(GlobalOptions(workspace=str(tmp_path)), "toy run",
                        ["astro", "-w", "my ws", "toy", "run", "--seed", "5"]))
    yield
    set_current(None)


def _recent(text):
    return abs(datetime.fromisoformat(text) - datetime.now(timezone.utc)) < timedelta(minutes=1)


def test_record_names_software_command_line_time_seed_and_config(running):
    rec = provenance("toy run", seed=5, config={"count": 3}, packages=["no-such-distribution-xyz"])
    assert rec["software"] == f"astrotool {__version__}" and rec["command"] == "toy run"
    assert rec["command_line"] == "astro -w 'my ws' toy run --seed 5"  # quoted as a shell would need it
    assert _recent(rec["created_utc"])
    assert rec["seed"] == 5 and rec["config"] == {"count": 3}
    v = rec["versions"]
    assert v["astrotool"] == __version__ and v["no-such-distribution-xyz"] == "not installed"
    assert {"astrotool-dre", "astrotool-lens", "astrotool-plato", "astrotool-ztf"} <= set(v)  # installed plugins
    assert "seed" not in provenance("x") and "config" not in provenance("x")


def test_checkpoints_record_the_same_versions(tmp_path):
    torch = pytest.importorskip("torch")
    import json

    from astrotool.ml.checkpoint import save_checkpoint

    save_checkpoint(tmp_path, torch.nn.Linear(2, 1), {"architecture": {"name": "lin", "kwargs": {}}})
    got = json.loads((tmp_path / "model.json").read_text())["versions"]
    import platform

    import safetensors

    assert got["python"] == platform.python_version() and got["astrotool"] == __version__
    assert got["torch"] == torch.__version__ and got["safetensors"] == safetensors.__version__
    assert {"astrotool-lens", "safetensors"} <= set(got)        # plugins and the named distributions


def test_hdf5_attributes(tmp_path, running):
    h5py = pytest.importorskip("h5py")
    from astrotool.io.hdf5 import open_h5, provenance_attrs

    with h5py.File(tmp_path / "a.h5", "w") as f:
        f.attrs.update(provenance_attrs("toy run", seed=5, config={"count": 3}))
    with open_h5(tmp_path / "a.h5") as f:
        attrs = dict(f.attrs)
    assert attrs["astrotool_version"] == __version__ and attrs["astrotool_command"] == "toy run"
    assert attrs["astrotool_command_line"] == "astro -w 'my ws' toy run --seed 5"
    assert _recent(attrs["created_utc"]) and attrs["astrotool_seed"] == 5
    assert json.loads(attrs["astrotool_config"]) == {"count": 3}
    assert json.loads(attrs["astrotool_versions"])["astrotool"] == __version__


def test_parquet_keeps_the_writers_metadata_apart_from_provenance(tmp_path, running):
    pytest.importorskip("pyarrow")
    from astrotool.io.tables import parquet_metadata, parquet_provenance, read_parquet, write_parquet

    path = write_parquet({"x": [1, 2]}, tmp_path / "t.parquet", metadata={"command": "toy run", "methods": ["a"]})
    assert parquet_metadata(path) == {"command": "toy run", "methods": ["a"]}
    prov = parquet_provenance(path)
    assert prov["command"] == "toy run" and prov["command_line"].startswith("astro -w 'my ws'")
    assert prov["versions"]["astrotool"] == __version__ and _recent(prov["created_utc"])
    assert read_parquet(path).column("x").to_pylist() == [1, 2]
    path = write_parquet({"x": [1]}, tmp_path / "u.parquet", command="lens measure")
    assert parquet_metadata(path) == {} and parquet_provenance(path)["command"] == "lens measure"


def test_fits_table_history_cards(tmp_path, running):
    pytest.importorskip("astropy")
    from astropy.io import fits

    from astrotool.io.tables import write_fits_table

    path = write_fits_table(_table(), tmp_path / "t.fits", command="dre fit",
                            history=["dre fit: statistic=chi2"], extname="DRE_SUMMARY")
    with fits.open(path) as hdul:
        history = [str(h) for h in hdul["DRE_SUMMARY"].header["HISTORY"]]
        assert list(hdul["DRE_SUMMARY"].data["x"]) == [1.0, 2.0]
    assert history[0] == f"astrotool {__version__} dre fit"
    assert history[2] == "command: astro -w 'my ws' toy run --seed 5"
    assert f"version astrotool={__version__}" in history
    assert history[-1] == "dre fit: statistic=chi2"  # the writer's own lines come after


def _table():
    from astropy.table import Table

    return Table({"x": [1.0, 2.0]})


def test_fits_history_wraps_long_lines_and_escapes_non_ascii():
    record = {"software": "astrotool 9", "command": "dre fit", "command_line": "astro dre fit " + "x" * 80,
              "created_utc": "2026-01-02T03:04:05+00:00", "versions": {"python": "3.11"},
              "config": {"name": "é"}}
    assert fits_history(record) == [
        "astrotool 9 dre fit",
        "created 2026-01-02T03:04:05+00:00",
        "command: astro dre fit " + "x" * 49,   # 72 characters
        "  " + "x" * 31,
        "version python=3.11",
        'config {"name": "\\u00e9"}',
    ]
    assert all(len(line) <= 72 and line.isascii() for line in fits_history(command="x" * 300))


def test_run_record_versions_name_the_plugins():
    v = versions()
    assert v["astrotool"] == __version__ and v["python"]
    assert v["astrotool-dre"] != "not installed"


@pytest.mark.parametrize("command", ["dre fit", "dre mosaics", "lens kappa baseline", "x" * 90])
def test_fits_keywords_fit_their_cards_without_truncation(command, tmp_path):
    """CREATOR's comment is shortened or left out to fit 80 columns (astropy warned 'Card is too long')."""
    import warnings

    from astropy.io import fits

    from astrotool.provenance import fits_keywords, provenance

    hdu = fits.PrimaryHDU()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for key, value in fits_keywords(provenance(command)).items():
            hdu.header[key] = value
        hdu.writeto(tmp_path / "x.fits")
    header = fits.getheader(tmp_path / "x.fits")
    assert header["CREATOR"].startswith("astrotool ") and command[:20] in header["CREATOR"]
    assert header.comments["CREATOR"] in ("software and command that wrote the file", "program that wrote the file", "")


@pytest.mark.parametrize("kind", ["process", "dask"])
def test_files_written_in_workers_record_the_command_line(running, kind):
    """A worker process has no command context: files written under -j 2 or --executor dask recorded an empty
    command line (HDF5 attributes, Parquet provenance, FITS HISTORY)."""
    import sys
    from pathlib import Path

    from astrotool.executors import ExecutorOptions, run_items

    sys.path.insert(0, str(Path(__file__).parent))
    from _items import recorded_command_line

    got, failures = run_items(recorded_command_line, ["a", "b"], options=ExecutorOptions(kind, jobs=2))
    assert not failures
    assert [line for _, line in got] == ["astro -w 'my ws' toy run --seed 5"] * 2
