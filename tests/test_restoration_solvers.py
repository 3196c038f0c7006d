"""Deconvolution solvers against scikit-image, closed forms, dense linear algebra and SciPy."""

import numpy as np
import pytest
import scipy.ndimage as ndi
from conftest import to_np
from test_restoration_admm import _blur_matrix, _kkt_residual, _tv_objective
from skimage import data
from skimage.restoration import denoise_tv_chambolle
from skimage.restoration import wiener as sk_wiener

from gpuimg import psf as psfs
from gpuimg._backend import get_backend
from gpuimg import restoration as R


@pytest.fixture(params=["fft", "direct"])
def blur_method(request, monkeypatch):
    """The solvers' blur operators take the FFT or, for separable PSFs, the direct passes on
    either backend; returns ``(method, used)``, ``used`` collecting each operator's method."""
    import gpuimg.restoration._common as common
    import gpuimg.restoration.operator as op

    monkeypatch.setattr(op, "_DIRECT_OVERRIDE", request.param == "direct")
    used = []

    class Recorded(op.BlurOperator):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            used.append(self.method)

    monkeypatch.setattr(common, "BlurOperator", Recorded)
    return request.param, used


def _check_method(blur_method, separable=True):
    method, used = blur_method
    assert used and set(used) == {method if separable else "fft"}


def _scene(n=48):
    return data.camera()[::512 // n, ::512 // n][:n, :n] / 255.0


def _otf(k, shape):
    # psf2otf by hand with NumPy: zero-fill, centre to the origin, FFT
    big = np.zeros(shape)
    big[: k.shape[0], : k.shape[1]] = k
    return np.fft.fft2(np.roll(big, (-(k.shape[0] // 2), -(k.shape[1] // 2)), axis=(0, 1)))


@pytest.mark.parametrize("balance", [1e-3, 0.1])
def test_wiener_matches_skimage_periodic(be, rng, balance, blur_method):
    x = _scene()
    k = psfs.gaussian((7, 7), 1.5)
    b = ndi.convolve(x, k, mode="wrap") + rng.normal(0, 0.01, x.shape)
    ref = sk_wiener(b, k, balance, clip=False)
    got = to_np(R.wiener(be.asarray(b), be.asarray(k), balance=balance, boundary="periodic"))
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-10)
    reg = np.array([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]) * 0.5
    ref = sk_wiener(b, k, balance, reg=reg, clip=False)
    got = to_np(R.wiener(be.asarray(b), be.asarray(k), balance=balance, reg=be.asarray(reg), boundary="periodic"))
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-10)
    _check_method(blur_method)


def test_wiener_default_balance_and_reflect(be, rng):
    x = _scene(64)
    k = psfs.disk(3.0)
    b = ndi.convolve(x, k, mode="reflect") + rng.normal(0, 0.01, x.shape)
    got = to_np(R.wiener(be.asarray(b.astype(np.float32)), be.asarray(k)))
    assert got.dtype == np.float32
    # restores: closer to the scene than the blurred input (ISNR > 0)
    assert np.sum((got - x) ** 2) < np.sum((b - x) ** 2)


@pytest.mark.parametrize("boundary,mode", [("periodic", "wrap"), ("reflect", "reflect")])
def test_inverse_filter_undoes_noiseless_blur(be, rng, boundary, mode):
    # with an axis-symmetric PSF the DCT-II diagonalises the reflect model exactly
    x = rng.random((2, 40, 36))
    k = psfs.gaussian((5, 5), 0.7)
    b = np.stack([ndi.convolve(xi, k, mode=mode) for xi in x])
    got = to_np(R.inverse_filter(be.asarray(b), be.asarray(k), eps=1e-6, boundary=boundary))
    np.testing.assert_allclose(got, x, atol=1e-9)


def _reflect_matrix(k, shape):
    # the reflect-boundary convolution as a dense matrix, column by column from SciPy
    n = shape[0] * shape[1]
    cols = [ndi.convolve(np.eye(1, n, j).reshape(shape), k, mode="reflect").ravel() for j in range(n)]
    return np.array(cols).T


@pytest.mark.parametrize("psf", ["motion", "even", "offset"])
def test_wiener_reflect_asymmetric_psf_is_tikhonov_minimiser(be, rng, psf):
    # no fast transform diagonalises the reflect model of these PSFs: the filter must still
    # minimise ||A x - b||^2 + lam ||R x||^2 for that model (dense normal equations here;
    # CG stops at a relative residual of 1e-8, the old mirror path was off by order 1)
    shape = (14, 12)
    k = {"motion": psfs.motion(7, 30.0), "even": psfs.gaussian((4, 5), 1.0),
         "offset": np.pad(psfs.gaussian((3, 3), 0.8), ((0, 2), (1, 0)))}[psf]
    k = k / k.sum()
    x = ndi.gaussian_filter(rng.random((2,) + shape), 1.0)
    b = np.stack([ndi.convolve(xi, k, mode="reflect") for xi in x]) + rng.normal(0, 1e-3, x.shape)
    lap = np.array([[0.0, -1.0, 0.0], [-1.0, 4.0, -1.0], [0.0, -1.0, 0.0]])
    A, L = _reflect_matrix(k, shape), _reflect_matrix(lap, shape)
    for lam, reg in ((1e-2, None), (1e-3, np.array([[0.0, -0.5, 0.0], [-1.0, 3.0, -0.5], [0.0, -1.0, 0.0]]))):
        Rm = L if reg is None else _reflect_matrix(reg, shape)
        ref = np.linalg.solve(A.T @ A + lam * Rm.T @ Rm, A.T @ b.reshape(2, -1).T).T.reshape(b.shape)
        got = R.wiener(be.asarray(b), be.asarray(k), balance=lam, reg=None if reg is None else be.asarray(reg))
        np.testing.assert_allclose(to_np(got), ref, rtol=0, atol=1e-5)
    # the damped inverse filter: lam = eps^2, R = I
    eps = 0.05
    ref = np.linalg.solve(A.T @ A + eps**2 * np.eye(A.shape[1]), A.T @ b.reshape(2, -1).T).T.reshape(b.shape)
    got = R.inverse_filter(be.asarray(b), be.asarray(k), eps=eps)
    np.testing.assert_allclose(to_np(got), ref, rtol=0, atol=1e-5)


@pytest.mark.parametrize("num_iter", [1, 7, 40])
def test_landweber_closed_form(be, rng, num_iter, blur_method):
    x = _scene()
    k = psfs.gaussian((9, 9), 2.0)
    b = ndi.convolve(x, k, mode="wrap") + rng.normal(0, 0.01, x.shape)
    got, info = R.landweber(be.asarray(b), be.asarray(k), num_iter=num_iter, boundary="periodic", return_info=True)
    H = _otf(k, x.shape)
    tau = info["step"]
    assert tau == pytest.approx(1.0 / np.max(np.abs(H) ** 2), rel=1e-12)
    h2 = np.abs(H) ** 2
    factor = np.where(h2 > 1e-300, (1 - (1 - tau * h2) ** num_iter) / np.where(h2 > 1e-300, h2, 1), num_iter * tau)
    ref = np.real(np.fft.ifft2(factor * np.conj(H) * np.fft.fft2(b)))
    np.testing.assert_allclose(to_np(got), ref, rtol=0, atol=1e-10)
    assert info["objective"].shape == (num_iter,)
    np.testing.assert_allclose(info["objective"][-1], 0.5 * np.sum((ndi.convolve(ref, k, mode="wrap") - b) ** 2), rtol=1e-9)
    # with nothing observed between iterations (replayed as one CUDA graph on the GPU)
    plain = R.landweber(be.asarray(b), be.asarray(k), num_iter=num_iter, boundary="periodic")
    np.testing.assert_allclose(to_np(plain), ref, rtol=0, atol=1e-10)
    _check_method(blur_method)


def _dense(k, shape, mode):
    n = shape[0] * shape[1]
    return np.stack([ndi.convolve(e.reshape(shape), k, mode=mode).ravel() for e in np.eye(n)], axis=1)


def _grad_matrix(shape):
    def d(n):
        m = np.zeros((n, n))
        idx = np.arange(n - 1)
        m[idx, idx], m[idx, idx + 1] = -1, 1
        return m
    h, w = shape
    return np.vstack([np.kron(d(h), np.eye(w)), np.kron(np.eye(h), d(w))])


@pytest.mark.parametrize("restart", ["gradient", "function", None])
def test_nesterov_converges_to_normal_equations(be, rng, restart):
    shape = (14, 16)
    x = rng.random(shape)
    k = psfs.motion(5, 20.0)
    b = ndi.convolve(x, k, mode="reflect") + rng.normal(0, 0.01, shape)
    w = 0.02
    A = _dense(k, shape, "reflect")
    D = _grad_matrix(shape)
    ref = np.linalg.solve(A.T @ A + w * D.T @ D, A.T @ b.ravel()).reshape(shape)
    got, info = R.nesterov(be.asarray(b), be.asarray(k), weight=w, restart=restart, num_iter=600,
                           return_info=True)
    np.testing.assert_allclose(to_np(got), ref, atol=1e-6)
    f_ref = 0.5 * np.sum((A @ ref.ravel() - b.ravel()) ** 2) + 0.5 * w * np.sum((D @ ref.ravel()) ** 2)
    assert info["objective"][-1] == pytest.approx(f_ref, rel=1e-9)
    if restart is None:
        assert not info["restarts"].any()
    else:
        assert info["restarts"].any()
    if restart != "function":
        # with nothing observed between iterations (replayed as one CUDA graph on the GPU)
        plain = R.nesterov(be.asarray(b), be.asarray(k), weight=w, restart=restart, num_iter=600)
        np.testing.assert_allclose(to_np(plain), ref, atol=1e-6)


def test_nesterov_restart_speeds_up(be, rng):
    x = _scene()
    k = psfs.gaussian((9, 9), 2.0)
    b = ndi.convolve(x, k, mode="reflect")
    fs = {}
    for restart in ("gradient", "function", None):
        _, info = R.nesterov(be.asarray(b), be.asarray(k), weight=0.05, restart=restart, num_iter=150,
                             return_info=True)
        fs[restart] = info["objective"][-1]
    assert fs["gradient"] < fs[None] and fs["function"] <= fs[None]


@pytest.mark.parametrize("monotone,restart", [(False, None), (True, None), (False, "function")])
def test_fista_tv_with_identity_psf_is_tv_denoising(be, rng, monotone, restart):
    f = _scene(40) + rng.normal(0, 0.05, (40, 40))
    w = 0.08
    ref = denoise_tv_chambolle(f, weight=w, eps=1e-10, max_num_iter=3000)
    got, info = R.fista_tv(be.asarray(f), be.asarray(np.ones((1, 1))), weight=w, bounds=None, num_iter=60,
                           inner_iter=20, monotone=monotone, restart=restart, return_info=True)

    def F(u):
        return _tv_objective(u, f, w)

    assert F(to_np(got)) <= F(ref) * (1 + 1e-4)
    assert info["objective"][-1] == pytest.approx(F(to_np(got)), rel=1e-9)
    if monotone:
        assert np.all(np.diff(info["objective"]) <= 1e-12 * info["objective"][0])
    if not monotone and restart is None:
        # with nothing observed between iterations (replayed as one CUDA graph on the GPU)
        plain = to_np(R.fista_tv(be.asarray(f), be.asarray(np.ones((1, 1))), weight=w, bounds=None, num_iter=60,
                                 inner_iter=20))
        assert F(plain) <= F(ref) * (1 + 1e-4)



def test_wiener_per_image_balance_matches_skimage(be, rng):
    x = np.stack([_scene(), _scene().T])
    k = psfs.gaussian((7, 7), 1.5)
    b = np.stack([ndi.convolve(xi, k, mode="wrap") for xi in x]) + rng.normal(0, 0.01, x.shape)
    lam = np.array([1e-3, 0.1])
    got = to_np(R.wiener(be.asarray(b), be.asarray(k), balance=be.asarray(lam), boundary="periodic"))
    for i in range(2):
        np.testing.assert_allclose(got[i], sk_wiener(b[i], k, lam[i], clip=False), rtol=0, atol=1e-10)
    with pytest.raises(ValueError, match="balance"):
        R.wiener(be.asarray(b), be.asarray(k), balance=be.asarray(lam[:1]))
    with pytest.raises(ValueError, match="balance"):
        R.wiener(be.asarray(b), be.asarray(k), balance=be.asarray(np.array([1e-3, 0.0])))


def test_fista_tv_wiener_start_is_skimage_wiener(be, rng):
    from gpuimg.restoration.fista import WARM_START_BALANCE, start_image

    x = _scene(64)
    k = psfs.gaussian((9, 9), 2.0)
    b = ndi.convolve(x, k, mode="wrap") + rng.normal(0, 0.01, x.shape)
    w = 3e-3
    # g: mean absolute vertical plus horizontal neighbour difference
    g = np.abs(np.diff(b, axis=0)).mean() + np.abs(np.diff(b, axis=1)).mean()
    ref = sk_wiener(b, k, WARM_START_BALANCE * w / g, clip=False)
    bb = be.asarray(b)
    got = start_image(get_backend(bb), bb, be.asarray(k), "wiener", "periodic", w, be.asarray(np.array(g)))
    np.testing.assert_allclose(to_np(got), ref, rtol=0, atol=1e-10)


def test_fista_tv_auto_start_converges_faster(be, rng):
    # Gaussian blur at low noise: the frequencies the blur nearly removes converge slowly from
    # the blurred image; the Wiener start (exact here: symmetric PSF) puts them close at once
    x = _scene(96)
    k = psfs.gaussian((13, 13), 2.5)
    b = ndi.convolve(x, k, mode="reflect") + rng.normal(0, 1e-3, x.shape)
    isnr = {}
    for start in ("auto", "image"):
        got = to_np(R.fista_tv(be.asarray(b), be.asarray(k), num_iter=60, x0=start))
        isnr[start] = 10 * np.log10(np.sum((b - x) ** 2) / np.sum((got - x) ** 2))
    assert isnr["auto"] > isnr["image"] + 0.2
    start = rng.random(x.shape)
    with pytest.raises(ValueError, match="x0"):
        R.fista_tv(be.asarray(b), be.asarray(k), x0="zeros")
    with pytest.raises(ValueError, match="x0"):
        R.fista_tv(be.asarray(b), be.asarray(k), x0=be.asarray(start[:-1]))
    start[3, 3] = np.nan
    with pytest.raises(ValueError, match="x0"):
        R.fista_tv(be.asarray(b), be.asarray(k), x0=be.asarray(start))

@pytest.mark.parametrize("solver", ["fista_tv", "admm_tv"])
@pytest.mark.parametrize("boundary", ["reflect", "free", "periodic"])
def test_tv_solvers_restore_and_respect_bounds(be, rng, boundary, solver, blur_method):
    x = _scene(64)
    k = psfs.gaussian((11, 11), 2.0)
    mode = "wrap" if boundary == "periodic" else "reflect"
    b = ndi.convolve(x, k, mode=mode) + rng.normal(0, 0.01, x.shape)
    got = to_np(getattr(R, solver)(be.asarray(b.astype(np.float32)), be.asarray(k), num_iter=40, boundary=boundary))
    assert got.dtype == np.float32 and got.shape == x.shape
    assert got.min() >= 0 and got.max() <= 1
    isnr = 10 * np.log10(np.sum((b - x) ** 2) / np.sum((got - x) ** 2))
    assert isnr > 1.0
    _check_method(blur_method)


def test_batch_equals_loop(be, rng):
    x = np.stack([_scene(40), _scene(40).T])
    k = psfs.disk(2.5)
    b = np.stack([ndi.convolve(xi, k, mode="reflect") for xi in x]) + rng.normal(0, 0.01, x.shape)
    for solver, kw in [(R.richardson_lucy, {"num_iter": 10}), (R.fista_tv, {"num_iter": 10, "weight": 0.01}),
                       (R.nesterov, {"num_iter": 10, "weight": 0.01, "restart": "function"}),
                       (R.wiener, {}), (R.wiener, {"boundary": "periodic"})]:
        whole = to_np(solver(be.asarray(b), be.asarray(k), **kw))
        for i in range(2):
            np.testing.assert_allclose(whole[i], to_np(solver(be.asarray(b[i]), be.asarray(k), **kw)), atol=1e-12)


@pytest.mark.parametrize("boundary", ["free", "reflect"])
def test_richardson_lucy_batch_groups_match_skimage(be, rng, monkeypatch, boundary, blur_method):
    # one image per group: the NumPy twin then runs the groups on the thread pool
    import gpuimg._prims.restoration as prims

    monkeypatch.setattr(prims, "GROUP_BYTES", 1)
    x = np.stack([_scene(40), _scene(40).T, _scene(40)[::-1]])
    k = psfs.gaussian((5, 5), 1.0)
    b = np.stack([ndi.convolve(xi, k, mode="reflect") for xi in x]) + rng.random(x.shape) * 0.01
    whole = to_np(R.richardson_lucy(be.asarray(b), be.asarray(k), num_iter=15, boundary=boundary))
    for i in range(3):
        one = to_np(R.richardson_lucy(be.asarray(b[i]), be.asarray(k), num_iter=15, boundary=boundary,
                                      callback=lambda *a: False))
        np.testing.assert_allclose(whole[i], one, atol=1e-12)
    # the reconstruction is closer to the scene than scikit-image's zero-padded RL
    from skimage.restoration import richardson_lucy as sk_rl

    for i in range(3):
        assert np.sum((whole[i] - x[i]) ** 2) < np.sum((sk_rl(b[i], k, num_iter=15) - x[i]) ** 2)
    _check_method(blur_method)


def _rl_reference(b, k, num_iter):
    # textbook Richardson-Lucy with SciPy's circular convolution and correlation
    x = np.full_like(b, b.mean())
    for _ in range(num_iter):
        x = x * ndi.correlate(b / ndi.convolve(x, k, mode="wrap"), k, mode="wrap")
    return x


@pytest.mark.parametrize("kernel", ["motion", "gaussian"])
def test_richardson_lucy_periodic_preserves_flux(be, rng, kernel, blur_method):
    x = rng.random((40, 44)) ** 2
    k = psfs.motion(7, 45.0) if kernel == "motion" else psfs.gaussian((7, 9), (1.2, 2.0))
    b = ndi.convolve(x, k, mode="wrap") + rng.random(x.shape) * 0.01
    sums = []
    got = R.richardson_lucy(be.asarray(b), be.asarray(k), num_iter=25, boundary="periodic", clip=False,
                            callback=lambda i, xi: sums.append(float(xi.sum())))
    np.testing.assert_allclose(sums, b.sum(), rtol=1e-12)
    np.testing.assert_allclose(to_np(got), _rl_reference(b, k, 25), rtol=1e-9, atol=1e-12)
    _check_method(blur_method, separable=kernel == "gaussian")


@pytest.mark.parametrize("kernel", ["gaussian", "motion"])
def test_richardson_lucy_reflect_equals_dense_textbook(be, rng, kernel, blur_method):
    # x <- x * A^T(b / A x) / A^T 1 with A built column by column from scipy.ndimage.convolve;
    # A^T 1 is 1 for the symmetric Gaussian (the division is skipped) and not for motion blur
    from test_restoration_admm import _blur_matrix

    k = psfs.gaussian((5, 5), 1.0) if kernel == "gaussian" else psfs.motion(5, 30.0)
    shape = (14, 17)
    A = _blur_matrix(k, shape, "reflect")
    b = A @ (rng.random(shape[0] * shape[1]) ** 2) + rng.random(shape[0] * shape[1]) * 0.01
    col = A.T @ np.ones_like(b)
    assert (np.abs(col - 1).max() < 1e-12) == (kernel == "gaussian")
    x = np.full_like(b, b.mean())
    for _ in range(20):
        x = x * (A.T @ (b / (A @ x))) / col
    got = R.richardson_lucy(be.asarray(b.reshape(shape)), be.asarray(k), num_iter=20, clip=False)
    np.testing.assert_allclose(to_np(got).ravel(), x, rtol=1e-9)
    _check_method(blur_method, separable=kernel == "gaussian")


def test_richardson_lucy_negative_noise_stays_nonnegative(be, rng, blur_method):
    x = np.zeros((40, 40))
    x[10:30, 15:25] = 1.0
    k = psfs.gaussian((9, 9), 2.0)
    b = ndi.convolve(x, k, mode="reflect") + rng.normal(0, 0.02, x.shape)
    assert (b < 0).any()
    got = to_np(R.richardson_lucy(be.asarray(b), be.asarray(k), num_iter=50, clip=False))
    assert np.isfinite(got).all() and got.min() >= 0
    assert np.sum((got - x) ** 2) < np.sum((b - x) ** 2)
    _check_method(blur_method)


def test_richardson_lucy_tv_and_info(be, rng, blur_method):
    x = _scene(48)
    k = psfs.gaussian((9, 9), 1.5)
    b = np.clip(ndi.convolve(x, k, mode="reflect") + rng.normal(0, 0.02, x.shape), 0, None)
    plain, info = R.richardson_lucy(be.asarray(b), be.asarray(k), num_iter=20, return_info=True)
    tv = to_np(R.richardson_lucy(be.asarray(b), be.asarray(k), num_iter=20, tv_weight=0.01))
    obj = info["objective"]
    assert obj.shape == (20,) and np.all(np.diff(obj) <= 1e-9 * obj[0])  # RL decreases the KL divergence

    def tv_value(u):
        return np.abs(np.diff(u, axis=0)).sum() + np.abs(np.diff(u, axis=1)).sum()

    assert tv_value(tv) < tv_value(to_np(plain))
    # a black frame (a dark chunk of a tiled image) has the analytic solution 0, with TV too
    for weight in (0.0, 0.01):
        zero = to_np(R.richardson_lucy(be.asarray(np.zeros((2, 16, 16))), be.asarray(k), num_iter=5, tv_weight=weight))
        np.testing.assert_array_equal(zero, 0.0)
    _check_method(blur_method)


def test_tol_stops_early(be, rng):
    b = ndi.convolve(_scene(), psfs.gaussian((5, 5), 1.0), mode="reflect")
    _, info = R.landweber(be.asarray(b), be.asarray(psfs.gaussian((5, 5), 1.0)), num_iter=500, tol=1e-3,
                          return_info=True)
    assert info["converged"] and info["num_iter"] < 500 and info["num_iter"] % 10 == 0


SOLVERS = [R.inverse_filter, R.wiener, R.landweber, R.nesterov, R.fista_tv, R.richardson_lucy]


@pytest.mark.parametrize("solver", SOLVERS, ids=lambda f: f.__name__)
def test_bad_input(be, solver):
    img = be.asarray(np.zeros((16, 16)))
    k = np.ones((3, 3)) / 9
    with pytest.raises(ValueError, match="psf"):
        solver(img, be.asarray(np.ones((17, 3))))
    with pytest.raises(ValueError, match="psf"):
        solver(img, be.asarray(np.zeros((3, 3))))
    with pytest.raises(ValueError, match="psf"):
        solver(img, be.asarray(-k))
    bad = k.copy()
    bad[1, 1] = np.nan
    with pytest.raises(ValueError, match="psf"):
        solver(img, be.asarray(bad))
    with pytest.raises(ValueError, match="boundary"):
        solver(img, be.asarray(k), boundary="mirror")
    if solver not in (R.inverse_filter, R.wiener):
        with pytest.raises(ValueError, match="num_iter"):
            solver(img, be.asarray(k), num_iter=0)
    if solver is R.wiener:  # the default 3 x 3 Laplacian does not fit a 2 x 2 image
        with pytest.raises(ValueError, match="reg"):
            solver(be.asarray(np.ones((2, 2))), be.asarray(np.ones((1, 1))), balance=0.1, boundary="periodic")


def test_bad_weights(be):
    img = be.asarray(np.zeros((16, 16)))
    k = be.asarray(np.ones((3, 3)) / 9)
    with pytest.raises(ValueError, match="weight"):
        R.fista_tv(img, k, weight=0.0)
    with pytest.raises(ValueError, match="weight"):
        R.nesterov(img, k, weight=-1.0)
    with pytest.raises(ValueError, match="balance"):
        R.wiener(img, k, balance=0.0)
    with pytest.raises(ValueError, match="tv_weight"):
        R.richardson_lucy(img, k, tv_weight=-0.1)
    with pytest.raises(ValueError, match="restart"):
        R.nesterov(img, k, restart="always")
    with pytest.raises(ValueError, match="tv"):
        R.fista_tv(img, k, tv="huber")
    with pytest.raises(ValueError, match="boundary"):
        R.wiener(img, k, boundary="free")


def test_gpu_iterations_replay_as_cuda_graphs(be, rng):
    # on the GPU, Richardson-Lucy, Nesterov, Landweber, FISTA-TV and ADMM-TV (DCT and CG x-steps)
    # with nothing observed between iterations capture one iteration and replay it; the
    # results still reach the references
    if not be.is_gpu or not hasattr(getattr(be.xp.cuda, "Stream", None), "begin_capture"):
        pytest.skip("CUDA graphs exist on the GPU only")
    from gpuimg._prims import graph

    before = graph.GRAPH_STATS["replayed"]
    shape = (14, 17)
    k = psfs.motion(5, 30.0)
    A = _dense(k, shape, "reflect")
    b = A @ (rng.random(shape[0] * shape[1]) ** 2) + rng.random(shape[0] * shape[1]) * 0.01
    x = np.full_like(b, b.mean())
    col = A.T @ np.ones_like(b)
    for _ in range(20):
        x = x * (A.T @ (b / (A @ x))) / col
    got = R.richardson_lucy(be.asarray(b.reshape(shape)), be.asarray(k), num_iter=20, clip=False)
    np.testing.assert_allclose(to_np(got).ravel(), x, rtol=1e-9)
    w = 0.02
    D = _grad_matrix(shape)
    ref = np.linalg.solve(A.T @ A + w * D.T @ D, A.T @ b)
    got = R.nesterov(be.asarray(b.reshape(shape)), be.asarray(k), weight=w, num_iter=600)
    np.testing.assert_allclose(to_np(got).ravel(), ref, atol=1e-6)
    # Landweber: the normal equations' solution without the smoothing term, approached slowly;
    # its closed form is the periodic test's, here against 20 iterations of the dense model
    tau = 1.0 / np.linalg.norm(A, 2) ** 2
    xl = np.zeros_like(b)
    for _ in range(20):
        xl = xl - tau * (A.T @ (A @ xl - b))
    got = R.landweber(be.asarray(b.reshape(shape)), be.asarray(k), num_iter=20, step=tau)
    np.testing.assert_allclose(to_np(got).ravel(), xl, atol=1e-10)
    f = _scene(40) + rng.normal(0, 0.05, (40, 40))
    tv = denoise_tv_chambolle(f, weight=0.08, eps=1e-10, max_num_iter=3000)
    got = to_np(R.fista_tv(be.asarray(f), be.asarray(np.ones((1, 1))), weight=0.08, bounds=None, num_iter=60,
                           inner_iter=20))
    assert _tv_objective(got, f, 0.08) <= _tv_objective(tv, f, 0.08) * (1 + 1e-4)
    got = to_np(R.admm_tv(be.asarray(f), be.asarray(np.ones((1, 1))), weight=0.08, bounds=None, num_iter=1000))
    assert _tv_objective(got, f, 0.08) <= _tv_objective(tv, f, 0.08) * (1 + 1e-4)
    # ADMM-TV with the conjugate-gradient x-step (motion blur): the optimality certificate
    x0 = _scene(16)
    A = _blur_matrix(k, x0.shape, "reflect")
    b = (A @ x0.ravel()).reshape(x0.shape) + rng.normal(0, 0.01, x0.shape)
    got = to_np(R.admm_tv(be.asarray(b), be.asarray(k), weight=0.01, tv="anisotropic", bounds=None, num_iter=1000))
    assert _kkt_residual(got, A, b, 0.01) < 1e-3
    assert graph.GRAPH_STATS["replayed"] == before + 6, graph.GRAPH_STATS["last_error"]
