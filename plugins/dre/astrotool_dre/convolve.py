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

__all__ = ["CROP_SIZES", "prepare_psf", "convolve_cube", "CubeSpectrum", "remove_pixel_response", "ModelBank",
           "crop_sizes", "bank_sizes"]

CROP_SIZES = (16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128)
"""Side lengths (pixels) of the centred square crops objects are fit on."""


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


def _plan(by: int, bx: int, psf, crop: int | None, be):
    """Windows and FFT size of a linear convolution of ``(by, bx)`` stamps, restricted to a centred crop.

    Returns the PSF trimmed to what can reach the stamp (after normalising, so its light beyond
    is lost as on the sky), its centre, the output window ``(ylo, yhi, xlo, xhi)``, the window of
    model pixels that reach it ``(ya, yb, xa, xb)`` and the FFT size ``(ny, nx)``.
    """
    p = prepare_psf(psf)
    cy, cx = p.shape[0] // 2, p.shape[1] // 2
    y0, x0 = max(0, cy - (by - 1)), max(0, cx - (bx - 1))
    p = p[y0: cy + by, x0: cx + bx]
    cy, cx = cy - y0, cx - x0
    ky, kx = p.shape
    ylo, yhi, xlo, xhi = 0, by, 0, bx
    if crop is not None and crop < min(by, bx):
        ylo, xlo = by // 2 - crop // 2, bx // 2 - crop // 2
        yhi, xhi = ylo + crop, xlo + crop
    ya, yb = max(0, ylo - (ky - 1 - cy)), min(by, yhi + cy)
    xa, xb = max(0, xlo - (kx - 1 - cx)), min(bx, xhi + cx)
    # the circular convolution of the window, padded to n, equals the linear one on the output window
    # when every model pixel it reads from outside the window lands on the zero padding
    ny = be.next_fast_len(max(yb - ya, yb - ylo + ky - 1 - cy, yhi + cy - ya, ky))
    nx = be.next_fast_len(max(xb - xa, xb - xlo + kx - 1 - cx, xhi + cx - xa, kx))
    return p, (cy, cx), (ylo, yhi, xlo, xhi), (ya, yb, xa, xb), (ny, nx)


def _kernel_spectrum(p, centre, fft_shape, remove_pixel, be, dtype):
    """FFT of the PSF with its centre moved to (0, 0), wrapped: out[y] = sum_j m[y - (j - c)] psf[j]."""
    kern = np.zeros(fft_shape)
    kern[:p.shape[0], :p.shape[1]] = p
    kern = np.roll(kern, (-centre[0], -centre[1]), axis=(0, 1))
    if remove_pixel:
        kern = remove_pixel_response(kern)
    return be.rfft2(be.asarray(kern, dtype), fft_shape)


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
        Compute only the centred ``crop`` x ``crop`` pixels (:meth:`ModelBank.bounds`),
        exactly, from the model pixels within the PSF's reach of them, and return
        just them (``(..., crop, crop)``, which :class:`ModelBank` takes as such):
        the FFTs shrink with the crop, for objects fit on small crops.

    Returns
    -------
    backend array
        Same shape as ``cube`` (or its crop): the linear (not circular)
        convolution cropped to the stamp, so the centre stays at ``(B // 2, B // 2)``
        and flux that the PSF scatters out of the stamp is lost, as on the sky.
    """
    return CubeSpectrum(cube, np.shape(psf), backend, crop=crop, chunk=chunk, dtype=dtype,
                        keep=False).convolve(psf, remove_pixel)


class CubeSpectrum:
    """The model cube in Fourier space, over the pixels a centred crop needs: one cube, many PSFs.

    A PSF that varies across the tile is applied group by group (one PSF per
    group, all of one size): the models' forward FFT is then done once, and each
    PSF costs a product and an inverse FFT (3x less than :func:`convolve_cube`
    for 64 px crops).

    Parameters
    ----------
    cube : array-like
        Models ``(..., B, B)``.
    psf_shape : tuple of int
        Shape of the PSFs to come.
    backend : astrotool.backends.Backend, optional
    crop : int, optional
        Side of the centred crop computed (default: the whole stamp).
    chunk : int
        Models per FFT batch.
    dtype : str
        Output dtype (the spectrum is stored in its complex counterpart).
    keep : bool
        Store the spectrum (``(K, ny, nx // 2 + 1)`` complex: 1.6 GB for 32,760 models
        and 64 px crops); False streams the cube through the FFTs on each
        :meth:`convolve` (one PSF).
    """

    def __init__(self, cube, psf_shape, backend=None, crop: int | None = None, chunk: int = 512,
                 dtype: str = "float32", keep: bool = True):
        self.backend = be = backend or _numpy_backend()
        self.shape = tuple(cube.shape)
        by, bx = self.shape[-2:]
        self.psf_shape = tuple(int(v) for v in psf_shape)
        self.crop, self.chunk, self.dtype = crop, int(chunk), dtype
        self.flat = cube.reshape((-1, by, bx))
        _, _, _, (ya, yb, xa, xb), self.fft_shape = _plan(by, bx, np.ones(self.psf_shape), crop, be)
        self.spectrum = None
        if keep:
            ny, nx = self.fft_shape
            nk = self.flat.shape[0]
            self.spectrum = be.zeros((nk, ny, nx // 2 + 1), "complex64" if dtype == "float32" else "complex128")
            for s in range(0, nk, chunk):
                self.spectrum[s:s + chunk] = be.rfft2(be.asarray(self.flat[s:s + chunk, ya:yb, xa:xb], dtype),
                                                      self.fft_shape)

    def convolve(self, psf, remove_pixel: bool = False):
        """The cube convolved with ``psf`` (see :func:`convolve_cube`), over the crop."""
        be = self.backend
        by, bx = self.shape[-2:]
        if tuple(np.shape(psf)) != self.psf_shape:
            raise ValueError(f"PSF of shape {np.shape(psf)}; this spectrum was made for {self.psf_shape}")
        p, centre, (ylo, yhi, xlo, xhi), (ya, yb, xa, xb), fft_shape = _plan(by, bx, psf, self.crop, be)
        kf = _kernel_spectrum(p, centre, fft_shape, remove_pixel, be, self.dtype)
        nk, chunk = self.flat.shape[0], self.chunk
        out = be.zeros((nk, yhi - ylo, xhi - xlo), self.dtype)
        for start in range(0, nk, chunk):
            spec = (self.spectrum[start:start + chunk] if self.spectrum is not None else
                    be.rfft2(be.asarray(self.flat[start:start + chunk, ya:yb, xa:xb], self.dtype), fft_shape))
            conv = be.irfft2(spec * kf, fft_shape)
            out[start:start + chunk] = conv[:, ylo - ya:yhi - ya, xlo - xa:xhi - xa]
        return out.reshape(self.shape[:-2] + (yhi - ylo, xhi - xlo))


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
        (numpy or backend array), or its centred crop ``(..., c, c)`` (``c`` one of
        :func:`bank_sizes`, as ``convolve_cube(..., crop=c)`` gives it): then only
        crops up to ``c`` can be fit.
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
        if convolved.shape[-2] != b or b not in bank_sizes(grid.boxsize):
            raise ValueError(f"convolved models are {tuple(convolved.shape[-2:])}: neither the grid box "
                             f"({grid.boxsize}) nor one of its centred crops {bank_sizes(grid.boxsize)}")
        k = int(np.prod(convolved.shape[:-2]))
        if k != grid.nmodels:
            raise ValueError(f"{k} convolved models for a grid of {grid.nmodels}")
        self.dtype = dtype
        self.stamps = be.contiguous(be.asarray(convolved, dtype).reshape((k, b, b)))
        self.nmodels = k
        self.boxsize = grid.boxsize
        self.side = b
        self.center = grid.center
        self._offset = self.bounds(b)[0]
        self.cache_bytes = int(cache_bytes)
        self._cache: OrderedDict[int, tuple] = OrderedDict()

    def sizes(self) -> tuple[int, ...]:
        """Crop sizes usable with this bank (``CROP_SIZES`` below B, then B; up to its side)."""
        return tuple(s for s in bank_sizes(self.boxsize) if s <= self.side)

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
        if hi - lo > self.side:
            raise ValueError(f"a {size} px crop from a bank of {self.side} px models")
        lo, hi = lo - self._offset, hi - self._offset
        m = be.contiguous(self.stamps[:, lo:hi, lo:hi]).reshape((self.nmodels, (hi - lo) ** 2))
        mats = (m, m * m)
        nbytes = 2 * m.shape[0] * m.shape[1] * (4 if self.dtype == "float32" else 8)
        while self._cache and self._bytes() + nbytes > self.cache_bytes:
            self._cache.popitem(last=False)
        if nbytes <= self.cache_bytes:
            self._cache[size] = mats
        return mats

    def set_core(self, core) -> None:
        """Replace the models' centred ``c`` x ``c`` pixels by ``core`` (``(..., c, c)``, one per model), in the
        stamps and in every cached crop matrix that holds them (one that lies inside the core is dropped): models
        whose core is convolved by another PSF than the rest, each new core costing its pixels alone. The stamps
        are the array the bank was made from (not copied): it changes too."""
        be = self.backend
        c = int(core.shape[-1])
        core = be.asarray(core, self.dtype).reshape((self.nmodels, c, c))
        lo = self.bounds(c)[0]
        if c > self.side or lo < self._offset:
            raise ValueError(f"a {c} px core in a bank of {self.side} px models")
        self.stamps[:, lo - self._offset:lo - self._offset + c, lo - self._offset:lo - self._offset + c] = core
        for size in list(self._cache):
            slo, shi = self.bounds(size)
            if shi - slo <= c:
                del self._cache[size]
                continue
            a, s = lo - slo, shi - slo
            m, m2 = (x.reshape((self.nmodels, s, s)) for x in self._cache[size])
            m[:, a:a + c, a:a + c] = core
            m2[:, a:a + c, a:a + c] = core * core

    def cached(self, size: int) -> bool:
        """Whether the matrices of a crop are ready (:meth:`matrices` costs nothing then)."""
        return size in self._cache

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
