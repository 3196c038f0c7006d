import subprocess
import sys

import numpy as np
import pytest

import gpuimg
from gpuimg import _backend


def test_import_does_not_import_cupy():
    # import every public submodule that exists (and the primitives) and check sys.modules
    code = (
        "import importlib, importlib.util, sys, gpuimg, gpuimg._backend as b\n"
        "for m in gpuimg._SUBMODULES:\n"
        "    if m != 'dask' and importlib.util.find_spec('gpuimg.' + m):\n"
        "        importlib.import_module('gpuimg.' + m)\n"
        "b._load_primitive_modules()\n"
        "print('cupy' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_backend_info_keys():
    info = gpuimg.backend_info()
    for key in ("name", "cupy_usable", "reason", "device", "memory_bytes", "numpy"):
        assert key in info
    assert info["name"] in ("numpy", "cupy")
    assert info["numpy"] == np.__version__
    if not info["cupy_usable"]:
        assert info["reason"], "an unusable CuPy must say why"
        assert info["device"] is None


def test_numpy_input_selects_numpy():
    be = gpuimg.get_backend(np.zeros(3))
    assert be.name == "numpy" and be.xp is np


def test_unknown_backend_name():
    with pytest.raises(ValueError, match="backend"):
        gpuimg.get_backend(np.zeros(3), backend="torch")
    with pytest.raises(ValueError, match="backend"):
        gpuimg.use_backend("torch")


def test_use_backend_context_and_default():
    with gpuimg.use_backend("numpy"):
        assert gpuimg.get_backend().name == "numpy"
    gpuimg.use_backend("numpy").set_default()
    try:
        assert gpuimg.get_backend().name == "numpy"
    finally:
        _backend.reset_default()


@pytest.mark.skipif(gpuimg.gpu_available(), reason="checks the no-GPU fallback")
def test_cupy_request_without_gpu_says_why():
    with pytest.raises(RuntimeError, match="unusable"):
        gpuimg.get_backend(backend="cupy")


def test_mixed_arrays_raise_typeerror_naming_arguments(be):
    if not be.is_gpu:
        # a fake device array type is enough to exercise the check
        class FakeCupy:
            __module__ = "cupy._core.core"
            __cuda_array_interface__ = {}
            shape = (3,)

        FakeCupy.__module__ = "cupy._core.core"
        fake = FakeCupy()
    else:
        fake = be.xp.zeros(3)
    with pytest.raises(TypeError, match="image.*kernel|kernel.*image"):
        _backend.get_backend(np.zeros(3), fake, names=("image", "kernel"))


def test_asnumpy_roundtrip(be, rng):
    x = rng.random((4, 5))
    y = be.asarray(x)
    assert type(gpuimg.asnumpy(y)) is np.ndarray
    np.testing.assert_array_equal(gpuimg.asnumpy(y), x)


def test_unknown_primitive_raises(be):
    with pytest.raises(AttributeError, match="no attribute or primitive"):
        be.no_such_primitive


def test_cli_info_runs():
    out = subprocess.run([sys.executable, "-m", "gpuimg", "info"], capture_output=True, text=True, check=True)
    assert "backend" in out.stdout and gpuimg.__version__ in out.stdout
