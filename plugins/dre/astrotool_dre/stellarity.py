"""Size-based stellarity: the stellar locus and a ``CLASS_STAR`` from sizes.

Used by the photutils engine, and by the SExtractor engine when SExtractor's
neural network (``default.nnw``) cannot be found; SExtractor's pass 1 uses the
locus to measure the seeing.

The stellar locus radius ``r*`` is the smallest tight clump of ``FLUX_RADIUS``
values among S/N >= 20, unflagged, round sources (a +-5 % window holding at
least half as many sources as the richest window, and at least 3). Then
``CLASS_STAR = 1`` for ``FLUX_RADIUS <= r*`` and
``exp(-((FLUX_RADIUS - r*) / s)**2 / 2)`` above, with
``s = r* * hypot(0.08, 2 / SNR)``: stars score near 1, resolved galaxies near 0.
When no locus is found every source gets 0.5.
"""

from __future__ import annotations

import math

import numpy as np

__docformat__ = "numpy"

__all__ = ["stellar_locus", "size_stellarity"]


def stellar_locus(flux_radius, snr, flags=None, elongation=None, *, min_snr=20.0, window=0.05,
                  min_count=3) -> float | None:
    """Half-light radius of the stellar locus, pixels, or None.

    Parameters
    ----------
    flux_radius : array_like
        ``FLUX_RADIUS`` (px).
    snr : array_like
        Signal-to-noise ratio of each source.
    flags, elongation : array_like, optional
        Sources with ``flags >= 4`` or ``elongation >= 1.5`` are ignored.
    min_snr : float
        Only sources above this S/N are used.
    window : float
        Relative half-width of the clump window (0.05 = +-5 %).
    min_count : int
        Minimum number of sources in the locus.

    Returns
    -------
    float or None
        Median ``FLUX_RADIUS`` of the smallest tight clump.
    """
    r = np.asarray(flux_radius, dtype=float)
    ok = np.isfinite(r) & (r > 0) & (np.asarray(snr, dtype=float) >= min_snr)
    if flags is not None:
        ok &= np.asarray(flags) < 4
    if elongation is not None:
        ok &= np.asarray(elongation, dtype=float) < 1.5
    lr = np.sort(np.log(r[ok]))
    if lr.size < min_count:
        return None
    w = math.log1p(window)
    lo = np.searchsorted(lr, lr - w, side="left")
    hi = np.searchsorted(lr, lr + w, side="right")
    counts = hi - lo
    need = max(min_count, int(math.ceil(0.5 * counts.max())))
    cand = np.nonzero(counts >= need)[0]
    if cand.size == 0:
        return None
    i = cand[0]
    # centre on the richest window among those overlapping the smallest clump
    j = i + int(np.argmax(counts[i: hi[i]]))
    return float(np.exp(np.median(lr[lo[j]: hi[j]])))


def size_stellarity(flux_radius, snr, r_star: float | None, *, tolerance: float = 0.08) -> np.ndarray:
    """Size-based stellarity in [0, 1] (stands in for ``CLASS_STAR``).

    Parameters
    ----------
    flux_radius : array_like
        ``FLUX_RADIUS`` (px).
    snr : array_like
        Signal-to-noise ratio.
    r_star : float or None
        Stellar locus radius (px), from :func:`stellar_locus`; None gives 0.5.
    tolerance : float
        Relative intrinsic width of the locus.

    Returns
    -------
    numpy.ndarray
        float32, 1 on or below the locus, falling as a Gaussian in radius above.
    """
    r = np.asarray(flux_radius, dtype=float)
    if r_star is None:
        return np.full(r.shape, 0.5, dtype=np.float32)
    s = np.asarray(snr, dtype=float)
    s = np.where(np.isfinite(s) & (s > 0), s, 1.0)
    sig = r_star * np.hypot(tolerance, 2.0 / s)
    z = np.clip(r - r_star, 0.0, None) / sig
    out = np.exp(-0.5 * z * z)
    out[~np.isfinite(r)] = 0.0
    return out.astype(np.float32)
