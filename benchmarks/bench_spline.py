"""B-spline interpolation vs scipy.ndimage (CPU) and cupyx.scipy.ndimage (GPU)."""

from __future__ import annotations

import numpy as np
import pytest

from gpuimg import spline


def _warp_coords(n, rng):
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
    return np.stack([yy + 3.0 * np.sin(xx / 97.0) + 0.25, xx + 2.0 * np.cos(yy / 83.0) - 0.4])


def _warp_coords_3d(n):
    zz, yy, xx = np.mgrid[0:n, 0:n, 0:n].astype(np.float32)
    return np.stack([zz + 1.3 * np.sin(xx / 17.0), yy + 0.7 * np.cos(zz / 13.0), xx - 0.4])


@pytest.mark.parametrize("ndim", [2, 3], ids=["image", "volume"])
@pytest.mark.parametrize("impl", ["gpuimg", "peer"])
def test_map_coordinates_order3(bench, be, impl, rng, ndim):
    if ndim == 2:
        n = 4096 if be.is_gpu else 2048
        coords = _warp_coords(n, rng)
    else:
        n = 192 if be.is_gpu else 128  # a few seconds of host set-up at most in the device run
        coords = _warp_coords_3d(n)
    x, c = be.asarray(rng.random((n,) * ndim).astype(np.float32)), be.asarray(coords)
    group = f"map_coordinates order 3 {n}^{ndim} float32"
    if impl == "gpuimg":
        bench(spline.map_coordinates, x, c, order=3, mode="mirror", coefficient_dtype=np.float32,
              group=group, impl="gpuimg", be=be)
    else:
        bench(be.ndimage.map_coordinates, x, c, order=3, mode="mirror",
              group=group, impl="cupyx" if be.is_gpu else "scipy", be=be)


def _filter_case(be, n, rng):
    return (be.asarray(rng.random((n, n)).astype(np.float32)),), f"spline_filter order 3 {n}^2 float32", \
        spline.spline_filter, {"order": 3}, be.ndimage.spline_filter, {"order": 3, "output": np.float32}


def _zoom_case(be, n, rng):
    return (be.asarray(rng.random((n // 2, n // 2)).astype(np.float32)), 1.5), f"zoom x1.5 order 3 {n // 2}^2 float32", \
        spline.zoom, {"order": 3}, be.ndimage.zoom, {"order": 3}


@pytest.mark.parametrize("case", [_filter_case, _zoom_case], ids=["spline_filter", "zoom"])
@pytest.mark.parametrize("impl", ["gpuimg", "peer"])
def test_filter_and_zoom(bench, be, impl, case, rng):
    args, group, ours, ours_kw, peer, peer_kw = case(be, 4096 if be.is_gpu else 2048, rng)
    if impl == "gpuimg":
        bench(ours, *args, group=group, impl="gpuimg", be=be, **ours_kw)
    else:
        bench(peer, *args, group=group, impl="cupyx" if be.is_gpu else "scipy", be=be, **peer_kw)
