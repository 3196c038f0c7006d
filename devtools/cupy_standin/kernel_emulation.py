"""Generic CPU emulation of gpuimg's CUDA kernels with CuPy's launch ABI.

Each kernel family's .cu is compiled with g++ behind a shim; for every declared specialisation
an extern "C" entry takes `void** args` (one buffer per argument, filled as CuPy's
function.pyx `_pointer` does) and reads `sizeof(P)` bytes per declared parameter, exactly like
cuLaunchKernel. The entry also checks every argument against the declared parameter
(pointer vs scalar, byte size, pointee element type) and records mismatches.
"""
import ctypes, hashlib, os, re, subprocess, sys, threading
_LAUNCH_LOCK = threading.Lock()
from pathlib import Path
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
from gpuimg import _kernels  # noqa: E402
from _cuda_emulation import WARP_SHIM  # noqa: E402

import tempfile  # noqa: E402

BUILD = Path(os.environ.get("GPUIMG_STANDIN_BUILD", Path(tempfile.gettempdir()) / "gpuimg-standin-build"))
BUILD.mkdir(parents=True, exist_ok=True)

SHIM = r'''
#include <algorithm>
#include <atomic>
#include <barrier>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>
struct gpuimg_dim3 { unsigned x, y, z; };
#define __global__
#define __device__
#define __forceinline__ inline
#define __restrict__
#define __align__(n)
#define __launch_bounds__(...)
#define __shared__ static
thread_local gpuimg_dim3 threadIdx, blockIdx;
gpuimg_dim3 blockDim, gridDim;
std::barrier<>* g_bar = nullptr;
alignas(16) unsigned char g_smem_buf[1 << 20];
inline void __syncthreads() { if (g_bar) g_bar->arrive_and_wait(); }
std::atomic<int> g_or{0};
inline int __syncthreads_or(int p) {
    if (!g_bar) return p;
    if (p) g_or.store(1);
    g_bar->arrive_and_wait();
    int r = g_or.load();
    g_bar->arrive_and_wait();
    if (threadIdx.x == 0 && threadIdx.y == 0) g_or.store(0);
    g_bar->arrive_and_wait();
    return r;
}
double g_shfl[1024];
template <typename T> inline T __shfl_down_sync(unsigned, T v, int off) {
    const int t = threadIdx.y * blockDim.x + threadIdx.x;
    g_shfl[t] = (double)v;
    g_bar->arrive_and_wait();
    const int lane = t & 31;
    T r = (lane + off < 32 && t + off < (int)(blockDim.x * blockDim.y)) ? (T)g_shfl[t + off] : v;
    g_bar->arrive_and_wait();
    return r;
}
''' + WARP_SHIM + r'''
template <typename T> inline T __ldg(const T* p) { return *p; }
template <typename T> inline T atomicAdd(T* p, T v) { T o = *p; *p += v; return o; }
inline double __longlong_as_double(long long v) { double d; std::memcpy(&d, &v, 8); return d; }
using std::isnan; using std::log10;
inline double __hiloint2double(int hi, int lo) {
    unsigned long long b = ((unsigned long long)(unsigned)hi << 32) | (unsigned)lo; double d; std::memcpy(&d, &b, 8); return d; }
using std::floor; using std::ceil; using std::isfinite; using std::fmin; using std::fmax; using std::sin; using std::cos;
using std::sqrt; using std::exp; using std::pow; using std::min; using std::max; using std::log; using std::fabs;
'''

TAIL = r'''
template <typename E> constexpr char gpuimg_kind() {
    using U = std::remove_cv_t<E>;
    if constexpr (std::is_floating_point_v<U>) return 'f';
    else if constexpr (std::is_same_v<U, bool>) return 'b';
    else if constexpr (std::is_signed_v<U>) return 'i';
    else return 'u';
}
template <typename P> constexpr char gpuimg_param_kind() {
    if constexpr (std::is_pointer_v<P>) return gpuimg_kind<std::remove_pointer_t<P>>();
    else return gpuimg_kind<P>();
}
template <typename P> constexpr long long gpuimg_elem_size() {
    if constexpr (std::is_pointer_v<P>) return sizeof(std::remove_pointer_t<P>); else return sizeof(P);
}
template <typename... P, size_t... I>
std::tuple<P...> gpuimg_unpack(void** args, std::index_sequence<I...>) {
    return std::tuple<P...>{ *reinterpret_cast<std::remove_reference_t<P>*>(args[I])... };
}
// desc per arg: is_ptr (0/1), nbytes (scalar bytes; for pointers the element size), kind char
template <typename... P>
int gpuimg_launch(void (*f)(P...), void** args, int nargs, const long long* isptr, const long long* nbytes,
                  const char* kinds, int gx, int gy, int gz, int bx, int by, int bz, long long smem, int threaded,
                  char* err) {
    constexpr int N = sizeof...(P);
    const bool dptr[] = {std::is_pointer_v<P>...};
    const long long dsize[] = {gpuimg_elem_size<P>()...};
    const char dkind[] = {gpuimg_param_kind<P>()...};
    int bad = 0; err[0] = 0;
    if (nargs != N) { std::snprintf(err, 512, "nargs %d != declared %d", nargs, N); return 1; }
    for (int i = 0; i < N; ++i) {
        char buf[160];
        if (dptr[i] != (bool)isptr[i] || dsize[i] != nbytes[i] || dkind[i] != kinds[i]) {
            std::snprintf(buf, sizeof buf, "arg %d: declared %s%c%lld, passed %s%c%lld; ", i, dptr[i] ? "ptr " : "",
                          dkind[i], dsize[i], isptr[i] ? "ptr " : "", kinds[i], nbytes[i]);
            std::strncat(err, buf, 4000 - std::strlen(err));
            bad = 1;
        }
    }
    if (bad) return 2;
    auto tup = gpuimg_unpack<P...>(args, std::index_sequence_for<P...>{});
    blockDim = {(unsigned)bx, (unsigned)by, (unsigned)bz};
    gridDim = {(unsigned)gx, (unsigned)gy, (unsigned)gz};
    const int n = bx * by * bz;
    for (int z = 0; z < gz; ++z) for (int y = 0; y < gy; ++y) for (int x = 0; x < gx; ++x) {
        std::memset(g_smem_buf, 0xCD, smem + 64 < (1 << 20) ? smem + 64 : (1 << 20));  // garbage, as on a GPU
        if (!threaded) {
            g_bar = nullptr;
            for (int t = 0; t < n; ++t) {
                threadIdx = {(unsigned)(t % bx), (unsigned)((t / bx) % by), (unsigned)(t / (bx * by))};
                blockIdx = {(unsigned)x, (unsigned)y, (unsigned)z};
                std::apply(f, tup);
            }
            continue;
        }
        std::barrier<> bar(n);
        g_bar = &bar;
        std::vector<std::thread> threads;
        threads.reserve(n);
        for (int t = 0; t < n; ++t) threads.emplace_back([&, t]() {
            threadIdx = {(unsigned)(t % bx), (unsigned)((t / bx) % by), (unsigned)(t / (bx * by))};
            blockIdx = {(unsigned)x, (unsigned)y, (unsigned)z};
            std::apply(f, tup);
            bar.arrive_and_drop();
        });
        for (auto& th : threads) th.join();
    }
    g_bar = nullptr;
    return 0;
}
'''

_EXTERN = re.compile(r"extern\s+__shared__\s+(?:__align__\(\d+\)\s+)?([A-Za-z_ ]+?)\s+(\w+)\s*\[\s*\]\s*;")


def _prepare(src):
    return _EXTERN.sub(lambda m: f"{m.group(1)}* {m.group(2)} = reinterpret_cast<{m.group(1)}*>(g_smem_buf);", src)


_libs = {}


def family_lib(fam):
    if fam.filename in _libs:
        return _libs[fam.filename]
    src = _prepare(_kernels.source(fam.filename))
    entries = []
    for i, ne in enumerate(fam.specialisations):
        entries.append(
            f'extern "C" int entry_{i}(void** a, int n, const long long* p, const long long* s, const char* k, int gx, int gy, '
            f'int gz, int bx, int by, int bz, long long sm, int th, char* err) '
            f'{{ return gpuimg_launch(&{ne}, a, n, p, s, k, gx, gy, gz, bx, by, bz, sm, th, err); }}\n')
    code = SHIM + src + TAIL + "".join(entries)
    h = hashlib.sha1(code.encode()).hexdigest()[:12]
    so = BUILD / f"{Path(fam.filename).stem}_{h}.so"
    if not so.exists():
        cpp = BUILD / f"{Path(fam.filename).stem}_{h}.cpp"
        cpp.write_text(code)
        r = subprocess.run(["g++", "-std=c++20", "-O1", "-shared", "-fPIC", "-w", str(cpp), "-o", str(so), "-lpthread"],
                           capture_output=True, text=True)
        if r.returncode:
            raise RuntimeError(r.stderr[-4000:])
    lib = ctypes.CDLL(str(so))
    threaded = bool(re.search(r"__syncthreads|__shared__|__shfl", src))
    _libs[fam.filename] = (lib, threaded)
    return lib, threaded


MISMATCHES = []   # (name, message)
LAUNCHES = []
PY_INT_WARN = []  # Python int/float passed (CuPy converts to int64/float64)


class EmuKernel:
    def __init__(self, fam, name):
        self.fam, self.name = fam, name
        self.lib, self.threaded = family_lib(fam)
        self.fn = getattr(self.lib, f"entry_{fam.specialisations.index(name)}")
        self.max_dynamic_shared_size_bytes = 48 * 1024

    def __call__(self, grid, block, args, shared_mem=0, stream=None, enable_cooperative_groups=False):
        grid = tuple(grid) + (1,) * (3 - len(grid))
        block = tuple(block) + (1,) * (3 - len(block))
        n = len(args)
        keep, ptrs, isptr, nbytes, kinds = [], [], [], [], []
        for i, a in enumerate(args):
            if a is None:
                buf = ctypes.c_int64(0); isp, nb, kd = 1, 0, "?"
            elif isinstance(a, np.ndarray) and not getattr(a, "_host", False):
                # a device array (the fake CuPy's arrays are ndarrays): passed as its data pointer
                buf = ctypes.c_uint64(a.ctypes.data); isp, nb, kd = 1, a.dtype.itemsize, a.dtype.kind
                if kd == "c":  # a complex array read as interleaved (re, im) reals
                    nb, kd = nb // 2, "f"
                if a.ndim == 0:
                    MISMATCHES.append((self.name, f"arg {i}: 0-d device array passed (CuPy passes it as a POINTER)"))
            elif isinstance(a, (bool, np.bool_)) and not isinstance(a, np.generic) and type(a) is bool:
                v = np.int64(a); buf = ctypes.create_string_buffer(v.tobytes(), 8); isp, nb, kd = 0, 8, "i"
                PY_INT_WARN.append((self.name, i, "bool"))
            elif isinstance(a, np.generic):
                buf = ctypes.create_string_buffer(a.tobytes(), a.itemsize); isp, nb, kd = 0, a.itemsize, a.dtype.kind
            elif isinstance(a, int):
                v = np.int64(a); buf = ctypes.create_string_buffer(v.tobytes(), 8); isp, nb, kd = 0, 8, "i"
                PY_INT_WARN.append((self.name, i, "int"))
            elif isinstance(a, float):
                v = np.float64(a); buf = ctypes.create_string_buffer(v.tobytes(), 8); isp, nb, kd = 0, 8, "f"
                PY_INT_WARN.append((self.name, i, "float"))
            else:
                raise TypeError(f"{self.name}: arg {i} of unsupported type {type(a)}")
            keep.append(buf)
            ptrs.append(ctypes.cast(ctypes.pointer(buf), ctypes.c_void_p) if not isinstance(buf, ctypes.Array)
                        else ctypes.cast(buf, ctypes.c_void_p))
            isptr.append(isp); nbytes.append(nb); kinds.append(kd.encode())
        argv = (ctypes.c_void_p * max(n, 1))(*[p.value for p in ptrs])
        P = (ctypes.c_longlong * max(n, 1))(*isptr)
        S = (ctypes.c_longlong * max(n, 1))(*nbytes)
        K = ctypes.create_string_buffer(b"".join(kinds) + b"\0", n + 1)
        err = ctypes.create_string_buffer(4096)
        if shared_mem > 48 * 1024 and shared_mem > self.max_dynamic_shared_size_bytes:
            MISMATCHES.append((self.name, f"dynamic shared {shared_mem} > limit {self.max_dynamic_shared_size_bytes}"))
        nthreads = block[0] * block[1] * block[2]
        if nthreads > 1024:
            MISMATCHES.append((self.name, f"block of {nthreads} threads"))
        if grid[1] > 65535 or grid[2] > 65535 or grid[0] > 2**31 - 1:
            MISMATCHES.append((self.name, f"grid {grid} exceeds limits"))
        LAUNCHES.append(self.name)
        with _LAUNCH_LOCK:
          rc = self.fn(argv, n, P, S, K, *map(int, grid), *map(int, block), ctypes.c_longlong(int(shared_mem)),
                       int(self.threaded), err)
        if rc:
            MISMATCHES.append((self.name, err.value.decode()))
            raise RuntimeError(f"{self.name}: {err.value.decode()}")


def install(monkeypatch_get=True):
    """Make every KernelFamily.get return an emulated kernel."""
    _kernels.KernelFamily.get = lambda self, name: EmuKernel(self, name) if name in self.specialisations else (_ for _ in ()).throw(KeyError(name))
