"""CuPy memory-pool peak of one call (shared by ``bench_restoration.py`` and ``gpu_profile.py``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def pool_peak(be: Any, fn: Callable[[], Any]) -> tuple[int, list[int]]:
    """``(peak, sizes)``: the most bytes CuPy's default memory pool held above its level before
    the call (after freeing its cached blocks) while ``fn()`` ran to completion, and the size
    of every allocation it made. Call ``fn`` once before, so plans and kernels are built."""
    xp = be.xp
    pool = xp.get_default_memory_pool()
    be.sync()
    pool.free_all_blocks()
    base = pool.used_bytes()
    peak = [0]
    sizes: list[int] = []

    class Peak(xp.cuda.memory_hook.MemoryHook):
        name = "gpuimg_peak"

        def malloc_postprocess(self, **kw: Any) -> None:
            peak[0] = max(peak[0], pool.used_bytes() - base)
            sizes.append(kw.get("mem_size", 0))

    with Peak():
        out = fn()
        be.sync()
    del out
    return peak[0], sizes
