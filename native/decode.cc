// One decoding step in one call and one OpenMP parallel region. Decoding a token runs about a
// dozen kernels per layer on a handful of rows; called one by one from TypeScript, each call
// paid for its arguments, its tensors and a fresh start of the thread team (the threads sleep
// between calls), which together took as long as a third of the weight reads. Here the team
// starts once per token. The weight products and attention share their rows out between the
// threads (the *Team kernels) and write shared buffers; every thread then runs the small row
// kernels between them (norms, RoPE, SwiGLU, residual adds) on its own copy. That repeats a
// few microseconds of arithmetic but saves a barrier each, and a thread reads the other's half
// of a product once, not once into a row kernel on one thread and again out of it (5% faster
// decoding, measured against that design).
// Each kernel is the one the model's own composition calls, in the same order, so the logits
// are the same bits as that path's (test/decode-step.test.ts).
#include <omp.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "frozen-codec.h"
#include "kernels.h"

namespace chimed {
namespace {

// y[rows, N] = x W^T (+ bias), W's rows shared out between the team; ends with a barrier.
void projectTeam(i64 rows, const float* x, const DecodeLinear& L, float* y) {
  const WeightMatrix& W = L.W;
  if (W.dtype == WeightDtype::F32)
    gemmFewRowsNTTeam(rows, W.rows, W.cols, 1.0f, x, reinterpret_cast<const float*>(W.data), 0.0f, y);
  else
    frozen::fewRowsNTTeam(rows, W.rows, W.cols, 1.0f, x, W, 0.0f, y);
  if (L.bias) {
#pragma omp single
    biasForward(y, L.bias, rows, W.rows);
  }
}

// Buffers the team writes together (products, attention).
struct Shared {
  float *packed, *q0, *k0, *v, *attn, *o, *gateUp, *up, *lse;
};
// Buffers each thread keeps for itself: the row kernels' inputs and outputs.
struct Own {
  float *x, *x2, *h, *q0, *k0, *v, *qn, *kn, *q, *k, *act, *rstd;
};

// The step's buffers, carved from one buffer of the calling thread grown once: the shared
// ones, then each thread's own.
struct Activations {
  Shared shared{};
  std::vector<Own> own;

  Activations(const DecodeModel& m, int threads) : own(static_cast<std::size_t>(threads)) {
    const i64 B = m.B, D = m.D, qD = m.H * m.hd, kvD = m.KVH * m.hd;
    Shared& s = shared;
    std::vector<std::pair<float**, i64>> parts = {{&s.packed, B * (qD + 2 * kvD)}, {&s.q0, B * qD},  {&s.k0, B * kvD},
                                                  {&s.v, B * kvD},                  {&s.attn, B * qD}, {&s.o, B * D},
                                                  {&s.gateUp, B * 2 * m.F},         {&s.up, B * m.F},  {&s.lse, B * m.H}};
    for (Own& o : own)
      parts.insert(parts.end(), {{&o.x, B * D},
                                 {&o.x2, B * D},
                                 {&o.h, B * D},
                                 {&o.q0, B * qD},
                                 {&o.k0, B * kvD},
                                 {&o.v, B * kvD},
                                 {&o.qn, B * qD},
                                 {&o.kn, B * kvD},
                                 {&o.q, B * qD},
                                 {&o.k, B * kvD},
                                 {&o.act, B * m.F},
                                 {&o.rstd, B * m.H}});
    const auto padded = [](i64 n) { return (n + 15) / 16 * 16; };  // 64-byte steps
    i64 total = 0;
    for (const auto& part : parts) total += padded(part.second);
    static thread_local std::vector<float> buffer;
    if (buffer.size() < static_cast<std::size_t>(total)) buffer.resize(static_cast<std::size_t>(total));
    float* p = buffer.data();
    for (const auto& [slot, n] : parts) {
      *slot = p;
      p += padded(n);
    }
  }
};

// q, k, v of layer L after RoPE (and the per-head norms) into the thread's own q, k (and v when
// it is sliced from a packed product), k and v appended to the caches.
void attentionInputs(const DecodeModel& m, const DecodeLayer& L, const Shared& s, const Own& own, const std::int32_t* pos) {
  const i64 B = m.B, qD = m.H * m.hd, kvD = m.KVH * m.hd;
  const bool packed = L.nQkv == 1;
  if (packed) projectTeam(B, own.h, L.qkv[0], s.packed);
  else {
    projectTeam(B, own.h, L.qkv[0], s.q0);
    projectTeam(B, own.h, L.qkv[1], s.k0);
    projectTeam(B, own.h, L.qkv[2], s.v);
  }
  const float *q = s.q0, *k = s.k0, *v = s.v;
  if (packed && !L.qNorm) {
    qkvRopeForward(own.q, own.k, own.v, s.packed, pos, B, m.H, m.KVH, m.hd, m.invFreq, m.ropeScale);
    v = own.v;
  } else {
    if (packed) {
      sliceColumnsForward(own.q0, s.packed, B, qD + 2 * kvD, 0, qD);
      sliceColumnsForward(own.k0, s.packed, B, qD + 2 * kvD, qD, kvD);
      sliceColumnsForward(own.v, s.packed, B, qD + 2 * kvD, qD + kvD, kvD);
      q = own.q0;
      k = own.k0;
      v = own.v;
    }
    if (L.qNorm) {
      rmsnormForward(own.qn, own.rstd, q, L.qNorm, B * m.H, m.hd, m.eps);
      rmsnormForward(own.kn, own.rstd, k, L.kNorm, B * m.KVH, m.hd, m.eps);
      q = own.qn;
      k = own.kn;
    }
    ropeForward(own.q, q, pos, B, m.H, m.hd, m.invFreq, m.ropeScale);
    ropeForward(own.k, k, pos, B, m.KVH, m.hd, m.invFreq, m.ropeScale);
  }
  // each (row, kv head) of the new position by one thread; attention reads them after the barrier
#pragma omp for schedule(static)
  for (i64 bh = 0; bh < B * m.KVH; ++bh) {
    const i64 at = (bh * m.kvCap + m.length) * m.hd;
    std::memcpy(L.kCache + at, own.k + bh * m.hd, static_cast<std::size_t>(m.hd) * sizeof(float));
    std::memcpy(L.vCache + at, v + bh * m.hd, static_cast<std::size_t>(m.hd) * sizeof(float));
  }
}

// The SwiGLU MLP of layer L on own.h into s.o.
void mlp(const DecodeModel& m, const DecodeLayer& L, const Shared& s, const Own& own) {
  const i64 B = m.B;
  if (L.nGateUp == 1) {
    projectTeam(B, own.h, L.gateUp[0], s.gateUp);
    swigluPackedForward(own.act, s.gateUp, B, m.F);
  } else {
    projectTeam(B, own.h, L.gateUp[0], s.gateUp);
    projectTeam(B, own.h, L.gateUp[1], s.up);
    swigluForward(own.act, s.gateUp, s.up, B * m.F);
  }
  projectTeam(B, own.act, L.down, s.o);
}

}  // namespace

void decodeStep(const DecodeModel& m, const std::int32_t* ids, const std::int32_t* pos, const std::int32_t* keyStart, float* logits) {
  const int threads = omp_get_max_threads();
  const Activations a(m, threads);
  const Shared& s = a.shared;
  const i64 B = m.B, D = m.D;
  const AttentionDims dims{B, 1, m.length + 1, m.kvCap, m.H, m.KVH, m.hd, static_cast<float>(1.0 / std::sqrt(static_cast<double>(m.hd))), true};
#pragma omp parallel num_threads(threads)
  {
    const Own& own = a.own[static_cast<std::size_t>(omp_get_thread_num())];
    embeddingWeight(own.x, m.embed, ids, B);
    for (i64 l = 0; l < m.nLayers; ++l) {
      const DecodeLayer& L = m.layers[l];
      rmsnormForward(own.h, own.rstd, own.x, L.inputNorm, B, D, m.eps);
      attentionInputs(m, L, s, own, pos);
      attentionForwardTeam(s.attn, s.lse, own.q, L.kCache, L.vCache, dims, keyStart);
      projectTeam(B, s.attn, L.o, s.o);
      addRmsnormForward(own.x2, own.h, own.rstd, own.x, s.o, L.postNorm, B, D, m.eps);
      mlp(m, L, s, own);
      add(own.x, own.x2, s.o, B * D);
    }
    rmsnormForward(own.h, own.rstd, own.x, m.finalNorm, B, D, m.eps);
    projectTeam(B, own.h, DecodeLinear{m.head, nullptr}, logits);
  }
}

}  // namespace chimed
