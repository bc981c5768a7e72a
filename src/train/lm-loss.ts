import type { FloatArray } from '../engine/kernels.js';
import { weightedSum } from '../engine/ops.js';
import { Context } from '../engine/tensor.js';
import type { Llama, TokenBatch } from '../model/llama.js';

/**
 * Mean next-token cross-entropy over the targets that are not ignored (< 0), with backward.
 * Shared by pre-training and SFT; returns the loss and the number of counted tokens.
 */
export function lmLossStep<F extends FloatArray>(
  ctx: Context<F>,
  model: Llama<F>,
  batch: TokenBatch,
  targets: Int32Array,
  gradScale: number,
  recompute: boolean,
): { loss: number; tokens: number } {
  const counted = targets.reduce((n, t) => n + (t >= 0 ? 1 : 0), 0);
  if (counted === 0) return { loss: 0, tokens: 0 };
  const w = Float32Array.from(targets, (t) => (t >= 0 ? -1 / counted : 0));
  const loss = weightedSum(ctx, model.logprobs(ctx, batch, targets, { recompute }), w);
  const value = loss.data[0];
  ctx.backward(loss, gradScale);
  return { loss: value, tokens: counted };
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
