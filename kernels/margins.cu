// The reflect boundary model's extension E and its adjoint E^T on grid-sized work buffers.
// A buffer is a contiguous stack (planes, gh, gw) holding an h x w frame at rows [t, t + h),
// columns [l, l + w); the margins around it are at most one frame wide.
//   reflect_margins: every margin pixel takes the frame pixel it mirrors (half-sample
//     symmetric, SciPy's "reflect"), corners in both axes: the buffer becomes E x.
//   fold_margins: every frame pixel near an edge adds the margin pixels that mirror onto it
//     (corners included), in place: the frame becomes E^T y.
// Each thread writes one pixel and reads only pixels no thread writes, so both run in place.
// Launched by rows (launch_rows over planes x grid rows, or x frame rows for the fold); a
// row's threads visit only the columns that change, without dividing a flat index.
#include "boundary.cuh"

template <typename T>
__global__ void reflect_margins(T* __restrict__ g, long long planes, long long gh, long long gw,
                                long long t, long long l, long long h, long long w) {
    const long long plane = gh * gw;
    for (long long p = blockIdx.z; p < planes; p += gridDim.z)
        for (long long i = blockIdx.y; i < gh; i += gridDim.y) {
            // rows through the frame: only their gw - w margin columns, skipping the frame
            const bool in_rows = i >= t && i < t + h;
            const long long ncols = in_rows ? gw - w : gw;
            T* row = g + p * plane + i * gw;
            const T* src = g + p * plane
                + (t + gpuimg::boundary_index<GPUIMG_MODE_REFLECT, long long>(i - t, h)) * gw;
            for (long long c = blockIdx.x * (long long)blockDim.x + threadIdx.x; c < ncols;
                 c += (long long)gridDim.x * blockDim.x) {
                const long long j = in_rows && c >= l ? c + w : c;
                row[j] = src[l + gpuimg::boundary_index<GPUIMG_MODE_REFLECT, long long>(j - l, w)];
            }
        }
}

// The grid rows (or columns) that mirror onto frame index a: itself, the near-side margin
// and the far-side margin where they exist. Returns how many were written to out.
__device__ __forceinline__ int mirror_sources(long long a, long long t, long long h, long long g,
                                              long long* out) {
    int n = 0;
    out[n++] = t + a;
    if (t - 1 - a >= 0) out[n++] = t - 1 - a;
    if (t + 2 * h - 1 - a < g) out[n++] = t + 2 * h - 1 - a;
    return n;
}

template <typename T>
__global__ void fold_margins(T* __restrict__ g, long long planes, long long gh, long long gw,
                             long long t, long long l, long long h, long long w) {
    const long long plane = gh * gw;
    // frame columns that margins mirror onto: [0, l) and [w - r, w) with r = gw - l - w
    const long long r = gw - l - w;
    const bool all_cols = l + r >= w;
    for (long long p = blockIdx.z; p < planes; p += gridDim.z)
        for (long long a = blockIdx.y; a < h; a += gridDim.y) {
            long long rows[3], cols[3];
            const int nr = mirror_sources(a, t, h, gh, rows);
            // a row no margin row mirrors onto changes only in its edge columns
            const long long ncols = (nr > 1 || all_cols) ? w : l + r;
            T* base = g + p * plane;
            for (long long k = blockIdx.x * (long long)blockDim.x + threadIdx.x; k < ncols;
                 k += (long long)gridDim.x * blockDim.x) {
                const long long c = ncols == w || k < l ? k : k + (w - l - r);
                const int nc = mirror_sources(c, l, w, gw, cols);
                if (nr == 1 && nc == 1) continue;
                T acc = T(0);
                for (int u = 0; u < nr; ++u)
                    for (int q = 0; q < nc; ++q) acc += base[rows[u] * gw + cols[q]];
                base[(t + a) * gw + l + c] = acc;
            }
        }
}
