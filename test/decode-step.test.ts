// The one-call decoding step (native decodeStep through Llama.decodePlan) against the same step
// run kernel by kernel: the same logits and caches bit for bit, for every packing of the
// projections (stacked q|k|v and gate|up, Baichuan's W_pack, apart with biases, per-head q/k
// norms), GQA, left padding, and bases frozen in bf16 / f16 / q8_0; and against the float64
// reference kernels on the same weights.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FrozenWeight, type BaseDtype } from '../src/engine/frozen.js';
import { nativeKernels as nk } from '../src/engine/native.js';
import { ParamStore } from '../src/engine/params.js';
import { referenceKernels as rk } from '../src/engine/reference.js';
import { Rng } from '../src/engine/rng.js';
import { Context } from '../src/engine/tensor.js';
import { parseModelConfig, type ModelConfig } from '../src/model/config.js';
import { Decoder, generate } from '../src/model/generate.js';
import { KvCache, Llama } from '../src/model/llama.js';
import { LoraAdapter } from '../src/model/lora.js';
import { assertClose } from './helpers.js';

// whole q8_0 blocks in every row (hidden 64, intermediate 96)
const sizes = {
  vocab_size: 60,
  hidden_size: 64,
  intermediate_size: 96,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  initializer_range: 0.2,
};
const families: Record<string, ModelConfig> = {
  'llama (GQA, q|k|v and gate|up stacked)': parseModelConfig({ ...sizes, model_type: 'llama', num_key_value_heads: 2 }, 't'),
  'llama (attention and mlp biases: projections apart)': parseModelConfig(
    { ...sizes, model_type: 'llama', attention_bias: true, mlp_bias: true },
    't',
  ),
  'qwen2 (qkv bias, tied)': parseModelConfig({ ...sizes, model_type: 'qwen2', num_key_value_heads: 2, tie_word_embeddings: true }, 't'),
  'qwen3 (q/k norms, head_dim 32)': parseModelConfig({ ...sizes, model_type: 'qwen3', num_key_value_heads: 1, head_dim: 32 }, 't'),
  'baichuan (W_pack)': parseModelConfig({ ...sizes, model_type: 'baichuan', architectures: ['BaiChuanForCausalLM'] }, 't'),
};

/** Non-zero biases and norm gains, so that every operand of the step matters. */
function randomised(model: Llama<Float32Array>): Llama<Float32Array> {
  const r = new Rng(11);
  for (const s of model.params.specs)
    if (s.noDecay) model.params.get(s.name).data.forEach((_, i, a) => (a[i] = (s.name.endsWith('.bias') ? 0 : 1) + r.normal() * 0.3));
  return model;
}

/** The same weights (frozen ones shared as stored) on the float64 reference kernels. */
function onReference(m: Llama<Float32Array>): Llama<Float64Array> {
  const frozen = new Map(m.params.specs.flatMap((s) => (m.params.frozenWeight(s.name) ? [[s.name, m.params.frozenWeight(s.name)!]] : [])));
  const store = new ParamStore(rk, m.params.specs, false, frozen as Map<string, FrozenWeight>);
  for (const s of store.specs) if (!frozen.has(s.name)) store.get(s.name).data.set(m.params.get(s.name).data);
  return new Llama(m.config, store);
}

/**
 * Prefills B left-padded prompts, then decodes `steps` tokens with given ids kernel by kernel
 * (model.hidden + logits) and through the plan, each on its own cache: the logits of each step.
 */
function decodeBothWays(model: Llama<Float32Array>, lengths: number[], steps: number) {
  const c = model.config,
    B = lengths.length,
    P = Math.max(...lengths),
    rng = new Rng(3);
  const keyStart = Int32Array.from(lengths, (n) => P - n);
  const caches = [0, 1].map(() => new KvCache(nk, c, B, P + steps));
  const ids = Int32Array.from({ length: B * P }, () => rng.int(c.vocab_size));
  const promptPos = Int32Array.from({ length: B * P }, (_, i) => Math.max(0, (i % P) - keyStart[Math.floor(i / P)]));
  let pos = promptPos;
  for (const cache of caches) model.hidden(new Context(nk, undefined, false), { ids, pos, B, T: P }, { cache, keyStart });
  const plan = model.decodePlan(caches[1]);
  assert.ok(plan, 'the plan exists');
  const out: { opByOp: Float32Array; fused: Float32Array; ids: Int32Array; pos: Int32Array }[] = [];
  for (let s = 0; s < steps; s++) {
    const next = Int32Array.from({ length: B }, () => rng.int(c.vocab_size));
    pos = Int32Array.from({ length: B }, (_, b) => pos[pos.length === B ? b : b * P + P - 1] + 1);
    const ctx = new Context(nk, undefined, false);
    const h = model.hidden(ctx, { ids: next, pos, B, T: 1 }, { cache: caches[0], keyStart });
    const opByOp = Float32Array.from(model.logits(ctx, h));
    const fused = new Float32Array(B * c.vocab_size);
    model.decodeStep(plan, next, pos, keyStart, caches[1], fused);
    out.push({ opByOp, fused, ids: next, pos });
  }
  for (let l = 0; l < c.num_hidden_layers; l++) {
    assert.deepEqual(caches[1].k[l], caches[0].k[l], `layer ${l} keys`);
    assert.deepEqual(caches[1].v[l], caches[0].v[l], `layer ${l} values`);
  }
  assert.equal(caches[1].length, caches[0].length);
  return { prompt: { ids, pos: promptPos, keyStart, B, P }, steps: out };
}

for (const [family, config] of Object.entries(families))
  for (const dtype of ['f32', 'bf16', 'f16', 'q8_0'] as BaseDtype[])
    test(`decodeStep: ${family}, ${dtype} base: the op-by-op step's logits and caches, bit for bit`, () => {
      const model = randomised(Llama.random(nk, config, 7, false, dtype));
      for (const lengths of [[5], [6, 2, 4]])
        for (const [s, step] of decodeBothWays(model, lengths, 3).steps.entries())
          assert.deepEqual(step.fused, step.opByOp, `B ${lengths.length}, step ${s}`);
    });

test('decodeStep: within float32 rounding of the float64 reference kernels (f32 and q8_0 bases)', () => {
  for (const dtype of ['f32', 'q8_0'] as BaseDtype[])
    for (const config of [families['qwen3 (q/k norms, head_dim 32)'], families['baichuan (W_pack)']]) {
      const model = randomised(Llama.random(nk, config, 8, false, dtype));
      const ref = onReference(model);
      const { prompt, steps } = decodeBothWays(model, [6, 3], 2);
      const { B, P, keyStart } = prompt;
      // the reference decodes the same tokens the same way: prompt, then one position at a time
      const cache = new KvCache(rk, config, B, P + steps.length);
      ref.hidden(new Context(rk, undefined, false), { ids: prompt.ids, pos: prompt.pos, B, T: P }, { cache, keyStart });
      for (const [s, step] of steps.entries()) {
        const ctx = new Context(rk, undefined, false);
        const want = ref.logits(ctx, ref.hidden(ctx, { ids: step.ids, pos: step.pos, B, T: 1 }, { cache, keyStart }));
        assertClose(step.fused, want, `${config.model_type} ${dtype} step ${s}`, 2e-4, 2e-4);
      }
    }
});

test('decodePlan: null where the step runs op by op (LoRA hook, NormHead, over 8 rows, reference kernels)', () => {
  const c = families['llama (GQA, q|k|v and gate|up stacked)'];
  const model = Llama.random(nk, c, 1, false);
  assert.ok(model.decodePlan(new KvCache(nk, c, 8, 4)));
  assert.equal(model.decodePlan(new KvCache(nk, c, 9, 4)), null);
  assert.equal(Llama.random(rk, c, 1, false).decodePlan(new KvCache(rk, c, 1, 4)), null);
  const baichuan2 = parseModelConfig({ ...sizes, model_type: 'baichuan' }, 't');
  assert.ok(baichuan2.norm_head);
  assert.equal(Llama.random(nk, baichuan2, 1, false).decodePlan(new KvCache(nk, baichuan2, 1, 4)), null);
  new LoraAdapter(model, { r: 2, alpha: 4, dropout: 0, targetModules: 'all-linear' }).init(1).attach();
  assert.equal(model.decodePlan(new KvCache(nk, c, 1, 4)), null);
});

test('generate: the same greedy tokens with the one-call step as op by op (a LoRA hook forces the latter)', () => {
  const c = families['qwen2 (qkv bias, tied)'];
  const model = randomised(Llama.random(nk, c, 4, false));
  const prompts = [
    [1, 2, 3, 4],
    [5, 6],
  ];
  const fused = generate(model, prompts, { maxNewTokens: 12 });
  // an adapter whose B is zero changes nothing but the path
  new LoraAdapter(model, { r: 2, alpha: 4, dropout: 0, targetModules: 'all-linear' }).init(1).attach();
  assert.equal(model.decodePlan(new KvCache(nk, c, 2, 4)), null);
  assert.deepEqual(
    generate(model, prompts, { maxNewTokens: 12 }).map((g) => g[0].ids),
    fused.map((g) => g[0].ids),
  );
});

test("generate: a decoder takes a finished one's KV storage and decodes as with fresh storage", () => {
  const c = families['qwen3 (q/k norms, head_dim 32)'];
  const model = randomised(Llama.random(nk, c, 6, false)),
    twin = randomised(Llama.random(nk, c, 6, false)); // the same weights, no spare storage
  generate(
    model,
    [
      [1, 2, 3, 4, 5, 6, 7, 8, 9],
      [10, 11],
    ],
    { maxNewTokens: 12 },
  ); // leaves storage full of its keys
  const d = new Decoder(model, [[3, 4, 5], [6]], { maxNewTokens: 8 });
  const reused = d.cache.storage.k[0];
  while (!d.done()) d.step();
  d.release();
  assert.deepEqual(
    d.results().map((g) => g[0].ids),
    generate(twin, [[3, 4, 5], [6]], { maxNewTokens: 8 }).map((g) => g[0].ids),
  );
  const again = new Decoder(model, [[1]], { maxNewTokens: 2 });
  assert.equal(again.cache.storage.k[0], reused, 'released storage is taken again');
  again.release();
  // a cache larger than the storage (2 rows x 21 positions) gets new arrays
  assert.notEqual(new Decoder(model, [[1]], { maxNewTokens: 60 }).cache.storage.k[0], reused);
});

test('decodeStep: a plan that does not fit the model is refused, naming the field', () => {
  const c = families['llama (GQA, q|k|v and gate|up stacked)'];
  const model = Llama.random(nk, c, 1, false);
  const cache = new KvCache(nk, c, 1, 4);
  const plan = model.decodePlan(cache)!;
  const logits = new Float32Array(c.vocab_size);
  const bad = {
    ...plan,
    layers: [plan.layers[0], { ...plan.layers[1], o: { ...plan.layers[1].o, weight: { ...plan.layers[1].o.weight, cols: 32 } } }],
  };
  assert.throws(() => model.decodeStep(bad, new Int32Array([1]), new Int32Array([0]), null, cache, logits), {
    name: 'RangeError',
    message: /decodeStep: plan\.layers\[1\]\.o\.weight is \[64, 32\], expected \[64, 64\]/,
  });
  assert.throws(
    () => model.decodeStep(plan, new Int32Array([60]), new Int32Array([0]), null, cache, logits),
    /ids\[0\] = 60 is out of range/,
  );
  const badDtype = {
    ...plan,
    layers: [{ ...plan.layers[0], o: { ...plan.layers[0].o, weight: { ...plan.layers[0].o.weight, dtype: 'int4' } } }, plan.layers[1]],
  };
  assert.throws(
    () => model.decodeStep(badDtype as unknown as typeof plan, new Int32Array([1]), new Int32Array([0]), null, cache, logits),
    /decodeStep: plan\.layers\[0\]\.o\.weight\.dtype must be "f32", "bf16", "f16" or "q8_0", got string/,
  );
});
