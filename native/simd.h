// Building blocks shared by the GEMM and attention kernels: a register-tiled multiply-add
// micro-kernel, a vectorisable exp, and a reusable scratch buffer. Everything is plain C++
// written so that gcc -O3 -march=native auto-vectorises it (no intrinsics), which keeps one
// source for AVX-512, AVX2 and NEON machines.
#pragma once
#include <omp.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>

namespace chimed {

// Tile shape of the micro-kernel: MR rows broadcast from A times NR columns loaded from B.
// MR*NR/lanes accumulators must fit the register file: 16 zmm with AVX-512 (32 registers),
// 12 ymm with AVX2 (16 registers).
#if defined(__AVX512F__)
constexpr int MR = 8, NR = 32;
#elif defined(__AVX__)
constexpr int MR = 6, NR = 16;
#else
constexpr int MR = 4, NR = 16;
#endif

inline std::int64_t roundUp(std::int64_t x, std::int64_t m) { return (x + m - 1) / m * m; }
inline std::int64_t ceilDiv(std::int64_t x, std::int64_t m) { return (x + m - 1) / m; }

// acc[i][j] = sum_k a[k*lda + i] * b[k*ldb + j] for i < MR, j < NR. Reads full MR rows of A
// and NR columns of B, so callers pad their buffers; only the store honours mr x nr.
// Writes (ACCUMULATE=false) or adds (true) the mr x nr corner into c.
template <bool ACCUMULATE>
inline void tile(std::int64_t kc, const float* __restrict a, std::int64_t lda, const float* __restrict b, std::int64_t ldb,
                 float* __restrict c, std::int64_t ldc, int mr, int nr) {
  float acc[MR][NR] = {};
  for (std::int64_t k = 0; k < kc; ++k) {
    const float* ak = a + k * lda;
    const float* bk = b + k * ldb;
    for (int i = 0; i < MR; ++i) {
      const float ai = ak[i];
      for (int j = 0; j < NR; ++j) acc[i][j] += ai * bk[j];
    }
  }
  if (mr == MR && nr == NR) {
    for (int i = 0; i < MR; ++i)
      for (int j = 0; j < NR; ++j) {
        if (ACCUMULATE) c[i * ldc + j] += acc[i][j];
        else c[i * ldc + j] = acc[i][j];
      }
  } else {
    for (int i = 0; i < mr; ++i)
      for (int j = 0; j < nr; ++j) {
        if (ACCUMULATE) c[i * ldc + j] += acc[i][j];
        else c[i * ldc + j] = acc[i][j];
      }
  }
}

// Transposing copy: dst[k * ldd + c] = src[c * lds + k] for c < rows, k < cols. Packing a
// matrix whose rows must become columns (a linear layer's weight [N, K] into the GEMM's KC x NR
// slivers, attention's key blocks) written as one scalar store per element is store-bound and,
// with the weights streaming from memory, cost a prefill almost as much as the products it
// feeds. So full square tiles of VLANES x VLANES are transposed in registers: gcc's vector
// extensions (portable, not intrinsics) in log2(VLANES) shuffle stages, each swapping the
// off-diagonal blocks of b x b elements between row pairs i and i + b, which takes element
// (i, j) to (j, i) once every bit b has been swapped. Edges, and compilers without
// __builtin_shuffle, take a scalar loop over tiles of rows, so the destination lines it
// scatters into stay in L1.
#if defined(__AVX512F__)
constexpr int VLANES = 16;
#elif defined(__AVX__)
constexpr int VLANES = 8;
#else
constexpr int VLANES = 4;
#endif

namespace transpose_detail {

inline void scalar(float* __restrict dst, std::int64_t ldd, const float* __restrict src, std::int64_t lds, std::int64_t c0, std::int64_t rows,
                   std::int64_t k0, std::int64_t cols) {
  constexpr std::int64_t KT = 64;
  for (std::int64_t kb = k0; kb < cols; kb += KT) {
    const std::int64_t ke = kb + KT < cols ? kb + KT : cols;
    for (std::int64_t c = c0; c < rows; ++c)
      for (std::int64_t k = kb; k < ke; ++k) dst[k * ldd + c] = src[c * lds + k];
  }
}

#if defined(__GNUC__) && !defined(__clang__)
#define CHIMED_VECTOR_TRANSPOSE 1
using VecF = float __attribute__((vector_size(VLANES * sizeof(float))));
using VecI = std::int32_t __attribute__((vector_size(VLANES * sizeof(float))));

template <int B>
[[gnu::always_inline]] inline void stage(VecF* r) {
  VecI lo, hi;  // indices into the concatenation of rows i and i + B
  for (int j = 0; j < VLANES; ++j) {
    lo[j] = (j & B) ? VLANES + j - B : j;
    hi[j] = (j & B) ? VLANES + j : j + B;
  }
  for (int i = 0; i < VLANES; ++i)
    if (!(i & B)) {
      const VecF x = r[i], y = r[i + B];
      r[i] = __builtin_shuffle(x, y, lo);
      r[i + B] = __builtin_shuffle(x, y, hi);
    }
}

[[gnu::always_inline]] inline void tile(float* __restrict dst, std::int64_t ldd, const float* __restrict src, std::int64_t lds) {
  VecF r[VLANES];
  for (int i = 0; i < VLANES; ++i) std::memcpy(&r[i], src + i * lds, sizeof(VecF));
  stage<1>(r);
  stage<2>(r);
  if constexpr (VLANES >= 8) stage<4>(r);
  if constexpr (VLANES >= 16) stage<8>(r);
  for (int i = 0; i < VLANES; ++i) std::memcpy(dst + i * ldd, &r[i], sizeof(VecF));
}
#endif

}  // namespace transpose_detail

inline void transposeBlock(float* __restrict dst, std::int64_t ldd, const float* __restrict src, std::int64_t lds, std::int64_t rows,
                           std::int64_t cols) {
  std::int64_t c0 = 0;
#ifdef CHIMED_VECTOR_TRANSPOSE
  const std::int64_t kFull = cols / VLANES * VLANES;
  c0 = rows / VLANES * VLANES;
  for (std::int64_t k = 0; k < kFull; k += VLANES)
    for (std::int64_t c = 0; c < c0; c += VLANES) transpose_detail::tile(dst + k * ldd + c, ldd, src + c * lds + k, lds);
  transpose_detail::scalar(dst, ldd, src, lds, 0, c0, kFull, cols);
#endif
  transpose_detail::scalar(dst, ldd, src, lds, c0, rows, 0, cols);
}

// exp(x) for float, ~1 ulp on the normal range (Cephes expf polynomial). libm's expf does not
// vectorise without -ffast-math; this does. exp(x) = 2^n * e^r with |r| <= ln2/2; n is rounded
// with the 1.5*2^23 trick because floorf only vectorises without trapping math.
// x < -87.34 gives 0 (also for -inf, used as the attention mask), x > 88.38 gives +inf.
inline float expf_vec(float x) {
  constexpr float hi = 88.3762626647949f, lo = -87.3365478515625f;
  float xc = x > hi ? hi : x;
  xc = xc < lo ? lo : xc;
  const float n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  float r = xc - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const std::int32_t bits = (static_cast<std::int32_t>(n) + 127) << 23;
  float pow2n;
  std::memcpy(&pow2n, &bits, sizeof pow2n);
  float y = p * pow2n;
  y = x < lo ? 0.0f : y;
  y = x > hi ? __builtin_huge_valf() : y;
  return y;
}

// fn(i) for i in [0, n): shared out between a new thread team when `large` and no team is
// running, else on the calling thread. Inside a running team (a decoding step, decode.cc) a
// nested region, even of one thread, costs ~2.5 us per call: more than a row kernel's work on
// a decoding step's few rows. Each i is computed alike either way.
template <class Fn>
inline void forRows(std::int64_t n, bool large, const Fn& fn) {
  if (large && !omp_in_parallel()) {
#pragma omp parallel for schedule(static)
    for (std::int64_t i = 0; i < n; ++i) fn(i);
  } else {
    for (std::int64_t i = 0; i < n; ++i) fn(i);
  }
}

// A grow-only, 64-byte aligned float buffer. Kernels keep one per calling thread
// (thread_local) and size it before entering a parallel region, so repeated calls pay neither
// malloc nor page faults, and an allocation failure surfaces as std::bad_alloc on the calling
// thread (where addon.cc turns it into a JS error) rather than inside an OpenMP region.
class Scratch {
 public:
  Scratch() = default;
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  ~Scratch() { std::free(data_); }
  float* get(std::int64_t n) {
    if (n > cap_) {
      std::free(data_);
      data_ = nullptr;
      cap_ = 0;
      const std::size_t bytes = static_cast<std::size_t>(roundUp(n, 16)) * sizeof(float);
      data_ = static_cast<float*>(std::aligned_alloc(64, bytes));
      if (!data_) throw std::bad_alloc();
      cap_ = n;
    }
    return data_;
  }

 private:
  float* data_ = nullptr;
  std::int64_t cap_ = 0;
};

}  // namespace chimed
