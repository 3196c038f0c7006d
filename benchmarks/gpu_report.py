"""Write ``benchmarks/results/gpu-<date>.json`` from a GPU run's test and benchmark output.

Usage (from the repository root, normally through ``benchmarks/gpu_check.sh``)::

    python benchmarks/gpu_report.py --junit junit.xml --bench bench.json \
        --commit <sha> --out benchmarks/results/gpu-YYYY-MM-DD.json

The report holds the device name, the commit, ``kernels_sha256`` (the same digest as the
``kernels-digest`` tool: sha256 over the sorted ``sha256sum`` lines of ``kernels/``), the test
counts, every benchmark's median time and every peer ratio.
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
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}: {report['tests']} ; {len(report['ratios'])} ratios")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
