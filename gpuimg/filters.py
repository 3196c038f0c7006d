"""Linear filters: correlation, convolution, Gaussian and box filters with SciPy's semantics.

The kernel applies to the last ``kernel.ndim`` axes of the image; leading axes are a batch
processed in one call. Boundary handling follows :mod:`scipy.ndimage` exactly (mode names
``reflect``, ``mirror``, ``nearest``, ``constant``, ``wrap``, ``grid-wrap``,
``grid-constant``), and so do the ``origin`` conventions, so every function here equals its
``scipy.ndimage`` namesake up to floating-point rounding.

Method selection
----------------
:func:`correlate` and :func:`convolve` evaluate either directly (shared-memory tiles on the
GPU; on the CPU SciPy's filter loops, and banded GEMMs for 1-D passes; a 2-D kernel of rank
one or two runs as one or two pairs of 1-D passes, from its singular value decomposition) or
by FFT of the boundary-padded image (``scipy.fft`` with all CPU cores, cuFFT with cached plans on
the GPU). The FFT path pads the image by the kernel's half-widths through the same boundary
rule, so it is not periodic and agrees with the direct path; the spectra of the last few
kernels are cached, so applying one PSF repeatedly costs two transforms per call.

``method="auto"`` compares the kernel's tap count with a crossover per backend
(``be.correlate_crossover()``): a general kernel runs directly up to ``direct_max_taps`` taps, a
2-D kernel of rank ``r <= 2`` (or a 1-D kernel, ``r = 1``) runs as 1-D passes while ``r``
times (the sum of its side lengths plus 40, a pair of passes' fixed cost in taps) is at most
``separable_max_taps + 40``; larger kernels use the FFT. A 15 x 15 Gabor kernel (rank two)
on 2048x2048 float32 on 2 CPU cores takes 25–39 ms as passes against 45–47 ms by FFT
(``crossover ... rank two``); at 31 x 31 they tie, and the FFT is taken. On the CPU these were measured with
``benchmarks/bench_filters.py`` (groups ``crossover ...``) on 2048x2048 float32 and checked on
512x512 float64 and 256x256 float32: SciPy's direct loop, run in bands of rows on every core,
wins through 4x4 (23 against 30 ms on 2 cores) and loses from 5x5 on (16 taps). 1-D passes
run as batched GEMMs with a banded Toeplitz block (:mod:`gpuimg._prims.banded`; 10x faster
than SciPy's line loop at 19 taps) and win up to about 2x80 taps (160): 19.7 against
36.1 ms at 2x61, a tie at 2x101. On the GPU the same groups
time the tiled kernel against cuFFT; measured on an NVIDIA H200 at 2048x2048 float32, the tiled
kernel wins through 7x7 and ties at 11x11 (81 taps), and 1-D passes cost about 8 us per tap
against a flat 0.78 ms for cuFFT, so they win up to about 2x50 taps (100; a rank-two 31 x 31
kernel runs directly, 1.24x faster than by FFT). Re-check these when the benchmark runs on a
new device.
"""

from __future__ import annotations

import functools
import numbers
from typing import Any, Sequence

import numpy as np

from gpuimg._backend import get_backend
from gpuimg._boundary import pad
from gpuimg._validate import (
    check_array,
    check_choice,
    check_mode,
    check_real,
    to_float,
    unwrap_scalar,
)

__all__ = ["convolve", "correlate", "gaussian_filter", "uniform_filter"]

_METHODS = ("auto", "direct", "fft")
_MAX_KERNEL_NDIM = 3
# singular-value ratio below which a 2-D kernel's term of its SVD counts as zero
_RANK_RTOL = 1e-12
# 2-D kernels of rank up to this run as sums of that many pairs of 1-D passes (a Gabor or a
# Laplacian-of-Gaussian kernel is a sum of two outer products)
_MAX_RANK = 2
# the fixed cost of a pair of 1-D passes in taps: on 2 CPU cores a banded pass over 512x512
# float32 costs about 0.15 ms plus 6.5 us per tap (benchmarks/bench_filters.py, correlate1d)
_PAIR_TAPS = 40
# kernels this small always run as one direct pass (no look at their values)
_SMALL_TAPS = 25


# --------------------------------------------------------------------------------------
# argument checks
# --------------------------------------------------------------------------------------

def _per_axis(name: str, value: Any, naxes: int) -> list:
    """``value`` repeated for ``naxes`` axes, or checked to have that many entries."""
    if np.ndim(value) == 0:
        return [unwrap_scalar(value)] * naxes
    values = list(np.asarray(value).ravel()) if not isinstance(value, (list, tuple)) else list(value)
    if len(values) != naxes:
        raise ValueError(f"{name} must be a scalar or have {naxes} entries, got {value!r}")
    return values


def _centers(origin: Any, shape: Sequence[int], convolution: bool) -> list[int]:
    """Tap index that sits on the output sample, per kernel axis (SciPy's origin rules)."""
    if type(origin) is int and origin == 0:
        return [(n - 1) // 2 if convolution else n // 2 for n in shape]
    origins = _per_axis("origin", origin, len(shape))
    centers = []
    for o, n in zip(origins, shape):
        if isinstance(o, (bool, np.bool_)) or not isinstance(o, (numbers.Integral, np.integer)):
            raise TypeError(f"origin must be an integer or a sequence of integers, got {origin!r}")
        o = int(o)
        if o < -(n // 2) or o > (n - 1) // 2:
            raise ValueError(
                f"origin must satisfy -(n // 2) <= origin <= (n - 1) // 2 for a kernel axis of "
                f"length n={n}, got origin={origin!r}"
            )
        centers.append((n - 1) // 2 - o if convolution else n // 2 + o)
    return centers


# --------------------------------------------------------------------------------------
# building blocks shared by the filters
# --------------------------------------------------------------------------------------

def _pad(be, x, pads: Sequence[tuple[int, int]], mode: str, cval: float):
    """Extend the last ``len(pads)`` axes of ``x`` by ``(before, after)`` samples through ``mode``."""
    full = [(0, 0)] * (x.ndim - len(pads)) + [(int(a), int(b)) for a, b in pads]
    return pad(x, full, mode, cval, be.xp)


def _low_rank_factors(w: np.ndarray):
    """``[(column, row), ...]`` with ``w == sum outer(column, row)`` to rounding, at most
    ``_MAX_RANK`` terms (the SVD's, cut where the next singular value is below ``_RANK_RTOL``
    of the first), or None for a kernel of higher rank."""
    if w.ndim != 2 or min(w.shape) == 1:
        return None
    u, s, vt = np.linalg.svd(w)
    if s[0] == 0:
        return None
    rank = int(np.count_nonzero(s > _RANK_RTOL * s[0]))
    if rank > _MAX_RANK:
        return None
    return [(u[:, i] * s[i], vt[i]) for i in range(rank)]


def _host(be, w):
    return np.asarray(be.to_numpy(w), dtype=np.float64)


def _separable(be, w):
    """Low-rank factors (:func:`_low_rank_factors`) of a 2-D kernel worth splitting, or None.

    Kernels of at most ``_SMALL_TAPS`` taps run as one 2-D pass without inspecting their
    values, which spares a device-to-host copy (and a sync) on the GPU.
    """
    if w.ndim != 2 or w.size <= _SMALL_TAPS:
        return None
    return _low_rank_factors(_host(be, w))


def _correlate_direct(be, x, w, mode, cval, centers, factors):
    if w.ndim == 1:
        return be.correlate1d(x, w, -1, mode, cval, centers[0])
    if factors is None:
        return be.correlate_direct(x, w, mode, cval, centers)
    constant = mode in ("constant", "grid-constant")
    if constant and cval != 0:
        # passes over (x - cval) with zero fill, then the fill's contribution, equal the
        # 2-D correlation with cval fill (a second pass would otherwise see unfiltered cval)
        x = x - x.dtype.type(cval)
    y = None
    for column, row in factors:
        t = be.correlate1d(x, row, -1, mode, 0.0 if constant else cval, centers[1])
        t = be.correlate1d(t, column, -2, mode, 0.0 if constant else cval, centers[0])
        if y is None:
            y = t
        else:
            y += t
    if constant and cval != 0:
        y += y.dtype.type(cval * float(sum(c.sum() * r.sum() for c, r in factors)))
    return y


def _correlate_fft(be, x, w, mode, cval, centers):
    pads = [(c, n - 1 - c) for c, n in zip(centers, w.shape)]
    return be.fft_correlate(_pad(be, x, pads, mode, cval), _host(be, w))


def _pick_method(be, w, factors) -> str:
    """``"direct"`` or ``"fft"`` from the kernel's tap count and the backend's crossover."""
    cross = be.correlate_crossover()
    if w.ndim == 1 or factors is not None:
        # r pairs of passes against the crossover measured for one pair, each pair charged
        # its fixed cost as _PAIR_TAPS more taps
        terms = 1 if factors is None else len(factors)
        cost = terms * (sum(w.shape) + _PAIR_TAPS)
        return "direct" if cost <= cross["separable_max_taps"] + _PAIR_TAPS else "fft"
    return "direct" if w.size <= cross["direct_max_taps"] else "fft"


def _correlate_or_convolve(image, kernel, mode, cval, origin, method, convolution):
    check_array("image", image, min_ndim=1)
    check_array("kernel", kernel, min_ndim=1, max_ndim=_MAX_KERNEL_NDIM)
    if kernel.ndim > image.ndim:
        raise ValueError(
            f"kernel must not have more dimensions than image, got kernel shape "
            f"{tuple(kernel.shape)} and image shape {tuple(image.shape)}"
        )
    check_mode(mode)
    check_choice("method", method, _METHODS)
    cval = check_real("cval", cval)
    centers = _centers(origin, tuple(kernel.shape), convolution)

    be = get_backend(image, kernel, names=("image", "kernel"))
    x = to_float(image, be.xp)
    w = be.asarray(kernel)
    factors = _separable(be, w) if method != "fft" else None
    if method == "auto":
        method = _pick_method(be, w, factors)
    if method == "direct" and w.ndim > 1 and factors is None:
        # the 2-D / 3-D direct pass reads a convolution's kernel reversed in place
        return be.correlate_direct(x, w, mode, cval, centers, flip=convolution)
    if convolution:
        w = w[(slice(None, None, -1),) * w.ndim]
        if factors is not None:
            factors = [(c[::-1], r[::-1]) for c, r in factors]
    if method == "fft":
        return _correlate_fft(be, x, w, mode, cval, centers)
    return _correlate_direct(be, x, w, mode, cval, centers, factors)


# --------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------

_COMMON_DOC = """
    Parameters
    ----------
    image : array, shape (..., *S)
        Real image; the kernel applies to its last ``kernel.ndim`` axes, leading axes are a
        batch. Integer images are filtered in float64.
    kernel : array, 1, 2 or 3 dimensions
        Filter weights (at most ``image.ndim`` dimensions).
    mode : {"reflect", "mirror", "nearest", "constant", "wrap", "grid-wrap", "grid-constant"}
        How the image extends past its border, as in :mod:`scipy.ndimage`.
    cval : float
        Fill value of the constant modes.
    origin : int or sequence of int
        Shift of the kernel centre per kernel axis, with SciPy's sign and range
        ``-(n // 2) <= origin <= (n - 1) // 2``.
    method : {"auto", "direct", "fft"}
        Direct summation, FFT of the boundary-padded image, or the faster of the two for this
        kernel size (see the module notes on the measured crossover).

    Returns
    -------
    array, same shape as ``image``
        On the image's backend, in its float dtype (float32 stays float32).

    Raises
    ------
    ValueError, TypeError
        For a kernel with more dimensions than the image or more than 3, an empty array, an
        unknown ``mode`` or ``method``, or an ``origin`` outside the kernel.
"""


def correlate(image, kernel, *, mode: str = "reflect", cval: float = 0.0, origin: Any = 0,
              method: str = "auto"):
    r"""Multi-dimensional correlation, equal to :func:`scipy.ndimage.correlate`.

    .. math:: y[\mathbf i] = \sum_{\mathbf j} w[\mathbf j]\,
              x_{\mathrm{ext}}[\mathbf i + \mathbf j - \mathbf c],
              \qquad c_k = \lfloor n_k / 2 \rfloor + \mathrm{origin}_k

    where :math:`x_{\mathrm{ext}}` is the image extended by ``mode``.
    """
    return _correlate_or_convolve(image, kernel, mode, cval, origin, method, convolution=False)


def convolve(image, kernel, *, mode: str = "reflect", cval: float = 0.0, origin: Any = 0,
             method: str = "auto"):
    r"""Multi-dimensional convolution, equal to :func:`scipy.ndimage.convolve`.

    .. math:: y[\mathbf i] = \sum_{\mathbf j} w[\mathbf j]\,
              x_{\mathrm{ext}}[\mathbf i - \mathbf j + \mathbf c],
              \qquad c_k = \lfloor (n_k - 1) / 2 \rfloor - \mathrm{origin}_k

    i.e. correlation with the reversed kernel, with SciPy's origin convention for even sizes.

    References
    ----------
    P. Virtanen et al., "SciPy 1.0", Nature Methods 17 (2020): ``scipy.ndimage.convolve``.
    """
    return _correlate_or_convolve(image, kernel, mode, cval, origin, method, convolution=True)


correlate.__doc__ += _COMMON_DOC
convolve.__doc__ += _COMMON_DOC


def _filtered_axes(name: str, value: Any, ndim: int) -> int:
    """Number of trailing axes a per-axis filter parameter covers."""
    if np.ndim(value) == 0:
        return min(2, ndim)
    n = len(value) if isinstance(value, (list, tuple)) else int(np.size(value))
    if n < 1 or n > ndim:
        raise ValueError(f"{name} must be a scalar or have 1 to {ndim} (image.ndim) entries, got {value!r}")
    return n


def _check_ints(name: str, values: list, original: Any, minimum: int) -> list[int]:
    for v in values:
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (numbers.Integral, np.integer)):
            raise TypeError(f"{name} must be an integer >= {minimum} or a sequence of them, got {original!r}")
        if v < minimum:
            raise ValueError(f"{name} must be >= {minimum}, got {original!r}")
    return [int(v) for v in values]


def _passes(image, passes, mode: str, cval: float):
    """1-D passes along the trailing ``len(passes)`` axes, one spec per axis: None (no pass),
    ``(w, center)`` (a correlation with the weights ``w``) or ``(n, center)`` with an int ``n``
    (the box mean of ``n`` taps)."""
    be = get_backend(image, names=("image",))
    x = to_float(image, be.xp)
    out = x
    for axis, spec in zip(range(x.ndim - len(passes), x.ndim), passes):
        if spec is None:
            continue
        w, center = spec
        if isinstance(w, int):
            out = be.uniform1d(out, w, axis, mode, cval, center)
        else:
            out = be.correlate1d(out, w, axis, mode, cval, center)
    return x.copy() if out is x else out


def gaussian_kernel1d(sigma: float, order: int, radius: int) -> np.ndarray:
    """Sampled Gaussian (normalised to sum 1) times the Hermite factor of its ``order``-th
    derivative, with the arithmetic of ``scipy.ndimage``'s own kernel."""
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    phi = np.exp(-0.5 / (sigma * sigma) * x**2)
    phi /= phi.sum()
    if order == 0:
        return phi
    # d^k/dx^k exp(p(x)) = q_k(x) exp(p(x)) with q_{k+1} = q_k' - q_k x / sigma^2
    q = np.zeros(order + 1)
    q[0] = 1.0
    deriv = np.diag(np.arange(1, order + 1, dtype=np.float64), 1)
    shift = np.diag(np.full(order, -1.0 / sigma**2), -1)
    step = deriv + shift
    for _ in range(order):
        q = step @ q
    return (x[:, None] ** np.arange(order + 1)) @ q * phi


def gaussian_filter(image, sigma, *, order: Any = 0, mode: str = "reflect", cval: float = 0.0,
                    truncate: float = 4.0):
    r"""Gaussian filter (or its derivatives), equal to :func:`scipy.ndimage.gaussian_filter`.

    Separable: one 1-D correlation per filtered axis with the sampled, normalised kernel
    :math:`g[j] \propto \exp(-j^2 / 2\sigma^2)`, :math:`|j| \le r`, :math:`r = \lfloor
    \mathrm{truncate}\,\sigma + 1/2 \rfloor`, or for ``order`` :math:`k > 0` the exact
    :math:`k`-th derivative of the continuous Gaussian sampled the same way (times the same
    normalisation). Axes with :math:`\sigma \le 10^{-15}` are left alone. Each pass extends its
    input by ``mode`` (with ``cval`` for the constant modes), as SciPy does. When every filtered
    axis smooths (``order`` 0) and the kernels together are longer than the backend's
    separable crossover (``be.correlate_crossover()``; on the CPU 160 taps, σ >= 9.875 on two
    axes), the filter runs as one FFT correlation with their outer product on the
    boundary-padded image, which is the same operator: unit-sum passes map a constant
    extension to itself, and the index-based modes extend each axis independently.

    Parameters
    ----------
    image : array, shape (..., H, W)
        Real image; integer images are filtered in float64.
    sigma : float or sequence of float
        Standard deviation in pixels, >= 0 and finite. A scalar filters the last two axes (the
        only axis of 1-D input); a sequence of length k filters the last k axes, so a 3-tuple
        filters volumes. Remaining leading axes are a batch.
    order : int or sequence of int
        Derivative order per filtered axis (0 smooths).
    mode : str
        Boundary mode (SciPy's names).
    cval : float
        Fill value of the constant modes.
    truncate : float
        Kernel radius in standard deviations.

    Returns
    -------
    array, same shape as ``image``, on its backend, in its float dtype.

    References
    ----------
    T. Lindeberg, "Scale-Space Theory in Computer Vision", Kluwer (1994), ch. 3.
    """
    check_array("image", image, min_ndim=1)
    naxes = _filtered_axes("sigma", sigma, image.ndim)
    sigmas = [check_real("sigma", s) for s in _per_axis("sigma", sigma, naxes)]
    for s in sigmas:
        if not np.isfinite(s) or s < 0:
            raise ValueError(f"sigma must be finite and >= 0, got {sigma!r}")
    orders = _check_ints("order", _per_axis("order", order, naxes), order, 0)
    truncate = check_real("truncate", truncate)
    if not np.isfinite(truncate) or truncate <= 0:
        raise ValueError(f"truncate must be finite and > 0, got {truncate!r}")
    check_mode(mode)
    cval = check_real("cval", cval)
    passes = []
    for s, o in zip(sigmas, orders):
        radius = int(truncate * s + 0.5)
        w = np.ascontiguousarray(gaussian_kernel1d(s, o, radius)[::-1]) if s > 1e-15 else None
        passes.append(None if w is None else (w, radius))
    if len(passes) > 1 and all(p is not None for p in passes) and not any(orders):
        be = get_backend(image, names=("image",))
        if sum(len(p[0]) for p in passes) > be.correlate_crossover()["separable_max_taps"]:
            # unit-sum passes with cval fill equal one correlation with their outer product
            w = functools.reduce(np.multiply.outer, [p[0] for p in passes])
            return _correlate_fft(be, to_float(image, be.xp), w, mode, cval, [p[1] for p in passes])
    return _passes(image, passes, mode, cval)


def uniform_filter(image, size, *, mode: str = "reflect", cval: float = 0.0):
    r"""Box (moving-average) filter, equal to :func:`scipy.ndimage.uniform_filter`.

    Separable: along each filtered axis :math:`y[i] = \frac1n \sum_{j=0}^{n-1}
    x_{\mathrm{ext}}[i + j - \lfloor n/2 \rfloor]` (for even :math:`n` the window reaches one
    sample further back than forward, as in SciPy). Axes with ``size`` 1 are left alone.

    Parameters
    ----------
    image : array, shape (..., H, W)
        Real image; integer images are filtered in float64.
    size : int or sequence of int
        Window length, >= 1. A scalar filters the last two axes (the only axis of 1-D input);
        a sequence of length k filters the last k axes.
    mode : str
        Boundary mode (SciPy's names).
    cval : float
        Fill value of the constant modes.

    Returns
    -------
    array, same shape as ``image``, on its backend, in its float dtype.
    """
    check_array("image", image, min_ndim=1)
    naxes = _filtered_axes("size", size, image.ndim)
    sizes = _check_ints("size", _per_axis("size", size, naxes), size, 1)
    check_mode(mode)
    cval = check_real("cval", cval)
    return _passes(image, [None if n == 1 else (n, n // 2) for n in sizes], mode, cval)
