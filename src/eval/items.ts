// Per-item evaluation results, one JSON object a line in eval/STAGE.items.jsonl. They hold
// what each metric needs of one item (BLEU's n-gram counts, NER's true / false positives, a
// correct flag), so intervals, paired comparisons between stages and case studies are
// computed from the files without generating again, and an interrupted evaluation resumes
// with the groups already on disk.
import fs from 'node:fs';
import { writeFileAtomic } from '../io/atomic.js';
import type { ChatMessage } from '../tokenizer/chat-template.js';
import type { McqItem, NerExample } from '../data/records.js';
import type { McqPrediction } from './mcq.js';
import { formatNerAnswer, type NerEvalResult } from './ner.js';
import { sentenceScores, type BleuStats } from './textgen.js';

/** A multiple-choice item: gold and chosen letters (null when nothing could be read). */
export interface McqEvalItem {
  eval: 'mcq';
  id: string;
  question: string;
  options: Record<string, string>;
  gold: string;
  pred: string | null;
  /** The generated answer in generate mode, or another system's text. */
  output?: string;
}

/** A held-out conversation: the reply and what it contributes to BLEU / ROUGE. */
export interface GenEvalItem {
  eval: 'gen';
  id: string;
  prompt: ChatMessage[];
  reference: string;
  output: string;
  bleu: BleuStats;
  /** ROUGE-1, ROUGE-2, ROUGE-L F1, 0-100. */
  rouge: [number, number, number];
}

/** A NER example: the answer, the gold answer in the same line format, strict span counts. */
export interface NerEvalItem {
  eval: 'ner';
  id: string;
  text: string;
  gold: string;
  output: string;
  tp: number;
  fp: number;
  fn: number;
}

/** A preference pair: 1 when the policy (pref) or the reward model (rm) ranks chosen over rejected. */
export interface PairEvalItem {
  eval: 'pref' | 'rm';
  id: string;
  kind: string;
  win: 0 | 1;
}

/** The reward model's score of the policy's greedy reply to a held-out prompt (ids of the gen records). */
export interface RewardEvalItem {
  eval: 'reward';
  id: string;
  reward: number;
}

/** An attitude-scale item's score as the total counts it; null when unanswered. */
export interface ScaleEvalItem {
  eval: 'scale';
  id: string;
  score: number | null;
}

/** A block of held-out text: summed token NLL and token count. */
export interface PplEvalItem {
  eval: 'ppl';
  id: string;
  nll: number;
  tokens: number;
}

export type EvalItem = McqEvalItem | GenEvalItem | NerEvalItem | PairEvalItem | RewardEvalItem | ScaleEvalItem | PplEvalItem;
export type EvalKind = EvalItem['eval'];
export type EvalItemOf<K extends EvalKind> = EvalItem & { eval: K };

export const EVAL_KINDS: readonly EvalKind[] = ['ppl', 'mcq', 'gen', 'ner', 'pref', 'reward', 'rm', 'scale'];

export function itemsOf<K extends EvalKind>(items: readonly EvalItem[], kind: K): EvalItemOf<K>[] {
  return items.filter((r): r is EvalItemOf<K> => r.eval === kind);
}

export function readItems(file: string): EvalItem[] {
  if (!fs.existsSync(file)) return [];
  return fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .flatMap((line, i) => {
      if (!line.trim()) return [];
      let r: EvalItem;
      try {
        r = JSON.parse(line);
      } catch (e) {
        throw new Error(`${file}:${i + 1}: invalid JSON: ${(e as Error).message}`);
      }
      if (!EVAL_KINDS.includes(r?.eval) || typeof r.id !== 'string')
        throw new Error(`${file}:${i + 1}: not an evaluation item record (needs "eval" and "id")`);
      return [r];
    });
}

export async function writeItems(file: string, items: readonly EvalItem[]): Promise<void> {
  await writeFileAtomic(file, items.map((r) => JSON.stringify(r) + '\n').join(''));
}

/** A held-out conversation: everything before the last assistant turn, and that turn. */
export interface Conversation {
  id: string;
  prompt: ChatMessage[];
  reference: string;
}

/** Items scored on their own replies (the model's, or another system's). */
export function genItems(convs: readonly Conversation[], outputs: readonly string[]): GenEvalItem[] {
  if (!convs.length) return [];
  const s = sentenceScores(
    outputs.slice(),
    convs.map((c) => c.reference),
  );
  return convs.map((c, i) => ({
    eval: 'gen',
    id: c.id,
    prompt: c.prompt,
    reference: c.reference,
    output: outputs[i],
    bleu: s[i].bleu,
    rouge: s[i].rouge,
  }));
}

export function mcqItems(items: readonly McqItem[], predictions: readonly Pick<McqPrediction, 'pred' | 'output'>[]): McqEvalItem[] {
  return items.map((it, i) => ({
    eval: 'mcq',
    id: it.id,
    question: it.question,
    options: it.options,
    gold: [...it.answer].sort().join(''),
    pred: predictions[i].pred,
    ...(predictions[i].output !== undefined ? { output: predictions[i].output } : {}),
  }));
}

export function nerItems(examples: readonly NerExample[], r: Pick<NerEvalResult, 'predictions' | 'format'>): NerEvalItem[] {
  return examples.map((e, i) => {
    const p = r.predictions[i];
    return {
      eval: 'ner',
      id: e.id,
      text: e.text,
      gold: formatNerAnswer(e.entities, r.format),
      output: p.output,
      tp: p.tp,
      fp: p.fp,
      fn: p.fn,
    };
  });
}

/** Evaluation sets key items by id: a repeated id would pair the wrong items. */
export function checkUniqueIds(items: readonly { id: string }[], file: string): void {
  const seen = new Set<string>();
  for (const it of items) {
    if (seen.has(it.id)) throw new Error(`${file}: item id ${JSON.stringify(it.id)} appears twice; evaluation items need unique ids`);
    seen.add(it.id);
  }
}
