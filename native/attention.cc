// Causal grouped-query attention in the FlashAttention-2 style: scores are computed block by
// block (a block of query rows against a block of BK keys) with an online softmax, so memory
// is O(block) and never O(Tq x Tk). Each block product goes through the micro-kernel of
// simd.h; the operands are laid out so that no product needs a transpose on the fly:
//   forward   ST[key][row] = Kt^T QT,  online softmax down the key axis (vectorised over rows),
//             O[row][d]   += PT^T V
//   backward  S, dP [row][key] = QT^T Kt, dOT^T Vt;  dV += P^T dO,  dK += dS^T Q,
//             dQ += dS K  (one explicit transpose of dS per block)
// A block of rows holds the G = H/KVH query heads that share one kv head, for nq consecutive
// queries, so K and V are read once per group. The backward recomputes probabilities from the
// saved lse and uses D_i = dot(dout_i, out_i); each task owns one (batch, kv head), so dK/dV
// (and dQ of the group's heads) are accumulated by exactly one thread in a fixed order:
// race-free and deterministic for any thread count.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "kernels.h"
#include "simd.h"

namespace chimed {
namespace {

// Block dimensions must be multiples of both MR and NR: keys are A rows and B columns of
// different products, and so are query rows.
constexpr i64 LANE = std::lcm(MR, NR);
constexpr i64 BK = LANE * ((64 + LANE - 1) / LANE);
// Target number of (head, query) rows per block: enough to amortise the K/V sliver loads.
constexpr i64 ROWS_TARGET = 64;
// Below this many rows per kv head (decoding), padding a block to LANE rows would waste most of
// the work, so the forward uses a per-row kernel straight from K and V instead.
constexpr i64 ROW_PATH_MAX_ROWS = 16;

constexpr float NEG_INF = -std::numeric_limits<float>::infinity();

struct Geometry {
  const AttentionDims& d;
  i64 G, hdp, Tkp, nkb;
  i64 kvStride;  // floats from one key of a kv head to the next
  const std::int32_t* keyStart;
  explicit Geometry(const AttentionDims& dims, const std::int32_t* ks)
      : d(dims),
        G(dims.H / dims.KVH),
        hdp(roundUp(dims.hd, NR)),
        Tkp(roundUp(dims.Tk, BK)),
        nkb(ceilDiv(dims.Tk, BK)),
        kvStride(dims.kvHeadMajor ? dims.hd : dims.KVH * dims.hd),
        keyStart(ks) {}
  i64 qOff(i64 b, i64 i, i64 h) const { return ((b * d.Tq + i) * d.H + h) * d.hd; }
  i64 kOff(i64 b, i64 j, i64 kvh) const {
    return d.kvHeadMajor ? ((b * d.KVH + kvh) * d.kvCap + j) * d.hd : ((b * d.kvCap + j) * d.KVH + kvh) * d.hd;
  }
  i64 lseOff(i64 b, i64 h, i64 i) const { return (b * d.H + h) * d.Tq + i; }
  i64 firstKey(i64 b) const { return keyStart ? keyStart[b] : 0; }
  // Absolute position of query i: queries are the last Tq of the Tk positions.
  i64 position(i64 i) const { return d.Tk - d.Tq + i; }
  // Size of a packed [Tkp][hdp] K or V copy.
  i64 packedSize() const { return Tkp * hdp; }
};

// Transposed copy of key block kb: dst[d*BK + jj] = src[key kb*BK + jj][d], zero padded.
void packTransposed(float* __restrict dst, const float* __restrict src, const Geometry& g, i64 b, i64 kvh, i64 kb) {
  const i64 j0 = kb * BK, jn = std::min(BK, g.d.Tk - j0);
  std::fill(dst, dst + g.hdp * BK, 0.0f);
  transposeBlock(dst, BK, src + g.kOff(b, j0, kvh), g.kvStride, jn, g.d.hd);
}

// Row copy of key block kb: dst[jj*hdp + d] = src[key kb*BK + jj][d], zero padded.
void packRows(float* __restrict dst, const float* __restrict src, const Geometry& g, i64 b, i64 kvh, i64 kb) {
  const i64 j0 = kb * BK, jn = std::min(BK, g.d.Tk - j0);
  std::fill(dst, dst + BK * g.hdp, 0.0f);
  for (i64 jj = 0; jj < jn; ++jj) std::copy_n(src + g.kOff(b, j0 + jj, kvh), g.d.hd, dst + jj * g.hdp);
}

// The rows of one block: row r = gi * nq + ii is head kvh*G + gi at query i0 + ii.
struct RowBlock {
  i64 b, kvh, i0, nq, rows, R;
  i64 head(const Geometry& g, i64 r) const { return kvh * g.G + r / nq; }
  i64 query(i64 r) const { return i0 + r % nq; }
};

// Copies per-row data of a block: transposed (dst[d*R + r]) and/or row-major (dst[r*hdp + d]),
// scaled, zero padded. Either destination may be null. The rows of one head are consecutive
// queries, a strided matrix in the source, so the transposed copy goes a register tile at a time.
void packBlockRows(float* __restrict transposed, float* __restrict rowMajor, const float* __restrict src, float scale, const Geometry& g,
                   const RowBlock& rb) {
  const i64 R = rb.R, hd = g.d.hd, hdp = g.hdp;
  if (transposed) {
    for (i64 gi = 0; gi < g.G; ++gi)
      transposeBlock(transposed + gi * rb.nq, R, src + g.qOff(rb.b, rb.i0, rb.kvh * g.G + gi), g.d.H * hd, rb.nq, hd);
    for (i64 c = 0; c < hd; ++c) {
      float* __restrict row = transposed + c * R;
      for (i64 r = 0; r < rb.rows; ++r) row[r] *= scale;
      std::fill(row + rb.rows, row + R, 0.0f);
    }
    std::fill(transposed + hd * R, transposed + hdp * R, 0.0f);
  }
  if (rowMajor) {
    std::fill(rowMajor, rowMajor + R * hdp, 0.0f);
    for (i64 r = 0; r < rb.rows; ++r) {
      const float* row = src + g.qOff(rb.b, rb.query(r), rb.head(g, r));
      for (i64 c = 0; c < hd; ++c) rowMajor[r * hdp + c] = scale * row[c];
    }
  }
}

// Positions of a block's rows as floats (exact below 2^24), -1 for padding rows so that every
// key is masked for them.
void rowPositions(float* pos, const Geometry& g, const RowBlock& rb) {
  for (i64 r = 0; r < rb.R; ++r) pos[r] = r < rb.rows ? static_cast<float>(g.position(rb.query(r))) : -1.0f;
}

// Key blocks a row block can see: [kbFirst, kbLast], empty when kbFirst > kbLast.
void visibleKeyBlocks(const Geometry& g, const RowBlock& rb, i64& kbFirst, i64& kbLast) {
  kbFirst = g.firstKey(rb.b) / BK;
  kbLast = g.position(rb.i0 + rb.nq - 1) / BK;
  if (g.firstKey(rb.b) > g.position(rb.i0 + rb.nq - 1)) kbLast = kbFirst - 1;
}

// True when some (row, key) pair of the block pair is masked (causal or left padding). Padding
// rows need no mask: their Q and dout are zero, so they only produce values that are dropped.
bool needsMask(const Geometry& g, const RowBlock& rb, i64 j0, i64 jn) {
  return j0 < g.firstKey(rb.b) || j0 + jn - 1 > g.position(rb.i0);
}

// ---------------------------------------------------------------- forward, blocked

struct ForwardBuffers {
  float *QT, *ST, *O, *m, *l, *alpha, *pos, *lastNR, *lastMR;
  static i64 size(const Geometry& g, i64 R) { return 2 * g.hdp * R + BK * R + 6 * R; }
  ForwardBuffers(float* p, const Geometry& g, i64 R) {
    QT = p;
    ST = QT + g.hdp * R;
    O = ST + BK * R;
    m = O + R * g.hdp;
    l = m + R;
    alpha = l + R;
    pos = alpha + R;
    lastNR = pos + R;
    lastMR = lastNR + R;
  }
};

// last[s] = the last key that rows [s * width, (s + 1) * width) of a block see (-1: padding rows only).
void sliverLastKeys(float* last, const float* pos, i64 R, i64 width) {
  for (i64 s = 0; s < R / width; ++s) last[s] = *std::max_element(pos + s * width, pos + (s + 1) * width);
}

void forwardBlock(float* out, float* lse, const float* q, const float* Kt, const float* Vr, const Geometry& g, const RowBlock& rb,
                  ForwardBuffers& w) {
  const i64 R = rb.R, hdp = g.hdp;
  const float ks = static_cast<float>(g.firstKey(rb.b));
  packBlockRows(w.QT, nullptr, q, g.d.scale, g, rb);
  rowPositions(w.pos, g, rb);
  sliverLastKeys(w.lastNR, w.pos, R, NR);
  sliverLastKeys(w.lastMR, w.pos, R, MR);
  std::fill(w.O, w.O + R * hdp, 0.0f);
  std::fill(w.m, w.m + R, NEG_INF);
  std::fill(w.l, w.l + R, 0.0f);

  i64 kbFirst, kbLast;
  visibleKeyBlocks(g, rb, kbFirst, kbLast);
  for (i64 kb = kbFirst; kb <= kbLast; ++kb) {
    const i64 j0 = kb * BK, jn = std::min(BK, g.d.Tk - j0);
    const bool masked = needsMask(g, rb, j0, jn);
    const float* KtBlock = Kt + kb * hdp * BK;
    float* __restrict ST = w.ST;
    // On the diagonal a tile of keys all past its rows' positions is all masked: -inf, not computed.
    for (i64 sa = 0; sa * MR < jn; ++sa)
      for (i64 sb = 0; sb < R / NR; ++sb) {
        float* st = ST + sa * MR * R + sb * NR;
        if (masked && static_cast<float>(j0 + sa * MR) > w.lastNR[sb])
          for (i64 i = 0; i < MR; ++i) std::fill(st + i * R, st + i * R + NR, NEG_INF);
        else tile<false>(hdp, KtBlock + sa * MR, BK, w.QT + sb * NR, R, st, R, MR, NR);
      }

    if (masked) {
      for (i64 jj = 0; jj < jn; ++jj) {
        const float key = static_cast<float>(j0 + jj);
        float* srow = ST + jj * R;
        for (i64 r = 0; r < R; ++r) srow[r] = (key > w.pos[r] || key < ks) ? NEG_INF : srow[r];
      }
    }
    // Online softmax down the key axis, vectorised across rows. A row with nothing visible yet
    // keeps m = -inf; using 0 as its reference avoids (-inf) - (-inf).
    float* __restrict m = w.m;
    float* __restrict l = w.l;
    float* __restrict alpha = w.alpha;  // holds the new max, then the rescale of the old sum
    std::copy_n(m, R, alpha);
    for (i64 jj = 0; jj < jn; ++jj) {
      const float* srow = ST + jj * R;
      for (i64 r = 0; r < R; ++r) alpha[r] = srow[r] > alpha[r] ? srow[r] : alpha[r];
    }
    for (i64 r = 0; r < R; ++r) {
      const float mNew = alpha[r];
      alpha[r] = expf_vec(m[r] - (mNew == NEG_INF ? 0.0f : mNew));
      l[r] *= alpha[r];
      m[r] = mNew;
    }
    for (i64 jj = 0; jj < jn; ++jj) {
      float* __restrict srow = ST + jj * R;
      for (i64 r = 0; r < R; ++r) {
        const float p = expf_vec(srow[r] - (m[r] == NEG_INF ? 0.0f : m[r]));
        srow[r] = p;
        l[r] += p;
      }
    }
    for (i64 r = 0; r < R; ++r) {
      float* __restrict orow = w.O + r * hdp;
      for (i64 c = 0; c < hdp; ++c) orow[c] *= alpha[r];
    }
    // Each sliver of rows sums P V over the keys it sees: the rest of P is exactly 0 (the diagonal).
    const float* VrBlock = Vr + j0 * hdp;
    for (i64 sa = 0; sa < R / MR; ++sa) {
      const i64 depth = masked ? std::clamp<i64>(static_cast<i64>(w.lastMR[sa]) - j0 + 1, 0, jn) : jn;
      for (i64 sb = 0; depth > 0 && sb < hdp / NR; ++sb)
        tile<true>(depth, ST + sa * MR, R, VrBlock + sb * NR, hdp, w.O + sa * MR * hdp + sb * NR, hdp, MR, NR);
    }
  }

  for (i64 r = 0; r < rb.rows; ++r) {
    const i64 h = rb.head(g, r), i = rb.query(r);
    float* dst = out + g.qOff(rb.b, i, h);
    const float l = w.l[r];
    const float inv = l > 0.0f ? 1.0f / l : 0.0f;
    const float* orow = w.O + r * hdp;
    for (i64 c = 0; c < g.d.hd; ++c) dst[c] = orow[c] * inv;
    lse[g.lseOff(rb.b, h, i)] = l > 0.0f ? w.m[r] + std::log(l) : NEG_INF;
  }
}

i64 queriesPerBlock(const Geometry& g) { return std::max<i64>(1, std::min(g.d.Tq, ROWS_TARGET / g.G)); }

void forwardBlocked(float* out, float* lse, const float* q, const float* k, const float* v, const Geometry& g) {
  const AttentionDims& d = g.d;
  const i64 nq = queriesPerBlock(g), nqb = ceilDiv(d.Tq, nq), R = roundUp(g.G * nq, LANE);
  const int nt = omp_get_max_threads();
  const i64 perThread = ForwardBuffers::size(g, R);
  const i64 packed = 2 * d.B * d.KVH * g.packedSize();  // Kt and V rows of every (b, kv head)
  static thread_local Scratch scratch;
  float* const base = scratch.get(packed + nt * perThread);
  auto KtOf = [&](i64 b, i64 kvh) { return base + (b * d.KVH + kvh) * 2 * g.packedSize(); };
  auto VrOf = [&](i64 b, i64 kvh) { return KtOf(b, kvh) + g.packedSize(); };

#pragma omp parallel num_threads(nt)
  {
#pragma omp for schedule(static)
    for (i64 t = 0; t < d.B * d.KVH * g.nkb; ++t) {
      const i64 kb = t % g.nkb, bk = t / g.nkb, b = bk / d.KVH, kvh = bk % d.KVH;
      packTransposed(KtOf(b, kvh) + kb * g.hdp * BK, k, g, b, kvh, kb);
      packRows(VrOf(b, kvh) + kb * BK * g.hdp, v, g, b, kvh, kb);
    }
    ForwardBuffers w(base + packed + omp_get_thread_num() * perThread, g, R);
    // Later query blocks see more keys: hand them out first so the tail of the schedule is short.
#pragma omp for schedule(dynamic, 1)
    for (i64 t = 0; t < d.B * d.KVH * nqb; ++t) {
      const i64 qb = nqb - 1 - t / (d.B * d.KVH), bk = t % (d.B * d.KVH), b = bk / d.KVH, kvh = bk % d.KVH;
      const i64 i0 = qb * nq, n = std::min(nq, d.Tq - i0);
      const RowBlock rb{b, kvh, i0, n, g.G * n, R};
      forwardBlock(out, lse, q, KtOf(b, kvh), VrOf(b, kvh), g, rb, w);
    }
  }
}

// ---------------------------------------------------------------- forward, per row (decoding)

// Run by every thread of the calling team, each with its own scratch; rows are shared out.
void forwardRows(float* out, float* lse, const float* q, const float* k, const float* v, const Geometry& g) {
  const AttentionDims& d = g.d;
  static thread_local Scratch scratch;
  float* const p = scratch.get(d.Tk + roundUp(d.hd, 16));
  float* const acc = p + d.Tk;
#pragma omp for schedule(static)
  for (i64 t = 0; t < d.B * d.H * d.Tq; ++t) {
    const i64 i = t % d.Tq, bh = t / d.Tq, b = bh / d.H, h = bh % d.H, kvh = h / g.G;
    const i64 lo = g.firstKey(b), hi = g.position(i);
    const float* qrow = q + g.qOff(b, i, h);
    float* dst = out + g.qOff(b, i, h);
    if (lo > hi) {
      std::fill(dst, dst + d.hd, 0.0f);
      lse[g.lseOff(b, h, i)] = NEG_INF;
      continue;
    }
    float mx = NEG_INF;
    for (i64 j = lo; j <= hi; ++j) {
      const float* krow = k + g.kOff(b, j, kvh);
      float s = 0.0f;
#pragma omp simd reduction(+ : s)
      for (i64 c = 0; c < d.hd; ++c) s += qrow[c] * krow[c];
      p[j - lo] = s * d.scale;
      mx = std::max(mx, p[j - lo]);
    }
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (i64 j = 0; j <= hi - lo; ++j) {
      p[j] = expf_vec(p[j] - mx);
      sum += p[j];
    }
    std::fill(acc, acc + d.hd, 0.0f);
    for (i64 j = lo; j <= hi; ++j) {
      const float* vrow = v + g.kOff(b, j, kvh);
      const float pj = p[j - lo];
      for (i64 c = 0; c < d.hd; ++c) acc[c] += pj * vrow[c];
    }
    const float inv = 1.0f / sum;
    for (i64 c = 0; c < d.hd; ++c) dst[c] = acc[c] * inv;
    lse[g.lseOff(b, h, i)] = mx + std::log(sum);
  }
}

// ---------------------------------------------------------------- backward

struct BackwardBuffers {
  float *Kt, *Vt, *Kr;        // this task's K and V: transposed key blocks, K rows
  float *QT, *dOT, *Qr, *dOr;  // this row block's Q (scaled, transposed), dout, Q and dout rows
  float *S, *dP, *dST, *dQ;    // S/P and dP/dS are [R][BK], dST [BK][R], dQ accumulator [R][hdp]
  float *lse, *D, *pos;
  static i64 size(const Geometry& g, i64 R) { return 3 * g.packedSize() + 5 * g.hdp * R + 3 * BK * R + 3 * R; }
  BackwardBuffers(float* p, const Geometry& g, i64 R) {
    Kt = p;
    Vt = Kt + g.packedSize();
    Kr = Vt + g.packedSize();
    QT = Kr + g.packedSize();
    dOT = QT + g.hdp * R;
    Qr = dOT + g.hdp * R;
    dOr = Qr + g.hdp * R;
    S = dOr + g.hdp * R;
    dP = S + BK * R;
    dST = dP + BK * R;
    dQ = dST + BK * R;
    lse = dQ + g.hdp * R;
    D = lse + R;
    pos = D + R;
  }
};

// dq, dk, dv += gradients through one row block against every key block it sees. dk/dv rows of
// (b, kvh) and the dq rows of the block belong to the calling task alone.
void backwardBlock(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* out, const float* lse,
                   const Geometry& g, const RowBlock& rb, BackwardBuffers& w) {
  const i64 R = rb.R, hdp = g.hdp, hd = g.d.hd, ldkv = g.kvStride;
  const float ks = static_cast<float>(g.firstKey(rb.b)), scale = g.d.scale;
  packBlockRows(w.QT, nullptr, q, scale, g, rb);
  packBlockRows(nullptr, w.Qr, q, 1.0f, g, rb);
  packBlockRows(w.dOT, w.dOr, dout, 1.0f, g, rb);
  rowPositions(w.pos, g, rb);
  for (i64 r = 0; r < R; ++r) {
    w.lse[r] = 0.0f;
    w.D[r] = 0.0f;
    if (r >= rb.rows) continue;
    const i64 h = rb.head(g, r), i = rb.query(r);
    w.lse[r] = lse[g.lseOff(rb.b, h, i)];
    const float* orow = out + g.qOff(rb.b, i, h);
    const float* drow = w.dOr + r * hdp;
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (i64 c = 0; c < hd; ++c) s += drow[c] * orow[c];
    w.D[r] = s;
  }
  std::fill(w.dQ, w.dQ + R * hdp, 0.0f);

  i64 kbFirst, kbLast;
  visibleKeyBlocks(g, rb, kbFirst, kbLast);
  for (i64 kb = kbFirst; kb <= kbLast; ++kb) {
    const i64 j0 = kb * BK, jn = std::min(BK, g.d.Tk - j0);
    const float* KtBlock = w.Kt + kb * hdp * BK;
    const float* VtBlock = w.Vt + kb * hdp * BK;
    for (i64 sa = 0; sa < R / MR; ++sa)
      for (i64 sb = 0; sb < BK / NR; ++sb) {
        tile<false>(hdp, w.QT + sa * MR, R, KtBlock + sb * NR, BK, w.S + sa * MR * BK + sb * NR, BK, MR, NR);
        tile<false>(hdp, w.dOT + sa * MR, R, VtBlock + sb * NR, BK, w.dP + sa * MR * BK + sb * NR, BK, MR, NR);
      }
    // P = exp(S - lse) where visible, else 0; dS = scale * P * (dP - D), in place over S and dP.
    // The mask is a select (no branch) so the loop vectorises; it also clears the keys past jn.
    for (i64 r = 0; r < R; ++r) {
      float* __restrict prow = w.S + r * BK;
      float* __restrict dsrow = w.dP + r * BK;
      const float lr = w.lse[r], Dr = w.D[r], last = std::min(w.pos[r], static_cast<float>(j0 + jn - 1));
      for (i64 jj = 0; jj < BK; ++jj) {
        const float key = static_cast<float>(j0 + jj);
        const float p = (key <= last) & (key >= ks) ? expf_vec(prow[jj] - lr) : 0.0f;
        prow[jj] = p;
        dsrow[jj] = scale * p * (dsrow[jj] - Dr);
      }
    }
    for (i64 sa = 0; sa * MR < jn; ++sa) {
      const int mr = static_cast<int>(std::min<i64>(MR, jn - sa * MR));
      const i64 kOff = g.kOff(rb.b, j0 + sa * MR, rb.kvh);
      for (i64 sb = 0; sb < hdp / NR; ++sb) {
        const int nr = static_cast<int>(std::min<i64>(NR, hd - sb * NR));
        tile<true>(rb.rows, w.S + sa * MR, BK, w.dOr + sb * NR, hdp, dv + kOff + sb * NR, ldkv, mr, nr);
        tile<true>(rb.rows, w.dP + sa * MR, BK, w.Qr + sb * NR, hdp, dk + kOff + sb * NR, ldkv, mr, nr);
      }
    }
    for (i64 r = 0; r < R; ++r)
      for (i64 jj = 0; jj < BK; ++jj) w.dST[jj * R + r] = w.dP[r * BK + jj];
    const float* KrBlock = w.Kr + j0 * hdp;
    for (i64 sa = 0; sa < R / MR; ++sa)
      for (i64 sb = 0; sb < hdp / NR; ++sb)
        tile<true>(jn, w.dST + sa * MR, R, KrBlock + sb * NR, hdp, w.dQ + sa * MR * hdp + sb * NR, hdp, MR, NR);
  }

  for (i64 r = 0; r < rb.rows; ++r) {
    float* dst = dq + g.qOff(rb.b, rb.query(r), rb.head(g, r));
    const float* src = w.dQ + r * hdp;
    for (i64 c = 0; c < hd; ++c) dst[c] += src[c];
  }
}

}  // namespace

void attentionForward(float* out, float* lse, const float* q, const float* k, const float* v, const AttentionDims& d,
                      const std::int32_t* keyStart) {
  const Geometry g(d, keyStart);
  if (g.G * d.Tq > ROW_PATH_MAX_ROWS) return forwardBlocked(out, lse, q, k, v, g);
#pragma omp parallel
  forwardRows(out, lse, q, k, v, g);
}

void attentionForwardTeam(float* out, float* lse, const float* q, const float* k, const float* v, const AttentionDims& d,
                          const std::int32_t* keyStart) {
  const Geometry g(d, keyStart);
  if (g.G * d.Tq <= ROW_PATH_MAX_ROWS) return forwardRows(out, lse, q, k, v, g);
#pragma omp single
  forwardBlocked(out, lse, q, k, v, g);  // nested, so on one thread: only a model with over 16 query heads per kv head
}

void attentionBackward(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k, const float* v,
                       const float* out, const float* lse, const AttentionDims& d, const std::int32_t* keyStart) {
  const Geometry g(d, keyStart);
  const i64 nq = queriesPerBlock(g), nqb = ceilDiv(d.Tq, nq), R = roundUp(g.G * nq, LANE);
  const int nt = omp_get_max_threads();
  const i64 perThread = BackwardBuffers::size(g, R);
  static thread_local Scratch scratch;
  float* const base = scratch.get(nt * perThread);
#pragma omp parallel num_threads(nt)
  {
    BackwardBuffers w(base + omp_get_thread_num() * perThread, g, R);
#pragma omp for schedule(dynamic, 1)
    for (i64 t = 0; t < d.B * d.KVH; ++t) {
      const i64 b = t / d.KVH, kvh = t % d.KVH;
      for (i64 kb = 0; kb < g.nkb; ++kb) {
        packTransposed(w.Kt + kb * g.hdp * BK, k, g, b, kvh, kb);
        packTransposed(w.Vt + kb * g.hdp * BK, v, g, b, kvh, kb);
        packRows(w.Kr + kb * BK * g.hdp, k, g, b, kvh, kb);
      }
      for (i64 qb = 0; qb < nqb; ++qb) {
        const i64 i0 = qb * nq, n = std::min(nq, d.Tq - i0);
        const RowBlock rb{b, kvh, i0, n, g.G * n, R};
        backwardBlock(dq, dk, dv, dout, q, out, lse, g, rb, w);
      }
    }
  }
}

}  // namespace chimed
