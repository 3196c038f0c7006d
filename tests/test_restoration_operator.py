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


# -- the direct (separable) method -------------------------------------------------------

METHOD_SHAPES = [(7, 7), (4, 6), (5, 2), (1, 5)]


def _separable_psf(rng, shape):
    k = np.outer(rng.random(shape[0]) + 0.1, rng.random(shape[1]) + 0.1)
    return k / k.sum()


def _operator(be, k, shape, dtype, boundary, method):
    A = BlurOperator(be, be.asarray(k), shape, dtype, boundary, method=method)
    assert A.method == method
    return A


@pytest.mark.parametrize("method", ["fft", "direct"])
@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("kshape", METHOD_SHAPES)
def test_methods_adjoint_identity(be, rng, method, boundary, kshape):
    k = _separable_psf(rng, kshape)
    A = _operator(be, k, (3, 37, 31), np.float64, boundary, method)
    x = rng.standard_normal((3,) + A.x_shape[-2:])
    y = rng.standard_normal((3, 37, 31))
    lhs = float(np.vdot(to_np(A.apply(be.asarray(x))), y))
    rhs = float(np.vdot(x, to_np(A.adjoint(be.asarray(y)))))
    assert abs(lhs - rhs) <= 1e-10 * max(abs(lhs), 1.0)
    # A^T of a grid buffer that is zero outside the frame, as the solvers pass it
    buf, frame = A.frame_buffer((3,))
    frame[...] = be.asarray(y)
    rhs = float(np.vdot(x, to_np(A.adjoint_lifted(buf))))
    assert abs(lhs - rhs) <= 1e-10 * max(abs(lhs), 1.0)


@pytest.mark.parametrize("method", ["fft", "direct"])
@pytest.mark.parametrize("boundary,mode", [("periodic", "wrap"), ("reflect", "reflect")])
@pytest.mark.parametrize("kshape", METHOD_SHAPES)
def test_methods_apply_equal_scipy_convolve(be, rng, method, boundary, mode, kshape):
    k = _separable_psf(rng, kshape)
    x = rng.random((2, 37, 31))
    A = _operator(be, k, x.shape, np.float64, boundary, method)
    got = to_np(A.apply(be.asarray(x)))
    # the lifted path of the solvers: a grid buffer refreshed in place
    xe, _ = A.lift(be.asarray(x))
    lifted = to_np(A.apply_lifted(xe))
    for i in range(2):
        ref = ndi.convolve(x[i], k, mode=mode)
        np.testing.assert_allclose(got[i], ref, rtol=0, atol=1e-12)
        np.testing.assert_allclose(lifted[i], ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("method", ["fft", "direct"])
@pytest.mark.parametrize("kshape", METHOD_SHAPES)
def test_methods_free_boundary_is_valid_convolution(be, rng, method, kshape):
    k = _separable_psf(rng, kshape)
    A = _operator(be, k, (30, 26), np.float64, "free", method)
    x = rng.random(A.x_shape)
    y = rng.random((30, 26))
    np.testing.assert_allclose(to_np(A.apply(be.asarray(x))), scipy.signal.convolve2d(x, k, mode="valid"),
                               rtol=0, atol=1e-12)
    # A^T is the full correlation: convolution with the PSF flipped on both axes
    np.testing.assert_allclose(to_np(A.adjoint(be.asarray(y))), scipy.signal.convolve2d(y, k[::-1, ::-1], mode="full"),
                               rtol=0, atol=1e-12)


@pytest.mark.parametrize("boundary,mode", [("periodic", "wrap"), ("reflect", "reflect"), ("free", None)])
def test_direct_float32_keeps_dtype_and_builds_no_otf(be, rng, boundary, mode):
    k = psfs.gaussian((9, 7), (2.0, 1.5))
    x = rng.random((2, 40, 33)).astype(np.float32)
    A = _operator(be, k, x.shape, np.float32, boundary, "direct")
    xin = x if mode is not None else np.stack([np.pad(xi, ((4, 4), (3, 3)), mode="edge") for xi in x])
    y = A.apply(be.asarray(xin))
    z = A.adjoint(y)
    assert y.dtype == np.float32 and z.dtype == np.float32 and A.factors[0].dtype == np.float32
    for i in range(2):
        ref = ndi.convolve(x[i], k, mode=mode) if mode else scipy.signal.convolve2d(xin[i], k, mode="valid")
        np.testing.assert_allclose(to_np(y)[i], ref, rtol=0, atol=1e-6)
    assert A._otf is None and A.otf_adjoint is None
    # asked for, the OTF is psf2otf on the grid (NumPy's rfft2 of the PSF rolled to the origin)
    big = np.zeros(A.grid)
    big[:9, :7] = k
    ref = np.fft.rfft2(np.roll(big, (-4, -3), axis=(0, 1)))
    np.testing.assert_allclose(to_np(A.otf), ref, rtol=0, atol=1e-6)


def test_separability_detection(be):
    from gpuimg.restoration.operator import separable_factors

    for k in (psfs.gaussian((19, 19), 3.0), psfs.gaussian((9, 5), (2.0, 0.7)), np.ones((1, 1)), np.ones((3, 1)) / 3):
        u, v = separable_factors(k)
        np.testing.assert_allclose(np.outer(u, v), k, rtol=0, atol=1e-15)
        assert u.sum() >= 0
    for k in (psfs.disk(3.0), psfs.disk(5.0), psfs.motion(9, 30.0), psfs.motion(7, 45.0)):
        assert separable_factors(k) is None
    # a Gaussian in float32 is separable to float32's precision, not to float64's
    k32 = psfs.gaussian((19, 19), 3.0).astype(np.float32)
    assert separable_factors(k32, 1e-7) is not None and separable_factors(k32, 1e-12) is None
    # negative factors: a sharpening row times a negated smoothing column (entries of both signs)
    col, row = -np.array([1.0, 4.0, 6.0, 4.0, 1.0]), np.array([-0.3, 1.6, -0.3])
    k = np.outer(col, row)
    u, v = separable_factors(k)
    np.testing.assert_allclose(np.outer(u, v), k, rtol=0, atol=1e-14)
    assert u.sum() > 0 and v.sum() < 0


def test_direct_negative_separable_psf_and_lipschitz(be, rng):
    col, row = np.array([1.0, 4.0, 6.0, 4.0, 1.0]), np.array([-0.3, 1.6, -0.3])
    k = np.outer(col, row)
    k = k / k.sum()
    x = rng.random((14, 12))
    for boundary, mode in (("reflect", "reflect"), ("periodic", "wrap")):
        A = _operator(be, k, x.shape, np.float64, boundary, "direct")
        np.testing.assert_allclose(to_np(A.apply(be.asarray(x))), ndi.convolve(x, k, mode=mode), rtol=0, atol=1e-12)
        dense = np.stack([ndi.convolve(e.reshape(x.shape), k, mode=mode).ravel() for e in np.eye(x.size)], axis=1)
        norm2 = np.linalg.norm(dense, 2) ** 2
        assert A.lipschitz() >= norm2 * (1 - 1e-12)
        if boundary == "periodic":  # exact there: max |H|^2
            assert A.lipschitz() == pytest.approx(norm2, rel=1e-10)


def test_method_choice(be, monkeypatch):
    import gpuimg.restoration.operator as op

    gauss = be.asarray(psfs.gaussian((19, 19), 3.0))
    disk = be.asarray(psfs.disk(5.0))
    shape = (64, 64)
    # separable PSFs take the 1-D passes up to the backend's separable crossover, then the FFT
    assert BlurOperator(be, gauss, shape, np.float32, "reflect").method == "direct"
    side = be.correlate_crossover()["separable_max_taps"] // 2 + 1
    wide = be.asarray(psfs.gaussian((side, side), side / 6))
    assert BlurOperator(be, wide, (2 * side, 2 * side), np.float32, "reflect").method == "fft"
    assert BlurOperator(be, disk, shape, np.float32, "reflect").method == "fft"
    assert BlurOperator(be, gauss, shape, np.float32, "reflect", method="fft").method == "fft"
    with pytest.raises(ValueError, match="method"):
        BlurOperator(be, disk, shape, np.float32, "reflect", method="direct")
    with pytest.raises(ValueError, match="method"):
        BlurOperator(be, gauss, shape, np.float32, "reflect", method="separable")
    monkeypatch.setattr(op, "_DIRECT_OVERRIDE", True)
    assert BlurOperator(be, gauss, shape, np.float32, "reflect").method == "direct"
    assert BlurOperator(be, disk, shape, np.float32, "reflect").method == "fft"
    monkeypatch.setattr(op, "_DIRECT_OVERRIDE", False)
    assert BlurOperator(be, gauss, shape, np.float32, "reflect").method == "fft"


@pytest.mark.parametrize("name", ["gaussian", "disk", "motion", "asymmetric"])
def test_columns_sum_to_one_is_known_only_where_scipy_says_so(be, rng, name):
    # the column sums of the reflect and wrap models, read off dense matrices built from
    # scipy.ndimage.convolve: the shortcut must claim 1 only where they are 1
    k = {"gaussian": psfs.gaussian((7, 7), 1.5), "disk": psfs.disk(3.0), "motion": psfs.motion(7, 30.0),
         "asymmetric": _psf(rng, (5, 5))}[name]
    k = k / k.sum()
    shape = (13, 11)
    for boundary, mode in (("reflect", "reflect"), ("periodic", "wrap")):
        dense = np.stack([ndi.convolve(e.reshape(shape), k, mode=mode).ravel() for e in np.eye(13 * 11)], axis=1)
        ones = np.abs(dense.sum(axis=0) - 1).max() < 1e-12
        A = BlurOperator(be, be.asarray(k), shape, np.float64, boundary, psf_host=k)
        if A.columns_sum_to_one():
            assert ones, (name, boundary)
        if boundary == "periodic" or name in ("gaussian", "disk"):
            assert A.columns_sum_to_one(), (name, boundary)
        # the non-negative unit-sum case returns 1 without a pass: still a bound on ||A||^2
        assert A.lipschitz() >= np.linalg.norm(dense, 2) ** 2 * (1 - 1e-12)
    assert name in ("gaussian", "disk") or not BlurOperator(be, be.asarray(k), shape, np.float64, "reflect",
                                                            psf_host=k).columns_sum_to_one()
