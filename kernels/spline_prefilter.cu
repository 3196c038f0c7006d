// B-spline prefilter (direct B-spline transform) along one axis of a C-contiguous array,
// one thread per line, in place. The array is viewed as (outer, n, inner); line l starts at
// (l / inner) * n * inner + l % inner and its samples are inner apart.
//
// Each pole z runs a causal recursion c[i] += z c[i-1] and an anti-causal one
// c[i] = z (c[i+1] - c[i]) after a gain prod (1-z)(1-1/z) (Unser, Aldroubi & Eden, IEEE PAMI
// 13(3), 1991). The first coefficient of each pass is initialised exactly for the extension
// the mode implies, as scipy.ndimage (ni_splines.c) does:
//   INIT 0  whole-sample symmetric (mirror; also constant, wrap, grid-constant)
//   INIT 1  half-sample symmetric  (reflect; also nearest)
//   INIT 2  periodic with period n (grid-wrap)
// Arithmetic is carried out in T.

#define GPUIMG_SPLINE_INIT_MIRROR 0
#define GPUIMG_SPLINE_INIT_REFLECT 1
#define GPUIMG_SPLINE_INIT_WRAP 2

namespace gpuimg {

template <int INIT, typename T>
__device__ void spline_causal_init(T* c, long long n, long long s, T z) {
    if (INIT == GPUIMG_SPLINE_INIT_MIRROR) {
        T zi = z;
        const T zn1 = pow(z, (T)(n - 1));
        T c0 = c[0] + zn1 * c[(n - 1) * s];
        for (long long i = 1; i < n - 1; ++i) {
            c0 += zi * (c[i * s] + zn1 * c[(n - 1 - i) * s]);
            zi *= z;
        }
        c[0] = c0 / (T(1) - zn1 * zn1);
    } else if (INIT == GPUIMG_SPLINE_INIT_REFLECT) {
        T zi = z;
        const T zn = pow(z, (T)n);
        const T first = c[0];
        T c0 = c[0] + zn * c[(n - 1) * s];
        // the last term reads the running sum in place of c[0], exactly as scipy's loop does
        for (long long i = 1; i < n; ++i) {
            c0 += zi * (c[i * s] + zn * (i == n - 1 ? c0 : c[(n - 1 - i) * s]));
            zi *= z;
        }
        c0 *= z / (T(1) - zn * zn);
        c[0] = c0 + first;
    } else {
        T zi = z;
        T c0 = c[0];
        for (long long i = 1; i < n; ++i) {
            c0 += zi * c[(n - i) * s];
            zi *= z;
        }
        c[0] = c0 / (T(1) - zi);
    }
}

template <int INIT, typename T>
__device__ void spline_anticausal_init(T* c, long long n, long long s, T z) {
    const long long last = (n - 1) * s;
    if (INIT == GPUIMG_SPLINE_INIT_MIRROR) {
        c[last] = (z * c[last - s] + c[last]) * z / (z * z - T(1));
    } else if (INIT == GPUIMG_SPLINE_INIT_REFLECT) {
        c[last] *= z / (z - T(1));
    } else {
        T zi = z;
        T cl = c[last];
        for (long long i = 0; i < n - 1; ++i) {
            cl += zi * c[i * s];
            zi *= z;
        }
        c[last] = cl * z / (zi - T(1));
    }
}

}  // namespace gpuimg

template <typename T, int INIT>
__global__ void spline_prefilter(T* __restrict__ x, long long lines, long long n, long long inner,
                                 int npoles, double pole0, double pole1) {
    for (long long l = blockIdx.x * (long long)blockDim.x + threadIdx.x; l < lines;
         l += (long long)gridDim.x * blockDim.x) {
        const long long o = l / inner;
        T* c = x + o * n * inner + (l - o * inner);
        const long long s = inner;
        if (n < 2) continue;
        T gain = T(1);
        for (int p = 0; p < npoles; ++p) {
            const T z = (T)(p == 0 ? pole0 : pole1);
            gain *= (T(1) - z) * (T(1) - T(1) / z);
        }
        for (long long i = 0; i < n; ++i) c[i * s] *= gain;
        for (int p = 0; p < npoles; ++p) {
            const T z = (T)(p == 0 ? pole0 : pole1);
            gpuimg::spline_causal_init<INIT, T>(c, n, s, z);
            for (long long i = 1; i < n; ++i) c[i * s] += z * c[(i - 1) * s];
            gpuimg::spline_anticausal_init<INIT, T>(c, n, s, z);
            for (long long i = n - 2; i >= 0; --i) c[i * s] = z * (c[(i + 1) * s] - c[i * s]);
        }
    }
}
