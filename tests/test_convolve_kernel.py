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

from _cuda_emulation import THREADED_SHIM, EmulatedKernel, compile_emulated, kernel_dtype, real

_LAUNCH = r"""
#define GPUIMG_ARGS(T) const T* x, const T* w, T* out, long long items, long long depth, long long h, \
    long long wd, int kd, int kh, int kw, int cz, int cy, int cx, T cval, int flip, int gx, int gy, int gz, \
    int bx, int by, long long smem
#define GPUIMG_PASS x, w, out, items, depth, h, wd, kd, kh, kw, cz, cy, cx, cval, flip
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
            out.append(f'extern "C" void rows_{t}_{m}(const {t}* x, const {t}* w, {t}* out, long long lines, '
                       f"long long n, int taps, int center, {t} cval, int gx, int gy, int gz, int bx, int by, "
                       f"long long smem) {{ run_grid([=]() {{ correlate1d_rows<{t}, {m}>(x, w, out, lines, n, taps, "
                       f"center, cval); }}, gx, gy, gz, bx, by, smem); }}\n")
            out.append(f'extern "C" void cols_{t}_{m}(const {t}* x, const {t}* w, {t}* out, long long outer, '
                       f"long long n, long long inner, int taps, int center, {t} cval, int gx, int gy, int gz, "
                       f"int bx, int by, long long smem) {{ run_grid([=]() {{ correlate1d_cols<{t}, {m}>(x, w, out, "
                       f"outer, n, inner, taps, center, cval); }}, gx, gy, gz, bx, by, smem); }}\n")
            for k in cv._FIXED_K:
                out.append(f"GPUIMG_ENTRY({t}, tk_{t}_{m}_{k}, (correlate_tiled_k<{t}, {m}, {k}>))\n")
    return "".join(out)


@pytest.fixture(scope="module")
def emulated(tmp_path_factory):
    src = _kernels.source("convolve.cu")
    for name in ("conv1d_smem", "conv1r_smem", "conv1c_smem", "conv2d_smem", "convk_smem"):
        src = src.replace(f"extern __shared__ __align__(16) unsigned char {name}[];",
                          f"unsigned char* {name} = g_smem;")
    return compile_emulated(tmp_path_factory.mktemp("convolve_kernel"), "cv", THREADED_SHIM + src + _LAUNCH + _entries())


def _kernel(lib, name):
    T = np.dtype(kernel_dtype(name))
    ll, i32 = ctypes.c_longlong, ctypes.c_int
    if name.startswith("correlate1d_axis"):
        t, mode = re.fullmatch(r"correlate1d_axis<(float|double), (\d)>", name).groups()
        # one block of four threads walks the grid-stride loop
        return EmulatedKernel(getattr(lib, f"axis_{t}_{mode}"), [T] * 3 + [ll] * 3 + [i32] * 2 + [real(T), i32],
                              launch=lambda grid, block, smem: (4, smem), launch_types=[i32, ll],
                              name="correlate1d_axis")
    if name.startswith(("correlate1d_rows", "correlate1d_cols")):
        kind, t, mode = re.fullmatch(r"(correlate1d_rows|correlate1d_cols)<(float|double), (\d)>", name).groups()

        def launch_tiled(grid, block, smem):
            assert block == (32, 8, 1) and smem <= 48 * 1024
            return (*grid, *block[:2], smem)

        sizes = [ll] * (2 if kind == "correlate1d_rows" else 3)
        return EmulatedKernel(getattr(lib, f"{kind[12:]}_{t}_{mode}"), [T] * 3 + sizes + [i32] * 2 + [real(T)],
                              launch=launch_tiled, launch_types=[i32] * 5 + [ll], name=kind)
    kind, t, mode, k = re.fullmatch(
        r"(correlate_tiled|correlate_gather|correlate_tiled_k)<(float|double), (\d)(?:, (\d))?>", name).groups()
    short = {"correlate_tiled": "tiled", "correlate_gather": "gather", "correlate_tiled_k": "tk"}[kind]

    def launch(grid, block, shared_mem):
        if kind == "correlate_gather":
            return 1, 1, 1, 1, 1, shared_mem  # one host thread walks the grid-stride loop
        assert block == (32, 8, 1) and shared_mem <= 48 * 1024
        return (*grid, *block[:2], shared_mem)

    return EmulatedKernel(getattr(lib, f"{short}_{t}_{mode}" + (f"_{k}" if k else "")),
                          [T] * 3 + [ll] * 4 + [i32] * 6 + [real(T), i32], launch=launch,
                          launch_types=[i32] * 5 + [ll], name=kind)


@pytest.fixture
def correlate(emulated, monkeypatch):
    monkeypatch.setattr(cv._FAMILY, "get", lambda name: _kernel(emulated, name))
    host_be = types.SimpleNamespace(xp=np)
    EmulatedKernel.calls.clear()
    return lambda x, w, mode, cval, centers, flip=False: cv._correlate_direct_cupy(host_be, x, w, mode, cval,
                                                                                   centers, flip)


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
    assert set(EmulatedKernel.calls) == {"correlate_tiled_k"}


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
    assert {"correlate_tiled", "correlate_gather"} <= set(EmulatedKernel.calls)


@pytest.mark.parametrize("mode", ["reflect", "constant", "wrap"])
def test_kernel_flipped_weights_equal_scipy_convolve(correlate, monkeypatch, rng, mode):
    """``flip`` reads the weights reversed: with SciPy's convolution centres that is
    ``scipy.ndimage.convolve`` (unrolled, general and gather kernels)."""
    x = rng.standard_normal((2, 37, 41))
    for w in (rng.standard_normal((3, 3)), rng.standard_normal((5, 5)), rng.standard_normal((4, 6)),
              rng.standard_normal((3, 2, 2))):
        centers = tuple((n - 1) // 2 for n in w.shape)
        axes = tuple(range(x.ndim - w.ndim, x.ndim))
        ref = ndi.convolve(x, w, mode=mode, cval=0.2, axes=axes)
        np.testing.assert_allclose(correlate(x, w, mode, 0.2, centers, flip=True), ref, rtol=0, atol=1e-12)
        monkeypatch.setattr(cv, "GATHER_MAX_TAPS", 100)
        np.testing.assert_allclose(correlate(x, w, mode, 0.2, centers, flip=True), ref, rtol=0, atol=1e-12)
        monkeypatch.setattr(cv, "GATHER_MAX_TAPS", 0)
    assert {"correlate_tiled", "correlate_tiled_k", "correlate_gather"} <= set(EmulatedKernel.calls)


@pytest.mark.parametrize("mode", MODES)
def test_kernel_1d_pass_matches_scipy(correlate1d, rng, mode):
    # (3, 17, 23): the last axis through correlate1d_rows, the first through correlate1d_cols
    # (inner 391), the middle through correlate1d_axis (inner 23); the larger arrays reach the
    # tiles that lie inside the image, and several blocks along each axis
    cases = [(rng.standard_normal((3, 17, 23)), (0, 1, 2)), (rng.standard_normal((9, 300)), (1,)),
             (rng.standard_normal((150, 40)), (0,))]
    for x, axes in cases:
        for taps, center in ((5, 2), (4, 1), (9, 6), (1, 0), (41, 20), (34, 30)):
            w = rng.standard_normal(taps)
            for axis in axes:
                ref = ndi.correlate1d(x, w, axis=axis, mode=mode, cval=0.7, origin=center - taps // 2)
                got = correlate1d(x, w, axis, mode, 0.7, center)
                np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12, err_msg=f"taps {taps} axis {axis} {x.shape}")
    x = cases[0][0]
    for axis in (0, 1, 2):
        got = correlate1d(x.astype(np.float32), w, axis, mode, 0.7, center)
        np.testing.assert_allclose(got, ndi.correlate1d(x, w, axis=axis, mode=mode, cval=0.7,
                                                        origin=center - taps // 2), rtol=0, atol=2e-5)
    assert set(EmulatedKernel.calls) == {"correlate1d_axis", "correlate1d_rows", "correlate1d_cols"}
