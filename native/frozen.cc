// Products with frozen weights kept in their stored dtype (bf16, f16, q8_0), so that a model
// whose base is not trained (LoRA, a DPO reference, evaluation, serving) holds 2 bytes (bf16,
// f16) or 1.06 bytes (q8_0) per weight instead of 4. Large products widen the weight to f32
// as they pack slivers for the blocked GEMM's f32 micro-kernel (gemm-blocked.h), the widening
// amortised over the rows of the block, and accumulate in f32 with f32 activations. Products
// of a few rows (decoding) are bound by reading the weight: y = x W^T streams it once
// (frozen-decode.cc); dx = dy W decodes one row chunk into L1 and adds it into each row.
// Conversion between the dtypes is here too, so that checkpoints convert row by row, never
// whole.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "frozen-codec.h"
#include "gemm-blocked.h"
#include "kernels.h"
#include "simd.h"

namespace chimed {
namespace {

using namespace blocked;
using namespace frozen;

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
        std::uint8_t* block = dst + b * Q8_BLOCK_BYTES;
        const std::uint16_t d = quantiseQ8Block(src + b * Q8_BLOCK, reinterpret_cast<std::int8_t*>(block + 2));
        std::memcpy(block, &d, 2);
      }
      return;
  }
}

// Columns of a decoded chunk in the few-rows kernel: 1 KiB of floats, in L1 beside the A rows.
constexpr i64 CHUNK = 256;

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
  if (W.dtype == WeightDtype::F32) return gemm(false, transW, M, N, K, alpha, A, reinterpret_cast<const float*>(W.data), beta, C);
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
  forRows(n, n * W.cols > 65536, [&](i64 i) { decodeRow(W, ids[i], 0, W.cols, out + i * W.cols); });
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
