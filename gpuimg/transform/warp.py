"""Geometric warps: affine, perspective and arbitrary remaps, point-sampled or anti-aliased.

Conventions (OpenCV's): pixel centres sit at integer coordinates, ``x`` is the column and
``y`` the row. Matrices map *source* ``(x, y, 1)`` to *destination* unless ``inverse_map``.

Boundary modes use SciPy's names; each equals an OpenCV border as follows.

==================  =========================  =============================================
mode                OpenCV border              taps outside the image read
==================  =========================  =============================================
``grid-constant``   ``BORDER_CONSTANT``        ``cval``
``constant``        (none)                     ``cval``, and every position outside
                                               ``[0, H-1] x [0, W-1]`` returns ``cval``
                                               (SciPy's ``constant``)
``nearest``         ``BORDER_REPLICATE``       the edge pixel
``reflect``         ``BORDER_REFLECT``         ``d c b a | a b c d | d c b a``
``mirror``          ``BORDER_REFLECT_101``     ``d c b | a b c d | c b a``
``wrap``            ``BORDER_WRAP``            the periodic image (SciPy's ``grid-wrap``;
``grid-wrap``                                  SciPy's legacy ``wrap`` is not reproduced)
==================  =========================  =============================================
"""

from __future__ import annotations


import numpy as np

from gpuimg import _validate
from gpuimg._backend import get_backend
from gpuimg._prims.warp import INTERPOLATIONS, TAP_MODE
from gpuimg.transform._layout import check_cval, check_output_shape, layout, spatial_shape

__all__ = ["RemapPlan", "remap", "warp_affine", "warp_perspective"]

_WARP_INTERPOLATIONS = (*INTERPOLATIONS, "area")


def _check_maps(map_x, map_y):
    """Two real 2-D maps of one shape, which is returned."""
    for name, m in (("map_x", map_x), ("map_y", map_y)):
        _validate.check_array(name, m, ndim=2)
        if np.dtype(m.dtype).kind not in "iuf":
            raise TypeError(f"{name} must be real, got dtype {m.dtype}")
    _validate.check_same_shape("map_x", map_x, "map_y", map_y)
    return tuple(int(s) for s in map_x.shape)


def _check_options(interpolation, mode, antialias, cval, dtype):
    _validate.check_choice("interpolation", interpolation, _WARP_INTERPOLATIONS)
    _validate.check_mode(mode, allowed=tuple(TAP_MODE))
    return check_cval(cval, dtype), _validate.check_bool("antialias", antialias) or interpolation == "area"


def _matrix(matrix, rows, name="matrix"):
    m = np.asarray(matrix)
    if m.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be a real array, got dtype {m.dtype}")
    if m.shape != (rows, 3):
        raise ValueError(f"{name} must have shape ({rows}, 3), got {m.shape}")
    m = m.astype(np.float64)
    if not np.isfinite(m).all():
        raise ValueError(f"{name} must be finite, got {m.tolist()}")
    full = np.vstack([m, [[0.0, 0.0, 1.0]]]) if rows == 2 else m
    scale = np.abs(full).max()
    if scale == 0 or abs(np.linalg.det(full)) <= 1e-12 * scale**3:
        raise ValueError(f"{name} must be invertible, got {m.tolist()}")
    return full


def _widen(a, b, c, d, xp):
    """Jacobian ``[[a, b], [c, d]]`` with every singular value raised to at least 1.

    Returns the entries of ``U max(S, 1) V^T`` for the SVD ``J = U S V^T``: the footprint
    keeps its shape where it covers more than a source pixel and grows to one pixel where
    the warp magnifies (box-over-unit-square coverage is bilinear interpolation there when
    the map does not rotate).
    """
    p = a * a + c * c
    q = a * b + c * d
    r = b * b + d * d
    theta = 0.5 * xp.arctan2(2.0 * q, p - r)
    v1x, v1y = xp.cos(theta), xp.sin(theta)
    half = 0.5 * (p + r)
    disc = xp.sqrt(0.25 * (p - r) ** 2 + q * q)
    s1 = xp.sqrt(xp.maximum(half + disc, 0.0))
    s2 = xp.sqrt(xp.maximum(half - disc, 0.0))
    ok = s1 > 1e-12
    safe = xp.where(ok, s1, 1.0)
    u1x = xp.where(ok, (a * v1x + b * v1y) / safe, 1.0)
    u1y = xp.where(ok, (c * v1x + d * v1y) / safe, 0.0)
    sign = xp.where(a * d - b * c < 0, -1.0, 1.0)
    u2x, u2y = -sign * u1y, sign * u1x
    v2x, v2y = -v1y, v1x
    t1 = xp.maximum(s1, 1.0)
    t2 = xp.maximum(s2, 1.0)
    return (t1 * u1x * v1x + t2 * u2x * v2x, t1 * u1x * v1y + t2 * u2x * v2y,
            t1 * u1y * v1x + t2 * u2y * v2x, t1 * u1y * v1y + t2 * u2y * v2y)


_OFFSETS = ((-0.5, -0.5), (0.5, -0.5), (0.5, 0.5), (-0.5, 0.5))


def _parallelograms(cx, cy, a, b, c, d, xp):
    """Quads ``centre + J (+-1/2, +-1/2)`` (corners in order) of shape (..., 4, 2)."""
    corners = []
    for ox, oy in _OFFSETS:
        corners.append(xp.stack([cx + a * ox + b * oy, cy + c * ox + d * oy], axis=-1))
    return xp.stack(corners, axis=-2)


def _matrix_quads(inv, out_shape, xp):
    """Widened pixel footprints of a projective inverse map ``inv`` (output -> source)."""
    ho, wo = out_shape
    inv = np.asarray(inv, dtype=np.float64).tolist()  # Python floats mix with any array type
    j = xp.arange(wo, dtype=xp.float64)[None, :]
    i = xp.arange(ho, dtype=xp.float64)[:, None]
    u = inv[0][0] * j + inv[0][1] * i + inv[0][2]
    v = inv[1][0] * j + inv[1][1] * i + inv[1][2]
    if inv[2][0] == 0 and inv[2][1] == 0:
        # affine (w constant): one Jacobian for every pixel
        w0 = inv[2][2] if inv[2][2] > 0 else 1.0
        a2, b2, c2, d2 = _widen(*(xp.asarray(inv[r][k] / w0) for r, k in ((0, 0), (0, 1), (1, 0), (1, 1))), xp=xp)
        shape = (ho, wo)
        return _parallelograms(xp.broadcast_to(u / w0, shape), xp.broadcast_to(v / w0, shape),
                               *(xp.broadcast_to(t, shape) for t in (a2, b2, c2, d2)), xp=xp)
    w = inv[2][0] * j + inv[2][1] * i + inv[2][2]
    beyond = w <= 0  # footprints reaching the horizon line have no finite preimage
    w = xp.where(beyond, 1.0, w)
    cx, cy = u / w, v / w
    w2 = w * w
    a = (inv[0][0] * w - u * inv[2][0]) / w2
    b = (inv[0][1] * w - u * inv[2][1]) / w2
    c = (inv[1][0] * w - v * inv[2][0]) / w2
    d = (inv[1][1] * w - v * inv[2][1]) / w2
    a2, b2, c2, d2 = _widen(a, b, c, d, xp)
    # perspective: the exact quad, stretched by J' J^-1 about its centre where it is widened
    det = a * d - b * c
    m00 = (a2 * d - b2 * c) / det
    m01 = (b2 * a - a2 * b) / det
    m10 = (c2 * d - d2 * c) / det
    m11 = (d2 * a - c2 * b) / det
    corners = []
    for ox, oy in _OFFSETS:
        jj, ii = j + ox, i + oy
        uu = inv[0][0] * jj + inv[0][1] * ii + inv[0][2]
        vv = inv[1][0] * jj + inv[1][1] * ii + inv[1][2]
        ww = inv[2][0] * jj + inv[2][1] * ii + inv[2][2]
        beyond = beyond | (ww <= 0)
        ww = xp.where(ww <= 0, 1.0, ww)
        dx, dy = uu / ww - cx, vv / ww - cy
        corners.append(xp.stack([cx + m00 * dx + m01 * dy, cy + m10 * dx + m11 * dy], axis=-1))
    quads = xp.stack(corners, axis=-2)
    return xp.where(beyond[..., None, None], xp.nan, quads)


def _map_quads(map_x, map_y, xp):
    """Widened footprints of a remap from central differences of the maps."""

    def deriv(m, axis):
        if m.shape[axis] < 2:
            return None
        return xp.gradient(m, axis=axis)

    mx = map_x.astype(xp.float64)
    my = map_y.astype(xp.float64)
    a, b = deriv(mx, 1), deriv(mx, 0)
    c, d = deriv(my, 1), deriv(my, 0)
    one, zero = xp.ones_like(mx), xp.zeros_like(mx)
    a = one if a is None else a
    c = zero if c is None else c
    b = zero if b is None else b
    d = one if d is None else d
    a2, b2, c2, d2 = _widen(a, b, c, d, xp)
    return _parallelograms(mx, my, a2, b2, c2, d2, xp)


def _run(be, image, channel_axis, out_shape, sampler):
    lay = layout(image, channel_axis)
    x = lay.to_batch(be.xp, image)
    out = sampler(x)
    return lay.from_batch(be.xp, out)


def warp_affine(image, matrix, output_shape=None, *, interpolation="linear", mode="constant",
                cval=0.0, inverse_map=False, antialias=False, channel_axis=None):
    """Affine warp with OpenCV's matrix convention, point-sampled or anti-aliased.

    Output pixel ``(x, y)`` reads the source at ``A^-1 (x, y)`` for the 2x3 ``matrix`` ``A``
    (``cv2.warpAffine``), or at ``A (x, y)`` when ``inverse_map`` (``WARP_INVERSE_MAP``).

    Parameters
    ----------
    image : array, shape (..., H, W)
        Leading axes are a batch warped in one launch (or give ``channel_axis``).
    matrix : array, shape (2, 3)
        Affine map, source to destination unless ``inverse_map``.
    output_shape : (rows, cols), optional
        Defaults to the image's (H, W).
    interpolation : {"nearest", "linear", "cubic", "lanczos4", "area"}
        Point kernels as in ``cv2.warpAffine`` (``cubic``: Keys a = -0.75, ``lanczos4``:
        8-tap normalised Lanczos). ``"area"`` integrates over each pixel's footprint
        (same as ``antialias=True``).
    mode : str
        SciPy boundary mode; see the module table for the equal OpenCV border.
    cval : float
        Fill value of the constant modes.
    inverse_map : bool
        ``matrix`` already maps destination to source.
    antialias : bool
        Integrate the source over each output pixel's footprint (the parallelogram that is
        the preimage of the pixel square) by exact box-over-parallelogram coverage instead of
        point sampling. The footprint is widened to at least one source pixel along each
        singular direction of the map (``J = U S V^T -> U max(S, 1) V^T``), so an enlarging
        scale gives bilinear interpolation (a rotated map rotates that unit footprint with
        it) and a pure integer down-scale gives ``resize(..., interpolation="area")``.
    channel_axis : int, optional
        Axis of ``image`` holding channels.

    Returns
    -------
    array
        Warped image, shape ``(..., rows, cols)``; float input keeps its dtype, integer
        input is rounded and saturated back to its dtype (OpenCV's ``saturate_cast``).

    Notes
    -----
    Positions are computed in double precision on both backends; ``cubic`` and
    ``lanczos4`` round the fractional offset to 1/1024 pixel (OpenCV: 1/32). Backend
    notes: sums accumulate in the image's float dtype; the footprint sampler normalises
    its weights before summing on the CPU and after on the GPU (agreement to rounding).
    The footprint cost grows with its area: strong minification or near-horizon
    perspective footprints are slow.

    References
    ----------
    R. Keys, "Cubic convolution interpolation for digital image processing", IEEE Trans.
    ASSP 29(6), 1981. P. Heckbert, "Fundamentals of Texture Mapping and Image Warping",
    M.S. thesis, UC Berkeley, 1989 (footprint filtering).
    """
    be = get_backend(image, names=("image",))
    full = _matrix(matrix, 2)
    return _warp_matrix(be, image, full, output_shape, interpolation, mode, cval, inverse_map,
                        antialias, channel_axis)


def warp_perspective(image, matrix, output_shape=None, *, interpolation="linear",
                     mode="constant", cval=0.0, inverse_map=False, antialias=False,
                     channel_axis=None):
    """Perspective (homography) warp with OpenCV's matrix convention.

    Output pixel ``(x, y)`` reads the source at the projective image of ``(x, y, 1)`` under
    ``H^-1`` (``cv2.warpPerspective``), or under ``H`` when ``inverse_map``. With
    ``antialias=True`` (or ``interpolation="area"``) each output pixel integrates the exact
    source quad that is the preimage of its square, stretched about its centre by
    ``J' J^-1`` (``J`` the local Jacobian, ``J'`` with singular values raised to 1) where
    the warp magnifies; pixels whose square reaches the horizon line (``w <= 0``) get
    ``cval``. Parameters and result as in :func:`warp_affine`, with a 3x3 ``matrix``.
    """
    be = get_backend(image, names=("image",))
    full = _matrix(matrix, 3)
    return _warp_matrix(be, image, full, output_shape, interpolation, mode, cval, inverse_map,
                        antialias, channel_axis)


def _inverse(full, inverse_map):
    """The 3x3 map from destination to source pixels, scaled to ``[2, 2] = 1`` where it can be."""
    inv = full if inverse_map else np.linalg.inv(full)
    return inv / inv[2, 2] if inv[2, 2] != 0 else inv


def _warp_matrix(be, image, full, output_shape, interpolation, mode, cval, inverse_map,
                 antialias, channel_axis):
    cval, footprint = _check_options(interpolation, mode, antialias, cval, image.dtype)
    layout(image, channel_axis)
    if output_shape is None:
        output_shape = spatial_shape(image, channel_axis)
    out_shape = check_output_shape(output_shape)
    inv = _inverse(full, inverse_map)
    if footprint:
        quads = _matrix_quads(inv, out_shape, be.xp)
        return _run(be, image, channel_axis, out_shape,
                    lambda x: be.sample_footprint(x, quads, mode=mode, cval=cval))
    return _run(be, image, channel_axis, out_shape,
                lambda x: be.sample_points(x, out_shape, inv, interpolation=interpolation,
                                           mode=mode, cval=cval))


def remap(image, map_x, map_y, *, interpolation="linear", mode="constant", cval=0.0,
          antialias=False, channel_axis=None):
    """Sample ``image`` at arbitrary source positions (``cv2.remap``).

    ``out[..., i, j] = image(map_y[i, j], map_x[i, j])``: ``map_x`` holds source columns and
    ``map_y`` source rows, both of the output's shape; the output has the maps' shape.

    Parameters
    ----------
    image : array, shape (..., H, W)
        Leading axes are a batch remapped in one launch (or give ``channel_axis``).
    map_x, map_y : array, shape (rows, cols)
        Source positions (column, row), on the same backend as ``image``. Non-finite entries
        return ``cval``.
    interpolation : {"nearest", "linear", "cubic", "lanczos4", "area"}
        Point kernels as in ``cv2.remap``; ``"area"`` is ``antialias=True``.
    mode : str
        SciPy boundary mode (see the module table for the equal OpenCV border).
    cval : float
        Fill value of the constant modes.
    antialias : bool
        Integrate over each output pixel's footprint: the parallelogram spanned by the
        maps' local Jacobian (central differences), widened to at least one source pixel
        per singular direction, with exact box-over-parallelogram coverage.
    channel_axis : int, optional
        Axis of ``image`` holding channels.

    Returns
    -------
    array
        Shape ``(..., rows, cols)``; float input keeps its dtype, integer input is rounded
        and saturated back to its dtype.

    Notes
    -----
    This is the sampler behind every map-based warp in gpuimg (lens undistortion,
    deformation fields): build the maps once, call :func:`remap` per image or per batch.
    """
    be = get_backend(image, map_x, map_y, names=("image", "map_x", "map_y"))
    cval, footprint = _check_options(interpolation, mode, antialias, cval, image.dtype)
    layout(image, channel_axis)
    out_shape = _check_maps(map_x, map_y)
    if footprint:
        quads = _map_quads(be.asarray(map_x), be.asarray(map_y), be.xp)
        return _run(be, image, channel_axis, out_shape,
                    lambda x: be.sample_footprint(x, quads, mode=mode, cval=cval))
    mx = be.asarray(map_x)
    my = be.asarray(map_y)
    return _run(be, image, channel_axis, out_shape,
                lambda x: be.sample_points(x, out_shape, None, mx, my, interpolation=interpolation,
                                           mode=mode, cval=cval))


class RemapPlan:
    """:func:`remap` with one pair of maps, prepared once for many images (the role of
    ``cv2.convertMaps`` before ``cv2.remap``).

    ``plan(image)`` equals ``remap(image, map_x, map_y, interpolation=..., mode=..., cval=...,
    antialias=...)`` for every image of spatial shape ``image_shape`` whose samples are
    computed in ``dtype`` (float32 for float32, float16 and 8- or 16-bit integer images,
    float64 for float64 and wider integers). :meth:`from_matrix` prepares
    :func:`warp_affine` and :func:`warp_perspective` the same way.

    What a plan keeps depends on the sampler and the backend:

    - point sampling on NumPy: for every output pixel the index of its first source tap
      (int32 below 2^31 padded samples), its tap weights in ``dtype`` (for ``linear`` only
      the two fractions) and whether it returns ``cval``, which :func:`remap` derives from
      the maps on every call. A call then only pads the image, gathers the taps and sums
      them (2048² float32 on one core, against the same call without a plan: a 30° rotation
      about 2x faster with linear and 1.5x with cubic interpolation; the undistortion 1.3x
      with linear or cubic and 3x with nearest). That takes 4 bytes per output pixel for
      ``nearest``, ``4 + 2 itemsize`` for ``linear`` and ``4 + 2 taps itemsize`` else
      (float32: 4, 12, 36 and 68 for Lanczos-4), plus 8 per pixel that returns ``cval``;
    - point sampling on CuPy: a copy of the maps (or the matrix). The CUDA sampler derives a
      pixel's taps in a few instructions from its map entries, which costs less than reading
      stored taps;
    - footprint sampling (``antialias`` or ``interpolation="area"``): the widened footprint
      quad of every output pixel (eight float64 numbers), which :func:`remap` builds from
      central differences of the maps on every call.

    Parameters
    ----------
    map_x, map_y : array, shape (rows, cols)
        Source columns and rows of each output pixel, as in :func:`remap`. The plan keeps
        what it derives from them, or a copy; later changes to the maps do not reach it.
    image_shape : (H, W)
        Spatial shape of the images the plan samples.
    interpolation, mode, cval, antialias
        As in :func:`remap`.
    dtype : {float32, float64}
        Precision of the samples (see above).

    Attributes
    ----------
    nbytes : int
        Bytes of the arrays the plan keeps (tables, quads or its copy of the maps).
    """

    def __init__(self, map_x, map_y, image_shape, *, interpolation="linear", mode="constant", cval=0.0,
                 antialias=False, dtype=np.float32):
        be = get_backend(map_x, map_y, names=("map_x", "map_y"))
        out_shape = _check_maps(map_x, map_y)
        self._prepare(be, check_output_shape(image_shape, "image_shape"), out_shape, interpolation, mode, cval,
                      antialias, dtype, maps=(be.asarray(map_x), be.asarray(map_y)))

    @classmethod
    def from_matrix(cls, matrix, image_shape, output_shape=None, *, inverse_map=False, interpolation="linear",
                    mode="constant", cval=0.0, antialias=False, dtype=np.float32, backend=None):
        """A plan of :func:`warp_affine` (2x3 ``matrix``) or :func:`warp_perspective` (3x3)
        with these options, for images of ``image_shape`` (``output_shape`` defaults to it),
        on ``backend`` (``"numpy"`` or ``"cupy"``; default the active one). On CuPy it keeps
        the matrix: the kernel computes positions from it."""
        m = np.asarray(matrix)
        rows = 2 if m.ndim == 2 and m.shape[0] == 2 else 3
        inv = _inverse(_matrix(matrix, rows), _validate.check_bool("inverse_map", inverse_map))
        image_shape = check_output_shape(image_shape, "image_shape")
        out_shape = image_shape if output_shape is None else check_output_shape(output_shape)
        plan = cls.__new__(cls)
        plan._prepare(get_backend(backend=backend), image_shape, out_shape, interpolation, mode, cval, antialias,
                      dtype, matrix=inv)
        return plan

    def _prepare(self, be, image_shape, out_shape, interpolation, mode, cval, antialias, dtype, *, maps=None,
                 matrix=None):
        """The plan of a checked ``image_shape`` and output shape (see the class notes)."""
        self.out_shape, self.image_shape = out_shape, image_shape
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise TypeError(f"dtype must be float32 or float64, got {self.dtype}")
        self.cval, self.footprint = _check_options(interpolation, mode, antialias, cval, self.dtype)
        self.interpolation, self.mode, self.backend = interpolation, mode, be.name
        self._maps, self._matrix, self._quads, self._tables = maps, matrix, None, None
        if self.footprint:
            self._quads = (_matrix_quads(matrix, out_shape, be.xp) if maps is None
                           else _map_quads(*maps, be.xp))
            self._maps = self._matrix = None
            self.nbytes = int(self._quads.nbytes)
            return
        mx, my = (None, None) if maps is None else maps
        self._tables = be.point_tables(self.image_shape, self.dtype, out_shape, matrix, mx, my,
                                       interpolation=interpolation, mode=mode, cval=self.cval)
        if self._tables is not None:
            self._maps = self._matrix = None  # the tables hold everything the NumPy sampler reads
            self.nbytes = int(self._tables.nbytes)
            return
        if maps is not None:
            self._maps = tuple(m.copy() for m in maps)
        self.nbytes = 0 if maps is None else sum(int(m.nbytes) for m in self._maps)

    def __call__(self, image, *, channel_axis=None):
        """Remap ``image`` (``(..., H, W)``, or with ``channel_axis``); returns ``(..., rows, cols)``
        in the image's dtype, as :func:`remap` does."""
        be = get_backend(image, names=("image",))
        if be.name != self.backend:
            raise ValueError(f"image must be a {self.backend} array like the plan's maps, got a {be.name} array")
        lay = layout(image, channel_axis)
        shape = spatial_shape(image, channel_axis)
        if shape != self.image_shape:
            raise ValueError(f"image must have the spatial shape {self.image_shape} the plan was made for, got {shape}")
        if lay.work != self.dtype:
            raise ValueError(f"image: this plan samples in {self.dtype.name}, and a {lay.dtype.name} image is sampled "
                             f"in {lay.work.name} (make the plan with dtype={lay.work.name})")
        check_cval(self.cval, lay.dtype)
        opts = {"mode": self.mode, "cval": self.cval}
        if self.footprint:
            return _run(be, image, channel_axis, self.out_shape,
                        lambda x: be.sample_footprint(x, self._quads, **opts))
        mx, my = self._maps if self._maps is not None else (None, None)
        return _run(be, image, channel_axis, self.out_shape,
                    lambda x: be.sample_points(x, self.out_shape, self._matrix, mx, my,
                                               interpolation=self.interpolation, tables=self._tables, **opts))
