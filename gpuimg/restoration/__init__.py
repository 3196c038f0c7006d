"""Deconvolution with a known PSF on a boundary-aware blur model.

The blur operator (:class:`BlurOperator`) supports ``"periodic"``, ``"reflect"`` (default) and
``"free"`` boundaries. Solvers: :func:`inverse_filter`, :func:`wiener` (direct),
:func:`landweber`, :func:`nesterov` (smooth least squares, adaptive restart),
:func:`fista_tv` (total variation, FISTA/MFISTA), :func:`admm_tv` (the same objective by
ADMM, converged in about 100 iterations), :func:`richardson_lucy` (Poisson, RL-TV).
:func:`tv_prox` is TV denoising; :func:`estimate_noise` the wavelet noise estimate behind the
default weights.
"""

from gpuimg.restoration.admm import ADMM_RHO_PER_C, admm_tv
from gpuimg.restoration.fista import (
    TV_WEIGHT_EXPONENT,
    TV_WEIGHT_SCALE,
    default_tv_weight,
    fista_tv,
)
from gpuimg.restoration.gradient import landweber, nesterov
from gpuimg.restoration.linear import inverse_filter, wiener
from gpuimg.restoration.noise import estimate_noise
from gpuimg.restoration.operator import BOUNDARIES, BlurOperator
from gpuimg.restoration.richardson_lucy import richardson_lucy
from gpuimg.restoration.tv import tv_norm, tv_prox

__all__ = [
    "ADMM_RHO_PER_C",
    "BOUNDARIES",
    "TV_WEIGHT_EXPONENT",
    "TV_WEIGHT_SCALE",
    "BlurOperator",
    "admm_tv",
    "default_tv_weight",
    "estimate_noise",
    "fista_tv",
    "inverse_filter",
    "landweber",
    "nesterov",
    "richardson_lucy",
    "tv_norm",
    "tv_prox",
    "wiener",
]
