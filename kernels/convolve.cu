// Direct correlation kernels for gpuimg.filters (twins of gpuimg/_prims/convolve.py).
//
// correlate1d_axis: one 1-D pass along the middle axis of a contiguous (outer, n, inner) array
//   out[o, i, k] = sum_j w[j] * x_ext[o, i + j - center, k]
//   one thread per output; the fallback for the tiled passes below
// correlate1d_rows (inner == 1) / correlate1d_cols (inner >= 32): the same pass through a
//   shared-memory tile with its halo, the taps in shared memory, several outputs a thread
// correlate_tiled: 2-D (kd == 1) or 3-D correlation over the trailing axes of a contiguous
//   (planes_per_item * items, H, W) array, read through a shared-memory tile with halo
//   out[b, z, y, x] = sum_{dz,dy,dx} w[dz, dy, dx] * x_ext[b, z + dz - cz, y + dy - cy, x + dx - cx]
// correlate_gather: the same contract, one thread per output, for kernels whose tile would not
//   fit in shared memory.
// x_ext is x extended through boundary.cuh's MODE (cval for constant modes). Accumulation is in
// T (float for float32, double for float64). Sizes, taps, centres and cval are run-time values.
// With flip != 0 the 2-D / 3-D kernels read w reversed along every axis, so a convolution
// passes its kernel as given (no reversed copy on the device).
#include "boundary.cuh"

namespace gpuimg {

constexpr int CONV_BLOCK_X = 32;   // threads along x; one output column each
constexpr int CONV_BLOCK_Y = 8;    // threads along y
constexpr int CONV_ROWS = 4;       // outputs per thread along y (register blocking)
constexpr int CONV_TILE_X = CONV_BLOCK_X;
constexpr int CONV_TILE_Y = CONV_BLOCK_Y * CONV_ROWS;

// Writes a thread's CONV_ROWS outputs of column ox from row oy0 down, inside the plane.
template <typename T>
__device__ __forceinline__ void conv_store_rows(T* __restrict__ plane, const T* acc, long long ox,
                                                long long oy0, long long height, long long width) {
#pragma unroll
    for (int r = 0; r < CONV_ROWS; ++r) {
        const long long oy = oy0 + r;
        if (ox < width && oy < height) plane[oy * width + ox] = acc[r];
    }
}

// Loads the th x tw tile whose top-left sample is (ty0, tx0) of a plane through MODE (cval
// where a constant mode says so, everywhere when fill). Blocks whose tile lies inside the
// plane skip the boundary arithmetic. Rows by threadIdx.y, columns by threadIdx.x.
template <typename T, int MODE>
__device__ __forceinline__ void conv_load_tile(T* __restrict__ tile, const T* __restrict__ src,
                                               long long ty0, long long tx0, int th, int tw,
                                               long long height, long long width, T cval,
                                               bool fill) {
    if (!fill && ty0 >= 0 && tx0 >= 0 && ty0 + th <= height && tx0 + tw <= width) {
        const T* s = src + ty0 * width + tx0;
        for (int r = threadIdx.y; r < th; r += CONV_BLOCK_Y)
            for (int c = threadIdx.x; c < tw; c += CONV_BLOCK_X) tile[r * tw + c] = s[r * width + c];
        return;
    }
    for (int r = threadIdx.y; r < th; r += CONV_BLOCK_Y) {
        const long long iy = boundary_index<MODE, long long>(ty0 + r, height);
        for (int c = threadIdx.x; c < tw; c += CONV_BLOCK_X) {
            const long long ix = boundary_index<MODE, long long>(tx0 + c, width);
            tile[r * tw + c] = (fill || iy < 0 || ix < 0) ? cval : src[iy * width + ix];
        }
    }
}

}  // namespace gpuimg

template <typename T, int MODE>
__global__ void correlate1d_axis(const T* __restrict__ x, const T* __restrict__ w,
                                 T* __restrict__ out, long long outer, long long n,
                                 long long inner, int taps, int center, T cval,
                                 int taps_in_shared) {
    // taps_in_shared == 0: the weights do not fit in shared memory and are read from global
    extern __shared__ __align__(16) unsigned char conv1d_smem[];
    T* shared_w = reinterpret_cast<T*>(conv1d_smem);
    if (taps_in_shared) {
        for (int j = threadIdx.x; j < taps; j += blockDim.x) shared_w[j] = w[j];
    }
    __syncthreads();
    const T* ws = taps_in_shared ? shared_w : w;
    const long long total = outer * n * inner;
    for (long long t = blockIdx.x * (long long)blockDim.x + threadIdx.x; t < total;
         t += (long long)gridDim.x * blockDim.x) {
        long long o, i, k;
        gpuimg::split3(t, n, inner, o, i, k);
        const T* line = x + o * n * inner + k;
        const long long first = i - center;
        T acc = T(0);
        if (first >= 0 && first + taps <= n) {
            const T* p = line + first * inner;
            for (int j = 0; j < taps; ++j) acc += ws[j] * p[j * inner];
        } else {
            for (int j = 0; j < taps; ++j)
                acc += ws[j] * gpuimg::boundary_read<MODE, T, long long>(line, first + j, n, inner, cval);
        }
        out[t] = acc;
    }
}

namespace gpuimg {

constexpr int C1_ROWS_SEG = 32 * 4;  // correlate1d_rows: outputs along a line per block (4 a thread)
constexpr int C1_COLS_SEG = 8 * 8;   // correlate1d_cols: outputs along the axis per block (8 a thread)

// taps to shared memory (after a tile of tile_len values); every thread of the block calls it
template <typename T>
__device__ __forceinline__ T* c1_load_taps(T* smem, int tile_len, const T* __restrict__ w, int taps) {
    T* ws = smem + tile_len;
    for (int j = threadIdx.y * blockDim.x + threadIdx.x; j < taps; j += blockDim.x * blockDim.y) ws[j] = w[j];
    return ws;
}

// dst[l * dst_step] = x_ext[first + l] of one line (element stride inner) for l = l0, l0 + dl, ...
// below len: straight reads when the span lies inside the line, else through MODE
template <typename T, int MODE>
__device__ __forceinline__ void c1_load_line(T* dst, int dst_step, int l0, int dl, int len, const T* __restrict__ line,
                                             long long first, long long n, long long inner, T cval) {
    if (first >= 0 && first + len <= n) {
        for (int l = l0; l < len; l += dl) dst[l * dst_step] = line[(first + l) * inner];
    } else {
        for (int l = l0; l < len; l += dl)
            dst[l * dst_step] = boundary_read<MODE, T, long long>(line, first + l, n, inner, cval);
    }
}

// acc[r] = sum_j ws[j] * v[r * step_r + j * step_j]: R outputs of one thread from the tile
template <typename T, int R>
__device__ __forceinline__ void c1_taps(const T* ws, int taps, const T* v, int step_r, int step_j, T (&acc)[R]) {
#pragma unroll
    for (int r = 0; r < R; ++r) acc[r] = T(0);
    for (int j = 0; j < taps; ++j) {
        const T wj = ws[j];
#pragma unroll
        for (int r = 0; r < R; ++r) acc[r] += wj * v[r * step_r + j * step_j];
    }
}

}  // namespace gpuimg

// Block (32, 8): warp ty holds line o0 + ty; its lane tx makes outputs i0 + tx + 32 r (r < 4),
// reading tile[ty][tx + 32 r + j], so a warp's shared loads are consecutive words.
template <typename T, int MODE>
__global__ void __launch_bounds__(256)
    correlate1d_rows(const T* __restrict__ x, const T* __restrict__ w, T* __restrict__ out,
                     long long lines, long long n, int taps, int center, T cval) {
    using namespace gpuimg;
    constexpr int R = C1_ROWS_SEG / 32;
    extern __shared__ __align__(16) unsigned char conv1r_smem[];
    T* tile = reinterpret_cast<T*>(conv1r_smem);
    const int len = C1_ROWS_SEG + taps - 1;  // one line's tile with its halo
    const T* ws = c1_load_taps<T>(tile, 8 * len, w, taps);
    const int tx = threadIdx.x, ty = threadIdx.y;
    T* row = tile + ty * len;
    for (long long o0 = blockIdx.y * 8LL; o0 < lines; o0 += gridDim.y * 8LL) {
        const long long o = o0 + ty;
        const T* line = x + (o < lines ? o : 0) * n;
        for (long long i0 = blockIdx.x * (long long)C1_ROWS_SEG; i0 < n; i0 += gridDim.x * (long long)C1_ROWS_SEG) {
            const long long first = i0 - center;
            __syncthreads();  // the previous tile is read (and the taps are stored)
            c1_load_line<T, MODE>(row, 1, tx, 32, len, line, first, n, 1LL, cval);
            __syncthreads();
            T acc[R];
            c1_taps<T, R>(ws, taps, row + tx, 32, 1, acc);
            if (o < lines) {
#pragma unroll
                for (int r = 0; r < R; ++r) {
                    const long long i = i0 + tx + 32 * r;
                    if (i < n) out[o * n + i] = acc[r];
                }
            }
        }
    }
}

// Block (32, 8) over 32 neighbouring columns k: thread (tx, ty) makes outputs i0 + ty + 8 r
// (r < 8) of column k0 + tx, reading tile[ty + 8 r + j][tx] (a warp: consecutive words).
template <typename T, int MODE>
__global__ void __launch_bounds__(256)
    correlate1d_cols(const T* __restrict__ x, const T* __restrict__ w, T* __restrict__ out,
                     long long outer, long long n, long long inner, int taps, int center, T cval) {
    using namespace gpuimg;
    constexpr int R = C1_COLS_SEG / 8;
    extern __shared__ __align__(16) unsigned char conv1c_smem[];
    T* tile = reinterpret_cast<T*>(conv1c_smem);
    const int len = C1_COLS_SEG + taps - 1;  // tile rows along the axis, with the halo
    const T* ws = c1_load_taps<T>(tile, 32 * len, w, taps);
    const int tx = threadIdx.x, ty = threadIdx.y;
    for (long long o = blockIdx.z; o < outer; o += gridDim.z)
        for (long long i0 = blockIdx.y * (long long)C1_COLS_SEG; i0 < n; i0 += gridDim.y * (long long)C1_COLS_SEG)
            for (long long k0 = blockIdx.x * 32LL; k0 < inner; k0 += gridDim.x * 32LL) {
                const long long k = k0 + tx;
                const T* line = x + o * n * inner + (k < inner ? k : 0);
                const long long first = i0 - center;
                __syncthreads();
                c1_load_line<T, MODE>(tile + tx, 32, ty, 8, len, line, first, n, inner, cval);
                __syncthreads();
                T acc[R];
                c1_taps<T, R>(ws, taps, tile + ty * 32 + tx, 8 * 32, 32, acc);
                if (k < inner) {
#pragma unroll
                    for (int r = 0; r < R; ++r) {
                        const long long i = i0 + ty + 8 * r;
                        if (i < n) out[(o * n + i) * inner + k] = acc[r];
                    }
                }
            }
}

template <typename T, int MODE>
__global__ void correlate_tiled(const T* __restrict__ x, const T* __restrict__ w,
                                T* __restrict__ out, long long items, long long depth,
                                long long height, long long width, int kd, int kh, int kw,
                                int cz, int cy, int cx, T cval, int flip) {
    using namespace gpuimg;
    extern __shared__ __align__(16) unsigned char conv2d_smem[];
    // flip: the weights are read reversed along every axis (a convolution's kernel as given)
    const int ws = flip ? -1 : 1;
    const T* wb = flip ? w + (long long)kd * kh * kw - 1 : w;
    T* tile = reinterpret_cast<T*>(conv2d_smem);
    const int tw = CONV_TILE_X + kw - 1;
    const int th = CONV_TILE_Y + kh - 1;
    const long long planes = items * depth;
    const long long plane_size = height * width;
    const long long x0 = (long long)blockIdx.x * CONV_TILE_X;

    for (long long p = blockIdx.z; p < planes; p += gridDim.z) {
        const long long item = p / depth;
        const long long z = p - item * depth;
        for (long long y0 = (long long)blockIdx.y * CONV_TILE_Y; y0 < height;
             y0 += (long long)gridDim.y * CONV_TILE_Y) {
            T acc[CONV_ROWS];
#pragma unroll
            for (int r = 0; r < CONV_ROWS; ++r) acc[r] = T(0);

            for (int dz = 0; dz < kd; ++dz) {
                const long long zz = boundary_index<MODE, long long>(z + dz - cz, depth);
                const T* src = x + (item * depth + (zz < 0 ? 0 : zz)) * plane_size;
                __syncthreads();  // the previous tile is no longer read
                conv_load_tile<T, MODE>(tile, src, y0 - cy, x0 - cx, th, tw, height, width, cval, zz < 0);
                __syncthreads();

                // thread (tx, ty) owns output rows ty*ROWS .. ty*ROWS+ROWS-1 of the tile; each tile
                // value in its column window is read once and feeds every output row it touches.
                const T* wz = wb + ws * ((long long)dz * kh * kw);
                const int row0 = threadIdx.y * CONV_ROWS;
                for (int dx = 0; dx < kw; ++dx) {
                    const T* col = tile + row0 * tw + threadIdx.x + dx;
                    for (int m = 0; m < CONV_ROWS + kh - 1; ++m) {
                        const T v = col[m * tw];
#pragma unroll
                        for (int r = 0; r < CONV_ROWS; ++r) {
                            const int dy = m - r;
                            if (dy >= 0 && dy < kh) acc[r] += __ldg(wz + ws * (dy * kw + dx)) * v;
                        }
                    }
                }
            }

            conv_store_rows(out + p * plane_size, acc, x0 + threadIdx.x, y0 + threadIdx.y * CONV_ROWS, height, width);
        }
    }
}

template <typename T, int MODE>
__global__ void correlate_gather(const T* __restrict__ x, const T* __restrict__ w,
                                 T* __restrict__ out, long long items, long long depth,
                                 long long height, long long width, int kd, int kh, int kw,
                                 int cz, int cy, int cx, T cval, int flip) {
    using namespace gpuimg;
    const int ws = flip ? -1 : 1;
    const T* wb = flip ? w + (long long)kd * kh * kw - 1 : w;
    const long long plane_size = height * width;
    const long long total = items * depth * plane_size;
    for (long long t = blockIdx.x * (long long)blockDim.x + threadIdx.x; t < total;
         t += (long long)gridDim.x * blockDim.x) {
        long long p, oy, ox, item, z;
        split3(t, height, width, p, oy, ox);
        divmod(p, depth, item, z);
        T acc = T(0);
        for (int dz = 0; dz < kd; ++dz) {
            const long long zz = boundary_index<MODE, long long>(z + dz - cz, depth);
            const T* src = x + (item * depth + (zz < 0 ? 0 : zz)) * plane_size;
            for (int dy = 0; dy < kh; ++dy) {
                const long long iy = boundary_index<MODE, long long>(oy + dy - cy, height);
                const T* wrow = wb + ws * (((long long)dz * kh + dy) * kw);
                for (int dx = 0; dx < kw; ++dx) {
                    const long long ix = boundary_index<MODE, long long>(ox + dx - cx, width);
                    const T v = (zz < 0 || iy < 0 || ix < 0) ? cval : src[iy * width + ix];
                    acc += __ldg(wrow + ws * dx) * v;
                }
            }
        }
        out[t] = acc;
    }
}

// correlate_tiled for a K x K kernel over the last two axes (kd == 1): the tile is read with a
// fast path for blocks whose halo lies inside the image, the K * K weights sit in registers
// and every loop is unrolled (small kernels are otherwise bound by index and loop overhead).
template <typename T, int MODE, int K>
__global__ void __launch_bounds__(gpuimg::CONV_BLOCK_X * gpuimg::CONV_BLOCK_Y, 4)
correlate_tiled_k(const T* __restrict__ x, const T* __restrict__ w, T* __restrict__ out,
                  long long items, long long depth, long long height, long long width, int kd,
                  int kh, int kw, int cz, int cy, int cx, T cval, int flip) {
    using namespace gpuimg;
    extern __shared__ __align__(16) unsigned char convk_smem[];
    T* tile = reinterpret_cast<T*>(convk_smem);
    constexpr int TW = CONV_TILE_X + K - 1;
    constexpr int TH = CONV_TILE_Y + K - 1;
    T wr[K][K];
#pragma unroll
    for (int dy = 0; dy < K; ++dy)
#pragma unroll
        for (int dx = 0; dx < K; ++dx)
            wr[dy][dx] = __ldg(w + (flip ? (K - 1 - dy) * K + (K - 1 - dx) : dy * K + dx));
    const long long planes = items * depth;
    const long long plane_size = height * width;
    const long long x0 = (long long)blockIdx.x * CONV_TILE_X;
    const int row0 = threadIdx.y * CONV_ROWS;

    for (long long p = blockIdx.z; p < planes; p += gridDim.z) {
        const T* src = x + p * plane_size;
        for (long long y0 = (long long)blockIdx.y * CONV_TILE_Y; y0 < height;
             y0 += (long long)gridDim.y * CONV_TILE_Y) {
            __syncthreads();  // the previous tile is no longer read
            conv_load_tile<T, MODE>(tile, src, y0 - cy, x0 - cx, TH, TW, height, width, cval, false);
            __syncthreads();

            T acc[CONV_ROWS];
#pragma unroll
            for (int r = 0; r < CONV_ROWS; ++r) acc[r] = T(0);
#pragma unroll
            for (int dx = 0; dx < K; ++dx) {
                const T* col = tile + row0 * TW + threadIdx.x + dx;
#pragma unroll
                for (int m = 0; m < CONV_ROWS + K - 1; ++m) {
                    const T v = col[m * TW];
#pragma unroll
                    for (int r = 0; r < CONV_ROWS; ++r) {
                        const int dy = m - r;
                        if (dy >= 0 && dy < K) acc[r] += wr[dy][dx] * v;
                    }
                }
            }
            conv_store_rows(out + p * plane_size, acc, x0 + threadIdx.x, y0 + threadIdx.y * CONV_ROWS, height, width);
        }
    }
}
