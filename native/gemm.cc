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

#include "kernels.h"
#include "simd.h"

#ifdef CHIMED_OPENBLAS
#include <cblas.h>
#endif

namespace chimed {
namespace {

// Cache blocking for a 32 KiB L1 / 1 MiB L2 core (Zen 4): a B sliver (KC x NR) stays in L1
// while the A block (MC x KC) streams from L2; a B panel is at most KC x NC.
constexpr i64 KC = 384;
constexpr i64 MC = 16 * MR;
constexpr i64 NC = 128 * NR;
// Up to this many rows of C, gemmFewRows beats packing (and OpenBLAS 0.3.21, which packs too).
constexpr i64 FEW_ROWS = GEMM_FEW_ROWS;

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

// C[i0:i0+mc, j0:j0+nc] = alpha op(A) op(B) + beta C over that block, single-threaded, in the
// BLIS loop order: column panels of NC, depth slices of KC (B slice packed once), row blocks of
// MC (A block packed), then micro-tiles with each B sliver kept in L1 while the A slivers of the
// block stream past it from L2.
void gemmBlock(bool transA, bool transB, i64 M, i64 N, i64 K, float alpha, const float* A, const float* B, float beta, float* C, i64 i0,
               i64 mc, i64 j0, i64 nc, float* Ap, float* Bp) {
  scaleRows(C + i0 * N + j0, N, mc, nc, beta);
  if (alpha == 0.0f) return;
  for (i64 jc = j0; jc < j0 + nc; jc += NC) {
    const i64 ncc = std::min(NC, j0 + nc - jc), nSliversB = ceilDiv(ncc, NR);
    for (i64 pc = 0; pc < K; pc += KC) {
      const i64 kc = std::min(KC, K - pc);
      for (i64 s = 0; s < nSliversB; ++s) packB(Bp + s * NR * kc, transB, B, N, K, jc + s * NR, pc, kc);
      for (i64 ic = i0; ic < i0 + mc; ic += MC) {
        const i64 nSliversA = ceilDiv(std::min(MC, i0 + mc - ic), MR);
        for (i64 s = 0; s < nSliversA; ++s) packA(Ap + s * MR * kc, transA, A, M, K, ic + s * MR, pc, kc, alpha);
        for (i64 sb = 0; sb < nSliversB; ++sb)
          for (i64 sa = 0; sa < nSliversA; ++sa) {
            const i64 i = ic + sa * MR, j = jc + sb * NR;
            tile<true>(kc, Ap + sa * MR * kc, MR, Bp + sb * NR * kc, NR, C + i * N + j, N,
                       static_cast<int>(std::min<i64>(MR, i0 + mc - i)), static_cast<int>(std::min<i64>(NR, j0 + nc - j)));
          }
      }
    }
  }
}

// How many row x column blocks to cut C into for `threads` threads. Blocks are independent
// (each thread packs its own panels) and handed out dynamically, so there is no barrier inside
// the product and a descheduled thread (2 shared cores) delays only its own block. Extra
// blocks cost repeated packing: B is packed once per row block, A once per column block, so the
// split minimises rows * N + cols * M for about 3 blocks per thread.
void blockGrid(i64 M, i64 N, int threads, i64& rowBlocks, i64& colBlocks) {
  const i64 wanted = threads == 1 ? 1 : 3 * static_cast<i64>(threads);
  const double ideal = std::sqrt(static_cast<double>(wanted) * static_cast<double>(M) / static_cast<double>(N));
  rowBlocks = std::clamp<i64>(std::llround(ideal), 1, std::min(wanted, ceilDiv(M, MR)));
  colBlocks = std::clamp<i64>(ceilDiv(wanted, rowBlocks), 1, ceilDiv(N, NR));
}

// Threads for a product: small ones are not worth waking the team for.
int gemmThreads(i64 M, i64 N, i64 K) { return 2.0 * M * N * K > 1e6 ? omp_get_max_threads() : 1; }

// Runs block(i0, mc, j0, nc, thread) over the block grid of C on nt threads.
template <typename Block>
void forEachBlock(i64 M, i64 N, int nt, Block block) {
  i64 rowBlocks, colBlocks;
  blockGrid(M, N, nt, rowBlocks, colBlocks);
  const i64 mb = roundUp(ceilDiv(M, rowBlocks), MR), nb = roundUp(ceilDiv(N, colBlocks), NR);
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt)
  for (i64 t = 0; t < rowBlocks * colBlocks; ++t) {
    const i64 i0 = (t / colBlocks) * mb, j0 = (t % colBlocks) * nb;
    if (i0 < M && j0 < N) block(i0, std::min(mb, M - i0), j0, std::min(nb, N - j0), omp_get_thread_num());
  }
}

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
#pragma omp parallel for schedule(static) if (2.0 * M * N * K > 1e6)
    for (i64 j = 0; j < N; ++j) {
      const float* b = B + j * K;
      for (i64 i = 0; i < M; ++i) {
        const float* ai = rowsA + i * K;
        float s = 0.0f;
#pragma omp simd reduction(+ : s)
        for (i64 k = 0; k < K; ++k) s += ai[k] * b[k];
        float& c = C[i * N + j];
        c = alpha * s + (beta == 0.0f ? 0.0f : beta * c);
      }
    }
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
  const int nt = gemmThreads(M, N, K);
  const i64 perThread = MC * KC + KC * NC;
  static thread_local Scratch scratch;
  float* const base = scratch.get(nt * perThread);
  forEachBlock(M, N, nt, [&](i64 i0, i64 mc, i64 j0, i64 nc, int thread) {
    float* const Ap = base + thread * perThread;
    gemmBlock(transA, transB, M, N, K, alpha, A, B, beta, C, i0, mc, j0, nc, Ap, Ap + MC * KC);
  });
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
