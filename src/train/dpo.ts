import { splitBatches } from '../engine/dist.js';
import type { FloatArray } from '../engine/kernels.js';
import { pairLoss, segmentSum, type PairLoss } from '../engine/ops.js';
import { Rng } from '../engine/rng.js';
import { Context } from '../engine/tensor.js';
import type { Llama } from '../model/llama.js';
import type { LoraAdapter } from '../model/lora.js';
import { collatePairs, type PreferencePair } from './preference.js';
import { EpochSampler } from './sampler.js';
import { rowPart, shareOf, type MicroResult, type RowRange, type TrainTask } from './trainer.js';

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
 * DPO (Rafailov et al.; Qilin-Med's third stage) with the sigmoid or IPO loss. Reference
 * answer log-probabilities are cached, so no second model is kept: with LoRA the reference is
 * the frozen base (adapter detached), scored the first time a pair is drawn; with full
 * fine-tuning the weights move, so every pair is scored once before training.
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
    this.refTrain = new Float64Array(2 * train.length).fill(NaN);
    this.refHeld = new Float64Array(2 * heldout.length).fill(NaN);
    if (!adapter) {
      this.fillAll(ctx, train, this.refTrain);
      this.fillAll(ctx, heldout, this.refHeld);
    }
  }

  get params() {
    return this.adapter ? this.adapter.params : this.model.params;
  }

  /**
   * Scores every pair's reference answers; under MPI each rank scores whole batches of them
   * (the batches one process scores) and all ranks gather the lot.
   */
  private fillAll(ctx: Context<F>, pairs: PreferencePair[], ref: Float64Array): void {
    const scored = splitBatches([...pairs.keys()], this.opts.batchSize, (idx) => {
      this.fillReference(ctx, pairs, ref, idx);
      return idx.map((i) => [ref[2 * i], ref[2 * i + 1]]);
    });
    scored.forEach(([c, r], i) => {
      ref[2 * i] = c;
      ref[2 * i + 1] = r;
    });
  }

  /** Scores the reference answers of pairs[idx] not yet cached, into ref as [c0, r0, c1, r1, ...]. */
  private fillReference(ctx: Context<F>, pairs: PreferencePair[], ref: Float64Array, idx: number[]): void {
    const todo = [...new Set(idx)].filter((i) => Number.isNaN(ref[2 * i]));
    if (!todo.length) return;
    const hook = this.model.hook;
    this.model.hook = null;
    const inf = ctx.inference();
    const m = ctx.ws.mark();
    for (let i = 0; i < todo.length; i += this.opts.batchSize) {
      const chunk = todo.slice(i, i + this.opts.batchSize);
      const s = answerLogps(
        inf,
        this.model,
        chunk.map((j) => pairs[j]),
        false,
      );
      chunk.forEach((j, k) => {
        ref[2 * j] = s.data[k];
        ref[2 * j + 1] = s.data[chunk.length + k];
      });
      ctx.ws.release(m);
    }
    this.model.hook = hook;
  }

  private forward(ctx: Context<F>, pairs: PreferencePair[], ref: (j: number) => [number, number]) {
    const s = answerLogps(ctx, this.model, pairs, this.opts.recompute);
    const n = pairs.length,
      beta = this.opts.beta;
    const refMargin = pairs.map((_, j) => {
      const [c, r] = ref(j);
      return c - r;
    });
    const loss = pairLoss(ctx, s, refMargin, beta, this.opts.loss);
    const m = {
      'rewards/chosen': 0,
      'rewards/rejected': 0,
      'rewards/margins': 0,
      'rewards/accuracies': 0,
      'logps/chosen': 0,
      'logps/rejected': 0,
    };
    for (let j = 0; j < n; j++) {
      const [rc, rr] = ref(j);
      const c = beta * (s.data[j] - rc),
        r = beta * (s.data[n + j] - rr);
      m['rewards/chosen'] += c / n;
      m['rewards/rejected'] += r / n;
      m['rewards/margins'] += (c - r) / n;
      m['rewards/accuracies'] += (c > r ? 1 : 0) / n;
      m['logps/chosen'] += s.data[j] / n;
      m['logps/rejected'] += s.data[n + j] / n;
    }
    return { loss, metrics: m, n };
  }

  get batchSize() {
    return this.opts.batchSize;
  }

  microStep(ctx: Context<F>, index: number, gradScale: number, rows?: RowRange): MicroResult {
    const B = this.opts.batchSize;
    const { from, to, share } = rowPart(B, rows);
    const idx = Array.from({ length: to - from }, (_, j) => this.sampler.at(index * B + from + j));
    this.fillReference(ctx, this.train, this.refTrain, idx);
    if (this.adapter) this.adapter.stepSeed = Rng.derive(this.opts.seed, index).nextU32();
    const pairs = idx.map((i) => this.train[i]);
    const f = this.forward(ctx, pairs, (j) => [this.refTrain[2 * idx[j]], this.refTrain[2 * idx[j] + 1]]);
    const loss = f.loss.data[0] * share;
    ctx.backward(f.loss, gradScale * share);
    return { loss, tokens: pairs.reduce((n, p) => n + p.chosen.ids.length + p.rejected.ids.length, 0), metrics: shareOf(f.metrics, share) };
  }

  evaluate(ctx: Context<F>): Record<string, number> {
    const sums: Record<string, number> = {};
    let n = 0;
    const inf = ctx.inference();
    this.fillReference(ctx, this.heldout, this.refHeld, [...this.heldout.keys()]);
    for (let i = 0; i < this.heldout.length; i += this.opts.batchSize) {
      const f = this.forward(inf, this.heldout.slice(i, i + this.opts.batchSize), (j) => [
        this.refHeld[2 * (i + j)],
        this.refHeld[2 * (i + j) + 1],
      ]);
      for (const [k, v] of Object.entries({ loss: f.loss.data[0], ...f.metrics })) sums[`eval_${k}`] = (sums[`eval_${k}`] ?? 0) + v * f.n;
      n += f.n;
      ctx.ws.reset();
    }
    return Object.fromEntries(Object.entries(sums).map(([k, v]) => [k, v / n]));
  }
}
