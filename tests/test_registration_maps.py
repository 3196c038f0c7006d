"""MapSeries: analytic distortion laws, scipy.interpolate references, OpenCV maps, save/load."""

import cv2
import numpy as np
import pytest
import scipy.interpolate as si

from gpuimg.registration import BSplineTransform, Distortion, MapSeries

K = np.array([[300.0, 0, 80], [0, 300, 60], [0, 0, 1]])
SHAPE = (120, 160)
P = np.linspace(0.0, 5.0, 6)


def law(p):
    """Pressure law: k1 linear, k2 quadratic in p."""
    return [-0.08 + 0.02 * p, 0.01 + 0.004 * p * p, 0.0, 0.0]


def _cv_maps(p):
    return cv2.initUndistortRectifyMap(K, np.array(law(p)), None, K, SHAPE[::-1], cv2.CV_32FC1)


def test_analytic_law_cubic_within_a_hundredth_pixel(be):
    maps = [tuple(be.asarray(m.astype(np.float64)) for m in _cv_maps(p)) for p in P]
    series = MapSeries(P, maps)
    for p in (0.4, 1.5, 2.75, 4.9):
        mx, my = series.at(p, kind="cubic")
        rx, ry = _cv_maps(p)
        assert max(np.abs(be.to_numpy(mx) - rx).max(), np.abs(be.to_numpy(my) - ry).max()) < 0.01


def test_distortion_series_interpolates_coefficients(be):
    series = MapSeries(P, [Distortion(K, law(p)) for p in P])
    d = series.at(3.3, kind="cubic")
    np.testing.assert_allclose(d.coeffs, law(3.3), atol=1e-12)
    mx, my = d.undistort_maps(SHAPE, backend=be.name)
    rx, ry = _cv_maps(3.3)
    np.testing.assert_allclose(be.to_numpy(mx), rx, atol=1e-3)
    np.testing.assert_allclose(be.to_numpy(my), ry, atol=1e-3)


@pytest.mark.parametrize("kind,ref", [("linear", None), ("cubic", si.CubicSpline), ("pchip", si.PchipInterpolator)])
def test_interpolants_match_scipy(be, rng, kind, ref):
    x = np.array([0.0, 0.7, 2.0, 2.5, 4.0, 6.5])
    y = rng.standard_normal((6, 2, 5, 7))
    y[:, 0, 0, :3] = np.arange(6)[:, None] ** 2  # monotone data (pchip keeps it monotone)
    series = MapSeries(x, [be.asarray(v) for v in y])
    for p in (0.0, 0.35, 2.2, 3.1, 6.5, 7.5, -1.0):
        got = np.stack([be.to_numpy(a) for a in series.at(p, kind=kind, extrapolate=True)])
        if ref is None:
            i = int(np.clip(np.searchsorted(x, p, side="right") - 1, 0, 4))
            want = y[i] + (p - x[i]) / (x[i + 1] - x[i]) * (y[i + 1] - y[i])
            if 0 <= p <= 6.5:
                np.testing.assert_allclose(want[0, 0, 0], np.interp(p, x, y[:, 0, 0, 0]), atol=1e-12)
        else:
            want = ref(x, y, axis=0, extrapolate=True)(p)
        np.testing.assert_allclose(got, want, atol=1e-10)


def test_bspline_series_and_undistort(be, rng):
    t0 = BSplineTransform.for_shape((40, 40), 10.0)
    coefs = [rng.standard_normal(t0.coefficients.shape) * (1 + p) for p in P[:3]]
    series = MapSeries(P[:3], [BSplineTransform(t0.control_shape, 10.0, be.asarray(c)) for c in coefs])
    t = series.at(0.5)
    np.testing.assert_allclose(be.to_numpy(t.coefficients), 0.5 * (coefs[0] + coefs[1]), atol=1e-12)
    img = rng.random((40, 40))
    np.testing.assert_allclose(be.to_numpy(series.undistort(be.asarray(img), 0.5)),
                               be.to_numpy(t.warp(be.asarray(img), order=3, mode="grid-constant")), atol=1e-12)


def test_dense_undistort_equals_cv2_remap(be):
    yy, xx = np.mgrid[0:SHAPE[0], 0:SHAPE[1]]
    img = (0.5 + 0.3 * np.sin(xx / 6.0) * np.cos(yy / 8.0)).astype(np.float32)
    series = MapSeries(P, [tuple(be.asarray(m) for m in _cv_maps(p)) for p in P])
    got = be.to_numpy(series.undistort(be.asarray(img), 2.0, interpolation="linear"))
    rx, ry = _cv_maps(2.0)
    ref = cv2.remap(img, rx, ry, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    np.testing.assert_allclose(got[4:-4, 4:-4], ref[4:-4, 4:-4], atol=5e-3)


def test_save_load(tmp_path, be):
    for maps in ([Distortion(K, law(p)) for p in P], [np.stack(_cv_maps(p)) for p in P]):
        series = MapSeries(P, maps, metadata={"unit": "bar"})
        series.save(tmp_path / "s.npz")
        back = MapSeries.load(tmp_path / "s.npz")
        assert back.kind == series.kind and back.metadata == {"unit": "bar"}
        np.testing.assert_array_equal(back.parameters, P)
        a, b = series.at(1.234, kind="pchip"), back.at(1.234, kind="pchip")
        if series.kind == "dense":
            np.testing.assert_allclose(a[0], b[0], atol=1e-6)
        else:
            np.testing.assert_allclose(a.coeffs, b.coeffs, atol=1e-12)


def test_bad_input():
    maps = [Distortion(K, law(p)) for p in P]
    with pytest.raises(ValueError, match="parameters"):
        MapSeries(P[::-1], maps)
    with pytest.raises(ValueError, match="parameters"):
        MapSeries([0, 1, 1, 2, 3, 4], maps)
    with pytest.raises(ValueError, match="maps"):
        MapSeries(P[:3], maps)
    series = MapSeries(P, maps)
    with pytest.raises(ValueError, match="5.5"):
        series.at(5.5)
    with pytest.raises(ValueError, match="kind"):
        series.at(1.0, kind="quadratic")
