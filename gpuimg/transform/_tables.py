"""Separable resampling tables: per output sample, source indices and weights along one axis.

Every table is ``(idx, w)`` with shape (n_out, taps): ``out[k] = sum_t w[k, t] * in[idx[k, t]]``,
indices already inside ``[0, n_in)`` (boundary rules applied) and zero weights for unused
taps. Tables are small host arrays built in float64; the primitive ``resample_axis`` applies
them on either backend.

The OpenCV tables follow ``cv::resize`` (modules/imgproc/src/resize.cpp): source position
``(d + 1/2) * scale - 1/2`` in single precision, edge taps replicated, ``INTER_AREA`` exact
overlap fractions (``computeResizeAreaTab``) when shrinking along both axes and OpenCV's
area-linear weights otherwise. The Pillow tables follow ``precompute_coeffs`` in Pillow's
``libImaging/Resample.c``: the filter support scales with the reduction factor and taps that
fall outside are dropped and the rest renormalised.
"""

from __future__ import annotations

import numpy as np

from gpuimg import _boundary
from gpuimg._prims.warp import keys_cubic, lanczos4_weights

_F32 = np.float32


def _finish(idx, w, n_in, mode):
    """Apply a boundary mode to raw indices; constant-mode taps outside get zero weight."""
    if mode is None:
        mode = "nearest"
    j = _boundary.index(idx, n_in, mode)
    w = np.where(j < 0, 0.0, w)
    return np.maximum(j, 0).astype(np.int64), w.astype(np.float64)


def opencv_scale(n_in, n_out):
    """OpenCV's ``(scale, inv_scale)`` for one axis (double precision, like cv::resize)."""
    inv = n_out / n_in
    return 1.0 / inv, inv


def opencv_nearest(n_in, n_out, mode=None):
    scale, _ = opencv_scale(n_in, n_out)
    d = np.arange(n_out)
    src = np.minimum(np.floor(d * scale).astype(np.int64), n_in - 1)
    return _finish(src[:, None], np.ones((n_out, 1)), n_in, mode)


def _opencv_position(n_in, n_out, area_mode):
    scale, inv = opencv_scale(n_in, n_out)
    d = np.arange(n_out, dtype=np.float64)
    if not area_mode:
        f = ((d + 0.5) * scale - 0.5).astype(_F32)
        sx = np.floor(f).astype(np.int64)
        return sx, (f - sx.astype(_F32)).astype(_F32)
    sx = np.floor(d * scale).astype(np.int64)
    f = ((d + 1) - (sx + 1) * inv).astype(_F32)
    f = np.where(f <= 0, _F32(0), f - np.floor(f)).astype(_F32)
    return sx, f


def opencv_linear(n_in, n_out, mode=None, *, area_mode=False):
    """``INTER_LINEAR`` taps (``area_mode``: the ``INTER_AREA`` weights used when enlarging)."""
    sx, f = _opencv_position(n_in, n_out, area_mode)
    low = sx < 0
    high = sx >= n_in - 1
    f = np.where(low | high, _F32(0), f)
    sx = np.where(low, 0, np.where(high, n_in - 1, sx))
    idx = sx[:, None] + np.arange(2)
    w = np.stack([_F32(1) - f, f], axis=-1).astype(np.float64)
    return _finish(idx, w, n_in, mode)


def opencv_cubic(n_in, n_out, mode=None):
    sx, f = _opencv_position(n_in, n_out, False)
    idx = sx[:, None] + np.arange(-1, 3)
    w = keys_cubic(f.astype(np.float64)[:, None] + 1.0 - np.arange(4)).astype(_F32)
    return _finish(idx, w.astype(np.float64), n_in, mode)


def opencv_lanczos4(n_in, n_out, mode=None):
    sx, f = _opencv_position(n_in, n_out, False)
    idx = sx[:, None] + np.arange(-3, 5)
    w = lanczos4_weights(f.astype(np.float64)).astype(_F32)
    return _finish(idx, w.astype(np.float64), n_in, mode)


def opencv_area(n_in, n_out, mode=None):
    """Exact overlap fractions of ``computeResizeAreaTab`` (requires ``n_in >= n_out``)."""
    scale, _ = opencv_scale(n_in, n_out)
    d = np.arange(n_out, dtype=np.float64)
    fs1 = d * scale
    fs2 = fs1 + scale
    cell = np.minimum(scale, n_in - fs1)
    s2 = np.minimum(np.floor(fs2).astype(np.int64), n_in - 1)
    s1 = np.minimum(np.ceil(fs1).astype(np.int64), s2)
    taps = int(np.ceil(scale)) + 2
    src = s1[:, None] - 1 + np.arange(taps)
    head = (src == (s1 - 1)[:, None]) & ((s1 - fs1) > 1e-3)[:, None]
    body = (src >= s1[:, None]) & (src < s2[:, None])
    tail = (src == s2[:, None]) & ((fs2 - s2) > 1e-3)[:, None]
    w_head = ((s1 - fs1) / cell).astype(_F32)
    w_body = (1.0 / cell).astype(_F32)
    w_tail = (np.minimum(np.minimum(fs2 - s2, 1.0), cell) / cell).astype(_F32)
    w = np.where(head, w_head[:, None], 0.0) + np.where(body, w_body[:, None], 0.0)
    w = w + np.where(tail, w_tail[:, None], 0.0)
    return _finish(np.clip(src, 0, n_in - 1), w, n_in, mode)


# Pillow's filters and their supports (libImaging/Resample.c)
def _box(x):
    return ((x > -0.5) & (x <= 0.5)).astype(np.float64)


def _triangle(x):
    return np.maximum(1.0 - np.abs(x), 0.0)


def _bicubic(x):
    return keys_cubic(x, a=-0.5)


def _lanczos3(x):
    return np.where((x >= -3.0) & (x < 3.0), np.sinc(x) * np.sinc(x / 3.0), 0.0)


PILLOW_FILTERS = {
    "box": (_box, 0.5),
    "linear": (_triangle, 1.0),
    "cubic": (_bicubic, 2.0),
    "lanczos3": (_lanczos3, 3.0),
}


def pillow(n_in, n_out, method, mode=None):
    """Pillow's anti-aliased taps; ``mode`` replaces its drop-and-renormalise edge rule."""
    fn, support = PILLOW_FILTERS[method]
    scale = n_in / n_out
    fscale = max(scale, 1.0)
    support = support * fscale
    d = np.arange(n_out, dtype=np.float64)
    center = (d + 0.5) * scale
    taps = int(np.ceil(support)) * 2 + 1
    lo = np.trunc(center - support + 0.5).astype(np.int64)
    hi = np.trunc(center + support + 0.5).astype(np.int64)
    if mode is None:
        lo = np.maximum(lo, 0)
        hi = np.minimum(hi, n_in)
    src = lo[:, None] + np.arange(taps)
    w = fn((src - center[:, None] + 0.5) / fscale)
    w = np.where(src < hi[:, None], w, 0.0)
    total = w.sum(axis=1, keepdims=True)
    w = w / np.where(total == 0, 1.0, total)
    return _finish(src, w, n_in, mode)


def pyr_down_taps(n_in):
    """``cv2.pyrDown`` along one axis: [1, 4, 6, 4, 1] / 16 at 2k, reflect-101 border."""
    n_out = (n_in + 1) // 2
    src = 2 * np.arange(n_out)[:, None] + np.arange(-2, 3)
    w = np.broadcast_to(np.array([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0, src.shape)
    return _finish(src, w, n_in, "mirror")


def pyr_up_taps(n_in):
    """``cv2.pyrUp`` along one axis: (1, 6, 1) / 8 at even and (4, 4) / 8 at odd outputs.

    OpenCV mirrors the left border (reflect-101) and repeats the last sample on the right.
    """
    k = np.arange(n_in)
    even_src = k[:, None] + np.arange(-1, 2)
    odd_src = k[:, None] + np.array([0, 1, 1])
    even_w = np.broadcast_to(np.array([1.0, 6.0, 1.0]) / 8.0, even_src.shape)
    odd_w = np.broadcast_to(np.array([4.0, 4.0, 0.0]) / 8.0, odd_src.shape)
    src = np.stack([even_src, odd_src], axis=1).reshape(2 * n_in, 3)
    w = np.stack([even_w, odd_w], axis=1).reshape(2 * n_in, 3)
    src = np.where(src < 0, -src, src)
    src = np.where(src >= n_in, n_in - 1, src)
    return src.astype(np.int64), w.astype(np.float64)
