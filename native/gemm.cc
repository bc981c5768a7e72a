// The two GEMM paths. C is cut into a grid of blocks shared out over the OpenMP team; each block
// is computed single-threaded by OpenBLAS's cblas_sgemm (gemmOpenblas, when the build found it)
// or by the built-in blocked GEMM (gemmBuiltin, always compiled). gemm-dispatch.cc picks one per
// shape class. The built-in one is BLIS-style: op(B) packed into KC x NR column slivers, op(A) into MC x KC blocks of
// MR-row slivers with alpha folded in, multiplied by the register-tiled micro-kernel of simd.h.
// Products of at most FEW_ROWS rows (decoding) skip packing on both paths.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <vector>

#include "gemm-blocked.h"
#include "kernels.h"
#include "simd.h"

#ifdef CHIMED_OPENBLAS
#include <cblas.h>
#endif

namespace chimed {
namespace {

using namespace blocked;

// Up to this many rows of C, gemmFewRows beats packing (and OpenBLAS 0.3.21, which packs too).
constexpr i64 FEW_ROWS = GEMM_FEW_ROWS;

// Bp[k*NR + c] = op(B)[p0 + k, j0 + c], zero columns past N.
void packB(float* __restrict Bp, bool transB, const float* __restrict B, i64 N, i64 K, i64 j0, i64 p0, i64 kc) {
  const i64 cols = std::min<i64>(NR, N - j0);
  if (transB) {  // B is [N, K]: each column of op(B) is a contiguous row of B
    transposeBlock(Bp, NR, B + j0 * K + p0, K, cols, kc);
    for (i64 c = cols; c < NR; ++c)
      for (i64 k = 0; k < kc; ++k) Bp[k * NR + c] = 0.0f;
  } else {
    for (i64 k = 0; k < kc; ++k) {
      const float* src = B + (p0 + k) * N + j0;
      for (i64 c = 0; c < cols; ++c) Bp[k * NR + c] = src[c];
      for (i64 c = cols; c < NR; ++c) Bp[k * NR + c] = 0.0f;
    }
  }
}

}  // namespace

// Each output is one dot product of two contiguous rows, whichever thread computes it, so the
// result does not depend on the team's size.
void gemmFewRowsNTTeam(i64 M, i64 N, i64 K, float alpha, const float* A, const float* B, float beta, float* C) {
#pragma omp for schedule(static)
  for (i64 j = 0; j < N; ++j) {
    const float* b = B + j * K;
    for (i64 i = 0; i < M; ++i) {
      const float* ai = A + i * K;
      float s = 0.0f;
#pragma omp simd reduction(+ : s)
      for (i64 k = 0; k < K; ++k) s += ai[k] * b[k];
      float& c = C[i * N + j];
      c = alpha * s + (beta == 0.0f ? 0.0f : beta * c);
    }
  }
}

namespace {

// Products with a handful of rows (decoding: one row per sequence) are bound by reading B, so
// they skip packing and stream B exactly once. With B transposed each output is a dot product
// of two contiguous rows; otherwise rows of B are added into a column chunk of C small enough
// to stay in L1. Parallel over columns of C.
void gemmFewRows(bool transA, bool transB, i64 M, i64 N, i64 K, float alpha, const float* A, const float* B, float beta, float* C) {
  auto a = [=](i64 i, i64 k) { return transA ? A[k * M + i] : A[i * K + k]; };
  if (transB) {
    std::vector<float> copy;  // op(A) rows must be contiguous; only transA needs a copy
    if (transA) {
      copy.resize(static_cast<std::size_t>(M * K));
      for (i64 i = 0; i < M; ++i)
        for (i64 k = 0; k < K; ++k) copy[i * K + k] = a(i, k);
    }
    const float* rowsA = transA ? copy.data() : A;
#pragma omp parallel if (2.0 * M * N * K > 1e6)
    gemmFewRowsNTTeam(M, N, K, alpha, rowsA, B, beta, C);
    return;
  }
  // Four rows of B per pass over the C chunk: four FMAs per load and store of C.
  constexpr i64 CHUNK = 512, KU = 4;
#pragma omp parallel for schedule(static) if (2.0 * M * N * K > 1e6)
  for (i64 j0 = 0; j0 < N; j0 += CHUNK) {
    const i64 nc = std::min(CHUNK, N - j0);
    scaleRows(C + j0, N, M, nc, beta);
    for (i64 k = 0; k < K; k += KU) {
      const i64 ku = std::min(KU, K - k);
      const float* __restrict b0 = B + k * N + j0;
      const float* __restrict b1 = ku > 1 ? b0 + N : b0;
      const float* __restrict b2 = ku > 2 ? b0 + 2 * N : b0;
      const float* __restrict b3 = ku > 3 ? b0 + 3 * N : b0;
      for (i64 i = 0; i < M; ++i) {
        const float s0 = alpha * a(i, k), s1 = ku > 1 ? alpha * a(i, k + 1) : 0.0f, s2 = ku > 2 ? alpha * a(i, k + 2) : 0.0f,
                    s3 = ku > 3 ? alpha * a(i, k + 3) : 0.0f;
        float* __restrict c = C + i * N + j0;
        for (i64 j = 0; j < nc; ++j) c[j] += s0 * b0[j] + s1 * b1[j] + s2 * b2[j] + s3 * b3[j];
      }
    }
  }
}

}  // namespace

void gemmBuiltin(bool transA, bool transB, i64 M, i64 N, i64 K, float alpha, const float* A, const float* B, float beta, float* C) {
  if (M == 0 || N == 0) return;
  if (M <= FEW_ROWS && K > 0 && alpha != 0.0f) return gemmFewRows(transA, transB, M, N, K, alpha, A, B, beta, C);
  gemmPacked(transA, M, N, K, alpha, A, [&](float* Bp, i64 j0, i64 p0, i64 kc) { packB(Bp, transB, B, N, K, j0, p0, kc); }, beta, C);
}


#ifdef CHIMED_OPENBLAS
namespace {
// OpenBLAS runs single-threaded: gemm splits the product over the OpenMP team itself. A second
// thread pool (OpenBLAS's pthreads, which keep spinning after each call) would compete with the
// OpenMP workers of the next kernel for the same cores.
const bool blasSingleThreaded = (openblas_set_num_threads(1), true);
}  // namespace

void gemmOpenblas(bool transA, bool transB, i64 M, i64 N, i64 K, float alpha, const float* A, const float* B, float beta, float* C) {
  if (M == 0 || N == 0) return;
  if (K == 0 || alpha == 0.0f) {  // BLAS implementations differ on whether they apply beta here
    scaleRows(C, N, M, N, beta);
    return;
  }
  if (M <= FEW_ROWS) return gemmFewRows(transA, transB, M, N, K, alpha, A, B, beta, C);
  const blasint lda = static_cast<blasint>(transA ? M : K), ldb = static_cast<blasint>(transB ? K : N), ldc = static_cast<blasint>(N);
  forEachBlock(M, N, gemmThreads(M, N, K), [&](i64 i0, i64 mc, i64 j0, i64 nc, int) {
    const float* a = transA ? A + i0 : A + i0 * K;
    const float* b = transB ? B + j0 * K : B + j0;
    cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans, static_cast<blasint>(mc),
                static_cast<blasint>(nc), static_cast<blasint>(K), alpha, a, lda, b, ldb, beta, C + i0 * N + j0, ldc);
  });
}
const char* openblasConfig() { return blasSingleThreaded ? openblas_get_config() : nullptr; }
#else
void gemmOpenblas(bool, bool, i64, i64, i64, float, const float*, const float*, float, float*) { std::abort(); }
const char* openblasConfig() { return nullptr; }
#endif

}  // namespace chimed
