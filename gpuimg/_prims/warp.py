"""Primitives ``sample_points`` and ``sample_footprint``: the two warp samplers.

``sample_points(x, out_shape, matrix, map_x, map_y, interpolation, mode, cval)`` reads every
image of the batch ``x`` (N, H, W) at one source position per output pixel. The position of
output pixel ``(i, j)`` (row, column) is either ``(map_y[i, j], map_x[i, j])`` or the
projective image of ``(j, i, 1)`` under the 3x3 ``matrix`` (``u, v, w = matrix @ (j, i, 1)``,
source column ``u / w``, row ``v / w``). Interpolation kernels, on a tap at signed distance
``t``:

- ``nearest``: the sample at ``floor(x + 0.5)``;
- ``linear``: the tent ``1 - |t|``;
- ``cubic``: Keys' cubic convolution with ``a = -0.75`` (OpenCV's ``INTER_CUBIC``);
- ``lanczos4``: ``sinc(t) sinc(t / 4)`` on 8 taps, normalised to sum 1 (OpenCV's
  ``INTER_LANCZOS4``).

For ``cubic`` and ``lanczos4`` the fractional offset ``f`` is rounded to 1/1024 pixel
(``floor(1024 f + 1/2) / 1024``) before the weights are evaluated (OpenCV rounds to 1/32); ``linear`` uses the exact offset. Taps outside
the image follow ``gpuimg._boundary`` index rules; the mode ``"constant"`` additionally returns
``cval`` wherever the position lies outside ``[0, H-1] x [0, W-1]`` by more than 1e-6 pixel
(SciPy's convention, with a margin for rounding in the mapped coordinates).
Non-finite positions return ``cval`` in every mode.

``sample_footprint(x, quads, mode, cval)`` integrates each image over one convex quad per
output pixel (``quads`` of shape (Ho, Wo, 4, 2) holding (column, row) corners in order): the
weight of source pixel ``(r, c)`` is the area of the quad inside the pixel square
``[c - 1/2, c + 1/2] x [r - 1/2, r + 1/2]`` divided by the quad's area (exact box-over-quad
coverage). Pixels outside the image follow the boundary mode; both constant modes read
``cval`` there. Quads with a non-finite corner return ``cval``.

The NumPy twin of ``sample_points`` pads the batch once, stores every run of horizontal taps
as one gatherable item (16 bytes for 4 float32 taps; runs of two taps where all of them would
take more than ``taps.RUNS_MAX_BYTES``), and works through blocks of
``_CHUNK`` output pixels on the thread pool, sized so that one block's temporaries stay in
a core's cache: per block, one gather per tap row and tap-major multiply-adds. The CUDA twins
are ``kernels/warp_point.cu`` and ``kernels/warp_footprint.cu``.

``point_tables(src_shape, dtype, out_shape, matrix, map_x, map_y, interpolation, mode, cval)``
derives once what the NumPy ``sample_points`` derives from the matrix or maps per call (each output pixel's
first tap, its weights and whether it returns ``cval``: :class:`PointTables`), for
``sample_points(..., tables=...)`` to read; on CuPy it returns None, since the kernel derives
a pixel's taps in fewer instructions than reading stored ones would take.
"""

from __future__ import annotations

import numpy as np

from gpuimg import _boundary
from gpuimg._backend import primitive
from gpuimg._kernels import KernelFamily, launch_1d, type_name
from gpuimg._parallel import run_chunks
from gpuimg._prims import taps as taps_module
from gpuimg._prims.taps import as_items, gather_taps, run_width, tap_rows

INTERPOLATIONS = {"nearest": 0, "linear": 1, "cubic": 2, "lanczos4": 3}
#: Taps per axis and the index of the first tap relative to ``floor(x)``.
_TAPS = {"nearest": (1, 0), "linear": (2, 0), "cubic": (4, -1), "lanczos4": (8, -3)}
#: Kernel template mode per SciPy mode name (grid variants differ only in the outside test).
TAP_MODE = {
    "reflect": 0,
    "mirror": 1,
    "nearest": 2,
    "constant": 3,
    "grid-constant": 3,
    "wrap": 4,
    "grid-wrap": 4,
}
FRACTION_STEPS = 1024
_FRACTION_BITS = FRACTION_STEPS.bit_length() - 1  # FRACTION_STEPS is a power of two
_TYPES = ("float", "double")
_MODES = sorted(set(TAP_MODE.values()))

#: Index types of the point sampler: 32-bit where `_point_index_type` allows, else 64-bit.
_INDEX_TYPES = ("int", "long long")
#: Largest flat index of a batch, and the exclusive bound of an image side, for 32-bit indexing.
_INT32_MAX = 2**31 - 1
_INT32_SIDE = 2**29

_POINT = KernelFamily(
    "warp_point.cu",
    [f"warp_point<{t}, {i}, {m}, {mt}, {it}, {st}>" for t in _TYPES for i in INTERPOLATIONS.values() for m in _MODES
     for mt in _TYPES for it in _INDEX_TYPES for st in ((0, 1) if i >= 2 else (0,))],
)
_FOOTPRINT = KernelFamily(
    "warp_footprint.cu",
    [f"warp_footprint<{t}, {m}>" for t in _TYPES for m in _MODES],
)

_EDGE = 1e-6  # "constant" treats positions this close to the edge as inside (rounding)
_CHUNK = 1 << 16  # output pixels per vectorised block on the CPU


def keys_cubic(t, a=-0.75):
    """Keys' cubic convolution kernel at distances ``t``."""
    t = np.abs(t)
    near = ((a + 2.0) * t - (a + 3.0)) * t * t + 1.0
    far = ((a * t - 5.0 * a) * t + 8.0 * a) * t - 4.0 * a
    return np.where(t < 1.0, near, np.where(t < 2.0, far, 0.0))


def lanczos4_weights(frac):
    """OpenCV's normalised 8-tap Lanczos weights for fractional offsets ``frac`` (..., 8)."""
    frac = np.asarray(frac, dtype=np.float64)
    t = frac[..., None] + 3.0 - np.arange(8)
    w = np.sinc(t) * np.sinc(t / 4.0)
    return w / w.sum(axis=-1, keepdims=True)


def _weight_table(interpolation):
    """Weights of every tap for the offsets ``q / FRACTION_STEPS``, shape (steps + 1, taps)."""
    frac = np.arange(FRACTION_STEPS + 1) / FRACTION_STEPS
    if interpolation == "cubic":
        return keys_cubic(frac[:, None] + 1.0 - np.arange(4))
    return lanczos4_weights(frac)


_TABLES = {name: _weight_table(name) for name in ("cubic", "lanczos4")}


def _fold(c, n, mode, reach):
    """Fold source positions into a range where ``reach`` padded pixels cover every tap.

    The periodic modes fold by one reflection or shift when every position lies within one
    period of the image (two light passes and the range test), else by ``np.mod``, which
    costs several times more per element."""
    if mode in ("nearest", "constant", "grid-constant"):
        # beyond ``reach`` every tap reads the same edge or fill value
        return np.clip(c, -float(reach), float(n - 1 + reach))
    if mode == "mirror" and n == 1:
        return np.zeros_like(c)
    # the image's own range [first, last] and the folding period
    first, last = (0.0, n - 1.0) if mode == "mirror" else (-0.5, n - 0.5)
    period = last - first
    lo, hi = float(c.min()), float(c.max())
    if first <= lo and (hi < last or mode == "mirror" and hi == last):
        return c
    if lo >= first - period and hi < last + period:
        if mode in ("wrap", "grid-wrap"):
            out = c + np.where(c < first, period, 0.0)
            np.subtract(out, period, out=out, where=out >= last)
            return out
        # one reflection about the edge the position passed
        out = np.where(c < first, 2.0 * first - c, c)
        np.subtract(2.0 * last, out, out=out, where=out > last)
        return out
    if mode == "reflect":
        c = np.mod(c + 0.5, 2.0 * n)
        return np.where(c >= n, 2.0 * n - c, c) - 0.5
    if mode == "mirror":
        c = np.mod(c, 2.0 * n - 2.0)
        return np.where(c > n - 1, 2.0 * n - 2.0 - c, c)
    return np.mod(c + 0.5, float(n)) - 0.5


def _axis_taps(c, reach, interpolation, dtype, conjugate=False):
    """Integer tap origin ``floor(c)`` and the tap weights, shape (positions, taps), C order.

    ``c >= -reach``. For ``cubic`` and ``lanczos4`` the position is first rounded to
    ``1 / FRACTION_STEPS`` pixel and the weights are read from the table; ``linear`` uses the
    exact fraction. ``conjugate`` negates every odd tap's weight (see :func:`gpuimg._prims.taps.gather_taps`).
    """
    if interpolation == "linear":
        # in c's precision: a float32 map position and its fraction are exact there
        floor = np.floor(c)
        origin = floor.astype(np.intp)
        np.subtract(c, floor, out=floor)
        return origin, _linear_weights(floor, dtype, conjugate)
    if c.dtype == np.float32:
        # floor(c * steps + 1/2) is exact in float32: scaling by a power of two is, and
        # |c * steps| < 2^23 leaves room for the half (the caller bounds c); c + reach is not
        scaled = c * FRACTION_STEPS
        scaled += 0.5
        np.floor(scaled, out=scaled)
        q = scaled.astype(np.intp)
        q += reach * FRACTION_STEPS
    else:
        shifted = c + float(reach)  # >= 0, so truncation is floor
        shifted *= FRACTION_STEPS
        shifted += 0.5
        q = shifted.astype(np.intp)  # floor((c + reach) * steps + 1/2)
    origin = q >> _FRACTION_BITS
    origin -= reach
    q &= FRACTION_STEPS - 1
    items, taps = _table(interpolation, dtype, conjugate)
    return origin, np.take(items, q, axis=0, mode="clip").view(dtype).reshape(-1, taps)


def _linear_weights(frac, dtype, conjugate=False):
    """``(P, 2)`` tent weights ``(1 - f, f)`` in ``dtype`` of the fractional parts ``frac``;
    ``conjugate`` gives ``(1 - f, -f)`` (see :func:`gpuimg._prims.taps.gather_taps`). The
    second weight is ``frac`` rounded to ``dtype``, the first one minus it there."""
    weights = np.empty(frac.shape + (2,), dtype=dtype)
    if conjugate:
        np.negative(frac, out=weights[:, 1])
        np.add(1, weights[:, 1], out=weights[:, 0])
    else:
        weights[:, 1] = frac
        np.subtract(1, weights[:, 1], out=weights[:, 0])
    return weights


_TABLE_CACHE: dict = {}


def _table(interpolation, dtype, conjugate=False):
    """The weight table of ``interpolation`` in ``dtype`` as gatherable rows (see :func:`~gpuimg._prims.taps.as_items`);
    ``conjugate`` negates the odd taps."""
    key = (interpolation, np.dtype(dtype), conjugate)
    if key not in _TABLE_CACHE:
        table = _TABLES[interpolation].astype(dtype)
        if conjugate:
            table[:, 1::2] *= -1
        _TABLE_CACHE[key] = (as_items(table), table.shape[1])
    return _TABLE_CACHE[key]


def _positions(r0, r1, wo, matrix, map_x, map_y, dtype=np.float64):
    """Source (column, row) positions of output rows ``r0:r1``, flattened; maps are read in
    ``dtype``, matrix positions computed in float64."""
    if matrix is None:
        return (np.asarray(map_x[r0:r1], dtype=dtype).ravel(),
                np.asarray(map_y[r0:r1], dtype=dtype).ravel())
    m = np.asarray(matrix, dtype=np.float64)
    j = np.arange(wo, dtype=np.float64)
    i = np.arange(r0, r1, dtype=np.float64)[:, None]
    u = m[0, 0] * j + (m[0, 1] * i + m[0, 2])
    v = m[1, 0] * j + (m[1, 1] * i + m[1, 2])
    if not (m[2, 0] == 0.0 and m[2, 1] == 0.0 and m[2, 2] == 1.0):
        w = m[2, 0] * j + (m[2, 1] * i + m[2, 2])
        with np.errstate(divide="ignore", invalid="ignore"):  # w = 0: non-finite -> cval
            u /= w
            v /= w
    return u.ravel(), v.ravel()


class PointTables:
    """The NumPy point sampler's taps for one source shape, one set of positions and one
    sample dtype, kept for reuse (see :class:`gpuimg.transform.RemapPlan`).

    The tap runs of a padded image are ``width`` taps wide (:func:`~gpuimg._prims.taps.run_width`
    of one image, fixed when the tables are built; a batch is sampled in groups of images
    whose runs stay under the cap). ``blocks`` holds, per block of ``_CHUNK`` output pixels:
    the run index of each pixel's first tap (int32 where the padded image's runs allow;
    for ``nearest`` the flat index of the pixel); the x weights with odd taps negated and
    the y weights, ``(P, taps)`` in the sample dtype, or for ``linear`` only the fractional
    parts ``(P,)`` from which both weights follow (``None`` for ``nearest``); and the flat
    indices of the pixels that return ``cval`` (``None`` when there are none).
    """

    def __init__(self, src_shape, out_shape, dtype, interpolation, mode, cval, width, blocks):
        self.src_shape, self.out_shape = src_shape, out_shape
        self.dtype, self.interpolation, self.mode, self.cval = dtype, interpolation, mode, cval
        self.width, self.blocks = width, blocks

    @property
    def nbytes(self):
        return sum(a.nbytes for block in self.blocks for a in block if a is not None)

    def matches(self, x, out_shape, interpolation, mode, cval):
        """Whether these tables sample the batch ``x`` with these options."""
        same_cval = cval == self.cval or (cval != cval and self.cval != self.cval)
        return (tuple(x.shape[1:]) == self.src_shape and tuple(out_shape) == self.out_shape
                and x.dtype == self.dtype and (interpolation, mode) == (self.interpolation, self.mode) and same_cval)


def _tap_geometry(interpolation, h, w):
    """``(taps, first, reach, pad, hp, wp)``: taps per axis, the first tap relative to
    ``floor(c)``, the fold reach, the padding of each side and the padded image's shape."""
    taps, first = _TAPS[interpolation]
    reach = taps // 2 + 1
    pad = reach + taps
    return taps, first, reach, pad, h + 2 * pad, w + 2 * pad


def _block_taps(r0, r1, h, w, wo, matrix, map_x, map_y, interpolation, mode, dtype):
    """Taps of output rows ``r0:r1``: ``(rows, cols, wxc, wy, fill)``, the padded-grid row and
    column of each pixel's first tap (intp), the x weights with odd taps negated and the y
    weights (``(P, taps)``, ``None`` for ``nearest``), and the flat indices of the pixels
    that return ``cval`` (or ``None``)."""
    taps, first, reach, pad, _, _ = _tap_geometry(interpolation, h, w)
    affine = matrix is not None and np.all(np.isfinite(matrix)) and tuple(
        np.asarray(matrix, dtype=np.float64)[2]) == (0.0, 0.0, 1.0)
    # float32 maps stay float32 where every step is exact in it: the clamping modes (no
    # modular folding), and for cubic / lanczos4 positions small enough that c * steps + 1/2
    # is exact (|c| < 2^23 / FRACTION_STEPS)
    exact32 = (matrix is None and map_x.dtype == np.float32 and map_y.dtype == np.float32
               and mode in ("nearest", "constant", "grid-constant")
               and (taps <= 2 or max(h, w) + reach < (1 << 23) // FRACTION_STEPS))
    px, py = _positions(r0, r1, wo, matrix, map_x, map_y, np.float32 if exact32 else np.float64)
    if affine:  # finite matrix, w == 1: every position is finite
        outside = np.zeros(px.shape, dtype=bool) if mode == "constant" else None
    else:
        outside = ~(np.isfinite(px) & np.isfinite(py))
        if outside.any():
            px = np.nan_to_num(px)
            py = np.nan_to_num(py)
    if mode == "constant":
        outside |= (px < -_EDGE) | (px > w - 1 + _EDGE) | (py < -_EDGE) | (py > h - 1 + _EDGE)
    fx = _fold(px, w, mode, reach)
    fy = _fold(py, h, mode, reach)
    if taps == 1:
        cols = np.floor(fx + 0.5).astype(np.intp) + pad
        rows = np.floor(fy + 0.5).astype(np.intp) + pad
        wxc = wy = None
    else:
        cols, wxc = _axis_taps(fx, reach, interpolation, dtype, conjugate=True)
        rows, wy = _axis_taps(fy, reach, interpolation, dtype)
        cols += first + pad
        rows += first + pad
    fill = np.flatnonzero(outside) if outside is not None and outside.any() else None
    return rows, cols, wxc, wy, fill


def _sample_block(index, wxc, wy, fill, src, wq, plane, dest, cval):
    """``dest`` (``(N, P)``) from one block of taps: for ``nearest`` (``wxc`` None) a gather
    of the padded batch ``src`` (``(N, hp * wp)``) at the flat ``index``, else
    :func:`gather_taps` over its tap runs from the run ``index`` (intp, modified); then
    ``cval`` where ``fill`` says."""
    if wxc is None:
        np.take(src, index, axis=1, out=dest, mode="clip")
    else:
        gather_taps(src, wq, plane, index, wxc, wy, dest)
    if fill is not None:
        dest[:, fill] = dest.dtype.type(cval)


def _row_blocks(ho, wo, nimg):
    step = max(1, _CHUNK // (wo * nimg))
    return [(r0, min(r0 + step, ho)) for r0 in range(0, ho, step)]


def _padded_runs(x, interpolation, mode, cval, width):
    """The batch padded for ``interpolation``'s taps and, for more than one tap, its runs of
    ``width`` taps: ``(src, wq, plane)`` as :func:`_sample_block` reads them."""
    nimg, h, w = x.shape
    taps, _, _, pad, hp, wp = _tap_geometry(interpolation, h, w)
    padded = _boundary.pad(x, ((0, 0), (pad, pad), (pad, pad)), mode, cval)
    if taps == 1:
        return padded.reshape(nimg, -1), wp, None
    src, wq = tap_rows(padded, width)
    return src, wq, hp * wq


@primitive("point_tables", "numpy")
def _point_tables_numpy(be, src_shape, dtype, out_shape, matrix=None, map_x=None, map_y=None, *,
                        interpolation="linear", mode="constant", cval=0.0):
    """:class:`PointTables` of ``sample_points`` with this matrix or these maps, for images of
    ``src_shape`` (H, W) and samples of ``dtype``."""
    h, w = (int(n) for n in src_shape)
    ho, wo = (int(n) for n in out_shape)
    dtype = np.dtype(dtype)
    taps, _, _, _, hp, wp = _tap_geometry(interpolation, h, w)
    width = 1 if taps == 1 else run_width(taps, hp * wp * dtype.itemsize)
    wq = wp - width + 1
    index_type = np.int32 if hp * wq <= _INT32_MAX else np.intp
    spans = _row_blocks(ho, wo, 1)
    blocks = [None] * len(spans)

    def build(k, r0, r1):
        rows, cols, wxc, wy, fill = _block_taps(r0, r1, h, w, wo, matrix, map_x, map_y, interpolation, mode, dtype)
        index = rows
        index *= wq
        index += cols
        if interpolation == "linear":
            # the fractional parts: wxc = (1 - fx, -fx), wy = (1 - fy, fy)
            wxc, wy = -wxc[:, 1], wy[:, 1].copy()
        blocks[k] = (index.astype(index_type), wxc, wy, fill)

    run_chunks(build, [(k, *span) for k, span in enumerate(spans)])
    return PointTables((h, w), (ho, wo), dtype, interpolation, mode, cval, width, blocks)


def _sample_tables(x, tables):
    """``sample_points`` from stored :class:`PointTables`: each job samples one block of one
    image, in groups of images whose tap runs stay within the cap."""
    nimg, h, w = x.shape
    ho, wo = tables.out_shape
    taps, _, _, _, hp, wp = _tap_geometry(tables.interpolation, h, w)
    linear = tables.interpolation == "linear"
    group = nimg if taps == 1 else max(1, taps_module.RUNS_MAX_BYTES // (tables.width * hp * wp * x.itemsize))
    spans = _row_blocks(ho, wo, 1)
    out = np.empty((nimg, ho, wo), dtype=x.dtype)
    for g0 in range(0, nimg, group):
        g1 = min(g0 + group, nimg)
        src, wq, plane = _padded_runs(x[g0:g1], tables.interpolation, tables.mode, tables.cval, tables.width)

        def rows(k, r0, r1, i):
            index, wxc, wy, fill = tables.blocks[k]
            index = index.astype(np.intp)
            if linear:  # the stored fractional parts
                wxc, wy = _linear_weights(wxc, x.dtype, conjugate=True), _linear_weights(wy, x.dtype)
            part = src[i:i + 1] if plane is None else src[i * plane:(i + 1) * plane]
            _sample_block(index, wxc, wy, fill, part, wq, plane, out[g0 + i, r0:r1].reshape(1, -1), tables.cval)

        run_chunks(rows, [(k, *span, i) for k, span in enumerate(spans) for i in range(g1 - g0)])
    return out


@primitive("point_tables", "cupy")
def _point_tables_cupy(be, src_shape, dtype, out_shape, matrix=None, map_x=None, map_y=None, *,
                       interpolation="linear", mode="constant", cval=0.0):
    """None: the CUDA point sampler derives its taps from the maps in the kernel, where they
    cost less than reading stored ones would."""
    return None


@primitive("sample_points", "numpy")
def _sample_points_numpy(be, x, out_shape, matrix=None, map_x=None, map_y=None, *,
                         interpolation="linear", mode="constant", cval=0.0, tables=None):
    """Point-sample the batch ``x`` (N, H, W) at the mapped positions; returns (N, Ho, Wo).
    ``tables``: the :class:`PointTables` of these positions and options, used instead of
    deriving the taps."""
    if tables is not None:
        if not tables.matches(x, out_shape, interpolation, mode, cval):
            raise ValueError("tables were built for another source shape, dtype or sampling option")
        return _sample_tables(x, tables)
    nimg, h, w = x.shape
    ho, wo = out_shape
    taps, _, _, _, hp, wp = _tap_geometry(interpolation, h, w)
    width = 1 if taps == 1 else run_width(taps, nimg * hp * wp * x.itemsize)
    src, wq, plane = _padded_runs(x, interpolation, mode, cval, width)
    out = np.empty((nimg, ho, wo), dtype=x.dtype)

    def rows(r0, r1):
        r, c, wxc, wy, fill = _block_taps(r0, r1, h, w, wo, matrix, map_x, map_y, interpolation, mode, x.dtype)
        r *= wq
        r += c
        _sample_block(r, wxc, wy, fill, src, wq, plane, out[:, r0:r1].reshape(nimg, -1), cval)

    run_chunks(rows, _row_blocks(ho, wo, nimg))
    return out


def _point_index_type(nimg, h, w, ho, wo):
    """Index type of the point sampler for a batch: ``"int"`` when every flat index of the
    input and output batches fits in 32 bits and both input sides are below ``_INT32_SIDE``
    (so that tap indices, reflect periods and the clamped far positions do too), else
    ``"long long"``."""
    fits = nimg * h * w <= _INT32_MAX and nimg * ho * wo <= _INT32_MAX and max(h, w) < _INT32_SIDE
    return "int" if fits else "long long"


@primitive("sample_points", "cupy")
def _sample_points_cupy(be, x, out_shape, matrix=None, map_x=None, map_y=None, *,
                        interpolation="linear", mode="constant", cval=0.0, tables=None):
    """The CUDA twin (``tables``, always None here, is ``point_tables``' answer on CuPy)."""
    xp = be.xp
    x = xp.ascontiguousarray(x)
    nimg, h, w = x.shape
    ho, wo = out_shape
    dt = x.dtype
    if matrix is None:
        mat = np.zeros(9)
        # float32 maps are read as stored (half the traffic of float64, no conversion pass)
        mdt = xp.float32 if map_x.dtype == np.float32 and map_y.dtype == np.float32 else xp.float64
        mx = xp.ascontiguousarray(xp.asarray(map_x, dtype=mdt))
        my = xp.ascontiguousarray(xp.asarray(map_y, dtype=mdt))
        use_maps = 1
    else:
        mat = np.asarray(matrix, dtype=np.float64).ravel()  # kernel arguments: no copy to the device
        mx = my = xp.zeros(1, dtype=xp.float64)
        use_maps = 0
    out = xp.empty((nimg, ho, wo), dtype=dt)
    index = _point_index_type(nimg, h, w, ho, wo)
    it = np.int32 if index == "int" else np.int64
    staged = interpolation in STAGED_INTERPOLATIONS and INTERPOLATIONS[interpolation] >= 2
    kern = _POINT.get(f"warp_point<{type_name(dt)}, {INTERPOLATIONS[interpolation]}, {TAP_MODE[mode]}, "
                      f"{type_name(mx.dtype)}, {index}, {int(staged)}>")
    lanes = _MAP_LANES if matrix is None else _lanes_shift(mat, ho, wo)
    if staged and lanes == 5:
        lanes = STAGED_ROW_LANES  # squarish tiles: the smallest footprint per output pixel
    tw, th = (256, 1) if lanes == 5 else (32, 8)  # the kernel's tiles (rows of 256 for row warps)
    grid = (min(-(-wo // tw), (1 << 31) - 1), min(-(-ho // th), 65535))
    kern(grid, (256,), (
        x, out, *(np.float64(v) for v in mat), mx, my, np.int32(use_maps), it(nimg), it(h), it(w),
        it(ho), it(wo), dt.type(cval), np.int32(mode == "constant"), np.int32(lanes),
    ))
    return out


#: interpolations whose taps the point sampler reads through shared memory: each block reads
#: its tile's source footprint once (coalesced rows) instead of every thread gathering its
#: 16 (cubic) or 64 (Lanczos-4) taps through L1, where an H200 profile of the cubic rotation
#: found the gathers L1-bound with 57 % excess sectors. Linear and nearest keep the direct
#: gathers (2 x 2 and 1 taps; the undistortion is bound by instruction issue, not by its
#: loads) and have no staged specialisation.
STAGED_INTERPOLATIONS = frozenset({"cubic", "lanczos4"})

#: warp shape (``lanes_shift``) of a staged tile whose warps would be rows (maps, matrices near
#: the axes): 32 x 8 tiles of 16 x 2 warps, whose footprint under a near-identity map is about
#: 35 x 11 source pixels for 256 outputs, where a 256 x 1 tile's is about 259 x 5
STAGED_ROW_LANES = 4


#: warp shape (``lanes_shift``) for maps: rows of 32, as the maps and the output are laid out
_MAP_LANES = 5


def _lanes_shift(mat, ho, wo):
    """log2 of the warp's width in output columns (2 to 5; its height is 32 / width) for the
    map ``(x, y, 1) -> mat (x, y, 1)``: the shape whose source footprint spans the fewest rows,
    ``|dy/dx| (width - 1) + |dy/dy| (height - 1)``, at the centre of the output (ties: wider)."""
    m = np.asarray(mat, dtype=np.float64).reshape(3, 3)
    cx, cy = (wo - 1) / 2.0, (ho - 1) / 2.0
    px, py, pw = m @ [cx, cy, 1.0]
    if not (np.isfinite(pw) and abs(pw) > 1e-12):
        return 5
    # Jacobian of the source row y = py / pw along output columns and rows
    dyx = (m[1, 0] - py / pw * m[2, 0]) / pw
    dyy = (m[1, 1] - py / pw * m[2, 1]) / pw
    spans = {lx: abs(dyx) * ((1 << lx) - 1) + abs(dyy) * ((32 >> lx) - 1) for lx in (5, 4, 3, 2)}
    best = min(spans.values())
    return max(lx for lx, v in spans.items() if v <= best * (1 + 1e-9) + 1e-12)


def _coverage(gx0, gx1, gy0, gy1, cx0, cx1, cy0):
    """Signed area under one quad edge inside a pixel column, clamped to a unit row band.

    The edge runs from ``(gx0, gy0)`` to ``(gx1, gy1)``; the pixel spans ``[cx0, cx1]`` in x
    and ``[cy0, cy0 + 1]`` in y. Returns ``sign(dx) * integral over the edge's x-range inside
    the column of clamp(y - cy0, 0, 1) dx``. Summed over a closed polygon this is the area of
    the polygon inside the pixel (up to the orientation sign).

    Over the overlap ``[u0, u1]`` the edge's height rises linearly from ``a`` by ``rise``, so
    the integral is ``(P(a + rise) - P(a)) (u1 - u0) / rise`` with ``P`` the antiderivative
    of the clamp (:func:`_clamp_antiderivative`), or ``clamp(a + rise / 2) (u1 - u0)`` when
    ``|rise| < 1e-7``. Everything but ``a`` depends on the column alone (shape ``(n, 1, kc)``).
    """
    lo = np.minimum(gx0, gx1)
    hi = np.maximum(gx0, gx1)
    u0 = np.maximum(lo, cx0)
    length = np.maximum(np.minimum(hi, cx1) - u0, 0.0)
    dx = gx1 - gx0
    slope = np.where(dx != 0, (gy1 - gy0) / np.where(dx != 0, dx, 1.0), 0.0)
    rise = length * slope
    signed = np.sign(dx) * length
    small = np.abs(rise) < 1e-7
    wide = np.where(small, 0.0, signed / np.where(small, 1.0, rise))
    narrow = np.where(small, signed, 0.0)
    a = gy0 + (u0 - gx0) * slope - cy0
    out = 0.0
    if wide.any():
        out = (_clamp_antiderivative(a + rise) - _clamp_antiderivative(a)) * wide
    if narrow.any():
        mid = a + 0.5 * rise
        np.clip(mid, 0.0, 1.0, out=mid)
        out = out + mid * narrow
    return out


def _clamp_antiderivative(t):
    """``P(t) = integral_0^t clamp(s, 0, 1) ds``: 0, ``t^2 / 2`` or ``t - 1/2``."""
    c = np.clip(t, 0.0, 1.0)
    c *= c
    c *= 0.5
    t = t - 1.0
    np.maximum(t, 0.0, out=t)
    c += t
    return c


def footprint_weights(quads):
    """Coverage weights of a flat list of quads (n, 4, 2).

    Returns ``(c0, r0, weights)``: the first column and row of each quad's pixel box and the
    weights (n, rows, cols) of the pixels ``(r0 + a, c0 + b)``, summing to 1 per quad.
    """
    qx = quads[..., 0]
    qy = quads[..., 1]
    c0 = np.floor(_corner_extreme(np.minimum, qx) + 0.5).astype(np.intp)
    r0 = np.floor(_corner_extreme(np.minimum, qy) + 0.5).astype(np.intp)
    kc = int((np.ceil(_corner_extreme(np.maximum, qx) + 0.5).astype(np.intp) - c0).max())
    kr = int((np.ceil(_corner_extreme(np.maximum, qy) + 0.5).astype(np.intp) - r0).max())
    cols = c0[:, None] - 0.5 + np.arange(kc)  # left pixel edges (n, kc)
    rows = r0[:, None] - 0.5 + np.arange(kr)  # lower pixel edges (n, kr)
    cov = np.zeros((quads.shape[0], kr, kc))
    for e in range(4):
        gx0 = qx[:, e, None, None]
        gy0 = qy[:, e, None, None]
        gx1 = qx[:, (e + 1) % 4, None, None]
        gy1 = qy[:, (e + 1) % 4, None, None]
        cov += _coverage(gx0, gx1, gy0, gy1, cols[:, None, :], cols[:, None, :] + 1.0, rows[:, :, None])
    total = np.einsum("nrc->n", cov)[:, None, None]
    return c0, r0, cov / np.where(total == 0, 1.0, total)


def _corner_extreme(op, v):
    """``op`` (np.minimum or np.maximum) over the 4 corners ``v[:, 0..3]``: elementwise
    passes over columns, several times faster than a reduction along a length-4 axis."""
    return op(op(v[:, 0], v[:, 1]), op(v[:, 2], v[:, 3]))


@primitive("sample_footprint", "numpy")
def _sample_footprint_numpy(be, x, quads, *, mode="constant", cval=0.0):
    """Box-over-quad integral of the batch ``x`` (N, H, W) over ``quads`` (Ho, Wo, 4, 2)."""
    nimg, h, w = x.shape
    ho, wo = quads.shape[:2]
    q = np.asarray(quads, dtype=np.float64).reshape(-1, 4, 2)
    with np.errstate(over="ignore", invalid="ignore"):  # a NaN or Inf corner makes the sum non-finite
        bad = ~np.isfinite(np.einsum("nij->n", q))
    if bad.any():
        q = np.where(bad[:, None, None], 0.0, q)
    out = np.empty((nimg, q.shape[0]), dtype=x.dtype)
    flat_x = x.reshape(nimg, -1)
    # box side per quad; chunks keep the (quads x box x edges) temporaries near 2**21 elements
    qx, qy = q[..., 0], q[..., 1]
    side = np.maximum(_corner_extreme(np.maximum, qx) - _corner_extreme(np.minimum, qx),
                      _corner_extreme(np.maximum, qy) - _corner_extreme(np.minimum, qy)) + 2.0
    budget = 2**21 // 4
    chunks = []
    start = 0
    while start < q.shape[0]:
        step = 1 << 15
        while step > 1 and step * side[start:start + step].max() ** 2 > budget:
            step //= 2
        chunks.append(slice(start, min(start + step, q.shape[0])))
        start = chunks[-1].stop

    def chunk(sl):
        c0, r0, wts = footprint_weights(q[sl])
        kr, kc = wts.shape[1:]
        ri = _boundary.index(r0[:, None] + np.arange(kr), h, mode)
        ci = _boundary.index(c0[:, None] + np.arange(kc), w, mode)
        lin = np.maximum(ri, 0)[:, :, None] * w + np.maximum(ci, 0)[:, None, :]
        vals = flat_x[:, lin]
        fill = (ri[:, :, None] < 0) | (ci[:, None, :] < 0)
        if fill.any():
            vals = np.where(fill[None], x.dtype.type(cval), vals)
        unused = wts == 0  # box pixels outside the quad are not read (NaN stays local)
        if unused.any():
            vals = np.where(unused[None], x.dtype.type(0), vals)
        out[:, sl] = np.einsum("bnrc,nrc->bn", vals, wts.astype(x.dtype))

    # independent chunks of output pixels on the thread pool
    run_chunks(chunk, [(sl,) for sl in chunks])
    if bad.any():
        out[:, bad] = cval
    return out.reshape(nimg, ho, wo)


@primitive("sample_footprint", "cupy")
def _sample_footprint_cupy(be, x, quads, *, mode="constant", cval=0.0):
    xp = be.xp
    x = xp.ascontiguousarray(x)
    nimg, h, w = x.shape
    ho, wo = quads.shape[:2]
    q = xp.ascontiguousarray(xp.asarray(quads, dtype=xp.float64))
    out = xp.empty((nimg, ho, wo), dtype=x.dtype)
    kern = _FOOTPRINT.get(f"warp_footprint<{type_name(x.dtype)}, {TAP_MODE[mode]}>")
    launch_1d(kern, ho * wo, (
        x, out, q, np.int64(nimg), np.int64(h), np.int64(w), np.int64(ho * wo), x.dtype.type(cval),
    ))
    return out
