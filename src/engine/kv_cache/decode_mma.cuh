// Decode attention over int8/fp8 codes on the tensor cores (included by
// kernels.cu, after the code formats and block_fwht).
//
// Per element the SIMT kernel spends a decode, a shared-memory read of q and
// one FMA per query head, about seven instructions a byte: on an H100 it
// read codes at 1.2 TB/s where it reads bf16 rows at 1.8. Here the codes
// become f16 pairs (exact for both formats) and two m16n8k16 products do
// the rest:
//   scores S = Q · Kᵀ  (M = query heads of the group, padded to 16;
//                       N = 8 keys; K = 16 dims), and
//   O += P · V         (M = heads; N = 8 dims; K = 16 keys),
// with P taken straight from S's accumulators (the FlashAttention-2 trick:
// S's output layout is P's input layout). Each warp owns one split of the
// keys, 16 keys a step, issuing a step's loads before it computes the one
// before; it keeps its heads' softmax state in registers and writes the
// same partial rows as the SIMT kernel, merged by decode_combine.
//
// The sum over dims is order-free, so each lane reads whole 16-byte runs:
// for the scores lane (g, t) takes bytes 16t + 64i of key g of the n-tile,
// and q's fragments follow the same order (q_dim); for the values lane
// (g, t) takes dims [g·D/8, (g+1)·D/8) of keys 2t, 2t+1, 2t+8, 2t+9, so
// output column n of tile j is dim (D/8)·n + j.

__device__ __forceinline__ uint32_t half2_bits(float a, float b) {
    const __half2 h = __floats2half2_rn(a, b);
    return *reinterpret_cast<const uint32_t *>(&h);
}

// f16 pairs (c0, c1), (c2, c3) of the four codes in x (c0 in the low byte).
struct Int8Pairs {
    __device__ static void of(uint32_t x, uint32_t &lo, uint32_t &hi) {
        // 0x64XX is the f16 1024 + XX; 1024 + 128 (0x6480) comes off again.
        const __half2 bias = __halves2half2(__ushort_as_half(0x6480), __ushort_as_half(0x6480));
        uint32_t a = __byte_perm(x, 0x64646464u, 0x4140), b = __byte_perm(x, 0x64646464u, 0x4342);
        const __half2 ha = __hsub2(*reinterpret_cast<const __half2 *>(&a), bias);
        const __half2 hb = __hsub2(*reinterpret_cast<const __half2 *>(&b), bias);
        lo = *reinterpret_cast<const uint32_t *>(&ha);
        hi = *reinterpret_cast<const uint32_t *>(&hb);
    }
};

struct Fp8Pairs {
    __device__ static void of(uint32_t x, uint32_t &lo, uint32_t &hi) {
        const __half2_raw a = __nv_cvt_fp8x2_to_halfraw2((__nv_fp8x2_storage_t)(x & 0xffffu), __NV_E4M3);
        const __half2_raw b = __nv_cvt_fp8x2_to_halfraw2((__nv_fp8x2_storage_t)(x >> 16), __NV_E4M3);
        lo = *reinterpret_cast<const uint32_t *>(&a);
        hi = *reinterpret_cast<const uint32_t *>(&b);
    }
};

// d += A · B for one m16n8k16 tile (f16 inputs, f32 accumulators) whose
// A has rows 8..15 zero (a1 = a3 = 0): the heads fill at most rows 0..7.
__device__ __forceinline__ void mma_top_rows(float (&d)[4], uint32_t a0, uint32_t a2, uint32_t b0, uint32_t b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a0), "r"(0u), "r"(a2), "r"(0u), "r"(b0), "r"(b1));
}

// The 16-byte (D = 128) or 8-byte (D = 64) run a lane reads of a value row.
template <int BYTES> struct Run;
template <> struct Run<16> { typedef uint4 T; };
template <> struct Run<8> { typedef uint2 T; };

// Grid: (KV head, blocks of MMA_WARPS splits); block: 32·MMA_WARPS threads;
// shared: group·D floats. Group at most 8 (heads on the M side, rows 0..7).
constexpr int MMA_WARPS = 4;

// What a lane reads for one step of 16 keys: its key runs for keys g and
// 8 + g (scores), its value runs and the scales of keys 2t, 2t+1, 2t+8, 2t+9.
template <int D> struct Step {
    static constexpr int KEY_RUNS = D / 64; // 16-byte loads per lane per key
    static constexpr int VAL_BYTES = D / 8; // bytes per lane per value row
    typedef typename Run<VAL_BYTES>::T VRun;
    uint4 kw[2][KEY_RUNS];
    VRun vw[4];
    float sk[4], sv[4];

    // Lane t reads bytes 16t + 64i of its keys, so each load of the warp
    // covers whole 64-byte spans of eight keys.
    __device__ void load(const uint8_t *kb, const uint8_t *vb, const float *ksb, const float *vsb, int r0, int end,
                         int g, int t) {
#pragma unroll
        for (int h = 0; h < 2; h++) {
            const int row = r0 + 8 * h + g;
            const uint4 *p = reinterpret_cast<const uint4 *>(kb + (size_t)row * D);
#pragma unroll
            for (int i = 0; i < KEY_RUNS; i++) {
                kw[h][i] = row < end ? __ldg(p + t + 4 * i) : make_uint4(0, 0, 0, 0);
            }
        }
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const int row = r0 + 2 * t + (i & 1) + 8 * (i >> 1);
            const bool in = row < end;
            if (in) vw[i] = __ldg(reinterpret_cast<const VRun *>(vb + (size_t)row * D + VAL_BYTES * g));
            else memset(&vw[i], 0, sizeof(VRun));
            sk[i] = in ? __ldg(ksb + row) : 0.0f;
            sv[i] = in ? __ldg(vsb + row) : 0.0f;
        }
    }
};

// First of the four dims of q that a lane's score word j (0..D/16) pairs
// with, matching Step::load.
__device__ __forceinline__ int q_dim(int t, int j) { return 16 * t + 64 * (j / 4) + 4 * (j % 4); }

template <typename Q, typename P, int D>
__device__ void decode_mma_partial(const Q *q, const uint8_t *k, const uint8_t *v, const float *ks, const float *vs,
                                   float *partial, int heads, int kv_heads, int cap, int len, int chunk,
                                   float softmax_scale, int rotate) {
    extern __shared__ float q_s[];
    constexpr int KSTEPS = D / 16; // score k-steps, 4 dims per lane each
    constexpr int VAL_WORDS = D / 32;
    constexpr int NT = D / 8;      // output n-tiles
    const int kvh = blockIdx.x, group = heads / kv_heads;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int g = lane >> 2, t = lane & 3;
    const int splits = gridDim.y * MMA_WARPS, split = blockIdx.y * MMA_WARPS + warp;

    for (int i = threadIdx.x; i < group * D; i += blockDim.x) q_s[i] = to_float(q[(size_t)kvh * group * D + i]);
    __syncthreads();
    float q_scale = softmax_scale;
    if (rotate) {
        block_fwht(q_s, group, D);
        q_scale *= rsqrtf((float)D);
    }
    uint32_t qa[KSTEPS][2];
#pragma unroll
    for (int j = 0; j < KSTEPS; j++) {
        const float *x = q_s + g * D + q_dim(t, j);
        qa[j][0] = g < group ? half2_bits(x[0] * q_scale, x[1] * q_scale) : 0u;
        qa[j][1] = g < group ? half2_bits(x[2] * q_scale, x[3] * q_scale) : 0u;
    }

    const uint8_t *kb = k + (size_t)kvh * cap * D, *vb = v + (size_t)kvh * cap * D;
    const float *ksb = ks + (size_t)kvh * cap, *vsb = vs + (size_t)kvh * cap;
    const int begin = split * chunk, end = min(len, begin + chunk);
    float o[NT][4];
#pragma unroll
    for (int j = 0; j < NT; j++) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.0f;
    float m = -INFINITY, l = 0.0f; // head g's running max; this lane's share of its sum
    // Each step's loads are issued before the previous step is computed.
    Step<D> cur;
    if (begin < end) cur.load(kb, vb, ksb, vsb, begin, end, g, t);
    for (int r0 = begin; r0 < end; r0 += 16) {
        Step<D> next;
        if (r0 + 16 < end) next.load(kb, vb, ksb, vsb, r0 + 16, end, g, t);
        // Scores of keys 2t, 2t+1 (tile 0) and 8+2t, 8+2t+1 (tile 1) for head g.
        float s[2][4];
#pragma unroll
        for (int h = 0; h < 2; h++) {
            s[h][0] = s[h][1] = s[h][2] = s[h][3] = 0.0f;
            const uint32_t *w = reinterpret_cast<const uint32_t *>(cur.kw[h]);
#pragma unroll
            for (int j = 0; j < KSTEPS; j++) {
                uint32_t b0, b1;
                P::of(w[j], b0, b1);
                mma_top_rows(s[h], qa[j][0], qa[j][1], b0, b1);
            }
        }
        float p[4] = {s[0][0], s[0][1], s[1][0], s[1][1]};
        float mx = -INFINITY;
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const int row = r0 + 2 * t + (i & 1) + 8 * (i >> 1);
            p[i] = row < end ? p[i] * cur.sk[i] : -INFINITY;
            mx = fmaxf(mx, p[i]);
        }
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        const float m_new = fmaxf(m, mx); // finite: key r0 is in range
        const float c = __expf(m - m_new);
        m = m_new;
#pragma unroll
        for (int i = 0; i < 4; i++) p[i] = __expf(p[i] - m_new);
        l = l * c + (p[0] + p[1]) + (p[2] + p[3]);
#pragma unroll
        for (int j = 0; j < NT; j++) {
            o[j][0] *= c;
            o[j][1] *= c;
        }
        // P (scaled by the value rows' scales) as the A operand.
        const uint32_t pa0 = half2_bits(p[0] * cur.sv[0], p[1] * cur.sv[1]);
        const uint32_t pa2 = half2_bits(p[2] * cur.sv[2], p[3] * cur.sv[3]);
        const uint32_t *w0 = reinterpret_cast<const uint32_t *>(&cur.vw[0]), *w1 = reinterpret_cast<const uint32_t *>(&cur.vw[1]);
        const uint32_t *w2 = reinterpret_cast<const uint32_t *>(&cur.vw[2]), *w3 = reinterpret_cast<const uint32_t *>(&cur.vw[3]);
#pragma unroll
        for (int i = 0; i < VAL_WORDS; i++) {
            // Codes of the same dim from two keys, side by side.
            uint32_t b0[4], b1[4];
            P::of(__byte_perm(w0[i], w1[i], 0x5140), b0[0], b0[1]);
            P::of(__byte_perm(w0[i], w1[i], 0x7362), b0[2], b0[3]);
            P::of(__byte_perm(w2[i], w3[i], 0x5140), b1[0], b1[1]);
            P::of(__byte_perm(w2[i], w3[i], 0x7362), b1[2], b1[3]);
#pragma unroll
            for (int e = 0; e < 4; e++) mma_top_rows(o[4 * i + e], pa0, pa2, b0[e], b1[e]);
        }
        cur = next;
    }
    l += __shfl_xor_sync(0xffffffffu, l, 1);
    l += __shfl_xor_sync(0xffffffffu, l, 2);
    if (g < group) {
        float *out = partial + ((size_t)(kvh * group + g) * splits + split) * (D + 2);
#pragma unroll
        for (int j = 0; j < NT; j++) {
            out[(D / 8) * (2 * t) + j] = o[j][0];
            out[(D / 8) * (2 * t + 1) + j] = o[j][1];
        }
        if (t == 0) {
            out[D] = m;
            out[D + 1] = l;
        }
    }
}

#define MMA_PARTIAL(QN, Q, CN, P, D)                                                                                \
    extern "C" __global__ void __launch_bounds__(32 * MMA_WARPS) decode_mma_partial_##QN##_##CN##_d##D(              \
        const Q *q, const uint8_t *k, const uint8_t *v, const float *ks, const float *vs, float *partial, int heads, \
        int kv_heads, int cap, int len, int chunk, float softmax_scale, int rotate) {                                \
        decode_mma_partial<Q, P, D>(q, k, v, ks, vs, partial, heads, kv_heads, cap, len, chunk, softmax_scale,      \
                                    rotate);                                                                          \
    }

#define MMA_PARTIALS(QN, Q)                        \
    MMA_PARTIAL(QN, Q, int8, Int8Pairs, 64)        \
    MMA_PARTIAL(QN, Q, int8, Int8Pairs, 128)       \
    MMA_PARTIAL(QN, Q, fp8, Fp8Pairs, 64)          \
    MMA_PARTIAL(QN, Q, fp8, Fp8Pairs, 128)

MMA_PARTIALS(bf16, __nv_bfloat16)
MMA_PARTIALS(f16, __half)
