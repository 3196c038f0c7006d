"""The CUDA twins of the bilateral filter (``kernels/bilateral.cu``) executed on the CPU.

The tiled kernel (shared-memory tile with halo, 16 x 16 threads) runs with one std::thread per
CUDA thread and barriers; the direct kernel (large windows) walks its grid-stride loop. Both
go through the real CuPy-twin wrapper and are compared with ``cv2.bilateralFilter`` (grey and
colour, several borders), with the spatial and colour weights written from their definitions.
"""

import ctypes
import re
import types

import numpy as np
import pytest

import gpuimg._prims.bilateral as bl
from gpuimg import _kernels

from _cuda_emulation import THREADED_SHIM, EmulatedKernel, compile_emulated, kernel_dtype, real

cv2 = pytest.importorskip("cv2")

CV_BORDER = {"mirror": cv2.BORDER_REFLECT_101, "reflect": cv2.BORDER_REFLECT, "nearest": cv2.BORDER_REPLICATE,
             "wrap": cv2.BORDER_WRAP}


@pytest.fixture(scope="module")
def emulated(tmp_path_factory):
    src = _kernels.source("bilateral.cu").replace("extern __shared__ __align__(16) unsigned char bilateral_smem[];",
                                                  "unsigned char* bilateral_smem = g_smem;")
    entries = []
    for t in ("float", "double"):
        for m in sorted(set(bl.KERNEL_MODES.values())):
            for kind in ("tiled", "direct"):
                entries.append(
                    f'extern "C" void {kind}_{t}_{m}(const {t}* x, const {t}* s, {t}* o, long long b, int c, '
                    f"long long rows, long long cols, int r, {t} cc, {t} cval, int gx, int bx, int by, long long smem) "
                    f"{{ run_grid([=]() {{ bilateral_{kind}<{t}, {m}>(x, s, o, b, c, rows, cols, r, cc, cval); }}, "
                    f"gx, 1, 1, bx, by, smem); }}\n")
    return compile_emulated(tmp_path_factory.mktemp("bilateral_kernel"), "bl",
                            THREADED_SHIM + src + "".join(entries))


def _kernel(lib, name):
    kind, t, m = re.fullmatch(r"bilateral_(tiled|direct)<(float|double), (\d)>", name).groups()
    T = np.dtype(kernel_dtype(name))
    ll, i32 = ctypes.c_longlong, ctypes.c_int

    def launch(grid, block, shared_mem):
        if kind == "tiled":
            return grid[0], block[0], block[1], shared_mem
        return 1, 1, 1, shared_mem  # one host thread walks the grid-stride loop

    return EmulatedKernel(getattr(lib, f"{kind}_{t}_{m}"), [T] * 3 + [ll, i32, ll, ll, i32, real(T), real(T)],
                          launch=launch, launch_types=[i32, i32, i32, ll], name=kind)


@pytest.fixture
def bilateral(emulated, monkeypatch):
    monkeypatch.setattr(bl._FAMILY, "get", lambda name: _kernel(emulated, name))
    EmulatedKernel.calls.clear()
    host = types.SimpleNamespace(xp=np)

    def run(img, d, sigma_color, sigma_space, mode):
        x = img[None, None] if img.ndim == 2 else np.ascontiguousarray(np.moveaxis(img, -1, 0)[None])
        r = d // 2
        dy, dx = np.mgrid[-r:r + 1, -r:r + 1]
        space = np.exp((dy * dy + dx * dx) * (-0.5 / sigma_space ** 2)).astype(img.dtype)
        out = bl._bilateral_cupy(host, x, space, r, -0.5 / sigma_color ** 2, mode, 0.0)[0]
        return out[0] if img.ndim == 2 else np.moveaxis(out, 0, -1)

    return run


def _piecewise(rng, shape):
    img = np.zeros(shape, np.float32)
    img[: shape[0] // 2] = 0.3
    img[:, shape[1] // 3:] += 0.4
    return np.clip(img + 0.05 * rng.standard_normal(shape).astype(np.float32), 0, 1)


@pytest.mark.parametrize("mode", sorted(CV_BORDER))
def test_kernel_tiled_bilateral_equals_opencv(bilateral, rng, mode):
    img = _piecewise(rng, (35, 41))
    ref = cv2.bilateralFilter(img, 7, 0.3, 2.0, borderType=CV_BORDER[mode])
    np.testing.assert_allclose(bilateral(img, 7, 0.3, 2.0, mode), ref, rtol=0, atol=1e-5)
    colour = _piecewise(rng, (20, 23, 3))
    ref = cv2.bilateralFilter(colour, 5, 0.4, 1.5, borderType=CV_BORDER[mode])
    np.testing.assert_allclose(bilateral(colour, 5, 0.4, 1.5, mode), ref, rtol=0, atol=1e-5)
    assert set(EmulatedKernel.calls) == {"tiled"}


def test_kernel_direct_bilateral_equals_opencv(bilateral, rng, monkeypatch):
    monkeypatch.setattr(bl, "_SHARED_LIMIT", 0)  # the tile does not fit: one thread per pixel
    img = _piecewise(rng, (21, 25))
    ref = cv2.bilateralFilter(img, 9, 0.25, 3.0, borderType=cv2.BORDER_REFLECT_101)
    np.testing.assert_allclose(bilateral(img, 9, 0.25, 3.0, "mirror"), ref, rtol=0, atol=1e-5)
    assert set(EmulatedKernel.calls) == {"direct"}
