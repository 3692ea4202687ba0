"""`astro lens generate` on a full disk, and `lens export --output` into a read-only folder."""

from __future__ import annotations

import json
import subprocess


def test_generate_on_a_full_disk_names_the_shard_and_leaves_nothing(small_disk, astro):
    """It died with a segmentation fault (exit 139) in HDF5's exit handler."""
    ws = small_disk / "ws"
    r = astro("-w", ws, "lens", "generate", "--preset", "shearnet", "--name", "full", "-n", 400,
              "--shard-size", 400, "--stamp-size", 40, "--compression", "none")
    assert r.returncode in (1, 2), r.stderr[-2000:]
    shard = ws / "lens" / "shear" / "full" / "shard00000_stamps.h5"
    assert f"no space left on device writing {shard}" in r.stderr
    assert "Exception ignored" not in r.stderr and "Traceback" not in r.stderr
    assert not [p for p in ws.rglob("*") if ".partial" in p.name]
    assert not list((ws / "lens" / "shear" / "full").glob("*.h5"))
    run = json.loads(next(ws.glob("runs/*/run.json")).read_text())
    assert run["exit_code"] == r.returncode


def test_export_into_a_read_only_folder_names_the_target(trained_model, tmp_path, astro):
    """The message named the temporary file (.model.onnx.partial-…) instead of --output."""
    mdir, _ = trained_model
    ro = tmp_path / "ro"
    ro.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,ro", "tmpfs", str(ro)]).returncode != 0:
        ro.chmod(0o555)   # not root: the folder's mode does it
    try:
        r = astro("-w", tmp_path / "ws", "lens", "export", "--model", mdir, "--output", ro / "m.onnx")
    finally:
        subprocess.run(["umount", "-l", str(ro)], capture_output=True)
        ro.chmod(0o755)
    assert r.returncode == 2, r.stderr[-2000:]
    assert f"writing {ro / 'm.onnx'}" in r.stderr, r.stderr
    assert ".partial" not in r.stderr
