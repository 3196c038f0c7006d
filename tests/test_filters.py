"""gpuimg.filters against scipy.ndimage on every backend."""

import numpy as np
import pytest
import scipy.ndimage as ndi

from conftest import assert_close, to_np
from gpuimg import filters
from gpuimg._boundary import MODE_CODES

MODES = sorted(MODE_CODES)
DTYPES = [np.float32, np.float64]

# (kernel shape, origin): 1-D, 2-D and 3-D, odd and even sizes, zero and extreme origins
KERNELS = [
    ((3,), 0),
    ((4,), -2),
    ((5, 4), (1, 1)),
    ((4, 3), (-2, -1)),
    ((6, 7), 0),
    ((3, 2, 3), (0, -1, 1)),
]


def _reference(fn, x, w, **kw):
    return getattr(ndi, fn)(x, w, axes=tuple(range(x.ndim - w.ndim, x.ndim)), **kw)


@pytest.mark.parametrize("method", ["direct", "fft", "auto"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("fn", ["correlate", "convolve"])
def test_matches_scipy(be, rng, fn, mode, dtype, method):
    x = rng.random((2, 7, 19, 23)).astype(dtype)
    for shape, origin in KERNELS:
        w = rng.random(shape) - 0.3
        ref = _reference(fn, x, w, mode=mode, cval=1.5, origin=origin)
        got = getattr(filters, fn)(be.asarray(x), be.asarray(w), mode=mode, cval=1.5, origin=origin,
                                   method=method)
        assert to_np(got).dtype == dtype
        assert_close(got, ref, dtype=dtype)


@pytest.mark.parametrize("method", ["direct", "fft", "auto"])
@pytest.mark.parametrize("mode", MODES)
def test_separable_kernel_matches_scipy(be, rng, mode, method):
    # a rank-one kernel may run as two 1-D passes; the constant fill must still act in 2-D
    x = rng.random((3, 40, 33))
    w = np.outer(rng.random(5), rng.random(7) - 0.2)
    for cval in (0.0, 2.5):
        ref = _reference("convolve", x, w, mode=mode, cval=cval, origin=(1, -2))
        got = filters.convolve(be.asarray(x), be.asarray(w), mode=mode, cval=cval, origin=(1, -2),
                               method=method)
        assert_close(got, ref)


@pytest.mark.parametrize("method", ["direct", "auto"])
@pytest.mark.parametrize("mode", MODES)
def test_rank_two_kernel_matches_scipy(be, rng, mode, method):
    # a Gabor kernel is a sum of two outer products: two pairs of 1-D passes, summed
    r = np.arange(9) - 4
    yy, xx = np.meshgrid(r, r, indexing="ij")
    w = np.exp(-(xx * xx + yy * yy) / 8.0) * np.cos(0.9 * (xx * np.cos(0.5) + yy * np.sin(0.5)))
    assert np.linalg.matrix_rank(w) == 2
    x = rng.random((2, 37, 30))
    assert len(filters._separable(be, be.asarray(w))) == 2
    for fn in ("convolve", "correlate"):
        for cval in (0.0, -1.5):
            ref = _reference(fn, x, w, mode=mode, cval=cval, origin=(-1, 2))
            got = getattr(filters, fn)(be.asarray(x), be.asarray(w), mode=mode, cval=cval, origin=(-1, 2),
                                       method=method)
            assert_close(got, ref)


@pytest.mark.parametrize("method", ["direct", "fft"])
@pytest.mark.parametrize("mode", MODES)
def test_kernel_larger_than_image(be, rng, mode, method):
    # extensions reach several periods past the border
    x = rng.random((5, 4))
    w = rng.random((13, 11))
    ref = ndi.convolve(x, w, mode=mode, cval=-1.0)
    assert_close(filters.convolve(be.asarray(x), be.asarray(w), mode=mode, cval=-1.0, method=method), ref)


@pytest.mark.parametrize("method", ["direct", "fft", "auto"])
def test_large_kernel_float32(be, rng, method):
    x = rng.random((96, 80)).astype(np.float32)
    w = rng.random((31, 31))
    ref = ndi.convolve(x, w, mode="reflect")
    assert_close(filters.convolve(be.asarray(x), be.asarray(w), method=method), ref, dtype=np.float32)


def test_batch_equals_per_image(be, rng):
    x = rng.random((3, 30, 40))
    w = rng.random((5, 3))
    got = to_np(filters.correlate(be.asarray(x), be.asarray(w), mode="mirror"))
    for i in range(3):
        np.testing.assert_allclose(got[i], ndi.correlate(x[i], w, mode="mirror"), rtol=0, atol=1e-12)


def test_integer_image_becomes_float64(be, rng):
    x = rng.integers(0, 255, (20, 30)).astype(np.uint8)
    w = rng.random((3, 3))
    got = filters.convolve(be.asarray(x), be.asarray(w))
    assert to_np(got).dtype == np.float64
    assert_close(got, ndi.convolve(x.astype(np.float64), w))


def test_auto_crossover_is_by_kernel_size(be, rng):
    cross = be.correlate_crossover()

    def pick(w):
        w = be.asarray(w)
        return filters._pick_method(be, w, filters._separable(be, w))

    small = int(np.sqrt(cross["direct_max_taps"]))
    assert pick(rng.random((small, small))) == "direct"
    assert pick(rng.random((small + 2, small + 2))) == "fft"
    assert pick(np.outer(rng.random(9), rng.random(5))) == "direct"
    assert pick(rng.random((cross["separable_max_taps"] + 1,))) == "fft"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_gaussian_filter_matches_scipy(be, rng, mode, dtype):
    x = rng.random((2, 33, 41)).astype(dtype)
    cases = [
        (1.5, 0, 4.0, (-2, -1)),
        ((0.8, 2.3), (1, 0), 3.0, (-2, -1)),
        ((1.1, 0.0), (0, 2), 4.0, (-2, -1)),
        ((1.0, 1.7, 2.2), (0, 1, 2), 2.5, (0, 1, 2)),
        (2.0, 0, 4.0, (-2, -1)),
    ]
    for sigma, order, truncate, axes in cases:
        ref = ndi.gaussian_filter(x, sigma, order=order, mode=mode, cval=0.7, truncate=truncate, axes=axes)
        got = filters.gaussian_filter(be.asarray(x), sigma, order=order, mode=mode, cval=0.7, truncate=truncate)
        assert to_np(got).dtype == dtype
        assert_close(got, ref, dtype=dtype)


@pytest.mark.parametrize("mode", MODES)
def test_uniform_filter_matches_scipy(be, rng, mode):
    x = rng.random((2, 29, 37))
    for size, axes in [(3, (-2, -1)), (4, (-2, -1)), ((5, 2), (-2, -1)), ((1, 6), (-2, -1)), ((2, 3, 4), (0, 1, 2))]:
        ref = ndi.uniform_filter(x, size, mode=mode, cval=-0.5, axes=axes)
        assert_close(filters.uniform_filter(be.asarray(x), size, mode=mode, cval=-0.5), ref)


@pytest.mark.parametrize("threads", [2, 16])
@pytest.mark.parametrize("mode", MODES)
def test_images_large_enough_to_run_in_blocks_match_scipy(be, rng, mode, threads, monkeypatch):
    # large arrays run 1-D passes in blocks of another axis on the CPU, and direct 2-D
    # correlations in bands of rows that read the rows the boundary rule reaches (with 16
    # threads a band is shorter than the kernel)
    import gpuimg._prims.convolve as prims

    monkeypatch.setattr(prims, "workers", lambda: threads)
    monkeypatch.setattr(prims, "_THREAD_MIN_ELEMS", 1 << 16)
    x = rng.random((2, 150, 230))
    for shape, origin in [((5, 5), 0), ((4, 7), (-2, 3)), ((5, 3), (2, -1))]:
        w = rng.random(shape) - 0.3
        ref = ndi.correlate(x, w, mode=mode, cval=0.4, origin=origin, axes=(-2, -1))
        assert_close(filters.correlate(be.asarray(x), be.asarray(w), mode=mode, cval=0.4, origin=origin,
                                       method="direct"), ref)
    for size in [3, 8, 21, (31, 5)]:
        ref = ndi.uniform_filter(x, size, mode=mode, cval=-0.5, axes=(-2, -1))
        assert_close(filters.uniform_filter(be.asarray(x), size, mode=mode, cval=-0.5), ref)
    ws = np.outer(rng.random(7), rng.random(6))  # rank one: 1-D passes along both axes
    assert_close(filters.correlate(be.asarray(x), be.asarray(ws), mode=mode, cval=0.2, origin=(1, -2), method="direct"),
                 ndi.correlate(x, ws, mode=mode, cval=0.2, origin=(1, -2), axes=(-2, -1)))
    w1 = rng.random(9)
    assert_close(filters.correlate(be.asarray(x), be.asarray(w1), mode=mode, cval=0.2, origin=-3),
                 ndi.correlate1d(x, w1, axis=-1, mode=mode, cval=0.2, origin=-3))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", MODES)
def test_1d_passes_match_scipy_at_every_length(be, rng, mode, dtype):
    # the CPU runs 1-D passes as GEMMs over blocks of 8 to 32 outputs: lengths that leave a
    # partial block, axes shorter than the kernel, the last axis and a middle one
    for shape, axis in [((3, 41), -1), ((2, 17, 5), 1), ((40, 7), 0), ((6, 100), -1), ((100, 9), 0)]:
        for taps in (1, 2, 5, 18, 41):
            x = rng.standard_normal(shape).astype(dtype)
            w = rng.standard_normal(taps)
            for center in {0, taps // 2, taps - 1}:
                ref = ndi.correlate1d(x.astype(np.float64), w, axis=axis, mode=mode, cval=0.3,
                                      origin=center - taps // 2)
                assert_close(be.correlate1d(be.asarray(x), w, axis, mode, 0.3, center), ref, dtype=dtype)


@pytest.mark.parametrize("mode", ["reflect", "constant"])
def test_non_finite_samples_reach_only_the_outputs_that_read_them(be, mode):
    # as in SciPy: a NaN or Inf spreads over the kernel's reach, not a whole GEMM block
    x = np.ones((40, 60))
    x[20, 30] = np.nan
    x[5, 50] = np.inf
    w = np.array([0.2, 0.5, 0.3])
    ref = ndi.correlate(x, np.outer(w, w), mode=mode)
    got = to_np(filters.correlate(be.asarray(x), be.asarray(np.outer(w, w)), mode=mode, method="direct"))
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(ref))
    finite = np.isfinite(ref)
    assert_close(got[finite], ref[finite])


def test_1d_image(be, rng):
    x = rng.random(50)
    assert_close(filters.gaussian_filter(be.asarray(x), 2.0), ndi.gaussian_filter1d(x, 2.0))
    assert_close(filters.uniform_filter(be.asarray(x), 4), ndi.uniform_filter1d(x, 4))
    w = rng.random(6)
    assert_close(filters.convolve(be.asarray(x), be.asarray(w), method="fft"), ndi.convolve1d(x, w))


def test_no_filtered_axis_returns_a_copy(be, rng):
    x = be.asarray(rng.random((10, 12)))
    y = filters.gaussian_filter(x, 0.0)
    assert y is not x
    np.testing.assert_array_equal(to_np(y), to_np(x))


# --------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"mode": "periodic"}, ValueError, "mode"),
        ({"method": "winograd"}, ValueError, "method"),
        ({"origin": 2}, ValueError, "origin"),
        ({"origin": (0, 0, 0)}, ValueError, "origin"),
        ({"origin": 0.5}, TypeError, "origin"),
        ({"cval": "zero"}, TypeError, "cval"),
    ],
)
def test_bad_options(be, kwargs, exc, match):
    x = be.asarray(np.zeros((8, 8)))
    w = be.asarray(np.ones((3, 3)))
    with pytest.raises(exc, match=match):
        filters.convolve(x, w, **kwargs)


def test_bad_arrays(be):
    x = be.asarray(np.zeros((8, 8)))
    with pytest.raises(ValueError, match="kernel"):
        filters.convolve(x, be.asarray(np.ones((3, 3, 3))))
    with pytest.raises(ValueError, match="kernel"):
        filters.correlate(be.asarray(np.zeros((4, 4, 4, 4))), be.asarray(np.ones((2, 2, 2, 2))))
    with pytest.raises(ValueError, match="image"):
        filters.convolve(be.asarray(np.zeros((0, 5))), be.asarray(np.ones(3)))
    with pytest.raises(TypeError, match="image"):
        filters.convolve([[1.0, 2.0]], be.asarray(np.ones(3)))
    with pytest.raises(TypeError, match="kernel"):
        filters.convolve(x, be.asarray(np.ones((3, 3), dtype=complex)))


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"sigma": float("nan")}, ValueError, "sigma"),
        ({"sigma": float("inf")}, ValueError, "sigma"),
        ({"sigma": -1.0}, ValueError, "sigma"),
        ({"sigma": (1.0, 1.0, 1.0, 1.0)}, ValueError, "sigma"),
        ({"sigma": 1.0, "order": -1}, ValueError, "order"),
        ({"sigma": 1.0, "order": (0, 1, 2)}, ValueError, "order"),
        ({"sigma": 1.0, "order": 1.5}, TypeError, "order"),
        ({"sigma": 1.0, "truncate": 0.0}, ValueError, "truncate"),
        ({"sigma": 1.0, "mode": "edge"}, ValueError, "mode"),
        ({"sigma": "wide"}, TypeError, "sigma"),
    ],
)
def test_gaussian_bad_input(be, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        filters.gaussian_filter(be.asarray(np.zeros((3, 8, 8))), **kwargs)


@pytest.mark.parametrize(
    "size, exc",
    [(0, ValueError), (2.5, TypeError), ((3, 3, 3, 3), ValueError), (True, TypeError)],
)
def test_uniform_bad_size(be, size, exc):
    with pytest.raises(exc, match="size"):
        filters.uniform_filter(be.asarray(np.zeros((3, 8, 8))), size)


@pytest.mark.parametrize("mode", sorted(MODE_CODES))
def test_small_kernels_on_the_gather_kernel_match_scipy(be, rng, mode, monkeypatch):
    # the GPU has two direct kernels (shared-memory tiles, one thread per output); force the
    # second for small kernels and check it against SciPy like the first
    from gpuimg._prims import convolve as prims

    monkeypatch.setattr(prims, "GATHER_MAX_TAPS", 10**6)
    x = rng.random((2, 37, 53))
    for k in (rng.random((3, 3)), rng.random((4, 5))):
        ref = np.stack([ndi.correlate(xi, k, mode=mode, cval=0.25) for xi in x])
        got = be.to_numpy(filters.correlate(be.asarray(x), be.asarray(k), mode=mode, cval=0.25, method="direct"))
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12)


def test_big_endian_float32_stays_float32():
    # byte order is storage: '>f4' computes and returns float32 like native float32, with
    # SciPy's result (on the native copy) as the reference
    x = np.random.default_rng(3).random((32, 30)).astype(">f4")
    got = filters.gaussian_filter(x, 1.5)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, ndi.gaussian_filter(x.astype(np.float32), 1.5), atol=1e-6)


def test_zero_dimensional_array_parameters_like_scipy():
    # SciPy takes 0-d arrays for sizes, sigmas and truncation; so do we
    x = np.random.default_rng(4).random((20, 18))
    np.testing.assert_allclose(filters.uniform_filter(x, np.array(3)), ndi.uniform_filter(x, 3), atol=1e-12)
    np.testing.assert_allclose(filters.gaussian_filter(x, np.array(1.5), truncate=np.float32(3.0)),
                               ndi.gaussian_filter(x, 1.5, truncate=3.0), atol=1e-12)
