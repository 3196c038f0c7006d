// Point sampler for warps and remaps: one thread per output pixel, every image of the batch.
// The source position of output pixel (i, j) is (map_x[i, j], map_y[i, j]) when use_maps (maps
// of type M, float or double, read as they are stored and widened to double), else
// the projective image of (j, i, 1) under the row-major 3x3 matrix mat (computed in double).
// INTERP: 0 nearest (floor(x + 1/2)), 1 linear, 2 Keys cubic a = -0.75, 3 Lanczos-4 (normalised);
// cubic / lanczos offsets are rounded to 1/1024 pixel. Taps outside follow boundary.cuh;
// outside_cval (SciPy's "constant") returns cval for positions outside [0, n-1] by > 1e-6.
// Non-finite positions return cval.
#include "boundary.cuh"

#define GPUIMG_FRACTION_STEPS 1024

namespace {

template <typename T>
__device__ __forceinline__ T keys_cubic(T t) {
    const T a = T(-0.75);
    t = t < T(0) ? -t : t;
    if (t < T(1)) return ((a + T(2)) * t - (a + T(3))) * t * t + T(1);
    if (t < T(2)) return ((a * t - T(5) * a) * t + T(8) * a) * t - T(4) * a;
    return T(0);
}

template <typename T>
__device__ __forceinline__ T sinc_pi(T t) {
    if (t == T(0)) return T(1);
    const double p = 3.14159265358979323846 * (double)t;
    return T(sin(p) / p);
}

// Weights of the taps floor(x) + FIRST .. floor(x) + FIRST + TAPS - 1 for offset f in [0, 1].
template <typename T, int INTERP>
__device__ __forceinline__ void tap_weights(double f, T* w) {
    if (INTERP == 1) {
        w[0] = T(1.0 - f);
        w[1] = T(f);
        return;
    }
    const T q = T(floor(f * GPUIMG_FRACTION_STEPS + 0.5) / GPUIMG_FRACTION_STEPS);
    if (INTERP == 2) {
        for (int k = 0; k < 4; ++k) w[k] = keys_cubic<T>(q + T(1 - k));
        return;
    }
    T sum = T(0);
    for (int k = 0; k < 8; ++k) {
        const T t = q + T(3 - k);
        w[k] = sinc_pi<T>(t) * sinc_pi<T>(t / T(4));
        sum += w[k];
    }
    for (int k = 0; k < 8; ++k) w[k] /= sum;
}

template <int INTERP> struct Taps;
template <> struct Taps<0> { static const int n = 1, first = 0; };
template <> struct Taps<1> { static const int n = 2, first = 0; };
template <> struct Taps<2> { static const int n = 4, first = -1; };
template <> struct Taps<3> { static const int n = 8, first = -3; };

}  // namespace

template <typename T, int INTERP, int MODE, typename M>
__global__ void warp_point(const T* __restrict__ src, T* __restrict__ dst,
                           const double* __restrict__ mat, const M* __restrict__ map_x,
                           const M* __restrict__ map_y, int use_maps, long long nimg,
                           long long h, long long w, long long ho, long long wo, T cval,
                           int outside_cval) {
    const int NT = Taps<INTERP>::n;
    const int FIRST = Taps<INTERP>::first;
    const long long total = ho * wo;
    const long long plane_in = h * w;
    for (long long p = blockIdx.x * (long long)blockDim.x + threadIdx.x; p < total;
         p += (long long)gridDim.x * blockDim.x) {
        double px, py;
        if (use_maps) {
            px = (double)map_x[p];
            py = (double)map_y[p];
        } else {
            long long pi, pj;
            gpuimg::divmod(p, wo, pi, pj);
            const double j = (double)pj, i = (double)pi;
            px = mat[0] * j + mat[1] * i + mat[2];
            py = mat[3] * j + mat[4] * i + mat[5];
            const double ww = mat[6] * j + mat[7] * i + mat[8];
            if (!(mat[6] == 0.0 && mat[7] == 0.0 && mat[8] == 1.0)) {
                px /= ww;
                py /= ww;
            }
        }
        bool fill = !(isfinite(px) && isfinite(py));
        const double edge = 1e-6;
        if (outside_cval)
            fill = fill || px < -edge || py < -edge || px > (double)(w - 1) + edge ||
                   py > (double)(h - 1) + edge;
        if (fill) {
            for (long long b = 0; b < nimg; ++b) dst[b * total + p] = cval;
            continue;
        }
        // keep far-away positions in a range where the integer taps cannot overflow
        const double lim = 4.0e15;
        px = fmin(fmax(px, -lim), lim);
        py = fmin(fmax(py, -lim), lim);
        if (INTERP == 0) {
            const long long ix = gpuimg::boundary_index<MODE, long long>((long long)floor(px + 0.5), w);
            const long long iy = gpuimg::boundary_index<MODE, long long>((long long)floor(py + 0.5), h);
            for (long long b = 0; b < nimg; ++b)
                dst[b * total + p] = (ix < 0 || iy < 0) ? cval : src[b * plane_in + iy * w + ix];
            continue;
        }
        const double fx0 = floor(px), fy0 = floor(py);
        T wx[NT], wy[NT];
        tap_weights<T, INTERP>(px - fx0, wx);
        tap_weights<T, INTERP>(py - fy0, wy);
        const long long ix0 = (long long)fx0 + FIRST, iy0 = (long long)fy0 + FIRST;
        if (ix0 >= 0 && ix0 + NT <= w && iy0 >= 0 && iy0 + NT <= h) {
            // every tap inside the image (most pixels): no boundary rule to apply
            for (long long b = 0; b < nimg; ++b) {
                const T* img = src + b * plane_in + iy0 * w + ix0;
                T acc = T(0);
#pragma unroll
                for (int r = 0; r < NT; ++r) {
                    const T* row_px = img + r * w;
                    T row = T(0);
#pragma unroll
                    for (int c = 0; c < NT; ++c) row += wx[c] * __ldg(row_px + c);
                    acc += wy[r] * row;
                }
                dst[b * total + p] = acc;
            }
            continue;
        }
        long long cx[NT], cy[NT];
        for (int k = 0; k < NT; ++k) {
            cx[k] = gpuimg::boundary_index<MODE, long long>(ix0 + k, w);
            cy[k] = gpuimg::boundary_index<MODE, long long>(iy0 + k, h);
        }
        for (long long b = 0; b < nimg; ++b) {
            const T* img = src + b * plane_in;
            T acc = T(0);
            for (int r = 0; r < NT; ++r) {
                T row = T(0);
                for (int c = 0; c < NT; ++c) {
                    const T v = (cx[c] < 0 || cy[r] < 0) ? cval : img[cy[r] * w + cx[c]];
                    row += wx[c] * v;
                }
                acc += wy[r] * row;
            }
            dst[b * total + p] = acc;
        }
    }
}
