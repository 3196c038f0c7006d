"""The CUDA twins of ``error_sum`` and ``decibels`` (``kernels/reduce.cu``) on the CPU.

The kernel source is compiled as C++20 behind the threaded shim (one std::thread per CUDA
thread, a std::barrier for ``__syncthreads``) with a barrier-based ``__shfl_down_sync`` and a
locked ``atomicAdd`` and launched through the real CuPy-twin wrappers. References: NumPy sums in
float64, and ``10 log10`` with IEEE infinities.
"""

import ctypes
import re
import types

import numpy as np
import pytest
from _cuda_emulation import THREADED_SHIM, EmulatedKernel, compile_emulated

import gpuimg._prims.reduce as rd
from gpuimg import _kernels

_SHIM = THREADED_SHIM + r"""
#include <cstring>
#include <mutex>
#define __shared__ static
double g_shfl[1024];
std::mutex g_atomic;
inline double __shfl_down_sync(unsigned, double v, int off) {
    const int tid = threadIdx.x;
    g_shfl[tid] = v;
    g_bar->arrive_and_wait();
    const double r = ((tid & 31) + off < 32) ? g_shfl[tid + off] : v;
    g_bar->arrive_and_wait();
    return r;
}
inline double atomicAdd(double* p, double v) { std::lock_guard<std::mutex> g(g_atomic); double o = *p; *p += v; return o; }
inline double __longlong_as_double(long long v) { double d; std::memcpy(&d, &v, 8); return d; }
using std::fabs; using std::isnan; using std::log10;
"""


def _entries():
    out = []
    for t in ("float", "double"):
        for p in (1, 2):
            out.append(f'extern "C" void sum_{t}_{p}(const {t}* a, const {t}* b, long long n, double* o, int gx, '
                       f"int bx) {{ run_grid([=]() {{ error_sum<{t}, {p}>(a, b, n, o); }}, gx, 1, 1, bx, 1, 0); }}\n")
    out.append('extern "C" void db(const double* np_, int isp, double ns, const double* dp, double ds, double* o, '
               "int gx, int bx) { run_grid([=]() { decibels(np_, isp, ns, dp, ds, o); }, gx, 1, 1, bx, 1, 0); }\n")
    return "".join(out)


@pytest.fixture(scope="module")
def emulated(tmp_path_factory):
    return compile_emulated(tmp_path_factory.mktemp("reduce_kernel"), "reduce",
                            _SHIM + _kernels.source("reduce.cu") + _entries())


@pytest.fixture
def cuda(emulated, monkeypatch):
    ll, i32, f64 = ctypes.c_longlong, ctypes.c_int, ctypes.c_double
    launch = dict(launch=lambda grid, block, smem: (grid[0], block[0]), launch_types=[i32, i32])

    def kernel(name):
        if name == "decibels":
            d = np.dtype(np.float64)
            return EmulatedKernel(emulated.db, [d, i32, f64, d, f64, d], name=name, **launch)
        t, p = re.fullmatch(r"error_sum<(float|double), (\d)>", name).groups()
        T = np.dtype(np.float32 if t == "float" else np.float64)
        return EmulatedKernel(getattr(emulated, f"sum_{t}_{p}"), [T, T, ll, np.dtype(np.float64)], name=name,
                              **launch)

    monkeypatch.setattr(rd._FAMILY, "get", kernel)
    monkeypatch.setattr(rd, "_SUM_BLOCK", 64)
    monkeypatch.setattr(rd, "_SUM_MAX_BLOCKS", 5)
    be = types.SimpleNamespace(xp=np)
    return types.SimpleNamespace(sum=lambda a, b, p: rd._error_sum_cupy(be, a, b, p),
                                 db=lambda num, den, scale=1.0: rd._decibels_cupy(be, num, den, scale))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("power", [1, 2])
def test_kernel_error_sum_equals_float64_sum(cuda, rng, dtype, power):
    a = rng.standard_normal((37, 29)).astype(dtype)  # 1073 elements: 5 blocks of 64 loop twice
    b = rng.standard_normal((37, 29)).astype(dtype)
    d = (a - b).astype(np.float64)
    ref = np.sum(np.abs(d) ** power)
    got = cuda.sum(a, b, power)
    assert got.shape == () and got.dtype == np.float64
    np.testing.assert_allclose(got, ref, rtol=1e-12)


def test_kernel_decibels_follow_the_infinity_rules(cuda):
    dev = lambda v: np.asarray(v, dtype=np.float64)  # noqa: E731  a 0-d "device" array
    assert cuda.db(4.0, dev(0.04)) == pytest.approx(20.0)
    assert cuda.db(dev(9.0), dev(0.9), 10.0) == pytest.approx(0.0, abs=1e-12)
    assert cuda.db(1.0, dev(0.0)) == np.inf
    assert cuda.db(dev(0.0), dev(2.0)) == -np.inf
    assert np.isnan(cuda.db(dev(np.nan), dev(1.0)))
    assert np.isnan(cuda.db(1.0, dev(np.nan)))
    for num, den in ((4.0, 0.04), (1.0, 0.0), (0.0, 2.0), (0.0, 0.0), (np.nan, 1.0)):
        ref = rd._decibels_numpy(None, num, den)
        got = cuda.db(dev(num), dev(den))
        assert (np.isnan(ref) and np.isnan(got)) or got == pytest.approx(ref)
