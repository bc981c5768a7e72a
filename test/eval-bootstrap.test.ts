import assert from 'node:assert/strict';
import { test } from 'node:test';
import { bootstrap, pairedDifference, percentileInterval, quantile, resampleIndices } from '../src/eval/bootstrap.js';
import type { EvalItem, GenEvalItem, McqEvalItem, NerEvalItem } from '../src/eval/items.js';
import { genItems } from '../src/eval/items.js';
import { compareItems, metricDef, summarizeItems } from '../src/eval/metrics.js';
import { weightedF1 } from '../src/eval/mcq.js';
import { nerScores } from '../src/eval/ner.js';
import { corpusBleu, sentenceScores, textgenScores } from '../src/eval/textgen.js';
import { medicalText } from './helpers.js';

const close = (a: number, b: number, eps = 1e-9) => assert.ok(Math.abs(a - b) < eps, `${a} != ${b}`);
const idx = (...xs: number[]) => Int32Array.from(xs);
const mean = (v: number[]) => (i: Int32Array) => Array.from(i, (k) => v[k]).reduce((a, b) => a + b, 0) / i.length;

/** Wilson score interval of a proportion (Wilson 1927), the usual reference for a binomial accuracy. */
function wilson(correct: number, n: number, z = 1.959963984540054): [number, number] {
  const p = correct / n,
    z2 = z * z;
  const centre = (p + z2 / (2 * n)) / (1 + z2 / n);
  const half = (z / (1 + z2 / n)) * Math.sqrt((p * (1 - p)) / n + z2 / (4 * n * n));
  return [centre - half, centre + half];
}

test('percentile interval by hand with fixed resample indices', () => {
  const correct = [1, 0, 1, 1];
  const indices = [idx(0, 1, 2, 3), idx(1, 1, 1, 1), idx(0, 0, 2, 3), idx(1, 3, 1, 3), idx(0, 1, 1, 2)];
  // resampled accuracies 0.75, 0, 1, 0.5, 0.5 -> sorted 0, 0.5, 0.5, 0.75, 1
  // 95%: positions (5-1)*0.025 = 0.1 and (5-1)*0.975 = 3.9 -> 0 + 0.1*(0.5-0) and 0.75 + 0.9*(1-0.75)
  const r = bootstrap(mean(correct), 4, { indices });
  close(r.value, 0.75);
  close(r.ci![0], 0.05);
  close(r.ci![1], 0.975);
  // 50%: positions 1 and 3 exactly
  assert.deepEqual(bootstrap(mean(correct), 4, { indices, level: 0.5 }).ci, [0.5, 0.75]);
  assert.equal(quantile([1, 2, 3], 0.5), 2);
  assert.deepEqual(percentileInterval([NaN, 3, Infinity]), [3, 3]);
  assert.equal(percentileInterval([NaN]), null);
  assert.throws(() => bootstrap(mean(correct), 4, { indices: [idx(0, 1)] }), /2 entries for 4 items/);

  // paired: B right only on item 2. Differences per index set: A - B
  // [0,1,2,3] 0.75-0.25 = 0.5; [1,1,1,1] 0-0 = 0; [0,0,2,3] 1-0.25 = 0.75; [1,3,1,3] 0.5-0 = 0.5; [0,1,1,2] 0.5-0.25 = 0.25
  // sorted 0, 0.25, 0.5, 0.5, 0.75 -> 95%: 0.025 and 0.5 + 0.9*0.25 = 0.725; contains 0 -> within noise
  const d = pairedDifference(mean(correct), mean([0, 0, 1, 0]), 4, { indices });
  close(d.value, 0.5);
  close(d.ci![0], 0.025);
  close(d.ci![1], 0.725);
  assert.equal(d.within_noise, false);
  // B right on items 1-3: per-item differences 1, -1, 0, 0; per index set 0, -1, 0.5, -0.5, -0.25
  // sorted -1, -0.5, -0.25, 0, 0.5 -> 95%: -1 + 0.1*0.5 = -0.95 and 0 + 0.9*0.5 = 0.45: contains 0
  const n = pairedDifference(mean(correct), mean([0, 1, 1, 1]), 4, { indices });
  close(n.value, 0);
  close(n.ci![0], -0.95);
  close(n.ci![1], 0.45);
  assert.equal(n.within_noise, true);
});

test('corpus BLEU is recomputed per resample from summed counts, not averaged over sentences', () => {
  // 我爱北京 / 我爱上海: matches [2,1,0,0] of [4,3,2,1]; 我爱 / 我爱北京: matches [2,1] of [2,1], lengths 2 vs 4
  const items = genItems(
    [
      { id: 'a', prompt: [], reference: '我爱上海' },
      { id: 'b', prompt: [], reference: '我爱北京' },
    ],
    ['我爱北京', '我爱'],
  );
  const bleu2 = metricDef('bleu2').stat(items);
  // [0,1]: p1 4/6, p2 2/4, BP exp(1 - 8/6); [0,0]: p1 4/8, p2 2/6, BP 1; [1,1]: p1 = p2 = 1, BP exp(1 - 8/4)
  close(bleu2(idx(0, 1)), 100 * Math.exp(1 - 8 / 6) * Math.sqrt((4 / 6) * (2 / 4)));
  close(bleu2(idx(0, 0)), 100 * Math.sqrt((1 / 2) * (1 / 3)));
  close(bleu2(idx(1, 1)), 100 * Math.exp(-1));
  close(bleu2(idx(0, 0)), corpusBleu(['我爱北京', '我爱北京'], ['我爱上海', '我爱上海']).bleu[1]);
  const r = bootstrap(bleu2, 2, { indices: [idx(0, 1), idx(0, 0), idx(1, 1)], level: 0.5 });
  // sorted 36.79, 40.82, 41.37; 50%: positions 0.5 and 1.5
  const v = [100 * Math.exp(-1), 100 * Math.sqrt(1 / 6), 100 * Math.exp(-1 / 3) * Math.sqrt(1 / 3)];
  close(r.ci![0], (v[0] + v[1]) / 2);
  close(r.ci![1], (v[1] + v[2]) / 2);
});

test('per-sentence statistics give the corpus scores of the direct computation on real text', () => {
  const paras = medicalText(40).split('\n\n').filter(Boolean);
  const hyps = paras.slice(0, 20),
    refs = paras.slice(20, 40).map((r, i) => (i % 3 ? r : [r, paras[i]]));
  const items: GenEvalItem[] = sentenceScores(hyps, refs).map((x, i) => ({
    eval: 'gen',
    id: String(i),
    prompt: [],
    reference: '',
    output: hyps[i],
    ...x,
  }));
  const viaStats = (k: string, pick: Int32Array) => metricDef(k).stat(items)(pick);
  const direct = textgenScores(hyps, refs);
  // a resample with repeats is the corpus with those sentences repeated
  const pick = idx(3, 3, 7, 0, 19, 19, 19);
  const again = textgenScores(
    Array.from(pick, (i) => hyps[i]),
    Array.from(pick, (i) => refs[i]),
  );
  for (const k of Object.keys(direct) as (keyof typeof direct)[]) {
    close(viaStats(k, Int32Array.from(hyps.keys())), direct[k], 1e-9);
    close(viaStats(k, pick), again[k], 1e-9);
  }
});

test('NER F1 and weighted F1 per resample equal the direct scores of the resampled examples', () => {
  const gold = [
    [{ start: 0, end: 2, type: 'dis' }],
    [
      { start: 1, end: 3, type: 'sym' },
      { start: 4, end: 6, type: 'dru' },
    ],
    [],
  ];
  const pred = [[{ start: 0, end: 2, type: 'dis' }], [{ start: 1, end: 3, type: 'dis' }], [{ start: 0, end: 1, type: 'sym' }]];
  const items: NerEvalItem[] = gold.map((g, i) => ({
    eval: 'ner',
    id: String(i),
    text: '',
    gold: '',
    output: '',
    ...nerScores([g], [pred[i]]).strict.micro,
  }));
  const pick = idx(1, 1, 0, 2);
  close(
    metricDef('ner_f1').stat(items)(pick),
    nerScores(
      Array.from(pick, (i) => gold[i]),
      Array.from(pick, (i) => pred[i]),
    ).strict.micro.f1,
  );
  const mcq: McqEvalItem[] = ['A', 'B', 'B', 'C'].map((g, i) => ({
    eval: 'mcq',
    id: String(i),
    question: '',
    options: {},
    gold: g,
    pred: ['A', 'B', null, 'B'][i],
  }));
  const p2 = idx(0, 3, 3, 2);
  close(
    metricDef('mcq_f1').stat(mcq)(p2),
    weightedF1(
      Array.from(p2, (i) => mcq[i].gold),
      Array.from(p2, (i) => mcq[i].pred),
    ),
  );
});

test('accuracy interval agrees with the Wilson interval on 400 items', () => {
  // the draws are integer arithmetic, so these figures are the same on every machine. Measured
  // gaps to Wilson, seeds 0-19: p = 0.6 typically 0.001-0.004, at worst 0.0082 (seed 7); p = 0.88
  // 0.002-0.0055. Seeds 0-4 (p = 0.6) give at most 0.0057.
  for (const [correct, seeds] of [
    [240, [0, 1, 2, 3, 4]],
    [352, [0, 1]],
  ] as const) {
    const items: EvalItem[] = Array.from({ length: 400 }, (_, i) => ({
      eval: 'mcq',
      id: `q${i}`,
      question: '',
      options: {},
      gold: 'A',
      pred: i < correct ? 'A' : 'B',
    }));
    const w = wilson(correct, 400);
    for (const seed of seeds) {
      const s = summarizeItems(items, { seed });
      close(s.values.mcq_acc, correct / 400);
      const ci = s.ci.mcq_acc!;
      assert.ok(Math.abs(ci[0] - w[0]) < 0.01 && Math.abs(ci[1] - w[1]) < 0.01, `seed ${seed}: bootstrap [${ci}] vs Wilson [${w}]`);
    }
  }
});

test('seeded draws repeat; paired comparison of a system with itself is exactly 0 and within noise', () => {
  const a = [...resampleIndices(10, { resamples: 3, seed: 5 })].map((x) => Array.from(x));
  const b = [...resampleIndices(10, { resamples: 3, seed: 5 })].map((x) => Array.from(x));
  const c = [...resampleIndices(10, { resamples: 3, seed: 6 })].map((x) => Array.from(x));
  assert.deepEqual(a, b);
  assert.notDeepEqual(a, c);
  assert.ok(a.flat().every((i) => i >= 0 && i < 10));
  const gens = (outs: string[]): GenEvalItem[] =>
    genItems(
      outs.map((_, i) => ({ id: `g${i}`, prompt: [], reference: '高血压患者应低盐饮食并规律服药' })),
      outs,
    );
  const good = gens(Array.from({ length: 30 }, () => '高血压患者应低盐饮食并规律服药'));
  const bad = gens(Array.from({ length: 30 }, (_, i) => (i % 2 ? '多喝水' : '注意休息')));
  const self = compareItems(good, good, { resamples: 200 });
  assert.equal(self.bleu1.value, 0);
  assert.deepEqual(self.bleu1.ci, [0, 0]);
  assert.equal(self.bleu1.within_noise, true);
  const better = compareItems(good, bad, { resamples: 200 });
  assert.ok(better.rouge1.value > 50 && !better.rouge1.within_noise, JSON.stringify(better.rouge1));
  // items are paired by id: the previous system's extra items are left out
  assert.equal(compareItems(good.slice(0, 10), bad, { resamples: 50 }).bleu1.n, 10);
});
