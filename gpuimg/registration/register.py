"""Free-form (cubic B-spline) image registration, coarse to fine, with an analytic gradient.

``register_bspline`` finds the :class:`~gpuimg.registration.BSplineTransform` ``T`` with
``moving(p + u(p)) ~ fixed(p)`` by minimising

.. math::

    E(C) = w_I\\, D(M \\circ T_C, F) + w_b \\mathcal{B}(C) + w_d \\|\\nabla\\cdot u\\|^2
           + w_c \\|\\nabla\\times u\\|^2 + w_L \\frac{1}{n}\\sum_i \\|u(f_i) - (m_i - f_i)\\|^2,

with ``D`` the mean squared difference (``"ssd"``, divided by the fixed image's variance) or
``1 - NCC`` (``"ncc"``), ``B`` the thin-plate bending energy and the divergence and curl of
``u`` (finite differences of the control grid, per control point), and optional landmark
pairs ``(f_i, m_i)``. The gradient is exact: the moving image is a cubic B-spline whose value
and gradient are sampled at ``p + u(p)`` (``spline_sample_grad2d``), and the per-pixel
derivative is carried back to the control points by the adjoint of the B-spline
interpolation (``bspline_adjoint``; an ``atomicAdd`` scatter kernel on the GPU). L-BFGS-B
(``scipy.optimize``) runs on an image pyramid (Gaussian smoothing, factor 2 per level) with
the control grid refined between levels (coarse grids at coarse levels: the spacing is
``grid_spacing`` pixels of each level), each level started from the least-squares
projection of the previous result (Rueckert et al., IEEE TMI 18(8), 1999; Klein et al.,
elastix, IEEE TMI 29(1), 2010; Arganda-Carreras et al., bUnwarpJ, CVAMIA 2006).

Coordinates are ``(y, x)`` = (row, column) pixels; displacements are ``(dy, dx)``.
"""

from __future__ import annotations

import numbers
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from gpuimg import filters, spline
from gpuimg._backend import get_backend
from gpuimg._prims import ffd
from gpuimg._validate import check_array, check_choice, check_same_shape
from gpuimg.registration.bspline import BSplineTransform, _spacing, control_shape_for

__all__ = ["register_bspline"]


def _downsample(img, shape, sigma):
    if tuple(img.shape) == tuple(shape):
        return img
    blurred = filters.gaussian_filter(img, sigma, mode="nearest")
    z = (shape[0] / img.shape[0], shape[1] / img.shape[1])
    return spline.zoom(blurred, z, order=1, mode="nearest", grid_mode=True)


class _Regulariser:
    """Bending, divergence and curl energies of a control grid and their gradients."""

    def __init__(self, xp, spacing, bend, div, curl):
        self.xp, (self.sy, self.sx) = xp, spacing
        self.bend, self.div, self.curl = bend, div, curl

    def __call__(self, c):
        xp, sy, sx = self.xp, self.sy, self.sx
        n = c[0].size
        e = 0.0
        g = xp.zeros_like(c)
        if self.bend:
            dyy = (c[:, 2:] - 2 * c[:, 1:-1] + c[:, :-2]) / sy**2
            dxx = (c[:, :, 2:] - 2 * c[:, :, 1:-1] + c[:, :, :-2]) / sx**2
            dxy = (c[:, 1:, 1:] - c[:, 1:, :-1] - c[:, :-1, 1:] + c[:, :-1, :-1]) / (sy * sx)
            e += self.bend * float((dyy * dyy).sum() + 2 * (dxy * dxy).sum() + (dxx * dxx).sum()) / n
            a = 2 * self.bend / n
            r = a * dyy / sy**2
            g[:, 2:] += r
            g[:, 1:-1] -= 2 * r
            g[:, :-2] += r
            r = a * dxx / sx**2
            g[:, :, 2:] += r
            g[:, :, 1:-1] -= 2 * r
            g[:, :, :-2] += r
            r = 2 * a * dxy / (sy * sx)
            g[:, 1:, 1:] += r
            g[:, 1:, :-1] -= r
            g[:, :-1, 1:] -= r
            g[:, :-1, :-1] += r
        if self.div or self.curl:
            dy0 = (c[0, 1:, :-1] - c[0, :-1, :-1]) / sy
            dx1 = (c[1, :-1, 1:] - c[1, :-1, :-1]) / sx
            dx0 = (c[0, :-1, 1:] - c[0, :-1, :-1]) / sx
            dy1 = (c[1, 1:, :-1] - c[1, :-1, :-1]) / sy
            for weight, field, terms in (
                (self.div, dy0 + dx1, ((0, "y", 1.0), (1, "x", 1.0))),
                (self.curl, dx0 - dy1, ((0, "x", 1.0), (1, "y", -1.0))),
            ):
                if not weight:
                    continue
                e += weight * float((field * field).sum()) / n
                r = 2 * weight / n * field
                for comp, axis, sign in terms:
                    if axis == "y":
                        g[comp, 1:, :-1] += sign * r / sy
                        g[comp, :-1, :-1] -= sign * r / sy
                    else:
                        g[comp, :-1, 1:] += sign * r / sx
                        g[comp, :-1, :-1] -= sign * r / sx
        return e, g


class _LevelProblem:
    """Objective and exact gradient of one pyramid level, as a function of the flat control vector."""

    def __init__(self, be, metric, fixed, mcoef, by, bx, spacing, wi, reg, landmark_terms, wl):
        xp = be.xp
        self.be, self.metric, self.mcoef, self.by, self.bx = be, metric, mcoef, by, bx
        self.shape = tuple(int(n) for n in fixed.shape)
        self.ctrl = (by.shape[1], bx.shape[1])
        self.spacing, self.wi, self.reg, self.lm, self.wl = spacing, wi, reg, landmark_terms, wl
        self.fvec = fixed.reshape(-1)
        self.fvar = float(xp.var(self.fvec)) or 1.0
        self.grid = xp.stack(xp.meshgrid(xp.arange(self.shape[0], dtype=np.float64),
                                         xp.arange(self.shape[1], dtype=np.float64), indexing="ij")).reshape(2, -1)
        self.nfev = 0
        self.last: tuple | None = None  # (x, objective, image metric)

    def _image_term(self, c):
        be, xp, fvec = self.be, self.be.xp, self.fvec
        u = xp.stack([self.by @ c[0] @ self.bx.T, self.by @ c[1] @ self.bx.T]).reshape(2, -1)
        vals = be.spline_sample_grad2d(self.mcoef, self.grid + u, "nearest", 0.0)[:, 0]
        a = vals[0]
        if self.metric == "ssd":
            r = a - fvec
            dmetric = float(xp.mean(r * r)) / self.fvar
            da = (2.0 / (r.size * self.fvar)) * r
        else:
            am, bm = a - xp.mean(a), fvec - xp.mean(fvec)
            saa, sbb, sab = float(am @ am), float(bm @ bm), float(am @ bm)
            den = np.sqrt(saa * sbb) or 1.0
            dmetric = 1.0 - sab / den
            da = -(bm - (sab / saa if saa else 0.0) * am) / den
        g = (da[None] * vals[1:]).reshape((2,) + self.shape)
        return dmetric, be.bspline_adjoint(g, self.ctrl, self.spacing)

    def __call__(self, x):
        be, xp = self.be, self.be.xp
        c = xp.asarray(x.reshape((2,) + self.ctrl))
        total, grad, dmetric = 0.0, xp.zeros_like(c), 0.0
        if self.wi > 0:
            dmetric, g = self._image_term(c)
            total += self.wi * dmetric
            grad += self.wi * g
        if self.reg.bend or self.reg.div or self.reg.curl:
            e, g = self.reg(c)
            total += e
            grad += g
        if self.lm is not None:
            lwy, lwx, ld = self.lm
            res = np.einsum("ij,cjk,ik->ic", lwy, be.to_numpy(c), lwx) - ld
            total += self.wl * float(np.mean(np.sum(res * res, axis=1)))
            grad += xp.asarray((2 * self.wl / len(res)) * np.einsum("ij,ic,ik->cjk", lwy, res, lwx))
        self.nfev += 1
        self.last = (x.copy(), total, dmetric)
        return total, np.asarray(be.to_numpy(grad), dtype=np.float64).ravel()

    def values_at(self, x):
        """(objective, image metric) at ``x``, reusing the last evaluation when it was there."""
        if self.last is None or not np.array_equal(self.last[0], x):
            self(x)
        return self.last[1], self.last[2]


def _check_weight(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def register_bspline(fixed, moving, *, grid_spacing, metric: str = "ssd", levels: int = 3,
                     bending_weight: float = 0.0, divergence_weight: float = 0.0, curl_weight: float = 0.0,
                     landmarks=None, landmark_weight: float = 0.0, image_weight: float = 1.0,
                     max_iter: int = 200, tol: float = 1e-7, callback: Callable[..., Any] | None = None,
                     return_info: bool = False):
    """Register ``moving`` to ``fixed`` with a cubic B-spline free-form deformation.

    Parameters
    ----------
    fixed, moving : array, (h, w)
        Images on one backend (NumPy or CuPy); computed in float64.
    grid_spacing : float or (sy, sx)
        Control point spacing of the result in pixels.
    metric : {"ssd", "ncc"}
        Mean squared difference (over the fixed image's variance) or ``1 - NCC``.
    levels : int
        Pyramid levels (factor 2 each, Gaussian sigma ``2^l / 3``).
    bending_weight, divergence_weight, curl_weight : float
        Regularisation weights (see the module notes).
    landmarks : (fixed_points, moving_points), each (n, 2) of (y, x) pixels, optional
        Pairs the transform should map onto each other: ``f + u(f) ~ m``.
    landmark_weight : float
        Weight of the mean squared landmark misfit (px^2).
    image_weight : float
        Weight of the image metric (0: landmarks and regularisation alone).
    max_iter : int
        L-BFGS-B iterations per level.
    tol : float
        Relative decrease of the objective at which a level stops (``ftol``).
    callback : callable, optional
        ``callback(level, iteration, objective)`` after every iteration.
    return_info : bool
        Also return ``{"metric": [...], "objective": [...], "level": [...], "nfev", "time"}``:
        the image metric and objective after every iteration and the level it belongs to.

    Returns
    -------
    BSplineTransform, or (BSplineTransform, dict)
        Coefficients on the input backend; ``T.warp(moving)`` approximates ``fixed``.
    """
    from scipy.optimize import minimize

    be = get_backend(fixed, moving, names=("fixed", "moving"))
    xp = be.xp
    for name, a in (("fixed", fixed), ("moving", moving)):
        check_array(name, a, ndim=2)
    check_same_shape("fixed", fixed, "moving", moving)
    check_choice("metric", metric, ("ssd", "ncc"))
    if isinstance(levels, bool) or not isinstance(levels, numbers.Integral) or levels < 1:
        raise ValueError(f"levels must be an integer >= 1, got {levels!r}")
    if isinstance(max_iter, bool) or not isinstance(max_iter, numbers.Integral) or max_iter < 1:
        raise ValueError(f"max_iter must be an integer >= 1, got {max_iter!r}")
    spacing = _spacing(grid_spacing)
    wb, wd, wc = (_check_weight(n, v) for n, v in (("bending_weight", bending_weight),
                                                    ("divergence_weight", divergence_weight),
                                                    ("curl_weight", curl_weight)))
    wl, wi = _check_weight("landmark_weight", landmark_weight), _check_weight("image_weight", image_weight)
    lm = None
    if landmarks is not None:
        try:
            fp, mp = (np.asarray(be.to_numpy(a), dtype=np.float64) for a in landmarks)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"landmarks must be a pair (fixed_points, moving_points), got {type(landmarks).__name__}") from exc
        if fp.ndim != 2 or fp.shape[1] != 2 or fp.shape != mp.shape or fp.shape[0] < 1:
            raise ValueError(f"landmarks must be two (n, 2) arrays of (y, x) points, got shapes {fp.shape} and {mp.shape}")
        lm = (fp, mp)
    if wi == 0 and (lm is None or wl == 0):
        raise ValueError("image_weight is 0 and no weighted landmarks are given: nothing to register")

    shape = tuple(int(n) for n in fixed.shape)
    f0 = xp.asarray(fixed, dtype=np.float64)
    m0 = xp.asarray(moving, dtype=np.float64)
    info: dict[str, Any] = {"metric": [], "objective": [], "level": [], "nfev": 0}
    t_start = time.perf_counter()
    prev = None  # (coefficients host (2, ky, kx), spacing, ratio)
    for level in range(levels - 1, -1, -1):
        fac = 2 ** level
        lshape = (max(4, round(shape[0] / fac)), max(4, round(shape[1] / fac)))
        ratio = (shape[0] / lshape[0], shape[1] / lshape[1])
        fl = _downsample(f0, lshape, fac / 3.0)
        ml = _downsample(m0, lshape, fac / 3.0)
        mcoef = spline.spline_filter(ml, order=3, mode="mirror")[None]
        ls = spacing
        ky, kx = control_shape_for(lshape, ls)
        by_h = ffd.basis(lshape[0], ky, ls[0])
        bx_h = ffd.basis(lshape[1], kx, ls[1])
        by, bx = xp.asarray(by_h), xp.asarray(bx_h)
        if prev is None:
            c_init = np.zeros((2, ky, kx))
        else:
            pc, ps, pr = prev
            # previous level's displacement at this level's pixels, in this level's pixels
            py = (np.arange(lshape[0]) + 0.5) * ratio[0] / pr[0] - 0.5
            px = (np.arange(lshape[1]) + 0.5) * ratio[1] / pr[1] - 0.5
            u = ffd.basis_at(py, pc.shape[1], ps[0]) @ pc @ ffd.basis_at(px, pc.shape[2], ps[1]).T
            u *= np.array([pr[0] / ratio[0], pr[1] / ratio[1]])[:, None, None]
            c_init = np.linalg.pinv(by_h) @ u @ np.linalg.pinv(bx_h).T
        landmark_terms = None
        if lm is not None and wl > 0:
            lf = (lm[0] + 0.5) / np.array(ratio) - 0.5
            landmark_terms = (ffd.basis_at(lf[:, 0], ky, ls[0]), ffd.basis_at(lf[:, 1], kx, ls[1]),
                              (lm[1] - lm[0]) / np.array(ratio))
        problem = _LevelProblem(be, metric, fl, mcoef, by, bx, ls, wi, _Regulariser(xp, ls, wb, wd, wc),
                                landmark_terms, wl)
        it = [0]

        def on_iter(xk, problem=problem, level=level, it=it):
            e, dmetric = problem.values_at(xk)
            info["metric"].append(dmetric)
            info["objective"].append(e)
            info["level"].append(level)
            it[0] += 1
            if callback is not None:
                callback(level, it[0], e)

        sol = minimize(problem, c_init.ravel(), jac=True, method="L-BFGS-B", callback=on_iter,
                       options={"maxiter": int(max_iter), "ftol": float(tol), "gtol": 1e-12, "maxcor": 20})
        info["nfev"] += problem.nfev
        prev = (sol.x.reshape(2, ky, kx), ls, ratio)
    coef, ls, _ = prev
    info["time"] = time.perf_counter() - t_start
    result = BSplineTransform((coef.shape[1], coef.shape[2]), ls, xp.asarray(coef))
    return (result, info) if return_info else result
