// The reflect boundary model's extension E and its adjoint E^T on grid-sized work buffers.
// A buffer is a contiguous stack (planes, gh, gw) holding an h x w frame at rows [t, t + h),
// columns [l, l + w); the margins around it are at most one frame wide.
//   reflect_margins: every margin pixel takes the frame pixel it mirrors (half-sample
//     symmetric, SciPy's "reflect"), corners in both axes: the buffer becomes E x.
//   fold_margins: every frame pixel near an edge adds the margin pixels that mirror onto it
//     (corners included), in place: the frame becomes E^T y.
// Each thread writes one pixel and reads only pixels no thread writes, so both run in place.
#include "boundary.cuh"

template <typename T>
__global__ void reflect_margins(T* __restrict__ g, long long planes, long long gh, long long gw,
                                long long t, long long l, long long h, long long w) {
    const long long plane = gh * gw;
    const long long n = planes * plane;
    for (long long k = blockIdx.x * (long long)blockDim.x + threadIdx.x; k < n;
         k += (long long)gridDim.x * blockDim.x) {
        long long p, i, j;
        gpuimg::split3(k, gh, gw, p, i, j);
        const bool in_rows = i >= t && i < t + h, in_cols = j >= l && j < l + w;
        if (in_rows && in_cols) continue;
        const long long si = t + gpuimg::boundary_index<GPUIMG_MODE_REFLECT, long long>(i - t, h);
        const long long sj = l + gpuimg::boundary_index<GPUIMG_MODE_REFLECT, long long>(j - l, w);
        g[k] = g[p * plane + si * gw + sj];
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
    const long long n = planes * h * w;
    for (long long k = blockIdx.x * (long long)blockDim.x + threadIdx.x; k < n;
         k += (long long)gridDim.x * blockDim.x) {
        long long p, a, c;
        gpuimg::split3(k, h, w, p, a, c);
        long long rows[3], cols[3];
        const int nr = mirror_sources(a, t, h, gh, rows);
        const int nc = mirror_sources(c, l, w, gw, cols);
        if (nr == 1 && nc == 1) continue;
        T* base = g + p * plane;
        T acc = T(0);
        for (int r = 0; r < nr; ++r)
            for (int q = 0; q < nc; ++q) acc += base[rows[r] * gw + cols[q]];
        base[(t + a) * gw + l + c] = acc;
    }
}
