"""The CUDA twins of ``bspline_adjoint`` (``kernels/bspline_adjoint.cu``) and ``boundary_take``
(``kernels/boundary_take.cu``) executed on the CPU.

Both run through the serial emulation shim (``atomicAdd`` as a plain add: one host thread) and
the real CuPy-twin wrappers. The adjoint is compared with ``B_y^T g B_x`` built from
``scipy.interpolate.BSpline.design_matrix``, the boundary gather with ``numpy.pad`` for every
mode, on several lines and far outside the array.
"""

import ctypes
import re
import types

import numpy as np
import pytest
import scipy.interpolate as si

import gpuimg._prims.boundary as bd
import gpuimg._prims.ffd as ffd
from gpuimg import _boundary, _kernels

from _cuda_emulation import SERIAL_SHIM, EmulatedKernel, compile_emulated, kernel_dtype, real

_ATOMIC = "template <typename T> inline T atomicAdd(T* p, T v) { T old = *p; *p += v; return old; }\n"


@pytest.fixture(scope="module")
def emulated(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ffd_boundary_kernel")
    adj = "".join(
        f'extern "C" void adj_{t}(const {t}* g, {t}* out, long long c, long long h, long long w, long long ky, '
        f"long long kx, {t} sy, {t} sx) {{ bspline_adjoint<{t}>(g, out, c, h, w, ky, kx, sy, sx); }}\n"
        for t in ("float", "double"))
    take = "".join(
        f'extern "C" void take_{t}_{m}(const {t}* x, const long long* idx, {t}* out, long long lines, long long n, '
        f"long long m, {t} cval) {{ boundary_take<{t}, {m}>(x, idx, out, lines, n, m, cval); }}\n"
        for t in ("float", "double") for m in sorted(set(_boundary.MODE_CODES.values())))
    return {"adj": compile_emulated(folder, "adj", SERIAL_SHIM + _ATOMIC + _kernels.source("bspline_adjoint.cu") + adj),
            "take": compile_emulated(folder, "take", SERIAL_SHIM + _kernels.source("boundary_take.cu") + take)}


@pytest.fixture
def cuda(emulated, monkeypatch):
    def adj(name):
        t = re.fullmatch(r"bspline_adjoint<(float|double)>", name).group(1)
        T = np.dtype(kernel_dtype(name))
        return EmulatedKernel(getattr(emulated["adj"], f"adj_{t}"), [T, T] + [ctypes.c_longlong] * 5 + [real(T)] * 2,
                              name=name)

    def take(name):
        t, m = re.fullmatch(r"boundary_take<(float|double), (\d)>", name).groups()
        T = np.dtype(kernel_dtype(name))
        return EmulatedKernel(getattr(emulated["take"], f"take_{t}_{m}"),
                              [T, np.dtype(np.int64), T] + [ctypes.c_longlong] * 3 + [real(T)], name=name)

    monkeypatch.setattr(ffd._ADJOINT, "get", adj)
    monkeypatch.setattr(bd._FAMILY, "get", take)
    return types.SimpleNamespace(xp=np)


def _scipy_basis(n, k, s):
    knots = (np.arange(k + 4) - 3.0) * s
    return si.BSpline.design_matrix(np.arange(n, dtype=float), knots, 3, extrapolate=True).toarray()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernel_bspline_adjoint_matches_scipy_design_matrices(cuda, rng, dtype):
    h, w, s = 50, 37, (8.0, 6.5)
    ky, kx = int(np.floor((h - 1) / s[0])) + 4, int(np.floor((w - 1) / s[1])) + 4
    by, bx = _scipy_basis(h, ky, s[0]), _scipy_basis(w, kx, s[1])
    g = rng.standard_normal((2, h, w))
    g[0, 3, 4] = 0.0
    got = ffd._adjoint_cupy(cuda, g.astype(dtype), (ky, kx), s)
    assert got.dtype == dtype
    np.testing.assert_allclose(got, by.T @ g @ bx, rtol=0, atol=2e-4 if dtype == np.float32 else 1e-10)


@pytest.mark.parametrize("mode", sorted(_boundary.MODE_CODES))
def test_kernel_boundary_take_matches_numpy_pad(cuda, mode):
    x = np.arange(1.0, 22.0).reshape(3, 7)
    k = 17
    pm = _boundary.pad_mode(mode)
    ref = np.pad(x, ((0, 0), (k, k)), mode=pm, **({"constant_values": -7.0} if pm == "constant" else {}))
    idx = np.arange(-k, x.shape[1] + k)
    for dtype in (np.float32, np.float64):
        got = bd._take_cupy(cuda, x.astype(dtype), idx, mode, -7.0)
        np.testing.assert_array_equal(got, ref.astype(dtype))
