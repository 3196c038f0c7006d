// Richardson-Lucy element-wise steps on a stack of planes (n = planes * h * w, row-major).

// out = b / ax where ax >= eps, else 0 (eps > 0: scikit-image's filter_epsilon; the caller
// passes the smallest normal number when no filter is asked for, which only guards ax == 0).
template <typename T>
__global__ void rl_ratio(const T* __restrict__ b, const T* __restrict__ ax, T* __restrict__ out,
                         long long n, T eps) {
    for (long long t = blockIdx.x * (long long)blockDim.x + threadIdx.x; t < n;
         t += (long long)gridDim.x * blockDim.x) {
        T a = ax[t];
        out[t] = a < eps ? T(0) : b[t] / a;
    }
}

// Unit-length forward gradient of x at (i, j) (Neumann boundary), |g| regularised by eps.
template <typename T>
__device__ __forceinline__ void rl_unit_grad(const T* __restrict__ x, long long t, long long i,
                                             long long j, long long h, long long w, T eps, T& u0,
                                             T& u1) {
    T xc = x[t];
    T g0 = i < h - 1 ? x[t + w] - xc : T(0);
    T g1 = j < w - 1 ? x[t + 1] - xc : T(0);
    T s = sqrt(g0 * g0 + g1 * g1 + eps * eps);
    u0 = g0 / s;
    u1 = g1 / s;
}

// out = x * corr * inv_norm / (1 - tv_weight * div(grad x / |grad x|))   (Dey et al. 2006);
// inv_norm (1 / A^T 1) has h * w elements and is shared by every plane.
template <typename T>
__global__ void rl_update(const T* __restrict__ x, const T* __restrict__ corr,
                          const T* __restrict__ inv_norm, T* __restrict__ out, long long n,
                          long long h, long long w, T tv_weight, T eps) {
    long long hw = h * w;
    for (long long t = blockIdx.x * (long long)blockDim.x + threadIdx.x; t < n;
         t += (long long)gridDim.x * blockDim.x) {
        long long j = t % w;
        long long i = (t / w) % h;
        T val = x[t] * corr[t] * inv_norm[t % hw];
        if (tv_weight != T(0)) {
            T a0, a1, d = T(0);
            rl_unit_grad<T>(x, t, i, j, h, w, eps, a0, a1);
            if (i < h - 1) d += a0;
            if (j < w - 1) d += a1;
            if (i > 0) {
                rl_unit_grad<T>(x, t - w, i - 1, j, h, w, eps, a0, a1);
                d -= a0;
            }
            if (j > 0) {
                rl_unit_grad<T>(x, t - 1, i, j - 1, h, w, eps, a0, a1);
                d -= a1;
            }
            val /= T(1) - tv_weight * d;
        }
        out[t] = val;
    }
}
