// Samples B-spline coefficient arrays at arbitrary coordinates (the second half of
// map_coordinates), with scipy.ndimage's boundary semantics (ni_interpolation.c):
//  * the coordinate itself is first folded into the array by MODE (not for nearest and
//    grid-constant, whose data were pre-padded); constant mode gives cval outside [0, n-1];
//  * the ORDER+1 taps of each axis start at floor(x) - ORDER/2 (odd) or floor(x+0.5) - ORDER/2
//    (even) and taps outside the array are folded by the spline's own extension: mirror for
//    constant and wrap, the mode itself otherwise; grid-constant reads cval there.
// Coefficients are (batch, n0, n1, n2) with ndim <= 3 trailing spatial axes (leading sizes 1);
// coordinates are (ndim, m); out is (batch, m). The weights of a point are computed once and
// reused across the batch; the spatial rank is a template parameter, so the taps unroll and
// every weight and index stays in a register.
#include "boundary.cuh"

namespace gpuimg {

// scipy's map_coordinate(): fold a real coordinate into [0, n-1]; -1 means "outside"
// for constant mode.
template <int MODE, typename T>
__device__ __forceinline__ T fold_coordinate(T in, long long len) {
    if (in < 0) {
        if (MODE == GPUIMG_MODE_MIRROR) {
            if (len <= 1) return T(0);
            const long long sz2 = 2 * len - 2;
            in = T(sz2) * (T)(long long)(-in / T(sz2)) + in;
            return in <= T(1 - len) ? in + T(sz2) : -in;
        } else if (MODE == GPUIMG_MODE_REFLECT) {
            if (len <= 1) return T(0);
            const long long sz2 = 2 * len;
            if (in < T(-sz2)) in = T(sz2) * (T)(long long)(-in / T(sz2)) + in;
            return in < T(-len) ? in + T(sz2) : -in - T(1);
        } else if (MODE == GPUIMG_MODE_WRAP) {
            if (len <= 1) return T(0);
            const long long sz = len - 1;
            return in + T(sz) * (T)((long long)(-in / T(sz)) + 1);
        } else if (MODE == GPUIMG_MODE_GRID_WRAP) {
            if (len <= 1) return T(0);
            return in + T(len) * (T)((long long)((T(-1) - in) / T(len)) + 1);
        } else if (MODE == GPUIMG_MODE_NEAREST) {
            return T(0);
        } else if (MODE == GPUIMG_MODE_CONSTANT) {
            return T(-1);
        }
    } else if (in > T(len - 1)) {
        if (MODE == GPUIMG_MODE_MIRROR) {
            if (len <= 1) return T(0);
            const long long sz2 = 2 * len - 2;
            in -= T(sz2) * (T)(long long)(in / T(sz2));
            return in >= T(len) ? T(sz2) - in : in;
        } else if (MODE == GPUIMG_MODE_REFLECT) {
            if (len <= 1) return T(0);
            const long long sz2 = 2 * len;
            in -= T(sz2) * (T)(long long)(in / T(sz2));
            return in >= T(len) ? T(sz2) - in - T(1) : in;
        } else if (MODE == GPUIMG_MODE_WRAP) {
            if (len <= 1) return T(0);
            const long long sz = len - 1;
            return in - T(sz) * (T)(long long)(in / T(sz));
        } else if (MODE == GPUIMG_MODE_GRID_WRAP) {
            if (len <= 1) return T(0);
            return in - T(len) * (T)(long long)(in / T(len));
        } else if (MODE == GPUIMG_MODE_NEAREST) {
            return T(len - 1);
        } else if (MODE == GPUIMG_MODE_CONSTANT) {
            return T(-1);
        }
    }
    return in;
}

// B-spline weights of degree ORDER for the taps starting at the tap origin of x
// (scipy's get_spline_interpolation_weights).
template <int ORDER, typename T>
__device__ __forceinline__ void spline_weights(T x, T* w) {
    x -= floor((ORDER & 1) ? x : x + T(0.5));
    T y = x, z = T(1) - x, t;
    if (ORDER == 0) {
        w[0] = T(1);
        return;
    } else if (ORDER == 1) {
        w[0] = T(1) - x;
    } else if (ORDER == 2) {
        w[1] = T(0.75) - x * x;
        y = T(0.5) - x;
        w[0] = T(0.5) * y * y;
    } else if (ORDER == 3) {
        w[1] = (y * y * (y - T(2)) * T(3) + T(4)) / T(6);
        w[2] = (z * z * (z - T(2)) * T(3) + T(4)) / T(6);
        w[0] = z * z * z / T(6);
    } else if (ORDER == 4) {
        t = x * x;
        w[2] = t * (t * T(0.25) - T(0.625)) + T(115.0 / 192.0);
        y = T(1) + x;
        w[1] = y * (y * (y * (T(5) - y) / T(6) - T(1.25)) + T(5.0 / 24.0)) + T(55.0 / 96.0);
        w[3] = z * (z * (z * (T(5) - z) / T(6) - T(1.25)) + T(5.0 / 24.0)) + T(55.0 / 96.0);
        y = T(0.5) - x;
        t = y * y;
        w[0] = t * t / T(24);
    } else {
        t = y * y;
        w[2] = t * (t * (T(0.25) - y / T(12)) - T(0.5)) + T(0.55);
        t = z * z;
        w[3] = t * (t * (T(0.25) - z / T(12)) - T(0.5)) + T(0.55);
        y += T(1);
        w[1] = y * (y * (y * (y * (y / T(24) - T(0.375)) + T(1.25)) - T(1.75)) + T(0.625)) + T(0.425);
        z += T(1);
        w[4] = z * (z * (z * (z * (z / T(24) - T(0.375)) + T(1.25)) - T(1.75)) + T(0.625)) + T(0.425);
        y = T(1) - x;
        t = y * y;
        w[0] = y * t * t / T(120);
    }
    w[ORDER] = T(1);
    for (int i = 0; i < ORDER; ++i) w[ORDER] -= w[i];
}

// The extension the coefficients follow beyond the array for a sampling MODE.
template <int MODE>
struct spline_tap_mode {
    static constexpr int value =
        (MODE == GPUIMG_MODE_CONSTANT || MODE == GPUIMG_MODE_WRAP) ? GPUIMG_MODE_MIRROR : MODE;
};

// Tap indices and weights of one axis; false when constant mode puts the point outside.
template <int MODE, int ORDER, typename T>
__device__ __forceinline__ bool spline_axis(T cc, long long len, T* w, long long* idx) {
    if (MODE != GPUIMG_MODE_NEAREST && MODE != GPUIMG_MODE_GRID_CONSTANT) {
        cc = fold_coordinate<MODE, T>(cc, len);
        if (!(cc > T(-1))) return false;
    }
    const long long start =
        (ORDER & 1) ? (long long)floor(cc) - ORDER / 2 : (long long)floor(cc + T(0.5)) - ORDER / 2;
    spline_weights<ORDER, T>(cc, w);
    const bool edge = start < 0 || start + ORDER >= len;
#pragma unroll
    for (int k = 0; k <= ORDER; ++k) {
        long long j = start + k;
        if (edge) {
            if (MODE == GPUIMG_MODE_GRID_CONSTANT) {
                j = (j < 0 || j >= len) ? -1 : j;
            } else {
                j = boundary_index<spline_tap_mode<MODE>::value, long long>(j, len);
            }
        }
        idx[k] = j;
    }
    return true;
}

// Weighted sum over the taps of the last R axes of one point; `base` is the linear offset
// of the taps fixed so far. Rank-templated so every array stays in registers.
template <int MODE, int ORDER, int R, typename T>
__device__ __forceinline__ T spline_taps(const T* __restrict__ cb, const T (*w)[ORDER + 1],
                                         const long long (*idx)[ORDER + 1],
                                         const long long* stride, long long base, T cval) {
    T acc = T(0);
#pragma unroll
    for (int k = 0; k <= ORDER; ++k) {
        const long long j = idx[0][k];
        T v;
        if (MODE == GPUIMG_MODE_GRID_CONSTANT && j < 0) {
            v = cval;
        } else if constexpr (R == 1) {
            v = cb[base + j];
        } else {
            v = spline_taps<MODE, ORDER, R - 1, T>(cb, w + 1, idx + 1, stride + 1, base + j * stride[0], cval);
        }
        acc += w[0][k] * v;
    }
    return acc;
}

}  // namespace gpuimg

// NDIM (1-3) spatial axes, the trailing ones of (n0, n1, n2); the others have size 1.
template <typename T, int MODE, int ORDER, int NDIM>
__global__ void spline_sample(const T* __restrict__ c, const T* __restrict__ coords,
                              T* __restrict__ out, long long batch, long long m,
                              long long n0, long long n1, long long n2, T offset, T cval) {
    const long long all[3] = {n0, n1, n2};
    const long long all_stride[3] = {n1 * n2, n2, 1};
    long long sz[NDIM], stride[NDIM];
#pragma unroll
    for (int q = 0; q < NDIM; ++q) {
        sz[q] = all[3 - NDIM + q];
        stride[q] = all_stride[3 - NDIM + q];
    }
    const long long plane = n0 * n1 * n2;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < m;
         i += (long long)gridDim.x * blockDim.x) {
        T w[NDIM][ORDER + 1];
        long long idx[NDIM][ORDER + 1];
        bool inside = true;
#pragma unroll
        for (int q = 0; q < NDIM; ++q)
            inside = inside && gpuimg::spline_axis<MODE, ORDER, T>(coords[q * m + i] + offset, sz[q], w[q], idx[q]);
        for (long long b = 0; b < batch; ++b)
            out[b * m + i] = inside ? gpuimg::spline_taps<MODE, ORDER, NDIM, T>(c + b * plane, w, idx, stride, 0, cval)
                                    : cval;
    }
}

// Cubic B-spline value and gradient (d/dy, d/dx) of 2-D coefficient arrays (batch, h, w) at
// (2, m) coordinates; taps outside follow MODE's coefficient extension as above, and points
// that constant mode puts outside give cval with zero gradient. out is (3, batch, m).
template <typename T, int MODE>
__global__ void spline_sample_grad2d(const T* __restrict__ c, const T* __restrict__ coords,
                                     T* __restrict__ out, long long batch, long long m,
                                     long long h, long long wd, T cval) {
    const long long plane = h * wd;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < m;
         i += (long long)gridDim.x * blockDim.x) {
        T wy[4], wx[4], dy[4], dx[4];
        long long iy[4], ix[4];
        const bool in_y = gpuimg::spline_axis<MODE, 3, T>(coords[i], h, wy, iy);
        const bool in_x = gpuimg::spline_axis<MODE, 3, T>(coords[m + i], wd, wx, ix);
        const bool inside = in_y && in_x;
        if (inside) {
            T cy = coords[i], cx = coords[m + i];
            if (MODE != GPUIMG_MODE_NEAREST && MODE != GPUIMG_MODE_GRID_CONSTANT) {
                cy = gpuimg::fold_coordinate<MODE, T>(cy, h);
                cx = gpuimg::fold_coordinate<MODE, T>(cx, wd);
            }
            const T fy = cy - floor(cy), fx = cx - floor(cx);
            dy[0] = -T(0.5) * (T(1) - fy) * (T(1) - fy);
            dy[1] = fy * (T(1.5) * fy - T(2));
            dy[2] = T(2) * (T(1) - fy) - T(1.5) * (T(1) - fy) * (T(1) - fy);
            dy[3] = T(0.5) * fy * fy;
            dx[0] = -T(0.5) * (T(1) - fx) * (T(1) - fx);
            dx[1] = fx * (T(1.5) * fx - T(2));
            dx[2] = T(2) * (T(1) - fx) - T(1.5) * (T(1) - fx) * (T(1) - fx);
            dx[3] = T(0.5) * fx * fx;
        }
        for (long long b = 0; b < batch; ++b) {
            T v = T(0), gy = T(0), gx = T(0);
            if (!inside) {
                v = cval;
            } else {
                const T* cb = c + b * plane;
                for (int k = 0; k < 4; ++k) {
                    T rv = T(0), rd = T(0);
                    for (int l = 0; l < 4; ++l) {
                        T s;
                        if (MODE == GPUIMG_MODE_GRID_CONSTANT && (iy[k] < 0 || ix[l] < 0)) {
                            s = cval;
                        } else {
                            s = cb[iy[k] * wd + ix[l]];
                        }
                        rv += s * wx[l];
                        rd += s * dx[l];
                    }
                    v += wy[k] * rv;
                    gy += dy[k] * rv;
                    gx += wy[k] * rd;
                }
            }
            out[b * m + i] = v;
            out[(batch + b) * m + i] = gy;
            out[(2 * batch + b) * m + i] = gx;
        }
    }
}
