// The reflect boundary model's extension E and its adjoint E^T on grid-sized work buffers.
// A buffer is a contiguous stack (planes, gh, gw) holding an h x w frame at rows [t, t + h),
// columns [l, l + w); the margins around it are at most one frame wide.
//   reflect_margins: every margin pixel takes the frame pixel it mirrors (half-sample
//     symmetric, SciPy's "reflect"), corners in both axes: the buffer becomes E x.
//   fold_margins: every frame pixel near an edge adds the margin pixels that mirror onto it
//     (corners included), in place: the frame becomes E^T y.
// Each thread writes one pixel and reads only pixels no thread writes, so both run in place.
// Only the pixels that change are visited, one thread each: rows whose every column changes
// (the margin rows, or the frame rows a margin row mirrors onto) and, between them, rows where
// only the edge columns change. A launch covers that item count per plane (x) by planes (z).
#include "boundary.cuh"

// The visited items of one plane: rows [0, top) and [top + mid, ...) across fw columns each,
// then the mid rows between them across mw columns each.
struct margin_items {
    long long top, mid, fw, mw, n;
};

// The row and the column rank of item k, and whether k lies in the mid rows (a division per
// item: the items are few)
__device__ __forceinline__ void margin_item(const margin_items& s, long long k, long long& row, long long& c,
                                            bool& mid) {
    const long long a = s.top * s.fw, m = s.mid * s.mw;
    long long base = 0, wdt = s.fw, row0 = 0;
    mid = false;
    if (k >= a + m) {
        base = a + m, row0 = s.top + s.mid;
    } else if (k >= a) {
        base = a, wdt = s.mw, row0 = s.top, mid = true;
    }
    const long long q = (k - base) / wdt;
    row = row0 + q;
    c = k - base - q * wdt;
}

template <typename T>
__global__ void reflect_margins(T* __restrict__ g, long long planes, long long gh, long long gw,
                                long long t, long long l, long long h, long long w) {
    const long long plane = gh * gw;
    // the margin rows across the grid, the frame rows across their gw - w margin columns
    const margin_items s{t, h, gw, gw - w, (gh - h) * gw + h * (gw - w)};
    for (long long p = blockIdx.z; p < planes; p += gridDim.z)
        for (long long k = blockIdx.x * (long long)blockDim.x + threadIdx.x; k < s.n;
             k += (long long)gridDim.x * blockDim.x) {
            long long i, c;
            bool mid;
            margin_item(s, k, i, c, mid);
            const long long j = mid && c >= l ? c + w : c;
            const T* src = g + p * plane
                + (t + gpuimg::boundary_index<GPUIMG_MODE_REFLECT, long long>(i - t, h)) * gw;
            g[p * plane + i * gw + j] = src[l + gpuimg::boundary_index<GPUIMG_MODE_REFLECT, long long>(j - l, w)];
        }
}

// The grid rows (or columns) that mirror onto frame index a: itself (slot 0), the near-side
// margin (slot 1) and the far-side margin (slot 2); bit s of the result is set where slot s
// exists. Fixed slots keep the indices in registers.
__device__ __forceinline__ unsigned mirror_sources(long long a, long long t, long long h, long long g,
                                                   long long (&out)[3]) {
    out[0] = t + a;
    out[1] = t - 1 - a;
    out[2] = t + 2 * h - 1 - a;
    return 1u | (out[1] >= 0 ? 2u : 0u) | (out[2] < g ? 4u : 0u);
}

template <typename T>
__global__ void fold_margins(T* __restrict__ g, long long planes, long long gh, long long gw,
                             long long t, long long l, long long h, long long w) {
    const long long plane = gh * gw;
    // frame rows [0, near) and [h - far, h) have margin rows mirroring onto them; frame columns
    // [0, l) and [w - r, w) have margin columns (r = gw - l - w)
    const long long r = gw - l - w;
    const long long near = t < h ? t : h, far = gh - t - h < h ? gh - t - h : h;
    const bool all_rows = l + r >= w || near + far >= h;
    const long long mid = all_rows ? 0 : h - near - far;
    const margin_items s{all_rows ? h : near, mid, w, l + r, (h - mid) * w + mid * (l + r)};
    for (long long p = blockIdx.z; p < planes; p += gridDim.z)
        for (long long k = blockIdx.x * (long long)blockDim.x + threadIdx.x; k < s.n;
             k += (long long)gridDim.x * blockDim.x) {
            long long a, c;
            bool in_mid;
            margin_item(s, k, a, c, in_mid);
            if (in_mid && c >= l) c += w - l - r;
            long long rows[3], cols[3];
            const unsigned mr = mirror_sources(a, t, h, gh, rows);
            const unsigned mc = mirror_sources(c, l, w, gw, cols);
            if (mr == 1u && mc == 1u) continue;
            T* base = g + p * plane;
            T acc = T(0);
#pragma unroll
            for (int u = 0; u < 3; ++u)
#pragma unroll
                for (int q = 0; q < 3; ++q)
                    if ((mr >> u & 1u) && (mc >> q & 1u)) acc += base[rows[u] * gw + cols[q]];
            base[(t + a) * gw + l + c] = acc;
        }
}
