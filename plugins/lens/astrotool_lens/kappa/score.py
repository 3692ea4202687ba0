"""``astro lens kappa score``: predicted kappa maps against the truth, per map and on average, and ranked.

Inputs:

* predictions -- one or more folders of ``<name>.npy`` maps (``(S, S)``, any
  floating dtype; float16 as :mod:`~astrotool_lens.kappa.submission` writes
  them), given as a path or as a run name under ``lens/kappa/predictions/``
  (a folder with a ``KAPPA/`` subfolder works too);
* the truth (``[lens.kappa.score] truth`` / ``--truth``), read through
  :func:`astrotool_lens.kappa.sources.open_maps`: a packed data set (its
  ``split``), a simulated set, a folder with ``KAPPA/`` (and ``EPSILON/``), a
  folder of ``.npy`` maps, or Datathon tarballs.

Pairing is by name (file stem), never by order. The rule:

* every prediction must have a true map -- a prediction without one is an
  error (exit 2) naming the run folder, how many and the first few names;
* every true map must have a prediction when the truth is a folder or
  tarballs (a submission covers its test set) -- the missing ones are an
  error the same way, unless ``partial``; a packed data set may always hold
  more maps than were predicted (predictions usually cover one split): only
  the predicted maps are scored and the others are counted
  (``truth_unscored``);
* several runs must cover the same maps (a ranking compares like with like).

Every map is checked as it is read (:func:`~astrotool_lens.kappa.sources.check_map`):
a wrong shape -- not the truth's ``(S, S)`` --, a non-floating dtype or NaN is
an error naming the file. The maps are streamed ``batch_size`` names at a
time: memory holds one batch of maps and the per-map metrics, stored by
column (:class:`MetricTable`, 8 bytes a value), never the maps of a whole set;
the report and ``--json`` are written map by map from those columns.

Per map: :func:`astrotool_lens.kappa.metrics.map_metrics` (the Datathon's
WMAPE, DICEE, DPEAKS; the highest peak's distance, MSE, Pearson r, SSIM,
power-spectrum log ratio, peak counts, kappa-PDF distances) and, when the input ellipticities are at hand (a
data set with epsilon, a folder with ``EPSILON/``), ``chi2`` of
:func:`~astrotool_lens.kappa.metrics.consistency`. Means over the maps (NaN
values left out). Next to every run: the WMAPE of the all-zeros map on the
same truth (``wmape_zeros``), the floor any WMAPE must be read against (a
prediction ``c kappa``, ``c != 0``, scores ``|1 - c|``; the zeros map about 1
only where every ``|kappa| >> 1e-5``, far more with pixels near 0); with epsilon, the truth's own
``chi2`` (``truth_chi2``, about 1 when ``de`` is the noise level) and the
input's B- and E-mode RMS. Several runs are ranked by Borda count and
Copeland's method (:func:`~astrotool_lens.kappa.metrics.rank`), on the three
Datathon metrics (``competition``) and on all the scores (``all``).

Output: ``lens/kappa/reports/<report>_score.json`` (written atomically) and,
unless ``--no-plots``, ``<report>_examples.png`` (truth, prediction, residual
of a few maps), ``<report>_hist.png`` (per-map metric histograms) and
``<report>_power.png`` (mean power-spectrum ratio against ``k``).
"""

from __future__ import annotations

import json
import math
import re
import time
from array import array
from pathlib import Path
from typing import Sequence

import numpy as np

from astrotool import made_with as mw
from astrotool.errors import AstroError, InputError
from astrotool_lens.kappa.sources import few, map_files

__docformat__ = "numpy"

__all__ = ["RANKED", "PLOTTED", "MetricTable", "open_predictions", "pair_names", "score_maps", "score_command"]

RANKED = ("wmape", "dicee", "dpeaks", "mse", "pearson", "ssim", "ps_logratio", "npeaks_err", "wasserstein", "ks")
"""The metrics of the ``all`` ranking (``npeaks_pred``/``npeaks_true`` describe, ``chi2`` is ~1 at best: not ranked)."""

PLOTTED = (("wmape", "WMAPE"), ("dicee", "DICEE"), ("dpeaks", "DPEAKS [pixels]"), ("mse", "MSE [kappa^2]"),
           ("pearson", "Pearson r"), ("ssim", "SSIM"))
"""``(metric, axis label)`` of each panel of the score plot."""


# ============================================================================ inputs


def open_predictions(ctx, specs: Sequence[str]) -> dict:
    """The prediction runs named on the command line, ``{label: FolderMaps}``.

    Each spec is a folder of ``.npy`` maps (or one with a ``KAPPA/``
    subfolder), or a run name under ``lens/kappa/predictions/``. The label is
    the run folder's name.

    Raises
    ------
    astrotool.errors.InputError
        No such folder or run (the runs in the workspace are listed), no
        ``.npy`` maps in it, two runs of the same name.
    """
    from astrotool_lens.kappa.sources import FolderMaps

    stage = ctx.workspace.stage("lens", "kappa/predictions", create=False)
    runs: dict = {}
    for spec in specs:
        text = str(spec)
        p = Path(text).expanduser()
        if not p.is_dir() and "/" not in text and text not in ("", ".", "..") and (stage / text).is_dir():
            p = stage / text
        if p.is_file():   # a map file: the folder of maps is what is scored
            raise InputError(text, f"a file, not a prediction folder: give the folder of .npy maps ({p.parent})")
        if not p.is_dir():
            have = sorted(d.name for d in stage.iterdir() if d.is_dir()) if stage.is_dir() else []
            raise InputError(text, "no such prediction folder, and no prediction run of that name in the workspace "
                                   f"(runs: {', '.join(have) if have else '(none)'})")
        label = p.resolve().name
        if not map_files(p):
            sub = [d for d in p.iterdir() if d.is_dir() and d.name.upper() == "KAPPA"]
            if sub:
                p = sub[0]
        if label in runs:
            raise InputError(p, f"a second prediction run named {label!r} (also {runs[label].folder}); "
                                "score runs of distinct names")
        runs[label] = FolderMaps(p, "kappa", label=f"prediction run {label} ({p})")
    return runs


def _epsilon_for(truth, names: Sequence[str], log):
    """The input ellipticities next to the truth (a data set's, a sibling ``EPSILON/``), or None."""
    from astrotool_lens.kappa.sources import FolderMaps, PackedMaps

    eps = None
    if isinstance(truth, PackedMaps):
        if "epsilon" in truth.ds.arrays:
            eps = PackedMaps(truth.ds, "epsilon", truth.split)
    elif isinstance(truth, FolderMaps) and truth.folder.name.upper() == "KAPPA":
        sib = [d for d in truth.folder.parent.iterdir() if d.is_dir() and d.name.upper() == "EPSILON"]
        if sib and map_files(sib[0]):
            eps = FolderMaps(sib[0], "epsilon")
    if eps is None:
        return None
    lacking = sorted(set(names) - set(eps.names))
    if lacking:
        log.warning("no consistency check: %d scored maps have no input epsilon map in %s (%s)", len(lacking),
                    eps.describe(), few(lacking))
        return None
    return eps


def pair_names(truth, runs: dict, partial: bool = False) -> tuple[list[str], int]:
    """The names to score and the number of true maps left unscored (the rule in the module docstring).

    Parameters
    ----------
    truth : MapSet
    runs : dict
        ``{label: FolderMaps}``.
    partial : bool
        A folder/tarball truth may hold maps without a prediction.

    Returns
    -------
    names : list of str
        Sorted.
    unscored : int
        True maps without a prediction.

    Raises
    ------
    astrotool.errors.InputError
        A prediction without truth, a true map without prediction (folder or
        tarball truth, not ``partial``), runs covering different maps.
    """
    from astrotool_lens.kappa.sources import PackedMaps

    have = set(truth.names)
    first = None
    for label, run in runs.items():
        extra = sorted(set(run.names) - have)
        if extra:
            raise InputError(run.folder, f"{len(extra)} of {len(run)} predicted maps have no true map in "
                                         f"{truth.describe()}: {few(extra)}")
        if first is None:
            first = (label, set(run.names))
            continue
        other = set(run.names)
        if other != first[1]:
            miss, more = sorted(first[1] - other), sorted(other - first[1])
            raise InputError(run.folder, f"covers other maps than run {first[0]!r}: {len(miss)} missing"
                                         f"{' (' + few(miss) + ')' if miss else ''}, {len(more)} more"
                                         f"{' (' + few(more) + ')' if more else ''}; rank runs of the same maps")
    names = sorted(first[1])
    missing = sorted(have - first[1])
    if missing and not partial and not isinstance(truth, PackedMaps):
        label = next(iter(runs))
        raise InputError(runs[label].folder,
                         f"{len(missing)} of {len(truth)} true maps in {truth.describe()} have no prediction: "
                         f"{few(missing)} (--partial scores only the predicted maps)")
    return names, len(missing)


def _truth_batches(truth, names: list[str], batch_size: int):
    """``(names, maps)`` of the scored names, ``batch_size`` at a time (tarballs: one streaming pass)."""
    from astrotool_lens.kappa.sources import TarMaps

    if isinstance(truth, TarMaps):
        want = set(names)
        for chunk, maps in truth.iter_batches(batch_size):
            keep = [i for i, n in enumerate(chunk) if n in want]
            if keep:
                yield [chunk[i] for i in keep], maps[keep]
        return
    for a in range(0, len(names), batch_size):
        chunk = names[a:a + batch_size]
        yield chunk, truth.read(chunk)


def _load_prediction(run, name: str, size: int) -> np.ndarray:
    from astrotool_lens.kappa.sources import check_map, load_npy

    path = run.files[name]
    return check_map(load_npy(path, path), "kappa", path, size, like="its true map")


def _clean(x):
    """JSON-safe: NaN/inf -> None, numpy scalars -> Python (a :class:`MetricTable` is kept: it writes itself)."""
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(float(x)) else None
    if isinstance(x, np.integer):
        return int(x)
    return x


class MetricTable:
    """Per-map metrics stored by column: one ``array('d')`` per metric, 8 bytes a value.

    20,000 maps of 14 metrics take 2.2 MB, where a dict per map takes about
    1 kB. Reads like ``{name: {metric: value}}`` (``table[name]``, ``items()``,
    ``values()``, ``len``); a metric missing for a map is NaN.
    """

    def __init__(self):
        self.names: list[str] = []
        self.columns: dict[str, array] = {}
        self._index: dict[str, int] | None = None

    def add(self, name: str, metrics: dict) -> None:
        """Append one map's metrics."""
        n = len(self.names)
        self.names.append(name)
        self._index = None
        for k, v in metrics.items():
            col = self.columns.get(k)
            if col is None:
                col = self.columns[k] = array("d", [math.nan]) * n
            col.append(math.nan if v is None else float(v))
        for col in self.columns.values():
            if len(col) == n:
                col.append(math.nan)

    def column(self, key: str) -> np.ndarray:
        """One metric over the maps (float64; NaN where missing)."""
        col = self.columns.get(key)
        return np.full(len(self.names), np.nan) if col is None else np.frombuffer(col, dtype=np.float64).copy()

    def row(self, i: int) -> dict:
        """The metrics of map ``i``: metric -> value."""
        return {k: col[i] for k, col in self.columns.items()}

    def means(self) -> dict:
        """Mean of every metric over the maps where it is finite (NaN when it is finite nowhere)."""
        out = {}
        for k in self.columns:
            v = self.column(k)
            v = v[np.isfinite(v)]
            out[k] = float(v.mean()) if v.size else math.nan
        return out

    def __len__(self) -> int:
        return len(self.names)

    def __iter__(self):
        return iter(self.names)

    def __getitem__(self, name: str) -> dict:
        if self._index is None:
            self._index = {n: i for i, n in enumerate(self.names)}
        return self.row(self._index[name])

    def items(self):
        """``(name, row)`` of every map, in order."""
        return ((n, self.row(i)) for i, n in enumerate(self.names))

    def values(self):
        """The row of every map, in order."""
        return (self.row(i) for i in range(len(self.names)))


def _write_json(fh, obj, indent: int = 0) -> None:
    """Write ``obj`` as indented JSON to ``fh`` piece by piece: a :class:`MetricTable` map per line."""
    pad, inner = " " * indent, " " * (indent + 2)
    if isinstance(obj, MetricTable):
        if not len(obj):
            fh.write("{}")
            return
        fh.write("{")
        for k, (name, row) in enumerate(obj.items()):
            fh.write(f"{',' if k else ''}\n{inner}{json.dumps(name)}: {json.dumps(_clean(row))}")
        fh.write(f"\n{pad}}}")
    elif isinstance(obj, dict) and obj:
        fh.write("{")
        for k, (key, v) in enumerate(obj.items()):
            fh.write(f"{',' if k else ''}\n{inner}{json.dumps(str(key))}: ")
            _write_json(fh, v, indent + 2)
        fh.write(f"\n{pad}}}")
    else:
        fh.write(json.dumps(_clean(obj), default=str))


# ============================================================================ scoring


def score_maps(truth, runs: dict, names: list[str], *, epsilon=None, batch_size: int = 64, examples: int = 0,
               progress=None) -> dict:
    """Score every run on ``names``, streaming.

    Parameters
    ----------
    truth : MapSet
    runs : dict
        ``{label: FolderMaps}``.
    names : list of str
        The names to score (:func:`pair_names`).
    epsilon : MapSet, optional
        Input ellipticities of ``names``: adds ``chi2`` per map.
    batch_size : int
    examples : int
        Keep the truth and predictions of the first ``examples`` maps (for plots).
    progress : callable, optional
        Called with the number of maps done after each batch.

    Returns
    -------
    dict
        ``maps`` ({run: :class:`MetricTable` of name -> metrics}), ``truth``
        (:class:`MetricTable` of name -> wmape_zeros, and with epsilon
        truth_chi2, b_rms, e_rms), ``spectra`` ({"k", run:
        (sum P_pred, sum P_true)}), ``examples`` ([(name, truth, {run: pred})]),
        ``seconds``.
    """
    from astrotool_lens.kappa import metrics as M

    size = truth.size
    per = {r: MetricTable() for r in runs}
    floors = MetricTable()
    spec = {r: None for r in runs}
    kept: list = []
    t0 = time.perf_counter()
    for chunk, tmaps in _truth_batches(truth, names, batch_size):
        emaps = epsilon.read(chunk) if epsilon is not None else None
        preds = {r: [_load_prediction(run, n, size) for n in chunk] for r, run in runs.items()}
        for i, name in enumerate(chunk):
            t = tmaps[i]
            fl = {"wmape_zeros": M.wmape(np.zeros_like(t), t)}
            if emaps is not None:
                c = M.consistency(t, emaps[i])
                fl.update(truth_chi2=c["chi2"], b_rms=c["b_rms"], e_rms=c["e_rms"])
            floors.add(name, fl)
            for r in runs:
                p = preds[r][i]
                m, (pp, pt) = M.map_metrics(p, t, spectra=True)
                if emaps is not None:
                    m["chi2"] = M.consistency(p, emaps[i], b_mode=False)["chi2"]
                per[r].add(name, m)
                acc = spec[r]
                spec[r] = (pp, pt) if acc is None else (acc[0] + pp, acc[1] + pt)
            if len(kept) < examples:
                kept.append((name, np.asarray(t, np.float32), {r: np.asarray(preds[r][i], np.float32) for r in runs}))
        if progress is not None:
            progress(len(chunk))
    seconds = time.perf_counter() - t0
    from astrotool_lens.kappa.maps import power_spectrum

    k = power_spectrum(np.zeros((size, size)))[0]
    return {"maps": per, "truth": floors, "spectra": {"k": k, **spec}, "examples": kept, "seconds": seconds}


# ============================================================================ plots


def _plot_examples(path: Path, examples: list, runs: list[str]) -> Path:
    from astrotool.io.figures import figure

    ncol = 1 + 2 * len(runs)
    with figure(path, len(examples), ncol, figsize=(2.6 * ncol, 2.4 * len(examples)),
                title="true kappa, prediction, residual (prediction - truth)") as (fig, axes):
        for row, (name, t, preds) in enumerate(examples):
            lo, hi = float(np.min(t)), float(np.max(t))
            panels = [(t, f"{name}: truth", (lo, hi), "viridis")]
            for r in runs:
                res = preds[r] - t
                a = float(np.max(np.abs(res))) or 1.0
                panels += [(preds[r], f"{r}", (lo, hi), "viridis"), (res, f"{r} - truth", (-a, a), "RdBu_r")]
            for col, (img, title, (vmin, vmax), cmap) in enumerate(panels):
                ax = axes[row, col]
                im = ax.imshow(img, origin="lower", vmin=vmin, vmax=vmax, cmap=cmap)
                ax.set_title(title, fontsize=7)
                ax.set_xlabel("x [pixels]", fontsize=7)
                ax.set_ylabel("y [pixels]", fontsize=7)
                ax.tick_params(labelsize=6)
                fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04).ax.tick_params(labelsize=6)
    return path


def _plot_hist(path: Path, per: dict, floor: float | None) -> Path:
    from astrotool.io.figures import figure

    with figure(path, 2, 3, figsize=(12, 6.5), title="per-map metrics") as (fig, axes):
        for ax, (key, label) in zip(axes.ravel(), PLOTTED):
            vals = {r: maps.column(key) for r, maps in per.items()}
            allv = np.concatenate([v[np.isfinite(v)] for v in vals.values()]) if vals else np.zeros(0)
            if allv.size:
                lo, hi = np.percentile(allv, [1, 99]) if allv.size > 20 else (allv.min(), allv.max())
                if hi <= lo:
                    lo, hi = lo - 0.5, hi + 0.5
                for r, v in vals.items():
                    v = v[np.isfinite(v)]
                    ax.hist(np.clip(v, lo, hi), bins=30, range=(lo, hi), histtype="step", label=r)
            if key == "wmape" and floor is not None and math.isfinite(floor):
                ax.axvline(floor, color="k", ls="--", lw=1, label="all-zeros map")
            ax.set_xlabel(label + " (1-99% range)")
            ax.set_ylabel("maps")
        axes[0, 0].legend(fontsize=7)
    return path


def _plot_power(path: Path, spectra: dict, runs: list[str]) -> Path:
    from astrotool.io.figures import figure

    k = spectra["k"]
    with figure(path, 1, 1, figsize=(6, 4), title="mean power spectrum: prediction / truth") as (fig, axes):
        ax = axes[0, 0]
        for r in runs:
            pp, pt = spectra[r]
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = pp / pt
            ok = np.isfinite(ratio) & (ratio > 0)
            ax.plot(k[ok], ratio[ok], marker=".", label=r if ok.any() else f"{r} (no power: not drawn)")
        ax.axhline(1.0, color="k", lw=0.8, ls="--")
        ax.set_yscale("log")
        ax.set_xlabel("k [cycles/pixel]")
        ax.set_ylabel("<P_pred(k)> / <P_true(k)>")
        ax.legend(fontsize=7)
    return path


# ============================================================================ the command


def _report_name(labels: list[str]) -> str:
    base = labels[0] if len(labels) == 1 else f"{labels[0]}_vs_{len(labels) - 1}"
    return re.sub(r"[^A-Za-z0-9_.-]", "_", base).lstrip(".") or "kappa"


def applied_split(truth) -> str:
    """The split a truth's maps were taken from: its own for a packed data set, ``"all"`` for any other source.

    A folder, a simulated set, a prediction run or a tarball has no splits: every
    map is used whatever ``[lens.kappa.score] split`` says (a config default
    meant for data sets), so ``"all"`` is what the report records.
    """
    from astrotool_lens.kappa.sources import PackedMaps

    return truth.split if isinstance(truth, PackedMaps) else "all"


def truth_paths(truth) -> list[Path]:
    """The files or folder a truth was read from, as given (a data set's root, the tarballs, the map folder)."""
    from astrotool_lens.kappa.sources import FolderMaps, PackedMaps, TarMaps

    if isinstance(truth, PackedMaps):
        return [Path(truth.ds.root)]
    if isinstance(truth, TarMaps):
        return list(truth.tarballs)
    if isinstance(truth, FolderMaps):
        return [truth.folder]
    return []


def report_settings(truth, runs: dict, s, root=None) -> dict:
    """What a score report is made from, for the "made with other settings" check of a rerun.

    Parameters
    ----------
    truth : MapSet
        The true maps (:func:`astrotool_lens.kappa.sources.open_maps`).
    runs : dict
        Run label -> prediction run (its ``folder``).
    s : astrotool_lens.kappa.config.ScoreConfig
        ``partial`` is read (the split is the one applied: :func:`applied_split`).
    root : path, optional
        The workspace's root: paths inside it are recorded relative to it.

    Returns
    -------
    dict
        ``truth`` (what it is, for reading: not compared), ``truth_paths`` (its
        files or folder, resolved, then relative to the workspace ``root`` when
        inside it, else absolute: a set named by a bare name, a relative path or
        an absolute one is the same set, and a copied or moved workspace makes
        the same record), ``truth_identity``
        (SHA-256, 16 hex digits, of its fingerprint: map names, files or data
        set identity and split), ``split`` (the split applied: ``"all"`` for a
        source without splits), ``partial`` and ``runs`` (label -> folder,
        recorded as the truth's paths are). The predictions' contents are left
        out: scoring a run again after predicting it again is what a rerun is
        for.
    """
    import hashlib

    fp = json.dumps(truth.fingerprint(), sort_keys=True, default=str)
    return {"truth": truth.describe(), "truth_paths": [mw.record_path(p, root) for p in truth_paths(truth)],
            "truth_identity": hashlib.sha256(fp.encode()).hexdigest()[:16],
            "split": applied_split(truth), "partial": bool(s.partial),
            "runs": {r: mw.record_path(runs[r].folder, root) for r in runs}}


def _compared(old: dict, new: dict) -> tuple[dict, dict]:
    """The parts of two settings records that must match: all but ``truth`` (a description, spelled as typed)."""
    new = {k: v for k, v in new.items() if k != "truth"}
    old = {k: v for k, v in old.items() if k != "truth"}
    return old, new


def _check_report(path: Path, settings: dict, overwrite: bool, shown: dict | None = None) -> None:
    """Refuse to replace a report made with other settings (naming the keys) unless ``overwrite``.

    Paths are compared resolved, those inside the workspace relative to its root
    (:func:`report_settings`). A report written before reports held
    ``settings`` is compared on what it holds: ``truth``, ``split`` and each
    run's ``source``, against ``shown`` (the same keys as this run writes them;
    default: taken from ``settings``).
    """
    from astrotool.ml.training import settings_changes

    if overwrite or not path.is_file():
        return
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        old = None
    if not isinstance(old, dict):
        raise AstroError(f"{path}: exists and is not a score report this command can read; use another --name "
                         "or --overwrite")
    if isinstance(old.get("settings"), dict):
        changed = settings_changes(*_compared(old["settings"], settings))
    else:
        runs = old.get("runs") if isinstance(old.get("runs"), dict) else {}
        if shown is None:
            shown = {k: settings[k] for k in ("truth", "split", "runs")}
        changed = settings_changes({"truth": old.get("truth"), "split": old.get("split"),
                                    "runs": {r: (v or {}).get("source") for r, v in runs.items()}}, shown)
    if changed:
        raise AstroError(f"{path}: a score report made with other settings ({'; '.join(changed)}); use another "
                         "--name or --overwrite")


def _rank_line(title: str, r: dict) -> str:
    b = ", ".join(f"{k} {v:g}" for k, v in r["borda"].items())
    c = ", ".join(f"{k} {v:+d}" for k, v in r["copeland"].items())
    return f"ranking on {title}: Borda {b}; Copeland {c}"


def _check_same_source(label: str, folder: Path, info: dict | None, truth) -> None:
    """Refuse a prediction run made from a packed data set other than the truth's (another data set, or the
    truth's set packed again since): its maps pair by name with true maps they were not predicted from. A set
    of another name with the same manifest (the same maps packed twice) is the same data."""
    from astrotool.ml.commands import dataset_identity

    from astrotool_lens.kappa.sources import PackedMaps

    source = ((info or {}).get("made_by") or {}).get("source")
    if not isinstance(truth, PackedMaps) or not isinstance(source, dict):
        return
    now = dataset_identity(truth.ds)
    was = source.get("manifest_sha256")
    if not was or was == now["manifest_sha256"]:
        return
    if source.get("name") == now["name"]:
        raise InputError(folder, f"run {label} was predicted from the data set {now['name']} as it was (manifest "
                                 f"{was}); the truth {now['name']} is now {now['manifest_sha256']}: predict again "
                                 "(astro lens kappa predict or baseline, --overwrite)")
    raise InputError(folder, f"run {label} was predicted from the data set {source.get('name')!r}, not from the "
                             f"truth {now['name']!r} (another manifest): its maps would be scored against true maps "
                             f"of the same names they were not predicted from; give --truth {source.get('name')}")


def score_command(ctx, cfg, predictions: Sequence[str], as_json: bool = False, split_given: bool = False,
                  log_summary: bool = True) -> dict:
    """``astro lens kappa score``: score prediction folders against the truth, rank them, write the report.

    Parameters
    ----------
    ctx : astrotool.context.Context
    cfg : astrotool_lens.kappa.config.KappaConfig
        ``cfg.score`` is read.
    predictions : sequence of str
        Prediction folders or run names.
    as_json : bool
        Print ``{"maps": {name: {...}}, "mean": {...}}`` (one run) or
        ``{"runs": {run: that}, "ranking": {...}}`` (several) instead of one
        line per run.
    split_given : bool
        ``--split`` was given on the command line: refused (exit 2) for a truth
        without splits (a folder, a tarball).
    log_summary : bool
        Log :func:`summary_lines` and the report's path (off: ``astro demo`` quotes them itself).

    Returns
    -------
    dict
        The report written to ``lens/kappa/reports/<report>_score.json``; its
        ``settings`` (:func:`report_settings`) say what it was made from.

    Raises
    ------
    astrotool.errors.InputError
        No truth given, unknown sources, unpaired names, a bad map (named),
        ``split_given`` for a truth without splits.
    astrotool.errors.AstroError
        A report of that name made with other settings (other truth, split,
        ``--partial`` or prediction runs; the keys named), without ``--overwrite``.
    """
    from astrotool.ml import commands as mc
    from astrotool.workspace import atomic_path

    from astrotool_lens.kappa import metrics as M
    from astrotool_lens.kappa.sources import open_maps
    from astrotool_lens.kappa.submission import read_info

    s = cfg.score
    if not predictions:
        raise InputError("PREDICTIONS", "no prediction folder given")
    if not s.truth:
        raise InputError("--truth", "no true maps given: --truth <data set | folder with KAPPA/ | folder of .npy | "
                                    "*.tar.gz> (or [lens.kappa.score] truth)")
    runs = open_predictions(ctx, predictions)
    truth = open_maps(s.truth, "kappa", ctx, split=s.split, split_given=split_given)
    for label, run in runs.items():
        info = read_info(run.folder) or read_info(run.folder.parent)
        if info is not None and not info.get("complete", True):
            ctx.log.warning("prediction run %s is not complete (its prediction.json says so)", label)
        _check_same_source(label, run.folder, info, truth)
    report = s.name or _report_name(list(runs))
    rdir = ctx.workspace.stage("lens", "kappa/reports")
    path = rdir / f"{report}_score.json"
    settings = report_settings(truth, runs, s, root=ctx.workspace.root)
    split = settings["split"]   # the split applied: "all" for a truth without splits, whatever the config says
    shown = {"truth": truth.describe(), "split": split, "runs": {r: str(runs[r].folder) for r in runs}}
    _check_report(path, settings, ctx.overwrite, shown)   # before any work: a refused run costs nothing
    names, unscored = pair_names(truth, runs, s.partial)
    eps = _epsilon_for(truth, names, ctx.log)
    labels = list(runs)

    with ctx.progress(len(names), f"score {', '.join(labels)}") as advance:
        res = score_maps(truth, runs, names, epsilon=eps, batch_size=s.batch_size,
                         examples=s.examples if s.plots else 0, progress=advance)
    n = len(names)
    rate = n * len(runs) / res["seconds"] if res["seconds"] > 0 else None
    floor = res["truth"].means()
    out_runs = {}
    for r in labels:
        mean = res["maps"][r].means()
        mean["wmape_zeros"] = floor["wmape_zeros"]
        if eps is not None:
            mean.update(truth_chi2=floor["truth_chi2"], input_b_rms=floor["b_rms"], input_e_rms=floor["e_rms"])
        out_runs[r] = {"maps": res["maps"][r], "mean": mean}
    ranking = None
    if len(labels) > 1:
        means = {r: out_runs[r]["mean"] for r in labels}
        ranking = {"competition": M.rank(means, M.HIGHER_IS_BETTER, metrics=M.COMPETITION),
                   "all": M.rank(means, M.HIGHER_IS_BETTER, metrics=RANKED)}

    plots: list[Path] = []
    if s.plots:
        if res["examples"]:
            plots.append(_plot_examples(rdir / f"{report}_examples.png", res["examples"], labels))
        plots.append(_plot_hist(rdir / f"{report}_hist.png", res["maps"], floor["wmape_zeros"]))
        plots.append(_plot_power(rdir / f"{report}_power.png", res["spectra"], labels))
    for kind in ("examples", "hist", "power"):  # an earlier report's figures must not pass for this one's
        old = rdir / f"{report}_{kind}.png"
        if old not in plots:
            old.unlink(missing_ok=True)
    k = res["spectra"]["k"]
    power = {"k": k.tolist(), "ratio": {}}
    for r in labels:
        pp, pt = res["spectra"][r]
        with np.errstate(divide="ignore", invalid="ignore"):
            power["ratio"][r] = (pp / pt).tolist()
    truth_inputs = truth_paths(truth)
    doc = {"truth": truth.describe(), "split": split, "n": n, "truth_unscored": unscored,
           "consistency": eps is not None, "maps_per_s": rate,
           "runs": {r: {"source": str(runs[r].folder), **out_runs[r]} for r in labels},
           "ranking": ranking, "power": power, "plots": [str(p) for p in plots], "settings": settings}
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        _write_json(fh, doc)
        fh.write("\n")
    mc.record(ctx, inputs=[*truth_inputs, *(runs[r].folder for r in labels)], outputs=[path, *plots])

    if as_json:
        import sys

        _write_json(sys.stdout, {"runs": out_runs, "ranking": ranking})   # one shape, one run or several
        sys.stdout.write("\n")
        sys.stdout.flush()
        return doc
    if log_summary:
        for line in summary_lines(doc):   # the prose is logged (stderr); stdout gets the table
            ctx.log.info("%s", line)
        ctx.log.info("report: %s", path)
    ctx.emit(summary_rows(out_runs, ranking))   # one row per run: a table, tab-separated when piped
    return doc


def summary_lines(doc: dict) -> list[str]:
    """The score report ``doc`` in sentences: what was scored, a line per run (its means beside the all-zeros
    map's WMAPE), the note on reading WMAPE, the rankings and the input's B-mode RMS; ``astro lens kappa
    score`` logs them and ``astro demo`` quotes them."""
    runs = {r: v["mean"] for r, v in doc["runs"].items()}
    rate, unscored = doc.get("maps_per_s"), doc.get("truth_unscored")
    lines = [f"{doc['truth']}: {doc['n']} maps scored" + (f" ({unscored} true maps without prediction)" if unscored
                                                           else "") + (f", {rate:.0f} maps/s" if rate else "")]
    for r, m in runs.items():
        line = (f"{r}: WMAPE {m['wmape']:.3f} (all-zeros map {m['wmape_zeros']:.3f}), DICEE {m['dicee']:.4f}, "
                f"DPEAKS {m['dpeaks']:.1f} px (highest peak {m['dpeak1']:.1f}), MSE {m['mse']:.3g}, "
                f"r {m['pearson']:.3f}, SSIM {m['ssim']:.3f}")
        if "truth_chi2" in m:
            line += f", chi2 {m['chi2']:.3f} (truth {m['truth_chi2']:.3f})"
        lines.append(line)
    zeros = next(iter(runs.values()))["wmape_zeros"] if runs else float("nan")
    if any(m["wmape"] >= m["wmape_zeros"] for m in runs.values()):
        lines.append(f"note: WMAPE at or above the all-zeros map's ({zeros:.3f} on this truth) is normal "
                     "(shrinking toward 0 wins: c*kappa scores |1-c| for c != 0): judge by DICEE, DPEAKS and r, "
                     "never by WMAPE alone")
    if doc.get("ranking"):
        lines.append(_rank_line("WMAPE, DICEE, DPEAKS", doc["ranking"]["competition"]))
        lines.append(_rank_line("all scores", doc["ranking"]["all"]))
    m0 = next(iter(runs.values()), {})
    if "input_b_rms" in m0:
        lines.append(f"input B-mode RMS {m0['input_b_rms']:.4g} (E-mode {m0['input_e_rms']:.4g})")
    return lines


SUMMARY_KEYS = ("wmape", "dicee", "dpeaks", "dpeak1", "mse", "pearson", "ssim", "chi2")
"""The mean scores ``astro lens kappa score`` prints per run (``chi2`` only with the input ellipticities at
hand; all of them per map: ``--json`` and the report). The truth's own ``wmape_zeros`` and ``truth_chi2``,
the same for every run of a call, are left to the log line of each run and to ``--json``: a table of 13
columns at most."""


def summary_rows(runs: dict, ranking: dict | None = None) -> list[dict]:
    """One record per run: ``run``, its mean :data:`SUMMARY_KEYS` (4 significant digits) and, for several runs,
    its Borda and Copeland scores on the Datathon metrics (``borda``, ``copeland``) and on all the scores
    (``borda_all``, ``copeland_all``): the table ``astro lens kappa score`` prints."""
    def num(v):
        return float(f"{v:.4g}") if isinstance(v, float) else v

    rows = []
    for r, run in runs.items():
        row = {"run": r, **{k: num(run["mean"][k]) for k in SUMMARY_KEYS if k in run["mean"]}}
        if ranking:
            for col, group in (("", "competition"), ("_all", "all")):
                row[f"borda{col}"] = num(float(ranking[group]["borda"][r]))
                row[f"copeland{col}"] = int(ranking[group]["copeland"][r])
        rows.append(row)
    return rows
