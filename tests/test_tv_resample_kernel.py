"""The CUDA twins of the FGP total-variation steps (``kernels/tv.cu``) and of
``resample_axis`` (``kernels/resample.cu``) executed on the CPU.

Both sources run through the serial emulation shim and the real CuPy-twin wrappers. The TV
steps are compared with their definitions written out here (forward differences with Neumann
boundary, ``div = -grad^T``; Beck & Teboulle 2009), the resampling with a dense matrix product
of the tap table.
"""

import ctypes
import re
import types

import numpy as np
import pytest

import gpuimg._prims.resample as rs
import gpuimg._prims.restoration as rp
from gpuimg import _kernels

from _cuda_emulation import SERIAL_SHIM, EmulatedKernel, compile_emulated, kernel_dtype, real

_TYPES = ("float", "double")


def _entries():
    out = []
    for t in _TYPES:
        out.append(f'extern "C" void primal_{t}(const {t}* v, const {t}* p, {t}* x, long long n, long long h, '
                   f"long long w, {t} wt, {t} lo, {t} hi) {{ tv_primal<{t}>(v, p, x, n, h, w, wt, lo, hi); }}\n")
        for iso in (0, 1):
            out.append(f'extern "C" void dual_{t}_{iso}(const {t}* x, {t}* p, {t}* r, long long n, long long h, '
                       f"long long w, {t} step, {t} mom) {{ tv_dual<{t}, {iso}>(x, p, r, n, h, w, step, mom); }}\n")
        out.append(f'extern "C" void resample_{t}(const {t}* x, const long long* idx, const {t}* w, {t}* out, '
                   f"long long outer, long long n_in, long long n_out, long long inner, int taps) {{ "
                   f"resample_axis<{t}>(x, idx, w, out, outer, n_in, n_out, inner, taps); }}\n")
    return "".join(out)


@pytest.fixture(scope="module")
def emulated(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tv_resample_kernel")
    entries = _entries().splitlines(keepends=True)
    tv = "".join(e for e in entries if "resample_" not in e)
    res = "".join(e for e in entries if "resample_" in e)
    return {"tv": compile_emulated(folder, "tv", SERIAL_SHIM + _kernels.source("tv.cu") + tv),
            "resample": compile_emulated(folder, "rs", SERIAL_SHIM + _kernels.source("resample.cu") + res)}


def _lookup(libs, name):
    lib = libs["resample" if name.startswith("resample") else "tv"]
    t = re.search(r"<(float|double)", name).group(1)
    T = np.dtype(kernel_dtype(name))
    ll = ctypes.c_longlong
    if name.startswith("tv_primal"):
        return EmulatedKernel(getattr(lib, f"primal_{t}"), [T] * 3 + [ll] * 3 + [real(T)] * 3, name=name)
    if name.startswith("tv_dual"):
        iso = re.search(r", (\d)>", name).group(1)
        return EmulatedKernel(getattr(lib, f"dual_{t}_{iso}"), [T] * 3 + [ll] * 3 + [real(T)] * 2, name=name)
    return EmulatedKernel(getattr(lib, f"resample_{t}"), [T, np.dtype(np.int64), T, T] + [ll] * 4 + [ctypes.c_int],
                          name=name)


@pytest.fixture
def cuda(emulated, monkeypatch):
    for fam in (rp._TV, rs._FAMILY):
        monkeypatch.setattr(fam, "get", lambda name: _lookup(emulated, name))
    return types.SimpleNamespace(xp=np)


def _grad(x):
    g = np.zeros((2,) + x.shape)
    g[0, ..., :-1, :] = x[..., 1:, :] - x[..., :-1, :]
    g[1, ..., :, :-1] = x[..., :, 1:] - x[..., :, :-1]
    return g


def _div(p):
    # div = -grad^T, written from the adjoint of _grad
    d = np.zeros(p.shape[1:])
    d[..., :-1, :] += p[0, ..., :-1, :]
    d[..., 1:, :] -= p[0, ..., :-1, :]
    d[..., :, :-1] += p[1, ..., :, :-1]
    d[..., :, 1:] -= p[1, ..., :, :-1]
    return d


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernel_tv_steps_match_their_definitions(cuda, rng, dtype):
    tol = 2e-5 if dtype == np.float32 else 1e-12
    v = rng.standard_normal((2, 9, 13)).astype(dtype)
    p = rng.uniform(-1, 1, (2, 2, 9, 13)).astype(dtype)
    # the divergence is the negative adjoint of the gradient
    assert abs(np.vdot(_grad(v.astype(float)), p.astype(float)) + np.vdot(v.astype(float), _div(p.astype(float)))) < 1e-9
    x = rp._tv_primal_cupy(cuda, v, p, 0.3, -0.5, 0.8)
    np.testing.assert_allclose(x, np.clip(v + 0.3 * _div(p.astype(float)), -0.5, 0.8), rtol=0, atol=tol)
    for iso in (True, False):
        pp, r = p.copy(), (p * 0.5).copy()
        q = r.astype(float) + 0.125 * _grad(x.astype(float))
        if iso:
            q /= np.maximum(1.0, np.sqrt(q[0] ** 2 + q[1] ** 2))
        else:
            q = np.clip(q, -1, 1)
        new_p, new_r = rp._tv_dual_cupy(cuda, x, pp, r, 0.125, 0.4, iso)
        np.testing.assert_allclose(new_p, q, rtol=0, atol=tol)
        np.testing.assert_allclose(new_r, q + 0.4 * (q - p), rtol=0, atol=tol)


@pytest.mark.parametrize("axis", [-2, -1])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernel_resample_matches_dense_product(cuda, rng, axis, dtype):
    x = rng.standard_normal((3, 11, 14)).astype(dtype)
    n_in = x.shape[axis]
    idx = rng.integers(0, n_in, (6, 4))
    w = rng.standard_normal((6, 4))
    w[1, 2] = 0.0
    x[0, 5, 5] = np.nan  # read only by outputs whose taps hold it with non-zero weight
    dense = np.zeros((6, n_in))
    for k in range(6):
        for t in range(4):
            dense[k, idx[k, t]] += w[k, t]
    got = rs._resample_axis_cupy(cuda, x, idx, w, axis)
    x64 = np.nan_to_num(x.astype(float))
    ref = np.einsum("kn,bnw->bkw", dense, x64) if axis == -2 else np.einsum("kn,bhn->bhk", dense, x64)
    hit = np.zeros(ref.shape, bool)
    reads = (idx == 5) & (w != 0)
    if axis == -2:
        hit[0, reads.any(axis=1), 5] = True
    else:
        hit[0, 5, reads.any(axis=1)] = True
    np.testing.assert_allclose(got[~hit], ref[~hit], rtol=0, atol=2e-5 if dtype == np.float32 else 1e-12)
    assert np.isnan(got[hit]).all()
