// Richardson-Lucy element-wise steps on stacks of planes (planes x h x w). Every array is a
// strided view: element (p, i, j) sits at p * ps + i * rs + j (ps, rs in elements), so the
// solver's views into its FFT work buffers are read and written in place, without copies.
// Launched by rows (launch_rows): x over columns, y over rows, z over planes, each a
// grid-stride loop, so no thread divides a flat index (n = planes * h * w). The launch gives
// a thread several columns of its row (cols_per_thread), which spreads the row set-up.

#include "boundary.cuh"

// out = b / ax where ax >= eps, else 0 (eps > 0: scikit-image's filter_epsilon; the caller
// passes the smallest normal number when no filter is asked for, which only guards ax == 0).
template <typename T>
__global__ void rl_ratio(const T* __restrict__ b, const T* __restrict__ ax, T* __restrict__ out,
                         long long n, long long h, long long w, long long b_ps, long long b_rs,
                         long long a_ps, long long a_rs, long long o_ps, long long o_rs, T eps) {
    const long long hw = h * w;  // p * hw < n: no per-thread 64-bit division
    for (long long p = blockIdx.z; p * hw < n; p += gridDim.z)
        for (long long i = blockIdx.y; i < h; i += gridDim.y) {
            const T* br = b + p * b_ps + i * b_rs;
            const T* ar = ax + p * a_ps + i * a_rs;
            T* orow = out + p * o_ps + i * o_rs;
            for (long long j = blockIdx.x * (long long)blockDim.x + threadIdx.x; j < w;
                 j += (long long)gridDim.x * blockDim.x) {
                const T a = ar[j];
                orow[j] = a < eps ? T(0) : br[j] / a;
            }
        }
}

// Unit-length forward gradient of x at (i, j) (Neumann boundary), |g| regularised by eps;
// xt points at x(i, j), rs is the row stride.
template <typename T>
__device__ __forceinline__ void rl_unit_grad(const T* __restrict__ xt, long long i, long long j,
                                             long long h, long long w, long long rs, T eps, T& u0,
                                             T& u1) {
    const T xc = xt[0];
    const T g0 = i < h - 1 ? xt[rs] - xc : T(0);
    const T g1 = j < w - 1 ? xt[1] - xc : T(0);
    const T s = sqrt(g0 * g0 + g1 * g1 + eps * eps);
    u0 = g0 / s;
    u1 = g1 / s;
}

// out = x * corr * inv_norm / (1 - tv_weight * div(grad x / |grad x|))   (Dey et al. 2006);
// inv_norm (1 / A^T 1) is one contiguous h x w plane shared by every plane. With tv_weight != 0
// out must not overlap x (neighbours of x are read).
template <typename T>
__global__ void rl_update(const T* __restrict__ x, const T* __restrict__ corr,
                          const T* __restrict__ inv_norm, T* __restrict__ out, long long n,
                          long long h, long long w, long long x_ps, long long x_rs,
                          long long c_ps, long long c_rs, long long o_ps, long long o_rs,
                          T tv_weight, T eps) {
    const long long hw = h * w;  // p * hw < n: no per-thread 64-bit division
    for (long long p = blockIdx.z; p * hw < n; p += gridDim.z)
        for (long long i = blockIdx.y; i < h; i += gridDim.y)
            for (long long j = blockIdx.x * (long long)blockDim.x + threadIdx.x; j < w;
                 j += (long long)gridDim.x * blockDim.x) {
                const T* xt = x + p * x_ps + i * x_rs + j;
                T val = xt[0] * corr[p * c_ps + i * c_rs + j] * inv_norm[i * w + j];
                if (tv_weight != T(0)) {
                    T a0, a1, d = T(0);
                    rl_unit_grad<T>(xt, i, j, h, w, x_rs, eps, a0, a1);
                    if (i < h - 1) d += a0;
                    if (j < w - 1) d += a1;
                    if (i > 0) {
                        rl_unit_grad<T>(xt - x_rs, i - 1, j, h, w, x_rs, eps, a0, a1);
                        d -= a0;
                    }
                    if (j > 0) {
                        rl_unit_grad<T>(xt - 1, i, j - 1, h, w, x_rs, eps, a0, a1);
                        d -= a1;
                    }
                    val /= T(1) - tv_weight * d;
                }
                out[p * o_ps + i * o_rs + j] = val;
            }
}
