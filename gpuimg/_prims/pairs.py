"""Shared step of the NumPy twins that visit each symmetric pair of samples once.

Filters whose weight ``w(p, q)`` equals ``w(q, p)`` (bilateral, non-local means) visit only
half of the offsets ``o`` and credit each pair ``(p, p + o)`` to both of its ends.
"""

from __future__ import annotations

import numpy as np


def credit_pairs(num, den, raw, w, near: slice, far: slice, tmp) -> None:
    """``den[p] += w``, ``num[:, p] += w raw[:, p + o]`` and the same with ``p`` and
    ``p + o`` swapped, for flat sample ranges ``near`` (the ``p``) and ``far`` (``p + o``)."""
    den[near] += w
    den[far] += w
    for ch in range(num.shape[0]):
        np.multiply(w, raw[ch, far], out=tmp)
        num[ch, near] += tmp
        np.multiply(w, raw[ch, near], out=tmp)
        num[ch, far] += tmp
