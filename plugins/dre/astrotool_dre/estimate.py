"""Best-fit parameters from the statistic of every model: grid minimum, sub-grid radius, errors, flags.

Input: the ``(N, K)`` statistic and fluxes of :func:`astrotool_dre.chi2.fit_objects`.
Output: one column per quantity (:func:`best_parameters`), with the conventions
``ANGLE`` in degrees counter-clockwise from +x and ``LOGR`` the log10 major-axis
half-light radius in pixels.
"""

from __future__ import annotations

import math

import numpy as np

__docformat__ = "numpy"

__all__ = ["FLAG_BITS", "best_parameters"]

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
    if backend is None:
        from astrotool.backends import get_backend

        backend = get_backend("numpy", "cpu")
    be = backend
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
