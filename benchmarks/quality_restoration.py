"""Deconvolution quality: ISNR of gpuimg's solvers and scikit-image's on blurred, noisy scenes.

Three scikit-image scenes (256 x 256, values in [0, 1]) x {Gaussian sigma 3, anti-aliased
disk radius 5, 15 px motion at 30 deg} x noise sigma {1e-3, 1e-2}; blur with the reflect
boundary (``scipy.ndimage.convolve``). ISNR = 10 log10(||x - b||^2 / ||x - x_hat||^2) dB.

    python benchmarks/quality_restoration.py          # prints the Markdown table, checks targets
    python benchmarks/quality_restoration.py --weights  # converged TV at 0.25x..4x the default weight
    python -m pytest benchmarks/quality_restoration.py -q   # the same as a test

Targets: fista_tv (default, noise-derived weight, 200 iterations) beats scikit-image's
Richardson-Lucy (best of 10/30/100 iterations) and the best-balance Wiener filter on every
case, by >= 2 dB on average (checked against gpuimg's reflect-boundary Wiener filter; the
margin over scikit-image's periodic one is printed too); gpuimg's Richardson-Lucy (reflect,
100 iterations) beats scikit-image's at 100 iterations on every case; fista_tv at 200
iterations is within 0.3 dB of its 1000-iteration result; admm_tv (the same objective and
weight, 100 iterations) reaches fista_tv's 1000-iteration objective within 1 %.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import scipy.ndimage as ndi

from gpuimg import psf as P
from gpuimg import restoration as R

SCENES = ("camera", "astronaut", "coins")
NOISE = (1e-3, 1e-2)
WIENER_BALANCES = np.logspace(-6, 0, 13)
NESTEROV_WEIGHTS = (1e-4, 1e-3, 1e-2)
SK_RL_ITERS = (10, 30, 100)
#: seconds per case of the TV solvers (filled by run_case)
TIMES: dict[str, list[float]] = {}
COLUMNS = ("inverse", "wiener*", "sk wiener*", "sk RL*", "sk RL 100", "RL 100", "nesterov*", "fista_tv 200",
           "fista_tv 1000", "admm_tv 100")


def scene(name: str, size: int = 256) -> np.ndarray:
    from skimage import color, data, transform

    img = getattr(data, name)()
    if img.ndim == 3:
        img = color.rgb2gray(img)
    img = img.astype(np.float64)
    if img.max() > 1:
        img = img / 255.0
    h, w = img.shape
    s = min(h, w)
    img = img[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
    return np.clip(transform.resize(img, (size, size), anti_aliasing=True), 0, 1)


def psfs() -> dict[str, np.ndarray]:
    return {"gaussian σ=3": P.gaussian((19, 19), 3.0), "disk r=5": P.disk(5.0), "motion 15 px": P.motion(15, 30.0)}


def run_case(x: np.ndarray, k: np.ndarray, sigma: float, rng: np.random.Generator) -> dict[str, float]:
    from skimage.restoration import richardson_lucy as sk_rl
    from skimage.restoration import wiener as sk_wiener

    b = ndi.convolve(x, k, mode="reflect") + rng.normal(0, sigma, x.shape)

    def isnr(e: np.ndarray) -> float:
        return float(10 * np.log10(np.sum((x - b) ** 2) / np.sum((x - e) ** 2)))

    out = {"inverse": isnr(R.inverse_filter(b, k))}
    out["wiener*"] = max(isnr(R.wiener(b, k, balance=float(lam))) for lam in WIENER_BALANCES)
    # scikit-image's Wiener filter (periodic boundary), best balance on the same grid
    out["sk wiener*"] = max(isnr(sk_wiener(b, k, balance=float(lam), clip=False)) for lam in WIENER_BALANCES)
    sk = {n: isnr(sk_rl(b, k, num_iter=n)) for n in SK_RL_ITERS}
    out["sk RL*"], out["sk RL 100"] = max(sk.values()), sk[100]
    out["RL 100"] = isnr(R.richardson_lucy(b, k, num_iter=100))
    out["nesterov*"] = max(isnr(R.nesterov(b, k, weight=w, num_iter=100)) for w in NESTEROV_WEIGHTS)
    snap = {}

    def keep(i: int, xi: np.ndarray) -> None:
        if i + 1 == 200:
            snap[200] = xi.copy()

    t0 = time.perf_counter()
    e, info = R.fista_tv(b, k, num_iter=1000, callback=keep, return_info=True)
    out["fista_tv 1000"], f_fista = isnr(e), float(info["objective"][-1])
    out["fista_tv 200"] = isnr(snap[200])
    TIMES.setdefault("fista_tv 1000", []).append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    e, info = R.admm_tv(b, k, num_iter=100, return_info=True)
    out["admm_tv 100"] = isnr(e)
    # relative objective excess of admm_tv 100 over fista_tv 1000 (negative: admm_tv is lower)
    out["admm excess"] = float(info["objective"][-1]) / f_fista - 1
    TIMES.setdefault("admm_tv 100", []).append(time.perf_counter() - t0)
    return out


def run_all(verbose: bool = True) -> list[tuple[str, str, float, dict[str, float]]]:
    rng = np.random.default_rng(2024)
    rows = []
    for name in SCENES:
        x = scene(name)
        for pname, k in psfs().items():
            for sigma in NOISE:
                t0 = time.perf_counter()
                res = run_case(x, k, sigma, rng)
                rows.append((name, pname, sigma, res))
                if verbose:
                    print(f"  {name} {pname} {sigma:g}: {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    return rows


def table(rows) -> str:
    head = "| scene | PSF | noise σ | " + " | ".join(COLUMNS) + " |"
    sep = "|" + "---|" * (3 + len(COLUMNS))
    lines = [head, sep]
    for name, pname, sigma, res in rows:
        lines.append(f"| {name} | {pname} | {sigma:g} | " + " | ".join(f"{res[c]:.2f}" for c in COLUMNS) + " |")
    mean = {c: np.mean([r[3][c] for r in rows]) for c in COLUMNS}
    lines.append("| **mean** | | | " + " | ".join(f"**{mean[c]:.2f}**" for c in COLUMNS) + " |")
    return "\n".join(lines)


def check_targets(rows) -> list[tuple[str, bool]]:
    res = [r[3] for r in rows]
    # the target's Wiener read as gpuimg's (reflect boundary; the stricter reading, checked)
    margin = [r["fista_tv 200"] - max(r["sk RL*"], r["wiener*"]) for r in res]
    # and as scikit-image's (periodic boundary), reported
    sk_margin = [r["fista_tv 200"] - max(r["sk RL*"], r["sk wiener*"]) for r in res]
    return [
        ("fista_tv beats best scikit-image RL and best Wiener on every case",
         all(m > 0 for m in margin)),
        (f"... by >= 2 dB on average (got {np.mean(margin):.2f} dB over gpuimg's Wiener; "
         f"{np.mean(sk_margin):.2f} dB, worst case {min(sk_margin):.2f} dB, over scikit-image's)",
         float(np.mean(margin)) >= 2.0),
        ("RL (reflect, 100) beats scikit-image RL at 100 on every case",
         all(r["RL 100"] > r["sk RL 100"] for r in res)),
        (f"fista_tv 200 within 0.3 dB of 1000 (worst {max(abs(r['fista_tv 200'] - r['fista_tv 1000']) for r in res):.2f} dB)",
         all(abs(r["fista_tv 200"] - r["fista_tv 1000"]) <= 0.3 for r in res)),
        (f"admm_tv 100 reaches the same objective as fista_tv 1000 within 1 % "
         f"(worst {100 * max(r['admm excess'] for r in res):+.2f} %; ISNR differs by up to "
         f"{max(abs(r['admm_tv 100'] - r['fista_tv 1000']) for r in res):.2f} dB)",
         all(r["admm excess"] <= 0.01 for r in res)),
    ]


def test_quality_targets():
    rows = run_all(verbose=False)
    print(table(rows))
    failed = [name for name, ok in check_targets(rows) if not ok]
    assert not failed, failed


#: multiples of the default TV weight that ``--weights`` tries
WEIGHT_FACTORS = (0.25, 0.5, 1.0, 2.0, 4.0)


def weight_grid() -> None:
    """Margin of converged TV (``admm_tv``, 150 iterations) over the best-balance Wiener
    filter on the benchmark's cases, at multiples of the default weight, and with the best
    multiple chosen per case after the fact (an upper bound on what any weight rule gives)."""
    from gpuimg.restoration.fista import resolve_tv_weight

    rng = np.random.default_rng(2024)  # the same noise as run_all
    margins = []
    for name in SCENES:
        x = scene(name)
        for pname, k in psfs().items():
            for sigma in NOISE:
                b = ndi.convolve(x, k, mode="reflect") + rng.normal(0, sigma, x.shape)

                def isnr(e: np.ndarray, x: np.ndarray = x, b: np.ndarray = b) -> float:
                    return float(10 * np.log10(np.sum((x - b) ** 2) / np.sum((x - e) ** 2)))

                best_wiener = max(isnr(R.wiener(b, k, balance=float(lam))) for lam in WIENER_BALANCES)
                w = resolve_tv_weight(np, b, None)
                tv = [isnr(R.admm_tv(b, k, weight=f * w, num_iter=150)) for f in WEIGHT_FACTORS]
                margins.append([t - best_wiener for t in tv])
                print(f"  {name} {pname} {sigma:g}: " + " ".join(f"{m:+.2f}" for m in margins[-1]),
                      file=sys.stderr, flush=True)
    m = np.array(margins)
    for f, v in zip(WEIGHT_FACTORS, m.mean(axis=0)):
        print(f"converged TV at {f:g} x the default weight: {v:+.2f} dB over the best Wiener (mean)")
    print(f"best of those weights per case: {m.max(axis=1).mean():+.2f} dB (mean)")


def main() -> int:
    if "--weights" in sys.argv[1:]:
        weight_grid()
        return 0
    rows = run_all()
    print(table(rows))
    print()
    for name, t in TIMES.items():
        print(f"{name}: {np.median(t):.2f} s per 256 x 256 case (median)")
    print()
    ok_all = True
    for name, ok in check_targets(rows):
        print(f"- [{'x' if ok else ' '}] {name}")
        ok_all &= ok
    return 0 if ok_all else 1


if __name__ == "__main__":
    sys.exit(main())
