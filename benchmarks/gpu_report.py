"""Write ``benchmarks/results/gpu-<date>.json`` from a GPU run's test and benchmark output.

Usage (from the repository root, normally through ``benchmarks/gpu_check.sh``)::

    python benchmarks/gpu_report.py --junit junit.xml --bench bench.json \
        --commit <sha> --out benchmarks/results/gpu-YYYY-MM-DD.json

The report holds the device name, the commit, ``kernels_sha256`` (the same digest as the
``kernels-digest`` tool: sha256 over the sorted ``sha256sum`` lines of ``kernels/``), the test
counts, every benchmark's median time and every peer ratio, and the host's speed (CPU model, a
Python loop, CuPy's cost per launch), since the launch-bound cases follow it.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def kernels_sha256(folder: Path) -> str:
    """sha256 of ``sha256sum`` lines (``<hex>  ./<path>``) over files sorted bytewise by path."""
    lines = []
    files = sorted((p for p in folder.rglob("*") if p.is_file() and p.suffix != ".pyc"),
                   key=lambda p: ("./" + p.relative_to(folder).as_posix()).encode())
    for p in files:
        digest = hashlib.sha256(p.read_bytes()).hexdigest()
        lines.append(f"{digest}  ./{p.relative_to(folder).as_posix()}\n")
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def junit_counts(path: Path) -> dict:
    if not path.exists():
        return {"error": f"{path} not found"}
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    out = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    failed = []
    for s in suites:
        for k in out:
            out[k] += int(s.get(k, 0))
        for case in s.iter("testcase"):
            if case.find("failure") is not None or case.find("error") is not None:
                failed.append(f"{case.get('classname')}::{case.get('name')}")
    out["passed"] = out["tests"] - out["failures"] - out["errors"] - out["skipped"]
    out["failed_tests"] = failed
    return out


def host_speed() -> dict:
    """How fast this host drives the device: its CPU model, a pure-Python loop, and CuPy's cost
    per launch (a tiny elementwise kernel, host time and time to completion). The small-image
    and many-iteration GPU cases are launch-bound, so their ratios follow these numbers."""
    import time

    out: dict = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                out["cpu_model"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        acc = 0
        for i in range(200_000):
            acc += i
        best = min(best, time.perf_counter() - t)
    out["python_loop_ns_per_iter"] = round(best / 200_000 * 1e9, 2)
    try:
        import cupy

        x = cupy.zeros(256, dtype=cupy.float32)
        for _ in range(100):
            x * 2
        cupy.cuda.Device().synchronize()
        t = time.perf_counter()
        for _ in range(2000):
            x * 2
        host = time.perf_counter() - t
        cupy.cuda.Device().synchronize()
        done = time.perf_counter() - t
        out["cupy_launch_host_us"] = round(host / 2000 * 1e6, 2)
        out["cupy_launch_done_us"] = round(done / 2000 * 1e6, 2)
    except Exception as exc:  # no usable CuPy (a dry run): the CPU figures still tell the host
        out["cupy_launch"] = f"not measured: {type(exc).__name__}"
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--junit", type=Path, required=True)
    ap.add_argument("--bench", type=Path, required=True)
    ap.add_argument("--commit", required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)

    sys.path.insert(0, str(ROOT))
    import gpuimg

    info = gpuimg.backend_info()
    text = args.bench.read_text() if args.bench.exists() else ""
    bench = json.loads(text) if text.strip() else {}
    report = {
        "date": _dt.date.today().isoformat(),
        "device": info["device"],
        "device_memory_bytes": info["memory_bytes"],
        "compute_capability": info["compute_capability"],
        "cupy": info["cupy"],
        "commit": args.commit,
        "kernels_sha256": kernels_sha256(ROOT / "kernels"),
        "tests": junit_counts(args.junit),
        "ratios": bench.get("gpuimg_ratios", []),
        "benchmarks": [
            {"name": b["fullname"], "group": b.get("group"), "median_s": b["stats"]["median"],
             **b.get("extra_info", {})}
            for b in bench.get("benchmarks", [])
        ],
        "versions": bench.get("machine_info", {}).get("gpuimg_versions", {}),
        "host": host_speed(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}: {report['tests']} ; {len(report['ratios'])} ratios")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
