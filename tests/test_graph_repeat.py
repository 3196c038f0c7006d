"""``be.repeat``: a step replayed as a CUDA graph, with CUDA's stream-capture semantics played by
a small stand-in (a captured launch is recorded, not run; a graph launch runs the records).

The expected values are closed forms of the iterated step, so a replay that ran the wrong
number of times, ran work while capturing, or lost the capture's work fails.
"""

import types

import numpy as np
import pytest

from gpuimg._backend import Backend
from gpuimg._prims import graph


class _Stream:
    """A CUDA stream: work runs at once, or is recorded while the stream captures."""

    current: list = []

    def __init__(self, non_blocking=False):
        self.capturing = False
        self.records: list = []
        self.log: list = []

    def __enter__(self):
        _Stream.current.append(self)
        return self

    def __exit__(self, *exc):
        _Stream.current.pop()
        return False

    def submit(self, fn):
        (self.records.append if self.capturing else lambda f: f())(fn)

    def begin_capture(self, mode=None):
        assert not self.capturing
        self.capturing, self.records = True, []

    def end_capture(self):
        assert self.capturing
        self.capturing = False
        if getattr(self, "invalid", False):
            raise RuntimeError("cudaErrorStreamCaptureInvalidated")
        def launch(stream, recs=list(self.records)):
            stream.log.append("launch")
            for f in recs:
                f()

        return types.SimpleNamespace(launch=launch)

    def synchronize(self):
        if self.capturing:
            self.invalid = True
            raise RuntimeError("cudaErrorStreamCaptureUnsupported: the stream is capturing")
        self.log.append("sync")


_NULL = _Stream()


def _fake_backend():
    cuda = types.SimpleNamespace(Stream=_Stream, get_current_stream=lambda: (_Stream.current or [_NULL])[-1])
    return Backend("cupy", types.SimpleNamespace(cuda=cuda), None, None), cuda


def _affine_step(cuda, state):
    # x <- 2 x + 1 as device work on the current stream: after n steps x = 2^n (x0 + 1) - 1
    def step():
        cuda.get_current_stream().submit(lambda: state.__setitem__(0, 2 * state[0] + 1))

    return step


@pytest.mark.parametrize("n", [0, 1, 2, 3, 10])
def test_repeat_replays_the_captured_step_n_times(n):
    be, cuda = _fake_backend()
    state = [5]
    before = dict(graph.GRAPH_STATS)
    _NULL.log.clear()
    be.repeat(_affine_step(cuda, state), n)
    assert state[0] == 2 ** n * 6 - 1
    replayed = graph.GRAPH_STATS["replayed"] - before["replayed"]
    assert replayed == (1 if n >= graph.MIN_REPLAYS else 0)
    if replayed:
        # the replays run on the caller's stream, which the call then waits for
        assert _NULL.log == ["launch"] * n + ["sync"]


def test_repeat_falls_back_to_eager_steps_when_the_capture_fails():
    be, cuda = _fake_backend()
    state = [1]
    calls = []

    def step():
        calls.append(1)
        cuda.get_current_stream().synchronize()  # a host read: illegal while capturing
        cuda.get_current_stream().submit(lambda: state.__setitem__(0, 3 * state[0]))

    before = graph.GRAPH_STATS["eager"]
    be.repeat(step, 4)
    # the failed capture ran nothing; then four eager steps ran
    assert state[0] == 3 ** 4 and len(calls) == 5
    assert graph.GRAPH_STATS["eager"] == before + 1
    assert "capturing" in graph.GRAPH_STATS["last_error"] or "Invalidated" in graph.GRAPH_STATS["last_error"]


def test_repeat_can_be_turned_off(monkeypatch):
    monkeypatch.setenv("GPUIMG_CUDA_GRAPHS", "0")
    be, cuda = _fake_backend()
    state = [0]
    before = dict(graph.GRAPH_STATS)
    be.repeat(_affine_step(cuda, state), 6)
    assert state[0] == 2 ** 6 - 1
    assert graph.GRAPH_STATS["replayed"] == before["replayed"]
    assert graph.GRAPH_STATS["eager"] == before["eager"] + 1


def test_repeat_numpy_runs_the_step_n_times():
    from gpuimg._backend import get_backend

    x = np.ones(3)

    def step():
        np.multiply(x, 3, out=x)

    get_backend(backend="numpy").repeat(step, 5)
    np.testing.assert_array_equal(x, np.full(3, 3.0 ** 5))


def test_repeat_runs_eagerly_where_streams_cannot_capture():
    # HIP's CuPy raises on begin_capture
    class NoCapture(_Stream):
        def begin_capture(self, mode=None):
            raise RuntimeError("This function is not supported on HIP")

    be, cuda = _fake_backend()
    cuda.Stream = NoCapture
    state = [2]
    be.repeat(_affine_step(cuda, state), 5)
    assert state[0] == 2 ** 5 * 3 - 1
    assert "HIP" in graph.GRAPH_STATS["last_error"]


def test_repeat_runs_eagerly_when_the_graph_cannot_be_instantiated():
    # CuPy instantiates a captured graph at its first launch, which can fail
    class NoInstantiate(_Stream):
        def end_capture(self):
            super().end_capture()

            def launch(stream):
                raise RuntimeError("cudaErrorNotSupported")

            return types.SimpleNamespace(launch=launch)

    be, cuda = _fake_backend()
    cuda.Stream = NoInstantiate
    state = [0]
    be.repeat(_affine_step(cuda, state), 4)
    assert state[0] == 2 ** 4 - 1
    assert "NotSupported" in graph.GRAPH_STATS["last_error"]
