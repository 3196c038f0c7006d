"""Distortion and fit_distortion against OpenCV (projectPoints, undistortPoints, maps, remap)."""

import cv2
import numpy as np
import pytest

from gpuimg.registration import Distortion, fit_distortion

K = np.array([[800.0, 0, 330], [0, 780, 250], [0, 0, 1]])
COEFFS = {
    4: [-0.21, 0.06, 0.0012, -0.0008],
    5: [-0.28, 0.09, 0.001, -0.0007, -0.015],
    8: [0.05, -0.02, 0.0005, 0.0003, 0.001, 0.3, -0.05, 0.01],
}
SHAPE = (240, 320)


def _pts(rng, n=400):
    return rng.uniform([0, 0], [640, 480], (n, 2))


@pytest.mark.parametrize("n", sorted(COEFFS))
def test_distort_points_match_project_points(be, rng, n):
    d = Distortion(K, COEFFS[n])
    pts = _pts(rng)
    rays = np.concatenate([(pts - K[:2, 2]) / np.diag(K)[:2], np.ones((len(pts), 1))], axis=1)
    ref, _ = cv2.projectPoints(rays, np.zeros(3), np.zeros(3), K, np.array(COEFFS[n]))
    got = be.to_numpy(d.distort_points(be.asarray(pts)))
    np.testing.assert_allclose(got, ref.reshape(-1, 2), rtol=0, atol=1e-6)


@pytest.mark.parametrize("n", sorted(COEFFS))
def test_undistort_points_match_opencv(be, rng, n):
    d = Distortion(K, COEFFS[n])
    pts = _pts(rng)
    crit = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 500, 1e-16)
    newk = K * [[0.7], [0.7], [1]]
    for p_cam in (None, newk):
        ref = cv2.undistortPoints(pts.reshape(-1, 1, 2), K, np.array(COEFFS[n]),
                                  P=K if p_cam is None else p_cam, criteria=crit).reshape(-1, 2)
        got = be.to_numpy(d.undistort_points(be.asarray(pts), new_camera_matrix=p_cam))
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6)


@pytest.mark.parametrize("n", sorted(COEFFS))
def test_undistort_maps_match_init_undistort_rectify_map(be, n):
    d = Distortion(K * [[0.5], [0.5], [1]], COEFFS[n])
    newk = d.camera_matrix.copy()
    newk[:2, :2] *= 0.8
    for p_cam in (None, newk):
        rx, ry = cv2.initUndistortRectifyMap(d.camera_matrix, np.array(COEFFS[n]), None,
                                             d.camera_matrix if p_cam is None else p_cam, SHAPE[::-1], cv2.CV_32FC1)
        mx, my = d.undistort_maps(SHAPE, new_camera_matrix=p_cam, backend=be.name)
        np.testing.assert_allclose(be.to_numpy(mx), rx, rtol=0, atol=1e-3)
        np.testing.assert_allclose(be.to_numpy(my), ry, rtol=0, atol=1e-3)


@pytest.mark.parametrize("how", ["undistort", "plan"])
def test_undistort_image_matches_cv2_remap(be, rng, how):
    d = Distortion(K * [[0.5], [0.5], [1]], COEFFS[5])
    yy, xx = np.mgrid[0:SHAPE[0], 0:SHAPE[1]]
    img = (0.5 + 0.25 * np.sin(xx / 7.0) * np.cos(yy / 9.0) + 0.1 * (xx / SHAPE[1])).astype(np.float32)
    rx, ry = cv2.initUndistortRectifyMap(d.camera_matrix, np.array(COEFFS[5]), None, d.camera_matrix,
                                         SHAPE[::-1], cv2.CV_32FC1)
    for interp, flag in (("nearest", cv2.INTER_NEAREST), ("linear", cv2.INTER_LINEAR), ("cubic", cv2.INTER_CUBIC)):
        ref = cv2.remap(img, rx, ry, flag, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        if how == "plan":
            plan = d.undistort_plan(SHAPE, interpolation=interp, backend=be.name)
            got = be.to_numpy(plan(be.asarray(img)))
        else:
            got = be.to_numpy(d.undistort(be.asarray(img), interpolation=interp))
        assert got.dtype == np.float32 and got.shape == img.shape
        inner = (slice(8, -8), slice(8, -8))
        if interp == "nearest":
            # OpenCV rounds positions to 1/32 pixel first: only near-ties may pick the other pixel
            assert (np.abs(got[inner] - ref[inner]) > 1e-6).mean() < 0.01
        else:
            np.testing.assert_allclose(got[inner], ref[inner], rtol=0, atol=5e-3)
    batch = be.to_numpy(d.undistort(be.asarray(np.stack([img, 2 * img]))))
    np.testing.assert_allclose(batch[1], 2 * batch[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("fixed_k", [True, False])
def test_fit_distortion_recovers_barrel(rng, fixed_k):
    ksq = np.array([[800.0, 0, 330], [0, 800, 250], [0, 0, 1]])  # square pixels: the free-centre model
    truth = Distortion(ksq, [-0.25, 0.07, 0.0, 0.0])
    gy, gx = np.mgrid[20:480:20, 20:640:20]
    ideal = np.stack([gx.ravel(), gy.ravel()], axis=1).astype(float)
    obs = truth.distort_points(ideal) + rng.normal(0, 0.05, ideal.shape)
    fit, info = fit_distortion(obs, ideal, camera_matrix=ksq if fixed_k else None, model="k1k2", return_info=True)
    # RMS of 2-D residuals of isotropic noise sigma is sigma * sqrt(2)
    assert info["rms"] < 0.05 * np.sqrt(2) * 1.1
    if fixed_k:
        assert abs(fit.coeffs[0] + 0.25) < 3e-3 and abs(fit.coeffs[1] - 0.07) < 8e-3, fit.coeffs
    ref_x, ref_y = truth.undistort_maps((480, 640))
    mx, my = fit.undistort_maps((480, 640))
    assert max(np.abs(mx - ref_x).max(), np.abs(my - ref_y).max()) < 0.05


def test_bad_input(be):
    with pytest.raises(ValueError, match="camera_matrix"):
        Distortion(np.zeros((3, 3)), [0, 0, 0, 0])
    with pytest.raises(ValueError, match="camera_matrix"):
        Distortion(np.eye(2), [0, 0, 0, 0])
    with pytest.raises(ValueError, match="coeffs"):
        Distortion(K, [0.1, 0.2, 0.0, 0.0, 0.0, 0.0])
    d = Distortion(K, COEFFS[4])
    with pytest.raises(ValueError, match="pts"):
        d.distort_points(be.asarray(np.zeros((5, 3))))
    with pytest.raises(ValueError, match="new_camera_matrix"):
        d.undistort_maps((10, 10), new_camera_matrix=np.zeros((3, 3)))
    with pytest.raises(ValueError, match="model"):
        fit_distortion(np.zeros((10, 2)), np.zeros((10, 2)), model="k9")
    with pytest.raises(ValueError, match="image_points"):
        fit_distortion(np.zeros((10, 3)), np.zeros((10, 2)))
