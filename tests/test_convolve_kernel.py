"""The CUDA twins of ``correlate_direct`` and ``correlate1d`` (``kernels/convolve.cu``) on the CPU.

The kernel source is compiled as C++20 with a small shim (one std::thread per CUDA thread,
std::barrier for ``__syncthreads``, a host buffer for shared memory) and launched through the
real CuPy-twin wrapper, whose kernel arguments are checked for the exact types a CUDA launch
needs. Results are compared with ``scipy.ndimage.correlate`` for the unrolled 3 x 3 / 5 x 5
tiles (blocks inside the image and at every border), the general tiles (odd and even, 2-D and
3-D kernels, shifted centres), the gather kernel and the 1-D pass along every axis, in every
boundary mode.
"""

import ctypes
import re
import types

import numpy as np
import pytest
import scipy.ndimage as ndi

import gpuimg._prims.convolve as cv
from gpuimg import _kernels

from _cuda_emulation import THREADED_SHIM, compile_emulated

_LAUNCH = r"""
#define GPUIMG_ARGS(T) const T* x, const T* w, T* out, long long items, long long depth, long long h, \
    long long wd, int kd, int kh, int kw, int cz, int cy, int cx, T cval, int gx, int gy, int gz, int bx, \
    int by, long long smem
#define GPUIMG_PASS x, w, out, items, depth, h, wd, kd, kh, kw, cz, cy, cx, cval
#define GPUIMG_ENTRY(T, NAME, KERNEL) extern "C" void NAME(GPUIMG_ARGS(T)) { \
    run_grid([=]() { KERNEL(GPUIMG_PASS); }, gx, gy, gz, bx, by, smem); }
"""


def _entries():
    out = []
    for t in ("float", "double"):
        for m in cv._MODES:
            out.append(f"GPUIMG_ENTRY({t}, tiled_{t}_{m}, (correlate_tiled<{t}, {m}>))\n")
            out.append(f"GPUIMG_ENTRY({t}, gather_{t}_{m}, (correlate_gather<{t}, {m}>))\n")
            out.append(f'extern "C" void axis_{t}_{m}(const {t}* x, const {t}* w, {t}* out, long long outer, '
                       f"long long n, long long inner, int taps, int center, {t} cval, int in_shared, int block, "
                       f"long long smem) {{ run_grid([=]() {{ correlate1d_axis<{t}, {m}>(x, w, out, outer, n, inner, "
                       f"taps, center, cval, in_shared); }}, 1, 1, 1, block, 1, smem); }}\n")
            for k in cv._FIXED_K:
                out.append(f"GPUIMG_ENTRY({t}, tk_{t}_{m}_{k}, (correlate_tiled_k<{t}, {m}, {k}>))\n")
    return "".join(out)


@pytest.fixture(scope="module")
def emulated(tmp_path_factory):
    src = _kernels.source("convolve.cu")
    for name in ("conv1d_smem", "conv2d_smem", "convk_smem"):
        src = src.replace(f"extern __shared__ __align__(16) unsigned char {name}[];",
                          f"unsigned char* {name} = g_smem;")
    return compile_emulated(tmp_path_factory.mktemp("convolve_kernel"), "cv", THREADED_SHIM + src + _LAUNCH + _entries())


class _EmulatedAxisKernel:
    """The 1-D pass: one block of a few threads walks the grid-stride loop."""

    def __init__(self, lib, name):
        t, mode = re.fullmatch(r"correlate1d_axis<(float|double), (\d)>", name).groups()
        self.fn = getattr(lib, f"axis_{t}_{mode}")
        self.dtype = np.float32 if t == "float" else np.float64
        real = ctypes.c_float if t == "float" else ctypes.c_double
        self.fn.argtypes = ([ctypes.c_void_p] * 3 + [ctypes.c_longlong] * 3 + [ctypes.c_int] * 2 + [real]
                            + [ctypes.c_int] * 2 + [ctypes.c_longlong])

    def __call__(self, grid, block, args, shared_mem=0):
        assert all(a.dtype == self.dtype and a.flags.c_contiguous for a in args[:3])
        assert all(type(v) is np.int64 for v in args[3:6]) and all(type(v) is np.int32 for v in args[6:8])
        assert type(args[8]) is self.dtype and type(args[9]) is np.int32
        _EmulatedKernel.calls.append("correlate1d_axis")
        self.fn(*(a.ctypes.data_as(ctypes.c_void_p) for a in args[:3]), *(int(v) for v in args[3:8]),
                float(args[8]), int(args[9]), 4, int(shared_mem))


class _EmulatedKernel:
    """Stands in for the compiled RawKernel; checks argument types like a CUDA launch needs."""

    calls: list = []

    def __init__(self, lib, name):
        m = re.fullmatch(r"(correlate_tiled|correlate_gather|correlate_tiled_k)<(float|double), (\d)(?:, (\d))?>", name)
        kind, t, mode, k = m.groups()
        short = {"correlate_tiled": "tiled", "correlate_gather": "gather", "correlate_tiled_k": "tk"}[kind]
        self.kind = kind
        self.fn = getattr(lib, f"{short}_{t}_{mode}" + (f"_{k}" if k else ""))
        self.dtype = np.float32 if t == "float" else np.float64
        real = ctypes.c_float if t == "float" else ctypes.c_double
        self.fn.argtypes = ([ctypes.c_void_p] * 3 + [ctypes.c_longlong] * 4 + [ctypes.c_int] * 6 + [real]
                            + [ctypes.c_int] * 5 + [ctypes.c_longlong])

    def __call__(self, grid, block, args, shared_mem=0):
        assert len(args) == 14
        assert all(a.dtype == self.dtype and a.flags.c_contiguous for a in args[:3])
        assert all(type(v) is np.int64 for v in args[3:7]) and all(type(v) is np.int32 for v in args[7:13])
        assert type(args[13]) is self.dtype
        _EmulatedKernel.calls.append(self.kind)
        if self.kind == "correlate_gather":
            g, b = (1, 1, 1), (1, 1)  # one host thread walks the grid-stride loop
        else:
            assert block == (32, 8, 1) and shared_mem <= 48 * 1024
            g, b = tuple(grid), block[:2]
        self.fn(*(a.ctypes.data_as(ctypes.c_void_p) for a in args[:3]), *(int(v) for v in args[3:13]),
                float(args[13]), *g, *b, int(shared_mem))


@pytest.fixture
def correlate(emulated, monkeypatch):
    monkeypatch.setattr(cv._FAMILY, "get", lambda name: (_EmulatedAxisKernel if name.startswith("correlate1d_axis")
                                                        else _EmulatedKernel)(emulated, name))
    host_be = types.SimpleNamespace(xp=np)
    _EmulatedKernel.calls.clear()
    return lambda x, w, mode, cval, centers: cv._correlate_direct_cupy(host_be, x, w, mode, cval, centers)


@pytest.fixture
def correlate1d(correlate):
    host_be = types.SimpleNamespace(xp=np)
    return lambda x, w, axis, mode, cval, center: cv._correlate1d_cupy(host_be, x, w, axis, mode, cval, center)


MODES = ["reflect", "mirror", "nearest", "constant", "wrap", "grid-wrap", "grid-constant"]


def _reference(x, w, mode, cval, centers):
    origin = [int(c) - s // 2 for c, s in zip(centers, w.shape)]
    axes = tuple(range(x.ndim - w.ndim, x.ndim))
    return ndi.correlate(x, w, mode=mode, cval=cval, origin=origin, axes=axes)


@pytest.mark.parametrize("mode", MODES)
def test_kernel_unrolled_tiles_match_scipy(correlate, rng, mode):
    x = rng.standard_normal((2, 70, 75))
    for k in (3, 5):
        w = rng.standard_normal((k, k))
        for dtype, atol in ((np.float64, 1e-12), (np.float32, 2e-5)):
            got = correlate(x.astype(dtype), w, mode, 0.4, (k // 2, k // 2))
            np.testing.assert_allclose(got, _reference(x, w, mode, 0.4, (k // 2, k // 2)), rtol=0, atol=atol)
    assert set(_EmulatedKernel.calls) == {"correlate_tiled_k"}


@pytest.mark.parametrize("mode", MODES)
def test_kernel_general_tiles_and_gather_match_scipy(correlate, monkeypatch, rng, mode):
    x = rng.standard_normal((2, 37, 41))
    cases = [(rng.standard_normal((4, 6)), (1, 4)), (rng.standard_normal((3, 3)), (0, 2)),
             (rng.standard_normal((7, 2)), (3, 1)), (rng.standard_normal((3, 3, 2)), (1, 1, 0))]
    for w, centers in cases:
        ref = _reference(x, w, mode, -0.3, centers)
        np.testing.assert_allclose(correlate(x, w, mode, -0.3, centers), ref, rtol=0, atol=1e-12)
    monkeypatch.setattr(cv, "GATHER_MAX_TAPS", 100)
    for w, centers in cases:
        ref = _reference(x, w, mode, -0.3, centers)
        np.testing.assert_allclose(correlate(x, w, mode, -0.3, centers), ref, rtol=0, atol=1e-12)
    assert {"correlate_tiled", "correlate_gather"} <= set(_EmulatedKernel.calls)


@pytest.mark.parametrize("mode", MODES)
def test_kernel_1d_pass_matches_scipy(correlate1d, rng, mode):
    x = rng.standard_normal((3, 17, 23))
    for taps, center in ((5, 2), (4, 1), (9, 6), (1, 0)):
        w = rng.standard_normal(taps)
        for axis in (0, 1, 2):
            ref = ndi.correlate1d(x, w, axis=axis, mode=mode, cval=0.7, origin=center - taps // 2)
            got = correlate1d(x, w, axis, mode, 0.7, center)
            np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12, err_msg=f"taps {taps} axis {axis}")
    got = correlate1d(x.astype(np.float32), w, 1, mode, 0.7, center)
    np.testing.assert_allclose(got, ndi.correlate1d(x, w, axis=1, mode=mode, cval=0.7, origin=center - taps // 2),
                               rtol=0, atol=2e-5)
    assert set(_EmulatedKernel.calls) == {"correlate1d_axis"}
