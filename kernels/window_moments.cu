// Sliding-window moments of two images a, b fused with a per-pixel formula, in one pass.
//
// The image stack is (slices = batch * nz, ny, nx); the window is separable with taps
// wz (2rz+1), wy (2ry+1), wx (2rx+1), read as one array [wz | wy | wx] (rz = 0 and ry = 0
// for 2-D and 1-D images). Two kernels share this file (the second with an NCC entry):
//
// window_moments<T, MODE>: any window (tap counts are run-time arguments). A block of 32 x 8
// threads owns an output tile of 32 columns by tile_h rows (8, 16 or 32) of one slice; thread
// (tx, ty) owns column tx and the tile_h / 8 consecutive rows from ty * tile_h / 8.
//   for each slice z + dz of the window (boundary mode in z):
//     1. load a and b over the tile plus its halo into shared memory (boundary mode in y, x),
//     2. correlate the needed products along x into shared memory (nq planes); a thread makes
//        4 neighbouring outputs of one row from a rolling register window, so every tile
//        sample and tap is read once per 4 outputs,
//     3. correlate along y the same way (rolling window over the thread's rows) and add
//        wz[dz] times the result into registers.
//
// window_moments_fixed<T, W, BOX> and window_moments_fixed_ncc<T, W>: W taps along y and x
// fixed at compile time (any rz; the boundary mode is an argument; rows and columns below
// 2^30, so positions are 32-bit). Every tap loop is unrolled, so the sliding windows live in
// registers with no copies; weighted windows are symmetric (the launcher sends others to
// window_moments), so a pass holds only the taps 0 .. W / 2 and reads tap k as tap
// W - 1 - k beyond the middle. A block of 32 x 8 threads walks `tiles` tiles of 32 columns by TH rows (TH = 48 for float, 32 for
// double) down one column strip of one slice:
//   for each slice z + dz of the window:
//     1. load (a, b) pairs over the tile plus its halo into shared memory (all loads of a
//        thread issued before its stores),
//     2. x pass: a thread makes 8 neighbouring outputs of one row, computing each sample's
//        products once; the moments of a pixel are stored together (one 16-byte access for
//        four of them), and in 3-D wz[dz] times them is added to what earlier slices left,
//   3. y pass: thread (tx, ty) makes the TH / 8 rows from ty * TH / 8 of column tx.
//   The last W - 1 x-filtered rows of a tile are the first ones of the tile below: they are
//   copied up, and the next tile loads and filters only its TH new rows.
// With BOX (all taps of x and y equal) both passes form plain window sums, shared between a
// thread's neighbouring outputs: a window [j, j + W) of the thread's outputs j = 0 .. n-1 is
// split at n - 1 into a suffix sum of [j, n - 1) and a prefix sum of [n - 1, j + W), about
// three additions per output whatever W is; the sums are scaled by wx * wy at the end. Only
// samples inside a window are ever added (no running sum that subtracts), so NaN and Inf
// reach exactly the windows that contain them, as in the direct correlation.
//
// Then the formula (kind) runs on the moments, the map is written (write_map) and the part of
// the map inside the crop box is summed in double, reduced over the block and stored as one
// partial sum per (slice, block) (write_partial); the caller sums the partials per image.
// Shared rows have odd strides (in units of the element accessed) so that threads walking
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

// The sum of every thread's `local` over the block, stored by thread 0 at *dst: warp shuffles,
// then one partial per warp in red (nthreads / 32 doubles). Every thread of the block calls it.
__device__ __forceinline__ void block_sum(double local, double* red, int tid, int nthreads, double* dst) {
    for (int off = 16; off > 0; off >>= 1) local += __shfl_down_sync(0xffffffffu, local, off);
    if ((tid & 31) == 0) red[tid >> 5] = local;
    __syncthreads();
    if (tid == 0) {
        double t = 0.0;
        for (int w = 0; w < nthreads / 32; ++w) t += red[w];
        *dst = t;
    }
    __syncthreads();
}

// SSIM and CS from their four moments: ((ka mxy + kb) A2) / ((ga mm + gb) B2), with
// (ka, kb, ga, gb) = (2, c1, 1, c1) for SSIM and (0, 1, 0, 1) for CS (exactly A2 / B2)
template <typename T>
__device__ __forceinline__ T wm_ssim_cs(T m0, T m1, T m2, T m3, T cn, T c2, T ka, T kb, T ga, T gb) {
    const T mxy = m0 * m1;
    const T a2 = T(2) * cn * (m3 - mxy) + c2;
    const T mm = m0 * m0 + m1 * m1;
    const T b2 = cn * (m2 - mm) + c2;
    return ((ka * mxy + kb) * a2) / ((ga * mm + gb) * b2);
}

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
    if (kind == 1) return wm_ssim_cs<T>(m0, m1, m2, m3, cn, c2, T(0), T(1), T(0), T(1));
    return wm_ssim_cs<T>(m0, m1, m2, m3, cn, c2, T(2), c1, T(1), c1);
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
        if (write_partial)
            gpuimg::block_sum(local, red, tid, nthreads,
                              partial + (s * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x);
    }
}

// ---------------------------------------------------------------------------------------------
// window_moments_fixed<T, W, BOX>
// ---------------------------------------------------------------------------------------------

#define GPUIMG_WM_XOUT 8  // x-pass outputs per work item

namespace gpuimg {

// one (a, b) sample pair and the first four moments of one pixel, aligned for vector access
template <typename T>
struct alignas(2 * sizeof(T)) wm_pair {
    T a, b;
};
template <typename T>
struct alignas(16) wm_quad {
    T v[4];
};

template <int KIND>
struct wm_kind {
    static constexpr int nq = KIND == 2 ? 1 : (KIND == 3 ? 5 : 4);
};

// output tile height of the fixed kernels: 48 rows for float, 32 for double (48: the 11-tap
// float kernel's tile, halo and moment planes take 51 KB, so four blocks share an SM)
template <typename T>
struct wm_fixed_tile {
    static constexpr int h = sizeof(T) == 4 ? 48 : 32;
};

// One pass's taps in registers: unused with BOX (plain sums), else the symmetric window's taps
// 0 .. W / 2, tap k read as tap W - 1 - k beyond the middle (so only (W + 1) / 2 registers)
template <typename T, int W, bool BOX>
__device__ __forceinline__ void wm_pass_taps(const T* src, T (&w)[W]) {
#pragma unroll
    for (int k = 0; k < W; ++k) w[k] = BOX ? T(0) : src[k < W - 1 - k ? k : W - 1 - k];
}

template <int KIND, typename T>
__device__ __forceinline__ void wm_products(T a, T b, T (&p)[wm_kind<KIND>::nq]) {
    if constexpr (KIND == 2) {
        const T d = a - b;
        p[0] = d * d;
    } else if constexpr (KIND == 3) {
        p[0] = a;
        p[1] = b;
        p[2] = a * a;
        p[3] = b * b;
        p[4] = a * b;
    } else {
        p[0] = a;
        p[1] = b;
        p[2] = a * a + b * b;
        p[3] = a * b;
    }
}

// s[q][j] = sum_{k < W} w[k] x_{j+k}[q] for the N outputs j of one line, where get(i, x) writes
// sample i (i < N + W - 1) and is called once per sample. BOX: plain sums (w unused) from the
// suffix/prefix split at N - 1 described at the top of the file.
template <typename T, int NQ, int N, int W, bool BOX, typename Get>
__device__ __forceinline__ void wm_correlate(Get get, const T (&w)[W], T (&s)[NQ][N]) {
    if constexpr (!BOX) {
#pragma unroll
        for (int i = 0; i < N + W - 1; ++i) {
            T x[NQ];
            get(i, x);
#pragma unroll
            for (int j = 0; j < N; ++j) {
                const int k = i - j;
                if (k >= 0 && k < W) {
#pragma unroll
                    for (int q = 0; q < NQ; ++q) s[q][j] = k == 0 ? w[0] * x[q] : s[q][j] + w[k] * x[q];
                }
            }
        }
    } else {
        constexpr int B = N - 1;
        static_assert(B <= W, "the split needs every window to reach sample N - 1");
        // suffix sums of [j, B), from the last sample down: each sample is added as it arrives
#pragma unroll
        for (int j = B - 1; j >= 0; --j) {
            T x[NQ];
            get(j, x);
#pragma unroll
            for (int q = 0; q < NQ; ++q) s[q][j] = j == B - 1 ? x[q] : x[q] + s[q][j + 1];
        }
        T run[NQ];
#pragma unroll
        for (int i = B; i < N + W - 1; ++i) {
            T y[NQ];
            get(i, y);
#pragma unroll
            for (int q = 0; q < NQ; ++q) run[q] = i == B ? y[q] : run[q] + y[q];
            const int j = i - (W - 1);  // the output whose window ends at sample i
            if (j >= 0) {
#pragma unroll
                for (int q = 0; q < NQ; ++q) s[q][j] = j < B ? s[q][j] + run[q] : run[q];
            }
        }
    }
}

template <typename T, int NQ>
__device__ __forceinline__ void wm_load_moments(const wm_quad<T>* p4, const T* p1, int idx, T (&m)[NQ]) {
    if constexpr (NQ >= 4) {
        const wm_quad<T> v = p4[idx];
#pragma unroll
        for (int q = 0; q < 4; ++q) m[q] = v.v[q];
    }
    if constexpr (NQ != 4) m[NQ - 1] = p1[idx];
}

template <typename T, int NQ>
__device__ __forceinline__ void wm_store_moments(wm_quad<T>* p4, T* p1, int idx, const T (&m)[NQ]) {
    if constexpr (NQ >= 4) {
        wm_quad<T> v;
#pragma unroll
        for (int q = 0; q < 4; ++q) v.v[q] = m[q];
        p4[idx] = v;
    }
    if constexpr (NQ != 4) p1[idx] = m[NQ - 1];
}

// ROWS x COLS (a, b) pairs of a tile whose halo lies inside the image; ap and bp point at its
// first sample. Rows by warps, columns by lanes; the loads of GPUIMG_WM_LOAD_ROUNDS rows are
// issued before their stores.
#define GPUIMG_WM_LOAD_ROUNDS 4
template <typename T, int ROWS, int COLS, int TS>
__device__ __forceinline__ void wm_load_inner(const T* __restrict__ ap, const T* __restrict__ bp, long long nx,
                                              wm_pair<T>* tile, int tx, int ty) {
    constexpr int BX = GPUIMG_WM_BX, BY = GPUIMG_WM_BY, KB = GPUIMG_WM_LOAD_ROUNDS;
    constexpr int KR = (ROWS + BY - 1) / BY, KC = (COLS + BX - 1) / BX;
    const long long step = BY * nx;
    const T* pa = ap + ty * nx + tx;
    const T* pb = bp + ty * nx + tx;
#pragma unroll
    for (int k0 = 0; k0 < KR; k0 += KB) {
        // rounds k < ROWS / BY and cc < COLS / BX are inside the tile for every thread
        T va[KB][KC], vb[KB][KC];
#pragma unroll
        for (int k = k0; k < k0 + KB && k < KR; ++k) {
#pragma unroll
            for (int cc = 0; cc < KC; ++cc) {
                const bool in = (k < ROWS / BY || ty + BY * k < ROWS) && (cc < COLS / BX || tx + BX * cc < COLS);
                va[k - k0][cc] = in ? pa[BX * cc] : T(0);
                vb[k - k0][cc] = in ? pb[BX * cc] : T(0);
            }
            if (k + 1 < KR) {
                pa += step;
                pb += step;
            }
        }
#pragma unroll
        for (int k = k0; k < k0 + KB && k < KR; ++k) {
#pragma unroll
            for (int cc = 0; cc < KC; ++cc) {
                if ((k < ROWS / BY || ty + BY * k < ROWS) && (cc < COLS / BX || tx + BX * cc < COLS)) {
                    wm_pair<T> v;
                    v.a = va[k - k0][cc];
                    v.b = vb[k - k0][cc];
                    tile[(ty + BY * k) * TS + tx + BX * cc] = v;
                }
            }
        }
    }
}

template <typename I>
__device__ __forceinline__ I wm_boundary_index(int mode, I i, I n) {
    if (i >= 0 && i < n) return i;
    switch (mode) {
        case GPUIMG_MODE_MIRROR: return boundary_index<GPUIMG_MODE_MIRROR, I>(i, n);
        case GPUIMG_MODE_NEAREST: return boundary_index<GPUIMG_MODE_NEAREST, I>(i, n);
        case GPUIMG_MODE_CONSTANT: return boundary_index<GPUIMG_MODE_CONSTANT, I>(i, n);
        case GPUIMG_MODE_WRAP: return boundary_index<GPUIMG_MODE_WRAP, I>(i, n);
        default: return boundary_index<GPUIMG_MODE_REFLECT, I>(i, n);
    }
}

// the same for a tile whose halo leaves the image: rows yb.., columns xb.. through boundary mode
template <typename T, int ROWS, int COLS, int TS>
__device__ void wm_load_edge(const T* __restrict__ ap, const T* __restrict__ bp, int yb, int xb, int ny, int nx,
                             int mode, wm_pair<T>* tile, int tx, int ty) {
    constexpr int BX = GPUIMG_WM_BX, BY = GPUIMG_WM_BY, KC = (COLS + BX - 1) / BX;
    int xi[KC];
#pragma unroll
    for (int cc = 0; cc < KC; ++cc)
        xi[cc] = tx + BX * cc < COLS ? wm_boundary_index(mode, xb + tx + BX * cc, nx) : -1;
    for (int r = ty; r < ROWS; r += BY) {
        const int yi = wm_boundary_index(mode, yb + r, ny);
        const long long row = static_cast<long long>(yi) * nx;
#pragma unroll
        for (int cc = 0; cc < KC; ++cc) {
            const int c = tx + BX * cc;
            if (c < COLS) {
                const bool inside = yi >= 0 && xi[cc] >= 0;
                wm_pair<T> v;
                v.a = inside ? ap[row + xi[cc]] : T(0);
                v.b = inside ? bp[row + xi[cc]] : T(0);
                tile[r * TS + c] = v;
            }
        }
    }
}

// bits [0, min(max(n, 0), r)) set: the first n of r < 32 rows
__device__ __forceinline__ unsigned wm_rows_below(int n, int r) {
    const int k = n <= 0 ? 0 : (n >= r ? r : n);
    return (1u << k) - 1u;
}

template <int V>
struct wm_int {
    static constexpr int value = V;
};

// KIND selects the moments (0: those of SSIM and CS, 2: MSE, 3: NCC); kind is the formula.
// The block owns `tiles` tiles of 32 x TH outputs stacked in y; after the first, a tile reuses
// the W - 1 x-filtered halo rows of the one above and loads and filters only TH new rows.
template <typename T, int W, bool BOX, int KIND>
__device__ __forceinline__ void wm_fixed(double* smem, const T* __restrict__ a, const T* __restrict__ b,
                                         T* __restrict__ out, double* __restrict__ partial,
                                         const double* __restrict__ taps, long long slices, long long nz,
                                         long long ny, long long nx, int rz, int tiles, int mode, int kind,
                                         int write_map, int write_partial, T cov_norm, T c1, T c2, T eps,
                                         long long cz, long long cy, long long cx) {
    constexpr int NQ = wm_kind<KIND>::nq;
    constexpr int BX = GPUIMG_WM_BX, BY = GPUIMG_WM_BY, NT = BX * BY, CW = GPUIMG_WM_XOUT;
    constexpr int TH = wm_fixed_tile<T>::h;
    constexpr int R = TH / BY;          // output rows per thread
    constexpr int H = W / 2;
    constexpr int ROWS = TH + W - 1;    // tile rows with halo
    constexpr int COLS = BX + W - 1;    // tile columns with halo
    constexpr int TS = COLS + 1;        // odd strides (in elements): no bank conflicts down a column
    constexpr int PS = BX + 1;
    constexpr int P4 = NQ >= 4 ? ROWS * PS : 0;
    constexpr int P1 = NQ != 4 ? ROWS * PS + (ROWS * PS) % 2 : 0;
    static_assert(BX % CW == 0 && TH % BY == 0 && TH >= W - 1 && R < 32, "tile shape");

    const int tx = threadIdx.x, ty = threadIdx.y;
    const int tid = ty * BX + tx;
    double* red = smem;  // one partial per warp
    wm_quad<T>* p4 = reinterpret_cast<wm_quad<T>*>(red + NT / 32);
    T* p1 = reinterpret_cast<T*>(p4 + P4);
    wm_pair<T>* tile = reinterpret_cast<wm_pair<T>*>(p1 + P1);
    T* wts = reinterpret_cast<T*>(tile + ROWS * TS);

    const int nwz = 2 * rz + 1;
    for (int i = tid; i < nwz + 2 * W; i += NT) wts[i] = static_cast<T>(taps[i]);
    __syncthreads();
    const T* wyp = wts + nwz;
    const T* wxp = wyp + W;

    // rows and columns fit in int (the caller guarantees ny, nx <= 2^30); offsets are 64-bit
    const int nyi = static_cast<int>(ny), nxi = static_cast<int>(nx);
    const int cyi = static_cast<int>(cy), cxi = static_cast<int>(cx);
    const int x0 = blockIdx.x * BX;
    const int x = x0 + tx;
    const long long img = nz * ny * nx;
    const bool cols_inner = x0 - H >= 0 && x0 - H + COLS <= nxi;
    const bool col_in = x < nxi;
    const bool col_crop = col_in && x >= cxi && x < nxi - cxi;

    // tile rows [R0, R0 + NR) of slice ap/bp through the x pass into the moment planes: a warp
    // walks down rows, a work item makes CW neighbouring outputs of one row
    // (the image rows from yb; inner: they and the halo columns lie inside the image)
    auto fill = [&](auto r0c, auto nrc, const T* ap, const T* bp, int yb, bool inner, int zmode, T w_z) {
        constexpr int R0 = decltype(r0c)::value, NR = decltype(nrc)::value;
        __syncthreads();  // the tile and these plane rows are free
        if (inner) {
            const long long off = static_cast<long long>(yb) * nx + (x0 - H);
            wm_load_inner<T, NR, COLS, TS>(ap + off, bp + off, nx, tile + R0 * TS, tx, ty);
        } else {
            wm_load_edge<T, NR, COLS, TS>(ap, bp, yb, x0 - H, nyi, nxi, mode, tile + R0 * TS, tx, ty);
        }
        __syncthreads();
        T wx[W];
        wm_pass_taps<T, W, BOX>(wxp, wx);
        for (int i = tid; i < NR * (BX / CW); i += NT) {
            const int r = R0 + i % NR, c = (i / NR) * CW;
            const wm_pair<T>* src = tile + r * TS + c;
            T m[NQ][CW];
            wm_correlate<T, NQ, CW, W, BOX>(
                [&](int k, T (&p)[NQ]) {
                    const wm_pair<T> v = src[k];
                    wm_products<KIND>(v.a, v.b, p);
                },
                wx, m);
            const int o = r * PS + c;
#pragma unroll
            for (int j = 0; j < CW; ++j) {
                T v[NQ];
#pragma unroll
                for (int q = 0; q < NQ; ++q) v[q] = m[q][j];
                if (zmode != 0) {  // 3-D: wz times this slice, added to the earlier slices
                    T u[NQ];
                    if (zmode == 2) wm_load_moments<T, NQ>(p4, p1, o + j, u);
#pragma unroll
                    for (int q = 0; q < NQ; ++q) v[q] = zmode == 2 ? u[q] + w_z * v[q] : w_z * v[q];
                }
                wm_store_moments<T, NQ>(p4, p1, o + j, v);
            }
        }
    };

    for (long long s = blockIdx.z; s < slices; s += gridDim.z) {
        long long n = s, z = 0;
        if (nz > 1) divmod(s, nz, n, z);
        const bool slice_crop = col_crop && z >= cz && z < nz - cz;
        const T* as = a + n * img;
        const T* bs = b + n * img;
        double local = 0.0;
        for (int t = 0; t < tiles; ++t) {
            const int y0 = (blockIdx.y * tiles + t) * TH;
            if (y0 >= nyi) break;  // block-uniform
            // image rows [yb, yb + nr) are loaded and filtered: the whole tile, or below the carry
            const int yb = y0 - H + (t > 0 ? W - 1 : 0);
            const bool inner = cols_inner && yb >= 0 && yb + (t > 0 ? TH : ROWS) <= nyi;
            if (t > 0) {
                // the last W - 1 plane rows of the tile above are the first of this one
                __syncthreads();
                for (int i = tid; i < (W - 1) * BX; i += NT) {
                    const int r = i / BX, c = i % BX;
                    T v[NQ];
                    wm_load_moments<T, NQ>(p4, p1, (TH + r) * PS + c, v);
                    wm_store_moments<T, NQ>(p4, p1, r * PS + c, v);
                }
            }
            bool first = true;
            for (int dz = -rz; dz <= rz; ++dz) {
                const long long zd = z + dz;
                const long long zi = wm_boundary_index(mode, zd, nz);
                if (zi < 0) continue;  // constant mode: a zero slice adds nothing (block-uniform)
                const T* ap = as + zi * ny * nx;
                const T* bp = bs + zi * ny * nx;
                const int zmode = rz == 0 ? 0 : (first ? 1 : 2);  // store, store wz *, add wz *
                if (t > 0)
                    fill(wm_int<W - 1>{}, wm_int<TH>{}, ap, bp, yb, inner, zmode, wts[dz + rz]);
                else
                    fill(wm_int<0>{}, wm_int<ROWS>{}, ap, bp, yb, inner, zmode, wts[dz + rz]);
                first = false;
            }
            __syncthreads();

            // y pass down this thread's column, then the formula
            T wy[W];
            wm_pass_taps<T, W, BOX>(wyp, wy);
            T m[NQ][R];
            wm_correlate<T, NQ, R, W, BOX>(
                [&](int k, T (&p)[NQ]) { wm_load_moments<T, NQ>(p4, p1, (ty * R + k) * PS + tx, p); }, wy, m);
            // bit j of store / crop: this thread's row j is written / inside the crop box
            const int ybase = y0 + ty * R;
            const unsigned store = write_map && col_in ? wm_rows_below(nyi - ybase, R) : 0u;
            const unsigned crop =
                slice_crop ? wm_rows_below(nyi - cyi - ybase, R) & ~wm_rows_below(cyi - ybase, R) : 0u;
            const T scale = BOX ? wyp[0] * wxp[0] : T(1);  // BOX: window sums times the uniform taps
            const bool cs = kind == 1;  // the coefficients of wm_ssim_cs
            const T ka = cs ? T(0) : T(2), kb = cs ? T(1) : c1, ga = cs ? T(0) : T(1), gb = kb;
            // without a map the pointer stays on the placeholder
            T* op = out + (write_map ? (s * ny + ybase) * nx + x : 0LL);
            const long long step = write_map ? nx : 0;
            double part = 0.0;
#pragma unroll
            for (int j = 0; j < R; ++j) {
                T v[5];
#pragma unroll
                for (int q = 0; q < 5; ++q) v[q] = q < NQ ? (BOX ? m[q < NQ ? q : 0][j] * scale : m[q < NQ ? q : 0][j]) : T(0);
                const T val = KIND == 0 ? wm_ssim_cs<T>(v[0], v[1], v[2], v[3], cov_norm, c2, ka, kb, ga, gb)
                                        : window_formula<T>(KIND, v[0], v[1], v[2], v[3], v[4], cov_norm, c1, c2, eps);
                if (store >> j & 1u) *op = val;
                part += static_cast<double>(crop >> j & 1u ? val : T(0));
                op += step;
            }
            local += part;
        }
        if (write_partial)
            block_sum(local, red, tid, NT, partial + (s * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x);
    }
}

}  // namespace gpuimg

// Fixed window of W taps along y and x (see the top of the file); any rz and boundary mode.
// Kinds 0 to 2 (SSIM, CS, MSE); zero-mean NCC (kind 3, box windows only) has its own entry
// below, so that neither carries the other's registers (in one kernel the box variants
// spilled 80-116 bytes; apart, NVRTC for sm_90 spills at most 12). Weighted NCC does not fit
// the register budget: the caller sends it to window_moments.
// float: at most 64 registers for weighted taps (four blocks per SM, as their shared memory
// allows; the symmetric window keeps (W + 1) / 2 taps in registers, which leaves no spills),
// 80 for box sums (three)
#define GPUIMG_WM_FIXED_ARGS                                                                          \
    const T *__restrict__ a, const T *__restrict__ b, T *__restrict__ out, double *__restrict__ partial, \
        const double *__restrict__ taps, long long slices, long long nz, long long ny, long long nx, int rz, \
        int tiles, int mode, int kind, int write_map, int write_partial, T cov_norm, T c1, T c2, T eps,     \
        long long cz, long long cy, long long cx
#define GPUIMG_WM_FIXED_PASS                                                                              \
    gpuimg_wm_smem, a, b, out, partial, taps, slices, nz, ny, nx, rz, tiles, mode, kind, write_map, write_partial, \
        cov_norm, c1, c2, eps, cz, cy, cx

template <typename T, int W, bool BOX>
__global__ void __launch_bounds__(256, sizeof(T) == 4 ? (BOX ? 3 : 4) : 1)
    window_moments_fixed(GPUIMG_WM_FIXED_ARGS) {
    extern __shared__ double gpuimg_wm_smem[];
    if (kind == 2)
        gpuimg::wm_fixed<T, W, BOX, 2>(GPUIMG_WM_FIXED_PASS);
    else
        gpuimg::wm_fixed<T, W, BOX, 0>(GPUIMG_WM_FIXED_PASS);
}

// Zero-mean NCC (kind 3) over a W x W box window: five moments; float: three blocks per SM.
template <typename T, int W>
__global__ void __launch_bounds__(256, sizeof(T) == 4 ? 3 : 1)
    window_moments_fixed_ncc(GPUIMG_WM_FIXED_ARGS) {
    extern __shared__ double gpuimg_wm_smem[];
    gpuimg::wm_fixed<T, W, true, 3>(GPUIMG_WM_FIXED_PASS);
}
