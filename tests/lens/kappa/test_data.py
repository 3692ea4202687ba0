"""`astro lens kappa data`: a failed packing leaves no folder, or the shards it packed with the command that
finishes them named."""

from __future__ import annotations

from ..conftest import run_cli


def run(capsys, ws, *args):
    return run_cli(capsys, "-w", ws, *args)


def _maps(root, n, nan_at=None):
    """``root/EPSILON/0000k.npy`` and ``root/KAPPA/0000k.npy`` (32 px), one NaN value in map ``nan_at``."""
    import numpy as np

    rng = np.random.default_rng(0)
    for sub in ("EPSILON", "KAPPA"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for k in range(n):
        eps = rng.normal(0, 0.3, (3, 32, 32)).astype(np.float16)
        if k == nan_at:
            eps[0, 0, 0] = np.nan
        np.save(root / "EPSILON" / f"{k:05d}.npy", eps)
        np.save(root / "KAPPA" / f"{k:05d}.npy", rng.normal(0, 0.05, (32, 32)).astype(np.float16))
    return root


def test_failed_kappa_data_leaves_no_folder_and_baseline_names_the_command(tmp_path, capsys):
    ws = tmp_path / "ws"
    root = _maps(tmp_path / "t_nan", 6, nan_at=3)
    code, _, err = run(capsys, ws, "lens", "kappa", "data", root)
    assert code == 2 and "00003.npy: 1 NaN value" in err
    # before: lens/kappa/data/t_nan/ held data_settings.json alone, listed as "unfinished (no manifest)"
    assert not (ws / "lens" / "kappa" / "data" / "t_nan").exists()
    code, _, err = run(capsys, ws, "lens", "kappa", "baseline", "--dataset", "t_nan")
    assert code == 2 and "unfinished" not in err
    # a set whose first shard was packed keeps it (a rerun resumes) and says which command finishes it
    code, _, err = run(capsys, ws, "lens", "kappa", "data", root, "--shard-size", 3)
    assert code == 2 and (ws / "lens" / "kappa" / "data" / "t_nan" / "shard00000_arrays.h5").is_file()
    code, _, err = run(capsys, ws, "lens", "kappa", "baseline", "--dataset", "t_nan")
    assert code == 2 and "an unfinished data set" in err and "`astro lens kappa data`" in err, err
