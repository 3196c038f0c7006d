// Sliding-window moments of two images a, b fused with a per-pixel formula, in one pass.
//
// The image stack is (slices = batch * nz, ny, nx); the window is separable with taps
// wz (2rz+1), wy (2ry+1), wx (2rx+1), read as one array [wz | wy | wx] (rz = 0 and ry = 0
// for 2-D and 1-D images). A block of 32 x 8 threads owns an output tile of 32 columns by
// tile_h rows (8, 16 or 32) of one slice; thread (tx, ty) owns column tx and the tile_h / 8
// consecutive rows from ty * tile_h / 8.
//   for each slice z + dz of the window (boundary mode in z):
//     1. load a and b over the tile plus its halo into shared memory (boundary mode in y, x),
//     2. correlate the needed products along x into shared memory (nq planes); a thread makes
//        4 neighbouring outputs of one row from a rolling register window, so every tile
//        sample and tap is read once per 4 outputs,
//     3. correlate along y the same way (rolling window over the thread's rows) and add
//        wz[dz] times the result into registers.
// Then the formula (kind) runs on the moments, the map is written (write_map) and the part of
// the map inside the crop box is summed in double, reduced over the block and stored as one
// partial sum per (slice, tile) (write_partial); the caller sums the partials per image.
// Shared rows have odd strides (tile: 32 + 2 rx + 1, moments: 33) so that threads walking
// down rows hit distinct banks.
//
// kind 0 SSIM, 1 contrast-structure term, 2 windowed mean of (a-b)^2, 3 zero-mean NCC.
// Moments per kind: SSIM/CS {W*a, W*b, W*(a^2+b^2), W*(ab)}, MSE {W*(a-b)^2},
// NCC {W*a, W*b, W*a^2, W*b^2, W*(ab)}.
#include "boundary.cuh"

#define GPUIMG_WM_BX 32
#define GPUIMG_WM_BY 8
#define GPUIMG_WM_ROWS 4   // most rows per thread (tile_h <= 32)
#define GPUIMG_WM_CW 4     // outputs per thread in the x pass
#define GPUIMG_WM_NQ 5

namespace gpuimg {

// m0..m4: the kind's windowed means in the order listed above (unused ones are 0)
template <typename T>
__device__ __forceinline__ T window_formula(int kind, T m0, T m1, T m2, T m3, T m4, T cn, T c1,
                                            T c2, T eps) {
    if (kind == 2) return m0;
    if (kind == 3) {
        const T va = m2 - m0 * m0;
        const T vb = m3 - m1 * m1;
        if (va <= eps * m2 || vb <= eps * m3) return T(0);
        const T r = (m4 - m0 * m1) / sqrt(va * vb);
        return r > T(1) ? T(1) : (r < T(-1) ? T(-1) : r);
    }
    const T mxy = m0 * m1;
    const T a2 = T(2) * cn * (m3 - mxy) + c2;
    const T mm = m0 * m0 + m1 * m1;
    const T b2 = cn * (m2 - mm) + c2;
    if (kind == 1) return a2 / b2;
    return ((T(2) * mxy + c1) * a2) / ((mm + c1) * b2);
}

// x pass for GPUIMG_WM_CW neighbouring outputs of one tile row. ra/rb point at the tile
// sample under the first tap of the first output; out at its moment (plane stride `plane`).
// Q = 4: {a, b, a^2+b^2, ab}; Q = 1: {(a-b)^2}; Q = 5: {a, b, a^2, b^2, ab}.
template <typename T, int Q>
__device__ __forceinline__ void window_xpass(const T* ra, const T* rb, const T* w, int nw, T* out,
                                             int plane) {
    const int CW = GPUIMG_WM_CW;
    T va[CW], vb[CW], s[Q][CW];
#pragma unroll
    for (int j = 0; j < CW; ++j) {
        va[j] = j < CW - 1 ? ra[j] : T(0);
        vb[j] = j < CW - 1 ? rb[j] : T(0);
#pragma unroll
        for (int q = 0; q < Q; ++q) s[q][j] = T(0);
    }
    for (int t = 0; t < nw; ++t) {
        va[CW - 1] = ra[t + CW - 1];
        vb[CW - 1] = rb[t + CW - 1];
        const T wt = w[t];
#pragma unroll
        for (int j = 0; j < CW; ++j) {
            const T x = va[j], y = vb[j];
            if (Q == 1) {
                const T d = x - y;
                s[0][j] += wt * d * d;
            } else {
                const T wx = wt * x, wy = wt * y;
                s[0][j] += wx;
                s[1][j] += wy;
                if (Q == 5) {
                    s[2][j] += wx * x;
                    s[3][j] += wy * y;
                    s[Q - 1][j] += wx * y;
                } else {
                    s[2][j] += wx * x + wy * y;
                    s[Q - 1][j] += wx * y;
                }
            }
        }
#pragma unroll
        for (int j = 0; j < CW - 1; ++j) {
            va[j] = va[j + 1];
            vb[j] = vb[j + 1];
        }
    }
#pragma unroll
    for (int q = 0; q < Q; ++q)
#pragma unroll
        for (int j = 0; j < CW; ++j) out[q * plane + j] = s[q][j];
}

// y pass for R consecutive rows of one column: col points at the first row's moment in plane
// 0; acc[q][j] += wz * sum_t w[t] col[q * plane + (j + t) * hstride]. A rolling register
// window reads each moment once per R outputs.
template <typename T, int R>
__device__ __forceinline__ void window_ypass(const T* col, const T* w, int nw, int nq, int plane,
                                             int hstride, T wz,
                                             T (&acc)[GPUIMG_WM_NQ][GPUIMG_WM_ROWS]) {
    const int NQ = GPUIMG_WM_NQ;
    T v[NQ][R], s[NQ][R];
#pragma unroll
    for (int q = 0; q < NQ; ++q)
#pragma unroll
        for (int j = 0; j < R; ++j) {
            s[q][j] = T(0);
            v[q][j] = (q < nq && j < R - 1) ? col[q * plane + j * hstride] : T(0);
        }
    for (int t = 0; t < nw; ++t) {
        const T wt = w[t];
#pragma unroll
        for (int q = 0; q < NQ; ++q) {
            if (q < nq) {
                v[q][R - 1] = col[q * plane + (t + R - 1) * hstride];
#pragma unroll
                for (int j = 0; j < R; ++j) s[q][j] += wt * v[q][j];
#pragma unroll
                for (int j = 0; j < R - 1; ++j) v[q][j] = v[q][j + 1];
            }
        }
    }
#pragma unroll
    for (int q = 0; q < NQ; ++q)
#pragma unroll
        for (int j = 0; j < R; ++j) acc[q][j] += wz * s[q][j];
}

}  // namespace gpuimg

// float: at most 80 registers, so three 256-thread blocks share an SM (no spills, ptxas 13.0)
template <typename T, int MODE>
__global__ void __launch_bounds__(256, sizeof(T) == 4 ? 3 : 1) window_moments(const T* __restrict__ a, const T* __restrict__ b,
                               T* __restrict__ out, double* __restrict__ partial,
                               const double* __restrict__ taps, long long slices, long long nz,
                               long long ny, long long nx, int rz, int ry, int rx, int tile_h,
                               int kind, int write_map, int write_partial, T cov_norm, T c1,
                               T c2, T eps, long long cz, long long cy, long long cx) {
    extern __shared__ double gpuimg_wm_smem[];
    const int BX = GPUIMG_WM_BX, BY = GPUIMG_WM_BY, ROWS = GPUIMG_WM_ROWS, CW = GPUIMG_WM_CW;
    const int NQ = GPUIMG_WM_NQ;
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int tid = ty * BX + tx;
    const int nthreads = BX * BY;
    const int nq = kind == 2 ? 1 : (kind == 3 ? 5 : 4);
    const int wz = 2 * rz + 1, wy = 2 * ry + 1, wx = 2 * rx + 1;
    const int ntaps = wz + wy + wx;
    const int rows = tile_h + 2 * ry;      // tile rows with halo
    const int cols = BX + 2 * rx;          // tile columns with halo
    const int tstride = cols + 1;          // odd row strides: no bank conflicts down a column
    const int hstride = BX + 1;
    const int plane = rows * hstride;
    const int rpt = tile_h / BY;           // rows per thread: 1, 2 or 4

    double* red = gpuimg_wm_smem;  // one partial per warp
    T* wts = reinterpret_cast<T*>(red + nthreads / 32);
    T* ta = wts + ntaps;
    T* tb = ta + rows * tstride;
    T* hs = tb + rows * tstride;
    const T* wzp = wts;
    const T* wyp = wts + wz;
    const T* wxp = wts + wz + wy;

    for (int i = tid; i < ntaps; i += nthreads) wts[i] = static_cast<T>(taps[i]);
    __syncthreads();

    const long long x0 = (long long)blockIdx.x * BX;
    const long long y0 = (long long)blockIdx.y * tile_h;
    const long long x = x0 + tx;
    const long long img = nz * ny * nx;
    const int row0 = ty * rpt;  // first tile row owned by this thread

    for (long long s = blockIdx.z; s < slices; s += gridDim.z) {
        const long long n = s / nz;
        const long long z = s - n * nz;
        T acc[NQ][ROWS];
#pragma unroll
        for (int q = 0; q < NQ; ++q)
#pragma unroll
            for (int j = 0; j < ROWS; ++j) acc[q][j] = T(0);

        for (int dz = -rz; dz <= rz; ++dz) {
            const long long zi = gpuimg::boundary_index<MODE, long long>(z + dz, nz);
            if (zi < 0) continue;  // constant mode: a zero slice adds nothing (block-uniform)
            const T w_z = wzp[dz + rz];
            const T* ap = a + n * img + zi * ny * nx;
            const T* bp = b + n * img + zi * ny * nx;

            // 1. tile with halo (rows by warps, columns by lanes: no index division); blocks
            //    whose halo lies inside the image skip the boundary arithmetic
            if (y0 - ry >= 0 && y0 - ry + rows <= ny && x0 - rx >= 0 && x0 - rx + cols <= nx) {
                const long long first = (y0 - ry) * nx + (x0 - rx);
                for (int r = ty; r < rows; r += BY) {
                    const T* ar = ap + first + r * nx;
                    const T* br = bp + first + r * nx;
                    for (int c = tx; c < cols; c += BX) {
                        ta[r * tstride + c] = ar[c];
                        tb[r * tstride + c] = br[c];
                    }
                }
            } else {
                for (int r = ty; r < rows; r += BY) {
                    const long long yi = gpuimg::boundary_index<MODE, long long>(y0 - ry + r, ny);
                    for (int c = tx; c < cols; c += BX) {
                        const long long xi = gpuimg::boundary_index<MODE, long long>(x0 - rx + c, nx);
                        const bool inside = yi >= 0 && xi >= 0;
                        ta[r * tstride + c] = inside ? ap[yi * nx + xi] : T(0);
                        tb[r * tstride + c] = inside ? bp[yi * nx + xi] : T(0);
                    }
                }
            }
            __syncthreads();

            // 2. x pass: work item = (row, group of CW columns); a warp walks down rows
            for (int i = tid; i < rows * (BX / CW); i += nthreads) {
                const int r = i % rows, c = (i / rows) * CW;
                const T* ra = ta + r * tstride + c;
                const T* rb = tb + r * tstride + c;
                T* o = hs + r * hstride + c;
                if (kind == 2)
                    gpuimg::window_xpass<T, 1>(ra, rb, wxp, wx, o, plane);
                else if (kind == 3)
                    gpuimg::window_xpass<T, 5>(ra, rb, wxp, wx, o, plane);
                else
                    gpuimg::window_xpass<T, 4>(ra, rb, wxp, wx, o, plane);
            }
            __syncthreads();

            // 3. y pass over this thread's rpt consecutive rows, rolling register window
            const T* col = hs + row0 * hstride + tx;
            if (rpt == 4)
                gpuimg::window_ypass<T, 4>(col, wyp, wy, nq, plane, hstride, w_z, acc);
            else if (rpt == 2)
                gpuimg::window_ypass<T, 2>(col, wyp, wy, nq, plane, hstride, w_z, acc);
            else
                gpuimg::window_ypass<T, 1>(col, wyp, wy, nq, plane, hstride, w_z, acc);
            __syncthreads();
        }

        double local = 0.0;
#pragma unroll
        for (int j = 0; j < ROWS; ++j) {
            const long long y = y0 + row0 + j;
            if (j < rpt && y < ny && x < nx) {
                const T val = gpuimg::window_formula<T>(kind, acc[0][j], acc[1][j], acc[2][j], acc[3][j],
                                                        acc[4][j], cov_norm, c1, c2, eps);
                if (write_map) out[(s * ny + y) * nx + x] = val;
                if (z >= cz && z < nz - cz && y >= cy && y < ny - cy && x >= cx && x < nx - cx)
                    local += static_cast<double>(val);
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
