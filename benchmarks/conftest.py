"""Benchmark harness: time gpuimg and a peer in the same run and report ratios.

Each benchmark calls the ``bench`` fixture once::

    @pytest.mark.parametrize("impl", ["gpuimg", "scipy"])
    def test_convolve_31(bench, be, impl):
        fn = ... # pick by impl
        bench(fn, image, kernel, group="convolve 2048^2 31x31", impl=impl, be=be)

``bench`` warms up past kernel compilation, synchronises the device *inside* the timed call,
and tags the result with its group, implementation and backend. At the end of the session
the ratio ``peer_time / gpuimg_time`` (medians) of every group is printed and stored in the
JSON report (``--benchmark-json``) under ``"gpuimg_ratios"`` with device, versions and commit,
next to the ratio of the fastest rounds (``"ratio_min"``), which load from other processes on
a shared machine disturbs less.
"""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path

import numpy as np
import pytest

from gpuimg import _backend
from gpuimg.testing import BACKENDS, backend_or_skip

_ROOT = Path(__file__).resolve().parent.parent

# glibc serves large blocks with mmap and returns them on free until the first free of such a
# block raises its (dynamic) mmap and trim thresholds; before that, code that allocates fresh
# temporaries every iteration pays page faults on each (scikit-image's Richardson-Lucy ran 1.7x
# slower in a fresh process than after any other benchmark). Freeing one 16 MiB block puts
# every benchmark, whichever runs first, in the steady state of a long-running process.
_warm = np.ones(1 << 24, dtype=np.uint8)
del _warm


@pytest.fixture(params=BACKENDS)
def be(request):
    return backend_or_skip(request.param)


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


def _sync_all(be) -> None:
    if be is not None:
        be.sync()


@pytest.fixture
def bench(benchmark):
    """Return ``run(fn, *args, group, impl, be=None, rounds=None, **kwargs)``."""

    def run(fn, *args, group: str, impl: str, be=None, rounds: int | None = None, **kwargs):
        def call():
            out = fn(*args, **kwargs)
            _sync_all(be)
            return out

        call()  # warm-up: compilation, plan caches, first-touch allocations
        benchmark.group = group
        benchmark.extra_info["impl"] = impl
        benchmark.extra_info["backend"] = be.name if be is not None else "numpy"
        if rounds is not None:
            return benchmark.pedantic(call, rounds=rounds, iterations=1, warmup_rounds=0)
        return benchmark(call)

    return run


def _commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except Exception:
        return "unknown"


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for dist in ("gpuimg", "numpy", "scipy", "scikit-image", "opencv-python-headless", "pillow",
                 "cupy-cuda13x", "cupy-cuda12x", "cucim-cu13"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    return out


def collect_ratios(benchmarks) -> list[dict]:
    """Group results by (group, backend); ratio = peer median / gpuimg median, ratio_min the
    same for the fastest rounds."""
    by_group: dict[tuple[str, str], dict[str, tuple[float, float]]] = {}
    for b in benchmarks:
        stats = b.stats if hasattr(b, "stats") else b["stats"]
        extra = b.extra_info if hasattr(b, "extra_info") else b["extra_info"]
        group = b.group if hasattr(b, "group") else b["group"]
        times = tuple(getattr(stats, k) if hasattr(stats, k) else stats[k] for k in ("median", "min"))
        key = (group or "", extra.get("backend", "numpy"))
        by_group.setdefault(key, {})[extra.get("impl", "gpuimg")] = times
    rows = []
    for (group, backend), times in sorted(by_group.items()):
        ours = times.get("gpuimg")
        for impl, (t, t_min) in sorted(times.items()):
            if impl == "gpuimg" or ours is None:
                continue
            rows.append({
                "group": group,
                "backend": backend,
                "peer": impl,
                "gpuimg_s": ours[0],
                "peer_s": t,
                "ratio": t / ours[0] if ours[0] > 0 else float("inf"),
                "ratio_min": t_min / ours[1] if ours[1] > 0 else float("inf"),
            })
    return rows


def pytest_benchmark_update_machine_info(config, machine_info):
    info = _backend.backend_info()
    machine_info["gpuimg_device"] = info["device"] or platform.processor() or platform.machine()
    machine_info["gpuimg_backend_info"] = info
    machine_info["gpuimg_commit"] = _commit()
    machine_info["gpuimg_versions"] = _versions()


def pytest_benchmark_update_json(config, benchmarks, output_json):
    output_json["gpuimg_ratios"] = collect_ratios(benchmarks)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    bs = getattr(config, "_benchmarksession", None)
    if bs is None or not bs.benchmarks:
        return
    rows = collect_ratios(bs.benchmarks)
    if not rows:
        return
    tr = terminalreporter
    tr.section("gpuimg speed ratios (peer time / gpuimg time; > 1 means gpuimg is faster)")
    for r in rows:
        tr.write_line(
            f"{r['group']:<48} {r['backend']:<6} vs {r['peer']:<10} "
            f"{r['ratio']:7.2f}x  (gpuimg {r['gpuimg_s'] * 1e3:9.3f} ms, peer {r['peer_s'] * 1e3:9.3f} ms; "
            f"fastest rounds {r['ratio_min']:.2f}x)"
        )
