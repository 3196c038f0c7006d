"""Batch engine of the ``gpuimg`` command: many image files through one array function.

The engine reads files on a small thread pool ahead of the computation, stacks consecutive
images of the same shape and dtype into ``(N, ...)`` batches that one call processes on the
device, and hands each result to a *sink* (usually an atomic file write) on the same pool, so
reading and writing overlap computation. With ``io="processes"`` the reads and sinks run in
reused worker processes instead, so decoding and encoding never hold up the computing
thread's GIL.

A file that cannot be read, processed or written is recorded with its reason and the rest go
on; a batch that fails is retried image by image so one bad image does not take its
neighbours down. ``SIGTERM`` is turned into
``KeyboardInterrupt``; on either, pending work is cancelled, writes in flight complete or are
discarded, and no partial output file remains (see :func:`gpuimg.io.atomic_path`).
"""

from __future__ import annotations

import atexit
import concurrent.futures as cf
import contextlib
import glob
import os
import signal
import sys
import threading
import time
from collections import Counter, deque
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from gpuimg import io as gio
from gpuimg._backend import asnumpy

__all__ = ["IO_MODES", "BatchReport", "Failure", "ImageWriter", "Item", "expand_inputs", "run_batch"]

#: Times a read or a write is tried again when its worker process dies under it. A file
#: that crashes its reader is read twice; each crash kills every worker of the pool, so a
#: write in flight through both of those breaks still gets through.
RETRIES = {"read": 1, "write": 2}

#: How the engine reads and writes files: a thread pool, or worker processes (no shared GIL).
IO_MODES = ("threads", "processes")


@dataclass(frozen=True)
class Item:
    """One input file and its path relative to the output folder."""

    path: Path
    rel: Path


@dataclass(frozen=True)
class Failure:
    """A file that did not make it, the stage where it failed and why."""

    path: str
    stage: str
    reason: str


@dataclass(frozen=True)
class ImageWriter:
    """Sink that writes each result to ``folder / item.rel`` atomically (:func:`gpuimg.io.write_image`).

    A module-level, picklable sink, so it also runs in the worker processes of
    ``run_batch(..., io="processes")``.
    """

    folder: Path

    def __call__(self, item: Item, result: Any) -> None:
        gio.write_image(Path(self.folder) / item.rel, result)

    def discard(self, item: Item) -> None:
        """Remove what a write of ``item`` left when its process died (temporary files)."""
        gio.remove_partial_files(target=Path(self.folder) / item.rel)


@dataclass
class BatchReport:
    """What a batch run did.

    ``io_wait_s`` is the time the computing thread spent waiting for files to be read or for
    the write queue to drain; ``compute_s`` the time inside the array function.
    """

    total: int = 0
    done: int = 0
    skipped: int = 0
    failures: list[Failure] = field(default_factory=list)
    wall_s: float = 0.0
    compute_s: float = 0.0
    io_wait_s: float = 0.0
    batches: int = 0

    @property
    def images_per_second(self) -> float:
        return self.done / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def io_wait_share(self) -> float:
        return self.io_wait_s / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def exit_code(self) -> int:
        return 1 if self.failures else 0

    def summary(self) -> str:
        lines = [
            f"{self.done} done, {self.skipped} skipped (output exists), {len(self.failures)} failed "
            f"of {self.total} in {self.wall_s:.2f} s ({self.images_per_second:.1f} images/s, "
            f"{100 * self.io_wait_share:.0f}% waiting on I/O)"
        ]
        for f in self.failures:
            lines.append(f"  FAILED [{f.stage}] {f.path}: {f.reason}")
        return "\n".join(lines)


# --------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------

def expand_inputs(
    inputs: Sequence[str | os.PathLike[str]],
    *,
    extensions: Sequence[str] = gio.IMAGE_EXTENSIONS,
    output_of: Callable[[Path], Path] | None = None,
    unique_outputs: bool = True,
) -> tuple[list[Item], list[Failure]]:
    """Files, folders (searched recursively) and glob patterns -> sorted unique items.

    A folder's files keep their path relative to the folder (so the output mirrors the
    tree); files and glob matches keep their name. Inputs that match nothing come back as
    failures. Hidden files and unfinished ``.gpuimg-partial-`` files are skipped.

    Raises
    ------
    ValueError
        When two inputs would write the same relative output path: ``output_of(rel)``
        (``rel`` itself by default). A command that writes nothing per input passes
        ``unique_outputs=False``.
    """
    exts = {e.lower() for e in extensions}
    items: dict[Path, Item] = {}
    missing: list[Failure] = []

    def add(path: Path, rel: Path) -> None:
        key = path.resolve()
        if key not in items:
            items[key] = Item(path, rel)

    for raw in inputs:
        s = os.fspath(raw)
        p = Path(s)
        if p.is_dir():
            found = sorted(
                q for q in p.rglob("*")
                if q.is_file() and q.suffix.lower() in exts
                and not any(part.startswith(".") for part in q.relative_to(p).parts)
            )
            for q in found:
                add(q, q.relative_to(p))
            if not found:
                missing.append(Failure(s, "input", f"folder holds no {sorted(exts)} files"))
        elif p.is_file():
            add(p, Path(p.name))
        elif glob.has_magic(s):
            found = sorted(Path(m) for m in glob.glob(s, recursive=True))
            found = [q for q in found if q.is_file() and q.suffix.lower() in exts]
            for q in found:
                add(q, Path(q.name))
            if not found:
                missing.append(Failure(s, "input", "pattern matches no image files"))
        else:
            missing.append(Failure(s, "input", "no such file or folder"))
    out = sorted(items.values(), key=lambda it: str(it.path))
    seen: dict[Path, Path] = {}
    for it in out if unique_outputs else ():
        target = it.rel if output_of is None else output_of(it.rel)
        if target in seen:
            raise ValueError(
                f"inputs {str(seen[target])!r} and {str(it.path)!r} would both write {str(target)!r}; "
                "pass their common folder, or rename one"
            )
        seen[target] = it.path
    return out, missing


# --------------------------------------------------------------------------------------
# Signals
# --------------------------------------------------------------------------------------

@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises ``KeyboardInterrupt`` in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# --------------------------------------------------------------------------------------
# The engine
# --------------------------------------------------------------------------------------

def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def _progress(total: int, enabled: bool, desc: str) -> Any:
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:  # progress is optional
        return None
    return tqdm(total=total, unit="img", desc=desc, dynamic_ncols=True, file=sys.stderr, smoothing=0.1)


_process_pools: dict[int, cf.ProcessPoolExecutor] = {}
_process_lock = threading.Lock()


def _process_pool(workers: int, *, renew: bool = False) -> cf.ProcessPoolExecutor:
    """The shared pool of ``workers`` I/O processes (started once, reused by later runs).

    Workers come from a fork server (or are spawned), never forked from a process that may
    hold a CUDA context; they import :mod:`gpuimg.io` once. ``renew`` replaces a pool whose
    worker died.
    """
    import multiprocessing as mp

    with _process_lock:
        pool = _process_pools.get(workers)
        if pool is not None and renew:
            pool.shutdown(wait=False, cancel_futures=True)
            pool = None
        if pool is None:
            method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
            ctx = mp.get_context(method)
            if method == "forkserver":
                ctx.set_forkserver_preload(["gpuimg.io"])
            pool = cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_io_worker_init)
            _process_pools[workers] = pool
        return pool


def _io_worker_init() -> None:
    """In each I/O worker process: SIGTERM (a ``timeout`` or ``kill`` sent to the whole
    process group) removes the worker's own half-written files before it exits."""

    def term(signum: int, _frame: Any) -> None:
        gio.remove_live_partials_unlocked()
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, term)


def _drop_process_pool(pool: cf.Executor) -> None:
    with _process_lock:
        for key, value in list(_process_pools.items()):
            if value is pool:
                del _process_pools[key]


@atexit.register
def _shutdown_process_pools() -> None:
    with _process_lock:
        pools = list(_process_pools.values())
        _process_pools.clear()
    for pool in pools:
        pool.shutdown(wait=True, cancel_futures=True)


def run_batch(
    items: Iterable[Item],
    compute: Callable[[np.ndarray, list[Item]], Sequence[Any]],
    sink: Callable[[Item, Any], None],
    *,
    output_for: Callable[[Item], Path] | None = None,
    resume: bool = False,
    batch_size: int = 8,
    workers: int = 2,
    read: Callable[[Path], np.ndarray] = gio.read_image,
    progress: bool = True,
    desc: str = "gpuimg",
    failures: Sequence[Failure] = (),
    io: str = "threads",
) -> BatchReport:
    """Run ``compute`` over image files in same-shape batches with overlapped I/O.

    Parameters
    ----------
    items : iterable of Item
        Inputs, usually from :func:`expand_inputs`.
    compute : callable
        ``compute(stack, batch_items) -> results``: ``stack`` is the ``(N, *shape)`` host
        array of N images of one shape and dtype; it returns N results (one per item). It
        runs on the calling thread, so device state stays on one thread.
    sink : callable
        ``sink(item, result)`` stores one result (for example an atomic image write); it runs
        on the worker pool.
    output_for : callable, optional
        ``item -> Path`` of the item's output; with ``resume`` items whose output exists are
        skipped without being read.
    resume : bool
        Skip items whose output exists.
    batch_size : int
        Most images stacked into one ``compute`` call.
    workers : int
        Threads for reading and writing (at least 1).
    read : callable
        File reader, :func:`gpuimg.io.read_image` by default.
    progress : bool
        Show a tqdm progress bar with images/s on stderr.
    desc : str
        Progress bar label.
    failures : sequence of Failure
        Failures found before the run (e.g. missing inputs); they count in the report.
    io : {"threads", "processes"}
        ``"threads"``: reads and sinks run on a thread pool of this process. ``"processes"``:
        they run in ``workers`` worker processes (started once and reused), so file decoding
        and encoding never compete with ``compute`` for the GIL — on a GPU every kernel launch
        releases and re-takes it, and busy I/O threads delay each re-take. ``read`` and
        ``sink`` must then be picklable module-level callables (e.g. :class:`ImageWriter`),
        and results are copied to the workers. A worker that dies (a decoder crash) is
        replaced; the reads and writes it had in hand are tried again (``RETRIES``).

    Returns
    -------
    BatchReport
        Counts, failures with reasons, and timings. ``exit_code`` is 1 when anything failed.

    Raises
    ------
    KeyboardInterrupt
        On Ctrl-C or SIGTERM, after cancelling queued work and removing partial files.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    if io not in IO_MODES:
        raise ValueError(f"io must be one of {IO_MODES}, got {io!r}")
    procs = io == "processes"
    items = list(items)
    report = BatchReport(total=len(items) + len(failures), failures=list(failures))
    todo: list[Item] = []
    for it in items:
        if resume and output_for is not None and output_for(it).exists():
            report.skipped += 1
        else:
            todo.append(it)
    bar = _progress(len(todo), progress, desc)
    t_start = time.perf_counter()
    lock = threading.Lock()
    pools = [_process_pool(workers) if procs else
             cf.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gpuimg-io")]
    prefetch = max(2 * batch_size, batch_size + 2 * workers)
    max_pending_writes = max(2 * batch_size, 4 * workers)
    reads: deque[tuple[Item, cf.Future]] = deque()
    # (item, result, future, pool): with worker processes the result is kept until it is
    # stored, so a write that dies with its process (another file's crash) is tried again
    writes: deque[tuple[Item, Any, cf.Future, cf.Executor]] = deque()
    # (stage, path) -> how often its worker process died under it
    tries: Counter[tuple[str, Path]] = Counter()

    def retry(stage: str, path: Path) -> bool:
        """Whether ``stage`` of ``path`` gets another try after its process died (counted)."""
        if tries[stage, path] >= RETRIES[stage]:
            return False
        tries[stage, path] += 1
        return True
    source = iter(todo)

    def submit(fn: Callable[..., Any], *args: Any) -> cf.Future:
        try:
            return pools[0].submit(fn, *args)
        except BrokenProcessPool:
            pools[0] = _process_pool(workers, renew=True)
            return pools[0].submit(fn, *args)

    def fail(path: Path | str, stage: str, exc: BaseException | str) -> None:
        with lock:
            report.failures.append(Failure(str(path), stage, exc if isinstance(exc, str) else _reason(exc)))
            if bar is not None:
                bar.update(1)
                bar.set_postfix(failed=len(report.failures), refresh=False)

    def stored(it: Item, exc: BaseException | None) -> None:
        if exc is not None:
            fail(it.path, "write", exc)
            return
        with lock:
            report.done += 1
            if bar is not None:
                bar.update(1)

    def store(it: Item, result: Any) -> None:
        try:
            sink(it, result)
        except Exception as exc:
            stored(it, exc)
        else:
            stored(it, None)

    def refill() -> None:
        while len(reads) < prefetch:
            it = next(source, None)
            if it is None:
                return
            reads.append((it, submit(read, it.path)))

    def queue_write(it: Item, res: Any) -> None:
        if procs:  # worker processes get host arrays (a device array would open a GPU context there)
            res = asnumpy(res)
        fut = submit(sink, it, res) if procs else submit(store, it, res)
        writes.append((it, res if procs else None, fut, pools[0]))

    def finish_write(it: Item, res: Any, fut: cf.Future, pool: cf.Executor) -> None:
        exc = fut.exception()  # waits; a thread-pool store has reported already
        if not procs:
            return
        if isinstance(exc, BrokenProcessPool):
            # the pool's processes were killed, maybe mid-write: once they are gone, remove
            # the temporary file the write could not clean up, and try again
            pool.shutdown(wait=True)
            discard = getattr(sink, "discard", None)
            if discard is not None:
                discard(it)
            if retry("write", it.path):
                queue_write(it, res)
                return
            exc = RuntimeError("the writing process died")
        stored(it, exc)

    def drain_writes(limit: int) -> None:
        while len(writes) > limit or (writes and writes[0][2].done()):
            finish_write(*writes.popleft())

    def process(stack_items: list[Item], arrays: list[np.ndarray]) -> None:
        t0 = time.perf_counter()
        try:
            results = list(compute(np.stack(arrays), stack_items))
            if len(results) != len(stack_items):
                raise RuntimeError(f"compute returned {len(results)} results for {len(stack_items)} images")
        except Exception as exc:
            report.compute_s += time.perf_counter() - t0
            if len(stack_items) == 1:
                fail(stack_items[0].path, "process", exc)
                return
            for it, arr in zip(stack_items, arrays):
                process([it], [arr])
            return
        report.compute_s += time.perf_counter() - t0
        report.batches += 1
        t1 = time.perf_counter()
        drain_writes(max_pending_writes)
        report.io_wait_s += time.perf_counter() - t1
        for it, res in zip(stack_items, results):
            queue_write(it, res)

    try:
        with sigterm_as_interrupt():
            refill()
            group: list[Item] = []
            arrays: list[np.ndarray] = []
            key: tuple | None = None
            while reads:
                it, fut = reads.popleft()
                t0 = time.perf_counter()
                try:
                    arr = fut.result()
                except BrokenProcessPool:
                    # a worker died (e.g. a decoder crash): a new pool, and one more try
                    report.io_wait_s += time.perf_counter() - t0
                    if retry("read", it.path):
                        reads.appendleft((it, submit(read, it.path)))
                    else:
                        fail(it.path, "read", "the reading process died")
                    refill()
                    continue
                except Exception as exc:
                    report.io_wait_s += time.perf_counter() - t0
                    fail(it.path, "read", exc)
                    refill()
                    continue
                report.io_wait_s += time.perf_counter() - t0
                refill()
                k = (arr.shape, arr.dtype.str)
                if group and (k != key or len(group) >= batch_size):
                    process(group, arrays)
                    group, arrays = [], []
                group.append(it)
                arrays.append(arr)
                key = k
            if group:
                process(group, arrays)
            t0 = time.perf_counter()
            drain_writes(0)
            report.io_wait_s += time.perf_counter() - t0
    except BaseException:
        pools[0].shutdown(wait=True, cancel_futures=True)
        if procs:
            _drop_process_pool(pools[0])
        gio.remove_partial_files()
        if bar is not None:
            bar.close()
        raise
    if not procs:
        pools[0].shutdown(wait=True)
    report.wall_s = time.perf_counter() - t_start
    if bar is not None:
        bar.close()
    return report
