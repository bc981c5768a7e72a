import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { main } from '../src/cli/main.js';
import { loadBuildConfig, parseBuildConfig } from '../src/data/build-config.js';
import { ConfigError } from '../src/model/config.js';
import { buildDatasets } from '../src/data/build.js';
import { DataError } from '../src/data/errors.js';
import { formatTable, displayWidth } from '../src/data/table.js';
import { tmpDir } from './helpers.js';

const jsonl = (...rows: unknown[]) => rows.map((r) => JSON.stringify(r)).join('\n') + '\n';
const readJsonl = (file: string) =>
  fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l));
const readJson = (file: string) => JSON.parse(fs.readFileSync(file, 'utf8'));

const QUESTION = '患者男性，65岁，突发胸骨后压榨性疼痛2小时，伴大汗，最可能的诊断是';
const BOILER = '以上内容仅供参考，具体诊疗请遵医嘱，如有不适请及时到正规医院就诊。';

const FIXTURES: Record<string, string> = {
  'exam.jsonl': jsonl(
    { id: 'e1', question: QUESTION, options: { A: '急性心肌梗死', B: '稳定型心绞痛', C: '主动脉夹层' }, answer: 'A' },
    { id: 'e2', question: '缺铁性贫血最常见的病因是下列哪一项', options: { A: '慢性失血', B: '摄入不足' }, answer: 'A' },
  ),
  'book.txt': [
    `高血压是以体循环动脉压升高为主要表现的临床综合征。${BOILER}`,
    '',
    `糖尿病是一组以高血糖为特征的代谢性疾病，长期高血糖可导致多种器官损害。${BOILER}`,
    '',
    `病例讨论：${QUESTION}？答案为急性心肌梗死。`,
  ].join('\n'),
  'qa.jsonl': jsonl(
    { prompt: '高血压能吃党参吗？', response: '可以适量服用，但需监测血压。' },
    { prompt: '高血压能吃党参吗？', response: '可以适量服用，但需监测血压。' },
    { prompt: '感冒发烧怎么办？', response: '多喝水，注意休息，必要时就医。' },
    { prompt: '只有问题没有回答的一条', response: null },
  ),
  'pairs.jsonl': jsonl(
    { prompt: '头痛怎么办？', chosen: '建议查明原因，必要时就医。', rejected: '忍着。' },
    { prompt: '失眠怎么办？', chosen: '规律作息，避免睡前使用电子产品。', rejected: '喝酒助眠。' },
  ),
  'kg.csv': 'head,relation,tail\n痛风,症状,关节肿痛\n痛风,忌吃,海鲜\n痛风,recommand_drug,秋水仙碱\n',
  'build.yaml': `
name: tiny
out: run
sources:
  - path: exam.jsonl
    name: exam
  - path: book.txt
    textMaxChars: 60
  - path: qa.jsonl
  - path: pairs.jsonl
  - path: kg.csv
dedup:
  substring:
    minLength: 20
    minDocChars: 5
decontam:
  ngram: 8
`,
};

async function withFixtures(fn: (dir: string) => Promise<void>) {
  const dir = tmpDir('chimed-data-build-');
  try {
    for (const [name, content] of Object.entries(FIXTURES)) await writeFile(path.join(dir, name), content);
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Runs `chimed data ...` in-process, capturing what it prints. */
async function cli(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const [stdout, stderr] = [process.stdout.write, process.stderr.write];
  process.stdout.write = ((s: string) => out.push(String(s)) > 0) as typeof process.stdout.write;
  process.stderr.write = ((s: string) => err.push(String(s)) > 0) as typeof process.stderr.write;
  try {
    const code = await main(['data', ...argv]);
    return { code, out: out.join(''), err: err.join('') };
  } finally {
    [process.stdout.write, process.stderr.write] = [stdout, stderr];
  }
}

test('build writes the stage datasets, stats, rejects and reports from a YAML config', async () => {
  await withFixtures(async (dir) => {
    const cfg = await loadBuildConfig(path.join(dir, 'build.yaml'));
    assert.equal(cfg.out, path.join(dir, 'run'));
    const res = await buildDatasets(cfg, { runDir: cfg.out!, countTokens: (t) => Math.ceil(t.length / 2) });
    const data = path.join(dir, 'run', 'data');
    for (const f of [
      'pt.jsonl',
      'sft.jsonl',
      'pref.jsonl',
      'eval_exam.jsonl',
      'stats.json',
      'rejects.jsonl',
      'dedup_report.json',
      'decontam_report.json',
    ]) {
      assert.ok(fs.existsSync(path.join(data, f)), f);
    }
    assert.deepEqual(
      fs.readdirSync(data).filter((f) => f.includes('.tmp-')),
      [],
      'no temp files left',
    );

    const pt = readJsonl(path.join(data, 'pt.jsonl'));
    // the case-discussion paragraph reproduces eval item e1 and is dropped; the boilerplate
    // shared by two paragraphs is struck from both; the KG passage joins them
    assert.deepEqual(
      pt.map((d) => d.source),
      ['book', 'book', 'kg'],
    );
    assert.ok(pt.every((d) => !d.text.includes(BOILER) && !d.text.includes(QUESTION)));
    assert.equal(pt[0].text, '高血压是以体循环动脉压升高为主要表现的临床综合征。');
    assert.match(pt[2].text, /^痛风\n痛风的常见症状有关节肿痛。痛风患者忌吃海鲜。治疗痛风的常用药物有秋水仙碱。$/);

    const sft = readJsonl(path.join(data, 'sft.jsonl'));
    assert.deepEqual(
      sft.map((c) => c.source),
      ['qa', 'qa', 'kg', 'kg', 'kg'],
    );
    assert.ok(sft.every((c) => c.messages.at(-1).role === 'assistant'));
    assert.equal(readJsonl(path.join(data, 'pref.jsonl')).length, 2);
    assert.deepEqual(
      readJsonl(path.join(data, 'eval_exam.jsonl')).map((r) => r.id),
      ['e1', 'e2'],
    );

    const rejects = readJsonl(path.join(data, 'rejects.jsonl'));
    assert.equal(rejects.length, 1);
    assert.equal(rejects[0].line, 4);
    assert.match(rejects[0].reason, /ends on a user turn/);

    const stats = readJson(path.join(data, 'stats.json'));
    assert.equal(stats.stages.sft.sources.qa.records, 2);
    assert.equal(stats.stages.pt.total.records, 3);
    const ptChars = pt.reduce((n, d) => n + d.text.length, 0);
    assert.equal(stats.stages.pt.total.chars, ptChars);
    assert.equal(
      stats.stages.pt.total.tokens,
      pt.reduce((n, d) => n + Math.ceil(d.text.length / 2), 0),
      'tokens come from countTokens',
    );
    assert.equal(stats.stages.eval.sources.exam.records, 2);
    assert.equal(stats.config.dedup.near.threshold, 0.85, 'resolved config with defaults is recorded');
    assert.deepEqual(res.stats, stats.stages);

    const dedup = readJson(path.join(data, 'dedup_report.json'));
    assert.equal(dedup.stages.sft.sources.qa.exact, 1);
    assert.equal(dedup.stages.pt.sources.book.substringRecords, 2);
    assert.equal(dedup.stages.pt.sources.book.substringChars, 2 * BOILER.length);
    const decontam = readJson(path.join(data, 'decontam_report.json'));
    assert.equal(decontam.stages.pt.book.dropped, 1);
    assert.deepEqual(decontam.evalSetsHit, { exam: 1 });
    assert.equal(decontam.matches[0].evalId, 'e1');

    assert.match(res.table, /^stage\s+source\s+records\s+chars\s+tokens\s+mean tokens\n/);
    assert.match(res.table, /\nsft\s+qa\s+2\s/);
  });
});

test('build config errors name the path of every problem', async () => {
  const bad = (raw: unknown) => {
    try {
      parseBuildConfig(raw);
    } catch (err) {
      assert.ok(err instanceof ConfigError);
      return err.message;
    }
    assert.fail('expected a ConfigError');
  };
  assert.match(bad({ sources: [] }), /sources/);
  const msg = bad({
    sources: [{ path: 'a.jsonl', stages: ['eval', 'pt'] }, { path: 'x/a.jsonl' }],
    dedup: { near: { threshold: 2 } },
    colour: 'red',
  });
  assert.match(msg, /Unrecognized key: "colour"/);
  assert.match(msg, /cannot also feed a training stage[\s\S]*sources\[0\]\.stages/);
  assert.match(msg, /source name "a" is also used by sources\[0\]/);
  assert.match(msg, /dedup\.near\.threshold/);
  await withFixtures(async (dir) => {
    await writeFile(path.join(dir, 'broken.yaml'), 'sources: [\n');
    await assert.rejects(loadBuildConfig(path.join(dir, 'broken.yaml')), /broken\.yaml: not valid YAML/);
    // preference records cannot feed SFT: a clear error, no dataset half-written (the
    // rejects file stays, since errors point to it)
    const cfg = parseBuildConfig({ sources: [{ path: path.join(dir, 'pairs.jsonl'), stages: ['sft'] }] });
    await assert.rejects(
      buildDatasets(cfg, { runDir: path.join(dir, 'r') }),
      (err: Error) => err instanceof DataError && /yields preference records .* cannot take/.test(err.message),
    );
    assert.deepEqual(fs.readdirSync(path.join(dir, 'r', 'data')), ['rejects.jsonl']);
  });
});

test('chimed data import / dedup / decontam / stats / build from the command line', async () => {
  await withFixtures(async (dir) => {
    const p = (f: string) => path.join(dir, f);
    let r = await cli(['import', p('qa.jsonl'), p('kg.csv'), p('exam.jsonl'), '--out', p('imp')]);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /qa\.jsonl\s+qa\s+utf-8\s+4\s/);
    assert.deepEqual(fs.readdirSync(p('imp')).sort(), ['conversation.jsonl', 'document.jsonl', 'mcq.jsonl', 'rejects.jsonl']);
    assert.equal(readJsonl(p('imp/conversation.jsonl')).length, 4 + 3);

    r = await cli(['dedup', p('qa.jsonl'), '--out', p('qa.dedup.jsonl'), '--report', p('dedup.json')]);
    assert.equal(r.code, 0, r.err);
    assert.equal(readJsonl(p('qa.dedup.jsonl')).length, 3);
    assert.equal(readJson(p('dedup.json')).sources.qa.exact, 1);
    r = await cli(['dedup', p('book.txt'), '--out', p('book.dedup.jsonl'), '--substring', '20', '--keep', 'first']);
    assert.equal(r.code, 0, r.err);
    const book = readJsonl(p('book.dedup.jsonl'))
      .map((d) => d.text)
      .join('\n');
    assert.equal(book.split(BOILER).length - 1, 1, 'keep first: one copy of the boilerplate remains');

    r = await cli([
      'decontam',
      p('book.txt'),
      '--eval',
      p('exam.jsonl'),
      '--out',
      p('book.clean.jsonl'),
      '--action',
      'flag',
      '--ngram',
      '8',
    ]);
    assert.equal(r.code, 0, r.err);
    const flagged = readJsonl(p('book.clean.jsonl')).filter((d) => d.meta?.contamination);
    assert.equal(flagged.length, 1);
    assert.equal(flagged[0].meta.contamination[0].id, 'e1');
    assert.match(r.out, /items found in training data: exam: 1/);

    r = await cli(['build', p('build.yaml'), '--out', p('run2'), '--quiet']);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /pt\s+book\s+2\s/);
    r = await cli(['stats', p('run2')]);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /pref\s+pairs\s+2\s/);
    r = await cli(['stats', p('pairs.jsonl'), '--json']);
    assert.equal(JSON.parse(r.out).pairs.sources.pairs.records, 2);

    // errors: usage (2), bad data (1), with messages naming the problem
    r = await cli(['import', p('qa.jsonl')]);
    assert.equal(r.code, 2);
    assert.match(r.err, /--out DIR is required/);
    r = await cli(['import', p('missing.jsonl'), '--out', p('imp2')]);
    assert.equal(r.code, 1);
    assert.match(r.err, /missing\.jsonl: no such file/);
    await writeFile(p('bad.jsonl'), '{bad\n{"text": "好"}\n');
    r = await cli(['import', p('bad.jsonl'), '--out', p('imp3'), '--format', 'document']);
    assert.equal(r.code, 1);
    assert.match(r.err, /1 of 2 rows rejected/);
    r = await cli(['frobnicate']);
    assert.equal(r.code, 2);
    r = await cli(['--help']);
    assert.equal(r.code, 0);
    assert.match(r.out, /import FILE\.\.\. --out DIR/);
    r = await cli(['dedup', '--help']);
    assert.match(r.out, /--substring N/);
  });
});

test('stats tables align wide (CJK) characters', () => {
  assert.equal(displayWidth('高血压a'), 7);
  const t = formatTable(
    ['source', 'records'],
    [
      ['高血压', 1200],
      ['ab', 3],
    ],
  ).split('\n');
  assert.deepEqual(t, ['source  records', '------  -------', '高血压    1,200', 'ab            3']);
});
