"""Fitting a grid of PSF-convolved Sérsic models to galaxy stamps, in batches.

The pipeline for one tile::

    be = get_backend("numpy" | "torch" | "cupy", "cpu" | "cuda" | "auto")
    conv = convolve_cube(cube, psf, be)            # once per tile (FFT, batched)
    bank = ModelBank(conv, grid, be)
    res = fit_objects(bank, data, rms, mask, gain=gain)   # any number of objects
    table = best_parameters(res.chi2, grid, res.flux, res.npix, swd2=res.swd2)

Statistic ``"chi2"`` (default)
------------------------------
Per object, with stamp d, weights w = mask / sigma^2 and model m_k (unit total
flux), the least-squares flux and chi-square of every model are

    a_k  = sum(w d m_k) / sum(w m_k^2)
    X2_k = sum(w d^2) - sum(w d m_k)^2 / sum(w m_k^2)

For a batch of B objects the two sums over pixels are the matrix products
``(w*d) @ M.T`` and ``w @ (M*M).T`` with M the (K, P) model matrix: float32 GEMMs
(BLAS on the CPU, cuBLAS on a GPU).  ``sum(w d^2)`` and the final combination are
done in float64, so the subtraction does not lose the chi-square to cancellation;
the remaining error is the float32 accumulation inside the GEMM, at most a few
1e-6 of ``sum(w d^2)`` ~ (S/N)^2: below 0.1 in chi-square for S/N < 100, and
always far below the chi-square steps between neighbouring grid models of such
bright objects.  ``ModelBank(..., dtype="float64")`` gives exact sums at about
twice the cost.

Pixels and weights
------------------
``mask`` is the object's own segment minus its neighbours (built by the caller);
non-finite data or rms, and rms <= 0, are masked too.  The variance is

    sigma^2 = rms^2 + max(source, 0) / gain

with ``gain`` in electrons per data unit (``None`` or <= 0: no source term).
The source term needs the galaxy's light: pass 1 uses the data smoothed with a
3x3 box (noise-averaged so that the weights do not favour downward
fluctuations); each of the ``reweight`` further passes uses the best-fit model
a_k* m_k* of the previous pass (iteratively reweighted least squares).  Without a
gain the weights do not depend on the model and one pass is exact.

Cropping
--------
Models are centred, so only the pixels inside the mask matter: each object is fit
on the centred square crop (sizes in :data:`CROP_SIZES`) that contains its mask,
and objects are batched by crop size.  The result is identical to a full-stamp
fit; the products are smaller by the area ratio (typically 5-20x).

Statistic ``"dre"``
-------------------
DRE's original statistic (Cnmoya/DRE ``dre_fit``), on the segment S:
flux matching s_k = sum_S d / sum_S m_k (not least squares) and
X2_k = nanmean_S[(d - s_k m_k)^2 / (s_k m_k + rms^2)], with no gain.  Batched by
:func:`fit_objects` (``statistic="dre"``); :func:`dre_fit_reference` is DRE's own
per-object index-gather form, kept as a baseline.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

__docformat__ = "numpy"

__all__ = [
    "CROP_SIZES",
    "prepare_psf",
    "convolve_cube",
    "ModelBank",
    "crop_sizes",
    "FitResult",
    "fit_objects",
    "chi2_batch",
    "dre_fit_reference",
    "best_parameters",
    "FLAG_BITS",
]

#: Side lengths (pixels) of the centred square crops objects are fit on.
CROP_SIZES = (16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128)

#: Bits of the ``FIT_FLAGS`` column written by :func:`best_parameters`.
FLAG_BITS = {
    "LOGR_EDGE_LO": 1,
    "LOGR_EDGE_HI": 2,
    "AX_RATIO_EDGE_LO": 4,
    "AX_RATIO_EDGE_HI": 8,
    "INDEX_EDGE_LO": 16,
    "INDEX_EDGE_HI": 32,
    "NO_FIT": 64,
}


def _default_backend(backend):
    if backend is None:
        from astrotool.backends import get_backend

        return get_backend("numpy", "cpu")
    return backend


# --------------------------------------------------------------------------- PSF convolution
def prepare_psf(psf, source: str = "PSF") -> np.ndarray:
    """Clip negative PSF pixels to 0 and normalise to unit sum (as DRE does).

    Parameters
    ----------
    psf : array-like, 2-D
        PSF image on the stamps' pixel scale, centred at pixel ``(ny // 2, nx // 2)``.
    source : str
        Name used in error messages (e.g. the PSF file).

    Returns
    -------
    numpy.ndarray
        float64 PSF summing to 1.

    Raises
    ------
    astrotool.errors.InputError
        Not 2-D, non-finite values, or nothing positive.
    """
    from astrotool.errors import InputError

    p = np.array(psf, dtype=np.float64)
    if p.ndim != 2 or min(p.shape) < 1:
        raise InputError(source, f"PSF must be a 2-D image, got shape {p.shape}")
    if not np.isfinite(p).all():
        raise InputError(source, "PSF contains NaN or infinite values")
    p = np.clip(p, 0.0, None)
    total = p.sum()
    if not total > 0:
        raise InputError(source, "PSF has no positive pixel")
    return p / total


def convolve_cube(cube, psf, backend=None, chunk: int = 512, dtype: str = "float32", remove_pixel: bool = False):
    """Convolve every model with the PSF (FFT, batched), keeping the model centre.

    Parameters
    ----------
    cube : array-like
        Models ``(..., B, B)`` centred at ``(B // 2, B // 2)``.
    psf : array-like
        PSF ``(ky, kx)``, any size (odd or even, smaller or larger than B),
        centred at ``(ky // 2, kx // 2)``; negatives are clipped and it is
        normalised to unit sum (:func:`prepare_psf`).
    backend : astrotool.backends.Backend, optional
        Where to compute (numpy on the CPU by default).
    chunk : int
        Models per FFT batch (bounds memory).
    dtype : str
        Output dtype.
    remove_pixel : bool
        The PSF is an *effective* PSF measured from stars on pixels (PSFEx,
        ePSF): it already contains the 1-pixel box response, which the
        pixel-integrated models contain too. Divide it out of the PSF once
        (:func:`remove_pixel_response`) so the pixel is not applied twice.

    Returns
    -------
    backend array
        Same shape as ``cube``: the linear (not circular) convolution cropped to
        the stamp, so the centre stays at ``(B // 2, B // 2)`` and flux that
        the PSF scatters out of the stamp is lost, as on the sky.
    """
    be = _default_backend(backend)
    p = prepare_psf(psf)
    shape = tuple(cube.shape)
    by, bx = shape[-2:]
    # PSF pixels more than B-1 from its centre cannot reach the stamp from inside it:
    # drop them (after normalising, so their light is lost as it is on the sky)
    cy, cx = p.shape[0] // 2, p.shape[1] // 2
    y0, x0 = max(0, cy - (by - 1)), max(0, cx - (bx - 1))
    p = p[y0: cy + by, x0: cx + bx]
    cy, cx = cy - y0, cx - x0
    ky, kx = p.shape
    ny = be.next_fast_len(by + max(cy, ky - 1 - cy) + 1)
    nx = be.next_fast_len(bx + max(cx, kx - 1 - cx) + 1)
    # PSF with its centre moved to (0, 0), wrapped: out[y] = sum_j m[y - (j - c)] psf[j]
    kern = np.zeros((ny, nx))
    kern[:ky, :kx] = p
    kern = np.roll(kern, (-cy, -cx), axis=(0, 1))
    if remove_pixel:
        kern = remove_pixel_response(kern)
    kf = be.rfft2(be.asarray(kern, dtype), (ny, nx))
    flat = cube.reshape((-1, by, bx))
    out = be.zeros((flat.shape[0], by, bx), dtype)
    for start in range(0, flat.shape[0], chunk):
        block = be.asarray(flat[start:start + chunk], dtype)
        conv = be.irfft2(be.rfft2(block, (ny, nx)) * kf, (ny, nx))
        out[start:start + chunk] = conv[:, :by, :bx]
    return out.reshape(shape)


def remove_pixel_response(kernel: np.ndarray) -> np.ndarray:
    r"""Divide the 1-pixel box response out of a (wrapped, zero-centred) PSF kernel.

    In Fourier space the box is :math:`\mathrm{sinc}(f_x)\,\mathrm{sinc}(f_y)`
    (frequencies in cycles per pixel); at most :math:`|f| = 1/2` it is
    :math:`\ge 2/\pi`, so the division amplifies nothing by more than 2.5 and
    keeps the PSF's sum.
    """
    ny, nx = kernel.shape
    box = np.sinc(np.fft.fftfreq(ny))[:, None] * np.sinc(np.fft.rfftfreq(nx))[None, :]
    return np.fft.irfft2(np.fft.rfft2(kernel) / box, s=(ny, nx))


# --------------------------------------------------------------------------- model bank
class ModelBank:
    """Convolved models on the backend as a (K, P) matrix, with centred crops.

    Parameters
    ----------
    convolved : array-like
        Convolved cube ``(nindex, naxrat, nposang, nlogh, B, B)`` or ``(K, B, B)``
        (numpy or backend array).
    grid : astrotool_dre.models.ModelGrid
        Its grid.
    backend : astrotool.backends.Backend, optional
        numpy on the CPU by default.
    dtype : str
        Matrix dtype for the products (``"float32"``; ``"float64"`` for
        reference-quality sums at 2x the cost).
    cache_bytes : int
        Memory allowed for cached crop matrices (the least recently used are
        dropped beyond it).
    """

    def __init__(self, convolved, grid, backend=None, dtype: str = "float32",
                 cache_bytes: int = 1 << 30):
        self.backend = be = _default_backend(backend)
        self.grid = grid
        b = int(convolved.shape[-1])
        if tuple(convolved.shape[-2:]) != (grid.boxsize, grid.boxsize):
            raise ValueError(f"convolved models are {tuple(convolved.shape[-2:])}, grid box is {grid.boxsize}")
        k = int(np.prod(convolved.shape[:-2]))
        if k != grid.nmodels:
            raise ValueError(f"{k} convolved models for a grid of {grid.nmodels}")
        self.dtype = dtype
        self.stamps = be.contiguous(be.asarray(convolved, dtype).reshape((k, b, b)))
        self.nmodels = k
        self.boxsize = b
        self.center = grid.center
        self.cache_bytes = int(cache_bytes)
        self._cache: OrderedDict[int, tuple] = OrderedDict()

    def sizes(self) -> tuple[int, ...]:
        """Crop sizes usable with this box (``CROP_SIZES`` below B, then B)."""
        return tuple(s for s in CROP_SIZES if s < self.boxsize and s // 2 <= self.center) + (self.boxsize,)

    def bounds(self, size: int) -> tuple[int, int]:
        """Pixel range ``[lo, hi)`` (rows and columns) of the centred crop of side ``size``."""
        if size >= self.boxsize:
            return 0, self.boxsize
        lo = self.center - size // 2
        return lo, lo + size

    def matrices(self, size: int):
        """The model matrix M and M*M for a crop, each ``(K, size*size)``, contiguous."""
        if size in self._cache:
            self._cache.move_to_end(size)
            return self._cache[size]
        be = self.backend
        lo, hi = self.bounds(size)
        m = be.contiguous(self.stamps[:, lo:hi, lo:hi]).reshape((self.nmodels, (hi - lo) ** 2))
        mats = (m, m * m)
        nbytes = 2 * m.shape[0] * m.shape[1] * (4 if self.dtype == "float32" else 8)
        while self._cache and self._bytes() + nbytes > self.cache_bytes:
            self._cache.popitem(last=False)
        if nbytes <= self.cache_bytes:
            self._cache[size] = mats
        return mats

    def _bytes(self) -> int:
        return sum(2 * m.shape[0] * m.shape[1] * (4 if self.dtype == "float32" else 8)
                   for m, _ in self._cache.values())


def crop_sizes(mask: np.ndarray, center: int, sizes) -> np.ndarray:
    """Smallest centred square crop (from ``sizes``) holding each object's mask.

    Parameters
    ----------
    mask : numpy.ndarray
        ``(N, B, B)`` boolean masks.
    center : int
        Model centre pixel (``B // 2``).
    sizes : sequence of int
        Allowed crop sides, increasing; the last is the full stamp.

    Returns
    -------
    numpy.ndarray
        ``(N,)`` crop side per object (the smallest size for an empty mask).
    """
    mask = np.asarray(mask, dtype=bool)
    n, b = mask.shape[0], mask.shape[-1]
    rows = mask.any(axis=2)
    cols = mask.any(axis=1)
    idx = np.arange(b)
    big = np.where(rows, idx, -1).max(1), np.where(cols, idx, -1).max(1)
    small = np.where(rows, idx, b).min(1), np.where(cols, idx, b).min(1)
    need = 2 * np.maximum.reduce([center - small[0], big[0] + 1 - center,
                                  center - small[1], big[1] + 1 - center])
    need[~rows.any(1)] = 0
    sizes = np.asarray(sizes)
    pos = np.searchsorted(sizes, need, side="left")
    return sizes[np.minimum(pos, len(sizes) - 1)]


# --------------------------------------------------------------------------- kernels
def chi2_batch(m, m2, d, w, backend):
    """Least-squares flux and chi-square of every model for a batch (the GEMM kernel).

    Parameters
    ----------
    m, m2 : backend arrays
        Model matrix ``(K, P)`` and its elementwise square.
    d, w : backend arrays
        Data and weights ``(B, P)`` (w = mask / sigma^2, in 1/data-unit^2).
    backend : astrotool.backends.Backend

    Returns
    -------
    chi2 : backend array, float32 ``(B, K)``
        ``sum(w d^2) - sum(w d m)^2 / sum(w m^2)`` (``sum(w d^2)`` where a model has
        no weighted pixel).
    flux : backend array, float32 ``(B, K)``
        ``a_k`` in data units times the model's unit (total flux).
    swd2 : backend array, float64 ``(B,)``
        ``sum(w d^2)``.
    """
    be = backend
    num = be.matmul(w * d, m.T)
    den = be.matmul(w, m2.T)
    d64 = be.astype(d, "float64")
    swd2 = be.sum(be.astype(w, "float64") * d64 * d64, axis=1)
    if bool(be.to_numpy(be.amin(den)) > 0):
        flux = num / den
    else:  # some model has no weighted pixel (or an object has an empty mask)
        good = den > 0
        flux = be.where(good, num / be.where(good, den, 1.0), 0.0)
    # sum(w d^2) - a sum(w d m): the subtraction in float64 (cancellation), then
    # clipped at 0 (float32 accumulation can leave a tiny negative for a perfect fit)
    chi2 = be.maximum(swd2[:, None] - be.astype(num * flux, "float64"), 0.0)
    return be.astype(chi2, "float32"), flux, swd2


def _box3(x, backend):
    """3x3 box average of ``(B, H, W)`` with zero padding."""
    _, h, w = x.shape
    out = x * 0.0  # same dtype and device
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            ys, yd = slice(max(0, dy), h + min(0, dy)), slice(max(0, -dy), h + min(0, -dy))
            xs, xd = slice(max(0, dx), w + min(0, dx)), slice(max(0, -dx), w + min(0, -dx))
            out[:, yd, xd] += x[:, ys, xs]
    return out / 9.0


def _dre_batch(m, d0, s2, valid, seg, backend, max_elems: int = 1 << 22):
    """DRE's statistic for a batch: (chi (B, K) float64, scale s_k (B, K) float64)."""
    be = backend
    nb, p = d0.shape
    k = m.shape[0]
    flux_data = be.sum(be.astype(d0, "float64"), axis=1)
    flux_models = be.astype(be.matmul(be.astype(seg, "float32"), m.T), "float64")
    scale = flux_data[:, None] / flux_models
    chi = be.zeros((nb, k), "float64")
    kc = max(1, max_elems // max(1, nb * p))
    sc32 = be.astype(scale, "float32")
    for start in range(0, k, kc):
        stop = min(k, start + kc)
        sm = sc32[:, start:stop, None] * m[None, start:stop, :]
        r = (d0[:, None, :] - sm) ** 2 / (sm + s2[:, None, :])
        ok = valid[:, None, :] & ~be.isnan(r)
        num = be.sum(be.astype(be.where(ok, r, 0.0), "float64"), axis=2)
        cnt = be.sum(be.astype(ok, "float64"), axis=2)
        chi[:, start:stop] = num / cnt
    return chi, scale


# --------------------------------------------------------------------------- driver
@dataclass
class FitResult:
    """Fit of N objects against K models.

    Attributes
    ----------
    chi2 : numpy.ndarray, float32 ``(N, K)``
        The statistic of every model (NaN when the object had no usable pixel).
    flux : numpy.ndarray, float32 ``(N, K)``
        Fitted total flux of every model, in data units.
    npix : numpy.ndarray, int64 ``(N,)``
        Pixels used.
    swd2 : numpy.ndarray, float64 ``(N,)``
        ``sum(w d^2)`` of the final pass (NaN for ``statistic="dre"``).
    crop : numpy.ndarray, int ``(N,)``
        Crop side used for each object.
    statistic : str
        ``"chi2"`` or ``"dre"``.
    passes : int
        Weighting passes done.
    """

    chi2: np.ndarray
    flux: np.ndarray
    npix: np.ndarray
    swd2: np.ndarray
    crop: np.ndarray
    statistic: str = "chi2"
    passes: int = 1
    meta: dict = field(default_factory=dict)

    def cubes(self, grid) -> np.ndarray:
        """Chi-square cubes in DRE layout ``(N, nindex, naxrat, nposang, nlogh)``."""
        return self.chi2.reshape((self.chi2.shape[0],) + tuple(grid.shape))


def _as_stack(x, n, b, name, dtype=np.float32):
    a = np.asarray(x)
    if a.ndim == 0:
        return np.full((n, b, b), a, dtype=dtype)
    if a.ndim == 1 and a.shape[0] == n:
        return np.broadcast_to(a.astype(dtype)[:, None, None], (n, b, b))
    if a.shape != (n, b, b):
        raise ValueError(f"{name} has shape {a.shape}; expected {(n, b, b)}, ({n},) or a scalar")
    return a


def fit_objects(bank: ModelBank, data, rms, mask, *, gain: float | None = None, reweight: int = 1,
                statistic: str = "chi2", batch_size: int = 128, crop: bool = True,
                progress=None) -> FitResult:
    """Fit every model to every object, batched by crop size.

    Parameters
    ----------
    bank : ModelBank
        Convolved models on the chosen backend.
    data : numpy.ndarray ``(N, B, B)``
        Background-subtracted stamps centred like the models, data units.
    rms : numpy.ndarray ``(N, B, B)``, ``(N,)`` or float
        Background rms, data units.
    mask : numpy.ndarray ``(N, B, B)`` bool
        Pixels to fit: the object's segment minus its neighbours.
    gain : float, optional
        Electrons per data unit for the source variance term (``None``/<= 0:
        background-only variance).  Ignored by ``statistic="dre"``.
    reweight : int
        Extra passes with the variance from the previous best-fit model (used only
        with a gain).
    statistic : {"chi2", "dre"}
        Least-squares chi-square, or DRE's original statistic.
    batch_size : int
        Objects per matrix product (up to 4x more for small crops).
    crop : bool
        Fit on the smallest centred crop holding the mask (same result, faster).
    progress : callable, optional
        Called with the number of objects finished after each batch.

    Returns
    -------
    FitResult
    """
    if statistic not in ("chi2", "dre"):
        raise ValueError(f"statistic must be 'chi2' or 'dre', not {statistic!r}")
    be = bank.backend
    data = np.asarray(data)
    if data.ndim != 3 or data.shape[1:] != (bank.boxsize, bank.boxsize):
        raise ValueError(f"data has shape {data.shape}; expected (N, {bank.boxsize}, {bank.boxsize})")
    n, b = data.shape[0], bank.boxsize
    rms = _as_stack(rms, n, b, "rms")
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != data.shape:
        raise ValueError(f"mask has shape {mask.shape}; expected {data.shape}")
    use_gain = gain is not None and math.isfinite(gain) and gain > 0 and statistic == "chi2"
    passes = 1 + (max(0, int(reweight)) if use_gain else 0)

    k = bank.nmodels
    chi2_out = np.full((n, k), np.nan, dtype=np.float32)
    flux_out = np.full((n, k), np.nan, dtype=np.float32)
    npix_out = np.zeros(n, dtype=np.int64)
    swd2_out = np.full(n, np.nan)
    sizes = crop_sizes(mask, bank.center, bank.sizes()) if crop else np.full(n, b)
    order = np.lexsort((np.arange(n), sizes))
    done = 0
    used = np.unique(sizes)
    carry = np.zeros(0, dtype=np.int64)
    for si, size in enumerate(used):
        members = np.concatenate([carry, order[sizes[order] == size]])
        lo, hi = bank.bounds(int(size))
        p = (hi - lo) ** 2
        # small crops: larger batches keep the products efficient (memory stays small)
        nbatch = int(min(4 * batch_size, max(batch_size, (1 << 18) // p)))
        # a small remainder goes up to the next crop size (exact, since a crop only has to
        # contain the mask): a product over a handful of objects is memory-bound
        nfull = len(members) - len(members) % nbatch
        if si < len(used) - 1 and len(members) - nfull < max(1, nbatch // 4):
            members, carry = members[:nfull], members[nfull:]
        else:
            carry = carry[:0]
        if len(members) == 0:
            continue
        m, m2 = bank.matrices(int(size))
        for start in range(0, len(members), nbatch):
            idx = members[start:start + nbatch]
            nb = len(idx)
            # the crop plus a 1-pixel margin (for the smoothed source term) travels to the device
            lm, hm = max(lo - 1, 0), min(hi + 1, b)
            inner = (slice(None), slice(lo - lm, hi - lm), slice(lo - lm, hi - lm))
            d = be.asarray(data[idx, lm:hm, lm:hm], bank.dtype)
            r = be.asarray(rms[idx, lm:hm, lm:hm], bank.dtype)
            seg = be.asarray(mask[idx, lm:hm, lm:hm])
            valid = seg & be.isfinite(d) & be.isfinite(r) & (r > 0)
            vc = valid[inner].reshape((nb, p))
            dc = be.where(valid, d, 0.0)[inner].reshape((nb, p))
            if statistic == "dre":
                rc = r[inner].reshape((nb, p))
                chi, scale = _dre_batch(m, dc, rc * rc, vc, seg[inner].reshape((nb, p)), be)
                flux, swd2 = scale, None
            else:
                rc = be.where(vc, r[inner].reshape((nb, p)), 1.0)
                bg = rc * rc
                srcc = None
                if use_gain:
                    srcc = _box3(be.where(be.isfinite(d), d, 0.0), be)[inner].reshape((nb, p))
                for _ in range(passes):
                    sig2 = bg + be.maximum(srcc, 0.0) * (1.0 / gain) if use_gain else bg
                    w = be.where(vc, 1.0 / sig2, 0.0)
                    chi, flux, swd2 = chi2_batch(m, m2, dc, w, be)
                    if use_gain:
                        best = be.argmin(be.where(be.isnan(chi), math.inf, chi), axis=1)
                        abest = be.astype(be.take_along_last(flux, best), bank.dtype)
                        srcc = abest[:, None] * m[best]
            npix = be.to_numpy(be.sum(be.astype(vc, "float32"), axis=1)).astype(np.int64)
            chi_np = be.to_numpy(chi).astype(np.float32)
            flux_np = be.to_numpy(flux).astype(np.float32)
            empty = npix == 0
            chi_np[empty] = np.nan
            flux_np[empty] = np.nan
            sizes[idx] = size
            chi2_out[idx] = chi_np
            flux_out[idx] = flux_np
            npix_out[idx] = npix
            if swd2 is not None:
                swd2_out[idx] = be.to_numpy(swd2)
            done += nb
            if progress is not None:
                progress(done)
    return FitResult(chi2=chi2_out, flux=flux_out, npix=npix_out, swd2=swd2_out, crop=sizes,
                     statistic=statistic, passes=passes if statistic == "chi2" else 1)


# --------------------------------------------------------------------------- DRE baseline
def dre_fit_reference(models, data, segment, noise):
    """DRE's per-object statistic, as DRE computes it (index gather over the segment).

    Parameters
    ----------
    models : numpy.ndarray
        Convolved models ``(..., B, B)``.
    data, segment, noise : numpy.ndarray ``(B, B)``
        Background-subtracted cut, segment mask, background rms.

    Returns
    -------
    chi : numpy.ndarray ``models.shape[:-2]``
        ``nanmean_S[(d - s m)^2 / (s m + noise^2)]`` with ``s = nansum_S d / sum_S m``.
    scale : numpy.ndarray
        The flux-matching scale s of every model.
    """
    mask_idx = np.where(segment)
    m = models[..., mask_idx[0], mask_idx[1]]
    d = data[mask_idx[0], mask_idx[1]]
    nse = noise[mask_idx[0], mask_idx[1]]
    flux_models = np.sum(m, axis=-1)
    flux_data = np.nansum(d, axis=-1)
    scale = flux_data / flux_models
    scaled = scale[..., np.newaxis] * m
    diff = d - scaled
    residual = (diff ** 2) / (scaled + nse ** 2)
    with np.errstate(invalid="ignore"):
        chi = np.nanmean(residual, axis=-1)
    return chi, scale


# --------------------------------------------------------------------------- best parameters
def _axis_error(prof, i0, step, periodic):
    """Uncertainty of one grid axis from its chi-square profile (already scaled).

    ``prof`` (N, n): min chi-square over the other axes; ``i0`` (N,) the minimum.
    Returns sigma (N,) in axis units: Delta-chi2 = 1 from a 3-point parabola
    where the minimum is interior and the profile convex there, else from the
    interpolated crossing of Delta-chi2 = 1, combined in quadrature with the
    grid quantisation step/sqrt(12) and capped at the no-information value
    (uniform over the axis).
    """
    nobj, n = prof.shape
    span = n * step
    noinfo = span / math.sqrt(12.0)
    if n == 1:
        return np.full(nobj, np.nan)
    rows = np.arange(nobj)
    p0 = prof[rows, i0]
    dp = prof - p0[:, None]
    sig = np.full(nobj, np.nan)
    if periodic:
        im, ip = (i0 - 1) % n, (i0 + 1) % n
        interior = np.ones(nobj, bool)
    else:
        im, ip = np.clip(i0 - 1, 0, n - 1), np.clip(i0 + 1, 0, n - 1)
        interior = (i0 > 0) & (i0 < n - 1)
    curv = dp[rows, im] + dp[rows, ip]
    ok = interior & (curv > 0) & np.isfinite(curv)
    sig[ok] = step * np.sqrt(2.0 / curv[ok])
    # crossings of Delta-chi2 = 1 on either side, walking away from the minimum
    need = ~ok
    if need.any():
        for j in np.flatnonzero(need):
            dists = []
            for direction in (-1, 1):
                prev, pos = 0.0, 0
                while True:
                    pos += 1
                    if pos > (n // 2 if periodic else n):
                        break
                    ii = i0[j] + direction * pos
                    if not periodic and not 0 <= ii < n:
                        break
                    val = dp[j, ii % n]
                    if not np.isfinite(val):
                        break
                    if val >= 1.0:
                        dists.append((pos - 1 + (1.0 - prev) / (val - prev)) * step)
                        break
                    prev = val
            sig[j] = min(dists) if dists else noinfo
    total = np.sqrt(sig ** 2 + step ** 2 / 12.0)
    return np.minimum(total, noinfo)


def best_parameters(chi2, grid, flux, npix, *, swd2=None, statistic: str = "chi2",
                    zeropoint: float | None = None, backend=None, scale_errors: bool = True) -> dict:
    """Best-fit grid parameters, uncertainties and edge flags per object.

    Parameters
    ----------
    chi2 : array ``(N, K)`` or ``(N, nindex, naxrat, nposang, nlogh)``
        Statistic per model (numpy or backend array; NaN = unusable).
    grid : astrotool_dre.models.ModelGrid
    flux : array ``(N, K)``
        Fitted total flux per model, data units.
    npix : array ``(N,)``
        Pixels used per object.
    swd2 : array ``(N,)``, optional
        ``sum(w d^2)`` (from :class:`FitResult`), giving the statistical flux error
        ``|a| / sqrt(swd2 - chi2_min)`` = ``1 / sqrt(sum(w m^2))``.
    statistic : {"chi2", "dre"}
        With ``"dre"`` the statistic is a mean over the segment; it is multiplied
        by NPIX for the chi-square profiles.
    zeropoint : float, optional
        Magnitude zero point: adds ``MAG = zp - 2.5 log10(FLUX)`` and ``MAG_ERR``.
    backend : astrotool.backends.Backend, optional
        Backend of ``chi2``/``flux`` when they are backend arrays (the reductions
        over K run there; the small per-object results come back as numpy).
    scale_errors : bool
        Multiply the Delta-chi2 threshold by max(1, CHI2_NU), i.e. inflate the
        errors when the best model does not fit to within the noise.

    Returns
    -------
    dict of numpy arrays, each ``(N,)``
        ``N_IDX, E_IDX, T_IDX, R_IDX`` (grid indices of the minimum, -1 if none);
        ``INDEX, AX_RATIO, ANGLE, LOGR`` (grid values; ANGLE deg CCW from +x,
        LOGR log10 major-axis half-light radius in px); ``LOGR_FIT`` and
        ``LOGR_FIT_ERR`` (sub-grid radius: vertex of the parabola through the
        chi-square at the three nearest radii, other parameters at the minimum);
        ``FLUX`` (total flux in data units, ln-flux interpolated to LOGR_FIT) and
        ``FLUX_GRID`` (at the grid minimum); ``CHI2`` (the statistic at the
        minimum); ``CHI2_NU``
        (chi-square / (NPIX - dof), dof = 1 + number of axes with > 1 value);
        ``NPIX``; ``INDEX_ERR, AX_RATIO_ERR, ANGLE_ERR, LOGR_ERR, FLUX_ERR``
        (1-sigma; NaN for a single-valued axis); ``MAG, MAG_ERR`` with a zero
        point; booleans ``LOGR_EDGE_LO/HI, AX_RATIO_EDGE_LO/HI,
        INDEX_EDGE_LO/HI`` (minimum on that grid edge; q = 1 is a physical edge
        but flagged too) and ``FIT_FLAGS`` (bitmask, :data:`FLAG_BITS`).

    Notes
    -----
    Axis errors come from the profile of the chi-square along each axis (minimum
    over the others), Delta-chi2 = 1, with the angle axis periodic; the grid
    quantisation step/sqrt(12) is added in quadrature since the reported value is
    a grid point.  The flux error adds, in quadrature, the least-squares error at
    the best model, 1/sqrt(sum(w m^2)), and LOGR_FIT_ERR times d(flux)/d(LOGR).
    """
    be = _default_backend(backend)
    ni, nq, na, nr = grid.shape
    k = grid.nmodels
    chi = be.asarray(chi2)
    chi = chi.reshape((chi.shape[0], k))
    fl = be.asarray(flux).reshape((chi.shape[0], k))
    nobj = chi.shape[0]
    npix = np.asarray(npix, dtype=np.int64)
    if statistic == "dre":
        chi_s = be.astype(chi, "float64") * be.asarray(npix.astype(np.float64))[:, None]
    else:
        chi_s = be.astype(chi, "float64")
    chi_s = be.where(be.isnan(chi_s), math.inf, chi_s)
    kbest = be.argmin(chi_s, axis=1)
    cmin_s = be.to_numpy(be.take_along_last(chi_s, kbest))
    kbest_np = be.to_numpy(kbest).astype(np.int64)
    nofit = ~np.isfinite(cmin_s)
    cmin_raw = be.to_numpy(be.take_along_last(be.astype(chi, "float64"), kbest))
    fbest = be.to_numpy(be.take_along_last(be.astype(fl, "float64"), kbest))
    ii = np.stack(np.unravel_index(kbest_np, grid.shape), axis=1)

    dof = 1 + sum(int(v > 1) for v in grid.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        nu = np.where(npix > dof, cmin_s / np.maximum(npix - dof, 1), np.nan)
    scale = np.where(np.isfinite(nu) & scale_errors, np.maximum(nu, 1.0), 1.0)

    # profiles along each axis: min over the other three
    c5 = chi_s.reshape((nobj, ni, nq, na, nr))
    steps = (grid.dindex, grid.daxrat, grid.dposang, grid.dlogh)
    names = ("INDEX", "AX_RATIO", "ANGLE", "LOGR")
    errs = {}
    for ax in range(4):
        others = tuple(a + 1 for a in range(4) if a != ax)
        prof = be.to_numpy(be.amin(c5, axis=others)).astype(np.float64) / scale[:, None]
        periodic = ax == 2 and grid.angle_periodic
        with np.errstate(invalid="ignore", over="ignore"):
            e = _axis_error(np.where(np.isfinite(prof), prof, np.inf), ii[:, ax], abs(steps[ax]), periodic)
        e[nofit] = np.nan
        errs[names[ax]] = e

    # sub-grid radius: parabola through the chi-square at R_IDX-1, R_IDX, R_IDX+1 (window
    # kept inside the grid) at the best (n, q, angle); ln(flux) interpolated at its vertex.
    # The flux of a de Vaucouleurs profile is strongly tied to its radius, so this is
    # what makes the total flux good to a few per cent between grid radii.
    f64 = be.astype(fl, "float64")
    r = ii[:, 3]
    logr_fit = grid.logr[r].astype(np.float64)
    logr_fit_err = errs["LOGR"].copy()
    flux_fit = fbest.copy()
    slope = np.zeros(nobj)
    if nr >= 3:
        r0 = np.clip(r, 1, nr - 2)
        base = kbest_np - r + r0
        idx3 = [be.asarray(np.where(nofit, 0, base + o).astype(np.int64)) for o in (-1, 0, 1)]
        c3 = np.stack([be.to_numpy(be.take_along_last(chi_s, ix)) for ix in idx3], 1) / scale[:, None]
        f3 = np.stack([be.to_numpy(be.take_along_last(f64, ix)) for ix in idx3], 1)
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            curv = c3[:, 0] - 2 * c3[:, 1] + c3[:, 2]
            conv = np.isfinite(curv) & (curv > 0)
            xv = np.clip(np.where(conv, 0.5 * (c3[:, 0] - c3[:, 2]) / np.where(conv, curv, 1.0), r - r0), -1, 1)
            logr_fit = grid.logr[r0] + xv * grid.dlogh
            interior = conv & (r == r0)
            # statistical error, plus 0.1 step for the parabolic interpolation itself
            # (calibrated on mock galaxies between grid radii)
            logr_fit_err = np.where(interior, grid.dlogh * np.sqrt(2.0 / np.where(conv, curv, 1.0) + 0.01),
                                    errs["LOGR"])
            logr_fit_err = np.minimum(logr_fit_err, nr * grid.dlogh / math.sqrt(12.0))
            pos = np.all(f3 > 0, axis=1)
            lf = np.log(np.where(pos[:, None], f3, 1.0))
            d1 = 0.5 * (lf[:, 2] - lf[:, 0])
            d2 = lf[:, 0] - 2 * lf[:, 1] + lf[:, 2]
            flux_fit = np.where(pos, np.exp(lf[:, 1] + d1 * xv + 0.5 * d2 * xv ** 2), fbest)
            slope = np.where(pos, (d1 + d2 * xv) / grid.dlogh, 0.0)
    # flux error: statistical (least squares at the best model) and the radius-flux
    # degeneracy, d lnF / d logR times the error of LOGR_FIT
    with np.errstate(invalid="ignore", divide="ignore"):
        if swd2 is not None and statistic == "chi2":
            info = np.asarray(swd2, dtype=np.float64) - cmin_raw
            stat = np.where(info > 0, np.abs(fbest) / np.sqrt(info), np.nan) * np.sqrt(scale)
        else:
            stat = np.zeros(nobj)
        ferr = np.sqrt(stat ** 2 + (flux_fit * slope * logr_fit_err) ** 2)

    out: dict[str, np.ndarray] = {}
    for col, ax in (("N_IDX", 0), ("E_IDX", 1), ("T_IDX", 2), ("R_IDX", 3)):
        v = ii[:, ax].astype(np.int64)
        v[nofit] = -1
        out[col] = v
    axes = grid.axes()
    for ax, name in enumerate(names):
        v = axes[name][ii[:, ax]].astype(np.float64)
        v[nofit] = np.nan
        out[name] = v
    out["LOGR_FIT"] = np.where(nofit, np.nan, logr_fit)
    out["FLUX"] = np.where(nofit, np.nan, flux_fit)
    out["FLUX_GRID"] = np.where(nofit, np.nan, fbest)
    out["CHI2"] = np.where(nofit, np.nan, cmin_raw)
    out["CHI2_NU"] = np.where(nofit, np.nan, nu)
    out["NPIX"] = npix
    for name in names:
        out[f"{name}_ERR"] = errs[name]
    out["LOGR_FIT_ERR"] = np.where(nofit, np.nan, logr_fit_err)
    out["FLUX_ERR"] = np.where(nofit, np.nan, ferr)
    if zeropoint is not None:
        fl_out = out["FLUX"]
        with np.errstate(invalid="ignore", divide="ignore"):
            good = fl_out > 0
            out["MAG"] = np.where(good, zeropoint - 2.5 * np.log10(np.where(good, fl_out, 1.0)), np.nan)
            out["MAG_ERR"] = np.where(good, 2.5 / math.log(10) * out["FLUX_ERR"] / np.where(good, fl_out, 1.0),
                                      np.nan)
    flags = np.zeros(nobj, dtype=np.int32)
    for ax, name, nmax in ((3, "LOGR", nr), (1, "AX_RATIO", nq), (0, "INDEX", ni)):
        lo = (ii[:, ax] == 0) & ~nofit & (nmax > 1)
        hi = (ii[:, ax] == nmax - 1) & ~nofit & (nmax > 1)
        out[f"{name}_EDGE_LO"] = lo
        out[f"{name}_EDGE_HI"] = hi
        flags |= np.where(lo, FLAG_BITS[f"{name}_EDGE_LO"], 0).astype(np.int32)
        flags |= np.where(hi, FLAG_BITS[f"{name}_EDGE_HI"], 0).astype(np.int32)
    flags |= np.where(nofit, FLAG_BITS["NO_FIT"], 0).astype(np.int32)
    out["FIT_FLAGS"] = flags
    return out
