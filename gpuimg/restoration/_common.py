"""Argument checks and the iteration record shared by the deconvolution solvers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from gpuimg._backend import get_backend
from gpuimg._lru import device_constant
from gpuimg._validate import check_array, check_choice, check_positive, float_dtype
from gpuimg.restoration.operator import BOUNDARIES, BlurOperator, check_psf

__all__ = ["Monitor", "prepare"]


def prepare(image: Any, psf: Any, boundary: str, *, num_iter: Any = None, tol: Any = 0.0,
            callback: Any = None, boundaries: tuple[str, ...] = BOUNDARIES,
            store_adjoint: bool = True) -> tuple[Any, Any, BlurOperator]:
    """Validate the common arguments; return ``(be, b, A)`` with ``b`` the float image."""
    be = get_backend(image, psf, names=("image", "psf"))
    xp = be.xp
    check_array("image", image, min_ndim=2)
    check_psf(psf, tuple(image.shape), xp)
    check_choice("boundary", boundary, boundaries)
    if num_iter is not None:
        check_positive("num_iter", num_iter, integer=True)
    check_positive("tol", tol, strict=False)
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable or None, got {type(callback).__name__}")
    dtype = float_dtype(image.dtype)
    # one host copy of the (small) PSF serves every check and the operator's factorisation:
    # for a device PSF it is the only wait for the device before the iterations
    k_host = np.asarray(be.to_numpy(psf), dtype=np.float64)
    if not np.isfinite(k_host).all():
        raise ValueError("psf contains NaN or Inf values")
    total = float(k_host.sum())
    if total <= 0:
        raise ValueError(f"psf must have a positive sum, got sum {total!r}")
    b = xp.asarray(image, dtype=dtype)
    A = BlurOperator(be, device_constant(xp, k_host), tuple(b.shape), dtype, boundary, store_adjoint,
                     psf_host=k_host)
    return be, b, A


def check_weight(name: str, value: Any, *, allow_zero: bool = False) -> float:
    check_positive(name, value, strict=not allow_zero)
    return float(value)


def project(xp: Any, x: Any, lo: float, hi: float) -> Any:
    """Clip ``x`` to ``[lo, hi]`` in place (no pass when both bounds are infinite); returns ``x``."""
    if np.isfinite(lo) or np.isfinite(hi):
        xp.clip(x, lo, hi, out=x)
    return x


def dot(xp: Any, a: Any, b: Any) -> Any:
    """Per-image ``<a, b>`` over the last two axes (float64, kept as ``(..., 1, 1)``)."""
    return xp.sum(a * b, axis=(-2, -1), keepdims=True, dtype=np.float64)


def sumsq(xp: Any, a: Any) -> Any:
    """Per-image ``sum(a**2)`` over the last two axes, accumulated in float64."""
    return xp.sum(a * a, axis=(-2, -1), dtype=np.float64)


def per_image(x: Any) -> Any:
    """A per-image scalar array broadcast against ``(..., H, W)``."""
    return x[..., None, None]


def extrapolate(xp: Any, out: Any, new: Any, old: Any, c: Any, b: Any) -> None:
    """``out = new + c (new - old) - b``, then ``old = new``: the residual ``A y - b`` of an
    accelerated step from ``A x_new`` and ``A x``, in place (no temporaries)."""
    xp.subtract(new, old, out=out)
    out *= c
    out += new
    out -= b
    old[...] = new


def accelerate(xp: Any, t: Any, restart: str | None, x: Any, y: Any, z: Any, f_z: Any, f_x: Any,
               restarts: Any, k: int, dtype: Any) -> tuple[Any, Any]:
    """One momentum step in place: ``y = z + c (z - x)``, ``x = z`` with ``c`` from
    :func:`momentum` (restart test included); returns ``(t_next, c)``."""
    # x <- z - x and y <- y - z: the restart test and the new y need only these
    y -= z
    xp.subtract(z, x, out=x)
    gap = restart_gap(xp, y, x) if restart == "gradient" else None
    t_new, _, c = momentum(xp, t, restart, gap, f_z, f_x, restarts, k, dtype)
    xp.multiply(x, c, out=y)
    y += z
    x[...] = z
    return t_new, c


def restart_gap(xp: Any, y_minus_x_new: Any, step: Any) -> Any:
    """O'Donoghue & Candès' gradient-restart quantity ``(y - x_new)^T (x_new - x)`` per image,
    from the two differences (one temporary product)."""
    return xp.sum(y_minus_x_new * step, axis=(-2, -1), dtype=np.float64)


def momentum(xp: Any, t: Any, restart: str | None, gap: Any, f_new: Any, f_old: Any,
             restarts: Any, k: int, dtype: Any) -> tuple[Any, Any, Any]:
    """FISTA's step-size sequence with O'Donoghue & Candès adaptive restart, per image.

    ``t_next = (1 + sqrt(1 + 4 t^2)) / 2``; returns ``(t_next, t / t_next, (t - 1) / t_next)``
    (the last two broadcast against the images). Where the restart test fires —
    ``"gradient"``: ``gap = (y - x_new)^T (x_new - x) > 0`` (:func:`restart_gap`),
    ``"function"``: ``f_new > f_old`` — the momentum ``(t - 1) / t_next`` is 0 and ``t_next``
    is 1; ``restarts[k]`` records it. Everything stays on the device.
    """
    t_new = (1.0 + xp.sqrt(1.0 + 4.0 * t * t)) / 2.0
    c1, c2 = t / t_new, (t - 1.0) / t_new
    fire = None
    if restart == "gradient":
        fire = gap > 0
    elif restart == "function":
        fire = f_new > f_old
    if fire is not None:
        c2 = xp.where(fire, 0.0, c2)
        t_new = xp.where(fire, 1.0, t_new)
        if restarts is not None:
            restarts[k] = fire
    return t_new, per_image(c1).astype(dtype), per_image(c2).astype(dtype)


def iterate(be: Any, step: Callable[..., bool], num_iter: int, observed: bool) -> None:
    """Run a solver's ``step`` for ``num_iter`` iterations.

    ``step(k)`` makes iteration ``k`` with the monitor's record and stop test (True: stop);
    ``step()`` makes one with neither. When nothing is ``observed`` between iterations (no
    callback, objective record or stop test), the first runs eagerly, which fills every
    cache and FFT plan, and the others go to ``be.repeat`` (on the GPU, one CUDA graph
    replayed: :mod:`gpuimg._prims.graph`); the step must then update its buffers in place.
    """
    if not observed and num_iter > 1:
        step()
        be.repeat(step, num_iter - 1)
        return
    for k in range(num_iter):
        if step(k):
            break


class Monitor:
    """Per-iteration objective record kept on the device, with a stop test every ``check_every``.

    The stop test ``||x_k - x_{k-1}|| <= tol ||x_k||`` (every image of the batch) is the only
    host synchronisation of an iteration loop, and runs once per ``check_every`` iterations.
    """

    def __init__(self, be: Any, num_iter: int, batch: tuple[int, ...], *, tol: float, record: bool,
                 callback: Callable[..., Any] | None, crop: Callable[[Any], Any] = lambda x: x,
                 check_every: int = 10) -> None:
        self.be, self.tol, self.record, self.callback = be, float(tol), record, callback
        self.crop = crop
        self.check_every = check_every
        self.values = be.xp.zeros((num_iter,) + batch, dtype=np.float64) if record else None
        self.count = 0
        self.converged = False

    @property
    def wants_objective(self) -> bool:
        return self.record

    def due(self, k: int) -> bool:
        """Whether iteration ``k`` runs the stop test (callers then pass ``x_prev``)."""
        return self.tol > 0 and (k + 1) % self.check_every == 0

    def step(self, k: int, x: Any, *, objective: Any = None, x_prev: Any = None) -> bool:
        """Record iteration ``k``; True when the loop should stop."""
        xp = self.be.xp
        self.count = k + 1
        if self.record and objective is not None:
            self.values[k] = objective
        if self.callback is not None and self.callback(k, self.crop(x)):
            return True
        if x_prev is not None and self.due(k):
            change = xp.sqrt(sumsq(xp, x - x_prev))
            if bool(xp.all(change <= self.tol * xp.sqrt(sumsq(xp, x)))):
                self.converged = True
                return True
        return False

    def info(self, **extra: Any) -> dict[str, Any]:
        out: dict[str, Any] = {"num_iter": self.count, "converged": self.converged}
        if self.record:
            out["objective"] = self.be.to_numpy(self.values[: self.count])
        out.update(extra)
        return out
