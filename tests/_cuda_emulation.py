"""Run CUDA kernel sources on the CPU: compile them with g++ behind a small shim.

A test prepends a shim (``__global__``, ``threadIdx``, ``__syncthreads`` ... as plain C++ with
one std::thread per CUDA thread) and appends ``extern "C"`` launchers, then calls
:func:`compile_emulated` and drives the library through the real CuPy-twin wrapper. The test
skips where g++ or C++20 ``<barrier>`` is missing.
"""

from __future__ import annotations

import ctypes
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

#: Shim for kernels that need no shared memory or barriers: one host thread with
#: blockDim = gridDim = 1 walks the kernel's whole grid-stride loop in one call.
SERIAL_SHIM = r"""
#include <algorithm>
#include <cmath>
struct gpuimg_dim3 { unsigned x, y, z; };
#define __global__
#define __device__
#define __forceinline__ inline
#define __restrict__
#define __launch_bounds__(...)
gpuimg_dim3 threadIdx{0, 0, 0}, blockIdx{0, 0, 0}, blockDim{1, 1, 1}, gridDim{1, 1, 1};
using std::floor; using std::isfinite; using std::fmin; using std::fmax; using std::sin; using std::sqrt;
using std::min; using std::max;
template <typename T> inline T __ldg(const T* p) { return *p; }
"""


#: Shim for kernels with shared memory and barriers: ``run_grid(body, gx, gy, gz, bx, by, smem)``
#: runs every block of the grid with one std::thread per CUDA thread, a std::barrier for
#: ``__syncthreads`` and one host buffer ``g_smem`` standing in for dynamic shared memory (a
#: kernel's ``extern __shared__`` line is replaced by a pointer to it).
THREADED_SHIM = r"""
#include <algorithm>
#include <barrier>
#include <cmath>
#include <thread>
#include <vector>
struct gpuimg_dim3 { unsigned x, y, z; };
#define __global__
#define __device__
#define __forceinline__ inline
#define __restrict__
#define __align__(n)
#define __launch_bounds__(...)
thread_local gpuimg_dim3 threadIdx, blockIdx;
gpuimg_dim3 blockDim, gridDim;
std::barrier<>* g_bar = nullptr;
unsigned char* g_smem = nullptr;
inline void __syncthreads() { if (g_bar) g_bar->arrive_and_wait(); }
template <typename T> inline T __ldg(const T* p) { return *p; }
using std::min; using std::max; using std::exp; using std::sqrt; using std::floor;

template <typename F>
void run_grid(F body, int gx, int gy, int gz, int bx, int by, long long smem) {
    blockDim = {(unsigned)bx, (unsigned)by, 1};
    gridDim = {(unsigned)gx, (unsigned)gy, (unsigned)gz};
    std::vector<unsigned char> sm(smem + 16);
    g_smem = sm.data();
    const int n = bx * by;
    for (int z = 0; z < gz; ++z) for (int y = 0; y < gy; ++y) for (int x = 0; x < gx; ++x) {
        std::barrier<> bar(n);
        g_bar = n > 1 ? &bar : nullptr;
        std::vector<std::thread> threads;
        for (int t = 0; t < n; ++t) threads.emplace_back([=]() {
            threadIdx = {(unsigned)(t % bx), (unsigned)(t / bx), 0};
            blockIdx = {(unsigned)x, (unsigned)y, (unsigned)z};
            body();
        });
        for (auto& th : threads) th.join();
    }
}
"""


#: ``__shfl_xor_sync`` and ``__reduce_min_sync`` for the threaded shims: a warp's lanes exchange
#: through the block barrier ``g_bar`` (every thread of the block calls them together, as in a
#: block reduction).
WARP_SHIM = r"""
long long g_xor[1024];
template <typename T> inline T __shfl_xor_sync(unsigned, T v, int mask) {
    const int t = threadIdx.y * blockDim.x + threadIdx.x;
    g_xor[t] = (long long)v;
    if (g_bar) g_bar->arrive_and_wait();
    const T r = (T)g_xor[(t & ~31) | ((t & 31) ^ mask)];
    if (g_bar) g_bar->arrive_and_wait();
    return r;
}
template <typename T> inline T __reduce_min_sync(unsigned, T v) {
    const int t = threadIdx.y * blockDim.x + threadIdx.x;
    const int n = (int)(blockDim.x * blockDim.y), w0 = t & ~31, w1 = w0 + 32 < n ? w0 + 32 : n;
    g_xor[t] = (long long)v;
    if (g_bar) g_bar->arrive_and_wait();
    T r = v;
    for (int u = w0; u < w1; ++u) r = (T)g_xor[u] < r ? (T)g_xor[u] : r;
    if (g_bar) g_bar->arrive_and_wait();
    return r;
}
"""


def compile_emulated(folder: Path, name: str, cpp_source: str, *, opt: str = "-O1") -> ctypes.CDLL:
    """Compile ``cpp_source`` into ``folder/lib<name>.so`` and load it."""
    gxx = shutil.which("g++")
    if gxx is None:
        pytest.skip("needs g++ to run the CUDA source on the CPU")
    cpp = folder / f"{name}_emulated.cpp"
    cpp.write_text(cpp_source)
    lib = folder / f"lib{name}.so"
    res = subprocess.run([gxx, "-std=c++20", opt, "-shared", "-fPIC", str(cpp), "-o", str(lib), "-lpthread"],
                         capture_output=True, text=True, check=False)
    if res.returncode != 0 and re.search(r"barrier.*(No such file|not a member)", res.stderr):
        pytest.skip("g++ lacks C++20 <barrier>")
    assert res.returncode == 0, res.stderr[-3000:]
    return ctypes.CDLL(str(lib))


#: NumPy scalar type a CUDA launch needs for each C scalar parameter.
_SCALARS = {ctypes.c_longlong: np.int64, ctypes.c_int: np.int32, ctypes.c_float: np.float32,
            ctypes.c_double: np.float64}


def real(dtype):
    """The ctypes scalar of a kernel's float type ``T``."""
    return ctypes.c_float if np.dtype(dtype) == np.float32 else ctypes.c_double


def kernel_dtype(name):
    """The float dtype of a specialisation name such as ``"rl_ratio<float>"``."""
    return np.float32 if re.search(r"<\s*float\b", name) else np.float64


class EmulatedKernel:
    """Stands in for a compiled CuPy ``RawKernel``: checks every argument against the kernel's
    signature as a CUDA launch needs it, then calls the emulated C entry point ``fn``.

    ``signature`` lists, per kernel parameter, a NumPy dtype for an array (passed as a pointer
    to its first element; it must have that dtype and unit stride along its last axis) or a
    ctypes scalar type (the argument must be exactly the matching NumPy scalar type).
    ``launch(grid, block, shared_mem)`` returns trailing integer arguments of the entry point
    (launch geometry), typed by ``launch_types``; ``calls`` records the kernel names launched.
    """

    calls: list = []

    def __init__(self, fn, signature, *, launch=None, launch_types=(), name=""):
        self.fn, self.signature, self.launch, self.name = fn, list(signature), launch, name
        fn.argtypes = [ctypes.c_void_p if isinstance(t, np.dtype) or t in (np.float32, np.float64, np.int64)
                       else t for t in self.signature] + list(launch_types)

    def __call__(self, grid, block, args, shared_mem=0):
        assert len(args) == len(self.signature), (self.name, len(args), len(self.signature))
        values = []
        for k, (a, t) in enumerate(zip(args, self.signature)):
            if t in _SCALARS:
                assert type(a) is _SCALARS[t], (self.name, k, type(a), t)
                values.append(a.item())
            else:
                assert isinstance(a, np.ndarray) and a.dtype == np.dtype(t), (self.name, k, getattr(a, "dtype", a), t)
                assert a.size == 0 or a.ndim == 0 or a.strides[-1] == a.itemsize, (self.name, k, a.strides)
                values.append(a.ctypes.data_as(ctypes.c_void_p))
        EmulatedKernel.calls.append(self.name)
        extra = self.launch(grid, block, shared_mem) if self.launch is not None else ()
        self.fn(*values, *extra)
