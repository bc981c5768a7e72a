// The BLIS-style blocked GEMM shared by the f32 path (gemm.cc) and the frozen-weight path
// (frozen.cc): op(A) packed into MC x KC blocks of MR-row slivers with alpha folded in, B packed
// by the caller's packer into KC x NR column slivers, multiplied by the micro-kernel of simd.h.
// The packer is the only thing that differs between the paths: f32 copies, a frozen weight
// (bf16, f16, q8_0) widens its stored values to f32 as it packs, so both share one micro-kernel.
#pragma once
#include <omp.h>

#include <algorithm>
#include <cmath>

#include "kernels.h"
#include "simd.h"

namespace chimed {
namespace blocked {

// Cache blocking for a 32 KiB L1 / 1 MiB L2 core (Zen 4): a B sliver (KC x NR) stays in L1
// while the A block (MC x KC) streams from L2; a B panel is at most KC x NC.
constexpr i64 KC = 384;
constexpr i64 MC = 16 * MR;
constexpr i64 NC = 128 * NR;

// Ap[k*MR + r] = alpha * op(A)[i0 + r, p0 + k], zero rows past M.
inline void packA(float* __restrict Ap, bool transA, const float* __restrict A, i64 M, i64 K, i64 i0, i64 p0, i64 kc, float alpha) {
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

// C *= beta, where beta == 0 overwrites (so NaN/Inf garbage in C does not leak through).
inline void scaleRows(float* C, i64 ldc, i64 rows, i64 cols, float beta) {
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
// block stream past it from L2. packB(Bp, j, p, kc) fills Bp[k*NR + c] = op(B)[p + k, j + c],
// zero columns past N.
template <typename PackB>
void gemmBlock(bool transA, i64 M, i64 N, i64 K, float alpha, const float* A, const PackB& packB, float beta, float* C, i64 i0, i64 mc,
               i64 j0, i64 nc, float* Ap, float* Bp) {
  scaleRows(C + i0 * N + j0, N, mc, nc, beta);
  if (alpha == 0.0f) return;
  for (i64 jc = j0; jc < j0 + nc; jc += NC) {
    const i64 ncc = std::min(NC, j0 + nc - jc), nSliversB = ceilDiv(ncc, NR);
    for (i64 pc = 0; pc < K; pc += KC) {
      const i64 kc = std::min(KC, K - pc);
      for (i64 s = 0; s < nSliversB; ++s) packB(Bp + s * NR * kc, jc + s * NR, pc, kc);
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
inline void blockGrid(i64 M, i64 N, int threads, i64& rowBlocks, i64& colBlocks) {
  const i64 wanted = threads == 1 ? 1 : 3 * static_cast<i64>(threads);
  const double ideal = std::sqrt(static_cast<double>(wanted) * static_cast<double>(M) / static_cast<double>(N));
  rowBlocks = std::clamp<i64>(std::llround(ideal), 1, std::min(wanted, ceilDiv(M, MR)));
  colBlocks = std::clamp<i64>(ceilDiv(wanted, rowBlocks), 1, ceilDiv(N, NR));
}

// Threads for a product: small ones are not worth waking the team for.
inline int gemmThreads(i64 M, i64 N, i64 K) { return 2.0 * M * N * K > 1e6 ? omp_get_max_threads() : 1; }

// Runs block(i0, mc, j0, nc, thread) over the block grid of C on nt threads. The MR-row and
// NR-column slivers are dealt out evenly (block sizes differ by one sliver at most): rounding
// each block up to whole slivers instead left a short last block: a 512-column product split
// 3-3-3-3-3-1 (in slivers) gave one of two threads 9 slivers and the other 7.
template <typename Block>
void forEachBlock(i64 M, i64 N, int nt, Block block) {
  i64 rowBlocks, colBlocks;
  blockGrid(M, N, nt, rowBlocks, colBlocks);
  const i64 rowSlivers = ceilDiv(M, MR), colSlivers = ceilDiv(N, NR);
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt)
  for (i64 t = 0; t < rowBlocks * colBlocks; ++t) {
    const i64 r = t / colBlocks, c = t % colBlocks;
    const i64 i0 = rowSlivers * r / rowBlocks * MR, i1 = std::min(M, rowSlivers * (r + 1) / rowBlocks * MR);
    const i64 j0 = colSlivers * c / colBlocks * NR, j1 = std::min(N, colSlivers * (c + 1) / colBlocks * NR);
    if (i0 < i1 && j0 < j1) block(i0, i1 - i0, j0, j1 - j0, omp_get_thread_num());
  }
}

// C = alpha op(A) op(B) + beta C over the whole product, blocks shared out over the team, each
// thread packing into its own part of a per-calling-thread scratch buffer.
template <typename PackB>
void gemmPacked(bool transA, i64 M, i64 N, i64 K, float alpha, const float* A, const PackB& packB, float beta, float* C) {
  const int nt = gemmThreads(M, N, K);
  const i64 perThread = MC * KC + KC * NC;
  static thread_local Scratch scratch;
  float* const base = scratch.get(nt * perThread);
  forEachBlock(M, N, nt, [&](i64 i0, i64 mc, i64 j0, i64 nc, int thread) {
    float* const Ap = base + thread * perThread;
    gemmBlock(transA, M, N, K, alpha, A, packB, beta, C, i0, mc, j0, nc, Ap, Ap + MC * KC);
  });
}

}  // namespace blocked
}  // namespace chimed
