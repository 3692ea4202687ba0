"""The kappa U-Net: spin-2 augmentation, input channels, learning, training through the CLI, checkpoints."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from astrotool.cli import main
from astrotool.errors import InputError
from astrotool_lens.kappa.maps import d4_transform, kaiser_squires, shear_from_kappa
from astrotool_lens.kappa.model import augment, input_spec, load_unet, make_unet, model_inputs

# (e1, e2) signs of each element of d4_transform, from geometry: a mirror (x -> -x or y -> -y) turns
# a +45-degree ellipse into a -45-degree one (e2 -> -e2) and leaves the x/y stretch e1 alone; swapping
# x and y (transpose, anti-transpose) turns an x-stretch into a y-stretch (e1 -> -e1) and keeps the
# 45-degree axis; a quarter turn does both; a half turn maps every headless ellipse onto itself.
EXPECTED_SIGNS = {0: (1, 1), 1: (1, -1), 2: (1, -1), 3: (1, 1), 4: (-1, 1), 5: (-1, -1), 6: (-1, -1), 7: (-1, 1)}


def _field(n: int, size: int, seed: int, noise: float = 0.0):
    """(epsilon (n,3,S,S), kappa (n,S,S)) float64: a smooth random kappa, its shear, an error map."""
    rng = np.random.default_rng(seed)
    k = rng.normal(size=(n, size, size))
    f = np.fft.fft2(k) * np.exp(-0.5 * (np.hypot(*np.meshgrid(np.fft.fftfreq(size), np.fft.fftfreq(size))) / 0.08) ** 2)
    kappa = 0.05 * np.fft.ifft2(f).real / np.fft.ifft2(f).real.std()
    kappa += 0.2 * np.exp(-0.5 * ((np.arange(size)[:, None] - size * 0.4) ** 2 + (np.arange(size) - size * 0.6) ** 2)
                          / (size / 8) ** 2)
    g1, g2 = shear_from_kappa(kappa)
    de = np.full_like(g1, max(noise, 1e-3)) * (1 + rng.uniform(size=g1.shape))
    eps = np.stack([g1 + noise * rng.normal(size=g1.shape), g2 + noise * rng.normal(size=g1.shape), de], axis=1)
    return eps, kappa


# ---------------------------------------------------------------- augmentation


def test_augmentation_signs_per_element():
    """Uniform e1 = 0.3, e2 = 0.2 fields: each element's output signs are the geometric ones."""
    eps = np.zeros((1, 3, 8, 8))
    eps[:, 0], eps[:, 1], eps[:, 2] = 0.3, 0.2, 0.1
    spec = input_spec(["abs_e"], 0.0, 8, 1)
    x = model_inputs(eps, spec)
    for k, (s1, s2) in EXPECTED_SIGNS.items():
        xa, _ = augment(x, None, [k])
        assert np.allclose(xa[0, 0], 0.3 * s1) and np.allclose(xa[0, 1], 0.2 * s2), k
        assert np.allclose(xa[0, 2], 0.1) and np.allclose(xa[0, 3], np.hypot(0.3, 0.2)), k  # scalars unchanged


def test_augmented_pairs_stay_physical():
    """For all 8 elements: the transformed epsilon is the shear of the transformed kappa, and
    KS(transformed epsilon) equals the transformed KS map (so the ks channel transforms as a scalar)."""
    eps, kappa = _field(2, 32, seed=1)
    spec = input_spec(["ks", "abs_e"], 1.5, 32, 2)
    x = model_inputs(eps, spec)
    assert np.abs(x[:, 3]).max() > 0.01
    for k in range(8):
        xa, ka = augment(x, kappa.astype(np.float32), [k, k])
        g1, g2 = shear_from_kappa(ka)
        assert np.allclose(xa[:, 0], g1, atol=1e-6) and np.allclose(xa[:, 1], g2, atol=1e-6), k
        # the stack rebuilt from the transformed epsilon equals the transformed stack, channel by channel
        assert np.allclose(model_inputs(xa[:, :3], spec), xa, atol=1e-6), k
        ks_direct = kaiser_squires(xa[:, 0], xa[:, 1], 1.5)[0]
        assert np.allclose(ks_direct, d4_transform(x[:, 3], k), atol=1e-6), k
        assert np.array_equal(ka, d4_transform(kappa.astype(np.float32), k))
    # the competitor's augmentation (flip the maps, keep the signs) breaks the pairing
    bad = np.flip(x, -1)
    g1, g2 = shear_from_kappa(np.flip(kappa, -1))
    assert np.allclose(bad[:, 0], g1, atol=1e-6) and not np.allclose(bad[:, 1], g2, atol=1e-3)


def test_augment_mixes_elements_within_a_batch():
    eps, kappa = _field(3, 16, seed=2)
    x = model_inputs(eps, input_spec([], 0.0, 16, 1))
    xa, ka = augment(x, kappa, [0, 5, 1])
    assert np.array_equal(xa[0], x[0]) and np.array_equal(ka[0], kappa[0])
    assert np.allclose(xa[1, :2], -d4_transform(x[1, :2], 5)) and np.allclose(ka[1], d4_transform(kappa[1], 5))
    assert np.allclose(xa[2, 1], -d4_transform(x[2, 1], 1)) and np.allclose(xa[2, 0], d4_transform(x[2, 0], 1))
    assert np.array_equal(x, model_inputs(eps, input_spec([], 0.0, 16, 1)))  # inputs untouched


# ---------------------------------------------------------------- inputs


def test_model_inputs_channels_in_order():
    eps, _ = _field(2, 16, seed=3, noise=0.1)
    e16 = eps.astype(np.float16)
    x = model_inputs(e16, input_spec([], 0.0, 16, 2))
    assert x.shape == (2, 3, 16, 16) and x.dtype == np.float32 and np.array_equal(x, e16.astype(np.float32))
    spec = input_spec(["abs_e", "ks"], 2.0, 16, 2)
    assert spec["channels"] == ["e1", "e2", "de", "abs_e", "ks"]
    x = model_inputs(e16, spec)
    assert x.shape == (2, 5, 16, 16)
    e = e16.astype(np.float64)
    assert np.allclose(x[:, 3], np.hypot(e[:, 0], e[:, 1]), rtol=1e-6)
    assert np.allclose(x[:, 4], kaiser_squires(e[:, 0], e[:, 1], 2.0)[0], atol=1e-7)
    assert np.array_equal(model_inputs(e16, {"inputs": spec}), x)  # a checkpoint's meta works too
    with pytest.raises(ValueError, match="unknown extra input"):
        input_spec(["gradient"], 0.0, 16, 2)
    with pytest.raises(InputError, match="divisible by 8"):
        model_inputs(np.zeros((1, 3, 12, 12)), input_spec([], 0.0, 12, 3), source="maps.npy")
    with pytest.raises(InputError, match=r"\(n, 3, S, S\)"):
        model_inputs(np.zeros((1, 2, 16, 16)), spec)


def test_model_module_does_not_import_torch():
    code = ("import sys, astrotool_lens.kappa.model, astrotool_lens.kappa.train; "
            "sys.exit(1 if 'torch' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


# ---------------------------------------------------------------- learning


def test_unet_overfits_eight_maps():
    """Full-batch Adam on 8 maps: the loss falls at least tenfold."""
    torch.manual_seed(0)
    eps, kappa = _field(8, 32, seed=4, noise=0.05)
    spec = input_spec(["ks"], 1.0, 32, 2)
    x = torch.from_numpy(model_inputs(eps, spec))
    y = torch.from_numpy(kappa.astype(np.float32))
    net = make_unet(in_channels=4, width=8, depth=2)
    with torch.no_grad():
        net.input_scale.copy_(x.std(dim=(0, 2, 3)))
        net.target_shift.fill_(float(y.mean()))
        net.target_scale.fill_(float(y.std()))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(150):
        opt.zero_grad()
        loss = torch.mean(((net(x) - y) / net.target_scale) ** 2)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0] / 10, (losses[0], losses[-1])
    net.eval()
    assert net(x).shape == (8, 32, 32)


# ---------------------------------------------------------------- the command


def _pack(root, n: int = 24, size: int = 32):
    from astrotool.ml.data import DatasetWriter

    eps, kappa = _field(n, size, seed=5, noise=0.05)
    split = np.array(["train"] * 16 + ["val"] * 4 + ["test"] * (n - 20))
    names = np.array([f"{i:05d}" for i in range(n)])
    w = DatasetWriter(str(root), root.name, kind="kappa-maps")
    for s, a in enumerate((0, n // 2)):
        b = a + n // 2
        w.write_shard(s, a, {"epsilon": eps[a:b].astype(np.float16), "kappa": kappa[a:b].astype(np.float16)},
                      {"name": names[a:b], "split": split[a:b]})
    w.finalize(2)
    return eps.astype(np.float16), kappa.astype(np.float16), split


def _run(capsys, *args):
    code = main(["--json", *(str(a) for a in args)])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_train_resume_refuse_and_load(tmp_path, capsys):
    ws = tmp_path / "ws"
    eps, kappa, split = _pack(ws / "lens" / "kappa" / "data" / "tiny")
    base = ["-w", ws, "-q", "lens", "kappa", "train", "--dataset", "tiny", "--width", 4, "--depth", 2,
            "--batch-size", 8, "--device", "cpu"]
    code, out, err = _run(capsys, *base, "--epochs", 1)
    assert code == 0, err
    res = json.loads(out)
    assert res["model"] == "tiny_unet" and res["epochs_total"] == 1 and res["n_train"] == 16 and res["n_val"] == 4
    assert {"val_loss", "val_mse", "val_pearson"} <= set(res) and res["val_mse"] > 0
    with open(res["history_plot"], "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
    mdir = ws / "lens" / "kappa" / "models" / "tiny_unet"
    meta = json.loads((mdir / "model.json").read_text())
    assert meta["inputs"]["channels"] == ["e1", "e2", "de", "ks"] and meta["inputs"]["size"] == 32
    assert meta["architecture"]["kwargs"]["in_channels"] == 4
    norm = meta["normalisation"]
    assert norm["input_shift"][:2] == [0.0, 0.0] and norm["input_shift"][3] == 0.0  # spin-2 and KS: not shifted
    train_kappa = kappa[split == "train"].astype(np.float64)
    assert norm["target_shift"] == pytest.approx(train_kappa.mean(), rel=1e-6)
    assert norm["target_scale"] == pytest.approx(train_kappa.std(), rel=1e-5)

    # more epochs: the run continues from epoch 1
    code, out, err = _run(capsys, *base, "--epochs", 2)
    assert code == 0, err
    res = json.loads(out)
    assert res["resumed_from"] == 1 and res["epochs_run"] == 1 and res["epochs_total"] == 2
    # the summary's best_epoch counts from 1 as the log does; model.json's and the history's from 0
    meta = json.loads((mdir / "model.json").read_text())
    assert res["best_epoch"] == meta["best_epoch"] + 1 in (1, 2)
    assert res["val_loss"] == next(h["val_loss"] for h in meta["history"] if h["epoch"] == meta["best_epoch"])
    # another width: refused, naming the key, the model left as it was
    before = (mdir / "model.safetensors").read_bytes()
    code, out, err = _run(capsys, *base[:-8], "--width", 8, "--depth", 2, "--batch-size", 8, "--device", "cpu",
                          "--epochs", 3)
    assert code == 2 and "width: 4 -> 8" in err, err
    assert (mdir / "model.safetensors").read_bytes() == before
    # a side the U-Net cannot halve that often
    code, _, err = _run(capsys, *base, "--epochs", 1, "--depth", 6, "--model", "deep")
    assert code == 2 and "divisible by 2**depth = 64" in err, err

    # load_unet: eval mode, raw stack in, (n, S, S) kappa out; a saved copy predicts identically
    from astrotool.ml.checkpoint import save_checkpoint

    model, meta = load_unet(mdir)
    assert not model.training
    x = torch.from_numpy(model_inputs(eps[:5], meta))
    with torch.no_grad():
        y = model(x).numpy()
    assert y.shape == (5, 32, 32) and y.dtype == np.float32 and y.std() > 0
    save_checkpoint(tmp_path / "copy", model, {k: v for k, v in meta.items() if k != "weights_sha256"})
    again, meta2 = load_unet(tmp_path / "copy")
    with torch.no_grad():
        assert np.array_equal(again(x).numpy(), y)
    assert meta2["inputs"] == meta["inputs"]
    with pytest.raises(InputError, match="no such|missing|model.json"):
        load_unet(tmp_path / "nothing")


def test_maps_of_another_side_than_the_training_maps_are_refused():
    from astrotool_lens.kappa.model import input_spec, model_inputs

    spec = input_spec(["ks"], 2.0, size=32, depth=2)
    assert model_inputs(np.zeros((1, 3, 32, 32), np.float16), spec).shape == (1, 4, 32, 32)
    with pytest.raises(InputError, match="trained on 32x32 maps"):
        model_inputs(np.zeros((1, 3, 64, 64), np.float16), spec, source="big/EPSILON")


def test_train_help_lists_the_precision_default_among_its_choices(capsys, monkeypatch):
    """--precision listed ``32 | bf16-mixed | 16-mixed`` but showed ``[default: 32-true]``."""
    import re

    monkeypatch.setenv("COLUMNS", "300")
    monkeypatch.setenv("TERMINAL_WIDTH", "300")
    for cmd in (("lens", "kappa", "train"), ("lens", "train")):
        with contextlib.suppress(SystemExit):
            main([*cmd, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        m = re.search(r"--precision <str> (.+?) \(sets ml\.precision\) \[default: ([\w-]+)\]", text)
        assert m, text
        assert m.group(2) in [c.strip() for c in m.group(1).split("|")], m.group(0)


def test_an_input_channel_named_twice_is_a_configuration_error(tmp_path, capsys):
    """--extra-inputs ks,ks ran for 7 s, then stopped with a bare ValueError (exit 1)."""
    code = main(["-w", str(tmp_path / "ws"), "lens", "kappa", "train", "--dataset", "none", "--extra-inputs",
                 "ks,ks"])
    err = capsys.readouterr().err
    assert code == 2 and "lens.kappa.train.extra_inputs" in err and "each channel once, got ['ks', 'ks']" in err
