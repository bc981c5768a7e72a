// Another system's outputs (GPT-4, a baseline model, a previous run) scored on the same
// items with the same metrics: JSONL, one object a line, keyed by the item's id.
//   gen: {id, output}          (also accepted: response, prediction, text)
//   mcq: {id, answer: "B"}     the chosen letters; or {id, output: "..."}, free text read by
//                              the extraction cascade of generate mode (mcq.ts)
//   ner: {id, output: "..."}   "类型: 实体" lines as the few-shot prompt asks for; or
//                              {id, entities: [{start, end, type}]} with code-point offsets
// Every evaluated item needs exactly one line; a line whose id is not an item of the data
// file is an error (a prediction file for another split), while items of the file that are
// not evaluated (beyond a limit, NER demonstrations) may have lines that are then unused.
import type { McqItem, NerExample } from '../data/records.js';
import { readJsonl } from '../data/stage-files.js';
import { genItems, mcqItems, type Conversation, type GenEvalItem, type McqEvalItem } from './items.js';
import { extractAnswer } from './mcq.js';
import { scoreNer, type NerEvalResult, type NerFormat, type NerSpan } from './ner.js';

export class PredictionError extends Error {}

interface Line {
  rec: Record<string, unknown>;
  where: string;
}

/**
 * The prediction line of each evaluated item, in the items' order. `known` are every id of
 * the data file (`dataFile` names it in errors).
 */
export async function readPredictions(
  file: string,
  evaluated: readonly string[],
  known: ReadonlySet<string>,
  dataFile: string,
): Promise<Line[]> {
  const byId = new Map<string, Line>();
  for (const line of await readJsonl(file)) {
    const id = line.rec?.id;
    if (typeof id !== 'string' && typeof id !== 'number')
      throw new PredictionError(`${line.where}: a prediction needs an "id" (the item's id in ${dataFile})`);
    const key = String(id);
    if (!known.has(key)) throw new PredictionError(`${line.where}: unknown item id ${JSON.stringify(key)}: no such item in ${dataFile}`);
    const first = byId.get(key);
    if (first)
      throw new PredictionError(`${line.where}: a second prediction for item ${JSON.stringify(key)} (the first is at ${first.where})`);
    byId.set(key, line);
  }
  const missing = evaluated.filter((id) => !byId.has(id));
  if (missing.length) {
    const shown = missing
      .slice(0, 5)
      .map((id) => JSON.stringify(id))
      .join(', ');
    throw new PredictionError(
      `${file}: no prediction for ${missing.length} of the ${evaluated.length} items of ${dataFile} (${shown}${missing.length > 5 ? ', ...' : ''})`,
    );
  }
  return evaluated.map((id) => byId.get(id)!);
}

function text(line: Line, keys: string[]): string {
  for (const k of keys) if (typeof line.rec[k] === 'string') return line.rec[k] as string;
  throw new PredictionError(`${line.where}: expected a string field ${keys.join(' | ')}`);
}

const ids = (xs: readonly { id: string }[]) => xs.map((x) => x.id);

/** Replies to held-out conversations: `convs` are the evaluated ones among `all` of `dataFile`. */
export async function genPredictionItems(
  file: string,
  convs: readonly Conversation[],
  all: readonly Conversation[],
  dataFile: string,
): Promise<GenEvalItem[]> {
  const lines = await readPredictions(file, ids(convs), new Set(ids(all)), dataFile);
  return genItems(
    convs,
    lines.map((l) => text(l, ['output', 'response', 'prediction', 'text'])),
  );
}

export async function mcqPredictionItems(
  file: string,
  items: readonly McqItem[],
  all: readonly McqItem[],
  dataFile: string,
): Promise<McqEvalItem[]> {
  const lines = await readPredictions(file, ids(items), new Set(ids(all)), dataFile);
  return mcqItems(
    items,
    lines.map((l, i) => {
      const it = items[i];
      if (typeof l.rec.answer === 'string') {
        const letters = [
          ...new Set(
            l.rec.answer
              .normalize('NFKC')
              .toUpperCase()
              .replace(/[\s,，、]/g, ''),
          ),
        ]
          .sort()
          .join('');
        const bad = [...letters].filter((c) => !(c in it.options));
        if (!letters || bad.length)
          throw new PredictionError(
            `${l.where}: answer ${JSON.stringify(l.rec.answer)} is not among the options ${Object.keys(it.options).sort().join('')} of item ${JSON.stringify(it.id)}`,
          );
        return { pred: letters };
      }
      const output = text(l, ['output', 'response', 'prediction']);
      return { pred: extractAnswer(output, it.options)?.letters ?? null, output };
    }),
  );
}

function spans(l: Line, e: NerExample): NerSpan[] {
  const list = l.rec.entities;
  if (!Array.isArray(list)) throw new PredictionError(`${l.where}: expected "output" text or an "entities" list`);
  return list.map((x, j) => {
    const { start, end, type } = (x ?? {}) as Record<string, unknown>;
    if (
      !Number.isInteger(start) ||
      !Number.isInteger(end) ||
      typeof type !== 'string' ||
      (start as number) < 0 ||
      (end as number) <= (start as number) ||
      (end as number) > [...e.text].length
    ) {
      throw new PredictionError(
        `${l.where}: entities[${j}]: expected {start, end, type} with 0 <= start < end <= ${[...e.text].length} (code points of the text)`,
      );
    }
    return { start: start as number, end: end as number, type };
  });
}

/** NER scores of the predictions (nerItems gives the per-example items). */
export async function nerPredictions(
  file: string,
  examples: readonly NerExample[],
  all: readonly NerExample[],
  dataFile: string,
  f: NerFormat,
): Promise<NerEvalResult> {
  const lines = await readPredictions(file, ids(examples), new Set(ids(all)), dataFile);
  const outputs = lines.map((l, i) => (typeof l.rec.output === 'string' ? l.rec.output : spans(l, examples[i])));
  return scoreNer(examples.slice(), outputs, f, 0);
}
