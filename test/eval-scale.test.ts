import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { CharNgramModel, ConstantModel } from '../src/eval/baselines.js';
import { loadCamiJsonl } from '../src/eval/cami.js';
import type { EvalModel, GenerateOptions } from '../src/eval/lm.js';
import {
  buildScalePrompt,
  bundledScalePath,
  compareScaleResults,
  evaluateScale,
  loadScale,
  parseChoice,
  validateScale,
  type ScaleDefinition,
} from '../src/eval/scale.js';
import { sharedData, tmpDir } from './helpers.js';

const LIKERT = [
  { label: '1', text: '非常不同意', score: 1 },
  { label: '2', text: '比较不同意', score: 2 },
  { label: '3', text: '不确定', score: 3 },
  { label: '4', text: '比较同意', score: 4 },
  { label: '5', text: '非常同意', score: 5 },
];

const small = (): Record<string, unknown> => ({
  name: 'toy',
  language: 'zh',
  instructions: '请选择你的同意程度。',
  options: LIKERT,
  items: [
    { id: 'b1', text: '应当帮助患者。', subscale: '仁慈' },
    { id: 'b2', text: '患者是负担。', subscale: '仁慈', reverse: true },
    { id: 'r1', text: '患者应被隔离。', subscale: '限制' },
  ],
  subscales: [{ name: '仁慈' }, { name: '限制', reverse_in_total: true }],
});

function writeScale(name: string, body: string): string {
  const f = path.join(tmpDir(), name);
  fs.writeFileSync(f, body);
  return f;
}

test('validation names the file and each bad field', () => {
  const bad = small();
  (bad.items as Record<string, unknown>[])[1].subscale = '仁爱';
  (bad.items as Record<string, unknown>[])[2].revers = true;
  (bad.options as unknown[]) = [...LIKERT.slice(0, 4), { label: '4', text: '非常同意', score: 'five' }];
  delete bad.instructions;
  const f = writeScale('bad.json', JSON.stringify(bad));
  let msg = '';
  try {
    loadScale(f);
  } catch (err) {
    msg = (err as Error).message;
  }
  assert.match(msg, new RegExp(`^invalid scale definition ${f.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
  assert.match(msg, /: instructions: /);
  assert.match(msg, /: options\[4\]\.score: /);
  assert.match(msg, /: items\[2\]: .*revers/);
  // cross-field checks run once the shapes are right
  const cross = small();
  (cross.items as Record<string, unknown>[])[1].subscale = '仁爱';
  Object.assign((cross.items as Record<string, unknown>[])[2], { id: 'b1', subscale: '仁慈' });
  assert.throws(
    () => validateScale(cross, 'x.json'),
    (e: Error) =>
      /x\.json: items\[1\]\.subscale: unknown subscale "仁爱" \(declared: 仁慈, 限制\)/.test(e.message) &&
      /x\.json: items: duplicate item id "b1"/.test(e.message) &&
      /x\.json: subscales\[1\]\.name: subscale "限制" has no items/.test(e.message),
  );
  assert.throws(() => loadScale(writeScale('broken.yaml', 'name: [')), /broken\.yaml: cannot parse/);
  assert.throws(
    () => validateScale({ ...small(), prompt_template: '{statement}' }, 't'),
    /prompt_template: unknown placeholder \{statement\}/,
  );
});

test('YAML definitions load like JSON ones', () => {
  const yaml = `name: toy
language: en
instructions: Rate the statement.
options:
  - {label: "1", text: Disagree, score: 1}
  - {label: "2", text: Agree, score: 2}
items:
  - {id: a, text: People recover., subscale: hope}
subscales:
  - {name: hope}
`;
  const s = loadScale(writeScale('toy.yaml', yaml));
  assert.equal(s.items[0].reverse, false);
  assert.equal(
    buildScalePrompt(s, 'People recover.'),
    'Rate the statement.\n\nStatement: People recover.\n\nOptions:\n1. Disagree\n2. Agree\n\nAnswer with the number of one option only.\nAnswer:',
  );
});

test('reading the chosen option', () => {
  const en = [
    { label: '1', text: 'Agree', score: 5 },
    { label: '2', text: 'Agree Slightly', score: 4 },
    { label: '3', text: 'Neither Agree nor Disagree', score: 3 },
    { label: '4', text: 'Disagree Slightly', score: 2 },
    { label: '5', text: 'Disagree Strongly', score: 1 },
  ];
  const table: [string, ScaleDefinition['options'], number | null, string | null][] = [
    ['3', en, 2, 'leading'],
    [' (4) Disagree Slightly', en, 3, 'leading'],
    ['I choose 2 because', en, 1, 'explicit'],
    ['我选择：５', LIKERT, 4, 'explicit'], // full-width digit
    ['我觉得应该是第4项', LIKERT, 3, 'lone_label'],
    ['I agree slightly with this.', en, 1, 'option_text'],
    ['Agree.', en, 0, 'option_text'],
    ['I disagree.', en, null, null], // "agree" inside "disagree" is not the word Agree
    ['比较同意', LIKERT, 3, 'option_text'], // not 非常同意; the longest text wins
    ['非常不同意', LIKERT, 0, 'option_text'],
    ['12', en, null, null], // not a label
    ['1 or 2', en, 0, 'leading'],
    ['不好说', LIKERT, null, null],
  ];
  for (const [out, opts, index, rule] of table) {
    const got = parseChoice(out, opts);
    assert.deepEqual(got && [got.index, got.rule], index === null ? null : [index, rule], JSON.stringify(out));
  }
});

test('reverse coding and subscale totals by hand', async () => {
  const s = validateScale(small(), 'toy');
  // always "4" (比较同意): b1 4, b2 reversed 1+5-4 = 2, r1 4
  const r = await evaluateScale(new ConstantModel('4'), s, { n: 3 });
  assert.deepEqual(
    r.items.map((i) => i.score),
    [4, 2, 4],
  );
  assert.deepEqual(
    r.subscales.map((x) => [x.name, x.score, x.min, x.max]),
    [
      ['仁慈', 6, 2, 10],
      ['限制', 4, 1, 5],
    ],
  );
  // total: 限制 is flipped once more (reverse_in_total): 4 + 2 + (6 - 4) = 8, range 3-15
  assert.deepEqual([r.total.score, r.total.min, r.total.max], [8, 3, 15]);
  assert.equal(r.parse_failures, 0);
  assert.equal(r.items[0].choices.length, 3);
});

test('sampled answers: item means over parsed samples, failures counted', async () => {
  const s = validateScale(small(), 'toy');
  // cycles through its answers per prompt: 5, ??, 1 -> one failure per item, mean of 5 and 1
  const cycling: EvalModel = {
    scoreContinuations: async () => [],
    generate: async (prompts: string[], opts: GenerateOptions) =>
      prompts.map(() => Array.from({ length: opts.n ?? 1 }, (_, i) => ['5', '??', '1'][i % 3])),
  };
  const r = await evaluateScale(cycling, s, { n: 3 });
  assert.equal(r.parse_failures, 3);
  assert.equal(r.parse_failure_rate, 1 / 3);
  assert.deepEqual(
    r.items.map((i) => [i.score, i.failures]),
    [
      [3, 1],
      [3, 1],
      [3, 1],
    ],
  );
  // nothing readable: scores are null, not zero
  const mute = await evaluateScale(new ConstantModel('嗯'), s, { n: 2 });
  assert.equal(mute.total.score, null);
  assert.equal(mute.subscales[0].mean_item, null);
  assert.equal(mute.parse_failure_rate, 1);
  // a real sampler: a character model trained on answers, with a seed, repeats itself
  const lm = new CharNgramModel('回答：4\n回答：5\n回答：4\n回答：2\n', 3);
  const a = await evaluateScale(lm, s, { n: 4, seed: 7, maxNewTokens: 2 });
  const b = await evaluateScale(lm, s, { n: 4, seed: 7, maxNewTokens: 2 });
  assert.deepEqual(
    a.items.map((i) => i.outputs),
    b.items.map((i) => i.outputs),
  );
  assert.equal(a.samples_per_item, 4);
});

test('the bundled Chinese scale: 20 items, 4 subscales, a constant "5" scored by hand', async () => {
  const s = loadScale(bundledScalePath('mental_illness_attitudes_zh.json'));
  assert.match(s.description!, /not a validated instrument/);
  assert.equal(s.items.length, 20);
  assert.deepEqual(
    s.subscales.map((x) => x.name),
    ['权威主义', '仁慈', '社会限制', '社区心理健康意识'],
  );
  for (const sub of s.subscales) {
    const items = s.items.filter((i) => i.subscale === sub.name);
    assert.deepEqual([items.length, items.filter((i) => i.reverse).length], [5, 2], sub.name);
  }
  // always 非常同意 (5): per subscale 3 items * 5 + 2 reversed * 1 = 17 (range 5-25);
  // the total flips 权威主义 and 社会限制: (30 - 17) * 2 + 17 * 2 = 60 (range 20-100)
  const r = await evaluateScale(new ConstantModel('5'), s, { n: 1 });
  assert.deepEqual(
    r.subscales.map((x) => x.score),
    [17, 17, 17, 17],
  );
  assert.deepEqual([r.total.score, r.total.min, r.total.max], [60, 20, 100]);
  assert.ok(buildScalePrompt(s, s.items[0].text).endsWith('请只回答一个选项的编号。\n回答：'));
});

const camiFile = sharedData('dev/cami_adapted_27_en.jsonl');

test('CAMI-27 converts at load time and scores by hand', { skip: !camiFile && 'no ../shared/data' }, async () => {
  const s = loadCamiJsonl(camiFile!);
  assert.equal(s.items.length, 27);
  assert.deepEqual(
    s.options.map((o) => [o.label, o.text, o.score]),
    [
      ['1', 'Agree', 5],
      ['2', 'Agree Slightly', 4],
      ['3', 'Neither Agree nor Disagree', 3],
      ['4', 'Disagree Slightly', 2],
      ['5', 'Disagree Strongly', 1],
    ],
  );
  const count = (name: string) => s.items.filter((i) => i.subscale === name).length;
  assert.deepEqual(
    s.subscales.map((x) => [x.name, count(x.name)]),
    [
      ['authoritarianism', 7],
      ['benevolence', 7],
      ['social_restrictiveness', 8],
      ['community_mental_health_ideology', 5],
    ],
  );
  // always "1" (Agree, score 5); reversed items score 1:
  //   AU  items 1-3 agree-keyed, 4-7 reversed:        3*5 + 4*1 = 19 (7-35)
  //   B   items 8-10 keyed, 11-14 reversed:           3*5 + 4*1 = 19 (7-35)
  //   SR  items 15-18 keyed, 19-21 and 27 reversed:   4*5 + 4*1 = 24 (8-40)
  //   CMHI items 22-24 keyed, 25-26 reversed:         3*5 + 2*1 = 17 (5-25)
  // total flips AU and SR: (42 - 19) + 19 + (48 - 24) + 17 = 83 (27-135)
  const r = await evaluateScale(new ConstantModel('1'), s, { n: 2 });
  assert.deepEqual(
    r.subscales.map((x) => [x.score, x.min, x.max]),
    [
      [19, 7, 35],
      [19, 7, 35],
      [24, 8, 40],
      [17, 5, 25],
    ],
  );
  assert.deepEqual([r.total.score, r.total.min, r.total.max], [83, 27, 135]);

  const table = compareScaleResults([
    { model: 'agree-bot', result: r },
    { model: 'neutral-bot', result: await evaluateScale(new ConstantModel('3'), s, { n: 1 }) },
  ]);
  assert.deepEqual(table.columns, ['score', 'range', 'agree-bot', 'neutral-bot']);
  assert.deepEqual(table.rows[0], ['authoritarianism', '7–35', '19.00', '21.00']);
  assert.deepEqual(table.rows.at(-1), ['parse failures', '', '0/54', '0/27']);
  assert.ok(table.markdown.startsWith('| score | range | agree-bot | neutral-bot |\n| --- | --- | --- | --- |\n'));
});

test('a CAMI file that does not fit the key is refused with file and line', () => {
  const line = (no: number, prompt: string) =>
    JSON.stringify({ id: `c${no}`, item_no: no, prompt, lang: 'en', scale: 'x', response_options: ['1- Agree', '2- Disagree'] });
  const f = writeScale(
    'cami.jsonl',
    line(1, 'Mental illness is caused by a lack of self-discipline.') + '\n' + line(2, 'Something else entirely.') + '\n',
  );
  assert.throws(() => loadCamiJsonl(f), /cami\.jsonl:2: item_no 2 should mention "easy to tell"/);
  const g = writeScale('cami2.jsonl', line(1, 'self-discipline') + '\n' + JSON.stringify({ id: 'c2', item_no: 2 }) + '\n');
  assert.throws(() => loadCamiJsonl(g), /cami2\.jsonl:2: prompt: /);
});
