// CUDA kernels for one-row matrix products (compiled to PTX by build.rs with
// the `cuda` feature; loaded by src/engine/linear/cuda.rs): y = x · Wᵀ for
// a single activation row x (cols) and a weight matrix W (rows, cols), as a
// decode step's projections need. Reading W is the whole cost, so each warp
// streams one output row in 16-byte vectors, eight in flight per lane,
// bypassing L1 for the weights (read once) while x stays cached. The gated
// variant computes a SwiGLU MLP's silu(gate) * up in the same pass.

#include "../half.cuh"

#define UNROLL 8

// Dot product of eight values of T packed in each of a and b.
template <typename T> __device__ __forceinline__ float dot8(uint4 a, uint4 b, float acc) {
    const uint32_t *x = reinterpret_cast<const uint32_t *>(&a), *y = reinterpret_cast<const uint32_t *>(&b);
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const float2 p = pair(x[i], T()), q = pair(y[i], T());
        acc = fmaf(p.x, q.x, acc);
        acc = fmaf(p.y, q.y, acc);
    }
    return acc;
}

// Row `row` of each of N matrices times x, summed over the warp (every
// lane gets the sums); the matrices' loads are interleaved.
template <typename T, int N>
__device__ __forceinline__ void row_dots(const T *x, const T *const (&w)[N], int row, int cols, int lane, float (&acc)[N]) {
    constexpr int U = UNROLL / N;
    const uint4 *xv = reinterpret_cast<const uint4 *>(x);
    const uint4 *wr[N];
#pragma unroll
    for (int m = 0; m < N; m++) {
        wr[m] = reinterpret_cast<const uint4 *>(w[m] + (size_t)row * cols);
        acc[m] = 0.0f;
    }
    const int vecs = cols / 8;
    int i = lane;
    for (; i + 32 * (U - 1) < vecs; i += 32 * U) {
        uint4 a[N][U], b[U];
#pragma unroll
        for (int u = 0; u < U; u++)
#pragma unroll
            for (int m = 0; m < N; m++) a[m][u] = __ldcs(wr[m] + i + 32 * u);
#pragma unroll
        for (int u = 0; u < U; u++) b[u] = __ldg(xv + i + 32 * u);
#pragma unroll
        for (int u = 0; u < U; u++)
#pragma unroll
            for (int m = 0; m < N; m++) acc[m] = dot8<T>(a[m][u], b[u], acc[m]);
    }
    for (; i < vecs; i += 32) {
        const uint4 b = __ldg(xv + i);
#pragma unroll
        for (int m = 0; m < N; m++) acc[m] = dot8<T>(__ldcs(wr[m] + i), b, acc[m]);
    }
#pragma unroll
    for (int m = 0; m < N; m++)
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) acc[m] += __shfl_xor_sync(0xffffffffu, acc[m], o);
}

// One warp per output row; cols is a multiple of 8 and rows of W start on
// 16-byte boundaries (checked by the launcher).
template <typename T> __device__ void matvec(const T *x, const T *w, T *y, int rows, int cols) {
    const int row = (int)((blockIdx.x * (size_t)blockDim.x + threadIdx.x) >> 5);
    const int lane = threadIdx.x & 31;
    if (row >= rows) return;
    const T *ws[1] = {w};
    float acc[1];
    row_dots<T, 1>(x, ws, row, cols, lane, acc);
    if (lane == 0) from_float(acc[0], &y[row]);
}

// A gated MLP's first half in one pass: y = silu(x · Gᵀ) * (x · Uᵀ), with
// the products rounded to T before the activation, as separate kernels would.
template <typename T> __device__ void gated_matvec(const T *x, const T *gate, const T *up, T *y, int rows, int cols) {
    const int row = (int)((blockIdx.x * (size_t)blockDim.x + threadIdx.x) >> 5);
    const int lane = threadIdx.x & 31;
    if (row >= rows) return;
    const T *ws[2] = {gate, up};
    float acc[2];
    row_dots<T, 2>(x, ws, row, cols, lane, acc);
    T g_t, u_t;
    from_float(acc[0], &g_t);
    from_float(acc[1], &u_t);
    const float g = to_float(g_t), u = to_float(u_t);
    if (lane == 0) from_float(g / (1.0f + __expf(-g)) * u, &y[row]);
}

extern "C" __global__ void matvec_bf16(const __nv_bfloat16 *x, const __nv_bfloat16 *w, __nv_bfloat16 *y, int rows, int cols) {
    matvec(x, w, y, rows, cols);
}

extern "C" __global__ void matvec_f16(const __half *x, const __half *w, __half *y, int rows, int cols) {
    matvec(x, w, y, rows, cols);
}

extern "C" __global__ void gated_matvec_bf16(const __nv_bfloat16 *x, const __nv_bfloat16 *gate, const __nv_bfloat16 *up,
                                             __nv_bfloat16 *y, int rows, int cols) {
    gated_matvec(x, gate, up, y, rows, cols);
}

extern "C" __global__ void gated_matvec_f16(const __half *x, const __half *gate, const __half *up, __half *y, int rows, int cols) {
    gated_matvec(x, gate, up, y, rows, cols);
}
