"""The ``dct2`` primitive: both twins equal SciPy's orthonormal DCT-II and its inverse.

The CuPy twin (one real FFT of the whole image, Makhoul's reordering) runs here on NumPy
arrays through a stand-in backend whose ``rfft_grid``/``irfft_grid`` are SciPy's, so every
index of its pairing of spectrum rows and columns is checked without a GPU, for odd, even
and tiny sizes, batches, both dtypes, with and without ``overwrite``.
"""

import types

import numpy as np
import pytest
import scipy.fft

import gpuimg._prims.dct as dct

SHAPES = [(1, 1), (1, 2), (2, 1), (2, 2), (1, 5), (5, 1), (3, 3), (2, 3), (4, 4), (5, 7), (6, 8), (8, 5),
          (3, 16, 9), (2, 3, 10, 11), (63, 65)]


@pytest.fixture
def stand_in():
    return types.SimpleNamespace(xp=np, fft=scipy.fft,
                                 rfft_grid=lambda x, grid: scipy.fft.rfft2(x, s=grid),
                                 irfft_grid=lambda X, grid: scipy.fft.irfft2(X, s=grid))


@pytest.mark.parametrize("twin", ["numpy", "cupy"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
def test_dct2_twins_equal_scipy(stand_in, rng, twin, dtype, shape):
    fn = dct._dct2_numpy if twin == "numpy" else dct._dct2_cupy
    x = rng.standard_normal(shape).astype(dtype)
    tol = {np.float32: 2e-6, np.float64: 1e-13}[dtype]
    for inverse in (False, True):
        ref = (scipy.fft.idctn if inverse else scipy.fft.dctn)(x, type=2, axes=(-2, -1), norm="ortho")
        for overwrite in (False, True):
            xi = x.copy()
            y = fn(stand_in, xi, inverse=inverse, overwrite=overwrite)
            assert y.shape == x.shape and y.dtype == x.dtype
            if not overwrite:
                np.testing.assert_array_equal(xi, x)
            np.testing.assert_allclose(y, ref, rtol=0, atol=tol * np.abs(ref).max())


def test_dct2_cupy_twin_round_trip_reuses_the_buffer(stand_in, rng):
    x = rng.standard_normal((2, 12, 9))
    work = x.copy()
    y = dct._dct2_cupy(stand_in, work, overwrite=True)
    assert y is work  # the forward result goes into the input's buffer
    z = dct._dct2_cupy(stand_in, y, inverse=True, overwrite=True)
    assert z is work
    np.testing.assert_allclose(z, x, atol=1e-13)
