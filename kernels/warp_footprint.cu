// Footprint sampler: each output pixel integrates the source over a convex quad (exact
// box-over-quad coverage). quads holds, per output pixel, 4 corners (x = column, y = row) in
// order around the quad. The weight of source pixel (r, c) is the area of the quad inside the
// square [c - 1/2, c + 1/2] x [r - 1/2, r + 1/2], divided by the total covered area. The area
// inside one pixel is the sum over the quad's edges of sign(dx) times the integral, over the
// edge's x-range within the pixel column, of clamp(y - (r - 1/2), 0, 1).
// Pixels outside the image follow boundary.cuh (constant modes read cval); quads with a
// non-finite corner return cval.
#include "boundary.cuh"

namespace {

__device__ __forceinline__ double clamp_primitive(double t) {
    return t <= 0.0 ? 0.0 : (t >= 1.0 ? t - 0.5 : 0.5 * t * t);
}

// Mean of clamp(t, 0, 1) for t running linearly from a to b.
__device__ __forceinline__ double mean_clamp01(double a, double b) {
    const double lo = fmin(a, b), hi = fmax(a, b), span = hi - lo;
    if (span < 1e-7) return fmin(fmax(0.5 * (lo + hi), 0.0), 1.0);
    return (clamp_primitive(hi) - clamp_primitive(lo)) / span;
}

__device__ __forceinline__ double edge_coverage(double gx0, double gy0, double gx1, double gy1,
                                                double cx0, double cy0) {
    const double dx = gx1 - gx0;
    if (dx == 0.0) return 0.0;
    const double lo = fmin(gx0, gx1), hi = fmax(gx0, gx1);
    const double u0 = fmax(lo, cx0), u1 = fmin(hi, cx0 + 1.0);
    const double length = u1 - u0;
    if (length <= 0.0) return 0.0;
    const double slope = (gy1 - gy0) / dx;
    const double a = gy0 + (u0 - gx0) * slope - cy0;
    const double b = gy0 + (u1 - gx0) * slope - cy0;
    return (dx > 0.0 ? 1.0 : -1.0) * length * mean_clamp01(a, b);
}

}  // namespace

template <typename T, int MODE>
__global__ void warp_footprint(const T* __restrict__ src, T* __restrict__ dst,
                               const double* __restrict__ quads, long long nimg, long long h,
                               long long w, long long npix, T cval) {
    const long long plane = h * w;
    for (long long p = blockIdx.x * (long long)blockDim.x + threadIdx.x; p < npix;
         p += (long long)gridDim.x * blockDim.x) {
        double qx[4], qy[4];
        for (int k = 0; k < 4; ++k) {
            qx[k] = quads[p * 8 + 2 * k];
            qy[k] = quads[p * 8 + 2 * k + 1];
        }
        bool finite = true;
        for (int k = 0; k < 4; ++k) finite = finite && isfinite(qx[k]) && isfinite(qy[k]);
        if (!finite) {
            for (long long b = 0; b < nimg; ++b) dst[b * npix + p] = cval;
            continue;
        }
        const double xmin = fmin(fmin(qx[0], qx[1]), fmin(qx[2], qx[3]));
        const double xmax = fmax(fmax(qx[0], qx[1]), fmax(qx[2], qx[3]));
        const double ymin = fmin(fmin(qy[0], qy[1]), fmin(qy[2], qy[3]));
        const double ymax = fmax(fmax(qy[0], qy[1]), fmax(qy[2], qy[3]));
        // pixels whose squares meet the quad's bounding box
        const long long c0 = (long long)floor(xmin + 0.5), c1 = (long long)ceil(xmax + 0.5) - 1;
        const long long r0 = (long long)floor(ymin + 0.5), r1 = (long long)ceil(ymax + 0.5) - 1;
        // images in groups of GROUP with register accumulators; coverage is recomputed per group
        const int GROUP = 4;
        for (long long b0 = 0; b0 < nimg; b0 += GROUP) {
            const int nb = (int)min((long long)GROUP, nimg - b0);
            T acc[GROUP] = {T(0), T(0), T(0), T(0)};
            double total = 0.0;
            for (long long r = r0; r <= r1; ++r) {
                const long long ri = gpuimg::boundary_index<MODE, long long>(r, h);
                for (long long c = c0; c <= c1; ++c) {
                    double cov = 0.0;
                    for (int e = 0; e < 4; ++e) {
                        const int f = (e + 1) & 3;
                        cov += edge_coverage(qx[e], qy[e], qx[f], qy[f], (double)c - 0.5, (double)r - 0.5);
                    }
                    if (cov == 0.0) continue;
                    total += cov;
                    const long long ci = gpuimg::boundary_index<MODE, long long>(c, w);
                    for (int q = 0; q < nb; ++q) {
                        const T v = (ri < 0 || ci < 0) ? cval : src[(b0 + q) * plane + ri * w + ci];
                        acc[q] += T(cov) * v;
                    }
                }
            }
            const T inv = T(total != 0.0 ? 1.0 / total : 0.0);
            for (int q = 0; q < nb; ++q) dst[(b0 + q) * npix + p] = acc[q] * inv;
        }
    }
}
