"""Ellipticity conventions: reduced shear g and distortion e, defined once.

For an ellipse of semi-axes a >= b at position angle beta (from +x, counter-clockwise)

* reduced shear (GalSim's ``g``): |g| = (a - b) / (a + b), g = |g| exp(2 i beta);
* distortion (HSM's ``e``, Bernstein & Jarvis 2002): |e| = (a^2 - b^2) / (a^2 + b^2).

They describe the same ellipse: g = e / (1 + sqrt(1 - |e|^2)) and e = 2 g / (1 + |g|^2).
Every ellipticity astrotool_lens stores (shears, intrinsic shapes, PSF ellipticities,
estimates) is a reduced shear g in the pixel frame (x = array axis 1, y = axis 0);
distortions appear only where a tool returns them (HSM) or a format asks for them
(LensNet's ``data.json``).
"""

from __future__ import annotations

import numpy as np

__docformat__ = "numpy"

__all__ = ["e_to_g", "g_to_e", "compose_shear", "D4_SIGNS", "d4_transform"]


def e_to_g(e1, e2):
    """Distortion (e1, e2) to reduced-shear ellipticity (g1, g2).

    g = e / (1 + sqrt(1 - |e|^2)); |e| is clipped to 1. Works on scalars and arrays.

    Returns
    -------
    g1, g2 : numpy.ndarray
        float64, the shape of the inputs.
    """
    e1 = np.asarray(e1, dtype=float)
    e2 = np.asarray(e2, dtype=float)
    mod2 = np.clip(e1 * e1 + e2 * e2, 0.0, 1.0)
    f = 1.0 / (1.0 + np.sqrt(1.0 - mod2))
    return e1 * f, e2 * f


def g_to_e(g1, g2):
    """Reduced-shear ellipticity (g1, g2) to distortion: e = 2 g / (1 + |g|^2).

    Returns
    -------
    e1, e2 : numpy.ndarray
    """
    g1 = np.asarray(g1, dtype=float)
    g2 = np.asarray(g2, dtype=float)
    f = 2.0 / (1.0 + g1 * g1 + g2 * g2)
    return g1 * f, g2 * f


def compose_shear(eps1, eps2, g1, g2):
    """Ellipticity of a source of ellipticity eps after a reduced shear g.

    eps' = (eps + g) / (1 + conj(g) eps), all reduced shears (identical to
    ``obj.shear(eps).shear(g)`` in GalSim).

    Returns
    -------
    eps1', eps2' : numpy.ndarray
    """
    eps = np.asarray(eps1) + 1j * np.asarray(eps2)
    g = np.asarray(g1) + 1j * np.asarray(g2)
    out = (eps + g) / (1.0 + np.conj(g) * eps)
    return out.real, out.imag


# ---------------------------------------------------------------- the square's symmetries (spin 2)

# sign of (g1, g2) after each transform of the (y, x) pixel grid, see d4_transform
D4_SIGNS = (
    (1.0, 1.0),    # 0 identity
    (1.0, -1.0),   # 1 flip x
    (1.0, -1.0),   # 2 flip y
    (1.0, 1.0),    # 3 rotate 180
    (-1.0, 1.0),   # 4 transpose (mirror in the x = y diagonal)
    (-1.0, -1.0),  # 5 rotate 90
    (-1.0, -1.0),  # 6 rotate -90
    (-1.0, 1.0),   # 7 anti-transpose
)
"""Sign of (g1, g2) after each transform of the square's pixel grid (``d4_transform``)."""


def d4_transform(x, k: int):
    """Apply transform ``k`` (0-7) of the square's symmetry group to the last two axes.

    Works on numpy arrays and torch tensors. See :data:`D4_SIGNS` for the
    matching change of (g1, g2).
    """
    is_torch = not isinstance(x, np.ndarray)
    if k >= 4:
        x = x.transpose(-1, -2) if is_torch else np.swapaxes(x, -1, -2)
        k -= 4
    dims = {0: (), 1: (-1,), 2: (-2,), 3: (-2, -1)}[k]
    if not dims:
        return x
    return x.flip(dims) if is_torch else np.flip(x, dims)
