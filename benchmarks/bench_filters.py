"""gpuimg.filters against scipy.ndimage (NumPy) and cupyx.scipy.ndimage (CuPy).

Targets: 2048x2048 float32, 31x31 kernel: ``auto`` >= 5x faster than SciPy on the CPU and
>= 3x faster than cupyx on the GPU; 5x5 no slower than SciPy; 3x3 within 1.2x of cupyx.
The ``crossover`` groups time ``method="direct"`` (as "gpuimg") against ``method="fft"`` (as
the peer), so a ratio > 1 means direct is faster at that kernel size: they are the
measurements behind ``be.correlate_crossover()``. The ``correlate1d`` groups time one 1-D pass
(the backend's primitive: banded GEMMs on the CPU, the tiled kernels on the GPU) against
``ndimage.correlate1d``.
"""

import numpy as np
import pytest

from gpuimg import filters

N = 2048


def _peer(be, impl):
    if impl == "gpuimg":
        return None
    if (impl == "scipy") == be.is_gpu:
        pytest.skip(f"{impl} is the peer of the other backend")
    return be.ndimage  # scipy.ndimage on NumPy, cupyx.scipy.ndimage on CuPy


@pytest.mark.parametrize("impl", ["gpuimg", "scipy", "cupyx"])
@pytest.mark.parametrize("k", [3, 5, pytest.param(31, marks=pytest.mark.slow)])
def test_convolve_random_kernel(bench, be, rng, impl, k):
    peer = _peer(be, impl)
    x = be.asarray(rng.random((N, N), dtype=np.float32))
    w = be.asarray(rng.random((k, k)))
    group = f"convolve {N}^2 f32 {k}x{k}"
    slow = peer is not None and k > 9 and not be.is_gpu
    if peer is None:
        bench(filters.convolve, x, w, group=group, impl=impl, be=be)
    else:
        bench(peer.convolve, x, w, mode="reflect", group=group, impl=impl, be=be,
              rounds=3 if slow else None)


@pytest.mark.parametrize("impl", ["gpuimg", "scipy", "cupyx"])
@pytest.mark.parametrize("name, arg", [("gaussian_filter", 3.0), ("uniform_filter", 9)])
def test_separable_filter(bench, be, rng, impl, name, arg):
    peer = _peer(be, impl)
    x = be.asarray(rng.random((N, N), dtype=np.float32))
    fn = getattr(filters if peer is None else peer, name)
    bench(fn, x, arg, group=f"{name} {N}^2 f32 {arg}", impl=impl, be=be)


@pytest.mark.parametrize("impl", ["gpuimg", "scipy", "cupyx"])
@pytest.mark.parametrize("axis", [-1, 0])
@pytest.mark.parametrize("taps", [19, 127])
def test_correlate1d_512(bench, be, rng, impl, taps, axis):
    # one 1-D pass (banded GEMMs on the CPU) against ndimage.correlate1d
    peer = _peer(be, impl)
    x = be.asarray(rng.random((512, 512), dtype=np.float32))
    w = rng.random(taps)
    group = f"correlate1d 512^2 f32 {taps} taps axis {axis}"
    if peer is None:
        bench(be.correlate1d, x, w, axis, "reflect", 0.0, taps // 2, group=group, impl=impl, be=be)
    else:
        bench(peer.correlate1d, x, be.asarray(w), axis=axis, mode="reflect", group=group, impl=impl, be=be)


def _crossover(bench, be, rng, w, method, label, slow):
    x = be.asarray(rng.random((N, N), dtype=np.float32))
    bench(filters.convolve, x, be.asarray(w), method=method, group=f"crossover {N}^2 f32 {label}",
          impl="gpuimg" if method == "direct" else "fft", be=be,
          rounds=3 if (method == "direct" and slow and not be.is_gpu) else None)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["direct", "fft"])
@pytest.mark.parametrize("k", [3, 4, 5, 7, 11, 15])
def test_crossover_general(bench, be, rng, method, k):
    _crossover(bench, be, rng, rng.random((k, k)), method, f"{k}x{k}", k > 7)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["direct", "fft"])
@pytest.mark.parametrize("k", [9, 15, 31, 61, 101])
def test_crossover_separable(bench, be, rng, method, k):
    _crossover(bench, be, rng, np.outer(rng.random(k), rng.random(k)), method, f"separable {k}x{k}", k > 15)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["direct", "fft"])
@pytest.mark.parametrize("k", [15, 31])
def test_crossover_rank_two(bench, be, rng, method, k):
    # a Gabor kernel: two pairs of 1-D passes against one FFT correlation
    r = np.arange(k) - k // 2
    yy, xx = np.meshgrid(r, r, indexing="ij")
    w = np.exp(-(xx * xx + yy * yy) / (2 * (k / 5) ** 2)) * np.cos(0.6 * (xx * np.cos(0.5) + yy * np.sin(0.5)))
    _crossover(bench, be, rng, w, method, f"rank two {k}x{k}", True)


@pytest.mark.parametrize("impl", ["gpuimg", "gather"])
@pytest.mark.parametrize("k", [3, 5, 7])
def test_direct_kernel_choice(bench, be, rng, impl, k, monkeypatch):
    # GPU only: the shared-memory tiles (gpuimg's choice) against one thread per output
    if not be.is_gpu:
        pytest.skip("compares two CUDA kernels")
    from gpuimg._prims import convolve as prims

    if impl == "gather":
        monkeypatch.setattr(prims, "GATHER_MAX_TAPS", 10**6)
    x = be.asarray(rng.random((N, N), dtype=np.float32))
    w = be.asarray(rng.random((k, k)))
    bench(filters.convolve, x, w, method="direct", group=f"direct kernel {N}^2 f32 {k}x{k}", impl=impl, be=be)
