"""``gpuimg resize``, ``warp``, ``undistort`` and ``register`` against OpenCV and SciPy."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image
from scipy import ndimage as ndi

from gpuimg import io as gio
from tests.test_cli import gpuimg


def _smooth(rng, shape, dtype=np.uint8):
    img = ndi.gaussian_filter(rng.random(shape), (2, 2, 0)[: len(shape)])
    img = (img - img.min()) / np.ptp(img)
    return gio.from_float(img, dtype)


@pytest.mark.parametrize("io", ["threads", "processes"])
def test_resize_area_matches_opencv(tmp_path, rng, io):
    grey = _smooth(rng, (60, 84))
    rgb16 = _smooth(rng, (60, 84, 3), np.uint16)
    (tmp_path / "in").mkdir()
    Image.fromarray(grey).save(tmp_path / "in" / "g.png")
    gio.write_image(tmp_path / "in" / "c.tif", rgb16)
    gpuimg("resize", tmp_path / "in", "--out", tmp_path / "out", "--size", "25x35", "-q", "--io", io, check=0)
    for name, img in (("g.png", grey), ("c.tif", rgb16)):
        got = gio.read_image(tmp_path / "out" / name)
        assert got.dtype == img.dtype and got.shape[:2] == (25, 35)
        ref = cv2.resize(gio.to_float(img), (35, 25), interpolation=cv2.INTER_AREA)
        np.testing.assert_allclose(got.astype(float), gio.from_float(ref, img.dtype).astype(float), atol=1)
    gpuimg("resize", tmp_path / "in" / "g.png", "--out", tmp_path / "half", "--scale", "0.5", "-q", check=0)
    assert gio.read_image(tmp_path / "half" / "g.png").shape == (30, 42)


def _scipy_affine(img, m, shape):
    a = np.linalg.inv(np.vstack([m, [0, 0, 1]]))
    swap = np.array([[0, 1], [1, 0]])
    return ndi.affine_transform(img, swap @ a[:2, :2] @ swap, offset=swap @ a[:2, 2], output_shape=shape, order=1,
                                mode="nearest")


def test_warp_matrix_and_map_match_scipy(tmp_path, rng):
    img = _smooth(rng, (50, 60))
    Image.fromarray(img).save(tmp_path / "a.png")
    x = gio.to_float(img, np.float64)
    m = np.array([[0.9, -0.2, 6.0], [0.15, 0.95, -3.0]])
    gpuimg("warp", tmp_path / "a.png", "--out", tmp_path / "aff", "--matrix", ",".join(map(str, m.ravel())),
           "--mode", "nearest", "--size", "40x45", "-q", check=0)
    got = gio.read_image(tmp_path / "aff" / "a.png")
    np.testing.assert_allclose(got.astype(float), gio.from_float(_scipy_affine(x, m, (40, 45)), np.uint8), atol=1)
    yy, xx = np.mgrid[0:50, 0:60].astype(np.float32)
    mx, my = xx + 2 * np.sin(yy / 6), yy * 0.9 + 1.5
    np.savez(tmp_path / "map.npz", map_x=mx, map_y=my)
    gpuimg("warp", tmp_path / "a.png", "--out", tmp_path / "rm", "--map", tmp_path / "map.npz", "--mode", "nearest",
           "-q", check=0)
    ref = ndi.map_coordinates(x, [my, mx], order=1, mode="nearest")
    np.testing.assert_allclose(gio.read_image(tmp_path / "rm" / "a.png").astype(float),
                               gio.from_float(ref, np.uint8).astype(float), atol=1)
    proc = gpuimg("warp", tmp_path / "a.png", "--out", tmp_path / "x", "--matrix", "1,2,3")
    assert proc.returncode == 2 and "--matrix" in proc.stderr


def test_undistort_matches_opencv(tmp_path, rng):
    # two image sizes in one folder: each size gets its own prepared remap
    (tmp_path / "in").mkdir()
    imgs = {"a.png": _smooth(rng, (48, 64)), "b.png": _smooth(rng, (40, 52))}
    for name, img in imgs.items():
        Image.fromarray(img).save(tmp_path / "in" / name)
    cam = np.array([[60.0, 0, 31.5], [0, 60.0, 23.5], [0, 0, 1]])
    coeffs = np.array([-0.2, 0.05, 0.001, -0.002])
    gpuimg("undistort", tmp_path / "in", "--out", tmp_path / "u", "--camera", "60,60,31.5,23.5",
           "--coeffs=" + ",".join(map(str, coeffs)), "--interpolation", "linear", "-q", check=0)
    for name, img in imgs.items():
        h, w = img.shape
        mx, my = cv2.initUndistortRectifyMap(cam, coeffs, None, cam, (w, h), cv2.CV_32FC1)
        ref = ndi.map_coordinates(gio.to_float(img, np.float64), [my, mx], order=1, mode="constant")
        got = gio.read_image(tmp_path / "u" / name).astype(float)
        inner = (slice(4, -4), slice(4, -4))
        np.testing.assert_allclose(got[inner], gio.from_float(ref, np.uint8)[inner].astype(float), atol=2)


def test_undistort_map_series_matches_opencv(tmp_path, rng):
    from gpuimg.registration import Distortion, MapSeries

    img = _smooth(rng, (48, 64))
    Image.fromarray(img).save(tmp_path / "a.png")
    cam = np.array([[60.0, 0, 31.5], [0, 60.0, 23.5], [0, 0, 1]])
    # k1 linear in the parameter, so linear interpolation of the maps is exact
    series = MapSeries([0.0, 2.0], [Distortion(cam, np.array([k1, 0.02, 0, 0])) for k1 in (0.0, -0.3)])
    series.save(tmp_path / "series.npz")
    gpuimg("undistort", tmp_path / "a.png", "--out", tmp_path / "u", "--map-series", tmp_path / "series.npz",
           "--param", 1.0, "-q", check=0)
    mx, my = cv2.initUndistortRectifyMap(cam, np.array([-0.15, 0.02, 0, 0]), None, cam, (64, 48), cv2.CV_32FC1)
    ref = ndi.map_coordinates(gio.to_float(img, np.float64), [my, mx], order=3, mode="constant")
    got = gio.read_image(tmp_path / "u" / "a.png").astype(float)
    inner = (slice(4, -4), slice(4, -4))
    np.testing.assert_allclose(got[inner], gio.from_float(ref, np.uint8)[inner].astype(float), atol=2)
    proc = gpuimg("undistort", tmp_path / "a.png", "--out", tmp_path / "v", "--map-series", tmp_path / "series.npz")
    assert proc.returncode == 2 and "--param" in proc.stderr


def test_register_recovers_known_deformation(tmp_path, rng):
    from gpuimg.registration import BSplineTransform

    n = 96
    fixed = ndi.gaussian_filter(rng.random((n, n)), 2.0)
    fixed = (fixed - fixed.min()) / np.ptp(fixed)
    yy, xx = np.mgrid[0:n, 0:n].astype(float)
    dy, dx = 1.5 * np.sin(2 * np.pi * xx / n), 1.5 * np.cos(2 * np.pi * yy / n)
    moving = ndi.map_coordinates(fixed, [yy + dy, xx + dx], order=3, mode="reflect")
    gio.write_image(tmp_path / "fixed.tif", fixed.astype(np.float32))
    gio.write_image(tmp_path / "moving.tif", moving.astype(np.float32))
    gpuimg("register", tmp_path / "fixed.tif", tmp_path / "moving.tif", "--out", tmp_path / "t.npz",
           "--warped", tmp_path / "warped.tif", "--grid-spacing", 16, "--levels", 2, timeout=300, check=0)
    u = np.asarray(BSplineTransform.load(tmp_path / "t.npz").displacement((n, n)))
    # warped(p) = moving(p + u(p)) = fixed(p + u + d(p + u)) = fixed(p) when u = -d (to first order)
    inner = (slice(16, -16), slice(16, -16))
    err = np.hypot(u[0] + dy, u[1] + dx)[inner]
    assert np.sqrt(np.mean(err ** 2)) < 0.3, np.sqrt(np.mean(err ** 2))
    warped = gio.read_image(tmp_path / "warped.tif")
    assert np.mean((warped - fixed)[inner] ** 2) < 0.1 * np.mean((moving - fixed)[inner] ** 2)
