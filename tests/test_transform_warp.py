"""warp_affine / warp_perspective / remap against OpenCV and SciPy."""

from __future__ import annotations

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
ndi = pytest.importorskip("scipy.ndimage")

from gpuimg import transform  # noqa: E402
from gpuimg._prims import taps  # noqa: E402

BORDERS = {
    "grid-constant": cv2.BORDER_CONSTANT,
    "nearest": cv2.BORDER_REPLICATE,
    "reflect": cv2.BORDER_REFLECT,
    "mirror": cv2.BORDER_REFLECT_101,
    "wrap": cv2.BORDER_WRAP,
}
FLAGS = {
    "nearest": cv2.INTER_NEAREST,
    "linear": cv2.INTER_LINEAR,
    "cubic": cv2.INTER_CUBIC,
    "lanczos4": cv2.INTER_LANCZOS4,
}


def smooth(shape, rng, dtype=np.float32):
    """A smooth image in [0, 1] (random low frequencies)."""
    h, w = shape
    yy, xx = np.mgrid[:h, :w]
    out = np.full(shape, 0.5)
    for _ in range(3):
        fy, fx = rng.uniform(0.05, 0.25, 2)
        py, px = rng.uniform(0, 2 * np.pi, 2)
        out += 0.15 * np.sin(fx * xx + px) * np.cos(fy * yy + py)
    return out.astype(dtype)


def smooth_maps(shape, rng):
    h, w = shape
    yy, xx = np.mgrid[:h, :w].astype(np.float64)
    mx = 0.93 * xx + 3.0 * np.sin(yy / 9.0 + rng.uniform()) + 2.0
    my = 1.07 * yy - 2.0 + 2.0 * np.cos(xx / 11.0 + rng.uniform())
    return mx.astype(np.float32), my.astype(np.float32)


def remap_by(how, be, img, mx, my, **opts):
    """``transform.remap``, or a ``RemapPlan`` of the same maps and options applied to ``img``."""
    img, mx, my = be.asarray(img), be.asarray(mx), be.asarray(my)
    if how == "remap":
        return transform.remap(img, mx, my, **opts)
    dtype = np.float64 if img.dtype == np.float64 else np.float32
    return transform.RemapPlan(mx, my, img.shape[-2:], dtype=dtype, **opts)(img)


@pytest.mark.parametrize("how", ["remap", "plan"])
@pytest.mark.parametrize("runs", ["full", "pairs"])
@pytest.mark.parametrize("mode", sorted(BORDERS))
@pytest.mark.parametrize("interpolation", sorted(FLAGS))
def test_remap_matches_opencv(be, rng, mode, interpolation, runs, how, monkeypatch):
    if runs == "pairs":
        # the NumPy sampler's fallback for images whose tap runs would pass its memory cap:
        # runs of two taps, gathered piece by piece
        if be.is_gpu:
            pytest.skip("the tap runs are the NumPy sampler's")
        monkeypatch.setattr(taps, "RUNS_MAX_BYTES", 1)
    img = smooth((53, 71), rng)
    mx, my = smooth_maps((47, 66), rng)
    ref = cv2.remap(img, mx, my, FLAGS[interpolation], borderMode=BORDERS[mode], borderValue=0.3)
    got = be.to_numpy(remap_by(how, be, img, mx, my, interpolation=interpolation, mode=mode, cval=0.3))
    assert got.shape == ref.shape and got.dtype == np.float32
    diff = np.abs(got - ref)
    if interpolation == "nearest":
        # OpenCV rounds positions to 1/32 first; only exact ties may pick the other pixel
        assert (diff > 1e-6).mean() < 0.01
    else:
        assert diff.mean() <= 2e-3
        assert diff.max() <= 0.03


@pytest.mark.parametrize("mode", ["constant", "grid-constant", "nearest", "reflect", "mirror"])
@pytest.mark.parametrize("order", [0, 1])
def test_warp_affine_matches_scipy(be, rng, mode, order):
    img = rng.random((40, 57))
    m = np.array([[0.9, 0.3, 5.3], [-0.25, 1.1, -3.1]])
    inv = np.linalg.inv(np.vstack([m, [0, 0, 1]]))
    ref = ndi.affine_transform(img, inv[:2, :2][::-1, ::-1], offset=inv[:2, 2][::-1], order=order,
                               mode=mode, cval=0.3, output_shape=(45, 50))
    got = transform.warp_affine(be.asarray(img), m, (45, 50), interpolation=["nearest", "linear"][order],
                                mode=mode, cval=0.3)
    np.testing.assert_allclose(be.to_numpy(got), ref, atol=1e-5, rtol=0)


def warp_by(how, be, img, matrix, output_shape=None, **opts):
    """``warp_affine`` / ``warp_perspective`` (by the matrix's shape), or
    ``RemapPlan.from_matrix`` with the same options applied to ``img``."""
    if how == "plan":
        return transform.RemapPlan.from_matrix(matrix, img.shape[-2:], output_shape, backend=be.name,
                                               **opts)(be.asarray(img))
    warp = transform.warp_affine if np.shape(matrix)[0] == 2 else transform.warp_perspective
    return warp(be.asarray(img), matrix, output_shape, **opts)


@pytest.mark.parametrize("how", ["warp", "plan"])
@pytest.mark.parametrize("interpolation", ["linear", "cubic", "lanczos4"])
def test_warp_affine_matches_opencv(be, rng, interpolation, how):
    img = smooth((64, 80), rng)
    m = cv2.getRotationMatrix2D((40.0, 30.0), 23.0, 0.8)
    m[:, 2] += (2.5, -1.25)
    ref = cv2.warpAffine(img, m, (70, 60), flags=FLAGS[interpolation], borderMode=cv2.BORDER_REFLECT_101)
    got = be.to_numpy(warp_by(how, be, img, m, (60, 70), interpolation=interpolation, mode="mirror"))
    assert np.abs(got - ref).mean() <= 2e-3
    # inverse_map takes the destination -> source matrix as is
    inv = cv2.invertAffineTransform(m)
    ref2 = cv2.warpAffine(img, inv, (70, 60), flags=FLAGS[interpolation] | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REFLECT_101)
    got2 = warp_by(how, be, img, inv, (60, 70), interpolation=interpolation, mode="mirror", inverse_map=True)
    assert np.abs(be.to_numpy(got2) - ref2).mean() <= 2e-3


@pytest.mark.parametrize("how", ["warp", "plan"])
@pytest.mark.parametrize("interpolation", ["nearest", "linear", "cubic"])
def test_warp_perspective_matches_opencv(be, rng, interpolation, how):
    img = smooth((64, 64), rng)
    src = np.float32([[0, 0], [63, 0], [63, 63], [0, 63]])
    dst = np.float32([[4, 2], [60, 7], [58, 61], [1, 55]])
    hmat = cv2.getPerspectiveTransform(src, dst)
    ref = cv2.warpPerspective(img, hmat, (64, 64), flags=FLAGS[interpolation],
                              borderMode=cv2.BORDER_CONSTANT, borderValue=0.25)
    got = be.to_numpy(warp_by(how, be, img, hmat, interpolation=interpolation, mode="grid-constant", cval=0.25))
    diff = np.abs(got - ref)
    if interpolation == "nearest":
        assert (diff > 1e-6).mean() < 0.01
    else:
        assert diff.mean() <= 2e-3


def test_integer_input_rounds_and_saturates_like_opencv(be, rng):
    img = (smooth((50, 60), rng, np.float64) * 255).astype(np.uint8)
    img[10:20, 10:20] = 255  # sharp edges make cubic overshoot past 255
    m = cv2.getRotationMatrix2D((30.0, 25.0), 17.0, 1.3)
    ref = cv2.warpAffine(img, m, (60, 50), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    got = be.to_numpy(transform.warp_affine(be.asarray(img), m, interpolation="cubic", mode="nearest"))
    assert got.dtype == np.uint8
    assert np.abs(got.astype(int) - ref).max() <= 3
    assert np.abs(got.astype(int) - ref).mean() <= 0.2
    img16 = (smooth((30, 30), rng, np.float64) * 65535).astype(np.uint16)
    ref16 = cv2.warpAffine(img16, m, (30, 30), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    got16 = be.to_numpy(transform.warp_affine(be.asarray(img16), m, mode="nearest"))
    assert got16.dtype == np.uint16
    assert np.abs(got16.astype(int) - ref16).mean() <= 40


def test_batch_and_channels_equal_loop(be, rng):
    imgs = np.stack([smooth((33, 41), rng) for _ in range(3)])
    m = np.array([[1.1, 0.1, -2.0], [0.05, 0.9, 1.5]])
    whole = be.to_numpy(transform.warp_affine(be.asarray(imgs), m, (30, 44), interpolation="cubic",
                                              mode="reflect"))
    for k in range(3):
        one = be.to_numpy(transform.warp_affine(be.asarray(imgs[k]), m, (30, 44), interpolation="cubic",
                                                mode="reflect"))
        np.testing.assert_array_equal(whole[k], one)
    hwc = np.moveaxis(imgs, 0, -1)
    ref = cv2.warpAffine(hwc, m, (44, 30), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    got = be.to_numpy(transform.warp_affine(be.asarray(hwc), m, (30, 44), interpolation="cubic",
                                            mode="reflect", channel_axis=-1))
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, np.moveaxis(whole, 0, -1), atol=1e-6)
    assert np.abs(got - ref).mean() <= 2e-3


@pytest.mark.parametrize("mode", ["mirror", "grid-constant", "nearest"])
def test_single_row_and_column_images(be, rng, mode):
    row = smooth((1, 40), rng)
    m = np.array([[1.0, 0.0, 2.3], [0.0, 1.0, 0.0]])
    ref = cv2.warpAffine(row, m, (40, 1), flags=cv2.INTER_LINEAR, borderMode=BORDERS[mode])
    got = be.to_numpy(transform.warp_affine(be.asarray(row), m, mode=mode))
    np.testing.assert_allclose(got, ref.reshape(1, 40), atol=2e-3)
    col = np.ascontiguousarray(row.T)
    ref = cv2.warpAffine(col, m[:, [1, 0, 2]][[1, 0]], (1, 40), flags=cv2.INTER_LINEAR, borderMode=BORDERS[mode])
    got = be.to_numpy(transform.warp_affine(be.asarray(col), m[:, [1, 0, 2]][[1, 0]], mode=mode))
    np.testing.assert_allclose(got, ref.reshape(40, 1), atol=2e-3)


def test_remap_non_finite_positions_give_cval(be):
    img = np.ones((8, 8))
    mx = np.full((2, 3), 3.0)
    my = np.full((2, 3), 3.0)
    mx[0, 1] = np.nan
    got = be.to_numpy(transform.remap(be.asarray(img), be.asarray(mx), be.asarray(my), mode="nearest", cval=-1.0))
    np.testing.assert_array_equal(got, [[1, -1, 1], [1, 1, 1]])


def test_bad_input(be):
    img = be.asarray(np.zeros((10, 12)))
    m = np.eye(2, 3)
    with pytest.raises(ValueError, match="matrix"):
        transform.warp_affine(img, np.eye(3))
    with pytest.raises(ValueError, match="matrix"):
        transform.warp_affine(img, np.zeros((2, 3)))
    with pytest.raises(ValueError, match="matrix"):
        transform.warp_perspective(img, np.ones((3, 3)))
    with pytest.raises(ValueError, match="output_shape"):
        transform.warp_affine(img, m, (0, 5))
    with pytest.raises(ValueError, match="output_shape"):
        transform.warp_affine(img, m, (-3, 5))
    with pytest.raises(ValueError, match="interpolation"):
        transform.warp_affine(img, m, interpolation="bicubic")
    with pytest.raises(ValueError, match="mode"):
        transform.warp_affine(img, m, mode="edge")
    with pytest.raises(ValueError, match="map_x and map_y"):
        transform.remap(img, be.asarray(np.zeros((4, 5))), be.asarray(np.zeros((5, 4))))
    with pytest.raises(ValueError, match="image"):
        transform.remap(be.asarray(np.zeros(5)), be.asarray(np.zeros((4, 5))), be.asarray(np.zeros((4, 5))))


def test_nan_fill_matches_opencv(be, rng):
    # NaN marks outside samples, as cv2.warpAffine's borderValue=NaN does
    import cv2

    x = rng.random((20, 24)).astype(np.float32)
    m = np.array([[1.0, 0.0, 5.5], [0.0, 1.0, -3.25]])
    got = be.to_numpy(transform.warp_affine(be.asarray(x), m, (20, 24), cval=np.nan))
    ref = cv2.warpAffine(x, m, (24, 20), borderMode=cv2.BORDER_CONSTANT, borderValue=np.nan)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    np.testing.assert_allclose(got[~np.isnan(got)], ref[~np.isnan(ref)], atol=1e-6)
    with pytest.raises(ValueError, match="cval"):
        transform.warp_affine(be.asarray((x * 255).astype(np.uint8)), m, (20, 24), cval=np.nan)


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
@pytest.mark.parametrize("interpolation", ["nearest", "linear", "cubic", "lanczos4"])
def test_remap_plan_batch_matches_opencv_per_image(be, rng, interpolation, dtype):
    # one plan serves a batch, channels last and every later image; integers round like OpenCV
    img = np.stack([smooth((40, 52), rng) for _ in range(3)])
    cval = 0.3
    if dtype == np.uint8:
        img, cval = np.round(img * 255).astype(np.uint8), 77
    mx, my = smooth_maps((36, 45), rng)
    ref = np.stack([cv2.remap(im, mx, my, FLAGS[interpolation], borderMode=cv2.BORDER_CONSTANT, borderValue=cval)
                    for im in img])
    # a non-finite position returns cval (OpenCV's result there depends on its code path)
    mx[5, 7] = np.nan
    ref[:, 5, 7] = cval
    plan = transform.RemapPlan(be.asarray(mx), be.asarray(my), (40, 52), interpolation=interpolation,
                               mode="grid-constant", cval=cval)
    for got in (be.to_numpy(plan(be.asarray(img))),
                np.moveaxis(be.to_numpy(plan(be.asarray(np.moveaxis(img, 0, -1)), channel_axis=-1)), -1, 0)):
        assert got.shape == ref.shape and got.dtype == dtype
        diff = np.abs(got.astype(np.float64) - ref)
        if interpolation == "nearest":
            assert (diff > 1e-6).mean() < 0.01
        elif dtype == np.uint8:
            assert diff.max() <= 8 and diff.mean() <= 0.5  # the float bounds in 8-bit steps, plus rounding
        else:
            assert diff.mean() <= 2e-3 and diff.max() <= 0.03


def test_remap_plan_area_equals_opencv_area_resize(be, rng):
    # footprint plan of a 3x shrink: OpenCV's INTER_AREA resize
    img = rng.random((36, 30))
    ref = cv2.resize(img, (10, 12), interpolation=cv2.INTER_AREA)
    yy, xx = np.mgrid[:12, :10].astype(np.float64)
    plan = transform.RemapPlan(be.asarray(3 * xx + 1), be.asarray(3 * yy + 1), (36, 30), interpolation="area",
                               dtype=np.float64)
    np.testing.assert_allclose(be.to_numpy(plan(be.asarray(img))), ref, atol=1e-12)
    assert plan.nbytes == 12 * 10 * 8 * 8  # a quad of four float64 corners per output pixel


def test_remap_plan_bad_input(be):
    mx = be.asarray(np.zeros((4, 5), dtype=np.float32))
    img = be.asarray(np.zeros((6, 7), dtype=np.float32))
    plan = transform.RemapPlan(mx, mx, (6, 7))
    with pytest.raises(ValueError, match="image must have the spatial shape"):
        plan(be.asarray(np.zeros((7, 6), dtype=np.float32)))
    with pytest.raises(ValueError, match="dtype=float64"):
        plan(be.asarray(np.zeros((6, 7))))
    with pytest.raises(ValueError, match="cval"):
        transform.RemapPlan(mx, mx, (6, 7), cval=np.nan)(be.asarray(np.zeros((6, 7), dtype=np.uint8)))
    with pytest.raises(ValueError, match="image_shape"):
        transform.RemapPlan(mx, mx, (0, 7))
    with pytest.raises(TypeError, match="dtype"):
        transform.RemapPlan(mx, mx, (6, 7), dtype=np.int32)
    with pytest.raises(ValueError, match="interpolation"):
        transform.RemapPlan(mx, mx, (6, 7), interpolation="bicubic")
    with pytest.raises(ValueError, match="mode"):
        transform.RemapPlan(mx, mx, (6, 7), mode="edge")
    with pytest.raises(ValueError, match="map_x and map_y"):
        transform.RemapPlan(mx, be.asarray(np.zeros((5, 4))), (6, 7))
    with pytest.raises(ValueError, match="map_x"):
        transform.RemapPlan(be.asarray(np.zeros(5)), be.asarray(np.zeros(5)), (6, 7))
    with pytest.raises(ValueError, match="matrix"):
        transform.RemapPlan.from_matrix(np.zeros((2, 3)), (6, 7), backend=be.name)
    with pytest.raises(ValueError, match="matrix"):
        transform.RemapPlan.from_matrix(np.eye(4), (6, 7), backend=be.name)
    with pytest.raises(ValueError, match="output_shape"):
        transform.RemapPlan.from_matrix(np.eye(3), (6, 7), (0, 3), backend=be.name)
    with pytest.raises(TypeError, match="inverse_map"):
        transform.RemapPlan.from_matrix(np.eye(3), (6, 7), inverse_map="yes", backend=be.name)
    assert transform.RemapPlan.from_matrix(np.eye(2, 3), (6, 7), (4, 5), backend=be.name)(img).shape == (4, 5)
    assert plan(img).shape == (4, 5)


def keys_cubic_by_definition(img, mx, my, mode, a=-0.75):
    """Keys' cubic convolution evaluated pixel by pixel: 4 x 4 taps around ``floor`` of each
    position, each tap index folded into the image by ``mode`` (reflect: half-sample
    symmetric, mirror: whole-sample symmetric, wrap: periodic)."""
    h, w = img.shape

    def fold(p, n):
        if mode == "wrap":
            return p % n
        if mode == "reflect":
            p %= 2 * n
            return p if p < n else 2 * n - 1 - p
        p %= 2 * n - 2
        return p if p < n else 2 * n - 2 - p

    def weight(t):
        t = abs(t)
        if t <= 1:
            return (a + 2) * t**3 - (a + 3) * t**2 + 1
        return a * t**3 - 5 * a * t**2 + 8 * a * t - 4 * a if t < 2 else 0.0

    out = np.zeros(mx.shape)
    for (i, j), u in np.ndenumerate(mx):
        v = float(my[i, j])
        x0, y0 = int(np.floor(u)), int(np.floor(v))
        out[i, j] = sum(weight(dy - (v - y0)) * weight(dx - (float(u) - x0)) * img[fold(y0 + dy, h), fold(x0 + dx, w)]
                        for dy in range(-1, 3) for dx in range(-1, 3))
    return out


@pytest.mark.parametrize("mode", ["reflect", "mirror", "wrap"])
@pytest.mark.parametrize("reach", [0.8, 3.5])
def test_remap_far_outside_periodic_modes(be, rng, mode, reach):
    # positions up to `reach` image sizes beyond the edges: one reflection or shift (0.8) and
    # several periods (3.5) take different folding paths on the CPU
    img = smooth((9, 11), rng)
    yy, xx = np.mgrid[:30, :34].astype(np.float64)
    mx = (xx / 33 * (1 + 2 * reach) - reach) * 11 + 0.3 * np.sin(yy)
    my = (yy / 29 * (1 + 2 * reach) - reach) * 9 + 0.3 * np.cos(xx)
    mx, my = mx.astype(np.float32), my.astype(np.float32)
    for interpolation in ("nearest", "linear", "cubic"):
        got = be.to_numpy(transform.remap(be.asarray(img), be.asarray(mx), be.asarray(my),
                                          interpolation=interpolation, mode=mode))
        if interpolation == "cubic":
            # OpenCV's INTER_CUBIC leaves the definition more than about one period out
            # (mean error 0.024-0.029 at 3.5 periods): the reference is the definition itself,
            # to the sampler's 1/1024-pixel weights
            np.testing.assert_allclose(got, keys_cubic_by_definition(img, mx, my, mode), atol=2e-4)
            continue
        diff = np.abs(got - cv2.remap(img, mx, my, FLAGS[interpolation], borderMode=BORDERS[mode]))
        if interpolation == "nearest":
            assert (diff > 1e-6).mean() < 0.02
        else:
            assert diff.max() <= 1e-5
