"""astrotool.ml.checkpoint: the weights file's bytes depend on the weights alone."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")

_SAVE = """
import sys, torch
from astrotool.ml import checkpoint as ck
g = torch.Generator().manual_seed(3)
state = {"b.weight": torch.randn(4, 3, generator=g), "a.bias": torch.randn(3, generator=g),
         "n": torch.arange(5)}
for i, d in enumerate(sys.argv[1:]):
    ck.save_checkpoint(d, state, {"architecture": {"name": "tiny", "kwargs": {}}})
"""


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_identical_weights_give_identical_files(tmp_path):
    """safetensors orders the header's metadata keys as a Rust HashMap (random per process and per
    call): the same tensors saved in several processes must still give the same bytes."""
    dirs = [tmp_path / f"m{i}" for i in range(8)]
    for pair in (dirs[:4], dirs[4:]):  # two processes, four saves each
        subprocess.run([sys.executable, "-c", _SAVE, *map(str, pair)], check=True)
    shas = {_sha(d / "model.safetensors") for d in dirs}
    assert len(shas) == 1
    from astrotool.ml import checkpoint as ck

    for d in dirs[:2]:  # still a valid safetensors file, and model.json's weights_sha256 matches
        loaded = ck.load_checkpoint(d)  # verifies weights_sha256 against the file
        assert torch.equal(loaded.state_dict["n"], torch.arange(5))
        assert json.loads((d / "model.json").read_text())["weights_sha256"] == _sha(d / "model.safetensors")
    from safetensors import safe_open

    with safe_open(str(dirs[0] / "model.safetensors"), "pt") as f:
        assert f.metadata() == {"format": "astrotool-checkpoint", "architecture": "tiny"}
        assert sorted(f.keys()) == ["a.bias", "b.weight", "n"]
        assert torch.equal(f.get_tensor("n"), torch.arange(5))
    raw = (dirs[0] / "model.safetensors").read_bytes()
    header = json.loads(raw[8:8 + int.from_bytes(raw[:8], "little")])
    assert list(header["__metadata__"]) == sorted(header["__metadata__"])


def test_metadata_order_does_not_matter(tmp_path):
    from astrotool.ml.checkpoint import _save_tensors

    t = {"w": torch.ones(2, 2), "v": torch.zeros(3, dtype=torch.float64)}
    a, b = tmp_path / "a.st", tmp_path / "b.st"
    _save_tensors(t, a, {"format": "f", "architecture": "x", "zeta": "1"})
    _save_tensors(t, b, {"zeta": "1", "architecture": "x", "format": "f"})
    assert a.read_bytes() == b.read_bytes()
