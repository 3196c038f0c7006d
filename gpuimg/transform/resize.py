"""Separable resizing: OpenCV's and Pillow's kernels, and OpenCV's Gaussian pyramid steps.

Every method is a pair of 1-D resampling tables (see ``gpuimg.transform._tables``) applied
along rows and columns by the primitive ``resample_axis`` (a sparse weight-matrix product on
the CPU, a tap-gathering CUDA kernel on the GPU), so a batch is resized in one pass per axis.
"""

from __future__ import annotations

import functools

import numpy as np

from gpuimg import _validate
from gpuimg._backend import get_backend
from gpuimg.transform import _tables
from gpuimg.transform._layout import check_output_shape, layout, spatial_shape

__all__ = ["pyr_down", "pyr_up", "resize"]

INTERPOLATIONS = ("area", "nearest", "linear", "cubic", "lanczos4", "box", "lanczos3")
_POINT = {
    "nearest": _tables.opencv_nearest,
    "linear": _tables.opencv_linear,
    "cubic": _tables.opencv_cubic,
    "lanczos4": _tables.opencv_lanczos4,
}


def _tables_for(interpolation, antialias, mode, shape, out_shape):
    """The (row, column) tap tables, built once per distinct call and frozen (read-only), so
    the GPU twin can keep its device copies (``_prims/resample.py``)."""
    return _build_tables(interpolation, bool(antialias), mode, tuple(int(n) for n in shape),
                         tuple(int(n) for n in out_shape))


@functools.lru_cache(maxsize=64)
def _build_tables(interpolation, antialias, mode, shape, out_shape):
    tables = _tables_uncached(interpolation, antialias, mode, shape, out_shape)
    for idx, wts in tables:
        idx.setflags(write=False)
        wts.setflags(write=False)
    return tables


def _tables_uncached(interpolation, antialias, mode, shape, out_shape):
    (h, w), (ho, wo) = shape, out_shape
    if interpolation == "area":
        if h >= ho and w >= wo:
            return [_tables.opencv_area(n, m, mode) for n, m in ((h, ho), (w, wo))]
        return [_tables.opencv_linear(n, m, mode, area_mode=True) for n, m in ((h, ho), (w, wo))]
    if interpolation in ("box", "lanczos3") or (antialias and interpolation in ("linear", "cubic")):
        if not antialias:
            return [_unscaled_pillow(n, m, interpolation, mode) for n, m in ((h, ho), (w, wo))]
        return [_tables.pillow(n, m, interpolation, mode) for n, m in ((h, ho), (w, wo))]
    return [_POINT[interpolation](n, m, mode) for n, m in ((h, ho), (w, wo))]


def _unscaled_pillow(n_in, n_out, method, mode):
    """Pillow's filter sampled at the source rate (no widening): a plain point kernel."""
    fn, support = _tables.PILLOW_FILTERS[method]
    scale = n_in / n_out
    center = (np.arange(n_out) + 0.5) * scale
    taps = int(np.ceil(support)) * 2 + 1
    src = np.trunc(center - support + 0.5).astype(np.int64)[:, None] + np.arange(taps)
    wts = fn(src - center[:, None] + 0.5)
    wts = wts / np.where(wts.sum(1, keepdims=True) == 0, 1.0, wts.sum(1, keepdims=True))
    return _tables._finish(src, wts, n_in, mode if mode is not None else "nearest")


def _separable(be, image, channel_axis, tables, sizes):
    """Apply (row table, column table) to ``image``; identity tables are skipped."""
    lay = layout(image, channel_axis)
    x = lay.to_batch(be.xp, image)
    h, w = x.shape[1:]
    passes = [(-2, tables[0], sizes[0] / h), (-1, tables[1], sizes[1] / w)]
    passes.sort(key=lambda p: p[2])  # shrink first: the second pass reads less
    source = x
    for axis, (idx, wts), _ in passes:
        if not _is_identity(idx, wts, x.shape[axis]):
            x = be.resample_axis(x, idx, wts, axis)
    if x is source:  # both passes were identities: a new array, never a view of the input
        x = x.copy()
    return lay.from_batch(be.xp, x)


def _is_identity(idx, wts, n_in):
    n = idx.shape[0]
    if n != n_in:
        return False
    nz = wts != 0
    if not (nz.sum(axis=1) == 1).all():
        return False
    sel = nz.argmax(axis=1)
    rows = np.arange(n)
    return bool(np.array_equal(idx[rows, sel], rows) and (wts[rows, sel] == 1.0).all())


def resize(image, output_shape, *, interpolation="area", antialias=True, mode=None,
           channel_axis=None):
    """Resize to ``output_shape`` = (rows, cols) with OpenCV- or Pillow-exact kernels.

    Parameters
    ----------
    image : array, shape (..., H, W)
        Leading axes are a batch resized in one pass (or give ``channel_axis``).
    output_shape : (rows, cols)
        Positive output size.
    interpolation : {"area", "nearest", "linear", "cubic", "lanczos4", "box", "lanczos3"}
        - ``"area"``: OpenCV's ``INTER_AREA``. Shrinking along both axes, output sample
          ``d`` averages the source interval ``[d s, (d + 1) s)`` (``s = n_in / n_out``)
          with exact overlap fractions; otherwise OpenCV's area-linear weights
          (``f = (d + 1) - (floor(d s) + 1) / s``, fractional part) on both axes.
        - ``antialias=False``: ``"nearest"`` (``floor(d s)``), ``"linear"``, ``"cubic"``
          (Keys a = -0.75) and ``"lanczos4"`` (8-tap normalised Lanczos) equal
          ``cv2.resize`` with ``INTER_NEAREST``/``LINEAR``/``CUBIC``/``LANCZOS4``: source
          position ``(d + 1/2) s - 1/2`` and replicated edges.
        - ``antialias=True``: ``"box"``, ``"linear"`` (triangle), ``"cubic"`` (Keys
          a = -0.5) and ``"lanczos3"`` are Pillow's ``Image.resize`` filters: centred at
          ``(d + 1/2) s``, support widened by ``max(s, 1)`` so a reduction low-passes
          first, taps outside dropped and the rest renormalised.
    antialias : bool
        Selects the Pillow (True) or OpenCV (False) kernels above; ignored by ``"area"``
        and ``"nearest"``. ``"lanczos4"`` is a point kernel and requires ``False``.
    mode : str or None
        ``None`` keeps each reference's edge rule (OpenCV: replicate; Pillow: drop and
        renormalise). A SciPy mode name extends the source that way instead (the constant
        modes extend with zeros).
    channel_axis : int, optional
        Axis of ``image`` holding channels.

    Returns
    -------
    array
        Shape ``(..., rows, cols)``; float keeps its dtype, integers are rounded and
        saturated back to their dtype once, at the end (OpenCV's 8-bit fixed-point paths
        may differ by 1; Pillow's 8-bit path rounds and clips between its horizontal and
        vertical passes, so its ``"cubic"``/``"lanczos3"`` overshoots differ near sharp
        edges, by up to tens of levels on a step; its float mode ``"F"`` is the reference).

    Notes
    -----
    Backend notes: both twins accumulate in the image's float dtype (float32 for float32 and
    8/16-bit input), the CPU through sparse weight-matrix products, the GPU by gathering
    taps; results agree to rounding. NaN spreads to the outputs whose taps read it.

    References
    ----------
    OpenCV ``modules/imgproc/src/resize.cpp``; Pillow ``src/libImaging/Resample.c``.
    """
    be = get_backend(image, names=("image",))
    _validate.check_choice("interpolation", interpolation, INTERPOLATIONS)
    antialias = _validate.check_bool("antialias", antialias)
    if interpolation == "lanczos4" and antialias:
        raise ValueError("antialias must be False for interpolation='lanczos4' (use 'lanczos3' for "
                         "the anti-aliased Lanczos filter), got antialias=True")
    if mode is not None:
        _validate.check_mode(mode)
    layout(image, channel_axis)
    out_shape = check_output_shape(output_shape)
    shape = spatial_shape(image, channel_axis)
    tables = _tables_for(interpolation, bool(antialias), mode, shape, out_shape)
    return _separable(be, image, channel_axis, tables, out_shape)


def pyr_down(image, *, channel_axis=None):
    """One Gaussian pyramid reduction, equal to ``cv2.pyrDown``.

    Smooths with the separable 5-tap kernel ``[1, 4, 6, 4, 1] / 16`` (reflect-101 border,
    SciPy ``mirror``) and keeps every second sample: output ``((H + 1) // 2, (W + 1) // 2)``.

    References
    ----------
    P. Burt and E. Adelson, "The Laplacian pyramid as a compact image code", IEEE Trans.
    Communications 31(4), 1983.
    """
    be = get_backend(image, names=("image",))
    layout(image, channel_axis)
    h, w = spatial_shape(image, channel_axis)
    out = ((h + 1) // 2, (w + 1) // 2)
    return _separable(be, image, channel_axis, [_tables.pyr_down_taps(h), _tables.pyr_down_taps(w)], out)


def pyr_up(image, *, channel_axis=None):
    """One Gaussian pyramid expansion, equal to ``cv2.pyrUp``: output ``(2 H, 2 W)``.

    Inserts zeros between samples and smooths with ``[1, 4, 6, 4, 1] / 8`` per axis: even
    outputs ``(x[k-1] + 6 x[k] + x[k+1]) / 8``, odd outputs ``(x[k] + x[k+1]) / 2``; the
    left border is mirrored (reflect-101) and the last sample repeats on the right, as in
    OpenCV.
    """
    be = get_backend(image, names=("image",))
    layout(image, channel_axis)
    h, w = spatial_shape(image, channel_axis)
    return _separable(be, image, channel_axis, [_tables.pyr_up_taps(h), _tables.pyr_up_taps(w)], (2 * h, 2 * w))
