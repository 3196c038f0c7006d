"""BSplineTransform against scipy.interpolate/ndimage; register_bspline against known deformations."""

import numpy as np
import pytest
import scipy.interpolate as si
import scipy.ndimage as ndi
import skimage.data

from gpuimg.registration import BSplineTransform, register_bspline


def _knots(k, s):
    return (np.arange(k + 4) - 3.0) * s


def _scipy_field(t, pts):
    """Displacement (n, 2) at (n, 2) points from scipy's tensor-product B-spline."""
    ky, kx = t.control_shape
    knots = (_knots(ky, t.spacing[0]), _knots(kx, t.spacing[1]))
    coef = np.asarray(t.coefficients)
    return np.stack([si.NdBSpline(knots, coef[c], 3, extrapolate=True)(pts) for c in (0, 1)], axis=1)


def _random_transform(rng, shape, spacing, max_disp):
    t = BSplineTransform.for_shape(shape, spacing)
    c = rng.standard_normal(t.coefficients.shape)
    u = BSplineTransform(t.control_shape, spacing, c).displacement(shape)
    return BSplineTransform(t.control_shape, spacing, c * max_disp / np.abs(u).max())


def test_displacement_matches_scipy_ndbspline(be, rng):
    shape = (70, 90)
    t = _random_transform(rng, shape, (16.0, 20.0), 5.0)
    tb = BSplineTransform(t.control_shape, t.spacing, be.asarray(t.coefficients))
    u = be.to_numpy(tb.displacement(shape))
    grid = np.stack(np.mgrid[0:70, 0:90], axis=-1).reshape(-1, 2).astype(float)
    ref = _scipy_field(t, grid)
    np.testing.assert_allclose(u.reshape(2, -1).T, ref, atol=1e-10)
    pts = rng.uniform([0, 0], [69, 89], (50, 2))
    np.testing.assert_allclose(be.to_numpy(tb.displacement_at(be.asarray(pts))), _scipy_field(t, pts), atol=1e-10)


def test_warp_matches_scipy_map_coordinates(be, rng):
    shape = (48, 56)
    t = _random_transform(rng, shape, 12.0, 3.0)
    tb = BSplineTransform(t.control_shape, t.spacing, be.asarray(t.coefficients))
    img = rng.random((2,) + shape)
    got = be.to_numpy(tb.warp(be.asarray(img), order=3, mode="reflect"))
    grid = np.mgrid[0:48, 0:56].astype(float) + t.displacement(shape)
    for i in range(2):
        np.testing.assert_allclose(got[i], ndi.map_coordinates(img[i], grid, order=3, mode="reflect"), atol=1e-9)


def test_inverse_residual(be, rng):
    shape = (64, 64)
    t = _random_transform(rng, shape, 16.0, 4.0)
    tb = BSplineTransform(t.control_shape, t.spacing, be.asarray(t.coefficients))
    v = be.to_numpy(tb.inverse(shape, tol=1e-6))
    q = np.stack(np.mgrid[0:64, 0:64], axis=-1).reshape(-1, 2).astype(float)
    pre = q + v.reshape(2, -1).T
    # forward map of the pre-image, evaluated by scipy, returns the grid point
    inside = np.all((pre >= 0) & (pre <= 63), axis=1)  # scipy extrapolates differently outside
    assert inside.mean() > 0.8
    err = np.abs(pre + _scipy_field(t, pre) - q)[inside].max()
    assert err < 0.01


def test_save_load_roundtrip(tmp_path, rng):
    t = _random_transform(rng, (40, 40), 10.0, 2.0)
    t.save(tmp_path / "t.npz")
    back = BSplineTransform.load(tmp_path / "t.npz")
    assert back.control_shape == t.control_shape and back.spacing == t.spacing
    np.testing.assert_array_equal(back.coefficients, t.coefficients)
    pts = rng.uniform(0, 39, (20, 2))
    np.testing.assert_allclose(back.displacement_at(pts), _scipy_field(t, pts), atol=1e-10)


@pytest.fixture(scope="module")
def grass():
    img = skimage.data.grass().astype(float)
    img = (img - img.min()) / np.ptp(img)
    return ndi.zoom(ndi.gaussian_filter(img, 0.8), 0.5, order=1)[:256, :256]


def test_register_bspline_recovers_smooth_deformation(be, grass):
    rng = np.random.default_rng(3)
    shape = grass.shape
    truth = _random_transform(rng, shape, 64.0, 8.0)
    u = truth.displacement(shape)
    assert np.abs(u).max() == pytest.approx(8.0)
    fixed = truth.warp(grass, mode="nearest") + rng.normal(0, 0.01, shape)
    moving = grass + rng.normal(0, 0.01, shape)
    t, info = register_bspline(be.asarray(fixed), be.asarray(moving), grid_spacing=32, levels=3, max_iter=60,
                               return_info=True)
    err = np.sqrt(((be.to_numpy(t.displacement(shape)) - u) ** 2).sum(axis=0))[16:-16, 16:-16]
    assert np.sqrt(np.mean(err**2)) < 0.3
    assert info["metric"][-1] < info["metric"][0]
    assert len(info["metric"]) == len(info["level"]) and info["level"][-1] == 0


def test_register_bspline_ncc_ignores_gain_and_offset(be, grass):
    rng = np.random.default_rng(5)
    img = grass[::2, ::2]
    truth = _random_transform(rng, img.shape, 32.0, 3.0)
    fixed = 0.5 * truth.warp(img, mode="nearest") + 0.2
    t = register_bspline(be.asarray(fixed), be.asarray(img), grid_spacing=16, metric="ncc", levels=2, max_iter=60)
    err = np.sqrt(((be.to_numpy(t.displacement(img.shape)) - truth.displacement(img.shape)) ** 2).sum(axis=0))
    assert np.sqrt(np.mean(err[8:-8, 8:-8] ** 2)) < 0.3


def test_landmarks_alone_are_interpolated(be):
    rng = np.random.default_rng(11)
    shape = (128, 128)
    truth = _random_transform(rng, shape, 64.0, 6.0)
    f = rng.uniform(10, 118, (25, 2))
    m = f + truth.displacement_at(f)
    flat = np.zeros(shape)
    t = register_bspline(be.asarray(flat), be.asarray(flat), grid_spacing=16, levels=1, image_weight=0.0,
                         landmarks=(f, m), landmark_weight=1.0, bending_weight=1e-3, max_iter=500, tol=1e-14)
    got = f + be.to_numpy(t.displacement_at(be.asarray(f)))
    assert np.abs(got - m).max() < 0.05


def test_regularisers_reduce_their_energy(be, grass):
    # a stiff bending weight gives a smoother field than none (on the same data)
    rng = np.random.default_rng(2)
    img = grass[::4, ::4]
    truth = _random_transform(rng, img.shape, 16.0, 2.0)
    fixed = truth.warp(img, mode="nearest") + rng.normal(0, 0.05, img.shape)
    kw = {"grid_spacing": 8, "levels": 1, "max_iter": 40}
    rough = register_bspline(be.asarray(fixed), be.asarray(img), **kw)
    smooth = register_bspline(be.asarray(fixed), be.asarray(img), bending_weight=50.0, divergence_weight=1.0,
                              curl_weight=1.0, **kw)

    def bending(t):
        u = be.to_numpy(t.displacement(img.shape))
        return sum(float((np.gradient(np.gradient(c, axis=a), axis=b) ** 2).sum()) for c in u for a in (0, 1) for b in (0, 1))

    assert bending(smooth) < 0.5 * bending(rough)


def test_bad_input(be):
    x = be.asarray(np.zeros((32, 32)))
    with pytest.raises(ValueError, match="metric"):
        register_bspline(x, x, grid_spacing=8, metric="mi")
    with pytest.raises(ValueError, match="spacing"):
        register_bspline(x, x, grid_spacing=-1)
    with pytest.raises(ValueError, match="levels"):
        register_bspline(x, x, grid_spacing=8, levels=0)
    with pytest.raises(ValueError, match="fixed and moving"):
        register_bspline(x, be.asarray(np.zeros((32, 30))), grid_spacing=8)
    with pytest.raises(ValueError, match="landmarks"):
        register_bspline(x, x, grid_spacing=8, landmarks=(np.zeros((3, 2)), np.zeros((4, 2))), landmark_weight=1)
    with pytest.raises(ValueError, match="coefficients"):
        BSplineTransform((5, 5), 8.0, np.zeros((2, 4, 5)))
    with pytest.raises(ValueError, match="control_shape"):
        BSplineTransform((3, 5), 8.0)
