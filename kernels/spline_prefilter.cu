// B-spline prefilter (direct B-spline transform) along one axis of a C-contiguous array, in
// place. The array is viewed as (outer, n, inner); line l starts at
// (l / inner) * n * inner + l % inner and its samples are inner apart.
//
// Each pole z runs a causal recursion y[i] = x[i] + z y[i-1] and an anti-causal one
// v[i] = z (v[i+1] - y[i]) after a gain prod (1-z)(1-1/z) (Unser, Aldroubi & Eden, IEEE PAMI
// 13(3), 1991). The first coefficient of each pass is initialised exactly for the extension
// the mode implies, as scipy.ndimage (ni_splines.c) does:
//   INIT 0  whole-sample symmetric (mirror; also constant, wrap, grid-constant)
//   INIT 1  half-sample symmetric  (reflect; also nearest)
//   INIT 2  periodic with period n (grid-wrap)
//
// Parallel form (a two-level scan). A block of 256 threads owns `lt` lines, each cut into
// `segs` segments of m = ceil(n / segs) samples (lt * segs = 256). Every thread runs both
// recursions over its segment from a zero start and keeps the weighted sums the exact
// initial values need; one thread per line then combines the segments in order. A first-order
// recursion started from a wrong value differs from the true one by carry * z^k at the k-th
// sample, so each segment is corrected by that term on its next sweep. Along the contiguous
// axis (inner == 1) samples travel through a shared-memory tile in chunks of 128 bytes per
// segment, so global loads and stores are coalesced; along other axes the threads of a warp
// hold neighbouring lines, which are adjacent in memory. Arithmetic is carried out in T.

#define GPUIMG_SPLINE_INIT_MIRROR 0
#define GPUIMG_SPLINE_INIT_REFLECT 1
#define GPUIMG_SPLINE_INIT_WRAP 2
#define GPUIMG_SPLINE_THREADS 256

template <typename T, int INIT>
__global__ void __launch_bounds__(GPUIMG_SPLINE_THREADS)
spline_prefilter(T* __restrict__ x, long long lines, long long n, long long inner, int segs,
                 int npoles, double pole0, double pole1) {
    constexpr int CH = 128 / (int)sizeof(T);
    constexpr int NT = GPUIMG_SPLINE_THREADS;
    __shared__ T tile[NT * (CH + 1)];
    __shared__ T s_a[NT], s_b[NT], s_c[NT];  // per segment
    __shared__ T s_l0[NT], s_l1[NT];         // per line
    if (n < 2) return;
    const int tid = threadIdx.x;
    const int lt = NT / segs;  // a power of two
    int lsh = 0;
    while ((1 << lsh) < lt) ++lsh;
    const int j = tid % lt;
    const int sg = tid / lt;
    const long long m = (n + segs - 1) / segs;
    const int nseg = (int)((n + m - 1) / m);
    const int nch = (int)((m + CH - 1) / CH);
    const bool staged = inner == 1;
    const long long start = sg * m;
    const long long e = (start + m < n ? start + m : n) - 1;  // last sample of the segment
    const long long len = e - start + 1;                      // <= 0 for an unused segment
    T gain = T(1);
    for (int p = 0; p < npoles; ++p) {
        const T z = (T)(p == 0 ? pole0 : pole1);
        gain *= (T(1) - z) * (T(1) - T(1) / z);
    }
    const long long ntiles = (lines + lt - 1) / lt;
    for (long long tl = blockIdx.x; tl < ntiles; tl += gridDim.x) {
        const long long line = tl * lt + j;
        const bool active = line < lines && len > 0;
        const long long o = line / inner;
        T* const c = x + o * n * inner + (line - o * inner);  // valid when line < lines

        // Moves chunk ch of every segment of the tile between x and the shared tile.
        auto stage = [&](int ch, bool in) {
            for (int r = 0; r < CH; ++r) {
                const int el = tid + NT * r;
                const int row = el / CH, k = el % CH;
                const long long ln = tl * lt + (row & (lt - 1));
                const long long rel = (long long)ch * CH + k;
                const long long pos = (row >> lsh) * m + rel;
                if (ln < lines && rel < m && pos < n) {
                    T* g = x + ln * n + pos;
                    if (in) tile[row * (CH + 1) + k] = *g;
                    else *g = tile[row * (CH + 1) + k];
                }
            }
        };
        // Sample rel (segment-relative, inside chunk ch) of this thread's segment.
        auto at = [&](int ch, long long rel) -> T& {
            return staged ? tile[tid * (CH + 1) + (rel - (long long)ch * CH)] : c[(start + rel) * inner];
        };

        T zprev = T(0), dprev = T(0);  // anti-causal carry of the previous pole, still to add
        for (int p = 0; p <= npoles; ++p) {
            const bool last = p == npoles;
            const T z = last ? T(0) : (T)(p == 0 ? pole0 : pole1);
            const int hi = INIT == GPUIMG_SPLINE_INIT_WRAP ? (int)0 : 1;  // mask end: n-1 or n-2
            // Sweep 1 (forward): finish the previous pole, then the causal pass from zero.
            T u = T(0), a = T(0), b = T(0), zi = T(0);
            if (active && !last) zi = pow(z, (T)start);
            for (int ch = 0; ch < nch; ++ch) {
                if (last) {  // the final sweep only adds corrections: skip chunks where all are 0
                    int need = 0;
                    if (active) {
                        const long long r0 = (long long)ch * CH;
                        const long long r1 = (r0 + CH < len ? r0 + CH : len) - 1;
                        need = r0 <= r1 && pow(zprev, (T)(len - 1 - r1)) * dprev != T(0);
                    }
                    if (staged ? !__syncthreads_or(need) : !need) continue;
                }
                if (staged) { stage(ch, true); __syncthreads(); }
                if (active) {
                    const long long r0 = (long long)ch * CH;
                    const long long r1 = (r0 + CH < len ? r0 + CH : len) - 1;
                    if (p > 0 && r0 <= r1) {
                        T zk = pow(zprev, (T)(len - 1 - r1));
                        for (long long r = r1; r >= r0; --r) {
                            at(ch, r) += zk * dprev;
                            zk *= zprev;
                        }
                    }
                    if (!last) {
                        for (long long r = r0; r <= r1; ++r) {
                            const long long i = start + r;
                            T v = at(ch, r);
                            if (p == 0) v *= gain;
                            if (i == 0) s_l0[j] = v;
                            if (i == n - 1) s_l1[j] = v;
                            const bool in = i >= 1 && i <= n - 1 - hi;
                            if (in) a += zi * v;
                            b = b * z + (in ? v : T(0));
                            zi *= z;
                            u = (r == 0 ? v : v + z * u);
                            at(ch, r) = u;
                        }
                    }
                }
                if (staged) { __syncthreads(); stage(ch, false); }
            }
            if (last) break;
            s_a[tid] = a;
            s_b[tid] = b;
            s_c[tid] = u;
            __syncthreads();
            if (sg == 0 && line < lines) {  // exact causal start, then the segment carries
                const T x0 = s_l0[j], xl = s_l1[j];
                const T zn1 = pow(z, (T)(n - 1)), zn = zn1 * z;
                T sa = T(0), sb = T(0);
                for (int s = 0; s < nseg; ++s) {
                    const long long es = ((s + 1) * m < n ? (s + 1) * m : n) - 1;
                    sa += s_a[j + lt * s];
                    sb += pow(z, (T)(n - 1 - es)) * s_b[j + lt * s];
                }
                T c0;
                if (INIT == GPUIMG_SPLINE_INIT_MIRROR) {
                    c0 = (x0 + zn1 * xl + sa + zn1 * sb) / (T(1) - zn1 * zn1);
                } else if (INIT == GPUIMG_SPLINE_INIT_REFLECT) {
                    const T run = x0 + zn * xl + sa + zn * sb;
                    c0 = (run + zn1 * (xl + zn * run)) * (z / (T(1) - zn * zn)) + x0;
                } else {
                    c0 = (x0 + z * sb) / (T(1) - pow(z, (T)n));
                }
                T d = c0 - x0;
                for (int s = 0; s < nseg; ++s) {
                    const long long es = ((s + 1) * m < n ? (s + 1) * m : n) - 1;
                    const T yend = s_c[j + lt * s] + pow(z, (T)(es - s * m)) * d;
                    s_a[j + lt * s] = d;
                    d = z * yend;
                }
            }
            __syncthreads();
            const T dc = s_a[tid];
            __syncthreads();
            // Sweep 2 (backward): finish the causal pass, then the anti-causal pass from zero.
            T w = T(0), g = T(0);
            for (int ch = nch - 1; ch >= 0; --ch) {
                if (staged) { stage(ch, true); __syncthreads(); }
                if (active) {
                    const long long r0 = (long long)ch * CH;
                    const long long r1 = (r0 + CH < len ? r0 + CH : len) - 1;
                    if (r0 <= r1) {
                        T zk = pow(z, (T)r0);
                        for (long long r = r0; r <= r1; ++r) {
                            at(ch, r) += zk * dc;
                            zk *= z;
                        }
                    }
                    for (long long r = r1; r >= r0; --r) {
                        const long long i = start + r;
                        const T y = at(ch, r);
                        if (i == n - 1) s_l1[j] = y;
                        if (i == n - 2) s_l0[j] = y;
                        if (INIT == GPUIMG_SPLINE_INIT_WRAP) g = g * z + (i <= n - 2 ? y : T(0));
                        w = z * (w - y);
                        at(ch, r) = w;
                    }
                }
                if (staged) { __syncthreads(); stage(ch, false); }
            }
            s_b[tid] = w;  // value at the segment start
            s_c[tid] = g;
            __syncthreads();
            if (sg == 0 && line < lines) {  // exact anti-causal start, then the carries
                const T y1 = s_l1[j], y2 = s_l0[j];
                T cl;
                if (INIT == GPUIMG_SPLINE_INIT_MIRROR) {
                    cl = (z * y2 + y1) * (z / (z * z - T(1)));
                } else if (INIT == GPUIMG_SPLINE_INIT_REFLECT) {
                    cl = y1 * (z / (z - T(1)));
                } else {
                    T sg2 = T(0);
                    for (int s = 0; s < nseg; ++s) sg2 += pow(z, (T)(s * m + 1)) * s_c[j + lt * s];
                    cl = (y1 + sg2) * (z / (pow(z, (T)n) - T(1)));
                }
                T d = cl - z * (T(0) - y1);
                for (int s = nseg - 1; s >= 0; --s) {
                    const long long es = ((s + 1) * m < n ? (s + 1) * m : n) - 1;
                    const T vstart = s_b[j + lt * s] + pow(z, (T)(es - s * m)) * d;
                    s_a[j + lt * s] = d;
                    d = z * vstart;
                }
            }
            __syncthreads();
            dprev = s_a[tid];
            zprev = z;
            __syncthreads();
        }
        __syncthreads();
    }
}
