"""The CUDA twins of the Richardson-Lucy steps (``kernels/richardson_lucy.cu``) on the CPU.

The kernel source is compiled as C++20 with a small shim (one host thread walks the
grid-stride loop) and launched through the real CuPy-twin wrappers on strided views like the
solver's (frames inside FFT work buffers, batches of planes), so the kernels read and write
in place. The reference is the update written out from its definition (Richardson 1972;
Dey et al. 2006 for the TV term, forward differences with Neumann boundary).
"""

import ctypes
import re
import types

import numpy as np
import pytest
from _cuda_emulation import SERIAL_SHIM, EmulatedKernel, compile_emulated, kernel_dtype, real

import gpuimg._prims.restoration as rp
from gpuimg import _kernels


def _entries():
    out = []
    for t in ("float", "double"):
        out.append(f'extern "C" void ratio_{t}(const {t}* b, const {t}* ax, {t}* o, long long n, long long h, '
                   f"long long w, long long a, long long b2, long long c, long long d, long long e, long long f, "
                   f"{t} eps) {{ rl_ratio<{t}>(b, ax, o, n, h, w, a, b2, c, d, e, f, eps); }}\n")
        out.append(f'extern "C" void update_{t}(const {t}* x, const {t}* c, const {t}* inv, {t}* o, long long n, '
                   f"long long h, long long w, long long a, long long b, long long c2, long long d, long long e, "
                   f"long long f, {t} tv, {t} eps) {{ rl_update<{t}>(x, c, inv, o, n, h, w, a, b, c2, d, e, f, tv, eps); }}\n")
    return "".join(out)


@pytest.fixture(scope="module")
def emulated(tmp_path_factory):
    return compile_emulated(tmp_path_factory.mktemp("rl_kernel"), "rl",
                            SERIAL_SHIM + _kernels.source("richardson_lucy.cu") + _entries())


def _kernel(lib, name):
    kind, t = re.fullmatch(r"rl_(ratio|update)<(float|double)>", name).groups()
    T = np.dtype(kernel_dtype(name))
    arrays, reals = (3, 1) if kind == "ratio" else (4, 2)
    return EmulatedKernel(getattr(lib, f"{kind}_{t}"), [T] * arrays + [ctypes.c_longlong] * 9 + [real(T)] * reals,
                          name=name)


@pytest.fixture
def cuda(emulated, monkeypatch):
    monkeypatch.setattr(rp._RL, "get", lambda name: _kernel(emulated, name))
    host_be = types.SimpleNamespace(xp=np)
    return types.SimpleNamespace(
        ratio=lambda b, ax, eps, out=None: rp._rl_ratio_cupy(host_be, b, ax, eps, out=out),
        update=lambda x, c, inv, tv, eps, out=None: rp._rl_update_cupy(host_be, x, c, inv, tv, eps, out=out),
    )


def _framed(rng, batch, h, w, dtype, margin=(3, 5)):
    """A (batch, h, w) view inside a larger buffer, like the solver's lifted frames."""
    buf = rng.uniform(0.2, 1.0, (batch, h + 2 * margin[0], w + 2 * margin[1])).astype(dtype)
    return buf, buf[:, margin[0]:margin[0] + h, margin[1]:margin[1] + w]


def _reference_update(x, corr, inv, tv, eps):
    x = x.astype(np.float64)
    g0 = np.zeros_like(x)
    g1 = np.zeros_like(x)
    g0[..., :-1, :] = x[..., 1:, :] - x[..., :-1, :]
    g1[..., :, :-1] = x[..., :, 1:] - x[..., :, :-1]
    s = np.sqrt(g0**2 + g1**2 + eps**2)
    u0, u1 = g0 / s, g1 / s
    div = np.zeros_like(x)
    div[..., :-1, :] += u0[..., :-1, :]
    div[..., 1:, :] -= u0[..., :-1, :]
    div[..., :, :-1] += u1[..., :, :-1]
    div[..., :, 1:] -= u1[..., :, :-1]
    return x * corr * inv / (1.0 - tv * div)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernel_ratio_in_place_on_views(cuda, rng, dtype):
    b = rng.uniform(0, 1, (3, 17, 23)).astype(dtype)
    _, ax = _framed(rng, 3, 17, 23, dtype)
    ax[0, 2, 3] = 1e-9
    buf = np.zeros((3, 20, 30), dtype)
    out = buf[:, :17, :23]
    got = cuda.ratio(b, ax, 1e-6, out=out)
    assert got is out and np.all(buf[:, 17:] == 0) and np.all(buf[:, :, 23:] == 0)
    ref = np.where(ax < 1e-6, 0, b.astype(np.float64) / ax)
    np.testing.assert_allclose(out, ref, rtol=1e-6 if dtype == np.float32 else 1e-15)
    assert out[0, 2, 3] == 0


@pytest.mark.parametrize("tv", [0.0, 0.02])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernel_update_on_views(cuda, rng, dtype, tv):
    xbuf, x = _framed(rng, 2, 19, 21, dtype)
    _, corr = _framed(rng, 2, 19, 21, dtype, margin=(2, 4))
    inv = rng.uniform(0.9, 1.1, (19, 21)).astype(dtype)
    ref = _reference_update(x, corr, inv, tv, 1e-3)
    before = xbuf.copy()
    got = cuda.update(x, corr, inv, tv, 1e-3, out=x)
    assert got is x
    np.testing.assert_allclose(x, ref, rtol=2e-5 if dtype == np.float32 else 1e-12)
    # the margins of the work buffer are untouched
    mask = np.ones(xbuf.shape, bool)
    mask[:, 3:22, 5:26] = False
    assert np.array_equal(xbuf[mask], before[mask])
    # a fresh output and a single plane give the same
    again = cuda.update(np.ascontiguousarray(before[0, 3:22, 5:26]), corr[0], inv, tv, 1e-3)
    np.testing.assert_allclose(again, ref[0], rtol=2e-5 if dtype == np.float32 else 1e-12)
    # no A^T 1 (it is 1): the update without the division
    ref = _reference_update(before[:, 3:22, 5:26], corr, np.ones_like(inv), tv, 1e-3)
    got = cuda.update(np.ascontiguousarray(before[:, 3:22, 5:26]), corr, None, tv, 1e-3)
    np.testing.assert_allclose(got, ref, rtol=2e-5 if dtype == np.float32 else 1e-12)


def test_planes_describes_views():
    buf = np.zeros((2, 3, 10, 12), np.float32)
    v = buf[:, :, 1:8, 2:9]
    _, ps, rs = rp._planes(v)
    assert (ps, rs) == (120, 12)
    assert rp._planes(buf[:, :, :, ::2]) is None
    assert rp._planes(buf[:, 1:, 1:8, 2:9]) is None  # batch axes that do not merge
    assert rp._planes(np.zeros((5, 6)))[1:] == (30, 6)
