"""Denoising against peers: non-local means vs scikit-image (and cuCIM), bilateral vs OpenCV
(and cuCIM), on the backend under test.

CPU cases: ``nl_means`` 512^2 (fast mode, patch 7, distance 11) and ``bilateral`` 512^2 r=7.
GPU cases: ``bilateral`` 4096^2 r=7 and ``nl_means`` 1024^2; the CPU peers (OpenCV,
scikit-image) run in the same group so the ratio is GPU speed-up over the CPU library, and
cuCIM is timed too when it is installed.
"""

import importlib.util

import numpy as np
import pytest

from gpuimg import denoise, segment

HAS_CUCIM = importlib.util.find_spec("cucim") is not None


def _cucim(be, name):
    """``cucim.skimage.restoration.<name>``, or skip the case."""
    if not (HAS_CUCIM and be.is_gpu):
        pytest.skip("cuCIM peer needs cucim and the GPU backend")
    import cucim.skimage.restoration as cu

    if not hasattr(cu, name):
        pytest.skip(f"this cuCIM has no {name}")
    return getattr(cu, name)


def _image(rng, n):
    x = np.zeros((n, n), dtype=np.float32)
    x[n // 4:3 * n // 4, n // 4:3 * n // 4] = 1.0
    return x + 0.1 * rng.standard_normal((n, n)).astype(np.float32)


@pytest.mark.parametrize("impl", ["gpuimg", "skimage", "cucim"])
def test_nl_means(bench, be, rng, impl):
    n = 1024 if be.is_gpu else 512
    x = _image(rng, n)
    group = f"nl_means fast {n}^2 p7 d11"
    if impl == "gpuimg":
        xb = be.asarray(x)
        bench(denoise.nl_means, xb, h=0.1, patch_size=7, patch_distance=11, group=group, impl=impl, be=be, rounds=3)
    elif impl == "skimage":
        from skimage.restoration import denoise_nl_means

        bench(denoise_nl_means, x, 7, 11, 0.1, group=group, impl=impl, be=be, rounds=3)
    else:
        cu_nlm = _cucim(be, "denoise_nl_means")
        bench(cu_nlm, be.asarray(x), 7, 11, 0.1, group=group, impl=impl, be=be, rounds=3)


@pytest.mark.parametrize("impl", ["gpuimg", "cv2", "cucim"])
def test_bilateral(bench, be, rng, impl):
    n = 4096 if be.is_gpu else 512
    x = _image(rng, n)
    group = f"bilateral {n}^2 r7"
    if impl == "gpuimg":
        xb = be.asarray(x)
        bench(denoise.bilateral, xb, sigma_color=0.2, sigma_spatial=3.0, win_size=15, mode="mirror",
              group=group, impl=impl, be=be, rounds=5)
    elif impl == "cv2":
        import cv2

        bench(cv2.bilateralFilter, x, 15, 0.2, 3.0, borderType=cv2.BORDER_REFLECT_101, group=group, impl=impl,
              be=be, rounds=5)
    else:
        cu_bilateral = _cucim(be, "denoise_bilateral")
        bench(cu_bilateral, be.asarray(x), win_size=15, sigma_color=0.2, sigma_spatial=3.0, mode="reflect",
              group=group, impl=impl, be=be, rounds=5)


@pytest.mark.parametrize("impl", ["gpuimg", "skimage"])
def test_threshold_local(bench, be, rng, impl):
    x = _image(rng, 2048 if be.is_gpu else 1024)
    group = f"threshold_local gaussian {x.shape[0]}^2 b51"
    if impl == "gpuimg":
        bench(segment.threshold_local, be.asarray(x), 51, group=group, impl=impl, be=be, rounds=5)
    else:
        from skimage.filters import threshold_local

        bench(threshold_local, x, 51, group=group, impl=impl, be=be, rounds=5)
