"""Primitives of the deconvolution solvers: the FGP total-variation steps and Richardson–Lucy updates.

Images are stacks ``(..., H, W)``; gradients are forward differences with Neumann boundary
(zero across the last row and column) and ``div = -grad^T``. A dual field ``p`` has shape
``(2, ..., H, W)`` (row and column components).
"""

from __future__ import annotations

import numpy as np

from gpuimg._backend import primitive
from gpuimg._kernels import KernelFamily, launch_1d, type_name

_TV = KernelFamily("tv.cu", [f"tv_primal<{t}>" for t in ("float", "double")]
                   + [f"tv_dual<{t}, {iso}>" for t in ("float", "double") for iso in (0, 1)])
_RL = KernelFamily("richardson_lucy.cu", [f"{k}<{t}>" for k in ("rl_ratio", "rl_update") for t in ("float", "double")])


def _grad(x):
    g = np.zeros((2,) + x.shape, dtype=x.dtype)
    g[0, ..., :-1, :] = x[..., 1:, :] - x[..., :-1, :]
    g[1, ..., :, :-1] = x[..., :, 1:] - x[..., :, :-1]
    return g


def _div(p):
    d = np.zeros(p.shape[1:], dtype=p.dtype)
    d[..., :-1, :] += p[0, ..., :-1, :]
    d[..., 1:, :] -= p[0, ..., :-1, :]
    d[..., :, :-1] += p[1, ..., :, :-1]
    d[..., :, 1:] -= p[1, ..., :, :-1]
    return d


@primitive("tv_primal", "numpy")
def _tv_primal_numpy(be, v, p, weight, lo, hi):
    """``clip(v + weight * div(p), lo, hi)``; ``lo``/``hi`` may be -inf/+inf."""
    x = v.copy()
    w = v.dtype.type(weight)
    a = p[0, ..., :-1, :] * w
    x[..., :-1, :] += a
    x[..., 1:, :] -= a
    a = p[1, ..., :, :-1] * w
    x[..., :, :-1] += a
    x[..., :, 1:] -= a
    if np.isfinite(lo) or np.isfinite(hi):
        np.clip(x, lo, hi, out=x)
    return x


@primitive("tv_primal", "cupy")
def _tv_primal_cupy(be, v, p, weight, lo, hi):
    xp = be.xp
    v = xp.ascontiguousarray(v)
    p = xp.ascontiguousarray(p, dtype=v.dtype)
    x = xp.empty_like(v)
    h, w = v.shape[-2:]
    t = v.dtype.type
    kern = _TV.get(f"tv_primal<{type_name(v.dtype)}>")
    launch_1d(kern, v.size, (v, p, x, np.int64(v.size), np.int64(h), np.int64(w), t(weight), t(lo), t(hi)))
    return x


@primitive("tv_dual", "numpy")
def _tv_dual_numpy(be, x, p, r, step, momentum, isotropic):
    """One FGP dual step: ``q = proj(r + step * grad x)``; returns ``(q, q + momentum (q - p))``.

    ``proj`` scales each pixel's pair to length <= 1 (``isotropic``) or clips each component
    to [-1, 1]. The buffers of ``p`` and ``r`` are reused for the results (which one holds
    which may differ between twins): callers continue with the returned arrays only.
    """
    dt = x.dtype.type
    d = np.diff(x, axis=-2)
    d *= dt(step)
    r[0, ..., :-1, :] += d
    d = np.diff(x, axis=-1)
    d *= dt(step)
    r[1, ..., :, :-1] += d
    if isotropic:
        n = np.sqrt(r[0] * r[0] + r[1] * r[1])
        np.maximum(n, 1, out=n)
        r /= n
    else:
        np.clip(r, -1, 1, out=r)
    p -= r
    p *= dt(-momentum)
    p += r
    return r, p


@primitive("tv_dual", "cupy")
def _tv_dual_cupy(be, x, p, r, step, momentum, isotropic):
    xp = be.xp
    x = xp.ascontiguousarray(x)
    if not (p.flags.c_contiguous and r.flags.c_contiguous):
        raise ValueError("p and r must be C-contiguous (they are updated in place)")
    h, w = x.shape[-2:]
    t = x.dtype.type
    kern = _TV.get(f"tv_dual<{type_name(x.dtype)}, {1 if isotropic else 0}>")
    launch_1d(kern, x.size, (x, p, r, np.int64(x.size), np.int64(h), np.int64(w), t(step), t(momentum)))
    return p, r


@primitive("rl_ratio", "numpy")
def _rl_ratio_numpy(be, b, ax, eps):
    """``b / ax`` where ``ax >= eps``, 0 elsewhere."""
    out = np.zeros_like(ax)
    np.divide(b, ax, out=out, where=ax >= eps)
    return out


@primitive("rl_ratio", "cupy")
def _rl_ratio_cupy(be, b, ax, eps):
    xp = be.xp
    ax = xp.ascontiguousarray(ax)
    b = xp.ascontiguousarray(b, dtype=ax.dtype)
    out = xp.empty_like(ax)
    kern = _RL.get(f"rl_ratio<{type_name(ax.dtype)}>")
    launch_1d(kern, ax.size, (b, ax, out, np.int64(ax.size), ax.dtype.type(eps)))
    return out


@primitive("rl_update", "numpy")
def _rl_update_numpy(be, x, corr, norm, tv_weight, eps):
    """``x * corr / norm / (1 - tv_weight * div(grad x / sqrt(|grad x|^2 + eps^2)))``.

    ``norm`` has shape ``(H, W)`` and is shared by the stack (Dey et al. 2006 RL-TV).
    """
    out = x * corr
    out /= norm
    if tv_weight:
        g = _grad(x)
        g /= np.sqrt(g[0] * g[0] + g[1] * g[1] + x.dtype.type(eps) ** 2)
        out /= 1 - x.dtype.type(tv_weight) * _div(g)
    return out


@primitive("rl_update", "cupy")
def _rl_update_cupy(be, x, corr, norm, tv_weight, eps):
    xp = be.xp
    x = xp.ascontiguousarray(x)
    corr = xp.ascontiguousarray(corr, dtype=x.dtype)
    norm = xp.ascontiguousarray(xp.broadcast_to(norm, x.shape[-2:]), dtype=x.dtype)
    out = xp.empty_like(x)
    h, w = x.shape[-2:]
    t = x.dtype.type
    kern = _RL.get(f"rl_update<{type_name(x.dtype)}>")
    launch_1d(kern, x.size, (x, corr, norm, out, np.int64(x.size), np.int64(h), np.int64(w), t(tv_weight), t(eps)))
    return out


@primitive("rfft_grid", "numpy")
def _rfft_grid_numpy(be, x, grid):
    """``rfft2`` over the last two axes, zero-filled at the end to ``grid`` (all CPU cores)."""
    return be.fft.rfft2(x, s=grid, workers=-1)


@primitive("rfft_grid", "cupy")
def _rfft_grid_cupy(be, x, grid):
    return be.fft.rfft2(x, s=grid)


@primitive("irfft_grid", "numpy")
def _irfft_grid_numpy(be, X, grid):
    """Inverse of :func:`rfft_grid`: real ``(..., *grid)`` (all CPU cores)."""
    return be.fft.irfft2(X, s=grid, workers=-1)


@primitive("irfft_grid", "cupy")
def _irfft_grid_cupy(be, X, grid):
    return be.fft.irfft2(X, s=grid)
