"""Image layout shared by the transform functions: batch flattening, channel axis, dtypes.

An image is ``(..., H, W)``, or any array with a ``channel_axis``; both become one
``(N, H, W)`` float batch for the primitives and go back to the caller's layout and dtype
afterwards. Integer images (``uint8``, ``uint16``, ...) are computed in float32 (float64 for
32/64-bit integers) and returned in their own dtype, rounded half to even and saturated like
OpenCV's ``saturate_cast``.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

from gpuimg import _validate


@dataclass
class Layout:
    """How a caller's image maps onto an ``(N, H, W)`` batch."""

    shape: tuple
    dtype: np.dtype
    work: np.dtype
    channel_axis: int | None
    lead: tuple

    def to_batch(self, xp, image):
        x = image
        if self.channel_axis is not None:
            x = xp.moveaxis(x, self.channel_axis, 0)
        x = x.reshape((-1,) + tuple(x.shape[-2:]))
        return xp.ascontiguousarray(x.astype(self.work, copy=False))

    def from_batch(self, xp, out):
        out = out.reshape(self.lead + tuple(out.shape[-2:]))
        if self.channel_axis is not None:
            ca = self.channel_axis % len(self.shape)
            out = xp.moveaxis(out, 0, ca)
        if self.dtype.kind in "biu":
            info = np.iinfo(self.dtype)
            out = xp.clip(xp.rint(out), info.min, info.max).astype(self.dtype)
        return out


def layout(image, channel_axis=None, *, name="image") -> Layout:
    """Validate ``image`` (at least 2-D, real) and describe its batch layout."""
    _validate.check_array(name, image, min_ndim=2)
    dt = np.dtype(image.dtype)
    if dt.kind == "b":
        raise TypeError(f"{name} must be numeric, not boolean")
    ca = None
    if channel_axis is not None:
        ca = _validate.check_axis("channel_axis", channel_axis, image.ndim)
        if image.ndim < 3:
            raise ValueError(f"channel_axis must index a non-spatial axis of an image with ndim={image.ndim}, "
                             f"got {channel_axis}")
    if dt.kind in "iu":
        work = np.dtype(np.float32) if dt.itemsize <= 2 else np.dtype(np.float64)
    else:
        work = _validate.float_dtype(dt)
    shape = tuple(image.shape)
    lead = shape[:-2] if ca is None else (shape[ca],) + tuple(s for k, s in enumerate(shape) if k != ca)[:-2]
    return Layout(shape, dt, work, ca, lead)


def spatial_shape(image, channel_axis):
    """(H, W) of ``image`` once the channel axis is moved out of the way."""
    shape = list(image.shape)
    if channel_axis is not None:
        del shape[channel_axis % image.ndim]
    return tuple(shape[-2:])


def check_output_shape(output_shape, name="output_shape"):
    """A (rows, cols) pair of positive integers."""
    try:
        shape = tuple(output_shape)
    except TypeError:
        raise TypeError(f"{name} must be a (rows, cols) pair, got {output_shape!r}") from None
    if len(shape) != 2:
        raise ValueError(f"{name} must be a (rows, cols) pair, got {output_shape!r}")
    for v in shape:
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            raise TypeError(f"{name} must hold integers, got {output_shape!r}")
        if v <= 0:
            raise ValueError(f"{name} must be positive, got {output_shape!r}")
    return int(shape[0]), int(shape[1])


def check_cval(cval, dtype):
    """A real fill value; NaN and infinities are allowed for float images (as in SciPy and
    OpenCV), where they mark outside samples; integer images cannot hold them."""
    cval = _validate.check_real("cval", cval)
    if not np.isfinite(cval) and np.dtype(dtype).kind != "f":
        raise ValueError(f"cval must be finite for {np.dtype(dtype).name} images, got {cval!r}")
    return cval
