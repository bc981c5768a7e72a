import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { before, test } from 'node:test';
import { nativeKernels } from '../src/engine/native.js';
import { Rng } from '../src/engine/rng.js';
import { readGguf, readGgufTensor } from '../src/io/gguf.js';
import { llamaGgufTensors, permuteForRope } from '../src/model/gguf-llama.js';
import { readSafetensors, readSafetensorsHeader } from '../src/io/safetensors.js';
import { loadModel } from '../src/model/checkpoint.js';
import { loadChatModel } from '../src/model/load.js';
import { LoraAdapter } from '../src/model/lora.js';
import { qaTokenizer } from './fixtures.js';
import { runCli, tmpDir } from './helpers.js';

const dir = tmpDir('chimed-export-');
const base = path.join(dir, 'base'),
  adapter = path.join(dir, 'adapter');
const ok = (r: ReturnType<typeof runCli>) => assert.equal(r.code, 0, r.stderr + r.stdout);
const tensorsOf = async (d: string) => readSafetensors(path.join(d, 'model.safetensors'));

before(async () => {
  const tok = await qaTokenizer(dir);
  fs.writeFileSync(
    path.join(dir, 'model.json'),
    JSON.stringify({
      vocab_size: 400,
      hidden_size: 64,
      intermediate_size: 128,
      num_hidden_layers: 2,
      num_attention_heads: 4,
      num_key_value_heads: 2,
      max_position_embeddings: 256,
    }),
  );
  ok(runCli(['init', '--config', path.join(dir, 'model.json'), '--tokenizer', tok, '--out', base]));
  // an adapter whose B is not zero, so merging visibly changes every targeted weight
  const model = await loadModel(base, nativeKernels, false);
  const lora = new LoraAdapter(model, { r: 4, alpha: 8, dropout: 0, targetModules: 'all-linear' }).init(1);
  const rng = new Rng(2);
  for (const s of lora.params.specs)
    if (s.name.endsWith('lora_B.weight')) lora.params.get(s.name).data.forEach((_, i, a) => (a[i] = rng.normal() * 0.05));
  await lora.save(adapter, base);
});

test('export hf merges the adapter and writes config, tokenizer, chat template and generation_config', async () => {
  const out = path.join(dir, 'hf');
  ok(runCli(['export', 'hf', '--model', base, '--adapter', adapter, '--out', out, '--temperature', '0.7', '--top-p', '0.9']));
  for (const f of ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json', 'generation_config.json'])
    assert.ok(fs.existsSync(path.join(out, f)), f);
  const ref = await loadChatModel({ model: base, adapter });
  const saved = await tensorsOf(out);
  for (const s of ref.model.params.specs) assert.deepEqual(saved.get(s.name)!.data, ref.model.params.get(s.name).data, s.name);
  assert.notDeepEqual(
    (await tensorsOf(base)).get('model.layers.0.self_attn.q_proj.weight')!.data,
    saved.get('model.layers.0.self_attn.q_proj.weight')!.data,
  );
  const tok = ref.tokenizer,
    imEnd = tok.tokenToId('<|im_end|>')!;
  const gen = JSON.parse(fs.readFileSync(path.join(out, 'generation_config.json'), 'utf8'));
  // the end-of-turn marker first, then the document end (as Qwen's generation_config)
  assert.deepEqual(gen, {
    eos_token_id: [imEnd, tok.eosId],
    pad_token_id: tok.padId,
    do_sample: true,
    temperature: 0.7,
    top_p: 0.9,
    max_new_tokens: 256,
  });
  const config = JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8'));
  assert.equal(config.eos_token_id, tok.eosId);
  assert.equal(config.architectures[0], 'LlamaForCausalLM');
  assert.equal(JSON.parse(fs.readFileSync(path.join(out, 'tokenizer_config.json'), 'utf8')).chat_template, ref.template.source);
  // greedy by default, as chimed generate
  ok(runCli(['export', 'hf', '--model', base, '--out', path.join(dir, 'hf-plain'), '--dtype', 'bf16']));
  const plain = JSON.parse(fs.readFileSync(path.join(dir, 'hf-plain/generation_config.json'), 'utf8'));
  assert.equal(plain.do_sample, false);
  assert.equal(plain.temperature, undefined);
  const { tensors } = await readSafetensorsHeader(path.join(dir, 'hf-plain/model.safetensors'));
  assert.ok(tensors.every((t) => t.dtype === 'BF16'));
});

test('export hf --keep-adapter writes the base and the PEFT adapter side by side; they load to the merged model', async () => {
  const out = path.join(dir, 'kept');
  const r = runCli(['export', 'hf', '--model', base, '--adapter', adapter, '--keep-adapter', '--out', out]);
  ok(r);
  assert.match(r.stdout, /PEFT adapter/);
  for (const f of ['adapter_config.json', 'adapter_model.safetensors']) {
    assert.ok(fs.readFileSync(path.join(adapter, f)).equals(fs.readFileSync(path.join(out, 'adapter', f))), `${f} copied unchanged`);
  }
  const baseSaved = await tensorsOf(path.join(out, 'base'));
  for (const [name, t] of await tensorsOf(base)) assert.deepEqual(baseSaved.get(name)!.data, t.data, name);
  assert.ok(fs.existsSync(path.join(out, 'base/generation_config.json')));
  const a = await loadChatModel({ model: path.join(out, 'base'), adapter: path.join(out, 'adapter') });
  const b = await loadChatModel({ model: base, adapter });
  for (const s of a.model.params.specs) assert.deepEqual(a.model.params.get(s.name).data, b.model.params.get(s.name).data, s.name);
});

test('export gguf writes the merged weights in llama.cpp layout; q8_0 is smaller', async () => {
  const f32 = path.join(dir, 'gguf/model-f32.gguf'),
    q8 = path.join(dir, 'gguf/model-q8_0.gguf');
  ok(runCli(['export', 'gguf', '--model', base, '--adapter', adapter, '--out', f32]));
  ok(runCli(['export', 'gguf', '--model', base, '--adapter', adapter, '--out', q8, '--dtype', 'q8_0']));
  const h = readGguf(f32);
  assert.equal(h.metadata.get('general.name')?.value, 'base');
  assert.equal(h.metadata.get('general.file_type')?.value, 0);
  const merged = (await loadChatModel({ model: base, adapter })).model;
  const names = llamaGgufTensors(merged, 'f32').map((t) => t.name);
  merged.params.specs.forEach((s, i) => {
    const w = merged.params.get(s.name).data;
    const heads = s.name.includes('q_proj') ? 4 : 2;
    const want = /[qk]_proj/.test(s.name) ? permuteForRope(w, heads, 64) : w;
    assert.deepEqual(readGgufTensor(f32, h, names[i]), want, `${s.name} -> ${names[i]}`);
  });
  const hq = readGguf(q8);
  assert.equal(hq.metadata.get('general.file_type')?.value, 7);
  assert.equal(hq.tensors.find((t) => t.name === 'blk.0.ffn_up.weight')!.dtype, 'Q8_0');
  assert.ok(fs.statSync(q8).size < fs.statSync(f32).size * 0.4);
});

test('export reports bad arguments as usage errors', () => {
  const cases: [string[], RegExp][] = [
    [['export', 'gguf', '--model', base, '--out', path.join(dir, 'x.gguf'), '--dtype', 'q4_0'], /--dtype: expected f32, f16, q8_0/],
    [['export', 'tflite'], /unknown export "tflite"/],
    [['export', 'merge', '--model', base, '--out', path.join(dir, 'm')], /--adapter is required/],
    [['export', 'hf', '--model', base, '--keep-adapter', '--out', path.join(dir, 'k')], /--keep-adapter needs --adapter/],
    [['export', 'gguf', '--model', base], /--out is required/],
  ];
  for (const [args, msg] of cases) {
    const r = runCli(args);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, msg);
  }
});
