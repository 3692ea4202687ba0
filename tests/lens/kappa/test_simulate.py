"""Simulated kappa maps: the NFW profile against a line-of-sight integral, Sigma_crit and the NFW
parameters from Planck18 by hand, Duffy et al. (2008), the lensed ellipticity's algebra, the physics and
noise of a map, per-map seeding, and the command (layout, resume, refusals, a failed chunk)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from astrotool.cli import main
from astrotool_lens.kappa import simulate as sim
from astrotool_lens.kappa.config import SimulateConfig
from astrotool_lens.kappa.maps import kaiser_squires


def run(capsys, *args):
    code = main(["--json", *(str(a) for a in args)])
    out = capsys.readouterr()
    return code, out.out, out.err


# ---------------------------------------------------------------- NFW profile


def _los_profile(x):
    """``Sigma(R) / (rho_s r_s)`` of the 3-D NFW density, by quadrature along the line of sight (r_s = 1)."""
    from scipy.integrate import quad

    def rho(z):
        r = math.hypot(x, z)
        return 1.0 / (r * (1 + r) ** 2)

    near = quad(rho, 0, 1, epsabs=0, epsrel=1e-13, limit=200)[0]
    far = quad(rho, 1, np.inf, epsabs=0, epsrel=1e-13, limit=200)[0]
    return 2 * (near + far)


def test_nfw_profile_equals_line_of_sight_integral():
    xs = np.array([0.1, 0.5, 0.9999, 1.0, 1.0001, 2.0, 10.0])
    got = sim.nfw_kappa_profile(xs)
    want = np.array([_los_profile(x) for x in xs])
    assert got.dtype == np.float64 and got.shape == xs.shape
    # closed forms: to rounding; the Taylor branch within 1e-4 of x = 1: to its second-order term
    closed = np.abs(xs - 1) > 1e-4
    np.testing.assert_allclose(got[closed], want[closed], rtol=1e-12)
    np.testing.assert_allclose(got[~closed], want[~closed], rtol=3e-8)
    assert got[3] == pytest.approx(2 / 3, abs=1e-15)


def test_nfw_profile_is_continuous_at_the_branch_joins():
    d = 1e-10
    for edge in (1 - 1e-4, 1 + 1e-4):
        below, above = sim.nfw_kappa_profile([edge - d, edge + d])
        assert abs(above - below) < 3e-8  # the slope (about -0.8) moves it by 2e-10 only
    # monotonically decreasing through x = 1
    x = np.linspace(0.999, 1.001, 2001)
    assert np.all(np.diff(sim.nfw_kappa_profile(x)) < 0)


# ---------------------------------------------------------------- Sigma_crit, NFW parameters, c(M)


def _by_hand(z_l, z_s):
    """(D_l [Mpc], Sigma_crit [Msun/Mpc^2], rho_c(z_l) [Msun/Mpc^3]) from Planck18's H(z), D_M and SI constants."""
    import astropy.units as u
    from astropy.constants import G, M_sun, c
    from astropy.cosmology import Planck18

    assert Planck18.Ok0 == 0  # flat: D_ls = (D_M(z_s) - D_M(z_l)) / (1 + z_s)
    dm_l = Planck18.comoving_transverse_distance(z_l).to_value(u.Mpc)
    dm_s = Planck18.comoving_transverse_distance(z_s).to_value(u.Mpc)
    d_l, d_s, d_ls = dm_l / (1 + z_l), dm_s / (1 + z_s), (dm_s - dm_l) / (1 + z_s)
    mpc, msun, g, cc = u.Mpc.to(u.m), M_sun.value, G.value, c.value
    sig = cc**2 * d_s / (4 * math.pi * g * d_l * d_ls) / mpc / msun * mpc**2  # kg/m -> Msun/Mpc^2
    h = Planck18.H(z_l).to_value(u.s**-1)
    rho_c = 3 * h**2 / (8 * math.pi * g) / msun * mpc**3
    return d_l, sig, rho_c


def test_sigma_crit_by_hand_and_growing_towards_the_source():
    _, want, _ = _by_hand(0.3, 1.0)
    got = sim.sigma_crit(0.3, 1.0)
    assert got == pytest.approx(want, rel=1e-9)
    assert 1e15 < got < 1e16  # cluster lensing's order of magnitude
    zs = [0.3, 0.5, 0.7, 0.9, 0.95]
    values = [sim.sigma_crit(z, 1.0) for z in zs]
    assert all(b > a for a, b in zip(values, values[1:]))
    assert sim.sigma_crit(0.05, 1.0) > sim.sigma_crit(0.3, 1.0)  # and near the observer


def test_nfw_params_rebuild_the_halo():
    from scipy.integrate import quad

    z_l, z_s = 0.3, 1.0
    m200 = np.array([1e13, 3e14, 1e15])
    c200 = np.array([7.0, 4.0, 3.0])
    d_l, sig, rho_c = _by_hand(z_l, z_s)
    kappa_s, theta_s = sim.nfw_params(m200, c200, z_l, z_s)
    rs = theta_s / 60 * math.pi / 180 * d_l                      # Mpc
    rho_s = kappa_s * sig / rs                                   # Msun/Mpc^3
    for m, c, r, rho in zip(m200, c200, rs, rho_s):
        assert rho / rho_c == pytest.approx(200 / 3 * c**3 / (math.log1p(c) - c / (1 + c)), rel=1e-9)
        r200 = c * r
        assert 4 / 3 * math.pi * r200**3 * 200 * rho_c == pytest.approx(m, rel=1e-9)
        mass = 4 * math.pi * quad(lambda x: rho / ((x / r) * (1 + x / r) ** 2) * x * x, 0, r200, epsrel=1e-12)[0]
        assert mass == pytest.approx(m, rel=1e-9)               # M200c is the NFW mass inside r200
    # sig_crit given is used as given
    k2, t2 = sim.nfw_params(m200, c200, z_l, z_s, sig_crit=2 * sig)
    np.testing.assert_allclose(k2, kappa_s * sig / (2 * sig), rtol=1e-6)
    np.testing.assert_array_equal(t2, theta_s)


def test_duffy08_concentration():
    h = 0.6766
    assert sim.duffy08_concentration(2e12 / h, 0.0, h) == pytest.approx(5.71, rel=1e-14)
    m = np.array([1e13, 1e14, 1e15])
    c = sim.duffy08_concentration(m, 0.0, h)
    np.testing.assert_allclose(np.diff(np.log10(c)), -0.084, rtol=1e-12)
    assert sim.duffy08_concentration(1e14, 1.0, h) / sim.duffy08_concentration(1e14, 0.0, h) == pytest.approx(
        2**-0.47, rel=1e-14)


# ---------------------------------------------------------------- lensed ellipticity


def test_lens_ellipticity_algebra():
    rng = np.random.default_rng(0)
    g = np.array([0.3 + 0.1j, -0.2j, 0.05 - 0.6j, 2.0 + 1.0j, -1.5j])
    np.testing.assert_allclose(sim.lens_ellipticity(np.zeros(5, complex), g),
                               np.where(np.abs(g) < 1, g, 1 / np.conj(g)), rtol=1e-15)
    eps_s = 0.5 * rng.random(200) * np.exp(2j * np.pi * rng.random(200))
    for gg in g:
        eps = sim.lens_ellipticity(eps_s, gg)
        assert eps.shape == eps_s.shape and np.all(np.abs(eps) < 1 + 1e-12)
        if abs(gg) < 1:
            back = (eps - gg) / (1 - np.conj(gg) * eps)
        else:  # eps = (1 + g w) / (w + conj g) with w = conj(eps_s)
            back = np.conj((1 - eps * np.conj(gg)) / (eps - gg))
        np.testing.assert_allclose(back, eps_s, atol=1e-12)


@pytest.mark.parametrize("g", [0.2 + 0.1j, -0.5 + 0.6j, 1.5 - 0.8j])
def test_ring_of_intrinsic_shapes_averages_to_the_reduced_shear(g):
    phases = np.exp(2j * np.pi * np.arange(64) / 64)
    for e in (0.1, 0.4, 0.8):
        mean = sim.lens_ellipticity(e * phases, g).mean()
        want = g if abs(g) < 1 else 1 / np.conj(g)
        assert abs(mean - want) < 1e-10
        assert abs(sim.lens_ellipticity(e * phases[:1], g)[0] - want) > 1e-3  # one galaxy alone does not


# ---------------------------------------------------------------- a map's physics and noise


def _halo_cfg(log10_mass, size=32):
    return SimulateConfig(size=size, n_sub=0, grf_rms=0, offset=0, sigma_e=0, sigma_meas=0, n_gal=2000,
                          z_lens=(0.3, 0.3), log10_mass=(log10_mass, log10_mass), concentration_scatter=0)


def test_central_halo_shears_tangentially_everywhere():
    cfg = _halo_cfg(14.5)
    eps, kappa, truth, g = sim.simulate_one(cfg, 1)
    s = cfg.size
    assert truth["x"] == truth["y"] == (s - 1) / 2 and truth["n_halos"] == 1
    assert np.all(eps[2] < 1)  # every pixel holds galaxies (de = 0 with no noise)
    np.testing.assert_allclose(eps[0] + 1j * eps[1], g, atol=1e-12)  # no noise: epsilon is g
    assert kappa.argmax() in {np.ravel_multi_index((i, j), kappa.shape) for i in (15, 16) for j in (15, 16)}
    yy, xx = np.mgrid[0:s, 0:s] - (s - 1) / 2
    phi = np.arctan2(yy, xx)
    gt = -(eps[0] * np.cos(2 * phi) + eps[1] * np.sin(2 * phi))
    gx = eps[0] * np.sin(2 * phi) - eps[1] * np.cos(2 * phi)
    r = np.hypot(xx, yy)
    for lo in range(0, 22):
        ring = (r >= lo) & (r < lo + 1)
        assert gt[ring].min() > 0, lo
    inner = r < s / 2
    assert np.abs(gx[inner]).max() < 0.1 * gt[inner].mean()  # a round halo: little cross shear


def test_kaiser_squires_of_a_weak_noiseless_map_recovers_kappa():
    cfg = _halo_cfg(13.5)
    eps, kappa, _, _ = sim.simulate_one(cfg, 1)
    assert kappa.max() < 0.15
    ke, kb = kaiser_squires(eps[0], eps[1])
    kk = kappa - kappa.mean()
    assert np.corrcoef(ke.ravel(), kk.ravel())[0, 1] > 0.98   # edges: the field is not periodic
    q = slice(8, 24)
    assert np.corrcoef(ke[q, q].ravel(), kk[q, q].ravel())[0, 1] > 0.999
    assert kb.std() < 0.15 * ke.std() and kb[q, q].std() < 0.02 * ke[q, q].std()


def test_noise_is_normalised_by_delta_epsilon():
    cfg = SimulateConfig(size=64, grf_rms=0, n_sub=0, log10_mass=(10.0, 10.0))
    sig = math.hypot(cfg.sigma_e, cfg.sigma_meas)
    pulls, n_empty = [], 0
    for i in range(3):
        eps, kappa, truth, g = sim.simulate_one(cfg, 100 + i)
        assert np.abs(kappa).max() < 1e-3
        occ = eps[2] < sim.EMPTY_ERROR_FACTOR * sig - 1e-12
        empty = ~occ
        n_empty += int(empty.sum())
        assert np.all(eps[0][empty] == 0) and np.all(eps[1][empty] == 0)
        np.testing.assert_allclose(eps[2][empty], sim.EMPTY_ERROR_FACTOR * sig, rtol=1e-15)
        # de = sig / sqrt(N) with N a whole number of galaxies
        n = (sig / eps[2][occ]) ** 2
        np.testing.assert_allclose(n, np.round(n), atol=1e-9)
        assert np.round(n).sum() / eps[2].size == pytest.approx(truth["mean_n_gal"], rel=1e-12)
        pulls.append((eps[0][occ] - g.real[occ]) / eps[2][occ])
        pulls.append((eps[1][occ] - g.imag[occ]) / eps[2][occ])
    p = np.concatenate(pulls)
    assert n_empty > 100 and p.size > 10000
    assert abs(p.std() - 1) < 0.05 and abs(p.mean()) < 0.05


# ---------------------------------------------------------------- seeding


def test_maps_are_seeded_per_map():
    cfg = SimulateConfig(size=32)
    e6, k6, r6 = sim.simulate_maps(cfg, range(6), 11)
    e2, k2, r2 = sim.simulate_maps(cfg, [3, 4], 11)
    assert e2.dtype == np.float32 and e2.shape == (2, 3, 32, 32) and k2.shape == (2, 32, 32)
    np.testing.assert_array_equal(e2, e6[3:5])
    np.testing.assert_array_equal(k2, k6[3:5])
    assert r2 == r6[3:5] and [r["id"] for r in r2] == [3, 4]
    assert [r["seed"] for r in r6] == [sim.map_seed(11, i) for i in range(6)] and len({r["seed"] for r in r6}) == 6
    assert set(r6[0]) == set(sim.TRUTH_COLUMNS)
    e, k, _ = sim.simulate_maps(cfg, [3, 4], 12)
    assert not np.array_equal(k, k2) and not np.array_equal(e, e2)
    assert not np.array_equal(k6[3], k6[4])


# ---------------------------------------------------------------- the command


def _set(ws, name):
    return ws / "lens" / "kappa" / "sims" / name


def _files(root):
    return {f"{sub}/{p.name}": p for sub in ("EPSILON", "KAPPA") for p in sorted((root / sub).glob("*.npy"))}


def _check_set(root, cfg, n, seed):
    import pyarrow.parquet as pq

    eps, kap, rows = sim.simulate_maps(cfg, range(n), seed)
    files = _files(root)
    assert sorted(files) == [f"{s}/{i:05d}.npy" for s in ("EPSILON", "KAPPA") for i in range(n)]
    for i in range(n):
        e = np.load(root / "EPSILON" / f"{i:05d}.npy")
        k = np.load(root / "KAPPA" / f"{i:05d}.npy")
        assert e.dtype == k.dtype == np.float16 and e.shape == (3, cfg.size, cfg.size)
        assert k.shape == (cfg.size, cfg.size)
        np.testing.assert_array_equal(e, eps[i].astype(np.float16))
        np.testing.assert_array_equal(k, kap[i].astype(np.float16))
    t = pq.read_table(root / "truth.parquet").to_pydict()
    assert set(t) == {*sim.TRUTH_COLUMNS, "name"} and len(t["id"]) == n
    assert t["name"] == [f"{i:05d}" for i in range(n)] and t["id"] == list(range(n))
    for c in sim.TRUTH_COLUMNS:
        assert t[c] == pytest.approx([r[c] for r in rows], rel=1e-12), c
    from astropy import units as u
    from astropy.table import Table

    t = Table.read(root / "truth.parquet")   # units and descriptions read back in astropy
    assert t["sigma_crit"].unit == u.solMass / u.Mpc ** 2 and t["x"].unit == u.pix
    assert not [c for c in t.colnames if not t[c].description]


def test_simulate_command_layout_resume_and_refusals(tmp_path, capsys):
    ws = tmp_path / "ws"
    cfg = SimulateConfig(size=32)
    base = ["-w", ws, "-q", "--seed", 5, "lens", "kappa", "simulate", "--size", 32]
    code, out, err = run(capsys, *base, "--name", "s", "-n", 7, "--chunk-size", 3)
    assert code == 0, err
    res = json.loads(out)
    assert res["n"] == 7 and res["new"] == 7 and res["skipped"] == 0 and res["seed"] == 5
    root = _set(ws, "s")
    _check_set(root, cfg, 7, 5)
    assert json.loads((root / "simulate_settings.json").read_text())["seed"] == 5
    first = {k: p.read_bytes() for k, p in _files(root).items()}

    # the grouping of maps into chunks and the worker count do not change a byte
    for name, jobs in (("s2", []), ("s3", ["-j", 2])):
        code, out, err = run(capsys, *jobs, *base, "--name", name, "-n", 7, "--chunk-size", 2)
        assert code == 0, err
        assert {k: p.read_bytes() for k, p in _files(_set(ws, name)).items()} == first, name

    # a rerun skips every chunk and leaves the files alone
    mtimes = {k: p.stat().st_mtime_ns for k, p in _files(root).items()}
    code, out, err = run(capsys, *base, "--name", "s", "-n", 7, "--chunk-size", 3)
    assert code == 0, err
    res = json.loads(out)
    assert res["skipped"] == 7 and res["new"] == 0 and res["n"] == 7
    assert {k: p.stat().st_mtime_ns for k, p in _files(root).items()} == mtimes

    # packed by the set's name
    code, out, err = run(capsys, "-w", ws, "-q", "lens", "kappa", "data", "s", "--name", "d")
    assert code == 0, err
    assert json.loads(out)["n"] == 7

    # a larger n adds maps; the finished chunks are untouched
    code, out, err = run(capsys, *base, "--name", "s", "-n", 9, "--chunk-size", 3)
    assert code == 0, err
    res = json.loads(out)
    assert res["n"] == 9 and res["skipped"] == 6 and res["added"] == 2 and res["new"] == 3
    _check_set(root, cfg, 9, 5)
    after = {k: p.stat().st_mtime_ns for k, p in _files(root).items()}
    assert all(after[k] == v for k, v in mtimes.items() if not k.endswith("00006.npy"))
    assert (root / "KAPPA" / "00006.npy").read_bytes() == first["KAPPA/00006.npy"]
    assert sorted(p.name for p in (root / ".chunks").iterdir()) == [
        "00000-00002.json", "00003-00005.json", "00006-00008.json"]  # the old 00006-00006 marker is gone
    before = {k: p.read_bytes() for k, p in _files(root).items()}

    # other settings or fewer maps: refused (exit 2), the set kept
    code, out, err = run(capsys, *base, "--name", "s", "-n", 9, "--chunk-size", 3, "--n-gal", 10)
    assert code == 2 and "n_gal" in err and "--overwrite" in err
    code, out, err = run(capsys, *base, "--name", "s", "-n", 3, "--chunk-size", 3)
    assert code == 2 and "9 maps" in err and "-n 3" in err
    assert {k: p.read_bytes() for k, p in _files(root).items()} == before
    _check_set(root, cfg, 9, 5)

    # --overwrite draws the set again with the new settings
    code, out, err = run(capsys, "--overwrite", *base, "--name", "s", "-n", 4, "--n-gal", 10)
    assert code == 0, err
    assert json.loads(out)["new"] == 4
    _check_set(root, SimulateConfig(size=32, n_gal=10), 4, 5)
    assert json.loads((root / "simulate_settings.json").read_text())["n_gal"] == 10


def test_a_deleted_or_cut_map_redraws_its_chunk(tmp_path, capsys):
    ws = tmp_path / "ws"
    sim = ["-w", ws, "-q", "--seed", 5, "lens", "kappa", "simulate", "--size", 32, "--name", "s", "-n", 6,
           "--chunk-size", 3]
    assert run(capsys, *sim)[0] == 0
    root = _set(ws, "s")
    first = {k: p.read_bytes() for k, p in _files(root).items()}
    (root / "KAPPA" / "00004.npy").unlink()
    code, out, err = run(capsys, *sim)
    assert code == 0, err
    assert (json.loads(out)["new"], json.loads(out)["skipped"]) == (3, 3)
    assert {k: p.read_bytes() for k, p in _files(root).items()} == first   # the same maps again
    (root / "EPSILON" / "00001.npy").write_bytes(first["EPSILON/00001.npy"][:100])   # cut short
    code, out, err = run(capsys, *sim)
    assert code == 0, err
    assert (json.loads(out)["new"], json.loads(out)["skipped"]) == (3, 3)
    assert {k: p.read_bytes() for k, p in _files(root).items()} == first


def test_a_failed_chunk_keeps_the_finished_ones(tmp_path, capsys):
    # a measurement error of 2e4 puts an empty pixel's Delta-epsilon (10 x 2e4) beyond float16:
    # exactly the maps with an empty pixel fail
    ws = tmp_path / "ws"
    cfg = SimulateConfig(size=32, sigma_meas=2e4, n_gal=183)
    with np.errstate(over="ignore"):
        eps, _, _ = sim.simulate_maps(cfg, range(6), 0)
        ok = [bool(np.isfinite(e.astype(np.float16)).all()) for e in eps]
    chunks = [(0, 1), (2, 3), (4, 5)]
    done = [ok[a] and ok[b] for a, b in chunks]
    assert any(done) and not all(done)  # the fixture fails some chunks, not all
    args = ["-w", ws, "-q", "--seed", 0, "--set", "lens.kappa.simulate.sigma_meas=20000", "lens", "kappa",
            "simulate", "--name", "f", "-n", 6, "--size", 32, "--n-gal", 183, "--chunk-size", 2]
    with np.errstate(over="ignore"):
        code, out, err = run(capsys, *args)
    assert code == 2 and "not finite in float16" in err and "finished ones stay" in err
    assert err.count("not finite in float16") == done.count(False)  # each failed chunk said once
    root = _set(ws, "f")
    assert not (root / "truth.parquet").exists()
    markers = sorted(p.name for p in (root / ".chunks").iterdir())
    assert markers == [f"{a:05d}-{b:05d}.json" for (a, b), d in zip(chunks, done) if d]
    for (a, b), d in zip(chunks, done):
        if d:
            for i in (a, b):
                np.testing.assert_array_equal(np.load(root / "EPSILON" / f"{i:05d}.npy"), eps[i].astype(np.float16))
    finished = {f"{i:05d}.npy" for (a, b), d in zip(chunks, done) if d for i in (a, b)}
    mtimes = {k: p.stat().st_mtime_ns for k, p in _files(root).items() if k.split("/")[1] in finished}
    assert len(mtimes) == 2 * len(finished)
    with np.errstate(over="ignore"):
        code, out, err = run(capsys, *args)  # the rerun resumes: the finished chunks are not redrawn
    assert code == 2 and "finished ones stay" in err
    assert {k: p.stat().st_mtime_ns for k, p in _files(root).items() if k in mtimes} == mtimes


def test_data_repacks_a_redrawn_set_and_refuses_an_unfinished_one(tmp_path, capsys):
    ws = tmp_path / "ws"
    sim = ["-w", ws, "-q", "--seed", 5, "lens", "kappa", "simulate", "--name", "s", "-n", 6, "--size", 32]
    pack = ["-w", ws, "-q", "lens", "kappa", "data", "s", "--name", "d", "--shard-size", 3]
    assert run(capsys, *sim)[0] == 0
    code, out, err = run(capsys, *pack)
    assert code == 0 and json.loads(out)["skipped_shards"] == 0, err
    assert json.loads(run(capsys, *pack)[1])["skipped_shards"] == 2  # nothing changed: both shards kept
    # drawn again with other settings under the same names: the packed maps must follow
    assert run(capsys, "--overwrite", *sim, "--n-gal", 5)[0] == 0
    code, out, err = run(capsys, *pack)
    assert code == 0 and json.loads(out)["skipped_shards"] == 0, err
    from astrotool_lens.kappa.data import KappaDataset

    ds = KappaDataset(ws / "lens" / "kappa" / "data" / "d")
    i = list(ds.names).index("00004")
    packed = ds.read(np.array([i]))["epsilon"][0]
    assert np.array_equal(packed, np.load(_set(ws, "s") / "EPSILON" / "00004.npy"))
    # a simulated set whose run did not finish is not packed as if it were whole
    (_set(ws, "s") / "truth.parquet").unlink()
    code, _, err = run(capsys, *pack)
    assert code == 2 and "has not finished" in err and "--name s" in err
    assert "simulate_settings.json)" in " ".join(err.split())   # where the settings it needs are (not "the same")


@pytest.mark.parametrize("bad, message", [({"z_lens": (1.2, 1.5)}, "behind the sources"),
                                          ({"log10_mass": (15.0, 14.0)}, "lower bound 15.0 > upper bound 14.0"),
                                          ({"sigma_e": 3.0}, "less than 1"),
                                          ({"n_gal": 1e9}, "less than or equal to 10000"),
                                          ({"size": 8192}, "less than or equal to 2048"),
                                          ({"size": 2048, "n_gal": 100}, "1.68e.07 galaxies per map")])
def test_unphysical_settings_are_refused(bad, message):
    import pydantic

    with pytest.raises(pydantic.ValidationError, match=message):
        SimulateConfig(**bad)


def test_settings_that_would_not_fit_in_memory_are_refused_naming_the_key(tmp_path, capsys):
    import pydantic

    SimulateConfig(size=2048)   # the largest side, with the default density
    cfg = SimulateConfig(n_gal=9000)
    with pytest.raises(pydantic.ValidationError, match="galaxies per map"):
        cfg.size = 1024   # set after the density: checked too
    code, _, err = run(capsys, "-w", tmp_path / "ws", "lens", "kappa", "simulate", "--n-gal", "1e9", "-n", 2)
    assert code == 2 and "lens.kappa.simulate.n_gal" in err and "--n-gal" in err


def test_overwrite_draws_again_and_is_refused_with_shard(tmp_path, capsys):
    ws = tmp_path / "ws"
    sim = ["-w", ws, "-q", "--seed", 5, "lens", "kappa", "simulate", "--name", "s", "-n", 3, "--size", 32]
    assert run(capsys, *sim)[0] == 0
    code, out, err = run(capsys, "--overwrite", *sim)
    assert code == 0, err
    assert (json.loads(out)["new"], json.loads(out)["skipped"]) == (3, 0)  # same settings, drawn again
    code, _, err = run(capsys, "--overwrite", "--shard", "1/2", *sim)
    assert code == 2 and "--overwrite with --shard" in err
    assert len(list((_set(ws, "s") / "KAPPA").glob("*.npy"))) == 3  # nothing cleared


def test_a_slurm_array_task_records_its_resolved_shard(tmp_path, capsys, monkeypatch):
    """--shard auto in task 3 of an array 2-5: the summary says 1/4, not 'auto'."""
    for key, value in {"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_MIN": "2", "SLURM_ARRAY_TASK_MAX": "5",
                       "SLURM_ARRAY_TASK_STEP": "1", "SLURM_ARRAY_TASK_COUNT": "4"}.items():
        monkeypatch.setenv(key, value)
    ws = tmp_path / "ws"
    code, out, err = run(capsys, "-w", ws, "-q", "--shard", "auto", "lens", "kappa", "simulate", "--name", "s",
                         "-n", 4, "--size", 32, "--chunk-size", 1)
    assert code == 0, err
    assert json.loads(out)["shard"] == "1/4" and json.loads(out)["new"] == 1
    assert len(list((_set(ws, "s") / "KAPPA").glob("*.npy"))) == 1  # the map of chunk 1 only


def test_the_last_shard_task_to_finish_writes_the_truth_table(tmp_path, capsys):
    ws = tmp_path / "ws"
    sim = ["lens", "kappa", "simulate", "--name", "s", "-n", 4, "--size", 32, "--chunk-size", 1]
    code, out, err = run(capsys, "-w", ws, "--shard", "0/2", *sim)
    assert code == 0, err
    assert (json.loads(out)["new"], json.loads(out)["missing"]) == (2, 2) and "2 of 4 maps missing" in err
    assert not (_set(ws, "s") / "truth.parquet").exists()
    code, out, err = run(capsys, "-w", ws, "-q", "--shard", "1/2", *sim)
    assert code == 0, err
    res = json.loads(out)
    assert (res["n"], res["new"], res["skipped"], res["missing"], res["shard"]) == (4, 2, 0, 0, "1/2")
    assert (_set(ws, "s") / "truth.parquet").exists()
    _check_set(_set(ws, "s"), SimulateConfig(size=32), 4, json.loads(
        (_set(ws, "s") / "simulate_settings.json").read_text())["seed"])


def test_truth_table_units_and_descriptions_are_in_its_metadata(tmp_path, capsys):
    """mean_n_gal (galaxies per pixel) had no unit in truth.parquet's metadata."""
    from astropy import units as u
    from astropy.table import Table

    from astrotool.io.tables import parquet_metadata

    ws = tmp_path / "ws"
    code, _, err = run(capsys, "-w", ws, "-q", "lens", "kappa", "simulate", "--name", "s", "-n", 2, "--size", 16)
    assert code == 0, err
    t = Table.read(_set(ws, "s") / "truth.parquet")
    assert t.colnames == [*sim.TRUTH_COLUMNS, "name"]
    assert t["sigma_crit"].unit == u.solMass / u.Mpc ** 2 and t["x"].unit == t["y"].unit == u.pix
    assert t["mean_n_gal"].unit == 1 / u.pix
    assert all(t[c].unit is None for c in ("kappa_min", "kappa_max", "z_lens", "n_halos", "log10_mass"))
    assert {c: t[c].description for c in t.colnames} == sim.TRUTH_DESCRIPTIONS
    assert parquet_metadata(_set(ws, "s") / "truth.parquet")["n"] == 2


def test_a_fresh_set_holding_only_another_tasks_layout_is_taken(tmp_path, capsys):
    ws = tmp_path / "ws"
    (ws / "lens" / "kappa" / "sims" / "krace" / "KAPPA").mkdir(parents=True)   # task 1 got here first
    code = main(["--json", "-w", str(ws), "-q", "--shard", "0/2", "lens", "kappa", "simulate", "--size", "32",
                 "--name", "krace", "-n", "4", "--chunk-size", "2"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert json.loads(out.out)["missing"] == 2


def test_a_folder_of_other_files_is_still_refused(tmp_path, capsys):
    ws = tmp_path / "ws"
    (ws / "lens" / "kappa" / "sims" / "other").mkdir(parents=True)
    (ws / "lens" / "kappa" / "sims" / "other" / "notes.txt").write_text("mine")
    code = main(["-w", str(ws), "-q", "lens", "kappa", "simulate", "--size", "32", "--name", "other", "-n", "2"])
    assert code == 2 and "exists without" in capsys.readouterr().err


def test_a_record_claimed_by_another_task_in_between_is_compared(tmp_path, capsys, monkeypatch):
    from astrotool_lens.kappa import simulate

    ws = tmp_path / "ws"
    out = ws / "lens" / "kappa" / "sims" / "kr2"
    (out / "KAPPA").mkdir(parents=True)
    real = simulate._own_layout

    def claimed(folder):   # another task writes its record right after this one looked
        (folder / simulate.SETTINGS_FILE).write_text(json.dumps({"size": 64, "seed": 99}))
        return real(folder)

    monkeypatch.setattr(simulate, "_own_layout", claimed)
    code = main(["-w", str(ws), "-q", "lens", "kappa", "simulate", "--size", "32", "--name", "kr2", "-n", "2"])
    assert code == 2 and "another task" in capsys.readouterr().err
    assert json.loads((out / simulate.SETTINGS_FILE).read_text())["seed"] == 99
