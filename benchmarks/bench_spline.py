"""B-spline interpolation vs scipy.ndimage (CPU) and cupyx.scipy.ndimage (GPU)."""

from __future__ import annotations

import numpy as np
import pytest

from gpuimg import spline


def _warp_coords(n, rng):
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
    return np.stack([yy + 3.0 * np.sin(xx / 97.0) + 0.25, xx + 2.0 * np.cos(yy / 83.0) - 0.4])


@pytest.mark.parametrize("impl", ["gpuimg", "peer"])
def test_map_coordinates_order3(bench, be, impl, rng):
    n = 4096 if be.is_gpu else 2048
    img = rng.random((n, n)).astype(np.float32)
    coords = _warp_coords(n, rng)
    x, c = be.asarray(img), be.asarray(coords)
    group = f"map_coordinates order 3 {n}^2 float32"
    if impl == "gpuimg":
        bench(spline.map_coordinates, x, c, order=3, mode="mirror", coefficient_dtype=np.float32,
              group=group, impl="gpuimg", be=be)
    else:
        bench(be.ndimage.map_coordinates, x, c, order=3, mode="mirror",
              group=group, impl="cupyx" if be.is_gpu else "scipy", be=be)


@pytest.mark.parametrize("impl", ["gpuimg", "peer"])
def test_spline_filter_order3(bench, be, impl, rng):
    n = 4096 if be.is_gpu else 2048
    img = be.asarray(rng.random((n, n)).astype(np.float32))
    group = f"spline_filter order 3 {n}^2 float32"
    if impl == "gpuimg":
        bench(spline.spline_filter, img, order=3, group=group, impl="gpuimg", be=be)
    else:
        bench(be.ndimage.spline_filter, img, 3, output=np.float32, group=group,
              impl="cupyx" if be.is_gpu else "scipy", be=be)


@pytest.mark.parametrize("impl", ["gpuimg", "peer"])
def test_zoom_order3(bench, be, impl, rng):
    n = 2048 if be.is_gpu else 1024
    img = be.asarray(rng.random((n, n)).astype(np.float32))
    group = f"zoom x1.5 order 3 {n}^2 float32"
    if impl == "gpuimg":
        bench(spline.zoom, img, 1.5, order=3, group=group, impl="gpuimg", be=be)
    else:
        bench(be.ndimage.zoom, img, 1.5, order=3, group=group, impl="cupyx" if be.is_gpu else "scipy", be=be)
