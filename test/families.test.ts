/**
 * Each real base model's layout end to end at tiny size: its public config.json (shared
 * models folder) with the sizes cut down goes through `chimed init`; the checkpoint is re-saved
 * as a downloaded one looks (bf16 / f16 shards with an index); it loads, generates with the KV
 * cache as without, exports back to the same layout (`export hf`), merges an adapter
 * (`export merge`) and becomes a reward model of the family's class.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { before, test } from 'node:test';
import { nativeKernels } from '../src/engine/native.js';
import { Rng } from '../src/engine/rng.js';
import { Context } from '../src/engine/tensor.js';
import { writeJsonAtomic } from '../src/io/atomic.js';
import { readCheckpointTensors, readSafetensors, writeSafetensors, type FloatDtype } from '../src/io/safetensors.js';
import { loadModel } from '../src/model/checkpoint.js';
import { generate } from '../src/model/generate.js';
import { sequentialPositions } from '../src/model/llama.js';
import { loadChatModel } from '../src/model/load.js';
import { LoraAdapter } from '../src/model/lora.js';
import { isRewardModel, RewardModel } from '../src/model/reward.js';
import { exportCommand } from '../src/cli/export.js';
import { initCommand } from '../src/cli/init.js';
import { qaTokenizer, tinyVariant } from './fixtures.js';
import { runCli, sharedModels, tmpDir, valuesOf } from './helpers.js';

const skip = sharedModels() ? false : '../shared/models is absent';
const dir = tmpDir('chimed-families-');
const ok = (r: ReturnType<typeof runCli>) => assert.equal(r.code, 0, r.stderr + r.stdout);

/** A chimed command run in this process (the CLI is a thin layer over these functions; one real CLI run is below). */
async function chimed(argv: string[]): Promise<void> {
  const [cmd, ...rest] = argv;
  assert.equal(await (cmd === 'init' ? initCommand : exportCommand)(rest), 0);
}
let tok = '';

/** Re-saves a checkpoint as two shards of `dtype` with model.safetensors.index.json, as HF uploads large models. */
async function reshard(from: string, to: string, dtype: FloatDtype): Promise<void> {
  fs.mkdirSync(to, { recursive: true });
  const tensors = [...(await readCheckpointTensors(from)).entries()];
  const half = Math.ceil(tensors.length / 2),
    weightMap: Record<string, string> = {};
  for (const [i, part] of [tensors.slice(0, half), tensors.slice(half)].entries()) {
    const name = `model-0000${i + 1}-of-00002.safetensors`;
    await writeSafetensors(
      path.join(to, name),
      part.map(([n, t]) => ({ name: n, shape: t.shape, data: t.data, dtype })),
      { format: 'pt' },
    );
    for (const [n] of part) weightMap[n] = name;
  }
  await writeJsonAtomic(path.join(to, 'model.safetensors.index.json'), { metadata: { total_size: 0 }, weight_map: weightMap });
  for (const f of fs.readdirSync(from)) if (!f.endsWith('.safetensors')) fs.copyFileSync(path.join(from, f), path.join(to, f));
}

before(async () => {
  tok = await qaTokenizer(dir);
});

const FAMILIES: [string, string, string][] = [
  ['qwen2.5-0.5b.json', 'Qwen2ForCausalLM', 'Qwen2ForSequenceClassification'],
  ['qwen3-0.6b.json', 'Qwen3ForCausalLM', 'Qwen3ForSequenceClassification'],
  ['llama-3.2-1b.json', 'LlamaForCausalLM', 'LlamaForSequenceClassification'],
  ['llama-2-7b.json', 'LlamaForCausalLM', 'LlamaForSequenceClassification'],
  ['ziya-llama-13b.json', 'LlamaForCausalLM', 'LlamaForSequenceClassification'],
  ['baichuan-7b.json', 'BaiChuanForCausalLM', 'BaiChuanForSequenceClassification'],
  ['baichuan2-7b.json', 'BaichuanForCausalLM', 'BaichuanForSequenceClassification'],
];

for (const [file, arch, rmArch] of FAMILIES) {
  test(
    `${file} at tiny size: init, bf16 / f16 shards, KV-cache generation, export hf / merge in the same layout, reward model`,
    { skip },
    async () => {
      const d = path.join(dir, file.replace('.json', ''));
      fs.mkdirSync(d, { recursive: true });
      fs.writeFileSync(path.join(d, 'config.tiny.json'), JSON.stringify(tinyVariant(file, 400)));
      await chimed([
        'init',
        '--config',
        path.join(d, 'config.tiny.json'),
        '--tokenizer',
        tok,
        '--out',
        path.join(d, 'init'),
        '--dtype',
        'BF16',
        '--seed',
        '3',
      ]);
      const init = await loadModel(path.join(d, 'init'), nativeKernels, false);
      assert.equal(JSON.parse(fs.readFileSync(path.join(d, 'init/config.json'), 'utf8')).torch_dtype, 'bfloat16');

      // bf16 shards load to the same values; f16 shards within f16 rounding of them
      for (const dtype of ['BF16', 'F16'] as const) {
        const sharded = path.join(d, `hub-${dtype}`);
        await reshard(path.join(d, 'init'), sharded, dtype);
        const m = await loadModel(sharded, nativeKernels, false);
        assert.deepEqual(m.config, init.config);
        for (const s of init.params.specs) {
          const a = valuesOf(m, s.name),
            b = valuesOf(init, s.name);
          if (dtype === 'BF16') assert.deepEqual(a, b, s.name);
          else a.forEach((v, i) => assert.ok(Math.abs(v - b[i]) <= 1e-3 * Math.abs(b[i]) + 1e-7, `${s.name}[${i}]`));
        }
      }
      const hub = path.join(d, 'hub-BF16');

      // the KV cache gives the tokens a full forward pass gives (teacher-forced argmax)
      const prompt = [5, 17, 42, 8, 99, 3];
      const [[g]] = generate(init, [prompt], { maxNewTokens: 8, eosIds: [] });
      const seq = [...prompt, ...g.ids],
        ctx = new Context(nativeKernels, undefined, false);
      const logits = init.logits(
        ctx,
        init.hidden(ctx, { ids: Int32Array.from(seq), pos: sequentialPositions(1, seq.length), B: 1, T: seq.length }),
      );
      const V = init.config.vocab_size;
      g.ids.forEach((id, k) => {
        const row = logits.subarray((prompt.length - 1 + k) * V, (prompt.length + k) * V);
        assert.equal(
          row.reduce((best, v, j) => (v > row[best] ? j : best), 0),
          id,
          `step ${k}`,
        );
      });

      // export hf writes the layout it read: class, family keys, tensor names
      const adapterDir = path.join(d, 'adapter');
      const lora = new LoraAdapter(init, { r: 2, alpha: 4, dropout: 0, targetModules: 'all-linear' }).init(1);
      const rng = new Rng(2);
      for (const s of lora.params.specs)
        if (s.name.endsWith('lora_B.weight')) lora.params.get(s.name).data.forEach((_, i, a) => (a[i] = rng.normal() * 0.05));
      await lora.save(adapterDir, hub);
      assert.deepEqual(
        JSON.parse(fs.readFileSync(path.join(adapterDir, 'adapter_config.json'), 'utf8')).target_modules,
        arch.startsWith('Bai')
          ? ['W_pack', 'o_proj', 'gate_proj', 'up_proj', 'down_proj']
          : ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'],
      );
      await chimed(['export', 'hf', '--model', hub, '--out', path.join(d, 'hf'), '--dtype', 'BF16']);
      const src = JSON.parse(fs.readFileSync(path.join(d, 'config.tiny.json'), 'utf8')),
        back = JSON.parse(fs.readFileSync(path.join(d, 'hf/config.json'), 'utf8'));
      assert.deepEqual(back.architectures, [arch]);
      for (const k of Object.keys(src))
        if (!['torch_dtype', 'bos_token_id', 'eos_token_id', 'pad_token_id', 'use_cache'].includes(k))
          assert.deepEqual(back[k], src[k], `config.json ${k}`);
      assert.deepEqual(
        [...(await readSafetensors(path.join(d, 'hf/model.safetensors'))).keys()].sort(),
        [...(await readCheckpointTensors(hub)).keys()].sort(),
      );
      await chimed(['export', 'merge', '--model', hub, '--adapter', adapterDir, '--out', path.join(d, 'merged')]);
      const merged = await loadModel(path.join(d, 'merged'), nativeKernels, false),
        ref = await loadChatModel({ model: hub, adapter: adapterDir });
      for (const s of merged.params.specs) assert.deepEqual(valuesOf(merged, s.name), valuesOf(ref.model, s.name), s.name);

      // the reward model is the family's *ForSequenceClassification, score.weight beside the backbone
      const rm = await RewardModel.fromCausalLm(hub, nativeKernels, false, 1);
      await rm.save(path.join(d, 'rm'));
      assert.deepEqual(JSON.parse(fs.readFileSync(path.join(d, 'rm/config.json'), 'utf8')).architectures, [rmArch]);
      assert.ok(isRewardModel(path.join(d, 'rm')));
      assert.equal((await RewardModel.load(path.join(d, 'rm'), nativeKernels, false)).lm.config.model_type, init.config.model_type);
    },
  );
}

test('tied embeddings with a stored lm_head: ignored as HF does, with a warning when the two differ', { skip }, async () => {
  const d = path.join(dir, 'tied');
  fs.writeFileSync(path.join(dir, 'tied.json'), JSON.stringify(tinyVariant('qwen2.5-0.5b.json', 400)));
  await chimed(['init', '--config', path.join(dir, 'tied.json'), '--out', d]);
  const file = path.join(d, 'model.safetensors');
  const tensors = [...(await readSafetensors(file)).entries()].map(([name, t]) => ({ name, shape: t.shape, data: t.data }));
  const embed = tensors.find((t) => t.name === 'model.embed_tokens.weight')!;
  const warnings: string[] = [],
    warn = console.warn;
  console.warn = (m: string) => warnings.push(m);
  try {
    await writeSafetensors(file, [...tensors, { name: 'lm_head.weight', shape: embed.shape, data: embed.data }]);
    await loadModel(d, nativeKernels, false);
    assert.deepEqual(warnings, [], 'an lm_head equal to the embedding is silently ignored');
    await writeSafetensors(file, [...tensors, { name: 'lm_head.weight', shape: embed.shape, data: embed.data.map((v) => v + 1) }]);
    const m = await loadModel(d, nativeKernels, false);
    assert.match(
      warnings.join('\n'),
      /tie_word_embeddings is true, so lm_head\.weight is ignored \(as in HF\), but it differs from model\.embed_tokens\.weight/,
    );
    assert.equal(m.params.has('lm_head.weight'), false);
  } finally {
    console.warn = warn;
  }
});

test("a checkpoint missing the family's tensors names the tensor; an unknown architecture is refused by the CLI", { skip }, async () => {
  const d = path.join(dir, 'mismatch');
  fs.writeFileSync(path.join(dir, 'llama.json'), JSON.stringify({ ...tinyVariant('llama-2-7b.json', 400) }));
  // the real CLI, once: a downloaded config.json is accepted by `chimed init --config`
  ok(runCli(['init', '--config', path.join(dir, 'llama.json'), '--out', d]));
  const cfg = JSON.parse(fs.readFileSync(path.join(d, 'config.json'), 'utf8'));
  fs.writeFileSync(path.join(d, 'config.json'), JSON.stringify({ ...cfg, architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2' }));
  await assert.rejects(loadModel(d, nativeKernels, false), /tensor model\.layers\.0\.self_attn\.q_proj\.bias is missing/);
  fs.writeFileSync(
    path.join(d, 'config.json'),
    JSON.stringify({ ...cfg, architectures: ['BaichuanForCausalLM'], model_type: 'baichuan', rope_theta: undefined }),
  );
  await assert.rejects(loadModel(d, nativeKernels, false), /tensor model\.layers\.0\.self_attn\.W_pack\.weight is missing/);
  fs.writeFileSync(path.join(d, 'config.json'), JSON.stringify({ ...cfg, architectures: ['GemmaForCausalLM'] }));
  const r = runCli(['generate', '--model', d, '--prompt', 'x']);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /config\.json: architectures: GemmaForCausalLM is not supported/);
});
