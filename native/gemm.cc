// GEMM: OpenBLAS's cblas_sgemm when the build found it, otherwise (and always available as
// gemmBuiltin, so tests can compare the two) a blocked GEMM in the BLIS style: op(B) is packed
// into KC x NR column slivers, op(A) into MC x KC blocks of MR-row slivers with alpha folded in,
// and the register-tiled micro-kernel of simd.h multiplies one sliver pair at a time.
#include <omp.h>

#include <algorithm>

#include "kernels.h"
#include "simd.h"

#ifdef CHIMED_OPENBLAS
#include <cblas.h>
#endif

namespace chimed {
namespace {

// Cache blocking for a 32 KiB L1 / 1 MiB L2 core (Zen 4): a B sliver (KC x NR) stays in L1
// while the A block (MC x KC) streams from L2; a B panel is at most KC x NC.
constexpr i64 KC = 256;
constexpr i64 MC = 16 * MR;
constexpr i64 NC = 128 * NR;

// Ap[k*MR + r] = alpha * op(A)[i0 + r, p0 + k], zero rows past M.
void packA(float* __restrict Ap, bool transA, const float* __restrict A, i64 M, i64 K, i64 i0, i64 p0, i64 kc, float alpha) {
  const i64 rows = std::min<i64>(MR, M - i0);
  if (transA) {  // A is [K, M]: each k gives MR contiguous values
    for (i64 k = 0; k < kc; ++k) {
      const float* src = A + (p0 + k) * M + i0;
      for (i64 r = 0; r < rows; ++r) Ap[k * MR + r] = alpha * src[r];
      for (i64 r = rows; r < MR; ++r) Ap[k * MR + r] = 0.0f;
    }
  } else {  // A is [M, K]: each row is contiguous along k
    for (i64 r = 0; r < rows; ++r) {
      const float* src = A + (i0 + r) * K + p0;
      for (i64 k = 0; k < kc; ++k) Ap[k * MR + r] = alpha * src[k];
    }
    for (i64 r = rows; r < MR; ++r)
      for (i64 k = 0; k < kc; ++k) Ap[k * MR + r] = 0.0f;
  }
}

// Bp[k*NR + c] = op(B)[p0 + k, j0 + c], zero columns past N.
void packB(float* __restrict Bp, bool transB, const float* __restrict B, i64 N, i64 K, i64 j0, i64 p0, i64 kc) {
  const i64 cols = std::min<i64>(NR, N - j0);
  if (transB) {  // B is [N, K]: each column of op(B) is a contiguous row of B
    for (i64 c = 0; c < cols; ++c) {
      const float* src = B + (j0 + c) * K + p0;
      for (i64 k = 0; k < kc; ++k) Bp[k * NR + c] = src[k];
    }
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

// C *= beta, where beta == 0 overwrites (so NaN/Inf garbage in C does not leak through).
void scaleRows(float* C, i64 ldc, i64 rows, i64 cols, float beta) {
  if (beta == 1.0f) return;
  for (i64 i = 0; i < rows; ++i) {
    float* c = C + i * ldc;
    if (beta == 0.0f) std::fill(c, c + cols, 0.0f);
    else
      for (i64 j = 0; j < cols; ++j) c[j] *= beta;
  }
}

// The product is cut into a grid of independent C blocks (MC rows x nb columns), handed out
// dynamically; each thread packs its own panels. That costs a little repeated packing but
// needs no barrier inside the product, so a descheduled thread (2 shared cores) delays only its
// own blocks instead of stalling the team at every panel.
i64 blockColumns(i64 M, i64 N, int threads) {
  const i64 rowBlocks = ceilDiv(M, MC), wanted = 4 * static_cast<i64>(threads);
  const i64 colBlocks = std::max<i64>(ceilDiv(N, NC), std::min(ceilDiv(wanted, rowBlocks), ceilDiv(N, 4 * NR)));
  return roundUp(ceilDiv(N, colBlocks), NR);
}

}  // namespace

void gemmBuiltin(bool transA, bool transB, i64 M, i64 N, i64 K, float alpha, const float* A, const float* B, float beta, float* C) {
  if (M == 0 || N == 0) return;
  const int nt = omp_get_max_threads();
  const i64 nb = blockColumns(M, N, nt);
  const i64 rowBlocks = ceilDiv(M, MC), colBlocks = ceilDiv(N, nb);
  const i64 perThread = MC * KC + KC * nb;
  static thread_local Scratch scratch;
  float* const base = scratch.get(nt * perThread);

#pragma omp parallel for schedule(dynamic, 1) num_threads(nt) if (2.0 * M * N * K > 1e6)
  for (i64 t = 0; t < rowBlocks * colBlocks; ++t) {
    float* const Ap = base + omp_get_thread_num() * perThread;
    float* const Bp = Ap + MC * KC;
    const i64 i0 = (t / colBlocks) * MC, j0 = (t % colBlocks) * nb;
    const i64 mc = std::min(MC, M - i0), nc = std::min(nb, N - j0);
    const i64 nSliversA = ceilDiv(mc, MR), nSliversB = ceilDiv(nc, NR);
    scaleRows(C + i0 * N + j0, N, mc, nc, beta);
    if (alpha == 0.0f) continue;
    for (i64 pc = 0; pc < K; pc += KC) {
      const i64 kc = std::min(KC, K - pc);
      for (i64 s = 0; s < nSliversB; ++s) packB(Bp + s * NR * kc, transB, B, N, K, j0 + s * NR, pc, kc);
      for (i64 s = 0; s < nSliversA; ++s) packA(Ap + s * MR * kc, transA, A, M, K, i0 + s * MR, pc, kc, alpha);
      // Each B sliver stays in L1 while the A slivers of the block stream past it from L2.
      for (i64 sb = 0; sb < nSliversB; ++sb)
        for (i64 sa = 0; sa < nSliversA; ++sa) {
          const i64 i = i0 + sa * MR, j = j0 + sb * NR;
          tile<true>(kc, Ap + sa * MR * kc, MR, Bp + sb * NR * kc, NR, C + i * N + j, N, static_cast<int>(std::min<i64>(MR, M - i)),
                     static_cast<int>(std::min<i64>(NR, N - j)));
        }
    }
  }
}

#ifdef CHIMED_OPENBLAS
void gemm(bool transA, bool transB, i64 M, i64 N, i64 K, float alpha, const float* A, const float* B, float beta, float* C) {
  if (M == 0 || N == 0) return;
  if (K == 0 || alpha == 0.0f) {  // BLAS implementations differ on whether they apply beta here
    scaleRows(C, N, M, N, beta);
    return;
  }
  cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans, static_cast<blasint>(M),
              static_cast<blasint>(N), static_cast<blasint>(K), alpha, A, static_cast<blasint>(transA ? M : K), B,
              static_cast<blasint>(transB ? K : N), beta, C, static_cast<blasint>(N));
}
bool hasBlas() { return true; }
void setBlasThreads(int n) { openblas_set_num_threads(n); }
#else
void gemm(bool transA, bool transB, i64 M, i64 N, i64 K, float alpha, const float* A, const float* B, float beta, float* C) {
  gemmBuiltin(transA, transB, M, N, K, alpha, A, B, beta, C);
}
bool hasBlas() { return false; }
void setBlasThreads(int) {}
#endif

}  // namespace chimed
