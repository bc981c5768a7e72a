import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { before, test } from 'node:test';
import { runCli, tmpDir, trainingSeed } from './helpers.js';
import { qaSet, untrainedChatModel, writeJsonl } from './fixtures.js';

const dir = tmpDir();
const { sft, pairs } = qaSet();
const f = {
  sft: writeJsonl(path.join(dir, 'sft.jsonl'), sft),
  pairs: writeJsonl(path.join(dir, 'pairs.jsonl'), pairs),
  prompts: writeJsonl(
    path.join(dir, 'prompts.jsonl'),
    sft.map((r, i) => ({ id: `q${i}`, prompt: r.prompt })),
  ),
};
const seed = String(trainingSeed(42));
const common = ['--threads', '2', '--warmup-ratio', '0.05', '--save-every', '1000', '--seed', seed];
const metrics = (run: string) =>
  fs
    .readFileSync(path.join(dir, run, 'metrics.jsonl'), 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l));
const ok = (r: ReturnType<typeof runCli>) => assert.equal(r.code, 0, r.stderr + r.stdout);
const sftModel = path.join(dir, 'sft/stages/sft/final');

before(async () => {
  await untrainedChatModel(dir, {
    config: { hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2, num_attention_heads: 4, max_position_embeddings: 512 },
    seed,
    name: 'base',
  });
  ok(
    runCli([
      'train',
      'sft',
      '--data',
      f.sft,
      '--model',
      path.join(dir, 'base'),
      '--out',
      path.join(dir, 'sft'),
      '--eval-fraction',
      '0',
      '--lr',
      '3e-3',
      '--max-steps',
      '160',
      '--batch-size',
      '8',
      ...common,
    ]),
  );
});

test('SFT on a few dozen dialogues reaches near-zero loss and reproduces the answers greedily', (t) => {
  const losses = metrics('sft')
    .filter((m) => m.stage === 'sft' && m.loss !== undefined)
    .map((m) => m.loss);
  assert.ok(losses.at(-1) < 0.1, `final loss ${losses.at(-1)}`);
  const out = path.join(dir, 'gen.jsonl');
  ok(runCli(['generate', '--model', sftModel, '--input', f.prompts, '--output', out, '--max-new-tokens', '40']));
  const gens = fs
    .readFileSync(out, 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  const exact = gens.filter((g, i) => g.outputs[0] === sft[i].response).length;
  t.diagnostic(`seed ${seed}: final SFT loss ${losses.at(-1)}, ${exact}/${sft.length} answers reproduced`);
  assert.ok(exact >= sft.length * 0.9, `${exact}/${sft.length} reproduced; e.g. ${JSON.stringify(gens[0])}`);
  assert.ok(
    gens.every((g) => g.finish_reasons[0] === 'eos'),
    'replies end at the end-of-turn token',
  );
});

test('LoRA SFT on the fine-tuned model learns a new answer style; export merge equals base + adapter', (t) => {
  // the adapter must teach the SFT model to append a caution it has never produced
  const caution = '如有不适请及时就医。';
  const styled = writeJsonl(
    path.join(dir, 'styled.jsonl'),
    sft.map((r) => ({ ...r, response: `${r.response}${caution}` })),
  );
  ok(
    runCli([
      'train',
      'sft',
      '--data',
      styled,
      '--model',
      sftModel,
      '--out',
      path.join(dir, 'lora'),
      '--eval-fraction',
      '0',
      '--lora',
      '--lora-r',
      '8',
      '--lora-alpha',
      '16',
      '--lr',
      '1e-2',
      '--max-steps',
      '120',
      ...common,
    ]),
  );
  const ad = path.join(dir, 'lora/stages/sft/final');
  assert.ok(fs.existsSync(path.join(ad, 'adapter_config.json')) && fs.existsSync(path.join(ad, 'adapter_model.safetensors')));
  const l = metrics('lora')
    .filter((m) => m.loss !== undefined)
    .map((m) => m.loss);
  const out = path.join(dir, 'lora-gen.jsonl');
  ok(runCli(['generate', '--model', sftModel, '--adapter', ad, '--input', f.prompts, '--output', out, '--max-new-tokens', '40']));
  const styledReplies = fs
    .readFileSync(out, 'utf8')
    .trim()
    .split('\n')
    .filter((x) => JSON.parse(x).outputs[0].endsWith(caution)).length;
  t.diagnostic(
    `seed ${seed}: LoRA loss ${l[0]} -> ${l.at(-1)} (ratio ${l.at(-1) / l[0]}), ${styledReplies}/${sft.length} replies end with the caution`,
  );
  // measured at 120 steps, seeds 1, 2, 42: loss ratio 0.17-0.19, 22-23 of 24 replies end with it
  // (at 60 steps, 0-22 of 24: too few steps to hold beyond one seed)
  assert.ok(l.at(-1) < l[0] * 0.3, `LoRA loss ${l[0]} -> ${l.at(-1)}`);
  assert.ok(styledReplies >= 18, `${styledReplies}/${sft.length} replies end with "${caution}"`);
  ok(runCli(['export', 'merge', '--model', sftModel, '--adapter', ad, '--out', path.join(dir, 'merged')]));
  const a = runCli(['generate', '--model', sftModel, '--adapter', ad, '--prompt', sft[0].prompt, '--max-new-tokens', '40']);
  const b = runCli(['generate', '--model', path.join(dir, 'merged'), '--prompt', sft[0].prompt, '--max-new-tokens', '40']);
  ok(a);
  ok(b);
  assert.equal(a.stdout, b.stdout);
});

test('reward model separates held-out chosen / rejected pairs; DPO moves the implicit reward', (t) => {
  ok(
    runCli([
      'train',
      'rm',
      '--data',
      f.pairs,
      '--model',
      sftModel,
      '--out',
      path.join(dir, 'rm'),
      '--eval-fraction',
      '0.25',
      '--lr',
      '2e-3',
      '--max-steps',
      '60',
      '--batch-size',
      '4',
      '--eval-every',
      '20',
      ...common,
    ]),
  );
  const ev = metrics('rm').filter((m) => m.eval_accuracy !== undefined);
  assert.ok(ev.at(-1).eval_accuracy >= 0.75, `held-out RM accuracy ${ev.at(-1).eval_accuracy}`);
  assert.ok(fs.existsSync(path.join(dir, 'rm/stages/rm/final/config.json')));
  assert.match(fs.readFileSync(path.join(dir, 'rm/stages/rm/final/config.json'), 'utf8'), /LlamaForSequenceClassification/);
  const scored = runCli(['score', '--reward', '--model', path.join(dir, 'rm/stages/rm/final'), '--data', f.pairs]);
  ok(scored);
  const lines = scored.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  assert.equal(lines.length, pairs.length);
  assert.ok(lines.every((l) => Number.isFinite(l.reward_chosen) && Number.isFinite(l.reward_rejected)));
  assert.match(scored.stderr, /pairwise accuracy \d/);

  ok(
    runCli([
      'train',
      'dpo',
      '--data',
      f.pairs,
      '--model',
      sftModel,
      '--out',
      path.join(dir, 'dpo'),
      '--eval-fraction',
      '0.25',
      '--lora',
      '--lr',
      '5e-3',
      '--max-steps',
      '40',
      '--batch-size',
      '4',
      '--eval-every',
      '40',
      ...common,
    ]),
  );
  const d = metrics('dpo');
  const steps = d.filter((m) => m.loss !== undefined);
  // step 1: the adapter's B is zero, so the policy is the reference and the loss is exactly log 2
  assert.ok(Math.abs(steps[0].loss - Math.log(2)) < 1e-4, `first DPO loss ${steps[0].loss}`);
  assert.ok(steps.at(-1).loss < 0.5, `DPO loss stuck at ${steps.at(-1).loss} (padding / masking?)`);
  const e = d.filter((m) => m['eval_rewards/accuracies'] !== undefined).at(-1);
  const pairAcc = lines.filter((l) => l.reward_chosen > l.reward_rejected).length / lines.length;
  t.diagnostic(
    `seed ${seed}: RM held-out accuracy ${ev.at(-1).eval_accuracy}, margin ${ev.at(-1).eval_margin}, all pairs ${pairAcc}; DPO loss ${steps[0].loss} -> ${steps.at(-1).loss}, held-out margin ${e['eval_rewards/margins']}, accuracy ${e['eval_rewards/accuracies']}`,
  );
  assert.ok(e['eval_rewards/margins'] > 0 && e['eval_rewards/accuracies'] >= 0.75, JSON.stringify(e));
});

test('rejection sampling round: greedy answer, k samples and candidates ranked by the reward model; only what beats the greedy answer is kept', (t) => {
  const rm = path.join(dir, 'rm/stages/rm/final');
  if (!fs.existsSync(rm)) return; // the RM test failed first and says why
  // the untrained base model as the policy, so its greedy answers leave room to improve; the
  // references come with the prompts, and as external candidates for every prompt
  const prompts = writeJsonl(
    path.join(dir, 'rs-prompts.jsonl'),
    sft.map((r, i) => ({ id: `q${i}`, ...r })),
  );
  const ext = writeJsonl(
    path.join(dir, 'ext.jsonl'),
    sft.map((r, i) => ({ id: `q${i}`, response: r.response })),
  );
  const r = runCli([
    'train',
    'rs',
    '--prompts',
    prompts,
    '--model',
    path.join(dir, 'base'),
    '--reward',
    rm,
    '--out',
    path.join(dir, 'rs'),
    '--external',
    ext,
    '--k',
    '4',
    '--keep',
    '2',
    '--margin',
    '0.1',
    '--replay',
    '0.5',
    '--max-new-tokens',
    '24',
    '--lr',
    '1e-3',
    '--max-steps',
    '4',
    '--eval-every',
    '2',
    // judged on a file of its own (the first 3 of 5 held-out prompts), so every prompt is sampled
    '--eval-data',
    writeJsonl(path.join(dir, 'rs-heldout.jsonl'), sft.slice(0, 5)),
    '--eval-limit',
    '3',
    '--rounds',
    '2',
    '--max-rouge-drop',
    '0.05',
    ...common,
  ]);
  ok(r);
  const recs = fs
    .readFileSync(path.join(dir, 'rs/stages/rs/round-1/candidates.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  type C = { source: string; reward: number; text: string };
  assert.equal(recs.length, sft.length, 'with --eval-data no prompt is held out of sampling');
  for (const rec of recs) {
    const c: C[] = rec.candidates;
    const of = (s: string) => c.filter((x) => x.source === s);
    assert.deepEqual([of('greedy').length, of('reference').length, of('external').length], [1, 1, 1], rec.id);
    assert.ok(of('policy').length <= 4);
    assert.equal(rec.bar, of('greedy')[0].reward + 0.1);
    // kept: the best (at most 2) of the samples and external candidates that beat the bar
    const eligible = c
      .map((x, i) => ({ x, i }))
      .filter(({ x }) => ['policy', 'external'].includes(x.source) && x.reward > rec.bar)
      .sort((a, b) => b.x.reward - a.x.reward);
    assert.deepEqual(
      rec.kept,
      eligible.slice(0, 2).map(({ i }) => i),
      rec.id,
    );
  }
  const summary = JSON.parse(fs.readFileSync(path.join(dir, 'rs/stages/rs/round-1/summary.json'), 'utf8'));
  const kept = recs.reduce((n, x) => n + x.kept.length, 0);
  assert.equal(summary['rs/kept'], kept);
  assert.equal(summary['rs/kept_fraction'], recs.filter((x) => x.kept.length).length / recs.length);
  assert.equal(summary['rs/replayed'], Math.min(kept, recs.length));
  for (const k of ['rs/kept_mean_reward', 'rs/greedy_mean_reward', 'rs/reference_mean_reward', 'rs/heldout_greedy_reward'])
    assert.ok(Number.isFinite(summary[k]), k);
  assert.match(
    r.stdout,
    /rs round 1: kept \d+ of \d+ prompts .* mean reward: kept .*, greedy .*, reference .*\nrs round 1: held-out greedy reward -?[\d.]+ -> -?[\d.]+/,
  );
  const m = metrics('rs').filter((x) => x['rs/heldout_greedy_reward'] !== undefined);
  assert.equal(m.length, 3, 'greedy reward before the stage and after each round');
  assert.equal(m[1]['rs/kept_fraction'], summary['rs/kept_fraction']);
  // a round that kept something fine-tuned the policy on it, judged at steps 2 and 4; it hands on
  // the best judged weights (step 0: the starting policy), never a worse policy on those prompts
  t.diagnostic(
    `seed ${seed}: kept ${kept} answers for ${recs.length} prompts, held-out greedy reward ${summary['rs/heldout_greedy_reward_before']} -> ${summary['rs/heldout_greedy_reward']} (step ${summary['rs/selected_step']})`,
  );
  assert.ok(kept > 0, 'the reference answers, as external candidates, beat the untrained greedy answers');
  const judged = metrics('rs').filter((x) => x.stage === 'rs/round-1' && x.eval_greedy_reward !== undefined);
  assert.deepEqual(
    judged.map((x) => x.step),
    [2, 4],
  );
  // only steps within the stage's bounds count: the references' loss, the greedy answers' ROUGE-L
  assert.ok(Math.abs(summary['rs/min_greedy_rouge_l'] - 0.95 * summary['rs/heldout_greedy_rouge_l_before']) < 1e-9);
  const counted = judged.filter(
    (x) => x.eval_loss <= summary['rs/max_reference_loss'] && x.eval_greedy_rouge_l >= summary['rs/min_greedy_rouge_l'],
  );
  const best = Math.max(summary['rs/heldout_greedy_reward_before'], ...counted.map((x) => x.eval_greedy_reward));
  assert.equal(summary['rs/heldout_greedy_reward'], best);
  assert.equal(
    summary['rs/selected_step'],
    best === summary['rs/heldout_greedy_reward_before'] ? 0 : counted.find((x) => x.eval_greedy_reward === best).step,
  );
  assert.ok(fs.existsSync(path.join(dir, 'rs/stages/rs/round-1/policy/model.safetensors')));
  // round 2 starts from round 1's policy but keeps the stage's bounds
  const second = JSON.parse(fs.readFileSync(path.join(dir, 'rs/stages/rs/round-2/summary.json'), 'utf8'));
  assert.ok(Number.isFinite(summary['rs/max_reference_loss']));
  assert.equal(second['rs/max_reference_loss'], summary['rs/max_reference_loss']);
  assert.equal(second['rs/min_greedy_rouge_l'], summary['rs/min_greedy_rouge_l']);
  assert.equal(second['rs/heldout_greedy_reward_before'], summary['rs/heldout_greedy_reward']);
});

test('rs refuses eval_limit without eval_data, naming both', () => {
  const r = runCli([
    'train',
    'rs',
    '--prompts',
    'p.jsonl',
    '--model',
    'm',
    '--reward',
    'r',
    '--out',
    path.join(dir, 'rs-bad'),
    '--eval-limit',
    '3',
  ]);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /rs: eval_limit limits the eval_data prompts; give eval_data \(--eval-data FILE\)/);
});
