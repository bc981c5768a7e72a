// The codecs of frozen weights (bf16, f16, q8_0), shared by the products that read them
// (frozen.cc: conversion, large products, embedding; frozen-decode.cc: products of a few
// rows). Scalar and bit-exact with src/io/half.ts and src/io/gguf.ts.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__F16C__) || defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "kernels.h"

namespace chimed {
namespace frozen {


inline float bitsToFloat(std::uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}
inline std::uint32_t floatToBits(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

inline float bf16ToF32(std::uint16_t b) { return bitsToFloat(static_cast<std::uint32_t>(b) << 16); }

inline std::uint16_t f32ToBf16(float f) {
  const std::uint32_t u = floatToBits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((u >> 16) | 0x40);  // NaN stays NaN
  return static_cast<std::uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

inline float f16ToF32(std::uint16_t h) {
#if defined(__F16C__)
  return _cvtsh_ss(h);
#else
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
  if (exp == 0x1f) return bitsToFloat(sign | 0x7f800000u | (mant << 13));
  if (exp != 0) return bitsToFloat(sign | ((exp + 112) << 23) | (mant << 13));
  const float m = static_cast<float>(mant) * 5.9604644775390625e-8f;  // subnormal: mant * 2^-24
  return sign ? -m : m;
#endif
}

inline std::uint16_t f32ToF16(float f) {
#if defined(__F16C__)
  return _cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT);
#else
  const std::uint32_t u = floatToBits(f);
  const std::uint32_t sign = (u >> 16) & 0x8000, exp = (u >> 23) & 0xff, mant = u & 0x7fffff;
  if (exp == 0xff) return static_cast<std::uint16_t>(mant == 0 ? sign | 0x7c00 : sign | 0x7e00 | (mant >> 13));
  const int e = static_cast<int>(exp) - 112;
  if (e >= 0x1f) return static_cast<std::uint16_t>(sign | 0x7c00);
  if (e <= 0) {
    if (e < -10) return static_cast<std::uint16_t>(sign);
    const std::uint32_t full = mant | 0x800000, shift = static_cast<std::uint32_t>(14 - e), half = 1u << (shift - 1);
    const std::uint32_t rem = full & ((1u << shift) - 1);
    std::uint32_t m = full >> shift;
    if (rem > half || (rem == half && (m & 1))) ++m;
    return static_cast<std::uint16_t>(sign | m);
  }
  std::uint32_t h = sign | (static_cast<std::uint32_t>(e) << 10) | (mant >> 13);
  const std::uint32_t rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) ++h;
  return static_cast<std::uint16_t>(h);
#endif
}

inline std::uint16_t load16(const std::uint8_t* p) {
  std::uint16_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

inline i64 rowBytes(WeightDtype dtype, i64 cols) {
  switch (dtype) {
    case WeightDtype::F32: return cols * 4;
    case WeightDtype::BF16:
    case WeightDtype::F16: return cols * 2;
    default: return cols / Q8_BLOCK * Q8_BLOCK_BYTES;
  }
}

// out[0:n] = W[r, c0:c0+n] as f32.
inline void decodeRow(const WeightMatrix& W, i64 r, i64 c0, i64 n, float* __restrict out) {
  const std::uint8_t* row = W.data + r * rowBytes(W.dtype, W.cols);
  switch (W.dtype) {
    case WeightDtype::F32: std::memcpy(out, row + c0 * 4, static_cast<std::size_t>(n) * 4); return;
    case WeightDtype::BF16: {
      const std::uint8_t* s = row + c0 * 2;
      for (i64 i = 0; i < n; ++i) out[i] = bf16ToF32(load16(s + 2 * i));
      return;
    }
    case WeightDtype::F16: {
      const std::uint8_t* s = row + c0 * 2;
      i64 i = 0;
#if defined(__F16C__)
      for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s + 2 * i))));
#endif
      for (; i < n; ++i) out[i] = f16ToF32(load16(s + 2 * i));
      return;
    }
    case WeightDtype::Q8_0: {
      for (i64 c = c0, end = c0 + n; c < end;) {
        const i64 b = c / Q8_BLOCK, stop = std::min(end, (b + 1) * Q8_BLOCK);
        const std::uint8_t* block = row + b * Q8_BLOCK_BYTES;
        const float d = f16ToF32(load16(block));
        const std::int8_t* q = reinterpret_cast<const std::int8_t*>(block + 2) - b * Q8_BLOCK;
        for (; c < stop; ++c) out[c - c0] = d * static_cast<float>(q[c]);
      }
      return;
    }
  }
}

// One q8_0 block of x (Q8_BLOCK values) as llama.cpp's quantize_row_q8_0_ref: the scale
// d = amax / 127 rounded to f16 (returned as its bits), q = round(x / d) with the unrounded d.
inline std::uint16_t quantiseQ8Block(const float* __restrict x, std::int8_t* __restrict q) {
  float amax = 0.0f;
  for (i64 j = 0; j < Q8_BLOCK; ++j) amax = std::max(amax, std::fabs(x[j]));
  const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
  // round half away from zero as std::round, in a form that vectorises (decoding quantises
  // every activation row this way): |v| + 0.5 is exact in double for |v| <= 127
  for (i64 j = 0; j < Q8_BLOCK; ++j) {
    const float v = x[j] * id;
    q[j] = static_cast<std::int8_t>(std::copysign(std::floor(static_cast<double>(std::fabs(v)) + 0.5), static_cast<double>(v)));
  }
  return f32ToF16(d);
}

// C = alpha A W^T + beta C for M <= GEMM_FEW_ROWS rows of A (decoding), W [N, K] read once
// (frozen-decode.cc). A q8_0 W multiplies A's rows quantised to q8_0 blocks (kernels.h).
void fewRowsNT(i64 M, i64 N, i64 K, float alpha, const float* A, const WeightMatrix& W, float beta, float* C);
// The same product by the calling OpenMP team (inside a parallel region W's rows are shared out;
// outside one, the calling thread does all): each output is the same whatever the team.
void fewRowsNTTeam(i64 M, i64 N, i64 K, float alpha, const float* A, const WeightMatrix& W, float beta, float* C);

}  // namespace frozen
}  // namespace chimed
