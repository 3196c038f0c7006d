"""Correction maps measured at values of a physical parameter, interpolated between them.

A :class:`MapSeries` holds ``N`` maps of one kind measured at strictly increasing parameter
values ``p_0 < ... < p_{N-1}`` (e.g. chamber pressures): dense OpenCV-style maps
``(map_x, map_y)``, :class:`BSplineTransform` s on one control grid, or :class:`Distortion` s.
``at(p)`` interpolates every number that defines a map (map entries, control coefficients,
camera intrinsics and distortion coefficients) along the parameter:

- ``"linear"``: piecewise linear;
- ``"cubic"``: the not-a-knot cubic spline through all samples (de Boor, *A Practical Guide
  to Splines*, 1978), exact for polynomials of degree <= 3 in ``p``;
- ``"pchip"``: the monotone piecewise cubic Hermite interpolant (Fritsch & Carlson, SIAM J.
  Numer. Anal. 17(2):238-246, 1980), with SciPy's derivative rules.

Linear and cubic interpolation are linear in the data, so their weights are computed once on
the host and applied on the maps' backend; pchip's derivatives are computed elementwise on the
backend. Outside ``[p_0, p_{N-1}]`` the end pieces are extended when ``extrapolate=True``;
otherwise a ``ValueError`` names the value.
"""

from __future__ import annotations

import json
import numbers
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gpuimg._backend import get_backend
from gpuimg._validate import check_choice
from gpuimg.registration.bspline import BSplineTransform
from gpuimg.registration.distortion import Distortion

__all__ = ["MapSeries"]

KINDS = ("linear", "cubic", "pchip")
_INTERP_ORDER = {"nearest": 0, "linear": 1, "cubic": 3}


def _pchip_slopes(x: np.ndarray, y, xp):
    """Derivatives of SciPy's PchipInterpolator at the knots, elementwise over ``y``'s trailing axes."""
    hk = xp.asarray(np.diff(x)).reshape((-1,) + (1,) * (y.ndim - 1))
    mk = (y[1:] - y[:-1]) / hk
    if y.shape[0] == 2:
        return xp.concatenate([mk, mk])
    smk = xp.sign(mk)
    cond = (smk[1:] != smk[:-1]) | (mk[1:] == 0) | (mk[:-1] == 0)
    w1 = 2 * hk[1:] + hk[:-1]
    w2 = hk[1:] + 2 * hk[:-1]
    safe0 = xp.where(mk[:-1] == 0, 1.0, mk[:-1])
    safe1 = xp.where(mk[1:] == 0, 1.0, mk[1:])
    whmean = (w1 / safe0 + w2 / safe1) / (w1 + w2)
    inner = xp.where(cond, 0.0, 1.0 / xp.where(cond, 1.0, whmean))

    def edge(h0, h1, m0, m1):
        d = ((2 * h0 + h1) * m0 - h0 * m1) / (h0 + h1)
        d = xp.where(xp.sign(d) != xp.sign(m0), 0.0, d)
        flip = (xp.sign(m0) != xp.sign(m1)) & (xp.abs(d) > 3 * xp.abs(m0))
        return xp.where(flip, 3 * m0, d)

    first = edge(hk[0], hk[1], mk[0], mk[1])
    last = edge(hk[-1], hk[-2], mk[-1], mk[-2])
    return xp.concatenate([first[None], inner, last[None]])


class MapSeries:
    """Maps measured at parameter values, interpolated in between.

    Parameters
    ----------
    parameters : sequence of float, strictly increasing, at least 2
    maps : sequence
        All of one kind: ``(map_x, map_y)`` pairs (or ``(2, h, w)`` arrays) of one shape,
        :class:`BSplineTransform` s of one grid, or :class:`Distortion` s.
    metadata : dict, optional
        JSON-serialisable notes (units, device, date) kept by :meth:`save`.
    """

    def __init__(self, parameters: Sequence[float], maps: Sequence[Any], *, metadata: dict | None = None) -> None:
        p = np.asarray(parameters, dtype=np.float64)
        if p.ndim != 1 or p.size < 2 or not np.all(np.isfinite(p)):
            raise ValueError(f"parameters must be at least 2 finite numbers, got {parameters!r}")
        if np.any(np.diff(p) <= 0):
            raise ValueError(f"parameters must be strictly increasing, got {p.tolist()}")
        maps = list(maps)
        if len(maps) != p.size:
            raise ValueError(f"maps must hold one map per parameter ({p.size}), got {len(maps)}")
        self.parameters = p
        self.metadata = dict(metadata or {})
        first = maps[0]
        if isinstance(first, BSplineTransform):
            self.kind = "bspline"
            for m in maps:
                if not isinstance(m, BSplineTransform) or m.control_shape != first.control_shape or m.spacing != first.spacing:
                    raise ValueError("maps must all be BSplineTransforms with one control_shape and spacing")
            self._grid = (first.control_shape, first.spacing)
            be = get_backend(*[m.coefficients for m in maps])
            self.values = be.xp.stack([be.xp.asarray(m.coefficients, dtype=np.float64) for m in maps])
        elif isinstance(first, Distortion):
            self.kind = "distortion"
            if not all(isinstance(m, Distortion) for m in maps):
                raise ValueError("maps must all be Distortions")
            self._ncoef = max(m.coeffs.size for m in maps)
            be = get_backend(backend="numpy")
            self.values = np.stack([np.concatenate([[m.camera_matrix[0, 0], m.camera_matrix[1, 1],
                                                     m.camera_matrix[0, 2], m.camera_matrix[1, 2]], m._full])
                                    for m in maps])
        else:
            self.kind = "dense"
            arrs = [m if hasattr(m, "shape") else tuple(m) for m in maps]
            be = get_backend(*[a if hasattr(a, "shape") else a[0] for a in arrs])
            stacked = []
            for a in arrs:
                a = be.xp.stack([be.xp.asarray(a[0]), be.xp.asarray(a[1])]) if not hasattr(a, "shape") else be.xp.asarray(a)
                if a.ndim != 3 or a.shape[0] != 2:
                    raise ValueError(f"maps must be (map_x, map_y) pairs of 2-D arrays, got shape {tuple(a.shape)}")
                stacked.append(a)
            if len({tuple(a.shape) for a in stacked}) != 1:
                raise ValueError(f"maps must share one shape, got {sorted({tuple(a.shape) for a in stacked})}")
            dt = np.float32 if all(a.dtype == np.float32 for a in stacked) else np.float64
            self.values = be.xp.stack(stacked).astype(dt)
        self._be = be

    def __len__(self) -> int:
        return self.parameters.size

    def __repr__(self) -> str:
        return f"MapSeries(kind={self.kind!r}, parameters={self.parameters.tolist()})"

    def _interpolate(self, p: float, kind: str, extrapolate: bool):
        if isinstance(p, bool) or not isinstance(p, numbers.Real) or not np.isfinite(p):
            raise ValueError(f"p must be a finite number, got {p!r}")
        check_choice("kind", kind, KINDS)
        lo, hi = self.parameters[0], self.parameters[-1]
        if not extrapolate and not lo <= p <= hi:
            raise ValueError(f"p={p!r} is outside the measured range [{lo}, {hi}]; pass extrapolate=True to extend it")
        xp, v, x = self._be.xp, self.values, self.parameters
        if kind == "pchip":
            d = _pchip_slopes(x, v, xp)
            i = int(np.clip(np.searchsorted(x, p, side="right") - 1, 0, x.size - 2))
            h = x[i + 1] - x[i]
            t = (p - x[i]) / h
            h00, h10, h01, h11 = 2 * t**3 - 3 * t**2 + 1, t**3 - 2 * t**2 + t, -2 * t**3 + 3 * t**2, t**3 - t**2
            return h00 * v[i] + h10 * h * d[i] + h01 * v[i + 1] + h11 * h * d[i + 1]
        if kind == "linear":
            i = int(np.clip(np.searchsorted(x, p, side="right") - 1, 0, x.size - 2))
            t = (p - x[i]) / (x[i + 1] - x[i])
            w = np.zeros(x.size)
            w[i], w[i + 1] = 1 - t, t
        else:
            from scipy.interpolate import CubicSpline

            w = CubicSpline(x, np.eye(x.size), axis=0, extrapolate=True)(p)
        return xp.tensordot(xp.asarray(w, dtype=v.dtype), v, axes=1)

    def at(self, p: float, *, kind: str = "linear", extrapolate: bool = False):
        """The map at parameter ``p``: ``(map_x, map_y)``, a BSplineTransform or a Distortion."""
        v = self._interpolate(p, kind, extrapolate)
        if self.kind == "dense":
            return v[0], v[1]
        if self.kind == "bspline":
            return BSplineTransform(self._grid[0], self._grid[1], v)
        fx, fy, cx, cy = v[:4]
        return Distortion([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], v[4: 4 + self._ncoef])

    def undistort(self, image, p: float, *, kind: str = "linear", extrapolate: bool = False,
                  interpolation: str = "cubic", mode: str = "grid-constant", cval: float = 0.0):
        """Correct ``image`` (``(..., h, w)``) with the map at ``p``.

        Dense maps and Distortions sample with :func:`gpuimg.transform.remap`
        (``interpolation``); B-spline transforms warp with B-spline interpolation of order
        0/1/3 for ``interpolation`` nearest/linear/cubic.
        """
        m = self.at(p, kind=kind, extrapolate=extrapolate)
        if self.kind == "dense":
            from gpuimg import transform

            return transform.remap(image, m[0], m[1], interpolation=interpolation, mode=mode, cval=cval)
        if self.kind == "bspline":
            check_choice("interpolation", interpolation, tuple(_INTERP_ORDER))
            return m.warp(image, order=_INTERP_ORDER[interpolation], mode=mode, cval=cval)
        return m.undistort(image, interpolation=interpolation, mode=mode, cval=cval)

    def save(self, path) -> None:
        """Write parameters, maps and metadata to an ``.npz`` file."""
        meta: dict[str, Any] = {"kind": self.kind, "metadata": self.metadata}
        if self.kind == "bspline":
            meta["control_shape"], meta["spacing"] = list(self._grid[0]), list(self._grid[1])
        if self.kind == "distortion":
            meta["ncoef"] = self._ncoef
        np.savez(Path(path), meta=json.dumps(meta), parameters=self.parameters, values=self._be.to_numpy(self.values))

    @classmethod
    def load(cls, path) -> MapSeries:
        """Read a series written by :meth:`save` (maps on the host)."""
        with np.load(Path(path), allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            p, v = np.array(z["parameters"]), np.array(z["values"])
        kind = meta.get("kind")
        if kind == "dense":
            maps = list(v)
        elif kind == "bspline":
            maps = [BSplineTransform(meta["control_shape"], meta["spacing"], c) for c in v]
        elif kind == "distortion":
            maps = [Distortion([[r[0], 0, r[2]], [0, r[1], r[3]], [0, 0, 1]], r[4: 4 + meta["ncoef"]]) for r in v]
        else:
            raise ValueError(f"path does not hold a MapSeries, found kind {kind!r}")
        return cls(p, maps, metadata=meta.get("metadata"))
