"""``repeat``: run one iteration of device work many times, as a CUDA graph on the GPU.

An iterative solver on the GPU is often bound by the host: every iteration launches a
handful of kernels and cuFFT calls, each costing microseconds of Python and driver time,
and on a 2048 x 2048 image the device finishes each in about the time it takes to launch
the next. CUDA stream capture records one iteration's launches as a graph; launching the
graph replays them all for the cost of one launch (CUDA Programming Guide, "CUDA Graphs").

The step must be *replayable*: it only enqueues device work, every launch argument is the
same in each iteration (buffers updated in place, no per-iteration scalars computed on
the host), and it never reads a device value on the host. A step that breaks the last
rule fails the capture (CuPy raises on a synchronising call while the stream captures);
``repeat`` then runs it eagerly, which is always correct because a capture executes
nothing. The first two rules are the caller's contract.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from gpuimg._backend import primitive

__all__ = ["GRAPH_STATS", "graphs_enabled"]

#: shortest run worth a capture (capturing costs about one eager iteration plus the
#: graph's instantiation)
MIN_REPLAYS = 3

#: what the CuPy twin did, for profiling: runs replayed as graphs, runs that fell back to
#: eager launches, and the reason of the last fallback
GRAPH_STATS: dict[str, Any] = {"replayed": 0, "eager": 0, "last_error": ""}


def graphs_enabled() -> bool:
    """``GPUIMG_CUDA_GRAPHS=0`` turns graph replay off (every step then launches eagerly)."""
    return os.environ.get("GPUIMG_CUDA_GRAPHS", "1").strip().lower() not in ("0", "false", "no", "off")


@primitive("repeat", "numpy")
def _repeat_numpy(be: Any, step: Callable[[], Any], n: int) -> None:
    """Call ``step()`` ``n`` times."""
    for _ in range(n):
        step()


@primitive("repeat", "cupy")
def _repeat_cupy(be: Any, step: Callable[[], Any], n: int) -> None:
    """``step()`` ``n`` times: captured once on a private stream (a capture executes nothing),
    the graph launched ``n`` times on the current stream.

    The replays run in the caller's stream order, as eager launches would, so a buffer that
    other work on that stream frees and reuses (a cache entry dropped by another thread, say)
    is not reused under them. Buffers the step allocates while it is captured come from the
    memory pool under the private stream, where nothing else allocates; the call waits for
    the last replay before returning, so none of them is handed out again while the graph
    still writes it.
    """
    cuda = be.xp.cuda
    stream_type = getattr(cuda, "Stream", None)
    if n < MIN_REPLAYS or stream_type is None or not hasattr(stream_type, "begin_capture") or not graphs_enabled():
        _eager(step, n)
        return
    current = cuda.get_current_stream()
    private = stream_type(non_blocking=True)
    graph = _capture(private, step)
    if graph is None:
        _eager(step, n)
        return
    try:
        graph.launch(current)  # CuPy instantiates the graph at its first launch
    except Exception as exc:
        GRAPH_STATS["last_error"] = f"{type(exc).__name__}: {exc}"
        _eager(step, n)
        return
    for _ in range(n - 1):
        graph.launch(current)
    current.synchronize()
    GRAPH_STATS["replayed"] += 1


def _capture(stream: Any, step: Callable[[], Any]) -> Any:
    """The graph of ``step()`` captured on ``stream``, or None where capture is unsupported (HIP)
    or the step broke it (a synchronising call: nothing ran, so the caller runs it eagerly)."""
    failed = False
    with stream:
        try:
            stream.begin_capture()
        except Exception as exc:
            GRAPH_STATS["last_error"] = f"{type(exc).__name__}: {exc}"
            return None
        try:
            step()
        except Exception as exc:
            failed = True
            GRAPH_STATS["last_error"] = f"{type(exc).__name__}: {exc}"
        finally:
            try:
                graph = stream.end_capture()
            except Exception as exc:  # the capture was invalidated
                graph = None
                GRAPH_STATS["last_error"] = f"{type(exc).__name__}: {exc}"
    return None if failed else graph


def _eager(step: Callable[[], Any], n: int) -> None:
    GRAPH_STATS["eager"] += 1
    for _ in range(n):
        step()
