"""The ``gpuimg`` command, run as a subprocess on temporary folders."""

from __future__ import annotations

import csv
import io as pyio
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

import gpuimg as gpuimg_module
from gpuimg import io as gio
from gpuimg import psf, restoration

ROOT = Path(__file__).resolve().parent.parent
SUBCOMMANDS = ("info", "demo", "deblur", "compare", "resize", "warp", "undistort", "register", "bench")


def gpuimg(*args, check=None, timeout=120):
    # a fresh process, not an xdist worker (pytest-benchmark would switch itself off)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_XDIST", "PYTEST_CURRENT"))}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run([sys.executable, "-m", "gpuimg", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=timeout)
    if check is not None:
        assert proc.returncode == check, proc.stderr
    return proc


def _blurry_pngs(folder: Path, rng, n: int, shape=(48, 40), dtype=np.uint8):
    folder.mkdir(parents=True, exist_ok=True)
    from scipy import ndimage as ndi

    hi = np.iinfo(dtype).max
    imgs = {}
    for i in range(n):
        img = (ndi.gaussian_filter(rng.random(shape), 1.5) * hi).astype(dtype)
        Image.fromarray(img).save(folder / f"im{i:02d}.png")
        imgs[f"im{i:02d}.png"] = img
    return imgs


def _library_rl(img, sigma, iters):
    n = 2 * math.ceil(4 * sigma) + 1
    x = gio.to_float(img)
    return gio.from_float(restoration.richardson_lucy(x, psf.gaussian((n, n), sigma).astype(x.dtype), num_iter=iters,
                                                      boundary="reflect"), img.dtype)


def test_every_subcommand_has_help_with_example(capsys):
    from gpuimg.cli import main

    assert "demo" in gpuimg("--help", check=0).stdout  # the installed entry point answers
    for name in SUBCOMMANDS:
        with pytest.raises(SystemExit) as exit_info:
            main([name, "--help"])
        assert exit_info.value.code == 0
        out = capsys.readouterr().out
        assert "example:" in out and f"gpuimg {name}" in out


def test_info_still_works():
    info = json.loads(gpuimg("info", "--json", check=0).stdout)
    assert info["name"] in ("numpy", "cupy")


def test_deblur_matches_library_and_keeps_dtype(tmp_path, rng):
    imgs = _blurry_pngs(tmp_path / "in", rng, 3)
    img16 = (rng.random((30, 36)) * 65535).astype(np.uint16)
    gio.write_image(tmp_path / "in" / "sub" / "deep.tif", img16)
    out = tmp_path / "out"
    proc = gpuimg("deblur", tmp_path / "in", "--out", out, "--psf-gaussian", 1.5, "--method", "richardson_lucy",
                  "--iters", 8, "--backend", "numpy", "-q", check=0)
    assert "4 done" in proc.stderr
    for name, img in imgs.items():
        got = np.array(Image.open(out / name))
        np.testing.assert_allclose(got.astype(int), _library_rl(img, 1.5, 8).astype(int), atol=1)
    back = gio.read_image(out / "sub" / "deep.tif")
    assert back.dtype == np.uint16
    np.testing.assert_allclose(back.astype(int), _library_rl(img16, 1.5, 8).astype(int), atol=1)


def test_deblur_admm_tv_matches_library(tmp_path, rng):
    imgs = _blurry_pngs(tmp_path / "in", rng, 2)
    out = tmp_path / "out"
    gpuimg("deblur", tmp_path / "in", "--out", out, "--psf-disk", 2, "--method", "admm_tv", "--weight", 0.01,
           "--iters", 15, "--backend", "numpy", "-q", check=0)
    k = psf.disk(2.0)
    for name, img in imgs.items():
        x = gio.to_float(img)
        ref = gio.from_float(restoration.admm_tv(x, k.astype(x.dtype), weight=0.01, num_iter=15), img.dtype)
        np.testing.assert_allclose(np.array(Image.open(out / name)).astype(int), ref.astype(int), atol=1)


def test_folder_with_corrupt_file(tmp_path, rng):
    _blurry_pngs(tmp_path / "in", rng, 10)
    (tmp_path / "in" / "im04.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    out = tmp_path / "out"
    proc = gpuimg("deblur", tmp_path / "in", "--out", out, "--psf-disk", 2, "--method", "wiener", "-q", check=1)
    assert sorted(os.listdir(out)) == sorted(f"im{i:02d}.png" for i in range(10) if i != 4)
    assert "im04.png" in proc.stderr and "9 done" in proc.stderr and "1 failed" in proc.stderr


def test_resume_does_no_work_second_time(tmp_path, rng):
    _blurry_pngs(tmp_path / "in", rng, 4)
    out = tmp_path / "out"
    args = ("deblur", str(tmp_path / "in" / "*.png"), "--out", out, "--psf-gaussian", 1.0, "--method", "landweber",
            "--iters", 5, "--resume", "-q")
    gpuimg(*args, check=0)
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    proc = gpuimg(*args, check=0)
    assert "0 done, 4 skipped" in proc.stderr
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == stamps


def test_sigterm_leaves_no_partial_output(tmp_path, rng):
    _blurry_pngs(tmp_path / "in", rng, 60, shape=(160, 160), dtype=np.uint16)
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "gpuimg", "deblur", str(tmp_path / "in"), "--out", str(out),
                             "--psf-disk", "3", "--method", "richardson_lucy", "--iters", "30", "--batch-size", "2",
                             "-q"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and not (out.exists() and len(os.listdir(out)) >= 2):
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    names = os.listdir(out)
    assert 2 <= len(names) < 60 and all(not n.startswith(".") for n in names), names
    for n in names:
        assert gio.read_image(out / n).shape == (160, 160)


def test_compare_matches_skimage(tmp_path, rng):
    ref = (rng.random((64, 64)) * 255).astype(np.uint8)
    Image.fromarray(ref).save(tmp_path / "ref.png")
    tests = {}
    for i in range(3):
        noisy = np.clip(ref.astype(int) + rng.integers(-20 * (i + 1), 20 * (i + 1), ref.shape), 0, 255).astype(np.uint8)
        Image.fromarray(noisy).save(tmp_path / f"t{i}.png")
        tests[str(tmp_path / f"t{i}.png")] = noisy
    proc = gpuimg("compare", tmp_path / "ref.png", *tests, "--metrics", "psnr,ssim,mse", "--format", "csv",
                  "--map", "ssim", "--out", tmp_path / "maps", "-q", check=0)
    rows = list(csv.DictReader(pyio.StringIO(proc.stdout)))
    assert sorted(r["file"] for r in rows) == sorted(tests)
    for r in rows:
        t = tests[r["file"]]
        a, b = ref / 255.0, t / 255.0
        assert float(r["psnr"]) == pytest.approx(peak_signal_noise_ratio(a, b, data_range=1.0), rel=1e-6)
        assert float(r["ssim"]) == pytest.approx(structural_similarity(a, b, data_range=1.0), abs=1e-5)
        assert float(r["mse"]) == pytest.approx(np.mean((a - b) ** 2), rel=1e-5)
        _, smap = structural_similarity(a, b, data_range=1.0, full=True)
        got = gio.read_image(tmp_path / "maps" / (Path(r["file"]).stem + "_ssim.tif"))
        np.testing.assert_allclose(got, smap, atol=1e-5)
    js = json.loads(gpuimg("compare", tmp_path / "ref.png", tmp_path / "t0.png", "--metrics", "psnr",
                           "--format", "json", "-q", check=0).stdout)
    assert js[0]["psnr"] == pytest.approx(peak_signal_noise_ratio(ref, tests[str(tmp_path / "t0.png")]), rel=1e-6)


def test_bad_arguments(tmp_path):
    assert gpuimg("deblur", tmp_path, "--out", tmp_path / "o").returncode == 2  # no PSF given
    proc = gpuimg("deblur", tmp_path / "x.png", "--out", tmp_path / "o", "--psf-disk", "-1")
    assert proc.returncode == 2 and "--psf-disk" in proc.stderr
    # refused before a 2e6 x 2e6 PSF is built
    proc = gpuimg("deblur", tmp_path / "x.png", "--out", tmp_path / "o", "--psf-disk", "1e6")
    assert proc.returncode == 2 and "--psf-disk" in proc.stderr and "2000001 x 2000001" in proc.stderr
    proc = gpuimg("compare", tmp_path / "none.png", tmp_path / "t.png", "--metrics", "psnr,bogus")
    assert proc.returncode == 2 and "bogus" in proc.stderr
    proc = gpuimg("deblur", tmp_path, "--out", tmp_path / "o", "--psf-disk", 2, "--method", "landweber", "--weight", 1)
    assert proc.returncode == 2 and "--weight" in proc.stderr
    if not gpuimg_module.gpu_available():
        proc = gpuimg("demo", "--out", tmp_path / "d", "--backend", "cupy")
        assert proc.returncode == 2 and "--backend cupy" in proc.stderr
    proc = gpuimg("deblur", tmp_path / "nothing-here", "--out", tmp_path / "o", "--psf-disk", 2, "-q")
    assert proc.returncode == 1 and "nothing-here" in proc.stderr


def test_bench_runs_suites_and_prints_ratios():
    proc = gpuimg("bench", "--quick", "-k", "test_pad_reflect and numpy", timeout=300, check=0)
    assert "peer time / gpuimg time" in proc.stdout and "vs numpy" in proc.stdout


def test_deblur_with_psf_from_led_photo(tmp_path, rng):
    from gpuimg import demo

    true_psf = np.asarray(psf.disk(2.5))
    led = demo.led_photo(true_psf, size=40)
    gio.write_image(tmp_path / "led.tif", led.astype(np.float32))
    imgs = _blurry_pngs(tmp_path / "in", rng, 2)
    gpuimg("deblur", tmp_path / "in", "--out", tmp_path / "out", "--psf-led", tmp_path / "led.tif",
           "--method", "wiener", "--weight", 0.05, "-q", check=0)
    est = np.asarray(psf.from_image(led.astype(np.float32).astype(np.float64)))
    for name, img in imgs.items():
        ref = gio.from_float(restoration.wiener(gio.to_float(img), est.astype(np.float32), balance=0.05), np.uint8)
        np.testing.assert_allclose(np.array(Image.open(tmp_path / "out" / name)).astype(int), ref.astype(int), atol=1)


def test_output_folder_that_holds_the_inputs_still_reads_them(tmp_path, rng):
    # inputs named inside --out are the user's choice: they are processed (cv2 is the
    # reference), and an output that would replace its input is refused
    import cv2

    imgs = _blurry_pngs(tmp_path / "raw", rng, 2)
    gpuimg("resize", tmp_path / "raw", "--out", tmp_path, "--size", "20x24", "-q", check=0)
    for name, img in imgs.items():
        got = np.asarray(Image.open(tmp_path / name))
        assert np.abs(got.astype(int) - cv2.resize(img, (24, 20), interpolation=cv2.INTER_AREA)).max() <= 1
    proc = gpuimg("resize", tmp_path / "raw", "--out", tmp_path / "raw", "--size", "20x24", "-q")
    assert proc.returncode == 2 and "overwrite its input" in proc.stderr


def test_deblur_default_tv_weight_is_per_file(tmp_path, rng):
    # fista_tv's default weight is one per call: the command calls it per file, so each
    # output equals the library's result for that file alone, whatever the batch size
    from gpuimg import psf, restoration

    imgs = _blurry_pngs(tmp_path / "in", rng, 2, shape=(40, 36))
    imgs["im01.png"] = (imgs["im01.png"] // 4).astype(np.uint8)  # another noise level and weight
    Image.fromarray(imgs["im01.png"]).save(tmp_path / "in" / "im01.png")
    gpuimg("deblur", tmp_path / "in", "--out", tmp_path / "out", "--psf-disk", 1.5, "--iters", 5, "-q", check=0)
    k = psf.disk(1.5)
    for name, img in imgs.items():
        ref = restoration.fista_tv(img / 255.0, k, num_iter=5)
        got = np.asarray(Image.open(tmp_path / "out" / name)) / 255.0
        assert np.abs(got - ref).max() <= 0.5 / 255 + 1e-9


def test_output_folder_inside_input_folder_is_not_read(tmp_path, rng):
    _blurry_pngs(tmp_path, rng, 3)
    for _ in range(2):
        proc = gpuimg("deblur", tmp_path, "--out", tmp_path / "out", "--psf-disk", 1.5, "--method", "wiener", "-q",
                      check=0)
        assert "3 done" in proc.stderr
    assert sorted(os.listdir(tmp_path / "out")) == ["im00.png", "im01.png", "im02.png"]


def test_outputs_get_the_mode_of_an_ordinary_file(tmp_path, rng):
    # the temp file behind the atomic rename must not leave 0600: compare with a file that
    # Python's open() creates under the same umask
    _blurry_pngs(tmp_path / "in", rng, 1)
    gpuimg("resize", tmp_path / "in", "--out", tmp_path / "out", "--size", "20x20", "-q", check=0)
    with open(tmp_path / "plain", "w"):
        pass
    assert os.stat(tmp_path / "out" / "im00.png").st_mode == os.stat(tmp_path / "plain").st_mode


def test_colliding_output_names(tmp_path, rng):
    # two files that would write one output are a usage error (exit 2) naming both; compare
    # without --map writes nothing per file and takes them
    _blurry_pngs(tmp_path / "a", rng, 1)
    _blurry_pngs(tmp_path / "b", rng, 1)
    proc = gpuimg("resize", tmp_path / "a" / "im00.png", tmp_path / "b" / "im00.png", "--out", tmp_path / "o",
                  "--size", "20x20", "-q")
    assert proc.returncode == 2 and "would both write" in proc.stderr and "Traceback" not in proc.stderr
    proc = gpuimg("compare", tmp_path / "a" / "im00.png", tmp_path / "a" / "im00.png", tmp_path / "b" / "im00.png",
                  "--metrics", "mse", "--format", "csv", check=0)
    assert proc.stdout.count("im00.png") == 2
    Image.open(tmp_path / "a" / "im00.png").save(tmp_path / "a" / "im00.tif")
    proc = gpuimg("compare", tmp_path / "a" / "im00.png", tmp_path / "a", "--map", "mse", "--out", tmp_path / "m")
    assert proc.returncode == 2 and "map" in proc.stderr


def test_strict_json_own_maps_and_nan_files(tmp_path, rng):
    import json

    from skimage.metrics import peak_signal_noise_ratio

    imgs = _blurry_pngs(tmp_path / "t", rng, 2)
    ref = tmp_path / "t" / "im00.png"
    # identical images: PSNR +inf, which strict JSON cannot hold -> the string "inf"
    proc = gpuimg("compare", ref, tmp_path / "t", "--metrics", "psnr", "--format", "json", check=0)
    rows = json.loads(proc.stdout, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    by_name = {Path(r["file"]).name: r["psnr"] for r in rows}
    assert by_name["im00.png"] == "inf"
    assert by_name["im01.png"] == pytest.approx(peak_signal_noise_ratio(imgs["im00.png"], imgs["im01.png"]), rel=1e-6)  # float32 pixels
    # a map folder inside the test folder is not read back on the next run
    for _ in range(2):
        proc = gpuimg("compare", ref, tmp_path / "t", "--map", "mse", "--out", tmp_path / "t" / "maps",
                      "--metrics", "mse", "--format", "csv", check=0)
        assert proc.stdout.count("\n") == 3  # header and two files
    assert not (tmp_path / "t" / "maps" / "maps").exists()
    # a float file with a NaN pixel fails with the reason; its batch-mate is restored
    from gpuimg import io

    good = imgs["im01.png"] / 255.0
    bad = good.copy()
    bad[3, 4] = np.nan
    io.write_image(tmp_path / "f" / "bad.tif", bad.astype(np.float32))
    io.write_image(tmp_path / "f" / "good.tif", good.astype(np.float32))
    proc = gpuimg("deblur", tmp_path / "f", "--out", tmp_path / "o", "--psf-disk", 1.5, "--method", "wiener")
    assert proc.returncode == 1 and "NaN" in proc.stderr
    assert os.listdir(tmp_path / "o") == ["good.tif"]


def test_compare_resume_keeps_maps_and_the_whole_table(tmp_path, rng):
    # a resumed comparison measures every file again (mse against NumPy's) and leaves the
    # maps that exist untouched
    imgs = _blurry_pngs(tmp_path / "t", rng, 3)
    ref = tmp_path / "t" / "im00.png"
    args = ("compare", ref, tmp_path / "t", "--map", "mse", "--out", tmp_path / "m", "--metrics", "mse", "--format", "csv")
    gpuimg(*args, check=0)
    kept = tmp_path / "m" / "im01_mse.tif"
    stamp = os.stat(kept).st_mtime_ns
    (tmp_path / "m" / "im02_mse.tif").unlink()
    proc = gpuimg(*args, "--resume", check=0)
    rows = dict(line.split(",") for line in proc.stdout.strip().splitlines()[1:])
    for name, img in imgs.items():
        mse = np.mean((img / 255.0 - imgs["im00.png"] / 255.0) ** 2)
        assert float(rows[str(tmp_path / "t" / name)]) == pytest.approx(mse, rel=1e-5, abs=1e-12)
    assert os.stat(kept).st_mtime_ns == stamp and (tmp_path / "m" / "im02_mse.tif").exists()
