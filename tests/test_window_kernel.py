"""The CUDA twin of ``window_moments`` executed on the CPU.

``kernels/window_moments.cu`` is compiled as C++20 with a small shim (one std::thread per CUDA
thread, std::barrier for ``__syncthreads``, a shared array for warp shuffles) and launched
through the real CuPy-twin wrapper, whose kernel arguments are checked for the exact types a
CUDA launch needs. The results are compared with scikit-image and SciPy, so the kernels'
indexing, tiling, boundary handling and reductions are tested on machines without a GPU: the
generic ``window_moments<T, MODE>`` and every declared fixed-window kernel.
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
from gpuimg.metrics import gaussian_kernel1d

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
template <typename F>
void run_blocks(F body, int gx, int gy, int gz, long long smem) {
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
            body();
        });
        for (auto& th : threads) th.join();
    }
}
#define GPUIMG_ENTRY(T, NAME, MODE) extern "C" void NAME(const T* a, const T* b, T* out, double* partial, \
    const double* taps, long long slices, long long nz, long long ny, long long nx, int rz, int ry, int rx, \
    int tile_h, int kind, int wm, int wp, T cn, T c1, T c2, T eps, long long cz, long long cy, long long cx, \
    int gx, int gy, int gz, long long smem) { run_blocks([=]() { window_moments<T, MODE>(a, b, out, partial, \
    taps, slices, nz, ny, nx, rz, ry, rx, tile_h, kind, wm, wp, cn, c1, c2, eps, cz, cy, cx); }, gx, gy, gz, smem); }
#define GPUIMG_FIXED(T, NAME, KERNEL) extern "C" void NAME(const T* a, const T* b, T* out, double* partial, \
    const double* taps, long long slices, long long nz, long long ny, long long nx, int rz, int tiles, int mode, \
    int kind, int wm, int wp, T cn, T c1, T c2, T eps, long long cz, long long cy, long long cx, \
    int gx, int gy, int gz, long long smem) { run_blocks([=]() { KERNEL(a, b, out, \
    partial, taps, slices, nz, ny, nx, rz, tiles, mode, kind, wm, wp, cn, c1, c2, eps, cz, cy, cx); }, \
    gx, gy, gz, smem); }
"""

_CT = {"float": ctypes.c_float, "double": ctypes.c_double}
_GENERIC = re.compile(r"window_moments<(float|double), (\d)>")
_FIXED = re.compile(r"window_moments_fixed(?:_ncc)?<(float|double), (\d+)(?:, (true|false))?>")


def _entry(name):
    m = _GENERIC.fullmatch(name)
    if m:
        return "wm_{}_{}".format(*m.groups())
    return "wmf_{}_{}_{}".format(*(g or "ncc" for g in _FIXED.fullmatch(name).groups()))


@pytest.fixture(scope="module")
def emulated(tmp_path_factory):
    src = _kernels.source("window_moments.cu")
    src = src.replace("extern __shared__ double gpuimg_wm_smem[];", "double* gpuimg_wm_smem = g_smem;")
    generic = [("double", m) for m in sorted(set(window._KMODE.values()))] + [("float", 0)]
    entries = "".join(f"GPUIMG_ENTRY({t}, {_entry(f'window_moments<{t}, {m}>')}, {m})\n" for t, m in generic)
    for name in window._FAMILY.specialisations:
        m = _FIXED.fullmatch(name)
        if m:
            # the template's commas would split the macro argument: wrap it in parentheses
            entries += f"GPUIMG_FIXED({m.group(1)}, {_entry(name)}, ({name}))\n"
    return compile_emulated(tmp_path_factory.mktemp("window_kernel"), "wm", _SHIM + src + _LAUNCH + entries,
                            opt="-O1")


class _EmulatedKernel:
    """Stands in for the compiled RawKernel; checks argument types like a CUDA launch needs."""

    launched: list = []

    def __init__(self, lib, name):
        self.name = name
        fixed = _FIXED.fullmatch(name)
        t = (fixed or _GENERIC.fullmatch(name)).group(1)
        self.dtype = np.float32 if t == "float" else np.float64
        self.fn = getattr(lib, _entry(name))
        # generic: rz, ry, rx, tile_h, kind, write_map, write_partial
        # fixed:   rz, tiles, mode, kind, write_map, write_partial
        self.nint = 6 if fixed else 7
        self.fn.argtypes = ([ctypes.c_void_p] * 5 + [ctypes.c_longlong] * 4 + [ctypes.c_int] * self.nint
                            + [_CT[t]] * 4 + [ctypes.c_longlong] * 3 + [ctypes.c_int] * 3 + [ctypes.c_longlong])
        self.max_dynamic_shared_size_bytes = 0

    def __call__(self, grid, block, args, shared_mem=0):
        k = 9 + self.nint
        assert block == (32, 8, 1) and len(args) == k + 7
        for arr, dt in zip(args[:5], (self.dtype, self.dtype, self.dtype, np.float64, np.float64)):
            assert arr.dtype == dt and arr.flags.c_contiguous
        assert all(type(v) is np.int64 for v in args[5:9] + args[k + 4:])
        assert all(type(v) is np.int32 for v in args[9:k])
        assert all(type(v) is self.dtype for v in args[k:k + 4])
        assert shared_mem <= max(48 * 1024, self.max_dynamic_shared_size_bytes)
        assert all(0 < g <= limit for g, limit in zip(grid, (2**31 - 1, 65535, 65535)))
        _EmulatedKernel.launched.append(self.name)
        ptrs = [x.ctypes.data_as(ctypes.c_void_p) for x in args[:5]]
        self.fn(*ptrs, *(int(v) for v in args[5:k]), *(float(v) for v in args[k:k + 4]),
                *(int(v) for v in args[k + 4:]), *(int(g) for g in grid), int(shared_mem))


class _HostXp:
    """NumPy plus the few ``cupy.cuda`` queries the CUDA twin makes (an H100's limits)."""

    cuda = types.SimpleNamespace(
        Device=lambda: types.SimpleNamespace(id=0),
        runtime=types.SimpleNamespace(deviceGetAttribute=lambda attr, dev: {97: 232448}[attr]),
    )

    def __getattr__(self, name):
        return getattr(np, name)


@pytest.fixture
def cuda_twin_on_cpu(emulated, monkeypatch):
    """Route ``be.window_moments`` on NumPy through the CUDA twin and the emulated kernels."""
    host_be = types.SimpleNamespace(xp=_HostXp())
    monkeypatch.setattr(window._FAMILY, "get", lambda name: _EmulatedKernel(emulated, name))
    monkeypatch.setitem(_backend._PRIMITIVES["window_moments"], "numpy",
                        lambda be, *args, **kw: window._window_moments_cupy(host_be, *args, **kw))
    be = _backend.get_backend(backend="numpy")
    be._prim_cache.clear()
    _EmulatedKernel.launched.clear()
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
    assert _EmulatedKernel.launched == ["window_moments_fixed<double, 11, false>", "window_moments<double, 0>",
                                        "window_moments<double, 0>"]


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
    for win, flat_side in ((5, 8), (7, 7)):  # the generic kernel, then the 7x7 box kernel
        got = metrics.local_ncc(x, 2 * x + 5, win_size=win, mode="nearest")
        flat = np.zeros(x.shape, bool)
        flat[:flat_side, :flat_side] = True
        np.testing.assert_allclose(got[~flat], 1.0, atol=1e-9)
        assert np.all(got[flat] == 0)
    assert _EmulatedKernel.launched == ["window_moments<double, 2>", "window_moments_fixed_ncc<double, 7>"]


def test_kernel_large_window_uses_opt_in_shared_memory(cuda_twin_on_cpu, rng):
    a = rng.random((40, 45))
    b = a + rng.standard_normal(a.shape)
    ref = ndi.uniform_filter((a - b) ** 2, size=35, mode="reflect")
    np.testing.assert_allclose(metrics.local_mse(a, b, win_size=35), ref, rtol=0, atol=1e-12)
    x = rng.random((40, 45))
    got = metrics.local_ncc(x, 3 * x + 1, win_size=31)
    np.testing.assert_allclose(got, 1.0, atol=1e-9)


# --------------------------------------------------------------------------------------
# window_moments_fixed: every declared specialisation against SciPy
# --------------------------------------------------------------------------------------

def _scipy_moments(a, b, kind, taps, mode, *, cov_norm=1.0, c1=0.0, c2=0.0, eps=0.0):
    """The contract of ``window_moments`` in float64 with ``scipy.ndimage.correlate1d`` per axis."""
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    axes = range(a.ndim - len(taps), a.ndim)

    def mean(x):
        for ax, t in zip(axes, taps):
            x = ndi.correlate1d(x, t, axis=ax, mode=mode, cval=0.0)
        return x

    if kind == "mse":
        return mean((a - b) ** 2)
    ma, mb = mean(a), mean(b)
    if kind == "ncc":
        maa, mbb, mab = mean(a * a), mean(b * b), mean(a * b)
        va, vb = maa - ma * ma, mbb - mb * mb
        with np.errstate(invalid="ignore", divide="ignore"):
            r = np.clip((mab - ma * mb) / np.sqrt(va * vb), -1, 1)
        return np.where((va <= eps * maa) | (vb <= eps * mbb), 0.0, r)
    s2, sab = mean(a * a + b * b), mean(a * b)
    num = 2 * cov_norm * (sab - ma * mb) + c2
    den = cov_norm * (s2 - ma * ma - mb * mb) + c2
    if kind == "cs":
        return num / den
    return (2 * ma * mb + c1) * num / ((ma * ma + mb * mb + c1) * den)


def _taps(w, box):
    return np.full(w, 1.0 / w) if box else gaussian_kernel1d(1.5, 0, w // 2)


# (W, box) of the fixed specialisations these tests cover; every kind runs on each (NCC on
# the box ones: weighted NCC goes to the generic kernel)
_SPECS = [(7, True), (11, True), (11, False)]
_KINDS = ("ssim", "cs", "mse", "ncc")


def test_every_fixed_specialisation_is_tested():
    declared = {n for n in window._FAMILY.specialisations if _FIXED.fullmatch(n)}
    tested = {_fixed_name(t, w, box, kind) for t in ("float", "double") for w, box in _SPECS for kind in _KINDS
              if box or kind != "ncc"}
    assert declared == tested


def _fixed_name(t, w, box, kind):
    """The fixed kernel the launcher picks: NCC (box windows) has its own entry."""
    if kind == "ncc":
        return f"window_moments_fixed_ncc<{t}, {w}>"
    return f"window_moments_fixed<{t}, {w}, {'true' if box else 'false'}>"


def _inputs(rng, shape, dtype):
    a = rng.random(shape)
    b = 0.6 * a + 0.4 * rng.random(shape)  # correlated, so every formula has a spread of values
    return a.astype(dtype), b.astype(dtype)


def _tol(dtype, kind):
    if dtype == np.float64:
        return 1e-9
    return 2e-3 if kind == "ncc" else 3e-4  # float32 moments, differences of squares


@pytest.mark.parametrize("tiles", [1, 2])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("spec", _SPECS, ids=lambda s: f"{s[0]}{'box' if s[1] else 'w'}")
def test_fixed_kernel_2d_matches_scipy(cuda_twin_on_cpu, rng, monkeypatch, spec, dtype, tiles):
    # tiles of 32 x 48 (float) or 32 x 32 (double) outputs: the image has tiles whose halo lies
    # inside it (the fast load path) and tiles touching every border; tiles=2 makes a block walk
    # down two tiles, reusing the x-filtered halo rows of the tile above (the second block of a
    # column then stops after one: the image has three rows of tiles)
    w, box = spec
    monkeypatch.setattr(window, "_fixed_tiles_per_block", lambda n: tiles)
    th = window._FIXED_TH[np.dtype(dtype).itemsize]
    shape = (2 * th + 12, 100)
    a, b = _inputs(rng, shape, dtype)
    taps = _taps(w, box)
    modes = iter(["reflect", "mirror", "nearest", "constant", "wrap", "grid-wrap", "grid-constant"])
    for kind in _KINDS:
        if kind == "ncc" and not box:
            continue
        mode = next(modes)
        kw = {"c1": 1e-4, "c2": 9e-4, "cov_norm": 1.02} if kind in ("ssim", "cs") else {}
        if kind == "ncc":
            kw["eps"] = 1e-6
        _EmulatedKernel.launched.clear()
        got, means = cuda_twin_on_cpu.window_moments(a, b, kind, (taps, taps), mode, crop=w // 2, **kw)
        assert _EmulatedKernel.launched == [_fixed_name("float" if dtype == np.float32 else "double", w, box, kind)]
        assert got.dtype == dtype and got.shape == shape
        ref = _scipy_moments(a, b, kind, (taps, taps), mode, **kw)
        tol = _tol(dtype, kind)
        np.testing.assert_allclose(got, ref, rtol=0, atol=tol, err_msg=f"{kind} {mode}")
        c = w // 2
        np.testing.assert_allclose(means, ref[c:-c, c:-c].mean(), rtol=0, atol=tol / 10)


def test_asymmetric_weighted_window_goes_to_the_generic_kernel(cuda_twin_on_cpu, rng):
    # the weighted fixed kernel holds half of a symmetric window's taps: an 11-tap window that
    # is not symmetric takes the generic kernel, and still matches SciPy
    a, b = _inputs(rng, (60, 70), np.float64)
    taps = gaussian_kernel1d(1.5, 0, 5) * np.linspace(0.8, 1.2, 11)
    taps /= taps.sum()
    _EmulatedKernel.launched.clear()
    got, _ = cuda_twin_on_cpu.window_moments(a, b, "ssim", (taps, taps), "reflect", crop=5, c1=1e-4, c2=9e-4)
    assert _EmulatedKernel.launched == ["window_moments<double, 0>"]
    ref = _scipy_moments(a, b, "ssim", (taps, taps), "reflect", c1=1e-4, c2=9e-4)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-9)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("spec", _SPECS, ids=lambda s: f"{s[0]}{'box' if s[1] else 'w'}")
def test_fixed_kernel_3d_and_batch_match_scipy(cuda_twin_on_cpu, rng, monkeypatch, spec, dtype):
    # the z window runs over slices (boundary mode in z), a batch of two volumes in one launch
    w, box = spec
    monkeypatch.setattr(window, "_fixed_tiles_per_block", lambda n: 2)
    th = window._FIXED_TH[np.dtype(dtype).itemsize]
    shape = (2, 5, th + 20, 75)
    a, b = _inputs(rng, shape, dtype)
    taps = _taps(w, box)
    tz = _taps(5, False)  # z taps of another length and shape
    cases = [("ssim", "reflect"), ("mse", "wrap"), ("cs", "constant")] + ([("ncc", "nearest")] if box else [])
    for kind, mode in cases:
        kw = {"eps": 1e-6} if kind == "ncc" else {"c1": 1e-4, "c2": 9e-4}
        got, means = cuda_twin_on_cpu.window_moments(a, b, kind, (tz, taps, taps), mode, crop=2, **kw)
        ref = _scipy_moments(a, b, kind, (tz, taps, taps), mode, **kw)
        tol = _tol(dtype, kind)
        np.testing.assert_allclose(got, ref, rtol=0, atol=tol, err_msg=f"{kind} {mode}")
        np.testing.assert_allclose(means, ref[:, 2:-2, 2:-2, 2:-2].mean(axis=(1, 2, 3)), rtol=0, atol=tol / 10)
    t = "float" if dtype == np.float32 else "double"
    assert set(_EmulatedKernel.launched) == {_fixed_name(t, w, box, kind) for kind, _ in cases}


@pytest.mark.parametrize("spec", _SPECS, ids=lambda s: f"{s[0]}{'box' if s[1] else 'w'}")
def test_fixed_kernel_ssim_matches_skimage(cuda_twin_on_cpu, rng, monkeypatch, spec):
    w, box = spec
    monkeypatch.setattr(window, "_fixed_tiles_per_block", lambda n: 2)
    a, b = _inputs(rng, (77, 90), np.float64)
    kw = {"win_size": w} if box else {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False}
    ref, ref_map = sk_ssim(a, b, data_range=1.0, full=True, **kw)
    got, got_map = metrics.ssim(a, b, data_range=1.0, full=True, **kw)
    assert abs(float(got) - ref) <= 1e-10
    np.testing.assert_allclose(got_map, ref_map, rtol=0, atol=1e-10)
    # the volume version: a 3-D window with the same taps along z
    v = _inputs(rng, (w + 2, 40, 45), np.float64)
    ref3 = sk_ssim(*v, data_range=1.0, **kw)
    assert abs(float(metrics.ssim(*v, data_range=1.0, **kw)) - ref3) <= 1e-10
    assert set(_EmulatedKernel.launched) == {f"window_moments_fixed<double, {w}, {'true' if box else 'false'}>"}


def test_fixed_kernel_nan_reaches_only_its_windows(cuda_twin_on_cpu, rng):
    # the box kernel's shared partial sums never subtract: NaN and Inf stay inside the windows
    # that hold them, as in SciPy's direct correlation
    a, b = _inputs(rng, (90, 80), np.float64)
    a[40, 37] = np.nan
    b[10, 70] = np.inf
    for w, box in _SPECS:
        taps = _taps(w, box)
        got, _ = cuda_twin_on_cpu.window_moments(a, b, "mse", (taps, taps), "reflect")
        ref = _scipy_moments(a, b, "mse", (taps, taps), "reflect")
        np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
        np.testing.assert_array_equal(np.isinf(got), np.isinf(ref))
        fin = np.isfinite(ref)
        np.testing.assert_allclose(got[fin], ref[fin], rtol=0, atol=1e-12)


def test_fixed_kernel_weighted_ncc_goes_to_the_generic_kernel(cuda_twin_on_cpu, rng):
    a, b = _inputs(rng, (40, 50), np.float64)
    taps = _taps(11, False)
    got, _ = cuda_twin_on_cpu.window_moments(a, b, "ncc", (taps, taps), "reflect", eps=1e-9)
    np.testing.assert_allclose(got, _scipy_moments(a, b, "ncc", (taps, taps), "reflect", eps=1e-9), atol=1e-9)
    assert _EmulatedKernel.launched == ["window_moments<double, 0>"]


def test_opt_in_queries_the_device_once_and_raises_a_kernel_limit_only_to_grow():
    queries = []
    rt = types.SimpleNamespace(deviceGetAttribute=lambda attr, dev: queries.append((attr, dev)) or 101376)
    xp = types.SimpleNamespace(cuda=types.SimpleNamespace(Device=lambda: types.SimpleNamespace(id=3), runtime=rt))

    class Kernel:
        def __init__(self):
            self.set = []

        def __setattr__(self, name, value):
            if name == "max_dynamic_shared_size_bytes":
                self.set.append(value)
            object.__setattr__(self, name, value)

    k = Kernel()
    for smem in (60000, 60000, 50000, 70000):
        window._opt_in(xp, k, smem, "test")
    window._opt_in(xp, k, 1000, "test")  # under the default: nothing to do
    assert queries == [(97, 3)] and k.set == [60000, 70000]
    with pytest.raises(ValueError, match="win_size: a window of 41x41 needs 200000 bytes .* this device's 101376"):
        window._opt_in(xp, Kernel(), 200000, "41x41")
