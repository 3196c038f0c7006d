"""SSIM and friends against scikit-image (CPU) and cuCIM or a cupyx filter pipeline (GPU).

Run: ``python -m pytest benchmarks/bench_metrics.py -q``. Ratios are peer time / gpuimg time.
"""

import importlib

import numpy as np
import pytest

from gpuimg import metrics

import _bandwidth


def _images(rng, shape):
    a = rng.random(shape, dtype=np.float32)
    b = (a + 0.1 * rng.standard_normal(shape)).astype(np.float32)
    return a, b


def _skimage_ssim(a, b, gaussian):
    from skimage.metrics import structural_similarity

    return structural_similarity(a, b, data_range=1.0, gaussian_weights=gaussian, full=True)


def _ndimage_ssim(be, a, b, gaussian):
    """scikit-image's algorithm on ``be.ndimage`` (five filter passes plus the formula)."""
    nd = be.ndimage
    if gaussian:
        filt, kw, win = nd.gaussian_filter, {"sigma": 1.5, "truncate": 3.5, "mode": "reflect"}, 11
    else:
        filt, kw, win = nd.uniform_filter, {"size": 7}, 7
    n = win * win
    cn = n / (n - 1)
    ux, uy = filt(a, **kw), filt(b, **kw)
    uxx, uyy, uxy = filt(a * a, **kw), filt(b * b, **kw), filt(a * b, **kw)
    vx, vy, vxy = cn * (uxx - ux * ux), cn * (uyy - uy * uy), cn * (uxy - ux * uy)
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    p = (win - 1) // 2
    return s[p:-p, p:-p].mean(dtype=be.xp.float64), s


def _cucim_ssim():
    try:
        return importlib.import_module("cucim.skimage.metrics").structural_similarity
    except Exception:
        return None


@pytest.mark.parametrize("gaussian", [True, False], ids=["gaussian", "uniform"])
@pytest.mark.parametrize("impl", ["gpuimg", "skimage"])
def test_ssim_2048_full_cpu(bench, be, rng, impl, gaussian):
    if be.is_gpu:
        pytest.skip("CPU comparison")
    a, b = _images(rng, (2048, 2048))
    group = f"ssim 2048^2 f32 {'gaussian' if gaussian else 'uniform'} full map"
    if impl == "gpuimg":
        bench(metrics.ssim, a, b, data_range=1.0, gaussian_weights=gaussian, full=True, group=group, impl=impl, be=be)
    else:
        bench(_skimage_ssim, a, b, gaussian, group=group, impl=impl, rounds=3)


@pytest.mark.parametrize("impl", ["gpuimg", "peer"])
@pytest.mark.parametrize("gaussian", [True, False], ids=["gaussian", "uniform"])
def test_ssim_4096_full_gpu(bench, be, rng, impl, gaussian):
    if not be.is_gpu:
        pytest.skip("GPU comparison")
    a, b = (be.asarray(x) for x in _images(rng, (4096, 4096)))
    group = f"ssim 4096^2 f32 {'gaussian' if gaussian else 'uniform'} full map"
    if impl == "gpuimg":
        bench(metrics.ssim, a, b, data_range=1.0, gaussian_weights=gaussian, full=True, group=group, impl=impl, be=be)
        return
    cucim = _cucim_ssim()
    if cucim is not None:
        bench(cucim, a, b, data_range=1.0, gaussian_weights=gaussian, full=True, group=group, impl="cucim", be=be)
    else:
        bench(_ndimage_ssim, be, a, b, gaussian, group=group, impl="cupyx", be=be)


@pytest.mark.parametrize("window", ["gaussian", "uniform"])
def test_ssim_4096_bandwidth_gpu(be, rng, benchmark, window):
    """``ssim(..., full=True)`` in bytes of the two inputs and the map per second (issue target:
    half the device's bandwidth); see ``_bandwidth``."""
    if not be.is_gpu:
        pytest.skip("GPU only")
    a, b = (be.asarray(x) for x in _images(rng, (4096, 4096)))

    def call():
        return metrics.ssim(a, b, data_range=1.0, gaussian_weights=window == "gaussian", full=True)

    benchmark.group = f"ssim 4096^2 bandwidth ({window})"
    _bandwidth.record(be, benchmark, call, (a, b), a, f"ssim 4096^2 {window} full map")


@pytest.mark.parametrize("impl", ["gpuimg", "loop"])
def test_ssim_batch_64x512(bench, be, rng, impl):
    a, b = (be.asarray(x) for x in _images(rng, (64, 512, 512)))
    group = "ssim 64x512^2 f32 gaussian, batch vs loop"
    if impl == "gpuimg":
        bench(metrics.ssim, a, b, data_range=1.0, gaussian_weights=True, spatial_ndim=2, group=group, impl=impl, be=be)
    else:
        def loop(a, b):
            return [metrics.ssim(a[i], b[i], data_range=1.0, gaussian_weights=True) for i in range(a.shape[0])]

        bench(loop, a, b, group=group, impl=impl, be=be)


@pytest.mark.parametrize("impl", ["gpuimg", "skimage"])
def test_psnr_2048(bench, be, rng, impl):
    if be.is_gpu and impl == "skimage":
        pytest.skip("CPU peer")
    a, b = _images(rng, (2048, 2048))
    if impl == "gpuimg":
        a, b = be.asarray(a), be.asarray(b)
        bench(metrics.psnr, a, b, data_range=1.0, group="psnr 2048^2 f32", impl=impl, be=be)
    else:
        from skimage.metrics import peak_signal_noise_ratio

        bench(peak_signal_noise_ratio, a, b, data_range=1.0, group="psnr 2048^2 f32", impl=impl)
