/**
 * `chimed run` with `model: { path }` of each family a medical team starts from (Qwen2.5,
 * Qwen3, Llama-3, Baichuan 2; tiny variants of their public configs): PT with RoPE scaling
 * (written into the saved config.json and kept by the later stages) -> LoRA SFT on the
 * family's PEFT names -> reward model of the family's class -> rejection sampling -> DPO, then
 * generation from the final model and serving it. A few steps each: this checks the wiring, not learning
 * (test/stages.test.ts and the demo test check that the stages learn).
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { before, test } from 'node:test';
import { generateCommand } from '../src/cli/generate.js';
import { initCommand } from '../src/cli/init.js';
import { loadChatModel } from '../src/model/load.js';
import { parseRunConfig } from '../src/pipeline/config.js';
import { runPipeline } from '../src/pipeline/run.js';
import { buildServer, startServer, stopServer } from '../src/serve/server.js';
import { qaSet, qaTokenizer, tinyVariant, writeJsonl } from './fixtures.js';
import { sharedModels, tmpDir } from './helpers.js';

const skip = sharedModels() ? false : '../shared/models is absent';
const dir = tmpDir('chimed-pipeline-families-');
let tok = '';
const data = { pt: path.join(dir, 'pt.jsonl'), sft: path.join(dir, 'sft.jsonl'), pref: path.join(dir, 'pairs.jsonl') };
const readJson = (...p: string[]) => JSON.parse(fs.readFileSync(path.join(...p), 'utf8'));

before(async () => {
  tok = await qaTokenizer(dir);
  const { sft, pairs } = qaSet();
  writeJsonl(
    data.pt,
    sft.map((r) => ({ text: `${r.prompt}${r.response}` })),
  );
  writeJsonl(data.sft, sft);
  writeJsonl(data.pref, pairs);
});

const FAMILIES: [string, string, string, string[]][] = [
  [
    'qwen2.5-0.5b.json',
    'Qwen2ForCausalLM',
    'Qwen2ForSequenceClassification',
    ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'],
  ],
  [
    'qwen3-0.6b.json',
    'Qwen3ForCausalLM',
    'Qwen3ForSequenceClassification',
    ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'],
  ],
  [
    'llama-3.2-1b.json',
    'LlamaForCausalLM',
    'LlamaForSequenceClassification',
    ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'],
  ],
  [
    'baichuan2-7b.json',
    'BaichuanForCausalLM',
    'BaichuanForSequenceClassification',
    ['W_pack', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'],
  ],
];

for (const [file, arch, rmArch, targets] of FAMILIES) {
  test(`chimed run from model: { path } of ${file}: PT -> LoRA SFT -> RM -> RS -> DPO, generate, serve`, { skip }, async () => {
    const d = path.join(dir, file.replace('.json', ''));
    fs.mkdirSync(d, { recursive: true });
    const raw = tinyVariant(file, 400);
    // Llama-3.2 already has its own (llama3) RoPE scaling and Baichuan's code has none: they train at the base length
    const scaled = !raw.rope_scaling && raw.model_type !== 'baichuan';
    fs.writeFileSync(path.join(d, 'config.json'), JSON.stringify({ ...raw, max_position_embeddings: scaled ? 40 : 64 }));
    assert.equal(await initCommand(['--config', path.join(d, 'config.json'), '--tokenizer', tok, '--out', path.join(d, 'base')]), 0);
    const cfg = parseRunConfig(
      {
        threads: 2,
        data: {
          sources: [
            { path: data.pt, stages: ['pt'] },
            { path: data.sft, stages: ['sft'] },
            { path: data.pref, stages: ['pref'] },
          ],
        },
        tokenizer: { path: path.join(d, 'base') },
        model: { path: path.join(d, 'base') },
        stages: [
          { type: 'pt', max_steps: 2, batch_size: 2, block_size: 64, ...(scaled && { rope_scaling: { type: 'yarn', factor: 2 } }) },
          { type: 'sft', max_steps: 2, batch_size: 2, lora: {} },
          { type: 'rm', max_steps: 2, batch_size: 2 },
          { type: 'rs', max_steps: 1, batch_size: 2, prompts: 2, k: 2, max_new_tokens: 8 },
          { type: 'dpo', max_steps: 2, batch_size: 2 },
        ],
        eval: { ppl: false, mcq: false, gen: false, pref: false, scale: false },
      },
      `${file} run`,
    );
    const run = path.join(d, 'run');
    const rows = await runPipeline(cfg, run);
    assert.deepEqual(
      rows.map((r) => r.stage),
      ['base', 'pt', 'sft', 'rm', 'rs', 'dpo'],
    );

    const stages = path.join(run, 'stages');
    const pt = readJson(stages, 'pt/final/config.json');
    assert.deepEqual(pt.architectures, [arch]);
    if (scaled) {
      assert.deepEqual(
        [pt.max_position_embeddings, pt.rope_scaling],
        [80, { rope_type: 'yarn', factor: 2, original_max_position_embeddings: 40 }],
        'PT trained 64-token blocks under YaRN x2',
      );
      assert.deepEqual(readJson(stages, 'dpo/merged/config.json').rope_scaling, pt.rope_scaling, 'later stages keep the scaling');
    }
    assert.deepEqual(readJson(stages, 'sft/final/adapter_config.json').target_modules, targets);
    assert.deepEqual(readJson(stages, 'sft/merged/config.json').architectures, [arch]);
    assert.deepEqual(readJson(stages, 'rm/final/config.json').architectures, [rmArch]);
    assert.deepEqual(readJson(stages, 'dpo/merged/config.json').architectures, [arch]);
    const out = path.join(d, 'gen.jsonl');
    writeJsonl(path.join(d, 'prompts.jsonl'), [{ prompt: '高血压常用什么药？' }]);
    assert.equal(
      await generateCommand([
        '--model',
        path.join(stages, 'dpo/merged'),
        '--input',
        path.join(d, 'prompts.jsonl'),
        '--output',
        out,
        '--max-new-tokens',
        '8',
      ]),
      0,
    );
    assert.equal(readJson(out).outputs.length, 1);
    // and serves it
    const app = await buildServer({ chat: await loadChatModel({ model: path.join(stages, 'dpo/merged') }) });
    const url = await startServer(app, '127.0.0.1', 0);
    try {
      const res = await fetch(`${url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'chimed', messages: [{ role: 'user', content: '头痛怎么办？' }], max_tokens: 6, temperature: 0 }),
      });
      assert.equal(res.status, 200);
      assert.equal(typeof (await res.json()).choices[0].message.content, 'string');
    } finally {
      await stopServer(app, 1000);
    }
  });
}
