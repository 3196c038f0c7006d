"""Correlation primitives behind :mod:`gpuimg.filters`.

``correlate1d(x, w, axis, mode, cval, center)``
    One 1-D pass along ``axis``: ``out[..., i, ...] = sum_j w[j] x_ext[..., i + j - center, ...]``.
``uniform1d(x, size, axis, mode, cval, center)``
    ``correlate1d`` with the box ``w = 1 / size`` (a running sum on the CPU).
``correlate_direct(x, w, mode, cval, centers)``
    Direct 2-D or 3-D correlation over the last ``w.ndim`` axes of ``x``, leading axes a batch:
    ``out[..., i] = sum_j w[j] x_ext[..., i + j - centers]`` (multi-indices).
``fft_correlate(xpad, w)``
    "Valid" correlation of an already boundary-padded array with ``w`` over its last
    ``w.ndim`` axes through real FFTs of length ``next_fast_len``; the output is shorter than
    ``xpad`` by ``w.shape[k] - 1`` along each of those axes.
``correlate_crossover()``
    The measured kernel sizes at which the FFT path overtakes direct evaluation on this backend.

``x_ext`` is ``x`` extended by the boundary ``mode`` (SciPy's names; ``cval`` for the constant
modes). ``x`` is float32 or float64 and results keep its dtype; ``w`` is a host NumPy array
or an array of the backend (kernels are small) and is cast to that dtype, except on the SciPy
paths (2-D direct correlation, and 1-D passes over non-finite data or boxes longer than
``BOX_BANDED_MAX_TAPS``), which accumulate in float64 as SciPy does. On the CPU, 1-D passes
of float data run as banded GEMMs (:mod:`gpuimg._prims.banded`).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import scipy.fft
import scipy.ndimage

from gpuimg import _boundary
from gpuimg._backend import primitive
from gpuimg._kernels import KernelFamily, launch_1d, type_name
from gpuimg._lru import LRU, device_constant
from gpuimg._parallel import run_chunks, run_ranges, splits, workers
from gpuimg._prims import banded
from gpuimg._prims.fft_axes import fft_workers, irfftn_by_axes

_TYPES = ("float", "double")
# at integer sample positions the grid-* modes read exactly what their plain twins read
_SAME_AT_INTEGERS = {"grid-wrap": "wrap", "grid-constant": "constant"}
_MODES = sorted({_boundary.MODE_CODES[_SAME_AT_INTEGERS.get(m, m)] for m in _boundary.MODE_CODES})
#: square 2-D kernel sizes with an unrolled tiled kernel (correlate_tiled_k)
_FIXED_K = (3, 5)
_FAMILY = KernelFamily(
    "convolve.cu",
    [
        f"{name}<{t}, {c}>"
        for name in ("correlate1d_axis", "correlate1d_rows", "correlate1d_cols", "correlate_tiled", "correlate_gather")
        for t in _TYPES
        for c in _MODES
    ]
    + [f"correlate_tiled_k<{t}, {c}, {k}>" for t in _TYPES for c in _MODES for k in _FIXED_K],
)


def _mode_code(mode):
    return _boundary.MODE_CODES[_SAME_AT_INTEGERS.get(mode, mode)]

# Threads and tile of correlate_tiled (gpuimg::CONV_* in kernels/convolve.cu).
_BLOCK = (32, 8, 1)
_TILE_X, _TILE_Y = 32, 32
_SHARED_LIMIT = 48 * 1024
_MAX_GRID_Z = 65535
_MAX_GRID_Y = 65535


# --------------------------------------------------------------------------------------
# 1-D pass
# --------------------------------------------------------------------------------------

# Up to this many bytes of taps, a pass along a non-contiguous axis runs as shifted
# multiply-adds of whole rows (streaming, in the input dtype), which measured 2-4x faster than
# SciPy's line-buffered loop on 2048x2048 images.
_SHIFT_ADD_MAX_BYTES = 128


#: Box filters up to this many taps run as banded GEMMs (gpuimg._prims.banded), longer ones as
#: SciPy's running sum, whose cost does not grow with the box
BOX_BANDED_MAX_TAPS = 64
#: Box filters: up to this many bytes of taps, shifted adds beat SciPy's running sum along a
#: non-contiguous axis (2048x2048: 45 against 54 ms at 25 float32 taps; 74 against 64 ms at
#: 15 float64 taps).
_BOX_SHIFT_ADD_MAX_BYTES = 96
#: Arrays from this many elements run SciPy's filters in blocks (1-D passes) or bands (2-D)
#: on the thread pool; they release the GIL (2048x2048 float32 uniform_filter1d along the
#: rows: 10.4 ms on one thread, 5.5 ms on two; 3x3 correlation 28.4 against 16.8 ms). Below
#: it the hand-over costs more than it saves (256x256: 121 against 437 us; 1024x1024 was a
#: tie on a loaded machine). Shifted adds stream memory and stay on one thread: in column
#: blocks on two threads they measured slower (256x256: 809 against 151 us; 2048x2048: 26.5
#: against 23.3 ms).
_THREAD_MIN_ELEMS = 1 << 19


def _shift_add(x, w, axis, mode, cval, center, out=None):
    n = len(w)
    pads = [(0, 0)] * x.ndim
    pads[axis] = (int(center), n - 1 - int(center))
    padded = _boundary.pad(x, pads, mode, cval)
    length = x.shape[axis]
    lead = (slice(None),) * axis
    dt = x.dtype.type
    out = np.multiply(padded[lead + (slice(0, length),)], dt(w[0]), out=out)
    tmp = np.empty_like(out)
    for j in range(1, n):
        np.multiply(padded[lead + (slice(j, j + length),)], dt(w[j]), out=tmp)
        out += tmp
    return out


def _in_blocks(x, axis, fn):
    """``fn(block, out_block)`` over blocks of ``x`` split along its longest axis other than
    ``axis`` (a 1-D pass along ``axis`` treats them independently), on the thread pool."""
    out = np.empty_like(x)
    others = [a for a in range(x.ndim) if a != axis]
    if not others or x.size < _THREAD_MIN_ELEMS or workers() == 1:
        fn(x, out)
        return out
    split = max(others, key=lambda a: x.shape[a])
    blocks = [(slice(None),) * split + (sl,) for sl in splits(x.shape[split], workers())]
    run_chunks(lambda idx: fn(x[idx], out[idx]), [(idx,) for idx in blocks])
    return out


@primitive("correlate1d", "numpy")
def _correlate1d_numpy(be, x, w, axis, mode, cval, center):
    axis = axis % x.ndim
    if banded.serves(x.dtype):
        out = banded.correlate1d(x, np.asarray(w), axis, mode, cval, center)
        if out is not None:
            return out
    if axis != x.ndim - 1 and len(w) * x.dtype.itemsize <= _SHIFT_ADD_MAX_BYTES:
        return _shift_add(x, w, axis, mode, cval, center)
    origin = int(center) - len(w) // 2
    w = np.asarray(w, dtype=np.float64)
    return _in_blocks(x, axis, lambda xb, ob: scipy.ndimage.correlate1d(
        xb, w, axis=axis, output=ob, mode=mode, cval=cval, origin=origin))


@primitive("uniform1d", "numpy")
def _uniform1d_numpy(be, x, size, axis, mode, cval, center):
    """Box mean of ``size`` taps along ``axis``: :func:`correlate1d` with weights ``1 / size``
    (banded GEMMs) up to ``BOX_BANDED_MAX_TAPS`` taps, else SciPy's running sum (constant
    time per sample) or, for short boxes along a non-contiguous axis, shifted adds."""
    axis = axis % x.ndim
    if banded.serves(x.dtype) and size <= BOX_BANDED_MAX_TAPS:
        out = banded.correlate1d(x, np.full(size, 1.0 / size), axis, mode, cval, center)
        if out is not None:
            return out
    if axis != x.ndim - 1 and size * x.dtype.itemsize <= _BOX_SHIFT_ADD_MAX_BYTES:
        return _shift_add(x, np.full(size, 1.0 / size), axis, mode, cval, center)
    origin = int(center) - size // 2
    return _in_blocks(x, axis, lambda xb, ob: scipy.ndimage.uniform_filter1d(
        xb, size, axis=axis, output=ob, mode=mode, cval=cval, origin=origin))


#: outputs along the axis per block of correlate1d_rows / correlate1d_cols (C1_*_SEG in convolve.cu)
_ROWS_SEG, _COLS_SEG = 128, 64


def _correlate1d_tiled_plan(shape, axis, taps, itemsize):
    """``(kernel name, shared bytes)`` of the tiled 1-D pass for this layout, or ``None`` when
    the one-thread-per-output kernel serves it (a short inner axis, or a tile past the limit)."""
    inner = math.prod(shape[axis + 1:])
    if inner == 1:
        name, tile = "correlate1d_rows", 8 * (_ROWS_SEG + taps - 1)
    elif inner >= 32:
        name, tile = "correlate1d_cols", 32 * (_COLS_SEG + taps - 1)
    else:
        return None
    shared = (tile + taps) * itemsize
    return (name, shared) if shared <= _SHARED_LIMIT else None


@functools.lru_cache(maxsize=256)
def _correlate1d_launch(shape, axis, taps, itemsize):
    """``(kernel name, grid, block, shared bytes, size arguments, trailing arguments)`` of the
    1-D pass along ``axis`` of a C-contiguous ``shape``; the one-thread-per-output kernel's
    trailing argument says whether the taps sit in shared memory (memoised: the solvers repeat
    the same passes every iteration)."""
    n = shape[axis]
    outer = math.prod(shape[:axis])
    inner = math.prod(shape[axis + 1:])
    plan = _correlate1d_tiled_plan(shape, axis, taps, itemsize)
    if plan is not None:
        name, shared = plan
        if name == "correlate1d_rows":
            grid = (min(-(-n // _ROWS_SEG), 1 << 20), min(-(-outer // 8), 65535), 1)
            dims = (np.int64(outer), np.int64(n))
        else:
            grid = (min(-(-inner // 32), 1 << 20), min(-(-n // _COLS_SEG), 65535), min(outer, 65535))
            dims = (np.int64(outer), np.int64(n), np.int64(inner))
        return name, grid, (32, 8, 1), shared, dims, ()
    shared = taps * itemsize
    in_shared = shared <= _SHARED_LIMIT
    size = outer * n * inner
    grid = (min(-(-size // 256), 65535 * 16),)
    return ("correlate1d_axis", grid, (256,), shared if in_shared else 0,
            (np.int64(outer), np.int64(n), np.int64(inner)), (np.int32(in_shared),))


@primitive("correlate1d", "cupy")
def _correlate1d_cupy(be, x, w, axis, mode, cval, center):
    xp = be.xp
    x = xp.ascontiguousarray(x)
    axis = axis % x.ndim
    wd = device_constant(xp, w, x.dtype)
    out = xp.empty_like(x)
    if x.size == 0:
        return out
    name, grid, block, shared, dims, extra = _correlate1d_launch(x.shape, axis, wd.size, x.dtype.itemsize)
    kern = _FAMILY.get(f"{name}<{type_name(x.dtype)}, {_mode_code(mode)}>")
    kern(grid, block, (x, wd, out, *dims, np.int32(wd.size), np.int32(center), x.dtype.type(cval), *extra),
         shared_mem=shared)
    return out


@primitive("uniform1d", "cupy")
def _uniform1d_cupy(be, x, size, axis, mode, cval, center):
    return _correlate1d_cupy(be, x, np.full(size, 1.0 / size), axis, mode, cval, center)


# --------------------------------------------------------------------------------------
# Direct 2-D / 3-D correlation
# --------------------------------------------------------------------------------------

@primitive("correlate_direct", "numpy")
def _correlate_direct_numpy(be, x, w, mode, cval, centers, flip=False):
    """SciPy's correlation, in bands of the first filtered axis on the thread pool; with
    ``flip``, correlation with ``w`` reversed along every axis (``centers`` refer to it).

    Output row ``r`` reads rows ``r - c .. r + a`` (``c`` the centre, ``a = kh - 1 - c``); a
    band reads those rows of the image and, where it reaches past an edge, the rows the
    boundary rule mirrors or repeats there (``0 .. c`` at the top, ``n - 1 - a .. n - 1`` at
    the bottom), so each band equals the same rows of the whole image. ``wrap`` reads the
    opposite edge and runs as one band, as do images less than four kernels tall.
    """
    nd = w.ndim
    origin = [int(c) - s // 2 for c, s in zip(centers, w.shape)]
    axes = tuple(range(x.ndim - nd, x.ndim))
    w = np.asarray(w, dtype=np.float64)
    if flip:
        w = w[(slice(None, None, -1),) * nd]
    ax, n = axes[0], x.shape[axes[0]]
    c, a = int(centers[0]), w.shape[0] - 1 - int(centers[0])
    lead = (slice(None),) * ax
    out = np.empty_like(x)

    def band(r0, r1):
        lo, hi = max(0, r0 - c), min(n, r1 + a)
        if r0 - c < 0:
            hi = min(n, max(hi, c + 1))
        if r1 + a > n:
            lo = max(0, min(lo, n - 1 - a))
        part = scipy.ndimage.correlate(x[lead + (slice(lo, hi),)], w, mode=mode, cval=cval, origin=origin, axes=axes)
        out[lead + (slice(r0, r1),)] = part[lead + (slice(r0 - lo, r1 - lo),)]

    if mode in ("wrap", "grid-wrap") or n < 4 * w.shape[0] or x.size < _THREAD_MIN_ELEMS or workers() == 1:
        return scipy.ndimage.correlate(x, w, mode=mode, cval=cval, origin=origin, axes=axes)
    run_ranges(band, n, 2 * workers())
    return out


#: Kernels of at most this many taps run on the one-thread-per-output gather kernel (no tile
#: staging) rather than the shared-memory tiles; benchmarks/bench_filters.py times both.
GATHER_MAX_TAPS = 0


@primitive("correlate_direct", "cupy")
def _correlate_direct_cupy(be, x, w, mode, cval, centers, flip=False):
    xp = be.xp
    # attribute checks first: a call is a few microseconds of host time per skipped copy
    if not x.flags.c_contiguous:
        x = xp.ascontiguousarray(x)
    wd = device_constant(xp, w, x.dtype)
    c3 = (0,) * (3 - w.ndim) + tuple(int(c) for c in centers)
    height, width = x.shape[-2:]
    depth = x.shape[-3] if w.ndim == 3 else 1
    items = x.size // (depth * height * width)
    out = xp.empty_like(x)
    kd, kh, kw = (1,) * (3 - w.ndim) + tuple(w.shape)
    t = type_name(x.dtype)
    code = _mode_code(mode)
    args = (x, wd, out, np.int64(items), np.int64(depth), np.int64(height), np.int64(width),
            np.int32(kd), np.int32(kh), np.int32(kw), np.int32(c3[0]), np.int32(c3[1]),
            np.int32(c3[2]), x.dtype.type(cval), np.int32(bool(flip)))
    shared = (_TILE_Y + kh - 1) * (_TILE_X + kw - 1) * x.dtype.itemsize
    if shared <= _SHARED_LIMIT and wd.size > GATHER_MAX_TAPS:
        grid = (
            (width + _TILE_X - 1) // _TILE_X,
            min((height + _TILE_Y - 1) // _TILE_Y, _MAX_GRID_Y),
            min(items * depth, _MAX_GRID_Z),
        )
        name = (f"correlate_tiled_k<{t}, {code}, {kh}>" if kd == 1 and kh == kw and kh in _FIXED_K
                else f"correlate_tiled<{t}, {code}>")
        _FAMILY.get(name)(grid, _BLOCK, args, shared_mem=shared)
    else:
        launch_1d(_FAMILY.get(f"correlate_gather<{t}, {code}>"), x.size, args)
    return out


# --------------------------------------------------------------------------------------
# FFT correlation of a padded array
# --------------------------------------------------------------------------------------

# Spectra of recently used kernels: iterative restoration applies one PSF many times, and the
# kernel's transform costs half an image transform.
_SPECTRA = LRU(4)


def _kernel_spectrum(be, w, fshape, dtype, fft_kwargs, device):
    nd = w.ndim
    key = (be.name, device, np.dtype(dtype).str, tuple(fshape), w.shape, w.tobytes())
    spec = _SPECTRA.get(key)
    if spec is not None:
        return spec
    # correlation with w is convolution with w reversed
    wf = be.asarray(np.ascontiguousarray(w[(slice(None, None, -1),) * nd]), dtype=dtype)
    return _SPECTRA.put(key, be.fft.rfftn(wf, s=fshape, axes=tuple(range(nd)), **fft_kwargs))


def _fft_valid(be, xpad, w, fft_kwargs, inverse, device=None):
    w = np.asarray(w)
    nd = w.ndim
    axes = tuple(range(xpad.ndim - nd, xpad.ndim))
    shape = xpad.shape[-nd:]
    fshape = tuple(be.fft.next_fast_len(int(s), True) for s in shape)
    spec = be.fft.rfftn(xpad, s=fshape, axes=axes, **fft_kwargs)
    spec *= _kernel_spectrum(be, w, fshape, xpad.dtype, fft_kwargs, device)
    full = inverse(spec, fshape, axes)
    crop = tuple(slice(k - 1, s) for k, s in zip(w.shape, shape))
    return be.xp.ascontiguousarray(full[(Ellipsis,) + crop])


@primitive("fft_correlate", "numpy")
def _fft_correlate_numpy(be, xpad, w):
    nd = np.ndim(w)
    threads = fft_workers(xpad, tuple(be.fft.next_fast_len(int(s), True) for s in xpad.shape[-nd:]))
    return _fft_valid(be, xpad, w, {"workers": threads},
                      lambda spec, s, axes: irfftn_by_axes(be.fft, spec, s, axes, threads))


@primitive("fft_correlate", "cupy")
def _fft_correlate_cupy(be, xpad, w):
    # cuFFT plans are cached by cupyx.scipy.fft per shape
    return _fft_valid(be, xpad, w, {}, lambda spec, s, axes: be.fft.irfftn(spec, s=s, axes=axes),
                      device=be.xp.cuda.Device().id)


# --------------------------------------------------------------------------------------
# Measured crossovers (see gpuimg.filters, "Method selection")
# --------------------------------------------------------------------------------------

@primitive("correlate_crossover", "numpy")
def _crossover_numpy(be):
    # 2 cores, 2048x2048 float32 (benchmarks/bench_filters.py, groups "crossover"): SciPy's
    # banded direct loop beats the FFT through 4x4 and loses from 5x5 on; the banded-GEMM 1-D
    # passes (gpuimg._prims.banded) beat it at 2x61 taps (19.7 vs 36.1 ms) and tie at 2x101
    # (26.1 vs 41.6 ms median, 1.07x on the fastest rounds)
    return {"direct_max_taps": 16, "separable_max_taps": 160}


@primitive("correlate_crossover", "cupy")
def _crossover_cupy(be):
    # NVIDIA H200, 2048x2048 float32 (benchmarks/results/gpu-2026-11-27-08ea104.json): the tiled
    # kernel beats cuFFT through 7x7 (0.31 vs 0.49 ms) and ties at 11x11 (0.46 vs 0.45 ms); the
    # tiled 1-D passes cost about 8 us per tap (2x31: 0.43 ms, 2x61: 0.90 ms) against a flat
    # 0.78 ms for cuFFT, breaking even near 106 taps; a rank-two 31x31 kernel (2 x 62 taps) runs
    # directly in 0.66 ms against 0.81 ms
    return {"direct_max_taps": 81, "separable_max_taps": 100}
