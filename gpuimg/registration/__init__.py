"""Non-linear distortion: lens models, free-form B-spline registration, maps over a parameter.

- :class:`Distortion`, :func:`fit_distortion`: Brown-Conrady lens distortion (OpenCV model),
  point and dense-map (un)distortion, least-squares fitting from correspondences.
- :class:`BSplineTransform`, :func:`register_bspline`: cubic B-spline free-form
  deformations and their coarse-to-fine registration with an analytic gradient.
- :class:`MapSeries`: correction maps measured at parameter values (e.g. pressure),
  interpolated between them.
"""

from gpuimg.registration.bspline import BSplineTransform, control_shape_for
from gpuimg.registration.distortion import Distortion, fit_distortion
from gpuimg.registration.map_series import MapSeries
from gpuimg.registration.register import register_bspline

__all__ = ["BSplineTransform", "Distortion", "MapSeries", "control_shape_for", "fit_distortion", "register_bspline"]
