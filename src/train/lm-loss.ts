import type { FloatArray } from '../engine/kernels.js';
import { weightedSum } from '../engine/ops.js';
import { Context } from '../engine/tensor.js';
import type { Llama, TokenBatch } from '../model/llama.js';
import type { RowRange } from './trainer.js';

/**
 * Mean next-token cross-entropy over the targets that are not ignored (< 0), with backward.
 * Shared by pre-training and SFT; returns the loss and the number of counted tokens. With
 * `rows`, only those rows run, each token still weighted 1 / (the whole batch's count), so the
 * parts of a split batch sum to its mean (as ranks that share a micro-batch must).
 */
export function lmLossStep<F extends FloatArray>(
  ctx: Context<F>,
  model: Llama<F>,
  batch: TokenBatch,
  targets: Int32Array,
  gradScale: number,
  recompute: boolean,
  rows?: RowRange,
): { loss: number; tokens: number } {
  const countOf = (t: Int32Array) => t.reduce((n, x) => n + (x >= 0 ? 1 : 0), 0);
  const counted = countOf(targets);
  const part = rows ? batchRows(batch, targets, rows) : { batch, targets };
  const partCount = rows ? countOf(part.targets) : counted;
  if (partCount === 0) return { loss: 0, tokens: 0 };
  const w = Float32Array.from(part.targets, (t) => (t >= 0 ? -1 / counted : 0));
  const loss = weightedSum(ctx, model.logprobs(ctx, part.batch, part.targets, { recompute }), w);
  const value = loss.data[0];
  ctx.backward(loss, gradScale);
  return { loss: value, tokens: partCount };
}

/** Rows [from, to) of a [B, T] batch and its targets, as views. */
function batchRows(batch: TokenBatch, targets: Int32Array, { from, to }: RowRange) {
  const T = batch.T;
  return {
    batch: { ids: batch.ids.subarray(from * T, to * T), pos: batch.pos.subarray(from * T, to * T), B: to - from, T },
    targets: targets.subarray(from * T, to * T),
  };
}

/** Sums -log p over the counted targets of a batch, forward only. */
export function nllSum<F extends FloatArray>(
  ctx: Context<F>,
  model: Llama<F>,
  batch: TokenBatch,
  targets: Int32Array,
): { sum: number; tokens: number } {
  const logp = model.logprobs(ctx.inference(), batch, targets);
  let sum = 0,
    tokens = 0;
  for (let i = 0; i < targets.length; i++)
    if (targets[i] >= 0) {
      sum -= logp.data[i];
      tokens++;
    }
  ctx.ws.reset();
  return { sum, tokens };
}

export function lossMetrics(sum: number, tokens: number): Record<string, number> {
  if (tokens === 0) return {};
  return { eval_loss: sum / tokens, eval_ppl: Math.exp(sum / tokens) };
}
