"""Where GPU time goes: host (Python) time vs device time per call, and host profiles.

Run on a GPU machine from the repository root::

    python benchmarks/gpu_profile.py [--quick] > profile.txt

For each case it prints ``cupyx.profiler.benchmark``'s mean CPU time (the host's share of a
call, launches included) and GPU time (device work between the call's first and last event).
A call whose CPU time is close to its GPU time is bound by the host, not by its kernels. Then it
prints the functions with the most host time (cProfile, no synchronisation) for a few cases, and
each deconvolution solver's memory-pool peak with its largest allocations.
"""

from __future__ import annotations

import cProfile
import io
import pstats
import sys
import traceback

import numpy as np


def _cases(be, cp, ndi):
    from gpuimg import filters, metrics, spline, transform
    from gpuimg import psf as P
    from gpuimg import restoration as R
    from gpuimg.registration import Distortion

    rng = np.random.default_rng(0)
    f32 = np.float32
    x2k = cp.asarray(rng.random((2048, 2048), dtype=f32))
    x4k = cp.asarray(rng.random((4096, 4096), dtype=f32))
    y4k = cp.clip(x4k + cp.asarray(rng.normal(0, 0.05, (4096, 4096)).astype(f32)), 0, 1)
    k3, k5, k31 = (cp.asarray(rng.random((n, n), dtype=f32)) for n in (3, 5, 31))
    psf = cp.asarray(P.gaussian((19, 19), 3.0).astype(f32))
    n = 4096
    kmat = np.array([[0.8 * n, 0, n / 2], [0, 0.8 * n, n / 2], [0, 0, 1]])
    dist = Distortion(kmat, [-0.2, 0.05, 0.001, 0.0005, 0.0])
    c = np.cos(np.pi / 6) * 0.9
    s = np.sin(np.pi / 6) * 0.9
    m = np.array([[c, -s, 300.0], [s, c, -200.0]])
    yy, xx = cp.mgrid[0:n, 0:n].astype(f32)
    coords = cp.stack([yy + 3.0 * cp.sin(xx / 97.0) + 0.25, xx + 2.0 * cp.cos(yy / 83.0) - 0.4])
    x8k = cp.asarray(rng.random((8192, 8192), dtype=f32))
    return {
        "convolve 2048 3x3": lambda: filters.convolve(x2k, k3),
        "cupyx convolve 2048 3x3": lambda: ndi.convolve(x2k, k3),
        "convolve 2048 5x5": lambda: filters.convolve(x2k, k5),
        "cupyx convolve 2048 5x5": lambda: ndi.convolve(x2k, k5),
        "convolve 2048 31x31": lambda: filters.convolve(x2k, k31),
        "uniform_filter 2048 9": lambda: filters.uniform_filter(x2k, 9),
        "cupyx uniform_filter 2048 9": lambda: ndi.uniform_filter(x2k, 9),
        "gaussian_filter 2048 3": lambda: filters.gaussian_filter(x2k, 3.0),
        "psnr 2048": lambda: metrics.psnr(x2k, x2k * 0.9, data_range=1.0),
        "ssim 4096 gaussian full": lambda: metrics.ssim(x4k, y4k, data_range=1.0, gaussian_weights=True, full=True),
        "ssim 4096 uniform full": lambda: metrics.ssim(x4k, y4k, data_range=1.0, full=True),
        "ssim 4096 gaussian mean": lambda: metrics.ssim(x4k, y4k, data_range=1.0, gaussian_weights=True),
        "cupy copy 4096 (bandwidth)": lambda: x4k.copy(),
        "undistort 4096 linear": lambda: dist.undistort(x4k, interpolation="linear"),
        "warp_affine 4096 cubic": lambda: transform.warp_affine(x4k, m, interpolation="cubic", mode="nearest"),
        "warp_affine 4096 linear": lambda: transform.warp_affine(x4k, m, interpolation="linear", mode="nearest"),
        "spline_filter 4096": lambda: spline.spline_filter(x4k, order=3),
        "map_coordinates 4096 o3": lambda: spline.map_coordinates(x4k, coords, order=3, mode="mirror",
                                                                  coefficient_dtype=np.float32),
        "resize area 8192->2048": lambda: transform.resize(x8k, (2048, 2048), interpolation="area"),
        "richardson_lucy 2048 1 it": lambda: R.richardson_lucy(x2k, psf, num_iter=1),
        "richardson_lucy 2048 11 it": lambda: R.richardson_lucy(x2k, psf, num_iter=11),
        "fista_tv 2048 10 it": lambda: R.fista_tv(x2k, psf, weight=1e-3, num_iter=10),
    }


def _timings(cases, quick):
    from cupyx.profiler import benchmark

    print(f"{'case':34s} {'cpu ms':>9s} {'gpu ms':>9s}")
    for name, fn in cases.items():
        try:
            r = benchmark(fn, n_repeat=5 if quick else 20, n_warmup=2)
            print(f"{name:34s} {r.cpu_times.mean() * 1e3:9.3f} {r.gpu_times.mean() * 1e3:9.3f}", flush=True)
        except Exception:
            print(f"{name:34s} FAILED: {traceback.format_exc(limit=2)}", flush=True)


def _host_profile(cases, names, cp, repeat=50):
    for name in names:
        fn = cases[name]
        fn()
        cp.cuda.Device().synchronize()
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(repeat):
            fn()
        prof.disable()
        cp.cuda.Device().synchronize()
        s = io.StringIO()
        pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(18)
        print(f"\n== host profile: {name} x{repeat} ==")
        print("\n".join(s.getvalue().splitlines()[4:32]), flush=True)


def _memory_peaks(be, cp):
    from gpuimg import psf as P
    from gpuimg import restoration as R

    rng = np.random.default_rng(1)
    b = cp.asarray(rng.random((2048, 2048), dtype=np.float32))
    k = cp.asarray(P.gaussian((19, 19), 3.0).astype(np.float32))
    solvers = {
        "wiener": lambda: R.wiener(b, k, balance=1e-3),
        "landweber": lambda: R.landweber(b, k, num_iter=5),
        "nesterov": lambda: R.nesterov(b, k, weight=1e-3, num_iter=5),
        "fista_tv": lambda: R.fista_tv(b, k, weight=1e-3, num_iter=5),
        "admm_tv": lambda: R.admm_tv(b, k, weight=1e-3, num_iter=5),
        "richardson_lucy": lambda: R.richardson_lucy(b, k, num_iter=5),
    }
    pool = cp.get_default_memory_pool()
    print("\n== memory-pool peak, 2048^2 float32, as multiples of the image's bytes ==")
    for name, fn in solvers.items():
        fn()
        cp.cuda.Device().synchronize()
        pool.free_all_blocks()
        base = pool.used_bytes()
        peak = [0]
        sizes = []

        class Peak(cp.cuda.memory_hook.MemoryHook):
            name = "peak"

            def malloc_postprocess(self, **kw):
                peak[0] = max(peak[0], pool.used_bytes() - base)
                sizes.append(kw.get("mem_size", 0))

        with Peak():
            out = fn()
            cp.cuda.Device().synchronize()
        del out
        big = sorted(sizes, reverse=True)[:12]
        print(f"{name:16s} peak {peak[0] / b.nbytes:5.1f}x; largest allocations (x image): "
              + " ".join(f"{s / b.nbytes:.2f}" for s in big), flush=True)


def main() -> int:
    quick = "--quick" in sys.argv
    import cupy as cp
    import cupyx.scipy.ndimage as ndi

    from gpuimg._backend import get_backend, use_backend

    with use_backend("cupy"):
        be = get_backend(backend="cupy")
        print(cp.cuda.runtime.getDeviceProperties(0)["name"].decode())
        cases = _cases(be, cp, ndi)
        _timings(cases, quick)
        try:
            _host_profile(cases, ["convolve 2048 3x3", "psnr 2048", "undistort 4096 linear",
                                  "ssim 4096 gaussian full"], cp)
            _host_profile(cases, ["richardson_lucy 2048 11 it"], cp, repeat=3)
        except Exception:
            traceback.print_exc()
        try:
            _memory_peaks(be, cp)
        except Exception:
            traceback.print_exc()
    return 0


if __name__ == "__main__":
    sys.exit(main())
