import type { FrozenWeight } from './frozen.js';
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
 * Matrices given as frozen weights (a base nothing trains, kept in its stored dtype) stay out
 * of the buffers: `weight` returns them, `get` only ever returns f32 tensors.
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
    private readonly frozen: ReadonlyMap<string, FrozenWeight> = new Map(),
  ) {
    this.specs = specs;
    if (trainable && frozen.size) throw new Error('a trainable parameter store cannot hold frozen weights');
    for (const [name, w] of frozen) {
      const spec = specs.find((s) => s.name === name);
      if (!spec || spec.shape.length !== 2 || spec.shape.some((d, i) => d !== w.shape[i]))
        throw new Error(
          `frozen weight ${name} [${w.shape}] is not a matrix of the store (${spec ? `[${spec.shape}]` : 'no such parameter'})`,
        );
    }
    const dense = specs.filter((s) => !frozen.has(s.name));
    let total = 0;
    const names = new Set<string>();
    for (const s of specs) {
      if (names.has(s.name)) throw new Error(`duplicate parameter name ${s.name}`);
      names.add(s.name);
    }
    for (const s of dense) {
      this.offsets.set(s.name, total);
      total += numel(s.shape);
    }
    this.data = k.alloc(total);
    this.grad = trainable ? k.alloc(total) : null;
    for (const s of dense) {
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
    return this.tensors.has(name) || this.frozen.has(name);
  }

  /** An f32 parameter; a frozen one throws (read it with `weight`). */
  get(name: string): Tensor<F> {
    const t = this.tensors.get(name);
    if (!t) {
      const w = this.frozen.get(name);
      throw new Error(w ? `parameter ${name} is frozen (${w.dtype}); only weight() reads it` : `no parameter named ${name}`);
    }
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
    // a frozen weight lives outside the buffer, in its own dtype: those projections run apart
    if (names.some((n) => this.frozen.has(n))) return null;
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

  /** A parameter as the kernels read it: the f32 tensor or the frozen weight. */
  weight(name: string): Tensor<F> | FrozenWeight {
    return this.frozen.get(name) ?? this.get(name);
  }

  /** The frozen weight of that name, if it is one. */
  frozenWeight(name: string): FrozenWeight | undefined {
    return this.frozen.get(name);
  }

  /** Values held, f32 and frozen. */
  get count(): number {
    return this.specs.reduce((n, s) => n + numel(s.shape), 0);
  }

  /** [name, offset, length] of each f32 parameter in the shared buffers. */
  *ranges(): Generator<[ParamSpec, number, number]> {
    for (const s of this.specs) if (!this.frozen.has(s.name)) yield [s, this.offsets.get(s.name)!, numel(s.shape)];
  }

  zeroGrad(): void {
    this.grad?.fill(0);
  }
}

export function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}
