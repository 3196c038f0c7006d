"""Boundary modes as index functions: the NumPy twin of ``kernels/boundary.cuh``.

Mode names are SciPy's; the codes are the ``GPUIMG_MODE_*`` numbers of the CUDA header.
``index(i, n, mode)`` maps integer sample indices (any range) into ``[0, n)`` and returns -1
where a constant mode reads the fill value.
"""

from __future__ import annotations

import numpy as np

MODE_CODES = {
    "reflect": 0,
    "mirror": 1,
    "nearest": 2,
    "constant": 3,
    "wrap": 4,
    "grid-wrap": 5,
    "grid-constant": 6,
}
#: Equivalent OpenCV border types (documentation and CLI help).
OPENCV_BORDER = {
    "reflect": "BORDER_REFLECT",
    "mirror": "BORDER_REFLECT_101",
    "nearest": "BORDER_REPLICATE",
    "constant": "BORDER_CONSTANT",
    "wrap": "BORDER_WRAP",
    "grid-wrap": "BORDER_WRAP",
    "grid-constant": "BORDER_CONSTANT",
}


def index(i, n: int, mode: str, xp=np):
    """Map integer indices ``i`` into ``[0, n)`` for ``mode``; -1 marks constant fill."""
    i = xp.asarray(i)
    if mode in ("constant", "grid-constant"):
        return xp.where((i >= 0) & (i < n), i, -1)
    if mode == "nearest":
        return xp.clip(i, 0, n - 1)
    if mode in ("wrap", "grid-wrap"):
        return xp.mod(i, n)
    if mode == "reflect":
        r = xp.mod(i, 2 * n)
        return xp.where(r < n, r, 2 * n - 1 - r)
    if mode == "mirror":
        if n == 1:
            return xp.zeros_like(i)
        period = 2 * n - 2
        r = xp.mod(i, period)
        return xp.where(r < n, r, period - r)
    raise ValueError(f"mode must be one of {sorted(MODE_CODES)}, got {mode!r}")


def pad(x, widths, mode: str, cval: float = 0.0, xp=np):
    """``x`` extended by ``widths`` (``numpy.pad`` widths) as ``mode`` extends it.

    ``xp.pad`` with :func:`pad_mode` reproduces :mod:`scipy.ndimage`'s extension for every
    mode and any width (repeated reflections and wraps included); constant modes fill ``cval``.
    """
    pm = pad_mode(mode)
    if pm == "constant":
        return xp.pad(x, widths, mode=pm, constant_values=x.dtype.type(cval))
    return xp.pad(x, widths, mode=pm)


def pad_mode(mode: str) -> str:
    """``numpy.pad`` mode that extends an array like ``mode`` does."""
    return {
        "reflect": "symmetric",
        "mirror": "reflect",
        "nearest": "edge",
        "constant": "constant",
        "grid-constant": "constant",
        "wrap": "wrap",
        "grid-wrap": "wrap",
    }[mode]
