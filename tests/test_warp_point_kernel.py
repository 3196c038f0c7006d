"""The CUDA twin of ``sample_points`` (``kernels/warp_point.cu``) executed on the CPU.

The kernel source is compiled as C++20 with a small shim (one host thread walks the kernel's
grid-stride loop) and launched through the real CuPy-twin wrapper, whose kernel arguments are
checked for the exact types a CUDA launch needs. Results are compared with ``cv2.remap`` (every
interpolation and border) and with ``scipy.ndimage`` (linear and nearest, maps stored as
float32 and as float64, and the affine-matrix path).
"""

import ctypes
import re
import types

import numpy as np
import pytest
from _cuda_emulation import SERIAL_SHIM, EmulatedKernel, compile_emulated, real

import gpuimg._prims.warp as wp
from gpuimg import _kernels

cv2 = pytest.importorskip("cv2")
ndi = pytest.importorskip("scipy.ndimage")


_TYPES = ("float", "double")
_COMBOS = [(t, i, m, mt) for t in _TYPES for i in wp.INTERPOLATIONS.values() for m in sorted(set(wp.TAP_MODE.values()))
           for mt in _TYPES]


def _entry(t, i, m, mt):
    return (f'extern "C" void wp_{t}_{i}_{m}_{mt}(const {t}* src, {t}* dst, const double* mat, const {mt}* mx, '
            f"const {mt}* my, int use_maps, long long nimg, long long h, long long w, long long ho, long long wo, "
            f"{t} cval, int outside) {{ warp_point<{t}, {i}, {m}, {mt}>(src, dst, mat, mx, my, use_maps, nimg, h, w, "
            f"ho, wo, cval, outside); }}\n")


@pytest.fixture(scope="module")
def emulated(tmp_path_factory):
    return compile_emulated(tmp_path_factory.mktemp("warp_point_kernel"), "wp",
                            SERIAL_SHIM + _kernels.source("warp_point.cu") + "".join(_entry(*c) for c in _COMBOS))


def _kernel(lib, name):
    t, i, m, mt = re.fullmatch(r"warp_point<(float|double), (\d), (\d), (float|double)>", name).groups()
    T = np.dtype(np.float32 if t == "float" else np.float64)
    M = np.dtype(np.float32 if mt == "float" else np.float64)
    return EmulatedKernel(getattr(lib, f"wp_{t}_{i}_{m}_{mt}"),
                          [T, T, np.dtype(np.float64), M, M, ctypes.c_int] + [ctypes.c_longlong] * 5
                          + [real(T), ctypes.c_int], name=name)


@pytest.fixture
def sample(emulated, monkeypatch):
    """``sample_points``' CUDA twin on NumPy arrays, through the emulated kernel."""
    monkeypatch.setattr(wp._POINT, "get", lambda name: _kernel(emulated, name))
    host_be = types.SimpleNamespace(xp=np)
    return lambda x, shape, matrix=None, mx=None, my=None, **kw: wp._sample_points_cupy(
        host_be, x, shape, matrix, mx, my, **kw)


BORDERS = {"grid-constant": cv2.BORDER_CONSTANT, "nearest": cv2.BORDER_REPLICATE, "reflect": cv2.BORDER_REFLECT,
           "mirror": cv2.BORDER_REFLECT_101, "wrap": cv2.BORDER_WRAP}
FLAGS = {"nearest": cv2.INTER_NEAREST, "linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC,
         "lanczos4": cv2.INTER_LANCZOS4}


def _smooth(shape, rng):
    h, w = shape
    yy, xx = np.mgrid[:h, :w]
    out = np.full(shape, 0.5)
    for _ in range(3):
        fy, fx = rng.uniform(0.05, 0.25, 2)
        out += 0.15 * np.sin(fx * xx + rng.uniform(0, 6)) * np.cos(fy * yy + rng.uniform(0, 6))
    return out


def _maps(shape, rng):
    h, w = shape
    yy, xx = np.mgrid[:h, :w].astype(np.float64)
    mx = 0.93 * xx + 3.0 * np.sin(yy / 9.0 + rng.uniform()) + 2.0
    my = 1.07 * yy - 2.0 + 2.0 * np.cos(xx / 11.0 + rng.uniform())
    return mx, my


@pytest.mark.parametrize("mode", sorted(BORDERS))
@pytest.mark.parametrize("interpolation", sorted(FLAGS))
def test_kernel_remap_matches_opencv(sample, rng, mode, interpolation):
    img = _smooth((53, 71), rng).astype(np.float32)
    mx, my = (m.astype(np.float32) for m in _maps((47, 66), rng))
    ref = cv2.remap(img, mx, my, FLAGS[interpolation], borderMode=BORDERS[mode], borderValue=0.3)
    got = sample(np.stack([img, img]), (47, 66), None, mx, my, interpolation=interpolation, mode=mode, cval=0.3)
    assert got.shape == (2, 47, 66) and got.dtype == np.float32
    for g in got:
        diff = np.abs(g - ref)
        if interpolation == "nearest":
            assert (diff > 1e-6).mean() < 0.01  # OpenCV's 1/32-pixel rounding moves exact ties
        else:
            assert diff.mean() <= 2e-3 and diff.max() <= 0.03


@pytest.mark.parametrize("mode", ["constant", "grid-constant", "nearest", "reflect", "mirror"])
@pytest.mark.parametrize("map_dtype", [np.float32, np.float64])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernel_linear_remap_matches_scipy(sample, rng, mode, map_dtype, dtype):
    img = rng.random((40, 57))
    mx, my = (m.astype(map_dtype) for m in _maps((45, 50), rng))
    ref = ndi.map_coordinates(img, [my.astype(np.float64), mx.astype(np.float64)], order=1, mode=mode, cval=0.3)
    got = sample(img.astype(dtype)[None], (45, 50), None, mx, my, interpolation="linear", mode=mode, cval=0.3)
    np.testing.assert_allclose(got[0], ref, rtol=0, atol=1e-12 if dtype == np.float64 else 2e-6)


@pytest.mark.parametrize("mode", ["constant", "grid-constant", "nearest", "reflect", "mirror"])
@pytest.mark.parametrize("order", [0, 1])
def test_kernel_affine_matches_scipy(sample, rng, mode, order):
    img = rng.random((40, 57))
    m = np.array([[0.9, 0.3, 5.3], [-0.25, 1.1, -3.1], [0, 0, 1]])
    inv = np.linalg.inv(m)
    ref = ndi.affine_transform(img, inv[:2, :2][::-1, ::-1], offset=inv[:2, 2][::-1], order=order, mode=mode,
                               cval=0.3, output_shape=(45, 50))
    got = sample(img[None], (45, 50), inv, interpolation=["nearest", "linear"][order], mode=mode, cval=0.3)
    np.testing.assert_allclose(got[0], ref, rtol=0, atol=1e-12)


def test_kernel_non_finite_positions_give_cval(sample):
    img = np.arange(12.0).reshape(3, 4)
    mx = np.array([[0.5, np.nan], [np.inf, 1.0]], np.float32)
    my = np.array([[0.5, 1.0], [1.0, -np.inf]], np.float32)
    for interpolation in FLAGS:
        got = sample(img[None], (2, 2), None, mx, my, interpolation=interpolation, mode="nearest", cval=-7.0)[0]
        assert got[0, 1] == got[1, 0] == got[1, 1] == -7.0 and np.isfinite(got[0, 0])
