// CUDA kernels for the KV cache (compiled to PTX by build.rs with the
// `cuda` feature; loaded by src/engine/kv_cache/cuda.rs):
//
// - decode attention for one query position, flash-decoding style: the keys
//   are split over blocks (grid: KV head × split); each block reads its KV
//   head's rows once for every query head of the GQA group, dequantizing
//   int8/fp8 codes with their per-(token, head) scales in registers, and
//   keeps an online softmax; a second kernel merges the splits. For codes
//   with head dim 64 or 128 the tensor-core kernel in decode_mma.cuh
//   (included at the end) takes the place of this SIMT one.
// - quantize-and-append: Walsh–Hadamard rotation, absmax scale and encoding
//   of new key/value rows, written straight into the cache.
//

#include <cuda_fp8.h>

#include "../half.cuh"

// How the decode kernel reads stored rows: PER16 values per 16-byte load
// (keys), VEC values per value-column load (8 for every type), both decoded
// to floats before any scale. Dense rows (bf16 or f16) hold two values per
// 32-bit word; codes (`Codes` below) four.
template <typename S> struct Row {
    static constexpr bool SCALED = false;
    static constexpr int PER16 = 8;
    static constexpr int VEC = 8;
    typedef uint4 VecLoad;
    __device__ static void decode(const uint32_t *w, int words, float *out) {
#pragma unroll
        for (int i = 0; i < words; i++) {
            const float2 f = pair(w[i], S());
            out[2 * i] = f.x;
            out[2 * i + 1] = f.y;
        }
    }
};

// INT8 codes are stored as u8 offset by 128.
struct Int8 {
    static constexpr float MAX = 127.0f;
    __device__ static uint8_t encode(float x) { return (uint8_t)(fminf(fmaxf(roundf(x), -127.0f), 127.0f) + 128.0f); }
    // Four codes at once without int-to-float conversions: each byte becomes
    // the low mantissa byte of 2^23, and 2^23 + 128 comes off again.
    __device__ static void decode4(uint32_t w, float *out) {
#pragma unroll
        for (int i = 0; i < 4; i++) out[i] = __uint_as_float(__byte_perm(w, 0x4B000000u, 0x7540 + i)) - 8388736.0f;
    }
};

struct Fp8 {
    static constexpr float MAX = 448.0f;
    __device__ static uint8_t encode(float x) { return (uint8_t)__nv_cvt_float_to_fp8(x, __NV_SATFINITE, __NV_E4M3); }
    // Two codes per conversion (Hopper converts E4M3 pairs to f16 pairs).
    __device__ static void decode4(uint32_t w, float *out) {
#pragma unroll
        for (int i = 0; i < 2; i++) {
            const __half2_raw h = __nv_cvt_fp8x2_to_halfraw2((__nv_fp8x2_storage_t)(w >> (16 * i)), __NV_E4M3);
            const float2 f = pair(*reinterpret_cast<const uint32_t *>(&h), __half());
            out[2 * i] = f.x;
            out[2 * i + 1] = f.y;
        }
    }
};

template <typename C> struct Codes {
    static constexpr bool SCALED = true;
    static constexpr int PER16 = 16;
    static constexpr int VEC = 8;
    typedef uint2 VecLoad;
    __device__ static void decode(const uint32_t *w, int words, float *out) {
#pragma unroll
        for (int i = 0; i < words; i++) C::decode4(w[i], out + 4 * i);
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

// Loads N 16-byte words (or smaller vectors) of one row, all issued before
// any is used, so a thread keeps N loads in flight.
template <typename V, int N> __device__ __forceinline__ void load_words(const V *p, uint32_t *w) {
    V raw[N];
#pragma unroll
    for (int i = 0; i < N; i++) raw[i] = __ldg(p + i);
#pragma unroll
    for (int i = 0; i < N; i++) {
        const uint32_t *x = reinterpret_cast<const uint32_t *>(&raw[i]);
#pragma unroll
        for (int j = 0; j < (int)(sizeof(V) / 4); j++) w[i * (sizeof(V) / 4) + j] = x[j];
    }
}

// One block of D threads per (KV head, split), over tiles of D rows. With
// `rotate`, q arrives in the model's basis and is rotated here into the
// cache's (decode_combine rotates the output back). Per tile:
//  1. scores: thread i takes row i of the tile and all the group's heads
//     (the queries sit in shared memory), so each key row is read once;
//     a row's loads are issued in batches of four 16-byte words;
//  2. softmax: one warp per head updates the running max and sum;
//  3. values: each thread accumulates VEC adjacent columns (one vector load)
//     of every head over every VEC-th row of the tile, loading four rows
//     ahead; the VEC row groups are summed at the end.
// q: (heads, D); k, v: (kv_heads, cap, D) rows of S, or codes with scales
// ks, vs: (kv_heads, cap); partial: (heads, splits, D + 2) = (acc, max, sum).
template <typename Q, typename S, typename L, int D, int MAXG>
__device__ void decode_partial(const Q *q, const S *k, const S *v, const float *ks, const float *vs, float *partial,
                               int heads, int kv_heads, int cap, int len, int chunk, float softmax_scale, int rotate) {
    extern __shared__ float smem[];
    constexpr int TILE = D;
    const int kvh = blockIdx.x, split = blockIdx.y, splits = gridDim.y;
    const int group = heads / kv_heads;
    const int tid = threadIdx.x;
    const int lane = tid & 31, warp = tid >> 5, warps = TILE >> 5;
    float *q_s = smem;                 // group * D
    float *p_s = q_s + group * D;      // group * TILE: scores, then probabilities
    float *m_s = p_s + group * TILE;   // group: running max
    float *l_s = m_s + group;          // group: running sum
    float *c_s = l_s + group;          // group: this tile's correction
    float *vs_s = c_s + group;         // TILE: value scales
    const int begin = split * chunk, end = min(len, begin + chunk);

    for (int i = tid; i < group * D; i += TILE) q_s[i] = to_float(q[(size_t)kvh * group * D + i]);
    if (tid < group) { m_s[tid] = -INFINITY; l_s[tid] = 0.0f; }
    __syncthreads();
    float q_scale = softmax_scale;
    if (rotate) {
        block_fwht(q_s, group, D);
        q_scale *= rsqrtf((float)D);
    }
    for (int i = tid; i < group * D; i += TILE) q_s[i] *= q_scale;
    __syncthreads();

    // Key loads: words of 16 bytes per row, in batches of up to four.
    constexpr int KEY_WORDS = D / L::PER16;
    constexpr int BATCH = KEY_WORDS < 4 ? KEY_WORDS : 4;
    constexpr int PER_WORD = L::PER16 / 4;
    // Value layout: VEC adjacent columns per thread, VEC row groups.
    constexpr int VEC = L::VEC;
    constexpr int COL_THREADS = D / VEC, ROW_GROUPS = TILE / COL_THREADS, ROWS_EACH = TILE / ROW_GROUPS;
    constexpr int AHEAD = 4;
    typedef typename L::VecLoad VL;
    constexpr int VL_WORDS = sizeof(VL) / 4;
    const int cg = tid % COL_THREADS, rg = tid / COL_THREADS;
    float acc[MAXG][VEC];
#pragma unroll
    for (int g = 0; g < MAXG; g++)
#pragma unroll
        for (int e = 0; e < VEC; e++) acc[g][e] = 0.0f;
    for (int t0 = begin; t0 < end; t0 += TILE) {
        const int rows = min(TILE, end - t0);
        // 1. Scores of row t0 + tid.
        float s[MAXG];
#pragma unroll
        for (int g = 0; g < MAXG; g++) s[g] = 0.0f;
        if (tid < rows) {
            const size_t at = (size_t)kvh * cap + t0 + tid;
            const uint4 *row = reinterpret_cast<const uint4 *>(k + at * D);
#pragma unroll
            for (int b0 = 0; b0 < KEY_WORDS; b0 += BATCH) {
                uint32_t w[BATCH * 4];
                load_words<uint4, BATCH>(row + b0, w);
                // Decoded one 32-bit word at a time, as the FMAs use them.
#pragma unroll
                for (int i = 0; i < BATCH * 4; i++) {
                    float kf[PER_WORD];
                    L::decode(&w[i], 1, kf);
                    const float *qb = q_s + b0 * L::PER16 + i * PER_WORD;
#pragma unroll
                    for (int g = 0; g < MAXG; g++) {
                        if (g >= group) break;
#pragma unroll
                        for (int e = 0; e < PER_WORD; e++) s[g] += qb[g * D + e] * kf[e];
                    }
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
            p_s[g * TILE + tid] = tid < rows ? s[g] : -INFINITY;
        }
        __syncthreads();
        // 2. Online softmax, one warp per head.
        for (int g = warp; g < group; g += warps) {
            float *p = p_s + g * TILE;
            float mx = -INFINITY;
            for (int j = lane; j < rows; j += 32) mx = fmaxf(mx, p[j]);
            for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
            const float m_old = m_s[g], m_new = fmaxf(m_old, mx);
            float sum = 0.0f;
            for (int j = lane; j < TILE; j += 32) {
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
        // 3. Values: VEC columns of every ROW_GROUPS-th row, for every head.
#pragma unroll
        for (int g = 0; g < MAXG; g++) {
            if (g >= group) break;
#pragma unroll
            for (int e = 0; e < VEC; e++) acc[g][e] *= c_s[g];
        }
        const VL *col = reinterpret_cast<const VL *>(v + ((size_t)kvh * cap + t0) * D + cg * VEC);
#pragma unroll
        for (int r0 = 0; r0 < ROWS_EACH; r0 += AHEAD) {
            VL raw[AHEAD];
#pragma unroll
            for (int a = 0; a < AHEAD; a++) {
                const int j = rg + (r0 + a) * ROW_GROUPS;
                if (j < rows) raw[a] = __ldg(col + (size_t)j * (D / VEC));
            }
#pragma unroll
            for (int a = 0; a < AHEAD; a++) {
                const int j = rg + (r0 + a) * ROW_GROUPS;
                if (j >= rows) break;
                float x[VEC];
                L::decode(reinterpret_cast<const uint32_t *>(&raw[a]), VL_WORDS, x);
                const float scale = vs_s[j];
#pragma unroll
                for (int g = 0; g < MAXG; g++) {
                    if (g >= group) break;
                    const float p = p_s[g * TILE + j] * scale;
#pragma unroll
                    for (int e = 0; e < VEC; e++) acc[g][e] += p * x[e];
                }
            }
        }
        __syncthreads(); // p_s and vs_s are rewritten by the next tile
    }
    // Sum the row groups through shared memory, one head at a time (the
    // softmax state is kept in registers first).
    float m_fin[MAXG], l_fin[MAXG];
#pragma unroll
    for (int g = 0; g < MAXG; g++) {
        m_fin[g] = g < group ? m_s[g] : 0.0f;
        l_fin[g] = g < group ? l_s[g] : 0.0f;
    }
    __syncthreads();
    float *red = smem; // ROW_GROUPS * D
#pragma unroll
    for (int g = 0; g < MAXG; g++) {
        if (g >= group) break;
#pragma unroll
        for (int e = 0; e < VEC; e++) red[rg * D + cg * VEC + e] = acc[g][e];
        __syncthreads();
        float a = 0.0f;
#pragma unroll
        for (int r = 0; r < ROW_GROUPS; r++) a += red[r * D + tid];
        float *out = partial + ((size_t)(kvh * group + g) * splits + split) * (D + 2);
        out[tid] = a;
        if (tid == 0) { out[D] = m_fin[g]; out[D + 1] = l_fin[g]; }
        __syncthreads();
    }
}

// The block's reduction of one value per thread (blockDim.x a multiple of
// 32, at most 1024); every thread gets the result. `red`: 32 floats.
template <typename F> __device__ float block_reduce(float x, float *red, F op) {
    for (int o = 16; o > 0; o >>= 1) x = op(x, __shfl_xor_sync(0xffffffffu, x, o));
    const int warps = blockDim.x >> 5;
    __syncthreads(); // `red` may still be read by an earlier reduction
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = x;
    __syncthreads();
    x = red[0];
    for (int w = 1; w < warps; w++) x = op(x, red[w]);
    return x;
}

// One block per query head, one thread per element: merges the splits.
// The splits' maxima and sums are read by all threads at once and their
// weights kept in shared memory, so the one serial loop (each element's
// weighted sum) issues its loads eight at a time. Shared: d + splits + 32
// floats.
template <typename Q>
__device__ void decode_combine(const float *partial, Q *out, int splits, int d, int rotate) {
    extern __shared__ float sh[];
    float *row = sh, *weight = sh + d, *red = weight + splits;
    const int h = blockIdx.x, e = threadIdx.x;
    const int stride = d + 2;
    const float *p = partial + (size_t)h * splits * stride;
    float mm = -INFINITY;
    for (int s = e; s < splits; s += d) mm = fmaxf(mm, p[s * stride + d]);
    mm = block_reduce(mm, red, [](float a, float b) { return fmaxf(a, b); });
    float ll = 0.0f;
    for (int s = e; s < splits; s += d) {
        const float m2 = p[s * stride + d];
        const float c = m2 == -INFINITY ? 0.0f : __expf(m2 - mm);
        weight[s] = c;
        ll += p[s * stride + d + 1] * c;
    }
    ll = block_reduce(ll, red, [](float a, float b) { return a + b; }); // its barriers publish `weight`
    float a = 0.0f;
#pragma unroll 8
    for (int s = 0; s < splits; s++) a += p[s * stride + e] * weight[s];
    row[e] = a / ll;
    __syncthreads();
    float scale = 1.0f;
    if (rotate) {
        block_fwht(row, 1, d);
        scale = rsqrtf((float)d);
    }
    from_float(row[e] * scale, &out[(size_t)h * d + e]);
}

#define PARTIAL(NAME, Q, S, L, D, MAXG)                                                                          \
    extern "C" __global__ void NAME(const Q *q, const S *k, const S *v, const float *ks, const float *vs,      \
                                    float *partial, int heads, int kv_heads, int cap, int len, int chunk,       \
                                    float softmax_scale, int rotate) {                                         \
        decode_partial<Q, S, L, D, MAXG>(q, k, v, ks, vs, partial, heads, kv_heads, cap, len, chunk, softmax_scale, \
                                         rotate);                                                              \
    }

// Dense rows are stored in the queries' own dtype.
#define PARTIALS_D(QN, Q, D)                                                                     \
    PARTIAL(decode_partial_##QN##_##QN##_d##D##_g4, Q, Q, Row<Q>, D, 4)                          \
    PARTIAL(decode_partial_##QN##_##QN##_d##D##_g8, Q, Q, Row<Q>, D, 8)                          \
    PARTIAL(decode_partial_##QN##_int8_d##D##_g4, Q, uint8_t, Codes<Int8>, D, 4)                 \
    PARTIAL(decode_partial_##QN##_int8_d##D##_g8, Q, uint8_t, Codes<Int8>, D, 8)                 \
    PARTIAL(decode_partial_##QN##_fp8_d##D##_g4, Q, uint8_t, Codes<Fp8>, D, 4)                   \
    PARTIAL(decode_partial_##QN##_fp8_d##D##_g8, Q, uint8_t, Codes<Fp8>, D, 8)

#define PARTIALS(QN, Q)                                                                        \
    PARTIALS_D(QN, Q, 64)                                                                      \
    PARTIALS_D(QN, Q, 128)                                                                     \
    PARTIALS_D(QN, Q, 256)                                                                     \
    PARTIALS_D(QN, Q, 512)                                                                     \
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

#include "decode_mma.cuh"
