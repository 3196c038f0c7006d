"""Primitive ``error_sum``: ``sum(|a - b| ** power)`` over all elements, accumulated in float64.

Contract (both twins): ``a`` and ``b`` have one shape and float dtype; differences are formed
in that dtype (float32 stays float32), ``power`` is 1 or 2, and the result is a 0-d float64
array on the backend. The NumPy twin sums blocks of the flattened inputs on the thread pool
and adds the block sums in order (the result does not depend on the thread count's timing).
"""

from __future__ import annotations

import numpy as np

from gpuimg._backend import primitive
from gpuimg._kernels import KernelFamily, type_name
from gpuimg._parallel import run_ranges, splits, workers

_FAMILY = KernelFamily("reduce.cu", [f"error_sum<{t}, {p}>" for t in ("float", "double") for p in (1, 2)]
                       + ["decibels"])
#: threads per block and most blocks of the error_sum launch (one atomic add per block)
_SUM_BLOCK = 256
_SUM_MAX_BLOCKS = 2048

#: elements per block of the NumPy twin (a block's difference stays in a core's cache)
_BLOCK = 1 << 17
#: inputs from this many elements sum their blocks on the thread pool (512 x 512 float32 took
#: 0.33 ms on two threads against 0.20 ms on one; 2048 x 2048 2.5-3.0 against 3.0-3.2 ms on
#: a loaded machine)
_THREAD_MIN_ELEMS = 1 << 20


def _block_sum(a, b, power):
    d = np.subtract(a, b)
    if power == 2:
        np.multiply(d, d, out=d)
    else:
        np.abs(d, out=d)
    return np.sum(d, dtype=np.float64)


@primitive("error_sum", "numpy")
def _error_sum_numpy(be, a, b, power):
    fa, fb = np.ravel(a), np.ravel(b)
    n = fa.size
    parts = splits(n, max(1, -(-n // _BLOCK)))
    sums = np.zeros(len(parts))

    def job(lo, hi):
        for k in range(lo, hi):
            sums[k] = _block_sum(fa[parts[k]], fb[parts[k]], power)

    run_ranges(job, len(parts), workers() if n >= _THREAD_MIN_ELEMS else 1)
    return np.asarray(sums.sum())


@primitive("error_sum", "cupy")
def _error_sum_cupy(be, a, b, power):
    xp = be.xp
    if a.dtype != b.dtype or a.dtype.kind != "f" or not (a.flags.c_contiguous and b.flags.c_contiguous):
        d = a - b
        d = d * d if power == 2 else xp.abs(d)
        return xp.sum(d, dtype=xp.float64)
    out = xp.zeros((), dtype=xp.float64)
    n = a.size
    if n:
        kern = _FAMILY.get(f"error_sum<{type_name(a.dtype)}, {int(power)}>")
        grid = min(-(-n // _SUM_BLOCK), _SUM_MAX_BLOCKS)
        kern((grid,), (_SUM_BLOCK,), (a, b, np.int64(n), out))
    return out


@primitive("decibels", "numpy")
def _decibels_numpy(be, num, den, den_scale=1.0):
    """``10 log10(num / (den * den_scale))`` as a float64 scalar: +inf where the denominator is
    0, -inf where only ``num`` is, NaN where either is NaN (``num``, ``den``: numbers or 0-d
    arrays)."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64) * den_scale
    ok = (den > 0) & (num > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        val = 10.0 * np.log10(np.where(ok, num, 1.0) / np.where(ok, den, 1.0))
    val = np.where(den > 0, val, np.inf)
    val = np.where((num > 0) | (den == 0) | np.isnan(den) | np.isnan(num), val, -np.inf)
    return np.asarray(np.where(np.isnan(den) | np.isnan(num), np.nan, val))[()]


@primitive("decibels", "cupy")
def _decibels_cupy(be, num, den, den_scale=1.0):
    xp = be.xp
    out = xp.empty((), dtype=xp.float64)
    num_dev = isinstance(num, xp.ndarray)
    den_dev = isinstance(den, xp.ndarray)
    den_arr = xp.asarray(den, dtype=xp.float64) if not (den_dev and den.dtype == xp.float64) else den
    num_arr = (num if num.dtype == xp.float64 else num.astype(xp.float64)) if num_dev else den_arr
    _FAMILY.get("decibels")((1,), (1,), (num_arr, np.int32(num_dev), np.float64(1.0 if num_dev else num),
                                         den_arr, np.float64(den_scale), out))
    return out
