"""The batch engine's worker processes: dying workers, shared memory without memfd, the task
pipe at an interrupt, relative paths, and what is blamed on a file."""

from __future__ import annotations

import errno
import multiprocessing
import multiprocessing.util
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from conftest import NoSemaphores

from gpuimg import batch as gb
from gpuimg import io as gio
from gpuimg.batch import ImageWriter, Item, expand_inputs, run_batch

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and descriptors")


@pytest.fixture
def fresh_pools():
    """I/O process pools started by the test alone (kept ones bring their state)."""
    gb._shutdown_pools()
    yield
    gb._shutdown_pools()



def _run_script(tmp_path, text, batches):
    """Start ``text`` as a script on ``tmp_path / "in"`` -> ``tmp_path / "out"`` and wait for
    it to print ``batch`` ``batches`` times."""
    script = tmp_path / "run.py"
    script.write_text(text)
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path / "in"), str(tmp_path / "out")],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    for _ in range(batches):
        assert proc.stdout.readline().strip() == "batch"
    return proc

def _images(folder: Path, rng, n: int, shape=(12, 16), dtype=np.uint16) -> dict[str, np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for i in range(n):
        img = (rng.random(shape) * np.iinfo(dtype).max).astype(dtype)
        gio.write_image(folder / f"img{i:02d}.png", img)
        out[f"img{i:02d}.png"] = img
    return out


def _flip(stack, _items):
    return list(stack[:, ::-1])


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def _crash_on_img00(path):
    if Path(path).name == "img00.png":
        os._exit(3)
    return gio.read_image(path)


def _crash_on_img01(path):
    if Path(path).name == "img01.png":
        os._exit(3)
    return gio.read_image(path)


@dataclass(frozen=True)
class _CrashingWriter:
    """Writes like :class:`ImageWriter`, but its process dies half-way through ``img02.png``."""

    folder: Path

    def __call__(self, item, result):
        if item.rel.name == "img02.png":
            with gio.atomic_path(self.folder / item.rel) as tmp:
                tmp.write_bytes(b"half an image")
                os._exit(3)
        gio.write_image(self.folder / item.rel, result)

    def discard(self, item):
        gio.remove_partial_files(target=self.folder / item.rel)


# --------------------------------------------------------------------------------------
# workers that die
# --------------------------------------------------------------------------------------

def test_kept_pool_survives_a_worker_that_died_between_runs(tmp_path, rng, fresh_pools):
    imgs = _images(tmp_path / "in", rng, 4)
    items, _ = expand_inputs([tmp_path / "in"])
    assert run_batch(items, _flip, ImageWriter(tmp_path / "o1"), progress=False, io="processes", workers=2).done == 4
    victim = gb._pools[2].procs[0]
    os.kill(victim.pid, signal.SIGKILL)  # the OOM killer, say, while the pool waits for a run
    victim.join()
    report = run_batch(items, _flip, ImageWriter(tmp_path / "o2"), progress=False, io="processes", workers=2)
    assert report.done == 4 and not report.failures
    for name, img in imgs.items():
        np.testing.assert_array_equal(gio.read_image(tmp_path / "o2" / name), img[::-1])


def test_a_dead_worker_is_replaced_when_shared_memory_grows(tmp_path, fresh_pools, monkeypatch):
    # a worker dies, and before the engine looks at the workers again it makes a bigger block,
    # which it announces to every worker: the block is used, and the one it replaces dropped
    # (not left half-made, taking memory until the pool ends)
    monkeypatch.setattr(gb, "_SLOT_BYTES", 4096)
    stored = []
    pool = gb._Pool(2)
    try:
        iox = gb._ProcessIO(pool, gio.read_image, ImageWriter(tmp_path), lambda it, exc: stored.append((it, exc)),
                            read_slots=2, write_slots=2)
        victim = pool.procs[0]
        os.kill(victim.pid, signal.SIGKILL)
        victim.join()
        big = np.arange(100 * 100, dtype=np.uint16).reshape(100, 100)
        item = Item(tmp_path / "x.png", Path("x.png"))
        iox.write(item, big)
        iox.drain(0)
        assert stored == [(item, None)]
        np.testing.assert_array_equal(gio.read_image(tmp_path / "x.png"), big)
        assert pool.current[gb._WRITE].slot_bytes >= big.nbytes
        assert sorted(pool.arenas) == sorted(a.gen for a in pool.current.values())
    finally:
        pool.shutdown()


@pytest.mark.parametrize("workers", [1, 2])
def test_one_worker_survives_a_crashing_reader(tmp_path, rng, workers, fresh_pools):
    # one CPU: a single worker; the file that kills it fails, the others are read again
    imgs = _images(tmp_path / "in", rng, 5)
    items, _ = expand_inputs([tmp_path / "in"])
    report = run_batch(items, _flip, ImageWriter(tmp_path / "out"), batch_size=2, progress=False,
                       read=_crash_on_img01, io="processes", workers=workers)
    assert [(f.stage, Path(f.path).name, f.reason) for f in report.failures] == [
        ("read", "img01.png", "the reading process died")]
    assert report.done == 4
    for name in sorted(os.listdir(tmp_path / "out")):
        np.testing.assert_array_equal(gio.read_image(tmp_path / "out" / name), imgs[name][::-1])


def test_a_writer_dying_mid_write_leaves_no_partial_file(tmp_path, rng, fresh_pools):
    _images(tmp_path / "in", rng, 4)
    items, _ = expand_inputs([tmp_path / "in"])
    out = tmp_path / "out"
    report = run_batch(items, _flip, _CrashingWriter(out), batch_size=2, progress=False, io="processes", workers=2)
    assert [(f.stage, Path(f.path).name, f.reason) for f in report.failures] == [
        ("write", "img02.png", "the writing process died")]
    assert report.done == 3
    assert sorted(os.listdir(out)) == ["img00.png", "img01.png", "img03.png"]


def test_engine_errors_are_not_blamed_on_files(tmp_path, rng, fresh_pools, monkeypatch):
    # the engine cannot replace a dead worker (fork fails): that stops the run; it is not
    # each remaining file's read error
    _images(tmp_path / "in", rng, 4)
    items, _ = expand_inputs([tmp_path / "in"])

    calls = []

    def restart(self):
        calls.append(1)
        raise OSError(errno.EAGAIN, "cannot start the I/O processes")

    monkeypatch.setattr(gb._Pool, "restart", restart)
    with pytest.raises(OSError, match="cannot start"):
        run_batch(items, _flip, ImageWriter(tmp_path / "out"), batch_size=1, progress=False,
                  read=_crash_on_img00, io="processes", workers=1)
    assert len(calls) == 1  # the run stopped there, it did not go on to the next file
    assert not multiprocessing.active_children()


def test_the_only_worker_dying_does_not_break_the_task_pipe(tmp_path, rng, fresh_pools):
    # with one worker, its death leaves the task pipe without a reader: sending the next
    # tasks must lead to the replacement worker, not to a BrokenPipeError
    img = _images(tmp_path / "in", rng, 1)["img00.png"]
    pool = gb._Pool(1)
    try:
        iox = gb._ProcessIO(pool, gio.read_image, ImageWriter(tmp_path / "out"), lambda it, exc: None,
                            read_slots=2, write_slots=2)
        victim = pool.procs[0]
        os.kill(victim.pid, signal.SIGKILL)
        victim.join()
        task = iox.read(Item(tmp_path / "in" / "img00.png", Path("img00.png")))
        np.testing.assert_array_equal(iox.get(task), img)
    finally:
        pool.shutdown()


# --------------------------------------------------------------------------------------
# results and paths
# --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _ValueSink:
    folder: Path

    def __call__(self, item, result):
        np.save(self.folder / f"{item.rel.stem}.npy", result[1])


def test_an_unpicklable_result_fails_its_file_only(tmp_path, rng, fresh_pools):
    _images(tmp_path / "in", rng, 4)
    items, _ = expand_inputs([tmp_path / "in"])
    (tmp_path / "out").mkdir()

    def compute(stack, its):
        return [(threading.Lock() if it.rel.name == "img01.png" else None, a.sum(axis=0))
                for it, a in zip(its, stack)]

    report = run_batch(items, compute, _ValueSink(tmp_path / "out"), batch_size=4, progress=False,
                       io="processes", workers=2)
    assert [(f.stage, Path(f.path).name) for f in report.failures] == [("write", "img01.png")]
    assert "pickle" in report.failures[0].reason
    assert report.done == 3 and sorted(os.listdir(tmp_path / "out")) == ["img00.npy", "img02.npy", "img03.npy"]


def test_relative_paths_follow_the_working_directory(tmp_path, rng, fresh_pools, monkeypatch):
    # the kept workers resolve a run's relative paths where the caller is, not where it was
    # when they started
    imgs = {}
    for name in ("a", "b"):
        imgs[name] = _images(tmp_path / name / "in", rng, 3)
        monkeypatch.chdir(tmp_path / name)
        items, _ = expand_inputs(["in"])
        report = run_batch(items, _flip, ImageWriter(Path("out")), progress=False, io="processes", workers=2)
        assert report.done == 3 and not report.failures
    for name in ("a", "b"):
        for file, img in imgs[name].items():
            np.testing.assert_array_equal(gio.read_image(tmp_path / name / "out" / file), img[::-1])


# --------------------------------------------------------------------------------------
# shared memory without memfd
# --------------------------------------------------------------------------------------

def _blocks(folder: Path) -> set[str]:
    return {n for n in os.listdir(folder) if n.startswith("gpuimg-io-")}


def _named_blocks_in(monkeypatch, folder: Path) -> None:
    multiprocessing.util.get_temp_dir()  # multiprocessing's own folder stays where it is
    monkeypatch.setattr(tempfile, "tempdir", str(folder))


def _no_memfd(*_args):
    raise OSError(errno.ENOSYS, "Function not implemented")


@pytest.mark.parametrize("how", ["switch", "memfd fails"])
def test_shared_memory_in_named_files(tmp_path, rng, monkeypatch, fresh_pools, how):
    # the other systems' shared memory (temporary files the workers open by name), also used
    # where memfd_create exists but fails; blocks grow and are dropped while workers use them
    shm = tmp_path / "shm"
    shm.mkdir()
    _named_blocks_in(monkeypatch, shm)
    if how == "switch":
        monkeypatch.setattr(gb, "_MEMFD", False)
    else:
        monkeypatch.setattr(os, "memfd_create", _no_memfd)
    monkeypatch.setattr(gb, "_SLOT_BYTES", 4096)
    imgs = {}
    (tmp_path / "in").mkdir()
    for i in range(8):
        img = (rng.random((10 + 20 * i, 30, 3)) * 65535).astype(np.uint16)
        gio.write_image(tmp_path / "in" / f"g{i}.tif", img)
        imgs[f"g{i}.tif"] = img
    items, _ = expand_inputs([tmp_path / "in"])
    for _ in range(2):
        report = run_batch(items, _flip, ImageWriter(tmp_path / "out"), batch_size=2, progress=False,
                           io="processes", workers=2)
        assert report.done == 8 and not report.failures
        for name, img in imgs.items():
            np.testing.assert_array_equal(gio.read_image(tmp_path / "out" / name), img[::-1])
    pool = gb._pools[2]
    assert pool.arenas and all(a.path is not None and Path(a.path).parent == shm for a in pool.arenas.values())
    assert {Path(a.path).name for a in pool.arenas.values()} == _blocks(shm)
    gb._shutdown_pools()
    assert _blocks(shm) == set()


def test_named_blocks_of_a_killed_engine_are_removed_by_the_next(tmp_path, rng, monkeypatch, fresh_pools):
    # SIGKILL leaves an engine no chance to remove its named blocks: the next engine removes
    # those whose owner is gone, and leaves those of live processes alone
    shm = tmp_path / "shm"
    shm.mkdir()
    _named_blocks_in(monkeypatch, shm)
    monkeypatch.setattr(gb, "_MEMFD", False)
    monkeypatch.setattr(gb, "_swept", False)
    engine = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import tempfile, time
        tempfile.tempdir = {str(shm)!r}
        from gpuimg import batch as gb
        gb._MEMFD = False
        arena = gb._Arena(1, 4096, 2)
        print(arena.path, flush=True)
        time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    left = Path(engine.stdout.readline().strip())
    assert left.parent == shm and left.exists()
    os.kill(engine.pid, signal.SIGKILL)
    engine.wait()
    alive = shm / f"gpuimg-io-{os.getppid()}-keep"  # a live process's block
    alive.write_bytes(b"")
    img = _images(tmp_path / "in", rng, 2)
    items, _ = expand_inputs([tmp_path / "in"])
    report = run_batch(items, _flip, ImageWriter(tmp_path / "out"), batch_size=2, progress=False, io="processes",
                       workers=1)
    assert report.done == 2 and not report.failures
    for name, a in img.items():
        np.testing.assert_array_equal(gio.read_image(tmp_path / "out" / name), a[::-1])
    assert not left.exists() and alive.exists()


def test_named_block_dropped_before_a_worker_mapped_it(tmp_path, rng, monkeypatch, fresh_pools):
    # a worker learns of blocks when it takes its next task: by then a block it was told
    # about may be gone (made and dropped meanwhile), which is no reason to die
    shm = tmp_path / "shm"
    shm.mkdir()
    _named_blocks_in(monkeypatch, shm)
    monkeypatch.setattr(gb, "_MEMFD", False)
    monkeypatch.setattr(gb, "_SLOT_BYTES", 4096)
    img = _images(tmp_path / "in", rng, 1)["img00.png"]
    pool = gb._Pool(1)
    try:
        iox = gb._ProcessIO(pool, gio.read_image, ImageWriter(tmp_path / "out"), lambda it, exc: None,
                            read_slots=2, write_slots=2)
        pid = pool.procs[0].pid
        arena, slot = pool.slot(gb._WRITE, 1 << 16)  # a bigger write block: the first one is dropped
        pool.free(arena, slot)
        assert len(_blocks(shm)) == 2
        task = iox.read(Item(tmp_path / "in" / "img00.png", Path("img00.png")))
        iox.flush()
        np.testing.assert_array_equal(iox.get(task), img)
        assert pool.procs[0].pid == pid and not iox.tries
    finally:
        pool.shutdown()


# --------------------------------------------------------------------------------------
# the task pipe when the engine stops
# --------------------------------------------------------------------------------------

def test_interrupt_right_after_a_partial_task_write_is_remembered(monkeypatch, fresh_pools):
    # Ctrl-C lands just after os.write put half a task in the pipe: the pool must know the pipe
    # ends inside a message, or the graceful stop's end markers become part of that message and
    # the workers wait for the rest of it until the stop gives up
    pool = gb._Pool(1)
    try:
        real = os.write

        def write(fd, data):
            if fd != pool.task_fd:
                return real(fd, data)
            real(fd, bytes(data[:len(data) // 2]))
            raise KeyboardInterrupt

        msg = memoryview(gb._frame(pickle.dumps((1, gb._READ, "x" * 20000, None))))
        monkeypatch.setattr(os, "write", write)
        try:
            with pytest.raises(KeyboardInterrupt):
                pool.send(msg)
        finally:
            monkeypatch.setattr(os, "write", real)
        assert pool.torn
        t0 = time.monotonic()
        pool._stop(wait=20.0)
        assert time.monotonic() - t0 < 5
    finally:
        pool.shutdown()


def _slow_read(path):
    time.sleep(1.0)
    return np.zeros(1)


def test_graceful_stop_waits_for_room_in_a_full_task_pipe(tmp_path, fresh_pools):
    # the pipe is full of queued tasks (whole messages) while both workers are busy: the end
    # markers go in as the workers skip the queued tasks, instead of the stop waiting out its
    # time for workers that never get one
    pool = gb._Pool(2)
    try:
        pool.begin(_slow_read, ImageWriter(tmp_path), 1, 1)
        for payload in (pickle.dumps((1, gb._READ, "x" * 3950, None)), pickle.dumps(0)):
            frame = gb._frame(payload)  # (at most PIPE_BUF bytes: each write is whole or nothing)
            while not pool.send(memoryview(frame)):
                pass
        assert not pool.torn
        t0 = time.monotonic()
        pool._stop(wait=20.0)
        assert time.monotonic() - t0 < 5
    finally:
        pool.shutdown()


_STOPPED_RUN = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from gpuimg import batch as gb
    from gpuimg.batch import ImageWriter, expand_inputs, run_batch

    class NoSharedMemory:
        def __init__(self, *args):
            raise OSError("no shared memory here")

    def compute(stack, its):
        print("batch", flush=True)
        time.sleep(0.2)
        return list(stack[:, ::-1])

    if __name__ == "__main__":
        gb._Arena = NoSharedMemory  # every image comes through the workers' sockets
        items, _ = expand_inputs([Path(sys.argv[1])])
        try:
            run_batch(items, compute, ImageWriter(Path(sys.argv[2])), batch_size=1, progress=False,
                      io="processes", workers=2)
        except KeyboardInterrupt:
            sys.exit(130)
    """
)


def test_stop_is_prompt_while_workers_wait_to_hand_over_pixels(tmp_path, rng):
    # images that do not fit a shared-memory slot come back through the workers' sockets; a
    # worker that has read ahead waits for the engine to take them. An interrupt must not then
    # wait out the graceful stop's 60 s for workers that cannot take the end marker
    (tmp_path / "in").mkdir()
    for i in range(12):
        np.save(tmp_path / "in" / f"b{i:02d}.npy", (rng.random((300, 300, 3)) * 65535).astype(np.uint16))
    proc = _run_script(tmp_path, _STOPPED_RUN, batches=3)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert time.monotonic() - t0 < 10
    names = os.listdir(tmp_path / "out") if (tmp_path / "out").exists() else []
    assert len(names) < 12 and all(not n.startswith(".") for n in names)


# --------------------------------------------------------------------------------------
# start-up failures and a killed engine
# --------------------------------------------------------------------------------------

@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_without_posix_semaphores_the_run_fails_cleanly(tmp_path, rng, monkeypatch, fresh_pools):
    # no /dev/shm: the workers' lock cannot be made; the run says so before touching a file
    # and leaves no descriptor or process behind
    _images(tmp_path / "in", rng, 2)
    items, _ = expand_inputs([tmp_path / "in"])
    real = gb._mp_context
    monkeypatch.setattr(gb, "_mp_context", lambda: NoSemaphores(real()))
    before = _open_fds()
    for _ in range(3):
        with pytest.raises(OSError, match="not implemented"):
            run_batch(items, _flip, ImageWriter(tmp_path / "out"), progress=False, io="processes", workers=2)
    assert _open_fds() == before
    assert not (tmp_path / "out").exists()


_KILLED_RUN = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from gpuimg.batch import ImageWriter, expand_inputs, run_batch

    def compute(stack, its):
        print("batch", flush=True)
        time.sleep(0.05)
        return list(stack[:, ::-1])

    if __name__ == "__main__":
        items, _ = expand_inputs([Path(sys.argv[1])])
        run_batch(items, compute, ImageWriter(Path(sys.argv[2])), batch_size=1, progress=False,
                  io="processes", workers=2)
    """
)


def test_workers_leave_quietly_when_the_engine_is_killed(tmp_path, rng):
    _images(tmp_path / "in", rng, 60, shape=(64, 64))
    proc = _run_script(tmp_path, _KILLED_RUN, batches=5)
    proc.kill()
    _, err = proc.communicate(timeout=30)  # returns once every worker has let go of stderr
    assert "Traceback" not in err, err
    assert all(not n.startswith(".") for n in os.listdir(tmp_path / "out"))


def test_a_script_without_a_main_guard_falls_back_to_io_threads(tmp_path, rng):
    # multiprocessing imports the main module in each worker; without the guard every worker
    # dies starting its own pool, and the run must go on with I/O threads at once (it used to
    # fail every file as "the reading process died" after a minute of restarts)
    images = _images(tmp_path / "in", rng, 5)
    script = tmp_path / "unguarded.py"
    script.write_text(textwrap.dedent("""
        import sys, time
        from gpuimg.batch import ImageWriter, expand_inputs, run_batch
        items, _ = expand_inputs([sys.argv[1]])
        t0 = time.perf_counter()
        rep = run_batch(items, lambda st, its: list(st[:, ::-1]), ImageWriter(sys.argv[2]), batch_size=2,
                        workers=2, progress=False, io="processes")
        print("done", rep.done, len(rep.failures), round(time.perf_counter() - t0, 1))
    """))
    proc = subprocess.run([sys.executable, str(script), str(tmp_path / "in"), str(tmp_path / "out")], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    done, ndone, nfailed, seconds = proc.stdout.split()
    assert (ndone, nfailed) == ("5", "0") and float(seconds) < 30
    assert "RuntimeWarning" in proc.stderr and '__name__ == "__main__"' in proc.stderr
    for name, img in images.items():
        np.testing.assert_array_equal(gio.read_image(tmp_path / "out" / name), img[::-1])
