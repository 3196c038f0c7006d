"""Primitive ``bspline_adjoint``: the adjoint of cubic B-spline free-form interpolation.

A control grid ``C`` (comps, ky, kx) with spacing ``(sy, sx)`` pixels, control point
``(i, j)`` at pixel ``((i - 1) sy, (j - 1) sx)``, defines the dense field
``u[c, y, x] = sum_ij C[c, i, j] B3(y / sy + 1 - i) B3(x / sx + 1 - j)``, i.e.
``u = By C Bx^T`` with the basis matrices of :func:`basis`. Its adjoint maps a dense field
``g`` back to the grid, ``By^T g Bx``; this is the gradient of any pixel-wise objective with
respect to the control coefficients (chain rule through the interpolation).

NumPy twin: two matrix products with the (sparse-banded, dense-stored) basis matrices.
CUDA twin: ``kernels/bspline_adjoint.cu``, one thread per pixel scattering its 4x4
footprint with ``atomicAdd``.
"""

from __future__ import annotations

import numpy as np

from gpuimg._backend import primitive
from gpuimg._kernels import KernelFamily, launch_1d, type_name

_ADJOINT = KernelFamily("bspline_adjoint.cu", [f"bspline_adjoint<{t}>" for t in ("float", "double")])


def cubic_weights(f, xp=np):
    """Cubic B-spline weights ``(4, ...)`` of the taps ``floor(t) - 1 .. floor(t) + 2``, ``f = t - floor(t)``."""
    g = 1.0 - f
    return xp.stack([g * g * g / 6, (f * f * (f - 2) * 3 + 4) / 6, (g * g * (g - 2) * 3 + 4) / 6, f * f * f / 6])


def basis_at(positions, k: int, spacing: float) -> np.ndarray:
    """``(len(positions), k)`` host matrix ``B[p, i] = B3(positions[p] / spacing + 1 - i)`` (zero past the grid)."""
    t = np.asarray(positions, dtype=np.float64).ravel() / spacing + 1.0
    fl = np.floor(t)
    w = cubic_weights(t - fl)
    out = np.zeros((t.size, k), dtype=np.float64)
    i0 = fl.astype(np.int64) - 1
    rows = np.arange(t.size)
    for q in range(4):
        cols = i0 + q
        ok = (cols >= 0) & (cols < k)
        out[rows[ok], cols[ok]] = w[q][ok]
    return out


def basis(n: int, k: int, spacing: float, dtype=np.float64, xp=np):
    """``(n, k)`` matrix of :func:`basis_at` on the pixel grid ``0..n-1`` (control point 0 at ``-spacing``)."""
    return xp.asarray(basis_at(np.arange(n), k, spacing), dtype=dtype)


@primitive("bspline_adjoint", "numpy")
def _adjoint_numpy(be, g, control_shape, spacing):
    g = np.asarray(g)
    _, h, w = g.shape
    by = basis(h, control_shape[0], spacing[0], g.dtype)
    bx = basis(w, control_shape[1], spacing[1], g.dtype)
    return np.stack([by.T @ gc @ bx for gc in g])


@primitive("bspline_adjoint", "cupy")
def _adjoint_cupy(be, g, control_shape, spacing):
    xp = be.xp
    g = xp.ascontiguousarray(g)
    comps, h, w = g.shape
    ky, kx = int(control_shape[0]), int(control_shape[1])
    out = xp.zeros((comps, ky, kx), dtype=g.dtype)
    t = g.dtype.type
    kern = _ADJOINT.get(f"bspline_adjoint<{type_name(g.dtype)}>")
    launch_1d(kern, h * w, (g, out, np.int64(comps), np.int64(h), np.int64(w), np.int64(ky), np.int64(kx),
                            t(spacing[0]), t(spacing[1])))
    return out
