r"""Metacalibration: a shear estimator that measures its own response (Sheldon & Huff 2017; Huff & Mandelbaum 2017).

For every stamp, with GalSim:

1. deconvolve: $I_\mathrm{deconv} = I \ast P^{-1}$, both the galaxy stamp and its PSF stamp as
   ``galsim.InterpolatedImage`` (quintic interpolant), ``galsim.Deconvolve`` of the PSF. The
   pixel response is in both stamps, so it cancels;
2. shear the deconvolved image by $\pm\delta$ in each component (``delta``, default 0.01),
   about the galaxy's centre (the adaptive-moments centroid of the unsheared image), as a
   real shear acts;
3. reconvolve with a round Gaussian $\Gamma$ and draw at the stamp's pixel scale
   (``method="no_pixel"``: the pixel is already in the deconvolved image). $\Gamma$ has the
   sigma of the PSF's *major* axis, from its adaptive moments
   $\sigma_\Gamma = (1 + 2\delta)\, \sigma_\mathrm{PSF} \sqrt{(1 + |g_\mathrm{PSF}|)/(1 - |g_\mathrm{PSF}|)}$,
   so it is wider than the sheared PSF in every direction (the deconvolution amplifies no
   frequency the PSF suppressed) and, being round, leaves no PSF anisotropy in the images;
4. measure an ellipticity $e$ on each of the five images (``noshear``: unsheared, reconvolved;
   ``1p, 1m, 2p, 2m``) with adaptive moments (``galsim.hsm.FindAdaptiveMom``: the reduced-shear
   ellipticity of the best-fitting elliptical Gaussian; no PSF correction, the reconvolution PSF
   is round), and form the response

   $$R_{ij} = \frac{e_i(+\delta_j) - e_i(-\delta_j)}{2\delta}.$$

The shear of an ensemble with one shear is $\langle e \rangle / \langle R \rangle$ (``noshear`` $e$ averaged,
the 2x2 response averaged, then $\hat g = \langle R \rangle^{-1} \langle e \rangle$), corrected to second
order in the shear (below). Per stamp the table holds
$e$ and $R$; ``metacal_g1, metacal_g2`` are $\langle R \rangle^{-1} e$ with the response averaged over the
whole table, and :func:`ensemble_shear` forms the estimate per constant-shear field.

Second order. $\langle R\rangle^{-1} \langle e \rangle$ is exact only as $g \to 0$; at $|g| \le 0.1$ it
overestimates the shear by ~0.5 % (noiseless rings). Two $O(|g|^2)$ terms cause it: the response is
to a shear $\delta$ applied on top of $g$, and shears compose as $g \oplus \delta \approx g + \delta - g^2
\delta^*$ (complex notation; the rotation that comes with the composition is absorbed by an isotropic
population), so $R$ is the derivative of $e$ along the Jacobian of that composition; and
$\langle e \rangle(g)$ is not linear. The estimator need not treat the two components alike: a
network symmetrised over the 8 flips and rotations of the pixel grid (the dihedral group D4) is
covariant under them only, and D4 maps neither component onto the other. Its mean ellipticity is
then, to third order,

$$\langle e_1 \rangle = A_1 g_1 + a_1 g_1^3 + b_1 g_1 g_2^2, \qquad
\langle e_2 \rangle = A_2 g_2 + a_2 g_2^3 + b_2 g_2 g_1^2$$

(a spin-2 estimator such as adaptive moments is the case $A_1 = A_2$, $a_i = b_i$). The second
derivatives $D_{ij} = (e_i(+\delta_j) + e_i(-\delta_j) - 2 e_i) / \delta^2$ of component $i$ along
shear $j$ (the same five images) measure the cubic terms: to leading order
$\langle D_{11} \rangle = (6 a_1 - 2 A_1)\, g_1$ and $\langle D_{12} \rangle = (2 b_1 - 2 A_1)\, g_1$.
Solving the four relations for $g$ gives, with $\hat g = \langle R \rangle^{-1} \langle e \rangle$,

$$g_1 = \hat g_1 \left(1 - \frac{\hat g_1^2}{3} + \hat g_2^2
+ \frac{\langle D_{11}\rangle \hat g_1}{3 \langle R_{11}\rangle}\right)
+ \frac{\langle D_{12}\rangle \hat g_2^2}{\langle R_{11}\rangle}$$

and the same with 1 and 2 exchanged. For a spin-2 estimator this equals the isotropic correction
$\hat g (1 - |\hat g|^2/3 + (\langle D_{11}\rangle \hat g_1 + \langle D_{22}\rangle \hat g_2) / 3\bar R)$.
On 10 noiseless fields of 800 Sérsic galaxies (ring pairs, Gaussian PSF, $|g| \le 0.12$) adaptive
moments give $m = +5.3 \times 10^{-3}$ at first order and $|m| \le 5 \times 10^{-5}$ with the correction; the
smooth CNN's own response (:mod:`astrotool_lens.response`) $m_2 = +1.2 \times 10^{-2}$ at first order,
$+5.2 \times 10^{-3}$ with the isotropic correction and $+4 \times 10^{-4}$ with this one. Near zero shear it
changes nothing (a survey's mean shear of 0.02 moves by $10^{-4}$ of itself).

Noise. Deconvolving and shearing a noisy stamp shears its noise too, and the sheared, correlated
noise biases $R$. With ``fixnoise`` (default) a noise image of the stamp's noise level is drawn
(Gaussian, sigma = 1.4826 MAD of the stamp's outer two-pixel frame), rotated by 90 degrees, put
through the same five operations, rotated back and added to each image (Sheldon & Huff 2017,
sec. 4.1): the two noise fields' shear-correlated parts cancel. This doubles the noise variance.
Noiseless stamps (frame MAD 0) get no noise.
"""

from __future__ import annotations

import math

import numpy as np

__docformat__ = "numpy"

SHEARS = ("noshear", "1p", "1m", "2p", "2m")
"""The metacalibration images: unsheared and sheared by +-delta along each component."""
COLUMNS = ("g1", "g2", "e1", "e2", "r11", "r12", "r21", "r22", "d11", "d12", "d21", "d22", "noise_sigma", "flag",
           "error")
"""Per-stamp METACAL columns, unprefixed (``metacal_<c>`` in the tables)."""
RESPONSE = ("e1", "e2", "r11", "r12", "r21", "r22")
"""The per-stamp columns of a response estimator (``<prefix>_e1`` ...): its ellipticity and 2x2 shear response."""
RESPONSE_COLUMNS = tuple(f"metacal_{c}" for c in RESPONSE)
"""The METACAL columns of :data:`RESPONSE`."""
SECOND_ORDER = ("d11", "d12", "d21", "d22")
"""Per-stamp second derivatives ``<prefix>_d11 ... <prefix>_d22`` ($D_{ij}$: component $i$ along shear $j$) of
an estimator that has them (METACAL, a network's own response): :func:`shear_from_response` then corrects to
second order in the shear."""
DESCRIPTIONS = {
    "metacal_g1": "metacal shear estimate <R>^-1 e, response averaged over the table (component 1)",
    "metacal_g2": "metacal shear estimate <R>^-1 e, response averaged over the table (component 2)",
    "metacal_e1": "ellipticity (reduced-shear, adaptive moments) of the reconvolved unsheared image, component 1",
    "metacal_e2": "ellipticity (reduced-shear, adaptive moments) of the reconvolved unsheared image, component 2",
    "metacal_r11": "shear response R11 = (e1(+delta g1) - e1(-delta g1)) / (2 delta)",
    "metacal_r12": "shear response R12 = (e1(+delta g2) - e1(-delta g2)) / (2 delta)",
    "metacal_r21": "shear response R21 = (e2(+delta g1) - e2(-delta g1)) / (2 delta)",
    "metacal_r22": "shear response R22 = (e2(+delta g2) - e2(-delta g2)) / (2 delta)",
    "metacal_d11": "second derivative d2e1/dg1^2 = (e1(+delta g1) + e1(-delta g1) - 2 e1) / delta^2",
    "metacal_d12": "second derivative d2e1/dg2^2 = (e1(+delta g2) + e1(-delta g2) - 2 e1) / delta^2",
    "metacal_d21": "second derivative d2e2/dg1^2 = (e2(+delta g1) + e2(-delta g1) - 2 e2) / delta^2",
    "metacal_d22": "second derivative d2e2/dg2^2 = (e2(+delta g2) + e2(-delta g2) - 2 e2) / delta^2",
    "metacal_noise_sigma": "noise sigma of a pixel at the stamp's edge, of the added rotated noise image (0: none)",
    "metacal_flag": "0 measured, 1 failed",
    "metacal_error": "why it failed",
}
"""One-line descriptions of the METACAL output columns."""

UNITS = {"metacal_noise_sigma": "ct"}
"""Astropy units of the METACAL columns that have one (as the truth table's ``flux``: counts; the others are
dimensionless)."""


def frame_sigma(stamp: np.ndarray, width: int = 2) -> float:
    """Noise sigma of a stamp from its outer frame of ``width`` pixels: 1.4826 x MAD [counts / pixel]."""
    a = np.asarray(stamp, float)
    frame = np.concatenate([a[:width].ravel(), a[-width:].ravel(), a[width:-width, :width].ravel(),
                            a[width:-width, -width:].ravel()])
    return float(1.4826 * np.median(np.abs(frame - np.median(frame))))


def reconvolution_sigma(psf_image, delta: float) -> float:
    """Sigma [arcsec] of the round Gaussian reconvolution PSF: (1 + 2 delta) x the PSF's major-axis sigma."""
    import galsim

    mom = galsim.hsm.FindAdaptiveMom(psf_image, strict=True)
    g = min(float(mom.observed_shape.g), 0.9)
    return (1.0 + 2.0 * delta) * float(mom.moments_sigma) * psf_image.scale * math.sqrt((1.0 + g) / (1.0 - g))


def _images(gal_image, psf_ii, reconv, delta: float, like, centred: bool = True) -> dict:
    """The five metacal images of one stamp (GalSim images shaped like ``like``).

    With ``centred`` the shears are applied about the galaxy's centre (the adaptive-moments
    centroid of the unsheared image; the stamp's centre where that fails), as a real shear
    acts: about the stamp's centre they would also move an offset galaxy by about delta times
    its offset, which adaptive moments ignore but a network does not.
    """
    import galsim

    ii = galsim.InterpolatedImage(gal_image, x_interpolant="quintic")
    deconv = galsim.Convolve(ii, galsim.Deconvolve(psf_ii))
    shears = {"noshear": None, "1p": (delta, 0.0), "1m": (-delta, 0.0), "2p": (0.0, delta), "2m": (0.0, -delta)}
    out = {"noshear": galsim.Convolve(deconv, reconv).drawImage(image=like.copy(), method="no_pixel")}
    centre = galsim.PositionD(0.0, 0.0)
    if centred:
        mom = galsim.hsm.FindAdaptiveMom(out["noshear"], strict=False)
        if mom.moments_status == 0 and not mom.error_message:
            centre = (mom.moments_centroid - out["noshear"].true_center) * out["noshear"].scale   # [arcsec]
    for name, s in shears.items():
        if s is not None:
            obj = deconv.shift(-centre).shear(g1=s[0], g2=s[1]).shift(centre)
            out[name] = galsim.Convolve(obj, reconv).drawImage(image=like.copy(), method="no_pixel")
    return out


def metacal_images(gal: np.ndarray, psf: np.ndarray, pixel_scale: float = 1.0, delta: float = 0.01,
                   fixnoise: bool = True, seed: int = 0) -> tuple[dict, np.ndarray, float]:
    """The five metacal images of one stamp (steps 1-3 of the module docs, with the noise image).

    Parameters
    ----------
    gal, psf : numpy.ndarray
        (ny, nx) galaxy stamp [counts / pixel] and PSF stamp (any normalisation), same pixel scale.
    pixel_scale : float
        [arcsec / pixel].
    delta : float
        The applied shear (each component, + and -).
    fixnoise : bool
        Cancel the sheared noise with a 90-degree-rotated noise image (module docs).
    seed : int
        Seed of that noise image.

    Returns
    -------
    images : dict
        :data:`SHEARS` name -> (ny, nx) image [counts / pixel].
    reconv_psf : numpy.ndarray
        (ny, nx) the round Gaussian reconvolution PSF, drawn as the images are (unit sum).
    noise_sigma : float
        Sigma of the added noise image (0 when none was added) [counts / pixel].

    Raises
    ------
    ValueError, RuntimeError, galsim.GalSimError
        Non-finite or blank stamp, failed adaptive moments of the PSF.
    """
    import galsim

    gal = np.asarray(gal, float)
    psf = np.asarray(psf, float)
    if not (np.isfinite(gal).all() and np.isfinite(psf).all()):
        raise ValueError("non-finite pixels")
    if not gal.any() or psf.sum() <= 0:
        raise ValueError("blank stamp" if not gal.any() else "PSF stamp without positive flux")
    gim = galsim.Image(np.ascontiguousarray(gal), scale=pixel_scale)
    pim = galsim.Image(np.ascontiguousarray(psf / psf.sum()), scale=pixel_scale)
    psf_ii = galsim.InterpolatedImage(pim, x_interpolant="quintic")
    reconv = galsim.Gaussian(sigma=reconvolution_sigma(pim, delta))
    images = _images(gim, psf_ii, reconv, delta, gim)
    sigma = frame_sigma(gal) if fixnoise else 0.0
    if sigma > 0:
        rng = np.random.default_rng(seed)
        noise = rng.normal(0.0, sigma, gal.shape)
        nim = galsim.Image(np.ascontiguousarray(np.rot90(noise, 1)), scale=pixel_scale)
        rpsf = galsim.InterpolatedImage(galsim.Image(np.ascontiguousarray(np.rot90(pim.array, 1)), scale=pixel_scale),
                                        x_interpolant="quintic")
        like = galsim.Image(np.zeros_like(nim.array), scale=pixel_scale)
        for name, im in _images(nim, rpsf, reconv, delta, like, centred=False).items():   # stationary noise
            images[name] += galsim.Image(np.ascontiguousarray(np.rot90(im.array, -1)), scale=pixel_scale)
    rpsf_stamp = reconv.drawImage(image=gim.copy(), method="no_pixel").array
    return {k: im.array for k, im in images.items()}, rpsf_stamp / rpsf_stamp.sum(), sigma


def response_from_shapes(shapes: dict, delta: float) -> dict:
    """Ellipticity, response and second derivatives from the ellipticities of the five images.

    Parameters
    ----------
    shapes : dict
        :data:`SHEARS` name -> (e1, e2).
    delta : float
        The applied shear.

    Returns
    -------
    dict
        ``e1, e2``, ``r<i><j>`` and ``d<i><j>`` for i, j in 1, 2 (module docs).
    """
    e = shapes["noshear"]
    out = {"e1": e[0], "e2": e[1]}
    for i in (0, 1):
        for j, (p, m) in enumerate((("1p", "1m"), ("2p", "2m"))):
            out[f"r{i + 1}{j + 1}"] = (shapes[p][i] - shapes[m][i]) / (2.0 * delta)
            out[f"d{i + 1}{j + 1}"] = (shapes[p][i] + shapes[m][i] - 2 * e[i]) / delta**2
    return out


def metacal_stamp(gal: np.ndarray, psf: np.ndarray, pixel_scale: float = 1.0, delta: float = 0.01,
                  fixnoise: bool = True, seed: int = 0, guess_sig: float = 5.0) -> dict:
    """Metacalibrate one stamp, the ellipticities measured with adaptive moments.

    Parameters
    ----------
    gal, psf, pixel_scale, delta, fixnoise, seed
        See :func:`metacal_images`.
    guess_sig : float
        Initial adaptive-moment sigma [pixels].

    Returns
    -------
    dict
        ``e1, e2`` (noshear reduced-shear ellipticity), ``r11, r12, r21, r22``, ``d11, d12, d21, d22`` (second
        derivatives, module docs) and ``noise_sigma`` (the estimated sigma, 0 when none was added).

    Raises
    ------
    ValueError, RuntimeError, galsim.GalSimError
        Non-finite or blank stamp, failed adaptive moments.
    """
    import galsim

    images, _, sigma = metacal_images(gal, psf, pixel_scale, delta, fixnoise, seed)
    shapes = {}
    for name, im in images.items():
        mom = galsim.hsm.FindAdaptiveMom(galsim.Image(im, scale=pixel_scale), strict=False, guess_sig=guess_sig)
        if mom.moments_status != 0 or mom.error_message:
            raise ValueError(f"{name}: {mom.error_message.strip() or f'adaptive moments status {mom.moments_status}'}")
        shapes[name] = (float(mom.observed_shape.g1), float(mom.observed_shape.g2))
    return {**response_from_shapes(shapes, delta), "noise_sigma": sigma}


def failure_reason(exc: BaseException) -> str:
    """Why a stamp failed, for a table's ``<method>_error`` column: the first line of the message (at most
    200 characters), or the exception's type when it has none."""
    msg = str(exc).strip()
    return msg.splitlines()[0][:200] if msg else type(exc).__name__


def stamp_seed(seed: int, index: int) -> int:
    """The seed of stamp ``index``'s noise image: reproducible per stamp, whatever the sharding."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def metacal_arrays(gal: np.ndarray, psf: np.ndarray, pixel_scale: float = 1.0, delta: float = 0.01,
                   fixnoise: bool = True, seed: int = 0, start: int = 0, guess_sig: float = 5.0) -> dict:
    """Metacalibrate stamps; failures are NaN with ``metacal_flag = 1`` and the message, never raised.

    Parameters
    ----------
    gal, psf : numpy.ndarray
        (n, ny, nx) galaxy stamps and (n, ny, nx) or (ny, nx) PSF stamps.
    pixel_scale, delta, fixnoise, guess_sig
        See :func:`metacal_stamp`.
    seed, start : int
        The noise image of stamp ``start + i`` is drawn with ``(seed, start + i)``: reproducible per stamp,
        whatever the sharding.

    Returns
    -------
    dict of numpy.ndarray
        ``metacal_<c>`` for every c of :data:`COLUMNS`; ``metacal_g1, metacal_g2`` are
        :math:`\langle R\rangle^{-1} e` with the response averaged over these stamps
        (:func:`shear_from_response`).
    """
    import warnings

    import galsim

    gal = np.asarray(gal, dtype=float)
    n = gal.shape[0]
    psf = np.asarray(psf, dtype=float)
    if psf.ndim == 2:
        psf = np.broadcast_to(psf, gal.shape[:1] + psf.shape)
    out = {f"metacal_{c}": np.full(n, np.nan) for c in COLUMNS if c not in ("flag", "error")}
    out["metacal_flag"] = np.ones(n, dtype=np.int8)
    out["metacal_error"] = np.array([""] * n, dtype=object)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in range(n):
            try:
                r = metacal_stamp(gal[i], psf[i], pixel_scale, delta, fixnoise, stamp_seed(seed, start + i), guess_sig)
            except (galsim.GalSimError, ValueError, RuntimeError, ZeroDivisionError) as exc:
                out["metacal_error"][i] = failure_reason(exc)
                continue
            for k, v in r.items():
                out[f"metacal_{k}"][i] = v
            out["metacal_flag"][i] = 0
    out["metacal_error"] = out["metacal_error"].astype(str)
    out["metacal_g1"], out["metacal_g2"] = shear_from_response(out)
    return out


def shear_from_response(table, field=None, prefix: str = "metacal",
                        second_order: bool = True) -> tuple[np.ndarray, np.ndarray]:
    r"""Per-stamp shear estimates $\langle R\rangle^{-1} e$, the response averaged per group.

    The mean of the returned values over a group is that group's shear
    $\langle R \rangle^{-1} \langle e \rangle$, corrected to second order as in the module docs
    (:func:`second_order_terms`) when the table has the :data:`SECOND_ORDER` columns. Metacalibration and
    FPFS (``prefix="anacal"``, first order only) share it.

    Parameters
    ----------
    table : mapping
        ``<prefix>_e1, <prefix>_e2, <prefix>_r11, <prefix>_r12, <prefix>_r21, <prefix>_r22`` and,
        optionally, ``<prefix>_d11, <prefix>_d12, <prefix>_d21, <prefix>_d22`` (arrays; NaN = failed, left
        out of the averages and returned as NaN).
    field : array-like, optional
        Group (constant-shear field) of each stamp; None: one group, all stamps.
    prefix : str
        The estimator's column prefix.
    second_order : bool
        Apply the second-order correction when the table allows it (False: $\langle R\rangle^{-1} e$).

    Returns
    -------
    g1, g2 : numpy.ndarray
    """
    names = RESPONSE + (SECOND_ORDER if second_order and all(f"{prefix}_{c}" in table for c in SECOND_ORDER)
                        else ())
    col = {c: np.asarray(table[f"{prefix}_{c}"], float) for c in names}
    n = len(col["e1"])
    ok = np.logical_and.reduce([np.isfinite(v) for v in col.values()])
    field = np.zeros(n, dtype=np.int64) if field is None else np.asarray(field)
    g1, g2 = np.full(n, np.nan), np.full(n, np.nan)
    for f in np.unique(field[ok]):
        sel = ok & (field == f)
        r = np.array([[col["r11"][sel].mean(), col["r12"][sel].mean()],
                      [col["r21"][sel].mean(), col["r22"][sel].mean()]])
        if not np.isfinite(r).all() or abs(np.linalg.det(r)) < 1e-12:
            continue
        g = np.linalg.solve(r, np.vstack([col["e1"][sel], col["e2"][sel]]))
        if "d11" in col:
            d = np.array([[col["d11"][sel].mean(), col["d12"][sel].mean()],
                          [col["d21"][sel].mean(), col["d22"][sel].mean()]])
            factor, offset = second_order_terms(g.mean(axis=1), r, d)
            g = g * factor[:, None] + offset[:, None]
        g1[sel], g2[sel] = g[0], g[1]
    return g1, g2


def second_order_terms(g, r, d) -> tuple[np.ndarray, np.ndarray]:
    r"""What takes a group's first-order shear $\hat g = \langle R\rangle^{-1}\langle e\rangle$ to second order
    (module docs): $g_i = f_i \hat g_i + o_i$ with
    $f_1 = 1 - \hat g_1^2/3 + \hat g_2^2 + \langle D_{11}\rangle \hat g_1 / (3\langle R_{11}\rangle)$,
    $o_1 = \langle D_{12}\rangle \hat g_2^2 / \langle R_{11}\rangle$, and 1 and 2 exchanged for $i = 2$.

    Parameters
    ----------
    g : (2,) array-like
        $\hat g$.
    r : (2, 2) array-like
        $\langle R_{ij}\rangle$.
    d : (2, 2) array-like
        $\langle D_{ij}\rangle$, the second derivative of component $i$ along shear $j$.

    Returns
    -------
    factor, offset : numpy.ndarray
        (2,) each: $f$ and $o$.
    """
    g, r, d = np.asarray(g, float), np.asarray(r, float), np.asarray(d, float)
    other = g[::-1]
    diag, cross = np.diag(r), np.array([d[0, 1], d[1, 0]])
    factor = 1.0 - g * g / 3.0 + other * other + np.diag(d) * g / (3.0 * diag)
    return factor, cross * other * other / diag


def ensemble_shear(table, field=None) -> dict:
    r"""The metacal shear $\langle R\rangle^{-1}\langle e\rangle$ of each group.

    Returns
    -------
    dict
        ``{group: (g1, g2)}`` (group 0 when ``field`` is None).
    """
    g1, g2 = shear_from_response(table, field)
    field = np.zeros(len(g1), dtype=np.int64) if field is None else np.asarray(field)
    ok = np.isfinite(g1)
    out = {}
    for f in np.unique(field[ok]):
        sel = ok & (field == f)
        out[f.item() if hasattr(f, "item") else f] = (float(g1[sel].mean()), float(g2[sel].mean()))
    return out
