"""Local thresholds against scikit-image, polyline fits against pwlf, bead geometry against
the analytic geometry of a synthetic bead."""

import math

import numpy as np
import pwlf
import pytest
from scipy import ndimage
from skimage.filters import threshold_local as sk_threshold_local

from gpuimg import denoise, segment

MODES = ["reflect", "mirror", "nearest", "constant", "wrap"]


@pytest.mark.parametrize("method", segment.THRESHOLD_METHODS)
@pytest.mark.parametrize("mode", MODES)
def test_threshold_local_equals_skimage(be, rng, method, mode):
    x = rng.random((40, 53)).astype(np.float32)
    ref = sk_threshold_local(x, 9, method, offset=0.03, mode=mode, cval=0.4)
    got = segment.threshold_local(be.asarray(x), 9, method=method, offset=0.03, mode=mode, cval=0.4)
    assert got.dtype == np.float32
    np.testing.assert_allclose(be.to_numpy(got), ref, rtol=0, atol=1e-6)


def test_threshold_local_options_and_batch(be, rng):
    x = rng.random((2, 36, 30))
    got = be.to_numpy(segment.threshold_local(be.asarray(x), (7, 11), method="gaussian", param=(2.0, 1.5)))
    for i in range(2):
        ref = sk_threshold_local(x[i], (7, 11), "gaussian", param=(2.0, 1.5))
        np.testing.assert_allclose(got[i], ref, rtol=0, atol=1e-6)
    xi = (rng.random((20, 20)) * 255).astype(np.uint8)
    got = segment.threshold_local(be.asarray(xi), 5, method="mean")
    assert got.dtype == np.float64
    np.testing.assert_allclose(be.to_numpy(got), sk_threshold_local(xi, 5, "mean"), rtol=0, atol=1e-6)


@pytest.mark.parametrize("kwargs,name", [
    (dict(block_size=4), "block_size"),
    (dict(block_size=1), "block_size"),
    (dict(block_size=(3, 5, 7)), "block_size"),
    (dict(block_size=5, method="otsu"), "method"),
    (dict(block_size=5, mode="bogus"), "mode"),
    (dict(block_size=5, method="gaussian", param=-1.0), "param"),
])
def test_threshold_local_bad_input(kwargs, name):
    with pytest.raises(ValueError, match=name):
        segment.threshold_local(np.zeros((10, 10)), **kwargs)


def _noisy_polyline(rng, xs, vx, vy, noise):
    return np.interp(xs, vx, vy) + noise * rng.standard_normal(xs.size)


def test_fit_polyline_trapezoid_matches_pwlf_optimum(rng):
    xs = np.arange(120.0)
    vx = [0, 30, 50, 80, 100, 119]
    y = _noisy_polyline(rng, xs, vx, [5, 6, 25, 26, 7, 8], 0.3)
    fit = segment.fit_polyline(xs, y, n_segments=5)
    oracle = pwlf.PiecewiseLinFit(xs, y, seed=7)
    oracle.fit(5)
    assert fit.sse <= oracle.ssr * (1 + 1e-7)
    np.testing.assert_allclose(fit.breakpoints, vx, atol=0.5)
    # the breakpoints are optimal: pwlf's fit at our breakpoints gives our residual
    assert oracle.fit_with_breaks(fit.breakpoints) == pytest.approx(fit.sse, rel=1e-9)
    np.testing.assert_allclose(fit.predict(xs), oracle.predict(xs), atol=1e-3)
    assert fit.rms == pytest.approx(math.sqrt(fit.sse / xs.size))


def test_fit_polyline_triangle_and_unsorted_input(rng):
    xs = rng.uniform(0, 60, 90)
    y = _noisy_polyline(rng, xs, [0, 23.3, 60], [0, 15, 2], 0.2)
    fit = segment.fit_polyline(xs, y, n_segments=2)
    oracle = pwlf.PiecewiseLinFit(xs, y, seed=3)
    oracle.fit(2)
    assert fit.sse <= oracle.ssr * (1 + 1e-7)
    assert abs(fit.breakpoints[1] - 23.3) < 0.5
    # continuity: the polyline through the vertices is the fit (numpy.interp as reference)
    grid = np.linspace(xs.min(), xs.max(), 57)
    np.testing.assert_allclose(fit.predict(grid), np.interp(grid, *fit.vertices.T), atol=1e-9)


def test_fit_polyline_weights_equal_repeated_samples(rng):
    xs = np.arange(50.0)
    y = _noisy_polyline(rng, xs, [0, 20, 49], [0, 10, 4], 0.3)
    w = np.where(xs % 3 == 0, 2.0, 1.0)
    fit = segment.fit_polyline(xs, y, n_segments=2, weights=w)
    rep = w.astype(int)
    oracle = pwlf.PiecewiseLinFit(np.repeat(xs, rep), np.repeat(y, rep), seed=1)
    oracle.fit(2)
    assert fit.sse <= oracle.ssr * (1 + 1e-7)
    np.testing.assert_allclose(fit.breakpoints, oracle.fit_breaks, atol=1e-3)


def test_fit_polyline_max_error_uses_fewest_segments(rng):
    xs = np.arange(80.0)
    y = _noisy_polyline(rng, xs, [0, 25, 50, 79], [0, 20, 5, 12], 0.2)
    fit = segment.fit_polyline(xs, y, max_error=0.3)
    assert fit.n_segments == 3 and fit.rms <= 0.3
    fewer = pwlf.PiecewiseLinFit(xs, y, seed=2)
    fewer.fit(2)  # the best two-piece fit is worse than the bound
    assert math.sqrt(fewer.ssr / xs.size) > 0.3
    with pytest.raises(ValueError, match="max_error"):
        segment.fit_polyline(xs[:13], y[:13], max_error=1e-6)  # 6 pieces: 12 parameters, 13 noisy samples


@pytest.mark.parametrize("n", [40, 1500])  # 1500 > the candidate limit: thinned DP + local moves
def test_fit_polyline_discontinuous_is_the_best_split(rng, n):
    xs = np.linspace(0, 40, n)
    y = np.where(xs < 17, 0.5 * xs, 20 - 0.2 * xs) + 0.3 * rng.standard_normal(xs.size)
    fit = segment.fit_polyline(xs, y, n_segments=2, continuous=False)
    best = min(
        sum(np.sum((np.polyval(np.polyfit(xs[s], y[s], 1), xs[s]) - y[s]) ** 2) for s in (slice(0, k), slice(k, None)))
        for k in range(2, xs.size - 1)
    )
    assert fit.sse == pytest.approx(best, rel=1e-9)
    assert 16.5 < fit.breakpoints[1] < 17.5


def test_fit_polyline_zero_weights_and_short_end_pieces(rng):
    # zero-weight samples leave the objective: the fit equals the brute-force best split of
    # the others (np.polyfit per piece) and still spans every sample's x
    xs = np.arange(30.0)
    y = np.where(xs < 18, 0.4 * xs, 14 - 0.3 * xs) + 0.1 * rng.standard_normal(xs.size)
    w = np.where(xs < 6, 0.0, 1.0)
    fit = segment.fit_polyline(xs, y, n_segments=2, continuous=False, weights=w)
    xk, yk = xs[6:], y[6:]
    best = min(
        sum(np.sum((np.polyval(np.polyfit(xk[s], yk[s], 1), xk[s]) - yk[s]) ** 2) for s in (slice(0, k), slice(k, None)))
        for k in range(2, xk.size - 1)
    )
    assert fit.sse == pytest.approx(best, rel=1e-9) and fit.breakpoints[0] == 0 and fit.breakpoints[-1] == 29
    with pytest.raises(ValueError, match="positive weight"):
        segment.fit_polyline(np.arange(7.0), np.arange(7.0), n_segments=3, continuous=False, weights=[0, 0, 0, 1, 1, 1, 1])
    # a continuous end piece keeps two samples: pwlf's optimum here is a one-sample piece of
    # slope ~1e4 (a jump in disguise), whose residual ours matches without it
    x6 = np.arange(6.0)
    y6 = np.array([0, -1.4, 0.3, -0.7, 0.9, -0.1])
    fit = segment.fit_polyline(x6, y6, n_segments=2)
    oracle = pwlf.PiecewiseLinFit(x6, y6, seed=5)
    oracle.fit(2)
    assert fit.breakpoints[1] >= 1 and np.all(np.abs(fit.slopes) < 10)
    assert fit.sse <= oracle.ssr * (1 + 1e-6)


@pytest.mark.parametrize("kwargs,name", [
    (dict(n_segments=6), "n_segments"),
    (dict(n_segments=0), "n_segments"),
    (dict(), "n_segments"),
    (dict(n_segments=2, max_error=1.0), "max_error"),
    (dict(max_error=-1.0), "max_error"),
    (dict(n_segments=2, weights=-np.ones(10)), "weights"),
])
def test_fit_polyline_bad_input(kwargs, name):
    with pytest.raises(ValueError, match=name):
        segment.fit_polyline(np.arange(10.0), np.arange(10.0), **kwargs)


def test_bead_profile_takes_largest_object(be):
    mask = np.zeros((20, 30), dtype=bool)
    mask[12:, :] = True
    mask[9:12, 10:18] = True   # bead on the plate
    mask[2:4, 3:6] = True      # speck, smaller, not connected
    got = be.to_numpy(segment.bead_profile(be.asarray(mask)))
    labels, _ = ndimage.label(mask, structure=np.ones((3, 3)))
    big = labels == np.argmax(np.bincount(labels.ravel())[1:]) + 1
    top = np.array([np.flatnonzero(big[:, c])[0] for c in range(30)])
    np.testing.assert_array_equal(got, 20 - top)
    bottom = be.to_numpy(segment.bead_profile(be.asarray(mask[::-1]), side="bottom"))
    np.testing.assert_array_equal(bottom, 20 - top)


def test_bead_profile_bad_input(be):
    with pytest.raises(ValueError, match="mask"):
        segment.bead_profile(be.asarray(np.zeros((5, 5))))
    with pytest.raises(ValueError, match="side"):
        segment.bead_profile(be.asarray(np.ones((5, 5))), side="left")
    with pytest.raises(ValueError, match="n_segments"):
        segment.bead_geometry(be.asarray(np.ones((5, 5))), n_segments=2)


def _analytic_geometry(v):
    """Height, width, flank angles and area of the bead drawn through vertices v[1..4]."""
    tl, tr = v[1], v[4]
    base = tr - tl
    width = math.hypot(*base)
    normal = np.array([-base[1], base[0]]) / width
    height = float((v[2] - tl) @ normal)

    def angle(a, b):
        return math.degrees(math.acos(a @ b / (np.linalg.norm(a) * np.linalg.norm(b))))

    xs = np.linspace(tl[0], tr[0], 20001)
    excess = np.interp(xs, v[:, 0], v[:, 1]) - np.interp(xs, [tl[0], tr[0]], [tl[1], tr[1]])
    area = float(np.sum((excess[1:] + excess[:-1]) / 2 * np.diff(xs)))
    return height, width, angle(v[2] - v[1], base), angle(v[3] - v[4], -base), area


@pytest.mark.parametrize("seed", [0, 1])
def test_bead_pipeline_recovers_geometry(be, seed):
    image, vertices = segment.synthetic_bead(seed=seed)
    smooth = denoise.bilateral(be.asarray(image), sigma_color=0.15, sigma_spatial=2.0, win_size=7)
    mask = smooth > segment.threshold_local(smooth, 41, offset=-0.05)
    geo = segment.bead_geometry(mask)
    height, width, left, right, area = _analytic_geometry(vertices)
    assert abs(geo.height - height) <= 1.0
    assert abs(geo.width - width) <= 2.0
    assert abs(geo.left_angle - left) <= 1.0
    assert abs(geo.right_angle - right) <= 1.0
    assert abs(geo.area - area) <= 0.05 * area
    np.testing.assert_allclose(geo.toe_left, vertices[1], atol=1.5)
    np.testing.assert_allclose(geo.toe_right, vertices[4], atol=1.5)


def test_bead_geometry_from_profile_of_triangle():
    # an exact triangular bead profile: geometry by trigonometry
    xs = np.arange(100.0)
    z = np.interp(xs, [0, 30, 50, 70, 99], [10, 10, 30, 10, 10])
    geo = segment.bead_geometry(z, n_segments=4)
    assert geo.width == pytest.approx(40, abs=1e-6)
    assert geo.height == pytest.approx(20, abs=1e-6)
    assert geo.left_angle == pytest.approx(45, abs=1e-6)
    assert geo.right_angle == pytest.approx(45, abs=1e-6)
    assert geo.area == pytest.approx(400, abs=1e-4)


def test_weld_bead_example_draws_the_fit(tmp_path):
    import importlib.util
    from pathlib import Path

    from PIL import Image

    path = Path(__file__).resolve().parent.parent / "examples" / "weld_bead.py"
    spec = importlib.util.spec_from_file_location("weld_bead_example", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "bead.png"
    mod.main(["--out", str(out)])
    png = np.asarray(Image.open(out).convert("RGB")).astype(int)
    red = (png[..., 0] > 200) & (png[..., 1] < 80) & (png[..., 2] < 80)
    assert png.shape == (128 * 3, 256 * 3, 3)
    assert red.any(axis=0).mean() > 0.95  # the polyline spans the image
