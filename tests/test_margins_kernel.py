"""The reflect model's extension ``E`` and its adjoint on work buffers, both twins.

``reflect_margins`` must equal ``numpy.pad(mode="symmetric")`` of the frame, and
``fold_margins`` must be its adjoint (``<E x, y> == <x, E^T y>``). The CUDA twins
(``kernels/margins.cu``) run on the CPU through the serial emulation shim and the real
wrappers; the NumPy twins run as they are.
"""

import ctypes
import re
import types

import numpy as np
import pytest

import gpuimg._prims.restoration as rp
from gpuimg import _kernels

from _cuda_emulation import SERIAL_SHIM, EmulatedKernel, compile_emulated, kernel_dtype


@pytest.fixture(scope="module")
def emulated(tmp_path_factory):
    entries = "".join(
        f'extern "C" void {k}_{t}({t}* g, long long p, long long gh, long long gw, long long t, long long l, '
        f"long long h, long long w) {{ {k}<{t}>(g, p, gh, gw, t, l, h, w); }}\n"
        for k in ("reflect_margins", "fold_margins") for t in ("float", "double"))
    return compile_emulated(tmp_path_factory.mktemp("margins_kernel"), "mg",
                            SERIAL_SHIM + _kernels.source("margins.cu") + entries)


def _kernel(lib, name):
    k, t = re.fullmatch(r"(reflect_margins|fold_margins)<(float|double)>", name).groups()
    return EmulatedKernel(getattr(lib, f"{k}_{t}"), [np.dtype(kernel_dtype(name))] + [ctypes.c_longlong] * 7,
                          name=name)


@pytest.fixture(params=["numpy", "cuda"])
def twins(request, emulated, monkeypatch):
    if request.param == "numpy":
        return types.SimpleNamespace(reflect=lambda g, pad, fr: rp._reflect_margins_numpy(None, g, pad, fr),
                                     fold=lambda g, pad, fr: rp._fold_margins_numpy(None, g, pad, fr))
    monkeypatch.setattr(rp._MARGINS, "get", lambda name: _kernel(emulated, name))
    be = types.SimpleNamespace(xp=np)
    return types.SimpleNamespace(reflect=lambda g, pad, fr: rp._reflect_margins_cupy(be, g, pad, fr),
                                 fold=lambda g, pad, fr: rp._fold_margins_cupy(be, g, pad, fr))


CASES = [((3, 5), (2, 4), (13, 11)), ((0, 7), (9, 0), (12, 10)), ((4, 4), (4, 4), (4, 4)), ((1, 2), (3, 1), (5, 3))]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("pad_rows,pad_cols,frame", CASES)
def test_extension_equals_numpy_pad_and_fold_is_its_adjoint(twins, rng, dtype, pad_rows, pad_cols, frame):
    (t, b), (l, r), (h, w) = pad_rows, pad_cols, frame
    x = rng.standard_normal((2, h, w)).astype(dtype)
    grid = np.full((2, h + t + b, w + l + r), np.nan, dtype=dtype)
    grid[:, t:t + h, l:l + w] = x
    twins.reflect(grid, (pad_rows, pad_cols), frame)
    np.testing.assert_array_equal(grid, np.pad(x, ((0, 0), pad_rows, pad_cols), mode="symmetric"))
    y = rng.standard_normal(grid.shape).astype(dtype)
    folded = twins.fold(y.copy(), (pad_rows, pad_cols), frame)
    assert folded.shape == x.shape
    for i in range(2):
        lhs = float(np.vdot(np.pad(x[i].astype(np.float64), (pad_rows, pad_cols), mode="symmetric"), y[i]))
        rhs = float(np.vdot(x[i].astype(np.float64), folded[i].astype(np.float64)))
        assert abs(lhs - rhs) <= (1e-4 if dtype == np.float32 else 1e-10) * max(1.0, abs(lhs))
