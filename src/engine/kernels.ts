/**
 * The kernel contract. Two implementations exist: the native addon (Float32Array, OpenMP,
 * OpenBLAS) used for real work, and a float64 pure-TS reference used by tests to check
 * agreement and finite-difference gradients. The model is written once against this
 * interface, so the same model code runs on either.
 *
 * Conventions, shared by every kernel:
 * - Row-major, dense, no strides: a tensor is a flat array plus the sizes passed here.
 * - Activations are [rows, features]; attention tensors are [B, T, heads, headDim], the
 *   natural output of a linear projection, so no transposes are ever materialised.
 * - Backward kernels ACCUMULATE into their gradient outputs (+=), so residual branches and
 *   shared weights need no special handling. The one exception is crossEntropyBackward,
 *   which writes, so that its output may alias the logits it reads (saves a second logits-chunk buffer).
 * - Kernels validate array lengths against the sizes they are given and throw on mismatch.
 */
import type { BaseDtype, FrozenWeight } from './frozen.js';

export type FloatArray = Float32Array | Float64Array;

export interface Kernels<F extends FloatArray = FloatArray> {
  readonly name: string;
  alloc(n: number): F;

  /** C[M,N] = alpha * op(A) op(B) + beta * C. A is [M,K] ([K,M] if transA); B is [K,N] ([N,K] if transB). */
  gemm(transA: boolean, transB: boolean, M: number, N: number, K: number, alpha: number, A: F, B: F, beta: number, C: F): void;

  /**
   * C[M,N] = alpha * A op(W) + beta * C with A [M,K] and W a frozen weight read in its stored
   * dtype (frozen.ts), widened as it is read; sums are in the working precision. Activations
   * are not rounded, except in decoding over q8_0 (quantisesActivation: A's rows rounded to
   * q8_0 blocks, as llama.cpp decodes). transW: op(W) = W^T with W [N,K] (a linear layer's
   * forward, y = x W^T); else W is [K,N] (its input gradient, dx = dy W). A frozen weight has
   * no gradient.
   */
  gemmWeight(transW: boolean, M: number, N: number, K: number, alpha: number, A: F, W: FrozenWeight, beta: number, C: F): void;
  /** out[i, :] = W[ids[i], :] for a frozen embedding table W [rows, dim]. */
  embeddingWeight(out: F, W: FrozenWeight, ids: Int32Array): void;

  /**
   * Only the native kernels: one decoding step of a whole decoder for plan.B <= 8 sequences,
   * one token each (ids, pos [B]; keyStart [B] or null), in one call. Appends each layer's keys
   * and values at position `length` of its caches and writes logits [B, head rows]. It runs the
   * kernels the model composes for that step, in the same order (Llama.decodePlan), so the
   * logits are the same bits as the step run kernel by kernel.
   */
  decodeStep?(
    plan: DecodePlan<F>,
    ids: Int32Array,
    pos: Int32Array,
    keyStart: Int32Array | null,
    length: number,
    invFreq: Float64Array,
    ropeScale: number,
    logits: F,
  ): void;

  /** out[i, :] = table[ids[i], :]; out is [ids.length, dim]. Ids out of range throw. */
  embeddingForward(out: F, table: F, ids: Int32Array, dim: number): void;
  /** dtable[ids[i], :] += dout[i, :]. Deterministic for any thread count. */
  embeddingBackward(dtable: F, dout: F, ids: Int32Array, dim: number): void;

  /** out = x * rstd * w per row, rstd[r] = 1 / sqrt(mean(x[r]^2) + eps). */
  rmsnormForward(out: F, rstd: F, x: F, w: F, rows: number, dim: number, eps: number): void;
  rmsnormBackward(dx: F, dw: F, dout: F, x: F, w: F, rstd: F, rows: number, dim: number): void;
  /** sum = x + y, then out and rstd as rmsnormForward of sum: a residual add and the norm after it in one pass. */
  addRmsnormForward(sum: F, out: F, rstd: F, x: F, y: F, w: F, rows: number, dim: number, eps: number): void;
  /**
   * g = dsum + (the rmsnorm gradient of dout with respect to sum); dx += g, dy += g, dw as
   * rmsnormBackward. dsum null: sum has no other consumer (g is the norm's part alone).
   */
  addRmsnormBackward(dx: F, dy: F, dw: F, dsum: F | null, dout: F, sum: F, w: F, rstd: F, rows: number, dim: number): void;

  /**
   * HF rotate-half RoPE over x = [rows, heads, headDim], rows = B*T, pos[r] = position of row r.
   * invFreq[i], i < headDim/2, are the rotation frequencies (plain RoPE: theta^(-2i/headDim);
   * scaled variants are computed by the model, src/model/rope.ts); angles pos * invFreq[i] are
   * computed in double precision. With c = scale*cos, s = scale*sin (scale: YaRN's attention
   * factor, else 1): out[i] = x[i]c - x[i+h/2]s, out[i+h/2] = x[i+h/2]c + x[i]s.
   * out may alias x.
   */
  ropeForward(out: F, x: F, pos: Int32Array, heads: number, headDim: number, invFreq: Float64Array, scale: number): void;
  /** dx += R(pos)^T dout. */
  ropeBackward(dx: F, dout: F, pos: Int32Array, heads: number, headDim: number, invFreq: Float64Array, scale: number): void;
  /**
   * The output of a fused q/k/v projection, qkv = [rows, (H + 2 KVH) headDim] with columns
   * q | k | v, split into q [rows, H, headDim] and k, v [rows, KVH, headDim], with RoPE (as
   * ropeForward) applied to q and k on the way: the projection's epilogue in one pass.
   */
  qkvRopeForward(
    q: F,
    k: F,
    v: F,
    qkv: F,
    pos: Int32Array,
    H: number,
    KVH: number,
    headDim: number,
    invFreq: Float64Array,
    scale: number,
  ): void;
  /** dqkv += [R^T dq | R^T dk | dv] per row. */
  qkvRopeBackward(
    dqkv: F,
    dq: F,
    dk: F,
    dv: F,
    pos: Int32Array,
    H: number,
    KVH: number,
    headDim: number,
    invFreq: Float64Array,
    scale: number,
  ): void;

  /** y[r, :] += b for every row of y = [rows, dim]. */
  biasForward(y: F, b: F, rows: number, dim: number): void;
  /** db += sum over rows of dy. Deterministic for any thread count. */
  biasBackward(db: F, dy: F, rows: number, dim: number): void;

  /** out[r, :] = x[r, start : start+width]; x is [rows, cols] (one part of a fused projection). */
  sliceColumnsForward(out: F, x: F, rows: number, cols: number, start: number, width: number): void;
  /** dx[r, start : start+width] += dout[r, :]. */
  sliceColumnsBackward(dx: F, dout: F, rows: number, cols: number, start: number, width: number): void;

  /** out[r] = w[r] / norm[r], norm[r] = max(||w[r]||, eps) (torch F.normalize over rows of [rows, dim]). */
  normalizeRowsForward(out: F, norm: F, w: F, rows: number, dim: number, eps: number): void;
  /** dw[r] += (dout[r] - out[r] (out[r] . dout[r])) / norm[r]; a row clamped at eps gets dout[r] / eps. */
  normalizeRowsBackward(dw: F, dout: F, out: F, norm: F, rows: number, dim: number, eps: number): void;

  /**
   * Causal grouped-query attention, never materialising the [Tq, Tk] score matrix.
   * q, out: [B, Tq, H, hd]; k, v: [B, kvCap, KVH, hd] (with dims.kvHeadMajor [B, KVH, kvCap, hd])
   * of which the first Tk positions are valid (a KV cache has kvCap >= Tk; training has
   * Tq = Tk = kvCap). Query i sits at absolute
   * position Tk - Tq + i and sees keys j <= that position, and j >= keyStart[b] when keyStart
   * is given (left padding). Head h reads kv head floor(h / (H / KVH)).
   * lse: [B, H, Tq], the log-sum-exp of each query's scaled scores, kept for backward.
   */
  attentionForward(out: F, lse: F, q: F, k: F, v: F, dims: AttentionDims, keyStart: Int32Array | null): void;
  attentionBackward(dq: F, dk: F, dv: F, dout: F, q: F, k: F, v: F, out: F, lse: F, dims: AttentionDims, keyStart: Int32Array | null): void;

  /** out = silu(gate) * up, elementwise. */
  swigluForward(out: F, gate: F, up: F): void;
  swigluBackward(dgate: F, dup: F, dout: F, gate: F, up: F): void;
  /** SwiGLU of a fused gate | up projection gu = [rows, 2 width]: out[r, :] = silu(gu[r, :width]) * gu[r, width:]. */
  swigluPackedForward(out: F, gu: F, rows: number, width: number): void;
  /** dgu[r, :width] and dgu[r, width:] += the gradients of swigluPackedForward. */
  swigluPackedBackward(dgu: F, dout: F, gu: F, rows: number, width: number): void;

  /**
   * Softmax cross-entropy over one column chunk [start, start + cols) of V logits, so that a
   * large vocabulary is processed a chunk at a time (see linear-logprobs.ts); logits is
   * [rows, cols], rows = targets.length. Merges the chunk into each row's running log-sum-exp,
   * lse[r] = log(exp(lse[r]) + sum_j exp(logits[r, j])) (callers start lse at -Infinity), and
   * where the target t = targets[r] falls in the chunk picks its logit: tlogit[r] =
   * logits[r, t - start]; other rows' tlogit is left alone. Targets < 0 mark ignored rows
   * (their lse is still computed); targets must be < V.
   */
  crossEntropyForward(lse: F, tlogit: F, logits: F, targets: Int32Array, V: number, start: number, cols: number): void;
  /**
   * WRITES dlogits[r, j] = dlogp[r] * ([targets[r] = start + j] - exp(logits[r, j] - lse[r])) over
   * the same chunk, lse being the whole row's; ignored rows get 0. May alias logits.
   */
  crossEntropyBackward(dlogits: F, logits: F, lse: F, targets: Int32Array, dlogp: F, V: number, start: number, cols: number): void;

  /**
   * One AdamW step with bias correction (step counts from 1); decoupled weight decay p -= lr*wd*p.
   * The gradient is gradScale * g (gradient clipping, applied while it is read; g is unchanged).
   */
  adamw(
    p: F,
    g: F,
    m: F,
    v: F,
    lr: number,
    beta1: number,
    beta2: number,
    eps: number,
    weightDecay: number,
    step: number,
    gradScale: number,
  ): void;

  /** Sum of squares accumulated in double; deterministic for a given thread count. */
  sumSquares(x: F): number;
  /** y += alpha * x */
  axpy(y: F, x: F, alpha: number): void;
  /** out = a + b (out may alias a or b) */
  add(out: F, a: F, b: F): void;
}

export interface AttentionDims {
  B: number;
  Tq: number;
  Tk: number;
  kvCap: number;
  H: number;
  KVH: number;
  headDim: number;
  /** Score scale, normally 1/sqrt(headDim). */
  scale: number;
  /**
   * k and v are [B, KVH, kvCap, headDim], as a KV cache keeps them (each head's keys one
   * contiguous stretch, which decoding reads as a stream), not [B, kvCap, KVH, headDim].
   */
  kvHeadMajor?: boolean;
}

/** A weight matrix [rows, cols] as a decoding step reads it: f32 values or a frozen weight's bytes. */
export interface DecodeWeight<F extends FloatArray = FloatArray> {
  dtype: BaseDtype;
  data: F | Uint8Array;
  rows: number;
  cols: number;
}

/** y = x W^T (+ bias [rows]). */
export interface DecodeLinear<F extends FloatArray = FloatArray> {
  weight: DecodeWeight<F>;
  bias: F | null;
}

/** One decoder layer of a DecodePlan, with its KV cache [B, KVH, kvCap, headDim]. */
export interface DecodeLayer<F extends FloatArray = FloatArray> {
  inputNorm: F;
  postNorm: F;
  /** Per-head q/k RMSNorm gains [headDim] (Qwen3), or both null. */
  qNorm: F | null;
  kNorm: F | null;
  /** q|k|v as one packed projection (W_pack or stacked), or q, k, v. */
  qkv: DecodeLinear<F>[];
  o: DecodeLinear<F>;
  /** gate|up as one stacked projection, or gate, up. */
  gateUp: DecodeLinear<F>[];
  down: DecodeLinear<F>;
  kCache: F;
  vCache: F;
}

/** A decoder's weights and caches as one decoding step reads them (Kernels.decodeStep). */
export interface DecodePlan<F extends FloatArray = FloatArray> {
  B: number;
  D: number;
  H: number;
  KVH: number;
  headDim: number;
  F: number;
  kvCap: number;
  eps: number;
  embed: DecodeWeight<F>;
  head: DecodeWeight<F>;
  finalNorm: F;
  layers: DecodeLayer<F>[];
}
