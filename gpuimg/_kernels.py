"""CUDA kernel loader: finds ``kernels/*.cu``, compiles each specialisation once per device.

A :class:`KernelFamily` is one ``.cu`` file plus the finite list of template
specialisations gpuimg may request from it (``"window_moments<float, 0>"``). Declaring the
list up front lets CI compile every specialisation with NVRTC on a machine without a GPU
(:func:`compile_all`), and :meth:`KernelFamily.get` refuses a specialisation nobody declared,
so the library cannot ask for code that CI never compiled.

Sizes, window widths and fill values are kernel *arguments*, never template parameters or
macros: a new image size never recompiles. Local ``#include "x.cuh"`` lines are inlined by
the loader so that CuPy's on-disk cache keys on the complete source.
"""

from __future__ import annotations

import re
import threading
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, NamedTuple, Sequence

from gpuimg import _backend

__all__ = ["KernelFamily", "KernelResources", "compile_all", "families", "kernel_dir", "launch_1d", "launch_rows",
           "resource_usage", "source"]

DEFAULT_OPTIONS: tuple[str, ...] = ("-std=c++17",)
# what CuPy's RawModule adds to every NVRTC compile; compile_all adds them too, so the CI check
# builds exactly what runs (NVRTC 13.0 refuses a generic lambda in a kernel without the first)
CUPY_NVRTC_OPTIONS: tuple[str, ...] = ("--device-as-default-execution-space", "-ftz=true")
_INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"\s*$', re.MULTILINE)

_FAMILIES: list["KernelFamily"] = []
_cache: dict[tuple[int, str, str, tuple[str, ...]], Any] = {}
_lock = threading.Lock()


def kernel_dir() -> Path:
    """Folder holding the CUDA sources (inside the wheel, or the checkout's ``kernels/``)."""
    try:
        packaged = Path(str(resources.files("gpuimg") / "kernels"))
        if packaged.is_dir() and any(packaged.glob("*.cu")):
            return packaged
    except Exception:  # pragma: no cover - exotic importers
        pass
    checkout = Path(__file__).resolve().parent.parent / "kernels"
    if checkout.is_dir():
        return checkout
    raise FileNotFoundError("gpuimg's CUDA sources (kernels/*.cu) were not found")


def source(filename: str, _seen: frozenset[str] = frozenset()) -> str:
    """Text of ``kernels/<filename>`` with local includes inlined (each header once)."""
    path = kernel_dir() / filename
    text = path.read_text()
    seen = set(_seen) | {filename}

    def inline(m: re.Match[str]) -> str:
        inc = m.group(1)
        if inc in seen:
            return f"// {inc} already included"
        seen.add(inc)
        return f"// ---- {inc} ----\n{source(inc, frozenset(seen))}\n// ---- end {inc} ----"

    return _INCLUDE.sub(inline, text)


class KernelFamily:
    """A ``.cu`` source and the specialisations (C++ name expressions) drawn from it.

    Parameters
    ----------
    filename : str
        File name inside ``kernels/``.
    specialisations : iterable of str
        Every name expression the library may request, e.g. ``"resize_area<float>"``.
    options : sequence of str
        Extra NVRTC options.
    """

    def __init__(self, filename: str, specialisations: Iterable[str], options: Sequence[str] = ()) -> None:
        self.filename = filename
        self.specialisations: tuple[str, ...] = tuple(dict.fromkeys(specialisations))
        self._declared = frozenset(self.specialisations)
        self.options = DEFAULT_OPTIONS + tuple(options)
        if not self.specialisations:
            raise ValueError(f"kernel family {filename!r} declares no specialisations")
        _FAMILIES.append(self)

    def __repr__(self) -> str:
        return f"KernelFamily({self.filename!r}, {len(self.specialisations)} specialisations)"

    def get(self, name_expression: str) -> Any:
        """The compiled kernel for ``name_expression`` on the current device (memoised)."""
        if name_expression not in self._declared:
            raise KeyError(
                f"{name_expression!r} is not a declared specialisation of {self.filename}; "
                f"declared: {self.specialisations}"
            )
        cupy = _backend.cupy_module()
        if cupy is None:
            raise RuntimeError("CUDA kernels need a usable CuPy device")
        dev = cupy.cuda.runtime.getDevice()
        key = (dev, self.filename, name_expression, self.options)
        fn = _cache.get(key)
        if fn is None:
            with _lock:
                fn = _cache.get(key)
                if fn is None:
                    module = cupy.RawModule(
                        code=source(self.filename),
                        options=self.options,
                        name_expressions=[name_expression],
                    )
                    fn = module.get_function(name_expression)
                    _cache[key] = fn
        return fn


def families() -> list[KernelFamily]:
    """Every kernel family the library declares (imports all primitive modules first)."""
    _backend._load_primitive_modules()
    return list(_FAMILIES)


def compile_all(arch: str = "compute_80", families_: Iterable[KernelFamily] | None = None) -> list[tuple[str, str, int]]:
    """Compile every declared specialisation to PTX with NVRTC; no GPU is needed.

    Returns ``(filename, name_expression, ptx_bytes)`` per specialisation and raises
    ``RuntimeError`` with NVRTC's log on the first failure.
    """
    from cupy_backends.cuda.libs import nvrtc  # noqa: PLC0415  (loader may touch CUDA libs)

    out = []
    for fam in families_ if families_ is not None else families():
        # one NVRTC program per family: every declared name expression instantiated at once
        prog = nvrtc.createProgram(source(fam.filename), fam.filename, [], [])
        try:
            for ne in fam.specialisations:
                nvrtc.addNameExpression(prog, ne)
            try:
                nvrtc.compileProgram(prog, [f"-arch={arch}", *fam.options, *CUPY_NVRTC_OPTIONS])
            except Exception as exc:
                log = nvrtc.getProgramLog(prog)
                raise RuntimeError(f"NVRTC failed on {fam.filename}: {exc}\n{log}") from exc
            ptx = len(nvrtc.getPTX(prog))
            for ne in fam.specialisations:
                nvrtc.getLoweredName(prog, ne)
                out.append((fam.filename, ne, ptx))
        finally:
            nvrtc.destroyProgram(prog)
    return out


class KernelResources(NamedTuple):
    """What ``ptxas`` reports for one kernel: registers per thread and bytes of local memory."""

    registers: int
    stack_frame: int
    spill_stores: int
    spill_loads: int

    def blocks_per_sm(self, threads: int = 256, register_file: int = 65536, max_threads: int = 2048) -> int:
        """Resident blocks of ``threads`` that the register file and the SM's thread slots
        allow (64 K 32-bit registers and 2048 threads per SM on sm_80 and sm_90; registers
        are allocated per warp in units of 256)."""
        per_warp = -(-self.registers * 32 // 256) * 256
        warps = -(-threads // 32)
        by_threads = max_threads // threads
        return min(register_file // (per_warp * warps), by_threads) if per_warp else by_threads


_PTXAS_ENTRY = re.compile(r"Compiling entry function '([^']+)'")
_PTXAS_FRAME = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_PTXAS_REGS = re.compile(r"Used (\d+) registers")


def resource_usage(filename: str, specialisations: Sequence[str], arch: str = "sm_90") -> dict[str, KernelResources]:
    """Compile ``specialisations`` of a kernel family to a cubin for ``arch`` with NVRTC and
    return ``ptxas``'s verbose report for each (no GPU is needed).

    Registers per thread bound the blocks an SM holds; spill stores and loads are local
    memory traffic the register allocator added.
    """
    from cupy_backends.cuda.libs import nvrtc  # noqa: PLC0415  (loader may touch CUDA libs)

    fam = next(f for f in families() if f.filename == filename)
    prog = nvrtc.createProgram(source(filename), filename, [], [])
    try:
        for ne in specialisations:
            nvrtc.addNameExpression(prog, ne)
        try:
            nvrtc.compileProgram(prog, [f"-arch={arch}", "--ptxas-options=-v", *fam.options, *CUPY_NVRTC_OPTIONS])
        except Exception as exc:
            raise RuntimeError(f"NVRTC failed on {filename}: {exc}\n{nvrtc.getProgramLog(prog)}") from exc
        lowered = {nvrtc.getLoweredName(prog, ne): ne for ne in specialisations}
        log = nvrtc.getProgramLog(prog)
    finally:
        nvrtc.destroyProgram(prog)
    out: dict[str, KernelResources] = {}
    name, frame = None, (0, 0, 0)
    for line in log.splitlines():
        if m := _PTXAS_ENTRY.search(line):
            name, frame = lowered.get(m.group(1)), (0, 0, 0)
        elif m := _PTXAS_FRAME.search(line):
            frame = tuple(int(v) for v in m.groups())
        elif (m := _PTXAS_REGS.search(line)) and name is not None:
            out[name] = KernelResources(int(m.group(1)), *frame)
            name = None
    missing = set(specialisations) - set(out)
    if missing:
        raise RuntimeError(f"ptxas reported no resources for {sorted(missing)}:\n{log}")
    return out


def launch_1d(kernel: Any, n: int, args: tuple[Any, ...], *, block: int = 256, shared_mem: int = 0) -> None:
    """Launch ``kernel`` over ``n`` work items with a grid-stride friendly 1-D grid."""
    if n <= 0:
        return
    grid = min((n + block - 1) // block, 65535 * 16)
    kernel((grid,), (block,), args, shared_mem=shared_mem)


def launch_rows(kernel: Any, planes: int, rows: int, cols: int, args: tuple[Any, ...], *,
                shared_mem: int = 0, cols_per_thread: int = 1) -> None:
    """Launch a row-wise kernel: x over ``cols`` (``cols_per_thread`` columns a thread, a block
    stride apart), y over ``rows`` and z over ``planes``, each capped at the grid's limits (the
    kernel loops with grid strides).

    Such kernels index rows and planes from ``blockIdx`` and never divide a flat index. Several
    columns a thread spread the per-row set-up (row pointers, loop bounds) of a light kernel.
    """
    if planes <= 0 or rows <= 0 or cols <= 0:
        return
    block = min(256, -(-cols // 32) * 32)
    grid = (min(-(-cols // (block * cols_per_thread)), 1 << 20), min(rows, 65535), min(planes, 65535))
    kernel(grid, (block,), args, shared_mem=shared_mem)


def type_name(dtype: Any) -> str:
    """C type for a NumPy dtype: ``float`` or ``double`` (the compiled float types)."""
    import numpy as np

    dt = np.dtype(dtype)
    if dt == np.float32:
        return "float"
    if dt == np.float64:
        return "double"
    raise TypeError(f"kernels are compiled for float32 and float64, not {dt}")
