"""1-D correlation on the CPU as matrix products with a banded Toeplitz block (no primitives).

Along an axis of length ``n``, the "valid" correlation with ``K`` taps ``w`` maps ``B + K - 1``
consecutive samples onto ``B`` consecutive outputs through the same ``(B + K - 1) x B`` matrix

.. math:: T_{j + k,\\, j} = w_k, \\qquad k = 0 \\ldots K - 1,\\; j = 0 \\ldots B - 1,

so one pass over a stack of lines is a batch of small GEMMs (:func:`numpy.matmul` on strided
views, which it hands to BLAS without copies): ``lines @ T`` along the last axis, ``T^T @
rows`` along any other. The band costs ``(B + K - 1) / B`` times the multiply-adds of a
straight loop, which BLAS's vector units more than repay: on 2 cores, 512 x 512 float32 with
the reflect boundary and 19 taps take 0.24–0.27 ms per pass against 1.8–3.0 ms for
:func:`scipy.ndimage.correlate1d`, and 127 taps 0.8–1.0 against 22–25 ms
(``benchmarks/bench_filters.py``, groups ``correlate1d ...``, rows and columns).

Outputs whose window reaches past the array read the boundary extension (SciPy's modes, as
:func:`gpuimg._boundary.index` maps them) from a gathered strip of at most ``2 (K - 1)``
samples per line, so no padded copy of the array is made. Sums accumulate in the input's
dtype (float32 stays float32, as the GPU kernels do). A NaN or Inf sample reaches every
output of its ``B``-block through the band's zeros (``0 * inf`` is NaN), so the first output
of each block tells whether the block is finite, and a non-finite one sends the call back to
the caller's line-by-line path, which confines it to the ``K`` outputs that read it
(:func:`correlate1d` returns ``None`` then).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import as_strided

from gpuimg import _boundary
from gpuimg._lru import LRU

__all__ = ["block_size", "correlate1d", "correlate_valid", "serves", "toeplitz_block"]


def serves(dtype: np.dtype) -> bool:
    """Whether the passes take arrays of ``dtype``: float32 and float64, BLAS's real types."""
    return dtype.kind == "f" and dtype.itemsize in (4, 8)


def block_size(taps: int, lines: int, last_axis: bool) -> int:
    """Outputs per block ``B``: measured on 2 cores (float32 and float64, 512² and 2048²,
    3 to 127 taps) against 8, 16, 32 and 64. Along the last axis 16 suits a few hundred
    lines and 32 more; along other axes 8 suits short kernels, 32 long ones."""
    if last_axis:
        return 16 if lines <= 1024 and taps <= 40 else 32
    return 8 if taps <= 16 else 16 if taps <= 40 else 32


#: bands by (taps, block, dtype): an iterative solver applies the same few every iteration
_BANDS = LRU(32)


def toeplitz_block(w: np.ndarray, b: int, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """The ``(b + K - 1) x b`` matrix ``T[j + k, j] = w[k]`` (zeros elsewhere) and its
    C-contiguous transpose (read-only; cached)."""
    w = np.ascontiguousarray(w, dtype=dtype)
    key = (w.tobytes(), b, w.dtype.str)
    pair = _BANDS.get(key)
    if pair is None:
        k = len(w)
        t = np.zeros((b + k - 1, b), dtype=dtype)
        j = np.arange(b)
        t[j[None, :] + np.arange(k)[:, None], j[None, :]] = w[:, None]
        tt = np.ascontiguousarray(t.T)
        t.flags.writeable = tt.flags.writeable = False
        pair = _BANDS.put(key, (t, tt))
    return pair


def _lines(x: np.ndarray, axis: int, w: np.ndarray) -> tuple[int, int, int, tuple[np.ndarray, np.ndarray]]:
    """``(P, Q, B, band)`` for passes along ``axis`` of ``x`` seen as ``(P, n, Q)``: the lines
    before and the samples after the axis, the block and its band."""
    p = math.prod(x.shape[:axis])
    q = math.prod(x.shape[axis + 1:])
    b = block_size(len(w), p * q if q == 1 else p, q == 1)
    return p, q, b, toeplitz_block(w, b, x.dtype)


def _valid(src: np.ndarray, band: tuple[np.ndarray, np.ndarray], out: np.ndarray, b: int) -> bool:
    """``out`` = valid correlation of ``src`` (P, N + K - 1, Q) along axis 1 with the band
    ``(T, T^T)`` of block ``b``; ``out`` (P, N, Q) is a view whose axis-1 blocks are written.
    Returns whether every block is finite (its first output is)."""
    t, tt = band
    n = out.shape[1]
    k1 = t.shape[0] - b
    nb = n // b
    s0, s1, s2 = src.strides
    o0, o1, o2 = out.strides
    last = src.shape[2] == 1
    finite = True
    if nb:
        if last:
            # lines @ T: (nb, P, b + K - 1) @ (b + K - 1, b) -> (nb, P, b)
            v = as_strided(src, (nb, src.shape[0], b + k1), (b * s1, s0, s1))
            o = as_strided(out, (nb, out.shape[0], b), (b * o1, o0, o1))
            np.matmul(v, t, out=o)
            finite = np.isfinite(np.add.reduce(o[:, :, 0], axis=None))
        else:
            # T^T @ rows: (b, b + K - 1) @ (P, nb, b + K - 1, Q) -> (P, nb, b, Q)
            v = as_strided(src, (src.shape[0], nb, b + k1, src.shape[2]), (s0, b * s1, s1, s2))
            o = as_strided(out, (out.shape[0], nb, b, out.shape[2]), (o0, b * o1, o1, o2))
            np.matmul(tt, v, out=o)
            finite = np.isfinite(np.add.reduce(o[:, :, 0, :], axis=None))
    r = n - nb * b
    if r:
        s = src[:, nb * b:, :]
        if last:
            np.matmul(s[:, :, 0], t[: r + k1, :r], out=out[:, nb * b:, 0])
        else:
            np.matmul(tt[:r, : r + k1], s, out=out[:, nb * b:, :])
        finite = finite and np.isfinite(np.add.reduce(out[:, nb * b, :], axis=None))
    return bool(finite)


def _strip(x3: np.ndarray, lo: int, hi: int, mode: str, cval: float) -> np.ndarray:
    """Samples ``lo .. hi - 1`` along axis 1 of ``x3`` (P, n, Q), extended by ``mode``."""
    n = x3.shape[1]
    if mode in ("constant", "grid-constant"):
        s = np.full((x3.shape[0], hi - lo, x3.shape[2]), cval, dtype=x3.dtype)
        a, z = max(lo, 0), min(hi, n)
        if a < z:
            s[:, a - lo:z - lo, :] = x3[:, a:z, :]
        return s
    return np.take(x3, _boundary.index(np.arange(lo, hi), n, mode), axis=1)


def correlate1d(x: np.ndarray, w: np.ndarray, axis: int, mode: str, cval: float, center: int,
                out: np.ndarray | None = None) -> np.ndarray | None:
    """``out[..., i, ...] = sum_j w[j] x_ext[..., i + j - center, ...]`` along ``axis`` (same
    shape and dtype as ``x``; ``x_ext`` the extension by ``mode``), or ``None`` where the
    result is not finite (see the module notes). ``out``, when given, is C-contiguous with
    ``x``'s shape and dtype and must not overlap ``x``."""
    axis = axis % x.ndim
    n = x.shape[axis]
    k = len(w)
    c = int(center)
    if out is None:
        out = np.empty(x.shape, dtype=x.dtype)
    if x.size == 0:
        return out
    p, q, b, band = _lines(x, axis, w)
    x3 = np.ascontiguousarray(x).reshape(p, n, q)
    o3 = out.reshape(p, n, q)
    # outputs [lo, hi) read x itself; the rest read the extension
    lo, hi = c, n - (k - 1 - c)
    finite = True
    edges = [(0, lo), (hi, n)] if lo < hi else [(0, n)]
    # a non-finite block is not an error here: the caller's path recomputes the call
    with np.errstate(invalid="ignore", over="ignore"):
        if lo < hi:
            finite = _valid(x3, band, o3[:, lo:hi, :], b)
        for e0, e1 in edges:
            if e1 > e0 and finite:
                finite = _valid(_strip(x3, e0 - c, e1 - c + k - 1, mode, cval), band, o3[:, e0:e1, :], b)
    return out if finite else None


def correlate_valid(x: np.ndarray, w: np.ndarray, axis: int, out: np.ndarray) -> bool:
    """``out[..., i, ...] = sum_j w[j] x[..., i + j, ...]`` along ``axis``, the "valid" part
    (``out`` is shorter than ``x`` by ``K - 1`` there, C-contiguous, not overlapping ``x``).
    Returns whether the result is finite; where it is not, ``out`` holds garbage blocks and
    the caller recomputes it (see the module notes)."""
    axis = axis % x.ndim
    k = len(w)
    n = out.shape[axis]
    if x.shape[axis] != n + k - 1:
        raise ValueError(f"out must be shorter than x by {k - 1} along axis {axis}")
    if out.size == 0:
        return True
    p, q, b, band = _lines(x, axis, w)
    with np.errstate(invalid="ignore", over="ignore"):
        return _valid(np.ascontiguousarray(x).reshape(p, n + k - 1, q), band, out.reshape(p, n, q), b)
