import type { FloatArray } from '../engine/kernels.js';
import { pairLoss } from '../engine/ops.js';
import { Rng } from '../engine/rng.js';
import { Context } from '../engine/tensor.js';
import type { LoraAdapter } from '../model/lora.js';
import type { RewardModel } from '../model/reward.js';
import { collatePairs, type PreferencePair } from './preference.js';
import { EpochSampler } from './sampler.js';
import { rowPart, shareOf, type MicroResult, type RowRange, type TrainTask } from './trainer.js';

/** Pairwise (Bradley-Terry) reward-model training: -log sigmoid(r_chosen - r_rejected). */
export class RewardTask<F extends FloatArray> implements TrainTask<F> {
  private sampler: EpochSampler;
  private tokens = 0;

  constructor(
    readonly rm: RewardModel<F>,
    readonly train: PreferencePair[],
    readonly heldout: PreferencePair[],
    readonly opts: { batchSize: number; recompute: boolean; seed: number },
    readonly adapter: LoraAdapter<F> | null,
    readonly saveWeights: (dir: string) => Promise<void>,
  ) {
    this.sampler = new EpochSampler(train.length, opts.seed);
  }

  get params() {
    return this.adapter ? this.adapter.params : this.rm.lm.params;
  }

  private forward(ctx: Context<F>, pairs: PreferencePair[]) {
    const { batch, last } = collatePairs(pairs);
    this.tokens = last.reduce((n, t) => n + t + 1, 0);
    const r = this.rm.scores(ctx, batch, last, this.opts.recompute && ctx.recording);
    const loss = pairLoss(ctx, r, new Float64Array(pairs.length), 1, 'sigmoid');
    const n = pairs.length;
    let correct = 0,
      margin = 0;
    for (let i = 0; i < n; i++) {
      const m = r.data[i] - r.data[n + i];
      margin += m;
      if (m > 0) correct++;
    }
    return { loss, accuracy: correct / n, margin: margin / n, n };
  }

  get batchSize() {
    return this.opts.batchSize;
  }

  microStep(ctx: Context<F>, index: number, gradScale: number, rows?: RowRange): MicroResult {
    const B = this.opts.batchSize;
    const { from, to, share } = rowPart(B, rows);
    if (this.adapter) this.adapter.stepSeed = Rng.derive(this.opts.seed, index).nextU32();
    const f = this.forward(
      ctx,
      Array.from({ length: to - from }, (_, j) => this.train[this.sampler.at(index * B + from + j)]),
    );
    const loss = f.loss.data[0] * share;
    ctx.backward(f.loss, gradScale * share);
    return { loss, tokens: this.tokens, metrics: shareOf({ accuracy: f.accuracy, margin: f.margin }, share) };
  }

  /** Held-out pairwise accuracy (ChiMed-GPT's Figure 3), margin and loss. */
  evaluate(ctx: Context<F>): Record<string, number> {
    let loss = 0,
      acc = 0,
      margin = 0,
      n = 0;
    const inf = ctx.inference();
    for (let i = 0; i < this.heldout.length; i += this.opts.batchSize) {
      const f = this.forward(inf, this.heldout.slice(i, i + this.opts.batchSize));
      loss += f.loss.data[0] * f.n;
      acc += f.accuracy * f.n;
      margin += f.margin * f.n;
      n += f.n;
      ctx.ws.reset();
    }
    return n ? { eval_loss: loss / n, eval_accuracy: acc / n, eval_margin: margin / n } : {};
  }
}
