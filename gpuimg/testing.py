"""Helpers for tests and benchmarks that run one body on every backend.

``BACKENDS`` lists the backend names; :func:`backend_or_skip` returns the backend for a
parametrised case, or skips the case (with the reason CuPy is unusable) so that GPU cases
show as *skipped* on a machine without a GPU rather than vanish.
"""

from __future__ import annotations

from gpuimg import _backend

BACKENDS = ("numpy", "cupy")


def backend_or_skip(name: str) -> _backend.Backend:
    """The backend ``name``; ``pytest.skip`` when it is CuPy and no device is usable."""
    if name == "cupy" and not _backend.gpu_available():
        import pytest

        pytest.skip(f"CuPy backend unusable: {_backend.backend_info()['reason']}")
    return _backend.get_backend(backend=name)
