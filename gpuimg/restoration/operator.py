"""The blur operator ``A`` of every deconvolution solver: convolution with a PSF plus a boundary model.

``A`` maps the unknown image ``x`` to the observed blurred image ``b = A x``; its adjoint
``A^T`` is what gradient methods and Richardson–Lucy need. Both run over the last two axes,
so leading axes are a batch, and keep the operator's float dtype (float32 stays float32).

Boundary models (the observed frame is ``H x W``, the PSF ``kh x kw`` with centre
``c = (kh // 2, kw // 2)`` as in :func:`scipy.ndimage.convolve`):

``"periodic"``
    Circular convolution, ``A x = F^{-1}(Ĥ · F x)``; equals
    ``scipy.ndimage.convolve(x, psf, mode="wrap")``. ``A^T`` multiplies by ``conj(Ĥ)``.
``"reflect"``
    ``A = C K E``: ``E`` extends ``x`` by half-sample symmetric reflection (SciPy's
    ``"reflect"``) by at least the PSF's half-size, ``K`` is circular convolution on the
    extended grid and ``C`` crops the frame; equals ``scipy.ndimage.convolve(x, psf,
    mode="reflect")``. ``A^T = E^T K^T C^T`` zero-fills the crop, correlates, and folds the
    reflected margins back onto the pixels they copied.
``"free"``
    The unknown is larger than the frame by the PSF's support, ``(H + kh - 1) x (W + kw -
    1)``, and ``A`` keeps only the "valid" part of its convolution, so no assumption about
    the scene outside the frame is made (Almeida & Figueiredo 2013; Matakos, Ramani &
    Fessler 2013). Solvers crop the estimate back to the frame.

Methods
-------
``"fft"``
    ``K`` and ``K^T`` are products with the optical transfer function (OTF) ``Ĥ`` on an FFT
    grid of fast lengths, with real FFTs (``rfft2``/``irfft2``): two transforms per
    application of ``A`` or ``A^T``.
``"direct"``
    For a separable PSF, ``psf = u v^T`` (rank one: the second singular value of the
    float64 PSF is at most ``SEPARABLE_RTOL`` of the first; signs are chosen so that
    ``sum(u) >= 0``), ``K`` is two 1-D passes, one along the rows with ``v`` and one along
    the columns with ``u`` (``be.correlate1d``), with exactly the same boundary model:

    - ``A x``: ``y[i] = sum_m psf[m] x_e[i + c - m]`` is correlation with the reversed
      factors, centres ``(kh - 1 - c_0, kw - 1 - c_1)``. ``"reflect"`` runs the passes over
      the lifted grid buffer, whose margins hold the reflection, and keeps the frame at
      ``origin`` (its "valid" part, so the passes' own boundary rule is never read);
      ``"free"`` does the same over the unknown; ``"periodic"`` wraps.
    - ``A^T r``: ``z[p] = sum_m psf[m] r[p + m - (k - 1)]``, the full correlation of the
      frame zero-filled to the grid (centres ``(kh - 1, kw - 1)``, zero fill); ``"reflect"``
      then folds the margins (``E^T``), ``"periodic"`` correlates with wrap about ``c``.

    A 19 x 19 Gaussian then costs 2 x 19 multiply-adds per pixel and application instead
    of two FFTs, and no OTF is kept (:attr:`BlurOperator.otf` is built only when asked
    for). Both methods give the same operator to round-off.

``method="auto"`` picks ``"direct"`` for a separable PSF while ``kh + kw`` is within the
backend's measured separable crossover (``be.correlate_crossover()["separable_max_taps"]``,
:mod:`gpuimg.filters`), and ``"fft"`` otherwise. On an NVIDIA H200 one ``rfft2`` + ``irfft2``
pair on Richardson–Lucy's 2100 x 2100 grid (2048 x 2048 float32, 19 x 19 PSF) costs 0.19 ms,
so the FFT method's four transforms per iteration alone exceed 0.35 ms, while a 19-tap pass
streams the grid once (tens of microseconds, estimated from its SASS). On the CPU a 19-tap
pass over the 530 x 530 grid (512 x 512 float32) runs as batched GEMMs with a banded
Toeplitz block (:mod:`gpuimg._prims.banded`) in about 0.2 ms, against 1.5–1.7 ms for one
``rfft2`` + ``irfft2`` pair on the 540 x 540 FFT grid (and 1.5–1.9 ms for
:func:`scipy.ndimage.correlate1d`), so there too the passes win by far.

References
----------
M. S. C. Almeida and M. A. T. Figueiredo, "Deconvolving images with unknown boundaries
using the alternating direction method of multipliers", IEEE Trans. Image Process. 22(8),
2013. A. Matakos, S. Ramani and J. A. Fessler, "Accelerated edge-preserving image
restoration without boundary artifacts", IEEE Trans. Image Process. 22(5), 2013.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gpuimg._validate import check_array, check_choice
from gpuimg.psf import to_otf

__all__ = ["BOUNDARIES", "METHODS", "SEPARABLE_RTOL", "BlurOperator", "asymmetry", "check_psf", "separable_factors"]

BOUNDARIES = ("periodic", "reflect", "free")
METHODS = ("auto", "fft", "direct")

#: Largest ratio of the PSF's second to first singular value that counts as separable, by
#: the operator's bytes per sample: below the precision the operator computes in anyway
SEPARABLE_RTOL = {4: 1e-7, 8: 1e-12}

#: Where ``method="auto"`` takes the direct passes for a separable PSF: ``None`` on every
#: backend within its separable crossover, ``True`` at any size,
#: ``False`` nowhere (tests run either method on either backend through it)
_DIRECT_OVERRIDE: bool | None = None


def check_psf(psf: Any, image_shape: tuple[int, ...], xp: Any) -> None:
    """Metadata checks on a PSF: 2-D, real, no larger than the image frame."""
    check_array("psf", psf, ndim=2)
    kh, kw = (int(s) for s in psf.shape)
    h, w = image_shape[-2:]
    if kh > h or kw > w:
        raise ValueError(f"psf must not be larger than the image ({h}, {w}), got shape {(kh, kw)}")


def asymmetry(xp: Any, k: Any) -> float:
    """``||k - s||_1 / ||k||_1`` with ``s`` the average of ``k`` and its flips along each axis
    (``inf`` for even sizes, which have no centre to flip about)."""
    if k.shape[0] % 2 == 0 or k.shape[1] % 2 == 0:
        return np.inf
    sym = 0.25 * (k + k[::-1, :] + k[:, ::-1] + k[::-1, ::-1])
    return float(xp.abs(k - sym).sum() / xp.abs(k).sum())


def separable_factors(psf: Any, rtol: float = SEPARABLE_RTOL[8]) -> tuple[np.ndarray, np.ndarray] | None:
    """The factors ``(u, v)`` of a rank-one 2-D kernel, ``psf = outer(u, v)``, or ``None``.

    Parameters
    ----------
    psf : array_like, shape (kh, kw)
        Host array; it is taken in float64.
    rtol : float
        The kernel counts as rank one when its second singular value is at most ``rtol``
        times the first.

    Returns
    -------
    (u, v) : float64 arrays of lengths kh and kw, or None
        Scaled to equal norms, signs chosen so that ``sum(u) >= 0``; ``outer(u, v)``
        equals ``psf`` to ``rtol`` (relative to its largest singular value).
    """
    k = np.asarray(psf, dtype=np.float64)
    if k.ndim != 2 or not np.isfinite(k).all():
        return None
    u, s, vt = np.linalg.svd(k)
    if s[0] == 0 or (s.size > 1 and s[1] > rtol * s[0]):
        return None
    root = np.sqrt(s[0])
    col, row = u[:, 0] * root, vt[0] * root
    if col.sum() < 0:
        col, row = -col, -row
    return col, row


class BlurOperator:
    """Convolution with ``psf`` under a boundary model, with its adjoint.

    Parameters
    ----------
    be : Backend
    psf : array, shape (kh, kw)
        Point-spread function on ``be``; it is normalised to unit sum unless ``normalise``
        is false.
    shape : tuple of int
        Shape of the observed images ``(..., H, W)``.
    dtype : dtype
        float32 or float64; FFTs and 1-D passes run in this precision.
    boundary : {"periodic", "reflect", "free"}
    store_adjoint : bool
        ``"fft"``: keep ``A^T``'s transfer function (one more grid-sized complex array);
        without it the adjoint takes three more in-place passes over the spectrum.
    normalise : bool
        Scale ``psf`` to unit sum (``False`` for zero-sum kernels such as a Laplacian
        regulariser).
    method : {"auto", "fft", "direct"}
        How ``K`` is applied (see the module's Methods). ``"direct"`` needs a separable PSF
        (``ValueError`` otherwise); ``"auto"`` takes it for separable PSFs within the
        backend's separable crossover.
    psf_host : ndarray or None
        A host copy of ``psf`` (as given, before normalising) when the caller has one: the
        factorisation and :meth:`columns_sum_to_one` read it instead of copying ``psf`` from
        the device.

    Attributes
    ----------
    method : {"fft", "direct"}
        The method in use.
    x_shape : tuple
        Shape of the unknown (larger than ``shape`` for ``"free"``).
    grid : tuple of int
        Shape of the work buffers over the last two axes: the FFT grid (fast lengths) for
        ``"fft"``, the frame plus the PSF's support (``"reflect"``, ``"free"``) or the frame
        (``"periodic"``) for ``"direct"``.
    factors : tuple of arrays or None
        ``(u, v)`` on ``be`` in ``dtype`` with ``psf = outer(u, v)`` for ``"direct"``.
    otf : array
        ``rfft2`` of the PSF on ``grid``, centred so that the PSF's centre pixel sits at the
        origin; computed on first use (``"direct"`` never needs it).
    """

    def __init__(self, be: Any, psf: Any, shape: tuple[int, ...], dtype: Any, boundary: str = "reflect",
                 store_adjoint: bool = True, normalise: bool = True, method: str = "auto",
                 psf_host: np.ndarray | None = None) -> None:
        check_choice("boundary", boundary, BOUNDARIES)
        check_choice("method", method, METHODS)
        xp = be.xp
        self.be, self.boundary = be, boundary
        self.dtype = np.dtype(dtype)
        self.shape = tuple(int(s) for s in shape)
        h, w = self.shape[-2:]
        kh, kw = (int(s) for s in psf.shape)
        ch, cw = kh // 2, kw // 2
        self.center = (ch, cw)
        self._psf_host = None if psf_host is None else np.asarray(psf_host, dtype=np.float64)
        factors = self._choose(psf, method, normalise)
        self.method = "fft" if factors is None else "direct"
        fast = be.fft.next_fast_len if self.method == "fft" else (lambda n, real: n)
        if boundary == "periodic":
            self.grid = (h, w)
            self.pad = ((0, 0), (0, 0))
            self.x_shape = self.shape
        elif boundary == "reflect":
            # margins >= the PSF's reach on each side (grown to a fast FFT length for "fft")
            gh, gw = fast(h + kh - 1, True), fast(w + kw - 1, True)
            self.grid = (gh, gw)
            t, l = kh - 1 - ch, kw - 1 - cw
            self.pad = ((t, gh - h - t), (l, gw - w - l))
            if max(self.pad[0]) > h or max(self.pad[1]) > w:
                raise ValueError(f"psf shape {(kh, kw)} needs margins larger than the image {(h, w)}")
            self.x_shape = self.shape
        else:
            hx, wx = h + kh - 1, w + kw - 1
            self.grid = (fast(hx, True), fast(wx, True))
            self.x_shape = self.shape[:-2] + (hx, wx)
            # frame pixel (i, j) sits at (i + kh - 1 - ch, j + kw - 1 - cw) of the unknown
            self.offset = (kh - 1 - ch, kw - 1 - cw)
        # where the frame's first pixel sits in the grid
        self.origin = ((0, 0) if boundary == "periodic" else
                       (self.pad[0][0], self.pad[1][0]) if boundary == "reflect" else self.offset)
        psf = xp.asarray(psf, dtype=self.dtype)
        self.normalised = bool(normalise)
        if normalise:
            psf = psf / psf.sum()
        self.psf = psf
        self._otf = None
        self.otf_adjoint = None
        self._ramp_pair = None
        self.factors = None
        if self.method == "direct":
            col, row = (be.asarray(np.ascontiguousarray(f), dtype=self.dtype) for f in factors)
            self.factors = (col, row)
            # A: correlation with the reversed factors; A^T: with the factors themselves
            self._forward = ((be.asarray(np.ascontiguousarray(factors[0][::-1]), dtype=self.dtype),
                              be.asarray(np.ascontiguousarray(factors[1][::-1]), dtype=self.dtype)),
                             (kh - 1 - ch, kw - 1 - cw))
            self._backward = ((col, row), (ch, cw) if boundary == "periodic" else (kh - 1, kw - 1))
        elif store_adjoint:
            # A^T's transfer function, the only other grid-sized array an operator keeps;
            # without it the adjoint multiplies by conj(otf) and the (separable) phase ramp
            self.otf_adjoint = xp.conj(self.otf)
            if boundary != "periodic":
                self.otf_adjoint *= self._phase(xp)

    def _choose(self, psf: Any, method: str, normalise: bool) -> Any:
        """The PSF's separable factors (float64, host) where the direct method applies, else None."""
        be = self.be
        if method == "fft":
            return None
        if method == "auto":
            prefer = _DIRECT_OVERRIDE
            if prefer is None:
                taps = int(psf.shape[0]) + int(psf.shape[1])
                prefer = taps <= be.correlate_crossover()["separable_max_taps"]
            if not prefer:
                return None
        k = self._host_psf(psf)
        if normalise:
            k = k / k.sum()
        factors = separable_factors(k, SEPARABLE_RTOL[self.dtype.itemsize])
        if factors is None and method == "direct":
            raise ValueError(f"method='direct' needs a separable (rank-one) psf, got shape {k.shape} of higher rank")
        return factors

    def _host_psf(self, psf: Any) -> np.ndarray:
        """The PSF as given, float64 on the host (copied from the device once)."""
        if self._psf_host is None:
            self._psf_host = np.asarray(self.be.to_numpy(psf), dtype=np.float64)
        return self._psf_host

    def columns_sum_to_one(self) -> bool:
        """Whether ``A^T 1 = 1`` is known without computing it (to the operator's precision):
        ``"periodic"``, or ``"reflect"`` with an odd-sized PSF symmetric in each axis (then
        ``A`` is symmetric and maps constants to themselves, so ``A^T 1 = A 1 = 1``), checked
        on the host copy of the PSF: its :func:`asymmetry` is at most ``4 eps`` (its
        differences from its flips then sum to at most ``16 eps`` of its sum). ``False``
        means "compute it" (:meth:`ones_adjoint`)."""
        if not self.normalised:
            return False
        if self.boundary == "periodic":
            return True
        if self.boundary != "reflect" or self._psf_host is None:
            return False
        return asymmetry(np, self._psf_host) <= 4 * np.finfo(self.dtype).eps

    @property
    def otf(self) -> Any:
        """``rfft2`` of the PSF on the grid (built on first use)."""
        if self._otf is None:
            self._otf = self._transfer(self.psf)
        return self._otf

    @otf.setter
    def otf(self, value: Any) -> None:
        # None lets the spectrum go (it is rebuilt if asked for again)
        self._otf = value

    # -- helpers ------------------------------------------------------------------------
    def _ramps(self, xp: Any) -> tuple[Any, Any]:
        """The two 1-D factors (column, row) of :meth:`_phase`."""
        t, l = self.origin
        gh, gw = self.grid
        cdt = np.result_type(self.dtype, np.complex64)
        py = xp.exp(-2j * np.pi * t / gh * xp.arange(gh, dtype=np.float64)).astype(cdt)
        px = xp.exp(-2j * np.pi * l / gw * xp.arange(gw // 2 + 1, dtype=np.float64)).astype(cdt)
        return py[:, None], px[None, :]

    def _phase(self, xp: Any) -> Any:
        """``F`` of a unit impulse at the frame's place in the grid (the shift of ``C^T``)."""
        py, px = self._ramps(xp)
        return py * px

    def _times_adjoint(self, R: Any) -> None:
        """``R *=`` A^T's transfer function in place when ``otf_adjoint`` is not stored."""
        xp = self.be.xp
        xp.conjugate(R, out=R)
        R *= self.otf
        xp.conjugate(R, out=R)
        if self.boundary != "periodic":
            if self._ramp_pair is None:
                self._ramp_pair = self._ramps(xp)
            R *= self._ramp_pair[0]
            R *= self._ramp_pair[1]

    def _transfer(self, kernel: Any) -> Any:
        """``rfft2`` of ``kernel`` on the FFT grid with its centre pixel at the origin."""
        return to_otf(self.be.xp.asarray(kernel, dtype=self.dtype), self.grid, real=True)

    def _fft(self, x: Any) -> Any:
        return self.be.rfft_grid(x, self.grid)

    def _ifft(self, X: Any) -> Any:
        return self.be.irfft_grid(X, self.grid)

    def _passes(self, x: Any, taps: tuple[tuple[Any, Any], tuple[int, int]]) -> Any:
        """The two 1-D correlations of the direct method over the last two axes of ``x``:
        rows with the row factor, then columns with the column factor (same shape as ``x``);
        wrap for ``"periodic"``, zero fill otherwise."""
        (col, row), (cy, cx) = taps
        mode = "wrap" if self.boundary == "periodic" else "constant"
        y = self.be.correlate1d(x, row, -1, mode, 0.0, cx)
        return self.be.correlate1d(y, col, -2, mode, 0.0, cy)

    def _extend(self, x: Any) -> Any:
        """``E x``: half-sample symmetric extension to the FFT grid (``reflect``)."""
        xp = self.be.xp
        (t, b), (l, r) = self.pad
        nd = x.ndim
        widths = [(0, 0)] * (nd - 2) + [(t, b), (l, r)]
        return xp.pad(x, widths, mode="symmetric")

    def _fold(self, y: Any) -> Any:
        """``E^T y``: add each reflected margin onto the pixels it copied (in place; a view)."""
        return self.be.fold_margins(y, self.pad, self.shape[-2:])

    # -- the operator -------------------------------------------------------------------
    def apply(self, x: Any) -> Any:
        """``A x`` for ``x`` of shape ``(..., *x_shape[-2:])``; returns the frame ``(..., H, W)``.

        The result may be a view into a larger work array (not C-contiguous).
        """
        if self.boundary == "reflect":
            return self.apply_lifted(self._extend(x))
        return self.apply_lifted(x)

    def adjoint(self, r: Any) -> Any:
        """``A^T r`` for a frame-shaped ``r``; returns ``(..., *x_shape[-2:])`` (maybe a view)."""
        return self.adjoint_lifted(r)

    # -- the operator on grid-sized work buffers (no padding copies) -------------------
    def lift(self, x: Any) -> tuple[Any, Any]:
        """A grid-sized work buffer holding ``x`` and the view of ``x`` inside it.

        Updating the view in place and calling :meth:`refresh` keeps the buffer ready for
        :meth:`apply_lifted` (for ``"free"`` the unknown sits at the grid's start, zeros
        after it; for ``"reflect"`` the frame sits at ``origin`` with reflected margins).
        """
        xp = self.be.xp
        batch = x.shape[:-2]
        if self.boundary == "periodic":
            xe = xp.array(x, dtype=self.dtype, order="C")
            return xe, xe
        xe = xp.zeros(batch + self.grid, dtype=self.dtype)
        if self.boundary == "reflect":
            (t, _), (l, _) = self.pad
            h, w = self.shape[-2:]
            view = xe[..., t:t + h, l:l + w]
        else:
            view = xe[..., : self.x_shape[-2], : self.x_shape[-1]]
        view[...] = x
        self.refresh(xe)
        return xe, view

    def refresh(self, xe: Any) -> None:
        """Re-fill the reflected margins of a :meth:`lift` buffer from its frame (``E``)."""
        if self.boundary != "reflect":
            return
        self.be.reflect_margins(xe, self.pad, self.shape[-2:])

    def apply_lifted(self, xe: Any) -> Any:
        """``A x`` from the grid buffer ``xe`` of :meth:`lift` (or any array the FFT zero-fills
        to the grid, that holds the unknown for ``"free"``); a frame-shaped view of the
        FFT's or the passes' output."""
        if self.method == "direct":
            # the frame's outputs read only the unknown (or the margins around the frame)
            y = self._passes(xe, self._forward)
        else:
            y = self.be.irfft_filtered(self._fft(xe), self.otf, self.grid)
        h, w = self.shape[-2:]
        oh, ow = self.origin
        return y[..., oh:oh + h, ow:ow + w]

    def adjoint_lifted(self, r: Any) -> Any:
        """``A^T r`` for ``r`` holding the frame at its start (frame-shaped, or a grid buffer
        that is zero outside ``[:H, :W]``); returns ``(..., *x_shape[-2:])`` (maybe a view)."""
        return self.adjoint_grid(r)[1]

    def frame_buffer(self, batch: tuple[int, ...] = ()) -> tuple[Any, Any]:
        """A zero grid buffer for :meth:`adjoint_lifted` and its frame view ``[..., :H, :W]``."""
        xp = self.be.xp
        buf = xp.zeros(tuple(batch) + self.grid, dtype=self.dtype)
        h, w = self.shape[-2:]
        return buf, buf[..., :h, :w]

    def x_view(self, grid: Any) -> Any:
        """The unknown's place in a grid-shaped array (where :meth:`lift` puts it)."""
        if self.boundary == "reflect":
            (t, _), (l, _) = self.pad
            h, w = self.shape[-2:]
            return grid[..., t:t + h, l:l + w]
        return grid[..., : self.x_shape[-2], : self.x_shape[-1]]

    def adjoint_grid(self, r: Any) -> tuple[Any, Any]:
        """:meth:`adjoint_lifted` that also returns the grid array holding the result:
        ``(grid, view)``; after the view is changed in place, :meth:`apply_grid` applies ``A``
        to it without a padding copy."""
        if self.method == "direct":
            if tuple(r.shape[-2:]) != self.grid:
                buf, frame = self.frame_buffer(r.shape[:-2])
                frame[...] = r
                r = buf
            # full correlation of the zero-filled frame: it lands at its place in the grid
            y = self._passes(r, self._backward)
        else:
            # the shift of the frame to its place in the grid is a phase ramp in otf_adjoint
            R = self._fft(r)
            if self.otf_adjoint is not None:
                y = self.be.irfft_filtered(R, self.otf_adjoint, self.grid)
            else:
                self._times_adjoint(R)
                y = self._ifft(R)
            R = None
        if self.boundary == "reflect":
            self._fold(y)
        return y, self.x_view(y)

    def apply_grid(self, grid: Any) -> Any:
        """``A x`` for ``x = x_view(grid)``; the rest of ``grid`` is overwritten (margins)."""
        if self.boundary == "free":
            hx, wx = self.x_shape[-2:]
            grid[..., hx:, :] = 0
            grid[..., :hx, wx:] = 0
        self.refresh(grid)
        return self.apply_lifted(grid)

    def normal(self, x: Any) -> Any:
        """``A^T A x``."""
        return self.adjoint(self.apply(x))

    def ones_adjoint(self) -> Any:
        """``A^T 1`` (column sums of ``A``), shape ``x_shape[-2:]`` (maybe a view)."""
        return self.adjoint(self.be.xp.ones(self.shape[-2:], dtype=self.dtype))

    def lipschitz(self) -> float:
        """An upper bound of ``||A||_2^2`` (the Lipschitz constant of ``x -> A^T (A x - b)``).

        Periodic: ``max |Ĥ|^2`` (exact; for ``"direct"`` ``max |Û|^2 max |V̂|^2`` from the
        factors' DFTs, since ``|Ĥ(p, q)| = |Û(p)| |V̂(q)|``). Otherwise the Hölder bound
        ``||A||_2^2 <= ||A||_1 ||A||_inf`` with ``||A||_inf = sum |psf|`` and
        ``||A||_1 = max |A|^T 1`` (column sums of the entry-wise absolute operator).
        """
        xp = self.be.xp
        if self.boundary == "periodic":
            if self.method == "direct":
                col, row = self.factors
                h, w = self.grid
                gains = [float(xp.max(xp.abs(xp.fft.fft(xp.asarray(f, dtype=np.float64), n=n)) ** 2))
                         for f, n in ((col, h), (row, w))]
                return gains[0] * gains[1]
            return float(xp.max(xp.abs(self.otf) ** 2))
        if self._psf_host is not None and bool((self._psf_host >= 0).all()) and self.columns_sum_to_one():
            # a non-negative unit-sum PSF with A^T 1 = 1: both norms are 1
            return 1.0
        apsf = xp.abs(self.psf)
        if bool(xp.all(self.psf >= 0)):
            cols = self.ones_adjoint()
        else:
            # |u v^T| = |u| |v|^T: the shadow is separable where this operator is
            shadow = BlurOperator(self.be, apsf, self.shape[-2:], self.dtype, self.boundary, store_adjoint=False,
                                  method=self.method)
            cols = shadow.ones_adjoint() * apsf.sum()
        return float(apsf.sum() * xp.max(cols))

    def crop(self, x: Any) -> Any:
        """The frame part of an unknown-shaped array (identity unless ``"free"``)."""
        if self.boundary != "free":
            return x
        h, w = self.shape[-2:]
        oh, ow = self.offset
        return self.be.xp.ascontiguousarray(x[..., oh:oh + h, ow:ow + w])

    def embed(self, b: Any) -> Any:
        """An unknown-shaped start from a frame-shaped image (edge extension for ``"free"``)."""
        if self.boundary != "free":
            return b.copy()
        xp = self.be.xp
        oh, ow = self.offset
        hx, wx = self.x_shape[-2:]
        h, w = self.shape[-2:]
        widths = [(0, 0)] * (b.ndim - 2) + [(oh, hx - h - oh), (ow, wx - w - ow)]
        return xp.pad(b, widths, mode="edge")
