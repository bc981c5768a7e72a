// Re-runs into an existing run directory re-make exactly what changed and what follows,
// saying why, and keep the old results aside: `chimed train STAGE` and `chimed run`.
// Each block's tests continue from the state the test before left (one run directory per
// block, made once), so every test re-runs only once or twice.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { before, test } from 'node:test';
import YAML from 'yaml';
import { writeJsonl } from './fixtures.js';
import { medicalText, runCli, tmpDir } from './helpers.js';

const TINY = { hidden_size: 32, intermediate_size: 64, num_hidden_layers: 1, num_attention_heads: 2, max_position_embeddings: 128 };

function losses(metricsFile: string, stage: string): number[] {
  return fs
    .readFileSync(metricsFile, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l))
    .filter((r) => r.stage === stage && r.loss !== undefined)
    .map((r) => r.step);
}

const staleDirs = (run: string) => fs.readdirSync(run).filter((n) => n.startsWith('stale-'));

// ---- chimed train pt ----

const pt = { dir: '', run: '', args: [] as string[] };

before(() => {
  pt.dir = tmpDir();
  pt.run = path.join(pt.dir, 'run');
  fs.writeFileSync(path.join(pt.dir, 'model.json'), JSON.stringify({ ...TINY, vocab_size: 300 }));
  fs.writeFileSync(path.join(pt.dir, 'a.txt'), medicalText(30));
  fs.writeFileSync(path.join(pt.dir, 'b.txt'), medicalText(60).replace(/高血压/g, '冠心病'));
  pt.args = ['--config', path.join(pt.dir, 'model.json'), '--out', pt.run, '--batch-size', '2', '--max-steps', '8'];
  pt.args.push('--save-every', '3', '--threads', '1', '--seed', '3');
});

function trainPt(flags: { data?: string; lr?: string; block?: string } = {}) {
  const args = ['train', 'pt', ...pt.args, '--data', path.join(pt.dir, flags.data ?? 'a.txt')];
  args.push('--lr', flags.lr ?? '3e-3', '--block-size', flags.block ?? '32');
  const r = runCli(args);
  assert.equal(r.code, 0, r.stderr.slice(-2000));
  return r;
}

test('chimed train pt: a finished stage re-run with the same data and settings is skipped', () => {
  trainPt();
  const r = trainPt();
  assert.match(r.stderr, /pt: already done, skipping/);
  assert.doesNotMatch(r.stdout, /resumed at|pt done/);
});

test('chimed train pt: a different --lr starts the stage over (not from its checkpoint), saying why, the old results kept', () => {
  const r = trainPt({ lr: '1e-3' });
  assert.match(r.stderr, /pt: settings changed \(lr 0\.003 → 0\.001\); re-running pt/);
  assert.doesNotMatch(r.stdout, /resumed at/);
  assert.deepEqual(losses(path.join(pt.run, 'metrics.jsonl'), 'pt'), [1, 2, 3, 4, 5, 6, 7, 8], 'all 8 steps, logged once');
  const [stale] = staleDirs(pt.run);
  assert.ok(stale, 'a stale folder');
  assert.ok(fs.existsSync(path.join(pt.run, stale, 'stages/pt/final/model.safetensors')), 'the old model is kept');
  assert.equal(losses(path.join(pt.run, stale, 'metrics.jsonl'), 'pt').length, 8, "the old run's metrics are kept with it");
  assert.match(r.stderr, new RegExp(`kept in .*${stale}: stages/pt`));
});

test('chimed train pt: a different --block-size starts the stage over', () => {
  const r = trainPt({ lr: '1e-3', block: '16' });
  assert.match(r.stderr, /pt: settings changed \(block_size 32 → 16\)/);
  assert.doesNotMatch(r.stdout, /resumed at/);
  assert.match(r.stderr, /blocks of 16/);
});

test('chimed train pt: different --data re-tokenises and trains on the new documents', () => {
  const tokens = () => JSON.parse(fs.readFileSync(path.join(pt.run, 'data/pt_train.bin.json'), 'utf8')).tokens;
  const before = tokens();
  const r = trainPt({ lr: '1e-3', block: '16', data: 'b.txt' });
  const b = path.join(pt.dir, 'b.txt').replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  assert.match(r.stderr, new RegExp(`pt: .*a\\.txt is no longer an input; ${b} is a new input; re-running pt`));
  assert.match(r.stderr, /re-tokenising the documents/);
  assert.doesNotMatch(r.stdout, /resumed at/);
  assert.ok(tokens() > before * 1.5, `the new corpus is about twice as long: ${before} -> ${tokens()} tokens`);
  // the same file edited in place: named with both hashes
  fs.appendFileSync(path.join(pt.dir, 'b.txt'), medicalText(20));
  const again = trainPt({ lr: '1e-3', block: '16', data: 'b.txt' });
  assert.match(again.stderr, new RegExp(`pt: ${b} changed \\(sha256 [0-9a-f]{12}… → [0-9a-f]{12}…\\)`));
});

test('chimed train pt: a run interrupted with the same lineage still resumes from its checkpoint', () => {
  // as after a crash between the last checkpoint and the end
  fs.rmSync(path.join(pt.run, 'stages/pt/done.json'));
  fs.rmSync(path.join(pt.run, 'stages/pt/final'), { recursive: true });
  const r = trainPt({ lr: '1e-3', block: '16', data: 'b.txt' });
  assert.match(r.stdout, /resumed at 6/);
  assert.doesNotMatch(r.stderr, /re-running/);
});

// ---- chimed run ----

const run = { dir: '', out: '', cfg: {} as Record<string, unknown> };

function runConfig() {
  const file = path.join(run.dir, 'c.yaml');
  fs.writeFileSync(file, YAML.stringify(run.cfg));
  const r = runCli(['run', file, '--out', run.out]);
  assert.equal(r.code, 0, r.stderr.slice(-3000));
  return r;
}

before(() => {
  run.dir = tmpDir();
  run.out = path.join(run.dir, 'run');
  fs.writeFileSync(path.join(run.dir, 'pt.txt'), medicalText(12));
  const qa = [
    ['高血压', '氨氯地平'],
    ['糖尿病', '二甲双胍'],
    ['肺炎', '阿莫西林'],
    ['胃炎', '奥美拉唑'],
    ['哮喘', '沙丁胺醇'],
    ['痛风', '秋水仙碱'],
  ];
  writeJsonl(
    path.join(run.dir, 'sft.jsonl'),
    qa.map(([d, m]) => ({ prompt: `${d}常用什么药？`, response: `${d}常用${m}。` })),
  );
  writeJsonl(
    path.join(run.dir, 'pref.jsonl'),
    qa.map(([d, m]) => ({ prompt: `${d}常用什么药？`, chosen: `${d}常用${m}。`, rejected: '不知道。' })),
  );
  const steps = { max_steps: 2, batch_size: 2 };
  run.cfg = {
    tokenizer: { bytes: true },
    model: { config: TINY },
    data: {
      sources: [
        { path: 'pt.txt', stages: ['pt'] },
        { path: 'sft.jsonl', stages: ['sft'] },
        { path: 'pref.jsonl', stages: ['pref'] },
      ],
    },
    stages: [
      { type: 'pt', ...steps, block_size: 32 },
      { type: 'sft', ...steps },
      { type: 'dpo', ...steps },
    ],
    eval: { mcq: false, gen: false, ner: false, scale: false, bootstrap: { resamples: 10 } },
  };
});

test('chimed run: an unchanged re-run skips everything', () => {
  runConfig();
  const r = runConfig();
  assert.equal((r.stderr.match(/already done, skipping/g) ?? []).length, 3, r.stderr);
  assert.doesNotMatch(r.stderr, /re-running|changed/);
  assert.deepEqual(staleDirs(run.out), []);
});

test('chimed run: an edited source file rebuilds the data and re-runs exactly the stages that read it, and what follows', () => {
  const sft = path.join(run.dir, 'sft.jsonl');
  fs.appendFileSync(sft, JSON.stringify({ prompt: '贫血常用什么药？', response: '贫血常用硫酸亚铁。' }) + '\n');
  const r = runConfig();
  const esc = sft.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  assert.match(r.stderr, new RegExp(`data: ${esc} changed \\(sha256 [0-9a-f]{12}… → [0-9a-f]{12}…\\); re-running data and what follows`));
  assert.ok(fs.readFileSync(path.join(run.out, 'data/sft.jsonl'), 'utf8').includes('硫酸亚铁'), 'data/sft.jsonl is rebuilt');
  // the pre-training data came out the same: pt stands; sft read changed data, dpo a changed model
  assert.match(r.stderr, /pt: already done, skipping/);
  assert.match(r.stderr, /sft: data\/sft\.jsonl changed \(sha256/);
  assert.match(r.stderr, /dpo: stages\/sft\/final changed \(sha256/);
  assert.match(r.stderr, /eval sft: /);
  const [stale] = staleDirs(run.out);
  for (const f of ['data/sft.jsonl', 'stages/sft/final', 'stages/dpo/final', 'eval/sft.json'])
    assert.ok(fs.existsSync(path.join(run.out, stale, f)), `${f} kept aside`);
  assert.ok(!fs.readFileSync(path.join(run.out, stale, 'data/sft.jsonl'), 'utf8').includes('硫酸亚铁'));
});

test('chimed run: a changed config is not refused; the changed stage and what follows re-run, saying why', () => {
  (run.cfg.stages as Record<string, unknown>[])[1].lr = 1e-4;
  const r = runConfig();
  assert.match(r.stderr, /config: changed since the last run in .*: stages\.1\.lr 0\.00002 → 0\.0001/);
  assert.match(r.stderr, /pt: already done, skipping/);
  assert.doesNotMatch(r.stderr, /data: .*re-running|tokenizer: .*re-running/);
  assert.match(r.stderr, /sft: settings changed \(lr 0\.00002 → 0\.0001\); re-running sft and what follows: dpo/);
  assert.match(r.stderr, /dpo: stages\/sft\/final changed/);
  assert.doesNotMatch(r.stderr, /sft: already done|dpo: already done/);
  const done = JSON.parse(fs.readFileSync(path.join(run.out, 'stages/sft/done.json'), 'utf8'));
  assert.equal(done.lineage.settings.lr, 1e-4);
  assert.ok(Object.values(done.lineage.inputs).every((h) => /^[0-9a-f]{64}$/.test(String(h))));
});
