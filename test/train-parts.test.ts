// Ranks that split a micro-batch (train/trainer.ts rankShare) each run rows of it: for every
// stage's task, the parts' losses, metrics and gradients must sum to the whole micro-batch's.
import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { nativeKernels } from '../src/engine/native.js';
import { Rng } from '../src/engine/rng.js';
import { Context } from '../src/engine/tensor.js';
import { saveModel } from '../src/model/checkpoint.js';
import { Llama } from '../src/model/llama.js';
import { RewardModel } from '../src/model/reward.js';
import { DpoTask } from '../src/train/dpo.js';
import type { PreferencePair } from '../src/train/preference.js';
import { RewardTask } from '../src/train/reward.js';
import { SftTask, type SftExample } from '../src/train/sft.js';
import { rankShare, type MicroResult, type RowRange, type TrainTask } from '../src/train/trainer.js';
import { parseModelConfig } from '../src/model/config.js';
import { tmpDir } from './helpers.js';

const config = parseModelConfig(
  { vocab_size: 64, hidden_size: 32, intermediate_size: 48, num_hidden_layers: 2, num_attention_heads: 4 },
  'test',
);
const B = 4;
const noSave = async () => {};

function randomIds(rng: Rng, n: number): number[] {
  return Array.from({ length: n }, () => rng.int(config.vocab_size));
}

/** An answer of random length after a random prompt, as collateResponses expects. */
function response(rng: Rng): PreferencePair['chosen'] {
  const start = 2 + rng.int(4),
    end = start + 2 + rng.int(6);
  return { ids: randomIds(rng, end), start, end };
}

function pairs(seed: number, n: number): PreferencePair[] {
  const rng = new Rng(seed);
  return Array.from({ length: n }, () => ({ prompt: [], chosen: response(rng), rejected: response(rng) }));
}

/** The micro-batch run whole, then as the given parts: both results and gradients. */
function wholeAndParts<F extends Float32Array>(task: TrainTask<F>, parts: RowRange[]) {
  const ctx = new Context(nativeKernels) as unknown as Context<F>;
  const run = (rows?: RowRange[]) => {
    task.params.zeroGrad();
    const results: MicroResult[] = (rows ?? [undefined]).map((r) => {
      const out = task.microStep(ctx, 3, 0.5, r);
      ctx.reset();
      return out;
    });
    return { results, grad: Float64Array.from(task.params.grad!) };
  };
  return { whole: run(), parts: run(parts) };
}

function assertPartsSum(task: TrainTask<Float32Array>, name: string) {
  const { whole, parts } = wholeAndParts(task, [
    { from: 0, to: 1 },
    { from: 1, to: 4 },
  ]);
  const sum = (f: (r: MicroResult) => number) => parts.results.reduce((s, r) => s + f(r), 0);
  const w = whole.results[0];
  assert.ok(
    Math.abs(sum((r) => r.loss) - w.loss) < 1e-6 * Math.max(1, Math.abs(w.loss)),
    `${name}: loss ${sum((r) => r.loss)} vs ${w.loss}`,
  );
  assert.equal(
    sum((r) => r.tokens),
    w.tokens,
    `${name}: tokens`,
  );
  for (const [k, v] of Object.entries(w.metrics ?? {})) {
    const s = sum((r) => r.metrics![k]);
    assert.ok(Math.abs(s - v) < 1e-5 * Math.max(1, Math.abs(v)), `${name}: ${k} ${s} vs ${v}`);
  }
  let worst = 0,
    scale = 0;
  whole.grad.forEach((g, i) => {
    worst = Math.max(worst, Math.abs(g - parts.grad[i]));
    scale = Math.max(scale, Math.abs(g));
  });
  // float32 sums in another order: measured at most ~1e-7 of the largest gradient
  assert.ok(scale > 0 && worst <= 1e-5 * scale, `${name}: gradients differ by ${worst} (largest ${scale})`);
}

test('rankShare: N ranks cover the global batch once, in order, as whole micro-batches or rows', () => {
  assert.deepEqual(rankShare(1, 2, 4, 2), [{ micro: 1 }]);
  assert.deepEqual(rankShare(0, 2, 8, 1), [{ micro: 0, rows: { from: 0, to: 4 } }]);
  assert.deepEqual(rankShare(1, 4, 3, 4), [{ micro: 1 }]);
  assert.deepEqual(rankShare(1, 4, 4, 3), [
    { micro: 0, rows: { from: 3, to: 4 } },
    { micro: 1, rows: { from: 0, to: 2 } },
  ]);
  for (const [size, batch, accum] of [
    [2, 4, 2],
    [2, 8, 1],
    [3, 2, 3],
    [4, 3, 4],
    [6, 4, 3],
  ]) {
    const seen: string[] = [];
    for (let r = 0; r < size; r++)
      for (const { micro, rows } of rankShare(r, size, batch, accum))
        for (let b = rows?.from ?? 0; b < (rows?.to ?? batch); b++) seen.push(`${micro}:${b}`);
    const expected = Array.from({ length: batch * accum }, (_, g) => `${Math.floor(g / batch)}:${g % batch}`);
    assert.deepEqual(seen, expected, `${size} ranks, batch ${batch} x ${accum}`);
  }
});

test('SFT, reward-model and DPO micro-batches split into rows sum to the whole', async () => {
  const rng = new Rng(11);
  const sft: SftExample[] = Array.from({ length: 6 }, () => {
    const ids = randomIds(rng, 6 + rng.int(10));
    const answer = 2 + rng.int(ids.length - 3);
    return { ids, labels: ids.map((t, i) => (i >= answer ? t : -100)) };
  });
  const opts = { batchSize: B, recompute: false, seed: 5 };
  assertPartsSum(new SftTask(Llama.random(nativeKernels, config, 2), sft, [], opts, null, noSave), 'sft');

  const dir = tmpDir('chimed-parts-');
  await saveModel(path.join(dir, 'lm'), Llama.random(nativeKernels, config, 3, false));
  const rm = await RewardModel.fromCausalLm(path.join(dir, 'lm'), nativeKernels, true, 4);
  assertPartsSum(new RewardTask(rm, pairs(1, 6), [], opts, null, noSave), 'rm');

  const policy = Llama.random(nativeKernels, config, 6);
  const dpo = new DpoTask(policy, pairs(2, 6), [], { ...opts, beta: 0.1, loss: 'sigmoid' }, null, noSave, new Context(nativeKernels));
  assertPartsSum(dpo, 'dpo');
});
