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

  /** Scales gradients so their global norm is at most maxNorm; returns the norm before. */
  clip(maxNorm: number): number {
    const norm = this.gradNorm();
    if (maxNorm > 0 && norm > maxNorm) this.params.k.scale(this.params.grad!, maxNorm / (norm + 1e-6));
    return norm;
  }

  update(lr: number): void {
    this.step++;
    const { k, data, grad } = this.params;
    const { beta1, beta2, eps, weightDecay } = this.cfg;
    for (const [spec, off, n] of this.params.ranges()) {
      const end = off + n;
      k.adamw(
        data.subarray(off, end) as F,
        grad!.subarray(off, end) as F,
        this.m.subarray(off, end) as F,
        this.v.subarray(off, end) as F,
        lr,
        beta1,
        beta2,
        eps,
        spec.noDecay ? 0 : weightDecay,
        this.step,
      );
    }
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
