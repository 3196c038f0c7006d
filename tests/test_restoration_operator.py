"""Blur operator of gpuimg.restoration against SciPy's convolutions and the adjoint identity."""

import numpy as np
import pytest
import scipy.ndimage as ndi
import scipy.signal
from conftest import to_np

from gpuimg import psf as psfs
from gpuimg.restoration import BOUNDARIES, BlurOperator

SHAPES = [(40, 48), (37, 31)]
PSF_SHAPES = [(7, 7), (4, 6), (5, 2)]


def _psf(rng, shape):
    k = rng.random(shape) + 0.1
    return k / k.sum()


@pytest.mark.parametrize("store_adjoint", [True, False])
@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("kshape", PSF_SHAPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_adjoint_identity(be, rng, boundary, kshape, shape, store_adjoint):
    k = _psf(rng, kshape)
    A = BlurOperator(be, be.asarray(k), (3,) + shape, np.float64, boundary, store_adjoint)
    x = rng.standard_normal((3,) + A.x_shape[-2:])
    y = rng.standard_normal((3,) + shape)
    lhs = float(np.vdot(to_np(A.apply(be.asarray(x))), y))
    rhs = float(np.vdot(x, to_np(A.adjoint(be.asarray(y)))))
    assert abs(lhs - rhs) <= 1e-10 * max(abs(lhs), 1.0)


@pytest.mark.parametrize("boundary,mode", [("periodic", "wrap"), ("reflect", "reflect")])
@pytest.mark.parametrize("kshape", PSF_SHAPES)
def test_apply_equals_scipy_convolve(be, rng, boundary, mode, kshape):
    k = _psf(rng, kshape)
    x = rng.random((2, 37, 31))
    A = BlurOperator(be, be.asarray(k), x.shape, np.float64, boundary)
    got = to_np(A.apply(be.asarray(x)))
    for i in range(2):
        np.testing.assert_allclose(got[i], ndi.convolve(x[i], k, mode=mode), rtol=0, atol=1e-12)


@pytest.mark.parametrize("kshape", PSF_SHAPES)
def test_free_boundary_is_valid_convolution(be, rng, kshape):
    k = _psf(rng, kshape)
    A = BlurOperator(be, be.asarray(k), (30, 26), np.float64, "free")
    x = rng.random(A.x_shape)
    ref = scipy.signal.convolve2d(x, k, mode="valid")
    np.testing.assert_allclose(to_np(A.apply(be.asarray(x))), ref, rtol=0, atol=1e-12)
    # the frame part of the unknown sits under the PSF's centre
    oh, ow = A.offset
    np.testing.assert_array_equal(to_np(A.crop(be.asarray(x))), x[oh:oh + 30, ow:ow + 26])


def test_float32_and_lipschitz_bound(be, rng):
    k = psfs.motion(9, 30.0)
    x = rng.random((33, 40)).astype(np.float32)
    for boundary in BOUNDARIES:
        A = BlurOperator(be, be.asarray(k), x.shape, np.float32, boundary)
        y = A.apply(be.asarray(np.zeros(A.x_shape, np.float32) + 1))
        assert y.dtype == np.float32 and A.adjoint(y).dtype == np.float32
        # ||A||^2 from dense matrix columns (SciPy's convolution of unit vectors)
        dense = np.stack([ndi.convolve(e.reshape(12, 14), k, mode="reflect").ravel()
                          for e in np.eye(12 * 14)], axis=1)
        B = BlurOperator(be, be.asarray(k), (12, 14), np.float64, "reflect")
        assert B.lipschitz() >= np.linalg.norm(dense, 2) ** 2 * (1 - 1e-12)
