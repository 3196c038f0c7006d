"""pytest plugin: run gpuimg's CuPy test cases on the CPU, against a stand-in for CuPy.

From the repository root (needs g++ with C++20 ``<barrier>``)::

    PYTHONPATH=devtools/cupy_standin python -m pytest -p cupy_standin_plugin -p no:cacheprovider \
        -q -n 2 -k "cupy and not mixed_arrays" tests

The stand-in (``cupy_standin.py``) is a CuPy backend made of NumPy arrays (fresh memory filled
with NaN, as uninitialised device memory may be), SciPy's fft and ndimage, cuFFT plans made of
NumPy transforms, and every CUDA kernel family compiled with g++ behind a thread-per-CUDA-thread
shim (``kernel_emulation.py``), launched with CuPy's argument ABI and checked against each
kernel's declared parameter types. It checks the CuPy twins' orchestration (views, strides,
argument types, launch geometry, the kernels' arithmetic) where no GPU is lent. It is not a GPU:
timing, atomics' ordering, warp-level behaviour and cuFFT itself are only approximated.
"""
import sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
import cupy_standin as fakecupy

def pytest_configure(config):
    fakecupy.install()
    import gpuimg
    gpuimg.use_backend("cupy").set_default()

def pytest_runtest_setup(item):
    import gpuimg
    gpuimg.use_backend("cupy").set_default()
