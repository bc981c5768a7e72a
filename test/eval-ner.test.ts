import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { NerExample } from '../src/data/records.js';
import type { EvalModel, GenerateOptions } from '../src/eval/lm.js';
import {
  buildNerPrompt,
  CMEEE_TYPE_NAMES,
  entityTypes,
  evaluateNer,
  formatNerAnswer,
  hasNestedEntities,
  mentionScores,
  nerScores,
  parseNerOutput,
  type NerFormat,
  type NerSpan,
} from '../src/eval/ner.js';
import { readNerFile } from '../src/eval/read.js';
import { sharedData } from './helpers.js';

const close = (a: number, b: number) => assert.ok(Math.abs(a - b) < 1e-12, `${a} != ${b}`);

/** The text the prompt asks about: after the last 文本：, before the closing 实体： line. */
function promptText(prompt: string): string {
  const at = prompt.lastIndexOf('文本：') + 3;
  return prompt.slice(at, prompt.length - '\n实体：\n'.length);
}

/** A generator over a fixed function of the asked-about text. */
class TextModel implements EvalModel {
  constructor(private readonly answer: (text: string) => string) {}
  async scoreContinuations(): Promise<number[]> {
    throw new Error('not a scorer');
  }
  async generate(prompts: string[], opts: GenerateOptions): Promise<string[][]> {
    return prompts.map((p) => new Array<string>(opts.n ?? 1).fill(this.answer(promptText(p))));
  }
}

test('nerScores by hand: strict, offsets-only, per type, macro', () => {
  const gold: NerSpan[][] = [
    [
      { start: 0, end: 2, type: 'dis' },
      { start: 3, end: 5, type: 'bod' },
    ],
    [{ start: 1, end: 4, type: 'sym' }],
  ];
  const pred: NerSpan[][] = [
    [
      { start: 0, end: 2, type: 'dis' },
      { start: 3, end: 5, type: 'dis' },
      { start: 6, end: 8, type: 'sym' },
    ],
    [],
  ];
  const s = nerScores(gold, pred, [[], [{ type: 'dru', text: '阿司匹林' }]]);
  // strict: tp [0,2,dis]; fp [3,5,dis] [6,8,sym] and the unlocated dru; fn [3,5,bod] [1,4,sym]
  // P = 1/4, R = 1/3, F1 = 2PR/(P+R) = (1/6)/(7/12) = 2/7
  assert.deepEqual([s.strict.micro.tp, s.strict.micro.fp, s.strict.micro.fn], [1, 3, 2]);
  close(s.strict.micro.f1, 2 / 7);
  // per type: dis P 1/2 R 1 -> 2/3; bod, sym, dru 0; macro over 4 types = 1/6
  close(s.strict.per_type.dis.f1, 2 / 3);
  assert.deepEqual(Object.keys(s.strict.per_type), ['bod', 'dis', 'dru', 'sym']);
  close(s.strict.macro_f1, 1 / 6);
  // offsets only: [3,5] now matches; tp 2, fp [6,8] + unlocated = 2, fn [1,4] = 1 -> P 1/2, R 2/3, F1 4/7
  assert.deepEqual([s.untyped.tp, s.untyped.fp, s.untyped.fn], [2, 2, 1]);
  close(s.untyped.f1, 4 / 7);
  assert.throws(() => nerScores(gold, []), /2 gold examples but 0 predictions/);
});

test('mention scores ignore position', () => {
  const m = mentionScores(
    [
      [
        { type: '药物', text: '阿司匹林' },
        { type: '药物', text: '阿司匹林' },
      ],
    ],
    [
      [
        { type: '药物', text: '阿司匹林' },
        { type: '手术', text: '阿司匹林' },
      ],
    ],
  );
  assert.deepEqual([m.micro.tp, m.micro.fp, m.micro.fn], [1, 1, 0]);
});

const FLAT: NerFormat = { types: ['解剖部位', '影像检查', '药物'] };

test('parsing: repeated mentions, overlap, lists, quotes, unknown types, a run-on answer', () => {
  // 患0者1腹2痛3，4腹5腔6镜7检8查9见10腹11水12。13予14阿15司16匹17林18及19氯20吡21格22雷23治24疗25。26
  const text = '患者腹痛，腹腔镜检查见腹水。予阿司匹林及氯吡格雷治疗。';
  const out = [
    '解剖部位: 腹',
    '影像检查: 腹腔镜检查',
    '解剖部位: 腹', // the second 腹 inside 腹腔镜检查 is taken by a located entity: the next one, 腹水's
    '药物: 阿司匹林、氯吡格雷', // a list not in the text: its parts
    '疾病: 头痛', // not a type of this task
    '以上是全部实体',
    '药物：“华法林”', // full-width colon and quotes; not in the text
    '',
    '解剖部位: 腹', // after the blank line: a run-on, ignored
  ].join('\n');
  const p = parseNerOutput(out, text, FLAT);
  assert.deepEqual(p.spans, [
    { start: 2, end: 3, type: '解剖部位' },
    { start: 5, end: 10, type: '影像检查' },
    { start: 11, end: 12, type: '解剖部位' },
    { start: 15, end: 19, type: '药物' },
    { start: 20, end: 24, type: '药物' },
  ]);
  assert.deepEqual(p.unlocated, [{ type: '药物', text: '华法林' }]);
  assert.equal(p.unparsed_lines, 2);
  // nested annotation: the 腹 right after 腹腔镜检查 may lie inside it
  const nested = parseNerOutput('影像检查: 腹腔镜检查\n解剖部位: 腹', text, { ...FLAT, nested: true });
  assert.deepEqual(nested.spans[1], { start: 5, end: 6, type: '解剖部位' });
  // listed more times than it occurs: the extra line is dropped, not unlocated
  const extra = parseNerOutput('药物: 阿司匹林\n药物: 阿司匹林', text, FLAT);
  assert.deepEqual([extra.spans.length, extra.unlocated.length], [1, 0]);
  assert.deepEqual(parseNerOutput('无', text, FLAT), { mentions: [], spans: [], unlocated: [], unparsed_lines: 0 });
  // offsets count code points: an astral character before the mention counts once
  assert.deepEqual(parseNerOutput('解剖部位: 腹', '𠀀腹痛', FLAT).spans, [{ start: 1, end: 2, type: '解剖部位' }]);
  // CMeEE codes are shown by name and read back by name or code
  const cme: NerFormat = { types: ['dis', 'sym'], typeNames: CMEEE_TYPE_NAMES };
  assert.deepEqual(
    parseNerOutput('疾病: 肺炎\nsym: 咳嗽', '肺炎伴咳嗽', cme).spans.map((s) => s.type),
    ['dis', 'sym'],
  );
});

test('prompt: instruction with type names, demonstrations listing every occurrence in order', () => {
  const shot: NerExample = {
    id: 's',
    source: 't',
    text: '肺炎伴咳嗽，肺炎加重',
    entities: [
      { start: 6, end: 8, type: 'dis', text: '肺炎' },
      { start: 0, end: 2, type: 'dis', text: '肺炎' },
      { start: 3, end: 5, type: 'sym', text: '咳嗽' },
    ],
  };
  const f: NerFormat = { types: ['dis', 'sym'], typeNames: CMEEE_TYPE_NAMES };
  assert.equal(formatNerAnswer(shot.entities, f), '疾病: 肺炎\n临床表现: 咳嗽\n疾病: 肺炎');
  const prompt = buildNerPrompt('发热三天', [shot], f);
  assert.ok(prompt.startsWith('请找出下面医学文本中的所有实体。实体类型包括：疾病、临床表现。\n'));
  assert.ok(prompt.endsWith('文本：肺炎伴咳嗽，肺炎加重\n实体：\n疾病: 肺炎\n临床表现: 咳嗽\n疾病: 肺炎\n\n文本：发热三天\n实体：\n'));
  assert.equal(formatNerAnswer([], f), '无');
});

async function readNer(rel: string, limit: number): Promise<NerExample[] | null> {
  const file = sharedData(rel);
  return file ? (await readNerFile(file)).slice(0, limit) : null;
}

const ccksDev = await readNer('dev/ccks2019_ner_dev.jsonl', 400);
const ccksTrain = await readNer('train/ccks2019_ner_train.jsonl', 600);
const cmeeeDev = await readNer('dev/cmeee_v2_dev.jsonl', 1000);

test(
  'the raw CMeEE release (inclusive ends) reads as the normalised file',
  { skip: !(cmeeeDev && sharedData('raw/cmeee/CMeEE-V2_dev.json')) && 'no ../shared/data' },
  async () => {
    const raw = (await readNerFile(sharedData('raw/cmeee/CMeEE-V2_dev.json')!)).slice(0, cmeeeDev!.length);
    const spans = (xs: NerExample[]) => xs.map((e) => [e.text, e.entities.map((x) => [x.start, x.end, x.type])]);
    assert.deepEqual(spans(raw), spans(cmeeeDev!));
  },
);

test(
  'CCKS-2019 and CMeEE dev with an oracle: mention F1 1, span F1 at the format ceiling',
  { skip: !(ccksDev && cmeeeDev) && 'no ../shared/data' },
  async () => {
    for (const [examples, typeNames, nested] of [
      [ccksDev!, undefined, false],
      [cmeeeDev!, CMEEE_TYPE_NAMES, true],
    ] as const) {
      assert.equal(hasNestedEntities(examples), nested);
      const byText = new Map(examples.map((e) => [e.text, e]));
      const f: NerFormat = { types: entityTypes(examples), ...(typeNames ? { typeNames } : {}) };
      const oracle = new TextModel((t) => formatNerAnswer(byText.get(t)!.entities, f));
      const r = await evaluateNer(oracle, examples.slice(3), examples.slice(0, 3), { typeNames, batchSize: 64 });
      assert.equal(r.k, 3);
      assert.equal(r.mention.micro.f1, 1);
      assert.equal(r.unparsed_lines + r.unlocated_mentions, 0);
      assert.equal(r.strict.micro.f1, r.span_ceiling_f1);
      assert.equal(r.strict.micro.fp, r.strict.micro.fn, 'a misplaced mention is one fp and one fn');
      assert.ok(r.span_ceiling_f1 > 0.98, `ceiling ${r.span_ceiling_f1}`);
    }
  },
);

test(
  'CCKS-2019 with a gazetteer from the training set: the prompt/generate/parse path loses nothing',
  { skip: !(ccksDev && ccksTrain) && 'no ../shared/data' },
  async () => {
    // the most frequent type of each training mention; longest match, left to right
    const votes = new Map<string, Map<string, number>>();
    for (const e of ccksTrain!)
      for (const x of e.entities) {
        const t = x.text.trim();
        if (!t) continue;
        if (!votes.has(t)) votes.set(t, new Map());
        votes.get(t)!.set(x.type, (votes.get(t)!.get(x.type) ?? 0) + 1);
      }
    const lexicon = new Map([...votes].map(([m, v]) => [m, [...v].sort((a, b) => b[1] - a[1])[0][0]]));
    const longest = Math.max(...[...lexicon.keys()].map((m) => m.length));
    const tag = (text: string): NerSpan[] => {
      const spans: NerSpan[] = [];
      for (let i = 0; i < text.length;) {
        let len = Math.min(longest, text.length - i);
        while (len > 0 && !lexicon.has(text.slice(i, i + len))) len--;
        if (len === 0) i++;
        else {
          spans.push({ start: i, end: i + len, type: lexicon.get(text.slice(i, i + len))! });
          i += len;
        }
      }
      return spans;
    };
    const gazetteer = new TextModel(
      (t) =>
        tag(t)
          .map((s) => `${s.type}: ${t.slice(s.start, s.end)}`)
          .join('\n') || '无',
    );
    const dev = ccksDev!.filter((e) => !/[\ud800-\udfff]/.test(e.text));
    const r = await evaluateNer(gazetteer, dev, ccksTrain!, { k: 2, batchSize: 64 });
    const direct = nerScores(
      dev.map((e) => e.entities.map(({ start, end, type }) => ({ start, end, type }))),
      dev.map((e) => tag(e.text)),
    );
    assert.deepEqual(r.strict, direct.strict);
    assert.deepEqual(r.untyped, direct.untyped);
    assert.ok(r.strict.micro.f1 > 0.1 && r.strict.micro.f1 < 0.95, `gazetteer F1 ${r.strict.micro.f1}`);
    console.log(
      `gazetteer baseline on CCKS-2019 dev (${dev.length} texts): strict F1 ${r.strict.micro.f1.toFixed(4)}, untyped ${r.untyped.f1.toFixed(4)}, mention ${r.mention.micro.f1.toFixed(4)}`,
    );
  },
);
