// Few-shot named-entity recognition by generation, scored on spans.
//
// Output format: one entity per line, "类型: 实体" (the type's display name, a colon — ASCII
// or full-width — and the mention as written in the text), in reading order, each distinct
// (type, mention) once; "无" when there is none. Lines rather than a JSON list because a
// small model breaks JSON far more often than it breaks a line, and one bad line costs one
// entity instead of the whole answer.
//
// Parsing back to spans: a mention marks every occurrence of its string in the text (left
// to right, non-overlapping), since the annotation guidelines label each occurrence and a
// line cannot point at one of them. A line whose mention is a list ("药物: 奥沙利铂、亚叶酸钙")
// that is not itself in the text is split at 、，,;； and the parts found are used. A mention
// found nowhere in the text is "unlocated": a false positive of its type (and of the
// offsets-only score). A line that is not "known type: mention" is counted as unparsed and
// otherwise ignored. Parsing stops at a blank line or at the next "文本" block, where a base
// model runs on into an invented demonstration.
//
// Scores (nerScores): strict = same type and offsets; untyped = same offsets whatever the
// type. Micro precision/recall/F1 over all spans, per type, and the macro F1 over types.
// Offsets are code points with an exclusive end, as in the data's NER records.
import { codePointLength, type NerExample } from '../data/records.js';
import { generateBatched, type EvalModel } from './lm.js';

export interface NerSpan {
  start: number;
  end: number;
  type: string;
}

/** A predicted mention that does not occur in the text. */
export interface UnlocatedMention {
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

export interface NerFormat {
  /** Type codes as they appear in the data, in the order the instruction lists them. */
  types: string[];
  /** Code -> name shown to the model; a code without an entry is shown as itself. */
  typeNames?: Record<string, string>;
  /** {types} is replaced by the names joined with 、. */
  instruction?: string;
}

export const DEFAULT_NER_INSTRUCTION =
  '请找出下面医学文本中的所有实体。实体类型包括：{types}。\n' +
  '每行写一个实体，格式为“类型: 实体”，按在文本中出现的顺序；同一实体多次出现只写一次；没有实体时写“无”。\n\n';

const NONE = '无';
const displayName = (f: NerFormat, type: string) => f.typeNames?.[type] ?? type;

/** The answer lines a demonstration shows: distinct (type, mention) pairs in reading order. */
export function formatNerAnswer(entities: NerExample['entities'], f: NerFormat): string {
  const sorted = [...entities].sort((a, b) => a.start - b.start || b.end - a.end);
  const lines = [...new Set(sorted.map((e) => `${displayName(f, e.type)}: ${e.text}`))];
  return lines.length ? lines.join('\n') : NONE;
}

export function buildNerPrompt(text: string, shots: NerExample[], f: NerFormat): string {
  const instruction = (f.instruction ?? DEFAULT_NER_INSTRUCTION).replace('{types}', f.types.map((t) => displayName(f, t)).join('、'));
  const demos = shots.map((s) => `文本：${s.text}\n实体：\n${formatNerAnswer(s.entities, f)}\n\n`).join('');
  return `${instruction}${demos}文本：${text}\n实体：\n`;
}

/** Code-point offsets of every non-overlapping occurrence of `mention` in `text`. */
function occurrences(text: string, mention: string): [number, number][] {
  const out: [number, number][] = [];
  const astral = /[\ud800-\udfff]/.test(text);
  const cp = (i: number) => (astral ? codePointLength(text.slice(0, i)) : i);
  const len = codePointLength(mention);
  for (let i = text.indexOf(mention); i >= 0; i = text.indexOf(mention, i + mention.length)) {
    const s = cp(i);
    out.push([s, s + len]);
  }
  return out;
}

export interface ParsedNer {
  spans: NerSpan[];
  unlocated: UnlocatedMention[];
  unparsed_lines: number;
}

export function parseNerOutput(output: string, text: string, f: NerFormat): ParsedNer {
  const byName = new Map<string, string>();
  for (const t of f.types) {
    byName.set(t, t);
    byName.set(displayName(f, t), t);
  }
  const spans = new Map<string, NerSpan>();
  const unlocated: UnlocatedMention[] = [];
  const seen = new Set<string>();
  let unparsed = 0;
  for (const raw of output.split('\n')) {
    const line = raw.trim();
    if (!line) {
      if (seen.size || unparsed) break;
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
    const mention = m[2].trim().replace(/^["'“‘「『]+|["'”’」』。.]+$/g, '');
    if (!mention || mention === NONE) continue;
    const parts = text.includes(mention) ? [mention] : mention.split(/[、，,;；]/).map((p) => p.trim()).filter(Boolean);
    for (const part of parts) {
      const key = `${type}\u0001${part}`;
      if (seen.has(key)) continue;
      seen.add(key);
      const occ = occurrences(text, part);
      if (occ.length === 0) unlocated.push({ type, text: part });
      for (const [start, end] of occ) spans.set(`${start}:${end}:${type}`, { start, end, type });
    }
  }
  return { spans: [...spans.values()], unlocated, unparsed_lines: unparsed };
}

export interface PrfCounts {
  tp: number;
  fp: number;
  fn: number;
  precision: number;
  recall: number;
  f1: number;
}

export interface NerScores {
  strict: PrfCounts;
  untyped: PrfCounts;
  per_type: Record<string, PrfCounts>;
  /** Mean of the per-type strict F1 over the types present in gold or predictions. */
  macro_f1: number;
}

function counts(tp: number, fp: number, fn: number): PrfCounts {
  const precision = tp + fp ? tp / (tp + fp) : 0;
  const recall = tp + fn ? tp / (tp + fn) : 0;
  return { tp, fp, fn, precision, recall, f1: precision + recall ? (2 * precision * recall) / (precision + recall) : 0 };
}

/** Span scores over a corpus: gold[i] and pred[i] are the spans of example i. */
export function nerScores(gold: NerSpan[][], pred: NerSpan[][], unlocated: UnlocatedMention[][] = []): NerScores {
  if (gold.length !== pred.length) throw new Error(`${gold.length} gold examples but ${pred.length} predictions`);
  const perType = new Map<string, { tp: number; fp: number; fn: number }>();
  const tally = (type: string) => {
    if (!perType.has(type)) perType.set(type, { tp: 0, fp: 0, fn: 0 });
    return perType.get(type)!;
  };
  let uTp = 0, uFp = 0, uFn = 0;
  gold.forEach((g, i) => {
    const gTyped = new Set(g.map((s) => `${s.start}:${s.end}:${s.type}`));
    const pTyped = new Set(pred[i].map((s) => `${s.start}:${s.end}:${s.type}`));
    for (const k of pTyped) tally(k.slice(k.lastIndexOf(':') + 1))[gTyped.has(k) ? 'tp' : 'fp']++;
    for (const k of gTyped) if (!pTyped.has(k)) tally(k.slice(k.lastIndexOf(':') + 1)).fn++;
    const gSpan = new Set(g.map((s) => `${s.start}:${s.end}`));
    const pSpan = new Set(pred[i].map((s) => `${s.start}:${s.end}`));
    for (const k of pSpan) gSpan.has(k) ? uTp++ : uFp++;
    for (const k of gSpan) if (!pSpan.has(k)) uFn++;
    for (const u of unlocated[i] ?? []) {
      tally(u.type).fp++;
      uFp++;
    }
  });
  let tp = 0, fp = 0, fn = 0;
  const per_type: Record<string, PrfCounts> = {};
  for (const [type, c] of [...perType].sort(([a], [b]) => a.localeCompare(b))) {
    tp += c.tp;
    fp += c.fp;
    fn += c.fn;
    per_type[type] = counts(c.tp, c.fp, c.fn);
  }
  const types = Object.values(per_type);
  return {
    strict: counts(tp, fp, fn),
    untyped: counts(uTp, uFp, uFn),
    per_type,
    macro_f1: types.length ? types.reduce((s, c) => s + c.f1, 0) / types.length : 0,
  };
}

export interface NerEvalOptions {
  /** Demonstrations per prompt: the first k of `shots` (default 3; CCKS texts are long). */
  k?: number;
  types?: string[];
  typeNames?: Record<string, string>;
  instruction?: string;
  maxNewTokens?: number;
  batchSize?: number;
  stop?: string[];
  onProgress?: (done: number, total: number) => void;
}

export interface NerEvalResult extends NerScores {
  n: number;
  k: number;
  unparsed_lines: number;
  unlocated_mentions: number;
  format: NerFormat & { output: string };
  predictions: { id: string; output: string; spans: NerSpan[]; unlocated: UnlocatedMention[] }[];
}

/** Types in first-seen order over the examples given. */
export function entityTypes(examples: NerExample[]): string[] {
  return [...new Set(examples.flatMap((e) => e.entities.map((x) => x.type)))];
}

export async function evaluateNer(model: EvalModel, examples: NerExample[], shots: NerExample[], opts: NerEvalOptions = {}): Promise<NerEvalResult> {
  if (examples.length === 0) throw new Error('evaluateNer: no examples');
  const { k = 3, maxNewTokens = 512, batchSize = 4, stop = ['\n\n'] } = opts;
  const demos = shots.slice(0, k);
  const types = opts.types ?? entityTypes([...demos, ...examples]);
  const f: NerFormat = { types, ...(opts.typeNames ? { typeNames: opts.typeNames } : {}), ...(opts.instruction ? { instruction: opts.instruction } : {}) };
  const prompts = examples.map((e) => buildNerPrompt(e.text, demos, f));
  const outs = await generateBatched(model, prompts, { maxNewTokens, temperature: 0, n: 1, stop }, batchSize, opts.onProgress);
  const parsed = examples.map((e, i) => parseNerOutput(outs[i][0] ?? '', e.text, f));
  const scores = nerScores(
    examples.map((e) => e.entities.map(({ start, end, type }) => ({ start, end, type }))),
    parsed.map((p) => p.spans),
    parsed.map((p) => p.unlocated),
  );
  return {
    n: examples.length,
    k: demos.length,
    ...scores,
    unparsed_lines: parsed.reduce((s, p) => s + p.unparsed_lines, 0),
    unlocated_mentions: parsed.reduce((s, p) => s + p.unlocated.length, 0),
    format: { ...f, instruction: f.instruction ?? DEFAULT_NER_INSTRUCTION, output: '类型: 实体 per line; 无 for none' },
    predictions: examples.map((e, i) => ({ id: e.id, output: outs[i][0] ?? '', spans: parsed[i].spans, unlocated: parsed[i].unlocated })),
  };
}
