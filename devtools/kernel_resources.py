"""Registers, stack frame and spills of gpuimg's CUDA kernels, without a GPU.

NVRTC compiles a kernel family to a cubin for a real architecture (default sm_90) with
``ptxas -v``, whose report gives each kernel's registers per thread and its local memory:
the stack frame (spills and local arrays) and the bytes the register allocator spills and
reloads. Registers per thread bound the blocks an SM holds (65536 registers: 256-thread
blocks of 64 registers, four of them) and so the occupancy. ``tests/test_kernel_resources.py``
holds the hot specialisations to their budgets.

    python devtools/kernel_resources.py warp_point.cu [SPECIALISATION ...] [--arch sm_90]
    python devtools/kernel_resources.py --all [--arch sm_90]

With no specialisation, every declared one of the family is listed; ``--all`` lists every
family (a few minutes: the point and B-spline samplers have about 250 specialisations each).
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpuimg import _kernels  # noqa: E402


def main(argv: list[str]) -> int:
    arch = "sm_90"
    if "--arch" in argv:
        k = argv.index("--arch")
        arch = argv[k + 1]
        argv = argv[:k] + argv[k + 2:]
    if not argv:
        print(__doc__)
        return 2
    if argv == ["--all"]:
        jobs = [(f.filename, list(f.specialisations)) for f in _kernels.families()]
    else:
        filename, names = argv[0], argv[1:]
        if not names:
            names = list(next(f for f in _kernels.families() if f.filename == filename).specialisations)
        jobs = [(filename, names)]
    for filename, names in jobs:
        for ne, r in _kernels.resource_usage(filename, names, arch).items():
            print(f"{ne:60s} {r.registers:4d} registers ({r.blocks_per_sm()} blocks of 256 per SM)  "
                  f"frame {r.stack_frame} B, spills {r.spill_stores} B stored / {r.spill_loads} B loaded")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
