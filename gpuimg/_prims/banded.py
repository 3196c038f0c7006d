"""1-D correlation on the CPU as matrix products with a banded Toeplitz block (no primitives).

Along an axis of length ``n``, the "valid" correlation with ``K`` taps ``w`` maps ``B + K - 1``
consecutive samples onto ``B`` consecutive outputs through the same ``(B + K - 1) x B`` matrix

.. math:: T_{j + k,\\, j} = w_k, \\qquad k = 0 \\ldots K - 1,\\; j = 0 \\ldots B - 1,

so one pass over a stack of lines is a batch of small GEMMs (:func:`numpy.matmul` on strided
views, which it hands to BLAS without copies): ``lines @ T`` along the last axis, ``T^T @
rows`` along any other. The band costs ``(B + K - 1) / B`` times the multiply-adds of a
straight loop, which BLAS's vector units more than repay: on 2 cores, 512 x 512 float32 and
19 taps take 0.18 ms per pass against 1.9 ms for :func:`scipy.ndimage.correlate1d`, and 127
taps 0.5 against 23 ms (``benchmarks/bench_filters.py``, groups ``correlate1d ...``).

Outputs whose window reaches past the array read the boundary extension (SciPy's modes, as
:func:`gpuimg._boundary.index` maps them) from a gathered strip of at most ``2 (K - 1)``
samples per line, so no padded copy of the array is made. Sums accumulate in the input's
dtype (float32 stays float32, as the GPU kernels do). A NaN or Inf sample reaches every
output of its ``B``-block through the band's zeros (``0 * inf`` is NaN), so a non-finite
result sends the call back to the caller's line-by-line path, which confines it to the
``K`` outputs that read it (:func:`correlate1d` returns ``None`` then).
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from gpuimg import _boundary

__all__ = ["block_size", "correlate1d", "toeplitz_block"]


def block_size(taps: int, lines: int, last_axis: bool) -> int:
    """Outputs per block ``B``: measured on 2 cores (float32 and float64, 512² and 2048²,
    3 to 127 taps) against 8, 16, 32 and 64. Along the last axis 16 suits a few hundred
    lines and 32 more; along other axes 8 suits short kernels, 32 long ones."""
    if last_axis:
        return 16 if lines <= 1024 and taps <= 40 else 32
    return 8 if taps <= 16 else 16 if taps <= 40 else 32


def toeplitz_block(w: np.ndarray, b: int, dtype: np.dtype) -> np.ndarray:
    """The ``(b + K - 1) x b`` matrix ``T[j + k, j] = w[k]`` (zeros elsewhere)."""
    k = len(w)
    t = np.zeros((b + k - 1, b), dtype=dtype)
    j = np.arange(b)
    t[j[None, :] + np.arange(k)[:, None], j[None, :]] = np.asarray(w, dtype=dtype)[:, None]
    return t


def _valid(src: np.ndarray, t: np.ndarray, out: np.ndarray, b: int) -> None:
    """``out`` = valid correlation of ``src`` (P, N + K - 1, Q) along axis 1 with the band
    ``t`` of block ``b``; ``out`` (P, N, Q) is a view whose axis-1 blocks are written."""
    n = out.shape[1]
    k1 = t.shape[0] - b
    nb = n // b
    s0, s1, s2 = src.strides
    o0, o1, o2 = out.strides
    last = src.shape[2] == 1
    if nb:
        if last:
            # lines @ T: (nb, P, b + K - 1) @ (b + K - 1, b) -> (nb, P, b)
            v = as_strided(src, (nb, src.shape[0], b + k1), (b * s1, s0, s1))
            o = as_strided(out, (nb, out.shape[0], b), (b * o1, o0, o1))
            np.matmul(v, t, out=o)
        else:
            # T^T @ rows: (b, b + K - 1) @ (P, nb, b + K - 1, Q) -> (P, nb, b, Q)
            v = as_strided(src, (src.shape[0], nb, b + k1, src.shape[2]), (s0, b * s1, s1, s2))
            o = as_strided(out, (out.shape[0], nb, b, out.shape[2]), (o0, b * o1, o1, o2))
            np.matmul(np.ascontiguousarray(t.T), v, out=o)
    r = n - nb * b
    if r:
        tail = t[: r + k1, :r]
        s = src[:, nb * b:, :]
        if last:
            np.matmul(s[:, :, 0], tail, out=out[:, nb * b:, 0])
        else:
            np.matmul(np.ascontiguousarray(tail.T), s, out=out[:, nb * b:, :])


def _strip(x3: np.ndarray, lo: int, hi: int, mode: str, cval: float) -> np.ndarray:
    """Samples ``lo .. hi - 1`` along axis 1 of ``x3`` (P, n, Q), extended by ``mode``."""
    n = x3.shape[1]
    idx = _boundary.index(np.arange(lo, hi), n, mode)
    s = np.take(x3, np.maximum(idx, 0), axis=1)
    if (idx < 0).any():
        s[:, idx < 0, :] = cval
    return s


def correlate1d(x: np.ndarray, w: np.ndarray, axis: int, mode: str, cval: float, center: int) -> np.ndarray | None:
    """``out[..., i, ...] = sum_j w[j] x_ext[..., i + j - center, ...]`` along ``axis`` (same
    shape and dtype as ``x``; ``x_ext`` the extension by ``mode``), or ``None`` where the
    result is not finite (see the module notes)."""
    axis = axis % x.ndim
    n = x.shape[axis]
    k = len(w)
    c = int(center)
    p = int(np.prod(x.shape[:axis], dtype=np.int64))
    q = int(np.prod(x.shape[axis + 1:], dtype=np.int64))
    x3 = np.ascontiguousarray(x).reshape(p, n, q)
    out = np.empty(x.shape, dtype=x.dtype)
    o3 = out.reshape(p, n, q)
    if x.size == 0:
        return out
    b = block_size(k, p * q if q == 1 else p, q == 1)
    t = toeplitz_block(w, b, x.dtype)
    # outputs [lo, hi) read x itself; the rest read the extension
    lo, hi = c, n - (k - 1 - c)
    if lo < hi:
        _valid(x3, t, o3[:, lo:hi, :], b)
        edges = [(0, lo), (hi, n)]
    else:
        edges = [(0, n)]
    for e0, e1 in edges:
        if e1 > e0:
            _valid(_strip(x3, e0 - c, e1 - c + k - 1, mode, cval), t, o3[:, e0:e1, :], b)
    if not np.isfinite(np.add.reduce(out, axis=None)):
        return None
    return out
