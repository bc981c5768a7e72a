// GEMM dispatch: which of the two paths (built-in, OpenBLAS) runs a product, by its shape class,
// and the measurement that decides it. Neither path wins everywhere: on Zen 4/5 the built-in
// AVX-512 kernel beats OpenBLAS 0.3.21 (which runs its Haswell AVX2 kernels there) by ~1.7x on
// large products, while OpenBLAS can win on older CPUs, other vendors or thin products. The
// choice is made in TypeScript (src/engine/gemm-choice.ts: environment, per-machine cache,
// run records) from gemmMeasure's timings, and set here once; the per-call cost is one load.
#include <algorithm>
#include <atomic>
#include <ctime>
#include <vector>

#include "kernels.h"

namespace chimed {
namespace {

constexpr const char* CLASS_NAMES[GEMM_CLASSES] = {
    "NN-narrow", "NN-shallow", "NN-small", "NN-large", "NT-narrow", "NT-shallow", "NT-small", "NT-large",
    "TN-narrow", "TN-shallow", "TN-small", "TN-large", "TT-narrow", "TT-shallow", "TT-small", "TT-large",
};
enum Size { NARROW = 0, SHALLOW = 1, SMALL = 2, LARGE = 3, SIZES = 4 };
// Under 64 columns (N) or a depth (K) under 64 a micro-tile (8 x 32 with AVX-512) is mostly
// padding or a packed panel is mostly overhead; LoRA's rank-r products live here, one kind on
// each side. Under 64 rows (short prompts, a few decoded rows) or 2^25 flops (~0.1 ms), packing
// and thread start-up weigh most.
constexpr i64 THIN = 64;
constexpr double SMALL_FLOPS = 33554432.0;

std::atomic<int> backendOf[GEMM_CLASSES] = {};  // GemmBackend values; zero-initialised = Builtin

// The products timed for a class: shapes typical of it (LoRA's rank-16 products, a small block
// and a 32-row prefill, a 512-wide layer).
struct Shape {
  i64 M, N, K;
};
std::vector<Shape> representatives(int size) {
  switch (size) {
    case NARROW: return {{1024, 16, 512}};
    case SHALLOW: return {{1024, 512, 16}};
    case SMALL: return {{128, 128, 256}, {32, 512, 512}};
    default: return {{512, 512, 512}};
  }
}

using GemmFn = void (*)(bool, bool, i64, i64, i64, float, const float*, const float*, float, float*);

}  // namespace

int gemmClassOf(bool transA, bool transB, i64 M, i64 N, i64 K) {
  if (M <= GEMM_FEW_ROWS) return -1;
  const int op = (transA ? 2 : 0) + (transB ? 1 : 0);
  const double flops = 2.0 * static_cast<double>(M) * static_cast<double>(N) * static_cast<double>(K);
  const int size = N < THIN ? NARROW : K < THIN ? SHALLOW : M < THIN || flops < SMALL_FLOPS ? SMALL : LARGE;
  return op * SIZES + size;
}

const char* gemmClassName(int cls) { return cls >= 0 && cls < GEMM_CLASSES ? CLASS_NAMES[cls] : "few-rows"; }

void setGemmBackend(int cls, GemmBackend backend) { backendOf[cls].store(static_cast<int>(backend), std::memory_order_relaxed); }

GemmBackend gemmBackend(int cls) { return static_cast<GemmBackend>(backendOf[cls].load(std::memory_order_relaxed)); }

void gemm(bool transA, bool transB, i64 M, i64 N, i64 K, float alpha, const float* A, const float* B, float beta, float* C) {
  const int cls = gemmClassOf(transA, transB, M, N, K);
  const bool blas = cls >= 0 && gemmBackend(cls) == GemmBackend::Openblas && openblasConfig();
  (blas ? gemmOpenblas : gemmBuiltin)(transA, transB, M, N, K, alpha, A, B, beta, C);
}

// Process CPU time in seconds: the work a product costs. Other processes on the same cores
// stretch wall time (a descheduled thread holds up its product), which on a busy machine
// inflated every round of one backend and picked the slower path (OpenBLAS for NN-large at
// 1.7x the built-in kernel's time, cached for the machine); they inflate CPU time far less.
double cpuSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

// Rounds interleave the backends (alternating which goes first) and classes, and keep each
// one's minimum: on a shared machine a round disturbed by another process inflates one sample
// of one backend, not the comparison.
void gemmMeasure(int rounds, double* best) {
  std::fill(best, best + 2 * GEMM_CLASSES, 1e300);
  const bool haveBlas = openblasConfig() != nullptr;
  const i64 maxSide = 1024, maxElems = maxSide * 512;
  std::vector<float> A(maxElems), B(maxElems), C(maxElems);
  std::uint32_t state = 12345;
  for (auto* v : {&A, &B})
    for (float& x : *v) {
      state = state * 1664525u + 1013904223u;
      x = static_cast<float>(state >> 8) / 16777216.0f - 0.5f;
    }
  for (int round = 0; round <= rounds; ++round)
    for (int cls = 0; cls < GEMM_CLASSES; ++cls) {
      const bool tA = cls / SIZES >= 2, tB = (cls / SIZES) % 2 == 1;
      for (int i = 0; i < 2; ++i) {
        const int backend = (i + round + cls) % 2;
        if (backend == static_cast<int>(GemmBackend::Openblas) && !haveBlas) continue;
        const GemmFn fn = backend == static_cast<int>(GemmBackend::Openblas) ? gemmOpenblas : gemmBuiltin;
        const double t0 = cpuSeconds();
        for (const Shape& s : representatives(cls % SIZES)) fn(tA, tB, s.M, s.N, s.K, 1.0f, A.data(), B.data(), 0.0f, C.data());
        const double seconds = cpuSeconds() - t0;
        if (round > 0) best[cls * 2 + backend] = std::min(best[cls * 2 + backend], seconds);  // round 0 warms up
      }
    }
}

}  // namespace chimed
