"""Array-library dispatch: the one place in gpuimg that asks "NumPy or CuPy?".

Every public function calls :func:`get_backend` once with its array arguments and hands the
returned :class:`Backend` to private code. Private code uses ``be.xp``, ``be.fft``,
``be.ndimage`` and accelerated *primitives* (``be.window_moments(...)`` and so on). A
primitive has two implementations with one contract: a NumPy/SciPy twin and a CUDA twin,
registered with :func:`primitive`; the backend picks the twin, algorithms never branch.

CuPy that imports but has no usable device (no driver, no GPU) counts as unavailable; gpuimg
then runs on NumPy and :func:`backend_info` says why.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

__all__ = [
    "Backend",
    "asnumpy",
    "backend_info",
    "get_backend",
    "gpu_available",
    "primitive",
    "use_backend",
]

_NAMES = ("numpy", "cupy")

# name -> {"numpy": fn, "cupy": fn}; filled by @primitive in gpuimg/_prims/*.py
_PRIMITIVES: dict[str, dict[str, Callable[..., Any]]] = {}
_state = threading.local()
_process_default: list[str | None] = [None]


def primitive(name: str, backend: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register ``fn(be, *args, **kwargs)`` as the ``backend`` twin of primitive ``name``."""
    if backend not in _NAMES:
        raise ValueError(f"backend must be one of {_NAMES}, got {backend!r}")

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        _PRIMITIVES.setdefault(name, {})[backend] = fn
        return fn

    return deco


_prims_loaded = [False]


def _load_primitive_modules() -> None:
    """Import every module of ``gpuimg._prims`` (each registers its twins)."""
    if _prims_loaded[0]:
        return
    import pkgutil

    import gpuimg._prims as pkg

    for info in pkgutil.iter_modules(pkg.__path__):
        importlib.import_module(f"{pkg.__name__}.{info.name}")
    _prims_loaded[0] = True


# --------------------------------------------------------------------------------------
# CuPy discovery
# --------------------------------------------------------------------------------------

@dataclass
class _CupyStatus:
    usable: bool = False
    reason: str = "not checked"
    module: Any = None
    device: str | None = None
    memory_bytes: int | None = None
    compute_capability: str | None = None


_cupy_status: _CupyStatus | None = None
_cupy_lock = threading.Lock()


def _probe_cupy() -> _CupyStatus:
    global _cupy_status
    if _cupy_status is not None:
        return _cupy_status
    with _cupy_lock:
        if _cupy_status is not None:
            return _cupy_status
        st = _CupyStatus()
        if os.environ.get("GPUIMG_DISABLE_CUPY", "") not in ("", "0"):
            st.reason = "disabled by GPUIMG_DISABLE_CUPY"
        else:
            try:
                import cupy  # noqa: PLC0415  (the one sanctioned import)
            except Exception as exc:  # ImportError or a broken install
                st.reason = f"cupy is not importable: {type(exc).__name__}: {exc}"
            else:
                try:
                    n = cupy.cuda.runtime.getDeviceCount()
                    if n < 1:
                        raise RuntimeError("no CUDA device found")
                    dev = cupy.cuda.Device()
                    props = cupy.cuda.runtime.getDeviceProperties(dev.id)
                    name = props["name"]
                    st.device = name.decode() if isinstance(name, bytes) else str(name)
                    st.memory_bytes = int(props["totalGlobalMem"])
                    st.compute_capability = str(dev.compute_capability)
                    # a tiny allocation proves the context works
                    cupy.zeros(1, dtype=cupy.float32).sum().item()
                except Exception as exc:
                    st.reason = f"cupy {cupy.__version__} has no usable device: {exc}"
                else:
                    st.usable = True
                    st.module = cupy
                    st.reason = ""
        _cupy_status = st
        return st


def gpu_available() -> bool:
    """True when CuPy imports and a CUDA device answers."""
    return _probe_cupy().usable


def backend_info() -> dict[str, Any]:
    """Describe the backend gpuimg would choose for NumPy-free calls.

    Returns
    -------
    dict
        ``name`` (default backend), ``cupy_usable``, ``reason`` (why CuPy is unusable, empty
        when it is), ``device``, ``memory_bytes``, ``compute_capability``, ``numpy``,
        ``cupy`` (versions).
    """
    st = _probe_cupy()
    cupy_version = None
    if st.module is not None:
        cupy_version = st.module.__version__
    else:
        try:
            from importlib.metadata import version

            for dist in ("cupy-cuda13x", "cupy-cuda12x", "cupy"):
                try:
                    cupy_version = version(dist)
                    break
                except Exception:
                    continue
        except Exception:  # pragma: no cover
            pass
    default = _current_default()
    return {
        "name": default or ("cupy" if st.usable else "numpy"),
        "cupy_usable": st.usable,
        "reason": st.reason,
        "device": st.device,
        "memory_bytes": st.memory_bytes,
        "compute_capability": st.compute_capability,
        "numpy": np.__version__,
        "cupy": cupy_version,
    }


# --------------------------------------------------------------------------------------
# Backend object
# --------------------------------------------------------------------------------------

@dataclass(eq=False)
class Backend:
    """An array library plus gpuimg's accelerated primitives for it.

    Attributes
    ----------
    name : {"numpy", "cupy"}
    xp : module
        ``numpy`` or ``cupy``.
    fft : module
        ``scipy.fft`` or ``cupyx.scipy.fft`` (same API, plan caching on CuPy).
    ndimage : module
        ``scipy.ndimage`` or ``cupyx.scipy.ndimage``.
    """

    name: str
    xp: Any
    fft: Any
    ndimage: Any
    _prim_cache: dict[str, Callable[..., Any]] = field(default_factory=dict, repr=False)

    @property
    def is_gpu(self) -> bool:
        return self.name == "cupy"

    def asarray(self, x: Any, dtype: Any = None) -> Any:
        """Array on this backend (host data is copied to the device for CuPy)."""
        return self.xp.asarray(x, dtype=dtype)

    def to_numpy(self, x: Any) -> np.ndarray:
        """Host copy of ``x`` (no copy for NumPy input)."""
        return asnumpy(x)

    def sync(self) -> None:
        """Wait for queued device work (no-op on NumPy)."""
        if self.name == "cupy":
            self.xp.cuda.get_current_stream().synchronize()

    def scalar(self, x: Any) -> Any:
        """A 0-d array on this backend (no host round trip on CuPy)."""
        return self.xp.asarray(x)[()] if self.name == "numpy" else self.xp.asarray(x)

    def free_memory(self) -> None:
        if self.name == "cupy":
            self.xp.get_default_memory_pool().free_all_blocks()

    def __getattr__(self, attr: str) -> Callable[..., Any]:
        # Only reached for names that are not regular attributes: primitives.
        if attr.startswith("_"):
            raise AttributeError(attr)
        cache = self.__dict__.get("_prim_cache")
        if cache is not None and attr in cache:
            return cache[attr]
        _load_primitive_modules()
        impls = _PRIMITIVES.get(attr)
        if impls is None:
            raise AttributeError(f"Backend has no attribute or primitive {attr!r}")
        fn = impls.get(self.name)
        if fn is None:
            raise NotImplementedError(
                f"primitive {attr!r} has no {self.name} implementation; "
                f"available: {sorted(impls)}"
            )

        def bound(*args: Any, **kwargs: Any) -> Any:
            return fn(self, *args, **kwargs)

        bound.__name__ = attr
        bound.__doc__ = fn.__doc__
        if cache is not None:
            cache[attr] = bound
        return bound


_backends: dict[str, Backend] = {}


def _make_backend(name: str) -> Backend:
    if name in _backends:
        return _backends[name]
    if name == "numpy":
        import scipy.fft
        import scipy.ndimage

        be = Backend("numpy", np, scipy.fft, scipy.ndimage)
    else:
        st = _probe_cupy()
        if not st.usable:
            raise RuntimeError(f"backend 'cupy' requested but unusable: {st.reason}")
        cupy = st.module
        import cupyx.scipy.fft
        import cupyx.scipy.ndimage

        be = Backend("cupy", cupy, cupyx.scipy.fft, cupyx.scipy.ndimage)
    _backends[name] = be
    return be


def _current_default() -> str | None:
    stack = getattr(_state, "stack", None)
    if stack:
        return stack[-1]
    return _process_default[0]


_CUPY_ARRAY_TYPES: set[type] = set()


def _is_cupy_array(x: Any) -> bool:
    t = type(x)
    if t in _CUPY_ARRAY_TYPES:
        return True
    # building __cuda_array_interface__ costs microseconds: each array type is checked once
    if t.__module__.startswith("cupy") and hasattr(x, "__cuda_array_interface__"):
        _CUPY_ARRAY_TYPES.add(t)
        return True
    return False


def get_backend(*arrays: Any, backend: str | Backend | None = None, names: tuple[str, ...] | None = None) -> Backend:
    """Resolve the backend for a call.

    Parameters
    ----------
    *arrays
        The call's array arguments (``None`` and Python scalars are ignored).
    backend : {"numpy", "cupy"}, Backend or None
        Force a backend. Host inputs are moved with ``be.asarray`` by the caller.
    names : tuple of str, optional
        Argument names for error messages, in the order of ``arrays``.

    Raises
    ------
    TypeError
        When NumPy and CuPy arrays are mixed; the message names the arguments.
    ValueError
        For an unknown ``backend`` name.
    """
    if isinstance(backend, Backend):
        return backend
    if backend is not None and backend not in _NAMES:
        raise ValueError(f"backend must be one of {_NAMES} or None, got {backend!r}")
    on_gpu: list[int] = []
    on_host: list[int] = []
    for i, a in enumerate(arrays):
        if a is None:
            continue
        if type(a) is np.ndarray:
            on_host.append(i)
        elif _is_cupy_array(a):
            on_gpu.append(i)
        elif np.isscalar(a):
            continue
        elif isinstance(a, (np.ndarray, np.generic, list, tuple)):
            on_host.append(i)
    if on_gpu and on_host:
        def labels(idx: list[int]) -> str:
            return ", ".join(names[i] if names is not None and i < len(names) else f"argument {i}" for i in idx)

        raise TypeError(
            "cannot mix NumPy and CuPy arrays in one call: "
            f"{labels(on_host)} on the host, {labels(on_gpu)} on the GPU; "
            "move them with gpuimg.asnumpy or cupy.asarray first"
        )
    if backend is not None:
        return _make_backend(backend)
    if on_gpu:
        return _make_backend("cupy")
    default = _current_default()
    if default is not None:
        return _make_backend(default)
    return _make_backend("numpy")


class use_backend(contextlib.ContextDecorator):
    """Choose the backend for calls whose inputs do not decide it.

    As a context manager (``with use_backend("cupy"): ...``) it applies to the current
    thread inside the block; called as ``use_backend("cupy").set_default()`` it becomes the
    process default. Inputs that are already CuPy arrays always run on CuPy.
    """

    def __init__(self, name: str) -> None:
        if name not in _NAMES:
            raise ValueError(f"backend must be one of {_NAMES}, got {name!r}")
        if name == "cupy" and not gpu_available():
            raise RuntimeError(f"backend 'cupy' requested but unusable: {_probe_cupy().reason}")
        self.name = name

    def __enter__(self) -> "use_backend":
        stack = getattr(_state, "stack", None)
        if stack is None:
            stack = _state.stack = []
        stack.append(self.name)
        return self

    def __exit__(self, *exc: Any) -> None:
        _state.stack.pop()

    def set_default(self) -> None:
        _process_default[0] = self.name


def reset_default() -> None:
    """Forget a process default set with ``use_backend(...).set_default()``."""
    _process_default[0] = None


def asnumpy(x: Any) -> Any:
    """Host (NumPy) copy of ``x``; NumPy arrays and Python objects pass through."""
    if _is_cupy_array(x):
        return x.get()
    if isinstance(x, (list, tuple)):
        return type(x)(asnumpy(v) for v in x)
    return x


def cupy_module() -> Any:
    """The CuPy module when usable, else None (for the kernel loader)."""
    st = _probe_cupy()
    return st.module if st.usable else None
