// The metrics a stage's evaluation reports, each a function of its per-item results
// (items.ts), so every one has a percentile bootstrap interval over items and a paired
// bootstrap of its change between two systems scored on the same items.
import { bootstrap, pairedDifference, type BootstrapOptions, type Difference, type Interval, type Statistic } from './bootstrap.js';
import { itemsOf, type EvalItem, type EvalItemOf, type EvalKind } from './items.js';
import { codeLabels, weightedF1Coded } from './mcq.js';
import { bleuFromStats } from './textgen.js';

export interface MetricDef {
  key: string;
  /** Column title in the summary table. */
  label: string;
  /** Decimals shown. */
  digits: number;
  eval: EvalKind;
  /** The items this metric reads among those of its kind (a subset, e.g. one rejected kind). */
  select?: (it: EvalItem) => boolean;
  /** The metric over items[indices]. */
  stat: (items: EvalItem[]) => Statistic;
}

function metric<K extends EvalKind>(
  key: string,
  label: string,
  digits: number,
  kind: K,
  stat: (items: EvalItemOf<K>[]) => Statistic,
  select?: (it: EvalItemOf<K>) => boolean,
): MetricDef {
  return {
    key,
    label,
    digits,
    eval: kind,
    stat: stat as (items: EvalItem[]) => Statistic,
    ...(select ? { select: select as (it: EvalItem) => boolean } : {}),
  };
}

function mean(values: number[]): Statistic {
  return (idx) => {
    let s = 0;
    for (let j = 0; j < idx.length; j++) s += values[idx[j]];
    return s / idx.length;
  };
}

/** Cumulative BLEU-n of the corpus of sentences at the indices, from their summed counts. */
function bleu(n: number): MetricDef {
  return metric(`bleu${n}`, `BLEU-${n}`, 2, 'gen', (items) => {
    // each sentence's counts in one flat row: matches, totals, hypothesis and reference length
    const orders = items[0]?.bleu.matches.length ?? 4,
      w = 2 * orders + 2;
    const flat = new Float64Array(items.length * w);
    items.forEach((it, i) => flat.set([...it.bleu.matches, ...it.bleu.totals, it.bleu.hyp_len, it.bleu.ref_len], i * w));
    const sum = new Float64Array(w);
    return (idx) => {
      sum.fill(0);
      for (let j = 0; j < idx.length; j++) for (let k = 0, o = idx[j] * w; k < w; k++) sum[k] += flat[o + k];
      const s = Array.from(sum);
      return bleuFromStats({
        matches: s.slice(0, orders),
        totals: s.slice(orders, 2 * orders),
        hyp_len: s[2 * orders],
        ref_len: s[2 * orders + 1],
      }).bleu[n - 1];
    };
  });
}

/** ROUGE is a mean of per-sentence F1 (0: ROUGE-1, 1: ROUGE-2, 2: ROUGE-L). */
const rouge = (key: string, label: string, k: number) => metric(key, label, 2, 'gen', (items) => mean(items.map((it) => it.rouge[k])));

const PREF_KINDS = ['wrong_fact', 'unsafe', 'evasive'];

export const METRICS: readonly MetricDef[] = [
  metric('ppl', 'ppl ↓', 2, 'ppl', (items) => (idx) => {
    let nll = 0,
      tokens = 0;
    for (let j = 0; j < idx.length; j++) {
      nll += items[idx[j]].nll;
      tokens += items[idx[j]].tokens;
    }
    return Math.exp(nll / tokens);
  }),
  metric('mcq_acc', 'MCQ acc', 3, 'mcq', (items) => mean(items.map((it) => (it.pred === it.gold ? 1 : 0)))),
  metric('mcq_f1', 'MCQ F1', 3, 'mcq', (items) => {
    const coded = codeLabels(
      items.map((it) => it.gold),
      items.map((it) => it.pred),
    );
    return (idx) => weightedF1Coded(coded, idx);
  }),
  bleu(1),
  bleu(2),
  bleu(3),
  bleu(4),
  rouge('rouge1', 'ROUGE-1', 0),
  rouge('rouge2', 'ROUGE-2', 1),
  rouge('rougeL', 'ROUGE-L', 2),
  metric('ner_f1', 'NER F1', 3, 'ner', (items) => (idx) => {
    let tp = 0,
      fp = 0,
      fn = 0;
    for (let j = 0; j < idx.length; j++) {
      const it = items[idx[j]];
      tp += it.tp;
      fp += it.fp;
      fn += it.fn;
    }
    return tp ? (2 * tp) / (2 * tp + fp + fn) : 0;
  }),
  metric('rm_acc', 'RM acc', 3, 'rm', (items) => mean(items.map((it) => it.win))),
  metric('pref_acc', 'pref acc', 3, 'pref', (items) => mean(items.map((it) => it.win))),
  ...PREF_KINDS.map((k) =>
    metric(
      `pref_acc_${k}`,
      `pref acc (${k.replace('_', ' ')})`,
      3,
      'pref',
      (items) => mean(items.map((it) => it.win)),
      (it) => it.kind === k,
    ),
  ),
  metric('mean_reward', 'reward', 3, 'reward', (items) => mean(items.map((it) => it.reward))),
  // the total sums the item scores; a resample of n items keeps the scale's range
  metric('scale_total', 'scale', 1, 'scale', (items) => (idx) => {
    let s = 0;
    for (let j = 0; j < idx.length; j++) s += items[idx[j]].score ?? NaN;
    return s;
  }),
];

export const METRIC_KEYS = METRICS.map((m) => m.key) as [string, ...string[]];

/** The columns of the summary table unless `eval.table` says otherwise: the papers' metrics
 *  (Qilin-Med: MCQ accuracy and weighted F1, BLEU-1, ROUGE-1; ChiMed-GPT: BLEU-1/2, ROUGE-1/L,
 *  NER F1) and the one each stage targets (perplexity, RM and preference accuracy, reward, scale). */
export const DEFAULT_TABLE = [
  'ppl',
  'mcq_acc',
  'mcq_f1',
  'bleu1',
  'bleu2',
  'rouge1',
  'rougeL',
  'ner_f1',
  'rm_acc',
  'pref_acc',
  'mean_reward',
  'scale_total',
];

export function metricDef(key: string): MetricDef {
  const m = METRICS.find((x) => x.key === key);
  if (!m) throw new Error(`unknown metric ${JSON.stringify(key)} (known: ${METRIC_KEYS.join(', ')})`);
  return m;
}

const selected = (m: MetricDef, items: readonly EvalItem[]) => itemsOf(items, m.eval).filter((it) => !m.select || m.select(it));

export interface MetricSummary {
  values: Record<string, number>;
  ci: Record<string, Interval | null>;
  /** Items behind each metric. */
  n: Record<string, number>;
}

/** Every metric the items support, with its bootstrap interval. */
export function summarizeItems(items: readonly EvalItem[], o: BootstrapOptions = {}): MetricSummary {
  const out: MetricSummary = { values: {}, ci: {}, n: {} };
  for (const m of METRICS) {
    const its = selected(m, items);
    if (!its.length) continue;
    const r = bootstrap(m.stat(its), its.length, o);
    if (!Number.isFinite(r.value)) continue;
    out.values[m.key] = r.value;
    out.ci[m.key] = r.ci;
    out.n[m.key] = its.length;
  }
  return out;
}

/**
 * Paired bootstrap of `current - previous` for every metric both measured, on the items they
 * share (by id, in the current order). `kinds` limits it to some evaluations.
 */
export function compareItems(
  current: readonly EvalItem[],
  previous: readonly EvalItem[],
  o: BootstrapOptions = {},
  kinds?: ReadonlySet<EvalKind>,
): Record<string, Difference & { n: number }> {
  const out: Record<string, Difference & { n: number }> = {};
  for (const m of METRICS) {
    if (kinds && !kinds.has(m.eval)) continue;
    const before = new Map(selected(m, previous).map((it) => [it.id, it]));
    const pairs = selected(m, current).filter((it) => before.has(it.id));
    if (!pairs.length) continue;
    const d = pairedDifference(m.stat(pairs), m.stat(pairs.map((it) => before.get(it.id)!)), pairs.length, o);
    if (Number.isFinite(d.value)) out[m.key] = { ...d, n: pairs.length };
  }
  return out;
}

/** "BLEU-1 12.34 (10.12–14.56)" for each of `keys` that was measured. */
export function describeEstimates(s: MetricSummary, keys: readonly string[]): string {
  return keys
    .filter((k) => s.values[k] !== undefined)
    .map((k) => {
      const m = metricDef(k),
        ci = s.ci[k];
      return `${m.label} ${s.values[k].toFixed(m.digits)}${ci ? ` (${ci[0].toFixed(m.digits)}–${ci[1].toFixed(m.digits)})` : ''}`;
    })
    .join(', ');
}
