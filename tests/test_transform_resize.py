"""resize / pyr_down / pyr_up against OpenCV, Pillow and hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
Image = pytest.importorskip("PIL.Image")

from gpuimg import transform  # noqa: E402

CV_FLAGS = {
    "area": cv2.INTER_AREA,
    "nearest": cv2.INTER_NEAREST,
    "linear": cv2.INTER_LINEAR,
    "cubic": cv2.INTER_CUBIC,
    "lanczos4": cv2.INTER_LANCZOS4,
}
PIL_FILTERS = {
    "box": Image.Resampling.BOX,
    "linear": Image.Resampling.BILINEAR,
    "cubic": Image.Resampling.BICUBIC,
    "lanczos3": Image.Resampling.LANCZOS,
}
# (input, output): factors 1.5, 2.5, 7, integer, odd, 1xN, Nx1, mixed up/down, enlargement
SIZES = [
    ((96, 90), (64, 36)),  # 1.5, 2.5
    ((70, 63), (10, 9)),  # 7
    ((64, 64), (32, 16)),  # integer 2, 4
    ((61, 77), (40, 30)),  # odd, fractional
    ((1, 50), (1, 20)),
    ((45, 1), (7, 1)),
    ((40, 30), (16, 75)),  # one axis down, one up
    ((23, 31), (57, 80)),  # enlargement
]


def opencv_resize(img, shape, flag):
    out = cv2.resize(img, (shape[1], shape[0]), interpolation=flag)
    return out.reshape(shape)


def pillow_resize(img, shape, filt):
    return np.asarray(Image.fromarray(img.astype(np.float32), mode="F").resize((shape[1], shape[0]), filt))


CASES = [("opencv", k) for k in sorted(CV_FLAGS)] + [("pillow", k) for k in sorted(PIL_FILTERS)]


@pytest.mark.parametrize("sizes", SIZES, ids=lambda s: f"{s[0]}->{s[1]}")
@pytest.mark.parametrize("reference,interpolation", CASES)
def test_resize_matches_reference(be, rng, sizes, reference, interpolation):
    # OpenCV's kernels with antialias=False, Pillow's widened filters with antialias=True
    src, dst = sizes
    img = rng.random(src).astype(np.float32)
    if reference == "opencv":
        ref = opencv_resize(img, dst, CV_FLAGS[interpolation])
    else:
        ref = pillow_resize(img, dst, PIL_FILTERS[interpolation])
    got = be.to_numpy(transform.resize(be.asarray(img), dst, interpolation=interpolation,
                                       antialias=reference == "pillow"))
    assert got.dtype == np.float32
    tol = 1e-5 if interpolation == "area" else 1e-4
    np.testing.assert_allclose(got, ref, atol=tol, rtol=0)


def test_resize_hand_computed_values(be):
    # INTER_AREA 3 -> 2: each output averages 1.5 samples with exact overlap fractions
    x = np.array([[0.0, 3.0, 6.0]])
    got = be.to_numpy(transform.resize(be.asarray(x), (1, 2), interpolation="area"))
    np.testing.assert_allclose(got, [[1.0, 5.0]], atol=1e-12)
    # Pillow's bilinear 2 -> 4: centres at 0.25, 0.75, 1.25, 1.75, edge taps dropped
    x = np.array([[0.0, 1.0]])
    got = be.to_numpy(transform.resize(be.asarray(x), (1, 4), interpolation="linear"))
    np.testing.assert_allclose(got, [[0.0, 0.25, 0.75, 1.0]], atol=1e-12)


def test_resize_float64_and_integer_dtypes(be, rng):
    img = rng.random((50, 45))
    got = be.to_numpy(transform.resize(be.asarray(img), (20, 18)))
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, cv2.resize(img, (18, 20), interpolation=cv2.INTER_AREA), atol=1e-12)
    u8 = (rng.random((50, 45)) * 255).astype(np.uint8)
    for interp in ("area", "linear", "cubic"):
        ref = opencv_resize(u8, (20, 18), CV_FLAGS[interp])
        got = be.to_numpy(transform.resize(be.asarray(u8), (20, 18), interpolation=interp, antialias=False))
        assert got.dtype == np.uint8
        assert np.abs(got.astype(int) - ref).max() <= 1
    u16 = (rng.random((33, 40)) * 65535).astype(np.uint16)
    ref = opencv_resize(u16, (70, 13), cv2.INTER_CUBIC)  # cubic overshoot saturates
    got = be.to_numpy(transform.resize(be.asarray(u16), (70, 13), interpolation="cubic", antialias=False))
    assert got.dtype == np.uint16 and np.abs(got.astype(int) - ref).max() <= 1


def test_resize_batch_and_channels_equal_loop(be, rng):
    imgs = rng.random((3, 37, 52)).astype(np.float32)
    whole = be.to_numpy(transform.resize(be.asarray(imgs), (15, 20)))
    for k in range(3):
        np.testing.assert_allclose(whole[k], be.to_numpy(transform.resize(be.asarray(imgs[k]), (15, 20))), atol=1e-6)
    hwc = np.ascontiguousarray(np.moveaxis(imgs, 0, -1))
    got = be.to_numpy(transform.resize(be.asarray(hwc), (15, 20), channel_axis=-1))
    ref = cv2.resize(hwc, (20, 15), interpolation=cv2.INTER_AREA)
    np.testing.assert_allclose(got, ref, atol=1e-5)


@pytest.mark.parametrize("shape", [(64, 64), (61, 77), (1, 9), (9, 1), (5, 6), (2, 3)])
def test_pyramids_match_opencv(be, rng, shape):
    img = rng.random(shape).astype(np.float32)
    down = be.to_numpy(transform.pyr_down(be.asarray(img)))
    up = be.to_numpy(transform.pyr_up(be.asarray(img)))
    np.testing.assert_allclose(down, cv2.pyrDown(img).reshape(down.shape), atol=1e-6)
    np.testing.assert_allclose(up, cv2.pyrUp(img).reshape(up.shape), atol=1e-6)
    assert down.shape == ((shape[0] + 1) // 2, (shape[1] + 1) // 2)
    assert up.shape == (2 * shape[0], 2 * shape[1])


def test_resize_mode_changes_the_edge_rule(be, rng):
    img = rng.random((40, 40))
    # with an explicit mode the Pillow cubic taps read mirrored pixels instead of being dropped
    got = be.to_numpy(transform.resize(be.asarray(img), (17, 17), interpolation="cubic", mode="mirror"))
    ref = pillow_resize(img, (17, 17), PIL_FILTERS["cubic"])
    assert np.abs(got - ref)[3:-3, 3:-3].max() < 1e-6  # interior unchanged
    assert np.abs(got - ref).max() > 1e-4  # edges differ


def test_bad_input(be):
    img = be.asarray(np.zeros((10, 12)))
    with pytest.raises(ValueError, match="output_shape"):
        transform.resize(img, (0, 5))
    with pytest.raises(ValueError, match="output_shape"):
        transform.resize(img, (5, -1))
    with pytest.raises(ValueError, match="output_shape"):
        transform.resize(img, (5, 5, 5))
    with pytest.raises(ValueError, match="interpolation"):
        transform.resize(img, (5, 5), interpolation="bilinear")
    with pytest.raises(ValueError, match="antialias"):
        transform.resize(img, (5, 5), interpolation="lanczos4", antialias=True)
    with pytest.raises(ValueError, match="mode"):
        transform.resize(img, (5, 5), mode="symmetric")
    with pytest.raises(ValueError, match="image"):
        transform.resize(be.asarray(np.zeros(4)), (5, 5))
    with pytest.raises(ValueError, match="channel_axis"):
        transform.resize(img, (5, 5), channel_axis=3)


def test_same_shape_resize_is_a_new_array(be, rng):
    # OpenCV returns a copy for an unchanged size; so must we (never a view of the input)
    import cv2

    x = rng.random((17, 23)).astype(np.float32)
    xb = be.asarray(x)
    for interpolation in ("area", "linear", "nearest"):
        out = transform.resize(xb, x.shape, interpolation=interpolation, antialias=False)
        np.testing.assert_array_equal(be.to_numpy(out), cv2.resize(x, (23, 17), interpolation=cv2.INTER_LINEAR))
        assert not np.shares_memory(be.to_numpy(out), x) and not be.xp.shares_memory(out, xb)
