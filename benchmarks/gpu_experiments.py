"""Device-time breakdowns that guide GPU tuning (run on a GPU machine, repository root)::

    python benchmarks/gpu_experiments.py

1. cuFFT ``rfft2`` + ``irfft2`` time per grid size near 2048 + a PSF's margins (which fast
   length the restoration grid should use);
2. one Richardson-Lucy iteration on 2048^2 float32 split into its steps;
3. kernel-only times (primitives called directly, no argument checks) next to the public call.
"""

from __future__ import annotations

import sys
import traceback

import numpy as np


def _t(fn, n=20):
    from cupyx.profiler import benchmark

    r = benchmark(fn, n_repeat=n, n_warmup=3)
    return r.cpu_times.mean() * 1e3, r.gpu_times.mean() * 1e3


def _row(name, fn, n=20):
    try:
        c, g = _t(fn, n)
        print(f"{name:44s} cpu {c:8.3f} ms  gpu {g:8.3f} ms", flush=True)
    except Exception:
        print(f"{name:44s} FAILED {traceback.format_exc(limit=3)}", flush=True)


def fft_sizes(cp):
    print("== rfft2 + irfft2, float32, one image ==")
    for n in (2048, 2066, 2100, 2160, 2187, 2240, 2304, 2400, 2560, 3072, 4096):
        x = cp.random.random((n, n), dtype=cp.float32)

        def pair(x=x, n=n):
            return cp.fft.irfft2(cp.fft.rfft2(x), s=(n, n))

        _row(f"fft pair {n}", pair)
    for n in (2100, 2304):
        x = cp.random.random((8, 528 if n == 2304 else 525, 528 if n == 2304 else 525), dtype=cp.float32)
        _row(f"fft pair batch 8x{x.shape[-1]}", lambda x=x: cp.fft.irfft2(cp.fft.rfft2(x), s=x.shape[-2:]))


def rl_steps(cp):
    from gpuimg import psf as P
    from gpuimg._backend import get_backend
    from gpuimg.restoration.operator import BlurOperator

    be = get_backend(backend="cupy")
    b = cp.random.random((2048, 2048), dtype=cp.float32)
    k = cp.asarray(P.gaussian((19, 19), 3.0).astype(np.float32))
    A = BlurOperator(be, k, b.shape, np.float32, "reflect")
    print(f"== RL steps, grid {A.grid} ==")
    xe, x = A.lift(b)
    ratio = cp.zeros(A.grid, dtype=cp.float32)
    r_in = ratio[:2048, :2048]
    ax = A.apply_lifted(xe)
    _row("apply_lifted (rfft, *otf, irfft)", lambda: A.apply_lifted(xe))
    _row("rl_ratio", lambda: be.rl_ratio(b, ax, 1e-30, out=r_in))
    _row("adjoint_lifted (rfft, *otf', irfft, fold)", lambda: A.adjoint_lifted(ratio))
    corr = A.adjoint_lifted(ratio)
    y = x.copy()
    _row("rl_update", lambda: be.rl_update(y, corr, None, 0.0, 0.0, out=y))
    _row("refresh (reflect margins)", lambda: A.refresh(xe))
    X = be.rfft_grid(xe, A.grid)
    _row("rfft_grid", lambda: be.rfft_grid(xe, A.grid))
    _row("X *= otf", lambda: X.__imul__(A.otf))
    _row("irfft_grid (copy of X)", lambda: be.irfft_grid(X.copy(), A.grid))
    _row("X.copy()", lambda: X.copy())


def kernels_only(cp):
    import cupyx.scipy.ndimage as ndi

    from gpuimg import filters, metrics
    from gpuimg._backend import get_backend

    be = get_backend(backend="cupy")
    x = cp.random.random((2048, 2048), dtype=cp.float32)
    w = cp.random.random((3, 3), dtype=cp.float32)
    print("== convolve 2048^2 3x3 ==")
    _row("correlate_direct primitive", lambda: be.correlate_direct(x, w, "reflect", 0.0, [1, 1]))
    _row("filters.correlate", lambda: filters.correlate(x, w))
    _row("filters.convolve", lambda: filters.convolve(x, w))
    _row("cupyx correlate", lambda: ndi.correlate(x, w))
    _row("cupyx convolve", lambda: ndi.convolve(x, w))
    _row("x * 2 (elementwise, 2048^2)", lambda: x * 2)
    a = cp.random.random((4096, 4096), dtype=cp.float32)
    bb = cp.random.random((4096, 4096), dtype=cp.float32)
    print("== ssim 4096^2 ==")
    g = np.asarray(filters.gaussian_kernel1d(1.5, 0, 5) if hasattr(filters, "gaussian_kernel1d") else np.ones(11) / 11)
    _row("window_moments primitive, map only", lambda: be.window_moments(a, bb, "ssim", [g, g], want_map=True))
    _row("window_moments primitive, map + crop", lambda: be.window_moments(a, bb, "ssim", [g, g], crop=5))
    _row("metrics.ssim gaussian full", lambda: metrics.ssim(a, bb, data_range=1.0, gaussian_weights=True, full=True))
    _row("a + bb (3 x 64 MB)", lambda: a + bb)
    _row("a.copy()", lambda: a.copy())
    _row("psnr 4096", lambda: metrics.psnr(a, bb, data_range=1.0))
    _row("cupy mse 4096", lambda: cp.mean((a - bb) ** 2))


def ncu_case(cp):
    """One call of each kernel family of interest (for ``ncu -k regex:...``)."""
    from gpuimg import filters, metrics, spline, transform
    from gpuimg.registration import Distortion

    a = cp.random.random((4096, 4096), dtype=cp.float32)
    b = cp.random.random((4096, 4096), dtype=cp.float32)
    x = cp.random.random((2048, 2048), dtype=cp.float32)
    metrics.ssim(a, b, data_range=1.0, gaussian_weights=True, full=True)
    filters.convolve(x, cp.random.random((3, 3), dtype=cp.float32))
    c, s = np.cos(0.5) * 0.9, np.sin(0.5) * 0.9
    transform.warp_affine(a, np.array([[c, -s, 300.0], [s, c, -200.0]]), interpolation="cubic", mode="nearest")
    k = np.array([[3276.8, 0, 2048], [0, 3276.8, 2048], [0, 0, 1]])
    Distortion(k, [-0.2, 0.05, 0.001, 0.0005, 0.0]).undistort(a, interpolation="linear")
    spline.spline_filter(a, order=3)
    from gpuimg import psf as P
    from gpuimg import restoration as R

    R.richardson_lucy(x, cp.asarray(P.gaussian((19, 19), 3.0).astype(np.float32)), num_iter=2)
    transform.resize(cp.random.random((8192, 8192), dtype=cp.float32), (2048, 2048), interpolation="area")
    metrics.psnr(a, b, data_range=1.0)
    cp.cuda.Device().synchronize()


def main() -> int:
    import cupy as cp

    if "ncu-case" in sys.argv:
        ncu_case(cp)
        return 0

    print(cp.cuda.runtime.getDeviceProperties(0)["name"].decode())
    parts = [p for p in (fft_sizes, rl_steps, kernels_only) if p.__name__ in sys.argv[1:]] or \
        [fft_sizes, rl_steps, kernels_only]
    for part in parts:
        try:
            part(cp)
        except Exception:
            traceback.print_exc()
    return 0


if __name__ == "__main__":
    sys.exit(main())
