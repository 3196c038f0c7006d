"""B-spline interpolation of any order (0-5) with scipy.ndimage's semantics, on NumPy or CuPy.

An image ``f`` is represented by coefficients ``c`` of the degree-``n`` B-spline ``beta_n``,

.. math:: f(\\mathbf{x}) = \\sum_{\\mathbf{k}} c_{\\mathbf{k}} \\prod_a \\beta_n(x_a - k_a),

chosen so that the spline interpolates the samples (``spline_filter``, the direct B-spline
transform: a gain and one causal/anti-causal recursive pair per pole, Unser, Aldroubi & Eden,
IEEE PAMI 13(3):277-285, 1991; Unser, IEEE SPM 16(6):22-38, 1999). ``map_coordinates`` then
evaluates the spline at arbitrary points; ``zoom``, ``shift`` and ``affine_transform`` build
the points for common geometric maps.

Boundary modes are SciPy's: the prefilter initialises each recursion exactly for the
extension the mode implies (mirror, half-sample reflect, periodic), ``nearest`` and
``grid-constant`` pre-pad the image by 12 samples as SciPy does, and the sampler folds
coordinates and taps like ``scipy.ndimage`` (``constant`` returns ``cval`` outside
``[0, n-1]``; ``grid-constant`` interpolates towards ``cval``; ``wrap`` has period ``n-1``,
``grid-wrap`` period ``n``). Results equal ``scipy.ndimage`` to rounding in float64.

Images are ``(..., *spatial)``: leading axes are a batch that shares the coordinates. The
number of spatial axes is ``coordinates.shape[0]`` (1-3) for ``map_coordinates``, the length
of a ``zoom``/``shift`` sequence or the matrix size for ``affine_transform``; a scalar
``zoom``/``shift`` applies to the last two axes (the image plane).

Backend notes: on NumPy the prefilter and the sampler are scipy.ndimage's compiled loops run
on chunks of lines/points in a thread pool (``GPUIMG_NUM_THREADS``); on CuPy they are the
kernels ``spline_prefilter.cu`` (a two-level scan over segments of each line, coalesced
through shared-memory tiles along the contiguous axis) and ``spline_sample.cu`` (one thread per
output point, weights reused across the batch), computing in the coefficient dtype.
``zoom``, ``shift`` and diagonal ``affine_transform`` sample on a tensor grid: on NumPy as one
sparse tap-weight matrix per axis (the spline and the boundary rules are separable).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

from gpuimg import _boundary
from gpuimg._backend import get_backend
from gpuimg._validate import (
    check_array,
    check_mode,
    check_real,
    float_dtype,
    unwrap_scalar,
)

__all__ = ["affine_transform", "map_coordinates", "shift", "spline_filter", "zoom"]

#: Samples SciPy pre-pads for modes whose prefilter has no exact boundary rule.
PREPAD = 12


def _check_order(order: Any) -> int:
    if isinstance(order, bool) or not isinstance(order, numbers.Integral) or not 0 <= order <= 5:
        raise ValueError(f"order must be an integer in 0..5, got {order!r}")
    return int(order)


def _coef_dtype(image_dtype, coefficient_dtype) -> np.dtype:
    if coefficient_dtype is None:
        return float_dtype(image_dtype)
    dt = np.dtype(coefficient_dtype)
    if dt not in (np.float32, np.float64):
        raise ValueError(f"coefficient_dtype must be float32 or float64, got {coefficient_dtype!r}")
    return dt


def _prefilter(be, x, order: int, mode: str, cval: float, nspatial: int, dtype) -> tuple[Any, int]:
    """Coefficients of the last ``nspatial`` axes of ``x`` (pre-padded where SciPy pads)."""
    xp = be.xp
    x = xp.asarray(x, dtype=dtype)
    if order < 2:
        return x, 0
    npad = 0
    if mode in ("nearest", "grid-constant"):
        npad = PREPAD
        width = [(0, 0)] * (x.ndim - nspatial) + [(npad, npad)] * nspatial
        x = _boundary.pad(x, width, mode, cval, xp)
    for axis in range(x.ndim - nspatial, x.ndim):
        x = be.spline_prefilter(x, axis, order, mode)
    return x, npad


def spline_filter(image, *, order: int = 3, mode: str = "mirror", axes: Sequence[int] | None = None,
                  coefficient_dtype=None):
    """Interpolating B-spline coefficients of ``image`` (the direct B-spline transform).

    Parameters
    ----------
    image : array, (..., *spatial)
    order : int in 2..5 (0 and 1 return a float copy)
    mode : str
        SciPy boundary mode; it selects the exact initialisation of the recursions (mirror
        for mirror/constant/wrap/grid-constant, half-sample reflect for reflect/nearest,
        periodic for grid-wrap), as ``scipy.ndimage.spline_filter``.
    axes : sequence of int, optional
        Axes to filter; default all axes of a 1-D or 2-D image, else the last two.
    coefficient_dtype : {None, float32, float64}
        Dtype of the coefficients; default the image's float dtype.

    Returns
    -------
    array of the image's shape; equals ``scipy.ndimage.spline_filter(image, order, mode=mode)``
    for 1-D and 2-D images.
    """
    be = get_backend(image, names=("image",))
    check_array("image", image)
    order = _check_order(order)
    check_mode(mode)
    dtype = _coef_dtype(image.dtype, coefficient_dtype)
    x = be.xp.asarray(image, dtype=dtype)
    if axes is None:
        axes = tuple(range(max(0, x.ndim - 2), x.ndim))
    else:
        axes = tuple(axes)
        for a in axes:
            if not isinstance(a, numbers.Integral) or not -x.ndim <= a < x.ndim:
                raise ValueError(f"axes must be axes of image (ndim {x.ndim}), got {axes!r}")
    if order < 2:
        return x.copy()
    for a in axes:
        x = be.spline_prefilter(x, a % x.ndim, order, mode)
    return x


def _sample(be, coeffs, coords, order, mode, cval, npad, nspatial, out_dtype):
    """Evaluate coefficients ``(..., *spatial)`` at ``coords`` (d, *out_shape)."""
    xp = be.xp
    batch_shape = coeffs.shape[: coeffs.ndim - nspatial]
    out_shape = coords.shape[1:]
    c = coeffs.reshape((-1,) + coeffs.shape[coeffs.ndim - nspatial:])
    flat = coords.reshape(nspatial, -1)
    vals = be.spline_sample(c, flat, order, mode, cval, float(npad))
    return xp.asarray(vals.reshape(batch_shape + out_shape), dtype=out_dtype)


def map_coordinates(image, coordinates, *, order: int = 3, mode: str = "constant", cval: float = 0.0,
                    prefilter: bool = True, coefficient_dtype=None):
    """Value of the order-``order`` B-spline interpolant of ``image`` at ``coordinates``.

    Parameters
    ----------
    image : array, (..., *spatial)
        ``d = coordinates.shape[0]`` trailing axes are interpolated; leading axes are a batch.
    coordinates : array, (d, *out_shape), d in 1..3
        Sample positions in pixel units (pixel centres at integers), axis order as ``image``.
    order : int in 0..5
    mode : str
        SciPy boundary mode (see the module notes); default ``"constant"``.
    cval : float
        Fill value of the constant modes.
    prefilter : bool
        Compute the interpolating coefficients first (True) or take ``image`` as
        coefficients already (False, e.g. the output of :func:`spline_filter`).
    coefficient_dtype : {None, float32, float64}
        Dtype of the coefficients; float32 halves the memory traffic of the sampler.

    Returns
    -------
    array, (..., *out_shape), the image's float dtype. Equal to
    ``scipy.ndimage.map_coordinates`` (to rounding, float64 coefficients).
    """
    be = get_backend(image, coordinates, names=("image", "coordinates"))
    check_array("image", image)
    coords = be.xp.asarray(coordinates)
    check_array("coordinates", coords, min_ndim=1)
    if coords.dtype.kind not in "iuf":
        raise TypeError(f"coordinates must be real, got dtype {coords.dtype}")
    d = coords.shape[0]
    if not 1 <= d <= min(3, image.ndim):
        raise ValueError(
            f"coordinates must have a leading size in 1..{min(3, image.ndim)} (spatial axes of image "
            f"{tuple(image.shape)}), got shape {tuple(coords.shape)}"
        )
    order = _check_order(order)
    check_mode(mode)
    cval = check_real("cval", cval)
    out_dtype = float_dtype(image.dtype)
    cdt = _coef_dtype(image.dtype, coefficient_dtype)
    if prefilter:
        coeffs, npad = _prefilter(be, image, order, mode, cval, d, cdt)
    else:
        coeffs, npad = be.xp.asarray(image, dtype=cdt), 0
    if coords.dtype.kind != "f":
        coords = coords.astype(np.float64)
    return _sample(be, coeffs, coords, order, mode, cval, npad, d, out_dtype)


def _spatial_params(name: str, value, ndim: int) -> np.ndarray:
    value = unwrap_scalar(value)  # a 0-d NumPy or CuPy array, as SciPy takes it
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        value = float(value)
        if not np.isfinite(value):
            raise ValueError(f"{name} must be finite, got {value!r}")
        return np.full(min(2, ndim), value)
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim != 1 or not 1 <= arr.size <= min(3, ndim):
        raise ValueError(f"{name} must be a number or a sequence of 1..{min(3, ndim)} numbers, got {value!r}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return arr


def _grid_coordinates(be, axes_coords: list[np.ndarray]):
    """``(d, *shape)`` coordinate array from one 1-D coordinate vector per axis (float64)."""
    xp = be.xp
    vecs = [xp.asarray(v, dtype=np.float64) for v in axes_coords]
    return xp.stack(xp.meshgrid(*vecs, indexing="ij"))


def _sample_grid(be, image, axes_coords: list[np.ndarray], order, mode, cval, prefilter):
    """Spline of ``image`` on the tensor grid of one coordinate vector per trailing axis."""
    order = _check_order(order)
    check_mode(mode)
    cval = check_real("cval", cval)
    d = len(axes_coords)
    out_dtype = float_dtype(image.dtype)
    if prefilter:
        coeffs, npad = _prefilter(be, image, order, mode, cval, d, out_dtype)
    else:
        coeffs, npad = be.xp.asarray(image, dtype=out_dtype), 0
    batch_shape = coeffs.shape[: coeffs.ndim - d]
    c = coeffs.reshape((-1,) + coeffs.shape[coeffs.ndim - d:])
    vals = be.spline_sample_grid(c, axes_coords, order, mode, cval, float(npad))
    return be.xp.asarray(vals.reshape(batch_shape + vals.shape[1:]), dtype=out_dtype)


def zoom(image, zoom, *, order: int = 3, mode: str = "constant", cval: float = 0.0,
         prefilter: bool = True, grid_mode: bool = False):
    """Resample ``image`` by ``zoom`` with B-spline interpolation (as ``scipy.ndimage.zoom``).

    The output has ``round(n * zoom)`` samples per axis; output index ``k`` reads input
    position ``k (n - 1) / (m - 1)`` (``grid_mode=False``, corner pixel centres aligned) or
    ``(k + 0.5) n / m - 0.5`` (``grid_mode=True``, pixel edges aligned).

    Parameters
    ----------
    image : array, (..., *spatial)
    zoom : float or sequence of float
        A number zooms the last two axes; a sequence zooms that many trailing axes.
    order, mode, cval, prefilter : as :func:`map_coordinates`.
    grid_mode : bool
    """
    be = get_backend(image, names=("image",))
    check_array("image", image)
    z = _spatial_params("zoom", zoom, image.ndim)
    if np.any(z <= 0):
        raise ValueError(f"zoom must be > 0, got {zoom!r}")
    order = _check_order(order)
    check_mode(mode)
    cval = check_real("cval", cval)
    d = z.size
    spatial = tuple(image.shape[image.ndim - d:])
    out_spatial = tuple(round(float(n) * float(f)) for n, f in zip(spatial, z))
    if any(n < 1 for n in out_spatial):
        raise ValueError(f"zoom gives an empty output shape {out_spatial} for image shape {tuple(image.shape)}")
    out_dtype = float_dtype(image.dtype)
    if np.all(z == 1) and prefilter:
        return be.xp.asarray(image, dtype=out_dtype).copy()
    vecs = []
    for n, m in zip(spatial, out_spatial):
        k = np.arange(m, dtype=np.float64)
        num, den = (n, m) if grid_mode else (n - 1, m - 1)
        f = num / den if den != 0 else 1.0
        vecs.append((k + 0.5) * f - 0.5 if grid_mode else k * f)
    return _sample_grid(be, image, vecs, order, mode, cval, prefilter)


def shift(image, shift, *, order: int = 3, mode: str = "constant", cval: float = 0.0, prefilter: bool = True):
    """Translate ``image`` by ``shift`` pixels: ``out[k] = f(k - shift)`` (``scipy.ndimage.shift``).

    A number shifts the last two axes; a sequence gives one shift per trailing axis.
    """
    be = get_backend(image, names=("image",))
    check_array("image", image)
    s = _spatial_params("shift", shift, image.ndim)
    spatial = tuple(image.shape[image.ndim - s.size:])
    return _sample_grid(be, image, [np.arange(n, dtype=np.float64) - si for n, si in zip(spatial, s)],
                        order, mode, cval, prefilter)


def affine_transform(image, matrix, *, offset=0.0, output_shape: Sequence[int] | None = None,
                     order: int = 3, mode: str = "constant", cval: float = 0.0, prefilter: bool = True):
    """Pull-back affine resampling: ``out[o] = f(matrix @ o + offset)`` (``scipy.ndimage.affine_transform``).

    Parameters
    ----------
    matrix : array
        ``(d,)`` (diagonal), ``(d, d)``, ``(d, d + 1)`` (offset in the last column) or
        ``(d + 1, d + 1)`` homogeneous; ``d`` in 1..3 trailing axes of ``image`` are
        transformed. A 3x3 or 4x4 matrix whose last row is ``[0, ..., 0, 1]`` is read as
        homogeneous (2-D or 3-D); give a 3-D linear map with that last row as ``(3, 4)``.
    offset : float or sequence of d floats
    output_shape : sequence of d ints, optional (default the spatial shape)
    """
    be = get_backend(image, names=("image",))
    check_array("image", image)
    mat = np.asarray(be.to_numpy(matrix), dtype=np.float64)
    if mat.ndim not in (1, 2) or mat.shape[0] < 1:
        raise ValueError(f"matrix must be 1-D or 2-D, got shape {mat.shape}")
    off = None
    if mat.ndim == 1:
        d = mat.size
    elif mat.shape[1] == mat.shape[0] + 1:
        d = mat.shape[0]
        off, mat = mat[:, d], mat[:, :d]
    elif mat.shape[0] == mat.shape[1] and mat.shape[0] in (3, 4) and np.array_equal(mat[-1], np.eye(mat.shape[0])[-1]):
        d = mat.shape[0] - 1
        off, mat = mat[:d, d], mat[:d, :d]
    elif mat.shape[0] == mat.shape[1]:
        d = mat.shape[0]
    else:
        raise ValueError(f"matrix must be (d,), (d, d), (d, d + 1) or (d + 1, d + 1), got shape {mat.shape}")
    if not 1 <= d <= min(3, image.ndim):
        raise ValueError(f"matrix shape {np.shape(matrix)} does not fit image shape {tuple(image.shape)}")
    if off is None:
        off = np.broadcast_to(np.asarray(offset, dtype=np.float64), (d,)).copy()
    spatial = tuple(image.shape[image.ndim - d:])
    out_spatial = tuple(int(n) for n in (output_shape if output_shape is not None else spatial))
    if len(out_spatial) != d or any(n < 1 for n in out_spatial):
        raise ValueError(f"output_shape must have {d} positive sizes, got {output_shape!r}")
    if mat.ndim == 1 or np.count_nonzero(mat - np.diag(np.diag(mat))) == 0:
        diag = mat if mat.ndim == 1 else np.diag(mat)
        vecs = [np.arange(n, dtype=np.float64) * a + o for n, a, o in zip(out_spatial, diag, off)]
        return _sample_grid(be, image, vecs, order, mode, cval, prefilter)
    xp = be.xp
    grid = _grid_coordinates(be, [np.arange(n, dtype=np.float64) for n in out_spatial])
    # SciPy's order of operations (the offset, then m_ij x_j for j = 0, 1, ...): a point
    # that lands exactly on the last sample there must not land a rounding step outside here
    coords = xp.empty(grid.shape, dtype=np.float64)
    for i in range(d):
        acc = float(off[i]) + float(mat[i, 0]) * grid[0]
        for j in range(1, d):
            acc += float(mat[i, j]) * grid[j]
        coords[i] = acc
    return map_coordinates(image, coords, order=order, mode=mode, cval=cval, prefilter=prefilter)
