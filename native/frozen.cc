// Products with frozen weights kept in their stored dtype (bf16, f16, q8_0), so that a model
// whose base is not trained (LoRA, a DPO reference, evaluation, serving) holds 2 bytes (bf16,
// f16) or 1.06 bytes (q8_0) per weight instead of 4. Every product widens the weight to f32
// as it reads it and accumulates in f32 with f32 activations: large products pack widened
// slivers into the blocked GEMM's f32 micro-kernel (gemm-blocked.h), products of a few rows
// (decoding) decode one row chunk into L1 and take dot products against it. Half the bytes
// read is what makes decoding faster; for large products the widening costs one pass per
// packed panel, amortised over the rows of the block. Conversion between the dtypes is
// here too, so that checkpoints convert row by row, never whole.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#if defined(__F16C__)
#include <immintrin.h>
#endif

#include "gemm-blocked.h"
#include "kernels.h"
#include "simd.h"

namespace chimed {
namespace {

using namespace blocked;

// ---- scalar codecs (bit-exact with src/io/half.ts) ----

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

i64 rowBytes(WeightDtype dtype, i64 cols) {
  switch (dtype) {
    case WeightDtype::F32: return cols * 4;
    case WeightDtype::BF16:
    case WeightDtype::F16: return cols * 2;
    default: return cols / Q8_BLOCK * Q8_BLOCK_BYTES;
  }
}

// out[0:n] = W[r, c0:c0+n] as f32.
void decodeRow(const WeightMatrix& W, i64 r, i64 c0, i64 n, float* __restrict out) {
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

// dst row = src row (f32) encoded in dtype.
void encodeRow(WeightDtype dtype, const float* __restrict src, i64 cols, std::uint8_t* __restrict dst) {
  switch (dtype) {
    case WeightDtype::F32: std::memcpy(dst, src, static_cast<std::size_t>(cols) * 4); return;
    case WeightDtype::BF16:
      for (i64 i = 0; i < cols; ++i) {
        const std::uint16_t v = f32ToBf16(src[i]);
        std::memcpy(dst + 2 * i, &v, 2);
      }
      return;
    case WeightDtype::F16:
      for (i64 i = 0; i < cols; ++i) {
        const std::uint16_t v = f32ToF16(src[i]);
        std::memcpy(dst + 2 * i, &v, 2);
      }
      return;
    case WeightDtype::Q8_0:
      for (i64 b = 0; b < cols / Q8_BLOCK; ++b) {
        const float* x = src + b * Q8_BLOCK;
        float amax = 0.0f;
        for (i64 j = 0; j < Q8_BLOCK; ++j) amax = std::max(amax, std::fabs(x[j]));
        const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        std::uint8_t* block = dst + b * Q8_BLOCK_BYTES;
        const std::uint16_t dh = f32ToF16(d);
        std::memcpy(block, &dh, 2);
        for (i64 j = 0; j < Q8_BLOCK; ++j) block[2 + j] = static_cast<std::uint8_t>(static_cast<std::int8_t>(std::round(x[j] * id)));
      }
      return;
  }
}

// Rows of a decoded chunk in the few-rows kernels: 1 KiB of floats, in L1 beside the A rows.
constexpr i64 CHUNK = 256;

// Decoding: op(W) = W^T, each output a dot product of an A row with a W row, W read once.
void fewRowsNT(i64 M, i64 N, i64 K, float alpha, const float* A, const WeightMatrix& W, float beta, float* C) {
#pragma omp parallel for schedule(static) if (2.0 * M * N * K > 1e6)
  for (i64 j = 0; j < N; ++j) {
    alignas(64) float w[CHUNK];
    float acc[GEMM_FEW_ROWS] = {};
    for (i64 k0 = 0; k0 < K; k0 += CHUNK) {
      const i64 kb = std::min(CHUNK, K - k0);
      decodeRow(W, j, k0, kb, w);
      for (i64 i = 0; i < M; ++i) {
        const float* a = A + i * K + k0;
        float s = 0.0f;
#pragma omp simd reduction(+ : s)
        for (i64 k = 0; k < kb; ++k) s += a[k] * w[k];
        acc[i] += s;
      }
    }
    for (i64 i = 0; i < M; ++i) {
      float& c = C[i * N + j];
      c = alpha * acc[i] + (beta == 0.0f ? 0.0f : beta * c);
    }
  }
}

// A few rows times W [K, N]: each row of W decoded once per column chunk and added into C.
void fewRowsNN(i64 M, i64 N, i64 K, float alpha, const float* A, const WeightMatrix& W, float beta, float* C) {
#pragma omp parallel for schedule(static) if (2.0 * M * N * K > 1e6)
  for (i64 j0 = 0; j0 < N; j0 += CHUNK) {
    alignas(64) float w[CHUNK];
    const i64 nc = std::min(CHUNK, N - j0);
    scaleRows(C + j0, N, M, nc, beta);
    for (i64 k = 0; k < K; ++k) {
      decodeRow(W, k, j0, nc, w);
      for (i64 i = 0; i < M; ++i) {
        const float s = alpha * A[i * K + k];
        float* __restrict c = C + i * N + j0;
        for (i64 j = 0; j < nc; ++j) c[j] += s * w[j];
      }
    }
  }
}

}  // namespace

i64 weightBytes(WeightDtype dtype, i64 rows, i64 cols) {
  if (dtype == WeightDtype::Q8_0 && cols % Q8_BLOCK != 0) return -1;
  return rows * rowBytes(dtype, cols);
}

void gemmWeight(bool transW, i64 M, i64 N, i64 K, float alpha, const float* A, const WeightMatrix& W, float beta, float* C) {
  if (M == 0 || N == 0) return;
  if (K == 0 || alpha == 0.0f) return scaleRows(C, N, M, N, beta);
  if (M <= GEMM_FEW_ROWS) return (transW ? fewRowsNT : fewRowsNN)(M, N, K, alpha, A, W, beta, C);
  if (transW) {  // op(W)[k, j] = W[j, k]: each sliver column is a run of one W row
    gemmPacked(false, M, N, K, alpha, A,
               [&](float* Bp, i64 j0, i64 p0, i64 kc) {
                 const i64 cols = std::min<i64>(NR, N - j0);
                 alignas(64) float w[KC];
                 for (i64 c = 0; c < cols; ++c) {
                   decodeRow(W, j0 + c, p0, kc, w);
                   for (i64 k = 0; k < kc; ++k) Bp[k * NR + c] = w[k];
                 }
                 for (i64 c = cols; c < NR; ++c)
                   for (i64 k = 0; k < kc; ++k) Bp[k * NR + c] = 0.0f;
               },
               beta, C);
  } else {  // op(W) = W [K, N]: each sliver row is a run of one W row
    gemmPacked(false, M, N, K, alpha, A,
               [&](float* Bp, i64 j0, i64 p0, i64 kc) {
                 const i64 cols = std::min<i64>(NR, N - j0);
                 for (i64 k = 0; k < kc; ++k) {
                   decodeRow(W, p0 + k, j0, cols, Bp + k * NR);
                   for (i64 c = cols; c < NR; ++c) Bp[k * NR + c] = 0.0f;
                 }
               },
               beta, C);
  }
}

void embeddingWeight(float* out, const WeightMatrix& W, const std::int32_t* ids, i64 n) {
#pragma omp parallel for schedule(static) if (n * W.cols > 65536)
  for (i64 i = 0; i < n; ++i) decodeRow(W, ids[i], 0, W.cols, out + i * W.cols);
}

void convertWeight(const WeightMatrix& src, WeightDtype dstType, std::uint8_t* dst) {
  const i64 dstRow = rowBytes(dstType, src.cols);
#pragma omp parallel
  {
    std::vector<float> row(static_cast<std::size_t>(src.cols));
#pragma omp for schedule(static)
    for (i64 r = 0; r < src.rows; ++r) {
      decodeRow(src, r, 0, src.cols, row.data());
      encodeRow(dstType, row.data(), src.cols, dst + r * dstRow);
    }
  }
}

i64 firstNonFiniteWeight(const WeightMatrix& W) {
  const i64 n = W.rows * W.cols;
  i64 first = n;
  const std::uint8_t* p = W.data;
  switch (W.dtype) {
    case WeightDtype::F32:
#pragma omp parallel for reduction(min : first)
      for (i64 i = 0; i < n; ++i) {
        std::uint32_t u;
        std::memcpy(&u, p + 4 * i, 4);
        if ((u & 0x7f800000u) == 0x7f800000u) first = std::min(first, i);
      }
      break;
    case WeightDtype::BF16:
#pragma omp parallel for reduction(min : first)
      for (i64 i = 0; i < n; ++i)
        if ((load16(p + 2 * i) & 0x7f80) == 0x7f80) first = std::min(first, i);
      break;
    case WeightDtype::F16:
#pragma omp parallel for reduction(min : first)
      for (i64 i = 0; i < n; ++i)
        if ((load16(p + 2 * i) & 0x7c00) == 0x7c00) first = std::min(first, i);
      break;
    case WeightDtype::Q8_0: {
      const i64 blocks = n / Q8_BLOCK;
#pragma omp parallel for reduction(min : first)
      for (i64 b = 0; b < blocks; ++b)
        if ((load16(p + b * Q8_BLOCK_BYTES) & 0x7c00) == 0x7c00) first = std::min(first, b * Q8_BLOCK);
      break;
    }
  }
  return first == n ? -1 : first;
}

}  // namespace chimed
