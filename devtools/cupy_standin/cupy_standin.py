"""A stand-in CuPy backend on the CPU: NumPy arrays, SciPy fft/ndimage, emulated CUDA kernels
(see ``cupy_standin_plugin.py`` for how to run the test suite against it)."""
import sys, types
import numpy as np
import scipy.fft, scipy.ndimage
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import kernel_emulation as emu
from gpuimg import _backend


class _Device:
    def __init__(self, i=None):
        self.id = 0
        self.attributes = {"MaxSharedMemoryPerBlockOptin": 232448}
        self.compute_capability = "90"


class _Stream:
    def synchronize(self):
        pass


class _Pool:
    def free_all_blocks(self):
        pass


class FakeXP(types.ModuleType):
    def __getattr__(self, name):
        return getattr(np, name)


fx = FakeXP("fakecupy")
fx.cuda = types.SimpleNamespace(Device=_Device, get_current_stream=lambda: _Stream(),
                                runtime=types.SimpleNamespace(deviceGetAttribute=lambda attr, dev: 232448))
fx.get_default_memory_pool = lambda: _Pool()
fx.asnumpy = np.asarray
fx.__version__ = "fake"

class _FFT(types.ModuleType):
    def __getattr__(self, name):
        return getattr(scipy.fft, name)


class _Plan:
    """cuFFT PlanNd stand-in: unnormalised R2C / C2R over the last two axes; C2R destroys its input."""

    def __init__(self, a, shape, value_type):
        assert value_type in ("R2C", "C2R") and a.flags.c_contiguous
        self.grid, self.kind, self.in_shape, self.dtype = tuple(shape), value_type, a.shape, a.dtype

    def get_output_array(self, a, order="C"):
        assert order == "C" and a.shape == self.in_shape and a.dtype == self.dtype
        if self.kind == "R2C":
            dt = np.complex64 if a.dtype == np.float32 else np.complex128
            return _poison(np.empty(a.shape[:-2] + (self.grid[0], self.grid[1] // 2 + 1), dt))
        dt = np.float32 if a.dtype == np.complex64 else np.float64
        return _poison(np.empty(a.shape[:-2] + self.grid, dt))

    def fft(self, a, out, direction):
        assert a.shape == self.in_shape and a.dtype == self.dtype and out.flags.c_contiguous
        if self.kind == "R2C":
            assert direction == -1 and a.shape[-2:] == self.grid
            out[...] = np.fft.rfft2(a, s=self.grid)
        else:
            assert direction == 1 and a.shape[-2:] == (self.grid[0], self.grid[1] // 2 + 1)
            out[...] = np.fft.irfft2(a, s=self.grid, norm="forward")
            _poison(a)


fft = _FFT("fakefft")
fft.get_fft_plan = lambda a, shape=None, axes=None, value_type="C2C": _Plan(a, shape, value_type)
BE = _backend.Backend("cupy", fx, fft, scipy.ndimage)


def install():
    emu.install()
    _backend._backends["cupy"] = BE
    st = _backend._CupyStatus(usable=True, reason="", module=fx, device="emulated", memory_bytes=1 << 34,
                              compute_capability="90")
    _backend._cupy_status = st
    return BE


def _poison(a):
    if a.dtype.kind == "f" or a.dtype.kind == "c":
        a.fill(np.nan)
    elif a.dtype.kind in "iu":
        a.fill(np.iinfo(a.dtype).max // 3 + 7)
    return a


fx.empty = lambda *a, **k: _poison(np.empty(*a, **k))
fx.empty_like = lambda *a, **k: _poison(np.empty_like(*a, **k))
