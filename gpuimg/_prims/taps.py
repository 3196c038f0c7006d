"""Gathered taps: the NumPy point samplers' inner loop.

A sampler that reads ``taps x taps`` source pixels around each output position (the warp
sampler's linear, cubic and Lanczos-4 kernels, the B-spline sampler of orders 1-5, in 2-D
and 3-D) pads the batch once so that every tap lies inside, stores every run of ``taps``
horizontal neighbours as one gatherable item (:func:`tap_rows`; runs of pairs past
``RUNS_MAX_BYTES``, :func:`run_width`), and per block of output pixels gathers one item per
tap row and sums it with the weights (:func:`gather_taps`).
"""

from __future__ import annotations

import numpy as np

from gpuimg._parallel import run_chunks, workers

__all__ = ["RUNS_MAX_BYTES", "as_items", "gather_taps", "run_width", "tap_rows"]


def as_items(rows):
    """View the contiguous rows of a 2-D array as ``k`` elements each of a number type (the
    widest of 16, 8 or 4 bytes that divides a row).

    NumPy gathers such an item with one typed copy that releases the GIL (record dtypes do
    not), so row gathers are cheap and scale over threads.
    """
    nbytes = rows.shape[1] * rows.dtype.itemsize
    item = np.complex128 if nbytes % 16 == 0 else np.float64 if nbytes % 8 == 0 else np.float32
    k = nbytes // np.dtype(item).itemsize
    return np.ascontiguousarray(rows).view(item).reshape(-1, k)


#: most bytes of tap runs a sampler builds; wider runs fall back to pairs (:func:`run_width`)
RUNS_MAX_BYTES = 1 << 30


def run_width(taps, nbytes):
    """Width of the runs :func:`tap_rows` builds for ``taps`` taps per row over a padded batch
    of ``nbytes``: all of them (one gather per tap row) while the runs take at most
    ``RUNS_MAX_BYTES``, else pairs (``taps / 2`` gathers per tap row, runs of twice the
    batch)."""
    return taps if taps * nbytes <= RUNS_MAX_BYTES else 2


def tap_rows(xp_pad, taps):
    """Every run of ``taps`` horizontal neighbours of the padded batch as one gatherable item.

    Returns ``(items, wq)``: row ``(b * hp + y) * wq + x`` of ``items`` holds
    ``padded[b, y, x:x + taps]`` (see :func:`as_items`). The runs are built column by column (long
    strided copies), in row blocks on the thread pool. ``taps`` may be a divisor of the taps
    a sampler reads (:func:`run_width`): :func:`gather_taps` then reads each row in pieces.
    """
    n, hp, wp = xp_pad.shape
    wq = wp - taps + 1
    runs = np.empty((n * hp, wq, taps), dtype=xp_pad.dtype)
    flat = xp_pad.reshape(n * hp, wp)

    sub = max(1, (1 << 15) // max(wq, 1))  # rows whose runs stay in cache while filled

    def block(r0, r1):
        for s0 in range(r0, r1, sub):
            s1 = min(s0 + sub, r1)
            for c in range(taps):
                runs[s0:s1, :, c] = flat[s0:s1, c:c + wq]

    step = max(1, (n * hp) // (4 * workers()) + 1)
    run_chunks(block, [(r0, min(r0 + step, n * hp)) for r0 in range(0, n * hp, step)])
    return as_items(runs.reshape(-1, taps)), wq


def gather_taps(items, wq, plane, base, wxc, wy, dest, steps=None):
    """``dest[b, p] = sum_r wy[p, r] sum_c wx[p, c] padded[b, y_p + r, x_p + c]`` over the
    runs ``items`` of :func:`tap_rows` (row length ``wq``, ``plane`` runs per image).

    ``base[p]`` is the run index of ``(y_p, x_p)`` in the first image (modified in place);
    ``wxc`` (``(P, taps)``) holds ``wx`` with every odd tap negated, ``taps`` even (pad with a
    tap of weight 0); ``wy`` is ``(P, rows)``; both in the data dtype; ``dest`` is
    ``(images, P)``. Tap row ``r`` starts ``steps[r - 1]`` runs after row ``r - 1`` (default
    ``wq``: the next image row; a volume's rows of ``(z, y)`` taps step to the next slice
    too). One gather per tap row, or one per run where the runs are narrower than the taps.
    The taps pair up as complex numbers: the real part of ``(x0 + i x1)(w0 - i w1)`` is
    ``x0 w0 + x1 w1``, so one complex product per pair of taps (NumPy's vectorised complex
    loop) replaces two products and a sum over a strided column.
    """
    nimg, taps = dest.shape[0], wxc.shape[1]
    dtype = dest.dtype
    width = items.shape[1] * items.dtype.itemsize // dtype.itemsize  # taps per run
    if taps % 2 or width % 2 or taps % width:
        raise ValueError(f"gather_taps pairs the taps: {taps} taps in runs of {width} must both be even")
    cdtype = np.result_type(dtype, np.complex64)
    half, pieces = width // 2, taps // width
    wc = wxc.view(cdtype)
    if nimg > 1:
        base = (base[None, :] + (np.arange(nimg) * plane)[:, None]).ravel()
    # indices are in range by construction: "clip" is the cheapest bounds rule of take
    runs = np.empty((base.size, items.shape[1]), dtype=items.dtype)
    prod = np.empty((nimg, wc.shape[0], half), dtype=cdtype)
    pairs = np.empty((nimg, wc.shape[0]), dtype=cdtype) if taps > 2 else None
    row = np.empty((nimg, wc.shape[0]), dtype=dtype)
    for r in range(wy.shape[1]):
        if r:
            base += (wq if steps is None else steps[r - 1]) - (pieces - 1) * width
        for g in range(pieces):
            if g:
                base += width
            run = np.take(items, base, axis=0, out=runs, mode="clip").view(cdtype).reshape(nimg, -1, half)
            np.multiply(run, wc[:, g * half:(g + 1) * half], out=prod)
            if g == 0 and half == 1 and pieces == 1:  # two taps: the one product is the sum
                s = prod[..., 0]
            elif g == 0 and half == 1:  # runs of two: the sum starts from the first pair
                s = pairs
                np.copyto(s, prod[..., 0])
            elif g == 0:
                s = np.add(prod[..., 0], prod[..., 1], out=pairs)
                for c in range(2, half):
                    s += prod[..., c]
            else:
                for c in range(half):
                    s += prod[..., c]
        if r == 0:
            np.multiply(s.real, wy[:, 0], out=dest)
        else:
            np.multiply(s.real, wy[:, r], out=row)
            dest += row
