"""The lens-kappa demo step: registered right after the lens step, and its chain of commands on tiny maps."""

from __future__ import annotations

import json

import numpy as np

import astrotool_lens as plugin
from astrotool.plugins import get_registry, load_target


def test_the_kappa_step_is_registered_right_after_the_lens_step():
    steps = plugin.astro_demo_steps()
    assert [s.name for s in steps] == ["lens", "lens-kappa"]
    assert all(callable(load_target(s.target)) for s in steps)
    names = [s.name for _, s in get_registry().demo_steps()]
    assert names[names.index("lens") + 1] == "lens-kappa"


def test_demo_step_scores_and_ranks_ks_wiener_and_the_unet(tmp_path, monkeypatch):
    import torch

    from astrotool.context import Context
    from astrotool_lens.kappa.demo import run

    from astrotool.console import results_muted

    threads = torch.get_num_threads()
    ctx = Context.create(tmp_path)
    seen = []
    info = ctx.log.info
    monkeypatch.setattr(ctx.log, "info", lambda msg, *a, **k: (seen.append(msg % a if a else msg), info(msg, *a, **k)))
    with results_muted():   # as `astro demo` runs it
        lines = run(ctx, n=40, size=32, epochs=1, width=4)
    # the score lines are quoted once, in the summary, not logged by score as well (before: twice)
    assert seen and not any("ranking on WMAPE" in m or m.startswith("report:") for m in seen), seen
    assert torch.get_num_threads() == threads
    kappa = tmp_path / "lens/kappa"
    report = json.loads((kappa / "reports/demo_test_score.json").read_text())
    runs = ["demo_ks2", "demo_wiener", "demo_unet"]
    assert sorted(report["runs"]) == sorted(runs) and report["split"] == "test"
    assert sorted(report["ranking"]["competition"]["borda"]) == sorted(runs)
    n_test = report["n"]
    assert 0 < n_test < 40
    for r in runs:
        maps = sorted(p.name for p in (kappa / "predictions" / r).glob("*.npy"))
        assert len(maps) == n_test and np.load(kappa / "predictions" / r / maps[0]).shape == (32, 32)
    assert (kappa / "models/demo_unet/model.onnx").is_file()
    assert lines[0].startswith("lens-kappa: simulated 40 32x32") and f"/{n_test})" in lines[0]
    assert "for 1 epochs" in lines[2] and f"predicted {n_test} test maps" in lines[3]
    for r in runs:
        assert any(line.strip().startswith(f"{r}: WMAPE") for line in lines)
    assert any("ranking on WMAPE, DICEE, DPEAKS" in line for line in lines)
    reports = [line.strip() for line in lines if line.strip().startswith("report:")]
    assert reports == [f"report: {kappa / 'reports/demo_test_score.json'}"]
