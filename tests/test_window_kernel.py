"""The CUDA twin of ``window_moments`` executed on the CPU.

``kernels/window_moments.cu`` is compiled as C++20 with a small shim (one std::thread per CUDA
thread, std::barrier for ``__syncthreads``, a shared array for warp shuffles) and launched
through the real CuPy-twin wrapper, whose kernel arguments are checked for the exact types a
CUDA launch needs. The results are compared with scikit-image and SciPy, so the kernel's
indexing, tiling, boundary handling and reductions are tested on machines without a GPU.
"""

import ctypes
import re
import types

import numpy as np
import pytest
import scipy.ndimage as ndi
from skimage.metrics import structural_similarity as sk_ssim

import gpuimg._prims.window as window
from gpuimg import _backend, _kernels, metrics

from _cuda_emulation import compile_emulated

_SHIM = r"""
#include <barrier>
#include <cmath>
#include <thread>
#include <vector>
struct gpuimg_dim3 { unsigned x, y, z; };
#define __global__
#define __launch_bounds__(...)
#define __device__
#define __forceinline__ inline
#define __restrict__
thread_local gpuimg_dim3 threadIdx, blockIdx;
gpuimg_dim3 blockDim, gridDim;
std::barrier<>* g_bar = nullptr;
double* g_smem = nullptr;
double* g_shfl = nullptr;
inline void __syncthreads() { g_bar->arrive_and_wait(); }
inline double __shfl_down_sync(unsigned, double v, int off) {
    int tid = threadIdx.y * blockDim.x + threadIdx.x;
    g_shfl[tid] = v;
    g_bar->arrive_and_wait();
    double r = ((tid & 31) + off < 32) ? g_shfl[tid + off] : v;
    g_bar->arrive_and_wait();
    return r;
}
using std::sqrt;
"""

_LAUNCH = r"""
template <typename T, int MODE>
void launch(const T* a, const T* b, T* out, double* partial, const double* taps, long long slices,
            long long nz, long long ny, long long nx, int rz, int ry, int rx, int tile_h, int kind,
            int wm, int wp, T cn, T c1, T c2, T eps, long long cz, long long cy, long long cx,
            int gx, int gy, int gz, long long smem) {
    blockDim = {32, 8, 1};
    gridDim = {(unsigned)gx, (unsigned)gy, (unsigned)gz};
    std::vector<double> sm(smem / 8 + 1), sh(256);
    g_smem = sm.data();
    g_shfl = sh.data();
    for (int bz = 0; bz < gz; ++bz) for (int by = 0; by < gy; ++by) for (int bx = 0; bx < gx; ++bx) {
        std::barrier<> bar(256);
        g_bar = &bar;
        std::vector<std::thread> threads;
        for (int t = 0; t < 256; ++t) threads.emplace_back([=]() {
            threadIdx = {(unsigned)(t % 32), (unsigned)(t / 32), 0};
            blockIdx = {(unsigned)bx, (unsigned)by, (unsigned)bz};
            window_moments<T, MODE>(a, b, out, partial, taps, slices, nz, ny, nx, rz, ry, rx, tile_h,
                                    kind, wm, wp, cn, c1, c2, eps, cz, cy, cx);
        });
        for (auto& th : threads) th.join();
    }
}
#define GPUIMG_ENTRY(T, NAME, MODE) extern "C" void NAME(const T* a, const T* b, T* out, double* partial, \
    const double* taps, long long slices, long long nz, long long ny, long long nx, int rz, int ry, int rx, \
    int tile_h, int kind, int wm, int wp, T cn, T c1, T c2, T eps, long long cz, long long cy, long long cx, \
    int gx, int gy, int gz, long long smem) { launch<T, MODE>(a, b, out, partial, taps, slices, nz, ny, nx, \
    rz, ry, rx, tile_h, kind, wm, wp, cn, c1, c2, eps, cz, cy, cx, gx, gy, gz, smem); }
"""

_CT = {"float": ctypes.c_float, "double": ctypes.c_double}


@pytest.fixture(scope="module")
def emulated(tmp_path_factory):
    src = _kernels.source("window_moments.cu")
    src = src.replace("extern __shared__ double gpuimg_wm_smem[];", "double* gpuimg_wm_smem = g_smem;")
    used = [("double", m) for m in sorted(set(window._KMODE.values()))] + [("float", 0)]
    entries = "".join(f"GPUIMG_ENTRY({t}, wm_{t}_{m}, {m})\n" for t, m in used)
    return compile_emulated(tmp_path_factory.mktemp("window_kernel"), "wm", _SHIM + src + _LAUNCH + entries,
                            opt="-O0")


class _EmulatedKernel:
    """Stands in for the compiled RawKernel; checks argument types like a CUDA launch needs."""

    def __init__(self, lib, name):
        t, m = re.fullmatch(r"window_moments<(float|double), (\d)>", name).groups()
        self.dtype = np.float32 if t == "float" else np.float64
        self.fn = getattr(lib, f"wm_{t}_{m}")
        real = _CT[t]
        self.fn.argtypes = ([ctypes.c_void_p] * 5 + [ctypes.c_longlong] * 4 + [ctypes.c_int] * 7 + [real] * 4
                            + [ctypes.c_longlong] * 3 + [ctypes.c_int] * 3 + [ctypes.c_longlong])
        self.max_dynamic_shared_size_bytes = 0

    def __call__(self, grid, block, args, shared_mem=0):
        assert block == (32, 8, 1) and len(args) == 23
        for arr, dt in zip(args[:5], (self.dtype, self.dtype, self.dtype, np.float64, np.float64)):
            assert arr.dtype == dt and arr.flags.c_contiguous
        assert all(type(v) is np.int64 for v in args[5:9] + args[20:23])
        assert all(type(v) is np.int32 for v in args[9:16])
        assert all(type(v) is self.dtype for v in args[16:20])
        assert shared_mem <= max(48 * 1024, self.max_dynamic_shared_size_bytes)
        ptrs = [x.ctypes.data_as(ctypes.c_void_p) for x in args[:5]]
        self.fn(*ptrs, *(int(v) for v in args[5:16]), *(float(v) for v in args[16:20]),
                *(int(v) for v in args[20:23]), *(int(g) for g in grid), int(shared_mem))


class _HostXp:
    """NumPy plus the few ``cupy.cuda`` queries the CUDA twin makes (an H100's limits)."""

    cuda = types.SimpleNamespace(
        Device=lambda: types.SimpleNamespace(id=0, attributes={"MaxSharedMemoryPerBlockOptin": 232448})
    )

    def __getattr__(self, name):
        return getattr(np, name)


@pytest.fixture
def cuda_twin_on_cpu(emulated, monkeypatch):
    """Route ``be.window_moments`` on NumPy through the CUDA twin and the emulated kernel."""
    host_be = types.SimpleNamespace(xp=_HostXp())
    monkeypatch.setattr(window._FAMILY, "get", lambda name: _EmulatedKernel(emulated, name))
    monkeypatch.setitem(_backend._PRIMITIVES["window_moments"], "numpy",
                        lambda be, *args, **kw: window._window_moments_cupy(host_be, *args, **kw))
    be = _backend.get_backend(backend="numpy")
    be._prim_cache.clear()
    yield be
    be._prim_cache.clear()


def test_kernel_ssim_matches_skimage(cuda_twin_on_cpu, rng):
    a = rng.random((45, 70))
    b = a + 0.3 * rng.standard_normal(a.shape)
    for kw in ({"gaussian_weights": True, "use_sample_covariance": False}, {"win_size": 5}):
        ref, ref_map = sk_ssim(a, b, data_range=2.0, full=True, **kw)
        got, got_map = metrics.ssim(a, b, data_range=2.0, full=True, **kw)
        assert abs(float(got) - ref) <= 1e-10
        assert np.abs(got_map - ref_map).max() <= 1e-10
    sig_a, sig_b = a[0], b[0]  # 1-D signals
    ref, ref_map = sk_ssim(sig_a, sig_b, data_range=2.0, full=True)
    got, got_map = metrics.ssim(sig_a, sig_b, data_range=2.0, full=True)
    assert abs(float(got) - ref) <= 1e-10 and np.abs(got_map - ref_map).max() <= 1e-10


def test_kernel_ssim_float32_3d_and_batch(cuda_twin_on_cpu, rng):
    a = rng.random((9, 12, 40)).astype(np.float32)
    b = (a + 0.3 * rng.standard_normal(a.shape)).astype(np.float32)
    ref = sk_ssim(a.astype(np.float64), b.astype(np.float64), data_range=1.0, win_size=3)
    assert abs(float(metrics.ssim(a, b, data_range=1.0, win_size=3)) - ref) <= 1e-5
    per_image = [sk_ssim(a[i].astype(np.float64), b[i].astype(np.float64), data_range=1.0) for i in range(3)]
    got = metrics.ssim(a[:3], b[:3], data_range=1.0, spatial_ndim=2)
    np.testing.assert_allclose(got, per_image, rtol=0, atol=1e-5)


@pytest.mark.parametrize("mode", ["constant", "mirror", "wrap"])
def test_kernel_local_mse_matches_scipy(cuda_twin_on_cpu, rng, mode):
    a = rng.random((5, 11, 37))
    b = rng.random(a.shape)
    ref = ndi.uniform_filter((a - b) ** 2, size=3, mode=mode)
    np.testing.assert_allclose(metrics.local_mse(a, b, win_size=3, mode=mode), ref, rtol=0, atol=1e-13)


def test_kernel_local_ncc_invariance(cuda_twin_on_cpu, rng):
    x = rng.random((30, 36)) * 100
    x[:10, :10] = 3.0
    got = metrics.local_ncc(x, 2 * x + 5, win_size=5, mode="nearest")
    flat = np.zeros(x.shape, bool)
    flat[:8, :8] = True
    np.testing.assert_allclose(got[~flat], 1.0, atol=1e-9)
    assert np.all(got[flat] == 0)


def test_kernel_large_window_uses_opt_in_shared_memory(cuda_twin_on_cpu, rng):
    a = rng.random((40, 45))
    b = a + rng.standard_normal(a.shape)
    ref = ndi.uniform_filter((a - b) ** 2, size=35, mode="reflect")
    np.testing.assert_allclose(metrics.local_mse(a, b, win_size=35), ref, rtol=0, atol=1e-12)
    x = rng.random((40, 45))
    got = metrics.local_ncc(x, 3 * x + 1, win_size=31)
    np.testing.assert_allclose(got, 1.0, atol=1e-9)
