"""The batch engine: input expansion, batching, fault isolation, resume, interruption."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import scipy.ndimage as ndi
from PIL import Image

from gpuimg import batch as gb
from gpuimg import io as gio
from gpuimg.batch import ImageWriter, expand_inputs, run_batch

ROOT = Path(__file__).resolve().parent.parent


def _make_folder(folder: Path, rng, n=10, shape=(24, 32), dtype=np.uint8, ext=".png"):
    folder.mkdir(parents=True, exist_ok=True)
    hi = np.iinfo(dtype).max
    imgs = {}
    for i in range(n):
        img = (rng.random(shape) * hi).astype(dtype)
        p = folder / f"img{i:02d}{ext}"
        Image.fromarray(img).save(p)
        imgs[p.name] = img
    return imgs


def _blur(stack, _items):
    return list(ndi.gaussian_filter(stack.astype(np.float32), (0, 1.5, 1.5)).astype(stack.dtype))


def _writer(out: Path):
    def sink(it, res):
        gio.write_image(out / it.rel, res)
    return sink


def test_expand_inputs_matches_os_walk(tmp_path, rng):
    root = tmp_path / "in"
    _make_folder(root / "a", rng, n=3)
    _make_folder(root / "a" / "deep", rng, n=2, ext=".tif")
    (root / "notes.txt").write_text("not an image")
    (root / ".hidden.png").write_bytes(b"")
    expected = sorted(
        os.path.relpath(os.path.join(d, f), root)
        for d, _, files in os.walk(root) for f in files
        if f.endswith((".png", ".tif")) and not f.startswith(".")
    )
    items, missing = expand_inputs([root])
    assert [str(it.rel) for it in items] == expected and not missing
    items, missing = expand_inputs([str(root / "a" / "*.png"), root / "a" / "img00.png", tmp_path / "nope.png",
                                    str(tmp_path / "none*.png")])
    assert sorted(it.rel.name for it in items) == ["img00.png", "img01.png", "img02.png"]
    assert [m.path for m in missing] == [str(tmp_path / "nope.png"), str(tmp_path / "none*.png")]
    items, _ = expand_inputs([str(root / "**" / "*.tif")])
    assert len(items) == 2
    _make_folder(tmp_path / "other", rng, n=1)
    with pytest.raises(ValueError, match="img00.png"):
        expand_inputs([root / "a" / "img00.png", tmp_path / "other" / "img00.png"])


@pytest.mark.parametrize("io", ["threads", "processes"])
def test_batches_equal_per_file_scipy(tmp_path, rng, io):
    imgs = {Path(k): v for k, v in _make_folder(tmp_path / "in", rng, n=7).items()}
    imgs.update({Path("big", k): v for k, v in _make_folder(tmp_path / "in" / "big", rng, n=3, shape=(40, 20)).items()})
    out = tmp_path / "out"
    items, _ = expand_inputs([tmp_path / "in"])
    sizes = []

    def compute(stack, its):
        sizes.append(len(its))
        return _blur(stack, its)

    sink = ImageWriter(out) if io == "processes" else _writer(out)
    report = run_batch(items, compute, sink, batch_size=4, progress=False, io=io, workers=2)
    assert report.done == 10 and report.exit_code == 0
    assert sum(sizes) == 10 and max(sizes) == 4 and len(sizes) == 3  # 3 of (40, 20) first, then 4 + 3
    for it in items:
        src = imgs[it.rel]
        ref = ndi.gaussian_filter(src.astype(np.float32), 1.5).astype(np.uint8)
        np.testing.assert_array_equal(np.array(Image.open(out / it.rel)), ref)


@pytest.mark.parametrize("io", ["threads", "processes"])
def test_corrupt_file_is_isolated(tmp_path, rng, io):
    _make_folder(tmp_path / "in", rng, n=10)
    (tmp_path / "in" / "img03.png").write_bytes(b"\x89PNG\r\n\x1a\ntruncated")
    items, missing = expand_inputs([tmp_path / "in"])
    report = run_batch(items, _blur, ImageWriter(tmp_path / "out"), batch_size=4, progress=False,
                       failures=missing, io=io, workers=2)
    assert report.done == 9 and report.exit_code == 1
    assert len(os.listdir(tmp_path / "out")) == 9
    assert [(f.stage, Path(f.path).name) for f in report.failures] == [("read", "img03.png")]
    assert "img03.png" in report.summary()


def test_processing_error_retried_per_image(tmp_path, rng):
    _make_folder(tmp_path / "in", rng, n=6)
    items, _ = expand_inputs([tmp_path / "in"])
    bad = items[2].path

    def compute(stack, its):
        if any(it.path == bad for it in its):
            raise FloatingPointError("diverged")
        return _blur(stack, its)

    report = run_batch(items, compute, _writer(tmp_path / "out"), batch_size=6, progress=False)
    assert report.done == 5
    assert [(f.stage, f.path) for f in report.failures] == [("process", str(bad))]
    assert "diverged" in report.failures[0].reason


def test_resume_does_no_work(tmp_path, rng):
    _make_folder(tmp_path / "in", rng, n=5)
    items, _ = expand_inputs([tmp_path / "in"])
    out = tmp_path / "out"
    calls = []

    def compute(stack, its):
        calls.append(len(its))
        return _blur(stack, its)

    def reader(path):
        calls.append(path)
        return gio.read_image(path)

    first = run_batch(items, compute, _writer(out), output_for=lambda it: out / it.rel, resume=True,
                      read=reader, progress=False)
    assert first.done == 5 and calls
    calls.clear()
    second = run_batch(items, compute, _writer(out), output_for=lambda it: out / it.rel, resume=True,
                       read=reader, progress=False)
    assert calls == [] and second.done == 0 and second.skipped == 5 and second.exit_code == 0


def test_bad_options(tmp_path):
    with pytest.raises(ValueError, match="batch_size"):
        run_batch([], _blur, _writer(tmp_path), batch_size=0)
    with pytest.raises(ValueError, match="workers"):
        run_batch([], _blur, _writer(tmp_path), workers=0)
    with pytest.raises(ValueError, match="io"):
        run_batch([], _blur, _writer(tmp_path), io="fibers")


def test_processes_need_picklable_read_and_sink(tmp_path, rng):
    _make_folder(tmp_path / "in", rng, n=2)
    items, _ = expand_inputs([tmp_path / "in"])
    with pytest.raises(TypeError, match="picklable"):
        run_batch(items, _blur, _writer(tmp_path / "out"), progress=False, io="processes", workers=2)
    # the pool is still usable
    report = run_batch(items, _blur, ImageWriter(tmp_path / "out"), progress=False, io="processes", workers=2)
    assert report.done == 2


@pytest.fixture
def fresh_pools():
    """I/O process pools started by the test alone (kept ones would bring their shared memory)."""
    gb._shutdown_pools()
    yield
    gb._shutdown_pools()


def test_processes_grow_shared_memory_for_bigger_images(tmp_path, rng, monkeypatch, fresh_pools):
    # slots of one page: the 16-bit colour images do not fit, come back through the socket,
    # and the engine makes bigger slots for the reads and writes after them
    monkeypatch.setattr(gb, "_SLOT_BYTES", 4096)
    imgs = _make_folder(tmp_path / "in", rng, n=5, shape=(24, 32))
    for i in range(5):
        img = (rng.random((70, 90, 3)) * 65535).astype(np.uint16)
        gio.write_image(tmp_path / "in" / f"z{i}.tif", img)
        imgs[f"z{i}.tif"] = img
    items, _ = expand_inputs([tmp_path / "in"])
    out = tmp_path / "out"
    for _ in range(2):  # the second run starts with the grown blocks
        report = run_batch(items, lambda s, its: list(s[:, ::-1]), ImageWriter(out), batch_size=2, progress=False,
                           io="processes", workers=2)
        assert report.done == 10 and report.exit_code == 0
        for name, img in imgs.items():
            np.testing.assert_array_equal(gio.read_image(out / name), img[::-1])
    pool = gb._pools[2]
    assert all(a.slot_bytes >= 70 * 90 * 3 * 2 for a in pool.current.values())
    assert len(pool.arenas) == 2  # the small blocks were dropped


class _NoSharedMemory:
    def __init__(self, *args):
        raise OSError("no shared memory here")


def test_processes_without_shared_memory(tmp_path, rng, monkeypatch, fresh_pools):
    # pixels then travel through the pipes: results of 2 MB each fill the 1 MB task pipe, so the
    # engine must take in answers while it waits to send
    monkeypatch.setattr(gb, "_Arena", _NoSharedMemory)
    (tmp_path / "in").mkdir()
    imgs = {}
    for i in range(6):
        img = (rng.random((400, 900, 3)) * 65535).astype(np.uint16)
        gio.write_image(tmp_path / "in" / f"b{i}.npy", img)
        imgs[f"b{i}.npy"] = img
    items, _ = expand_inputs([tmp_path / "in"])
    report = run_batch(items, lambda s, its: list(s[:, :, ::-1]), ImageWriter(tmp_path / "out"), batch_size=3,
                       progress=False, io="processes", workers=2)
    assert report.done == 6 and report.exit_code == 0
    for name, img in imgs.items():
        np.testing.assert_array_equal(np.load(tmp_path / "out" / name), img[:, ::-1])


@dataclass(frozen=True)
class _TableSink:
    """A picklable sink of (name, array) results, which go to the workers pickled."""

    folder: Path

    def __call__(self, item, result):
        name, arr = result
        np.save(self.folder / f"{name}.npy", arr)


def test_processes_pass_any_picklable_result(tmp_path, rng):
    _make_folder(tmp_path / "in", rng, n=4)
    items, _ = expand_inputs([tmp_path / "in"])
    (tmp_path / "out").mkdir()
    report = run_batch(items, lambda s, its: [(it.rel.stem, a.sum(axis=0)) for it, a in zip(its, s)],
                       _TableSink(tmp_path / "out"), batch_size=3, progress=False, io="processes", workers=2)
    assert report.done == 4
    for it in items:
        np.testing.assert_array_equal(np.load(tmp_path / "out" / f"{it.rel.stem}.npy"),
                                      gio.read_image(it.path).sum(axis=0))


def _crash_on_img04(path):
    """A reader whose process dies on one file, as a decoder crash would."""
    if Path(path).name == "img04.png":
        os._exit(3)
    return gio.read_image(path)


def test_processes_survive_a_dying_reader_and_report_write_errors(tmp_path, rng):
    imgs = _make_folder(tmp_path / "in", rng, n=8)
    items, _ = expand_inputs([tmp_path / "in"])
    out = tmp_path / "out"
    report = run_batch(items, lambda s, its: list(s[:, ::-1]), ImageWriter(out), batch_size=3, progress=False,
                       read=_crash_on_img04, io="processes", workers=2)
    failed = [(f.stage, Path(f.path).name) for f in report.failures]
    assert ("read", "img04.png") in failed
    # the crash kills every worker of the pool: reads and writes in flight are tried again
    # (and the dead writers' temporary files removed), so only the crashing file fails
    assert failed == [("read", "img04.png")] and report.done == 7
    for name in os.listdir(out):
        np.testing.assert_array_equal(gio.read_image(out / name), imgs[name][::-1])
    # a sink that cannot store a result reports the file, and the run goes on
    bad = run_batch(items[:3], lambda s, its: [np.zeros((2, 2, 2, 2))] * len(its), ImageWriter(tmp_path / "o2"),
                    batch_size=3, progress=False, io="processes", workers=2)
    assert bad.done == 0 and [f.stage for f in bad.failures] == ["write"] * 3


_SLOW_RUN = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import numpy as np
    from gpuimg import io as gio
    from gpuimg.batch import ImageWriter, expand_inputs, run_batch

    src, out, io = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    def compute(stack, its):
        time.sleep(0.15)
        return list(stack[:, ::-1])
    items, _ = expand_inputs([src])
    print("ready", flush=True)
    try:
        run_batch(items, compute, ImageWriter(out), batch_size=1, progress=False, io=io, workers=2)
    except KeyboardInterrupt:
        sys.exit(130)
    """
)


@pytest.mark.parametrize("io", ["threads", "processes"])
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_interrupt_leaves_no_partial_file(tmp_path, rng, sig, io):
    # large 16-bit TIFFs so a kill is likely to land during a write
    imgs = {}
    (tmp_path / "in").mkdir()
    for i in range(40):
        img = (rng.random((256, 256, 3)) * 65535).astype(np.uint16)
        gio.write_image(tmp_path / "in" / f"f{i:02d}.tif", img)
        imgs[f"f{i:02d}.tif"] = img
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_RUN, str(tmp_path / "in"), str(out), io],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    deadline = time.time() + 30
    while time.time() < deadline and not (out.exists() and len(os.listdir(out)) >= 3):
        time.sleep(0.01)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    names = os.listdir(out)
    assert 3 <= len(names) < 40
    assert all(not n.startswith(".") for n in names), names
    for n in names:
        np.testing.assert_array_equal(gio.read_image(out / n), imgs[n][::-1])


def test_usable_cpus_follows_the_container_quota(tmp_path):
    from gpuimg.cli import usable_cpus

    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 2)
    assert usable_cpus(tmp_path) == n  # no cgroup files
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert usable_cpus(tmp_path) == n
    (tmp_path / "cpu.max").write_text("50000 100000\n")  # half a CPU: still one worker
    assert usable_cpus(tmp_path) == 1
    (tmp_path / "cpu.max").write_text(f"{100000 * n + 1} 100000\n")  # more than the affinity allows
    assert usable_cpus(tmp_path) == n
    (tmp_path / "cpu.max").unlink()
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert usable_cpus(tmp_path) == n
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("100000\n")
    assert usable_cpus(tmp_path) == 1


def test_command_falls_back_to_threads_without_semaphores(tmp_path, rng, monkeypatch, capsys, fresh_pools):
    # no /dev/shm: the workers' lock cannot be made, so the command uses I/O threads and says so
    from conftest import NoSemaphores

    from gpuimg import cli

    imgs = _make_folder(tmp_path / "in", rng, n=3)
    real = gb._mp_context
    monkeypatch.setattr(gb, "_mp_context", lambda: NoSemaphores(real()))
    assert cli.main(["resize", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--scale", "0.5", "-q"]) == 0
    assert "using I/O threads" in capsys.readouterr().err
    import cv2

    for name, img in imgs.items():
        ref = cv2.resize(img, (img.shape[1] // 2, img.shape[0] // 2), interpolation=cv2.INTER_AREA)
        got = gio.read_image(tmp_path / "out" / name)
        assert got.dtype == img.dtype and np.abs(got.astype(int) - ref).max() <= 1
