"""Property-based sweeps (hypothesis) against independent references on random shapes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import scipy.ndimage as ndi

from gpuimg import _boundary, filters, metrics, transform

cv2 = pytest.importorskip("cv2")

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
MODES = sorted(_boundary.MODE_CODES)


@SETTINGS
@given(n=st.integers(1, 12), reach=st.integers(0, 40), mode=st.sampled_from(MODES))
def test_boundary_index_extends_like_numpy_pad(n, reach, mode):
    x = np.arange(1.0, n + 1.0)
    pm = _boundary.pad_mode(mode)
    ref = np.pad(x, reach, mode=pm, **({"constant_values": 0.0} if pm == "constant" else {}))
    j = _boundary.index(np.arange(-reach, n + reach), n, mode)
    got = np.where(j < 0, 0.0, x[np.maximum(j, 0)])
    np.testing.assert_array_equal(got, ref)


@SETTINGS
@given(
    h=st.integers(1, 24),
    w=st.integers(1, 24),
    kh=st.integers(1, 7),
    kw=st.integers(1, 7),
    mode=st.sampled_from(MODES),
    method=st.sampled_from(["direct", "fft"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_correlate_matches_scipy_on_any_shape(be, h, w, kh, kw, mode, method, seed):
    rng = np.random.default_rng(seed)
    x = rng.random((h, w))
    k = rng.standard_normal((kh, kw))
    origin = (int(rng.integers(-(kh // 2), (kh - 1) // 2 + 1)), int(rng.integers(-(kw // 2), (kw - 1) // 2 + 1)))
    ref = ndi.correlate(x, k, mode=mode, cval=0.5, origin=origin)
    got = be.to_numpy(filters.correlate(be.asarray(x), be.asarray(k), mode=mode, cval=0.5, origin=origin, method=method))
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-10 * max(1.0, np.abs(k).sum()))


@SETTINGS
@given(
    h=st.integers(1, 40),
    w=st.integers(1, 40),
    oh=st.integers(1, 40),
    ow=st.integers(1, 40),
    seed=st.integers(0, 2**32 - 1),
)
def test_area_resize_matches_opencv_on_any_size(be, h, w, oh, ow, seed):
    x = np.random.default_rng(seed).random((h, w), dtype=np.float32)
    ref = cv2.resize(x, (ow, oh), interpolation=cv2.INTER_AREA)
    got = be.to_numpy(transform.resize(be.asarray(x), (oh, ow), interpolation="area"))
    np.testing.assert_allclose(got, ref.reshape(oh, ow), rtol=0, atol=1e-5)


@SETTINGS
@given(gain=st.floats(0.1, 10.0), offset=st.floats(-5.0, 5.0), seed=st.integers(0, 2**32 - 1))
def test_local_ncc_is_invariant_to_gain_and_offset(be, gain, offset, seed):
    x = np.random.default_rng(seed).random((24, 24))
    got = be.to_numpy(metrics.local_ncc(be.asarray(x), be.asarray(gain * x + offset), win_size=5))
    np.testing.assert_allclose(got, 1.0, atol=1e-9)
