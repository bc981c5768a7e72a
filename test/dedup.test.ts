import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rng, syntheticText } from '../bench/data.js';
import { Decontaminator, DecontamTracker, flagContamination } from '../src/data/decontam.js';
import {
  ExactDeduper,
  lshParams,
  MinHasher,
  NearDeduper,
  NEAR_DUP_DEFAULTS,
  signatureSimilarity,
  StageDeduper,
  SUBSTRING_DEFAULTS,
} from '../src/data/dedup.js';
import type { Document, McqItem, Tagged } from '../src/data/records.js';
import { lcpArray, removeRanges, repeatedRanges, suffixArray, type KeepPolicy, type Range } from '../src/data/suffixarray.js';

const doc = (id: string, text: string, source = 's'): Document => ({ id, source, text });
const tagDoc = (id: string, text: string, source = 's'): Tagged => ({ kind: 'document', record: doc(id, text, source) });

/** Exact Jaccard similarity of character n-gram sets. */
function jaccard(a: string, b: string, n: number): number {
  const grams = (t: string) => new Set(Array.from({ length: t.length - n + 1 }, (_, i) => t.slice(i, i + n)));
  const A = grams(a),
    B = grams(b);
  let inter = 0;
  for (const g of A) if (B.has(g)) inter++;
  return inter / (A.size + B.size - inter);
}

test('exact dedup matches texts equal after NFKC, case, whitespace and punctuation normalisation', () => {
  const d = new ExactDeduper();
  assert.equal(d.check('a', '高血压患者可以吃党参吗？ ABC 123'), undefined);
  assert.equal(d.check('b', '高血压患者 可以吃党参吗?abc１２３'), 'a');
  assert.equal(d.check('c', '高血压患者可以吃人参吗？ABC123'), undefined);
  assert.equal(d.check('d', '高血压患者可以吃人参吗'), undefined, 'different text (missing ABC123) is not a duplicate');
});

test('MinHash similarity estimates Jaccard similarity without bias', () => {
  const rand = rng(3);
  const h = new MinHasher(128, 5, 1);
  const errs: number[] = [];
  for (let k = 0; k < 60; k++) {
    const a = syntheticText(rand, 600);
    const cut = Math.floor(rand() * 600);
    const b = a.slice(0, cut) + syntheticText(rand, 600 - cut);
    errs.push(signatureSimilarity(h.signature(a), h.signature(b)) - jaccard(a, b, 5));
  }
  const mean = errs.reduce((x, y) => x + y) / errs.length;
  const sd = Math.sqrt(errs.reduce((x, y) => x + (y - mean) ** 2, 0) / errs.length);
  assert.ok(Math.abs(mean) < 0.03, `bias ${mean}`);
  assert.ok(sd < 0.08, `spread ${sd}`); // binomial sd at 128 permutations is at most 0.044
});

test('LSH banding puts the S-curve midpoint near the threshold', () => {
  for (const t of [0.5, 0.7, 0.85, 0.95]) {
    const { bands, rows } = lshParams(t, 128);
    assert.ok(bands * rows <= 128);
    const mid = (1 / bands) ** (1 / rows); // similarity where a pair becomes a candidate with p ~ 0.5
    assert.ok(Math.abs(mid - t) < 0.1, `threshold ${t}: bands ${bands} rows ${rows} midpoint ${mid}`);
  }
});

test('near-duplicate removal keeps pairs below the threshold and removes pairs above it', () => {
  const rand = rng(11);
  const threshold = 0.8;
  const nd = new NearDeduper({ ...NEAR_DUP_DEFAULTS, threshold });
  const bases = Array.from({ length: 40 }, () => syntheticText(rand, 800));
  for (const [i, b] of bases.entries()) assert.equal(nd.check(`base${i}`, b), undefined, 'independent texts are kept');
  let high = 0,
    low = 0;
  for (const [i, b] of bases.entries()) {
    // a light edit (one span replaced) and a heavy one (most of the text replaced)
    const light = b.slice(0, 760) + syntheticText(rand, 40);
    const heavy = b.slice(0, 300) + syntheticText(rand, 500);
    assert.ok(jaccard(b, light, 5) > 0.88 && jaccard(b, heavy, 5) < 0.5);
    const l = nd.check(`light${i}`, light);
    if (l) {
      high++;
      assert.equal(l.duplicateOf, `base${i}`);
      assert.ok(l.similarity >= threshold);
    }
    if (nd.check(`heavy${i}`, heavy) === undefined) low++;
  }
  assert.ok(high >= 38, `near duplicates found: ${high}/40`);
  assert.equal(low, 40, 'texts well below the threshold are kept');
});

// ------------------------------------------------------------------ suffix array

function naiveSuffixArray(s: number[]): number[] {
  const idx = s.map((_, i) => i);
  return idx.sort((a, b) => {
    for (let k = 0; ; k++) {
      if (a + k >= s.length) return -1;
      if (b + k >= s.length) return 1;
      if (s[a + k] !== s[b + k]) return s[a + k] - s[b + k];
    }
  });
}

test('SA-IS suffix array and Kasai LCP agree with naive construction', () => {
  const rand = rng(5);
  for (let trial = 0; trial < 300; trial++) {
    const n = Math.floor(rand() * 60);
    const sigma = 1 + Math.floor(rand() * 4);
    const s = Array.from({ length: n }, () => Math.floor(rand() * sigma));
    const sa = suffixArray(Int32Array.from(s), sigma - 1);
    const want = naiveSuffixArray(s);
    assert.deepEqual([...sa], want, JSON.stringify(s));
    const lcp = lcpArray(Int32Array.from(s), sa);
    for (let i = 1; i < n; i++) {
      let h = 0;
      while (want[i - 1] + h < n && want[i] + h < n && s[want[i - 1] + h] === s[want[i] + h]) h++;
      assert.equal(lcp[i], h);
    }
  }
});

/** Positions covered by an N-window whose content occurs elsewhere (or earlier, for 'first'). */
function bruteRepeats(texts: string[], n: number, keep: KeepPolicy): Range[][] {
  const occ = new Map<string, [number, number][]>();
  texts.forEach((t, d) => {
    for (let s = 0; s + n <= t.length; s++) {
      const w = t.slice(s, s + n);
      occ.set(w, [...(occ.get(w) ?? []), [d, s]]);
    }
  });
  const marks = texts.map((t) => new Uint8Array(t.length));
  for (const list of occ.values()) {
    if (list.length < 2) continue;
    list.forEach(([d, s], i) => {
      if (keep === 'first' && i === 0) return;
      marks[d].fill(1, s, s + n);
    });
  }
  return marks.map((m) => {
    const out: Range[] = [];
    let open = -1;
    for (let i = 0; i <= m.length; i++) {
      const c = i < m.length && m[i] === 1;
      if (c && open < 0) open = i;
      if (!c && open >= 0) {
        out.push([open, i]);
        open = -1;
      }
    }
    return out;
  });
}

test('repeated-substring removal matches a brute-force search on small random strings', () => {
  const rand = rng(9);
  for (let trial = 0; trial < 400; trial++) {
    const texts = Array.from({ length: 1 + Math.floor(rand() * 5) }, () =>
      Array.from({ length: Math.floor(rand() * 40) }, () => 'ab甲'[Math.floor(rand() * 3)]).join(''),
    );
    const n = 1 + Math.floor(rand() * 6);
    const keep: KeepPolicy = rand() < 0.5 ? 'none' : 'first';
    assert.deepEqual(repeatedRanges(texts, n, keep), bruteRepeats(texts, n, keep), JSON.stringify({ texts, n, keep }));
  }
});

test('repeated substrings are found across texts, never across a text boundary, with astral characters', () => {
  const boiler = '感谢您的咨询，希望我的解释对您有所帮助';
  const texts = [`患者头痛三天。${boiler}`, `${boiler}祝您早日康复。`, '无关的一段文字😀😀😀'];
  const r = repeatedRanges(texts, 10);
  assert.deepEqual(r[0], [[7, 7 + boiler.length]]);
  assert.deepEqual(r[1], [[0, boiler.length]]);
  assert.deepEqual(r[2], []);
  assert.equal(removeRanges(texts[0], r[0]), '患者头痛三天。');
  // the end of one text followed by the start of the next is not a repeat
  assert.deepEqual(repeatedRanges(['abcdef', 'ghij', 'efgh'], 4), [[], [], []]);
  // emoji are one code point each: offsets come back in UTF-16 units
  const e = repeatedRanges(['😀ab😀cd', 'x😀cdy'], 3);
  assert.deepEqual(e, [[[4, 8]], [[1, 5]]]);
  assert.equal(removeRanges('😀ab😀cd', e[0]), '😀ab');
});

test('the suffix-array pass handles a few MB of text in seconds', () => {
  const rand = rng(21);
  const texts: string[] = [];
  let chars = 0;
  while (chars < 2_000_000) {
    const t = syntheticText(rand, 800);
    texts.push(t);
    chars += t.length;
    if (rand() < 0.1) texts.push(t); // whole duplicated documents: the slow case for doubling
  }
  const t0 = performance.now();
  const r = repeatedRanges(texts, 50);
  const seconds = (performance.now() - t0) / 1000;
  assert.ok(seconds < 15, `${seconds.toFixed(1)} s for ${chars} chars`);
  assert.ok(r.some((x) => x.length));
});

test('StageDeduper: exact, near and substring removal counted per source', () => {
  const rand = rng(4);
  const dd = new StageDeduper({
    exact: true,
    near: NEAR_DUP_DEFAULTS,
    substring: { ...SUBSTRING_DEFAULTS, minLength: 20, minDocChars: 10 },
  });
  const boiler = '以上建议仅供参考，如有不适请及时到正规医院就诊检查。';
  // distinct last characters, so the struck repeat is exactly the boilerplate
  const a = syntheticText(rand, 300) + '甲',
    b = syntheticText(rand, 300) + '乙',
    c = syntheticText(rand, 300);
  const inputs: Tagged[] = [
    tagDoc('a', a + boiler, 'x'),
    tagDoc('a2', ` ${a + boiler}！`, 'y'), // exact after normalisation
    tagDoc('a3', a.slice(0, 290) + syntheticText(rand, 8) + '丙' + boiler, 'y'), // near
    tagDoc('b', b + boiler, 'y'),
    tagDoc('c', c, 'x'),
    tagDoc('d', boiler + '好', 'x'), // nothing left after striking the boilerplate
  ];
  const kept: Document[] = [];
  for (const t of inputs) if (dd.admit(t)) kept.push(...dd.pushDocument(t.record as Document));
  kept.push(...dd.flush());
  assert.deepEqual(
    kept.map((d) => d.id),
    ['a', 'b', 'c'],
  );
  assert.equal(kept[0].text, a);
  assert.equal(kept[1].text, b);
  assert.equal(kept[2].text, c);
  assert.deepEqual(dd.report.sources.x, {
    input: 3,
    exact: 0,
    near: 0,
    substringRecords: 2,
    substringChars: 2 * boiler.length,
    substringDropped: 1,
  });
  assert.deepEqual(dd.report.sources.y, {
    input: 3,
    exact: 1,
    near: 1,
    substringRecords: 1,
    substringChars: boiler.length,
    substringDropped: 0,
  });
  assert.deepEqual(
    dd.report.examples.map((e) => [e.id, e.by, e.duplicateOf]),
    [
      ['a2', 'exact', 'a'],
      ['a3', 'near', 'a'],
    ],
  );
});

// ------------------------------------------------------------------ decontamination

const mcq = (id: string, question: string, options: Record<string, string>): Tagged => ({
  kind: 'mcq',
  record: { id, source: 'exam', question, options, answer: 'A' } satisfies McqItem,
});

test('decontamination finds a planted evaluation item, ignores unrelated and option-only text', () => {
  const dc = new Decontaminator({ ngram: 8, threshold: 0.5 });
  assert.ok(
    dc.addEvalItem(
      'cmexam',
      mcq('q1', '上消化道出血可单纯表现为呕血或黑便，也可两者兼有，这取决于', {
        A: '原发病',
        B: '出血部位',
        C: '出血量',
        D: '在胃内停留时间',
        E: '以上均非',
      }),
    ),
  );
  assert.ok(dc.addEvalItem('cmexam', mcq('q2', '下列为抗脂解激素的是', { A: '胰高血糖素', B: '促肾上腺皮质激素', C: '胰岛素' })));
  assert.equal(dc.addEvalItem('cmexam', mcq('q3', '咽的分部', { A: '咽', B: '喉' })), false, 'too short to probe');
  const planted =
    '练习题：上消化道出血可单纯表现为呕血或黑便，也可两者兼有，这取决于（ ）A. 原发病 B. 出血部位 C. 出血量 D. 在胃内停留时间。答案：C';
  const hits = dc.check(planted);
  assert.deepEqual(
    hits.map((h) => [h.evalSet, h.id]),
    [['cmexam', 'q1']],
  );
  assert.ok(hits[0].overlap > 0.9);
  assert.deepEqual(dc.check('高血压患者应低盐饮食，规律服药，定期复查血压。'), []);
  assert.deepEqual(
    dc.check('促肾上腺皮质激素由垂体前叶分泌，可促进肾上腺皮质激素的合成。'),
    [],
    'a shared option alone is not contamination',
  );
  // a paraphrase keeping under half of the question's n-grams is not flagged
  assert.deepEqual(dc.check('上消化道出血的表现取决于什么？'), []);
});

test('DecontamTracker drops or flags, and reports per stage and source', () => {
  const item = mcq('q1', '患者男性，65岁，突发胸骨后压榨性疼痛2小时，最可能的诊断是', { A: '急性心肌梗死', B: '心绞痛' });
  const train = tagDoc('t1', '病例：患者男性，65岁，突发胸骨后压榨性疼痛2小时，最可能的诊断是急性心肌梗死。', 'book');
  for (const action of ['drop', 'flag'] as const) {
    const dc = new Decontaminator({ action });
    dc.addEvalItem('cmmlu', item);
    const tracker = new DecontamTracker(dc);
    const res = tracker.check('pt', train, (train.record as Document).text);
    assert.equal(res.drop, action === 'drop');
    assert.equal(res.hits.length, 1);
    assert.equal(tracker.check('pt', tagDoc('t2', '无关文本'.repeat(5), 'book'), '无关文本'.repeat(5)).hits.length, 0);
    const report = tracker.result();
    assert.deepEqual(report.stages.pt.book, {
      checked: 2,
      overlapping: 1,
      dropped: action === 'drop' ? 1 : 0,
      flagged: action === 'flag' ? 1 : 0,
    });
    assert.deepEqual(report.evalSetsHit, { cmmlu: 1 });
    assert.equal(report.matches[0].evalId, 'q1');
    if (action === 'flag') {
      const flagged = flagContamination(train, res.hits);
      assert.deepEqual(
        (flagged.record.meta?.contamination as { id: string }[]).map((c) => c.id),
        ['q1'],
      );
    }
  }
});
