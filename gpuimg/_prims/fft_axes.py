"""CPU FFT helpers of the NumPy twins (no primitives): one thread policy for every
``scipy.fft`` call, and inverse real FFTs as one 1-D pass per axis.

``scipy.fft.irfftn`` over two axes measured 1.2x (1080 x 1080) to 1.8x (2160 x 2160) slower
than an inverse complex FFT along the leading axis followed by ``irfft`` along the last one,
on 2 cores and with every core; below that size the two are equal.
"""

from __future__ import annotations

import math

from gpuimg._parallel import in_pool

#: bytes of real samples from which the CPU FFTs use every core: below it threads only add
#: hand-over latency, above it they pay. rfft2/irfft2 pairs on 2 cores, 1 against 2 threads:
#: float32 540 x 540 (1.2 MB) 1.7 against 2.1 ms, 640 x 640 (1.6 MB) 3.6 against 2.2 ms;
#: float64 400 x 400 (1.3 MB) 1.3 against 1.3 ms, 540 x 540 (2.3 MB) 3.2 against 1.9 ms
FFT_THREAD_MIN_BYTES = 3 << 19


def fft_workers(a, grid):
    """``workers`` for the ``grid``-sized transforms of the stack ``a`` (..., *spatial): all
    cores (-1) from ``FFT_THREAD_MIN_BYTES`` of real samples on; 1 below it or inside a job
    of the shared pool (which already uses every core)."""
    elems = a.size // math.prod(a.shape[a.ndim - len(grid):]) * math.prod(grid)
    real_bytes = a.dtype.itemsize // (2 if a.dtype.kind == "c" else 1)
    return 1 if in_pool() or elems * real_bytes < FFT_THREAD_MIN_BYTES else -1


def irfftn_by_axes(fft, X, s, axes, workers):
    """``fft.irfftn(X, s=s, axes=axes)`` as 1-D passes; ``X`` (complex, owned by the caller)
    is used as scratch."""
    for axis, n in zip(axes[:-1], s[:-1]):
        X = fft.ifft(X, n=n, axis=axis, workers=workers, overwrite_x=True)
    return fft.irfft(X, n=s[-1], axis=axes[-1], workers=workers, overwrite_x=True)
