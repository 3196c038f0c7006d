"""Bilateral filter against OpenCV, non-local means against scikit-image."""

import cv2
import numpy as np
import pytest
from skimage.restoration import denoise_nl_means

from gpuimg import denoise, restoration

CV_BORDER = {
    "mirror": cv2.BORDER_REFLECT_101,
    "reflect": cv2.BORDER_REFLECT,
    "nearest": cv2.BORDER_REPLICATE,
    "wrap": cv2.BORDER_WRAP,
    "constant": cv2.BORDER_CONSTANT,
}


def _piecewise_image(rng, shape, dtype=np.float32):
    """Noisy steps: edges for the filters to preserve, noise for them to remove."""
    x = np.zeros(shape)
    h, w = shape[-2:]
    x[..., h // 4:3 * h // 4, w // 5:3 * w // 5] = 1.0
    x[..., h // 2:, 2 * w // 3:] = 0.5
    return (x + 0.15 * rng.standard_normal(shape)).astype(dtype)


@pytest.mark.parametrize("win_size,sigma_color,sigma_spatial", [(3, 0.1, 1.0), (7, 0.3, 2.0), (11, 0.05, 4.0), (15, 1.0, 3.0)])
def test_bilateral_equals_opencv_reflect101(be, rng, win_size, sigma_color, sigma_spatial):
    x = _piecewise_image(rng, (48, 61))
    ref = cv2.bilateralFilter(x, win_size, sigma_color, sigma_spatial, borderType=cv2.BORDER_REFLECT_101)
    got = denoise.bilateral(be.asarray(x), sigma_color=sigma_color, sigma_spatial=sigma_spatial,
                            win_size=win_size, mode="mirror")
    assert got.dtype == np.float32
    np.testing.assert_allclose(be.to_numpy(got), ref, rtol=0, atol=1e-5)


@pytest.mark.parametrize("mode", ["reflect", "nearest", "wrap", "constant"])
def test_bilateral_border_modes_equal_opencv(be, rng, mode):
    x = rng.random((33, 40)).astype(np.float32)
    ref = cv2.bilateralFilter(x, 9, 0.25, 2.5, borderType=CV_BORDER[mode])
    got = denoise.bilateral(be.asarray(x), sigma_color=0.25, sigma_spatial=2.5, win_size=9, mode=mode)
    np.testing.assert_allclose(be.to_numpy(got), ref, rtol=0, atol=1e-5)


@pytest.mark.parametrize("threads", [2, 16])
@pytest.mark.parametrize("mode", ["mirror", "wrap", "constant"])
def test_bilateral_in_bands_equals_opencv(be, rng, mode, threads, monkeypatch):
    # from 2^16 pixels the CPU filters bands of rows, each reading radius rows around it
    import gpuimg._prims.bilateral as prims

    monkeypatch.setattr(prims, "workers", lambda: threads)
    x = _piecewise_image(rng, (140, 500))
    border = cv2.BORDER_REFLECT_101 if mode == "mirror" else CV_BORDER[mode]
    ref = cv2.bilateralFilter(x, 9, 0.25, 2.5, borderType=border)
    got = denoise.bilateral(be.asarray(x), sigma_color=0.25, sigma_spatial=2.5, win_size=9, mode=mode)
    np.testing.assert_allclose(be.to_numpy(got), ref, rtol=0, atol=1e-5)
    xc = _piecewise_image(rng, (150, 440, 3))
    ref = cv2.bilateralFilter(xc, 7, 0.4, 3.0, borderType=border)
    got = denoise.bilateral(be.asarray(xc), sigma_color=0.4, sigma_spatial=3.0, win_size=7, mode=mode,
                            channel_axis=-1)
    np.testing.assert_allclose(be.to_numpy(got), ref, rtol=0, atol=1e-5)


def test_bilateral_default_window_and_batch(be, rng):
    # win_size=None: OpenCV's d <= 0 rule, radius = round(1.5 sigma_spatial)
    x = _piecewise_image(rng, (3, 40, 37))
    got = be.to_numpy(denoise.bilateral(be.asarray(x), sigma_color=0.2, sigma_spatial=2.4, mode="mirror"))
    for i in range(3):
        ref = cv2.bilateralFilter(x[i], 0, 0.2, 2.4, borderType=cv2.BORDER_REFLECT_101)
        np.testing.assert_allclose(got[i], ref, rtol=0, atol=1e-5)


def test_bilateral_colour_equals_opencv(be, rng):
    # OpenCV weighs colour by the L1 distance over the three channels
    x = _piecewise_image(rng, (40, 52, 3))
    ref = cv2.bilateralFilter(x, 7, 0.4, 3.0, borderType=cv2.BORDER_REFLECT_101)
    got = denoise.bilateral(be.asarray(x), sigma_color=0.4, sigma_spatial=3.0, win_size=7, mode="mirror",
                            channel_axis=-1)
    np.testing.assert_allclose(be.to_numpy(got), ref, rtol=0, atol=1e-5)


def test_bilateral_float64_and_integers(be, rng):
    x = _piecewise_image(rng, (30, 30), np.float64)
    ref = cv2.bilateralFilter(x.astype(np.float32), 5, 0.3, 1.5, borderType=cv2.BORDER_REFLECT_101)
    got = denoise.bilateral(be.asarray(x), sigma_color=0.3, sigma_spatial=1.5, win_size=5, mode="mirror")
    assert got.dtype == np.float64
    np.testing.assert_allclose(be.to_numpy(got), ref, rtol=0, atol=1e-5)
    xi = (rng.random((20, 25)) * 200).astype(np.uint8)
    ref = cv2.bilateralFilter(xi.astype(np.float32), 5, 30.0, 1.5, borderType=cv2.BORDER_REFLECT_101)
    got = denoise.bilateral(be.asarray(xi), sigma_color=30.0, sigma_spatial=1.5, win_size=5, mode="mirror")
    assert got.dtype == np.float64
    np.testing.assert_allclose(be.to_numpy(got), ref, rtol=0, atol=2e-4)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("patch_size,patch_distance,h,sigma", [(7, 5, 0.2, 0.0), (5, 3, 0.1, 0.08), (3, 6, 0.3, 0.0)])
def test_nl_means_fast_equals_skimage(be, rng, dtype, patch_size, patch_distance, h, sigma):
    x = _piecewise_image(rng, (52, 47), dtype)
    ref = denoise_nl_means(x, patch_size, patch_distance, h, fast_mode=True, sigma=sigma)
    got = denoise.nl_means(be.asarray(x), patch_size=patch_size, patch_distance=patch_distance, h=h, sigma=sigma)
    assert got.dtype == dtype
    np.testing.assert_allclose(be.to_numpy(got), ref, rtol=0, atol=1e-4)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("sigma", [0.0, 0.1])
def test_nl_means_classic_equals_skimage(be, rng, dtype, sigma):
    x = _piecewise_image(rng, (26, 31), dtype)
    ref = denoise_nl_means(x, 5, 3, 0.15, fast_mode=False, sigma=sigma)
    got = denoise.nl_means(be.asarray(x), patch_size=5, patch_distance=3, h=0.15, sigma=sigma, fast_mode=False)
    assert got.dtype == dtype
    np.testing.assert_allclose(be.to_numpy(got), ref, rtol=0, atol=1e-4)


@pytest.mark.parametrize("fast_mode", [True, False])
def test_nl_means_channels_equal_skimage(be, rng, fast_mode):
    x = _piecewise_image(rng, (24, 29, 3))
    ref = denoise_nl_means(x, 5, 3, 0.25, fast_mode=fast_mode, channel_axis=-1)
    got = denoise.nl_means(be.asarray(x), patch_size=5, patch_distance=3, h=0.25, fast_mode=fast_mode,
                           channel_axis=-1)
    np.testing.assert_allclose(be.to_numpy(got), ref, rtol=0, atol=1e-4)


def test_nl_means_batch_equals_per_image_skimage(be, rng):
    x = _piecewise_image(rng, (2, 30, 26))
    got = be.to_numpy(denoise.nl_means(be.asarray(x), patch_size=5, patch_distance=4, h=0.2))
    for i in range(2):
        np.testing.assert_allclose(got[i], denoise_nl_means(x[i], 5, 4, 0.2), rtol=0, atol=1e-4)


def test_nl_means_reduces_noise():
    # sanity against the analytic clean image: denoising lowers the error
    rng = np.random.default_rng(5)
    clean = np.zeros((64, 64))
    clean[16:48, 16:48] = 1.0
    noisy = clean + 0.2 * rng.standard_normal(clean.shape)
    out = denoise.nl_means(noisy, h=0.2, patch_distance=5)
    assert np.mean((out - clean) ** 2) < 0.25 * np.mean((noisy - clean) ** 2)


def test_tv_is_the_restoration_implementation():
    assert denoise.tv_prox is restoration.tv.tv_prox
    assert denoise.denoise_tv is restoration.tv.tv_prox


@pytest.mark.parametrize("kwargs,name", [
    (dict(sigma_color=0.0, sigma_spatial=1.0), "sigma_color"),
    (dict(sigma_color=0.1, sigma_spatial=-1.0), "sigma_spatial"),
    (dict(sigma_color=0.1, sigma_spatial=1.0, win_size=4), "win_size"),
    (dict(sigma_color=0.1, sigma_spatial=1.0, win_size=1), "win_size"),
    (dict(sigma_color=0.1, sigma_spatial=1.0, mode="bogus"), "mode"),
    (dict(sigma_color=0.1, sigma_spatial=1.0, channel_axis=5), "channel_axis"),
])
def test_bilateral_bad_input(kwargs, name):
    with pytest.raises(ValueError, match=name):
        denoise.bilateral(np.zeros((8, 8, 3)), **kwargs)


@pytest.mark.parametrize("kwargs,name", [
    (dict(h=0.1, patch_size=6), "patch_size"),
    (dict(h=0.1, patch_size=1), "patch_size"),
    (dict(h=0.1, patch_distance=0), "patch_distance"),
    (dict(h=0.0), "h"),
    (dict(h=0.1, sigma=-0.5), "sigma"),
])
def test_nl_means_bad_input(kwargs, name):
    with pytest.raises(ValueError, match=name):
        denoise.nl_means(np.zeros((8, 8)), **kwargs)


def test_bad_image():
    with pytest.raises(ValueError, match="image"):
        denoise.nl_means(np.zeros(8), h=0.1)
    with pytest.raises(TypeError, match="image"):
        denoise.bilateral([[1.0]], sigma_color=0.1, sigma_spatial=1.0)


def test_nan_reaches_exactly_the_windows_that_hold_it(be, rng):
    x = rng.random((21, 23))
    x[10, 12] = np.nan
    dy, dx = np.mgrid[:21, :23]
    disk = (dy - 10) ** 2 + (dx - 12) ** 2 <= 2 ** 2
    square = (np.abs(dy - 10) <= 3) & (np.abs(dx - 12) <= 3)
    got = be.to_numpy(denoise.bilateral(be.asarray(x), sigma_color=0.3, sigma_spatial=1.0, win_size=5))
    np.testing.assert_array_equal(np.isnan(got), disk)
    for fast_mode in (True, False):
        got = be.to_numpy(denoise.nl_means(be.asarray(x), h=0.2, patch_size=3, patch_distance=3,
                                           fast_mode=fast_mode))
        np.testing.assert_array_equal(np.isnan(got), square)
