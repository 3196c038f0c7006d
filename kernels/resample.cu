// Separable resampling along one axis with a tap table (area overlap fractions, cubic /
// Lanczos / Pillow filter taps, pyramid steps). x is viewed as (outer, n_in, inner) and
// out as (outer, n_out, inner):
//   out[o, k, c] = sum_t w[k, t] * x[o, idx[k, t], c],   idx in [0, n_in) (boundary applied).
// Zero-weight taps are skipped (as in the sparse-matrix CPU twin), so NaN spreads only
// to outputs whose support holds it.
// One thread per output sample; consecutive threads walk the innermost axis, so the column
// pass (inner = 1) reads each row's taps from cache and the row pass reads coalesced rows.
#include "boundary.cuh"

template <typename T>
__global__ void resample_axis(const T* __restrict__ x, const long long* __restrict__ idx,
                              const T* __restrict__ w, T* __restrict__ out, long long outer,
                              long long n_in, long long n_out, long long inner, int taps) {
    const long long total = outer * n_out * inner;
    for (long long t = blockIdx.x * (long long)blockDim.x + threadIdx.x; t < total;
         t += (long long)gridDim.x * blockDim.x) {
        long long o, k, c;
        gpuimg::split3(t, n_out, inner, o, k, c);
        const T* src = x + o * n_in * inner + c;
        const long long* ik = idx + k * taps;
        const T* wk = w + k * taps;
        T acc = T(0);
        for (int j = 0; j < taps; ++j)
            if (wk[j] != T(0)) acc += wk[j] * src[ik[j] * inner];  // unused taps never read
        out[t] = acc;
    }
}
