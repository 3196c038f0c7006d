"""Image comparison: MSE, MAE, PSNR, SNR, SSIM, MS-SSIM and local similarity maps.

Every function takes NumPy or CuPy arrays and returns results on the same backend. Scalars
are 0-d float64 arrays (on the device for CuPy, no host synchronisation); maps keep the
input's float dtype (float32 stays float32, integers become float64). Sums are accumulated in
float64.

The windowed measures (``ssim``, ``ms_ssim``, ``local_mse``, ``local_ssim``, ``local_ncc``) run
on one primitive, ``window_moments``: on the GPU a single fused CUDA kernel computes the local
moments with shared-memory tiles, applies the per-pixel formula and the cropped mean, without
writing intermediate moment images; on the CPU the same work is done with separable passes
(banded GEMMs, :mod:`gpuimg._prims.banded`) in cache-sized blocks, on float32 where the input
is float32.

NaN in the input propagates to the result (``check_finite=True`` raises instead, at the cost of
a scan and, on the GPU, a host synchronisation).
"""

from __future__ import annotations

import numbers

import numpy as np

from gpuimg import _validate
from gpuimg._backend import get_backend
from gpuimg.filters import gaussian_kernel1d

__all__ = ["local_mse", "local_ncc", "local_ssim", "mae", "ms_ssim", "mse", "psnr", "snr", "ssim"]

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
_MAX_SPATIAL = 3


# --------------------------------------------------------------------------------------
# validation helpers
# --------------------------------------------------------------------------------------

def _pair(be, a, b, names=("a", "b"), check_finite=False):
    """Validate two same-shape real images; return them as float arrays of one dtype."""
    _validate.check_array(names[0], a)
    _validate.check_array(names[1], b)
    _validate.check_same_shape(names[0], a, names[1], b)
    dt = _validate.float_dtype(a.dtype, b.dtype)
    if check_finite:
        _validate.check_finite(names[0], a, be.xp)
        _validate.check_finite(names[1], b, be.xp)
    return _validate.to_float(a, be.xp, dt), _validate.to_float(b, be.xp, dt)


def _data_range(data_range, a, b):
    """``data_range`` as a float: given, or the integer dtype's range; required for floats."""
    if data_range is not None:
        _validate.check_positive("data_range", data_range)
        return float(data_range)
    kinds = {np.dtype(a.dtype).kind, np.dtype(b.dtype).kind}
    if "f" in kinds:
        raise ValueError(
            "data_range must be given for floating-point input (the distance between the "
            f"smallest and largest possible value, e.g. 1.0 or 255.0), got {data_range!r} "
            f"with dtypes {np.dtype(a.dtype)} and {np.dtype(b.dtype)}"
        )
    dt = np.dtype(a.dtype)
    if dt.kind == "b":
        return 1.0
    info = np.iinfo(dt)
    return float(info.max) - float(info.min)


def _check_nonneg(name, value):
    return _validate.check_positive(name, value, strict=False)


def _spatial_ndim(spatial_ndim, nd, name="spatial_ndim"):
    """Number of trailing spatial axes among ``nd`` (non-channel) axes; 1 to 3."""
    if spatial_ndim is None:
        if nd > _MAX_SPATIAL:
            raise ValueError(
                f"spatial_ndim: the images have {nd} non-channel axes, more than the {_MAX_SPATIAL} "
                "spatial axes supported; pass spatial_ndim=2 (or 3) to treat leading axes as a batch"
            )
        return nd
    if isinstance(spatial_ndim, bool) or not isinstance(spatial_ndim, numbers.Integral):
        raise TypeError(f"{name} must be an integer or None, got {spatial_ndim!r}")
    if not 1 <= spatial_ndim <= min(nd, _MAX_SPATIAL):
        raise ValueError(f"{name} must be in [1, {min(nd, _MAX_SPATIAL)}] for {nd} non-channel axes, got {spatial_ndim}")
    return int(spatial_ndim)


def _check_window(win_size, spatial_shape, name="win_size"):
    _validate.check_odd_window(name, win_size, minimum=1)
    if win_size > min(spatial_shape):
        raise ValueError(
            f"{name} must be <= the smallest spatial side {min(spatial_shape)} (spatial shape "
            f"{tuple(spatial_shape)}), got {win_size}; with colour images set channel_axis"
        )
    return int(win_size)


def _uniform_taps(size):
    return np.full(size, 1.0 / size)


# --------------------------------------------------------------------------------------
# global measures
# --------------------------------------------------------------------------------------

def _sq_err_sum(be, a, b):
    """``sum((a - b)^2)`` accumulated in float64 (differences in the inputs' float dtype)."""
    return be.error_sum(a, b, 2)


def mse(a, b, *, check_finite=False):
    """Mean squared error ``mean((a - b)^2)`` over all elements.

    Parameters
    ----------
    a, b : ndarray
        Images of one shape (NumPy or CuPy), any real dtype.
    check_finite : bool
        Raise ``ValueError`` if an input holds NaN or Inf (otherwise NaN propagates).

    Returns
    -------
    0-d float64 array on the input backend. Differences are formed in the inputs' float
    dtype (float32 stays float32) and summed in float64.
    """
    be = get_backend(a, b, names=("a", "b"))
    a, b = _pair(be, a, b, check_finite=_validate.check_bool("check_finite", check_finite))
    return _sq_err_sum(be, a, b) / a.size


def mae(a, b, *, check_finite=False):
    """Mean absolute error ``mean(|a - b|)`` over all elements (float64, 0-d array)."""
    be = get_backend(a, b, names=("a", "b"))
    a, b = _pair(be, a, b, check_finite=_validate.check_bool("check_finite", check_finite))
    return be.error_sum(a, b, 1) / a.size


def psnr(reference, test, *, data_range=None, check_finite=False):
    """Peak signal-to-noise ratio ``10 log10(data_range^2 / mse)`` in dB.

    Parameters
    ----------
    reference, test : ndarray
        Images of one shape.
    data_range : float, optional
        Distance between the smallest and largest possible pixel value. Inferred from the
        dtype alone for integer input (its full span: 255 for uint8, 65535 for uint16 and
        int16, 1 for bool);
        **required** for floating-point input (``ValueError`` otherwise), unlike
        scikit-image, which guesses 2.0 from the float dtype's [-1, 1] range.
    check_finite : bool
        Raise ``ValueError`` on NaN or Inf input.

    Returns
    -------
    0-d float64 array; ``+inf`` for identical images (without a division warning).

    References
    ----------
    ``skimage.metrics.peak_signal_noise_ratio`` (same definition).
    """
    be = get_backend(reference, test, names=("reference", "test"))
    _validate.check_array("reference", reference)
    _validate.check_array("test", test)
    dr = _data_range(data_range, reference, test)
    ref, tst = _pair(be, reference, test, ("reference", "test"), _validate.check_bool("check_finite", check_finite))
    return be.decibels(dr * dr, _sq_err_sum(be, ref, tst), 1.0 / ref.size)


def snr(reference, test, *, check_finite=False):
    """Signal-to-noise ratio ``10 log10(sum(reference^2) / sum((reference - test)^2))`` in dB.

    Returns a 0-d float64 array: ``+inf`` for identical images, ``-inf`` for an all-zero
    reference that differs from ``test``; sums are accumulated in float64.
    """
    be = get_backend(reference, test, names=("reference", "test"))
    ref, tst = _pair(be, reference, test, ("reference", "test"), _validate.check_bool("check_finite", check_finite))
    xp = be.xp
    sig = xp.sum(ref * ref, dtype=xp.float64)
    return be.decibels(sig, _sq_err_sum(be, ref, tst))


# --------------------------------------------------------------------------------------
# SSIM
# --------------------------------------------------------------------------------------

def _channels_to_batch(be, x, channel_axis):
    """Move the channel axis to the front (a batch axis)."""
    return be.xp.moveaxis(x, channel_axis, 0)


def ssim(a, b, *, data_range=None, win_size=None, gaussian_weights=False, sigma=1.5, K1=0.01, K2=0.03,
         use_sample_covariance=True, full=False, channel_axis=None, spatial_ndim=None, check_finite=False):
    r"""Mean structural similarity (SSIM) of two images, with the semantics of scikit-image.

    With local (windowed) means :math:`\mu`, variances :math:`\sigma^2` and covariance
    :math:`\sigma_{ab}`, the SSIM map is

    .. math::

        S = \frac{(2\mu_a\mu_b + C_1)(2\sigma_{ab} + C_2)}
                 {(\mu_a^2 + \mu_b^2 + C_1)(\sigma_a^2 + \sigma_b^2 + C_2)},
        \quad C_1 = (K_1 L)^2,\ C_2 = (K_2 L)^2,

    with :math:`L` = ``data_range``. The returned value is the mean of the map after leaving
    out ``(win_size - 1) // 2`` samples at both ends of every spatial axis, as
    ``skimage.metrics.structural_similarity`` does (identical defaults, window, border and full
    map). Samples outside the image are reflected (``mode="reflect"``, ``d c b a | a b c d``).

    Parameters
    ----------
    a, b : ndarray
        Images of one shape, NumPy or CuPy.
    data_range : float, optional
        Distance between the smallest and largest possible value. Inferred for integer dtypes;
        required for floating-point input (``ValueError``), where scikit-image would guess.
    win_size : int, optional
        Odd side of the window; default 7 for the uniform window. For Gaussian windows the
        filter radius is ``int(3.5 * sigma + 0.5)`` (11 taps for sigma 1.5) and ``win_size``,
        default ``2 * radius + 1``, only sets the border crop and the sample-covariance factor,
        exactly as in scikit-image.
    gaussian_weights : bool
        Gaussian window of standard deviation ``sigma`` instead of a uniform one.
    sigma : float
        Standard deviation of the Gaussian window (> 0).
    K1, K2 : float
        Stabilising constants (>= 0).
    use_sample_covariance : bool
        Normalise (co)variances by ``N - 1`` instead of ``N`` (``N = win_size ** ndim``).
    full : bool
        Also return the SSIM map (same shape and float dtype as the input).
    channel_axis : int, optional
        Axis of colour channels: each channel is compared separately and the means are
        averaged (the map keeps the channel axis).
    spatial_ndim : int, optional
        Number of trailing (non-channel) axes that are spatial (1 to 3). Default: every
        non-channel axis, like scikit-image. ``spatial_ndim=2`` on an ``(N, H, W)`` stack
        returns ``N`` values from one kernel launch.
    check_finite : bool
        Raise ``ValueError`` on NaN or Inf input (NaN propagates otherwise).

    Returns
    -------
    mssim : 0-d float64 array, or float64 array of the batch shape
    S : ndarray, only with ``full=True``

    Notes
    -----
    Wang et al.'s reference implementation ``ssim_index.m`` (11x11 Gaussian window,
    sigma 1.5, population covariance, K = (0.01, 0.03), L = 255, mean over the "valid" region)
    is reproduced by ``ssim(a, b, data_range=255, gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False)``: its ``filter2(..., 'valid')`` keeps exactly the samples
    that the border crop keeps.

    Backend notes: on the GPU, float32 input is filtered with float32 arithmetic (SciPy uses
    float64 accumulators per output sample); the mean is summed in float64 on both.

    References
    ----------
    Z. Wang, A. C. Bovik, H. R. Sheikh and E. P. Simoncelli, "Image quality assessment: from
    error visibility to structural similarity", IEEE Trans. Image Process. 13(4), 600-612,
    2004. DOI:10.1109/TIP.2003.819861
    """
    be = get_backend(a, b, names=("a", "b"))
    _validate.check_array("a", a)
    _validate.check_array("b", b)
    _validate.check_same_shape("a", a, "b", b)
    dr = _data_range(data_range, a, b)
    full = _validate.check_bool("full", full)
    gaussian_weights = _validate.check_bool("gaussian_weights", gaussian_weights)
    use_sample_covariance = _validate.check_bool("use_sample_covariance", use_sample_covariance)
    _check_nonneg("K1", K1)
    _check_nonneg("K2", K2)
    _validate.check_positive("sigma", sigma)
    nd = a.ndim
    if channel_axis is not None:
        channel_axis = _validate.check_axis("channel_axis", channel_axis, nd)
    nsp = _spatial_ndim(spatial_ndim, nd - (channel_axis is not None))
    shape_wo = tuple(n for i, n in enumerate(a.shape) if i != channel_axis)
    spatial_shape = shape_wo[len(shape_wo) - nsp:]
    if gaussian_weights:
        radius = int(3.5 * sigma + 0.5)  # scikit-image's truncate=3.5: 11 taps for sigma 1.5
        win_size = 2 * radius + 1 if win_size is None else win_size
    win_size = _check_window(7 if win_size is None else win_size, spatial_shape)
    taps = gaussian_kernel1d(float(sigma), 0, radius) if gaussian_weights else _uniform_taps(win_size)
    npix = win_size**nsp
    cov_norm = npix / (npix - 1) if use_sample_covariance and npix > 1 else 1.0
    a, b = _pair(be, a, b, check_finite=_validate.check_bool("check_finite", check_finite))
    if channel_axis is not None:
        a = _channels_to_batch(be, a, channel_axis)
        b = _channels_to_batch(be, b, channel_axis)
    smap, means = be.window_moments(
        a, b, "ssim", (taps,) * nsp, "reflect",
        cov_norm=cov_norm, c1=(K1 * dr) ** 2, c2=(K2 * dr) ** 2,
        crop=(win_size - 1) // 2, want_map=full,
    )
    if channel_axis is not None:
        means = means.mean(axis=0)
        if full:
            smap = be.xp.moveaxis(smap, 0, channel_axis)
    means = be.scalar(means) if means.ndim == 0 else means
    return (means, smap) if full else means


def local_ssim(a, b, *, data_range=None, **kwargs):
    """SSIM map: ``ssim(a, b, data_range=data_range, full=True, **kwargs)[1]``.

    Same shape and float dtype as the input; see :func:`ssim` for the options and the maths.
    """
    if "full" in kwargs:
        raise TypeError("local_ssim always returns the full map; do not pass full")
    return ssim(a, b, data_range=data_range, full=True, **kwargs)[1]


def _spatial_setup(a, b, win_size, spatial_ndim, mode):
    _validate.check_array("a", a)
    _validate.check_array("b", b)
    _validate.check_same_shape("a", a, "b", b)
    _validate.check_mode(mode)
    nsp = _spatial_ndim(spatial_ndim, a.ndim)
    win_size = _check_window(win_size, tuple(a.shape[a.ndim - nsp:]))
    return nsp, win_size


def local_mse(a, b, *, win_size=7, mode="reflect", spatial_ndim=None, check_finite=False):
    r"""Local mean squared error: the mean of :math:`(a - b)^2` over a sliding window.

    .. math:: M(x) = \frac{1}{N} \sum_{u \in \mathcal{W}(x)} (a(u) - b(u))^2

    over the ``win_size``-wide uniform window centred on each pixel (``N = win_size ** ndim``);
    samples outside the image follow boundary ``mode`` (SciPy names; ``constant`` reads 0).

    Parameters
    ----------
    a, b : ndarray
        Images of one shape.
    win_size : int
        Odd window side, at most the smallest spatial side.
    mode : str
        ``reflect`` (default), ``mirror``, ``nearest``, ``constant``, ``wrap``, ``grid-wrap``,
        ``grid-constant``.
    spatial_ndim : int, optional
        Trailing spatial axes (1 to 3); leading axes are a batch. Default: all axes.
    check_finite : bool
        Raise ``ValueError`` on NaN or Inf input.

    Returns
    -------
    ndarray of the input's shape and float dtype. ``mse(a, b)`` equals its mean for
    ``mode="wrap"``.
    """
    be = get_backend(a, b, names=("a", "b"))
    nsp, win_size = _spatial_setup(a, b, win_size, spatial_ndim, mode)
    a, b = _pair(be, a, b, check_finite=_validate.check_bool("check_finite", check_finite))
    smap, _ = be.window_moments(a, b, "mse", (_uniform_taps(win_size),) * nsp, mode, want_map=True)
    return smap


def local_ncc(a, b, *, win_size=7, mode="reflect", eps=None, spatial_ndim=None, check_finite=False):
    r"""Local zero-mean normalised cross-correlation over a sliding window.

    .. math:: \rho(x) = \frac{\sigma_{ab}(x)}{\sigma_a(x)\,\sigma_b(x)}

    with the window's (uniform, ``win_size`` wide) covariance and standard deviations. It is
    invariant to gain and offset: ``local_ncc(a, g * a + o) == sign(g)`` wherever the window is
    not flat, so it compares structure under different lighting. Values lie in [-1, 1].

    Parameters
    ----------
    a, b : ndarray
        Images of one shape (a reference and, say, a photo under other lighting).
    win_size, mode, spatial_ndim, check_finite
        As in :func:`local_mse`.
    eps : float, optional
        Flatness threshold: a window whose variance of ``a`` (or ``b``) is at most ``eps``
        times its mean square counts as flat and gets **0** (no evidence of correlation).
        Default ``1e-6`` for float32 and ``1e-12`` for float64 computation: variances below
        that are rounding noise of the moments.

    Returns
    -------
    ndarray of the input's shape and float dtype.

    Notes
    -----
    Except for the ``constant`` modes, each image's mean is subtracted first (it changes
    neither variances nor covariances) to keep the moment differences well conditioned.

    References
    ----------
    J. P. Lewis, "Fast normalized cross-correlation", Vision Interface 1995.
    """
    be = get_backend(a, b, names=("a", "b"))
    nsp, win_size = _spatial_setup(a, b, win_size, spatial_ndim, mode)
    a, b = _pair(be, a, b, check_finite=_validate.check_bool("check_finite", check_finite))
    if eps is None:
        eps = 1e-6 if a.dtype == np.float32 else 1e-12
    else:
        _check_nonneg("eps", eps)
    if mode not in ("constant", "grid-constant"):
        xp = be.xp
        axes = tuple(range(a.ndim - nsp, a.ndim))
        a = a - xp.mean(a, axis=axes, keepdims=True, dtype=xp.float64).astype(a.dtype)
        b = b - xp.mean(b, axis=axes, keepdims=True, dtype=xp.float64).astype(b.dtype)
    smap, _ = be.window_moments(a, b, "ncc", (_uniform_taps(win_size),) * nsp, mode, eps=eps, want_map=True)
    return smap


def _downsample2(be, x):
    """2x2 block mean with the last row/column repeated for odd sizes.

    ``msssim.m``: ``imfilter(x, ones(2)/4, 'symmetric', 'same')`` then ``x(1:2:end, 1:2:end)``.
    """
    xp = be.xp
    h, w = x.shape[-2:]
    if h % 2 or w % 2:
        x = xp.pad(x, [(0, 0)] * (x.ndim - 2) + [(0, h % 2), (0, w % 2)], mode="edge")
    return (x[..., 0::2, 0::2] + x[..., 1::2, 0::2] + x[..., 0::2, 1::2] + x[..., 1::2, 1::2]) * 0.25


def ms_ssim(a, b, *, data_range=None, weights=MS_SSIM_WEIGHTS, win_size=11, sigma=1.5, K1=0.01, K2=0.03,
            check_finite=False):
    r"""Multi-scale SSIM of Wang, Simoncelli & Bovik (2003), as in the authors' ``msssim.m``.

    .. math:: \mathrm{MS\text{-}SSIM} = \prod_{j=1}^{M-1} \overline{cs}_j^{\,w_j}
              \cdot \overline{S}_M^{\,w_M}

    where :math:`\overline{cs}_j` is the mean contrast-structure term
    :math:`(2\sigma_{ab} + C_2)/(\sigma_a^2 + \sigma_b^2 + C_2)` at scale ``j`` and
    :math:`\overline{S}_M` the mean SSIM at the coarsest scale ``M = len(weights)``. Each scale
    uses a ``win_size`` x ``win_size`` Gaussian window (``fspecial('gaussian', 11, 1.5)``),
    population (co)variances and the mean over the "valid" region (the window fully inside);
    the next scale is the 2x2 block mean (last row/column repeated for odd sizes).

    Parameters
    ----------
    a, b : ndarray
        Images ``(..., H, W)`` of one shape; leading axes are a batch.
    data_range : float, optional
        ``L`` in ``C1 = (K1 L)^2``, ``C2 = (K2 L)^2``; ``msssim.m`` uses 255. Inferred for
        integer dtypes, required for floating-point input.
    weights : sequence of float
        Exponents per scale (default: the paper's five).
    win_size : int
        Odd Gaussian window side (11).
    sigma : float
        Gaussian standard deviation (1.5).
    K1, K2 : float
        Stabilising constants.
    check_finite : bool
        Raise ``ValueError`` on NaN or Inf input.

    Returns
    -------
    0-d float64 array, or float64 array of the batch shape. A negative mean
    contrast-structure term raised to a fractional power gives NaN (MATLAB gives a complex
    number there).

    Raises
    ------
    ValueError
        When ``min(H, W) < win_size * 2 ** (len(weights) - 1)`` (176 for the defaults), the
        size ``msssim.m`` needs.

    References
    ----------
    Z. Wang, E. P. Simoncelli and A. C. Bovik, "Multiscale structural similarity for image
    quality assessment", 37th Asilomar Conference on Signals, Systems and Computers, 2003.
    """
    be = get_backend(a, b, names=("a", "b"))
    _validate.check_array("a", a, min_ndim=2)
    _validate.check_array("b", b, min_ndim=2)
    _validate.check_same_shape("a", a, "b", b)
    dr = _data_range(data_range, a, b)
    _check_nonneg("K1", K1)
    _check_nonneg("K2", K2)
    _validate.check_positive("sigma", sigma)
    try:
        w = np.asarray(weights, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"weights must be a sequence of numbers, got {weights!r}") from None
    if w.ndim != 1 or w.size < 1 or not np.all(np.isfinite(w)):
        raise ValueError(f"weights must be a non-empty 1-D sequence of finite numbers, got {weights!r}")
    _validate.check_odd_window("win_size", win_size, minimum=1)
    levels = w.size
    need = win_size * 2 ** (levels - 1)
    if min(a.shape[-2:]) < need:
        raise ValueError(
            f"a: {levels} scales with win_size {win_size} need images of at least {need}x{need} "
            f"pixels, got shape {tuple(a.shape)}; use fewer weights or a smaller win_size"
        )
    a, b = _pair(be, a, b, check_finite=_validate.check_bool("check_finite", check_finite))
    taps = gaussian_kernel1d(float(sigma), 0, win_size // 2)
    c1, c2 = (K1 * dr) ** 2, (K2 * dr) ** 2
    xp = be.xp
    result = None
    for level in range(levels):
        kind = "ssim" if level == levels - 1 else "cs"
        _, m = be.window_moments(a, b, kind, (taps, taps), "reflect", c1=c1, c2=c2, crop=win_size // 2, want_map=False)
        term = xp.power(m, w[level])
        result = term if result is None else result * term
        if level < levels - 1:
            a = _downsample2(be, a)
            b = _downsample2(be, b)
    return be.scalar(result) if result.ndim == 0 else result
