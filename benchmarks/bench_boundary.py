"""Boundary gather vs numpy.pad (a sanity benchmark for the harness itself)."""

import numpy as np
import pytest

from gpuimg import _boundary


@pytest.mark.parametrize("impl", ["gpuimg", "numpy"])
def test_pad_reflect(bench, be, impl, rng):
    x = rng.random((512, 2048))
    k = 64
    if impl == "gpuimg":
        xb = be.asarray(x)
        idx = np.arange(-k, x.shape[1] + k)
        bench(be.boundary_take, xb, idx, "reflect", 0.0, group="pad rows 512x2048 by 64", impl=impl, be=be)
    else:
        if be.is_gpu:
            pytest.skip("numpy peer is a CPU reference")
        bench(np.pad, x, ((0, 0), (k, k)), mode=_boundary.pad_mode("reflect"), group="pad rows 512x2048 by 64", impl=impl)
