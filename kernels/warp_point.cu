// Point sampler for warps and remaps: one thread per output pixel, every image of the batch.
// A block makes 32 x 8 tiles of output pixels (x and y of a 2-D grid over the tiles, grid-stride
// loops in both). Its warps cover the tile in 2^lanes_shift x 2^(5 - lanes_shift) pieces: the
// launcher shapes them from the map's Jacobian so that a warp's taps touch few source rows
// (8 x 4 for a rotation by 30 degrees reads about half the cache lines a row would). Warps that
// are rows of 32 (maps, and matrices near the axes) take tiles of 256 x 1 instead, whole 1 KB
// runs of the output row (an H200 ran the linear undistortion of 4096^2 in 135 us so and in
// 170 us with 32 x 8 tiles). The tile's pixels are visited block-stride (one pass of 256
// threads).
// With STAGE (the launcher takes it for cubic and Lanczos; 256 threads) a tile's taps come from
// shared memory: the block reduces its pixels' tap origins to the footprint's bounding box,
// reads that box once per image (rows by warps, columns by lanes, the boundary rule applied per
// element) and every pixel sums its taps from there, in the same order as the direct gathers
// (identical results). A footprint over GPUIMG_STAGE_BYTES (strong down-scales) falls back to
// the direct gathers.
// The source position of output pixel (i, j) is (map_x[i, j], map_y[i, j]) when use_maps (maps
// of type M, float or double, read as they are stored and widened to double), else
// the projective image of (j, i, 1) under the row-major 3x3 matrix m0..m8 (computed in double).
// INTERP: 0 nearest (floor(x + 1/2)), 1 linear, 2 Keys cubic a = -0.75, 3 Lanczos-4 (normalised);
// cubic / lanczos positions are rounded to 1/1024 pixel (floor(1024 x + 1/2), split into the
// integer tap origin and the offset). Taps outside follow boundary.cuh;
// outside_cval (SciPy's "constant") returns cval for positions outside [0, n-1] by > 1e-6.
// Non-finite positions return cval.
//
// I is the index type: int when every flat index of the batch fits in 32 bits and
// max(h, w) < 2^29 (the launcher checks), long long otherwise. Far positions are first brought
// near the image: the periodic modes reduce |x| > 2^30 exactly by their period (fmod); nearest
// and constant clamp x to [-2^29, n + 2^29], beyond which every tap reads the edge or the fill
// value anyway. Taps inside the image (most pixels) are read without
// boundary arithmetic; the others fold their first index once (a division only when it lies
// more than one period out) and step to the next taps by compare-and-select.
#include "boundary.cuh"

#define GPUIMG_FRACTION_STEPS 1024
#define GPUIMG_FRACTION_BITS 10

namespace {

template <int INTERP> struct Taps;
template <> struct Taps<0> { static const int n = 1, first = 0; };
template <> struct Taps<1> { static const int n = 2, first = 0; };
template <> struct Taps<2> { static const int n = 4, first = -1; };
template <> struct Taps<3> { static const int n = 8, first = -3; };

template <typename I> struct Unsigned;
template <> struct Unsigned<int> { typedef unsigned type; };
template <> struct Unsigned<long long> { typedef unsigned long long type; };

// sin(pi x / 4) and cos(pi x / 4) for x in [0, 1]: Taylor series through a^11 (float) or a^19
// (double) of a = pi x / 4 <= pi / 4, whose remainders lie below the type's rounding.
template <typename T>
__device__ __forceinline__ void sin_cos_quarter_pi(T x, T* s, T* c) {
    const int n = sizeof(T) == 4 ? 6 : 10;  // terms
    const T a = T(0.78539816339744830962) * x, a2 = a * a;
    T ps = T(1), pc = T(1);
#pragma unroll
    for (int k = n - 1; k >= 1; --k) {
        ps = T(1) - ps * a2 * T(1.0 / ((2 * k) * (2 * k + 1)));
        pc = T(1) - pc * a2 * T(1.0 / ((2 * k - 1) * (2 * k)));
    }
    *s = a * ps;
    *c = pc;
}

// Keys' cubic (a = -0.75) on |t| <= 1 and on 1 <= |t| <= 2.
template <typename T>
__device__ __forceinline__ T keys_near(T t) {
    const T a = T(-0.75);
    return ((a + T(2)) * t - (a + T(3))) * t * t + T(1);
}
template <typename T>
__device__ __forceinline__ T keys_far(T t) {
    const T a = T(-0.75);
    return ((a * t - T(5) * a) * t + T(8) * a) * t - T(4) * a;
}

// Weights of the taps origin + FIRST .. origin + FIRST + TAPS - 1 for the offset q in [0, 1)
// (a multiple of 1/1024 for cubic and lanczos).
template <typename T, int INTERP>
__device__ __forceinline__ void tap_weights(T q, T* w) {
    if (INTERP == 1) {
        w[0] = T(1) - q;
        w[1] = q;
    } else if (INTERP == 2) {
        w[0] = keys_far<T>(T(1) + q);
        w[1] = keys_near<T>(q);
        w[2] = keys_near<T>(T(1) - q);
        w[3] = keys_far<T>(T(2) - q);
    } else if (INTERP == 3) {
        // sinc(t) sinc(t / 4) at t = q + 3 - k is 16 sin(pi t) sin(pi t / 4) / (pi t)^2 with
        // sin(pi t) = -/+ sin(pi q) and sin(pi t / 4) = s cos(pi (3 - k) / 4) + c sin(pi (3 - k) / 4)
        // for (s, c) at pi q / 4. The factor 16 sin(pi q) / pi^2 cancels in the normalisation, and
        // so does prod_k t_k^2, which turns the division by t^2 into the product of the others.
        if (q == T(0)) {
#pragma unroll
            for (int k = 0; k < 8; ++k) w[k] = k == 3 ? T(1) : T(0);
            return;
        }
        const T r = T(0.70710678118654752440);  // sqrt(1/2)
        const T sin8[8] = {T(0), r, T(1), r, T(0), -r, T(-1), -r};  // sin(pi m / 4)
        T s, c;
        sin_cos_quarter_pi(q, &s, &c);
        T t2[8], before = T(1);
#pragma unroll
        for (int k = 0; k < 8; ++k) {
            const T t = q + T(3 - k);
            const T v = s * sin8[(5 - k) & 7] + c * sin8[(3 - k) & 7];  // cos(a) = sin(a + pi / 2)
            t2[k] = t * t;
            w[k] = ((k & 1) ? v : -v) * before;
            before *= t2[k];
        }
        T after = T(1), sum = T(0);
#pragma unroll
        for (int k = 7; k >= 0; --k) {
            w[k] *= after;
            after *= t2[k];
            sum += w[k];
        }
        const T inv = T(1) / sum;
#pragma unroll
        for (int k = 0; k < 8; ++k) w[k] *= inv;
    }
}

// Index of the taps i0, i0 + 1, ..., i0 + NT - 1 under MODE (-1: the fill value), n >= 1.
template <int MODE, int NT, typename I>
__device__ __forceinline__ void fold_taps(I i0, I n, I* c) {
    if (MODE == GPUIMG_MODE_NEAREST) {
#pragma unroll
        for (int k = 0; k < NT; ++k) {
            const I i = i0 + k;
            c[k] = i < 0 ? I(0) : (i < n ? i : n - 1);
        }
    } else if (MODE == GPUIMG_MODE_CONSTANT || MODE == GPUIMG_MODE_GRID_CONSTANT) {
#pragma unroll
        for (int k = 0; k < NT; ++k) {
            const I i = i0 + k;
            c[k] = (i >= 0 && i < n) ? i : I(-1);
        }
    } else {
        const bool wrap = MODE == GPUIMG_MODE_WRAP || MODE == GPUIMG_MODE_GRID_WRAP;
        I period = wrap ? n : (MODE == GPUIMG_MODE_REFLECT ? 2 * n : 2 * n - 2);
        if (period == 0) period = 1;  // mirror, n == 1: every index is 0
        I r = i0 < 0 ? i0 + period : i0;
        if (r < 0 || r >= period) {
            r = i0 % period;
            if (r < 0) r += period;
        }
#pragma unroll
        for (int k = 0; k < NT; ++k) {
            c[k] = (wrap || r < n) ? r : (MODE == GPUIMG_MODE_REFLECT ? period - 1 - r : period - r);
            r = r + 1 == period ? I(0) : r + 1;
        }
    }
}

template <int MODE>
__device__ __forceinline__ bool clamping_mode() {
    return MODE == GPUIMG_MODE_NEAREST || MODE == GPUIMG_MODE_CONSTANT || MODE == GPUIMG_MODE_GRID_CONSTANT;
}

// Positions in [near_lo, near_hi(n)] are used as they are; far_position brings the others near.
template <int MODE>
__device__ __forceinline__ double near_lo() {
    return clamping_mode<MODE>() ? -536870912.0 : -1073741824.0;  // -2^29, -2^30
}
template <int MODE, typename I>
__device__ __forceinline__ double near_hi(I n) {
    return clamping_mode<MODE>() ? (double)n + 536870912.0 : 1073741824.0;
}
template <int MODE, typename I>
__device__ __forceinline__ double far_position(double c, I n) {
    const double lo = near_lo<MODE>(), hi = near_hi<MODE, I>(n);
    if (c >= lo && c <= hi) return c;
    if (clamping_mode<MODE>()) return c < lo ? lo : hi;
    const bool wrap = MODE == GPUIMG_MODE_WRAP || MODE == GPUIMG_MODE_GRID_WRAP;
    double period = wrap ? (double)n : (MODE == GPUIMG_MODE_REFLECT ? 2.0 * n : 2.0 * n - 2.0);
    if (period == 0.0) period = 1.0;
    return fmod(c, period);  // exact; |c| < period, which the index type holds
}

// Tap origin (first tap index) and weights of position c.
template <typename T, int INTERP, typename I>
__device__ __forceinline__ I taps_at(double c, T* w) {
    if (INTERP == 1) {
        const double f = floor(c);
        tap_weights<T, 1>(T(c - f), w);
        return (I)f;
    }
    // floor(c * 1024 + 1/2) split into origin and 1/1024 steps (c * 1024 is exact, |c| < 2^42)
    const long long s = (long long)floor(c * GPUIMG_FRACTION_STEPS + 0.5);
    const int q = (int)s & (GPUIMG_FRACTION_STEPS - 1);
    tap_weights<T, INTERP>(T(q) * T(1.0 / GPUIMG_FRACTION_STEPS), w);
    return (I)(s >> GPUIMG_FRACTION_BITS) + Taps<INTERP>::first;
}

// The 3x3 matrix of a warp (row-major), or unused when the positions come from maps.
struct Matrix3 {
    double m0, m1, m2, m3, m4, m5, m6, m7, m8;
};

// Output pixel (ui, uj) of thread slot k of tile (tx, ty): tiles of 256 x 1 when the warps are
// rows of 32 (lx == 5), else 32 x 8 tiles whose warps are 2^lx x 2^(5 - lx) pieces.
template <typename U>
__device__ __forceinline__ void tile_pixel(unsigned k, U tx, U ty, unsigned lx, U* ui, U* uj) {
    const unsigned ly = 5u - lx, warp = k >> 5, lane = k & 31u;
    if (lx == 5u) {
        *uj = tx * 256 + k;
        *ui = ty;
    } else {
        *uj = tx * 32 + (((warp & ((1u << ly) - 1u)) << lx) | (lane & ((1u << lx) - 1u)));
        *ui = ty * 8 + (((warp >> ly) << ly) | (lane >> lx));
    }
}

// The limits of the positions that need neither a fill nor far_position.
struct NearBox {
    double xlo, xhi, ylo, yhi;
};

// Source position of output pixel (i, j) at flat index p, brought near the image; false when
// the pixel is the fill value (non-finite, or outside with outside_cval).
template <int MODE, typename M, typename I>
__device__ __forceinline__ bool source_position(I i, I j, I p, const Matrix3& m, bool projective,
                                                const M* __restrict__ map_x, const M* __restrict__ map_y,
                                                int use_maps, I h, I w, int outside_cval, const NearBox& nb,
                                                double* px_out, double* py_out) {
    double px, py;
    if (use_maps) {
        px = (double)map_x[p];
        py = (double)map_y[p];
    } else {
        const double dj = (double)j, di = (double)i;
        px = m.m0 * dj + m.m1 * di + m.m2;
        py = m.m3 * dj + m.m4 * di + m.m5;
        if (projective) {
            const double ww = m.m6 * dj + m.m7 * di + m.m8;
            px /= ww;
            py /= ww;
        }
    }
    if (!(px >= nb.xlo && px <= nb.xhi && py >= nb.ylo && py <= nb.yhi)) {  // also NaN
        if (outside_cval || !(isfinite(px) && isfinite(py))) return false;
        px = far_position<MODE, I>(px, w);
        py = far_position<MODE, I>(py, h);
    }
    *px_out = px;
    *py_out = py;
    return true;
}

// sum_r wy[r] sum_c wx[c] tap(r, c) over the NT x NT taps, rows in order and columns in order
// within them: every path sums in this one order, so staged and direct results are identical.
template <typename T, int NT, typename Tap>
__device__ __forceinline__ T tap_sum(const T* wx, const T* wy, Tap tap) {
    T acc = T(0);
#pragma unroll
    for (int r = 0; r < NT; ++r) {
        T row = T(0);
#pragma unroll
        for (int c = 0; c < NT; ++c) row += wx[c] * tap(r, c);
        acc += wy[r] * row;
    }
    return acc;
}

// Interpolated value of output pixel p in every image from the taps at (ix0, iy0) with weights
// wx, wy, read from the source through the boundary rule.
template <typename T, int INTERP, int MODE, typename I>
__device__ __forceinline__ void gather_pixel(const T* __restrict__ src, T* __restrict__ dst, I ix0, I iy0,
                                             const T* wx, const T* wy, I p, I nimg, I h, I w, I total, T cval) {
    const int NT = Taps<INTERP>::n;
    const I plane_in = h * w;
    if (ix0 >= 0 && ix0 <= w - NT && iy0 >= 0 && iy0 <= h - NT) {
        // every tap inside the image (most pixels): no boundary rule to apply
        I off = iy0 * w + ix0;
        for (I b = 0; b < nimg; ++b, off += plane_in)
            dst[b * total + p] = tap_sum<T, NT>(wx, wy, [&](int r, int c) { return __ldg(src + (off + r * w) + c); });
        return;
    }
    I cx[NT], cy[NT];
    fold_taps<MODE, NT, I>(ix0, w, cx);
    fold_taps<MODE, NT, I>(iy0, h, cy);
    const bool fills = MODE == GPUIMG_MODE_CONSTANT || MODE == GPUIMG_MODE_GRID_CONSTANT;
    for (I b = 0; b < nimg; ++b)
        dst[b * total + p] = tap_sum<T, NT>(wx, wy, [&](int r, int c) {
            return (fills && (cx[c] < 0 || cy[r] < 0)) ? cval : src[b * plane_in + cy[r] * w + cx[c]];
        });
}

// The minimum of v over the warp's 32 lanes: one redux instruction for 32-bit values from
// sm_80 on, five shuffles otherwise (64-bit values, older devices). The host emulation of the
// tests (no __CUDA_ARCH__) takes the redux path.
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
#define GPUIMG_WARP_REDUX 1
#else
#define GPUIMG_WARP_REDUX 0
#endif
template <typename I>
__device__ __forceinline__ I warp_min(I v) {
    if constexpr (sizeof(I) == 4 && GPUIMG_WARP_REDUX) {
        return __reduce_min_sync(0xffffffffu, v);
    } else {
#pragma unroll
        for (int off = 16; off > 0; off >>= 1) {
            const I o = __shfl_xor_sync(0xffffffffu, v, off);
            v = o < v ? o : v;
        }
        return v;
    }
}

// Largest staged footprint in bytes (rows times an odd row stride, in T).
#define GPUIMG_STAGE_BYTES 16384

// One tile through shared memory (blockDim.x == 256, one output pixel per thread): the
// block's tap origins give the footprint's bounding box, which is read once per image into
// shared memory (rows by warps, columns by lanes, the boundary rule applied per element), and
// every pixel takes its taps from there. A footprint over GPUIMG_STAGE_BYTES (a strong
// down-scale, positions far apart) reads the taps from global memory as gather_pixel does.
// Every thread of the block calls it.
template <typename T, int INTERP, int MODE, typename M, typename I, typename U>
__device__ __forceinline__ void staged_tile(const T* __restrict__ src, T* __restrict__ dst, const Matrix3& m, bool projective,
                            const M* __restrict__ map_x, const M* __restrict__ map_y, int use_maps, I nimg,
                            I h, I w, I ho, I wo, T cval, int outside_cval, const NearBox& nb, unsigned lx, U tx,
                            U ty) {
    const int NT = Taps<INTERP>::n;
    const I BIG = (I)(((typename Unsigned<I>::type)(-1)) >> 1);  // the largest I: no live pixel
    __shared__ I red[4][8];
    __shared__ __align__(16) unsigned char raw[GPUIMG_STAGE_BYTES];
    T* stage = reinterpret_cast<T*>(raw);
    const unsigned k = threadIdx.x, warp = k >> 5, lane = k & 31u;
    const I total = ho * wo;
    U ui, uj;
    tile_pixel<U>(k, tx, ty, lx, &ui, &uj);
    const I i = (I)ui, j = (I)uj;
    const I p = i * wo + j;
    bool live = false;
    T wx[NT], wy[NT];
    I ix0 = 0, iy0 = 0;
    if (ui < (U)ho && uj < (U)wo) {
        double px, py;
        if (source_position<MODE, M, I>(i, j, p, m, projective, map_x, map_y, use_maps, h, w, outside_cval, nb, &px,
                                        &py)) {
            ix0 = taps_at<T, INTERP, I>(px, wx);
            iy0 = taps_at<T, INTERP, I>(py, wy);
            live = true;
        } else {
            for (I b = 0; b < nimg; ++b) dst[b * total + p] = cval;
        }
    }
    // bounding box of the tap origins (maxima as minima of negatives)
    I v0 = warp_min<I>(live ? ix0 : BIG), v1 = warp_min<I>(live ? -ix0 : BIG);
    I v2 = warp_min<I>(live ? iy0 : BIG), v3 = warp_min<I>(live ? -iy0 : BIG);
    if (lane == 0) {
        red[0][warp] = v0;
        red[1][warp] = v1;
        red[2][warp] = v2;
        red[3][warp] = v3;
    }
    __syncthreads();
    // the block's minima: lane l of every warp takes warp (l mod 8)'s partial, then the warp's
    v0 = warp_min<I>(red[0][lane & 7u]);
    v1 = warp_min<I>(red[1][lane & 7u]);
    v2 = warp_min<I>(red[2][lane & 7u]);
    v3 = warp_min<I>(red[3][lane & 7u]);
    __syncthreads();  // red is written again by the next tile
    if (v0 == BIG) return;  // no pixel of the tile reads taps (block-uniform)
    // spans in 64 bits: far-apart origins (periodic modes keep up to 2^30) overflow 32
    const long long xspan = -(long long)v1 - (long long)v0, yspan = -(long long)v3 - (long long)v2;
    const long long cap = GPUIMG_STAGE_BYTES / sizeof(T);
    if (xspan + NT > cap || yspan + NT > cap || (yspan + NT) * ((xspan + NT) | 1LL) > cap) {  // block-uniform
        if (live) gather_pixel<T, INTERP, MODE, I>(src, dst, ix0, iy0, wx, wy, p, nimg, h, w, total, cval);
        return;
    }
    const I x0 = v0, y0 = v2;
    const I cols = (I)xspan + NT, rows = (I)yspan + NT;
    const I stride = cols | I(1);  // odd: a warp's column of taps meets distinct banks
    const bool inner = x0 >= 0 && x0 + cols <= w && y0 >= 0 && y0 + rows <= h;
    const bool fills = MODE == GPUIMG_MODE_CONSTANT || MODE == GPUIMG_MODE_GRID_CONSTANT;
    const T* s0 = stage + (live ? (iy0 - y0) * stride + (ix0 - x0) : I(0));
    for (I b = 0; b < nimg; ++b) {
        const T* img = src + b * (h * w);
        for (I r = (I)warp; r < rows; r += 8) {
            T* srow = stage + r * stride;
            if (inner) {
                const T* grow = img + (y0 + r) * w + x0;
                for (I c = (I)lane; c < cols; c += 32) srow[c] = __ldg(grow + c);
            } else {
                I yi;
                fold_taps<MODE, 1, I>(y0 + r, h, &yi);
                for (I c = (I)lane; c < cols; c += 32) {
                    I xi;
                    fold_taps<MODE, 1, I>(x0 + c, w, &xi);
                    srow[c] = (fills && (xi < 0 || yi < 0)) ? cval : img[yi * w + xi];
                }
            }
        }
        __syncthreads();
        if (live) dst[b * total + p] = tap_sum<T, NT>(wx, wy, [&](int r, int c) { return s0[r * stride + c]; });
        __syncthreads();  // the next image overwrites the staged footprint
    }
}

}  // namespace

// Staged float cubic with 32-bit indices in the clamping modes: at most 64 registers (four
// blocks per SM), which NVRTC for sm_90 reaches without spilling (it otherwise takes 64 to 80;
// the periodic modes' folds would spill). 0: no bound, the compiler's own choice.
template <typename T, int INTERP, int MODE, typename M, typename I, int STAGE>
__global__ void __launch_bounds__(256, (STAGE && sizeof(T) == 4 && sizeof(I) == 4 &&
                                        (MODE == GPUIMG_MODE_NEAREST || MODE == GPUIMG_MODE_CONSTANT ||
                                         MODE == GPUIMG_MODE_GRID_CONSTANT)) ? (INTERP == 2 ? 4 : 3) : 0)
warp_point(const T* __restrict__ src, T* __restrict__ dst, double m0, double m1, double m2,
           double m3, double m4, double m5, double m6, double m7, double m8,
           const M* __restrict__ map_x, const M* __restrict__ map_y, int use_maps, I nimg, I h,
           I w, I ho, I wo, T cval, int outside_cval, int lanes_shift) {
    static_assert(STAGE == 0 || INTERP >= 1, "a staged footprint needs taps");
    typedef typename Unsigned<I>::type U;
    const Matrix3 m = {m0, m1, m2, m3, m4, m5, m6, m7, m8};
    const I total = ho * wo;
    const I plane_in = h * w;
    const bool projective = !(m6 == 0.0 && m7 == 0.0 && m8 == 1.0);
    // positions inside [xlo, xhi] x [ylo, yhi] (most) need neither a fill nor far_position
    const double edge = 1e-6;
    NearBox nb;
    nb.xlo = outside_cval ? -edge : near_lo<MODE>();
    nb.ylo = nb.xlo;
    nb.xhi = outside_cval ? (double)(w - 1) + edge : near_hi<MODE, I>(w);
    nb.yhi = outside_cval ? (double)(h - 1) + edge : near_hi<MODE, I>(h);
    const unsigned lx = (unsigned)lanes_shift;
    // warps that are rows of 32 (lanes_shift 5) take tiles of 256 x 1: a block then reads and
    // writes 1 KB runs of each row, as the maps and the output are laid out
    // tiles per column and per row by shifts (tile sides are powers of two): a division by a
    // run-time divisor costs about twenty instructions, against some 170 for a linear pixel
    const unsigned sx = lx == 5u ? 8u : 5u, sy = lx == 5u ? 0u : 3u;
    const U ntx = ((U)wo + (U(1) << sx) - 1) >> sx, nty = ((U)ho + (U(1) << sy) - 1) >> sy;
    // the shared-memory path needs one pixel per thread (block-uniform); it is compiled only
    // into the STAGE specialisations, so the direct ones keep their registers (NVRTC for
    // sm_90: 40 for linear float, 48 for cubic, against 64 for staged cubic)
    const bool staged = STAGE != 0 && blockDim.x == 256u;
    for (U ty = blockIdx.y; ty < nty; ty += gridDim.y)
    for (U tx = blockIdx.x; tx < ntx; tx += gridDim.x) {
        if constexpr (STAGE != 0) {
            if (staged) {
                staged_tile<T, INTERP, MODE, M, I, U>(src, dst, m, projective, map_x, map_y, use_maps, nimg, h, w,
                                                      ho, wo, cval, outside_cval, nb, lx, tx, ty);
                continue;
            }
        }
        for (unsigned k = threadIdx.x; k < 256u; k += blockDim.x) {
            U ui, uj;
            tile_pixel<U>(k, tx, ty, lx, &ui, &uj);
            if (ui >= (U)ho || uj >= (U)wo) continue;
            const I i = (I)ui, j = (I)uj;
            const I p = i * wo + j;
            double px, py;
            if (!source_position<MODE, M, I>(i, j, p, m, projective, map_x, map_y, use_maps, h, w, outside_cval, nb,
                                             &px, &py)) {
                for (I b = 0; b < nimg; ++b) dst[b * total + p] = cval;
                continue;
            }
            if (INTERP == 0) {
                I ix, iy;
                fold_taps<MODE, 1, I>((I)floor(px + 0.5), w, &ix);
                fold_taps<MODE, 1, I>((I)floor(py + 0.5), h, &iy);
                const bool out = ix < 0 || iy < 0;
                const T* img = src + (out ? I(0) : iy * w + ix);
                for (I b = 0; b < nimg; ++b) dst[b * total + p] = out ? cval : img[b * plane_in];
                continue;
            }
            T wx[Taps<INTERP>::n], wy[Taps<INTERP>::n];
            const I ix0 = taps_at<T, INTERP, I>(px, wx);
            const I iy0 = taps_at<T, INTERP, I>(py, wy);
            gather_pixel<T, INTERP, MODE, I>(src, dst, ix0, iy0, wx, wy, p, nimg, h, w, total, cval);
        }
    }
}
