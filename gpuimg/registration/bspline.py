"""Cubic B-spline free-form deformations (FFD) on a regular control grid.

A :class:`BSplineTransform` with control spacing ``(sy, sx)`` pixels and coefficients
``C`` of shape ``(2, ky, kx)`` (the ``dy`` and ``dx`` components) defines the displacement

.. math:: u_c(y, x) = \\sum_{i,j} C_{c,i,j}\\, \\beta_3(y / s_y + 1 - i)\\, \\beta_3(x / s_x + 1 - j),

so control point ``(i, j)`` sits at pixel ``((i - 1) s_y, (j - 1) s_x)`` and a grid of
``floor((n - 1) / s) + 4`` points per axis covers an image of ``n`` pixels (Rueckert et al.,
IEEE TMI 18(8):712-721, 1999; the parametrisation of elastix's ``BSplineTransform`` and of
bUnwarpJ). The transform maps a pixel ``p`` of the fixed (output) image to ``p + u(p)`` in
the moving image: ``warp(moving)(p) = moving(p + u(p))``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gpuimg import spline
from gpuimg._backend import get_backend
from gpuimg._prims import ffd
from gpuimg._validate import check_array, check_mode

__all__ = ["BSplineTransform", "control_shape_for"]


def _spacing(spacing) -> tuple[float, float]:
    s = np.broadcast_to(np.asarray(spacing, dtype=np.float64), (2,))
    if not np.all(np.isfinite(s)) or np.any(s <= 0):
        raise ValueError(f"spacing must be one or two positive numbers, got {spacing!r}")
    return float(s[0]), float(s[1])


def control_shape_for(shape: Sequence[int], spacing) -> tuple[int, int]:
    """Control grid ``(ky, kx)`` that covers an image of ``shape`` at ``spacing`` pixels."""
    sy, sx = _spacing(spacing)
    h, w = (int(n) for n in shape[-2:])
    return math.floor((h - 1) / sy) + 4, math.floor((w - 1) / sx) + 4


class BSplineTransform:
    """Cubic B-spline free-form deformation.

    Parameters
    ----------
    control_shape : (ky, kx)
    spacing : float or (sy, sx)
        Control point spacing in pixels.
    coefficients : array, (2, ky, kx), optional
        ``(dy, dx)`` control displacements in pixels (NumPy or CuPy); zeros by default.
    """

    def __init__(self, control_shape: Sequence[int], spacing, coefficients=None) -> None:
        cs = tuple(int(n) for n in control_shape)
        if len(cs) != 2 or min(cs) < 4:
            raise ValueError(f"control_shape must be (ky, kx) with at least 4 points per axis, got {control_shape!r}")
        self.control_shape = cs
        self.spacing = _spacing(spacing)
        if coefficients is None:
            coefficients = np.zeros((2,) + cs)
        be = get_backend(coefficients, names=("coefficients",))
        c = be.xp.asarray(coefficients)
        if tuple(c.shape) != (2,) + cs:
            raise ValueError(f"coefficients must have shape {(2,) + cs}, got {tuple(c.shape)}")
        if c.dtype.kind != "f":
            c = c.astype(np.float64)
        self.coefficients = c

    @classmethod
    def for_shape(cls, shape: Sequence[int], spacing, coefficients=None) -> BSplineTransform:
        """A transform whose grid covers images of ``shape`` (zero displacement by default)."""
        return cls(control_shape_for(shape, spacing), spacing, coefficients)

    def __repr__(self) -> str:
        return f"BSplineTransform(control_shape={self.control_shape}, spacing={self.spacing})"

    @property
    def backend(self):
        return get_backend(self.coefficients)

    def _basis(self, shape, dtype):
        be = self.backend
        h, w = (int(n) for n in shape[-2:])
        by = ffd.basis(h, self.control_shape[0], self.spacing[0], dtype, be.xp)
        bx = ffd.basis(w, self.control_shape[1], self.spacing[1], dtype, be.xp)
        return by, bx

    def displacement(self, shape: Sequence[int]):
        """Dense ``(2, h, w)`` field ``(dy, dx)`` on the pixel grid of ``shape`` (``By C Bx^T``)."""
        by, bx = self._basis(shape, self.coefficients.dtype)
        return self.backend.xp.stack([by @ c @ bx.T for c in self.coefficients])

    def displacement_at(self, points):
        """Displacement ``(n, 2)`` = ``(dy, dx)`` at ``(n, 2)`` points ``(y, x)`` (any real positions).

        Evaluates the B-spline exactly: the coefficients sampled with order-3 B-spline
        weights at ``p / s + 1`` (zero beyond the grid).
        """
        be = self.backend
        p = be.xp.asarray(points, dtype=self.coefficients.dtype)
        if p.ndim != 2 or p.shape[1] != 2:
            raise ValueError(f"points must have shape (n, 2), got {tuple(p.shape)}")
        t = p.T / be.xp.asarray(self.spacing, dtype=p.dtype)[:, None] + 1.0
        u = spline.map_coordinates(self.coefficients, t, order=3, mode="grid-constant", cval=0.0, prefilter=False)
        return u.T

    def warp(self, image, *, order: int = 3, mode: str = "constant", cval: float = 0.0):
        """``out(p) = image(p + u(p))`` for ``(..., h, w)`` images (B-spline interpolation of ``order``)."""
        be = get_backend(image, self.coefficients, names=("image", "coefficients"))
        check_array("image", image, min_ndim=2)
        check_mode(mode)
        u = self.displacement(image.shape[-2:])
        h, w = image.shape[-2:]
        grid = be.xp.stack(be.xp.meshgrid(be.xp.arange(h, dtype=u.dtype), be.xp.arange(w, dtype=u.dtype), indexing="ij"))
        return spline.map_coordinates(image, grid + u, order=order, mode=mode, cval=cval)

    def inverse(self, shape: Sequence[int], *, max_iter: int = 100, tol: float = 1e-4, return_residual: bool = False):
        """Dense displacement ``v`` (2, h, w) of the inverse map: ``q + v(q)`` is the pre-image of ``q``.

        Solves ``v(q) = -u(q + v(q))`` by fixed-point iteration (a contraction where the
        deformation is invertible, ``|grad u| < 1``), evaluating ``u`` exactly at the
        displaced points; stops when the largest update is below ``tol`` pixels. With
        ``return_residual`` the largest ``|v + u(q + v)|`` is returned too.
        """
        be = self.backend
        xp = be.xp
        h, w = (int(n) for n in shape[-2:])
        q = xp.stack(xp.meshgrid(xp.arange(h, dtype=self.coefficients.dtype),
                                 xp.arange(w, dtype=self.coefficients.dtype), indexing="ij")).reshape(2, -1)
        v = -self.displacement((h, w)).reshape(2, -1)
        for _ in range(int(max_iter)):
            nv = -self.displacement_at((q + v).T).T
            step = float(xp.max(xp.abs(nv - v)))
            v = nv
            if step < tol:
                break
        v = v.reshape(2, h, w)
        if return_residual:
            res = v.reshape(2, -1) + self.displacement_at((q + v.reshape(2, -1)).T).T
            return v, float(xp.max(xp.abs(res)))
        return v

    def save(self, path) -> None:
        """Write an ``.npz`` with the grid, spacing and coefficients."""
        meta = {"kind": "BSplineTransform", "control_shape": list(self.control_shape), "spacing": list(self.spacing)}
        np.savez(Path(path), meta=json.dumps(meta), coefficients=self.backend.to_numpy(self.coefficients))

    @classmethod
    def load(cls, path) -> BSplineTransform:
        with np.load(Path(path), allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            if meta.get("kind") != "BSplineTransform":
                raise ValueError(f"path does not hold a BSplineTransform, found kind {meta.get('kind')!r}")
            return cls(meta["control_shape"], meta["spacing"], np.array(z["coefficients"]))

    def as_arrays(self) -> dict[str, Any]:
        return {"control_shape": np.array(self.control_shape), "spacing": np.array(self.spacing),
                "coefficients": self.backend.to_numpy(self.coefficients)}
