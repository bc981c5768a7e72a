// Attitude scales (CAMI, MICA and the like) answered by a model: each item is put to the
// model n times with sampling, the chosen Likert option is read from each answer, and item
// scores are summed per subscale.
//
// Definition file (JSON or YAML), checked on load:
//   name, language ('zh' | 'en' | ...), description?, source?, instructions,
//   prompt_template? ({instructions}, {item}, {options}; defaults per language below),
//   options: [{label, text, score}]  label is what the model is asked to answer ("1");
//   items:   [{id, text, subscale, reverse?}]
//   subscales: [{name, description?, reverse_in_total?}]
// Scoring: an answer scores its option's score; on a reverse-coded item it scores
// (min + max - score), min/max over the option scores, so within a subscale a higher score
// always means more of what the subscale names. An item's score is the mean over its parsed
// samples. A subscale's score is the sum of its item scores, within [items * min, items * max];
// it is null when some item has no parsed answer at all (mean_item still reports the mean
// over answered items). The total sums every item the same way, except that the items of a
// subscale marked reverse_in_total are flipped once more, so that a scale whose subscales
// point in opposite directions (authoritarianism vs benevolence) still has a total that
// means one thing.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';
import { z } from 'zod';
import { generateBatched, type EvalModel } from './lm.js';

const text = z.string().trim().min(1, 'must be a non-empty string');

const OptionSchema = z.strictObject({ label: text, text, score: z.number().finite() });
const ItemSchema = z.strictObject({ id: text, text, subscale: text, reverse: z.boolean().default(false) });
const SubscaleSchema = z.strictObject({ name: text, description: z.string().optional(), reverse_in_total: z.boolean().default(false) });

function duplicates(values: string[]): string[] {
  return [...new Set(values.filter((v, i) => values.indexOf(v) !== i))];
}

export const ScaleSchema = z
  .strictObject({
    name: text,
    language: text,
    description: z.string().optional(),
    source: z.string().optional(),
    instructions: text,
    prompt_template: z.string().optional(),
    options: z.array(OptionSchema).min(2, 'needs at least 2 options'),
    items: z.array(ItemSchema).min(1, 'needs at least 1 item'),
    subscales: z.array(SubscaleSchema).min(1, 'needs at least 1 subscale'),
  })
  .superRefine((s, ctx) => {
    const issue = (p: (string | number)[], message: string) => ctx.addIssue({ code: 'custom', path: p, message });
    for (const d of duplicates(s.options.map((o) => o.label))) issue(['options'], `duplicate option label ${JSON.stringify(d)}`);
    for (const d of duplicates(s.items.map((i) => i.id))) issue(['items'], `duplicate item id ${JSON.stringify(d)}`);
    for (const d of duplicates(s.subscales.map((x) => x.name))) issue(['subscales'], `duplicate subscale ${JSON.stringify(d)}`);
    const names = new Set(s.subscales.map((x) => x.name));
    s.items.forEach((it, i) => {
      if (!names.has(it.subscale))
        issue(['items', i, 'subscale'], `unknown subscale ${JSON.stringify(it.subscale)} (declared: ${[...names].join(', ')})`);
    });
    s.subscales.forEach((x, i) => {
      if (!s.items.some((it) => it.subscale === x.name)) issue(['subscales', i, 'name'], `subscale ${JSON.stringify(x.name)} has no items`);
    });
    const scores = s.options.map((o) => o.score);
    if (Math.min(...scores) === Math.max(...scores)) issue(['options'], 'all options have the same score');
    if (s.prompt_template !== undefined) {
      for (const m of s.prompt_template.matchAll(/\{(\w+)\}/g)) {
        if (!['instructions', 'item', 'options'].includes(m[1]))
          issue(['prompt_template'], `unknown placeholder {${m[1]}} (known: {instructions}, {item}, {options})`);
      }
      if (!s.prompt_template.includes('{item}')) issue(['prompt_template'], 'must contain {item}');
    }
  });

export type ScaleDefinition = z.output<typeof ScaleSchema>;

function issuePath(p: readonly PropertyKey[]): string {
  return p.reduce<string>((s, k) => (typeof k === 'number' ? `${s}[${k}]` : s ? `${s}.${String(k)}` : String(k)), '') || '(top level)';
}

/** Checks a parsed definition; errors name the origin and each bad field. */
export function validateScale(data: unknown, origin: string): ScaleDefinition {
  const r = ScaleSchema.safeParse(data);
  if (r.success) return r.data;
  throw new Error(
    `invalid scale definition ${origin}:\n` + r.error.issues.map((i) => `  ${origin}: ${issuePath(i.path)}: ${i.message}`).join('\n'),
  );
}

/** A scale definition from a .json, .yaml or .yml file. */
export function loadScale(file: string): ScaleDefinition {
  const raw = fs.readFileSync(file, 'utf8');
  let data: unknown;
  try {
    data = /\.ya?ml$/i.test(file) ? YAML.parse(raw) : JSON.parse(raw);
  } catch (err) {
    throw new Error(`${file}: cannot parse: ${(err as Error).message}`);
  }
  return validateScale(data, file);
}

/** The scales shipped in corpus/scales. */
export function bundledScalePath(name: string): string {
  return path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../corpus/scales', name);
}

const TEMPLATES: Record<string, string> = {
  zh: '{instructions}\n\n陈述：{item}\n\n选项：\n{options}\n\n请只回答一个选项的编号。\n回答：',
  en: '{instructions}\n\nStatement: {item}\n\nOptions:\n{options}\n\nAnswer with the number of one option only.\nAnswer:',
};

export function promptTemplate(scale: ScaleDefinition): string {
  return scale.prompt_template ?? TEMPLATES[scale.language] ?? TEMPLATES.en;
}

export function buildScalePrompt(scale: ScaleDefinition, itemText: string): string {
  const values: Record<string, string> = {
    instructions: scale.instructions,
    item: itemText,
    options: scale.options.map((o) => `${o.label}. ${o.text}`).join('\n'),
  };
  return promptTemplate(scale).replace(/\{(\w+)\}/g, (_, k: string) => values[k]);
}

export type ChoiceRule = 'leading' | 'explicit' | 'lone_label' | 'option_text';

const isAsciiWord = (c: string | undefined) => c !== undefined && /[A-Za-z0-9]/.test(c);
const escapeRe = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** Index of `needle` in `hay` standing alone: not glued to ASCII letters/digits on either side. */
function standaloneAt(hay: string, needle: string, from = 0): number {
  for (let i = hay.indexOf(needle, from); i >= 0; i = hay.indexOf(needle, i + 1)) {
    const glued =
      (isAsciiWord(needle[0]) && isAsciiWord(hay[i - 1])) ||
      (isAsciiWord(needle[needle.length - 1]) && isAsciiWord(hay[i + needle.length]));
    if (!glued) return i;
  }
  return -1;
}

/**
 * The option an answer chooses, or null. After NFKC normalisation and lower-casing:
 *  1. leading: the answer opens with an option label ("3", "3.", "(2)");
 *  2. explicit: 选/选择/答案/回答/answer/choose followed by a label;
 *  3. lone_label: exactly one distinct label stands alone in the answer;
 *  4. option_text: the longest option text standing alone in the answer ("比较同意" wins over
 *     "同意"; "disagree" does not contain the word "agree"); a tie between two options fails.
 */
export function parseChoice(output: string, options: ScaleDefinition['options']): { index: number; rule: ChoiceRule } | null {
  const out = output.normalize('NFKC').toLowerCase().trim();
  const labels = options.map((o) => o.label.normalize('NFKC').toLowerCase());
  const alt = labels
    .map(escapeRe)
    .sort((a, b) => b.length - a.length)
    .join('|');
  const labelAt = (re: RegExp) => {
    const m = re.exec(out);
    return m ? labels.indexOf(m[1]) : -1;
  };
  const tail = '(?![a-z0-9])';
  let i = labelAt(new RegExp(`^[\\s(（\\[【]*(${alt})${tail}`));
  if (i >= 0) return { index: i, rule: 'leading' };
  i = labelAt(new RegExp(`(?:选择|选|答案|回答|answer|choose|option)\\s*(?:是|为|is)?\\s*[:：]?\\s*[(（\\[【]?\\s*(${alt})${tail}`));
  if (i >= 0) return { index: i, rule: 'explicit' };
  const lone = labels.map((l, k) => (standaloneAt(out, l) >= 0 ? k : -1)).filter((k) => k >= 0);
  if (lone.length === 1) return { index: lone[0], rule: 'lone_label' };
  const texts = options.map((o) => o.text.normalize('NFKC').toLowerCase().trim());
  const hits = texts.map((t, k) => (standaloneAt(out, t) >= 0 ? k : -1)).filter((k) => k >= 0);
  if (!hits.length) return null;
  const longest = Math.max(...hits.map((k) => texts[k].length));
  const best = hits.filter((k) => texts[k].length === longest);
  return best.length === 1 ? { index: best[0], rule: 'option_text' } : null;
}

export interface ScaleEvalOptions {
  /** Samples per item. */
  n?: number;
  temperature?: number;
  topP?: number;
  seed?: number;
  maxNewTokens?: number;
  batchSize?: number;
  onProgress?: (done: number, total: number) => void;
}

export interface ScoreSummary {
  name: string;
  /** Sum of item scores; null when an item has no parsed answer. */
  score: number | null;
  /** Mean item score over answered items; null when none was answered. */
  mean_item: number | null;
  min: number;
  max: number;
  items: number;
  answered: number;
}

export interface ScaleItemResult {
  id: string;
  subscale: string;
  reverse: boolean;
  /** Chosen option label per sample, null where the answer could not be read. */
  choices: (string | null)[];
  /** Mean (reverse-coded) score over parsed samples, null when none parsed. */
  score: number | null;
  failures: number;
  outputs: string[];
  /** The item's score as the total counts it (flipped again for a reverse_in_total subscale). */
  total_score: number | null;
}

export interface ScaleResult {
  scale: string;
  language: string;
  samples_per_item: number;
  temperature: number;
  prompt_template: string;
  parse_failures: number;
  parse_failure_rate: number;
  items: ScaleItemResult[];
  subscales: ScoreSummary[];
  total: ScoreSummary;
}

function optionRange(scale: ScaleDefinition): [number, number] {
  const s = scale.options.map((o) => o.score);
  return [Math.min(...s), Math.max(...s)];
}

function summarize(name: string, scores: (number | null)[], lo: number, hi: number): ScoreSummary {
  const got = scores.filter((s): s is number => s !== null);
  const sum = got.reduce((a, b) => a + b, 0);
  return {
    name,
    score: got.length === scores.length ? sum : null,
    mean_item: got.length ? sum / got.length : null,
    min: scores.length * lo,
    max: scores.length * hi,
    items: scores.length,
    answered: got.length,
  };
}

/** Item, subscale and total scores from the options chosen per item (null = unreadable). */
export function scoreScale(
  scale: ScaleDefinition,
  choices: Map<string, (number | null)[]>,
): Pick<ScaleResult, 'items' | 'subscales' | 'total'> {
  const [lo, hi] = optionRange(scale);
  const flip = (x: number) => lo + hi - x;
  const items = scale.items.map((it) => {
    const picked = choices.get(it.id);
    if (!picked) throw new Error(`no answers for item ${it.id}`);
    const scores = picked
      .filter((c): c is number => c !== null)
      .map((c) => (it.reverse ? flip(scale.options[c].score) : scale.options[c].score));
    return {
      id: it.id,
      subscale: it.subscale,
      reverse: it.reverse,
      choices: picked.map((c) => (c === null ? null : scale.options[c].label)),
      score: scores.length ? scores.reduce((a, b) => a + b, 0) / scores.length : null,
      failures: picked.length - scores.length,
      outputs: [] as string[],
    };
  });
  const subscales = scale.subscales.map((s) =>
    summarize(
      s.name,
      items.filter((it) => it.subscale === s.name).map((it) => it.score),
      lo,
      hi,
    ),
  );
  const inverted = new Set(scale.subscales.filter((s) => s.reverse_in_total).map((s) => s.name));
  const scored = items.map((it) => ({
    ...it,
    total_score: it.score === null ? null : inverted.has(it.subscale) ? flip(it.score) : it.score,
  }));
  const total = summarize(
    'total',
    scored.map((it) => it.total_score),
    lo,
    hi,
  );
  return { items: scored, subscales, total };
}

export async function evaluateScale(model: EvalModel, scale: ScaleDefinition, opts: ScaleEvalOptions = {}): Promise<ScaleResult> {
  const { n = 5, temperature = 0.7, topP = 0.9, seed = 1234, maxNewTokens = 16, batchSize = 8 } = opts;
  const prompts = scale.items.map((it) => buildScalePrompt(scale, it.text));
  const outs = await generateBatched(
    model,
    prompts,
    { maxNewTokens, temperature, topP, n, seed, stop: ['\n\n'] },
    batchSize,
    opts.onProgress,
  );
  const choices = new Map<string, (number | null)[]>();
  scale.items.forEach((it, i) => {
    if (outs[i].length !== n) throw new Error(`model.generate returned ${outs[i].length} samples for item ${it.id}, asked for ${n}`);
    choices.set(
      it.id,
      outs[i].map((o) => parseChoice(o, scale.options)?.index ?? null),
    );
  });
  const scored = scoreScale(scale, choices);
  scored.items.forEach((it, i) => (it.outputs = outs[i]));
  const failures = scored.items.reduce((s, it) => s + it.failures, 0);
  return {
    scale: scale.name,
    language: scale.language,
    samples_per_item: n,
    temperature,
    prompt_template: promptTemplate(scale),
    parse_failures: failures,
    parse_failure_rate: failures / (n * scale.items.length),
    ...scored,
  };
}

export interface ComparisonTable {
  columns: string[];
  rows: string[][];
  markdown: string;
}

const fmt = (x: number | null) => (x === null ? '—' : x.toFixed(2));

/** Subscale and total scores of several models side by side, with each score's range. */
export function compareScaleResults(results: { model: string; result: ScaleResult }[]): ComparisonTable {
  if (results.length === 0) throw new Error('compareScaleResults: no results');
  const first = results[0].result;
  for (const { model, result } of results) {
    if (result.scale !== first.scale)
      throw new Error(`cannot compare scale ${JSON.stringify(result.scale)} (${model}) with ${JSON.stringify(first.scale)}`);
  }
  const columns = ['score', 'range', ...results.map((r) => r.model)];
  const summaries = (r: ScaleResult) => [...r.subscales, r.total];
  const rows = summaries(first).map((s, i) => [s.name, `${s.min}–${s.max}`, ...results.map((r) => fmt(summaries(r.result)[i].score))]);
  rows.push([
    'parse failures',
    '',
    ...results.map((r) => `${r.result.parse_failures}/${r.result.samples_per_item * r.result.items.length}`),
  ]);
  const line = (cells: string[]) => `| ${cells.join(' | ')} |`;
  const markdown = [line(columns), line(columns.map(() => '---')), ...rows.map(line)].join('\n') + '\n';
  return { columns, rows, markdown };
}
