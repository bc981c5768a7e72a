import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { before, test } from 'node:test';
import { runCli, tmpDir } from './helpers.js';
import { qaSet, qaTokenizer, writeJsonl } from './fixtures.js';

const dir = tmpDir();
const { sft, pairs } = qaSet();
const f = {
  sft: writeJsonl(path.join(dir, 'sft.jsonl'), sft),
  pairs: writeJsonl(path.join(dir, 'pairs.jsonl'), pairs),
  prompts: writeJsonl(path.join(dir, 'prompts.jsonl'), sft.map((r, i) => ({ id: `q${i}`, prompt: r.prompt }))),
};
const common = ['--threads', '2', '--warmup-ratio', '0.05', '--save-every', '1000'];
const metrics = (run: string) => fs.readFileSync(path.join(dir, run, 'metrics.jsonl'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
const ok = (r: ReturnType<typeof runCli>) => assert.equal(r.code, 0, r.stderr + r.stdout);
const sftModel = path.join(dir, 'sft/stages/sft/final');

before(async () => {
  const tok = await qaTokenizer(dir);
  fs.writeFileSync(path.join(dir, 'model.json'), JSON.stringify({ vocab_size: 400, hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 512 }));
  ok(runCli(['init', '--config', path.join(dir, 'model.json'), '--tokenizer', tok, '--out', path.join(dir, 'base')]));
  ok(runCli(['train', 'sft', '--data', f.sft, '--model', path.join(dir, 'base'), '--out', path.join(dir, 'sft'), '--eval-fraction', '0',
    '--lr', '3e-3', '--max-steps', '160', '--batch-size', '8', ...common]));
});

test('SFT on a few dozen dialogues reaches near-zero loss and reproduces the answers greedily', () => {
  const losses = metrics('sft').filter((m) => m.stage === 'sft' && m.loss !== undefined).map((m) => m.loss);
  assert.ok(losses.at(-1) < 0.1, `final loss ${losses.at(-1)}`);
  const out = path.join(dir, 'gen.jsonl');
  ok(runCli(['generate', '--model', sftModel, '--input', f.prompts, '--output', out, '--max-new-tokens', '40']));
  const gens = fs.readFileSync(out, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  const exact = gens.filter((g, i) => g.outputs[0] === sft[i].response).length;
  assert.ok(exact >= sft.length * 0.9, `${exact}/${sft.length} reproduced; e.g. ${JSON.stringify(gens[0])}`);
  assert.ok(gens.every((g) => g.finish_reasons[0] === 'eos'), 'replies end at the end-of-turn token');
});

test('LoRA SFT on the fine-tuned model learns a new answer style; export merge equals base + adapter', () => {
  // the adapter must teach the SFT model to append a caution it has never produced
  const styled = writeJsonl(path.join(dir, 'styled.jsonl'), sft.map((r) => ({ ...r, response: `${r.response}如有不适请及时就医。` })));
  ok(runCli(['train', 'sft', '--data', styled, '--model', sftModel, '--out', path.join(dir, 'lora'), '--eval-fraction', '0',
    '--lora', '--lora-r', '8', '--lora-alpha', '16', '--lr', '1e-2', '--max-steps', '60', ...common]));
  const ad = path.join(dir, 'lora/stages/sft/final');
  assert.ok(fs.existsSync(path.join(ad, 'adapter_config.json')) && fs.existsSync(path.join(ad, 'adapter_model.safetensors')));
  const l = metrics('lora').filter((m) => m.loss !== undefined).map((m) => m.loss);
  assert.ok(l.at(-1) < l[0] * 0.3, `LoRA loss ${l[0]} -> ${l.at(-1)}`);
  ok(runCli(['export', 'merge', '--model', sftModel, '--adapter', ad, '--out', path.join(dir, 'merged')]));
  const a = runCli(['generate', '--model', sftModel, '--adapter', ad, '--prompt', sft[0].prompt, '--max-new-tokens', '40']);
  const b = runCli(['generate', '--model', path.join(dir, 'merged'), '--prompt', sft[0].prompt, '--max-new-tokens', '40']);
  ok(a); ok(b);
  assert.equal(a.stdout, b.stdout);
  assert.match(a.stdout, /就医/);
});

test('reward model separates held-out chosen / rejected pairs; DPO moves the implicit reward', () => {
  ok(runCli(['train', 'rm', '--data', f.pairs, '--model', sftModel, '--out', path.join(dir, 'rm'), '--eval-fraction', '0.25',
    '--lr', '2e-3', '--max-steps', '60', '--batch-size', '4', '--eval-every', '20', ...common]));
  const ev = metrics('rm').filter((m) => m.eval_accuracy !== undefined);
  assert.ok(ev.at(-1).eval_accuracy >= 0.75, `held-out RM accuracy ${ev.at(-1).eval_accuracy}`);
  assert.ok(fs.existsSync(path.join(dir, 'rm/stages/rm/final/config.json')));
  assert.match(fs.readFileSync(path.join(dir, 'rm/stages/rm/final/config.json'), 'utf8'), /LlamaForSequenceClassification/);
  const scored = runCli(['score', '--reward', '--model', path.join(dir, 'rm/stages/rm/final'), '--data', f.pairs]);
  ok(scored);
  const lines = scored.stdout.trim().split('\n').map((l) => JSON.parse(l));
  assert.equal(lines.length, pairs.length);
  assert.ok(lines.every((l) => Number.isFinite(l.reward_chosen) && Number.isFinite(l.reward_rejected)));
  assert.match(scored.stderr, /pairwise accuracy \d/);

  ok(runCli(['train', 'dpo', '--data', f.pairs, '--model', sftModel, '--out', path.join(dir, 'dpo'), '--eval-fraction', '0.25', '--lora',
    '--lr', '5e-3', '--max-steps', '40', '--batch-size', '4', '--eval-every', '40', ...common]));
  const d = metrics('dpo');
  const steps = d.filter((m) => m.loss !== undefined);
  // step 1: the adapter's B is zero, so the policy is the reference and the loss is exactly log 2
  assert.ok(Math.abs(steps[0].loss - Math.log(2)) < 1e-4, `first DPO loss ${steps[0].loss}`);
  assert.ok(steps.at(-1).loss < 0.5, `DPO loss stuck at ${steps.at(-1).loss} (padding / masking?)`);
  const e = d.filter((m) => m['eval_rewards/accuracies'] !== undefined).at(-1);
  assert.ok(e['eval_rewards/margins'] > 0 && e['eval_rewards/accuracies'] >= 0.75, JSON.stringify(e));
});

test('rejection sampling round: k candidates per prompt ranked by the reward model, best kept, policy fine-tuned', () => {
  const rm = path.join(dir, 'rm/stages/rm/final');
  if (!fs.existsSync(rm)) return; // the RM test failed first and says why
  const ext = writeJsonl(path.join(dir, 'ext.jsonl'), [{ id: 'q0', response: sft[0].response }]);
  ok(runCli(['train', 'rs', '--prompts', f.prompts, '--model', sftModel, '--reward', rm, '--out', path.join(dir, 'rs'), '--external', ext,
    '--k', '4', '--keep', '1', '--max-new-tokens', '24', '--lr', '1e-3', '--max-steps', '10', '--eval-fraction', '0.2', ...common]));
  const recs = fs.readFileSync(path.join(dir, 'rs/stages/rs/round-1/candidates.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  assert.ok(recs.length > 0);
  for (const r of recs) {
    assert.ok(r.candidates.filter((c: { source: string }) => c.source === 'policy').length <= 4);
    const best = Math.max(...r.candidates.map((c: { reward: number }) => c.reward));
    assert.equal(r.kept.length, 1);
    assert.equal(r.candidates[r.kept[0]].reward, best);
  }
  const q0 = recs.find((r) => r.id === 'q0');
  if (q0) assert.ok(q0.candidates.some((c: { source: string }) => c.source === 'external'));
  const m = metrics('rs').filter((x) => x['rs/heldout_greedy_reward'] !== undefined);
  assert.equal(m.length, 2, 'greedy reward before and after the round');
  assert.ok(fs.existsSync(path.join(dir, 'rs/stages/rs/round-1/policy/model.safetensors')));
});
