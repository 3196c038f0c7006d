"""gpuimg.dask on a dask.distributed LocalCluster: chunked results equal whole-image references."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage as ndi

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

import gpuimg.dask as gd  # noqa: E402
from tests.conftest import to_np  # noqa: E402


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                       dashboard_address=None)
    with distributed.Client(cluster) as c:
        yield c
    cluster.close()


def _chunked(be, x, chunks):
    return da.from_array(be.asarray(x), chunks=chunks, asarray=False)


@pytest.mark.parametrize("mode", ["reflect", "mirror", "nearest", "constant", "wrap"])
def test_convolve_equals_scipy(client, be, rng, mode):
    x = rng.random((2, 70, 61))
    k = rng.random((9, 6))
    got = gd.convolve(_chunked(be, x, (1, 16, 20)), k, mode=mode, cval=0.5, origin=(1, -1))
    ref = np.stack([ndi.convolve(xx, k, mode=mode, cval=0.5, origin=(1, -1)) for xx in x])
    np.testing.assert_allclose(to_np(client.compute(got).result()), ref, atol=1e-10)


def test_convolve_halo_wider_than_chunk(client, be, rng):
    x = rng.random((64, 64)).astype(np.float32)
    k = np.ones((15, 15), np.float32) / 225
    got = gd.convolve(_chunked(be, x, (6, 64)), k, mode="mirror")
    assert got.dtype == np.float32
    np.testing.assert_allclose(to_np(client.compute(got).result()), ndi.convolve(x, k, mode="mirror"), atol=1e-5)


def test_bad_input():
    with pytest.raises(TypeError, match="image"):
        gd.convolve(np.zeros((8, 8)), np.ones((3, 3)))
    with pytest.raises(ValueError, match="mode"):
        gd.convolve(da.zeros((8, 8)), np.ones((3, 3)), mode="bogus")
    with pytest.raises(ValueError, match="method"):
        gd.deconvolve(da.zeros((8, 8)), np.ones((3, 3)), method="magic")
    with pytest.raises(ValueError, match="halo"):
        gd.deconvolve(da.zeros((8, 8)), np.ones((3, 3)), halo=-1)


def test_local_maps_equal_references(client, be, rng):
    from skimage.metrics import structural_similarity

    a = rng.random((80, 70))
    b = np.clip(a + 0.1 * rng.standard_normal(a.shape), 0, 1)
    da_a, da_b = _chunked(be, a, (24, 20)), _chunked(be, b, (24, 20))
    _, ref = structural_similarity(a, b, data_range=1.0, full=True)
    np.testing.assert_allclose(to_np(gd.local_ssim(da_a, da_b, data_range=1.0).compute()), ref, atol=1e-7)
    _, ref = structural_similarity(a, b, data_range=1.0, full=True, gaussian_weights=True)
    got = gd.local_ssim(da_a, da_b, data_range=1.0, gaussian_weights=True).compute()
    np.testing.assert_allclose(to_np(got), ref, atol=1e-7)
    ref = ndi.uniform_filter((a - b) ** 2, 7, mode="reflect")
    np.testing.assert_allclose(to_np(gd.local_mse(da_a, da_b).compute()), ref, atol=1e-10)
    # NCC from its definition with SciPy box means
    mean = lambda x: ndi.uniform_filter(x, 7, mode="reflect")  # noqa: E731
    cov = mean(a * b) - mean(a) * mean(b)
    ref = cov / np.sqrt((mean(a * a) - mean(a) ** 2) * (mean(b * b) - mean(b) ** 2))
    np.testing.assert_allclose(to_np(gd.local_ncc(da_a, da_b).compute()), ref, atol=1e-6)


@pytest.mark.parametrize("method,kwargs", [
    ("richardson_lucy", {"num_iter": 15}),
    ("fista_tv", {"num_iter": 15, "weight": 1e-3}),
    ("nesterov", {"num_iter": 15, "weight": 1e-3}),
    ("landweber", {"num_iter": 15, "boundary": "periodic"}),
])
def test_deconvolve_default_halo_within_1e3(client, rng, method, kwargs):
    from gpuimg import filters, psf, restoration

    truth = ndi.zoom(rng.random((24, 24)), 8, order=0)[:176, :176]  # sharp-edged blocks
    k = np.asarray(psf.disk(2.0))
    blurred = filters.convolve(truth, k) + 0.01 * rng.standard_normal(truth.shape)
    # chunked fista_tv starts from the image (its Wiener start is global)
    whole = getattr(restoration, method)(blurred, k, **kwargs, **({"x0": "image"} if method == "fista_tv" else {}))
    chunked = gd.deconvolve(da.from_array(blurred, chunks=(44, 88)), k, method=method, **kwargs)
    got = client.compute(chunked).result()
    assert np.abs(got - whole).max() < 1e-3
    # the halo matters: a thin one is visibly wrong at the seams
    thin = gd.deconvolve(da.from_array(blurred, chunks=(44, 88)), k, method=method, halo=2, **kwargs).compute()
    assert np.abs(thin - whole).max() > 1e-3


def _scipy_affine(x, m, shape):
    a = np.linalg.inv(np.vstack([m, [0, 0, 1]]))
    swap = np.array([[0, 1], [1, 0]])
    return np.stack([ndi.affine_transform(xx, swap @ a[:2, :2] @ swap, offset=swap @ a[:2, 2], output_shape=shape,
                                          order=1, mode="nearest") for xx in x])


def test_warps_equal_scipy(client, be, rng):
    x = ndi.gaussian_filter(rng.random((2, 90, 80)), 2)
    dx = _chunked(be, x, (1, 30, 25))
    th = np.deg2rad(25)
    m = np.array([[0.8 * np.cos(th), -0.8 * np.sin(th), 15], [0.8 * np.sin(th), 0.8 * np.cos(th), -5]])
    got = gd.warp_affine(dx, m, (70, 75), chunks=(20, 30), mode="nearest").compute()
    np.testing.assert_allclose(to_np(got), _scipy_affine(x, m, (70, 75)), atol=1e-6)
    h = np.array([[0.9, 0.05, 3], [0.02, 1.0, -2], [1e-3, 2e-3, 1]])
    yy, xx = np.mgrid[0:80, 0:80].astype(float)
    w = h[2, 0] * xx + h[2, 1] * yy + h[2, 2]
    hi = np.linalg.inv(h)
    sx = (hi[0, 0] * xx + hi[0, 1] * yy + hi[0, 2]) / (hi[2, 0] * xx + hi[2, 1] * yy + hi[2, 2])
    sy = (hi[1, 0] * xx + hi[1, 1] * yy + hi[1, 2]) / (hi[2, 0] * xx + hi[2, 1] * yy + hi[2, 2])
    del w
    got = gd.warp_perspective(dx, h, (80, 80), chunks=(25, 25), mode="nearest").compute()
    ref = np.stack([ndi.map_coordinates(xx_, [sy, sx], order=1, mode="nearest") for xx_ in x])
    np.testing.assert_allclose(to_np(got), ref, atol=1e-6)
    yy, xx = np.mgrid[0:60, 0:70].astype(float)
    mx, my = xx * 1.1 + 3 * np.sin(yy / 9), yy * 1.2 + 2 * np.cos(xx / 7)
    got = gd.remap(dx, da.from_array(mx, chunks=(20, 25)), my, mode="nearest").compute()
    ref = np.stack([ndi.map_coordinates(xx_, [my, mx], order=1, mode="nearest") for xx_ in x])
    np.testing.assert_allclose(to_np(got), ref, atol=1e-6)


def test_antialiased_warps_equal_whole_image(client, be, rng):
    # footprint filtering has no SciPy twin; the chunked result must equal gpuimg's whole-image
    # call, which tests/test_transform.py checks against OpenCV's INTER_AREA
    from gpuimg import transform

    x = ndi.gaussian_filter(rng.random((90, 80)), 1)
    dx = _chunked(be, x, (30, 25))
    m = np.array([[0.3, 0.1, 5], [-0.1, 0.3, 8]])
    got = gd.warp_affine(dx, m, (30, 30), chunks=(10, 12), antialias=True, interpolation="area").compute()
    np.testing.assert_allclose(to_np(got), to_np(transform.warp_affine(be.asarray(x), m, (30, 30), antialias=True,
                                                                        interpolation="area")), atol=1e-10)
    yy, xx = np.mgrid[0:60, 0:70].astype(float)
    mx, my = xx * 1.1 + 3 * np.sin(yy / 9), yy * 1.2 + 2 * np.cos(xx / 7)
    got = gd.remap(dx, da.from_array(mx, chunks=(20, 25)), my, antialias=True).compute()
    np.testing.assert_allclose(to_np(got), to_np(transform.remap(be.asarray(x), be.asarray(mx), be.asarray(my),
                                                                  antialias=True)), atol=1e-10)
