"""The CUDA twin of ``spline_sample`` (and its gradient sampler) executed on the CPU.

``kernels/spline_sample.cu`` is compiled as C++20 with a small shim (one host thread walks
the kernel's grid-stride loop) and launched through the real CuPy-twin wrapper, whose kernel
arguments are checked for the exact types a CUDA launch needs. Results are compared with
``scipy.ndimage.map_coordinates(prefilter=False)`` for every mode, orders 0-5 in 2-D and a
selection in 1-D and 3-D, at coordinates inside, on the edge and far outside the array.
"""

import ctypes
import re
import types

import numpy as np
import pytest
import scipy.ndimage as ndi
from _cuda_emulation import SERIAL_SHIM, EmulatedKernel, compile_emulated, kernel_dtype, real

import gpuimg._prims.spline as spl
from gpuimg import _kernels
from gpuimg._boundary import MODE_CODES

#: (type, order, ndim) combinations compiled for every mode
_COMBOS = ([("double", o, 2) for o in range(6)] + [("double", o, d) for o in (0, 1, 3, 4) for d in (1, 3)]
           + [("float", 3, 2), ("float", 2, 3)])


def _entry(t, mode, order, ndim):
    name = f"ss_{t}_{mode}_{order}_{ndim}"
    return (f'extern "C" void {name}(const {t}* c, const {t}* xy, {t}* out, long long batch, long long m, '
            f"long long n0, long long n1, long long n2, {t} offset, {t} cval) {{ "
            f"spline_sample<{t}, {mode}, {order}, {ndim}>(c, xy, out, batch, m, n0, n1, n2, offset, cval); }}\n")


def _grad_entry(t, mode):
    name = f"sg_{t}_{mode}"
    return (f'extern "C" void {name}(const {t}* c, const {t}* xy, {t}* out, long long batch, long long m, '
            f"long long h, long long w, {t} cval) {{ spline_sample_grad2d<{t}, {mode}>(c, xy, out, batch, m, h, w, cval); }}\n")


@pytest.fixture(scope="module")
def emulated(tmp_path_factory):
    entries = "".join(_entry(t, m, o, d) for t, o, d in _COMBOS for m in sorted(set(MODE_CODES.values())))
    entries += "".join(_grad_entry(t, MODE_CODES[m]) for t in ("float", "double") for m in spl.GRAD_MODES)
    return compile_emulated(tmp_path_factory.mktemp("spline_sample_kernel"), "ss",
                            SERIAL_SHIM + _kernels.source("spline_sample.cu") + entries)


def _kernel(lib, name):
    T = np.dtype(kernel_dtype(name))
    m = re.fullmatch(r"spline_sample<(float|double), (\d), (\d), (\d)>", name)
    if m:
        t, mode, order, ndim = m.groups()
        return EmulatedKernel(getattr(lib, f"ss_{t}_{mode}_{order}_{ndim}"),
                              [T] * 3 + [ctypes.c_longlong] * 5 + [real(T)] * 2, name=name)
    t, mode = re.fullmatch(r"spline_sample_grad2d<(float|double), (\d)>", name).groups()
    return EmulatedKernel(getattr(lib, f"sg_{t}_{mode}"), [T] * 3 + [ctypes.c_longlong] * 4 + [real(T)], name=name)


@pytest.fixture
def cuda(emulated, monkeypatch):
    """The CUDA twins of the samplers on NumPy arrays, through the emulated kernels."""
    monkeypatch.setattr(spl._SAMPLE, "get", lambda name: _kernel(emulated, name))
    host_be = types.SimpleNamespace(xp=np)
    return types.SimpleNamespace(
        sample=lambda c, xy, order, mode, cval=0.0: spl._sample_cupy(host_be, c, xy, order, mode, cval),
        grad=lambda c, xy, mode, cval=0.0: spl._grad_cupy(host_be, c, xy, mode, cval),
    )


def _coords(rng, shape, m):
    """Points inside, on the edges, just outside and far outside every axis."""
    cols = []
    for n in shape:
        c = rng.uniform(-0.4 * n - 2, 1.4 * n + 2, m)
        c[:6] = [0, n - 1, -0.5, n - 0.5, -3 * n - 0.3, 4 * n + 0.7]
        cols.append(rng.permutation(c))
    return np.stack(cols)


@pytest.mark.parametrize("mode", sorted(MODE_CODES))
def test_kernel_sampler_matches_scipy(cuda, rng, mode):
    shapes = {1: (23,), 2: (13, 17), 3: (6, 7, 5)}
    for t, order, ndim in _COMBOS:
        dtype = np.float32 if t == "float" else np.float64
        c = rng.standard_normal((2,) + shapes[ndim])
        xy = _coords(rng, shapes[ndim], 300)
        got = cuda.sample(c.astype(dtype), xy, order, mode, cval=0.75)
        assert got.dtype == dtype and got.shape == (2, 300)
        # the wrapper hands the kernel coordinates in the coefficients' dtype
        xy_used = xy.astype(dtype).astype(np.float64)
        for b in range(2):
            ref = ndi.map_coordinates(c[b], xy_used, order=order, mode=mode, cval=0.75, prefilter=False)
            np.testing.assert_allclose(got[b], ref, rtol=0, atol=1e-10 if t == "double" else 2e-5,
                                       err_msg=f"{t} order {order} ndim {ndim} image {b}")


@pytest.mark.parametrize("mode", spl.GRAD_MODES)
def test_kernel_gradient_sampler_matches_scipy_and_differences(cuda, rng, mode):
    c = rng.standard_normal((2, 15, 19))
    xy = _coords(rng, (15, 19), 200)
    got = cuda.grad(c, xy, mode, cval=0.5)
    h = 1e-5
    for b in range(2):
        ref = ndi.map_coordinates(c[b], xy, order=3, mode=mode, cval=0.5, prefilter=False)
        np.testing.assert_allclose(got[0, b], ref, rtol=0, atol=1e-10)
        for axis in (0, 1):
            step = np.zeros((2, 1))
            step[axis] = h
            fd = (ndi.map_coordinates(c[b], xy + step, order=3, mode=mode, cval=0.5, prefilter=False)
                  - ndi.map_coordinates(c[b], xy - step, order=3, mode=mode, cval=0.5, prefilter=False)) / (2 * h)
            inside = np.all((xy > 0.01) & (xy < np.array([[14 - 0.01], [18 - 0.01]])), axis=0)
            np.testing.assert_allclose(got[1 + axis, b][inside], fd[inside], rtol=0, atol=1e-5)
