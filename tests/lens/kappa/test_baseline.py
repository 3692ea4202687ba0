"""Classical kappa reconstructions: KS against lenspack, the Wiener filter's known answer, zero/mean exactly, the command."""

from __future__ import annotations

import json
import shutil
import zipfile

import numpy as np
import pytest

from astrotool.cli import main
from astrotool_lens.kappa import baseline as bl
from astrotool_lens.kappa.maps import kaiser_squires, shear_from_kappa, wave_vectors


def run(capsys, *args):
    code = main(["--json", *(str(a) for a in args)])
    out = capsys.readouterr()
    return code, out.out, out.err


def spectrum(kabs):
    """A known kappa power spectrum [per |FFT|^2 / N convention]: red, with a cutoff."""
    return 1e-3 * (kabs + 0.02) ** -1.5 * np.exp(-(kabs / 0.2) ** 2)


def grf(n, size, rng):
    """Gaussian random fields of power :func:`spectrum` (zero mean: k = 0 left out)."""
    kabs = np.sqrt(wave_vectors((size, size))[2])
    amp = np.sqrt(spectrum(kabs))
    amp[0, 0] = 0.0
    w = rng.standard_normal((n, size, size))
    return np.fft.ifft2(np.fft.fft2(w) * amp).real


def observe(kappa, sigma_noise, rng, fill=None):
    """Epsilon maps (n, 3, S, S): shear of kappa plus white noise of sigma per component; de = sigma."""
    g1, g2 = shear_from_kappa(kappa)
    eps = np.stack([g1 + sigma_noise * rng.standard_normal(g1.shape),
                    g2 + sigma_noise * rng.standard_normal(g2.shape),
                    np.full(g1.shape, sigma_noise)], axis=1)
    if fill is not None:
        eps *= (rng.random(g1.shape) < fill)[:, None]
    return eps


def write_set(root, name, epsilon, kappa, splits):
    """A KappaDataset folder written with the core's DatasetWriter (one shard)."""
    from astrotool.ml.data import DatasetWriter
    from astrotool_lens.kappa.data import KIND

    n = len(epsilon)
    w = DatasetWriter(str(root / name), name, kind=KIND)
    arrays = {"epsilon": np.asarray(epsilon, np.float16)}
    if kappa is not None:
        arrays["kappa"] = np.asarray(kappa, np.float16)
    w.write_shard(0, 0, arrays, {"name": np.array([f"{i:05d}_{7 * i:05d}" for i in range(n)]),
                                 "split": np.asarray(splits)})
    w.finalize(1)
    return root / name


# ---------------------------------------------------------------- Kaiser-Squires against lenspack


def test_ks_equals_lenspack_ks93_on_band_limited_maps():
    from lenspack.image.inversion import ks93

    rng = np.random.default_rng(1)
    k1, k2, _ = wave_vectors((32, 32))
    nyq = (k1 == -0.5) | (k2 == -0.5)
    g1, g2 = (np.fft.ifft2(np.where(nyq, 0, np.fft.fft2(rng.standard_normal((32, 32))))).real for _ in range(2))
    ke, kb = kaiser_squires(g1, g2)
    le, lb = ks93(g1, g2)
    assert np.abs(ke - le).max() < 1e-12 and np.abs(kb - lb).max() < 1e-12
    assert np.abs(ke).max() > 0.1  # not a trivially small map


def test_ks_differs_from_ks93_only_on_the_nyquist_lines_for_white_noise():
    from lenspack.image.inversion import ks93

    rng = np.random.default_rng(2)
    g1, g2 = rng.standard_normal((2, 32, 32))
    d = np.fft.fft2(kaiser_squires(g1, g2)[0] - ks93(g1, g2)[0])
    k1, k2, _ = wave_vectors((32, 32))
    nyq = (k1 == -0.5) | (k2 == -0.5)
    assert np.abs(d[~nyq]).max() < 1e-10
    assert np.abs(d[nyq]).max() > 0.1  # ks93 keeps 2 k1 k2 there, maps.kaiser_squires sets it to 0


# ---------------------------------------------------------------- the Wiener filter


def test_wiener_filter_limits():
    p = np.array([[0.0, 1e6], [1e-6, 1.0]])
    w = bl.wiener_filter(p, noise=[1.0], fill=[1.0])[0]
    assert w[0, 0] == 0.0 and w[0, 1] == pytest.approx(1.0, abs=1e-5) and w[1, 0] < 1e-5
    assert w[1, 1] == pytest.approx(0.5)
    # fill f: the KS map's signal is ~ f kappa, so the filter tends to 1/f where the signal dominates
    assert bl.wiener_filter(p, [1.0], [0.5])[0, 0, 1] == pytest.approx(2.0, rel=1e-5)
    assert np.all(bl.wiener_filter(p, [1.0], [0.0]) == 0)  # a map without galaxies


def test_wiener_noise_from_the_error_map():
    eps = np.zeros((3, 3, 4, 4))
    eps[:, 0] = 0.01
    eps[0, 2] = 0.3
    eps[1, 2] = 2.6              # the simulator's sentinel for pixels without galaxies...
    eps[1, :2, 2:] = 0.0         # ...which hold epsilon = (0, 0): half the pixels are empty
    eps[1, 2, :2] = 0.2
    eps[1, 2, 0, 0] = 0.4
    eps[2, 2, :, :1] = 0.0       # de = 0 also marks an empty pixel
    eps[2, 2, :, 1:] = 0.1
    eps[2, 1, 0, 1] = 0.02
    eps[2, 0, 0, 1] = 0.0        # e1 = 0 alone is a pixel with galaxies
    noise, fill = bl.wiener_noise(eps.astype(np.float16))
    assert noise[0] == pytest.approx(0.09, rel=1e-3) and fill[0] == 1.0
    assert noise[1] == pytest.approx((7 * 0.04 + 0.16) / 8, rel=1e-3) and fill[1] == 0.5
    assert noise[2] == pytest.approx(0.01, rel=1e-3) and fill[2] == 0.75


def test_signal_power_2d_interpolates_the_rings():
    k = np.array([0.1, 0.2, 0.3, 0.4])
    p = np.array([np.nan, 4.0, 2.0, 1.0])  # an empty first ring is skipped
    grid = bl.signal_power_2d(k, p, (10, 10))
    kabs = np.sqrt(wave_vectors((10, 10))[2])
    assert grid[0, 0] == 0
    at = lambda k: grid[np.isclose(kabs, k)][0]  # noqa: E731
    assert at(0.2) == pytest.approx(4.0) and at(0.3) == pytest.approx(2.0)
    assert at(0.1) == pytest.approx(4.0)                      # held below the first finite ring
    assert grid[(kabs > 0.49)].min() == pytest.approx(1.0)    # and beyond the last
    assert at(np.hypot(0.2, 0.1)) == pytest.approx(4.0 * 0.5 ** ((np.hypot(0.2, 0.1) - 0.2) / 0.1))  # linear in log P


def test_wiener_beats_every_ks_smoothing_on_a_gaussian_field():
    """For a Gaussian field of known spectrum plus white noise the Wiener filter is the optimal linear estimate."""
    rng = np.random.default_rng(3)
    size, sigma_noise = 64, 0.2
    train = grf(32, size, rng)
    k, p, n = bl.signal_power(iter(np.array_split(train, 4)))
    assert n == 32
    signal_2d = bl.signal_power_2d(k, p, (size, size))
    # the estimate follows the known spectrum on the rings (within the scatter of 32 maps)
    ok = np.isfinite(p) & (k < 0.3)
    assert np.median(np.abs(p[ok] / spectrum(k[ok]) - 1)) < 0.15
    truth = grf(24, size, rng)
    eps = observe(truth, sigma_noise, rng)
    wiener, extra = bl.reconstruct(eps, "wiener", signal_2d=signal_2d)
    assert extra["noise"] == pytest.approx(np.full(24, sigma_noise**2))
    assert extra["b_power"].mean() / sigma_noise**2 == pytest.approx(1.0, abs=0.05)  # B modes: pure noise
    mse_w = np.mean((wiener - truth) ** 2)
    mse_ks = {s: np.mean((bl.reconstruct(eps, "ks", s)[0] - truth) ** 2) for s in (0, 0.5, 1, 1.5, 2, 2.5, 3, 4, 6)}
    best = min(mse_ks.values())
    assert mse_w < best, (mse_w, mse_ks)
    assert mse_w < 0.97 * best  # not a tie: a Gaussian is not the optimal filter's shape
    kabs = np.sqrt(wave_vectors((size, size))[2])
    exact = bl.reconstruct(eps, "wiener", signal_2d=np.where(kabs > 0, spectrum(kabs), 0.0))[0]
    assert mse_w < 1.01 * np.mean((exact - truth) ** 2)  # estimating the spectrum from 32 maps costs < 1%


def test_zero_and_mean_reconstructions_are_exact():
    eps = np.ones((3, 3, 8, 8))
    assert np.all(bl.reconstruct(eps, "zero")[0] == 0)
    m = np.arange(64.0).reshape(8, 8)
    out = bl.reconstruct(eps, "mean", mean=m)[0]
    assert out.shape == (3, 8, 8) and np.all(out == m)
    mean, n = bl.mean_map(iter([np.ones((2, 8, 8)), np.full((1, 8, 8), 4.0)]))
    assert n == 3 and np.all(mean == 2.0)


def test_default_run_names():
    assert bl.default_run_name("sims", "ks", 2.0) == "sims_ks2"
    assert bl.default_run_name("sims", "ks", 1.5) == "sims_ks1.5"
    assert bl.default_run_name("sims", "wiener", 2.0) == "sims_wiener"


# ---------------------------------------------------------------- the command


@pytest.fixture()
def workspace(tmp_path):
    rng = np.random.default_rng(4)
    n, size = 24, 32
    kappa = grf(n, size, rng) + 0.02
    eps = observe(kappa, 0.1, rng, fill=0.8)
    splits = ["train"] * 16 + ["val"] * 2 + ["test"] * 6
    ws = tmp_path / "ws"
    write_set(ws / "lens" / "kappa" / "data", "tiny", eps, kappa, splits)
    return ws, np.asarray(eps, np.float16), np.asarray(kappa, np.float16)


def _maps(folder):
    return {p.stem: np.load(p) for p in sorted(folder.glob("*.npy"))}


def test_baseline_command_zero_mean_ks(workspace, capsys):
    ws, eps, kappa = workspace
    names = [f"{i:05d}_{7 * i:05d}" for i in range(24)]
    pred = ws / "lens" / "kappa" / "predictions"

    code, out, err = run(capsys, "-w", ws, "-q", "lens", "kappa", "baseline", "--dataset", "tiny", "--method", "zero")
    assert code == 0, err
    res = json.loads(out)
    assert res["n"] == 6 and res["computed"] == 6 and res["output"].endswith("tiny_zero")
    maps = _maps(pred / "tiny_zero")
    assert sorted(maps) == names[18:]                        # the test split, by name
    assert all(m.dtype == np.float16 and m.shape == (32, 32) and not m.any() for m in maps.values())
    with zipfile.ZipFile(pred / "tiny_zero.zip") as zf:     # the upload: the same files at the top level
        assert sorted(zf.namelist()) == sorted(f"{k}.npy" for k in maps)
        for k, m in maps.items():
            assert zf.read(f"{k}.npy") == (pred / "tiny_zero" / f"{k}.npy").read_bytes()
    info = json.loads((pred / "tiny_zero" / "prediction.json").read_text())
    assert info["complete"] and info["made_by"]["method"] == "zero" and info["made_by"]["n"] == 6

    code, out, err = run(capsys, "-w", ws, "-q", "lens", "kappa", "baseline", "--dataset", "tiny", "--method", "mean")
    assert code == 0, err
    expect = kappa[:16].astype(np.float64).mean(axis=0).astype(np.float16)
    assert all(np.array_equal(m, expect) for m in _maps(pred / "tiny_mean").values())

    code, out, err = run(capsys, "-w", ws, "-q", "lens", "kappa", "baseline", "--dataset", "tiny", "--method", "ks",
                         "--sigma", 1.5, "--split", "val")
    assert code == 0, err
    maps = _maps(pred / "tiny_ks1.5")
    expect = kaiser_squires(eps[16:18, 0], eps[16:18, 1], 1.5)[0].astype(np.float16)
    assert sorted(maps) == names[16:18] and np.array_equal(np.stack([maps[k] for k in names[16:18]]), expect)
    assert json.loads(out)["maps_per_s"] > 0

    # again: everything kept; a lost map is recomputed alone
    (pred / "tiny_ks1.5" / f"{names[17]}.npy").unlink()
    code, out, err = run(capsys, "-w", ws, "-q", "lens", "kappa", "baseline", "--dataset", "tiny", "--method", "ks",
                         "--sigma", 1.5, "--split", "val")
    assert code == 0, err
    assert (json.loads(out)["computed"], json.loads(out)["kept"]) == (1, 1)
    assert np.array_equal(np.load(pred / "tiny_ks1.5" / f"{names[17]}.npy"), expect[1])

    # other settings into the same run: refused with the key named, unless --overwrite
    code, out, err = run(capsys, "-w", ws, "-q", "lens", "kappa", "baseline", "--dataset", "tiny", "--method", "ks",
                         "--sigma", 3, "--split", "val", "--output", "tiny_ks1.5")
    assert code == 2 and "settings.sigma: 1.5 -> 3.0" in err
    code, out, err = run(capsys, "-w", ws, "-q", "--overwrite", "lens", "kappa", "baseline", "--dataset", "tiny",
                         "--method", "ks", "--sigma", 3, "--split", "val", "--output", "tiny_ks1.5")
    assert code == 0, err
    assert json.loads(out)["computed"] == 2


def test_baseline_command_wiener_and_errors(workspace, capsys):
    ws, eps, kappa = workspace
    pred = ws / "lens" / "kappa" / "predictions"
    code, out, err = run(capsys, "-w", ws, "-q", "lens", "kappa", "baseline", "--dataset", "tiny", "--method",
                         "wiener", "--no-zip")
    assert code == 0, err
    res = json.loads(out)
    assert res["train_maps"] == 16 and res["zip"] is None and not (pred / "tiny_wiener.zip").exists()
    # de is the per-component noise and 20% of the pixels are empty: the B modes agree with f * mean(de^2)
    assert res["noise_b_ratio"] == pytest.approx(1.0, abs=0.1)
    assert res["noise_power_mean"] == pytest.approx(0.8 * 0.1**2, rel=0.1)
    maps = _maps(pred / "tiny_wiener")
    assert len(maps) == 6 and all(np.isfinite(m).all() and m.any() for m in maps.values())

    code, _, err = run(capsys, "-w", ws, "-q", "lens", "kappa", "baseline", "--dataset", "nope", "--method", "ks")
    assert code == 2 and "no dataset named 'nope'" in err
    # an input-only set has no training kappa for the Wiener spectrum
    write_set(ws / "lens" / "kappa" / "data", "inputs", eps[:4], None, ["test"] * 4)
    code, _, err = run(capsys, "-w", ws, "-q", "lens", "kappa", "baseline", "--dataset", "inputs", "--method", "wiener")
    assert code == 2 and "holds no kappa maps" in err
    code, out, err = run(capsys, "-w", ws, "-q", "lens", "kappa", "baseline", "--dataset", "inputs", "--method",
                         "wiener", "--train-dataset", "tiny")
    assert code == 0, err
    assert json.loads(out)["n"] == 4
    code, _, err = run(capsys, "-w", ws, "-q", "lens", "kappa", "baseline", "--dataset", "inputs", "--method", "ks",
                       "--split", "train")
    assert code == 2 and "no maps in split 'train'" in err


def test_baseline_overwrite_keeps_the_finished_run_when_the_new_one_fails(workspace, capsys):
    ws, eps, kappa = workspace
    bad = eps.copy()
    bad[20, 0, 5, 5] = np.nan   # a test map
    write_set(ws / "lens" / "kappa" / "data", "badtest", bad, kappa, ["train"] * 16 + ["val"] * 2 + ["test"] * 6)
    pred = ws / "lens" / "kappa" / "predictions"
    args = ("-w", ws, "-q", "lens", "kappa", "baseline", "--dataset", "badtest", "--method", "ks", "--name", "keep")
    code, out, err = run(capsys, *args, "--split", "val")
    assert code == 0, err
    before = {p.name: p.read_bytes() for p in (pred / "keep").iterdir()}
    zip_before = (pred / "keep.zip").read_bytes()
    code, out, err = run(capsys, "--overwrite", *args, "--split", "test")
    assert code == 2 and "NaN" in err and "kept as it was" in err, err
    assert {p.name: p.read_bytes() for p in (pred / "keep").iterdir()} == before
    assert (pred / "keep.zip").read_bytes() == zip_before
    assert not [p for p in pred.iterdir() if p.name.startswith(".keep")]


def test_baseline_under_shard_computes_its_share_and_the_last_task_completes_the_run(workspace, capsys):
    ws, eps, kappa = workspace
    pred = ws / "lens" / "kappa" / "predictions"
    args = ("lens", "kappa", "baseline", "--dataset", "tiny", "--method", "ks", "--name", "shk")
    code, out, err = run(capsys, "-w", ws, "--shard", "0/2", *args)
    assert code == 0, err
    res = json.loads(out)
    assert (res["computed"], res["missing"], res["shard"], res["zip"]) == (3, 3, "0/2", None)
    assert "3 of 6 maps missing" in err
    assert not json.loads((pred / "shk" / "prediction.json").read_text())["complete"]
    assert not (pred / "shk.zip").exists()
    code, out, err = run(capsys, "-w", ws, "--shard", "1/2", *args)
    assert code == 0, err
    res = json.loads(out)
    assert (res["computed"], res["missing"]) == (3, 0) and res["zip"]
    assert json.loads((pred / "shk" / "prediction.json").read_text())["complete"]
    assert len(list((pred / "shk").glob("*.npy"))) == 6
    code, _, err = run(capsys, "-w", ws, "--overwrite", "--shard", "1/2", *args)
    assert code == 2 and "--shard" in err


def test_messages_name_the_folder_given_and_the_commands_own_option(workspace, capsys, tmp_path, monkeypatch):
    ws, eps, kappa = workspace
    (tmp_path / "datathon" / "train" / "EPSILON").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, "-w", ws, "lens", "kappa", "baseline", "--dataset", "./datathon/train", "--method", "ks")
    assert code == 2 and "./datathon/train: a folder, not a packed data set" in err, err
    assert "lens kappa data ./datathon/train --name NAME`" in err and "lens/kappa/data/datathon" not in err
    assert "`astro -w ws lens kappa data ./datathon/train --name NAME`" in err   # ws: relative to the folder here
    code, _, err = run(capsys, "-w", ws, "lens", "kappa", "baseline", "--dataset", "./datathon/nothere", "--method",
                       "ks")
    assert code == 2 and "./datathon/nothere: no such folder" in err, err
    code, _, err = run(capsys, "-w", ws, "lens", "kappa", "baseline", "--dataset", "tiny", "--method", "wiener",
                       "--train-dataset", "./datathon/train")
    assert code == 2 and "then give --train-dataset NAME" in err, err
    write_set(ws / "lens" / "kappa" / "data", "inonly", eps[:4], None, ["test"] * 4)
    code, _, err = run(capsys, "-w", ws, "lens", "kappa", "baseline", "--dataset", "inonly", "--method", "wiener")
    assert code == 2 and "--train-dataset NAME" in err and "--set" not in err, err


def test_wiener_refuses_maps_without_any_error_and_names_the_map(workspace, capsys):
    ws, eps, kappa = workspace
    free = np.array(eps, np.float32)
    free[:, 2] = 0.0          # noise-free ellipticities: no pixel with de > 0
    write_set(ws / "lens" / "kappa" / "data", "free", free, kappa, ["train"] * 16 + ["val"] * 2 + ["test"] * 6)
    code, out, err = run(capsys, "-w", ws, "-q", "lens", "kappa", "baseline", "--dataset", "free", "--method",
                         "wiener")
    assert code == 2 and out == ""
    assert "map '00018_00126'" in err and "no pixel with Δε > 0" in err and "use --method ks" in err
    assert "free" in err
    # an all-empty map (epsilon 0 everywhere) is no such case: its Wiener map is 0, like its KS map
    empty = np.array(eps, np.float32)
    empty[18] = 0.0
    write_set(ws / "lens" / "kappa" / "data", "holes", empty, kappa, ["train"] * 16 + ["val"] * 2 + ["test"] * 6)
    code, out, err = run(capsys, "-w", ws, "-q", "lens", "kappa", "baseline", "--dataset", "holes", "--method",
                         "wiener")
    assert code == 0, err
    assert not np.load(ws / "lens" / "kappa" / "predictions" / "holes_wiener" / "00018_00126.npy").any()


@pytest.mark.parametrize("method", ["wiener", "zero", "mean"])
def test_sigma_with_another_method_is_refused(workspace, capsys, method):
    ws = workspace[0]
    code, out, err = run(capsys, "-w", ws, "-q", "lens", "kappa", "baseline", "--dataset", "tiny", "--method",
                         method, "--sigma", 2)
    assert code == 2 and "--sigma applies to --method ks only" in err
    assert not (ws / "lens" / "kappa" / "predictions" / f"tiny_{method}").exists()


@pytest.mark.parametrize("method", ["ks", "zero"])
def test_train_dataset_with_a_method_that_uses_no_training_maps_is_refused(workspace, capsys, method):
    ws = workspace[0]
    code, out, err = run(capsys, "-w", ws, "-q", "lens", "kappa", "baseline", "--dataset", "tiny", "--method",
                         method, "--train-dataset", "tiny")
    assert code == 2 and "--train-dataset applies to --method wiener or mean only" in " ".join(err.split()), err
    assert not list((ws / "lens" / "kappa" / "predictions").glob(f"tiny_{method}*"))


def test_an_input_only_train_dataset_is_said_to_be_one(workspace, capsys):
    """--train-dataset naming an input-only set was told to "give one with --train-dataset NAME"."""
    ws, eps, _ = workspace
    write_set(ws / "lens" / "kappa" / "data", "dt_in", eps[:4], None, ["test"] * 4)
    for method in ("mean", "wiener"):
        code, _, err = run(capsys, "-w", ws, "-q", "lens", "kappa", "baseline", "--dataset", "tiny", "--method",
                           method, "--train-dataset", "dt_in")
        msg = " ".join(err.split())
        assert code == 2 and "dt_in" in msg and "holds no kappa maps" in msg, err
        assert "given with --train-dataset was packed from inputs alone" in msg, err
        assert "give one with --train-dataset NAME" not in msg, err
    # without --train-dataset, an input-only --dataset is still pointed to the option
    code, _, err = run(capsys, "-w", ws, "-q", "lens", "kappa", "baseline", "--dataset", "dt_in", "--method", "mean")
    assert code == 2 and "give one with --train-dataset NAME" in " ".join(err.split()), err


def test_score_refuses_a_run_predicted_from_the_data_set_before_it_was_packed_again(workspace, capsys):
    """A data set packed anew under its name (another simulation) paired its new true maps by name with a run
    predicted from the old ones, and scored them without a word."""
    ws, eps, kappa = workspace
    code, _, err = run(capsys, "-w", ws, "-q", "lens", "kappa", "baseline", "--dataset", "tiny", "--method", "ks")
    assert code == 0, err
    score = ["-w", ws, "-q", "lens", "kappa", "score", "tiny_ks2", "--truth", "tiny", "--no-plots"]
    code, _, err = run(capsys, *score)
    assert code == 0, err
    rng = np.random.default_rng(5)
    kappa = grf(24, 32, rng) + 0.02
    shutil.rmtree(ws / "lens" / "kappa" / "data" / "tiny")
    write_set(ws / "lens" / "kappa" / "data", "tiny", observe(kappa, 0.1, rng, fill=0.8), kappa,
              ["train"] * 16 + ["val"] * 2 + ["test"] * 6)
    code, _, err = run(capsys, *score, "--name", "again")
    assert code == 2 and "tiny_ks2: run tiny_ks2 was predicted from the data set tiny as it was (manifest " in err
    assert "predict again" in err and not (ws / "lens" / "kappa" / "reports" / "again_score.json").exists()
    # another data set as the truth: the same names, other maps (it scored them, exit 0); the same maps packed
    # under another name are the same data
    write_set(ws / "lens" / "kappa" / "data", "other", observe(kappa, 0.1, rng, fill=0.8), grf(24, 32, rng),
              ["train"] * 16 + ["val"] * 2 + ["test"] * 6)
    code, _, err = run(capsys, "-w", ws, "-q", "lens", "kappa", "score", "tiny_ks2", "--truth", "other",
                       "--no-plots", "--name", "cross")
    assert code == 2 and "run tiny_ks2 was predicted from the data set 'tiny', not from the truth 'other'" in \
        " ".join(err.split()) and "--truth tiny" in err, err
    shutil.copytree(ws / "lens" / "kappa" / "data" / "tiny", ws / "lens" / "kappa" / "data" / "twin")
    code, _, err = run(capsys, "-w", ws, "-q", "lens", "kappa", "baseline", "--dataset", "tiny", "--method", "ks",
                       "--overwrite")
    assert code == 0, err
    code, _, err = run(capsys, "-w", ws, "-q", "lens", "kappa", "score", "tiny_ks2", "--truth", "twin",
                       "--no-plots", "--name", "twin")
    assert code == 0, err
