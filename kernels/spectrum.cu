// Products of half-spectra (rfft2 output) before an inverse transform.
//
// spectrum_multiply: X <- s * X * H for a stack of complex spectra X (planes x rows x cols,
// interleaved re/im in T) and one rows x cols spectrum H shared by every plane. With s = 1 / N
// the unnormalised inverse cuFFT transform that follows yields the normalised inverse, so the
// scaling costs no pass of its own. Launched by rows (launch_rows): x over columns, y over rows,
// z over planes.
template <typename T>
__global__ void spectrum_multiply(T* __restrict__ X, const T* __restrict__ H, long long planes,
                                  long long rows, long long cols, T s) {
    for (long long p = blockIdx.z; p < planes; p += gridDim.z)
        for (long long i = blockIdx.y; i < rows; i += gridDim.y) {
            T* xr = X + 2 * ((p * rows + i) * cols);
            const T* hr = H + 2 * (i * cols);
            for (long long j = blockIdx.x * (long long)blockDim.x + threadIdx.x; j < cols;
                 j += (long long)gridDim.x * blockDim.x) {
                const T a = xr[2 * j], b = xr[2 * j + 1];
                const T c = hr[2 * j] * s, d = hr[2 * j + 1] * s;
                xr[2 * j] = a * c - b * d;
                xr[2 * j + 1] = a * d + b * c;
            }
        }
}
