"""Primitives of the deconvolution solvers: the FGP total-variation steps and Richardson–Lucy updates.

Images are stacks ``(..., H, W)``; gradients are forward differences with Neumann boundary
(zero across the last row and column) and ``div = -grad^T``. A dual field ``p`` has shape
``(2, ..., H, W)`` (row and column components).
"""

from __future__ import annotations

import functools

import numpy as np

from gpuimg._backend import primitive
from gpuimg._kernels import KernelFamily, launch_1d, launch_rows, type_name
from gpuimg._lru import LRU
from gpuimg._parallel import in_pool, run_chunks, run_ranges, workers
from gpuimg._prims.fft_axes import fft_workers, irfftn_by_axes

_TV = KernelFamily("tv.cu", [f"tv_primal<{t}>" for t in ("float", "double")]
                   + [f"tv_dual<{t}, {iso}>" for t in ("float", "double") for iso in (0, 1)])
_SPECTRUM = KernelFamily("spectrum.cu", [f"spectrum_multiply<{t}>" for t in ("float", "double")])
_RL = KernelFamily("richardson_lucy.cu", [f"{k}<{t}>" for k in ("rl_ratio", "rl_update") for t in ("float", "double")])
_MARGINS = KernelFamily("margins.cu", [f"{k}<{t}>" for k in ("reflect_margins", "fold_margins")
                                       for t in ("float", "double")])


def grad(xp, x):
    """Forward differences ``(2, ..., H, W)`` of a stack, zero across the last row / column."""
    g = xp.zeros((2,) + x.shape, dtype=x.dtype)
    xp.subtract(x[..., 1:, :], x[..., :-1, :], out=g[0, ..., :-1, :])
    xp.subtract(x[..., :, 1:], x[..., :, :-1], out=g[1, ..., :, :-1])
    return g


def div(xp, p):
    """``div p = -grad^T p`` for :func:`grad`'s differences."""
    d = xp.zeros(p.shape[1:], dtype=p.dtype)
    d[..., :-1, :] += p[0, ..., :-1, :]
    d[..., 1:, :] -= p[0, ..., :-1, :]
    d[..., :, :-1] += p[1, ..., :, :-1]
    d[..., :, 1:] -= p[1, ..., :, :-1]
    return d


def _deliver(res, out):
    """``res``, copied into ``out`` when the kernel could not write there directly."""
    if out is None or res is out:
        return res
    out[...] = res
    return out


#: stacks from this many elements run the FGP steps in bands of rows on the thread pool
#: (smaller ones in one piece: a hand-over costs more than the band's work). 50 FGP steps on
#: 2 cores, float32, one thread against two: 512 x 512 67 against 94 ms, 1024 x 1024 390
#: against 274 ms, 2048 x 2048 2470 against 1342 ms
TV_THREAD_MIN_ELEMS = 1 << 19


def _in_row_bands(fn, x):
    """``fn(r0, r1)`` over bands of the rows (axis -2) of the stack ``x``, on the pool when
    ``x`` is large (one band otherwise, or inside a job of the pool)."""
    run_ranges(fn, x.shape[-2], workers() if x.size >= TV_THREAD_MIN_ELEMS and not in_pool() else 1)


@primitive("tv_primal", "numpy")
def _tv_primal_numpy(be, v, p, weight, lo, hi, out=None):
    """``clip(v + weight * div(p), lo, hi)``; ``lo``/``hi`` may be -inf/+inf.

    ``out`` (C-contiguous, shape of ``v``) receives the result; it may be ``v`` itself. Row
    ``i`` reads ``v`` at row ``i`` only (and ``p`` at rows ``i - 1, i``), so bands of rows
    update in place independently.
    """
    x = np.empty_like(v) if out is None else out
    w = v.dtype.type(weight)
    h = v.shape[-2]
    clip = np.isfinite(lo) or np.isfinite(hi)

    def band(r0, r1):
        xs = x[..., r0:r1, :]
        if x is not v:
            xs[...] = v[..., r0:r1, :]
        # w p[0] at rows below..top-1: added at its own row, subtracted one row below
        top = min(r1, h - 1)  # the last row has no downward difference
        below = max(r0 - 1, 0)
        if top > below:
            a = p[0, ..., below:top, :] * w
            if top > r0:
                xs[..., : top - r0, :] += a[..., r0 - below:, :]
            first = max(r0, 1)
            if r1 > first:
                xs[..., first - r0:, :] -= a[..., first - 1 - below:r1 - 1 - below, :]
        a = p[1, ..., r0:r1, :-1] * w
        xs[..., :, :-1] += a
        xs[..., :, 1:] -= a
        if clip:
            np.clip(xs, lo, hi, out=xs)

    _in_row_bands(band, x)
    return x


@primitive("tv_primal", "cupy")
def _tv_primal_cupy(be, v, p, weight, lo, hi, out=None):
    xp = be.xp
    v = xp.ascontiguousarray(v)
    p = xp.ascontiguousarray(p, dtype=v.dtype)
    # each thread reads v only at its own element, so out may be v
    if out is not None and not out.flags.c_contiguous:
        raise ValueError("out must be C-contiguous")
    x = xp.empty_like(v) if out is None else out
    h, w = v.shape[-2:]
    t = v.dtype.type
    kern = _TV.get(f"tv_primal<{type_name(v.dtype)}>")
    launch_1d(kern, v.size, (v, p, x, np.int64(v.size), np.int64(h), np.int64(w), t(weight), t(lo), t(hi)))
    return x


@primitive("tv_dual", "numpy")
def _tv_dual_numpy(be, x, p, r, step, momentum, isotropic):
    """One FGP dual step: ``q = proj(r + step * grad x)``; returns ``(q, q + momentum (q - p))``.

    ``proj`` scales each pixel's pair to length <= 1 (``isotropic``) or clips each component
    to [-1, 1]. The buffers of ``p`` and ``r`` are reused for the results (which one holds
    which may differ between twins): callers continue with the returned arrays only. Rows
    ``r0:r1`` read ``x`` at rows ``r0 .. r1`` and write only their own rows of ``p`` and ``r``.
    """
    dt = x.dtype.type
    h = x.shape[-2]

    def band(r0, r1):
        top = min(r1 + 1, h)
        d = np.diff(x[..., r0:top, :], axis=-2)
        d *= dt(step)
        r[0, ..., r0:top - 1, :] += d
        d = np.diff(x[..., r0:r1, :], axis=-1)
        d *= dt(step)
        r[1, ..., r0:r1, :-1] += d
        rb, pb = r[:, ..., r0:r1, :], p[:, ..., r0:r1, :]
        if isotropic:
            n = np.sqrt(rb[0] * rb[0] + rb[1] * rb[1])
            np.maximum(n, 1, out=n)
            rb /= n
        else:
            np.clip(rb, -1, 1, out=rb)
        pb -= rb
        pb *= dt(-momentum)
        pb += rb

    _in_row_bands(band, x)
    return r, p


@primitive("tv_dual", "cupy")
def _tv_dual_cupy(be, x, p, r, step, momentum, isotropic):
    xp = be.xp
    x = xp.ascontiguousarray(x)
    if not (p.flags.c_contiguous and r.flags.c_contiguous):
        raise ValueError("p and r must be C-contiguous (they are updated in place)")
    h, w = x.shape[-2:]
    t = x.dtype.type
    kern = _TV.get(f"tv_dual<{type_name(x.dtype)}, {1 if isotropic else 0}>")
    launch_1d(kern, x.size, (x, p, r, np.int64(x.size), np.int64(h), np.int64(w), t(step), t(momentum)))
    return p, r


@primitive("rl_ratio", "numpy")
def _rl_ratio_numpy(be, b, ax, eps, out=None):
    """``b / ax`` where ``ax >= eps``, 0 elsewhere; into ``out`` when given (any strides)."""
    if out is None:
        out = np.empty_like(ax)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        np.divide(b, ax, out=out)
    # a reduction without a mask array: small values are rare (a dark, exactly blurred image)
    if ax.min() < eps:
        out[ax < eps] = 0
    return out


@primitive("rl_ratio", "cupy")
def _rl_ratio_cupy(be, b, ax, eps, out=None):
    xp = be.xp
    bv = _plane_view(xp, b if b.dtype == ax.dtype else xp.asarray(b, dtype=ax.dtype))
    av = _plane_view(xp, ax)
    ov = (out is not None and _planes(out)) or _planes(xp.empty(ax.shape, dtype=ax.dtype))
    h, w = ax.shape[-2:]
    kern = _RL.get(f"rl_ratio<{type_name(ax.dtype)}>")
    launch_rows(kern, ax.size // (h * w), h, w, (bv[0], av[0], ov[0], np.int64(ax.size), np.int64(h), np.int64(w),
                              *bv[1:], *av[1:], *ov[1:], ax.dtype.type(eps)), cols_per_thread=4)
    return _deliver(ov[0], out)


def _planes(v):
    """``(v, plane_stride, row_stride)`` in elements when ``v`` (..., H, W) is a stack of planes
    with unit column stride (its leading axes merge into one); ``None`` otherwise."""
    if v.size == 0:
        return None
    strides = _plane_strides(v.shape, v.strides, v.dtype.itemsize)
    return None if strides is None else (v, *strides)


@functools.lru_cache(maxsize=256)
def _plane_strides(shape, strides, item):
    """The plane and row strides of :func:`_planes` (as kernel arguments) for this layout, or
    ``None`` (memoised: the solvers pass the same buffers every iteration)."""
    if len(shape) < 2 or strides[-1] != item or strides[-2] % item:
        return None
    h = shape[-2]
    lead = [(n, s) for n, s in zip(shape[:-2], strides[:-2]) if n > 1]
    ps = lead[-1][1] if lead else h * strides[-2]
    for (n, s), (n_in, s_in) in zip(lead, lead[1:]):
        if s != n_in * s_in:
            return None
    if ps % item:
        return None
    return np.int64(ps // item), np.int64(strides[-2] // item)


def _plane_view(xp, v):
    """:func:`_planes` of ``v``, or of a C-contiguous copy when ``v``'s layout does not allow it."""
    return _planes(v) or _planes(xp.ascontiguousarray(v))


@primitive("rl_update", "numpy")
def _rl_update_numpy(be, x, corr, inv_norm, tv_weight, eps, out=None):
    """``x * corr * inv_norm / (1 - tv_weight * div(grad x / sqrt(|grad x|^2 + eps^2)))``.

    ``inv_norm`` (``1 / A^T 1``) has shape ``(H, W)`` and is shared by the stack (Dey et al.
    2006 RL-TV); ``None`` stands for 1. ``out`` may be ``x`` itself (an in-place update; any
    strides).
    """
    den = None
    if tv_weight:
        g = grad(np, x)
        g /= np.sqrt(g[0] * g[0] + g[1] * g[1] + x.dtype.type(eps) ** 2)
        den = div(np, g)
        den *= -x.dtype.type(tv_weight)
        den += 1
    out = np.multiply(x, corr, out=out)
    if inv_norm is not None:
        out *= inv_norm
    if den is not None:
        out /= den
    return out


_ONES: dict[tuple, object] = {}


def _ones_plane(xp, shape, dtype):
    """A cached ``(H, W)`` plane of ones on the current device (the last shape asked for)."""
    # the array module's identity as well as the device: a stand-in module never shares an entry
    key = (tuple(shape), np.dtype(dtype).str, id(xp), xp.cuda.Device().id if hasattr(xp, "cuda") else -1)
    plane = _ONES.get(key)
    if plane is None:
        _ONES.clear()
        plane = _ONES[key] = xp.ones(shape, dtype=dtype)
    return plane


@primitive("rl_update", "cupy")
def _rl_update_cupy(be, x, corr, inv_norm, tv_weight, eps, out=None):
    xp = be.xp
    xv = _plane_view(xp, x)
    cv = _plane_view(xp, corr if corr.dtype == x.dtype else xp.asarray(corr, dtype=x.dtype))
    inv_norm = _ones_plane(xp, x.shape[-2:], x.dtype) if inv_norm is None else inv_norm
    if inv_norm.shape != x.shape[-2:] or inv_norm.dtype != x.dtype or not inv_norm.flags.c_contiguous:
        inv_norm = xp.ascontiguousarray(xp.broadcast_to(inv_norm, x.shape[-2:]), dtype=x.dtype)
    # the TV term reads neighbours of x, so then the result never overwrites x while it is read
    ov = out is not None and not (tv_weight and xp.may_share_memory(out, xv[0])) and _planes(out)
    ov = ov or _planes(xp.empty(x.shape, dtype=x.dtype))
    h, w = x.shape[-2:]
    t = x.dtype.type
    kern = _RL.get(f"rl_update<{type_name(x.dtype)}>")
    launch_rows(kern, x.size // (h * w), h, w, (xv[0], cv[0], inv_norm, ov[0], np.int64(x.size), np.int64(h), np.int64(w),
                             *xv[1:], *cv[1:], *ov[1:], t(tv_weight), t(eps)), cols_per_thread=4)
    return _deliver(ov[0], out)


@primitive("reflect_margins", "numpy")
def _reflect_margins_numpy(be, xe, pad, frame):
    """Fill the margins of the grid buffer ``xe`` (..., gh, gw) around the ``frame`` (h, w)
    at offset ``(pad[0][0], pad[1][0])`` by half-sample reflection of the frame (in place)."""
    (t, b), (l, r) = pad
    h, w = frame
    if t:
        xe[..., :t, l:l + w] = xe[..., 2 * t - 1:t - 1:-1, l:l + w]
    if b:
        xe[..., t + h:, l:l + w] = xe[..., t + h - 1:t + h - 1 - b:-1, l:l + w]
    if l:
        xe[..., :, :l] = xe[..., :, 2 * l - 1:l - 1:-1]
    if r:
        xe[..., :, l + w:] = xe[..., :, l + w - 1:l + w - 1 - r:-1]


@primitive("reflect_margins", "cupy")
def _reflect_margins_cupy(be, xe, pad, frame):
    _margins_kernel(be, "reflect_margins", xe, pad, frame)


@primitive("fold_margins", "numpy")
def _fold_margins_numpy(be, y, pad, frame):
    """Adjoint of :func:`reflect_margins`: add every margin pixel of ``y`` onto the frame pixel
    it mirrors (in place); returns the frame view ``y[..., t:t + h, l:l + w]``."""
    (t, b), (l, r) = pad
    h, w = frame
    if t:
        y[..., t:2 * t, :] += y[..., t - 1::-1, :]
    if b:
        y[..., t + h - b:t + h, :] += y[..., t + h + b - 1:t + h - 1:-1, :]
    rows = y[..., t:t + h, :]
    if l:
        rows[..., l:2 * l] += rows[..., l - 1::-1]
    if r:
        rows[..., l + w - r:l + w] += rows[..., l + w + r - 1:l + w - 1:-1]
    return rows[..., l:l + w]


@primitive("fold_margins", "cupy")
def _fold_margins_cupy(be, y, pad, frame):
    (t, _), (l, _) = pad
    h, w = frame
    _margins_kernel(be, "fold_margins", y, pad, frame)
    return y[..., t:t + h, l:l + w]


def _margins_kernel(be, name, g, pad, frame):
    """One launch of a margins.cu kernel on the contiguous grid stack ``g`` (in place). The
    kernels count the pixels that change and walk them grid-stride; the launch is sized by the
    margin pixels, exactly the refill's count and at least the fold's."""
    if not g.flags.c_contiguous:
        raise ValueError("the grid buffer must be C-contiguous (it is updated in place)")
    (t, _), (l, _) = pad
    h, w = frame
    gh, gw = g.shape[-2:]
    items = gh * gw - h * w
    planes = g.size // (gh * gw)
    if items <= 0 or planes <= 0:
        return
    kern = _MARGINS.get(f"{name}<{type_name(g.dtype)}>")
    grid = (min(-(-items // 256), 1 << 20), 1, min(planes, 65535))
    kern(grid, (256,), (g, np.int64(planes), np.int64(gh), np.int64(gw), np.int64(t), np.int64(l), np.int64(h),
                        np.int64(w)))


@primitive("rfft_grid", "numpy")
def _rfft_grid_numpy(be, x, grid):
    """``rfft2`` over the last two axes, zero-filled at the end to ``grid`` (all CPU cores)."""
    return be.fft.rfft2(x, s=grid, workers=fft_workers(x, grid))


#: cuFFT directions (cufft.h: CUFFT_FORWARD = -1, CUFFT_INVERSE = 1)
_CUFFT_FORWARD, _CUFFT_INVERSE = -1, 1
#: cuFFT plans of the restoration grids, by (device, kind, input shape, dtype): an iterative
#: solver runs four transforms per iteration, and going through ``cupy.fft``'s dispatch (plan
#: lookup, argument checks) costs more host time than launching the plan itself
_PLANS = LRU(8)


def _plannable(a, shape):
    """Whether ``a`` (the transform's input, its last two axes of ``shape``) can run on a
    cached plan: C-contiguous and not also F-contiguous (CuPy builds no R2C/C2R plan for an
    array it reads as F-ordered, e.g. one with a side of 1), non-empty."""
    return (a.ndim >= 2 and tuple(a.shape[-2:]) == shape and a.flags.c_contiguous
            and not a.flags.f_contiguous and a.size > 0)


def _grid_plan(be, a, grid, value_type):
    """A cached cuFFT plan over the last two axes of the C-contiguous ``a`` for ``grid``."""
    key = (id(be.xp), be.xp.cuda.Device().id, value_type, a.shape, a.dtype.str, tuple(grid))
    plan = _PLANS.get(key)
    if plan is None:
        plan = _PLANS.put(key, be.fft.get_fft_plan(a, shape=tuple(grid), axes=(-2, -1), value_type=value_type))
    return plan


def _c2r_plannable(X, grid):
    """Whether the half-spectra ``X`` can run on a cached C2R plan for ``grid`` (cuFFT refuses
    a side of 1 as well)."""
    gh, gw = grid
    return min(gh, gw) >= 2 and _plannable(X, (gh, gw // 2 + 1))


def _planned(be, x, grid, kind):
    """``x`` transformed on the cached cuFFT plan of ``kind`` ("R2C", or "C2R": unnormalised,
    and ``x`` is destroyed, as C2R does)."""
    plan = _grid_plan(be, x, grid, kind)
    out = plan.get_output_array(x, order="C")
    plan.fft(x, out, _CUFFT_FORWARD if kind == "R2C" else _CUFFT_INVERSE)
    return out


@primitive("rfft_grid", "cupy")
def _rfft_grid_cupy(be, x, grid):
    if not _plannable(x, tuple(grid)):
        return be.fft.rfft2(x, s=grid)
    return _planned(be, x, grid, "R2C")


@primitive("irfft_grid", "numpy")
def _irfft_grid_numpy(be, X, grid):
    """Inverse of :func:`rfft_grid`: real ``(..., *grid)`` (all CPU cores). ``X`` is used as
    scratch space (its values are destroyed), which saves a copy of the spectrum."""
    return irfftn_by_axes(be.fft, X, grid, (-2, -1), fft_workers(X, grid))


@primitive("irfft_grid", "cupy")
def _irfft_grid_cupy(be, X, grid):
    gh, gw = (int(n) for n in grid)
    if not _c2r_plannable(X, (gh, gw)):
        return be.fft.irfft2(X, s=grid, overwrite_x=True)
    out = _planned(be, X, grid, "C2R")
    out *= out.dtype.type(1.0 / (gh * gw))
    return out


#: work (bytes) per group of a batch that the NumPy twin of ``map_batch`` aims for: about
#: one 512 x 512 float32 image with its FFT margins, which stays in a core's L2/L3 cache
GROUP_BYTES = 1 << 21


@primitive("irfft_filtered", "numpy")
def _irfft_filtered_numpy(be, X, H, grid):
    """``irfft_grid(X * H, grid)`` for a stack of half-spectra ``X`` (used as scratch) and one
    spectrum ``H`` of the grid's half-spectrum shape."""
    X *= H
    return _irfft_grid_numpy(be, X, grid)


@primitive("irfft_filtered", "cupy")
def _irfft_filtered_cupy(be, X, H, grid):
    gh, gw = (int(n) for n in grid)
    half = (gh, gw // 2 + 1)
    if not _c2r_plannable(X, (gh, gw)) or H.shape != half or H.dtype != X.dtype:
        X *= H
        return _irfft_grid_cupy(be, X, grid)
    H = be.xp.ascontiguousarray(H)
    real = np.dtype(X.dtype.char.lower())
    # the product carries the inverse transform's 1 / N, so the C2R output needs no scaling
    kern = _SPECTRUM.get(f"spectrum_multiply<{type_name(real)}>")
    planes = X.size // (half[0] * half[1])
    launch_rows(kern, planes, half[0], half[1], (X, H, np.int64(planes), np.int64(half[0]), np.int64(half[1]),
                                                 real.type(1.0 / (gh * gw))))
    return _planned(be, X, grid, "C2R")


@primitive("map_batch", "numpy")
def _map_batch_numpy(be, fn, n, item_bytes):
    """Call ``fn(sl)`` for slices ``sl`` covering ``range(n)`` of a batch of independent items.

    NumPy: groups of about ``GROUP_BYTES`` of work each (cache-sized), run on the shared
    thread pool (:func:`gpuimg._parallel.run_chunks`), one FFT thread per group. CuPy: one
    call with the whole batch (the device is filled by one image's work already).
    """
    size = max(1, int(GROUP_BYTES // max(int(item_bytes), 1)))
    run_chunks(fn, [(slice(i, min(i + size, n)),) for i in range(0, n, size)])


@primitive("map_batch", "cupy")
def _map_batch_cupy(be, fn, n, item_bytes):
    fn(slice(0, n))
