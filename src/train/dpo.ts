import type { FloatArray } from '../engine/kernels.js';
import { pairLoss, segmentSum, type PairLoss } from '../engine/ops.js';
import { Rng } from '../engine/rng.js';
import { Context } from '../engine/tensor.js';
import type { Llama } from '../model/llama.js';
import type { LoraAdapter } from '../model/lora.js';
import { collatePairs, type PreferencePair } from './preference.js';
import { EpochSampler } from './sampler.js';
import type { MicroResult, TrainTask } from './trainer.js';

export interface DpoOptions {
  beta: number;
  loss: PairLoss;
  batchSize: number;
  recompute: boolean;
  seed: number;
}

/** Sum of log p over each answer of each pair: [chosen..., rejected...]. */
function answerLogps<F extends FloatArray>(ctx: Context<F>, model: Llama<F>, pairs: PreferencePair[], recompute: boolean) {
  const { batch, targets, segment } = collatePairs(pairs);
  const logp = model.logprobs(ctx, batch, targets, { recompute: recompute && ctx.recording });
  return segmentSum(ctx, logp, segment, 2 * pairs.length);
}

/**
 * DPO (Rafailov et al.; Qilin-Med's third stage) with the sigmoid or IPO loss. The reference
 * model's answer log-probabilities are computed once, before training, with the same weights
 * (adapter detached, or the initial full weights) and cached, so no second model is kept.
 */
export class DpoTask<F extends FloatArray> implements TrainTask<F> {
  private sampler: EpochSampler;
  private refTrain: Float64Array;
  private refHeld: Float64Array;

  constructor(
    readonly model: Llama<F>,
    readonly train: PreferencePair[],
    readonly heldout: PreferencePair[],
    readonly opts: DpoOptions,
    readonly adapter: LoraAdapter<F> | null,
    readonly saveWeights: (dir: string) => Promise<void>,
    ctx: Context<F>,
  ) {
    this.sampler = new EpochSampler(train.length, opts.seed);
    const hook = model.hook;
    model.hook = null;
    this.refTrain = this.referenceLogps(ctx, train);
    this.refHeld = this.referenceLogps(ctx, heldout);
    model.hook = hook;
  }

  get params() {
    return this.adapter ? this.adapter.params : this.model.params;
  }

  /** Per pair [chosen_i, rejected_i] interleaved as [c0, r0, c1, r1, ...]. */
  private referenceLogps(ctx: Context<F>, pairs: PreferencePair[]): Float64Array {
    const out = new Float64Array(2 * pairs.length);
    const inf = ctx.inference();
    for (let i = 0; i < pairs.length; i += this.opts.batchSize) {
      const chunk = pairs.slice(i, i + this.opts.batchSize);
      const s = answerLogps(inf, this.model, chunk, false);
      chunk.forEach((_, j) => { out[2 * (i + j)] = s.data[j]; out[2 * (i + j) + 1] = s.data[chunk.length + j]; });
      ctx.ws.reset();
    }
    return out;
  }

  private forward(ctx: Context<F>, pairs: PreferencePair[], ref: (j: number) => [number, number]) {
    const s = answerLogps(ctx, this.model, pairs, this.opts.recompute);
    const n = pairs.length, beta = this.opts.beta;
    const refMargin = pairs.map((_, j) => { const [c, r] = ref(j); return c - r; });
    const loss = pairLoss(ctx, s, refMargin, beta, this.opts.loss);
    const m = { 'rewards/chosen': 0, 'rewards/rejected': 0, 'rewards/margins': 0, 'rewards/accuracies': 0, 'logps/chosen': 0, 'logps/rejected': 0 };
    for (let j = 0; j < n; j++) {
      const [rc, rr] = ref(j);
      const c = beta * (s.data[j] - rc), r = beta * (s.data[n + j] - rr);
      m['rewards/chosen'] += c / n; m['rewards/rejected'] += r / n; m['rewards/margins'] += (c - r) / n;
      m['rewards/accuracies'] += (c > r ? 1 : 0) / n;
      m['logps/chosen'] += s.data[j] / n; m['logps/rejected'] += s.data[n + j] / n;
    }
    return { loss, metrics: m, n };
  }

  microStep(ctx: Context<F>, index: number, gradScale: number): MicroResult {
    const B = this.opts.batchSize;
    const idx = Array.from({ length: B }, (_, b) => this.sampler.at(index * B + b));
    if (this.adapter) this.adapter.stepSeed = Rng.derive(this.opts.seed, index).nextU32();
    const pairs = idx.map((i) => this.train[i]);
    const f = this.forward(ctx, pairs, (j) => [this.refTrain[2 * idx[j]], this.refTrain[2 * idx[j] + 1]]);
    const loss = f.loss.data[0];
    ctx.backward(f.loss, gradScale);
    return { loss, tokens: pairs.reduce((n, p) => n + p.chosen.ids.length + p.rejected.ids.length, 0), metrics: f.metrics };
  }

  evaluate(ctx: Context<F>): Record<string, number> {
    const sums: Record<string, number> = {};
    let n = 0;
    const inf = ctx.inference();
    for (let i = 0; i < this.heldout.length; i += this.opts.batchSize) {
      const f = this.forward(inf, this.heldout.slice(i, i + this.opts.batchSize), (j) => [this.refHeld[2 * (i + j)], this.refHeld[2 * (i + j) + 1]]);
      for (const [k, v] of Object.entries({ loss: f.loss.data[0], ...f.metrics })) sums[`eval_${k}`] = (sums[`eval_${k}`] ?? 0) + v * f.n;
      n += f.n;
      ctx.ws.reset();
    }
    return Object.fromEntries(Object.entries(sums).map(([k, v]) => [k, v / n]));
  }
}
