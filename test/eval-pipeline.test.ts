import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import YAML from 'yaml';
import { writeCorpus } from '../src/corpus/generate.js';
import { parseRunConfig } from '../src/pipeline/config.js';
import { runCli, tmpDir } from './helpers.js';

test('eval config: benchmark tags must fit the file, metrics and baseline names are checked', () => {
  const base = { builtin_corpus: {}, model: { config: {} }, stages: [{ type: 'pt' }] };
  const ok = parseRunConfig({ ...base, eval: { files: { mcq: { path: 'x.jsonl', benchmark: 'cmexam' } } } }, 'c.yaml');
  assert.deepEqual(ok.eval.files.mcq, { path: 'x.jsonl', benchmark: 'cmexam' });
  assert.equal(ok.eval.bootstrap.resamples, 1000);
  assert.equal(ok.eval.cases, 5);
  assert.ok(ok.eval.table.includes('bleu1') && ok.eval.table.includes('ner_f1'));
  const bad: [unknown, RegExp][] = [
    [{ files: { gen: { path: 'x', benchmark: 'cmexam' } } }, /eval\.files\.gen\.benchmark: cmexam is a mcq benchmark, not gen/],
    [{ files: { mcq: { path: 'x', benchmark: 'mmlu' } } }, /eval\.files\.mcq/],
    [{ table: ['bleu5'] }, /eval\.table\.0/],
    [
      {
        baselines: [
          { name: 'a', predictions: {} },
          { name: 'a', predictions: {} },
        ],
      },
      /eval\.baselines\.1\.name: duplicate baseline a/,
    ],
  ];
  for (const [e, re] of bad) assert.throws(() => parseRunConfig({ ...base, eval: e }, 'c.yaml'), re);
});

test('chimed run: intervals, paired changes, baselines, published figures and case studies; an interrupted evaluation reuses its items', async () => {
  const dir = tmpDir();
  // the evaluation files come from the same generator as the built-in corpus, so the test knows their ids
  await writeCorpus(path.join(dir, 'corpus'), { seed: 3, heldoutFraction: 0.1 });
  const c = (f: string) => path.join(dir, 'corpus', f);
  const convs = fs
    .readFileSync(c('sft_heldout.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  const mcq = fs
    .readFileSync(c('mcq_test.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  fs.writeFileSync(path.join(dir, 'oracle-gen.jsonl'), convs.map((x) => JSON.stringify({ id: x.id, output: x.response }) + '\n').join(''));
  fs.writeFileSync(path.join(dir, 'oracle-mcq.jsonl'), mcq.map((x) => JSON.stringify({ id: x.id, answer: x.answer }) + '\n').join(''));
  const cfg = {
    builtin_corpus: { seed: 3 },
    tokenizer: { train: { vocab_size: 400 } },
    model: {
      config: { hidden_size: 32, intermediate_size: 64, num_hidden_layers: 1, num_attention_heads: 2, max_position_embeddings: 1024 },
    },
    stages: [
      { type: 'pt', max_steps: 3, batch_size: 2, block_size: 64, eval_every: 1 },
      { type: 'sft', max_steps: 3, batch_size: 2, max_source: 64, max_target: 64 },
    ],
    eval: {
      files: {
        mcq: { path: 'corpus/mcq_test.jsonl', benchmark: 'cmexam' },
        gen: 'corpus/sft_heldout.jsonl',
        ner: { path: 'corpus/ner_test.jsonl', benchmark: 'ccks2019' },
        ner_shots: 'corpus/ner_train.jsonl',
      },
      mcq: { k_shot: 0, mode: 'cloze', limit: 30 },
      gen: { limit: 6, max_new_tokens: 8 },
      ner: { k_shot: 1, limit: 4, max_new_tokens: 8 },
      scale: false,
      bootstrap: { resamples: 200 },
      cases: 4,
      baselines: [{ name: 'oracle', predictions: { gen: 'oracle-gen.jsonl', mcq: 'oracle-mcq.jsonl' } }],
    },
  };
  fs.writeFileSync(path.join(dir, 'c.yaml'), YAML.stringify(cfg));
  const out = path.join(dir, 'run');
  const r = runCli(['run', path.join(dir, 'c.yaml'), '--out', out]);
  assert.equal(r.code, 0, r.stderr.slice(-3000));
  const summary = JSON.parse(fs.readFileSync(path.join(out, 'summary.json'), 'utf8'));
  const [base, pt, sft] = summary.rows;
  assert.deepEqual(
    summary.rows.map((x: { stage: string }) => x.stage),
    ['base', 'pt', 'sft'],
  );
  assert.equal(base.bleu1, undefined, 'a random base model is not asked to generate');
  for (const row of [pt, sft]) {
    for (const k of ['ppl', 'mcq_acc', 'mcq_f1', 'bleu1', 'bleu4', 'rouge1', 'rougeL', 'ner_f1', 'pref_acc']) {
      assert.equal(typeof row[k], 'number', `${row.stage} ${k}`);
      assert.ok(row.ci[k][0] <= row[k] + 1e-9 && row[k] <= row.ci[k][1] + 1e-9, `${row.stage} ${k} ${row[k]} outside ${row.ci[k]}`);
    }
    assert.deepEqual([row.n.mcq_acc, row.n.bleu1, row.n.ner_f1], [30, 6, 4]);
  }
  assert.equal(sft.change.from, 'pt');
  assert.equal(typeof sft.change.metrics.mcq_acc.within_noise, 'boolean');
  assert.equal(pt.change.metrics.bleu1, undefined, 'no pairs: the base model did not generate');
  const [oracle] = summary.baselines;
  assert.deepEqual(
    [oracle.stage, oracle.kind, oracle.bleu1, oracle.rougeL, oracle.mcq_acc, oracle.n.bleu1, oracle.n.mcq_acc],
    ['oracle', 'baseline', 100, 100, 1, 6, 30],
  );
  assert.equal(oracle.change.from, 'sft');
  assert.equal(oracle.change.metrics.bleu1.within_noise, false);
  assert.equal(summary.cases.length, 4);
  assert.deepEqual(
    summary.cases.map((x: { kind: string }) => x.kind),
    ['gen', 'mcq', 'ner', 'gen'],
  );
  const gen = summary.cases[0];
  assert.deepEqual(
    gen.answers.map((a: { system: string }) => a.system),
    ['pt', 'sft', 'oracle (external)'],
  );
  assert.equal(gen.answers[2].answer, gen.reference);
  const md = fs.readFileSync(path.join(out, 'summary.md'), 'utf8');
  assert.match(md, /\| oracle \(external\) \| .*\| 100\.00 \(100\.00–100\.00\) \|/);
  assert.match(md, /percentile-bootstrap interval/);
  const report = fs.readFileSync(path.join(out, 'report/report.md'), 'utf8');
  for (const s of [
    '## Changes between stages',
    '| pt → sft |',
    '| sft → oracle (external) |',
    '## Published figures',
    '| CMExam | Baichuan-7B (base) | 7B | MCQ acc (%) | 33.50 | Qilin-Med |',
    'CCKS-2019 NER',
    'arXiv:2311.06025',
    '## Case studies',
  ]) {
    assert.ok(report.includes(s), s);
  }
  assert.ok(fs.existsSync(path.join(out, 'report/eval_loss.png')));
  // pt evaluates after each of its 3 steps: its held-out loss is one line through 3 points
  const html = fs.readFileSync(path.join(out, 'report/report.html'), 'utf8');
  assert.match(
    html,
    /aria-label="step: 1; loss: [^;"]+; series: pt" role="graphics-symbol" aria-roledescription="line mark" d="M[^"L]+L[^"L]+L[^"L]+"/,
  );

  // an evaluation interrupted after its items were written: the re-run scores them without generating
  fs.rmSync(path.join(out, 'eval/sft.json'));
  const again = runCli(['run', path.join(dir, 'c.yaml'), '--out', out]);
  assert.equal(again.code, 0, again.stderr.slice(-2000));
  assert.doesNotMatch(again.stderr, /eval sft: (bleu\/rouge|mcq|ner)/);
  assert.match(again.stderr, /eval sft: done/);
  const resumed = JSON.parse(fs.readFileSync(path.join(out, 'eval/sft.json'), 'utf8'));
  for (const k of ['bleu1', 'mcq_acc', 'ner_f1']) assert.equal(resumed[k], sft[k]);
  assert.deepEqual(resumed.ci, sft.ci, 'the seeded bootstrap gives the same intervals');
});
