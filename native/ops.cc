// Row-wise and elementwise kernels: embedding, RMSNorm, RoPE, bias, column slices, row
// normalisation, SwiGLU, softmax cross-entropy, AdamW and the small vector ops. All are memory bound, so the aim is one vectorised pass with
// OpenMP over rows (or over columns where rows would have to be reduced, which keeps those
// reductions in a fixed order for any thread count).
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels.h"
#include "simd.h"

namespace chimed {
namespace {

// Below this many elements a parallel region costs more than it saves.
constexpr i64 PARALLEL_MIN = 1 << 15;

// Splits [0, n) into one contiguous range per thread, 16-aligned so that threads do not share
// cache lines. Used by reductions over rows: each column is owned by one thread, which adds
// the rows in order, so the result does not depend on the thread count.
void columnRange(i64 n, i64& begin, i64& end) {
  const i64 nt = omp_get_num_threads(), t = omp_get_thread_num();
  const i64 chunk = roundUp(ceilDiv(n, nt), 16);
  begin = std::min(n, t * chunk);
  end = std::min(n, begin + chunk);
}

// scale * cos/sin of pos * invFreq[i], computed in double and rounded once, cached per thread for
// positions [0, size) because the same positions and frequencies recur in every layer and step.
// The frequencies (plain, linear, NTK, YaRN or Llama-3 RoPE) come from the caller; the table is
// rebuilt when they change.
class RopeTable {
 public:
  // Returns false for positions the table does not cover (negative, or beyond its size limit);
  // callers then use angles() directly.
  bool ensure(const std::int32_t* pos, i64 rows, i64 half, const double* invFreq, float scale) {
    const i64 limit = MAX_ENTRIES / half;
    i64 lo = 0, hi = -1;
    for (i64 r = 0; r < rows; ++r) {
      lo = std::min<i64>(lo, pos[r]);
      hi = std::max<i64>(hi, pos[r]);
    }
    if (lo < 0 || hi >= limit) return false;
    if (half != static_cast<i64>(invFreq_.size()) || scale != scale_ || !std::equal(invFreq, invFreq + half, invFreq_.begin())) {
      invFreq_.assign(invFreq, invFreq + half);
      scale_ = scale;
      size_ = 0;
    }
    if (hi >= size_) {
      const i64 size = std::min(limit, std::max<i64>(hi + 1, 2 * size_));
      cos_.resize(size * half);
      sin_.resize(size * half);
      for (i64 p = size_; p < size; ++p) angles(p, half, invFreq, scale, &cos_[p * half], &sin_[p * half]);
      size_ = size;
    }
    return true;
  }
  const float* cos(std::int32_t p) const { return &cos_[p * invFreq_.size()]; }
  const float* sin(std::int32_t p) const { return &sin_[p * invFreq_.size()]; }

  static void angles(i64 p, i64 half, const double* invFreq, float scale, float* c, float* s) {
    for (i64 i = 0; i < half; ++i) {
      const double a = static_cast<double>(p) * invFreq[i];
      c[i] = static_cast<float>(scale * std::cos(a));
      s[i] = static_cast<float>(scale * std::sin(a));
    }
  }

 private:
  static constexpr i64 MAX_ENTRIES = 1 << 22;  // per table: 16 MiB each for cos and sin
  i64 size_ = 0;
  double scale_ = 0;
  std::vector<double> invFreq_;
  std::vector<float> cos_, sin_;
};

// The calling thread's table, or null when it cannot cover these positions.
const RopeTable* ropeTable(const std::int32_t* pos, i64 rows, i64 half, const double* invFreq, float scale) {
  static thread_local RopeTable table;
  return table.ensure(pos, rows, half, invFreq, scale) ? &table : nullptr;
}

// Applies fn(row, cos, sin) to every row of `heads` heads, cos/sin of length hd/2 for that
// row's position.
template <typename Fn>
void forEachRopeRow(const std::int32_t* pos, i64 rows, i64 heads, i64 hd, const double* invFreq, float scale, Fn fn) {
  const i64 half = hd / 2;
  const RopeTable* table = ropeTable(pos, rows, half, invFreq, scale);
  const bool cached = table != nullptr;
  std::vector<float> scratch(cached ? 0 : omp_get_max_threads() * hd);
  forRows(rows, rows * heads * hd > PARALLEL_MIN, [&](i64 r) {
    if (cached) {
      fn(r, table->cos(pos[r]), table->sin(pos[r]));
    } else {
      float* c = &scratch[omp_get_thread_num() * hd];
      RopeTable::angles(pos[r], half, invFreq, scale, c, c + half);
      fn(r, c, c + half);
    }
  });
}

}  // namespace

void embeddingForward(float* out, const float* table, const std::int32_t* ids, i64 n, i64 dim) {
#pragma omp parallel for schedule(static) if (n * dim > PARALLEL_MIN)
  for (i64 i = 0; i < n; ++i) std::copy_n(table + static_cast<i64>(ids[i]) * dim, dim, out + i * dim);
}

void embeddingBackward(float* dtable, const float* dout, const std::int32_t* ids, i64 n, i64 dim) {
#pragma omp parallel if (n * dim > PARALLEL_MIN)
  {
    i64 c0, c1;
    columnRange(dim, c0, c1);
    for (i64 i = 0; i < n; ++i) {
      float* __restrict dst = dtable + static_cast<i64>(ids[i]) * dim;
      const float* __restrict src = dout + i * dim;
      for (i64 c = c0; c < c1; ++c) dst[c] += src[c];
    }
  }
}

namespace {

// out = in * rstd * w per row, rstd = 1 / sqrt(mean(in^2) + eps), where in is x, or with ADD
// the residual sum x + y, stored to sum on the way.
template <bool ADD>
void rmsnormRows(float* out, float* rstd, float* sum, const float* x, const float* y, const float* w, i64 rows, i64 dim, float eps) {
  forRows(rows, rows * dim > PARALLEL_MIN, [&](i64 r) {
    const float* xr = x + r * dim;
    float* in = ADD ? sum + r * dim : nullptr;
    float ss = 0.0f;
    if (ADD) {
      const float* yr = y + r * dim;
#pragma omp simd reduction(+ : ss)
      for (i64 c = 0; c < dim; ++c) {
        in[c] = xr[c] + yr[c];
        ss += in[c] * in[c];
      }
    } else {
#pragma omp simd reduction(+ : ss)
      for (i64 c = 0; c < dim; ++c) ss += xr[c] * xr[c];
    }
    const float* src = ADD ? in : xr;
    const float s = 1.0f / std::sqrt(ss / static_cast<float>(dim) + eps);
    rstd[r] = s;
    float* o = out + r * dim;
#pragma omp simd
    for (i64 c = 0; c < dim; ++c) o[c] = src[c] * s * w[c];
  });
}

}  // namespace

void rmsnormForward(float* out, float* rstd, const float* x, const float* w, i64 rows, i64 dim, float eps) {
  rmsnormRows<false>(out, rstd, nullptr, x, nullptr, w, rows, dim, eps);
}

namespace {

// dx_c += rstd * w_c * dout_c - x_c * rstd^3 * sum_j(dout_j w_j x_j) / dim, and dw. With RESIDUAL
// the norm's input was sum = x + y (addRmsnormForward): its gradient g = dsum + that dx goes to
// both dx and dy.
template <bool RESIDUAL>
void rmsnormBackwardRows(float* dx, float* dy, float* dw, const float* dsum, const float* dout, const float* x, const float* w,
                         const float* rstd, i64 rows, i64 dim) {
  std::vector<double> dwAcc(dim, 0.0);
#pragma omp parallel if (rows * dim > PARALLEL_MIN)
  {
#pragma omp for schedule(static) nowait
    for (i64 r = 0; r < rows; ++r) {
      const float* __restrict xr = x + r * dim;
      const float* __restrict gr = dout + r * dim;
      float* __restrict dxr = dx + r * dim;
      float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
      for (i64 c = 0; c < dim; ++c) dot += gr[c] * w[c] * xr[c];
      const float s = rstd[r], k = s * s * s * dot / static_cast<float>(dim);
      if (RESIDUAL) {
        const float* __restrict sr = dsum ? dsum + r * dim : nullptr;
        float* __restrict dyr = dy + r * dim;
#pragma omp simd
        for (i64 c = 0; c < dim; ++c) {
          const float g = (sr ? sr[c] : 0.0f) + s * w[c] * gr[c] - xr[c] * k;
          dxr[c] += g;
          dyr[c] += g;
        }
      } else {
#pragma omp simd
        for (i64 c = 0; c < dim; ++c) dxr[c] += s * w[c] * gr[c] - xr[c] * k;
      }
    }
    // dw_c += sum_r dout_rc x_rc rstd_r, each thread owning a column range (deterministic).
    i64 c0, c1;
    columnRange(dim, c0, c1);
    double* __restrict acc = dwAcc.data();
    for (i64 r = 0; r < rows; ++r) {
      const float* __restrict xr = x + r * dim;
      const float* __restrict gr = dout + r * dim;
      const double s = rstd[r];
      for (i64 c = c0; c < c1; ++c) acc[c] += static_cast<double>(gr[c] * xr[c]) * s;
    }
    for (i64 c = c0; c < c1; ++c) dw[c] += static_cast<float>(acc[c]);
  }
}

}  // namespace

void rmsnormBackward(float* dx, float* dw, const float* dout, const float* x, const float* w, const float* rstd, i64 rows, i64 dim) {
  rmsnormBackwardRows<false>(dx, nullptr, dw, nullptr, dout, x, w, rstd, rows, dim);
}

void addRmsnormForward(float* sum, float* out, float* rstd, const float* x, const float* y, const float* w, i64 rows, i64 dim, float eps) {
  rmsnormRows<true>(out, rstd, sum, x, y, w, rows, dim, eps);
}

void addRmsnormBackward(float* dx, float* dy, float* dw, const float* dsum, const float* dout, const float* sum, const float* w,
                        const float* rstd, i64 rows, i64 dim) {
  rmsnormBackwardRows<true>(dx, dy, dw, dsum, dout, sum, w, rstd, rows, dim);
}

namespace {

// One head of RoPE: out = R(c, s) x over the two halves. Each lane reads its pair before
// writing it, so out == x is safe.
inline void rotate(float* out, const float* x, const float* c, const float* s, i64 half) {
  const float* xa = x;
  const float* xb = x + half;
  float* oa = out;
  float* ob = out + half;
#pragma omp simd
  for (i64 i = 0; i < half; ++i) {
    const float a = xa[i], b = xb[i];
    oa[i] = a * c[i] - b * s[i];
    ob[i] = b * c[i] + a * s[i];
  }
}

// dx += R(c, s)^T dout for one head.
inline void rotateBack(float* __restrict dx, const float* __restrict dout, const float* c, const float* s, i64 half) {
  const float* __restrict ga = dout;
  const float* __restrict gb = dout + half;
  float* __restrict da = dx;
  float* __restrict db = dx + half;
#pragma omp simd
  for (i64 i = 0; i < half; ++i) {
    da[i] += ga[i] * c[i] + gb[i] * s[i];
    db[i] += gb[i] * c[i] - ga[i] * s[i];
  }
}

}  // namespace

void ropeForward(float* out, const float* x, const std::int32_t* pos, i64 rows, i64 heads, i64 hd, const double* invFreq, float scale) {
  forEachRopeRow(pos, rows, heads, hd, invFreq, scale, [&](i64 r, const float* c, const float* s) {
    for (i64 h = 0; h < heads; ++h) rotate(out + (r * heads + h) * hd, x + (r * heads + h) * hd, c, s, hd / 2);
  });
}

void ropeBackward(float* dx, const float* dout, const std::int32_t* pos, i64 rows, i64 heads, i64 hd, const double* invFreq, float scale) {
  forEachRopeRow(pos, rows, heads, hd, invFreq, scale, [&](i64 r, const float* c, const float* s) {
    for (i64 h = 0; h < heads; ++h) rotateBack(dx + (r * heads + h) * hd, dout + (r * heads + h) * hd, c, s, hd / 2);
  });
}

void qkvRopeForward(float* q, float* k, float* v, const float* qkv, const std::int32_t* pos, i64 rows, i64 H, i64 KVH, i64 hd,
                    const double* invFreq, float scale) {
  const i64 qD = H * hd, kvD = KVH * hd, W = qD + 2 * kvD;
  forEachRopeRow(pos, rows, H + KVH, hd, invFreq, scale, [&](i64 r, const float* c, const float* s) {
    const float* src = qkv + r * W;
    for (i64 h = 0; h < H; ++h) rotate(q + r * qD + h * hd, src + h * hd, c, s, hd / 2);
    for (i64 h = 0; h < KVH; ++h) rotate(k + r * kvD + h * hd, src + qD + h * hd, c, s, hd / 2);
    std::copy_n(src + qD + kvD, kvD, v + r * kvD);
  });
}

void qkvRopeBackward(float* dqkv, const float* dq, const float* dk, const float* dv, const std::int32_t* pos, i64 rows, i64 H, i64 KVH,
                     i64 hd, const double* invFreq, float scale) {
  const i64 qD = H * hd, kvD = KVH * hd, W = qD + 2 * kvD;
  forEachRopeRow(pos, rows, H + KVH, hd, invFreq, scale, [&](i64 r, const float* c, const float* s) {
    float* __restrict dst = dqkv + r * W;
    for (i64 h = 0; h < H; ++h) rotateBack(dst + h * hd, dq + r * qD + h * hd, c, s, hd / 2);
    for (i64 h = 0; h < KVH; ++h) rotateBack(dst + qD + h * hd, dk + r * kvD + h * hd, c, s, hd / 2);
    float* __restrict dvr = dst + qD + kvD;
    const float* __restrict g = dv + r * kvD;
#pragma omp simd
    for (i64 i = 0; i < kvD; ++i) dvr[i] += g[i];
  });
}

void biasForward(float* y, const float* b, i64 rows, i64 dim) {
  forRows(rows, rows * dim > PARALLEL_MIN, [&](i64 r) {
    float* __restrict yr = y + r * dim;
#pragma omp simd
    for (i64 c = 0; c < dim; ++c) yr[c] += b[c];
  });
}

void biasBackward(float* db, const float* dy, i64 rows, i64 dim) {
  // db_c += sum_r dy_rc in double, each thread owning a column range (deterministic).
  std::vector<double> acc(dim, 0.0);
#pragma omp parallel if (rows * dim > PARALLEL_MIN)
  {
    i64 c0, c1;
    columnRange(dim, c0, c1);
    double* __restrict a = acc.data();
    for (i64 r = 0; r < rows; ++r) {
      const float* __restrict g = dy + r * dim;
      for (i64 c = c0; c < c1; ++c) a[c] += g[c];
    }
    for (i64 c = c0; c < c1; ++c) db[c] += static_cast<float>(a[c]);
  }
}

void sliceColumnsForward(float* out, const float* x, i64 rows, i64 cols, i64 start, i64 width) {
  forRows(rows, rows * width > PARALLEL_MIN, [&](i64 r) { std::copy_n(x + r * cols + start, width, out + r * width); });
}

void sliceColumnsBackward(float* dx, const float* dout, i64 rows, i64 cols, i64 start, i64 width) {
#pragma omp parallel for schedule(static) if (rows * width > PARALLEL_MIN)
  for (i64 r = 0; r < rows; ++r) {
    float* __restrict d = dx + r * cols + start;
    const float* __restrict g = dout + r * width;
#pragma omp simd
    for (i64 c = 0; c < width; ++c) d[c] += g[c];
  }
}

void normalizeRowsForward(float* out, float* norm, const float* w, i64 rows, i64 dim, float eps) {
#pragma omp parallel for schedule(static) if (rows * dim > PARALLEL_MIN)
  for (i64 r = 0; r < rows; ++r) {
    const float* wr = w + r * dim;
    double ss = 0.0;
#pragma omp simd reduction(+ : ss)
    for (i64 c = 0; c < dim; ++c) ss += static_cast<double>(wr[c]) * wr[c];
    const float n = std::max(static_cast<float>(std::sqrt(ss)), eps);
    norm[r] = n;
    const float inv = 1.0f / n;
    float* o = out + r * dim;
#pragma omp simd
    for (i64 c = 0; c < dim; ++c) o[c] = wr[c] * inv;
  }
}

void normalizeRowsBackward(float* dw, const float* dout, const float* out, const float* norm, i64 rows, i64 dim, float eps) {
#pragma omp parallel for schedule(static) if (rows * dim > PARALLEL_MIN)
  for (i64 r = 0; r < rows; ++r) {
    const float* __restrict o = out + r * dim;
    const float* __restrict g = dout + r * dim;
    float* __restrict d = dw + r * dim;
    const float inv = 1.0f / norm[r];
    // a row shorter than eps was divided by the constant eps: no gradient through the norm
    float dot = 0.0f;
    if (norm[r] > eps) {
#pragma omp simd reduction(+ : dot)
      for (i64 c = 0; c < dim; ++c) dot += o[c] * g[c];
    }
#pragma omp simd
    for (i64 c = 0; c < dim; ++c) d[c] += (g[c] - o[c] * dot) * inv;
  }
}

namespace {

// silu(gate) * up over n values, and its gradient (accumulated): the one definition behind the
// flat and the packed (gate | up per row) SwiGLU kernels.
inline void swigluSpan(float* __restrict out, const float* __restrict gate, const float* __restrict up, i64 n) {
#pragma omp simd
  for (i64 i = 0; i < n; ++i) {
    const float g = gate[i];
    out[i] = g / (1.0f + expf_vec(-g)) * up[i];
  }
}

inline void swigluSpanBackward(float* __restrict dgate, float* __restrict dup, const float* __restrict dout, const float* __restrict gate,
                               const float* __restrict up, i64 n) {
#pragma omp simd
  for (i64 i = 0; i < n; ++i) {
    const float g = gate[i], sig = 1.0f / (1.0f + expf_vec(-g));
    dgate[i] += dout[i] * up[i] * sig * (1.0f + g * (1.0f - sig));
    dup[i] += dout[i] * g * sig;
  }
}

// Flat kernels run on chunks of this many values, one per OpenMP iteration.
constexpr i64 SPAN = 4096;

}  // namespace

void swigluForward(float* out, const float* gate, const float* up, i64 n) {
  forRows(ceilDiv(n, SPAN), n > PARALLEL_MIN, [&](i64 s) {
    const i64 i = s * SPAN;
    swigluSpan(out + i, gate + i, up + i, std::min(SPAN, n - i));
  });
}

void swigluBackward(float* dgate, float* dup, const float* dout, const float* gate, const float* up, i64 n) {
#pragma omp parallel for schedule(static) if (n > PARALLEL_MIN)
  for (i64 i = 0; i < n; i += SPAN) swigluSpanBackward(dgate + i, dup + i, dout + i, gate + i, up + i, std::min(SPAN, n - i));
}

void swigluPackedForward(float* out, const float* gu, i64 rows, i64 width) {
  forRows(rows, rows * width > PARALLEL_MIN, [&](i64 r) { swigluSpan(out + r * width, gu + 2 * r * width, gu + (2 * r + 1) * width, width); });
}

void swigluPackedBackward(float* dgu, const float* dout, const float* gu, i64 rows, i64 width) {
#pragma omp parallel for schedule(static) if (rows * width > PARALLEL_MIN)
  for (i64 r = 0; r < rows; ++r)
    swigluSpanBackward(dgu + 2 * r * width, dgu + (2 * r + 1) * width, dout + r * width, gu + 2 * r * width, gu + (2 * r + 1) * width, width);
}

// The normaliser sums up to ~10^5 terms: in float blocks of CE_BLOCK (each lane adds 16 terms,
// so a block is exact to a few float ulps), the block sums in double. A plain double reduction
// does not vectorise here (gcc gives up on the conversion inside the masked exp), and ran ~7x
// slower than the backward pass over the same logits.
constexpr i64 CE_BLOCK = 256;

// One column chunk [start, start + cols) of each row's logits (the caller walks the vocabulary a
// chunk at a time): its log-sum-exp is merged into the row's running lse in double.
void crossEntropyForward(float* lse, float* tlogit, const float* logits, const std::int32_t* targets, i64 rows, i64 start, i64 cols) {
#pragma omp parallel for schedule(static) if (rows * cols > PARALLEL_MIN)
  for (i64 r = 0; r < rows; ++r) {
    const float* x = logits + r * cols;
    float mx = -std::numeric_limits<float>::infinity();
#pragma omp simd reduction(max : mx)
    for (i64 j = 0; j < cols; ++j) mx = x[j] > mx ? x[j] : mx;
    double sum = 0.0;
    for (i64 j0 = 0; j0 < cols; j0 += CE_BLOCK) {
      const i64 n = std::min(CE_BLOCK, cols - j0);
      const float* xb = x + j0;
      float s = 0.0f;
#pragma omp simd reduction(+ : s)
      for (i64 j = 0; j < n; ++j) s += expf_vec(xb[j] - mx);
      sum += s;
    }
    const double chunk = mx + std::log(sum), prev = lse[r];
    const double hi = std::max(prev, chunk), lo = std::min(prev, chunk);
    lse[r] = static_cast<float>(lo == -std::numeric_limits<double>::infinity() ? hi : hi + std::log1p(std::exp(lo - hi)));
    const i64 t = targets[r];
    if (t >= start && t < start + cols) tlogit[r] = x[t - start];
  }
}

void crossEntropyBackward(float* dlogits, const float* logits, const float* lse, const std::int32_t* targets, const float* dlogp, i64 rows,
                          i64 start, i64 cols) {
#pragma omp parallel for schedule(static) if (rows * cols > PARALLEL_MIN)
  for (i64 r = 0; r < rows; ++r) {
    const i64 t = targets[r];
    float* d = dlogits + r * cols;
    if (t < 0) {
      std::fill(d, d + cols, 0.0f);
      continue;
    }
    const float* x = logits + r * cols;  // may be d itself: each element is read before it is written
    const float g = dlogp[r], l = lse[r];
#pragma omp simd
    for (i64 j = 0; j < cols; ++j) d[j] = -g * expf_vec(x[j] - l);
    if (t >= start && t < start + cols) d[t - start] += g;
  }
}

// Vectorises only because binding.gyp passes -fno-math-errno (sqrtf may otherwise set errno);
// without it this loop runs about 6x slower.
void adamw(float* p, const float* g, float* m, float* v, i64 n, double lr, double beta1, double beta2, double eps, double weightDecay,
           double step, float gradScale) {
  const float b1 = static_cast<float>(beta1), b2 = static_cast<float>(beta2);
  const float stepSize = static_cast<float>(lr / (1.0 - std::pow(beta1, step)));
  const float invSqrtBc2 = static_cast<float>(1.0 / std::sqrt(1.0 - std::pow(beta2, step)));
  const float decay = static_cast<float>(1.0 - lr * weightDecay), e = static_cast<float>(eps);
#pragma omp parallel for simd schedule(static) if (n > PARALLEL_MIN)
  for (i64 i = 0; i < n; ++i) {
    const float gi = g[i] * gradScale;
    const float mi = b1 * m[i] + (1.0f - b1) * gi;
    const float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    p[i] = p[i] * decay - stepSize * mi / (std::sqrt(vi) * invSqrtBc2 + e);
  }
}

double sumSquares(const float* x, i64 n) {
  // Fixed-size chunks, each summed in a fixed lane order and then added in chunk order: the
  // result is identical for any thread count.
  constexpr i64 CHUNK = 1 << 14;
  const i64 chunks = ceilDiv(n, CHUNK);
  std::vector<double> partial(chunks);
#pragma omp parallel for schedule(static) if (n > PARALLEL_MIN)
  for (i64 c = 0; c < chunks; ++c) {
    const float* xc = x + c * CHUNK;
    const i64 len = std::min(CHUNK, n - c * CHUNK);
    double s = 0.0;
#pragma omp simd reduction(+ : s)
    for (i64 i = 0; i < len; ++i) s += static_cast<double>(xc[i]) * xc[i];
    partial[c] = s;
  }
  double total = 0.0;
  for (double s : partial) total += s;
  return total;
}

void axpy(float* y, const float* x, i64 n, float alpha) {
#pragma omp parallel for simd schedule(static) if (n > PARALLEL_MIN)
  for (i64 i = 0; i < n; ++i) y[i] += alpha * x[i];
}

void add(float* out, const float* a, const float* b, i64 n) {
  forRows(ceilDiv(n, SPAN), n > PARALLEL_MIN, [&](i64 s) {
    const i64 end = std::min(n, (s + 1) * SPAN);
#pragma omp simd
    for (i64 i = s * SPAN; i < end; ++i) out[i] = a[i] + b[i];
  });
}

}  // namespace chimed
