"""Test fixtures: every test body runs on each available backend.

The ``be`` fixture is a :class:`gpuimg._backend.Backend`; its CuPy case is *skipped* (not
dropped) when no GPU is usable, so a CPU run reports it. ``to_be`` moves host data to that
backend and ``to_np`` brings results back for comparison with the (host) reference.
"""

from __future__ import annotations

import numpy as np
import pytest

from gpuimg import _backend
from gpuimg.testing import BACKENDS, backend_or_skip



@pytest.fixture(params=BACKENDS)
def be(request):
    return backend_or_skip(request.param)


@pytest.fixture
def rng(request):
    # fresh inputs per test, reproducible from the test id
    import zlib

    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


def to_np(x):
    return np.asarray(_backend.asnumpy(x))


def to_be(be, x):
    return be.asarray(x)


# tolerance table: (rtol, atol) by dtype, relative to a data range of 1
TOL = {
    np.dtype(np.float64): 1e-10,
    np.dtype(np.float32): 1e-5,
}


def assert_close(actual, desired, *, dtype=None, tol=None, scale=None):
    """Compare a backend result with a host reference; tolerance scales with data range."""
    a = to_np(actual)
    d = np.asarray(desired)
    assert a.shape == d.shape, f"shape {a.shape} != {d.shape}"
    if tol is None:
        tol = TOL[np.dtype(dtype if dtype is not None else a.dtype)]
    if scale is None:
        finite = d[np.isfinite(d)]
        scale = max(float(np.ptp(finite)) if finite.size else 1.0, float(np.abs(finite).max()) if finite.size else 1.0, 1e-30)
    np.testing.assert_allclose(a, d, rtol=0, atol=tol * scale)


class NoSemaphores:
    """A multiprocessing context on a system without POSIX semaphores (no /dev/shm): its
    ``Lock()`` fails as ``sem_open`` does there."""

    def __init__(self, ctx):
        self._ctx = ctx

    def __getattr__(self, name):
        return getattr(self._ctx, name)

    def Lock(self):
        import errno

        raise OSError(errno.ENOSYS, "Function not implemented")
