"""Gradient methods for the least-squares deconvolution problem: Landweber and Nesterov."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from gpuimg._validate import check_choice
from gpuimg.restoration._common import (
    Monitor,
    accelerate,
    check_weight,
    extrapolate,
    iterate,
    prepare,
    project,
    sumsq,
)
from gpuimg.restoration.tv import check_bounds

__all__ = ["landweber", "nesterov"]

RESTARTS = ("gradient", "function", None)


def landweber(image: Any, psf: Any, *, num_iter: int = 100, step: float | None = None, bounds: Any = None,
              boundary: str = "reflect", tol: float = 0.0, callback: Callable[..., Any] | None = None,
              return_info: bool = False) -> Any:
    """Projected Landweber iteration for :math:`\\min_x \\tfrac12 \\|A x - b\\|_2^2`.

    .. math:: x_{k+1} = P_C\\big(x_k + \\tau A^T (b - A x_k)\\big), \\qquad x_0 = 0

    Without bounds and with ``boundary="periodic"`` the iterates have the closed form
    :math:`\\hat x_k = [1 - (1 - \\tau |\\hat H|^2)^k]\\, \\hat b / \\hat H`: the iteration count
    is the regularisation (semi-convergence).

    Parameters
    ----------
    image : array, shape (..., H, W)
        Blurred images ``b``; leading axes are a batch.
    psf : array, shape (kh, kw)
        Point-spread function (normalised to unit sum; centre at ``(kh // 2, kw // 2)``).
    num_iter : int
        Iterations.
    step : float or None
        ``τ``; default ``1 / L`` with ``L >= ||A||_2^2`` from the OTF
        (:meth:`BlurOperator.lipschitz`). Must be below ``2 / ||A||^2`` to converge.
    bounds : (lo, hi) or None
        Box ``C`` the iterates are projected on.
    boundary : {"reflect", "periodic", "free"}
        Boundary model of ``A`` (:mod:`gpuimg.restoration.operator`).
    tol : float
        Stop when ``||x_k - x_{k-1}|| <= tol ||x_k||`` (tested every 10 iterations); 0 runs
        all ``num_iter``.
    callback : callable, optional
        ``callback(k, x_k)`` after each iteration; returning True stops.
    return_info : bool
        Also return ``info`` with ``"objective"`` (``½||A x_k - b||^2`` per iteration and
        image, host array), ``"step"``, ``"num_iter"``, ``"converged"``.

    Returns
    -------
    x : array, shape and float dtype of ``image``
    info : dict, only with ``return_info``

    Backend notes
    -------------
    In-place updates; buffers (image sizes, g = FFT grid / frame, for 2048 x 2048 and a
    19 x 19 PSF 1.05 on CuPy, 1.11 with SciPy's FFT lengths): OTF and adjoint OTF (2 g),
    ``x`` and the residual (2), one padded copy and one FFT's spectrum and output (3 g).
    On the GPU, with nothing to observe between iterations (no ``callback``,
    ``return_info`` or ``tol``), the first iteration is captured as a CUDA graph and the
    others replay it (:mod:`gpuimg._prims.graph`); the call then returns after the device has
    finished.

    Memory
    ------
    GPU peak 7.2x the image's bytes, measured on an H200 with CuPy's memory pool (2048 x 2048
    float32, 19 x 19 Gaussian PSF, ``boundary="reflect"``; ``test_gpu_memory_peak``).

    References
    ----------
    L. Landweber, "An iteration formula for Fredholm integral equations of the first kind",
    Amer. J. Math. 73(3), 1951.
    """
    be, b, A = prepare(image, psf, boundary, num_iter=num_iter, tol=tol, callback=callback)
    lo, hi = check_bounds(bounds)
    tau = 1.0 / A.lipschitz() if step is None else check_weight("step", step)
    xp = be.xp
    mon = Monitor(be, num_iter, b.shape[:-2], tol=tol, record=return_info, callback=callback,
                  crop=A.crop)
    x = xp.zeros(A.x_shape, dtype=b.dtype)
    r = -b

    def step(k: int | None = None) -> bool:
        """One iteration, ``x`` and the residual ``r`` updated in place; with ``k`` also the
        monitor's record and stop test (True: stop)."""
        x_prev = x.copy() if k is not None and mon.due(k) else None
        g = A.adjoint(r)
        g *= b.dtype.type(-tau)
        x[...] += g
        del g
        project(xp, x, lo, hi)
        xp.subtract(A.apply(x), b, out=r)
        obj = 0.5 * sumsq(xp, r) if mon.record else None
        return k is not None and mon.step(k, x, objective=obj, x_prev=x_prev)

    iterate(be, step, num_iter, observed=return_info or callback is not None or tol > 0)
    x = A.crop(x)
    return (x, mon.info(step=tau)) if return_info else x


def _add_laplacian(xp: Any, g: Any, x: Any, scale: Any) -> None:
    """``g += scale * div grad x`` in place, one difference array at a time."""
    for axis in (-2, -1):
        d = xp.diff(x, axis=axis)
        d *= scale
        lead = (slice(None, -1), slice(None)) if axis == -2 else (slice(None), slice(None, -1))
        trail = (slice(1, None), slice(None)) if axis == -2 else (slice(None), slice(1, None))
        g[(Ellipsis,) + lead] += d
        g[(Ellipsis,) + trail] -= d


def _smooth_value(xp: Any, x: Any) -> Any:
    """``½ ||grad x||^2`` per image (forward differences, Neumann boundary)."""
    return 0.5 * (sumsq(xp, xp.diff(x, axis=-2)) + sumsq(xp, xp.diff(x, axis=-1)))


def nesterov(image: Any, psf: Any, *, weight: float = 0.0, restart: str | None = "gradient", num_iter: int = 100,
             bounds: Any = None, boundary: str = "reflect", tol: float = 0.0,
             callback: Callable[..., Any] | None = None, return_info: bool = False) -> Any:
    """Accelerated (projected) gradient with adaptive restart for smooth regularised least squares.

    Minimises, over the box ``C``,

    .. math:: f(x) = \\tfrac12 \\|A x - b\\|_2^2 + \\tfrac{w}{2} \\|\\nabla x\\|_2^2

    by Nesterov's method with step ``1/L``, ``L = ||A||^2 + 8 w`` (FISTA with a box
    projection):
    :math:`x_{k+1} = P_C(y_k - \\nabla f(y_k)/L)`,
    :math:`y_{k+1} = x_{k+1} + \\tfrac{t_k - 1}{t_{k+1}} (x_{k+1} - x_k)`.
    The momentum is reset (``t = 1``, ``y = x``) per image when O'Donoghue & Candès' test
    fires: ``"gradient"``: :math:`(y_k - x_{k+1})^T (x_{k+1} - x_k) > 0`;
    ``"function"``: :math:`f(x_{k+1}) > f(x_k)`. The decisions stay on the device.

    Parameters
    ----------
    image : array, shape (..., H, W)
        Blurred images ``b`` (start ``x_0 = b``); leading axes are a batch.
    psf : array, shape (kh, kw)
        Point-spread function (normalised to unit sum).
    weight : float
        ``w >= 0``; 0 gives accelerated least squares (regularised by the iteration count).
    restart : {"gradient", "function", None}
    num_iter, tol, callback, return_info, bounds, boundary
        As in :func:`landweber`. ``info["restarts"]`` is a boolean host array ``(n, ...)``,
        True where iteration ``k`` restarted the momentum; ``info["objective"]`` holds
        :math:`f(x_{k+1})`.

    Returns
    -------
    x : array, shape and float dtype of ``image``
    info : dict, only with ``return_info``

    Backend notes
    -------------
    ``x``, ``y`` and ``A x`` are updated in place, ``A y - b`` is formed in a grid buffer the
    adjoint's FFT takes as it is, and ``x_{k+1}`` is built inside the adjoint's output, whose
    margins the next forward FFT reuses (no padding copies). Buffers (image sizes, g = FFT
    grid / frame, for 2048 x 2048 and a 19 x 19 PSF 1.05 on CuPy, 1.11 with SciPy): OTF
    and adjoint OTF (2 g), ``x``, ``y``, ``A x`` (3), residual grid (g), gradient grid (g),
    one FFT's spectrum and output (2 g). On the GPU, with nothing to observe between
    iterations (no ``callback``, ``return_info``, ``tol`` or ``restart="function"``; the
    gradient restart test stays on the device), the first iteration is captured as a CUDA
    graph and the others replay it (:mod:`gpuimg._prims.graph`); the call then returns after
    the device has finished.

    Memory
    ------
    GPU peak 9.3x the image's bytes, measured on an H200 with CuPy's memory pool (2048 x 2048
    float32, 19 x 19 Gaussian PSF, ``boundary="reflect"``; ``test_gpu_memory_peak``).

    References
    ----------
    B. O'Donoghue and E. Candès, "Adaptive restart for accelerated gradient schemes", Found.
    Comput. Math. 15, 2015. Y. Nesterov, "A method for solving the convex programming problem
    with convergence rate O(1/k^2)", Soviet Math. Dokl. 27, 1983.
    """
    be, b, A = prepare(image, psf, boundary, num_iter=num_iter, tol=tol, callback=callback)
    weight = check_weight("weight", weight, allow_zero=True)
    check_choice("restart", restart, RESTARTS)
    lo, hi = check_bounds(bounds)
    xp = be.xp
    dt = b.dtype.type
    tau = dt(1.0 / (A.lipschitz() + 8.0 * weight))
    batch = b.shape[:-2]
    mon = Monitor(be, num_iter, batch, tol=tol, record=return_info, callback=callback,
                  crop=A.crop)
    need_f = return_info or restart == "function"
    restarts = xp.zeros((num_iter,) + batch, dtype=bool) if return_info else None

    def objective(ax: Any, x: Any) -> Any:
        f = 0.5 * sumsq(xp, ax - b)
        return f + weight * _smooth_value(xp, x) if weight else f

    x = project(xp, A.embed(b), lo, hi)
    ax = xp.ascontiguousarray(A.apply(x))
    y = x.copy()
    # the residual A y - b, placed in a grid buffer that the adjoint's FFT takes as it is
    res, r_in = A.frame_buffer(b.shape[:-2])
    xp.subtract(ax, b, out=r_in)
    t = xp.ones(batch, dtype=np.float64)
    f_x = objective(ax, x) if need_f else None

    def step(k: int | None = None) -> bool:
        """One iteration, every buffer updated in place; with ``k`` also the monitor's record
        and stop test (True: stop)."""
        nonlocal f_x
        grid, g = A.adjoint_grid(res)
        if weight:
            _add_laplacian(xp, g, y, dt(-weight))
        # x_{k+1} = P_C(y - tau g), computed in g's buffer
        g *= -tau
        g += y
        x_new = project(xp, g, lo, hi)
        ax_new = A.apply_grid(grid)
        del grid, g
        f_new = objective(ax_new, x_new) if need_f else None
        x_prev = x.copy() if k is not None and mon.due(k) else None
        t_new, bb = accelerate(xp, t, restart, x, y, x_new, f_new, f_x, restarts, k, b.dtype)
        extrapolate(xp, r_in, ax_new, ax, bb, b)
        del ax_new, x_new
        t[...] = t_new
        f_x = f_new
        return k is not None and mon.step(k, x, objective=f_new, x_prev=x_prev)

    # the restart test stays on the device: only the objective's record is observed
    iterate(be, step, num_iter, observed=need_f or callback is not None or tol > 0)
    x = A.crop(x)
    if not return_info:
        return x
    return x, mon.info(step=float(tau), weight=weight, restarts=be.to_numpy(restarts[: mon.count]))
