"""register_bspline vs SimpleITK's B-spline registration (L-BFGS-B), and lens undistortion.

The registration case is the acceptance case of the tests: a random smooth deformation of up
to 8 px on a 256x256 texture (skimage.data.grass) with noise sigma 0.01. Both registrations
use mean squares, a 3-level pyramid and a final control spacing of 32 px; the RMS error of
the recovered displacement over the interior is stored in ``extra_info["rms_px"]`` and
printed, next to the time ratio.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage as ndi
import skimage.data

from gpuimg.registration import BSplineTransform, Distortion, register_bspline

import _bandwidth

SHAPE = (256, 256)
GROUP = "register_bspline 256^2 8px (ssd, 3 levels, 32 px grid)"


@pytest.fixture(scope="module")
def case():
    img = skimage.data.grass().astype(float)
    img = (img - img.min()) / np.ptp(img)
    img = ndi.zoom(ndi.gaussian_filter(img, 0.8), 0.5, order=1)[:256, :256]
    rng = np.random.default_rng(3)
    t = BSplineTransform.for_shape(SHAPE, 64.0)
    c = rng.standard_normal(t.coefficients.shape)
    u = BSplineTransform(t.control_shape, 64.0, c).displacement(SHAPE)
    truth = BSplineTransform(t.control_shape, 64.0, c * 8.0 / np.abs(u).max())
    u = truth.displacement(SHAPE)
    fixed = truth.warp(img, mode="nearest") + rng.normal(0, 0.01, SHAPE)
    moving = img + rng.normal(0, 0.01, SHAPE)
    return fixed, moving, u


def _rms(u_est, u_true):
    err = np.sqrt(((u_est - u_true) ** 2).sum(axis=0))[16:-16, 16:-16]
    return float(np.sqrt(np.mean(err**2)))


def _sitk_register(fixed, moving):
    import SimpleITK as sitk

    f = sitk.GetImageFromArray(fixed)
    m = sitk.GetImageFromArray(moving)
    tx = sitk.BSplineTransformInitializer(f, [8, 8], order=3)
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMeanSquares()
    reg.SetInterpolator(sitk.sitkBSpline)
    reg.SetOptimizerAsLBFGSB(gradientConvergenceTolerance=1e-7, numberOfIterations=100,
                             maximumNumberOfCorrections=20, maximumNumberOfFunctionEvaluations=1000,
                             costFunctionConvergenceFactor=1e5)
    reg.SetInitialTransform(tx, inPlace=True)
    reg.SetShrinkFactorsPerLevel([4, 2, 1])
    reg.SetSmoothingSigmasPerLevel([2, 1, 0])
    out = reg.Execute(f, m)
    field = sitk.TransformToDisplacementField(out, sitk.sitkVectorFloat64, f.GetSize(), f.GetOrigin(),
                                              f.GetSpacing(), f.GetDirection())
    d = sitk.GetArrayFromImage(field)  # (h, w, 2) as (dx, dy)
    return np.stack([d[..., 1], d[..., 0]])


@pytest.mark.parametrize("impl", ["gpuimg", "SimpleITK"])
def test_register_bspline_vs_simpleitk(bench, benchmark, be, case, impl):
    fixed, moving, u = case
    if impl == "gpuimg":
        fb, mb = be.asarray(fixed), be.asarray(moving)

        def run():
            t = register_bspline(fb, mb, grid_spacing=32, levels=3, max_iter=100)
            return be.to_numpy(t.displacement(SHAPE))

        est = bench(run, group=GROUP, impl=impl, be=be, rounds=1)
    else:
        if be.is_gpu:
            pytest.skip("SimpleITK is a CPU peer")
        pytest.importorskip("SimpleITK")
        est = bench(_sitk_register, fixed, moving, group=GROUP, impl=impl, rounds=1)
    benchmark.extra_info["rms_px"] = _rms(est, u)
    print(f"\n{impl} ({be.name}): RMS displacement error {_rms(est, u):.3f} px")


def test_undistort_4096_bandwidth_gpu(be, benchmark):
    """``Distortion.undistort`` with cached maps in bytes of the image in and out per second
    (issue target: half the device's bandwidth; the float32 maps add twice the image's bytes
    of reads, not counted); see ``_bandwidth``."""
    if not be.is_gpu:
        pytest.skip("GPU only")
    n = 4096
    k = np.array([[0.8 * n, 0, n / 2], [0, 0.8 * n, n / 2], [0, 0, 1]])
    d = Distortion(k, [-0.2, 0.05, 0.001, 0.0005, 0.0])
    x = be.asarray(np.random.default_rng(0).random((n, n)).astype(np.float32))

    benchmark.group = "undistort 4096^2 bandwidth"
    _bandwidth.record(be, benchmark, lambda: d.undistort(x, interpolation="linear"), (x,), x,
                      "undistort 4096^2 linear, cached maps")


@pytest.mark.parametrize("impl", ["gpuimg", "cv2"])
@pytest.mark.parametrize("how", ["cached maps", "plan"])
def test_undistort_cached_maps(bench, be, impl, how):
    """``Distortion.undistort`` with its cached maps, and the prepared ``undistort_plan``
    (on NumPy the plan keeps every pixel's taps), against ``cv2.remap`` with OpenCV's maps."""
    if how == "plan" and be.is_gpu:
        pytest.skip("on CuPy a plan keeps only the maps: the cached-maps group times the same sampler")
    n = 4096 if be.is_gpu else 2048
    k = np.array([[0.8 * n, 0, n / 2], [0, 0.8 * n, n / 2], [0, 0, 1]])
    d = Distortion(k, [-0.2, 0.05, 0.001, 0.0005, 0.0])
    img = np.random.default_rng(0).random((n, n)).astype(np.float32)
    group = f"undistort {n}^2 float32 linear, {how}"
    if impl == "gpuimg":
        x = be.asarray(img)
        if how == "plan":
            bench(d.undistort_plan((n, n), interpolation="linear"), x, group=group, impl=impl, be=be)
            return
        d.undistort(x, interpolation="linear")
        bench(d.undistort, x, interpolation="linear", group=group, impl=impl, be=be)
    else:
        if be.is_gpu:
            pytest.skip("cv2 is a CPU peer")
        import cv2

        mx, my = cv2.initUndistortRectifyMap(k, d.coeffs, None, k, (n, n), cv2.CV_32FC1)
        bench(cv2.remap, img, mx, my, cv2.INTER_LINEAR, group=group, impl=impl)
