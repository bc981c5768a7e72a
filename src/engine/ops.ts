import type { AttentionDims, FloatArray } from './kernels.js';
import { Rng } from './rng.js';
import { Context, Tensor } from './tensor.js';

/**
 * Coarse differentiable ops over the kernel contract. Each computes its forward with one or
 * two kernels and records a closure that calls the matching backward kernels. Shapes are
 * [rows, features]; rows = batch * time.
 */

/** y = x W^T (+ b), W in HF layout [out, in], b [out]. */
export function linear<F extends FloatArray>(ctx: Context<F>, x: Tensor<F>, W: Tensor<F>, b: Tensor<F> | null = null): Tensor<F> {
  const [outF, inF] = W.shape;
  const N = x.size / inF;
  if (!Number.isInteger(N)) throw new RangeError(`linear: input of ${x.size} values is not a multiple of in_features ${inF}`);
  if (b && b.size !== outF) throw new RangeError(`linear: bias of ${b.size} values for ${outF} outputs`);
  const y = ctx.tensor([N, outF], x.requiresGrad || W.requiresGrad || !!b?.requiresGrad);
  ctx.k.gemm(false, true, N, outF, inF, 1, x.data, W.data, 0, y.data);
  if (b) ctx.k.biasForward(y.data, b.data, N, outF);
  ctx.record(b ? [x, W, b] : [x, W], () => {
    const dy = y.grad;
    if (!dy) return;
    if (x.requiresGrad) ctx.k.gemm(false, false, N, inF, outF, 1, dy, W.data, 1, ctx.gradOf(x));
    if (W.requiresGrad) ctx.k.gemm(true, false, outF, inF, N, 1, dy, x.data, 1, ctx.gradOf(W));
    if (b?.requiresGrad) ctx.k.biasBackward(ctx.gradOf(b), dy, N, outF);
  });
  return y;
}

/** Columns [start, start + width) of x [rows, cols]: one part of a fused projection (Baichuan's W_pack). */
export function sliceColumns<F extends FloatArray>(ctx: Context<F>, x: Tensor<F>, start: number, width: number): Tensor<F> {
  const cols = x.shape[x.shape.length - 1],
    rows = x.size / cols;
  const y = ctx.tensor([rows, width], x.requiresGrad);
  ctx.k.sliceColumnsForward(y.data, x.data, rows, cols, start, width);
  ctx.record([x], () => y.grad && ctx.k.sliceColumnsBackward(ctx.gradOf(x), y.grad, rows, cols, start, width));
  return y;
}

/** Each row of W [rows, dim] divided by max(its L2 norm, eps): torch's F.normalize(W), Baichuan 2's NormHead. */
export function normalizeRows<F extends FloatArray>(ctx: Context<F>, W: Tensor<F>, eps = 1e-12): Tensor<F> {
  const [rows, dim] = W.shape;
  const y = ctx.tensor(W.shape, W.requiresGrad);
  const norm = ctx.ws.alloc(rows);
  ctx.k.normalizeRowsForward(y.data, norm, W.data, rows, dim, eps);
  ctx.record([W], () => y.grad && ctx.k.normalizeRowsBackward(ctx.gradOf(W), y.grad, y.data, norm, rows, dim, eps));
  return y;
}

export function embedding<F extends FloatArray>(ctx: Context<F>, table: Tensor<F>, ids: Int32Array): Tensor<F> {
  const dim = table.shape[1];
  const y = ctx.tensor([ids.length, dim], table.requiresGrad);
  ctx.k.embeddingForward(y.data, table.data, ids, dim);
  ctx.record([table], () => y.grad && ctx.k.embeddingBackward(ctx.gradOf(table), y.grad, ids, dim));
  return y;
}

export function rmsnorm<F extends FloatArray>(ctx: Context<F>, x: Tensor<F>, w: Tensor<F>, eps: number): Tensor<F> {
  const dim = w.size;
  const rows = x.size / dim;
  const y = ctx.tensor(x.shape, x.requiresGrad || w.requiresGrad);
  const rstd = ctx.ws.alloc(rows);
  ctx.k.rmsnormForward(y.data, rstd, x.data, w.data, rows, dim, eps);
  ctx.record([x, w], () => {
    if (!y.grad) return;
    // both grads are needed by the kernel; a frozen weight's grad lands in scratch
    const dw = w.requiresGrad ? ctx.gradOf(w) : ctx.ws.alloc(dim, true);
    ctx.k.rmsnormBackward(ctx.gradOf(x), dw, y.grad, x.data, w.data, rstd, rows, dim);
  });
  return y;
}

/** Rotation frequencies of a RoPE variant and its cos/sin multiplier (see src/model/rope.ts). */
export interface RopeFrequencies {
  invFreq: Float64Array;
  scale: number;
}

export function rope<F extends FloatArray>(
  ctx: Context<F>,
  x: Tensor<F>,
  pos: Int32Array,
  heads: number,
  headDim: number,
  f: RopeFrequencies,
): Tensor<F> {
  const y = ctx.tensor(x.shape, x.requiresGrad);
  ctx.k.ropeForward(y.data, x.data, pos, heads, headDim, f.invFreq, f.scale);
  ctx.record([x], () => y.grad && ctx.k.ropeBackward(ctx.gradOf(x), y.grad, pos, heads, headDim, f.invFreq, f.scale));
  return y;
}

export function attention<F extends FloatArray>(
  ctx: Context<F>,
  q: Tensor<F>,
  k: Tensor<F>,
  v: Tensor<F>,
  dims: AttentionDims,
  keyStart: Int32Array | null = null,
): Tensor<F> {
  const out = ctx.tensor(q.shape, q.requiresGrad || k.requiresGrad || v.requiresGrad);
  const lse = ctx.ws.alloc(dims.B * dims.H * dims.Tq);
  ctx.k.attentionForward(out.data, lse, q.data, k.data, v.data, dims, keyStart);
  ctx.record([q, k, v], () => {
    if (!out.grad) return;
    ctx.k.attentionBackward(ctx.gradOf(q), ctx.gradOf(k), ctx.gradOf(v), out.grad, q.data, k.data, v.data, out.data, lse, dims, keyStart);
  });
  return out;
}

export function swiglu<F extends FloatArray>(ctx: Context<F>, gate: Tensor<F>, up: Tensor<F>): Tensor<F> {
  const y = ctx.tensor(gate.shape, gate.requiresGrad || up.requiresGrad);
  ctx.k.swigluForward(y.data, gate.data, up.data);
  ctx.record([gate, up], () => y.grad && ctx.k.swigluBackward(ctx.gradOf(gate), ctx.gradOf(up), y.grad, gate.data, up.data));
  return y;
}

export function add<F extends FloatArray>(ctx: Context<F>, a: Tensor<F>, b: Tensor<F>): Tensor<F> {
  const y = ctx.tensor(a.shape, a.requiresGrad || b.requiresGrad);
  ctx.k.add(y.data, a.data, b.data);
  ctx.record([a, b], () => {
    if (!y.grad) return;
    if (a.requiresGrad) ctx.k.axpy(ctx.gradOf(a), y.grad, 1);
    if (b.requiresGrad) ctx.k.axpy(ctx.gradOf(b), y.grad, 1);
  });
  return y;
}

/** y = s * x */
export function scale<F extends FloatArray>(ctx: Context<F>, x: Tensor<F>, s: number): Tensor<F> {
  const y = ctx.tensor(x.shape, x.requiresGrad, true);
  ctx.k.axpy(y.data, x.data, s);
  ctx.record([x], () => y.grad && ctx.k.axpy(ctx.gradOf(x), y.grad, s));
  return y;
}

/** Scalar sum_i w[i] * x[i]; with w = -mask/count this is the mean token cross-entropy. */
export function weightedSum<F extends FloatArray>(ctx: Context<F>, x: Tensor<F>, w: ArrayLike<number>): Tensor<F> {
  if (w.length !== x.size) throw new RangeError(`weightedSum: ${w.length} weights for ${x.size} values`);
  const y = ctx.tensor([1], x.requiresGrad);
  let s = 0;
  for (let i = 0; i < w.length; i++) s += w[i] * x.data[i];
  y.data[0] = s;
  ctx.record([x], () => {
    if (!y.grad) return;
    const g = y.grad[0];
    const dx = ctx.gradOf(x);
    for (let i = 0; i < w.length; i++) dx[i] += g * w[i];
  });
  return y;
}

/**
 * Activation recomputation: runs `fn` without keeping its intermediates, then re-runs it
 * during backward. Only the block input and output survive the forward pass.
 */
export function checkpoint<F extends FloatArray>(ctx: Context<F>, x: Tensor<F>, fn: (c: Context<F>, x: Tensor<F>) => Tensor<F>): Tensor<F> {
  if (!ctx.recording) return fn(ctx, x);
  const y = ctx.tensor(x.shape, true);
  const m0 = ctx.ws.mark();
  y.data.set(fn(ctx.child(false), x).data);
  ctx.ws.release(m0);
  // recorded even when x is frozen: the block's own weights may be trainable
  ctx.record([y], () => {
    if (!y.grad) return;
    if (x.requiresGrad) ctx.gradOf(x); // allocated below the mark so it outlives the recomputation
    const m = ctx.ws.mark();
    const sub = ctx.child(true);
    const inner = fn(sub, x);
    inner.grad = y.grad;
    sub.runBackward();
    ctx.ws.release(m);
  });
  return y;
}

/**
 * Inverted dropout in training mode; otherwise (or p = 0) x itself. The mask is a pure
 * function of `seed`, so a recomputed block draws exactly the mask its first pass used.
 */
export function dropout<F extends FloatArray>(ctx: Context<F>, x: Tensor<F>, p: number, seed: number): Tensor<F> {
  if (p <= 0 || !ctx.training) return x;
  const rng = new Rng(seed);
  const keep = 1 / (1 - p);
  const mask = ctx.ws.alloc(x.size);
  for (let i = 0; i < mask.length; i++) mask[i] = rng.next() < p ? 0 : keep;
  const y = ctx.tensor(x.shape, x.requiresGrad);
  for (let i = 0; i < y.size; i++) y.data[i] = x.data[i] * mask[i];
  ctx.record([x], () => {
    if (!y.grad) return;
    const dx = ctx.gradOf(x);
    for (let i = 0; i < dx.length; i++) dx[i] += y.grad[i] * mask[i];
  });
  return y;
}

/** Rows `rows[i]` of x [N, D] stacked into [n, D] (last-token hidden states for a value head). */
export function gatherRows<F extends FloatArray>(ctx: Context<F>, x: Tensor<F>, rows: Int32Array, D: number): Tensor<F> {
  const y = ctx.tensor([rows.length, D], x.requiresGrad);
  rows.forEach((r, i) => y.data.set(x.data.subarray(r * D, (r + 1) * D), i * D));
  ctx.record([x], () => {
    if (!y.grad) return;
    const dx = ctx.gradOf(x);
    rows.forEach((r, i) => ctx.k.axpy(dx.subarray(r * D, (r + 1) * D) as F, y.grad!.subarray(i * D, (i + 1) * D) as F, 1));
  });
  return y;
}

/** out[s] = sum of x[i] over i with segment[i] = s (segment -1 is skipped): per-sequence log-prob sums. */
export function segmentSum<F extends FloatArray>(ctx: Context<F>, x: Tensor<F>, segment: Int32Array, count: number): Tensor<F> {
  const y = ctx.tensor([count], x.requiresGrad, true);
  for (let i = 0; i < segment.length; i++) if (segment[i] >= 0) y.data[segment[i]] += x.data[i];
  ctx.record([x], () => {
    if (!y.grad) return;
    const dx = ctx.gradOf(x);
    for (let i = 0; i < segment.length; i++) if (segment[i] >= 0) dx[i] += y.grad[segment[i]];
  });
  return y;
}

export type PairLoss = 'sigmoid' | 'ipo';

/**
 * Mean preference loss over n pairs. x holds chosen scores in [0, n) and rejected in [n, 2n);
 * h_i = x_c - x_r - ref_i (ref_i: the reference model's margin, 0 for a reward model).
 * sigmoid (Bradley-Terry, DPO): -log sigmoid(beta * h); ipo: (h - 1 / (2 beta))^2.
 */
export function pairLoss<F extends FloatArray>(
  ctx: Context<F>,
  x: Tensor<F>,
  ref: ArrayLike<number>,
  beta: number,
  kind: PairLoss,
): Tensor<F> {
  const n = x.size / 2;
  if (ref.length !== n) throw new RangeError(`pairLoss: ${ref.length} reference margins for ${n} pairs`);
  const y = ctx.tensor([1], x.requiresGrad);
  const dh = new Float64Array(n);
  let total = 0;
  for (let i = 0; i < n; i++) {
    const h = x.data[i] - x.data[n + i] - ref[i];
    if (kind === 'sigmoid') {
      const z = beta * h;
      total += Math.max(-z, 0) + Math.log1p(Math.exp(-Math.abs(z))); // -log sigmoid(z), stable
      dh[i] = -beta / (1 + Math.exp(z)) / n;
    } else {
      const e = h - 1 / (2 * beta);
      total += e * e;
      dh[i] = (2 * e) / n;
    }
  }
  y.data[0] = total / n;
  ctx.record([x], () => {
    if (!y.grad) return;
    const dx = ctx.gradOf(x),
      g = y.grad[0];
    for (let i = 0; i < n; i++) {
      dx[i] += g * dh[i];
      dx[n + i] -= g * dh[i];
    }
  });
  return y;
}
