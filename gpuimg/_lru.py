"""A small thread-safe least-recently-used map for per-device objects that cost a transfer or a
plan to build (cuFFT plans, device copies of host tables, kernel spectra)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any


class LRU:
    """At most ``size`` entries; :meth:`get` refreshes an entry, :meth:`put` evicts the oldest."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Any:
        """The value stored under ``key``, or None."""
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: Hashable, value: Any) -> Any:
        """Store ``value`` under ``key`` and return it."""
        with self._lock:
            self._items[key] = value
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return value


#: device copies of small host arrays (filter taps), by contents, and of larger read-only
#: tables (resampling), by identity: the second is kept short, as its entries can be large
_CONSTANTS = LRU(256)
_TABLES = LRU(64)
#: host arrays up to this size are keyed by their bytes; larger ones only when read-only
_BY_CONTENT_BYTES = 1 << 16


def device_constant(xp: Any, host: Any, dtype: Any = None) -> Any:
    """``host`` as a contiguous ``dtype`` array on the current device, copied once and reused.

    A copy from pageable host memory can make the host wait for the device, so taps and tables
    that every call passes again are cached per device: small arrays by their contents, larger
    read-only ones (memoised tables) by identity, each entry keeping its host array alive so
    an id is not reused while cached. Keys hold the array module's identity too (each entry
    keeps the module alive), so two device modules never share an entry. Device arrays and large
    writeable arrays are converted without caching. Callers must not write to the result.
    """
    import numpy as np  # noqa: PLC0415  (numpy is imported by every caller already)

    if isinstance(host, xp.ndarray):
        return xp.ascontiguousarray(host, dtype=dtype)
    host = np.asarray(host)
    dt = np.dtype(dtype if dtype is not None else host.dtype)
    where = (id(xp), xp.cuda.Device().id, dt.str)
    if host.nbytes <= _BY_CONTENT_BYTES:
        cache, key = _CONSTANTS, (*where, host.dtype.str, host.shape, host.tobytes())
    elif not host.flags.writeable:
        cache, key = _TABLES, (*where, id(host))
    else:
        return xp.ascontiguousarray(xp.asarray(host, dtype=dt))
    hit = cache.get(key)
    if hit is None:
        hit = cache.put(key, (host, xp.ascontiguousarray(xp.asarray(host, dtype=dt)), xp))
    return hit[1]
