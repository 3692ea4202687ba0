"""Convergence and shear on a pixel grid: the Fourier-space lensing relations, defined once.

Conventions (shared by every ``astro lens kappa`` command):

* Maps are arrays ``(..., ny, nx)``: x along the last axis, y along the one before,
  as in the rest of :mod:`astrotool_lens`. Leading axes are batches.
* Wave vectors are in cycles per pixel (``numpy.fft.fftfreq``): ``k1`` along x,
  ``k2`` along y, ``k^2 = k1^2 + k2^2``.
* Shear from convergence (the lensing relation, flat sky, periodic grid)::

      gamma1^ = (k1^2 - k2^2) / k^2 * kappa^      gamma2^ = 2 k1 k2 / k^2 * kappa^

* Kaiser-Squires (1993), its inverse, splits a spin-2 field into E and B modes::

      kappaE^ = [(k1^2 - k2^2) gamma1^ + 2 k1 k2 gamma2^] / k^2
      kappaB^ = [-2 k1 k2 gamma1^ + (k1^2 - k2^2) gamma2^] / k^2

  with ``kappa^(0) = 0``: the mean of the map is not constrained by shear (the
  mass-sheet degeneracy), so reconstructions have zero mean. The same as
  ``lenspack.image.inversion.ks93`` except on the Nyquist lines of an even-sized
  grid (``k1`` or ``k2`` = -1/2), where ``2 k1 k2`` is set to 0: there ``k`` and
  ``-k`` are one mode, an odd kernel cannot keep a real map real (ks93 drops the
  imaginary part it creates), and flipping the map would not flip its reconstruction.
* Gaussian smoothing of width ``sigma`` [pixels] multiplies by
  ``exp(-2 pi^2 sigma^2 k^2)`` (periodic boundaries).
* Power spectra are ``|FFT(map)|^2 / (nx ny)`` averaged in rings of ``|k|``: white
  noise of variance ``s^2`` per pixel has a flat spectrum ``s^2``.
* The square's symmetries act on a spin-2 field (ellipticity, shear) with the signs of
  :data:`astrotool_lens.shear.D4_SIGNS`: a flip negates component 2, a 90-degree
  rotation negates both; kappa and the error map transform as scalars
  (:func:`d4_maps`).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from astrotool_lens.shear import D4_SIGNS, d4_transform

__docformat__ = "numpy"

__all__ = ["wave_vectors", "shear_from_kappa", "kaiser_squires", "smooth", "power_spectrum", "d4_maps"]


@lru_cache(maxsize=8)
def _kgrid(ny: int, nx: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    k1, k2 = np.meshgrid(np.fft.fftfreq(nx), np.fft.fftfreq(ny))
    ksq = k1 * k1 + k2 * k2
    for a in (k1, k2, ksq):
        a.setflags(write=False)
    return k1, k2, ksq


def wave_vectors(shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(k1, k2, k^2)`` of a ``(..., ny, nx)`` grid [cycles/pixel], each ``(ny, nx)``, read-only."""
    return _kgrid(int(shape[-2]), int(shape[-1]))


def _kernels(shape) -> tuple[np.ndarray, np.ndarray]:
    """``(k1^2 - k2^2) / k^2`` and ``2 k1 k2 / k^2``, both 0 at ``k = 0``."""
    k1, k2, ksq = wave_vectors(shape)
    safe = np.where(ksq == 0, 1.0, ksq)
    p1 = (k1 * k1 - k2 * k2) / safe
    p2 = 2 * k1 * k2 / safe
    p1[0, 0] = p2[0, 0] = 0.0
    # on the Nyquist lines of an even-sized grid k and -k are the same mode, so the odd kernel
    # 2 k1 k2 cannot be Hermitian there: set it to 0 to keep real maps real and flips exact
    p2[k1 == -0.5] = 0.0
    p2[k2 == -0.5] = 0.0
    return p1, p2


def _gauss(shape, sigma: float) -> np.ndarray | float:
    if not sigma:
        return 1.0
    return np.exp(-2 * np.pi**2 * float(sigma) ** 2 * wave_vectors(shape)[2])


def shear_from_kappa(kappa_e, kappa_b=None) -> tuple[np.ndarray, np.ndarray]:
    """Shear ``(gamma1, gamma2)`` of a convergence map (and optionally a B-mode map).

    Parameters
    ----------
    kappa_e : array_like, shape (..., ny, nx)
        Convergence (E mode).
    kappa_b : array_like, optional
        B-mode convergence (zero for a physical lens).

    Returns
    -------
    gamma1, gamma2 : numpy.ndarray
        float64, the shape of ``kappa_e``. The mean of ``kappa_e`` does not
        enter (``k = 0`` carries no shear).
    """
    ke = np.asarray(kappa_e, dtype=np.float64)
    p1, p2 = _kernels(ke.shape)
    fe = np.fft.fft2(ke)
    g1, g2 = p1 * fe, p2 * fe
    if kappa_b is not None:
        fb = np.fft.fft2(np.asarray(kappa_b, dtype=np.float64))
        g1, g2 = g1 - p2 * fb, g2 + p1 * fb
    return np.fft.ifft2(g1).real, np.fft.ifft2(g2).real


def kaiser_squires(gamma1, gamma2, sigma: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Kaiser-Squires inversion: E- and B-mode convergence from a shear (or ellipticity) map.

    Parameters
    ----------
    gamma1, gamma2 : array_like, shape (..., ny, nx)
    sigma : float
        Gaussian smoothing [pixels] applied to both modes (0: none).

    Returns
    -------
    kappa_e, kappa_b : numpy.ndarray
        float64, zero mean.
    """
    g1 = np.asarray(gamma1, dtype=np.float64)
    g2 = np.asarray(gamma2, dtype=np.float64)
    if g1.shape != g2.shape:
        raise ValueError(f"gamma1 {g1.shape} and gamma2 {g2.shape} differ in shape")
    p1, p2 = _kernels(g1.shape)
    f1, f2 = np.fft.fft2(g1), np.fft.fft2(g2)
    w = _gauss(g1.shape, sigma)
    ke = np.fft.ifft2((p1 * f1 + p2 * f2) * w).real
    kb = np.fft.ifft2((p1 * f2 - p2 * f1) * w).real
    return ke, kb


def smooth(maps, sigma: float) -> np.ndarray:
    """Gaussian smoothing of ``(..., ny, nx)`` maps, ``sigma`` in pixels (periodic; 0: unchanged copy)."""
    m = np.asarray(maps, dtype=np.float64)
    if not sigma:
        return m.copy()
    return np.fft.ifft2(np.fft.fft2(m) * _gauss(m.shape, sigma)).real


def power_spectrum(maps, n_bins: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Ring-averaged power spectrum of ``(..., ny, nx)`` maps.

    Parameters
    ----------
    maps : array_like
        One map or a batch; a batch gives one spectrum per map.
    n_bins : int, optional
        Rings of equal width in ``|k|`` from 0 to 0.5 cycles/pixel (default
        ``min(ny, nx) // 2``). The ``k = 0`` mode is left out.

    Returns
    -------
    k : numpy.ndarray, shape (n_bins,)
        Ring centres [cycles/pixel].
    power : numpy.ndarray, shape (..., n_bins)
        Mean of ``|FFT|^2 / (ny nx)`` in each ring (NaN for an empty ring).
    """
    m = np.asarray(maps, dtype=np.float64)
    ny, nx = m.shape[-2:]
    n_bins = int(n_bins or min(ny, nx) // 2)
    kabs = np.sqrt(wave_vectors(m.shape)[2])
    edges = np.linspace(0.0, 0.5, n_bins + 1)
    idx = np.minimum(np.digitize(kabs, edges) - 1, n_bins - 1)  # |k| = 0.5 exactly: the last ring
    idx[0, 0] = -1
    idx[kabs > 0.5] = -1
    p = np.abs(np.fft.fft2(m)) ** 2 / (ny * nx)
    flat = p.reshape(*p.shape[:-2], -1)
    sel = idx.ravel() >= 0
    counts = np.bincount(idx.ravel()[sel], minlength=n_bins).astype(np.float64)
    lead = flat.shape[:-1]
    flat2 = flat.reshape(-1, flat.shape[-1])[:, sel]
    out = np.stack([np.bincount(idx.ravel()[sel], weights=row, minlength=n_bins) for row in flat2])
    with np.errstate(invalid="ignore", divide="ignore"):
        out = out / counts
    return 0.5 * (edges[1:] + edges[:-1]), out.reshape(*lead, n_bins)


def d4_maps(epsilon, kappa=None, k: int = 0):
    """Apply symmetry ``k`` (0-7, see :func:`astrotool_lens.shear.d4_transform`) to an input and its target.

    Parameters
    ----------
    epsilon : numpy.ndarray or torch.Tensor, shape (..., C, ny, nx)
        Channels 0 and 1 are a spin-2 field (epsilon1, epsilon2) and get the
        signs of :data:`~astrotool_lens.shear.D4_SIGNS`; any further channel
        (the error map, |epsilon|, a Kaiser-Squires map) is a scalar.
    kappa : numpy.ndarray or torch.Tensor, optional
        Convergence ``(..., ny, nx)``, a scalar.
    k : int

    Returns
    -------
    epsilon, kappa
        Transformed copies (``kappa`` is ``None`` if not given). The pair stays
        physically consistent: ``kaiser_squires`` of the transformed epsilon
        equals the transformed ``kaiser_squires`` of epsilon.
    """
    s1, s2 = D4_SIGNS[int(k)]
    e = d4_transform(epsilon, int(k))
    e = e.clone() if not isinstance(e, np.ndarray) else e.copy()
    if s1 != 1.0:
        e[..., 0, :, :] *= s1
    if s2 != 1.0:
        e[..., 1, :, :] *= s2
    if kappa is None:
        return e, None
    kt = d4_transform(kappa, int(k))
    return e, (kt.clone() if not isinstance(kt, np.ndarray) else kt.copy())
