"""astrotool.io.figures: every plot is a real PNG with content, written atomically, never left half-done."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from astrotool.io import figures as F  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def no_open_figures():
    """Every test must leave matplotlib with no open figure (figures are closed after saving or failing)."""
    plt = F.pyplot()
    plt.close("all")
    yield
    assert plt.get_fignums() == [], "a figure was left open"


def check_png(path):
    """A valid, non-blank PNG and nothing else in its folder (no temporary file left)."""
    import matplotlib.image as mpimg

    assert path.read_bytes()[:8] == PNG_SIGNATURE
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
    assert float(img[..., :3].var()) > 1e-3, "blank image"
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


def history(n=6):
    return [{"epoch": e, "step": 10 * (e + 1), "train_loss": 1.0 / (e + 1), "val_loss": 1.3 / (e + 1),
             "val_rmse": 0.4 / (e + 1) + 0.05, "lr": 1e-3, "seconds": 0.5} for e in range(n)]


def test_pyplot_is_agg():
    assert F.pyplot().get_backend().lower() == "agg"


def test_plot_history(tmp_path, monkeypatch):
    from matplotlib.axes import Axes

    drawn, plot = [], Axes.plot
    monkeypatch.setattr(Axes, "plot", lambda ax, x, *a, **k: drawn.append(list(x)) or plot(ax, x, *a, **k))
    out = F.plot_history(tmp_path / "h.png", history(), title="run", log_loss=True)
    assert out == tmp_path / "h.png"
    check_png(out)
    assert drawn and all(x == [1, 2, 3, 4, 5, 6] for x in drawn)   # epochs as the log counts them (were 0-5)


def test_plot_pred_vs_true(tmp_path):
    rng = np.random.default_rng(0)
    g = rng.uniform(-0.4, 0.4, (300, 2))
    cnn = g + 0.05 * rng.normal(size=g.shape)
    hsm = g * 1.02
    hsm[:5] = np.nan                                        # failed measurements are skipped
    out = F.plot_pred_vs_true(tmp_path / "pvt.png", (g[:, 0], g[:, 1]), {"CNN": cnn, "HSM": (hsm[:, 0], hsm[:, 1])},
                              labels=("g1", "g2"), symmetric=True, title="shear")
    check_png(out)
    one = F.plot_pred_vs_true(tmp_path / "one" / "k.png", g[:, 0], {"net": cnn[:, 0]})   # one component
    check_png(one)


def test_plot_confusion(tmp_path):
    from astrotool.ml.metrics import classification_metrics

    pytest.importorskip("torchmetrics")
    r = classification_metrics([0, 1, 1, 1, 2, 0], [0, 0, 1, 1, 2, 2], num_classes=4,
                               class_names=["AGN", "SN", "VS", "bogus"])       # "bogus" has an empty row
    check_png(F.plot_confusion(tmp_path / "a" / "counts.png", r))
    check_png(F.plot_confusion(tmp_path / "b" / "norm.png", r["confusion"], r["class_names"], normalize=True))


def test_plot_curves_and_reliability(tmp_path):
    pytest.importorskip("torchmetrics")
    from astrotool.ml.metrics import calibration_metrics, pr_curve, roc_curve

    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 400)
    s = np.clip(0.35 + 0.3 * y + 0.2 * rng.normal(size=400), 0, 1)
    check_png(F.plot_curves(tmp_path / "r" / "roc.png", {"A": roc_curve(s, y), "B": roc_curve(s ** 2, y)}, "roc"))
    check_png(F.plot_curves(tmp_path / "p" / "pr.png", {"A": pr_curve(s, y)}, kind="pr"))
    cal = calibration_metrics(s, y, n_bins=10)
    check_png(F.plot_reliability(tmp_path / "c" / "rel.png", cal, title="toy"))


def test_reliability_title_carries_the_ece(tmp_path, monkeypatch):
    titles = []
    import matplotlib.figure

    orig = matplotlib.figure.Figure.suptitle
    monkeypatch.setattr(matplotlib.figure.Figure, "suptitle",
                        lambda self, t, **kw: titles.append(t) or orig(self, t, **kw))
    cal = {"edges": [0, 0.5, 1], "confidence": [0.25, 0.8], "accuracy": [0.5, 1.0], "count": [2, 2], "ece": 0.225}
    F.plot_reliability(tmp_path / "rel.png", cal, title="ztf")
    assert titles == ["ztf  ECE = 0.2250"]


@pytest.mark.parametrize("call, match", [
    (lambda p: F.plot_history(p, []), "empty training history"),
    (lambda p: F.plot_history(p, [{"train_loss": 1.0}]), "needs an 'epoch'"),
    (lambda p: F.plot_history(p, history(), metrics=["val_f1"]), "no history entry has"),
    (lambda p: F.plot_pred_vs_true(p, np.zeros((5, 2)), {"a": np.zeros((5, 3))}), "3 components, expected 2"),
    (lambda p: F.plot_pred_vs_true(p, np.zeros(5), {"a": np.zeros(4)}), "4 values per component"),
    (lambda p: F.plot_pred_vs_true(p, np.zeros(5), {}), "no estimates"),
    (lambda p: F.plot_confusion(p, [[1, 2, 3], [4, 5, 6]]), "square"),
    (lambda p: F.plot_confusion(p, np.eye(3), ["a", "b"]), "2 class names for a 3x3"),
    (lambda p: F.plot_curves(p, {"a": {"fpr": [0, 1]}}), "lacks"),
    (lambda p: F.plot_curves(p, {"a": {}}, kind="det"), "kind must be"),
    (lambda p: F.plot_reliability(p, {"ece": 0.1}), "calibration needs"),
])
def test_bad_input_writes_nothing(tmp_path, call, match):
    with pytest.raises(ValueError, match=match):
        call(tmp_path / "x.png")
    assert list(tmp_path.iterdir()) == []


def test_failure_while_drawing_leaves_no_file_and_closes_the_figure(tmp_path):
    path = tmp_path / "x.png"
    with pytest.raises(RuntimeError, match="boom"):
        with F.figure(path, 1, 2) as (fig, axes):
            axes[0, 0].plot([0, 1], [0, 1])
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_failure_while_saving_keeps_the_old_file(tmp_path, monkeypatch):
    import matplotlib.figure

    path = tmp_path / "h.png"
    F.plot_history(path, history())
    before = path.read_bytes()

    def broken_savefig(self, fname, **kw):
        with open(fname, "wb") as fh:                      # half a PNG, then the disk fills up
            fh.write(PNG_SIGNATURE + b"\0" * 100)
        raise OSError("No space left on device")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", broken_savefig)
    with pytest.raises(OSError, match="No space"):
        F.plot_history(path, history(3))
    assert path.read_bytes() == before                     # the finished file is untouched
    assert [p.name for p in tmp_path.iterdir()] == ["h.png"]   # and no temporary file is left


def test_save_figure_writes_and_closes(tmp_path):
    plt = F.pyplot()
    fig, ax = plt.subplots()
    ax.imshow(np.arange(100.0).reshape(10, 10))
    out = F.save_figure(fig, tmp_path / "sub" / "img.png")
    assert out == tmp_path / "sub" / "img.png"
    check_png(out)


def test_importing_figures_stays_light():
    import subprocess
    import sys

    code = "import sys, astrotool.io.figures; print('matplotlib' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() \
        == "False"
