"""Where GPU time goes. Run on a GPU machine from the repository root::

    python benchmarks/gpu_profile.py [PART ...] [--quick] > profile.txt

Parts (default ``timings host memory``):

- ``timings``: for each case ``cupyx.profiler.benchmark``'s mean CPU time (the host's share of
  a call, launches included) and GPU time (device work between the call's first and last
  event). A call whose CPU time is close to its GPU time is bound by the host, not its kernels.
- ``host``: the functions with the most host time (cProfile, no synchronisation) for a few cases.
- ``memory``: each deconvolution solver's memory-pool peak with its largest allocations.
- ``fft_sizes``: cuFFT ``rfft2`` + ``irfft2`` per grid size near 2048 plus a PSF's margins.
- ``rl_steps``: one Richardson-Lucy iteration on 2048^2 float32 split into its steps.
- ``kernels_only``: primitives called directly (no argument checks) next to the public calls.
- ``ncu-case``: one call of each kernel family of interest, to run under ``ncu -k regex:...``.
- ``warp_shapes``: the point sampler's cubic rotation and linear undistortion with each warp
  shape forced and with the taps gathered or staged in shared memory, to check the launcher's
  choices.
- ``pipeline``: ``bench_cli``'s folder of PNGs through the batch engine with process I/O at
  several worker counts (and with I/O threads), against compute-only: images/s, the time inside
  the compute calls and the time waiting on I/O, two rounds each.

``--spin`` makes the driver spin instead of yielding while the host waits on the device
(``CU_CTX_SCHED_SPIN``), to compare with the default scheduling.
"""

from __future__ import annotations

import cProfile
import io
import pstats
import sys
import traceback

import numpy as np

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _gpu_memory import pool_peak


def _row(name, fn, n=20):
    """Print the mean host and device milliseconds of ``fn`` (``n`` timed calls)."""
    from cupyx.profiler import benchmark

    try:
        r = benchmark(fn, n_repeat=n, n_warmup=3)
        print(f"{name:44s} cpu {r.cpu_times.mean() * 1e3:8.3f} ms  gpu {r.gpu_times.mean() * 1e3:8.3f} ms", flush=True)
    except Exception:
        print(f"{name:44s} FAILED {traceback.format_exc(limit=3)}", flush=True)


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


def timings(cp, quick):
    import cupyx.scipy.ndimage as ndi

    from gpuimg._backend import get_backend

    print("== host (cpu) and device (gpu) time per call ==")
    for name, fn in _cases(get_backend(backend="cupy"), cp, ndi).items():
        _row(name, fn, 5 if quick else 20)


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


def host(cp, quick):
    import cupyx.scipy.ndimage as ndi

    from gpuimg._backend import get_backend

    cases = _cases(get_backend(backend="cupy"), cp, ndi)
    _host_profile(cases, ["convolve 2048 3x3", "psnr 2048", "undistort 4096 linear", "ssim 4096 gaussian full"], cp,
                  repeat=10 if quick else 50)
    _host_profile(cases, ["richardson_lucy 2048 11 it"], cp, repeat=3)


def memory(cp, quick):
    from gpuimg import psf as P
    from gpuimg import restoration as R
    from gpuimg._backend import get_backend

    be = get_backend(backend="cupy")
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
    print("== memory-pool peak, 2048^2 float32, as multiples of the image's bytes ==")
    for name, fn in solvers.items():
        fn()
        peak, sizes = pool_peak(be, fn)
        big = sorted(sizes, reverse=True)[:12]
        print(f"{name:16s} peak {peak / b.nbytes:5.1f}x; largest allocations (x image): "
              + " ".join(f"{s / b.nbytes:.2f}" for s in big), flush=True)


def fft_sizes(cp, quick):
    print("== rfft2 + irfft2, float32, one image ==")
    for n in (2048, 2066, 2100, 2160, 2187, 2240, 2304, 2400, 2560, 3072, 4096):
        x = cp.random.random((n, n), dtype=cp.float32)

        def pair(x=x, n=n):
            return cp.fft.irfft2(cp.fft.rfft2(x), s=(n, n))

        _row(f"fft pair {n}", pair)
    for n in (2100, 2304):
        x = cp.random.random((8, 528 if n == 2304 else 525, 528 if n == 2304 else 525), dtype=cp.float32)
        _row(f"fft pair batch 8x{x.shape[-1]}", lambda x=x: cp.fft.irfft2(cp.fft.rfft2(x), s=x.shape[-2:]))


#: image side of ``rl_steps``
RL_SIZE = 2048


def rl_steps(cp, quick):
    from gpuimg import psf as P
    from gpuimg._backend import get_backend
    from gpuimg.restoration.operator import BlurOperator

    be = get_backend(backend="cupy")
    n = RL_SIZE
    b = cp.random.random((n, n), dtype=cp.float32)
    k = cp.asarray(P.gaussian((19, 19), 3.0).astype(np.float32))
    for method in ("fft", "direct"):
        A = BlurOperator(be, k, b.shape, np.float32, "reflect", method=method)
        print(f"== RL steps, {method}, grid {A.grid} ==")
        xe, x = A.lift(b)
        ratio = cp.zeros(A.grid, dtype=cp.float32)
        r_in = ratio[:n, :n]
        ax = A.apply_lifted(xe)
        _row(f"{method} apply_lifted", lambda A=A, xe=xe: A.apply_lifted(xe))
        _row("rl_ratio", lambda ax=ax, r_in=r_in: be.rl_ratio(b, ax, 1e-30, out=r_in))
        _row(f"{method} adjoint_lifted (with the fold)", lambda A=A, ratio=ratio: A.adjoint_lifted(ratio))
        corr = A.adjoint_lifted(ratio)
        y = x.copy()
        _row("rl_update", lambda y=y, corr=corr: be.rl_update(y, corr, None, 0.0, 0.0, out=y))
        _row("refresh (reflect margins)", lambda A=A, xe=xe: A.refresh(xe))
        if method == "fft":
            X = be.rfft_grid(xe, A.grid)
            _row("rfft_grid", lambda xe=xe, A=A: be.rfft_grid(xe, A.grid))
            _row("X *= otf", lambda X=X, A=A: X.__imul__(A.otf))
            _row("irfft_grid (copy of X)", lambda X=X, A=A: be.irfft_grid(X.copy(), A.grid))
        else:
            (col, row), (cy, cx) = A._forward
            _row("correlate1d rows (19 taps)", lambda xe=xe, row=row, cx=cx: be.correlate1d(xe, row, -1, "constant", 0.0, cx))
            _row("correlate1d columns (19 taps)",
                 lambda xe=xe, col=col, cy=cy: be.correlate1d(xe, col, -2, "constant", 0.0, cy))
    from gpuimg import restoration as R

    _row(f"richardson_lucy {n} 10 it (auto: direct)", lambda: R.richardson_lucy(b, k, num_iter=10), n=5)
    # iterations 2.. replayed as one CUDA graph each, against every kernel launched from Python
    from gpuimg._prims import graph

    disk = cp.asarray(P.disk(5.0).astype(np.float32))
    for label, kern in (("gaussian 19x19, direct", k), ("disk r5, fft", disk)):
        _graphs_on_off(cp, f"RL {n} 100 it {label}", lambda kern=kern: R.richardson_lucy(b, kern, num_iter=100), 3)
    _graphs_on_off(cp, f"fista_tv {n} 100 it disk r5", lambda: R.fista_tv(b, disk, num_iter=100), 2)
    print(f"graph replay stats: {graph.GRAPH_STATS}", flush=True)


def _graphs_on_off(cp, label, fn, n):
    """Time ``fn`` with CUDA-graph replay on and off (``GPUIMG_CUDA_GRAPHS``) and print how far
    the two results are apart."""
    import os

    out = {}
    try:
        for on in ("1", "0"):
            os.environ["GPUIMG_CUDA_GRAPHS"] = on
            out[on] = fn()
            _row(f"{label}, graphs {'on' if on == '1' else 'off'}", fn, n=n)
    finally:
        os.environ.pop("GPUIMG_CUDA_GRAPHS", None)
    print(f"  graphs on vs off: max |diff| {float(cp.abs(out['1'] - out['0']).max()):.3g}", flush=True)


def kernels_only(cp, quick):
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


def ncu_case(cp, quick):
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


def pipeline(cp, quick, backend="cupy"):
    import tempfile
    import time
    from pathlib import Path

    import bench_cli as bc

    from gpuimg import io as gio
    from gpuimg._backend import get_backend
    from gpuimg.batch import ImageWriter, expand_inputs, run_batch

    be = get_backend(backend=backend)
    n = 64 if quick else bc.N_FILES
    with tempfile.TemporaryDirectory() as tmp:
        src = bc.write_folder(Path(tmp) / "in", n)
        solve = bc._solver(be)
        files = sorted(src.glob("*.png"))
        stacks = [np.stack([gio.read_image(f) for f in files[i:i + bc.BATCH]]) for i in range(0, n, bc.BATCH)]
        print(f"== pipeline: {n} PNGs {bc.SHAPE}, RL {bc.ITERS} it, batches of {bc.BATCH} ==")
        for s in stacks[:2]:
            bc._compute(be, solve, s)  # plans and kernels
        for r in range(2):
            t0 = time.perf_counter()
            for s in stacks:
                bc._compute(be, solve, s)
            dt = time.perf_counter() - t0
            print(f"compute-only                 {n / dt:8.1f} images/s  total {dt * 1e3:7.1f} ms", flush=True)
        items, _ = expand_inputs([src])
        for io_kind, workers in (("processes", 4), ("processes", 8), ("processes", 15), ("threads", 8)):
            for r in range(2):
                out = Path(tmp) / f"out-{io_kind}-{workers}-{r}"
                t0 = time.perf_counter()
                rep = run_batch(items, lambda st, its: bc._compute(be, solve, st), ImageWriter(out),
                                batch_size=bc.BATCH, workers=workers, progress=False, io=io_kind)
                dt = time.perf_counter() - t0
                print(f"{io_kind:9s} workers {workers:2d} round {r} {rep.done / dt:8.1f} images/s  total "
                      f"{dt * 1e3:7.1f} ms  compute {rep.compute_s * 1e3:7.1f} ms  stack {rep.stack_s * 1e3:6.1f} ms  "
                      f"io wait {rep.io_wait_s * 1e3:6.1f} ms",
                      flush=True)


def warp_shapes(cp, quick, n=None):
    """The point sampler with each warp shape forced (``lanes_shift`` 5: rows of 32 in 256 x 1
    tiles; 4, 3, 2: 16 x 2, 8 x 4, 4 x 8 pieces of 32 x 8 tiles), with the taps gathered by
    every thread and staged in shared memory (cubic, Lanczos-4): the cubic 4096^2 warp under a
    30 degree rotation (the launcher picks 3) and the linear undistortion with cached float32
    maps (maps use 5); Lanczos-4 and cubic remaps both ways at the launcher's shapes."""
    import gpuimg._prims.warp as wp
    from gpuimg import transform
    from gpuimg.registration import Distortion

    n = n or (2048 if quick else 4096)
    x = cp.asarray(np.random.default_rng(0).random((n, n), dtype=np.float32))
    c, s = np.cos(np.pi / 6) * 0.9, np.sin(np.pi / 6) * 0.9
    m = np.array([[c, -s, 0.3 * n], [s, c, -0.2 * n]])
    kmat = np.array([[0.8 * n, 0, n / 2], [0, 0.8 * n, n / 2], [0, 0, 1]])
    dist = Distortion(kmat, [-0.2, 0.05, 0.001, 0.0005, 0.0])
    mx, my = (cp.asarray(v, dtype=cp.float32) for v in dist.undistort_maps((n, n)))
    print(f"== point sampler per warp shape, {n}^2 float32 ==", flush=True)
    # the launcher sees the destination-to-source matrix, the inverse of m
    picked = wp._lanes_shift(np.linalg.inv(np.vstack([m, [0, 0, 1]])).ravel(), n, n)
    lanes_shift, map_lanes, staged = wp._lanes_shift, wp._MAP_LANES, wp.STAGED_INTERPOLATIONS
    try:
        for lanes in (5, 4, 3, 2):
            wp._lanes_shift = lambda mat, ho, wo, v=lanes: v
            wp._MAP_LANES = lanes
            tag = " (default)" if lanes == map_lanes else ""
            _row(f"remap linear (undistort maps), lanes {lanes}{tag}", lambda: transform.remap(
                x, mx, my, interpolation="linear", mode="constant"))
        # cubic and Lanczos-4 taps gathered by every thread against read through the block's
        # shared-memory footprint (a staged tile whose warps would be rows takes 16 x 2 warps)
        for how in ("gathered", "staged"):
            wp.STAGED_INTERPOLATIONS = frozenset({"cubic", "lanczos4"} if how == "staged" else ())
            default = (how == "staged") == ("cubic" in staged)
            for lanes in (5, 4, 3, 2):
                wp._lanes_shift = lambda mat, ho, wo, v=lanes: v
                tag = " (default)" if lanes == picked and default else ""
                _row(f"warp_affine cubic, {how}, lanes {lanes}{tag}", lambda: transform.warp_affine(
                    x, m, interpolation="cubic", mode="nearest"))
            wp._lanes_shift, wp._MAP_LANES = lanes_shift, map_lanes
            _row(f"warp_affine lanczos4, {how}", lambda: transform.warp_affine(
                x, m, interpolation="lanczos4", mode="nearest"))
            _row(f"remap cubic (undistort maps), {how}", lambda: transform.remap(
                x, mx, my, interpolation="cubic", mode="constant"))
        # the two ways agree (the same sums in the same order)
        outs = []
        for how in ("gathered", "staged"):
            wp.STAGED_INTERPOLATIONS = frozenset({"cubic"} if how == "staged" else ())
            outs.append(transform.warp_affine(x, m, interpolation="cubic", mode="nearest"))
        print(f"  cubic gathered vs staged: max |diff| {float(cp.abs(outs[0] - outs[1]).max()):.3g}", flush=True)
    finally:
        wp._lanes_shift, wp._MAP_LANES, wp.STAGED_INTERPOLATIONS = lanes_shift, map_lanes, staged


PARTS = {"timings": timings, "host": host, "memory": memory, "fft_sizes": fft_sizes, "rl_steps": rl_steps,
         "kernels_only": kernels_only, "ncu-case": ncu_case, "pipeline": pipeline, "warp_shapes": warp_shapes}


def _schedule_spin() -> str:
    """Make the CUDA driver spin (not yield) while the host waits on the device: the flag of
    the primary context, set through the driver API before CuPy creates that context. Returns
    what happened, for the report."""
    import ctypes

    try:
        cuda = ctypes.CDLL("libcuda.so.1")
        dev = ctypes.c_int()
        for call in (lambda: cuda.cuInit(0), lambda: cuda.cuDeviceGet(ctypes.byref(dev), 0),
                     lambda: cuda.cuDevicePrimaryCtxSetFlags(dev, 1)):  # CU_CTX_SCHED_SPIN
            err = call()
            if err:
                return f"CU_CTX_SCHED_SPIN not set (CUresult {err})"
    except OSError as exc:
        return f"CU_CTX_SCHED_SPIN not set ({exc})"
    return "CU_CTX_SCHED_SPIN set"


def main(argv) -> int:
    if "--spin" in argv:  # before CuPy touches the device
        print(_schedule_spin(), flush=True)
    import cupy as cp

    from gpuimg._backend import use_backend

    names = [a for a in argv if not a.startswith("--")] or ["timings", "host", "memory"]
    unknown = [n for n in names if n not in PARTS]
    if unknown:
        print(f"unknown part(s) {unknown}; parts: {list(PARTS)}", file=sys.stderr)
        return 2
    quick = "--quick" in argv
    if names != ["ncu-case"]:
        print(cp.cuda.runtime.getDeviceProperties(0)["name"].decode())
    with use_backend("cupy"):
        for name in names:
            try:
                PARTS[name](cp, quick)
            except Exception:
                traceback.print_exc()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
