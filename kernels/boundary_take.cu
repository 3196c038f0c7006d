// Gathers samples of each row of a (lines, n) array at integer positions through a boundary
// mode: out[l, k] = x[l, boundary_index<MODE>(idx[k], n)] (cval where a constant mode says so).
// Exercises boundary.cuh on the device; also the building block of padding.
#include "boundary.cuh"

template <typename T, int MODE>
__global__ void boundary_take(const T* __restrict__ x, const long long* __restrict__ idx,
                              T* __restrict__ out, long long lines, long long n, long long m,
                              T cval) {
    long long total = lines * m;
    for (long long t = blockIdx.x * (long long)blockDim.x + threadIdx.x; t < total;
         t += (long long)gridDim.x * blockDim.x) {
        long long l = t / m, k = t - l * m;
        out[t] = gpuimg::boundary_read<MODE, T, long long>(x + l * n, idx[k], n, 1LL, cval);
    }
}
