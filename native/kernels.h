// The native kernels behind src/engine/kernels.ts, on raw pointers. Arguments are already
// validated by addon.cc (lengths, ranges); nothing here throws or allocates per element.
#pragma once
#include <cstddef>
#include <cstdint>

namespace chimed {

using i64 = std::int64_t;

// ---- GEMM (gemm.cc, gemm-dispatch.cc) ----
// C[M,N] = alpha * op(A) op(B) + beta * C, row-major, A is [M,K] ([K,M] if transA),
// B is [K,N] ([N,K] if transB). beta == 0 means C is not read (BLAS convention).
// gemm dispatches each product by its shape class to the built-in blocked GEMM or to
// OpenBLAS, as set by setGemmBackend (the built-in one until told otherwise).
void gemm(bool transA, bool transB, i64 M, i64 N, i64 K, float alpha, const float* A, const float* B, float beta, float* C);
void gemmBuiltin(bool transA, bool transB, i64 M, i64 N, i64 K, float alpha, const float* A, const float* B, float beta, float* C);
// Only when openblasConfig() is not null (the build found cblas.h); otherwise it aborts.
void gemmOpenblas(bool transA, bool transB, i64 M, i64 N, i64 K, float alpha, const float* A, const float* B, float beta, float* C);
// OpenBLAS's build description ("OpenBLAS 0.3.21 DYNAMIC_ARCH ... Haswell"), null without OpenBLAS.
const char* openblasConfig();

// Such a product with B transposed (A [M, K], B [N, K]) for M <= GEMM_FEW_ROWS, by the calling
// OpenMP team: an orphaned omp for, so inside a parallel region B's rows are shared out and
// outside one the calling thread does all. Each output is the same whatever the team.
void gemmFewRowsNTTeam(i64 M, i64 N, i64 K, float alpha, const float* A, const float* B, float beta, float* C);

// Products of at most this many rows (decoding) are bound by reading B: both paths run the same
// unpacked streaming kernel for them, so they belong to no shape class.
constexpr i64 GEMM_FEW_ROWS = 8;
// Shape classes: the transposition (NN, NT, TN, TT) times the size (narrow: N < 64; shallow:
// K < 64; small: M < 64 or under 2^25 flops; large). -1 for at most GEMM_FEW_ROWS rows.
constexpr int GEMM_CLASSES = 16;
int gemmClassOf(bool transA, bool transB, i64 M, i64 N, i64 K);
const char* gemmClassName(int cls);
enum class GemmBackend { Builtin = 0, Openblas = 1 };
void setGemmBackend(int cls, GemmBackend backend);
GemmBackend gemmBackend(int cls);
// Best CPU time (all threads of the process) in seconds of each class's representative products
// on each backend over `rounds` interleaved rounds (after one warm-up round): best[cls * 2 + backend].
void gemmMeasure(int rounds, double* best);

// ---- frozen weights in their stored dtype (frozen.cc) ----
// A weight matrix [rows, cols] as a checkpoint stores it: f32, bf16, f16, or q8_0 (GGUF's
// blocks of 32 along a row: an f16 scale d, then 32 int8 q; value = d * q), little-endian.
enum class WeightDtype { F32 = 0, BF16 = 1, F16 = 2, Q8_0 = 3 };
constexpr i64 Q8_BLOCK = 32;        // values per q8_0 block
constexpr i64 Q8_BLOCK_BYTES = 34;  // bytes per q8_0 block
struct WeightMatrix {
  WeightDtype dtype;
  const std::uint8_t* data;
  i64 rows, cols;
};
// Bytes of a [rows, cols] matrix in dtype, or -1 when q8_0 and cols is not a multiple of 32.
i64 weightBytes(WeightDtype dtype, i64 rows, i64 cols);
// C[M,N] = alpha * A op(W) + beta * C with A [M,K] f32 and W read in its stored dtype, widened
// to f32 tile by tile (accumulation in f32): transW gives op(W) = W^T with W [N, K] (a linear
// layer's forward, y = x W^T), else W is [K, N] (its input gradient, dx = dy W). Activations
// are used as they are, except in decoding over q8_0: with transW, a q8_0 W and at most
// GEMM_FEW_ROWS rows (frozen.ts Q8_0_ACTIVATION_ROWS), A's rows are quantised to q8_0 blocks as
// llama.cpp does and each block's integer products summed exactly (frozen-decode.cc).
void gemmWeight(bool transW, i64 M, i64 N, i64 K, float alpha, const float* A, const WeightMatrix& W, float beta, float* C);
// out[i, :] = W[ids[i], :] widened to f32.
void embeddingWeight(float* out, const WeightMatrix& W, const std::int32_t* ids, i64 n);
// dst = src converted to dstType (rounding to nearest even; q8_0 quantised as llama.cpp's
// quantize_row_q8_0_ref). dst holds weightBytes(dstType, src.rows, src.cols) bytes.
void convertWeight(const WeightMatrix& src, WeightDtype dstType, std::uint8_t* dst);
// Index of the first NaN or infinite value of W (for q8_0: the first value of a block whose
// scale is not finite), or -1.
i64 firstNonFiniteWeight(const WeightMatrix& W);

// ---- attention (attention.cc) ----
// k and v are [B, kvCap, KVH, hd] (a projection's output), or with kvHeadMajor [B, KVH, kvCap, hd]
// (a KV cache: each head's keys contiguous, read as one stream when decoding).
struct AttentionDims {
  i64 B, Tq, Tk, kvCap, H, KVH, hd;
  float scale;
  bool kvHeadMajor;
};
// keyStart may be null (no left padding).
void attentionForward(float* out, float* lse, const float* q, const float* k, const float* v, const AttentionDims& d, const std::int32_t* keyStart);
// The same by the calling OpenMP team (as gemmFewRowsNTTeam), for a few query rows (decoding).
void attentionForwardTeam(float* out, float* lse, const float* q, const float* k, const float* v, const AttentionDims& d,
                          const std::int32_t* keyStart);
void attentionBackward(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k, const float* v,
                       const float* out, const float* lse, const AttentionDims& d, const std::int32_t* keyStart);

// ---- one decoding step (decode.cc) ----
// A linear module: y = x W^T (+ bias, which may be null).
struct DecodeLinear {
  WeightMatrix W;
  const float* bias;
};
// One decoder layer as src/model/llama.ts runs it; proj holds q|k|v packed (nQkv 1) or q, k, v
// (3), then o; mlp holds gate|up packed (nGateUp 1) or gate, up (2), then down.
struct DecodeLayer {
  const float *inputNorm, *postNorm;
  const float *qNorm, *kNorm;  // null unless the family has per-head q/k norms
  DecodeLinear qkv[3], o, gateUp[2], down;
  int nQkv, nGateUp;
  float *kCache, *vCache;  // [B, KVH, kvCap, hd]
};
struct DecodeModel {
  i64 B, D, H, KVH, hd, F, kvCap;
  i64 length;  // positions already in the caches
  float eps;
  const double* invFreq;  // RoPE, hd / 2 entries
  float ropeScale;
  WeightMatrix embed, head;
  const float* finalNorm;
  const DecodeLayer* layers;
  i64 nLayers;
};
// For B <= GEMM_FEW_ROWS sequences, one new token each (ids, pos [B]; keyStart [B] or null):
// appends each layer's keys and values at position `length` of its caches and writes the
// logits [B, V]. The kernels are those of the step as the model composes them, so the logits
// are the same bits; only the calls between them are gone.
void decodeStep(const DecodeModel& m, const std::int32_t* ids, const std::int32_t* pos, const std::int32_t* keyStart, float* logits);

// ---- elementwise and row kernels (ops.cc) ----
void embeddingForward(float* out, const float* table, const std::int32_t* ids, i64 n, i64 dim);
void embeddingBackward(float* dtable, const float* dout, const std::int32_t* ids, i64 n, i64 dim);
void rmsnormForward(float* out, float* rstd, const float* x, const float* w, i64 rows, i64 dim, float eps);
void rmsnormBackward(float* dx, float* dw, const float* dout, const float* x, const float* w, const float* rstd, i64 rows, i64 dim);
// sum = x + y, out = rmsnorm(sum): a residual add and the norm after it in one pass.
void addRmsnormForward(float* sum, float* out, float* rstd, const float* x, const float* y, const float* w, i64 rows, i64 dim, float eps);
// g = dsum + d out/d sum (dsum may be null: zero); dx += g, dy += g, dw as rmsnormBackward.
void addRmsnormBackward(float* dx, float* dy, float* dw, const float* dsum, const float* dout, const float* sum, const float* w,
                        const float* rstd, i64 rows, i64 dim);
// invFreq has hd/2 entries; cos and sin are multiplied by scale (YaRN's attention factor).
void ropeForward(float* out, const float* x, const std::int32_t* pos, i64 rows, i64 heads, i64 hd, const double* invFreq, float scale);
void ropeBackward(float* dx, const float* dout, const std::int32_t* pos, i64 rows, i64 heads, i64 hd, const double* invFreq, float scale);
// A fused projection's output qkv [rows, (H + 2 KVH) hd] split into q [rows, H, hd] and k, v
// [rows, KVH, hd], RoPE applied to q and k; backward: dqkv += [R^T dq | R^T dk | dv].
void qkvRopeForward(float* q, float* k, float* v, const float* qkv, const std::int32_t* pos, i64 rows, i64 H, i64 KVH, i64 hd,
                    const double* invFreq, float scale);
void qkvRopeBackward(float* dqkv, const float* dq, const float* dk, const float* dv, const std::int32_t* pos, i64 rows, i64 H, i64 KVH,
                     i64 hd, const double* invFreq, float scale);
void biasForward(float* y, const float* b, i64 rows, i64 dim);
void biasBackward(float* db, const float* dy, i64 rows, i64 dim);
void sliceColumnsForward(float* out, const float* x, i64 rows, i64 cols, i64 start, i64 width);
void sliceColumnsBackward(float* dx, const float* dout, i64 rows, i64 cols, i64 start, i64 width);
void normalizeRowsForward(float* out, float* norm, const float* w, i64 rows, i64 dim, float eps);
void normalizeRowsBackward(float* dw, const float* dout, const float* out, const float* norm, i64 rows, i64 dim, float eps);
void swigluForward(float* out, const float* gate, const float* up, i64 n);
void swigluBackward(float* dgate, float* dup, const float* dout, const float* gate, const float* up, i64 n);
// SwiGLU of a fused gate | up projection gu [rows, 2 width]: out [rows, width].
void swigluPackedForward(float* out, const float* gu, i64 rows, i64 width);
void swigluPackedBackward(float* dgu, const float* dout, const float* gu, i64 rows, i64 width);
void crossEntropyForward(float* lse, float* tlogit, const float* logits, const std::int32_t* targets, i64 rows, i64 start, i64 cols);
void crossEntropyBackward(float* dlogits, const float* logits, const float* lse, const std::int32_t* targets, const float* dlogp, i64 rows,
                          i64 start, i64 cols);
// The gradient is gradScale * g (clipping folded into the one pass over g).
void adamw(float* p, const float* g, float* m, float* v, i64 n, double lr, double beta1, double beta2, double eps, double weightDecay, double step,
           float gradScale);
double sumSquares(const float* x, i64 n);
void axpy(float* y, const float* x, i64 n, float alpha);
void add(float* out, const float* a, const float* b, i64 n);

}  // namespace chimed
