"""Primitive ``resample_axis``: apply a separable resampling table along one image axis.

``resample_axis(x, idx, w, axis)`` with ``x`` of shape (N, H, W), ``axis`` -2 (rows) or -1
(columns), and tables ``idx`` (int64) / ``w`` of shape (n_out, taps) returns
``out[..., k, ...] = sum_t w[k, t] * x[..., idx[k, t], ...]`` along that axis: the
weight-matrix form of every separable resize (area overlap fractions, cubic/Lanczos taps,
Pillow's scaled filters, pyramid steps). Indices must lie in ``[0, n_in)``; duplicates add.

The NumPy twin is a sparse (n_out x n_in) CSR matrix product; the CUDA twin gathers the taps
(one thread per output sample, accumulating in the image dtype).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse

from gpuimg._backend import primitive
from gpuimg._kernels import KernelFamily, launch_1d, type_name

_FAMILY = KernelFamily("resample.cu", [f"resample_axis<{t}>" for t in ("float", "double")])


def weight_matrix(idx, w, n_in, dtype):
    """The (n_out x n_in) CSR matrix of a resampling table."""
    n_out, taps = idx.shape
    mat = scipy.sparse.csr_matrix(
        (np.asarray(w, dtype=dtype).ravel(), np.asarray(idx).ravel(), np.arange(0, n_out * taps + 1, taps)),
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
        if nimg == 1:
            return np.asarray(mat @ x[0])[None]
        cols = np.ascontiguousarray(np.moveaxis(x, 1, 0)).reshape(h, nimg * wd)
        return np.ascontiguousarray(np.moveaxis(np.asarray(mat @ cols).reshape(n_out, nimg, wd), 0, 1))
    mat = weight_matrix(idx, w, wd, x.dtype)
    rows = np.ascontiguousarray(x.reshape(nimg * h, wd).T)
    out = np.asarray(mat @ rows)
    return np.ascontiguousarray(out.T).reshape(nimg, h, n_out)


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
    d_idx = xp.ascontiguousarray(xp.asarray(idx, dtype=xp.int64))
    d_w = xp.ascontiguousarray(xp.asarray(w, dtype=x.dtype))
    out = xp.empty(shape, dtype=x.dtype)
    kern = _FAMILY.get(f"resample_axis<{type_name(x.dtype)}>")
    launch_1d(kern, outer * n_out * inner, (
        x, d_idx, d_w, out, np.int64(outer), np.int64(n_in), np.int64(n_out), np.int64(inner),
        np.int32(taps),
    ))
    return out
