// Multiple-choice evaluation (C-Eval, CMMLU, MedQA, CMExam): k-shot prompts from the dev
// split of the item's subject, then one of two ways to get the model's answer.
//
// 'loglik' (default): the prompt ends with "答案：" and each candidate answer is scored as a
//   continuation with scoreContinuations. Candidates are the bare option letters ("A", "B",
//   ...; `letterPrefix` puts e.g. a space before each, for tokenisers that merge " A"). The
//   best-scoring candidate is the prediction.
//   Multi-answer items (gold answer of 2+ letters; exam papers state the question type, so
//   the prompt uses the multi-answer header): the candidates are every set of 2 or more
//   options written as its letters in order ("AB", "ACD", ...), the same way the
//   demonstrations write a multi-letter answer, and the best-scoring set is the prediction.
//   Sums of log-probabilities favour shorter strings; that bias is part of what this mode
//   measures, as in the harnesses that score letter continuations.
// 'generate': greedy generation, then the letters are extracted (extractAnswer below). An
//   output from which no letter can be extracted is an extraction failure: counted, and
//   always scored wrong.
//
// Scoring: exact match of the predicted letter set with the gold set. Weighted F1 treats
// each distinct answer string ("A", "B", "AC") as a class: per-class F1 weighted by the
// class's support among gold answers (sklearn's average='weighted'); an extraction failure
// is a prediction of no class, so it costs recall and no class's precision.
import type { McqItem } from '../data/records.js';
import { generateBatched, type EvalModel } from './lm.js';

export interface McqPromptTemplate {
  /** Opens every prompt; {subject} is the subject's display name. */
  header: string;
  /** Header for items with several correct options. */
  headerMulti: string;
  /** One question; {question}, {options}. Ends where the answer letters go. */
  question: string;
  /** One option line; {letter}, {text}. Lines are joined with "\n". */
  option: string;
  /** Follows a demonstration's question; {answer}. */
  shotAnswer: string;
}

/** C-Eval's Chinese answer-only template. */
export const DEFAULT_MCQ_TEMPLATE: McqPromptTemplate = {
  header: '以下是中国关于{subject}考试的单项选择题，请选出其中的正确答案。\n\n',
  headerMulti: '以下是中国关于{subject}考试的多项选择题，请选出其中所有正确答案。\n\n',
  question: '{question}\n{options}\n答案：',
  option: '{letter}. {text}',
  shotAnswer: '{answer}\n\n',
};

/** Display names for subject keys that arrive without one (CMMLU/C-Eval CSV file names, CMExam). */
const SUBJECT_NAMES_ZH: Record<string, string> = {
  anatomy: '解剖学',
  clinical_knowledge: '临床知识',
  college_medical_statistics: '大学医学统计',
  college_medicine: '大学医学',
  nutrition: '营养学',
  professional_medicine: '专业医学',
  traditional_chinese_medicine: '中医中药',
  virology: '病毒学',
  genetics: '遗传学',
  human_sexuality: '人类性行为',
  professional_psychology: '专业心理学',
  food_science: '食品科学',
  high_school_biology: '高中生物',
  basic_medicine: '基础医学',
  clinical_medicine: '临床医学',
  physician: '医师资格',
  veterinary_medicine: '兽医学',
  cmexam: '医师资格',
  medqa: '医师资格',
};

const subjectKey = (item: McqItem) => item.subject ?? 'unknown';

/** The item's own Chinese subject name (meta.subject_zh), a known key's name, or the key. */
export function subjectName(item: McqItem): string {
  const zh = item.meta?.subject_zh;
  if (typeof zh === 'string' && zh.trim()) return zh;
  return SUBJECT_NAMES_ZH[subjectKey(item)] ?? subjectKey(item);
}

/** Replaces {name} placeholders; a placeholder without a value is an error, not silent text. */
export function fillTemplate(template: string, values: Record<string, string>, what: string): string {
  return template.replace(/\{(\w+)\}/g, (_, name: string) => {
    if (!(name in values))
      throw new Error(
        `${what}: unknown placeholder {${name}} (known: ${Object.keys(values)
          .map((k) => `{${k}}`)
          .join(', ')})`,
      );
    return values[name];
  });
}

const letters = (item: McqItem) => Object.keys(item.options).sort();
const isMulti = (item: McqItem) => item.answer.length > 1;

function renderQuestion(item: McqItem, t: McqPromptTemplate): string {
  const options = letters(item)
    .map((l) => fillTemplate(t.option, { letter: l, text: item.options[l] }, 'template.option'))
    .join('\n');
  return fillTemplate(t.question, { question: item.question, options }, 'template.question');
}

/** The first k dev items of the item's subject, never the item itself. */
export function pickShots(item: McqItem, devBySubject: Map<string, McqItem[]>, k: number): McqItem[] {
  return (devBySubject.get(subjectKey(item)) ?? []).filter((d) => d.id !== item.id).slice(0, k);
}

export function buildMcqPrompt(item: McqItem, shots: McqItem[], template: McqPromptTemplate = DEFAULT_MCQ_TEMPLATE): string {
  let prompt = fillTemplate(isMulti(item) ? template.headerMulti : template.header, { subject: subjectName(item) }, 'template.header');
  for (const s of shots)
    prompt += renderQuestion(s, template) + fillTemplate(template.shotAnswer, { answer: s.answer }, 'template.shotAnswer');
  return prompt + renderQuestion(item, template);
}

/** Candidate answers in log-likelihood mode: single letters, or every set of 2+ letters. */
export function answerCandidates(item: McqItem): string[] {
  const ls = letters(item);
  if (!isMulti(item)) return ls;
  if (ls.length > 10) throw new Error(`item ${item.id}: ${ls.length} options is too many to enumerate answer sets`);
  const sets: string[] = [];
  for (let mask = 1; mask < 1 << ls.length; mask++) {
    const set = ls.filter((_, i) => mask & (1 << i));
    if (set.length >= 2) sets.push(set.join(''));
  }
  return sets.sort((a, b) => a.length - b.length || a.localeCompare(b));
}

export type ExtractionRule = 'explicit' | 'leading' | 'lone_letter' | 'option_text';

const SEP = '[\\s,，、和及与]*';

/**
 * The option letters a generated answer chooses, or null when none can be told. The output
 * is NFKC-normalised first (full-width letters and colons become ASCII); only the item's own
 * capital letters count, and a letter glued to other Latin letters ("DNA", "Because") never does.
 * Rules, first hit wins:
 *  1. explicit: the first answer phrase — 答案是/答案为/答案：/正确答案为/应选/选择/选, or
 *     "answer is" / "answer:" — followed by letters;
 *  2. leading: the output opens with letters ("B", "(C)", "A、C", "B. 肺胸膜");
 *  3. lone_letter: exactly one distinct option letter stands alone anywhere in the output;
 *  4. option_text: the output quotes option texts (an option whose text lies inside another
 *     quoted option's text is dropped: "肋胸膜" does not also choose "胸膜").
 * The first explicit phrase wins over later ones because a base model that is not stopped
 * runs on into an invented next question with its own "答案：".
 */
export function extractAnswer(output: string, options: Record<string, string>): { letters: string; rule: ExtractionRule } | null {
  const text = output.normalize('NFKC');
  const ls = Object.keys(options).sort().join('');
  if (!ls) return null;
  const L = `[${ls}]`;
  const run = `(${L}(?:${SEP}${L})*)(?![A-Za-z])`;
  const found = (m: RegExpExecArray | RegExpMatchArray | null, rule: ExtractionRule) =>
    m ? { letters: [...new Set(m[1].match(new RegExp(L, 'g')))].sort().join(''), rule } : null;

  const explicit = new RegExp(
    `(?:答案(?:应该|应当|应|可能)?(?:是|为|选|:)+|应选|选择|选(?!项)|[Aa]nswer\\s*(?:is|:)+)\\s*(?:选项)?\\s*[(（【\\[]?\\s*${run}`,
  );
  const leading = new RegExp(`^[\\s(（【\\[]*${run}`);
  const hit = found(explicit.exec(text), 'explicit') ?? found(leading.exec(text), 'leading');
  if (hit) return hit;

  const lone = new Set(text.match(new RegExp(`(?<![A-Za-z])${L}(?![A-Za-z])`, 'g')) ?? []);
  if (lone.size === 1) return { letters: [...lone][0], rule: 'lone_letter' };

  const lower = text.toLowerCase();
  const quoted = Object.entries(options)
    .map(([l, t]) => [l, t.normalize('NFKC').trim().toLowerCase()] as const)
    .filter(([, t]) => t && lower.includes(t));
  const kept = quoted.filter(([l, t]) => !quoted.some(([l2, t2]) => l2 !== l && t2.length > t.length && t2.includes(t)));
  if (kept.length)
    return {
      letters: kept
        .map(([l]) => l)
        .sort()
        .join(''),
      rule: 'option_text',
    };
  return null;
}

/**
 * loglik: the option letter's log-likelihood after the full prompt (C-Eval / CMMLU style).
 * cloze: each option's text scored as the answer to the bare question, divided by its length
 * in characters (lm-eval-harness's acc_norm), which measures knowledge in small or base
 * models that have not learned the lettered format; multi-answer items use letters.
 * generate: free generation, then the extraction cascade.
 */
export type McqMode = 'loglik' | 'cloze' | 'generate';

export interface McqEvalOptions {
  mode?: McqMode;
  /** Demonstrations per prompt, from the dev items of the same subject. */
  k?: number;
  template?: McqPromptTemplate;
  /** Put before each letter in log-likelihood mode (e.g. ' '). */
  letterPrefix?: string;
  maxNewTokens?: number;
  batchSize?: number;
  stop?: string[];
  onProgress?: (done: number, total: number) => void;
}

export interface McqScores {
  n: number;
  accuracy: number;
  weighted_f1: number;
  extraction_failures: number;
}

export interface McqPrediction {
  id: string;
  subject: string;
  gold: string;
  /** Sorted letters, or null when nothing could be extracted. */
  pred: string | null;
  correct: boolean;
  shots: number;
  rule?: ExtractionRule;
  output?: string;
}

export interface McqResult extends McqScores {
  mode: McqMode;
  k: number;
  extraction_failure_rate: number;
  per_subject: Record<string, McqScores>;
  /** Everything needed to rebuild the prompts. */
  prompt_template: McqPromptTemplate & { letter_prefix: string; multi_answer: string };
  predictions: McqPrediction[];
}

/** Per-class F1 weighted by gold support over the classes seen in gold or predictions. */
export function weightedF1(gold: string[], pred: (string | null)[]): number {
  if (gold.length !== pred.length) throw new Error(`${gold.length} gold labels but ${pred.length} predictions`);
  const c = codeLabels(gold, pred);
  return weightedF1Coded(c, Int32Array.from(gold.keys()));
}

/** Labels as class numbers (a prediction of no class is -1), for scoring many subsets fast. */
export interface CodedLabels {
  gold: Int32Array;
  pred: Int32Array;
  classes: number;
}

export function codeLabels(gold: readonly string[], pred: readonly (string | null)[]): CodedLabels {
  const ids = new Map<string, number>();
  const id = (l: string) => ids.get(l) ?? ids.set(l, ids.size).size - 1;
  return { gold: Int32Array.from(gold, id), pred: Int32Array.from(pred, (p) => (p === null ? -1 : id(p))), classes: ids.size };
}

/** weightedF1 of the items at `indices` (repeats count repeatedly). */
export function weightedF1Coded(c: CodedLabels, indices: ArrayLike<number>): number {
  if (indices.length === 0) return 0;
  const support = new Int32Array(c.classes),
    predicted = new Int32Array(c.classes),
    hits = new Int32Array(c.classes);
  for (let j = 0; j < indices.length; j++) {
    const g = c.gold[indices[j]],
      p = c.pred[indices[j]];
    support[g]++;
    if (p < 0) continue;
    predicted[p]++;
    if (p === g) hits[g]++;
  }
  let sum = 0;
  for (let k = 0; k < c.classes; k++) if (hits[k]) sum += support[k] * ((2 * hits[k]) / (support[k] + predicted[k]));
  return sum / indices.length;
}

export function mcqScores(preds: McqPrediction[]): McqScores {
  return {
    n: preds.length,
    accuracy: preds.length ? preds.filter((p) => p.correct).length / preds.length : 0,
    weighted_f1: weightedF1(
      preds.map((p) => p.gold),
      preds.map((p) => p.pred),
    ),
    extraction_failures: preds.filter((p) => p.pred === null).length,
  };
}

const normalizeAnswer = (a: string) => [...a].sort().join('');

async function predictByLoglik(model: EvalModel, item: McqItem, prompt: string, prefix: string): Promise<string> {
  const cands = answerCandidates(item);
  const scores = await model.scoreContinuations(
    prompt,
    cands.map((c) => prefix + c),
  );
  if (scores.length !== cands.length)
    throw new Error(`scoreContinuations returned ${scores.length} scores for ${cands.length} continuations`);
  let best = 0;
  for (let i = 1; i < scores.length; i++) if (scores[i] > scores[best]) best = i;
  return cands[best];
}

/** The cloze prompt: k solved questions (answer written out), then the question. */
function clozePrompt(item: McqItem, shots: McqItem[]): string {
  const solved = shots.map((s) => `${s.question}\n答案：${[...s.answer].map((l) => s.options[l]).join('、')}\n\n`).join('');
  return `${solved}${item.question}\n答案：`;
}

async function predictByCloze(model: EvalModel, item: McqItem, shots: McqItem[]): Promise<string> {
  const letters = Object.keys(item.options).sort();
  const scores = await model.scoreContinuations(
    clozePrompt(item, shots),
    letters.map((l) => item.options[l]),
  );
  let best = 0,
    bestScore = -Infinity;
  letters.forEach((l, i) => {
    const s = scores[i] / Math.max(1, [...item.options[l]].length);
    if (s > bestScore) {
      bestScore = s;
      best = i;
    }
  });
  return letters[best];
}

export async function evaluateMcq(model: EvalModel, items: McqItem[], devItems: McqItem[], opts: McqEvalOptions = {}): Promise<McqResult> {
  const {
    mode = 'loglik',
    k = 5,
    template = DEFAULT_MCQ_TEMPLATE,
    letterPrefix = '',
    maxNewTokens = 32,
    batchSize = 8,
    stop = ['\n\n'],
  } = opts;
  if (items.length === 0) throw new Error('evaluateMcq: no items');
  const devBySubject = new Map<string, McqItem[]>();
  for (const d of devItems) {
    const key = subjectKey(d);
    if (!devBySubject.has(key)) devBySubject.set(key, []);
    devBySubject.get(key)!.push(d);
  }
  const shotsOf = items.map((it) => pickShots(it, devBySubject, k));
  const prompts = items.map((it, i) => buildMcqPrompt(it, shotsOf[i], template));
  const base = (it: McqItem, i: number) => ({
    id: it.id,
    subject: subjectKey(it),
    gold: normalizeAnswer(it.answer),
    shots: shotsOf[i].length,
  });

  let predictions: McqPrediction[];
  if (mode === 'loglik' || mode === 'cloze') {
    predictions = [];
    for (let i = 0; i < items.length; i++) {
      const pred =
        mode === 'cloze' && items[i].answer.length === 1
          ? await predictByCloze(model, items[i], shotsOf[i])
          : await predictByLoglik(model, items[i], prompts[i], letterPrefix);
      const b = base(items[i], i);
      predictions.push({ ...b, pred, correct: pred === b.gold });
      opts.onProgress?.(i + 1, items.length);
    }
  } else if (mode === 'generate') {
    const outs = await generateBatched(model, prompts, { maxNewTokens, temperature: 0, n: 1, stop }, batchSize, opts.onProgress);
    predictions = items.map((it, i) => {
      const output = outs[i][0] ?? '';
      const got = extractAnswer(output, it.options);
      const b = base(it, i);
      return { ...b, pred: got?.letters ?? null, correct: got?.letters === b.gold, ...(got ? { rule: got.rule } : {}), output };
    });
  } else {
    throw new Error(`unknown MCQ mode ${JSON.stringify(mode)} (expected loglik, cloze or generate)`);
  }

  const bySubject = new Map<string, McqPrediction[]>();
  for (const p of predictions) {
    if (!bySubject.has(p.subject)) bySubject.set(p.subject, []);
    bySubject.get(p.subject)!.push(p);
  }
  const overall = mcqScores(predictions);
  return {
    mode,
    k,
    ...overall,
    extraction_failure_rate: overall.extraction_failures / overall.n,
    per_subject: Object.fromEntries([...bySubject].sort(([a], [b]) => a.localeCompare(b)).map(([s, ps]) => [s, mcqScores(ps)])),
    prompt_template: { ...template, letter_prefix: letterPrefix, multi_answer: 'every set of 2+ option letters, in letter order' },
    predictions,
  };
}
