"""Fixtures of the lens tests: one tiny easy dataset and one briefly trained CNN per session."""

from __future__ import annotations

import pytest

pytest.importorskip("galsim")
pytest.importorskip("torch")


def easy_config(name: str = "easy", n: int = 800, **over):
    """ShearNet-like, small and quick: 24x24 px, round Gaussian PSF, no shape noise, g in +-0.1."""
    from astrotool_lens.config import GenerateConfig

    data = {
        "preset": "shearnet", "name": name, "n_stamps": n, "shard_size": 400, "stamp_size": 24, "pixel_scale": 0.2,
        "offset_radius": 0.5,
        "galaxy": {"profile": "exponential", "hlr": [0.5, 0.8], "hlr_unit": "arcsec"},
        "psf": {"profile": "gaussian", "fwhm": 0.6},
        "noise": {"kind": "gaussian", "snr": 500.0},
    }
    for k, v in over.items():
        data[k] = v
    return GenerateConfig.model_validate(data)


def serial_map(fn, items, desc="", keys=None):
    """The executor mapper of a serial run (``Context.map``'s signature); an item that fails raises."""
    from astrotool.executors import ExecutorOptions, run_items

    results, failures = run_items(fn, items, keys, ExecutorOptions(kind="serial"))
    if failures:
        raise RuntimeError(f"{failures[0].key}: {failures[0].error}")
    return results


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    """One intra-op thread: the test machine is shared, and oversubscribed OpenMP threads crawl."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def easy_dataset(tmp_path_factory):
    """800 easy stamps in 2 shards (session-wide)."""
    from astrotool_lens.data import ShearDataset
    from astrotool_lens.generate import generate_dataset

    cfg = easy_config()
    out = tmp_path_factory.mktemp("lens_ws") / "lens" / "shear" / "easy"
    generate_dataset(cfg, out, 11, serial_map)
    return ShearDataset(out)


@pytest.fixture(scope="session")
def trained_model(easy_dataset, tmp_path_factory):
    """A CNN trained for 300 steps on the easy dataset; returns (model_dir, summary)."""
    from astrotool_lens.config import TrainConfig
    from astrotool_lens.train import train_model

    cfg = TrainConfig(width=8, blocks=2, hidden=32, batch_size=32, epochs=15, lr=3e-3, patience=0,
                      split=(0.8, 0.1, 0.1), threads=1, target="ellipticity",
                      use_psf=False)
    mdir = easy_dataset.root.parent.parent / "models" / "easy_cnn"
    summary = train_model(easy_dataset, cfg, mdir, seed=5)
    return mdir, summary


TINY_GEN = ["lens", "generate", "--preset", "shearnet", "--stamp-size", 24, "--shard-size", 4,
            "--set", "lens.generate.galaxy.hlr=[0.5, 0.8]", "--set", "lens.generate.galaxy.hlr_unit=\"arcsec\"",
            "--set", "lens.generate.psf.fwhm=0.6"]
"""``astro lens generate`` of small, quick stamps (add ``--name`` and ``-n``)."""


def run_json(capsys, ws, *args, code=0):
    """``astro --json -w ws -q ARGS``: the printed result (None if empty) and stderr; asserts the exit code."""
    import json

    from astrotool.cli import main

    rc = main(["--json", "-w", str(ws), "-q", *(str(a) for a in args)])
    out = capsys.readouterr()
    assert rc == code, out.err
    return (json.loads(out.out) if out.out.strip() else None), out.err


def review_workspace(ws, n_g: int, g_shard: int, n_f3: int, field_size: int):
    """A workspace with dataset g (``n_g`` stamps in shards of ``g_shard``), fields f3 (``n_f3`` stamps in
    fields of ``field_size``) and model m (one epoch on g): 24-px stamps; returns ``ws``."""
    from astrotool.cli import main

    base = ["-q", "-w", str(ws)]
    assert main([*base, "lens", "generate", "--name", "g", "--n-stamps", str(n_g), "--shard-size", str(g_shard),
                 "--stamp-size", "24"]) == 0
    assert main([*base, "lens", "generate", "--preset", "fields", "--name", "f3", "--n-stamps", str(n_f3),
                 "--field-size", str(field_size), "--stamp-size", "24", "--shard-size", str(n_f3)]) == 0
    assert main([*base, "--set", "lens.train.threads=1", "lens", "train", "--dataset", "g", "--model", "m",
                 "--epochs", "1", "--width", "4", "--batch-size", "8", "--device", "cpu"]) == 0
    return ws


def run_cli(capsys, *args):
    """``astro --json ARGS`` in this process: (exit code, stdout, stderr)."""
    from astrotool.cli import main

    code = main(["--json", *(str(a) for a in args)])
    out = capsys.readouterr()
    return code, out.out, out.err
