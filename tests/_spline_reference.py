"""scipy.ndimage's B-spline prefilter with the exact half-sample symmetric start on every SciPy.

SciPy before 1.18 starts the causal pass of ``reflect``/``nearest`` lines from a sum whose last
term reads the running value instead of the first sample (scipy/scipy#24550), which is off by
O(z^2n) on lines of a few samples. The reflect extension of ``x`` has period ``2n``, so SciPy's
``grid-wrap`` filter of ``[x, x[::-1]]`` (whose start reads no running sum) gives the exact
coefficients on any version.
"""

import numpy as np
import scipy.ndimage as ndi


def spline_filter1d(x, order=3, axis=-1, mode="mirror"):
    """``ndi.spline_filter1d`` (float64 output), exact for short reflect/nearest lines."""
    x = np.asarray(x, dtype=np.float64)
    if mode not in ("reflect", "nearest") or order < 2:
        return ndi.spline_filter1d(x, order, axis=axis, mode=mode)
    n = x.shape[axis]
    doubled = np.concatenate([x, np.flip(x, axis)], axis=axis)
    return np.take(ndi.spline_filter1d(doubled, order, axis=axis, mode="grid-wrap"), np.arange(n), axis=axis)
