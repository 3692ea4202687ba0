"""Simulation: per-stamp seeding, ring pairs, noise level, fields, LensNet output, resume."""

from __future__ import annotations

import json

import numpy as np
import pytest

from astrotool.cli import main
from astrotool_lens.config import GenerateConfig
from astrotool_lens.data import ShearDataset
from astrotool_lens.generate import draw_stamps, generate_dataset
from astrotool_lens.shear import compose_shear, e_to_g, g_to_e

from .conftest import easy_config, run_cli, run_json as _run, serial_map


def run(capsys, ws, *args):
    return run_cli(capsys, "-w", ws, *args)


def test_pixels_do_not_depend_on_chunking():
    """Stamp i is seeded by (seed, i): one chunk or three chunks give identical pixels and truth."""
    cfg = GenerateConfig.model_validate({"preset": "lensnet", "n_stamps": 10})
    gal, psf, truth = draw_stamps(cfg, 3, 0, 10)
    parts = [draw_stamps(cfg, 3, a, b) for a, b in ((0, 4), (4, 7), (7, 10))]
    assert np.array_equal(np.concatenate([p[0] for p in parts]), gal)
    assert np.array_equal(np.concatenate([p[1] for p in parts]), psf)
    for c in ("g1", "g2", "int_g1", "dx", "psf_g1", "flux"):
        assert np.array_equal(np.concatenate([p[2][c] for p in parts]), truth[c])
    # a different base seed gives different stamps
    other, _, _ = draw_stamps(cfg, 4, 0, 10)
    assert not np.allclose(other, gal)


def test_dataset_identical_for_one_or_several_shards(tmp_path):
    """The dataset on disk is the same whatever the shard size (what --jobs splits over)."""
    from astrotool_lens.data import ShearDataset

    a = easy_config("a", n=60, shard_size=60)
    b = easy_config("a", n=60, shard_size=25)
    generate_dataset(a, tmp_path / "one", 9, serial_map)
    generate_dataset(b, tmp_path / "three", 9, serial_map)
    da, db = ShearDataset(tmp_path / "one"), ShearDataset(tmp_path / "three")
    assert len(db.shard_paths) == 3
    ga, pa = da.load_stamps()
    gb, pb = db.load_stamps()
    assert np.array_equal(ga, gb) and np.array_equal(pa, pb)
    assert np.array_equal(da.truth["g1"], db.truth["g1"])


def test_ring_pairs_cancel_intrinsic_ellipticity():
    """Ring partners have opposite intrinsic shapes; with no shear, noise, offset or PSF
    anisotropy the partner stamp is the 90-degree rotation of the first."""
    cfg = GenerateConfig.model_validate({
        "preset": "lensnet", "n_stamps": 8, "offset_radius": 0.0,
        "shape": {"ring": True}, "shear": {"g1": 0.0, "g2": 0.0},
        "psf": {"g1": 0.0, "g2": 0.0}, "noise": {"kind": "none"},
    })
    gal, _, t = draw_stamps(cfg, 1, 0, 8)
    assert np.allclose(t["int_g1"][0::2], -t["int_g1"][1::2])
    assert np.allclose(t["int_g2"][0::2], -t["int_g2"][1::2])
    assert np.all(np.hypot(t["int_g1"], t["int_g2"]) > 0)        # shapes are not round
    for k in range(0, 8, 2):
        assert not np.allclose(gal[k], gal[k + 1], atol=1e-3 * gal[k].max())
        assert np.allclose(np.rot90(gal[k]), gal[k + 1], atol=1e-5 * gal[k].max())
    # with a shear, the pair mean of the lensed ellipticity recovers g far better than one galaxy
    cfg2 = GenerateConfig.model_validate({"preset": "fields", "n_stamps": 400, "shear": {"field_size": 400}})
    _, _, t2 = draw_stamps(cfg2, 2, 0, 400)
    g1 = t2["g1"][0]
    assert np.all(t2["g1"] == g1)
    single = np.abs(t2["obs_g1"] - g1).mean()
    pair = np.abs(0.5 * (t2["obs_g1"][0::2] + t2["obs_g1"][1::2]) - g1).mean()
    assert single > 0.03 and pair < 0.1 * single


def test_gaussian_noise_reaches_target_snr():
    """Gaussian noise: sigma^2 = sum(I^2)/snr^2, measured from the noisy minus the noiseless stamp."""
    base = {"preset": "lensnet", "n_stamps": 40}
    noisy = GenerateConfig.model_validate({**base, "noise": {"kind": "gaussian", "snr": 50.0}})
    clean = GenerateConfig.model_validate({**base, "noise": {"kind": "none"}})
    gn, _, tn = draw_stamps(noisy, 5, 0, 40)
    gc, _, tc = draw_stamps(clean, 5, 0, 40)
    assert np.array_equal(tn["g1"], tc["g1"])                      # same galaxies
    snr = np.sqrt((gc.astype(float) ** 2).sum(axis=(1, 2)) / tn["noise_var"])
    assert np.allclose(snr, 50.0, rtol=1e-5)
    resid = (gn - gc).reshape(40, -1)
    ratio = resid.var(axis=1).mean() / tn["noise_var"].mean()
    assert 0.9 < ratio < 1.1
    assert np.all(np.isinf(tc["snr"]))


def test_fields_share_shear_and_psf():
    cfg = GenerateConfig.model_validate({"preset": "fields", "n_stamps": 40, "shear": {"field_size": 10}})
    _, psf, t = draw_stamps(cfg, 1, 0, 40)
    for f in range(4):
        sel = t["field"] == f
        assert len(set(t["g1"][sel])) == 1 and len(set(t["psf_g1"][sel])) == 1
    assert len(set(t["g1"])) == 4
    assert np.allclose(psf.sum(axis=(1, 2)), 1.0, atol=2e-3)        # unit-flux PSF stamps


def test_profiles_and_conventions():
    """Every profile draws; e <-> g conversions and shear composition are consistent."""
    for prof in ("sersic", "bulge+disk"):
        cfg = GenerateConfig.model_validate({"preset": "lensnet", "n_stamps": 3, "galaxy": {"profile": prof},
                                             "noise": {"kind": "none"}})
        gal, _, t = draw_stamps(cfg, 1, 0, 3)
        assert np.isfinite(gal).all() and (gal.sum(axis=(1, 2)) > 0.9).all()
        assert (t["profile"] == prof).all()
    e1, e2 = g_to_e(0.3, -0.2)
    g1, g2 = e_to_g(e1, e2)
    assert np.allclose([g1, g2], [0.3, -0.2])
    # by hand: a/b = 2 gives e = (4-1)/(4+1) = 0.6 and g = (2-1)/(2+1) = 1/3 = 0.6/(1+0.8)
    assert np.allclose(e_to_g(0.0, 0.6), (0.0, 1 / 3)) and np.allclose(g_to_e(1 / 3, 0.0), (0.6, 0.0))
    import galsim

    s = galsim.Shear(g1=0.1, g2=0.25) + galsim.Shear(g1=0.3, g2=-0.2)
    assert np.allclose(compose_shear(0.3, -0.2, 0.1, 0.25), (s.g1, s.g2))


def test_lensnet_stamps_carry_their_unit_and_pixel_scale(tmp_path):
    from astropy.io import fits

    generate_dataset(easy_config("lu", n=2, shard_size=2, format="lensnet"), tmp_path / "lu", 1, serial_map)
    gal, psf = (fits.getheader(tmp_path / "lu" / "lensnet" / f"{p}_1.fits") for p in ("gal", "psf"))
    assert gal["BUNIT"] == "ct" and psf["BUNIT"] == "" and gal["PIXSCALE"] == psf["PIXSCALE"] == 0.2
    assert "arcsec/pixel" in gal.comments["PIXSCALE"]


def test_lensnet_format_and_resume(tmp_path):
    from astrotool_lens.data import ShearDataset

    cfg = easy_config("ln", n=30, shard_size=10, format="lensnet")
    out = tmp_path / "ln"
    r1 = generate_dataset(cfg, out, 1, serial_map)
    assert r1["drawn"] == 3 and r1["manifest"] is not None
    entries = json.loads((out / "lensnet" / "data.json").read_text())
    assert len(entries) == 30 and (out / "lensnet" / entries[7]["galaxy"]).is_file()
    assert set(entries[0]) == {"galaxy", "psf", "e1", "e2", "g1", "g2", "dx", "dy"}
    from astropy.io import fits

    history = [str(h) for h in fits.getheader(out / "lensnet" / "psf_29.fits")["HISTORY"]]
    assert history[0].endswith("lens generate") and "seed 1" in history and history[-1] == "format lensnet"
    before, _ = ShearDataset(out).load_stamps()
    (out / "shard00001_stamps.h5").unlink()
    (out / "shard00002_stamps.h5").write_bytes(b"interrupted")        # damaged: drawn again, not fatal
    mtime = (out / "shard00000_stamps.h5").stat().st_mtime_ns
    r2 = generate_dataset(cfg, out, 1, serial_map)
    assert (r2["drawn"], r2["skipped"]) == (2, 1)
    assert (out / "shard00000_stamps.h5").stat().st_mtime_ns == mtime   # the finished shard was kept
    after, _ = ShearDataset(out).load_stamps()
    assert np.array_equal(before, after)


def test_a_dataset_recorded_with_an_earlier_key_name_is_kept(tmp_path):
    """``n`` became ``n_stamps``: shards and a manifest that record ``n`` are the same dataset, not one drawn
    with other settings (refused: ``lens.generate.n: 20 -> (absent)``)."""
    import h5py

    out = tmp_path / "d"
    cfg = easy_config("d", n=20, shard_size=10)
    generate_dataset(cfg, out, 1, serial_map)
    for shard in sorted(out.glob("shard*_stamps.h5")):   # as an earlier release wrote them
        with h5py.File(shard, "r+") as h5:
            conf = json.loads(h5.attrs["config"])
            conf["n"] = conf.pop("n_stamps")
            h5.attrs["config"] = json.dumps(conf)
    manifest = out / "d_dataset.json"
    m = json.loads(manifest.read_text())
    m["config"]["n"] = m["config"].pop("n_stamps")
    manifest.write_text(json.dumps(m))
    again = generate_dataset(cfg, out, 1, serial_map)
    assert (again["drawn"], again["skipped"]) == (0, 2)


def test_other_settings_are_refused_and_overwrite_replaces(tmp_path):
    from astrotool.errors import AstroError
    from astrotool_lens.data import ShearDataset

    out = tmp_path / "d"
    first = easy_config("d", n=30, shard_size=10)
    generate_dataset(first, out, 1, serial_map)
    other = easy_config("d", n=20, shard_size=10, noise={"kind": "gaussian", "snr": 50.0})
    with pytest.raises(AstroError, match=r"made with other settings:\n  lens\.generate\.n_stamps: 30 -> 20\n"
                                         r"  lens\.generate\.noise\.snr: 500\.0 -> 50\.0\nuse --overwrite"):
        generate_dataset(other, out, 1, serial_map)
    with pytest.raises(AstroError, match="lens.generate.seed: 1 -> 2"):
        generate_dataset(first, out, 2, serial_map)
    assert ShearDataset(out).n == 30                                   # refused: nothing touched

    def all_fail(fn, items, desc="", keys=None):                       # Context.map leaves failed items out
        return []

    r = generate_dataset(other, out, 1, all_fail, overwrite=True)
    assert (r["manifest"], r["missing"]) == (None, 2)                  # old shards do not count as drawn
    assert not (out / "d_dataset.json").exists() and not (out / "shard00002_stamps.h5").exists()
    r = generate_dataset(other, out, 1, serial_map, overwrite=True)
    ds = ShearDataset(out)
    assert r["drawn"] == 2 and ds.n == 20 and np.all(ds.truth["snr"] == 50.0)


def test_dataset_is_a_core_array_dataset(tmp_path):
    """Stamps, truth and manifest go through astrotool.ml.data; splits keep shear fields whole."""
    from astrotool.errors import InputError
    from astrotool.ml.data import ArrayDataset, DatasetWriter
    from astrotool_lens.data import ShearDataset

    cfg = easy_config("f", n=60, shard_size=25, shear={"field_size": 6})
    r = generate_dataset(cfg, tmp_path / "f", 3, serial_map)
    assert r["manifest"]["metadata"] == "f_truth.parquet" and r["manifest"]["kind"] == "lens-shear"
    core, ds = ArrayDataset(tmp_path / "f"), ShearDataset(tmp_path / "f")
    assert core.arrays == {"gal": ((24, 24), np.dtype("float32")), "psf": ((24, 24), np.dtype("float32"))}
    assert [(a, b) for _, a, b in ds.shards] == [(0, 25), (25, 50), (50, 60)]
    assert (ds.stamp_size, ds.pixel_scale, ds.manifest["field_size"]) == (24, 0.2, 6)
    gal, psf, truth = draw_stamps(cfg, 3, 0, 60)
    got_gal, got_psf = ds.load_stamps([59, 0, 26])
    assert np.array_equal(got_gal, gal[[59, 0, 26]]) and np.array_equal(got_psf, psf[[59, 0, 26]])
    assert np.array_equal(ds.truth["g1"], truth["g1"]) and list(ds.truth["profile"][:1]) == ["exponential"]
    train, val, test = ds.split((0.6, 0.2, 0.2), seed=4)
    field = ds.truth["field"]
    assert [len(set(field[p])) for p in (train, val, test)] == [6, 2, 2]
    assert not set(field[train]) & (set(field[val]) | set(field[test]))
    assert np.array_equal(np.sort(np.concatenate([train, val, test])), np.arange(60))
    # another kind of array dataset is not a shear dataset
    w = DatasetWriter(str(tmp_path / "other"), "other", kind="light-curves")
    w.write_shard(0, 0, {"flux": np.zeros((4, 10), np.float32)})
    w.finalize(1)
    with pytest.raises(InputError, match="holds a 'light-curves' dataset, expected 'lens-shear'"):
        ShearDataset(tmp_path / "other")


def test_config_rejects_bad_values():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="lower bound"):
        GenerateConfig.model_validate({"psf": {"fwhm": [3.0, 2.0]}})
    with pytest.raises(ValidationError):
        GenerateConfig.model_validate({"galaxy": {"size": 1.0}})       # unknown key
    with pytest.raises(ValidationError, match="even"):
        GenerateConfig.model_validate({"n_stamps": 11, "shape": {"ring": True}})
    # a preset is merged under explicit keys
    c = GenerateConfig.model_validate({"preset": "shearnet", "noise": {"snr": 20.0}})
    assert c.noise.snr == 20.0 and c.noise.kind == "gaussian" and c.stamp_size == 48


def test_a_damaged_shard_whose_redraw_failed_counts_as_missing(tmp_path):
    """Without --overwrite too: the run reports the missing shard (exit 1), finalize is not reached."""
    cfg = easy_config("b", n=30, shard_size=10)
    out = tmp_path / "b"
    generate_dataset(cfg, out, 1, serial_map)
    (out / "b_dataset.json").unlink()
    (out / "shard00002_stamps.h5").write_bytes(b"interrupted")

    def fail_shard2(fn, items, desc="", keys=None):                    # Context.map leaves failed items out
        return serial_map(fn, [t for t in items if t.shard != 2], desc, [k for k in keys if not k.endswith("2")])

    r = generate_dataset(cfg, out, 1, fail_shard2)
    assert (r["manifest"], r["missing"], r["skipped"]) == (None, 1, 2)
    assert not (out / "b_dataset.json").exists()

    def only_shard2(fn, items, desc="", keys=None):                    # --shard 2/3: the others are finished
        return serial_map(fn, [t for t in items if t.shard == 2], desc, [k for k in keys if k.endswith("2")])

    r = generate_dataset(cfg, out, 1, only_shard2)
    assert (r["missing"], r["drawn"]) == (0, 1) and r["manifest"]["n"] == 30


def test_overwrite_removes_an_earlier_lensnet_folder_and_a_rerun_keeps_the_manifest(tmp_path):
    out = tmp_path / "o"
    generate_dataset(easy_config("o", n=20, shard_size=10, format="lensnet"), out, 1, serial_map)
    assert (out / "lensnet" / "gal_19.fits").is_file()
    manifest = (out / "o_dataset.json").read_bytes()
    r = generate_dataset(easy_config("o", n=20, shard_size=10, format="lensnet"), out, 1, serial_map)
    assert r["skipped"] == 2 and (out / "o_dataset.json").read_bytes() == manifest   # nothing drawn, nothing rewritten
    assert r["manifest"] == json.loads(manifest)

    def all_fail(fn, items, desc="", keys=None):
        return []

    r = generate_dataset(easy_config("o", n=10, shard_size=10), out, 1, all_fail, overwrite=True)
    assert r["manifest"] is None and not (out / "lensnet").exists()   # removed before drawing
    generate_dataset(easy_config("o", n=10, shard_size=10, format="lensnet"), out, 1, serial_map, overwrite=True)
    assert sorted(p.name for p in (out / "lensnet").iterdir()) == ["data.json", *sorted(
        f"{k}_{i}.fits" for k in ("gal", "psf") for i in range(10))]


def test_overwrite_shard_by_shard_finishes_with_every_lensnet_file(tmp_path):
    """A Slurm array with --overwrite: each job redraws its shard, the last one finishes the set."""
    out = tmp_path / "s"
    generate_dataset(easy_config("s", n=20, shard_size=10, format="lensnet"), out, 1, serial_map)
    new = easy_config("s", n=20, shard_size=10, format="lensnet", offset_radius=0.25)   # other settings

    def shard(i):
        def mapper(fn, items, desc="", keys=None):   # what --shard i/2 leaves of the items
            return serial_map(fn, items[i::2], desc, None if keys is None else keys[i::2])
        return mapper

    first = generate_dataset(new, out, 1, shard(0), overwrite=True)
    assert first["missing"] == 1 and first["manifest"] is None   # shard 1 still holds the old settings
    second = generate_dataset(new, out, 1, shard(1), overwrite=True)
    assert second["missing"] == 0 and second["manifest"]["config"]["offset_radius"] == 0.25
    entries = json.loads((out / "lensnet" / "data.json").read_text())
    assert len(entries) == 20 and all((out / "lensnet" / e["galaxy"]).is_file() for e in entries)
    assert ShearDataset(out).n == 20


def test_cli_reports_a_failed_redraw_as_a_failed_item(tmp_path, capsys, monkeypatch):
    """Exit 1 with the failure table (not exit 2 from a finalize over the damaged file)."""
    import astrotool_lens.generate as gen
    from astrotool.cli import main

    ws = tmp_path / "ws"
    args = [str(a) for a in ("-w", ws, "-q", "--json", "lens", "generate", "--preset", "shearnet", "--name", "x",
                             "--stamp-size", 24, "-n", 12, "--shard-size", 6, "--set", "lens.generate.psf.fwhm=0.6")]
    assert main(args) == 0
    out = ws / "lens" / "shear" / "x"
    (out / "x_dataset.json").unlink()
    (out / "shard00001_stamps.h5").write_bytes(b"interrupted")
    real = gen.generate_shard

    def failing(task, seed=None):
        if task.shard == 1:
            raise RuntimeError("out of memory")
        return real(task, seed)

    monkeypatch.setattr(gen, "generate_shard", failing)
    capsys.readouterr()
    assert main(args) == 1
    got = capsys.readouterr()
    assert "shard00001" in got.err and "out of memory" in got.err and json.loads(got.out)["missing_shards"] == 1


def test_wide_preset_draws_every_choice_within_its_ranges():
    """``wide``: per stamp a PSF profile, Moffat beta and truncation, noise kind, S/N and Sersic index."""
    cfg = GenerateConfig.model_validate({"preset": "wide", "n_stamps": 120})
    gal, psf, t = draw_stamps(cfg, 3, 0, 120)[:3]
    assert np.isfinite(gal).all() and np.isfinite(psf).all() and (psf.sum(axis=(1, 2)) > 0).all()
    assert set(t["psf_profile"]) == {"moffat", "kolmogorov", "gaussian"}
    assert set(t["noise_kind"]) == {"gaussian", "poisson"}
    for key, (lo, hi) in {"psf_beta": (2.0, 5.0), "psf_trunc": (1.5, 4.0), "psf_fwhm": (2.2, 3.8),
                          "snr": (50.0, 1000.0), "sersic_n": (0.5, 4.0)}.items():
        v = np.asarray(t[key], float)
        assert lo <= v.min() and v.max() <= hi and v.max() - v.min() > 0.5 * (hi - lo), key
    ratio = np.asarray(t["hlr"]) / np.asarray(t["psf_hlr"])
    assert 0.5 - 1e-9 <= ratio.min() and ratio.max() <= 1.8 + 1e-9
    # each stamp's PSF is the drawn profile: a Kolmogorov PSF has wings a Gaussian lacks
    yy, xx = np.mgrid[:40, :40] - 19.5
    r = np.hypot(yy, xx)

    def wings(i):
        return psf[i][r > 2.0 * t["psf_fwhm"][i] + 1].sum() / psf[i].sum()   # + 1 px: the offset

    gauss = [wings(i) for i, p in enumerate(t["psf_profile"]) if p == "gaussian"]
    kolmo = [wings(i) for i, p in enumerate(t["psf_profile"]) if p == "kolmogorov"]
    assert max(gauss) < 1e-4 and min(kolmo) > 0.01, (max(gauss), min(kolmo))


def test_mixing_draws_from_streams_of_its_own():
    """A mix that can only draw the plain values gives the plain pixels: the other presets are unchanged by it."""
    plain = GenerateConfig.model_validate({"preset": "lensnet", "n_stamps": 6})
    mixed = GenerateConfig.model_validate({"preset": "lensnet", "n_stamps": 6, "psf": {"profiles": ["moffat"],
                                           "beta": [3.0, 3.0]}, "noise": {"kinds": ["poisson"]}})
    a, b = draw_stamps(plain, 5, 0, 6), draw_stamps(mixed, 5, 0, 6)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    for bad, word in (({"beta": [1.0, 3.0]}, "beta"), ({"trunc": -1.0}, "trunc")):
        with pytest.raises(ValueError, match=word):
            GenerateConfig.model_validate({"preset": "lensnet", "psf": bad})


@pytest.mark.parametrize("preset, g1, int_g1, gal_sums", [
    ("lensnet", [-0.092649194293, -0.353695203857], [0.195914443202, -0.019837812798], [1568281.0, 1655956.0]),
    ("shearnet", [-0.023162298573, -0.088423800964], [0.0, 0.0], [1.0038468735748225, 1.0002184770332008]),
    ("fields", [-0.023162298573, -0.023162298573], [0.195914443202, -0.195914443202], [1571858.0, 1584388.0]),
])
def test_old_presets_draw_what_they_drew_before_wide(preset, g1, int_g1, gal_sums):
    """Shears, shapes and pixel sums of the first stamps at seed 2024, recorded before the ``wide`` preset's
    mixing was added (Poisson stamps hold whole counts): the older presets' datasets are unchanged by it."""
    over = {"shear": {"field_size": 2}} if preset == "fields" else {}
    gal, _, t = draw_stamps(GenerateConfig.model_validate({"preset": preset, "n_stamps": 2, **over}), 2024, 0, 2)
    assert np.allclose(t["g1"], g1, rtol=0, atol=1e-12) and np.allclose(t["int_g1"], int_g1, rtol=0, atol=1e-12)
    assert np.allclose(gal.astype(np.float64).sum(axis=(1, 2)), gal_sums, rtol=1e-6, atol=0)


def test_the_seed_used_decides_a_rerun_whether_configured_or_given(tmp_path):
    """``lens.generate.seed=1`` and ``--seed 1`` draw the same pixels: either way round a rerun keeps the
    dataset (nothing redrawn, manifest kept); another seed used is refused, named as ``--set`` spells it."""
    from astrotool.errors import AstroError

    out = tmp_path / "s1"
    configured = easy_config("s1", n=20, shard_size=10, seed=1)
    given = easy_config("s1", n=20, shard_size=10)
    generate_dataset(configured, out, 1, serial_map)
    manifest = (out / "s1_dataset.json").read_text()
    again = generate_dataset(given, out, 1, serial_map)
    assert (again["drawn"], again["skipped"]) == (0, 2) and again["manifest"] is not None
    assert (out / "s1_dataset.json").read_text() == manifest
    back = generate_dataset(configured, out, 1, serial_map)
    assert (back["drawn"], back["skipped"]) == (0, 2)
    with pytest.raises(AstroError, match=r"lens\.generate\.seed: 1 -> 2\nuse --overwrite"):
        generate_dataset(given, out, 2, serial_map)
    out2 = tmp_path / "s2"
    generate_dataset(given, out2, 1, serial_map)
    again = generate_dataset(configured, out2, 1, serial_map)
    assert (again["drawn"], again["skipped"]) == (0, 2)
    with pytest.raises(AstroError, match=r"lens\.generate\.seed: 1 -> 2\nuse --overwrite"):
        generate_dataset(easy_config("s1", n=20, shard_size=10, seed=2), out2, 2, serial_map)


@pytest.mark.parametrize("where", ["fits", "shard"])
def test_an_interrupted_lensnet_shard_leaves_none_of_its_fits_files(tmp_path, monkeypatch, where):
    """Interrupted while writing its FITS files (or its HDF5 shard after them), a shard leaves no
    ``gal_i``/``psf_i`` of its own in ``lensnet/``: that folder holds the finished shards' stamps only."""
    from astropy.io import fits

    from astrotool.ml.data import DatasetWriter

    cfg = easy_config("ln", n=30, shard_size=10, format="lensnet")
    out = tmp_path / "ln"
    calls = {"fits": 0, "shard": 0}
    real_writeto, real_write_shard = fits.PrimaryHDU.writeto, DatasetWriter.write_shard

    def writeto(self, *args, **kwargs):
        calls["fits"] += 1
        if where == "fits" and calls["fits"] == 45:                     # midway through the third shard
            raise KeyboardInterrupt("terminated")
        return real_writeto(self, *args, **kwargs)

    def write_shard(self, shard, *args, **kwargs):
        if where == "shard" and shard == 2:
            raise KeyboardInterrupt("terminated")
        return real_write_shard(self, shard, *args, **kwargs)

    monkeypatch.setattr(fits.PrimaryHDU, "writeto", writeto)
    monkeypatch.setattr(DatasetWriter, "write_shard", write_shard)
    with pytest.raises(KeyboardInterrupt):
        generate_dataset(cfg, out, 1, serial_map)
    left = sorted(p.name for p in (out / "lensnet").iterdir())
    assert left == sorted(f"{p}_{i}.fits" for i in range(20) for p in ("gal", "psf"))
    monkeypatch.undo()
    r = generate_dataset(cfg, out, 1, serial_map)                      # the rerun finishes it
    assert (r["drawn"], r["skipped"]) == (1, 2) and len(json.loads((out / "lensnet" / "data.json").read_text())) == 30


def test_an_odd_field_size_of_ring_pairs_blames_field_size(tmp_path, capsys):
    _, err = _run(capsys, tmp_path, "lens", "generate", "--preset", "fields", "--n-stamps", 250, "--name", "fs2",
                  "--field-size", 25, code=2)
    assert "command-line option --field-size" in err and "--preset" not in err


def test_generate_names_changed_settings_as_set_spells_them(tmp_path, capsys):
    from .conftest import TINY_GEN

    assert main(["-q", "-w", str(tmp_path), *map(str, TINY_GEN), "--name", "x", "-n", "8"]) == 0
    code, _, err = run(capsys, tmp_path, "-q", *TINY_GEN, "--name", "x", "-n", "12", "--snr", "50")
    assert code == 2
    assert "exists but was made with other settings:\n" in err
    assert "  lens.generate.n_stamps: 8 -> 12\n" in err and "  lens.generate.noise.snr:" in err and "--overwrite" in err


def test_an_overwrite_shard_task_removes_the_old_truth_and_names_the_other_tasks(tmp_path, capsys):
    from .conftest import TINY_GEN

    assert main(["-q", "-w", str(tmp_path), *map(str, TINY_GEN), "--name", "x", "-n", "8"]) == 0
    truth = tmp_path / "lens" / "shear" / "x" / "x_truth.parquet"
    assert truth.is_file()
    code, _, err = run(capsys, tmp_path, "--overwrite", "--shard", "0/2", *TINY_GEN, "--name", "x", "-n", "8",
                       "--snr", "50")
    assert code == 0, err
    assert not truth.exists()
    assert "the other --shard tasks" in err and "re-run the same command" not in err
    code, _, err = run(capsys, tmp_path, "--overwrite", "--shard", "1/2", *TINY_GEN, "--name", "x", "-n", "8",
                       "--snr", "50")
    assert code == 0, err
    assert truth.is_file()
