import type { FloatArray, Kernels } from './kernels.js';
import { Tensor } from './tensor.js';

export interface ParamSpec {
  name: string;
  shape: number[];
  /** Excluded from weight decay (norm gains), as in HF and TRL. */
  noDecay?: boolean;
}

/**
 * All parameters of a model (or of an adapter) in one contiguous buffer, gradients in a
 * second and AdamW moments in two more, each allocated once and handed to the kernels as
 * views: no per-step copies, and one adamw call per run of tensors with the same weight decay.
 */
export class ParamStore<F extends FloatArray = FloatArray> {
  readonly data: F;
  readonly grad: F | null;
  readonly specs: ParamSpec[];
  private readonly offsets = new Map<string, number>();
  private readonly tensors = new Map<string, Tensor<F>>();
  private readonly stacks = new Map<string, Tensor<F> | null>();

  constructor(
    readonly k: Kernels<F>,
    specs: ParamSpec[],
    readonly trainable: boolean,
  ) {
    this.specs = specs;
    let total = 0;
    for (const s of specs) {
      if (this.offsets.has(s.name)) throw new Error(`duplicate parameter name ${s.name}`);
      this.offsets.set(s.name, total);
      total += numel(s.shape);
    }
    this.data = k.alloc(total);
    this.grad = trainable ? k.alloc(total) : null;
    for (const s of specs) {
      const off = this.offsets.get(s.name)!;
      const n = numel(s.shape);
      const g = this.grad ? (this.grad.subarray(off, off + n) as F) : null;
      this.tensors.set(s.name, new Tensor(this.data.subarray(off, off + n) as F, s.shape, trainable, g));
    }
  }

  get size(): number {
    return this.data.length;
  }

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  get(name: string): Tensor<F> {
    const t = this.tensors.get(name);
    if (!t) throw new Error(`no parameter named ${name}`);
    return t;
  }

  /**
   * The named matrices stacked by rows as one tensor over the same storage and gradient, when
   * they lie back to back in the buffer with one column count; otherwise null. A fused
   * projection (q | k | v, gate | up) then runs as one GEMM with no copy of its weights.
   */
  stacked(names: string[]): Tensor<F> | null {
    const key = names.join('\n');
    if (!this.stacks.has(key)) this.stacks.set(key, this.stack(names));
    return this.stacks.get(key)!;
  }

  private stack(names: string[]): Tensor<F> | null {
    const parts = names.map((n) => this.get(n));
    const cols = parts[0].shape[1];
    let end = this.offsets.get(names[0])!,
      rows = 0;
    for (const [i, t] of parts.entries()) {
      if (t.shape.length !== 2 || t.shape[1] !== cols || this.offsets.get(names[i]) !== end) return null;
      end += t.size;
      rows += t.shape[0];
    }
    const start = this.offsets.get(names[0])!;
    const grad = this.grad ? (this.grad.subarray(start, end) as F) : null;
    return new Tensor(this.data.subarray(start, end) as F, [rows, cols], this.trainable, grad);
  }

  /** [name, offset, length] of each parameter in the shared buffers. */
  *ranges(): Generator<[ParamSpec, number, number]> {
    for (const s of this.specs) yield [s, this.offsets.get(s.name)!, numel(s.shape)];
  }

  zeroGrad(): void {
    this.grad?.fill(0);
  }
}

export function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}
