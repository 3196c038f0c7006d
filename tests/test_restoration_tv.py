"""TV prox against scikit-image's Chambolle TV denoising, and the wavelet noise estimate."""

import numpy as np
import pytest
from conftest import to_np
from skimage import data
from skimage.restoration import denoise_tv_chambolle, estimate_sigma

from gpuimg.restoration import estimate_noise, tv_prox


def _tv_iso(u):
    d0 = np.diff(u, axis=0, append=u[-1:, :])
    d1 = np.diff(u, axis=1, append=u[:, -1:])
    return np.sqrt(d0**2 + d1**2).sum()


def _tv_aniso(u):
    return np.abs(np.diff(u, axis=0)).sum() + np.abs(np.diff(u, axis=1)).sum()


def _rof(u, f, w, tv=_tv_iso):
    # denoise_tv_chambolle's iteration solves min 1/2 ||u - f||^2 + w TV(u) (Chambolle 2004)
    return 0.5 * np.sum((u - f) ** 2) + w * tv(u)


@pytest.mark.parametrize("weight", [0.03, 0.15])
def test_tv_prox_reaches_skimage_objective(be, rng, weight):
    f = data.camera()[::8, ::8] / 255.0 + rng.normal(0, 0.05, (64, 64))
    ref = denoise_tv_chambolle(f, weight=weight, eps=1e-10, max_num_iter=3000)
    got = to_np(tv_prox(be.asarray(f), weight, num_iter=500))
    e_ref, e_got = _rof(ref, f, weight), _rof(got, f, weight)
    # FGP converges faster than Chambolle's projection: ours may be lower, never higher
    assert e_got <= e_ref * (1 + 1e-4)
    assert e_got >= e_ref * (1 - 1e-3)
    np.testing.assert_allclose(got, ref, atol=2e-2)


@pytest.mark.parametrize("threads", [2, 16])
def test_tv_prox_in_row_bands_reaches_skimage_objective(be, rng, threads, monkeypatch):
    # large stacks run each FGP step in bands of rows on the thread pool on the CPU
    import gpuimg._prims.restoration as prims

    monkeypatch.setattr(prims, "workers", lambda: threads)
    monkeypatch.setattr(prims, "TV_THREAD_MIN_ELEMS", 1 << 18)
    f = data.camera()[:, :520] / 255.0 + rng.normal(0, 0.05, (512, 512))
    ref = denoise_tv_chambolle(f, weight=0.15, eps=1e-10, max_num_iter=400)
    got = to_np(tv_prox(be.asarray(f), 0.15, num_iter=200))
    e_ref, e_got = _rof(ref, f, 0.15), _rof(got, f, 0.15)
    # FGP converges faster than Chambolle's projection: ours may be lower, never higher
    assert e_got <= e_ref * (1 + 1e-4)
    np.testing.assert_allclose(got, ref, atol=2e-2)


def test_tv_prox_anisotropic_batch_and_bounds(be, rng):
    f = rng.random((2, 24, 24)).astype(np.float32)
    got = to_np(tv_prox(be.asarray(f), 0.1, tv="anisotropic", num_iter=300, bounds=(0.2, 0.8)))
    assert got.dtype == np.float32 and got.shape == f.shape
    assert got.min() >= 0.2 - 1e-7 and got.max() <= 0.8 + 1e-7
    # optimality: no small perturbation inside the box lowers the objective
    for i in range(2):
        base = _rof(got[i].astype(np.float64), f[i], 0.1, _tv_aniso)
        for _ in range(5):
            trial = np.clip(got[i] + rng.normal(0, 1e-3, got[i].shape), 0.2, 0.8)
            assert _rof(trial, f[i], 0.1, _tv_aniso) >= base - 1e-4 * base


@pytest.mark.parametrize("sigma", [0.01, 0.05])
def test_estimate_noise_matches_skimage(be, rng, sigma):
    img = data.camera()[::2, ::2] / 255.0
    noisy = img + rng.normal(0, sigma, img.shape)
    ref = estimate_sigma(noisy)
    got = to_np(estimate_noise(be.asarray(noisy)))
    assert got.shape == ()
    assert abs(float(got) - ref) <= 0.05 * ref
    np.testing.assert_allclose(got, ref, rtol=1e-9)
    batch = to_np(estimate_noise(be.asarray(np.stack([noisy, img]))))
    np.testing.assert_allclose(batch, [ref, estimate_sigma(img)], rtol=1e-9)


def test_estimate_noise_ignores_flat_regions(be, rng):
    img = np.zeros((64, 64))
    img[:, 32:] = rng.normal(0, 0.1, (64, 32))
    np.testing.assert_allclose(to_np(estimate_noise(be.asarray(img))), estimate_sigma(img), rtol=1e-9)


def test_tv_prox_bad_input(be):
    x = be.asarray(np.zeros((8, 8)))
    with pytest.raises(ValueError, match="weight"):
        tv_prox(x, 0.0)
    with pytest.raises(ValueError, match="tv"):
        tv_prox(x, 0.1, tv="l1")
    with pytest.raises(ValueError, match="num_iter"):
        tv_prox(x, 0.1, num_iter=0)
    with pytest.raises(ValueError, match="bounds"):
        tv_prox(x, 0.1, bounds=(1, 0))


@pytest.mark.parametrize("threads", [1, 2, 16])
def test_tv_prox_bounds_in_row_bands(be, rng, threads, monkeypatch):
    # the box must hold the bounds given, in every band of the banded FGP steps: the result
    # equals projecting onto [0.2, 0.8] is optimal (no perturbation inside the box is lower)
    import gpuimg._prims.restoration as prims

    monkeypatch.setattr(prims, "workers", lambda: threads)
    monkeypatch.setattr(prims, "TV_THREAD_MIN_ELEMS", 1 << 10)
    f = rng.random((64, 48))
    got = to_np(tv_prox(be.asarray(f), 0.1, num_iter=300, bounds=(0.2, 0.8)))
    assert got.min() >= 0.2 - 1e-9 and got.max() <= 0.8 + 1e-9 and got.min() < 0.25
    base = _rof(got, f, 0.1)
    for _ in range(5):
        trial = np.clip(got + rng.normal(0, 1e-3, got.shape), 0.2, 0.8)
        assert _rof(trial, f, 0.1) >= base - 1e-4 * base
