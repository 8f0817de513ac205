// Conversions between float and the 2-byte float types, shared by llmctl's
// CUDA kernels (src/engine/*/*.cu include it; build.rs watches it).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float to_float(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ void from_float(float x, __nv_bfloat16 *out) { *out = __float2bfloat16(x); }
__device__ __forceinline__ void from_float(float x, __half *out) { *out = __float2half(x); }

// Two values of T packed in 32 bits (low half first) as floats; the second
// argument only picks the type. bf16 -> f32 is a shift.
__device__ __forceinline__ float2 pair(uint32_t w, __nv_bfloat16) {
    return make_float2(__uint_as_float(w << 16), __uint_as_float(w & 0xffff0000u));
}
__device__ __forceinline__ float2 pair(uint32_t w, __half) { return __half22float2(*reinterpret_cast<const __half2 *>(&w)); }
