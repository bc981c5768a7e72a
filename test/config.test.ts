import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { contextLength, parseModelConfig, toHfConfig, withRopeScaling } from '../src/model/config.js';
import { repoRoot } from './helpers.js';

const modelsDir = path.resolve(repoRoot, '../shared/models');
const realConfigs = fs.existsSync(modelsDir) ? fs.readdirSync(modelsDir).filter((f) => f.endsWith('.json')) : [];
const tiny = { vocab_size: 64, hidden_size: 32, intermediate_size: 48, num_hidden_layers: 2, num_attention_heads: 4 };

test('the public configs of the real base models parse to their family, switches and head size', (t) => {
  if (!realConfigs.length) return t.skip('../shared/models is absent');
  const expect: Record<string, Partial<Record<string, unknown>>> = {
    'qwen2.5-0.5b.json': {
      model_type: 'qwen2',
      qkv_bias: true,
      o_bias: false,
      tie_word_embeddings: true,
      head_dim: 64,
      num_key_value_heads: 2,
    },
    'qwen3-0.6b.json': { model_type: 'qwen3', qk_norm: true, head_dim: 128, qkv_bias: false },
    'llama-3.2-1b.json': { model_type: 'llama', head_dim: 64, tie_word_embeddings: true, rope_theta: 500000 },
    'llama-2-7b.json': { model_type: 'llama', head_dim: 128, rope_scaling: null },
    'ziya-llama-13b.json': { model_type: 'llama', head_dim: 128, max_position_embeddings: 2048 },
    'baichuan-7b.json': { model_type: 'baichuan', architecture: 'BaiChuanForCausalLM', fused_qkv: true, norm_head: false },
    'baichuan2-7b.json': { model_type: 'baichuan', architecture: 'BaichuanForCausalLM', fused_qkv: true, norm_head: true },
  };
  for (const f of realConfigs) {
    const raw = JSON.parse(fs.readFileSync(path.join(modelsDir, f), 'utf8'));
    const c = parseModelConfig(raw, f) as unknown as Record<string, unknown>;
    for (const [k, v] of Object.entries(expect[f] ?? {})) assert.deepEqual(c[k], v, `${f}: ${k}`);
    // writing and reading back gives the same architecture
    assert.deepEqual(parseModelConfig(toHfConfig(c as never), f), c, `${f}: round trip`);
  }
  const llama3 = parseModelConfig(JSON.parse(fs.readFileSync(path.join(modelsDir, 'llama-3.2-1b.json'), 'utf8')), 'l');
  assert.deepEqual(llama3.rope_scaling, {
    rope_type: 'llama3',
    factor: 32,
    high_freq_factor: 4,
    low_freq_factor: 1,
    original_max_position_embeddings: 8192,
  });
});

test('an architecture or config value we do not implement is refused, naming the config.json field', () => {
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ architectures: ['GemmaForCausalLM'] }, /config\.json: architectures: GemmaForCausalLM is not supported/],
    [{ architectures: ['MistralForCausalLM'], sliding_window: 4096 }, /architectures: MistralForCausalLM is not supported/],
    [{ architectures: ['Phi3ForCausalLM'] }, /Phi3ForCausalLM is not supported/],
    [{ architectures: ['Qwen2MoeForCausalLM'] }, /Qwen2MoeForCausalLM is not supported/],
    [{ model_type: 'gemma' }, /model_type: "gemma" is not supported/],
    [{ architectures: ['LlamaForCausalLM'], model_type: 'qwen2' }, /model_type qwen2 does not match architectures/],
    [
      { model_type: 'qwen2', use_sliding_window: true, sliding_window: 4096 },
      /use_sliding_window: true: sliding-window attention is not implemented/,
    ],
    [{ model_type: 'qwen3', layer_types: ['full_attention', 'sliding_attention'] }, /layer_types: .*only full_attention/],
    [{ rope_scaling: { rope_type: 'longrope', factor: 4 } }, /rope_scaling: rope_type "longrope" is not supported/],
    [{ rope_scaling: { type: 'su', factor: 4 } }, /rope_type "su" is not supported/],
    [{ rope_scaling: { rope_type: 'llama3', factor: 8 } }, /rope_scaling: rope_type llama3 needs low_freq_factor/],
    [{ rope_scaling: { rope_type: 'linear' } }, /rope_type linear needs a factor/],
    [{ rope_scaling: { rope_type: 'linear', factor: 0.5 } }, /rope_scaling\.factor: /],
    [{ hidden_act: 'gelu' }, /hidden_act: "gelu" is not supported/],
    [{ attention_dropout: 0.1 }, /attention_dropout: 0.1: attention dropout is not implemented/],
    [{ partial_rotary_factor: 0.5 }, /partial_rotary_factor: 0.5/],
    [{ model_type: 'qwen2', use_mrope: true }, /use_mrope: true/],
    [
      { architectures: ['BaichuanForCausalLM'], model_max_length: 4096, max_position_embeddings: undefined },
      /model_max_length: without max_position_embeddings this is a Baichuan-13B layout, whose ALiBi/,
    ],
    [{ model_type: 'baichuan', z_loss_weight: 0.1 }, /z_loss_weight: 0.1: Baichuan 2's z-loss is not implemented/],
    [{ model_type: 'baichuan', rope_theta: 500000 }, /rope_theta: 500000: Baichuan's modeling code fixes the RoPE base at 10000/],
    [{ model_type: 'baichuan', rope_scaling: { type: 'linear', factor: 2 } }, /rope_scaling: Baichuan's modeling code has a fixed RoPE/],
    [{ head_dim: 7 }, /head size 7 must be even/],
    [{ num_key_value_heads: 3 }, /num_key_value_heads \(3\) does not divide num_attention_heads \(4\)/],
    [{ hidden_size: 30 }, /num_attention_heads \(4\) does not divide hidden_size \(30\); give head_dim/],
    [{ vocab_size: undefined }, /vocab_size: required/],
    [{ eos_token_id: 64 }, /eos_token_id 64 is outside the vocabulary/],
    [{ tie_word_embeddings: 'yes' }, /tie_word_embeddings: /],
  ];
  for (const [over, re] of cases)
    assert.throws(() => parseModelConfig({ ...tiny, max_position_embeddings: 128, ...over }, 'config.json'), re, JSON.stringify(over));
});

test('HF keys that do not change the maths are accepted and written back; a hand-written config refuses unknown keys', () => {
  const downloaded = {
    ...tiny,
    architectures: ['Qwen2ForCausalLM'],
    model_type: 'qwen2',
    torch_dtype: 'bfloat16',
    transformers_version: '4.43.1',
    use_sliding_window: false,
    sliding_window: 131072,
    max_window_layers: 21,
    attention_dropout: 0,
    rope_scaling: null,
    use_cache: true,
    bos_token_id: 1,
    eos_token_id: [2, 3],
    some_future_field: { a: 1 },
  };
  const c = parseModelConfig(downloaded, 'config.json');
  assert.equal(c.eos_token_id, 2);
  assert.deepEqual(c.extra, {
    transformers_version: '4.43.1',
    some_future_field: { a: 1 },
    use_sliding_window: false,
    sliding_window: 131072,
    max_window_layers: 21,
    attention_dropout: 0,
  });
  const hf = toHfConfig(c);
  assert.deepEqual(
    [hf.architectures, hf.model_type, hf.max_window_layers, hf.some_future_field],
    [['Qwen2ForCausalLM'], 'qwen2', 21, { a: 1 }],
  );
  // attention_bias is a llama / qwen3 key; qwen2's code always has q/k/v biases
  assert.equal(parseModelConfig({ ...tiny, model_type: 'qwen2', attention_bias: false }, 'c').qkv_bias, true);
  assert.throws(
    () => parseModelConfig({ ...tiny, rope_thetaa: 1e6 }, 'run.yaml: model.config', { strict: true }),
    /run\.yaml: model\.config: unknown key rope_thetaa for model_type llama \(keys: vocab_size, .*rope_theta/,
  );
  assert.throws(
    () => parseModelConfig({ ...tiny, model_type: 'qwen2', attention_bias: true }, 'm', { strict: true }),
    /unknown key attention_bias for model_type qwen2/,
  );
  assert.equal(parseModelConfig({ ...tiny, model_type: 'qwen3', rope_theta: 1e6 }, 'm', { strict: true }).rope_theta, 1e6);
});

test('transformers v5 rope_parameters and the legacy `type` key read like rope_theta + rope_scaling', () => {
  const v5 = parseModelConfig(
    { ...tiny, rope_parameters: { rope_theta: 500000, rope_type: 'yarn', factor: 4, original_max_position_embeddings: 64 } },
    'c',
  );
  assert.equal(v5.rope_theta, 500000);
  assert.deepEqual(v5.rope_scaling, { rope_type: 'yarn', factor: 4, original_max_position_embeddings: 64 });
  assert.equal(parseModelConfig({ ...tiny, rope_parameters: { rope_theta: 1e6, rope_type: 'default' } }, 'c').rope_scaling, null);
  assert.deepEqual(parseModelConfig({ ...tiny, rope_scaling: { type: 'linear', factor: 2 } }, 'c').rope_scaling, {
    rope_type: 'linear',
    factor: 2,
  });
  assert.throws(
    () => parseModelConfig({ ...tiny, rope_scaling: { type: 'linear', factor: 2 }, rope_parameters: { rope_theta: 1 } }, 'c'),
    /not both/,
  );
});

test('a stage scales RoPE past the base length; the scaling is part of the config written back', () => {
  const base = parseModelConfig({ ...tiny, max_position_embeddings: 2048 }, 'c');
  const lin = withRopeScaling(base, 'linear', 2);
  assert.deepEqual([lin.max_position_embeddings, lin.rope_scaling], [4096, { rope_type: 'linear', factor: 2 }]);
  const yarn = withRopeScaling(base, 'yarn', 4);
  assert.deepEqual(
    [yarn.max_position_embeddings, yarn.rope_scaling],
    [8192, { rope_type: 'yarn', factor: 4, original_max_position_embeddings: 2048 }],
  );
  const dyn = withRopeScaling(base, 'dynamic', 2);
  assert.deepEqual(
    [dyn.max_position_embeddings, contextLength(dyn)],
    [2048, 4096],
    'dynamic NTK scales from max_position_embeddings as HF does',
  );
  assert.deepEqual(parseModelConfig(toHfConfig(yarn), 'c'), yarn);
  assert.equal(withRopeScaling(lin, 'linear', 2), lin, 'the same scaling again is a no-op (a resumed stage)');
  assert.throws(() => withRopeScaling(lin, 'yarn', 2), /already has linear scaling/);
  assert.throws(() => withRopeScaling(parseModelConfig({ ...tiny, model_type: 'baichuan' }, 'c'), 'linear', 2), /Baichuan/);
});
