import type { FloatArray } from './kernels.js';
import { ParamStore } from './params.js';

export interface AdamWConfig {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
}

/** AdamW over one parameter store; moments live in two buffers parallel to the parameters. */
export class AdamW<F extends FloatArray = FloatArray> {
  readonly m: F;
  readonly v: F;
  step = 0;
  /** Factor the next update applies to the gradients (set by clip). */
  private gradScale = 1;

  constructor(
    readonly params: ParamStore<F>,
    readonly cfg: AdamWConfig,
  ) {
    if (!params.grad) throw new Error('AdamW needs a trainable parameter store');
    this.m = params.k.alloc(params.size);
    this.v = params.k.alloc(params.size);
  }

  /** Global L2 norm of the gradients (before clipping). */
  gradNorm(): number {
    return Math.sqrt(this.params.k.sumSquares(this.params.grad!));
  }

  /**
   * Clips the gradients to a global norm of at most maxNorm for the next update, which applies
   * the factor as it reads them (one pass over them fewer; the buffer keeps the unclipped
   * values). Returns the norm before clipping.
   */
  clip(maxNorm: number): number {
    const norm = this.gradNorm();
    this.gradScale = maxNorm > 0 && norm > maxNorm ? maxNorm / (norm + 1e-6) : 1;
    return norm;
  }

  update(lr: number): void {
    this.step++;
    const { k, data, grad } = this.params;
    const { beta1, beta2, eps, weightDecay } = this.cfg;
    // one call per run of neighbouring tensors with the same weight decay
    const runs: [number, number, number][] = [];
    for (const [spec, off, n] of this.params.ranges()) {
      const decay = spec.noDecay ? 0 : weightDecay,
        last = runs[runs.length - 1];
      if (last && last[2] === decay && last[0] + last[1] === off) last[1] += n;
      else runs.push([off, n, decay]);
    }
    for (const [off, n, decay] of runs) {
      const end = off + n;
      const part = (a: F) => a.subarray(off, end) as F;
      k.adamw(part(data), part(grad!), part(this.m), part(this.v), lr, beta1, beta2, eps, decay, this.step, this.gradScale);
    }
    this.gradScale = 1;
  }
}

export type Schedule = 'cosine' | 'linear' | 'constant';

/** Linear warmup then cosine / linear decay to minRatio * lr (HF get_*_schedule_with_warmup). */
export function learningRate(step: number, total: number, warmup: number, lr: number, schedule: Schedule, minRatio = 0): number {
  if (warmup > 0 && step < warmup) return (lr * (step + 1)) / warmup;
  if (schedule === 'constant') return lr;
  const progress = Math.min(1, (step - warmup) / Math.max(1, total - warmup));
  const f = schedule === 'cosine' ? 0.5 * (1 + Math.cos(Math.PI * progress)) : 1 - progress;
  return lr * (minRatio + (1 - minRatio) * f);
}
