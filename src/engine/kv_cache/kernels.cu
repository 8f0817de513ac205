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
// Each lane holds 8 consecutive elements of a row; a row of D elements takes
// D/8 lanes, so a warp reads 256/D rows at once.

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
    __device__ static void load(const __nv_bfloat16 *p, float *out) {
        uint4 raw = *reinterpret_cast<const uint4 *>(p);
        const __nv_bfloat16 *x = reinterpret_cast<const __nv_bfloat16 *>(&raw);
#pragma unroll
        for (int e = 0; e < ELEMS; e++) out[e] = __bfloat162float(x[e]);
    }
};

template <> struct Row<__half> {
    static constexpr bool SCALED = false;
    __device__ static void load(const __half *p, float *out) {
        uint4 raw = *reinterpret_cast<const uint4 *>(p);
        const __half *x = reinterpret_cast<const __half *>(&raw);
#pragma unroll
        for (int e = 0; e < ELEMS; e++) out[e] = __half2float(x[e]);
    }
};

template <> struct Row<float> {
    static constexpr bool SCALED = false;
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
    __device__ static void load(const uint8_t *p, float *out) {
        uint2 raw = *reinterpret_cast<const uint2 *>(p);
        const uint8_t *x = reinterpret_cast<const uint8_t *>(&raw);
#pragma unroll
        for (int e = 0; e < ELEMS; e++) out[e] = C::decode(x[e]);
    }
};

// Merges softmax state (m2, l2, acc2) into (m, l, acc).
__device__ __forceinline__ void merge(float &m, float &l, float *acc, float m2, float l2, const float *acc2) {
    float mn = fmaxf(m, m2);
    if (mn == -INFINITY) return;
    float c1 = __expf(m - mn), c2 = __expf(m2 - mn);
    l = l * c1 + l2 * c2;
#pragma unroll
    for (int e = 0; e < ELEMS; e++) acc[e] = acc[e] * c1 + acc2[e] * c2;
    m = mn;
}

// One block per (KV head, split). q: (heads, d) in Q; k, v: (kv_heads, cap, d)
// rows of S (or codes with scales ks, vs: (kv_heads, cap)); partial:
// (heads, splits, d + 2) f32 = (acc[d], m, l).
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

// With `rotate`, q arrives in the model's basis and is rotated here into
// the cache's (the output is rotated back by decode_combine).
template <typename Q, typename S, typename L, int MAXG>
__device__ void decode_partial(const Q *q, const S *k, const S *v, const float *ks, const float *vs, float *partial,
                               int heads, int kv_heads, int cap, int d, int len, int chunk, float softmax_scale,
                               int rotate) {
    extern __shared__ float smem[];
    const int kvh = blockIdx.x, split = blockIdx.y, splits = gridDim.y;
    const int group = heads / kv_heads;
    const int lpt = d / ELEMS, slots = 32 / lpt;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    const int sub = lane / lpt, part = lane % lpt;
    const int begin = split * chunk, end = min(len, begin + chunk);

    // The group's queries, rotated if asked, through shared memory.
    for (int i = threadIdx.x; i < group * d; i += blockDim.x) smem[i] = to_float(q[(size_t)kvh * group * d + i]);
    __syncthreads();
    float q_scale = softmax_scale;
    if (rotate) {
        block_fwht(smem, group, d);
        q_scale *= rsqrtf((float)d);
    }
    float qr[MAXG][ELEMS], acc[MAXG][ELEMS], m[MAXG], l[MAXG];
#pragma unroll
    for (int g = 0; g < MAXG; g++) {
        m[g] = -INFINITY;
        l[g] = 0.0f;
#pragma unroll
        for (int e = 0; e < ELEMS; e++) {
            acc[g][e] = 0.0f;
            qr[g][e] = g < group ? smem[g * d + part * ELEMS + e] * q_scale : 0.0f;
        }
    }
    __syncthreads(); // shared memory is reused for the merge below
    // Every lane of a warp runs every iteration (the shuffles need them all);
    // rows past the end are masked. Each iteration loads two rows per lane
    // before using either, so more bytes are in flight.
    for (int base = begin + warp * slots * 2; base < end; base += warps * slots * 2) {
        float kf[2][ELEMS], vf[2][ELEMS], kscale[2], vscale[2];
        bool valid[2];
#pragma unroll
        for (int r = 0; r < 2; r++) {
            const int t = base + r * slots + sub;
            valid[r] = t < end;
            const size_t at = (size_t)kvh * cap + (valid[r] ? t : begin);
            L::load(k + at * d + part * ELEMS, kf[r]);
            L::load(v + at * d + part * ELEMS, vf[r]);
            kscale[r] = L::SCALED ? ks[at] : 1.0f;
            vscale[r] = L::SCALED ? vs[at] : 1.0f;
        }
#pragma unroll
        for (int r = 0; r < 2; r++) {
#pragma unroll
            for (int g = 0; g < MAXG; g++) {
                if (g >= group) break;
                float s = 0.0f;
#pragma unroll
                for (int e = 0; e < ELEMS; e++) s += qr[g][e] * kf[r][e];
                for (int o = lpt / 2; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
                if (!valid[r]) continue;
                s *= kscale[r];
                float mn = fmaxf(m[g], s);
                float c = __expf(m[g] - mn), p = __expf(s - mn);
                l[g] = l[g] * c + p;
                const float pv = p * vscale[r];
#pragma unroll
                for (int e = 0; e < ELEMS; e++) acc[g][e] = acc[g][e] * c + pv * vf[r][e];
                m[g] = mn;
            }
        }
    }
    // Merge the warp's row slots (lanes with the same `part`).
    for (int o = lpt; o < 32; o <<= 1) {
#pragma unroll
        for (int g = 0; g < MAXG; g++) {
            if (g >= group) break;
            float m2 = __shfl_xor_sync(0xffffffffu, m[g], o), l2 = __shfl_xor_sync(0xffffffffu, l[g], o);
            float acc2[ELEMS];
#pragma unroll
            for (int e = 0; e < ELEMS; e++) acc2[e] = __shfl_xor_sync(0xffffffffu, acc[g][e], o);
            merge(m[g], l[g], acc[g], m2, l2, acc2);
        }
    }
    // Then the warps, through shared memory: smem[warp][g][d + 2].
    const int stride = d + 2;
    if (sub == 0) {
#pragma unroll
        for (int g = 0; g < MAXG; g++) {
            if (g >= group) break;
            float *slot = smem + ((size_t)warp * group + g) * stride;
#pragma unroll
            for (int e = 0; e < ELEMS; e++) slot[part * ELEMS + e] = acc[g][e];
            if (part == 0) { slot[d] = m[g]; slot[d + 1] = l[g]; }
        }
    }
    __syncthreads();
    for (int i = threadIdx.x; i < group * d; i += blockDim.x) {
        const int g = i / d, e = i % d;
        float mm = -INFINITY, ll = 0.0f, a = 0.0f;
        for (int w = 0; w < warps; w++) {
            const float *slot = smem + ((size_t)w * group + g) * stride;
            float m2 = slot[d], mn = fmaxf(mm, m2);
            if (mn == -INFINITY) continue;
            float c1 = __expf(mm - mn), c2 = __expf(m2 - mn);
            ll = ll * c1 + slot[d + 1] * c2;
            a = a * c1 + slot[e] * c2;
            mm = mn;
        }
        float *out = partial + ((size_t)(kvh * group + g) * splits + split) * stride;
        out[e] = a;
        if (e == 0) { out[d] = mm; out[d + 1] = ll; }
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
