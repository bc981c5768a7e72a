// A model whose base is frozen in bf16 / f16 / q8_0: the same outputs as the f32 model holding
// the same (rounded) values, log-probs within the bound of the unrounded f32 model,
// LoRA gradients through the frozen base against central differences (float64 reference) and
// the native kernels against that reference, checkpoints written in the base's dtype and
// read back memory-mapped without a copy, and merging into a frozen base.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { encodeFrozen, FrozenWeight, type BaseDtype } from '../src/engine/frozen.js';
import type { FloatArray, Kernels } from '../src/engine/kernels.js';
import { frozenToF32, nativeKernels as nk } from '../src/engine/native.js';
import { weightedSum } from '../src/engine/ops.js';
import { ParamStore } from '../src/engine/params.js';
import { referenceKernels as rk } from '../src/engine/reference.js';
import { Rng } from '../src/engine/rng.js';
import { Context } from '../src/engine/tensor.js';
import { readSafetensorsHeader } from '../src/io/safetensors.js';
import { loadModel, saveModel } from '../src/model/checkpoint.js';
import { parseModelConfig, type ModelConfig } from '../src/model/config.js';
import { Llama, sequentialPositions } from '../src/model/llama.js';
import { LoraAdapter } from '../src/model/lora.js';
import { runCli, tmpDir } from './helpers.js';
import { qaSet, untrainedChatModel, writeJsonl } from './fixtures.js';
import { gradCheck } from './numerics.js';

// Rows of whole q8_0 blocks everywhere (hidden 64, intermediate 96, q width 64).
const sizes = {
  vocab_size: 50,
  hidden_size: 64,
  intermediate_size: 96,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  initializer_range: 0.1,
};
const families: Record<string, ModelConfig> = {
  'qwen2 (tied, qkv bias)': parseModelConfig({ ...sizes, model_type: 'qwen2', num_key_value_heads: 2, tie_word_embeddings: true }, 't'),
  'qwen3 (q/k norm, head_dim 32)': parseModelConfig({ ...sizes, model_type: 'qwen3', num_key_value_heads: 2, head_dim: 32 }, 't'),
  'baichuan2 (W_pack, NormHead)': parseModelConfig({ ...sizes, model_type: 'baichuan' }, 't'),
};
const B = 2,
  T = 12;
const rng = new Rng(5);
const ids = Int32Array.from({ length: B * T }, () => rng.int(50));
const targets = Int32Array.from({ length: B * T }, (_, i) => (i % 5 === 0 ? -100 : rng.int(50)));
const batch = { ids, pos: sequentialPositions(B, T), B, T };
const lossWeights = Float64Array.from(targets, (t) => (t < 0 ? 0 : -0.1));

const logprobs = <F extends FloatArray>(m: Llama<F>) => Array.from(m.logprobs(new Context(m.k, undefined, false), batch, targets).data);
/** Log-probs of one 8-token sequence: every product has decoding's few rows. */
const decodeLogprobs = <F extends FloatArray>(m: Llama<F>) =>
  Array.from(
    m.logprobs(
      new Context(m.k, undefined, false),
      { ids: ids.subarray(0, 8), pos: sequentialPositions(1, 8), B: 1, T: 8 },
      targets.subarray(0, 8),
    ).data,
  );
const maxDiff = (a: number[], b: number[]) => a.reduce((m, x, i) => Math.max(m, Math.abs(x - b[i])), 0);

/** The f32 model holding exactly a frozen model's (rounded) values: the same product without the frozen kernels. */
function widened<F extends FloatArray, G extends FloatArray>(k: Kernels<F>, m: Llama<G>): Llama<F> {
  const store = new ParamStore(k, m.params.specs, false);
  for (const s of store.specs) {
    const W = m.params.weight(s.name);
    store.get(s.name).data.set(W instanceof FrozenWeight ? frozenToF32(W) : W.data);
  }
  return new Llama(m.config, store);
}

/** Non-zero biases and a random adapter B, so every path contributes. */
function adapter<F extends FloatArray>(model: Llama<F>): LoraAdapter<F> {
  const r = new Rng(9);
  for (const s of model.params.specs)
    if (s.name.endsWith('.bias')) model.params.get(s.name).data.forEach((_, i, a) => (a[i] = r.normal() * 0.3));
  const a = new LoraAdapter(model, { r: 3, alpha: 6, dropout: 0, targetModules: 'all-linear' }).init(1);
  for (const s of a.params.specs)
    if (s.name.includes('lora_B')) a.params.get(s.name).data.forEach((_, i, arr) => (arr[i] = r.normal() * 0.3));
  return a.attach();
}

for (const [family, c] of Object.entries(families))
  test(`frozen base (${family}): outputs equal the f32 model of the same values; within 0.05 of the unrounded f32 model`, () => {
    const f32Model = Llama.random(nk, c, 3, false);
    const f32 = logprobs(f32Model);
    for (const dtype of ['bf16', 'f16', 'q8_0'] as const) {
      const m = Llama.random(nk, c, 3, false, dtype);
      // drawn straight into the dtype: the f32 draw's values rounded (what chimed init --dtype writes)
      const up = m.params.weight('model.layers.0.mlp.up_proj.weight');
      assert.ok(up instanceof FrozenWeight);
      assert.deepEqual(up.bytes, encodeFrozen(dtype, f32Model.params.get('model.layers.0.mlp.up_proj.weight').data, up.shape).bytes);
      const got = logprobs(m);
      // measured: <= 2e-6 (summation order only)
      assert.ok(maxDiff(got, logprobs(widened(nk, m))) < 1e-4, `${dtype}: vs the same values in f32`);
      // the LM head in small blocks of rows and vocabulary reads the frozen head's row slices
      // (blocks of more rows than decoding's, whose q8_0 products round the activations: below)
      const blocked = m.logprobs(new Context(nk, undefined, false), batch, targets, { logitsBlock: { rows: 12, cols: 7 } }).data;
      assert.ok(maxDiff(Array.from(blocked), got) < 1e-5, `${dtype}: blocked LM head`);
      // the issue's bound for half precision; q8_0's is looser. Measured over seeds 1..5 and the
      // three families: bf16 <= 0.018, f16 <= 0.0021, q8_0 <= 0.046 nats per token
      assert.ok(maxDiff(got, f32) < (dtype === 'q8_0' ? 0.1 : 0.05), `${dtype}: ${maxDiff(got, f32)} nats from f32`);
      if (dtype === 'q8_0') {
        // decoding-sized products (8 rows) over q8_0 also round the activations to q8_0 blocks,
        // as llama.cpp does. Measured over seeds 1..5 and the three families: <= 0.033 nats per
        // token from the same weights with f32 activations (the bound for rounding
        // activations: 0.05), <= 0.048 from the unrounded f32 model
        const decoding = decodeLogprobs(m);
        assert.ok(maxDiff(decoding, decodeLogprobs(widened(nk, m))) < 0.05, 'q8_0 decoding: rounded activations');
        assert.ok(maxDiff(decoding, decodeLogprobs(f32Model)) < 0.1, 'q8_0 decoding: from f32');
      }
    }
  });

for (const [family, c] of Object.entries(families))
  test(`LoRA on a frozen bf16 base (${family}): gradients match central differences; native matches the float64 reference`, () => {
    const lossOf = <F extends FloatArray>(m: Llama<F>, ctx: Context<F>) => weightedSum(ctx, m.logprobs(ctx, batch, targets), lossWeights);
    const ref = Llama.random(rk, c, 4, false, 'bf16');
    const a = adapter(ref);
    const ctx = new Context(rk);
    ctx.backward(lossOf(ref, ctx));
    const g = Float64Array.from(a.params.grad!);
    gradCheck(`adapter over a frozen bf16 base`, () => lossOf(ref, new Context(rk, undefined, false, true)).data[0], a.params.data, g, 25);
    const nat = Llama.random(nk, c, 4, false, 'bf16');
    const an = adapter(nat);
    const nctx = new Context(nk);
    nctx.backward(lossOf(nat, nctx));
    const gn = an.params.grad!;
    const scale = g.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
    for (let i = 0; i < g.length; i++) assert.ok(Math.abs(gn[i] - g[i]) <= 1e-4 * scale, `native grad ${i}: ${gn[i]} vs ${g[i]}`);
  });

test('a bf16 base is written as bf16 and read back memory-mapped, never copied; other base dtypes on request', async () => {
  const c = families['qwen2 (tied, qkv bias)'];
  const m = Llama.random(nk, c, 6, false, 'bf16');
  const dir = tmpDir();
  await saveModel(dir, m);
  const file = path.join(dir, 'model.safetensors');
  const header = await readSafetensorsHeader(file);
  assert.equal(header.tensors.find((t) => t.name === 'model.embed_tokens.weight')!.dtype, 'BF16');
  assert.equal(header.tensors.find((t) => t.name === 'model.norm.weight')!.dtype, 'BF16');
  assert.equal(JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')).torch_dtype, 'bfloat16');

  const back = await loadModel(dir, nk, false);
  const W = back.params.weight('model.layers.1.self_attn.q_proj.weight') as FrozenWeight;
  assert.equal(W.dtype, 'bf16');
  assert.deepEqual(W.bytes, (m.params.weight('model.layers.1.self_attn.q_proj.weight') as FrozenWeight).bytes);
  assert.equal(W.bytes.buffer.byteLength, fs.statSync(file).size, 'the weight views the mapped file');
  assert.deepEqual(logprobs(back), logprobs(m));

  const asked: Record<BaseDtype, (w: unknown) => boolean> = {
    q8_0: (w) => w instanceof FrozenWeight && w.dtype === 'q8_0',
    f16: (w) => w instanceof FrozenWeight && w.dtype === 'f16',
    bf16: (w) => w instanceof FrozenWeight && w.dtype === 'bf16',
    f32: (w) => !(w instanceof FrozenWeight),
  };
  for (const [dtype, ok] of Object.entries(asked)) {
    const l = await loadModel(dir, nk, false, dtype as BaseDtype);
    assert.ok(ok(l.params.weight('model.embed_tokens.weight')), dtype);
    assert.ok(maxDiff(logprobs(l), logprobs(m)) < 0.05, dtype);
  }
  // full fine-tuning trains f32 master weights: the bf16 values widened exactly
  const full = await loadModel(dir, nk, true);
  assert.deepEqual(
    full.params.get('model.layers.0.mlp.down_proj.weight').data,
    frozenToF32(m.params.weight('model.layers.0.mlp.down_proj.weight') as FrozenWeight),
  );
});

test('merging an adapter into a frozen base rounds W + s B A into its dtype', () => {
  const c = families['qwen3 (q/k norm, head_dim 32)'];
  for (const dtype of ['bf16', 'q8_0'] as const) {
    const m = Llama.random(nk, c, 8, false, dtype);
    const a = adapter(m);
    const name = 'model.layers.1.mlp.gate_proj';
    const W = m.params.weight(`${name}.weight`) as FrozenWeight;
    const before = W.toF32();
    const A = a.params.get(`base_model.model.${name}.lora_A.weight`).data,
      Bm = a.params.get(`base_model.model.${name}.lora_B.weight`).data;
    const [rows, cols] = W.shape;
    const want = before.map((w, idx) => {
      const i = Math.floor(idx / cols),
        j = idx % cols;
      let s = 0;
      for (let q = 0; q < 3; q++) s += Bm[i * 3 + q] * A[q * cols + j];
      return w + a.scaling * s;
    });
    const unmerged = logprobs(m);
    a.merge();
    const expected = encodeFrozen(dtype, want, [rows, cols]).toF32();
    const got = W.toF32();
    for (let i = 0; i < got.length; i++)
      assert.ok(Math.abs(got[i] - expected[i]) <= 1e-6 + 0.01 * Math.abs(expected[i]), `${dtype} [${i}]`);
    // the merged model answers as the adapted one did, up to the rounding of the merged W;
    // measured over seeds 1..5 and 8: bf16 <= 0.013, q8_0 <= 0.048 nats per token
    assert.ok(maxDiff(logprobs(m), unmerged) < (dtype === 'q8_0' ? 0.1 : 0.05), dtype);
  }
});

test('chimed eval takes --base-dtype: perplexity of an f32 checkpoint read as bf16 / q8_0 moves, by well under 1%', async () => {
  const dir = tmpDir();
  const model = await untrainedChatModel(dir, { config: { hidden_size: 64, intermediate_size: 128, initializer_range: 0.2 } });
  const data = writeJsonl(
    path.join(dir, 'heldout.jsonl'),
    qaSet().sft.map((r, i) => ({ id: `d${i}`, text: r.prompt + r.response })),
  );
  const ppl = (dtype: string) => {
    const r = runCli(['eval', 'ppl', '--model', model, '--data', data, '--block-size', '32', '--base-dtype', dtype, '--json']);
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout.trim().split('\n').at(-1)!).ppl as number;
  };
  const f32 = ppl('f32');
  for (const dtype of ['bf16', 'q8_0']) {
    const p = ppl(dtype);
    // the flag reached the model: rounded weights give another perplexity (an ignored flag gives
    // f32's to the last bit); the demo's trained PT model moved by 0.01% (bf16) and 0.002% (q8_0)
    assert.notEqual(p, f32, `${dtype}: the same perplexity as f32, so --base-dtype was ignored`);
    assert.ok(Math.abs(p / f32 - 1) < 0.01, `${dtype}: perplexity ${p} against f32 ${f32}`);
  }
});
