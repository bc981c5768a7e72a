/**
 * RoPE frequencies of each scaling (src/model/rope.ts) against their definitions written out
 * independently here, and the decoder with dynamic NTK (which llama.cpp lacks) against plain
 * RoPE where the two must agree. Linear, yarn and llama3 are also checked end to end against
 * llama.cpp in test/gguf-families.test.ts.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { referenceKernels } from '../src/engine/reference.js';
import { Context } from '../src/engine/tensor.js';
import { parseModelConfig, type ModelConfig } from '../src/model/config.js';
import { Llama, sequentialPositions } from '../src/model/llama.js';
import { ropeFrequencies } from '../src/model/rope.js';

const cfg = (over: Record<string, unknown>): ModelConfig =>
  parseModelConfig(
    { vocab_size: 40, hidden_size: 64, intermediate_size: 48, num_hidden_layers: 2, num_attention_heads: 4, ...over },
    'test',
  );
const plain = (d: number, base: number) => Array.from({ length: d / 2 }, (_, i) => Math.pow(base, -(2 * i) / d));
const close = (a: ArrayLike<number>, b: ArrayLike<number>, tol = 1e-12) => {
  assert.equal(a.length, b.length);
  for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i] - b[i]) <= tol * Math.abs(b[i]), `[${i}] ${a[i]} vs ${b[i]}`);
};

test('plain and linear RoPE: theta^(-2i/d), divided by the factor', () => {
  close(ropeFrequencies(cfg({ rope_theta: 1e6 }), 0).invFreq, plain(16, 1e6));
  const lin = ropeFrequencies(cfg({ rope_scaling: { type: 'linear', factor: 4 } }), 0);
  close(
    lin.invFreq,
    plain(16, 1e4).map((f) => f / 4),
  );
  assert.equal(lin.scale, 1);
});

test('dynamic NTK: plain up to max_position_embeddings, then the base grows with the sequence length', () => {
  const c = cfg({ max_position_embeddings: 100, rope_scaling: { type: 'dynamic', factor: 2 } });
  for (const L of [1, 50, 100]) close(ropeFrequencies(c, L).invFreq, plain(16, 1e4));
  for (const L of [101, 150, 400]) {
    const base = 1e4 * Math.pow((2 * L) / 100 - 1, 16 / 14);
    close(ropeFrequencies(c, L).invFreq, plain(16, base));
  }
  assert.ok(ropeFrequencies(c, 400).invFreq[7] < ropeFrequencies(c, 150).invFreq[7], 'longer sequences rotate slower');
});

test('dynamic NTK in the decoder: identical to plain RoPE up to max_position_embeddings, different past it (float64)', () => {
  const logits = (c: ModelConfig, T: number) => {
    const model = Llama.random(referenceKernels, c, 5, false);
    const ctx = new Context(referenceKernels, undefined, false);
    return model.logits(
      ctx,
      model.hidden(ctx, { ids: Int32Array.from({ length: T }, (_, t) => (t * 7) % 40), pos: sequentialPositions(1, T), B: 1, T }),
    );
  };
  const dyn = cfg({ max_position_embeddings: 12, rope_scaling: { type: 'dynamic', factor: 3 }, initializer_range: 0.3 });
  const flat = cfg({ max_position_embeddings: 12, initializer_range: 0.3 });
  assert.deepEqual(logits(dyn, 12), logits(flat, 12));
  const a = logits(dyn, 20),
    b = logits(flat, 20);
  assert.deepEqual(a.subarray(0, 40), b.subarray(0, 40), 'position 0 is not rotated');
  assert.ok(
    a.subarray(40 * 19).some((v, i) => Math.abs(v - b[40 * 19 + i]) > 1e-6),
    'past 12 tokens the rotation differs',
  );
});

test("llama3: the per-frequency factors llama.cpp's converter derives (1, factor, or the smooth blend)", () => {
  // Llama-3.2-1B's RoPE
  const s = { rope_type: 'llama3', factor: 32, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 };
  const c = cfg({ hidden_size: 2048, num_attention_heads: 32, head_dim: 64, rope_theta: 500000, rope_scaling: s });
  const ours = ropeFrequencies(c, 0).invFreq,
    base = plain(64, 500000);
  const lowWavelen = 8192 / 1,
    highWavelen = 8192 / 4;
  const kinds = { kept: 0, divided: 0, smoothed: 0 };
  base.forEach((f, i) => {
    const wavelen = (2 * Math.PI) / f;
    let factor: number;
    if (wavelen < highWavelen) {
      factor = 1;
      kinds.kept++;
    } else if (wavelen > lowWavelen) {
      factor = 32;
      kinds.divided++;
    } else {
      const smooth = (8192 / wavelen - 1) / (4 - 1);
      factor = 1 / ((1 - smooth) / 32 + smooth);
      kinds.smoothed++;
    }
    assert.ok(Math.abs(f / ours[i] - factor) < 1e-9 * factor, `frequency ${i}: factor ${f / ours[i]} vs ${factor}`);
  });
  assert.ok(kinds.kept > 0 && kinds.divided > 0 && kinds.smoothed > 0, JSON.stringify(kinds));
});

test('yarn: high frequencies kept, low ones interpolated, a linear ramp between; attention factor as HF', () => {
  const c = cfg({ max_position_embeddings: 4096, rope_scaling: { rope_type: 'yarn', factor: 4, original_max_position_embeddings: 1024 } });
  const { invFreq, scale } = ropeFrequencies(c, 0),
    base = plain(16, 1e4);
  // correction range: dims where a frequency turns 32 (beta_fast) and 1 (beta_slow) times over 1024 positions
  const dimAt = (turns: number) => (16 * Math.log(1024 / (turns * 2 * Math.PI))) / (2 * Math.log(1e4));
  const low = Math.floor(dimAt(32)),
    high = Math.ceil(dimAt(1));
  base.forEach((f, i) => {
    const ramp = Math.min(1, Math.max(0, (i - low) / (high - low)));
    assert.ok(Math.abs(invFreq[i] - (f * (1 - ramp) + (f / 4) * ramp)) < 1e-15, `frequency ${i}`);
  });
  assert.ok(invFreq[0] === base[0] && Math.abs(invFreq[7] - base[7] / 4) < 1e-18);
  assert.equal(scale, 0.1 * Math.log(4) + 1);
  const withM = ropeFrequencies(cfg({ rope_scaling: { rope_type: 'yarn', factor: 4, mscale: 1, mscale_all_dim: 0.5 } }), 0).scale;
  assert.ok(Math.abs(withM - (0.1 * Math.log(4) + 1) / (0.05 * Math.log(4) + 1)) < 1e-15);
  assert.equal(ropeFrequencies(cfg({ rope_scaling: { rope_type: 'yarn', factor: 4, attention_factor: 1.5 } }), 0).scale, 1.5);
  const untruncated = ropeFrequencies(
    cfg({
      max_position_embeddings: 4096,
      rope_scaling: { rope_type: 'yarn', factor: 4, original_max_position_embeddings: 1024, truncate: false },
    }),
    0,
  ).invFreq;
  assert.ok(
    untruncated.some((f, i) => f !== invFreq[i]),
    'truncate: false keeps fractional correction dims',
  );
});
