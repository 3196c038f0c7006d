// B-spline prefilter (direct B-spline transform) along one axis of a C-contiguous array, in
// place. The array is viewed as (outer, n, inner); line l starts at
// (l / inner) * n * inner + l % inner and its samples are inner apart.
//
// Each pole z runs a causal recursion y[i] = x[i] + z y[i-1] and an anti-causal one
// v[i] = z (v[i+1] - y[i]) after a gain prod (1-z)(1-1/z) (Unser, Aldroubi & Eden, IEEE PAMI
// 13(3), 1991). The first coefficient of each pass is initialised exactly for the extension
// the mode implies, as scipy.ndimage (ni_splines.c) does; the half-sample symmetric start
// sums the original first sample in its last term, as SciPy does since 1.18 (before, it read
// its running sum there, scipy/scipy#24550, which is off by O(z^2n) on lines of a few samples):
//   INIT 0  whole-sample symmetric (mirror; also constant, wrap, grid-constant)
//   INIT 1  half-sample symmetric  (reflect; also nearest)
//   INIT 2  periodic with period n (grid-wrap)
//
// Parallel form (a two-level scan). A block of 256 threads owns `lt` lines, each cut into
// `segs` segments of m = ceil(n / segs) samples (lt * segs = 256; the launcher picks segs so
// that lines * segs threads fill the GPU, and m < 2^31). Thread (sg, j) = sg * lt + j runs
// both recursions over segment sg of line j from a zero start and keeps the weighted sums
// the exact initial values need. A first-order recursion started from a wrong value differs
// from the true one by carry * z^k at the k-th sample, and the carry into the next segment is
// an affine function of the carry into this one, D' = z^len D + z u_end; the segments of a line
// compose these maps (and add the sums) with a log2(segs)-step scan in shared memory, and
// each segment applies its carry on its next sweep. Along the contiguous axis (inner == 1)
// samples travel through a shared-memory tile in chunks of 128 bytes per segment (each warp
// moves whole chunks, so global loads and stores are coalesced); along other axes the threads
// of a warp hold neighbouring lines, which are adjacent in memory. Arithmetic is carried out
// in T; segment-relative positions are 32-bit.

#define GPUIMG_SPLINE_INIT_MIRROR 0
#define GPUIMG_SPLINE_INIT_REFLECT 1
#define GPUIMG_SPLINE_INIT_WRAP 2
#define GPUIMG_SPLINE_THREADS 256

namespace {

// Inclusive scan over the segments of each line (thread tid = sg * lt + j): on return,
// (a, b) is the composition of the affine maps d -> a d + b of segments 0..sg (forward) or
// segs-1..sg (backward), the segment farthest from sg applied first, and s1, s2 are the sums
// over the same segments. sh holds 4 * GPUIMG_SPLINE_THREADS values.
template <typename T>
__device__ __forceinline__ void scan_segments(T& a, T& b, T& s1, T& s2, T* sh, int tid, int sg, int segs,
                                              int lt, bool backward) {
    const int nt = GPUIMG_SPLINE_THREADS;
    for (int off = 1; off < segs; off <<= 1) {
        sh[tid] = a;
        sh[nt + tid] = b;
        sh[2 * nt + tid] = s1;
        sh[3 * nt + tid] = s2;
        __syncthreads();
        if (backward ? sg + off < segs : sg >= off) {
            const int t = backward ? tid + off * lt : tid - off * lt;
            b = a * sh[nt + t] + b;
            a = a * sh[t];
            s1 += sh[2 * nt + t];
            s2 += sh[3 * nt + t];
        }
        __syncthreads();
    }
}

}  // namespace

template <typename T, int INIT>
__global__ void __launch_bounds__(GPUIMG_SPLINE_THREADS)
spline_prefilter(T* __restrict__ x, long long lines, long long n, long long inner, int segs,
                 int npoles, double pole0, double pole1) {
    constexpr int CH = 128 / (int)sizeof(T);
    constexpr int NT = GPUIMG_SPLINE_THREADS;
    constexpr int RS = NT / CH;  // tile rows one staging step covers
    // the tile doubles as the scan's scratch (4 NT values) and the per-line totals (2 NT)
    __shared__ T tile[NT * (CH + 1)];
    __shared__ T s_l0[NT], s_l1[NT];  // per line: first / last samples the exact starts need
    __shared__ long long s_seg[NT];   // per tile row (thread): byte offset of its segment (staged)
    __shared__ int s_len[NT];         // per tile row: samples of its segment in this tile
    T* const s_t1 = tile + 4 * NT;
    T* const s_t2 = tile + 5 * NT;
    if (n < 2) return;
    const int tid = threadIdx.x;
    const int lt = NT / segs;  // a power of two
    int lsh = 0;
    while ((1 << lsh) < lt) ++lsh;
    const int j = tid & (lt - 1);
    const int sg = tid >> lsh;
    const int m = (int)((n + segs - 1) / segs);
    const int nch = (m + CH - 1) / CH;
    const bool staged = inner == 1;
    const long long start = (long long)sg * m;
    const int len = start < n ? (int)(n - start < m ? n - start : m) : 0;  // 0: unused segment
    const long long e = start + len - 1;                                   // last sample
    // segment-relative positions of samples 0, n - 2 and n - 1 (-1 when not in this segment),
    // of the samples the causal start sums, [r_in0, r_in1], and of the last sample <= n - 2
    const int r_first = start == 0 ? 0 : -1;
    const int r_last = e == n - 1 ? len - 1 : -1;
    const int r_last2 = start <= n - 2 && n - 2 <= e ? (int)(n - 2 - start) : -1;
    const int r_in0 = start == 0 ? 1 : 0;
    const int r_to_n2 = e <= n - 2 ? len - 1 : (int)(n - 2 - start);
    const int r_in1 = INIT == GPUIMG_SPLINE_INIT_WRAP ? len - 1 : r_to_n2;
    T gain = T(1);
    for (int p = 0; p < npoles; ++p) {
        const T z = (T)(p == 0 ? pole0 : pole1);
        gain *= (T(1) - z) * (T(1) - T(1) / z);
    }
    // staging: this thread moves sample k of chunk ch of tile rows row0, row0 + RS, ...
    const int k = tid & (CH - 1), row0 = tid / CH;
    const long long ntiles = (lines + lt - 1) / lt;
    for (long long tl = blockIdx.x; tl < ntiles; tl += gridDim.x) {
        const long long line0 = tl * lt;
        const bool has_line = j < lines - line0;
        const bool active = has_line && len > 0;
        const long long line = line0 + j;
        const long long o = line / inner;
        // sample `start` of this thread's segment (valid when active)
        T* const c = x + (o * n * inner + (line - o * inner)) + start * inner;
        s_seg[tid] = (long long)sizeof(T) * (c - x);
        s_len[tid] = active ? len : 0;
        __syncthreads();

        // Moves chunk ch of every segment of the tile between x and the shared tile (a warp
        // moves 128 contiguous bytes), loads in batches of 8 so that they are in flight together.
        auto stage = [&](int ch, bool in) {
            const int rel = ch * CH + k;
            if (rel >= m) return;
            char* const xr = reinterpret_cast<char*>(x) + (long long)sizeof(T) * rel;
#pragma unroll
            for (int q0 = 0; q0 < CH; q0 += 8) {
                T v[8];
#pragma unroll
                for (int q = 0; q < 8; ++q) {
                    const int row = row0 + (q0 + q) * RS;
                    T* const g = reinterpret_cast<T*>(xr + s_seg[row]);
                    const bool ok = rel < s_len[row];
                    if (in) {
                        if (ok) v[q] = *g;
                    } else {
                        const T t = tile[row * (CH + 1) + k];
                        if (ok) *g = t;
                    }
                }
                if (in) {
#pragma unroll
                    for (int q = 0; q < 8; ++q) {
                        const int row = row0 + (q0 + q) * RS;
                        if (rel < s_len[row]) tile[row * (CH + 1) + k] = v[q];
                    }
                }
            }
        };
        // Sample r (segment-relative, inside chunk ch) of this thread's segment.
        auto at = [&](int ch, int r) -> T& {
            return staged ? tile[tid * (CH + 1) + (r - ch * CH)] : c[(long long)r * inner];
        };

        T zprev = T(0), dprev = T(0);  // anti-causal carry of the previous pole, still to add
        for (int p = 0; p <= npoles; ++p) {
            const bool last = p == npoles;
            const T z = last ? T(0) : (T)(p == 0 ? pole0 : pole1);
            // Sweep 1 (forward): finish the previous pole, then the causal pass from zero.
            T u = T(0), a = T(0), b = T(0), zi = T(0);
            if (active && !last) zi = pow(z, (T)start);
            for (int ch = 0; ch < nch; ++ch) {
                const int r0 = ch * CH;
                const int r1 = (r0 + CH < len ? r0 + CH : len) - 1;
                const bool fix = active && p > 0 && r0 <= r1;  // corrections of the previous pole
                const T zk1 = fix ? pow(zprev, (T)(len - 1 - r1)) : T(0);
                if (last) {  // the final sweep only adds corrections: skip chunks where all are 0
                    const int need = fix && zk1 * dprev != T(0);
                    if (staged ? !__syncthreads_or(need) : !need) continue;
                }
                if (staged) { stage(ch, true); __syncthreads(); }
                if (active) {
                    if (fix) {
                        T zk = zk1;
                        for (int r = r1; r >= r0; --r) {
                            at(ch, r) += zk * dprev;
                            zk *= zprev;
                        }
                    }
                    if (!last) {
                        for (int r = r0; r <= r1; ++r) {
                            T v = at(ch, r);
                            if (p == 0) v *= gain;
                            if (r == r_first) s_l0[j] = v;
                            if (r == r_last) s_l1[j] = v;
                            const bool in = r >= r_in0 && r <= r_in1;
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
            // Causal carries: D(0) = c0 - x0 and D(s + 1) = z^len D(s) + z u_end(s), with c0 from
            // the sums of a and z^(n-1-e) b over the line.
            T ma = T(1), mb = T(0), s1 = T(0), s2 = T(0);
            if (active) {
                ma = z * pow(z, (T)(len - 1));
                mb = z * u;
                s1 = a;
                s2 = pow(z, (T)(n - 1 - e)) * b;
            }
            __syncthreads();  // the tile is free (staged) and s_l0 / s_l1 are written
            scan_segments<T>(ma, mb, s1, s2, tile, tid, sg, segs, lt, false);
            if (sg == segs - 1) {
                s_t1[j] = s1;
                s_t2[j] = s2;
            }
            tile[tid] = ma;
            tile[NT + tid] = mb;
            __syncthreads();
            T dc = T(0);
            if (has_line) {
                const T x0 = s_l0[j], xl = s_l1[j], sa = s_t1[j], sb = s_t2[j];
                const T zn1 = pow(z, (T)(n - 1)), zn = zn1 * z;
                T c0;
                if (INIT == GPUIMG_SPLINE_INIT_MIRROR) {
                    c0 = (x0 + zn1 * xl + sa + zn1 * sb) / (T(1) - zn1 * zn1);
                } else if (INIT == GPUIMG_SPLINE_INIT_REFLECT) {
                    const T run = x0 + zn * xl + sa + zn * sb;
                    c0 = (run + zn1 * (xl + zn * x0)) * (z / (T(1) - zn * zn)) + x0;
                } else {
                    c0 = (x0 + z * sb) / (T(1) - pow(z, (T)n));
                }
                dc = c0 - x0;
                if (sg > 0) dc = tile[tid - lt] * dc + tile[NT + tid - lt];
            }
            __syncthreads();
            // Sweep 2 (backward): finish the causal pass, then the anti-causal pass from zero.
            T w = T(0), g = T(0);
            for (int ch = nch - 1; ch >= 0; --ch) {
                if (staged) { stage(ch, true); __syncthreads(); }
                if (active) {
                    const int r0 = ch * CH;
                    const int r1 = (r0 + CH < len ? r0 + CH : len) - 1;
                    if (r0 <= r1) {
                        T zk = pow(z, (T)r0);
                        for (int r = r0; r <= r1; ++r) {
                            at(ch, r) += zk * dc;
                            zk *= z;
                        }
                    }
                    for (int r = r1; r >= r0; --r) {
                        const T y = at(ch, r);
                        if (r == r_last) s_l1[j] = y;
                        if (r == r_last2) s_l0[j] = y;
                        if (INIT == GPUIMG_SPLINE_INIT_WRAP) g = g * z + (r <= r_to_n2 ? y : T(0));
                        w = z * (w - y);
                        at(ch, r) = w;
                    }
                }
                if (staged) { __syncthreads(); stage(ch, false); }
            }
            // Anti-causal carries, last segment first: E = cl - w(n-1) at the end of the line and
            // E(s - 1) = z^len E(s) + z w_start(s); grid-wrap's cl also sums z^(start+1) g.
            ma = T(1), mb = T(0), s1 = T(0), s2 = T(0);
            if (active) {
                ma = z * pow(z, (T)(len - 1));
                mb = z * w;
                if (INIT == GPUIMG_SPLINE_INIT_WRAP) s1 = pow(z, (T)(start + 1)) * g;
            }
            __syncthreads();
            scan_segments<T>(ma, mb, s1, s2, tile, tid, sg, segs, lt, true);
            if (sg == 0) s_t1[j] = s1;
            tile[tid] = ma;
            tile[NT + tid] = mb;
            __syncthreads();
            dprev = T(0);
            if (has_line) {
                const T y1 = s_l1[j], y2 = s_l0[j];
                T cl;
                if (INIT == GPUIMG_SPLINE_INIT_MIRROR) {
                    cl = (z * y2 + y1) * (z / (z * z - T(1)));
                } else if (INIT == GPUIMG_SPLINE_INIT_REFLECT) {
                    cl = y1 * (z / (z - T(1)));
                } else {
                    cl = (y1 + s_t1[j]) * (z / (pow(z, (T)n) - T(1)));
                }
                dprev = cl - z * (T(0) - y1);
                if (sg < segs - 1) dprev = tile[tid + lt] * dprev + tile[NT + tid + lt];
            }
            zprev = z;
            __syncthreads();
        }
        __syncthreads();
    }
}
