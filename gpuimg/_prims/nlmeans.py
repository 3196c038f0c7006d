"""Primitives ``nl_means_fast`` and ``nl_means_classic``: scikit-image's non-local means.

Contract (both twins): ``x`` is float32/float64 ``(batch, channels, rows, cols)``; the
result has its shape and dtype. ``s`` (odd patch size), ``dist`` (search radius), ``h`` and
``var`` (noise variance sigma^2) follow :func:`skimage.restoration.denoise_nl_means`; the
image is extended by whole-sample symmetric reflection (``numpy.pad(mode="reflect")``).
Weights are ``fast_exp(-d)`` with Schraudolph's exponential approximation, which is what
scikit-image evaluates, and are zero past the distance cut-off 5.

``nl_means_fast`` (Darbon et al. 2008, Froment 2014): for every shift ``t`` in
``[-dist, dist]^2``, ``d = max(sum_box(sum_c (P[x] - P[x+t])^2 - 2 C var), 0) / (C h^2 s^2)``
where the box is the ``(s-1) x (s-1)`` block of rows and columns ``(p - s//2, p + s//2]``.

``nl_means_classic`` (Buades et al. 2005): Gaussian patch weights ``g`` (sigma
``(s-1)/4``) normalised by ``1 / (C sum(g) h^2)``, ``d = sum_patch g (sum_c diff^2 - 2 C
var)``, the running sum checked against the cut-off before each patch row, neighbours
restricted to the image.
"""

from __future__ import annotations

import numpy as np

from gpuimg._backend import primitive
from gpuimg._kernels import KernelFamily, launch_1d, type_name
from gpuimg._prims.pairs import credit_pairs
from gpuimg._parallel import run_chunks, workers

_FAMILY = KernelFamily(
    "nlmeans.cu",
    [f"{k}<{t}>" for k in ("nlm_fast", "nlm_classic") for t in ("float", "double")],
)

EXP_A = 1512775.3951951856938  # 2**20 / ln 2
EXP_BC = 1072632447  # 1023 * 2**20 - 60801
CUTOFF = 5.0
#: samples per strip of near rows: small enough that a shift's arrays stay in cache, large
#: enough that each NumPy call outweighs the hand-over of the GIL between threads. Fast mode,
#: patch 7, distance 11, float32, 2 cores (2 threads / 1 thread): 512² 103 / 158 ms at 2^18
#: against 166-237 / 166 ms at 2^16; 1024² 380 / 615 ms at 2^18, 504 / 635 at 2^16, 649 / 839
#: at 2^20
_STRIP = 1 << 18


def fast_exp(y):
    """Schraudolph's ``exp`` approximation as scikit-image computes it (float64)."""
    y = np.asarray(y, dtype=np.float64)
    with np.errstate(invalid="ignore"):  # NaN distances: callers zero those weights
        hi = np.trunc(EXP_A * y).astype(np.int64) + EXP_BC
    return ((hi & 0xFFFFFFFF).astype(np.uint64) << np.uint64(32)).view(np.float64)


def classic_patch_weights(s, channels, h, dtype):
    """scikit-image's Gaussian patch weights for the classic algorithm, already normalised."""
    off = s // 2
    a = (s - 1.0) / 4.0
    rv = np.arange(-off, off + 1, dtype=dtype)
    gr, gc = np.meshgrid(rv, rv, indexing="ij")
    w = np.exp(-(gr * gr + gc * gc) / (2 * a * a)).astype(dtype)
    w *= 1.0 / (channels * np.sum(w) * h * h)
    return np.ascontiguousarray(w, dtype=dtype)


# ----------------------------------------------------------------------------------------
# NumPy twins
# ----------------------------------------------------------------------------------------

def _box_flat(a, step, m):
    """``out[i] = sum_{k<m} a[i + k*step]`` by doubling (``log2 m + popcount m`` adds)."""
    acc = None
    shift = 0
    power, width = a, 1
    while m:
        if m & 1:
            seg = power[shift * step:]
            if acc is None:
                acc = seg
            else:
                n = min(acc.size, seg.size)
                acc = acc[:n] + seg[:n]
            shift += width
        m >>= 1
        if m:
            k = width * step
            power = power[:-k] + power[k:]
            width *= 2
    return acc


def _weight_bits(dtype):
    """(int dtype, bit pattern of fast_exp(0), scale from distance to bit units)."""
    if np.dtype(dtype) == np.float32:
        # fast_exp values are float32-exact: exponent rebased by 1023 - 127, mantissa << 3
        return np.int32, float(8 * (EXP_BC - (896 << 20))), 8.0 * EXP_A
    return np.int64, float(EXP_BC) * 2.0 ** 32, EXP_A * 2.0 ** 32


@primitive("nl_means_fast", "numpy")
def _nlm_fast_numpy(be, x, s, dist, h, var):
    b, c, rows, cols = x.shape
    dt = x.dtype
    off = s // 2
    m = 2 * off
    pad = off + dist + 1
    padded = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), mode="reflect")
    prow, pcol = padded.shape[2:]
    n = prow * pcol
    itype, bits0, unit = _weight_bits(dt)
    # distances are summed directly in weight-bit units: scale the image by sqrt(unit / h2s2)
    kappa = unit / (c * h * h * s * s)
    scaled = (padded * dt.type(np.sqrt(kappa))).reshape(b, c, n)
    raw = padded.reshape(b, c, n)
    var_bits = dt.type(kappa * c * 2.0 * var)
    limit = dt.type(unit * CUTOFF)
    out = np.empty_like(x)

    def accumulate(bi, strips, num, den):
        for e0, e1 in strips:
            for tr in range(-dist, dist + 1):
                # near pixels p (rows e0..e1 of this strip) whose pair (p, p + t) touches the
                # output rows; each pair is visited once, in the strip holding its near pixel
                r0 = max(pad - max(tr, 0), e0)
                r1 = min(pad + rows + max(-tr, 0), e1)
                if r0 >= r1:
                    continue
                a0, a1 = r0 * pcol, r1 * pcol
                length = a1 - a0
                lo = a0 - max(off - 1, 0) * (pcol + 1)
                hi = a1 + off * (pcol + 1)
                bits = np.empty(length, dtype=itype)
                w = bits.view(dt)
                tmp = np.empty(length, dtype=dt)
                cut = np.empty(length, dtype=bool)
                for tc in range(0, dist + 1):
                    if tc == 0 and tr < 0:
                        continue  # (tr, 0) and (-tr, 0) pair the same pixels
                    t = tr * pcol + tc
                    if m:
                        d = scaled[bi, 0, lo:hi] - scaled[bi, 0, lo + t:hi + t]
                        np.square(d, out=d)
                        for ch in range(1, c):
                            e = scaled[bi, ch, lo:hi] - scaled[bi, ch, lo + t:hi + t]
                            np.square(e, out=e)
                            d += e
                        if var:
                            d -= var_bits
                        box = _box_flat(_box_flat(d, 1, m), pcol, m)[:length]
                        if var:
                            np.maximum(box, 0, out=box)
                        with np.errstate(invalid="ignore"):  # NaN samples: weight -0.0, value NaN
                            np.subtract(dt.type(bits0), box, out=bits, casting="unsafe")
                        np.greater(box, limit, out=cut)
                        np.copyto(w, 0, where=cut)
                    else:
                        w.fill(dt.type(fast_exp(0.0)))
                    if tc == 0 and tr == 0:
                        w *= dt.type(0.5)
                    credit_pairs(num, den, raw[bi], w, slice(a0, a1), slice(a0 + t, a1 + t), tmp)

    # near rows in strips that keep a shift's working arrays in cache; strips dealt to threads
    first, last = pad - dist, pad + rows + dist
    n_groups = max(1, min(workers(), last - first))
    n_strips = n_groups * max(1, -(-(last - first) * pcol // (_STRIP * n_groups)))
    edges = np.linspace(first, last, min(n_strips, last - first) + 1).round().astype(int)
    strips = list(zip(edges[:-1], edges[1:]))
    for bi in range(b):
        groups = [strips[k::n_groups] for k in range(n_groups)]
        nums = [np.zeros((c, n), dtype=dt) for _ in groups]
        dens = [np.zeros(n, dtype=dt) for _ in groups]
        run_chunks(accumulate, [(bi, g, nu, de) for g, nu, de in zip(groups, nums, dens)])
        num, den = sum(nums[1:], nums[0]), sum(dens[1:], dens[0])
        inner = (slice(None), slice(pad, pad + rows), slice(pad, pad + cols))
        out[bi] = num.reshape(c, prow, pcol)[inner] / den.reshape(1, prow, pcol)[inner]
    return out


@primitive("nl_means_classic", "numpy")
def _nlm_classic_numpy(be, x, s, dist, h, var):
    b, c, rows, cols = x.shape
    dt = x.dtype
    off = s // 2
    padded = np.pad(x, ((0, 0), (0, 0), (off, off), (off, off)), mode="reflect")
    w = classic_patch_weights(s, c, h, dt)
    # the Gaussian is separable: row sums first, then the running sum down the patch rows
    g_col = w[off] / w[off, off]
    g_row = w[:, off]
    var2 = dt.type(2.0 * var)
    out = np.empty_like(x)
    hrow = np.empty((b, rows + 2 * off, cols), dtype=dt)
    for bi in range(b):
        num = np.zeros((c, rows, cols), dtype=dt)
        den = np.zeros((rows, cols), dtype=dt)
        for tr in range(-dist, dist + 1):
            r0, r1 = max(0, -tr), min(rows, rows - tr)
            if r0 >= r1:
                continue
            for tc in range(-dist, dist + 1):
                c0, c1 = max(0, -tc), min(cols, cols - tc)
                if c0 >= c1:
                    continue
                nr, nc = r1 - r0, c1 - c0
                ref = padded[bi, :, r0:r1 + 2 * off, c0:c1 + 2 * off]
                nb = padded[bi, :, r0 + tr:r1 + tr + 2 * off, c0 + tc:c1 + tc + 2 * off]
                e = ref - nb
                np.square(e, out=e)
                e = e.sum(axis=0) - c * var2
                hs = hrow[bi, :nr + 2 * off, :nc]
                np.multiply(e[:, :nc], g_col[0], out=hs)
                for k in range(1, s):
                    hs += g_col[k] * e[:, k:k + nc]
                run = np.zeros((nr, nc), dtype=dt)
                keep = np.ones((nr, nc), dtype=bool)
                for a in range(s):
                    if a:
                        keep &= run <= CUTOFF
                    run += g_row[a] * hs[a:a + nr]
                keep &= ~np.isnan(run)  # NaN samples in the patches: weight 0
                np.maximum(run, 0, out=run)
                wt = fast_exp(-run).astype(dt)
                wt[~keep] = 0
                den[r0:r1, c0:c1] += wt
                num[:, r0:r1, c0:c1] += wt * padded[bi, :, r0 + tr + off:r1 + tr + off,
                                                     c0 + tc + off:c1 + tc + off]
        out[bi] = num / den
    return out


# ----------------------------------------------------------------------------------------
# CUDA twins
# ----------------------------------------------------------------------------------------

def _launch_cupy(be, x, kernel, pad, make_args):
    """Pad ``x`` by reflection, launch one thread per output pixel, return the output."""
    xp = be.xp
    b, c, rows, cols = x.shape
    padded = xp.ascontiguousarray(xp.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), mode="reflect"))
    out = xp.empty(x.shape, dtype=x.dtype)
    head = (np.int64(b), np.int32(c), np.int64(rows), np.int64(cols))
    kern = _FAMILY.get(f"{kernel}<{type_name(x.dtype)}>")
    launch_1d(kern, b * rows * cols, make_args(padded, out, head), block=128)
    return out


@primitive("nl_means_fast", "cupy")
def _nlm_fast_cupy(be, x, s, dist, h, var):
    c = x.shape[1]
    pad = s // 2 + dist + 1
    return _launch_cupy(be, x, "nlm_fast", pad, lambda p, out, head: (
        p, out, *head, np.int64(pad), np.int32(s // 2), np.int32(dist),
        np.float64(c * h * h * s * s), np.float64(2.0 * var)))


@primitive("nl_means_classic", "cupy")
def _nlm_classic_cupy(be, x, s, dist, h, var):
    w = be.xp.asarray(classic_patch_weights(s, x.shape[1], h, x.dtype))
    return _launch_cupy(be, x, "nlm_classic", s // 2, lambda p, out, head: (
        p, w, out, *head, np.int32(s), np.int32(dist), x.dtype.type(2.0 * var)))
