import type { FloatArray, Kernels } from './kernels.js';
import { Workspace } from './workspace.js';

/**
 * A tensor is a flat array plus a shape. Parameters are views into the parameter store's
 * single buffer; activations are views into the workspace arena. `grad` is allocated on
 * first use (zeroed), because backward kernels accumulate.
 */
export class Tensor<F extends FloatArray = FloatArray> {
  grad: F | null = null;

  constructor(
    readonly data: F,
    readonly shape: readonly number[],
    readonly requiresGrad = false,
    grad: F | null = null,
  ) {
    this.grad = grad;
    const n = shape.reduce((a, b) => a * b, 1);
    if (n !== data.length) throw new RangeError(`tensor shape [${shape}] holds ${n} values but data has ${data.length}`);
  }

  get size(): number {
    return this.data.length;
  }
}

/**
 * Everything an op needs: the kernels, the activation arena and the tape. A context with
 * `recording = false` runs forward only (evaluation, generation, recomputed blocks).
 */
export class Context<F extends FloatArray = FloatArray> {
  private backs: (() => void)[] = [];
  recording: boolean;
  /** Training mode (dropout on). Separate from recording: a recomputed block's first pass trains without a tape. */
  training: boolean;

  constructor(
    readonly k: Kernels<F>,
    readonly ws: Workspace<F> = new Workspace<F>((n) => k.alloc(n)),
    recording = true,
    training = recording,
  ) {
    this.recording = recording;
    this.training = training;
  }

  tensor(shape: readonly number[], requiresGrad: boolean, zero = false): Tensor<F> {
    const n = shape.reduce((a, b) => a * b, 1);
    return new Tensor(this.ws.alloc(n, zero), shape, requiresGrad);
  }

  /** The gradient buffer of t, allocated zeroed on first use. */
  gradOf(t: Tensor<F>): F {
    if (!t.grad) t.grad = this.ws.alloc(t.size, true);
    return t.grad;
  }

  /**
   * The beta for a kernel writing t's gradient (GEMM: C = op(A) op(B) + beta C): 1 to add to a
   * gradient t already has, 0 to overwrite a new one, which is then allocated without the zero
   * fill that gradOf pays (a full pass over memory).
   */
  gradBeta(t: Tensor<F>): 0 | 1 {
    if (t.grad) return 1;
    t.grad = this.ws.alloc(t.size);
    return 0;
  }

  /**
   * Adds g, the gradient of an op's output, to t's gradient. A first gradient takes g itself,
   * no copy: an output's gradient is read only by the backward of the op that produced it, which
   * is running now, so later writes through t cannot reach a reader. One input only may take it.
   */
  passGrad(t: Tensor<F>, g: F): void {
    if (t.grad) this.k.axpy(t.grad, g, 1);
    else t.grad = g;
  }

  /** Records a backward closure when recording and any input needs a gradient. */
  record(inputs: Tensor<F>[], back: () => void): boolean {
    if (!this.recording || !inputs.some((t) => t.requiresGrad)) return false;
    this.backs.push(back);
    return true;
  }

  /** Backpropagates from a scalar: d(root)/d(root) = seed. Clears the tape. */
  backward(root: Tensor<F>, seed = 1): void {
    if (root.size !== 1) throw new RangeError(`backward needs a scalar, got shape [${root.shape}]`);
    this.gradOf(root)[0] += seed;
    this.runBackward();
  }

  /** Runs the recorded closures in reverse; used directly when the output grads are already set. */
  runBackward(): void {
    for (let i = this.backs.length - 1; i >= 0; i--) this.backs[i]();
    this.backs = [];
  }

  /** Drops the tape and every activation (end of step). */
  reset(): void {
    this.backs = [];
    this.ws.reset();
  }

  /** A context sharing kernels, arena and mode but with its own tape (recomputation). */
  child(recording: boolean): Context<F> {
    return new Context(this.k, this.ws, recording, this.training);
  }

  /** Forward-only, dropout off, same arena (evaluation inside a training loop). */
  inference(): Context<F> {
    return new Context(this.k, this.ws, false, false);
  }
}
