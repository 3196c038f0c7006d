"""Python cost of gpuimg's CuPy orchestration, without a GPU: the stand-in's NumPy arrays and
no-op kernel launches, so what remains is the host work around every launch (argument
building, layouts, caches).

    python devtools/cupy_standin/host_overhead.py [iterations] [--profile]

prints the host microseconds per Richardson-Lucy iteration on a 64 x 64 float32 image with a
19 x 19 Gaussian PSF (reflect, direct 1-D passes); ``--profile`` adds cProfile's top entries.
On a GPU host the real figure adds CuPy's own cost per launch (a few us each).
"""
import cProfile
import pstats
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np

import cupy_standin

BE = cupy_standin.install()
import gpuimg  # noqa: E402
from gpuimg import _kernels  # noqa: E402
from gpuimg import psf as P  # noqa: E402
from gpuimg import restoration as R  # noqa: E402


class _Noop:
    def __call__(self, *args, **kwargs):
        pass


_kernels.KernelFamily.get = lambda self, name: _Noop()


def main():
    n = int(next((a for a in sys.argv[1:] if a.isdigit()), 300))
    gpuimg.use_backend("cupy").set_default()
    x = BE.asarray(np.random.default_rng(0).random((64, 64)).astype(np.float32))
    psf = P.gaussian((19, 19), 2.0)
    R.richardson_lucy(x, psf, num_iter=5)
    t = time.perf_counter()
    R.richardson_lucy(x, psf, num_iter=n)
    print(f"host per iteration: {(time.perf_counter() - t) / n * 1e6:.1f} us")
    if "--profile" in sys.argv:
        prof = cProfile.Profile()
        prof.runcall(R.richardson_lucy, x, psf, num_iter=n)
        pstats.Stats(prof).sort_stats("tottime").print_stats(20)


if __name__ == "__main__":
    main()
