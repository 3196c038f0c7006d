"""The ``gpuimg`` command (argparse subcommands).

Every batch subcommand takes files, folders (searched recursively) and glob patterns, keeps the
bit depth of each file, stacks same-shaped images into one device call, overlaps reading and
writing with computation, shows a progress bar with images/s, skips existing outputs with
``--resume``, never leaves a partial output file, reports every file that failed with its reason
and exits with status 1 when any did (130 when interrupted).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

import gpuimg
from gpuimg import demo
from gpuimg._boundary import MODE_CODES

_EXAMPLE_FORMAT = argparse.RawDescriptionHelpFormatter


def usable_cpus(cgroup: Path = Path("/sys/fs/cgroup")) -> int:
    """CPUs this process may use: its affinity mask, lowered to a container's CPU quota
    (cgroup v2 ``cpu.max``, or v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``), rounded up."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 2)
    for quota_file, period_file in (("cpu.max", None), ("cpu/cpu.cfs_quota_us", "cpu/cpu.cfs_period_us")):
        try:
            fields = (cgroup / quota_file).read_text().split()
            if period_file is not None:
                fields.append((cgroup / period_file).read_text().strip())
            quota, period = fields[0], float(fields[1])
        except (OSError, IndexError, ValueError):
            continue
        if quota not in ("max", "-1") and period > 0:
            return max(1, min(n, math.ceil(float(quota) / period)))
        return n
    return n


_CPUS = usable_cpus()
# I/O threads: decoding and encoding release the GIL, so threads scale with cores, but each
# one also takes the GIL from the device thread; more than 8 rarely helps
_DEFAULT_WORKERS = max(2, min(8, _CPUS))
# I/O processes share no GIL with the device thread: all cores but the one feeding the device
# (a 512^2 PNG takes ~4 ms to decode and ~6 ms to encode, so 8 per device batch of a few
# milliseconds need more than 8 workers to keep up)
_DEFAULT_PROCESS_WORKERS = max(2, min(32, _CPUS - 1))
_DEFAULT_IO = "processes"


# --------------------------------------------------------------------------------------
# Shared plumbing
# --------------------------------------------------------------------------------------

class CommandError(Exception):
    """A user error found before any file is processed (exit status 2)."""


def _floats(text: str, name: str, count: Sequence[int] | None = None) -> list[float]:
    try:
        vals = [float(v) for v in text.replace(";", ",").replace(" ", ",").split(",") if v]
    except ValueError:
        raise CommandError(f"{name} must be comma-separated numbers, got {text!r}") from None
    if count is not None and len(vals) not in count:
        raise CommandError(f"{name} needs {' or '.join(map(str, count))} numbers, got {len(vals)}: {text!r}")
    return vals


def _size(text: str) -> tuple[int, int]:
    """``HxW`` (rows x columns)."""
    parts = text.lower().replace("*", "x").split("x")
    try:
        h, w = (int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--size must look like 480x640 (rows x columns), got {text!r}") from None
    if h < 1 or w < 1:
        raise argparse.ArgumentTypeError(f"--size must be positive, got {text!r}")
    return h, w


def _positive(kind: type, minimum: Any = None) -> Callable[[str], Any]:
    """argparse type: a finite ``kind`` > 0, or >= ``minimum`` when given."""
    def parse(text: str) -> Any:
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {kind.__name__}, got {text!r}") from None
        if not (v > 0) or (isinstance(v, float) and not math.isfinite(v)):
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}")
        if minimum is not None and v < minimum:
            raise argparse.ArgumentTypeError(f"expected a {kind.__name__} >= {minimum}, got {text!r}")
        return v

    return parse


def _add_common(p: argparse.ArgumentParser, *, batch: bool = True,
                resume_help: str = "skip inputs whose output file exists") -> None:
    p.add_argument("--backend", choices=("numpy", "cupy"), default=None,
                   help="array library (default: CuPy when a GPU is usable, else NumPy)")
    if batch:
        p.add_argument("--batch-size", type=_positive(int), default=8, metavar="N",
                       help="same-shaped images stacked into one device call (default 8)")
        p.add_argument("--workers", type=_positive(int), default=None, metavar="N",
                       help="threads or processes reading and writing files (default: with --io processes "
                            f"{_DEFAULT_PROCESS_WORKERS}, the CPU count less one, 2 to 32; with threads "
                            f"{_DEFAULT_WORKERS}, the CPU count, 2 to 8)")
        p.add_argument("--resume", action="store_true", help=resume_help)
        p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def _add_inputs(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="image files (.png .tif .tiff .npy .jpg .bmp), folders (recursive) or glob patterns")
    p.add_argument("-o", "--out", required=True, type=Path, metavar="DIR",
                   help="output folder (the input tree is mirrored, names and formats kept)")
    p.add_argument("--io", choices=("threads", "processes"), default=_DEFAULT_IO,
                   help="read and write files in worker processes (default), which leave the GIL to the "
                        "thread feeding the device and pass pixels through shared memory, or on threads "
                        "of this process")


def _sub(sub: Any, name: str, help: str, description: str, example: str) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=help, description=description,
                          epilog=f"example:\n  {example}", formatter_class=_EXAMPLE_FORMAT)


def _resolve_backend(args: argparse.Namespace) -> Any:
    if args.backend is None:
        return gpuimg.get_backend(backend="cupy" if gpuimg.gpu_available() else "numpy")
    try:
        return gpuimg.get_backend(backend=args.backend)
    except RuntimeError as exc:  # CuPy asked for but unusable
        raise CommandError(f"--backend {args.backend}: {exc}") from None


def _io_workers(args: argparse.Namespace) -> int:
    return args.workers or (_DEFAULT_PROCESS_WORKERS if args.io == "processes" else _DEFAULT_WORKERS)


def _run_images(args: argparse.Namespace, fn: Callable[[Any, Any, np.dtype], Any], desc: str) -> int:
    """Apply ``fn(be, x, dtype)`` to every input image and write the result in ``dtype``.

    ``x`` is a float ``(N, H, W)`` or ``(N, C, H, W)`` stack on the backend (integers scaled to
    ``[0, 1]``), ``dtype`` the files' dtype; ``fn`` returns a stack of the same layout (the
    spatial size may change).
    """
    from gpuimg import io as gio
    from gpuimg.batch import ImageWriter, expand_inputs, run_batch

    be = _resolve_backend(args)
    try:
        items, missing = expand_inputs(args.inputs)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    out_dir: Path = args.out
    items = _without_own_outputs(items, out_dir, args.inputs)

    def output_for(it: Any) -> Path:
        return out_dir / it.rel

    for it in items:
        if output_for(it).resolve() == it.path.resolve():
            raise CommandError(f"output {str(output_for(it))!r} would overwrite its input; choose another --out")

    def compute(stack: np.ndarray, _items: list) -> list[np.ndarray]:
        x = gio.to_float(be.asarray(stack))
        colour = stack.ndim == 4
        if colour:
            x = be.xp.moveaxis(x, -1, 1)
        y = fn(be, x, stack.dtype)
        if colour:
            y = be.xp.moveaxis(y, 1, -1)
        y = be.to_numpy(gio.from_float(y, stack.dtype))
        return list(y)

    report = run_batch(items, compute, ImageWriter(out_dir), output_for=output_for, resume=args.resume,
                       batch_size=args.batch_size, workers=_io_workers(args),
                       progress=not args.quiet, desc=desc, failures=missing, io=args.io)
    print(report.summary(), file=sys.stderr)
    return report.exit_code


# --------------------------------------------------------------------------------------
# info
# --------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------
# demo
# --------------------------------------------------------------------------------------

def _cmd_demo(args: argparse.Namespace) -> int:
    demo.run(args.out, backend=_resolve_backend(args).name, size=args.size, verbose=True)
    return 0


# --------------------------------------------------------------------------------------
# deblur
# --------------------------------------------------------------------------------------

#: largest side of a ``--psf-gaussian`` / ``--psf-disk`` PSF, checked before it is built
MAX_PSF_SIDE = 8193
DEBLUR_METHODS = ("fista_tv", "admm_tv", "richardson_lucy", "wiener", "nesterov", "landweber")


def load_psf(args: argparse.Namespace) -> np.ndarray:
    """The PSF named by ``--psf``, ``--psf-led``, ``--psf-gaussian`` or ``--psf-disk``."""
    from gpuimg import io as gio
    from gpuimg import psf

    if args.psf is not None or args.psf_led is not None:
        path = args.psf if args.psf is not None else args.psf_led
        try:
            img = gio.to_float(gio.read_image(path), np.float64)
        except (OSError, ValueError) as exc:
            raise CommandError(f"cannot read the PSF file: {exc}") from None
        if img.ndim == 3:
            img = img[..., :3].mean(axis=-1)
        if args.psf_led is not None:
            return np.asarray(psf.from_image(img))
        total = img.sum()
        if not np.isfinite(total) or total <= 0:
            raise CommandError(f"--psf {str(path)!r} must have a positive sum, got {total}")
        return img / total
    if args.psf_gaussian is not None:
        option, value, n = "--psf-gaussian", args.psf_gaussian, 2 * math.ceil(4 * args.psf_gaussian) + 1
    else:
        option, value, n = "--psf-disk", args.psf_disk, psf.disk_side(args.psf_disk)
    if n > MAX_PSF_SIDE:
        raise CommandError(f"{option} {value:g} makes a {n} x {n} PSF; at most {MAX_PSF_SIDE} x {MAX_PSF_SIDE} "
                           f"is supported (the PSF must also fit inside every image)")
    if args.psf_gaussian is not None:
        return np.asarray(psf.gaussian((n, n), args.psf_gaussian))
    return np.asarray(psf.disk(args.psf_disk))


def deblur_function(args: argparse.Namespace, kernel: np.ndarray) -> Callable[[Any, Any, np.dtype], Any]:
    """``fn(be, x, dtype)`` that restores a float stack with the options of ``gpuimg deblur``."""
    from gpuimg import restoration

    solver = getattr(restoration, args.method)
    opts: dict[str, Any] = {"boundary": args.boundary}
    if args.iters is not None and args.method != "wiener":
        opts["num_iter"] = args.iters
    if args.weight is not None:
        if args.method == "landweber":
            raise CommandError("--weight does not apply to --method landweber (it is unregularised; use --iters)")
        opts["balance" if args.method == "wiener" else
             "tv_weight" if args.method == "richardson_lucy" else "weight"] = args.weight

    def fn(be: Any, x: Any, dtype: np.dtype) -> Any:
        if not bool(be.xp.isfinite(x).all()):  # a failed stack is retried file by file
            raise ValueError("image contains NaN or Inf pixels; deconvolution needs finite values")
        k = be.asarray(kernel, dtype=x.dtype)
        extra = {}
        if dtype.kind == "f" and args.method in ("fista_tv", "admm_tv"):
            extra["bounds"] = None  # float files are not confined to [0, 1]
        if args.method in ("fista_tv", "admm_tv") and "weight" not in opts and x.shape[0] > 1:
            # the solvers' default weight is one per call (the stack's mean): each file gets
            # its own, so an output does not depend on which files share its batch
            out = [solver(x[i:i + 1], k, **opts, **extra) for i in range(x.shape[0])]
            return be.xp.concatenate(out)
        return solver(x, k, **opts, **extra)

    return fn


def _cmd_deblur(args: argparse.Namespace) -> int:
    kernel = load_psf(args)
    return _run_images(args, deblur_function(args, kernel), "deblur")


# --------------------------------------------------------------------------------------
# compare
# --------------------------------------------------------------------------------------

COMPARE_METRICS = ("psnr", "ssim", "ms_ssim", "mse", "mae", "snr")
COMPARE_MAPS = {"ssim": "local_ssim", "mse": "local_mse", "ncc": "local_ncc"}


def compare_pair(be: Any, ref: Any, test: Any, metrics: Sequence[str], data_range: float) -> dict[str, float]:
    """Metric values of one test image against the reference (both float, same shape)."""
    from gpuimg import metrics as m

    colour = ref.ndim == 3
    out: dict[str, float] = {}
    for name in metrics:
        if name in ("psnr",):
            v = m.psnr(ref, test, data_range=data_range)
        elif name == "ssim":
            v = m.ssim(ref, test, data_range=data_range, channel_axis=-1 if colour else None)
        elif name == "ms_ssim":
            if colour:
                v = sum(m.ms_ssim(ref[..., c], test[..., c], data_range=data_range) for c in range(ref.shape[-1])) / ref.shape[-1]
            else:
                v = m.ms_ssim(ref, test, data_range=data_range)
        else:
            v = getattr(m, name)(ref, test)
        out[name] = float(be.to_numpy(v))
    return out


def _format_rows(rows: list[dict[str, Any]], columns: Sequence[str], fmt: str) -> str:
    if fmt == "json":
        # strict JSON has no infinities (PSNR of identical images): "inf" strings, NaN null
        def safe(v: Any) -> Any:
            if isinstance(v, float) and not math.isfinite(v):
                return None if math.isnan(v) else ("inf" if v > 0 else "-inf")
            return v

        return json.dumps([{k: safe(v) for k, v in row.items()} for row in rows], indent=2, allow_nan=False)
    if fmt == "csv":
        import csv
        import io as pyio

        buf = pyio.StringIO()
        w = csv.DictWriter(buf, fieldnames=["file", *columns], extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        return buf.getvalue().rstrip("\n")
    width = max([4] + [len(r["file"]) for r in rows])
    lines = [f"{'file':<{width}}  " + "  ".join(f"{c:>10}" for c in columns)]
    for r in rows:
        vals = []
        for c in columns:
            v = r.get(c)
            vals.append(f"{'-':>10}" if v is None else f"{v:>10.4f}" if isinstance(v, float) else f"{str(v):>10}")
        lines.append(f"{r['file']:<{width}}  " + "  ".join(vals))
    return "\n".join(lines)


def _cmd_compare(args: argparse.Namespace) -> int:
    from gpuimg import io as gio
    from gpuimg import metrics as m
    from gpuimg.batch import expand_inputs, run_batch

    metrics = [s.strip() for s in args.metrics.split(",") if s.strip()]
    for name in metrics:
        if name not in COMPARE_METRICS:
            raise CommandError(f"--metrics must name some of {COMPARE_METRICS}, got {name!r}")
    if args.map is not None and args.out is None:
        raise CommandError("--map needs --out DIR for the map images")
    be = _resolve_backend(args)
    try:
        ref_raw = gio.read_image(args.reference)
    except (OSError, ValueError) as exc:
        raise CommandError(f"cannot read the reference: {exc}") from None
    ref = gio.to_float(be.asarray(ref_raw))
    if args.data_range is not None:
        rng = args.data_range
    elif ref_raw.dtype.kind in "iub":
        rng = 1.0
    else:
        rng = float(be.to_numpy(ref.max() - ref.min())) or 1.0
    def map_name(rel: Path) -> Path:
        return rel.with_name(f"{rel.stem}_{args.map}.tif")

    def map_path(it: Any) -> Path:
        return args.out / map_name(it.rel)

    try:
        items, missing = expand_inputs(args.tests, output_of=map_name, unique_outputs=args.map is not None)
    except ValueError as exc:
        raise CommandError(f"--map: {exc}") from None
    if args.map is not None:
        items = _without_own_outputs(items, args.out, args.tests)
    rows: list[dict[str, Any]] = []

    def compute(stack: np.ndarray, batch_items: list) -> list[Any]:
        if stack.shape[1:] != ref_raw.shape:
            raise ValueError(f"shape {stack.shape[1:]} differs from the reference's {ref_raw.shape}")
        results = []
        tests = gio.to_float(be.asarray(stack))
        for i, it in enumerate(batch_items):
            test = tests[i].astype(ref.dtype, copy=False)
            row = {"file": str(it.path), **compare_pair(be, ref, test, metrics, rng)}
            local = None
            # --resume keeps existing maps but still measures the file: the table is whole
            if args.map is not None and not (args.resume and map_path(it).exists()):
                fn = getattr(m, COMPARE_MAPS[args.map])
                if ref.ndim == 3:
                    local = be.xp.stack([fn(ref[..., c], test[..., c], **_map_kwargs(args.map, rng))
                                         for c in range(ref.shape[-1])], axis=-1)
                else:
                    local = fn(ref, test, **_map_kwargs(args.map, rng))
                local = be.to_numpy(local).astype(np.float32)
            results.append((row, local))
        return results

    def sink(it: Any, result: Any) -> None:
        row, local = result
        if local is not None:
            gio.write_image(map_path(it), local)
        rows.append(row)

    report = run_batch(items, compute, sink, output_for=None, resume=False, batch_size=args.batch_size,
                       workers=args.workers or _DEFAULT_WORKERS, progress=not args.quiet, desc="compare",
                       failures=missing)
    rows.sort(key=lambda r: r["file"])
    print(_format_rows(rows, metrics, args.format))
    print(report.summary(), file=sys.stderr)
    return report.exit_code


def _map_kwargs(kind: str, data_range: float) -> dict[str, Any]:
    return {"data_range": data_range} if kind == "ssim" else {}


# --------------------------------------------------------------------------------------
# resize, warp, undistort, register
# --------------------------------------------------------------------------------------

def _cmd_resize(args: argparse.Namespace) -> int:
    from gpuimg import transform

    if (args.size is None) == (args.scale is None):
        raise CommandError("give exactly one of --size HxW and --scale F")

    def fn(be: Any, x: Any, dtype: np.dtype) -> Any:
        h, w = x.shape[-2:]
        shape = args.size or (max(1, round(h * args.scale)), max(1, round(w * args.scale)))
        return transform.resize(x, shape, interpolation=args.interpolation, antialias=not args.no_antialias)

    return _run_images(args, fn, "resize")


def _without_own_outputs(items: list, out_dir: Path, inputs: Sequence[str]) -> list:
    """Earlier results in an output folder inside an input folder (or matched by a glob)
    must not feed back in; inputs named inside the output folder (a file, or a folder in or
    equal to it) are the user's choice and stay."""
    out_abs = Path(out_dir).resolve()
    named = [Path(a).resolve() for a in inputs if Path(a).exists()]
    if any(r == out_abs or out_abs in r.parents for r in named):
        return items
    return [it for it in items if out_abs not in it.path.resolve().parents]


def _load_matrix(args: argparse.Namespace) -> np.ndarray:
    if args.matrix_file is not None:
        path = Path(args.matrix_file)
        try:
            mat = np.load(path) if path.suffix == ".npy" else np.loadtxt(path, delimiter=None, ndmin=2)
        except (OSError, ValueError) as exc:
            raise CommandError(f"cannot read --matrix-file {str(path)!r}: {exc}") from None
    else:
        mat = np.asarray(_floats(args.matrix, "--matrix", (6, 9)))
    mat = np.asarray(mat, dtype=np.float64)
    if mat.size not in (6, 9):
        raise CommandError(f"the warp matrix must have 6 (2x3 affine) or 9 (3x3 perspective) entries, got shape {mat.shape}")
    return mat.reshape(2, 3) if mat.size == 6 else mat.reshape(3, 3)


def _cmd_warp(args: argparse.Namespace) -> int:
    from gpuimg import transform

    if (args.matrix is None and args.matrix_file is None) == (args.map is None):
        raise CommandError("give exactly one of --matrix, --matrix-file and --map")
    opts = {"interpolation": args.interpolation, "mode": args.mode, "cval": args.cval, "antialias": args.antialias}
    if args.map is not None:
        if not Path(args.map).is_file():
            raise CommandError(f"--map {str(args.map)!r} does not exist")
        try:
            with np.load(args.map, allow_pickle=False) as data:
                if "map_x" not in data or "map_y" not in data:
                    raise CommandError(f"--map {str(args.map)!r} must hold arrays map_x and map_y")
                map_x, map_y = data["map_x"], data["map_y"]
        except (OSError, ValueError, AttributeError) as exc:  # not an .npz (AttributeError: a bare .npy)
            raise CommandError(f"--map {str(args.map)!r} is not an .npz with map_x and map_y: {exc}") from None

        def make(be: Any, shape: tuple[int, int], dtype: np.dtype) -> Any:
            return transform.RemapPlan(be.asarray(map_x, dtype=dtype), be.asarray(map_y, dtype=dtype), shape,
                                       dtype=dtype, **opts)
    else:
        mat = _load_matrix(args)

        def make(be: Any, shape: tuple[int, int], dtype: np.dtype) -> Any:
            return transform.RemapPlan.from_matrix(mat, shape, args.size or shape, inverse_map=args.inverse,
                                                   dtype=dtype, backend=be.name, **opts)

    return _run_images(args, _per_size(make), "warp")


def _per_size(make: Callable[[Any, tuple[int, int], np.dtype], Any]) -> Callable[[Any, Any, np.dtype], Any]:
    """``fn(be, x, dtype)`` for :func:`_run_images` that applies the prepared warp
    ``make(be, (h, w), sample dtype)`` (a :class:`gpuimg.transform.RemapPlan`), made once per
    image size and sample dtype: each output pixel's taps are derived once per run, not per
    batch."""
    plans: dict = {}

    def fn(be: Any, x: Any, dtype: np.dtype) -> Any:
        key = (tuple(int(n) for n in x.shape[-2:]), np.dtype(x.dtype))
        if key not in plans:
            plans[key] = make(be, *key)
        return plans[key](x)

    return fn


def _cmd_undistort(args: argparse.Namespace) -> int:
    from gpuimg import registration

    if args.map_series is not None:
        if args.param is None:
            raise CommandError("--map-series needs --param P")
        try:
            series = registration.MapSeries.load(args.map_series)
        except (OSError, ValueError, KeyError) as exc:
            raise CommandError(f"cannot read --map-series {str(args.map_series)!r}: {exc}") from None

        def fn(be: Any, x: Any, dtype: np.dtype) -> Any:
            return series.undistort(x, args.param)
    else:
        if args.camera is None or args.coeffs is None:
            raise CommandError("give --camera fx,fy,cx,cy and --coeffs k1,k2,p1,p2[,k3...], or --map-series FILE --param P")
        fx, fy, cx, cy = _floats(args.camera, "--camera", (4,))
        cam = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
        try:
            dist = registration.Distortion(cam, np.asarray(_floats(args.coeffs, "--coeffs", (4, 5, 8))))
        except ValueError as exc:
            raise CommandError(f"--camera/--coeffs: {exc}") from None

        def make(be: Any, shape: tuple[int, int], dtype: np.dtype) -> Any:
            return dist.undistort_plan(shape, interpolation=args.interpolation, dtype=dtype, backend=be.name)

        fn = _per_size(make)

    return _run_images(args, fn, "undistort")


def _cmd_register(args: argparse.Namespace) -> int:
    from gpuimg import io as gio
    from gpuimg import registration

    be = _resolve_backend(args)
    imgs = []
    for name in (args.fixed, args.moving):
        try:
            img = gio.to_float(gio.read_image(name), np.float32)
        except (OSError, ValueError) as exc:
            raise CommandError(str(exc)) from None
        imgs.append(be.asarray(img[..., :3].mean(axis=-1) if img.ndim == 3 else img))
    fixed, moving = imgs
    if fixed.shape != moving.shape:
        raise CommandError(f"FIXED and MOVING must have the same shape, got {fixed.shape} and {moving.shape}")
    transform = registration.register_bspline(
        fixed, moving, grid_spacing=args.grid_spacing, metric=args.metric, levels=args.levels,
        bending_weight=args.bending_weight, max_iter=args.max_iter,
    )
    out = Path(args.out)
    if out.suffix != ".npz":  # numpy.savez would add it silently
        out = out.with_name(out.name + ".npz")
    out.parent.mkdir(parents=True, exist_ok=True)
    transform.save(out)
    print(f"wrote {out}")
    if args.warped is not None:
        raw = gio.read_image(args.moving)
        x = gio.to_float(be.asarray(raw))
        if raw.ndim == 3:
            x = be.xp.moveaxis(x, -1, 0)  # channels are a batch for the warp
        y = transform.warp(x)
        if raw.ndim == 3:
            y = be.xp.moveaxis(y, 0, -1)
        gio.write_image(args.warped, be.to_numpy(gio.from_float(y, raw.dtype)))
        print(f"wrote {args.warped}")
    return 0


# --------------------------------------------------------------------------------------
# bench
# --------------------------------------------------------------------------------------

def _cmd_bench(args: argparse.Namespace) -> int:
    import subprocess

    root = Path(__file__).resolve().parent.parent / "benchmarks"
    if not root.is_dir():
        raise CommandError(f"the benchmark suites are not installed (looked for {root}); run from a source checkout")
    suites = sorted(str(f) for f in root.glob("bench_*.py"))
    cmd = [sys.executable, "-m", "pytest", *suites, "-q", "-p", "no:cacheprovider"]
    if args.quick:
        cmd += ["-m", "not slow", "--benchmark-min-rounds=1", "--benchmark-max-time=0.05",
                "--benchmark-warmup=off"]
    if args.suite:
        cmd += ["-k", args.suite]
    if args.json is not None:
        cmd += [f"--benchmark-json={args.json}"]
    print("running: pytest", " ".join(cmd[3 + len(suites):]), "on", len(suites), "suites in", root, file=sys.stderr)
    # a parent pytest-xdist worker's variables would make pytest-benchmark disable itself
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST")}
    if args.quick:
        env.setdefault("GPUIMG_BENCH_FILES", "24")
    return subprocess.call(cmd, cwd=root.parent, env=env)


# --------------------------------------------------------------------------------------
# parser
# --------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gpuimg",
        description="Restore, compare and resample images on NumPy or CuPy.",
        epilog="start with:  gpuimg demo --out demo-out",
        formatter_class=_EXAMPLE_FORMAT,
    )
    parser.add_argument("--version", action="version", version=f"gpuimg {gpuimg.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = _sub(sub, "info", "version, chosen backend and GPU status",
             "Print the version, the backend gpuimg chooses and why CuPy is or is not usable.",
             "gpuimg info --json")
    p.add_argument("--json", action="store_true", help="print a JSON object")
    p.set_defaults(func=_cmd_info)

    p = _sub(sub, "demo", "deblur a test chart with a PSF measured from an LED photo, end to end",
             "Blur a shipped test chart with a defocus disk and noise, estimate the PSF from a "
             "synthetic photo of an out-of-focus LED, restore with naive FFT division, Wiener, "
             "Richardson-Lucy, Nesterov and FISTA-TV, and write PNGs, a montage with local SSIM "
             "maps and report.md/report.json (PSNR, SSIM, MS-SSIM, time per method).",
             "gpuimg demo --out demo-out")
    p.add_argument("-o", "--out", type=Path, default=Path("demo-out"), metavar="DIR",
                   help="output folder (default demo-out)")
    p.add_argument("--size", type=_positive(int, demo.MIN_SIZE), default=256, metavar="N",
                   help=f"chart size in pixels, >= {demo.MIN_SIZE} (default 256)")
    _add_common(p, batch=False)
    p.set_defaults(func=_cmd_demo)

    p = _sub(sub, "deblur", "restore blurred images with a known or measured PSF",
             "Deconvolve every input with one PSF: a PSF image (--psf), a photo of an "
             "out-of-focus point source (--psf-led, turned into a PSF by gpuimg.psf.from_image), "
             "or an analytic Gaussian or defocus disk.",
             "gpuimg deblur scans/ --out sharp/ --psf-led led.tif --method fista_tv --iters 100")
    _add_inputs(p)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--psf", type=Path, metavar="FILE", help="PSF image (normalised to sum 1)")
    src.add_argument("--psf-led", type=Path, metavar="FILE", help="photo of an out-of-focus point source")
    src.add_argument("--psf-gaussian", type=_positive(float), metavar="SIGMA", help="Gaussian PSF of this sigma (px)")
    src.add_argument("--psf-disk", type=_positive(float), metavar="RADIUS", help="defocus disk PSF of this radius (px)")
    p.add_argument("--method", choices=DEBLUR_METHODS, default="fista_tv", help="solver (default fista_tv)")
    p.add_argument("--weight", type=_positive(float), default=None, metavar="W",
                   help="regularisation weight (Wiener: balance; RL: TV weight; default: the solver's)")
    p.add_argument("--iters", type=_positive(int), default=None, metavar="N", help="iterations (default: the solver's)")
    p.add_argument("--boundary", choices=("reflect", "periodic", "free"), default="reflect",
                   help="image boundary model (default reflect)")
    _add_common(p)
    p.set_defaults(func=_cmd_deblur)

    p = _sub(sub, "compare", "PSNR, SSIM, MS-SSIM, MSE, MAE, SNR and local maps against a reference",
             "Compare each TEST image with REF. Integer images are compared on [0, 1] (data range "
             "1); float images on the reference's range unless --data-range is given.",
             "gpuimg compare truth.png restored/ --metrics psnr,ssim --map ssim --out maps/ --format csv")
    p.add_argument("reference", metavar="REF", type=Path, help="reference image")
    p.add_argument("tests", nargs="+", metavar="TEST", help="files, folders (recursive) or glob patterns")
    p.add_argument("--metrics", default="psnr,ssim,ms_ssim", help=f"comma-separated, from {','.join(COMPARE_METRICS)}")
    p.add_argument("--map", choices=tuple(COMPARE_MAPS), default=None, help="also write a local map per image (float32 TIFF)")
    p.add_argument("-o", "--out", type=Path, default=None, metavar="DIR", help="folder for the maps")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.add_argument("--data-range", type=_positive(float), default=None, metavar="R")
    _add_common(p, resume_help="keep maps that exist (every file is still measured, so the table is complete)")
    p.set_defaults(func=_cmd_compare)

    p = _sub(sub, "resize", "resize without aliasing (area by default)",
             "Resize every input; 'area' equals OpenCV's INTER_AREA, the Pillow-style filters "
             "widen with the reduction factor.",
             "gpuimg resize photos/ --out small/ --scale 0.25")
    _add_inputs(p)
    p.add_argument("--size", type=_size, default=None, metavar="HxW", help="output rows x columns")
    p.add_argument("--scale", type=_positive(float), default=None, metavar="F", help="scale factor")
    p.add_argument("--interpolation", default="area",
                   choices=("area", "nearest", "linear", "cubic", "lanczos4", "box", "lanczos3"))
    p.add_argument("--no-antialias", action="store_true",
                   help="OpenCV's point-sampled linear/cubic instead of Pillow's widened filters")
    _add_common(p)
    p.set_defaults(func=_cmd_resize)

    p = _sub(sub, "warp", "affine, perspective or remap warp (anti-aliased with --antialias)",
             "Warp every input with a 2x3 affine or 3x3 perspective matrix (OpenCV convention: "
             "source to destination unless --inverse), or with a map file (.npz with map_x, map_y "
             "giving the source column and row of each output pixel).",
             "gpuimg warp frames/ --out warped/ --matrix 0.5,0,10,0,0.5,20 --antialias --interpolation area")
    _add_inputs(p)
    p.add_argument("--matrix", default=None, metavar="A,B,...", help="6 or 9 numbers, row-major")
    p.add_argument("--matrix-file", type=Path, default=None, metavar="FILE", help=".npy or text file with the matrix")
    p.add_argument("--map", type=Path, default=None, metavar="FILE.npz", help="arrays map_x, map_y")
    p.add_argument("--inverse", action="store_true", help="the matrix maps destination to source")
    p.add_argument("--size", type=_size, default=None, metavar="HxW", help="output size (default: the input's)")
    p.add_argument("--interpolation", default="linear", choices=("nearest", "linear", "cubic", "lanczos4", "area"))
    p.add_argument("--mode", default="constant", choices=tuple(MODE_CODES),
                   help="boundary mode, SciPy's names (default constant)")
    p.add_argument("--cval", type=float, default=0.0, help="fill value for mode constant")
    p.add_argument("--antialias", action="store_true", help="integrate each output pixel's footprint")
    _add_common(p)
    p.set_defaults(func=_cmd_warp)

    p = _sub(sub, "undistort", "remove lens distortion or a measured correction map",
             "Undo Brown-Conrady lens distortion (OpenCV convention) given the camera matrix and "
             "coefficients, or apply a MapSeries file interpolated at the parameter --param.",
             "gpuimg undistort shots/ --out flat/ --camera 800,800,320,240 --coeffs=-0.2,0.05,0,0")
    _add_inputs(p)
    p.add_argument("--camera", default=None, metavar="FX,FY,CX,CY")
    p.add_argument("--coeffs", default=None, metavar="K1,K2,P1,P2[,K3...]")
    p.add_argument("--map-series", type=Path, default=None, metavar="FILE.npz", help="saved gpuimg.registration.MapSeries")
    p.add_argument("--param", type=float, default=None, metavar="P", help="parameter value (e.g. pressure)")
    p.add_argument("--interpolation", default="cubic", choices=("nearest", "linear", "cubic"))
    _add_common(p)
    p.set_defaults(func=_cmd_undistort)

    p = _sub(sub, "register", "free-form B-spline registration of MOVING onto FIXED",
             "Estimate a cubic B-spline deformation that maps MOVING onto FIXED and save it "
             "(gpuimg.registration.BSplineTransform.load reads it).",
             "gpuimg register fixed.png moving.png --out transform.npz --warped moved.png")
    p.add_argument("fixed", metavar="FIXED")
    p.add_argument("moving", metavar="MOVING")
    p.add_argument("-o", "--out", required=True, type=Path, metavar="FILE.npz")
    p.add_argument("--warped", type=Path, default=None, metavar="FILE", help="also write MOVING warped onto FIXED")
    p.add_argument("--grid-spacing", type=_positive(int), default=16, metavar="PX")
    p.add_argument("--metric", choices=("ssd", "ncc"), default="ssd")
    p.add_argument("--levels", type=_positive(int), default=3)
    p.add_argument("--bending-weight", type=float, default=0.0)
    p.add_argument("--max-iter", type=_positive(int), default=200)
    _add_common(p, batch=False)
    p.set_defaults(func=_cmd_register)

    p = _sub(sub, "bench", "run the benchmark suites and print speed ratios against the installed peers",
             "Run benchmarks/ (a source checkout) with pytest-benchmark; each suite times gpuimg "
             "and its peers (SciPy, scikit-image, OpenCV, cupyx) in one run and prints peer/gpuimg ratios.",
             "gpuimg bench --quick -k convolve")
    p.add_argument("--quick", action="store_true",
                   help="one round per case, skip slow sweeps, 24 files for the deblur throughput case")
    p.add_argument("-k", dest="suite", default=None, metavar="EXPR", help="pytest -k selection")
    p.add_argument("--json", type=Path, default=None, metavar="FILE", help="write the pytest-benchmark JSON report")
    p.set_defaults(func=_cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    if getattr(args, "io", None) == "processes":
        from gpuimg.batch import process_io_unavailable, start_io_processes

        reason = process_io_unavailable()
        if reason is None:
            # their start-up overlaps the command's own (imports, PSF, CuPy and its CUDA context)
            start_io_processes(_io_workers(args))
        else:
            print(f"gpuimg {args.command}: I/O worker processes cannot run here, {reason}; using I/O threads",
                  file=sys.stderr)
            args.io = "threads"
    try:
        return int(args.func(args) or 0)
    except CommandError as exc:
        print(f"gpuimg {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"gpuimg {args.command}: interrupted; finished outputs are complete, no partial files left",
              file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
