import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { summarizeItems } from '../src/eval/metrics.js';
import { nerFormatFor } from '../src/eval/ner.js';
import { genPredictionItems, mcqPredictionItems, nerPredictions } from '../src/eval/predictions.js';
import { readMcqFile, readNerFile } from '../src/eval/read.js';
import { readConversations } from '../src/eval/suite.js';
import { runCli, tmpDir } from './helpers.js';

const dir = tmpDir('chimed-pred-');
const write = (name: string, rows: unknown[]) => {
  const f = path.join(dir, name);
  fs.writeFileSync(f, rows.map((r) => (typeof r === 'string' ? r : JSON.stringify(r))).join('\n') + '\n');
  return f;
};

const convFile = write('conv.jsonl', [
  { id: 'c1', prompt: '高血压平时要注意什么？', response: '低盐饮食，规律服药，定期测量血压。' },
  { prompt: '感冒发烧怎么办？', response: '多休息多喝水，体温超过38.5℃可服退烧药。' }, // no id: keyed conv-2 (file name, line)
  {
    id: 'c3',
    messages: [
      { role: 'user', content: '胃痛' },
      { role: 'assistant', content: '建议到消化内科就诊。' },
    ],
  },
]);
const mcqFile = write('mcq.jsonl', [
  { id: 'm1', question: '治疗高血压常用', options: { A: '氨氯地平', B: '阿莫西林', C: '奥美拉唑', D: '布洛芬' }, answer: 'A' },
  { id: 'm2', question: '痛风急性期可用', options: { A: '二甲双胍', B: '秋水仙碱', C: '沙丁胺醇', D: '硫酸亚铁' }, answer: 'B' },
  { id: 'm3', question: '哮喘发作可用', options: { A: '二甲双胍', B: '秋水仙碱', C: '沙丁胺醇', D: '硫酸亚铁' }, answer: 'C' },
  { id: 'm4', question: '贫血可补充', options: { A: '二甲双胍', B: '秋水仙碱', C: '沙丁胺醇', D: '硫酸亚铁' }, answer: 'D' },
]);
const nerFile = write('ner.jsonl', [
  {
    id: 'n1',
    text: '患者因头痛就诊，诊断为高血压。',
    entities: [
      { start: 3, end: 5, type: 'symptom', text: '头痛' },
      { start: 11, end: 14, type: 'disease', text: '高血压' },
    ],
  },
  { id: 'n2', text: '医生开了阿莫西林。', entities: [{ start: 4, end: 8, type: 'drug', text: '阿莫西林' }] },
]);

test("another system's replies are scored on the same items: exact references score 100 with a zero-width interval", async () => {
  const convs = await readConversations(convFile);
  assert.deepEqual(
    convs.map((c) => c.id),
    ['c1', 'conv-2', 'c3'],
  );
  const perfect = write(
    'perfect.jsonl',
    convs.map((c) => ({ id: c.id, output: c.reference })),
  );
  const s = summarizeItems(await genPredictionItems(perfect, convs, convs, convFile), { resamples: 100 });
  assert.equal(s.values.bleu1, 100);
  assert.equal(s.values.rougeL, 100);
  assert.deepEqual(s.ci.bleu4, [100, 100]);
  // only the evaluated items need a line; lines for other items of the data file are ignored
  const items = await genPredictionItems(perfect, convs.slice(0, 1), convs, convFile);
  assert.equal(items.length, 1);
});

test('bad prediction files name the file and line', async () => {
  const convs = await readConversations(convFile);
  const cases: [unknown[], RegExp][] = [
    [
      [
        { id: 'c1', output: 'a' },
        { id: 'c9', output: 'b' },
      ],
      /bad\.jsonl:2: unknown item id "c9": no such item in .*conv\.jsonl/,
    ],
    [
      [
        { id: 'c1', output: 'a' },
        { id: 'c1', output: 'b' },
      ],
      /bad\.jsonl:2: a second prediction for item "c1" \(the first is at .*bad\.jsonl:1\)/,
    ],
    [[{ output: 'a' }], /bad\.jsonl:1: a prediction needs an "id"/],
    [[{ id: 'c1', output: 'a' }], /bad\.jsonl: no prediction for 2 of the 3 items of .*conv\.jsonl \("conv-2", "c3"\)/],
    [
      [
        { id: 'c1', output: 1 },
        { id: 'conv-2', output: 'x' },
        { id: 'c3', output: 'y' },
      ],
      /bad\.jsonl:1: expected a string field output \| response/,
    ],
    [['{"id": "c1", '], /bad\.jsonl:1: malformed JSON/],
  ];
  for (const [rows, re] of cases) await assert.rejects(genPredictionItems(write('bad.jsonl', rows), convs, convs, convFile), re);
  const mcq = await readMcqFile(mcqFile);
  await assert.rejects(
    mcqPredictionItems(
      write(
        'bad.jsonl',
        mcq.map((m) => ({ id: m.id, answer: m.id === 'm2' ? 'E' : 'A' })),
      ),
      mcq,
      mcq,
      mcqFile,
    ),
    /bad\.jsonl:2: answer "E" is not among the options ABCD of item "m2"/,
  );
});

test('MCQ predictions as letters or as free text read by the extraction cascade', async () => {
  const mcq = await readMcqFile(mcqFile);
  const file = write('mcq-pred.jsonl', [
    { id: 'm1', answer: 'a' }, // letters are normalised
    { id: 'm2', output: '答案是B' },
    { id: 'm3', output: '我不知道' }, // unreadable: a prediction of no class
    { id: 'm4', answer: 'Ｂ' },
  ]);
  const items = await mcqPredictionItems(file, mcq, mcq, mcqFile);
  assert.deepEqual(
    items.map((x) => x.pred),
    ['A', 'B', null, 'B'],
  );
  const s = summarizeItems(items, { resamples: 50 });
  assert.equal(s.values.mcq_acc, 0.5);
  assert.equal(s.n.mcq_acc, 4);
});

test('NER predictions as lines or as spans; exact spans score 1', async () => {
  const all = await readNerFile(nerFile);
  const f = nerFormatFor(all, []);
  assert.deepEqual(f.typeNames, { symptom: '症状', disease: '疾病', drug: '药物' }); // the built-in corpus's type keys are shown in Chinese
  const spans = write(
    'ner-spans.jsonl',
    all.map((e) => ({ id: e.id, entities: e.entities.map(({ start, end, type }) => ({ start, end, type })) })),
  );
  assert.equal((await nerPredictions(spans, all, all, nerFile, f)).strict.micro.f1, 1);
  const lines = write('ner-lines.jsonl', [
    { id: 'n1', output: '症状: 头痛\n疾病: 高血压' },
    { id: 'n2', output: '疾病: 阿莫西林' },
  ]);
  const r = await nerPredictions(lines, all, all, nerFile, f);
  // tp 2, fp 1 (wrong type), fn 1 -> F1 = 4 / (4 + 1 + 1)
  assert.equal(r.strict.micro.f1, 2 / 3);
  await assert.rejects(
    nerPredictions(
      write('bad.jsonl', [
        { id: 'n1', entities: [{ start: 3, end: 99, type: 'symptom' }] },
        { id: 'n2', output: '无' },
      ]),
      all,
      all,
      nerFile,
      f,
    ),
    /bad\.jsonl:1: entities\[0\]: expected \{start, end, type\} with 0 <= start < end <= 15/,
  );
});

test('chimed eval gen|mcq|ner --predictions print every metric with its interval', () => {
  const convs = [
    { id: 'c1', output: '低盐饮食，规律服药。' },
    { id: 'conv-2', output: '多喝水。' },
    { id: 'c3', output: '去医院。' },
  ];
  const g = runCli(['eval', 'gen', '--predictions', write('g.jsonl', convs), '--data', convFile, '--resamples', '200', '--json']);
  assert.equal(g.code, 0, g.stderr);
  const out = JSON.parse(g.stdout);
  assert.equal(out.n, 3);
  for (const k of ['bleu1', 'bleu2', 'bleu4', 'rouge1', 'rougeL'])
    assert.ok(out.ci[k][0] <= out[k] && out[k] <= out.ci[k][1], `${k} ${out[k]} in ${out.ci[k]}`);
  const m = runCli([
    'eval',
    'mcq',
    '--predictions',
    write('m.jsonl', [
      { id: 'm1', answer: 'A' },
      { id: 'm2', answer: 'B' },
      { id: 'm3', answer: 'A' },
      { id: 'm4', answer: 'D' },
    ]),
    '--data',
    mcqFile,
  ]);
  assert.equal(m.code, 0, m.stderr);
  assert.match(m.stdout, /MCQ acc 0\.750 \(\d\.\d{3}–\d\.\d{3}\), MCQ F1 /);
  const n = runCli([
    'eval',
    'ner',
    '--predictions',
    write('n.jsonl', [
      { id: 'n1', output: '症状: 头痛' },
      { id: 'n2', output: '药物: 阿莫西林' },
    ]),
    '--data',
    nerFile,
  ]);
  assert.equal(n.code, 0, n.stderr);
  assert.match(n.stdout, /strict span NER F1 0\.800 \(/);
  const bad = runCli(['eval', 'mcq', '--predictions', write('m.jsonl', [{ id: 'zz', answer: 'A' }]), '--data', mcqFile]);
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /m\.jsonl:1: unknown item id "zz"/);
});
