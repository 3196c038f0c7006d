"""Deconvolution speed: gpuimg's Richardson-Lucy vs scikit-image's (CPU) and cuCIM's (GPU;
a separable Gaussian PSF, which runs as 1-D passes there, and a disk, which keeps the FFT),
FISTA-TV and ADMM-TV at 2048^2, a batch of 32 images in one call vs a loop, and GPU memory peaks.

    python -m pytest benchmarks/bench_restoration.py -q

The memory test prints each solver's CuPy memory-pool peak as a multiple of the image's bytes.
"""

import numpy as np
import pytest
import scipy.ndimage as ndi
from _gpu_memory import pool_peak

from gpuimg import psf as P
from gpuimg import restoration as R


def _blurred(rng, shape, dtype, k=None):
    x = rng.random(shape)
    k = P.gaussian((19, 19), 3.0) if k is None else k
    b = ndi.convolve(x, k, mode="reflect") if len(shape) == 2 else np.stack([ndi.convolve(xi, k, mode="reflect") for xi in x])
    return b.astype(dtype), k.astype(dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("impl", ["gpuimg", "skimage"])
def test_richardson_lucy_512_cpu(bench, be, rng, impl, dtype):
    if be.is_gpu:
        pytest.skip("CPU comparison")
    b, k = _blurred(rng, (512, 512), dtype)
    group = f"richardson_lucy 512^2 30 it {np.dtype(dtype).name}"
    if impl == "gpuimg":
        bench(R.richardson_lucy, b, k, num_iter=30, group=group, impl=impl, be=be)
    else:
        from skimage.restoration import richardson_lucy

        bench(richardson_lucy, b, k, num_iter=30, group=group, impl=impl)


@pytest.mark.parametrize("impl", ["gpuimg", "loop"])
def test_richardson_lucy_batch32(bench, be, rng, impl):
    b, k = _blurred(rng, (32, 512, 512), np.float32)
    bb, kk = be.asarray(b), be.asarray(k)
    group = "richardson_lucy batch 32x512^2 f32 10 it"
    if impl == "gpuimg":
        bench(R.richardson_lucy, bb, kk, num_iter=10, group=group, impl=impl, be=be, rounds=3)
    else:
        def loop(bb, kk):
            return [R.richardson_lucy(bi, kk, num_iter=10) for bi in bb]

        bench(loop, bb, kk, group=group, impl=impl, be=be, rounds=3)


@pytest.mark.parametrize("psf", ["gaussian", "disk"])
@pytest.mark.parametrize("impl", ["gpuimg", "cucim"])
def test_richardson_lucy_2048_gpu(bench, be, rng, impl, psf):
    # the 19 x 19 Gaussian is separable (on a GPU the blur operator's direct passes); the
    # anti-aliased disk of radius 5 (11 x 11) is not (the FFT operator)
    if not be.is_gpu:
        pytest.skip("GPU comparison")
    b, k = _blurred(rng, (2048, 2048), np.float32, None if psf == "gaussian" else P.disk(5.0))
    bb, kk = be.asarray(b), be.asarray(k)
    group = "richardson_lucy 2048^2 f32 100 it" + ("" if psf == "gaussian" else " disk r5")
    if impl == "gpuimg":
        bench(R.richardson_lucy, bb, kk, num_iter=100, group=group, impl=impl, be=be, rounds=3)
    else:
        cucim_rest = pytest.importorskip("cucim.skimage.restoration")
        bench(cucim_rest.richardson_lucy, bb, kk, num_iter=100, group=group, impl=impl, be=be, rounds=3)


@pytest.mark.parametrize("name", ["fista_tv", "admm_tv"])
def test_tv_2048_gpu(bench, be, rng, name):
    if not be.is_gpu:
        pytest.skip("GPU timing")
    b, k = _blurred(rng, (2048, 2048), np.float32)
    bench(getattr(R, name), be.asarray(b), be.asarray(k), weight=1e-3, num_iter=100,
          group=f"{name} 2048^2 f32 100 it", impl="gpuimg", be=be, rounds=3)


SOLVERS = {
    "wiener": lambda b, k: R.wiener(b, k, balance=1e-3),
    "landweber": lambda b, k: R.landweber(b, k, num_iter=5),
    "nesterov": lambda b, k: R.nesterov(b, k, weight=1e-3, num_iter=5),
    "fista_tv": lambda b, k: R.fista_tv(b, k, weight=1e-3, num_iter=5),
    "admm_tv": lambda b, k: R.admm_tv(b, k, weight=1e-3, num_iter=5),
    "richardson_lucy": lambda b, k: R.richardson_lucy(b, k, num_iter=5),
}


@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_gpu_memory_peak(be, rng, name):
    if not be.is_gpu:
        pytest.skip("CuPy memory pool")
    b, k = _blurred(rng, (2048, 2048), np.float32)
    bb, kk = be.asarray(b), be.asarray(k)
    SOLVERS[name](bb, kk)  # plans and kernels
    peak, _ = pool_peak(be, lambda: SOLVERS[name](bb, kk))
    ratio = peak / bb.nbytes
    print(f"{name}: GPU peak {ratio:.1f}x image bytes")
    assert ratio <= 10
