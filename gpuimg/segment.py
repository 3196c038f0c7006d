"""Adaptive thresholding and shape measurement: local thresholds, piecewise-linear fits,
weld-bead profiles and their geometry.

``threshold_local`` runs on the image's backend. The fits are small 1-D least-squares
problems and are solved on the host (NumPy/SciPy); :meth:`PolylineFit.predict` evaluates on
the backend of its argument.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gpuimg import filters
from gpuimg._backend import asnumpy, get_backend
from gpuimg._validate import check_array, check_bool, check_choice, check_mode, check_odd_window, check_positive, to_float

__all__ = [
    "BeadGeometry",
    "PolylineFit",
    "bead_geometry",
    "bead_profile",
    "fit_polyline",
    "synthetic_bead",
    "threshold_local",
]

THRESHOLD_METHODS = ("gaussian", "mean", "median")
#: most pieces ``fit_polyline(max_error=...)`` tries
MAX_AUTO_SEGMENTS = 32


# ----------------------------------------------------------------------------------------
# Local threshold
# ----------------------------------------------------------------------------------------

def _block_sizes(block_size: Any) -> tuple[int, int]:
    if isinstance(block_size, (tuple, list)):
        if len(block_size) != 2:
            raise ValueError(f"block_size must be an odd integer or a pair of them, got {block_size!r}")
        sizes = block_size
    else:
        sizes = (block_size, block_size)
    return tuple(check_odd_window("block_size", b, minimum=3) for b in sizes)  # type: ignore[return-value]


def threshold_local(image, block_size, *, method: str = "gaussian", offset: float = 0.0,
                    mode: str = "reflect", param: Any = None, cval: float = 0.0):
    r"""Local threshold surface: a weighted mean (or median) of each pixel's neighbourhood,
    minus ``offset``; equal to :func:`skimage.filters.threshold_local`.

    .. math::  T = F_b(x) - \mathrm{offset}

    where :math:`F_b` is, over a ``block_size`` window on the last two axes:

    * ``"gaussian"``: a Gaussian filter with standard deviation ``param`` (default
      :math:`(b - 1) / 6`, so the window holds > 99 % of the weight), truncated at 4 sigma;
    * ``"mean"``: the box mean;
    * ``"median"``: the median.

    Pixels with ``image > T`` are foreground. Values outside the image follow ``mode``
    (SciPy's names; ``cval`` for the constant modes).

    Parameters
    ----------
    image : array, shape (..., H, W)
        Real image; leading axes are a batch.
    block_size : int or (int, int)
        Odd window size(s) >= 3 along the rows and columns.
    method : {"gaussian", "mean", "median"}
    offset : float
        Subtracted from the local statistic.
    mode : str
        Boundary mode.
    param : float or (float, float), optional
        Gaussian standard deviation(s) for ``method="gaussian"``.
    cval : float
        Fill value of the constant modes.

    Returns
    -------
    array, same shape as ``image``, on its backend, in its float dtype.

    References
    ----------
    R. C. Gonzalez and R. E. Woods, "Digital Image Processing", 2nd ed., Prentice-Hall
    (2002), pp. 600-612.
    """
    check_array("image", image, min_ndim=2)
    sizes = _block_sizes(block_size)
    check_choice("method", method, THRESHOLD_METHODS)
    for name, v in (("offset", offset), ("cval", cval)):
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
            raise ValueError(f"{name} must be a finite real number, got {v!r}")
    check_mode(mode)
    if method == "gaussian":
        if param is None:
            sigma = tuple((b - 1) / 6.0 for b in sizes)
        else:
            sig = param if isinstance(param, (tuple, list)) else (param, param)
            if len(sig) != 2:
                raise ValueError(f"param must be a standard deviation or a pair of them, got {param!r}")
            sigma = tuple(check_positive("param", s) for s in sig)
    elif param is not None:
        raise ValueError(f"param is only used by method='gaussian', got param={param!r} with method={method!r}")

    be = get_backend(image, names=("image",))
    x = to_float(image, be.xp)
    lead = x.ndim - 2
    if method == "gaussian":
        t = filters.gaussian_filter(x, sigma, mode=mode, cval=float(cval), truncate=4.0)
    elif method == "mean":
        t = filters.uniform_filter(x, sizes, mode=mode, cval=float(cval))
    else:
        t = be.ndimage.median_filter(x, size=(1,) * lead + sizes, mode=mode, cval=float(cval))
    return t - x.dtype.type(offset)


# ----------------------------------------------------------------------------------------
# Piecewise-linear fits
# ----------------------------------------------------------------------------------------

@dataclass
class PolylineFit:
    """A piecewise-linear fit ``y ~ f(x)`` with ``n_segments`` pieces.

    Attributes
    ----------
    breakpoints : ndarray, shape (n_segments + 1,)
        Segment ends in increasing order; the first and last are the data's x range.
    slopes, intercepts : ndarray, shape (n_segments,)
        Segment ``k`` is ``y = slopes[k] * x + intercepts[k]`` on
        ``[breakpoints[k], breakpoints[k + 1]]``.
    rms : float
        Root-mean-square residual (weighted by ``weights / mean(weights)`` when given).
    sse : float
        (Weighted) residual sum of squares.
    continuous : bool
        Whether adjacent segments meet at the breakpoints.
    """

    breakpoints: np.ndarray
    slopes: np.ndarray
    intercepts: np.ndarray
    rms: float
    sse: float
    continuous: bool = True
    n_points: int = field(default=0, repr=False)

    @property
    def n_segments(self) -> int:
        return int(self.slopes.size)

    @property
    def vertices(self) -> np.ndarray:
        """``(n_segments + 1, 2)`` array of ``(x, y)`` at the breakpoints (left segment's y
        at each interior breakpoint for discontinuous fits)."""
        b = self.breakpoints
        ys = np.empty_like(b)
        ys[:-1] = self.slopes * b[:-1] + self.intercepts
        ys[-1] = self.slopes[-1] * b[-1] + self.intercepts[-1]
        return np.stack([b, ys], axis=1)

    def predict(self, x):
        """Evaluate the fit at ``x`` (array or scalar), on ``x``'s backend; segments extend
        linearly beyond the breakpoint range."""
        be = get_backend(x, names=("x",))
        xp = be.xp
        xa = xp.asarray(x, dtype=np.float64)
        k = xp.searchsorted(xp.asarray(self.breakpoints[1:-1]), xa, side="right")
        return xp.asarray(self.slopes)[k] * xa + xp.asarray(self.intercepts)[k]


def _hinge_design(x: np.ndarray, inner: np.ndarray) -> np.ndarray:
    return np.concatenate([np.ones((x.size, 1)), x[:, None], np.maximum(x[:, None] - inner[None, :], 0.0)], axis=1)


def _continuous_solve(x, y, sw, inner):
    """Weighted least squares for fixed interior breakpoints: (coefficients, residuals)."""
    a = _hinge_design(x, np.sort(inner)) * sw[:, None]
    coef, *_ = np.linalg.lstsq(a, y * sw, rcond=None)
    return coef, y * sw - a @ coef


class _LineCosts:
    """SSE of the weighted least-squares line through samples ``i .. j-1`` from prefix sums
    (inputs centred, so the differences of sums keep their digits)."""

    def __init__(self, x, y, w):
        x = x - np.average(x, weights=w)
        y = y - np.average(y, weights=w)

        def prefix(v):
            return np.concatenate([[0.0], np.cumsum(v)])

        self.s = [prefix(v) for v in (w, w * x, w * y, w * x * x, w * x * y, w * y * y)]

    def __call__(self, i, j):
        s1, sx, sy, sxx, sxy, syy = (p[j] - p[i] for p in self.s)
        with np.errstate(divide="ignore", invalid="ignore"):
            vxx = sxx - sx * sx / s1
            vxy = sxy - sx * sy / s1
            vyy = syy - sy * sy / s1
            cost = vyy - np.where(vxx > 1e-12 * np.maximum(sxx, 1e-300), vxy * vxy / vxx, 0.0)
        return np.where(np.asarray(j) - np.asarray(i) >= 2, np.maximum(cost, 0.0), np.inf)


def _dp_partition(x, y, w, n_segments, max_candidates=400):
    """Split points (data indices, first 0 and last n) minimising the summed line-fit SSE.

    Dynamic programming over splits between distinct x values (at most ``max_candidates``
    of them, evenly spread); when candidates were thinned, each split is then moved to the
    best gap between its neighbours in turn until nothing improves.
    """
    n = x.size
    costs = _LineCosts(x, y, w)
    all_gaps = np.nonzero(np.diff(x) > 0)[0] + 1
    gaps = all_gaps
    if gaps.size > max_candidates:
        gaps = gaps[np.unique(np.linspace(0, gaps.size - 1, max_candidates).round().astype(int))]
    cand = np.concatenate([[0], gaps, [n]])
    cost = costs(cand[:, None], cand[None, :])
    m = cand.size
    best = cost[0].copy()  # one segment from 0 to cand[j]
    back = []
    for _ in range(1, n_segments):
        total = best[:, None] + cost
        arg = np.argmin(total, axis=0)
        best = total[arg, np.arange(m)]
        back.append(arg)
    splits = [m - 1]
    for arg in reversed(back):
        splits.append(int(arg[splits[-1]]))
    splits.append(0)
    idx = cand[np.array(splits[::-1])]
    if gaps.size < all_gaps.size:
        for _ in range(10 * n_segments):
            moved = False
            for k in range(1, n_segments):
                opts = all_gaps[(all_gaps > idx[k - 1]) & (all_gaps < idx[k + 1])]
                if opts.size == 0:
                    continue
                tot = costs(idx[k - 1], opts) + costs(opts, idx[k + 1])
                j = int(opts[np.argmin(tot)])
                if j != idx[k] and tot.min() < costs(idx[k - 1], idx[k]) + costs(idx[k], idx[k + 1]):
                    idx[k], moved = j, True
            if not moved:
                break
    return idx


def _lines_from_coef(coef, inner):
    slopes = coef[1] + np.concatenate([[0.0], np.cumsum(coef[2:])])
    # on piece k: f(x) = c0 + c1 x + sum_{i<k} beta_i (x - b_i)
    intercepts = coef[0] - np.concatenate([[0.0], np.cumsum(coef[2:] * inner)])
    return slopes, intercepts


class _HingeSums:
    """Residual of the continuous fit as a function of the breakpoints in O(K^2 + K log n).

    With ``u`` the abscissae scaled to [0, 1] and tail sums ``T[k] = sum_{i >= k} ...``, the
    Gram matrix and right-hand side of the hinge basis ``1, u, (u - b_i)_+`` follow from
    ``sum_{u >= m} w u^p y^q`` at ``m = max(b_i, b_j)``; the residual is
    ``sum w y^2 - r^T G^{-1} r`` and its gradient ``2 c_i sum_{u > b_i} w (y - f(u))``.
    """

    def __init__(self, u, y, w):
        self.u = u

        def tail(v):
            return np.concatenate([np.cumsum(v[::-1])[::-1], [0.0]])

        self.t0, self.t1, self.t2 = tail(w), tail(w * u), tail(w * u * u)
        self.ty, self.tuy = tail(w * y), tail(w * u * y)
        self.yy = float(np.sum(w * y * y))

    def __call__(self, b_in):
        rank = np.argsort(np.argsort(b_in, kind="stable"), kind="stable")
        b = np.sort(np.clip(b_in, 0.0, 1.0))
        k = np.searchsorted(self.u, b, side="left")
        t0, t1, t2 = self.t0, self.t1, self.t2
        n = b.size + 2
        g = np.empty((n, n))
        r = np.empty(n)
        g[0, 0], g[0, 1], g[1, 1] = t0[0], t1[0], t2[0]
        r[0], r[1] = self.ty[0], self.tuy[0]
        g[0, 2:] = t1[k] - b * t0[k]
        g[1, 2:] = t2[k] - b * t1[k]
        # pairs of hinges: tail beyond the later breakpoint (b is sorted)
        km = np.maximum(k[:, None], k[None, :])
        bi, bj = b[:, None], b[None, :]
        g[2:, 2:] = t2[km] - (bi + bj) * t1[km] + bi * bj * t0[km]
        g[2:, :2] = g[:2, 2:].T
        g[1, 0] = g[0, 1]
        r[2:] = self.tuy[k] - b * self.ty[k]
        c = np.linalg.lstsq(g, r, rcond=1e-13)[0]
        sse = max(self.yy - float(r @ c), 0.0)
        # sum_{u >= b_i} w (y - f): f's tail sums per basis function
        tail_f = c[0] * t0[k] + c[1] * t1[k] + ((t1[km] - bj * t0[km]) * c[None, 2:]).sum(axis=1)
        grad = 2.0 * c[2:] * (self.ty[k] - tail_f)
        return sse, grad[rank]


def _fit_continuous(x, y, w, n_segments):
    from scipy.optimize import least_squares, minimize

    sw = np.sqrt(w)
    lo, hi = float(x[0]), float(x[-1])
    if n_segments == 1:
        coef, res = _continuous_solve(x, y, sw, np.empty(0))
        return np.empty(0), coef, float(res @ res)
    span = hi - lo
    yc = y - np.average(y, weights=w)
    objective = _HingeSums((x - lo) / span, yc, w)
    total = objective.yy + 1e-300

    # breakpoints stay between the second and the second-to-last sample, so that the end
    # pieces keep two samples (a one-sample piece would fit its sample with any slope)
    distinct = np.unique(x)
    b_min, b_max = float(distinct[1]), float(distinct[-2])
    u_min, u_max = (b_min - lo) / span, (b_max - lo) / span
    idx = _dp_partition(x, y, w, n_segments)
    starts = [0.5 * (x[idx[1:-1] - 1] + x[idx[1:-1]])]
    # equal-count split as a second start, in case the discontinuous optimum misleads
    q = np.linspace(0, x.size - 1, n_segments + 1)[1:-1].round().astype(int)
    starts.append(x[q].astype(float))
    best = None
    for b0 in starts:
        u0 = np.clip((np.sort(b0) - lo) / span, u_min, u_max)
        sol = minimize(objective, u0, jac=True, method="L-BFGS-B", bounds=[(u_min, u_max)] * u0.size,
                       options={"ftol": 1e-15, "gtol": 1e-12 * total, "maxiter": 500})
        u = sol.x
        # a derivative-free step across kinks (a breakpoint on a sample)
        polish = minimize(lambda v: objective(v)[0], u, method="Nelder-Mead",
                          options={"xatol": 1e-8, "fatol": 1e-14 * total, "maxiter": 100 * n_segments})
        if polish.fun < objective(u)[0]:
            u = np.clip(polish.x, u_min, u_max)
        f = objective(u)[0]
        if best is None or f < best[1]:
            best = (np.sort(u), f)
    # Gauss-Newton on the exact residuals: the tail sums lose digits when the residual is tiny
    inner = np.clip(lo + span * best[0], b_min, b_max)
    _, res0 = _continuous_solve(x, y, sw, inner)
    sol = least_squares(lambda b: _continuous_solve(x, y, sw, b)[1], inner, bounds=(b_min, b_max),
                        x_scale=span / n_segments, xtol=1e-14, ftol=1e-15, gtol=1e-15,
                        max_nfev=20 * n_segments)
    if float(sol.fun @ sol.fun) < float(res0 @ res0):
        inner = np.sort(sol.x)
    coef, res = _continuous_solve(x, y, sw, inner)
    return inner, coef, float(res @ res)


def _fit_discontinuous(x, y, w, n_segments):
    idx = _dp_partition(x, y, w, n_segments, max_candidates=1000)
    slopes, intercepts = np.empty(n_segments), np.empty(n_segments)
    sse = 0.0
    for k in range(n_segments):
        s = slice(idx[k], idx[k + 1])
        sw = np.sqrt(w[s])
        a = np.stack([x[s], np.ones(idx[k + 1] - idx[k])], axis=1) * sw[:, None]
        coef, *_ = np.linalg.lstsq(a, y[s] * sw, rcond=None)
        r = y[s] * sw - a @ coef
        slopes[k], intercepts[k] = coef
        sse += float(r @ r)
    inner = 0.5 * (x[idx[1:-1] - 1] + x[idx[1:-1]])
    return inner, slopes, intercepts, sse


def _one_fit(x, y, w, n_segments, continuous, x_range):
    lo, hi = x_range
    if continuous:
        inner, coef, sse = _fit_continuous(x, y, w, n_segments)
        slopes, intercepts = _lines_from_coef(coef, inner)
    else:
        inner, slopes, intercepts, sse = _fit_discontinuous(x, y, w, n_segments)
    bps = np.concatenate([[lo], inner, [hi]])
    rms = math.sqrt(sse / float(np.sum(w)))
    return PolylineFit(bps, np.asarray(slopes, float), np.asarray(intercepts, float), rms, sse,
                       continuous, x.size)


def fit_polyline(x, y, *, n_segments: int | None = None, max_error: float | None = None,
                 continuous: bool = True, weights=None) -> PolylineFit:
    r"""Least-squares piecewise-linear fit with optimised breakpoints.

    Minimises :math:`\sum_i w_i (y_i - f(x_i))^2` over functions :math:`f` that are linear
    on each of ``n_segments`` intervals :math:`[b_k, b_{k+1}]` with
    :math:`b_0 = \min x`, :math:`b_K = \max x`; with ``continuous=True`` the pieces meet at
    the breakpoints (:math:`f(x) = c_0 + c_1 x + \sum_k \beta_k (x - b_k)_+`), otherwise
    each piece is an independent line.

    Breakpoints are optimised, not fixed. Dynamic programming over split positions between
    distinct x values finds the best partition for independent lines (Bellman); this is the
    answer for ``continuous=False`` (exact up to 1000 distinct x values, beyond which the
    splits are searched on a thinned grid and then moved one at a time to the best gap
    between their neighbours). For ``continuous=True`` it seeds a local search on the
    variable-projection residual :math:`\min_c \|W^{1/2}(y - A(b) c)\|^2` (Golub & Pereyra):
    L-BFGS-B with the analytic gradient, evaluated from tail sums in :math:`O(K^2)` per step,
    a Nelder-Mead step across kinks, and a Gauss-Newton polish on the exact residuals. An
    equal-count start is tried as well and the better optimum is kept.

    Parameters
    ----------
    x, y : array, shape (n,)
        Samples (any order; sorted internally). NaN samples are not allowed.
    n_segments : int, optional
        Number of pieces, >= 1. Give exactly one of ``n_segments`` and ``max_error``.
    max_error : float, optional
        Use the fewest pieces (at most ``min(n // 2, 32)``) whose RMS residual is
        <= ``max_error``; ``ValueError`` if none is.
    continuous : bool
        Join the pieces at the breakpoints.
    weights : array, shape (n,), optional
        Non-negative sample weights.

    Returns
    -------
    PolylineFit
        Breakpoints, slopes, intercepts, residual RMS and ``predict``.

    References
    ----------
    R. Bellman, "On the approximation of curves by line segments using dynamic
    programming", Commun. ACM 4(6) (1961) 284. G. H. Golub and V. Pereyra, "The
    differentiation of pseudo-inverses and nonlinear least squares problems whose variables
    separate", SIAM J. Numer. Anal. 10 (1973) 413-432.
    """
    xs = np.asarray(asnumpy(x), dtype=np.float64)
    ys = np.asarray(asnumpy(y), dtype=np.float64)
    if xs.ndim != 1 or xs.size == 0:
        raise ValueError(f"x must be a non-empty 1-D array, got shape {xs.shape}")
    if ys.shape != xs.shape:
        raise ValueError(f"x and y must have the same shape, got {xs.shape} and {ys.shape}")
    if not (np.isfinite(xs).all() and np.isfinite(ys).all()):
        raise ValueError("x and y must be finite (drop NaN samples first)")
    if weights is None:
        ws = np.ones_like(xs)
    else:
        ws = np.asarray(asnumpy(weights), dtype=np.float64)
        if ws.shape != xs.shape:
            raise ValueError(f"weights must have the shape of x, got {ws.shape} and {xs.shape}")
        if not np.isfinite(ws).all() or (ws < 0).any() or ws.sum() <= 0:
            raise ValueError("weights must be finite, >= 0 and not all zero")
    if (n_segments is None) == (max_error is None):
        raise ValueError(f"give exactly one of n_segments and max_error, got n_segments={n_segments!r}, "
                         f"max_error={max_error!r}")
    check_bool("continuous", continuous)
    order = np.argsort(xs, kind="stable")
    xs, ys, ws = xs[order], ys[order], ws[order]
    x_range = (float(xs[0]), float(xs[-1]))
    # zero-weight samples do not enter the objective: fit the others, over the whole range
    keep = ws > 0
    xs, ys, ws = xs[keep], ys[keep], ws[keep]
    n_distinct = int(np.unique(xs).size)
    if n_segments is not None:
        if isinstance(n_segments, bool) or not isinstance(n_segments, numbers.Integral):
            raise TypeError(f"n_segments must be an integer, got {n_segments!r}")
        if n_segments < 1:
            raise ValueError(f"n_segments must be >= 1, got {n_segments!r}")
        if 2 * n_segments > n_distinct:
            raise ValueError(
                f"n_segments={n_segments} needs at least {2 * n_segments} distinct x values with "
                f"positive weight, got {n_distinct}")
        return _one_fit(xs, ys, ws, int(n_segments), bool(continuous), x_range)
    check_positive("max_error", max_error)
    most = min(max(n_distinct // 2, 1), MAX_AUTO_SEGMENTS)
    for k in range(1, most + 1):
        fit = _one_fit(xs, ys, ws, k, bool(continuous), x_range)
        if fit.rms <= max_error:
            return fit
    raise ValueError(f"no fit with up to {most} segments has RMS <= max_error={max_error!r} "
                     f"(best {fit.rms:.6g})")


# ----------------------------------------------------------------------------------------
# Weld-bead profile and geometry
# ----------------------------------------------------------------------------------------

def bead_profile(mask, *, side: str = "top"):
    r"""Boundary height of the largest object in each column of a binary image.

    The largest 8-connected object of ``mask`` is kept. For ``side="top"`` the profile is
    the height of its upper edge above the image's bottom edge, :math:`H - r_{\min}(c)`;
    for ``side="bottom"`` the depth of its lower edge below the image's top edge,
    :math:`r_{\max}(c) + 1`. Columns the object does not reach are NaN.

    Parameters
    ----------
    mask : array, shape (H, W)
        Binary image (non-zero is foreground).
    side : {"top", "bottom"}

    Returns
    -------
    array, shape (W,), float64, on the mask's backend.
    """
    check_array("mask", mask, ndim=2)
    check_choice("side", side, ("top", "bottom"))
    be = get_backend(mask, names=("mask",))
    xp = be.xp
    m = xp.asarray(mask) != 0
    labels, n = be.ndimage.label(m, structure=np.ones((3, 3), dtype=bool))
    if int(n) == 0:
        raise ValueError("mask contains no foreground object")
    sizes = xp.bincount(labels.ravel())
    sizes[0] = 0
    obj = (labels == xp.argmax(sizes)).astype(np.uint8)
    rows = m.shape[0]
    present = obj.any(axis=0)
    if side == "bottom":
        obj = obj[::-1]
    edge = rows - xp.argmax(obj, axis=0).astype(np.float64)
    return xp.where(present, edge, xp.nan)


@dataclass
class BeadGeometry:
    """Weld-bead measurements from a piecewise-linear profile fit (pixels and degrees).

    Attributes
    ----------
    toe_left, toe_right : ndarray, shape (2,)
        ``(x, z)`` of the toe points (the first and last interior breakpoints).
    height : float
        Largest distance of the fitted profile above the base line (the line through the
        toes), measured perpendicular to it.
    width : float
        Distance between the toes.
    left_angle, right_angle : float
        Inclination of each flank against the base line, in degrees (0 flat, 90 vertical).
    area : float
        Reinforcement area between the fitted profile and the base line (pixels^2).
    fit : PolylineFit
        The profile fit.
    """

    toe_left: np.ndarray
    toe_right: np.ndarray
    height: float
    width: float
    left_angle: float
    right_angle: float
    area: float
    fit: PolylineFit


def _angle_deg(u: np.ndarray, v: np.ndarray) -> float:
    cross = u[0] * v[1] - u[1] * v[0]
    return math.degrees(math.atan2(abs(cross), float(u @ v)))


def bead_geometry(mask_or_profile, *, n_segments: int = 5, side: str = "top") -> BeadGeometry:
    r"""Toe points, height, width, flank angles and reinforcement area of a weld bead.

    A 2-D input is a binary image and goes through :func:`bead_profile` first; a 1-D input
    is a profile :math:`z(x)` sampled at :math:`x = 0, 1, \dots` (NaN samples are
    ignored). The profile is fitted with a continuous polyline of ``n_segments`` pieces
    (:func:`fit_polyline`): plate, left flank, crown piece(s), right flank, plate. The toes
    are the first and last interior breakpoints :math:`T_l, T_r`; the base line joins them.
    Height is the largest perpendicular distance of a polyline vertex above the base line,
    width :math:`|T_r - T_l|`, each flank angle the angle between the flank piece and the
    base line, and the area that of the polygon enclosed by the polyline between the toes
    and the base line (shoelace formula).

    Parameters
    ----------
    mask_or_profile : array, shape (H, W) or (W,)
    n_segments : int
        Pieces of the profile fit, >= 3.
    side : {"top", "bottom"}
        Which boundary of a mask to measure.

    Returns
    -------
    BeadGeometry

    References
    ----------
    ISO 5817:2023, "Welding - Fusion-welded joints in steel, nickel, titanium and their
    alloys - Quality levels for imperfections" (reinforcement height and toe angle).
    """
    check_array("mask_or_profile", mask_or_profile, ndim=(1, 2))
    if isinstance(n_segments, bool) or not isinstance(n_segments, numbers.Integral):
        raise TypeError(f"n_segments must be an integer, got {n_segments!r}")
    if n_segments < 3:
        raise ValueError(f"n_segments must be >= 3 (plate, flanks, crown), got {n_segments!r}")
    if mask_or_profile.ndim == 2:
        profile = bead_profile(mask_or_profile, side=side)
    else:
        check_choice("side", side, ("top", "bottom"))
        profile = mask_or_profile
    z = np.asarray(asnumpy(profile), dtype=np.float64)
    xs = np.arange(z.size, dtype=np.float64)
    ok = np.isfinite(z)
    if not ok.any():
        raise ValueError("mask_or_profile has no finite profile samples")
    fit = fit_polyline(xs[ok], z[ok], n_segments=int(n_segments))
    v = fit.vertices
    tl, tr = v[1], v[-2]
    base = tr - tl
    width = float(np.hypot(*base))
    if width == 0:
        raise ValueError("the fitted toes coincide; the profile shows no bead")
    normal = np.array([-base[1], base[0]]) / width
    inner = v[1:-1]
    height = float(np.max((inner - tl) @ normal))
    left_angle = _angle_deg(v[2] - v[1], base)
    right_angle = _angle_deg(v[-3] - v[-2], -base)
    px, pz = inner[:, 0], inner[:, 1]
    # polygon toe_l -> crown -> toe_r, closed along the base line (counter-clockwise is +)
    area = 0.5 * float(np.sum(px * np.roll(pz, -1) - np.roll(px, -1) * pz))
    return BeadGeometry(tl.copy(), tr.copy(), height, width, left_angle, right_angle, -area, fit)


def synthetic_bead(shape: tuple[int, int] = (128, 256), *, vertices: Any = None,
                   contrast: tuple[float, float] = (0.25, 0.75), illumination: float = 0.6,
                   noise: float = 0.05, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    r"""A cross-section photo of a weld bead on a plate, for trials and tests.

    The surface :math:`z(x)` (height above the bottom edge, pixels) is the polyline through
    ``vertices`` (default: a trapezoid bead 20 px high and 96 px wide between toes on a plate
    sloping by 0.05). Each pixel holds the fraction of its height below the surface, mapped
    to ``contrast`` (background, object), times an illumination ramp from
    ``1 - illumination/2`` (left) to ``1 + illumination/2`` (right), plus Gaussian noise of
    standard deviation ``noise``.

    Returns
    -------
    image : ndarray, shape ``shape``, float32
    vertices : ndarray, shape (k, 2)
        The surface polyline ``(x, z)``.
    """
    rows, cols = shape
    if vertices is None:
        plate = lambda x: 30.0 + 0.05 * x  # noqa: E731
        vx = np.array([0.0, 80.0, 110.0, 146.0, 176.0, cols - 1.0])
        vz = plate(vx) + np.array([0.0, 0.0, 20.0, 20.0, 0.0, 0.0])
        vertices = np.stack([vx, vz], axis=1)
    vertices = np.asarray(vertices, dtype=np.float64)
    c = np.arange(cols, dtype=np.float64)
    z = np.interp(c, vertices[:, 0], vertices[:, 1])
    r = np.arange(rows, dtype=np.float64)[:, None]
    cover = np.clip(z[None, :] - (rows - 1 - r), 0.0, 1.0)
    bg, fg = contrast
    light = 1.0 + illumination * (c[None, :] / max(cols - 1, 1) - 0.5)
    rng = np.random.default_rng(seed)
    image = light * (bg + (fg - bg) * cover) + noise * rng.standard_normal((rows, cols))
    return image.astype(np.float32), vertices
