"""Footprint (box-over-quad coverage) warps: OpenCV INTER_AREA, SciPy bilinear, aliasing."""

from __future__ import annotations

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
ndi = pytest.importorskip("scipy.ndimage")

from gpuimg import transform  # noqa: E402


def downscale_matrix(k):
    """Source -> destination matrix of an integer shrink aligned like INTER_AREA."""
    off = -(k - 1) / (2.0 * k)
    return np.array([[1.0 / k, 0.0, off], [0.0, 1.0 / k, off]])


@pytest.mark.parametrize("k", [2, 3, 4])
def test_integer_downscale_equals_opencv_area(be, rng, k):
    img = rng.random((12 * k, 10 * k)).astype(np.float32)
    ref = cv2.resize(img, (10, 12), interpolation=cv2.INTER_AREA)
    m = downscale_matrix(k)
    got = be.to_numpy(transform.warp_affine(be.asarray(img), m, (12, 10), interpolation="area"))
    np.testing.assert_allclose(got, ref, atol=1e-5)
    h = np.vstack([m, [0, 0, 1]])
    got_p = be.to_numpy(transform.warp_perspective(be.asarray(img), h, (12, 10), antialias=True))
    np.testing.assert_allclose(got_p, ref, atol=1e-5)
    # the same footprints from maps (finite differences of the maps)
    yy, xx = np.mgrid[:12, :10].astype(np.float64)
    c = (k - 1) / 2.0
    got_r = transform.remap(be.asarray(img), be.asarray(k * xx + c), be.asarray(k * yy + c), interpolation="area")
    np.testing.assert_allclose(be.to_numpy(got_r), ref, atol=1e-5)


@pytest.mark.parametrize("how", ["warp", "plan"])
def test_rotated_integer_downscale_equals_rotated_opencv_area(be, rng, how):
    img = rng.random((24, 18))
    ref = np.rot90(cv2.resize(img, (6, 8), interpolation=cv2.INTER_AREA))
    # destination (x, y) reads source (3 (5 - y) + 1, 3 x + 1): a quarter turn and a 3x shrink
    inv = np.array([[0.0, -3.0, 16.0], [3.0, 0.0, 1.0]])
    if how == "plan":
        plan = transform.RemapPlan.from_matrix(inv, (24, 18), (6, 8), antialias=True, inverse_map=True,
                                               dtype=np.float64, backend=be.name)
        got = plan(be.asarray(img))
    else:
        got = transform.warp_affine(be.asarray(img), inv, (6, 8), antialias=True, inverse_map=True)
    np.testing.assert_allclose(be.to_numpy(got), ref, atol=1e-12)


def test_magnification_is_bilinear(be, rng):
    img = rng.random((20, 24))
    # enlarging along both axes: the footprint grows to one source pixel, i.e. bilinear
    m = np.array([[2.2, 0.0, 3.0], [0.0, 1.9, 1.0]])
    inv = np.linalg.inv(np.vstack([m, [0, 0, 1]]))
    ref = ndi.affine_transform(img, inv[:2, :2][::-1, ::-1], offset=inv[:2, 2][::-1], order=1,
                               mode="nearest", output_shape=(40, 50))
    got = be.to_numpy(transform.warp_affine(be.asarray(img), m, (40, 50), antialias=True, mode="nearest"))
    np.testing.assert_allclose(got, ref, atol=1e-10)


def zone_plate(n):
    """Chirp cos(pi r^2 / L) sampled at integer pixels; 0.45 cycles/pixel in the corners."""
    c = (n - 1) / 2.0
    length = np.hypot(c, c) / 0.45

    def f(x, y):
        return 0.5 + 0.5 * np.cos(np.pi * ((x - c) ** 2 + (y - c) ** 2) / length)

    yy, xx = np.mgrid[:n, :n].astype(np.float64)
    return f(xx, yy), f, c


def supersampled(f, inv, no, ss):
    """Box filter over each output pixel of the analytic ``f`` (ss x ss samples per pixel)."""
    qy, qx = np.mgrid[:no, :no].astype(np.float64)
    ref = np.zeros((no, no))
    offs = (np.arange(ss) + 0.5) / ss - 0.5
    for dy in offs:
        for dx in offs:
            px, py = qx + dx, qy + dy
            w = inv[2, 0] * px + inv[2, 1] * py + inv[2, 2]
            ref += f((inv[0, 0] * px + inv[0, 1] * py + inv[0, 2]) / w, (inv[1, 0] * px + inv[1, 1] * py + inv[1, 2]) / w)
    return ref / (ss * ss)


def test_zone_plate_aliasing(be):
    # the chirp rotated 30 degrees and shrunk 4x, against a 16x-supersampled box-filtered reference
    n, k, no, ss = 384, 4.0, 66, 16
    src, f, c = zone_plate(n)
    theta = np.deg2rad(30.0)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    co = (no - 1) / 2.0
    inv = np.eye(3)
    inv[:2, :2] = k * rot
    inv[:2, 2] = np.array([c, c]) - k * rot @ [co, co]
    m = np.linalg.inv(inv)[:2]
    ref = supersampled(f, inv, no, ss)

    def error_db(a):
        return 10 * np.log10(np.mean((a - ref) ** 2))

    ours = be.to_numpy(transform.warp_affine(be.asarray(src), m, (no, no), interpolation="area", mode="mirror"))
    point = cv2.warpAffine(src, m, (no, no), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    small = cv2.resize(src, (n // 4, n // 4), interpolation=cv2.INTER_AREA)
    inv2 = np.eye(3)
    inv2[:2, :2] = rot
    inv2[:2, 2] = np.full(2, (c - 1.5) / 4.0) - rot @ [co, co]
    two_step = cv2.warpAffine(small, np.linalg.inv(inv2)[:2], (no, no), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REFLECT_101)
    assert error_db(ours) <= error_db(point) - 10.0
    assert error_db(ours) < error_db(two_step)


def test_perspective_footprint_reduces_aliasing(be):
    src, f, c = zone_plate(256)
    s = np.float32([[0, 0], [255, 0], [255, 255], [0, 255]])
    d = np.float32([[10, 12], [52, 5], [60, 58], [3, 50]])
    hmat = cv2.getPerspectiveTransform(s, d)
    inv = np.linalg.inv(hmat)
    no = 64
    ref = supersampled(f, inv, no, 8)
    qy, qx = np.mgrid[:no, :no]
    inside = (qx > 12) & (qx < 50) & (qy > 14) & (qy < 48)
    ours = be.to_numpy(transform.warp_perspective(be.asarray(src), hmat, (no, no), antialias=True, mode="mirror"))
    point = cv2.warpPerspective(src, hmat, (no, no), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    err_ours = np.mean((ours - ref)[inside] ** 2)
    err_point = np.mean((point - ref)[inside] ** 2)
    assert 10 * np.log10(err_ours / err_point) <= -6.0


def test_footprint_batch_equals_loop_and_integer_output(be, rng):
    imgs = (rng.random((2, 30, 36)) * 255).astype(np.uint8)
    m = np.array([[0.4, 0.1, 1.0], [-0.1, 0.45, 2.0]])
    whole = be.to_numpy(transform.warp_affine(be.asarray(imgs), m, (14, 16), antialias=True, mode="reflect"))
    assert whole.dtype == np.uint8
    floats = imgs.astype(np.float64)
    whole_f = be.to_numpy(transform.warp_affine(be.asarray(floats), m, (14, 16), antialias=True, mode="reflect"))
    for k in range(2):
        one = transform.warp_affine(be.asarray(imgs[k]), m, (14, 16), antialias=True, mode="reflect")
        one_f = transform.warp_affine(be.asarray(floats[k]), m, (14, 16), antialias=True, mode="reflect")
        # the sums may group differently (thread chunks), so a value on .5 may round either way
        np.testing.assert_allclose(whole_f[k], be.to_numpy(one_f), rtol=0, atol=1e-9)
        assert np.abs(whole[k].astype(int) - be.to_numpy(one).astype(int)).max() <= 1
    # exact 2x shrink of an 8-bit image: OpenCV's INTER_AREA to within rounding
    ref = cv2.resize(imgs[0], (18, 15), interpolation=cv2.INTER_AREA)
    got = be.to_numpy(transform.warp_affine(be.asarray(imgs[0]), downscale_matrix(2), (15, 18), interpolation="area"))
    assert np.abs(got.astype(int) - ref).max() <= 1


def test_footprints_beyond_the_horizon_get_cval(be, rng):
    img = rng.random((32, 32))
    # inverse map with w = 1 - y / 20: rows y >= 20 of the output lie beyond the horizon
    inv = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, -0.05, 1.0]])
    got = be.to_numpy(transform.warp_perspective(be.asarray(img), inv, (32, 32), antialias=True,
                                                 inverse_map=True, mode="reflect", cval=-1.0))
    assert np.isfinite(got).all()
    np.testing.assert_array_equal(got[20:], -1.0)
    assert (got[:19] >= 0).all()
