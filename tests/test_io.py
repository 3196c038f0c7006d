"""gpuimg.io against independent readers and writers (OpenCV, Pillow, tifffile, scikit-image)."""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest
from PIL import Image
from skimage import util as skutil

from gpuimg import io
from tests.conftest import to_np


def _image(rng, shape, dtype):
    dt = np.dtype(dtype)
    if dt.kind == "f":
        return rng.standard_normal(shape).astype(dt)
    hi = np.iinfo(dt).max
    img = (rng.random(shape) * hi).astype(dt)
    # a smooth half makes PNG encoders choose the Sub/Up/Average/Paeth filters
    ramp = np.linspace(0, hi, shape[1]).astype(dt)
    img[: shape[0] // 2] = ramp[None, :, None] if img.ndim == 3 else ramp[None, :]
    return img


def _cv_read(path):
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA if img.shape[2] == 4 else cv2.COLOR_BGR2RGB)
    return img


def _cv_write(path, img):
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGBA2BGRA if img.shape[2] == 4 else cv2.COLOR_RGB2BGR)
    assert cv2.imwrite(str(path), img)


@pytest.mark.parametrize("shape", [(33, 47), (33, 47, 3), (20, 31, 4), (1, 1), (1, 9, 3)])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_png_roundtrip_matches_opencv(tmp_path, rng, shape, dtype):
    img = _image(rng, shape, dtype)
    ours = tmp_path / "ours.png"
    io.write_image(ours, img)
    back = _cv_read(ours)
    assert back.dtype == img.dtype and np.array_equal(back, img)
    theirs = tmp_path / "theirs.png"
    _cv_write(theirs, img)
    got = io.read_image(theirs)
    assert got.dtype == img.dtype and np.array_equal(got, img)


@pytest.mark.parametrize("name", ["camera", "text", "astronaut"])
def test_png_encoding_settings_match_opencv(tmp_path, name):
    # cv2.imwrite's defaults (Sub filter, zlib level 1, Z_RLE): the same compressed size within
    # 0.5 % on natural images (libpng splits IDAT and sizes its window differently)
    from skimage import data

    img = getattr(data, name)()
    io.write_image(tmp_path / "ours.png", img)
    ok, theirs = cv2.imencode(".png", img[..., ::-1] if img.ndim == 3 else img)
    assert ok
    assert os.path.getsize(tmp_path / "ours.png") == pytest.approx(theirs.size, rel=5e-3)


def test_png_grey16_matches_pillow(tmp_path, rng):
    img = _image(rng, (25, 30), np.uint16)
    Image.fromarray(img).save(tmp_path / "p.png")
    assert np.array_equal(io.read_image(tmp_path / "p.png"), img)
    io.write_image(tmp_path / "o.png", img)
    assert np.array_equal(np.array(Image.open(tmp_path / "o.png")), img)


@pytest.mark.parametrize(
    "shape,dtype",
    [((30, 40), np.uint8), ((30, 40), np.uint16), ((30, 40, 3), np.uint16),
     ((30, 40), np.float32), ((30, 40), np.float64), ((30, 40, 3), np.float32)],
)
def test_tiff_roundtrip_keeps_dtype(tmp_path, rng, shape, dtype):
    img = _image(rng, shape, dtype)
    path = tmp_path / "x.tif"
    io.write_image(path, img)
    back = io.read_image(path)
    assert back.dtype == np.dtype(dtype) and np.array_equal(back, img)
    if np.dtype(dtype) != np.float64:  # OpenCV is an independent TIFF decoder
        assert np.array_equal(_cv_read(path), img)
    theirs = tmp_path / "cv.tiff"
    if np.dtype(dtype) != np.float64:
        _cv_write(theirs, img)
        assert np.array_equal(io.read_image(theirs), img)


def test_npy_and_jpeg(tmp_path, rng):
    img = rng.random((12, 14)).astype(np.float32)
    io.write_image(tmp_path / "a.npy", img)
    assert np.array_equal(np.load(tmp_path / "a.npy"), img)
    u8 = _image(rng, (16, 16, 3), np.uint8)
    io.write_image(tmp_path / "a.jpg", u8)
    assert np.array_equal(io.read_image(tmp_path / "a.jpg"), np.array(Image.open(tmp_path / "a.jpg")))


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_float_conversion_matches_skimage(be, dtype):
    values = np.linspace(-0.1, 1.1, 20001)
    ref = (skutil.img_as_ubyte if dtype == np.uint8 else skutil.img_as_uint)(np.clip(values, 0, 1))
    got = io.from_float(be.asarray(values), dtype)
    assert to_np(got).dtype == np.dtype(dtype)
    np.testing.assert_array_equal(to_np(got), ref)
    ints = (np.arange(0, 256) * (1 if dtype == np.uint8 else 257)).astype(dtype)
    np.testing.assert_allclose(to_np(io.to_float(be.asarray(ints))), skutil.img_as_float32(ints), rtol=1e-7)


def test_float_dtype_preserved():
    x = np.ones((3, 3), np.float64)
    assert io.to_float(x).dtype == np.float64
    assert io.to_float(x.astype(np.float32)).dtype == np.float32
    assert io.from_float(x, np.float32).dtype == np.float32


def test_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(ValueError, match="dtype"):
        io.write_image(tmp_path / "f.png", np.zeros((4, 4), np.float32))
    assert os.listdir(tmp_path) == []
    with pytest.raises(KeyboardInterrupt):
        with io.atomic_path(tmp_path / "g.png") as tmp:
            tmp.write_bytes(b"half")
            raise KeyboardInterrupt
    assert os.listdir(tmp_path) == []


def test_write_replaces_atomically(tmp_path, rng):
    path = tmp_path / "a.png"
    io.write_image(path, np.zeros((8, 8), np.uint8))
    img = _image(rng, (8, 8), np.uint8)
    io.write_image(path, img)
    assert os.listdir(tmp_path) == ["a.png"]
    assert np.array_equal(np.array(Image.open(path)), img)


def test_bad_input(tmp_path):
    with pytest.raises(ValueError, match="path"):
        io.read_image(tmp_path / "x.gif")
    with pytest.raises(FileNotFoundError, match="x.png"):
        io.read_image(tmp_path / "x.png")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(ValueError, match="bad.png"):
        io.read_image(bad)
    bad_tif = tmp_path / "bad.tif"
    bad_tif.write_bytes(b"II*\x00junk")
    with pytest.raises(ValueError, match="bad.tif"):
        io.read_image(bad_tif)
    with pytest.raises(ValueError, match="image"):
        io.write_image(tmp_path / "y.png", np.zeros((2, 3, 4, 5), np.uint8))
    import tifffile

    tifffile.imwrite(tmp_path / "stack.tif", np.zeros((6, 16, 16), np.uint16))
    with pytest.raises(ValueError, match="stack.tif"):
        io.read_image(tmp_path / "stack.tif")


def test_byte_order_and_bool_round_trips(tmp_path):
    # Pillow and numpy.load read what we wrote: values, not byte order, are what count
    from PIL import Image

    a = np.arange(12, dtype=">u2").reshape(3, 4) * 4000
    io.write_image(tmp_path / "a.png", a)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "a.png")), a.astype(np.uint16))
    m = np.array([[True, False], [False, True]])
    io.write_image(tmp_path / "m.npy", m)
    back = np.load(tmp_path / "m.npy")
    assert back.dtype == np.bool_ and np.array_equal(back, m)


def test_tiff_channel_layout_follows_the_file(tmp_path):
    # tifffile writes the reference files: planar (separate) RGB comes back (H, W, C); a
    # contiguous grey+alpha image only 4 rows tall keeps its shape
    import tifffile

    rng = np.random.default_rng(6)
    planar = rng.integers(0, 255, (3, 20, 30), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "p.tif", planar, planarconfig="separate", photometric="rgb")
    np.testing.assert_array_equal(io.read_image(tmp_path / "p.tif"), np.moveaxis(planar, 0, -1))
    la = rng.integers(0, 255, (4, 64, 2), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "la.tif", la, photometric="minisblack", extrasamples=["unassalpha"])
    np.testing.assert_array_equal(io.read_image(tmp_path / "la.tif"), la)
