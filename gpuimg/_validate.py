"""Shared argument checks. Every message names the argument and shows its value.

Checks run on metadata (shape, ndim, dtype, option strings) before any work; value scans
(NaN/Inf) cost a device sync and run only when the caller asks (``check_finite=True``).
"""

from __future__ import annotations

import numbers
from typing import Any, Iterable, Sequence

import numpy as np

from gpuimg._boundary import MODE_CODES

__all__ = [
    "check_array",
    "check_axis",
    "check_bool",
    "check_choice",
    "check_finite",
    "check_mode",
    "check_odd_window",
    "check_positive",
    "check_real",
    "check_same_shape",
    "float_dtype",
    "to_float",
    "unwrap_scalar",
]


def _short(value: Any) -> str:
    r = repr(value)
    return r if len(r) <= 80 else r[:77] + "..."


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> Any:
    """``value`` if it is one of ``choices``; ``ValueError`` naming ``name`` otherwise."""
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {_short(value)}")
    return value


def check_mode(mode: str, name: str = "mode", allowed: Iterable[str] | None = None) -> str:
    """A SciPy boundary-mode name (see ``gpuimg._boundary.MODE_CODES``)."""
    allowed = tuple(allowed) if allowed is not None else tuple(MODE_CODES)
    if not isinstance(mode, str) or mode not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {_short(mode)}")
    return mode


def check_array(
    name: str,
    x: Any,
    *,
    ndim: int | Sequence[int] | None = None,
    min_ndim: int | None = None,
    max_ndim: int | None = None,
    numeric: bool = True,
    allow_complex: bool = False,
) -> None:
    """Metadata checks: array-like, numeric dtype, number of dimensions."""
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        raise TypeError(f"{name} must be an array, got {type(x).__name__}")
    dt = np.dtype(x.dtype)
    if numeric:
        if dt.kind == "c" and not allow_complex:
            raise TypeError(f"{name} must be real, got dtype {dt}")
        if dt.kind not in "biufc":
            raise TypeError(f"{name} must have a numeric dtype, got {dt}")
    nd = x.ndim
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if nd not in allowed:
            raise ValueError(f"{name} must have ndim in {allowed}, got ndim={nd} (shape {tuple(x.shape)})")
    if min_ndim is not None and nd < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} dimensions, got shape {tuple(x.shape)}")
    if max_ndim is not None and nd > max_ndim:
        raise ValueError(f"{name} must have at most {max_ndim} dimensions, got shape {tuple(x.shape)}")
    if 0 in tuple(x.shape):
        raise ValueError(f"{name} must not be empty, got shape {tuple(x.shape)}")


def check_same_shape(name_a: str, a: Any, name_b: str, b: Any) -> None:
    if tuple(a.shape) != tuple(b.shape):
        raise ValueError(
            f"{name_a} and {name_b} must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}"
        )


def check_bool(name: str, value: Any) -> bool:
    """``value`` as a bool; ``TypeError`` for anything but ``bool`` / ``numpy.bool_``."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {_short(value)}")
    return bool(value)


def unwrap_scalar(value: Any) -> Any:
    """A 0-d NumPy or CuPy array of numbers as its Python scalar (as SciPy takes them);
    anything else unchanged."""
    dtype = getattr(value, "dtype", None)
    if getattr(value, "shape", None) == () and dtype is not None and np.dtype(dtype).kind in "biuf":
        return value.item()
    return value


def check_real(name: str, value: Any) -> float:
    """``value`` as a float; ``TypeError`` unless it is a real number (bools are not)."""
    value = unwrap_scalar(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {_short(value)}")
    return float(value)


def check_axis(name: str, axis: Any, ndim: int) -> int:
    """An axis index of an ``ndim``-dimensional array, normalised to ``[0, ndim)``."""
    axis = unwrap_scalar(axis)
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
        raise TypeError(f"{name} must be an integer or None, got {_short(axis)}")
    if not -ndim <= axis < ndim:
        raise ValueError(f"{name} must be in [{-ndim}, {ndim - 1}] for an array with ndim={ndim}, got {axis}")
    return int(axis) % ndim


def check_positive(name: str, value: Any, *, strict: bool = True, integer: bool = False) -> Any:
    """A finite number > 0 (``>= 0`` when ``strict=False``); integers when ``integer``."""
    value = unwrap_scalar(value)
    if integer:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise TypeError(f"{name} must be an integer, got {_short(value)}")
    else:
        check_real(name, value)
    if not np.isfinite(value) or (value <= 0 if strict else value < 0):
        bound = "> 0" if strict else ">= 0"
        raise ValueError(f"{name} must be finite and {bound}, got {_short(value)}")
    return value


def check_odd_window(name: str, size: Any, *, minimum: int = 1, maximum: int | None = None) -> int:
    """An odd integer window size in ``[minimum, maximum]``."""
    size = unwrap_scalar(size)
    if isinstance(size, bool) or not isinstance(size, numbers.Integral):
        raise TypeError(f"{name} must be an odd integer, got {_short(size)}")
    size = int(size)
    if size % 2 == 0:
        raise ValueError(f"{name} must be odd, got {size}")
    if size < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {size}")
    if maximum is not None and size > maximum:
        raise ValueError(f"{name} must be <= {maximum} (the image size), got {size}")
    return size


def check_finite(name: str, x: Any, xp: Any) -> None:
    """Raise ``ValueError`` if ``x`` holds NaN or Inf (syncs the device)."""
    if not bool(xp.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or Inf values")


def float_dtype(*dtypes: Any) -> np.dtype:
    """Result float dtype: float32 if every input is float32 (or float16), else float64."""
    out = np.float32
    for dt in dtypes:
        dt = np.dtype(dt).newbyteorder("=")  # byte order is storage, not precision
        if dt.kind == "c":
            return np.dtype(np.complex128 if dt != np.complex64 else np.complex64)
        if dt not in (np.float32, np.float16):
            out = np.float64
    return np.dtype(out)


def to_float(x: Any, xp: Any, dtype: Any = None) -> Any:
    """``x`` as a floating array on ``xp`` (float32 stays float32, integers become float64)."""
    dt = np.dtype(dtype) if dtype is not None else float_dtype(x.dtype)
    return xp.asarray(x, dtype=dt)
