"""FISTA with a total-variation prox (Beck & Teboulle 2009), monotone variant MFISTA."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from gpuimg._backend import get_backend
from gpuimg._validate import check_array, check_choice, check_positive, check_same_shape
from gpuimg.restoration._common import (
    Monitor,
    accelerate,
    check_weight,
    extrapolate,
    iterate,
    momentum,
    per_image,
    prepare,
    project,
    restart_gap,
    sumsq,
)
from gpuimg.restoration.gradient import RESTARTS
from gpuimg.restoration.linear import direct_wiener, wiener
from gpuimg.restoration.noise import estimate_noise
from gpuimg.restoration.tv import TV_KINDS, check_bounds, fgp, tv_norm

__all__ = ["TV_WEIGHT_EXPONENT", "TV_WEIGHT_SCALE", "default_tv_weight", "fista_tv", "resolve_tv_weight"]

#: the default weight is ``TV_WEIGHT_SCALE * σ * (σ / g) ** TV_WEIGHT_EXPONENT``
#: (:func:`default_tv_weight`)
TV_WEIGHT_SCALE = 0.37
TV_WEIGHT_EXPONENT = 1.3
#: the TV solvers' ``x0="wiener"`` start uses the balance ``WARM_START_BALANCE * weight / g``
WARM_START_BALANCE = 0.2
X0_KINDS = ("auto", "wiener", "image")


def image_scales(xp: Any, b: Any) -> tuple[Any, Any]:
    """``(σ, g)`` per image (float64): :func:`estimate_noise` and the mean absolute horizontal
    plus vertical difference ``g = mean |b[i+1, j] - b[i, j]| + mean |b[i, j+1] - b[i, j]|``
    (differences in ``b``'s float dtype, integers as float64). The default TV weight and
    ``admm_tv``'s default penalty derive from these two."""
    sigma = estimate_noise(b)
    if b.dtype.kind not in "fc":
        b = b.astype(np.float64)
    g = sum(xp.mean(xp.abs(xp.diff(b, axis=axis)), axis=(-2, -1), dtype=np.float64) for axis in (-2, -1))
    return sigma, g


def _weight_from_scales(xp: Any, sigma: Any, g: Any) -> Any:
    ratio = xp.where(g > 0, sigma / xp.where(g > 0, g, 1), 0)
    return TV_WEIGHT_SCALE * sigma * ratio ** TV_WEIGHT_EXPONENT


def default_tv_weight(image: Any) -> Any:
    """Default TV weight of a blurred, noisy image, one per image.

    .. math:: w = s\\,\\sigma\\,(\\sigma / g)^{p}, \\quad s = 0.37,\\; p = 1.3

    with :math:`\\sigma` from :func:`estimate_noise` and :math:`g` the mean absolute
    horizontal plus vertical difference of the image. It scales with the image (``w(c b) =
    c w(b)``) and grows faster than :math:`\\sigma` (about as :math:`\\sigma^{1.7}` once noise
    dominates ``g``), as the ISNR-best weight does. ``s`` and ``p`` minimise the mean ISNR
    loss against the best weight of a grid (converged :func:`admm_tv`) over 14 scikit-image
    scenes (moon, chelsea, coffee, rocket, brick, grass, gravel, cell, hubble_deep_field,
    immunohistochemistry, clock, shepp_logan_phantom, retina, cat; 256 x 256), three PSFs
    (Gaussian σ = 3, disk r = 5, 15 px motion) and noise σ = 1e-3, 3e-3, 1e-2, 3e-2: a mean
    loss of 0.47 dB, against 1.15 dB for a fixed ``0.05 σ``. The scenes of the quality
    benchmark (camera, astronaut, coins) were held out.

    Parameters
    ----------
    image : array, shape (..., H, W)

    Returns
    -------
    array
        Shape ``image.shape[:-2]``, float64, on the input's backend.
    """
    xp = get_backend(image, names=("image",)).xp
    return _weight_from_scales(xp, *image_scales(xp, image))


def resolve_tv_weight(xp: Any, b: Any, weight: Any, scales: tuple[Any, Any] | None = None) -> float:
    """``weight`` checked, or for ``None`` :func:`default_tv_weight` of ``b`` (the mean over a
    batch: one call uses one weight), from ``scales`` (:func:`image_scales` of ``b``) when the
    caller has them."""
    if weight is not None:
        return check_weight("weight", weight)
    sigma, g = image_scales(xp, b) if scales is None else scales
    # a noise estimate at round-off level (a constant or synthetic image) gives no usable weight
    if not float(xp.max(sigma)) > 100 * np.finfo(b.dtype).eps * float(xp.abs(b).max()):
        raise ValueError("weight: the noise estimate of image is 0 (a noise-free image); pass weight > 0")
    return float(xp.mean(_weight_from_scales(xp, sigma, g)))


def start_image(be: Any, b: Any, psf: Any, x0: Any, boundary: str, weight: float, g: Any) -> Any:
    """The frame-shaped start of a TV solver: the given array, ``b`` (``"image"``, and
    ``"auto"`` where no fast transform solves the Wiener filter exactly), or :func:`wiener`
    with the Laplacian regulariser and the balance ``WARM_START_BALANCE * weight / g``
    (``g`` from :func:`image_scales`, per image): the quadratic
    penalty ``λ |∇x|^2 / 2`` whose slope matches ``weight |∇x|`` at a fifth of the typical
    difference."""
    xp = be.xp
    if not isinstance(x0, str):
        return xp.asarray(x0, dtype=b.dtype)
    if not wiener_start(xp, psf, x0, boundary):
        return b
    lam = WARM_START_BALANCE * weight / xp.maximum(g, np.finfo(np.float64).tiny)
    return wiener(b, psf, balance=lam, boundary="periodic" if boundary == "periodic" else "reflect")


def wiener_start(xp: Any, psf: Any, x0: Any, boundary: str) -> bool:
    """Whether :func:`start_image` starts from the Wiener filter for ``x0``."""
    return x0 == "wiener" or x0 == "auto" and direct_wiener(xp, psf, boundary)


def check_x0(image: Any, x0: Any) -> None:
    """``x0`` is one of :data:`X0_KINDS` or a finite real array shaped like ``image`` on its
    backend."""
    if isinstance(x0, str):
        check_choice("x0", x0, X0_KINDS)
        return
    check_array("x0", x0)
    xp = get_backend(image, x0, names=("image", "x0")).xp
    check_same_shape("image", image, "x0", x0)
    if not bool(xp.isfinite(x0).all()):
        raise ValueError("x0 contains NaN or Inf values")


def fista_tv(image: Any, psf: Any, *, weight: Any = None, tv: str = "isotropic", bounds: Any = (0, 1),
             num_iter: int = 200, inner_iter: int = 10, monotone: bool = False, restart: str | None = None,
             boundary: str = "reflect", x0: Any = "auto",
             tol: float = 0.0, callback: Callable[..., Any] | None = None, return_info: bool = False) -> Any:
    """Total-variation deconvolution by FISTA with an FGP prox (Beck & Teboulle 2009).

    Minimises, over the box ``C = [lo, hi]``,

    .. math:: F(x) = \\tfrac12 \\|A x - b\\|_2^2 + w\\,TV(x)

    with :math:`z_k = \\mathrm{prox}_{(w/L) TV + \\iota_C}(y_k - A^T(A y_k - b)/L)`,
    :math:`t_{k+1} = (1 + \\sqrt{1 + 4 t_k^2})/2`, ``L >= ||A||^2`` from the OTF. FISTA:
    :math:`x_k = z_k`, :math:`y_{k+1} = x_k + \\tfrac{t_k - 1}{t_{k+1}}(x_k - x_{k-1})`.
    MFISTA (``monotone=True``): :math:`x_k = \\arg\\min\\{F(z_k), F(x_{k-1})\\}`,
    :math:`y_{k+1} = x_k + \\tfrac{t_k}{t_{k+1}}(z_k - x_k) + \\tfrac{t_k - 1}{t_{k+1}}(x_k - x_{k-1})`.
    The prox runs ``inner_iter`` FGP iterations whose dual field is carried from one outer
    iteration to the next (warm start), so few inner iterations suffice.

    Parameters
    ----------
    image : array, shape (..., H, W)
        Blurred, noisy images ``b``; leading axes are a batch.
    psf : array, shape (kh, kw)
        Point-spread function (normalised to unit sum; centre at ``(kh // 2, kw // 2)``).
    weight : float or None
        ``w > 0`` in image units. ``None``: :func:`default_tv_weight`, from the noise level
        (:func:`estimate_noise`) and the image's mean absolute differences (the mean over a
        batch, since one call uses one weight).
    tv : {"isotropic", "anisotropic"}
    bounds : (lo, hi) or None
        Box constraint; default ``(0, 1)`` for images scaled to [0, 1].
    num_iter : int
        Outer (FISTA) iterations. With the default weight FISTA is still improving at 200
        iterations on low-noise images (``benchmarks/quality_restoration.py``: mean ISNR
        7.70 dB at 200, 7.89 at 1000); :func:`admm_tv` reaches 7.92 in 100 iterations, in
        less time.
    inner_iter : int
        FGP iterations per prox.
    monotone : bool
        MFISTA.
    restart : {None, "gradient", "function"}
        O'Donoghue & Candès adaptive restart of the momentum (per image), as in
        :func:`gpuimg.restoration.nesterov`; ``info["restarts"]`` records it.
    boundary : {"reflect", "periodic", "free"}
        Boundary model of ``A``; ``"free"`` estimates a larger scene and crops it.
    x0 : {"auto", "wiener", "image"} or array
        Start. ``"image"``: :math:`P_C(b)`. ``"wiener"``: :math:`P_C` of the Wiener–Hunt
        filter (:func:`wiener`, Laplacian regulariser, balance ``0.2 w / g`` with ``g`` as in
        :func:`default_tv_weight`, the reflect model for ``"free"``, extended at the edges),
        which gives the poorly conditioned frequencies, where FISTA moves slowly, a good
        start. ``"auto"``: ``"wiener"`` where one pair of fast transforms solves it exactly
        (``"periodic"``, or a PSF symmetric in each axis), else ``"image"`` (for other PSFs
        the filter's conjugate-gradient solve costs about as much as the iterations it
        saves, and a partial solve is a worse start than the image). An array: that start,
        shaped like ``image``.
    tol, callback, return_info
        As in :func:`landweber`; ``info["objective"]`` holds :math:`F(x_k)` per iteration and
        image, ``info["weight"]`` the weight used.

    Returns
    -------
    x : array, shape and float dtype of ``image``
    info : dict, only with ``return_info``

    Backend notes
    -------------
    The operator keeps only the OTF (the adjoint conjugates in place). Without gradient
    restart and without ``monotone``, buffers are (image sizes; g = FFT grid / frame, for
    2048 x 2048 and a 19 x 19 PSF 1.05 on CuPy, 1.11 with SciPy's FFT lengths): OTF (g),
    ``x``, ``y``, ``A x`` (3), the residual's grid buffer, which also serves as the prox's
    scratch and the forward model's input (g), the dual field (2), and at any time either
    one FFT's spectrum and output (2 g) or FGP's dual momentum (2): peak about 9.2x the
    image's bytes on CuPy. ``monotone=True`` and
    ``restart="gradient"`` keep ``y`` apart from the prox argument and take about 4 more.
    The Wiener start runs before the iteration's buffers exist (the filter's own peak, about
    5x, is below the iteration's). On the GPU, in the lean form with nothing to observe
    between iterations (no ``callback``, ``return_info``, ``tol`` or ``restart="function"``),
    the first iteration is captured as a CUDA graph and the others replay it (the momentum
    stays on the device; :mod:`gpuimg._prims.graph`); the call then returns after the device
    has finished.

    Memory
    ------
    GPU peak 9.2x the image's bytes, measured on an H200 with CuPy's memory pool (2048 x 2048
    float32, 19 x 19 Gaussian PSF, ``boundary="reflect"``, defaults; ``test_gpu_memory_peak``).

    References
    ----------
    A. Beck and M. Teboulle, "Fast gradient-based algorithms for constrained total variation
    image denoising and deblurring problems", IEEE Trans. Image Process. 18(11), 2009.
    """
    be, b, A = prepare(image, psf, boundary, num_iter=num_iter, tol=tol, callback=callback, store_adjoint=False)
    check_choice("tv", tv, TV_KINDS)
    check_positive("inner_iter", inner_iter, integer=True)
    check_choice("restart", restart, RESTARTS)
    check_x0(image, x0)
    lo, hi = check_bounds(bounds)
    xp = be.xp
    batch = b.shape[:-2]
    from_wiener = isinstance(x0, str) and wiener_start(xp, psf, x0, boundary)
    scales = image_scales(xp, b) if weight is None or from_wiener else None
    weight_value = resolve_tv_weight(xp, b, weight, scales)
    iso = tv == "isotropic"
    L = A.lipschitz()
    dt = b.dtype.type
    tau = dt(1.0 / L)
    mon = Monitor(be, num_iter, batch, tol=tol, record=return_info, callback=callback,
                  crop=A.crop)
    need_f = return_info or monotone or restart == "function"

    def objective(ax: Any, x: Any) -> Any:
        return 0.5 * sumsq(xp, ax - b) + weight_value * tv_norm(be, x, iso)

    # (the start is decided: start_image need not test the PSF's symmetry again)
    start = x0 if not isinstance(x0, str) else "wiener" if from_wiener else "image"
    x = project(xp, A.embed(start_image(be, b, psf, start, boundary, weight_value, scales[1] if from_wiener else None)),
                lo, hi)
    ax = xp.ascontiguousarray(A.apply(x))
    y = x.copy()
    # the residual A y - b, placed in a grid buffer that the adjoint's FFT takes as it is
    res, r_in = A.frame_buffer(batch)
    xp.subtract(ax, b, out=r_in)
    f_x = objective(ax, x) if need_f else None
    p = xp.zeros((2,) + x.shape, dtype=x.dtype)
    t = xp.ones(batch, dtype=np.float64)
    restarts = xp.zeros((num_iter,) + batch, dtype=bool) if return_info else None
    # FISTA without gradient restart and MFISTA keeps no copy of y: the prox argument and
    # then its result are formed in y's buffer, the prox's scratch and the forward model's
    # input live in the residual's grid buffer, which is free until the residual is formed
    lean = not monotone and restart != "gradient"

    def lean_step(k: int | None = None) -> bool:
        """One iteration of the lean form, every buffer updated in place; with ``k`` also the
        monitor's record and stop test (True: stop)."""
        nonlocal f_x, x, y
        grid, g = A.adjoint_grid(res)
        g *= -tau
        y += g
        del grid, g  # freed before the prox allocates its dual momentum
        scratch = res.reshape(-1)[: y.size].reshape(y.shape)
        fgp(be, y, weight_value / L, p, inner_iter, iso, lo, hi, out=y, scratch=scratch)  # p in place
        del scratch
        z = A.x_view(res)
        z[...] = y
        az = A.apply_grid(res)
        f_z = objective(az, z) if need_f else None
        x_prev = x.copy() if k is not None and mon.due(k) else None
        t_new, _, c2 = momentum(xp, t, restart, None, f_z, f_x, restarts, k, b.dtype)
        # y = z + c2 (z - x), x = z, A y - b into the cleared residual buffer
        xp.subtract(z, x, out=x)
        x *= c2
        y += x
        x[...] = z
        del z
        res[...] = 0
        extrapolate(xp, r_in, az, ax, c2, b)
        del az
        t[...] = t_new
        f_x = f_z
        return k is not None and mon.step(k, x, objective=f_x, x_prev=x_prev)

    if lean:
        iterate(be, lean_step, num_iter, observed=need_f or callback is not None or tol > 0)
    else:
        for k in range(num_iter):
            grid, v = A.adjoint_grid(res)
            v *= -tau
            v += y
            z, p = fgp(be, v, weight_value / L, p, inner_iter, iso, lo, hi)
            v[...] = z
            v = None
            az = A.apply_grid(grid)
            grid = None
            f_z = objective(az, z) if need_f else None
            x_prev = x.copy() if mon.due(k) else None
            if monotone:
                gap = restart_gap(xp, y - z, z - x) if restart == "gradient" else None
                t_new, c1, c2 = momentum(xp, t, restart, gap, f_z, f_x, restarts, k, b.dtype)
                take = per_image(f_z <= f_x)
                x_new = xp.where(take, z, x)
                ax_new = xp.where(take, az, ax)
                f_x = xp.where(f_z <= f_x, f_z, f_x)
                y[...] = x_new + c1 * (z - x_new) + c2 * (x_new - x)
                r_in[...] = ax_new + c1 * (az - ax_new) + c2 * (ax_new - ax) - b
                x[...] = x_new
                ax[...] = ax_new
                x_new = ax_new = None
            else:
                t_new, c2 = accelerate(xp, t, restart, x, y, z, f_z, f_x, restarts, k, b.dtype)
                extrapolate(xp, r_in, az, ax, c2, b)
                f_x = f_z
            z = az = None
            t = t_new
            if mon.step(k, x, objective=f_x, x_prev=x_prev):
                break
    x = A.crop(x)
    if not return_info:
        return x
    return x, mon.info(step=float(tau), weight=weight_value, restarts=be.to_numpy(restarts[: mon.count]))
