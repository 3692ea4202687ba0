"""`astro lens measure` reads what `astro lens predict` reads: FITS folders and LensNet data.json
give exactly the numbers of the same stamps measured as a dataset."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq

from astrotool.cli import main

from .conftest import easy_config, serial_map

METHODS = "REGAUSS,KSB,BJ"


def _dataset(ws, name="m", n=24):
    """A tiny generated dataset in ``ws`` with its LensNet export (gal_N.fits, psf_N.fits, data.json)."""
    from astrotool_lens.generate import generate_dataset

    out = ws / "lens" / "shear" / name
    generate_dataset(easy_config(name, n=n, shard_size=10, format="lensnet"), out, 4, serial_map)
    return out


def _run(capsys, *args):
    code = main(["--json", *(str(a) for a in args)])
    cap = capsys.readouterr()
    return code, (json.loads(cap.out) if code == 0 else None), cap.err


def _columns(path):
    t = pq.read_table(path)
    return {c: t.column(c).to_numpy(zero_copy_only=False) for c in t.column_names}


def test_fits_folder_and_data_json_equal_the_dataset(tmp_path, capsys):
    ws = tmp_path / "ws"
    ds = _dataset(ws)
    base = ["-w", ws, "-q", "lens", "measure", "--methods", METHODS]
    code, res, err = _run(capsys, *base, "--dataset", "m")
    assert code == 0, err
    code, folder, err = _run(capsys, *base, ds / "lensnet", "--name", "folder")
    assert code == 0, err
    code, js, err = _run(capsys, *base, ds / "lensnet" / "data.json", "--name", "json")
    assert code == 0, err
    assert res["n"] == folder["n"] == js["n"] == 24 and folder["input"].endswith("lensnet")
    pred = ws / "lens" / "predictions"
    want = _columns(pred / "m_hsm.parquet")
    for name in ("folder", "json"):
        got = _columns(pred / f"{name}_hsm.parquet")
        for col, values in want.items():
            if values.dtype.kind == "f":
                assert np.array_equal(got[col], values, equal_nan=True), (name, col)
            else:
                assert (got[col] == values).all(), (name, col)
        assert got["source"][3] == "gal_3.fits"
        assert np.isfinite(want["regauss_g1"]).all()
    truth = pq.read_table(ds / "m_truth.parquet").column("g1").to_numpy()
    assert np.array_equal(_columns(pred / "json_hsm.parquet")["true_g1"], truth)   # data.json's g1, g2 kept
    assert np.array_equal(_columns(pred / "folder_hsm.parquet")["true_g1"], truth)  # also beside a folder

    # a rerun keeps the table; other settings, or other pixels under the same name, measure again
    code, again, _ = _run(capsys, *base, ds / "lensnet", "--name", "folder")
    assert code == 0 and again["skipped"] is True
    code, again, _ = _run(capsys, *base, ds / "lensnet", "--name", "folder", "--conversion", "responsivity")
    assert code == 0 and again["skipped"] is False
    from astropy.io import fits

    fits.PrimaryHDU(np.zeros((24, 24), np.float32) + 1.0).writeto(ds / "lensnet" / "gal_5.fits", overwrite=True)
    code, again, _ = _run(capsys, *base, ds / "lensnet", "--name", "folder", "--conversion", "responsivity")
    assert code == 0 and again["skipped"] is False
    from astrotool.io.tables import parquet_metadata

    ident = parquet_metadata(pred / "folder_hsm.parquet")["identity"]
    assert ident["n"] == 24 and len(ident["stamps_sha256"]) == 16


def test_a_bad_file_exits_2_naming_it(tmp_path, capsys):
    from astropy.io import fits

    ws = tmp_path / "ws"
    ds = _dataset(ws, n=10)
    folder = ds / "lensnet"
    base = ["-w", ws, "-q", "lens", "measure", "--methods", "KSB"]
    (folder / "gal_3.fits").write_text("not a FITS file")
    code, _, err = _run(capsys, *base, folder)
    assert code == 2 and "gal_3.fits" in err and "FITS" in err

    fits.PrimaryHDU(np.zeros((30, 30), np.float32)).writeto(folder / "gal_3.fits", overwrite=True)
    code, _, err = _run(capsys, *base, folder)
    assert code == 2 and "gal_3.fits" in err and "stamp size" in err            # a galaxy of another size

    fits.PrimaryHDU(np.zeros((24, 24), np.float32)).writeto(folder / "gal_3.fits", overwrite=True)
    fits.PrimaryHDU(np.zeros((12, 12), np.float32)).writeto(folder / "psf_7.fits", overwrite=True)
    code, _, err = _run(capsys, *base, folder)
    assert code == 2 and "psf_7.fits" in err and "does not match" in err         # a PSF of another size
    code, _, err = _run(capsys, *base, folder / "data.json")
    assert code == 2 and "psf_7.fits" in err

    (folder / "psf_7.fits").unlink()
    code, _, err = _run(capsys, *base, folder)
    assert code == 2 and "gal_7.fits" in err and "psf_7.fits" in err             # no PSF for a galaxy
    (tmp_path / "notes.txt").write_text("g1 = 0.01")
    code, _, err = _run(capsys, *base, tmp_path / "notes.txt")
    assert code == 2 and "notes.txt" in err and "expected a FITS file" in err
    code, _, err = _run(capsys, *base, ds / "lensnet", "--name", "../x")
    assert code == 2 and "../x" in err
    (folder / "psf_7.fits").write_bytes((folder / "psf_6.fits").read_bytes())
    (folder / "data.json").write_text("[{")                                       # truth beside a folder: checked
    code, _, err = _run(capsys, *base, folder)
    assert code == 2 and "data.json" in err and "unreadable JSON" in err
    (folder / "data.json").unlink()
    code, res, err = _run(capsys, *base, folder)
    assert code == 0 and res["n"] == 10, err
    assert "true_g1" not in _columns(ws / "lens" / "predictions" / "lensnet_hsm.parquet")   # no data.json, no truth
    (folder / "data.json").write_text(json.dumps([{"galaxy": f"gal_{i}.fits", "g1": 0.01, "g2": 0.0}
                                                  for i in range(4)]))   # some of them: passed over in silence
    code, res, err = _run(capsys, *base, "--overwrite", folder)
    assert code == 0 and "data.json lists 4 of the folder's 10 galaxy file(s)" in " ".join(err.split()), err
    assert "true_g1" not in _columns(ws / "lens" / "predictions" / "lensnet_hsm.parquet")


def test_a_folder_reads_gzipped_fts_and_names_the_files_it_leaves_out(tmp_path, capsys):
    """gal_3.fts.gz was skipped without a word, as was any file not named as FITS."""
    import gzip
    import shutil

    ds = _dataset(tmp_path / "ws", n=4)
    folder = ds / "lensnet"
    for stem in ("gal_3", "psf_3"):   # the last galaxy and its PSF as gzipped .fts
        with open(folder / f"{stem}.fits", "rb") as src, gzip.open(folder / f"{stem}.fts.gz", "wb") as dst:
            shutil.copyfileobj(src, dst)
        (folder / f"{stem}.fits").unlink()
    (folder / "notes.txt").write_text("observing log\n")
    code = main(["-w", str(tmp_path / "ws"), "--json", "lens", "measure", str(folder), "--methods", "KSB",
                 "--name", "gz"])
    cap = capsys.readouterr()
    assert code == 0, cap.err
    assert json.loads(cap.out)["n"] == 4
    assert "1 file(s) not named as FITS left out: notes.txt" in cap.err
    assert "gal_3.fts.gz" in set(_columns(tmp_path / "ws" / "lens" / "predictions" / "gz_hsm.parquet")["source"])
