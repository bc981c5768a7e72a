// Few-shot named-entity recognition by generation, scored on spans and on mentions.
//
// Output format: one entity per line, "类型: 实体" (the type's display name, a colon — ASCII
// or full-width — and the mention exactly as written), every occurrence listed, in reading
// order; "无" when there is none. Lines rather than a JSON list because a small model breaks
// JSON far more often than it breaks a line, and one bad line costs one entity instead of
// the whole answer.
//
// Locating mentions (parseNerOutput): the lines are read in order with a cursor at the start
// of the last located mention; each mention takes its first occurrence at or after the
// cursor that is not already predicted with the same type (falling back to the first such
// occurrence anywhere, for a model that lists out of order). For flat annotation
// (CCKS-2019) an occurrence that overlaps an already located mention is passed over while a
// free one exists — "腹" after "腹腔" means the next 腹, not the one inside 腹腔; for nested
// annotation (CMeEE) it is not, since "细胞" after "细胞下降" is the nested one. A text-only
// answer cannot always point at the right occurrence, so the strict span score has a
// ceiling below 1: evaluateNer reports it as span_ceiling_f1, the strict F1 of the gold
// answers themselves put through format and parse (CCKS-2019 dev 0.994, CMeEE dev 0.988).
// A mention not in the text is tried without surrounding quotes, then split at 、，,;； into
// parts ("药物: 奥沙利铂、亚叶酸钙"). A mention found nowhere is "unlocated": a
// false positive of its type. A line that is not "known type: mention" is counted as
// unparsed and otherwise ignored. Parsing stops at a blank line or a "文本" line, where a
// base model runs on into an invented demonstration.
//
// Scores: strict = same type and offsets; untyped = same offsets whatever the type
// (nerScores); mention = the set of (type, mention text) pairs per example, position-free,
// the usual score for generative NER (mentionScores). Micro precision/recall/F1, per type,
// and the macro F1 over types. Offsets are code points with an exclusive end.
import { codePointLength, sliceCodePoints, type NerExample } from '../data/records.js';
import { generateBatched, type EvalModel } from './lm.js';

export interface NerSpan {
  start: number;
  end: number;
  type: string;
}

export interface NerMention {
  type: string;
  text: string;
}

/** Display names for CMeEE's type codes; CCKS-2019 types are already Chinese names. */
export const CMEEE_TYPE_NAMES: Record<string, string> = {
  dis: '疾病',
  sym: '临床表现',
  pro: '医疗程序',
  equ: '医疗设备',
  dru: '药物',
  ite: '医学检验项目',
  bod: '身体部位',
  dep: '科室',
  mic: '微生物类',
};

/** Display names for the built-in corpus's type keys (src/corpus/types.ts). */
export const BUILTIN_TYPE_NAMES: Record<string, string> = {
  disease: '疾病',
  symptom: '症状',
  drug: '药物',
  exam: '检查',
  department: '科室',
};

/** Chinese names for the known type codes among `types` (CMeEE's, the built-in corpus's); undefined when none is known. */
export function knownTypeNames(types: string[]): Record<string, string> | undefined {
  const known: Record<string, string> = { ...CMEEE_TYPE_NAMES, ...BUILTIN_TYPE_NAMES };
  const names = Object.fromEntries(types.filter((t) => Object.hasOwn(known, t)).map((t) => [t, known[t]]));
  return Object.keys(names).length ? names : undefined;
}

export interface NerFormat {
  /** Type codes as they appear in the data, in the order the instruction lists them. */
  types: string[];
  /** Code -> name shown to the model; a code without an entry is shown as itself. */
  typeNames?: Record<string, string>;
  /** {types} is replaced by the names joined with 、. */
  instruction?: string;
  /** Whether entities may overlap (see the locating rule above). */
  nested?: boolean;
}

export const DEFAULT_NER_INSTRUCTION =
  '请找出下面医学文本中的所有实体。实体类型包括：{types}。\n' +
  '每行写一个实体，格式为“类型: 实体”，按在文本中出现的顺序逐个列出，同一实体出现几次就写几次；没有实体时写“无”。\n\n';

const NONE = '无';
const displayName = (f: NerFormat, type: string) => f.typeNames?.[type] ?? type;

/** The answer a demonstration shows: one line per entity, by start, the longer first. */
export function formatNerAnswer(entities: NerExample['entities'], f: NerFormat): string {
  const sorted = [...entities].sort((a, b) => a.start - b.start || b.end - a.end);
  return sorted.length ? sorted.map((e) => `${displayName(f, e.type)}: ${e.text}`).join('\n') : NONE;
}

export function buildNerPrompt(text: string, shots: NerExample[], f: NerFormat): string {
  const instruction = (f.instruction ?? DEFAULT_NER_INSTRUCTION).replace('{types}', f.types.map((t) => displayName(f, t)).join('、'));
  const demos = shots.map((s) => `文本：${s.text}\n实体：\n${formatNerAnswer(s.entities, f)}\n\n`).join('');
  return `${instruction}${demos}文本：${text}\n实体：\n`;
}

/** The model's lines as (type, mention) pairs, and how many lines were not of that form. */
function readLines(output: string, f: NerFormat): { mentions: NerMention[]; unparsed: number } {
  const byName = new Map<string, string>();
  for (const t of f.types) {
    byName.set(t, t);
    byName.set(displayName(f, t), t);
  }
  const mentions: NerMention[] = [];
  let unparsed = 0;
  for (const raw of output.split('\n')) {
    const line = raw.trim();
    if (!line) {
      if (mentions.length || unparsed) break;
      continue;
    }
    if (line.startsWith('文本')) break;
    if (line === NONE) continue;
    const m = /^(?:[-*•]\s*|\d+[.、)）]\s*)?([^:：]+?)\s*[:：]\s*(.+)$/.exec(line);
    const type = m ? byName.get(m[1].trim()) : undefined;
    if (!m || !type) {
      unparsed++;
      continue;
    }
    const text = m[2].trim();
    if (text !== NONE) mentions.push({ type, text });
  }
  return { mentions, unparsed };
}

/** What a mention line names: as written; else without the quotes or full stop a model put
 *  around it; else, for a list, its parts — whichever first occurs in the text. */
function readableMentions(mention: string, text: string): string[] {
  if (text.includes(mention)) return [mention];
  const bare = mention.replace(/^["'“‘「『]+|["'”’」』。]+$/g, '');
  if (bare && text.includes(bare)) return [bare];
  const parts = bare
    .split(/[、，,;；]/)
    .map((p) => p.trim())
    .filter(Boolean);
  return parts.length > 1 && parts.some((p) => text.includes(p)) ? parts : [bare || mention];
}

export interface ParsedNer {
  /** Every mention the model named, list lines split into their parts where that located them. */
  mentions: NerMention[];
  spans: NerSpan[];
  unlocated: NerMention[];
  unparsed_lines: number;
}

export function parseNerOutput(output: string, text: string, f: NerFormat): ParsedNer {
  const { mentions: lines, unparsed } = readLines(output, f);
  const astral = /[\ud800-\udfff]/.test(text);
  const cp = (i: number) => (astral ? codePointLength(text.slice(0, i)) : i);
  const located: { i: number; len: number; type: string }[] = [];
  const taken = new Set<string>();
  const mentions: NerMention[] = [];
  const unlocated: NerMention[] = [];
  let cursor = 0;

  const place = (type: string, mention: string): boolean => {
    const occ: number[] = [];
    for (let i = text.indexOf(mention); i >= 0; i = text.indexOf(mention, i + 1)) {
      if (!taken.has(`${i}:${mention.length}:${type}`)) occ.push(i);
    }
    if (occ.length === 0) return text.includes(mention); // a repeat beyond the text's count is dropped, not unlocated
    const free = (i: number) => f.nested || located.every((s) => i + mention.length <= s.i || i >= s.i + s.len);
    const after = occ.filter((i) => i >= cursor);
    const i = after.find(free) ?? after[0] ?? occ.find(free) ?? occ[0];
    taken.add(`${i}:${mention.length}:${type}`);
    located.push({ i, len: mention.length, type });
    cursor = i;
    return true;
  };

  for (const line of lines) {
    const { type } = line;
    for (const part of readableMentions(line.text, text)) {
      mentions.push({ type, text: part });
      if (!place(type, part)) unlocated.push({ type, text: part });
    }
  }
  const spans = located.map(({ i, len, type }) => {
    const start = cp(i);
    return { start, end: start + (astral ? codePointLength(text.slice(i, i + len)) : len), type };
  });
  return { mentions, spans, unlocated, unparsed_lines: unparsed };
}

export interface PrfCounts {
  tp: number;
  fp: number;
  fn: number;
  precision: number;
  recall: number;
  f1: number;
}

export interface ScoreTable {
  /** Micro-averaged over all types. */
  micro: PrfCounts;
  per_type: Record<string, PrfCounts>;
  /** Mean F1 over the types present in gold or predictions. */
  macro_f1: number;
}

export interface NerScores {
  strict: ScoreTable;
  /** Offsets only (a span predicted with the wrong type still counts). */
  untyped: PrfCounts;
}

function counts(tp: number, fp: number, fn: number): PrfCounts {
  const precision = tp + fp ? tp / (tp + fp) : 0;
  const recall = tp + fn ? tp / (tp + fn) : 0;
  return { tp, fp, fn, precision, recall, f1: precision + recall ? (2 * precision * recall) / (precision + recall) : 0 };
}

/**
 * Set-based scoring of keyed items per example: each distinct key is one item; `typeOf`
 * gives the type a key is tallied under; `extraFp` are predictions that can match nothing.
 */
function scoreSets<T>(gold: T[][], pred: T[][], key: (x: T) => string, typeOf: (x: T) => string, extraFp: NerMention[][] = []): ScoreTable {
  if (gold.length !== pred.length) throw new Error(`${gold.length} gold examples but ${pred.length} predictions`);
  const perType = new Map<string, { tp: number; fp: number; fn: number }>();
  const tally = (type: string) => {
    if (!perType.has(type)) perType.set(type, { tp: 0, fp: 0, fn: 0 });
    return perType.get(type)!;
  };
  gold.forEach((g, i) => {
    const gk = new Map(g.map((x) => [key(x), typeOf(x)]));
    const pk = new Map(pred[i].map((x) => [key(x), typeOf(x)]));
    for (const [k, t] of pk) tally(t)[gk.has(k) ? 'tp' : 'fp']++;
    for (const [k, t] of gk) if (!pk.has(k)) tally(t).fn++;
    for (const u of extraFp[i] ?? []) tally(u.type).fp++;
  });
  let tp = 0,
    fp = 0,
    fn = 0;
  const per_type: Record<string, PrfCounts> = {};
  for (const [type, c] of [...perType].sort(([a], [b]) => a.localeCompare(b))) {
    tp += c.tp;
    fp += c.fp;
    fn += c.fn;
    per_type[type] = counts(c.tp, c.fp, c.fn);
  }
  const types = Object.values(per_type);
  return { micro: counts(tp, fp, fn), per_type, macro_f1: types.length ? types.reduce((s, c) => s + c.f1, 0) / types.length : 0 };
}

/** Span scores over a corpus: gold[i] and pred[i] are the spans of example i; unlocated
 *  mentions (named but not in the text) are false positives of their type. */
export function nerScores(gold: NerSpan[][], pred: NerSpan[][], unlocated: NerMention[][] = []): NerScores {
  const strict = scoreSets(
    gold,
    pred,
    (s) => `${s.start}:${s.end}:${s.type}`,
    (s) => s.type,
    unlocated,
  );
  const untyped = scoreSets(
    gold,
    pred,
    (s) => `${s.start}:${s.end}`,
    () => '',
    unlocated.map((u) => u.map(() => ({ type: '', text: '' }))),
  ).micro;
  return { strict, untyped };
}

/** Position-free scores on the set of (type, mention text) pairs of each example. */
export function mentionScores(gold: NerMention[][], pred: NerMention[][]): ScoreTable {
  return scoreSets(
    gold,
    pred,
    (m) => `${m.type}\u0001${m.text}`,
    (m) => m.type,
  );
}

export interface NerEvalOptions {
  /** Demonstrations per prompt: the first k of `shots` (default 3; CCKS texts are long). */
  k?: number;
  types?: string[];
  typeNames?: Record<string, string>;
  instruction?: string;
  /** Default: whether any gold entity of the shots or examples overlaps another. */
  nested?: boolean;
  maxNewTokens?: number;
  batchSize?: number;
  stop?: string[];
  onProgress?: (done: number, total: number) => void;
}

export interface NerEvalResult extends NerScores {
  n: number;
  k: number;
  mention: ScoreTable;
  /** Strict span F1 of the gold answers themselves after format and parse: the best a
   *  perfect model can get in this output format. */
  span_ceiling_f1: number;
  unparsed_lines: number;
  unlocated_mentions: number;
  format: NerFormat & { output: string };
  /** Per example, with its strict span counts (true / false positives, false negatives). */
  predictions: { id: string; output: string; spans: NerSpan[]; unlocated: NerMention[]; tp: number; fp: number; fn: number }[];
}

/** Types in first-seen order over the examples given. */
export function entityTypes(examples: NerExample[]): string[] {
  return [...new Set(examples.flatMap((e) => e.entities.map((x) => x.type)))];
}

export function hasNestedEntities(examples: NerExample[]): boolean {
  return examples.some((e) => {
    const s = [...e.entities].sort((a, b) => a.start - b.start);
    return s.some((x, i) => i > 0 && x.start < s[i - 1].end);
  });
}

const spansOf = (e: NerExample): NerSpan[] => e.entities.map(({ start, end, type }) => ({ start, end, type }));

/** The output format for these examples: types in first-seen order (demonstrations first), nesting as the data has it. */
export function nerFormatFor(
  examples: NerExample[],
  demos: NerExample[],
  opts: Pick<NerEvalOptions, 'types' | 'typeNames' | 'instruction' | 'nested'> = {},
): NerFormat {
  const types = opts.types ?? entityTypes([...demos, ...examples]);
  const typeNames = opts.typeNames ?? knownTypeNames(types);
  return {
    types,
    ...(typeNames ? { typeNames } : {}),
    instruction: opts.instruction ?? DEFAULT_NER_INSTRUCTION,
    nested: opts.nested ?? hasNestedEntities([...demos, ...examples]),
  };
}

/** A prediction given as spans (another system's entity list) rather than as lines of text. */
function parsedSpans(spans: NerSpan[], text: string): ParsedNer {
  return {
    mentions: spans.map((x) => ({ type: x.type, text: sliceCodePoints(text, x.start, x.end) })),
    spans,
    unlocated: [],
    unparsed_lines: 0,
  };
}

/**
 * Scores one prediction per example: generated text in the line format (parsed as
 * parseNerOutput does) or a list of spans. Each prediction carries its strict span counts,
 * so any subset or resample of examples has its micro F1 from their sums.
 */
export function scoreNer(examples: NerExample[], outputs: (string | NerSpan[])[], f: NerFormat, k: number): NerEvalResult {
  if (examples.length === 0) throw new Error('no NER examples to score');
  if (outputs.length !== examples.length) throw new Error(`${outputs.length} NER predictions for ${examples.length} examples`);
  const parsed = examples.map((e, i) => {
    const o = outputs[i];
    return typeof o === 'string' ? parseNerOutput(o, e.text, f) : parsedSpans(o, e.text);
  });
  const gold = examples.map(spansOf);
  const ceiling = examples.map((e) => parseNerOutput(formatNerAnswer(e.entities, f), e.text, f));
  return {
    n: examples.length,
    k,
    ...nerScores(
      gold,
      parsed.map((p) => p.spans),
      parsed.map((p) => p.unlocated),
    ),
    // a line cannot carry an entity's surrounding whitespace (CCKS has " 胃体"), so neither does gold here
    mention: mentionScores(
      examples.map((e) => e.entities.map(({ type, text }) => ({ type, text: text.trim() }))),
      parsed.map((p) => p.mentions),
    ),
    span_ceiling_f1: nerScores(
      gold,
      ceiling.map((p) => p.spans),
      ceiling.map((p) => p.unlocated),
    ).strict.micro.f1,
    unparsed_lines: parsed.reduce((s, p) => s + p.unparsed_lines, 0),
    unlocated_mentions: parsed.reduce((s, p) => s + p.unlocated.length, 0),
    format: { ...f, output: '类型: 实体 per line, every occurrence, in reading order; 无 for none' },
    predictions: examples.map((e, i) => {
      const { tp, fp, fn } = nerScores([gold[i]], [parsed[i].spans], [parsed[i].unlocated]).strict.micro;
      const o = outputs[i];
      // a span list is shown in the line format, as a model's answer would be
      const output =
        typeof o === 'string'
          ? o
          : formatNerAnswer(
              parsed[i].mentions.map((m, j) => ({ ...parsed[i].spans[j], text: m.text })),
              f,
            );
      return { id: e.id, output, spans: parsed[i].spans, unlocated: parsed[i].unlocated, tp, fp, fn };
    }),
  };
}

export async function evaluateNer(
  model: EvalModel,
  examples: NerExample[],
  shots: NerExample[],
  opts: NerEvalOptions = {},
): Promise<NerEvalResult> {
  if (examples.length === 0) throw new Error('evaluateNer: no examples');
  const { k = 3, maxNewTokens = 512, batchSize = 4, stop = ['\n\n'] } = opts;
  const demos = shots.slice(0, k);
  const f = nerFormatFor(examples, demos, opts);
  const prompts = examples.map((e) => buildNerPrompt(e.text, demos, f));
  const outs = await generateBatched(model, prompts, { maxNewTokens, temperature: 0, n: 1, stop }, batchSize, opts.onProgress);
  return scoreNer(
    examples,
    outs.map((o) => o[0] ?? ''),
    f,
    demos.length,
  );
}
