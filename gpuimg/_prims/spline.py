"""B-spline primitives: the prefilter along one axis and the samplers of ``gpuimg.spline``.

``spline_prefilter(x, axis, order, mode)``
    Interpolating B-spline coefficients of ``x`` along ``axis`` (orders 2-5), with the exact
    boundary initialisation of scipy.ndimage for ``mode``. Returns a new array of ``x.dtype``.
``spline_sample(coeffs, coords, order, mode, cval, offset)``
    ``coeffs`` is ``(batch, *spatial)`` with ``d = len(spatial) <= 3``, ``coords`` is
    ``(d, m)``; returns ``(batch, m)`` values of the order-``order`` spline at
    ``coords + offset`` with scipy.ndimage's boundary rules (``offset`` is the pre-padding).
``spline_sample_grid(coeffs, axis_coords, order, mode, cval, offset)``
    The same on the tensor grid of one coordinate vector per spatial axis (zoom, shift,
    diagonal affine maps); returns ``(batch, *[len(v) for v in axis_coords])``. The NumPy
    twin applies one sparse weight matrix per axis (``W_y C W_x^T``), exact because the
    B-spline and the boundary rules are separable.
``spline_sample_grad2d(coeffs, coords, mode, cval)``
    Cubic spline value and gradient ``(3, batch, m)`` = (value, d/dy, d/dx) for 2-D
    coefficient arrays; ``mode`` in nearest, constant, grid-constant (modes that do not fold
    the coordinate, so the gradient is the derivative of the sampled function).

The NumPy twin of ``spline_sample`` gathers its taps itself for 2-D and 3-D samples of orders
1-5 with many points (:func:`_sample_taps`, the point sampler's tap runs of
:mod:`gpuimg._prims.taps`; 2048 x 2048 float32 cubic on one core: about 170 ms against
280 ms for SciPy's sampler); the other twins run scipy.ndimage's C sampler (which releases
the GIL) on chunks of the work in a thread pool. The prefilter is, along axes at least as
long as the filter, the recursions' impulse response as a truncated symmetric FIR run as
banded GEMMs (:func:`fir_taps`, :mod:`gpuimg._prims.banded`; 2048 x 2048 float32 cubic: 20 ms against
45 ms for the recursions, 91 ms for SciPy), and the recursions on shorter axes. The CUDA twins
are ``kernels/spline_prefilter.cu`` and ``kernels/spline_sample.cu``.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import scipy.ndimage as ndi

from gpuimg import _boundary
from gpuimg._backend import primitive
from gpuimg._kernels import KernelFamily, launch_1d, type_name
from gpuimg._parallel import run_chunks, splits as _splits, workers
from gpuimg._prims import banded, taps
from gpuimg._prims.taps import gather_taps, run_width, tap_rows

#: Poles of the direct B-spline filter per order (Unser 1999, Table I).
POLES = {
    2: (-0.171572875253809902396622551580603843,),
    3: (-0.267949192431122706472553658494127633,),
    4: (-0.361341225900220177092212841325675255, -0.013725429297339121360331226939128204),
    5: (-0.430575347099973791851434783493520110, -0.043096288203264653822712376822550182),
}
#: Prefilter initialisation per mode (kernels/spline_prefilter.cu INIT codes).
PREFILTER_INIT = {
    "mirror": 0, "constant": 0, "wrap": 0, "grid-constant": 0,
    "reflect": 1, "nearest": 1,
    "grid-wrap": 2,
}
#: Modes the gradient sampler accepts (they leave the coordinate unfolded).
GRAD_MODES = ("nearest", "constant", "grid-constant")
_TYPES = ("float", "double")

_PREFILTER = KernelFamily(
    "spline_prefilter.cu", [f"spline_prefilter<{t}, {i}>" for t in _TYPES for i in (0, 1, 2)]
)
_SAMPLE = KernelFamily(
    "spline_sample.cu",
    [f"spline_sample<{t}, {c}, {o}, {d}>" for t in _TYPES for c in _boundary.MODE_CODES.values() for o in range(6)
     for d in (1, 2, 3)]
    + [f"spline_sample_grad2d<{t}, {_boundary.MODE_CODES[m]}>" for t in _TYPES for m in GRAD_MODES],
)

_CHUNK = 1 << 16
# ---------------------------------------------------------------------------------------
# prefilter
# ---------------------------------------------------------------------------------------

def _prefilter_rows(c, order, mode):
    """In-place prefilter of every column of ``c`` (n, lines) along axis 0, one row at a time.

    The same recursions and exact initialisations as scipy's per-line loop, vectorised across
    the lines; used for non-contiguous axes, where scipy copies each line out and back, and for
    short reflect/nearest lines (the half-sample symmetric start sums the original first sample
    in its last term, as SciPy does since 1.18; before, it read its running sum there,
    scipy/scipy#24550).
    """
    n = c.shape[0]
    init = PREFILTER_INIT[mode]
    gain = 1.0
    for z in POLES[order]:
        gain *= (1.0 - z) * (1.0 - 1.0 / z)
    c *= c.dtype.type(gain)
    for z in POLES[order]:
        zt = c.dtype.type(z)
        powers = z ** np.arange(n, dtype=np.float64)
        if init == 0:
            zn1 = z ** (n - 1)
            w = np.zeros(n)
            w[0], w[n - 1] = 1.0, zn1
            w[1:n - 1] += powers[1:n - 1]
            w[n - 2:0:-1] += powers[1:n - 1] * zn1
            c[0] = (w / (1.0 - zn1 * zn1)).astype(c.dtype) @ c
        elif init == 1:
            zn = z ** n
            w = np.zeros(n)
            w[0], w[n - 1] = 1.0, zn
            w[1:n - 1] += powers[1:n - 1]
            w[n - 2:0:-1] += powers[1:n - 1] * zn
            running = w.astype(c.dtype) @ c + c.dtype.type(zn / z) * (c[n - 1] + c.dtype.type(zn) * c[0])
            c[0] = running * c.dtype.type(z / (1.0 - zn * zn)) + c[0]
        else:
            w = np.zeros(n)
            w[0] = 1.0
            w[n - 1:0:-1] = powers[1:n]
            c[0] = (w / (1.0 - z ** n)).astype(c.dtype) @ c
        for i in range(1, n):
            c[i] += zt * c[i - 1]
        if init == 0:
            c[n - 1] = (zt * c[n - 2] + c[n - 1]) * c.dtype.type(z / (z * z - 1.0))
        elif init == 1:
            c[n - 1] *= c.dtype.type(z / (z - 1.0))
        else:
            c[n - 1] = (c[n - 1] + powers[1:n].astype(c.dtype) @ c[: n - 1]) * c.dtype.type(z / (z ** n - 1.0))
        for i in range(n - 2, -1, -1):
            np.subtract(c[i + 1], c[i], out=c[i])
            c[i] *= zt


#: the extension each prefilter initialisation assumes, as a boundary mode of the FIR form
_FIR_MODE = {0: "mirror", 1: "reflect", 2: "wrap"}
#: reflect/nearest lines shorter than this run the exact start of :func:`_prefilter_rows`
#: (SciPy's differs by the largest pole's ``|z|^2n`` before 1.18: 0.43^64 < 1e-23 at 32)
_SHORT_REFLECT = 32
#: the FIR form keeps taps down to this fraction of the central one, per sample size
_FIR_REL = {4: 1e-9, 8: 1e-17}


@functools.lru_cache(maxsize=16)
def fir_taps(order: int, itemsize: int) -> np.ndarray:
    """The prefilter of ``order`` as a symmetric FIR: its impulse response (SciPy's filter of a
    unit impulse far from any border), cut where the taps fall below ``_FIR_REL[itemsize]`` of
    the centre (each pole ``z`` decays as ``|z|^k``; cubic: 31 taps for float32, 59 for
    float64). Read-only."""
    n = 4001
    impulse = np.zeros(n)
    impulse[n // 2] = 1.0
    h = ndi.spline_filter1d(impulse, order, mode="mirror")
    c = n // 2
    keep = np.nonzero(np.abs(h) > _FIR_REL[itemsize] * abs(h[c]))[0]
    r = max(c - keep[0], keep[-1] - c)
    h = np.ascontiguousarray(h[c - r:c + r + 1])
    h.flags.writeable = False
    return h


@primitive("spline_prefilter", "numpy")
def _prefilter_numpy(be, x, axis, order, mode):
    x = np.asarray(x)
    axis = axis % x.ndim
    n = x.shape[axis]
    if banded.serves(x.dtype):
        # the recursions with their exact initialisations equal this FIR over the extension
        # they assume (to the cut-off) once the axis is as long as the filter
        h = fir_taps(order, x.dtype.itemsize)
        if n >= h.size:
            out = banded.correlate1d(x, h, axis, _FIR_MODE[PREFILTER_INIT[mode]], 0.0, h.size // 2)
            if out is not None:
                return out
    if 1 < n < _SHORT_REFLECT and PREFILTER_INIT[mode] == 1:
        # SciPy before 1.18 starts short reflect lines off by O(z^2n): all lines at once here
        c = np.moveaxis(x, axis, 0).copy()
        _prefilter_rows(c.reshape(n, -1), order, mode)  # a view of the contiguous copy
        return np.ascontiguousarray(np.moveaxis(c, 0, axis))
    inner = math.prod(x.shape[axis + 1:])
    if n > 1 and inner >= 256:
        out = np.array(x, copy=True, order="C")
        blocks = out.reshape(-1, n, inner)
        run_chunks(lambda b: _prefilter_rows(blocks[b], order, mode), [(b,) for b in range(blocks.shape[0])])
        return out
    out = np.empty(x.shape, dtype=x.dtype)
    others = [a for a in range(x.ndim) if a != axis]
    if not others or x.size < _CHUNK:
        ndi.spline_filter1d(x, order, axis=axis, output=out, mode=mode)
        return out
    split = max(others, key=lambda a: x.shape[a])
    idx = [slice(None)] * x.ndim

    def one(sl):
        idx_l = list(idx)
        idx_l[split] = sl
        ndi.spline_filter1d(x[tuple(idx_l)], order, axis=axis, output=out[tuple(idx_l)], mode=mode)

    run_chunks(one, [(sl,) for sl in _splits(x.shape[split], 4 * workers())])
    return out


#: Threads per prefilter block (GPUIMG_SPLINE_THREADS in kernels/spline_prefilter.cu).
_PREFILTER_THREADS = 256
#: Fewest samples per segment of a line in the parallel prefilter.
_MIN_SEGMENT = 64
#: Threads (lines x segments) that fill a large GPU: 132 SMs x 2048 resident threads on an
#: H100 / H200 is about 2^18.
_FILL_THREADS = 1 << 18


def _prefilter_segments(n, lines, inner, itemsize):
    """Segments per line: the smallest power of two with ``lines * segs >= _FILL_THREADS``, as
    long as every segment keeps at least ``_MIN_SEGMENT`` samples and a block's 256 threads
    hold whole lines; along a strided axis (``inner > 1``) at most ``256 * itemsize / 32``, so
    that a warp spans 32 bytes of neighbouring lines per load. Segments stay below 2^30 samples.
    """
    cap = _PREFILTER_THREADS if inner == 1 else max(1, _PREFILTER_THREADS * itemsize // 32)
    segs = 1
    while segs < _PREFILTER_THREADS and (-(-n // segs) >= 1 << 30 or (
            2 * segs <= cap and lines * segs < _FILL_THREADS and n // (2 * segs) >= _MIN_SEGMENT)):
        segs *= 2
    return segs


@primitive("spline_prefilter", "cupy")
def _prefilter_cupy(be, x, axis, order, mode):
    xp = be.xp
    out = xp.array(x, copy=True, order="C")
    axis = axis % out.ndim
    n = out.shape[axis]
    if n < 2 or out.size == 0:
        return out
    inner = math.prod(out.shape[axis + 1:])
    lines = out.size // n
    segs = _prefilter_segments(n, lines, inner, out.dtype.itemsize)
    tiles = -(-lines // (_PREFILTER_THREADS // segs))
    poles = POLES[order] + (0.0,)
    kern = _PREFILTER.get(f"spline_prefilter<{type_name(out.dtype)}, {PREFILTER_INIT[mode]}>")
    kern((min(tiles, 65535 * 16),), (_PREFILTER_THREADS,),
         (out, np.int64(lines), np.int64(n), np.int64(inner), np.int32(segs),
          np.int32(len(POLES[order])), np.float64(poles[0]), np.float64(poles[1])))
    return out


# ---------------------------------------------------------------------------------------
# sampler
# ---------------------------------------------------------------------------------------

@primitive("spline_sample", "numpy")
def _sample_numpy(be, coeffs, coords, order, mode, cval=0.0, offset=0.0):
    coeffs = np.asarray(coeffs)
    coords = np.asarray(coords)
    if offset or coords.dtype.kind != "f":
        coords = coords.astype(np.float64) + offset
    batch, m = coeffs.shape[0], coords.shape[1]
    if _gathers_taps(coeffs, coords, order):
        return _sample_taps(coeffs, coords, order, mode, cval)
    out = np.empty((batch, m), dtype=coeffs.dtype)

    def one(b, sl):
        ndi.map_coordinates(coeffs[b], coords[:, sl], output=out[b, sl], order=order,
                            mode=mode, cval=cval, prefilter=False)

    parts = max(1, min(4 * workers(), m // _CHUNK)) if workers() > 1 else 1
    run_chunks(one, [(b, sl) for b in range(batch) for sl in _splits(m, parts)])
    return out


#: B-spline weights of order 3 at the taps of fraction t, w_k = (A_k u_k + B_k) u_k^2 + C_k with
#: u = (1 - t, t, 1 - t, t): (1 - t)^3 / 6, 2/3 - t^2 + t^3 / 2, 2/3 - (1 - t)^2 + (1 - t)^3 / 2,
#: t^3 / 6 (rows A, B, C)
_CUBIC_ABC = np.array([[1 / 6, 0.5, 0.5, 1 / 6], [0.0, -1.0, -1.0, 0.0], [0.0, 2 / 3, 2 / 3, 0.0]])


@functools.lru_cache(maxsize=4)
def _cubic_constants(dtype, conjugate):
    """``_CUBIC_ABC``'s rows tiled for ``_CHUNK`` points (odd taps negated with
    ``conjugate``), so that the weights of all taps of a block come from contiguous
    whole-array operations. Read-only."""
    abc = _CUBIC_ABC.astype(dtype)
    if conjugate:
        abc[:, 1::2] *= -1
    rows = tuple(np.tile(r, _CHUNK) for r in abc)
    for r in rows:
        r.flags.writeable = False
    return rows


def _tap_weights(x, start, order, ntaps, dtype, conjugate):
    """``(points, ntaps)`` B-spline weights in ``dtype`` of at most ``_CHUNK`` positions ``x``
    whose first tap is at ``start - order // 2`` (scipy.ndimage's formulas; taps past
    ``order + 1`` weigh 0); ``conjugate`` negates the odd taps (see
    :func:`gpuimg._prims.taps.gather_taps`)."""
    if order == 3:
        t = (x - start).astype(dtype)
        u = np.empty((t.size, 4), dtype=dtype)
        np.subtract(1, t, out=u[:, 0])
        u[:, 1] = t
        u[:, 2] = u[:, 0]
        u[:, 3] = t
        u = u.ravel()
        a, b, c = (r[:u.size] for r in _cubic_constants(np.dtype(dtype), conjugate))
        w = u * a
        w += b
        w *= u
        w *= u
        w += c
        return w.reshape(-1, 4)
    wts = np.zeros((x.size, ntaps), dtype=dtype)
    wts[:, :order + 1] = _weights(x, order).T
    if conjugate:
        wts[:, 1::2] *= -1
    return wts


#: the gathered-taps sampler serves 2-D and 3-D samples of orders 1-5 when there are at least this
#: many points per coefficient (building the tap runs costs about one pass over 2 to 6 copies
#: of the coefficients) and at least ``_CHUNK`` of them; runs of pairs past
#: ``taps.RUNS_MAX_BYTES``, SciPy's sampler when even those would pass it
_TAPS_MIN_DENSITY = 0.25


def _tap_layout(order):
    """Taps per axis of the gathered sampler (``order + 1`` made even), the reach beyond the
    edges to which it clips positions (past it every tap reads the same edge or fill value)
    and the padding that holds every tap of a clipped position."""
    return order + 1 + (order + 1) % 2, order // 2 + 2, order + 4


def _gathers_taps(coeffs, coords, order):
    """Whether :func:`_sample_taps` serves this call (else SciPy's sampler does)."""
    if coeffs.ndim not in (3, 4) or not 1 <= order <= 5 or coeffs.dtype not in (np.float32, np.float64):
        return False
    batch, spatial = coeffs.shape[0], coeffs.shape[1:]
    m = coords.shape[1]
    if m < _CHUNK or m < _TAPS_MIN_DENSITY * math.prod(spatial):
        return False
    _, _, pad = _tap_layout(order)
    if 2 * batch * math.prod(n + 2 * pad for n in spatial) * coeffs.dtype.itemsize > taps.RUNS_MAX_BYTES:
        return False  # even runs of pairs would pass the cap
    return bool(np.isfinite(coords).all())


def _sample_taps(coeffs, coords, order, mode, cval):
    """``spline_sample`` of 2-D or 3-D coefficients by gathered taps (:mod:`gpuimg._prims.taps`).

    Each axis folds its coordinate as scipy.ndimage does (:func:`_fold`), takes the
    ``order + 1`` B-spline weights of SciPy's formulas (:func:`_tap_weights`) and reads its
    taps from the coefficients padded by the taps' boundary rule (mirror for "constant" and
    "wrap", the fill value for "grid-constant", else the mode's own): the sum over the same
    taps and weights as scipy.ndimage's ``map_coordinates``, accumulated in the
    coefficients' dtype. The ``(z, y)`` taps are rows of the gather; along x, even orders get
    one more tap of weight 0 so that the taps pair up.
    """
    batch, *spatial = coeffs.shape
    d = len(spatial)
    m = coords.shape[1]
    dtype = coeffs.dtype
    ntaps, reach, pad = _tap_layout(order)
    tap_mode = "mirror" if mode in ("constant", "wrap") else mode
    padded = _boundary.pad(coeffs, ((0, 0),) + ((pad, pad),) * d, tap_mode, cval)
    pshape = padded.shape[1:]
    items, wq = tap_rows(padded.reshape(-1, pshape[-2], pshape[-1]), run_width(ntaps, padded.nbytes))
    # runs per padded row and per padded slice, along the axes before x
    strides = (pshape[-2] * wq, wq)[-(d - 1):]
    plane = math.prod(pshape[:-1]) * wq
    k = order + 1
    # tap rows in (z, y) order and the run step from one to the next
    steps = [wq] * (k - 1) if d == 2 else ([wq] * (k - 1) + [strides[0] - (k - 1) * wq]) * k
    steps = steps[:k ** (d - 1) - 1]
    out = np.empty((batch, m), dtype=dtype)

    def axis(c, n, conjugate):
        """Tap origins (padded) and ``(points, ntaps)`` weights of one axis; the outside mask."""
        x = _fold(c, n, mode)
        outside = ~(x > -1.0) if mode == "constant" else None  # only "constant" folds to -1
        if outside is not None:
            x[outside] = 0.0
        np.clip(x, -reach, n - 1 + reach, out=x)
        start = np.floor(x if order & 1 else x + 0.5)
        wts = _tap_weights(x, start, order, ntaps, dtype, conjugate)
        origin = start.astype(np.intp)
        origin += pad - order // 2
        return origin, wts, outside

    def block(p0, p1):
        ix, wxc, outside = axis(coords[d - 1, p0:p1], spatial[-1], True)
        base, wrows = ix, None
        for a in range(d - 1):
            io, wo, out_a = axis(coords[a, p0:p1], spatial[a], False)
            io *= strides[a]
            base += io
            wo = wo[:, :k]
            wrows = wo if wrows is None else (wrows[:, :, None] * wo[:, None, :]).reshape(len(wo), -1)
            if out_a is not None:
                outside |= out_a
        gather_taps(items, wq, plane, base, wxc, wrows, out[:, p0:p1], steps)
        if outside is not None and outside.any():
            out[:, p0:p1][:, outside] = dtype.type(cval)

    run_chunks(block, [(p0, min(p0 + _CHUNK, m)) for p0 in range(0, m, _CHUNK)])
    return out


@primitive("spline_sample", "cupy")
def _sample_cupy(be, coeffs, coords, order, mode, cval=0.0, offset=0.0):
    xp = be.xp
    c = xp.ascontiguousarray(coeffs)
    t = c.dtype.type
    xy = xp.ascontiguousarray(xp.asarray(coords, dtype=c.dtype))
    d, m = xy.shape
    batch = c.shape[0]
    sizes = (1,) * (3 - d) + tuple(c.shape[1:])
    out = xp.empty((batch, m), dtype=c.dtype)
    kern = _SAMPLE.get(f"spline_sample<{type_name(c.dtype)}, {_boundary.MODE_CODES[mode]}, {order}, {d}>")
    launch_1d(kern, m, (c, xy, out, np.int64(batch), np.int64(m),
                        np.int64(sizes[0]), np.int64(sizes[1]), np.int64(sizes[2]), t(offset), t(cval)))
    return out


def _fold(x, n, mode):
    """scipy.ndimage's coordinate folding (``map_coordinate``), vectorised; -1 marks outside."""
    x = np.array(x, dtype=np.float64)
    if mode in ("nearest", "grid-constant"):
        return x
    if n <= 1 and mode != "constant":
        return np.zeros_like(x)
    if x.size and x.min() >= 0 and x.max() <= n - 1:  # all inside (most maps): nothing to fold
        return x
    lo, hi = x < 0, x > n - 1
    if mode == "constant":
        x[lo | hi] = -1.0
    elif mode == "mirror":
        p = 2 * n - 2
        a = p * np.trunc(-x[lo] / p) + x[lo]
        x[lo] = np.where(a <= 1 - n, a + p, -a)
        b = x[hi] - p * np.trunc(x[hi] / p)
        x[hi] = np.where(b >= n, p - b, b)
    elif mode == "reflect":
        p = 2 * n
        a = x[lo]
        a = np.where(a < -p, p * np.trunc(-a / p) + a, a)
        x[lo] = np.where(a < -n, a + p, -a - 1)
        b = x[hi] - p * np.trunc(x[hi] / p)
        x[hi] = np.where(b >= n, p - b - 1, b)
    elif mode == "wrap":
        p = n - 1
        x[lo] = x[lo] + p * (np.trunc(-x[lo] / p) + 1)
        x[hi] = x[hi] - p * np.trunc(x[hi] / p)
    else:  # grid-wrap
        x[lo] = x[lo] + n * (np.trunc((-1 - x[lo]) / n) + 1)
        x[hi] = x[hi] - n * np.trunc(x[hi] / n)
    return x


def _weights(x, order):
    """B-spline weights ``(order + 1, m)`` of the taps of ``x`` (scipy's formulas)."""
    x = x - np.floor(x if order & 1 else x + 0.5)
    w = np.empty((order + 1,) + x.shape)
    y, z = x, 1.0 - x
    if order == 0:
        w[0] = 1.0
        return w
    if order == 1:
        w[0] = 1.0 - x
    elif order == 2:
        w[1] = 0.75 - x * x
        w[0] = 0.5 * (0.5 - x) ** 2
    elif order == 3:
        w[1] = (y * y * (y - 2.0) * 3.0 + 4.0) / 6.0
        w[2] = (z * z * (z - 2.0) * 3.0 + 4.0) / 6.0
        w[0] = z * z * z / 6.0
    elif order == 4:
        t = x * x
        w[2] = t * (t * 0.25 - 0.625) + 115.0 / 192.0
        y = 1.0 + x
        w[1] = y * (y * (y * (5.0 - y) / 6.0 - 1.25) + 5.0 / 24.0) + 55.0 / 96.0
        w[3] = z * (z * (z * (5.0 - z) / 6.0 - 1.25) + 5.0 / 24.0) + 55.0 / 96.0
        t = (0.5 - x) ** 2
        w[0] = t * t / 24.0
    else:
        t = y * y
        w[2] = t * (t * (0.25 - y / 12.0) - 0.5) + 0.55
        t = z * z
        w[3] = t * (t * (0.25 - z / 12.0) - 0.5) + 0.55
        y, z = y + 1.0, z + 1.0
        w[1] = y * (y * (y * (y * (y / 24.0 - 0.375) + 1.25) - 1.75) + 0.625) + 0.425
        w[4] = z * (z * (z * (z * (z / 24.0 - 0.375) + 1.25) - 1.75) + 0.625) + 0.425
        t = (1.0 - x) ** 2
        w[0] = (1.0 - x) * t * t / 120.0
    w[order] = 1.0 - w[:order].sum(axis=0)
    return w


def _axis_matrix(cc, n, order, mode):
    """Sparse ``(m, n)`` tap-weight matrix of one axis, the weight each row puts on the fill
    value (grid-constant) and the rows that constant mode sets to the fill value."""
    import scipy.sparse as sp

    x = _fold(cc, n, mode)
    outside = ~(x > -1.0) if mode not in ("nearest", "grid-constant") else np.zeros(x.shape, dtype=bool)
    x = np.where(outside, 0.0, x)
    start = (np.floor(x) if order & 1 else np.floor(x + 0.5)).astype(np.int64) - order // 2
    w = _weights(x, order)
    j = start[None] + np.arange(order + 1)[:, None]
    if mode == "grid-constant":
        fill = ((j < 0) | (j >= n)) & ~outside[None]
        fill_w = np.where(fill, w, 0.0).sum(axis=0)
        w = np.where(fill, 0.0, w)
        j = np.clip(j, 0, n - 1)
    else:
        fill_w = np.zeros(x.shape)
        tap = "mirror" if mode in ("constant", "wrap") else mode
        j = _boundary.index(j, n, tap)
    w = np.where(outside[None], 0.0, w)
    rows = np.broadcast_to(np.arange(x.size), j.shape)
    mat = sp.csr_matrix((w.ravel(), (rows.ravel(), j.ravel())), shape=(x.size, n))
    return mat, fill_w, outside


@primitive("spline_sample_grid", "numpy")
def _grid_numpy(be, coeffs, axis_coords, order, mode, cval=0.0, offset=0.0):
    c = np.asarray(coeffs)
    spatial = c.shape[1:]
    mats = [_axis_matrix(np.asarray(v, dtype=np.float64) + offset, n, order, mode) for v, n in zip(axis_coords, spatial)]
    out_shape = tuple(m[0].shape[0] for m in mats)
    out = np.empty((c.shape[0],) + out_shape, dtype=c.dtype)

    def one(b):
        r = c[b].astype(np.float64, copy=False)
        for axis, (mat, _, _) in enumerate(mats):
            r = np.moveaxis(r, axis, 0)
            rest = r.shape[1:]
            r = np.moveaxis(np.asarray(mat @ r.reshape(r.shape[0], -1)).reshape((mat.shape[0],) + rest), 0, axis)
        if mode == "grid-constant" and cval != 0.0:
            inside = 1.0
            for axis, (_, fill_w, _) in enumerate(mats):
                shape = [1] * len(mats)
                shape[axis] = -1
                inside = inside * (1.0 - fill_w).reshape(shape)
            r = r + cval * (1.0 - inside)
        for axis, (_, _, outside) in enumerate(mats):
            if outside.any():
                idx = [slice(None)] * len(mats)
                idx[axis] = outside
                r[tuple(idx)] = cval
        out[b] = r

    run_chunks(one, [(b,) for b in range(c.shape[0])])
    return out


@primitive("spline_sample_grid", "cupy")
def _grid_cupy(be, coeffs, axis_coords, order, mode, cval=0.0, offset=0.0):
    xp = be.xp
    vecs = [xp.asarray(v, dtype=coeffs.dtype) for v in axis_coords]
    grid = xp.stack(xp.meshgrid(*vecs, indexing="ij"))
    shape = grid.shape[1:]
    vals = _sample_cupy(be, coeffs, grid.reshape(len(vecs), -1), order, mode, cval, offset)
    return vals.reshape((coeffs.shape[0],) + shape)


def _grad_axis(cc, n, mode):
    """Tap indices (4, m), value and derivative weights (4, m), inside mask of one axis."""
    fl = np.floor(cc)
    f = cc - fl
    g = 1.0 - f
    f2, g2 = f * f, g * g
    w = np.empty((4,) + cc.shape, dtype=cc.dtype)
    dw = np.empty_like(w)
    w[0] = g2 * g / 6
    w[3] = f2 * f / 6
    w[1] = 2.0 / 3.0 - f2 + 0.5 * f2 * f
    w[2] = 1.0 - w[0] - w[1] - w[3]
    dw[0] = -0.5 * g2
    dw[3] = 0.5 * f2
    dw[1] = f * (1.5 * f - 2)
    dw[2] = -(dw[0] + dw[1] + dw[3])
    j = fl.astype(np.int64)[None] + np.arange(-1, 3)[:, None]
    inside = None
    if mode == "nearest":
        np.clip(j, 0, n - 1, out=j)
    elif mode == "constant":
        inside = (cc >= 0) & (cc <= n - 1)
        if (j.min() < 0) or (j.max() >= n):
            j = _boundary.index(j, n, "mirror")
    else:
        j = np.where((j >= 0) & (j < n), j, -1)
    return j, w, dw, inside


def _grad_chunk(c, xy, mode, cval, out):
    batch, h, wd = c.shape
    iy, wy, dy, in_y = _grad_axis(xy[0], h, mode)
    ix, wx, dx, in_x = _grad_axis(xy[1], wd, mode)
    taps = np.maximum(iy, 0)[:, None, :] * wd + np.maximum(ix, 0)[None, :, :]
    for b in range(batch):
        vals = c[b].reshape(-1).take(taps)
        if mode == "grid-constant":
            vals = np.where((iy[:, None, :] < 0) | (ix[None, :, :] < 0), c.dtype.type(cval), vals)
        rv = np.einsum("klm,lm->km", vals, wx)
        rd = np.einsum("klm,lm->km", vals, dx)
        out[0, b] = np.einsum("km,km->m", rv, wy)
        out[1, b] = np.einsum("km,km->m", rv, dy)
        out[2, b] = np.einsum("km,km->m", rd, wy)
    if in_y is not None:
        outside = ~(in_y & in_x)
        if outside.any():
            out[0][:, outside] = cval
            out[1:, :, outside] = 0


@primitive("spline_sample_grad2d", "numpy")
def _grad_numpy(be, coeffs, coords, mode, cval=0.0):
    c = np.asarray(coeffs)
    xy = np.asarray(coords, dtype=c.dtype)
    m = xy.shape[1]
    out = np.empty((3, c.shape[0], m), dtype=c.dtype)
    parts = max(1, min(2 * workers(), m // (_CHUNK // 4))) if workers() > 1 else 1
    run_chunks(lambda sl: _grad_chunk(c, xy[:, sl], mode, cval, out[:, :, sl]), [(sl,) for sl in _splits(m, parts)])
    return out


@primitive("spline_sample_grad2d", "cupy")
def _grad_cupy(be, coeffs, coords, mode, cval=0.0):
    xp = be.xp
    c = xp.ascontiguousarray(coeffs)
    batch, h, wd = c.shape
    xy = xp.ascontiguousarray(xp.asarray(coords, dtype=c.dtype))
    m = xy.shape[1]
    out = xp.empty((3, batch, m), dtype=c.dtype)
    kern = _SAMPLE.get(f"spline_sample_grad2d<{type_name(c.dtype)}, {_boundary.MODE_CODES[mode]}>")
    launch_1d(kern, m, (c, xy, out, np.int64(batch), np.int64(m), np.int64(h), np.int64(wd),
                        c.dtype.type(cval)))
    return out
