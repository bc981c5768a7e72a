// Products of a few rows with a frozen weight: decoding, one row per sequence of the batch,
// C = alpha A W^T + beta C with W [N, K] in its stored dtype. They are bound by reading W, so
// each thread streams its share of W's rows once, W_ROWS rows side by side, prefetching ahead,
// and every A row is multiplied into them while they are in registers.
//
// bf16 and f16 rows are widened to f32 in registers (bf16 by a 16-bit shift, f16 by F16C: the
// exact stored values) and multiplied in f32 with the f32 activations. A q8_0 weight is
// multiplied in integers against A's rows quantised to q8_0 blocks, as llama.cpp decodes
// (quantize_row_q8_0, then vec_dot_q8_0_q8_0): each block's integer dot product is exact and
// scaled by the two blocks' scales. That is 3 vector instructions per 32 weights and row
// where widening took 8, which is what lets one core keep up with memory; the rounding of
// the activation costs as much accuracy as llama.cpp's own (test/frozen-model.test.ts).
//
// One vector type per build, chosen by the compiler's target: AVX-512 (with VNNI for q8_0),
// AVX2 with FMA and F16C, or plain scalar code; src/engine/reference.ts is the float64 twin
// of all of them (frozen.ts Q8_0_ACTIVATION_ROWS says when A is quantised).
#include <omp.h>

#include <algorithm>
#include <type_traits>
#include <vector>

#include "frozen-codec.h"

namespace chimed {
namespace frozen {
namespace {

#if defined(__AVX512F__)
using Vec = __m512;
constexpr i64 LANES = 16;
constexpr int A_ROWS = 4;  // 4 x 4 accumulators and 4 weight vectors of 32 registers
inline Vec vzero() { return _mm512_setzero_ps(); }
inline Vec vload(const float* p) { return _mm512_loadu_ps(p); }
inline Vec vfma(Vec a, Vec b, Vec c) { return _mm512_fmadd_ps(a, b, c); }
inline float vsum(Vec v) { return _mm512_reduce_add_ps(v); }
inline Vec widenBf16(const std::uint8_t* p) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))), 16));
}
inline Vec widenF16(const std::uint8_t* p) { return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))); }
#elif defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
using Vec = __m256;
constexpr i64 LANES = 8;
constexpr int A_ROWS = 2;  // 2 x 4 accumulators and 4 weight vectors of 16 registers
inline Vec vzero() { return _mm256_setzero_ps(); }
inline Vec vload(const float* p) { return _mm256_loadu_ps(p); }
inline Vec vfma(Vec a, Vec b, Vec c) { return _mm256_fmadd_ps(a, b, c); }
inline float vsum(Vec v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}
inline Vec widenBf16(const std::uint8_t* p) {
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))), 16));
}
inline Vec widenF16(const std::uint8_t* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
#else
using Vec = float;
constexpr i64 LANES = 1;
constexpr int A_ROWS = 4;
inline Vec vzero() { return 0.0f; }
inline Vec vload(const float* p) { return *p; }
inline Vec vfma(Vec a, Vec b, Vec c) { return a * b + c; }
inline float vsum(Vec v) { return v; }
inline Vec widenBf16(const std::uint8_t* p) { return bf16ToF32(load16(p)); }
inline Vec widenF16(const std::uint8_t* p) { return f16ToF32(load16(p)); }
#endif

// W rows read side by side: each A vector loaded serves four products.
constexpr int W_ROWS = 4;
// How far ahead of each W row the kernels prefetch. The hardware prefetchers alone left a
// q8_0 lm head at 8 of the ~25 GB/s one core streams here (Zen 5), bf16 at 19; 16 KiB ahead
// gives 20-27 for both (8 to 32 KiB measured alike).
constexpr i64 PREFETCH_BYTES = 16384;
inline void prefetch(const std::uint8_t* p) { __builtin_prefetch(p + PREFETCH_BYTES, 0, 3); }

template <int N>
using Count = std::integral_constant<int, N>;

// out[i * W_ROWS + r] = A[i, :] . W[r, :] for i < MA, r < RW, bf16 or f16 rows widened in registers.
template <WeightDtype DT, int MA, int RW>
void dotHalfRows(i64 K, const float* A, const std::uint8_t* W, i64 rowBytes, float* out) {
  Vec acc[MA][RW];
  for (auto& row : acc)
    for (auto& v : row) v = vzero();
  const auto multiplyAdd = [&](i64 k) {
    Vec w[RW];
    for (int r = 0; r < RW; ++r) {
      const std::uint8_t* p = W + r * rowBytes + 2 * k;
      w[r] = DT == WeightDtype::BF16 ? widenBf16(p) : widenF16(p);
    }
    for (int i = 0; i < MA; ++i) {
      const Vec a = vload(A + i * K + k);
      for (int r = 0; r < RW; ++r) acc[i][r] = vfma(a, w[r], acc[i][r]);
    }
  };
  constexpr i64 LINE = 32;  // values in a 64-byte line of a row: one prefetch each
  i64 k = 0;
  for (; k + LINE <= K; k += LINE) {
    for (int r = 0; r < RW; ++r) prefetch(W + r * rowBytes + 2 * k);
    for (i64 v = 0; v < LINE; v += LANES) multiplyAdd(k + v);
  }
  for (; k + LANES <= K; k += LANES) multiplyAdd(k);
  float tail[MA][RW] = {};
  for (; k < K; ++k)
    for (int r = 0; r < RW; ++r) {
      const std::uint16_t h = load16(W + r * rowBytes + 2 * k);
      const float w = DT == WeightDtype::BF16 ? bf16ToF32(h) : f16ToF32(h);
      for (int i = 0; i < MA; ++i) tail[i][r] += A[i * K + k] * w;
    }
  for (int i = 0; i < MA; ++i)
    for (int r = 0; r < RW; ++r) out[i * W_ROWS + r] = vsum(acc[i][r]) + tail[i][r];
}

// A's rows quantised to q8_0 blocks: q [rows, blocks * 32], and per block 8 copies of its
// scale (one per int32 lane of a block's products) and, for VNNI, the lane sums that undo
// its unsigned operand. blocks is K / 32 rounded up to even, the padding block all zero, so
// that VNNI takes two blocks per instruction.
struct Q8Rows {
  i64 blocks = 0;
  std::vector<std::int8_t> q;
  std::vector<float> scale;
  std::vector<std::int32_t> bias;

  void quantise(const float* A, i64 M, i64 K) {
    const i64 kb = K / Q8_BLOCK;
    blocks = kb + (kb & 1);
    q.assign(static_cast<std::size_t>(M * blocks * Q8_BLOCK), 0);
    scale.assign(static_cast<std::size_t>(M * blocks * 8), 0.0f);
    bias.assign(static_cast<std::size_t>(M * blocks * 8), 0);
    for (i64 i = 0; i < M; ++i)
      for (i64 b = 0; b < kb; ++b) {
        const i64 blk = i * blocks + b;
        std::int8_t* qb = q.data() + blk * Q8_BLOCK;
        const float d = f16ToF32(quantiseQ8Block(A + i * K + b * Q8_BLOCK, qb));
        for (int l = 0; l < 8; ++l) {
          scale[blk * 8 + l] = d;
          // VNNI multiplies w + 128 (unsigned) by q: lane l then holds sum(w q) + 128 sum(q) over bytes 4l..4l+3
          bias[blk * 8 + l] = -128 * (qb[4 * l] + qb[4 * l + 1] + qb[4 * l + 2] + qb[4 * l + 3]);
        }
      }
  }
};

// out[i * W_ROWS + r] = sum over blocks b of d_W[r, b] d_A[i, b] (q_W[r, b] . q_A[i, b]) for
// i < MA rows of a from i0, r < RW rows of the q8_0 weight.
template <int MA, int RW>
void dotQ8Rows(i64 K, const Q8Rows& a, i64 i0, const std::uint8_t* W, i64 rowBytes, float* out) {
  const i64 kb = K / Q8_BLOCK;
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VNNI__)
  // two blocks per 512-bit vector: 16 int32 lanes, 8 per block
  __m512 acc[MA][RW];
  for (auto& row : acc)
    for (auto& v : row) v = _mm512_setzero_ps();
  const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
  const __m512i pairLanes = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
  const auto pair = [&](i64 b, auto two) {
    __m512i u[RW];
    __m512 dw[RW];
    for (int r = 0; r < RW; ++r) {
      const std::uint8_t* blk = W + r * rowBytes + b * Q8_BLOCK_BYTES;
      prefetch(blk);
      const __m256i lo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 2));
      __m512i w;
      std::uint32_t scales = load16(blk);
      if constexpr (decltype(two)::value) {
        w = _mm512_inserti64x4(_mm512_castsi256_si512(lo), _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + Q8_BLOCK_BYTES + 2)), 1);
        scales |= static_cast<std::uint32_t>(load16(blk + Q8_BLOCK_BYTES)) << 16;
      } else {
        w = _mm512_zextsi256_si512(lo);  // the padding block: 128 * 0
      }
      u[r] = _mm512_xor_si512(w, flip);  // w + 128, unsigned
      dw[r] = _mm512_permutexvar_ps(pairLanes, _mm512_castps128_ps512(_mm_cvtph_ps(_mm_cvtsi32_si128(static_cast<int>(scales)))));
    }
    for (int i = 0; i < MA; ++i) {
      const i64 blk = (i0 + i) * a.blocks + b;
      const __m512i qa = _mm512_loadu_si512(a.q.data() + blk * Q8_BLOCK);
      const __m512i bias = _mm512_loadu_si512(a.bias.data() + blk * 8);
      const __m512 da = _mm512_loadu_ps(a.scale.data() + blk * 8);
      for (int r = 0; r < RW; ++r) {
        const __m512 dot = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(bias, u[r], qa));
        acc[i][r] = _mm512_fmadd_ps(_mm512_mul_ps(dot, dw[r]), da, acc[i][r]);
      }
    }
  };
  i64 b = 0;
  for (; b + 2 <= kb; b += 2) pair(b, std::true_type{});
  if (b < kb) pair(b, std::false_type{});
  for (int i = 0; i < MA; ++i)
    for (int r = 0; r < RW; ++r) out[i * W_ROWS + r] = _mm512_reduce_add_ps(acc[i][r]);
#elif defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
  // one block per 256-bit vector; maddubs takes an unsigned operand, so |w| times A's q with
  // w's sign (llama.cpp's trick): pair sums stay within int16 (2 * 128 * 127)
  __m256 acc[MA][RW];
  for (auto& row : acc)
    for (auto& v : row) v = _mm256_setzero_ps();
  const __m256i ones = _mm256_set1_epi16(1);
  for (i64 b = 0; b < kb; ++b) {
    __m256i w[RW];
    __m256 dw[RW];
    for (int r = 0; r < RW; ++r) {
      const std::uint8_t* blk = W + r * rowBytes + b * Q8_BLOCK_BYTES;
      prefetch(blk);
      w[r] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 2));
      dw[r] = _mm256_set1_ps(f16ToF32(load16(blk)));
    }
    for (int i = 0; i < MA; ++i) {
      const i64 blk = (i0 + i) * a.blocks + b;
      const __m256i qa = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.q.data() + blk * Q8_BLOCK));
      const __m256 da = _mm256_loadu_ps(a.scale.data() + blk * 8);
      for (int r = 0; r < RW; ++r) {
        const __m256i pairs = _mm256_maddubs_epi16(_mm256_sign_epi8(w[r], w[r]), _mm256_sign_epi8(qa, w[r]));
        const __m256 dot = _mm256_cvtepi32_ps(_mm256_madd_epi16(pairs, ones));
        acc[i][r] = _mm256_fmadd_ps(_mm256_mul_ps(dot, dw[r]), da, acc[i][r]);
      }
    }
  }
  for (int i = 0; i < MA; ++i)
    for (int r = 0; r < RW; ++r) out[i * W_ROWS + r] = vsum(acc[i][r]);
#else
  float acc[MA][RW] = {};
  for (i64 b = 0; b < kb; ++b)
    for (int r = 0; r < RW; ++r) {
      const std::uint8_t* blk = W + r * rowBytes + b * Q8_BLOCK_BYTES;
      prefetch(blk);
      const float dw = f16ToF32(load16(blk));
      const std::int8_t* qw = reinterpret_cast<const std::int8_t*>(blk + 2);
      for (int i = 0; i < MA; ++i) {
        const i64 ab = (i0 + i) * a.blocks + b;
        const std::int8_t* qa = a.q.data() + ab * Q8_BLOCK;
        std::int32_t dot = 0;
        for (i64 j = 0; j < Q8_BLOCK; ++j) dot += qw[j] * qa[j];
        acc[i][r] += static_cast<float>(dot) * dw * a.scale[ab * 8];
      }
    }
  for (int i = 0; i < MA; ++i)
    for (int r = 0; r < RW; ++r) out[i * W_ROWS + r] = acc[i][r];
#endif
}

// For each group of W rows (W_ROWS at a time, shared out between the team's threads, then the
// rows left over one by one) and each group of up to A_ROWS rows of A: dot(j0, i0, Count<MA>,
// Count<RW>, out) fills out[i * W_ROWS + r] with A[i0 + i, :] . W[j0 + r, :], then C takes it.
// Run by every thread of the calling team; ends with a barrier.
template <class Dot>
void forEachGroup(i64 M, i64 N, i64 K, float alpha, float beta, float* C, const Dot& dot) {
  const auto group = [&](i64 j0, auto rw) {
    constexpr int RW = decltype(rw)::value;
    float out[A_ROWS * W_ROWS];
    for (i64 i0 = 0; i0 < M; i0 += A_ROWS) {
      const i64 ma = std::min<i64>(A_ROWS, M - i0);
      if (ma == 1) dot(j0, i0, Count<1>{}, rw, out);
      else if (ma == 2) dot(j0, i0, Count<2>{}, rw, out);
      else if constexpr (A_ROWS > 2) {
        if (ma == 3) dot(j0, i0, Count<3>{}, rw, out);
        else dot(j0, i0, Count<4>{}, rw, out);
      }
      for (i64 i = 0; i < ma; ++i)
        for (int r = 0; r < RW; ++r) {
          float& c = C[(i0 + i) * N + j0 + r];
          c = alpha * out[i * W_ROWS + r] + (beta == 0.0f ? 0.0f : beta * c);
        }
    }
  };
  const i64 groups = N / W_ROWS;
#pragma omp for schedule(static) nowait
  for (i64 g = 0; g < groups; ++g) group(g * W_ROWS, Count<W_ROWS>{});
#pragma omp single
  for (i64 j = groups * W_ROWS; j < N; ++j) group(j, Count<1>{});
}

}  // namespace

void fewRowsNTTeam(i64 M, i64 N, i64 K, float alpha, const float* A, const WeightMatrix& W, float beta, float* C) {
  const i64 rb = rowBytes(W.dtype, K);
  if (W.dtype == WeightDtype::Q8_0) {
    const Q8Rows* a = nullptr;
#pragma omp single copyprivate(a)
    {
      static thread_local Q8Rows rows;  // grown once by whichever thread quantises: no allocation per token
      rows.quantise(A, M, K);
      a = &rows;
    }
    return forEachGroup(M, N, K, alpha, beta, C, [&](i64 j0, i64 i0, auto ma, auto rw, float* out) {
      dotQ8Rows<decltype(ma)::value, decltype(rw)::value>(K, *a, i0, W.data + j0 * rb, rb, out);
    });
  }
  const bool bf16 = W.dtype == WeightDtype::BF16;  // else f16 (gemmWeight sends f32 to gemm)
  forEachGroup(M, N, K, alpha, beta, C, [&](i64 j0, i64 i0, auto ma, auto rw, float* out) {
    constexpr int MA = decltype(ma)::value, RW = decltype(rw)::value;
    if (bf16) dotHalfRows<WeightDtype::BF16, MA, RW>(K, A + i0 * K, W.data + j0 * rb, rb, out);
    else dotHalfRows<WeightDtype::F16, MA, RW>(K, A + i0 * K, W.data + j0 * rb, rb, out);
  });
}

void fewRowsNT(i64 M, i64 N, i64 K, float alpha, const float* A, const WeightMatrix& W, float beta, float* C) {
#pragma omp parallel if (2.0 * M * N * K > 1e6)
  fewRowsNTTeam(M, N, K, alpha, A, W, beta, C);
}

}  // namespace frozen
}  // namespace chimed
