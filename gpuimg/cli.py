"""The ``gpuimg`` command (argparse subcommands)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

import gpuimg


def _cmd_info(args: argparse.Namespace) -> int:
    info = gpuimg.backend_info()
    info["version"] = gpuimg.__version__
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"gpuimg {info['version']}")
    print(f"backend      : {info['name']}")
    print(f"numpy        : {info['numpy']}")
    print(f"cupy         : {info['cupy'] or 'not installed'}")
    if info["cupy_usable"]:
        mem = info["memory_bytes"] / 2**30
        print(f"device       : {info['device']} ({mem:.1f} GiB, compute capability {info['compute_capability']})")
    else:
        print(f"cupy unusable: {info['reason']}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gpuimg",
        description="Restore, compare and resample images on NumPy or CuPy.",
    )
    parser.add_argument("--version", action="version", version=f"gpuimg {gpuimg.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser(
        "info",
        help="version, chosen backend and GPU status",
        description="Print the version, the backend gpuimg chooses and why CuPy is or is not usable.",
        epilog="example: gpuimg info --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--json", action="store_true", help="print a JSON object")
    p.set_defaults(func=_cmd_info)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
