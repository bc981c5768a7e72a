import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { pathToFileURL } from 'node:url';
import * as chimed from '../src/index.js';
import { qaSet, qaTokenizer, writeJsonl } from './fixtures.js';
import { repoRoot, tmpDir } from './helpers.js';

test('the package API: load a chat model and reply, as the index documents', async () => {
  const dir = tmpDir();
  const tok = chimed.Tokenizer.fromDir(await qaTokenizer(dir));
  const config = chimed.parseModelConfig(
    { vocab_size: tok.vocabSize, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 1, num_attention_heads: 2 },
    'api test',
  );
  const out = path.join(dir, 'm');
  await chimed.saveModel(out, chimed.Llama.random(chimed.nativeKernels, config, 1, false));
  await tok.save(out);
  const { model, tokenizer, template } = await chimed.loadChatModel({ model: out });
  const [[reply]] = chimed.generateReplies(model, tokenizer, template, [[{ role: 'user', content: '高血压要注意什么？' }]], {
    maxNewTokens: 8,
  });
  assert.equal(typeof reply.text, 'string');
  assert.ok(reply.ids.length <= 8);
  for (const name of [
    'runPipeline',
    'buildDatasets',
    'Trainer',
    'evaluateMcq',
    'writeLlamaGguf',
    'buildServer',
    'LoraAdapter',
    'RewardModel',
    'runPt',
    'runSft',
    'runRm',
    'runRs',
    'runDpo',
  ]) {
    assert.equal(typeof (chimed as Record<string, unknown>)[name], 'function', name);
  }
});

test("stage functions fill in the papers' defaults and name a bad setting", async () => {
  await assert.rejects(chimed.runSft({ lr: -1 }, { runDir: tmpDir(), seed: 1, model: 'x', data: ['y'] }), /sft: lr: Too small/);
  assert.deepEqual(chimed.DpoConfigSchema.parse({}).lora, { r: 8, alpha: 16, dropout: 0.05, target_modules: 'all-linear' });
  assert.equal((chimed.SftConfigSchema.parse({ lora: {} }).lora as { alpha: number }).alpha, 32);
});

test("README's TypeScript example runs: LoRA SFT, then DPO on the merged model", async () => {
  const code = /## From TypeScript[\s\S]*?```ts\n([\s\S]*?)```/.exec(fs.readFileSync(path.join(repoRoot, 'README.md'), 'utf8'))?.[1];
  assert.ok(code, 'README has a TypeScript example');
  const dir = tmpDir();
  const { sft, pairs } = qaSet();
  writeJsonl(path.join(dir, 'sft.jsonl'), sft);
  writeJsonl(path.join(dir, 'pairs.jsonl'), pairs);
  const tok = chimed.Tokenizer.fromDir(await qaTokenizer(dir));
  const config = chimed.parseModelConfig(
    {
      vocab_size: tok.vocabSize,
      hidden_size: 64,
      intermediate_size: 128,
      num_hidden_layers: 2,
      num_attention_heads: 4,
      num_key_value_heads: 2,
    },
    'api test',
  );
  await chimed.saveModel(path.join(dir, 'base'), chimed.Llama.random(chimed.nativeKernels, config, 1, false));
  await tok.save(path.join(dir, 'base'));
  // the example as a user runs it, with `chimed` resolving to this build
  const index = pathToFileURL(path.join(repoRoot, 'dist/src/index.js')).href;
  fs.writeFileSync(path.join(dir, 'example.mjs'), code.replace("from 'chimed'", `from '${index}'`));
  const r = spawnSync(process.execPath, ['example.mjs'], { cwd: dir, encoding: 'utf8', env: { ...process.env, CHIMED_QUIET: '1' } });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /runs\/api\/stages\/dpo\/merged\n$/);
  const run = new chimed.RunDir(path.join(dir, 'runs/api'));
  assert.ok(fs.existsSync(path.join(run.stage('sft').final, 'adapter_model.safetensors')), 'SFT trained a LoRA adapter');
  assert.ok(fs.existsSync(path.join(run.stage('dpo').final, 'adapter_model.safetensors')), 'DPO trained a LoRA adapter');
  const losses = (stage: string) =>
    new chimed.MetricsLog(run.metrics)
      .read(stage)
      .filter((m) => m.loss !== undefined)
      .map((m) => m.loss as number);
  const s = losses('sft'),
    d = losses('dpo');
  // base-model seeds 1-4: the LoRA SFT loss ends at 0.936-0.947 of its start (a random base learns
  // slowly through a rank-8 adapter), the DPO loss falls from log 2 to 0.47-0.53
  assert.ok(s.at(-1)! < s[0] * 0.97, `SFT loss ${s[0]} -> ${s.at(-1)}`);
  // the adapter starts at zero, so the policy is the reference and the first DPO loss is log 2
  assert.ok(Math.abs(d[0] - Math.log(2)) < 1e-4, `first DPO loss ${d[0]}`);
  assert.ok(d.at(-1)! < 0.6, `DPO loss ${d[0]} -> ${d.at(-1)}`);
  const { model, tokenizer, template } = await chimed.loadChatModel({ model: path.join(dir, 'runs/api/stages/dpo/merged') });
  const [[reply]] = chimed.generateReplies(model, tokenizer, template, [[{ role: 'user', content: sft[0].prompt }]], { maxNewTokens: 16 });
  assert.equal(typeof reply.text, 'string');
});
