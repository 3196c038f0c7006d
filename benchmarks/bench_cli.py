"""``gpuimg deblur`` throughput on a folder of PNGs: images/s and the share of time waiting on I/O.

Three ways to deblur the same N generated 512x512 8-bit PNGs (Richardson-Lucy, 10 iterations,
defocus disk r=3) are timed in one run:

- ``gpuimg``: the batch engine as the command runs it (stacked batches on the device, reads
  and writes overlapped with computation in I/O worker processes, atomic writes);
- ``serial-loop``: the obvious script: read one file, restore it, write it, next;
- ``compute-only``: the same restorations on in-memory stacks with no file I/O, the ceiling
  the engine should approach (its ratio < 1 shows how much of compute-only speed is kept).

A second group runs the engine with its file I/O in worker processes (``io="processes"``, the
command's default) against the same engine with I/O threads, each with the command's default
number of workers. The engine's time inside its compute calls is stored and printed too: when
it exceeds the compute-only time, something else in the process slows the computing thread
(on a GPU, every kernel launch releases and re-takes the GIL, so I/O threads do).

``GPUIMG_BENCH_FILES`` sets N (default 200). The engine's images/s and I/O-wait share are
stored in the JSON report's ``extra_info`` and printed.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage as ndi

from gpuimg import asnumpy, psf, restoration
from gpuimg import io as gio
from gpuimg.batch import ImageWriter, expand_inputs, run_batch
from gpuimg.cli import _DEFAULT_IO, _DEFAULT_PROCESS_WORKERS, _DEFAULT_WORKERS

N_FILES = int(os.environ.get("GPUIMG_BENCH_FILES", "200"))
SHAPE = (512, 512)
ITERS = 10
BATCH = 8
GROUP = f"deblur {N_FILES} PNGs 512^2 (RL {ITERS} it)"


def write_folder(src: Path, n: int = N_FILES) -> Path:
    """``n`` generated 8-bit ``SHAPE`` PNGs (a smooth scene, shifted, plus noise) in ``src``."""
    src.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    base = ndi.gaussian_filter(rng.random(SHAPE), 3)
    base = (base - base.min()) / np.ptp(base)
    for i in range(n):
        img = np.roll(base, 7 * i, axis=1) + 0.02 * rng.standard_normal(SHAPE)
        Image.fromarray(gio.from_float(np.clip(img, 0, 1), np.uint8)).save(src / f"f{i:04d}.png", compress_level=1)
    return src


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_folder(tmp_path_factory.mktemp("bench_cli") / "in")


def _solver(be):
    kernel = asnumpy(psf.disk(3.0)).astype(np.float32)  # (host: a CuPy default backend may be set)

    def fn(x):
        return restoration.richardson_lucy(x, be.asarray(kernel), num_iter=ITERS)

    return fn


def _engine(be, src: Path, out: Path, stats: dict, io: str = _DEFAULT_IO):
    solve = _solver(be)
    items, _ = expand_inputs([src])
    workers = _DEFAULT_PROCESS_WORKERS if io == "processes" else _DEFAULT_WORKERS

    def run():
        t0 = time.perf_counter()
        report = run_batch(items, lambda s, its: _compute(be, solve, s), ImageWriter(out),
                           batch_size=BATCH, workers=workers, progress=False, io=io)
        stats.update(images_per_s=report.done / (time.perf_counter() - t0), io_wait_share=report.io_wait_share,
                     compute_s=report.compute_s, stack_s=report.stack_s)
        return report

    return run


def _compute(be, solve, stack):
    x = gio.to_float(be.asarray(stack))
    y = solve(x)
    return list(be.to_numpy(gio.from_float(y, stack.dtype)))


@pytest.mark.parametrize("impl", ["gpuimg", "serial-loop", "compute-only"])
def test_deblur_folder(bench, be, impl, folder, tmp_path, benchmark):
    out = tmp_path / "out"
    solve = _solver(be)
    if impl == "gpuimg":
        stats: dict = {}
        bench(_engine(be, folder, out, stats), group=GROUP, impl=impl, be=be, rounds=1)
        benchmark.extra_info.update(stats)
        print(f"\n{GROUP} [{be.name}] engine: {stats['images_per_s']:.1f} images/s, "
              f"{100 * stats['io_wait_share']:.0f}% of the time waiting on I/O, "
              f"{stats['compute_s']:.3f} s inside the compute calls (compare with compute-only: more "
              "means something slows the computing thread, e.g. I/O threads through the GIL, or busy cores)")
    elif impl == "serial-loop":
        files = sorted(folder.glob("*.png"))

        def loop():
            for f in files:
                img = gio.read_image(f)
                gio.write_image(out / f.name, _compute(be, solve, img[None])[0])

        bench(loop, group=GROUP, impl=impl, be=be, rounds=1)
    else:
        stacks = [np.stack([gio.read_image(f) for f in sorted(folder.glob("*.png"))[i:i + BATCH]])
                  for i in range(0, N_FILES, BATCH)]

        def compute_only():
            for s in stacks:
                _compute(be, solve, s)

        bench(compute_only, group=GROUP, impl=impl, be=be, rounds=1)


@pytest.mark.parametrize("impl", ["gpuimg", "threads"])
def test_deblur_folder_io_modes(bench, be, impl, folder, tmp_path, benchmark):
    """The engine with file I/O in worker processes (``gpuimg``) against I/O on threads."""
    stats: dict = {}
    io = "processes" if impl == "gpuimg" else "threads"
    bench(_engine(be, folder, tmp_path / "out", stats, io=io), group=f"{GROUP}: I/O in processes vs threads",
          impl=impl, be=be, rounds=1)
    benchmark.extra_info.update(stats, io=io)
    print(f"\n{GROUP} [{be.name}] io={io}: {stats['images_per_s']:.1f} images/s, "
          f"{stats['compute_s']:.3f} s inside the compute calls")
