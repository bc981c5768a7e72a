import assert from 'node:assert/strict';
import fs from 'node:fs';
import { test } from 'node:test';
import { dropout, gatherRows, linear, pairLoss, segmentSum, weightedSum } from '../src/engine/ops.js';
import { cpuMs, KernelProfile, mainThreadCpuMs } from '../src/engine/profile.js';
import { referenceKernels as k } from '../src/engine/reference.js';
import { Rng } from '../src/engine/rng.js';
import { Context, Tensor } from '../src/engine/tensor.js';

/** Central-difference check of d f / d x for a scalar-valued op graph on the float64 reference. */
function gradCheck(name: string, x: Tensor<Float64Array>, f: (ctx: Context<Float64Array>) => Tensor<Float64Array>) {
  const ctx = new Context(k);
  x.grad = new Float64Array(x.size);
  ctx.backward(f(ctx));
  const h = 1e-6;
  for (let i = 0; i < x.size; i++) {
    const orig = x.data[i];
    x.data[i] = orig + h;
    const up = f(new Context(k, undefined, false, true)).data[0];
    x.data[i] = orig - h;
    const down = f(new Context(k, undefined, false, true)).data[0];
    x.data[i] = orig;
    const fd = (up - down) / (2 * h);
    assert.ok(Math.abs(fd - x.grad[i]) <= 1e-6 * Math.max(1, Math.abs(fd)), `${name}[${i}]: analytic ${x.grad[i]} vs numeric ${fd}`);
  }
}

const rand = (n: number, seed: number) => {
  const r = new Rng(seed);
  return Float64Array.from({ length: n }, () => r.normal());
};
const param = (shape: number[], seed: number) =>
  new Tensor(
    rand(
      shape.reduce((a, b) => a * b),
      seed,
    ),
    shape,
    true,
  );

test('gatherRows and segmentSum backpropagate to the rows they read', () => {
  const x = param([5, 3], 1);
  gradCheck('gatherRows', x, (ctx) => weightedSum(ctx, gatherRows(ctx, x, Int32Array.from([4, 0, 4]), 3), rand(9, 2)));
  const y = param([7], 3);
  gradCheck('segmentSum', y, (ctx) => weightedSum(ctx, segmentSum(ctx, y, Int32Array.from([0, 0, -1, 1, 2, 2, -1]), 3), [0.5, -2, 3]));
});

for (const kind of ['sigmoid', 'ipo'] as const) {
  test(`pairLoss (${kind}) has the right value and gradient`, () => {
    const x = param([8], 4);
    const ref = [0.3, -0.2, 0.1, 0];
    gradCheck(`pairLoss ${kind}`, x, (ctx) => pairLoss(ctx, x, ref, 0.7, kind));
    const v = pairLoss(new Context(k, undefined, false), x, ref, 0.7, kind).data[0];
    let expect = 0;
    for (let i = 0; i < 4; i++) {
      const h = x.data[i] - x.data[4 + i] - ref[i];
      expect += kind === 'sigmoid' ? -Math.log(1 / (1 + Math.exp(-0.7 * h))) : (h - 1 / 1.4) ** 2;
    }
    assert.ok(Math.abs(v - expect / 4) < 1e-12);
  });
}

test('sigmoid pair loss is log 2 when chosen and rejected score the same (the 0.693 plateau)', () => {
  const x = new Tensor(Float64Array.from([1, 2, 1, 2]), [4], true);
  assert.ok(Math.abs(pairLoss(new Context(k), x, [0, 0], 0.1, 'sigmoid').data[0] - Math.log(2)) < 1e-12);
});

test('dropout: mask is a pure function of the seed, off outside training, gradient matches', () => {
  const x = param([4, 6], 5);
  const W = param([3, 6], 6);
  gradCheck('dropout', x, (ctx) => weightedSum(ctx, linear(ctx, dropout(ctx, x, 0.3, 99), W), rand(12, 7)));
  const a = dropout(new Context(k), x, 0.5, 1).data,
    b = dropout(new Context(k), x, 0.5, 1).data;
  assert.deepEqual(a, b);
  assert.ok(a.some((v) => v === 0) && a.some((v, i) => Math.abs(v - 2 * x.data[i]) < 1e-12));
  assert.equal(dropout(new Context(k, undefined, false), x, 0.5, 1), x);
});

test('KernelProfile counts every kernel call by phase and kind, GEMM flops by label, and computes the same as the kernels it wraps', () => {
  // linear forward is NT with M=10, its backward NN (dx, M=10) and TN (dW, M=12)
  const profile = new KernelProfile(k, (tA, tB, M) => (M <= 10 ? 'few-rows' : `${tA ? 'T' : 'N'}${tB ? 'T' : 'N'}-big`));
  const W = param([12, 3], 5),
    x = param([10, 3], 6);
  const run = (kern: typeof k) => {
    const ctx = new Context(kern);
    const y = weightedSum(ctx, linear(ctx, x, W), rand(120, 7));
    ctx.backward(y);
    return [y.data[0], ...W.grad!, ...x.grad!];
  };
  profile.phase = 'step';
  const profiled = run(profile.kernels);
  W.grad!.fill(0);
  x.grad!.fill(0);
  assert.deepEqual(profiled, run(k));
  const step = profile.snapshot().get('step')!;
  assert.deepEqual([...step.keys()].sort(), ['gemm TN-big', 'gemm few-rows']);
  assert.equal(step.get('gemm few-rows')!.calls, 2);
  assert.equal(step.get('gemm few-rows')!.flops, 2 * (2 * 10 * 12 * 3));
  assert.equal(step.get('gemm TN-big')!.flops, 2 * 12 * 3 * 10);
  assert.ok([...step.values()].every((t) => t.ms >= 0 && t.cpuMs >= 0));
  profile.reset();
  assert.equal(profile.snapshot().size, 0);
  assert.equal(profile.kernels.name, 'reference');
});

test("mainThreadCpuMs counts the main thread's work, a part of the process CPU time (null without Linux schedstat)", () => {
  const t0 = mainThreadCpuMs(),
    c0 = cpuMs();
  let x = 0;
  for (let i = 0; i < 2e7; i++) x += Math.sqrt(i);
  const t1 = mainThreadCpuMs(),
    c1 = cpuMs();
  assert.ok(x > 0);
  if (!fs.existsSync('/proc/thread-self/schedstat')) return assert.equal(t0, null);
  const thread = t1! - t0!,
    proc = c1 - c0;
  assert.ok(thread > 1, `main thread ${thread} ms for 2e7 square roots`);
  // getrusage (process.cpuUsage) is charged at scheduler ticks (4 ms at HZ 250) while schedstat
  // counts nanoseconds, so on a loaded machine the two disagree by a few ticks (measured: 59.3
  // against 57.9 ms); a thread counting another thread's work would be off by far more
  assert.ok(thread <= proc * 1.05 + 12, `main thread ${thread} ms within the process's ${proc} ms`);
});
