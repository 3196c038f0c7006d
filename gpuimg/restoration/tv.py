"""Total variation: its value and its proximal operator (Beck & Teboulle's FGP).

``TV(x) = sum_ij |(grad x)_ij|`` with forward differences and Neumann boundary (the
difference across the last row/column is zero); ``|.|`` is the Euclidean norm of the pair
(isotropic) or the sum of absolute values (anisotropic).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gpuimg._backend import get_backend
from gpuimg._validate import check_array, check_choice, check_positive, to_float

__all__ = ["TV_KINDS", "fgp", "tv_norm", "tv_prox"]

TV_KINDS = ("isotropic", "anisotropic")


def tv_norm(be: Any, x: Any, isotropic: bool = True) -> Any:
    """``TV(x)`` of each image of the stack ``x`` (shape ``x.shape[:-2]``, float64)."""
    xp = be.xp
    d0 = xp.diff(x, axis=-2)
    d1 = xp.diff(x, axis=-1)
    if isotropic:
        s = xp.sqrt(d0[..., :, :-1] ** 2 + d1[..., :-1, :] ** 2).sum(axis=(-2, -1), dtype=np.float64)
        s = s + xp.abs(d0[..., :, -1]).sum(axis=-1, dtype=np.float64)
        return s + xp.abs(d1[..., -1, :]).sum(axis=-1, dtype=np.float64)
    return xp.abs(d0).sum(axis=(-2, -1), dtype=np.float64) + xp.abs(d1).sum(axis=(-2, -1), dtype=np.float64)


def fgp(be: Any, v: Any, weight: float, p: Any, num_iter: int, isotropic: bool, lo: float, hi: float,
        out: Any = None, scratch: Any = None) -> Any:
    """FGP iterations for ``argmin_x 1/2 ||x - v||^2 + weight TV(x)`` s.t. ``lo <= x <= hi``.

    ``p`` (shape ``(2, *v.shape)``) is the dual field and the warm start, so successive
    calls with slowly changing ``v`` (FISTA's inner problems) start close to their
    solution. Returns ``(x, p)`` with the updated dual field (``p``'s buffer is reused).
    ``out`` (C-contiguous, may be ``v``) receives ``x``; ``scratch`` (C-contiguous, shape of
    ``v``) holds the inner primal iterates, so the call allocates only the dual's momentum.
    """
    v = be.xp.ascontiguousarray(v)
    r = p.copy()
    step = 1.0 / (8.0 * weight)
    t = 1.0
    for _ in range(num_iter):
        x = be.tv_primal(v, r, weight, lo, hi, out=scratch)
        t_next = (1.0 + np.sqrt(1.0 + 4.0 * t * t)) / 2.0
        p, r = be.tv_dual(x, p, r, step, (t - 1.0) / t_next, isotropic)
        x = None
        t = t_next
    r = None
    return be.tv_primal(v, p, weight, lo, hi, out=out), p


def check_bounds(bounds: Any) -> tuple[float, float]:
    """``(lo, hi)`` with ``-inf``/``+inf`` for ``None`` entries; ``ValueError`` if ``lo > hi``."""
    if bounds is None:
        return -np.inf, np.inf
    try:
        lo, hi = bounds
    except (TypeError, ValueError):
        raise ValueError(f"bounds must be None or a pair (lo, hi), got {bounds!r}") from None
    lo = -np.inf if lo is None else float(lo)
    hi = np.inf if hi is None else float(hi)
    if np.isnan(lo) or np.isnan(hi) or lo > hi:
        raise ValueError(f"bounds must satisfy lo <= hi, got {bounds!r}")
    return lo, hi


def tv_prox(image: Any, weight: float, *, tv: str = "isotropic", num_iter: int = 200, bounds: Any = None) -> Any:
    """Proximal operator of total variation (TV denoising, ROF model).

    Solves

    .. math:: \\hat x = \\arg\\min_{lo \\le x \\le hi} \\tfrac12 \\|x - f\\|_2^2 + w\\,TV(x)

    for each image ``f`` of the stack by the fast gradient projection (FGP) method on the
    dual problem, which converges as :math:`O(1/k^2)`. This is the problem that
    :func:`skimage.restoration.denoise_tv_chambolle` solves with ``weight=w`` (its
    stopping test prints ``||x - f||^2 + w TV(x)``, but its iteration is Chambolle's
    projection for the half-weighted fidelity used here).

    Parameters
    ----------
    image : array, shape (..., H, W)
        Images ``f``; leading axes are a batch.
    weight : float
        ``w > 0``, in the units of the image values.
    tv : {"isotropic", "anisotropic"}
        ``|grad x|`` as the Euclidean norm of the (row, column) differences or their sum of
        absolute values.
    num_iter : int
        FGP iterations.
    bounds : (lo, hi) or None
        Box constraint; ``None`` entries mean unbounded.

    Returns
    -------
    array, shape and float dtype of ``image``, on its backend.

    Notes
    -----
    Forward differences with Neumann boundary; the dual step is ``1/(8 w)`` (``||div||^2
    <= 8``).

    References
    ----------
    A. Beck and M. Teboulle, "Fast gradient-based algorithms for constrained total variation
    image denoising and deblurring problems", IEEE Trans. Image Process. 18(11), 2009.
    A. Chambolle, "An algorithm for total variation minimization and applications", J. Math.
    Imaging Vis. 20, 2004.
    """
    be = get_backend(image, names=("image",))
    check_array("image", image, min_ndim=2)
    check_positive("weight", weight)
    check_choice("tv", tv, TV_KINDS)
    check_positive("num_iter", num_iter, integer=True)
    lo, hi = check_bounds(bounds)
    f = to_float(image, be.xp)
    p = be.xp.zeros((2,) + f.shape, dtype=f.dtype)
    return fgp(be, f, float(weight), p, int(num_iter), tv == "isotropic", lo, hi)[0]
