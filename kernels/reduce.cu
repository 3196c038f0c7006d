// Whole-array reductions for gpuimg.metrics, accumulated in double.
//
// error_sum<T, POWER>: *out += sum_i |a_i - b_i|^POWER (POWER 1 or 2), the difference formed in
//   T, its power and the sums in double. Grid-stride loop, a warp-shuffle sum per warp, the
//   warps' sums added by one thread, one atomicAdd per block (the caller zeroes *out first).
// decibels: *out = 10 log10(num / den) with num = num_s * (num_is_ptr ? *num_p : 1) and
//   den = den_s * *den_p, one thread: NaN when either is NaN, +inf when den <= 0 (or -inf when
//   den < 0 and num <= 0), -inf when only num <= 0.
#define GPUIMG_INF __longlong_as_double(0x7ff0000000000000LL)
#define GPUIMG_NAN __longlong_as_double(0x7ff8000000000000LL)

template <typename T, int POWER>
__global__ void error_sum(const T* __restrict__ a, const T* __restrict__ b, long long n,
                          double* __restrict__ out) {
    __shared__ double warp_sums[32];
    double acc = 0.0;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        const double d = static_cast<double>(a[i] - b[i]);
        acc += POWER == 2 ? d * d : fabs(d);
    }
    for (int off = 16; off > 0; off >>= 1) acc += __shfl_down_sync(0xffffffffu, acc, off);
    if ((threadIdx.x & 31) == 0) warp_sums[threadIdx.x >> 5] = acc;
    __syncthreads();
    if (threadIdx.x == 0) {
        double total = 0.0;
        for (int k = 0; k < (int)(blockDim.x >> 5); ++k) total += warp_sums[k];
        atomicAdd(out, total);
    }
}

__global__ void decibels(const double* __restrict__ num_p, int num_is_ptr, double num_s,
                         const double* __restrict__ den_p, double den_s, double* __restrict__ out) {
    if (blockIdx.x != 0 || threadIdx.x != 0) return;
    const double num = num_is_ptr ? num_s * num_p[0] : num_s;
    const double den = den_s * den_p[0];
    double r;
    if (isnan(num) || isnan(den))
        r = GPUIMG_NAN;
    else if (!(den > 0.0))
        r = (num > 0.0 || den == 0.0) ? GPUIMG_INF : -GPUIMG_INF;
    else if (!(num > 0.0))
        r = -GPUIMG_INF;
    else
        r = 10.0 * log10(num / den);
    out[0] = r;
}
