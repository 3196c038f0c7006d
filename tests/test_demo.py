"""``gpuimg demo``: the README's first command, end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from gpuimg import demo

ROOT = Path(__file__).resolve().parent.parent
METHODS = ["blurred", "naive division", "wiener", "richardson_lucy", "nesterov", "fista_tv", "admm_tv"]


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "demo-out"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "gpuimg", "demo", "--out", str(out), "--backend", "numpy"],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return out, proc.stdout, time.perf_counter() - t0


def test_demo_writes_everything_quickly(demo_out):
    out, stdout, seconds = demo_out
    assert seconds < 60
    for name in ["sharp", "blurred", "led", "psf_true", "psf_estimated", "montage", "naive_division", "wiener",
                 "richardson_lucy", "nesterov", "fista_tv", "admm_tv"]:
        assert (out / f"{name}.png").is_file(), name
    report = json.loads((out / "report.json").read_text())
    assert [m["method"] for m in report["methods"]] == METHODS
    md = (out / "report.md").read_text()
    for m in report["methods"]:
        assert f"| {m['method']} | {m['psnr']:.2f} |" in md
        assert m["method"] in stdout


def test_psnr_ordering(demo_out):
    out, _, _ = demo_out
    psnr = {m["method"]: m["psnr"] for m in json.loads((out / "report.json").read_text())["methods"]}
    assert psnr["fista_tv"] > psnr["naive division"] + 10
    assert psnr["richardson_lucy"] > psnr["naive division"] + 5
    assert psnr["fista_tv"] > psnr["blurred"] and psnr["richardson_lucy"] > psnr["blurred"]
    # the two TV solvers (one objective) lead; ADMM's 100 iterations are closer to its minimiser
    assert max(psnr["fista_tv"], psnr["admm_tv"]) == max(psnr.values())
    assert abs(psnr["fista_tv"] - psnr["admm_tv"]) < 1.0


def test_report_agrees_with_skimage_on_written_pngs(demo_out):
    out, _, _ = demo_out
    sharp = np.asarray(Image.open(out / "sharp.png"), dtype=np.float64) / 255
    for m in json.loads((out / "report.json").read_text())["methods"]:
        img = np.asarray(Image.open(out / f"{m['method'].replace(' ', '_')}.png"), dtype=np.float64) / 255
        # the PNGs are rounded to 8 bits, the report is computed before rounding
        assert m["psnr"] == pytest.approx(peak_signal_noise_ratio(sharp, img, data_range=1.0), abs=0.15)
        assert m["ssim"] == pytest.approx(structural_similarity(sharp, img, data_range=1.0), abs=0.02)


def test_chart_and_led_photo():
    chart = demo.test_chart(256)
    assert chart.shape == (256, 256) and chart.min() >= 0.05 and chart.max() <= 0.95
    # the Siemens star alternates black and white around its rim
    ring = chart[64 + (40 * np.sin(np.linspace(0, 2 * np.pi, 360))).astype(int),
                 64 + (40 * np.cos(np.linspace(0, 2 * np.pi, 360))).astype(int)]
    assert np.count_nonzero(np.diff(ring > 0.5)) >= 34
    from gpuimg import psf

    k = np.asarray(psf.disk(4.0))
    led = demo.led_photo(k)
    yy, xx = np.mgrid[:64, :64]
    w = np.clip(led - np.median(led), 0, None)
    w[w < 0.1] = 0
    cy, cx = (w * yy).sum() / w.sum(), (w * xx).sum() / w.sum()
    c0 = (64 - k.shape[0]) // 2 + k.shape[0] // 2  # where the unshifted PSF centre lands
    assert abs(cy - (c0 + 0.3)) < 0.1 and abs(cx - (c0 - 0.4)) < 0.1
    with pytest.raises(ValueError, match="size"):
        demo.test_chart(10)
    with pytest.raises(ValueError, match="size"):
        demo.run("unused", size=100)
