import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import type { McqItem } from '../src/data/records.js';
import { ConstantModel } from '../src/eval/baselines.js';
import type { EvalModel, GenerateOptions } from '../src/eval/lm.js';
import { answerCandidates, buildMcqPrompt, evaluateMcq, extractAnswer, weightedF1 } from '../src/eval/mcq.js';
import { readMcqFile } from '../src/eval/read.js';
import { sharedData, tmpDir } from './helpers.js';

/** Knows every item's answer: it reads the question the prompt ends with and looks it up. */
class OracleModel implements EvalModel {
  private readonly key = new Map<string, string>();
  constructor(
    items: McqItem[],
    private readonly say: (answer: string) => string = (a) => `答案：${a}`,
  ) {
    for (const it of items) this.key.set(this.tail(buildMcqPrompt(it, [])), it.answer);
  }
  // the final question block, after the last blank line (the header or the last demonstration)
  private tail(prompt: string): string {
    return prompt.slice(prompt.lastIndexOf('\n\n') + 2);
  }
  private answer(prompt: string): string {
    const a = this.key.get(this.tail(prompt));
    if (a === undefined) throw new Error(`oracle: unknown question in ${JSON.stringify(prompt.slice(-80))}`);
    return a;
  }
  async scoreContinuations(prompt: string, continuations: string[]): Promise<number[]> {
    const a = this.answer(prompt);
    return continuations.map((c) => (c.trim() === a ? -0.1 : -5));
  }
  async generate(prompts: string[], opts: GenerateOptions): Promise<string[][]> {
    return prompts.map((p) => new Array<string>(opts.n ?? 1).fill(this.say(this.answer(p))));
  }
}

const item = (id: string, answer: string, subject = 'anatomy', n = 4): McqItem => ({
  id,
  source: 'test',
  question: `问题${id}`,
  options: Object.fromEntries(Array.from({ length: n }, (_, i) => [String.fromCharCode(65 + i), `选项${id}${i}`])),
  answer,
  subject,
});

test('prompt: C-Eval header, demonstrations with answers, the question ending in 答案：', () => {
  const shot: McqItem = {
    id: 's',
    source: 't',
    question: '属于右心房的结构是',
    options: { A: '肉柱', B: '梳状肌' },
    answer: 'B',
    subject: 'anatomy',
  };
  const q: McqItem = {
    id: 'q',
    source: 't',
    question: '舌下神经核位于',
    options: { A: '间脑', B: '延髓' },
    answer: 'B',
    subject: 'anatomy',
  };
  assert.equal(
    buildMcqPrompt(q, [shot]),
    '以下是中国关于解剖学考试的单项选择题，请选出其中的正确答案。\n\n' +
      '属于右心房的结构是\nA. 肉柱\nB. 梳状肌\n答案：B\n\n' +
      '舌下神经核位于\nA. 间脑\nB. 延髓\n答案：',
  );
  const multi = { ...q, answer: 'AB', meta: { subject_zh: '解剖' } };
  assert.ok(buildMcqPrompt(multi, []).startsWith('以下是中国关于解剖考试的多项选择题'));
  assert.throws(
    () => buildMcqPrompt(q, [], { header: '{subjekt}', headerMulti: '', question: '', option: '', shotAnswer: '' }),
    /unknown placeholder \{subjekt\}/,
  );
});

test('extraction cascade on tricky outputs', () => {
  const opts = { A: '肋胸膜', B: '肺胸膜', C: '膈胸膜', D: '胸膜顶', E: '胸膜' };
  const table: [string, string | null, string | null][] = [
    ['答案：B', 'B', 'explicit'],
    ['正确答案为 C。', 'C', 'explicit'],
    ['答案是A和C', 'AC', 'explicit'],
    ['选D', 'D', 'explicit'],
    ['A和B都不对，应选C', 'C', 'explicit'],
    ['ＢＤ', 'BD', 'leading'], // full-width letters
    ['答案：（E）', 'E', 'explicit'],
    ['The answer is D because...', 'D', 'explicit'],
    ['B. 肺胸膜', 'B', 'leading'],
    ['（C）膈胸膜', 'C', 'leading'],
    ['C、D', 'CD', 'leading'],
    ['我认为是 C 项', 'C', 'lone_letter'],
    ['DNA 复制与此无关，应该是D', 'D', 'lone_letter'], // "DNA" is not the letter D
    ['Because it is obvious', null, null], // the B of "Because" is no answer
    ['The answer is a question of dose', null, null], // lower-case "a" is a word, not option A
    ['肺胸膜', 'B', 'option_text'],
    ['肋胸膜', 'A', 'option_text'], // 胸膜 (E) lies inside 肋胸膜 and is not also chosen
    ['答案：F', null, null], // not an option letter
    ['选项A和选项B都有可能', null, null], // 选项 is not 选; two letters stand alone: ambiguous
    ['不知道', null, null],
    ['', null, null],
    ['答案：B\n\n下一题……答案：C', 'B', 'explicit'], // the first answer phrase wins
  ];
  for (const [out, letters, rule] of table) {
    const got = extractAnswer(out, opts);
    assert.deepEqual(got && [got.letters, got.rule], letters === null ? null : [letters, rule], `output ${JSON.stringify(out)}`);
  }
});

test('weighted F1 by hand', () => {
  // gold A A B C, predicted A B B (failure)
  // A: tp 1, support 2, predicted 1 -> F1 2/3; B: tp 1, support 1, predicted 2 -> 2/3; C: 0
  // weighted by support: (2 * 2/3 + 1 * 2/3 + 1 * 0) / 4 = 0.5
  assert.equal(weightedF1(['A', 'A', 'B', 'C'], ['A', 'B', 'B', null]), 0.5);
  assert.equal(weightedF1(['A', 'B'], ['A', 'B']), 1);
  assert.equal(weightedF1(['A', 'B'], [null, null]), 0);
});

test('multi-answer items: every set of 2+ letters in log-likelihood mode, exact set match', async () => {
  const it = item('m', 'AC');
  assert.deepEqual(answerCandidates(it), ['AB', 'AC', 'AD', 'BC', 'BD', 'CD', 'ABC', 'ABD', 'ACD', 'BCD', 'ABCD']);
  const items = [it, item('s', 'D')];
  const ll = await evaluateMcq(new OracleModel(items), items, [], { k: 0 });
  assert.deepEqual(
    ll.predictions.map((p) => p.pred),
    ['AC', 'D'],
  );
  assert.equal(ll.accuracy, 1);
  const gen = await evaluateMcq(new OracleModel(items, (a) => `答案：${[...a].reverse().join('、')}`), items, [], {
    mode: 'generate',
    k: 0,
  });
  assert.deepEqual(
    gen.predictions.map((p) => p.pred),
    ['AC', 'D'],
  );
  // a subset is wrong
  const partial = await evaluateMcq(new ConstantModel('答案：A'), [it], [], { mode: 'generate' });
  assert.equal(partial.accuracy, 0);
  assert.equal(partial.extraction_failures, 0);
});

test('generation that says nothing usable: failures are counted and never correct', async () => {
  const items = [item('1', 'A'), item('2', 'B'), item('3', 'A', 'virology')];
  const r = await evaluateMcq(new ConstantModel('这道题我不会'), items, [], { mode: 'generate' });
  assert.equal(r.extraction_failures, 3);
  assert.equal(r.extraction_failure_rate, 1);
  assert.equal(r.accuracy, 0);
  assert.equal(r.weighted_f1, 0);
  assert.deepEqual(Object.keys(r.per_subject), ['anatomy', 'virology']);
  assert.equal(r.per_subject.anatomy.extraction_failures, 2);
});

test('shots come from the same subject and never include the item itself', async () => {
  const dev = [item('d1', 'A'), item('d2', 'B', 'virology'), item('d3', 'C'), item('x', 'D')];
  const prompts: string[] = [];
  const recorder: EvalModel = {
    scoreContinuations: async (p, c) => (prompts.push(p), c.map(() => 0)),
    generate: async () => [],
  };
  const r = await evaluateMcq(recorder, [item('x', 'D')], dev, { k: 5 });
  assert.equal(r.predictions[0].shots, 2);
  assert.ok(prompts[0].includes('问题d1') && prompts[0].includes('问题d3'));
  assert.ok(!prompts[0].includes('问题d2'), 'other subject');
  assert.equal(prompts[0].split('问题x').length, 2, 'the item appears once, as the question');
});

const dataDir = sharedData('dev');

test('reads the normalised JSONL and the raw CMMLU CSV alike', { skip: !dataDir && 'no ../shared/data' }, async () => {
  const jsonl = await readMcqFile(path.join(dataDir!, 'cmmlu_medical_dev_core.jsonl'));
  assert.equal(jsonl.length, 40);
  assert.equal(jsonl[0].meta?.subject_zh, '解剖学');
  const csvFile = sharedData('raw/cmmlu/dev_anatomy.csv');
  assert.ok(csvFile);
  const csv = await readMcqFile(csvFile);
  const anatomy = jsonl.filter((x) => x.subject === 'anatomy');
  assert.deepEqual(
    csv.map((x) => [x.question, x.options, x.answer, x.subject]),
    anatomy.map((x) => [x.question, x.options, x.answer, x.subject]),
  );
});

test('unreadable MCQ files name file and line', async () => {
  const dir = tmpDir();
  const f = path.join(dir, 'bad.jsonl');
  fs.writeFileSync(
    f,
    JSON.stringify({ id: 'a', question: 'q', options: { A: 'x', B: 'y' }, answer: 'A' }) +
      '\n' +
      JSON.stringify({ id: 'b', question: 'q', options: { A: 'x', B: 'y' }, answer: 'C' }) +
      '\n',
  );
  await assert.rejects(
    readMcqFile(f),
    (e: Error) => e.message.startsWith(f) && /line 2: answer: letter C is not among the options AB/.test(e.message),
  );
  const ner = path.join(dir, 'ner.jsonl');
  fs.writeFileSync(ner, JSON.stringify({ id: 'n', text: '头痛', entities: [] }) + '\n');
  await assert.rejects(readMcqFile(ner), /ner\.jsonl/);
});

test(
  'CMMLU medical dev with an oracle: accuracy 1 in both modes, 4 shots per item',
  { skip: !dataDir && 'no ../shared/data' },
  async () => {
    const items = await readMcqFile(path.join(dataDir!, 'cmmlu_medical_dev_core.jsonl'));
    const oracle = new OracleModel(items);
    for (const mode of ['loglik', 'generate'] as const) {
      const r = await evaluateMcq(oracle, items, items, { mode });
      assert.equal(r.accuracy, 1, mode);
      assert.equal(r.weighted_f1, 1, mode);
      assert.equal(r.extraction_failures, 0);
      assert.equal(Object.keys(r.per_subject).length, 8);
      for (const s of Object.values(r.per_subject)) assert.deepEqual([s.n, s.accuracy], [5, 1]);
      assert.ok(r.predictions.every((p) => p.shots === 4));
    }
  },
);

test('CMExam with an oracle and with a constant letter', { skip: !dataDir && 'no ../shared/data' }, async () => {
  const items = await readMcqFile(path.join(dataDir!, 'cmexam_val_part1.jsonl'));
  assert.equal(items.length, 1500);
  const oracle = await evaluateMcq(new OracleModel(items), items, items, { k: 5 });
  assert.equal(oracle.accuracy, 1);
  assert.ok(oracle.predictions.every((p) => p.shots === 5));

  // always "A": accuracy is A's share of the answers; only class A has non-zero F1,
  // 2 * tp / (support + predicted) = 2 nA / (nA + n), weighted by nA / n
  const n = items.length,
    nA = items.filter((x) => x.answer === 'A').length;
  for (const [mode, model] of [
    ['loglik', new ConstantModel('A')],
    ['generate', new ConstantModel('答案：A')],
  ] as const) {
    const r = await evaluateMcq(model, items, items, { mode });
    assert.equal(r.accuracy, nA / n, mode);
    assert.ok(Math.abs(r.weighted_f1 - (nA / n) * ((2 * nA) / (nA + n))) < 1e-12, mode);
    assert.equal(r.prompt_template.header, '以下是中国关于{subject}考试的单项选择题，请选出其中的正确答案。\n\n');
  }
});
