/**
 * The fused, chunked output projection + log-softmax (src/engine/linear-logprobs.ts) against
 * its whole-logits float64 twin (linearLogprobsReference), central finite differences, and the
 * native float32 kernels; plus the block shapes it picks and the arena it needs.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { FloatArray, Kernels } from '../src/engine/kernels.js';
import { linearLogprobs, logitsBlock, LOGITS_CHUNK_FLOATS, type LogitsBlock } from '../src/engine/linear-logprobs.js';
import { nativeKernels } from '../src/engine/native.js';
import { weightedSum } from '../src/engine/ops.js';
import { linearLogprobsReference, referenceKernels } from '../src/engine/reference.js';
import { Rng } from '../src/engine/rng.js';
import { Context, Tensor } from '../src/engine/tensor.js';
import { Workspace } from '../src/engine/workspace.js';
import { gradCheck, maxRelErr } from './numerics.js';

/** A problem of N rows, width D, vocabulary V: float32-representable inputs, some ignored targets, a target in the last column. */
function problem(N: number, D: number, V: number, seed: number) {
  const rng = new Rng(seed);
  const rand = (n: number, s: number) => Float64Array.from({ length: n }, () => Math.fround(rng.normal() * s));
  const targets = Int32Array.from({ length: N }, (_, r) => (r % 3 === 1 ? -100 : rng.int(V)));
  targets[0] = V - 1;
  return { x: rand(N * D, 1), W: rand(V * D, 0.5), targets, c: rand(N, 1), D, V };
}

type Problem = ReturnType<typeof problem>;

/** logp, dx and dW (null when W is frozen) of the op under kernels k, for the loss sum_r c[r] logp[r]. */
function run<F extends FloatArray>(k: Kernels<F>, p: Problem, block?: LogitsBlock, trainW = true, ws?: Workspace<F>) {
  const ctx = new Context(k, ws);
  const copy = (a: Float64Array) => {
    const out = k.alloc(a.length);
    out.set(a);
    return out;
  };
  const x = new Tensor(copy(p.x), [p.x.length / p.D, p.D], true),
    W = new Tensor(copy(p.W), [p.V, p.D], trainW);
  const logp = linearLogprobs(ctx, x, W, p.targets, block);
  const out = { logp: Float64Array.from(logp.data), dx: null as Float64Array | null, dW: null as Float64Array | null };
  ctx.backward(weightedSum(ctx, logp, p.c));
  out.dx = Float64Array.from(x.grad!);
  out.dW = W.grad && Float64Array.from(W.grad);
  return out;
}

describe('linearLogprobs', () => {
  // blocks that divide neither the 7 rows nor the 23 columns, one row at a time, and the whole grid
  for (const block of [{ rows: 3, cols: 5 }, { rows: 1, cols: 23 }, { rows: 7, cols: 23 }, undefined])
    test(`chunked on the reference kernels equals the whole-logits twin, block ${block ? `${block.rows}x${block.cols}` : 'default'}`, () => {
      const p = problem(7, 6, 23, 1);
      const want = linearLogprobsReference(p.x, p.W, p.targets, p.c);
      const got = run(referenceKernels, p, block);
      assert.ok(maxRelErr(got.logp, want.logp) < 1e-12, 'logp');
      assert.ok(maxRelErr(got.dx!, want.dx) < 1e-12, 'dx');
      assert.ok(maxRelErr(got.dW!, want.dW) < 1e-12, 'dW');
      for (const r of [1, 4]) assert.equal(got.logp[r], 0, `ignored row ${r}`);
      assert.ok(
        got.dx!.subarray(6, 12).every((v) => v === 0),
        'an ignored row gets no gradient',
      );
    });

  test('a frozen head gets no gradient; the input still does', () => {
    const p = problem(5, 4, 11, 2);
    const got = run(referenceKernels, p, { rows: 2, cols: 3 }, false);
    assert.equal(got.dW, null);
    assert.ok(maxRelErr(got.dx!, linearLogprobsReference(p.x, p.W, p.targets, p.c).dx) < 1e-12);
  });

  test('gradients match central finite differences (float64, chunked)', () => {
    const p = problem(5, 4, 13, 3);
    const block = { rows: 2, cols: 4 };
    const { dx, dW } = run(referenceKernels, p, block);
    const loss = () => {
      const ctx = new Context(referenceKernels, undefined, false);
      const logp = linearLogprobs(ctx, new Tensor(p.x, [5, 4]), new Tensor(p.W, [13, 4]), p.targets, block);
      return logp.data.reduce((s, v, r) => s + v * p.c[r], 0);
    };
    gradCheck('dx', loss, p.x, dx!, p.x.length);
    gradCheck('dW', loss, p.W, dW!, p.W.length);
  });

  test('native float32 matches the float64 twin with the vocabulary in chunks that do not divide it', () => {
    const p = problem(37, 32, 1000, 4);
    const want = linearLogprobsReference(p.x, p.W, p.targets, p.c);
    for (const block of [{ rows: 8, cols: 96 }, undefined]) {
      const got = run(nativeKernels, p, block);
      assert.ok(maxRelErr(got.logp, want.logp) < 1e-5, `logp ${maxRelErr(got.logp, want.logp)}`);
      assert.ok(maxRelErr(got.dx!, want.dx) < 1e-4, `dx ${maxRelErr(got.dx!, want.dx)}`);
      assert.ok(maxRelErr(got.dW!, want.dW) < 1e-4, `dW ${maxRelErr(got.dW!, want.dW)}`);
    }
  });

  test('the arena never holds the whole logits', () => {
    const [N, D, V, block] = [64, 8, 20000, { rows: 64, cols: 256 }];
    const ws = new Workspace<Float32Array>((n) => new Float32Array(n), 1024);
    run(nativeKernels, problem(N, D, V, 5), block, true, ws);
    ws.reset(); // one buffer sized for the peak
    // dx and dW (the arena holds them here; a model's dW is the parameter store's), per-row
    // statistics, and a few blocks of arena slack: a fraction of the 1.28M logits
    const bound = N * D + V * D + 4 * block.rows * block.cols;
    assert.ok(ws.capacity() < bound && bound < (N * V) / 4, `arena grew to ${ws.capacity()} floats`);
  });

  test('default blocks: about LOGITS_CHUNK_FLOATS logits, vocabulary chunks at least 1024 wide', () => {
    assert.deepEqual(logitsBlock(512, 151936), { rows: 512, cols: LOGITS_CHUNK_FLOATS / 512 });
    assert.deepEqual(logitsBlock(8 * 512, 151936), { rows: 1024, cols: 1024 });
    assert.deepEqual(logitsBlock(3, 151936), { rows: 3, cols: 151936 });
    assert.deepEqual(logitsBlock(7, 13), { rows: 7, cols: 13 });
    assert.throws(() => run(referenceKernels, problem(2, 2, 3, 6), { rows: 0, cols: 2 }), /logits block 0x2 must be positive integers/);
  });
});
