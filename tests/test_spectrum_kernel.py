"""The CUDA twin of ``irfft_filtered`` (``kernels/spectrum.cu``) on the CPU.

The kernel source is compiled as C++20 with a serial shim and launched through the real
CuPy-twin wrapper; the cuFFT plan it then runs is stood in for by NumPy's unnormalised inverse
transform (``norm="forward"``), which is what a cuFFT C2R plan computes. The reference is
``numpy.fft.irfft2`` of the product of the spectra.
"""

import ctypes
import re
import types

import numpy as np
import pytest
from _cuda_emulation import SERIAL_SHIM, EmulatedKernel, compile_emulated, kernel_dtype, real

import gpuimg._prims.restoration as rp
from gpuimg import _kernels
from gpuimg._backend import get_backend


@pytest.fixture(scope="module")
def emulated(tmp_path_factory):
    entries = "".join(
        f'extern "C" void mul_{t}({t}* x, const {t}* h, long long p, long long r, long long c, {t} s) '
        f"{{ spectrum_multiply<{t}>(x, h, p, r, c, s); }}\n" for t in ("float", "double"))
    return compile_emulated(tmp_path_factory.mktemp("spectrum_kernel"), "spectrum",
                            SERIAL_SHIM + _kernels.source("spectrum.cu") + entries)


class _C2RPlan:
    """cuFFT C2R plan stand-in: the unnormalised inverse real transform over the last two axes."""

    def __init__(self, grid):
        self.grid = grid

    def get_output_array(self, X, order="C"):
        return np.empty(X.shape[:-2] + self.grid, dtype=X.real.dtype)

    def fft(self, X, out, direction):
        assert direction == rp._CUFFT_INVERSE
        out[...] = np.fft.irfft2(X, s=self.grid, norm="forward")


@pytest.fixture
def irfft_filtered(emulated, monkeypatch):
    def kernel(name):
        t = re.fullmatch(r"spectrum_multiply<(float|double)>", name).group(1)
        T = np.dtype(kernel_dtype(name))
        C = np.dtype(np.complex64 if T == np.float32 else np.complex128)
        return EmulatedKernel(getattr(emulated, f"mul_{t}"), [C, C] + [ctypes.c_longlong] * 3 + [real(T)],
                              name=name)

    monkeypatch.setattr(rp._SPECTRUM, "get", kernel)
    monkeypatch.setattr(rp, "_grid_plan", lambda be, X, grid, kind: _C2RPlan(tuple(grid)))
    be = types.SimpleNamespace(xp=np)
    EmulatedKernel.calls.clear()
    return lambda X, H, grid: rp._irfft_filtered_cupy(be, X, H, grid)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("grid", [(12, 10), (9, 15)])
def test_kernel_product_then_unnormalised_inverse_equals_irfft2(irfft_filtered, rng, dtype, grid):
    x = rng.standard_normal((3,) + grid).astype(dtype)
    k = rng.standard_normal(grid).astype(dtype)
    X, H = np.fft.rfft2(x), np.fft.rfft2(k)
    cdt = np.complex64 if dtype == np.float32 else np.complex128
    ref = np.fft.irfft2(X * H, s=grid)
    got = irfft_filtered(X.astype(cdt), H.astype(cdt), grid)
    assert EmulatedKernel.calls == [f"spectrum_multiply<{'float' if dtype == np.float32 else 'double'}>"]
    np.testing.assert_allclose(got, ref, rtol=0, atol=2e-4 if dtype == np.float32 else 1e-11)
    # the NumPy twin: the same numbers
    np.testing.assert_allclose(rp._irfft_filtered_numpy(get_backend(backend="numpy"), X.astype(cdt), H.astype(cdt), grid), ref,
                               rtol=0, atol=2e-4 if dtype == np.float32 else 1e-11)
