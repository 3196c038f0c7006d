"""The CUDA twins of non-local means (``kernels/nlmeans.cu``) executed on the CPU.

The kernels run through the serial emulation shim (``__hiloint2double`` assembled from its two
32-bit halves) and the real CuPy-twin wrappers, and are compared with
``skimage.restoration.denoise_nl_means`` in fast and classic mode, grey and colour, with and
without a noise level.
"""

import ctypes
import re
import types

import numpy as np
import pytest

import gpuimg._prims.nlmeans as nlm
from gpuimg import _kernels

from _cuda_emulation import SERIAL_SHIM, EmulatedKernel, compile_emulated, kernel_dtype, real

skr = pytest.importorskip("skimage.restoration")

_HILO = r"""
#include <cstdint>
#include <cstring>
inline double __hiloint2double(int hi, int lo) {
    const uint64_t bits = ((uint64_t)(uint32_t)hi << 32) | (uint32_t)lo;
    double d;
    std::memcpy(&d, &bits, sizeof d);
    return d;
}
"""


@pytest.fixture(scope="module")
def emulated(tmp_path_factory):
    entries = []
    for t in ("float", "double"):
        entries.append(f'extern "C" void fast_{t}(const {t}* p, {t}* out, long long b, int c, long long r, long long k, '
                       f"long long pad, int off, int dist, double h2s2, double var2) {{ "
                       f"nlm_fast<{t}>(p, out, b, c, r, k, pad, off, dist, h2s2, var2); }}\n")
        entries.append(f'extern "C" void classic_{t}(const {t}* p, const {t}* w, {t}* out, long long b, int c, '
                       f"long long r, long long k, int s, int dist, {t} var2) {{ "
                       f"nlm_classic<{t}>(p, w, out, b, c, r, k, s, dist, var2); }}\n")
    return compile_emulated(tmp_path_factory.mktemp("nlmeans_kernel"), "nlm",
                            SERIAL_SHIM + _HILO + _kernels.source("nlmeans.cu") + "".join(entries))


def _kernel(lib, name):
    kind, t = re.fullmatch(r"nlm_(fast|classic)<(float|double)>", name).groups()
    T = np.dtype(kernel_dtype(name))
    ll, i32, f64 = ctypes.c_longlong, ctypes.c_int, ctypes.c_double
    if kind == "fast":
        return EmulatedKernel(getattr(lib, f"fast_{t}"), [T, T, ll, i32, ll, ll, ll, i32, i32, f64, f64], name=name)
    return EmulatedKernel(getattr(lib, f"classic_{t}"), [T, T, T, ll, i32, ll, ll, i32, i32, real(T)], name=name)


@pytest.fixture
def cuda(emulated, monkeypatch):
    monkeypatch.setattr(nlm._FAMILY, "get", lambda name: _kernel(emulated, name))
    return types.SimpleNamespace(xp=np)


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("channels", [1, 3])
def test_kernel_nl_means_matches_skimage(cuda, rng, fast, channels):
    img = np.clip(0.5 + 0.2 * rng.standard_normal((26, 30, channels)), 0, 1)
    for sigma in (0.0, 0.08):
        ref = skr.denoise_nl_means(img, patch_size=5, patch_distance=3, h=0.12, sigma=sigma, fast_mode=fast,
                                   channel_axis=-1)
        x = np.ascontiguousarray(np.moveaxis(img, -1, 0)[None])
        prim = nlm._nlm_fast_cupy if fast else nlm._nlm_classic_cupy
        got = prim(cuda, x, 5, 3, 0.12, sigma ** 2)[0]
        np.testing.assert_allclose(np.moveaxis(got, 0, -1), ref.reshape(img.shape), rtol=0, atol=1e-6)
