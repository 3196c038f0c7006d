"""Edge-preserving denoising: bilateral filter, non-local means, total variation.

All functions take images shaped ``(..., H, W)`` (leading axes are a batch filtered in one
call). With ``channel_axis`` one axis holds colour channels that are filtered jointly and
the spatial axes are the last two of the others, so ``(H, W, 3)`` with ``channel_axis=-1``
is an RGB image. Results come back on the input's backend in its float dtype (integers
become float64, no rescaling).
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from gpuimg._backend import get_backend
from gpuimg._validate import (check_array, check_axis, check_bool, check_mode, check_odd_window, check_positive,
                              check_real, to_float)
from gpuimg.restoration.tv import tv_prox

__all__ = ["bilateral", "denoise_tv", "nl_means", "tv_prox"]

#: Total-variation denoising ``argmin_x 1/2 ||x - image||^2 + weight TV(x)``; the same
#: function as :func:`gpuimg.restoration.tv.tv_prox`.
denoise_tv = tv_prox


def _channel_axis(name: str, channel_axis: Any, ndim: int) -> int | None:
    if channel_axis is None:
        return None
    ax = check_axis(name, channel_axis, ndim)
    if ndim < 3:
        raise ValueError(f"{name} needs an image with >= 3 dimensions, got ndim={ndim}")
    return ax


def _to_bchw(x: Any, xp: Any, ch: int | None) -> tuple[Any, Any]:
    """``x`` as a contiguous ``(batch, channels, H, W)`` array and a function undoing it."""
    if ch is not None:
        x = xp.moveaxis(x, ch, -3)
    shape = x.shape
    c = shape[-3] if ch is not None else 1
    lead = shape[:-3] if ch is not None else shape[:-2]
    b = math.prod(lead) if lead else 1
    y = xp.ascontiguousarray(x.reshape(b, c, shape[-2], shape[-1]))

    def back(out: Any) -> Any:
        out = out.reshape(shape)
        return xp.moveaxis(out, -3, ch) if ch is not None else out

    return y, back


def bilateral(image, *, sigma_color: float, sigma_spatial: float, win_size: int | None = None,
              mode: str = "reflect", cval: float = 0.0, channel_axis: int | None = None):
    r"""Bilateral filter with exact Gaussian weights over a disk-shaped window.

    .. math::

        y_p = \frac{\sum_{q \in D_p} w_{pq}\, x_q}{\sum_{q \in D_p} w_{pq}}, \qquad
        w_{pq} = \exp\Big(-\frac{|p - q|^2}{2\sigma_s^2}\Big)
                 \exp\Big(-\frac{\|x_q - x_p\|_1^2}{2\sigma_c^2}\Big)

    where :math:`D_p` is the disk :math:`|p - q| \le r`, :math:`r = \mathrm{win\_size} // 2`
    (default :math:`r = \mathrm{round}(1.5\,\sigma_s)`, at least 1), and the colour distance
    is the sum of absolute channel differences. This is OpenCV's ``bilateralFilter`` model
    without its range-weight lookup table: with ``mode="mirror"`` (``BORDER_REFLECT_101``) the
    result equals ``cv2.bilateralFilter(image, win_size, sigma_color, sigma_spatial,
    borderType=cv2.BORDER_REFLECT_101)`` on float32 images to about 1e-6 (and likewise
    ``reflect``, ``nearest``, ``wrap``, ``constant`` with ``BORDER_REFLECT``,
    ``BORDER_REPLICATE``, ``BORDER_WRAP``, ``BORDER_CONSTANT`` and ``cval=0``).

    Parameters
    ----------
    image : array, shape (..., H, W)
        Real image; leading axes are a batch.
    sigma_color : float
        Range standard deviation (in intensity units), > 0.
    sigma_spatial : float
        Spatial standard deviation in pixels, > 0.
    win_size : int, optional
        Odd window diameter >= 3; the disk has radius ``win_size // 2``.
    mode : str
        Boundary mode for neighbours outside the image (SciPy names; ``"mirror"`` is
        OpenCV's default ``BORDER_REFLECT_101``).
    cval : float
        Fill value of the constant modes.
    channel_axis : int, optional
        Axis of colour channels; the spatial axes are the last two of the remaining axes.
        Channels share the weights.

    Returns
    -------
    array, same shape as ``image``, on its backend, in its float dtype.

    Notes
    -----
    NaN propagates to every output whose window holds it.

    Backend notes: the CUDA kernel stages a tile of the image (plus a halo of ``r`` pixels)
    in shared memory per 16x16 block and accumulates in the image dtype, as OpenCV does.

    References
    ----------
    C. Tomasi and R. Manduchi, "Bilateral filtering for gray and color images", ICCV 1998.
    """
    check_array("image", image, min_ndim=2)
    check_positive("sigma_color", sigma_color)
    check_positive("sigma_spatial", sigma_spatial)
    if win_size is None:
        radius = max(int(round(1.5 * float(sigma_spatial))), 1)
    else:
        radius = check_odd_window("win_size", win_size, minimum=3) // 2
    check_mode(mode)
    check_real("cval", cval)
    ch = _channel_axis("channel_axis", channel_axis, image.ndim)

    be = get_backend(image, names=("image",))
    x = to_float(image, be.xp)
    xb, back = _to_bchw(x, be.xp, ch)
    dy, dx = np.mgrid[-radius:radius + 1, -radius:radius + 1]
    space = np.exp((dy * dy + dx * dx) * (-0.5 / float(sigma_spatial) ** 2)).astype(xb.dtype)
    color_coeff = -0.5 / float(sigma_color) ** 2
    out = be.bilateral(xb, space, radius, color_coeff, mode, float(cval))
    return back(out)


def nl_means(image, *, patch_size: int = 7, patch_distance: int = 11, h: float,
             sigma: float = 0.0, fast_mode: bool = True, channel_axis: int | None = None):
    r"""Non-local means denoising, equal to :func:`skimage.restoration.denoise_nl_means`.

    Each pixel becomes the weighted mean of the pixels :math:`q` within
    ``patch_distance`` of it (a square search window), weighted by the similarity of the
    patches around :math:`p` and :math:`q`:

    .. math::

        y_p = \frac{\sum_q w_{pq} x_q}{\sum_q w_{pq}}, \qquad
        w_{pq} = \exp\big(-\max(d_{pq}, 0)\big)\,[d_{pq} \le 5].

    ``fast_mode=True`` (Darbon et al.; Froment): :math:`d_{pq} = \frac{1}{C h^2 s^2}
    \sum_{x \in B} \big(\sum_c (x_{c, p+x} - x_{c, q+x})^2 - 2 C \sigma^2\big)` with
    :math:`B` the :math:`(s-1)^2` block of offsets in :math:`(-s/2, s/2]^2`, the image
    extended by whole-sample reflection. ``fast_mode=False`` (Buades et al.): a Gaussian
    patch weighting (standard deviation :math:`(s-1)/4`), neighbours restricted to the image,
    and the patch sum abandoned once it exceeds 5 at the start of a patch row. The
    exponential is Schraudolph's approximation, exactly as scikit-image evaluates it, so the
    results agree with scikit-image to ~1e-6 (2-D, grey or with channels).

    Parameters
    ----------
    image : array, shape (..., H, W)
        Real image; leading axes are a batch.
    patch_size : int
        Odd patch width :math:`s` >= 3.
    patch_distance : int
        Search radius in pixels, >= 1.
    h : float
        Cut-off distance in grey levels, > 0 (about the noise standard deviation).
    sigma : float
        Noise standard deviation, >= 0; its expected contribution is subtracted from the
        patch distances.
    fast_mode : bool
        Integral-image (box) patch distance instead of the Gaussian-weighted one.
    channel_axis : int, optional
        Axis of channels (compared jointly); the spatial axes are the last two of the
        remaining axes.

    Returns
    -------
    array, same shape as ``image``, on its backend, in its float dtype.

    Notes
    -----
    NaN propagates to every output whose search window holds it.

    Backend notes: the NumPy twin loops over search offsets (half of them, by symmetry, in
    fast mode) with whole-image array operations, split over ``GPUIMG_NUM_THREADS``
    threads (default: the CPU count); the CUDA kernels compute one pixel per thread. Both accumulate in float32 for float32 images (scikit-image uses float64 in
    fast mode), which changes results by ~1e-6.

    References
    ----------
    A. Buades, B. Coll and J.-M. Morel, "A non-local algorithm for image denoising",
    CVPR 2005. J. Darbon et al., "Fast nonlocal filtering applied to electron
    cryomicroscopy", ISBI 2008. J. Froment, "Parameter-free fast pixelwise non-local means
    denoising", IPOL 4 (2014).
    """
    check_array("image", image, min_ndim=2)
    s = check_odd_window("patch_size", patch_size, minimum=3)
    if isinstance(patch_distance, bool) or not isinstance(patch_distance, numbers.Integral):
        raise TypeError(f"patch_distance must be an integer, got {patch_distance!r}")
    if patch_distance < 1:
        raise ValueError(f"patch_distance must be >= 1, got {patch_distance!r}")
    check_positive("h", h)
    check_positive("sigma", sigma, strict=False)
    check_bool("fast_mode", fast_mode)
    ch = _channel_axis("channel_axis", channel_axis, image.ndim)

    be = get_backend(image, names=("image",))
    x = to_float(image, be.xp)
    xb, back = _to_bchw(x, be.xp, ch)
    prim = be.nl_means_fast if fast_mode else be.nl_means_classic
    out = prim(xb, s, int(patch_distance), float(h), float(sigma) ** 2)
    return back(out)
