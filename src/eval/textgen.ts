// BLEU and ROUGE for generated answers against reference answers, on a 0-100 scale.
//
// Written here rather than taken from npm: the BLEU/ROUGE packages there tokenise by spaces
// (useless for Chinese), and none reproduces sacrebleu's corpus-level counting and
// smoothing, which is what makes the figures comparable with the papers'.
//
// Tokenisation (`tokenizer`):
//   'char' (default)  one token per Chinese character or punctuation mark, whitespace
//                      dropped, runs of ASCII letters/digits kept whole ("COVID", "19");
//   'jieba'            words from jieba's default dictionary (whitespace dropped);
//   'whitespace'       split on whitespace, for text the caller has already tokenised;
//   or a function.
//
// BLEU is corpus-level as in sacrebleu: clipped n-gram matches and hypothesis n-gram counts
// are summed over the whole corpus before precisions are formed; the brevity penalty uses,
// per sentence, the reference length closest to the hypothesis length (the shorter on a
// tie). BLEU-n is the cumulative score: the geometric mean of precisions 1..n with uniform
// weights 1/n, times the brevity penalty.
// Smoothing of a zero match count at order n (sacrebleu's names):
//   'exp' (default; sacrebleu's default, Chen & Cherry 2014 method 3): the k-th order with
//         no match gets precision 1 / (2^k * total_n);
//   'floor' (Chen & Cherry method 1): precision epsilon / total_n (epsilon 0.1 by default);
//   'none': the precision is 0, and so is every BLEU-n from that order on.
// An order with no hypothesis n-grams at all (every hypothesis shorter than n) gives 0, and
// a corpus without a single matching unigram scores 0 whatever the smoothing (sacrebleu's
// and NLTK's early stop), so that disjoint text is 0, not a smoothed 12.5.
//
// ROUGE-1/2/L are F1 scores (beta = 1) computed per sentence and averaged over the corpus,
// as rouge-score and the Chinese medical papers do; with several references a sentence
// takes the best F1 among them. ROUGE-L uses the longest common subsequence.
import { Jieba } from '@node-rs/jieba';
import { dict } from '@node-rs/jieba/dict.js';
import { charTokens, lcsLength } from '../data/overlap.js';
import { generateBatched, type EvalModel } from './lm.js';

export type TokenizerName = 'char' | 'jieba' | 'whitespace';
export type Tokenizer = TokenizerName | ((text: string) => string[]);
export type BleuSmoothing = 'exp' | 'floor' | 'none';

let jieba: Jieba | undefined;
function jiebaTokens(text: string): string[] {
  jieba ??= Jieba.withDict(dict); // ~0.5 s to load, so only when asked for
  return jieba.cut(text, false).filter((w) => w.trim() !== '');
}

export function tokenize(text: string, tokenizer: Tokenizer = 'char'): string[] {
  if (typeof tokenizer === 'function') return tokenizer(text);
  switch (tokenizer) {
    case 'char':
      return charTokens(text);
    case 'jieba':
      return jiebaTokens(text);
    case 'whitespace':
      return text.split(/\s+/u).filter(Boolean);
    default:
      throw new Error(`unknown tokenizer ${JSON.stringify(tokenizer)} (expected char, jieba or whitespace)`);
  }
}

/** References per hypothesis: one string, or several alternatives. */
export type References = string | string[];

function checkCorpus(hyps: string[], refs: References[]): string[][] {
  if (hyps.length !== refs.length) throw new Error(`${hyps.length} hypotheses but ${refs.length} references`);
  if (hyps.length === 0) throw new Error('empty corpus: no hypotheses to score');
  return refs.map((r, i) => {
    const list = typeof r === 'string' ? [r] : r;
    if (list.length === 0) throw new Error(`references[${i}]: no reference text`);
    return list;
  });
}

function ngramCounts(tokens: string[], n: number): Map<string, number> {
  const counts = new Map<string, number>();
  for (let i = 0; i + n <= tokens.length; i++) {
    const key = tokens.slice(i, i + n).join('\u0001');
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return counts;
}

export interface BleuOptions {
  tokenizer?: Tokenizer;
  maxOrder?: number;
  smoothing?: BleuSmoothing;
  /** The 'floor' smoothing's epsilon. */
  epsilon?: number;
}

export interface BleuResult {
  /** Cumulative BLEU-1..BLEU-maxOrder, 0-100. */
  bleu: number[];
  /** Modified n-gram precisions for orders 1..maxOrder after smoothing, 0-100. */
  precisions: number[];
  /** Clipped matches and hypothesis n-grams per order, summed over the corpus. */
  matches: number[];
  totals: number[];
  brevity_penalty: number;
  hyp_len: number;
  ref_len: number;
  smoothing: BleuSmoothing;
}

/** One sentence's BLEU counts; corpus BLEU sums them over sentences before forming precisions. */
export interface BleuStats {
  /** Clipped n-gram matches and hypothesis n-grams, orders 1..maxOrder. */
  matches: number[];
  totals: number[];
  hyp_len: number;
  /** The reference length closest to the hypothesis length (the shorter on a tie). */
  ref_len: number;
}

export function sentenceBleuStats(hyp: string[], refs: string[][], maxOrder = 4): BleuStats {
  const matches = new Array<number>(maxOrder).fill(0);
  const totals = new Array<number>(maxOrder).fill(0);
  let closest = refs[0].length;
  for (const r of refs) {
    const d = Math.abs(r.length - hyp.length),
      best = Math.abs(closest - hyp.length);
    if (d < best || (d === best && r.length < closest)) closest = r.length;
  }
  for (let n = 1; n <= maxOrder; n++) {
    // clip each hypothesis n-gram by its largest count in any one reference
    const maxRef = new Map<string, number>();
    for (const r of refs) for (const [g, c] of ngramCounts(r, n)) maxRef.set(g, Math.max(maxRef.get(g) ?? 0, c));
    for (const [g, c] of ngramCounts(hyp, n)) {
      matches[n - 1] += Math.min(c, maxRef.get(g) ?? 0);
      totals[n - 1] += c;
    }
  }
  return { matches, totals, hyp_len: hyp.length, ref_len: closest };
}

/** Adds `b` into `a` (same order). */
function addBleuStats(a: BleuStats, b: BleuStats): BleuStats {
  for (let n = 0; n < a.matches.length; n++) {
    a.matches[n] += b.matches[n];
    a.totals[n] += b.totals[n];
  }
  a.hyp_len += b.hyp_len;
  a.ref_len += b.ref_len;
  return a;
}

const emptyBleuStats = (maxOrder = 4): BleuStats => ({
  matches: new Array<number>(maxOrder).fill(0),
  totals: new Array<number>(maxOrder).fill(0),
  hyp_len: 0,
  ref_len: 0,
});

/** BLEU-1..maxOrder from counts summed over a corpus. */
export function bleuFromStats(s: BleuStats, smoothing: BleuSmoothing = 'exp', epsilon = 0.1): BleuResult {
  const { matches, totals, hyp_len: hypLen, ref_len: refLen } = s;
  const maxOrder = matches.length;
  const precisions: number[] = [];
  let zeroOrders = 0;
  for (let n = 0; n < maxOrder; n++) {
    if (totals[n] === 0) precisions.push(0);
    else if (matches[n] > 0) precisions.push((100 * matches[n]) / totals[n]);
    else if (smoothing === 'exp') precisions.push(100 / (2 ** ++zeroOrders * totals[n]));
    else if (smoothing === 'floor') precisions.push((100 * epsilon) / totals[n]);
    else precisions.push(0);
  }
  const bp = hypLen === 0 ? 0 : hypLen < refLen ? Math.exp(1 - refLen / hypLen) : 1;
  const bleu: number[] = [];
  let logSum = 0;
  for (let n = 1; n <= maxOrder; n++) {
    if (matches[0] === 0) {
      bleu.push(0);
      continue;
    }
    logSum += precisions[n - 1] > 0 ? Math.log(precisions[n - 1] / 100) : -Infinity;
    bleu.push(logSum === -Infinity ? 0 : 100 * bp * Math.exp(logSum / n));
  }
  return {
    bleu,
    precisions,
    matches: matches.slice(),
    totals: totals.slice(),
    brevity_penalty: bp,
    hyp_len: hypLen,
    ref_len: refLen,
    smoothing,
  };
}

export function corpusBleu(hyps: string[], refs: References[], opts: BleuOptions = {}): BleuResult {
  const { tokenizer = 'char', maxOrder = 4, smoothing = 'exp', epsilon = 0.1 } = opts;
  if (!Number.isInteger(maxOrder) || maxOrder < 1) throw new Error(`maxOrder must be a positive integer, got ${maxOrder}`);
  const refLists = checkCorpus(hyps, refs);
  const sum = emptyBleuStats(maxOrder);
  hyps.forEach((hyp, s) =>
    addBleuStats(
      sum,
      sentenceBleuStats(
        tokenize(hyp, tokenizer),
        refLists[s].map((r) => tokenize(r, tokenizer)),
        maxOrder,
      ),
    ),
  );
  return bleuFromStats(sum, smoothing, epsilon);
}

export interface Prf {
  precision: number;
  recall: number;
  f1: number;
}

function prf(overlap: number, hypCount: number, refCount: number): Prf {
  const precision = hypCount ? overlap / hypCount : 0;
  const recall = refCount ? overlap / refCount : 0;
  const f1 = precision + recall > 0 ? (2 * precision * recall) / (precision + recall) : 0;
  return { precision, recall, f1 };
}

function ngramPrf(h: string[], r: string[], n: number): Prf {
  const hc = ngramCounts(h, n),
    rc = ngramCounts(r, n);
  let overlap = 0;
  for (const [g, c] of hc) overlap += Math.min(c, rc.get(g) ?? 0);
  return prf(overlap, Math.max(0, h.length - n + 1), Math.max(0, r.length - n + 1));
}

export interface RougeResult {
  /** Means over sentences, 0-100. */
  rouge1: Prf;
  rouge2: Prf;
  rougeL: Prf;
}

const ROUGE_KINDS = ['rouge1', 'rouge2', 'rougeL'] as const;

/** One sentence's ROUGE-1/2/L (0-1) against the best-matching reference per kind. */
export function sentenceRouge(h: string[], refs: string[][]): RougeResult {
  const perRef = refs.map((r) => ({
    rouge1: ngramPrf(h, r, 1),
    rouge2: ngramPrf(h, r, 2),
    rougeL: prf(lcsLength(h, r), h.length, r.length),
  }));
  const best = (k: (typeof ROUGE_KINDS)[number]) => perRef.reduce((x, y) => (y[k].f1 > x[k].f1 ? y : x))[k];
  return { rouge1: best('rouge1'), rouge2: best('rouge2'), rougeL: best('rougeL') };
}

export function corpusRouge(hyps: string[], refs: References[], opts: { tokenizer?: Tokenizer } = {}): RougeResult {
  const tokenizer = opts.tokenizer ?? 'char';
  const refLists = checkCorpus(hyps, refs);
  const sums = Object.fromEntries(ROUGE_KINDS.map((k) => [k, { precision: 0, recall: 0, f1: 0 }])) as unknown as RougeResult;
  hyps.forEach((hyp, s) => {
    const one = sentenceRouge(
      tokenize(hyp, tokenizer),
      refLists[s].map((ref) => tokenize(ref, tokenizer)),
    );
    for (const k of ROUGE_KINDS) {
      sums[k].precision += one[k].precision;
      sums[k].recall += one[k].recall;
      sums[k].f1 += one[k].f1;
    }
  });
  const scale = 100 / hyps.length;
  for (const k of ROUGE_KINDS) for (const m of ['precision', 'recall', 'f1'] as const) sums[k][m] *= scale;
  return sums;
}

/**
 * What each sentence contributes to the corpus scores: its BLEU counts and its ROUGE-1/2/L
 * F1 (0-100). Corpus BLEU is a function of summed counts and corpus ROUGE a mean, so any
 * subset or resample of sentences is scored from these without tokenising again.
 */
export interface SentenceScores {
  bleu: BleuStats;
  /** ROUGE-1, ROUGE-2, ROUGE-L F1, 0-100. */
  rouge: [number, number, number];
}

export function sentenceScores(hyps: string[], refs: References[], opts: { tokenizer?: Tokenizer } = {}): SentenceScores[] {
  const tokenizer = opts.tokenizer ?? 'char';
  const refLists = checkCorpus(hyps, refs);
  return hyps.map((hyp, s) => {
    const h = tokenize(hyp, tokenizer),
      rs = refLists[s].map((r) => tokenize(r, tokenizer));
    const r = sentenceRouge(h, rs);
    return { bleu: sentenceBleuStats(h, rs), rouge: [100 * r.rouge1.f1, 100 * r.rouge2.f1, 100 * r.rougeL.f1] };
  });
}

/** The figures a report table shows for generated text, 0-100. */
export interface TextgenScores {
  bleu1: number;
  bleu2: number;
  bleu3: number;
  bleu4: number;
  rouge1: number;
  rouge2: number;
  rougeL: number;
}

export interface TextgenOptions {
  tokenizer?: Tokenizer;
  smoothing?: BleuSmoothing;
}

export function textgenScores(hyps: string[], refs: References[], opts: TextgenOptions = {}): TextgenScores {
  return summarize(
    corpusBleu(hyps, refs, { tokenizer: opts.tokenizer, smoothing: opts.smoothing }),
    corpusRouge(hyps, refs, { tokenizer: opts.tokenizer }),
  );
}

function summarize(b: BleuResult, r: RougeResult): TextgenScores {
  if (b.bleu.length < 4) throw new Error('TextgenScores needs BLEU up to order 4');
  return {
    bleu1: b.bleu[0],
    bleu2: b.bleu[1],
    bleu3: b.bleu[2],
    bleu4: b.bleu[3],
    rouge1: r.rouge1.f1,
    rouge2: r.rouge2.f1,
    rougeL: r.rougeL.f1,
  };
}

export interface TextgenExample {
  id: string;
  /** The full prompt text, chat template already applied by the caller. */
  prompt: string;
  reference: References;
}

export interface TextgenEvalOptions extends TextgenOptions {
  maxNewTokens?: number;
  batchSize?: number;
  stop?: string[];
  onProgress?: (done: number, total: number) => void;
}

export interface TextgenEvalResult {
  n: number;
  scores: TextgenScores;
  bleu: BleuResult;
  rouge: RougeResult;
  tokenizer: string;
  max_new_tokens: number;
  outputs: { id: string; output: string }[];
}

/** Greedy answers to each prompt, scored against the references. */
export async function evaluateTextgen(
  model: EvalModel,
  examples: TextgenExample[],
  opts: TextgenEvalOptions = {},
): Promise<TextgenEvalResult> {
  const { tokenizer = 'char', smoothing, maxNewTokens = 256, batchSize = 8, stop } = opts;
  const outs = await generateBatched(
    model,
    examples.map((e) => e.prompt),
    { maxNewTokens, temperature: 0, n: 1, stop },
    batchSize,
    opts.onProgress,
  );
  const hyps = outs.map((o) => o[0] ?? '');
  const refs = examples.map((e) => e.reference);
  const bleu = corpusBleu(hyps, refs, { tokenizer, smoothing });
  const rouge = corpusRouge(hyps, refs, { tokenizer });
  return {
    n: examples.length,
    scores: summarize(bleu, rouge),
    bleu,
    rouge,
    tokenizer: typeof tokenizer === 'function' ? 'custom' : tokenizer,
    max_new_tokens: maxNewTokens,
    outputs: examples.map((e, i) => ({ id: e.id, output: hyps[i] })),
  };
}
