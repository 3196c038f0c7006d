// Total-variation primal and dual steps of the FGP (fast gradient projection) TV prox
// (Beck & Teboulle 2009) on a stack of planes (n = planes * h * w elements, row-major).
// Gradients are forward differences with Neumann boundary (zero across the last row/column);
// div = -grad^T. The dual field p has two components stored as p[0:n] (rows) and p[n:2n]
// (columns).
#include "boundary.cuh"

template <typename T>
__device__ __forceinline__ T tv_div(const T* __restrict__ p, long long t, long long n, long long i,
                                    long long j, long long h, long long w) {
    const T* p0 = p;
    const T* p1 = p + n;
    T d = T(0);
    if (i < h - 1) d += p0[t];
    if (i > 0) d -= p0[t - w];
    if (j < w - 1) d += p1[t];
    if (j > 0) d -= p1[t - 1];
    return d;
}

// x = clamp(v + weight * div(p), lo, hi)
template <typename T>
__global__ void tv_primal(const T* __restrict__ v, const T* __restrict__ p, T* __restrict__ x,
                          long long n, long long h, long long w, T weight, T lo, T hi) {
    for (long long t = blockIdx.x * (long long)blockDim.x + threadIdx.x; t < n;
         t += (long long)gridDim.x * blockDim.x) {
        long long plane, i, j;
        gpuimg::split3(t, h, w, plane, i, j);
        T val = v[t] + weight * tv_div<T>(p, t, n, i, j, h, w);
        val = val < lo ? lo : val;
        val = val > hi ? hi : val;
        x[t] = val;
    }
}

// q = proj(r + step * grad(x)); r = q + momentum * (q - p); p = q.
// ISO = 1: q /= max(1, |q|) per pixel; ISO = 0: each component clamped to [-1, 1].
template <typename T, int ISO>
__global__ void tv_dual(const T* __restrict__ x, T* __restrict__ p, T* __restrict__ r, long long n,
                        long long h, long long w, T step, T momentum) {
    for (long long t = blockIdx.x * (long long)blockDim.x + threadIdx.x; t < n;
         t += (long long)gridDim.x * blockDim.x) {
        long long plane, i, j;
        gpuimg::split3(t, h, w, plane, i, j);
        T xc = x[t];
        T g0 = i < h - 1 ? x[t + w] - xc : T(0);
        T g1 = j < w - 1 ? x[t + 1] - xc : T(0);
        T q0 = r[t] + step * g0;
        T q1 = r[t + n] + step * g1;
        if (ISO) {
            T s = sqrt(q0 * q0 + q1 * q1);
            if (s > T(1)) {
                q0 /= s;
                q1 /= s;
            }
        } else {
            q0 = q0 > T(1) ? T(1) : (q0 < T(-1) ? T(-1) : q0);
            q1 = q1 > T(1) ? T(1) : (q1 < T(-1) ? T(-1) : q1);
        }
        T o0 = p[t], o1 = p[t + n];
        r[t] = q0 + momentum * (q0 - o0);
        r[t + n] = q1 + momentum * (q1 - o1);
        p[t] = q0;
        p[t + n] = q1;
    }
}
