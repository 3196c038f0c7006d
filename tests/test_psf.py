"""gpuimg.psf against analytic results, SciPy and the MATLAB psf2otf definition."""

import numpy as np
import pytest
import scipy.integrate
import scipy.ndimage as ndi

from conftest import assert_close, to_np
from gpuimg import psf


# --------------------------------------------------------------------------------------
# analytic PSFs
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape, sigma", [((9, 9), 1.3), ((11, 7), (2.0, 0.9)), ((5, 7, 9), (0.7, 1.0, 1.5))])
def test_gaussian_equals_filtered_delta(be, shape, sigma):
    # scipy's Gaussian filter of a centred delta is the separable sampled kernel; each axis'
    # truncation radius is set to the half-size so nothing is cut off
    sig = np.broadcast_to(sigma, (len(shape),))
    delta = np.zeros(shape)
    delta[tuple(n // 2 for n in shape)] = 1.0
    ref = delta
    for axis, (n, s) in enumerate(zip(shape, sig)):
        ref = ndi.gaussian_filter1d(ref, s, axis=axis, mode="constant", truncate=(n // 2) / s)
    got = psf.gaussian(shape, sigma, backend=be.name)
    assert_close(got, ref / ref.sum())
    assert abs(float(to_np(got).sum()) - 1.0) < 1e-12


def _pixel_area_quad(iy, ix, cy, cx, r):
    """Area of pixel (iy, ix) inside the circle, by adaptive quadrature of the chord length."""
    y0, y1 = iy - cy - 0.5, iy - cy + 0.5
    x0, x1 = ix - cx - 0.5, ix - cx + 0.5

    def height(x):
        s = np.sqrt(max(r * r - x * x, 0.0))
        return max(0.0, min(y1, s) - max(y0, -s))

    points = [p for p in (-r, r) if x0 < p < x1]
    return scipy.integrate.quad(height, x0, x1, points=points or None, epsabs=1e-11, limit=200)[0]


@pytest.mark.parametrize("radius", [0.4, 2.5, 3.3, 5.0])
def test_disk_is_exact_pixel_coverage(be, radius):
    d = to_np(psf.disk(radius, backend=be.name))
    assert d.shape[0] == d.shape[1] and d.shape[0] % 2 == 1
    c = d.shape[0] // 2
    area = np.array([[_pixel_area_quad(i, j, c, c, radius) for j in range(d.shape[1])] for i in range(d.shape[0])])
    assert abs(area.sum() - np.pi * radius**2) < 1e-6  # the default shape holds the whole disk
    np.testing.assert_allclose(d * np.pi * radius**2, area, rtol=0, atol=1e-6)
    assert abs(d.sum() - 1.0) < 1e-12


def test_disk_edge_pixel_against_supersampled_count(be):
    # 2000 x 2000 sample points inside one edge pixel
    r = 4.3
    d = to_np(psf.disk(r, shape=(11, 11), backend=be.name)) * np.pi * r**2
    for iy, ix in [(5, 9), (2, 8), (1, 4)]:
        t = (np.arange(2000) + 0.5) / 2000 - 0.5
        yy = (iy - 5) + t[:, None]
        xx = (ix - 5) + t[None, :]
        frac = np.count_nonzero(yy**2 + xx**2 <= r * r) / 2000**2
        assert abs(d[iy, ix] - frac) < 1e-3


def test_disk_truncated_by_shape(be):
    full = to_np(psf.disk(4.0, shape=(15, 15), backend=be.name))
    small = to_np(psf.disk(4.0, shape=(5, 7), backend=be.name))
    ref = full[5:10, 4:11]
    np.testing.assert_allclose(small, ref / ref.sum(), rtol=1e-12)


def _tent_integral(k, half):
    """(1/L) * integral of max(0, 1 - |t - k|) for t in [-half, half], by quadrature."""
    val = scipy.integrate.quad(lambda t: max(0.0, 1.0 - abs(t - k)), -half, half, points=[k - 1, k, k + 1])[0]
    return val / (2 * half)


@pytest.mark.parametrize("length", [5.0, 4.4, 9.0])
def test_motion_horizontal_matches_tent_integral(be, length):
    m = to_np(psf.motion(length, 0.0, backend=be.name))
    assert m.shape[0] == 1 and m.shape[1] % 2 == 1
    c = m.shape[1] // 2
    ref = np.array([_tent_integral(k - c, length / 2) for k in range(m.shape[1])])
    np.testing.assert_allclose(m[0], ref, rtol=0, atol=1e-12)
    # vertical motion is the transpose
    v = to_np(psf.motion(length, 90.0, backend=be.name))
    np.testing.assert_allclose(v, m.T, atol=1e-12)


@pytest.mark.parametrize("angle", [17.0, 45.0, 120.0, -33.0])
def test_motion_moments(be, angle):
    # the segment's uniform measure: centroid at the centre, variance L^2/12 along the motion;
    # bilinear rendering adds about 1/6 px^2 per axis
    length = 12.0
    m = to_np(psf.motion(length, angle, backend=be.name))
    assert abs(m.sum() - 1.0) < 1e-12 and (m >= 0).all()
    y, x = np.indices(m.shape, dtype=float)
    y -= m.shape[0] // 2
    x -= m.shape[1] // 2
    assert abs((m * x).sum()) < 1e-12 and abs((m * y).sum()) < 1e-12
    th = np.deg2rad(angle)
    along = x * np.cos(th) - y * np.sin(th)
    across = x * np.sin(th) + y * np.cos(th)
    assert abs((m * along**2).sum() - length**2 / 12) < 0.25
    assert (m * across**2).sum() < 0.25


def test_motion_45_is_symmetric(be):
    m = to_np(psf.motion(7.0, 45.0, backend=be.name))
    np.testing.assert_allclose(m, m[::-1, ::-1].T, atol=1e-14)
    np.testing.assert_allclose(m, m[::-1, ::-1], atol=1e-14)


# --------------------------------------------------------------------------------------
# OTF
# --------------------------------------------------------------------------------------

def _psf2otf_definition(h, shape):
    pad = np.zeros(shape)
    pad[tuple(slice(0, n) for n in h.shape)] = h
    for axis, n in enumerate(h.shape):
        pad = np.roll(pad, -(n // 2), axis=axis)
    return np.fft.fftn(pad)


@pytest.mark.parametrize("pshape, shape", [((5, 5), (32, 40)), ((4, 6), (17, 16)), ((3, 4, 5), (8, 9, 10))])
def test_to_otf_matches_definition(be, rng, pshape, shape):
    h = rng.random(pshape)
    ref = _psf2otf_definition(h, shape)
    got = psf.to_otf(be.asarray(h), shape)
    assert_close(got, ref, tol=1e-10, scale=float(h.sum()))
    # independent construction: explicit DFT sum with the centre at the origin
    k = [np.fft.fftfreq(n) for n in shape]
    n = [np.arange(m) - m // 2 for m in pshape]
    if len(shape) == 2:
        e0 = np.exp(-2j * np.pi * np.outer(k[0] * shape[0], n[0]) / shape[0])
        e1 = np.exp(-2j * np.pi * np.outer(k[1] * shape[1], n[1]) / shape[1])
        assert_close(got, e0 @ h @ e1.T, tol=1e-10, scale=float(h.sum()))
    half = psf.to_otf(be.asarray(h), shape, real=True)
    assert_close(half, ref[..., : shape[-1] // 2 + 1], tol=1e-10, scale=float(h.sum()))


def test_to_otf_multiplication_is_circular_convolution(be, rng):
    img = rng.random((40, 36))
    h = rng.random((7, 5))
    otf = to_np(psf.to_otf(be.asarray(h), img.shape))
    blurred = np.fft.ifft2(np.fft.fft2(img) * otf).real
    np.testing.assert_allclose(blurred, ndi.convolve(img, h, mode="wrap"), atol=1e-12)


def test_to_otf_dtype_and_batch(be, rng):
    h = rng.random((2, 5, 5)).astype(np.float32)
    otf = to_np(psf.to_otf(be.asarray(h), (16, 16)))
    assert otf.dtype == np.complex64 and otf.shape == (2, 16, 16)
    np.testing.assert_allclose(otf[1], _psf2otf_definition(h[1].astype(np.float64), (16, 16)), atol=1e-5)


# --------------------------------------------------------------------------------------
# PSF from a point-source photo
# --------------------------------------------------------------------------------------

def _supersampled_disk(shape, center, radius, soften, ss=16):
    """Disk (optionally blurred by a Gaussian rim of ``soften`` px) integrated over pixels.

    Built on a 16x finer grid with scipy (a different method from gpuimg's closed form).
    """
    h, w = shape
    y = (np.arange(h * ss) + 0.5) / ss - 0.5 - center[0]
    x = (np.arange(w * ss) + 0.5) / ss - 0.5 - center[1]
    fine = (y[:, None] ** 2 + x[None, :] ** 2 <= radius**2).astype(float)
    if soften:
        fine = ndi.gaussian_filter(fine, soften * ss, mode="constant")
    return fine.reshape(h, ss, w, ss).sum(axis=(1, 3))


def _led_photo(rng, truth_at, shape=(90, 104), flux=3e5):
    yy, xx = np.indices(shape, dtype=float)
    background = 120.0 + 0.35 * yy - 0.25 * xx
    source = truth_at / truth_at.sum() * flux
    return rng.poisson(background + source).astype(float) + rng.normal(0.0, 5.0, shape)


def _centroid_error(p):
    y, x = np.indices(p.shape, dtype=float)
    return np.hypot((p * y).sum() / p.sum() - p.shape[0] // 2, (p * x).sum() / p.sum() - p.shape[1] // 2)


@pytest.mark.parametrize("center, r", [((41.37, 57.71), 5.0), ((40.5, 60.5), 5.5), ((44.81, 52.06), 4.6)])
def test_from_image_recovers_defocus_disk(be, rng, center, r):
    # defocused LED: uniform disk with a 0.6 px diffraction rim, centred at a fractional pixel,
    # integrated over pixels, on a sloped background with Poisson and read noise
    rim = 0.6
    photo = _led_photo(rng, _supersampled_disk((90, 104), center, r, rim))
    got = to_np(psf.from_image(be.asarray(photo)))
    n = got.shape[0]
    truth = _supersampled_disk((n, n), (n // 2, n // 2), r, rim)
    truth /= truth.sum()
    assert abs(got.sum() - 1.0) < 1e-9
    assert np.abs(got - truth).sum() < 0.05
    assert _centroid_error(got) < 0.05


def test_from_image_options(be, rng):
    center = (30.0, 33.0)
    clean = _supersampled_disk((64, 64), center, 4.0, 0.6)
    photo = _led_photo(rng, clean, shape=(64, 64))
    truth = _supersampled_disk((21, 21), (10, 10), 4.0, 0.6)
    truth /= truth.sum()
    for kwargs in ({"background": "median"}, {"center": "peak"}, {"center": "none"}, {"background": "plane"}):
        got = to_np(psf.from_image(be.asarray(photo), size=21, **kwargs))
        # the median background leaves the gradient in: the photo's gradient spans ~20 counts
        assert np.abs(got - truth).sum() < (0.15 if "background" in kwargs and kwargs["background"] == "median" else 0.06)
    raw = to_np(psf.from_image(be.asarray(photo.astype(np.float32)), size=21, normalize=False))
    assert raw.dtype == np.float32
    assert abs(raw.sum() - 3e5) < 0.03 * 3e5


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"size": 10}, "size"),
        ({"size": (9, 0)}, "size"),
        ({"background": "sky"}, "background"),
        ({"background": float("nan")}, "background"),
        ({"center": "middle"}, "center"),
    ],
)
def test_from_image_bad_input(be, kwargs, match):
    with pytest.raises(ValueError, match=match):
        psf.from_image(be.asarray(np.zeros((32, 32))), **kwargs)


def test_bad_input(be):
    with pytest.raises(ValueError, match="image"):
        psf.from_image(be.asarray(np.zeros((2, 32, 32))))
    with pytest.raises(ValueError, match="image"):
        psf.from_image(be.asarray(np.random.default_rng(0).normal(size=(32, 32))))
    with pytest.raises(ValueError, match="radius"):
        psf.disk(-1.0)
    with pytest.raises(ValueError, match="radius"):
        psf.disk(float("inf"))
    with pytest.raises(ValueError, match="sigma"):
        psf.gaussian((5, 5), float("nan"))
    with pytest.raises(ValueError, match="sigma"):
        psf.gaussian((5, 5), (1.0, 2.0, 3.0))
    with pytest.raises(ValueError, match="shape"):
        psf.gaussian((5, 0), 1.0)
    with pytest.raises(ValueError, match="length"):
        psf.motion(0.0, 10.0)
    with pytest.raises(ValueError, match="angle_deg"):
        psf.motion(3.0, float("nan"))
    with pytest.raises(ValueError, match="shape"):
        psf.to_otf(be.asarray(np.ones((5, 5))), (4, 8))
    with pytest.raises(ValueError, match="shape"):
        psf.to_otf(be.asarray(np.ones((5, 5))), (8, 8, 8))


@pytest.mark.parametrize("radius,side", [(0.3, 1), (0.5, 1), (0.51, 3), (1.5, 3), (1.6, 5), (5.0, 11)])
def test_disk_side_is_the_smallest_odd_square_holding_the_disk(radius, side):
    # the disk reaches radius px from the centre pixel's centre: a side of 2k + 1 holds it
    # when k + 1/2 >= radius
    assert psf.disk_side(radius) == side
    assert psf.disk(radius).shape == (side, side)
    with pytest.raises(ValueError, match="radius"):
        psf.disk_side(-1.0)
