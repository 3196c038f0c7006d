// Adjoint of cubic B-spline free-form interpolation on a regular control grid: scatters a
// dense per-pixel field g (comps, h, w) onto the control coefficients (comps, ky, kx),
//   out[c, i, j] += sum_{y,x} g[c, y, x] B3(y / sy + 1 - i) B3(x / sx + 1 - j),
// so control point (i, j) sits at pixel ((i - 1) sy, (j - 1) sx). One thread per pixel adds its
// 4x4 footprint with atomicAdd; out must be zeroed by the caller.

namespace gpuimg {

template <typename T>
__device__ __forceinline__ void cubic_bspline_weights(T f, T* w) {
    const T g = T(1) - f;
    w[0] = g * g * g / T(6);
    w[1] = (f * f * (f - T(2)) * T(3) + T(4)) / T(6);
    w[2] = (g * g * (g - T(2)) * T(3) + T(4)) / T(6);
    w[3] = f * f * f / T(6);
}

}  // namespace gpuimg

template <typename T>
__global__ void bspline_adjoint(const T* __restrict__ g, T* __restrict__ out, long long comps,
                                long long h, long long w, long long ky, long long kx, T sy,
                                T sx) {
    const long long total = h * w;
    for (long long p = blockIdx.x * (long long)blockDim.x + threadIdx.x; p < total;
         p += (long long)gridDim.x * blockDim.x) {
        const long long y = p / w, x = p - y * w;
        const T ty = T(y) / sy + T(1), tx = T(x) / sx + T(1);
        const T fy = floor(ty), fx = floor(tx);
        const long long i0 = (long long)fy - 1, j0 = (long long)fx - 1;
        T wy[4], wx[4];
        gpuimg::cubic_bspline_weights<T>(ty - fy, wy);
        gpuimg::cubic_bspline_weights<T>(tx - fx, wx);
        for (long long c = 0; c < comps; ++c) {
            const T v = g[c * total + p];
            if (v == T(0)) continue;
            T* oc = out + c * ky * kx;
            for (int k = 0; k < 4; ++k) {
                const long long i = i0 + k;
                if (i < 0 || i >= ky) continue;
                const T vk = v * wy[k];
                for (int l = 0; l < 4; ++l) {
                    const long long j = j0 + l;
                    if (j < 0 || j >= kx) continue;
                    atomicAdd(oc + i * kx + j, vk * wx[l]);
                }
            }
        }
    }
}
