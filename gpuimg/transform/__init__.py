"""Resampling and warping without aliasing.

- :func:`resize` -- OpenCV-exact ``INTER_AREA`` / nearest / linear / cubic / Lanczos-4, and
  Pillow-exact anti-aliased box / linear / cubic / Lanczos-3 filters.
- :func:`pyr_down`, :func:`pyr_up` -- OpenCV's Gaussian pyramid steps.
- :func:`warp_affine`, :func:`warp_perspective`, :func:`remap` -- OpenCV matrix and map
  conventions with SciPy boundary-mode names; ``antialias=True`` (or ``interpolation="area"``)
  integrates each output pixel's footprint in the source instead of point sampling.
- :class:`RemapPlan` -- :func:`remap` with one pair of maps, prepared once for many images.

Images are ``(..., H, W)`` (leading axes: a batch, one launch) or carry a ``channel_axis``.
"""

from gpuimg.transform.resize import pyr_down, pyr_up, resize
from gpuimg.transform.warp import RemapPlan, remap, warp_affine, warp_perspective

__all__ = ["RemapPlan", "pyr_down", "pyr_up", "remap", "resize", "warp_affine", "warp_perspective"]
