"""Classical convergence reconstructions, written like predictions: KS, Wiener, all-zeros, training mean.

Methods (``[lens.kappa.baseline] method``):

``ks``
    Kaiser-Squires: the E-mode map of (e1, e2)
    (:func:`astrotool_lens.kappa.maps.kaiser_squires`), Gaussian-smoothed by
    ``sigma`` pixels. The ellipticity is taken as an estimate of the shear
    (reduced shear ``g = gamma / (1 - kappa)`` is not undone).
``wiener``
    The Wiener filter ``W(k) = P(k) / (f P(k) + N)`` applied to the
    unsmoothed KS E map (:func:`wiener_filter`), per map:

    * ``P(k)`` -- the signal power spectrum: the ring-averaged spectrum of the
      kappa maps of the TRAINING split (:func:`astrotool_lens.kappa.maps.power_spectrum`,
      mean over maps), interpolated onto the 2-D ``|k|`` grid linearly in
      ``log P`` (held constant below the first ring and beyond ``|k| = 0.5``);
    * ``N`` -- the noise power: white noise of per-pixel variance
      ``mean(de^2)`` over the pixels with galaxies, i.e. ``de`` is read as the
      standard deviation of each ellipticity component of the pixel about the
      shear (shape noise and measurement error together). A pixel without
      galaxies is one whose ``(e1, e2)`` is exactly ``(0, 0)`` or whose ``de``
      is not positive: its ``de`` is ignored, whatever the sentinel
      (``astro lens kappa simulate`` writes 10 times one galaxy's error there).
      The KS kernel has unit modulus per mode (``p1^2 + p2^2 = 1``; less on
      the Nyquist lines of an even grid, where ``p2`` is 0), so the KS E
      map's noise power equals that of one ellipticity component. A map
      with ellipticities but no pixel with ``de > 0`` (noise-free data, or
      errors not given) is refused (exit 2, naming it): its noise power is
      unknown, and ``N = 0`` would make the filter ``1 / f``, unsmoothed
      KS; use ``--method ks`` for such data;
    * ``f`` -- the fraction of pixels with galaxies: empty pixels hold
      ``epsilon = 0``, which scales the signal of the KS map by about ``f``
      and its noise power by ``f``; for ``f = 1`` this is the textbook
      ``P / (P + N)``.

    Assumptions: stationary noise (one level per map, the mask's mode mixing
    ignored), a periodic map (the FFT's), Gaussian statistics (for
    cluster-scale halos the filter is the best *linear* estimate, not the
    best one). The mean of kappa is not constrained by shear (``k = 0`` is
    0) so the map has zero mean, like KS. As a check of the ``de`` reading
    the summary gives ``noise_b_ratio``: the mean power of the KS B-mode map
    (pure noise for a lens) over ``f N``, about 1 when ``de`` is right.
``zero``
    All zeros (WMAPE's floor: a prediction ``c kappa``, ``c != 0``, scores
    ``|1 - c|``; the zeros map about 1 where every ``|kappa| >> 1e-5``).
``mean``
    The pixel-wise mean of the training split's kappa maps.

Run folder: ``lens/kappa/predictions/<output>/`` through
:class:`~astrotool_lens.kappa.submission.PredictionWriter` (default name
``<dataset>_<method>``; for KS ``<dataset>_ks<sigma>``, e.g. ``sims_ks2``).
"""

from __future__ import annotations

import time

import numpy as np

from astrotool.errors import InputError

__docformat__ = "numpy"

__all__ = ["BATCH", "baseline_command", "default_run_name", "mean_map", "reconstruct", "signal_power",
           "signal_power_2d", "wiener_filter", "wiener_noise"]

BATCH = 64
"""Maps read, reconstructed and written at a time."""


def default_run_name(dataset: str, method: str, sigma: float = 0.0) -> str:
    """``<dataset>_<method>``; for KS the smoothing too: ``<dataset>_ks<sigma>`` (``sims_ks2``, ``sims_ks1.5``)."""
    return f"{dataset}_ks{float(sigma):g}" if method == "ks" else f"{dataset}_{method}"


# ---------------------------------------------------------------- training statistics


def _train_kappa_batches(ds, batch: int = BATCH, given: bool = False):
    """Stream the training split's kappa maps (float64) of a KappaDataset.

    ``given``: ``ds`` was named by ``--train-dataset`` (the refusals then say what is wrong with that set
    instead of suggesting the option).
    """
    if not ds.has_kappa:
        fix = ("the set given with --train-dataset was packed from inputs alone: give it a set packed with "
               "kappa maps (from a simulated set or a folder with KAPPA/)" if given
               else "give one with --train-dataset NAME")
        raise InputError(ds.root, "holds no kappa maps (an input-only set): the Wiener and mean baselines need a "
                                  f"training split with kappa ({fix})")
    idx = ds.split_indices("train")
    if not idx.size:
        fix = ("the set given with --train-dataset has an empty train split: give it another set, or repack "
               "this one with a training fraction (lens.kappa.data.split)" if given
               else "give another data set with --train-dataset NAME")
        raise InputError(ds.root, f"has no training maps: the Wiener and mean baselines estimate from them ({fix})")
    for b in ds.iter_batches(batch, names=["kappa"], indices=idx, check_finite=True):
        yield b["kappa"].astype(np.float64)


def signal_power(kappa_batches, n_bins: int | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """Mean ring-averaged power spectrum of kappa maps streamed in batches.

    Parameters
    ----------
    kappa_batches : iterable of numpy.ndarray, each (n, S, S)
    n_bins : int, optional
        Rings (:func:`~astrotool_lens.kappa.maps.power_spectrum`; default ``S // 2``).

    Returns
    -------
    k : numpy.ndarray
        Ring centres [cycles/pixel].
    power : numpy.ndarray
        Mean power per ring (NaN for a ring holding no mode).
    n : int
        Maps averaged.
    """
    from astrotool_lens.kappa.maps import power_spectrum

    total, n, k = None, 0, None
    for kap in kappa_batches:
        k, p = power_spectrum(kap, n_bins)
        s = p.reshape(-1, p.shape[-1]).sum(axis=0)
        total = s if total is None else total + s
        n += int(np.prod(p.shape[:-1]))
    if not n:
        raise ValueError("no maps to estimate the power spectrum from")
    return k, total / n, n


def signal_power_2d(k: np.ndarray, power: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A ring-averaged spectrum on the 2-D FFT grid of ``shape`` (``(ny, nx)``).

    Linear in ``log P`` between ring centres, constant below the first and
    beyond the last (the corners ``|k| > 0.5``); rings without modes are
    skipped; ``k = 0`` gets 0.
    """
    from astrotool_lens.kappa.maps import wave_vectors

    k, power = np.asarray(k, float), np.asarray(power, float)
    ok = np.isfinite(power)
    if not ok.any():
        raise ValueError("the power spectrum has no finite ring")
    tiny = np.finfo(np.float64).tiny
    logp = np.log(np.maximum(power[ok], tiny))
    kabs = np.sqrt(wave_vectors(shape)[2])
    out = np.exp(np.interp(kabs, k[ok], logp))
    out[0, 0] = 0.0
    return out


def wiener_noise(epsilon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-map white-noise power and fill fraction from the error maps.

    Parameters
    ----------
    epsilon : numpy.ndarray, shape (n, 3, S, S)
        e1, e2, de.

    Returns
    -------
    noise : numpy.ndarray, shape (n,)
        ``mean(de^2)`` over the pixels with galaxies; 0 for a map without any.
    fill : numpy.ndarray, shape (n,)
        Fraction of pixels with galaxies: ``(e1, e2) != (0, 0)`` and
        ``de > 0`` (an empty pixel's ``de``, 0 or a sentinel, is ignored).
    """
    eps = np.asarray(epsilon)
    de = eps[:, 2].astype(np.float64).reshape(len(eps), -1)
    e = eps[:, :2].reshape(len(eps), 2, -1)
    has = (de > 0) & ((e[:, 0] != 0) | (e[:, 1] != 0))
    de = np.where(has, de, 0.0)
    count = has.sum(axis=1)
    noise = np.where(count > 0, (de * de * has).sum(axis=1) / np.maximum(count, 1), 0.0)
    return noise, count / de.shape[1]


def wiener_filter(signal_2d: np.ndarray, noise, fill=1.0) -> np.ndarray:
    """``W(k) = P(k) / (f P(k) + N)`` per map.

    Parameters
    ----------
    signal_2d : numpy.ndarray, shape (S, S)
        Signal power on the FFT grid (:func:`signal_power_2d`).
    noise : float or array-like, shape (n,)
        White-noise power per map (:func:`wiener_noise`).
    fill : float or array-like, shape (n,)
        Fraction of pixels with galaxies.

    Returns
    -------
    numpy.ndarray, shape (n, S, S) (or (S, S) for scalars)
        Tends to ``1 / f`` where ``P >> N`` and to 0 where ``P << N``; 0 for a
        map without galaxies.
    """
    p = np.asarray(signal_2d, dtype=np.float64)
    n = np.asarray(noise, dtype=np.float64)[..., None, None]
    f = np.asarray(fill, dtype=np.float64)[..., None, None]
    den = f * p + n
    with np.errstate(invalid="ignore", divide="ignore"):
        w = np.where(den > 0, p / np.where(den > 0, den, 1.0), 0.0)
    return np.where(f > 0, w, 0.0)


def mean_map(kappa_batches) -> tuple[np.ndarray, int]:
    """Pixel-wise mean of kappa maps streamed in batches; returns ``(mean (S, S) float64, n)``."""
    total, n = None, 0
    for kap in kappa_batches:
        s = kap.sum(axis=0)
        total = s if total is None else total + s
        n += len(kap)
    if not n:
        raise ValueError("no maps to average")
    return total / n, n


# ---------------------------------------------------------------- reconstruction


def reconstruct(epsilon: np.ndarray, method: str, sigma: float = 0.0, signal_2d: np.ndarray | None = None,
                mean: np.ndarray | None = None) -> tuple[np.ndarray, dict]:
    """Reconstruct kappa from a batch of epsilon maps.

    Parameters
    ----------
    epsilon : numpy.ndarray, shape (n, 3, S, S)
    method : {"ks", "wiener", "zero", "mean"}
    sigma : float
        KS smoothing [pixels].
    signal_2d : numpy.ndarray, shape (S, S)
        Wiener signal power on the FFT grid.
    mean : numpy.ndarray, shape (S, S)
        The training mean map.

    Returns
    -------
    kappa : numpy.ndarray, shape (n, S, S), float64
    extra : dict
        For ``wiener``: ``noise``, ``fill``, ``b_power`` (mean KS B-mode
        power) and ``no_noise`` (True for a map with ellipticities but no
        pixel with ``de > 0``: its noise power is unknown, its map 0) per map.
    """
    from astrotool_lens.kappa.maps import kaiser_squires

    eps = np.asarray(epsilon)
    n, s = eps.shape[0], eps.shape[-2:]
    if method == "zero":
        return np.zeros((n, *s)), {}
    if method == "mean":
        return np.broadcast_to(np.asarray(mean, np.float64), (n, *s)).copy(), {}
    if method == "ks":
        return kaiser_squires(eps[:, 0], eps[:, 1], sigma=sigma)[0], {}
    if method == "wiener":
        ke, kb = kaiser_squires(eps[:, 0], eps[:, 1])
        noise, fill = wiener_noise(eps)
        w = wiener_filter(signal_2d, noise, fill)
        out = np.fft.ifft2(np.fft.fft2(ke) * w).real
        no_noise = (fill == 0) & eps[:, :2].any(axis=(1, 2, 3))
        return out, {"noise": noise, "fill": fill, "b_power": (kb * kb).mean(axis=(-2, -1)), "no_noise": no_noise}
    raise ValueError(f"unknown method {method!r} (ks, wiener, zero, mean)")


def baseline_command(ctx, cfg) -> dict:
    """``astro lens kappa baseline``: reconstruct a packed set's split and write it as a prediction run.

    Parameters
    ----------
    ctx : astrotool.context.Context
    cfg : astrotool_lens.kappa.config.KappaConfig
        ``cfg.baseline`` is read.

    Returns
    -------
    dict
        The summary it emits: method, dataset, split, n, computed, kept, output,
        zip, maps_per_s (reconstruction and writing of the maps computed), and
        for ``wiener`` the noise figures.

    Raises
    ------
    astrotool.errors.InputError
        No such data set, an empty split, bad maps (NaN named with the shard
        and map), a Wiener/mean baseline without training kappa, a Wiener
        baseline of a map with ellipticities but no pixel with ``de > 0``.
    astrotool.errors.AstroError
        The run folder was made with other settings (without ``--overwrite``).
    """
    from astrotool.ml import commands as mc

    from astrotool_lens.kappa.data import open_packed
    from astrotool_lens.kappa.submission import PredictionWriter, finish_run, shard_names

    b = cfg.baseline
    ds = open_packed(ctx, b.dataset, "--dataset")
    idx = ds.split_indices(b.split)
    if not idx.size:
        raise InputError(ds.root, f"has no maps in split {b.split!r}")
    all_names = ds.names
    names = all_names[idx]
    settings: dict = {}
    signal_2d = mean = None
    extra_summary: dict = {}
    if b.method == "ks":
        settings = {"sigma": float(b.sigma)}
    elif b.method in ("wiener", "mean"):
        train = open_packed(ctx, b.train_dataset, "--train-dataset") if b.train_dataset else ds
        if train.size != ds.size:
            raise InputError(train.root, f"maps are {train.size}x{train.size}, the data set's {ds.size}x{ds.size}")
        settings = {"train": mc.dataset_identity(train)}
        if b.method == "wiener":
            n_bins = ds.size // 2
            k, p, n_train = signal_power(_train_kappa_batches(train, given=bool(b.train_dataset)), n_bins)
            signal_2d = signal_power_2d(k, p, (ds.size, ds.size))
            settings["n_bins"] = n_bins
            extra_summary["signal_power"] = {"k": [round(float(x), 6) for x in k],
                                             "power": [None if not np.isfinite(x) else float(x) for x in p]}
        else:
            mean, n_train = mean_map(_train_kappa_batches(train, given=bool(b.train_dataset)))
        extra_summary["train_maps"] = n_train
    run = b.name or default_run_name(ds.name, b.method, b.sigma)
    folder = ctx.workspace.stage("lens", "kappa/predictions") / run
    made_by = {"method": b.method, "settings": settings, "source": mc.dataset_identity(ds), "split": b.split,
               "n": int(idx.size), "size": ds.size}
    only = shard_names(ctx, names)   # under --shard, this task's share
    share = int(idx.size) if only is None else len(only)
    with PredictionWriter(folder, made_by, overwrite=ctx.overwrite) as writer:  # an error keeps an old run
        todo = [n for n in writer.missing(names) if only is None or n in only]
        writer.begin(todo)   # a finished run about to change is no longer complete
        todo = set(todo)
        sel = np.array([i for i, nm in zip(idx, names) if nm in todo], dtype=np.int64)
        noise, b_power = [], []
        t0 = time.perf_counter()
        with ctx.progress(int(sel.size), f"{b.method} {run}") as advance:
            if b.method in ("zero", "mean"):  # the inputs play no part: names only
                for a in range(0, sel.size, BATCH):
                    part = sel[a:a + BATCH]
                    kap, _ = reconstruct(np.zeros((len(part), 3, ds.size, ds.size), np.float32), b.method, mean=mean)
                    writer.write(all_names[part], kap)
                    advance(len(part))
            else:
                for batch in ds.iter_batches(BATCH, names=["epsilon"], indices=sel, check_finite=True):
                    kap, extra = reconstruct(batch["epsilon"], b.method, b.sigma, signal_2d)
                    if extra and extra["no_noise"].any():
                        name = str(all_names[batch["index"][np.argmax(extra["no_noise"])]])
                        raise InputError(ds.root, f"map {name!r}: no pixel with Δε > 0: cannot estimate the noise "
                                                  "power of the Wiener filter (noise-free or missing errors); use "
                                                  "--method ks")
                    if extra:
                        noise.append(extra["noise"] * extra["fill"])
                        b_power.append(extra["b_power"])
                    writer.write(all_names[batch["index"]], kap)
                    advance(len(batch["index"]))
        seconds = time.perf_counter() - t0
        rate = round(sel.size / seconds, 1) if sel.size and seconds > 0 else None
        if noise:
            fn, bp = np.concatenate(noise), np.concatenate(b_power)
            extra_summary["noise_power_mean"] = float(fn.mean())
            extra_summary["noise_b_ratio"] = float(bp.mean() / fn.mean()) if fn.mean() > 0 else None
        summary = {"method": b.method, "dataset": ds.name, "split": b.split, "n": int(idx.size),
                   "computed": int(sel.size), "kept": int(share - sel.size), "maps_per_s": rate,
                   **({"sigma": float(b.sigma)} if b.method == "ks" else {})}
        stored = {k: v for k, v in extra_summary.items() if k != "signal_power"}
        res = finish_run(ctx, writer, names, None, b.zip, {**summary, **extra_summary})
    mc.record(ctx, outputs=[p for p in (res["output"], res["zip"]) if p])
    out = {**summary, **stored, **res}
    ctx.emit(out)
    return out
