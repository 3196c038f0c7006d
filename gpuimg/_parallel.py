"""The thread pool of the NumPy twins.

NumPy and SciPy release the GIL inside their array loops, so splitting an output into a few
independent blocks and running them on threads uses every core without copies. The pool is
shared by all primitives; a job started from a pool thread runs inline, so nested use cannot
deadlock.
"""

from __future__ import annotations

import itertools
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterable

import numpy as np

__all__ = ["in_pool", "run_chunks", "run_ranges", "splits", "workers"]

_pool: list[ThreadPoolExecutor] = []
_lock = threading.Lock()
_PREFIX = "gpuimg"


def workers() -> int:
    """Threads the NumPy twins use (``GPUIMG_NUM_THREADS`` or the CPU count)."""
    env = os.environ.get("GPUIMG_NUM_THREADS", "")
    return max(1, int(env)) if env.isdigit() else max(1, os.cpu_count() or 1)


def in_pool() -> bool:
    """True on a thread of the shared pool (whose jobs already occupy every core)."""
    return threading.current_thread().name.startswith(_PREFIX)


def run_chunks(fn: Callable[..., Any], jobs: Iterable[tuple[Any, ...]]) -> None:
    """Run ``fn(*job)`` for every job, on the shared pool when there is more than one."""
    jobs = list(jobs)
    if len(jobs) <= 1 or workers() == 1 or in_pool():
        for job in jobs:
            fn(*job)
        return
    with _lock:
        if not _pool:
            _pool.append(ThreadPoolExecutor(max_workers=workers(), thread_name_prefix=_PREFIX))
    for f in [_pool[0].submit(fn, *job) for job in jobs]:
        f.result()


def splits(n: int, parts: int) -> list[slice]:
    """``parts`` contiguous, nearly equal slices covering ``range(n)`` (fewer when n is small)."""
    parts = max(1, min(parts, n))
    edges = np.linspace(0, n, parts + 1).astype(int)
    return [slice(a, b) for a, b in itertools.pairwise(edges) if b > a]


def run_ranges(fn: Callable[[int, int], Any], n: int, parts: int) -> None:
    """``fn(start, stop)`` over ``parts`` contiguous, nearly equal ranges covering ``range(n)``
    (see :func:`splits`), on the shared pool."""
    run_chunks(fn, [(sl.start, sl.stop) for sl in splits(n, parts)])
