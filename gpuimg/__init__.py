"""gpuimg: image restoration, comparison and resampling on NumPy/SciPy or CuPy.

Importing gpuimg never imports CuPy. Submodules load on first access::

    import gpuimg
    gpuimg.filters.convolve(image, kernel)
"""

from __future__ import annotations

import importlib
from typing import Any

from gpuimg._backend import asnumpy, backend_info, get_backend, gpu_available, use_backend

__version__ = "0.1.0"

_SUBMODULES = (
    "batch",
    "cli",
    "dask",
    "demo",
    "denoise",
    "filters",
    "io",
    "metrics",
    "psf",
    "registration",
    "restoration",
    "segment",
    "spline",
    "transform",
)

__all__ = [
    "__version__",
    "asnumpy",
    "backend_info",
    "get_backend",
    "gpu_available",
    "use_backend",
    *_SUBMODULES,
]


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"gpuimg.{name}")
    raise AttributeError(f"module 'gpuimg' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
