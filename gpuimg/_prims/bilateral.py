"""Primitive ``bilateral``: exact-weight bilateral filter over a disk window.

Contract (both twins): ``x`` is a float32/float64 array ``(batch, channels, rows, cols)``;
``space`` the ``(2r+1, 2r+1)`` spatial weights; the result has ``x``'s shape and dtype::

    out[p] = sum_q w(p, q) x[q] / sum_q w(p, q)   over q = p + (dy, dx), dy^2 + dx^2 <= r^2
    w(p, q) = space[dy + r, dx + r] * exp(color_coeff * (sum_c |x[c, q] - x[c, p]|)^2)

Neighbours outside the image are read through boundary ``mode`` (``cval`` for constant).
"""

from __future__ import annotations

import numpy as np

from gpuimg import _boundary
from gpuimg._backend import primitive
from gpuimg._kernels import KernelFamily, launch_1d, type_name
from gpuimg._parallel import run_chunks, splits, workers
from gpuimg._prims.pairs import credit_pairs

#: boundary modes with a compiled kernel; the grid-* names alias them for integer offsets
KERNEL_MODES = {"reflect": 0, "mirror": 1, "nearest": 2, "constant": 3, "wrap": 4,
                "grid-wrap": 4, "grid-constant": 3}
_CODES = sorted(set(KERNEL_MODES.values()))
_FAMILY = KernelFamily(
    "bilateral.cu",
    [f"{k}<{t}, {c}>" for k in ("bilateral_tiled", "bilateral_direct")
     for t in ("float", "double") for c in _CODES],
)
_BLOCK = 16
_SHARED_LIMIT = 48 * 1024


def disk_offsets(radius: int) -> list[tuple[int, int]]:
    """Offsets ``(dy, dx)`` of the disk window ``dy^2 + dx^2 <= radius^2`` (row-major)."""
    return [(dy, dx) for dy in range(-radius, radius + 1) for dx in range(-radius, radius + 1)
            if dy * dy + dx * dx <= radius * radius]


#: images from this many pixels run in bands of rows on the thread pool
_THREAD_MIN_PIXELS = 1 << 16


@primitive("bilateral", "numpy")
def _bilateral_numpy(be, x, space, radius, color_coeff, mode, cval=0.0):
    """Bands of rows on the thread pool: a band reads its rows plus ``radius`` rows of the
    padded image on each side, so it computes exactly those output rows."""
    b, c, rows, cols = x.shape
    r = int(radius)
    dt = x.dtype
    padded = _boundary.pad(x, ((0, 0), (0, 0), (r, r), (r, r)), mode, cval)
    # w = exp(log space - (sqrt(-coeff) * dist)^2): one exp per pair, colour scale folded in
    scale = dt.type(np.sqrt(-color_coeff))
    log_space = np.log(np.maximum(space, np.finfo(dt).tiny)).astype(dt)
    out = np.empty_like(x)
    parts = min(workers(), rows // (4 * r + 1)) if rows * cols >= _THREAD_MIN_PIXELS else 1
    jobs = [(bi, sl) for bi in range(b) for sl in splits(rows, max(1, parts))]
    run_chunks(lambda bi, sl: _band(padded[bi, :, sl.start:sl.stop + 2 * r], r, scale, log_space,
                                    out[bi, :, sl]), jobs)
    return out


def _band(src, r, scale, log_space, out):
    """The filter on one padded band ``src`` (c, rows + 2r, cols + 2r) into ``out`` (c, rows, cols)."""
    c, prow, pcol = src.shape
    rows, cols = prow - 2 * r, pcol - 2 * r
    n = prow * pcol
    raw = np.ascontiguousarray(src).reshape(c, n)
    scaled = raw * scale
    num = raw.copy()  # the centre sample, weight exp(0) * space[r, r] = 1
    den = np.ones(n, dtype=raw.dtype)
    tmp = None
    # the pair (p, p + o) has the weight of (p + o, p): visit half the disk, credit both ends
    for dy, dx in disk_offsets(r):
        if dy < 0 or (dy == 0 and dx <= 0):
            continue
        # near samples p in rows [r - dy, r + rows): p or p + o is an output pixel
        a0, a1 = (r - dy) * pcol, (r + rows) * pcol
        o = dy * pcol + dx
        near, far = slice(a0, a1), slice(a0 + o, a1 + o)
        d = scaled[0, near] - scaled[0, far]
        if c > 1:
            np.abs(d, out=d)
            for ch in range(1, c):
                e = scaled[ch, near] - scaled[ch, far]
                np.abs(e, out=e)
                d += e
        np.square(d, out=d)
        np.subtract(log_space[dy + r, dx + r], d, out=d)
        w = np.exp(d, out=d)
        if tmp is None or tmp.shape != w.shape:
            tmp = np.empty_like(w)
        credit_pairs(num, den, raw, w, near, far, tmp)
    inner = (slice(None), slice(r, r + rows), slice(r, r + cols))
    np.divide(num.reshape(c, prow, pcol)[inner], den.reshape(1, prow, pcol)[inner], out=out)


@primitive("bilateral", "cupy")
def _bilateral_cupy(be, x, space, radius, color_coeff, mode, cval=0.0):
    xp = be.xp
    x = xp.ascontiguousarray(x)
    b, c, rows, cols = x.shape
    r = int(radius)
    space = xp.ascontiguousarray(xp.asarray(space, dtype=x.dtype))
    out = xp.empty_like(x)
    t = type_name(x.dtype)
    code = KERNEL_MODES[mode]
    ft = x.dtype.type
    args = (x, space, out, np.int64(b), np.int32(c), np.int64(rows), np.int64(cols),
            np.int32(r), ft(color_coeff), ft(cval))
    tile = (_BLOCK + 2 * r) ** 2 * c * x.dtype.itemsize
    if tile <= _SHARED_LIMIT:
        kern = _FAMILY.get(f"bilateral_tiled<{t}, {code}>")
        n_tiles = -(-rows // _BLOCK) * -(-cols // _BLOCK) * b
        grid = min(n_tiles, 65535 * 16)
        kern((grid,), (_BLOCK, _BLOCK), args, shared_mem=tile)
    else:
        kern = _FAMILY.get(f"bilateral_direct<{t}, {code}>")
        launch_1d(kern, b * rows * cols, args)
    return out
