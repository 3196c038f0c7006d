"""Noise level estimation and the default regularisation weights derived from it."""

from __future__ import annotations

from typing import Any

import numpy as np

from gpuimg._backend import get_backend
from gpuimg._validate import check_array, to_float

__all__ = ["estimate_noise"]

# Daubechies-2 decomposition high-pass filter (PyWavelets' ``pywt.Wavelet("db2").dec_hi``)
_DB2_HI = (-0.48296291314453416, 0.8365163037378079, -0.2241438680420134, -0.12940952255126037)
_MAD_TO_SIGMA = 0.6744897501960817  # Phi^{-1}(3/4)


def _highpass_decimate(x: Any, axis: int, xp: Any) -> Any:
    """db2 high-pass analysis along ``axis`` (symmetric extension, keep odd samples)."""
    x = xp.moveaxis(x, axis, -1)
    n = x.shape[-1]
    L = len(_DB2_HI)
    xe = xp.pad(x, [(0, 0)] * (x.ndim - 1) + [(L - 1, L - 1)], mode="symmetric")
    m = (n + L - 1) // 2
    out = xp.zeros(x.shape[:-1] + (m,), dtype=x.dtype)
    for j, c in enumerate(_DB2_HI):
        start = 1 - j + (L - 1)
        out += c * xe[..., start:start + 2 * m:2]
    return xp.moveaxis(out, -1, axis)


def estimate_noise(image: Any) -> Any:
    """Robust estimate of the standard deviation of additive Gaussian noise.

    Donoho & Johnstone's wavelet estimator: the median absolute value of the finest
    diagonal (HH) Daubechies-2 wavelet coefficients, divided by
    :math:`\\Phi^{-1}(3/4) \\approx 0.6745`. Zero coefficients (flat regions) are
    ignored. Same estimator as :func:`skimage.restoration.estimate_sigma`.

    Parameters
    ----------
    image : array, shape (..., H, W)
        Leading axes are a batch (one estimate per image).

    Returns
    -------
    array
        Shape ``image.shape[:-2]`` (0-d for one image), float64, on the input's backend.

    References
    ----------
    D. L. Donoho and I. M. Johnstone, "Ideal spatial adaptation by wavelet shrinkage",
    Biometrika 81(3), 1994, p. 446.
    """
    be = get_backend(image, names=("image",))
    check_array("image", image, min_ndim=2)
    xp = be.xp
    x = to_float(image, xp, np.float64)
    hh = _highpass_decimate(_highpass_decimate(x, -2, xp), -1, xp)
    a = xp.sort(xp.abs(hh).reshape(hh.shape[:-2] + (-1,)), axis=-1)
    n = a.shape[-1]
    zeros = xp.sum(a == 0, axis=-1)
    count = n - zeros
    lo = zeros + xp.maximum(count - 1, 0) // 2
    hi = zeros + count // 2
    # an all-zero image has no non-zero coefficient: both indices clamp to the last (zero) one
    lo = xp.minimum(lo, n - 1)
    hi = xp.minimum(hi, n - 1)
    med = 0.5 * (xp.take_along_axis(a, lo[..., None], axis=-1) + xp.take_along_axis(a, hi[..., None], axis=-1))[..., 0]
    return med / _MAD_TO_SIGMA
