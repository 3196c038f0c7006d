"""Measure a weld bead in a cross-section photo and draw the fitted profile.

    python examples/weld_bead.py                      # generated photo -> weld_bead.png
    python examples/weld_bead.py photo.png --out measured.png --n-segments 5

Steps: bilateral smoothing (keeps the bead's edge sharp), a local threshold (copes with
uneven light), the upper boundary of the largest object per column, a continuous 5-piece
polyline fit, and the bead's toe points, height, width, flank angles and reinforcement
area. The PNG shows the photo with the fitted polyline (red), the base line between the
toes (yellow) and the toes (green).
"""

from __future__ import annotations

import argparse

import numpy as np
from PIL import Image, ImageDraw

import gpuimg
from gpuimg import denoise, segment


def measure(image: np.ndarray, *, n_segments: int = 5, block_size: int = 41, offset: float = -0.05):
    smooth = denoise.bilateral(image, sigma_color=0.15, sigma_spatial=2.0, win_size=7)
    mask = smooth > segment.threshold_local(smooth, block_size, offset=offset)
    return segment.bead_geometry(mask, n_segments=n_segments)


def draw(image: np.ndarray, geo: segment.BeadGeometry, scale: int = 3) -> Image.Image:
    rows = image.shape[0]
    lo, hi = np.percentile(image, [1, 99])
    grey = np.clip((image - lo) / max(hi - lo, 1e-12), 0, 1)
    pil = Image.fromarray((grey * 255).astype(np.uint8)).convert("RGB")
    pil = pil.resize((pil.width * scale, pil.height * scale), Image.NEAREST)
    pen = ImageDraw.Draw(pil)

    def to_px(x: float, z: float) -> tuple[float, float]:
        # profile heights are measured up from the image's bottom edge
        return ((x + 0.5) * scale, (rows - z) * scale)

    vertices = [to_px(x, z) for x, z in geo.fit.vertices]
    pen.line(vertices, fill=(255, 40, 40), width=2)
    pen.line([to_px(*geo.toe_left), to_px(*geo.toe_right)], fill=(255, 220, 0), width=1)
    for toe in (geo.toe_left, geo.toe_right):
        cx, cy = to_px(*toe)
        pen.ellipse([cx - 4, cy - 4, cx + 4, cy + 4], outline=(0, 220, 0), width=2)
    text = (f"height {geo.height:.1f} px  width {geo.width:.1f} px  "
            f"flanks {geo.left_angle:.1f} / {geo.right_angle:.1f} deg  area {geo.area:.0f} px^2")
    pen.text((6, 6), text, fill=(255, 255, 255))
    return pil


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("image", nargs="?", help="grey photo (bead bright on a dark background); generated if omitted")
    ap.add_argument("--out", default="weld_bead.png")
    ap.add_argument("--n-segments", type=int, default=5)
    args = ap.parse_args(argv)
    if args.image:
        image = np.asarray(Image.open(args.image).convert("F"), dtype=np.float32) / 255.0
    else:
        image, _ = segment.synthetic_bead()
    geo = measure(image, n_segments=args.n_segments)
    draw(image, geo).save(args.out)
    print(f"backend {gpuimg.backend_info()['name']}: toes {geo.toe_left.round(2)} {geo.toe_right.round(2)}, "
          f"height {geo.height:.2f} px, width {geo.width:.2f} px, flank angles {geo.left_angle:.2f} / "
          f"{geo.right_angle:.2f} deg, area {geo.area:.1f} px^2 -> {args.out}")


if __name__ == "__main__":
    main()
