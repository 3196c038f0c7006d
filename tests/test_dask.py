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
