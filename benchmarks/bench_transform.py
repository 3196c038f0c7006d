"""Resizing and warping against OpenCV / SciPy (CPU) and cupyx / cuCIM (GPU).

Run: ``python -m pytest benchmarks/bench_transform.py -q``. Each group times gpuimg and its
peer in the same run; the session prints peer_time / gpuimg_time per group.
"""

from __future__ import annotations

import importlib

import numpy as np
import pytest

from gpuimg import transform

import _bandwidth


def _rotation(n, angle=20.0, scale=0.9):
    c = (n - 1) / 2.0
    t = np.deg2rad(angle)
    a = scale * np.array([[np.cos(t), np.sin(t)], [-np.sin(t), np.cos(t)]])
    m = np.zeros((2, 3))
    m[:, :2] = a
    m[:, 2] = np.array([c, c]) - a @ [c, c]
    return m


def _scipy_affine_args(m):
    """scipy.ndimage.affine_transform (row, col) matrix and offset of the inverse of ``m``."""
    inv = np.linalg.inv(np.vstack([m, [0.0, 0.0, 1.0]]))
    return inv[:2, :2][::-1, ::-1].copy(), inv[:2, 2][::-1].copy()


def _need_cpu(be):
    if be.is_gpu:
        pytest.skip("CPU peer")


def _need_gpu(be):
    if not be.is_gpu:
        pytest.skip("GPU peer")


@pytest.mark.parametrize("impl", ["gpuimg", "cv2"])
def test_resize_area_4096_to_1000(bench, be, impl, rng):
    img = rng.random((4096, 4096), dtype=np.float32)
    group = "resize area 4096^2->1000^2 f32"
    if impl == "gpuimg":
        x = be.asarray(img)
        bench(transform.resize, x, (1000, 1000), interpolation="area", group=group, impl=impl, be=be)
    else:
        _need_cpu(be)
        cv2 = pytest.importorskip("cv2")
        bench(cv2.resize, img, (1000, 1000), interpolation=cv2.INTER_AREA, group=group, impl=impl)


@pytest.mark.parametrize("impl", ["gpuimg", "scipy", "cv2"])
@pytest.mark.parametrize("how", ["call", "plan"])
def test_warp_affine_cubic_2048(bench, be, impl, how, rng):
    """``warp_affine``, and a ``RemapPlan.from_matrix`` made once (the same warp of many
    frames), against SciPy's and OpenCV's warps."""
    _need_cpu(be)
    img = rng.random((2048, 2048), dtype=np.float32)
    m = _rotation(2048)
    group = "warp_affine cubic 2048^2 f32" + (", plan" if how == "plan" else "")
    if impl == "gpuimg":
        if how == "plan":
            plan = transform.RemapPlan.from_matrix(m, (2048, 2048), interpolation="cubic", mode="nearest")
            bench(plan, img, group=group, impl=impl, be=be, rounds=5)
            return
        bench(transform.warp_affine, img, m, interpolation="cubic", mode="nearest", group=group,
              impl=impl, be=be, rounds=5)
    elif impl == "scipy":
        import scipy.ndimage as ndi

        mat, off = _scipy_affine_args(m)
        bench(ndi.affine_transform, img, mat, offset=off, order=3, mode="nearest", group=group,
              impl=impl, rounds=5)
    else:
        cv2 = pytest.importorskip("cv2")
        bench(cv2.warpAffine, img, m, (2048, 2048), flags=cv2.INTER_CUBIC,
              borderMode=cv2.BORDER_REPLICATE, group=group, impl=impl)


@pytest.mark.parametrize("impl", ["gpuimg", "cupyx"])
def test_gpu_warp_affine_cubic_4096(bench, be, impl, rng):
    _need_gpu(be)
    img = be.asarray(rng.random((4096, 4096), dtype=np.float32))
    m = _rotation(4096)
    group = "warp_affine cubic 4096^2 f32 (GPU)"
    if impl == "gpuimg":
        bench(transform.warp_affine, img, m, interpolation="cubic", mode="nearest", group=group,
              impl=impl, be=be)
    else:
        mat, off = _scipy_affine_args(m)
        bench(be.ndimage.affine_transform, img, be.asarray(mat), offset=tuple(off), order=3,
              mode="nearest", group=group, impl=impl, be=be)


def test_gpu_warp_affine_cubic_4096_bandwidth(be, rng, benchmark):
    """The cubic affine warp in bytes of its input and output per second (issue target: half
    the device's bandwidth); see ``_bandwidth``."""
    _need_gpu(be)
    img = be.asarray(rng.random((4096, 4096), dtype=np.float32))
    m = _rotation(4096)

    benchmark.group = "warp_affine cubic 4096^2 bandwidth"
    _bandwidth.record(be, benchmark, lambda: transform.warp_affine(img, m, interpolation="cubic", mode="nearest"),
                      (img,), img, "warp_affine cubic 4096^2 (20 deg rotation)")


@pytest.mark.parametrize("impl", ["gpuimg", "cucim"])
def test_gpu_resize_area_8192_to_2048(bench, be, impl, rng):
    _need_gpu(be)
    img = be.asarray(rng.random((8192, 8192), dtype=np.float32))
    group = "resize area 8192^2->2048^2 f32 (GPU)"
    if impl == "gpuimg":
        bench(transform.resize, img, (2048, 2048), interpolation="area", group=group, impl=impl, be=be)
    else:
        try:
            cucim_transform = importlib.import_module("cucim.skimage.transform")
        except ImportError:
            pytest.skip("cuCIM is not installed")
        bench(cucim_transform.resize, img, (2048, 2048), anti_aliasing=True, order=1, group=group,
              impl=impl, be=be)
