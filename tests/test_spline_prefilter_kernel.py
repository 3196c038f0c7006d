"""The CUDA twin of ``spline_prefilter`` executed on the CPU.

``kernels/spline_prefilter.cu`` is compiled as C++20 with a small shim (one std::thread per
CUDA thread, std::barrier for ``__syncthreads``/``__syncthreads_or``, function-static arrays for shared memory)
and launched through the real CuPy-twin wrapper, whose kernel arguments are checked for the
exact types a CUDA launch needs. Results are compared with scipy.ndimage.spline_filter1d for
every mode and orders 2-5, along the contiguous axis (shared-memory tiles) and along other
axes, with lines cut into many short segments as well as into a few long ones, and with every
segment count a block holds (1 to 256, so the carries' scan runs 0 to 8 steps).
"""

import ctypes
import re
import types

import numpy as np
import pytest

import gpuimg._prims.spline as spl
from gpuimg import _kernels
from gpuimg._boundary import MODE_CODES

from _cuda_emulation import compile_emulated
from _spline_reference import spline_filter1d

_SHIM = r"""
#include <atomic>
#include <barrier>
#include <cmath>
#include <thread>
#include <vector>
struct gpuimg_dim3 { unsigned x, y, z; };
#define __global__
#define __launch_bounds__(...)
#define __device__
#define __forceinline__ inline
#define __shared__ static
#define __restrict__
thread_local gpuimg_dim3 threadIdx, blockIdx;
gpuimg_dim3 blockDim, gridDim;
std::barrier<>* g_bar = nullptr;
inline void __syncthreads() { g_bar->arrive_and_wait(); }
std::atomic<int> g_or{0};
inline int __syncthreads_or(int p) {
    if (p) g_or.store(1);
    g_bar->arrive_and_wait();
    int r = g_or.load();
    g_bar->arrive_and_wait();
    if (threadIdx.x == 0) g_or.store(0);
    g_bar->arrive_and_wait();
    return r;
}
using std::pow;
"""

_LAUNCH = r"""
template <typename T, int INIT>
void launch(T* x, long long lines, long long n, long long inner, int segs, int npoles, double p0,
            double p1, int grid, int block) {
    blockDim = {(unsigned)block, 1, 1};
    gridDim = {(unsigned)grid, 1, 1};
    for (int bx = 0; bx < grid; ++bx) {
        std::barrier<> bar(block);
        g_bar = &bar;
        std::vector<std::thread> threads;
        for (int t = 0; t < block; ++t) threads.emplace_back([=]() {
            threadIdx = {(unsigned)t, 0, 0};
            blockIdx = {(unsigned)bx, 0, 0};
            spline_prefilter<T, INIT>(x, lines, n, inner, segs, npoles, p0, p1);
        });
        for (auto& th : threads) th.join();
    }
}
#define GPUIMG_ENTRY(T, NAME, INIT) extern "C" void NAME(T* x, long long lines, long long n, \
    long long inner, int segs, int npoles, double p0, double p1, int grid, int block) { \
    launch<T, INIT>(x, lines, n, inner, segs, npoles, p0, p1, grid, block); }
"""


@pytest.fixture(scope="module")
def emulated(tmp_path_factory):
    entries = "".join(f"GPUIMG_ENTRY({t}, sp_{t}_{i}, {i})\n" for t in ("float", "double") for i in (0, 1, 2))
    return compile_emulated(tmp_path_factory.mktemp("spline_prefilter_kernel"), "sp",
                            _SHIM + _kernels.source("spline_prefilter.cu") + _LAUNCH + entries)


class _EmulatedKernel:
    """Stands in for the compiled RawKernel; checks argument types like a CUDA launch needs."""

    def __init__(self, lib, name):
        t, i = re.fullmatch(r"spline_prefilter<(float|double), (\d)>", name).groups()
        self.dtype = np.float32 if t == "float" else np.float64
        self.fn = getattr(lib, f"sp_{t}_{i}")
        self.fn.argtypes = ([ctypes.c_void_p] + [ctypes.c_longlong] * 3 + [ctypes.c_int] * 2
                            + [ctypes.c_double] * 2 + [ctypes.c_int] * 2)

    def __call__(self, grid, block, args, shared_mem=0):
        assert len(grid) == 1 and block == (spl._PREFILTER_THREADS,) and len(args) == 8
        x = args[0]
        assert x.dtype == self.dtype and x.flags.c_contiguous
        assert all(type(v) is np.int64 for v in args[1:4])
        assert all(type(v) is np.int32 for v in args[4:6])
        assert all(type(v) is np.float64 for v in args[6:8])
        assert spl._PREFILTER_THREADS % int(args[4]) == 0
        self.fn(x.ctypes.data_as(ctypes.c_void_p), *(int(v) for v in args[1:6]), *(float(v) for v in args[6:8]),
                int(grid[0]), int(block[0]))


@pytest.fixture
def cuda_prefilter(emulated, monkeypatch):
    """The CUDA twin of ``spline_prefilter`` on NumPy arrays, through the emulated kernel."""
    monkeypatch.setattr(spl._PREFILTER, "get", lambda name: _EmulatedKernel(emulated, name))
    host_be = types.SimpleNamespace(xp=np)
    return lambda x, axis, order, mode: spl._prefilter_cupy(host_be, x, axis, order, mode)


@pytest.mark.parametrize("mode", sorted(MODE_CODES))
@pytest.mark.parametrize("min_segment", [64, 3])
def test_kernel_prefilter_matches_scipy(cuda_prefilter, monkeypatch, rng, mode, min_segment):
    monkeypatch.setattr(spl, "_MIN_SEGMENT", min_segment)
    x = rng.standard_normal((3, 133, 5))
    x2 = rng.standard_normal((2, 150))
    for order in range(2, 6):
        for arr, axis in ((x, 1), (x, 0), (x2, 1), (x2, 0), (x[:, :, :2].copy(), 2)):
            ref = spline_filter1d(arr, order, axis=axis, mode=mode)
            got = cuda_prefilter(arr, axis, order, mode)
            np.testing.assert_allclose(got, ref, rtol=0, atol=1e-9,
                                       err_msg=f"order {order} axis {axis} shape {arr.shape}")
    x32 = x2.astype(np.float32)
    ref = spline_filter1d(x2, 3, axis=1, mode=mode)
    got = cuda_prefilter(x32, 1, 3, mode)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, ref, rtol=0, atol=2e-5)


def test_kernel_prefilter_many_lines_and_segments(cuda_prefilter, emulated, monkeypatch, rng):
    x = rng.standard_normal((300, 150))
    y = np.ascontiguousarray(x.T)
    assert spl._prefilter_segments(300, 150, 150, 8) == spl._prefilter_segments(300, 150, 1, 8) == 4
    np.testing.assert_allclose(cuda_prefilter(x, 0, 4, "mirror"),
                               spline_filter1d(x, 4, axis=0, mode="mirror"), rtol=0, atol=1e-9)
    np.testing.assert_allclose(cuda_prefilter(y, 1, 5, "reflect"),
                               spline_filter1d(y, 5, axis=1, mode="reflect"), rtol=0, atol=1e-9)
    # float32 with long segments: the final sweep skips chunks whose corrections underflow to 0
    monkeypatch.setattr(spl, "_MIN_SEGMENT", 140)  # two segments of 150
    assert spl._prefilter_segments(300, 150, 1, 4) == 2
    for arr, axis in ((x, 0), (y, 1)):
        got = cuda_prefilter(arr.astype(np.float32), axis, 2, "nearest")
        np.testing.assert_allclose(got, spline_filter1d(arr, 2, axis=axis, mode="nearest"), rtol=0, atol=2e-5)
    # fewer blocks than tiles of lines: each block walks several tiles
    got = y.copy()
    fn = _EmulatedKernel(emulated, "spline_prefilter<double, 2>").fn
    fn(got.ctypes.data_as(ctypes.c_void_p), 150, 300, 1, 4, 1, spl.POLES[3][0], 0.0, 2, spl._PREFILTER_THREADS)
    np.testing.assert_allclose(got, spline_filter1d(y, 3, axis=1, mode="grid-wrap"), rtol=0, atol=1e-9)


@pytest.mark.parametrize("segs", [1, 2, 8, 64, 256])
@pytest.mark.parametrize("mode", ["mirror", "reflect", "grid-wrap"])
def test_kernel_prefilter_any_segment_count(cuda_prefilter, monkeypatch, rng, segs, mode):
    # one exact start per mode family (mirror / reflect / grid-wrap), one and two poles, with
    # every segment count a block holds: whole lines per thread, segments ending at n - 2 or
    # holding a single sample, more segments than samples (unused ones), and tiles that only
    # partly hold lines, along the contiguous axis and across lines
    monkeypatch.setattr(spl, "_prefilter_segments", lambda *args: segs)
    for n in (2, 3, 9, 130):
        x = rng.standard_normal((5, n))
        for order in (2, 5):
            for arr, axis in ((x, 1), (np.ascontiguousarray(x.T), 0)):
                ref = spline_filter1d(arr, order, axis=axis, mode=mode)
                got = cuda_prefilter(arr, axis, order, mode)
                np.testing.assert_allclose(got, ref, rtol=0, atol=1e-9,
                                           err_msg=f"segs {segs} n {n} order {order} axis {axis}")
    got = cuda_prefilter(x.astype(np.float32), 1, 3, mode)
    np.testing.assert_allclose(got, spline_filter1d(x, 3, axis=1, mode=mode), rtol=0, atol=2e-5)


def test_segment_counts_fill_the_gpu():
    # 4096 x 4096: 4096 lines x 64 segments of 64 samples = 2^18 threads (1024 blocks) along the
    # contiguous axis; across lines float32 keeps 8 neighbouring lines per warp row (32 segments)
    assert spl._prefilter_segments(4096, 4096, 1, 4) == 64
    assert spl._prefilter_segments(4096, 4096, 4096, 4) == 32
    assert spl._prefilter_segments(4096, 4096, 4096, 8) == 64
    # many lines: one thread per line is already enough; short lines keep 64-sample segments
    assert spl._prefilter_segments(512, 1 << 18, 1, 4) == 1
    assert spl._prefilter_segments(1024, 1024, 1, 4) == 16
    # a line too long for 32-bit segment offsets is cut regardless
    assert spl._prefilter_segments(3 << 30, 1 << 20, 1, 4) == 4
