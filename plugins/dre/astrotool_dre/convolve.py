"""The tile's PSF applied to the model cube, and the convolved models as a matrix bank.

One tile's fit starts here::

    be = get_backend("numpy" | "torch" | "cupy", "cpu" | "cuda" | "auto")
    conv = convolve_cube(cube, psf, be)            # once per tile (FFT, batched)
    bank = ModelBank(conv, grid, be)               # (K, P) matrices, centred crops

and continues with :func:`astrotool_dre.chi2.fit_objects` (the statistic of every
model for every object) and :func:`astrotool_dre.estimate.best_parameters`.

Cropping
--------
Models are centred, so only the pixels inside an object's mask matter: each
object is fit on the centred square crop (sizes in :data:`CROP_SIZES`) that
contains its mask (:func:`crop_sizes`), and the bank serves the model matrix of
each crop size.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

__docformat__ = "numpy"

__all__ = ["CROP_SIZES", "prepare_psf", "convolve_cube", "remove_pixel_response", "ModelBank", "crop_sizes",
           "bank_sizes"]

#: Side lengths (pixels) of the centred square crops objects are fit on.
CROP_SIZES = (16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128)


def _numpy_backend():
    from astrotool.backends import get_backend

    return get_backend("numpy", "cpu")


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


def convolve_cube(cube, psf, backend=None, chunk: int = 512, dtype: str = "float32", remove_pixel: bool = False,
                  crop: int | None = None):
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
    crop : int, optional
        Compute only the centred ``crop`` x ``crop`` pixels (:meth:`ModelBank.bounds`)
        exactly, from the model pixels within the PSF's reach of them; the rest
        is 0. The FFTs shrink with the crop: for objects fit on small crops.

    Returns
    -------
    backend array
        Same shape as ``cube``: the linear (not circular) convolution cropped to
        the stamp, so the centre stays at ``(B // 2, B // 2)`` and flux that
        the PSF scatters out of the stamp is lost, as on the sky.
    """
    be = backend or _numpy_backend()
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
    # the model pixels that reach the output window [ylo, yhi) x [xlo, xhi)
    ylo, yhi, xlo, xhi = 0, by, 0, bx
    if crop is not None and crop < min(by, bx):
        ylo, xlo = by // 2 - crop // 2, bx // 2 - crop // 2
        yhi, xhi = ylo + crop, xlo + crop
    ya, yb = max(0, ylo - (ky - 1 - cy)), min(by, yhi + cy)
    xa, xb = max(0, xlo - (kx - 1 - cx)), min(bx, xhi + cx)
    sy, sx = yb - ya, xb - xa
    ny = be.next_fast_len(sy + max(cy, ky - 1 - cy) + 1)
    nx = be.next_fast_len(sx + max(cx, kx - 1 - cx) + 1)
    kern = np.zeros((ny, nx))
    kern[:ky, :kx] = p
    kern = np.roll(kern, (-cy, -cx), axis=(0, 1))
    if remove_pixel:
        kern = remove_pixel_response(kern)
    kf = be.rfft2(be.asarray(kern, dtype), (ny, nx))
    flat = cube.reshape((-1, by, bx))
    out = be.zeros((flat.shape[0], by, bx), dtype)
    for start in range(0, flat.shape[0], chunk):
        block = be.asarray(flat[start:start + chunk, ya:yb, xa:xb], dtype)
        conv = be.irfft2(be.rfft2(block, (ny, nx)) * kf, (ny, nx))
        out[start:start + chunk, ylo:yhi, xlo:xhi] = conv[:, ylo - ya:yhi - ya, xlo - xa:xhi - xa]
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
        self.backend = be = backend or _numpy_backend()
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
        return bank_sizes(self.boxsize)

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


def bank_sizes(boxsize: int) -> tuple[int, ...]:
    """Crop sizes usable with a ``boxsize`` stamp (``CROP_SIZES`` below it, then ``boxsize``)."""
    return tuple(s for s in CROP_SIZES if s < boxsize and s // 2 <= boxsize // 2) + (boxsize,)


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
    b = mask.shape[-1]
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
