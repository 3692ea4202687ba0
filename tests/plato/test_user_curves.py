"""Users' light curves in ``detect``, ``bls`` and ``plot``: TESS/Kepler quality flags and NaN times, time units,
messages about bad files, short-curve S/N, event depth, BLS's refined peak, BLS over several files."""

from __future__ import annotations

import json
import math
import re
import warnings

import numpy as np
import pytest

from astrotool.cli import main
from astrotool.errors import InputError


def _curve(days=1.0, cadence_s=25.0, t0=0.5, hours=3.0, depth=3000e-6, noise=300e-6, seed=1, start=0.0):
    rng = np.random.default_rng(seed)
    t = start + np.arange(0.0, days, cadence_s / 86400.0)
    f = 1.0 + rng.normal(0.0, noise, t.size)
    if t0 is not None:
        f[np.abs(t - start - t0) < hours / 48.0] -= depth
    return t, f


def _tess(path, t, f, quality=None, unit="e-/s", time_unit="BTJD", nan_times=()):
    from astropy.io import fits

    t = t.copy()
    t[list(nan_times)] = np.nan
    cols = [fits.Column("TIME", "D", array=t, unit=time_unit),
            fits.Column("PDCSAP_FLUX", "E", array=f * 1000.0, unit=unit)]
    if quality is not None:
        cols.append(fits.Column("QUALITY", "J", array=quality))
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(cols, name="LIGHTCURVE")]).writeto(path)
    return path


def test_quality_flagged_cadences_and_nan_times_are_dropped_and_counted_without_units_warnings(tmp_path):
    """A TESS file's QUALITY column was ignored (a flagged half-flux stretch became the event), its NaN TIME rows
    refused the file, and astropy printed a UnitsWarning for 'e-/s' and 'BJD - 2454833'."""
    from astrotool_plato.lightcurves import read_curves

    t, f = _curve(days=1.5, cadence_s=120.0, t0=0.6, start=1500.0)
    q = np.zeros(t.size, np.int32)
    q[100:110] = 1024
    f[100:110] = 0.5
    path = _tess(tmp_path / "tess.fits", t, f, q, nan_times=range(500, 505))
    notes: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        (time, flux), = read_curves(path, notes=notes).values()
    assert not [w for w in caught if "did not parse" in str(w.message)]
    assert time.size == t.size - 15 and np.isfinite(time).all() and flux.min() > 0.9
    assert notes == ['tess.fits: dropped 10 of 1080 cadence(s) flagged in QUALITY (plato.detect.quality = "keep" '
                     'keeps them)', "tess.fits: dropped 5 row(s) whose time is NaN or infinite",
                     "tess.fits: time 'TIME' [d, BTJD], flux 'PDCSAP_FLUX', flags 'QUALITY'"]
    (time, flux), = read_curves(path, quality="keep").values()
    assert time.size == t.size - 5 and flux.min() == pytest.approx(500.0)
    k = _tess(tmp_path / "kepler.fits", t, f, unit="e-/s", time_unit="BJD - 2454833")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        read_curves(k)
    assert not [w for w in caught if "did not parse" in str(w.message)]
    t[7] = t[5]                                            # finite but repeated times are still refused
    with pytest.raises(InputError, match="time is not increasing"):
        read_curves(_tess(tmp_path / "dup.fits", t, f))


def test_bad_files_get_a_user_message(tmp_path):
    import pandas as pd

    from astrotool_plato.lightcurves import read_curves

    t, f = _curve()
    text = pd.DataFrame({"time": t, "flux": f.astype(str)})
    text.loc[5, "flux"] = "abc"
    text.to_csv(tmp_path / "strflux.csv", index=False)
    pd.DataFrame({"time": [0.0], "flux": [1.0]}).to_csv(tmp_path / "onerow.csv", index=False)
    (tmp_path / "garbage.fits").write_text("hello not fits")
    (tmp_path / "empty.csv").write_text("")
    for name, msg in (("strflux.csv", "column 'flux' is not numeric (row 6, counting from 1: 'abc')"),
                      ("empty.csv", "empty file, not a light curve"),
                      ("onerow.csv", "1 sample; a light curve needs at least 2"),
                      ("garbage.fits", "not a readable FITS file")):
        with pytest.raises(InputError) as exc:
            read_curves(tmp_path / name)
        assert msg in str(exc.value) and "ignore_missing_simple" not in str(exc.value), str(exc.value)
    with pytest.raises(InputError, match="column 'flux' is not numeric"):
        read_curves(tmp_path / "strflux.csv", flux_column="flux")


def test_time_in_the_wrong_unit_is_refused_before_resampling():
    """Seconds read as days made detect interpolate 300 million samples (killed for memory) and bls raise a
    MemoryError; days read as seconds ended in an IndexError."""
    from astrotool_plato.lightcurves import MAX_SAMPLES, check_time_scale

    t, _ = _curve()
    assert check_time_scale(t, 25.0 / 86400.0, "c.csv") == t.size
    with pytest.raises(InputError, match=r"c.csv: the curve spans 86375 d: on a 25-s grid that is 298,512,00[01] "
                                         r"samples, more than 1,267,200 .*is the time in seconds\? use --time-unit s"):
        check_time_scale(t * 86400.0, 25.0 / 86400.0, "c.csv")
    with pytest.raises(InputError, match=r"c.csv: the curve spans 1 s .*is the time in days\? leave out --time-unit"):
        check_time_scale(t / 86400.0, 25.0 / 86400.0, "c.csv", "s")
    with pytest.raises(InputError, match="is the time in days"):
        check_time_scale(t / 86400.0, None, "c.csv", "s")             # bls: the curve's own grid
    quarter = np.arange(MAX_SAMPLES) * 25.0 / 86400.0
    assert check_time_scale(quarter, 25.0 / 86400.0, "q") == MAX_SAMPLES
    kepler = np.arange(0.0, 372.0, 29.4 / 1440.0)   # Kepler Q1-4 at long cadence: too long, in the right unit
    with pytest.raises(InputError, match="split the curve") as err:
        check_time_scale(kepler, 25.0 / 86400.0, "kepler.fits")
    assert "seconds" not in str(err.value)


@pytest.mark.parametrize("name", ["lc.ecsv", "lc.parquet", "lc.fits"])
def test_astropy_time_and_timedelta_columns_are_read_in_days(tmp_path, name):
    """A light curve astropy wrote with a Time column (stored as jd1 + jd2 in Parquet and FITS) had no time
    column; a TimeDelta in seconds was read as days (ECSV) or not read (FITS); a .ecsv file was refused."""
    from astropy.table import Table
    from astropy.time import Time, TimeDelta

    from astrotool_plato.lightcurves import read_curves

    t, f = _curve(days=2.0, cadence_s=120.0, t0=1.2)
    kind = {"format": "ascii.ecsv"} if name.endswith(".ecsv") else {}
    Table({"time": Time(58000.0 + t, format="mjd", scale="tdb"), "flux": f}).write(tmp_path / name, **kind)
    notes: list[str] = []
    (time, flux), = read_curves(tmp_path / name, notes=notes).values()
    offset = 2400000.5 if name.endswith(".fits") else 0.0   # FITS stores JD: the frame says so
    np.testing.assert_allclose(time - offset - 58000.0, t, rtol=0, atol=1e-8)
    np.testing.assert_array_equal(flux, f)
    frame = "JD" if name.endswith(".fits") else "MJD"
    assert notes == [f"{name}: time 'time' [d, {frame} (TDB)], flux 'flux'"]
    (tmp_path / name).unlink()
    Table({"time": TimeDelta(t * 86400.0, format="sec"), "flux": f}).write(tmp_path / name, **kind)
    notes = []
    (time, _), = read_curves(tmp_path / name, notes=notes).values()
    np.testing.assert_allclose(time, t, rtol=0, atol=1e-9)
    assert notes == [f"{name}: time 'time' [d], flux 'flux'"]
    with pytest.raises(InputError, match=re.escape("time column 'time' is in 'd' (its ")):
        read_curves(tmp_path / name, time_unit="s")
    (tmp_path / name).unlink()
    masked = Time(58000.0 + t, format="mjd", scale="tdb")
    masked[3] = np.ma.masked   # a time with no value: its row dropped (FITS: the file was not read at all)
    other = Time(58000.0 + t, format="mjd", scale="tdb")   # a Time column beside the time read: not its frame
    Table({"time": masked, "obs": other, "flux": f}).write(tmp_path / name, **kind)
    notes = []
    (time, flux), = read_curves(tmp_path / name, notes=notes).values()
    assert time.size == t.size - 1 and np.array_equal(flux, np.delete(f, 3))
    assert "dropped 1 row(s) whose time is NaN or infinite" in notes[0]
    Table({"time": t, "obs": other, "flux": f}).write(tmp_path / name, overwrite=True, **kind)
    notes = []
    read_curves(tmp_path / name, notes=notes)
    assert notes == [f"{name}: time 'time' [d], flux 'flux'"]   # was logged in the frame of 'obs'


def test_hours_are_read_with_time_unit_h_and_a_fits_tunit_of_another_unit_is_refused(tmp_path, capsys):
    """A CSV in hours was read as days (a 20-d curve taken for 480 d: no event, and a BLS of hours no signal
    stopped); --time-unit took d or s only. A FITS column's TUNIT now says its unit, and what was read is logged."""
    import pandas as pd
    from astropy.io import fits

    from astrotool_plato.lightcurves import read_curves

    t, f = _curve(days=2.0, cadence_s=120.0, t0=1.2)
    pd.DataFrame({"time": t * 24.0, "flux": f}).to_csv(tmp_path / "hours.csv", index=False)
    (time, _), = read_curves(tmp_path / "hours.csv", time_unit="h").values()
    np.testing.assert_allclose(time, t, rtol=0, atol=1e-12)
    for unit, given, told in (("s", "d", "use --time-unit s"), ("hours", "d", "use --time-unit h"),
                              ("seconds since MJD 58000", "d", "use --time-unit s"), ("[h]", "d", "use --time-unit h"),
                              ("hrs", "d", "use --time-unit h"),
                              ("BJD - 2457000, days", "s", "use --time-unit d (the default)")):
        path = _tess(tmp_path / "unit.fits", t, f, time_unit=unit)
        with pytest.raises(InputError, match=re.escape(f"time column 'TIME' is in '{unit}' (its TUNIT), read as ")
                           + f".*{re.escape(told)}"):
            read_curves(path, time_unit=given)
        path.unlink()
    from astropy.table import Table

    for name in ("hours_ecsv.csv", "hours_astropy.parquet"):   # the unit an ECSV or astropy Parquet file states
        kind = {"format": "ascii.ecsv"} if name.endswith(".csv") else {}
        Table({"time": t * 24.0, "flux": f}, units={"time": "h"}).write(tmp_path / name, **kind)
        with pytest.raises(InputError, match=re.escape("time column 'time' is in 'h' (its stated unit), read as days: "
                                                       "use --time-unit h")):
            read_curves(tmp_path / name)
        (time, _), = read_curves(tmp_path / name, time_unit="h").values()
        np.testing.assert_allclose(time, t, rtol=0, atol=1e-12)
    for unit in ("min", "minutes since MJD 58000"):   # read as hours: t_mid 60x too late; as days, 1440x
        path = _tess(tmp_path / "minutes.fits", t * 1440.0, f, time_unit=unit)
        for given in ("d", "h"):
            with pytest.raises(InputError, match=re.escape(f"time column 'TIME' is in '{unit}' (its TUNIT), which "
                                                           "no --time-unit reads (d, h, s)")):
                read_curves(path, time_unit=given)
        path.unlink()
    for header in ("#\n", "# ---\n# datatype:\n# - {unit: d}\n"):   # of no use: read as before, not "unreadable"
        (tmp_path / "odd_ecsv.csv").write_text(f"# %ECSV 1.0\n{header}time,flux\n"
                                               + "".join(f"{float(a)!r},{float(b)!r}\n" for a, b in zip(t, f)))
        (time, _), = read_curves(tmp_path / "odd_ecsv.csv").values()
        np.testing.assert_allclose(time, t, rtol=0, atol=1e-12)
    path = _tess(tmp_path / "kepler.fits", t + 1000.0, f, time_unit="BJD - 2454833")
    with fits.open(path, mode="update") as hdul:
        hdul[1].header["BJDREFI"], hdul[1].header["BJDREFF"] = 2454833, 0.0
    notes: list[str] = []
    read_curves(path, notes=notes)
    assert notes == ["kepler.fits: time 'TIME' [d, BJD - 2454833], flux 'PDCSAP_FLUX'"]
    assert main(["-w", str(tmp_path / "ws"), "plato", "bls", str(path)]) == 0
    assert "kepler.fits: time 'TIME' [d, BJD - 2454833], flux 'PDCSAP_FLUX'" in capsys.readouterr().err


def test_bls_refuses_a_search_of_a_hundred_quarters_before_detrending():
    """A 20-d curve in hours read as days (480 d) ran a BLS for hours that SIGTERM could not stop."""
    from astrotool_plato.bls import MAX_SEARCH, QUARTER_SEARCH, bls_search, period_count
    from astrotool_plato.config import BlsConfig

    assert 2.9e10 < QUARTER_SEARCH < 3.1e10 and MAX_SEARCH == 100 * QUARTER_SEARCH
    assert period_count(10.0, 0.1, 1.0, 10.0) == 1 + round(0.9 / (0.1 / 100.0))   # astropy's autoperiod grid
    t = np.arange(0.0, 480.0, 120.0 / 86400.0)
    with pytest.raises(InputError, match=r"hours.csv: BLS would try [\d,]+ periods on 345,600 samples over 480 d, "
                                         r"12\d times .*is the time in hours \(--time-unit h\)\?"):
        bls_search(t, np.zeros(t.size), BlsConfig(), "hours.csv")
    with pytest.raises(InputError) as err:   # read in hours already: that question is not asked
        bls_search(t, np.zeros(t.size), BlsConfig(), "hours.csv", time_unit="h")
    assert "--time-unit" not in str(err.value) and "Search a shorter piece" in str(err.value)


def test_bls_runs_every_file_and_names_the_bad_ones(tmp_path, capsys):
    """One bad file aborted the batch with no results for the good ones; seconds read as days gave a
    MemoryError (exit 1)."""
    import pandas as pd

    t, f = _curve(days=2.0, t0=1.2)
    pd.DataFrame({"time": t, "flux": f}).to_csv(tmp_path / "good.csv", index=False)
    pd.DataFrame({"time": t * 86400.0, "flux": f}).to_csv(tmp_path / "secs.csv", index=False)
    (tmp_path / "garbage.fits").write_text("hello not fits")
    files = [str(tmp_path / n) for n in ("garbage.fits", "good.csv", "secs.csv")]
    capsys.readouterr()
    assert main(["-w", str(tmp_path / "ws"), "--json", "plato", "bls", *files]) == 2
    cap = capsys.readouterr()
    (row,) = json.loads(cap.out)["curves_searched"]
    assert row["file"] == "good.csv" and row["detected"] and abs(row["t0"] - 1.2) < 0.02
    assert "2 item(s) failed" in cap.err and "garbage.fits: not a readable FITS file" in cap.err
    assert "secs.csv: a median time step of 600 h" in cap.err and "use --time-unit s" in cap.err
    assert main(["-w", str(tmp_path / "ws"), "--json", "plato", "bls", files[2], "--time-unit", "s"]) == 0
    assert json.loads(capsys.readouterr().out)["detected"] == 1


def test_bls_refines_the_duration_and_mid_time_between_the_trial_durations():
    """Trial durations a factor of two apart read a 3-h transit as 4 h, its mid-time half an hour off."""
    from astrotool_plato.bls import bls_search
    from astrotool_plato.config import BlsConfig

    for seed in (1, 2, 3):
        t, f = _curve(days=3.0, t0=1.3, hours=3.0, depth=2000e-6, seed=seed)
        r = bls_search(t, f - 1.0, BlsConfig(durations_hours=[1.0, 2.0, 4.0, 8.0]))
        assert r["detected"] and r["duration"] == pytest.approx(3.0, abs=0.3)
        assert abs(r["t0"] - 1.3) * 24 * 60 < 8.0                       # minutes
        assert r["depth"] == pytest.approx(2000.0, rel=0.08)


def test_bls_on_a_curve_with_a_wide_gap_keeps_an_honest_snr(tmp_path):
    """A gap filled with a straight line has no point-to-point noise: the noise estimate went to ~0 and pure
    noise was "detected" at S/N ~1e9. The search runs on the measured samples only."""
    import pandas as pd

    from astrotool_plato.bls import BlsItem, bls_file
    from astrotool_plato.config import BlsConfig

    rng = np.random.default_rng(3)
    t = np.r_[np.arange(0.0, 5.0, 120 / 86400), np.arange(20.0, 27.0, 120 / 86400)]   # days 5-20 missing
    f = 1.0 + rng.normal(0.0, 300e-6, t.size)
    path = tmp_path / "gappy.csv"
    pd.DataFrame({"time": t, "flux": f}).to_csv(path, index=False)
    (row,) = bls_file(BlsItem(str(path), BlsConfig()))["rows"]
    assert row["snr"] < 20 and not row["detected"], row


def test_event_depth_comes_from_the_middle_of_the_event():
    """The depth was the mean over the whole above-threshold span, which runs past the transit's edges: 7-15 %
    low."""
    from astrotool_plato.events import describe

    x = np.random.default_rng(4).normal(0.0, 100e-6, 3456)
    x[1500:1932] -= 3000e-6                                              # 3 h at 25 s
    prob = np.zeros(x.size)
    prob[1440:1992] = 0.9                                               # 25 min past either edge
    (row,) = describe(prob, x, np.array([[1440, 1992]]), 0.0, 25.0)
    assert row["depth"] == pytest.approx(3000.0, rel=0.03)
    assert row["t_mid"] == pytest.approx(1715.5 * 25 / 86400)
    assert row["duration"] == pytest.approx(552 * 25 / 3600)            # still the time above the threshold
    (one,) = describe(np.full(4, 0.9), x[:4], np.array([[1, 2]]), 0.0, 25.0)   # a one-sample event keeps its sample
    assert math.isfinite(one["depth"])


def test_a_short_event_inside_a_transit_still_gets_the_transit_depth():
    """The reference band sat right beside the event: an event a third of the transit's length read its band
    inside the transit (336 ppm for a 2000 ppm transit)."""
    from astrotool_plato.events import central_depth, event_snr

    x = np.random.default_rng(5).normal(0.0, 100e-6, 3456)
    x[1500:1932] -= 2000e-6                                              # 3 h at 25 s
    assert central_depth(x, 1641, 1791) * 1e6 == pytest.approx(2000.0, rel=0.2)
    long_ = event_snr(x, np.array([[1500, 1932]]))[0]
    assert event_snr(x, np.array([[1641, 1791]]))[0] > 0.3 * long_      # not collapsed


def test_an_event_of_a_third_of_the_curve_still_gets_a_depth():
    """Both bands a gap of the event's length away lay off the curve's ends: the depth was NaN."""
    from astrotool_plato.events import box_depth, central_depth, describe, reference_level

    x = np.random.default_rng(8).normal(0.0, 100e-6, 3000)
    x[1000:2000] -= 2000e-6
    assert central_depth(x, 1000, 2000) * 1e6 == pytest.approx(2000.0, rel=0.1)
    assert box_depth(x, 1000, 2000, gap=1000) * 1e6 == pytest.approx(2000.0, rel=0.1)
    (row,) = describe(np.where(np.arange(3000) // 1000 == 1, 0.9, 0.0), x, np.array([[1000, 2000]]), 0.0, 25.0)
    assert row["depth"] == pytest.approx(2000.0, rel=0.1)
    y = x.copy()
    y[:1000] -= 2000e-6                                                 # an event at the start: one band
    assert central_depth(y, 0, 2000) * 1e6 == pytest.approx(2000.0, rel=0.1)
    assert reference_level(x[:10], 2, 8, gap=6) == pytest.approx(np.median(x[[0, 1, 8, 9]]))   # no room: gap 0


def test_reported_snr_does_not_depend_on_min_snr():
    """describe measured the noise with only the kept events masked: a dropped dip inflated it."""
    from astrotool_plato.config import EventsConfig
    from astrotool_plato.detect import curve_events

    rng = np.random.default_rng(6)
    x = rng.normal(0.0, 100e-6, 6000)
    x[1000:1200] -= 3000e-6                                              # a transit
    x[4000:4200] -= 20e-6                                                # a shallow dip
    prob = np.zeros(x.size)
    prob[1000:1200] = prob[4000:4200] = 0.9
    every, none_out = curve_events(prob, x, 0.0, 25.0, EventsConfig(min_snr=0.0, binary_snr=0.0))
    kept, left_out = curve_events(prob, x, 0.0, 25.0, EventsConfig(min_snr=10.0, binary_snr=0.0))
    assert len(every) == 2 and len(kept) == 1
    assert kept[0]["snr"] == every[0]["snr"]
    assert none_out == {"low_snr": 0, "binary": 0} and left_out == {"low_snr": 1, "binary": 0}


def test_events_left_out_as_a_binary_are_counted_not_silently_dropped():
    """An eclipsing binary's 8 alternating eclipses (3000 and 1500 ppm) were all dropped and detect printed
    '0 event(s)', as for a curve with nothing in it: the drop is counted (and logged by the command)."""
    from astrotool_plato.config import EventsConfig
    from astrotool_plato.detect import curve_events

    x = np.random.default_rng(16).normal(0.0, 100e-6, 40_000)
    prob = np.zeros(x.size)
    for k, c in enumerate(2500 + 4800 * np.arange(8)):
        x[c - 100:c + 100] -= 3000e-6 if k % 2 == 0 else 1500e-6
        prob[c - 100:c + 100] = 0.9
    rows, left_out = curve_events(prob, x, 0.0, 25.0, EventsConfig(min_snr=0.0, binary_snr=3.0))
    assert rows == [] and left_out == {"low_snr": 0, "binary": 8}
    rows, left_out = curve_events(prob, x, 0.0, 25.0, EventsConfig(min_snr=0.0, binary_snr=0.0))
    assert len(rows) == 8 and left_out == {"low_snr": 0, "binary": 0}


def test_a_curve_coarser_than_the_model_has_its_snr_measured_between_its_samples():
    """On the model's 25-s grid, a 2-min curve's points more than 25 s from a sample were taken for gaps: its
    events had S/N NaN (and depths from a fifth of their samples). Now it is the S/N measured on the curve's own
    2-min grid, and near that of a 3000 ppm, 5-h box in 200 ppm white noise, 3000 / (200 / sqrt(150)) = 184 (the
    noise is measured from ~100 block means: some 15 % scatter)."""
    from astrotool_plato.config import EventsConfig
    from astrotool_plato.detect import curve_events
    from astrotool_plato.lightcurves import relative_flux, uniform

    rng = np.random.default_rng(12)
    time = np.arange(0.0, 20.0, 120.0 / 86400.0)
    flux = 1.0 + rng.normal(0.0, 200e-6, time.size)
    box = np.abs(time - 7.3) < 2.5 / 24.0
    flux[box] -= 3000e-6
    t, f = uniform(time, flux, 25.0 / 86400.0)
    x, _ = relative_flux(f)
    prob = (np.abs(t - 7.3) < 2.5 / 24.0).astype(float)
    (row,), _ = curve_events(prob, x, float(t[0]), 25.0, EventsConfig(), np.isfinite(f))
    (native,), _ = curve_events(box.astype(float), relative_flux(flux)[0], float(time[0]), 120.0, EventsConfig())
    assert row["snr"] == pytest.approx(native["snr"], rel=0.1)
    assert row["snr"] == pytest.approx(3000e-6 / (200e-6 / np.sqrt(box.sum())), rel=0.35)
    assert row["depth"] == pytest.approx(3000.0, rel=0.05) and row["t_mid"] == pytest.approx(7.3, abs=60 / 86400)


def test_a_flux_in_ppm_about_zero_is_refused_with_a_hint(tmp_path):
    """flux = (f - 1) 1e6 + 100 has a positive median and gave depths of 2.4e7 ppm."""
    from astrotool_plato.lightcurves import read_curves

    t, f = _curve()
    path = tmp_path / "ppm.csv"
    np.savetxt(path, np.c_[t, (f - 1.0) * 1e6 + 100.0], delimiter=",", header="time,flux", comments="")
    with pytest.raises(InputError, match=r"ppm.csv: 4\d.\d % of the flux values are at or below 0 \(at most 25 %\): "
                                         r"not a flux level; ppm about 0: divide by 1e6 and add 1"):
        read_curves(path)
    np.savetxt(path, np.c_[t, (f - 1.0) * 1e6], delimiter=",", header="time,flux", comments="")
    with pytest.raises(InputError, match=r"ppm about 0: divide by 1e6 and add 1"):
        read_curves(path)
    np.savetxt(path, np.c_[t, f * 1e4], delimiter=",", header="time,flux", comments="")
    assert read_curves(path)["ppm"][1].size == t.size                   # a flux level in e-/s is read


def test_real_curves_that_vary_much_are_read_and_each_refusal_names_its_check(tmp_path):
    """A contact binary (+-23 %), a faint star (30 % noise per cadence) and a curve with 2 % of its cadences
    over-subtracted below 0 were refused as "not a flux level", with a hint to divide ppm by 1e6."""
    from astrotool_plato.lightcurves import read_curves

    t, _ = _curve(t0=None)
    rng = np.random.default_rng(7)
    binary = 1000.0 * (1.0 + 0.23 * np.sin(2 * np.pi * t / 0.3))
    faint = 50.0 * (1.0 + rng.normal(0.0, 0.3, t.size))
    negative = np.full(t.size, 20.0) + rng.normal(0.0, 1.0, t.size)
    negative[rng.choice(t.size, t.size // 50, replace=False)] = -5.0
    for name, flux in (("binary", binary), ("faint", faint), ("negative", negative)):
        path = tmp_path / f"{name}.csv"
        np.savetxt(path, np.c_[t, flux], delimiter=",", header="time,flux", comments="")
        assert read_curves(path)[name][1].size == t.size
    path = tmp_path / "mostly.csv"
    np.savetxt(path, np.c_[t, np.where(np.arange(t.size) % 5 < 3, 100.0, -1.0)], delimiter=",",
               header="time,flux", comments="")
    with pytest.raises(InputError, match=r"mostly.csv: 40 % of the flux values are at or below 0 \(at most 25 "
                                         r"%\): not a flux level$"):
        read_curves(path)


def test_bls_bins_in_time_by_time_stamps():
    """BLS averaged every 4 samples whatever the cadence (30-min curves into 2 h) and across gaps."""
    from astrotool_plato.bls import bin_in_time

    step = 25.0 / 86400.0
    t = np.r_[np.arange(8), np.arange(20, 23)] * step                      # a gap after sample 7
    f = np.arange(t.size, dtype=float)
    tb, fb = bin_in_time(t, f, 4 * step)
    np.testing.assert_allclose(fb, [1.5, 5.5, 9.0])                      # 0-3, 4-7, 8-10: nothing across the gap
    np.testing.assert_allclose(tb, np.array([1.5, 5.5, 21.0]) * step)
    coarse = np.arange(10) / 48.0                                         # 30 min: already coarser than 100 s
    tb, fb = bin_in_time(coarse, np.ones(10), 100.0 / 86400.0)
    assert tb is coarse and fb.size == 10


def test_bls_bins_hold_whole_samples_at_large_time_offsets():
    """At 25 s every fourth sample fell on a 100-s bin edge, and rounding of times near BJD 2460000 decided its
    side: 962 of 1000 bins held 3 or 5 samples."""
    from astrotool_plato.bls import bin_in_time

    step, width = 25.0 / 86400.0, 100.0 / 86400.0
    for t0 in (2460000.123, 1500.0, 0.0):
        t = t0 + np.arange(4000) * step
        tb, fb = bin_in_time(t, np.arange(4000.0), width)
        np.testing.assert_allclose(fb, np.arange(1000) * 4 + 1.5)          # four samples each
    t = np.arange(100) * 60.0 / 86400.0                                    # 60 s: under two samples a bin
    assert bin_in_time(t, t, width)[0] is t


def test_time_and_flux_columns_are_found_whatever_their_case(tmp_path):
    from astrotool_plato.lightcurves import read_curves

    t, f = _curve()
    path = tmp_path / "lower.csv"
    np.savetxt(path, np.c_[t, f, f], delimiter=",", header="bjd,pdcsap_flux,other", comments="")
    ((time, flux),) = read_curves(path).values()
    np.testing.assert_allclose(time, t)
    np.testing.assert_allclose(flux, f)


@pytest.mark.parametrize("setting, days", [("plato.bls.min_period_days=3", 2.0),
                                           ("plato.bls.max_period_fraction=0.1", 2.0),
                                           ("plato.bls.min_period_days=0.6", 0.5)])
def test_bls_refuses_an_empty_period_range_naming_the_file(tmp_path, capsys, setting, days):
    t, f = _curve(days=days, t0=0.25)
    path = tmp_path / "c.csv"
    np.savetxt(path, np.c_[t, f], delimiter=",", header="time,flux", comments="")
    capsys.readouterr()
    assert main(["-w", str(tmp_path / "ws"), "--json", "--set", setting, "plato", "bls", str(path)]) == 2
    out, err = capsys.readouterr()
    assert f"{path}: " in err and "no trial period" in err and "min_period_days" in err, err
    summary = json.loads(out)   # no curve searched: no time per curve (as detect), not 0.0 s
    assert summary["curves"] == 0 and summary["seconds_per_curve"] is None, summary


def test_bls_bins_leave_out_samples_with_nan_times():
    """A NaN time stamp made the bin index negative: ValueError from numpy's bincount."""
    from astrotool_plato.bls import bin_in_time

    step = 25.0 / 86400.0
    t = np.arange(12) * step
    f = np.arange(12.0)
    t[[0, 5]] = np.nan                                                    # the first one too
    tb, fb = bin_in_time(t, f, 4 * step)
    assert np.isfinite(tb).all() and np.isfinite(fb).all()
    np.testing.assert_allclose(fb, [2.5, 7.0, 10.0])   # from the first finite time: 1-4, 6-8, 9-11 (0, 5 left out)
    coarse = np.r_[np.nan, np.arange(9) / 48.0]                           # unchanged but for the NaN time
    tb, fb = bin_in_time(coarse, np.ones(10), 100.0 / 86400.0)
    assert np.isfinite(tb).all() and fb.size == 9


def test_a_faint_star_in_electrons_names_only_the_failed_check_and_ppm_gets_the_hint():
    """A faint star in e-/s (median 50, scatter 40) was told "ppm about 0: divide by 1e6 and add 1"."""
    from astrotool_plato.lightcurves import check_curve

    rng = np.random.default_rng(3)
    t = np.arange(4000) * 25.0 / 86400.0
    faint = 50.0 + rng.normal(0.0, 40.0, t.size)
    with pytest.raises(InputError) as exc:
        check_curve(t, faint, "faint.csv")
    msg = str(exc.value)
    assert "scatter" in msg and msg.endswith("not a flux level") and "ppm" not in msg and "add 1" not in msg
    ppm = rng.normal(0.0, 300.0, t.size)                                  # relative flux in ppm about 0
    with pytest.raises(InputError, match=r"not a flux level; ppm about 0: divide by 1e6 and add 1$"):
        check_curve(t, ppm, "ppm.csv")
    rel = rng.normal(0.0, 1e-3, t.size)                                   # relative flux about 0
    with pytest.raises(InputError, match=r"not a flux level; relative flux about 0: add 1$"):
        check_curve(t, rel, "rel.csv")


def test_plot_last_takes_the_latest_detect_run_with_an_event_table_whatever_its_status(tmp_path):
    import pyarrow as pa

    from astrotool.io.tables import write_parquet
    from astrotool.workspace import Workspace
    from astrotool_plato.plot import _latest_detect

    runs = tmp_path / "runs"
    curve = tmp_path / "a.csv"
    curve.write_text("time,flux\n")

    def detect_run(stamp, status, name):
        table = None
        if name:
            table = tmp_path / f"{name}_events.parquet"
            write_parquet(pa.table({"file": ["k"], "id": [name]}), table,
                          metadata={"settings": {}, "file_keys": {"k": str(curve)}})
        (runs / f"{stamp}-plato-detect").mkdir(parents=True)
        (runs / f"{stamp}-plato-detect/run.json").write_text(json.dumps(
            {"status": status, "inputs": [str(curve)], "outputs": [str(table)] if table else []}))

    detect_run("20260101T000000Z", "ok", "old")
    detect_run("20260102T000000Z", "failed items", "new")     # one file failed: the others' table was written
    detect_run("20260103T000000Z", "error", None)             # wrote nothing
    todo, _ = _latest_detect(Workspace(tmp_path))
    assert todo == [(curve, "new")]


def test_rows_are_counted_from_1_in_every_message_and_float32_times_get_a_hint(tmp_path):
    import pyarrow as pa
    import pyarrow.feather as feather

    from astrotool_plato.lightcurves import read_curves

    t, f = _curve(days=0.2)
    back = t.copy()
    back[100] = back[50]                                     # time[100]: the 101st row
    text = f.astype(str)
    text[5] = "abc"                                          # flux[5]: the 6th row
    feather.write_feather(pa.table({"time": back, "flux": f}), tmp_path / "back.ftr")
    feather.write_feather(pa.table({"time": t, "flux": text}), tmp_path / "text.ftr")
    bjd = (2460000.0 + t).astype(np.float32)                 # steps of 0.25 d: repeated times
    feather.write_feather(pa.table({"time": bjd, "flux": f}), tmp_path / "f32.ftr")
    for name, msg in (("back.ftr", "time is not increasing: row 101 ("),
                      ("text.ftr", "(row 6, counting from 1: 'abc')"),
                      ("f32.ftr", "time is float32, too coarse for BJD; store it as float64")):
        with pytest.raises(InputError) as exc:
            read_curves(tmp_path / name)
        assert msg in str(exc.value), str(exc.value)
    with pytest.raises(InputError) as exc:
        read_curves(tmp_path / "back.ftr")
    assert "float32" not in str(exc.value)


def test_a_table_of_several_curves_is_refused_naming_its_id_column(tmp_path):
    """Two curves in one Parquet file (an id column, no simulator metadata) were read as one curve with the gap
    between them filled, or refused as 'time is not increasing'; a single id is one curve."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from astrotool_plato.lightcurves import read_curves

    t, f = _curve(days=0.2)
    ids = np.where(np.arange(t.size) < t.size // 2, "a", "b")
    pq.write_table(pa.table({"id": ids, "time": t, "flux": f}), tmp_path / "two.parquet")
    with pytest.raises(InputError) as exc:
        read_curves(tmp_path / "two.parquet")
    assert "holds 2 curves (column 'id': a, b), one file is one curve" in str(exc.value), str(exc.value)
    np.savetxt(tmp_path / "two.csv", np.c_[np.arange(t.size) % 4, t, f], delimiter=",", header="CURVE_ID,time,flux",
               comments="")
    with pytest.raises(InputError, match=r"holds 4 curves \(column 'CURVE_ID': 0, 1, 2, \.\.\.\)"):
        read_curves(tmp_path / "two.csv")
    tic = np.where(np.arange(t.size) < 10, 261136679, 261136680)   # large ids told apart
    pq.write_table(pa.table({"TIC": tic, "star_id": tic, "time": t, "flux": f}), tmp_path / "tic.parquet")
    with pytest.raises(InputError, match=r"holds 2 curves \(column 'star_id': 261136679, 261136680\)"):
        read_curves(tmp_path / "tic.parquet")
    # one curve: a single id (missing values are no id), or a column of row numbers
    one = np.full(t.size, "a", object)
    one[-1] = None
    pq.write_table(pa.table({"id": one, "time": t, "flux": f}), tmp_path / "one.parquet")
    np.savetxt(tmp_path / "rows.csv", np.c_[np.arange(t.size), t, f], delimiter=",", header="id,time,flux",
               comments="")
    for name in ("one.parquet", "rows.csv"):
        (cid, (time, flux)), = read_curves(tmp_path / name).items()
        assert time.size == t.size
    # the simulator's own file of several curves is read by its metadata, under either Parquet suffix
    from astrotool_plato.config import SimulateConfig
    from astrotool_plato.simulate import simulate_curves, write_lightcurves

    cfg = SimulateConfig(n_curves=2, duration_days=1.0)
    time, flux, params = simulate_curves(range(2), 5, cfg)
    write_lightcurves(tmp_path / "sim.pq", time, flux, params, 5, cfg)
    assert sorted(read_curves(tmp_path / "sim.pq")) == sorted(p.id for p in params)


def test_whole_number_float64_times_with_a_repeated_row_get_no_float32_hint(tmp_path):
    """Whole-number float64 times (seconds of a 25 s grid) are float32 values too, but not float32 data: a
    repeated row is named without the float32 hint; a float32 BJD column (its dtype as stored) gets it; with
    the stored dtype unknown, whole-number times get none."""
    import pyarrow as pa
    import pyarrow.feather as feather

    from astrotool_plato.lightcurves import check_curve, read_curves

    t = np.arange(0.0, 200000.0, 25.0)
    t = np.insert(t, 4001, t[4000])                          # a duplicated row: rows 4001 and 4002
    f = 1.0 + np.random.default_rng(3).normal(0.0, 300e-6, t.size)
    feather.write_feather(pa.table({"time": t, "flux": f}), tmp_path / "dup.ftr")
    bjd = (2460000.0 + _curve(days=0.2)[0]).astype(np.float32)
    feather.write_feather(pa.table({"time": bjd, "flux": np.ones(bjd.size)}), tmp_path / "f32.ftr")
    with pytest.raises(InputError) as exc:
        read_curves(tmp_path / "dup.ftr")
    assert "time is not increasing: row 4002 (" in str(exc.value), str(exc.value)
    assert "float32" not in str(exc.value), str(exc.value)
    with pytest.raises(InputError) as exc:
        check_curve(t, f, "dup")                             # stored dtype unknown: whole numbers, no hint
    assert "float32" not in str(exc.value), str(exc.value)
    with pytest.raises(InputError) as exc:
        read_curves(tmp_path / "f32.ftr")
    assert "time is float32, too coarse for BJD" in str(exc.value), str(exc.value)


def test_a_feather_flux_column_taken_by_position_is_named_in_the_log_once_for_files_alike(tmp_path, capsys):
    """With columns time, foo, `foo` was taken as the flux (the last-column rule) and no log line named it."""
    import pyarrow as pa
    import pyarrow.feather as feather

    from astrotool_plato.lightcurves import read_curves

    t, f = _curve(days=2.0, t0=1.2)
    for name in ("a", "b"):
        feather.write_feather(pa.table({"time": t, "foo": f}), tmp_path / f"{name}.ftr")
    feather.write_feather(pa.table({"time": t, "flux": f}), tmp_path / "named.ftr")
    notes = []
    read_curves(tmp_path / "a.ftr", notes=notes)
    assert notes == ["a.ftr: flux column 'foo' (none of flux, PDCSAP_FLUX, SAP_FLUX, FLUX, coadd: a Feather file's "
                     "last numeric column; --flux-column names another)", "a.ftr: time 'time' [d], flux 'foo'"]
    read_curves(tmp_path / "named.ftr", notes=notes)
    read_curves(tmp_path / "a.ftr", flux_column="foo", notes=notes)
    assert len([n for n in notes if "flux column" in n]) == 1
    capsys.readouterr()
    files = [str(tmp_path / n) for n in ("a.ftr", "b.ftr", "named.ftr")]
    assert main(["-w", str(tmp_path / "ws"), "plato", "bls", *files]) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if "flux column" in line]
    assert len(err) == 1 and "INFO" in err[0] and "2 files (a.ftr, ...): flux column 'foo'" in err[0], err


def test_lightkurve_style_files_are_read_lowercase_quality_comments_delimiters_and_masked_flags(tmp_path):
    """lightkurve writes `quality` in lower case (it was ignored: a flagged dip became a 36-sigma event); CSV
    comment lines, tab- and space-separated (ECSV) files were refused; a Feather `Flux` column lost to the
    last-column rule; a FITS flag column with TNULL made the file unreadable."""
    import pyarrow as pa
    import pyarrow.feather as feather
    from astropy.io import fits
    from astropy.table import Table

    from astrotool_plato.lightcurves import read_curves

    t, f = _curve(days=1.5, cadence_s=120.0, t0=None, start=2000.0)
    q = np.zeros(t.size, np.int32)
    q[100:180] = 4
    f[100:180] -= 0.004                                    # a flagged dip
    rows = "\n".join(f"{a:.10f}\t{b:.10f}\t{c}" for a, b, c in zip(t, f, q))
    (tmp_path / "lk.csv").write_text(f"# TIC 1\n# sector 1\n\ntime\tflux\tquality\n{rows}\n")
    Table({"time": t, "flux": f, "quality": q}).write(tmp_path / "lk_ecsv.csv", format="ascii.ecsv")
    (tmp_path / "semi.csv").write_text("time;flux\n" + "\n".join(f"{a:.10f};{b:.10f}" for a, b in zip(t, f)) + "\n")
    for name in ("lk.csv", "lk_ecsv.csv"):
        notes = []
        ((time, flux),) = read_curves(tmp_path / name, notes=notes).values()
        assert time.size == t.size - 80 and flux.min() > 0.997, name
        assert notes == [f"{name}: dropped 80 of {t.size} cadence(s) flagged in quality "
                         '(plato.detect.quality = "keep" keeps them)',
                         f"{name}: time 'time' [d], flux 'flux', flags 'quality'"]
    ((time, flux),) = read_curves(tmp_path / "semi.csv").values()
    np.testing.assert_allclose(flux, f)
    feather.write_feather(pa.table({"Time": t, "Flux": f, "Flux_Err": np.full(t.size, 3e-4)}), tmp_path / "c.ftr")
    notes = []
    ((time, flux),) = read_curves(tmp_path / "c.ftr", notes=notes).values()
    np.testing.assert_allclose(flux, f)
    assert notes == ["c.ftr: time 'Time' [d], flux 'Flux'"]   # by its name, not the last-column rule
    cols = [fits.Column("TIME", "D", array=t), fits.Column("PDCSAP_FLUX", "E", array=f),
            fits.Column("QUALITY", "J", array=np.where(q > 0, q, -1), null=-1)]   # -1: no flag (TNULL)
    fits.BinTableHDU.from_columns(cols).writeto(tmp_path / "tnull.fits")
    ((time, flux),) = read_curves(tmp_path / "tnull.fits").values()
    assert time.size == t.size - 80


def test_a_csv_whose_header_is_its_last_comment_line_is_read(tmp_path):
    """``# time,flux`` above the numbers (numpy's savetxt with its default comments, many scripts) was refused:
    the first row of numbers became the header (``no time column``)."""
    from astrotool_plato.lightcurves import read_curves

    t, f = _curve(days=0.5, cadence_s=120.0, t0=None, start=2000.0)
    np.savetxt(tmp_path / "np.csv", np.c_[t, f], delimiter=",", header="star 7\ntime,flux")   # "# star 7\n# time,flux"
    ((time, flux),) = read_curves(tmp_path / "np.csv").values()
    np.testing.assert_allclose(time, t)
    np.testing.assert_allclose(flux, f)
    np.savetxt(tmp_path / "numbers.csv", np.c_[t, f], delimiter=",", header="1,2")   # a comment of numbers: no header
    with pytest.raises(InputError, match="no time column"):
        read_curves(tmp_path / "numbers.csv")


def test_a_space_delimited_csv_with_aligned_columns_is_read(tmp_path):
    """Aligned columns (runs of spaces, leading spaces: numpy's savetxt with a width, Fortran output) were
    refused: pyarrow took every space for a delimiter (``Expected 15 columns, got 8``)."""
    import gzip

    from astrotool_plato.lightcurves import read_curves

    t, f = _curve(days=0.5, cadence_s=120.0, t0=None, start=2000.0)
    np.savetxt(tmp_path / "aligned.csv", np.c_[t, f], fmt="%14.6f %12.7f", header="    time       flux")
    with gzip.open(tmp_path / "aligned_gz.csv.gz", "wt") as out:
        out.write("   time   flux\n" + "".join(f"  {a:12.6f}    {b:.7f}\n" for a, b in zip(t, f)))
    (tmp_path / "latin1.csv").write_bytes(b"# 20\xb0C\n" + (tmp_path / "aligned.csv").read_bytes())  # not UTF-8
    for name in ("aligned.csv", "aligned_gz.csv.gz", "latin1.csv"):
        ((time, flux),) = read_curves(tmp_path / name).values()
        np.testing.assert_allclose(time, t, atol=1e-6)
        np.testing.assert_allclose(flux, f, atol=1e-7)


def test_a_file_whose_every_cadence_is_flagged_says_so_and_an_all_nan_flux_names_its_column(tmp_path):
    from astrotool_plato.lightcurves import read_curves

    t, f = _curve(days=0.5, cadence_s=120.0, t0=None, start=2000.0)
    path = _tess(tmp_path / "flagged.fits", t, f, quality=np.full(t.size, 128, np.int32))
    with pytest.raises(InputError, match=r"flagged\.fits: 0 samples; a light curve needs at least 2 \(dropped "
                                         rf"{t.size} of {t.size} cadence\(s\) flagged in QUALITY "
                                         r'\(plato.detect.quality = "keep" keeps them\)\)$'):
        read_curves(path)
    path = _tess(tmp_path / "nan.fits", t, np.full(t.size, np.nan))
    with pytest.raises(InputError, match=r"nan\.fits: the flux is NaN or infinite everywhere "
                                         r"\(flux column 'PDCSAP_FLUX'\)$"):
        read_curves(path)
    from astropy.io import fits

    cols = [fits.Column("TIME", "D", array=t), fits.Column("PDCSAP_FLUX", "E", array=np.full(t.size, np.nan)),
            fits.Column("SAP_FLUX", "E", array=f)]
    fits.BinTableHDU.from_columns(cols).writeto(tmp_path / "sap.fits")
    with pytest.raises(InputError, match=r"sap\.fits: the flux is NaN or infinite everywhere \(flux column "
                                         r"'PDCSAP_FLUX'; --flux-column SAP_FLUX reads another\)$"):
        read_curves(tmp_path / "sap.fits")
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"time": t, "flux_g1": np.full(t.size, np.nan), "flux_g2": f, "flux": f,
                             "SAP_FLUX": f}), tmp_path / "groups.parquet")
    with pytest.raises(InputError, match=r"everywhere in channel 0 of 3 \(flux column 'flux_g1'\)$"):
        read_curves(tmp_path / "groups.parquet", channels="groups")   # the group's column, and no other hint


def test_the_snr_of_an_event_beside_a_long_gap_uses_measured_samples_only():
    """detect filled a 10-day gap with a straight line, which had no scatter: S/N of 1e15."""
    from astrotool_plato.config import EventsConfig
    from astrotool_plato.detect import curve_events

    rng = np.random.default_rng(9)
    x = rng.normal(0.0, 300e-6, 24000)
    x[3000:3300] -= 3000e-6
    gap = np.zeros(x.size, bool)
    gap[7000:17000] = True
    x[gap] = np.interp(np.flatnonzero(gap), [6999, 17000], x[[6999, 17000]])   # as the grid fills it
    prob = np.zeros(x.size)
    prob[3000:3300] = 0.9
    cfg = EventsConfig(min_snr=0.0, binary_snr=0.0)
    (row,), _ = curve_events(prob, x, 0.0, 25.0, cfg, measured=~gap)
    white = 3000e-6 / (300e-6 / math.sqrt(300))                      # 173: the transit's S/N in white noise
    assert 0.6 * white < row["snr"] < 1.6 * white
    assert row["depth"] == pytest.approx(3000.0, rel=0.1)
    prob[10000:10300] = 0.9                                          # the network fires on the straight line
    prob[6900:7100] = 0.9                                            # and across the gap's edge, half in it
    rows, _ = curve_events(prob, x, 0.0, 25.0, cfg, measured=~gap)
    assert [r["start"] for r in rows] == [3000, 6900]                # the event inside the gap is none


def test_a_transit_at_a_gaps_edge_is_trimmed_to_its_measured_samples_and_a_pure_fill_event_dropped():
    """A 2000 ppm, 5 h transit at 1.396-1.604 d with no data from 1.0 to 1.4 d gave no event: the probability
    ran back over the gap's straight-line fill (54 % of the event), and an event under half measured was dropped."""
    from astrotool_plato.config import EventsConfig
    from astrotool_plato.detect import curve_events

    dt = 25.0 / 86400.0
    t = np.arange(0.0, 3.0, dt)
    x = np.random.default_rng(11).normal(0.0, 300e-6, t.size)
    x[(t >= 1.396) & (t < 1.604)] -= 2000e-6
    gap = (t >= 1.0) & (t < 1.4)
    x[gap] = np.interp(np.flatnonzero(gap), [gap.argmax() - 1, gap.argmax() + gap.sum()],
                       x[[gap.argmax() - 1, gap.argmax() + gap.sum()]])   # as the grid fills it
    prob = np.where((t >= 1.16) & (t < 1.61), 0.9, 0.02)                # 54 % of the event in the fill
    cfg = EventsConfig(min_snr=0.0, binary_snr=0.0)
    (row,), _ = curve_events(prob, x, 0.0, 25.0, cfg, measured=~gap)
    first = int(np.flatnonzero(~gap & (t >= 1.4))[0])
    assert row["start"] == first and row["stop"] == int(np.flatnonzero(t < 1.61)[-1]) + 1
    assert row["t_mid"] == pytest.approx(0.5 * (1.4 + 1.61), abs=2 * dt)      # of the measured samples
    assert row["duration"] == pytest.approx((1.61 - 1.4) * 24.0, abs=0.02)
    assert row["depth"] == pytest.approx(2000.0, rel=0.15)
    assert row["peak_probability"] == pytest.approx(0.9)
    inside = np.where((t >= 1.1) & (t < 1.3), 0.95, 0.02)                  # high only inside the gap: no event
    assert curve_events(inside, x, 0.0, 25.0, cfg, measured=~gap)[0] == []
    edge = np.where((t >= 1.1) & (t < 1.4 + 10 * dt), 0.95, 0.02)          # 10 measured samples: under 15 min
    assert curve_events(edge, x, 0.0, 25.0, cfg, measured=~gap)[0] == []


def test_plot_last_says_when_the_latest_detect_run_found_no_events(tmp_path, capsys):
    """`plot last` after a detect run without events printed `plots 0, files []` and not a word why."""
    import pyarrow as pa

    from astrotool.io.tables import write_parquet

    table = tmp_path / "plato/runs/quiet/quiet_events.parquet"
    table.parent.mkdir(parents=True)
    write_parquet(pa.table({"file": pa.array([], pa.string()), "id": pa.array([], pa.string())}), table,
                  metadata={"settings": {}, "file_keys": {}})
    run = tmp_path / "runs/20260101T000000Z-plato-detect"
    run.mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"status": "ok", "inputs": [], "outputs": [str(table)]}))
    capsys.readouterr()
    assert main(["-w", str(tmp_path), "plato", "plot", "last", "--no-model-overlay"]) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert "run, quiet (20260101T000000Z-plato-detect), found no events: nothing to plot" in err, err


def test_the_frame_of_a_fits_time_column_is_read_from_its_reference_keywords():
    """A time column of (jd1, jd2) pairs counts from JDREF or MJDREF, or their integer and fractional parts."""
    from astrotool_plato.lightcurves import _fits_reference

    assert _fits_reference({"JDREF": 0.0}) == "JD" and _fits_reference({}) == "JD"
    assert _fits_reference({"MJDREFI": 58000, "MJDREFF": 0.5}) == "MJD - 58000.5"   # was JD
    assert _fits_reference({"JDREFI": 2400000}) == "JD - 2400000"
