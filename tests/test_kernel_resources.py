"""Register and local-memory budgets of the kernels the benchmarks time, from ptxas (sm_90).

NVRTC compiles each specialisation to a cubin for sm_90 and ptxas reports its registers per
thread, its stack frame and its spills; no GPU is needed. An SM has 65536 registers, so a
256-thread block of r registers per thread leaves room for 65536 // (256 r) blocks (r
rounded up to a multiple of 8). The budget of a streaming kernel is four blocks (half of
the SM's 2048 threads, the occupancy a memory-bound kernel needs to keep enough loads in
flight) and no local memory at all; kernels with ``__launch_bounds__`` are held to the
occupancy those claim. A kernel edit that loses occupancy or adds local-memory traffic fails
here instead of passing unnoticed until a GPU run.
"""

import pytest

from gpuimg import _kernels

pytest.importorskip("cupy_backends.cuda.libs.nvrtc", reason="needs the CuPy/NVRTC wheels")

# (family, specialisation, least resident 256-thread blocks per SM, most bytes of stack frame,
# of spill stores and of spill loads)
BUDGETS = [
    # Richardson-Lucy and the reflect model's margins (issue benchmark: RL 2048^2)
    ("richardson_lucy.cu", "rl_ratio<float>", 4, 0),
    ("richardson_lucy.cu", "rl_update<float>", 4, 0),
    ("margins.cu", "reflect_margins<float>", 4, 0),
    ("margins.cu", "fold_margins<float>", 4, 0),
    ("spectrum.cu", "spectrum_multiply<float>", 4, 0),
    # FISTA-TV's prox
    ("tv.cu", "tv_primal<float>", 4, 0),
    ("tv.cu", "tv_dual<float, 0>", 4, 0),
    ("tv.cu", "tv_dual<float, 1>", 4, 0),
    # SSIM with the 11-tap Gaussian window: four blocks by its launch bounds; the box windows
    # (skimage's default 7 x 7, and NCC's entry) and the generic kernel: three blocks by
    # theirs, with the 11 x 11 box's few spilled bytes
    ("window_moments.cu", "window_moments_fixed<float, 11, false>", 4, 0),
    ("window_moments.cu", "window_moments_fixed<float, 7, true>", 3, 0),
    ("window_moments.cu", "window_moments_fixed<float, 11, true>", 3, 16),
    ("window_moments.cu", "window_moments_fixed_ncc<float, 7>", 3, 0),
    ("window_moments.cu", "window_moments_fixed_ncc<float, 11>", 3, 16),
    ("window_moments.cu", "window_moments<float, 0>", 3, 0),
    # point sampler: linear and cubic, float, 32-bit indices, nearest (2) and constant (3)
    # modes, gathered (0) and staged (1) taps; staged Lanczos-4: three blocks by its bounds
    ("warp_point.cu", "warp_point<float, 1, 2, float, int, 0>", 4, 0),
    ("warp_point.cu", "warp_point<float, 1, 3, float, int, 0>", 4, 0),
    ("warp_point.cu", "warp_point<float, 2, 2, float, int, 0>", 4, 0),
    ("warp_point.cu", "warp_point<float, 2, 2, float, int, 1>", 4, 0),
    ("warp_point.cu", "warp_point<float, 2, 3, float, int, 1>", 4, 0),
    ("warp_point.cu", "warp_point<float, 3, 2, float, int, 1>", 3, 0),
    # B-spline sampling, order 3, 2-D, mirror (1) and nearest (2); area resize
    ("spline_sample.cu", "spline_sample<float, 1, 3, 2>", 4, 0),
    ("spline_sample.cu", "spline_sample<float, 2, 3, 2>", 4, 0),
    ("resample.cu", "resample_axis<float>", 4, 0),
    # separable convolution tiles (float)
    ("convolve.cu", "correlate_tiled_k<float, 0, 5>", 4, 0),
    ("convolve.cu", "correlate_tiled_k<float, 0, 3>", 4, 0),
]


@pytest.fixture(scope="module")
def usage():
    out = {}
    for family in sorted({f for f, *_ in BUDGETS}):
        names = [ne for f, ne, *_ in BUDGETS if f == family]
        out.update(_kernels.resource_usage(family, names, arch="sm_90"))
    return out


@pytest.mark.parametrize("family,name,blocks,local", BUDGETS, ids=[ne for _, ne, *_ in BUDGETS])
def test_hot_kernels_keep_their_occupancy_and_local_memory(usage, family, name, blocks, local):
    r = usage[name]
    assert r.blocks_per_sm() >= blocks, f"{name}: {r.registers} registers leave {r.blocks_per_sm()} blocks per SM"
    assert max(r.stack_frame, r.spill_stores, r.spill_loads) <= local, f"{name}: {r}"


def test_blocks_per_sm_follows_the_register_file():
    # 65536 registers per SM, allocated per warp in units of 256 (8 per thread); at most 2048
    # threads per SM
    assert _kernels.KernelResources(24, 0, 0, 0).blocks_per_sm() == 8
    assert _kernels.KernelResources(24, 0, 0, 0).blocks_per_sm(threads=128) == 16
    assert _kernels.KernelResources(32, 0, 0, 0).blocks_per_sm() == 8
    assert _kernels.KernelResources(64, 0, 0, 0).blocks_per_sm() == 4
    assert _kernels.KernelResources(65, 0, 0, 0).blocks_per_sm() == 3  # 72 per thread
    assert _kernels.KernelResources(80, 0, 0, 0).blocks_per_sm() == 3
    assert _kernels.KernelResources(128, 0, 0, 0).blocks_per_sm() == 2
    assert _kernels.KernelResources(255, 0, 0, 0).blocks_per_sm() == 1


def test_local_memory_and_spills_are_reported(monkeypatch, tmp_path):
    # a local array written at run-time indices lives in local memory (the stack frame), and
    # 32 values live at once under a 24-register cap (sm_90's least) must spill: the report has to show both,
    # or the budgets above could not fail
    (tmp_path / "spill.cu").write_text(
        "template <typename T> __global__ void local(T* x, int i) {\n"
        "  T a[256];\n"
        "  for (int j = 0; j < 256; ++j) a[(j * i) & 255] = x[j];\n"
        "  x[0] = a[i & 255];\n"
        "}\n"
        "template <typename T> __global__ void spill(T* x, int n) {\n"
        "  T v[32];\n"
        "#pragma unroll\n"
        "  for (int j = 0; j < 32; ++j) v[j] = x[j * n];\n"
        "  for (int k = 0; k < n; ++k) {\n"
        "#pragma unroll\n"
        "    for (int j = 0; j < 32; ++j) v[j] = v[j] * v[(j + 1) & 31] + x[k];\n"
        "  }\n"
        "#pragma unroll\n"
        "  for (int j = 0; j < 32; ++j) x[j] = v[j];\n"
        "}\n")
    monkeypatch.setattr(_kernels, "kernel_dir", lambda: tmp_path)
    fam = _kernels.KernelFamily.__new__(_kernels.KernelFamily)
    fam.filename, fam.specialisations = "spill.cu", ("local<float>", "spill<float>")
    fam.options = (*_kernels.DEFAULT_OPTIONS, "--maxrregcount=24")
    monkeypatch.setattr(_kernels, "families", lambda: [fam])
    r = _kernels.resource_usage("spill.cu", ["local<float>", "spill<float>"])
    assert r["local<float>"].stack_frame >= 256 * 4
    assert r["spill<float>"].registers <= 24
    assert r["spill<float>"].spill_stores > 0 and r["spill<float>"].spill_loads > 0
