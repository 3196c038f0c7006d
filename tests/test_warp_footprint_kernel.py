"""The CUDA twin of ``sample_footprint`` (``kernels/warp_footprint.cu``) executed on the CPU.

The kernel runs through the serial emulation shim and the real CuPy-twin wrapper. Axis-aligned
footprints of an integer reduction must equal ``cv2.resize(INTER_AREA)``; rotated and sheared
quads must equal the average over the quad computed by dense supersampling (point-in-polygon
on a fine grid), up to the supersampling error.
"""

import ctypes
import re
import types

import numpy as np
import pytest

import gpuimg._prims.warp as wp
from gpuimg import _kernels

from _cuda_emulation import SERIAL_SHIM, EmulatedKernel, compile_emulated, kernel_dtype, real

cv2 = pytest.importorskip("cv2")


@pytest.fixture(scope="module")
def emulated(tmp_path_factory):
    entries = "".join(
        f'extern "C" void fp_{t}_{m}(const {t}* s, {t}* d, const double* q, long long n, long long h, long long w, '
        f"long long m, {t} cval) {{ warp_footprint<{t}, {m}>(s, d, q, n, h, w, m, cval); }}\n"
        for t in ("float", "double") for m in sorted(set(wp.TAP_MODE.values())))
    return compile_emulated(tmp_path_factory.mktemp("warp_footprint_kernel"), "fp",
                            SERIAL_SHIM + _kernels.source("warp_footprint.cu") + entries)


def _kernel(lib, name):
    t, m = re.fullmatch(r"warp_footprint<(float|double), (\d)>", name).groups()
    T = np.dtype(kernel_dtype(name))
    return EmulatedKernel(getattr(lib, f"fp_{t}_{m}"), [T, T, np.dtype(np.float64)] + [ctypes.c_longlong] * 4
                          + [real(T)], name=name)


@pytest.fixture
def footprint(emulated, monkeypatch):
    monkeypatch.setattr(wp._FOOTPRINT, "get", lambda name: _kernel(emulated, name))
    be = types.SimpleNamespace(xp=np)
    return lambda x, quads, mode="constant", cval=0.0: wp._sample_footprint_cupy(be, x, quads, mode=mode, cval=cval)


def _box_quads(ho, wo, f):
    """Output pixel (i, j) covers source [f j - 1/2, f (j + 1) - 1/2] x [f i - 1/2, f (i + 1) - 1/2]."""
    i, j = np.mgrid[:ho, :wo].astype(float)
    x0, x1, y0, y1 = f * j - 0.5, f * (j + 1) - 0.5, f * i - 0.5, f * (i + 1) - 0.5
    return np.stack([np.stack([x0, y0], -1), np.stack([x1, y0], -1), np.stack([x1, y1], -1),
                     np.stack([x0, y1], -1)], axis=2)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernel_box_footprints_equal_opencv_area(footprint, rng, dtype):
    img = rng.random((24, 36)).astype(dtype)
    got = footprint(img[None], _box_quads(6, 9, 4.0), mode="reflect")[0]
    ref = cv2.resize(img, (9, 6), interpolation=cv2.INTER_AREA)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5 if dtype == np.float32 else 1e-12)


def _inside(px, py, quad):
    """Points strictly left of every edge of the counter-clockwise convex quad."""
    ok = np.ones(px.shape, bool)
    for k in range(4):
        (x0, y0), (x1, y1) = quad[k], quad[(k + 1) % 4]
        ok &= (x1 - x0) * (py - y0) - (y1 - y0) * (px - x0) > 0
    return ok


@pytest.mark.parametrize("mode", ["nearest", "mirror", "grid-constant"])
def test_kernel_rotated_footprints_equal_supersampled_average(footprint, rng, mode):
    img = rng.random((20, 22))
    padded = (np.pad(img, 8, mode="constant", constant_values=0.25) if mode == "grid-constant"
              else np.pad(img, 8, mode={"nearest": "edge", "mirror": "reflect"}[mode]))
    quads = np.empty((3, 4, 4, 2))
    for i in range(3):
        for j in range(4):
            c = np.array([3.0 + 5.3 * j, 2.5 + 6.1 * i]) + rng.uniform(-0.5, 0.5, 2)
            t = np.deg2rad(rng.uniform(0, 90))
            u = np.array([np.cos(t), np.sin(t)]) * rng.uniform(1.5, 3.0)
            v = np.array([-np.sin(t), np.cos(t)]) * rng.uniform(1.5, 3.0) + 0.3 * u  # sheared
            quads[i, j] = [c - u - v, c + u - v, c + u + v, c - u + v]
    got = footprint(img[None], quads, mode=mode, cval=0.25)[0]
    step = 1 / 64
    for i in range(3):
        for j in range(4):
            q = quads[i, j]
            xs = np.arange(q[:, 0].min(), q[:, 0].max(), step) + step / 2
            ys = np.arange(q[:, 1].min(), q[:, 1].max(), step) + step / 2
            px, py = np.meshgrid(xs, ys)
            keep = _inside(px, py, q)
            vals = padded[np.floor(py[keep] + 0.5).astype(int) + 8, np.floor(px[keep] + 0.5).astype(int) + 8]
            assert abs(got[i, j] - vals.mean()) < 5e-3, (i, j)
