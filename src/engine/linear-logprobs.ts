import type { FloatArray } from './kernels.js';
import { Context, Tensor } from './tensor.js';

/**
 * Floats of logits the fused output projection + log-softmax holds at a time (4 MB in f32). The
 * whole [rows, V] logits matrix never exists: at Qwen's 151,936-token vocabulary and 512
 * positions it would be 311 MB. A block this size still gives each of its products thousands
 * of rows or columns, which the GEMM runs at full speed.
 */
export const LOGITS_CHUNK_FLOATS = 1 << 20;

/**
 * The narrowest vocabulary chunk a default block takes before it splits the rows instead: it is
 * the inner dimension of backward's dX product, which a narrower chunk would re-read and
 * re-write once more per chunk.
 */
const MIN_CHUNK_COLS = 1024;

/** A block of the logits: `rows` positions by `cols` vocabulary entries. */
export interface LogitsBlock {
  rows: number;
  cols: number;
}

/** The block of about `floats` logits used for N rows over a vocabulary of V. */
export function logitsBlock(N: number, V: number, floats = LOGITS_CHUNK_FLOATS): LogitsBlock {
  const rows = Math.max(1, Math.min(N, Math.floor(floats / MIN_CHUNK_COLS)));
  return { rows, cols: Math.max(1, Math.min(V, Math.floor(floats / rows))) };
}

/** Calls fn for each block of an [N, V] grid: row blocks outer, vocabulary chunks inner; the last of each may be short. */
function forEachBlock(N: number, V: number, b: LogitsBlock, fn: (r0: number, rows: number, c0: number, cols: number) => void): void {
  for (let r0 = 0; r0 < N; r0 += b.rows)
    for (let c0 = 0; c0 < V; c0 += b.cols) fn(r0, Math.min(b.rows, N - r0), c0, Math.min(b.cols, V - c0));
}

/** Rows [r0, r0 + n) of a row-major [_, D] array, as a view. */
const rowsOf = <F extends FloatArray>(a: F, r0: number, n: number, D: number) => a.subarray(r0 * D, (r0 + n) * D) as F;

/**
 * Fused output projection + log-softmax at the targets (llm.c's fused classifier, chunked):
 * logp[r] = log softmax(x[r] W^T)[targets[r]]; targets < 0 are ignored (logp 0, no gradient).
 * x is [N, D], W [V, D]. The logits are computed one block at a time through the kernels' GEMM:
 * forward keeps only each row's log-sum-exp (merged across vocabulary chunks) and target logit;
 * backward recomputes each block's logits, turns them into their gradient in place and
 * accumulates dX += dLogits W and, when W is trainable, dW += dLogits^T X. The extra forward
 * product in backward is the price of never holding [N, V] floats. `block` defaults to
 * logitsBlock(N, V).
 */
export function linearLogprobs<F extends FloatArray>(
  ctx: Context<F>,
  x: Tensor<F>,
  W: Tensor<F>,
  targets: Int32Array,
  block: LogitsBlock = logitsBlock(targets.length, W.shape[0]),
): Tensor<F> {
  const [V, D] = W.shape;
  const N = targets.length;
  if (x.size !== N * D) throw new RangeError(`linearLogprobs: ${N} targets for ${x.size / D} rows`);
  if (!(Number.isSafeInteger(block.rows) && block.rows >= 1 && Number.isSafeInteger(block.cols) && block.cols >= 1))
    throw new RangeError(`linearLogprobs: logits block ${block.rows}x${block.cols} must be positive integers`);
  const k = ctx.k;
  const lse = ctx.ws.alloc(N).fill(-Infinity),
    tlogit = ctx.ws.alloc(N);
  const logp = ctx.tensor([N], x.requiresGrad || W.requiresGrad);
  /** Runs fn on each block's freshly computed logits [rows, cols] (a view of one scratch buffer freed afterwards). */
  const blocks = (fn: (logits: F, r0: number, rows: number, c0: number, cols: number) => void) => {
    const mark = ctx.ws.mark();
    const scratch = ctx.ws.alloc(Math.min(block.rows, N) * Math.min(block.cols, V));
    forEachBlock(N, V, block, (r0, rows, c0, cols) => {
      const logits = scratch.subarray(0, rows * cols) as F;
      k.gemm(false, true, rows, cols, D, 1, rowsOf(x.data, r0, rows, D), rowsOf(W.data, c0, cols, D), 0, logits);
      fn(logits, r0, rows, c0, cols);
    });
    ctx.ws.release(mark);
  };
  blocks((logits, r0, rows, c0, cols) =>
    k.crossEntropyForward(
      lse.subarray(r0, r0 + rows) as F,
      tlogit.subarray(r0, r0 + rows) as F,
      logits,
      targets.subarray(r0, r0 + rows),
      V,
      c0,
      cols,
    ),
  );
  for (let r = 0; r < N; r++) logp.data[r] = targets[r] < 0 ? 0 : tlogit[r] - lse[r];
  ctx.record([x, W], () => {
    if (!logp.grad) return;
    const dlogp = logp.grad;
    // gradients are allocated before blocks() marks the arena, so they outlive its scratch
    const dx = x.requiresGrad ? ctx.gradOf(x) : null,
      dW = W.requiresGrad ? ctx.gradOf(W) : null;
    blocks((logits, r0, rows, c0, cols) => {
      const [lseR, targetsR, dlogpR] = [
        lse.subarray(r0, r0 + rows) as F,
        targets.subarray(r0, r0 + rows),
        dlogp.subarray(r0, r0 + rows) as F,
      ];
      k.crossEntropyBackward(logits, logits, lseR, targetsR, dlogpR, V, c0, cols);
      if (dx) k.gemm(false, false, rows, D, cols, 1, logits, rowsOf(W.data, c0, cols, D), 1, rowsOf(dx, r0, rows, D));
      if (dW) k.gemm(true, false, cols, D, rows, 1, logits, rowsOf(x.data, r0, rows, D), 1, rowsOf(dW, c0, cols, D));
    });
  });
  return logp;
}
