"""Registers and local-memory frame of gpuimg's CUDA kernels, without a GPU.

NVRTC compiles a kernel family to a cubin for a real architecture (default sm_90), and the
cubin's ``.nv.info`` section records each kernel's register count (``EIATTR_REGCOUNT``) and
local frame (``EIATTR_FRAME_SIZE``: spills and local arrays). Registers per thread bound the
blocks an SM holds (65536 registers: 256-thread blocks of 64 registers, four of them) and so
the occupancy; a local frame means loads and stores to local memory.

    python devtools/kernel_resources.py warp_point.cu [SPECIALISATION ...] [--arch sm_90]

With no specialisation, every declared one of the family is listed.
"""
from __future__ import annotations

import struct
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpuimg import _kernels  # noqa: E402

EIATTR_FRAME_SIZE = 0x11
EIATTR_REGCOUNT = 0x2F


def _sections(elf: bytes) -> dict[str, bytes]:
    """Section name -> contents of a little-endian ELF64 image."""
    shoff = struct.unpack_from("<Q", elf, 0x28)[0]
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", elf, 0x3A)
    heads = [struct.unpack_from("<IIQQQQ", elf, shoff + i * shentsize) for i in range(shnum)]
    names = heads[shstrndx][4]
    out = {}
    for name, _typ, _flags, _addr, offset, size in heads:
        end = elf.index(b"\0", names + name)
        out[elf[names + name:end].decode()] = elf[offset:offset + size]
    return out


def _attributes(info: bytes) -> dict[int, list[bytes]]:
    """``.nv.info`` records by attribute: (format, attribute, payload); format 4 carries a
    16-bit size, 3 a 16-bit value, 2 a byte, 1 nothing."""
    out: dict[int, list[bytes]] = {}
    i = 0
    while i + 2 <= len(info):
        fmt, attr = info[i], info[i + 1]
        i += 2
        if fmt == 0x04:
            size = struct.unpack_from("<H", info, i)[0]
            out.setdefault(attr, []).append(info[i + 2:i + 2 + size])
            i += 2 + size
        elif fmt == 0x03:
            i += 2
        elif fmt == 0x02:
            i += 1
    return out


def _symbols(secs: dict[str, bytes]) -> dict[int, str]:
    table, names = secs[".symtab"], secs[".strtab"]
    out = {}
    for k in range(len(table) // 24):
        name = struct.unpack_from("<I", table, k * 24)[0]
        out[k] = names[name:names.index(b"\0", name)].decode()
    return out


def resources(filename: str, specialisations: list[str], arch: str = "sm_90") -> dict[str, tuple[int, int]]:
    """``{specialisation: (registers, local frame bytes)}`` from NVRTC's cubin for ``arch``."""
    from cupy_backends.cuda.libs import nvrtc  # noqa: PLC0415

    fam = next(f for f in _kernels.families() if f.filename == filename)
    prog = nvrtc.createProgram(_kernels.source(filename), filename, [], [])
    try:
        for ne in specialisations:
            nvrtc.addNameExpression(prog, ne)
        nvrtc.compileProgram(prog, [f"-arch={arch}", *fam.options, *_kernels.CUPY_NVRTC_OPTIONS])
        lowered = {nvrtc.getLoweredName(prog, ne): ne for ne in specialisations}
        secs = _sections(bytes(nvrtc.getCUBIN(prog)))
    finally:
        nvrtc.destroyProgram(prog)
    syms = _symbols(secs)
    attrs = _attributes(secs.get(".nv.info", b""))

    def per_kernel(attr: int) -> dict[str, int]:
        return {syms[s]: v for s, v in (struct.unpack("<II", d) for d in attrs.get(attr, []))}

    regs, frame = per_kernel(EIATTR_REGCOUNT), per_kernel(EIATTR_FRAME_SIZE)
    return {ne: (regs.get(low, -1), frame.get(low, 0)) for low, ne in lowered.items()}


def main(argv: list[str]) -> int:
    arch = "sm_90"
    if "--arch" in argv:
        k = argv.index("--arch")
        arch = argv[k + 1]
        argv = argv[:k] + argv[k + 2:]
    if not argv:
        print(__doc__)
        return 2
    filename, names = argv[0], argv[1:]
    if not names:
        names = list(next(f for f in _kernels.families() if f.filename == filename).specialisations)
    for ne, (regs, frame) in resources(filename, names, arch).items():
        blocks = min(8, 65536 // max(1, regs * 256)) if regs > 0 else 0
        print(f"{ne:60s} {regs:4d} registers ({blocks} blocks of 256 per SM)  local frame {frame} B")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
