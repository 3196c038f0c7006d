"""gpuimg.spline against scipy.ndimage (every order and mode) and scipy.interpolate."""

import numpy as np
import pytest
import scipy.interpolate as si
import scipy.ndimage as ndi

from gpuimg import spline
from gpuimg._boundary import MODE_CODES
from gpuimg._prims import ffd

from _spline_reference import spline_filter1d

MODES = sorted(MODE_CODES)


@pytest.fixture
def image(rng):
    return rng.random((40, 48))


@pytest.mark.parametrize("mode", MODES)
def test_map_coordinates_matches_scipy_every_order(be, rng, image, mode):
    coords = rng.uniform(-25, 75, (2, 400))
    coords[:, :8] = [[0, 39, -0.5, 39.5, 0.25, 12, -40, 100], [0, 47, 47.5, -0.5, 47.0, 0, 90, -60]]
    for order in range(6):
        got = spline.map_coordinates(be.asarray(image), be.asarray(coords), order=order, mode=mode, cval=0.3)
        ref = ndi.map_coordinates(image, coords, order=order, mode=mode, cval=0.3)
        np.testing.assert_allclose(be.to_numpy(got), ref, rtol=0, atol=1e-6, err_msg=f"order {order}")


@pytest.mark.parametrize("runs", ["full", "pairs"])
@pytest.mark.parametrize("mode", MODES)
def test_map_coordinates_of_many_points_matches_scipy_every_order(be, rng, image, mode, runs, monkeypatch):
    # as many points as the NumPy twin needs to gather its taps itself instead of running
    # SciPy's sampler: every order and mode, points far outside, a batch of two images,
    # float32 coefficients (accumulated in float32), and a volume
    from gpuimg._prims import spline as prims
    from gpuimg._prims import taps

    if runs == "pairs" and be.is_gpu:
        pytest.skip("the tap runs are the NumPy sampler's")

    def cap(coeffs):
        """Past the memory cap the tap runs are pairs, gathered piece by piece: a cap that
        holds pairs of the coefficients padded for order 5, but not wider runs."""
        if runs == "pairs":
            monkeypatch.setattr(taps, "RUNS_MAX_BYTES", 2 * coeffs.dtype.itemsize * coeffs.shape[0]
                                * np.prod([n + 18 for n in coeffs.shape[1:]]))

    coords = rng.uniform(-25, 75, (2, prims._CHUNK + 4000))
    coords[:, :8] = [[0, 39, -0.5, 39.5, 0.25, 12, -40, 100], [0, 47, 47.5, -0.5, 47.0, 0, 90, -60]]
    pair = np.stack([image, image[::-1, ::-1]])
    cap(pair)
    assert prims._gathers_taps(pair, coords, 3)
    for order in range(1, 6):
        got = be.to_numpy(spline.map_coordinates(be.asarray(pair), be.asarray(coords), order=order, mode=mode,
                                                 cval=0.3, prefilter=False))
        for i in range(2):
            ref = ndi.map_coordinates(pair[i], coords, order=order, mode=mode, cval=0.3, prefilter=False)
            np.testing.assert_allclose(got[i], ref, rtol=0, atol=1e-9, err_msg=f"order {order}")
        cap(image.astype(np.float32)[None])
        got32 = spline.map_coordinates(be.asarray(image.astype(np.float32)), be.asarray(coords), order=order,
                                       mode=mode, cval=0.3, prefilter=False)
        ref = ndi.map_coordinates(image, coords, order=order, mode=mode, cval=0.3, prefilter=False)
        np.testing.assert_allclose(be.to_numpy(got32), ref, rtol=0, atol=2e-6, err_msg=f"order {order}")
        cap(pair)
    # a volume: the (z, y) taps are the gather's rows
    vol = rng.random((12, 14, 16))
    coords = rng.uniform(-8, 24, (3, prims._CHUNK + 4000))
    coords[:, :3] = [[0, 11, -20], [13, 0, 30], [15.5, -0.5, 7]]
    cap(vol[None])
    assert prims._gathers_taps(vol[None], coords, 3)
    for order in range(1, 6):
        got = spline.map_coordinates(be.asarray(vol), be.asarray(coords), order=order, mode=mode, cval=0.3,
                                     prefilter=False)
        ref = ndi.map_coordinates(vol, coords, order=order, mode=mode, cval=0.3, prefilter=False)
        np.testing.assert_allclose(be.to_numpy(got), ref, rtol=0, atol=1e-9, err_msg=f"3-D order {order}")


@pytest.mark.parametrize("mode", MODES)
def test_spline_filter_matches_scipy(be, image, mode):
    for order in range(2, 6):
        got = spline.spline_filter(be.asarray(image), order=order, mode=mode)
        np.testing.assert_allclose(be.to_numpy(got), ndi.spline_filter(image, order, mode=mode), rtol=0, atol=1e-9)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("mode", MODES)
def test_spline_filter_on_axes_longer_than_its_fir_matches_scipy(be, rng, mode, dtype):
    # the CPU applies the prefilter as a truncated symmetric FIR once an axis is as long as
    # the filter (float64: 45-93 taps, float32: 23-49), recursions on shorter axes
    from gpuimg._prims.spline import fir_taps

    x = rng.random((120, 97))
    tol = 1e-12 if dtype == np.float64 else 2e-6
    for order in range(2, 6):
        ref = ndi.spline_filter(x, order, mode=mode)
        got = spline.spline_filter(be.asarray(x.astype(dtype)), order=order, mode=mode)
        np.testing.assert_allclose(be.to_numpy(got), ref, rtol=0, atol=tol * np.abs(ref).max())
        for n in (fir_taps(order, np.dtype(dtype).itemsize).size + d for d in (-1, 0)):
            line = rng.random((2, n))
            got = spline.spline_filter(be.asarray(line.astype(dtype)), order=order, mode=mode)
            # spline_filter filters both axes of a 2-D array, here one of two samples, whose
            # reflect start SciPy < 1.18 gets wrong (_spline_reference)
            ref = spline_filter1d(spline_filter1d(line, order, axis=-1, mode=mode), order, axis=0, mode=mode)
            np.testing.assert_allclose(be.to_numpy(got), ref, rtol=0, atol=tol * np.abs(ref).max())


def test_spline_filter_low_orders_copy(be, image):
    got = spline.spline_filter(be.asarray(image), order=1)
    np.testing.assert_array_equal(be.to_numpy(got), ndi.spline_filter1d(ndi.spline_filter1d(image, 1, axis=0), 1, axis=1))


def test_prefilter_false_uses_given_coefficients(be, rng, image):
    coords = rng.uniform(0, 39, (2, 100))
    coef = ndi.spline_filter(image, 3, mode="mirror")
    got = spline.map_coordinates(be.asarray(coef), be.asarray(coords), order=3, mode="mirror", prefilter=False)
    ref = ndi.map_coordinates(coef, coords, order=3, mode="mirror", prefilter=False)
    np.testing.assert_allclose(be.to_numpy(got), ref, atol=1e-10)


def test_batch_and_volume(be, rng):
    stack = rng.random((2, 3, 34, 36))
    coords = rng.uniform(-3, 38, (2, 5, 7))
    got = be.to_numpy(spline.map_coordinates(be.asarray(stack), be.asarray(coords), order=3, mode="reflect"))
    assert got.shape == (2, 3, 5, 7)
    for i in range(2):
        for j in range(3):
            ref = ndi.map_coordinates(stack[i, j], coords, order=3, mode="reflect")
            np.testing.assert_allclose(got[i, j], ref, atol=1e-9)
    vol = rng.random((33, 34, 35))
    c3 = rng.uniform(-2, 36, (3, 200))
    for mode in ("grid-wrap", "nearest", "constant"):
        got = spline.map_coordinates(be.asarray(vol), be.asarray(c3), order=2, mode=mode)
        np.testing.assert_allclose(be.to_numpy(got), ndi.map_coordinates(vol, c3, order=2, mode=mode), atol=1e-8)
    line = rng.random(50)
    c1 = rng.uniform(-5, 55, (1, 60))
    got = spline.map_coordinates(be.asarray(line), be.asarray(c1), order=5, mode="wrap")
    np.testing.assert_allclose(be.to_numpy(got), ndi.map_coordinates(line, c1, order=5, mode="wrap"), atol=1e-8)


def test_float32_stays_float32(be, rng, image):
    coords = rng.uniform(0, 39, (2, 300))
    img32 = image.astype(np.float32)
    got = spline.map_coordinates(be.asarray(img32), be.asarray(coords), order=3, mode="mirror")
    assert got.dtype == np.float32
    np.testing.assert_allclose(be.to_numpy(got), ndi.map_coordinates(image, coords, order=3, mode="mirror"), atol=2e-5)
    got = spline.map_coordinates(be.asarray(image), be.asarray(coords), order=3, mode="mirror",
                                 coefficient_dtype=np.float32)
    assert got.dtype == np.float64
    np.testing.assert_allclose(be.to_numpy(got), ndi.map_coordinates(image, coords, order=3, mode="mirror"), atol=2e-5)


@pytest.mark.parametrize("grid_mode,mode", [(False, "constant"), (True, "grid-constant"), (True, "grid-wrap"), (False, "nearest")])
def test_zoom_matches_scipy(be, image, grid_mode, mode):
    for z in (1.7, (0.55, 2.3)):
        for order in (0, 1, 3, 4):
            got = spline.zoom(be.asarray(image), z, order=order, mode=mode, grid_mode=grid_mode)
            ref = ndi.zoom(image, z, order=order, mode=mode, grid_mode=grid_mode)
            np.testing.assert_allclose(be.to_numpy(got), ref, atol=1e-6)


def test_shift_and_affine_match_scipy(be, image):
    for mode in ("nearest", "reflect", "grid-wrap", "constant"):
        got = spline.shift(be.asarray(image), (1.3, -2.7), order=3, mode=mode)
        np.testing.assert_allclose(be.to_numpy(got), ndi.shift(image, (1.3, -2.7), order=3, mode=mode), atol=1e-6)
    a = np.array([[0.9, 0.25], [-0.15, 1.1]])
    off = np.array([2.5, -3.0])
    homog = np.eye(3)
    homog[:2, :2], homog[:2, 2] = a, off
    ref = ndi.affine_transform(image, a, offset=off, order=3, mode="mirror", output_shape=(30, 50))
    for m, kw in ((a, {"offset": off}), (homog, {}), (homog[:2], {})):
        got = spline.affine_transform(be.asarray(image), m, output_shape=(30, 50), order=3, mode="mirror", **kw)
        np.testing.assert_allclose(be.to_numpy(got), ref, atol=1e-6)
    got = spline.affine_transform(be.asarray(image), np.array([0.8, 1.2]), offset=1.5, order=5, mode="reflect")
    np.testing.assert_allclose(
        be.to_numpy(got), ndi.affine_transform(image, [0.8, 1.2], offset=1.5, order=5, mode="reflect"), atol=1e-6)


@pytest.mark.parametrize("mode", ["nearest", "constant", "grid-constant"])
def test_gradient_sampler_is_derivative_of_scipy_interpolant(be, rng, image, mode):
    coef = ndi.spline_filter(image, 3, mode="mirror")
    coords = rng.uniform(1, 38, (2, 200))
    coords[:, :4] = [[-1.5, 40.5, 2.2, 20.0], [3.0, 10.0, -0.7, 49.0]]
    got = be.to_numpy(be.spline_sample_grad2d(be.asarray(coef[None]), be.asarray(coords), mode, 0.25))[:, 0]
    ref = ndi.map_coordinates(coef, coords, order=3, mode=mode, cval=0.25, prefilter=False)
    np.testing.assert_allclose(got[0], ref, atol=1e-10)
    h = 1e-6
    for axis in (0, 1):
        dp, dm = coords.copy(), coords.copy()
        dp[axis] += h
        dm[axis] -= h
        fd = (ndi.map_coordinates(coef, dp, order=3, mode=mode, cval=0.25, prefilter=False)
              - ndi.map_coordinates(coef, dm, order=3, mode=mode, cval=0.25, prefilter=False)) / (2 * h)
        inner = (coords[0] > 0.01) & (coords[0] < 38.99) & (coords[1] > 0.01) & (coords[1] < 46.99) if mode == "constant" else slice(None)
        np.testing.assert_allclose(got[1 + axis][inner], fd[inner], atol=1e-5)


def _scipy_basis(n, k, s):
    knots = (np.arange(k + 4) - 3.0) * s
    return si.BSpline.design_matrix(np.arange(n, dtype=float), knots, 3, extrapolate=True).toarray()


def test_bspline_basis_and_adjoint_match_scipy_interpolate(be, rng):
    h, w, s = 50, 37, (8.0, 6.5)
    ky, kx = int(np.floor((h - 1) / s[0])) + 4, int(np.floor((w - 1) / s[1])) + 4
    by, bx = _scipy_basis(h, ky, s[0]), _scipy_basis(w, kx, s[1])
    np.testing.assert_allclose(ffd.basis(h, ky, s[0]), by, atol=1e-12)
    np.testing.assert_allclose(ffd.basis(w, kx, s[1]), bx, atol=1e-12)
    g = rng.standard_normal((2, h, w))
    got = be.to_numpy(be.bspline_adjoint(be.asarray(g), (ky, kx), s))
    np.testing.assert_allclose(got, by.T @ g @ bx, atol=1e-10)


def test_bad_input(be, image):
    x = be.asarray(image)
    with pytest.raises(ValueError, match="order"):
        spline.map_coordinates(x, be.asarray(np.zeros((2, 3))), order=6)
    with pytest.raises(ValueError, match="mode"):
        spline.map_coordinates(x, be.asarray(np.zeros((2, 3))), mode="edge")
    with pytest.raises(ValueError, match="coordinates"):
        spline.map_coordinates(x, be.asarray(np.zeros((3, 3))))
    with pytest.raises(ValueError, match="order"):
        spline.spline_filter(x, order=-1)
    with pytest.raises(ValueError, match="zoom"):
        spline.zoom(x, (1.0, 2.0, 3.0))
    with pytest.raises(ValueError, match="matrix"):
        spline.affine_transform(x, np.ones((2, 5)))


@pytest.mark.parametrize("mode", MODES)
def test_zoom_and_shift_every_order_and_mode(be, rng, mode):
    img = rng.random((2, 33, 37))
    for order in range(6):
        got = be.to_numpy(spline.zoom(be.asarray(img), (1.6, 0.7), order=order, mode=mode, cval=0.4))
        got_s = be.to_numpy(spline.shift(be.asarray(img), (-7.3, 40.6), order=order, mode=mode, cval=0.4))
        for i in range(2):
            np.testing.assert_allclose(got[i], ndi.zoom(img[i], (1.6, 0.7), order=order, mode=mode, cval=0.4),
                                       atol=1e-6, err_msg=f"zoom order {order}")
            np.testing.assert_allclose(got_s[i], ndi.shift(img[i], (-7.3, 40.6), order=order, mode=mode, cval=0.4),
                                       atol=1e-6, err_msg=f"shift order {order}")


def test_shift_volume_and_unfiltered(be, rng):
    vol = rng.random((32, 33, 34))
    got = spline.shift(be.asarray(vol), (1.5, -2.25, 0.75), order=3, mode="mirror")
    np.testing.assert_allclose(be.to_numpy(got), ndi.shift(vol, (1.5, -2.25, 0.75), order=3, mode="mirror"), atol=1e-6)
    coef = ndi.spline_filter(vol[0], 3, mode="reflect")
    got = spline.zoom(be.asarray(coef), 1.3, order=3, mode="reflect", prefilter=False)
    np.testing.assert_allclose(be.to_numpy(got), ndi.zoom(coef, 1.3, order=3, mode="reflect", prefilter=False), atol=1e-9)


def test_affine_transform_points_on_the_last_sample_match_scipy(be):
    # one-decimal matrices put many points exactly on the border, where one rounding step
    # decides between a sample and cval: the coordinates must round as SciPy's do
    rng = np.random.default_rng(0)
    for _ in range(60):
        x = rng.random((int(rng.integers(4, 12)), int(rng.integers(4, 12))))
        m = np.round(rng.normal(1, 0.3, (2, 2)), 1)
        off = np.round(rng.normal(0, 1, 2), 1)
        ref = ndi.affine_transform(x, m, offset=off, order=1, cval=-1.0)
        got = be.to_numpy(spline.affine_transform(be.asarray(x), m, offset=off, order=1, cval=-1.0))
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12)


def test_zoom_scalar_forms_like_scipy():
    x = np.random.default_rng(5).random((12, 10))
    np.testing.assert_allclose(spline.zoom(x, np.array(2.0)), ndi.zoom(x, 2.0), atol=1e-10)
    for bad in (float("inf"), float("nan")):
        with pytest.raises(ValueError, match="zoom"):
            spline.zoom(x, bad)
