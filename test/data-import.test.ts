import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import iconv from 'iconv-lite';
import { detectEncoding, decodeBytes } from '../src/data/encoding.js';
import { openImport, type ImportOptions, type ImportedRecord } from '../src/data/import.js';
import { renderEntityPassage, renderEntityQa } from '../src/data/kg.js';
import type { Conversation, Document, McqItem, NerExample, Preference } from '../src/data/records.js';
import { validateRecord } from '../src/data/records.js';
import { RejectRateError, RejectSink } from '../src/data/rejects.js';
import { sharedData, tmpDir } from './helpers.js';

async function importAll(file: string, opts: ImportOptions = {}) {
  const rejects = opts.rejects ?? new RejectSink();
  const stream = await openImport(file, { ...opts, rejects });
  const records: ImportedRecord[] = [];
  for await (const r of stream) records.push(r);
  return { records, summary: stream.summary, rejects: rejects.entries };
}

/** Writes fixture files into a temp dir, runs fn, removes the dir. */
async function withFiles(files: Record<string, string | Uint8Array>, fn: (p: (name: string) => string) => Promise<void>) {
  const dir = tmpDir('chimed-data-import-');
  try {
    for (const [name, content] of Object.entries(files)) await writeFile(path.join(dir, name), content);
    await fn((name) => path.join(dir, name));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const jsonl = (...rows: unknown[]) => rows.map((r) => (typeof r === 'string' ? r : JSON.stringify(r))).join('\n') + '\n';

// ---------------------------------------------------------------- shared real data

const raw = sharedData('raw');
const RAW_EXPECTED: Record<string, { format: string; kind: string; records: number; encoding?: string }> = {
  'cmmlu/dev_anatomy.csv': { format: 'mcq', kind: 'mcq', records: 5 },
  'toyhom/sample_internal_medicine_5000-6000.csv': { format: 'qa', kind: 'conversation', records: 7644, encoding: 'gb18030' },
  'medicalgpt/medical_sft_1K_format.jsonl': { format: 'sharegpt', kind: 'conversation', records: 1000 },
  'medicalgpt/fever.txt': { format: 'text', kind: 'document', records: 145 },
  'medicalgpt/dpo_zh_500.jsonl': { format: 'preference', kind: 'preference', records: 500 },
  'cmeee/CMeEE-V2_dev.json': { format: 'cmeee', kind: 'ner', records: 5000 },
  'ccks2019/train.json': { format: 'ccks', kind: 'ner', records: 600 },
};

test('every raw file in ../shared/data/raw imports with zero rejects', { skip: raw ? false : '../shared/data absent' }, async () => {
  const files = (fs.readdirSync(raw!, { recursive: true }) as string[]).filter((f) => fs.statSync(path.join(raw!, f)).isFile());
  assert.ok(files.length >= 7);
  for (const rel of files) {
    const { records, summary, rejects } = await importAll(path.join(raw!, rel));
    assert.deepEqual(rejects, [], `${rel}: rejects`);
    assert.ok(records.length > 0, rel);
    const want = RAW_EXPECTED[rel] ?? (rel.startsWith('cmmlu/') ? { format: 'mcq', kind: 'mcq', records: 5 } : undefined);
    assert.ok(want, `no expectation for ${rel}`);
    assert.equal(summary.format, want.format, rel);
    assert.equal(records.length, want.records, rel);
    assert.equal(summary.encoding, want.encoding ?? 'utf-8', rel);
    for (const r of records) {
      assert.equal(r.kind, want.kind, rel);
      assert.equal(validateRecord(r.kind, r.record), undefined);
    }
  }
});

const normalised = sharedData();
test(
  'every normalised file in train/ and dev/ imports with zero rejects, one record per line',
  { skip: normalised ? false : '../shared/data absent' },
  async () => {
    for (const sub of ['train', 'dev']) {
      for (const name of fs.readdirSync(path.join(normalised!, sub))) {
        const file = path.join(normalised!, sub, name);
        const lines = fs
          .readFileSync(file, 'utf8')
          .split('\n')
          .filter((l) => l.trim()).length;
        const { records, rejects } = await importAll(file);
        assert.deepEqual(rejects, [], `${sub}/${name}`);
        assert.equal(records.length, lines, `${sub}/${name}`);
      }
    }
  },
);

test(
  'raw CMeEE (inclusive end_idx) and CCKS convert to the same entities as the normalised copies',
  { skip: normalised ? false : '../shared/data absent' },
  async () => {
    for (const [rawFile, normFile] of [
      ['raw/cmeee/CMeEE-V2_dev.json', 'dev/cmeee_v2_dev.jsonl'],
      ['raw/ccks2019/train.json', 'train/ccks2019_ner_train.jsonl'],
    ]) {
      const a = (await importAll(path.join(normalised!, rawFile))).records.map((r) => r.record as NerExample);
      const b = (await importAll(path.join(normalised!, normFile))).records.map((r) => r.record as NerExample);
      assert.equal(a.length, b.length);
      a.forEach((x, i) => {
        assert.equal(x.text, b[i].text);
        assert.deepEqual(x.entities, b[i].entities, `${rawFile} record ${i}`);
      });
    }
  },
);

test(
  'raw ShareGPT SFT and the GB18030 Toyhom CSV agree with their normalised copies',
  { skip: normalised ? false : '../shared/data absent' },
  async () => {
    const sft = (await importAll(path.join(normalised!, 'raw/medicalgpt/medical_sft_1K_format.jsonl'))).records;
    const sftNorm = (await importAll(path.join(normalised!, 'train/medicalgpt_sft_medical_1k.jsonl'))).records;
    assert.deepEqual(
      sft.map((r) => (r.record as Conversation).messages),
      sftNorm.map((r) => (r.record as Conversation).messages),
    );
    const toyhom = (await importAll(path.join(normalised!, 'raw/toyhom/sample_internal_medicine_5000-6000.csv'))).records;
    const rawPairs = new Set(toyhom.map((r) => (r.record as Conversation).messages.map((m) => m.content).join('\u0000')));
    const norm = (await importAll(path.join(normalised!, 'train/toyhom_cmd_internal_medicine.jsonl'))).records;
    const missing = norm.filter((r) => !rawPairs.has((r.record as Conversation).messages.map((m) => m.content).join('\u0000')));
    assert.equal(
      missing.length,
      0,
      `normalised Toyhom pairs not found in the decoded raw CSV: ${missing.slice(0, 3).map((r) => r.record.id)}`,
    );
    const first = toyhom[0].record as Conversation;
    assert.equal(first.meta?.department, '心血管科');
    assert.match(first.messages[0].content, /高血压/);
  },
);

// ---------------------------------------------------------------- inline fixtures

test('Alpaca JSONL: instruction + input, history and system become one conversation', async () => {
  await withFiles(
    {
      'a.jsonl': jsonl(
        {
          instruction: '解释高血压',
          input: '患者58岁',
          output: '高血压是……',
          history: [['你好', '您好，请问有什么可以帮您？']],
          system: '你是医生',
        },
        { instruction: '什么是贫血？', input: '', output: '贫血是指……' },
      ),
    },
    async (p) => {
      const { records, summary } = await importAll(p('a.jsonl'));
      assert.equal(summary.format, 'alpaca');
      assert.deepEqual((records[0].record as Conversation).messages, [
        { role: 'system', content: '你是医生' },
        { role: 'user', content: '你好' },
        { role: 'assistant', content: '您好，请问有什么可以帮您？' },
        { role: 'user', content: '解释高血压\n患者58岁' },
        { role: 'assistant', content: '高血压是……' },
      ]);
      assert.deepEqual(
        (records[1].record as Conversation).messages.map((m) => m.content),
        ['什么是贫血？', '贫血是指……'],
      );
      assert.equal(records[1].record.id, 'a-2');
      assert.equal(records[1].line, 2);
    },
  );
});

test('OpenAI messages JSONL, content parts joined; a tool role is rejected with its field', async () => {
  await withFiles(
    {
      'm.jsonl': jsonl(
        {
          messages: [
            {
              role: 'user',
              content: [
                { type: 'text', text: '头痛' },
                { type: 'text', text: '怎么办' },
              ],
            },
            { role: 'assistant', content: '多休息' },
          ],
        },
        {
          messages: [
            { role: 'user', content: 'hi' },
            { role: 'tool', content: 'x' },
          ],
        },
      ),
    },
    async (p) => {
      const { records, rejects } = await importAll(p('m.jsonl'), { maxRejectRate: 1 });
      assert.deepEqual((records[0].record as Conversation).messages[0], { role: 'user', content: '头痛怎么办' });
      assert.equal(rejects.length, 1);
      assert.equal(rejects[0].line, 2);
      assert.match(rejects[0].reason, /messages\[1\]\.role: unsupported role/);
    },
  );
});

test('preference shapes: conversations+chosen, question+response_chosen, prompt list; history and system kept in the prompt', async () => {
  await withFiles(
    {
      'p.jsonl': jsonl(
        {
          conversations: [
            { from: 'system', value: 'S' },
            { from: 'human', value: '问1' },
          ],
          chosen: '好',
          rejected: '差',
        },
        { question: '问2', response_chosen: '好2', response_rejected: '差2' },
        { prompt: '问3', history: [['早', '早上好']], system: 'S3', chosen: '好3', rejected: '差3' },
        { prompt: [{ role: 'user', content: '问4' }], chosen: '同', rejected: '同' },
      ),
    },
    async (p) => {
      const { records, rejects } = await importAll(p('p.jsonl'), { maxRejectRate: 1 });
      const prefs = records.map((r) => r.record as Preference);
      assert.deepEqual(prefs[0].prompt, [
        { role: 'system', content: 'S' },
        { role: 'user', content: '问1' },
      ]);
      assert.equal(prefs[1].chosen, '好2');
      assert.deepEqual(
        prefs[2].prompt.map((m) => m.role),
        ['system', 'user', 'assistant', 'user'],
      );
      assert.equal(rejects.length, 1);
      assert.match(rejects[0].reason, /chosen: identical to rejected/);
    },
  );
});

test('knowledge-graph triples (CSV and JSONL) aggregate per entity into passages and QA pairs', async () => {
  const csv =
    'head,relation,tail\n高血压,症状,头晕\n高血压,has_symptom,头痛\n高血压,recommand_drug,硝苯地平\n糖尿病,症状,多饮\n高血压,症状,头晕\n糖尿病,并发症,"糖尿病肾病"\n';
  await withFiles(
    {
      'kg.csv': csv,
      'kg.jsonl': jsonl(
        { subject: '痛风', predicate: '忌吃', object: '海鲜' },
        { subject: '痛风', predicate: '所属科室', object: '风湿免疫科' },
      ),
    },
    async (p) => {
      const { records, summary } = await importAll(p('kg.csv'));
      assert.equal(summary.format, 'kg');
      const docs = records.filter((r) => r.kind === 'document').map((r) => (r.record as Document).text);
      assert.deepEqual(docs, [
        '高血压\n高血压的常见症状有头晕、头痛。治疗高血压的常用药物有硝苯地平。',
        '糖尿病\n糖尿病的常见症状有多饮。糖尿病可能的并发症有糖尿病肾病。',
      ]);
      const qa = records.filter((r) => r.kind === 'conversation').map((r) => (r.record as Conversation).messages.map((m) => m.content));
      assert.deepEqual(qa[0], ['高血压有哪些症状？', '高血压的常见症状有头晕、头痛。']);
      assert.equal(qa.length, 4);
      const j = await importAll(p('kg.jsonl'), { kgOutput: 'qa' });
      assert.ok(j.records.every((r) => r.kind === 'conversation'));
      assert.deepEqual(
        j.records.map((r) => (r.record as Conversation).messages[0].content),
        ['痛风患者不能吃什么？', '痛风应该挂哪个科室？'],
      );
    },
  );
  const rels = new Map([['病程', ['数周']]]);
  assert.equal(renderEntityPassage('感冒', rels), '感冒\n感冒的病程：数周。');
  assert.deepEqual(renderEntityQa('感冒', rels), [{ question: '感冒的病程是什么？', answer: '感冒的病程：数周。' }]);
});

test('encodings: GBK/GB18030 CSV, UTF-8 with BOM and plain UTF-8 are detected and decoded', async () => {
  const text = 'department,title,ask,answer\n内科,头痛,"我头痛，\n怎么办？",注意休息\n';
  await withFiles(
    {
      'gbk.csv': iconv.encode(text, 'gbk'),
      'bom.csv': Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(text)]),
      'utf8.csv': text,
    },
    async (p) => {
      for (const [name, enc] of [
        ['gbk.csv', 'gb18030'],
        ['bom.csv', 'utf-8-bom'],
        ['utf8.csv', 'utf-8'],
      ]) {
        const { records, summary } = await importAll(p(name));
        assert.equal(summary.encoding, enc, name);
        assert.equal(records.length, 1, name);
        const c = records[0].record as Conversation;
        assert.equal(c.messages[0].content, '我头痛，\n怎么办？', name);
        assert.equal(c.meta?.department, '内科', name);
        assert.equal(records[0].line, 2);
      }
      // forcing the wrong encoding on GBK bytes fails clearly instead of producing mojibake
      await assert.rejects(importAll(p('gbk.csv'), { encoding: 'utf-8' }), /invalid UTF-8 .*--encoding gb18030/);
    },
  );
  assert.equal(detectEncoding(iconv.encode('中文', 'gb18030'), true), 'gb18030');
  assert.equal(decodeBytes(iconv.encode('\ufeff中文', 'gb18030')).text, '中文');
});

test('malformed rows go to rejects with file, line and reason; the run continues', async () => {
  const lines = [
    JSON.stringify({ prompt: '问题一', response: '回答一' }),
    '{"prompt": "坏的 JSON", ',
    JSON.stringify({ prompt: '问题三', response: '' }),
    '',
    JSON.stringify({ prompt: ['not', 'text'], response: 'x' }),
    JSON.stringify({ prompt: '问题六', response: null }),
    JSON.stringify({ prompt: '问题七', response: '回答七' }),
    '[1, 2]',
  ];
  await withFiles({ 'qa.jsonl': lines.join('\n') + '\n' }, async (p) => {
    const sinkDir = tmpDir('chimed-rejects-');
    const sink = new RejectSink(path.join(sinkDir, 'rejects.jsonl'));
    const { records, summary } = await importAll(p('qa.jsonl'), { maxRejectRate: 1, rejects: sink });
    await sink.close();
    const rejects = fs
      .readFileSync(path.join(sinkDir, 'rejects.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    fs.rmSync(sinkDir, { recursive: true });
    assert.deepEqual(
      records.map((r) => r.line),
      [1, 6, 7],
    );
    assert.deepEqual(
      (records[1].record as Conversation).messages.map((m) => m.role),
      ['user'],
    );
    assert.equal(summary.rejects, 4);
    assert.deepEqual(
      rejects.map((r) => r.line),
      [2, 3, 5, 8],
    );
    assert.ok(rejects.every((r) => r.file === p('qa.jsonl') && typeof r.raw === 'string'));
    assert.match(rejects[0].reason, /malformed JSON/);
    assert.match(rejects[1].reason, /messages\[1\]\.content: empty text/);
    assert.match(rejects[2].reason, /prompt: expected a string, got an array/);
    assert.match(rejects[3].reason, /expected a JSON object, got an array/);
  });
});

test('bad records of every kind are rejected with the offending field', async () => {
  await withFiles(
    {
      'ner.jsonl': jsonl(
        { text: '患者头痛', entities: [{ start: 2, end: 4, type: 'sym', text: '头痛' }] },
        { text: '患者头痛', entities: [{ start: 2, end: 9, type: 'sym', text: '头痛' }] },
        { text: '患者头痛', entities: [{ start: 1, end: 3, type: 'sym', text: '头痛' }] },
      ),
      'cmeee.json': JSON.stringify(
        [
          { text: '发热咳嗽', entities: [{ start_idx: 0, end_idx: 1, type: 'sym', entity: '发热' }] },
          { text: '发热咳嗽', entities: [{ start_idx: 0, end_idx: 2, type: 'sym', entity: '发热' }] },
          { text: '😀发热', entities: [{ start_idx: 1, end_idx: 2, type: 'sym', entity: '发热' }] },
        ],
        null,
        2,
      ),
      'mcq.jsonl': jsonl(
        { question: 'Q1?', options: { A: 'a', B: 'b' }, answer: 'C' },
        { question: 'Q2?', options: { A: 'a', B: '' }, answer: 'A' },
        { question: 'Q3?', options: ['x', 'y', 'z'], answer: 'a, c', explanation: 'because' },
      ),
      'docs.jsonl': jsonl({ text: '   ' }, { text: '正文' }),
      'conv.jsonl': jsonl({
        messages: [
          { role: 'assistant', content: '先说话' },
          { role: 'user', content: '问' },
        ],
      }),
    },
    async (p) => {
      const opts = { maxRejectRate: 1 };
      let r = await importAll(p('ner.jsonl'), opts);
      assert.equal(r.records.length, 1);
      assert.match(r.rejects[0].reason, /entities\[0\]: bad offsets \[2, 9\) for text of length 4/);
      assert.match(r.rejects[1].reason, /entities\[0\]: text "头痛" does not match text\[1:3\] = "者头"/);
      r = await importAll(p('cmeee.json'), opts);
      assert.equal(r.summary.format, 'cmeee');
      assert.deepEqual((r.records[0].record as NerExample).entities, [{ start: 0, end: 2, type: 'sym', text: '发热' }]);
      assert.equal(r.rejects[0].line, 13, 'the element starts on line 13 of the pretty-printed array');
      // offsets count code points, so an emoji before the entity is one position
      assert.deepEqual((r.records[1].record as NerExample).entities[0], { start: 1, end: 3, type: 'sym', text: '发热' });
      r = await importAll(p('mcq.jsonl'), opts);
      assert.match(r.rejects[0].reason, /answer: letter C is not among the options AB/);
      assert.match(r.rejects[1].reason, /options\.B: empty text/);
      const q3 = r.records[0].record as McqItem;
      assert.deepEqual([q3.options, q3.answer, q3.explanation], [{ A: 'x', B: 'y', C: 'z' }, 'AC', 'because']);
      r = await importAll(p('docs.jsonl'), opts);
      assert.match(r.rejects[0].reason, /text: empty text/);
      r = await importAll(p('conv.jsonl'), opts);
      assert.match(r.rejects[0].reason, /messages\[0\]\.role: expected user/);
    },
  );
});

test('a stray invalid byte or a character cut at the end keeps a UTF-8 file UTF-8: only those lines are rejected, naming the line', async () => {
  const texts = Array.from({ length: 1000 }, (_, i) => `第${i + 1}行：高血压患者应低盐饮食，按时服药。`);
  const good = Buffer.from(jsonl(...texts.map((text) => ({ text }))));
  const at = good.indexOf(Buffer.from('第501行')) + 3; // inside line 501, well within the first 64 KiB
  const csv = 'department,title,ask,answer\n内科,头痛,"我头痛，\n怎么办？",注意休息\n外科,骨折,"摔倒\n后疼痛",制动\n';
  const csvBytes = Buffer.from(csv);
  const csvAt = csvBytes.indexOf(Buffer.from('后疼痛')); // on line 5, inside the record that starts on line 4
  const gb = iconv.encode(texts.slice(0, 50).join('\n') + '\n', 'gb18030');
  const gbAt = gb.indexOf(iconv.encode('第20行', 'gb18030'));
  await withFiles(
    {
      'stray.jsonl': Buffer.concat([good.subarray(0, at), Buffer.from([0x80]), good.subarray(at)]),
      'cut.jsonl': good.subarray(0, good.length - 5), // the last line ends inside a 3-byte character
      'stray.csv': Buffer.concat([csvBytes.subarray(0, csvAt), Buffer.from([0xff]), csvBytes.subarray(csvAt)]),
      'bad.txt': Buffer.concat([gb.subarray(0, gbAt), Buffer.from([0x81, 0x0a]), gb.subarray(gbAt)]),
    },
    async (p) => {
      let r = await importAll(p('stray.jsonl'));
      assert.equal(r.summary.encoding, 'utf-8');
      assert.deepEqual(
        r.records.map((x) => (x.record as Document).text),
        texts.filter((_, i) => i !== 500),
        'every other line intact, no mojibake',
      );
      assert.equal(r.rejects.length, 1);
      assert.equal(r.rejects[0].file, p('stray.jsonl'));
      assert.equal(r.rejects[0].line, 501);
      assert.match(r.rejects[0].reason, new RegExp(`invalid UTF-8 bytes at byte ${at} on line 501`));
      assert.match(r.rejects[0].raw, /第\uFFFD501行/);

      r = await importAll(p('cut.jsonl'));
      assert.equal(r.summary.encoding, 'utf-8');
      assert.equal(r.records.length, 999);
      assert.deepEqual([r.rejects.length, r.rejects[0].line], [1, 1000]);
      assert.match(r.rejects[0].reason, /invalid UTF-8 bytes at byte \d+ on line 1000/);

      r = await importAll(p('stray.csv'), { maxRejectRate: 1 });
      assert.equal(r.summary.encoding, 'utf-8');
      assert.deepEqual(
        r.records.map((x) => x.line),
        [2],
      );
      assert.deepEqual(
        r.rejects.map((x) => x.line),
        [4],
        'the multi-line record holding the bad byte, by its first line',
      );
      assert.match(r.rejects[0].reason, /on line 5/);

      // GB18030 text with a bad sequence: detected as GB18030, that line rejected
      r = await importAll(p('bad.txt'), { maxRejectRate: 1 });
      assert.equal(r.summary.encoding, 'gb18030');
      assert.deepEqual(
        r.rejects.map((x) => x.line),
        [20],
        'the line holding only the bad byte',
      );
      assert.match(r.rejects[0].reason, /invalid GB18030 bytes on line 20/);
      assert.ok(r.records.every((x) => !(x.record as Document).text.includes('\uFFFD')));
    },
  );
});

test('bad bytes at and around the 1 MiB read boundaries are found on their lines; characters split between reads decode whole', async () => {
  const texts = Array.from({ length: 40_000 }, (_, i) => `第${i + 1}行：高血压患者应低盐饮食，按时服药。`);
  const good = Buffer.from(jsonl(...texts.map((text) => ({ text }))));
  const lineOf = (byte: number) => good.subarray(0, byte).toString('latin1').split('\n').length;
  // 0xff (never valid) as the last byte of the first read and the first byte of the third
  const spots = [(1 << 20) - 1, (2 << 20) - 1];
  const bad = Buffer.concat([
    good.subarray(0, spots[0]),
    Buffer.from([0xff]),
    good.subarray(spots[0], spots[1]),
    Buffer.from([0xff]),
    good.subarray(spots[1]),
  ]);
  assert.deepEqual([bad[(1 << 20) - 1], bad[2 << 20]], [0xff, 0xff]);
  await withFiles({ 'boundary.jsonl': bad }, async (p) => {
    const { records, rejects, summary } = await importAll(p('boundary.jsonl'));
    assert.equal(summary.encoding, 'utf-8');
    const badLines = spots.map(lineOf);
    assert.deepEqual(
      rejects.map((r) => r.line),
      badLines,
    );
    assert.match(rejects[0].reason, new RegExp(`at byte ${spots[0]} on line ${badLines[0]}`));
    assert.match(rejects[1].reason, new RegExp(`at byte ${spots[1] + 1} on line ${badLines[1]}`));
    assert.deepEqual(
      records.map((r) => (r.record as Document).text),
      texts.filter((_, i) => !badLines.includes(i + 1)),
    );
  });
});

test('the streaming UTF-8 decoder matches a whole-buffer decode for any split into pieces, and finds every bad line', () => {
  let seed = 11;
  const rand = (n: number) => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 8) % n;
  const alphabet = ['a', '\n', '高', '血', '压', '😀', 'é', ' '];
  for (let trial = 0; trial < 300; trial++) {
    const parts: Buffer[] = [];
    for (let i = 0; i < 200; i++) {
      // stray continuation bytes, leads that never complete, bytes UTF-8 never uses
      if (rand(40) === 0) parts.push(Buffer.from([[0xff, 0x80, 0xc3, 0xe4, 0xed, 0xf4, 0xc0][rand(7)]]));
      parts.push(Buffer.from(alphabet[rand(alphabet.length)]));
    }
    const all = Buffer.concat(parts);
    const pieces: Buffer[] = [];
    for (let at = 0; at < all.length;) {
      const n = 1 + rand(9);
      pieces.push(all.subarray(at, at + n));
      at += n;
    }
    const whole = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true }).decode(all);
    const streamed = decodeBytes(pieces, 'utf-8');
    assert.equal(streamed.text, whole, `trial ${trial}`);
    const wholeLines = decodeBytes(all, 'utf-8').invalid.map((x) => x.line);
    assert.deepEqual(
      streamed.invalid.map((x) => x.line),
      wholeLines,
      `trial ${trial}: lines`,
    );
    // every reported line holds U+FFFD, and every line holding one is reported
    const withFffd = whole.split('\n').flatMap((l, i) => (l.includes('\uFFFD') ? [i + 1] : []));
    assert.deepEqual(wholeLines, withFffd, `trial ${trial}`);
  }
});

test('binary data is refused, not imported as documents', async () => {
  let seed = 7;
  const random = Buffer.from(Array.from({ length: 100_000 }, () => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 16) & 0xff));
  await withFiles(
    { 'random.txt': random, 'random.jsonl': random, 'utf16.txt': Buffer.from('高血压\n'.repeat(100), 'utf16le') },
    async (p) => {
      for (const name of ['random.txt', 'random.jsonl', 'utf16.txt']) {
        await assert.rejects(importAll(p(name)), new RegExp(`${name}: binary data, not text`), name);
        await assert.rejects(importAll(p(name), { encoding: 'gb18030' }), /binary data/, `${name} as GB18030`);
      }
      await assert.rejects(importAll(p('utf16.txt')), /UTF-16 without a byte-order mark/);
    },
  );
});

test('CSV: a quote never closed is rejected on the line it opens; the rows after it are read, none swallowed', async () => {
  const rows = Array.from({ length: 9 }, (_, i) => (i === 4 ? `"问题${i + 1},甲,乙,丙,丁,A` : `问题${i + 1},甲,乙,丙,丁,A`));
  await withFiles({ 'dev_x.csv': ['Question,A,B,C,D,Answer', ...rows].join('\n') + '\n' }, async (p) => {
    const { records, rejects } = await importAll(p('dev_x.csv'), { maxRejectRate: 1 });
    assert.deepEqual(
      rejects.map((r) => r.line),
      [6],
    );
    assert.match(rejects[0].reason, /the quote opened on line 6 is never closed/);
    assert.equal(rejects[0].raw, rows[4]);
    assert.deepEqual(
      records.map((r) => r.line),
      [2, 3, 4, 5, 7, 8, 9, 10],
    );
    assert.deepEqual(
      records.map((r) => (r.record as McqItem).question),
      rows.filter((_, i) => i !== 4).map((r) => r.split(',')[0]),
    );
  });
});

test('CSV: CRLF and LF mixed in one file, and CRLF inside quoted fields, keep every row and its line', async () => {
  const csv =
    'Question,A,B,C,D,Answer\r\n问题1,甲,乙,丙,丁,A\r\n问题2,甲,乙,丙,丁,B\n"问题3\r\n续",甲,乙,丙,丁,C\r\n问题4,甲,乙,丙,丁,D\r\n';
  await withFiles({ 'dev_mixed.csv': csv }, async (p) => {
    const { records, rejects } = await importAll(p('dev_mixed.csv'));
    assert.deepEqual(rejects, []);
    assert.deepEqual(
      records.map((r) => [r.line, (r.record as McqItem).question, (r.record as McqItem).answer]),
      [
        [2, '问题1', 'A'],
        [3, '问题2', 'B'],
        [4, '问题3\n续', 'C'],
        [6, '问题4', 'D'],
      ],
    );
  });
});

test('JSON nested absurdly deep is a reject naming its line, not a crash of the whole import', async () => {
  const deep = '{"text":"正文","x":' + '['.repeat(100_000) + ']'.repeat(100_000) + '}';
  await withFiles({ 'deep.jsonl': jsonl({ text: '第一条' }, deep, { text: '第三条' }) }, async (p) => {
    const { records, rejects } = await importAll(p('deep.jsonl'), { maxRejectRate: 1 });
    assert.deepEqual(
      records.map((r) => r.line),
      [1, 3],
    );
    assert.deepEqual(
      rejects.map((r) => [r.line, r.reason]),
      [[2, 'JSON nested deeper than 100 levels']],
    );
    for (const r of records) JSON.stringify(r.record); // what the writers do next
  });
});

test('CSV: quoted multi-line fields keep their start line; wrong field counts are rejects', async () => {
  const csv = ',Question,A,B,C,D,Answer\n0,"第一行\n第二行",甲,乙,丙,丁,B\n1,少一列,甲,乙,丙,A\n2,"含""引号""",甲,乙,丙,丁,d\n';
  await withFiles({ 'dev_anatomy.csv': csv }, async (p) => {
    const { records, rejects } = await importAll(p('dev_anatomy.csv'), { maxRejectRate: 1 });
    assert.deepEqual(
      records.map((r) => r.line),
      [2, 5],
    );
    const [a, b] = records.map((r) => r.record as McqItem);
    assert.equal(a.question, '第一行\n第二行');
    assert.equal(a.subject, 'anatomy');
    assert.equal(b.question, '含"引号"');
    assert.equal(b.answer, 'D');
    assert.equal(rejects.length, 1);
    assert.equal(rejects[0].line, 4);
    assert.match(rejects[0].reason, /expected 7 fields .* got 6/);
  });
});

test('the reject rate limit stops the import with a clear error quoting the first reasons', async () => {
  const rows = Array.from({ length: 20 }, (_, i) => (i % 4 === 0 ? '{broken' : JSON.stringify({ text: `文档${i}` })));
  await withFiles({ 'd.jsonl': rows.join('\n') }, async (p) => {
    await assert.rejects(importAll(p('d.jsonl'), { maxRejectRate: 0.1 }), (err: Error) => {
      assert.ok(err instanceof RejectRateError);
      assert.match(err.message, /5 of 20 rows rejected \(25\.0%\), above the limit of 10\.0%/);
      assert.match(err.message, /line 1: malformed JSON/);
      return true;
    });
    const ok = await importAll(p('d.jsonl'), { maxRejectRate: 0.3 });
    assert.equal(ok.records.length, 15);
    // mid-file: a broken large file stops as soon as enough rows are seen
    const big = Array.from({ length: 5000 }, () => '{bad').join('\n');
    await writeFile(p('d.jsonl'), big);
    const stream = await openImport(p('d.jsonl'), { format: 'document', rejectRateMinRows: 100 });
    const sink: ImportedRecord[] = [];
    await assert.rejects(async () => {
      for await (const r of stream) sink.push(r);
    }, RejectRateError);
    assert.equal(stream.summary.rejects, 100);
  });
});

test('--format overrides detection; an undetectable file names its keys', async () => {
  await withFiles(
    {
      'chat.txt': jsonl({
        conversations: [
          { from: 'human', value: '你好' },
          { from: 'gpt', value: '您好' },
        ],
      }),
      'odd.jsonl': jsonl({ foo: 1, bar: 2 }),
      'notes.jsonl': jsonl({ text: '第一段' }, { text: '第二段' }),
    },
    async (p) => {
      assert.equal((await importAll(p('chat.txt'))).summary.format, 'text');
      const forced = await importAll(p('chat.txt'), { format: 'sharegpt' });
      assert.equal(forced.summary.format, 'sharegpt');
      assert.equal((forced.records[0].record as Conversation).messages[1].content, '您好');
      await assert.rejects(importAll(p('odd.jsonl')), /cannot detect the format; first record keys: \["foo","bar"\]\. Pass --format/);
      const asText = await importAll(p('notes.jsonl'), { format: 'text', textMaxChars: 1000 });
      assert.equal(asText.records.length, 1, 'text format packs lines into one document');
    },
  );
});

test('plain text is packed into documents at line boundaries, long lines cut after a sentence end', async () => {
  const long = '甲'.repeat(30) + '。' + '乙'.repeat(30) + '。';
  await withFiles({ 't.txt': `第一行\n\n第二行\n${long}\n最后` }, async (p) => {
    const { records } = await importAll(p('t.txt'), { textMaxChars: 35 });
    const texts = records.map((r) => (r.record as Document).text);
    assert.deepEqual(texts, ['第一行\n第二行', '甲'.repeat(30) + '。', '乙'.repeat(30) + '。\n最后']);
    assert.deepEqual(
      records.map((r) => r.line),
      [1, 4, 4],
    );
    assert.ok(texts.every((t) => t.length <= 35));
  });
});

test("the project's own records re-import unchanged (source and meta kept)", async () => {
  const own = [
    {
      id: 'c1',
      source: 'toyhom',
      messages: [
        { role: 'user', content: '问' },
        { role: 'assistant', content: '答' },
      ],
      meta: { dept: '内科' },
    },
    { id: 'p1', source: 'pairs', prompt: [{ role: 'user', content: '问' }], chosen: '好', rejected: '差' },
    { id: 'd1', source: 'book', text: '正文', meta: { contamination: [] } },
  ];
  await withFiles({ 'c.jsonl': jsonl(own[0]), 'p.jsonl': jsonl(own[1]), 'd.jsonl': jsonl(own[2]) }, async (p) => {
    for (const [i, name] of ['c.jsonl', 'p.jsonl', 'd.jsonl'].entries()) {
      const { records } = await importAll(p(name));
      assert.deepEqual(records[0].record, own[i], name);
    }
    const renamed = await importAll(p('c.jsonl'), { source: 'sft' });
    assert.equal(renamed.records[0].record.source, 'sft');
    assert.equal(renamed.records[0].record.meta?.origin, 'toyhom');
  });
});

test('stopping early closes the file', async () => {
  const rows = Array.from({ length: 50_000 }, (_, i) => JSON.stringify({ text: `第${i}段正文` })).join('\n');
  const csv = 'prompt,response\n' + Array.from({ length: 50_000 }, (_, i) => `问题${i},"回答\n第${i}条"`).join('\n');
  await withFiles({ 'big.jsonl': rows, 'big.csv': csv, 'odd.jsonl': rows.replace(/"text"/g, '"foo"') }, async (p) => {
    const open = () => fs.readdirSync('/proc/self/fd').length;
    const before = open();
    for (let i = 0; i < 3; i++) {
      for await (const _ of await openImport(p('big.jsonl'))) break;
      for await (const _ of await openImport(p('big.csv'))) break;
      await assert.rejects(openImport(p('odd.jsonl')), /cannot detect the format/);
      await assert.rejects(async () => {
        for await (const _ of await openImport(p('odd.jsonl'), { format: 'document' })) assert.fail('no record expected');
      }, RejectRateError);
    }
    // fd closes complete asynchronously (later on a loaded machine): wait for the count to come
    // back; a leaked descriptor never does, and fails with the count after the bound
    for (const deadline = Date.now() + 10_000; open() !== before && Date.now() < deadline;) await new Promise((r) => setTimeout(r, 10));
    assert.equal(open(), before);
  });
});

test('JSON arrays are split element by element: brackets and escapes inside strings, bad elements, unclosed array', async () => {
  const good = { text: '括号]}内的"引号"与\\反斜杠{[', entities: [{ start_idx: 0, end_idx: 1, type: 'x', entity: '括号' }] };
  await withFiles(
    {
      'a.json': `[\n${JSON.stringify(good)},\n  42,\n{"text": oops},\n${JSON.stringify(good)}\n]\n`,
      'b.json': `[${JSON.stringify(good)}, ${JSON.stringify(good)}`,
    },
    async (p) => {
      const a = await importAll(p('a.json'), { maxRejectRate: 1 });
      assert.equal(a.summary.format, 'cmeee');
      assert.deepEqual(
        a.records.map((r) => r.line),
        [2, 5],
      );
      assert.equal((a.records[0].record as NerExample).text, good.text);
      assert.deepEqual(
        a.rejects.map((r) => [r.line, r.reason.split(':')[0]]),
        [
          [3, 'expected a JSON object, got number 42'],
          [4, 'malformed JSON element'],
        ],
      );
      const b = await importAll(p('b.json'), { maxRejectRate: 1 });
      assert.equal(b.records.length, 1);
      assert.match(b.rejects[0].reason, /unterminated array element at end of file/);
    },
  );
});
