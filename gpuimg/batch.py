"""Batch engine of the ``gpuimg`` command: many image files through one array function.

The engine reads files ahead of the computation, stacks consecutive images of the same shape
and dtype into ``(N, ...)`` batches that one call processes on the device, and hands each
result to a *sink* (usually an atomic file write), so reading and writing overlap computation.
Reads and sinks run on a thread pool of this process (``io="threads"``), or in reused worker
processes (``io="processes"``, what the ``gpuimg`` command uses) that get images and results
through shared memory: there the computing thread is the only busy thread of its process, so
decoding, encoding and the engine's bookkeeping never take the GIL from it between two kernel
launches.

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
import functools
import glob
import itertools
import mmap
import multiprocessing.util  # noqa: F401  (imported before _shutdown_pools is registered: it runs first at exit)
import os
import pickle
import select
import selectors
import signal
import socket
import struct
import sys
import tempfile
import threading
import time
import warnings
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from gpuimg import io as gio
from gpuimg._backend import asnumpy

__all__ = ["IO_MODES", "BatchReport", "Failure", "ImageWriter", "Item", "expand_inputs", "run_batch",
           "start_io_processes"]

#: Times a read or a write is tried again when its worker process dies under it: a file that
#: crashes its reader is read twice. Only the task the dead worker was on counts a try; the
#: others in flight are handed to the replacement workers as they were.
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

    ``io_wait_s`` is the time the computing thread spent outside the array function on files:
    waiting for reads, handing results to the writers and waiting for writes to drain;
    ``compute_s`` the time inside the array function; ``stack_s`` the time spent copying the
    images of each batch into one stack for it (work that a compute-only loop over ready
    stacks does not do).
    """

    total: int = 0
    done: int = 0
    skipped: int = 0
    failures: list[Failure] = field(default_factory=list)
    wall_s: float = 0.0
    compute_s: float = 0.0
    stack_s: float = 0.0
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


class _FileError(Exception):
    """A read or a sink that failed (on an I/O thread or in a worker process); ``reason`` is
    its :func:`_reason`. Other exceptions of the I/O machinery stop the run."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# --------------------------------------------------------------------------------------
# I/O on threads
# --------------------------------------------------------------------------------------

class _ThreadIO:
    """Reads and sinks on a thread pool of this process."""

    def __init__(self, workers: int, read: Callable[[Path], np.ndarray], sink: Callable[[Item, Any], None],
                 stored: Callable[[Item, BaseException | None], None]) -> None:
        self.pool = cf.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gpuimg-io")
        self.read_fn, self.sink, self.stored = read, sink, stored
        self.writes: deque[cf.Future] = deque()

    def read(self, item: Item) -> cf.Future:
        return self.pool.submit(self.read_fn, item.path)

    def get(self, handle: cf.Future) -> np.ndarray:
        try:
            return handle.result()
        except Exception as exc:
            raise _FileError(_reason(exc)) from exc

    def release(self, handles: Iterable[Any]) -> None:
        pass

    def flush(self) -> None:
        pass

    def _store(self, item: Item, result: Any) -> None:
        try:
            self.sink(item, result)
        except Exception as exc:
            self.stored(item, exc)
        else:
            self.stored(item, None)

    def write(self, item: Item, result: Any) -> None:
        self.writes.append(self.pool.submit(self._store, item, result))

    def drain(self, limit: int) -> None:
        writes = self.writes
        while len(writes) > limit or (writes and writes[0].done()):
            writes.popleft().exception()  # waits; _store has reported

    def close(self) -> None:
        self.pool.shutdown(wait=True)

    def abort(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


# --------------------------------------------------------------------------------------
# I/O in worker processes
# --------------------------------------------------------------------------------------
#
# The engine's process is left with one thread that matters: the one that computes. It writes
# small task messages to one pipe that all workers read (the first idle worker takes the next
# task), a batch's worth in one write, and pixels do not travel through pipes: a worker
# decodes a file into a slot of a shared memory block and answers with the shape; a result is
# copied into a slot, and a worker encodes it from there. Each worker answers on its own
# socket, which the computing thread reads only between device calls, when it needs an answer
# (a read for the next batch, a free slot, the end). So no thread of this process unpickles
# arrays or moves futures while the device is being fed, and every kernel launch gets the GIL
# back at once. A worker notes the task in its hands in a shared word, so when one dies (a
# decoder crash) the file it was handling is known exactly.

_READ, _WRITE = 0, 1
_PIPE_BUF = getattr(select, "PIPE_BUF", 512)  # pipe writes up to this size are never cut

# Most bytes of one shared-memory block (address space: only the pages that images touch
# become memory), and the least bytes of a slot (a block is made again, with bigger slots,
# when an image does not fit).
_SHARED_BYTES = 1 << 32
_SLOT_BYTES = 8 << 20

#: Shared memory as anonymous memory files whose descriptors go to the workers (Linux);
#: otherwise, or where ``memfd_create`` fails, temporary files the workers open by name.
_MEMFD = hasattr(os, "memfd_create") and hasattr(socket, "CMSG_SPACE")


#: named blocks are "<prefix><owner pid>-<random>" in the temporary folder
_NAMED_PREFIX = "gpuimg-io-"
_swept = False


def _sweep_named_blocks() -> None:
    """Remove the named blocks of engines that are gone (a SIGKILL gives them no chance to);
    once per process, before its first named block."""
    global _swept
    if _swept:
        return
    _swept = True
    folder = Path(tempfile.gettempdir())
    for path in folder.glob(f"{_NAMED_PREFIX}*-*"):
        pid = path.name[len(_NAMED_PREFIX):].split("-", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)  # (no signal: only whether the process exists)
        except ProcessLookupError:
            with contextlib.suppress(OSError):
                path.unlink()
        except OSError:  # exists, owned by another user
            continue


def _round_pages(n: int) -> int:
    return -(-max(n, 1) // mmap.PAGESIZE) * mmap.PAGESIZE


class _Arena:
    """A block of shared memory cut into equal slots, mapped by the engine and its workers.

    On Linux it is an anonymous memory file (``memfd``) whose descriptor goes to each worker
    over its socket; elsewhere (see ``_MEMFD``) a temporary file that workers open by name,
    removed when the block is closed, or by the next engine when this one was killed (the
    name carries the owner's process id).
    """

    def __init__(self, gen: int, slot_bytes: int, nslots: int) -> None:
        self.gen, self.slot_bytes, self.nslots = gen, slot_bytes, nslots
        size = slot_bytes * nslots
        self.fd, self.path = -1, None
        if _MEMFD:
            with contextlib.suppress(OSError):  # (a kernel or a sandbox without it)
                self.fd = os.memfd_create(f"gpuimg-io-{gen}", getattr(os, "MFD_CLOEXEC", 0))
        if self.fd < 0:
            _sweep_named_blocks()
            self.fd, self.path = tempfile.mkstemp(prefix=f"{_NAMED_PREFIX}{os.getpid()}-")
        try:
            os.ftruncate(self.fd, size)
            self.buf = mmap.mmap(self.fd, size)
        except BaseException:
            self._close_fd()
            raise
        self.free = list(range(nslots - 1, -1, -1))
        self.retired = False

    @property
    def idle(self) -> bool:
        return len(self.free) == self.nslots

    def view(self, slot: int, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        return np.ndarray(shape, dtype, buffer=self.buf, offset=slot * self.slot_bytes)

    def _close_fd(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if self.path is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.path)
            self.path = None

    def close(self) -> None:
        self._close_fd()
        with contextlib.suppress(BufferError):  # an array still views it: freed with that array
            self.buf.close()


def _frame(payload: bytes) -> bytes:
    """``payload`` framed as :meth:`multiprocessing.connection.Connection.send_bytes` frames it."""
    n = len(payload)
    return (struct.pack("!i", n) if n < 0x7FFFFFFF else struct.pack("!iQ", -1, n)) + payload


def _io_worker(index: int, tasks: Any, take: Any, conn: Any, status: Any) -> None:
    """Main loop of an I/O worker process: tasks from the shared pipe ``tasks`` (one reader at
    a time, under ``take``), control messages and answers on its own socket ``conn``."""
    from multiprocessing import reduction

    def term(signum: int, _frame: Any) -> None:
        # SIGTERM (a ``timeout`` or ``kill`` sent to the whole process group, or the engine
        # stopping its workers): remove this worker's half-written files, then exit
        gio.remove_live_partials_unlocked()
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, term)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the engine decides what stops
    maps: dict[int, mmap.mmap] = {}
    read: Any = None
    sink: Any = None
    stop = len(status) - 1  # set by the engine when it is interrupted: skip what is queued
    dumps, loads = pickle.dumps, pickle.loads
    try:
        while True:
            with take:
                data = tasks.recv_bytes()
            task = loads(data)
            if task is None:
                return
            if status[stop]:
                continue
            # control messages the engine sent before this task (it sends them before the tasks
            # that need them, so they are here already)
            while conn.poll():
                msg = conn.recv()
                if msg[0] == "arena":
                    _, gen, size, path = msg
                    if path is None:
                        fd = reduction.recv_handle(conn)
                    else:
                        try:
                            fd = os.open(path, os.O_RDWR)
                        except FileNotFoundError:  # dropped since: no task of this worker uses it
                            continue
                    try:
                        maps[gen] = mmap.mmap(fd, size)
                    finally:
                        os.close(fd)
                elif msg[0] == "drop":
                    block = maps.pop(msg[1], None)
                    if block is not None:
                        with contextlib.suppress(BufferError):
                            block.close()
                elif msg[0] == "run":
                    read, sink, cwd = msg[1:]
                    if cwd is not None:  # relative paths are the engine's
                        with contextlib.suppress(OSError):
                            os.chdir(cwd)
            tid, op, arg, slot = task
            status[index] = tid
            try:
                if op == _READ:
                    arr = np.asarray(read(arg))
                    if slot is not None and arr.nbytes <= slot[2] and not arr.dtype.hasobject:
                        gen, offset, _ = slot
                        np.ndarray(arr.shape, arr.dtype, buffer=maps[gen], offset=offset)[...] = arr
                        reply = (tid, 0, (arr.shape, arr.dtype.str))
                    else:  # no slot, or it does not fit: the pixels go through the socket
                        reply = (tid, 0, arr)
                    del arr
                else:
                    gen, offset, meta = slot
                    if gen is None:  # no shared memory for it: the result came with the task
                        result = meta
                    elif meta[0] == "a":
                        result = np.ndarray(meta[1], meta[2], buffer=maps[gen], offset=offset)
                        result.flags.writeable = False
                    else:
                        result = loads(maps[gen][offset:offset + meta[1]])
                    sink(arg, result)
                    del result
                    reply = (tid, 0, None)
            except Exception as exc:
                reply = (tid, 1, _reason(exc))
            conn.send_bytes(dumps(reply, pickle.HIGHEST_PROTOCOL))
            status[index] = 0
    except (EOFError, BrokenPipeError, ConnectionResetError):  # the engine is gone (killed)
        return


def _mp_context() -> Any:
    import multiprocessing as mp

    # never fork the engine's process, which may hold a CUDA context: workers come from a
    # fork server that imported this module once (or are spawned)
    method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
    ctx = mp.get_context(method)
    if method == "forkserver":  # (Pillow and its PNG plugin too: each worker reads on its first task)
        ctx.set_forkserver_preload(["gpuimg.batch", "PIL.Image", "PIL.PngImagePlugin"])
    return ctx


def process_io_unavailable() -> str | None:
    """Why ``io="processes"`` cannot run here (``None`` when it can): its workers share a
    lock, a POSIX semaphore, which needs ``/dev/shm``."""
    try:
        _mp_context().Lock()
    except (OSError, ImportError) as exc:
        return f"no POSIX semaphores ({exc})"
    return None


class WorkersCannotStart(RuntimeError):
    """The I/O worker processes die before their first task; ``run_batch`` then does its
    file I/O on threads (no file was read or written by then)."""


class _Pool:
    """``workers`` I/O processes, the pipe they take tasks from and the shared memory they
    read and write. Only the engine's computing thread uses it, one run at a time."""

    def __init__(self, workers: int) -> None:
        self.size = workers
        self.ctx = _mp_context()
        self.gen = 0
        self.arenas: dict[int, _Arena] = {}
        self.current: dict[int, _Arena | None] = {_READ: None, _WRITE: None}
        self.want = {_READ: 1, _WRITE: 1}  # slots each block should have
        self.failed = {_READ: sys.maxsize, _WRITE: sys.maxsize}  # slot sizes no block could be made for
        self.read_bytes = 0  # the largest image read so far: the size of the next read slots
        self.config: tuple[Any, ...] | None = None
        self.busy = False
        self.answered = False  # a worker of this pool has answered a task (it can start)
        self.procs: list[Any] = []
        self.conns: list[Any] = []
        self._start()

    # -- processes ---------------------------------------------------------------------

    def _start(self) -> None:
        ctx = self.ctx
        reader, self.writer = ctx.Pipe(duplex=False)
        self.task_fd = self.writer.fileno()
        self.torn = False
        if sys.platform != "win32":  # a full pipe makes send() take in answers instead of blocking
            os.set_blocking(self.task_fd, False)
        with contextlib.suppress(Exception):  # room for every task in flight (Linux)
            import fcntl

            fcntl.fcntl(self.task_fd, fcntl.F_SETPIPE_SZ, 1 << 20)
        # workers take tasks one at a time under this lock (a worker opens it by name when it
        # starts); a new one with each set of workers, as one that died may hold the old one
        self.take = take = ctx.Lock()
        self.status = ctx.RawArray("q", self.size + 1)  # each worker's task, then the stop flag
        self.procs, self.conns = [], []
        self.buffers: list[bytearray] = []
        # one selector for the pool's lifetime (multiprocessing.connection.wait builds one per
        # call); Windows pipes are not selectable, so there wait() it is
        self.selector = selectors.DefaultSelector() if sys.platform != "win32" else None
        self.waitables: dict[Any, tuple[bool, int]] = {}
        try:
            for i in range(self.size):
                mine, theirs = ctx.Pipe(duplex=True)
                p = ctx.Process(target=_io_worker, args=(i, reader, take, theirs, self.status),
                                name=f"gpuimg-io-{i}", daemon=True)
                p.start()
                theirs.close()
                self.procs.append(p)
                self.conns.append(mine)
                self.buffers.append(bytearray())
                for obj, key in ((mine, (True, i)), (p.sentinel, (False, i))):
                    self.waitables[obj] = key
                    if self.selector is not None:
                        self.selector.register(obj, selectors.EVENT_READ, key)
            reader.close()
            for arena in self.arenas.values():
                self._share(arena)
            if self.config is not None:
                self._broadcast(("run", *self.config))
        except BaseException:
            reader.close()
            self._stop()
            raise

    def _stop(self, wait: float = 0.0) -> list[tuple]:
        """Stop the workers and return the answers they sent that were not read yet.

        With ``wait`` > 0 each worker finishes the task in its hands (a write completes), skips
        the queued ones and exits; those still running after ``wait`` seconds, or all of them
        without it, get SIGTERM (each removes its own partial files)."""
        left: list[tuple] = []
        if wait > 0 and self.procs and not self.torn:  # (after half a message the pipe cannot carry more)
            self.status[self.size] = 1
            deadline = time.monotonic() + wait
            ends = memoryview(_frame(pickle.dumps(None)) * len(self.procs))
            while any(p.is_alive() for p in self.procs) and time.monotonic() < deadline:
                # the end markers go in as the workers skip the queued tasks and make room, and
                # answers are taken in, so that no worker waits to hand over a large one
                with contextlib.suppress(OSError):
                    ends = self.send(ends)
                answers, dead = self.poll(0.01)
                left += answers
                for i in dead:  # (its socket and sentinel stay ready: stop watching them)
                    self._forget(i)
        for p in self.procs:
            if p.is_alive():
                p.terminate()
        for p in self.procs:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()
                p.join()
        for i in range(len(self.conns)):
            with contextlib.suppress(EOFError, OSError):
                self._receive(i, left, drain=True)
            self.conns[i].close()
        for p in self.procs:
            with contextlib.suppress(Exception):
                p.close()
        if self.selector is not None:
            self.selector.close()
        self.procs, self.conns = [], []
        with contextlib.suppress(Exception):
            self.writer.close()
        return left

    def _forget(self, i: int) -> None:
        for obj in (self.conns[i], self.procs[i].sentinel):
            if self.waitables.pop(obj, None) is not None and self.selector is not None:
                self.selector.unregister(obj)

    def restart(self) -> list[tuple]:
        """Replace all workers (after one died); returns the answers the old ones left."""
        left = self._stop()
        self._start()
        return left

    def shutdown(self) -> None:
        self._stop(wait=2.0)
        for arena in self.arenas.values():
            arena.close()
        self.arenas.clear()
        self.current = {_READ: None, _WRITE: None}

    def _broadcast(self, msg: tuple) -> None:
        for c in self.conns:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # (a dead worker: see poll)
                c.send(msg)

    def _share(self, arena: _Arena) -> None:
        from multiprocessing import reduction

        for p, c in zip(self.procs, self.conns):
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # (a dead worker: see poll)
                c.send(("arena", arena.gen, arena.slot_bytes * arena.nslots, arena.path))
                if arena.path is None:
                    reduction.send_handle(c, arena.fd, p.pid)

    def send(self, data: memoryview) -> memoryview:
        """Put framed tasks on the task pipe (this thread is its only writer); returns what did
        not fit (the pipe is full until workers take tasks, or has no reader left until the
        dead workers are replaced)."""
        while data:
            # an interrupt can land right after the write, before its count is known: then the
            # pipe may end inside a message, unless the write was whole or nothing (PIPE_BUF)
            torn = self.torn
            self.torn = torn or len(data) > _PIPE_BUF
            try:
                n = os.write(self.task_fd, data)
            except (BlockingIOError, BrokenPipeError):
                self.torn = torn
                break
            data = data[n:]
            self.torn = bool(data)  # the pipe ends inside a message until the rest is written
        return data

    def _receive(self, i: int, out: list[tuple], drain: bool = False) -> None:
        """Read what worker ``i`` sent (all of it with ``drain``) and unpickle whole answers;
        EOFError when it closed its socket."""
        conn = self.conns[i]
        if self.selector is None:  # Windows: whole messages
            while True:
                out.append(pickle.loads(conn.recv_bytes()))
                if not (drain and conn.poll()):
                    return
        buf = self.buffers[i]
        fd = conn.fileno()
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                raise EOFError
            buf += chunk
            pos = 0
            while len(buf) - pos >= 4:
                (n,) = struct.unpack_from("!i", buf, pos)
                head = 4
                if n == -1:
                    if len(buf) - pos < 12:
                        break
                    (n,) = struct.unpack_from("!Q", buf, pos + 4)
                    head = 12
                if len(buf) - pos - head < n:
                    break
                out.append(pickle.loads(buf[pos + head:pos + head + n]))
                pos += head + n
            del buf[:pos]
            if not (drain and conn.poll()):
                return

    def poll(self, timeout: float | None, writable: bool = False) -> tuple[list[tuple], list[int]]:
        """Answers that arrived and the workers that died; waits up to ``timeout`` seconds
        (None: no limit) for one of them, or with ``writable`` for room in the task pipe."""
        answers: list[tuple] = []
        dead: list[int] = []
        if self.selector is not None:
            if writable:
                self.selector.register(self.task_fd, selectors.EVENT_WRITE, None)
            try:
                ready = [key.data for key, _ in self.selector.select(timeout) if key.data is not None]
            finally:
                if writable:
                    self.selector.unregister(self.task_fd)
        else:
            from multiprocessing.connection import wait

            ready = [self.waitables[obj] for obj in wait(list(self.waitables), timeout)]
        for is_conn, i in ready:
            if is_conn:
                try:
                    self._receive(i, answers)
                    continue
                except (EOFError, OSError):
                    pass
            if i not in dead and (is_conn or not self.procs[i].is_alive()):
                dead.append(i)
        self.answered = self.answered or bool(answers)
        return answers, dead

    def start_failure(self, dead: list[int]) -> str | None:
        """Why the workers cannot run, when workers ``dead`` exited with an error of their own
        (not a signal) holding no task, before any worker of this pool answered one (they
        failed to start: a worker that crashes reads or writes holds its task); else None."""
        if self.answered or not dead:
            return None
        codes = []
        for i in dead:
            self.procs[i].join(timeout=2.0)
            codes.append(self.procs[i].exitcode)
        if any(c is None or c <= 0 for c in codes) or any(self.status[i] for i in dead):
            return None
        return (f"the I/O worker processes exit as they start (exit code {codes[0]}); multiprocessing "
                "imports the main module in each worker, so a script that runs a batch with "
                "io='processes' must do it under `if __name__ == \"__main__\":`")

    # -- runs and shared memory --------------------------------------------------------

    def begin(self, read: Any, sink: Any, read_slots: int, write_slots: int) -> None:
        if not all(p.is_alive() for p in self.procs):  # one died since the last run
            self.restart()
        try:
            cwd: str | None = os.getcwd()  # the workers resolve the run's relative paths there
        except OSError:
            cwd = None
        try:
            self._broadcast(("run", read, sink, cwd))
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            raise TypeError(f"io='processes' needs a picklable read and sink (module-level callables): {exc}") from exc
        self.config = (read, sink, cwd)
        self.want = {_READ: read_slots, _WRITE: write_slots}
        for op in (_READ, _WRITE):
            a = self.current[op]
            if a is None or a.nslots < self._count(op, a.slot_bytes):
                with contextlib.suppress(OSError):  # without shared memory, pixels go with the messages
                    self._new_arena(op, a.slot_bytes if a is not None else _SLOT_BYTES)

    def _count(self, op: int, slot_bytes: int) -> int:
        return max(1, min(self.want[op], _SHARED_BYTES // slot_bytes))

    def _new_arena(self, op: int, nbytes: int) -> _Arena:
        slot_bytes = _round_pages(nbytes)
        if slot_bytes >= self.failed[op]:
            raise OSError(f"no shared memory for slots of {slot_bytes} bytes")
        try:
            arena = _Arena(self.gen + 1, slot_bytes, self._count(op, slot_bytes))
        except OSError:
            self.failed[op] = slot_bytes
            raise
        self.gen += 1
        self.arenas[arena.gen] = arena
        self._share(arena)
        old = self.current[op]
        self.current[op] = arena
        if old is not None:
            old.retired = True
            self._maybe_drop(old)
        return arena

    def slot(self, op: int, nbytes: int) -> tuple[_Arena | None, int]:
        """A free slot of at least ``nbytes`` for ``op`` (in a new, bigger block when needed),
        or (None, -1) when all are in use. Raises OSError when no block that big can be made."""
        a = self.current[op]
        if a is None or nbytes > a.slot_bytes:
            a = self._new_arena(op, max(nbytes, _SLOT_BYTES))
        if not a.free:
            return None, -1
        return a, a.free.pop()

    def free(self, arena: _Arena, slot: int) -> None:
        arena.free.append(slot)
        if arena.retired:
            self._maybe_drop(arena)

    def _maybe_drop(self, arena: _Arena) -> None:
        if arena.idle:
            del self.arenas[arena.gen]
            self._broadcast(("drop", arena.gen))
            arena.close()


_pools: dict[int, _Pool] = {}
_pools_lock = threading.Lock()


def _acquire_pool(workers: int) -> tuple[_Pool, bool]:
    """The kept pool of ``workers`` processes, marked busy; a private one (second value False)
    when another run is using it."""
    with _pools_lock:
        pool = _pools.get(workers)
        if pool is None:
            pool = _pools[workers] = _Pool(workers)
        if not pool.busy:
            pool.busy = True
            return pool, True
    pool = _Pool(workers)
    pool.busy = True
    return pool, False


def _release_pool(pool: _Pool, kept: bool, ok: bool) -> None:
    if kept and ok:
        pool.busy = False
        return
    if kept:
        with _pools_lock:
            if _pools.get(pool.size) is pool:
                del _pools[pool.size]
    pool.shutdown()


def start_io_processes(workers: int) -> None:
    """Start, in the background, the worker processes that ``run_batch(..., io="processes",
    workers=workers)`` will use, so their start-up overlaps other work (a CUDA context, say).
    The run waits for them if they are not up yet."""
    def start() -> None:
        with contextlib.suppress(Exception), _pools_lock:
            if workers not in _pools:
                _pools[workers] = _Pool(workers)

    threading.Thread(target=start, name="gpuimg-io-start", daemon=True).start()


@atexit.register
def _shutdown_pools() -> None:
    with _pools_lock:
        pools = list(_pools.values())
        _pools.clear()
    for pool in pools:
        with contextlib.suppress(Exception):
            pool.shutdown()


_task_ids = itertools.count(1)  # unique in the process, so a worker's last task is never mistaken


class _Task:
    __slots__ = ("arena", "done", "error", "item", "meta", "op", "slot", "value")

    def __init__(self, op: int, item: Item) -> None:
        self.op, self.item = op, item
        self.arena: _Arena | None = None
        self.slot = -1
        self.meta: Any = None
        self.value: Any = None
        self.error: str | None = None
        self.done = False


class _ProcessIO:
    """Reads and sinks in the worker processes of a :class:`_Pool`; see the comment above it."""

    def __init__(self, pool: _Pool, read: Callable[[Path], np.ndarray], sink: Callable[[Item, Any], None],
                 stored: Callable[[Item, BaseException | None], None], *, read_slots: int, write_slots: int) -> None:
        self.pool, self.sink, self.stored = pool, sink, stored
        self.tasks: dict[int, _Task] = {}
        self.out: list[bytes] = []  # framed tasks not sent yet (see flush)
        self.unsent = memoryview(b"")  # the part of a flush the task pipe had no room for
        self.writes = 0
        self.tries: Counter[tuple[int, Path]] = Counter()
        pool.begin(read, sink, read_slots, write_slots)

    # -- sending -----------------------------------------------------------------------

    def _put(self, task: _Task) -> None:
        tid = next(_task_ids)
        self.tasks[tid] = task
        a = task.arena
        if task.op == _READ:
            slot = None if a is None else (a.gen, task.slot * a.slot_bytes, a.slot_bytes)
            msg = (tid, _READ, task.item.path, slot)
        elif a is None:  # no shared memory for it: the result goes with the task
            msg = (tid, _WRITE, task.item, (None, 0, task.meta))
        else:
            msg = (tid, _WRITE, task.item, (a.gen, task.slot * a.slot_bytes, task.meta))
        self.out.append(_frame(pickle.dumps(msg, pickle.HIGHEST_PROTOCOL)))

    def flush(self) -> None:
        """Send the tasks queued since the last flush, in one write. When the pipe is full it
        takes in answers until the workers have made room (a worker may be waiting for the
        engine to read a large answer before it takes another task)."""
        while self.out or self.unsent:
            if not self.unsent:
                self.unsent = memoryview(b"".join(self.out))
                self.out = []
            self.unsent = self.pool.send(self.unsent)
            if self.unsent:
                self._pump(True, writable=True)

    # -- the engine's side -------------------------------------------------------------

    def read(self, item: Item) -> _Task:
        task = _Task(_READ, item)
        with contextlib.suppress(OSError):  # without a slot the pixels come through the socket
            task.arena, task.slot = self.pool.slot(_READ, self.pool.read_bytes)
        self._put(task)
        return task

    def get(self, task: _Task) -> np.ndarray:
        while not task.done:
            self._wait()
        if task.error is not None:
            raise _FileError(task.error)
        return task.value

    def release(self, tasks: Iterable[_Task]) -> None:
        for task in tasks:
            task.value = None
            self._free(task)

    def write(self, item: Item, result: Any) -> None:
        payload = None
        try:
            result = asnumpy(result)  # host arrays (a device array would open a GPU context there)
            if isinstance(result, np.ndarray) and not result.dtype.hasobject:
                nbytes = result.nbytes
                meta: Any = ("a", result.shape, result.dtype.str)
            else:
                payload = pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
                nbytes = len(payload)
                meta = ("p", nbytes)
        except Exception as exc:  # a result that cannot go to a worker (it does not pickle)
            self.stored(item, exc)
            return
        task = _Task(_WRITE, item)
        try:
            while True:
                arena, slot = self.pool.slot(_WRITE, nbytes)
                if arena is not None:
                    break
                self._wait()  # every slot holds a write in flight: wait for one
        except OSError:  # no shared memory block that big
            task.meta = result
        else:
            offset = slot * arena.slot_bytes
            if payload is None:
                np.ndarray(result.shape, result.dtype, buffer=arena.buf, offset=offset)[...] = result
            else:
                arena.buf[offset:offset + nbytes] = payload
            task.arena, task.slot, task.meta = arena, slot, meta
        self.writes += 1
        self._put(task)

    def drain(self, limit: int) -> None:
        self.flush()
        self._pump(False)  # takes in what arrived
        while self.writes > limit:
            self._wait()

    def close(self) -> None:
        self.tasks.clear()

    def abort(self) -> None:
        """Stop the workers: writes in their hands complete, queued tasks are dropped, and
        whatever a worker killed mid-write left is removed."""
        self.pool._stop(wait=60.0)
        discard = getattr(self.sink, "discard", None)
        for task in self.tasks.values():
            if task.op == _WRITE and discard is not None:
                with contextlib.suppress(Exception):
                    discard(task.item)
        self.tasks.clear()

    # -- answers -----------------------------------------------------------------------

    def _wait(self) -> None:
        """Send what is queued (tasks that a recovery put again, too) and wait for answers."""
        self.flush()
        self._pump(True)

    def _pump(self, block: bool, writable: bool = False) -> None:
        answers, dead = self.pool.poll(None if block else 0, writable)
        for answer in answers:
            self._answer(*answer)
        if dead:
            self._recover(dead)

    def _answer(self, tid: int, failed: int, payload: Any) -> None:
        task = self.tasks.pop(tid, None)
        if task is None:
            return
        if task.op == _READ:
            task.done = True
            if failed:
                task.error = payload
            elif isinstance(payload, np.ndarray):  # it came through the socket
                self.pool.read_bytes = max(self.pool.read_bytes, payload.nbytes)
                task.value = payload
                self._free(task)
            else:
                task.value = task.arena.view(task.slot, *payload)
            return
        self._free(task)
        self.writes -= 1
        self.stored(task.item, _FileError(payload) if failed else None)

    def _free(self, task: _Task) -> None:
        if task.arena is not None:
            self.pool.free(task.arena, task.slot)
            task.arena = None

    def _recover(self, dead: list[int]) -> None:
        """Workers died (a decoder crash): the tasks they were on count a try, all workers are
        replaced, and every task not answered goes to the new ones. When a worker died between
        tasks (it could not start, say), every task in flight counts a try, so a run whose
        workers keep dying ends with its files failed instead of restarting forever."""
        reason = self.pool.start_failure(dead)
        if reason is not None:
            raise WorkersCannotStart(reason)
        culprits = {self.pool.status[i] for i in dead} - {0}
        for answer in self.pool.restart():
            self._answer(*answer)
        self.out, self.unsent = [], memoryview(b"")  # the old pipe is gone; all is sent again
        discard = getattr(self.sink, "discard", None)
        pending = sorted(self.tasks.items())
        self.tasks.clear()
        for tid, task in pending:
            if task.op == _WRITE and discard is not None:
                discard(task.item)  # the temporary file a killed writer left
            if tid in culprits or not culprits:
                self.tries[task.op, task.item.path] += 1
                if self.tries[task.op, task.item.path] > RETRIES["read" if task.op == _READ else "write"]:
                    self._free(task)
                    if task.op == _READ:
                        task.done, task.error = True, "the reading process died"
                    else:
                        self.writes -= 1
                        self.stored(task.item, _FileError("the writing process died"))
                    continue
            self._put(task)


# --------------------------------------------------------------------------------------
# The engine
# --------------------------------------------------------------------------------------

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
        on the I/O workers.
    output_for : callable, optional
        ``item -> Path`` of the item's output; with ``resume`` items whose output exists are
        skipped without being read.
    resume : bool
        Skip items whose output exists.
    batch_size : int
        Most images stacked into one ``compute`` call.
    workers : int
        Threads (or processes) reading and writing files (at least 1).
    read : callable
        File reader, :func:`gpuimg.io.read_image` by default.
    progress : bool
        Show a tqdm progress bar with images/s on stderr.
    desc : str
        Progress bar label.
    failures : sequence of Failure
        Failures found before the run (e.g. missing inputs); they count in the report.
    io : {"threads", "processes"}
        ``"threads"``: reads and sinks run on a thread pool of this process; file decoding
        and encoding then compete with ``compute`` for the GIL, which on a GPU slows every
        kernel launch (each one releases and re-takes it). ``"processes"``: they run in
        ``workers`` worker processes (started once and reused; see
        :func:`start_io_processes`), and the calling thread is the only busy thread of this
        process: images arrive in and results leave through shared memory, and the calling
        thread looks at the workers' answers only between ``compute`` calls. ``read`` and
        ``sink`` must then be picklable module-level callables (e.g. :class:`ImageWriter`);
        a sink receives a read-only view of the result, valid during the call. A worker that
        dies (a decoder crash) is replaced; the file it was handling is tried again
        (``RETRIES``), the other reads and writes in flight go on.

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
    prefetch = max(2 * batch_size, batch_size + 2 * workers)
    max_pending_writes = max(2 * batch_size, 4 * workers)

    def fail(path: Path | str, stage: str, exc: BaseException | str) -> None:
        reason = exc if isinstance(exc, str) else exc.reason if isinstance(exc, _FileError) else _reason(exc)
        with lock:
            report.failures.append(Failure(str(path), stage, reason))
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

    pool: _Pool | None = None
    kept = False
    ok = False
    iox: _ThreadIO | _ProcessIO | None = None
    try:
        with sigterm_as_interrupt():
            run = functools.partial(_engine, todo=todo, compute=compute, report=report, fail=fail,
                                    batch_size=batch_size, prefetch=prefetch,
                                    max_pending_writes=max_pending_writes)
            if io == "processes":
                pool, kept = _acquire_pool(workers)
                # slots for the reads in flight, the batch being assembled and the image in hand
                iox = _ProcessIO(pool, read, sink, stored, read_slots=prefetch + batch_size + 2,
                                 write_slots=max_pending_writes + batch_size)
                try:
                    run(iox)
                except WorkersCannotStart as exc:
                    iox.close()
                    _release_pool(pool, kept, False)
                    pool = None
                    warnings.warn(f"gpuimg batch: file I/O on threads instead: {exc}", RuntimeWarning, stacklevel=2)
                    iox = _ThreadIO(workers, read, sink, stored)
                    run(iox)
            else:
                iox = _ThreadIO(workers, read, sink, stored)
                run(iox)
            iox.close()
            ok = True
    except BaseException:
        if iox is not None:
            iox.abort()
        gio.remove_partial_files()
        if bar is not None:
            bar.close()
        raise
    finally:
        if pool is not None:
            _release_pool(pool, kept, ok)
    report.wall_s = time.perf_counter() - t_start
    if bar is not None:
        bar.close()
    return report


def _engine(iox: _ThreadIO | _ProcessIO, todo: list[Item], compute: Callable[[np.ndarray, list[Item]], Sequence[Any]],
            report: BatchReport, fail: Callable[..., None], *, batch_size: int, prefetch: int,
            max_pending_writes: int) -> None:
    """The computing thread's loop: read ahead, stack same-shaped images, compute, hand results on."""
    reads: deque[tuple[Item, Any]] = deque()
    source = iter(todo)
    clock = time.perf_counter

    def refill() -> None:
        while len(reads) < prefetch:
            it = next(source, None)
            if it is None:
                return
            reads.append((it, iox.read(it)))

    def process(stack_items: list[Item], arrays: list[np.ndarray]) -> None:
        iox.flush()  # the reads asked for since the last batch go out before the device call
        t0 = clock()
        stack = np.stack(arrays)
        ts = clock()
        report.stack_s += ts - t0
        t0 = ts
        try:
            results = list(compute(stack, stack_items))
            if len(results) != len(stack_items):
                raise RuntimeError(f"compute returned {len(results)} results for {len(stack_items)} images")
        except Exception as exc:
            report.compute_s += clock() - t0
            if len(stack_items) == 1:
                fail(stack_items[0].path, "process", exc)
                return
            for it, arr in zip(stack_items, arrays):
                process([it], [arr])
            return
        t1 = clock()
        report.compute_s += t1 - t0
        report.batches += 1
        iox.drain(max_pending_writes)
        for it, res in zip(stack_items, results):
            iox.write(it, res)
        iox.flush()
        report.io_wait_s += clock() - t1

    refill()
    group: list[Item] = []
    arrays: list[np.ndarray] = []
    handles: list[Any] = []
    key: tuple | None = None
    while reads:
        it, h = reads.popleft()
        t0 = clock()
        try:
            arr = iox.get(h)
        except _FileError as exc:
            report.io_wait_s += clock() - t0
            iox.release((h,))
            fail(it.path, "read", exc)
            refill()
            continue
        report.io_wait_s += clock() - t0
        refill()
        k = (arr.shape, arr.dtype.str)
        if group and (k != key or len(group) >= batch_size):
            process(group, arrays)
            iox.release(handles)
            group, arrays, handles = [], [], []
        group.append(it)
        arrays.append(arr)
        handles.append(h)
        key = k
    if group:
        process(group, arrays)
        iox.release(handles)
    t0 = clock()
    iox.drain(0)
    report.io_wait_s += clock() - t0
