"""Primitive ``boundary_take``: gather samples through a boundary mode (pads, halos)."""

from __future__ import annotations

import numpy as np

from gpuimg import _boundary
from gpuimg._backend import primitive
from gpuimg._kernels import KernelFamily, launch_1d, type_name

_FAMILY = KernelFamily(
    "boundary_take.cu",
    [f"boundary_take<{t}, {c}>" for t in ("float", "double") for c in _boundary.MODE_CODES.values()],
)


@primitive("boundary_take", "numpy")
def _take_numpy(be, x, idx, mode, cval=0.0):
    """``out[..., k] = x[..., index(idx[k])]`` along the last axis, ``cval`` for constant fill."""
    j = _boundary.index(np.asarray(idx), x.shape[-1], mode)
    out = np.take(x, np.maximum(j, 0), axis=-1)
    if (j < 0).any():
        out[..., j < 0] = cval
    return out


@primitive("boundary_take", "cupy")
def _take_cupy(be, x, idx, mode, cval=0.0):
    xp = be.xp
    x = xp.ascontiguousarray(x)
    n = x.shape[-1]
    lines = x.size // n
    idx = xp.ascontiguousarray(xp.asarray(idx, dtype=xp.int64))
    out = xp.empty(x.shape[:-1] + (idx.size,), dtype=x.dtype)
    kern = _FAMILY.get(f"boundary_take<{type_name(x.dtype)}, {_boundary.MODE_CODES[mode]}>")
    launch_1d(kern, lines * idx.size, (x, idx, out, np.int64(lines), np.int64(n), np.int64(idx.size), x.dtype.type(cval)))
    return out
