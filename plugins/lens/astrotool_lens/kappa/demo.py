"""The lens-kappa step of ``astro demo`` (about 20 s on two idle cores, 60 s on two busy ones).

Runs the ``astro lens kappa`` commands, in process, on small 64x64 maps:
simulate 160 (epsilon, kappa) pairs, pack them (about 80/10/10 % into the
train/validation/test splits), reconstruct the test split with Kaiser-Squires (smoothed 2 px)
and the Wiener filter (signal spectrum from the training split), train a
small U-Net for a few epochs, predict the test split, score the three runs
against the true maps in one ``score`` call (WMAPE, DICEE, DPEAKS, Pearson r
and the ranking) and export the U-Net to ONNX (checked against torch).
"""

from __future__ import annotations

import contextlib
import io
import time

__docformat__ = "numpy"

NAME = "demo"
"""The demo's set, data set and model name (``lens/kappa/{sims,data,models}/demo``...)."""


def _quiet(fn, *args, **kwargs):
    """Call a command; return ``(its result, the lines it printed on stdout)`` (logs still go to stderr)."""
    from astrotool.console import results_muted

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), results_muted(False):   # printed here, under astro demo too
        out = fn(*args, **kwargs)
    return out, [line for line in buf.getvalue().splitlines() if line.strip()]


def run(ctx, n: int = 160, size: int = 64, epochs: int = 8, width: int = 8) -> list[str]:
    """Run the demo in ``ctx.workspace``; return summary lines.

    Parameters
    ----------
    ctx : astrotool.context.Context
        The demo's context (its workspace, seed, ``--overwrite``).
    n : int
        Simulated maps (80 % train, 10 % validation, 10 % test).
    size : int
        Map side [pixels]; must be divisible by 16 (the U-Net's 4 levels).
    epochs : int
        U-Net training epochs.
    width : int
        Channels of the U-Net's first level.

    Returns
    -------
    list of str
        What each command produced and took, then the score lines and the ranking.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the lens step: on busy cores, torch's threads wait on each other (5x slower)
    try:
        return _run(ctx, n, size, epochs, width)
    finally:
        torch.set_num_threads(threads)


def _run(ctx, n: int, size: int, epochs: int, width: int) -> list[str]:
    from astrotool.ml import commands as mc

    from astrotool_lens.kappa.baseline import baseline_command
    from astrotool_lens.kappa.cli import kappa_config
    from astrotool_lens.kappa.export import export_command
    from astrotool_lens.kappa.predict import predict_command
    from astrotool_lens.kappa.score import score_command, summary_lines
    from astrotool_lens.kappa.simulate import simulate_command
    from astrotool_lens.kappa.sources import data_command
    from astrotool_lens.kappa.train import train_command

    def kappa(flags: dict):
        return kappa_config(ctx, flags)

    ks, wiener, unet = f"{NAME}_ks2", f"{NAME}_wiener", f"{NAME}_unet"
    t0 = time.perf_counter()
    sim, _ = _quiet(simulate_command, ctx, kappa({"simulate.name": NAME, "simulate.n_maps": n, "simulate.size": size}))
    data, _ = _quiet(data_command, ctx, kappa({"data.name": NAME}), [NAME])
    t_sim = time.perf_counter() - t0

    t1 = time.perf_counter()
    _quiet(baseline_command, ctx, kappa({"baseline.dataset": NAME, "baseline.method": "ks", "baseline.sigma": 2.0,
                                         "baseline.split": "test", "baseline.name": ks}))
    _quiet(baseline_command, ctx, kappa({"baseline.dataset": NAME, "baseline.method": "wiener",
                                         "baseline.train_dataset": NAME, "baseline.split": "test",
                                         "baseline.name": wiener}))
    t_base = time.perf_counter() - t1

    t2 = time.perf_counter()
    tr, _ = _quiet(train_command, ctx, kappa({"train.dataset": NAME, "train.model": unet, "train.epochs": epochs,
                                                   "train.width": width}), mc.runtime(ctx))
    t_train = time.perf_counter() - t2

    t3 = time.perf_counter()
    pred, _ = _quiet(predict_command, ctx, kappa({"predict.model": unet, "predict.name": unet,
                                                  "predict.split": "test"}), NAME, mc.runtime(ctx))
    exp, _ = _quiet(export_command, ctx, kappa({"export.model": unet}))
    t_pred = time.perf_counter() - t3

    report, _ = _quiet(score_command, ctx, kappa({"score.truth": NAME, "score.split": "test",
                                                  "score.name": f"{NAME}_test"}), [ks, wiener, unet],
                       log_summary=False)   # quoted below, once
    scored = summary_lines(report) + [f"report: {ctx.workspace.stage('lens', 'kappa/reports') / NAME}_test_score.json"]

    splits = data.get("splits", {})
    lines = [
        f"lens-kappa: simulated {sim['n']} {size}x{size} (epsilon, kappa) maps and packed them "
        f"(train/val/test {'/'.join(str(splits.get(k, '?')) for k in ('train', 'val', 'test'))}) "
        f"in {t_sim:.1f} s",
        f"lens-kappa: Kaiser-Squires (2 px) and Wiener baselines on the test split in {t_base:.1f} s",
        f"lens-kappa: trained U-Net {unet} (width {width}) for {tr.get('epochs_total', epochs)} epochs in "
        f"{t_train:.1f} s (validation Pearson r {tr.get('val_pearson', float('nan')):.3f})",
        f"lens-kappa: predicted {pred['n']} test maps and exported {exp['path']} (max |torch - onnxruntime| "
        f"{exp['max_abs_diff']:.1e}) in {t_pred:.1f} s",
        "lens-kappa: scores on the test split (U-Net vs the classical reconstructions):",
    ]
    lines += [f"  {line}" for line in scored]
    return lines
