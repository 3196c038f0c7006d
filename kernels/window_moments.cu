// Sliding-window moments of two images a, b fused with a per-pixel formula, in one pass.
//
// The image stack is (slices = batch * nz, ny, nx); the window is separable with taps
// wz (2rz+1), wy (2ry+1), wx (2rx+1), read as one array [wz | wy | wx] (rz = 0 and ry = 0
// for 2-D and 1-D images). A block of 32 x 8 threads owns an output tile of 32 columns by
// tile_h rows (8, 16 or 32; each thread keeps tile_h / 8 rows in registers) of one slice:
//   for each slice z + dz of the window (boundary mode in z):
//     1. load a and b over the tile plus its halo into shared memory (boundary mode in y, x),
//     2. correlate the needed products along x into shared memory (nq planes),
//     3. correlate along y and add wz[dz] times the result into registers.
// Then the formula (kind) runs on the moments, the map is written (write_map) and the part of
// the map inside the crop box is summed in double, reduced over the block and stored as one
// partial sum per (slice, tile) (write_partial); the caller sums the partials per image.
//
// kind 0 SSIM, 1 contrast-structure term, 2 windowed mean of (a-b)^2, 3 zero-mean NCC.
// Moments per kind: SSIM/CS {W*a, W*b, W*(a^2+b^2), W*(ab)}, MSE {W*(a-b)^2},
// NCC {W*a, W*b, W*a^2, W*b^2, W*(ab)}.
#include "boundary.cuh"

#define GPUIMG_WM_BX 32
#define GPUIMG_WM_BY 8
#define GPUIMG_WM_ROWS 4
#define GPUIMG_WM_NQ 5

namespace gpuimg {

template <typename T>
__device__ __forceinline__ T window_formula(int kind, const T* m, T cn, T c1, T c2, T eps) {
    if (kind == 2) return m[0];
    if (kind == 3) {
        T va = m[2] - m[0] * m[0];
        T vb = m[3] - m[1] * m[1];
        if (va <= eps * m[2] || vb <= eps * m[3]) return T(0);
        T r = (m[4] - m[0] * m[1]) / sqrt(va * vb);
        return r > T(1) ? T(1) : (r < T(-1) ? T(-1) : r);
    }
    T mxy = m[0] * m[1];
    T a2 = T(2) * cn * (m[3] - mxy) + c2;
    T mm = m[0] * m[0] + m[1] * m[1];
    T b2 = cn * (m[2] - mm) + c2;
    if (kind == 1) return a2 / b2;
    return ((T(2) * mxy + c1) * a2) / ((mm + c1) * b2);
}

}  // namespace gpuimg

template <typename T, int MODE>
__global__ void window_moments(const T* __restrict__ a, const T* __restrict__ b,
                               T* __restrict__ out, double* __restrict__ partial,
                               const double* __restrict__ taps, long long slices, long long nz,
                               long long ny, long long nx, int rz, int ry, int rx, int tile_h,
                               int kind, int write_map, int write_partial, T cov_norm, T c1,
                               T c2, T eps, long long cz, long long cy, long long cx) {
    extern __shared__ double gpuimg_wm_smem[];
    const int BX = GPUIMG_WM_BX, BY = GPUIMG_WM_BY;
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int tid = ty * BX + tx;
    const int nthreads = BX * BY;
    const int nq = kind == 2 ? 1 : (kind == 3 ? 5 : 4);
    const int wz = 2 * rz + 1, wy = 2 * ry + 1, wx = 2 * rx + 1;
    const int ntaps = wz + wy + wx;
    const int rows = tile_h + 2 * ry;
    const int cols = BX + 2 * rx;
    const int plane = rows * BX;

    double* red = gpuimg_wm_smem;  // one partial per warp
    T* wts = reinterpret_cast<T*>(red + nthreads / 32);
    T* ta = wts + ntaps;
    T* tb = ta + rows * cols;
    T* hs = tb + rows * cols;
    const T* wzp = wts;
    const T* wyp = wts + wz;
    const T* wxp = wts + wz + wy;

    for (int i = tid; i < ntaps; i += nthreads) wts[i] = static_cast<T>(taps[i]);
    __syncthreads();

    const long long x0 = (long long)blockIdx.x * BX;
    const long long y0 = (long long)blockIdx.y * tile_h;
    const long long x = x0 + tx;
    const long long img = nz * ny * nx;

    for (long long s = blockIdx.z; s < slices; s += gridDim.z) {
        const long long n = s / nz;
        const long long z = s - n * nz;
        T acc[GPUIMG_WM_NQ][GPUIMG_WM_ROWS];
#pragma unroll
        for (int q = 0; q < GPUIMG_WM_NQ; ++q)
#pragma unroll
            for (int j = 0; j < GPUIMG_WM_ROWS; ++j) acc[q][j] = T(0);

        for (int dz = -rz; dz <= rz; ++dz) {
            const long long zi = gpuimg::boundary_index<MODE, long long>(z + dz, nz);
            if (zi < 0) continue;  // constant mode: a zero slice adds nothing (block-uniform)
            const T w_z = wzp[dz + rz];
            const T* ap = a + n * img + zi * ny * nx;
            const T* bp = b + n * img + zi * ny * nx;

            for (int i = tid; i < rows * cols; i += nthreads) {
                const int r = i / cols, c = i - r * cols;
                const long long yi = gpuimg::boundary_index<MODE, long long>(y0 - ry + r, ny);
                const long long xi = gpuimg::boundary_index<MODE, long long>(x0 - rx + c, nx);
                const bool inside = yi >= 0 && xi >= 0;
                ta[i] = inside ? ap[yi * nx + xi] : T(0);
                tb[i] = inside ? bp[yi * nx + xi] : T(0);
            }
            __syncthreads();

            for (int i = tid; i < plane; i += nthreads) {
                const int r = i / BX, c = i - r * BX;
                const T* ra = ta + r * cols + c;
                const T* rb = tb + r * cols + c;
                if (kind == 2) {
                    T s0 = T(0);
                    for (int k = 0; k < wx; ++k) {
                        const T d = ra[k] - rb[k];
                        s0 += wxp[k] * d * d;
                    }
                    hs[i] = s0;
                } else if (kind == 3) {
                    T s0 = T(0), s1 = T(0), s2 = T(0), s3 = T(0), s4 = T(0);
                    for (int k = 0; k < wx; ++k) {
                        const T w = wxp[k], va = ra[k], vb = rb[k];
                        s0 += w * va;
                        s1 += w * vb;
                        s2 += w * va * va;
                        s3 += w * vb * vb;
                        s4 += w * va * vb;
                    }
                    hs[i] = s0;
                    hs[plane + i] = s1;
                    hs[2 * plane + i] = s2;
                    hs[3 * plane + i] = s3;
                    hs[4 * plane + i] = s4;
                } else {
                    T s0 = T(0), s1 = T(0), s2 = T(0), s3 = T(0);
                    for (int k = 0; k < wx; ++k) {
                        const T w = wxp[k], va = ra[k], vb = rb[k];
                        s0 += w * va;
                        s1 += w * vb;
                        s2 += w * (va * va + vb * vb);
                        s3 += w * va * vb;
                    }
                    hs[i] = s0;
                    hs[plane + i] = s1;
                    hs[2 * plane + i] = s2;
                    hs[3 * plane + i] = s3;
                }
            }
            __syncthreads();

            // taps outermost: each weight is read once for all rows and quantities of a thread
            T vs[GPUIMG_WM_NQ][GPUIMG_WM_ROWS];
#pragma unroll
            for (int q = 0; q < GPUIMG_WM_NQ; ++q)
#pragma unroll
                for (int j = 0; j < GPUIMG_WM_ROWS; ++j) vs[q][j] = T(0);
            const T* col = hs + ty * BX + tx;
            for (int k = 0; k < wy; ++k) {
                const T w = wyp[k];
#pragma unroll
                for (int j = 0; j < GPUIMG_WM_ROWS; ++j) {
                    if (ty + j * BY < tile_h) {
#pragma unroll
                        for (int q = 0; q < GPUIMG_WM_NQ; ++q)
                            if (q < nq) vs[q][j] += w * col[q * plane + (j * BY + k) * BX];
                    }
                }
            }
#pragma unroll
            for (int q = 0; q < GPUIMG_WM_NQ; ++q)
#pragma unroll
                for (int j = 0; j < GPUIMG_WM_ROWS; ++j) acc[q][j] += w_z * vs[q][j];
            __syncthreads();
        }

        double local = 0.0;
#pragma unroll
        for (int j = 0; j < GPUIMG_WM_ROWS; ++j) {
            const long long y = y0 + ty + j * BY;
            if (ty + j * BY < tile_h && y < ny && x < nx) {
                T m[GPUIMG_WM_NQ];
#pragma unroll
                for (int q = 0; q < GPUIMG_WM_NQ; ++q) m[q] = acc[q][j];
                const T v = gpuimg::window_formula<T>(kind, m, cov_norm, c1, c2, eps);
                if (write_map) out[(s * ny + y) * nx + x] = v;
                if (z >= cz && z < nz - cz && y >= cy && y < ny - cy && x >= cx && x < nx - cx)
                    local += static_cast<double>(v);
            }
        }
        if (write_partial) {
            for (int off = 16; off > 0; off >>= 1) local += __shfl_down_sync(0xffffffffu, local, off);
            if ((tid & 31) == 0) red[tid >> 5] = local;
            __syncthreads();
            if (tid == 0) {
                double t = 0.0;
                for (int w = 0; w < nthreads / 32; ++w) t += red[w];
                partial[(s * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x] = t;
            }
            __syncthreads();
        }
    }
}
