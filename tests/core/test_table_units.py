"""Tables written by the core open in astropy with their units, descriptions and provenance."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from astropy import units as u
from astropy.io import fits
from astropy.table import Table

from astrotool import __version__
from astrotool.errors import InputError
from astrotool.io.tables import parquet_provenance, write_fits_table, write_parquet

UNITS = {"MAG": "mag", "JD": "d", "X": "pix", "FLUX": "adu"}
DESCRIPTIONS = {"MAG": "magnitude of the best model", "JD": "Julian date", "NAME": "object name"}


def table() -> Table:
    return Table({"NAME": ["a", "bb", "ccc"], "MAG": [20.1, 21.5, 22.0], "JD": [2460000.5, 2460001.5, 2460002.5],
                  "X": np.array([1.0, 2.0, 3.0], np.float32), "FLUX": [1e3, 2e3, 3e3], "N": [1, 2, 3]})


def test_fits_summary_reads_back_with_units_descriptions_and_keywords(tmp_path):
    path = write_fits_table(table(), tmp_path / "s.fits", extname="SUMMARY", command="dre fit", units=UNITS,
                            descriptions=DESCRIPTIONS, keywords={"MAGZP": (30.0, "[mag] zero point"),
                                                                 "GAIN": (2.5, "[e-/adu]")})
    t = Table.read(path, hdu="SUMMARY")
    assert t["MAG"].unit == u.mag and t["JD"].unit == u.day and t["X"].unit == u.pix and t["N"].unit is None
    header = fits.getheader(path, "SUMMARY")
    names = {header[f"TTYPE{i}"]: i for i in range(1, header["TFIELDS"] + 1)}
    assert header[f"TCOMM{names['JD']}"] == "Julian date" and header[f"TUNIT{names['JD']}"] == "d"
    assert f"TCOMM{names['N']}" not in header
    assert header["MAGZP"] == 30.0 and header["GAIN"] == 2.5
    assert header["ASTROVER"] == __version__ and header["CREATOR"].endswith("dre fit")
    assert len(header["DATE"]) == 19 and header["DATE"][4] == "-" and header["DATE"][10] == "T"
    assert any("dre fit" in h for h in header["HISTORY"])


def test_fits_refuses_a_unit_astropy_cannot_parse_and_a_long_keyword(tmp_path):
    with pytest.raises(ValueError, match=r"column JD: unit 'd \(JD\)' is not an astropy unit"):
        write_fits_table(table(), tmp_path / "s.fits", units={"JD": "d (JD)"})
    with pytest.raises(ValueError, match="column JD"):
        write_parquet(table(), tmp_path / "s.parquet", units={"JD": "d (JD)"})
    with pytest.raises(ValueError, match="STATISTIC"):
        write_fits_table(table(), tmp_path / "s.fits", keywords={"STATISTIC": "chi2"})
    assert not list(tmp_path.iterdir())


def test_parquet_units_descriptions_and_provenance_read_back_in_astropy(tmp_path):
    path = write_parquet(table(), tmp_path / "s.parquet", metadata={"zero_point": 30.0}, command="dre fit",
                         units=UNITS, descriptions=DESCRIPTIONS)
    t = Table.read(path, format="parquet")
    assert t["MAG"].unit == u.mag and t["JD"].unit == u.day and t["FLUX"].unit == u.adu
    assert t["NAME"].description == "object name" and list(t["NAME"]) == ["a", "bb", "ccc"]
    assert t.meta["provenance"]["command"] == "dre fit"
    assert t.meta["provenance"]["versions"]["astrotool"] == __version__
    assert t.meta["astrotool"] == {"zero_point": 30.0}                   # the writer's facts
    assert parquet_provenance(path)["command"] == "dre fit"


def test_parquet_takes_the_units_of_an_astropy_table_and_keeps_nulls(tmp_path):
    t = table()
    t["MAG"].unit, t["MAG"].description = "mag", "from the column"
    path = write_parquet(pa.table({"S": ["x", None], "V": pa.array([1.5, None])}), tmp_path / "n.parquet",
                         units={"V": "deg"})
    back = Table.read(path, format="parquet")
    assert back["V"].unit == u.deg and np.isnan(back["V"][1])
    back = Table.read(write_parquet(t, tmp_path / "a.parquet"), format="parquet")
    assert back["MAG"].unit == u.mag and back["MAG"].description == "from the column"


def test_streamed_parquet_gets_string_widths_afterwards(tmp_path):
    from astrotool.io.tables import add_parquet_metadata, astropy_parquet_metadata, string_lengths

    data = pa.table({"s": pa.array(["a", None, "abcdef"]),
                     "m": pa.array([1.0, 2.0, 3.0]).cast(pa.float32())})
    schema = data.schema.with_metadata({b"astrotool": b"{}"})
    schema = schema.set(1, schema.field("m").with_metadata({"unit": "mag"}))
    path = tmp_path / "s.parquet"
    pq.write_table(data.cast(schema), path)
    add_parquet_metadata(path, astropy_parquet_metadata(schema, lengths=string_lengths(data)))
    t = Table.read(path, format="parquet")
    assert list(t["s"])[::2] == ["a", "abcdef"] and t["m"].unit == u.mag
    assert pq.read_schema(path).metadata[b"astrotool"] == b"{}"
    assert [p.name for p in tmp_path.iterdir()] == ["s.parquet"]


def test_provenance_of_files_written_under_the_old_key_is_still_read(tmp_path):
    path = tmp_path / "old.parquet"
    pq.write_table(pa.table({"a": [1]}).replace_schema_metadata(
        {b"astrotool.provenance": json.dumps({"command": "plato simulate"}).encode()}), path)
    assert parquet_provenance(path) == {"command": "plato simulate"}
    with pytest.raises(InputError):
        parquet_provenance(tmp_path / "missing.parquet")


def declared_units() -> dict[str, str]:
    """Every column unit the plugins declare, as ``"module:column" -> unit``."""
    from astrotool_dre import catalog, fit_stage
    from astrotool_ztf import ingest

    from astrotool_plato import simulate

    out = {}
    for module, units in ((ingest, ingest.UNITS), (ingest, ingest.HISTORY_UNITS),
                          (catalog, catalog.CATALOG_UNITS), (fit_stage, fit_stage.SUMMARY_UNITS),
                          (simulate, {n: unit for n, _, unit, _ in simulate.LABEL_FIELDS})):
        out.update({f"{module.__name__}:{name}": unit for name, unit in units.items() if unit})
    return out


def test_every_declared_unit_is_a_valid_astropy_unit():
    units = declared_units()
    assert len(units) > 40
    bad = {}
    for key, unit in units.items():
        try:
            u.Unit(unit, parse_strict="raise")
        except ValueError as exc:
            bad[key] = f"{unit!r}: {exc}"
    assert not bad, bad
