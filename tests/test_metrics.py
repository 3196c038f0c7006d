import warnings

import numpy as np
import pytest
import scipy.ndimage as ndi
from scipy.signal import convolve2d
from skimage import data
from skimage.metrics import mean_squared_error as sk_mse
from skimage.metrics import peak_signal_noise_ratio as sk_psnr
from skimage.metrics import structural_similarity as sk_ssim

from gpuimg import metrics
from tests.conftest import to_np


@pytest.fixture(scope="module")
def cam_pair():
    """scikit-image's published test pair: camera() and a noisy copy (sigma 20, seed 5)."""
    cam = data.camera()
    state = np.random.RandomState(5)
    noisy = np.clip(cam + 20.0 * state.randn(*cam.shape), 0, 255).astype(np.uint8)
    return cam, noisy


def _pair(rng, shape, dtype=np.float64, noise=0.3):
    a = rng.random(shape)
    b = a + noise * rng.standard_normal(shape)
    return a.astype(dtype), b.astype(dtype)


# ---------------------------------------------------------------------------- scalars

# (300, 530): more than one block of the CPU's blocked sums
@pytest.mark.parametrize("shape", [(37, 53), (300, 530)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint8])
def test_mse_mae_psnr_snr_match_references(be, rng, dtype, shape):
    a = (rng.random(shape) * 200).astype(dtype)
    b = (rng.random(shape) * 200).astype(dtype)
    A, B = be.asarray(a), be.asarray(b)
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    # float64 references; float32 differences are rounded to float32 before the float64 sums
    rtol = 1e-6 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(to_np(metrics.mse(A, B)), sk_mse(a64, b64), rtol=rtol)
    np.testing.assert_allclose(to_np(metrics.mae(A, B)), np.mean(np.abs(a64 - b64)), rtol=rtol)
    np.testing.assert_allclose(to_np(metrics.psnr(A, B, data_range=255)), sk_psnr(a64, b64, data_range=255), rtol=rtol)
    ref_snr = 10 * np.log10(np.sum(a64**2) / np.sum((a64 - b64) ** 2))
    np.testing.assert_allclose(to_np(metrics.snr(A, B)), ref_snr, rtol=rtol)
    out = metrics.mse(A, B)
    assert isinstance(out, (np.generic, be.xp.ndarray)) and out.ndim == 0 and out.dtype == np.float64


def test_psnr_infers_integer_range_like_skimage(be, cam_pair):
    cam, noisy = cam_pair
    got = metrics.psnr(be.asarray(cam), be.asarray(noisy))
    np.testing.assert_allclose(to_np(got), sk_psnr(cam, noisy), rtol=1e-12)
    u16 = cam.astype(np.uint16), noisy.astype(np.uint16)
    np.testing.assert_allclose(to_np(metrics.psnr(*map(be.asarray, u16))), sk_psnr(*u16), rtol=1e-12)
    # signed integers: the dtype's full span, without looking at the data (skimage looks)
    i16 = cam.astype(np.int16), noisy.astype(np.int16)
    np.testing.assert_allclose(to_np(metrics.psnr(*map(be.asarray, i16))), sk_psnr(*i16, data_range=65535), rtol=1e-12)


def test_identical_images_give_inf_without_warnings(be, rng):
    a = be.asarray(rng.random((16, 16)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert to_np(metrics.psnr(a, a, data_range=1.0)) == np.inf
        assert to_np(metrics.snr(a, a)) == np.inf
        assert to_np(metrics.mse(a, a)) == 0
        zero = be.asarray(np.zeros((16, 16)))
        assert to_np(metrics.snr(zero, a)) == -np.inf


# ---------------------------------------------------------------------------- SSIM parity

@pytest.mark.parametrize("shape", [(48, 61), (14, 17, 19)])
@pytest.mark.parametrize("gaussian", [False, True])
@pytest.mark.parametrize("sample_cov", [True, False])
def test_ssim_matches_skimage_float64(be, rng, shape, gaussian, sample_cov):
    a, b = _pair(rng, shape)
    ref, ref_map = sk_ssim(a, b, data_range=2.0, gaussian_weights=gaussian, use_sample_covariance=sample_cov, full=True)
    got, got_map = metrics.ssim(be.asarray(a), be.asarray(b), data_range=2.0, gaussian_weights=gaussian,
                                use_sample_covariance=sample_cov, full=True)
    assert abs(float(to_np(got)) - ref) <= 1e-7
    assert got_map.dtype == np.float64 and got_map.shape == shape
    assert np.abs(to_np(got_map) - ref_map).max() <= 1e-7


@pytest.mark.parametrize("kwargs", [{"win_size": 3}, {"win_size": 9, "K1": 0.05, "K2": 0.1},
                                    {"gaussian_weights": True, "sigma": 0.8},
                                    {"gaussian_weights": True, "sigma": 2.0, "win_size": 7}])
def test_ssim_options_match_skimage(be, rng, kwargs):
    a, b = _pair(rng, (40, 33))
    ref, ref_map = sk_ssim(a, b, data_range=1.0, full=True, **kwargs)
    got, got_map = metrics.ssim(be.asarray(a), be.asarray(b), data_range=1.0, full=True, **kwargs)
    assert abs(float(to_np(got)) - ref) <= 1e-7
    assert np.abs(to_np(got_map) - ref_map).max() <= 1e-7


def test_ssim_float32_stays_float32(be, rng):
    a, b = _pair(rng, (64, 64), np.float32)
    ref, ref_map = sk_ssim(a.astype(np.float64), b.astype(np.float64), data_range=1.0, gaussian_weights=True, full=True)
    got, got_map = metrics.ssim(be.asarray(a), be.asarray(b), data_range=1.0, gaussian_weights=True, full=True)
    assert got_map.dtype == np.float32
    assert abs(float(to_np(got)) - ref) <= 1e-5
    assert np.abs(to_np(got_map) - ref_map).max() <= 1e-4


@pytest.mark.parametrize("channel_axis", [0, -1])
def test_ssim_channel_axis_matches_skimage(be, rng, channel_axis):
    a, b = _pair(rng, (3, 30, 41) if channel_axis == 0 else (30, 41, 3))
    ref, ref_map = sk_ssim(a, b, data_range=1.0, channel_axis=channel_axis, full=True)
    got, got_map = metrics.ssim(be.asarray(a), be.asarray(b), data_range=1.0, channel_axis=channel_axis, full=True)
    assert abs(float(to_np(got)) - ref) <= 1e-7
    assert np.abs(to_np(got_map) - ref_map).max() <= 1e-7


def test_ssim_spatial_ndim_batch_returns_one_value_per_image(be, rng):
    a, b = _pair(rng, (4, 25, 30))
    ref = [sk_ssim(a[i], b[i], data_range=1.0, gaussian_weights=True) for i in range(4)]
    got = metrics.ssim(be.asarray(a), be.asarray(b), data_range=1.0, gaussian_weights=True, spatial_ndim=2)
    assert got.shape == (4,)
    np.testing.assert_allclose(to_np(got), ref, rtol=0, atol=1e-7)
    # the default treats every axis as spatial, like scikit-image
    whole = metrics.ssim(be.asarray(a), be.asarray(b), data_range=1.0, win_size=3)
    assert abs(float(to_np(whole)) - sk_ssim(a, b, data_range=1.0, win_size=3)) <= 1e-7


def test_ssim_symmetry_and_identity(be, rng):
    a, b = _pair(rng, (40, 40))
    A, B = be.asarray(a), be.asarray(b)
    s_ab = float(to_np(metrics.ssim(A, B, data_range=1.0)))
    s_ba = float(to_np(metrics.ssim(B, A, data_range=1.0)))
    assert abs(s_ab - s_ba) <= 1e-14 and s_ab < 0.9
    _, smap = metrics.ssim(A, A, data_range=1.0, gaussian_weights=True, full=True)
    np.testing.assert_allclose(to_np(smap), 1.0, rtol=0, atol=1e-12)


def test_ssim_published_values_camera(be, cam_pair):
    """Published numbers for scikit-image's camera test pair.

    0.357959091663361: the IPOL ``imdiff`` implementation (Wang's Gaussian-window SSIM), quoted
    with 3 decimals by scikit-image's tests. 0.3674518327910367: scikit-image 0.17's value for
    the default 7x7 uniform window with sample covariance.
    """
    cam, noisy = map(be.asarray, cam_pair)
    wang = metrics.ssim(cam, noisy, data_range=255, gaussian_weights=True, use_sample_covariance=False)
    assert abs(float(to_np(wang)) - 0.357959091663361) < 5e-4
    legacy = metrics.ssim(cam, noisy, data_range=255)
    assert abs(float(to_np(legacy)) - 0.3674518327910367) < 1e-7


def _wang_ssim_index(img1, img2, K=(0.01, 0.03), L=255.0, want_cs=False):
    """Transcription of Wang's ``ssim_index.m`` / ``ssim_index_new`` (filter2 'valid')."""
    win = np.exp(-(np.arange(-5, 6) ** 2) / (2 * 1.5**2))
    window = np.outer(win, win)
    window /= window.sum()
    C1, C2 = (K[0] * L) ** 2, (K[1] * L) ** 2

    def filter2(x):  # filter2(W, X, 'valid') is correlation; W is symmetric
        return convolve2d(x, window[::-1, ::-1], mode="valid")

    mu1, mu2 = filter2(img1), filter2(img2)
    s1 = filter2(img1 * img1) - mu1 * mu1
    s2 = filter2(img2 * img2) - mu2 * mu2
    s12 = filter2(img1 * img2) - mu1 * mu2
    ssim_map = ((2 * mu1 * mu2 + C1) * (2 * s12 + C2)) / ((mu1**2 + mu2**2 + C1) * (s1 + s2 + C2))
    cs_map = (2 * s12 + C2) / (s1 + s2 + C2)
    return ssim_map.mean(), cs_map.mean()


def _wang_msssim(img1, img2, weights=(0.0448, 0.2856, 0.3001, 0.2363, 0.1333)):
    """Transcription of ``msssim.m`` (method 'product')."""
    im1, im2 = img1.astype(np.float64), img2.astype(np.float64)
    mssim, mcs = [], []
    down = np.ones((2, 2)) / 4
    for _ in weights:
        s, c = _wang_ssim_index(im1, im2)
        mssim.append(s)
        mcs.append(c)
        # imfilter(im, ones(2)/4, 'symmetric', 'same'), then im(1:2:end, 1:2:end)
        f1 = convolve2d(np.pad(im1, ((0, 1), (0, 1)), mode="symmetric"), down, mode="valid")
        f2 = convolve2d(np.pad(im2, ((0, 1), (0, 1)), mode="symmetric"), down, mode="valid")
        im1, im2 = f1[::2, ::2], f2[::2, ::2]
    w = np.asarray(weights)
    return np.prod(np.asarray(mcs[:-1]) ** w[:-1]) * mssim[-1] ** w[-1]


def test_ssim_reproduces_wang_ssim_index_m(be, cam_pair):
    cam, noisy = (x[100:228, 200:328].astype(np.float64) for x in cam_pair)
    ref, _ = _wang_ssim_index(cam, noisy)
    got = metrics.ssim(be.asarray(cam), be.asarray(noisy), data_range=255, gaussian_weights=True,
                       use_sample_covariance=False)
    assert abs(float(to_np(got)) - ref) <= 1e-10


# ---------------------------------------------------------------------------- MS-SSIM

def test_ms_ssim_matches_msssim_m_transcription(be, cam_pair):
    cam, noisy = (x[40:233, 150:351] for x in cam_pair)  # 193 x 201: odd sizes on the way down
    ref = _wang_msssim(cam, noisy)
    got = metrics.ms_ssim(be.asarray(cam), be.asarray(noisy))
    assert abs(float(to_np(got)) - ref) <= 1e-10
    blurred = ndi.gaussian_filter(cam.astype(np.float64), 2.0)
    ref2 = _wang_msssim(cam, blurred)
    got2 = metrics.ms_ssim(be.asarray(cam.astype(np.float64)), be.asarray(blurred), data_range=255)
    assert abs(float(to_np(got2)) - ref2) <= 1e-10


def test_ms_ssim_single_scale_is_wang_ssim(be, rng):
    a, b = _pair(rng, (32, 40))
    ref = sk_ssim(a, b, data_range=1.0, gaussian_weights=True, use_sample_covariance=False)
    got = metrics.ms_ssim(be.asarray(a), be.asarray(b), data_range=1.0, weights=(1.0,))
    assert abs(float(to_np(got)) - ref) <= 1e-7


def test_ms_ssim_batch_identity_and_float32(be, cam_pair):
    cam, noisy = cam_pair
    stack_a = np.stack([cam[:180, :180], cam[200:380, 200:380]]).astype(np.float32)
    stack_b = np.stack([noisy[:180, :180], cam[200:380, 200:380]]).astype(np.float32)
    got = to_np(metrics.ms_ssim(be.asarray(stack_a), be.asarray(stack_b), data_range=255))
    assert got.shape == (2,)
    assert abs(got[0] - _wang_msssim(stack_a[0], stack_b[0])) <= 1e-5
    assert abs(got[1] - 1.0) <= 1e-6


# ---------------------------------------------------------------------------- local maps

@pytest.mark.parametrize("mode", ["reflect", "mirror", "nearest", "constant", "wrap"])
def test_local_mse_matches_scipy(be, rng, mode):
    a, b = _pair(rng, (30, 37))
    ref = ndi.uniform_filter((a - b) ** 2, size=5, mode=mode)
    got = metrics.local_mse(be.asarray(a), be.asarray(b), win_size=5, mode=mode)
    np.testing.assert_allclose(to_np(got), ref, rtol=0, atol=1e-13)


def test_local_mse_3d_and_wrap_mean_is_mse(be, rng):
    a, b = _pair(rng, (9, 12, 14))
    ref = ndi.uniform_filter((a - b) ** 2, size=3, mode="nearest")
    got = metrics.local_mse(be.asarray(a), be.asarray(b), win_size=3, mode="nearest")
    np.testing.assert_allclose(to_np(got), ref, rtol=0, atol=1e-13)
    wrap = metrics.local_mse(be.asarray(a), be.asarray(b), win_size=3, mode="wrap")
    np.testing.assert_allclose(to_np(wrap).mean(), sk_mse(a, b), rtol=1e-12)


def test_local_ssim_is_the_skimage_map(be, rng):
    a, b = _pair(rng, (33, 35))
    _, ref = sk_ssim(a, b, data_range=1.0, gaussian_weights=True, full=True)
    got = metrics.local_ssim(be.asarray(a), be.asarray(b), data_range=1.0, gaussian_weights=True)
    assert np.abs(to_np(got) - ref).max() <= 1e-7


def _ncc_reference(a, b, w, mode):
    r = w // 2
    pm = {"reflect": "symmetric", "nearest": "edge", "wrap": "wrap"}[mode]
    pa = np.lib.stride_tricks.sliding_window_view(np.pad(a, r, mode=pm), (w, w))
    pb = np.lib.stride_tricks.sliding_window_view(np.pad(b, r, mode=pm), (w, w))
    da = pa - pa.mean(axis=(-2, -1), keepdims=True)
    db = pb - pb.mean(axis=(-2, -1), keepdims=True)
    return (da * db).sum(axis=(-2, -1)) / np.sqrt((da**2).sum(axis=(-2, -1)) * (db**2).sum(axis=(-2, -1)))


@pytest.mark.parametrize("mode", ["reflect", "nearest", "wrap"])
def test_local_ncc_matches_direct_window_correlation(be, rng, mode):
    a, b = _pair(rng, (26, 31), noise=1.0)
    ref = _ncc_reference(a, b, 5, mode)
    got = metrics.local_ncc(be.asarray(a), be.asarray(b), win_size=5, mode=mode)
    np.testing.assert_allclose(to_np(got), ref, rtol=0, atol=1e-10)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_local_ncc_gain_offset_invariance_and_flat_windows(be, rng, dtype):
    x = rng.random((40, 44)) * 200
    x[:12, :12] = 50.0  # a flat patch
    xd = x.astype(dtype)
    tol = 1e-3 if dtype == np.float32 else 1e-9
    pos = to_np(metrics.local_ncc(be.asarray(xd), be.asarray((3 * x + 7).astype(dtype))))
    neg = to_np(metrics.local_ncc(be.asarray(xd), be.asarray((-0.5 * x + 1000).astype(dtype))))
    flat = np.zeros(x.shape, bool)
    flat[:9, :9] = True  # windows of 7 lying entirely in the flat patch
    np.testing.assert_allclose(pos[~flat], 1.0, atol=tol)
    np.testing.assert_allclose(neg[~flat], -1.0, atol=tol)
    assert np.all(pos[flat] == 0) and np.all(neg[flat] == 0)
    assert pos.dtype == dtype and np.all(np.abs(pos) <= 1)


def test_nan_propagates_without_check(be, rng):
    a, b = _pair(rng, (20, 20))
    a[10, 10] = np.nan
    got = to_np(metrics.local_mse(be.asarray(a), be.asarray(b), win_size=3))
    assert np.isnan(got[9:12, 9:12]).all() and np.isnan(got).sum() == 9  # only windows holding it
    assert np.isnan(to_np(metrics.ssim(be.asarray(a), be.asarray(b), data_range=1.0)))


# ---------------------------------------------------------------------------- bad input

_Z4 = np.zeros((8,) * 4)
_BAD = [  # (call on images A, B of shape (20, 20), error type, message fragment)
    (lambda be, A, B: metrics.ssim(A, B[:, :19], data_range=1.0), ValueError, "a and b"),
    (lambda be, A, B: metrics.psnr(A, B[:, :19], data_range=1.0), ValueError, "reference and test"),
    (lambda be, A, B: metrics.ssim(A, B, data_range=1.0, win_size=6), ValueError, "win_size"),
    (lambda be, A, B: metrics.ssim(A, B, data_range=1.0, win_size=21), ValueError, "win_size"),
    (lambda be, A, B: metrics.local_ncc(A, B, win_size=4), ValueError, "win_size"),
    (lambda be, A, B: metrics.ssim(A, B), ValueError, "data_range"),
    (lambda be, A, B: metrics.psnr(A, B), ValueError, "data_range"),
    (lambda be, A, B: metrics.ms_ssim(A, B), ValueError, "data_range"),
    (lambda be, A, B: metrics.local_ssim(A, B), ValueError, "data_range"),
    (lambda be, A, B: metrics.ssim(A, B, data_range=-1.0), ValueError, "data_range"),
    (lambda be, A, B: metrics.local_mse(A, B, mode="bogus"), ValueError, "mode"),
    (lambda be, A, B: metrics.ssim(be.asarray(_Z4), be.asarray(_Z4), data_range=1.0), ValueError, "spatial_ndim"),
    (lambda be, A, B: metrics.ssim(A, B, data_range=1.0, spatial_ndim=3), ValueError, "spatial_ndim"),
    (lambda be, A, B: metrics.ssim(A, B, data_range=1.0, channel_axis=2), ValueError, "channel_axis"),
    (lambda be, A, B: metrics.ms_ssim(A, B, data_range=1.0), ValueError, "a: 5 scales"),
    (lambda be, A, B: metrics.ms_ssim(A, B, data_range=1.0, weights=()), ValueError, "weights"),
    (lambda be, A, B: metrics.ssim(A, B, data_range=1.0, K1=-0.1), ValueError, "K1"),
    (lambda be, A, B: metrics.ssim(A, B, data_range=1.0, gaussian_weights=True, sigma=0.0), ValueError, "sigma"),
    (lambda be, A, B: metrics.local_ncc(A, B, eps=-1.0), ValueError, "eps"),
    (lambda be, A, B: metrics.mse(A + 1j, B), TypeError, "a must be real"),
]


@pytest.mark.parametrize("case", range(len(_BAD)))
def test_bad_input(be, rng, case):
    call, exc, match = _BAD[case]
    a, b = _pair(rng, (20, 20))
    with pytest.raises(exc, match=match):
        call(be, be.asarray(a), be.asarray(b))


@pytest.mark.parametrize("fn, kw, name", [
    (metrics.ssim, {"data_range": 1.0}, "a"), (metrics.mse, {}, "a"), (metrics.local_ncc, {}, "a"),
    (metrics.ms_ssim, {"data_range": 1.0, "weights": (1.0,)}, "a"), (metrics.psnr, {"data_range": 1.0}, "reference"),
])
def test_check_finite_rejects_nan(be, rng, fn, kw, name):
    a, b = _pair(rng, (20, 20))
    a[3, 4] = np.nan
    with pytest.raises(ValueError, match=f"{name} contains NaN"):
        fn(be.asarray(a), be.asarray(b), check_finite=True, **kw)
