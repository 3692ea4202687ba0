"""The lens evaluation report: plots that say something, c beside m, and a calibration that hurts is named."""

from __future__ import annotations

import json

import numpy as np

from astrotool_lens.evaluate import binned_bias, estimator_metrics


def fields(n_fields: int = 20, per: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    g = np.repeat(rng.uniform(-0.05, 0.05, (2, n_fields)), per, axis=1)
    return g, np.repeat(np.arange(n_fields), per), rng


def metrics_of(scale: float, calib_m: float):
    """Metrics of raw estimates (1 + m_raw) g and of the same divided by (1 + calib_m)."""
    g, field, rng = fields()
    raw = (1 + scale) * g + rng.normal(0, 1e-4, g.shape)
    cal = raw / (1 + calib_m)
    return {"CNN": estimator_metrics(g[0], g[1], cal[0], cal[1], field),
            "CNN raw": estimator_metrics(g[0], g[1], raw[0], raw[1], field)}


def test_a_calibration_that_increases_m_on_the_test_fields_is_noted():
    from astrotool_lens.evaluate import calibration_notes

    results = metrics_of(scale=0.0, calib_m=0.05)          # an unbiased estimator "calibrated" by m = 0.05
    assert abs(results["CNN"]["m1"]) > 0.04 > abs(results["CNN raw"]["m1"])
    notes = calibration_notes(results, "test")
    assert [n.split(":")[0] for n in notes] == ["calibration makes m1 worse on the test fields",
                                                 "calibration makes m2 worse on the test fields"]
    # a calibration that removes the bias, and a model without one, give no note
    assert calibration_notes(metrics_of(scale=0.05, calib_m=0.05), "test") == []
    assert calibration_notes({"CNN": results["CNN raw"]}, "test") == []


def test_bias_plot_has_m_and_c_labelled_bands_and_its_legend_off_the_data(tmp_path, monkeypatch):
    import astrotool.io.figures as figures
    from astrotool_lens.evaluate import plot_bias_vs

    drawn = []
    save = figures.save_figure
    monkeypatch.setattr(figures, "save_figure", lambda fig, path, **kw: (drawn.append(fig), save(fig, path, **kw)))
    g = np.tile(np.linspace(-0.1, 0.1, 10), 2)
    snr = np.repeat([10.0, 100.0], 10)
    est = np.where(snr < 50, 0.9 * g, 1.0 * g) + 0.001
    binned = {"CNN": binned_bias(g, g, est, est, snr, bins=2), "KSB": []}
    assert {"c1_err", "c2_err"} <= set(binned["CNN"][0])
    assert plot_bias_vs(tmp_path / "b.png", "S/N", "", binned).is_file()
    (fig,) = drawn
    data_axes = [ax for ax in fig.axes if ax.axison]
    assert sorted(ax.get_ylabel() for ax in data_axes) == ["c1", "c2", "m1", "m2"]
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    assert legends and all(leg.axes not in data_axes for leg in legends)
    texts = {t.get_text() for leg in legends for t in leg.get_texts()}
    assert {"CNN", "GREAT3 target |m| < 0.002", "GREAT3 target |c| < 0.0002"} <= texts
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    renderer = FigureCanvasAgg(fig).get_renderer()                  # the saved figure is closed: draw it again
    for leg in legends:                                             # nothing of the legend covers a panel
        box = leg.get_window_extent(renderer)
        assert not any(box.overlaps(ax.get_window_extent(renderer)) for ax in data_axes)


def test_a_single_snr_bin_gives_no_plot(tmp_path):
    from astrotool_lens.evaluate import plot_bias_vs

    g = np.linspace(-0.1, 0.1, 12)
    one = {"CNN": binned_bias(g, g, g, g, np.full(12, 500.0), bins=5)}
    assert len(one["CNN"]) == 1
    assert plot_bias_vs(tmp_path / "never.png", "S/N", "", one) is None and not list(tmp_path.iterdir())


def test_evaluate_reports_the_single_snr_bin_and_a_harmful_calibration(tmp_path):
    import torch

    from astrotool.ml.checkpoint import save_checkpoint
    from astrotool_lens.config import EvaluateConfig
    from astrotool_lens.data import ShearDataset
    from astrotool_lens.evaluate import evaluate
    from astrotool_lens.generate import generate_dataset
    from astrotool_lens.model import load_estimator

    from .conftest import easy_config, serial_map
    from .test_metrics import _tiny_model

    out = tmp_path / "shear" / "e"
    generate_dataset(easy_config("e", n=24, shard_size=24), out, 1, serial_map)       # S/N 500 for every stamp
    ds = ShearDataset(out)
    mdir = _tiny_model(tmp_path, ds)
    model, meta = load_estimator(mdir)
    with torch.no_grad():                                           # a calibration from unrelated simulations
        model.calib_c.copy_(torch.tensor([0.3, -0.3]))
    save_checkpoint(mdir, model, {**{k: v for k, v in meta.items() if k not in ("weights_sha256", "created_utc")},
                                  "calibration": {"dataset": "other", "m1": 0.0, "m2": 0.0, "c1": 0.3, "c2": -0.3}})
    ecfg = EvaluateConfig(classical=[], split="all", plots=True, symmetrize=False, bins=3)
    report = evaluate(ds, mdir, ecfg, tmp_path / "pred", tmp_path / "rep", mapper=serial_map)
    names = sorted(p.name for p in (tmp_path / "rep").iterdir())
    assert "e_tiny_all_nosym_bias-vs-snr.png" not in names and "e_tiny_all_nosym_bias-vs-hlr.png" in names
    notes = json.loads((tmp_path / "rep" / "e_tiny_all_nosym_metrics.json").read_text())["notes"]
    assert any(n.startswith("bias vs S/N not plotted") for n in notes)
    assert any(n.startswith("calibration makes c1 worse on the evaluated stamps") for n in notes), notes
    assert len(report["binned"]["snr"]["CNN"]) == 1 and len(report["binned"]["hlr"]["CNN"]) == 3


def test_a_bias_that_grows_within_one_sigma_gets_no_note_as_the_doc_says():
    """The rule of ``calibration_notes``, and docs/lens.md stating it: a note only when |bias| grows by more
    than the calibrated value's 1-sigma error (by any amount when that error is NaN)."""
    from pathlib import Path

    from astrotool_lens.evaluate import calibration_notes

    def results(raw_m, cal_m, err):
        zero = {"m2": 0.0, "c1": 0.0, "c2": 0.0, "m2_err": 0.0, "c1_err": 0.0, "c2_err": 0.0}
        return {"CNN": {**zero, "m1": cal_m, "m1_err": err}, "CNN raw": {**zero, "m1": raw_m, "m1_err": err}}

    assert calibration_notes(results(0.001, 0.003, 0.005), "test") == []             # worse, within 1 sigma
    assert len(calibration_notes(results(0.001, 0.003, 0.001), "test")) == 1          # worse by 2 sigma
    assert len(calibration_notes(results(0.001, 0.003, float("nan")), "test")) == 1   # no error: any growth
    doc = " ".join((Path(__file__).parents[2] / "docs" / "lens.md").read_text(encoding="utf-8").split())
    assert "larger by more than the calibrated value's 1-sigma error" in doc
