"""Primitive ``resample_axis``: apply a separable resampling table along one image axis.

``resample_axis(x, idx, w, axis)`` with ``x`` of shape (N, H, W), ``axis`` -2 (rows) or -1
(columns), and tables ``idx`` (int64) / ``w`` of shape (n_out, taps) returns
``out[..., k, ...] = sum_t w[k, t] * x[..., idx[k, t], ...]`` along that axis: the
weight-matrix form of every separable resize (area overlap fractions, cubic/Lanczos taps,
Pillow's scaled filters, pyramid steps). Indices must lie in ``[0, n_in)``; duplicates add.

The NumPy twin runs on the shared thread pool in cache-sized blocks: along rows it is a sparse
(n_out x n_in) CSR matrix product per block of output rows; along columns it gathers each
tap's source columns for a block of rows (``take`` along the contiguous axis) and
accumulates, which avoids transposing the image. The CUDA twin gathers the taps (one thread
per output sample, accumulating in the image dtype). Both skip zero-weight taps.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse

from gpuimg._backend import primitive
from gpuimg._kernels import KernelFamily, launch_1d, type_name
from gpuimg._lru import device_constant
from gpuimg._parallel import run_chunks, splits, workers

#: elements of source per block of the column pass (a block stays in a core's L2 cache)
_BLOCK_ELEMS = 1 << 18

_FAMILY = KernelFamily("resample.cu", [f"resample_axis<{t}>" for t in ("float", "double")])


def weight_matrix(idx, w, n_in, dtype):
    """The (n_out x n_in) CSR matrix of a resampling table."""
    n_out, taps = idx.shape
    mat = scipy.sparse.csr_matrix(
        # copies: the matrix is tidied in place, and resize's tables are read-only
        (np.array(w, dtype=dtype).ravel(), np.array(idx).ravel(), np.arange(0, n_out * taps + 1, taps)),
        shape=(n_out, n_in),
    )
    mat.sum_duplicates()
    mat.eliminate_zeros()
    return mat


@primitive("resample_axis", "numpy")
def _resample_axis_numpy(be, x, idx, w, axis):
    """Resample the batch ``x`` (N, H, W) along ``axis`` (-2 or -1) with a tap table."""
    nimg, h, wd = x.shape
    n_out = idx.shape[0]
    if axis == -2:
        mat = weight_matrix(idx, w, h, x.dtype)
        cols = x[0] if nimg == 1 else np.ascontiguousarray(np.moveaxis(x, 1, 0)).reshape(h, nimg * wd)
        res = np.empty((n_out, cols.shape[1]), dtype=x.dtype)

        def band(sl):
            res[sl] = mat[sl] @ cols

        run_chunks(band, [(sl,) for sl in splits(n_out, 2 * workers())])
        if nimg == 1:
            return res[None]
        return np.ascontiguousarray(np.moveaxis(res.reshape(n_out, nimg, wd), 0, 1))
    return _columns(np.ascontiguousarray(x).reshape(nimg * h, wd), idx, w).reshape(nimg, h, n_out)


def _columns(rows, idx, w):
    """``out[r, k] = sum_t w[k, t] rows[r, idx[k, t]]`` over the taps with non-zero weight."""
    m, wd = rows.shape
    n_out = idx.shape[0]
    w = np.asarray(w, dtype=rows.dtype)
    idx = np.asarray(idx, dtype=np.intp)
    keep = (w != 0).any(axis=0)
    idx, w = idx[:, keep], w[:, keep]
    unused = w == 0
    zero_column = bool(unused.any())
    if zero_column:
        # zero-weight taps read an appended zero column: 0 * inf or 0 * NaN never happens
        idx = np.where(unused, wd, idx)
    out = np.empty((m, n_out), dtype=rows.dtype)
    step = max(1, _BLOCK_ELEMS // max(wd, 1))

    def block(r0, r1):
        if zero_column:
            src = np.zeros((r1 - r0, wd + 1), dtype=rows.dtype)
            src[:, :wd] = rows[r0:r1]
        else:
            src = rows[r0:r1]
        acc = out[r0:r1]
        # every index is in range: "clip" is take's cheapest bounds rule (no per-item check)
        np.take(src, idx[:, 0], axis=1, out=acc, mode="clip")
        acc *= w[:, 0]
        tmp = np.empty_like(acc)
        for t in range(1, idx.shape[1]):
            np.take(src, idx[:, t], axis=1, out=tmp, mode="clip")
            tmp *= w[:, t]
            acc += tmp

    run_chunks(block, [(r0, min(r0 + step, m)) for r0 in range(0, m, step)])
    return out


@primitive("resample_axis", "cupy")
def _resample_axis_cupy(be, x, idx, w, axis):
    xp = be.xp
    x = xp.ascontiguousarray(x)
    nimg, h, wd = x.shape
    n_out, taps = idx.shape
    if axis == -2:
        outer, n_in, inner = nimg, h, wd
        shape = (nimg, n_out, wd)
    else:
        outer, n_in, inner = nimg * h, wd, 1
        shape = (nimg, h, n_out)
    d_idx = device_constant(xp, idx, np.int64)
    d_w = device_constant(xp, w, x.dtype)
    out = xp.empty(shape, dtype=x.dtype)
    kern = _FAMILY.get(f"resample_axis<{type_name(x.dtype)}>")
    launch_1d(kern, outer * n_out * inner, (
        x, d_idx, d_w, out, np.int64(outer), np.int64(n_in), np.int64(n_out), np.int64(inner),
        np.int32(taps),
    ))
    return out
