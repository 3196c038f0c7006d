// Bilateral filter over a disk-shaped window (OpenCV's bilateralFilter model).
//
//   out[p] = sum_q w(p, q) x[q] / sum_q w(p, q),  q = p + (dy, dx), dy^2 + dx^2 <= r^2
//   w(p, q) = space[(dy + r) * (2r + 1) + (dx + r)] * exp(color_coeff * dist(p, q)^2)
//   dist(p, q) = sum_c |x[c, q] - x[c, p]|    (L1 over channels, as OpenCV)
//
// x is a contiguous (batch, channels, rows, cols) array; neighbours outside the image are
// read through boundary mode MODE (cval for constant modes). space holds the (2r+1)^2
// spatial weights (zero outside the disk is not required: the disk test is done here).
//
// bilateral_tiled stages a (BY + 2r) x (BX + 2r) tile of every channel in dynamic shared
// memory, one block per output tile; bilateral_direct reads global memory and is used when
// the tile does not fit in shared memory.
#include "boundary.cuh"

template <typename T, int MODE>
__device__ __forceinline__ T bilateral_read(const T* __restrict__ img, long long r, long long c,
                                            long long rows, long long cols, T cval) {
    long long rr = gpuimg::boundary_index<MODE, long long>(r, rows);
    long long cc = gpuimg::boundary_index<MODE, long long>(c, cols);
    return (rr < 0 || cc < 0) ? cval : img[rr * cols + cc];
}

template <typename T, int MODE>
__global__ void bilateral_tiled(const T* __restrict__ x, const T* __restrict__ space,
                                T* __restrict__ out, long long batch, int channels,
                                long long rows, long long cols, int radius, T color_coeff,
                                T cval) {
    extern __shared__ __align__(16) unsigned char bilateral_smem[];
    T* tile = reinterpret_cast<T*>(bilateral_smem);
    const int tw = blockDim.x + 2 * radius;
    const int th = blockDim.y + 2 * radius;
    const long long plane = rows * cols;
    const long long tiles_x = (cols + blockDim.x - 1) / blockDim.x;
    const long long tiles_y = (rows + blockDim.y - 1) / blockDim.y;
    const long long n_tiles = tiles_x * tiles_y * batch;
    const int d = 2 * radius + 1;
    for (long long tile_id = blockIdx.x; tile_id < n_tiles; tile_id += gridDim.x) {
        const long long b = tile_id / (tiles_x * tiles_y);
        const long long rem = tile_id - b * tiles_x * tiles_y;
        const long long r0 = (rem / tiles_x) * blockDim.y;
        const long long c0 = (rem % tiles_x) * blockDim.x;
        const T* img = x + b * channels * plane;
        __syncthreads();
        for (int ch = 0; ch < channels; ++ch) {
            for (int k = threadIdx.y * blockDim.x + threadIdx.x; k < tw * th;
                 k += blockDim.x * blockDim.y) {
                const int ty = k / tw, tx = k - (k / tw) * tw;
                tile[ch * tw * th + k] = bilateral_read<T, MODE>(
                    img + ch * plane, r0 + ty - radius, c0 + tx - radius, rows, cols, cval);
            }
        }
        __syncthreads();
        const long long r = r0 + threadIdx.y, c = c0 + threadIdx.x;
        if (r < rows && c < cols) {
            const int cy = threadIdx.y + radius, cx = threadIdx.x + radius;
            T wsum = T(0);
            T acc[4] = {T(0), T(0), T(0), T(0)};
            for (int c_base = 0; c_base < channels; c_base += 4) {
                // channels beyond 4 are processed in groups so the accumulators stay in registers
                const int nc = channels - c_base < 4 ? channels - c_base : 4;
                T wsum_g = T(0);
                for (int k = 0; k < 4; ++k) acc[k] = T(0);
                for (int dy = -radius; dy <= radius; ++dy) {
                    for (int dx = -radius; dx <= radius; ++dx) {
                        if (dy * dy + dx * dx > radius * radius) continue;
                        T dist = T(0);
                        for (int ch = 0; ch < channels; ++ch) {
                            const T* tp = tile + ch * tw * th;
                            T diff = tp[(cy + dy) * tw + cx + dx] - tp[cy * tw + cx];
                            dist += diff < T(0) ? -diff : diff;
                        }
                        const T w = space[(dy + radius) * d + dx + radius] *
                                    exp(color_coeff * dist * dist);
                        wsum_g += w;
                        for (int k = 0; k < nc; ++k) {
                            acc[k] += w * tile[(c_base + k) * tw * th + (cy + dy) * tw + cx + dx];
                        }
                    }
                }
                wsum = wsum_g;
                for (int k = 0; k < nc; ++k) {
                    out[(b * channels + c_base + k) * plane + r * cols + c] = acc[k] / wsum;
                }
            }
        }
    }
}

template <typename T, int MODE>
__global__ void bilateral_direct(const T* __restrict__ x, const T* __restrict__ space,
                                 T* __restrict__ out, long long batch, int channels,
                                 long long rows, long long cols, int radius, T color_coeff,
                                 T cval) {
    const long long plane = rows * cols;
    const long long total = batch * plane;
    const int d = 2 * radius + 1;
    for (long long t = blockIdx.x * (long long)blockDim.x + threadIdx.x; t < total;
         t += (long long)gridDim.x * blockDim.x) {
        const long long b = t / plane;
        const long long p = t - b * plane;
        const long long r = p / cols, c = p - (p / cols) * cols;
        const T* img = x + b * channels * plane;
        for (int c_base = 0; c_base < channels; c_base += 4) {
            const int nc = channels - c_base < 4 ? channels - c_base : 4;
            T wsum = T(0);
            T acc[4] = {T(0), T(0), T(0), T(0)};
            for (int dy = -radius; dy <= radius; ++dy) {
                for (int dx = -radius; dx <= radius; ++dx) {
                    if (dy * dy + dx * dx > radius * radius) continue;
                    T dist = T(0);
                    for (int ch = 0; ch < channels; ++ch) {
                        T diff = bilateral_read<T, MODE>(img + ch * plane, r + dy, c + dx, rows,
                                                         cols, cval) -
                                 img[ch * plane + p];
                        dist += diff < T(0) ? -diff : diff;
                    }
                    const T w = space[(dy + radius) * d + dx + radius] *
                                exp(color_coeff * dist * dist);
                    wsum += w;
                    for (int k = 0; k < nc; ++k) {
                        acc[k] += w * bilateral_read<T, MODE>(img + (c_base + k) * plane, r + dy,
                                                              c + dx, rows, cols, cval);
                    }
                }
            }
            for (int k = 0; k < nc; ++k) {
                out[(b * channels + c_base + k) * plane + p] = acc[k] / wsum;
            }
        }
    }
}
