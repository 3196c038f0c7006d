// gpuimg boundary modes as index functions, shared by every kernel that reads neighbours.
// Mode numbers match gpuimg/_boundary.py (MODE_CODES). Semantics follow scipy.ndimage for
// integer sample positions (filters):
//   REFLECT        d c b a | a b c d | d c b a   (half-sample symmetric, OpenCV REFLECT)
//   MIRROR         d c b   | a b c d | c b a     (whole-sample symmetric, OpenCV REFLECT_101)
//   NEAREST        a a a a | a b c d | d d d d   (OpenCV REPLICATE)
//   CONSTANT       k k k k | a b c d | k k k k   (OpenCV CONSTANT; index -1 means "use cval")
//   WRAP           a b c d | a b c d | a b c d   (periodic, OpenCV WRAP)
//   GRID_WRAP      same as WRAP for integer positions
//   GRID_CONSTANT  same as CONSTANT for integer positions
#pragma once

#define GPUIMG_MODE_REFLECT 0
#define GPUIMG_MODE_MIRROR 1
#define GPUIMG_MODE_NEAREST 2
#define GPUIMG_MODE_CONSTANT 3
#define GPUIMG_MODE_WRAP 4
#define GPUIMG_MODE_GRID_WRAP 5
#define GPUIMG_MODE_GRID_CONSTANT 6

namespace gpuimg {

// Maps an integer index i (possibly far outside) into [0, n); returns -1 for constant modes
// when i is outside. n >= 1.
template <int MODE, typename I>
__device__ __forceinline__ I boundary_index(I i, I n) {
    if (i >= 0 && i < n) return i;
    if (MODE == GPUIMG_MODE_CONSTANT || MODE == GPUIMG_MODE_GRID_CONSTANT) return I(-1);
    if (MODE == GPUIMG_MODE_NEAREST) return i < 0 ? I(0) : n - 1;
    if (MODE == GPUIMG_MODE_WRAP || MODE == GPUIMG_MODE_GRID_WRAP) {
        I r = i % n;
        return r < 0 ? r + n : r;
    }
    if (MODE == GPUIMG_MODE_REFLECT) {
        I period = 2 * n;
        I r = i % period;
        if (r < 0) r += period;
        return r < n ? r : period - 1 - r;
    }
    // MIRROR
    if (n == 1) return I(0);
    I period = 2 * n - 2;
    I r = i % period;
    if (r < 0) r += period;
    return r < n ? r : period - r;
}

// q = a / b and r = a - q * b for a >= 0, b > 0, in 32-bit arithmetic when both fit
// (a 64-bit division costs several times more on the GPU).
__device__ __forceinline__ void divmod(long long a, long long b, long long& q, long long& r) {
    if (a <= 0x7fffffffLL && b <= 0x7fffffffLL) {
        const unsigned uq = (unsigned)a / (unsigned)b;
        q = uq;
        r = a - (long long)uq * b;
    } else {
        q = a / b;
        r = a - q * b;
    }
}

// (outer, middle, inner) indices of flat index t over an outer x n x m row-major block.
__device__ __forceinline__ void split3(long long t, long long n, long long m, long long& o,
                                       long long& i, long long& j) {
    long long r;
    divmod(t, m, r, j);
    divmod(r, n, o, i);
}

// Reads x[base + boundary_index(i) * stride] or cval for constant modes outside.
template <int MODE, typename T, typename I>
__device__ __forceinline__ T boundary_read(const T* __restrict__ x, I i, I n, I stride, T cval) {
    I j = boundary_index<MODE, I>(i, n);
    return j < 0 ? cval : x[j * stride];
}

}  // namespace gpuimg
