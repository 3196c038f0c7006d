// Non-local means (scikit-image's denoise_nl_means model), one thread per output pixel.
//
// p is a contiguous (batch, channels, prow, pcol) array: the image padded by `pad` samples
// on every side with whole-sample symmetric reflection (numpy.pad "reflect"). Output is
// (batch, channels, rows, cols).
//
// Weights use Schraudolph's exponential approximation exactly as scikit-image does:
// fast_exp(y) is the double whose high word is (int)(EXP_A * y) + EXP_BC and low word 0.
#include "boundary.cuh"

namespace gpuimg_nlm {

__device__ __forceinline__ double fast_exp(double y) {
    const double exp_a = 1512775.3951951856938;  // 2^20 / ln 2
    const int exp_bc = 1072632447;               // 1023 * 2^20 - 60801
    const int hi = (int)(exp_a * y) + exp_bc;
    return __hiloint2double(hi, 0);
}

template <typename T>
__device__ __forceinline__ T fast_exp_t(T y) {
    return (T)fast_exp((double)y);
}

// Output pixel t of a (batch, rows, cols) grid: batch index, flat pixel q, row, column.
struct Pixel {
    long long b, q, r, c;
};

__device__ __forceinline__ Pixel pixel_of(long long t, long long rows, long long cols) {
    const long long plane = rows * cols;
    Pixel px;
    px.b = t / plane;
    px.q = t - px.b * plane;
    px.r = px.q / cols;
    px.c = px.q - px.r * cols;
    return px;
}

}  // namespace gpuimg_nlm

// Fast mode (Darbon et al. / Froment): the patch distance of shift t at pixel p is the
// plain sum over the (2*off) x (2*off) box of rows/cols (p - off, p + off] of
//   sum_c (P[x] - P[x + t])^2 - channels * var2,
// divided by h2s2 = channels * h^2 * s^2; weight = fast_exp(-max(d, 0)) if d <= 5 else 0,
// for every t in [-dist, dist]^2. Requires pad >= off + dist.
template <typename T>
__global__ void nlm_fast(const T* __restrict__ p, T* __restrict__ out, long long batch,
                         int channels, long long rows, long long cols, long long pad, int off,
                         int dist, double h2s2, double var2) {
    const long long prow = rows + 2 * pad, pcol = cols + 2 * pad;
    const long long pplane = prow * pcol, plane = rows * cols;
    const long long total = batch * plane;
    for (long long t = blockIdx.x * (long long)blockDim.x + threadIdx.x; t < total;
         t += (long long)gridDim.x * blockDim.x) {
        const gpuimg_nlm::Pixel px = gpuimg_nlm::pixel_of(t, rows, cols);
        const long long b = px.b, q = px.q, r = px.r + pad, c = px.c + pad;
        const T* img = p + b * channels * pplane;
        double wsum = 0.0;
        double acc[4] = {0.0, 0.0, 0.0, 0.0};
        const double box_var = (double)channels * var2 * (double)(2 * off) * (2 * off);
        for (int c_base = 0; c_base < channels; c_base += 4) {
            const int nc = channels - c_base < 4 ? channels - c_base : 4;
            wsum = 0.0;
            for (int k = 0; k < 4; ++k) acc[k] = 0.0;
            for (int tr = -dist; tr <= dist; ++tr) {
                for (int tc = -dist; tc <= dist; ++tc) {
                    double box = 0.0;
                    for (int a = 1 - off; a <= off; ++a) {
                        for (int e = 1 - off; e <= off; ++e) {
                            const long long x0 = (r + a) * pcol + c + e;
                            const long long x1 = x0 + tr * pcol + tc;
                            for (int ch = 0; ch < channels; ++ch) {
                                const double diff = (double)img[ch * pplane + x0] -
                                                    (double)img[ch * pplane + x1];
                                box += diff * diff;
                            }
                        }
                    }
                    box -= box_var;
                    const double dd = (box > 0.0 ? box : 0.0) / h2s2;
                    // zero weight past the cut-off and for NaN patches; a NaN sample still
                    // reaches every output whose search window holds it (0 * NaN)
                    const double w =
                        (box != box || dd > 5.0) ? 0.0 : gpuimg_nlm::fast_exp(-dd);
                    wsum += w;
                    const long long xn = (r + tr) * pcol + c + tc;
                    for (int k = 0; k < nc; ++k) {
                        acc[k] += w * (double)img[(c_base + k) * pplane + xn];
                    }
                }
            }
            for (int k = 0; k < nc; ++k) {
                out[(b * channels + c_base + k) * plane + q] = (T)(acc[k] / wsum);
            }
        }
    }
}

// Classic mode (Buades et al.): Gaussian-weighted patch distance with weights w (s x s,
// already divided by channels * sum(w) * h^2), neighbours limited to the image, and the
// running distance checked against 5 before each patch row, as scikit-image does.
// Arithmetic in T (scikit-image computes float32 images in float32).
template <typename T>
__global__ void nlm_classic(const T* __restrict__ p, const T* __restrict__ w,
                            T* __restrict__ out, long long batch, int channels, long long rows,
                            long long cols, int s, int dist, T var2) {
    const long long off = s / 2;
    const long long prow = rows + 2 * off, pcol = cols + 2 * off;
    const long long pplane = prow * pcol, plane = rows * cols;
    const long long total = batch * plane;
    for (long long t = blockIdx.x * (long long)blockDim.x + threadIdx.x; t < total;
         t += (long long)gridDim.x * blockDim.x) {
        const gpuimg_nlm::Pixel px = gpuimg_nlm::pixel_of(t, rows, cols);
        const long long b = px.b, q = px.q, r = px.r, c = px.c;
        const T* img = p + b * channels * pplane;
        const long long i0 = r - (dist < r ? dist : r);
        const long long i1 = r + ((dist + 1) < (rows - r) ? (dist + 1) : (rows - r));
        const long long j0 = c - (dist < c ? dist : c);
        const long long j1 = c + ((dist + 1) < (cols - c) ? (dist + 1) : (cols - c));
        for (int c_base = 0; c_base < channels; c_base += 4) {
            const int nc = channels - c_base < 4 ? channels - c_base : 4;
            T wsum = T(0);
            T acc[4] = {T(0), T(0), T(0), T(0)};
            for (long long i = i0; i < i1; ++i) {
                for (long long j = j0; j < j1; ++j) {
                    T d = T(0);
                    bool cut = false;
                    for (int a = 0; a < s && !cut; ++a) {
                        if (d > T(5)) {
                            cut = true;
                            break;
                        }
                        for (int e = 0; e < s; ++e) {
                            const long long x0 = (r + a) * pcol + c + e;
                            const long long x1 = (i + a) * pcol + j + e;
                            for (int ch = 0; ch < channels; ++ch) {
                                const T diff = img[ch * pplane + x0] - img[ch * pplane + x1];
                                d += w[a * s + e] * (diff * diff - var2);
                            }
                        }
                    }
                    // zero weight when cut off and for NaN patches (a NaN sample still
                    // reaches every output whose search window holds it: 0 * NaN)
                    const T weight = (cut || d != d)
                                         ? T(0)
                                         : gpuimg_nlm::fast_exp_t<T>(-(d > T(0) ? d : T(0)));
                    wsum += weight;
                    const long long xn = (i + off) * pcol + j + off;
                    for (int k = 0; k < nc; ++k) {
                        acc[k] += weight * img[(c_base + k) * pplane + xn];
                    }
                }
            }
            for (int k = 0; k < nc; ++k) {
                out[(b * channels + c_base + k) * plane + q] = acc[k] / wsum;
            }
        }
    }
}
