"""Primitive ``window_moments``: sliding-window moments of two images, fused with a formula.

Contract (both twins)::

    map, means = be.window_moments(a, b, kind, taps, mode="reflect", *, cov_norm=1.0,
                                   c1=0.0, c2=0.0, eps=0.0, crop=None, want_map=True)

``a`` and ``b`` are float32 or float64 arrays of one shape and dtype. The last ``len(taps)``
axes (1 to 3) are spatial, leading axes are a batch. ``taps[k]`` is the odd-length, symmetric,
normalised 1-D window along spatial axis ``k``; the window is their outer product. Samples
outside the image come from boundary ``mode`` (SciPy names, ``cval`` 0). With weighted local
means ``mu_a = W * a`` and so on, the per-pixel value is

- ``"ssim"``: ``(2 mu_a mu_b + c1)(2 s_ab + c2) / ((mu_a^2 + mu_b^2 + c1)(s_a + s_b + c2))``
- ``"cs"``:   ``(2 s_ab + c2) / (s_a + s_b + c2)`` (the contrast-structure term of MS-SSIM)
- ``"mse"``:  ``W * (a - b)^2``
- ``"ncc"``:  ``s_ab / sqrt(s_a s_b)`` clipped to [-1, 1]; 0 where ``s_a <= eps W*a^2`` or
  ``s_b <= eps W*b^2`` (flat windows)

with ``s_a = cov_norm (W*a^2 - mu_a^2)``, ``s_b`` likewise, ``s_ab = cov_norm (W*(ab) - mu_a mu_b)``.
``map`` (``None`` unless ``want_map``) has the input's shape and dtype. ``means`` (``None``
unless ``crop`` is given) is a float64 array of the batch shape: the mean of the map over the
spatial region that leaves out ``crop`` samples at both ends of every spatial axis, summed in
float64.

The CUDA twin does everything in one kernel launch: each block loads a shared-memory tile of
``a`` and ``b`` with its halo, filters the products along x into shared memory, then along y
(and z, looping over the window's slices) into registers, applies the formula, writes the map
and adds its cropped part into a per-block float64 partial sum; a small second reduction sums
the partials per image. The common windows (7x7 and 11x11 means, the 11-tap Gaussian of SSIM
and MS-SSIM) have kernels with the tap count fixed at compile time (``window_moments_fixed``):
fully unrolled passes, 8 outputs per thread along each axis, window sums shared between
neighbouring outputs for uniform taps, and blocks that walk down a column of tiles reusing
the x-filtered halo rows of the tile above.

Both twins filter the fewest products a kind needs: SSIM and CS use only ``s_a + s_b``, so
four windowed means (``a``, ``b``, ``a^2 + b^2``, ``ab``) suffice; MSE needs one. The NumPy
twin stacks them and works through the images in cache-sized blocks (whole small images, or
row strips with their halo): banded GEMMs (:mod:`gpuimg._prims.banded`) along every axis (the
strip's first axis "valid", over the halo), then the formula, all in the input's float
dtype. 2048 x 2048 float32 Gaussian SSIM with its map took 102 ms with
:func:`scipy.ndimage.correlate1d` along the rows and shifted slices down the columns, 84 ms
with banded rows, 50 ms with both banded. Every pass is a direct correlation (a block with a
non-finite sample is redone by SciPy's loop or shifted slices), so NaN reaches exactly the
windows that contain it on both backends.
"""

from __future__ import annotations

import math

import numpy as np

from gpuimg import _boundary
from gpuimg._backend import primitive
from gpuimg._kernels import KernelFamily, type_name
from gpuimg._lru import device_constant
from gpuimg._parallel import run_ranges, workers
from gpuimg._prims import banded

KINDS = {"ssim": 0, "cs": 1, "mse": 2, "ncc": 3}
_NQ = {"ssim": 4, "cs": 4, "mse": 1, "ncc": 5}
# kernel mode codes: grid-wrap/grid-constant read like wrap/constant at integer positions
_KMODE = {"reflect": 0, "mirror": 1, "nearest": 2, "constant": 3, "wrap": 4, "grid-wrap": 4, "grid-constant": 3}

# Windows that window_moments_fixed<T, W, BOX> serves: W taps along y and x (any along z),
# uniform (BOX: the 7x7 and 11x11 means; SSIM, CS and MSE, and NCC through
# window_moments_fixed_ncc<T, W>) or weighted, symmetric, with 11 taps (the Gaussian of SSIM
# and MS-SSIM; SSIM, CS and MSE). Other windows, and 1-D signals, go to the generic
# window_moments<T, MODE>.
_FIXED = ((7, True), (11, True), (11, False))
_FIXED_TH = {4: 48, 8: 32}  # output tile height of the fixed kernels per itemsize

_FAMILY = KernelFamily(
    "window_moments.cu",
    [f"window_moments<{t}, {m}>" for t in ("float", "double") for m in sorted(set(_KMODE.values()))]
    + [f"window_moments_fixed<{t}, {w}, {'true' if box else 'false'}>"
       for t in ("float", "double") for w, box in _FIXED]
    + [f"window_moments_fixed_ncc<{t}, {w}>" for t in ("float", "double") for w, box in _FIXED if box],
)

_BX, _BY = 32, 8
_SMEM_DEFAULT = 48 * 1024


# --------------------------------------------------------------------------------------
# NumPy twin
# --------------------------------------------------------------------------------------

_CHUNK_ELEMS = 1 << 16  # samples per quantity per block of work: keeps the passes in cache


def _is_uniform(t: np.ndarray) -> bool:
    return bool(np.all(t == t[0]))


def _valid_pass(x, out, tmp, taps, axis):
    """``out = sum_k taps[k] x[k:k+n]`` along ``axis`` ("valid" correlation, symmetric taps)."""
    r = taps.size // 2
    n = out.shape[axis]
    dt = x.dtype.type

    def sl(k):
        idx = [slice(None)] * x.ndim
        idx[axis] = slice(k, k + n)
        return x[tuple(idx)]

    if r == 0:
        np.multiply(sl(0), dt(taps[0]), out=out)
    elif _is_uniform(taps):
        np.add(sl(0), sl(1), out=out)
        for k in range(2, taps.size):
            out += sl(k)
        out *= dt(taps[0])
    else:
        np.multiply(sl(r), dt(taps[r]), out=out)
        for k in range(r):
            np.add(sl(k), sl(2 * r - k), out=tmp)
            tmp *= dt(taps[k])
            out += tmp
    return out


def _same_pass(x, out, tmp, taps, axis, mode, ndi):
    """Correlate along a non-leading axis keeping its size (boundary ``mode``)."""
    # a direct correlation, not a running sum: NaN stays inside the windows that hold it
    if banded.correlate1d(x, taps, axis, mode, 0.0, taps.size // 2, out=out) is not None:
        return out
    if axis == x.ndim - 1:
        ndi.correlate1d(x, taps, axis=axis, output=out, mode=mode, cval=0.0)
        return out
    # a middle axis (3-D images): shifted row slices of a padded copy, vectorised over rows
    r = taps.size // 2
    width = [(0, 0)] * x.ndim
    width[axis] = (r, r)
    p = _boundary.pad(x, width, mode)
    return _valid_pass(p, out, tmp, taps, axis)


def _products(a, b, kind, q):
    """Write the quantities whose windowed means ``kind`` needs into ``q[0..nq)``."""
    if kind == "mse":
        np.subtract(a, b, out=q[0])
        q[0] *= q[0]
        return
    np.copyto(q[0], a)
    np.copyto(q[1], b)
    np.multiply(a, a, out=q[2])
    if kind == "ncc":
        np.multiply(b, b, out=q[3])
        np.multiply(a, b, out=q[4])
    else:
        np.multiply(b, b, out=q[3])
        q[2] += q[3]
        np.multiply(a, b, out=q[3])


class _Buffers:
    """Flat scratch arrays reused across blocks (fresh large allocations page-fault)."""

    def __init__(self, dtype):
        self.dtype = dtype
        self.flat = {}

    def get(self, name, shape):
        n = math.prod(shape)
        buf = self.flat.get(name)
        if buf is None or buf.size < n:
            buf = self.flat[name] = np.empty(n, dtype=self.dtype)
        return buf[:n].reshape(shape)


@primitive("window_moments", "numpy")
def _window_moments_numpy(be, a, b, kind, taps, mode="reflect", *, cov_norm=1.0, c1=0.0, c2=0.0,
                          eps=0.0, crop=None, want_map=True):
    """NumPy twin of ``window_moments`` (see the module docstring for the contract).

    The stack is processed in blocks of whole images (small images) or of row strips with
    their halo (large images), each block small enough to stay in cache through all passes.
    """
    ndi = be.ndimage
    a = np.asarray(a)
    b = np.asarray(b, dtype=a.dtype)
    dt = a.dtype.type
    nsp = len(taps)
    taps = [np.asarray(t, dtype=np.float64) for t in taps]
    spatial = a.shape[a.ndim - nsp:]
    batch_shape = a.shape[: a.ndim - nsp]
    nbatch = math.prod(batch_shape)
    a3 = a.reshape((nbatch,) + spatial)
    b3 = b.reshape((nbatch,) + spatial)
    nq = _NQ[kind]
    n0 = spatial[0]
    r0 = taps[0].size // 2
    row = math.prod(spatial[1:])
    out = np.empty((nbatch,) + spatial, dtype=a.dtype) if want_map else None
    sums = np.zeros(nbatch) if crop is not None else None
    c = int(crop or 0)
    params = (dt(cov_norm), dt(c1), dt(c2), dt(eps))

    if n0 * row >= _CHUNK_ELEMS:
        strip = max(1, _CHUNK_ELEMS // row)
        blocks = [(i, i + 1, y0, min(n0, y0 + strip)) for i in range(nbatch) for y0 in range(0, n0, strip)]
    else:
        group = max(1, _CHUNK_ELEMS // (n0 * row))
        blocks = [(i, min(nbatch, i + group), 0, n0) for i in range(0, nbatch, group)]

    # one slot per block, added in block order, so the mean does not depend on thread timing
    partial_sums: list = [None] * len(blocks)

    def run(first, stop):
        bufs = _Buffers(a.dtype)  # scratch of one job of the thread pool
        for blk in range(first, stop):
            i0, i1, y0, y1 = blocks[blk]
            rows = _boundary.index(np.arange(y0 - r0, y1 + r0), n0, mode)
            g, m = i1 - i0, y1 - y0
            ext = (g, m + 2 * r0) + spatial[1:]
            if rows[0] == y0 - r0 and rows[-1] == y1 + r0 - 1:
                sa, sb = a3[i0:i1, y0 - r0:y1 + r0], b3[i0:i1, y0 - r0:y1 + r0]
            else:
                keep = np.maximum(rows, 0)
                sa = np.take(a3[i0:i1], keep, axis=1)
                sb = np.take(b3[i0:i1], keep, axis=1)
                if (rows < 0).any():  # constant modes read zeros outside
                    sa[:, rows < 0] = 0
                    sb[:, rows < 0] = 0
            q = bufs.get("q", (nq,) + ext)
            q2 = bufs.get("q2", (nq,) + ext)
            _products(sa, sb, kind, q)
            for k in range(nsp - 1, 0, -1):  # last axis first (contiguous), then middle axes
                _same_pass(q, q2, bufs.get("t2", (nq,) + ext), taps[k], k + 2, mode, ndi)
                q, q2 = q2, q
            res = (nq, g, m) + spatial[1:]
            v = bufs.get("v", res)
            if not banded.correlate_valid(q, taps[0], 2, v):
                _valid_pass(q, v, bufs.get("tv", res), taps[0], 2)
            smap = _formula(v, kind, *params, bufs.get("tf", res[1:]))
            if want_map:
                out[i0:i1, y0:y1] = smap
            if crop is not None:
                lo, hi = max(y0, c), min(y1, n0 - c)
                if hi > lo:
                    region = smap[(slice(None), slice(lo - y0, hi - y0)) + tuple(slice(c, n - c) for n in spatial[1:])]
                    partial_sums[blk] = region.reshape(g, -1).sum(axis=1, dtype=np.float64)

    # independent blocks, in contiguous runs on the thread pool
    run_ranges(run, len(blocks), 2 * workers())
    for (i0, i1, _, _), part_sum in zip(blocks, partial_sums):
        if part_sum is not None:
            sums[i0:i1] += part_sum

    means = None
    if crop is not None:
        count = 1
        for n in spatial:
            count *= n - 2 * c
        means = np.asarray((sums / count).reshape(batch_shape))
    return (out.reshape(a.shape) if want_map else None), means


def _formula(q, kind, cn, c1, c2, eps, tmp):
    """Per-pixel formula on filtered moments ``q`` (overwritten); returns the map."""
    if kind == "mse":
        return q[0]
    if kind == "ncc":
        ma, mb, maa, mbb, mab = q
        flat = np.empty(ma.shape, dtype=bool)
        np.multiply(ma, ma, out=tmp)
        np.subtract(maa, tmp, out=tmp)  # s_a
        np.multiply(maa, eps, out=maa)
        np.less_equal(tmp, maa, out=flat)
        np.multiply(mb, mb, out=maa)
        np.subtract(mbb, maa, out=maa)  # s_b
        np.multiply(mbb, eps, out=mbb)
        flat |= maa <= mbb
        tmp *= maa
        np.maximum(tmp, np.finfo(tmp.dtype).tiny, out=tmp)
        np.sqrt(tmp, out=tmp)
        ma *= mb
        mab -= ma
        mab /= tmp
        np.clip(mab, -1, 1, out=mab)
        mab[flat] = 0
        return mab
    mx, my, s2, sxy = q
    mxy = np.multiply(mx, my, out=tmp)
    sxy -= mxy
    sxy *= 2 * cn
    sxy += c2  # A2 = 2 s_ab + c2
    mx *= mx
    my *= my
    mx += my  # mu_a^2 + mu_b^2
    s2 -= mx
    s2 *= cn
    s2 += c2  # B2 = s_a + s_b + c2
    if kind == "cs":
        sxy /= s2
        return sxy
    mxy *= 2
    mxy += c1  # A1
    mxy *= sxy
    mx += c1  # B1
    mx *= s2
    mxy /= mx
    return mxy


# --------------------------------------------------------------------------------------
# CUDA twin
# --------------------------------------------------------------------------------------

def _tile_height(nq, rx, ry, itemsize, ntaps, limit, ny=32):
    """Largest output tile height (rows per block) whose shared memory fits ``limit``.

    Heights of twice the image height or more are skipped (1-D signals get 8-row tiles).
    """
    for th in (32, 16, 8):
        if th > 8 and th // 2 >= ny:
            continue
        nbytes = _smem_bytes(th, nq, rx, ry, itemsize, ntaps)
        if nbytes <= limit:
            return th, nbytes
    return 8, _smem_bytes(8, nq, rx, ry, itemsize, ntaps)


def _smem_bytes(th, nq, rx, ry, itemsize, ntaps):
    rows = th + 2 * ry
    taps = ntaps * itemsize
    taps += (-taps) % 8
    tiles = 2 * rows * (_BX + 2 * rx + 1) * itemsize  # odd row strides, as in the kernel
    hsum = nq * rows * (_BX + 1) * itemsize
    red = (_BX * _BY // 32) * 8
    return taps + tiles + hsum + red


def _fixed_window(taps, kind):
    """``(W, box)`` of the fixed-window kernel for ``(wz, wy, wx)``, or ``None``."""
    _, wy, wx = taps
    w = wx.size
    if wy.size != w:
        return None
    box = _is_uniform(wx) and _is_uniform(wy)
    if (w, box) not in _FIXED or (kind == "ncc" and not box):
        return None
    if not box and not (np.array_equal(wx, wx[::-1]) and np.array_equal(wy, wy[::-1])):
        return None  # the weighted kernel keeps half of a symmetric window's taps
    return w, box


def _fixed_smem_bytes(w, nq, itemsize, ntaps):
    """Shared memory of ``window_moments_fixed`` (the layout of ``gpuimg::wm_fixed``)."""
    rows = _FIXED_TH[itemsize] + w - 1
    plane = rows * (_BX + 1)
    red = (_BX * _BY // 32) * 8
    p4 = plane * 4 * itemsize if nq >= 4 else 0
    p1 = (plane + plane % 2) * itemsize if nq != 4 else 0
    tile = rows * (_BX + w) * 2 * itemsize
    return red + p4 + p1 + tile + ntaps * itemsize


def _fixed_tiles_per_block(n_tiles):
    """Tiles a block of the fixed kernel walks down (of ``n_tiles`` in the launch): up to 4,
    while the grid keeps at least 1024 blocks (several waves on the largest GPUs)."""
    return max(1, min(4, n_tiles // 1024))


#: cudaDevAttrMaxSharedMemoryPerBlockOptin (CUDA runtime enumeration)
_ATTR_SMEM_OPTIN = 97
#: per (runtime, device): the opt-in shared memory limit; per kernel: the limit set on it
#: (entries keep their runtime or kernel alive, so the ids in the keys are not reused)
_SMEM_OPTIN: dict = {}
_SMEM_SET: dict = {}


def _opt_in(xp, kern, smem, what):
    """Allow ``smem`` bytes of dynamic shared memory for ``kern`` (above the 48 KiB default).

    The device's limit is queried once (``Device().attributes`` would query every attribute of
    the device on each call) and a kernel's own limit is raised only when it must grow.
    """
    if smem <= _SMEM_DEFAULT:
        return
    rt = xp.cuda.runtime
    dev = xp.cuda.Device().id
    hit = _SMEM_OPTIN.get((id(rt), dev))  # (the entry keeps rt alive: its id is not reused)
    if hit is None or hit[0] is not rt:
        hit = _SMEM_OPTIN[id(rt), dev] = (rt, int(rt.deviceGetAttribute(_ATTR_SMEM_OPTIN, dev)))
    optin = hit[1]
    if smem > optin:
        raise ValueError(
            f"win_size: a window of {what} needs {smem} bytes of shared memory per block, "
            f"more than this device's {optin}"
        )
    kept = _SMEM_SET.get(id(kern))
    if kept is None or kept[0] is not kern or kept[1] < smem:
        kern.max_dynamic_shared_size_bytes = smem
        _SMEM_SET[id(kern)] = (kern, smem)


@primitive("window_moments", "cupy")
def _window_moments_cupy(be, a, b, kind, taps, mode="reflect", *, cov_norm=1.0, c1=0.0, c2=0.0,
                         eps=0.0, crop=None, want_map=True):
    """CUDA twin of ``window_moments``: one fused launch plus a per-image sum of partials."""
    xp = be.xp
    a = xp.ascontiguousarray(a)
    b = xp.ascontiguousarray(b, dtype=a.dtype)
    dt = a.dtype
    nsp = len(taps)
    spatial = (1,) * (3 - nsp) + tuple(int(n) for n in a.shape[a.ndim - nsp:])
    nz, ny, nx = spatial
    batch_shape = a.shape[: a.ndim - nsp]
    nbatch = math.prod(batch_shape)
    full = [np.ones(1)] * (3 - nsp) + [np.asarray(t, dtype=np.float64) for t in taps]
    rz, ry, rx = (t.size // 2 for t in full)
    taps_dev = device_constant(xp, np.concatenate(full))

    nq = _NQ[kind]
    slices = nbatch * nz
    gz = min(slices, 65535)
    gx = (nx + _BX - 1) // _BX
    c = int(crop or 0)
    crops = (c if nsp == 3 else 0, c if nsp >= 2 else 0, c)
    params = (dt.type(cov_norm), dt.type(c1), dt.type(c2), dt.type(eps),
              np.int64(crops[0]), np.int64(crops[1]), np.int64(crops[2]))
    flags = (np.int32(KINDS[kind]), np.int32(bool(want_map)), np.int32(crop is not None))
    # unused outputs get a one-element placeholder; the flags tell the kernel to skip them
    out = xp.empty(a.shape if want_map else (1,), dtype=dt)

    # the fixed kernels index rows and columns with 32-bit integers
    fixed = _fixed_window(full, kind) if nsp >= 2 and max(ny, nx) <= 1 << 30 else None
    if fixed is not None:
        w, box = fixed
        if kind == "ncc":  # box windows only (_fixed_window)
            kern = _FAMILY.get(f"window_moments_fixed_ncc<{type_name(dt)}, {w}>")
        else:
            kern = _FAMILY.get(f"window_moments_fixed<{type_name(dt)}, {w}, {'true' if box else 'false'}>")
        smem = _fixed_smem_bytes(w, nq, dt.itemsize, int(taps_dev.size))
        _opt_in(xp, kern, smem, f"{w}x{w}")
        row_tiles = -(-ny // _FIXED_TH[dt.itemsize])
        tiles = min(row_tiles, _fixed_tiles_per_block(gx * row_tiles * slices))
        gy = -(-row_tiles // tiles)
        head = (np.int32(rz), np.int32(tiles), np.int32(_KMODE[mode]))
    else:
        kern = _FAMILY.get(f"window_moments<{type_name(dt)}, {_KMODE[mode]}>")
        th, smem = _tile_height(nq, rx, ry, dt.itemsize, int(taps_dev.size), _SMEM_DEFAULT, ny)
        _opt_in(xp, kern, smem, f"{2 * ry + 1}x{2 * rx + 1}")
        gy = (ny + th - 1) // th
        head = (np.int32(rz), np.int32(ry), np.int32(rx), np.int32(th))
    partial = xp.empty(slices * gy * gx if crop is not None else 1, dtype=xp.float64)
    kern(
        (gx, gy, gz),
        (_BX, _BY, 1),
        (a, b, out, partial, taps_dev, np.int64(slices), np.int64(nz), np.int64(ny), np.int64(nx), *head, *flags, *params),
        shared_mem=smem,
    )
    means = None
    if crop is not None:
        count = 1
        for n, cc in zip(spatial, crops):
            count *= n - 2 * cc
        means = partial.reshape(nbatch, -1).sum(axis=1).reshape(batch_shape) / count
    return (out if want_map else None), means
