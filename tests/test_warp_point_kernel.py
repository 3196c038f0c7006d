"""The CUDA twin of ``sample_points`` (``kernels/warp_point.cu``) executed on the CPU.

The kernel source is compiled as C++20 with a small shim (one std::thread per CUDA thread, a
std::barrier for ``__syncthreads`` and the warp shuffles) and launched through the real CuPy-twin
wrapper, whose kernel arguments are checked for the exact types a CUDA launch needs. Every case
runs on the 32-bit and on the 64-bit index specialisation, and with the taps gathered directly
and through the shared-memory footprint. Results are compared with ``cv2.remap`` (every interpolation and border),
with ``scipy.ndimage`` (linear and nearest, maps stored as float32 and as float64, the affine and
perspective matrix paths, taps one and many periods outside and positions beyond 2^30 pixels)
and with the defining Keys and Lanczos kernels summed over interior taps.
"""

import ctypes
import re
import types

import numpy as np
import pytest
from _cuda_emulation import WARP_SHIM, THREADED_SHIM, EmulatedKernel, compile_emulated, real

import gpuimg._prims.warp as wp
from gpuimg import _kernels

cv2 = pytest.importorskip("cv2")
ndi = pytest.importorskip("scipy.ndimage")


_TYPES = ("float", "double")
_INDEX = {"int": ctypes.c_int, "long long": ctypes.c_longlong}
_COMBOS = [(t, i, m, mt, it, st) for t in _TYPES for i in wp.INTERPOLATIONS.values()
           for m in sorted(set(wp.TAP_MODE.values())) for mt in _TYPES for it in _INDEX
           for st in ((0, 1) if i >= 2 else (0,))]


_SHIM = THREADED_SHIM + r"""
#define __shared__ static
using std::isfinite; using std::fmod;
""" + WARP_SHIM + r"""
// the grid's blocks in turn on one set of bx threads (a barrier between blocks)
template <typename F>
void run_blocks(F body, int gx, int gy, int bx) {
    blockDim = {(unsigned)bx, 1, 1};
    gridDim = {(unsigned)gx, (unsigned)gy, 1};
    std::barrier<> bar(bx);
    g_bar = bx > 1 ? &bar : nullptr;
    std::vector<std::thread> threads;
    for (int t = 0; t < bx; ++t) threads.emplace_back([=, &bar]() {
        threadIdx = {(unsigned)t, 0, 0};
        for (int y = 0; y < gy; ++y) for (int x = 0; x < gx; ++x) {
            blockIdx = {(unsigned)x, (unsigned)y, 0};
            body();
            if (bx > 1) bar.arrive_and_wait();
        }
    });
    for (auto& th : threads) th.join();
    g_bar = nullptr;
}
"""


def _entry(t, i, m, mt, it, st):
    # the direct gathers run as one thread per block walking its 256 pixels (the kernel's
    # block-stride loop), the staged path as the 256 threads it needs
    sizes = ", ".join(f"{it} {n}" for n in ("nimg", "h", "w", "ho", "wo"))
    return (f'extern "C" void wp_{t}_{i}_{m}_{mt}_{it.replace(" ", "")}_{st}(const {t}* src, {t}* dst, '
            + "".join(f"double m{k}, " for k in range(9))
            + f"const {mt}* mx, const {mt}* my, int use_maps, {sizes}, {t} cval, int outside, int lanes, "
            "int gx, int gy, int bx) { run_blocks([=]() { "
            f"warp_point<{t}, {i}, {m}, {mt}, {it}, {st}>(src, dst, " + "".join(f"m{k}, " for k in range(9))
            + f"mx, my, use_maps, nimg, h, w, ho, wo, cval, outside, lanes); }}, gx, gy, {'bx' if st else '1'}); }}\n")


@pytest.fixture(scope="module")
def emulated(tmp_path_factory):
    return compile_emulated(tmp_path_factory.mktemp("warp_point_kernel"), "wp",
                            _SHIM + _kernels.source("warp_point.cu") + "".join(_entry(*c) for c in _COMBOS))


def _kernel(lib, name):
    t, i, m, mt, it, st = re.fullmatch(
        r"warp_point<(float|double), (\d), (\d), (float|double), (int|long long), ([01])>", name).groups()
    T = np.dtype(np.float32 if t == "float" else np.float64)
    M = np.dtype(np.float32 if mt == "float" else np.float64)
    return EmulatedKernel(getattr(lib, f"wp_{t}_{i}_{m}_{mt}_{it.replace(' ', '')}_{st}"),
                          [T, T] + [ctypes.c_double] * 9 + [M, M, ctypes.c_int] + [_INDEX[it]] * 5
                          + [real(T), ctypes.c_int, ctypes.c_int], name=name,
                          launch=lambda grid, block, shared: (grid[0], grid[1], block[0]),
                          launch_types=(ctypes.c_int,) * 3)


@pytest.fixture(params=["int", "long long"])
def index(request, monkeypatch):
    """Index type the launcher is made to choose (64-bit by lowering the 32-bit limits)."""
    if request.param == "long long":
        monkeypatch.setattr(wp, "_INT32_MAX", 0)
    return request.param


@pytest.fixture(params=["gathered", "staged"])
def taps(request, monkeypatch):
    """How the kernel reads its taps: directly (every thread gathers) or through the block's
    shared-memory footprint, for cubic and Lanczos-4 (the staged specialisations)."""
    monkeypatch.setattr(wp, "STAGED_INTERPOLATIONS",
                        frozenset({"cubic", "lanczos4"} if request.param == "staged" else ()))
    return request.param


@pytest.fixture
def sample(emulated, monkeypatch, index, taps):
    """``sample_points``' CUDA twin on NumPy arrays, through the emulated kernel; checks that
    the launcher asked for the ``index`` specialisation."""
    def get(name):
        assert f", {index}, " in name, name
        return _kernel(emulated, name)

    monkeypatch.setattr(wp._POINT, "get", get)
    host_be = types.SimpleNamespace(xp=np)
    return lambda x, shape, matrix=None, mx=None, my=None, **kw: wp._sample_points_cupy(
        host_be, x, shape, matrix, mx, my, **kw)


BORDERS = {"grid-constant": cv2.BORDER_CONSTANT, "nearest": cv2.BORDER_REPLICATE, "reflect": cv2.BORDER_REFLECT,
           "mirror": cv2.BORDER_REFLECT_101, "wrap": cv2.BORDER_WRAP}
FLAGS = {"nearest": cv2.INTER_NEAREST, "linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC,
         "lanczos4": cv2.INTER_LANCZOS4}


def _smooth(shape, rng):
    h, w = shape
    yy, xx = np.mgrid[:h, :w]
    out = np.full(shape, 0.5)
    for _ in range(3):
        fy, fx = rng.uniform(0.05, 0.25, 2)
        out += 0.15 * np.sin(fx * xx + rng.uniform(0, 6)) * np.cos(fy * yy + rng.uniform(0, 6))
    return out


def _maps(shape, rng):
    h, w = shape
    yy, xx = np.mgrid[:h, :w].astype(np.float64)
    mx = 0.93 * xx + 3.0 * np.sin(yy / 9.0 + rng.uniform()) + 2.0
    my = 1.07 * yy - 2.0 + 2.0 * np.cos(xx / 11.0 + rng.uniform())
    return mx, my


@pytest.mark.parametrize("mode", sorted(BORDERS))
@pytest.mark.parametrize("interpolation", sorted(FLAGS))
def test_kernel_remap_matches_opencv(sample, rng, mode, interpolation):
    img = _smooth((53, 71), rng).astype(np.float32)
    mx, my = (m.astype(np.float32) for m in _maps((47, 66), rng))
    ref = cv2.remap(img, mx, my, FLAGS[interpolation], borderMode=BORDERS[mode], borderValue=0.3)
    got = sample(np.stack([img, img]), (47, 66), None, mx, my, interpolation=interpolation, mode=mode, cval=0.3)
    assert got.shape == (2, 47, 66) and got.dtype == np.float32
    for g in got:
        diff = np.abs(g - ref)
        if interpolation == "nearest":
            assert (diff > 1e-6).mean() < 0.01  # OpenCV's 1/32-pixel rounding moves exact ties
        else:
            assert diff.mean() <= 2e-3 and diff.max() <= 0.03


@pytest.mark.parametrize("mode", ["constant", "grid-constant", "nearest", "reflect", "mirror"])
@pytest.mark.parametrize("map_dtype", [np.float32, np.float64])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernel_linear_remap_matches_scipy(sample, rng, mode, map_dtype, dtype):
    img = rng.random((40, 57))
    mx, my = (m.astype(map_dtype) for m in _maps((45, 50), rng))
    ref = ndi.map_coordinates(img, [my.astype(np.float64), mx.astype(np.float64)], order=1, mode=mode, cval=0.3)
    got = sample(img.astype(dtype)[None], (45, 50), None, mx, my, interpolation="linear", mode=mode, cval=0.3)
    np.testing.assert_allclose(got[0], ref, rtol=0, atol=1e-12 if dtype == np.float64 else 2e-6)


@pytest.mark.parametrize("mode", ["constant", "grid-constant", "nearest", "reflect", "mirror"])
@pytest.mark.parametrize("order", [0, 1])
def test_kernel_affine_matches_scipy(sample, rng, mode, order):
    img = rng.random((40, 57))
    m = np.array([[0.9, 0.3, 5.3], [-0.25, 1.1, -3.1], [0, 0, 1]])
    inv = np.linalg.inv(m)
    ref = ndi.affine_transform(img, inv[:2, :2][::-1, ::-1], offset=inv[:2, 2][::-1], order=order, mode=mode,
                               cval=0.3, output_shape=(45, 50))
    got = sample(img[None], (45, 50), inv, interpolation=["nearest", "linear"][order], mode=mode, cval=0.3)
    np.testing.assert_allclose(got[0], ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("interpolation", ["cubic", "lanczos4"])
@pytest.mark.parametrize("scale", [1.0, 3.0, 9.0])
def test_kernel_downscale_matches_opencv(sample, rng, scale, interpolation):
    # a 32 x 8 tile's footprint grows with the scale: at 9x (about 290 x 80 source pixels) it
    # is past the shared-memory budget, and a staged tile gathers its taps directly
    img = _smooth((300, 330), rng).astype(np.float32)
    inv = np.array([[scale * 0.96, scale * 0.28, 4.2], [-scale * 0.28, scale * 0.96, 80.5], [0, 0, 1]])
    shape = (int(260 / scale), int(300 / scale))
    got = sample(np.stack([img, 1 - img]), shape, inv, interpolation=interpolation, mode="reflect")
    for g, src in zip(got, (img, 1 - img)):
        ref = cv2.warpAffine(src, inv[:2], (shape[1], shape[0]), flags=FLAGS[interpolation] | cv2.WARP_INVERSE_MAP,
                             borderMode=cv2.BORDER_REFLECT)
        diff = np.abs(g - ref)
        assert diff.mean() <= 2e-3 and diff.max() <= 0.03


@pytest.mark.parametrize("lanes_shift", [2, 3, 4, 5])
def test_every_warp_shape_covers_every_output_pixel(sample, rng, monkeypatch, lanes_shift):
    # outputs of 45 x 50 leave partial 32 x 8 tiles at the right and the bottom; 7 x 600 spans
    # two whole 256 x 1 tiles (the shape of warps that are rows, lanes_shift 5) and part of a third
    monkeypatch.setattr(wp, "_lanes_shift", lambda mat, ho, wo: lanes_shift)
    img = rng.random((40, 57))
    inv = np.linalg.inv(np.array([[0.9, 0.3, 5.3], [-0.25, 0.1, -3.1], [0, 0, 1]]))
    for shape in ((45, 50), (7, 600)):
        ref = ndi.affine_transform(img, inv[:2, :2][::-1, ::-1], offset=inv[:2, 2][::-1], order=1, mode="reflect",
                                   output_shape=shape)
        got = sample(np.stack([img, 2 * img]), shape, inv, interpolation="linear", mode="reflect")
        np.testing.assert_allclose(got, np.stack([ref, 2 * ref]), rtol=0, atol=1e-12)


@pytest.mark.parametrize("angle,expected", [(0.0, 5), (30.0, 3), (90.0, 2), (180.0, 5)])
def test_warp_shape_spans_the_fewest_source_rows(angle, expected):
    # a rotation by a: source rows change by sin(a) along a warp's width and cos(a) along its
    # height; a width of 2^s spans |sin a| (2^s - 1) + |cos a| (2^(5 - s) - 1) rows
    t = np.deg2rad(angle)
    m = np.array([[np.cos(t), -np.sin(t), 3.0], [np.sin(t), np.cos(t), -2.0], [0, 0, 1]])
    assert wp._lanes_shift(m.ravel(), 512, 512) == expected


def test_kernel_non_finite_positions_give_cval(sample):
    img = np.arange(12.0).reshape(3, 4)
    mx = np.array([[0.5, np.nan], [np.inf, 1.0]], np.float32)
    my = np.array([[0.5, 1.0], [1.0, -np.inf]], np.float32)
    for interpolation in FLAGS:
        got = sample(img[None], (2, 2), None, mx, my, interpolation=interpolation, mode="nearest", cval=-7.0)[0]
        assert got[0, 1] == got[1, 0] == got[1, 1] == -7.0 and np.isfinite(got[0, 0])


def test_launcher_picks_32_bit_indices_where_every_index_fits():
    assert wp._point_index_type(3, 1000, 1000, 2000, 1000) == "int"
    assert wp._point_index_type(1, 2**15, 2**16 - 1, 2**15, 2**16 - 1) == "int"
    assert wp._point_index_type(2, 2**15, 2**15, 2**15, 2**15) == "long long"  # 2^31 input samples
    assert wp._point_index_type(1, 10, 10, 2**16, 2**15) == "long long"  # 2^31 output samples
    assert wp._point_index_type(1, 1, 2**29, 1, 1) == "long long"  # a side of 2^29


def _lanczos4(t):
    return np.sinc(t) * np.sinc(t / 4.0)


def _keys(t, a=-0.75):
    t = np.abs(t)
    return np.where(t < 1, ((a + 2) * t - (a + 3)) * t * t + 1,
                    np.where(t < 2, ((a * t - 5 * a) * t + 8 * a) * t - 4 * a, 0.0))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("interpolation", ["cubic", "lanczos4"])
def test_kernel_interior_taps_match_the_kernel_formulas(sample, rng, interpolation, dtype):
    # positions on the 1/1024 grid (no rounding) with every tap inside: the sum of the
    # defining kernel (Keys a = -0.75; normalised sinc(t) sinc(t / 4)) over the taps
    img = rng.random((30, 41))
    n = 400
    px = rng.integers(4 * 1024, 36 * 1024, n) / 1024.0
    py = rng.integers(4 * 1024, 25 * 1024, n) / 1024.0
    px[:4] = [4.0, 10.5, 20 + 1 / 1024, 30 - 1 / 1024]  # exact taps, half, smallest offsets
    taps, first, fn = (4, -1, _keys) if interpolation == "cubic" else (8, -3, _lanczos4)
    ref = np.zeros(n)
    x0, y0 = np.floor(px).astype(int) + first, np.floor(py).astype(int) + first
    wx = fn(px[:, None] - (x0[:, None] + np.arange(taps)))
    wy = fn(py[:, None] - (y0[:, None] + np.arange(taps)))
    wx /= wx.sum(axis=1, keepdims=True)
    wy /= wy.sum(axis=1, keepdims=True)
    for a in range(taps):
        for b in range(taps):
            ref += wy[:, a] * wx[:, b] * img[y0 + a, x0 + b]
    got = sample(img.astype(dtype)[None], (1, n), None, px[None], py[None], interpolation=interpolation,
                 mode="reflect")
    np.testing.assert_allclose(got[0, 0], ref, rtol=0, atol=1e-12 if dtype == np.float64 else 2e-6)


@pytest.mark.parametrize("mode", ["reflect", "mirror", "wrap", "nearest", "grid-constant", "constant"])
@pytest.mark.parametrize("interpolation", ["nearest", "linear"])
def test_kernel_far_positions_match_scipy(sample, rng, mode, interpolation):
    # edge taps one and several periods out (folded without a division, then with one), and
    # positions beyond 2^30 pixels (reduced by the period, or clamped), on both axes
    h, w = 23, 31
    img = rng.random((h, w))
    periods = {"reflect": (2 * h, 2 * w), "mirror": (2 * h - 2, 2 * w - 2), "wrap": (h, w)}.get(mode, (1000, 1000))
    shifts = np.array([0, 1, -1, 3, -7, 2**21, -(2**22) - 1, 3 * 2**28 + 5, -(5 * 2**29)])
    base_x = (rng.integers(-4 * 128, (w + 4) * 128, (len(shifts), 40)) + 0.5) / 128  # no ties at 1/2
    base_y = (rng.integers(-4 * 128, (h + 4) * 128, (len(shifts), 40)) + 0.5) / 128
    mx = base_x + shifts[:, None] * float(periods[1])
    my = base_y + shifts[::-1, None] * float(periods[0])
    assert np.abs(mx).max() > 2**30 and np.abs(my).max() > 2**30
    ref = ndi.map_coordinates(img, [my, mx], order=["nearest", "linear"].index(interpolation),
                              mode="grid-wrap" if mode == "wrap" else mode, cval=0.3)
    got = sample(img[None], mx.shape, None, mx, my, interpolation=interpolation, mode=mode, cval=0.3)
    np.testing.assert_allclose(got[0], ref, rtol=0, atol=1e-12)


def test_kernel_perspective_matches_scipy_at_the_projected_positions(sample, rng):
    img = rng.random((40, 57))
    hm = np.array([[0.95, 0.2, 3.1], [-0.1, 1.05, -2.3], [4e-4, -6e-4, 1.0]])
    jj, ii = np.meshgrid(np.arange(50.0), np.arange(45.0))
    u, v, s = (hm[k, 0] * jj + hm[k, 1] * ii + hm[k, 2] for k in range(3))
    for mode in ("reflect", "grid-constant"):
        ref = ndi.map_coordinates(img, [v / s, u / s], order=1, mode=mode, cval=0.3)
        got = sample(img[None], (45, 50), hm, interpolation="linear", mode=mode, cval=0.3)
        np.testing.assert_allclose(got[0], ref, rtol=0, atol=1e-12)
