// CUDA kernel for prefill attention's blockwise online softmax (compiled to
// PTX by build.rs with the `cuda` feature; loaded by
// src/engine/attention/cuda.rs). For one block of keys, each row of raw
// scores q·kᵀ (bf16/f16) becomes its probabilities under the row's running
// max, in place, and the row's (max, sum, correction) state is updated: the
// work of about eight tensor ops over f32 scores, in one pass.

#include "../half.cuh"

// One warp per row. scores: (rows, width), row r holding query position
// start + r % t against keys from..from+width; key j is visible when
// from + j <= start + r % t. state: (rows, 3) = running max, running sum,
// and this block's correction exp(old max - new max), which the caller
// applies to its weighted values before adding this block's.
template <typename T>
__device__ void softmax_block(T *scores, float *state, int rows, int width, float scale, int start, int from, int t) {
    const int row = (int)((blockIdx.x * (size_t)blockDim.x + threadIdx.x) >> 5);
    const int lane = threadIdx.x & 31;
    if (row >= rows) return;
    T *s = scores + (size_t)row * width;
    const int last = start + row % t - from; // the last visible key of the block
    float mx = -INFINITY;
    for (int j = lane; j < width; j += 32)
        if (j <= last) mx = fmaxf(mx, to_float(s[j]) * scale);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
    float *st = state + (size_t)row * 3;
    const float m_old = st[0], m_new = fmaxf(m_old, mx);
    float sum = 0.0f;
    for (int j = lane; j < width; j += 32) {
        const float p = (j <= last && m_new != -INFINITY) ? __expf(to_float(s[j]) * scale - m_new) : 0.0f;
        T stored;
        from_float(p, &stored);
        s[j] = stored;
        sum += to_float(stored); // the sum of what P·V will multiply
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
    if (lane == 0) {
        const float c = m_old == -INFINITY ? 0.0f : __expf(m_old - m_new);
        st[0] = m_new;
        st[1] = st[1] * c + sum;
        st[2] = c;
    }
}

extern "C" __global__ void softmax_block_bf16(__nv_bfloat16 *scores, float *state, int rows, int width, float scale, int start,
                                              int from, int t) {
    softmax_block(scores, state, rows, width, scale, start, from, t);
}

extern "C" __global__ void softmax_block_f16(__half *scores, float *state, int rows, int width, float scale, int start, int from,
                                             int t) {
    softmax_block(scores, state, rows, width, scale, start, from, t);
}
