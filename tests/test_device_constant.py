"""``device_constant``: host taps and tables go to the device once and are reused.

A stand-in device module counts the host-to-device copies; the values must equal NumPy's
conversion of the host array to the asked dtype.
"""

import types

import numpy as np
import pytest

from gpuimg import _lru


@pytest.fixture(autouse=True)
def _private_caches(monkeypatch):
    # the stand-in's arrays must not reach the process-wide caches that real CuPy calls read
    monkeypatch.setattr(_lru, "_CONSTANTS", _lru.LRU(256))
    monkeypatch.setattr(_lru, "_TABLES", _lru.LRU(64))


class _DeviceArray(np.ndarray):
    pass


def _fake_xp(copies):
    def asarray(a, dtype=None):
        if not isinstance(a, _DeviceArray):
            copies.append(np.asarray(a).nbytes)
        return np.array(a, dtype=dtype).view(_DeviceArray)

    def ascontiguousarray(a, dtype=None):
        return np.ascontiguousarray(a, dtype=dtype).view(_DeviceArray)

    device = types.SimpleNamespace(id=0)
    return types.SimpleNamespace(ndarray=_DeviceArray, asarray=asarray, ascontiguousarray=ascontiguousarray,
                                 cuda=types.SimpleNamespace(Device=lambda: device))


def test_small_host_arrays_are_copied_once_by_content():
    copies = []
    xp = _fake_xp(copies)
    taps = np.full(9, 1 / 9)
    first = _lru.device_constant(xp, taps, np.float32)
    np.testing.assert_array_equal(first, taps.astype(np.float32))
    assert first.dtype == np.float32 and first.flags.c_contiguous
    again = _lru.device_constant(xp, np.full(9, 1 / 9), np.float32)  # equal contents, another array
    assert again is first and len(copies) == 1
    other = _lru.device_constant(xp, taps, np.float64)  # another dtype: another copy
    np.testing.assert_array_equal(other, taps)
    changed = _lru.device_constant(xp, np.full(9, 1 / 8), np.float32)
    np.testing.assert_array_equal(changed, np.full(9, 1 / 8, dtype=np.float32))
    assert len(copies) == 3


def test_large_tables_are_cached_only_when_read_only():
    copies = []
    xp = _fake_xp(copies)
    big = np.arange(_lru._BY_CONTENT_BYTES // 8 + 100, dtype=np.int64)
    _lru.device_constant(xp, big)
    _lru.device_constant(xp, big)
    assert len(copies) == 2  # writeable: it may change between calls
    big.flags.writeable = False
    a = _lru.device_constant(xp, big)
    b = _lru.device_constant(xp, big)
    assert a is b and len(copies) == 3
    np.testing.assert_array_equal(a, big)


def test_entries_are_per_array_module():
    # two device modules with the same device id and taps get their own copies
    copies_a, copies_b = [], []
    xp_a, xp_b = _fake_xp(copies_a), _fake_xp(copies_b)
    taps = np.full(9, 1 / 9)
    a = _lru.device_constant(xp_a, taps, np.float32)
    b = _lru.device_constant(xp_b, taps, np.float32)
    assert a is not b and len(copies_a) == len(copies_b) == 1
    assert _lru.device_constant(xp_a, taps, np.float32) is a


def test_device_arrays_pass_through_without_a_copy():
    copies = []
    xp = _fake_xp(copies)
    dev = np.arange(5.0).view(_DeviceArray)
    out = _lru.device_constant(xp, dev, np.float32)
    assert copies == [] and out.dtype == np.float32
    np.testing.assert_array_equal(out, np.arange(5.0))
