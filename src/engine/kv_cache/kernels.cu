// CUDA kernels for the KV cache (compiled to PTX by build.rs with the
// `cuda` feature; loaded by src/engine/kv_cache/cuda.rs):
//
// - decode attention for one query position, flash-decoding style: the keys
//   are split over blocks (grid: KV head × split); each block reads its KV
//   head's rows once for every query head of the GQA group, dequantizing
//   int8/fp8 codes with their per-(token, head) scales in registers, and
//   keeps an online softmax; a second kernel merges the splits.
// - quantize-and-append: Walsh–Hadamard rotation, absmax scale and encoding
//   of new key/value rows, written straight into the cache.
//

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <stdint.h>

#define ELEMS 8

__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float to_float(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ void from_float(float x, __nv_bfloat16 *out) { *out = __float2bfloat16(x); }
__device__ __forceinline__ void from_float(float x, __half *out) { *out = __float2half(x); }

// Loads 8 stored values of a row as floats (before any scale).
template <typename S> struct Row;

template <> struct Row<__nv_bfloat16> {
    static constexpr bool SCALED = false;
    static constexpr int VEC = 2;
    __device__ static void some(const __nv_bfloat16 *p, float *out) {
        __nv_bfloat162 x = *reinterpret_cast<const __nv_bfloat162 *>(p);
        out[0] = __low2float(x);
        out[1] = __high2float(x);
    }
    __device__ static void load(const __nv_bfloat16 *p, float *out) {
        uint4 raw = *reinterpret_cast<const uint4 *>(p);
        const __nv_bfloat16 *x = reinterpret_cast<const __nv_bfloat16 *>(&raw);
#pragma unroll
        for (int e = 0; e < ELEMS; e++) out[e] = __bfloat162float(x[e]);
    }
};

template <> struct Row<__half> {
    static constexpr bool SCALED = false;
    static constexpr int VEC = 2;
    __device__ static void some(const __half *p, float *out) {
        __half2 x = *reinterpret_cast<const __half2 *>(p);
        out[0] = __low2float(x);
        out[1] = __high2float(x);
    }
    __device__ static void load(const __half *p, float *out) {
        uint4 raw = *reinterpret_cast<const uint4 *>(p);
        const __half *x = reinterpret_cast<const __half *>(&raw);
#pragma unroll
        for (int e = 0; e < ELEMS; e++) out[e] = __half2float(x[e]);
    }
};

template <> struct Row<float> {
    static constexpr bool SCALED = false;
    static constexpr int VEC = 1;
    __device__ static void some(const float *p, float *out) { out[0] = *p; }
    __device__ static void load(const float *p, float *out) {
        float4 a = reinterpret_cast<const float4 *>(p)[0], b = reinterpret_cast<const float4 *>(p)[1];
        out[0] = a.x; out[1] = a.y; out[2] = a.z; out[3] = a.w;
        out[4] = b.x; out[5] = b.y; out[6] = b.z; out[7] = b.w;
    }
};

// INT8 codes are stored as u8 offset by 128.
struct Int8 {
    static constexpr float MAX = 127.0f;
    __device__ static uint8_t encode(float x) { return (uint8_t)(fminf(fmaxf(roundf(x), -127.0f), 127.0f) + 128.0f); }
    __device__ static float decode(uint8_t b) { return (float)b - 128.0f; }
};

struct Fp8 {
    static constexpr float MAX = 448.0f;
    __device__ static uint8_t encode(float x) { return (uint8_t)__nv_cvt_float_to_fp8(x, __NV_SATFINITE, __NV_E4M3); }
    __device__ static float decode(uint8_t b) {
        __half_raw h = __nv_cvt_fp8_to_halfraw((__nv_fp8_storage_t)b, __NV_E4M3);
        return __half2float(__half(h));
    }
};

template <typename C> struct Codes {
    static constexpr bool SCALED = true;
    static constexpr int VEC = 4;
    __device__ static void some(const uint8_t *p, float *out) {
        uint32_t x = *reinterpret_cast<const uint32_t *>(p);
#pragma unroll
        for (int e = 0; e < 4; e++) out[e] = C::decode((uint8_t)(x >> (8 * e)));
    }
    __device__ static void load(const uint8_t *p, float *out) {
        uint2 raw = *reinterpret_cast<const uint2 *>(p);
        const uint8_t *x = reinterpret_cast<const uint8_t *>(&raw);
#pragma unroll
        for (int e = 0; e < ELEMS; e++) out[e] = C::decode(x[e]);
    }
};

// In-place fast Walsh–Hadamard transforms of `rows` rows of d floats in
// shared memory (natural order, unnormalized), by the whole block.
__device__ void block_fwht(float *x, int rows, int d) {
    const int half = d / 2;
    for (int len = 1; len < d; len <<= 1) {
        for (int i = threadIdx.x; i < rows * half; i += blockDim.x) {
            const int r = i / half, j = i % half;
            const int lo = r * d + (j / len) * 2 * len + (j % len), hi = lo + len;
            const float a = x[lo], b = x[hi];
            x[lo] = a + b;
            x[hi] = a - b;
        }
        __syncthreads();
    }
}

// One block of d threads per (KV head, split), over tiles of d rows. With
// `rotate`, q arrives in the model's basis and is rotated here into the
// cache's (decode_combine rotates the output back). Per tile:
//  1. scores: thread i takes row i of the tile and all the group's heads
//     (the queries sit in shared memory), so each key row is read once;
//  2. softmax: one warp per head updates the running max and sum;
//  3. values: each thread accumulates a few adjacent columns (one vector
//     load) of every head over a share of the rows, reading value rows across
//     the block (coalesced); the shares are summed at the end.
// q: (heads, d); k, v: (kv_heads, cap, d) rows of S, or codes with scales
// ks, vs: (kv_heads, cap); partial: (heads, splits, d + 2) = (acc, max, sum).
template <typename Q, typename S, typename L, int MAXG>
__device__ void decode_partial(const Q *q, const S *k, const S *v, const float *ks, const float *vs, float *partial,
                               int heads, int kv_heads, int cap, int d, int len, int chunk, float softmax_scale,
                               int rotate) {
    extern __shared__ float smem[];
    const int kvh = blockIdx.x, split = blockIdx.y, splits = gridDim.y;
    const int group = heads / kv_heads;
    const int tid = threadIdx.x, tile = blockDim.x; // tile == d
    const int lane = tid & 31, warp = tid >> 5, warps = tile >> 5;
    float *q_s = smem;                 // group * d
    float *p_s = q_s + group * d;      // group * tile: scores, then probabilities
    float *m_s = p_s + group * tile;   // group: running max
    float *l_s = m_s + group;          // group: running sum
    float *c_s = l_s + group;          // group: this tile's correction
    float *vs_s = c_s + group;         // tile: value scales
    const int begin = split * chunk, end = min(len, begin + chunk);

    for (int i = tid; i < group * d; i += tile) q_s[i] = to_float(q[(size_t)kvh * group * d + i]);
    if (tid < group) { m_s[tid] = -INFINITY; l_s[tid] = 0.0f; }
    __syncthreads();
    float q_scale = softmax_scale;
    if (rotate) {
        block_fwht(q_s, group, d);
        q_scale *= rsqrtf((float)d);
    }
    for (int i = tid; i < group * d; i += tile) q_s[i] *= q_scale;
    __syncthreads();

    // Phase 3 layout: a thread takes VEC adjacent columns (one vector load)
    // of every VEC-th row of the tile; row groups are summed at the end.
    constexpr int VEC = L::VEC;
    const int col_threads = d / VEC, row_groups = tile / col_threads;
    const int cg = tid % col_threads, rg = tid / col_threads;
    float acc[MAXG][VEC];
#pragma unroll
    for (int g = 0; g < MAXG; g++)
#pragma unroll
        for (int e = 0; e < VEC; e++) acc[g][e] = 0.0f;
    for (int t0 = begin; t0 < end; t0 += tile) {
        const int rows = min(tile, end - t0);
        // 1. Scores of row t0 + tid.
        float s[MAXG];
#pragma unroll
        for (int g = 0; g < MAXG; g++) s[g] = 0.0f;
        if (tid < rows) {
            const size_t at = (size_t)kvh * cap + t0 + tid;
            const S *row = k + at * d;
            for (int e0 = 0; e0 < d; e0 += ELEMS) {
                float kf[ELEMS];
                L::load(row + e0, kf);
#pragma unroll
                for (int g = 0; g < MAXG; g++) {
                    if (g >= group) break;
#pragma unroll
                    for (int e = 0; e < ELEMS; e++) s[g] += q_s[g * d + e0 + e] * kf[e];
                }
            }
            const float kscale = L::SCALED ? ks[at] : 1.0f;
            vs_s[tid] = L::SCALED ? vs[at] : 1.0f;
#pragma unroll
            for (int g = 0; g < MAXG; g++) s[g] *= kscale;
        }
#pragma unroll
        for (int g = 0; g < MAXG; g++) {
            if (g >= group) break;
            p_s[g * tile + tid] = tid < rows ? s[g] : -INFINITY;
        }
        __syncthreads();
        // 2. Online softmax, one warp per head.
        for (int g = warp; g < group; g += warps) {
            float *p = p_s + g * tile;
            float mx = -INFINITY;
            for (int j = lane; j < rows; j += 32) mx = fmaxf(mx, p[j]);
            for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
            const float m_old = m_s[g], m_new = fmaxf(m_old, mx);
            float sum = 0.0f;
            for (int j = lane; j < tile; j += 32) {
                const float e = j < rows ? __expf(p[j] - m_new) : 0.0f;
                p[j] = e;
                sum += e;
            }
            for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
            if (lane == 0) {
                const float c = m_old == -INFINITY ? 0.0f : __expf(m_old - m_new);
                c_s[g] = c;
                l_s[g] = l_s[g] * c + sum;
                m_s[g] = m_new;
            }
        }
        __syncthreads();
        // 3. Values: VEC columns of every row_groups-th row, for every head.
#pragma unroll
        for (int g = 0; g < MAXG; g++) {
            if (g >= group) break;
#pragma unroll
            for (int e = 0; e < VEC; e++) acc[g][e] *= c_s[g];
        }
        const S *col = v + ((size_t)kvh * cap + t0) * d + cg * VEC;
#pragma unroll 4
        for (int j = rg; j < rows; j += row_groups) {
            float x[VEC];
            L::some(col + (size_t)j * d, x);
            const float scale = vs_s[j];
#pragma unroll
            for (int g = 0; g < MAXG; g++) {
                if (g >= group) break;
                const float p = p_s[g * tile + j] * scale;
#pragma unroll
                for (int e = 0; e < VEC; e++) acc[g][e] += p * x[e];
            }
        }
        __syncthreads(); // p_s and vs_s are rewritten by the next tile
    }
    // Sum the row groups through shared memory (red[rg][g][column], over the
    // softmax state: keep that in registers first).
    float m_fin[MAXG], l_fin[MAXG];
#pragma unroll
    for (int g = 0; g < MAXG; g++) {
        m_fin[g] = g < group ? m_s[g] : 0.0f;
        l_fin[g] = g < group ? l_s[g] : 0.0f;
    }
    __syncthreads();
    float *red = smem;
#pragma unroll
    for (int g = 0; g < MAXG; g++) {
        if (g >= group) break;
#pragma unroll
        for (int e = 0; e < VEC; e++) red[((size_t)rg * group + g) * d + cg * VEC + e] = acc[g][e];
    }
    __syncthreads();
#pragma unroll
    for (int g = 0; g < MAXG; g++) {
        if (g >= group) break;
        float a = 0.0f;
        for (int r = 0; r < row_groups; r++) a += red[((size_t)r * group + g) * d + tid];
        float *out = partial + ((size_t)(kvh * group + g) * splits + split) * (d + 2);
        out[tid] = a;
        if (tid == 0) { out[d] = m_fin[g]; out[d + 1] = l_fin[g]; }
    }
}

// One block per query head, one thread per element: merges the splits.
template <typename Q>
__device__ void decode_combine(const float *partial, Q *out, int splits, int d, int rotate) {
    extern __shared__ float row[];
    const int h = blockIdx.x, e = threadIdx.x;
    const int stride = d + 2;
    const float *p = partial + (size_t)h * splits * stride;
    float mm = -INFINITY;
    for (int s = 0; s < splits; s++) mm = fmaxf(mm, p[s * stride + d]);
    float ll = 0.0f, a = 0.0f;
    for (int s = 0; s < splits; s++) {
        float m2 = p[s * stride + d];
        if (m2 == -INFINITY) continue;
        float c = __expf(m2 - mm);
        ll += p[s * stride + d + 1] * c;
        a += p[s * stride + e] * c;
    }
    row[e] = a / ll;
    __syncthreads();
    float scale = 1.0f;
    if (rotate) {
        block_fwht(row, 1, d);
        scale = rsqrtf((float)d);
    }
    from_float(row[e] * scale, &out[(size_t)h * d + e]);
}

#define PARTIAL(NAME, Q, S, L, MAXG)                                                                             \
    extern "C" __global__ void NAME(const Q *q, const S *k, const S *v, const float *ks, const float *vs,      \
                                    float *partial, int heads, int kv_heads, int cap, int d, int len, int chunk, \
                                    float softmax_scale, int rotate) {                                         \
        decode_partial<Q, S, L, MAXG>(q, k, v, ks, vs, partial, heads, kv_heads, cap, d, len, chunk, softmax_scale, \
                                      rotate);                                                                 \
    }

#define PARTIALS(QN, Q)                                                                        \
    PARTIAL(decode_partial_##QN##_bf16_g4, Q, __nv_bfloat16, Row<__nv_bfloat16>, 4)            \
    PARTIAL(decode_partial_##QN##_bf16_g8, Q, __nv_bfloat16, Row<__nv_bfloat16>, 8)            \
    PARTIAL(decode_partial_##QN##_f16_g4, Q, __half, Row<__half>, 4)                           \
    PARTIAL(decode_partial_##QN##_f16_g8, Q, __half, Row<__half>, 8)                           \
    PARTIAL(decode_partial_##QN##_f32_g4, Q, float, Row<float>, 4)                             \
    PARTIAL(decode_partial_##QN##_f32_g8, Q, float, Row<float>, 8)                             \
    PARTIAL(decode_partial_##QN##_int8_g4, Q, uint8_t, Codes<Int8>, 4)                         \
    PARTIAL(decode_partial_##QN##_int8_g8, Q, uint8_t, Codes<Int8>, 8)                         \
    PARTIAL(decode_partial_##QN##_fp8_g4, Q, uint8_t, Codes<Fp8>, 4)                           \
    PARTIAL(decode_partial_##QN##_fp8_g8, Q, uint8_t, Codes<Fp8>, 8)                           \
    extern "C" __global__ void decode_combine_##QN(const float *partial, Q *out, int splits, int d, int rotate) { \
        decode_combine<Q>(partial, out, splits, d, rotate);                                    \
    }

PARTIALS(bf16, __nv_bfloat16)
PARTIALS(f16, __half)

// One block per (KV head, new token), one thread per element (d a power of
// two, at most 1024). x: (kv_heads, t, d); codes: (kv_heads, cap, d) u8;
// scales: (kv_heads, cap) f32. Rows land at positions pos..pos+t.
template <typename X, typename C>
__device__ void quantize_append(const X *x, uint8_t *codes, float *scales, int t, int cap, int d, int pos) {
    extern __shared__ float buf[]; // d values, then one float per warp
    const int h = blockIdx.x, i = blockIdx.y, e = threadIdx.x;
    buf[e] = to_float(x[((size_t)h * t + i) * d + e]);
    __syncthreads();
    // Fast Walsh–Hadamard transform in natural (Sylvester) order: the same
    // rotation as the matrix the CPU path multiplies by.
    for (int len = 1; len < d; len <<= 1) {
        if ((e & len) == 0) {
            float a = buf[e], b = buf[e + len];
            buf[e] = a + b;
            buf[e + len] = a - b;
        }
        __syncthreads();
    }
    const float val = buf[e] * rsqrtf((float)d);
    float mx = fabsf(val);
    for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
    float *warp_max = buf + d;
    __syncthreads();
    if ((e & 31) == 0) warp_max[e >> 5] = mx;
    __syncthreads();
    float absmax = 0.0f;
    for (int w = 0; w < (d + 31) / 32; w++) absmax = fmaxf(absmax, warp_max[w]);
    // An all-zero vector gets scale 1, so nothing divides by zero.
    const float scale = absmax >= 1.17549435e-38f ? absmax * (1.0f / C::MAX) : 1.0f;
    const size_t row = (size_t)h * cap + pos + i;
    codes[row * d + e] = C::encode(val / scale);
    if (e == 0) scales[row] = scale;
}

#define APPEND(XN, X, CN, C)                                                                                  \
    extern "C" __global__ void quantize_append_##XN##_##CN(const X *x, uint8_t *codes, float *scales, int t, \
                                                           int cap, int d, int pos) {                         \
        quantize_append<X, C>(x, codes, scales, t, cap, d, pos);                                              \
    }

APPEND(bf16, __nv_bfloat16, int8, Int8)
APPEND(bf16, __nv_bfloat16, fp8, Fp8)
APPEND(f16, __half, int8, Int8)
APPEND(f16, __half, fp8, Fp8)
APPEND(f32, float, int8, Int8)
APPEND(f32, float, fp8, Fp8)
