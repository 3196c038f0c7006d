"""admm_tv: TV deconvolution by ADMM, checked against scikit-image's TV denoising and
against the optimality (KKT) conditions of its objective, certified with SciPy."""

import numpy as np
import pytest
import scipy.ndimage as ndi
import scipy.sparse as sp
from conftest import to_np
from scipy.optimize import lsq_linear
from skimage import data
from skimage.restoration import denoise_tv_chambolle

from gpuimg import psf as psfs
from gpuimg import restoration as R


def _scene(n):
    return data.camera()[::512 // n, ::512 // n][:n, :n] / 255.0


def _tv_objective(u, f, w):
    d0 = np.diff(u, axis=0, append=u[-1:, :])
    d1 = np.diff(u, axis=1, append=u[:, -1:])
    return 0.5 * np.sum((u - f) ** 2) + w * np.sqrt(d0**2 + d1**2).sum()


@pytest.mark.parametrize("bounds", [None, (0, 1)])
def test_admm_tv_with_identity_psf_is_tv_denoising(be, rng, bounds):
    f = np.clip(_scene(40) + rng.normal(0, 0.05, (40, 40)), 0, 1)
    w = 0.08
    ref = denoise_tv_chambolle(f, weight=w, eps=1e-10, max_num_iter=3000)
    got, info = R.admm_tv(be.asarray(f), be.asarray(np.ones((1, 1))), weight=w, bounds=bounds, num_iter=1000,
                          return_info=True)
    got = to_np(got)
    assert info["x_step"] == "dct"
    assert _tv_objective(got, f, w) <= _tv_objective(ref, f, w) * (1 + 1e-4)
    assert info["objective"][-1] == pytest.approx(_tv_objective(got, f, w), rel=1e-9)
    # with nothing observed between iterations (replayed as one CUDA graph on the GPU)
    plain = to_np(R.admm_tv(be.asarray(f), be.asarray(np.ones((1, 1))), weight=w, bounds=bounds, num_iter=1000))
    assert _tv_objective(plain, f, w) <= _tv_objective(ref, f, w) * (1 + 1e-4)


def _difference_matrix(h, w):
    """Forward differences with a zero last row / column, as sparse rows (row diffs, then column diffs)."""
    def d1(n):
        m = sp.diags([-np.ones(n), np.ones(n - 1)], [0, 1], shape=(n, n)).tolil()
        m[n - 1, n - 1] = 0
        return m.tocsr()

    return sp.vstack([sp.kron(d1(h), sp.identity(w)), sp.kron(sp.identity(h), d1(w))]).tocsr()


def _blur_matrix(k, shape, boundary):
    """Dense ``A`` of the boundary model, column by column from ``scipy.ndimage.convolve``."""
    mode = "wrap" if boundary == "periodic" else "reflect"
    cols = []
    for i in range(shape[0] * shape[1]):
        e = np.zeros(shape[0] * shape[1])
        e[i] = 1
        cols.append(ndi.convolve(e.reshape(shape), k, mode=mode).ravel())
    return np.stack(cols, axis=1)


def _kkt_residual(x, A, b, w):
    """Smallest ``||A^T(Ax - b) + w D^T p||`` over subgradients ``p`` of anisotropic TV at ``x``
    (``p = sign(Dx)`` where ``Dx != 0``, ``|p| <= 1`` elsewhere), relative to ``||A^T(Ax - b)||``.
    Zero exactly at the minimiser of ``1/2 ||Ax - b||^2 + w ||Dx||_1``."""
    D = _difference_matrix(*x.shape)
    keep = np.abs(D).sum(axis=1).A1 > 0  # the structurally zero last row / column drop out
    D = D[keep]
    dx = D @ x.ravel()
    g = A.T @ (A @ x.ravel() - b.ravel())
    fixed = np.abs(dx) > 1e-6
    rhs = -g - w * (D[fixed].T @ np.sign(dx[fixed]))
    sol = lsq_linear(w * D[~fixed].T.tocsr(), rhs, bounds=(-1, 1), tol=1e-12, lsmr_tol="auto")
    return np.linalg.norm(sol.fun) / np.linalg.norm(g)


@pytest.mark.parametrize("boundary,kernel,x_step", [
    ("reflect", "gaussian", "dct"),
    ("reflect", "skewed", "cg+dct"),
    ("reflect", "motion", "cg+dft"),
    ("periodic", "gaussian", "cg+dft"),
])
def test_admm_tv_meets_the_optimality_conditions(be, rng, boundary, kernel, x_step):
    x0 = _scene(16)
    k = psfs.motion(5, 30.0) if kernel == "motion" else psfs.gaussian((5, 5), 1.0)
    if kernel == "skewed":  # nearly symmetric, as a PSF measured from an LED photo
        k = k * (1 + 0.2 * np.linspace(-1, 1, 5))[None, :]
    A = _blur_matrix(k, x0.shape, boundary)
    b = (A @ x0.ravel()).reshape(x0.shape) + rng.normal(0, 0.01, x0.shape)
    w = 0.01

    def solve(n):
        got, info = R.admm_tv(be.asarray(b), be.asarray(k), weight=w, tv="anisotropic", bounds=None,
                              num_iter=n, boundary=boundary, return_info=True)
        assert info["x_step"] == x_step
        return to_np(got)

    assert _kkt_residual(solve(1000), A, b, w) < 1e-3
    # with nothing observed between iterations (replayed as one CUDA graph on the GPU; the CG
    # x-step updates its warm start in place)
    plain = R.admm_tv(be.asarray(b), be.asarray(k), weight=w, tv="anisotropic", bounds=None, num_iter=1000,
                      boundary=boundary)
    assert _kkt_residual(to_np(plain), A, b, w) < 1e-3
    # an unconverged iterate fails the same certificate
    assert _kkt_residual(solve(3), A, b, w) > 1e-2


def test_admm_tv_stop_test_on_the_cg_step_sees_the_iterates_move(be, rng):
    # the CG x-step updates x in place; the stop test must compare with a copy of the
    # previous iterate, or it would see no change and stop at its first check
    x0 = _scene(16)
    k = psfs.motion(5, 30.0)
    A = _blur_matrix(k, x0.shape, "reflect")
    b = (A @ x0.ravel()).reshape(x0.shape) + rng.normal(0, 0.01, x0.shape)
    got, info = R.admm_tv(be.asarray(b), be.asarray(k), weight=0.01, tv="anisotropic", bounds=None,
                          num_iter=3000, tol=1e-7, return_info=True)
    assert info["x_step"] == "cg+dft" and info["converged"]
    assert 10 < info["num_iter"] < 3000
    assert _kkt_residual(to_np(got), A, b, 0.01) < 1e-3


def test_admm_tv_batch_equals_one_by_one(be, rng):
    x = _scene(48)
    k = psfs.motion(7, 20.0)
    stack = np.stack([ndi.convolve(x, k, mode="reflect") + rng.normal(0, s, x.shape) for s in (0.01, 0.02)])
    # one weight and one penalty for the call (the default penalty is the batch's)
    both = to_np(R.admm_tv(be.asarray(stack), be.asarray(k), weight=0.002, rho=0.05, num_iter=20))
    for i in range(2):
        one = to_np(R.admm_tv(be.asarray(stack[i]), be.asarray(k), weight=0.002, rho=0.05, num_iter=20))
        np.testing.assert_allclose(both[i], one, rtol=0, atol=1e-10)


@pytest.mark.parametrize("kwargs,match", [
    ({"weight": 0.0}, "weight"),
    ({"rho": -1.0}, "rho"),
    ({"cg_iter": 0}, "cg_iter"),
    ({"tv": "l0"}, "tv"),
    ({"boundary": "mirror"}, "boundary"),
    ({"num_iter": 0}, "num_iter"),
    ({"bounds": (1, 0)}, "bounds"),
])
def test_admm_tv_rejects_bad_arguments(be, kwargs, match):
    img = be.asarray(np.zeros((16, 16)))
    with pytest.raises(ValueError, match=match):
        R.admm_tv(img, be.asarray(np.ones((3, 3))), **{"weight": 0.01, **kwargs})


def test_default_weight_of_a_noise_free_image_is_refused(be):
    # the noise estimate of a constant image is 0 (scikit-image: 0 up to round-off)
    from skimage.restoration import estimate_sigma

    img = np.full((32, 32), 0.5)
    assert estimate_sigma(img) < 1e-20 and float(to_np(R.estimate_noise(be.asarray(img)))) < 1e-20
    for solver in (R.admm_tv, R.fista_tv):
        with pytest.raises(ValueError, match="weight"):
            solver(be.asarray(img), be.asarray(np.ones((3, 3)) / 9))


@pytest.mark.parametrize("sigma", [2e-3, 1e-2, 3e-2])
def test_default_weight_is_near_the_best_weight_against_the_truth(be, sigma):
    # camera was not among the scenes the default's two constants were fitted on
    from skimage import transform

    x = transform.resize(data.camera() / 255.0, (128, 128), anti_aliasing=True)
    k = psfs.disk(3.0)
    b = ndi.convolve(x, k, mode="reflect") + np.random.default_rng(0).normal(0, sigma, x.shape)

    def isnr(w):
        e = to_np(R.admm_tv(be.asarray(b), be.asarray(k), weight=w))
        return 10 * np.log10(np.sum((x - b) ** 2) / np.sum((x - e) ** 2))

    sigma_hat = float(to_np(R.estimate_noise(be.asarray(b))))
    best = max(isnr(c * sigma_hat) for c in np.geomspace(0.0025, 0.64, 9))
    assert isnr(None) >= best - 0.6


def test_defaults_are_scale_equivariant(be, rng):
    # minimising 1/2||Ax - cb||^2 + c w TV(x) over [0, c] is c times the problem for b: with
    # the default weight (proportional to the image) and penalty (dimensionless) the iterates
    # scale exactly, so an 8-bit range gives 255 times the [0, 1] result
    x = _scene(40)
    k = psfs.motion(7, 20.0)
    b = ndi.convolve(x, k, mode="reflect") + rng.normal(0, 0.01, x.shape)
    one = to_np(R.admm_tv(be.asarray(b), be.asarray(k), num_iter=30))
    big = to_np(R.admm_tv(be.asarray(255 * b), be.asarray(k), bounds=(0, 255), num_iter=30))
    np.testing.assert_allclose(big, 255 * one, rtol=1e-8, atol=1e-8)
    one = to_np(R.fista_tv(be.asarray(b), be.asarray(k), num_iter=30))
    big = to_np(R.fista_tv(be.asarray(255 * b), be.asarray(k), bounds=(0, 255), num_iter=30))
    np.testing.assert_allclose(big, 255 * one, rtol=1e-8, atol=1e-8)
